/* conn: one server-to-server TCP connection and its XML stream, whichever
 * side opened it: output with a bound, stream headers and errors, the
 * STARTTLS switch-over, closing and freeing. What the stream means is up to
 * its owner (in.c or out.c) through s2s_conn_ops_t.
 *
 * Invariants: the owner hears on_gone exactly once and must forget the
 * connection then; a connection is freed only from a deferred callback
 * (conn_reap), never inside its own parser or bufferevent callbacks. */
#include "s2s.h"
#include "comp_proto.h"
#include "log.h"
#include "net.h"
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>

static s2s_conn_t *conn_list;
static size_t nconns[2];
static uint64_t next_serial = 1;

static void conn_read_cb(struct bufferevent *bev, void *ctx);
static void conn_write_cb(struct bufferevent *bev, void *ctx);
static void conn_event_cb(struct bufferevent *bev, short what, void *ctx);

s2s_conn_t *conn_first(void)
{
    return conn_list;
}

size_t conn_count(int outbound)
{
    return nconns[outbound ? 1 : 0];
}

/* ---------------------------------------------------------------- freeing */

static void conn_gone(s2s_conn_t *c, const char *reason)
{
    if (c->gone)
        return;
    c->gone = 1;
    if (c->ops->on_gone)
        c->ops->on_gone(c, reason);
}

static void conn_release_done(s2s_conn_t *c);

static void conn_free(s2s_conn_t *c)
{
    conn_gone(c, "freed");
    /* What is still unwritten will not be: as for a write into a broken
     * stream, the router is told it is done (the peer may have it). */
    while (c->pend_head < c->pend_len)
        link_done(c->pend[c->pend_head++].token);
    free(c->pend);
    if (c->pend_cb)
        evbuffer_remove_cb_entry(c->pend_cb_buf, c->pend_cb);
    if (c->bev)
        bufferevent_free(c->bev);
    if (c->xs)
        xml_stream_free(c->xs);
    if (c->lprev)
        c->lprev->lnext = c->lnext;
    else
        conn_list = c->lnext;
    if (c->lnext)
        c->lnext->lprev = c->lprev;
    nconns[c->outbound ? 1 : 0]--;
    free(c->starttls_sni);
    free(c);
}

static void conn_reap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    s2s_conn_t *c = arg;
    c->reap_pending = 0;
    if (!c->dead && net_bev_output_pending(c->bev) && daemon_now() - c->closing_at < s2s_config->t_close) {
        /* Under TLS the socket drains after the filter's write callback: look again. */
        c->reap_pending = 1;
        struct timeval tv = {0, 20000};
        event_base_once(daemon_base(), -1, EV_TIMEOUT, conn_reap, c, &tv);
        return;
    }
    conn_free(c);
}

static void conn_schedule_reap(s2s_conn_t *c)
{
    if (c->reap_pending)
        return;
    c->reap_pending = 1;
    struct timeval zero = {0, 0};
    event_base_once(daemon_base(), -1, EV_TIMEOUT, conn_reap, c, &zero);
}

/* Stops reading, tells the owner, and frees once the output left. */
static void conn_shutdown(s2s_conn_t *c, const char *reason)
{
    if (c->closed)
        return;
    c->closed = 1;
    c->closing_at = daemon_now();
    if (c->bev)
        bufferevent_disable(c->bev, EV_READ);
    conn_gone(c, reason);
    if (c->dead || !net_bev_output_pending(c->bev))
        conn_schedule_reap(c);
}

/* ---------------------------------------------------------------- output */

void conn_write(s2s_conn_t *c, const char *data, size_t len)
{
    if (c->closed || c->dead || !c->bev)
        return;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_get_length(out) + len > s2s_config->output_max) {
        log_warn("event=connection-dropped peer=%s reason=output-buffer-full bytes=%zu", c->peer,
                 evbuffer_get_length(out));
        c->dead = 1;
        conn_shutdown(c, "output-buffer-full");
        return;
    }
    c->last_active = daemon_now();
    c->plain_total += len;
    s2s_metrics_bytes(0, len);
    bufferevent_write(c->bev, data, len);
}

/* The TLS filter's socket output changed: bytes went to the kernel. */
static void conn_under_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    if (info->n_deleted && !evbuffer_get_length(buf))
        conn_release_done(arg);
}

/* Calls link_done for the stanzas whose bytes have reached the kernel: the
 * plaintext the bufferevent (or its TLS filter) has consumed, and only while
 * a TLS filter's socket has nothing left to write (its output is watched for
 * that). The write callback runs it when the bufferevent's output drains. */
static void conn_release_done(s2s_conn_t *c)
{
    if (c->pend_head == c->pend_len || !c->bev)
        return;
    struct bufferevent *under = bufferevent_get_underlying(c->bev);
    if (under && !c->pend_cb) {
        c->pend_cb_buf = bufferevent_get_output(under);
        c->pend_cb = evbuffer_add_cb(c->pend_cb_buf, conn_under_out_cb, c);
    }
    if (under && evbuffer_get_length(bufferevent_get_output(under)))
        return;
    uint64_t consumed = c->plain_total - evbuffer_get_length(bufferevent_get_output(c->bev));
    while (c->pend_head < c->pend_len && c->pend[c->pend_head].end <= consumed)
        link_done(c->pend[c->pend_head++].token);
    if (c->pend_head == c->pend_len)
        c->pend_head = c->pend_len = 0;
}

void conn_write_stanza(s2s_conn_t *c, const xml_node_t *el, uint64_t token)
{
    s2s_metrics_stanza(0, el->name);
    conn_write_node(c, el);
    if (c->closed || c->dead || !c->bev) {
        link_done(token);
        return;
    }
    if (c->pend_len == c->pend_cap) {
        c->pend_cap = c->pend_cap ? 2 * c->pend_cap : 64;
        c->pend = xrealloc(c->pend, c->pend_cap * sizeof *c->pend);
    }
    c->pend[c->pend_len].end = c->plain_total;
    c->pend[c->pend_len].token = token;
    c->pend_len++;
    conn_release_done(c);
}

void conn_write_str(s2s_conn_t *c, const char *s)
{
    conn_write(c, s, strlen(s));
}

void conn_write_node(s2s_conn_t *c, const xml_node_t *el)
{
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(el, NS_SERVER, &sb);
    conn_write(c, sb.data, sb.len);
    strbuf_free(&sb);
}

void conn_send_header(s2s_conn_t *c, const char *from, const char *to, const char *id)
{
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_puts(&sb, "<?xml version='1.0'?><stream:stream xmlns='" NS_SERVER "' xmlns:stream='" XML_NS_STREAM
                     "' xmlns:db='" NS_DIALBACK "'");
    const char *names[3] = {"from", "to", "id"};
    const char *vals[3] = {from, to, id};
    for (int i = 0; i < 3; i++) {
        if (!vals[i] || !*vals[i])
            continue;
        strbuf_printf(&sb, " %s='", names[i]);
        xml_escape(&sb, vals[i], strlen(vals[i]), 1);
        strbuf_puts(&sb, "'");
    }
    strbuf_puts(&sb, " version='1.0'>");
    c->header_sent = 1;
    conn_write(c, sb.data, sb.len);
    strbuf_free(&sb);
}

void conn_stream_error(s2s_conn_t *c, const char *condition, const char *text)
{
    if (c->closed)
        return;
    if (!c->header_sent)
        conn_send_header(c, NULL, NULL, "error");
    strbuf_t sb;
    strbuf_init(&sb);
    comp_proto_stream_error(&sb, condition, text);
    conn_write(c, sb.data, sb.len);
    strbuf_free(&sb);
    log_info("event=stream-error peer=%s direction=%s condition=%s%s%s%s", c->peer, c->outbound ? "out" : "in",
             condition, text ? " text=\"" : "", text ? text : "", text ? "\"" : "");
    conn_shutdown(c, condition);
}

void conn_close(s2s_conn_t *c, const char *reason)
{
    if (c->closed)
        return;
    if (c->header_sent)
        conn_write_str(c, "</stream:stream>");
    conn_shutdown(c, reason);
}

void conn_close_all(void)
{
    for (s2s_conn_t *c = conn_list; c; c = c->lnext)
        if (!c->closed)
            conn_stream_error(c, "system-shutdown", NULL);
}

void conn_free_all(void)
{
    while (conn_list)
        conn_free(conn_list);
}

/* ---------------------------------------------------------------- TLS */

SSL *conn_ssl(s2s_conn_t *c)
{
    return c->tls && c->bev ? bufferevent_openssl_get_ssl(c->bev) : NULL;
}

void conn_starttls(s2s_conn_t *c, int accepting, const char *sni)
{
    c->starttls_pending = 1;
    c->starttls_accepting = accepting;
    free(c->starttls_sni);
    c->starttls_sni = sni ? xstrdup(sni) : NULL;
}

static void conn_do_starttls(s2s_conn_t *c)
{
    c->starttls_pending = 0;
    struct evbuffer *plain_in = bufferevent_get_input(c->bev);
    evbuffer_drain(plain_in, evbuffer_get_length(plain_in));
    SSL_CTX *ctx = c->starttls_accepting ? listen_server_ctx() : listen_client_ctx();
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    if (ssl && !c->starttls_accepting && c->starttls_sni)
        SSL_set_tlsext_host_name(ssl, c->starttls_sni);
    struct bufferevent *tb =
        ssl ? bufferevent_openssl_filter_new(daemon_base(), c->bev, ssl,
                                             c->starttls_accepting ? BUFFEREVENT_SSL_ACCEPTING
                                                                   : BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE)
            : NULL;
    if (!tb) {
        log_warn("event=tls-failed peer=%s reason=setup", c->peer);
        if (ssl)
            SSL_free(ssl);
        c->dead = 1;
        conn_shutdown(c, "tls-setup");
        return;
    }
    c->bev = tb;
    c->tls = 1;
    bufferevent_setcb(tb, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_enable(tb, EV_READ | EV_WRITE);
}

void conn_restart(s2s_conn_t *c)
{
    xml_stream_restart(c->xs);
}

/* ---------------------------------------------------------------- parser */

static void conn_on_open(void *ctx, const xml_node_t *hdr, const char *default_ns)
{
    s2s_conn_t *c = ctx;
    if (!c->closed)
        c->ops->on_open(c, hdr, default_ns);
}

static void conn_on_stanza(void *ctx, xml_node_t *el)
{
    s2s_conn_t *c = ctx;
    if (c->closed) {
        xml_free(el);
        return;
    }
    c->ops->on_element(c, el);
}

static void conn_on_close(void *ctx)
{
    s2s_conn_t *c = ctx;
    conn_close(c, "peer-closed");
}

static const xml_stream_cb_t conn_parser_cb = {
    .on_open = conn_on_open,
    .on_stanza = conn_on_stanza,
    .on_close = conn_on_close,
};

/* ---------------------------------------------------------------- I/O */

static void conn_read_cb(struct bufferevent *bev, void *ctx)
{
    s2s_conn_t *c = ctx;
    struct evbuffer *in = bufferevent_get_input(bev);
    c->last_active = daemon_now();
    while (!c->closed && !c->starttls_pending && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t n = v.iov_len;
        s2s_metrics_bytes(1, n);
        xs_err_t err = xml_stream_feed(c->xs, v.iov_base, n);
        if (c->closed)
            break;
        evbuffer_drain(in, n);
        if (err == XS_ERR_CLOSED) {
            conn_close(c, "data-after-close");
        } else if (err != XS_OK) {
            log_info("event=parse-error peer=%s detail=\"%s\"", c->peer, xml_stream_error_text(c->xs));
            conn_stream_error(c, xs_err_condition(err), NULL);
        }
    }
    if (c->starttls_pending && !c->closed)
        conn_do_starttls(c);
}

static void conn_write_cb(struct bufferevent *bev, void *ctx)
{
    (void)bev;
    s2s_conn_t *c = ctx;
    conn_release_done(c);
    if (c->closed)
        conn_schedule_reap(c);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *ctx)
{
    s2s_conn_t *c = ctx;
    if (what & BEV_EVENT_CONNECTED) {
        if (c->tls && !c->tls_done) {
            c->tls_done = 1;
            s2s_metrics_tls(c->outbound, 1);
            if (c->ops->on_tls_ready)
                c->ops->on_tls_ready(c);
        }
        return;
    }
    const char *reason = (what & BEV_EVENT_EOF) ? "eof" : "error";
    if (what & BEV_EVENT_ERROR) {
        unsigned long e = bufferevent_get_openssl_error(bev);
        if (e) {
            char buf[256];
            ERR_error_string_n(e, buf, sizeof buf);
            log_info("event=tls-failed peer=%s direction=%s reason=\"%s\"", c->peer, c->outbound ? "out" : "in",
                     buf);
            reason = "tls-failed";
            if (!c->tls_done)
                s2s_metrics_tls(c->outbound, 0);
        }
    }
    int sockerr = EVUTIL_SOCKET_ERROR();
    log_debug("event=connection-lost peer=%s direction=%s what=0x%x errno=%d (%s)", c->peer,
              c->outbound ? "out" : "in", (unsigned)what, sockerr, evutil_socket_error_to_string(sockerr));
    c->dead = 1;
    if (c->closed)
        conn_schedule_reap(c);
    else
        conn_shutdown(c, reason);
}

s2s_conn_t *conn_new(struct bufferevent *bev, int outbound, const char *peer, const s2s_conn_ops_t *ops,
                     void *owner)
{
    s2s_conn_t *c = xcalloc(1, sizeof *c);
    c->serial = next_serial++;
    c->outbound = outbound;
    c->ops = ops;
    c->owner = owner;
    c->bev = bev;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    size_t iplen = strlen(peer);
    const char *colon = strrchr(peer, ':');
    if (colon && colon != peer)
        iplen = (size_t)(colon - peer);
    if (iplen >= sizeof c->ip)
        iplen = sizeof c->ip - 1;
    memcpy(c->ip, peer, iplen);
    c->opened = c->last_active = daemon_now();
    xml_limits_t lim;
    xml_limits_default(&lim);
    lim.max_stanza_bytes = s2s_config->stanza_bytes;
    lim.max_depth = (unsigned)s2s_config->depth;
    lim.max_attrs = (unsigned)s2s_config->attrs;
    lim.max_text = s2s_config->stanza_bytes;
    c->xs = xml_stream_new(&conn_parser_cb, c, &lim);
    c->lnext = conn_list;
    if (conn_list)
        conn_list->lprev = c;
    conn_list = c;
    nconns[outbound ? 1 : 0]++;
    bufferevent_setcb(bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    return c;
}

/* Closed connections that never drain are dropped after timeouts.close. */
void conn_cron(double now)
{
    for (s2s_conn_t *c = conn_list; c; c = c->lnext) {
        if (c->closed && !c->reap_pending && now - c->closing_at > s2s_config->t_close) {
            c->dead = 1;
            conn_schedule_reap(c);
        }
    }
}
