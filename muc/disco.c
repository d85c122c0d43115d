/* disco: every IQ the service answers, dispatched by its payload: service
 * and room disco (XEP-0030, the room's muc#roominfo form, XEP-0128),
 * XEP-0199/0410 pings (a self-ping to room/nick answers whether the sender
 * is that occupant), registered nicknames (jabber:iq:register on a room,
 * XEP-0045 7.10), and hands muc#admin, muc#owner and MAM to their files. */
#include "muc.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void feature(xml_node_t *q, const char *var)
{
    xml_attr_set(xml_add_child(q, NS_DISCO_INFO, "feature"), "var", var);
}

static void identity(xml_node_t *q, const char *name)
{
    xml_node_t *i = xml_add_child(q, NS_DISCO_INFO, "identity");
    xml_attr_set(i, "category", "conference");
    xml_attr_set(i, "type", "text");
    xml_attr_set(i, "name", name);
}

static void form_field(xml_node_t *x, const char *var, const char *value)
{
    xml_node_t *f = xml_add_child(x, NS_XDATA, "field");
    xml_attr_set(f, "var", var);
    muc_child_text(f, NS_XDATA, "value", value);
}

static void service_info(xml_node_t *iq)
{
    xml_node_t *res = muc_iq_result(iq);
    xml_node_t *q = xml_add_child(res, NS_DISCO_INFO, "query");
    identity(q, "Chatrooms");
    feature(q, NS_DISCO_INFO);
    feature(q, NS_DISCO_ITEMS);
    feature(q, NS_MUC);
    feature(q, NS_PING);
    feature(q, NS_OCCUPANT_ID);
    feature(q, NS_SID);
    feature(q, "jabber:x:conference");
    muc_send_free(res);
}

static void service_items(xml_node_t *iq)
{
    xml_node_t *res = muc_iq_result(iq);
    xml_node_t *q = xml_add_child(res, NS_DISCO_ITEMS, "query");
    for (muc_room_t *r = muc_room_each(NULL); r; r = muc_room_each(r)) {
        if (!r->cfg.public_ || muc_room_locked(r))
            continue;
        xml_node_t *i = xml_add_child(q, NS_DISCO_ITEMS, "item");
        xml_attr_set(i, "jid", r->jid);
        xml_attr_set(i, "name", r->cfg.name ? r->cfg.name : r->node);
    }
    muc_send_free(res);
}

static void room_info(xml_node_t *iq, muc_room_t *r, const char *node)
{
    xml_node_t *res = muc_iq_result(iq);
    xml_node_t *q = xml_add_child(res, NS_DISCO_INFO, "query");
    if (node && !strcmp(node, "x-roomuser-item")) {
        /* 7.2.3: the registered nickname of the asker, if any. */
        xml_attr_set(q, "node", node);
        char *bare = jid_bare_of(xml_attr_get(iq, "from"));
        muc_aff_ent_t *a = bare ? muc_aff_ent(r, bare) : NULL;
        free(bare);
        if (a && a->nick) {
            xml_node_t *i = xml_add_child(q, NS_DISCO_INFO, "identity");
            xml_attr_set(i, "category", "conference");
            xml_attr_set(i, "type", "text");
            xml_attr_set(i, "name", a->nick);
        }
        muc_send_free(res);
        return;
    }
    muc_room_cfg_t *c = &r->cfg;
    identity(q, c->name ? c->name : r->node);
    feature(q, NS_MUC);
    feature(q, NS_DISCO_INFO);
    feature(q, NS_PING);
    feature(q, NS_SID);
    feature(q, NS_OCCUPANT_ID);
    feature(q, NS_REGISTER);
    if (c->logging)
        feature(q, NS_MAM);
    feature(q, c->public_ ? "muc_public" : "muc_hidden");
    feature(q, c->members_only ? "muc_membersonly" : "muc_open");
    feature(q, c->moderated ? "muc_moderated" : "muc_unmoderated");
    feature(q, c->password_protected ? "muc_passwordprotected" : "muc_unsecured");
    feature(q, c->persistent ? "muc_persistent" : "muc_temporary");
    feature(q, c->whois_anyone ? "muc_nonanonymous" : "muc_semianonymous");
    xml_node_t *x = xml_add_child(q, NS_XDATA, "x");
    xml_attr_set(x, "type", "result");
    xml_node_t *ft = xml_add_child(x, NS_XDATA, "field");
    xml_attr_set(ft, "var", "FORM_TYPE");
    xml_attr_set(ft, "type", "hidden");
    muc_child_text(ft, NS_XDATA, "value", "http://jabber.org/protocol/muc#roominfo");
    char n[32];
    snprintf(n, sizeof n, "%zu", r->nocc);
    form_field(x, "muc#roominfo_occupants", n);
    form_field(x, "muc#roominfo_description", c->desc ? c->desc : "");
    form_field(x, "muc#roominfo_subject", r->subject ? r->subject : "");
    form_field(x, "muc#roominfo_subjectmod", c->change_subject ? "1" : "0");
    snprintf(n, sizeof n, "%ld", c->history_len);
    form_field(x, "muc#maxhistoryfetch", n);
    form_field(x, "muc#roomconfig_allowinvites", c->allow_invites ? "1" : "0");
    if (c->name)
        form_field(x, "muc#roomconfig_roomname", c->name);
    muc_send_free(res);
}

static void room_items(xml_node_t *iq, muc_room_t *r)
{
    xml_node_t *res = muc_iq_result(iq);
    xml_node_t *q = xml_add_child(res, NS_DISCO_ITEMS, "query");
    /* 6.5: occupants are listed in a public, non-anonymous room only. */
    if (r->cfg.public_ && r->cfg.whois_anyone)
        for (muc_occ_t *o = r->occs; o; o = o->next) {
            char *j = xmalloc(strlen(r->jid) + strlen(o->nick) + 2);
            sprintf(j, "%s/%s", r->jid, o->nick);
            xml_attr_set(xml_add_child(q, NS_DISCO_ITEMS, "item"), "jid", j);
            free(j);
        }
    muc_send_free(res);
}

/* 7.10: the registration form; a submit makes the asker a member with that
 * nickname reserved. */
static void room_register(xml_node_t *iq, muc_room_t *r)
{
    char *bare = jid_bare_of(xml_attr_get(iq, "from"));
    if (!bare) {
        muc_reply_error(iq, "jid-malformed", "modify", NULL);
        return;
    }
    muc_aff_ent_t *mine = muc_aff_ent(r, bare);
    if (!strcmp(xml_attr_get(iq, "type"), "get")) {
        xml_node_t *res = muc_iq_result(iq);
        xml_node_t *q = xml_add_child(res, NS_REGISTER, "query");
        if (mine && mine->nick) {
            xml_add_child(q, NS_REGISTER, "registered");
            muc_child_text(q, NS_REGISTER, "username", mine->nick);
        } else {
            xml_node_t *x = xml_add_child(q, NS_XDATA, "x");
            xml_attr_set(x, "type", "form");
            xml_node_t *f = xml_add_child(x, NS_XDATA, "field");
            xml_attr_set(f, "var", "FORM_TYPE");
            xml_attr_set(f, "type", "hidden");
            muc_child_text(f, NS_XDATA, "value", "http://jabber.org/protocol/muc#register");
            f = xml_add_child(x, NS_XDATA, "field");
            xml_attr_set(f, "var", "muc#register_roomnick");
            xml_attr_set(f, "type", "text-single");
            xml_attr_set(f, "label", "Desired nickname");
            xml_add_child(f, NS_XDATA, "required");
        }
        muc_send_free(res);
        free(bare);
        return;
    }
    xml_node_t *q = xml_child(iq, NS_REGISTER, "query");
    xml_node_t *x = q ? xml_child(q, NS_XDATA, "x") : NULL;
    char *nick = NULL;
    for (xml_node_t *f = x ? xml_child(x, NS_XDATA, "field") : NULL; f;
         f = xml_next(f, NS_XDATA, "field")) {
        const char *var = xml_attr_get(f, "var");
        xml_node_t *v = xml_child(f, NS_XDATA, "value");
        if (var && !strcmp(var, "muc#register_roomnick") && v)
            nick = xml_text(v);
    }
    char *prepped = nick && *nick ? jid_prep_resource(nick) : NULL;
    const char *holder = prepped ? muc_registered_nick_owner(r, prepped) : NULL;
    muc_occ_t *using = prepped ? muc_occ_by_nick(r, prepped) : NULL;
    if (!prepped) {
        muc_reply_error(iq, "not-acceptable", "modify", "a nickname is required");
    } else if ((holder && strcmp(holder, bare)) || (using && strcmp(using->bare, bare))) {
        muc_reply_error(iq, "conflict", "cancel", NULL);
    } else if (muc_aff_of(r, bare) == AFF_OUTCAST) {
        muc_reply_error(iq, "forbidden", "auth", NULL);
    } else if (r->cfg.members_only && muc_aff_of(r, bare) < AFF_MEMBER) {
        muc_reply_error(iq, "registration-required", "auth", "members only: ask an admin");
    } else {
        muc_aff_t aff = muc_aff_of(r, bare);
        muc_aff_set(r, bare, aff > AFF_MEMBER ? aff : AFF_MEMBER, NULL);
        mine = muc_aff_ent(r, bare);
        free(mine->nick);
        mine->nick = xstrdup(prepped);
        muc_persist_aff(r, mine, 0);
        muc_send_free(muc_iq_result(iq));
        for (muc_occ_t *o = r->occs; o; o = o->next)
            if (!strcmp(o->bare, bare))
                muc_occ_changed(r, o);            /* its affiliation is now member */
    }
    free(prepped);
    free(nick);
    free(bare);
}

static void ping(xml_node_t *iq, muc_room_t *r, jid_t *to)
{
    if (r && to->resource) {
        /* XEP-0410: a self-ping is answered by the room for its occupant;
         * an occupant's ping to another goes on to it. */
        muc_occ_t *o = muc_occ_by_jid(r, xml_attr_get(iq, "from"));
        if (!o) {
            muc_reply_error(iq, "not-acceptable", "cancel", "not an occupant");
            return;
        }
        if (strcmp(o->nick, to->resource)) {
            muc_iq_relay(iq, r, to->resource);
            return;
        }
    }
    muc_send_free(muc_iq_result(iq));
}

void muc_iq_in(xml_node_t *iq, jid_t *to)
{
    const char *type = xml_attr_get(iq, "type");
    if (!type || (strcmp(type, "get") && strcmp(type, "set")))
        return;                                   /* results of nothing we asked */
    xml_node_t *p = iq->first_child;
    while (p && !p->name)
        p = p->next;
    const char *ns = p ? p->ns : "";
    int get = !strcmp(type, "get");
    muc_room_t *r = to->node ? muc_room_get(to->bare) : NULL;
    if (p && !strcmp(ns, NS_PING) && !strcmp(p->name, "ping")) {
        if (to->node && !r)
            muc_reply_error(iq, "item-not-found", "cancel", NULL);
        else
            ping(iq, r, to);
        return;
    }
    if (!to->node) {
        if (get && !strcmp(ns, NS_DISCO_INFO))
            service_info(iq);
        else if (get && !strcmp(ns, NS_DISCO_ITEMS))
            service_items(iq);
        else
            muc_reply_error(iq, "service-unavailable", "cancel", NULL);
        return;
    }
    int locked = r && muc_room_locked(r);
    char *bare = locked ? jid_bare_of(xml_attr_get(iq, "from")) : NULL;
    int hidden = locked && (!bare || muc_aff_of(r, bare) != AFF_OWNER);
    free(bare);
    if (!r || hidden) {                           /* 10.1.1: a locked room is not there for others */
        muc_reply_error(iq, "item-not-found", "cancel", NULL);
        return;
    }
    if (to->resource) {
        muc_iq_relay(iq, r, to->resource);       /* vCard, version, ... of an occupant */
        return;
    }
    if (get && !strcmp(ns, NS_DISCO_INFO))
        room_info(iq, r, xml_attr_get(p, "node"));
    else if (get && !strcmp(ns, NS_DISCO_ITEMS))
        room_items(iq, r);
    else if (!strcmp(ns, NS_MUC_ADMIN))
        muc_admin_iq(iq, r);
    else if (!strcmp(ns, NS_MUC_OWNER))
        muc_owner_iq(iq, r);
    else if (!strcmp(ns, NS_MAM) && r->cfg.logging)
        muc_mam_iq(iq, r);
    else if (!strcmp(ns, NS_REGISTER))
        room_register(iq, r);
    else
        muc_reply_error(iq, "service-unavailable", "cancel", NULL);
}
