/* storage_sqlite_log: the log collections of the SQLite driver
 * (storage_coll_is_log: message archives).
 *
 * Owns the statements on three tables (schema step v4 in storage_sqlite.c):
 *   log_streams (id, owner, coll)  one row per owner and log collection
 *   log_tags    (id, tag)          one row per tag ever written
 *   logs (seq, stream, stamp, tag, key, value)  the records
 * with the indexes logs_key (key, stream) — key first: mod_mam's ids start
 * with the time, so new keys land at the end of the index —, logs_stamp
 * (stream, stamp[, seq]) and logs_tag (stream, tag, stamp[, seq]) where there
 * is a tag. A record costs 4 B-trees keyed by integers and its key where the
 * generic `records` table costs 5 keyed by long text (docs/storage.md, "Log
 * collections"). Answers are those of `records`: same seq, stamp, key, tag,
 * value, same statuses.
 *
 * Owns the caches of ids: owner + coll → stream id, tag → tag id, each a
 * direct-mapped table of LOG_SLOTS entries (a colliding name replaces the
 * slot's: memory stays bounded however many users). Invariants that make a
 * cached id right:
 *  - a tag row is never deleted, and no id is ever given to two names
 *    (log_streams is AUTOINCREMENT, so even an id freed by a user delete is
 *    not given again);
 *  - an id interned inside a transaction exists only if that transaction
 *    commits: such ids are "tentative" and a rollback (storage_sqlite.c
 *    calls sql_log_settled) forgets the caches;
 *  - a stream row goes only with its owner (user delete): this connection's
 *    deletes forget the stream cache; another connection's (weftctl, a second
 *    process on the file) change PRAGMA data_version, read at the first log
 *    request of each transaction, which forgets both caches.
 * A stream row may stay after its records are gone (del_all): harmless. */
#include "storage_sqlite.h"
#include "log.h"
#include "strbuf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_SLOTS 4096   /* per cache; a power of two */

enum {
    L_STREAM_GET, L_STREAM_ADD, L_TAG_GET, L_TAG_ADD, L_DATA_VERSION,
    L_GET, L_PUT, L_DEL, L_DEL_ALL, L_APPEND, L_APPEND_KEY, L_LIST, L_COUNT, L_KEY_POS,
    L_RANGE_SEQ, L_RANGE_SEQ_REV, L_RANGE_STAMP, L_RANGE_STAMP_REV,
    L_TAG_SEQ, L_TAG_SEQ_REV, L_TAG_STAMP, L_TAG_STAMP_REV,
    L_IMPORT, L_USER_DEL, L_USER_DEL_STREAMS,
    L_COUNT_ALL
};

/* Ranges bind as storage_sqlite.c's: ?1 the stream, ?3/?4 the after point
 * (seq, stamp), ?5/?6 the before point, ?7/?8 the stamp bounds, ?9 the limit,
 * ?10 the tag id. By stamp a range is one scan of logs_stamp or logs_tag in
 * (stamp, seq) order. By seq there is no (stream, seq) index: it would be a
 * fifth B-tree per record (+3 µs of the 7.5 an archived record costs, with
 * weft-bench-archive) for the rarer order. Instead the stream's (or the
 * tag's) index entries within the stamp bounds are read, filtered by seq and
 * sorted, in a subquery that touches the index only (seq is its rowid); only
 * the page's rows are then read from the table. "+" keeps SQLite from walking
 * the whole table in seq order instead. Cost: that owner's (or tag's)
 * entries, ~0.2 µs each (a page of 20 by seq in a 100,000-message room: 19
 * ms, against 81 ms sorting whole rows and 0.05 ms by stamp). weft-muc's
 * history and queries, and mod_mam's retention by count, range by seq. The
 * tag's text comes from log_tags.
 *
 * The index is named (INDEXED BY), not left to the planner: statements are
 * prepared once, at open, and in a new file (no ANALYZE statistics yet)
 * SQLite chose logs_stamp for a tag range and read every record of the
 * stream (weft-bench-mam: 41 ms for the last 50 with one contact of 200,000
 * records, against 0.3 ms through logs_tag). */
#define L_COLS(ix) "SELECT l.seq, l.stamp, l.key, l.value, t.tag FROM logs l" ix \
    " LEFT JOIN log_tags t ON t.id = l.tag "
#define L_BY_STREAM " INDEXED BY logs_stamp"
#define L_BY_TAG " INDEXED BY logs_tag"
#define L_RANGE_HEAD L_COLS(L_BY_STREAM) \
    "WHERE l.stream = ?1 AND l.stamp >= ?7 AND l.stamp <= ?8 AND "
#define L_TAG_HEAD L_COLS(L_BY_TAG) "WHERE l.stream = ?1 AND l.tag = ?10" \
    " AND l.stamp >= ?7 AND l.stamp <= ?8 AND "
#define L_SEQ_SUB(ix, tag, dir) L_COLS("") "WHERE l.seq IN (SELECT seq FROM logs" ix \
    " WHERE stream = ?1" tag " AND stamp >= ?7 AND stamp <= ?8 AND +seq > ?3 AND +seq < ?5" \
    " ORDER BY seq " dir " LIMIT ?9) ORDER BY l.seq " dir
#define L_BY_STAMP "(l.stamp, l.seq) > (?4, ?3) AND (l.stamp, l.seq) < (?6, ?5) ORDER BY l.stamp "

static const char *const log_sql[L_COUNT_ALL] = {
    [L_STREAM_GET] = "SELECT id FROM log_streams WHERE owner = ?1 AND coll = ?2",
    [L_STREAM_ADD] = "INSERT INTO log_streams (owner, coll) VALUES (?1, ?2)"
                     " ON CONFLICT (owner, coll) DO NOTHING",
    [L_TAG_GET] = "SELECT id FROM log_tags WHERE tag = ?1",
    [L_TAG_ADD] = "INSERT INTO log_tags (tag) VALUES (?1) ON CONFLICT (tag) DO NOTHING",
    [L_DATA_VERSION] = "PRAGMA data_version",
    [L_GET] = "SELECT value FROM logs WHERE key = ?2 AND stream = ?1",
    [L_PUT] = "INSERT INTO logs (stream, stamp, tag, key, value) VALUES (?1, ?2, ?3, ?4, ?5)"
              " ON CONFLICT (key, stream) DO UPDATE SET stamp = excluded.stamp,"
              " tag = excluded.tag, value = excluded.value",
    [L_DEL] = "DELETE FROM logs WHERE key = ?2 AND stream = ?1",
    [L_DEL_ALL] = "DELETE FROM logs WHERE stream = ?1",
    [L_APPEND] = "INSERT INTO logs (stream, stamp, key, value) VALUES (?1, ?2, NULL, ?3)",
    [L_APPEND_KEY] = "UPDATE logs SET key = CAST(seq AS TEXT) WHERE seq = ?1",
    [L_LIST] = L_COLS(L_BY_STREAM) "WHERE l.stream = ?1 ORDER BY +l.seq",
    [L_COUNT] = "SELECT count(*) FROM logs" L_BY_STREAM " WHERE stream = ?1",
    [L_KEY_POS] = "SELECT seq, stamp, tag FROM logs WHERE key = ?2 AND stream = ?1",
    [L_RANGE_SEQ] = L_SEQ_SUB(L_BY_STREAM, "", "ASC"),
    [L_RANGE_SEQ_REV] = L_SEQ_SUB(L_BY_STREAM, "", "DESC"),
    [L_RANGE_STAMP] = L_RANGE_HEAD L_BY_STAMP "ASC, l.seq ASC LIMIT ?9",
    [L_RANGE_STAMP_REV] = L_RANGE_HEAD L_BY_STAMP "DESC, l.seq DESC LIMIT ?9",
    [L_TAG_SEQ] = L_SEQ_SUB(L_BY_TAG, " AND tag = ?10", "ASC"),
    [L_TAG_SEQ_REV] = L_SEQ_SUB(L_BY_TAG, " AND tag = ?10", "DESC"),
    [L_TAG_STAMP] = L_TAG_HEAD L_BY_STAMP "ASC, l.seq ASC LIMIT ?9",
    [L_TAG_STAMP_REV] = L_TAG_HEAD L_BY_STAMP "DESC, l.seq DESC LIMIT ?9",
    [L_IMPORT] = "INSERT INTO logs (seq, stream, stamp, tag, key, value)"
                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [L_USER_DEL] = "DELETE FROM logs WHERE stream IN (SELECT id FROM log_streams WHERE owner = ?1)",
    [L_USER_DEL_STREAMS] = "DELETE FROM log_streams WHERE owner = ?1",
};

/* One cached id. name: for a stream "owner\0coll", for a tag the tag; len
 * its bytes; NULL: an empty slot. */
typedef struct log_slot {
    char *name;
    size_t len;
    int64_t id;
} log_slot_t;

typedef struct log_cache {
    log_slot_t *slots;      /* LOG_SLOTS, allocated at the first use */
} log_cache_t;

struct sql_log {
    sqlite3_stmt *q[L_COUNT_ALL];
    log_cache_t streams, tags;
    int tentative;          /* ids interned in a transaction not yet settled */
    int version_read;       /* data_version read in the current transaction */
    int64_t data_version;
};

/* ------------------------------------------------------------ id caches */

static void cache_forget(log_cache_t *c)
{
    if (!c->slots)
        return;
    for (size_t i = 0; i < LOG_SLOTS; i++)
        free(c->slots[i].name);
    memset(c->slots, 0, LOG_SLOTS * sizeof c->slots[0]);
}

static void cache_free(log_cache_t *c)
{
    cache_forget(c);
    free(c->slots);
    c->slots = NULL;
}

/* The slot where name (len bytes) belongs (FNV-1a). */
static log_slot_t *cache_slot(log_cache_t *c, const char *name, size_t len)
{
    if (!c->slots)
        c->slots = xcalloc(LOG_SLOTS, sizeof c->slots[0]);
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)name[i]) * 16777619u;
    return &c->slots[h & (LOG_SLOTS - 1)];
}

static void cache_set(log_slot_t *slot, const char *name, size_t len, int64_t id)
{
    free(slot->name);
    slot->name = storage_memdup(name, len);
    slot->len = len;
    slot->id = id;
}

static void log_forget(sql_log_t *L)
{
    cache_forget(&L->streams);
    cache_forget(&L->tags);
    L->tentative = 0;
}

void sql_log_settled(sql_t *d, int committed)
{
    sql_log_t *L = d->log;
    if (!L)
        return;
    if (!committed && L->tentative)
        log_forget(L);
    else if (sqlite3_get_autocommit(d->db))
        L->tentative = 0;
    L->version_read = 0;
}

/* Before the first log request of a transaction (and of each request outside
 * one): forgets the caches when another connection has committed since they
 * were filled (it may have deleted a stream), or when a transaction that
 * interned ids ended without sql_log_settled (SQLite rolls back on its own
 * after some errors). */
static int log_fresh(sql_t *d, const char *op)
{
    sql_log_t *L = d->log;
    int autocommit = sqlite3_get_autocommit(d->db);
    if (L->tentative && autocommit)
        log_forget(L);
    if (L->version_read && !autocommit)
        return 0;
    sqlite3_stmt *s = L->q[L_DATA_VERSION];
    if (sql_step(d, s, op) != SQLITE_ROW) {
        sql_reset(s);
        return -1;
    }
    int64_t v = sqlite3_column_int64(s, 0);
    sql_reset(s);
    if (v != L->data_version)
        log_forget(L);
    L->data_version = v;
    L->version_read = !autocommit;
    return 0;
}

/* The id of a stream (owner, coll) or a tag: from the cache, else from the
 * table (get: bound with the name), else, with add, inserted. 0 with *id set;
 * 1 when there is none and add is 0; -1 on error. */
static int log_intern(sql_t *d, log_cache_t *c, const char *name, size_t len, const char *a,
                      const char *b, int qget, int qadd, int add, int64_t *id, const char *op)
{
    sql_log_t *L = d->log;
    log_slot_t *slot = cache_slot(c, name, len);
    if (slot->name && slot->len == len && !memcmp(slot->name, name, len)) {
        *id = slot->id;
        return 0;
    }
    for (int pass = 0; pass < 2; pass++) {
        sqlite3_stmt *s = L->q[qget];
        if (sql_bind_text(d, s, 1, a, op) < 0 || (b && sql_bind_text(d, s, 2, b, op) < 0))
            return -1;
        int rc = sql_step(d, s, op);
        if (rc < 0)
            return -1;
        if (rc == SQLITE_ROW) {
            *id = sqlite3_column_int64(s, 0);
            sql_reset(s);
            cache_set(slot, name, len, *id);
            return 0;
        }
        sql_reset(s);
        if (!add || pass)
            break;
        /* Inserted (or found inserted by another connection), then read back. */
        s = L->q[qadd];
        if (sql_bind_text(d, s, 1, a, op) < 0 || (b && sql_bind_text(d, s, 2, b, op) < 0))
            return -1;
        if (sql_step(d, s, op) < 0)
            return -1;
        sql_reset(s);
        if (!sqlite3_get_autocommit(d->db))
            L->tentative = 1;
    }
    if (add)
        log_error("storage: driver=sqlite op=%s error=\"an interned id cannot be read back\"", op);
    return add ? -1 : 1;
}

static int log_stream(sql_t *d, const char *owner, const char *coll, int add, int64_t *id,
                      const char *op)
{
    size_t lo = strlen(owner), lc = strlen(coll);
    char stack[256];
    char *name = lo + lc + 1 <= sizeof stack ? stack : xmalloc(lo + lc + 1);
    memcpy(name, owner, lo + 1);
    memcpy(name + lo + 1, coll, lc);
    int rc = log_intern(d, &d->log->streams, name, lo + 1 + lc, owner, coll, L_STREAM_GET,
                        L_STREAM_ADD, add, id, op);
    if (name != stack)
        free(name);
    return rc;
}

static int log_tag(sql_t *d, const char *tag, int add, int64_t *id, const char *op)
{
    return log_intern(d, &d->log->tags, tag, strlen(tag), tag, NULL, L_TAG_GET, L_TAG_ADD, add,
                      id, op);
}

/* ------------------------------------------------------------ requests */

static int log_exec(sql_t *d, sqlite3_stmt *s, const char *op)
{
    if (sql_step(d, s, op) < 0)
        return -1;
    sql_reset(s);
    return 0;
}

/* The request's stream without creating it: 0, or 1 when there is none. */
static int log_find(sql_t *d, const storage_req_t *r, int64_t *stream)
{
    return log_stream(d, r->owner, r->coll, 0, stream, r->opname);
}

static int log_get(sql_t *d, storage_req_t *r)
{
    int64_t stream;
    int rc = log_find(d, r, &stream);
    if (rc != 0)
        return rc;
    sqlite3_stmt *s = d->log->q[L_GET];
    if (sql_bind_int(d, s, 1, stream, r->opname) < 0 ||
        sql_bind_text(d, s, 2, r->key, r->opname) < 0 || (rc = sql_step(d, s, r->opname)) < 0)
        return -1;
    if (rc == SQLITE_ROW)
        r->res.val = sql_column_dup(s, 0, &r->res.len);
    sql_reset(s);
    return rc == SQLITE_ROW ? 0 : 1;
}

/* put (an upsert by key: a replaced record keeps its seq) and import (seq
 * given) both intern the stream and the tag. */
static int log_write(sql_t *d, storage_req_t *r, int import)
{
    const char *op = r->opname;
    int64_t stream, tag = 0;
    if (log_stream(d, r->owner, r->coll, 1, &stream, op) < 0 ||
        (r->tag && log_tag(d, r->tag, 1, &tag, op) < 0))
        return -1;
    sqlite3_stmt *s = d->log->q[import ? L_IMPORT : L_PUT];
    int i = 1;
    if (import && sql_bind_int(d, s, i++, r->seq, op) < 0)
        return -1;
    if (sql_bind_int(d, s, i, stream, op) < 0 || sql_bind_int(d, s, i + 1, r->stamp, op) < 0 ||
        (r->tag ? sql_bind_int(d, s, i + 2, tag, op) : sql_bind_text(d, s, i + 2, NULL, op)) < 0 ||
        sql_bind_text(d, s, i + 3, r->key, op) < 0 ||
        sql_bind_blob(d, s, i + 4, r->val, r->len, op) < 0)
        return -1;
    return log_exec(d, s, op);
}

static int log_del(sql_t *d, storage_req_t *r, int all)
{
    int64_t stream;
    int rc = log_find(d, r, &stream);
    if (rc != 0)
        return rc < 0 ? -1 : all ? 0 : 1;
    sqlite3_stmt *s = d->log->q[all ? L_DEL_ALL : L_DEL];
    if (sql_bind_int(d, s, 1, stream, r->opname) < 0 ||
        (!all && sql_bind_text(d, s, 2, r->key, r->opname) < 0) || log_exec(d, s, r->opname) < 0)
        return -1;
    return !all && sqlite3_changes(d->db) == 0 ? 1 : 0;
}

/* As records' append: inserted with no key, then given its seq as key, in
 * one savepoint. */
static int log_append(sql_t *d, storage_req_t *r)
{
    const char *op = r->opname;
    int64_t stream;
    if (log_stream(d, r->owner, r->coll, 1, &stream, op) < 0 || sql_op_begin(d, op) < 0)
        return -1;
    sqlite3_stmt *s = d->log->q[L_APPEND];
    if (sql_bind_int(d, s, 1, stream, op) < 0 || sql_bind_int(d, s, 2, r->stamp, op) < 0 ||
        sql_bind_blob(d, s, 3, r->val, r->len, op) < 0 || log_exec(d, s, op) < 0)
        return sql_op_end(d, 0, op);
    r->res.n = sqlite3_last_insert_rowid(d->db);
    s = d->log->q[L_APPEND_KEY];
    if (sql_bind_int(d, s, 1, r->res.n, op) < 0 || log_exec(d, s, op) < 0)
        return sql_op_end(d, 0, op);
    return sql_op_end(d, 1, op);
}

/* list and count: a stream that does not exist is an empty collection. */
static int log_whole(sql_t *d, storage_req_t *r, int count)
{
    int64_t stream;
    int rc = log_find(d, r, &stream);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    sqlite3_stmt *s = d->log->q[count ? L_COUNT : L_LIST];
    if (sql_bind_int(d, s, 1, stream, r->opname) < 0)
        return -1;
    return count ? sql_one_int(d, s, r) : sql_rows(d, s, r, 0);
}

/* Where the record named key sits: *seq, *stamp; 1 when there is none (or,
 * in a tag range, when it has not that tag: tag_id, -1 for a tag no record
 * has). */
static int log_key_pos(sql_t *d, storage_req_t *r, int64_t stream, int64_t tag_id,
                       const char *key, int64_t *seq, int64_t *stamp)
{
    sqlite3_stmt *s = d->log->q[L_KEY_POS];
    if (sql_bind_int(d, s, 1, stream, r->opname) < 0 ||
        sql_bind_text(d, s, 2, key, r->opname) < 0)
        return -1;
    int rc = sql_step(d, s, r->opname);
    if (rc < 0)
        return -1;
    int found = rc == SQLITE_ROW;
    if (found) {
        *seq = sqlite3_column_int64(s, 0);
        *stamp = sqlite3_column_int64(s, 1);
        if (r->range.tag && (sqlite3_column_type(s, 2) == SQLITE_NULL ||
                             sqlite3_column_int64(s, 2) != tag_id))
            found = 0;
    }
    sql_reset(s);
    return found ? 0 : 1;
}

static int log_range(sql_t *d, storage_req_t *r)
{
    const storage_range_t *q = &r->range;
    const char *op = r->opname;
    int64_t stream, tag_id = -1;
    int rc = log_find(d, r, &stream);
    if (rc != 0)        /* no such stream: a key names no record, else nothing */
        return rc < 0 ? -1 : q->after || q->before ? 1 : 0;
    if (q->tag && (rc = log_tag(d, q->tag, 0, &tag_id, op)) < 0)
        return -1;
    int64_t a_seq = -1, a_stamp = INT64_MIN, b_seq = INT64_MAX, b_stamp = INT64_MAX;
    if (q->after && (rc = log_key_pos(d, r, stream, tag_id, q->after, &a_seq, &a_stamp)) != 0)
        return rc;
    if (q->before && (rc = log_key_pos(d, r, stream, tag_id, q->before, &b_seq, &b_stamp)) != 0)
        return rc;
    int which = q->by_stamp ? (q->reverse ? L_RANGE_STAMP_REV : L_RANGE_STAMP)
                            : (q->reverse ? L_RANGE_SEQ_REV : L_RANGE_SEQ);
    if (q->tag)
        which += L_TAG_SEQ - L_RANGE_SEQ;
    sqlite3_stmt *s = d->log->q[which];
    int64_t limit = q->limit ? (int64_t)q->limit : -1;
    if (sql_bind_int(d, s, 1, stream, op) < 0 || sql_bind_int(d, s, 3, a_seq, op) < 0 ||
        sql_bind_int(d, s, 4, a_stamp, op) < 0 || sql_bind_int(d, s, 5, b_seq, op) < 0 ||
        sql_bind_int(d, s, 6, b_stamp, op) < 0 ||
        sql_bind_int(d, s, 7, q->since ? q->since : INT64_MIN, op) < 0 ||
        sql_bind_int(d, s, 8, q->until ? q->until : INT64_MAX, op) < 0 ||
        sql_bind_int(d, s, 9, limit, op) < 0 ||
        (q->tag && sql_bind_int(d, s, 10, tag_id, op) < 0))
        return -1;
    return sql_rows(d, s, r, 0);
}

int sql_log_run(sql_t *d, storage_req_t *r)
{
    if (log_fresh(d, r->opname) < 0)
        return -1;
    switch (r->op) {
    case SOP_GET: return log_get(d, r);
    case SOP_PUT: return log_write(d, r, 0);
    case SOP_IMPORT: return log_write(d, r, 1);
    case SOP_DEL: return log_del(d, r, 0);
    case SOP_DEL_ALL: return log_del(d, r, 1);
    case SOP_APPEND: return log_append(d, r);
    case SOP_LIST: return log_whole(d, r, 0);
    case SOP_COUNT: return log_whole(d, r, 1);
    case SOP_RANGE: return log_range(d, r);
    default:
        log_error("storage: driver=sqlite op=%s error=\"not an operation on a collection\"",
                  r->opname);
        return -1;
    }
}

int sql_log_user_delete(sql_t *d, const char *owner, const char *op)
{
    sql_log_t *L = d->log;
    if (log_fresh(d, op) < 0)
        return -1;
    /* Forgotten first: whatever the outcome, no deleted id stays cached. */
    cache_forget(&L->streams);
    if (sql_bind_text(d, L->q[L_USER_DEL], 1, owner, op) < 0 ||
        log_exec(d, L->q[L_USER_DEL], op) < 0 ||
        sql_bind_text(d, L->q[L_USER_DEL_STREAMS], 1, owner, op) < 0 ||
        log_exec(d, L->q[L_USER_DEL_STREAMS], op) < 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------ open / close */

int sql_log_open(sql_t *d, char *err, size_t errlen)
{
    sql_log_t *L = xcalloc(1, sizeof *L);
    d->log = L;
    for (int i = 0; i < L_COUNT_ALL; i++) {
        if (sqlite3_prepare_v3(d->db, log_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &L->q[i],
                               NULL) != SQLITE_OK) {
            if (err && errlen)
                snprintf(err, errlen, "preparing log statement %d: %s", i, sqlite3_errmsg(d->db));
            return -1;
        }
    }
    return log_fresh(d, "open");
}

void sql_log_close(sql_t *d)
{
    sql_log_t *L = d->log;
    if (!L)
        return;
    for (int i = 0; i < L_COUNT_ALL; i++)
        sqlite3_finalize(L->q[i]);
    cache_free(&L->streams);
    cache_free(&L->tags);
    free(L);
    d->log = NULL;
}
