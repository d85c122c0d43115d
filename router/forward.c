/* forward: the router's hot path. A raw top-level element from a component is
 * routed by the domain of its 'to' (partitioned names by the bare JID of 'to',
 * or by the 'user' attribute of non-stanza elements such as session-control
 * wrappers) and its bytes are written unchanged to the chosen link. Internal
 * components get a <w:o/> origin marker before each stanza so they can drop
 * duplicates after a router restart, and keep every stanza until acknowledged. */
#include "router.h"
#include "comp_proto.h"
#include "jid.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Lower-cases an ASCII domain into buf; non-ASCII bytes are kept (edges send
 * prepared JIDs; this only forgives a sloppy component's capitals). */
static size_t domain_key(const char *to, char *buf, size_t cap)
{
    size_t len;
    const char *d = jid_domain_span(to, &len);
    if (!d || len == 0 || len >= cap)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = d[i];
        buf[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    buf[len] = '\0';
    return len;
}

static void fifo_push(link_t *l, origin_t *o, uint64_t seq, slot_t *s, size_t len)
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
    f->len = len;
    l->fifo_len++;
    origin_ref(o);
}

/* Decimal digits of v into buf (no NUL); returns the length. */
static size_t u64_dec(char *buf, uint64_t v)
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

/* Formats <w:o e='EPOCH' n='SEQ'/> into buf (128 bytes), leaving out e when
 * it is the epoch of the previous marker on this link, and records o as that
 * marker; returns the length. Hand-formatted: it runs once per stanza. */
static size_t format_marker(link_t *d, const origin_t *o, uint64_t seq, char *buf)
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
    memcpy(buf + n, "'/>", 3);
    n += 3;
    d->last_marker = o;
    return n;
}

/* Delivers to the slot's link, or holds while the slot's instance is away. */
void forward_to_slot(slot_t *s, origin_t *o, uint64_t seq, const char *bytes, size_t len)
{
    link_t *d = s->link;
    if (!d) {
        if (names_hold(s, o, seq, bytes, len) < 0)
            forward_bounce(o, seq, bytes, len, "resource-constraint", "wait");
        return;
    }
    if (d->internal) {
        /* Marker and stanza in one add: one run of the output callbacks. */
        char marker[128];
        struct evbuffer_iovec iov[2] = {
            { marker, format_marker(d, o, seq, marker) },
            { (void *)bytes, len },
        };
        evbuffer_add_iovec(bufferevent_get_output(d->bev), iov, 2);
        evbuffer_add(d->retained, bytes, len);
        fifo_push(d, o, seq, s, len);
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
    size_t drain = 0;
    while (l->out_acked < h) {
        inflight_t *f = &l->fifo[l->fifo_head];
        drain += f->len;
        origin_done(f->origin, f->seq);
        origin_unref(f->origin);
        l->fifo_head = (l->fifo_head + 1) % l->fifo_cap;
        l->fifo_len--;
        l->out_acked++;
    }
    evbuffer_drain(l->retained, drain);
}

/* Resumes the senders paused on a destination once it can take more. */
void forward_output_drained(link_t *l)
{
    if (evbuffer_get_length(bufferevent_get_output(l->bev)) > router_config->output_high / 2)
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
        forward_to_slot(s, self, bseq, sb.data, sb.len);
        origin_done(self, bseq);
    } else {
        log_warn("event=bounce-undeliverable to=%s condition=%s", to ? to : "-", condition);
    }
    log_info("event=bounce to=%s condition=%s", to ? to : "-", condition);
    strbuf_free(&sb);
    xml_free(b);
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
        else if (k[0] == 't' && !strcmp(k, "type"))
            type = attrs[i + 1];
        else if (k[0] == 'f' && !strcmp(k, "from"))
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

    if (!from->acl->trusted_from) {
        char fd[1024];
        size_t fl = fromattr ? domain_key(fromattr, fd, sizeof fd) : 0;
        int ok = 0;
        for (size_t i = 0; fl && i < from->nbound; i++)
            if (!strcasecmp(from->bound[i], fd))
                ok = 1;
        if (!ok) {
            origin_done(o, seq);
            link_close_error(from, "invalid-from", "from is not a name this component bound");
            return;
        }
    }
    char dom[1024];
    size_t dl = to ? domain_key(to, dom, sizeof dom) : 0;
    if (dl == 0) {
        if (comp_proto_bounceable(name, type))
            forward_bounce(o, seq, bytes, len, to ? "jid-malformed" : "service-unavailable", "cancel");
        else
            origin_done(o, seq);
        return;
    }
    route_name_t *rn = names_lookup(dom, dl);
    if (!rn || !rn->slots) {
        rn = names_default();
        if (!rn->slots) {
            if (comp_proto_bounceable(name, type))
                forward_bounce(o, seq, bytes, len, "remote-server-not-found", "cancel");
            else {
                log_info("event=drop reason=no-route to=%s type=error", to);
                origin_done(o, seq);
            }
            return;
        }
    }
    const char *key = to;
    size_t keylen;
    if (stanza_ns)
        user = NULL;
    if (user) {
        key = user;
        keylen = strlen(user);
    } else {
        const char *slash = strchr(to, '/');
        keylen = slash ? (size_t)(slash - to) : strlen(to);
    }
    slot_t *s = names_pick(rn, key, keylen);
    if (!s->link && s->down_since > 0 && daemon_now() - s->down_since >= router_config->hold_seconds) {
        if (comp_proto_bounceable(name, type))
            forward_bounce(o, seq, bytes, len, "service-unavailable", "cancel");
        else
            origin_done(o, seq);
        return;
    }
    forward_to_slot(s, o, seq, bytes, len);
    link_t *d = s->link;
    if (d && d != from) {
        if (evbuffer_get_length(bufferevent_get_output(d->bev)) > router_config->output_high)
            wait_on(from, d);
    }
    if (origin_window_full(o))
        link_pause(from, 2);
}
