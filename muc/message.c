/* message: what messages do in a room (XEP-0045 7.4-7.5, 7.8, 7.9, 8.1,
 * 8.6): groupchat broadcast with a stanza id (XEP-0359) and an occupant id
 * (XEP-0421), archived and kept as history; subject changes; private
 * messages through the room; mediated invitations and declines; voice
 * requests and their approval. */
#include "muc.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *occ_jid(muc_room_t *r, const char *nick)
{
    char *f = xmalloc(strlen(r->jid) + strlen(nick) + 2);
    sprintf(f, "%s/%s", r->jid, nick);
    return f;
}

/* A copy of msg for the room: from room/nick, the client's own ids and
 * extensions kept, ours (stanza-id by the room, occupant-id) replaced. */
static xml_node_t *room_copy(muc_room_t *r, muc_occ_t *o, const xml_node_t *st)
{
    xml_node_t *m = xml_elem_new(NS_CLIENT, "message");
    char *from = occ_jid(r, o->nick);
    xml_attr_set(m, "from", from);
    free(from);
    xml_attr_set(m, "type", "groupchat");
    if (xml_attr_get(st, "id"))
        xml_attr_set(m, "id", xml_attr_get(st, "id"));
    for (xml_node_t *c = st->first_child; c; c = c->next) {
        if (!c->name || !strcmp(c->ns, NS_OCCUPANT_ID))
            continue;
        if (!strcmp(c->ns, NS_SID) && !strcmp(c->name, "stanza-id"))
            continue;
        xml_append(m, xml_copy(c));
    }
    xml_attr_set(xml_add_child(m, NS_OCCUPANT_ID, "occupant-id"), "id", muc_occ_id(r, o));
    return m;
}

/* One fan-out element for every occupant (docs/component-protocol.md 9.7):
 * the router delivers it to all of them or, if a kill cut it short, to
 * none, and the acknowledgement of the message that caused it rides in the
 * same element (main.c). */
void muc_broadcast_message(muc_room_t *r, xml_node_t *msg)
{
    size_t n = 0;
    for (muc_occ_t *p = r->occs; p; p = p->next)
        for (muc_sess_t *s = p->sess; s; s = s->next)
            n++;
    const char **to = xmalloc((n ? n : 1) * sizeof *to);
    n = 0;
    for (muc_occ_t *p = r->occs; p; p = p->next)
        for (muc_sess_t *s = p->sess; s; s = s->next)
            to[n++] = s->jid;
    xml_attr_set(msg, "to", NULL);
    muc_send_fanout(msg, to, n);
    free(to);
}

/* Token bucket: msg_rate per second, bursts of twice that. */
static int rate_ok(muc_occ_t *o)
{
    long rate = muc_config->msg_rate;
    if (rate <= 0)
        return 1;
    double now = daemon_now();
    o->rate_tokens += (now - o->rate_t) * (double)rate;
    if (o->rate_tokens > 2.0 * (double)rate)
        o->rate_tokens = 2.0 * (double)rate;
    o->rate_t = now;
    if (o->rate_tokens < 1.0)
        return 0;
    o->rate_tokens -= 1.0;
    return 1;
}

static int has_body_or_content(const xml_node_t *st)
{
    for (xml_node_t *c = st->first_child; c; c = c->next)
        if (c->name && strcmp(c->name, "subject") && strcmp(c->name, "thread"))
            return 1;
    return 0;
}

static void groupchat(muc_room_t *r, muc_occ_t *o, xml_node_t *st)
{
    if (o->role < ROLE_PARTICIPANT) {
        muc_reply_error(st, "forbidden", "auth", "visitors may not speak in a moderated room");
        return;
    }
    xml_node_t *subj = xml_child(st, NS_CLIENT, "subject");
    if (subj && !has_body_or_content(st)) {
        if (o->role != ROLE_MODERATOR && !r->cfg.change_subject) {
            muc_reply_error(st, "forbidden", "auth", "only moderators may change the subject");
            return;
        }
        free(r->subject);
        free(r->subject_from);
        r->subject = xml_text(subj);
        r->subject_from = xstrdup(o->nick);
        muc_persist_room(r);
    }
    if (!rate_ok(o)) {
        muc_reply_error(st, "resource-constraint", "wait", "too many messages");
        return;
    }
    xml_node_t *m = room_copy(r, o, st);
    char *id = muc_in_stanza_id();
    xml_node_t *sid = xml_add_child(m, NS_SID, "stanza-id");
    xml_attr_set(sid, "id", id);
    xml_attr_set(sid, "by", r->jid);
    muc_broadcast_message(r, m);
    if (!subj || has_body_or_content(st)) {
        int64_t now = storage_now_us();
        if (r->cfg.logging)
            muc_persist_msg(r, id, m);
        muc_hist_add(r, id, now, m);   /* takes m */
    } else {
        xml_free(m);
    }
    free(id);
}

static void private_message(muc_room_t *r, muc_occ_t *o, xml_node_t *st, const char *nick)
{
    muc_occ_t *dest = muc_occ_by_nick(r, nick);
    const char *type = xml_attr_get(st, "type");
    if (type && !strcmp(type, "groupchat")) {
        muc_reply_error(st, "bad-request", "modify", "groupchat goes to the room's bare JID");
        return;
    }
    if (!dest) {
        muc_reply_error(st, "item-not-found", "cancel", NULL);
        return;
    }
    int need = r->cfg.allow_pm == 3 ? ROLE_VISITOR : r->cfg.allow_pm == 2 ? ROLE_PARTICIPANT
             : r->cfg.allow_pm == 1 ? ROLE_MODERATOR : ROLE_MODERATOR + 1;
    if ((int)o->role < need) {
        muc_reply_error(st, "forbidden", "auth", "private messages are not allowed here");
        return;
    }
    xml_node_t *m = xml_copy(st);
    char *from = occ_jid(r, o->nick);
    xml_attr_set(m, "from", from);
    free(from);
    if (!xml_child(m, NS_MUC_USER, "x"))
        xml_add_child(m, NS_MUC_USER, "x");
    /* To every session of the nick (XEP-0045 7.2 leaves all-or-one to the
     * service): a private message reaches the device the user looks at. */
    for (muc_sess_t *s = dest->sess; s; s = s->next) {
        xml_attr_set(m, "to", s->jid);
        muc_send(m);
    }
    xml_free(m);
}

/* 7.8.2: a mediated invitation, sent on from the room. */
static void invite(muc_room_t *r, muc_occ_t *o, xml_node_t *st, xml_node_t *inv)
{
    const char *to = xml_attr_get(inv, "to");
    muc_aff_t aff = muc_aff_of(r, o->bare);
    jid_t j;
    if (!to || jid_parse(to, &j) != JID_OK) {
        muc_reply_error(st, "jid-malformed", "modify", NULL);
        return;
    }
    if (r->cfg.members_only && !r->cfg.allow_invites && aff < AFF_ADMIN) {
        muc_reply_error(st, "forbidden", "auth", "only admins may invite to this room");
        jid_clear(&j);
        return;
    }
    if (r->cfg.members_only && muc_aff_of(r, j.bare) == AFF_NONE)
        muc_aff_set(r, j.bare, AFF_MEMBER, NULL);    /* 7.8.2: the invitee may enter */
    xml_node_t *m = xml_elem_new(NS_CLIENT, "message");
    xml_attr_set(m, "from", r->jid);
    xml_attr_set(m, "to", j.full);
    if (xml_attr_get(st, "id"))
        xml_attr_set(m, "id", xml_attr_get(st, "id"));
    xml_node_t *x = xml_add_child(m, NS_MUC_USER, "x");
    xml_node_t *i = xml_add_child(x, NS_MUC_USER, "invite");
    xml_attr_set(i, "from", xml_attr_get(st, "from"));
    xml_node_t *reason = xml_child(inv, NS_MUC_USER, "reason");
    if (reason)
        xml_append(i, xml_copy(reason));
    if (r->cfg.password_protected && r->cfg.password)
        muc_child_text(x, NS_MUC_USER, "password", r->cfg.password);
    muc_send_free(m);
    log_info("event=invite room=%s from=%s to=%s", r->jid, o->bare, j.bare);
    jid_clear(&j);
}

/* 7.8.2: a decline goes back to the inviter, from the room. */
static void decline(muc_room_t *r, xml_node_t *st, xml_node_t *dec)
{
    const char *to = xml_attr_get(dec, "to");
    if (!to)
        return;
    xml_node_t *m = xml_elem_new(NS_CLIENT, "message");
    xml_attr_set(m, "from", r->jid);
    xml_attr_set(m, "to", to);
    xml_node_t *x = xml_add_child(m, NS_MUC_USER, "x");
    xml_node_t *d = xml_add_child(x, NS_MUC_USER, "decline");
    xml_attr_set(d, "from", xml_attr_get(st, "from"));
    xml_node_t *reason = xml_child(dec, NS_MUC_USER, "reason");
    if (reason)
        xml_append(d, xml_copy(reason));
    muc_send_free(m);
}

static const char *form_type(const xml_node_t *x)
{
    for (xml_node_t *f = xml_child(x, NS_XDATA, "field"); f; f = xml_next(f, NS_XDATA, "field")) {
        const char *var = xml_attr_get(f, "var");
        xml_node_t *v = xml_child(f, NS_XDATA, "value");
        if (var && !strcmp(var, "FORM_TYPE") && v && v->first_child && !v->first_child->name)
            return v->first_child->text;
    }
    return "";
}

static char *field_value(const xml_node_t *x, const char *var)
{
    for (xml_node_t *f = xml_child(x, NS_XDATA, "field"); f; f = xml_next(f, NS_XDATA, "field")) {
        const char *v = xml_attr_get(f, "var");
        if (v && !strcmp(v, var)) {
            xml_node_t *val = xml_child(f, NS_XDATA, "value");
            return val ? xml_text(val) : xstrdup("");
        }
    }
    return NULL;
}

/* 8.6: a visitor asks for voice; moderators get the form; a moderator's
 * submitted form with request_allow true grants it. */
static void voice_request(muc_room_t *r, muc_occ_t *o, xml_node_t *st, xml_node_t *form)
{
    const char *ftype = xml_attr_get(form, "type");
    if (ftype && !strcmp(ftype, "submit") && o->role == ROLE_MODERATOR) {
        char *allow = field_value(form, "muc#request_allow");
        char *nick = field_value(form, "muc#roomnick");
        muc_occ_t *t = nick ? muc_occ_by_nick(r, nick) : NULL;
        if (t && allow && (!strcmp(allow, "true") || !strcmp(allow, "1")) &&
            t->role == ROLE_VISITOR) {
            t->role = ROLE_PARTICIPANT;
            muc_occ_changed(r, t);
        }
        free(allow);
        free(nick);
        return;
    }
    if (o->role != ROLE_VISITOR) {
        muc_reply_error(st, "not-acceptable", "cancel", "only visitors ask for voice");
        return;
    }
    for (muc_occ_t *p = r->occs; p; p = p->next) {
        if (p->role != ROLE_MODERATOR)
            continue;
        xml_node_t *m = xml_elem_new(NS_CLIENT, "message");
        xml_attr_set(m, "from", r->jid);
        xml_node_t *x = xml_add_child(m, NS_XDATA, "x");
        xml_attr_set(x, "type", "form");
        muc_child_text(x, NS_XDATA, "title", "Voice request");
        xml_node_t *f = xml_add_child(x, NS_XDATA, "field");
        xml_attr_set(f, "var", "FORM_TYPE");
        xml_attr_set(f, "type", "hidden");
        muc_child_text(f, NS_XDATA, "value", "http://jabber.org/protocol/muc#request");
        f = xml_add_child(x, NS_XDATA, "field");
        xml_attr_set(f, "var", "muc#role");
        xml_attr_set(f, "type", "list-single");
        muc_child_text(f, NS_XDATA, "value", "participant");
        f = xml_add_child(x, NS_XDATA, "field");
        xml_attr_set(f, "var", "muc#jid");
        xml_attr_set(f, "type", "jid-single");
        muc_child_text(f, NS_XDATA, "value", xml_attr_get(st, "from"));
        f = xml_add_child(x, NS_XDATA, "field");
        xml_attr_set(f, "var", "muc#roomnick");
        xml_attr_set(f, "type", "text-single");
        muc_child_text(f, NS_XDATA, "value", o->nick);
        f = xml_add_child(x, NS_XDATA, "field");
        xml_attr_set(f, "var", "muc#request_allow");
        xml_attr_set(f, "type", "boolean");
        muc_child_text(f, NS_XDATA, "value", "false");
        for (muc_sess_t *s = p->sess; s; s = s->next) {
            xml_attr_set(m, "to", s->jid);
            muc_send(m);
        }
        xml_free(m);
    }
}

void muc_message_in(xml_node_t *st, jid_t *to)
{
    const char *type = xml_attr_get(st, "type");
    if (!to->node) {
        muc_reply_error(st, "service-unavailable", "cancel", NULL);
        return;
    }
    muc_room_t *r = muc_room_get(to->bare);
    muc_occ_t *o = r ? muc_occ_by_jid(r, xml_attr_get(st, "from")) : NULL;
    /* A locked room is not there for others; its owner, the one occupant it
     * can have, may already talk in it (Dino does before any configuration). */
    if (!r || (!o && muc_room_locked(r))) {
        muc_reply_error(st, "item-not-found", "cancel", NULL);
        return;
    }
    xml_node_t *ux = xml_child(st, NS_MUC_USER, "x");
    xml_node_t *inv = ux ? xml_child(ux, NS_MUC_USER, "invite") : NULL;
    xml_node_t *dec = ux ? xml_child(ux, NS_MUC_USER, "decline") : NULL;
    if (!to->resource && dec) {
        decline(r, st, dec);
        return;
    }
    if (!o) {
        muc_reply_error(st, "not-acceptable", "cancel", "only occupants may send here");
        return;
    }
    xml_node_t *form = xml_child(st, NS_XDATA, "x");
    if (to->resource)
        private_message(r, o, st, to->resource);
    else if (type && !strcmp(type, "groupchat"))
        groupchat(r, o, st);
    else if (inv)
        invite(r, o, st, inv);
    else if (form && !strcmp(form_type(form), "http://jabber.org/protocol/muc#request"))
        voice_request(r, o, st, form);
    else
        muc_reply_error(st, "bad-request", "modify", "send groupchat to the room");
}
