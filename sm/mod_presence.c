/* mod_presence: presence (RFC 6121 section 4) for the sessions of local users.
 *
 * - Broadcast presence (no 'to'): stored as the session's last presence, sent
 *   to every contact with a 'from' or 'both' subscription (except those the
 *   user blocks) and to all of the user's available sessions (the sender
 *   included). The first one (initial presence) also sends probes to every
 *   contact with 'to' or 'both' and gives the new session the presence of the
 *   user's other available sessions.
 * - Directed presence ('to' set): routed by the core; available ones are
 *   remembered per session (sm_sess_t.directed) so that the session's
 *   unavailable presence reaches them too (4.6); a directed unavailable or a
 *   presence error from that JID forgets it.
 * - Unavailable (sent, or the session ending): to the same audience.
 * - Probes to an account (4.3.2): a contact with 'from'/'both' (or the user's
 *   own account) gets the last presence of each available session, or an
 *   unavailable presence when there is none; anyone else gets 'unsubscribed'.
 *
 * Priority: the <priority/> of the last available presence, clamped to
 * -128..127; negative priorities get no message for the bare JID (core.c).
 * State lives in sm_sess_t (available, priority, presence, directed), owned by
 * core.c, which frees it with the session. */
#include "mod_blocking.h"
#include "mod_roster.h"
#include "module.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

#define DIRECTED_MAX 1000

static int parse_priority(const xml_node_t *st)
{
    xml_node_t *p = xml_child(st, NULL, "priority");
    if (!p)
        return 0;
    char *t = xml_text(p), *end = NULL;
    long v = strtol(t, &end, 10);
    int ok = end != t;
    free(t);
    if (!ok)
        return 0;
    return v < -128 ? -128 : v > 127 ? 127 : (int)v;
}

/* --- directed presence bookkeeping -------------------------------------------- */

static void directed_add(sm_sess_t *s, const char *jid)
{
    for (size_t i = 0; i < s->ndirected; i++)
        if (!strcmp(s->directed[i], jid))
            return;
    if (s->ndirected >= DIRECTED_MAX)
        return;
    s->directed = xrealloc(s->directed, (s->ndirected + 1) * sizeof *s->directed);
    s->directed[s->ndirected++] = xstrdup(jid);
}

/* Forgets jid; a bare jid also forgets every full JID under it. */
static void directed_del(sm_sess_t *s, const char *jid, int bare)
{
    size_t len = strlen(jid), k = 0;
    for (size_t i = 0; i < s->ndirected; i++) {
        const char *d = s->directed[i];
        int match = !strcmp(d, jid) || (bare && !strncmp(d, jid, len) && d[len] == '/');
        if (match)
            free(s->directed[i]);
        else
            s->directed[k++] = s->directed[i];
    }
    s->ndirected = k;
}

static void directed_clear(sm_sess_t *s)
{
    for (size_t i = 0; i < s->ndirected; i++)
        free(s->directed[i]);
    free(s->directed);
    s->directed = NULL;
    s->ndirected = 0;
}

/* --- broadcast ------------------------------------------------------------------ */

typedef struct contacts {
    char **jids;
    size_t n;
    int want;                  /* SM_SUB_FROM or SM_SUB_TO */
} contacts_t;

static void collect(const char *contact, sm_sub_t sub, void *arg)
{
    contacts_t *c = arg;
    if (!(sub & c->want))
        return;
    c->jids = xrealloc(c->jids, (c->n + 1) * sizeof *c->jids);
    c->jids[c->n++] = xstrdup(contact);
}

static void contacts_free(contacts_t *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->jids[i]);
    free(c->jids);
}

static int contacts_has(const contacts_t *c, const char *bare)
{
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->jids[i], bare))
            return 1;
    return 0;
}

static void send_copy(const xml_node_t *st, const char *from, const char *to)
{
    xml_node_t *p = xml_copy(st);
    xml_attr_set(p, "from", from);
    xml_attr_set(p, "to", to);
    sm_send(p);
    xml_free(p);
}

static void deliver_copy(sm_sess_t *s, const xml_node_t *st, const char *from)
{
    xml_node_t *p = xml_copy(st);
    xml_attr_set(p, "from", from);
    xml_attr_set(p, "to", s->jid.full);
    sm_deliver(s, p);
    xml_free(p);
}

/* st (from s) to subscribers, to directed recipients not already covered
 * (unavailable only) and to the user's available sessions. */
static void broadcast(sm_user_t *u, sm_sess_t *s, xml_node_t *st, int unavailable, int include_self)
{
    contacts_t from = {NULL, 0, SM_SUB_FROM};
    sm_roster_foreach(u, collect, &from);
    if (s->available || !unavailable) {
        const char **to = xmalloc((from.n + 1) * sizeof *to);
        size_t n = 0;
        for (size_t i = 0; i < from.n; i++)
            if (!sm_blocking_blocks(u, from.jids[i]))
                to[n++] = from.jids[i];
        if (n) {
            xml_node_t *p = xml_copy(st);
            xml_attr_set(p, "from", s->jid.full);
            sm_send_each(p, to, n);   /* one queued copy for the local contacts */
            xml_free(p);
        }
        free(to);
    }
    if (unavailable) {
        for (size_t i = 0; i < s->ndirected; i++) {
            char *b = jid_bare_of(s->directed[i]);
            if (!b || !s->available || !contacts_has(&from, b))
                send_copy(st, s->jid.full, s->directed[i]);
            free(b);
        }
        directed_clear(s);
    }
    contacts_free(&from);
    if (s->available || !unavailable) {
        for (sm_sess_t *o = u->sessions; o; o = o->next)
            if (o->available && (o != s || include_self))
                deliver_copy(o, st, s->jid.full);
    }
}

static void available(sm_user_t *u, sm_sess_t *s, xml_node_t *st)
{
    int initial = !s->available;
    s->available = 1;
    s->priority = parse_priority(st);
    xml_free(s->presence);
    s->presence = xml_copy(st);
    xml_attr_set(s->presence, "to", NULL);
    log_debug("event=presence jid=%s initial=%d priority=%d", s->jid.full, initial, s->priority);
    broadcast(u, s, st, 0, 1);
    if (!initial)
        return;
    contacts_t to = {NULL, 0, SM_SUB_TO};
    sm_roster_foreach(u, collect, &to);
    for (size_t i = 0; i < to.n; i++) {
        xml_node_t *p = xml_elem_new(NS_CLIENT, "presence");
        xml_attr_set(p, "type", "probe");
        xml_attr_set(p, "from", u->bare);
        xml_attr_set(p, "to", to.jids[i]);
        sm_send(p);
        xml_free(p);
    }
    contacts_free(&to);
    for (sm_sess_t *o = u->sessions; o; o = o->next)
        if (o != s && o->available && o->presence)
            deliver_copy(s, o->presence, o->jid.full);
}

static void unavailable(sm_user_t *u, sm_sess_t *s, xml_node_t *st)
{
    xml_node_t *p = xml_copy(st);
    xml_attr_set(p, "to", NULL);
    broadcast(u, s, p, 1, 0);
    xml_free(p);
    s->available = 0;
    s->priority = 0;
    xml_free(s->presence);
    s->presence = NULL;
}

/* --- hooks ------------------------------------------------------------------------ */

static sm_ret_t on_presence_out(sm_sess_t *s, xml_node_t *st)
{
    sm_user_t *u = s->user;
    const char *to = xml_attr_get(st, "to");
    const char *type = xml_attr_get(st, "type");
    if (!to) {
        if (!type)
            available(u, s, st);
        else if (!strcmp(type, "unavailable"))
            unavailable(u, s, st);
        /* Passed on: observers after us (offline delivery, carbons) see
         * broadcast presence too; the core drops it after the chain. */
        return SM_PASS;
    }
    if (!type)
        directed_add(s, to);
    else if (!strcmp(type, "unavailable"))
        directed_del(s, to, strchr(to, '/') == NULL);
    return SM_PASS;
}

static sm_ret_t probe(sm_user_t *u, xml_node_t *st)
{
    const char *from = xml_attr_get(st, "from");
    char *fb = from ? jid_bare_of(from) : NULL;
    if (!fb)
        return SM_HANDLED;
    int sub = strcmp(fb, u->bare) ? sm_roster_sub(u, fb) : SM_SUB_BOTH;
    if (sub < 0 || !(sub & SM_SUB_FROM)) {
        xml_node_t *p = xml_elem_new(NS_CLIENT, "presence");
        xml_attr_set(p, "type", "unsubscribed");
        xml_attr_set(p, "from", u->bare);
        xml_attr_set(p, "to", fb);
        sm_send(p);
        xml_free(p);
        free(fb);
        return SM_HANDLED;
    }
    int any = 0;
    for (sm_sess_t *s = u->sessions; s; s = s->next) {
        if (s->available && s->presence) {
            send_copy(s->presence, s->jid.full, from);
            any = 1;
        }
    }
    if (!any) {
        xml_node_t *p = xml_elem_new(NS_CLIENT, "presence");
        xml_attr_set(p, "type", "unavailable");
        xml_attr_set(p, "from", u->bare);
        xml_attr_set(p, "to", from);
        sm_send(p);
        xml_free(p);
    }
    free(fb);
    return SM_HANDLED;
}

/* A presence error from a JID we sent directed presence to: stop telling it. */
static void presence_error(sm_user_t *u, xml_node_t *st)
{
    const char *from = xml_attr_get(st, "from");
    if (!from)
        return;
    for (sm_sess_t *s = u->sessions; s; s = s->next)
        directed_del(s, from, strchr(from, '/') == NULL);
}

static sm_ret_t on_presence_in(sm_user_t *u, sm_sess_t *to, xml_node_t *st)
{
    const char *type = xml_attr_get(st, "type");
    if (sm_streq(type, "probe") && !to)
        return probe(u, st);
    if (sm_streq(type, "error"))
        presence_error(u, st);
    return SM_PASS;
}

static void on_sess_end(sm_sess_t *s, xml_node_t *unavailable)
{
    if (unavailable) {
        broadcast(s->user, s, unavailable, 1, 0);
    } else if (s->ndirected) {
        xml_node_t *p = xml_elem_new(NS_CLIENT, "presence");
        xml_attr_set(p, "type", "unavailable");
        broadcast(s->user, s, p, 1, 0);
        xml_free(p);
    }
}

static const sm_hooks_t presence_hooks = {
    .presence_out = on_presence_out,
    .presence_in = on_presence_in,
    .sess_end = on_sess_end,
};

sm_module_t sm_module_presence = {
    .name = "presence",
    .help = "Presence (RFC 6121 section 4): broadcast, directed presence, probes.",
    .hooks = &presence_hooks,
};
