/* weft-bench-archive: what writing the archive costs the storage driver, in
 * CPU time per record, the way mod_mam writes it (docs/performance.md,
 * "What archiving costs the chat benchmark").
 *
 * Writes RECORDS records into a fresh database for OWNERS owners in
 * transactions of BATCH records, each with storage_put_take_async as
 * mod_mam's batches do (one storage_put_many_take_async a batch, or with
 * --singles one storage_put_take_async a record): collection "mam", a 28-hex key that begins with the
 * record's stamp (the shape of sm/mam_id.c's ids, a stamped key:
 * storage_hint_t), another owner as the tag, mod_mam's header
 * line and a chat stanza of about 300 bytes, the page cache raised to
 * mam.write-cache (16 MiB) while a batch commits. Prints one JSON line:
 * records, the process's CPU µs per record (every thread: with SQLite the
 * write runs here and the WAL's checkpoints in the driver's checkpoint
 * thread), wall µs per record. Not a test: nothing asserts. Run again on the
 * same file, it adds to what is there: how the cost grows with the archive.
 *
 *   weft-bench-archive --storage sqlite:/tmp/arch.db [--records 200000]
 *                      [--owners 400] [--batch 20000] [--label before]
 *                      [--write-cache BYTES] (mam.write-cache, default 16 MiB)
 *                      [--twins] (every received record after the batch's 33rd
 *                                 holds a sent one's stanza, with a share hint)
 *                      [--singles] (a request per record)
 *                      [--indexed] (keys of another shape, in upper case: in
 *                                   the key index, as every key was before
 *                                   schema step v7) */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "storage.h"
#include "strbuf.h"

#define WRITE_CACHE_DEFAULT (16u << 20)
#define IDLE_CACHE (512u << 10)

static double clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* A formatted copy (malloc'd; storage takes it). */
static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    char *out = xmalloc((size_t)n + 1);
    va_start(ap, f);
    vsnprintf(out, (size_t)n + 1, f, ap);
    va_end(ap);
    return out;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void fail_cb(storage_res_t *res, void *arg)
{
    (void)arg;
    if (res->status < 0) {
        fprintf(stderr, "weft-bench-archive: a write failed\n");
        exit(1);
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: weft-bench-archive --storage URL [--records N] [--owners N]"
                    " [--batch N] [--label TEXT] [--write-cache BYTES] [--twins] [--indexed] [--singles]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *url = NULL, *label = "";
    long records = 200000, owners = 400, batch = 20000;
    size_t write_cache = WRITE_CACHE_DEFAULT;
    int twins = 0, indexed = 0, singles = 0;
    static const struct option opts[] = {
        {"storage", required_argument, NULL, 's'}, {"records", required_argument, NULL, 'n'},
        {"owners", required_argument, NULL, 'o'},  {"batch", required_argument, NULL, 'b'},
        {"label", required_argument, NULL, 'l'},   {"write-cache", required_argument, NULL, 'w'},
        {"twins", no_argument, NULL, 't'},         {"indexed", no_argument, NULL, 'i'},
        {"singles", no_argument, NULL, 'S'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's': url = optarg; break;
        case 'n': records = atol(optarg); break;
        case 'o': owners = atol(optarg); break;
        case 'b': batch = atol(optarg); break;
        case 'l': label = optarg; break;
        case 'w': write_cache = (size_t)atol(optarg); break;
        case 't': twins = 1; break;
        case 'i': indexed = 1; break;
        case 'S': singles = 1; break;
        default: usage();
        }
    }
    if (!url || records <= 0 || owners <= 1 || batch <= 0)
        usage();
    log_open("weft-bench-archive", "stderr", LOG_LVL_WARN);
    char err[256];
    storage_t *st = storage_open(url, NULL, err, sizeof err);
    if (!st) {
        fprintf(stderr, "weft-bench-archive: %s\n", err);
        return 1;
    }
    storage_set_cache(st, IDLE_CACHE);
    int64_t t0 = storage_now_us();
    double cpu = 0, wall = 0;
    for (long i = 0; i < records;) {
        long n = records - i < batch ? records - i : batch;
        /* Made before the clocks start: only the driver's work is timed. */
        char **own = malloc((size_t)n * sizeof *own), **key = malloc((size_t)n * sizeof *key);
        char **tag = malloc((size_t)n * sizeof *tag), **val = malloc((size_t)n * sizeof *val);
        size_t *len = malloc((size_t)n * sizeof *len);
        storage_hint_t *hint = malloc((size_t)n * sizeof *hint);
        for (long j = 0; j < n; j++) {
            long r = i + j, o = r % owners;
            own[j] = fmt("user%ld@localhost", o);
            tag[j] = fmt("user%ld@localhost", (o + 1) % owners);
            key[j] = fmt(indexed ? "%013llx%03llx%012llX" : "%013llx%03llx%012llx",
                         (unsigned long long)(t0 + r), (unsigned long long)(rng() & 0xfff),
                         (unsigned long long)(rng() & 0xffffffffffffull));
            val[j] = fmt(
                "%lld %c user%ld@localhost/phone\n"
                "<message xmlns='jabber:client' from='user%ld@localhost/phone' "
                "to='user%ld@localhost' type='chat' id='msg-%ld'><body>Message number %ld of "
                "the archive benchmark, long enough to look like a line of chat.</body>"
                "<stanza-id xmlns='urn:xmpp:sid:0' by='user%ld@localhost' id='%s'/></message>",
                (long long)(t0 + r), r % 2 ? 'o' : 'i', (o + 1) % owners, o, (o + 1) % owners,
                r, r, o, key[j]);
            len[j] = strlen(val[j]);
            /* --twins: a received record holds the stanza of a sent one 33
             * puts before it (as mod_mam's twins, docs/mam.md "One stanza,
             * two archives") and says so. */
            hint[j] = (storage_hint_t){.stamped = !indexed};
            if (twins && r % 2 == 0 && j >= 33) {
                const char *nl = strchr(val[j], '\n') + 1, *bnl = strchr(val[j - 33], '\n') + 1;
                size_t hl = (size_t)(nl - val[j]), bl = (size_t)(bnl - val[j - 33]);
                char *v = xmalloc(hl + strlen(bnl) + 1);
                memcpy(v, val[j], hl);
                strcpy(v + hl, bnl);
                free(val[j]);
                val[j] = v;
                len[j] = strlen(v);
                hint[j].back = 33;
                hint[j].self_at = hl;
                hint[j].base_at = bl;
                hint[j - 33].ahead = 33;
            }
        }
        /* The batch in one buffer, as mod_mam hands it over. */
        strbuf_t buf;
        storage_put_rec_t *recs = NULL;
        strbuf_init(&buf);
        if (!singles) {
            recs = malloc((size_t)n * sizeof *recs);
            size_t coll = buf.len;
            strbuf_append(&buf, "mam", 4);
            for (long j = 0; j < n; j++) {
                recs[j] = (storage_put_rec_t){.coll = coll, .stamp = t0 + i + j, .hint = hint[j]};
                recs[j].owner = buf.len;
                strbuf_append(&buf, own[j], strlen(own[j]) + 1);
                recs[j].key = buf.len;
                strbuf_append(&buf, key[j], strlen(key[j]) + 1);
                recs[j].tag = buf.len;
                strbuf_append(&buf, tag[j], strlen(tag[j]) + 1);
                recs[j].val = buf.len;
                recs[j].len = len[j];
                strbuf_append(&buf, val[j], len[j] + 1);
                free(own[j]);
                free(key[j]);
                free(tag[j]);
                free(val[j]);
            }
        }
        double c0 = clock_us(CLOCK_PROCESS_CPUTIME_ID), w0 = clock_us(CLOCK_MONOTONIC);
        storage_set_cache(st, write_cache);
        storage_begin_async(st, fail_cb, NULL);
        if (!singles) {
            size_t size = buf.len;
            storage_put_many_take_async(st, strbuf_steal(&buf), size, recs, (size_t)n, fail_cb,
                                        NULL);
        }
        for (long j = 0; singles && j < n; j++)
            storage_put_take_async(st, own[j], fmt("mam"), key[j], tag[j], val[j],
                                   len[j], t0 + i + j, &hint[j], fail_cb, NULL);
        storage_commit_async(st, fail_cb, NULL);
        storage_drain(st);
        storage_set_cache(st, IDLE_CACHE);
        cpu += clock_us(CLOCK_PROCESS_CPUTIME_ID) - c0;
        wall += clock_us(CLOCK_MONOTONIC) - w0;
        free(own);
        free(key);
        free(tag);
        free(val);
        free(len);
        free(hint);
        i += n;
    }
    /* The close checkpoints what the WAL still holds: the last batches'
     * share of the checkpoint thread's work, counted with them. */
    double c0 = clock_us(CLOCK_PROCESS_CPUTIME_ID);
    storage_close(st);
    cpu += clock_us(CLOCK_PROCESS_CPUTIME_ID) - c0;
    printf("{\"label\":\"%s\",\"records\":%ld,\"owners\":%ld,\"batch\":%ld,"
           "\"cpu_us_per_record\":%.2f,\"wall_us_per_record\":%.2f}\n",
           label, records, owners, batch, cpu / (double)records, wall / (double)records);
    log_close();
    return 0;
}
