/* http_conn: weft-upload's HTTP/1.1 connections on bufferevents.
 *
 * Why not evhttp, which common/metrics_http.c uses: libevent 2.1's evhttp
 * reads a whole request body into memory before the handler runs (a 10 MiB
 * upload is 10 MiB of RAM per connection, and a PUT cannot be refused
 * before its body arrived), has no cap on connections, and its timeouts
 * restart at every byte, so a client that trickles a header a byte at a time
 * holds a connection for ever. Here the head is read by http_parse.c (strict,
 * bounded, fuzzed) and everything else is this file's:
 *
 * - at most http.max-connections at once, http.max-connections-per-ip from one
 *   address; past that a new connection gets 503 and is closed at once;
 * - the head must be complete within http.header-timeout of the connection
 *   (or of the previous response), whatever the pace of its bytes (408);
 * - a body, and a response, may take http.idle-timeout plus its size at
 *   http.min-rate bytes a second, and no gap between bytes longer than
 *   http.idle-timeout (slow-loris uploads and downloads end with the
 *   connection; an upload cut is removed, its slot stays for a new PUT);
 * - a PUT body is written to disk as it arrives, never held in memory; a
 *   connection holds at most one head (16 KiB) and one read's worth of body;
 * - after an error to a request whose body was not read, and after
 *   Connection: close, the write side is shut and what the client still
 *   sends is read and dropped for up to two seconds before the close, so the
 *   client reads our answer rather than a reset.
 *
 * Invariant: a connection's state says what it waits for; reading is off
 * while a response is written, so a pipelining client's next request waits
 * in the kernel and in our input buffer (bounded by the head limit). */
#include "http_conn.h"
#include "http_serve.h"
#include "http_status.h"
#include "listen_set.h"
#include "log.h"
#include "net.h"
#include "strbuf.h"
#include "tls.h"
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HTTP_HEAD_MAX 16384
#define HTTP_LINGER 2.0

typedef enum conn_state { ST_HEAD, ST_BODY, ST_WRITE, ST_LINGER } conn_state_t;

struct http_conn {
    struct bufferevent *bev;
    struct sockaddr_storage sa;
    char peer[64];
    conn_state_t state;
    int close_after;       /* close once the response is written */
    int body_unread;       /* the request has a body we did not consume */
    struct event *deadline;
    http_head_t head;
    store_file_t *file;    /* upload in progress (ST_BODY) */
    int fd;
    long long remaining;
    http_conn_t *prev, *next;
};


static struct event_base *base_;
static listen_set_t listeners;
static SSL_CTX *ssl_ctx;
static http_conn_t *conns;
static size_t nconns;

static void conn_read_cb(struct bufferevent *bev, void *arg);

size_t http_conn_count(void)
{
    return nconns;
}

const char *http_conn_peer(const http_conn_t *c)
{
    return c->peer;
}

static void conn_free(http_conn_t *c)
{
    if (c->file) {
        log_warn("event=upload-cut id=%s peer=%s missing=%lld", c->file->id, c->peer, c->remaining);
        store_put_abort(c->file, c->fd);
        c->file = NULL;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    nconns--;
    event_free(c->deadline);
    bufferevent_free(c->bev);
    free(c);
}

static void arm(http_conn_t *c, double seconds)
{
    struct timeval tv = {(time_t)seconds, (suseconds_t)((seconds - (time_t)seconds) * 1e6)};
    event_add(c->deadline, &tv);
}

/* The time a transfer of n bytes may take. */
static double transfer_time(long long n)
{
    return upload_config->idle_timeout + (double)n / (double)upload_config->min_rate;
}

static void idle_timeouts(http_conn_t *c, int reading)
{
    struct timeval tv = {(time_t)upload_config->idle_timeout, 0};
    bufferevent_set_timeouts(c->bev, reading ? &tv : NULL, reading ? NULL : &tv);
}

static void status_and_common(strbuf_t *sb, http_conn_t *c, int status, const char *extra)
{
    upload_metrics_http(status);
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    strbuf_printf(sb, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, http_status_text(status), date);
    http_serve_cors(sb);
    if (extra)
        strbuf_puts(sb, extra);
    if (c->close_after)
        strbuf_puts(sb, "Connection: close\r\n");
}

/* Reading stops while the response goes out (see the file's invariant). */
static void start_write(http_conn_t *c, size_t bytes)
{
    c->state = ST_WRITE;
    bufferevent_disable(c->bev, EV_READ);
    idle_timeouts(c, 0);
    arm(c, transfer_time((long long)bytes));
}

void http_conn_respond(http_conn_t *c, int status, const char *extra, const char *body)
{
    if (c->body_unread)
        c->close_after = 1;
    strbuf_t sb;
    strbuf_init(&sb);
    status_and_common(&sb, c, status, extra);
    size_t blen = body ? strlen(body) : 0;
    if (body)
        strbuf_puts(&sb, "Content-Type: text/plain; charset=utf-8\r\n");
    if (status >= 400)
        strbuf_puts(&sb, "Cache-Control: no-store\r\n");
    if (status != 204)
        strbuf_printf(&sb, "Content-Length: %zu\r\n", blen);
    strbuf_puts(&sb, "\r\n");
    if (body)
        strbuf_append(&sb, body, blen);
    bufferevent_write(c->bev, sb.data, sb.len);
    start_write(c, sb.len);
    strbuf_free(&sb);
}

void http_conn_respond_file(http_conn_t *c, const store_file_t *f, int fd, int head_only, const char *extra)
{
    strbuf_t sb;
    strbuf_init(&sb);
    status_and_common(&sb, c, 200, extra);
    strbuf_printf(&sb, "Content-Length: %lld\r\n\r\n", f->size);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add(out, sb.data, sb.len);
    strbuf_free(&sb);
    if (head_only || f->size == 0) {
        close(fd);
    } else if (evbuffer_add_file(out, fd, 0, f->size) < 0) {   /* owns fd from here */
        log_error("event=download-failed id=%s peer=%s", f->id, c->peer);
        c->close_after = 1;
    } else {
        upload_metrics_bytes("out", f->size);
    }
    start_write(c, head_only ? 0 : (size_t)f->size);
}

void http_conn_read_body(http_conn_t *c, store_file_t *f, int fd)
{
    c->file = f;
    c->fd = fd;
    c->remaining = c->head.content_length;
    c->state = ST_BODY;
    if (c->head.expect_continue && c->head.minor == 1)
        bufferevent_write(c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    idle_timeouts(c, 1);
    arm(c, transfer_time(c->remaining));
}

/* Moves what arrived of the body to its file; at the end commits it. */
static void body_feed(http_conn_t *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    while (c->remaining > 0 && evbuffer_get_length(in) > 0) {
        size_t n = evbuffer_get_length(in);
        if ((long long)n > c->remaining)
            n = (size_t)c->remaining;
        int w = evbuffer_write_atmost(in, c->fd, (ev_ssize_t)n);
        if (w <= 0) {
            log_error("event=upload-failed id=%s peer=%s error=\"%s\"", c->file->id, c->peer,
                      strerror(errno));
            store_put_abort(c->file, c->fd);
            c->file = NULL;
            http_conn_respond(c, 507, NULL, "the file could not be written\n");
            return;
        }
        c->remaining -= w;
    }
    if (c->remaining > 0)
        return;
    store_file_t *f = c->file;
    c->file = NULL;
    c->body_unread = 0;
    if (!*f->ctype) {
        /* The slot named no type: the PUT's, if a header may carry it back. */
        const char *t = c->head.content_type;
        int ok = *t && strchr(t, '/');
        for (const char *p = t; ok && *p; p++)
            ok = *p >= 0x20 && *p < 0x7f;
        free(f->ctype);
        f->ctype = xstrdup(ok ? t : "application/octet-stream");
    }
    if (store_put_commit(f, c->fd) < 0) {
        http_conn_respond(c, 500, NULL, "the file could not be stored\n");
        return;
    }
    upload_metrics_bytes("in", f->size);
    log_info("event=uploaded id=%s owner=%s size=%lld type=\"%s\" peer=%s", f->id, f->owner, f->size,
             f->ctype, c->peer);
    http_conn_respond(c, 201, NULL, NULL);
}

static void head_feed(http_conn_t *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t n = evbuffer_get_length(in);
    if (n == 0)
        return;
    size_t look = n < HTTP_HEAD_MAX ? n : HTTP_HEAD_MAX;
    const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
    http_head_t *h = &c->head;
    http_parse_ret_t r = http_parse_head(buf, look, HTTP_HEAD_MAX, h);
    if (r == HTTP_PARSE_MORE)
        return;
    if (r != HTTP_PARSE_DONE) {
        int status = http_parse_status(r);
        log_info("event=http-refused peer=%s status=%d reason=bad-head", c->peer, status);
        c->close_after = 1;
        http_conn_respond(c, status, NULL, "bad request head\n");
        return;
    }
    evbuffer_drain(in, h->head_len);
    event_del(c->deadline);
    c->close_after = h->close;
    c->body_unread = h->content_length > 0 || h->transfer_encoding;
    http_serve(c, h);
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    http_conn_t *c = arg;
    for (;;) {
        conn_state_t before = c->state;
        if (c->state == ST_HEAD) {
            head_feed(c);
        } else if (c->state == ST_BODY) {
            body_feed(c);
        } else if (c->state == ST_LINGER) {
            struct evbuffer *in = bufferevent_get_input(c->bev);
            evbuffer_drain(in, evbuffer_get_length(in));
            return;
        }
        if (c->state == before)
            return;
    }
}

/* After a response with close: shut our side and read what the client still
 * sends, briefly (see the file comment). */
static void start_linger(http_conn_t *c)
{
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    if (ssl_ctx || fd < 0) {
        conn_free(c);
        return;
    }
    shutdown(fd, SHUT_WR);
    c->state = ST_LINGER;
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    bufferevent_enable(c->bev, EV_READ);
    arm(c, HTTP_LINGER);
    conn_read_cb(c->bev, c);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    http_conn_t *c = arg;
    if (c->state != ST_WRITE || net_bev_output_pending(bev))
        return;
    if (c->close_after) {
        start_linger(c);
        return;
    }
    c->state = ST_HEAD;
    idle_timeouts(c, 0);
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    bufferevent_enable(c->bev, EV_READ);
    arm(c, upload_config->header_timeout);
    conn_read_cb(bev, c);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    http_conn_t *c = arg;
    if (what & BEV_EVENT_CONNECTED)   /* the TLS handshake is done */
        return;
    if (what & BEV_EVENT_TIMEOUT)
        log_info("event=http-timeout peer=%s state=%d reason=idle", c->peer, (int)c->state);
    conn_free(c);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_conn_t *c = arg;
    if (c->state == ST_HEAD && evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
        log_info("event=http-timeout peer=%s state=head reason=header-timeout", c->peer);
        c->close_after = 1;
        http_conn_respond(c, 408, NULL, "request head too slow\n");
        return;
    }
    if (c->state == ST_BODY) {
        log_warn("event=http-timeout peer=%s state=body reason=too-slow id=%s missing=%lld", c->peer,
                 c->file->id, c->remaining);
        store_put_abort(c->file, c->fd);
        c->file = NULL;
        c->close_after = 1;
        http_conn_respond(c, 408, NULL, "upload too slow\n");
        return;
    }
    if (c->state == ST_WRITE)
        log_info("event=http-timeout peer=%s state=write reason=too-slow", c->peer);
    conn_free(c);
}

static int same_ip(const struct sockaddr_storage *a, const struct sockaddr *b)
{
    if (a->ss_family != b->sa_family)
        return 0;
    if (b->sa_family == AF_INET)
        return !memcmp(&((const struct sockaddr_in *)a)->sin_addr, &((const struct sockaddr_in *)b)->sin_addr,
                       sizeof(struct in_addr));
    if (b->sa_family == AF_INET6)
        return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                       &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr));
    return 1;
}

/* Over a limit: a plain listener answers 503 in one non-blocking write. */
static void refuse(evutil_socket_t fd, const char *peer, const char *why)
{
    static const char msg[] = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                              "Retry-After: 5\r\nContent-Length: 0\r\n\r\n";
    log_warn("event=http-refused peer=%s reason=%s", peer, why);
    upload_metrics_http(503);
    if (!ssl_ctx && send(fd, msg, sizeof msg - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        log_debug("event=http-refused peer=%s write-error=\"%s\"", peer, strerror(errno));
    evutil_closesocket(fd);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
    (void)l;
    (void)arg;
    char peer[64];
    net_addr_format(sa, (socklen_t)len, peer, sizeof peer);
    if ((long)nconns >= upload_config->max_connections) {
        refuse(fd, peer, "max-connections");
        return;
    }
    long same = 0;
    for (http_conn_t *o = conns; o; o = o->next)
        same += same_ip(&o->sa, sa);
    if (same >= upload_config->max_per_ip) {
        refuse(fd, peer, "max-connections-per-ip");
        return;
    }
    net_tune_accepted(fd, sa);
    struct bufferevent *bev;
    if (ssl_ctx)
        bev = bufferevent_openssl_socket_new(base_, fd, SSL_new(ssl_ctx), BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE);
    else
        bev = bufferevent_socket_new(base_, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    http_conn_t *c = xcalloc(1, sizeof *c);
    c->bev = bev;
    c->fd = -1;
    memcpy(&c->sa, sa, (size_t)len < sizeof c->sa ? (size_t)len : sizeof c->sa);
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    c->deadline = evtimer_new(base_, deadline_cb, c);
    c->next = conns;
    if (conns)
        conns->prev = c;
    conns = c;
    nconns++;
    bufferevent_setcb(bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    arm(c, upload_config->header_timeout);
    log_debug("event=http-accepted peer=%s connections=%zu", peer, nconns);
}

int http_conn_start(struct event_base *base, const upload_cfg_t *config)
{

    base_ = base;
    int tls = config->tls_cert && *config->tls_cert;
    if (tls) {
        char err[512];
        ssl_ctx = tls_server_ctx_new(config->tls_cert, config->tls_key, NULL, TLS_CLIENT_CERT_NONE, err,
                                     sizeof err);
        if (!ssl_ctx) {
            log_error("event=start reason=tls error=\"%s\"", err);
            return -1;
        }
    }
    listeners.v6_optional = 1;
    if (listen_set_open(&listeners, base, config->http_listen, 5281, on_accept, NULL, tls ? "yes" : "no") < 0) {
        listen_set_close(&listeners);
        return -1;
    }
    return 0;
}

void http_conn_stop(void)
{
    listen_set_close(&listeners);
    while (conns)
        conn_free(conns);
    if (ssl_ctx)
        SSL_CTX_free(ssl_ctx);
    ssl_ctx = NULL;
}
