/* mam_query: the urn:xmpp:mam:2 requests of a user about its own archive:
 * the query form, queries (XEP-0313 section 4 with XEP-0059 paging both
 * ways), preferences (handed to mod_mam.c) and metadata (#extended).
 *
 * A query is answered from one range over the "mam" collection, restricted
 * to the tag of the contact's bare JID when the 'with' filter names one (a
 * full JID: the records are also checked against it, a page at a time). The
 * range is
 * by (stamp, seq), so start/end bound the stamps, after-id/before-id and
 * RSM <after/>/<before/> bound by record, and a <before/> page reads from the
 * end. One more record than the page is asked for: when it is not there, the
 * page is the last in that direction (complete='true'). 'ids' reads each id
 * from "mam". Every request is deferred (sm_iq_defer) and answered from the
 * storage callbacks; the result messages go to the asking session before the
 * <fin/>, and are dropped if the session ended meanwhile.
 *
 * Only the account itself may ask (anyone else gets service-unavailable,
 * as for a missing account). Errors: bad-request for an unknown field or a
 * bad date, item-not-found for an id that names no archived message,
 * feature-not-implemented for RSM <index/>. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mod_mam.h"
#include "xml_stream.h"

#define NS_XDATA "jabber:x:data"
#define NS_RSM "http://jabber.org/protocol/rsm"
#define FULL_CHUNK 256            /* records read per step when filtering a full JID */
#define MAX_IDS 1000              /* ids in one 'ids' query */

typedef struct mq_hit {
    char *key, *val;
    size_t len;
} mq_hit_t;

typedef struct mq {
    sm_iq_t *req;
    char *queryid;
    char *with_bare;              /* the tag to range over, or NULL: everything */
    char *with_full;              /* filter on the stored full JID, or NULL */
    int64_t since, until;
    char *after, *before;         /* record bounds (keys) */
    int reverse, flip;
    size_t max;
    /* 'ids' queries */
    char **ids;
    size_t nids, next_id;
    /* collected records, in read order (newest first when reverse) */
    mq_hit_t *hits;
    size_t nhits;
    int exhausted, inflight, in_step, failed;
    const char *error;            /* condition to answer instead of results */
} mq_t;

static const mam_cfg_t *qcfg(void)
{
    return sm_module_config(&sm_module_mam);
}

static void mq_free(mq_t *q)
{
    for (size_t i = 0; i < q->nhits; i++) {
        free(q->hits[i].key);
        free(q->hits[i].val);
    }
    for (size_t i = 0; i < q->nids; i++)
        free(q->ids[i]);
    free(q->ids);
    free(q->hits);
    free(q->queryid);
    free(q->with_bare);
    free(q->with_full);
    free(q->after);
    free(q->before);
    free(q);
}

static void hit_add(mq_t *q, const char *key, const char *val, size_t len)
{
    q->hits = xrealloc(q->hits, (q->nhits + 1) * sizeof *q->hits);
    mq_hit_t *h = &q->hits[q->nhits++];
    h->key = xstrdup(key);
    h->val = xmalloc(len + 1);
    memcpy(h->val, val, len);
    h->val[len] = '\0';
    h->len = len;
}

/* --- the query form ------------------------------------------------------------ */

static xml_node_t *form_field(xml_node_t *x, const char *var, const char *type)
{
    xml_node_t *f = xml_add_child(x, NS_XDATA, "field");
    xml_attr_set(f, "var", var);
    xml_attr_set(f, "type", type);
    return f;
}

static xml_node_t *query_form(void)
{
    xml_node_t *q = xml_elem_new(MAM_NS, "query");
    xml_node_t *x = xml_add_child(q, NS_XDATA, "x");
    xml_attr_set(x, "type", "form");
    xml_node_t *v = xml_add_child(form_field(x, "FORM_TYPE", "hidden"), NS_XDATA, "value");
    xml_add_text(v, MAM_NS, strlen(MAM_NS));
    form_field(x, "with", "jid-single");
    form_field(x, "start", "text-single");
    form_field(x, "end", "text-single");
    form_field(x, "before-id", "text-single");
    form_field(x, "after-id", "text-single");
    form_field(x, "ids", "list-multi");
    return q;
}

/* The first <value/> of a field, malloc'd ("" when it has none). */
static char *field_value(const xml_node_t *f)
{
    xml_node_t *v = xml_child(f, NS_XDATA, "value");
    return v ? xml_text(v) : xstrdup("");
}

/* Reads the submitted form into q: NULL, or the error condition. */
static const char *parse_form(mq_t *q, const xml_node_t *x)
{
    for (xml_node_t *f = xml_child(x, NS_XDATA, "field"); f; f = xml_next(f, NS_XDATA, "field")) {
        const char *var = xml_attr_get(f, "var");
        if (!var)
            return "bad-request";
        if (!strcmp(var, "ids")) {
            for (xml_node_t *v = xml_child(f, NS_XDATA, "value"); v; v = xml_next(v, NS_XDATA, "value")) {
                if (q->nids >= MAX_IDS)
                    return "not-acceptable";
                q->ids = xrealloc(q->ids, (q->nids + 1) * sizeof *q->ids);
                q->ids[q->nids++] = xml_text(v);
            }
            continue;
        }
        char *val = field_value(f);
        const char *err = NULL;
        if (!strcmp(var, "FORM_TYPE")) {
            if (strcmp(val, MAM_NS) != 0)
                err = "bad-request";
        } else if (!strcmp(var, "with")) {
            jid_t j;
            if (jid_parse(val, &j) != JID_OK) {
                err = "jid-malformed";
            } else {
                free(q->with_bare);
                q->with_bare = xstrdup(j.bare);
                free(q->with_full);
                q->with_full = j.resource ? xstrdup(j.full) : NULL;
                jid_clear(&j);
            }
        } else if (!strcmp(var, "start") || !strcmp(var, "end")) {
            int64_t t = mam_stamp_parse(val);
            if (t < 0)
                err = "bad-request";
            else if (var[0] == 's')
                q->since = t ? t : 1;
            else
                q->until = t;
        } else if (!strcmp(var, "after-id") || !strcmp(var, "before-id")) {
            char **dst = var[0] == 'a' ? &q->after : &q->before;
            if (*val) {
                free(*dst);
                *dst = xstrdup(val);
            }
        } else {
            err = "bad-request";          /* XEP-0313 4.1.1: an unsupported field */
        }
        free(val);
        if (err)
            return err;
    }
    return NULL;
}

/* RSM: <max/>, <after/>, <before/> (empty: the last page). */
static const char *parse_rsm(mq_t *q, const xml_node_t *set)
{
    const mam_cfg_t *c = qcfg();
    q->max = (size_t)c->default_page;
    if (!set)
        return NULL;
    if (xml_child(set, NS_RSM, "index"))
        return "feature-not-implemented";
    xml_node_t *m = xml_child(set, NS_RSM, "max");
    if (m) {
        char *t = xml_text(m), *end;
        long v = strtol(t, &end, 10);
        int bad = end == t || *end || v < 0;
        free(t);
        if (bad)
            return "bad-request";
        q->max = (size_t)(v > c->max_page ? c->max_page : v);
    }
    xml_node_t *a = xml_child(set, NS_RSM, "after"), *b = xml_child(set, NS_RSM, "before");
    if (a) {
        char *t = xml_text(a);
        if (*t) {
            free(q->after);
            q->after = t;
        } else {
            free(t);
        }
    }
    if (b) {
        char *t = xml_text(b);
        q->reverse = 1;
        if (*t) {
            free(q->before);
            q->before = t;
        } else {
            free(t);
        }
    }
    return NULL;
}

/* RFC 6120 8.3.3: the error type that goes with each condition used here
 * (item-not-found and feature-not-implemented are the cancel ones; compared
 * by first letter, as GCC misreads strcmp on the inlined literals). */
static const char *err_type(const char *cond)
{
    if (cond[0] == 'i' || cond[0] == 'f')
        return "cancel";
    return "modify";
}

/* --- answering ----------------------------------------------------------------- */

static int hit_cmp(const void *a, const void *b)
{
    const mq_hit_t *x = a, *y = b;
    long long sx = strtoll(x->val, NULL, 10), sy = strtoll(y->val, NULL, 10);
    return sx < sy ? -1 : sx > sy ? 1 : strcmp(x->key, y->key);
}

/* The asking session, looked up now: it may have ended since the request. */
static sm_sess_t *asker(const mq_t *q)
{
    const char *from = xml_attr_get(q->req->iq, "from");
    jid_t j;
    if (!from || jid_parse(from, &j) != JID_OK)
        return NULL;
    sm_user_t *u = sm_user_get(j.bare);
    sm_sess_t *s = u && j.resource ? sm_sess_find(u, j.resource) : NULL;
    jid_clear(&j);
    return s;
}

static void send_result(const mq_t *q, sm_sess_t *s, const mq_hit_t *h, xml_limits_t *lim)
{
    mam_rec_t r;
    char err[128];
    if (mam_rec_parse(h->key, h->val, h->len, &r) < 0) {
        log_warn("sm: event=mam-record-unreadable user=%s id=%s", q->req->user->bare, h->key);
        return;
    }
    xml_node_t *inner = xml_parse_document(r.xml, r.xml_len, lim, err, sizeof err, NULL);
    if (!inner) {
        log_warn("sm: event=mam-record-unreadable user=%s id=%s error=\"%s\"", q->req->user->bare,
                 h->key, err);
        return;
    }
    xml_node_t *m = xml_elem_new(NS_CLIENT, "message");
    xml_attr_set(m, "to", s->jid.full);
    xml_attr_set(m, "from", q->req->user->bare);
    xml_node_t *res = xml_add_child(m, MAM_NS, "result");
    if (q->queryid)
        xml_attr_set(res, "queryid", q->queryid);
    xml_attr_set(res, "id", h->key);
    xml_node_t *fw = xml_add_child(res, MAM_NS_FORWARD, "forwarded");
    xml_node_t *delay = xml_add_child(fw, MAM_NS_DELAY, "delay");
    char stamp[48];
    mam_stamp_format(r.stamp, stamp, sizeof stamp);
    xml_attr_set(delay, "stamp", stamp);
    xml_append(fw, inner);
    sm_deliver(s, m);
    xml_free(m);
}

/* Sends the page (at most max records, oldest first unless flip-page) and
 * the <fin/>; frees q. */
static void mq_finish(mq_t *q)
{
    if (q->failed || q->error) {
        sm_iq_error(q->req, q->error ? q->error : "internal-server-error",
                    q->error ? err_type(q->error) : "wait");
        mq_free(q);
        return;
    }
    int complete;
    size_t n = q->nhits;
    if (q->ids) {
        qsort(q->hits, q->nhits, sizeof *q->hits, hit_cmp);
        complete = 1;
    } else {
        complete = n <= q->max;
        if (n > q->max)
            n = q->max;
    }
    /* Into chronological order: a reverse read came newest first. */
    if (q->reverse && !q->ids)
        for (size_t i = 0; i < n / 2; i++) {
            mq_hit_t t = q->hits[i];
            q->hits[i] = q->hits[n - 1 - i];
            q->hits[n - 1 - i] = t;
        }
    /* Which n: the first n read, i.e. for a reverse read the newest n; after
     * the swap above they sit at [0, n) in chronological order. */
    sm_sess_t *s = asker(q);
    xml_limits_t lim;
    xml_limits_default(&lim);
    lim.max_stanza_bytes = 4u * 1024 * 1024;
    lim.max_text = 4u * 1024 * 1024;
    for (size_t k = 0; s && k < n; k++)
        send_result(q, s, &q->hits[q->flip ? n - 1 - k : k], &lim);
    xml_node_t *fin = xml_elem_new(MAM_NS, "fin");
    if (complete)
        xml_attr_set(fin, "complete", "true");
    xml_node_t *set = xml_add_child(fin, NS_RSM, "set");
    if (n > 0) {
        xml_node_t *f = xml_add_child(set, NS_RSM, "first");
        xml_add_text(f, q->hits[0].key, strlen(q->hits[0].key));
        xml_node_t *l = xml_add_child(set, NS_RSM, "last");
        xml_add_text(l, q->hits[n - 1].key, strlen(q->hits[n - 1].key));
    } else {
        xml_node_t *c = xml_add_child(set, NS_RSM, "count");
        xml_add_text(c, "0", 1);
    }
    log_debug("sm: event=mam-query user=%s results=%zu complete=%d", q->req->user->bare, n, complete);
    sm_iq_reply(q->req, fin);
    mq_free(q);
}

static void mq_step(mq_t *q);

static int with_matches(const mq_t *q, const char *key, const char *val, size_t len)
{
    mam_rec_t r;
    if (!q->with_full)
        return 1;
    return mam_rec_parse(key, val, len, &r) == 0 && r.with_len == strlen(q->with_full) &&
           !memcmp(r.with, q->with_full, r.with_len);
}

static void mq_got_range(storage_res_t *res, void *arg)
{
    mq_t *q = arg;
    q->inflight = 0;
    if (res->status == 1) {
        q->error = "item-not-found";   /* after/before names no message */
        q->exhausted = 1;
    } else if (res->status < 0) {
        q->failed = 1;
        q->exhausted = 1;
    } else {
        for (size_t k = 0; k < res->nrecs && q->nhits <= q->max; k++)
            if (with_matches(q, res->recs[k].key, res->recs[k].val, res->recs[k].len))
                hit_add(q, res->recs[k].key, res->recs[k].val, res->recs[k].len);
        size_t asked = q->with_full ? FULL_CHUNK : q->max + 1;
        if (res->nrecs < asked || q->nhits > q->max) {
            q->exhausted = 1;
        } else {
            /* Filtering a full JID: read on from the last record seen. */
            char **bound = q->reverse ? &q->before : &q->after;
            free(*bound);
            *bound = xstrdup(res->recs[res->nrecs - 1].key);
        }
    }
    if (!q->in_step)
        mq_step(q);
}

static void mq_got_id(storage_res_t *res, void *arg)
{
    mq_t *q = arg;
    q->inflight = 0;
    if (res->status < 0) {
        q->failed = 1;
        q->exhausted = 1;
    } else if (res->status == 1) {
        q->error = "item-not-found";
        q->exhausted = 1;
    } else {
        hit_add(q, q->ids[q->next_id - 1], res->val, res->len);
        if (q->next_id >= q->nids)
            q->exhausted = 1;
    }
    if (!q->in_step)
        mq_step(q);
}

/* Submits reads until the page is full or the range ends; a callback that
 * runs at once (SQLite) returns here, a later one (PostgreSQL) calls again. */
static void mq_step(mq_t *q)
{
    q->in_step = 1;
    while (!q->inflight && !q->exhausted) {
        q->inflight = 1;
        if (q->ids) {
            const char *id = q->ids[q->next_id++];
            storage_get_async(sm_storage, q->req->user->bare, MAM_COLL, id, mq_got_id, q);
            continue;
        }
        storage_range_t r = {0};
        r.by_stamp = 1;
        r.reverse = q->reverse;
        r.after = q->after;
        r.before = q->before;
        r.since = q->since;
        r.until = q->until;
        r.limit = q->with_full ? FULL_CHUNK : q->max + 1;
        r.tag = q->with_bare;
        storage_range_async(sm_storage, q->req->user->bare, MAM_COLL, &r, mq_got_range, q);
    }
    q->in_step = 0;
    if (!q->inflight && q->exhausted)
        mq_finish(q);
}

static void run_query(sm_iq_t *req)
{
    mam_flush();
    mq_t *q = xcalloc(1, sizeof *q);
    const xml_node_t *p = req->payload;
    const char *err = NULL;
    if (xml_attr_get(p, "node"))
        err = "item-not-found";          /* a user's archive has no nodes */
    xml_node_t *x = xml_child(p, NS_XDATA, "x");
    if (!err && x)
        err = parse_form(q, x);
    if (!err)
        err = parse_rsm(q, xml_child(p, NS_RSM, "set"));
    if (err) {
        sm_iq_error(req, err, err_type(err));
        mq_free(q);
        return;
    }
    if (xml_attr_get(p, "queryid"))
        q->queryid = xstrdup(xml_attr_get(p, "queryid"));
    q->flip = xml_child(p, MAM_NS, "flip-page") != NULL;
    if (q->nids == 0) {
        free(q->ids);
        q->ids = NULL;
    }
    if (q->max == 0 && !q->ids)
        q->exhausted = 1;                /* <max>0</max>: only the <fin/> */
    q->req = sm_iq_defer(req);
    mq_step(q);
}

/* --- metadata (#extended) -------------------------------------------------------- */

typedef struct meta {
    sm_iq_t *req;
    xml_node_t *md;
    int second;
} meta_t;

static void meta_got(storage_res_t *res, void *arg);

static void meta_read(meta_t *m)
{
    storage_range_t r = {0};
    r.by_stamp = 1;
    r.reverse = m->second;
    r.limit = 1;
    storage_range_async(sm_storage, m->req->user->bare, MAM_COLL, &r, meta_got, m);
}

static void meta_got(storage_res_t *res, void *arg)
{
    meta_t *m = arg;
    mam_rec_t r;
    if (res->status < 0) {
        sm_iq_error(m->req, "internal-server-error", "wait");
        xml_free(m->md);
        free(m);
        return;
    }
    if (res->nrecs == 1 && mam_rec_parse(res->recs[0].key, res->recs[0].val, res->recs[0].len, &r) == 0) {
        xml_node_t *e = xml_add_child(m->md, MAM_NS, m->second ? "end" : "start");
        char stamp[48];
        mam_stamp_format(r.stamp, stamp, sizeof stamp);
        xml_attr_set(e, "id", r.id);
        xml_attr_set(e, "timestamp", stamp);
    }
    if (!m->second && res->nrecs == 1) {
        m->second = 1;
        meta_read(m);                    /* at most one level deep */
        return;
    }
    sm_iq_reply(m->req, m->md);
    free(m);
}

static void metadata(sm_iq_t *req)
{
    mam_flush();
    meta_t *m = xcalloc(1, sizeof *m);
    m->md = xml_elem_new(MAM_NS, "metadata");
    m->req = sm_iq_defer(req);
    meta_read(m);
}

/* --- dispatch ---------------------------------------------------------------- */

void mam_iq_get(sm_iq_t *req)
{
    const char *what = req->payload->name;
    if (!req->own)
        sm_iq_error(req, "service-unavailable", "cancel");
    else if (!strcmp(what, "query"))
        sm_iq_reply(req, query_form());
    else if (!strcmp(what, "prefs"))
        mam_prefs_get(req);
    else if (!strcmp(what, "metadata"))
        metadata(req);
    else
        sm_iq_error(req, "bad-request", "modify");
}

void mam_iq_set(sm_iq_t *req)
{
    const char *what = req->payload->name;
    if (!req->own)
        sm_iq_error(req, "service-unavailable", "cancel");
    else if (!strcmp(what, "query"))
        run_query(req);
    else if (!strcmp(what, "prefs"))
        mam_prefs_set(req);
    else
        sm_iq_error(req, "bad-request", "modify");
}
