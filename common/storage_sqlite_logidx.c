/* storage_sqlite_logidx: the SQLite driver's index of log records by stream
 * and by tag, kept in blocks (schema step v5).
 *
 * A list is the entries (stamp, seq) of one stream's records (tag 0), or of
 * its records with one tag (the tag's id, never 0), in (stamp, seq) order.
 * A list is cut into blocks of at most LX_BLOCK_MAX entries and about
 * LX_BLOCK_BYTES bytes, one row of log_index each, keyed by the list and its
 * first entry:
 *   log_index (stream, tag, first_stamp, first_seq,
 *              last_stamp, min_seq, max_seq, n, data)   WITHOUT ROWID
 * data holds the n entries as LEB128 varints of the zigzagged differences
 * from the entry before (the first from 0, 0).
 *
 * Why blocks, not the indexes (stream, stamp) and (stream, tag, stamp) of
 * v4: an archived record was one insert into each of them, each at a leaf of
 * its own user, so a batch of 20,000 records made 40,000 B-tree inserts
 * spread over a leaf per user and index, and the cost grew with the archive
 * (docs/performance.md, "The archive's index in blocks"). Here writes queue
 * (logidx_add) and reach the blocks once per transaction (logidx_flush):
 * sorted, one read and one write per list that grew, however many entries
 * it took.
 *
 * Readers see queued entries only once flushed: every request that reads
 * the lists flushes first, and so does the commit. Queued entries belong to
 * the open transaction (logidx_discard when it rolls back). */
#include "storage_sqlite.h"
#include "log.h"
#include "strbuf.h"

#include <limits.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A block's size: small enough to be stored in its index page without an
 * overflow page (about 1,000 bytes with 4 KiB pages), large enough that a
 * list of a million entries is under 10,000 rows. */
#define LX_BLOCK_MAX 128
#define LX_BLOCK_BYTES 768
#define LX_ENTRY_MAX 20        /* two varints of 64 bits */

enum {
    X_FLOOR, X_NEXT, X_PUT, X_DEL, X_FWD, X_REV, X_META, X_DATA, X_COUNT, X_DROP,
    X_COUNT_ALL
};

#define X_LIST "stream = ?1 AND tag = ?2"
static const char *const lx_sql[X_COUNT_ALL] = {
    [X_FLOOR] = "SELECT first_stamp, first_seq, data FROM log_index WHERE " X_LIST
                " AND (first_stamp, first_seq) <= (?3, ?4)"
                " ORDER BY first_stamp DESC, first_seq DESC LIMIT 1",
    [X_NEXT] = "SELECT first_stamp, first_seq FROM log_index WHERE " X_LIST
               " AND (first_stamp, first_seq) > (?3, ?4) ORDER BY first_stamp, first_seq LIMIT 1",
    [X_PUT] = "INSERT OR REPLACE INTO log_index (stream, tag, first_stamp, first_seq, last_stamp,"
              " min_seq, max_seq, n, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [X_DEL] = "DELETE FROM log_index WHERE " X_LIST " AND first_stamp = ?3 AND first_seq = ?4",
    [X_FWD] = "SELECT first_stamp, first_seq, data FROM log_index WHERE " X_LIST
              " AND (first_stamp, first_seq) >= (?3, ?4) ORDER BY first_stamp, first_seq",
    [X_REV] = "SELECT first_stamp, first_seq, data FROM log_index WHERE " X_LIST
              " AND (first_stamp, first_seq) < (?3, ?4) ORDER BY first_stamp DESC, first_seq DESC",
    [X_META] = "SELECT first_stamp, first_seq, min_seq, max_seq FROM log_index WHERE " X_LIST
               " AND first_stamp <= ?4 AND last_stamp >= ?3 AND max_seq > ?5 AND min_seq < ?6",
    [X_DATA] = "SELECT data FROM log_index WHERE " X_LIST " AND first_stamp = ?3 AND first_seq = ?4",
    [X_COUNT] = "SELECT coalesce(sum(n), 0) FROM log_index WHERE " X_LIST,
    [X_DROP] = "DELETE FROM log_index WHERE stream = ?1",
};

/* The queued entries of one list, in the order written (usually already
 * in (stamp, seq) order: appended records are stamped with the time). */
typedef struct lx_list {
    int64_t stream, tag;
    lx_ent_t *e;
    size_t n, cap;
    int unsorted;
} lx_list_t;

struct logidx {
    sqlite3_stmt *q[X_COUNT_ALL];
    /* The queue of the open transaction: a list per (stream, tag) found
     * through an open-addressing table of indexes into lists (-1: free);
     * added holds each queued entry's list, in order, for logidx_undo. */
    lx_list_t *lists;
    size_t nlists, lists_cap;
    int32_t *slots;
    size_t nslots;              /* a power of two, at least twice nlists */
    uint32_t *added;
    size_t nadded, added_cap;
    lx_ent_t *work;             /* a block's entries while one is rewritten */
    size_t work_cap;
};

/* Queue sizes kept after a flush; beyond them its memory is given back. */
#define QUEUE_KEEP_ENTRIES 65536
#define QUEUE_KEEP_LISTS 4096

/* ------------------------------------------------------------ encoding */

int logidx_ent_cmp(lx_ent_t a, lx_ent_t b)
{
    if (a.stamp != b.stamp)
        return a.stamp < b.stamp ? -1 : 1;
    return a.seq < b.seq ? -1 : a.seq > b.seq;
}

static uint64_t zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static size_t put_varint(unsigned char *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

static int get_varint(const unsigned char **p, const unsigned char *end, uint64_t *v)
{
    uint64_t out = 0;
    for (unsigned shift = 0; *p < end && shift < 64; shift += 7) {
        unsigned char b = *(*p)++;
        out |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = out;
            return 0;
        }
    }
    return -1;
}

/* Differences wrap (two's complement) so that any stamps round-trip. */
static size_t put_entry(unsigned char *p, lx_ent_t prev, lx_ent_t e)
{
    size_t n = put_varint(p, zigzag((int64_t)((uint64_t)e.stamp - (uint64_t)prev.stamp)));
    return n + put_varint(p + n, zigzag((int64_t)((uint64_t)e.seq - (uint64_t)prev.seq)));
}

static void grow(void **arr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    *arr = xrealloc(*arr, c * size);
    *cap = c;
}

/* Appends a block's entries to (*out, *n); -1 when data is not a block. */
static int decode(const void *data, size_t len, lx_ent_t **out, size_t *n, size_t *cap)
{
    const unsigned char *p = data, *end = p + len;
    lx_ent_t prev = {0, 0};
    while (p < end) {
        uint64_t ds, dq;
        if (get_varint(&p, end, &ds) < 0 || get_varint(&p, end, &dq) < 0)
            return -1;
        prev.stamp = (int64_t)((uint64_t)prev.stamp + (uint64_t)unzigzag(ds));
        prev.seq = (int64_t)((uint64_t)prev.seq + (uint64_t)unzigzag(dq));
        grow((void **)out, cap, *n + 1, sizeof **out);
        (*out)[(*n)++] = prev;
    }
    return 0;
}

static int corrupt(const char *op)
{
    log_error("storage: driver=sqlite op=%s error=\"a log_index block cannot be read\"", op);
    return -1;
}

/* ------------------------------------------------------------ blocks */

/* Writes the sorted entries e[0..n) of a list as blocks, filling each; the
 * first keeps the key of the block they replace (old, when it is that
 * block's first entry), or that block is deleted first. */
static int store(sql_t *d, logidx_t *x, int64_t stream, int64_t tag, const lx_ent_t *e, size_t n,
                 const lx_ent_t *old, const char *op)
{
    if (old && (n == 0 || logidx_ent_cmp(*old, e[0]) != 0)) {
        sqlite3_stmt *s = x->q[X_DEL];
        if (sql_bind_int(d, s, 1, stream, op) < 0 || sql_bind_int(d, s, 2, tag, op) < 0 ||
            sql_bind_int(d, s, 3, old->stamp, op) < 0 || sql_bind_int(d, s, 4, old->seq, op) < 0 ||
            sql_step(d, s, op) < 0)
            return -1;
        sql_reset(s);
    }
    unsigned char buf[LX_BLOCK_BYTES + LX_ENTRY_MAX];
    for (size_t i = 0; i < n;) {
        size_t len = 0, k = 0;
        int64_t min_seq = INT64_MAX, max_seq = INT64_MIN;
        lx_ent_t prev = {0, 0};
        while (i + k < n && k < LX_BLOCK_MAX && len < LX_BLOCK_BYTES) {
            lx_ent_t cur = e[i + k++];
            len += put_entry(buf + len, prev, cur);
            prev = cur;
            if (cur.seq < min_seq)
                min_seq = cur.seq;
            if (cur.seq > max_seq)
                max_seq = cur.seq;
        }
        sqlite3_stmt *s = x->q[X_PUT];
        if (sql_bind_int(d, s, 1, stream, op) < 0 || sql_bind_int(d, s, 2, tag, op) < 0 ||
            sql_bind_int(d, s, 3, e[i].stamp, op) < 0 || sql_bind_int(d, s, 4, e[i].seq, op) < 0 ||
            sql_bind_int(d, s, 5, prev.stamp, op) < 0 || sql_bind_int(d, s, 6, min_seq, op) < 0 ||
            sql_bind_int(d, s, 7, max_seq, op) < 0 || sql_bind_int(d, s, 8, (int64_t)k, op) < 0 ||
            sql_bind_blob(d, s, 9, (const char *)buf, len, op) < 0 || sql_step(d, s, op) < 0)
            return -1;
        sql_reset(s);
        i += k;
    }
    return 0;
}

static int bind_list(sql_t *d, sqlite3_stmt *s, int64_t stream, int64_t tag, lx_ent_t at,
                     const char *op)
{
    return sql_bind_int(d, s, 1, stream, op) < 0 || sql_bind_int(d, s, 2, tag, op) < 0 ||
                   sql_bind_int(d, s, 3, at.stamp, op) < 0 || sql_bind_int(d, s, 4, at.seq, op) < 0
               ? -1
               : 0;
}

/* The block holding (or that would hold) e: its first entry in *first and
 * its entries in x->work (*n of them). 1 when every block starts after e
 * (or the list is empty). */
static int floor_block(sql_t *d, logidx_t *x, int64_t stream, int64_t tag, lx_ent_t e,
                       lx_ent_t *first, size_t *n, const char *op)
{
    sqlite3_stmt *s = x->q[X_FLOOR];
    if (bind_list(d, s, stream, tag, e, op) < 0)
        return -1;
    int rc = sql_step(d, s, op);
    if (rc < 0)
        return -1;
    *n = 0;
    if (rc != SQLITE_ROW) {
        sql_reset(s);
        return 1;
    }
    first->stamp = sqlite3_column_int64(s, 0);
    first->seq = sqlite3_column_int64(s, 1);
    rc = decode(sqlite3_column_blob(s, 2), (size_t)sqlite3_column_bytes(s, 2), &x->work, n,
                &x->work_cap);
    sql_reset(s);
    return rc < 0 ? corrupt(op) : 0;
}

/* ------------------------------------------------------------ writes */

static size_t list_hash(int64_t stream, int64_t tag)
{
    uint64_t h = (uint64_t)stream * 0x9e3779b97f4a7c15ull ^ (uint64_t)tag * 0xc2b2ae3d27d4eb4full;
    return (size_t)(h ^ h >> 29);
}

/* The table of slots, made again for at least want lists. */
static void slots_rebuild(logidx_t *x, size_t want)
{
    size_t n = 64;
    while (n < 2 * want)
        n *= 2;
    free(x->slots);
    x->slots = xmalloc(n * sizeof *x->slots);
    memset(x->slots, 0xff, n * sizeof *x->slots);
    x->nslots = n;
    for (size_t i = 0; i < x->nlists; i++) {
        size_t j = list_hash(x->lists[i].stream, x->lists[i].tag) & (n - 1);
        while (x->slots[j] >= 0)
            j = (j + 1) & (n - 1);
        x->slots[j] = (int32_t)i;
    }
}

static size_t list_of(logidx_t *x, int64_t stream, int64_t tag)
{
    if (2 * (x->nlists + 1) > x->nslots)
        slots_rebuild(x, x->nlists + 1);
    size_t j = list_hash(stream, tag) & (x->nslots - 1);
    for (; x->slots[j] >= 0; j = (j + 1) & (x->nslots - 1)) {
        lx_list_t *l = &x->lists[x->slots[j]];
        if (l->stream == stream && l->tag == tag)
            return (size_t)x->slots[j];
    }
    grow((void **)&x->lists, &x->lists_cap, x->nlists + 1, sizeof *x->lists);
    x->lists[x->nlists] = (lx_list_t){.stream = stream, .tag = tag};
    x->slots[j] = (int32_t)x->nlists;
    return x->nlists++;
}

void logidx_add(logidx_t *x, int64_t stream, int64_t tag, int64_t stamp, int64_t seq)
{
    size_t i = list_of(x, stream, tag);
    lx_list_t *l = &x->lists[i];
    lx_ent_t e = {stamp, seq};
    grow((void **)&l->e, &l->cap, l->n + 1, sizeof *l->e);
    if (l->n && logidx_ent_cmp(l->e[l->n - 1], e) > 0)
        l->unsorted = 1;
    l->e[l->n++] = e;
    grow((void **)&x->added, &x->added_cap, x->nadded + 1, sizeof *x->added);
    x->added[x->nadded++] = (uint32_t)i;
}

size_t logidx_mark(const logidx_t *x)
{
    return x->nadded;
}

void logidx_undo(logidx_t *x, size_t mark)
{
    while (x->nadded > mark) {
        lx_list_t *l = &x->lists[x->added[--x->nadded]];
        l->n--;
        l->unsorted = 1;        /* conservative: sorted again at the flush */
    }
}

/* Empties the queue; a large one gives its memory back. */
static void queue_reset(logidx_t *x)
{
    int big = x->nadded > QUEUE_KEEP_ENTRIES || x->nlists > QUEUE_KEEP_LISTS;
    for (size_t i = 0; i < x->nlists; i++)
        free(x->lists[i].e);
    x->nlists = 0;
    x->nadded = 0;
    if (big) {
        free(x->lists);
        free(x->added);
        free(x->slots);
        x->lists = NULL;
        x->added = NULL;
        x->slots = NULL;
        x->lists_cap = x->added_cap = x->nslots = 0;
    } else if (x->slots) {
        memset(x->slots, 0xff, x->nslots * sizeof *x->slots);
    }
}

void logidx_discard(logidx_t *x)
{
    queue_reset(x);
}

/* qsort, for arrays that may be empty (and NULL, which qsort may not take). */
static void sort_array(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    if (n > 1)
        qsort(base, n, size, cmp);
}

static int ent_qcmp(const void *a, const void *b)
{
    return logidx_ent_cmp(*(const lx_ent_t *)a, *(const lx_ent_t *)b);
}

/* Lists in (stream, tag) order: blocks written in the order of the table. */
static int list_qcmp(const void *a, const void *b)
{
    const lx_list_t *p = a, *q = b;
    if (p->stream != q->stream)
        return p->stream < q->stream ? -1 : 1;
    return p->tag < q->tag ? -1 : p->tag > q->tag;
}

/* Merges the queued entries p[0..np) of one list (sorted) into its blocks;
 * *used: how many it took (those before the next block). */
static int flush_some(sql_t *d, logidx_t *x, int64_t stream, int64_t tag, const lx_ent_t *p,
                      size_t np, size_t *used, const char *op)
{
    lx_ent_t first = {INT64_MIN, INT64_MIN};
    size_t n;
    int rc = floor_block(d, x, stream, tag, p[0], &first, &n, op);
    if (rc < 0)
        return -1;
    int have = rc == 0;
    /* Only the entries before the next block go into this one. */
    sqlite3_stmt *s = x->q[X_NEXT];
    if (bind_list(d, s, stream, tag, first, op) < 0 || (rc = sql_step(d, s, op)) < 0)
        return -1;
    lx_ent_t next = {INT64_MAX, INT64_MAX};
    int bounded = rc == SQLITE_ROW;
    if (bounded)
        next = (lx_ent_t){sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1)};
    sql_reset(s);
    size_t m = 0;
    while (m < np && (!bounded || logidx_ent_cmp(p[m], next) < 0))
        m++;
    /* Merge: the block's entries are in x->work[0..n); the merged list
     * goes after them and is written from there. */
    grow((void **)&x->work, &x->work_cap, 2 * n + m, sizeof *x->work);
    lx_ent_t *w = x->work, *out = w + n;
    size_t i = 0, j = 0, k = 0;
    while (i < n || j < m) {
        if (j == m) {
            out[k++] = w[i++];
            continue;
        }
        int c = i == n ? 1 : logidx_ent_cmp(w[i], p[j]);
        if (c < 0) {
            out[k++] = w[i++];
            continue;
        }
        if (c == 0)
            i++;            /* the same entry again: listed once */
        if (k == 0 || logidx_ent_cmp(out[k - 1], p[j]) != 0)
            out[k++] = p[j];
        j++;
    }
    *used = m;
    return store(d, x, stream, tag, out, k, have ? &first : NULL, op);
}

int logidx_flush(sql_t *d, logidx_t *x, const char *op)
{
    if (x->nadded == 0)
        return 0;
    /* The slots index the lists: sorting the lists drops them (reset below). */
    sort_array(x->lists, x->nlists, sizeof *x->lists, list_qcmp);
    int rc = 0;
    for (size_t li = 0; rc == 0 && li < x->nlists; li++) {
        lx_list_t *l = &x->lists[li];
        if (l->unsorted)
            sort_array(l->e, l->n, sizeof *l->e, ent_qcmp);
        for (size_t i = 0; rc == 0 && i < l->n;) {
            size_t used;
            rc = flush_some(d, x, l->stream, l->tag, l->e + i, l->n - i, &used, op);
            i += used;
        }
    }
    queue_reset(x);
    return rc;
}

int logidx_remove(sql_t *d, logidx_t *x, int64_t stream, int64_t tag, int64_t stamp, int64_t seq,
                  const char *op)
{
    lx_ent_t e = {stamp, seq}, first;
    size_t n;
    int rc = floor_block(d, x, stream, tag, e, &first, &n, op);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    size_t at = 0;
    while (at < n && logidx_ent_cmp(x->work[at], e) != 0)
        at++;
    if (at == n)
        return 0;      /* not listed: nothing to take away */
    memmove(x->work + at, x->work + at + 1, (n - at - 1) * sizeof *x->work);
    return store(d, x, stream, tag, x->work, n - 1, &first, op);
}

int logidx_drop_stream(sql_t *d, logidx_t *x, int64_t stream, const char *op)
{
    sqlite3_stmt *s = x->q[X_DROP];
    if (sql_bind_int(d, s, 1, stream, op) < 0 || sql_step(d, s, op) < 0)
        return -1;
    sql_reset(s);
    return 0;
}

/* ------------------------------------------------------------ reads */

int logidx_count(sql_t *d, logidx_t *x, int64_t stream, int64_t tag, int64_t *n, const char *op)
{
    sqlite3_stmt *s = x->q[X_COUNT];
    if (sql_bind_int(d, s, 1, stream, op) < 0 || sql_bind_int(d, s, 2, tag, op) < 0)
        return -1;
    int rc = sql_step(d, s, op);
    if (rc < 0)
        return -1;
    *n = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sql_reset(s);
    return 0;
}

void logidx_set_free(lx_set_t *set)
{
    free(set->e);
    memset(set, 0, sizeof *set);
}

static void set_add(lx_set_t *set, lx_ent_t e)
{
    grow((void **)&set->e, &set->cap, set->n + 1, sizeof *set->e);
    set->e[set->n++] = e;
}

int logidx_span(sql_t *d, logidx_t *x, int64_t stream, int64_t tag, lx_ent_t lo, lx_ent_t hi,
                int reverse, size_t limit, lx_set_t *out, const char *op)
{
    sqlite3_stmt *s;
    if (reverse) {
        s = x->q[X_REV];
        if (bind_list(d, s, stream, tag, hi, op) < 0)
            return -1;
    } else {
        /* From the block that holds lo: the first with an entry after it. */
        lx_ent_t start = {INT64_MIN, INT64_MIN};
        size_t n;
        int rc = floor_block(d, x, stream, tag, lo, &start, &n, op);
        if (rc < 0)
            return -1;
        if (rc == 1)
            start = (lx_ent_t){INT64_MIN, INT64_MIN};
        s = x->q[X_FWD];
        if (bind_list(d, s, stream, tag, start, op) < 0)
            return -1;
    }
    int rc, done = 0;
    while (!done && (rc = sql_step(d, s, op)) == SQLITE_ROW) {
        size_t n = 0;
        if (decode(sqlite3_column_blob(s, 2), (size_t)sqlite3_column_bytes(s, 2), &x->work, &n,
                   &x->work_cap) < 0) {
            sql_reset(s);
            return corrupt(op);
        }
        for (size_t i = 0; i < n && !done; i++) {
            lx_ent_t e = x->work[reverse ? n - 1 - i : i];
            if (reverse ? logidx_ent_cmp(e, hi) >= 0 : logidx_ent_cmp(e, lo) <= 0)
                continue;
            if (reverse ? logidx_ent_cmp(e, lo) <= 0 : logidx_ent_cmp(e, hi) >= 0) {
                done = 1;
                break;
            }
            set_add(out, e);
            if (limit && out->n >= limit)
                done = 1;
        }
    }
    if (!done && rc < 0)
        return -1;
    sql_reset(s);
    return 0;
}

typedef struct lx_meta {
    lx_ent_t first;
    int64_t min_seq, max_seq;
} lx_meta_t;

static int meta_by_min(const void *a, const void *b)
{
    const lx_meta_t *p = a, *q = b;
    return p->min_seq < q->min_seq ? -1 : p->min_seq > q->min_seq;
}

static int meta_by_max_desc(const void *a, const void *b)
{
    const lx_meta_t *p = a, *q = b;
    return p->max_seq > q->max_seq ? -1 : p->max_seq < q->max_seq;
}

static int seq_asc(const void *a, const void *b)
{
    const lx_ent_t *p = a, *q = b;
    return p->seq < q->seq ? -1 : p->seq > q->seq;
}

static int seq_desc(const void *a, const void *b)
{
    return seq_asc(b, a);
}

/* By seq, blocks are visited in the order of their lowest (highest, in
 * reverse) seq, and a limited range stops at the first block that cannot
 * hold a better entry than the limit-th found: when seqs grow with stamps,
 * as appended records' do, that is after one or two blocks. */
int logidx_by_seq(sql_t *d, logidx_t *x, int64_t stream, int64_t tag, int64_t since,
                  int64_t until, int64_t after_seq, int64_t before_seq, int reverse, size_t limit,
                  lx_set_t *out, const char *op)
{
    sqlite3_stmt *s = x->q[X_META];
    if (sql_bind_int(d, s, 1, stream, op) < 0 || sql_bind_int(d, s, 2, tag, op) < 0 ||
        sql_bind_int(d, s, 3, since, op) < 0 || sql_bind_int(d, s, 4, until, op) < 0 ||
        sql_bind_int(d, s, 5, after_seq, op) < 0 || sql_bind_int(d, s, 6, before_seq, op) < 0)
        return -1;
    lx_meta_t *m = NULL;
    size_t nm = 0, mcap = 0;
    int rc;
    while ((rc = sql_step(d, s, op)) == SQLITE_ROW) {
        grow((void **)&m, &mcap, nm + 1, sizeof *m);
        m[nm++] = (lx_meta_t){{sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1)},
                              sqlite3_column_int64(s, 2), sqlite3_column_int64(s, 3)};
    }
    if (rc < 0) {
        free(m);
        return -1;
    }
    sql_reset(s);
    sort_array(m, nm, sizeof *m, reverse ? meta_by_max_desc : meta_by_min);
    int (*order)(const void *, const void *) = reverse ? seq_desc : seq_asc;
    int res = 0;
    for (size_t b = 0; b < nm; b++) {
        if (limit && out->n >= limit) {
            sort_array(out->e, out->n, sizeof *out->e, order);
            out->n = limit;
            int64_t worst = out->e[limit - 1].seq;
            if (reverse ? m[b].max_seq < worst : m[b].min_seq > worst)
                break;
        }
        s = x->q[X_DATA];
        if (bind_list(d, s, stream, tag, m[b].first, op) < 0 || (rc = sql_step(d, s, op)) < 0) {
            res = -1;
            break;
        }
        size_t n = 0;
        if (rc == SQLITE_ROW && decode(sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0),
                                       &x->work, &n, &x->work_cap) < 0) {
            sql_reset(s);
            res = corrupt(op);
            break;
        }
        sql_reset(s);
        for (size_t i = 0; i < n; i++) {
            lx_ent_t e = x->work[i];
            if (e.stamp >= since && e.stamp <= until && e.seq > after_seq && e.seq < before_seq)
                set_add(out, e);
        }
    }
    free(m);
    if (res < 0)
        return -1;
    sort_array(out->e, out->n, sizeof *out->e, order);
    if (limit && out->n > limit)
        out->n = limit;
    return 0;
}

/* ------------------------------------------------------------ v5 */

/* Fills log_index from the rows of logs through the v4 indexes, in their
 * order, then drops those indexes. Part of schema step v5 (its transaction);
 * runs before the driver is open, on the bare connection. */
int logidx_build(sqlite3 *db, char *err, size_t errlen)
{
    static const char *const lists[2] = {
        "SELECT stream, 0, stamp, seq FROM logs INDEXED BY logs_stamp ORDER BY stream, stamp, seq",
        "SELECT stream, tag, stamp, seq FROM logs INDEXED BY logs_tag WHERE tag IS NOT NULL"
        " ORDER BY stream, tag, stamp, seq",
    };
    sql_t *d = xcalloc(1, sizeof *d);
    d->db = db;
    logidx_t x = {0};
    int ok = sqlite3_prepare_v2(db, lx_sql[X_PUT], -1, &x.q[X_PUT], NULL) == SQLITE_OK &&
             sqlite3_prepare_v2(db, lx_sql[X_DEL], -1, &x.q[X_DEL], NULL) == SQLITE_OK;
    lx_ent_t *e = NULL;
    size_t n = 0, cap = 0;
    for (int l = 0; ok && l < 2; l++) {
        sqlite3_stmt *s;
        if (sqlite3_prepare_v2(db, lists[l], -1, &s, NULL) != SQLITE_OK) {
            ok = 0;
            break;
        }
        int64_t stream = 0, tag = 0;
        int rc;
        while (ok && (rc = sqlite3_step(s)) == SQLITE_ROW) {
            int64_t st = sqlite3_column_int64(s, 0), tg = sqlite3_column_int64(s, 1);
            if (n && (st != stream || tg != tag || n == LX_BLOCK_MAX * 64)) {
                ok = store(d, &x, stream, tag, e, n, NULL, "migrate") == 0;
                n = 0;
            }
            stream = st;
            tag = tg;
            grow((void **)&e, &cap, n + 1, sizeof *e);
            e[n++] = (lx_ent_t){sqlite3_column_int64(s, 2), sqlite3_column_int64(s, 3)};
        }
        if (ok && rc != SQLITE_DONE)
            ok = 0;
        if (ok && n)
            ok = store(d, &x, stream, tag, e, n, NULL, "migrate") == 0;
        n = 0;
        sqlite3_finalize(s);
    }
    if (ok)
        ok = sqlite3_exec(db, "DROP INDEX logs_stamp; DROP INDEX logs_tag;", NULL, NULL, NULL) ==
             SQLITE_OK;
    if (!ok && err && errlen)
        snprintf(err, errlen, "building log_index: %s", sqlite3_errmsg(db));
    free(e);
    sqlite3_finalize(x.q[X_PUT]);
    sqlite3_finalize(x.q[X_DEL]);
    free(d);
    return ok ? 0 : -1;
}

/* ------------------------------------------------------------ open / close */

logidx_t *logidx_open(sql_t *d, char *err, size_t errlen)
{
    logidx_t *x = xcalloc(1, sizeof *x);
    for (int i = 0; i < X_COUNT_ALL; i++) {
        if (sqlite3_prepare_v3(d->db, lx_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &x->q[i], NULL) !=
            SQLITE_OK) {
            if (err && errlen)
                snprintf(err, errlen, "preparing log_index statement %d: %s", i,
                         sqlite3_errmsg(d->db));
            logidx_close(x);
            return NULL;
        }
    }
    return x;
}

void logidx_close(logidx_t *x)
{
    if (!x)
        return;
    for (int i = 0; i < X_COUNT_ALL; i++)
        sqlite3_finalize(x->q[i]);
    queue_reset(x);
    free(x->lists);
    free(x->added);
    free(x->slots);
    free(x->work);
    free(x);
}
