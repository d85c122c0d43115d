/* weft-bench-xmpp: a client load generator that speaks real XMPP to any server.
 *
 * One process, one libevent loop, thousands of client connections
 * (bench_xmpp_conn.c). Accounts are bench0..benchN-1 (--user-template) with one
 * password; they are created by in-band registration, by a shell command per
 * user (so Prosody's and ejabberd's own tools work), or assumed to exist.
 *
 * Scenarios (docs/performance.md, "Client load"):
 *   idle    N sessions (bind, roster of --contacts R items, initial presence)
 *           held open; at each --levels point the resident memory (VmRSS) of
 *           the server's processes is summed and reported per session, as the
 *           growth over the memory before the first connection.
 *   chat    --pairs P pairs; each member sends to its partner's full JID,
 *           keeping at most --window messages in flight, for --seconds after a
 *           one-second warm-up. The body carries a sequence number and a send
 *           timestamp: delivered messages/s, latency p50/p99/max, and loss
 *           (sent minus received after a drain) and reordering are reported.
 *   steady  --pairs P senders each sending --rate messages/s to its receiver's
 *           bare JID for --seconds, through component outages: lost sessions
 *           are reconnected, and the report counts disconnected clients, sent,
 *           delivered, lost, duplicated and offline-delivered messages, and the
 *           recovery time after a kill marked with SIGUSR1 (the fault tests).
 *   login   --concurrency C slots, each looping connect, TLS, SASL, bind,
 *           roster, presence, close (waiting for the server's close) for
 *           --seconds after a warm-up second: logins/s and login latency.
 *   fanout  user 0 (the hub) with --contacts K subscribed, online contacts
 *           changes its presence --rounds times: time until all K have it.
 *   pep     the same hub publishes a PEP item --rounds times to K online
 *           contacts interested in the node (XEP-0115 +notify): time until
 *           all K have the notification, notifications/s, latency p99
 *           (bench_xmpp_pep.c).
 *   muc     --rooms K rooms of --occupants N sessions each; --senders S of
 *           every room send groupchat messages (--window in flight per
 *           sender until every occupant has the message, or --rate per
 *           second) for --seconds: deliveries/s, latency p50/p99/max, lost
 *           and duplicated deliveries (bench_xmpp_muc.c).
 *
 * With --peer-host, chat and steady put the second user of every pair on
 * another server (federation) or another c2s of the same service.
 *
 * Each report has the generator's own CPU (getrusage) and the server's CPU
 * (/proc/PID/stat of --pids/--procs) over the measured interval, so a
 * saturated generator is never mistaken for a slow server. Output: one JSON
 * line on stdout, one human line on stderr. Not a test: nothing asserts a
 * figure; the exit status is non-zero only when the run could not be done. */
#include "bench_xmpp.h"
#include "bench_xmpp_run.h"
#include "log.h"
#include "tls.h"
#include "tls_record.h"
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_PIDS 64
#define NS_CLIENT_BX "jabber:client"

/* ---- options */

bx_opt_t opt = {
    .host = "127.0.0.1", .scenario = "idle", .label = "", .reg = "none", .levels_s = NULL,
    .port = 5222, .users = 1000, .contacts = 10, .pairs = 100, .window = 10, .concurrency = 50,
    .rounds = 5, .body_bytes = 64, .cmd_jobs = 8, .seconds = 10, .settle = 3, .peer_port = 5222,
    .rate = 2, .drain = 20, .rooms = 1, .occupants = 10, .senders = 1,
};

/* tgt is --host; peer_tgt is --peer-host when given: in chat and steady the
 * odd-numbered user of each pair (the receiver) logs in there. */
bx_target_t tgt, peer_tgt;
static int have_peer;
static pid_t pids[MAX_PIDS];
static int npids;

/* ---- measurement helpers */

static double cpu_self_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* utime+stime of one process, in seconds (0 when it is gone). */
static double cpu_pid_s(pid_t pid)
{
    long tck = sysconf(_SC_CLK_TCK);
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* comm may hold spaces */
    unsigned long ut = 0, st = 0;
    if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
        return (double)(ut + st) / (double)tck;
    return 0;
}

/* utime+stime of the server's processes, in seconds. */
static double cpu_server_s(void)
{
    double sum = 0;
    for (int i = 0; i < npids; i++)
        sum += cpu_pid_s(pids[i]);
    return sum;
}

int cpu_server_each(double *secs, char (*names)[16], int max)
{
    int n = 0;
    for (int i = 0; i < npids && n < max; i++, n++) {
        char path[64];
        secs[n] = cpu_pid_s(pids[i]);
        snprintf(names[n], 16, "%d", (int)pids[i]);
        snprintf(path, sizeof path, "/proc/%d/comm", (int)pids[i]);
        FILE *f = fopen(path, "r");
        if (f) {
            if (fgets(names[n], 16, f))
                names[n][strcspn(names[n], "\n")] = 0;
            fclose(f);
        }
    }
    return n;
}

double loadavg_1m(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

/* Sum of VmRSS of the server's processes, in KiB. */
static long rss_pid_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = 0;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = atol(line + 6);
    fclose(f);
    return kb;
}

static long rss_server_kb(void)
{
    long sum = 0;
    for (int i = 0; i < npids; i++)
        sum += rss_pid_kb(pids[i]);
    return sum;
}

/* Each server process's RSS as "pid:KiB,..." (which process the bytes are in). */
static void rss_each(strbuf_t *out)
{
    for (int i = 0; i < npids; i++)
        strbuf_printf(out, "%s%d:%ld", i ? "," : "", (int)pids[i], rss_pid_kb(pids[i]));
}

static void add_pids_by_name(const char *names)
{
    char *dup = xstrdup(names), *save = NULL;
    for (char *n = strtok_r(dup, ",", &save); n; n = strtok_r(NULL, ",", &save)) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!isdigit((unsigned char)e->d_name[0]))
                continue;
            char path[300], comm[64] = "";
            snprintf(path, sizeof path, "/proc/%s/comm", e->d_name);
            FILE *f = fopen(path, "r");
            if (!f)
                continue;
            if (fgets(comm, sizeof comm, f))
                comm[strcspn(comm, "\n")] = 0;
            fclose(f);
            if (strcmp(comm, n) == 0 && npids < MAX_PIDS)
                pids[npids++] = (pid_t)atoi(e->d_name);
        }
        if (d)
            closedir(d);
    }
    free(dup);
}


void span_begin(span_t *s)
{
    s->t0 = bx_now_ns();
    s->self0 = cpu_self_s();
    s->srv0 = cpu_server_s();
    s->rx0 = bx_stanzas_in;
    s->raw0 = bx_raw_in;
}

void span_end(span_t *s)
{
    s->wall = (double)(bx_now_ns() - s->t0) / 1e9;
    s->self_s = cpu_self_s() - s->self0;
    s->rx = bx_stanzas_in - s->rx0;
    s->raw = bx_raw_in - s->raw0;
    s->self_pct = s->wall > 0 ? 100.0 * s->self_s / s->wall : 0;
    s->srv_pct = s->wall > 0 ? 100.0 * (cpu_server_s() - s->srv0) / s->wall : 0;
}


void lat_add(lat_t *l, uint64_t ns)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4096;
        l->v = xrealloc(l->v, l->cap * sizeof *l->v);
    }
    uint64_t us = ns / 1000;
    l->v[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Quantile q of the samples in milliseconds (sorts them). */
double lat_q(lat_t *l, double q)
{
    if (!l->n)
        return 0;
    qsort(l->v, l->n, sizeof *l->v, cmp_u32);
    size_t i = (size_t)(q * (double)(l->n - 1) + 0.5);
    return l->v[i] / 1000.0;
}

/* ---- the loop and a generic ramp of connections */

int failures;
char first_failure[200];

static void note_failure(const bx_conn_t *c, const char *why)
{
    if (!failures++)
        snprintf(first_failure, sizeof first_failure, "%s: %s", c->user, why);
}

static struct event *tick_ev;
static void (*tick_fn)(void);

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (tick_fn)
        tick_fn();
}

/* Runs fn every 10 ms until loop_stop(). */
void loop_run(void (*fn)(void))
{
    tick_fn = fn;
    tick_ev = event_new(tgt.base, -1, EV_PERSIST, tick_cb, NULL);
    struct timeval tv = {0, 10000};
    event_add(tick_ev, &tv);
    event_base_dispatch(tgt.base);
    event_free(tick_ev);
    tick_ev = NULL;
}

void loop_stop(void)
{
    event_base_loopbreak(tgt.base);
}

double since_s(uint64_t t0)
{
    return (double)(bx_now_ns() - t0) / 1e9;
}

/* ---- provisioning */

static int reg_next, reg_active, reg_need, reg_ok, reg_conflict, reg_fail;
static const bx_target_t *reg_tgt = &tgt;

static void reg_closed(bx_conn_t *c, int clean, const char *why)
{
    reg_active--;
    if (c->reg_status && strcmp(c->reg_status, "ok") == 0)
        reg_ok++;
    else if (c->reg_status && strcmp(c->reg_status, "conflict") == 0)
        reg_conflict++;
    else {
        reg_fail++;
        note_failure(c, c->reg_status ? c->reg_status : why);
    }
    (void)clean;
}

static const bx_handler_t reg_handler = {.on_closed = reg_closed};

static void reg_tick(void)
{
    while (reg_next < reg_need && reg_active < opt.concurrency) {
        reg_active++;
        if (!bx_conn_start(reg_tgt, &reg_handler, reg_next, BX_F_REGISTER, NULL, NULL))
            reg_active--, reg_fail++;
        reg_next++;
    }
    if (reg_next >= reg_need && reg_active == 0)
        loop_stop();
}

/* Expands %u %p %d %% of the command template. */
static void expand_cmd(const bx_target_t *t, const char *tmpl, const char *user, strbuf_t *out)
{
    for (const char *p = tmpl; *p; p++) {
        if (*p == '%' && p[1]) {
            p++;
            if (*p == 'u')
                strbuf_puts(out, user);
            else if (*p == 'p')
                strbuf_puts(out, t->password);
            else if (*p == 'd')
                strbuf_puts(out, t->domain);
            else
                strbuf_putc(out, *p);
        } else {
            strbuf_putc(out, *p);
        }
    }
}

/* Runs the command template once per user, --cmd-jobs at a time (before the
 * event loop runs, so blocking here is fine). */
static int provision_cmd(const bx_target_t *t, const char *tmpl, int n)
{
    int running = 0, bad = 0;
    for (int i = 0; i < n || running > 0;) {
        if (i < n && running < opt.cmd_jobs) {
            char user[64];
            snprintf(user, sizeof user, t->user_template, i);
            strbuf_t cmd;
            strbuf_init(&cmd);
            expand_cmd(t, tmpl, user, &cmd);
            pid_t pid = fork();
            if (pid == 0) {
                int fd = open("/dev/null", O_WRONLY);
                if (fd >= 0) {
                    dup2(fd, 1);
                    dup2(fd, 2);
                }
                execl("/bin/sh", "sh", "-c", cmd.data, (char *)NULL);
                _exit(127);
            }
            strbuf_free(&cmd);
            if (pid < 0)
                log_fatal("event=bench-fork-failed reason=%s", strerror(errno));
            running++;
            i++;
            continue;
        }
        int st;
        if (wait(&st) > 0) {
            running--;
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                bad++;
        }
    }
    return bad;
}

/* Creates users 0..n-1 on t (one target at a time). */
static void provision_on(const bx_target_t *t, int n)
{
    uint64_t t0 = bx_now_ns();
    if (strcmp(opt.reg, "ibr") == 0) {
        reg_tgt = t;
        reg_need = n;
        reg_next = reg_ok = reg_conflict = reg_fail = 0;
        loop_run(reg_tick);
        fprintf(stderr, "registered n=%d domain=%s ok=%d existing=%d failed=%d in %.1fs%s%s\n", n,
                t->domain, reg_ok, reg_conflict, reg_fail, since_s(t0), reg_fail ? " first: " : "",
                reg_fail ? first_failure : "");
        if (reg_fail)
            exit(1);
    } else if (strncmp(opt.reg, "cmd:", 4) == 0) {
        int bad = provision_cmd(t, opt.reg + 4, n);
        fprintf(stderr, "registered by command n=%d domain=%s failed=%d in %.1fs\n", n, t->domain,
                bad, since_s(t0));
    }
}

/* --register applies to both servers; a peer serving the same domain (a
 * second c2s of one service) shares the accounts and is skipped. */
static void provision(int n)
{
    provision_on(&tgt, n);
    if (have_peer && strcmp(peer_tgt.domain, tgt.domain) != 0)
        provision_on(&peer_tgt, n);
    failures = 0;
}

/* ---- sessions shared by the scenarios */


peer_t *peers;
int n_peers, n_ready;
static int n_live, n_started, n_want, ramp_active, closing_all;
static int pair_split;       /* chat, steady with --peer-host: odd users on the peer */

static const bx_target_t *target_for(int idx)
{
    return pair_split && (idx & 1) ? &peer_tgt : &tgt;
}
static int ramp_flags;
static const bx_handler_t *ramp_h;
static uint64_t ramp_progress;

void peers_alloc(int n)
{
    n_peers = n;
    peers = xcalloc((size_t)n, sizeof *peers);
    for (int i = 0; i < n; i++)
        peers[i].round_seen = -1;
}

void sess_ready(bx_conn_t *c)
{
    peer_t *p = c->ud;
    p->ready = 1;
    ramp_active--;
    n_ready++;
    ramp_progress = bx_now_ns();
}

void sess_closed(bx_conn_t *c, int clean, const char *why)
{
    peer_t *p = c->ud;
    if (p->ready)
        n_ready--;
    else
        ramp_active--;
    p->ready = 0;
    p->c = NULL;
    n_live--;
    if (!closing_all || !clean)
        note_failure(c, why);
}

static void ramp_start_some(void)
{
    while (n_started < n_want && ramp_active < opt.concurrency) {
        int i = n_started++;
        peer_t *p = &peers[i];
        ramp_active++;
        n_live++;
        p->c = bx_conn_start(target_for(i), ramp_h, i, ramp_flags, "bench", p);
        if (!p->c) {
            /* on_closed already ran for it */
        }
    }
}

static void ramp_tick(void)
{
    ramp_start_some();
    if (n_ready >= n_want)
        loop_stop();
    else if (n_started >= n_want && ramp_active == 0)
        loop_stop(); /* some failed */
    else if (since_s(ramp_progress) > 60)
        loop_stop(); /* stuck */
}

/* Connects users [n_started, upto) with the given handler; returns 0 when all
 * of them are ready. */
int ramp_to(int upto, int flags, const bx_handler_t *h)
{
    n_want = upto;
    ramp_flags = flags;
    ramp_h = h;
    ramp_progress = bx_now_ns();
    loop_run(ramp_tick);
    return n_ready >= upto ? 0 : -1;
}

static uint64_t wait_until;
static void wait_tick(void)
{
    if (bx_now_ns() >= wait_until)
        loop_stop();
}

/* Lets the loop run for s seconds. */
void loop_for(double s)
{
    wait_until = bx_now_ns() + (uint64_t)(s * 1e9);
    loop_run(wait_tick);
}

static void close_tick(void)
{
    if (n_live <= 0 || bx_now_ns() >= wait_until)
        loop_stop();
}

void close_all(void)
{
    closing_all = 1;
    for (int i = 0; i < n_peers; i++)
        if (peers[i].c)
            bx_conn_close(peers[i].c);
    wait_until = bx_now_ns() + 10000000000ull;
    loop_run(close_tick);
}

void json_common(strbuf_t *j, const span_t *s)
{
    strbuf_printf(j, ",\"gen_cpu_pct\":%.0f,\"server_cpu_pct\":%.0f,\"failures\":%d", s->self_pct,
                  s->srv_pct, failures);
    strbuf_printf(j, ",\"gen_received\":%llu,\"gen_us_per_received\":%.2f", (unsigned long long)s->rx,
                  s->rx ? 1e6 * s->self_s / (double)s->rx : 0);
    /* how the generator read: stanzas without a tree, sessions on weft's
     * TLS record layer or kept by OpenSSL (bench_xmpp_io.c) */
    strbuf_printf(j, ",\"gen_received_raw\":%llu,\"gen_tls_taken\":%llu,\"gen_tls_kept\":%llu",
                  (unsigned long long)s->raw, (unsigned long long)bx_tls_taken, (unsigned long long)bx_tls_kept);
    if (failures) {
        strbuf_t e;
        strbuf_init(&e);
        for (const char *q = first_failure; *q; q++)
            if (*q != '"' && *q != '\\' && (unsigned char)*q >= 0x20)
                strbuf_putc(&e, *q);
        strbuf_printf(j, ",\"first_failure\":\"%s\"", e.data);
        strbuf_free(&e);
    }
}

void json_open(strbuf_t *j)
{
    strbuf_printf(j, "{\"scenario\":\"%s\",\"label\":\"%s\",\"tls\":\"%s\",\"mech\":\"%s\",\"transport\":\"%s\"",
                  opt.scenario, opt.label,
                  tgt.tls == BX_TLS_NONE ? "none" : tgt.tls == BX_TLS_STARTTLS ? "starttls" : "direct",
                  tgt.mech, tgt.ws_path ? "websocket" : "tcp");
    if (pair_split)
        strbuf_printf(j, ",\"domain\":\"%s\",\"peer_domain\":\"%s\"", tgt.domain, peer_tgt.domain);
}

/* ---- idle */

static int idle_roster(bx_conn_t *c, const xml_node_t *q)
{
    int sent = 0;
    for (int k = 1; k <= opt.contacts && k < opt.users; k++) {
        char jid[320];
        char user[64];
        snprintf(user, sizeof user, tgt.user_template, (c->idx + k) % opt.users);
        snprintf(jid, sizeof jid, "%s@%s", user, tgt.domain);
        int have = 0;
        for (const xml_node_t *it = q ? xml_child(q, NULL, "item") : NULL; it && !have;
             it = xml_next(it, NULL, "item")) {
            const char *ij = xml_attr_get(it, "jid");
            have = ij && strcmp(ij, jid) == 0;
        }
        if (have)
            continue;
        char buf[800];
        int n = snprintf(buf, sizeof buf,
                         "<iq type='set' id='rs%d'><query xmlns='jabber:iq:roster'>"
                         "<item jid='%s' name='%s'><group>bench</group></item></query></iq>",
                         k, jid, user);
        bx_conn_send(c, buf, (size_t)n);
        sent++;
    }
    return sent;
}

static const bx_handler_t idle_h = {
    .on_ready = sess_ready, .on_roster = idle_roster, .on_closed = sess_closed};

static int run_idle(void)
{
    int levels[32], nl = 0;
    if (opt.levels_s) {
        char *d = xstrdup(opt.levels_s), *save = NULL;
        for (char *t = strtok_r(d, ",", &save); t && nl < 32; t = strtok_r(NULL, ",", &save))
            levels[nl++] = atoi(t);
        free(d);
    } else {
        levels[nl++] = opt.users;
    }
    peers_alloc(opt.users);
    loop_for(opt.settle);
    long rss0 = rss_server_kb();
    span_t s;
    span_begin(&s);
    strbuf_t j, human;
    strbuf_init(&j);
    strbuf_init(&human);
    json_open(&j);
    strbuf_printf(&j, ",\"contacts\":%d,\"rss0_kb\":%ld,\"levels\":[", opt.contacts, rss0);
    strbuf_printf(&human, "idle %s: rss before %ld KiB (", opt.label, rss0);
    rss_each(&human);
    strbuf_puts(&human, ");");
    int ok = 0;
    for (int l = 0; l < nl; l++) {
        int n = levels[l] > opt.users ? opt.users : levels[l];
        uint64_t t0 = bx_now_ns();
        if (ramp_to(n, BX_F_ROSTER | BX_F_PRESENCE, &idle_h) != 0) {
            fprintf(stderr, "idle: only %d of %d sessions ready (%s)\n", n_ready, n, first_failure);
            break;
        }
        double ramp_s = since_s(t0);
        loop_for(opt.settle);
        long rss = rss_server_kb();
        double per = n ? (double)(rss - rss0) / n : 0;
        strbuf_printf(&j, "%s{\"sessions\":%d,\"rss_kb\":%ld,\"kb_per_session\":%.2f,\"ramp_s\":%.2f}",
                      l ? "," : "", n, rss, per, ramp_s);
        strbuf_printf(&human, " N=%d rss %ld KiB = %.2f KiB/session (ramp %.1fs; ", n, rss, per,
                      ramp_s);
        rss_each(&human);
        strbuf_puts(&human, ");");
        ok++;
    }
    span_end(&s);
    strbuf_puts(&j, "]");
    json_common(&j, &s);
    strbuf_puts(&j, "}");
    close_all();
    printf("%s\n", j.data);
    fprintf(stderr, "%s gen cpu %.0f%%, server cpu %.0f%%, failures %d\n", human.data, s.self_pct,
            s.srv_pct, failures);
    strbuf_free(&j);
    strbuf_free(&human);
    return ok == nl ? 0 : 1;
}

/* ---- chat */

static int chat_running, chat_measuring, chat_phase;
static uint64_t chat_t0, chat_delivered, chat_errors, chat_gaps, chat_reorder;
static lat_t chat_lat;
static span_t chat_span;
/* Each server process's CPU over the measured interval: what one message
 * costs each of them (server_us_per_msg_each), which a throughput figure
 * on a shared machine does not tell. */
static double chat_cpu0[BX_MAX_PROCS], chat_cpu1[BX_MAX_PROCS], chat_load0, chat_load1;
static char chat_names[BX_MAX_PROCS][16];
static int chat_np;
static char pad[1024];

static void chat_send(peer_t *p, int idx)
{
    peer_t *q = &peers[idx ^ 1];
    if (!p->c || !q->c)
        return;
    char buf[2048];
    int n = snprintf(buf, sizeof buf,
                     "<message to='%s' type='chat' id='m%u'><body>%u %llu %s</body></message>",
                     q->c->jid, p->next_seq, p->next_seq, (unsigned long long)bx_now_ns(), pad);
    bx_conn_send(p->c, buf, (size_t)n);
    p->next_seq++;
    p->inflight++;
    p->sent++;
}

static void chat_body(bx_conn_t *c, const char *text)
{
    unsigned seq;
    unsigned long long ts;
    if (sscanf(text, "%u %llu", &seq, &ts) != 2)
        return;
    uint64_t now = bx_now_ns();
    peer_t *r = c->ud;
    int sidx = c->idx ^ 1;
    peer_t *s = &peers[sidx];
    r->recvd++;
    if (seq == r->expect_seq) {
        r->expect_seq++;
    } else if (seq > r->expect_seq) {
        chat_gaps += seq - r->expect_seq;
        r->expect_seq = seq + 1;
    } else {
        chat_reorder++;
    }
    if (s->inflight)
        s->inflight--;
    if (chat_measuring) {
        chat_delivered++;
        lat_add(&chat_lat, now - ts);
    }
    if (chat_running && s->inflight < (uint32_t)opt.window)
        chat_send(s, sidx);
}

static void chat_stanza(bx_conn_t *c, xml_node_t *st)
{
    if (strcmp(st->name, "message") != 0)
        return;
    const char *type = xml_attr_get(st, "type");
    if (type && strcmp(type, "error") == 0) {
        chat_errors++;
        return;
    }
    const xml_node_t *b = xml_child(st, NULL, "body");
    if (!b || !b->first_child || !b->first_child->text)
        return;
    chat_body(c, b->first_child->text);
}

/* Chat messages are read from their bytes (bench_xmpp_raw.c); errors and
 * anything else as trees. */
static int chat_raw_want(bx_conn_t *c, const char *name, const char **attrs)
{
    (void)c;
    const char *type = xml_attrs_find(attrs, "type");
    return !strcmp(name, "message") && type && !strcmp(type, "chat");
}

static int chat_raw(bx_conn_t *c, const char **attrs, const char *bytes, size_t len)
{
    (void)attrs;
    char text[2048];
    int r = bx_raw_child_text(bytes, len, "body", text, sizeof text);
    if (r < 0)
        return 0;                               /* the tree will tell */
    if (r > 0)
        chat_body(c, text);
    return 1;
}

static const bx_handler_t chat_h = {.on_ready = sess_ready,
                                    .on_stanza = chat_stanza,
                                    .raw_want = chat_raw_want,
                                    .on_raw = chat_raw,
                                    .on_closed = sess_closed};

static void chat_tick(void)
{
    double t = since_s(chat_t0);
    if (chat_phase == 0 && t >= 1.0) {
        chat_phase = 1;
        chat_measuring = 1;
        chat_load0 = loadavg_1m();
        chat_np = cpu_server_each(chat_cpu0, chat_names, BX_MAX_PROCS);
        span_begin(&chat_span);
    } else if (chat_phase == 1 && t >= 1.0 + opt.seconds) {
        chat_phase = 2;
        chat_measuring = 0;
        chat_running = 0;
        span_end(&chat_span);
        cpu_server_each(chat_cpu1, chat_names, BX_MAX_PROCS);
        chat_load1 = loadavg_1m();
    } else if (chat_phase == 2) {
        uint64_t inflight = 0;
        for (int i = 0; i < n_peers; i++)
            inflight += peers[i].inflight;
        if (inflight == 0 || t >= 1.0 + opt.seconds + 10)
            loop_stop();
    }
}

static int run_chat(void)
{
    int n = 2 * opt.pairs;
    size_t pl = (size_t)opt.body_bytes < sizeof pad - 1 ? (size_t)opt.body_bytes : sizeof pad - 1;
    memset(pad, 'x', pl);
    pair_split = have_peer;
    peers_alloc(n);
    if (ramp_to(n, BX_F_PRESENCE, &chat_h) != 0) {
        fprintf(stderr, "chat: only %d of %d sessions ready (%s)\n", n_ready, n, first_failure);
        return 1;
    }
    chat_t0 = bx_now_ns();
    chat_running = 1;
    for (int i = 0; i < n; i++)
        for (int w = 0; w < opt.window; w++)
            chat_send(&peers[i], i);
    loop_run(chat_tick);
    uint64_t sent = 0, recvd = 0;
    for (int i = 0; i < n; i++)
        sent += peers[i].sent, recvd += peers[i].recvd;
    double rate = chat_delivered / opt.seconds;
    double p50 = lat_q(&chat_lat, 0.50), p99 = lat_q(&chat_lat, 0.99), mx = lat_q(&chat_lat, 1.0);
    close_all();
    strbuf_t j;
    strbuf_init(&j);
    json_open(&j);
    strbuf_printf(&j,
                  ",\"pairs\":%d,\"window\":%d,\"seconds\":%.1f,\"msgs_per_s\":%.0f,\"p50_ms\":%.3f,"
                  "\"p99_ms\":%.3f,\"max_ms\":%.3f,\"sent\":%llu,\"received\":%llu,\"lost\":%lld,"
                  "\"gaps\":%llu,\"reordered\":%llu,\"error_replies\":%llu",
                  opt.pairs, opt.window, opt.seconds, rate, p50, p99, mx, (unsigned long long)sent,
                  (unsigned long long)recvd, (long long)(sent - recvd),
                  (unsigned long long)chat_gaps, (unsigned long long)chat_reorder,
                  (unsigned long long)chat_errors);
    strbuf_puts(&j, ",\"server_us_per_msg_each\":{");
    for (int i = 0; i < chat_np; i++)
        strbuf_printf(&j, "%s\"%s\":%.2f", i ? "," : "", chat_names[i],
                      chat_delivered ? 1e6 * (chat_cpu1[i] - chat_cpu0[i]) / (double)chat_delivered : 0);
    strbuf_printf(&j, "},\"loadavg_start\":%.2f,\"loadavg_end\":%.2f", chat_load0, chat_load1);
    json_common(&j, &chat_span);
    strbuf_puts(&j, "}");
    printf("%s\n", j.data);
    fprintf(stderr,
            "chat %s: %d pairs window %d: %.0f msg/s, latency p50 %.2f ms p99 %.2f ms max %.2f ms, "
            "sent %llu received %llu lost %lld; gen cpu %.0f%% (%.2f us/received), server cpu %.0f%%, "
            "failures %d\n",
            opt.label, opt.pairs, opt.window, rate, p50, p99, mx, (unsigned long long)sent,
            (unsigned long long)recvd, (long long)(sent - recvd), chat_span.self_pct,
            chat_span.rx ? 1e6 * chat_span.self_s / (double)chat_span.rx : 0, chat_span.srv_pct, failures);
    strbuf_free(&j);
    return sent == recvd && failures == 0 ? 0 : 1;
}

/* ---- steady: chat at a fixed rate through a component outage
 *
 * Pair i is sender 2i and receiver 2i+1 (on --peer-host when given). Each
 * sender sends --rate messages/s to the receiver's bare JID for --seconds; a
 * body is "seq send-time". A client whose connection is lost is reconnected
 * (0.1 s backoff doubling to 1 s, jittered) and keeps its place, so a
 * receiver gets what was sent meanwhile from offline storage (counted when it
 * carries a XEP-0203 delay). After --seconds the senders stop and the run
 * drains for at most --drain seconds until every message arrived. SIGUSR1
 * marks the kill of a component, SIGUSR2 its restart; the recovery time is
 * from the mark until every pair has received a message sent after it.
 * SIGTERM ends the run at once with the report as it stands ("cut_short"):
 * a test that sees the server stop making progress ends the drain early
 * instead of waiting out --drain, and still gets the figures. */

static int steady_on, steady_phase;
static int steady_cut;                 /* SIGTERM (a libevent signal event): report now */
static unsigned steady_nonce;          /* tells this run's messages from older offline ones */
static uint64_t steady_t0, steady_done_ns, steady_drain_ns, steady_kill_ns, steady_restart_ns;
static uint64_t steady_bounced, steady_unparsed, steady_disconnects;
static char steady_first_loss[200];
#define STEADY_TIMELINE 3600
static uint32_t steady_timeline[STEADY_TIMELINE]; /* messages received per second of the run */

static void steady_schedule(peer_t *p, double delay)
{
    double jitter = 0.75 + 0.5 * (double)(random() % 1000) / 1000.0;
    p->retry_ns = bx_now_ns() + (uint64_t)(delay * jitter * 1e9);
}

static void steady_ready(bx_conn_t *c)
{
    peer_t *p = c->ud;
    if (!steady_on) {
        sess_ready(c);
        return;
    }
    p->ready = 1;
    n_ready++;
    p->backoff = 0;
    p->next_send_ns = bx_now_ns();
    if (p->lost_once)
        p->reconnects++;
}

static void steady_closed(bx_conn_t *c, int clean, const char *why)
{
    peer_t *p = c->ud;
    if (!steady_on || closing_all) {
        sess_closed(c, clean, why);
        return;
    }
    int was_ready = p->ready;
    if (p->ready)
        n_ready--;
    p->ready = 0;
    p->c = NULL;
    n_live--;
    if (was_ready) {
        /* a session lost during the run: count it and come back soon */
        if (!steady_disconnects++)
            snprintf(steady_first_loss, sizeof steady_first_loss, "%s: %s", c->user, why);
        p->lost_once = 1;
        p->backoff = 0.1;
    } else {
        /* a reconnection attempt that failed (server not back yet) */
        p->backoff = p->backoff < 0.1 ? 0.1 : p->backoff * 2 > 1.0 ? 1.0 : p->backoff * 2;
    }
    steady_schedule(p, p->backoff);
}

static void steady_send(int i, uint64_t now)
{
    peer_t *p = &peers[i];
    char buf[1600];
    int n = snprintf(buf, sizeof buf,
                     "<message to='%s' type='chat' id='f%u'><body>%u %u %llu %s</body></message>",
                     peers[i ^ 1].to, p->next_seq, steady_nonce, p->next_seq,
                     (unsigned long long)now, pad);
    bx_conn_send(p->c, buf, (size_t)n);
    p->next_seq++;
    p->sent++;
}

static void steady_stanza(bx_conn_t *c, xml_node_t *st)
{
    if (strcmp(st->name, "message") != 0)
        return;
    const char *type = xml_attr_get(st, "type");
    if (type && strcmp(type, "error") == 0) {
        steady_bounced++;
        return;
    }
    const xml_node_t *b = xml_child(st, NULL, "body");
    unsigned nonce, seq;
    unsigned long long ts;
    if (!(c->idx & 1) || !b || !b->first_child || !b->first_child->text ||
        sscanf(b->first_child->text, "%u %u %llu", &nonce, &seq, &ts) != 3 || nonce != steady_nonce) {
        if (!steady_unparsed++) {
            strbuf_t sb;
            strbuf_init(&sb);
            xml_serialize(st, NS_CLIENT_BX, &sb);
            fprintf(stderr, "steady: first unexpected message to %s: %.300s\n", c->user, sb.data);
            strbuf_free(&sb);
        }
        return;
    }
    peer_t *r = c->ud;
    uint64_t now = bx_now_ns();
    size_t byte = seq / 8;
    if (byte >= r->seen_bytes) {
        size_t nb = r->seen_bytes ? r->seen_bytes : 64;
        while (nb <= byte)
            nb *= 2;
        r->seen = xrealloc(r->seen, nb);
        memset(r->seen + r->seen_bytes, 0, nb - r->seen_bytes);
        r->seen_bytes = nb;
    }
    uint8_t bit = (uint8_t)(1u << (seq % 8));
    r->recvd++;
    if (r->seen[byte] & bit) {
        r->dups++;
        return;
    }
    r->seen[byte] |= bit;
    r->uniq++;
    if (r->uniq > 1 && seq < r->max_seq)
        r->reordered++;
    if (seq > r->max_seq)
        r->max_seq = seq;
    if (xml_child(st, "urn:xmpp:delay", "delay"))
        r->delayed++;
    uint64_t sec = (now - steady_t0) / 1000000000u;
    if (sec < STEADY_TIMELINE)
        steady_timeline[sec]++;
    if (steady_kill_ns && ts >= steady_kill_ns && !r->recovered_ns)
        r->recovered_ns = now;
}

static const bx_handler_t steady_h = {
    .on_ready = steady_ready, .on_stanza = steady_stanza, .on_closed = steady_closed};

static void steady_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    (void)arg;
    uint64_t now = bx_now_ns();
    if (sig == SIGTERM) {
        steady_cut = 1;
        fprintf(stderr, "steady: SIGTERM at %.2f s, reporting now\n", (double)(now - steady_t0) / 1e9);
        return;
    }
    if (sig == SIGUSR1)
        steady_kill_ns = now;
    else
        steady_restart_ns = now;
    fprintf(stderr, "steady: %s marked at %.2f s\n", sig == SIGUSR1 ? "kill" : "restart",
            (double)(now - steady_t0) / 1e9);
}

/* Totals over all pairs. */
static void steady_totals(uint64_t *sent, uint64_t *uniq)
{
    *sent = *uniq = 0;
    for (int i = 0; i < n_peers; i += 2) {
        *sent += peers[i].sent;
        *uniq += peers[i + 1].uniq;
    }
}

static void steady_tick(void)
{
    uint64_t now = bx_now_ns();
    if (steady_cut) {
        loop_stop();
        return;
    }
    for (int i = 0; i < n_peers; i++) {
        peer_t *p = &peers[i];
        if (!p->c && p->retry_ns && now >= p->retry_ns) {
            p->retry_ns = 0;
            n_live++;
            p->c = bx_conn_start(target_for(i), &steady_h, i, BX_F_PRESENCE, "bench", p);
        }
    }
    if (steady_phase == 0) {
        uint64_t every = (uint64_t)(1e9 / opt.rate);
        for (int i = 0; i < n_peers; i += 2) {
            peer_t *p = &peers[i];
            if (!p->ready)
                continue;
            /* no burst after an outage; a full socket buffer waits */
            for (int k = 0; k < 10 && p->next_send_ns <= now && bx_conn_outq(p->c) < 262144; k++) {
                steady_send(i, now);
                p->next_send_ns += every;
            }
            if (p->next_send_ns + 1000000000u < now)
                p->next_send_ns = now;
        }
        if (now - steady_t0 >= (uint64_t)(opt.seconds * 1e9)) {
            steady_phase = 1;
            steady_drain_ns = now;
        }
        return;
    }
    uint64_t sent, uniq;
    steady_totals(&sent, &uniq);
    if (uniq >= sent && n_ready == n_peers) {
        if (!steady_done_ns)
            steady_done_ns = now;
        if (now - steady_done_ns > 500000000u) /* late duplicates */
            loop_stop();
    } else {
        steady_done_ns = 0;
    }
    if (now - steady_drain_ns > (uint64_t)(opt.drain * 1e9))
        loop_stop();
}

static void steady_report(const span_t *s)
{
    uint64_t sent, uniq, dups = 0, delayed = 0, reordered = 0, last_rec = 0;
    steady_totals(&sent, &uniq);
    int disc_s = 0, disc_r = 0, reconnected = 0, down = 0, unrecovered = 0;
    for (int i = 0; i < n_peers; i++) {
        peer_t *p = &peers[i];
        if (p->lost_once) {
            if (i & 1)
                disc_r++;
            else
                disc_s++;
            reconnected += p->ready;
        }
        down += !p->ready;
        if (!(i & 1))
            continue;
        dups += p->dups;
        delayed += p->delayed;
        reordered += p->reordered;
        if (!p->recovered_ns)
            unrecovered++;
        else if (p->recovered_ns > last_rec)
            last_rec = p->recovered_ns;
    }
    double at_kill = steady_kill_ns ? (double)(steady_kill_ns - steady_t0) / 1e9 : -1;
    double at_restart = steady_restart_ns ? (double)(steady_restart_ns - steady_t0) / 1e9 : -1;
    int recovered = steady_kill_ns && !unrecovered;
    double rec = recovered ? (double)(last_rec - steady_kill_ns) / 1e9 : -1;
    double rec_restart = recovered && steady_restart_ns && last_rec > steady_restart_ns
                             ? (double)(last_rec - steady_restart_ns) / 1e9 : recovered && steady_restart_ns ? 0 : -1;
    strbuf_t j;
    strbuf_init(&j);
    json_open(&j);
    strbuf_printf(&j,
                  ",\"pairs\":%d,\"clients\":%d,\"rate\":%.2f,\"seconds\":%.1f,\"sent\":%llu,"
                  "\"delivered\":%llu,\"lost\":%lld,\"duplicated\":%llu,\"bounced\":%llu,"
                  "\"offline_delivered\":%llu,\"reordered\":%llu,\"unparsed\":%llu,"
                  "\"disconnected\":%d,\"disconnected_senders\":%d,\"disconnected_receivers\":%d,"
                  "\"disconnects\":%llu,\"reconnected\":%d,\"still_disconnected\":%d,\"cut_short\":%s",
                  opt.pairs, n_peers, opt.rate, opt.seconds, (unsigned long long)sent,
                  (unsigned long long)uniq, (long long)(sent - uniq), (unsigned long long)dups,
                  (unsigned long long)steady_bounced, (unsigned long long)delayed,
                  (unsigned long long)reordered, (unsigned long long)steady_unparsed, disc_s + disc_r,
                  disc_s, disc_r, (unsigned long long)steady_disconnects, reconnected, down,
                  steady_cut ? "true" : "false");
    if (steady_kill_ns) {
        strbuf_printf(&j, ",\"kill_at_s\":%.3f,\"unrecovered_pairs\":%d", at_kill, unrecovered);
        if (recovered)
            strbuf_printf(&j, ",\"recovery_s\":%.3f", rec);
        else
            strbuf_puts(&j, ",\"recovery_s\":null");
    }
    if (steady_restart_ns) {
        strbuf_printf(&j, ",\"restart_at_s\":%.3f", at_restart);
        if (rec_restart >= 0)
            strbuf_printf(&j, ",\"recovery_after_restart_s\":%.3f", rec_restart);
        else
            strbuf_puts(&j, ",\"recovery_after_restart_s\":null");
    }
    if (steady_disconnects) {
        strbuf_puts(&j, ",\"first_disconnect\":\"");
        for (const char *q = steady_first_loss; *q; q++)
            if (*q != '"' && *q != '\\' && (unsigned char)*q >= 0x20)
                strbuf_putc(&j, *q);
        strbuf_puts(&j, "\"");
    }
    strbuf_puts(&j, ",\"timeline\":[");
    uint64_t secs = (bx_now_ns() - steady_t0) / 1000000000u + 1;
    for (uint64_t k = 0; k < secs && k < STEADY_TIMELINE; k++)
        strbuf_printf(&j, "%s%u", k ? "," : "", steady_timeline[k]);
    strbuf_puts(&j, "]");
    json_common(&j, s);
    strbuf_puts(&j, "}");
    printf("%s\n", j.data);
    fflush(stdout);
    fprintf(stderr,
            "steady %s: %d clients, %d disconnected (%d senders, %d receivers), %d still down; "
            "sent %llu delivered %llu lost %lld duplicated %llu (offline %llu, bounced %llu); "
            "recovery %.2f s after the kill, %.2f s after the restart\n",
            opt.label, n_peers, disc_s + disc_r, disc_s, disc_r, down, (unsigned long long)sent,
            (unsigned long long)uniq, (long long)(sent - uniq), (unsigned long long)dups,
            (unsigned long long)delayed, (unsigned long long)steady_bounced, rec, rec_restart);
    strbuf_free(&j);
}

static int run_steady(void)
{
    int n = 2 * opt.pairs;
    steady_nonce = (unsigned)getpid() ^ (unsigned)(bx_now_ns() >> 10);
    size_t pl = (size_t)opt.body_bytes < sizeof pad - 1 ? (size_t)opt.body_bytes : sizeof pad - 1;
    memset(pad, 'x', pl);
    pair_split = have_peer;
    peers_alloc(n);
    for (int i = 0; i < n; i++) {
        char user[64];
        const bx_target_t *t = target_for(i);
        snprintf(user, sizeof user, t->user_template, i);
        size_t len = strlen(user) + strlen(t->domain) + 2;
        peers[i].to = xmalloc(len);
        snprintf(peers[i].to, len, "%s@%s", user, t->domain);
    }
    struct event *sig1 = evsignal_new(tgt.base, SIGUSR1, steady_signal, NULL);
    struct event *sig2 = evsignal_new(tgt.base, SIGUSR2, steady_signal, NULL);
    struct event *sig3 = evsignal_new(tgt.base, SIGTERM, steady_signal, NULL);
    evsignal_add(sig1, NULL);
    evsignal_add(sig2, NULL);
    evsignal_add(sig3, NULL);
    int rc = 0;
    if (ramp_to(n, BX_F_PRESENCE, &steady_h) != 0) {
        fprintf(stderr, "steady: only %d of %d sessions ready (%s)\n", n_ready, n, first_failure);
        rc = 1;
    } else {
        loop_for(0.5); /* presence and any old offline messages settle */
        steady_unparsed = 0;
        steady_on = 1;
        steady_t0 = bx_now_ns();
        uint64_t every = (uint64_t)(1e9 / opt.rate);
        for (int i = 0; i < n; i += 2)
            peers[i].next_send_ns = steady_t0 + every * (uint64_t)(i / 2) / (uint64_t)opt.pairs;
        if (opt.ready_file) {
            FILE *f = fopen(opt.ready_file, "w");
            if (f)
                fclose(f);
        }
        fprintf(stderr, "steady: %d clients sending\n", n);
        span_t s;
        span_begin(&s);
        loop_run(steady_tick);
        span_end(&s);
        steady_report(&s);
    }
    close_all();
    event_free(sig1);
    event_free(sig2);
    event_free(sig3);
    for (int i = 0; i < n; i++) {
        free(peers[i].to);
        free(peers[i].seen);
    }
    return rc;
}

/* ---- login */

static int login_running, login_measuring, login_phase, login_active;
static uint64_t login_t0, login_count, login_counter;
static lat_t login_lat;
static span_t login_span;

static const bx_handler_t login_h;

static void login_start(long slot)
{
    char res[32];
    snprintf(res, sizeof res, "l%llu", (unsigned long long)login_counter++);
    int user = (int)(slot % (opt.users < opt.concurrency ? opt.concurrency : opt.users));
    login_active++;
    bx_conn_t *c = bx_conn_start(&tgt, &login_h, user, BX_F_ROSTER | BX_F_PRESENCE, res, NULL);
    if (c)
        c->slot = slot;
}

static void login_ready(bx_conn_t *c)
{
    c->ud = (void *)1; /* reached ready */
    if (login_measuring)
        lat_add(&login_lat, bx_now_ns() - c->t_start);
    bx_conn_close(c);
}

static void login_closed(bx_conn_t *c, int clean, const char *why)
{
    login_active--;
    if (clean && c->ud) {
        if (login_measuring)
            login_count++;
    } else {
        note_failure(c, why);
    }
    if (login_running)
        login_start(c->slot);
}

static const bx_handler_t login_h = {.on_ready = login_ready, .on_closed = login_closed};

static void login_tick(void)
{
    double t = since_s(login_t0);
    if (login_phase == 0 && t >= 1.0) {
        login_phase = 1;
        login_measuring = 1;
        span_begin(&login_span);
    } else if (login_phase == 1 && t >= 1.0 + opt.seconds) {
        login_phase = 2;
        login_measuring = 0;
        login_running = 0;
        span_end(&login_span);
    } else if (login_phase == 2 && (login_active == 0 || t >= 1.0 + opt.seconds + 15)) {
        loop_stop();
    }
}

static int run_login(void)
{
    login_t0 = bx_now_ns();
    login_running = 1;
    for (long s = 0; s < opt.concurrency; s++)
        login_start(s);
    loop_run(login_tick);
    double rate = login_count / opt.seconds;
    double p50 = lat_q(&login_lat, 0.5), p99 = lat_q(&login_lat, 0.99);
    strbuf_t j;
    strbuf_init(&j);
    json_open(&j);
    strbuf_printf(&j,
                  ",\"concurrency\":%d,\"seconds\":%.1f,\"logins_per_s\":%.1f,\"logins\":%llu,"
                  "\"p50_ms\":%.2f,\"p99_ms\":%.2f",
                  opt.concurrency, opt.seconds, rate, (unsigned long long)login_count, p50, p99);
    json_common(&j, &login_span);
    strbuf_puts(&j, "}");
    printf("%s\n", j.data);
    fprintf(stderr,
            "login %s: concurrency %d: %.1f logins/s (login p50 %.1f ms p99 %.1f ms); gen cpu "
            "%.0f%%, server cpu %.0f%%, failures %d%s%s\n",
            opt.label, opt.concurrency, rate, p50, p99, login_span.self_pct, login_span.srv_pct,
            failures, failures ? " first: " : "", failures ? first_failure : "");
    strbuf_free(&j);
    return login_count > 0 ? 0 : 1;
}

/* ---- fanout */

static int fan_round = -1, fan_seen, fan_hub_known;
static lat_t fan_lat;
static uint64_t fan_t0, fan_last;

/* 1 if from (a full or bare JID) belongs to bare. */
int from_is(const char *from, const char *bare)
{
    size_t n = strlen(bare);
    return from && strncmp(from, bare, n) == 0 && (from[n] == 0 || from[n] == '/');
}

static void fan_stanza(bx_conn_t *c, xml_node_t *st)
{
    if (strcmp(st->name, "presence") != 0)
        return;
    const char *type = xml_attr_get(st, "type");
    const char *from = xml_attr_get(st, "from");
    peer_t *p = c->ud;
    if (c->idx == 0) {
        /* the hub approves every subscription request */
        if (type && strcmp(type, "subscribe") == 0 && from) {
            char buf[400];
            int n = snprintf(buf, sizeof buf, "<presence to='%s' type='subscribed'/>", from);
            bx_conn_send(c, buf, (size_t)n);
        }
        return;
    }
    if (type || !from_is(from, peers[0].c ? peers[0].c->bare : "\x01"))
        return;
    if (!p->got_hub) {
        p->got_hub = 1;
        fan_hub_known++;
    }
    if (fan_round < 0 || p->round_seen == fan_round)
        return;
    const xml_node_t *s = xml_child(st, NULL, "status");
    char *txt = s ? xml_text(s) : NULL;
    int round = -1;
    if (txt && sscanf(txt, "fanout-%d", &round) == 1 && round == fan_round) {
        p->round_seen = fan_round;
        fan_seen++;
        fan_last = bx_now_ns();
        lat_add(&fan_lat, fan_last - fan_t0);
        if (fan_seen >= opt.contacts)
            loop_stop(); /* at once, not on the next 10 ms tick */
    }
    free(txt);
}

static const bx_handler_t fan_h = {
    .on_ready = sess_ready, .on_stanza = fan_stanza, .on_closed = sess_closed};

static int fan_waiting; /* 1: subscriptions, 2: a round */
static void fan_tick(void)
{
    if (fan_waiting == 1 && (fan_hub_known >= opt.contacts || since_s(fan_t0) > 30))
        loop_stop();
    if (fan_waiting == 2 && (fan_seen >= opt.contacts || since_s(fan_t0) > 10))
        loop_stop();
}

int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int run_fanout(void)
{
    int k = opt.contacts;
    peers_alloc(k + 1);
    if (ramp_to(1, BX_F_ROSTER | BX_F_PRESENCE, &fan_h) != 0 ||
        ramp_to(k + 1, BX_F_PRESENCE, &fan_h) != 0) {
        fprintf(stderr, "fanout: only %d of %d sessions ready (%s)\n", n_ready, k + 1,
                first_failure);
        return 1;
    }
    /* Subscriptions: each contact asks, the hub approves; on later runs the
     * contacts already have the hub's presence from the login probe. */
    for (int i = 1; i <= k; i++) {
        char buf[400];
        int n = snprintf(buf, sizeof buf, "<presence to='%s' type='subscribe'/>", peers[0].c->bare);
        if (!peers[i].got_hub)
            bx_conn_send(peers[i].c, buf, (size_t)n);
    }
    fan_waiting = 1;
    fan_t0 = bx_now_ns();
    loop_run(fan_tick);
    if (fan_hub_known < k) {
        fprintf(stderr, "fanout: only %d of %d contacts see the hub\n", fan_hub_known, k);
        close_all();
        return 1;
    }
    loop_for(0.5);
    double times[64];
    int nr = opt.rounds > 64 ? 64 : opt.rounds, complete = 0, missing = 0;
    span_t s;
    span_begin(&s);
    for (int r = 0; r < nr; r++) {
        fan_round = r;
        fan_seen = 0;
        char buf[200];
        int n = snprintf(buf, sizeof buf, "<presence><show>away</show><status>fanout-%d</status></presence>", r);
        fan_t0 = bx_now_ns();
        bx_conn_send(peers[0].c, buf, (size_t)n);
        fan_waiting = 2;
        loop_run(fan_tick);
        times[r] = (double)((fan_seen >= k ? fan_last : bx_now_ns()) - fan_t0) / 1e6;
        if (fan_seen >= k)
            complete++;
        else
            missing += k - fan_seen;
        loop_for(0.3);
    }
    span_end(&s);
    double sorted[64];
    memcpy(sorted, times, sizeof(double) * (size_t)nr);
    qsort(sorted, (size_t)nr, sizeof(double), cmp_dbl);
    double med = sorted[nr / 2], mx = sorted[nr - 1];
    double p50 = lat_q(&fan_lat, 0.5);
    close_all();
    strbuf_t j;
    strbuf_init(&j);
    json_open(&j);
    strbuf_printf(&j,
                  ",\"contacts\":%d,\"rounds\":%d,\"all_ms_median\":%.2f,\"all_ms_max\":%.2f,"
                  "\"delivery_p50_ms\":%.2f,\"complete_rounds\":%d,\"missing\":%d",
                  k, nr, med, mx, p50, complete, missing);
    json_common(&j, &s);
    strbuf_puts(&j, "}");
    printf("%s\n", j.data);
    fprintf(stderr,
            "fanout %s: %d contacts: all have it after %.2f ms (median of %d rounds, max %.2f ms), "
            "missing %d; gen cpu %.0f%%, server cpu %.0f%%\n",
            opt.label, k, med, nr, mx, missing, s.self_pct, s.srv_pct);
    strbuf_free(&j);
    return complete == nr ? 0 : 1;
}

/* ---- main */

static void usage(void)
{
    fprintf(stderr,
            "usage: weft-bench-xmpp [options]\n"
            "  --host IP --port N --domain D       server address and XMPP domain\n"
            "  --tls none|starttls|direct          (certificates are not verified)\n"
            "  --websocket PATH   XMPP over WebSocket (RFC 7395) at this HTTP path; --tls none or\n"
            "                     direct (wss); no STARTTLS over a WebSocket\n"
            "  --mech PLAIN|SCRAM-SHA-1|SCRAM-SHA-256\n"
            "  --no-scram-cache   run PBKDF2 on every login instead of keeping SaltedPassword\n"
            "                     per account as real clients do\n"
            "  --users N --user-template bench%%d --password P\n"
            "  --register none|ibr|'cmd:TEMPLATE'   TEMPLATE: %%u user %%p password %%d domain\n"
            "  --scenario register|idle|chat|steady|login|fanout|pep|muc\n"
            "  --levels N,N,...   idle: report memory at these session counts (default --users)\n"
            "  --contacts R|K     idle: roster items per user; fanout: contacts of the hub\n"
            "  --pairs P --window W --body-bytes B   chat\n"
            "  --seconds S        chat, login: measured time (after 1 s warm-up); steady: sending time\n"
            "  --rate R --drain S --ready-file F   steady: messages/s per sender, seconds to wait\n"
            "                     for the rest, file created when sending starts;\n"
            "                     SIGUSR1 marks a component kill, SIGUSR2 its restart,\n"
            "                     SIGTERM ends the run now with its report\n"
            "  --peer-host IP --peer-port N --peer-domain D   chat, steady: the second user of\n"
            "                     each pair logs in there (--register applies to both)\n"
            "  --concurrency C    login slots; connection ramp for the others\n"
            "  --rounds R         fanout presence changes\n"
            "  --rooms K --occupants N --senders S   muc: K rooms of N sessions, S senders each;\n"
            "                     --window W (default) or --rate R per sender, --seconds T\n"
            "  --muc-service D    muc: the rooms' domain (default conference.DOMAIN)\n"
            "  --pids P,P | --procs name,name   server processes for memory and CPU\n"
            "  --settle S         idle: seconds to wait before measuring memory\n"
            "  --label L          copied into the report\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"host", 1, 0, 'H'}, {"port", 1, 0, 'p'}, {"domain", 1, 0, 'd'}, {"tls", 1, 0, 't'},
        {"mech", 1, 0, 'm'}, {"users", 1, 0, 'n'}, {"user-template", 1, 0, 'u'},
        {"password", 1, 0, 'P'}, {"register", 1, 0, 'r'}, {"scenario", 1, 0, 's'},
        {"levels", 1, 0, 'L'}, {"contacts", 1, 0, 'k'}, {"pairs", 1, 0, 'a'},
        {"window", 1, 0, 'w'}, {"body-bytes", 1, 0, 'b'}, {"seconds", 1, 0, 'S'},
        {"concurrency", 1, 0, 'c'}, {"rounds", 1, 0, 'R'}, {"pids", 1, 0, 'i'},
        {"procs", 1, 0, 'I'}, {"settle", 1, 0, 'e'}, {"label", 1, 0, 'l'},
        {"cmd-jobs", 1, 0, 'j'}, {"peer-host", 1, 0, 'A'}, {"peer-port", 1, 0, 'B'},
        {"peer-domain", 1, 0, 'D'}, {"rate", 1, 0, 'T'}, {"drain", 1, 0, 'N'},
        {"ready-file", 1, 0, 'F'}, {"no-scram-cache", 0, 0, 'C'}, {"websocket", 1, 0, 'W'},
        {"rooms", 1, 0, 'K'}, {"occupants", 1, 0, 'O'}, {"senders", 1, 0, 'E'},
        {"muc-service", 1, 0, 'M'},
        {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    const char *tls = "none";
    tgt.domain = "localhost";
    tgt.mech = "SCRAM-SHA-256";
    tgt.password = "bench-password";
    tgt.user_template = "bench%d";
    tgt.scram_cache = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'H': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 'd': tgt.domain = optarg; break;
        case 't': tls = optarg; break;
        case 'W': tgt.ws_path = optarg; break;
        case 'm': tgt.mech = optarg; break;
        case 'n': opt.users = atoi(optarg); break;
        case 'u': tgt.user_template = optarg; break;
        case 'P': tgt.password = optarg; break;
        case 'r': opt.reg = optarg; break;
        case 's': opt.scenario = optarg; break;
        case 'L': opt.levels_s = optarg; break;
        case 'k': opt.contacts = atoi(optarg); break;
        case 'a': opt.pairs = atoi(optarg); break;
        case 'w': opt.window = atoi(optarg); break;
        case 'b': opt.body_bytes = atoi(optarg); break;
        case 'S': opt.seconds = atof(optarg); break;
        case 'c': opt.concurrency = atoi(optarg); break;
        case 'R': opt.rounds = atoi(optarg); break;
        case 'e': opt.settle = atof(optarg); break;
        case 'l': opt.label = optarg; break;
        case 'j': opt.cmd_jobs = atoi(optarg); break;
        case 'A': opt.peer_host = optarg; break;
        case 'B': opt.peer_port = atoi(optarg); break;
        case 'D': opt.peer_domain = optarg; break;
        case 'T': opt.rate = atof(optarg); opt.rate_given = 1; break;
        case 'K': opt.rooms = atoi(optarg); break;
        case 'O': opt.occupants = atoi(optarg); break;
        case 'E': opt.senders = atoi(optarg); break;
        case 'M': opt.muc_service = optarg; break;
        case 'N': opt.drain = atof(optarg); break;
        case 'F': opt.ready_file = optarg; break;
        case 'C': tgt.scram_cache = 0; break;
        case 'i': {
            char *d = xstrdup(optarg), *save = NULL;
            for (char *t = strtok_r(d, ",", &save); t && npids < MAX_PIDS; t = strtok_r(NULL, ",", &save))
                pids[npids++] = (pid_t)atoi(t);
            free(d);
            break;
        }
        case 'I': add_pids_by_name(optarg); break;
        default: usage();
        }
    }
    if (optind != argc || opt.users < 1 || opt.concurrency < 1 || opt.window < 1 ||
        opt.pairs < 1 || opt.seconds <= 0 || opt.cmd_jobs < 1 || opt.rate <= 0 || opt.rate > 1000 ||
        opt.drain < 0 || (opt.peer_domain && !opt.peer_host) || opt.rooms < 1 || opt.occupants < 1 ||
        opt.senders < 1 || opt.senders > opt.occupants)
        usage();
    if (!strstr(tgt.user_template, "%d"))
        log_fatal("event=bench-bad-option reason=\"--user-template needs %%d\"");
    if (strcmp(tls, "none") == 0)
        tgt.tls = BX_TLS_NONE;
    else if (strcmp(tls, "starttls") == 0)
        tgt.tls = BX_TLS_STARTTLS;
    else if (strcmp(tls, "direct") == 0)
        tgt.tls = BX_TLS_DIRECT;
    else
        usage();
    log_open("weft-bench-xmpp", "stderr", LOG_LVL_WARN);
    bx_trace = getenv("WEFT_BENCH_TRACE") != NULL;
    bx_no_takeover = getenv("WEFT_BENCH_OPENSSL") != NULL;
    bx_no_raw = getenv("WEFT_BENCH_TREES") != NULL;
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    char addr[300];
    snprintf(addr, sizeof addr, strchr(opt.host, ':') ? "[%s]:%d" : "%s:%d", opt.host, opt.port);
    if (net_addr_parse(addr, opt.port, &tgt.addr) != 0)
        log_fatal("event=bench-bad-option reason=\"bad address %s\"", addr);
    if (tgt.tls != BX_TLS_NONE) {
        char err[256];
        tgt.ssl_ctx = tls_client_ctx_new(NULL, 0, err, sizeof err);
        if (!tgt.ssl_ctx)
            log_fatal("event=bench-tls-failed reason=\"%s\"", err);
        /* STARTTLS sessions move to weft's record layer once set up
         * (bench_xmpp_io.c); the context must be prepared before any SSL. */
        if (tls_record_ctx_prepare(tgt.ssl_ctx) < 0)
            log_fatal("event=bench-tls-failed reason=\"tls_record_ctx_prepare\"");
    }
    tgt.base = event_base_new();
    if (!tgt.base)
        log_fatal("event=bench-libevent-failed");
    if (opt.peer_host) {
        peer_tgt = tgt;
        peer_tgt.domain = opt.peer_domain ? opt.peer_domain : tgt.domain;
        snprintf(addr, sizeof addr, strchr(opt.peer_host, ':') ? "[%s]:%d" : "%s:%d", opt.peer_host,
                 opt.peer_port);
        if (net_addr_parse(addr, opt.peer_port, &peer_tgt.addr) != 0)
            log_fatal("event=bench-bad-option reason=\"bad peer address %s\"", addr);
        have_peer = 1;
    }

    int need = opt.users;
    if (strcmp(opt.scenario, "chat") == 0 || strcmp(opt.scenario, "steady") == 0)
        need = 2 * opt.pairs;
    else if (strcmp(opt.scenario, "fanout") == 0 || strcmp(opt.scenario, "pep") == 0)
        need = opt.contacts + 1;
    else if (strcmp(opt.scenario, "muc") == 0)
        need = opt.rooms * opt.occupants;
    else if (strcmp(opt.scenario, "login") == 0 && opt.concurrency > opt.users)
        need = opt.concurrency;
    provision(need);

    int rc = 0;
    if (strcmp(opt.scenario, "register") == 0)
        rc = 0;
    else if (strcmp(opt.scenario, "idle") == 0)
        rc = run_idle();
    else if (strcmp(opt.scenario, "chat") == 0)
        rc = run_chat();
    else if (strcmp(opt.scenario, "steady") == 0)
        rc = run_steady();
    else if (strcmp(opt.scenario, "login") == 0)
        rc = run_login();
    else if (strcmp(opt.scenario, "fanout") == 0)
        rc = run_fanout();
    else if (strcmp(opt.scenario, "pep") == 0)
        rc = run_pep();
    else if (strcmp(opt.scenario, "muc") == 0)
        rc = run_muc();
    else
        usage();
    event_base_free(tgt.base);
    if (tgt.ssl_ctx)
        SSL_CTX_free(tgt.ssl_ctx);
    return rc;
}
