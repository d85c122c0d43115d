/* storage_sqlite_ckpt: the thread that checkpoints a database's WAL, so the
 * connection that writes never waits for a checkpoint's fsyncs.
 *
 * Why: SQLite's automatic checkpoint runs inside the commit that takes the
 * WAL past 1,000 pages, on the committing thread: it copies the WAL's pages
 * into the database and syncs both files. The two fdatasyncs took about
 * 20 ms each on the benchmark machine, once per archive batch, and the sm's
 * event loop (every session it serves) stood still meanwhile: about 8 % of
 * the chat benchmark's time with the archive on (docs/performance.md,
 * "Checkpoints off the sm's loop").
 *
 * How: the writing connection's automatic checkpoint is off; its WAL hook
 * (run after each commit, with the WAL's size in pages) wakes this thread
 * once the WAL holds SQL_CKPT_PAGES pages, and the thread runs a PASSIVE
 * checkpoint on a connection of its own. WAL mode lets a checkpoint run
 * beside a writer: it copies only committed frames, the writer goes on
 * appending, and the next write transaction after a complete checkpoint
 * starts the WAL from its beginning again. Durability is what it was: the
 * checkpoint syncs the WAL before it writes the database, and the database
 * after (synchronous = NORMAL on both connections).
 *
 * The WAL starts again from its beginning only when a write transaction
 * begins with every frame checkpointed. Transactions back to back (a bulk
 * import) leave the thread always a commit behind, and a reader holding an
 * old snapshot keeps a checkpoint from completing: the WAL grows. Past
 * SQL_CKPT_HARD_PAGES the writer checkpoints itself after its commit, as
 * SQLite would have (the thread has copied most frames by then), so the
 * file stays bounded.
 *
 * Owns: the thread, its connection and the mutex and condition between the
 * two. The writing connection is used only by its own thread, the
 * checkpoint connection only by this one (SQLITE_OPEN_NOMUTEX is safe). */
#include "storage_sqlite_ckpt.h"
#include "storage_sqlite_vfs.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "strbuf.h"

/* SQLite's own automatic checkpoint threshold: the WAL is as large as it
 * was before this thread, only checkpointed elsewhere. */
#define SQL_CKPT_PAGES 1000
/* When the writer checkpoints itself (64 MiB of 4 KiB pages). */
#define SQL_CKPT_HARD_PAGES 16384
#define SQL_CKPT_BUSY_MS 5000

struct sql_ckpt {
    sqlite3 *db;              /* this thread's connection */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int wanted;               /* a commit took the WAL past SQL_CKPT_PAGES */
    int stop;
};

static void *ckpt_main(void *arg)
{
    sql_ckpt_t *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->wanted && !c->stop)
            pthread_cond_wait(&c->cond, &c->mu);
        if (c->stop)
            break;
        c->wanted = 0;
        pthread_mutex_unlock(&c->mu);
        int log_pages = 0, done = 0;
        int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_pages, &done);
        /* BUSY: another checkpoint (the writer's own, past the hard limit)
         * is running; the next commit wakes this thread again. */
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            log_warn("storage: driver=sqlite op=checkpoint error=\"%s\"", sqlite3_errmsg(c->db));
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Runs in the writer's thread after every commit; pages: the WAL's size. */
static int ckpt_hook(void *arg, sqlite3 *db, const char *schema, int pages)
{
    sql_ckpt_t *c = arg;
    if (pages >= SQL_CKPT_HARD_PAGES) {
        int rc = sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        log_info("storage: driver=sqlite event=checkpoint-in-writer wal-pages=%d result=%s", pages,
                 rc == SQLITE_OK ? "done" : rc == SQLITE_BUSY ? "busy" : "failed");
        return SQLITE_OK;
    }
    if (pages >= SQL_CKPT_PAGES) {
        pthread_mutex_lock(&c->mu);
        c->wanted = 1;
        pthread_cond_signal(&c->cond);
        pthread_mutex_unlock(&c->mu);
    }
    return SQLITE_OK;
}

sql_ckpt_t *sql_ckpt_start(sqlite3 *writer, const char *path, char *err, size_t errlen)
{
    sql_ckpt_t *c = xcalloc(1, sizeof *c);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &c->db, flags, sql_vfs_name()) != SQLITE_OK ||
        sqlite3_exec(c->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: checkpoint connection: %s", path,
                 c->db ? sqlite3_errmsg(c->db) : "out of memory");
        sqlite3_close(c->db);
        free(c);
        return NULL;
    }
    sqlite3_busy_timeout(c->db, SQL_CKPT_BUSY_MS);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cond, NULL);
    if (pthread_create(&c->thread, NULL, ckpt_main, c) != 0) {
        snprintf(err, errlen, "%s: cannot start the checkpoint thread", path);
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cond);
        sqlite3_close(c->db);
        free(c);
        return NULL;
    }
    /* Replaces SQLite's automatic checkpoint (itself a WAL hook). */
    sqlite3_wal_hook(writer, ckpt_hook, c);
    return c;
}

void sql_ckpt_stop(sql_ckpt_t *c, sqlite3 *writer)
{
    if (!c)
        return;
    sqlite3_wal_hook(writer, NULL, NULL);
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    /* Closed before the writer: the last connection to close checkpoints
     * the whole WAL and removes it, as before this thread. */
    if (sqlite3_close(c->db) != SQLITE_OK)
        log_error("storage: driver=sqlite op=close-checkpointer error=\"%s\"", sqlite3_errmsg(c->db));
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
    free(c);
}
