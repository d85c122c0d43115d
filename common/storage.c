/* storage: driver lookup by the scheme of the storage setting, and the two
 * forms of every operation (storage.h) built on one request type.
 *
 * Every call becomes a storage_req_t holding copies of its arguments and is
 * handed to the driver's submit; the driver finishes it with
 * storage_req_done. The blocking forms submit with a callback that moves the
 * result into the caller's variables, then run the storage's loop until that
 * callback has run (never, for SQLite, which finishes inside submit). */
#include "storage_driver.h"
#include "log.h"
#include "metrics.h"
#include "strbuf.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------ drivers */

static const struct {
    const char *scheme;
    const storage_driver_t *drv;
} storage_schemes[] = {
    {"sqlite", &storage_sqlite_driver},
#ifdef WEFT_HAVE_PGSQL
    {"postgresql", &storage_pgsql_driver},
    {"postgres", &storage_pgsql_driver},
#endif
};

/* Length of a URL's scheme ("sqlite" in "sqlite:x"), 0 when the setting has
 * none: a bare path (the old `database` option), where a ':' may appear only
 * after a '/'. */
static size_t storage_scheme_len(const char *url)
{
    size_t i = 0;
    while ((url[i] >= 'a' && url[i] <= 'z') || (url[i] >= 'A' && url[i] <= 'Z') ||
           (i > 0 && ((url[i] >= '0' && url[i] <= '9') || url[i] == '+')))
        i++;
    return i > 0 && url[i] == ':' ? i : 0;
}

storage_t *storage_open(const char *url, struct event_base *base, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!url || !*url) {
        snprintf(err, errlen, "no storage URL or database path");
        return NULL;
    }
    const storage_driver_t *drv = &storage_sqlite_driver;
    const char *target = url;
    size_t n = storage_scheme_len(url);
    if (n) {
        drv = NULL;
        for (size_t i = 0; i < sizeof storage_schemes / sizeof storage_schemes[0]; i++)
            if (strlen(storage_schemes[i].scheme) == n &&
                !strncasecmp(url, storage_schemes[i].scheme, n))
                drv = storage_schemes[i].drv;
        if (!drv) {
            snprintf(err, errlen, "unknown storage driver \"%.*s\" (this build has: sqlite%s)",
                     (int)n, url,
#ifdef WEFT_HAVE_PGSQL
                     ", postgresql"
#else
                     ""
#endif
            );
            return NULL;
        }
        if (drv == &storage_sqlite_driver) {
            /* sqlite:PATH; sqlite://PATH takes the rest as the path, so
             * sqlite:///abs is /abs. */
            target = url + n + 1;
            if (!strncmp(target, "//", 2))
                target += 2;
        }
    }
    storage_t *st = xcalloc(1, sizeof *st);
    st->drv = drv;
    st->base = base;
    if (!base) {
        st->base = event_base_new();
        if (!st->base) {
            snprintf(err, errlen, "cannot create an event loop");
            free(st);
            return NULL;
        }
        st->own_base = 1;
    }
    if (drv->open(st, target, err, errlen) < 0) {
        if (st->own_base)
            event_base_free(st->base);
        free(st);
        return NULL;
    }
    return st;
}

void storage_close(storage_t *st)
{
    if (!st)
        return;
    storage_drain(st);
    st->drv->close(st);
    if (st->own_base)
        event_base_free(st->base);
    free(st);
}

const char *storage_driver_name(const storage_t *st)
{
    return st->drv->name;
}

int storage_is_async(const storage_t *st)
{
    return st->drv->async;
}

int storage_shares_tails(const storage_t *st)
{
    return st->drv->shares_tails;
}

struct event_base *storage_base(const storage_t *st)
{
    return st->base;
}

void storage_set_cache(storage_t *st, size_t bytes)
{
    if (st->drv->set_cache)
        st->drv->set_cache(st, bytes);
}

/* One turn of the storage's loop for a blocking call. libevent refuses to
 * run a loop from inside its own callbacks (a blocking call made from an
 * event handler on an asynchronous driver), and a loop with nothing to wait
 * for would never finish the request: both are broken invariants, and
 * spinning forever would hide them. */
static void storage_turn(storage_t *st)
{
    int rc = event_base_loop(st->base, EVLOOP_ONCE);
    if (rc != 0) {
        log_error("storage: panic=\"blocking call %s\" driver=%s", rc < 0 ?
                  "from inside the event loop" : "with nothing left to wait for", st->drv->name);
        abort();
    }
}

void storage_drain(storage_t *st)
{
    while (st->pending > 0)
        storage_turn(st);
}

int64_t storage_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The one list of log collections (storage.h). A new name also needs a
 * schema step in storage_sqlite.c moving that collection's records. */
int storage_coll_is_log(const char *coll)
{
    return coll && (!strcmp(coll, "mam") || !strcmp(coll, "muc-archive"));
}

/* ------------------------------------------------------------ requests */

char *storage_memdup(const void *p, size_t n)
{
    char *out = xmalloc(n + 1);
    if (n)
        memcpy(out, p, n);
    out[n] = '\0';
    return out;
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

storage_rec_t *storage_res_add(storage_res_t *res)
{
    /* Grows by doubling from 8. */
    if ((res->nrecs & (res->nrecs - 1)) == 0 && res->nrecs >= 8)
        res->recs = xrealloc(res->recs, 2 * res->nrecs * sizeof *res->recs);
    else if (res->nrecs == 0)
        res->recs = xmalloc(8 * sizeof *res->recs);
    storage_rec_t *r = &res->recs[res->nrecs++];
    memset(r, 0, sizeof *r);
    return r;
}

void storage_res_add_name(storage_res_t *res, const char *name)
{
    if ((res->nnames & (res->nnames - 1)) == 0 && res->nnames >= 8)
        res->names = xrealloc(res->names, 2 * res->nnames * sizeof *res->names);
    else if (res->nnames == 0)
        res->names = xmalloc(8 * sizeof *res->names);
    res->names[res->nnames++] = xstrdup(name);
}

void storage_res_clear(storage_res_t *res)
{
    free(res->val);
    free(res->sha256);
    free(res->sha1);
    for (size_t i = 0; i < res->nrecs; i++) {
        free(res->recs[i].owner);
        free(res->recs[i].coll);
        free(res->recs[i].key);
        free(res->recs[i].tag);
        free(res->recs[i].val);
    }
    free(res->recs);
    for (size_t i = 0; i < res->nnames; i++)
        free(res->names[i]);
    free(res->names);
    memset(res, 0, sizeof *res);
}

static storage_req_t *req_new(storage_op_t op, const char *opname, storage_cb cb, void *arg)
{
    storage_req_t *r = xcalloc(1, sizeof *r);
    r->op = op;
    r->opname = opname;
    r->cb = cb;
    r->arg = arg;
    return r;
}

/* A record of a put_many whose strings or value are not inside the buffer,
 * or not NUL-terminated there. */
static int put_rec_outside(const char *buf, size_t size, size_t at)
{
    return at >= size || !memchr(buf + at, '\0', size - at);
}

static const char *put_many_invalid(const storage_req_t *r)
{
    for (size_t i = 0; i < (size_t)r->num; i++) {
        const storage_put_rec_t *p = &r->many[i];
        if (put_rec_outside(r->val, r->len, p->owner) || put_rec_outside(r->val, r->len, p->coll) ||
            put_rec_outside(r->val, r->len, p->key) ||
            (p->tag != STORAGE_NO_TAG && put_rec_outside(r->val, r->len, p->tag)) ||
            p->val > r->len || p->len >= r->len - p->val || r->val[p->val + p->len] != '\0')
            return "a record outside its buffer";
    }
    return NULL;
}

/* Arguments every driver would otherwise check: refused here, logged. */
static const char *req_invalid(const storage_req_t *r)
{
    switch (r->op) {
    case SOP_USER_CREATE: case SOP_USER_GET: case SOP_USER_SET: case SOP_USER_DELETE:
    case SOP_USER_EXISTS: case SOP_USER_IMPORT:
        return r->owner ? NULL : "missing account";
    case SOP_GET: case SOP_PUT: case SOP_DEL: case SOP_IMPORT:
        if (!r->key)
            return "missing key";
        /* fall through */
    case SOP_DEL_ALL: case SOP_APPEND: case SOP_LIST: case SOP_COUNT: case SOP_RANGE:
        return r->owner && r->coll ? NULL : "missing owner or collection";
    case SOP_PUT_MANY:
        return put_many_invalid(r);
    default:
        return NULL;
    }
}

/* weft_storage_request_seconds: every request from submit to done, by
 * operation (opname: a fixed word per operation). Measured here, where every
 * driver's requests pass, so no driver times itself. The family is looked up
 * by name at each use: the registry belongs to the process (freed at exit),
 * and a program without a /metrics listener (weftctl) only fills it unread. */
static int64_t storage_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

metrics_family_t *storage_metrics_register(void)
{
    static const double bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                    0.1,    0.25,  0.5,    1,     2.5,  5,     10};
    return metrics_family("weft_storage_request_seconds", METRICS_HISTOGRAM,
                          "Time from a storage request's submission to its completion, by operation.", "op", bounds,
                          sizeof bounds / sizeof bounds[0]);
}

/* Every request observes one series: found by pointer among those of the
 * operation names seen (opname is a fixed string per operation), not by
 * walking the registry's families and series by name each time (an
 * archive batch is thousands of requests). */
#define OBSERVE_CACHE 48

static void storage_observe(const storage_req_t *r)
{
    static struct {
        const char *opname;
        metrics_series_t *series;
    } cache[OBSERVE_CACHE];
    static size_t ncache;
    static unsigned epoch;
    if (epoch != metrics_epoch()) {
        ncache = 0;
        epoch = metrics_epoch();
    }
    metrics_series_t *s = NULL;
    size_t i = 0;
    while (i < ncache && cache[i].opname != r->opname)
        i++;
    if (i < ncache) {
        s = cache[i].series;
    } else {
        s = metrics_series(storage_metrics_register(), r->opname, NULL);
        if (ncache < OBSERVE_CACHE) {
            cache[ncache].opname = r->opname;
            cache[ncache++].series = s;
        }
    }
    metrics_observe(s, (double)(storage_mono_us() - r->submitted_us) / 1e6);
}

static void req_submit(storage_t *st, storage_req_t *r)
{
    st->pending++;
    r->submitted_us = storage_mono_us();
    if (r->op == SOP_PUT)
        r->put_no = ++st->puts;
    if (r->op == SOP_PUT_MANY) {
        r->put_no = st->puts + 1;
        st->puts += (uint64_t)r->num;
    }
    const char *why = req_invalid(r);
    if (why) {
        log_error("storage: op=%s error=\"%s\"", r->opname, why);
        r->res.status = -1;
        storage_req_done(st, r);
        return;
    }
    st->drv->submit(st, r);
}

void storage_req_done(storage_t *st, storage_req_t *r)
{
    st->pending--;
    storage_observe(r);
    if (r->cb)
        r->cb(&r->res, r->arg);
    storage_res_clear(&r->res);
    free(r->owner);
    free(r->coll);
    free(r->key);
    free(r->tag);
    free(r->sha256);
    free(r->sha1);
    free(r->val);
    free(r->after);
    free(r->before);
    free(r->many);
    free(r);
}

/* The blocking form: the callback moves the result into a waiter on the
 * caller's stack; the loop runs until it has. */
typedef struct waiter {
    int done;
    storage_res_t res;
} waiter_t;

static void waiter_cb(storage_res_t *res, void *arg)
{
    waiter_t *w = arg;
    w->res = *res;
    memset(res, 0, sizeof *res);
    w->done = 1;
}

static void req_wait(storage_t *st, storage_req_t *r, waiter_t *w)
{
    memset(w, 0, sizeof *w);
    r->cb = waiter_cb;
    r->arg = w;
    req_submit(st, r);
    while (!w->done)
        storage_turn(st);
}

/* Runs r and returns its status, dropping the rest of the result. */
static int req_status(storage_t *st, storage_req_t *r)
{
    waiter_t w;
    req_wait(st, r, &w);
    int rc = w.res.status;
    storage_res_clear(&w.res);
    return rc;
}

/* Request builders shared by both forms. */
static storage_req_t *req_oc(storage_op_t op, const char *name, const char *owner,
                             const char *coll, const char *key, storage_cb cb, void *arg)
{
    storage_req_t *r = req_new(op, name, cb, arg);
    r->owner = dup_or_null(owner);
    r->coll = dup_or_null(coll);
    r->key = dup_or_null(key);
    return r;
}

static storage_req_t *req_user(storage_op_t op, const char *name, const char *bare,
                               const char *sha256, const char *sha1, storage_cb cb, void *arg)
{
    storage_req_t *r = req_new(op, name, cb, arg);
    r->owner = dup_or_null(bare);
    r->sha256 = dup_or_null(sha256);
    r->sha1 = dup_or_null(sha1);
    r->created = (int64_t)time(NULL);
    return r;
}

static storage_req_t *req_value(storage_op_t op, const char *name, const char *owner,
                                const char *coll, const char *key, const char *val, size_t len,
                                storage_cb cb, void *arg)
{
    storage_req_t *r = req_oc(op, name, owner, coll, key, cb, arg);
    r->val = storage_memdup(val ? val : "", val ? len : 0);
    r->len = val ? len : 0;
    r->stamp = storage_now_us();
    return r;
}

static storage_req_t *req_range(const char *owner, const char *coll, const storage_range_t *q,
                                storage_cb cb, void *arg)
{
    storage_req_t *r = req_oc(SOP_RANGE, "range", owner, coll, NULL, cb, arg);
    r->range = *q;
    r->tag = dup_or_null(q->tag);
    r->after = dup_or_null(q->after);
    r->before = dup_or_null(q->before);
    r->range.tag = r->tag;
    r->range.after = r->after;
    r->range.before = r->before;
    return r;
}

/* ------------------------------------------------------------ transactions */

int storage_begin(storage_t *st)
{
    return req_status(st, req_new(SOP_BEGIN, "begin", NULL, NULL));
}

int storage_commit(storage_t *st)
{
    return req_status(st, req_new(SOP_COMMIT, "commit", NULL, NULL));
}

int storage_rollback(storage_t *st)
{
    return req_status(st, req_new(SOP_ROLLBACK, "rollback", NULL, NULL));
}

void storage_begin_async(storage_t *st, storage_cb cb, void *arg)
{
    req_submit(st, req_new(SOP_BEGIN, "begin", cb, arg));
}

void storage_commit_async(storage_t *st, storage_cb cb, void *arg)
{
    req_submit(st, req_new(SOP_COMMIT, "commit", cb, arg));
}

void storage_rollback_async(storage_t *st, storage_cb cb, void *arg)
{
    req_submit(st, req_new(SOP_ROLLBACK, "rollback", cb, arg));
}

/* ------------------------------------------------------------ accounts */

int storage_user_create(storage_t *st, const char *bare, const char *sha256, const char *sha1)
{
    return req_status(st, req_user(SOP_USER_CREATE, "user_create", bare, sha256, sha1, NULL, NULL));
}

int storage_user_import(storage_t *st, const char *bare, const char *sha256, const char *sha1,
                        int64_t created)
{
    storage_req_t *r = req_user(SOP_USER_IMPORT, "user_import", bare, sha256, sha1, NULL, NULL);
    r->created = created;
    return req_status(st, r);
}

int storage_user_get(storage_t *st, const char *bare, char **sha256, char **sha1)
{
    waiter_t w;
    req_wait(st, req_user(SOP_USER_GET, "user_get", bare, NULL, NULL, NULL, NULL), &w);
    if (sha256) {
        *sha256 = w.res.sha256;
        w.res.sha256 = NULL;
    }
    if (sha1) {
        *sha1 = w.res.sha1;
        w.res.sha1 = NULL;
    }
    int rc = w.res.status;
    storage_res_clear(&w.res);
    return rc;
}

int storage_user_set_keys(storage_t *st, const char *bare, const char *sha256, const char *sha1)
{
    return req_status(st, req_user(SOP_USER_SET, "user_set_keys", bare, sha256, sha1, NULL, NULL));
}

int storage_user_delete(storage_t *st, const char *bare)
{
    return req_status(st, req_user(SOP_USER_DELETE, "user_delete", bare, NULL, NULL, NULL, NULL));
}

int storage_user_exists(storage_t *st, const char *bare)
{
    waiter_t w;
    req_wait(st, req_user(SOP_USER_EXISTS, "user_exists", bare, NULL, NULL, NULL, NULL), &w);
    int rc = w.res.status < 0 ? -1 : w.res.n ? 1 : 0;
    storage_res_clear(&w.res);
    return rc;
}

/* The names are all fetched first: fn may call any storage function. */
int storage_user_list(storage_t *st, storage_user_fn fn, void *arg)
{
    waiter_t w;
    req_wait(st, req_new(SOP_USER_LIST, "user_list", NULL, NULL), &w);
    int rc = w.res.status;
    for (size_t i = 0; rc == 0 && i < w.res.nnames; i++)
        rc = fn(w.res.names[i], arg);
    storage_res_clear(&w.res);
    return rc;
}

int storage_user_count(storage_t *st)
{
    waiter_t w;
    req_wait(st, req_new(SOP_USER_COUNT, "user_count", NULL, NULL), &w);
    int rc = w.res.status < 0 ? -1 : w.res.n > 0x7fffffff ? 0x7fffffff : (int)w.res.n;
    storage_res_clear(&w.res);
    return rc;
}

void storage_user_create_async(storage_t *st, const char *bare, const char *sha256,
                               const char *sha1, storage_cb cb, void *arg)
{
    req_submit(st, req_user(SOP_USER_CREATE, "user_create", bare, sha256, sha1, cb, arg));
}

void storage_user_get_async(storage_t *st, const char *bare, storage_cb cb, void *arg)
{
    req_submit(st, req_user(SOP_USER_GET, "user_get", bare, NULL, NULL, cb, arg));
}

void storage_user_set_keys_async(storage_t *st, const char *bare, const char *sha256,
                                 const char *sha1, storage_cb cb, void *arg)
{
    req_submit(st, req_user(SOP_USER_SET, "user_set_keys", bare, sha256, sha1, cb, arg));
}

void storage_user_delete_async(storage_t *st, const char *bare, storage_cb cb, void *arg)
{
    req_submit(st, req_user(SOP_USER_DELETE, "user_delete", bare, NULL, NULL, cb, arg));
}

void storage_user_exists_async(storage_t *st, const char *bare, storage_cb cb, void *arg)
{
    req_submit(st, req_user(SOP_USER_EXISTS, "user_exists", bare, NULL, NULL, cb, arg));
}

void storage_user_list_async(storage_t *st, storage_cb cb, void *arg)
{
    req_submit(st, req_new(SOP_USER_LIST, "user_list", cb, arg));
}

void storage_user_count_async(storage_t *st, storage_cb cb, void *arg)
{
    req_submit(st, req_new(SOP_USER_COUNT, "user_count", cb, arg));
}

/* ------------------------------------------------------------ records */

int storage_get(storage_t *st, const char *owner, const char *coll, const char *key,
                char **val, size_t *len)
{
    waiter_t w;
    req_wait(st, req_oc(SOP_GET, "get", owner, coll, key, NULL, NULL), &w);
    if (val) {
        *val = w.res.val;
        w.res.val = NULL;
    }
    if (len)
        *len = w.res.status == 0 ? w.res.len : 0;
    int rc = w.res.status;
    storage_res_clear(&w.res);
    return rc;
}

int storage_put(storage_t *st, const char *owner, const char *coll, const char *key,
                const char *val, size_t len)
{
    return req_status(st, req_value(SOP_PUT, "put", owner, coll, key, val, len, NULL, NULL));
}

int storage_put_tag(storage_t *st, const char *owner, const char *coll, const char *key,
                    const char *tag, const char *val, size_t len)
{
    storage_req_t *r = req_value(SOP_PUT, "put", owner, coll, key, val, len, NULL, NULL);
    r->tag = dup_or_null(tag);
    return req_status(st, r);
}

int storage_put_at(storage_t *st, const char *owner, const char *coll, const char *key,
                   const char *tag, const char *val, size_t len, int64_t stamp)
{
    storage_req_t *r = req_value(SOP_PUT, "put", owner, coll, key, val, len, NULL, NULL);
    r->tag = dup_or_null(tag);
    r->stamp = stamp;
    return req_status(st, r);
}

int storage_del(storage_t *st, const char *owner, const char *coll, const char *key)
{
    return req_status(st, req_oc(SOP_DEL, "del", owner, coll, key, NULL, NULL));
}

int storage_del_all(storage_t *st, const char *owner, const char *coll)
{
    return req_status(st, req_oc(SOP_DEL_ALL, "del_all", owner, coll, NULL, NULL, NULL));
}

int storage_append(storage_t *st, const char *owner, const char *coll, const char *val,
                   size_t len, int64_t *seq)
{
    waiter_t w;
    req_wait(st, req_value(SOP_APPEND, "append", owner, coll, NULL, val, len, NULL, NULL), &w);
    if (seq)
        *seq = w.res.status == 0 ? w.res.n : 0;
    int rc = w.res.status;
    storage_res_clear(&w.res);
    return rc;
}

/* The rows are all fetched first: fn may call any storage function, even
 * change the collection it walks. */
int storage_list(storage_t *st, const char *owner, const char *coll, storage_rec_fn fn, void *arg)
{
    waiter_t w;
    req_wait(st, req_oc(SOP_LIST, "list", owner, coll, NULL, NULL, NULL), &w);
    int rc = w.res.status;
    for (size_t i = 0; rc == 0 && i < w.res.nrecs; i++)
        rc = fn(w.res.recs[i].key, w.res.recs[i].val, w.res.recs[i].len, arg);
    storage_res_clear(&w.res);
    return rc;
}

int storage_count(storage_t *st, const char *owner, const char *coll)
{
    waiter_t w;
    req_wait(st, req_oc(SOP_COUNT, "count", owner, coll, NULL, NULL, NULL), &w);
    int rc = w.res.status < 0 ? -1 : w.res.n > 0x7fffffff ? 0x7fffffff : (int)w.res.n;
    storage_res_clear(&w.res);
    return rc;
}

int storage_range(storage_t *st, const char *owner, const char *coll, const storage_range_t *q,
                  storage_res_t *res)
{
    waiter_t w;
    req_wait(st, req_range(owner, coll, q, NULL, NULL), &w);
    *res = w.res;
    return res->status;
}

int storage_scan(storage_t *st, int64_t after_seq, size_t limit, storage_res_t *res)
{
    storage_req_t *r = req_new(SOP_SCAN, "scan", NULL, NULL);
    r->seq = after_seq;
    r->num = (int64_t)limit;
    waiter_t w;
    req_wait(st, r, &w);
    *res = w.res;
    return res->status;
}

int storage_import(storage_t *st, const char *owner, const char *coll, const storage_rec_t *rec)
{
    storage_req_t *r = req_value(SOP_IMPORT, "import", owner, coll, rec->key, rec->val, rec->len,
                                 NULL, NULL);
    r->seq = rec->seq;
    r->stamp = rec->stamp;
    r->tag = dup_or_null(rec->tag);
    return req_status(st, r);
}

int storage_import_done(storage_t *st)
{
    return req_status(st, req_new(SOP_IMPORT_DONE, "import_done", NULL, NULL));
}

int storage_ping(storage_t *st, int delay_ms)
{
    storage_req_t *r = req_new(SOP_PING, "ping", NULL, NULL);
    r->num = delay_ms;
    return req_status(st, r);
}

void storage_get_async(storage_t *st, const char *owner, const char *coll, const char *key,
                       storage_cb cb, void *arg)
{
    req_submit(st, req_oc(SOP_GET, "get", owner, coll, key, cb, arg));
}

void storage_put_async(storage_t *st, const char *owner, const char *coll, const char *key,
                       const char *val, size_t len, storage_cb cb, void *arg)
{
    req_submit(st, req_value(SOP_PUT, "put", owner, coll, key, val, len, cb, arg));
}

void storage_put_tag_async(storage_t *st, const char *owner, const char *coll, const char *key,
                           const char *tag, const char *val, size_t len, storage_cb cb,
                           void *arg)
{
    storage_req_t *r = req_value(SOP_PUT, "put", owner, coll, key, val, len, cb, arg);
    r->tag = dup_or_null(tag);
    req_submit(st, r);
}

void storage_put_take_async(storage_t *st, char *owner, char *coll, char *key, char *tag, char *val,
                            size_t len, int64_t stamp, const storage_hint_t *hint,
                            storage_cb cb, void *arg)
{
    storage_req_t *r = req_new(SOP_PUT, "put", cb, arg);
    r->owner = owner;
    r->coll = coll;
    r->key = key;
    r->tag = tag;
    r->val = val ? val : storage_memdup("", 0);
    r->len = val ? len : 0;
    r->stamp = stamp;
    if (hint) {
        r->hint = *hint;
        if (hint->self_at > r->len)
            r->hint.back = 0;            /* names bytes it does not have: no share */
    }
    req_submit(st, r);
}

void storage_put_many_take_async(storage_t *st, char *buf, size_t size, storage_put_rec_t *recs,
                                 size_t n, storage_cb cb, void *arg)
{
    storage_req_t *r = req_new(SOP_PUT_MANY, "put_many", cb, arg);
    r->val = buf;
    r->len = size;
    r->many = recs;
    r->num = (int64_t)n;
    if (st->drv->put_many || put_many_invalid(r)) {
        req_submit(st, r);             /* a bad record fails it there */
        return;
    }
    if (n == 0 && cb)
        storage_ping_async(st, 0, cb, arg);   /* answered 0, after what is queued */
    /* One put each; the last carries cb (requests finish in order). */
    for (size_t i = 0; i < n; i++) {
        const storage_put_rec_t *p = &recs[i];
        int last = i + 1 == n;
        storage_put_take_async(st, xstrdup(buf + p->owner), xstrdup(buf + p->coll),
                               xstrdup(buf + p->key),
                               p->tag == STORAGE_NO_TAG ? NULL : xstrdup(buf + p->tag),
                               storage_memdup(buf + p->val, p->len), p->len, p->stamp, &p->hint,
                               last ? cb : NULL, last ? arg : NULL);
    }
    free(buf);
    free(recs);
    free(r);
}

void storage_del_async(storage_t *st, const char *owner, const char *coll, const char *key,
                       storage_cb cb, void *arg)
{
    req_submit(st, req_oc(SOP_DEL, "del", owner, coll, key, cb, arg));
}

void storage_del_all_async(storage_t *st, const char *owner, const char *coll, storage_cb cb,
                           void *arg)
{
    req_submit(st, req_oc(SOP_DEL_ALL, "del_all", owner, coll, NULL, cb, arg));
}

void storage_append_async(storage_t *st, const char *owner, const char *coll, const char *val,
                          size_t len, storage_cb cb, void *arg)
{
    req_submit(st, req_value(SOP_APPEND, "append", owner, coll, NULL, val, len, cb, arg));
}

void storage_list_async(storage_t *st, const char *owner, const char *coll, storage_cb cb,
                        void *arg)
{
    req_submit(st, req_oc(SOP_LIST, "list", owner, coll, NULL, cb, arg));
}

void storage_count_async(storage_t *st, const char *owner, const char *coll, storage_cb cb,
                         void *arg)
{
    req_submit(st, req_oc(SOP_COUNT, "count", owner, coll, NULL, cb, arg));
}

void storage_range_async(storage_t *st, const char *owner, const char *coll,
                         const storage_range_t *q, storage_cb cb, void *arg)
{
    req_submit(st, req_range(owner, coll, q, cb, arg));
}

void storage_ping_async(storage_t *st, int delay_ms, storage_cb cb, void *arg)
{
    storage_req_t *r = req_new(SOP_PING, "ping", cb, arg);
    r->num = delay_ms;
    req_submit(st, r);
}
