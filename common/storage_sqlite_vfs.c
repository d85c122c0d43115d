/* storage_sqlite_vfs: the SQLite driver's files, with the writes to the WAL
 * and the database gathered into large ones.
 *
 * Why: SQLite writes each WAL frame as two write calls, its 24-byte header
 * and its page, and a checkpoint writes each page into the database as one
 * call. An archive batch of 20,000 records is a few thousand pages, and on
 * the benchmark machine a call cost more in the kernel than the copy it made
 * (docs/storage.md, "The file").
 *
 * How: this VFS wraps the default one (sqlite3_vfs_find(NULL)) and passes
 * every call through, except the writes to a WAL or a main database file: a
 * write that continues the bytes held (or starts them) is held in a buffer
 * (SQL_VFS_BUF), and a write inside them changes them in place. The buffer is
 * written before any other operation on the file (a read, a sync, its size,
 * a truncate, a lock, a file control, a close; on the database also a lock
 * or a barrier of the shared-memory index) and when it is full. Besides:
 *  - A WAL file's buffer is also written once the frame that commits a
 *    transaction has been written (a frame header whose "database size"
 *    field is not 0 marks it; its page is the next write): every frame of a
 *    transaction is in the file before SQLite publishes it in the WAL index,
 *    where another connection finds it, and the error of that write is the
 *    commit's. After it, writes go straight to the file until the next
 *    transaction's first (at the commit's end, or at offset 0 when the WAL
 *    starts over), so what SQLite writes between the commit frame and
 *    publishing it (checksums rewritten in place) is never held.
 *    Synchronous = NORMAL does not sync the WAL at a commit: the bytes reach
 *    the kernel at the same point of the commit as before.
 *  - A database file's writes are held only during a checkpoint (between
 *    SQLITE_FCNTL_CKPT_START and SQLITE_FCNTL_CKPT_DONE, which SQLite gives
 *    after the last page and before it records the pages as copied in the
 *    WAL index): at CKPT_DONE they are written, so no reader takes a page
 *    from the file before it is there. SQLite ignores an error there, so a
 *    failed write at that point stops the process (logged); the WAL still
 *    holds the pages for the next start.
 * Bytes that fail to be written stay held, and every later operation on the
 * file tries again and fails with the error.
 *
 * Thread use: each connection has its own file objects, used by its thread. */
#include "storage_sqlite_vfs.h"
#include "log.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SQL_VFS_NAME "weft"
#define SQL_VFS_BUF (1024 * 1024)
#define SQL_VFS_PIECE (124 * 1024)
#define WAL_FRAME_HDR 24

typedef struct vfs_file {
    sqlite3_file base;        /* pMethods: vfs_methods */
    sqlite3_file *real;       /* the default VFS's file, right after this struct */
    int wal;                  /* a WAL file */
    int held;                 /* a WAL or a main database file: writes may be held */
    int in_ckpt;              /* a main database file during a checkpoint: its writes are */
    unsigned char *buf;       /* held bytes of a WAL file, at offset off */
    size_t len;
    sqlite3_int64 off;
    int flush_next;           /* the commit frame's header was held: flush after its page */
    int direct;               /* after a commit frame, until the next transaction */
    sqlite3_int64 commit_end; /* where the next transaction's first frame goes */
} vfs_file_t;

static sqlite3_vfs vfs;
static sqlite3_vfs *parent;
static sqlite3_io_methods vfs_methods;
static pthread_once_t vfs_once = PTHREAD_ONCE_INIT;
static int vfs_ok;

/* The unix VFS writes at most 128 KiB - 1 bytes a call (its seekAndWrite
 * masks the count): the held bytes go out in pieces of SQL_VFS_PIECE. What
 * fails to be written stays held (see the file comment). */
static int flush(vfs_file_t *f)
{
    size_t done = 0;
    int rc = SQLITE_OK;
    while (done < f->len) {
        size_t n = f->len - done < SQL_VFS_PIECE ? f->len - done : SQL_VFS_PIECE;
        rc = f->real->pMethods->xWrite(f->real, f->buf + done, (int)n, f->off + (sqlite3_int64)done);
        if (rc != SQLITE_OK)
            break;
        done += n;
    }
    if (done < f->len)
        memmove(f->buf, f->buf + done, f->len - done);
    f->len -= done;
    f->off += (sqlite3_int64)done;
    return rc;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Holds n bytes written at off (or writes them, when they cannot be held). */
static int hold(vfs_file_t *f, const void *data, int n, sqlite3_int64 off)
{
    size_t len = (size_t)n;
    if (f->len > 0 && off >= f->off && off + n <= f->off + (sqlite3_int64)f->len) {
        memcpy(f->buf + (off - f->off), data, len);   /* a frame of this transaction again */
        return SQLITE_OK;
    }
    if (f->len > 0 && (off != f->off + (sqlite3_int64)f->len || f->len + len > SQL_VFS_BUF)) {
        int rc = flush(f);
        if (rc != SQLITE_OK)
            return rc;
    }
    if (f->len == 0 && (len > SQL_VFS_BUF || (!f->buf && !(f->buf = malloc(SQL_VFS_BUF)))))
        return f->real->pMethods->xWrite(f->real, data, n, off);
    if (f->len == 0)
        f->off = off;
    memcpy(f->buf + f->len, data, len);
    f->len += len;
    return SQLITE_OK;
}

static int vfs_write(sqlite3_file *file, const void *data, int n, sqlite3_int64 off)
{
    vfs_file_t *f = (vfs_file_t *)file;
    if (!f->held)
        return f->real->pMethods->xWrite(f->real, data, n, off);
    if (!f->wal) {
        if (!f->in_ckpt)
            return f->real->pMethods->xWrite(f->real, data, n, off);
        return hold(f, data, n, off);     /* a checkpoint's pages: out at its end */
    }
    if (f->direct) {
        if (off != f->commit_end && off != 0)
            return f->real->pMethods->xWrite(f->real, data, n, off);
        f->direct = 0;
    }
    int rc = hold(f, data, n, off);
    if (rc != SQLITE_OK)
        return rc;
    if (f->flush_next) {
        /* The commit frame's page: the transaction's frames go out now. */
        f->flush_next = 0;
        f->direct = 1;
        f->commit_end = off + n;
        return flush(f);
    }
    f->flush_next = n == WAL_FRAME_HDR && be32((const unsigned char *)data + 4) != 0;
    return SQLITE_OK;
}

/* Every other operation first writes what is held: a read, a size or a sync
 * sees the file as SQLite wrote it. */
#define FLUSHED(f)                                                                                 \
    do {                                                                                           \
        int frc_ = flush(f);                                                                       \
        if (frc_ != SQLITE_OK)                                                                     \
            return frc_;                                                                           \
    } while (0)

static int vfs_close(sqlite3_file *file)
{
    vfs_file_t *f = (vfs_file_t *)file;
    int rc = flush(f);
    int rc2 = f->real->pMethods->xClose(f->real);
    free(f->buf);
    f->buf = NULL;
    return rc != SQLITE_OK ? rc : rc2;
}

static int vfs_read(sqlite3_file *file, void *data, int n, sqlite3_int64 off)
{
    vfs_file_t *f = (vfs_file_t *)file;
    FLUSHED(f);
    return f->real->pMethods->xRead(f->real, data, n, off);
}

static int vfs_truncate(sqlite3_file *file, sqlite3_int64 size)
{
    vfs_file_t *f = (vfs_file_t *)file;
    FLUSHED(f);
    return f->real->pMethods->xTruncate(f->real, size);
}

static int vfs_sync(sqlite3_file *file, int flags)
{
    vfs_file_t *f = (vfs_file_t *)file;
    FLUSHED(f);
    return f->real->pMethods->xSync(f->real, flags);
}

static int vfs_size(sqlite3_file *file, sqlite3_int64 *size)
{
    vfs_file_t *f = (vfs_file_t *)file;
    FLUSHED(f);
    return f->real->pMethods->xFileSize(f->real, size);
}

static int vfs_lock(sqlite3_file *file, int level)
{
    vfs_file_t *f = (vfs_file_t *)file;
    FLUSHED(f);
    return f->real->pMethods->xLock(f->real, level);
}

static int vfs_unlock(sqlite3_file *file, int level)
{
    vfs_file_t *f = (vfs_file_t *)file;
    FLUSHED(f);
    return f->real->pMethods->xUnlock(f->real, level);
}

static int vfs_check_lock(sqlite3_file *file, int *out)
{
    vfs_file_t *f = (vfs_file_t *)file;
    FLUSHED(f);
    return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int vfs_control(sqlite3_file *file, int op, void *arg)
{
    vfs_file_t *f = (vfs_file_t *)file;
    if (op == SQLITE_FCNTL_CKPT_START && !f->wal) {
        f->in_ckpt = 1;
    } else if (op == SQLITE_FCNTL_CKPT_DONE && !f->wal) {
        f->in_ckpt = 0;
        /* Next SQLite records the pages as copied, whatever this returns
         * (it ignores the answer): pages it did not get into the file would
         * be read back stale by every connection. Better to stop the
         * process; the WAL still holds them, and the next start copies
         * them again. */
        int rc = flush(f);
        if (rc != SQLITE_OK) {
            log_error("storage: driver=sqlite event=checkpoint-write-failed code=%d "
                      "action=exit reason=\"the database would miss pages it is told it has\"",
                      rc);
            abort();
        }
    }
    FLUSHED(f);
    return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int vfs_sector(sqlite3_file *file)
{
    vfs_file_t *f = (vfs_file_t *)file;
    return f->real->pMethods->xSectorSize(f->real);
}

static int vfs_device(sqlite3_file *file)
{
    vfs_file_t *f = (vfs_file_t *)file;
    return f->real->pMethods->xDeviceCharacteristics(f->real);
}

/* The shared-memory index belongs to the database file: a lock or a barrier
 * on it first writes the pages a checkpoint holds. */
static int vfs_shm_map(sqlite3_file *file, int pg, int pgsz, int extend, void volatile **p)
{
    vfs_file_t *f = (vfs_file_t *)file;
    return f->real->pMethods->xShmMap(f->real, pg, pgsz, extend, p);
}

static int vfs_shm_lock(sqlite3_file *file, int offset, int n, int flags)
{
    vfs_file_t *f = (vfs_file_t *)file;
    FLUSHED(f);
    return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

static void vfs_shm_barrier(sqlite3_file *file)
{
    vfs_file_t *f = (vfs_file_t *)file;
    (void)flush(f);                       /* an error stays held: the next operation returns it */
    f->real->pMethods->xShmBarrier(f->real);
}

static int vfs_shm_unmap(sqlite3_file *file, int del)
{
    vfs_file_t *f = (vfs_file_t *)file;
    FLUSHED(f);
    return f->real->pMethods->xShmUnmap(f->real, del);
}

static int vfs_fetch(sqlite3_file *file, sqlite3_int64 off, int n, void **p)
{
    vfs_file_t *f = (vfs_file_t *)file;
    FLUSHED(f);
    if (f->real->pMethods->iVersion < 3) {
        *p = NULL;                        /* no memory-mapped reads: SQLite reads */
        return SQLITE_OK;
    }
    return f->real->pMethods->xFetch(f->real, off, n, p);
}

static int vfs_unfetch(sqlite3_file *file, sqlite3_int64 off, void *p)
{
    vfs_file_t *f = (vfs_file_t *)file;
    return f->real->pMethods->iVersion < 3 ? SQLITE_OK : f->real->pMethods->xUnfetch(f->real, off, p);
}

static int vfs_open(sqlite3_vfs *v, const char *name, sqlite3_file *file, int flags, int *out_flags)
{
    (void)v;
    vfs_file_t *f = (vfs_file_t *)file;
    memset(f, 0, sizeof *f);
    f->real = (sqlite3_file *)(f + 1);
    int rc = parent->xOpen(parent, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK || !f->real->pMethods) {
        f->base.pMethods = NULL;          /* SQLite calls no xClose then */
        return rc;
    }
    f->wal = (flags & SQLITE_OPEN_WAL) != 0;
    f->held = f->wal || (flags & SQLITE_OPEN_MAIN_DB) != 0;
    f->base.pMethods = &vfs_methods;
    return SQLITE_OK;
}

/* The rest of the VFS is the default's. */
static int vfs_delete(sqlite3_vfs *v, const char *name, int sync)
{
    (void)v;
    return parent->xDelete(parent, name, sync);
}

static int vfs_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    (void)v;
    return parent->xAccess(parent, name, flags, out);
}

static int vfs_full_name(sqlite3_vfs *v, const char *name, int n, char *out)
{
    (void)v;
    return parent->xFullPathname(parent, name, n, out);
}

static void *vfs_dlopen(sqlite3_vfs *v, const char *name)
{
    (void)v;
    return parent->xDlOpen(parent, name);
}

static void vfs_dlerror(sqlite3_vfs *v, int n, char *msg)
{
    (void)v;
    parent->xDlError(parent, n, msg);
}

static void (*vfs_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    (void)v;
    return parent->xDlSym(parent, h, sym);
}

static void vfs_dlclose(sqlite3_vfs *v, void *h)
{
    (void)v;
    parent->xDlClose(parent, h);
}

static int vfs_random(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return parent->xRandomness(parent, n, out);
}

static int vfs_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return parent->xSleep(parent, us);
}

static int vfs_time(sqlite3_vfs *v, double *out)
{
    (void)v;
    return parent->xCurrentTime(parent, out);
}

static int vfs_last_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return parent->xGetLastError(parent, n, out);
}

static int vfs_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    (void)v;
    return parent->xCurrentTimeInt64(parent, out);
}

static void vfs_register(void)
{
    parent = sqlite3_vfs_find(NULL);
    /* The methods this file forwards are those of version 3 VFSes and files
     * (the unix VFS of every SQLite this builds with). */
    if (!parent || parent->iVersion < 2 || !parent->xCurrentTimeInt64)
        return;
    vfs_methods = (sqlite3_io_methods){
        .iVersion = 3,
        .xClose = vfs_close,
        .xRead = vfs_read,
        .xWrite = vfs_write,
        .xTruncate = vfs_truncate,
        .xSync = vfs_sync,
        .xFileSize = vfs_size,
        .xLock = vfs_lock,
        .xUnlock = vfs_unlock,
        .xCheckReservedLock = vfs_check_lock,
        .xFileControl = vfs_control,
        .xSectorSize = vfs_sector,
        .xDeviceCharacteristics = vfs_device,
        .xShmMap = vfs_shm_map,
        .xShmLock = vfs_shm_lock,
        .xShmBarrier = vfs_shm_barrier,
        .xShmUnmap = vfs_shm_unmap,
        .xFetch = vfs_fetch,
        .xUnfetch = vfs_unfetch,
    };
    vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(vfs_file_t) + parent->szOsFile,
        .mxPathname = parent->mxPathname,
        .zName = SQL_VFS_NAME,
        .xOpen = vfs_open,
        .xDelete = vfs_delete,
        .xAccess = vfs_access,
        .xFullPathname = vfs_full_name,
        .xDlOpen = vfs_dlopen,
        .xDlError = vfs_dlerror,
        .xDlSym = vfs_dlsym,
        .xDlClose = vfs_dlclose,
        .xRandomness = vfs_random,
        .xSleep = vfs_sleep,
        .xCurrentTime = vfs_time,
        .xGetLastError = vfs_last_error,
        .xCurrentTimeInt64 = vfs_time64,
    };
    vfs_ok = sqlite3_vfs_register(&vfs, 0) == SQLITE_OK;
}

const char *sql_vfs_name(void)
{
    pthread_once(&vfs_once, vfs_register);
    return vfs_ok ? SQL_VFS_NAME : NULL;
}
