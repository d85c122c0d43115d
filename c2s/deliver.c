/* deliver: stanzas the router gave c2s for a client without XEP-0198, from
 * the write until their bytes are in the kernel, and their acknowledgement
 * to the router (the component protocol's manual_ack, comp_client_done).
 *
 * A stanza counts as delivered only once every byte of it (under TLS: of
 * the records that carry it) has left c2s for the socket's kernel buffer.
 * Until then its router token is held, so a c2s killed with the stanza still
 * in its own buffers has not acknowledged it: the router gives it to the next
 * c2s, which hands it back to the sm (offline storage). A connection that
 * ends with stanzas still unwritten gives them back to the sm itself
 * (<route type='unacked'/>). docs/c2s.md, "Delivery and acknowledgement".
 *
 * Positions: the socket bufferevent's output is watched (an evbuffer
 * callback) and counts the bytes written to the kernel; a stanza is done once
 * that count passes where its last byte was queued. Over OpenSSL's filter
 * the plaintext is watched too: once the filter has consumed a stanza, its
 * records are in the socket's output (SSL_write appends them before the
 * filter drains its input), and the stanza gets its socket position then.
 *
 * The acknowledgement goes to the router's socket right after the write
 * that put the stanza's last byte in the kernel (sm_link_flush): a kill
 * between the two leaves it delivered and still held, and the router gives
 * it again (offline storage: at least once). To keep that window to two
 * system calls, the client's socket is corked (TCP_CORK) from a delivery
 * until its acknowledgement is out: the write does not wake the client's
 * reader, which could otherwise preempt c2s between the two calls. What is
 * corked is in the kernel all the same (sent at the latest when the socket
 * closes); cork holds nothing for more than that moment. A session in a
 * pass of out_batch.c (the usual case) skips all of this: its bytes go with
 * MSG_MORE at the end of the loop turn, the pass's acknowledgements in one
 * write, then the push (deliver_pass_begin/_end, deliver_sent).
 *
 * A token is not held for ever: acknowledgements are cumulative, so one
 * client that does not read would hold back every later acknowledgement of
 * this c2s (and the sm's buffer behind them). Past timeouts.delivery-ack the
 * token is given anyway; the stanza stays queued for the client, and would
 * be lost if c2s died before writing it. Clients with XEP-0198 are not
 * tracked here: their stanzas wait for the client's <a/> (smacks.c). */
#include "c2s.h"
#include "log.h"
#include <event2/buffer.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef struct deliver_item {
    uint64_t end;        /* socket (mapped) or plaintext position after the stanza */
    uint64_t token;      /* router token; 0 once acknowledged */
    double at;
    xml_node_t *route;   /* owned: what goes back to the sm if never written */
    deliver_shared_t *sh;   /* instead of route, a copy of a <deliver/>: its shared stanza */
    char *to;               /* and this copy's 'to' (owned; NULL: none) */
    int mapped;
} deliver_item_t;

void deliver_shared_unref(deliver_shared_t *sh)
{
    if (sh && !--sh->refs) {
        xml_free(sh->st);
        free(sh);
    }
}

static void item_free(deliver_item_t *it)
{
    xml_free(it->route);
    it->route = NULL;
    deliver_shared_unref(it->sh);
    it->sh = NULL;
    free(it->to);
    it->to = NULL;
}

/* The stanza that goes back to the sm for it: the route's, or a copy of the
 * shared one with this copy's 'to' (*tmp, the caller frees it). */
static xml_node_t *item_stanza(const deliver_item_t *it, xml_node_t **tmp)
{
    *tmp = NULL;
    if (it->route)
        return xml_child(it->route, NULL, NULL);
    if (!it->sh)
        return NULL;
    *tmp = xml_copy(it->sh->st);
    xml_attr_set(*tmp, "to", it->to);
    return *tmp;
}

struct deliver {
    deliver_item_t *q;
    size_t head, len, cap;
    uint64_t out_done;                 /* bytes the socket output gave the kernel */
    uint64_t plain_done;               /* plaintext the TLS filter consumed */
    struct evbuffer *out_buf, *plain_buf;
    struct evbuffer_cb_entry *out_cb, *plain_cb;
    int corked;                        /* TCP_CORK set on the client's socket */
};

static void deliver_release(client_t *c);

/* Inside a pass of out_batch.c: acknowledgements wait for its end. */
static int in_pass, pass_acked;

static void deliver_cork(client_t *c, int on)
{
    struct deliver *d = c->dl;
    if (d->corked == on || !c->raw)
        return;
    evutil_socket_t fd = bufferevent_getfd(c->raw);
    if (fd >= 0 && setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on) == 0)
        d->corked = on;
}

static struct evbuffer *deliver_socket_out(client_t *c)
{
    return c->raw ? bufferevent_get_output(c->raw) : NULL;
}

/* Bytes left the socket's output: for the kernel. */
static void deliver_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    client_t *c = arg;
    if (!info->n_deleted)
        return;
    c->dl->out_done += info->n_deleted;
    deliver_release(c);   /* acknowledges what is in the kernel now */
    if (c->dl)
        deliver_cork(c, 0);   /* and only then lets the bytes go */
}

/* The TLS filter consumed plaintext: its records are in the socket output. */
static void deliver_plain_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    client_t *c = arg;
    if (!info->n_deleted)
        return;
    c->dl->plain_done += info->n_deleted;
    deliver_release(c);
}

/* The state with its watchers on the connection's current buffers. */
static struct deliver *deliver_state(client_t *c)
{
    if (!c->dl)
        c->dl = xcalloc(1, sizeof *c->dl);
    struct deliver *d = c->dl;
    if (!d->out_cb && c->raw) {
        d->out_buf = deliver_socket_out(c);
        d->out_cb = evbuffer_add_cb(d->out_buf, deliver_out_cb, c);
    }
    if (!d->plain_cb && c->bev && c->bev != c->raw) {
        d->plain_buf = bufferevent_get_output(c->bev);
        d->plain_cb = evbuffer_add_cb(d->plain_buf, deliver_plain_cb, c);
    }
    return d;
}

static void deliver_done(deliver_item_t *it)
{
    if (it->token) {
        sm_link_done(it->token);
        it->token = 0;
    }
}

/* Gives the token of every stanza now in the kernel; frees those items. */
static void deliver_release(client_t *c)
{
    struct deliver *d = c->dl;
    int any = 0;
    struct evbuffer *out = d->out_cb ? d->out_buf : NULL;
    /* Items are in write order: the unmapped ones follow the mapped. */
    for (size_t i = d->head; d->plain_cb && out && i < d->len; i++) {
        deliver_item_t *it = &d->q[i];
        if (it->mapped)
            continue;
        if (it->end > d->plain_done)
            break;
        it->end = d->out_done + evbuffer_get_length(out);
        it->mapped = 1;
    }
    while (d->head < d->len && d->q[d->head].mapped && d->q[d->head].end <= d->out_done) {
        deliver_item_t *it = &d->q[d->head++];
        any |= it->token != 0;
        deliver_done(it);
        item_free(it);
    }
    if (d->head == d->len)
        d->head = d->len = 0;
    if (any && in_pass)
        pass_acked = 1;
    else if (any)
        sm_link_flush();
}

void deliver_pass_begin(void)
{
    in_pass = 1;
    pass_acked = 0;
}

void deliver_pass_end(void)
{
    in_pass = 0;
    if (pass_acked)
        sm_link_flush();
    pass_acked = 0;
}

void deliver_sent(client_t *c, size_t n)
{
    if (!c->dl)
        return;
    c->dl->out_done += n;
    deliver_release(c);
}

int deliver_waiting(const client_t *c)
{
    return c->dl && c->dl->head < c->dl->len;
}

/* Queues item and writes the stanza: st serialized, or bytes as they are. */
static void deliver_enqueue(client_t *c, deliver_item_t item, const xml_node_t *st, const char *bytes, size_t len)
{
    struct deliver *d = deliver_state(c);
    if (d->len == d->cap) {
        if (d->head) {
            memmove(d->q, d->q + d->head, (d->len - d->head) * sizeof *d->q);
            d->len -= d->head;
            d->head = 0;
        } else {
            d->cap = d->cap ? 2 * d->cap : 8;
            d->q = xrealloc(d->q, d->cap * sizeof *d->q);
        }
    }
    size_t idx = d->len++;
    d->q[idx] = item;
    size_t queued = d->out_buf ? evbuffer_get_length(d->out_buf) : 0;
    /* In a pass of out_batch.c the bytes wait for the end of the loop turn
     * (or of the pass), then go with MSG_MORE, held like a cork. */
    int passed = out_batch_takes(c);
    if (!passed)
        deliver_cork(c, 1);
    if (st)
        client_write_node(c, st);
    else
        client_write(c, bytes, len);
    if (c->state == CL_CLOSED || c->output_full || !c->bev)
        return;   /* not written: goes back to the sm with the connection */
    deliver_item_t *it = &d->q[idx];
    if (c->bev == c->raw) {
        it->end = d->out_done + evbuffer_get_length(d->out_buf) + out_batch_len(c);
        it->mapped = 1;
        if (passed) {
            out_batch_check();
            return;
        }
    } else {
        /* libevent's filter may have encrypted it inside the write already */
        it->end = d->plain_done + evbuffer_get_length(d->plain_buf);
        deliver_release(c);
    }
    /* Nothing was waiting for this socket: write now rather than at the next
     * loop turn, so that deliveries reach the kernel, and their
     * acknowledgements the router, in the router's order. Otherwise a kill
     * could find one client's stanza in the kernel while its acknowledgement
     * waits for an earlier one to another client (acknowledgements are
     * cumulative): a duplicate. The write callback (deliver_out_cb)
     * acknowledges and uncorks. */
    if (!queued && d->out_buf && evbuffer_get_length(d->out_buf))
        evbuffer_write(d->out_buf, bufferevent_getfd(c->raw));
}

void deliver_write(client_t *c, xml_node_t *route, const xml_node_t *st, uint64_t token)
{
    deliver_enqueue(c, (deliver_item_t){.end = UINT64_MAX, .token = token, .at = daemon_now(), .route = route}, st,
                    NULL, 0);
}

void deliver_write_copy(client_t *c, deliver_shared_t *sh, const char *to, const char *bytes, size_t len,
                        uint64_t token)
{
    sh->refs++;
    deliver_enqueue(c,
                    (deliver_item_t){.end = UINT64_MAX, .token = token, .at = daemon_now(), .sh = sh,
                                     .to = to ? xstrdup(to) : NULL},
                    NULL, bytes, len);
}

/* The TLS filter is about to go (record takeover, or the connection): a
 * stanza it has not consumed yet cannot be, so this only happens with an
 * empty filter (client_tls_takeover checks), and every item is mapped. */
void deliver_filter_gone(client_t *c)
{
    struct deliver *d = c->dl;
    if (!d || !d->plain_cb)
        return;
    deliver_release(c);
    evbuffer_remove_cb_entry(d->plain_buf, d->plain_cb);
    d->plain_cb = NULL;
    d->plain_buf = NULL;
}

/* The connection goes (its buffers are freed next): what reached the kernel
 * is done; what did not is given back to the sm as never delivered when the
 * session is over (state CL_CLOSED), else only acknowledged (a XEP-0198
 * session lives on and owns what comes next). */
void deliver_conn_gone(client_t *c)
{
    struct deliver *d = c->dl;
    if (!d)
        return;
    deliver_release(c);
    size_t returned = 0;
    for (size_t i = d->head; i < d->len; i++) {
        deliver_item_t *it = &d->q[i];
        xml_node_t *tmp;
        xml_node_t *st = item_stanza(it, &tmp);
        const char *type = st ? xml_attr_get(st, "type") : NULL;
        if (c->state == CL_CLOSED && st && !(type && !strcmp(type, "error"))) {
            if (sm_link_route(c, st, "unacked") == 0)
                returned++;
            else
                log_warn("event=delivery-lost sid=%s jid=%s reason=router-buffer-full", c->sid_str,
                         c->jid.full ? c->jid.full : "-");
        }
        deliver_done(it);
        item_free(it);
        xml_free(tmp);
    }
    if (returned)
        log_info("event=delivery-returned reason=unwritten sid=%s jid=%s stanzas=%zu", c->sid_str,
                 c->jid.full ? c->jid.full : "-", returned);
    if (d->len > d->head)
        sm_link_flush();
    if (d->out_cb)
        evbuffer_remove_cb_entry(d->out_buf, d->out_cb);
    if (d->plain_cb)
        evbuffer_remove_cb_entry(d->plain_buf, d->plain_cb);
    free(d->q);
    free(d);
    c->dl = NULL;
}

/* Once a second: tokens held past timeouts.delivery-ack are given; an idle
 * connection's state is freed (the watchers are set up again on the next
 * delivery). */
void deliver_cron(client_t *c, double now)
{
    struct deliver *d = c->dl;
    if (!d)
        return;
    size_t late = 0;
    for (size_t i = d->head; i < d->len && now - d->q[i].at > c2s_config->t_delivery_ack; i++) {
        if (d->q[i].token) {
            deliver_done(&d->q[i]);
            late++;
        }
    }
    if (late) {
        log_info("event=delivery-ack-timeout sid=%s jid=%s stanzas=%zu queued=%zu", c->sid_str,
                 c->jid.full ? c->jid.full : "-", late, d->len - d->head);
        sm_link_flush();
    }
    if (d->head == d->len && c->state != CL_CLOSED) {
        deliver_cork(c, 0);
        if (d->out_cb)
            evbuffer_remove_cb_entry(d->out_buf, d->out_cb);
        if (d->plain_cb)
            evbuffer_remove_cb_entry(d->plain_buf, d->plain_cb);
        free(d->q);
        free(d);
        c->dl = NULL;
    }
}

void deliver_send(client_t *c, xml_node_t *route, uint64_t token)
{
    xml_node_t *st = xml_child(route, NULL, NULL);
    if (c->state == CL_CLOSED) {
        /* closed while this was held (csi.c): it was never written */
        const char *type = xml_attr_get(st, "type");
        if (!(type && !strcmp(type, "error")))
            sm_link_route(c, st, "unacked");
        if (token)
            sm_link_done(token);
        xml_free(route);
        return;
    }
    if (c->sm_enabled) {
        smacks_sent(c, st, token);
        if (!c->detached) {
            c2s_metrics_stanza(0, st->name);
            client_write_node(c, st);
        }
        xml_free(route);
        return;
    }
    c2s_metrics_stanza(0, st->name);
    deliver_write(c, route, st, token);
}
