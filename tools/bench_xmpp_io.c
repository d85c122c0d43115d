/* bench_xmpp_io: how a weft-bench-xmpp connection reads and writes once it
 * is set up.
 *
 * Why: profiles of the generator in the muc and pep scenarios showed a
 * third of its time in readv/epoll/ioctl and OpenSSL under two buffer
 * layers (a TLS filter over a socket bufferevent). libevent reads a socket
 * with an ioctl(FIONREAD) and at most 4 KiB per readv; here one read() of
 * up to 64 KiB, into one buffer shared by all connections (the parsers copy
 * what they keep), takes whatever arrived for a connection in one go.
 *
 * Plain TCP (and plain WebSocket) reads here from the connect on. STARTTLS
 * reads through the OpenSSL filter until the session has seen the server's
 * first application data (NewSessionTicket messages come before it, and
 * tls_record does not take handshake messages after the takeover), then,
 * when nothing is buffered in OpenSSL or the filter, the traffic secrets
 * move to weft's own record layer (common/tls_record.c, as c2s does): the
 * filter and its SSL are freed and records are opened and sealed here, on
 * the socket bufferevent, which only writes from then on. When the record
 * layer cannot take the session (TLS 1.2, another cipher suite), OpenSSL
 * keeps it as before. Direct TLS stays with OpenSSL. */
#include "bench_xmpp.h"
#include "tls_record.h"
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define READ_MAX 65536

static char rbuf[READ_MAX];
uint64_t bx_tls_taken, bx_tls_kept;

/* Opens every complete record of in and feeds the plaintext. -1 once the
 * connection is ending. */
static int open_records(bx_conn_t *c, struct evbuffer *in)
{
    static strbuf_t plain;   /* shared: the parser copies what it keeps */
    struct evbuffer *out = bufferevent_get_output(c->bev);
    for (;;) {
        strbuf_reset(&plain);
        int rc = tls_record_open(c->rec, in, &plain, out);
        if (plain.len && bx_conn_feed(c, plain.data, plain.len) < 0)
            return -1;
        if (rc == TLSR_OK)
            continue;
        if (rc == TLSR_AGAIN)
            return 0;
        if (rc == TLSR_EOF) {
            bx_conn_lost(c, "connection closed by server");
        } else {
            char why[160];
            snprintf(why, sizeof why, "TLS error: %s", tls_record_error(c->rec));
            bx_conn_lost(c, why);
        }
        return -1;
    }
}

/* n bytes of rbuf under TLS: opened in place when no record was left
 * incomplete, else after the leftover. What stays incomplete is copied. */
static int got_records(bx_conn_t *c, size_t n)
{
    static struct evbuffer *shared;
    if (evbuffer_get_length(c->rin) > 0) {
        evbuffer_add(c->rin, rbuf, n);
        return open_records(c, c->rin);
    }
    if (!shared)
        shared = evbuffer_new();
    evbuffer_add_reference(shared, rbuf, n, NULL, NULL);
    int rc = open_records(c, shared);
    size_t left = evbuffer_get_length(shared);
    if (left && rc == 0)
        evbuffer_add(c->rin, evbuffer_pullup(shared, -1), left);
    evbuffer_drain(shared, left);
    return rc;
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    bx_conn_t *c = arg;
    c->in_feed = 1;
    while (!c->dead) {
        ssize_t n = read(fd, rbuf, sizeof rbuf);
        if (n > 0) {
            int rc = c->rec ? got_records(c, (size_t)n) : bx_conn_feed(c, rbuf, (size_t)n);
            /* a full buffer may have left more behind; otherwise the next
             * wakeup comes soon enough and saves a read that would block */
            if (rc < 0 || (size_t)n < sizeof rbuf)
                break;
        } else if (n == 0) {
            bx_conn_lost(c, "connection closed by server");
        } else if (errno == EINTR) {
            continue;
        } else {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                char why[160];
                snprintf(why, sizeof why, "socket error: %s", strerror(errno));
                bx_conn_lost(c, why);
            }
            break;
        }
    }
    c->in_feed = 0;
    bx_conn_reap(c);
}

void bx_io_start(bx_conn_t *c)
{
    if (c->rd_ev || c->dead)
        return;
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    c->rd_ev = event_new(c->t->base, fd, EV_READ | EV_PERSIST, read_cb, c);
    if (!c->rd_ev) {
        bx_conn_lost(c, "event_new failed");
        return;
    }
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_enable(c->bev, EV_WRITE);
    if (c->rec)
        c->rin = evbuffer_new();
    if (c->t->ws_path)
        c->win = evbuffer_new();
    event_add(c->rd_ev, NULL);
}

/* Runs from the loop, not from the filter's own callbacks (a filter is not
 * freed from inside them). Tries again after the next read when OpenSSL or
 * the filter still holds something. */
static void takeover_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    bx_conn_t *c = arg;
    if (c->dead || c->rec || c->tls_kept || !c->raw || c->bev == c->raw || !c->ssl)
        return;
    SSL *ssl = c->ssl;
    if (!SSL_is_init_finished(ssl) || evbuffer_get_length(bufferevent_get_input(c->bev)) ||
        evbuffer_get_length(bufferevent_get_output(c->bev)) || evbuffer_get_length(bufferevent_get_input(c->raw)) ||
        SSL_has_pending(ssl) || SSL_want_write(ssl))
        return;
    const char *why = NULL;
    tls_record_t *r = tls_record_take(ssl, &why);
    if (!r) {
        c->tls_kept = 1;
        bx_tls_kept++;
        if (bx_trace)
            fprintf(stderr, "trace user=%s tls-takeover=kept reason=\"%s\"\n", c->user, why ? why : "");
        return;
    }
    bufferevent_free(c->bev);   /* no BEV_OPT_CLOSE_ON_FREE: raw and the socket stay */
    SSL_free(ssl);
    c->ssl = NULL;
    c->bev = c->raw;
    c->rec = r;
    bx_tls_taken++;
    bufferevent_setcb(c->bev, NULL, NULL, bx_conn_event_cb, c);
    bx_io_start(c);
}

void bx_io_takeover_soon(bx_conn_t *c)
{
    if (c->rec || c->tls_kept || !c->ssl || c->dead || bx_no_takeover)
        return;
    if (!c->takeover_ev)
        c->takeover_ev = event_new(c->t->base, -1, 0, takeover_cb, c);
    if (c->takeover_ev)
        event_active(c->takeover_ev, EV_TIMEOUT, 0);
}

void bx_io_write(bx_conn_t *c, const void *data, size_t len)
{
    if (c->dead || !c->bev)
        return;
    if (!c->rec) {
        bufferevent_write(c->bev, data, len);
    } else if (tls_record_seal(c->rec, data, len, bufferevent_get_output(c->bev)) < 0) {
        char why[160];
        snprintf(why, sizeof why, "TLS error: %s", tls_record_error(c->rec));
        bx_conn_lost(c, why);
    }
}

size_t bx_io_outq(const bx_conn_t *c)
{
    return c->bev ? evbuffer_get_length(bufferevent_get_output(c->bev)) : 0;
}
