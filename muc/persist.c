/* persist: the service's durable state through the asynchronous storage API
 * (SQLite answers at once, PostgreSQL later from the loop: both work).
 *
 * Records (docs/muc.md, "Storage"):
 *   owner = service domain, coll muc-rooms, key = room JID: <room/> config,
 *           subject and lock
 *   owner = service domain, coll muc-meta, key salt: the occupant-id salt
 *   owner = room JID, coll muc-affs, key = bare JID: <a/> affiliation, nick
 *   owner = room JID, coll muc-occs, key = real full JID: <o/> nick, role and
 *           last presence of one session of a current occupant (sessions
 *           of one bare JID with one nick are one occupant)
 *   owner = room JID, coll muc-archive, key = stanza id: the message (MAM)
 * Writes are fire-and-forget in submission order (one connection, in order);
 * a failed write is logged by storage and counted (muc_persist_failures).
 * On an asynchronous driver main.c has the writes of each stanza recorded
 * in a journal instead, which outq.c submits when the handling ended, the
 * last write with its own callback: the stanza's output waits until then
 * and, when a write failed, outq.c submits the journal again (puts and
 * deletes by key are idempotent, and every later stanza's journal is
 * submitted again after it, so the last write of a record still wins). The load at start reads
 * all of it back before the router link opens. */
#include "muc.h"
#include "comp_proto.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COLL_ROOMS "muc-rooms"
#define COLL_META "muc-meta"
#define COLL_AFFS "muc-affs"
#define COLL_OCCS "muc-occs"
#define COLL_ARCHIVE "muc-archive"

/* One write, as submitted: kept in a journal while one is open. */
typedef enum { OP_PUT, OP_DEL, OP_DEL_ALL } op_kind_t;
typedef struct op {
    op_kind_t kind;
    char *owner, *coll, *key;   /* key NULL for OP_DEL_ALL */
    char *val;
    size_t len;
    struct op *next;
} op_t;

struct muc_journal {
    op_t *head, **tail;
};

static uint64_t writes, failures;
static muc_journal_t *journal;     /* open: the stanza being handled */

/* Every write's completion: a failure is counted, so that whoever waits on
 * a later ping (outq.c) learns that something before it was not stored. */
static void written(storage_res_t *res, void *arg)
{
    (void)arg;
    if (res->status < 0)
        failures++;
}

static void ignore(storage_res_t *res, void *arg)
{
    (void)res;
    (void)arg;
}

uint64_t muc_persist_writes(void)
{
    return writes;
}

uint64_t muc_persist_failures(void)
{
    return failures;
}

static void op_submit(const op_t *o, storage_cb cb, void *arg)
{
    writes++;
    switch (o->kind) {
    case OP_PUT:
        storage_put_async(muc_storage, o->owner, o->coll, o->key, o->val, o->len, cb, arg);
        break;
    case OP_DEL:
        storage_del_async(muc_storage, o->owner, o->coll, o->key, cb, arg);
        break;
    case OP_DEL_ALL:
        storage_del_all_async(muc_storage, o->owner, o->coll, cb, arg);
        break;
    }
}

static void op_free(op_t *o)
{
    free(o->owner);
    free(o->coll);
    free(o->key);
    free(o->val);
    free(o);
}

/* One write; takes val (malloc'd, or NULL for a delete). Submitted at once,
 * or kept in the open journal to be submitted when the stanza's handling
 * ends (muc_persist_journal_submit). */
static void op_run(op_kind_t kind, const char *owner, const char *coll, const char *key, char *val,
                   size_t len)
{
    if (!journal) {
        op_t o = {kind, (char *)owner, (char *)coll, (char *)key, val, len, NULL};
        op_submit(&o, written, NULL);
        free(val);
        return;
    }
    op_t *o = xcalloc(1, sizeof *o);
    o->kind = kind;
    o->owner = xstrdup(owner);
    o->coll = xstrdup(coll);
    o->key = key ? xstrdup(key) : NULL;
    o->val = val;
    o->len = len;
    *journal->tail = o;
    journal->tail = &o->next;
}

void muc_persist_journal_begin(void)
{
    if (journal)
        muc_persist_journal_free(journal);
    journal = xcalloc(1, sizeof *journal);
    journal->tail = &journal->head;
}

muc_journal_t *muc_persist_journal_end(void)
{
    muc_journal_t *j = journal;
    journal = NULL;
    if (j && !j->head) {
        muc_persist_journal_free(j);
        j = NULL;
    }
    return j;
}

void muc_persist_journal_submit(const muc_journal_t *j, storage_cb done, void *arg)
{
    for (const op_t *o = j->head; o; o = o->next)
        if (o->next)
            op_submit(o, written, NULL);
        else
            op_submit(o, done, arg);
}

void muc_persist_journal_free(muc_journal_t *j)
{
    if (!j)
        return;
    while (j->head) {
        op_t *o = j->head;
        j->head = o->next;
        op_free(o);
    }
    free(j);
}

static void put_el(const char *owner, const char *coll, const char *key, const xml_node_t *el)
{
    size_t len;
    char *v = muc_serialize(el, &len);
    op_run(OP_PUT, owner, coll, key, v, len);
}

static void set_int(xml_node_t *el, const char *name, long v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", v);
    xml_attr_set(el, name, buf);
}

static long get_int(const xml_node_t *el, const char *name, long def)
{
    const char *v = xml_attr_get(el, name);
    return v ? strtol(v, NULL, 10) : def;
}

void muc_persist_room(muc_room_t *r)
{
    const muc_room_cfg_t *c = &r->cfg;
    xml_node_t *el = xml_elem_new("urn:xmpp:weft:muc:0", "room");
    set_int(el, "locked", r->locked);
    set_int(el, "persistent", c->persistent);
    set_int(el, "public", c->public_);
    set_int(el, "members-only", c->members_only);
    set_int(el, "moderated", c->moderated);
    set_int(el, "password-protected", c->password_protected);
    set_int(el, "whois-anyone", c->whois_anyone);
    set_int(el, "change-subject", c->change_subject);
    set_int(el, "allow-invites", c->allow_invites);
    set_int(el, "allow-pm", c->allow_pm);
    set_int(el, "logging", c->logging);
    set_int(el, "max-users", c->max_users);
    set_int(el, "history-len", c->history_len);
    if (c->name)
        muc_child_text(el, el->ns, "name", c->name);
    if (c->desc)
        muc_child_text(el, el->ns, "desc", c->desc);
    if (c->password)
        muc_child_text(el, el->ns, "password", c->password);
    if (r->subject) {
        xml_node_t *s = muc_child_text(el, el->ns, "subject", r->subject);
        if (r->subject_from)
            xml_attr_set(s, "from", r->subject_from);
    }
    put_el(muc_config->domain, COLL_ROOMS, r->jid, el);
    xml_free(el);
}

static char *child_text(const xml_node_t *el, const char *name)
{
    xml_node_t *c = xml_child(el, el->ns, name);
    return c ? xml_text(c) : NULL;
}

static void room_from_xml(muc_room_t *r, const xml_node_t *el)
{
    muc_room_cfg_t *c = &r->cfg;
    if (get_int(el, "locked", 0))      /* the lock's time counts again from the load */
        muc_room_lock(r);
    c->persistent = (int)get_int(el, "persistent", 0);
    c->public_ = (int)get_int(el, "public", 1);
    c->members_only = (int)get_int(el, "members-only", 0);
    c->moderated = (int)get_int(el, "moderated", 0);
    c->password_protected = (int)get_int(el, "password-protected", 0);
    c->whois_anyone = (int)get_int(el, "whois-anyone", 0);
    c->change_subject = (int)get_int(el, "change-subject", 0);
    c->allow_invites = (int)get_int(el, "allow-invites", 0);
    c->allow_pm = (int)get_int(el, "allow-pm", 3) & 3;
    c->logging = (int)get_int(el, "logging", 1);
    c->max_users = get_int(el, "max-users", muc_config->occupants_max);
    c->history_len = get_int(el, "history-len", muc_config->history_max);
    if (c->history_len > muc_config->history_max)
        c->history_len = muc_config->history_max;
    c->name = child_text(el, "name");
    c->desc = child_text(el, "desc");
    c->password = child_text(el, "password");
    r->subject = child_text(el, "subject");
    xml_node_t *s = xml_child(el, el->ns, "subject");
    if (s && xml_attr_get(s, "from"))
        r->subject_from = xstrdup(xml_attr_get(s, "from"));
}

void muc_persist_room_del(muc_room_t *r)
{
    op_run(OP_DEL, muc_config->domain, COLL_ROOMS, r->jid, NULL, 0);
    op_run(OP_DEL_ALL, r->jid, COLL_AFFS, NULL, NULL, 0);
    op_run(OP_DEL_ALL, r->jid, COLL_OCCS, NULL, NULL, 0);
    op_run(OP_DEL_ALL, r->jid, COLL_ARCHIVE, NULL, NULL, 0);
}

void muc_persist_aff(muc_room_t *r, muc_aff_ent_t *e, int del)
{
    if (del) {
        op_run(OP_DEL, r->jid, COLL_AFFS, e->bare, NULL, 0);
        return;
    }
    xml_node_t *el = xml_elem_new("urn:xmpp:weft:muc:0", "a");
    xml_attr_set(el, "aff", muc_aff_name(e->aff));
    if (e->nick)
        xml_attr_set(el, "nick", e->nick);
    if (e->reason)
        xml_attr_set(el, "reason", e->reason);
    put_el(r->jid, COLL_AFFS, e->bare, el);
    xml_free(el);
}

/* One record per session, keyed by its full JID, each with the occupant's
 * nick and role: the load puts sessions of one bare JID and nick back
 * together, and a session coming or going is one write. */
void muc_persist_sess(muc_room_t *r, muc_occ_t *o, muc_sess_t *s, int del)
{
    if (del) {
        op_run(OP_DEL, r->jid, COLL_OCCS, s->jid, NULL, 0);
        return;
    }
    xml_node_t *el = xml_elem_new("urn:xmpp:weft:muc:0", "o");
    xml_attr_set(el, "nick", o->nick);
    xml_attr_set(el, "role", muc_role_name(o->role));
    if (s->presence)
        xml_append(el, xml_copy(s->presence));
    put_el(r->jid, COLL_OCCS, s->jid, el);
    xml_free(el);
}

void muc_persist_occ(muc_room_t *r, muc_occ_t *o, int del)
{
    for (muc_sess_t *s = o->sess; s; s = s->next)
        muc_persist_sess(r, o, s, del);
}

void muc_persist_msg(muc_room_t *r, const char *id, const xml_node_t *msg)
{
    put_el(r->jid, COLL_ARCHIVE, id, msg);
}

/* --- load at start ---------------------------------------------------------- */

static int pending;
static size_t restored_occs, restored_sess;   /* read back at this start */
static void (*load_done)(void);

static void load_step_done(void)
{
    if (--pending == 0 && load_done) {
        log_notice("event=loaded rooms=%zu occupants=%zu sessions=%zu", muc_room_count(),
                   restored_occs, restored_sess);
        muc_metrics_restored(restored_occs, restored_sess);
        void (*cb)(void) = load_done;
        load_done = NULL;
        cb();
    }
}

/* Room JIDs are copied into each callback's argument: the room object may
 * not exist yet when a later callback runs (it always does here: rooms are
 * made before their children are asked for). */
static void affs_loaded(storage_res_t *res, void *arg)
{
    muc_room_t *r = muc_room_get(arg);
    for (size_t i = 0; r && res->status == 0 && i < res->nrecs; i++) {
        xml_node_t *el = muc_parse(res->recs[i].val, res->recs[i].len);
        muc_aff_t aff;
        if (el && muc_aff_parse(xml_attr_get(el, "aff"), &aff) == 0) {
            muc_aff_ent_t *a = xcalloc(1, sizeof *a);
            a->bare = xstrdup(res->recs[i].key);
            a->aff = aff;
            a->nick = xml_attr_get(el, "nick") ? xstrdup(xml_attr_get(el, "nick")) : NULL;
            a->reason = xml_attr_get(el, "reason") ? xstrdup(xml_attr_get(el, "reason")) : NULL;
            a->next = r->affs;
            r->affs = a;
        }
        xml_free(el);
    }
    free(arg);
    load_step_done();
}

/* Sessions of one bare JID under one nick become one occupant again. */
static void occs_loaded(storage_res_t *res, void *arg)
{
    muc_room_t *r = muc_room_get(arg);
    for (size_t i = 0; r && res->status == 0 && i < res->nrecs; i++) {
        xml_node_t *el = muc_parse(res->recs[i].val, res->recs[i].len);
        muc_role_t role;
        char *bare = jid_bare_of(res->recs[i].key);
        const char *nick = el ? xml_attr_get(el, "nick") : NULL;
        if (el && bare && nick && muc_role_parse(xml_attr_get(el, "role"), &role) == 0) {
            muc_occ_t *o = muc_occ_by_nick(r, nick);
            if (o && strcmp(o->bare, bare)) {
                log_warn("event=load result=skipped what=occupant room=%s nick=%s reason=nick-held",
                         r->jid, nick);
                free(bare);
                xml_free(el);
                continue;
            }
            if (!o) {
                o = xcalloc(1, sizeof *o);
                o->nick = xstrdup(nick);
                o->bare = bare;
                bare = NULL;
                o->role = role;
                o->rate_t = daemon_now();
                o->rate_tokens = 2.0 * (double)muc_config->msg_rate;
                muc_occ_t **tail = &r->occs;
                while (*tail)
                    tail = &(*tail)->next;
                *tail = o;
                r->nocc++;
                restored_occs++;
            }
            xml_node_t *p = xml_child(el, NULL, "presence");
            if (p)
                xml_detach(p);
            muc_sess_add(o, res->recs[i].key, p);
            restored_sess++;
        }
        free(bare);
        xml_free(el);
    }
    free(arg);
    load_step_done();
}

static void archive_loaded(storage_res_t *res, void *arg)
{
    muc_room_t *r = muc_room_get(arg);
    /* Newest first: added oldest first. */
    for (size_t i = res->nrecs; r && res->status == 0 && i > 0; i--) {
        storage_rec_t *rec = &res->recs[i - 1];
        xml_node_t *m = muc_parse(rec->val, rec->len);
        if (m)
            muc_hist_add(r, rec->key, rec->stamp, m);
    }
    free(arg);
    load_step_done();
}

static void rooms_loaded(storage_res_t *res, void *arg)
{
    (void)arg;
    for (size_t i = 0; res->status == 0 && i < res->nrecs; i++) {
        const char *bare = res->recs[i].key;
        xml_node_t *el = muc_parse(res->recs[i].val, res->recs[i].len);
        const char *at = strchr(bare, '@');
        if (!el || !at || muc_room_get(bare)) {
            xml_free(el);
            continue;
        }
        char *node = xstrndup(bare, (size_t)(at - bare));
        muc_room_t *r = muc_room_new(bare, node);
        free(node);
        room_from_xml(r, el);
        xml_free(el);
        pending += 3;
        storage_list_async(muc_storage, bare, COLL_AFFS, affs_loaded, xstrdup(bare));
        storage_list_async(muc_storage, bare, COLL_OCCS, occs_loaded, xstrdup(bare));
        storage_range_t q = {.by_stamp = 1, .reverse = 1,   /* one index scan (see history.c) */
                             .limit = (size_t)(r->cfg.history_len > 0 ? r->cfg.history_len : 1)};
        storage_range_async(muc_storage, bare, COLL_ARCHIVE, &q, archive_loaded, xstrdup(bare));
    }
    if (res->status < 0)
        log_error("event=load result=failed what=rooms");
    load_step_done();
}

static void salt_loaded(storage_res_t *res, void *arg)
{
    (void)arg;
    if (res->status == 0 && res->val) {
        muc_set_salt(res->val);
    } else {
        char hex[33];
        comp_proto_random_hex(hex, 16);
        hex[32] = 0;
        muc_set_salt(hex);
        storage_put_async(muc_storage, muc_config->domain, COLL_META, "salt", hex, 32, ignore, NULL);
    }
    load_step_done();
}

void muc_persist_load(void (*done)(void))
{
    load_done = done;
    pending = 3;
    storage_get_async(muc_storage, muc_config->domain, COLL_META, "salt", salt_loaded, NULL);
    storage_list_async(muc_storage, muc_config->domain, COLL_ROOMS, rooms_loaded, NULL);
    load_step_done();
}
