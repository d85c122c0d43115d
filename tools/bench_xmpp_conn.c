/* bench_xmpp_conn: one client connection of weft-bench-xmpp.
 *
 * Owns its bufferevent (a socket, a TLS socket, or a TLS filter over the
 * socket after STARTTLS, until bench_xmpp_io.c takes the reading over), its
 * parser and its SASL client. Drives the negotiation as a state machine and
 * gives the scenario only the stanzas it did not consume (bench_xmpp.h).
 *
 * The parser is xml_scan_stream: weft's scanner frames and checks every
 * element, and only what is not read raw goes on to expat and a tree. Once
 * the session is ready, the scenario may take messages raw (raw_want), as
 * the router takes what it forwards: no tree for the hot stanzas.
 *
 * Invariant: the connection is freed only here, never while the parser is
 * on the stack (in_feed defers it), and on_closed is called exactly once,
 * just before the free. */
#include "bench_xmpp.h"
#include "base64.h"
#include "log.h"
#include "sasl.h"
#include "tls_record.h"
#include "xml_scan.h"
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NS_CLIENT "jabber:client"
#define NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"
#define NS_ROSTER "jabber:iq:roster"
#define NS_REGISTER "jabber:iq:register"

enum {
    ST_CONNECTING, ST_FEATURES, ST_TLS_PROCEED, ST_TLS_HANDSHAKE, ST_REGISTER, ST_SASL,
    ST_BIND, ST_SESSION, ST_ROSTER, ST_ROSTER_SET, ST_READY, ST_CLOSING,
};

static void conn_read_cb(struct bufferevent *bev, void *arg);
int bx_trace; /* WEFT_BENCH_TRACE=1: one stderr line per stanza received */
uint64_t bx_stanzas_in, bx_raw_in;
int bx_no_takeover, bx_no_raw;

uint64_t bx_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void ssl_free_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    SSL_free(arg);
}

static void conn_free(bx_conn_t *c)
{
    const bx_handler_t *h = c->h;
    if (h->on_closed)
        h->on_closed(c, c->dead_clean, c->dead_why);
    if (c->rd_ev)
        event_free(c->rd_ev);
    if (c->takeover_ev)
        event_free(c->takeover_ev);
    if (c->bev && c->bev != c->raw)
        bufferevent_free(c->bev);
    if (c->ssl) {
        /* A filter's (made without CLOSE_ON_FREE, for the takeover). We may
         * be inside the filter's own callbacks, which can still look at its
         * SSL after ours return: it goes on the next turn of the loop. */
        struct timeval now = {0, 0};
        if (event_base_once(c->t->base, -1, EV_TIMEOUT, ssl_free_cb, c->ssl, &now) < 0)
            SSL_free(c->ssl);
    }
    if (c->raw)
        bufferevent_free(c->raw);
    if (c->rec)
        tls_record_free(c->rec);
    if (c->rin)
        evbuffer_free(c->rin);
    if (c->win)
        evbuffer_free(c->win);
    if (c->close_timer)
        event_free(c->close_timer);
    if (c->xs)
        xml_scan_stream_free(c->xs);
    if (c->sasl)
        sasl_client_free(c->sasl);
    free(c);
}

/* Ends the connection now, or right after the parser returns. */
static void conn_end(bx_conn_t *c, int clean, const char *why)
{
    if (c->dead)
        return;
    c->dead = 1;
    c->dead_clean = clean;
    snprintf(c->dead_why, sizeof c->dead_why, "%s", why ? why : "");
    if (!c->in_feed)
        conn_free(c);
}

void bx_conn_abort(bx_conn_t *c, const char *why)
{
    conn_end(c, 0, why);
}

void bx_conn_lost(bx_conn_t *c, const char *why)
{
    conn_end(c, c->state == ST_CLOSING, why);
}

void bx_conn_reap(bx_conn_t *c)
{
    if (c->dead && !c->in_feed)
        conn_free(c);
}

void bx_conn_send(bx_conn_t *c, const char *data, size_t len)
{
    if (c->dead || !c->bev)
        return;
    if (c->t->ws_path)
        bx_ws_send(c, data, len);
    else
        bx_io_write(c, data, len);
}

void bx_conn_sends(bx_conn_t *c, const char *s)
{
    bx_conn_send(c, s, strlen(s));
}

size_t bx_conn_outq(const bx_conn_t *c)
{
    return bx_io_outq(c);
}

static void close_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    bx_conn_t *c = arg;
    /* The server did not answer our close in time: count it clean anyway,
     * the session is over from the client's point of view. */
    conn_end(c, 1, "close-timeout");
}

void bx_conn_close(bx_conn_t *c)
{
    if (c->dead || c->state == ST_CLOSING)
        return;
    c->state = ST_CLOSING;
    bx_conn_sends(c, "</stream:stream>");
    c->close_timer = evtimer_new(c->t->base, close_timeout_cb, c);
    struct timeval tv = {5, 0};
    evtimer_add(c->close_timer, &tv);
}

static void send_header(bx_conn_t *c)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf,
                     "<?xml version='1.0'?><stream:stream xmlns='" NS_CLIENT "' "
                     "xmlns:stream='" XML_NS_STREAM "' to='%s' version='1.0'>",
                     c->t->domain);
    bx_conn_send(c, buf, (size_t)n);
}

static void xs_on_open(void *ctx, const xml_node_t *hdr, const char *ns)
{
    (void)ctx;
    (void)hdr;
    (void)ns;
}

static void xs_on_close(void *ctx)
{
    bx_conn_t *c = ctx;
    conn_end(c, c->state == ST_CLOSING || c->reg_status, "server closed the stream");
}

/* ---- negotiation steps */

/* One SaltedPassword per account (all accounts share the run's password),
 * in a table indexed by a hash of the user name; a collision just costs the
 * PBKDF2 of the next login. */
#define SALTED_SLOTS 16384
typedef struct salted_entry {
    char user[64];
    scram_salted_t k;
} salted_entry_t;

static scram_salted_t *salted_slot(const char *user)
{
    static salted_entry_t *table;
    if (!table)
        table = xcalloc(SALTED_SLOTS, sizeof *table);
    uint32_t h = 2166136261u;
    for (const char *p = user; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    salted_entry_t *e = &table[h % SALTED_SLOTS];
    if (strcmp(e->user, user)) {
        memset(e, 0, sizeof *e);
        snprintf(e->user, sizeof e->user, "%s", user);
    }
    return &e->k;
}

static void start_sasl(bx_conn_t *c, const xml_node_t *features)
{
    const xml_node_t *mechs = xml_child(features, NS_SASL, "mechanisms");
    int offered = 0;
    strbuf_t list;
    strbuf_init(&list);
    for (const xml_node_t *m = mechs ? xml_child(mechs, NS_SASL, "mechanism") : NULL; m;
         m = xml_next(m, NS_SASL, "mechanism")) {
        char *name = xml_text(m);
        strbuf_printf(&list, "%s%s", list.len ? "," : "", name);
        if (strcmp(name, c->t->mech) == 0)
            offered = 1;
        free(name);
    }
    if (!offered) {
        char why[200];
        snprintf(why, sizeof why, "mechanism %s not offered (offered: %s)", c->t->mech,
                 list.len ? list.data : "none");
        strbuf_free(&list);
        conn_end(c, 0, why);
        return;
    }
    strbuf_free(&list);
    c->sasl = sasl_client_new(c->t->mech, c->user, c->t->password, NULL, NULL);
    if (!c->sasl) {
        conn_end(c, 0, "sasl_client_new failed");
        return;
    }
    if (c->t->scram_cache)
        sasl_client_set_salted_cache(c->sasl, salted_slot(c->user));
    strbuf_t out, b64, msg;
    strbuf_init(&out);
    strbuf_init(&b64);
    strbuf_init(&msg);
    sasl_result_t r = sasl_client_step(c->sasl, NULL, 0, &out);
    if (r == SASL_FAIL) {
        conn_end(c, 0, "sasl initial step failed");
    } else {
        if (out.len)
            base64_encode((const unsigned char *)out.data, out.len, &b64);
        else
            strbuf_putc(&b64, '=');
        strbuf_printf(&msg, "<auth xmlns='" NS_SASL "' mechanism='%s'>%s</auth>", c->t->mech,
                      b64.data);
        bx_conn_send(c, msg.data, msg.len);
        c->state = ST_SASL;
    }
    strbuf_free(&out);
    strbuf_free(&b64);
    strbuf_free(&msg);
}

static void start_register(bx_conn_t *c)
{
    strbuf_t msg, u, p;
    strbuf_init(&msg);
    strbuf_init(&u);
    strbuf_init(&p);
    xml_escape(&u, c->user, strlen(c->user), 0);
    xml_escape(&p, c->t->password, strlen(c->t->password), 0);
    strbuf_printf(&msg,
                  "<iq type='set' id='reg'><query xmlns='" NS_REGISTER "'><username>%s</username>"
                  "<password>%s</password></query></iq>",
                  u.data, p.data);
    bx_conn_send(c, msg.data, msg.len);
    c->state = ST_REGISTER;
    strbuf_free(&msg);
    strbuf_free(&u);
    strbuf_free(&p);
}

static void start_bind(bx_conn_t *c)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf,
                     "<iq type='set' id='bind'><bind xmlns='" NS_BIND "'><resource>%s</resource>"
                     "</bind></iq>",
                     c->resource);
    bx_conn_send(c, buf, (size_t)n);
    c->state = ST_BIND;
}

static void go_ready(bx_conn_t *c)
{
    if (c->flags & BX_F_PRESENCE)
        bx_conn_sends(c, "<presence/>");
    c->state = ST_READY;
    if (c->h->on_ready)
        c->h->on_ready(c);
}

static void after_session(bx_conn_t *c)
{
    if (c->flags & BX_F_ROSTER) {
        bx_conn_sends(c, "<iq type='get' id='roster'><query xmlns='" NS_ROSTER "'/></iq>");
        c->state = ST_ROSTER;
    } else {
        go_ready(c);
    }
}

static void on_features(bx_conn_t *c, xml_node_t *f)
{
    if (c->t->tls == BX_TLS_STARTTLS && !c->tls_on) {
        if (!xml_child(f, NS_TLS, "starttls")) {
            conn_end(c, 0, "server does not offer STARTTLS");
            return;
        }
        bx_conn_sends(c, "<starttls xmlns='" NS_TLS "'/>");
        c->state = ST_TLS_PROCEED;
        return;
    }
    if (c->flags & BX_F_REGISTER) {
        start_register(c);
        return;
    }
    if (!c->authed) {
        start_sasl(c, f);
        return;
    }
    const xml_node_t *sess = xml_child(f, NS_SESSION, "session");
    c->need_session = sess && !xml_child(sess, NS_SESSION, "optional");
    start_bind(c);
}

/* Puts a TLS filter over the plain socket bufferevent. Called after the
 * parser returned, with the input buffer empty. Without CLOSE_ON_FREE, so
 * that the takeover (bench_xmpp_io.c) can free the filter and its SSL and
 * keep the socket's bufferevent. */
static void start_tls(bx_conn_t *c)
{
    SSL *ssl = SSL_new(c->t->ssl_ctx);
    if (!ssl) {
        conn_end(c, 0, "SSL_new failed");
        return;
    }
    SSL_set_tlsext_host_name(ssl, c->t->domain);
    struct bufferevent *tb =
        bufferevent_openssl_filter_new(c->t->base, c->bev, ssl, BUFFEREVENT_SSL_CONNECTING, 0);
    if (!tb) {
        SSL_free(ssl);
        conn_end(c, 0, "TLS filter failed");
        return;
    }
    c->raw = c->bev;
    c->ssl = ssl;
    c->bev = tb;
    c->state = ST_TLS_HANDSHAKE;
    bufferevent_setcb(tb, conn_read_cb, NULL, bx_conn_event_cb, c);
    bufferevent_enable(tb, EV_READ | EV_WRITE);
}

static void sasl_send(bx_conn_t *c, const char *elem, const strbuf_t *data)
{
    strbuf_t msg, b64;
    strbuf_init(&msg);
    strbuf_init(&b64);
    if (data->len)
        base64_encode((const unsigned char *)data->data, data->len, &b64);
    strbuf_printf(&msg, "<%s xmlns='" NS_SASL "'>%s</%s>", elem, b64.len ? b64.data : "", elem);
    bx_conn_send(c, msg.data, msg.len);
    strbuf_free(&msg);
    strbuf_free(&b64);
}

/* challenge or success: feeds the decoded data to the SASL client. */
static void on_sasl(bx_conn_t *c, xml_node_t *st, int success)
{
    char *txt = xml_text(st);
    strbuf_t in, out;
    strbuf_init(&in);
    strbuf_init(&out);
    int bad = base64_decode(txt, strlen(txt), &in) != 0;
    free(txt);
    if (bad) {
        conn_end(c, 0, "bad base64 from server");
    } else if (success && in.len == 0 && strcmp(c->t->mech, "PLAIN") == 0) {
        c->authed = 1;
    } else if (success && in.len == 0 && c->authed) {
        /* server-final already came in a challenge */
    } else {
        sasl_result_t r = sasl_client_step(c->sasl, in.data, in.len, &out);
        if (r == SASL_FAIL) {
            conn_end(c, 0, "SASL: bad server message or signature");
        } else if (r == SASL_DONE) {
            c->authed = 1;
            if (!success)
                sasl_send(c, "response", &out);
        } else if (success) {
            conn_end(c, 0, "SASL success before the exchange finished");
        } else {
            sasl_send(c, "response", &out);
        }
    }
    strbuf_free(&in);
    strbuf_free(&out);
    if (success && !c->dead) {
        if (!c->authed) {
            conn_end(c, 0, "SASL success without verification");
            return;
        }
        xml_scan_stream_restart(c->xs);
        send_header(c);
        c->state = ST_FEATURES;
    }
}

static const char *error_condition(const xml_node_t *st)
{
    const xml_node_t *e = xml_child(st, NULL, "error");
    const xml_node_t *cond = e ? xml_child(e, NULL, NULL) : NULL;
    while (cond && strcmp(cond->name, "text") == 0)
        cond = xml_next(cond, NULL, NULL);
    return cond ? cond->name : "unknown-error";
}

static void on_iq_result(bx_conn_t *c, xml_node_t *st, const char *id, int ok)
{
    if (c->state == ST_REGISTER && strcmp(id, "reg") == 0) {
        const char *cond = ok ? NULL : error_condition(st);
        if (ok || strcmp(cond, "conflict") == 0) {
            c->reg_status = ok ? "ok" : "conflict";
        } else {
            /* cond points into st, which is freed before the outcome is read */
            snprintf(c->reg_error, sizeof c->reg_error, "%s", cond);
            c->reg_status = c->reg_error;
        }
        bx_conn_close(c);
        return;
    }
    if (c->state == ST_BIND && strcmp(id, "bind") == 0) {
        if (!ok) {
            conn_end(c, 0, "bind failed");
            return;
        }
        const xml_node_t *b = xml_child(st, NS_BIND, "bind");
        const xml_node_t *j = b ? xml_child(b, NS_BIND, "jid") : NULL;
        char *jid = j ? xml_text(j) : xstrdup("");
        snprintf(c->jid, sizeof c->jid, "%s", jid);
        free(jid);
        if (c->need_session) {
            bx_conn_sends(c, "<iq type='set' id='sess'><session xmlns='" NS_SESSION "'/></iq>");
            c->state = ST_SESSION;
        } else {
            after_session(c);
        }
        return;
    }
    if (c->state == ST_SESSION && strcmp(id, "sess") == 0) {
        if (!ok) {
            conn_end(c, 0, "session failed");
            return;
        }
        after_session(c);
        return;
    }
    if (c->state == ST_ROSTER && strcmp(id, "roster") == 0) {
        if (!ok) {
            conn_end(c, 0, "roster get failed");
            return;
        }
        int n = c->h->on_roster ? c->h->on_roster(c, xml_child(st, NS_ROSTER, "query")) : 0;
        if (n > 0) {
            c->pending_rs = n;
            c->state = ST_ROSTER_SET;
        } else {
            go_ready(c);
        }
        return;
    }
    if (c->state == ST_ROSTER_SET && strncmp(id, "rs", 2) == 0) {
        if (!ok) {
            conn_end(c, 0, "roster set failed");
            return;
        }
        if (--c->pending_rs == 0)
            go_ready(c);
        return;
    }
    if (c->h->on_stanza)
        c->h->on_stanza(c, st);
}

static void xs_stanza(bx_conn_t *c, xml_node_t *st);

static void xs_on_stanza(void *ctx, xml_node_t *st)
{
    bx_conn_t *c = ctx;
    bx_stanzas_in++;
    if (c->dead) {
        xml_free(st);
        return;
    }
    xs_stanza(c, st);
    xml_free(st);
}

/* Hot messages of a ready session go raw to the scenario. */
static int xs_classify(void *ctx, const char *ns, const char *name, const char **attrs)
{
    bx_conn_t *c = ctx;
    return c->state == ST_READY && !c->dead && !bx_no_raw && c->h->raw_want && c->h->on_raw && !strcmp(ns, NS_CLIENT) &&
                   c->h->raw_want(c, name, attrs)
               ? XS_RAW
               : XS_TREE;
}

static void xs_on_raw(void *ctx, const char *ns, const char *name, const char **attrs, const char *bytes,
                      size_t len)
{
    (void)ns;
    bx_conn_t *c = ctx;
    bx_stanzas_in++;
    bx_raw_in++;
    if (c->dead)
        return;
    if (bx_trace)
        fprintf(stderr, "trace user=%s t_ms=%.1f state=%d got=%s raw\n", c->user,
                (double)(bx_now_ns() - c->t_start) / 1e6, c->state, name);
    if (c->h->on_raw(c, attrs, bytes, len))
        return;
    xml_node_t *st = bx_raw_tree(bytes, len);
    if (!st) {
        static int told;
        if (!told++)
            fprintf(stderr, "bench: %s: a %s could not be read alone; dropped\n", c->user, name);
        return;
    }
    if (c->h->on_stanza)
        c->h->on_stanza(c, st);
    xml_free(st);
}

/* A stanza as a tree (the caller frees it). */
static void xs_stanza(bx_conn_t *c, xml_node_t *st)
{
    const char *ns = st->ns, *name = st->name;
    if (bx_trace)
        fprintf(stderr, "trace user=%s t_ms=%.1f state=%d got=%s\n", c->user,
                (double)(bx_now_ns() - c->t_start) / 1e6, c->state, name);
    if (strcmp(ns, XML_NS_STREAM) == 0) {
        if (strcmp(name, "features") == 0) {
            on_features(c, st);
        } else if (strcmp(name, "error") == 0) {
            const xml_node_t *cond = xml_child(st, NULL, NULL);
            char why[120];
            snprintf(why, sizeof why, "stream error %s", cond ? cond->name : "?");
            conn_end(c, c->state == ST_CLOSING, why);
        }
    } else if (strcmp(ns, NS_TLS) == 0) {
        if (strcmp(name, "proceed") == 0 && c->state == ST_TLS_PROCEED) {
            xml_scan_stream_restart(c->xs);
            c->state = ST_TLS_HANDSHAKE; /* the read loop swaps the bufferevent */
        } else {
            conn_end(c, 0, "STARTTLS refused");
        }
    } else if (strcmp(ns, NS_SASL) == 0) {
        if (strcmp(name, "challenge") == 0) {
            on_sasl(c, st, 0);
        } else if (strcmp(name, "success") == 0) {
            on_sasl(c, st, 1);
        } else {
            const xml_node_t *cond = xml_child(st, NULL, NULL);
            char why[120];
            snprintf(why, sizeof why, "SASL failure %s", cond ? cond->name : "?");
            conn_end(c, 0, why);
        }
    } else if (strcmp(name, "iq") == 0) {
        const char *type = xml_attr_get(st, "type");
        const char *id = xml_attr_get(st, "id");
        if (!type || !id) {
            /* ignore */
        } else if (strcmp(type, "result") == 0 || strcmp(type, "error") == 0) {
            on_iq_result(c, st, id, strcmp(type, "result") == 0);
        } else if (c->h->on_iq && c->h->on_iq(c, st)) {
            /* the scenario answered */
        } else {
            /* Roster pushes get a result; anything else a polite error. */
            strbuf_t r, eid;
            strbuf_init(&r);
            strbuf_init(&eid);
            xml_escape(&eid, id, strlen(id), 1);
            const char *from = xml_attr_get(st, "from");
            strbuf_t efrom;
            strbuf_init(&efrom);
            if (from)
                xml_escape(&efrom, from, strlen(from), 1);
            if (xml_child(st, NS_ROSTER, "query"))
                strbuf_printf(&r, "<iq type='result' id='%s'%s%s%s/>", eid.data, from ? " to='" : "",
                              from ? efrom.data : "", from ? "'" : "");
            else
                strbuf_printf(&r,
                              "<iq type='error' id='%s'%s%s%s><error type='cancel'>"
                              "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                              "</error></iq>",
                              eid.data, from ? " to='" : "", from ? efrom.data : "", from ? "'" : "");
            bx_conn_send(c, r.data, r.len);
            strbuf_free(&r);
            strbuf_free(&eid);
            strbuf_free(&efrom);
        }
    } else if (c->state >= ST_ROSTER && c->h->on_stanza) {
        c->h->on_stanza(c, st);
    }
}

static const xml_stream_cb_t xs_cb = {
    .on_open = xs_on_open,
    .classify = xs_classify,
    .on_stanza = xs_on_stanza,
    .on_raw = xs_on_raw,
    .on_close = xs_on_close,
};

/* XML for the parser (one WebSocket message, or bytes of the stream); -1
 * ends the connection. */
static int conn_feed_xml(bx_conn_t *c, const char *data, size_t len)
{
    xs_err_t e = xml_scan_stream_feed(c->xs, data, len);
    if (e != XS_OK) {
        char why[160];
        snprintf(why, sizeof why, "parse error: %s", xml_scan_stream_error_text(c->xs));
        conn_end(c, 0, why);
        return -1;
    }
    return c->dead ? -1 : 0;
}

int bx_conn_feed(bx_conn_t *c, const char *data, size_t len)
{
    if (!c->t->ws_path)
        return conn_feed_xml(c, data, len);
    char why[160];
    evbuffer_add(c->win, data, len);
    if (bx_ws_read(c, c->win, conn_feed_xml, why, sizeof why) < 0 && !c->dead)
        conn_end(c, c->state == ST_CLOSING, why);
    return c->dead ? -1 : 0;
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    bx_conn_t *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    c->in_feed = 1;
    if (c->t->ws_path) {
        char why[160];
        if (bx_ws_read(c, in, conn_feed_xml, why, sizeof why) < 0 && !c->dead)
            conn_end(c, c->state == ST_CLOSING, why);
        c->in_feed = 0;
        if (c->dead)
            conn_free(c);
        return;
    }
    while (!c->dead && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        int e = conn_feed_xml(c, v.iov_base, v.iov_len);
        evbuffer_drain(in, v.iov_len);
        if (e < 0)
            break;
        if (c->state == ST_TLS_HANDSHAKE && !c->tls_on) {
            c->tls_on = 1;
            c->in_feed = 0;
            if (evbuffer_get_length(in) > 0) {
                conn_end(c, 0, "data after <proceed/>");
                return;
            }
            start_tls(c);
            return;
        }
    }
    c->in_feed = 0;
    if (c->dead)
        conn_free(c);
    else if (c->ssl && c->tls_on)
        bx_io_takeover_soon(c);   /* application data came through the filter */
}

void bx_conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    bx_conn_t *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        if (c->t->tls == BX_TLS_DIRECT || c->state == ST_TLS_HANDSHAKE)
            c->tls_on = 1;
        if (c->t->ws_path)
            bx_ws_upgrade(c);   /* the header (<open/>) follows the 101 */
        else
            send_header(c);
        c->state = ST_FEATURES;
        if (c->t->tls == BX_TLS_NONE)
            bx_io_start(c);     /* nothing left to negotiate below XMPP */
        return;
    }
    if (what & BEV_EVENT_EOF) {
        conn_end(c, c->state == ST_CLOSING, "connection closed by server");
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        char why[160];
        unsigned long e = bufferevent_get_openssl_error(bev);
        if (e)
            snprintf(why, sizeof why, "TLS error: %s", ERR_reason_error_string(e));
        else
            snprintf(why, sizeof why, "socket error: %s",
                     evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        conn_end(c, c->state == ST_CLOSING, why);
    }
}

bx_conn_t *bx_conn_start(const bx_target_t *t, const bx_handler_t *h, int idx, int flags,
                         const char *resource, void *ud)
{
    bx_conn_t *c = xcalloc(1, sizeof *c);
    c->t = t;
    c->h = h;
    c->idx = idx;
    c->flags = flags;
    c->ud = ud;
    c->t_start = bx_now_ns();
    snprintf(c->user, sizeof c->user, t->user_template, idx);
    snprintf(c->resource, sizeof c->resource, "%s", resource ? resource : "bench");
    snprintf(c->bare, sizeof c->bare, "%s@%s", c->user, t->domain);
    xml_limits_t lim;
    xml_limits_default(&lim);
    c->xs = xml_scan_stream_new(&xs_cb, c, &lim);
    if (t->tls == BX_TLS_DIRECT) {
        SSL *ssl = SSL_new(t->ssl_ctx);
        SSL_set_tlsext_host_name(ssl, t->domain);
        c->bev = bufferevent_openssl_socket_new(t->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                BEV_OPT_CLOSE_ON_FREE);
    } else {
        c->bev = bufferevent_socket_new(t->base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!c->bev) {
        log_warn("event=bench-conn-failed user=%s reason=bufferevent", c->user);
        xml_scan_stream_free(c->xs);
        free(c);
        return NULL;
    }
    bufferevent_setcb(c->bev, conn_read_cb, NULL, bx_conn_event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->state = ST_CONNECTING;
    if (bufferevent_socket_connect(c->bev, (const struct sockaddr *)&t->addr.ss, (int)t->addr.len) <
        0) {
        /* libevent reports the failure through the event callback later in
         * most cases; when it fails synchronously we end here. */
        conn_end(c, 0, "connect failed");
        return NULL;
    }
    return c;
}
