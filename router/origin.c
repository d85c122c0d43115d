/* origin: per sending component epoch, which of its stanzas are done.
 *
 * A component numbers the stanzas it sends (seq, per epoch: one run of the
 * process). A stanza is done when the destination acknowledged it, it was
 * bounced, or it went to a legacy component that cannot acknowledge. The router
 * acknowledges to the sender the highest seq below which everything is done,
 * so the sender can forget them; after a router restart the sender resends the
 * rest. Invariant: done_upto < next_seq, and next_seq - done_upto <= ring. */
#include "router.h"
#include "log.h"
#include "comp_proto.h"
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static origin_t *origins;
static link_t *ack_list;
static struct event *ack_event;
static uint64_t anon_counter;
static char boot_id[17];

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    origin_flush_acks();
}


static origin_t *origin_new(const char *epoch, uint64_t next)
{
    origin_t *o = xcalloc(1, sizeof *o);
    snprintf(o->epoch, sizeof o->epoch, "%s", epoch);
    o->next_seq = next ? next : 1;
    o->done_upto = o->next_seq - 1;
    o->ring = 1024;
    o->bits = xcalloc(o->ring / 8, 1);
    o->next = origins;
    origins = o;
    return o;
}

/* Epochs are scoped by component name: one component cannot take over
 * another's acknowledgements by sending its epoch. */
origin_t *origin_attach(const char *epoch, uint64_t next, link_t *l)
{
    origin_t *o;
    for (o = origins; o; o = o->next)
        if (!strcmp(o->epoch, epoch) && !strcmp(o->owner, l->acl->name))
            break;
    if (!o) {
        o = origin_new(epoch, next);
        snprintf(o->owner, sizeof o->owner, "%s", l->acl->name);
    } else {
        if (o->link && o->link != l) {
            link_t *old = o->link;
            o->link = NULL;
            old->origin = NULL;
            link_close_error(old, "conflict", "replaced by a new connection of the same epoch");
        }
        /* The component resends everything after done_upto; seqs already in
         * flight come again and destinations drop the duplicates. */
        if (next > o->done_upto + 1 && next <= o->next_seq)
            o->done_upto = next - 1;
        o->next_seq = o->done_upto + 1;
    }
    o->link = l;
    o->detached_at = 0;
    return o;
}

origin_t *origin_anonymous(link_t *l)
{
    if (!boot_id[0])
        comp_proto_random_hex(boot_id, 8);
    char epoch[40];
    snprintf(epoch, sizeof epoch, "r%s.%llu", boot_id, (unsigned long long)++anon_counter);
    origin_t *o = origin_new(epoch, 1);
    o->link = l;
    return o;
}

void origin_detach(origin_t *o)
{
    o->link = NULL;
    o->detached_at = daemon_now();
}

/* The sender's stanzas in flight are limited only by limits.window: pausing a
 * sender for acks it has not received can deadlock two components that send to
 * each other (neither link is read, so neither's acks arrive). Memory is bounded
 * by the destinations' output buffers and the hold queues. */
int origin_window_full(const origin_t *o)
{
    return o->next_seq - o->done_upto >= (uint64_t)router_config->window;
}

static int bit_get(const origin_t *o, uint64_t seq);

/* Called for every new seq: doubles the ring of done flags when the seqs in
 * flight would no longer fit, keeping each flag at its new position. */
void origin_reserve(origin_t *o)
{
    if (o->next_seq - o->done_upto < o->ring)
        return;
    uint64_t nring = o->ring * 2;
    uint8_t *nbits = xcalloc(nring / 8, 1);
    for (uint64_t s = o->done_upto + 1; s < o->next_seq; s++) {
        if (bit_get(o, s)) {
            uint64_t i = s & (nring - 1);
            nbits[i >> 3] |= (uint8_t)(1u << (i & 7));
        }
    }
    free(o->bits);
    o->bits = nbits;
    o->ring = nring;
}

static int bit_get(const origin_t *o, uint64_t seq)
{
    uint64_t i = seq & (o->ring - 1);
    return (o->bits[i >> 3] >> (i & 7)) & 1;
}

static void bit_set(origin_t *o, uint64_t seq, int v)
{
    uint64_t i = seq & (o->ring - 1);
    if (v)
        o->bits[i >> 3] |= (uint8_t)(1u << (i & 7));
    else
        o->bits[i >> 3] &= (uint8_t)~(1u << (i & 7));
}

void origin_done(origin_t *o, uint64_t seq)
{
    if (seq <= o->done_upto || seq >= o->next_seq)
        return;
    bit_set(o, seq, 1);
    uint64_t before = o->done_upto;
    while (o->done_upto + 1 < o->next_seq && bit_get(o, o->done_upto + 1)) {
        bit_set(o, o->done_upto + 1, 0);
        o->done_upto++;
    }
    if (o->done_upto == before)
        return;
    link_t *l = o->link;
    if (!l)
        return;
    if (l->pause_reasons & 2)
        link_resume(l, 2);
    if (l->internal && !l->ack_pending) {
        l->ack_pending = 1;
        l->ack_next = ack_list;
        ack_list = l;
        daemon_defer(&ack_event, flush_cb);
    }
}

/* Sends one cumulative <w:a/> per link that has news, once per loop turn. */
void origin_flush_acks(void)
{
    while (ack_list) {
        link_t *l = ack_list;
        ack_list = l->ack_next;
        l->ack_next = NULL;
        l->ack_pending = 0;
        if (!l->origin || l->state != LINK_READY)
            continue;
        /* Hand-formatted: under load this runs every loop turn. */
        char buf[64];
        memcpy(buf, "<w:a h='", 8);
        size_t n = 8 + u64_dec(buf + 8, l->origin->done_upto);
        memcpy(buf + n, "'/>", 3);
        link_send(l, buf, n + 3);
    }
}

/* Removes a link from the pending-ack list (it is going away). */
void origin_forget_link(link_t *l)
{
    for (link_t **pp = &ack_list; *pp; pp = &(*pp)->ack_next) {
        if (*pp == l) {
            *pp = l->ack_next;
            break;
        }
    }
    l->ack_pending = 0;
}

void origin_ref(origin_t *o)
{
    o->refs++;
}

void origin_unref(origin_t *o)
{
    o->refs--;
}

/* An origin whose component is gone and that nothing refers to is forgotten
 * after twice the hold time: long enough for a reconnect to find it. */
void origin_cron(double now)
{
    double keep = router_config->hold_seconds * 2 + 10;
    for (origin_t **pp = &origins; *pp;) {
        origin_t *o = *pp;
        if (!o->link && o->refs == 0 && o->detached_at > 0 && now - o->detached_at > keep) {
            *pp = o->next;
            free(o->bits);
            free(o);
        } else {
            pp = &o->next;
        }
    }
}

void origin_free_all(void)
{
    while (origins) {
        origin_t *o = origins;
        origins = o->next;
        free(o->bits);
        free(o);
    }
    if (ack_event)
        event_free(ack_event);
    ack_event = NULL;
    ack_list = NULL;
}
