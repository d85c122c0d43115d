/* weft-bench-mam: how long the archive queries of mod_mam take on a large
 * archive, through libweft-storage (docs/performance.md, "MAM queries").
 *
 * Fills one user's archive with MESSAGES messages spread over CONTACTS
 * contacts, in mod_mam's layout (docs/mam.md: one record per message in
 * "mam", tagged with the contact's bare JID, keyed by a time-ordered id, with
 * the header line and a chat stanza of about 300 bytes), unless the archive
 * already holds them; then times the ranges
 * mod_mam submits for the common queries, QUERIES times each, with a
 * random contact each time:
 *   with-last50    the last 50 with one contact (RSM <before/>, max 50)
 *   all-last50     the last 50 of the whole archive
 *   with-before50  the 50 before a message in the middle of a contact's history
 *   with-start50   the first 50 with a contact since a time in the middle
 * Each asks for 51 records, as mod_mam does to know whether the page is the
 * last. Prints one JSON line per query kind (count, p50, p90, p99, max in
 * ms, and this thread's CPU time per query: the whole of an SQLite query,
 * none of a PostgreSQL one) on stdout. Not a test: nothing asserts.
 *
 *   weft-bench-mam --storage sqlite:/tmp/mam.db [--messages 1000000]
 *                  [--contacts 1000] [--queries 2000] [--label sqlite]
 *                  [--cache BYTES] (SQLite's page cache, as sm.xml database-cache)
 *                  [--twins] (each received message also in its sender's archive, the
 *                             owner's record sharing its stanza: see fill) */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "storage.h"
#include "strbuf.h"

#define OWNER "bench-owner@localhost"
#define BATCH 5000

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* CPU time of this thread: with SQLite the query runs here, so wall time
 * minus this is time spent waiting for a CPU or the disk. */
static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
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
        fprintf(stderr, "weft-bench-mam: a write failed\n");
        exit(1);
    }
}

/* One record as mod_mam writes it. */
static void record(strbuf_t *sb, long i, long contact, int64_t stamp, const char *id)
{
    char buf[768];
    int out = i % 2;
    snprintf(buf, sizeof buf,
             "%lld %c contact%ld@localhost/phone\n"
             "<message xmlns='jabber:client' from='%s%ld@localhost/phone' to='%s%ld@localhost' "
             "type='chat' id='msg-%ld'><body>Message number %ld of the benchmark archive, long "
             "enough to look like a line of chat between two people.</body>"
             "<origin-id xmlns='urn:xmpp:sid:0' id='origin-%ld'/>"
             "<stanza-id xmlns='urn:xmpp:sid:0' by='" OWNER "' id='%s'/></message>",
             (long long)stamp, out ? 'o' : 'i', contact,
             out ? "bench-owner" : "contact", out ? 0L : contact,
             out ? "contact" : "bench-owner", out ? contact : 0L, i, i, i, id);
    strbuf_reset(sb);
    strbuf_puts(sb, buf);
}

/* A malloc'd copy of n bytes and a NUL (storage takes it). */
static char *bytes_dup(const char *p, size_t n)
{
    char *c = xmalloc(n + 1);
    memcpy(c, p, n);
    c[n] = '\0';
    return c;
}

/* With twins, each message the owner received is also in its contact's
 * archive as sent, written earlier in the same transaction, and the owner's
 * record goes with a share of it (storage_share_t): the layout mod_mam
 * makes for a chat between two users of one sm (docs/mam.md, "One stanza,
 * two archives"), whose rows the queries join back on. */
static void fill(storage_t *st, long messages, long contacts, int twins)
{
    strbuf_t sb;
    strbuf_init(&sb);
    double t0 = now_ms();
    int64_t stamp0 = storage_now_us();
    long *contact = xmalloc(BATCH * sizeof *contact);
    char (*id)[24] = xmalloc(BATCH * sizeof *id);
    size_t *twin_put = xmalloc(BATCH * sizeof *twin_put);
    for (long i0 = 0; i0 < messages; i0 += BATCH) {
        long n = messages - i0 < BATCH ? messages - i0 : BATCH;
        if (storage_begin(st) < 0)
            exit(1);
        for (long j = 0; j < n; j++) {
            contact[j] = (long)(rng() % (uint64_t)contacts);
            /* As mod_mam's ids: the time in µs first, then random digits. */
            snprintf(id[j], sizeof id[j], "%013llx%03x", (unsigned long long)(stamp0 + i0 + j),
                     (unsigned)(rng() & 0xfff));
        }
        size_t puts = 0, nbase = 0;
        for (long j = 0; twins && j < n; j++)
            nbase += (i0 + j) % 2 == 0;
        for (long j = 0; twins && j < n; j++) {
            if ((i0 + j) % 2)
                continue;             /* sent by the owner: no twin */
            record(&sb, i0 + j, contact[j], stamp0 + i0 + j, id[j]);
            const char *stanza = strchr(sb.data, '\n') + 1;
            char *val = xmalloc(sb.len + 64);
            int hl = sprintf(val, "%lld o " OWNER "\n", (long long)(stamp0 + i0 + j));
            strcpy(val + hl, stanza);
            char *owner = xmalloc(64), *key = xmalloc(32);
            snprintf(owner, 64, "contact%ld@localhost", contact[j]);
            snprintf(key, 32, "%sc", id[j]);
            /* The owner's record, puts - twin_put[j] puts later, shares it. */
            storage_hint_t base = {.stamped = 1, .ahead = nbase + (size_t)j - puts};
            storage_put_take_async(st, owner, xstrdup("mam"), key, xstrdup(OWNER), val,
                                   strlen(val), stamp0 + i0 + j, &base, fail_cb, NULL);
            twin_put[j] = puts++;
        }
        for (long j = 0; j < n; j++) {
            char tag[64];
            snprintf(tag, sizeof tag, "contact%ld@localhost", contact[j]);
            record(&sb, i0 + j, contact[j], stamp0 + i0 + j, id[j]);
            /* Keyed as mod_mam keys: ids that begin with their stamp. */
            storage_hint_t hint = {.stamped = 1};
            if (twins && (i0 + j) % 2 == 0) {
                hint.back = puts - twin_put[j];
                hint.self_at = (size_t)(strchr(sb.data, '\n') + 1 - sb.data);
                hint.base_at = (size_t)snprintf(NULL, 0, "%lld o " OWNER "\n",
                                                (long long)(stamp0 + i0 + j));
            }
            storage_put_take_async(st, xstrdup(OWNER), xstrdup("mam"), xstrdup(id[j]), xstrdup(tag),
                                   bytes_dup(sb.data, sb.len), sb.len, stamp0 + i0 + j,
                                   &hint, fail_cb, NULL);
            puts++;
        }
        if (storage_commit(st) < 0)
            exit(1);
        if ((i0 + n) % 100000 == 0)
            fprintf(stderr, "filled %ld messages in %.0f s\n", i0 + n, (now_ms() - t0) / 1e3);
    }
    free(contact);
    free(id);
    free(twin_put);
    strbuf_free(&sb);
    fprintf(stderr, "filled %ld messages (one record each%s) in %.1f s\n", messages,
            twins ? ", the received ones also in their sender's archive" : "",
            (now_ms() - t0) / 1e3);
}

static int dcmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *label, const char *kind, double *t, double *c, size_t n, size_t recs)
{
    qsort(t, n, sizeof *t, dcmp);
    qsort(c, n, sizeof *c, dcmp);
    printf("{\"label\":\"%s\",\"query\":\"%s\",\"count\":%zu,\"records\":%zu,\"p50_ms\":%.3f,"
           "\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"cpu_p50_ms\":%.3f,"
           "\"cpu_p99_ms\":%.3f,\"cpu_max_ms\":%.3f}\n",
           label, kind, n, recs, t[n / 2], t[n * 9 / 10], t[n * 99 / 100], t[n - 1], c[n / 2],
           c[n * 99 / 100], c[n - 1]);
    fflush(stdout);
}

/* A key and stamp from the middle of a contact's history (for the
 * before/start queries). */
static int middle_of(storage_t *st, const char *tag, char **key, int64_t *stamp)
{
    storage_range_t q = {0};
    q.by_stamp = 1;
    q.tag = tag;
    storage_res_t res = {0};
    if (storage_range(st, OWNER, "mam", &q, &res) != 0 || res.nrecs == 0) {
        storage_res_clear(&res);
        return -1;
    }
    /* The record at about n/2, read outside the timed part. */
    size_t mid = res.nrecs / 2;
    *key = strdup(res.recs[mid].key);
    *stamp = res.recs[mid].stamp;
    storage_res_clear(&res);
    return 0;
}

int main(int argc, char **argv)
{
    const char *url = NULL, *label = "weft";
    long messages = 1000000, contacts = 1000, queries = 2000;
    size_t cache = 0;                  /* SQLite page cache bytes; 0: the driver's default */
    int twins = 0;
    static const struct option opts[] = {
        {"storage", required_argument, NULL, 's'}, {"messages", required_argument, NULL, 'm'},
        {"contacts", required_argument, NULL, 'c'}, {"queries", required_argument, NULL, 'q'},
        {"label", required_argument, NULL, 'l'}, {"cache", required_argument, NULL, 'C'},
        {"twins", no_argument, NULL, 't'},          {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 's': url = optarg; break;
        case 'm': messages = atol(optarg); break;
        case 'c': contacts = atol(optarg); break;
        case 'q': queries = atol(optarg); break;
        case 'l': label = optarg; break;
        case 't': twins = 1; break;
        case 'C': cache = (size_t)atol(optarg); break;
        default: return 2;
        }
    }
    if (!url || messages <= 0 || contacts <= 0 || queries <= 0) {
        fprintf(stderr, "usage: weft-bench-mam --storage URL [--messages N] [--contacts N] "
                        "[--queries N] [--label TEXT]\n");
        return 2;
    }
    log_open("weft-bench-mam", "stderr", LOG_LVL_WARN);
    char err[256];
    storage_t *st = storage_open(url, NULL, err, sizeof err);
    if (!st) {
        fprintf(stderr, "weft-bench-mam: %s\n", err);
        return 1;
    }
    if (cache)
        storage_set_cache(st, cache);
    int have = storage_count(st, OWNER, "mam");
    if (have != messages) {
        if (have > 0) {
            fprintf(stderr, "weft-bench-mam: the archive holds %d messages, not %ld: use an empty "
                            "storage\n", have, messages);
            return 1;
        }
        fill(st, messages, contacts, twins);
    } else {
        fprintf(stderr, "archive already holds %d messages\n", have);
    }

    double *t = calloc((size_t)queries, sizeof *t), *c = calloc((size_t)queries, sizeof *c);
    const char *kinds[] = {"with-last50", "all-last50", "with-before50", "with-start50"};
    for (int k = 0; k < 4; k++) {
        size_t recs = 0;
        for (long i = 0; i < queries; i++) {
            char tag[64];
            snprintf(tag, sizeof tag, "contact%ld@localhost", (long)(rng() % (uint64_t)contacts));
            storage_range_t q = {0};
            q.by_stamp = 1;
            q.limit = 51;
            if (k != 1)
                q.tag = tag;
            char *mid = NULL;
            int64_t mid_stamp = 0;
            if (k >= 2 && middle_of(st, tag, &mid, &mid_stamp) < 0) {
                i--;
                continue;
            }
            if (k == 0 || k == 1 || k == 2)
                q.reverse = 1;
            if (k == 2)
                q.before = mid;
            if (k == 3)
                q.since = mid_stamp;
            storage_res_t res = {0};
            double t0 = now_ms(), c0 = cpu_ms();
            int rc = storage_range(st, OWNER, "mam", &q, &res);
            t[i] = now_ms() - t0;
            c[i] = cpu_ms() - c0;
            if (rc != 0 || res.nrecs != 51) {
                fprintf(stderr, "weft-bench-mam: %s returned %d with %zu records\n", kinds[k], rc,
                        res.nrecs);
                return 1;
            }
            recs += res.nrecs;
            storage_res_clear(&res);
            free(mid);
        }
        report(label, kinds[k], t, c, (size_t)queries, recs);
    }
    free(t);
    free(c);
    storage_close(st);
    log_close();
    return 0;
}
