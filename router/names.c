/* names: the routing table. A name (domain or instance name) has one slot per
 * instance that bound it; a slot stays for hold.seconds after its link went
 * away, holding what arrives for it, so a restarting component finds its
 * stanzas waiting. Partitioned names pick a slot by rendezvous hash over all
 * slots, away ones included, so a user never moves to another instance just
 * because its own is restarting; one away past takeover.seconds is taken
 * over by the others (takeover.c).
 * Invariant: a held_t is referenced by exactly one slot queue and holds one
 * origin reference. */
#include "router.h"
#include "comp_fanout.h"
#include "comp_proto.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAMES_BUCKETS 1024

static route_name_t *buckets[NAMES_BUCKETS];
static route_name_t *default_route;

static uint32_t name_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

route_name_t *names_lookup(const char *name, size_t len)
{
    for (route_name_t *rn = buckets[name_hash(name, len) % NAMES_BUCKETS]; rn; rn = rn->next)
        if (rn->len == len && !memcmp(rn->name, name, len))
            return rn;
    return NULL;
}

route_name_t *names_default(void)
{
    return default_route;
}

static int is_partitioned(const char *name)
{
    for (size_t i = 0; i < router_config->npartitioned; i++)
        if (!strcmp(router_config->partitioned[i], name))
            return 1;
    return 0;
}

static route_name_t *names_get(const char *name)
{
    size_t len = strlen(name);
    route_name_t *rn = names_lookup(name, len);
    if (rn)
        return rn;
    rn = xcalloc(1, sizeof *rn);
    rn->name = xstrdup(name);
    rn->len = len;
    rn->partitioned = is_partitioned(name);
    uint32_t b = name_hash(name, len) % NAMES_BUCKETS;
    rn->next = buckets[b];
    buckets[b] = rn;
    return rn;
}

static slot_t *slot_new(route_name_t *rn, const char *instance)
{
    slot_t *s = xcalloc(1, sizeof *s);
    s->instance = xstrdup(instance);
    s->rn = rn;
    s->next = rn->slots;
    rn->slots = s;
    return s;
}

/* A router that just started knows no binds yet, but its config says which
 * names which components will bind. Each such name gets an "away" slot, as if
 * its component had just left: what arrives for it before the component is
 * back waits in the hold queue instead of bouncing. Slots nobody claims expire
 * after hold.seconds like any other. Wildcard ACL entries cannot be known in
 * advance and get no slot. */
void names_init(router_cfg_t *c)
{
    double now = daemon_now();
    default_route = xcalloc(1, sizeof *default_route);
    default_route->name = xstrdup("");
    for (const acl_t *a = c->acls; a; a = a->next) {
        for (size_t i = 0; i < a->nbinds; i++) {
            const char *name = a->binds[i];
            if (strchr(name, '*'))
                continue;
            route_name_t *rn = names_get(name);
            int have = 0;
            for (slot_t *s = rn->slots; s; s = s->next)
                if (!strcmp(s->instance, a->name))
                    have = 1;
            if (!have && (rn->partitioned || !rn->slots))
                slot_new(rn, a->name)->down_since = now;
        }
        if (a->may_default && !default_route->slots)
            slot_new(default_route, a->name)->down_since = now;
    }
}

void names_slot_flush(slot_t *s)
{
    held_t *h = s->head;
    s->head = s->tail = NULL;
    s->held_bytes = 0;
    s->held_count = 0;
    while (h) {
        held_t *next = h->next;
        forward_to_slot(s, h->origin, h->seq, h->via, h->bytes, h->len);
        origin_unref(h->origin);
        free(h);
        h = next;
    }
}

static void add_bound(link_t *l, const char *name)
{
    l->bound = xrealloc(l->bound, (l->nbound + 1) * sizeof *l->bound);
    l->bound[l->nbound++] = xstrdup(name);
}

/* Whether l may bind name now: NULL, or the condition of the refusal. */
const char *names_bind_check(link_t *l, const char *name, int is_default)
{
    if (is_default && !l->acl->may_default)
        return "not-allowed";
    if (!is_default && !router_acl_may_bind(l->acl, name))
        return "not-allowed";
    route_name_t *rn = is_default ? default_route : names_lookup(name, strlen(name));
    if (!rn || rn->partitioned)
        return NULL;
    for (slot_t *s = rn->slots; s; s = s->next)
        if (strcmp(s->instance, l->acl->name) && s->link)
            return "conflict";
    return NULL;
}

const char *names_bind(link_t *l, const char *name, int is_default)
{
    const char *err = names_bind_check(l, name, is_default);
    if (err)
        return err;
    route_name_t *rn = is_default ? default_route : names_get(name);
    const char *inst = l->acl->name;
    slot_t *mine = NULL;
    for (slot_t *s = rn->slots; s; s = s->next)
        if (!strcmp(s->instance, inst))
            mine = s;
    if (mine && mine->link == l)
        return NULL;
    if (mine && mine->link) {
        /* Same instance connected again (a restart the router has not noticed
         * yet): the newer connection wins. */
        link_close_error(mine->link, "conflict", "instance reconnected");
    }
    if (!mine && !rn->partitioned) {
        /* A different instance takes over a name whose owner is away: it
         * inherits what was held. */
        mine = rn->slots;
        if (mine) {
            free(mine->instance);
            mine->instance = xstrdup(inst);
        }
    }
    if (!mine)
        mine = slot_new(rn, inst);
    mine->link = l;
    mine->down_since = 0;
    mine->bound_once = 1;
    add_bound(l, is_default ? "" : name);
    log_info("event=bind component=%s name=%s peer=%s", inst, is_default ? "(default)" : name, l->peer);
    if (!is_default)
        names_broadcast(name, inst, 1);
    if (!takeover_on_bind(l, rn, mine))
        names_slot_flush(mine);
    return NULL;
}

static slot_t *slot_of(route_name_t *rn, link_t *l)
{
    for (slot_t *s = rn->slots; s; s = s->next)
        if (s->link == l)
            return s;
    return NULL;
}

static void slot_remove(route_name_t *rn, slot_t *s)
{
    for (slot_t **pp = &rn->slots; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    takeover_free_slot(s);
    free(s->instance);
    free(s);
}

/* Bounces everything a slot holds (its name is gone for good or expired). */
static void slot_bounce_all(slot_t *s, const char *condition)
{
    held_t *h = s->head;
    s->head = s->tail = NULL;
    s->held_bytes = 0;
    s->held_count = 0;
    while (h) {
        held_t *next = h->next;
        forward_bounce(h->origin, h->seq, h->bytes, h->len, condition, "cancel");
        origin_unref(h->origin);
        free(h);
        h = next;
    }
}

void names_unbind(link_t *l, const char *name)
{
    route_name_t *rn = *name ? names_lookup(name, strlen(name)) : default_route;
    if (!rn)
        return;
    slot_t *s = slot_of(rn, l);
    if (!s)
        return;
    /* An explicit unbind is final: nothing is held for it, and what the link
     * has not acknowledged yet will not be requeued to the freed slot. */
    for (size_t i = 0; i < l->fifo_len; i++) {
        inflight_t *f = &l->fifo[(l->fifo_head + i) % l->fifo_cap];
        if (f->slot == s)
            f->slot = NULL;
    }
    slot_bounce_all(s, "service-unavailable");
    if (*name)
        names_broadcast(name, s->instance, 0);
    slot_remove(rn, s);
    for (size_t i = 0; i < l->nbound; i++) {
        if (!strcmp(l->bound[i], name)) {
            free(l->bound[i]);
            l->bound[i] = l->bound[--l->nbound];
            break;
        }
    }
}

/* The deliveries of a <w:fan/> element at the front of a lost link's fifo
 * (those of it not acknowledged: the group's last entry holds the element's
 * bytes) leave the fifo and the ring, and go back to their slots one by one
 * as plain routed elements (docs/component-protocol.md 9.5): the element is
 * parsed again for them, which happens only here. */
static void requeue_fan(link_t *l)
{
    inflight_t first = l->fifo[l->fifo_head];
    size_t k = first.fan_n - first.fan_i;
    inflight_t *ents = xmalloc(k * sizeof *ents);
    for (size_t i = 0; i < k; i++) {
        ents[i] = l->fifo[l->fifo_head];
        l->fifo_head = (l->fifo_head + 1) % l->fifo_cap;
        l->fifo_len--;
    }
    size_t len = ents[k - 1].len;
    xml_node_t *el = comp_proto_parse(l->rbuf + l->rhead, len);
    l->rhead += len;
    if (l->rout < l->rhead)
        l->rout = l->rhead;     /* not sent, and never will be */
    comp_fanin_t fi;
    const char *why = NULL;
    int ok = el && comp_fanin_parse(el, &fi, &why) == 0 && fi.nto == first.fan_n;
    if (ok)
        xml_attr_set(fi.stanza, "to", NULL);
    strbuf_t sb;
    strbuf_init(&sb);
    for (size_t i = 0; i < k; i++) {
        inflight_t *f = &ents[i];
        if (!ok) {
            /* Our own element: cannot happen; logged, never silent. */
            log_error("event=fan-requeue-failed component=%s seq=%llu", l->acl ? l->acl->name : "-",
                      (unsigned long long)f->seq);
            origin_done(f->origin, f->seq);
        } else if (f->slot) {
            strbuf_reset(&sb);
            xml_attr_set(fi.stanza, "to", fi.to[f->fan_i]);
            xml_serialize(fi.stanza, COMP_NS_ACCEPT, &sb);
            names_hold(f->slot, f->origin, f->seq, f->via, sb.data, sb.len);
        } else {
            origin_done(f->origin, f->seq);
        }
        origin_unref(f->origin);
    }
    strbuf_free(&sb);
    if (ok)
        comp_fanin_clear(&fi);
    xml_free(el);
    free(ents);
}

void names_link_lost(link_t *l)
{
    double now = daemon_now();
    takeover_link_lost(l);
    /* Unacknowledged stanzas go back, in order, to the front of their slots'
     * queues: the component may not have processed them.
     * Each entry leaves the fifo and the retained ring (where its stanza
     * follows its origin marker) before it is handled: origin_done may
     * resume a sender whose input is then forwarded, still to this link,
     * which appends to both; those entries are requeued in turn. */
    while (l->fifo_len) {
        if (l->fifo[l->fifo_head].fan_n) {
            requeue_fan(l);
            continue;
        }
        inflight_t f = l->fifo[l->fifo_head];
        l->fifo_head = (l->fifo_head + 1) % l->fifo_cap;
        l->fifo_len--;
        const char *bytes = l->rbuf + l->rhead + f.mlen;
        l->rhead += f.mlen + f.len;
        if (l->rout < l->rhead)
            l->rout = l->rhead; /* not sent, and never will be */
        if (f.slot)
            names_hold(f.slot, f.origin, f.seq, f.via, bytes, f.len);
        else
            origin_done(f.origin, f.seq);
        origin_unref(f.origin);
    }
    l->fifo_head = 0;
    l->rhead = l->rout = l->rtail = 0;
    for (size_t i = 0; i < l->nbound; i++) {
        const char *name = l->bound[i];
        route_name_t *rn = *name ? names_lookup(name, strlen(name)) : default_route;
        slot_t *s = rn ? slot_of(rn, l) : NULL;
        if (s) {
            s->link = NULL;
            s->down_since = now;
            if (*name)
                names_broadcast(name, s->instance, 0);
        }
        free(l->bound[i]);
    }
    free(l->bound);
    l->bound = NULL;
    l->nbound = 0;
}

slot_t *names_pick(route_name_t *rn, const char *key, size_t keylen)
{
    slot_t *s = rn->slots;
    if (!s || !s->next || !rn->partitioned)
        return s;
    slot_t *best = NULL;
    uint64_t best_score = 0;
    for (; s; s = s->next) {
        uint64_t sc = comp_proto_partition_score(key, keylen, s->instance);
        if (!best || sc > best_score) {
            best = s;
            best_score = sc;
        }
    }
    return best;
}

/* Appends a stanza to a slot's hold queue. 0, or -1 when the queue is full
 * (the caller bounces). Only the bytes bound applies; time is checked by cron. */
int names_hold(slot_t *s, origin_t *o, uint64_t seq, const char *via, const char *bytes, size_t len)
{
    if (s->held_bytes + len > router_config->hold_bytes && s->link == NULL && s->held_count > 0)
        return -1;
    held_t *h = xmalloc(sizeof *h + len);
    h->next = NULL;
    h->origin = o;
    h->seq = seq;
    h->via = via;
    h->since = daemon_now();
    h->len = len;
    memcpy(h->bytes, bytes, len);
    origin_ref(o);
    if (s->tail)
        s->tail->next = h;
    else
        s->head = h;
    s->tail = h;
    s->held_bytes += len;
    s->held_count++;
    return 0;
}

static void expire_slot(route_name_t *rn, slot_t *s, double now)
{
    /* Oldest first: stanzas held longer than hold.seconds bounce. */
    while (s->head && now - s->head->since >= router_config->hold_seconds) {
        held_t *h = s->head;
        s->head = h->next;
        if (!s->head)
            s->tail = NULL;
        s->held_bytes -= h->len;
        s->held_count--;
        forward_bounce(h->origin, h->seq, h->bytes, h->len, "recipient-unavailable", "wait");
        origin_unref(h->origin);
        free(h);
    }
    if (!s->link && s->down_since > 0 && now - s->down_since >= router_config->hold_seconds && !s->head) {
        log_info("event=name-expired name=%s instance=%s", *rn->name ? rn->name : "(default)", s->instance);
        slot_remove(rn, s);
    }
}

void names_cron(double now)
{
    for (size_t b = 0; b < NAMES_BUCKETS; b++)
        for (route_name_t *rn = buckets[b]; rn; rn = rn->next)
            for (slot_t *s = rn->slots, *next; s; s = next) {
                next = s->next;
                expire_slot(rn, s, now);
            }
    for (slot_t *s = default_route->slots, *next; s; s = next) {
        next = s->next;
        expire_slot(default_route, s, now);
    }
}

void names_broadcast(const char *name, const char *instance, int up)
{
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_puts(&sb, "<w:name name='");
    xml_escape(&sb, name, strlen(name), 1);
    strbuf_puts(&sb, "' instance='");
    xml_escape(&sb, instance, strlen(instance), 1);
    strbuf_printf(&sb, "' state='%s'/>", up ? "up" : "down");
    for (link_t *l = link_list(); l; l = l->next)
        if (l->internal && l->state == LINK_READY)
            link_send(l, sb.data, sb.len);
    strbuf_free(&sb);
}

void names_announce_all(link_t *to)
{
    strbuf_t sb;
    strbuf_init(&sb);
    for (size_t b = 0; b < NAMES_BUCKETS; b++)
        for (route_name_t *rn = buckets[b]; rn; rn = rn->next)
            for (slot_t *s = rn->slots; s; s = s->next) {
                if (!s->link)
                    continue;
                strbuf_puts(&sb, "<w:name name='");
                xml_escape(&sb, rn->name, strlen(rn->name), 1);
                strbuf_puts(&sb, "' instance='");
                xml_escape(&sb, s->instance, strlen(s->instance), 1);
                strbuf_puts(&sb, "' state='up'/>");
            }
    if (sb.len)
        link_send(to, sb.data, sb.len);
    strbuf_free(&sb);
}

void names_foreach(void (*fn)(route_name_t *rn, void *arg), void *arg)
{
    for (size_t b = 0; b < NAMES_BUCKETS; b++)
        for (route_name_t *rn = buckets[b], *next; rn; rn = next) {
            next = rn->next;
            fn(rn, arg);
        }
}

size_t names_held_total(void)
{
    size_t n = 0;
    for (size_t b = 0; b < NAMES_BUCKETS; b++)
        for (route_name_t *rn = buckets[b]; rn; rn = rn->next)
            for (slot_t *s = rn->slots; s; s = s->next)
                n += s->held_count;
    for (slot_t *s = default_route->slots; s; s = s->next)
        n += s->held_count;
    return n;
}

static void stats_rn(route_name_t *rn, strbuf_t *out)
{
    for (slot_t *s = rn->slots; s; s = s->next)
        strbuf_printf(out, "name=%s instance=%s state=%s partitioned=%d held=%zu held_bytes=%zu\n",
                      *rn->name ? rn->name : "(default)", s->instance,
                      s->link ? (s->fenced ? "handback" : "up") : "away",
                      rn->partitioned, s->held_count, s->held_bytes);
}

void names_stats(strbuf_t *out)
{
    for (size_t b = 0; b < NAMES_BUCKETS; b++)
        for (route_name_t *rn = buckets[b]; rn; rn = rn->next)
            stats_rn(rn, out);
    stats_rn(default_route, out);
}

static void free_rn(route_name_t *rn)
{
    while (rn->slots) {
        slot_t *s = rn->slots;
        rn->slots = s->next;
        while (s->head) {
            held_t *h = s->head;
            s->head = h->next;
            origin_unref(h->origin);
            free(h);
        }
        takeover_free_slot(s);
        free(s->instance);
        free(s);
    }
    takeover_free_rn(rn);
    free(rn->name);
    free(rn);
}

void names_free_all(void)
{
    for (size_t b = 0; b < NAMES_BUCKETS; b++) {
        while (buckets[b]) {
            route_name_t *rn = buckets[b];
            buckets[b] = rn->next;
            free_rn(rn);
        }
    }
    if (default_route)
        free_rn(default_route);
    default_route = NULL;
}
