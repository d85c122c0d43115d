/* room: the rooms of this instance in a hash table by bare room JID, their
 * occupant lists and affiliation lists. A room owns its occupants, its
 * affiliations and its history ring; muc_room_destroy frees all of it and
 * deletes its records. */
#include "muc.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROOM_BUCKETS 4096
static muc_room_t *buckets[ROOM_BUCKETS];
static size_t nrooms;
static char *salt;

static unsigned hash(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % ROOM_BUCKETS;
}

muc_room_t *muc_room_get(const char *bare)
{
    for (muc_room_t *r = buckets[hash(bare)]; r; r = r->next)
        if (!strcmp(r->jid, bare))
            return r;
    return NULL;
}

muc_room_t *muc_room_new(const char *bare, const char *node)
{
    muc_room_t *r = xcalloc(1, sizeof *r);
    r->jid = xstrdup(bare);
    r->node = xstrdup(node);
    muc_room_cfg_defaults(&r->cfg);
    unsigned h = hash(bare);
    r->next = buckets[h];
    buckets[h] = r;
    nrooms++;
    return r;
}

/* Clients that create a room by joining it and never send the configuration
 * form (Dino 0.4 does not) would otherwise hold a room nobody else can enter
 * for as long as it lives; after lock-timeout it opens with its defaults. */
void muc_room_lock(muc_room_t *r)
{
    r->locked = 1;
    r->unlock_at = muc_config->lock_timeout > 0 ? daemon_now() + muc_config->lock_timeout : 0;
}

int muc_room_locked(muc_room_t *r)
{
    if (r->locked && r->unlock_at > 0 && daemon_now() >= r->unlock_at) {
        r->locked = 0;
        r->unlock_at = 0;
        muc_persist_room(r);
        log_info("event=room-unlocked room=%s reason=lock-timeout", r->jid);
    }
    return r->locked;
}

muc_room_t *muc_room_each(muc_room_t *prev)
{
    if (prev && prev->next)
        return prev->next;
    for (unsigned i = prev ? hash(prev->jid) + 1 : 0; i < ROOM_BUCKETS; i++)
        if (buckets[i])
            return buckets[i];
    return NULL;
}

size_t muc_room_count(void)
{
    return nrooms;
}

size_t muc_rooms_owned_by(const char *bare)
{
    size_t n = 0;
    for (unsigned i = 0; i < ROOM_BUCKETS; i++)
        for (muc_room_t *r = buckets[i]; r; r = r->next)
            if (muc_aff_of(r, bare) == AFF_OWNER)
                n++;
    return n;
}

void muc_sess_free(muc_sess_t *s)
{
    free(s->jid);
    if (s->presence)
        xml_free(s->presence);
    free(s);
}

void muc_occ_free(muc_occ_t *o)
{
    while (o->sess) {
        muc_sess_t *s = o->sess;
        o->sess = s->next;
        muc_sess_free(s);
    }
    free(o->nick);
    free(o->bare);
    free(o);
}

/* Appended: the first session stays first (the primary among equals). The
 * session owns presence. */
muc_sess_t *muc_sess_add(muc_occ_t *o, const char *full, xml_node_t *presence)
{
    muc_sess_t *s = xcalloc(1, sizeof *s);
    s->jid = xstrdup(full);
    s->presence = presence;
    muc_sess_t **tail = &o->sess;
    while (*tail)
        tail = &(*tail)->next;
    *tail = s;
    o->nsess++;
    return s;
}

muc_sess_t *muc_sess_find(muc_occ_t *o, const char *full)
{
    for (muc_sess_t *s = o->sess; s; s = s->next)
        if (!strcmp(s->jid, full))
            return s;
    return NULL;
}

static long priority_of(const muc_sess_t *s)
{
    xml_node_t *p = s->presence ? xml_child(s->presence, NULL, "priority") : NULL;
    if (!p)
        return 0;
    char *t = xml_text(p);
    long v = strtol(t, NULL, 10);
    free(t);
    return v;
}

muc_sess_t *muc_occ_primary(muc_occ_t *o)
{
    muc_sess_t *best = o->sess;
    for (muc_sess_t *s = o->sess; s; s = s->next)
        if (priority_of(s) > priority_of(best))
            best = s;
    return best;
}

void muc_occ_unlink(muc_room_t *r, muc_occ_t *o)
{
    for (muc_occ_t **p = &r->occs; *p; p = &(*p)->next)
        if (*p == o) {
            *p = o->next;
            r->nocc--;
            return;
        }
}

static void room_free(muc_room_t *r)
{
    while (r->occs) {
        muc_occ_t *o = r->occs;
        r->occs = o->next;
        muc_occ_free(o);
    }
    while (r->affs) {
        muc_aff_ent_t *a = r->affs;
        r->affs = a->next;
        free(a->bare);
        free(a->nick);
        free(a->reason);
        free(a);
    }
    muc_hist_clear(r);
    muc_room_cfg_clear(&r->cfg);
    free(r->subject);
    free(r->subject_from);
    free(r->jid);
    free(r->node);
    free(r);
}

void muc_room_destroy(muc_room_t *r)
{
    muc_persist_room_del(r);
    for (muc_room_t **p = &buckets[hash(r->jid)]; *p; p = &(*p)->next)
        if (*p == r) {
            *p = r->next;
            nrooms--;
            break;
        }
    room_free(r);
}

void muc_room_free_all(void)
{
    for (unsigned i = 0; i < ROOM_BUCKETS; i++)
        while (buckets[i]) {
            muc_room_t *r = buckets[i];
            buckets[i] = r->next;
            room_free(r);
        }
    nrooms = 0;
    free(salt);
    salt = NULL;
    muc_sha256_free();
}

muc_occ_t *muc_occ_by_nick(muc_room_t *r, const char *nick)
{
    for (muc_occ_t *o = r->occs; o; o = o->next)
        if (!strcmp(o->nick, nick))
            return o;
    return NULL;
}

muc_occ_t *muc_occ_by_jid(muc_room_t *r, const char *full)
{
    if (!full)
        return NULL;
    for (muc_occ_t *o = r->occs; o; o = o->next)
        if (muc_sess_find(o, full))
            return o;
    return NULL;
}

muc_aff_ent_t *muc_aff_ent(muc_room_t *r, const char *bare)
{
    for (muc_aff_ent_t *a = r->affs; a; a = a->next)
        if (!strcmp(a->bare, bare))
            return a;
    return NULL;
}

muc_aff_t muc_aff_of(muc_room_t *r, const char *bare)
{
    muc_aff_ent_t *a = muc_aff_ent(r, bare);
    return a ? a->aff : AFF_NONE;
}

/* Setting AFF_NONE removes the entry unless it holds a registered nick. */
void muc_aff_set(muc_room_t *r, const char *bare, muc_aff_t aff, const char *reason)
{
    muc_aff_ent_t *a = muc_aff_ent(r, bare);
    if (!a) {
        if (aff == AFF_NONE)
            return;
        a = xcalloc(1, sizeof *a);
        a->bare = xstrdup(bare);
        a->next = r->affs;
        r->affs = a;
    }
    a->aff = aff;
    free(a->reason);
    a->reason = reason && *reason ? xstrdup(reason) : NULL;
    if (aff == AFF_NONE && !a->nick) {
        muc_persist_aff(r, a, 1);
        for (muc_aff_ent_t **p = &r->affs; *p; p = &(*p)->next)
            if (*p == a) {
                *p = a->next;
                break;
            }
        free(a->bare);
        free(a->reason);
        free(a);
        return;
    }
    muc_persist_aff(r, a, 0);
}

const char *muc_registered_nick_owner(muc_room_t *r, const char *nick)
{
    for (muc_aff_ent_t *a = r->affs; a; a = a->next)
        if (a->nick && !strcmp(a->nick, nick))
            return a->bare;
    return NULL;
}

muc_role_t muc_default_role(muc_room_t *r, muc_aff_t a)
{
    if (a >= AFF_ADMIN)
        return ROLE_MODERATOR;
    if (a == AFF_OUTCAST)
        return ROLE_NONE;
    if (r->cfg.moderated && a < AFF_MEMBER)
        return ROLE_VISITOR;
    return ROLE_PARTICIPANT;
}

static unsigned salt_gen = 1;     /* changes with the salt: cached occupant ids go stale */

void muc_set_salt(const char *s)
{
    free(salt);
    salt = xstrdup(s);
    salt_gen++;
}

static void occupant_id(muc_room_t *r, const char *bare, char *buf)
{
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_printf(&sb, "%s%c%s%c%s", salt ? salt : "", 0, r->jid, 0, bare);
    muc_sha256_hex(sb.data, sb.len, buf, 16);
    strbuf_free(&sb);
}

/* Every message an occupant sends carries its occupant id: hashed once per
 * occupant (and salt), not once per message. */
const char *muc_occ_id(muc_room_t *r, muc_occ_t *o)
{
    if (o->oid_salt != salt_gen) {
        occupant_id(r, o->bare, o->oid);
        o->oid_salt = salt_gen;
    }
    return o->oid;
}
