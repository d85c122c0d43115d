/* forward: the router's hot path. A raw top-level element from a component is
 * routed by the domain of its 'to' (partitioned names by the bare JID of 'to',
 * or by the 'user' attribute of non-stanza elements such as session-control
 * wrappers) and its bytes are written unchanged to the chosen link. Internal
 * components get a <w:o/> origin marker before each stanza so they can drop
 * duplicates after a router restart, and keep every stanza until acknowledged.
 * For an internal link, marker and stanza are copied once, into the link's
 * retained ring; the ring's new bytes go to the output in one add per loop
 * turn (flush_cb), or earlier when something else is written to the link. */
#include "router.h"
#include "comp_fanout.h"
#include "comp_proto.h"
#include "log.h"
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Lower-cases an ASCII domain into buf; non-ASCII bytes are kept (edges send
 * prepared JIDs; this only forgives a sloppy component's capitals). The
 * domain is what jid_domain_span finds (after the first '@' before the first
 * '/'), found and copied in one pass as it runs twice per stanza. Returns its
 * length, 0 if it is empty or does not fit. */
static size_t domain_key(const char *to, char *buf, size_t cap)
{
    size_t n = 0;
    int at = 0;
    for (const char *p = to; *p && *p != '/'; p++) {
        char c = *p;
        if (c == '@' && !at) {
            at = 1;
            n = 0;
            continue;
        }
        if (n < cap)
            buf[n] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        n++;
    }
    if (n == 0 || n >= cap)
        return 0;
    buf[n] = '\0';
    return n;
}

/* strcasecmp(a, b) == 0 for a b of length blen, ASCII only (as strcasecmp in
 * the C locale the router runs in). */
static int ascii_caseeq(const char *a, const char *b, size_t blen)
{
    for (size_t i = 0; i < blen; i++) {
        char x = a[i], y = b[i];
        if (x != y) {
            if (x >= 'A' && x <= 'Z')
                x = (char)(x + 32);
            if (y >= 'A' && y <= 'Z')
                y = (char)(y + 32);
            if (x != y)
                return 0;
        }
    }
    return a[blen] == '\0';
}

static link_t *flush_list;
static struct event *flush_event;

/* Hands what the retained ring holds past rout to the output. */
void forward_flush(link_t *l)
{
    if (l->rout < l->rtail) {
        evbuffer_add(bufferevent_get_output(l->bev), l->rbuf + l->rout, l->rtail - l->rout);
        l->rout = l->rtail;
    }
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    while (flush_list) {
        link_t *l = flush_list;
        flush_list = l->flush_next;
        l->flush_next = NULL;
        l->flush_pending = 0;
        forward_flush(l);
    }
}

/* Removes a link from the flush list (it is leaving routing). */
void forward_forget_flush(link_t *l)
{
    for (link_t **pp = &flush_list; *pp; pp = &(*pp)->flush_next) {
        if (*pp == l) {
            *pp = l->flush_next;
            break;
        }
    }
    l->flush_next = NULL;
    l->flush_pending = 0;
}

/* What the link has to write: its output and what is still to be flushed. */
size_t forward_output_length(link_t *l)
{
    return evbuffer_get_length(bufferevent_get_output(l->bev)) + (l->rtail - l->rout);
}

/* Room for n more bytes at the retained ring's tail; returns where they go.
 * The live part moves to the front when the tail reaches the end, and the
 * ring doubles instead when more than a quarter of it is live, so a byte is
 * moved at most a third of a time on average. It never shrinks below its
 * high-water mark while the link lives (bounded by what the link may have
 * unacknowledged). */
static char *retained_room(link_t *l, size_t n)
{
    if (l->rtail + n > l->rcap) {
        size_t live = l->rtail - l->rhead;
        if (live + n > l->rcap / 4) {
            size_t ncap = l->rcap ? l->rcap : 65536;
            while (live + n > ncap / 4)
                ncap *= 2;
            char *nb = xmalloc(ncap);
            if (live)   /* rbuf is NULL before the first stanza */
                memcpy(nb, l->rbuf + l->rhead, live);
            free(l->rbuf);
            l->rbuf = nb;
            l->rcap = ncap;
        } else if (live) {
            memmove(l->rbuf, l->rbuf + l->rhead, live);
        }
        l->rout -= l->rhead;
        l->rhead = 0;
        l->rtail = live;
    }
    return l->rbuf + l->rtail;
}

/* Once a second: a link with nothing unacknowledged gives back a ring and an
 * in-flight list that grew past their first size in a burst (a login crowd
 * grows them to a few hundred KB), instead of keeping its high-water mark. */
void forward_cron(void)
{
    for (link_t *l = link_list(); l; l = l->next) {
        if (l->rcap > 65536 && l->rhead == l->rtail) {
            free(l->rbuf);
            l->rbuf = NULL;
            l->rcap = 0;
            l->rhead = l->rout = l->rtail = 0;
        }
        if (l->fifo_cap > 256 && l->fifo_len == 0) {
            free(l->fifo);
            l->fifo = NULL;
            l->fifo_cap = 0;
            l->fifo_head = 0;
        }
    }
}

static void fifo_push(link_t *l, origin_t *o, uint64_t seq, slot_t *s, const char *via, size_t len, size_t mlen,
                      uint32_t fan_n, uint32_t fan_i)
{
    if (l->fifo_len == l->fifo_cap) {
        size_t ncap = l->fifo_cap ? l->fifo_cap * 2 : 256;
        inflight_t *n = xmalloc(ncap * sizeof *n);
        for (size_t i = 0; i < l->fifo_len; i++)
            n[i] = l->fifo[(l->fifo_head + i) % l->fifo_cap];
        free(l->fifo);
        l->fifo = n;
        l->fifo_head = 0;
        l->fifo_cap = ncap;
    }
    inflight_t *f = &l->fifo[(l->fifo_head + l->fifo_len) % l->fifo_cap];
    f->origin = o;
    f->seq = seq;
    f->slot = s;
    f->via = via;
    f->len = len;
    f->mlen = mlen;
    f->fan_n = fan_n;
    f->fan_i = fan_i;
    l->fifo_len++;
    origin_ref(o);
}

#define MARKER_MAX 192

size_t u64_dec(char *buf, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

/* Formats <w:o e='EPOCH' n='SEQ'/> (with p='INSTANCE' for an element held for
 * a taken-over instance) into buf (MARKER_MAX bytes), leaving out e when
 * it is the epoch of the previous marker on this link, and records o as that
 * marker; returns the length. Hand-formatted: it runs once per stanza. */
static size_t format_marker(link_t *d, const origin_t *o, uint64_t seq, const char *via, char *buf)
{
    size_t n = 0;
    memcpy(buf, "<w:o ", 5);
    n = 5;
    if (d->last_marker != o) {
        size_t el = strlen(o->epoch);
        memcpy(buf + n, "e='", 3);
        n += 3;
        memcpy(buf + n, o->epoch, el);
        n += el;
        memcpy(buf + n, "' ", 2);
        n += 2;
    }
    memcpy(buf + n, "n='", 3);
    n += 3;
    n += u64_dec(buf + n, seq);
    size_t vl = via ? strlen(via) : 0;
    if (vl > 63 || (via && strspn(via, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != vl))
        vl = 0;                 /* a name that would need escaping: no p= (duplicates then as before) */
    if (vl) {
        memcpy(buf + n, "' p='", 5);
        n += 5;
        memcpy(buf + n, via, vl);
        n += vl;
    }
    memcpy(buf + n, "'/>", 3);
    n += 3;
    d->last_marker = o;
    return n;
}

/* d's ring has new bytes: they go to the output at the end of this turn. */
static void flush_later(link_t *d)
{
    if (!d->flush_pending) {
        d->flush_pending = 1;
        d->flush_next = flush_list;
        flush_list = d;
        daemon_defer(&flush_event, flush_cb);
    }
}

/* Delivers to the slot's link, or holds while the slot's instance is away. */
void forward_to_slot(slot_t *s, origin_t *o, uint64_t seq, const char *via, const char *bytes, size_t len)
{
    link_t *d = s->link;
    if (!d || s->fenced) {
        if (names_hold(s, o, seq, via, bytes, len) < 0)
            forward_bounce(o, seq, bytes, len, "resource-constraint", "wait");
        return;
    }
    if (d->internal) {
        /* Marker and stanza go to the retained ring, kept until the
         * acknowledgement; forward_flush hands them to the output with
         * everything else this loop turn adds for d. */
        char *p = retained_room(d, MARKER_MAX + len);
        size_t mlen = format_marker(d, o, seq, via, p);
        memcpy(p + mlen, bytes, len);
        d->rtail += mlen + len;
        flush_later(d);
        fifo_push(d, o, seq, s, via, len, mlen, 0, 0);
        d->out_count++;
    } else {
        bufferevent_write(d->bev, bytes, len);
        origin_done(o, seq);
    }
    d->c.stanzas_out++;
    d->c.bytes_out += len;
}

/* A cumulative acknowledgement from an internal component: the first h stanzas
 * the router sent on this link are processed. */
void forward_ack(link_t *l, uint64_t h)
{
    if (h > l->out_count || h < l->out_acked) {
        link_close_error(l, "undefined-condition", "acknowledged more than was sent");
        return;
    }
    /* What is acknowledged leaves the ring: it must be in the output first
     * (a component may acknowledge what it has not received). */
    forward_flush(l);
    size_t drain = 0;
    while (l->out_acked < h) {
        inflight_t *f = &l->fifo[l->fifo_head];
        drain += f->mlen + f->len;
        origin_done(f->origin, f->seq);
        origin_unref(f->origin);
        l->fifo_head = (l->fifo_head + 1) % l->fifo_cap;
        l->fifo_len--;
        l->out_acked++;
    }
    l->rhead += drain;
    if (l->rhead == l->rtail)
        l->rhead = l->rout = l->rtail = 0;
}

/* Resumes the senders paused on a destination once it can take more. */
void forward_output_drained(link_t *l)
{
    if (forward_output_length(l) > router_config->output_high / 2)
        return;
    size_t n = l->nwaiters;
    link_t **w = l->waiters;
    l->waiters = NULL;
    l->nwaiters = l->capwaiters = 0;
    for (size_t i = 0; i < n; i++)
        link_resume(w[i], 1);
    free(w);
}

static void wait_on(link_t *src, link_t *dst)
{
    for (size_t i = 0; i < dst->nwaiters; i++)
        if (dst->waiters[i] == src)
            goto paused;
    if (dst->nwaiters == dst->capwaiters) {
        dst->capwaiters = dst->capwaiters ? dst->capwaiters * 2 : 8;
        dst->waiters = xrealloc(dst->waiters, dst->capwaiters * sizeof *dst->waiters);
    }
    dst->waiters[dst->nwaiters++] = src;
paused:
    link_pause(src, 1);
}

/* Removes a dying link from every waiter list it is on. */
void forward_forget_waiter(link_t *gone)
{
    for (link_t *l = link_list(); l; l = l->next)
        for (size_t i = 0; i < l->nwaiters; i++)
            if (l->waiters[i] == gone)
                l->waiters[i--] = l->waiters[--l->nwaiters];
}

/* Sends an error reply for a stanza that cannot be delivered, routed like any
 * stanza; the original is then done. Errors are never answered. */
void forward_bounce(origin_t *o, uint64_t seq, const char *bytes, size_t len,
                    const char *condition, const char *etype)
{
    xml_node_t *b = comp_proto_bounce(bytes, len, condition, etype);
    if (o)
        origin_done(o, seq);
    if (!b) {
        log_info("event=drop reason=undeliverable-error-or-result condition=%s", condition);
        return;
    }
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(b, COMP_NS_ACCEPT, &sb);
    const char *to = xml_attr_get(b, "to");
    if (!to) {
        log_info("event=drop reason=bounce-without-address condition=%s", condition);
        strbuf_free(&sb);
        xml_free(b);
        return;
    }
    char dom[1024];
    size_t dl = to ? domain_key(to, dom, sizeof dom) : 0;
    route_name_t *rn = dl ? names_lookup(dom, dl) : NULL;
    if (!rn || !rn->slots)
        rn = names_default();
    size_t keylen = 0;
    const char *slash = to ? strchr(to, '/') : NULL;
    if (to)
        keylen = slash ? (size_t)(slash - to) : strlen(to);
    slot_t *s = rn->slots ? names_pick(rn, to ? to : "", keylen) : NULL;
    if (s) {
        /* Bounces come from the router itself: nothing to acknowledge. */
        static origin_t *self;
        if (!self)
            self = origin_anonymous(NULL);
        origin_reserve(self);
        uint64_t bseq = self->next_seq++;
        forward_to_slot(s, self, bseq, NULL, sb.data, sb.len);
        origin_done(self, bseq);
    } else {
        log_warn("event=bounce-undeliverable to=%s condition=%s", to ? to : "-", condition);
    }
    log_info("event=bounce to=%s condition=%s", to ? to : "-", condition);
    strbuf_free(&sb);
    xml_free(b);
}

/* The key of a held element, found as forward_raw finds it (the 'user'
 * attribute outside jabber:component:accept, else the bare JID of 'to'):
 * parsed again from its bytes, which happens only at a takeover. */
void forward_reroute(route_name_t *rn, origin_t *o, uint64_t seq, const char *via, const char *bytes, size_t len)
{
    xml_node_t *el = comp_proto_parse(bytes, len);
    const char *to = el ? xml_attr_get(el, "to") : NULL;
    const char *user = el ? xml_attr_get(el, "user") : NULL;
    const char *key = NULL;
    size_t keylen = 0;
    if (user && strcmp(el->ns ? el->ns : "", COMP_NS_ACCEPT)) {
        key = user;
        keylen = strlen(user);
    } else if (to) {
        const char *slash = strchr(to, '/');
        key = to;
        keylen = slash ? (size_t)(slash - to) : strlen(to);
    }
    slot_t *s = key && rn->slots ? names_pick(rn, key, keylen) : NULL;
    if (s)
        forward_to_slot(s, o, seq, via, bytes, len);
    else
        forward_bounce(o, seq, bytes, len, "service-unavailable", "cancel");
    xml_free(el);
}

/* The from-check (docs/component-protocol.md 8.1): 1 when from's domain is a
 * name the link bound (or the link is trusted). */
static int from_allowed(link_t *from, const char *fromattr)
{
    if (from->acl->trusted_from)
        return 1;
    char fd[1024];
    size_t fl = fromattr ? domain_key(fromattr, fd, sizeof fd) : 0;
    for (size_t i = 0; fl && i < from->nbound; i++)
        if (ascii_caseeq(from->bound[i], fd, fl))
            return 1;
    return 0;
}

/* What a delivery that has no slot becomes: bounced with condition when
 * its kind is answered, else done. A fan-out's delivery has no bytes yet
 * (bytes NULL): make builds them into the strbuf it gets. */
typedef void (*bytes_fn)(void *arg, strbuf_t *sb);

static void unroutable(origin_t *o, uint64_t seq, const char *name, const char *type, const char *bytes,
                       size_t len, bytes_fn make, void *arg, const char *condition)
{
    if (!comp_proto_bounceable(name, type)) {
        origin_done(o, seq);
        return;
    }
    strbuf_t sb;
    strbuf_init(&sb);
    if (!bytes) {
        make(arg, &sb);
        bytes = sb.data;
        len = sb.len;
    }
    forward_bounce(o, seq, bytes, len, condition, "cancel");
    strbuf_free(&sb);
}

/* The slot an element (seq of o, already counted) goes to by its 'to'
 * (8.1 steps 2-6), the forwarding left to the caller; NULL when it was
 * bounced or dropped instead. */
static slot_t *route_pick(origin_t *o, uint64_t seq, int stanza_ns, const char *name, const char *type,
                          const char *to, const char *user, const char *bytes, size_t len,
                          bytes_fn make, void *arg)
{
    char dom[1024];
    size_t dl = to ? domain_key(to, dom, sizeof dom) : 0;
    if (dl == 0) {
        unroutable(o, seq, name, type, bytes, len, make, arg, to ? "jid-malformed" : "service-unavailable");
        return NULL;
    }
    route_name_t *rn = names_lookup(dom, dl);
    if (!rn || !rn->slots) {
        rn = names_default();
        if (!rn->slots) {
            if (!comp_proto_bounceable(name, type))
                log_info("event=drop reason=no-route to=%s type=error", to);
            unroutable(o, seq, name, type, bytes, len, make, arg, "remote-server-not-found");
            return NULL;
        }
    }
    /* The key picks among the instances of a partitioned name only. */
    const char *key = to;
    size_t keylen = 0;
    if (rn->partitioned) {
        if (user && !stanza_ns) {
            key = user;
            keylen = strlen(user);
        } else {
            const char *slash = strchr(to, '/');
            keylen = slash ? (size_t)(slash - to) : strlen(to);
        }
    }
    slot_t *s = names_pick(rn, key, keylen);
    if (!s->link && s->down_since > 0 && daemon_now() - s->down_since >= router_config->hold_seconds) {
        unroutable(o, seq, name, type, bytes, len, make, arg, "service-unavailable");
        return NULL;
    }
    return s;
}

/* Flow control for from after something went to d. */
static void after_forward(link_t *from, link_t *d)
{
    if (d && d != from && forward_output_length(d) > router_config->output_high)
        wait_on(from, d);
}

/* Routes one element (seq of o, already counted) by its 'to': forwarded,
 * held, bounced or dropped (8.1 steps 2-6), and flow control for from. */
static void route(link_t *from, origin_t *o, uint64_t seq, int stanza_ns, const char *name,
                  const char *type, const char *to, const char *user, const char *bytes, size_t len)
{
    slot_t *s = route_pick(o, seq, stanza_ns, name, type, to, user, bytes, len, NULL, NULL);
    if (!s)
        return;
    forward_to_slot(s, o, seq, NULL, bytes, len);
    after_forward(from, s->link);
}

void forward_raw(link_t *from, const char *ns, const char *name, const char **attrs,
                 const char *bytes, size_t len)
{
    origin_t *o = from->origin;
    origin_reserve(o);
    uint64_t seq = o->next_seq++;
    from->c.stanzas_in++;
    from->c.bytes_in += len;
    /* One pass over the attributes for the four the router reads. */
    const char *type = NULL, *to = NULL, *fromattr = NULL, *user = NULL;
    for (size_t i = 0; attrs[i]; i += 2) {
        const char *k = attrs[i];
        if (k[0] == 't' && k[1] == 'o' && !k[2])
            to = attrs[i + 1];
        else if (k[0] == 't' && k[1] == 'y' && k[2] == 'p' && k[3] == 'e' && !k[4])
            type = attrs[i + 1];
        else if (k[0] == 'f' && k[1] == 'r' && k[2] == 'o' && k[3] == 'm' && !k[4])
            fromattr = attrs[i + 1];
        else if (k[0] == 'u' && !strcmp(k, "user"))
            user = attrs[i + 1];
    }
    int stanza_ns = !strcmp(ns, COMP_NS_ACCEPT);
    /* Only our own (SCRAM-authenticated) components speak the session and
     * account protocols; a legacy component may send XMPP stanzas only. */
    if (!from->internal && (!stanza_ns || (strcmp(name, "message") && strcmp(name, "presence") &&
                                           strcmp(name, "iq")))) {
        origin_done(o, seq);
        link_close_error(from, "unsupported-stanza-type", "XEP-0114 components may send message, presence and iq only");
        return;
    }
    if (!from_allowed(from, fromattr)) {
        origin_done(o, seq);
        link_close_error(from, "invalid-from", "from is not a name this component bound");
        return;
    }
    route(from, o, seq, stanza_ns, name, type, to, user, bytes, len);
    if (origin_window_full(o))
        link_pause(from, 2);
}

/* Refuses a whole fan-out that is over a limit: its seqs count and are done
 * (the component gets them acknowledged like any other), nothing is
 * delivered, and the component is told which seqs (first, count). */
static void fanout_refuse(link_t *from, origin_t *o, size_t n, const char *condition, const char *text)
{
    uint64_t first = o->next_seq;
    for (size_t i = 0; i < n; i++) {
        origin_reserve(o);
        uint64_t seq = o->next_seq++;
        origin_done(o, seq);
    }
    log_warn("event=fanout-refused component=%s first=%llu count=%zu condition=%s text=\"%s\"",
             from->acl->name, (unsigned long long)first, n, condition, text);
    char buf[160];
    int len = snprintf(buf, sizeof buf, "<w:fanout-error first='%llu' count='%zu' condition='%s'/>",
                       (unsigned long long)first, n, condition);
    link_send(from, buf, (size_t)len);
}

/* A delivery of a fan-out to a link that takes <w:fan/>, written after
 * the loop with the others to the same link. */
typedef struct fan_item {
    link_t *d;
    slot_t *s;
    uint64_t seq;
    const char *to;
    int taken;
} fan_item_t;

typedef struct delivery_arg {
    const comp_fanout_t *f;
    const char *to;
} delivery_arg_t;

static void delivery_bytes(void *arg, strbuf_t *sb)
{
    const delivery_arg_t *a = arg;
    comp_fanout_delivery(a->f, a->to, sb);
}

/* One plain routed element for a delivery (a fan-out's to a link that does
 * not take <w:fan/>, or a group of one). */
static void fan_plain(link_t *from, const comp_fanout_t *f, slot_t *s, origin_t *o, uint64_t seq, const char *to)
{
    strbuf_t sb;
    strbuf_init(&sb);
    comp_fanout_delivery(f, to, &sb);
    forward_to_slot(s, o, seq, NULL, sb.data, sb.len);
    strbuf_free(&sb);
    after_forward(from, s->link);
}

/* Writes items[0..k) (all for link d, seqs increasing) as one <w:fan/>
 * element into d's ring: one in-flight entry per delivery, the element's
 * bytes counted on the last (see inflight_t). */
static void fan_write(link_t *d, origin_t *o, const comp_fanout_t *f, fan_item_t **items, size_t k)
{
    const char **to = xmalloc(k * sizeof *to);
    uint64_t *n = xmalloc(k * sizeof *n);
    for (size_t i = 0; i < k; i++) {
        to[i] = items[i]->to;
        n[i] = items[i]->seq;
    }
    strbuf_t sb;
    strbuf_init(&sb);
    comp_fanin_write(&sb, d->last_marker != o ? o->epoch : NULL, NULL, to, n, k, f->tmpl.data, f->tmpl.len);
    d->last_marker = o;
    char *p = retained_room(d, sb.len);
    memcpy(p, sb.data, sb.len);
    d->rtail += sb.len;
    flush_later(d);
    for (size_t i = 0; i < k; i++)
        fifo_push(d, o, n[i], items[i]->s, NULL, i + 1 == k ? sb.len : 0, 0, (uint32_t)k, (uint32_t)i);
    d->out_count += k;
    d->c.stanzas_out += k;
    d->c.bytes_out += sb.len;
    d->c.fan_elements++;
    strbuf_free(&sb);
    free(to);
    free(n);
}

/* A group of one is a plain routed element. */
static void fan_group_out(link_t *from, link_t *d, origin_t *o, const comp_fanout_t *f, fan_item_t **group,
                          size_t k)
{
    if (k == 1)
        fan_plain(from, f, group[0]->s, o, group[0]->seq, group[0]->to);
    else
        fan_write(d, o, f, group, k);
}

/* The deliveries collected for <w:fan/> links, per link in delivery order,
 * as elements no larger than limits.stanza-bytes (what any routed element
 * may be). A link that went meanwhile, or a slot that left it, gets its
 * deliveries one by one (held like any). */
static void fan_flush(link_t *from, origin_t *o, const comp_fanout_t *f, fan_item_t *items, size_t n)
{
    fan_item_t **group = xmalloc((n ? n : 1) * sizeof *group);
    size_t base = 96 + strlen(o->epoch) + f->tmpl.len;   /* <w:fan e='' n=''>, </w:fan> and the stanza */
    for (size_t j = 0; j < n; j++) {
        if (items[j].taken)
            continue;
        link_t *d = items[j].d;
        size_t k = 0, bytes = base;
        for (size_t i = j; i < n; i++) {
            fan_item_t *it = &items[i];
            if (it->taken || it->d != d)
                continue;
            it->taken = 1;
            int plain = d->torn_down || d->state == LINK_CLOSING || it->s->link != d || it->s->fenced;
            size_t rl = comp_fanin_recipient_len(it->to, it->seq);
            /* What is grouped goes first: seqs reach d in order. */
            if (k && (plain || bytes + rl > router_config->stanza_bytes)) {
                fan_group_out(from, d, o, f, group, k);
                k = 0;
                bytes = base;
            }
            if (plain) {
                fan_plain(from, f, it->s, o, it->seq, it->to);
                continue;
            }
            group[k++] = it;
            bytes += rl;
        }
        if (k)
            fan_group_out(from, d, o, f, group, k);
        if (!d->torn_down)
            after_forward(from, d);
    }
    free(group);
}

void forward_fanout(link_t *from, xml_node_t *el)
{
    comp_fanout_t f;
    const char *why = NULL;
    if (comp_fanout_parse(el, &f, &why) < 0) {
        comp_fanout_clear(&f);
        link_close_error(from, "bad-format", why);
        return;
    }
    origin_t *o = from->origin;
    size_t n = f.nto - (size_t)f.skip;
    int stanza_ns = !strcmp(f.ns, COMP_NS_ACCEPT);
    size_t expand = 0;
    for (size_t i = (size_t)f.skip; i < f.nto; i++)
        expand += comp_fanout_delivery_len(&f, f.to[i]);
    if (!from_allowed(from, f.from)) {
        for (size_t i = 0; i < n; i++) {
            origin_reserve(o);
            origin_done(o, o->next_seq++);
        }
        link_close_error(from, "invalid-from", "from is not a name this component bound");
    } else if (n > (size_t)router_config->fanout_recipients) {
        fanout_refuse(from, o, n, "too-many-recipients", "more recipients than limits.fanout-recipients");
    } else if (expand > router_config->fanout_bytes) {
        fanout_refuse(from, o, n, "too-large", "its deliveries are larger than limits.fanout-bytes");
    } else {
        /* Each delivery takes its seq and is routed in order; those for a
         * link that takes <w:fan/> wait in items and go out grouped per
         * link once every seq is taken (9.8): one element, parsed once by
         * the receiver, instead of one per recipient. */
        fan_item_t *items = xmalloc((n ? n : 1) * sizeof *items);
        size_t nitems = 0;
        for (size_t i = (size_t)f.skip; i < f.nto && from->state != LINK_CLOSING; i++) {
            origin_reserve(o);
            uint64_t seq = o->next_seq++;
            from->c.stanzas_in++;
            from->c.bytes_in += comp_fanout_delivery_len(&f, f.to[i]);
            delivery_arg_t a = {&f, f.to[i]};
            slot_t *s = route_pick(o, seq, stanza_ns, f.name, f.type, f.to[i], f.user, NULL, 0, delivery_bytes, &a);
            if (!s)
                continue;
            link_t *d = s->link;
            if (d && !s->fenced && d->internal && d->fan_ok)
                items[nitems++] = (fan_item_t){d, s, seq, f.to[i], 0};
            else
                fan_plain(from, &f, s, o, seq, f.to[i]);
        }
        fan_flush(from, o, &f, items, nitems);
        free(items);
    }
    /* The ack last: the router has taken every delivery before it forgets
     * (and the sender's epoch learns as done) what it acknowledges. */
    if (f.has_h && from->state != LINK_CLOSING)
        forward_ack(from, f.h);
    comp_fanout_clear(&f);
    if (from->state != LINK_CLOSING && origin_window_full(o))
        link_pause(from, 2);
}
