/* weft-bench-router: how fast the router forwards, against a plain byte relay.
 *
 * Two sides, "a" (binds a.test) and "b" (binds b.test), live on one event loop
 * in this one process (the machine the figure is quoted for has two cores: one
 * for the router, one for this generator). Each side sends fixed-size
 * <message/> stanzas to the other, keeping at most --window of its own stanzas
 * in flight (sent by it and not yet counted by the peer). After a warm-up
 * second the run is measured for --seconds: stanzas delivered per second (both
 * directions summed), the forwarder's CPU (utime+stime from /proc/PID/stat)
 * and this generator's own CPU (getrusage), so a saturated generator shows.
 *
 *   --router HOST:PORT --secret-a S --secret-b S [--router-pid PID]
 *       through weft-router. The default client ("raw") authenticates with
 *       SCRAM-SHA-256 through common/sasl, binds, then only counts
 *       "</message>" in the received bytes and acknowledges them with
 *       <w:a h='N'/> (the router stops forwarding to a component whose unacked
 *       window is full). --client comp uses common/comp_client instead (builds
 *       a tree of every received stanza, retains sent ones until acked): that
 *       measures the library, and the generator saturates first.
 *   --relay
 *       forks a plain TCP byte relay (accepts two connections, copies bytes
 *       each way with evbuffer_add_buffer) and pushes the identical stream
 *       through it: same stanzas, same window, same counting, same ack bytes.
 *       --relay-cpu N pins the relay to CPU N (pin the router the same way
 *       with taskset, and this generator to the other CPU).
 *
 * Output: one line of key=value fields (tools/bench-router.sh parses it).
 * Not a test: nothing here asserts a figure. */
#include "base64.h"
#include "comp_client.h"
#include "comp_proto.h"
#include "log.h"
#include "net.h"
#include "sasl.h"
#include "strbuf.h"
#include "xml_stream.h"
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAT "</message>"
#define PATLEN (sizeof PAT - 1)

enum { S_CONNECTING, S_STREAM, S_SESSION, S_BINDING, S_READY };

typedef struct side {
    const char *name, *secret, *bind, *peer_domain;
    struct side *peer;
    struct bufferevent *bev;      /* raw client and relay mode */
    xml_stream_t *xs;             /* handshake only */
    sasl_client_t *sasl;
    comp_client_t *cc;            /* --client comp */
    int state;
    uint64_t sent, recv, acked;
    char carry[PATLEN];
    size_t ncarry;
    strbuf_t stanza;              /* the stanza this side sends */
} side_t;

static struct event_base *base;
static side_t sides[2];
static const char *router_addr, *router_name = "router";
static int relay_mode, comp_mode;
static double seconds = 5.0;
static size_t stanza_size = 200;
static uint64_t window = 1000;
static pid_t target_pid;          /* router (--router-pid) or our relay child */
static int started;
static int relay_cpu = -1;        /* --relay-cpu: pin the relay child */

typedef struct snap {
    double wall, self_cpu, target_cpu;
    uint64_t recv;
} snap_t;
static snap_t snap0, snap1;

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* utime+stime of pid in seconds, or -1. Field 14 and 15 of /proc/PID/stat,
 * counted after the last ')' because comm may hold spaces. */
static double proc_cpu(pid_t pid)
{
    if (pid <= 0)
        return -1;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* after ')': state(3) ppid(4) ... utime(14) stime(15) */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static void take(snap_t *s)
{
    s->wall = now_mono();
    s->self_cpu = self_cpu();
    s->target_cpu = proc_cpu(target_pid);
    s->recv = sides[0].recv + sides[1].recv;
}

/* --- sending: the same window logic in every mode ---------------------------- */

static void build_stanza(side_t *s)
{
    strbuf_init(&s->stanza);
    strbuf_printf(&s->stanza, "<message to='%s' from='%s' type='chat' id='bench'><body>", s->peer_domain,
                  s->bind);
    const char *tail = "</body></message>";
    size_t need = s->stanza.len + strlen(tail);
    for (size_t i = need; i < stanza_size; i++)
        strbuf_putc(&s->stanza, 'x');
    strbuf_puts(&s->stanza, tail);
}

/* Sends until this side has `window` stanzas in flight (not yet counted by its
 * peer). One evbuffer_add per stanza; the bytes leave once per loop turn. */
static void top_up(side_t *s)
{
    if (!started)
        return;
    if (comp_mode) {
        while (s->sent - s->peer->recv < window) {
            if (comp_client_send_raw(s->cc, s->stanza.data, s->stanza.len) < 0)
                break;
            s->sent++;
        }
        return;
    }
    struct evbuffer *out = bufferevent_get_output(s->bev);
    while (s->sent - s->peer->recv < window) {
        evbuffer_add(out, s->stanza.data, s->stanza.len);
        s->sent++;
    }
}

/* --- receiving: count "</message>" in the bytes, nothing else ---------------- */

static void scan(side_t *s, const char *p, size_t n)
{
    uint64_t c = 0;
    if (s->ncarry) {
        /* A match straddling the previous chunk: carry holds < PATLEN bytes, so
         * any match here crosses the boundary and is counted once. */
        char tmp[2 * PATLEN];
        size_t k = n < PATLEN - 1 ? n : PATLEN - 1;
        memcpy(tmp, s->carry, s->ncarry);
        memcpy(tmp + s->ncarry, p, k);
        if (memmem(tmp, s->ncarry + k, PAT, PATLEN))
            c++;
    }
    const char *q = p, *end = p + n;
    while ((size_t)(end - q) >= PATLEN && (q = memmem(q, (size_t)(end - q), PAT, PATLEN)) != NULL) {
        c++;
        q += PATLEN;
    }
    /* keep the last PATLEN-1 bytes of carry+p */
    if (n >= PATLEN - 1) {
        memcpy(s->carry, end - (PATLEN - 1), PATLEN - 1);
        s->ncarry = PATLEN - 1;
    } else {
        char tmp[2 * PATLEN];
        memcpy(tmp, s->carry, s->ncarry);
        memcpy(tmp + s->ncarry, p, n);
        size_t t = s->ncarry + n, keep = t < PATLEN - 1 ? t : PATLEN - 1;
        memcpy(s->carry, tmp + t - keep, keep);
        s->ncarry = keep;
    }
    s->recv += c;
}

/* Counts, acknowledges (the router needs it; the relay carries the same bytes
 * to the other side, which ignores them) and lets the peer send more. */
static void count_input(side_t *s, struct evbuffer *in)
{
    int nv = evbuffer_peek(in, -1, NULL, NULL, 0);
    struct evbuffer_iovec vs[64];
    struct evbuffer_iovec *v = nv <= 64 ? vs : malloc((size_t)nv * sizeof *v);
    nv = evbuffer_peek(in, -1, NULL, v, nv);
    for (int i = 0; i < nv; i++)
        scan(s, v[i].iov_base, v[i].iov_len);
    if (v != vs)
        free(v);
    evbuffer_drain(in, evbuffer_get_length(in));
    if (s->recv != s->acked) {
        char buf[48];
        int k = snprintf(buf, sizeof buf, "<w:a h='%llu'/>", (unsigned long long)s->recv);
        bufferevent_write(s->bev, buf, (size_t)k);
        s->acked = s->recv;
    }
    top_up(s->peer);
}

/* --- the raw client's handshake (stream, SCRAM, session, bind) --------------- */

static void start_if_ready(void);

static void raw_write(side_t *s, const char *p, size_t n)
{
    bufferevent_write(s->bev, p, n);
}

static void raw_header(side_t *s)
{
    strbuf_t sb;
    strbuf_init(&sb);
    comp_proto_header(&sb, NULL, router_name, NULL, 1);
    raw_write(s, sb.data, sb.len);
    strbuf_free(&sb);
}

static void hs_stanza(void *ctx, xml_node_t *st)
{
    side_t *s = ctx;
    strbuf_t sb, in, out;
    strbuf_init(&sb);
    strbuf_init(&in);
    strbuf_init(&out);
    if (!strcmp(st->name, "features")) {
        if (xml_child(st, COMP_NS, "session")) {
            char ep[33];
            comp_proto_random_hex(ep, 16);
            strbuf_printf(&sb, "<w:session epoch='%s' next='1'/>", ep);
            s->state = S_SESSION;
        } else if (xml_child(st, NS_SASL, "mechanisms")) {
            s->sasl = sasl_client_new("SCRAM-SHA-256", s->name, s->secret, NULL, NULL);
            sasl_client_step(s->sasl, NULL, 0, &out);
            strbuf_puts(&sb, "<auth xmlns='" NS_SASL "' mechanism='SCRAM-SHA-256'>");
            base64_encode((const unsigned char *)out.data, out.len, &sb);
            strbuf_puts(&sb, "</auth>");
        } else {
            fprintf(stderr, "bench: %s: router offers neither SASL nor session (TLS required?)\n", s->name);
            exit(1);
        }
    } else if (!strcmp(st->name, "challenge") || !strcmp(st->name, "success")) {
        char *t = xml_text(st);
        if (!s->sasl || base64_decode(t, strlen(t), &in) < 0 ||
            sasl_client_step(s->sasl, in.data ? in.data : "", in.len, &out) == SASL_FAIL) {
            fprintf(stderr, "bench: %s: bad SASL exchange\n", s->name);
            exit(1);
        }
        free(t);
        if (!strcmp(st->name, "challenge")) {
            strbuf_puts(&sb, "<response xmlns='" NS_SASL "'>");
            base64_encode((const unsigned char *)out.data, out.len, &sb);
            strbuf_puts(&sb, "</response>");
        } else {
            xml_stream_restart(s->xs);
            comp_proto_header(&sb, NULL, router_name, NULL, 1);
        }
    } else if (!strcmp(st->name, "failure") || !strcmp(st->name, "error")) {
        fprintf(stderr, "bench: %s: authentication failed or stream error\n", s->name);
        exit(1);
    } else if (!strcmp(st->name, "session") && s->state == S_SESSION) {
        strbuf_printf(&sb, "<w:bind name='%s'/>", s->bind);
        s->state = S_BINDING;
    } else if (!strcmp(st->name, "bind-error")) {
        fprintf(stderr, "bench: %s: cannot bind %s\n", s->name, s->bind);
        exit(1);
    } else if (!strcmp(st->name, "bound") && s->state == S_BINDING) {
        s->state = S_READY;
    }
    if (sb.len)
        raw_write(s, sb.data, sb.len);
    strbuf_free(&sb);
    strbuf_free(&in);
    strbuf_free(&out);
    xml_free(st);
}

static void hs_open(void *ctx, const xml_node_t *hdr, const char *ns)
{
    (void)ctx;
    (void)hdr;
    (void)ns;
}

static void hs_close(void *ctx)
{
    side_t *s = ctx;
    fprintf(stderr, "bench: %s: router closed the stream\n", s->name);
    exit(1);
}

static const xml_stream_cb_t hs_cb = {.on_open = hs_open, .on_stanza = hs_stanza, .on_close = hs_close};

static void read_cb(struct bufferevent *bev, void *arg)
{
    side_t *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    /* Until bound, the tree parser drives the handshake. Nothing is sent to us
     * before both sides are bound, so no stanza is lost at the switch. */
    while (s->state != S_READY && evbuffer_get_length(in)) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        if (xml_stream_feed(s->xs, v.iov_base, v.iov_len) != XS_OK) {
            fprintf(stderr, "bench: %s: bad XML from router: %s\n", s->name, xml_stream_error_text(s->xs));
            exit(1);
        }
        evbuffer_drain(in, v.iov_len);
        if (s->state == S_READY)
            start_if_ready();
    }
    if (s->state == S_READY)
        count_input(s, in);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    side_t *s = arg;
    if (what & BEV_EVENT_CONNECTED) {
        if (relay_mode) {
            s->state = S_READY;
            start_if_ready();
        } else {
            s->state = S_STREAM;
            raw_header(s);
        }
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        fprintf(stderr, "bench: %s: connection lost (%s)\n", s->name, (what & BEV_EVENT_EOF) ? "eof" : "error");
        exit(1);
    }
}

static void raw_connect(side_t *s, const char *addr)
{
    net_addr_t na;
    if (net_addr_parse(addr, 5347, &na) < 0) {
        fprintf(stderr, "bench: bad address %s\n", addr);
        exit(2);
    }
    s->bev = net_connect(base, &na);
    if (!s->bev) {
        fprintf(stderr, "bench: cannot connect to %s\n", addr);
        exit(1);
    }
    if (!relay_mode) {
        xml_limits_t lim;
        xml_limits_default(&lim);
        s->xs = xml_stream_new(&hs_cb, s, &lim);
    }
    bufferevent_setcb(s->bev, read_cb, NULL, event_cb, s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

/* --- the comp_client variant ------------------------------------------------- */

static void cc_ready(void *ctx)
{
    side_t *s = ctx;
    s->state = S_READY;
    start_if_ready();
}

static void cc_stanza(void *ctx, xml_node_t *st)
{
    side_t *s = ctx;
    s->recv++;
    xml_free(st);
    top_up(s->peer);
}

static void cc_down(void *ctx)
{
    side_t *s = ctx;
    fprintf(stderr, "bench: %s: router link lost\n", s->name);
    exit(1);
}

static void cc_start(side_t *s)
{
    const char *binds[1] = {s->bind};
    comp_client_cfg_t cfg = {
        .router = router_addr, .router_name = router_name, .name = s->name, .secret = s->secret,
        .binds = binds, .nbinds = 1, .max_buffer = 64u << 20,
    };
    comp_client_cb_t cb = {.on_ready = cc_ready, .on_down = cc_down, .on_stanza = cc_stanza};
    s->cc = comp_client_new(base, &cfg, &cb, s);
}

/* --- the plain relay (child process) ---------------------------------------- */

static struct bufferevent *relay_conn[2];

static void relay_read(struct bufferevent *bev, void *arg)
{
    struct bufferevent *other = arg;
    evbuffer_add_buffer(bufferevent_get_output(other), bufferevent_get_input(bev));
}

static void relay_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        exit(0);
}

static void relay_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    (void)sa;
    (void)salen;
    (void)arg;
    struct event_base *b = evconnlistener_get_base(lis);
    int i = relay_conn[0] ? 1 : 0;
    relay_conn[i] = bufferevent_socket_new(b, fd, BEV_OPT_CLOSE_ON_FREE);
    if (i == 1) {
        evconnlistener_disable(lis);
        for (int k = 0; k < 2; k++) {
            bufferevent_setcb(relay_conn[k], relay_read, NULL, relay_event, relay_conn[1 - k]);
            bufferevent_enable(relay_conn[k], EV_READ | EV_WRITE);
        }
    }
}

/* Forks the relay on a free loopback port; returns its pid, port in *port. */
static pid_t relay_start(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sin;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(fd, 4) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &sl) < 0) {
        perror("bench: relay listen");
        exit(1);
    }
    *port = ntohs(sin.sin_port);
    pid_t pid = fork();
    if (pid < 0) {
        perror("bench: fork");
        exit(1);
    }
    if (pid > 0) {
        close(fd);
        return pid;
    }
    if (relay_cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(relay_cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) < 0)
            perror("bench: relay sched_setaffinity");
    }
    struct event_base *b = event_base_new();
    evutil_make_socket_nonblocking(fd);
    struct evconnlistener *lis = evconnlistener_new(b, relay_accept, NULL, LEV_OPT_CLOSE_ON_FREE, -1, fd);
    if (!lis)
        _exit(1);
    event_base_dispatch(b);
    _exit(0);
}

/* --- run ------------------------------------------------------------------- */

static struct event *measure_ev;
static int phase;

static void measure_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    int *phase = arg;
    if (*phase == 0) {
        take(&snap0);
        *phase = 1;
        struct timeval run = {(time_t)seconds, (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
        event_add(measure_ev, &run);
    } else {
        take(&snap1);
        event_base_loopbreak(base);
    }
}

static void start_if_ready(void)
{
    if (started || sides[0].state != S_READY || sides[1].state != S_READY)
        return;
    started = 1;
    top_up(&sides[0]);
    top_up(&sides[1]);
    struct timeval warm = {1, 0};
    measure_ev = event_new(base, -1, 0, measure_cb, &phase);
    event_add(measure_ev, &warm);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: weft-bench-router --router HOST:PORT --secret-a S --secret-b S [--router-pid PID]\n"
            "                         [--router-name NAME] [--client raw|comp]\n"
            "       weft-bench-router --relay [--relay-cpu N]\n"
            "       common: [--seconds N] [--size BYTES] [--window W]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *secret_a = NULL, *secret_b = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--relay")) {
            relay_mode = 1;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--router"))
            router_addr = v;
        else if (!strcmp(a, "--router-name"))
            router_name = v;
        else if (!strcmp(a, "--secret-a"))
            secret_a = v;
        else if (!strcmp(a, "--secret-b"))
            secret_b = v;
        else if (!strcmp(a, "--router-pid"))
            target_pid = (pid_t)atoi(v);
        else if (!strcmp(a, "--seconds"))
            seconds = atof(v);
        else if (!strcmp(a, "--size"))
            stanza_size = (size_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--window"))
            window = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--relay-cpu"))
            relay_cpu = atoi(v);
        else if (!strcmp(a, "--client"))
            comp_mode = !strcmp(v, "comp");
        else
            usage();
    }
    if (!relay_mode && (!router_addr || !secret_a || !secret_b))
        usage();
    if (seconds <= 0 || window == 0)
        usage();
    if (relay_mode)
        comp_mode = 0;
    signal(SIGPIPE, SIG_IGN);
    log_open("weft-bench-router", "stderr", LOG_LVL_WARN);

    sides[0] = (side_t){.name = "a", .secret = secret_a, .bind = "a.test", .peer_domain = "b.test",
                        .peer = &sides[1]};
    sides[1] = (side_t){.name = "b", .secret = secret_b, .bind = "b.test", .peer_domain = "a.test",
                        .peer = &sides[0]};
    build_stanza(&sides[0]);
    build_stanza(&sides[1]);
    base = event_base_new();

    char relay_addr[64];
    if (relay_mode) {
        int port;
        target_pid = relay_start(&port);
        snprintf(relay_addr, sizeof relay_addr, "127.0.0.1:%d", port);
        raw_connect(&sides[0], relay_addr);
        raw_connect(&sides[1], relay_addr);
    } else if (comp_mode) {
        cc_start(&sides[0]);
        cc_start(&sides[1]);
    } else {
        raw_connect(&sides[0], router_addr);
        raw_connect(&sides[1], router_addr);
    }
    /* Runs until the measurement timer (warm-up, then the run) breaks out. */
    event_base_dispatch(base);

    double wall = snap1.wall - snap0.wall;
    uint64_t n = snap1.recv - snap0.recv;
    double rate = (double)n / wall;
    double gen = (snap1.self_cpu - snap0.self_cpu) / wall * 100.0;
    double tcpu = snap0.target_cpu >= 0 && snap1.target_cpu >= 0 ? snap1.target_cpu - snap0.target_cpu : -1;
    printf("mode=%s client=%s size=%zu window=%llu seconds=%.2f stanzas=%llu stanzas_per_s=%.0f "
           "target_cpu_s=%.2f target_cpu_pct=%.0f target_cpu_s_per_million=%.3f gen_cpu_pct=%.0f\n",
           relay_mode ? "relay" : "router", relay_mode ? "raw" : comp_mode ? "comp" : "raw", sides[0].stanza.len,
           (unsigned long long)window, wall, (unsigned long long)n, rate, tcpu, tcpu >= 0 ? tcpu / wall * 100 : -1,
           tcpu >= 0 && n ? tcpu / ((double)n / 1e6) : -1, gen);
    fflush(stdout);
    if (relay_mode) {
        kill(target_pid, SIGTERM);
        waitpid(target_pid, NULL, 0);
    }
    return 0;
}
