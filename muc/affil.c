/* affil: the muc#admin IQ (XEP-0045 sections 8 and 9): kick and voice by
 * nick (roles), ban, membership, admin and owner lists by bare JID
 * (affiliations), and the lists themselves. Who may do what follows the
 * XEP's tables: moderators change roles below their own affiliation, admins
 * edit members and outcasts, owners everything; the last owner stays. */
#include "muc.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

static void list_get(xml_node_t *iq, muc_room_t *r, muc_occ_t *asker, muc_aff_t asker_aff,
                     const xml_node_t *item)
{
    muc_role_t role;
    muc_aff_t aff;
    xml_node_t *res = muc_iq_result(iq);
    xml_node_t *q = xml_add_child(res, NS_MUC_ADMIN, "query");
    if (muc_role_parse(xml_attr_get(item, "role"), &role) == 0) {
        if (!asker || asker->role != ROLE_MODERATOR) {
            xml_free(res);
            muc_reply_error(iq, "forbidden", "auth", NULL);
            return;
        }
        for (muc_occ_t *o = r->occs; o; o = o->next) {
            if (o->role != role)
                continue;
            xml_node_t *i = xml_add_child(q, NS_MUC_ADMIN, "item");
            xml_attr_set(i, "affiliation", muc_aff_name(muc_aff_of(r, o->bare)));
            xml_attr_set(i, "jid", muc_occ_primary(o)->jid);
            xml_attr_set(i, "nick", o->nick);
            xml_attr_set(i, "role", muc_role_name(o->role));
        }
    } else if (muc_aff_parse(xml_attr_get(item, "affiliation"), &aff) == 0 && aff != AFF_NONE) {
        if (asker_aff < AFF_ADMIN) {
            xml_free(res);
            muc_reply_error(iq, "forbidden", "auth", NULL);
            return;
        }
        for (muc_aff_ent_t *a = r->affs; a; a = a->next) {
            if (a->aff != aff)
                continue;
            xml_node_t *i = xml_add_child(q, NS_MUC_ADMIN, "item");
            xml_attr_set(i, "affiliation", muc_aff_name(a->aff));
            xml_attr_set(i, "jid", a->bare);
            if (a->nick)
                xml_attr_set(i, "nick", a->nick);
            if (a->reason)
                muc_child_text(i, NS_MUC_ADMIN, "reason", a->reason);
        }
    } else {
        xml_free(res);
        muc_reply_error(iq, "bad-request", "modify", NULL);
        return;
    }
    muc_send_free(res);
}

static const char *set_role(muc_room_t *r, muc_occ_t *actor, muc_aff_t actor_aff,
                            const xml_node_t *item, muc_role_t role, const char **type)
{
    const char *nick = xml_attr_get(item, "nick");
    muc_occ_t *t = nick ? muc_occ_by_nick(r, nick) : NULL;
    *type = "cancel";
    if (!actor || actor->role != ROLE_MODERATOR)
        return *type = "auth", "forbidden";
    if (!t)
        return nick ? "item-not-found" : (*type = "modify", "bad-request");
    muc_aff_t taff = muc_aff_of(r, t->bare);
    if (role == ROLE_MODERATOR || (t->role == ROLE_MODERATOR && actor_aff < AFF_ADMIN)) {
        if (actor_aff < AFF_ADMIN)
            return *type = "auth", "forbidden";
    }
    if (taff >= AFF_ADMIN && role != ROLE_MODERATOR && (taff >= actor_aff || role == ROLE_NONE))
        return "not-allowed";
    xml_node_t *reason_el = xml_child(item, NS_MUC_ADMIN, "reason");
    char *reason = reason_el ? xml_text(reason_el) : NULL;
    if (role == ROLE_NONE) {
        muc_occ_remove(r, t, 307, actor->nick, reason);
    } else {
        t->role = role;
        muc_occ_changed(r, t);
    }
    free(reason);
    return NULL;
}

static int owners(muc_room_t *r)
{
    int n = 0;
    for (muc_aff_ent_t *a = r->affs; a; a = a->next)
        n += a->aff == AFF_OWNER;
    return n;
}

static const char *set_aff(muc_room_t *r, muc_occ_t *actor, muc_aff_t actor_aff,
                           const xml_node_t *item, muc_aff_t aff, const char **type)
{
    const char *jid = xml_attr_get(item, "jid"), *nick = xml_attr_get(item, "nick");
    *type = "cancel";
    char *bare = NULL;
    if (jid)
        bare = jid_bare_of(jid);
    else if (nick && muc_occ_by_nick(r, nick))
        bare = xstrdup(muc_occ_by_nick(r, nick)->bare);
    if (!bare)
        return *type = "modify", "bad-request";
    muc_aff_t old = muc_aff_of(r, bare);
    const char *err = NULL;
    if (actor_aff < AFF_ADMIN)
        err = "forbidden", *type = "auth";
    else if ((aff >= AFF_ADMIN || old >= AFF_ADMIN) && actor_aff < AFF_OWNER)
        err = old >= AFF_ADMIN && aff < AFF_ADMIN ? "not-allowed" : "forbidden",
        *type = old >= AFF_ADMIN && aff < AFF_ADMIN ? "cancel" : "auth";
    else if (old == AFF_OWNER && aff != AFF_OWNER && owners(r) <= 1)
        err = "conflict";                          /* 10.9: the last owner stays */
    if (err) {
        free(bare);
        return err;
    }
    xml_node_t *reason_el = xml_child(item, NS_MUC_ADMIN, "reason");
    char *reason = reason_el ? xml_text(reason_el) : NULL;
    muc_aff_set(r, bare, aff, reason);
    log_info("event=affiliation room=%s jid=%s affiliation=%s by=%s", r->jid, bare,
             muc_aff_name(aff), actor ? actor->bare : "-");
    /* Occupants of that bare JID: removed, or shown with their new place
     * (a role a moderator granted stays unless the affiliation was admin). */
    char *room = xstrdup(r->jid);
    muc_occ_t *o = r->occs;
    while (o) {
        muc_occ_t *next = o->next;
        if (!strcmp(o->bare, bare)) {
            if (aff == AFF_OUTCAST) {
                muc_occ_remove(r, o, 301, actor ? actor->nick : NULL, reason);
            } else if (r->cfg.members_only && aff < AFF_MEMBER) {
                muc_occ_remove(r, o, 321, actor ? actor->nick : NULL, reason);
            } else {
                muc_role_t role = muc_default_role(r, aff);
                if (aff < AFF_ADMIN && old < AFF_ADMIN && o->role > role)
                    role = o->role;
                o->role = role;
                muc_occ_changed(r, o);
            }
            if (!muc_room_get(room))               /* the last one left a temporary room */
                break;
        }
        o = next;
    }
    free(room);
    free(reason);
    free(bare);
    return NULL;
}

void muc_admin_iq(xml_node_t *iq, muc_room_t *r)
{
    const char *type = xml_attr_get(iq, "type");
    xml_node_t *q = xml_child(iq, NS_MUC_ADMIN, "query");
    const char *from = xml_attr_get(iq, "from");
    char *bare = jid_bare_of(from);
    if (!bare) {
        muc_reply_error(iq, "jid-malformed", "modify", NULL);
        return;
    }
    muc_occ_t *actor = muc_occ_by_jid(r, from);
    muc_aff_t actor_aff = muc_aff_of(r, bare);
    free(bare);
    xml_node_t *item = q ? xml_child(q, NS_MUC_ADMIN, "item") : NULL;
    if (!item) {
        muc_reply_error(iq, "bad-request", "modify", NULL);
        return;
    }
    if (!strcmp(type, "get")) {
        list_get(iq, r, actor, actor_aff, item);
        return;
    }
    char *room = xstrdup(r->jid);
    for (; item; item = xml_next(item, NS_MUC_ADMIN, "item")) {
        muc_role_t role;
        muc_aff_t aff;
        const char *err, *etype = "cancel";
        if (!(r = muc_room_get(room))) {
            err = "item-not-found";
        } else if (xml_attr_get(item, "affiliation") &&
                   muc_aff_parse(xml_attr_get(item, "affiliation"), &aff) == 0) {
            err = set_aff(r, actor, actor_aff, item, aff, &etype);
        } else if (xml_attr_get(item, "role") &&
                   muc_role_parse(xml_attr_get(item, "role"), &role) == 0) {
            err = set_role(r, actor, actor_aff, item, role, &etype);
        } else {
            err = "bad-request", etype = "modify";
        }
        if (err) {
            muc_reply_error(iq, err, etype, NULL);
            free(room);
            return;
        }
        if (r && muc_room_get(room))
            actor = muc_occ_by_jid(r, from);       /* a self-kick freed it */
    }
    free(room);
    muc_send_free(muc_iq_result(iq));
}
