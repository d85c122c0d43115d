/* storage_sqlite: the SQLite driver of storage.h (the default).
 *
 * Owns one database connection and every statement it runs, each prepared
 * once at open and reset (bindings cleared) after every use, so a bound key or
 * value never outlives the request that bound it. The schema lives in the
 * migration list below; PRAGMA user_version holds how many of its steps a file
 * has had, and open applies the missing ones, each in its own transaction. A
 * file from a newer build (a higher version) is refused.
 *
 * Synchronous: submit runs the request and finishes it before returning, so
 * an _async caller's callback runs inside its call. A local write in WAL mode
 * with synchronous=NORMAL takes microseconds (docs/storage.md has the
 * figures), less than handing it to a worker thread would cost.
 *
 * Records of log collections (storage_coll_is_log: message archives) live in
 * tables of their own, laid out for batches of appends and ranges by stamp;
 * storage_sqlite_log.c owns them and every request on such a collection
 * (sql_run hands them over). This file keeps the connection, the schema,
 * transactions and the generic `records` table; storage_sqlite.h is what the
 * two files share.
 *
 * Invariants and choices:
 *  - At most one explicit transaction (storage_begin) at a time: a nested begin
 *    fails. Operations made of several statements (append, user delete) run in
 *    a SAVEPOINT, so they are atomic both on their own and inside a caller's
 *    transaction (where they commit with it).
 *  - storage_put keeps a replaced record's sequence number: it stays where it
 *    was in its collection's list order (an upsert, not delete + insert).
 *  - seq is unique across `records` and `logs`: each table's AUTOINCREMENT
 *    counter, `records` taking max(both) + 1 (NEXT_SEQ) and a trigger
 *    pushing logs' counter past it (schema step v4).
 *  - Records are not tied to accounts by a foreign key (an owner may be a
 *    domain or a service, not only an account); user delete removes an
 *    account's records explicitly, in the same transaction.
 *  - Not thread-safe: one storage_t belongs to one thread. The one other
 *    thread is the WAL's checkpointer, with a connection of its own
 *    (storage_sqlite_ckpt.c): the writing thread never waits for a
 *    checkpoint's fsyncs. */
#include "storage_sqlite.h"
#include "storage_sqlite_ckpt.h"
#include "storage_sqlite_vfs.h"
#include "log.h"
#include "strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* How long a writer waits for another connection's lock (weftctl, a backup)
 * before the call fails. */
#define SQL_BUSY_MS 5000

/* The schema, one step per version: step i brings a file from version i to
 * i + 1. Steps are never edited once released; a change is a new step. */
/* v6's triggers: the row that shares old's tail takes its bytes back. */
#define LOGS_GIVE_TAIL_BACK \
    "  UPDATE logs SET value = CAST(value || substr(old.value, base_at + 1) AS BLOB)," \
    "    base = NULL, base_at = NULL WHERE key = old.twin AND base = old.seq;"
/* v7's: the same, for the row twin_after seqs after old. */
#define LOGS_GIVE_TAIL_BACK_V7 \
    "  UPDATE logs SET value = CAST(value || substr(old.value, base_at + 1) AS BLOB)," \
    "    base = NULL, base_at = NULL WHERE seq = old.seq + old.twin_after AND base = old.seq;"

static const char *const sql_migrations[] = {
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
    /* v2: a stamp per record (microseconds since the epoch; 0 for records
     * written before v2) for ranges by time. */
    "ALTER TABLE records ADD COLUMN stamp INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX records_stamp ON records (owner, coll, stamp, seq);",
    /* v3: a tag per record, indexed where there is one (ranges of one tag).
     * mod_mam kept each archived message twice, in "mam" and in
     * "mam:<contact>"; the contact becomes the tag of the "mam" record and
     * the copies go (docs/mam.md). A temporary table keyed like the join
     * keeps this one pass over each side, whatever the archive's size. */
    "ALTER TABLE records ADD COLUMN tag TEXT;"
    "CREATE TEMP TABLE mam_tags AS SELECT owner, key, substr(coll, 5) AS tag FROM records"
    "  WHERE substr(coll, 1, 4) = 'mam:';"
    "CREATE INDEX temp.mam_tags_key ON mam_tags (owner, key);"
    "UPDATE records SET tag = (SELECT t.tag FROM mam_tags t"
    "  WHERE t.owner = records.owner AND t.key = records.key LIMIT 1) WHERE coll = 'mam';"
    "DELETE FROM records WHERE substr(coll, 1, 4) = 'mam:';"
    "DROP TABLE temp.mam_tags;"
    "CREATE INDEX records_tag ON records (owner, coll, tag, stamp, seq) WHERE tag IS NOT NULL;",
    /* v4: log collections (storage_coll_is_log: "mam", "muc-archive" when
     * this step was written) move to a table of their own, `logs`, with the
     * owner and collection as one integer (a row of log_streams) and the tag
     * as another (log_tags): 4 B-trees per record keyed by integers and the
     * time-ordered key, where `records` had 5 keyed by long text
     * (docs/storage.md, "Log collections"). Records keep their seq (RSM
     * after-points stay valid). log_streams is AUTOINCREMENT so that an id
     * is never given to another stream, even after a user delete removed
     * its row (an id cached by another process then names nothing).
     * Sequence numbers stay unique across both tables: logs' AUTOINCREMENT
     * starts above every seq `records` ever gave, records take theirs above
     * both (Q_PUT, Q_APPEND) and push logs' past it (the trigger). */
    "CREATE TABLE log_streams ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  owner TEXT NOT NULL,"
    "  coll TEXT NOT NULL,"
    "  UNIQUE (owner, coll));"
    "CREATE TABLE log_tags ("
    "  id INTEGER PRIMARY KEY,"
    "  tag TEXT NOT NULL UNIQUE);"
    "CREATE TABLE logs ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  stream INTEGER NOT NULL,"
    "  stamp INTEGER NOT NULL,"
    "  tag INTEGER,"
    "  key TEXT,"
    "  value BLOB NOT NULL);"
    "INSERT INTO log_streams (owner, coll) SELECT DISTINCT owner, coll FROM records"
    "  WHERE coll IN ('mam', 'muc-archive') ORDER BY owner, coll;"
    "INSERT INTO log_tags (tag) SELECT DISTINCT tag FROM records"
    "  WHERE coll IN ('mam', 'muc-archive') AND tag IS NOT NULL ORDER BY tag;"
    "INSERT INTO logs (seq, stream, stamp, tag, key, value)"
    "  SELECT r.seq, s.id, r.stamp, t.id, r.key, r.value FROM records r"
    "  JOIN log_streams s ON s.owner = r.owner AND s.coll = r.coll"
    "  LEFT JOIN log_tags t ON t.tag = r.tag"
    "  WHERE r.coll IN ('mam', 'muc-archive') ORDER BY r.seq;"
    "DELETE FROM records WHERE coll IN ('mam', 'muc-archive');"
    "CREATE UNIQUE INDEX logs_key ON logs (key, stream);"
    "CREATE INDEX logs_stamp ON logs (stream, stamp);"
    "CREATE INDEX logs_tag ON logs (stream, tag, stamp) WHERE tag IS NOT NULL;"
    "INSERT INTO sqlite_sequence (name, seq) SELECT 'logs', 0"
    "  WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'logs');"
    "UPDATE sqlite_sequence SET seq = (SELECT max(seq) FROM sqlite_sequence"
    "  WHERE name IN ('records', 'logs')) WHERE name IN ('records', 'logs');"
    "CREATE TRIGGER records_seq AFTER INSERT ON records BEGIN"
    "  UPDATE sqlite_sequence SET seq = new.seq WHERE name = 'logs' AND seq < new.seq;"
    "  END;",
    /* v5: log records are listed by stream and by tag in blocks of entries
     * (log_index, storage_sqlite_logidx.c) instead of the indexes logs_stamp
     * and logs_tag: an archive batch writes a block per list that grew, not
     * an index entry per record (docs/storage.md, "Log collections"). The
     * blocks are built by logidx_build (sql_migration_code below), which
     * drops the two indexes once it has read the records through them. */
    "CREATE TABLE log_index ("
    "  stream INTEGER NOT NULL,"
    "  tag INTEGER NOT NULL,"
    "  first_stamp INTEGER NOT NULL,"
    "  first_seq INTEGER NOT NULL,"
    "  last_stamp INTEGER NOT NULL,"
    "  min_seq INTEGER NOT NULL,"
    "  max_seq INTEGER NOT NULL,"
    "  n INTEGER NOT NULL,"
    "  data BLOB NOT NULL,"
    "  PRIMARY KEY (stream, tag, first_stamp, first_seq)) WITHOUT ROWID;",
    /* v6: shared tails (docs/storage.md, "Shared tails"). A log row with a
     * base keeps only the head of its value; the rest is the base row's
     * value from byte base_at + 1 on (a base row always holds its whole
     * value). A base row names the key of the row that shares its tail
     * (twin), so that when it is deleted, or its value replaced, that row
     * takes its bytes back (from old.value) through the key index, with no
     * index of its own: every path that removes a row (a record's delete,
     * a stream's, a user's, weftctl on the file) goes through these
     * triggers, so no row can lose its tail. */
    "ALTER TABLE logs ADD COLUMN base INTEGER;"
    "ALTER TABLE logs ADD COLUMN base_at INTEGER;"
    "ALTER TABLE logs ADD COLUMN twin TEXT;"
    "CREATE TRIGGER logs_base_delete AFTER DELETE ON logs WHEN old.twin IS NOT NULL BEGIN"
    LOGS_GIVE_TAIL_BACK
    "  END;"
    "CREATE TRIGGER logs_base_update AFTER UPDATE OF value ON logs WHEN old.twin IS NOT NULL"
    "  BEGIN"
    LOGS_GIVE_TAIL_BACK
    "  END;",
    /* v7: stamped keys (docs/storage.md, "Stamped keys"). A row written
     * with a key that begins with its stamp, new in its stream (stamped =
     * 1: mod_mam's ids), is found by key through its stream's list at that
     * stamp, not through logs_key: the index holds only the other rows,
     * and an archived message costs one B-tree insert less. A base row no
     * longer names its sharer by key (the sharer may be stamped, out of the
     * index) but by how many seqs after it the sharer sits (twin_after):
     * the triggers reach it by seq. */
    "DROP TRIGGER logs_base_delete;"
    "DROP TRIGGER logs_base_update;"
    "ALTER TABLE logs ADD COLUMN twin_after INTEGER;"
    "UPDATE logs SET twin_after = (SELECT t.seq - logs.seq FROM logs t"
    "  WHERE t.key = logs.twin AND t.base = logs.seq) WHERE twin IS NOT NULL;"
    "ALTER TABLE logs DROP COLUMN twin;"
    "ALTER TABLE logs ADD COLUMN stamped INTEGER;"
    "DROP INDEX logs_key;"
    "CREATE UNIQUE INDEX logs_key ON logs (key, stream) WHERE stamped IS NULL;"
    "CREATE TRIGGER logs_base_delete AFTER DELETE ON logs WHEN old.twin_after IS NOT NULL BEGIN"
    LOGS_GIVE_TAIL_BACK_V7
    "  END;"
    "CREATE TRIGGER logs_base_update AFTER UPDATE OF value ON logs"
    "  WHEN old.twin_after IS NOT NULL BEGIN"
    LOGS_GIVE_TAIL_BACK_V7
    "  END;",
};
#define SQL_VERSION ((int)(sizeof sql_migrations / sizeof sql_migrations[0]))

/* Steps that need code after their SQL, by the version they bring a file to. */
static int (*const sql_migration_code[SQL_VERSION + 1])(sqlite3 *, char *, size_t) = {
    [5] = logidx_build,
};

enum {
    Q_BEGIN, Q_COMMIT, Q_ROLLBACK,
    Q_SP_BEGIN, Q_SP_RELEASE, Q_SP_ROLLBACK,
    Q_USER_CREATE, Q_USER_GET, Q_USER_SET, Q_USER_DEL, Q_USER_DEL_RECORDS,
    Q_USER_EXISTS, Q_USER_LIST, Q_USER_COUNT,
    Q_GET, Q_PUT, Q_DEL, Q_DEL_ALL, Q_APPEND, Q_APPEND_KEY, Q_LIST, Q_COUNT,
    Q_KEY_POS, Q_RANGE_SEQ, Q_RANGE_SEQ_REV, Q_RANGE_STAMP, Q_RANGE_STAMP_REV,
    Q_TAG_SEQ, Q_TAG_SEQ_REV, Q_TAG_STAMP, Q_TAG_STAMP_REV,
    Q_SCAN, Q_IMPORT,
    Q_COUNT_ALL
};

/* Ranges: ?3/?4 the after point (seq, stamp), ?5/?6 the before point, ?7/?8
 * the stamp bounds, ?9 the limit (-1: none), ?10 the tag of a tag range (its
 * own statements: "tag = ?10" is what lets SQLite use the partial index
 * records_tag). Absent bounds are the extremes. Rows: seq, stamp, key,
 * value, tag (sql_rows). */
#define REC_COLS "SELECT seq, stamp, key, value, tag FROM records "
#define RANGE_HEAD REC_COLS "WHERE owner = ?1 AND coll = ?2 AND stamp >= ?7 AND stamp <= ?8 AND "
#define TAG_HEAD REC_COLS "WHERE owner = ?1 AND coll = ?2 AND tag = ?10" \
    " AND stamp >= ?7 AND stamp <= ?8 AND "
#define RANGE_BY_SEQ "seq > ?3 AND seq < ?5 ORDER BY seq "
#define RANGE_BY_STAMP "(stamp, seq) > (?4, ?3) AND (stamp, seq) < (?6, ?5) ORDER BY stamp "

/* A new record's seq: above every seq either table has given (their
 * AUTOINCREMENT counters), so that seq stays unique in the database (the
 * trigger records_seq then moves logs' counter past it). The logs' own
 * inserts, the many, need nothing of the sort: their counter is never below
 * records'. */
#define NEXT_SEQ "(SELECT coalesce(max(seq), 0) + 1 FROM sqlite_sequence" \
    " WHERE name IN ('records', 'logs'))"

static const char *const sql_text[Q_COUNT_ALL] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_SP_BEGIN] = "SAVEPOINT storage_op",
    [Q_SP_RELEASE] = "RELEASE storage_op",
    [Q_SP_ROLLBACK] = "ROLLBACK TO storage_op",
    [Q_USER_CREATE] = "INSERT INTO users (bare, sha256, sha1, created) VALUES (?1, ?2, ?3, ?4)"
                      " ON CONFLICT (bare) DO NOTHING",
    [Q_USER_GET] = "SELECT sha256, sha1, created FROM users WHERE bare = ?1",
    [Q_USER_SET] = "UPDATE users SET sha256 = ?2, sha1 = ?3 WHERE bare = ?1",
    [Q_USER_DEL] = "DELETE FROM users WHERE bare = ?1",
    [Q_USER_DEL_RECORDS] = "DELETE FROM records WHERE owner = ?1",
    [Q_USER_EXISTS] = "SELECT 1 FROM users WHERE bare = ?1",
    [Q_USER_LIST] = "SELECT bare FROM users ORDER BY bare",
    [Q_USER_COUNT] = "SELECT count(*) FROM users",
    [Q_GET] = "SELECT value FROM records WHERE owner = ?1 AND coll = ?2 AND key = ?3",
    [Q_PUT] = "INSERT INTO records (seq, owner, coll, key, value, stamp, tag)"
              " VALUES (" NEXT_SEQ ", ?1, ?2, ?3, ?4, ?5, ?6)"
              " ON CONFLICT (owner, coll, key) DO UPDATE SET value = excluded.value,"
              " stamp = excluded.stamp, tag = excluded.tag",
    [Q_DEL] = "DELETE FROM records WHERE owner = ?1 AND coll = ?2 AND key = ?3",
    [Q_DEL_ALL] = "DELETE FROM records WHERE owner = ?1 AND coll = ?2",
    [Q_APPEND] = "INSERT INTO records (seq, owner, coll, key, value, stamp)"
                 " VALUES (" NEXT_SEQ ", ?1, ?2, NULL, ?3, ?4)",
    [Q_APPEND_KEY] = "UPDATE records SET key = CAST(seq AS TEXT) WHERE seq = ?1",
    [Q_LIST] = REC_COLS "WHERE owner = ?1 AND coll = ?2 ORDER BY seq",
    [Q_COUNT] = "SELECT count(*) FROM records WHERE owner = ?1 AND coll = ?2",
    [Q_KEY_POS] = "SELECT seq, stamp, tag FROM records WHERE owner = ?1 AND coll = ?2 AND key = ?3",
    [Q_RANGE_SEQ] = RANGE_HEAD RANGE_BY_SEQ "ASC LIMIT ?9",
    [Q_RANGE_SEQ_REV] = RANGE_HEAD RANGE_BY_SEQ "DESC LIMIT ?9",
    [Q_RANGE_STAMP] = RANGE_HEAD RANGE_BY_STAMP "ASC, seq ASC LIMIT ?9",
    [Q_RANGE_STAMP_REV] = RANGE_HEAD RANGE_BY_STAMP "DESC, seq DESC LIMIT ?9",
    [Q_TAG_SEQ] = TAG_HEAD RANGE_BY_SEQ "ASC LIMIT ?9",
    [Q_TAG_SEQ_REV] = TAG_HEAD RANGE_BY_SEQ "DESC LIMIT ?9",
    [Q_TAG_STAMP] = TAG_HEAD RANGE_BY_STAMP "ASC, seq ASC LIMIT ?9",
    [Q_TAG_STAMP_REV] = TAG_HEAD RANGE_BY_STAMP "DESC, seq DESC LIMIT ?9",
    [Q_SCAN] = "SELECT seq, stamp, key, value, tag, owner, coll FROM records WHERE seq > ?1"
               " UNION ALL SELECT l.seq, l.stamp, l.key, " SQL_LOG_VALUE ", t.tag, s.owner, s.coll"
               " FROM logs l CROSS JOIN log_streams s ON s.id = l.stream"
               " LEFT JOIN log_tags t ON t.id = l.tag"
               " LEFT JOIN logs b ON b.seq = l.base WHERE l.seq > ?1"
               " ORDER BY 1 LIMIT ?2",
    [Q_IMPORT] = "INSERT INTO records (seq, owner, coll, key, value, stamp, tag)"
                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
};

/* ------------------------------------------------------------ helpers */

static void sql_log_err(sql_t *d, const char *op)
{
    log_error("storage: driver=sqlite op=%s code=%d error=\"%s\"", op,
              sqlite3_extended_errcode(d->db), sqlite3_errmsg(d->db));
}

void sql_reset(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Steps s once: SQLITE_ROW, SQLITE_DONE, or -1 (logged; s is then reset). */
int sql_step(sql_t *d, sqlite3_stmt *s, const char *op)
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        return rc;
    sql_log_err(d, op);
    sql_reset(s);
    return -1;
}

/* Runs a statement that returns no rows; 0 or -1. */
static int sql_exec(sql_t *d, int q, const char *op)
{
    if (sql_step(d, d->q[q], op) < 0)
        return -1;
    sql_reset(d->q[q]);
    return 0;
}

int sql_bind_text(sql_t *d, sqlite3_stmt *s, int i, const char *v, const char *op)
{
    int rc = v ? sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
    if (rc != SQLITE_OK) {
        sql_log_err(d, op);
        sql_reset(s);
        return -1;
    }
    return 0;
}

int sql_bind_int(sql_t *d, sqlite3_stmt *s, int i, int64_t v, const char *op)
{
    if (sqlite3_bind_int64(s, i, (sqlite3_int64)v) != SQLITE_OK) {
        sql_log_err(d, op);
        sql_reset(s);
        return -1;
    }
    return 0;
}

int sql_bind_blob(sql_t *d, sqlite3_stmt *s, int i, const char *v, size_t len, const char *op)
{
    /* A NULL pointer would bind SQL NULL: an empty value is an empty blob. */
    int rc = sqlite3_bind_blob64(s, i, v ? v : "", (sqlite3_uint64)len, SQLITE_STATIC);
    if (rc != SQLITE_OK) {
        sql_log_err(d, op);
        sql_reset(s);
        return -1;
    }
    return 0;
}

/* Binds owner and coll (?1, ?2), the start of most record statements. */
static int bind_oc(sql_t *d, sqlite3_stmt *s, const storage_req_t *r)
{
    return sql_bind_text(d, s, 1, r->owner, r->opname) < 0 ||
                   sql_bind_text(d, s, 2, r->coll, r->opname) < 0 ? -1 : 0;
}

/* Copies column i of the current row into a new NUL-terminated string. */
char *sql_column_dup(sqlite3_stmt *s, int i, size_t *len)
{
    const void *p = sqlite3_column_blob(s, i);
    size_t n = (size_t)sqlite3_column_bytes(s, i);
    if (len)
        *len = n;
    return storage_memdup(p, n);
}

/* Multi-statement operations run inside a savepoint: on their own it is a
 * transaction; inside storage_begin it nests and commits with the caller. */
int sql_op_begin(sql_t *d, const char *op)
{
    return sql_exec(d, Q_SP_BEGIN, op);
}

int sql_op_end(sql_t *d, int ok, const char *op)
{
    if (ok && sql_exec(d, Q_SP_RELEASE, op) == 0) {
        if (sqlite3_get_autocommit(d->db))
            sql_log_settled(d, 1);      /* the savepoint was the transaction */
        return 0;
    }
    sql_log_settled(d, 0);
    /* Failure (or a failed release, e.g. a commit that could not write): undo
     * and leave the savepoint. These may fail too if SQLite already rolled the
     * whole transaction back; nothing else is left to undo then. */
    if (!sqlite3_get_autocommit(d->db)) {
        sqlite3_step(d->q[Q_SP_ROLLBACK]);
        sql_reset(d->q[Q_SP_ROLLBACK]);
        sqlite3_step(d->q[Q_SP_RELEASE]);
        sql_reset(d->q[Q_SP_RELEASE]);
    }
    if (d->in_txn && sqlite3_get_autocommit(d->db)) {
        log_error("storage: driver=sqlite op=%s error=\"the enclosing transaction was rolled back\"",
                  op);
        d->in_txn = 0;
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
static int sql_mkdirs(const char *path, char *err, size_t errlen)
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
 * file's mode. An existing file is left alone here: see sql_restrict. */
static int sql_create_file(const char *path, char *err, size_t errlen)
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
static void sql_restrict(const char *path)
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
static int sql_exec_text(sqlite3 *db, const char *sql, const char *path, char *err,
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

static int sql_int_pragma(sqlite3 *db, const char *sql, int *out)
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

/* Several processes may open one file at once (sm instances sharing it,
 * docs/operations.md): each step reads the version again under the write
 * lock, so a step another process has just done is not run twice. */
static int sql_migrate(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    for (;;) {
        int version;
        if (sql_exec_text(db, "BEGIN IMMEDIATE", path, err, errlen) < 0)
            return -1;
        if (sql_int_pragma(db, "PRAGMA user_version", &version) < 0) {
            errf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
        if (version > SQL_VERSION) {
            errf(err, errlen, "%s: schema version %d is newer than this build knows (%d)", path,
                 version, SQL_VERSION);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
        if (version == SQL_VERSION)
            return sql_exec_text(db, "COMMIT", path, err, errlen);
        char set[64];
        snprintf(set, sizeof set, "PRAGMA user_version = %d", version + 1);
        if (sql_exec_text(db, sql_migrations[version], path, err, errlen) < 0 ||
            (sql_migration_code[version + 1] &&
             sql_migration_code[version + 1](db, err, errlen) < 0) ||
            sql_exec_text(db, set, path, err, errlen) < 0 ||
            sql_exec_text(db, "COMMIT", path, err, errlen) < 0) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
        log_info("storage: driver=sqlite path=%s event=migrated version=%d", path, version + 1);
    }
}

static void sql_close(storage_t *st)
{
    sql_t *d = st->drv_data;
    if (!d)
        return;
    if (d->db && !sqlite3_get_autocommit(d->db)) {
        log_warn("storage: driver=sqlite event=close-in-transaction action=rollback");
        sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
    }
    sql_ckpt_stop(d->ckpt, d->db);
    for (int i = 0; i < Q_COUNT_ALL; i++)
        sqlite3_finalize(d->q[i]);
    sql_log_close(d);
    if (d->db) {
        /* Keeps the query planner's statistics fresh; cheap when nothing changed. */
        if (d->q[0])
            sqlite3_exec(d->db, "PRAGMA optimize", NULL, NULL, NULL);
        if (sqlite3_close(d->db) != SQLITE_OK)
            log_error("storage: driver=sqlite op=close error=\"%s\"", sqlite3_errmsg(d->db));
    }
    free(d);
    st->drv_data = NULL;
}

static int sql_open(storage_t *st, const char *path, char *err, size_t errlen)
{
    if (!*path) {
        errf(err, errlen, "no database path");
        return -1;
    }
    if (sql_mkdirs(path, err, errlen) < 0 || sql_create_file(path, err, errlen) < 0)
        return -1;

    sql_t *d = xcalloc(1, sizeof *d + Q_COUNT_ALL * sizeof d->q[0]);
    st->drv_data = d;
    /* SQLite's memory statistics take a mutex and update counters on each
     * of its allocations, and nothing here reads them: 3 % of an archived
     * record's instructions in the driver. Only possible before the library
     * initializes (the first open); later calls are refused, harmlessly. */
    static int memstatus_off;
    if (!memstatus_off) {
        memstatus_off = 1;
        sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &d->db, flags, sql_vfs_name()) != SQLITE_OK) {
        errf(err, errlen, "%s: %s", path, d->db ? sqlite3_errmsg(d->db) : "out of memory");
        goto fail;
    }
    sqlite3_extended_result_codes(d->db, 1);
    sqlite3_busy_timeout(d->db, SQL_BUSY_MS);

    /* journal_mode answers with the mode in force: anything but "wal" means
     * the file could not be switched (read-only, or not a database). */
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(d->db, "PRAGMA journal_mode = WAL", -1, &s, NULL) != SQLITE_OK) {
        errf(err, errlen, "%s: %s", path, sqlite3_errmsg(d->db));
        goto fail;
    }
    int rc = sqlite3_step(s);
    const unsigned char *mode = rc == SQLITE_ROW ? sqlite3_column_text(s, 0) : NULL;
    if (!mode || strcmp((const char *)mode, "wal") != 0) {
        errf(err, errlen, "%s: cannot use WAL mode: %s", path,
             mode ? (const char *)mode : sqlite3_errmsg(d->db));
        sqlite3_finalize(s);
        goto fail;
    }
    sqlite3_finalize(s);

    if (sql_exec_text(d->db, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;", path, err,
                      errlen) < 0 ||
        sql_migrate(d->db, path, err, errlen) < 0)
        goto fail;

    for (int i = 0; i < Q_COUNT_ALL; i++) {
        if (sqlite3_prepare_v3(d->db, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT, &d->q[i],
                               NULL) != SQLITE_OK) {
            errf(err, errlen, "%s: preparing statement %d: %s", path, i, sqlite3_errmsg(d->db));
            goto fail;
        }
    }
    if (sql_log_open(d, err, errlen) < 0 || !(d->ckpt = sql_ckpt_start(d->db, path, err, errlen)))
        goto fail;
    sql_restrict(path);
    return 0;

fail:
    sql_close(st);
    return -1;
}

static void sql_set_cache(storage_t *st, size_t bytes)
{
    sql_t *d = st->drv_data;
    char text[64];
    /* A negative cache_size is in KiB, whatever the page size. */
    snprintf(text, sizeof text, "PRAGMA cache_size = -%zu", bytes / 1024 ? bytes / 1024 : 1);
    if (sqlite3_exec(d->db, text, NULL, NULL, NULL) != SQLITE_OK)
        log_warn("storage: driver=sqlite op=cache-size error=\"%s\"", sqlite3_errmsg(d->db));
}

/* ------------------------------------------------------------ transactions */

static int sql_begin(sql_t *d)
{
    if (d->in_txn) {
        log_error("storage: driver=sqlite op=begin error=\"nested transactions are not supported\"");
        return -1;
    }
    if (sql_exec(d, Q_BEGIN, "begin") < 0)
        return -1;
    d->in_txn = 1;
    return 0;
}

static int sql_commit(sql_t *d)
{
    if (!d->in_txn) {
        log_error("storage: driver=sqlite op=commit error=\"no transaction\"");
        return -1;
    }
    if (sqlite3_get_autocommit(d->db)) {
        d->in_txn = 0;
        log_error("storage: driver=sqlite op=commit error=\"the transaction was already rolled back\"");
        sql_log_settled(d, 0);
        return -1;
    }
    /* The queued puts and index entries are written inside the transaction
     * (in_txn still set: a put whose key is taken replaces in a savepoint). */
    int flushed = sql_log_flush(d, "commit") == 0;
    d->in_txn = 0;
    if (flushed && sql_exec(d, Q_COMMIT, "commit") == 0) {
        sql_log_settled(d, 1);
        return 0;
    }
    if (!sqlite3_get_autocommit(d->db))
        sql_exec(d, Q_ROLLBACK, "rollback");
    sql_log_settled(d, 0);
    return -1;
}

/* Rolling back with no transaction open does nothing (callers may roll back
 * after a failed commit, which has already done so). */
static int sql_rollback(sql_t *d)
{
    d->in_txn = 0;
    sql_log_settled(d, 0);
    if (sqlite3_get_autocommit(d->db))
        return 0;
    return sql_exec(d, Q_ROLLBACK, "rollback");
}

/* ------------------------------------------------------------ accounts */

static int sql_user_create(sql_t *d, storage_req_t *r)
{
    sqlite3_stmt *s = d->q[Q_USER_CREATE];
    if (sql_bind_text(d, s, 1, r->owner, r->opname) < 0 ||
        sql_bind_text(d, s, 2, r->sha256, r->opname) < 0 ||
        sql_bind_text(d, s, 3, r->sha1, r->opname) < 0 ||
        sql_bind_int(d, s, 4, r->created, r->opname) < 0 ||
        sql_exec(d, Q_USER_CREATE, r->opname) < 0)
        return -1;
    return sqlite3_changes(d->db) == 0 ? 1 : 0;
}

static int sql_user_get(sql_t *d, storage_req_t *r)
{
    sqlite3_stmt *s = d->q[Q_USER_GET];
    if (sql_bind_text(d, s, 1, r->owner, r->opname) < 0)
        return -1;
    int rc = sql_step(d, s, r->opname);
    if (rc < 0)
        return -1;
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_type(s, 0) != SQLITE_NULL)
            r->res.sha256 = sql_column_dup(s, 0, NULL);
        if (sqlite3_column_type(s, 1) != SQLITE_NULL)
            r->res.sha1 = sql_column_dup(s, 1, NULL);
        r->res.created = sqlite3_column_int64(s, 2);
    }
    sql_reset(s);
    return rc == SQLITE_ROW ? 0 : 1;
}

static int sql_user_set(sql_t *d, storage_req_t *r)
{
    sqlite3_stmt *s = d->q[Q_USER_SET];
    if (sql_bind_text(d, s, 1, r->owner, r->opname) < 0 ||
        sql_bind_text(d, s, 2, r->sha256, r->opname) < 0 ||
        sql_bind_text(d, s, 3, r->sha1, r->opname) < 0 || sql_exec(d, Q_USER_SET, r->opname) < 0)
        return -1;
    return sqlite3_changes(d->db) == 0 ? 1 : 0;
}

static int sql_user_delete(sql_t *d, storage_req_t *r)
{
    const char *op = r->opname;
    /* The log index's queue is written first, outside the savepoint: a
     * savepoint rolled back would take entries of rows it does not undo. */
    if (sql_log_flush(d, op) < 0 || sql_op_begin(d, op) < 0)
        return -1;
    if (sql_bind_text(d, d->q[Q_USER_DEL], 1, r->owner, op) < 0 || sql_exec(d, Q_USER_DEL, op) < 0)
        return sql_op_end(d, 0, op);
    int found = sqlite3_changes(d->db) > 0;
    if (sql_bind_text(d, d->q[Q_USER_DEL_RECORDS], 1, r->owner, op) < 0 ||
        sql_exec(d, Q_USER_DEL_RECORDS, op) < 0 || sql_log_user_delete(d, r->owner, op) < 0)
        return sql_op_end(d, 0, op);
    if (sql_op_end(d, 1, op) < 0)
        return -1;
    return found ? 0 : 1;
}

/* Reads one integer (count(*), or 1 for a row's existence) into res->n. */
int sql_one_int(sql_t *d, sqlite3_stmt *s, storage_req_t *r)
{
    int rc = sql_step(d, s, r->opname);
    if (rc < 0)
        return -1;
    r->res.n = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sql_reset(s);
    return 0;
}

static int sql_user_list(sql_t *d, storage_req_t *r)
{
    sqlite3_stmt *s = d->q[Q_USER_LIST];
    int rc;
    while ((rc = sql_step(d, s, r->opname)) == SQLITE_ROW)
        storage_res_add_name(&r->res, (const char *)sqlite3_column_text(s, 0));
    if (rc < 0)
        return -1;
    sql_reset(s);
    return 0;
}

/* ------------------------------------------------------------ records */

static int sql_get(sql_t *d, storage_req_t *r)
{
    sqlite3_stmt *s = d->q[Q_GET];
    if (bind_oc(d, s, r) < 0 || sql_bind_text(d, s, 3, r->key, r->opname) < 0)
        return -1;
    int rc = sql_step(d, s, r->opname);
    if (rc < 0)
        return -1;
    if (rc == SQLITE_ROW)
        r->res.val = sql_column_dup(s, 0, &r->res.len);
    sql_reset(s);
    return rc == SQLITE_ROW ? 0 : 1;
}

static int sql_put(sql_t *d, storage_req_t *r)
{
    sqlite3_stmt *s = d->q[Q_PUT];
    if (bind_oc(d, s, r) < 0 || sql_bind_text(d, s, 3, r->key, r->opname) < 0 ||
        sql_bind_blob(d, s, 4, r->val, r->len, r->opname) < 0 ||
        sql_bind_int(d, s, 5, r->stamp, r->opname) < 0 || sql_bind_text(d, s, 6, r->tag, r->opname) < 0)
        return -1;
    return sql_exec(d, Q_PUT, r->opname);
}

/* Deletes by the bound statement q; 1 when nothing matched (del only). */
static int sql_del(sql_t *d, storage_req_t *r, int q)
{
    sqlite3_stmt *s = d->q[q];
    if (bind_oc(d, s, r) < 0 || (q == Q_DEL && sql_bind_text(d, s, 3, r->key, r->opname) < 0) ||
        sql_exec(d, q, r->opname) < 0)
        return -1;
    return q == Q_DEL && sqlite3_changes(d->db) == 0 ? 1 : 0;
}

/* The key is the record's sequence number, which AUTOINCREMENT never reuses,
 * even after deletes: keys of a collection only grow. Inserted with no key,
 * then given its seq as key, in one savepoint. */
static int sql_append(sql_t *d, storage_req_t *r)
{
    const char *op = r->opname;
    if (sql_op_begin(d, op) < 0)
        return -1;
    sqlite3_stmt *s = d->q[Q_APPEND];
    if (bind_oc(d, s, r) < 0 || sql_bind_blob(d, s, 3, r->val, r->len, op) < 0 ||
        sql_bind_int(d, s, 4, r->stamp, op) < 0 || sql_exec(d, Q_APPEND, op) < 0)
        return sql_op_end(d, 0, op);
    r->res.n = sqlite3_last_insert_rowid(d->db);
    if (sql_bind_int(d, d->q[Q_APPEND_KEY], 1, r->res.n, op) < 0 ||
        sql_exec(d, Q_APPEND_KEY, op) < 0)
        return sql_op_end(d, 0, op);
    return sql_op_end(d, 1, op);
}

/* Collects the rows of s (bound; columns seq, stamp, key, value, tag and,
 * for a scan, owner, coll) into the result. */
int sql_rows(sql_t *d, sqlite3_stmt *s, storage_req_t *r, int with_owner)
{
    int rc;
    while ((rc = sql_step(d, s, r->opname)) == SQLITE_ROW) {
        storage_rec_t *rec = storage_res_add(&r->res);
        rec->seq = sqlite3_column_int64(s, 0);
        rec->stamp = sqlite3_column_int64(s, 1);
        rec->key = sql_column_dup(s, 2, NULL);
        rec->val = sql_column_dup(s, 3, &rec->len);
        if (sqlite3_column_type(s, 4) != SQLITE_NULL)
            rec->tag = sql_column_dup(s, 4, NULL);
        if (with_owner) {
            rec->owner = sql_column_dup(s, 5, NULL);
            rec->coll = sql_column_dup(s, 6, NULL);
        }
    }
    if (rc < 0)
        return -1;
    sql_reset(s);
    return 0;
}

/* Where the record named key sits: *seq, *stamp; 1 when there is none (or,
 * in a tag range, when it has not that tag: it is not in the range's set). */
static int sql_key_pos(sql_t *d, storage_req_t *r, const char *key, int64_t *seq, int64_t *stamp)
{
    sqlite3_stmt *s = d->q[Q_KEY_POS];
    if (bind_oc(d, s, r) < 0 || sql_bind_text(d, s, 3, key, r->opname) < 0)
        return -1;
    int rc = sql_step(d, s, r->opname);
    if (rc < 0)
        return -1;
    int found = rc == SQLITE_ROW;
    if (found) {
        *seq = sqlite3_column_int64(s, 0);
        *stamp = sqlite3_column_int64(s, 1);
        const char *tag = (const char *)sqlite3_column_text(s, 2);
        if (r->range.tag && (!tag || strcmp(tag, r->range.tag) != 0))
            found = 0;
    }
    sql_reset(s);
    return found ? 0 : 1;
}

static int sql_range(sql_t *d, storage_req_t *r)
{
    const storage_range_t *q = &r->range;
    int64_t a_seq = -1, a_stamp = INT64_MIN, b_seq = INT64_MAX, b_stamp = INT64_MAX;
    int rc;
    if (q->after && (rc = sql_key_pos(d, r, q->after, &a_seq, &a_stamp)) != 0)
        return rc;
    if (q->before && (rc = sql_key_pos(d, r, q->before, &b_seq, &b_stamp)) != 0)
        return rc;
    int which = q->by_stamp ? (q->reverse ? Q_RANGE_STAMP_REV : Q_RANGE_STAMP)
                            : (q->reverse ? Q_RANGE_SEQ_REV : Q_RANGE_SEQ);
    if (q->tag)
        which += Q_TAG_SEQ - Q_RANGE_SEQ;      /* the same four, with the tag */
    sqlite3_stmt *s = d->q[which];
    int64_t limit = q->limit ? (int64_t)q->limit : -1;
    if (bind_oc(d, s, r) < 0 || sql_bind_int(d, s, 3, a_seq, r->opname) < 0 ||
        sql_bind_int(d, s, 4, a_stamp, r->opname) < 0 || sql_bind_int(d, s, 5, b_seq, r->opname) < 0 ||
        sql_bind_int(d, s, 6, b_stamp, r->opname) < 0 ||
        sql_bind_int(d, s, 7, q->since ? q->since : INT64_MIN, r->opname) < 0 ||
        sql_bind_int(d, s, 8, q->until ? q->until : INT64_MAX, r->opname) < 0 ||
        sql_bind_int(d, s, 9, limit, r->opname) < 0 ||
        (q->tag && sql_bind_text(d, s, 10, q->tag, r->opname) < 0))
        return -1;
    return sql_rows(d, s, r, 0);
}

static int sql_import(sql_t *d, storage_req_t *r)
{
    sqlite3_stmt *s = d->q[Q_IMPORT];
    if (sql_bind_int(d, s, 1, r->seq, r->opname) < 0 || sql_bind_text(d, s, 2, r->owner, r->opname) < 0 ||
        sql_bind_text(d, s, 3, r->coll, r->opname) < 0 || sql_bind_text(d, s, 4, r->key, r->opname) < 0 ||
        sql_bind_blob(d, s, 5, r->val, r->len, r->opname) < 0 ||
        sql_bind_int(d, s, 6, r->stamp, r->opname) < 0 || sql_bind_text(d, s, 7, r->tag, r->opname) < 0)
        return -1;
    return sql_exec(d, Q_IMPORT, r->opname);
}

static int sql_run(sql_t *d, storage_req_t *r);

/* put_many: each record as the put it stands for, its strings and value
 * left in the request's buffer; the log rows queued from them are written
 * before the request ends, so none points into the buffer after it. */
static int sql_put_many(sql_t *d, storage_req_t *r)
{
    int rc = 0;
    for (size_t i = 0; i < (size_t)r->num && rc == 0; i++) {
        const storage_put_rec_t *p = &r->many[i];
        storage_req_t one = {.op = SOP_PUT, .opname = "put", .borrowed = 1};
        one.owner = r->val + p->owner;
        one.coll = r->val + p->coll;
        one.key = r->val + p->key;
        one.tag = p->tag == STORAGE_NO_TAG ? NULL : r->val + p->tag;
        one.val = r->val + p->val;
        one.len = p->len;
        one.stamp = p->stamp;
        one.hint = p->hint;
        one.put_no = r->put_no + i;
        rc = sql_run(d, &one);
    }
    return sql_log_rows_flush(d, r->opname) < 0 ? -1 : rc;
}

static int sql_run(sql_t *d, storage_req_t *r)
{
    sqlite3_stmt *s;
    /* Import names its collection too; scan covers both tables itself. */
    if (r->coll && storage_coll_is_log(r->coll))
        return sql_log_run(d, r);
    switch (r->op) {
    case SOP_BEGIN: return sql_begin(d);
    case SOP_COMMIT: return sql_commit(d);
    case SOP_ROLLBACK: return sql_rollback(d);
    case SOP_USER_CREATE: case SOP_USER_IMPORT: return sql_user_create(d, r);
    case SOP_USER_GET: return sql_user_get(d, r);
    case SOP_USER_SET: return sql_user_set(d, r);
    case SOP_USER_DELETE: return sql_user_delete(d, r);
    case SOP_USER_EXISTS:
        s = d->q[Q_USER_EXISTS];
        return sql_bind_text(d, s, 1, r->owner, r->opname) < 0 ? -1 : sql_one_int(d, s, r);
    case SOP_USER_LIST: return sql_user_list(d, r);
    case SOP_USER_COUNT: return sql_one_int(d, d->q[Q_USER_COUNT], r);
    case SOP_GET: return sql_get(d, r);
    case SOP_PUT: return sql_put(d, r);
    case SOP_DEL: return sql_del(d, r, Q_DEL);
    case SOP_DEL_ALL: return sql_del(d, r, Q_DEL_ALL);
    case SOP_APPEND: return sql_append(d, r);
    case SOP_LIST:
        return bind_oc(d, d->q[Q_LIST], r) < 0 ? -1 : sql_rows(d, d->q[Q_LIST], r, 0);
    case SOP_COUNT:
        return bind_oc(d, d->q[Q_COUNT], r) < 0 ? -1 : sql_one_int(d, d->q[Q_COUNT], r);
    case SOP_RANGE: return sql_range(d, r);
    case SOP_SCAN:
        s = d->q[Q_SCAN];
        if (sql_bind_int(d, s, 1, r->seq, r->opname) < 0 ||
            sql_bind_int(d, s, 2, r->num > 0 ? r->num : -1, r->opname) < 0)
            return -1;
        return sql_rows(d, s, r, 1);
    case SOP_IMPORT: return sql_import(d, r);
    case SOP_PUT_MANY: return sql_put_many(d, r);
    case SOP_IMPORT_DONE: case SOP_PING: return 0;   /* AUTOINCREMENT follows imports */
    }
    return -1;
}

static void sql_submit(storage_t *st, storage_req_t *r)
{
    r->res.status = sql_run(st->drv_data, r);
    storage_req_done(st, r);
}

const storage_driver_t storage_sqlite_driver = {
    .name = "sqlite",
    .async = 0,
    .shares_tails = 1,
    .put_many = 1,
    .open = sql_open,
    .close = sql_close,
    .submit = sql_submit,
    .set_cache = sql_set_cache,
};
