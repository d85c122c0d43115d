/* occupant: what presence does in a room (XEP-0045 sections 7.2-7.6 and
 * 7.14): entering (with the checks in the XEP's order and their errors),
 * presence updates, nick changes (303), leaving, and removal by a moderator
 * or by an error from the occupant's server (307, 301, 321, 322, 333).
 * An occupant may have several sessions (devices of one bare JID under one
 * nick): a session comes and goes alone, the occupant with its last one;
 * what others see is the occupant, with the primary session's presence. Each
 * occupant change is written to storage (persist.c) before this returns, so a
 * restarted process has the same occupants. */
#include "muc.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

/* A presence from room/nick about o for one receiver. src: the session
 * whose presence children are shown and whose real JID alone is in the
 * item (a session leaving); NULL: the primary session's children and, when
 * show_jid, one item per session (as Prosody does). */
static xml_node_t *presence_for(muc_room_t *r, muc_occ_t *o, const muc_sess_t *src, int unavailable,
                                int show_jid)
{
    xml_node_t *p = xml_elem_new(NS_CLIENT, "presence");
    char *from = xmalloc(strlen(r->jid) + strlen(o->nick) + 2);
    strcpy(from, r->jid);
    strcat(from, "/");
    strcat(from, o->nick);
    xml_attr_set(p, "from", from);
    free(from);
    if (unavailable)
        xml_attr_set(p, "type", "unavailable");
    const muc_sess_t *shown = src ? src : muc_occ_primary(o);
    if (shown && shown->presence)
        for (xml_node_t *c = shown->presence->first_child; c; c = c->next) {
            if (!c->name || !strcmp(c->ns, NS_MUC) || !strcmp(c->ns, NS_MUC_USER) ||
                !strcmp(c->ns, NS_OCCUPANT_ID))
                continue;
            if (unavailable && strcmp(c->name, "status"))
                continue;
            xml_append(p, xml_copy(c));
        }
    xml_attr_set(xml_add_child(p, NS_OCCUPANT_ID, "occupant-id"), "id", muc_occ_id(r, o));
    xml_node_t *x = xml_add_child(p, NS_MUC_USER, "x");
    const char *aff = muc_aff_name(muc_aff_of(r, o->bare));
    const char *role = muc_role_name(unavailable ? ROLE_NONE : o->role);
    for (const muc_sess_t *s = src ? src : o->sess; s; s = src ? NULL : s->next) {
        xml_node_t *item = xml_add_child(x, NS_MUC_USER, "item");
        xml_attr_set(item, "affiliation", aff);
        xml_attr_set(item, "role", role);
        if (!show_jid)
            break;
        xml_attr_set(item, "jid", s->jid);
    }
    return p;
}

xml_node_t *muc_occ_presence(muc_room_t *r, muc_occ_t *o, int unavailable, int show_jid)
{
    return presence_for(r, o, NULL, unavailable, show_jid);
}

static void add_code(xml_node_t *p, int code)
{
    xml_node_t *x = xml_child(p, NS_MUC_USER, "x");
    char buf[8];
    snprintf(buf, sizeof buf, "%d", code);
    xml_attr_set(xml_add_child(x, NS_MUC_USER, "status"), "code", buf);
}

/* Nick (303), actor and reason on every item of a presence. */
static void decorate(xml_node_t *pr, const char *newnick, const char *actor, const char *reason)
{
    xml_node_t *x = xml_child(pr, NS_MUC_USER, "x");
    for (xml_node_t *item = xml_child(x, NS_MUC_USER, "item"); item;
         item = xml_next(item, NS_MUC_USER, "item")) {
        if (newnick)
            xml_attr_set(item, "nick", newnick);
        if (actor)
            xml_attr_set(xml_add_child(item, NS_MUC_USER, "actor"), "nick", actor);
        if (reason)
            muc_child_text(item, NS_MUC_USER, "reason", reason);
    }
}

static int sees_jid(muc_room_t *r, muc_occ_t *receiver)
{
    return r->cfg.whois_anyone || receiver->role == ROLE_MODERATOR;
}

/* Sends st to every session of p but skip. */
static void send_each(xml_node_t *st, muc_occ_t *p, const muc_sess_t *skip)
{
    for (muc_sess_t *s = p->sess; s; s = s->next)
        if (s != skip) {
            xml_attr_set(st, "to", s->jid);
            muc_send(st);
        }
}

/* Sends o's presence to every session of every occupant but skip.
 * newnick: a 303 nick change. */
static void broadcast(muc_room_t *r, muc_occ_t *o, int unavailable, const int *codes, size_t n,
                      const char *actor, const char *reason, const char *newnick,
                      const muc_sess_t *skip)
{
    for (muc_occ_t *p = r->occs; p; p = p->next) {
        xml_node_t *pr = presence_for(r, o, NULL, unavailable, sees_jid(r, p) || p == o);
        decorate(pr, newnick, actor, reason);
        for (size_t i = 0; i < n; i++)
            add_code(pr, codes[i]);
        if (p == o)
            add_code(pr, 110);
        send_each(pr, p, skip);
        xml_free(pr);
    }
}

void muc_broadcast_presence(muc_room_t *r, muc_occ_t *o, int unavailable, const int *codes,
                            size_t ncodes, const char *actor, const char *reason)
{
    broadcast(r, o, unavailable, codes, ncodes, actor, reason, NULL, NULL);
}

void muc_occ_changed(muc_room_t *r, muc_occ_t *o)
{
    broadcast(r, o, 0, NULL, 0, NULL, NULL, NULL, NULL);
    muc_persist_occ(r, o, 0);
}

/* A temporary room goes when its last occupant leaves (XEP-0045 10.1.3). */
static void maybe_gone(muc_room_t *r)
{
    if (!r->occs && !r->cfg.persistent) {
        log_info("event=room-destroyed room=%s reason=empty", r->jid);
        muc_room_destroy(r);
    }
}

void muc_occ_remove(muc_room_t *r, muc_occ_t *o, int code, const char *actor, const char *reason)
{
    int codes[1] = {code};
    broadcast(r, o, 1, codes, code ? 1 : 0, actor, reason, NULL, NULL);
    log_info("event=occupant-removed room=%s nick=%s code=%d sessions=%zu", r->jid, o->nick, code,
             o->nsess);
    muc_occ_unlink(r, o);
    muc_persist_occ(r, o, 1);
    muc_occ_free(o);
    maybe_gone(r);
}

/* One session of o goes (its own unavailable, or its server's error, 333).
 * The last one takes the occupant with it; otherwise that session alone is
 * told it left (110), and everyone else, the occupant's other sessions
 * included, gets o's presence as it now is: the occupant stays. */
static void sess_leave(muc_room_t *r, muc_occ_t *o, muc_sess_t *s, int code)
{
    if (o->nsess <= 1) {
        muc_occ_remove(r, o, code, NULL, NULL);
        return;
    }
    xml_node_t *pr = presence_for(r, o, s, 1, 1);
    if (code)
        add_code(pr, code);
    add_code(pr, 110);
    xml_attr_set(pr, "to", s->jid);
    muc_send_free(pr);
    for (muc_sess_t **p = &o->sess; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            o->nsess--;
            break;
        }
    muc_persist_sess(r, o, s, 1);
    log_info("event=session-left room=%s nick=%s code=%d sessions=%zu", r->jid, o->nick, code, o->nsess);
    muc_sess_free(s);
    broadcast(r, o, 0, NULL, 0, NULL, NULL, NULL, NULL);
}

/* Keeps the client's presence children, not the MUC extension. */
static xml_node_t *keep_presence(const xml_node_t *st)
{
    xml_node_t *p = xml_elem_new(NS_CLIENT, "presence");
    for (xml_node_t *c = st->first_child; c; c = c->next)
        if (c->name && strcmp(c->ns, NS_MUC) && strcmp(c->ns, NS_MUC_USER))
            xml_append(p, xml_copy(c));
    return p;
}

static void send_subject(muc_room_t *r, const char *to)
{
    xml_node_t *m = xml_elem_new(NS_CLIENT, "message");
    xml_attr_set(m, "type", "groupchat");
    xml_attr_set(m, "to", to);
    if (r->subject_from) {
        char *f = xmalloc(strlen(r->jid) + strlen(r->subject_from) + 2);
        sprintf(f, "%s/%s", r->jid, r->subject_from);
        xml_attr_set(m, "from", f);
        free(f);
    } else {
        xml_attr_set(m, "from", r->jid);
    }
    muc_child_text(m, NS_CLIENT, "subject", r->subject);
    muc_send_free(m);
}

/* What a (re)joining session gets, in the XEP's order: the others'
 * presence, its own with the status codes, the history, the subject. */
static void enter_sequence(muc_room_t *r, muc_occ_t *o, muc_sess_t *s, const xml_node_t *st,
                           int created, int nick_changed)
{
    for (muc_occ_t *p = r->occs; p; p = p->next) {
        if (p == o)
            continue;
        xml_node_t *pr = presence_for(r, p, NULL, 0, sees_jid(r, o));
        xml_attr_set(pr, "to", s->jid);
        muc_send_free(pr);
    }
    xml_node_t *self = presence_for(r, o, NULL, 0, 1);
    xml_attr_set(self, "to", s->jid);
    if (xml_attr_get(st, "id"))
        xml_attr_set(self, "id", xml_attr_get(st, "id"));
    if (r->cfg.whois_anyone)
        add_code(self, 100);
    if (r->cfg.logging)
        add_code(self, 170);
    if (created)
        add_code(self, 201);
    if (nick_changed)
        add_code(self, 210);
    add_code(self, 110);
    muc_send_free(self);
    if (!created) {
        xml_node_t *x = xml_child(st, NS_MUC, "x");
        muc_hist_send(r, s->jid, x ? xml_child(x, NS_MUC, "history") : NULL);
    }
    send_subject(r, s->jid);
}

static const char *password_of(const xml_node_t *st)
{
    xml_node_t *x = xml_child(st, NS_MUC, "x");
    xml_node_t *pw = x ? xml_child(x, NS_MUC, "password") : NULL;
    return pw && pw->first_child && !pw->first_child->name ? pw->first_child->text : "";
}

/* The occupant under nick that a new session of bare may join (XEP-0045,
 * "Nickname Conflict", lets a service give one bare JID several sessions
 * under one nick; the XSF wiki's "Multi-Session Nicks" notes);
 * NULL when nobody has that nick. *taken: someone else has it, or the
 * occupant already has limits.sessions-per-nick sessions. */
static muc_occ_t *shared_occ(muc_room_t *r, const char *nick, const char *bare, int *taken)
{
    muc_occ_t *o = muc_occ_by_nick(r, nick);
    *taken = o && (strcmp(o->bare, bare) || (long)o->nsess >= muc_config->sessions_max);
    return *taken ? NULL : o;
}

static void join(muc_room_t *r, xml_node_t *st, jid_t *to, const jid_t *from)
{
    const char *nick = to->resource;
    int created = 0;
    if ((long)strlen(nick) > muc_config->nick_max) {
        muc_presence_error(st, "not-acceptable", "modify");
        return;
    }
    if (!r) {
        if (!muc_config->create_any) {
            muc_presence_error(st, "not-allowed", "cancel");
            return;
        }
        if (muc_config->rooms_per_user &&
            (long)muc_rooms_owned_by(from->bare) >= muc_config->rooms_per_user) {
            muc_presence_error(st, "resource-constraint", "wait");
            return;
        }
        r = muc_room_new(to->bare, to->node);
        if (xml_child(st, NS_MUC, "x"))       /* without it (a legacy join): an instant room */
            muc_room_lock(r);
        muc_aff_set(r, from->bare, AFF_OWNER, NULL);
        muc_persist_room(r);
        created = 1;
        log_info("event=room-created room=%s owner=%s locked=%d", r->jid, from->bare, r->locked);
    }
    muc_aff_t aff = muc_aff_of(r, from->bare);
    const char *cond = NULL, *ctype = NULL;
    const char *reg = muc_registered_nick_owner(r, nick);
    muc_aff_ent_t *mine = muc_aff_ent(r, from->bare);
    int taken;
    muc_occ_t *same = shared_occ(r, nick, from->bare, &taken);
    if (muc_room_locked(r) && aff != AFF_OWNER)
        cond = "item-not-found", ctype = "cancel";
    else if (aff == AFF_OUTCAST)
        cond = "forbidden", ctype = "auth";
    else if (r->cfg.members_only && aff < AFF_MEMBER)
        cond = "registration-required", ctype = "auth";
    else if (taken || (reg && strcmp(reg, from->bare)))
        cond = "conflict", ctype = "cancel";
    else if (r->cfg.password_protected && aff < AFF_OWNER &&
             strcmp(password_of(st), r->cfg.password ? r->cfg.password : ""))
        cond = "not-authorized", ctype = "auth";
    else if (!same && (long)r->nocc >= r->cfg.max_users && aff < AFF_ADMIN)
        cond = "service-unavailable", ctype = "wait";
    if (cond) {
        muc_presence_error(st, cond, ctype);
        return;
    }
    /* A registered nick is enforced (XEP-0045 7.2.9 lets the service do so):
     * when it is free, or held by another session of the same user (a
     * session joining a shared nick does not become a new occupant: the
     * room-full check above let it in as no new one). */
    int nick_changed = 0;
    if (mine && mine->nick && strcmp(mine->nick, nick)) {
        muc_occ_t *holder = shared_occ(r, mine->nick, from->bare, &taken);
        if (!taken && (holder || !same)) {
            nick = mine->nick;
            nick_changed = 1;
            same = holder;
        }
    }
    if (same) {
        /* Another device of an occupant: it gets the room like a newcomer;
         * the others see the occupant's presence again (its real JIDs, for
         * those who see them, now one more), not a new occupant. */
        muc_sess_t *s = muc_sess_add(same, from->full, keep_presence(st));
        muc_persist_sess(r, same, s, 0);
        broadcast(r, same, 0, NULL, 0, NULL, NULL, NULL, s);
        enter_sequence(r, same, s, st, 0, nick_changed);
        log_info("event=session-joined room=%s nick=%s sessions=%zu", r->jid, same->nick, same->nsess);
        return;
    }
    muc_occ_t *o = xcalloc(1, sizeof *o);
    o->nick = xstrdup(nick);
    o->bare = xstrdup(from->bare);
    o->role = muc_default_role(r, aff);
    muc_sess_t *s = muc_sess_add(o, from->full, keep_presence(st));
    o->rate_t = daemon_now();
    o->rate_tokens = 2.0 * (double)muc_config->msg_rate;
    /* Appended: the others learn of it below, it learns of them first. */
    muc_occ_t **tail = &r->occs;
    while (*tail)
        tail = &(*tail)->next;
    *tail = o;
    r->nocc++;
    muc_persist_occ(r, o, 0);
    for (muc_occ_t *p = r->occs; p; p = p->next) {
        if (p == o)
            continue;
        xml_node_t *pr = presence_for(r, o, NULL, 0, sees_jid(r, p));
        send_each(pr, p, NULL);
        xml_free(pr);
    }
    enter_sequence(r, o, s, st, created, nick_changed);
    log_info("event=occupant-joined room=%s nick=%s occupants=%zu", r->jid, o->nick, r->nocc);
}

/* A nick change from any session renames the occupant: every session of it
 * gets 303 and the new presence (with 110). A nick that another occupant
 * holds is a conflict, even one of the same user under another nick. */
static void change_nick(muc_room_t *r, muc_occ_t *o, muc_sess_t *s, xml_node_t *st, const char *nick,
                        const char *bare)
{
    const char *reg = muc_registered_nick_owner(r, nick);
    if ((long)strlen(nick) > muc_config->nick_max) {
        muc_presence_error(st, "not-acceptable", "modify");
        return;
    }
    if (muc_occ_by_nick(r, nick) || (reg && strcmp(reg, bare))) {
        muc_presence_error(st, "conflict", "cancel");
        return;
    }
    muc_aff_ent_t *mine = muc_aff_ent(r, bare);
    if (mine && mine->nick && strcmp(mine->nick, nick)) {
        muc_presence_error(st, "not-acceptable", "cancel");   /* 7.6: locked to its registered nick */
        return;
    }
    int codes[1] = {303};
    broadcast(r, o, 1, codes, 1, NULL, NULL, nick, NULL);
    free(o->nick);
    o->nick = xstrdup(nick);
    xml_free(s->presence);
    s->presence = keep_presence(st);
    broadcast(r, o, 0, NULL, 0, NULL, NULL, NULL, NULL);
    muc_persist_occ(r, o, 0);
}

void muc_presence_in(xml_node_t *st, jid_t *to)
{
    const char *type = xml_attr_get(st, "type");
    if (!to->node)
        return;                                   /* presence to the service: nothing to do */
    muc_room_t *r = muc_room_get(to->bare);
    jid_t from;
    if (jid_parse(xml_attr_get(st, "from"), &from) != JID_OK)
        return;
    muc_occ_t *o = r ? muc_occ_by_jid(r, from.full) : NULL;
    muc_sess_t *s = o ? muc_sess_find(o, from.full) : NULL;
    if (type && !strcmp(type, "unavailable")) {
        if (o) {
            xml_free(s->presence);
            s->presence = keep_presence(st);
            sess_leave(r, o, s, 0);
        }
    } else if (type) {
        ;                                         /* subscriptions, probes: not for rooms */
    } else if (!to->resource) {
        muc_presence_error(st, "jid-malformed", "modify");   /* 7.2.1: no nickname */
    } else if (!o) {
        join(r, st, to, &from);
    } else if (strcmp(o->nick, to->resource)) {
        change_nick(r, o, s, st, to->resource, from.bare);
    } else if (xml_child(st, NS_MUC, "x")) {
        xml_free(s->presence);                    /* a rejoin (a client that lost track) */
        s->presence = keep_presence(st);
        muc_persist_sess(r, o, s, 0);
        enter_sequence(r, o, s, st, 0, 0);
    } else {
        xml_free(s->presence);
        s->presence = keep_presence(st);
        muc_occ_changed(r, o);
    }
    jid_clear(&from);
}

/* Conditions that say the occupant's client or server is gone (XEP-0045
 * 18.1; the sm answers a delivery to a gone resource service-unavailable). */
static int gone_condition(const xml_node_t *st)
{
    static const char *const gone[] = {"service-unavailable", "recipient-unavailable",
                                       "remote-server-not-found", "remote-server-timeout",
                                       "item-not-found", "gone", "redirect", NULL};
    xml_node_t *err = xml_child(st, NULL, "error");
    if (!err)
        return 0;
    for (xml_node_t *c = err->first_child; c; c = c->next)
        if (c->name && !strcmp(c->ns, NS_STANZAS))
            for (int i = 0; gone[i]; i++)
                if (!strcmp(c->name, gone[i]))
                    return 1;
    return 0;
}

void muc_occ_error_in(const xml_node_t *st, jid_t *to)
{
    if (!to->node || !gone_condition(st))
        return;
    muc_room_t *r = muc_room_get(to->bare);
    const char *from = xml_attr_get(st, "from");
    muc_occ_t *o = r ? muc_occ_by_jid(r, from) : NULL;
    if (!o)
        return;
    /* An error to an IQ the room forwarded says nothing of the occupant. */
    if (!strcmp(st->name, "iq"))
        return;
    log_info("event=occupant-gone room=%s nick=%s sessions=%zu", r->jid, o->nick, o->nsess);
    muc_metrics_session_gone();
    sess_leave(r, o, muc_sess_find(o, from), 333);
}
