/* storage_sqlite: what the SQLite driver's two files share. Private to
 * common/storage_sqlite*.c.
 *
 * storage_sqlite.c owns the connection, the schema (its migrations), the
 * generic `records` table and transactions; storage_sqlite_log.c owns the
 * tables of log collections (storage_coll_is_log: `logs`, `log_streams`,
 * `log_tags`) and every request on such a collection. Both run on the one
 * connection and the one transaction state below. */
#ifndef WEFT_STORAGE_SQLITE_H
#define WEFT_STORAGE_SQLITE_H
#include "storage_driver.h"

#include <sqlite3.h>

typedef struct sql_log sql_log_t;

typedef struct sql {
    sqlite3 *db;
    int in_txn;         /* storage_begin done, not yet committed or rolled back */
    sql_log_t *log;     /* storage_sqlite_log.c's statements and id caches */
    struct sql_ckpt *ckpt; /* the WAL's checkpoint thread (storage_sqlite_ckpt.c) */
    sqlite3_stmt *q[];  /* storage_sqlite.c's statements, prepared at open */
} sql_t;

/* Helpers of storage_sqlite.c. Every bind_* and sql_step failure is logged
 * and resets the statement. */
void sql_reset(sqlite3_stmt *s);
int sql_step(sql_t *d, sqlite3_stmt *s, const char *op);   /* SQLITE_ROW, SQLITE_DONE, -1 */
int sql_bind_text(sql_t *d, sqlite3_stmt *s, int i, const char *v, const char *op);
int sql_bind_int(sql_t *d, sqlite3_stmt *s, int i, int64_t v, const char *op);
int sql_bind_blob(sql_t *d, sqlite3_stmt *s, int i, const char *v, size_t len, const char *op);
/* Column i of the current row as a new NUL-terminated string (*len: its
 * length, may be NULL). */
char *sql_column_dup(sqlite3_stmt *s, int i, size_t *len);
/* Collects the rows of s (bound; columns seq, stamp, key, value, tag and,
 * with_owner, owner, coll) into r's result; resets s. */
int sql_rows(sql_t *d, sqlite3_stmt *s, storage_req_t *r, int with_owner);
/* Reads one integer column of one row (count(*)) into r->res.n; resets s. */
int sql_one_int(sql_t *d, sqlite3_stmt *s, storage_req_t *r);
/* A savepoint around an operation of several statements: atomic on its own,
 * nested (committed with it) inside storage_begin. op_end(d, 0, op) undoes it
 * and returns -1; op_end(d, 1, op) returns 0, or -1 when it could not
 * release. */
int sql_op_begin(sql_t *d, const char *op);
int sql_op_end(sql_t *d, int ok, const char *op);

/* storage_sqlite_log.c. */

/* A log row's whole value, in a statement over `logs l LEFT JOIN logs b ON
 * b.seq = l.base`: its own bytes, then its base's from base_at on (schema
 * step v6, docs/storage.md "Shared tails"). */
#define SQL_LOG_VALUE "CASE WHEN l.base IS NULL THEN l.value" \
    " ELSE CAST(l.value || substr(b.value, l.base_at + 1) AS BLOB) END"

/* Prepares its statements once the schema is current; -1 with err set. */
int sql_log_open(sql_t *d, char *err, size_t errlen);
void sql_log_close(sql_t *d);
/* Runs a record request (get, put, del, del_all, append, list, count,
 * range, import) on a log collection; the status, as sql_run's. */
int sql_log_run(sql_t *d, storage_req_t *r);
/* The owner's log records and streams (storage_user_delete), inside the
 * caller's savepoint. */
int sql_log_user_delete(sql_t *d, const char *owner, const char *op);
/* A transaction or savepoint ended: committed (1) or rolled back (0). Ids
 * interned inside a rolled-back one may name no row (or, later, another
 * one): the caches forget them. */
void sql_log_settled(sql_t *d, int committed);
/* Before a commit: writes what the transaction queued for the log index. */
int sql_log_flush(sql_t *d, const char *op);
/* Writes the queued puts' rows (their index entries stay queued). */
int sql_log_rows_flush(sql_t *d, const char *op);

/* storage_sqlite_logidx.c: the log records' index by stream and by tag, in
 * blocks of entries (stamp, seq) (log_index, schema v5). tag 0 is the
 * stream's whole list. */
typedef struct logidx logidx_t;
typedef struct lx_ent {
    int64_t stamp, seq;
} lx_ent_t;
typedef struct lx_set {      /* entries a read found, in the order asked */
    lx_ent_t *e;
    size_t n, cap;
} lx_set_t;

/* Entries in (stamp, seq) order: <0, 0, >0. */
int logidx_ent_cmp(lx_ent_t a, lx_ent_t b);
logidx_t *logidx_open(sql_t *d, char *err, size_t errlen);
void logidx_close(logidx_t *x);
/* Queues an entry of a record written in the open transaction (or operation). */
void logidx_add(logidx_t *x, int64_t stream, int64_t tag, int64_t stamp, int64_t seq);
/* How many are queued: logidx_undo(x, mark) forgets those queued since. */
size_t logidx_mark(const logidx_t *x);
void logidx_undo(logidx_t *x, size_t mark);
/* Writes the queued entries into their blocks; forgets them either way. */
int logidx_flush(sql_t *d, logidx_t *x, const char *op);
/* Forgets the queued entries (their transaction rolled back). */
void logidx_discard(logidx_t *x);
/* Takes one entry out of a list (flushed first); absent: nothing to do. */
int logidx_remove(sql_t *d, logidx_t *x, int64_t stream, int64_t tag, int64_t stamp, int64_t seq,
                  const char *op);
/* Deletes every list of a stream. */
int logidx_drop_stream(sql_t *d, logidx_t *x, int64_t stream, const char *op);
int logidx_count(sql_t *d, logidx_t *x, int64_t stream, int64_t tag, int64_t *n, const char *op);
/* The entries strictly between lo and hi in (stamp, seq) order, descending
 * with reverse, at most limit (0: all), added to out. */
int logidx_span(sql_t *d, logidx_t *x, int64_t stream, int64_t tag, lx_ent_t lo, lx_ent_t hi,
                int reverse, size_t limit, lx_set_t *out, const char *op);
/* The entries with since <= stamp <= until and after_seq < seq < before_seq,
 * the limit (0: all) first in seq order (descending with reverse), into out
 * in that order. */
int logidx_by_seq(sql_t *d, logidx_t *x, int64_t stream, int64_t tag, int64_t since,
                  int64_t until, int64_t after_seq, int64_t before_seq, int reverse, size_t limit,
                  lx_set_t *out, const char *op);
void logidx_set_free(lx_set_t *set);
/* Schema step v5: fills log_index from logs, drops the v4 indexes. */
int logidx_build(sqlite3 *db, char *err, size_t errlen);

#endif
