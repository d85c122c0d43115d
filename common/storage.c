/* storage: the SQLite implementation of storage.h.
 *
 * Owns one database connection and every statement it runs, each prepared
 * once at open and reset (bindings cleared) after every use, so a bound key or
 * value never outlives the call that bound it. The schema lives in the
 * migration list below; PRAGMA user_version holds how many of its steps a file
 * has had, and storage_open applies the missing ones, each in its own
 * transaction. A file from a newer build (a higher version) is refused.
 *
 * Invariants and choices:
 *  - At most one explicit transaction (storage_begin) at a time: a nested begin
 *    fails. Operations made of several statements (append, user delete) run in
 *    a SAVEPOINT, so they are atomic both on their own and inside a caller's
 *    transaction (where they commit with it).
 *  - storage_put keeps a replaced record's sequence number: it stays where it
 *    was in its collection's list order (an upsert, not delete + insert).
 *  - Records are not tied to accounts by a foreign key (an owner may be a
 *    domain or a service, not only an account); storage_user_delete removes an
 *    account's records explicitly, in the same transaction.
 *  - Errors are logged with the operation and SQLite's message; values and
 *    keys never appear in a log line.
 *  - Not thread-safe: one storage_t belongs to one thread. */
#include "storage.h"
#include "log.h"
#include "strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* How long a writer waits for another connection's lock (weftctl, a backup)
 * before the call fails. */
#define STORAGE_BUSY_MS 5000

/* The schema, one step per version: step i brings a file from version i to
 * i + 1. Steps are never edited once released; a change is a new step. */
static const char *const storage_migrations[] = {
    /* v1 */
    "CREATE TABLE users ("
    "  bare TEXT PRIMARY KEY NOT NULL,"
    "  sha256 TEXT,"
    "  sha1 TEXT,"
    "  created INTEGER NOT NULL);"
    "CREATE TABLE records ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  owner TEXT NOT NULL,"
    "  coll TEXT NOT NULL,"
    "  key TEXT,"
    "  value BLOB NOT NULL,"
    "  UNIQUE (owner, coll, key));"
    "CREATE INDEX records_list ON records (owner, coll, seq);",
};
#define STORAGE_VERSION ((int)(sizeof storage_migrations / sizeof storage_migrations[0]))

enum {
    Q_BEGIN, Q_COMMIT, Q_ROLLBACK,
    Q_SP_BEGIN, Q_SP_RELEASE, Q_SP_ROLLBACK,
    Q_USER_CREATE, Q_USER_GET, Q_USER_SET, Q_USER_DEL, Q_USER_DEL_RECORDS,
    Q_USER_EXISTS, Q_USER_LIST, Q_USER_COUNT,
    Q_GET, Q_PUT, Q_DEL, Q_DEL_ALL, Q_APPEND, Q_APPEND_KEY, Q_LIST, Q_COUNT,
    Q_COUNT_ALL
};

static const char *const storage_sql[Q_COUNT_ALL] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_SP_BEGIN] = "SAVEPOINT storage_op",
    [Q_SP_RELEASE] = "RELEASE storage_op",
    [Q_SP_ROLLBACK] = "ROLLBACK TO storage_op",
    [Q_USER_CREATE] = "INSERT INTO users (bare, sha256, sha1, created) VALUES (?1, ?2, ?3, ?4)"
                      " ON CONFLICT (bare) DO NOTHING",
    [Q_USER_GET] = "SELECT sha256, sha1 FROM users WHERE bare = ?1",
    [Q_USER_SET] = "UPDATE users SET sha256 = ?2, sha1 = ?3 WHERE bare = ?1",
    [Q_USER_DEL] = "DELETE FROM users WHERE bare = ?1",
    [Q_USER_DEL_RECORDS] = "DELETE FROM records WHERE owner = ?1",
    [Q_USER_EXISTS] = "SELECT 1 FROM users WHERE bare = ?1",
    [Q_USER_LIST] = "SELECT bare FROM users ORDER BY bare",
    [Q_USER_COUNT] = "SELECT count(*) FROM users",
    [Q_GET] = "SELECT value FROM records WHERE owner = ?1 AND coll = ?2 AND key = ?3",
    [Q_PUT] = "INSERT INTO records (owner, coll, key, value) VALUES (?1, ?2, ?3, ?4)"
              " ON CONFLICT (owner, coll, key) DO UPDATE SET value = excluded.value",
    [Q_DEL] = "DELETE FROM records WHERE owner = ?1 AND coll = ?2 AND key = ?3",
    [Q_DEL_ALL] = "DELETE FROM records WHERE owner = ?1 AND coll = ?2",
    [Q_APPEND] = "INSERT INTO records (owner, coll, key, value) VALUES (?1, ?2, NULL, ?3)",
    [Q_APPEND_KEY] = "UPDATE records SET key = CAST(seq AS TEXT) WHERE seq = ?1",
    [Q_LIST] = "SELECT key, value FROM records WHERE owner = ?1 AND coll = ?2 ORDER BY seq",
    [Q_COUNT] = "SELECT count(*) FROM records WHERE owner = ?1 AND coll = ?2",
};

struct storage {
    sqlite3 *db;
    sqlite3_stmt *q[Q_COUNT_ALL];
    int in_txn;         /* storage_begin done, not yet committed or rolled back */
};

/* ------------------------------------------------------------ helpers */

static void storage_log_err(storage_t *st, const char *op)
{
    log_error("storage: op=%s code=%d error=\"%s\"", op, sqlite3_extended_errcode(st->db),
              sqlite3_errmsg(st->db));
}

static void storage_done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Steps s once: SQLITE_ROW, SQLITE_DONE, or -1 (logged; s is then reset). */
static int storage_step(storage_t *st, sqlite3_stmt *s, const char *op)
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        return rc;
    storage_log_err(st, op);
    storage_done(s);
    return -1;
}

/* Runs a statement that returns no rows; 0 or -1. */
static int storage_exec(storage_t *st, int q, const char *op)
{
    int rc = storage_step(st, st->q[q], op);
    if (rc < 0)
        return -1;
    storage_done(st->q[q]);
    return 0;
}

static int bind_text(storage_t *st, sqlite3_stmt *s, int i, const char *v, const char *op)
{
    int rc = v ? sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
    if (rc != SQLITE_OK) {
        storage_log_err(st, op);
        storage_done(s);
        return -1;
    }
    return 0;
}

static int bind_blob(storage_t *st, sqlite3_stmt *s, int i, const char *v, size_t len,
                     const char *op)
{
    /* A NULL pointer would bind SQL NULL: an empty value is an empty blob. */
    int rc = sqlite3_bind_blob64(s, i, v ? v : "", (sqlite3_uint64)len, SQLITE_STATIC);
    if (rc != SQLITE_OK) {
        storage_log_err(st, op);
        storage_done(s);
        return -1;
    }
    return 0;
}

/* Binds owner and coll (?1, ?2), the start of most record statements. */
static int bind_oc(storage_t *st, sqlite3_stmt *s, const char *owner, const char *coll,
                   const char *op)
{
    if (!owner || !coll) {
        log_error("storage: op=%s error=\"missing owner or collection\"", op);
        return -1;
    }
    if (bind_text(st, s, 1, owner, op) < 0 || bind_text(st, s, 2, coll, op) < 0)
        return -1;
    return 0;
}

/* Copies column i of the current row into a new NUL-terminated string. */
static char *column_dup(sqlite3_stmt *s, int i, size_t *len)
{
    const void *p = sqlite3_column_blob(s, i);
    size_t n = (size_t)sqlite3_column_bytes(s, i);
    char *out = xmalloc(n + 1);
    if (n)
        memcpy(out, p, n);
    out[n] = '\0';
    if (len)
        *len = n;
    return out;
}

/* Multi-statement operations run inside a savepoint: on their own it is a
 * transaction; inside storage_begin it nests and commits with the caller. */
static int op_begin(storage_t *st, const char *op)
{
    if (storage_exec(st, Q_SP_BEGIN, op) < 0)
        return -1;
    return 0;
}

static int op_end(storage_t *st, int ok, const char *op)
{
    if (ok && storage_exec(st, Q_SP_RELEASE, op) == 0)
        return 0;
    /* Failure (or a failed release, e.g. a commit that could not write): undo
     * and leave the savepoint. These may fail too if SQLite already rolled the
     * whole transaction back; nothing else is left to undo then. */
    if (!sqlite3_get_autocommit(st->db)) {
        sqlite3_step(st->q[Q_SP_ROLLBACK]);
        storage_done(st->q[Q_SP_ROLLBACK]);
        sqlite3_step(st->q[Q_SP_RELEASE]);
        storage_done(st->q[Q_SP_RELEASE]);
    }
    if (st->in_txn && sqlite3_get_autocommit(st->db)) {
        log_error("storage: op=%s error=\"the enclosing transaction was rolled back\"", op);
        st->in_txn = 0;
    }
    return -1;
}

static void errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ open / close */

/* Creates the directories above path that do not exist yet (mode 0750). */
static int storage_mkdirs(const char *path, char *err, size_t errlen)
{
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) {
        free(dir);
        return 0;
    }
    *slash = '\0';
    for (char *p = dir + 1; ; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        int e = mkdir(dir, 0750) < 0 ? errno : 0;
        struct stat sb;
        if (e == EEXIST)
            e = stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode) ? 0 : ENOTDIR;
        if (e) {
            errf(err, errlen, "%s: cannot create directory %s: %s", path, dir, strerror(e));
            free(dir);
            return -1;
        }
        *p = c;
        if (c == '\0')
            break;
    }
    free(dir);
    return 0;
}

/* Creates the file 0600 before SQLite opens it (SQLite would use 0644 less the
 * umask). The -wal and -shm files SQLite creates beside it copy the database
 * file's mode. An existing file is left alone here: see storage_restrict. */
static int storage_create_file(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0) {
        errf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    close(fd);
    return 0;
}

/* Takes group and other access away from an existing database, once it has
 * opened as one (never from some other file given by mistake). */
static void storage_restrict(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) < 0 || !(sb.st_mode & 077))
        return;
    if (chmod(path, sb.st_mode & 0700) == 0)
        log_warn("storage: path=%s event=mode-restricted old=%04o new=%04o", path,
                 (unsigned)(sb.st_mode & 07777), (unsigned)(sb.st_mode & 0700));
    else
        log_warn("storage: path=%s error=\"cannot restrict mode: %s\"", path, strerror(errno));
}

/* Runs one SQL text (possibly several statements) without preparing it for
 * later: pragmas and migrations only. */
static int storage_exec_text(sqlite3 *db, const char *sql, const char *path, char *err,
                             size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        errf(err, errlen, "%s: %s", path, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int storage_int_pragma(sqlite3 *db, const char *sql, int *out)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        return -1;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : -1;
}

static int storage_migrate(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    int version;
    if (storage_int_pragma(db, "PRAGMA user_version", &version) < 0) {
        errf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
        return -1;
    }
    if (version > STORAGE_VERSION) {
        errf(err, errlen, "%s: schema version %d is newer than this build knows (%d)", path,
             version, STORAGE_VERSION);
        return -1;
    }
    for (int v = version; v < STORAGE_VERSION; v++) {
        char set[64];
        snprintf(set, sizeof set, "PRAGMA user_version = %d", v + 1);
        if (storage_exec_text(db, "BEGIN IMMEDIATE", path, err, errlen) < 0)
            return -1;
        if (storage_exec_text(db, storage_migrations[v], path, err, errlen) < 0 ||
            storage_exec_text(db, set, path, err, errlen) < 0 ||
            storage_exec_text(db, "COMMIT", path, err, errlen) < 0) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
        log_info("storage: path=%s event=migrated version=%d", path, v + 1);
    }
    return 0;
}

storage_t *storage_open(const char *path, char *err, size_t errlen)
{
    errf(err, errlen, "%s", "");
    if (!path || !*path) {
        errf(err, errlen, "no database path");
        return NULL;
    }
    if (storage_mkdirs(path, err, errlen) < 0 || storage_create_file(path, err, errlen) < 0)
        return NULL;

    storage_t *st = xcalloc(1, sizeof *st);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &st->db, flags, NULL) != SQLITE_OK) {
        errf(err, errlen, "%s: %s", path, st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto fail;
    }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, STORAGE_BUSY_MS);

    /* journal_mode answers with the mode in force: anything but "wal" means
     * the file could not be switched (read-only, or not a database). */
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db, "PRAGMA journal_mode = WAL", -1, &s, NULL) != SQLITE_OK) {
        errf(err, errlen, "%s: %s", path, sqlite3_errmsg(st->db));
        goto fail;
    }
    int rc = sqlite3_step(s);
    const unsigned char *mode = rc == SQLITE_ROW ? sqlite3_column_text(s, 0) : NULL;
    if (!mode || strcmp((const char *)mode, "wal") != 0) {
        errf(err, errlen, "%s: cannot use WAL mode: %s", path,
             mode ? (const char *)mode : sqlite3_errmsg(st->db));
        sqlite3_finalize(s);
        goto fail;
    }
    sqlite3_finalize(s);

    if (storage_exec_text(st->db, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                          path, err, errlen) < 0 ||
        storage_migrate(st->db, path, err, errlen) < 0)
        goto fail;

    for (int i = 0; i < Q_COUNT_ALL; i++) {
        if (sqlite3_prepare_v3(st->db, storage_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->q[i],
                               NULL) != SQLITE_OK) {
            errf(err, errlen, "%s: preparing statement %d: %s", path, i, sqlite3_errmsg(st->db));
            goto fail;
        }
    }
    storage_restrict(path);
    return st;

fail:
    storage_close(st);
    return NULL;
}

void storage_set_cache(storage_t *st, size_t bytes)
{
    char sql[64];
    /* A negative cache_size is in KiB, whatever the page size. */
    snprintf(sql, sizeof sql, "PRAGMA cache_size = -%zu", bytes / 1024 ? bytes / 1024 : 1);
    if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        log_warn("storage: op=cache-size error=\"%s\"", sqlite3_errmsg(st->db));
}

void storage_close(storage_t *st)
{
    if (!st)
        return;
    if (st->db && !sqlite3_get_autocommit(st->db)) {
        log_warn("storage: event=close-in-transaction action=rollback");
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    }
    for (int i = 0; i < Q_COUNT_ALL; i++)
        sqlite3_finalize(st->q[i]);
    if (st->db) {
        /* Keeps the query planner's statistics fresh; cheap when nothing changed. */
        if (st->q[0])
            sqlite3_exec(st->db, "PRAGMA optimize", NULL, NULL, NULL);
        if (sqlite3_close(st->db) != SQLITE_OK)
            log_error("storage: op=close error=\"%s\"", sqlite3_errmsg(st->db));
    }
    free(st);
}

/* ------------------------------------------------------------ transactions */

int storage_begin(storage_t *st)
{
    if (st->in_txn) {
        log_error("storage: op=begin error=\"nested transactions are not supported\"");
        return -1;
    }
    if (storage_exec(st, Q_BEGIN, "begin") < 0)
        return -1;
    st->in_txn = 1;
    return 0;
}

int storage_commit(storage_t *st)
{
    if (!st->in_txn) {
        log_error("storage: op=commit error=\"no transaction\"");
        return -1;
    }
    st->in_txn = 0;
    if (sqlite3_get_autocommit(st->db)) {
        log_error("storage: op=commit error=\"the transaction was already rolled back\"");
        return -1;
    }
    if (storage_exec(st, Q_COMMIT, "commit") == 0)
        return 0;
    if (!sqlite3_get_autocommit(st->db))
        storage_exec(st, Q_ROLLBACK, "rollback");
    return -1;
}

/* Rolling back with no transaction open does nothing (callers may roll back
 * after a failed commit, which has already done so). */
int storage_rollback(storage_t *st)
{
    st->in_txn = 0;
    if (sqlite3_get_autocommit(st->db))
        return 0;
    return storage_exec(st, Q_ROLLBACK, "rollback");
}

/* ------------------------------------------------------------ accounts */

int storage_user_create(storage_t *st, const char *bare, const char *sha256, const char *sha1)
{
    sqlite3_stmt *s = st->q[Q_USER_CREATE];
    const char *op = "user_create";
    if (bind_text(st, s, 1, bare, op) < 0 || bind_text(st, s, 2, sha256, op) < 0 ||
        bind_text(st, s, 3, sha1, op) < 0)
        return -1;
    if (sqlite3_bind_int64(s, 4, (sqlite3_int64)time(NULL)) != SQLITE_OK) {
        storage_log_err(st, op);
        storage_done(s);
        return -1;
    }
    if (storage_exec(st, Q_USER_CREATE, op) < 0)
        return -1;
    return sqlite3_changes(st->db) == 0 ? 1 : 0;
}

int storage_user_get(storage_t *st, const char *bare, char **sha256, char **sha1)
{
    sqlite3_stmt *s = st->q[Q_USER_GET];
    if (sha256)
        *sha256 = NULL;
    if (sha1)
        *sha1 = NULL;
    if (bind_text(st, s, 1, bare, "user_get") < 0)
        return -1;
    int rc = storage_step(st, s, "user_get");
    if (rc < 0)
        return -1;
    if (rc == SQLITE_ROW) {
        if (sha256 && sqlite3_column_type(s, 0) != SQLITE_NULL)
            *sha256 = column_dup(s, 0, NULL);
        if (sha1 && sqlite3_column_type(s, 1) != SQLITE_NULL)
            *sha1 = column_dup(s, 1, NULL);
    }
    storage_done(s);
    return rc == SQLITE_ROW ? 0 : 1;
}

/* Both keys are replaced: a NULL clears that key, so an old password can never
 * survive a change through a hash the caller did not mention. 1 if there is
 * no such account. */
int storage_user_set_keys(storage_t *st, const char *bare, const char *sha256, const char *sha1)
{
    sqlite3_stmt *s = st->q[Q_USER_SET];
    const char *op = "user_set_keys";
    if (bind_text(st, s, 1, bare, op) < 0 || bind_text(st, s, 2, sha256, op) < 0 ||
        bind_text(st, s, 3, sha1, op) < 0)
        return -1;
    if (storage_step(st, s, op) < 0)
        return -1;
    storage_done(s);
    return sqlite3_changes(st->db) == 0 ? 1 : 0;
}

int storage_user_delete(storage_t *st, const char *bare)
{
    const char *op = "user_delete";
    if (op_begin(st, op) < 0)
        return -1;
    sqlite3_stmt *s = st->q[Q_USER_DEL];
    if (bind_text(st, s, 1, bare, op) < 0 || storage_step(st, s, op) < 0)
        return op_end(st, 0, op);
    storage_done(s);
    int found = sqlite3_changes(st->db) > 0;
    s = st->q[Q_USER_DEL_RECORDS];
    if (bind_text(st, s, 1, bare, op) < 0 || storage_step(st, s, op) < 0)
        return op_end(st, 0, op);
    storage_done(s);
    if (op_end(st, 1, op) < 0)
        return -1;
    return found ? 0 : 1;
}

int storage_user_exists(storage_t *st, const char *bare)
{
    sqlite3_stmt *s = st->q[Q_USER_EXISTS];
    if (bind_text(st, s, 1, bare, "user_exists") < 0)
        return -1;
    int rc = storage_step(st, s, "user_exists");
    if (rc < 0)
        return -1;
    storage_done(s);
    return rc == SQLITE_ROW ? 1 : 0;
}

/* What a walk calls per row: one of the two callback kinds. */
typedef struct storage_walk_cb {
    storage_user_fn user;
    storage_rec_fn rec;
    void *arg;
} storage_walk_cb_t;

/* Walks the rows of s (already bound) calling the callback for each. Returns
 * 0 when every row was seen, the callback's non-zero value when it stopped the
 * walk, -1 on an error. The statement stays busy during the walk: a callback
 * may use every other storage call, but not start the same kind of walk
 * again, and must not change the rows being walked. */
static int storage_walk(storage_t *st, sqlite3_stmt *s, const char *op,
                        const storage_walk_cb_t *cb)
{
    int ret = 0;
    for (;;) {
        int rc = storage_step(st, s, op);
        if (rc < 0)
            return -1;
        if (rc == SQLITE_DONE)
            break;
        if (cb->user) {
            ret = cb->user((const char *)sqlite3_column_text(s, 0), cb->arg);
        } else {
            const char *v = sqlite3_column_blob(s, 1);
            size_t n = (size_t)sqlite3_column_bytes(s, 1);
            ret = cb->rec((const char *)sqlite3_column_text(s, 0), v ? v : "", n, cb->arg);
        }
        if (ret)
            break;
    }
    storage_done(s);
    return ret;
}

/* A walk started from inside a walk of the same statement would reset it
 * under the outer one's feet: refused. */
static int storage_walk_busy(sqlite3_stmt *s, const char *op)
{
    if (!sqlite3_stmt_busy(s))
        return 0;
    log_error("storage: op=%s error=\"called from its own list callback\"", op);
    return 1;
}

int storage_user_list(storage_t *st, storage_user_fn fn, void *arg)
{
    sqlite3_stmt *s = st->q[Q_USER_LIST];
    if (storage_walk_busy(s, "user_list"))
        return -1;
    storage_walk_cb_t cb = { .user = fn, .arg = arg };
    return storage_walk(st, s, "user_list", &cb);
}

/* Reads count(*) from s (already bound); -1 on error. */
static int storage_count_rows(storage_t *st, sqlite3_stmt *s, const char *op)
{
    int rc = storage_step(st, s, op);
    if (rc < 0)
        return -1;
    sqlite3_int64 n = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    storage_done(s);
    return n > INT_MAX ? INT_MAX : (int)n;
}

int storage_user_count(storage_t *st)
{
    return storage_count_rows(st, st->q[Q_USER_COUNT], "user_count");
}

/* ------------------------------------------------------------ records */

int storage_get(storage_t *st, const char *owner, const char *coll, const char *key,
                char **val, size_t *len)
{
    sqlite3_stmt *s = st->q[Q_GET];
    const char *op = "get";
    if (val)
        *val = NULL;
    if (len)
        *len = 0;
    if (bind_oc(st, s, owner, coll, op) < 0 || bind_text(st, s, 3, key, op) < 0)
        return -1;
    int rc = storage_step(st, s, op);
    if (rc < 0)
        return -1;
    if (rc == SQLITE_ROW && val)
        *val = column_dup(s, 0, len);
    storage_done(s);
    return rc == SQLITE_ROW ? 0 : 1;
}

int storage_put(storage_t *st, const char *owner, const char *coll, const char *key,
                const char *val, size_t len)
{
    sqlite3_stmt *s = st->q[Q_PUT];
    const char *op = "put";
    if (!key) {
        log_error("storage: op=put error=\"missing key\"");
        return -1;
    }
    if (bind_oc(st, s, owner, coll, op) < 0 || bind_text(st, s, 3, key, op) < 0 ||
        bind_blob(st, s, 4, val, len, op) < 0)
        return -1;
    return storage_exec(st, Q_PUT, op);
}

/* 1 when there was no such record. */
int storage_del(storage_t *st, const char *owner, const char *coll, const char *key)
{
    sqlite3_stmt *s = st->q[Q_DEL];
    const char *op = "del";
    if (bind_oc(st, s, owner, coll, op) < 0 || bind_text(st, s, 3, key, op) < 0)
        return -1;
    if (storage_exec(st, Q_DEL, op) < 0)
        return -1;
    return sqlite3_changes(st->db) == 0 ? 1 : 0;
}

int storage_del_all(storage_t *st, const char *owner, const char *coll)
{
    if (bind_oc(st, st->q[Q_DEL_ALL], owner, coll, "del_all") < 0)
        return -1;
    return storage_exec(st, Q_DEL_ALL, "del_all");
}

/* The key is the record's sequence number, which AUTOINCREMENT never reuses,
 * even after deletes: keys of a collection only grow. Inserted with no key,
 * then given its seq as key, in one savepoint. */
int storage_append(storage_t *st, const char *owner, const char *coll, const char *val, size_t len)
{
    const char *op = "append";
    if (!owner || !coll) {
        log_error("storage: op=append error=\"missing owner or collection\"");
        return -1;
    }
    if (op_begin(st, op) < 0)
        return -1;
    sqlite3_stmt *s = st->q[Q_APPEND];
    if (bind_oc(st, s, owner, coll, op) < 0 || bind_blob(st, s, 3, val, len, op) < 0 ||
        storage_exec(st, Q_APPEND, op) < 0)
        return op_end(st, 0, op);
    s = st->q[Q_APPEND_KEY];
    if (sqlite3_bind_int64(s, 1, sqlite3_last_insert_rowid(st->db)) != SQLITE_OK) {
        storage_log_err(st, op);
        storage_done(s);
        return op_end(st, 0, op);
    }
    if (storage_exec(st, Q_APPEND_KEY, op) < 0)
        return op_end(st, 0, op);
    return op_end(st, 1, op);
}

/* Values handed to fn are valid only during the call and are not
 * NUL-terminated (they may hold NUL bytes; len is exact). */
int storage_list(storage_t *st, const char *owner, const char *coll, storage_rec_fn fn, void *arg)
{
    sqlite3_stmt *s = st->q[Q_LIST];
    if (storage_walk_busy(s, "list") || bind_oc(st, s, owner, coll, "list") < 0)
        return -1;
    storage_walk_cb_t cb = { .rec = fn, .arg = arg };
    return storage_walk(st, s, "list", &cb);
}

int storage_count(storage_t *st, const char *owner, const char *coll)
{
    if (bind_oc(st, st->q[Q_COUNT], owner, coll, "count") < 0)
        return -1;
    return storage_count_rows(st, st->q[Q_COUNT], "count");
}
