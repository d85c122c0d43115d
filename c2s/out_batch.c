/* out_batch: sessions' output written once per loop turn, straight to the
 * sockets.
 *
 * Through its bufferevent, every write to a client costs an epoll_ctl to arm
 * the write event, the write at the next loop turn and an epoll_ctl to disarm
 * it; a delivery (deliver.c) also corked and uncorked the socket and wrote
 * its acknowledgement to the router, six system calls per stanza. A room
 * message to 500 occupants paid that 500 times. Here a session written to in
 * a loop turn joins one pass: its bytes collect in its own buffer, and at the
 * end of the turn (or once output.batch sessions have joined) each session's
 * bytes go to its socket with one sendmsg, the acknowledgements of every
 * delivery now in the kernel go to the router in one write, and only then are
 * the sockets pushed.
 *
 * Why the push comes last: a delivery's bytes are sent with MSG_MORE, which
 * holds them in the socket, so the client is usually not woken (and cannot
 * preempt c2s) before the router has the acknowledgement. Usually: with
 * TCP_NODELAY an ACK from the client for earlier bytes sends what is held
 * (the kernel pushes pending frames with the socket's own nagle setting,
 * not the MSG_MORE of the call that queued them). A kill -9
 * between the sendmsg and the acknowledgement still leaves the bytes in the
 * kernel, which sends them when it closes the socket, and the router gives
 * the stanzas again: the window deliver.c documents, widened from one
 * delivery to one pass (at most output.batch sessions). docs/c2s.md,
 * "Delivery and acknowledgement".
 *
 * The sessions of one <deliver/> element (one stanza the sm sends to
 * several sessions: docs/session-protocol.md) always make one pass, whatever
 * output.batch says (out_batch_force), sent without MSG_MORE: the kill
 * window is then that element's sessions, and a room message or a PEP
 * notification to hundreds of sessions costs one sendmsg each and one
 * acknowledgement.
 *
 * Who joins: a bound session on a socket c2s writes itself (clear text or
 * after the TLS record takeover) whose bufferevent output is empty; a
 * session with bytes already waiting there keeps that path, so order holds.
 * A session leaves the pass before it closes (its bytes go to the
 * bufferevent, which drains before the reap) or with its connection. */
#include "c2s.h"
#include "log.h"
#include <errno.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>

static client_t **pass;        /* the sessions of this turn's pass, in join order; NULL: left */
static size_t npass, pass_cap;
static struct event *pass_ev;
static int forced;             /* out_batch_force: a <deliver/> element's sessions */

static int eligible(const client_t *c)
{
    return (c2s_config->out_batch > 0 || forced) && c->state == CL_SESSION && c->bev && c->bev == c->raw &&
           !c->starttls_pending && !c->detached && !c->output_full &&
           evbuffer_get_length(bufferevent_get_output(c->bev)) == 0;
}

int out_batch_takes(const client_t *c)
{
    return c->ob_idx || eligible(c);
}

size_t out_batch_len(const client_t *c)
{
    return c->ob_idx ? evbuffer_get_length(c->ob) : 0;
}

static void pass_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    out_batch_flush();
}

struct evbuffer *out_batch_current(client_t *c)
{
    return c->ob_idx ? c->ob : bufferevent_get_output(c->bev);
}

struct evbuffer *out_batch_buffer(client_t *c)
{
    if (c->ob_idx)
        return c->ob;
    if (!eligible(c))
        return bufferevent_get_output(c->bev);
    if (!c->ob)
        c->ob = evbuffer_new();
    if (npass == pass_cap) {
        pass_cap = pass_cap ? 2 * pass_cap : 64;
        pass = xrealloc(pass, pass_cap * sizeof *pass);
    }
    pass[npass++] = c;
    c->ob_idx = npass;
    if (npass == 1) {
        if (!pass_ev)
            pass_ev = event_new(daemon_base(), -1, 0, pass_cb, NULL);
        event_active(pass_ev, EV_TIMEOUT, 1);   /* after what this turn still has to handle */
    }
    return c->ob;
}

void out_batch_check(void)
{
    if (!forced && npass >= (size_t)c2s_config->out_batch)
        out_batch_flush();
}

void out_batch_force(int on)
{
    if (on) {
        forced = 1;
        return;
    }
    out_batch_flush();   /* still forced: its writes go without MSG_MORE */
    forced = 0;
}

void out_batch_leave(client_t *c, int drop)
{
    if (!c->ob_idx)
        return;
    pass[c->ob_idx - 1] = NULL;
    c->ob_idx = 0;
    if (!drop && c->raw && evbuffer_get_length(c->ob))
        evbuffer_add_buffer(bufferevent_get_output(c->raw), c->ob);
    evbuffer_drain(c->ob, evbuffer_get_length(c->ob));
}

/* c's bytes to its socket; 1 when a push must follow (MSG_MORE was used and
 * something went). What does not go now goes to the bufferevent, which
 * writes the rest when the socket takes it and reports errors as usual. */
static int pass_write(client_t *c, int *fd_out)
{
    struct evbuffer *b = c->ob;
    if (!evbuffer_get_length(b))
        return 0;
    evutil_socket_t fd = bufferevent_getfd(c->raw);
    /* A <deliver/> pass sends at once: holding its copies for a push after
     * the acknowledgement cost a setsockopt per session and measured slower
     * (41,200-43,700 against 43,700-49,100 deliveries/s in the room of 500);
     * a kill in between leaves the same bytes in the kernel either way. */
    int more = !forced && deliver_waiting(c);
    ssize_t w = -1;
    if (fd >= 0) {
        struct evbuffer_iovec v[16];   /* laid out as struct iovec (libevent) */
        int nv = evbuffer_peek(b, -1, NULL, v, 16);
        struct msghdr m = {.msg_iov = (struct iovec *)v, .msg_iovlen = (size_t)(nv < 16 ? nv : 16)};
        w = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT | (more ? MSG_MORE : 0));
    }
    if (w > 0) {
        evbuffer_drain(b, (size_t)w);
        deliver_sent(c, (size_t)w);
    }
    if (evbuffer_get_length(b))
        evbuffer_add_buffer(bufferevent_get_output(c->raw), b);
    *fd_out = fd;
    return w > 0 && more;
}

void out_batch_flush(void)
{
    if (!npass)
        return;
    static int *push;
    static size_t push_cap;
    if (push_cap < npass) {
        push_cap = pass_cap;
        push = xrealloc(push, push_cap * sizeof *push);
    }
    size_t n = npass, npush = 0;
    npass = 0;
    deliver_pass_begin();
    for (size_t i = 0; i < n; i++) {
        client_t *c = pass[i];
        if (!c)
            continue;
        c->ob_idx = 0;
        int fd = -1;
        if (!c->raw || c->output_full)
            evbuffer_drain(c->ob, evbuffer_get_length(c->ob));   /* unusable: goes with it */
        else if (pass_write(c, &fd))
            push[npush++] = fd;
    }
    deliver_pass_end();   /* the acknowledgements, in one write to the router */
    /* Uncorking sends what MSG_MORE held; no sockets were closed since. */
    int off = 0;
    for (size_t i = 0; i < npush; i++)
        setsockopt(push[i], IPPROTO_TCP, TCP_CORK, &off, sizeof off);
}

void out_batch_free(void)
{
    if (pass_ev)
        event_free(pass_ev);
    pass_ev = NULL;
    free(pass);
    pass = NULL;
    npass = pass_cap = 0;
}
