/* test_storage: the one storage suite, run against every driver.
 *
 * Without WEFT_TEST_PGSQL it runs on SQLite, each test in a fresh directory;
 * with WEFT_TEST_PGSQL=<conninfo> (set by tests/pg_server.py, which starts a
 * server of its own) it runs on PostgreSQL, each test on emptied tables.
 * Covered: open (SQLite: directory and 0600 file creation, WAL, migrations
 * from an empty file and from v1, files that are not databases, unwritable
 * paths; both: a newer schema refused, unknown schemes), every account and
 * record call, persistence across close/open, cascading user delete, list
 * order and stopping, append keys and sequence numbers, ranges (both
 * directions, after/before keys, limits, stamps), binary values,
 * transactions, scan and import, the asynchronous form (with the put that
 * takes its strings), the record tests again on log collections
 * (storage_coll_is_log: SQLite's own table for archives, its v4 migration,
 * sequence numbers across both tables, user delete, cached ids after a
 * rollback or another connection's delete), and on PostgreSQL a
 * loop that keeps turning during a slow query and a reconnect after the
 * server dropped the connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#ifdef WEFT_HAVE_PGSQL
#include <libpq-fe.h>
#endif

#include "log.h"
#include "storage.h"
#include "strbuf.h"

typedef struct fixture {
    char dir[64];
    char path[512];     /* the storage URL: an SQLite path, or the conninfo */
    storage_t *st;
} fixture_t;

/* The PostgreSQL conninfo under test, or NULL for SQLite. */
static const char *pg_url;

#define SQLITE_ONLY() do { if (pg_url) skip(); } while (0)

/* The SQLite schema version this build makes (storage_sqlite.c). */
#define SQLITE_VERSION_NOW 7

/* Set by setup_log: the record tests run again with their collections
 * mapped to log collections (storage_coll_is_log), which the SQLite driver
 * keeps in a table of its own; every assertion must hold the same. */
static int log_mode;

/* A test's collection name, mapped to a log collection in log mode: the
 * first collection of a test to "mam", a second one to "muc-archive"; names
 * of a third (kept as they are) test a mix of both kinds. */
static const char *C(const char *name)
{
    static const char *const first[] = {"roster", "arch", "c", "offline", "log", "bin", "vcard"};
    static const char *const second[] = {"other", "elsewhere", "d", "binlist"};
    if (!log_mode)
        return name;
    for (size_t i = 0; i < sizeof first / sizeof first[0]; i++)
        if (!strcmp(name, first[i]))
            return "mam";
    for (size_t i = 0; i < sizeof second / sizeof second[0]; i++)
        if (!strcmp(name, second[i]))
            return "muc-archive";
    return name;
}

#ifdef WEFT_HAVE_PGSQL
static void pg_quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* Runs SQL on a connection of the test's own (as an operator's psql would). */
static long long pg_run(const char *sql)
{
    PGconn *c = PQconnectdb(pg_url);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("postgresql: %s", PQerrorMessage(c));
    PQsetNoticeProcessor(c, pg_quiet, NULL);
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("postgresql: %s: %s", sql, PQerrorMessage(c));
    long long v = st == PGRES_TUPLES_OK && PQntuples(res) ? atoll(PQgetvalue(res, 0, 0)) : -1;
    PQclear(res);
    PQfinish(c);
    return v;
}
#endif

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    log_mode = 0;
    fixture_t *f = xcalloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/weft-test-storage-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/db/weft.db", f->dir);
#ifdef WEFT_HAVE_PGSQL
    if (pg_url) {
        snprintf(f->path, sizeof f->path, "%s", pg_url);
        pg_run("DROP TABLE IF EXISTS records, users, schema_version CASCADE");
    }
#endif
    *state = f;
    return 0;
}

static int setup_log(void **state)
{
    int rc = setup(state);
    log_mode = 1;
    return rc;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    storage_close(f->st);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static storage_t *open_ok(fixture_t *f)
{
    char err[256];
    storage_t *st = storage_open(f->path, NULL, err, sizeof err);
    if (!st)
        fail_msg("storage_open: %s", err);
    return st;
}

static void reopen(fixture_t *f)
{
    storage_close(f->st);
    f->st = open_ok(f);
}

/* Reads an integer with a separate connection, as an operator's sqlite3
 * (or psql) would. */
static long long peek_int(const char *path, const char *sql)
{
#ifdef WEFT_HAVE_PGSQL
    if (pg_url)
        return pg_run(sql);
#endif
    sqlite3 *db;
    sqlite3_stmt *s;
    long long v = -1;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

static void poke(const char *path, const char *sql)
{
#ifdef WEFT_HAVE_PGSQL
    if (pg_url) {
        pg_run(sql);
        return;
    }
#endif
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* ------------------------------------------------------------ open */

static void test_open_creates(void **state)
{
    SQLITE_ONLY();
    fixture_t *f = *state;
    f->st = open_ok(f);
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    char dir[160];
    snprintf(dir, sizeof dir, "%s/db", f->dir);
    assert_int_equal(stat(dir, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(peek_int(f->path, "PRAGMA user_version"), SQLITE_VERSION_NOW);
    assert_int_equal(peek_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name IN"
                                       " ('users', 'records', 'records_list', 'records_stamp',"
                                       " 'logs', 'log_streams', 'log_tags', 'logs_key',"
                                       " 'log_index')"), 9);
    /* v5 lists log records in log_index blocks, not in these indexes */
    assert_int_equal(peek_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name IN"
                                       " ('logs_stamp', 'logs_tag')"), 0);
    /* WAL is a property of the file: a fresh connection sees it. */
    sqlite3 *db;
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    sqlite3_close(db);
}

static void test_open_empty_file_migrates(void **state)
{
    SQLITE_ONLY();
    fixture_t *f = *state;
    snprintf(f->path, sizeof f->path, "%s/empty.db", f->dir);
    int fd = open(f->path, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    close(fd);
    f->st = open_ok(f);
    assert_int_equal(peek_int(f->path, "PRAGMA user_version"), SQLITE_VERSION_NOW);
    assert_int_equal(storage_user_count(f->st), 0);
    /* An existing file readable by others is restricted to its owner. */
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    /* Opening again runs no migration and keeps the data. */
    assert_int_equal(storage_user_create(f->st, "a@x", "k", NULL), 0);
    reopen(f);
    assert_int_equal(peek_int(f->path, "PRAGMA user_version"), SQLITE_VERSION_NOW);
    assert_int_equal(storage_user_exists(f->st, "a@x"), 1);
}

static void test_open_newer_schema_refused(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_close(f->st);
    f->st = NULL;
    poke(f->path, pg_url ? "UPDATE schema_version SET version = 99" : "PRAGMA user_version = 99");
    char err[256];
    assert_null(storage_open(f->path, NULL, err, sizeof err));
    assert_non_null(strstr(err, "schema version 99 is newer"));
}

static void test_open_not_a_database(void **state)
{
    SQLITE_ONLY();
    fixture_t *f = *state;
    snprintf(f->path, sizeof f->path, "%s/junk.db", f->dir);
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    const char *junk = "this is not an SQLite database, just text. ";
    for (int i = 0; i < 200; i++)
        fputs(junk, fp);
    fclose(fp);
    assert_int_equal(chmod(f->path, 0644), 0);
    char err[256];
    assert_null(storage_open(f->path, NULL, err, sizeof err));
    assert_non_null(strstr(err, f->path));
    /* A file that is not ours keeps its mode and its content. */
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644);
    assert_int_equal(sb.st_size, 200 * strlen(junk));
}

static void test_open_unwritable(void **state)
{
    SQLITE_ONLY();
    fixture_t *f = *state;
    char err[256];
    /* The parent "directory" is a regular file: fails for root too. */
    char file[160];
    snprintf(file, sizeof file, "%s/plain", f->dir);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(f->path, sizeof f->path, "%s/plain/weft.db", f->dir);
    assert_null(storage_open(f->path, NULL, err, sizeof err));
    assert_non_null(strstr(err, "cannot create directory"));

    /* The database path is a directory. */
    snprintf(f->path, sizeof f->path, "%s", f->dir);
    assert_null(storage_open(f->path, NULL, err, sizeof err));
    assert_non_null(strstr(err, f->dir));

    assert_null(storage_open("", NULL, err, sizeof err));
    assert_null(storage_open(NULL, NULL, err, sizeof err));

    /* A read-only file (permission bits do not stop root: skipped then). */
    if (geteuid() != 0) {
        snprintf(f->path, sizeof f->path, "%s/ro.db", f->dir);
        f->st = open_ok(f);
        storage_close(f->st);
        f->st = NULL;
        assert_int_equal(chmod(f->path, 0400), 0);
        assert_null(storage_open(f->path, NULL, err, sizeof err));
        assert_true(err[0] != '\0');
    }
}

/* ------------------------------------------------------------ accounts */

static int collect_user(const char *bare, void *arg)
{
    strbuf_t *sb = arg;
    strbuf_printf(sb, "%s,", bare);
    return 0;
}

static int stop_after_first(const char *bare, void *arg)
{
    (void)bare;
    (*(int *)arg)++;
    return 7;
}

static void test_users(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    char *a, *b;

    assert_int_equal(storage_user_count(st), 0);
    assert_int_equal(storage_user_exists(st, "juliet@example.com"), 0);
    assert_int_equal(storage_user_create(st, "juliet@example.com", "SHA-256:x", "SHA-1:y"), 0);
    assert_int_equal(storage_user_create(st, "juliet@example.com", "other", "other"), 1);
    assert_int_equal(storage_user_create(st, "romeo@example.com", NULL, "SHA-1:r"), 0);
    assert_int_equal(storage_user_create(st, "benvolio@example.com", "SHA-256:b", NULL), 0);
    assert_int_equal(storage_user_exists(st, "juliet@example.com"), 1);
    assert_int_equal(storage_user_count(st), 3);

    assert_int_equal(storage_user_get(st, "juliet@example.com", &a, &b), 0);
    assert_string_equal(a, "SHA-256:x");   /* the conflicting create changed nothing */
    assert_string_equal(b, "SHA-1:y");
    free(a);
    free(b);
    assert_int_equal(storage_user_get(st, "romeo@example.com", &a, &b), 0);
    assert_null(a);
    assert_string_equal(b, "SHA-1:r");
    free(b);
    assert_int_equal(storage_user_get(st, "romeo@example.com", NULL, NULL), 0);
    a = b = (char *)"stale";
    assert_int_equal(storage_user_get(st, "nobody@example.com", &a, &b), 1);
    assert_null(a);
    assert_null(b);

    /* set_keys replaces both: NULL clears. */
    assert_int_equal(storage_user_set_keys(st, "juliet@example.com", "SHA-256:new", NULL), 0);
    assert_int_equal(storage_user_get(st, "juliet@example.com", &a, &b), 0);
    assert_string_equal(a, "SHA-256:new");
    assert_null(b);
    free(a);
    assert_int_equal(storage_user_set_keys(st, "nobody@example.com", "k", "k"), 1);
    assert_int_equal(storage_user_exists(st, "nobody@example.com"), 0);

    /* List: every account, ordered by bare JID. */
    strbuf_t sb;
    strbuf_init(&sb);
    assert_int_equal(storage_user_list(st, collect_user, &sb), 0);
    assert_string_equal(sb.data, "benvolio@example.com,juliet@example.com,romeo@example.com,");
    strbuf_free(&sb);
    int calls = 0;
    assert_int_equal(storage_user_list(st, stop_after_first, &calls), 7);
    assert_int_equal(calls, 1);

    assert_int_equal(storage_user_delete(st, "romeo@example.com"), 0);
    assert_int_equal(storage_user_delete(st, "romeo@example.com"), 1);
    assert_int_equal(storage_user_exists(st, "romeo@example.com"), 0);
    assert_int_equal(storage_user_count(st), 2);

    /* Persisted across close/open. */
    reopen(f);
    st = f->st;
    assert_int_equal(storage_user_count(st), 2);
    assert_int_equal(storage_user_get(st, "benvolio@example.com", &a, NULL), 0);
    assert_string_equal(a, "SHA-256:b");
    free(a);
    assert_true(peek_int(f->path, "SELECT created FROM users WHERE bare = 'juliet@example.com'") >
                1600000000);
    /* Per-user delete of an account with records is test_user_delete_cascades. */
}

static void test_user_delete_cascades(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    assert_int_equal(storage_user_create(st, "a@x", "k", "k"), 0);
    assert_int_equal(storage_user_create(st, "b@x", "k", "k"), 0);
    assert_int_equal(storage_put(st, "a@x", "roster", "b@x", "<item/>", 7), 0);
    assert_int_equal(storage_put(st, "a@x", "vcard", "", "<vCard/>", 8), 0);
    assert_int_equal(storage_append(st, "a@x", "offline", "m1", 2, NULL), 0);
    assert_int_equal(storage_put(st, "b@x", "roster", "a@x", "<item/>", 7), 0);
    assert_int_equal(storage_user_delete(st, "a@x"), 0);
    assert_int_equal(storage_count(st, "a@x", "roster"), 0);
    assert_int_equal(storage_count(st, "a@x", "vcard"), 0);
    assert_int_equal(storage_count(st, "a@x", "offline"), 0);
    /* Other owners' records are theirs, even those naming the deleted user. */
    assert_int_equal(storage_count(st, "b@x", "roster"), 1);
    assert_int_equal(peek_int(f->path, "SELECT count(*) FROM records"), 1);

    /* Records left by an owner with no account are removed as well. */
    assert_int_equal(storage_put(st, "ghost@x", "c", "k", "v", 1), 0);
    assert_int_equal(storage_user_delete(st, "ghost@x"), 1);
    assert_int_equal(storage_count(st, "ghost@x", "c"), 0);
}

/* ------------------------------------------------------------ records */

typedef struct seen {
    strbuf_t keys;
    strbuf_t vals;
    int n;
    int stop_at;
    storage_t *st;
} seen_t;

static int collect_rec(const char *key, const char *val, size_t len, void *arg)
{
    seen_t *s = arg;
    strbuf_printf(&s->keys, "%s,", key);
    strbuf_append(&s->vals, val, len);
    strbuf_putc(&s->vals, ',');
    s->n++;
    return s->stop_at && s->n >= s->stop_at ? 1 : 0;
}

static void seen_init(seen_t *s)
{
    memset(s, 0, sizeof *s);
    strbuf_init(&s->keys);
    strbuf_init(&s->vals);
}

static void seen_free(seen_t *s)
{
    strbuf_free(&s->keys);
    strbuf_free(&s->vals);
}

static void test_records(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    char *v;
    size_t len;

    assert_int_equal(storage_count(st, "a@x", C("roster")), 0);
    v = (char *)"stale";
    len = 9;
    assert_int_equal(storage_get(st, "a@x", C("roster"), "b@x", &v, &len), 1);
    assert_null(v);
    assert_int_equal(len, 0);

    assert_int_equal(storage_put(st, "a@x", C("roster"), "c@x", "C1", 2), 0);
    assert_int_equal(storage_put(st, "a@x", C("roster"), "b@x", "B1", 2), 0);
    assert_int_equal(storage_put(st, "a@x", C("roster"), "d@x", "D1", 2), 0);
    assert_int_equal(storage_put(st, "a@x", C("other"), "c@x", "O", 1), 0);
    assert_int_equal(storage_put(st, "z@x", C("roster"), "c@x", "Z", 1), 0);
    assert_int_equal(storage_count(st, "a@x", C("roster")), 3);

    assert_int_equal(storage_get(st, "a@x", C("roster"), "b@x", &v, &len), 0);
    assert_int_equal(len, 2);
    assert_string_equal(v, "B1");
    free(v);
    assert_int_equal(storage_get(st, "a@x", C("roster"), "b@x", NULL, NULL), 0);

    /* Replacing keeps the record's place in the list. */
    assert_int_equal(storage_put(st, "a@x", C("roster"), "c@x", "C2-longer", 9), 0);
    assert_int_equal(storage_count(st, "a@x", C("roster")), 3);
    seen_t s;
    seen_init(&s);
    assert_int_equal(storage_list(st, "a@x", C("roster"), collect_rec, &s), 0);
    assert_string_equal(s.keys.data, "c@x,b@x,d@x,");
    assert_string_equal(s.vals.data, "C2-longer,B1,D1,");
    seen_free(&s);

    /* A callback's non-zero value stops the walk and is returned. */
    seen_init(&s);
    s.stop_at = 2;
    assert_int_equal(storage_list(st, "a@x", C("roster"), collect_rec, &s), 1);
    assert_int_equal(s.n, 2);
    seen_free(&s);

    /* An empty collection lists nothing. */
    seen_init(&s);
    assert_int_equal(storage_list(st, "a@x", C("nothing"), collect_rec, &s), 0);
    assert_int_equal(s.n, 0);
    seen_free(&s);

    assert_int_equal(storage_del(st, "a@x", C("roster"), "b@x"), 0);
    assert_int_equal(storage_del(st, "a@x", C("roster"), "b@x"), 1);
    assert_int_equal(storage_get(st, "a@x", C("roster"), "b@x", &v, &len), 1);
    assert_int_equal(storage_count(st, "a@x", C("roster")), 2);

    reopen(f);
    st = f->st;
    assert_int_equal(storage_get(st, "a@x", C("roster"), "c@x", &v, &len), 0);
    assert_string_equal(v, "C2-longer");
    free(v);

    assert_int_equal(storage_del_all(st, "a@x", C("roster")), 0);
    assert_int_equal(storage_del_all(st, "a@x", C("roster")), 0);
    assert_int_equal(storage_count(st, "a@x", C("roster")), 0);
    assert_int_equal(storage_count(st, "a@x", C("other")), 1);
    assert_int_equal(storage_count(st, "z@x", C("roster")), 1);

    /* Missing names are errors, not crashes. */
    assert_int_equal(storage_put(st, NULL, C("c"), "k", "v", 1), -1);
    assert_int_equal(storage_put(st, "a@x", C("c"), NULL, "v", 1), -1);
    assert_int_equal(storage_count(st, "a@x", NULL), -1);
    assert_int_equal(storage_append(st, NULL, C("c"), "v", 1, NULL), -1);
}

static void test_binary_values(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    const char bin[] = { 'a', '\0', 'b', '\0', '\xff', '\n' };
    char *v;
    size_t len;
    assert_int_equal(storage_put(st, "o", C("bin"), "k", bin, sizeof bin), 0);
    assert_int_equal(storage_append(st, "o", C("binlist"), bin, sizeof bin, NULL), 0);
    assert_int_equal(storage_put(st, "o", C("bin"), "empty", "", 0), 0);
    assert_int_equal(storage_put(st, "o", C("bin"), "null", NULL, 0), 0);
    reopen(f);
    st = f->st;
    assert_int_equal(storage_get(st, "o", C("bin"), "k", &v, &len), 0);
    assert_int_equal(len, sizeof bin);
    assert_memory_equal(v, bin, sizeof bin);
    assert_int_equal(v[len], '\0');
    free(v);
    assert_int_equal(storage_get(st, "o", C("bin"), "empty", &v, &len), 0);
    assert_int_equal(len, 0);
    assert_string_equal(v, "");
    free(v);
    assert_int_equal(storage_get(st, "o", C("bin"), "null", &v, &len), 0);
    assert_int_equal(len, 0);
    free(v);
    seen_t s;
    seen_init(&s);
    assert_int_equal(storage_list(st, "o", C("binlist"), collect_rec, &s), 0);
    assert_int_equal(s.vals.len, sizeof bin + 1);
    assert_memory_equal(s.vals.data, bin, sizeof bin);
    seen_free(&s);
}

static void test_append_keys(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    assert_int_equal(storage_append(st, "a@x", C("offline"), "m1", 2, NULL), 0);
    assert_int_equal(storage_append(st, "b@x", C("offline"), "other", 5, NULL), 0);
    assert_int_equal(storage_append(st, "a@x", C("offline"), "m2", 2, NULL), 0);
    assert_int_equal(storage_append(st, "a@x", C("offline"), "m3", 2, NULL), 0);
    seen_t s;
    seen_init(&s);
    assert_int_equal(storage_list(st, "a@x", C("offline"), collect_rec, &s), 0);
    assert_string_equal(s.vals.data, "m1,m2,m3,");
    /* Keys are decimal sequence numbers, increasing. */
    long prev = 0;
    char *p = s.keys.data;
    for (int i = 0; i < 3; i++) {
        char *end;
        long k = strtol(p, &end, 10);
        assert_true(end > p && *end == ',');
        assert_true(k > prev);
        prev = k;
        p = end + 1;
    }
    char last[32];
    snprintf(last, sizeof last, "%ld", prev);
    seen_free(&s);

    /* A key is usable with get/del, and is never reused after a delete, even
     * across close/open. */
    char *v;
    size_t len;
    assert_int_equal(storage_get(st, "a@x", C("offline"), last, &v, &len), 0);
    assert_string_equal(v, "m3");
    free(v);
    assert_int_equal(storage_del(st, "a@x", C("offline"), last), 0);
    reopen(f);
    st = f->st;
    assert_int_equal(storage_append(st, "a@x", C("offline"), "m4", 2, NULL), 0);
    seen_init(&s);
    assert_int_equal(storage_list(st, "a@x", C("offline"), collect_rec, &s), 0);
    assert_string_equal(s.vals.data, "m1,m2,m4,");
    const char *k4 = strrchr(s.keys.data, ',');
    while (k4 > s.keys.data && k4[-1] != ',')
        k4--;
    assert_true(strtol(k4, NULL, 10) > prev);
    seen_free(&s);
    assert_int_equal(storage_count(st, "a@x", C("offline")), 3);

    /* A put under a key that looks like a sequence number lives beside them. */
    assert_int_equal(storage_put(st, "a@x", C("offline"), "999999", "p", 1), 0);
    assert_int_equal(storage_append(st, "a@x", C("offline"), "m5", 2, NULL), 0);
    assert_int_equal(storage_count(st, "a@x", C("offline")), 5);
}

/* ------------------------------------------------------------ transactions */

static void test_transactions(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;

    assert_int_equal(storage_begin(st), 0);
    assert_int_equal(storage_begin(st), -1);      /* nesting refused... */
    assert_int_equal(storage_put(st, "a", C("c"), "k1", "v", 1), 0);   /* ...the outer one lives */
    assert_int_equal(storage_append(st, "a", C("c"), "v", 1, NULL), 0);
    assert_int_equal(storage_user_create(st, "a", "k", "k"), 0);
    assert_int_equal(storage_rollback(st), 0);
    assert_int_equal(storage_count(st, "a", C("c")), 0);
    assert_int_equal(storage_user_exists(st, "a"), 0);

    assert_int_equal(storage_begin(st), 0);
    assert_int_equal(storage_put(st, "a", C("c"), "k1", "v", 1), 0);
    assert_int_equal(storage_append(st, "a", C("c"), "v", 1, NULL), 0);
    assert_int_equal(storage_user_create(st, "a", "k", "k"), 0);
    assert_int_equal(storage_put(st, "a", C("c"), "k2", "v", 1), 0);
    assert_int_equal(storage_user_delete(st, "a"), 0);   /* savepoint inside */
    assert_int_equal(storage_put(st, "a", C("c"), "k3", "v", 1), 0);
    assert_int_equal(storage_commit(st), 0);
    assert_int_equal(storage_count(st, "a", C("c")), 1);
    assert_int_equal(storage_user_exists(st, "a"), 0);

    /* Commit or rollback with nothing open. */
    assert_int_equal(storage_commit(st), -1);
    assert_int_equal(storage_rollback(st), 0);

    /* Uncommitted work is rolled back at close. */
    assert_int_equal(storage_begin(st), 0);
    assert_int_equal(storage_put(st, "a", C("c"), "k4", "v", 1), 0);
    reopen(f);
    assert_int_equal(storage_count(f->st, "a", C("c")), 1);
}

/* A second handle on the same file (weftctl beside the sm) sees commits. */
static void test_two_handles(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *other = open_ok(f);
    assert_int_equal(storage_user_create(other, "new@x", "k", NULL), 0);
    assert_int_equal(storage_user_exists(f->st, "new@x"), 1);
    assert_int_equal(storage_user_delete(f->st, "new@x"), 0);
    assert_int_equal(storage_user_exists(other, "new@x"), 0);
    storage_close(other);
}

/* ------------------------------------------------------------ re-entry */

typedef struct reenter {
    storage_t *st;
    int inner_list;
    int inner_get;
    int users;
} reenter_t;

static int count_rec(const char *key, const char *val, size_t len, void *arg)
{
    (void)key;
    (void)val;
    (void)len;
    (*(int *)arg)++;
    return 0;
}

static int reenter_rec(const char *key, const char *val, size_t len, void *arg)
{
    reenter_t *r = arg;
    (void)val;
    (void)len;
    int n = 0;
    r->inner_list = storage_list(r->st, "a", C("c"), count_rec, &n);
    char *v;
    r->inner_get = storage_get(r->st, "a", C("c"), key, &v, NULL);
    if (r->inner_get == 0)
        free(v);
    /* Writing elsewhere while walking is allowed. */
    assert_int_equal(storage_put(r->st, "a", C("elsewhere"), key, "x", 1), 0);
    return 0;
}

static int reenter_user(const char *bare, void *arg)
{
    reenter_t *r = arg;
    int n = 0;
    r->users++;
    /* A user walk may list records (another statement)... */
    assert_int_equal(storage_list(r->st, bare, C("c"), count_rec, &n), 0);
    assert_int_equal(n, 2);
    /* ...and even walk users again (rows are fetched before the callbacks). */
    if (r->users == 1)
        assert_int_equal(storage_user_list(r->st, reenter_user, r), 0);
    return 0;
}

static void test_reentry(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    assert_int_equal(storage_put(st, "a", C("c"), "1", "x", 1), 0);
    assert_int_equal(storage_put(st, "a", C("c"), "2", "y", 1), 0);
    reenter_t r = { .st = st };
    assert_int_equal(storage_list(st, "a", C("c"), reenter_rec, &r), 0);
    assert_int_equal(r.inner_list, 0);
    assert_int_equal(r.inner_get, 0);
    assert_int_equal(storage_count(st, "a", C("elsewhere")), 2);
    /* The outer walk is unharmed. */
    int n = 0;
    assert_int_equal(storage_list(st, "a", C("c"), count_rec, &n), 0);
    assert_int_equal(n, 2);

    assert_int_equal(storage_user_create(st, "a", NULL, NULL), 0);
    assert_int_equal(storage_user_list(st, reenter_user, &r), 0);
    assert_int_equal(r.users, 2);
}


/* ------------------------------------------------------------ drivers */

static void test_open_schemes(void **state)
{
    fixture_t *f = *state;
    char err[256];
    assert_null(storage_open("mysql://x@y/z", NULL, err, sizeof err));
    assert_non_null(strstr(err, "unknown storage driver \"mysql\""));
    if (pg_url) {
        f->st = open_ok(f);
        assert_string_equal(storage_driver_name(f->st), "postgresql");
        assert_int_equal(storage_is_async(f->st), 1);
        /* A server that is not there fails the open with libpq's reason. */
        assert_null(storage_open("postgresql://nobody@127.0.0.1:1/none", NULL, err, sizeof err));
        assert_non_null(strstr(err, "postgresql:"));
        return;
    }
    /* sqlite:PATH, sqlite://PATH and a bare path are the same file. */
    char url[600];
    snprintf(url, sizeof url, "sqlite:%s", f->path);
    f->st = storage_open(url, NULL, err, sizeof err);
    assert_non_null(f->st);
    assert_string_equal(storage_driver_name(f->st), "sqlite");
    assert_int_equal(storage_is_async(f->st), 0);
    assert_int_equal(storage_user_create(f->st, "a@x", "k", NULL), 0);
    storage_close(f->st);
    snprintf(url, sizeof url, "sqlite://%s", f->path);   /* f->path is absolute */
    f->st = storage_open(url, NULL, err, sizeof err);
    assert_non_null(f->st);
    assert_int_equal(storage_user_exists(f->st, "a@x"), 1);
    storage_close(f->st);
    f->st = open_ok(f);
    assert_int_equal(storage_user_exists(f->st, "a@x"), 1);
}

/* A file made by the v1 schema (before stamps) opens, migrates to v2, keeps
 * its records (stamp 0) and stamps what is written after. */
static void test_open_v1_migrates(void **state)
{
    SQLITE_ONLY();
    fixture_t *f = *state;
    snprintf(f->path, sizeof f->path, "%s/v1.db", f->dir);
    poke(f->path, "CREATE TABLE users (bare TEXT PRIMARY KEY NOT NULL, sha256 TEXT, sha1 TEXT,"
                  " created INTEGER NOT NULL);"
                  "CREATE TABLE records (seq INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL,"
                  " coll TEXT NOT NULL, key TEXT, value BLOB NOT NULL, UNIQUE (owner, coll, key));"
                  "CREATE INDEX records_list ON records (owner, coll, seq);"
                  "INSERT INTO records (owner, coll, key, value) VALUES ('a', 'c', 'old', 'v');"
                  "PRAGMA user_version = 1;");
    f->st = open_ok(f);
    assert_int_equal(peek_int(f->path, "PRAGMA user_version"), SQLITE_VERSION_NOW);
    assert_int_equal(storage_put(f->st, "a", "c", "new", "w", 1), 0);
    storage_range_t q = {0};
    storage_res_t res;
    assert_int_equal(storage_range(f->st, "a", "c", &q, &res), 0);
    assert_int_equal(res.nrecs, 2);
    assert_string_equal(res.recs[0].key, "old");
    assert_int_equal(res.recs[0].stamp, 0);
    assert_true(res.recs[1].stamp > 1600000000LL * 1000000);
    storage_res_clear(&res);
}

/* SQLite v2 → v3, PostgreSQL v1 → v2: mod_mam's per-contact copies
 * ("mam:<contact>") become the tags of its "mam" records and go; other
 * collections are untouched. */
static void test_open_mam_to_tags(void **state)
{
    fixture_t *f = *state;
    if (!pg_url)
        snprintf(f->path, sizeof f->path, "%s/v2.db", f->dir);
    /* The schema before tags: SQLite's v2, PostgreSQL's v1. */
    poke(f->path, pg_url ?
                  "CREATE TABLE schema_version (version integer NOT NULL);"
                  "INSERT INTO schema_version VALUES (1);"
                  "CREATE TABLE users (bare text PRIMARY KEY NOT NULL, sha256 text, sha1 text,"
                  " created bigint NOT NULL);"
                  "CREATE TABLE records (seq bigserial PRIMARY KEY, owner text NOT NULL,"
                  " coll text NOT NULL, key text, value bytea NOT NULL,"
                  " stamp bigint NOT NULL DEFAULT 0, UNIQUE (owner, coll, key));"
                  "CREATE INDEX records_list ON records (owner, coll, seq);"
                  "CREATE INDEX records_stamp ON records (owner, coll, stamp, seq);"
                  :
                  "CREATE TABLE users (bare TEXT PRIMARY KEY NOT NULL, sha256 TEXT, sha1 TEXT,"
                  " created INTEGER NOT NULL);"
                  "CREATE TABLE records (seq INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL,"
                  " coll TEXT NOT NULL, key TEXT, value BLOB NOT NULL, UNIQUE (owner, coll, key));"
                  "CREATE INDEX records_list ON records (owner, coll, seq);"
                  "ALTER TABLE records ADD COLUMN stamp INTEGER NOT NULL DEFAULT 0;"
                  "CREATE INDEX records_stamp ON records (owner, coll, stamp, seq);"
                  "PRAGMA user_version = 2;");
    poke(f->path, "INSERT INTO records (owner, coll, key, value, stamp) VALUES"
                  " ('a', 'mam', 'id1', 'to b', 1), ('a', 'mam:b@x', 'id1', 'to b', 1),"
                  " ('a', 'mam', 'id2', 'to c', 2), ('a', 'mam:c@x', 'id2', 'to c', 2),"
                  " ('a', 'mam', 'id3', 'to b again', 3), ('a', 'mam:b@x', 'id3', 'to b again', 3),"
                  " ('b', 'mam', 'id1', 'from a', 1), ('b', 'mam:a@x', 'id1', 'from a', 1),"
                  " ('a', 'mam-prefs', '', 'p', 4), ('a', 'roster', 'b@x', 'r', 5)");
    f->st = open_ok(f);
    assert_int_equal(peek_int(f->path, pg_url ? "SELECT version FROM schema_version"
                                              : "PRAGMA user_version"), pg_url ? 2 : SQLITE_VERSION_NOW);
    assert_int_equal(peek_int(f->path, "SELECT count(*) FROM records WHERE coll LIKE 'mam:%'"), 0);
    /* On SQLite the archive went on to the log table (v4). */
    assert_int_equal(peek_int(f->path, "SELECT count(*) FROM records"), pg_url ? 6 : 2);
    if (!pg_url)
        assert_int_equal(peek_int(f->path, "SELECT count(*) FROM logs"), 4);
    storage_res_t res;
    storage_range_t q = {.by_stamp = 1, .tag = "b@x"};
    assert_int_equal(storage_range(f->st, "a", "mam", &q, &res), 0);
    assert_int_equal(res.nrecs, 2);
    assert_string_equal(res.recs[0].key, "id1");
    assert_string_equal(res.recs[1].key, "id3");
    assert_string_equal(res.recs[1].tag, "b@x");
    storage_res_clear(&res);
    q.tag = "a@x";
    assert_int_equal(storage_range(f->st, "b", "mam", &q, &res), 0);
    assert_int_equal(res.nrecs, 1);
    storage_res_clear(&res);
    char *v;
    assert_int_equal(storage_get(f->st, "a", "roster", "b@x", &v, NULL), 0);
    free(v);
}

/* ------------------------------------------------------------ sequences, ranges */

static void test_append_seq(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    int64_t s1 = 0, s2 = 0;
    assert_int_equal(storage_append(f->st, "a", C("log"), "one", 3, &s1), 0);
    assert_int_equal(storage_append(f->st, "a", C("log"), "two", 3, &s2), 0);
    assert_true(s1 > 0);
    assert_true(s2 > s1);
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)s2);
    char *v;
    assert_int_equal(storage_get(f->st, "a", C("log"), key, &v, NULL), 0);
    assert_string_equal(v, "two");
    free(v);
}

/* Appends n records "m1".."mn" to a:arch; their keys go to keys[]. */
static void fill(storage_t *st, int n, char keys[][32])
{
    for (int i = 1; i <= n; i++) {
        char v[16];
        int64_t seq;
        snprintf(v, sizeof v, "m%d", i);
        assert_int_equal(storage_append(st, "a", C("arch"), v, strlen(v), &seq), 0);
        snprintf(keys[i], 32, "%lld", (long long)seq);
    }
}

/* "m1,m2," of a result. */
static void vals(const storage_res_t *res, char *out, size_t n)
{
    out[0] = '\0';
    for (size_t i = 0; i < res->nrecs; i++) {
        size_t l = strlen(out);
        snprintf(out + l, n - l, "%s,", res->recs[i].val);
    }
}

static void expect_range(storage_t *st, const storage_range_t *q, int rc, const char *want)
{
    storage_res_t res;
    char got[256];
    assert_int_equal(storage_range(st, "a", C("arch"), q, &res), rc);
    vals(&res, got, sizeof got);
    assert_string_equal(got, want);
    storage_res_clear(&res);
}

static void test_range(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    char k[9][32];
    fill(st, 8, k);
    assert_int_equal(storage_append(st, "b", C("arch"), "other", 5, NULL), 0);

    storage_range_t q = {0};
    expect_range(st, &q, 0, "m1,m2,m3,m4,m5,m6,m7,m8,");
    q.limit = 3;
    expect_range(st, &q, 0, "m1,m2,m3,");                 /* the first page */
    q.after = k[3];
    expect_range(st, &q, 0, "m4,m5,m6,");                 /* the next page */
    q.after = k[7];
    expect_range(st, &q, 0, "m8,");                       /* the last, short */
    q.after = k[8];
    expect_range(st, &q, 0, "");
    q.after = NULL;
    q.reverse = 1;
    expect_range(st, &q, 0, "m8,m7,m6,");                 /* the newest page */
    q.before = k[6];
    expect_range(st, &q, 0, "m5,m4,m3,");                 /* the page before it */
    q.before = k[2];
    expect_range(st, &q, 0, "m1,");
    q.after = k[2];
    q.before = k[6];
    q.limit = 0;
    expect_range(st, &q, 0, "m5,m4,m3,");                 /* between, newest first */
    q.reverse = 0;
    expect_range(st, &q, 0, "m3,m4,m5,");
    /* A key that names no record is "not found", as MAM's item-not-found. */
    q.after = "no-such-key";
    expect_range(st, &q, 1, "");
    q.after = NULL;
    q.before = "12345678";
    expect_range(st, &q, 1, "");
    /* Another owner's or collection's key is no key here. */
    storage_res_t res;
    storage_range_t all = {0};
    assert_int_equal(storage_range(st, "b", C("arch"), &all, &res), 0);
    assert_int_equal(res.nrecs, 1);
    q.before = res.recs[0].key;
    expect_range(st, &q, 1, "");
    storage_res_clear(&res);

    /* Deleting in the middle leaves a gap, pages stay consistent. */
    assert_int_equal(storage_del(st, "a", C("arch"), k[4]), 0);
    storage_range_t p = {.after = k[3], .limit = 2};
    expect_range(st, &p, 0, "m5,m6,");
    assert_int_equal(storage_count(st, "a", C("arch")), 7);
}

/* Stamps: set at every write, bound a range, order by_stamp ranges. */
static void test_range_stamps(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    int64_t t0 = storage_now_us();
    assert_int_equal(storage_put(st, "a", C("arch"), "x", "m1", 2), 0);
    usleep(20000);
    int64_t t1 = storage_now_us();
    assert_int_equal(storage_put(st, "a", C("arch"), "y", "m2", 2), 0);
    usleep(20000);
    int64_t t2 = storage_now_us();
    assert_int_equal(storage_put(st, "a", C("arch"), "z", "m3", 2), 0);
    int64_t t3 = storage_now_us();

    storage_res_t res;
    storage_range_t q = {0};
    assert_int_equal(storage_range(st, "a", C("arch"), &q, &res), 0);
    assert_int_equal(res.nrecs, 3);
    assert_true(res.recs[0].stamp >= t0 && res.recs[0].stamp <= t1);
    assert_true(res.recs[2].stamp >= t2 && res.recs[2].stamp <= t3);
    assert_true(res.recs[0].seq < res.recs[1].seq);
    storage_res_clear(&res);

    q.since = t1;
    expect_range(st, &q, 0, "m2,m3,");
    q.until = t2;
    expect_range(st, &q, 0, "m2,");
    q.since = 0;
    expect_range(st, &q, 0, "m1,m2,");

    /* Rewriting x moves it last in stamp order, not in seq order. */
    usleep(20000);
    assert_int_equal(storage_put(st, "a", C("arch"), "x", "m1b", 3), 0);
    storage_range_t by = {.by_stamp = 1};
    expect_range(st, &by, 0, "m2,m3,m1b,");
    by.reverse = 1;
    expect_range(st, &by, 0, "m1b,m3,m2,");
    by.after = "z";          /* later than z in (stamp, seq) order, whatever the direction */
    expect_range(st, &by, 0, "m1b,");
    by.after = NULL;
    by.before = "x";
    expect_range(st, &by, 0, "m3,m2,");
    by.reverse = 0;
    expect_range(st, &by, 0, "m2,m3,");
    storage_range_t seq = {0};
    expect_range(st, &seq, 0, "m1b,m2,m3,");

    /* storage_put_at: the stamp given, not the time of the write, places the
     * record in stamp order and bounds. */
    assert_int_equal(storage_put_at(st, "a", C("arch"), "old", NULL, "m0", 2, t0 - 5000000), 0);
    by = (storage_range_t){.by_stamp = 1};
    expect_range(st, &by, 0, "m0,m2,m3,m1b,");
    q = (storage_range_t){.by_stamp = 1, .until = t0 - 1};
    expect_range(st, &q, 0, "m0,");
    assert_int_equal(storage_range(st, "a", C("arch"), &q, &res), 0);
    assert_int_equal(res.nrecs, 1);
    assert_true(res.recs[0].stamp == t0 - 5000000);
    storage_res_clear(&res);
}

/* ------------------------------------------------------------ scan, import */

static void test_scan_import(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    for (int i = 0; i < 25; i++) {
        char v[16];
        snprintf(v, sizeof v, "v%d", i);
        assert_int_equal(storage_append(st, i % 2 ? "a" : "b", "c", v, strlen(v), NULL), 0);
    }
    assert_int_equal(storage_put(st, "a", C("d"), "k", "kv", 2), 0);
    /* Pages of 10 in seq order across owners. */
    int64_t after = 0, last = 0;
    int n = 0, pages = 0;
    for (;;) {
        storage_res_t res;
        assert_int_equal(storage_scan(st, after, 10, &res), 0);
        pages++;
        for (size_t i = 0; i < res.nrecs; i++) {
            assert_true(res.recs[i].seq > last);
            last = res.recs[i].seq;
            assert_non_null(res.recs[i].owner);
            assert_non_null(res.recs[i].coll);
            n++;
        }
        size_t got = res.nrecs;
        if (got)
            after = res.recs[got - 1].seq;
        storage_res_clear(&res);
        if (got < 10)
            break;
    }
    assert_int_equal(n, 26);
    assert_int_equal(pages, 3);

    /* Import keeps seq, key and stamp; appends after it never reuse a seq. */
    assert_int_equal(storage_user_import(st, "imp@x", "K", NULL, 1234567), 0);
    storage_rec_t r = {.seq = 1000, .stamp = 42, .key = (char *)"1000", .val = (char *)"iv",
                       .len = 2, .tag = (char *)"t@x"};
    assert_int_equal(storage_import(st, "imp@x", C("c"), &r), 0);
    assert_int_equal(storage_import_done(st), 0);
    int64_t seq;
    assert_int_equal(storage_append(st, "imp@x", C("c"), "next", 4, &seq), 0);
    assert_true(seq > 1000);
    storage_range_t q = {0};
    storage_res_t res;
    assert_int_equal(storage_range(st, "imp@x", C("c"), &q, &res), 0);
    assert_int_equal(res.nrecs, 2);
    assert_int_equal(res.recs[0].seq, 1000);
    assert_int_equal(res.recs[0].stamp, 42);
    assert_string_equal(res.recs[0].key, "1000");
    assert_string_equal(res.recs[0].tag, "t@x");
    assert_null(res.recs[1].tag);
    storage_res_clear(&res);
    /* A scan gives the tag too (weftctl migrate copies it). */
    assert_int_equal(storage_scan(st, 999, 1, &res), 0);
    assert_int_equal(res.nrecs, 1);
    assert_string_equal(res.recs[0].tag, "t@x");
    storage_res_clear(&res);
}

/* ------------------------------------------------------------ asynchronous form */

typedef struct acall {
    int done;
    int status;
    int64_t n;
    char val[64];
    size_t nrecs;
} acall_t;

static void acall_cb(storage_res_t *res, void *arg)
{
    acall_t *a = arg;
    a->done++;
    a->status = res->status;
    a->n = res->n;
    a->nrecs = res->nrecs;
    if (res->val)
        snprintf(a->val, sizeof a->val, "%s", res->val);
    else if (res->sha256)
        snprintf(a->val, sizeof a->val, "%s", res->sha256);
}

static void test_async(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    acall_t a[8];
    memset(a, 0, sizeof a);
    /* Submitted back to back: they run in order. */
    storage_user_create_async(st, "u@x", "K256", NULL, acall_cb, &a[0]);
    storage_put_async(st, "u@x", C("c"), "k", "val", 3, acall_cb, &a[1]);
    storage_get_async(st, "u@x", C("c"), "k", acall_cb, &a[2]);
    storage_append_async(st, "u@x", C("c"), "app", 3, acall_cb, &a[3]);
    storage_count_async(st, "u@x", C("c"), acall_cb, &a[4]);
    storage_user_get_async(st, "u@x", acall_cb, &a[5]);
    storage_range_t q = {.reverse = 1, .limit = 1};
    storage_range_async(st, "u@x", C("c"), &q, acall_cb, &a[6]);
    storage_user_delete_async(st, "u@x", acall_cb, &a[7]);
    if (!storage_is_async(st))
        assert_int_equal(a[7].done, 1);   /* SQLite: done inside the calls */
    storage_drain(st);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(a[i].done, 1);
        assert_int_equal(a[i].status, 0);
    }
    assert_string_equal(a[2].val, "val");
    assert_true(a[3].n > 0);
    assert_int_equal(a[4].n, 2);
    assert_string_equal(a[5].val, "K256");
    assert_int_equal(a[6].nrecs, 1);
    assert_int_equal(storage_count(st, "u@x", C("c")), 0);
}

/* storage_put_take_async (mod_mam's batches): the taken strings become the
 * record (tag and stamp as given; no value is an empty one), in a
 * transaction, and storage frees them (the sanitizer build sees a leak or a
 * double free). */
static void test_put_take(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    acall_t a[3];
    memset(a, 0, sizeof a);
    storage_begin_async(st, NULL, NULL);
    storage_put_take_async(st, xstrdup("u@x"), xstrdup("mam"), xstrdup("k1"), xstrdup("v@x"),
                           xstrdup("one"), 3, 1234, NULL, acall_cb, &a[0]);
    storage_put_take_async(st, xstrdup("u@x"), xstrdup("mam"), xstrdup("k2"), NULL, NULL, 0, 5678,
                           NULL, acall_cb, &a[1]);
    storage_commit_async(st, acall_cb, &a[2]);
    storage_drain(st);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(a[i].done, 1);
        assert_int_equal(a[i].status, 0);
    }
    storage_res_t res;
    storage_range_t q = {.tag = "v@x"};
    assert_int_equal(storage_range(st, "u@x", "mam", &q, &res), 0);
    assert_int_equal(res.nrecs, 1);
    assert_string_equal(res.recs[0].key, "k1");
    assert_string_equal(res.recs[0].tag, "v@x");
    assert_int_equal(res.recs[0].stamp, 1234);
    assert_int_equal(res.recs[0].len, 3);
    assert_memory_equal(res.recs[0].val, "one", 3);
    storage_res_clear(&res);
    storage_range_t all = {0};
    assert_int_equal(storage_range(st, "u@x", "mam", &all, &res), 0);
    assert_int_equal(res.nrecs, 2);
    assert_string_equal(res.recs[1].key, "k2");
    assert_null(res.recs[1].tag);
    assert_int_equal(res.recs[1].stamp, 5678);
    assert_int_equal(res.recs[1].len, 0);
    storage_res_clear(&res);
}

/* Shared tails (storage_hint_t, docs/storage.md "Shared tails"), as
 * mod_mam uses them: the sender's copy of a stanza, then, some puts later in
 * the same transaction, the receiver's with a hint naming it. */
#define SHARE_PAIRS 40
static uint64_t share_puts;      /* puts this test submitted: their numbers */

static char *share_tail(int p)
{
    char *t = xmalloc(301);
    for (int i = 0; i < 300; i++)
        t[i] = (char)('a' + (p * 7 + i) % 26);
    t[300] = '\0';
    return t;
}

static char *share_value(const char *head, int p, size_t *len, size_t *head_len)
{
    char *tail = share_tail(p);
    char *v = xmalloc(strlen(head) + 302);
    *head_len = (size_t)sprintf(v, "%s\n", head);
    *len = *head_len + (size_t)sprintf(v + *head_len, "%s", tail);
    free(tail);
    return v;
}

/* A put of head + pair p's tail; back: its hint (0 none); ahead: how many
 * puts later the put that will share it comes (0 none). Returns its number. */
static uint64_t share_put(storage_t *st, const char *owner, const char *key, const char *head,
                          int p, uint64_t back, size_t base_head, size_t ahead)
{
    size_t len, hl;
    char *v = share_value(head, p, &len, &hl);
    storage_hint_t sh = {.back = back, .self_at = hl, .base_at = base_head, .ahead = ahead};
    storage_put_take_async(st, xstrdup(owner), xstrdup("mam"), xstrdup(key), NULL, v, len, 1000 + p,
                           back || ahead ? &sh : NULL, NULL, NULL);
    return ++share_puts;
}

static void share_expect(storage_t *st, const char *owner, const char *key, const char *head, int p)
{
    size_t len, hl, got_len = 0;
    char *want = share_value(head, p, &len, &hl), *got = NULL;
    assert_int_equal(storage_get(st, owner, "mam", key, &got, &got_len), 0);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, want, len);
    free(got);
    free(want);
}

/* The length a value of head + "\n" + a 300-byte tail has. */
static size_t share_len(const char *v)
{
    return (size_t)(strchr(v, '\n') + 1 - v) + 300;
}

static long long shared_rows(fixture_t *f)
{
    return pg_url ? 0 : peek_int(f->path, "SELECT count(*) FROM logs WHERE base IS NOT NULL");
}

/* Every pair written: a@x's copies whole, b@x's with hints (16 or more puts
 * apart, as mod_mam's are), a few with hints that name nothing usable. */
static void share_write(storage_t *st, const char *a, const char *b)
{
    uint64_t at[SHARE_PAIRS];
    char key[32], head[64];
    storage_begin_async(st, NULL, NULL);
    for (int p = 0; p < SHARE_PAIRS; p++) {
        snprintf(key, sizeof key, "a%d", p);
        snprintf(head, sizeof head, "%d o %s", p, b);
        at[p] = share_put(st, a, key, head, p, 0, 0, SHARE_PAIRS);   /* b%d comes 40 puts later */
    }
    for (int p = 0; p < SHARE_PAIRS; p++) {
        snprintf(key, sizeof key, "b%d", p);
        snprintf(head, sizeof head, "%d i %s/with-a-longer-head", p, a);
        uint64_t back = share_puts + 1 - at[p];
        size_t base_head = (size_t)snprintf(NULL, 0, "%d o %s\n", p, b);
        if (p == 0)
            back = 1;             /* the put just before: another sharer, another tail */
        else if (p == 1)
            back = 1u << 20;      /* further back than any driver keeps */
        else if (p == 2)
            base_head += 1;       /* the tails' lengths disagree */
        share_put(st, b, key, head, p, back, base_head, 0);
    }
    storage_commit_async(st, NULL, NULL);
    storage_drain(st);
}

static void share_expect_all(storage_t *st, const char *a, const char *b, int from)
{
    char key[32], head[64];
    for (int p = from; p < SHARE_PAIRS; p++) {
        snprintf(key, sizeof key, "b%d", p);
        snprintf(head, sizeof head, "%d i %s/with-a-longer-head", p, a);
        share_expect(st, b, key, head, p);
    }
}

static void test_log_shared_tails(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    share_puts = 0;
    share_write(st, "a@x", "b@x");
    /* Read back whole, by get, by range and by scan. */
    share_expect_all(st, "a@x", "b@x", 0);
    storage_res_t res;
    storage_range_t all = {.by_stamp = 1};
    assert_int_equal(storage_range(st, "b@x", "mam", &all, &res), 0);
    assert_int_equal(res.nrecs, SHARE_PAIRS);
    for (size_t i = 0; i < res.nrecs; i++) {
        char *tail = share_tail((int)i);
        assert_int_equal(res.recs[i].len, share_len(res.recs[i].val));
        assert_string_equal(strchr(res.recs[i].val, '\n') + 1, tail);
        free(tail);
    }
    storage_res_clear(&res);
    assert_int_equal(storage_scan(st, 0, 1000, &res), 0);
    assert_int_equal(res.nrecs, 2 * SHARE_PAIRS);
    for (size_t i = 0; i < res.nrecs; i++)
        assert_int_equal(res.recs[i].len, share_len(res.recs[i].val));
    storage_res_clear(&res);
    /* On SQLite the hints that name a usable row are kept: the three bad
     * ones are not. */
    if (!pg_url)
        assert_int_equal(shared_rows(f), SHARE_PAIRS - 3);
    /* The base goes, or changes: the copy keeps its bytes. */
    assert_int_equal(storage_del(st, "a@x", "mam", "a3"), 0);
    assert_int_equal(storage_put(st, "a@x", "mam", "a4", "new", 3), 0);
    share_expect_all(st, "a@x", "b@x", 0);
    if (!pg_url)
        assert_int_equal(shared_rows(f), SHARE_PAIRS - 5);
    /* The copy itself replaced: its new value only. */
    assert_int_equal(storage_put(st, "b@x", "mam", "b5", "mine", 4), 0);
    char *v = NULL;
    size_t len = 0;
    assert_int_equal(storage_get(st, "b@x", "mam", "b5", &v, &len), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(v, "mine", 4);
    free(v);
    /* The whole collection of the sender, then a sender's account. */
    assert_int_equal(storage_del_all(st, "a@x", "mam"), 0);
    share_expect_all(st, "a@x", "b@x", 6);
    assert_int_equal(storage_user_create(st, "c@x", "k", "k"), 0);
    share_write(st, "c@x", "d@x");
    assert_int_equal(storage_user_delete(st, "c@x"), 0);
    share_expect_all(st, "c@x", "d@x", 0);
    assert_int_equal(shared_rows(f), 0);
    /* A hint naming a put of a transaction rolled back: written whole. */
    size_t hl, vlen;
    char *full = share_value("x", 9, &vlen, &hl);
    free(full);
    storage_begin_async(st, NULL, NULL);
    share_put(st, "e@x", "e1", "x", 9, 0, 0, 21);
    storage_rollback_async(st, NULL, NULL);
    storage_begin_async(st, NULL, NULL);
    for (int i = 0; i < 20; i++) {
        char key[16];
        snprintf(key, sizeof key, "g%d", i);
        share_put(st, "g@x", key, "filler", i, 0, 0, 0);
    }
    share_put(st, "f@x", "f1", "y", 9, 21, hl, 0);
    storage_commit_async(st, NULL, NULL);
    storage_drain(st);
    share_expect(st, "f@x", "f1", "y", 9);
    assert_int_equal(storage_count(st, "e@x", "mam"), 0);
    assert_int_equal(shared_rows(f), 0);
}

/* The sharer lands fewer seqs after its base than puts: a put between
 * them replaced a record and took no seq. The base is told where its
 * sharer is, and gives it its bytes when it goes. */
static void test_log_shared_tail_moved(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    share_puts = 0;
    assert_int_equal(storage_put(st, "a@x", "roster", "c@x", "old", 3), 0);
    share_puts++;
    storage_begin_async(st, NULL, NULL);
    uint64_t base = share_put(st, "a@x", "base", "0 o b@x", 1, 0, 0, 17);
    for (int i = 0; i < 15; i++) {     /* the base's statement of 16 rows, written */
        char key[16];
        snprintf(key, sizeof key, "fill%d", i);
        share_put(st, "a@x", key, "filler", 2, 0, 0, 0);
    }
    storage_put_async(st, "a@x", "roster", "c@x", "new", 3, NULL, NULL);   /* replaced: no seq */
    share_puts++;
    size_t base_head = (size_t)snprintf(NULL, 0, "0 o b@x\n");
    share_put(st, "b@x", "twin", "0 i a@x/phone", 1, share_puts + 1 - base, base_head, 0);
    storage_commit_async(st, NULL, NULL);
    storage_drain(st);
    share_expect(st, "b@x", "twin", "0 i a@x/phone", 1);
    if (!pg_url) {
        assert_int_equal(shared_rows(f), 1);
        assert_int_equal(peek_int(f->path, "SELECT (SELECT seq FROM logs WHERE key = 'twin')"
                                           " - seq - twin_after FROM logs WHERE key = 'base'"),
                         0);
    }
    assert_int_equal(storage_del(st, "a@x", "mam", "base"), 0);
    share_expect(st, "b@x", "twin", "0 i a@x/phone", 1);
    assert_int_equal(shared_rows(f), 0);
}

/* A stamped key (13 hex digits of its stamp, then anything) into key, for
 * stamp and n. */
static void stamped_key(char *key, size_t size, int64_t stamp, int n)
{
    snprintf(key, size, "%013llx%03x%012x", (unsigned long long)stamp, n, 0xabcdef + n);
}

static void stamped_expect(storage_t *st, const char *key, const char *want)
{
    char *v = NULL;
    size_t len = 0;
    assert_int_equal(storage_get(st, "s@x", "mam", key, &v, &len), 0);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(v, want, len);
    free(v);
}

/* Stamped keys (storage_hint_t.stamped, docs/storage.md "Stamped keys"):
 * every operation by key finds such a record as any other, also when two
 * share a stamp, after a reopen, and once replaced. On SQLite the rows are
 * written stamped (out of the key index), but for a key that does not
 * begin with its stamp. */
static void test_log_stamped_keys(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    char key[12][40], val[40];
    const int64_t t0 = 1765100000000000;
    storage_begin_async(st, NULL, NULL);
    for (int i = 0; i < 12; i++) {
        int64_t stamp = t0 + (i < 10 ? i : 9);      /* the last three share a stamp */
        stamped_key(key[i], sizeof key[i], i == 5 ? stamp + 1 : stamp, i);  /* 5: not its stamp */
        snprintf(val, sizeof val, "message %d", i);
        storage_hint_t h = {.stamped = 1};
        storage_put_take_async(st, xstrdup("s@x"), xstrdup("mam"), xstrdup(key[i]),
                               xstrdup(i % 2 ? "odd@x" : "even@x"), xstrdup(val), strlen(val),
                               stamp, &h, NULL, NULL);
    }
    storage_commit_async(st, NULL, NULL);
    storage_drain(st);
    if (!pg_url)
        assert_int_equal(peek_int(f->path, "SELECT count(*) FROM logs WHERE stamped = 1"), 11);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < 12; i++) {
            snprintf(val, sizeof val, "message %d", i);
            stamped_expect(st, key[i], val);
        }
        storage_close(st);                  /* again with fresh caches */
        f->st = st = open_ok(f);
    }
    /* A key that names nothing, with a stamp that some record has. */
    char *v = NULL;
    size_t len = 0;
    char none[40];
    stamped_key(none, sizeof none, t0 + 3, 99);
    assert_int_equal(storage_get(st, "s@x", "mam", none, &v, &len), 1);
    /* Pages after and before a stamped key, whole and by tag. */
    storage_res_t res;
    storage_range_t q = {.by_stamp = 1, .after = key[3], .limit = 2};
    assert_int_equal(storage_range(st, "s@x", "mam", &q, &res), 0);
    assert_int_equal(res.nrecs, 2);
    assert_string_equal(res.recs[0].key, key[4]);
    assert_string_equal(res.recs[1].key, key[5]);
    storage_res_clear(&res);
    q = (storage_range_t){.by_stamp = 1, .before = key[5], .reverse = 1, .tag = "odd@x"};
    assert_int_equal(storage_range(st, "s@x", "mam", &q, &res), 0);
    assert_int_equal(res.nrecs, 2);
    assert_string_equal(res.recs[0].key, key[3]);
    assert_string_equal(res.recs[1].key, key[1]);
    storage_res_clear(&res);
    q = (storage_range_t){.by_stamp = 1, .after = none};
    assert_int_equal(storage_range(st, "s@x", "mam", &q, &res), 1);
    storage_res_clear(&res);
    /* Deleted by key: gone, the others stay. */
    assert_int_equal(storage_del(st, "s@x", "mam", key[10]), 0);
    assert_int_equal(storage_get(st, "s@x", "mam", key[10], &v, &len), 1);
    assert_int_equal(storage_del(st, "s@x", "mam", key[10]), 1);
    stamped_expect(st, key[9], "message 9");
    stamped_expect(st, key[11], "message 11");
    /* A put without the hint on a stamped key replaces the record (its seq
     * kept), inside a transaction and outside. */
    q = (storage_range_t){.by_stamp = 1};
    assert_int_equal(storage_range(st, "s@x", "mam", &q, &res), 0);
    int64_t seq2 = res.recs[2].seq;
    assert_string_equal(res.recs[2].key, key[2]);
    storage_res_clear(&res);
    assert_int_equal(storage_put(st, "s@x", "mam", key[2], "edited", 6), 0);
    storage_begin_async(st, NULL, NULL);
    storage_put_async(st, "s@x", "mam", key[7], "edited too", 10, NULL, NULL);
    storage_commit_async(st, NULL, NULL);
    storage_drain(st);
    assert_int_equal(storage_count(st, "s@x", "mam"), 11);
    stamped_expect(st, key[2], "edited");
    stamped_expect(st, key[7], "edited too");
    assert_int_equal(storage_range(st, "s@x", "mam", &q, &res), 0);
    int found = 0;
    for (size_t i = 0; i < res.nrecs; i++)
        found += res.recs[i].seq == seq2 && !strcmp(res.recs[i].key, key[2]);
    assert_int_equal(found, 1);
    storage_res_clear(&res);
    if (!pg_url)
        assert_int_equal(peek_int(f->path, "SELECT count(*) FROM logs WHERE stamped = 1"), 8);
}

/* A file of schema v6 with shared pairs, its bases naming their sharers by
 * key: step v7 points each at its sharer by seq, and a base that goes
 * still gives its sharer its bytes. The v6 file is made from a new one by
 * undoing v7 by hand. */
static void test_open_v6_points_bases(void **state)
{
    SQLITE_ONLY();
    fixture_t *f = *state;
    f->st = open_ok(f);
    share_puts = 0;
    share_write(f->st, "a@x", "b@x");
    storage_close(f->st);
    f->st = NULL;
    poke(f->path, "DROP TRIGGER logs_base_delete; DROP TRIGGER logs_base_update;"
                  "ALTER TABLE logs ADD COLUMN twin TEXT;"
                  "UPDATE logs SET twin = (SELECT t.key FROM logs t"
                  "  WHERE t.seq = logs.seq + logs.twin_after) WHERE twin_after IS NOT NULL;"
                  "DROP INDEX logs_key;"
                  "ALTER TABLE logs DROP COLUMN twin_after; ALTER TABLE logs DROP COLUMN stamped;"
                  "CREATE UNIQUE INDEX logs_key ON logs (key, stream);"
                  "CREATE TRIGGER logs_base_delete AFTER DELETE ON logs WHEN old.twin IS NOT NULL"
                  " BEGIN UPDATE logs SET value = CAST(value || substr(old.value, base_at + 1)"
                  " AS BLOB), base = NULL, base_at = NULL WHERE key = old.twin"
                  " AND base = old.seq; END;"
                  "CREATE TRIGGER logs_base_update AFTER UPDATE OF value ON logs"
                  " WHEN old.twin IS NOT NULL BEGIN SELECT 1; END;"
                  "PRAGMA user_version = 6;");
    assert_int_equal(peek_int(f->path, "SELECT count(*) FROM logs WHERE twin IS NOT NULL"),
                     SHARE_PAIRS);
    f->st = open_ok(f);
    assert_int_equal(peek_int(f->path, "PRAGMA user_version"), SQLITE_VERSION_NOW);
    assert_int_equal(shared_rows(f), SHARE_PAIRS - 3);
    /* Only the bases whose sharer shares point at it. */
    assert_int_equal(peek_int(f->path, "SELECT count(*) FROM logs l JOIN logs t"
                                       " ON t.seq = l.seq + l.twin_after AND t.base = l.seq"),
                     SHARE_PAIRS - 3);
    assert_int_equal(peek_int(f->path, "SELECT count(*) FROM logs WHERE twin_after IS NOT NULL"),
                     SHARE_PAIRS - 3);
    assert_int_equal(storage_del(f->st, "a@x", "mam", "a7"), 0);
    assert_int_equal(storage_del_all(f->st, "a@x", "mam"), 0);
    share_expect_all(f->st, "a@x", "b@x", 0);
    assert_int_equal(shared_rows(f), 0);
}

/* Appends s (and its NUL) to b: its offset. */
static size_t many_add(strbuf_t *b, const char *s)
{
    size_t at = b->len;
    strbuf_append(b, s, strlen(s) + 1);
    return at;
}

/* storage_put_many_take_async: records of a log collection and of another
 * in one request, read back as single puts would have written them; its
 * records count as puts for the hints (a shared tail from one of them to a
 * later single put, on SQLite kept once); a record outside its buffer
 * fails the request and writes nothing. */
static void test_put_many(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    strbuf_t b;
    strbuf_init(&b);
    size_t mam = many_add(&b, "mam"), users = many_add(&b, "mam-users");
    storage_put_rec_t *recs = xmalloc(20 * sizeof *recs);
    char key[40], val[400];
    for (int i = 0; i < 20; i++) {
        stamped_key(key, sizeof key, 5000 + i, i);
        char *tail = share_tail(i);
        snprintf(val, sizeof val, "%d o b@x\n%s", i, tail);
        free(tail);
        recs[i] = (storage_put_rec_t){.owner = many_add(&b, "a@x"), .coll = i == 7 ? users : mam,
                                      .key = many_add(&b, i == 7 ? "a@x" : key),
                                      .tag = i % 2 ? many_add(&b, "b@x") : STORAGE_NO_TAG,
                                      .stamp = 5000 + i, .hint = {.stamped = 1}};
        recs[i].val = many_add(&b, val);
        recs[i].len = strlen(val);
    }
    recs[0].hint.ahead = 20;          /* the single put after the batch shares its tail */
    acall_t a = {0};
    storage_begin_async(st, NULL, NULL);
    size_t size = b.len;
    storage_put_many_take_async(st, strbuf_steal(&b), size, recs, 20, acall_cb, &a);
    size_t base_head = (size_t)snprintf(NULL, 0, "0 o b@x\n");
    share_puts = 20;
    share_put(st, "b@x", "twin", "0 i a@x/phone", 0, 20, base_head, 0);
    storage_commit_async(st, NULL, NULL);
    storage_drain(st);
    assert_int_equal(a.done, 1);
    assert_int_equal(a.status, 0);
    assert_int_equal(storage_count(st, "a@x", "mam"), 19);
    assert_int_equal(storage_count(st, "a@x", "mam-users"), 1);
    for (int i = 0; i < 20; i++) {
        if (i == 7)
            continue;
        stamped_key(key, sizeof key, 5000 + i, i);
        char *tail = share_tail(i), *v = NULL;
        size_t len = 0;
        snprintf(val, sizeof val, "%d o b@x\n%s", i, tail);
        free(tail);
        assert_int_equal(storage_get(st, "a@x", "mam", key, &v, &len), 0);
        assert_int_equal(len, strlen(val));
        assert_memory_equal(v, val, len);
        free(v);
    }
    storage_range_t q = {.by_stamp = 1, .tag = "b@x"};
    storage_res_t res;
    assert_int_equal(storage_range(st, "a@x", "mam", &q, &res), 0);
    assert_int_equal(res.nrecs, 9);                     /* the odd ones but 7 */
    storage_res_clear(&res);
    share_expect(st, "b@x", "twin", "0 i a@x/phone", 0);
    if (!pg_url) {
        assert_int_equal(shared_rows(f), 1);
        assert_int_equal(peek_int(f->path, "SELECT count(*) FROM logs WHERE stamped = 1"), 19);
    }
    stamped_key(key, sizeof key, 5000, 0);
    assert_int_equal(storage_del(st, "a@x", "mam", key), 0);
    share_expect(st, "b@x", "twin", "0 i a@x/phone", 0);
    /* A record whose value runs past the buffer: refused whole. */
    strbuf_init(&b);
    recs = xmalloc(2 * sizeof *recs);
    for (int i = 0; i < 2; i++)
        recs[i] = (storage_put_rec_t){.owner = many_add(&b, "c@x"), .coll = many_add(&b, "mam"),
                                      .key = many_add(&b, i ? "k2" : "k1"),
                                      .tag = STORAGE_NO_TAG, .val = many_add(&b, "v"),
                                      .len = i ? 100 : 1, .stamp = 1};
    a = (acall_t){0};
    size = b.len;
    storage_put_many_take_async(st, strbuf_steal(&b), size, recs, 2, acall_cb, &a);
    storage_drain(st);
    assert_int_equal(a.done, 1);
    assert_int_equal(a.status, -1);
    assert_int_equal(storage_count(st, "c@x", "mam"), 0);
}

typedef struct ticker {
    struct event *ev;
    int ticks;
} ticker_t;

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ((ticker_t *)arg)->ticks++;
}

/* A slow query does not hold the loop: a 10 ms timer keeps firing while the
 * database sleeps 500 ms, and the call returns at once. SQLite answers inside
 * the call (it is local and quick). */
static void test_slow_query_loop_turns(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    ticker_t t = {0};
    t.ev = event_new(storage_base(st), -1, EV_PERSIST, tick, &t);
    struct timeval ten = {0, 10000};
    event_add(t.ev, &ten);
    acall_t a = {0};
    int64_t t0 = storage_now_us();
    storage_ping_async(st, 500, acall_cb, &a);
    int64_t call_us = storage_now_us() - t0;
    if (!pg_url) {
        assert_int_equal(a.done, 1);
        event_free(t.ev);
        return;
    }
    assert_int_equal(a.done, 0);
    assert_true(call_us < 50000);
    while (!a.done)
        event_base_loop(storage_base(st), EVLOOP_ONCE);
    int64_t total_us = storage_now_us() - t0;
    event_free(t.ev);
    assert_int_equal(a.status, 0);
    assert_true(total_us >= 500000);
    /* 50 periods in 500 ms; a loaded machine may merge a few. */
    assert_true(t.ticks >= 25);
    print_message("slow query: call returned in %lld us, answer after %lld ms, %d timer ticks\n",
                  (long long)call_us, (long long)(total_us / 1000), t.ticks);
}

/* The server drops the connection: what was in flight or queued fails, the
 * driver reconnects on its own, and requests work again. */
static void test_reconnect(void **state)
{
    if (!pg_url)
        skip();
#ifdef WEFT_HAVE_PGSQL
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    assert_int_equal(storage_put(st, "a", "c", "k", "v", 1), 0);
    pg_run("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
           " WHERE datname = current_database() AND pid <> pg_backend_pid()"
           " AND backend_type = 'client backend'");
    /* The first request finds the connection dead. */
    int first = storage_ping(st, 0);
    int64_t t0 = storage_now_us();
    int ok = first == 0;
    while (!ok && storage_now_us() - t0 < 10000000) {
        struct timeval tv = {0, 50000};
        event_base_loopexit(storage_base(st), &tv);
        event_base_dispatch(storage_base(st));
        ok = storage_ping(st, 0) == 0;
    }
    assert_true(ok);
    char *v;
    assert_int_equal(storage_get(st, "a", "c", "k", &v, NULL), 0);
    assert_string_equal(v, "v");
    free(v);
    print_message("reconnect: first request %s, back after %lld ms\n",
                  first == 0 ? "succeeded" : "failed",
                  (long long)((storage_now_us() - t0) / 1000));
#else
    (void)state;
#endif
}


/* A blocking call made from a completion callback: fine on SQLite (no loop
 * runs); on PostgreSQL the loop cannot run inside itself, and storage aborts
 * with a log line instead of spinning forever. */
static void nested_blocking_cb(storage_res_t *res, void *arg)
{
    (void)res;
    storage_t *st = arg;
    int n = storage_count(st, "a", "c");
    if (!storage_is_async(st))
        assert_int_equal(n, 1);
}

static void test_blocking_inside_callback(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    assert_int_equal(storage_put(f->st, "a", "c", "k", "v", 1), 0);
    if (!pg_url) {
        storage_ping_async(f->st, 0, nested_blocking_cb, f->st);
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* A connection of its own: the parent's stays untouched. */
        storage_t *c = open_ok(f);
        storage_ping_async(c, 0, nested_blocking_cb, c);
        storage_drain(c);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

/* Tags: one record serves the whole collection and the range of its tag. */
static void test_range_tags(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    const char *tags[] = {"b@x", "c@x", "b@x", NULL, "b@x", "c@x"};
    for (int i = 0; i < 6; i++) {
        char k[8], v[8];
        snprintf(k, sizeof k, "k%d", i + 1);
        snprintf(v, sizeof v, "m%d", i + 1);
        assert_int_equal(storage_put_tag(st, "a", C("arch"), k, tags[i], v, strlen(v)), 0);
    }
    assert_int_equal(storage_put_tag(st, "z", C("arch"), "k9", "b@x", "other", 5), 0);
    storage_range_t all = {.by_stamp = 1};
    expect_range(st, &all, 0, "m1,m2,m3,m4,m5,m6,");
    storage_range_t q = {.by_stamp = 1, .tag = "b@x"};
    expect_range(st, &q, 0, "m1,m3,m5,");
    q.reverse = 1;
    q.limit = 2;
    expect_range(st, &q, 0, "m5,m3,");                    /* the newest page of b@x */
    q.before = "k3";
    expect_range(st, &q, 0, "m1,");
    q.before = "k2";                                        /* c@x's: not in b@x's set */
    expect_range(st, &q, 1, "");
    q.before = NULL;
    q.reverse = 0;
    q.limit = 0;
    q.after = "k1";
    expect_range(st, &q, 0, "m3,m5,");
    storage_range_t byseq = {.tag = "c@x", .reverse = 1};
    expect_range(st, &byseq, 0, "m6,m2,");
    storage_range_t none = {.tag = "nobody@x"};
    expect_range(st, &none, 0, "");
    /* Rows carry their tag; a plain put replaces the record and its tag. */
    storage_res_t res;
    assert_int_equal(storage_range(st, "a", C("arch"), &all, &res), 0);
    assert_string_equal(res.recs[0].tag, "b@x");
    assert_null(res.recs[3].tag);
    storage_res_clear(&res);
    assert_int_equal(storage_put(st, "a", C("arch"), "k1", "m1b", 3), 0);
    storage_range_t b = {.by_stamp = 1, .tag = "b@x"};
    expect_range(st, &b, 0, "m3,m5,");
    assert_int_equal(storage_put_tag(st, "a", C("arch"), "k4", "b@x", "m4b", 3), 0);
    expect_range(st, &b, 0, "m3,m5,m4b,");
    assert_int_equal(storage_del(st, "a", C("arch"), "k3"), 0);
    expect_range(st, &b, 0, "m5,m4b,");
    /* The asynchronous form, as mod_mam writes. */
    acall_t a = {0};
    storage_put_tag_async(st, "a", C("arch"), "k7", "c@x", "m7", 2, acall_cb, &a);
    storage_drain(st);
    assert_int_equal(a.done, 1);
    assert_int_equal(a.status, 0);
    storage_range_t c = {.by_stamp = 1, .tag = "c@x"};
    expect_range(st, &c, 0, "m2,m6,m7,");
}

/* ------------------------------------------------------------ log collections */

/* A file at schema version 3 (before log collections had tables of their
 * own), empty, at f->path. */
static void make_v3_file(fixture_t *f, const char *name)
{
    snprintf(f->path, sizeof f->path, "%s/%s", f->dir, name);
    poke(f->path, "CREATE TABLE users (bare TEXT PRIMARY KEY NOT NULL, sha256 TEXT, sha1 TEXT,"
                  " created INTEGER NOT NULL);"
                  "CREATE TABLE records (seq INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL,"
                  " coll TEXT NOT NULL, key TEXT, value BLOB NOT NULL, UNIQUE (owner, coll, key));"
                  "CREATE INDEX records_list ON records (owner, coll, seq);"
                  "ALTER TABLE records ADD COLUMN stamp INTEGER NOT NULL DEFAULT 0;"
                  "CREATE INDEX records_stamp ON records (owner, coll, stamp, seq);"
                  "ALTER TABLE records ADD COLUMN tag TEXT;"
                  "CREATE INDEX records_tag ON records (owner, coll, tag, stamp, seq)"
                  " WHERE tag IS NOT NULL;"
                  "PRAGMA user_version = 3;");
}

/* Schema step v5 builds the log index's blocks from an archive already
 * there: lists of several blocks, stamps that run against seq. */
/* The WAL is checkpointed by the driver's thread: 24 MiB written in
 * batches leave a WAL of a few batches at most (the writer's own automatic
 * checkpoint is replaced by the thread's hook: were the thread not
 * checkpointing, the WAL would hold all 24 MiB), and a close leaves no WAL
 * behind and every record in the file. */
static void test_wal_checkpointed_by_thread(void **state)
{
    SQLITE_ONLY();
    fixture_t *f = *state;
    f->st = open_ok(f);
    char wal[600];
    snprintf(wal, sizeof wal, "%s-wal", f->path);
    char *val = xmalloc(1024);
    memset(val, 'v', 1024);
    for (int batch = 0; batch < 24; batch++) {
        assert_int_equal(storage_begin(f->st), 0);
        for (int i = 0; i < 1024; i++) {
            char key[32];
            snprintf(key, sizeof key, "b%02d-%04d", batch, i);
            assert_int_equal(storage_put(f->st, "w@x", "mam", key, val, 1024), 0);
        }
        assert_int_equal(storage_commit(f->st), 0);
        usleep(50000);      /* the batches' spacing: the thread's turn */
    }
    free(val);
    struct stat sb;
    assert_int_equal(stat(wal, &sb), 0);
    print_message("WAL after 24 MiB in 24 batches: %lld bytes\n", (long long)sb.st_size);
    assert_true(sb.st_size < 12 << 20);
    assert_int_equal(storage_count(f->st, "w@x", "mam"), 24 * 1024);
    storage_close(f->st);
    f->st = NULL;
    assert_int_equal(stat(wal, &sb), -1);
    f->st = open_ok(f);
    assert_int_equal(storage_count(f->st, "w@x", "mam"), 24 * 1024);
}

/* The WAL's writes are held and written together (storage_sqlite_vfs.c):
 * a transaction larger than the page cache spills frames before its commit
 * and reads them back; another connection sees nothing before the commit
 * and everything right after it; a rolled-back spill leaves no trace; the
 * file is whole after a reopen. */
static void test_wal_writes_gathered(void **state)
{
    SQLITE_ONLY();
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_set_cache(f->st, 64 * 1024);
    char *val = xmalloc(1500);
    char key[32];
    for (int round = 0; round < 3; round++) {
        int rollback = round == 1;
        assert_int_equal(storage_begin(f->st), 0);
        for (int i = 0; i < 2000; i++) {
            memset(val, 'a' + (i + round) % 26, 1500);
            snprintf(key, sizeof key, "r%d-%04d", round, i);
            assert_int_equal(storage_put(f->st, "w@x", i % 2 ? "mam" : "notes", key, val, 1500), 0);
        }
        /* The first records' pages left the cache long ago: read back
         * from the frames the transaction wrote. */
        for (int i = 0; i < 10; i++) {
            char *v = NULL;
            size_t n = 0;
            snprintf(key, sizeof key, "r%d-%04d", round, i);
            assert_int_equal(storage_get(f->st, "w@x", i % 2 ? "mam" : "notes", key, &v, &n), 0);
            assert_int_equal(n, 1500);
            assert_int_equal(v[0], 'a' + (i + round) % 26);
            assert_int_equal(v[1499], 'a' + (i + round) % 26);
            free(v);
        }
        long long before = peek_int(f->path, "SELECT count(*) FROM records");
        if (rollback) {
            assert_int_equal(storage_rollback(f->st), 0);
        } else {
            assert_int_equal(storage_commit(f->st), 0);
            /* Published only with every frame in the file. */
            assert_int_equal(peek_int(f->path, "SELECT count(*) FROM records"), before + 1000);
            assert_int_equal(peek_int(f->path, "SELECT count(*) FROM logs"), (round ? 2 : 1) * 1000);
        }
    }
    free(val);
    assert_int_equal(storage_count(f->st, "w@x", "notes"), 2000);
    assert_int_equal(storage_count(f->st, "w@x", "mam"), 2000);
    /* The checkpoint thread copies those pages into the database; once it
     * is done, the next commit starts the WAL over, and from then on another
     * connection reads them from the database file, where the checkpoint's
     * held writes must have gone. */
    for (int i = 0; i < 10; i++) {
        usleep(20000);
        assert_int_equal(storage_put(f->st, "w@x", "notes", "after", "x", 1), 0);
        assert_int_equal(peek_int(f->path, "SELECT count(*) FROM pragma_integrity_check WHERE "
                                           "integrity_check != 'ok'"), 0);
    }
    assert_int_equal(peek_int(f->path, "SELECT count(*) FROM logs"), 2000);
    assert_int_equal(peek_int(f->path, "SELECT sum(length(value)) FROM records WHERE key LIKE 'r2-%'"),
                     1000 * 1500);
    reopen(f);
    assert_int_equal(storage_count(f->st, "w@x", "mam"), 2000);
    char *v = NULL;
    assert_int_equal(storage_get(f->st, "w@x", "mam", "r1-0001", &v, NULL), 1);
    assert_int_equal(storage_get(f->st, "w@x", "mam", "r2-1999", &v, NULL), 0);
    assert_int_equal(v[0], 'a' + (1999 + 2) % 26);
    free(v);
    assert_int_equal(peek_int(f->path, "SELECT count(*) FROM pragma_integrity_check WHERE "
                                       "integrity_check != 'ok'"), 0);
}

static void test_open_v4_builds_blocks(void **state)
{
    SQLITE_ONLY();
    fixture_t *f = *state;
    make_v3_file(f, "v3b.db");
    /* 1,000 records of a@x: seq i, stamp 5000 - i (newest seq oldest
     * stamp), every third tagged c@x; 10 of b@x. */
    poke(f->path, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)"
                  " INSERT INTO records (seq, owner, coll, key, value, stamp, tag)"
                  " SELECT i, 'a@x', 'mam', 'k' || i, 'v', 5000 - i,"
                  " CASE WHEN i % 3 = 0 THEN 'c@x' END FROM n;"
                  "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10)"
                  " INSERT INTO records (seq, owner, coll, key, value, stamp)"
                  " SELECT 2000 + i, 'b@x', 'mam', 'b' || i, 'w', i FROM n;");
    f->st = open_ok(f);
    storage_t *st = f->st;
    assert_true(peek_int(f->path, "SELECT count(*) FROM log_index") > 8);
    assert_int_equal(storage_count(st, "a@x", "mam"), 1000);
    assert_int_equal(storage_count(st, "b@x", "mam"), 10);
    storage_res_t res;
    storage_range_t q = {.by_stamp = 1, .limit = 3};    /* the oldest: the last seqs */
    assert_int_equal(storage_range(st, "a@x", "mam", &q, &res), 0);
    assert_int_equal(res.nrecs, 3);
    assert_string_equal(res.recs[0].key, "k1000");
    assert_string_equal(res.recs[2].key, "k998");
    storage_res_clear(&res);
    q = (storage_range_t){.reverse = 1, .limit = 2};    /* by seq, newest first */
    assert_int_equal(storage_range(st, "a@x", "mam", &q, &res), 0);
    assert_int_equal(res.nrecs, 2);
    assert_string_equal(res.recs[0].key, "k1000");
    assert_string_equal(res.recs[1].key, "k999");
    storage_res_clear(&res);
    q = (storage_range_t){.tag = "c@x", .by_stamp = 1, .reverse = 1, .after = "k600"};
    assert_int_equal(storage_range(st, "a@x", "mam", &q, &res), 0);
    assert_int_equal(res.nrecs, 199);                   /* 3, 6, ... 597 */
    assert_string_equal(res.recs[0].key, "k3");
    assert_string_equal(res.recs[198].key, "k597");
    storage_res_clear(&res);
    q = (storage_range_t){.since = 4001, .until = 4010};
    assert_int_equal(storage_range(st, "a@x", "mam", &q, &res), 0);
    assert_int_equal(res.nrecs, 10);
    assert_string_equal(res.recs[0].key, "k990");
    storage_res_clear(&res);
}

/* A file of schema v3 whose archives ("mam", "muc-archive") are rows of
 * records migrates to v4: they move to the log table with the same seq,
 * stamp, key, tag and value; RSM points made before the migration still
 * work; records written afterwards, in either table, take seqs above every
 * seq given before (even those of deleted records) and never share one. */
static void test_open_v3_moves_logs(void **state)
{
    SQLITE_ONLY();
    fixture_t *f = *state;
    make_v3_file(f, "v3.db");
    poke(f->path, "INSERT INTO records (seq, owner, coll, key, value, stamp, tag) VALUES"
                  " (10, 'a@x', 'mam', 'id10', 'to b', 100, 'b@x'),"
                  " (11, 'a@x', 'roster', 'b@x', 'r', 101, NULL),"
                  " (12, 'b@x', 'mam', 'id12', 'from a', 102, 'a@x'),"
                  " (13, 'a@x', 'mam', 'id13', 'to c', 103, 'c@x'),"
                  " (14, 'room@m', 'muc-archive', 's14', 'hello', 104, NULL),"
                  " (15, 'a@x', 'mam', 'id15', 'to b again', 105, 'b@x'),"
                  " (16, 'a@x', 'mam', 'id16', 'untagged', 106, NULL),"
                  " (17, 'room@m', 'muc-archive', 's17', 'again', 107, NULL),"
                  " (18, 'a@x', 'mam-prefs', '', 'p', 108, NULL),"
                  " (30, 'gone@x', 'offline', '30', 'deleted below', 110, NULL);"
                  "DELETE FROM records WHERE seq = 30;");
    f->st = open_ok(f);
    storage_t *st = f->st;
    assert_int_equal(peek_int(f->path, "PRAGMA user_version"), SQLITE_VERSION_NOW);
    assert_int_equal(peek_int(f->path, "SELECT count(*) FROM records"), 2);
    assert_int_equal(peek_int(f->path, "SELECT count(*) FROM logs"), 7);
    assert_int_equal(peek_int(f->path, "SELECT count(*) FROM log_streams"), 3);
    assert_int_equal(peek_int(f->path, "SELECT count(*) FROM log_tags"), 3);

    storage_res_t res;
    storage_range_t all = {0};
    assert_int_equal(storage_range(st, "a@x", "mam", &all, &res), 0);
    assert_int_equal(res.nrecs, 4);
    static const struct { int64_t seq, stamp; const char *key, *tag, *val; } want[] = {
        {10, 100, "id10", "b@x", "to b"}, {13, 103, "id13", "c@x", "to c"},
        {15, 105, "id15", "b@x", "to b again"}, {16, 106, "id16", NULL, "untagged"},
    };
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(res.recs[i].seq, want[i].seq);
        assert_int_equal(res.recs[i].stamp, want[i].stamp);
        assert_string_equal(res.recs[i].key, want[i].key);
        if (want[i].tag)
            assert_string_equal(res.recs[i].tag, want[i].tag);
        else
            assert_null(res.recs[i].tag);
        assert_int_equal(res.recs[i].len, strlen(want[i].val));
        assert_string_equal(res.recs[i].val, want[i].val);
    }
    storage_res_clear(&res);
    /* A page after a key given out before the migration, by stamp and by
     * seq, of the whole archive and of one tag. */
    storage_range_t q = {.by_stamp = 1, .after = "id10", .limit = 2};
    assert_int_equal(storage_range(st, "a@x", "mam", &q, &res), 0);
    assert_int_equal(res.nrecs, 2);
    assert_string_equal(res.recs[0].key, "id13");
    assert_string_equal(res.recs[1].key, "id15");
    storage_res_clear(&res);
    q = (storage_range_t){.tag = "b@x", .after = "id10"};
    assert_int_equal(storage_range(st, "a@x", "mam", &q, &res), 0);
    assert_int_equal(res.nrecs, 1);
    assert_int_equal(res.recs[0].seq, 15);
    storage_res_clear(&res);
    q = (storage_range_t){.reverse = 1, .before = "s17"};
    assert_int_equal(storage_range(st, "room@m", "muc-archive", &q, &res), 0);
    assert_int_equal(res.nrecs, 1);
    assert_string_equal(res.recs[0].val, "hello");
    storage_res_clear(&res);
    char *v;
    assert_int_equal(storage_get(st, "a@x", "roster", "b@x", &v, NULL), 0);
    free(v);
    assert_int_equal(storage_get(st, "b@x", "mam", "id12", &v, NULL), 0);
    assert_string_equal(v, "from a");
    free(v);

    /* New records, in both tables, above 30 (the largest seq ever given)
     * and each seq once. */
    int64_t s1, s2, s3, s4;
    assert_int_equal(storage_append(st, "a@x", "offline", "o", 1, &s1), 0);
    assert_int_equal(storage_append(st, "a@x", "mam", "m", 1, &s2), 0);
    assert_int_equal(storage_append(st, "a@x", "offline", "o", 1, &s3), 0);
    assert_int_equal(storage_put_tag(st, "a@x", "mam", "id99", "b@x", "new", 3), 0);
    assert_int_equal(storage_append(st, "room@m", "muc-archive", "m", 1, &s4), 0);
    assert_true(s1 > 30);
    assert_true(s2 > s1);
    assert_true(s3 > s2);
    assert_true(s4 > s3 + 1);
    /* A scan (weftctl migrate, export) merges both tables in seq order. */
    assert_int_equal(storage_scan(st, 0, 0, &res), 0);
    assert_int_equal(res.nrecs, 14);
    for (size_t i = 1; i < res.nrecs; i++)
        assert_true(res.recs[i].seq > res.recs[i - 1].seq);
    assert_string_equal(res.recs[0].owner, "a@x");
    assert_string_equal(res.recs[0].coll, "mam");
    assert_string_equal(res.recs[0].tag, "b@x");
    assert_string_equal(res.recs[1].coll, "roster");
    storage_res_clear(&res);
    /* The counters survive a reopen. */
    reopen(f);
    int64_t s5, s6;
    assert_int_equal(storage_append(f->st, "a@x", "offline", "o", 1, &s5), 0);
    assert_int_equal(storage_append(f->st, "a@x", "mam", "m", 1, &s6), 0);
    assert_true(s5 > s4);
    assert_true(s6 > s5);
}

/* A user delete takes the user's log records and streams, in the same
 * transaction as the rest; other owners' stay. */
static void test_user_delete_logs(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    assert_int_equal(storage_user_create(st, "a@x", "k", "k"), 0);
    assert_int_equal(storage_put_tag(st, "a@x", "mam", "k1", "b@x", "v", 1), 0);
    assert_int_equal(storage_put_tag(st, "a@x", "mam", "k2", "c@x", "v", 1), 0);
    assert_int_equal(storage_put(st, "a@x", "muc-archive", "k3", "v", 1), 0);
    assert_int_equal(storage_put(st, "a@x", "roster", "b@x", "r", 1), 0);
    assert_int_equal(storage_put_tag(st, "b@x", "mam", "k1", "a@x", "v", 1), 0);
    assert_int_equal(storage_user_delete(st, "a@x"), 0);
    assert_int_equal(storage_count(st, "a@x", "mam"), 0);
    assert_int_equal(storage_count(st, "a@x", "muc-archive"), 0);
    assert_int_equal(storage_count(st, "a@x", "roster"), 0);
    assert_int_equal(storage_count(st, "b@x", "mam"), 1);
    if (!pg_url) {
        assert_int_equal(peek_int(f->path, "SELECT count(*) FROM logs"), 1);
        assert_int_equal(peek_int(f->path, "SELECT count(*) FROM log_streams WHERE owner = 'a@x'"), 0);
    }
    /* The user comes back: a new archive, none of the old one. */
    assert_int_equal(storage_put_tag(st, "a@x", "mam", "k9", "b@x", "again", 5), 0);
    storage_res_t res;
    storage_range_t q = {.by_stamp = 1, .tag = "b@x"};
    assert_int_equal(storage_range(st, "a@x", "mam", &q, &res), 0);
    assert_int_equal(res.nrecs, 1);
    assert_string_equal(res.recs[0].key, "k9");
    storage_res_clear(&res);
    /* A rolled-back delete takes nothing. */
    assert_int_equal(storage_begin(st), 0);
    assert_int_equal(storage_user_delete(st, "b@x"), 1);
    assert_int_equal(storage_count(st, "b@x", "mam"), 0);
    assert_int_equal(storage_rollback(st), 0);
    assert_int_equal(storage_count(st, "b@x", "mam"), 1);
    assert_int_equal(storage_put(st, "b@x", "mam", "k2", "v", 1), 0);
    assert_int_equal(storage_count(st, "b@x", "mam"), 2);
}

/* A log collection against a model of it: thousands of random puts (new and
 * replaced keys, stamps out of order and tied, tags changing), deletes,
 * appends, in transactions that commit or roll back and outside any, then
 * ranges of every kind compared with the model's answer. Lists long enough
 * to fill many of the SQLite driver's index blocks (storage_sqlite_logidx.c)
 * and to insert into the middle of them. */
typedef struct model_rec {
    char key[16];
    int64_t stamp, order;       /* order: insertion order, as seq */
    int tag;                    /* 0: none, else "t<tag>@x" */
    int alive;
} model_rec_t;

#define MODEL_MAX 4000

static model_rec_t model[MODEL_MAX], model_saved[MODEL_MAX];
static size_t nmodel, nmodel_saved;
static int64_t model_order, model_order_saved;

static uint32_t model_rng = 12345;
static uint32_t rnd(uint32_t n)
{
    model_rng = model_rng * 1103515245u + 12345u;
    return (model_rng >> 8) % n;
}

static model_rec_t *model_find(const char *key)
{
    for (size_t i = 0; i < nmodel; i++)
        if (model[i].alive && !strcmp(model[i].key, key))
            return &model[i];
    return NULL;
}

static int model_cmp_stamp(const model_rec_t *a, const model_rec_t *b)
{
    if (a->stamp != b->stamp)
        return a->stamp < b->stamp ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

/* The model's answer to q: keys in order into out (status as storage's). */
static int model_range(const storage_range_t *q, const model_rec_t **out, size_t *nout)
{
    int tag = q->tag ? atoi(q->tag + 1) : 0;
    const model_rec_t *a = NULL, *b = NULL;
    if (q->after && (!(a = model_find(q->after)) || (tag && a->tag != tag)))
        return 1;
    if (q->before && (!(b = model_find(q->before)) || (tag && b->tag != tag)))
        return 1;
    size_t n = 0;
    for (size_t i = 0; i < nmodel; i++) {
        const model_rec_t *m = &model[i];
        if (!m->alive || (tag && m->tag != tag) || (q->since && m->stamp < q->since) ||
            (q->until && m->stamp > q->until))
            continue;
        if (q->by_stamp ? (a && model_cmp_stamp(m, a) <= 0) || (b && model_cmp_stamp(m, b) >= 0)
                        : (a && m->order <= a->order) || (b && m->order >= b->order))
            continue;
        out[n++] = m;
    }
    /* insertion sort: in the order asked */
    for (size_t i = 1; i < n; i++) {
        for (size_t j = i; j > 0; j--) {
            const model_rec_t *x = out[j - 1], *y = out[j];
            int c = q->by_stamp ? model_cmp_stamp(x, y) : (x->order < y->order ? -1 : 1);
            if (q->reverse ? c > 0 : c < 0)
                break;
            out[j - 1] = y;
            out[j] = x;
        }
    }
    if (q->limit && n > q->limit)
        n = q->limit;
    *nout = n;
    return 0;
}

static void model_check(storage_t *st, const char *owner)
{
    static const model_rec_t *want[MODEL_MAX];
    int alive = 0;
    for (size_t i = 0; i < nmodel; i++)
        alive += model[i].alive;
    assert_int_equal(storage_count(st, owner, "mam"), alive);
    for (int t = 0; t < 40; t++) {
        storage_range_t q = {.by_stamp = rnd(2), .reverse = rnd(2)};
        char tag[16], after[16], before[16];
        if (rnd(2)) {
            snprintf(tag, sizeof tag, "t%u@x", rnd(4) + 1);
            q.tag = tag;
        }
        const model_rec_t *pick = nmodel ? &model[rnd((uint32_t)nmodel)] : NULL;
        if (pick && rnd(3) == 0) {
            snprintf(after, sizeof after, "%s", pick->key);
            q.after = after;
        }
        pick = nmodel ? &model[rnd((uint32_t)nmodel)] : NULL;
        if (pick && rnd(3) == 0) {
            snprintf(before, sizeof before, "%s", pick->key);
            q.before = before;
        }
        if (rnd(3) == 0)
            q.since = rnd(60) + 1;
        if (rnd(3) == 0)
            q.until = rnd(60) + 1;
        q.limit = rnd(3) ? rnd(60) : 0;
        size_t nwant = 0;
        int status = model_range(&q, want, &nwant);
        storage_res_t res;
        int got = storage_range(st, owner, "mam", &q, &res);
        if (got != status)
            fail_msg("range by_stamp=%d reverse=%d tag=%s after=%s before=%s since=%lld until=%lld "
                     "limit=%zu: status %d, the model says %d", q.by_stamp, q.reverse,
                     q.tag ? q.tag : "-", q.after ? q.after : "-", q.before ? q.before : "-",
                     (long long)q.since, (long long)q.until, q.limit, got, status);
        if (status == 0) {
            if (res.nrecs != nwant)
                fail_msg("range by_stamp=%d reverse=%d tag=%s after=%s before=%s since=%lld "
                         "until=%lld limit=%zu: %zu records, the model says %zu", q.by_stamp,
                         q.reverse, q.tag ? q.tag : "-", q.after ? q.after : "-",
                         q.before ? q.before : "-", (long long)q.since, (long long)q.until,
                         q.limit, res.nrecs, nwant);
            for (size_t i = 0; i < nwant; i++) {
                assert_string_equal(res.recs[i].key, want[i]->key);
                assert_int_equal(res.recs[i].stamp, want[i]->stamp);
                if (want[i]->tag) {
                    char t2[16];
                    snprintf(t2, sizeof t2, "t%d@x", want[i]->tag);
                    assert_non_null(res.recs[i].tag);
                    assert_string_equal(res.recs[i].tag, t2);
                } else {
                    assert_null(res.recs[i].tag);
                }
            }
        }
        storage_res_clear(&res);
    }
}

static void test_log_model(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    const char *owner = "m@x";
    int ops = pg_url ? 1500 : 6000;
    int in_txn = 0;
    nmodel = 0;
    model_order = 0;
    for (int op = 0; op < ops; op++) {
        uint32_t what = rnd(100);
        if (!in_txn && what < 3) {
            assert_int_equal(storage_begin(st), 0);
            memcpy(model_saved, model, nmodel * sizeof *model);
            nmodel_saved = nmodel;
            model_order_saved = model_order;
            in_txn = 1;
        } else if (in_txn && what < 5) {
            if (rnd(4) == 0) {
                assert_int_equal(storage_rollback(st), 0);
                memcpy(model, model_saved, nmodel_saved * sizeof *model);
                nmodel = nmodel_saved;
                model_order = model_order_saved;
            } else {
                assert_int_equal(storage_commit(st), 0);
            }
            in_txn = 0;
        } else if (what < 12 && nmodel) {
            model_rec_t *m = model_find(model[rnd((uint32_t)nmodel)].key);
            const char *key = m ? m->key : "k-none";
            assert_int_equal(storage_del(st, owner, "mam", key), m ? 0 : 1);
            if (m)
                m->alive = 0;
        } else if (what < 15 && nmodel < MODEL_MAX) {
            int64_t seq;
            int64_t before = storage_now_us();
            assert_int_equal(storage_append(st, owner, "mam", "a", 1, &seq), 0);
            model_rec_t *m = &model[nmodel++];
            snprintf(m->key, sizeof m->key, "%lld", (long long)seq);
            /* an append is stamped with the time of the write */
            storage_res_t res;
            storage_range_t one = {.by_stamp = 1, .since = before, .reverse = 1};
            assert_int_equal(storage_range(st, owner, "mam", &one, &res), 0);
            m->stamp = 0;
            for (size_t i = 0; i < res.nrecs; i++)
                if (!strcmp(res.recs[i].key, m->key))
                    m->stamp = res.recs[i].stamp;
            storage_res_clear(&res);
            assert_true(m->stamp >= before);
            m->order = ++model_order;
            m->tag = 0;
            m->alive = 1;
        } else {
            /* a put: a key seen before a third of the time; now and then,
             * inside a transaction, a burst of new keys (the SQLite driver
             * inserts those 16 a statement, mod_mam's batches) */
            int burst = in_txn && rnd(40) == 0 ? 16 + (int)rnd(40) : 1;
            for (int b = 0; b < burst && nmodel < MODEL_MAX; b++) {
                char key[16];
                if (burst == 1 && nmodel && rnd(3) == 0)
                    snprintf(key, sizeof key, "%s", model[rnd((uint32_t)nmodel)].key);
                else
                    snprintf(key, sizeof key, "k%d.%d", op, b);
                int64_t stamp = rnd(10) ? (int64_t)(op / 100) + rnd(5) + 1 : (int64_t)rnd(60) + 1;
                int tag = rnd(5);
                char tagtext[16];
                snprintf(tagtext, sizeof tagtext, "t%d@x", tag);
                assert_int_equal(storage_put_at(st, owner, "mam", key, tag ? tagtext : NULL, "v",
                                                1, stamp), 0);
                model_rec_t *m = model_find(key);
                if (!m) {
                    m = &model[nmodel++];
                    snprintf(m->key, sizeof m->key, "%s", key);
                    m->order = ++model_order;
                    m->alive = 1;
                }
                m->stamp = stamp;
                m->tag = tag;
            }
        }
        if (!in_txn && op % 500 == 499)
            model_check(st, owner);
    }
    if (in_txn)
        assert_int_equal(storage_commit(st), 0);
    model_check(st, owner);
    /* Another owner's archive is untouched by all of it; del_all empties. */
    assert_int_equal(storage_put(st, "other@x", "mam", "k1", "v", 1), 0);
    assert_int_equal(storage_del_all(st, owner, "mam"), 0);
    assert_int_equal(storage_count(st, owner, "mam"), 0);
    assert_int_equal(storage_count(st, "other@x", "mam"), 1);
}

/* Ids the SQLite driver interns (the owner's stream, a tag) inside a
 * transaction that rolls back are not used afterwards: the next stream
 * created may take the same number, and records must still land in their
 * own owner's archive. */
static void test_log_rollback_ids(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    assert_int_equal(storage_begin(st), 0);
    assert_int_equal(storage_put_tag(st, "n@x", "mam", "k1", "t1@x", "lost", 4), 0);
    assert_int_equal(storage_rollback(st), 0);
    assert_int_equal(storage_put_tag(st, "o@x", "mam", "k1", "t2@x", "o's", 3), 0);
    assert_int_equal(storage_put_tag(st, "n@x", "mam", "k2", "t1@x", "n's", 3), 0);
    storage_res_t res;
    storage_range_t all = {0};
    assert_int_equal(storage_range(st, "o@x", "mam", &all, &res), 0);
    assert_int_equal(res.nrecs, 1);
    assert_string_equal(res.recs[0].val, "o's");
    assert_string_equal(res.recs[0].tag, "t2@x");
    storage_res_clear(&res);
    assert_int_equal(storage_range(st, "n@x", "mam", &all, &res), 0);
    assert_int_equal(res.nrecs, 1);
    assert_string_equal(res.recs[0].val, "n's");
    assert_string_equal(res.recs[0].tag, "t1@x");
    storage_res_clear(&res);
    /* The same through a failed savepoint (a nested begin is refused, the
     * outer transaction goes on) and a commit. */
    assert_int_equal(storage_begin(st), 0);
    assert_int_equal(storage_append(st, "p@x", "muc-archive", "p1", 2, NULL), 0);
    assert_int_equal(storage_commit(st), 0);
    assert_int_equal(storage_count(st, "p@x", "muc-archive"), 1);
}

/* Another connection on the file (weftctl beside the sm) deletes a user
 * whose stream this one has cached; this one's next writes still reach
 * the user's archive as the other connection sees it. */
static void test_log_other_handle(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *other = open_ok(f);
    assert_int_equal(storage_put(f->st, "a@x", "mam", "k1", "v1", 2), 0);
    assert_int_equal(storage_count(other, "a@x", "mam"), 1);
    assert_int_equal(storage_user_delete(other, "a@x"), 1);
    assert_int_equal(storage_put(other, "z@x", "mam", "k1", "z", 1), 0);
    assert_int_equal(storage_put(f->st, "a@x", "mam", "k2", "v2", 2), 0);
    assert_int_equal(storage_count(other, "a@x", "mam"), 1);
    assert_int_equal(storage_count(other, "z@x", "mam"), 1);
    char *v;
    assert_int_equal(storage_get(other, "a@x", "mam", "k2", &v, NULL), 0);
    assert_string_equal(v, "v2");
    free(v);
    /* And the other way: a stream the other connection made is found. */
    assert_int_equal(storage_put(other, "a@x", "mam", "k3", "v3", 2), 0);
    assert_int_equal(storage_count(f->st, "a@x", "mam"), 2);
    storage_close(other);
}

int main(void)
{
    pg_url = getenv("WEFT_TEST_PGSQL");
    if (pg_url && !*pg_url)
        pg_url = NULL;
#ifndef WEFT_HAVE_PGSQL
    if (pg_url) {
        fprintf(stderr, "test_storage: built without the PostgreSQL driver\n");
        return 77;
    }
#endif
    print_message("storage driver under test: %s\n", pg_url ? "postgresql" : "sqlite");
    /* Expected error lines (refused nesting, ...) would only clutter the output. */
    log_open("test_storage", getenv("WEFT_TEST_LOG") ? "stderr" : "file:/dev/null", LOG_LVL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_empty_file_migrates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_not_a_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_unwritable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_users, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_delete_cascades, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transactions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_handles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reentry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_schemes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_v1_migrates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_mam_to_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_range_stamps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_range_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_import, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_take, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_shared_tails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_shared_tail_moved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_stamped_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_v6_points_bases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_query_loop_turns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blocking_inside_callback, setup, teardown),
        /* The record tests again, on log collections. */
        cmocka_unit_test_setup_teardown(test_records, setup_log, teardown),
        cmocka_unit_test_setup_teardown(test_binary_values, setup_log, teardown),
        cmocka_unit_test_setup_teardown(test_append_keys, setup_log, teardown),
        cmocka_unit_test_setup_teardown(test_transactions, setup_log, teardown),
        cmocka_unit_test_setup_teardown(test_reentry, setup_log, teardown),
        cmocka_unit_test_setup_teardown(test_append_seq, setup_log, teardown),
        cmocka_unit_test_setup_teardown(test_range, setup_log, teardown),
        cmocka_unit_test_setup_teardown(test_range_stamps, setup_log, teardown),
        cmocka_unit_test_setup_teardown(test_range_tags, setup_log, teardown),
        cmocka_unit_test_setup_teardown(test_scan_import, setup_log, teardown),
        cmocka_unit_test_setup_teardown(test_async, setup_log, teardown),
        cmocka_unit_test_setup_teardown(test_open_v3_moves_logs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_delete_logs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_rollback_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_other_handle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_v4_builds_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_checkpointed_by_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_writes_gathered, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    log_close();
    return rc;
}
