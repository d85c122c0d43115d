/* testcomp: a component built on comp_client, for integration tests.
 *
 * It binds names, can send numbered messages (body "seq:N") to a JID template,
 * echo what it receives, and counts what arrives: unique numbered messages,
 * duplicates, errors (bounces) and which bare JIDs it saw. On SIGTERM, or once
 * --expect unique messages arrived, it prints one JSON report line and exits.
 *
 *   testcomp --router ADDR --name N --secret S [--bind NAME]... [--default]
 *            [--to TEMPLATE [--to2 TEMPLATE] --count N --rate PER_SEC --users K --from JID]
 *            [--echo] [--expect N] [--timeout SECONDS] [--ready-file PATH] [--fan]
 * --fan: it asks the router for grouped deliveries (<w:fan/>, on_fan) and
 * counts the calls (fan_calls); each recipient is handled as a stanza.
 * TEMPLATE may hold %d, replaced by the message number modulo --users. */
#include "comp_client.h"
#include "comp_proto.h"
#include "log.h"
#include "strbuf.h"
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BINDS 16
#define MAX_SEEN (1u << 22)

static struct event_base *base;
static comp_client_t *cc;
static const char *to_tmpl, *to_tmpl2, *from_jid = NULL, *ready_file;
static long count, users = 1, expect;
static double rate = 1000;
static int echo;
static long sent, unique, dups, errors, received, send_failures, fan_calls;
static int want_fan;
static unsigned char *seen;      /* seen[seq] for numbered messages */
static char **users_seen;
static size_t nusers_seen;
static struct event *send_ev;

static void report_and_exit(void)
{
    printf("{\"received\": %ld, \"unique\": %ld, \"dups\": %ld, \"errors\": %ld, \"sent\": %ld, "
           "\"send_failures\": %ld, \"unacked\": %zu, \"fan_calls\": %ld, \"users\": [",
           received, unique, dups, errors, sent, send_failures, comp_client_unacked(cc), fan_calls);
    for (size_t i = 0; i < nusers_seen; i++)
        printf("%s\"%s\"", i ? ", " : "", users_seen[i]);
    printf("]}\n");
    fflush(stdout);
    event_base_loopexit(base, NULL);
}

static void note_user(const char *to)
{
    size_t n = strcspn(to, "/");
    for (size_t i = 0; i < nusers_seen; i++)
        if (strlen(users_seen[i]) == n && !strncmp(users_seen[i], to, n))
            return;
    users_seen = xrealloc(users_seen, (nusers_seen + 1) * sizeof *users_seen);
    users_seen[nusers_seen++] = xstrndup(to, n);
}

/* --expect reached: finish our own sending first (everything sent and
 * acknowledged by the router), so exiting loses nothing we were asked to send. */
static void finish_when_flushed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct event *self = arg;
    if ((!to_tmpl || sent >= count) && comp_client_unacked(cc) == 0) {
        event_free(self);
        report_and_exit();
        return;
    }
    struct timeval tv = {0, 50000};
    evtimer_add(self, &tv);
}

static void expect_reached(void)
{
    static int done;
    if (done++)
        return;
    struct event *ev = evtimer_new(base, finish_when_flushed, NULL);
    event_assign(ev, base, -1, 0, finish_when_flushed, ev);
    finish_when_flushed(-1, 0, ev);
}

static void on_stanza(void *ctx, xml_node_t *st)
{
    (void)ctx;
    received++;
    const char *type = xml_attr_get(st, "type");
    const char *to = xml_attr_get(st, "to");
    if (type && !strcmp(type, "error")) {
        errors++;
    } else if (!strcmp(st->name, "message")) {
        xml_node_t *body = xml_child(st, NULL, "body");
        char *text = body ? xml_text(body) : xstrdup("");
        if (!strncmp(text, "seq:", 4)) {
            long n = atol(text + 4);
            if (n >= 0 && (unsigned long)n < MAX_SEEN) {
                if (seen[n])
                    dups++;
                else
                    unique++;
                seen[n] = 1;
            }
        }
        free(text);
        if (to)
            note_user(to);
        if (echo) {
            const char *from = xml_attr_get(st, "from");
            char *f = from ? xstrdup(from) : NULL;
            char *t = to ? xstrdup(to) : NULL;
            xml_attr_set(st, "to", f);
            xml_attr_set(st, "from", t);
            if (comp_client_send(cc, st) < 0)
                send_failures++;
            free(f);
            free(t);
        }
    } else if (!strcmp(st->name, "iq") && type && (!strcmp(type, "get") || !strcmp(type, "set"))) {
        /* Answer pings and anything else with an empty result. */
        xml_node_t *r = xml_elem_new(COMP_NS_ACCEPT, "iq");
        xml_attr_set(r, "type", "result");
        xml_attr_set(r, "id", xml_attr_get(st, "id"));
        xml_attr_set(r, "to", xml_attr_get(st, "from"));
        xml_attr_set(r, "from", to);
        comp_client_send(cc, r);
        xml_free(r);
    }
    xml_free(st);
    if (expect && unique >= expect)
        expect_reached();
}

/* --fan: the deliveries of a <w:fan/>, each handled as on_stanza does one. */
static void on_fan(void *ctx, xml_node_t *st, const comp_fan_rcpt_t *r, size_t n)
{
    fan_calls++;
    for (size_t i = 0; i < n; i++) {
        xml_node_t *one = xml_copy(st);
        xml_attr_set(one, "to", r[i].to);
        on_stanza(ctx, one);
    }
    xml_free(st);
}

static void send_some(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    /* Ten ticks a second, rate/10 messages per tick. */
    long batch = (long)(rate / 10.0);
    if (batch < 1)
        batch = 1;
    for (long i = 0; i < batch && sent < count; i++) {
        char to[512], body[64];
        /* With --to2, odd messages go to the second template. */
        const char *tmpl = (to_tmpl2 && (sent & 1)) ? to_tmpl2 : to_tmpl;
        snprintf(to, sizeof to, tmpl, (int)(sent % users));
        snprintf(body, sizeof body, "seq:%ld", sent);
        xml_node_t *m = xml_elem_new(COMP_NS_ACCEPT, "message");
        xml_attr_set(m, "to", to);
        xml_attr_set(m, "from", from_jid);
        xml_attr_set(m, "type", "chat");
        xml_add_text(xml_add_child(m, COMP_NS_ACCEPT, "body"), body, strlen(body));
        int r = comp_client_send(cc, m);
        xml_free(m);
        if (r < 0) {
            send_failures++;
            break;
        }
        sent++;
    }
    if (sent >= count)
        event_del(send_ev);
}

static void on_ready(void *ctx)
{
    (void)ctx;
    if (ready_file) {
        FILE *f = fopen(ready_file, "w");
        if (f)
            fclose(f);
    }
    if (to_tmpl && !event_pending(send_ev, EV_TIMEOUT, NULL) && sent < count) {
        struct timeval tv = {0, 100000};
        event_add(send_ev, &tv);
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    report_and_exit();
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    report_and_exit();
}

int main(int argc, char **argv)
{
    comp_client_cfg_t cfg = {0};
    const char *binds[MAX_BINDS];
    double timeout = 0;
    cfg.router_name = "router";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--fan")) {
            want_fan = 1;
            continue;
        }
        if (!strcmp(a, "--echo")) {
            echo = 1;
            continue;
        }
        if (!strcmp(a, "--tls")) {
            cfg.tls_always = 1;
            continue;
        }
        if (!strcmp(a, "--default")) {
            cfg.bind_default = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "testcomp: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--router"))
            cfg.router = v;
        else if (!strcmp(a, "--router-name"))
            cfg.router_name = v;
        else if (!strcmp(a, "--name"))
            cfg.name = v;
        else if (!strcmp(a, "--secret"))
            cfg.secret = v;
        else if (!strcmp(a, "--ca")) {
            cfg.tls_ca = v;
            cfg.tls_verify = 1;
        } else if (!strcmp(a, "--bind") && cfg.nbinds < MAX_BINDS)
            binds[cfg.nbinds++] = v;
        else if (!strcmp(a, "--to"))
            to_tmpl = v;
        else if (!strcmp(a, "--to2"))
            to_tmpl2 = v;
        else if (!strcmp(a, "--from"))
            from_jid = v;
        else if (!strcmp(a, "--count"))
            count = atol(v);
        else if (!strcmp(a, "--rate"))
            rate = atof(v);
        else if (!strcmp(a, "--users"))
            users = atol(v) > 0 ? atol(v) : 1;
        else if (!strcmp(a, "--expect"))
            expect = atol(v);
        else if (!strcmp(a, "--timeout"))
            timeout = atof(v);
        else if (!strcmp(a, "--ready-file"))
            ready_file = v;
        else if (!strcmp(a, "--log-level")) {
            log_level_t lvl;
            if (log_level_parse(v, &lvl) == 0)
                log_open("testcomp", "stderr", lvl);
        } else {
            fprintf(stderr, "testcomp: unknown option %s\n", a);
            return 2;
        }
    }
    if (!cfg.router || !cfg.name || !cfg.secret) {
        fprintf(stderr, "testcomp: --router, --name and --secret are required\n");
        return 2;
    }
    if (!from_jid)
        from_jid = cfg.nbinds ? binds[0] : cfg.name;
    cfg.binds = binds;
    cfg.max_buffer = 64u << 20;
    cfg.backoff_max = 1.0;
    seen = xcalloc(MAX_SEEN, 1);
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    comp_client_cb_t cb = {.on_ready = on_ready, .on_stanza = on_stanza, .on_fan = want_fan ? on_fan : NULL};
    cc = comp_client_new(base, &cfg, &cb, NULL);
    send_ev = event_new(base, -1, EV_PERSIST, send_some, NULL);
    struct event *sig = evsignal_new(base, SIGTERM, on_signal, NULL);
    struct event *sig2 = evsignal_new(base, SIGINT, on_signal, NULL);
    evsignal_add(sig, NULL);
    evsignal_add(sig2, NULL);
    struct event *tmo = evtimer_new(base, on_timeout, NULL);
    if (timeout > 0) {
        struct timeval tv = {(time_t)timeout, (suseconds_t)((timeout - (long)timeout) * 1e6)};
        evtimer_add(tmo, &tv);
    }
    event_base_dispatch(base);
    comp_client_free(cc);
    event_free(send_ev);
    event_free(sig);
    event_free(sig2);
    event_free(tmo);
    event_base_free(base);
    for (size_t i = 0; i < nusers_seen; i++)
        free(users_seen[i]);
    free(users_seen);
    free(seen);
    log_close();
    return 0;
}
