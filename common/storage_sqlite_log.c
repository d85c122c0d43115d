/* storage_sqlite_log: the log collections of the SQLite driver
 * (storage_coll_is_log: message archives).
 *
 * Owns the statements on three tables (schema step v4 in storage_sqlite.c):
 *   log_streams (id, owner, coll)  one row per owner and log collection
 *   log_tags    (id, tag)          one row per tag ever written
 *   logs (seq, stream, stamp, tag, key, value, base, base_at, twin_after,
 *         stamped)  the records
 * with the index logs_key (key, stream) of the rows not stamped. A stamped
 * row (schema step v7: a put with storage_hint_t.stamped whose key begins
 * with its stamp in 13 hex digits, mod_mam's ids) is found by key through
 * its stream's list at that stamp instead (stamped_find), so that an
 * archived message costs no B-tree insert into logs_key. The lists of a
 * stream's records and of its records with one tag are log_index's blocks
 * (v5, storage_sqlite_logidx.c): a write queues the record's entries there,
 * a read of the lists flushes the queue first, and so does the commit. A
 * put inside a transaction queues the row itself too, written
 * LOG_INSERT_ROWS a statement before any other log request and before the
 * commit (rows_flush).
 * A put whose hint (storage_hint_t) names a row an earlier put of the same
 * transaction wrote whole, that announced it (ahead), keeps only its head,
 * with that row as its base (base, base_at: schema step v6); every read
 * joins the base back on (SQL_LOG_VALUE). The base row says how many seqs
 * after it its sharer sits (twin_after, v7), and the schema's triggers give
 * that row its bytes back when its base goes or changes.
 * Answers are those of `records`: same seq, stamp, key, tag, value, same
 * statuses.
 *
 * Owns the caches of ids: owner + coll → stream id, tag → tag id, each a
 * table of LOG_SLOTS entries in pairs (a name whose pair is full replaces
 * the one used longest ago: memory stays bounded however many users).
 * Invariants that make a
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
    L_GET, L_INSERT, L_UPDATE, L_DEL_SEQ, L_APPEND, L_APPEND_KEY, L_KEY_POS, L_ROWS,
    L_IMPORT, L_USER_STREAMS, L_USER_DEL_STREAMS, L_INSERT_MANY, L_STAMPED_KEY, L_SET_TWIN,
    L_COUNT_ALL
};

/* Rows are found by seq (their rowid) and by key (logs_key, or their list
 * when stamped); by stream and
 * by tag through log_index (storage_sqlite_logidx.c), which gives the seqs
 * of a range, whose rows L_ROWS then reads, up to LOG_ROWS_AT_ONCE a
 * statement (one statement per row cost about 6 µs a row on the benchmark
 * machine: a third of a MAM query's time). */
#define LOG_ROWS_AT_ONCE 64
#define L_P8 "?, ?, ?, ?, ?, ?, ?, ?"
#define L_P64 L_P8 ", " L_P8 ", " L_P8 ", " L_P8 ", " L_P8 ", " L_P8 ", " L_P8 ", " L_P8

/* Puts inside a transaction (mod_mam's batches) wait in the connection's
 * queue and go to the table LOG_INSERT_ROWS a statement: one statement per
 * record was 40 % of the insert's cost on the benchmark machine (the VDBE's
 * start and end, the AUTOINCREMENT counter read and written each time). */
#define LOG_INSERT_ROWS 16
/* Parameters per row: stream, stamp, tag, key, value, base, base_at,
 * twin_after, stamped. */
#define L_COLS 9
#define L_V1 "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
#define L_V4 L_V1 ", " L_V1 ", " L_V1 ", " L_V1
#define L_V16 L_V4 ", " L_V4 ", " L_V4 ", " L_V4
static const char *const log_sql[L_COUNT_ALL] = {
    [L_STREAM_GET] = "SELECT id FROM log_streams WHERE owner = ?1 AND coll = ?2",
    [L_STREAM_ADD] = "INSERT INTO log_streams (owner, coll) VALUES (?1, ?2)"
                     " ON CONFLICT (owner, coll) DO NOTHING",
    [L_TAG_GET] = "SELECT id FROM log_tags WHERE tag = ?1",
    [L_TAG_ADD] = "INSERT INTO log_tags (tag) VALUES (?1) ON CONFLICT (tag) DO NOTHING",
    [L_DATA_VERSION] = "PRAGMA data_version",
    [L_GET] = "SELECT " SQL_LOG_VALUE " FROM logs l LEFT JOIN logs b ON b.seq = l.base"
              " WHERE l.seq = ?1",
    [L_INSERT] = "INSERT INTO logs (stream, stamp, tag, key, value, base, base_at, twin_after,"
                 " stamped) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                 " ON CONFLICT (key, stream) WHERE stamped IS NULL DO NOTHING",
    /* A replaced row takes a new stamp: it is no longer stamped, and
     * enters logs_key (no other row there has its key: it was looked for). */
    [L_UPDATE] = "UPDATE logs SET stamp = ?2, tag = ?3, value = ?4, base = NULL, base_at = NULL,"
                 " twin_after = NULL, stamped = NULL WHERE seq = ?1",
    [L_DEL_SEQ] = "DELETE FROM logs WHERE seq = ?1",
    [L_APPEND] = "INSERT INTO logs (stream, stamp, key, value) VALUES (?1, ?2, NULL, ?3)",
    [L_APPEND_KEY] = "UPDATE logs SET key = CAST(seq AS TEXT) WHERE seq = ?1",
    [L_KEY_POS] = "SELECT seq, stamp, tag FROM logs WHERE key = ?2 AND stream = ?1"
                  " AND stamped IS NULL",
    [L_ROWS] = "SELECT l.seq, l.stamp, l.key, " SQL_LOG_VALUE ", t.tag FROM logs l"
               " LEFT JOIN log_tags t ON t.id = l.tag LEFT JOIN logs b ON b.seq = l.base"
               " WHERE l.seq IN (" L_P64 ")",
    [L_IMPORT] = "INSERT INTO logs (seq, stream, stamp, tag, key, value)"
                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [L_USER_STREAMS] = "SELECT id FROM log_streams WHERE owner = ?1",
    [L_USER_DEL_STREAMS] = "DELETE FROM log_streams WHERE owner = ?1",
    /* No conflict clause: a key already there fails the whole statement
     * (SQLite undoes its rows) and its records go one by one instead. */
    [L_INSERT_MANY] = "INSERT INTO logs (stream, stamp, tag, key, value, base, base_at,"
                      " twin_after, stamped) VALUES " L_V16,
    [L_STAMPED_KEY] = "SELECT key, tag FROM logs WHERE seq = ?1 AND stamped IS NOT NULL",
    /* The sharer did not land where its base said: another insert took a
     * seq between them (a records put in the same transaction). */
    [L_SET_TWIN] = "UPDATE logs SET twin_after = ?2 WHERE seq = ?1",
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

/* A record on its way to the table: key and value taken from the put. */
typedef struct log_row {
    int64_t stream, tag, stamp;   /* tag 0: none */
    char *key, *val;
    size_t len;
    uint64_t put_no;              /* the put's number (storage.c) */
    storage_hint_t hint;          /* zero: none */
    int stamped;                  /* written stamped (row_stamped) */
    int owned;                    /* key and val taken from the put (else borrowed:
                                   * written before its put_many ends) */
} log_row_t;

/* Shared tails (schema step v6, docs/storage.md "Shared tails"): the rows
 * written by the puts of the open transaction that announced a sharer
 * (ahead), by put number, so that the sharer's put (back = ahead puts
 * later) keeps only its head and the base's seq. A slot counts only in its generation: a
 * transaction's end, a rollback to a savepoint and every request that may
 * delete or replace a row start a new one, so a base is always a row
 * written in this transaction and still there. */
#define LOG_SHARE_SLOTS 8192      /* a power of two: how far back a hint may reach */
typedef struct log_base {
    uint64_t put_no, gen;
    int64_t seq;
    size_t len;
    size_t ahead;                 /* its put's hint: where its sharer's put is */
} log_base_t;

struct sql_log {
    sqlite3_stmt *q[L_COUNT_ALL];
    logidx_t *idx;          /* the rows' index by stream and tag */
    log_row_t rows[LOG_INSERT_ROWS]; /* puts of the open transaction not yet inserted */
    size_t nrows;
    log_cache_t streams, tags;
    int tentative;          /* ids interned in a transaction not yet settled */
    int version_read;       /* data_version read in the current transaction */
    int64_t data_version;
    log_base_t *bases;      /* LOG_SHARE_SLOTS, allocated at the first base noted */
    uint64_t gen;           /* the generation of bases (starts at 1) */
    int stamped_queued;     /* a stamped row's entries may be queued, not in blocks */
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

/* The two slots where name (len bytes) may be (FNV-1a), the one used last
 * first: two names of one hash both stay cached (one way alone, 400 users'
 * streams missed 7 % of lookups, each a statement). */
static log_slot_t *cache_pair(log_cache_t *c, const char *name, size_t len)
{
    if (!c->slots)
        c->slots = xcalloc(LOG_SLOTS, sizeof c->slots[0]);
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)name[i]) * 16777619u;
    return &c->slots[h & (LOG_SLOTS - 2)];
}

/* name's id from its pair: 0, or 1 when neither slot holds it. */
static int cache_get(log_slot_t *pair, const char *name, size_t len, int64_t *id)
{
    for (int w = 0; w < 2; w++) {
        if (pair[w].name && pair[w].len == len && !memcmp(pair[w].name, name, len)) {
            if (w) {
                log_slot_t t = pair[0];
                pair[0] = pair[1];
                pair[1] = t;
            }
            *id = pair[0].id;
            return 0;
        }
    }
    return 1;
}

/* name first in its pair; the slot used longest ago gives way. */
static void cache_set(log_slot_t *pair, const char *name, size_t len, int64_t id)
{
    free(pair[1].name);
    pair[1] = pair[0];
    pair[0] = (log_slot_t){storage_memdup(name, len), len, id};
}

static void log_forget(sql_log_t *L)
{
    cache_forget(&L->streams);
    cache_forget(&L->tags);
    L->tentative = 0;
}

static void rows_discard(sql_log_t *L)
{
    for (size_t i = 0; i < L->nrows; i++) {
        if (L->rows[i].owned) {
            free(L->rows[i].key);
            free(L->rows[i].val);
        }
    }
    L->nrows = 0;
}

void sql_log_settled(sql_t *d, int committed)
{
    sql_log_t *L = d->log;
    if (!L)
        return;
    /* A rolled-back transaction (not a savepoint inside one that goes on)
     * takes its rows: their queued entries go too. */
    if (!committed && (!d->in_txn || sqlite3_get_autocommit(d->db))) {
        rows_discard(L);
        logidx_discard(L->idx);
        L->stamped_queued = 0;
    }
    /* Rows of a rolled-back savepoint are gone, and a finished transaction's
     * rows are no base for the next one's puts. */
    if (!committed || sqlite3_get_autocommit(d->db))
        L->gen++;
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
    log_slot_t *slot = cache_pair(c, name, len);
    if (cache_get(slot, name, len, id) == 0)
        return 0;
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

/* After a failed write of a queue inside a transaction: rolls it back (its
 * rows would otherwise commit without their entries, or the other way
 * round; the commit then reports it). Returns -1. */
static int txn_abort(sql_t *d)
{
    if (!sqlite3_get_autocommit(d->db)) {
        sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
        sql_log_settled(d, 0);
    }
    return -1;
}

/* Writes the queued index entries. */
static int log_flush(sql_t *d, const char *op)
{
    if (logidx_flush(d, d->log->idx, op) != 0)
        return txn_abort(d);
    d->log->stamped_queued = 0;
    return 0;
}

/* An operation of several statements runs in a savepoint. Outside
 * storage_begin it writes its index entries before it ends; inside, they
 * wait for the commit (one flush for the whole batch). A failed one forgets
 * the entries it queued (since mark). */
static int op_finish(sql_t *d, int ok, size_t mark, const char *op)
{
    if (ok && !d->in_txn && logidx_flush(d, d->log->idx, op) < 0)
        ok = 0;
    if (!ok)
        logidx_undo(d->log->idx, mark);
    return sql_op_end(d, ok, op);
}

/* The entries of a record: its stream's list and, tagged, its tag's. */
static void log_index_add(sql_t *d, int64_t stream, int64_t tag, int64_t stamp, int64_t seq,
                          int stamped)
{
    d->log->stamped_queued |= stamped;
    logidx_add(d->log->idx, stream, 0, stamp, seq);
    if (tag)
        logidx_add(d->log->idx, stream, tag, stamp, seq);
}

/* The request's stream without creating it: 0, or 1 when there is none. */
static int log_find(sql_t *d, const storage_req_t *r, int64_t *stream)
{
    return log_stream(d, r->owner, r->coll, 0, stream, r->opname);
}

static int log_key_pos(sql_t *d, const char *op, int64_t stream, const char *key, int64_t *seq,
                       int64_t *stamp, int64_t *tag);

static int log_get(sql_t *d, storage_req_t *r)
{
    int64_t stream, seq, stamp, tag;
    int rc = log_find(d, r, &stream);
    if (rc == 0)
        rc = log_key_pos(d, r->opname, stream, r->key, &seq, &stamp, &tag);
    if (rc != 0)
        return rc;
    sqlite3_stmt *s = d->log->q[L_GET];
    if (sql_bind_int(d, s, 1, seq, r->opname) < 0 || (rc = sql_step(d, s, r->opname)) < 0)
        return -1;
    if (rc == SQLITE_ROW)
        r->res.val = sql_column_dup(s, 0, &r->res.len);
    sql_reset(s);
    return rc == SQLITE_ROW ? 0 : 1;
}

/* A stamped key's shape (storage.h): LOG_STAMPED_KEY_LEN lowercase hex
 * digits, the first 13 its stamp. */
#define LOG_STAMPED_KEY_LEN 28

/* The stamp a key of that shape begins with: 0, or -1 for another shape. */
static int key_stamp(const char *key, int64_t *stamp)
{
    uint64_t v = 0;
    int i;
    for (i = 0; key[i]; i++) {
        char c = key[i];
        unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                                            : 16;
        if (d == 16 || i == LOG_STAMPED_KEY_LEN)
            return -1;
        if (i < 13)
            v = v << 4 | d;
    }
    if (i != LOG_STAMPED_KEY_LEN)
        return -1;
    *stamp = (int64_t)v;
    return 0;
}

/* 1 when w's row is to be written stamped: its hint says so and its key
 * begins with its stamp (log_put keeps the answer in w->stamped). */
static int row_stamped(const log_row_t *w)
{
    int64_t at;
    return w->hint.stamped && w->key && key_stamp(w->key, &at) == 0 && at == w->stamp;
}

/* 1 when w's key may name a stamped row already: a put without the hint
 * (which promises a new key) of a key shaped as stamped ones. */
static int may_name_stamped(const log_row_t *w)
{
    int64_t at;
    return !w->hint.stamped && w->key && key_stamp(w->key, &at) == 0;
}

/* The stamped row of stream with this key, through the stream's list at
 * the stamp the key begins with (every stamped row has its key's stamp:
 * a replaced row is no longer stamped). 0 with *seq, *stamp, *tag; 1 when
 * there is none. */
static int stamped_find(sql_t *d, const char *op, int64_t stream, const char *key, int64_t *seq,
                        int64_t *stamp, int64_t *tag)
{
    int64_t at;
    if (key_stamp(key, &at) < 0 || at == INT64_MAX)
        return 1;
    /* Stamped rows of the open transaction are found only once their
     * entries are in blocks (not needed for the other rows: an import
     * into a live server puts many keys of this shape, unhinted, and would
     * rewrite a block per record). */
    if (d->log->stamped_queued && log_flush(d, op) < 0)
        return -1;
    lx_set_t set = {0};
    if (logidx_span(d, d->log->idx, stream, 0, (lx_ent_t){at - 1, INT64_MAX},
                    (lx_ent_t){at + 1, INT64_MIN}, 0, 0, &set, op) < 0) {
        logidx_set_free(&set);
        return -1;
    }
    int rc = 1;
    sqlite3_stmt *s = d->log->q[L_STAMPED_KEY];
    for (size_t i = 0; i < set.n && rc == 1; i++) {
        if (sql_bind_int(d, s, 1, set.e[i].seq, op) < 0 || (rc = sql_step(d, s, op)) < 0) {
            rc = -1;
            break;
        }
        const unsigned char *k = rc == SQLITE_ROW ? sqlite3_column_text(s, 0) : NULL;
        rc = 1;
        if (k && !strcmp((const char *)k, key)) {
            *seq = set.e[i].seq;
            *stamp = set.e[i].stamp;
            *tag = sqlite3_column_type(s, 1) == SQLITE_NULL ? 0 : sqlite3_column_int64(s, 1);
            rc = 0;
        }
        sql_reset(s);
    }
    logidx_set_free(&set);
    return rc;
}

/* Where the record named key sits: *seq, *stamp, *tag (0: none); 1 when
 * there is none. */
static int log_key_pos(sql_t *d, const char *op, int64_t stream, const char *key, int64_t *seq,
                       int64_t *stamp, int64_t *tag)
{
    sqlite3_stmt *s = d->log->q[L_KEY_POS];
    if (sql_bind_int(d, s, 1, stream, op) < 0 || sql_bind_text(d, s, 2, key, op) < 0)
        return -1;
    int rc = sql_step(d, s, op);
    if (rc < 0)
        return -1;
    int found = rc == SQLITE_ROW;
    if (found) {
        *seq = sqlite3_column_int64(s, 0);
        *stamp = sqlite3_column_int64(s, 1);
        *tag = sqlite3_column_type(s, 2) == SQLITE_NULL ? 0 : sqlite3_column_int64(s, 2);
    }
    sql_reset(s);
    return found ? 0 : stamped_find(d, op, stream, key, seq, stamp, tag);
}

/* The seq of the row whose tail w's hint names, when it can be shared: a
 * row written whole by a put of this transaction's generation that
 * announced w's put as its sharer, with as many bytes after base_at as w
 * has after self_at. 0 otherwise (w is written whole). */
static int64_t base_of(const sql_log_t *L, const log_row_t *w)
{
    uint64_t back = w->hint.back;
    if (!back || !L->bases || back >= LOG_SHARE_SLOTS || back >= w->put_no)
        return 0;
    const log_base_t *b = &L->bases[(w->put_no - back) & (LOG_SHARE_SLOTS - 1)];
    if (b->gen != L->gen || b->put_no != w->put_no - back || b->ahead != back ||
        w->hint.base_at > b->len || w->hint.self_at == 0 ||
        b->len - w->hint.base_at != w->len - w->hint.self_at)
        return 0;
    return b->seq;
}

/* w's row landed at seq, sharing the tail of the row at base, which said
 * its sharer would be w->hint.back seqs after it: when another insert took
 * a seq between them, the base is told where its sharer really is. */
static int base_point(sql_t *d, const log_row_t *w, int64_t base, int64_t seq, const char *op)
{
    if (seq - base == (int64_t)w->hint.back)
        return 0;
    sqlite3_stmt *s = d->log->q[L_SET_TWIN];
    return sql_bind_int(d, s, 1, base, op) < 0 || sql_bind_int(d, s, 2, seq - base, op) < 0 ||
                   log_exec(d, s, op) < 0
               ? -1
               : 0;
}

/* Notes the row w's put wrote (at seq), whole, as a base for the put of
 * its sharer later in the transaction. */
static void base_note(sql_t *d, const log_row_t *w, int64_t seq)
{
    sql_log_t *L = d->log;
    if (!d->in_txn || !w->put_no || !w->hint.ahead || w->hint.ahead >= LOG_SHARE_SLOTS)
        return;
    if (!L->bases)
        L->bases = xcalloc(LOG_SHARE_SLOTS, sizeof *L->bases);
    log_base_t *b = &L->bases[w->put_no & (LOG_SHARE_SLOTS - 1)];
    *b = (log_base_t){w->put_no, L->gen, seq, w->len, w->hint.ahead};
}

/* Binds a row's L_COLS parameters from p on: its head only and its base
 * when base is not 0. */
static int bind_row(sql_t *d, sqlite3_stmt *s, int p, const log_row_t *w, int64_t base,
                    const char *op)
{
    if (sql_bind_int(d, s, p, w->stream, op) < 0 || sql_bind_int(d, s, p + 1, w->stamp, op) < 0 ||
        (w->tag ? sql_bind_int(d, s, p + 2, w->tag, op)
                : sql_bind_text(d, s, p + 2, NULL, op)) < 0 ||
        sql_bind_text(d, s, p + 3, w->key, op) < 0 ||
        sql_bind_blob(d, s, p + 4, w->val, base ? w->hint.self_at : w->len, op) < 0)
        return -1;
    /* A row that shares a tail is no base itself: its sharer is dropped. */
    size_t ahead = base ? 0 : w->hint.ahead;
    if ((ahead && ahead < LOG_SHARE_SLOTS ? sql_bind_int(d, s, p + 7, (int64_t)ahead, op)
                                          : sql_bind_text(d, s, p + 7, NULL, op)) < 0 ||
        (w->stamped ? sql_bind_int(d, s, p + 8, 1, op)
                        : sql_bind_text(d, s, p + 8, NULL, op)) < 0)
        return -1;
    if (!base)
        return sql_bind_text(d, s, p + 5, NULL, op) < 0 || sql_bind_text(d, s, p + 6, NULL, op) < 0
                   ? -1
                   : 0;
    return sql_bind_int(d, s, p + 5, base, op) < 0 ||
                   sql_bind_int(d, s, p + 6, (int64_t)w->hint.base_at, op) < 0
               ? -1
               : 0;
}

/* Inserts a new record and queues its entries: 0; 1 when its key is taken. */
static int log_insert(sql_t *d, const log_row_t *w, const char *op)
{
    /* A key shaped like a stamped one may name a stamped row, which
     * logs_key does not hold: looked for through its list. */
    int64_t old_seq, old_stamp, old_tag;
    if (may_name_stamped(w)) {
        int rc = stamped_find(d, op, w->stream, w->key, &old_seq, &old_stamp, &old_tag);
        if (rc <= 0)
            return rc < 0 ? -1 : 1;
    }
    sqlite3_stmt *s = d->log->q[L_INSERT];
    int64_t base = base_of(d->log, w);
    if (bind_row(d, s, 1, w, base, op) < 0 || log_exec(d, s, op) < 0)
        return -1;
    if (sqlite3_changes(d->db) == 0)
        return 1;
    int64_t seq = sqlite3_last_insert_rowid(d->db);
    log_index_add(d, w->stream, w->tag, w->stamp, seq, w->stamped);
    if (!base)
        base_note(d, w, seq);
    else if (base_point(d, w, base, seq, op) < 0)
        return -1;
    return 0;
}

/* A put on a key that names a record: it keeps its seq and takes the new
 * stamp, tag and value; its entries move (queue flushed first). */
static int log_replace(sql_t *d, const log_row_t *w, const char *op)
{
    int64_t seq, stamp, old_tag;
    if (log_key_pos(d, op, w->stream, w->key, &seq, &stamp, &old_tag) != 0)
        return -1;
    sqlite3_stmt *s = d->log->q[L_UPDATE];
    if (sql_bind_int(d, s, 1, seq, op) < 0 || sql_bind_int(d, s, 2, w->stamp, op) < 0 ||
        (w->tag ? sql_bind_int(d, s, 3, w->tag, op) : sql_bind_text(d, s, 3, NULL, op)) < 0 ||
        sql_bind_blob(d, s, 4, w->val, w->len, op) < 0 || log_exec(d, s, op) < 0 ||
        logidx_remove(d, d->log->idx, w->stream, 0, stamp, seq, op) < 0 ||
        (old_tag && logidx_remove(d, d->log->idx, w->stream, old_tag, stamp, seq, op) < 0))
        return -1;
    log_index_add(d, w->stream, w->tag, w->stamp, seq, 0);
    /* The row's old value may be the base an earlier put of this
     * transaction noted: no later hint may name it. */
    d->log->gen++;
    return 0;
}

/* One record written now: inserted, or (its key taken) replacing the
 * record of that key in a savepoint. */
static int log_write(sql_t *d, const log_row_t *w, const char *op)
{
    int rc = 1;
    if (d->in_txn) {
        if ((rc = log_insert(d, w, op)) != 1)
            return rc;
        if (log_flush(d, op) < 0)      /* the record's old entries are in blocks */
            return -1;
    }
    size_t mark = logidx_mark(d->log->idx);
    if (sql_op_begin(d, op) < 0)
        return -1;
    if (!d->in_txn)
        rc = log_insert(d, w, op);
    if (rc == 1)
        rc = log_replace(d, w, op);
    return op_finish(d, rc == 0, mark, op);
}

/* LOG_INSERT_ROWS queued records in one statement: 0; 1 when a key was
 * taken (nothing inserted: they go one by one); -1 on error. */
static int rows_insert_many(sql_t *d, const log_row_t *w, const char *op)
{
    sqlite3_stmt *s = d->log->q[L_INSERT_MANY];
    int64_t base[LOG_INSERT_ROWS];
    for (int i = 0; i < LOG_INSERT_ROWS; i++) {
        base[i] = base_of(d->log, &w[i]);
        if (bind_row(d, s, i * L_COLS + 1, &w[i], base[i], op) < 0)
            return -1;
    }
    /* Stepped here, not by sql_step: a taken key is no error to log. */
    int rc = sqlite3_step(s);     /* extended codes: the connection asks for them */
    sql_reset(s);
    if (rc == SQLITE_CONSTRAINT_UNIQUE)
        return 1;
    if (rc != SQLITE_DONE) {
        log_error("storage: driver=sqlite op=%s error=\"%s\"", op, sqlite3_errmsg(d->db));
        return -1;
    }
    /* The rows of one statement take consecutive seqs (AUTOINCREMENT: each
     * the one before plus one), the last of them last_insert_rowid. */
    int64_t seq = sqlite3_last_insert_rowid(d->db) - (LOG_INSERT_ROWS - 1);
    for (int i = 0; i < LOG_INSERT_ROWS; i++) {
        log_index_add(d, w[i].stream, w[i].tag, w[i].stamp, seq + i, w[i].stamped);
        if (!base[i])
            base_note(d, &w[i], seq + i);
        else if (base_point(d, &w[i], base[i], seq + i, op) < 0)
            return -1;
    }
    return 0;
}

/* Records written one by one (a key of theirs was taken): 0 or -1. */
static int rows_write_each(sql_t *d, const log_row_t *w, size_t n, const char *op)
{
    for (size_t i = 0; i < n; i++)
        if (log_write(d, &w[i], op) < 0)
            return -1;
    return 0;
}

/* Writes the queued puts, in their order. When that fails the transaction
 * is rolled back (a put already answered would otherwise be lost alone;
 * the commit then reports it). */
static int rows_flush(sql_t *d, const char *op)
{
    sql_log_t *L = d->log;
    if (L->nrows == 0)
        return 0;
    /* A full queue in one statement; a part of one (at the commit, or
     * before another request) one by one, as after a taken key. */
    int rc = L->nrows == LOG_INSERT_ROWS ? rows_insert_many(d, L->rows, op) : 1;
    if (rc == 1)
        rc = rows_write_each(d, L->rows, L->nrows, op);
    rows_discard(L);
    return rc < 0 ? txn_abort(d) : 0;
}

int sql_log_rows_flush(sql_t *d, const char *op)
{
    return !d->log ? 0 : rows_flush(d, op);
}

int sql_log_flush(sql_t *d, const char *op)
{
    return !d->log ? 0 : rows_flush(d, op) < 0 ? -1 : log_flush(d, op);
}

/* put: an upsert by key. Inside a transaction the record joins the queue
 * (its key and value taken from the request); outside, it is written now. */
static int log_put(sql_t *d, storage_req_t *r)
{
    const char *op = r->opname;
    log_row_t w = {.stamp = r->stamp, .key = r->key, .val = r->val, .len = r->len,
                   .put_no = r->put_no, .hint = r->hint};
    w.stamped = row_stamped(&w);
    if (log_stream(d, r->owner, r->coll, 1, &w.stream, op) < 0 ||
        (r->tag && log_tag(d, r->tag, 1, &w.tag, op) < 0))
        return -1;
    /* Not queued: written now, so that it can replace a stamped row its
     * key may name (log_insert looks). */
    if (!d->in_txn || may_name_stamped(&w))
        return rows_flush(d, op) < 0 ? -1 : log_write(d, &w, op);
    /* A transaction SQLite has already rolled back (a failed flush): the
     * put must not reach the table outside it. */
    if (sqlite3_get_autocommit(d->db)) {
        log_error("storage: driver=sqlite op=%s error=\"the transaction was rolled back\"", op);
        return -1;
    }
    sql_log_t *L = d->log;
    w.owned = !r->borrowed;
    L->rows[L->nrows++] = w;
    if (w.owned)
        r->key = r->val = NULL;
    return L->nrows == LOG_INSERT_ROWS ? rows_flush(d, op) : 0;
}

/* import: a record with its seq given (weftctl migrate). */
static int log_import(sql_t *d, storage_req_t *r)
{
    const char *op = r->opname;
    int64_t stream, tag = 0;
    if (log_stream(d, r->owner, r->coll, 1, &stream, op) < 0 ||
        (r->tag && log_tag(d, r->tag, 1, &tag, op) < 0))
        return -1;
    size_t mark = logidx_mark(d->log->idx);
    if (sql_op_begin(d, op) < 0)
        return -1;
    sqlite3_stmt *s = d->log->q[L_IMPORT];
    int ok = sql_bind_int(d, s, 1, r->seq, op) == 0 && sql_bind_int(d, s, 2, stream, op) == 0 &&
             sql_bind_int(d, s, 3, r->stamp, op) == 0 &&
             (tag ? sql_bind_int(d, s, 4, tag, op) : sql_bind_text(d, s, 4, NULL, op)) == 0 &&
             sql_bind_text(d, s, 5, r->key, op) == 0 &&
             sql_bind_blob(d, s, 6, r->val, r->len, op) == 0 && log_exec(d, s, op) == 0;
    if (ok)
        log_index_add(d, stream, tag, r->stamp, r->seq, 0);
    return op_finish(d, ok, mark, op);
}

static int log_del_row(sql_t *d, int64_t seq, const char *op)
{
    sqlite3_stmt *s = d->log->q[L_DEL_SEQ];
    return sql_bind_int(d, s, 1, seq, op) < 0 ? -1 : log_exec(d, s, op);
}

/* Every record of a stream, and its lists (inside the caller's savepoint). */
static int log_drop_stream(sql_t *d, int64_t stream, const char *op)
{
    lx_set_t all = {0};
    lx_ent_t lo = {INT64_MIN, INT64_MIN}, hi = {INT64_MAX, INT64_MAX};
    int ok = logidx_span(d, d->log->idx, stream, 0, lo, hi, 0, 0, &all, op) == 0;
    for (size_t i = 0; ok && i < all.n; i++)
        ok = log_del_row(d, all.e[i].seq, op) == 0;
    logidx_set_free(&all);
    return ok ? logidx_drop_stream(d, d->log->idx, stream, op) : -1;
}

static int log_del(sql_t *d, storage_req_t *r, int all)
{
    const char *op = r->opname;
    int64_t stream;
    int rc = log_find(d, r, &stream);
    if (rc != 0)
        return rc < 0 ? -1 : all ? 0 : 1;
    if (log_flush(d, op) < 0)
        return -1;
    size_t mark = logidx_mark(d->log->idx);
    if (sql_op_begin(d, op) < 0)
        return -1;
    int64_t seq, stamp, tag;
    if (all) {
        rc = log_drop_stream(d, stream, op);
    } else if ((rc = log_key_pos(d, op, stream, r->key, &seq, &stamp, &tag)) == 0) {
        if (log_del_row(d, seq, op) < 0 ||
            logidx_remove(d, d->log->idx, stream, 0, stamp, seq, op) < 0 ||
            (tag && logidx_remove(d, d->log->idx, stream, tag, stamp, seq, op) < 0))
            rc = -1;
    }
    if (op_finish(d, rc >= 0, mark, op) < 0)
        return -1;
    return rc;
}

/* As records' append: inserted with no key, then given its seq as key, in
 * one savepoint. */
static int log_append(sql_t *d, storage_req_t *r)
{
    const char *op = r->opname;
    int64_t stream;
    if (log_stream(d, r->owner, r->coll, 1, &stream, op) < 0)
        return -1;
    size_t mark = logidx_mark(d->log->idx);
    if (sql_op_begin(d, op) < 0)
        return -1;
    sqlite3_stmt *s = d->log->q[L_APPEND];
    int ok = sql_bind_int(d, s, 1, stream, op) == 0 && sql_bind_int(d, s, 2, r->stamp, op) == 0 &&
             sql_bind_blob(d, s, 3, r->val, r->len, op) == 0 && log_exec(d, s, op) == 0;
    if (ok) {
        r->res.n = sqlite3_last_insert_rowid(d->db);
        s = d->log->q[L_APPEND_KEY];
        ok = sql_bind_int(d, s, 1, r->res.n, op) == 0 && log_exec(d, s, op) == 0;
    }
    if (ok)
        log_index_add(d, stream, 0, r->stamp, r->res.n, 0);
    return op_finish(d, ok, mark, op);
}

/* A row read by log_rows, with where its entry is in the set. */
typedef struct row_at {
    size_t at;
    storage_rec_t rec;
} row_at_t;

static int row_at_cmp(const void *a, const void *b)
{
    const row_at_t *p = a, *q = b;
    return p->at < q->at ? -1 : p->at > q->at;
}

/* A seq of the set and where it is in the set. */
typedef struct seq_at {
    int64_t seq;
    size_t at;
} seq_at_t;

static int seq_at_cmp(const void *a, const void *b)
{
    const seq_at_t *p = a, *q = b;
    return p->seq < q->seq ? -1 : p->seq > q->seq;
}

/* The rows of the entries, in their order, into the result. They come from
 * SQLite in seq order; a set in another order (by stamp, or newest first)
 * is restored with a copy of the set sorted by seq (where each entry was). */
static int log_rows(sql_t *d, storage_req_t *r, const lx_set_t *set)
{
    sqlite3_stmt *s = d->log->q[L_ROWS];
    size_t first = r->res.nrecs;
    for (size_t i = 0; i < set->n; i += LOG_ROWS_AT_ONCE) {
        for (int j = 0; j < LOG_ROWS_AT_ONCE; j++) {
            int rc = i + (size_t)j < set->n
                         ? sql_bind_int(d, s, j + 1, set->e[i + (size_t)j].seq, r->opname)
                         : sql_bind_text(d, s, j + 1, NULL, r->opname);
            if (rc < 0)
                return -1;
        }
        if (sql_rows(d, s, r, 0) < 0)
            return -1;
    }
    size_t n = r->res.nrecs - first;
    if (n < 2)
        return 0;
    seq_at_t *by_seq = xmalloc(set->n * sizeof *by_seq);
    for (size_t i = 0; i < set->n; i++)
        by_seq[i] = (seq_at_t){set->e[i].seq, i};
    qsort(by_seq, set->n, sizeof *by_seq, seq_at_cmp);
    row_at_t *rows = xmalloc(n * sizeof *rows);
    for (size_t i = 0; i < n; i++) {
        storage_rec_t *rec = &r->res.recs[first + i];
        seq_at_t key = {rec->seq, 0};
        const seq_at_t *e = bsearch(&key, by_seq, set->n, sizeof *by_seq, seq_at_cmp);
        rows[i] = (row_at_t){e ? e->at : SIZE_MAX, *rec};
    }
    qsort(rows, n, sizeof *rows, row_at_cmp);
    for (size_t i = 0; i < n; i++)
        r->res.recs[first + i] = rows[i].rec;
    free(rows);
    free(by_seq);
    return 0;
}

/* list and count: a stream that does not exist is an empty collection. */
static int log_whole(sql_t *d, storage_req_t *r, int count)
{
    int64_t stream;
    int rc = log_find(d, r, &stream);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    if (log_flush(d, r->opname) < 0)
        return -1;
    if (count)
        return logidx_count(d, d->log->idx, stream, 0, &r->res.n, r->opname);
    lx_set_t all = {0};
    rc = logidx_by_seq(d, d->log->idx, stream, 0, INT64_MIN, INT64_MAX, INT64_MIN, INT64_MAX, 0,
                       0, &all, r->opname);
    if (rc == 0)
        rc = log_rows(d, r, &all);
    logidx_set_free(&all);
    return rc;
}

static lx_ent_t ent_max(lx_ent_t a, lx_ent_t b)
{
    return logidx_ent_cmp(a, b) > 0 ? a : b;
}

static lx_ent_t ent_min(lx_ent_t a, lx_ent_t b)
{
    return logidx_ent_cmp(a, b) < 0 ? a : b;
}

/* A key bound of a range: 0 with its entry; 1 when the key names no record
 * (or, in a tag range, one without that tag: it is not in the range's set). */
static int log_bound(sql_t *d, storage_req_t *r, int64_t stream, int64_t tag_id, const char *key,
                     lx_ent_t *at)
{
    int64_t tag;
    int rc = log_key_pos(d, r->opname, stream, key, &at->seq, &at->stamp, &tag);
    if (rc == 0 && r->range.tag && tag != tag_id)
        rc = 1;
    return rc;
}

static int log_range(sql_t *d, storage_req_t *r)
{
    const storage_range_t *q = &r->range;
    const char *op = r->opname;
    int64_t stream, tag_id = 0;
    int rc = log_find(d, r, &stream);
    if (rc != 0)        /* no such stream: a key names no record, else nothing */
        return rc < 0 ? -1 : q->after || q->before ? 1 : 0;
    if (q->tag && (rc = log_tag(d, q->tag, 0, &tag_id, op)) < 0)
        return -1;
    if (q->tag && rc == 1)
        tag_id = -1;    /* a tag no record has: an empty list */
    lx_ent_t a = {INT64_MIN, -1}, b = {INT64_MAX, INT64_MAX};
    if (q->after && (rc = log_bound(d, r, stream, tag_id, q->after, &a)) != 0)
        return rc;
    if (q->before && (rc = log_bound(d, r, stream, tag_id, q->before, &b)) != 0)
        return rc;
    if (log_flush(d, op) < 0)
        return -1;
    int64_t since = q->since ? q->since : INT64_MIN, until = q->until ? q->until : INT64_MAX;
    int64_t list = q->tag ? tag_id : 0;
    lx_set_t set = {0};
    if (q->by_stamp) {
        /* since and until as exclusive bounds in (stamp, seq) order */
        lx_ent_t lo = ent_max(a, (lx_ent_t){since, INT64_MIN});
        lx_ent_t hi = ent_min(b, (lx_ent_t){until, INT64_MAX});
        rc = logidx_span(d, d->log->idx, stream, list, lo, hi, q->reverse, q->limit, &set, op);
    } else {
        rc = logidx_by_seq(d, d->log->idx, stream, list, since, until, a.seq, b.seq, q->reverse,
                           q->limit, &set, op);
    }
    if (rc == 0)
        rc = log_rows(d, r, &set);
    logidx_set_free(&set);
    return rc;
}

int sql_log_run(sql_t *d, storage_req_t *r)
{
    if (log_fresh(d, r->opname) < 0)
        return -1;
    /* Every other request sees the queued puts as rows: written first. */
    if (!(r->op == SOP_PUT && d->in_txn) && rows_flush(d, r->opname) < 0)
        return -1;
    /* A row deleted here may be a base an earlier put noted. */
    if (r->op == SOP_DEL || r->op == SOP_DEL_ALL)
        d->log->gen++;
    switch (r->op) {
    case SOP_GET: return log_get(d, r);
    case SOP_PUT: return log_put(d, r);
    case SOP_IMPORT: return log_import(d, r);
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

/* Inside storage_sqlite.c's savepoint, after sql_log_flush. */
int sql_log_user_delete(sql_t *d, const char *owner, const char *op)
{
    sql_log_t *L = d->log;
    if (log_fresh(d, op) < 0)
        return -1;
    /* Forgotten first: whatever the outcome, no deleted id stays cached
     * and no deleted row is a base. */
    cache_forget(&L->streams);
    L->gen++;
    sqlite3_stmt *s = L->q[L_USER_STREAMS];
    if (sql_bind_text(d, s, 1, owner, op) < 0)
        return -1;
    int64_t *ids = NULL;
    size_t n = 0;
    int rc;
    while ((rc = sql_step(d, s, op)) == SQLITE_ROW) {
        ids = xrealloc(ids, (n + 1) * sizeof *ids);
        ids[n++] = sqlite3_column_int64(s, 0);
    }
    if (rc < 0) {
        free(ids);
        return -1;
    }
    sql_reset(s);
    int ok = 1;
    for (size_t i = 0; ok && i < n; i++)
        ok = log_drop_stream(d, ids[i], op) == 0;
    free(ids);
    if (!ok || sql_bind_text(d, L->q[L_USER_DEL_STREAMS], 1, owner, op) < 0 ||
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
    if (!(L->idx = logidx_open(d, err, errlen)))
        return -1;
    L->gen = 1;
    return log_fresh(d, "open");
}

void sql_log_close(sql_t *d)
{
    sql_log_t *L = d->log;
    if (!L)
        return;
    for (int i = 0; i < L_COUNT_ALL; i++)
        sqlite3_finalize(L->q[i]);
    rows_discard(L);
    cache_free(&L->streams);
    cache_free(&L->tags);
    free(L->bases);
    logidx_close(L->idx);
    free(L);
    d->log = NULL;
}
