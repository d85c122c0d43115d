/* bench_xmpp_pep: weft-bench-xmpp's "pep" scenario, one PEP publish fanned
 * out to K online contacts (docs/performance.md, "PEP fan-out").
 *
 * User 0 (the hub) and K contacts with a mutual presence subscription (each
 * asks the other on the first run; found on later ones). Every contact's presence carries
 * the same XEP-0115 caps, whose disco#info announces urn:weft:bench:pep+notify;
 * each contact answers a disco#info query for it, so the server learns the
 * interest however it asks (weft and Prosody once per hash). Once the hub has
 * every contact's presence, it publishes one unmeasured item (the node is
 * created), then --rounds items; each round is timed from the publish to the
 * K-th notification. Reported: the median round time, notifications per
 * second (K over it), and the latency of every notification (p50, p99). */
#include "bench_xmpp_run.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEP_NODE "urn:weft:bench:pep"
#define NS_CAPS_BX "http://jabber.org/protocol/caps"
#define NS_INFO_BX "http://jabber.org/protocol/disco#info"
/* sha-1 of "client/pc//bench<" NS_CAPS "<" NS_INFO "<" PEP_NODE "+notify<" */
#define CAPS_VER "jryuMsjxNM2QAooUhiREeMEw64c="
#define CAPS_NODE "https://weft.invalid/bench"

static int pep_round = -1, pep_seen, pep_hub_has, pep_waiting;
static lat_t pep_lat;
static uint64_t pep_t0, pep_last;

static int sm_streq_bx(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

static void caps_presence(bx_conn_t *c)
{
    bx_conn_sends(c, "<presence><c xmlns='" NS_CAPS_BX "' hash='sha-1' node='" CAPS_NODE "' ver='" CAPS_VER
                     "'/></presence>");
}

static void pep_ready(bx_conn_t *c)
{
    sess_ready(c);
    if (c->idx > 0)
        caps_presence(c);
}

static void answer_disco(bx_conn_t *c, xml_node_t *st)
{
    const char *from = xml_attr_get(st, "from"), *id = xml_attr_get(st, "id");
    xml_node_t *q = xml_child(st, NS_INFO_BX, "query");
    const char *node = q ? xml_attr_get(q, "node") : NULL;
    char buf[1024];
    int n = snprintf(buf, sizeof buf,
                     "<iq type='result' to='%s' id='%s'><query xmlns='" NS_INFO_BX "'%s%s%s>"
                     "<identity category='client' type='pc' name='bench'/>"
                     "<feature var='" NS_CAPS_BX "'/><feature var='" NS_INFO_BX "'/>"
                     "<feature var='" PEP_NODE "+notify'/></query></iq>",
                     from ? from : "", id ? id : "", node ? " node='" : "", node ? node : "", node ? "'" : "");
    if (n > 0 && (size_t)n < sizeof buf)
        bx_conn_send(c, buf, (size_t)n);
}

/* The round number a notification carries (item id "rN"), or -2. */
static int event_round(xml_node_t *st)
{
    xml_node_t *ev = xml_child(st, "http://jabber.org/protocol/pubsub#event", "event");
    xml_node_t *items = ev ? xml_child(ev, NULL, "items") : NULL;
    xml_node_t *item = items ? xml_child(items, NULL, "item") : NULL;
    const char *id = item ? xml_attr_get(item, "id") : NULL;
    int r;
    return id && sscanf(id, "r%d", &r) == 1 ? r : -2;
}

/* The same from a notification's bytes: -2 when it has none, -3 when only
 * the tree can tell (bench_xmpp_raw.c). */
static int event_round_raw(const char *bytes, size_t len)
{
    static const char *const ev_path[] = {"event"}, *const item_path[] = {"items", "item"};
    static const char ns_event[] = "http://jabber.org/protocol/pubsub#event";
    const char *ev, *item, *ns, *id;
    size_t evl, iteml, nsl, idl;
    int f = bx_raw_find(bytes, len, ev_path, 1, &ev, &evl);
    if (f <= 0)
        return f < 0 ? -3 : -2;
    /* the tree wants the first <event/> in that namespace: declared on it */
    if (bx_raw_attr(ev, evl, "xmlns", &ns, &nsl) != 1 || nsl != sizeof ns_event - 1 ||
        memcmp(ns, ns_event, nsl))
        return -3;
    f = bx_raw_find(ev, len - (size_t)(ev - bytes), item_path, 2, &item, &iteml);
    if (f <= 0)
        return f < 0 ? -3 : -2;
    f = bx_raw_attr(item, iteml, "id", &id, &idl);
    if (f <= 0)
        return f < 0 ? -3 : -2;
    char buf[32];
    int r;
    if (idl >= sizeof buf)
        return -3;
    memcpy(buf, id, idl);
    buf[idl] = 0;
    return sscanf(buf, "r%d", &r) == 1 ? r : -2;
}

static int pep_iq(bx_conn_t *c, xml_node_t *st)
{
    if (!sm_streq_bx(xml_attr_get(st, "type"), "get") || !xml_child(st, NS_INFO_BX, "query"))
        return 0;
    answer_disco(c, st);
    return 1;
}

static void got_round(peer_t *p)
{
    p->round_seen = pep_round;
    pep_seen++;
    pep_last = bx_now_ns();
    lat_add(&pep_lat, pep_last - pep_t0);
    if (pep_seen >= opt.contacts)
        loop_stop();
}

static void pep_stanza(bx_conn_t *c, xml_node_t *st)
{
    peer_t *p = c->ud;
    const char *type = xml_attr_get(st, "type");
    const char *from = xml_attr_get(st, "from");
    const char *hub = peers[0].c ? peers[0].c->bare : "\x01";
    if (!strcmp(st->name, "iq")) {
        static int told;
        if (sm_streq_bx(type, "error") && !told++) {   /* a refused publish: say why, once */
            xml_node_t *e = xml_child(st, NULL, "error");
            xml_node_t *cond = e ? xml_child(e, NULL, NULL) : NULL;
            fprintf(stderr, "pep: %s got an error for %s: %s\n", c->user, xml_attr_get(st, "id"),
                    cond ? cond->name : "?");
        }
        return;
    }
    if (!strcmp(st->name, "presence")) {
        char buf[400];
        if (type && !strcmp(type, "subscribe") && from) {
            int n = snprintf(buf, sizeof buf, "<presence to='%s' type='subscribed'/>", from);
            bx_conn_send(c, buf, (size_t)n);
        } else if (!type && c->idx == 0 && from) {
            for (int i = 1; i < n_peers; i++) {
                if (peers[i].c && !peers[i].hub_has && from_is(from, peers[i].c->bare)) {
                    peers[i].hub_has = 1;
                    pep_hub_has++;
                    break;
                }
            }
        } else if (!type && c->idx > 0 && from_is(from, hub) && !p->got_hub) {
            p->got_hub = 1;
        }
        return;
    }
    if (c->idx == 0 || strcmp(st->name, "message") || pep_round < 0 || p->round_seen == pep_round)
        return;
    if (event_round(st) == pep_round)
        got_round(p);
}

/* The contacts' messages are read from their bytes: the item id is all a
 * notification is needed for. */
static int pep_raw_want(bx_conn_t *c, const char *name, const char **attrs)
{
    (void)attrs;
    return c->idx != 0 && !strcmp(name, "message");
}

static int pep_raw(bx_conn_t *c, const char **attrs, const char *bytes, size_t len)
{
    (void)attrs;
    peer_t *p = c->ud;
    if (pep_round < 0 || p->round_seen == pep_round)
        return 1;
    int r = event_round_raw(bytes, len);
    if (r == -3)
        return 0;                               /* the tree will tell */
    if (r == pep_round)
        got_round(p);
    return 1;
}

static const bx_handler_t pep_h = {.on_ready = pep_ready,
                                   .on_stanza = pep_stanza,
                                   .raw_want = pep_raw_want,
                                   .on_raw = pep_raw,
                                   .on_closed = sess_closed,
                                   .on_iq = pep_iq};

static void pep_tick(void)
{
    if (pep_waiting == 1 && (pep_hub_has >= opt.contacts || since_s(pep_t0) > 60))
        loop_stop();
    if (pep_waiting == 2 && (pep_seen >= opt.contacts || since_s(pep_t0) > 10))
        loop_stop();
}

static void publish(int r)
{
    char buf[400];
    int n = snprintf(buf, sizeof buf,
                     "<iq type='set' id='pub%d'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
                     "<publish node='" PEP_NODE "'><item id='r%d'><entry xmlns='" PEP_NODE "'>round %d</entry>"
                     "</item></publish></pubsub></iq>",
                     r, r, r);
    bx_conn_send(peers[0].c, buf, (size_t)n);
}

/* One round: publish, wait for every contact. Returns the time in ms until
 * the last one had it (or until giving up). */
static double round_ms(int r)
{
    pep_round = r;
    pep_seen = 0;
    pep_t0 = bx_now_ns();
    publish(r);
    pep_waiting = 2;
    loop_run(pep_tick);
    return (double)((pep_seen >= opt.contacts ? pep_last : bx_now_ns()) - pep_t0) / 1e6;
}

int run_pep(void)
{
    int k = opt.contacts;
    peers_alloc(k + 1);
    if (ramp_to(1, BX_F_ROSTER | BX_F_PRESENCE, &pep_h) != 0 || ramp_to(k + 1, 0, &pep_h) != 0) {
        fprintf(stderr, "pep: only %d of %d sessions ready (%s)\n", n_ready, k + 1, first_failure);
        return 1;
    }
    /* On a first run each side asks the other (each approves what it is
     * asked); on later ones the hub already has the contacts' presence. */
    loop_for(1.0);
    for (int i = 1; i <= k; i++) {
        char buf[400];
        if (peers[i].hub_has)
            continue;
        int n = snprintf(buf, sizeof buf, "<presence to='%s' type='subscribe'/>", peers[0].c->bare);
        bx_conn_send(peers[i].c, buf, (size_t)n);
        n = snprintf(buf, sizeof buf, "<presence to='%s' type='subscribe'/>", peers[i].c->bare);
        bx_conn_send(peers[0].c, buf, (size_t)n);
    }
    pep_waiting = 1;
    pep_t0 = bx_now_ns();
    loop_run(pep_tick);
    if (pep_hub_has < k) {
        fprintf(stderr, "pep: the hub has the presence of only %d of %d contacts\n", pep_hub_has, k);
        close_all();
        return 1;
    }
    /* Presence again, now that the subscriptions exist: a server that
     * noted caps only from a subscribed contact's presence has them now. */
    for (int i = 1; i <= k; i++)
        caps_presence(peers[i].c);
    loop_for(1.5);                     /* caps discovery settles */
    double warm = round_ms(1000);      /* creates the node */
    loop_for(0.5);
    pep_lat.n = 0;
    double times[64];
    int nr = opt.rounds > 64 ? 64 : opt.rounds, complete = 0, missing = 0;
    span_t s;
    double cpu0[BX_MAX_PROCS], cpu1[BX_MAX_PROCS];
    char names[BX_MAX_PROCS][16];
    span_begin(&s);
    int np = cpu_server_each(cpu0, names, BX_MAX_PROCS);
    for (int r = 0; r < nr; r++) {
        times[r] = round_ms(r);
        if (pep_seen >= k)
            complete++;
        else
            missing += k - pep_seen;
        loop_for(0.3);
    }
    span_end(&s);
    cpu_server_each(cpu1, names, BX_MAX_PROCS);
    qsort(times, (size_t)nr, sizeof(double), cmp_dbl);
    double med = times[nr / 2], mx = times[nr - 1];
    double p50 = lat_q(&pep_lat, 0.5), p99 = lat_q(&pep_lat, 0.99);
    double rate = med > 0 ? k / (med / 1000.0) : 0;
    close_all();
    /* Each server process's CPU per notification over the rounds (pauses
     * included, when the servers idle): what one notification costs them. */
    strbuf_t j, each;
    strbuf_init(&j);
    strbuf_init(&each);
    long long notified = (long long)nr * k - missing;
    for (int i = 0; i < np; i++)
        strbuf_printf(&each, "%s\"%s\":%.2f", i ? "," : "", names[i],
                      notified > 0 ? 1e6 * (cpu1[i] - cpu0[i]) / (double)notified : 0);
    json_open(&j);
    strbuf_printf(&j,
                  ",\"contacts\":%d,\"rounds\":%d,\"all_ms_median\":%.2f,\"all_ms_max\":%.2f,"
                  "\"notifications_per_s\":%.0f,\"delivery_p50_ms\":%.2f,\"delivery_p99_ms\":%.2f,"
                  "\"warmup_ms\":%.2f,\"complete_rounds\":%d,\"missing\":%d",
                  k, nr, med, mx, rate, p50, p99, warm, complete, missing);
    strbuf_printf(&j, ",\"server_us_per_notification_each\":{%s}", each.data ? each.data : "");
    json_common(&j, &s);
    strbuf_puts(&j, "}");
    printf("%s\n", j.data);
    fprintf(stderr,
            "pep %s: %d contacts: all notified after %.2f ms (median of %d rounds, max %.2f ms), "
            "%.0f notifications/s, p50 %.2f ms, p99 %.2f ms, missing %d; gen cpu %.0f%% (%.2f us/received), "
            "server cpu %.0f%%; server us/notification {%s}\n",
            opt.label, k, med, nr, mx, rate, p50, p99, missing, s.self_pct,
            s.rx ? 1e6 * s.self_s / (double)s.rx : 0, s.srv_pct, each.data ? each.data : "");
    strbuf_free(&j);
    strbuf_free(&each);
    free(pep_lat.v);
    return complete == nr ? 0 : 1;
}
