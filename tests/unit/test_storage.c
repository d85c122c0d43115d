/* test_storage: the SQLite storage — open (directory and 0600 file creation,
 * WAL, migrations from an empty file, a newer schema, files that are not
 * databases, unwritable paths), every account and record call, persistence
 * across close/open, cascading user delete, list order and stopping, append
 * keys, binary values, transactions (commit, rollback, nesting refused) and
 * list callbacks that re-enter storage. Each test works in a fresh directory. */
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
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "storage.h"
#include "strbuf.h"

typedef struct fixture {
    char dir[64];
    char path[128];
    storage_t *st;
} fixture_t;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fixture_t *f = xcalloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/weft-test-storage-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/db/weft.db", f->dir);
    *state = f;
    return 0;
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
    storage_t *st = storage_open(f->path, err, sizeof err);
    if (!st)
        fail_msg("storage_open: %s", err);
    return st;
}

static void reopen(fixture_t *f)
{
    storage_close(f->st);
    f->st = open_ok(f);
}

/* Reads an integer with a separate connection, as an operator's sqlite3 would. */
static long long peek_int(const char *path, const char *sql)
{
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
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* ------------------------------------------------------------ open */

static void test_open_creates(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    char dir[160];
    snprintf(dir, sizeof dir, "%s/db", f->dir);
    assert_int_equal(stat(dir, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(peek_int(f->path, "PRAGMA user_version"), 1);
    assert_int_equal(peek_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name IN"
                                       " ('users', 'records', 'records_list')"), 3);
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
    fixture_t *f = *state;
    snprintf(f->path, sizeof f->path, "%s/empty.db", f->dir);
    int fd = open(f->path, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    close(fd);
    f->st = open_ok(f);
    assert_int_equal(peek_int(f->path, "PRAGMA user_version"), 1);
    assert_int_equal(storage_user_count(f->st), 0);
    /* An existing file readable by others is restricted to its owner. */
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    /* Opening again runs no migration and keeps the data. */
    assert_int_equal(storage_user_create(f->st, "a@x", "k", NULL), 0);
    reopen(f);
    assert_int_equal(peek_int(f->path, "PRAGMA user_version"), 1);
    assert_int_equal(storage_user_exists(f->st, "a@x"), 1);
}

static void test_open_newer_schema_refused(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_close(f->st);
    f->st = NULL;
    poke(f->path, "PRAGMA user_version = 99");
    char err[256];
    assert_null(storage_open(f->path, err, sizeof err));
    assert_non_null(strstr(err, "schema version 99 is newer"));
}

static void test_open_not_a_database(void **state)
{
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
    assert_null(storage_open(f->path, err, sizeof err));
    assert_non_null(strstr(err, f->path));
    /* A file that is not ours keeps its mode and its content. */
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644);
    assert_int_equal(sb.st_size, 200 * strlen(junk));
}

static void test_open_unwritable(void **state)
{
    fixture_t *f = *state;
    char err[256];
    /* The parent "directory" is a regular file: fails for root too. */
    char file[160];
    snprintf(file, sizeof file, "%s/plain", f->dir);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(f->path, sizeof f->path, "%s/plain/weft.db", f->dir);
    assert_null(storage_open(f->path, err, sizeof err));
    assert_non_null(strstr(err, "cannot create directory"));

    /* The database path is a directory. */
    snprintf(f->path, sizeof f->path, "%s", f->dir);
    assert_null(storage_open(f->path, err, sizeof err));
    assert_non_null(strstr(err, f->dir));

    assert_null(storage_open("", err, sizeof err));
    assert_null(storage_open(NULL, err, sizeof err));

    /* A read-only file (permission bits do not stop root: skipped then). */
    if (geteuid() != 0) {
        snprintf(f->path, sizeof f->path, "%s/ro.db", f->dir);
        f->st = open_ok(f);
        storage_close(f->st);
        f->st = NULL;
        assert_int_equal(chmod(f->path, 0400), 0);
        assert_null(storage_open(f->path, err, sizeof err));
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
    assert_int_equal(storage_append(st, "a@x", "offline", "m1", 2), 0);
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

    assert_int_equal(storage_count(st, "a@x", "roster"), 0);
    v = (char *)"stale";
    len = 9;
    assert_int_equal(storage_get(st, "a@x", "roster", "b@x", &v, &len), 1);
    assert_null(v);
    assert_int_equal(len, 0);

    assert_int_equal(storage_put(st, "a@x", "roster", "c@x", "C1", 2), 0);
    assert_int_equal(storage_put(st, "a@x", "roster", "b@x", "B1", 2), 0);
    assert_int_equal(storage_put(st, "a@x", "roster", "d@x", "D1", 2), 0);
    assert_int_equal(storage_put(st, "a@x", "other", "c@x", "O", 1), 0);
    assert_int_equal(storage_put(st, "z@x", "roster", "c@x", "Z", 1), 0);
    assert_int_equal(storage_count(st, "a@x", "roster"), 3);

    assert_int_equal(storage_get(st, "a@x", "roster", "b@x", &v, &len), 0);
    assert_int_equal(len, 2);
    assert_string_equal(v, "B1");
    free(v);
    assert_int_equal(storage_get(st, "a@x", "roster", "b@x", NULL, NULL), 0);

    /* Replacing keeps the record's place in the list. */
    assert_int_equal(storage_put(st, "a@x", "roster", "c@x", "C2-longer", 9), 0);
    assert_int_equal(storage_count(st, "a@x", "roster"), 3);
    seen_t s;
    seen_init(&s);
    assert_int_equal(storage_list(st, "a@x", "roster", collect_rec, &s), 0);
    assert_string_equal(s.keys.data, "c@x,b@x,d@x,");
    assert_string_equal(s.vals.data, "C2-longer,B1,D1,");
    seen_free(&s);

    /* A callback's non-zero value stops the walk and is returned. */
    seen_init(&s);
    s.stop_at = 2;
    assert_int_equal(storage_list(st, "a@x", "roster", collect_rec, &s), 1);
    assert_int_equal(s.n, 2);
    seen_free(&s);

    /* An empty collection lists nothing. */
    seen_init(&s);
    assert_int_equal(storage_list(st, "a@x", "nothing", collect_rec, &s), 0);
    assert_int_equal(s.n, 0);
    seen_free(&s);

    assert_int_equal(storage_del(st, "a@x", "roster", "b@x"), 0);
    assert_int_equal(storage_del(st, "a@x", "roster", "b@x"), 1);
    assert_int_equal(storage_get(st, "a@x", "roster", "b@x", &v, &len), 1);
    assert_int_equal(storage_count(st, "a@x", "roster"), 2);

    reopen(f);
    st = f->st;
    assert_int_equal(storage_get(st, "a@x", "roster", "c@x", &v, &len), 0);
    assert_string_equal(v, "C2-longer");
    free(v);

    assert_int_equal(storage_del_all(st, "a@x", "roster"), 0);
    assert_int_equal(storage_del_all(st, "a@x", "roster"), 0);
    assert_int_equal(storage_count(st, "a@x", "roster"), 0);
    assert_int_equal(storage_count(st, "a@x", "other"), 1);
    assert_int_equal(storage_count(st, "z@x", "roster"), 1);

    /* Missing names are errors, not crashes. */
    assert_int_equal(storage_put(st, NULL, "c", "k", "v", 1), -1);
    assert_int_equal(storage_put(st, "a@x", "c", NULL, "v", 1), -1);
    assert_int_equal(storage_count(st, "a@x", NULL), -1);
    assert_int_equal(storage_append(st, NULL, "c", "v", 1), -1);
}

static void test_binary_values(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    const char bin[] = { 'a', '\0', 'b', '\0', '\xff', '\n' };
    char *v;
    size_t len;
    assert_int_equal(storage_put(st, "o", "bin", "k", bin, sizeof bin), 0);
    assert_int_equal(storage_append(st, "o", "binlist", bin, sizeof bin), 0);
    assert_int_equal(storage_put(st, "o", "bin", "empty", "", 0), 0);
    assert_int_equal(storage_put(st, "o", "bin", "null", NULL, 0), 0);
    reopen(f);
    st = f->st;
    assert_int_equal(storage_get(st, "o", "bin", "k", &v, &len), 0);
    assert_int_equal(len, sizeof bin);
    assert_memory_equal(v, bin, sizeof bin);
    assert_int_equal(v[len], '\0');
    free(v);
    assert_int_equal(storage_get(st, "o", "bin", "empty", &v, &len), 0);
    assert_int_equal(len, 0);
    assert_string_equal(v, "");
    free(v);
    assert_int_equal(storage_get(st, "o", "bin", "null", &v, &len), 0);
    assert_int_equal(len, 0);
    free(v);
    seen_t s;
    seen_init(&s);
    assert_int_equal(storage_list(st, "o", "binlist", collect_rec, &s), 0);
    assert_int_equal(s.vals.len, sizeof bin + 1);
    assert_memory_equal(s.vals.data, bin, sizeof bin);
    seen_free(&s);
}

static void test_append_keys(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    assert_int_equal(storage_append(st, "a@x", "offline", "m1", 2), 0);
    assert_int_equal(storage_append(st, "b@x", "offline", "other", 5), 0);
    assert_int_equal(storage_append(st, "a@x", "offline", "m2", 2), 0);
    assert_int_equal(storage_append(st, "a@x", "offline", "m3", 2), 0);
    seen_t s;
    seen_init(&s);
    assert_int_equal(storage_list(st, "a@x", "offline", collect_rec, &s), 0);
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
    assert_int_equal(storage_get(st, "a@x", "offline", last, &v, &len), 0);
    assert_string_equal(v, "m3");
    free(v);
    assert_int_equal(storage_del(st, "a@x", "offline", last), 0);
    reopen(f);
    st = f->st;
    assert_int_equal(storage_append(st, "a@x", "offline", "m4", 2), 0);
    seen_init(&s);
    assert_int_equal(storage_list(st, "a@x", "offline", collect_rec, &s), 0);
    assert_string_equal(s.vals.data, "m1,m2,m4,");
    const char *k4 = strrchr(s.keys.data, ',');
    while (k4 > s.keys.data && k4[-1] != ',')
        k4--;
    assert_true(strtol(k4, NULL, 10) > prev);
    seen_free(&s);
    assert_int_equal(storage_count(st, "a@x", "offline"), 3);

    /* A put under a key that looks like a sequence number lives beside them. */
    assert_int_equal(storage_put(st, "a@x", "offline", "999999", "p", 1), 0);
    assert_int_equal(storage_append(st, "a@x", "offline", "m5", 2), 0);
    assert_int_equal(storage_count(st, "a@x", "offline"), 5);
}

/* ------------------------------------------------------------ transactions */

static void test_transactions(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;

    assert_int_equal(storage_begin(st), 0);
    assert_int_equal(storage_begin(st), -1);      /* nesting refused... */
    assert_int_equal(storage_put(st, "a", "c", "k1", "v", 1), 0);   /* ...the outer one lives */
    assert_int_equal(storage_append(st, "a", "c", "v", 1), 0);
    assert_int_equal(storage_user_create(st, "a", "k", "k"), 0);
    assert_int_equal(storage_rollback(st), 0);
    assert_int_equal(storage_count(st, "a", "c"), 0);
    assert_int_equal(storage_user_exists(st, "a"), 0);

    assert_int_equal(storage_begin(st), 0);
    assert_int_equal(storage_put(st, "a", "c", "k1", "v", 1), 0);
    assert_int_equal(storage_append(st, "a", "c", "v", 1), 0);
    assert_int_equal(storage_user_create(st, "a", "k", "k"), 0);
    assert_int_equal(storage_put(st, "a", "c", "k2", "v", 1), 0);
    assert_int_equal(storage_user_delete(st, "a"), 0);   /* savepoint inside */
    assert_int_equal(storage_put(st, "a", "c", "k3", "v", 1), 0);
    assert_int_equal(storage_commit(st), 0);
    assert_int_equal(storage_count(st, "a", "c"), 1);
    assert_int_equal(storage_user_exists(st, "a"), 0);

    /* Commit or rollback with nothing open. */
    assert_int_equal(storage_commit(st), -1);
    assert_int_equal(storage_rollback(st), 0);

    /* Uncommitted work is rolled back at close. */
    assert_int_equal(storage_begin(st), 0);
    assert_int_equal(storage_put(st, "a", "c", "k4", "v", 1), 0);
    reopen(f);
    assert_int_equal(storage_count(f->st, "a", "c"), 1);
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
    r->inner_list = storage_list(r->st, "a", "c", count_rec, &n);
    char *v;
    r->inner_get = storage_get(r->st, "a", "c", key, &v, NULL);
    if (r->inner_get == 0)
        free(v);
    /* Writing elsewhere while walking is allowed. */
    assert_int_equal(storage_put(r->st, "a", "elsewhere", key, "x", 1), 0);
    return 0;
}

static int reenter_user(const char *bare, void *arg)
{
    reenter_t *r = arg;
    int n = 0;
    r->users++;
    /* A user walk may list records (another statement)... */
    assert_int_equal(storage_list(r->st, bare, "c", count_rec, &n), 0);
    assert_int_equal(n, 2);
    /* ...but not walk users again. */
    assert_int_equal(storage_user_list(r->st, reenter_user, r), -1);
    return 0;
}

static void test_reentry(void **state)
{
    fixture_t *f = *state;
    f->st = open_ok(f);
    storage_t *st = f->st;
    assert_int_equal(storage_put(st, "a", "c", "1", "x", 1), 0);
    assert_int_equal(storage_put(st, "a", "c", "2", "y", 1), 0);
    reenter_t r = { .st = st };
    assert_int_equal(storage_list(st, "a", "c", reenter_rec, &r), 0);
    assert_int_equal(r.inner_list, -1);
    assert_int_equal(r.inner_get, 0);
    assert_int_equal(storage_count(st, "a", "elsewhere"), 2);
    /* The refused inner walk left the outer statement usable. */
    int n = 0;
    assert_int_equal(storage_list(st, "a", "c", count_rec, &n), 0);
    assert_int_equal(n, 2);

    assert_int_equal(storage_user_create(st, "a", NULL, NULL), 0);
    assert_int_equal(storage_user_list(st, reenter_user, &r), 0);
    assert_int_equal(r.users, 1);
}

int main(void)
{
    /* Expected error lines (refused nesting, ...) would only clutter the output. */
    log_open("test_storage", "file:/dev/null", LOG_LVL_ERROR);
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
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    log_close();
    return rc;
}
