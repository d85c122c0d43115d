/* comp_client: implementation. States: IDLE (waiting to reconnect) ->
 * CONNECTING -> STREAM (header/features, STARTTLS, SASL) -> SESSION (waiting
 * for <w:session acked/>) -> BINDING -> READY.
 * Invariants: first_seq is the seq of the first entry of `lens`; entries in
 * `lens` match the seqs of what `retained` holds, in order (a fan-out's bytes
 * once, counted on its last seq); on READY every retained seq <= sent_upto
 * has been written on this link. */
#include "comp_client.h"
#include "base64.h"
#include "comp_fanout.h"
#include "comp_proto.h"
#include "jid.h"
#include "log.h"
#include "net.h"
#include "sasl.h"
#include "strbuf.h"
#include "tls.h"
#include "xml_stream.h"
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

typedef enum { CC_IDLE, CC_CONNECTING, CC_STREAM, CC_SESSION, CC_BINDING, CC_READY, CC_CLOSED } cc_state_t;

/* One retained seq. A plain element has fan_n 0 and its length; a fan-out
 * to fan_n recipients takes fan_n seqs (fan_i = 0 .. fan_n-1), its bytes
 * (what follows "<w:fanout") counted on the last, so they leave the buffer
 * only when every delivery is acknowledged. */
typedef struct out_ent {
    size_t len;
    uint32_t fan_n, fan_i;
} out_ent_t;

/* Duplicate detection: the router keeps a sender's stanzas in order per
 * destination name (one hold queue per name), not across names, so the highest
 * seq seen is kept per (sender epoch, destination domain); and per instance
 * queue when a takeover merges another instance's queue into ours (p=). */
typedef struct seen_epoch {
    char epoch[40];
    char domain[256];
    char via[64];              /* marker p=: held for a taken-over instance */
    uint64_t last;
    time_t used;
} seen_epoch_t;

struct comp_client {
    struct event_base *base;
    comp_client_cfg_t cfg;
    char **binds;
    comp_client_cb_t cb;
    void *ctx;
    cc_state_t state;
    struct bufferevent *bev;
    xml_stream_t *xs;
    net_addr_t addr;
    int tls;
    SSL_CTX *tls_ctx;
    sasl_client_t *sasl;
    int plus;
    struct event *timer;       /* reconnect / connect timeout */
    double backoff;
    char epoch[33];
    /* Outgoing: numbered and kept until acknowledged. */
    uint64_t next_seq;         /* seq of the next new stanza */
    uint64_t first_seq;        /* seq of the first retained stanza */
    uint64_t sent_upto;        /* last seq written on the current link */
    struct evbuffer *retained;
    out_ent_t *lens;
    size_t lens_head, lens_len, lens_cap;
    /* The router's limits for fan-outs, from <w:session/> (defaults until then). */
    size_t lim_stanza, lim_fan_bytes, lim_fan_recipients;
    /* Incoming: acks and duplicate detection. */
    uint64_t in_count;
    uint64_t in_acked;
    /* manual_ack: done[i] says whether stanza in_acked+1+i was finished by the
     * component; acks cover only the finished prefix. link_gen makes tokens
     * of an earlier link harmless (that link's counts started again). */
    unsigned char *done;
    size_t done_cap;
    uint64_t link_gen;
    seen_epoch_t *seen;
    size_t nseen;
    char marker_epoch[40];
    char marker_via[64];       /* its p=, or "" */
    uint64_t marker_seq;
    int have_marker;
    int cur_marker;            /* the stanza in on_stanza came with marker_* */
    size_t pending_binds;
    int closing;
    int force_close;
    int in_callback;
    int free_pending;
    xml_stream_t *dead_xs;
    int starttls_pending;
    /* Our </stream:stream> is written: nothing more goes out and nothing that
     * arrives is processed (the router gives it again) until the router's
     * own closing tag, EOF or CLOSE_WAIT seconds. */
    int close_sent;
    /* Backpressure: above is set once `retained` passes the high-water mark
     * and cleared when it falls to the low-water mark. Meanwhile stanzas the
     * router delivers are parked in `parked` (in order, unacknowledged) and
     * handed to on_stanza once below; control elements (the router's acks,
     * which drain `retained`) are still read, so the link never stalls. */
    int above;
    struct parked *parked, **parked_tail;
    size_t nparked;
    struct event *resume_ev;
    struct event *stall_ev;    /* while above: checks that acks still come */
    uint64_t stall_first;      /* first_seq at the last check */
    uint64_t cur_seq;          /* in_count of the stanza in on_stanza */
    int unstalling;            /* stall_cb is handing parked input on */
};

/* A stanza received while above the high-water mark, with what
 * comp_client_in_token and comp_client_in_origin must say for it; or the
 * deliveries of a <w:fan/> (rc: nrc of them, their 'to' copied into one
 * block, which rc owns; seq is the first's). */
typedef struct parked {
    xml_node_t *st;
    uint64_t seq;
    int marker;
    char epoch[40];
    uint64_t marker_seq;
    comp_fan_rcpt_t *rc;
    size_t nrc;
    struct parked *next;
} parked_t;

#define CLOSE_WAIT 2.0
#define STALL_CHECK 1   /* seconds without an ack before parked input goes on */

static void cc_connect(comp_client_t *c);
static void cc_drop(comp_client_t *c);
static void cc_read_cb(struct bufferevent *bev, void *arg);
static void cc_event_cb(struct bufferevent *bev, short what, void *arg);
static void mark_done(comp_client_t *c, uint64_t seq);
static void handle_fan(comp_client_t *c, xml_node_t *el);
static uint64_t ack_take(comp_client_t *c);
static void send_ack(comp_client_t *c);

static size_t max_buffer(const comp_client_t *c)
{
    return c->cfg.max_buffer ? c->cfg.max_buffer : 16u << 20;
}

/* The link's marks (docs/component-protocol.md, Backpressure): above half of
 * the buffer new input waits; it goes on once a quarter is left. The other
 * half is room for what the input element being handled still sends. */
static size_t high_water(const comp_client_t *c)
{
    return max_buffer(c) / 2;
}

static size_t low_water(const comp_client_t *c)
{
    return max_buffer(c) / 4;
}

/* After anything was added to `retained`. */
static void pressure_check(comp_client_t *c)
{
    if (c->above || evbuffer_get_length(c->retained) <= high_water(c))
        return;
    c->above = 1;
    c->stall_first = c->first_seq;
    struct timeval tv = {STALL_CHECK, 0};
    evtimer_add(c->stall_ev, &tv);
    log_info("event=link-backpressure component=%s state=on buffered=%zu high=%zu", c->cfg.name,
             evbuffer_get_length(c->retained), high_water(c));
    if (c->cb.on_pressure)
        c->cb.on_pressure(c->ctx, 1);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg);

/* Two components above their marks can each wait for acks that only the
 * other's parked input would produce (sm instances sending to each other,
 * or a component to a name it serves itself). When no ack came for a whole
 * check period, parked stanzas go on anyway, one after another while the
 * buffer stays below three quarters: the last quarter stays room for their output. */
static void stall_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    comp_client_t *c = arg;
    if (!c->above)
        return;
    int stalled = c->first_seq == c->stall_first && c->parked &&
                  evbuffer_get_length(c->retained) < max_buffer(c) / 4 * 3;
    c->stall_first = c->first_seq;
    struct timeval tv = {STALL_CHECK, 0};
    evtimer_add(c->stall_ev, &tv);
    if (stalled) {
        log_warn("event=link-backpressure component=%s state=stalled buffered=%zu parked=%zu", c->cfg.name,
                 evbuffer_get_length(c->retained), c->nparked);
        resume_cb(-1, 0, c);   /* last: may free c (free_pending) */
    }
}

static void parked_free(comp_client_t *c)
{
    while (c->parked) {
        parked_t *p = c->parked;
        c->parked = p->next;
        xml_free(p->st);
        free(p->rc);
        free(p);
    }
    c->parked_tail = &c->parked;
    c->nparked = 0;
}

static void deliver(comp_client_t *c, xml_node_t *st, uint64_t seq)
{
    c->cur_seq = seq;
    c->cb.on_stanza(c->ctx, st);
    c->cur_marker = 0;
}

/* The deliveries of a <w:fan/>: to on_fan at once, or (a component without
 * it, which the router should not have sent one) one copy each to
 * on_stanza. Takes st. */
static void deliver_fan(comp_client_t *c, xml_node_t *st, const comp_fan_rcpt_t *rc, size_t n)
{
    c->cur_marker = 0;
    if (c->cb.on_fan) {
        c->cur_seq = rc[0].token & ((1ULL << 40) - 1);
        c->cb.on_fan(c->ctx, st, rc, n);
        return;
    }
    for (size_t i = 0; i < n && c->cb.on_stanza; i++) {
        xml_node_t *one = xml_copy(st);
        xml_attr_set(one, "to", rc[i].to);
        deliver(c, one, rc[i].token & ((1ULL << 40) - 1));
    }
    xml_free(st);
}

static void cc_write(comp_client_t *c, const char *s, size_t n)
{
    if (c->bev)
        bufferevent_write(c->bev, s, n);
}

static void cc_puts(comp_client_t *c, const char *s)
{
    cc_write(c, s, strlen(s));
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    comp_client_t *c = arg;
    if (c->state == CC_IDLE)
        cc_connect(c);
    else if (c->close_sent) {
        log_warn("event=router-close-timeout component=%s", c->cfg.name);
        cc_drop(c);
    } else if (c->state != CC_READY && c->state != CC_CLOSED) {
        log_warn("event=router-link-timeout component=%s state=%d", c->cfg.name, (int)c->state);
        cc_event_cb(c->bev, BEV_EVENT_ERROR, c);
    }
}

static void schedule(comp_client_t *c, double seconds)
{
    struct timeval tv = {(time_t)seconds, (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
    evtimer_add(c->timer, &tv);
}

/* Drops the link and plans the next attempt with jittered exponential backoff. */
static void cc_drop(comp_client_t *c)
{
    int was_ready = c->state == CC_READY;
    if (c->bev)
        bufferevent_free(c->bev);
    c->bev = NULL;
    /* The parser may be running (we are inside its callback): free it after. */
    if (c->xs && c->in_callback)
        c->dead_xs = c->xs;
    else if (c->xs)
        xml_stream_free(c->xs);
    c->xs = NULL;
    if (c->sasl)
        sasl_client_free(c->sasl);
    c->sasl = NULL;
    c->tls = 0;
    parked_free(c);   /* unacknowledged: the router gives them again */
    c->have_marker = 0;
    c->marker_epoch[0] = '\0';
    c->close_sent = 0;
    if (c->closing) {
        c->state = CC_CLOSED;
        evtimer_del(c->timer);
    } else {
        c->state = CC_IDLE;
        double max = c->cfg.backoff_max > 0 ? c->cfg.backoff_max : 10.0;
        double jitter = 0.75 + (double)(rand() % 1000) / 2000.0;
        schedule(c, c->backoff * jitter);
        c->backoff = c->backoff * 2 > max ? max : c->backoff * 2;
    }
    if ((was_ready || c->closing) && c->cb.on_down)
        c->cb.on_down(c->ctx);
}

/* --- outgoing buffer -------------------------------------------------------- */

static void lens_push(comp_client_t *c, size_t len, uint32_t fan_n, uint32_t fan_i)
{
    if (c->lens_len == c->lens_cap) {
        size_t ncap = c->lens_cap ? c->lens_cap * 2 : 256;
        out_ent_t *n = xmalloc(ncap * sizeof *n);
        for (size_t i = 0; i < c->lens_len; i++)
            n[i] = c->lens[(c->lens_head + i) % c->lens_cap];
        free(c->lens);
        c->lens = n;
        c->lens_head = 0;
        c->lens_cap = ncap;
    }
    out_ent_t *e = &c->lens[(c->lens_head + c->lens_len) % c->lens_cap];
    e->len = len;
    e->fan_n = fan_n;
    e->fan_i = fan_i;
    c->lens_len++;
}

static void drop_acked(comp_client_t *c, uint64_t h)
{
    size_t drain = 0;
    while (c->lens_len && c->first_seq <= h) {
        drain += c->lens[c->lens_head].len;
        c->lens_head = (c->lens_head + 1) % c->lens_cap;
        c->lens_len--;
        c->first_seq++;
    }
    if (!c->lens_len)
        c->first_seq = c->next_seq;
    evbuffer_drain(c->retained, drain);
    if (c->above && evbuffer_get_length(c->retained) <= low_water(c))
        event_active(c->resume_ev, EV_TIMEOUT, 0);   /* not from inside the parser */
    if (c->closing && c->state == CC_READY)
        comp_client_close(c, 0);
}

/* Writes every retained element not yet written on this link. A fan-out
 * goes again without the ack it carried (that counted another link's
 * deliveries) and, when the router acknowledged some of its deliveries
 * already (the session's acked fell inside it), with skip= so that the
 * router counts and delivers only the rest (docs/component-protocol.md 9.7). */
static void flush_retained(comp_client_t *c)
{
    uint64_t seq = c->first_seq;
    struct evbuffer_ptr pos;
    evbuffer_ptr_set(c->retained, &pos, 0, EVBUFFER_PTR_SET);
    for (size_t i = 0; i < c->lens_len; i++, seq++) {
        const out_ent_t *e = &c->lens[(c->lens_head + i) % c->lens_cap];
        size_t len = e->len;
        uint32_t skip = 0;
        if (e->fan_n) {
            size_t rest = e->fan_n - 1 - e->fan_i;    /* its seqs after this one */
            skip = e->fan_i;
            len = c->lens[(c->lens_head + i + rest) % c->lens_cap].len;
            i += rest;
            seq += rest;
        }
        if (seq > c->sent_upto) {
            char stackbuf[8192];
            char *buf = len <= sizeof stackbuf ? stackbuf : xmalloc(len);
            evbuffer_copyout_from(c->retained, &pos, buf, len);
            if (e->fan_n) {
                char head[64];
                int hl = skip ? snprintf(head, sizeof head, "<w:fanout skip='%u'", (unsigned)skip)
                              : snprintf(head, sizeof head, "<w:fanout");
                cc_write(c, head, (size_t)hl);
            }
            cc_write(c, buf, len);
            if (buf != stackbuf)
                free(buf);
        }
        evbuffer_ptr_set(c->retained, &pos, len, EVBUFFER_PTR_ADD);
    }
    c->sent_upto = c->next_seq - 1;
}

int comp_client_send_raw(comp_client_t *c, const char *bytes, size_t len)
{
    if (c->state == CC_CLOSED || c->close_sent || evbuffer_get_length(c->retained) + len > max_buffer(c))
        return -1;
    evbuffer_add(c->retained, bytes, len);
    lens_push(c, len, 0, 0);
    c->next_seq++;
    if (c->state == CC_READY) {
        cc_write(c, bytes, len);
        c->sent_upto = c->next_seq - 1;
    }
    pressure_check(c);
    return 0;
}

int comp_client_send(comp_client_t *c, const xml_node_t *st)
{
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(st, COMP_NS_ACCEPT, &sb);
    int r = comp_client_send_raw(c, sb.data, sb.len);
    strbuf_free(&sb);
    return r;
}

/* Retains and (when ready) writes one fan-out element for to[0..n), h
 * attached when nonzero. */
static void fanout_push(comp_client_t *c, const char *stanza, size_t len, const char *const *to, size_t n,
                        uint64_t h)
{
    strbuf_t body;
    strbuf_init(&body);
    comp_fanout_write_body(&body, stanza, len, to, n);
    evbuffer_add(c->retained, body.data, body.len);
    for (size_t i = 0; i < n; i++)
        lens_push(c, i + 1 == n ? body.len : 0, (uint32_t)n, (uint32_t)i);
    c->next_seq += n;
    if (c->state == CC_READY) {
        char head[64];
        int hl = h ? snprintf(head, sizeof head, "<w:fanout h='%llu'", (unsigned long long)h)
                   : snprintf(head, sizeof head, "<w:fanout");
        cc_write(c, head, (size_t)hl);
        cc_write(c, body.data, body.len);
        c->sent_upto = c->next_seq - 1;
    }
    strbuf_free(&body);
}

int comp_client_send_fanout(comp_client_t *c, const char *stanza, size_t len, const char *const *to, size_t n,
                            uint64_t ack_token)
{
    size_t total = len + 64;
    for (size_t i = 0; i < n; i++)
        total += comp_fanout_recipient_len(to[i]);
    if (c->state == CC_CLOSED || c->close_sent || evbuffer_get_length(c->retained) + total > max_buffer(c))
        return -1;
    /* The ack rides on the (last) element only on the link the token is of,
     * and only when that element is written now: a retained element goes
     * out later, after acks written meanwhile. */
    int ack = ack_token && c->cfg.manual_ack && c->state == CC_READY &&
              (ack_token >> 40) == (c->link_gen & 0xffffff);
    if (ack)
        mark_done(c, ack_token & ((1ULL << 40) - 1));
    size_t i = 0;
    while (i < n) {
        /* As many recipients as the router's limits let one element carry;
         * at least one, so that an oversized stanza still goes (and is
         * refused or bounced by the router, not lost here). */
        size_t k = 0, bytes = len + 64, expand = 0;   /* 64: <w:fanout h='...'> and its end tag */
        while (i + k < n) {
            size_t rl = comp_fanout_recipient_len(to[i + k]);
            size_t dl = len + rl;
            if (k && (k + 1 > c->lim_fan_recipients || bytes + rl > c->lim_stanza ||
                      expand + dl > c->lim_fan_bytes))
                break;
            bytes += rl;
            expand += dl;
            k++;
        }
        uint64_t h = 0;
        if (i + k == n && ack)
            h = ack_take(c);
        else if (i + k < n)
            log_debug("event=fanout-split component=%s recipients=%zu part=%zu", c->cfg.name, n, k);
        fanout_push(c, stanza, len, to + i, k, h);
        i += k;
    }
    pressure_check(c);
    return 0;
}

int comp_client_is_ready(const comp_client_t *c)
{
    return c->state == CC_READY;
}

size_t comp_client_unacked(const comp_client_t *c)
{
    return c->lens_len;
}

size_t comp_client_buffered_bytes(const comp_client_t *c)
{
    return evbuffer_get_length(c->retained);
}

int comp_client_above_high(const comp_client_t *c)
{
    return c->above && !c->unstalling;
}

size_t comp_client_parked(const comp_client_t *c)
{
    return c->nparked;
}

/* Below the low-water mark again: the parked stanzas go to on_stanza in
 * order, as long as the link stays below the high-water mark. */
static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    comp_client_t *c = arg;
    int stalled = what == 0;   /* from stall_cb: above, and no ack for a while */
    if (!c->above || (!stalled && evbuffer_get_length(c->retained) > low_water(c)))
        return;
    if (!stalled) {
        c->above = 0;
        evtimer_del(c->stall_ev);
        log_info("event=link-backpressure component=%s state=off buffered=%zu parked=%zu", c->cfg.name,
                 evbuffer_get_length(c->retained), c->nparked);
        if (c->cb.on_pressure)
            c->cb.on_pressure(c->ctx, 0);
    }
    /* A marker read for a stanza still in the parser stays its own. */
    char epoch[sizeof c->marker_epoch];
    memcpy(epoch, c->marker_epoch, sizeof epoch);
    uint64_t mseq = c->marker_seq;
    c->unstalling = stalled;
    c->in_callback = 1;
    while (c->parked && (!c->above || (stalled && evbuffer_get_length(c->retained) < max_buffer(c) / 4 * 3)) &&
           !c->closing && !c->close_sent &&
           (c->state == CC_READY || c->state == CC_BINDING)) {
        parked_t *p = c->parked;
        c->parked = p->next;
        if (!c->parked)
            c->parked_tail = &c->parked;
        if (p->rc) {
            c->nparked -= p->nrc;
            deliver_fan(c, p->st, p->rc, p->nrc);
            free(p->rc);
            free(p);
            continue;
        }
        c->nparked--;
        c->cur_marker = p->marker;
        memcpy(c->marker_epoch, p->epoch, sizeof c->marker_epoch);
        c->marker_seq = p->marker_seq;
        deliver(c, p->st, p->seq);
        free(p);
    }
    memcpy(c->marker_epoch, epoch, sizeof epoch);
    c->marker_seq = mseq;
    c->unstalling = 0;
    c->in_callback = 0;
    if (c->bev)
        send_ack(c);
    if (c->bev && c->closing && !c->close_sent && c->state == CC_READY)
        comp_client_close(c, 0);
    if (c->dead_xs) {
        xml_stream_free(c->dead_xs);
        c->dead_xs = NULL;
    }
    if (c->free_pending)
        comp_client_free(c);
}

/* --- incoming ---------------------------------------------------------------- */

static seen_epoch_t *seen_get(comp_client_t *c, const char *epoch, const char *domain, size_t dlen,
                              const char *via)
{
    time_t now = time(NULL);
    if (dlen >= sizeof c->seen[0].domain)
        dlen = sizeof c->seen[0].domain - 1;
    for (size_t i = 0; i < c->nseen; i++) {
        seen_epoch_t *s = &c->seen[i];
        if (!strcmp(s->epoch, epoch) && strlen(s->domain) == dlen && !memcmp(s->domain, domain, dlen) &&
            !strcmp(s->via, via)) {
            s->used = now;
            return s;
        }
    }
    /* Forget pairs unused for ten minutes: past the router's hold time no
     * copy of their stanzas can still come. */
    if (c->nseen >= 64) {
        size_t j = 0;
        for (size_t i = 0; i < c->nseen; i++)
            if (now - c->seen[i].used < 600)
                c->seen[j++] = c->seen[i];
        c->nseen = j;
    }
    c->seen = xrealloc(c->seen, (c->nseen + 1) * sizeof *c->seen);
    seen_epoch_t *s = &c->seen[c->nseen++];
    snprintf(s->epoch, sizeof s->epoch, "%s", epoch);
    memcpy(s->domain, domain, dlen);
    s->domain[dlen] = '\0';
    snprintf(s->via, sizeof s->via, "%s", via);
    s->last = 0;
    s->used = now;
    return s;
}

/* The ack that may go now (everything received, or with manual_ack the
 * finished prefix), taken as sent; 0 when there is nothing new to ack. */
static uint64_t ack_take(comp_client_t *c)
{
    if (c->in_count == c->in_acked || c->close_sent || (c->state != CC_READY && c->state != CC_BINDING))
        return 0;
    uint64_t upto = c->parked ? c->parked->seq - 1 : c->in_count;   /* parked: not handled yet */
    if (upto == c->in_acked)
        return 0;
    if (c->cfg.manual_ack) {
        size_t n = 0, pending = (size_t)(c->in_count - c->in_acked);
        while (n < pending && c->done[n])
            n++;
        if (n == 0)
            return 0;
        memmove(c->done, c->done + n, pending - n);
        memset(c->done + (pending - n), 0, n);
        upto = c->in_acked + n;
    }
    c->in_acked = upto;
    return upto;
}

static void send_ack(comp_client_t *c)
{
    if (c->cb.before_ack)
        c->cb.before_ack(c->ctx);
    uint64_t upto = ack_take(c);
    if (!upto)
        return;
    char buf[64];
    int n = snprintf(buf, sizeof buf, "<w:a h='%llu'/>", (unsigned long long)upto);
    cc_write(c, buf, (size_t)n);
}

/* Marks stanza number seq (of the current link) finished. */
static void mark_done(comp_client_t *c, uint64_t seq)
{
    /* Without manual_ack there is no done array: everything is acked on receipt. */
    if (!c->cfg.manual_ack || seq <= c->in_acked || seq > c->in_count)
        return;
    c->done[seq - c->in_acked - 1] = 1;
}

int comp_client_in_origin(const comp_client_t *c, const char **epoch, uint64_t *seq)
{
    if (!c->cur_marker)
        return -1;
    *epoch = c->marker_epoch;
    *seq = c->marker_seq;
    return 0;
}

uint64_t comp_client_in_token(const comp_client_t *c)
{
    return (c->link_gen << 40) | c->cur_seq;
}

void comp_client_done(comp_client_t *c, uint64_t token)
{
    if (!c->cfg.manual_ack || (token >> 40) != (c->link_gen & 0xffffff))
        return;
    mark_done(c, token & ((1ULL << 40) - 1));
    if (!c->in_callback)
        send_ack(c);
    if (c->closing && !c->close_sent && c->state == CC_READY && !c->in_callback)
        comp_client_close(c, 0);
}

size_t comp_client_stanza_limit(const comp_client_t *c)
{
    return c->lim_stanza;
}

void comp_client_flush(comp_client_t *c)
{
    if (!c->bev || bufferevent_get_underlying(c->bev))
        return;   /* TLS: the filter writes at the next loop turn */
    send_ack(c);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_get_length(out) && (c->state == CC_READY || c->state == CC_BINDING))
        evbuffer_write(out, bufferevent_getfd(c->bev));
}

int comp_client_write_room(const comp_client_t *c, size_t *room, size_t *capacity)
{
    if (!c->bev || bufferevent_get_underlying(c->bev))
        return -1;
    if (evbuffer_get_length(bufferevent_get_output(c->bev))) {
        *room = *capacity = 0;
        return 0;
    }
    int fd = bufferevent_getfd(c->bev), sndbuf = 0, outq = 0;
    socklen_t l = sizeof sndbuf;
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &l) < 0 ||
        ioctl(fd, SIOCOUTQ, &outq) < 0)
        return -1;
    *room = outq == 0 ? SIZE_MAX : sndbuf > outq ? (size_t)(sndbuf - outq) : 0;
    *capacity = sndbuf > 0 ? (size_t)sndbuf : 0;
    return 0;
}

void comp_client_released(comp_client_t *c, const char *name, const char *instance)
{
    if (c->state != CC_READY)
        return;   /* the link went: the router counts that as released */
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_puts(&sb, "<w:released name='");
    xml_escape(&sb, name, strlen(name), 1);
    strbuf_puts(&sb, "' instance='");
    xml_escape(&sb, instance, strlen(instance), 1);
    strbuf_puts(&sb, "'/>");
    cc_write(c, sb.data, sb.len);
    strbuf_free(&sb);
}

static void do_bind(comp_client_t *c)
{
    strbuf_t sb;
    strbuf_init(&sb);
    c->pending_binds = 0;
    for (size_t i = 0; i < c->cfg.nbinds; i++) {
        strbuf_puts(&sb, "<w:bind name='");
        xml_escape(&sb, c->binds[i], strlen(c->binds[i]), 1);
        strbuf_puts(&sb, "'/>");
        c->pending_binds++;
    }
    if (c->cfg.bind_default) {
        strbuf_puts(&sb, "<w:bind default='true'/>");
        c->pending_binds++;
    }
    cc_write(c, sb.data, sb.len);
    strbuf_free(&sb);
}

static void become_ready(comp_client_t *c)
{
    c->state = CC_READY;
    c->backoff = 0.1;
    evtimer_del(c->timer);
    log_notice("event=router-linked component=%s router=%s tls=%d resent=%llu", c->cfg.name,
               c->cfg.router, c->tls, (unsigned long long)(c->next_seq - 1 - c->sent_upto));
    flush_retained(c);
    if (c->cb.on_ready)
        c->cb.on_ready(c->ctx);
}

static void handle_control(comp_client_t *c, xml_node_t *st)
{
    const char *n = st->name;
    if (!strcmp(n, "o")) {
        const char *e = xml_attr_get(st, "e");
        const char *ns = xml_attr_get(st, "n");
        if (e)
            snprintf(c->marker_epoch, sizeof c->marker_epoch, "%s", e);
        const char *via = xml_attr_get(st, "p");
        snprintf(c->marker_via, sizeof c->marker_via, "%s", via ? via : "");
        if (ns && c->marker_epoch[0]) {
            c->marker_seq = strtoull(ns, NULL, 10);
            c->have_marker = 1;
        }
    } else if (!strcmp(n, "fan")) {
        handle_fan(c, st);
    } else if (!strcmp(n, "a")) {
        const char *h = xml_attr_get(st, "h");
        if (h)
            drop_acked(c, strtoull(h, NULL, 10));
    } else if (!strcmp(n, "session") && c->state == CC_SESSION) {
        const char *a = xml_attr_get(st, "acked");
        if (a)
            drop_acked(c, strtoull(a, NULL, 10));
        const char *lim[3] = {"stanza-bytes", "fanout-bytes", "fanout-recipients"};
        size_t *dst[3] = {&c->lim_stanza, &c->lim_fan_bytes, &c->lim_fan_recipients};
        for (int i = 0; i < 3; i++) {
            const char *v = xml_attr_get(st, lim[i]);
            unsigned long long x = v ? strtoull(v, NULL, 10) : 0;
            if (x > 0)
                *dst[i] = (size_t)x;
        }
        c->state = CC_BINDING;
        do_bind(c);
        if (!c->pending_binds)
            become_ready(c);
    } else if (!strcmp(n, "bound") || !strcmp(n, "bind-error")) {
        if (!strcmp(n, "bind-error")) {
            const char *name = xml_attr_get(st, "name");
            const char *cond = xml_attr_get(st, "condition");
            log_error("event=bind-failed component=%s name=%s condition=%s", c->cfg.name,
                      name ? name : "(default)", cond ? cond : "?");
            if (c->cb.on_bind_error)
                c->cb.on_bind_error(c->ctx, name ? name : "", cond ? cond : "");
        }
        if (c->state == CC_BINDING && c->pending_binds && --c->pending_binds == 0)
            become_ready(c);
    } else if (!strcmp(n, "name")) {
        const char *name = xml_attr_get(st, "name");
        const char *inst = xml_attr_get(st, "instance");
        const char *state = xml_attr_get(st, "state");
        if (name && inst && state && c->cb.on_name)
            c->cb.on_name(c->ctx, name, inst, !strcmp(state, "up"));
        if (name && inst && state && !strcmp(state, "lost") && c->cb.on_lost)
            c->cb.on_lost(c->ctx, name, inst);
    } else if (!strcmp(n, "fanout-error")) {
        /* comp_client_send_fanout keeps within the limits the router gave:
         * this is a router whose limits changed under us. */
        const char *first = xml_attr_get(st, "first"), *count = xml_attr_get(st, "count");
        const char *cond = xml_attr_get(st, "condition");
        log_error("event=fanout-refused component=%s first=%s count=%s condition=%s", c->cfg.name,
                  first ? first : "?", count ? count : "?", cond ? cond : "?");
    } else if (!strcmp(n, "handback")) {
        const char *name = xml_attr_get(st, "name");
        const char *inst = xml_attr_get(st, "instance");
        if (name && inst && c->cb.on_handback)
            c->cb.on_handback(c->ctx, name, inst);
        else if (name && inst)
            comp_client_released(c, name, inst);
    }
}

static void start_sasl(comp_client_t *c, xml_node_t *mechs)
{
    int has_plus = 0, has_plain = 0;
    for (xml_node_t *m = xml_child(mechs, NS_SASL, "mechanism"); m; m = xml_next(m, NS_SASL, "mechanism")) {
        char *t = xml_text(m);
        if (!strcmp(t, "SCRAM-SHA-256-PLUS"))
            has_plus = 1;
        if (!strcmp(t, "SCRAM-SHA-256"))
            has_plain = 1;
        free(t);
    }
    unsigned char exporter[32], endpoint[TLS_CBIND_MAX];
    size_t endpoint_len = sizeof endpoint;
    sasl_cbind_t cb = {0};
    const char *mech = "SCRAM-SHA-256";
    if (c->tls && has_plus) {
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        if (tls_cbind_exporter(ssl, exporter) == 0) {
            cb.tls_exporter = exporter;
            cb.tls_exporter_len = 32;
        }
        if (tls_cbind_server_end_point(ssl, 0, endpoint, &endpoint_len) == 0) {
            cb.tls_server_end_point = endpoint;
            cb.tls_server_end_point_len = endpoint_len;
        }
        if (cb.tls_exporter || cb.tls_server_end_point)
            mech = "SCRAM-SHA-256-PLUS";
    } else if (!has_plain) {
        log_error("event=auth-failed component=%s reason=no-common-mechanism", c->cfg.name);
        cc_drop(c);
        return;
    }
    c->sasl = sasl_client_new(mech, c->cfg.name, c->cfg.secret, NULL, c->tls ? &cb : NULL);
    strbuf_t out, sb;
    strbuf_init(&out);
    strbuf_init(&sb);
    sasl_client_step(c->sasl, NULL, 0, &out);
    strbuf_printf(&sb, "<auth xmlns='" NS_SASL "' mechanism='%s'>", mech);
    base64_encode((const unsigned char *)out.data, out.len, &sb);
    strbuf_puts(&sb, "</auth>");
    cc_write(c, sb.data, sb.len);
    strbuf_free(&out);
    strbuf_free(&sb);
}

/* Puts TLS under the link; runs after the parser returned (cc_read_cb). */
static void start_tls(comp_client_t *c)
{
    c->starttls_pending = 0;
    if (!c->tls_ctx) {
        char err[256];
        c->tls_ctx = tls_client_ctx_new(c->cfg.tls_ca, c->cfg.tls_verify, err, sizeof err);
        if (!c->tls_ctx) {
            log_error("event=tls-failed component=%s reason=\"%s\"", c->cfg.name, err);
            cc_drop(c);
            return;
        }
    }
    /* <proceed/> was read as plain text; nothing after it may reach TLS. */
    struct evbuffer *plain_in = bufferevent_get_input(c->bev);
    evbuffer_drain(plain_in, evbuffer_get_length(plain_in));
    SSL *ssl = SSL_new(c->tls_ctx);
    if (c->cfg.tls_verify)
        tls_client_set_peer_name(ssl, c->cfg.router_name);
    struct bufferevent *tb = bufferevent_openssl_filter_new(c->base, c->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                            BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!tb) {
        cc_drop(c);
        return;
    }
    c->bev = tb;
    c->tls = 1;
    bufferevent_setcb(tb, cc_read_cb, NULL, cc_event_cb, c);
    bufferevent_enable(tb, EV_READ | EV_WRITE);
    strbuf_t sb;
    strbuf_init(&sb);
    comp_proto_header(&sb, NULL, c->cfg.router_name, NULL, 1);
    cc_write(c, sb.data, sb.len);
    strbuf_free(&sb);
}

static void handle_features(comp_client_t *c, xml_node_t *st)
{
    xml_node_t *tls = xml_child(st, NS_TLS, "starttls");
    xml_node_t *mechs = xml_child(st, NS_SASL, "mechanisms");
    if (xml_child(st, COMP_NS, "session")) {
        char buf[128];
        int n = snprintf(buf, sizeof buf, "<w:session epoch='%s' next='%llu'%s/>", c->epoch,
                         (unsigned long long)c->first_seq, c->cb.on_fan ? " fan='1'" : "");
        cc_write(c, buf, (size_t)n);
        c->state = CC_SESSION;
        c->in_count = c->in_acked = 0;
        c->link_gen = (c->link_gen + 1) & 0xffffff;
        if (c->done)
            memset(c->done, 0, c->done_cap);
        c->sent_upto = c->first_seq - 1;
        return;
    }
    if (tls && !c->tls) {
        const struct sockaddr *sa = (const struct sockaddr *)&c->addr.ss;
        if (xml_child(tls, NS_TLS, "required") || !net_addr_is_local(sa) || c->cfg.tls_always) {
            cc_puts(c, "<starttls xmlns='" NS_TLS "'/>");
            return;
        }
    } else if (!tls && !c->tls && c->cfg.tls_always) {
        log_error("event=router-link-failed component=%s reason=tls-not-offered", c->cfg.name);
        cc_drop(c);
        return;
    }
    if (mechs) {
        start_sasl(c, mechs);
        return;
    }
    log_error("event=router-link-failed component=%s reason=no-usable-features", c->cfg.name);
    cc_drop(c);
}

static void handle_sasl(comp_client_t *c, xml_node_t *st)
{
    if (!strcmp(st->name, "failure") || !c->sasl) {
        xml_node_t *cond = xml_child(st, NULL, NULL);
        log_error("event=auth-failed component=%s router=%s condition=%s", c->cfg.name, c->cfg.router,
                  cond ? cond->name : "?");
        cc_drop(c);
        return;
    }
    char *text = xml_text(st);
    strbuf_t in, out;
    strbuf_init(&in);
    strbuf_init(&out);
    int bad = base64_decode(text, strlen(text), &in) < 0;
    free(text);
    sasl_result_t r = bad ? SASL_FAIL : sasl_client_step(c->sasl, in.data ? in.data : "", in.len, &out);
    if (r == SASL_FAIL) {
        log_error("event=auth-failed component=%s reason=bad-server-message", c->cfg.name);
        cc_drop(c);
    } else if (!strcmp(st->name, "challenge")) {
        strbuf_t sb;
        strbuf_init(&sb);
        strbuf_puts(&sb, "<response xmlns='" NS_SASL "'>");
        base64_encode((const unsigned char *)out.data, out.len, &sb);
        strbuf_puts(&sb, "</response>");
        cc_write(c, sb.data, sb.len);
        strbuf_free(&sb);
    } else if (!strcmp(st->name, "success")) {
        if (r != SASL_DONE) {
            log_error("event=auth-failed component=%s reason=server-signature", c->cfg.name);
            cc_drop(c);
        } else {
            sasl_client_free(c->sasl);
            c->sasl = NULL;
            xml_stream_restart(c->xs);
            strbuf_t sb;
            strbuf_init(&sb);
            comp_proto_header(&sb, NULL, c->cfg.router_name, NULL, 1);
            cc_write(c, sb.data, sb.len);
            strbuf_free(&sb);
        }
    }
    strbuf_free(&in);
    strbuf_free(&out);
}

static void on_open(void *ctx, const xml_node_t *hdr, const char *default_ns)
{
    (void)hdr;
    (void)default_ns;
    (void)ctx;
}

/* One more routed element (or delivery of a <w:fan/>) received on this
 * link: counted for <w:a h/>, with room for its done flag (manual_ack). */
static void count_in(comp_client_t *c)
{
    c->in_count++;
    if (!c->cfg.manual_ack)
        return;
    size_t need = (size_t)(c->in_count - c->in_acked);
    if (need > c->done_cap) {
        size_t cap = c->done_cap ? c->done_cap * 2 : 256;
        while (cap < need)
            cap *= 2;
        c->done = xrealloc(c->done, cap);
        memset(c->done + c->done_cap, 0, cap - c->done_cap);
        c->done_cap = cap;
    }
}

/* Whether the element with marker (epoch, seq, via) for 'to' was accepted
 * before (9.4); accepts it if not. */
static int seen_dup(comp_client_t *c, const char *to, uint64_t seq)
{
    size_t dlen = 0;
    const char *dom = to ? jid_domain_span(to, &dlen) : NULL;
    seen_epoch_t *s = seen_get(c, c->marker_epoch, dom ? dom : "", dom ? dlen : 0, c->marker_via);
    if (seq <= s->last)
        return 1;
    s->last = seq;
    return 0;
}

/* A <w:fan/> (docs/component-protocol.md 9.8): each of its recipients is
 * one delivery, counted and checked for duplicates as a routed element
 * with its own marker would be; what is new goes to the component in one
 * call (deliver_fan), or is parked as one entry under backpressure. */
static void handle_fan(comp_client_t *c, xml_node_t *el)
{
    if (c->closing) {
        c->have_marker = 0;    /* as a routed element: not taken, the router gives it again */
        return;
    }
    if (c->state != CC_READY && c->state != CC_BINDING)
        return;
    comp_fanin_t f;
    const char *why = NULL;
    if (comp_fanin_parse(el, &f, &why) < 0) {
        log_warn("event=router-protocol-error component=%s element=fan reason=\"%s\"", c->cfg.name, why);
        cc_drop(c);
        return;
    }
    if (f.epoch)
        snprintf(c->marker_epoch, sizeof c->marker_epoch, "%s", f.epoch);
    snprintf(c->marker_via, sizeof c->marker_via, "%s", f.via ? f.via : "");
    c->have_marker = 0;
    xml_node_t *st = f.stanza;
    xml_detach(st);
    comp_fan_rcpt_t *rc = xmalloc(f.nto * sizeof *rc);
    size_t k = 0, strbytes = 0;
    for (size_t i = 0; i < f.nto; i++) {
        count_in(c);
        if (c->marker_epoch[0] && seen_dup(c, f.to[i], f.n[i])) {
            log_debug("event=duplicate-dropped component=%s", c->cfg.name);
            mark_done(c, c->in_count);
            continue;
        }
        rc[k].to = f.to[i];
        rc[k++].token = (c->link_gen << 40) | c->in_count;
        strbytes += strlen(f.to[i]) + 1;
    }
    if (!k) {
        xml_free(st);
    } else if (c->cb.on_stanza && (c->above || c->parked)) {
        /* Parked as one entry; the recipients' JIDs (in el, freed after
         * this) are copied behind the array. */
        parked_t *p = xcalloc(1, sizeof *p);
        p->rc = xmalloc(k * sizeof *rc + strbytes);
        char *dst = (char *)(p->rc + k);
        for (size_t i = 0; i < k; i++) {
            size_t l = strlen(rc[i].to) + 1;
            memcpy(dst, rc[i].to, l);
            p->rc[i].to = dst;
            p->rc[i].token = rc[i].token;
            dst += l;
        }
        p->nrc = k;
        p->st = st;
        p->seq = rc[0].token & ((1ULL << 40) - 1);
        *c->parked_tail = p;
        c->parked_tail = &p->next;
        if (!c->nparked)
            log_debug("event=input-parked component=%s reason=backpressure", c->cfg.name);
        c->nparked += k;
    } else if (c->cb.on_stanza || c->cb.on_fan) {
        deliver_fan(c, st, rc, k);
    } else {
        xml_free(st);
    }
    free(rc);
    comp_fanin_clear(&f);
}

static void on_stanza(void *ctx, xml_node_t *st)
{
    comp_client_t *c = ctx;
    if (c->state == CC_IDLE || c->state == CC_CLOSED || c->close_sent) {
        xml_free(st);
        return;
    }
    if (!strcmp(st->ns, XML_NS_STREAM)) {
        if (!strcmp(st->name, "features")) {
            handle_features(c, st);
        } else if (!strcmp(st->name, "error")) {
            xml_node_t *cond = xml_child(st, NS_STREAMS, NULL);
            log_warn("event=router-stream-error component=%s condition=%s", c->cfg.name,
                     cond ? cond->name : "?");
            cc_drop(c);
        }
    } else if (!strcmp(st->ns, NS_TLS)) {
        if (!strcmp(st->name, "proceed")) {
            xml_stream_restart(c->xs);
            c->starttls_pending = 1;
        } else
            cc_drop(c);
    } else if (!strcmp(st->ns, NS_SASL)) {
        handle_sasl(c, st);
    } else if (!strcmp(st->ns, COMP_NS)) {
        handle_control(c, st);
    } else if (c->closing) {
        /* Stopping: an element taken now could not be finished and
         * acknowledged before the close; left unacknowledged, the router
         * gives it to the next instance. */
        c->have_marker = 0;
    } else if (c->state == CC_READY || c->state == CC_BINDING) {
        /* Held stanzas may arrive as soon as a name is bound, before all
         * binds are answered. */
        count_in(c);
        int dup = c->have_marker && seen_dup(c, xml_attr_get(st, "to"), c->marker_seq);
        c->cur_marker = c->have_marker;
        c->have_marker = 0;
        if (dup) {
            log_debug("event=duplicate-dropped component=%s", c->cfg.name);
            mark_done(c, c->in_count);
        } else if (c->cb.on_stanza && (c->above || c->parked)) {
            parked_t *p = xcalloc(1, sizeof *p);
            p->st = st;
            p->seq = c->in_count;
            p->marker = c->cur_marker;
            memcpy(p->epoch, c->marker_epoch, sizeof p->epoch);
            p->marker_seq = c->marker_seq;
            *c->parked_tail = p;
            c->parked_tail = &p->next;
            if (!c->nparked++)
                log_debug("event=input-parked component=%s reason=backpressure", c->cfg.name);
            c->cur_marker = 0;
            return;
        } else if (c->cb.on_stanza) {
            deliver(c, st, c->in_count);
            return;
        }
    }
    xml_free(st);
}

static void on_close(void *ctx)
{
    comp_client_t *c = ctx;
    log_notice("event=router-closed component=%s", c->cfg.name);
    cc_drop(c);
}

static const xml_stream_cb_t parser_cb = {
    .on_open = on_open,
    .on_stanza = on_stanza,
    .on_close = on_close,
};

/* Parses what the input buffer holds; 0 once the link changed under it
 * (dropped, or TLS starting): nothing more may be read now. */
static int cc_feed(comp_client_t *c, struct bufferevent *bev)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    while (c->bev == bev && evbuffer_get_length(in)) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t n = v.iov_len;
        xs_err_t e = xml_stream_feed(c->xs, v.iov_base, n);
        /* libevent keeps bev (and in) alive until this callback returns. */
        evbuffer_drain(in, n);
        if (c->bev != bev)
            return 0; /* dropped from inside a callback */
        if (c->starttls_pending && e == XS_OK) {
            start_tls(c);
            return 0;
        }
        if (e != XS_OK) {
            log_warn("event=router-bad-xml component=%s detail=\"%s\"", c->cfg.name, xml_stream_error_text(c->xs));
            cc_drop(c);
            return 0;
        }
    }
    return c->bev == bev;
}

/* libevent reads at most 4096 bytes per read event, so a busy link (a c2s's
 * <deliver/> elements, an sm's fan-outs) cost an event loop turn, a FIONREAD
 * and a readv per 4 KiB, and each turn's output went to the router as a
 * write of its own. On a plain socket the link reads on by itself, up to
 * READ_CHUNK at a time and READ_BUDGET per event, as the router does on its
 * side (router/link.c). End of file and errors are left for libevent's next
 * read to report. */
#define READ_CHUNK 65536
#define READ_BUDGET (4 * READ_CHUNK)

static void cc_read_cb(struct bufferevent *bev, void *arg)
{
    comp_client_t *c = arg;
    c->in_callback = 1;
    int more = cc_feed(c, bev);
    evutil_socket_t fd = bufferevent_getfd(bev);
    for (size_t got = 0; more && got < READ_BUDGET && !c->tls && fd >= 0 && !c->closing;) {
        ssize_t r = net_recv_more(bufferevent_get_input(bev), fd, READ_CHUNK);
        if (r <= 0)
            break;
        got += (size_t)r;
        more = cc_feed(c, bev);
    }
    if (c->bev)
        send_ack(c);
    c->in_callback = 0;
    if (c->bev == bev && c->closing && !c->close_sent && c->state == CC_READY)
        comp_client_close(c, 0);
    if (c->dead_xs) {
        xml_stream_free(c->dead_xs);
        c->dead_xs = NULL;
    }
    if (c->free_pending)
        comp_client_free(c);
}

static void cc_event_cb(struct bufferevent *bev, short what, void *arg)
{
    comp_client_t *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        /* The TLS filter reports CONNECTED again after its handshake; the
         * header for the TLS stream was already queued by start_tls. */
        if (c->state != CC_CONNECTING)
            return;
        c->state = CC_STREAM;
        strbuf_t sb;
        strbuf_init(&sb);
        comp_proto_header(&sb, NULL, c->cfg.router_name, NULL, 1);
        cc_write(c, sb.data, sb.len);
        strbuf_free(&sb);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        char reason[256];
        snprintf(reason, sizeof reason, "%s", (what & BEV_EVENT_EOF) ? "eof" : "error");
        unsigned long e;
        while (c->tls && bev && (e = bufferevent_get_openssl_error(bev)))
            ERR_error_string_n(e, reason, sizeof reason);
        if (c->state >= CC_STREAM)
            log_notice("event=router-link-lost component=%s router=%s reason=\"%s\" unacked=%zu", c->cfg.name,
                       c->cfg.router, reason, c->lens_len);
        cc_drop(c);
    }
}

static void cc_connect(comp_client_t *c)
{
    c->bev = net_connect(c->base, &c->addr);
    if (!c->bev) {
        cc_drop(c);
        return;
    }
    xml_limits_t lim;
    xml_limits_default(&lim);
    lim.max_stanza_bytes = 16u << 20;
    c->xs = xml_stream_new(&parser_cb, c, &lim);
    c->state = CC_CONNECTING;
    bufferevent_setcb(c->bev, cc_read_cb, NULL, cc_event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    schedule(c, 10.0);
}

comp_client_t *comp_client_new(struct event_base *base, const comp_client_cfg_t *cfg,
                               const comp_client_cb_t *cb, void *ctx)
{
    /* A CA file named in the config that cannot be read would only show at
     * every STARTTLS, as a link that never comes up: stop at start instead. */
    char err[256];
    if (cfg->tls_ca && tls_file_check("CA", cfg->tls_ca, err, sizeof err) < 0) {
        log_error("event=start reason=router-tls-ca component=%s detail=\"%s\"", cfg->name, err);
        return NULL;
    }
    comp_client_t *c = xcalloc(1, sizeof *c);
    c->base = base;
    c->cfg = *cfg;
    c->cfg.router = xstrdup(cfg->router);
    c->cfg.router_name = xstrdup(cfg->router_name ? cfg->router_name : "router");
    c->cfg.name = xstrdup(cfg->name);
    c->cfg.secret = xstrdup(cfg->secret);
    c->cfg.tls_ca = cfg->tls_ca ? xstrdup(cfg->tls_ca) : NULL;
    c->binds = xcalloc(cfg->nbinds ? cfg->nbinds : 1, sizeof(char *));
    for (size_t i = 0; i < cfg->nbinds; i++)
        c->binds[i] = xstrdup(cfg->binds[i]);
    c->cfg.binds = (const char *const *)c->binds;
    if (cb)
        c->cb = *cb;
    c->ctx = ctx;
    c->next_seq = c->first_seq = 1;
    c->retained = evbuffer_new();
    c->parked_tail = &c->parked;
    c->resume_ev = event_new(base, -1, 0, resume_cb, c);
    c->stall_ev = evtimer_new(base, stall_cb, c);
    c->lim_stanza = COMP_FANOUT_DEFAULT_STANZA;
    c->lim_fan_bytes = COMP_FANOUT_DEFAULT_BYTES;
    c->lim_fan_recipients = COMP_FANOUT_DEFAULT_RECIPIENTS;
    c->backoff = 0.1;
    comp_proto_random_hex(c->epoch, 16);
    c->timer = evtimer_new(base, timer_cb, c);
    if (net_addr_parse(c->cfg.router, 5347, &c->addr) < 0) {
        log_error("event=config component=%s router=%s reason=bad-address", c->cfg.name, c->cfg.router);
        c->state = CC_CLOSED;
        return c;
    }
    cc_connect(c);
    return c;
}

/* A closing link waits for the router to acknowledge what we sent and, with
 * manual_ack, for every element we took to be finished (an sm's offline
 * store still in flight to PostgreSQL): closed before, that element would
 * be stored by us and, unacknowledged, again by the next instance. */
static int close_may_proceed(const comp_client_t *c)
{
    return !c->lens_len && !(c->cfg.manual_ack && c->in_acked + c->nparked < c->in_count);
}

/* The final ack goes before the closing tag: without it the router would
 * requeue what we processed (and the next instance would process it again).
 * The socket is closed only once the router answered (docs/component-protocol.md
 * 9.6): freeing the bufferevent at once would discard the unwritten bytes. */
void comp_client_close(comp_client_t *c, int force)
{
    c->closing = 1;
    if (c->close_sent || (c->state == CC_READY && !force && !close_may_proceed(c)))
        return;
    if (c->bev && c->state >= CC_STREAM) {
        send_ack(c);
        cc_puts(c, "</stream:stream>");
        c->close_sent = 1;
        schedule(c, CLOSE_WAIT);
        return;
    }
    cc_drop(c);
}

void comp_client_free(comp_client_t *c)
{
    if (!c)
        return;
    if (c->in_callback) {
        c->free_pending = 1;
        return;
    }
    c->closing = 1;
    if (c->bev)
        bufferevent_free(c->bev);
    if (c->xs)
        xml_stream_free(c->xs);
    if (c->sasl)
        sasl_client_free(c->sasl);
    if (c->tls_ctx)
        SSL_CTX_free(c->tls_ctx);
    event_free(c->timer);
    event_free(c->resume_ev);
    event_free(c->stall_ev);
    parked_free(c);
    evbuffer_free(c->retained);
    free(c->lens);
    free(c->seen);
    free(c->done);
    for (size_t i = 0; i < c->cfg.nbinds; i++)
        free(c->binds[i]);
    free(c->binds);
    free((char *)c->cfg.router);
    free((char *)c->cfg.router_name);
    free((char *)c->cfg.name);
    free((char *)c->cfg.secret);
    free((char *)c->cfg.tls_ca);
    free(c);
}

void comp_link_cfg_apply(comp_client_cfg_t *cc, const comp_link_cfg_t *l)
{
    cc->router = l->router;
    cc->router_name = l->router_name;
    cc->name = l->name;
    cc->secret = l->secret;
    cc->tls_ca = l->tls_ca && *l->tls_ca ? l->tls_ca : NULL;
    cc->tls_verify = 1;
    cc->max_buffer = l->buffer;
}

void comp_link_cfg_keep(comp_link_cfg_t *fresh, comp_link_cfg_t *old)
{
    comp_link_cfg_t t = *fresh;
    *fresh = *old;
    *old = t;
}
