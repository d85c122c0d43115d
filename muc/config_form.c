/* config_form: the muc#owner IQ (XEP-0045 section 10): the XEP-0004 room
 * configuration form (muc#roomconfig) for reserved rooms, the empty submit
 * that makes an instant room, cancel of a new room, later changes (with
 * status 104/170-173 and removal of non-members, 322), the owner and admin
 * lists in the form, and room destruction with an alternate venue. */
#include "muc.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FORM_NS "http://jabber.org/protocol/muc#roomconfig"

void muc_room_cfg_defaults(muc_room_cfg_t *c)
{
    memset(c, 0, sizeof *c);
    c->public_ = 1;
    c->allow_pm = 3;
    c->logging = 1;
    c->max_users = muc_config ? muc_config->occupants_max : 100;
    c->history_len = muc_config ? muc_config->history_max : 50;
}

void muc_room_cfg_clear(muc_room_cfg_t *c)
{
    free(c->name);
    free(c->desc);
    free(c->password);
    c->name = c->desc = c->password = NULL;
}

static xml_node_t *field(xml_node_t *x, const char *var, const char *type, const char *label,
                         const char *value)
{
    xml_node_t *f = xml_add_child(x, NS_XDATA, "field");
    xml_attr_set(f, "var", var);
    if (type)
        xml_attr_set(f, "type", type);
    if (label)
        xml_attr_set(f, "label", label);
    if (value)
        muc_child_text(f, NS_XDATA, "value", value);
    return f;
}

static void option(xml_node_t *f, const char *label, const char *value)
{
    xml_node_t *o = xml_add_child(f, NS_XDATA, "option");
    xml_attr_set(o, "label", label);
    muc_child_text(o, NS_XDATA, "value", value);
}

static const char *const pm_names[] = {"none", "moderators", "participants", "anyone"};

static void jid_list(xml_node_t *x, muc_room_t *r, const char *var, const char *label,
                     muc_aff_t aff)
{
    xml_node_t *f = field(x, var, "jid-multi", label, NULL);
    for (muc_aff_ent_t *a = r->affs; a; a = a->next)
        if (a->aff == aff)
            muc_child_text(f, NS_XDATA, "value", a->bare);
}

static xml_node_t *form(muc_room_t *r)
{
    muc_room_cfg_t *c = &r->cfg;
    char n[32];
    xml_node_t *x = xml_elem_new(NS_XDATA, "x");
    xml_attr_set(x, "type", "form");
    muc_child_text(x, NS_XDATA, "title", "Room configuration");
    field(x, "FORM_TYPE", "hidden", NULL, FORM_NS);
    field(x, "muc#roomconfig_roomname", "text-single", "Room name", c->name);
    field(x, "muc#roomconfig_roomdesc", "text-single", "Description", c->desc);
    field(x, "muc#roomconfig_persistentroom", "boolean", "Persistent", c->persistent ? "1" : "0");
    field(x, "muc#roomconfig_publicroom", "boolean", "Listed in the directory", c->public_ ? "1" : "0");
    field(x, "muc#roomconfig_membersonly", "boolean", "Members only", c->members_only ? "1" : "0");
    field(x, "muc#roomconfig_moderatedroom", "boolean", "Moderated", c->moderated ? "1" : "0");
    field(x, "muc#roomconfig_passwordprotectedroom", "boolean", "Password required",
          c->password_protected ? "1" : "0");
    field(x, "muc#roomconfig_roomsecret", "text-private", "Password", c->password);
    xml_node_t *f = field(x, "muc#roomconfig_whois", "list-single", "Who may see real JIDs",
                          c->whois_anyone ? "anyone" : "moderators");
    option(f, "Moderators", "moderators");
    option(f, "Anyone", "anyone");
    field(x, "muc#roomconfig_changesubject", "boolean", "Participants may change the subject",
          c->change_subject ? "1" : "0");
    field(x, "muc#roomconfig_allowinvites", "boolean", "Participants may invite",
          c->allow_invites ? "1" : "0");
    f = field(x, "muc#roomconfig_allowpm", "list-single", "Who may send private messages",
              pm_names[c->allow_pm]);
    for (int i = 3; i >= 0; i--)
        option(f, pm_names[i], pm_names[i]);
    snprintf(n, sizeof n, "%ld", c->max_users);
    field(x, "muc#roomconfig_maxusers", "text-single", "Most occupants", n);
    field(x, "muc#roomconfig_enablelogging", "boolean", "Archived (MAM)", c->logging ? "1" : "0");
    snprintf(n, sizeof n, "%ld", c->history_len);
    field(x, "muc#maxhistoryfetch", "text-single", "Messages of history kept", n);
    jid_list(x, r, "muc#roomconfig_roomowners", "Owners", AFF_OWNER);
    jid_list(x, r, "muc#roomconfig_roomadmins", "Admins", AFF_ADMIN);
    return x;
}

static int is_true(const char *v)
{
    return v && (!strcmp(v, "1") || !strcmp(v, "true"));
}

/* Applies one submitted field; -1 for a value out of range. */
static int apply(muc_room_t *r, muc_room_cfg_t *c, const char *var, xml_node_t *f)
{
    xml_node_t *vn = xml_child(f, NS_XDATA, "value");
    char *v = vn ? xml_text(vn) : xstrdup("");
    int rc = 0;
    if (!strcmp(var, "muc#roomconfig_roomname")) {
        free(c->name);
        c->name = *v ? xstrdup(v) : NULL;
    } else if (!strcmp(var, "muc#roomconfig_roomdesc")) {
        free(c->desc);
        c->desc = *v ? xstrdup(v) : NULL;
    } else if (!strcmp(var, "muc#roomconfig_persistentroom")) {
        c->persistent = is_true(v);
    } else if (!strcmp(var, "muc#roomconfig_publicroom")) {
        c->public_ = is_true(v);
    } else if (!strcmp(var, "muc#roomconfig_membersonly")) {
        c->members_only = is_true(v);
    } else if (!strcmp(var, "muc#roomconfig_moderatedroom")) {
        c->moderated = is_true(v);
    } else if (!strcmp(var, "muc#roomconfig_passwordprotectedroom")) {
        c->password_protected = is_true(v);
    } else if (!strcmp(var, "muc#roomconfig_roomsecret")) {
        free(c->password);
        c->password = *v ? xstrdup(v) : NULL;
    } else if (!strcmp(var, "muc#roomconfig_whois")) {
        c->whois_anyone = !strcmp(v, "anyone");
    } else if (!strcmp(var, "muc#roomconfig_changesubject")) {
        c->change_subject = is_true(v);
    } else if (!strcmp(var, "muc#roomconfig_allowinvites")) {
        c->allow_invites = is_true(v);
    } else if (!strcmp(var, "muc#roomconfig_allowpm")) {
        rc = -1;
        for (int i = 0; i < 4; i++)
            if (!strcmp(v, pm_names[i]))
                c->allow_pm = i, rc = 0;
    } else if (!strcmp(var, "muc#roomconfig_maxusers")) {
        long n = strtol(v, NULL, 10);
        if (!strcmp(v, "none") || !*v)
            n = muc_config->occupants_max;
        if (n < 1 || n > muc_config->occupants_max)
            rc = -1;
        else
            c->max_users = n;
    } else if (!strcmp(var, "muc#roomconfig_enablelogging")) {
        c->logging = is_true(v);
    } else if (!strcmp(var, "muc#maxhistoryfetch")) {
        long n = strtol(v, NULL, 10);
        if (n < 0)
            rc = -1;
        else
            c->history_len = n > muc_config->history_max ? muc_config->history_max : n;
    } else if (!strcmp(var, "muc#roomconfig_roomowners") ||
               !strcmp(var, "muc#roomconfig_roomadmins")) {
        muc_aff_t aff = var[15] == 'o' ? AFF_OWNER : AFF_ADMIN;
        for (xml_node_t *val = xml_child(f, NS_XDATA, "value"); val;
             val = xml_next(val, NS_XDATA, "value")) {
            char *t = xml_text(val);
            char *b = jid_bare_of(t);
            if (b && muc_aff_of(r, b) < aff)
                muc_aff_set(r, b, aff, NULL);
            free(b);
            free(t);
        }
    }
    free(v);
    return rc;
}

static void status_message(muc_room_t *r, const int *codes, size_t n)
{
    xml_node_t *m = xml_elem_new(NS_CLIENT, "message");
    xml_attr_set(m, "type", "groupchat");
    xml_attr_set(m, "from", r->jid);
    xml_node_t *x = xml_add_child(m, NS_MUC_USER, "x");
    for (size_t i = 0; i < n; i++) {
        char buf[8];
        snprintf(buf, sizeof buf, "%d", codes[i]);
        xml_attr_set(xml_add_child(x, NS_MUC_USER, "status"), "code", buf);
    }
    muc_broadcast_message(r, m);
    xml_free(m);
}

static void submit(xml_node_t *iq, muc_room_t *r, xml_node_t *x)
{
    muc_room_cfg_t old = r->cfg;
    muc_room_cfg_t c = r->cfg;
    c.name = old.name ? xstrdup(old.name) : NULL;
    c.desc = old.desc ? xstrdup(old.desc) : NULL;
    c.password = old.password ? xstrdup(old.password) : NULL;
    for (xml_node_t *f = xml_child(x, NS_XDATA, "field"); f; f = xml_next(f, NS_XDATA, "field")) {
        const char *var = xml_attr_get(f, "var");
        if (var && apply(r, &c, var, f) < 0) {
            muc_room_cfg_clear(&c);
            muc_reply_error(iq, "not-acceptable", "modify", var);
            return;
        }
    }
    if (c.password_protected && !c.password) {
        muc_room_cfg_clear(&c);
        muc_reply_error(iq, "not-acceptable", "modify", "a password-protected room needs a password");
        return;
    }
    int was_locked = muc_room_locked(r);
    r->cfg = c;
    r->locked = 0;
    muc_persist_room(r);
    muc_send_free(muc_iq_result(iq));
    log_info("event=room-configured room=%s persistent=%d members-only=%d", r->jid, c.persistent,
             c.members_only);
    int codes[4];
    size_t n = 0;
    if (!was_locked) {
        codes[n++] = 104;
        if (c.whois_anyone != old.whois_anyone)
            codes[n++] = c.whois_anyone ? 172 : 173;
        if (c.logging != old.logging)
            codes[n++] = c.logging ? 170 : 171;
        status_message(r, codes, n);
    }
    /* 9.4 / 10.2: the room became members-only: non-members leave (322). */
    if (c.members_only && !old.members_only) {
        char *room = xstrdup(r->jid);
        for (muc_occ_t *o = r->occs, *next; o; o = next) {
            next = o->next;
            if (muc_aff_of(r, o->bare) < AFF_MEMBER) {
                muc_occ_remove(r, o, 322, NULL, NULL);
                if (!muc_room_get(room))
                    break;
            }
        }
        int gone = !muc_room_get(room);
        free(room);
        if (gone) {
            muc_room_cfg_clear(&old);
            return;
        }
    }
    /* The room became moderated or not: roles without voice follow. */
    if (c.moderated != old.moderated)
        for (muc_occ_t *o = r->occs; o; o = o->next) {
            muc_role_t role = muc_default_role(r, muc_aff_of(r, o->bare));
            if ((c.moderated && o->role == ROLE_PARTICIPANT && role == ROLE_VISITOR) ||
                (!c.moderated && o->role == ROLE_VISITOR)) {
                o->role = role;
                muc_occ_changed(r, o);
            }
        }
    muc_room_cfg_clear(&old);
}

void muc_room_destroy_notify(muc_room_t *r, const char *alt, const char *reason)
{
    for (muc_occ_t *o = r->occs; o; o = o->next) {
        xml_node_t *p = muc_occ_presence(r, o, 1, 0);
        xml_node_t *x = xml_child(p, NS_MUC_USER, "x");
        xml_node_t *item = xml_child(x, NS_MUC_USER, "item");
        xml_attr_set(item, "affiliation", "none");
        xml_node_t *d = xml_add_child(x, NS_MUC_USER, "destroy");
        if (alt)
            xml_attr_set(d, "jid", alt);
        if (reason)
            muc_child_text(d, NS_MUC_USER, "reason", reason);
        xml_attr_set(xml_add_child(x, NS_MUC_USER, "status"), "code", "110");
        for (muc_sess_t *s = o->sess; s; s = s->next) {
            xml_attr_set(p, "to", s->jid);
            muc_send(p);
        }
        xml_free(p);
    }
    log_info("event=room-destroyed room=%s alternate=%s", r->jid, alt ? alt : "-");
    muc_room_destroy(r);
}

void muc_owner_iq(xml_node_t *iq, muc_room_t *r)
{
    const char *type = xml_attr_get(iq, "type");
    char *bare = jid_bare_of(xml_attr_get(iq, "from"));
    muc_aff_t aff = bare ? muc_aff_of(r, bare) : AFF_NONE;
    free(bare);
    if (aff != AFF_OWNER) {
        muc_reply_error(iq, "forbidden", "auth", "only owners configure a room");
        return;
    }
    xml_node_t *q = xml_child(iq, NS_MUC_OWNER, "query");
    if (!strcmp(type, "get")) {
        xml_node_t *res = muc_iq_result(iq);
        xml_node_t *rq = xml_add_child(res, NS_MUC_OWNER, "query");
        xml_append(rq, form(r));
        muc_send_free(res);
        return;
    }
    xml_node_t *destroy = q ? xml_child(q, NS_MUC_OWNER, "destroy") : NULL;
    xml_node_t *x = q ? xml_child(q, NS_XDATA, "x") : NULL;
    if (destroy) {
        xml_node_t *re = xml_child(destroy, NS_MUC_OWNER, "reason");
        char *reason = re ? xml_text(re) : NULL;
        muc_send_free(muc_iq_result(iq));
        muc_room_destroy_notify(r, xml_attr_get(destroy, "jid"), reason);
        free(reason);
    } else if (x && xml_attr_get(x, "type") && !strcmp(xml_attr_get(x, "type"), "cancel")) {
        muc_send_free(muc_iq_result(iq));
        if (muc_room_locked(r))             /* 10.1.2: a new room not configured goes */
            muc_room_destroy_notify(r, NULL, NULL);
    } else if (x) {
        submit(iq, r, x);
    } else {
        muc_reply_error(iq, "bad-request", "modify", NULL);
    }
}
