/* takeover: moving the users of a lost partition instance to the others, and
 * back when it returns (docs/component-protocol.md, 8.5).
 *
 * The router alone decides who serves a user: the rendezvous hash over the
 * slots of a partitioned name. An instance away for takeover.seconds (or
 * hold.seconds, if shorter) while another instance of the name is up is
 * declared lost: its slot leaves the hash, so its users now hash to the
 * survivors; "<w:name state='lost'/>" tells every component (c2s then
 * re-announces its sessions, sm instances count the lost one out); what
 * was held for it is routed again, in order, to the new owners. Its name
 * stays in the route name's lost list.
 *
 * When a listed instance binds again, its slot is fenced: it is up and
 * takes part in the hash, but what is for it is held, and the instance is
 * told it was lost (it forgets what it kept of its users). Every survivor
 * gets "<w:handback/>" and answers "<w:released/>" once it has finished
 * with the users it gives back; when all have (or a survivor's link went,
 * or handback.timeout passed) the fence is lifted and the held queue
 * flushed. So a user is never served by two instances at once while links
 * are up (docs/operations.md, "Split brain", says what remains). */
#include "router.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

static void send_name_el(link_t *to, const char *el, const char *name, const char *instance, const char *state)
{
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_printf(&sb, "<w:%s name='", el);
    xml_escape(&sb, name, strlen(name), 1);
    strbuf_puts(&sb, "' instance='");
    xml_escape(&sb, instance, strlen(instance), 1);
    if (state)
        strbuf_printf(&sb, "' state='%s", state);
    strbuf_puts(&sb, "'/>");
    if (to) {
        link_send(to, sb.data, sb.len);
    } else {
        for (link_t *l = link_list(); l; l = l->next)
            if (l->internal && l->state == LINK_READY)
                link_send(l, sb.data, sb.len);
    }
    strbuf_free(&sb);
}

static int lost_index(route_name_t *rn, const char *instance)
{
    for (size_t i = 0; i < rn->nlost; i++)
        if (!strcmp(rn->lost[i], instance))
            return (int)i;
    return -1;
}

/* The slot's instance is lost: out of the hash, its held queue to the new
 * owners. The slot is freed. */
static void take_over(route_name_t *rn, slot_t *s)
{
    for (slot_t **pp = &rn->slots; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    if (lost_index(rn, s->instance) < 0) {
        rn->lost = xrealloc(rn->lost, (rn->nlost + 1) * sizeof *rn->lost);
        rn->lost[rn->nlost++] = xstrdup(s->instance);
    }
    log_notice("event=takeover name=%s instance=%s held=%zu away=%.1f", rn->name, s->instance, s->held_count,
               daemon_now() - s->down_since);
    send_name_el(NULL, "name", rn->name, s->instance, "lost");
    held_t *h = s->head;
    s->head = s->tail = NULL;
    while (h) {
        held_t *next = h->next;
        /* Held for the lost instance: the receiver keeps their order apart
         * (marker p=, docs/component-protocol.md 9.4). */
        forward_reroute(rn, h->origin, h->seq, h->via ? h->via : takeover_intern(s->instance), h->bytes, h->len);
        origin_unref(h->origin);
        free(h);
        h = next;
    }
    takeover_free_slot(s);
    free(s->instance);
    free(s);
}

static void unfence(route_name_t *rn, slot_t *s, const char *why)
{
    log_notice("event=handback-done name=%s instance=%s reason=%s held=%zu after=%.3f", rn->name, s->instance,
               why, s->held_count, daemon_now() - s->fenced_at);
    s->fenced = 0;
    free(s->handback);
    s->handback = NULL;
    s->nhandback = 0;
    names_slot_flush(s);
}

static void cron_rn(route_name_t *rn, void *arg)
{
    double now = *(double *)arg;
    if (!rn->partitioned)
        return;
    double after = router_config->hold_seconds;
    if (router_config->takeover_seconds < after)
        after = router_config->takeover_seconds;
    for (slot_t *s = rn->slots, *next; s; s = next) {
        next = s->next;
        if (s->fenced && s->link && now - s->fenced_at >= router_config->handback_timeout) {
            log_warn("event=handback-timeout name=%s instance=%s waiting=%zu", rn->name, s->instance, s->nhandback);
            unfence(rn, s, "timeout");
        }
    }
    if (router_config->takeover_seconds <= 0)
        return;
    int survivor = 0;
    for (slot_t *s = rn->slots; s; s = s->next)
        if (s->link)
            survivor = 1;
    if (!survivor)
        return;                 /* nobody to take over: hold, then bounce */
    /* After a router restart every instance reconnects with its own backoff
     * (up to 10 s): one not seen yet gets half the hold time, so a restart
     * does not move users twice. */
    double first = router_config->hold_seconds / 2 > after ? router_config->hold_seconds / 2 : after;
    for (slot_t *s = rn->slots, *next; s; s = next) {
        next = s->next;
        if (!s->link && s->down_since > 0 && now - s->down_since >= (s->bound_once ? after : first))
            take_over(rn, s);
    }
}

/* Runs before names_cron's expiry, so a slot is taken over before what it
 * holds would bounce. */
void takeover_cron(double now)
{
    names_foreach(cron_rn, &now);
}

int takeover_on_bind(link_t *l, route_name_t *rn, slot_t *s)
{
    int i = rn->partitioned ? lost_index(rn, s->instance) : -1;
    if (i < 0)
        return s->fenced;       /* a fenced instance reconnecting stays fenced */
    free(rn->lost[i]);
    rn->lost[i] = rn->lost[--rn->nlost];
    /* It must forget what it knew of its users: others served them since. */
    send_name_el(l, "name", rn->name, s->instance, "lost");
    s->fenced = 1;
    s->fenced_at = daemon_now();
    for (slot_t *o = rn->slots; o; o = o->next) {
        if (o == s || !o->link || !o->link->internal)
            continue;
        s->handback = xrealloc(s->handback, (s->nhandback + 1) * sizeof *s->handback);
        s->handback[s->nhandback++] = o->link->id;
        send_name_el(o->link, "handback", rn->name, s->instance, NULL);
    }
    log_notice("event=handback-start name=%s instance=%s survivors=%zu", rn->name, s->instance, s->nhandback);
    if (!s->nhandback) {
        s->fenced = 0;
        return 0;
    }
    return 1;
}

/* Drops link id from a fenced slot's list; lifts the fence when it empties. */
static void released_by(route_name_t *rn, slot_t *s, uint64_t id, const char *why)
{
    for (size_t i = 0; i < s->nhandback; i++) {
        if (s->handback[i] == id) {
            s->handback[i] = s->handback[--s->nhandback];
            if (!s->nhandback && s->fenced && s->link)
                unfence(rn, s, why);
            return;
        }
    }
}

void takeover_released(link_t *l, const char *name, const char *instance)
{
    route_name_t *rn = names_lookup(name, strlen(name));
    slot_t *s = NULL;
    for (slot_t *o = rn ? rn->slots : NULL; o; o = o->next)
        if (!strcmp(o->instance, instance))
            s = o;
    if (!s || !s->fenced) {
        log_info("event=released result=ignored name=%s instance=%s component=%s", name, instance, l->acl->name);
        return;
    }
    log_info("event=released name=%s instance=%s component=%s", name, instance, l->acl->name);
    released_by(rn, s, l->id, "released");
}

/* A survivor that is gone serves nobody: it no longer holds a handback up.
 * A fenced instance that is gone again is simply away. */
static void link_lost_rn(route_name_t *rn, void *arg)
{
    link_t *l = arg;
    for (slot_t *s = rn->slots, *next; s; s = next) {
        next = s->next;
        if (s->fenced && (s->link == l || !s->link)) {
            s->fenced = 0;
            free(s->handback);
            s->handback = NULL;
            s->nhandback = 0;
        } else if (s->fenced) {
            released_by(rn, s, l->id, "survivor-gone");
        }
    }
}

void takeover_link_lost(link_t *l)
{
    names_foreach(link_lost_rn, l);
}

void takeover_free_slot(slot_t *s)
{
    free(s->handback);
    s->handback = NULL;
    s->nhandback = 0;
}

static char **interned;
static size_t ninterned;

const char *takeover_intern(const char *instance)
{
    for (size_t i = 0; i < ninterned; i++)
        if (!strcmp(interned[i], instance))
            return interned[i];
    interned = xrealloc(interned, (ninterned + 1) * sizeof *interned);
    return interned[ninterned++] = xstrdup(instance);
}

void takeover_free_all(void)
{
    for (size_t i = 0; i < ninterned; i++)
        free(interned[i]);
    free(interned);
    interned = NULL;
    ninterned = 0;
}

void takeover_free_rn(route_name_t *rn)
{
    for (size_t i = 0; i < rn->nlost; i++)
        free(rn->lost[i]);
    free(rn->lost);
    rn->lost = NULL;
    rn->nlost = 0;
}
