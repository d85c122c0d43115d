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

#endif
