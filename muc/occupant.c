/* occupant: what presence does in a room (XEP-0045 sections 7.2-7.6 and
 * 7.14): entering (with the checks in the XEP's order and their errors),
 * presence updates, nick changes (303), leaving, and removal by a moderator
 * or by an error from the occupant's server (307, 301, 321, 322, 333). Each
 * occupant change is written to storage (persist.c) before this returns, so a
 * restarted process has the same occupants. */
#include "muc.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

/* A presence from room/nick about o for one receiver. */
static xml_node_t *presence_for(muc_room_t *r, muc_occ_t *o, const char *nick, int unavailable,
                                int show_jid)
{
    xml_node_t *p = xml_elem_new(NS_CLIENT, "presence");
    char *from = xmalloc(strlen(r->jid) + strlen(nick) + 2);
    strcpy(from, r->jid);
    strcat(from, "/");
    strcat(from, nick);
    xml_attr_set(p, "from", from);
    free(from);
    if (unavailable)
        xml_attr_set(p, "type", "unavailable");
    if (o->presence)
        for (xml_node_t *c = o->presence->first_child; c; c = c->next) {
            if (!c->name || !strcmp(c->ns, NS_MUC) || !strcmp(c->ns, NS_MUC_USER) ||
                !strcmp(c->ns, NS_OCCUPANT_ID))
                continue;
            if (unavailable && strcmp(c->name, "status"))
                continue;
            xml_append(p, xml_copy(c));
        }
    char oid[65];
    muc_occupant_id(r, o->bare, oid);
    xml_attr_set(xml_add_child(p, NS_OCCUPANT_ID, "occupant-id"), "id", oid);
    xml_node_t *x = xml_add_child(p, NS_MUC_USER, "x");
    xml_node_t *item = xml_add_child(x, NS_MUC_USER, "item");
    xml_attr_set(item, "affiliation", muc_aff_name(muc_aff_of(r, o->bare)));
    xml_attr_set(item, "role", muc_role_name(unavailable ? ROLE_NONE : o->role));
    if (show_jid)
        xml_attr_set(item, "jid", o->jid);
    return p;
}

xml_node_t *muc_occ_presence(muc_room_t *r, muc_occ_t *o, int unavailable, int show_jid)
{
    return presence_for(r, o, o->nick, unavailable, show_jid);
}

static void add_code(xml_node_t *p, int code)
{
    xml_node_t *x = xml_child(p, NS_MUC_USER, "x");
    char buf[8];
    snprintf(buf, sizeof buf, "%d", code);
    xml_attr_set(xml_add_child(x, NS_MUC_USER, "status"), "code", buf);
}

static int sees_jid(muc_room_t *r, muc_occ_t *receiver)
{
    return r->cfg.whois_anyone || receiver->role == ROLE_MODERATOR;
}

/* Sends o's presence to every occupant. newnick: a 303 nick change. */
static void broadcast(muc_room_t *r, muc_occ_t *o, int unavailable, const int *codes, size_t n,
                      const char *actor, const char *reason, const char *newnick)
{
    for (muc_occ_t *p = r->occs; p; p = p->next) {
        xml_node_t *pr = presence_for(r, o, o->nick, unavailable, sees_jid(r, p) || p == o);
        xml_attr_set(pr, "to", p->jid);
        xml_node_t *item = xml_child(xml_child(pr, NS_MUC_USER, "x"), NS_MUC_USER, "item");
        if (newnick)
            xml_attr_set(item, "nick", newnick);
        if (actor)
            xml_attr_set(xml_add_child(item, NS_MUC_USER, "actor"), "nick", actor);
        if (reason)
            muc_child_text(item, NS_MUC_USER, "reason", reason);
        for (size_t i = 0; i < n; i++)
            add_code(pr, codes[i]);
        if (p == o)
            add_code(pr, 110);
        muc_send_free(pr);
    }
}

void muc_broadcast_presence(muc_room_t *r, muc_occ_t *o, int unavailable, const int *codes,
                            size_t ncodes, const char *actor, const char *reason)
{
    broadcast(r, o, unavailable, codes, ncodes, actor, reason, NULL);
}

void muc_occ_changed(muc_room_t *r, muc_occ_t *o)
{
    broadcast(r, o, 0, NULL, 0, NULL, NULL, NULL);
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
    broadcast(r, o, 1, codes, code ? 1 : 0, actor, reason, NULL);
    log_info("event=occupant-removed room=%s nick=%s code=%d", r->jid, o->nick, code);
    muc_occ_unlink(r, o);
    muc_persist_occ(r, o, 1);
    muc_occ_free(o);
    maybe_gone(r);
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

static void send_subject(muc_room_t *r, muc_occ_t *o)
{
    xml_node_t *m = xml_elem_new(NS_CLIENT, "message");
    xml_attr_set(m, "type", "groupchat");
    xml_attr_set(m, "to", o->jid);
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

/* What a (re)joining occupant gets, in the XEP's order: the others'
 * presence, its own with the status codes, the history, the subject. */
static void enter_sequence(muc_room_t *r, muc_occ_t *o, const xml_node_t *st, int created,
                           int nick_changed)
{
    for (muc_occ_t *p = r->occs; p; p = p->next) {
        if (p == o)
            continue;
        xml_node_t *pr = presence_for(r, p, p->nick, 0, sees_jid(r, o));
        xml_attr_set(pr, "to", o->jid);
        muc_send_free(pr);
    }
    xml_node_t *self = presence_for(r, o, o->nick, 0, 1);
    xml_attr_set(self, "to", o->jid);
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
        muc_hist_send(r, o, x ? xml_child(x, NS_MUC, "history") : NULL);
    }
    send_subject(r, o);
}

static const char *password_of(const xml_node_t *st)
{
    xml_node_t *x = xml_child(st, NS_MUC, "x");
    xml_node_t *pw = x ? xml_child(x, NS_MUC, "password") : NULL;
    return pw && pw->first_child && !pw->first_child->name ? pw->first_child->text : "";
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
        r->locked = xml_child(st, NS_MUC, "x") != NULL;   /* legacy join: an instant room */
        muc_aff_set(r, from->bare, AFF_OWNER, NULL);
        muc_persist_room(r);
        created = 1;
        log_info("event=room-created room=%s owner=%s locked=%d", r->jid, from->bare, r->locked);
    }
    muc_aff_t aff = muc_aff_of(r, from->bare);
    const char *cond = NULL, *ctype = NULL;
    const char *reg = muc_registered_nick_owner(r, nick);
    muc_aff_ent_t *mine = muc_aff_ent(r, from->bare);
    if (r->locked && aff != AFF_OWNER)
        cond = "item-not-found", ctype = "cancel";
    else if (aff == AFF_OUTCAST)
        cond = "forbidden", ctype = "auth";
    else if (r->cfg.members_only && aff < AFF_MEMBER)
        cond = "registration-required", ctype = "auth";
    else if (muc_occ_by_nick(r, nick) || (reg && strcmp(reg, from->bare)))
        cond = "conflict", ctype = "cancel";
    else if (r->cfg.password_protected && aff < AFF_OWNER &&
             strcmp(password_of(st), r->cfg.password ? r->cfg.password : ""))
        cond = "not-authorized", ctype = "auth";
    else if ((long)r->nocc >= r->cfg.max_users && aff < AFF_ADMIN)
        cond = "service-unavailable", ctype = "wait";
    if (cond) {
        muc_presence_error(st, cond, ctype);
        return;
    }
    /* A registered nick is enforced (XEP-0045 7.2.9 lets the service do so). */
    int nick_changed = 0;
    if (mine && mine->nick && strcmp(mine->nick, nick) && !muc_occ_by_nick(r, mine->nick)) {
        nick = mine->nick;
        nick_changed = 1;
    }
    muc_occ_t *o = xcalloc(1, sizeof *o);
    o->nick = xstrdup(nick);
    o->jid = xstrdup(from->full);
    o->bare = xstrdup(from->bare);
    o->role = muc_default_role(r, aff);
    o->presence = keep_presence(st);
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
        xml_node_t *pr = presence_for(r, o, o->nick, 0, sees_jid(r, p));
        xml_attr_set(pr, "to", p->jid);
        muc_send_free(pr);
    }
    enter_sequence(r, o, st, created, nick_changed);
    log_info("event=occupant-joined room=%s nick=%s occupants=%zu", r->jid, o->nick, r->nocc);
}

static void change_nick(muc_room_t *r, muc_occ_t *o, xml_node_t *st, const char *nick,
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
    broadcast(r, o, 1, codes, 1, NULL, NULL, nick);
    free(o->nick);
    o->nick = xstrdup(nick);
    xml_free(o->presence);
    o->presence = keep_presence(st);
    broadcast(r, o, 0, NULL, 0, NULL, NULL, NULL);
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
    if (type && !strcmp(type, "unavailable")) {
        if (o) {
            xml_free(o->presence);
            o->presence = keep_presence(st);
            muc_occ_remove(r, o, 0, NULL, NULL);
        }
    } else if (type) {
        ;                                         /* subscriptions, probes: not for rooms */
    } else if (!to->resource) {
        muc_presence_error(st, "jid-malformed", "modify");   /* 7.2.1: no nickname */
    } else if (!o) {
        join(r, st, to, &from);
    } else if (strcmp(o->nick, to->resource)) {
        change_nick(r, o, st, to->resource, from.bare);
    } else if (xml_child(st, NS_MUC, "x")) {
        xml_free(o->presence);                    /* a rejoin (a client that lost track) */
        o->presence = keep_presence(st);
        muc_persist_occ(r, o, 0);
        enter_sequence(r, o, st, 0, 0);
    } else {
        xml_free(o->presence);
        o->presence = keep_presence(st);
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
    muc_occ_t *o = r ? muc_occ_by_jid(r, xml_attr_get(st, "from")) : NULL;
    if (!o)
        return;
    /* An error to an IQ the room forwarded says nothing of the occupant. */
    if (!strcmp(st->name, "iq"))
        return;
    log_info("event=occupant-gone room=%s nick=%s", r->jid, o->nick);
    muc_occ_remove(r, o, 333, NULL, NULL);
}
