/* bench_xmpp_muc: weft-bench-xmpp's "muc" scenario, group chat fan-out
 * (XEP-0045; docs/performance.md, "Group chat (MUC)").
 *
 * --rooms K rooms of --occupants N sessions each, every occupant its own
 * logged-in account (user r*N+p is occupant p of room r, nick = its user
 * name). The first occupant of each room creates it and submits the
 * muc#roomconfig form (temporary, not archived), then the others join, at
 * most --concurrency joins waiting at a time; a join counts when the room's
 * self-presence (from room/nick) arrives. Once the presence traffic of the
 * joins has been quiet for half a second, occupants 0..S-1 (--senders) of
 * every room send groupchat messages for --seconds after a one-second
 * warm-up: each keeps --window messages in flight, a message leaving the
 * window when all N occupants (the sender's own echo included) have it, or
 * with --rate sends that many per second whatever the server does.
 *
 * Every body is "room sender seq send-time pad". Each occupant keeps a bit
 * per (sender, seq), so the first copy is a delivery and any further one a
 * duplicate; lost is N times the messages sent minus the deliveries after a
 * drain (at most 10 s). Reported: deliveries/s and room messages/s over the
 * measured seconds, the latency of each delivery (p50/p99/max), sent, lost,
 * duplicated, error replies, the time the joins took, each server process's
 * CPU and the load average. The state of a sender lives with its occupant;
 * the bitmaps grow with the sequence numbers seen. */
#include "bench_xmpp_run.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NS_MUC_BX "http://jabber.org/protocol/muc"
#define NS_MUC_USER_BX NS_MUC_BX "#user"
#define NS_MUC_OWNER_BX NS_MUC_BX "#owner"
#define MUC_TIMEOUT_NS 10000000000ull   /* a message not everywhere after 10 s leaves the window */

enum { MSG_PENDING = 0, MSG_DONE, MSG_RELEASED };

typedef struct mocc {
    int room, pos;
    int joining, joined, configured;
    /* as a sender (pos < senders): its messages by sequence number */
    uint32_t next_seq, inflight, oldest;
    uint64_t next_send_ns;
    uint32_t *got;            /* occupants that have message seq */
    uint64_t *sent_ns;
    uint8_t *state;           /* MSG_* */
    size_t cap;
    /* as a receiver: a bit per sequence number of each sender of its room */
    uint8_t **seen;
    size_t *seen_bytes;
} mocc_t;

static mocc_t *occ;
static int n_occ, joins_waiting, n_joined, n_configured;
static char service[256];
static unsigned nonce;
static uint64_t phase_t0, progress_ns, last_presence_ns;
static int phase, running, measuring, rate_mode;
static uint64_t sent_total, sent_measured, uniq, dups, delivered_measured, errors, timeouts, stray;
static int cfg_refused;    /* rooms whose form was refused (then made instant rooms) */
static lat_t lat;
static char pad[1024];

/* The rooms' JIDs, made once: every delivery is checked against one. */
static char (*room_jids)[320];

static void room_jid(int r, char *buf, size_t len)
{
    snprintf(buf, len, "%s", room_jids[r]);
}

/* 1 if from is room r (bare) or one of its occupants. */
static int from_room(const char *from, int r)
{
    return from_is(from, room_jids[r]);
}

static void join(int i)
{
    mocc_t *o = &occ[i];
    bx_conn_t *c = peers[i].c;
    if (!c)
        return;
    char jid[320], buf[800];
    room_jid(o->room, jid, sizeof jid);
    int n = snprintf(buf, sizeof buf,
                     "<presence to='%s/%s'><x xmlns='" NS_MUC_BX "'><history maxstanzas='0'/></x></presence>",
                     jid, c->user);
    bx_conn_send(c, buf, (size_t)n);
    o->joining = 1;
    joins_waiting++;
}

/* The creator makes the room temporary and unarchived (every server reads
 * the fields it knows); id cfg2 is an empty (instant room) submit, the
 * fallback when a server refuses the first form. */
static void configure(int i, int instant)
{
    char jid[320], buf[1200];
    room_jid(occ[i].room, jid, sizeof jid);
    int n;
    if (instant)
        n = snprintf(buf, sizeof buf,
                     "<iq type='set' id='cfg2' to='%s'><query xmlns='" NS_MUC_OWNER_BX "'>"
                     "<x xmlns='jabber:x:data' type='submit'/></query></iq>",
                     jid);
    else
        n = snprintf(buf, sizeof buf,
                     "<iq type='set' id='cfg' to='%s'><query xmlns='" NS_MUC_OWNER_BX "'>"
                     "<x xmlns='jabber:x:data' type='submit'>"
                     "<field var='FORM_TYPE' type='hidden'><value>" NS_MUC_BX "#roomconfig</value></field>"
                     "<field var='muc#roomconfig_persistentroom'><value>0</value></field>"
                     "<field var='muc#roomconfig_enablelogging'><value>0</value></field>"
                     "</x></query></iq>",
                     jid);
    bx_conn_send(peers[i].c, buf, (size_t)n);
}

static void grow_sender(mocc_t *s, uint32_t seq)
{
    if (seq < s->cap)
        return;
    size_t cap = s->cap ? s->cap * 2 : 1024;
    while (cap <= seq)
        cap *= 2;
    s->got = xrealloc(s->got, cap * sizeof *s->got);
    s->sent_ns = xrealloc(s->sent_ns, cap * sizeof *s->sent_ns);
    s->state = xrealloc(s->state, cap);
    s->cap = cap;
}

static void send_msg(int i)
{
    mocc_t *s = &occ[i];
    bx_conn_t *c = peers[i].c;
    if (!c)
        return;
    uint32_t seq = s->next_seq;
    grow_sender(s, seq);
    uint64_t now = bx_now_ns();
    char jid[320], buf[2048];
    room_jid(s->room, jid, sizeof jid);
    int n = snprintf(buf, sizeof buf,
                     "<message to='%s' type='groupchat' id='m%u'><body>%d %d %u %llu %s</body></message>", jid,
                     seq, s->room, s->pos, seq, (unsigned long long)now, pad);
    bx_conn_send(c, buf, (size_t)n);
    s->got[seq] = 0;
    s->sent_ns[seq] = now;
    s->state[seq] = MSG_PENDING;
    s->next_seq++;
    s->inflight++;
    sent_total++;
    if (measuring)
        sent_measured++;
}

/* Message seq of sender s leaves the window (everyone has it, or given up). */
static void settle_msg(int si, uint32_t seq, int how)
{
    mocc_t *s = &occ[si];
    if (s->state[seq] != MSG_PENDING)
        return;
    s->state[seq] = (uint8_t)how;
    s->inflight--;
    if (running && !rate_mode && s->inflight < (uint32_t)opt.window)
        send_msg(si);
}

/* A groupchat message's body text, from the tree or from its bytes. */
static void on_body(mocc_t *o, const char *from, const char *text)
{
    int r, p;
    unsigned seq;
    unsigned long long ts;
    if (sscanf(text, "%d %d %u %llu", &r, &p, &seq, &ts) != 4)
        return;
    uint64_t now = bx_now_ns();
    int si = r * opt.occupants + p;
    if (r != o->room || p < 0 || p >= opt.senders || !from_room(from, r) || seq >= occ[si].next_seq) {
        stray++;
        return;
    }
    size_t byte = seq / 8;
    if (byte >= o->seen_bytes[p]) {
        size_t nb = o->seen_bytes[p] ? o->seen_bytes[p] * 2 : 256;
        while (nb <= byte)
            nb *= 2;
        o->seen[p] = xrealloc(o->seen[p], nb);
        memset(o->seen[p] + o->seen_bytes[p], 0, nb - o->seen_bytes[p]);
        o->seen_bytes[p] = nb;
    }
    uint8_t bit = (uint8_t)(1u << (seq % 8));
    if (o->seen[p][byte] & bit) {
        dups++;
        return;
    }
    o->seen[p][byte] |= bit;
    uniq++;
    if (measuring) {
        delivered_measured++;
        lat_add(&lat, now - ts);
    }
    mocc_t *s = &occ[si];
    if (++s->got[seq] >= (uint32_t)opt.occupants)
        settle_msg(si, seq, MSG_DONE);
}

static void on_groupchat(mocc_t *o, xml_node_t *st)
{
    const xml_node_t *b = xml_child(st, NULL, "body");
    if (!b || !b->first_child || !b->first_child->text)
        return;                                 /* subject, status codes */
    on_body(o, xml_attr_get(st, "from"), b->first_child->text);
}

/* Groupchat messages are read from their bytes (bench_xmpp_raw.c): the
 * body's text is all they are needed for. */
static int muc_raw_want(bx_conn_t *c, const char *name, const char **attrs)
{
    (void)c;
    const char *type = xml_attrs_find(attrs, "type");
    return !strcmp(name, "message") && type && !strcmp(type, "groupchat");
}

static int muc_raw(bx_conn_t *c, const char **attrs, const char *bytes, size_t len)
{
    char text[2048];
    int r = bx_raw_child_text(bytes, len, "body", text, sizeof text);
    if (r < 0)
        return 0;                               /* the tree will tell */
    if (r > 0)
        on_body(&occ[c->idx], xml_attrs_find(attrs, "from"), text);
    return 1;
}

static void on_error_reply(bx_conn_t *c, xml_node_t *st)
{
    static int told;
    const char *id = xml_attr_get(st, "id");
    xml_node_t *e = xml_child(st, NULL, "error");
    xml_node_t *cond = e ? xml_child(e, NULL, NULL) : NULL;
    if (!told++)
        fprintf(stderr, "muc: %s got an error for %s %s: %s\n", c->user, st->name, id ? id : "-",
                cond ? cond->name : "?");
    errors++;
    unsigned seq;
    mocc_t *s = c->ud ? &occ[c->idx] : NULL;
    if (s && !strcmp(st->name, "message") && id && sscanf(id, "m%u", &seq) == 1 && seq < s->next_seq)
        settle_msg(c->idx, seq, MSG_RELEASED);
}

static void muc_stanza(bx_conn_t *c, xml_node_t *st)
{
    mocc_t *o = &occ[c->idx];
    const char *type = xml_attr_get(st, "type");
    const char *from = xml_attr_get(st, "from");
    if (!strcmp(st->name, "message")) {
        if (type && !strcmp(type, "error"))
            on_error_reply(c, st);
        else if (type && !strcmp(type, "groupchat"))
            on_groupchat(o, st);
        return;
    }
    if (!strcmp(st->name, "iq")) {
        const char *id = xml_attr_get(st, "id");
        if (!id || (strcmp(id, "cfg") && strcmp(id, "cfg2")) || o->configured)
            return;
        if (type && !strcmp(type, "result")) {
            o->configured = 1;
            n_configured++;
            progress_ns = bx_now_ns();
        } else {
            /* ejabberd refuses enablelogging without mod_muc_log: its
             * default_room_options (run.sh) say the same as our form */
            xml_node_t *e = xml_child(st, NULL, "error");
            xml_node_t *cond = e ? xml_child(e, NULL, NULL) : NULL;
            if (!cfg_refused++)
                fprintf(stderr, "muc: the room form was refused (%s)%s\n", cond ? cond->name : "?",
                        strcmp(id, "cfg") ? "" : "; an instant room instead");
            if (!strcmp(id, "cfg"))
                configure(c->idx, 1);
            else
                bx_conn_abort(c, "room configuration refused");
        }
        return;
    }
    if (strcmp(st->name, "presence") || !from_room(from, o->room))
        return;
    last_presence_ns = bx_now_ns();
    if (o->joined || !o->joining)
        return;
    if (type && !strcmp(type, "error")) {
        on_error_reply(c, st);
        o->joining = 0;
        joins_waiting--;
        bx_conn_abort(c, "join refused");
        return;
    }
    /* the self-presence: from room/our-nick (status 110 in all three) */
    const char *slash = strchr(from, '/');
    if (type || !slash || strcmp(slash + 1, c->user))
        return;
    o->joining = 0;
    o->joined = 1;
    joins_waiting--;
    n_joined++;
    progress_ns = last_presence_ns;
    if (o->pos == 0)
        configure(c->idx, 0);
}

static const bx_handler_t muc_h = {.on_ready = sess_ready,
                                   .on_stanza = muc_stanza,
                                   .raw_want = muc_raw_want,
                                   .on_raw = muc_raw,
                                   .on_closed = sess_closed};

/* ---- phases, one tick function each */

static void create_tick(void)
{
    if (n_configured >= opt.rooms || since_s(progress_ns) > 60)
        loop_stop();
}

static int join_next;
static void join_tick(void)
{
    while (join_next < n_occ && joins_waiting < opt.concurrency) {
        if (occ[join_next].pos != 0)
            join(join_next);
        join_next++;
    }
    if (n_joined >= n_occ || since_s(progress_ns) > 60)
        loop_stop();
}

static void quiet_tick(void)
{
    if (since_s(last_presence_ns) > 0.5 || since_s(phase_t0) > 30)
        loop_stop();
}

static int is_sender(int i)
{
    return occ[i].pos < opt.senders;
}

static void send_tick(void)
{
    uint64_t now = bx_now_ns();
    double t = since_s(phase_t0);
    for (int i = 0; i < n_occ; i++) {
        if (!is_sender(i))
            continue;
        mocc_t *s = &occ[i];
        while (s->oldest < s->next_seq && s->state[s->oldest] != MSG_PENDING)
            s->oldest++;
        if (s->oldest < s->next_seq && now - s->sent_ns[s->oldest] > MUC_TIMEOUT_NS) {
            timeouts++;
            settle_msg(i, s->oldest, MSG_RELEASED);
        }
        if (rate_mode && running) {
            while (s->next_send_ns <= now && peers[i].c) {
                send_msg(i);
                s->next_send_ns += (uint64_t)(1e9 / opt.rate);
            }
        }
    }
    /* the caller sets phase (and running, measuring) before each loop_run */
    if ((phase == 0 && t >= 1.0) || (phase == 1 && t >= 1.0 + opt.seconds)) {
        loop_stop();
    } else if (phase == 2) {
        uint64_t inflight = 0;
        for (int i = 0; i < n_occ; i++)
            if (is_sender(i))
                inflight += occ[i].inflight;
        if (inflight == 0 || t >= 1.0 + opt.seconds + 10)
            loop_stop();
    }
}

/* After the sessions are gone the server may still be sending the
 * departures (N leaves of a room of N is N squared presences): wait, at most
 * 60 s, until its processes use under 5% of a core, so the next server's run
 * does not share the core with this one's clean-up. */
static void wait_server_idle(void)
{
    double secs[BX_MAX_PROCS];
    char names[BX_MAX_PROCS][16];
    for (int t = 0; t < 120; t++) {
        double a = 0, b = 0;
        int np = cpu_server_each(secs, names, BX_MAX_PROCS);
        for (int i = 0; i < np; i++)
            a += secs[i];
        loop_for(0.5);
        np = cpu_server_each(secs, names, BX_MAX_PROCS);
        for (int i = 0; i < np; i++)
            b += secs[i];
        if (b - a < 0.025)
            return;
    }
}

static void free_all(void)
{
    for (int i = 0; i < n_occ; i++) {
        mocc_t *o = &occ[i];
        free(o->got);
        free(o->sent_ns);
        free(o->state);
        for (int p = 0; p < opt.senders; p++)
            free(o->seen[p]);
        free(o->seen);
        free(o->seen_bytes);
    }
    free(occ);
    free(lat.v);
    free(room_jids);
}

int run_muc(void)
{
    int k = opt.rooms, n = opt.occupants;
    n_occ = k * n;
    rate_mode = opt.rate_given;
    if (opt.muc_service)
        snprintf(service, sizeof service, "%s", opt.muc_service);
    else
        snprintf(service, sizeof service, "conference.%s", tgt.domain);
    nonce = ((unsigned)time(NULL) ^ ((unsigned)getpid() << 12)) & 0xffffffu;
    room_jids = xcalloc((size_t)k, sizeof *room_jids);
    for (int r = 0; r < k; r++)
        snprintf(room_jids[r], sizeof room_jids[r], "bench%x-%d@%s", nonce, r, service);
    size_t pl = (size_t)opt.body_bytes < sizeof pad - 1 ? (size_t)opt.body_bytes : sizeof pad - 1;
    memset(pad, 'x', pl);
    occ = xcalloc((size_t)n_occ, sizeof *occ);
    for (int i = 0; i < n_occ; i++) {
        occ[i].room = i / n;
        occ[i].pos = i % n;
        occ[i].seen = xcalloc((size_t)opt.senders, sizeof *occ[i].seen);
        occ[i].seen_bytes = xcalloc((size_t)opt.senders, sizeof *occ[i].seen_bytes);
    }
    peers_alloc(n_occ);
    int rc = 1;
    if (ramp_to(n_occ, BX_F_PRESENCE, &muc_h) != 0) {
        fprintf(stderr, "muc: only %d of %d sessions ready (%s)\n", n_ready, n_occ, first_failure);
        close_all();
        free_all();
        return 1;
    }
    /* creators first: each room exists and is configured before anyone else enters */
    uint64_t join_t0 = bx_now_ns();
    progress_ns = join_t0;
    for (int r = 0; r < k; r++)
        join(r * n);
    loop_run(create_tick);
    if (n_configured < k) {
        fprintf(stderr, "muc: only %d of %d rooms created and configured (%s)\n", n_configured, k,
                failures ? first_failure : "no answer");
        close_all();
        free_all();
        return 1;
    }
    progress_ns = bx_now_ns();
    loop_run(join_tick);
    double join_s = since_s(join_t0);
    if (n_joined < n_occ) {
        fprintf(stderr, "muc: only %d of %d occupants joined (%s)\n", n_joined, n_occ,
                failures ? first_failure : "no self-presence");
        close_all();
        free_all();
        return 1;
    }
    phase_t0 = bx_now_ns();
    if (!last_presence_ns)
        last_presence_ns = phase_t0;
    loop_run(quiet_tick);

    /* send: 1 s warm-up, --seconds measured, then drain */
    fprintf(stderr, "muc: joins quiet, sending\n");   /* a mark for profilers */
    running = 1;
    phase = 0;
    phase_t0 = bx_now_ns();
    for (int i = 0; i < n_occ; i++) {
        if (!is_sender(i))
            continue;
        if (rate_mode)      /* spread the senders over the first period */
            occ[i].next_send_ns = phase_t0 + (uint64_t)((double)(random() % 1000) / 1000.0 * 1e9 / opt.rate);
        else
            for (int w = 0; w < opt.window; w++)
                send_msg(i);
    }
    loop_run(send_tick);
    double cpu0[BX_MAX_PROCS], cpu1[BX_MAX_PROCS];
    char names[BX_MAX_PROCS][16];
    double load0 = loadavg_1m();
    span_t sp;
    span_begin(&sp);
    int np = cpu_server_each(cpu0, names, BX_MAX_PROCS);
    phase = 1;
    measuring = 1;
    loop_run(send_tick);
    measuring = 0;
    running = 0;
    span_end(&sp);
    cpu_server_each(cpu1, names, BX_MAX_PROCS);
    double load1 = loadavg_1m();
    phase = 2;
    loop_run(send_tick);

    uint64_t expected = sent_total * (uint64_t)n;
    long long lost = (long long)(expected - uniq);
    uint64_t pending = 0;
    for (int i = 0; i < n_occ; i++)
        if (is_sender(i))
            pending += occ[i].inflight;
    double secs = sp.wall > 0 ? sp.wall : opt.seconds;
    double dps = (double)delivered_measured / secs, mps = (double)sent_measured / secs;
    double p50 = lat_q(&lat, 0.50), p99 = lat_q(&lat, 0.99), mx = lat_q(&lat, 1.0);
    close_all();
    wait_server_idle();
    strbuf_t j, each;
    strbuf_init(&j);
    strbuf_init(&each);
    for (int i = 0; i < np; i++)
        strbuf_printf(&each, "%s\"%s\":%.0f", i ? "," : "", names[i],
                      sp.wall > 0 ? 100.0 * (cpu1[i] - cpu0[i]) / sp.wall : 0);
    json_open(&j);
    strbuf_printf(&j,
                  ",\"rooms\":%d,\"occupants\":%d,\"senders\":%d,\"window\":%d,\"rate\":%.1f,\"seconds\":%.1f,"
                  "\"deliveries_per_s\":%.0f,\"msgs_per_s\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
                  "\"sent\":%llu,\"deliveries\":%llu,\"expected\":%llu,\"lost\":%lld,\"duplicated\":%llu,"
                  "\"error_replies\":%llu,\"timeouts\":%llu,\"stray\":%llu,\"still_pending\":%llu,\"join_s\":%.2f,"
                  "\"instant_rooms\":%d,\"loadavg_start\":%.2f,\"loadavg_end\":%.2f,\"server_cpu_each\":{%s}",
                  k, n, opt.senders, rate_mode ? 0 : opt.window, rate_mode ? opt.rate : 0.0, opt.seconds, dps,
                  mps, p50, p99, mx, (unsigned long long)sent_total, (unsigned long long)uniq,
                  (unsigned long long)expected, lost, (unsigned long long)dups, (unsigned long long)errors,
                  (unsigned long long)timeouts, (unsigned long long)stray, (unsigned long long)pending, join_s,
                  cfg_refused, load0, load1, each.data ? each.data : "");
    json_common(&j, &sp);
    strbuf_puts(&j, "}");
    printf("%s\n", j.data);
    fflush(stdout);
    fprintf(stderr,
            "muc %s: %d rooms of %d, %d senders each: %.0f deliveries/s (%.1f msgs/s), latency p50 %.2f ms "
            "p99 %.2f ms max %.2f ms, sent %llu, lost %lld, duplicated %llu, errors %llu; joins %.1f s; "
            "load %.2f-%.2f; gen cpu %.0f%% (%.2f us/received), server cpu %.0f%% (%s), failures %d\n",
            opt.label, k, n, opt.senders, dps, mps, p50, p99, mx, (unsigned long long)sent_total, lost,
            (unsigned long long)dups, (unsigned long long)errors, join_s, load0, load1, sp.self_pct,
            sp.rx ? 1e6 * sp.self_s / (double)sp.rx : 0, sp.srv_pct, each.data ? each.data : "", failures);
    strbuf_free(&j);
    strbuf_free(&each);
    rc = lost == 0 && dups == 0 && failures == 0 ? 0 : 1;
    free_all();
    return rc;
}
