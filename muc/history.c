/* history: a room's recent messages in a ring (cfg.history_len, at most
 * limits.history) for the discussion history sent on join (XEP-0045 7.2.14:
 * maxstanzas, maxchars, seconds, since), and MAM (XEP-0313) over the
 * archive persist.c writes. Both carry the same stanza ids (XEP-0359): the
 * archive key of a message is the id the room stamped on it. MAM's 'with'
 * takes an occupant's room JID (room/nick): the messages sent under that
 * nick, found by reading the archive a chunk at a time. */
#include "muc.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COLL_ARCHIVE "muc-archive"

void muc_hist_clear(muc_room_t *r)
{
    for (size_t i = 0; i < r->hist_n; i++) {
        muc_hist_t *h = &r->hist[(r->hist_head + i) % r->hist_cap];
        free(h->id);
        xml_free(h->msg);
    }
    free(r->hist);
    r->hist = NULL;
    r->hist_n = r->hist_head = r->hist_cap = 0;
}

void muc_hist_add(muc_room_t *r, const char *id, int64_t stamp_us, xml_node_t *msg)
{
    size_t cap = (size_t)r->cfg.history_len;
    if (cap == 0) {
        xml_free(msg);
        return;
    }
    if (cap != r->hist_cap) {                     /* first use, or the size changed */
        muc_hist_t *n = xcalloc(cap, sizeof *n);
        size_t keep = r->hist_n < cap ? r->hist_n : cap;
        size_t skip = r->hist_n - keep;
        for (size_t i = 0; i < r->hist_n; i++) {
            muc_hist_t *h = &r->hist[(r->hist_head + i) % r->hist_cap];
            if (i < skip) {
                free(h->id);
                xml_free(h->msg);
            } else {
                n[i - skip] = *h;
            }
        }
        free(r->hist);
        r->hist = n;
        r->hist_cap = cap;
        r->hist_head = 0;
        r->hist_n = keep;
    }
    /* The same message given again after a restart replaces its entry. */
    for (size_t i = 0; i < r->hist_n; i++) {
        muc_hist_t *h = &r->hist[(r->hist_head + i) % r->hist_cap];
        if (!strcmp(h->id, id)) {
            xml_free(h->msg);
            h->msg = msg;
            xml_attr_set(h->msg, "to", NULL);
            return;
        }
    }
    if (r->hist_n == r->hist_cap) {
        muc_hist_t *old = &r->hist[r->hist_head];
        free(old->id);
        xml_free(old->msg);
        r->hist_head = (r->hist_head + 1) % r->hist_cap;
        r->hist_n--;
    }
    muc_hist_t *h = &r->hist[(r->hist_head + r->hist_n) % r->hist_cap];
    h->id = xstrdup(id);
    h->stamp_us = stamp_us;
    h->msg = msg;
    xml_attr_set(h->msg, "to", NULL);
    r->hist_n++;
}

static long attr_long(const xml_node_t *el, const char *name, long def)
{
    const char *v = el ? xml_attr_get(el, name) : NULL;
    return v ? strtol(v, NULL, 10) : def;
}

static xml_node_t *delayed(muc_room_t *r, const muc_hist_t *h)
{
    xml_node_t *m = xml_copy(h->msg);
    char stamp[48];
    xml_node_t *d = xml_add_child(m, NS_DELAY, "delay");
    xml_attr_set(d, "stamp", muc_stamp(h->stamp_us, stamp, sizeof stamp));
    xml_attr_set(d, "from", r->jid);
    return m;
}

void muc_hist_send(muc_room_t *r, const char *to, const xml_node_t *hist)
{
    long maxstanzas = attr_long(hist, "maxstanzas", muc_config->history_default);
    long maxchars = attr_long(hist, "maxchars", -1);
    long seconds = attr_long(hist, "seconds", -1);
    int64_t since = hist && xml_attr_get(hist, "since") ? muc_stamp_parse(xml_attr_get(hist, "since")) : -1;
    int64_t now = storage_now_us();
    /* Walk back from the newest while every limit still holds. */
    size_t first = r->hist_n;
    long chars = 0;
    while (first > 0 && (long)(r->hist_n - first) < maxstanzas) {
        muc_hist_t *h = &r->hist[(r->hist_head + first - 1) % r->hist_cap];
        if (seconds >= 0 && now - h->stamp_us > (int64_t)seconds * 1000000)
            break;
        if (since >= 0 && h->stamp_us < since)
            break;
        if (maxchars >= 0) {
            size_t len;
            char *s = muc_serialize(h->msg, &len);
            free(s);
            if (chars + (long)len > maxchars)
                break;
            chars += (long)len;
        }
        first--;
    }
    for (size_t i = first; i < r->hist_n; i++) {
        xml_node_t *m = delayed(r, &r->hist[(r->hist_head + i) % r->hist_cap]);
        xml_attr_set(m, "to", to);
        muc_send_free(m);
    }
}

/* --- MAM ------------------------------------------------------------------ */

#define MAM_CHUNK 256      /* records read per step when filtering by occupant */

typedef struct mam_hit {
    char *key, *val;
    size_t len;
    int64_t stamp;
} mam_hit_t;

/* One query: read from the archive a range at a time until the page (and
 * one more, to know whether it is the last) is full or the range ends. With
 * 'with' every record is checked and the range read MAM_CHUNK at a time. */
typedef struct mam_q {
    xml_node_t *iq;
    char *room;
    char *queryid;
    char *with;        /* room/nick whose messages are wanted, or NULL: all */
    size_t max;
    int reverse;       /* a page before something: fetched newest first */
    int64_t since, until;
    char *after, *before;
    mam_hit_t *hits;   /* in read order (newest first when reverse) */
    size_t nhits;
    int inflight, in_step, exhausted, failed, not_found;
} mam_q_t;

static char *form_field(const xml_node_t *x, const char *var)
{
    for (xml_node_t *f = x ? xml_child(x, NS_XDATA, "field") : NULL; f;
         f = xml_next(f, NS_XDATA, "field")) {
        const char *v = xml_attr_get(f, "var");
        xml_node_t *val = xml_child(f, NS_XDATA, "value");
        if (v && !strcmp(v, var) && val)
            return xml_text(val);
    }
    return NULL;
}

static void mam_form(xml_node_t *iq)
{
    xml_node_t *res = muc_iq_result(iq);
    xml_node_t *q = xml_add_child(res, NS_MAM, "query");
    xml_node_t *x = xml_add_child(q, NS_XDATA, "x");
    xml_attr_set(x, "type", "form");
    static const char *const vars[][2] = {{"FORM_TYPE", "hidden"}, {"with", "jid-single"},
                                          {"start", "text-single"}, {"end", "text-single"},
                                          {"before-id", "text-single"}, {"after-id", "text-single"}};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        xml_node_t *f = xml_add_child(x, NS_XDATA, "field");
        xml_attr_set(f, "var", vars[i][0]);
        xml_attr_set(f, "type", vars[i][1]);
        if (i == 0)
            muc_child_text(f, NS_XDATA, "value", NS_MAM);
    }
    muc_send_free(res);
}

static void mam_free(mam_q_t *q)
{
    for (size_t i = 0; i < q->nhits; i++) {
        free(q->hits[i].key);
        free(q->hits[i].val);
    }
    free(q->hits);
    xml_free(q->iq);
    free(q->room);
    free(q->queryid);
    free(q->with);
    free(q->after);
    free(q->before);
    free(q);
}

static void mam_finish(mam_q_t *q)
{
    if (q->not_found) {
        muc_reply_error(q->iq, "item-not-found", "cancel", "no such archived message");
        mam_free(q);
        return;
    }
    if (q->failed) {
        muc_reply_error(q->iq, "internal-server-error", "wait", NULL);
        mam_free(q);
        return;
    }
    size_t n = q->nhits > q->max ? q->max : q->nhits;
    int complete = q->nhits <= q->max;
    const char *to = xml_attr_get(q->iq, "from");
    const char *first = NULL, *last = NULL;
    for (size_t k = 0; k < n; k++) {
        mam_hit_t *rec = &q->hits[q->reverse ? n - 1 - k : k];
        xml_node_t *msg = muc_parse(rec->val, rec->len);
        if (!msg)
            continue;
        if (!first)
            first = rec->key;
        last = rec->key;
        xml_node_t *m = xml_elem_new(NS_CLIENT, "message");
        xml_attr_set(m, "to", to);
        xml_attr_set(m, "from", q->room);
        xml_node_t *result = xml_add_child(m, NS_MAM, "result");
        if (q->queryid)
            xml_attr_set(result, "queryid", q->queryid);
        xml_attr_set(result, "id", rec->key);
        xml_node_t *fw = xml_add_child(result, NS_FORWARD, "forwarded");
        char stamp[48];
        xml_attr_set(xml_add_child(fw, NS_DELAY, "delay"), "stamp",
                     muc_stamp(rec->stamp, stamp, sizeof stamp));
        xml_append(fw, msg);
        muc_send_free(m);
    }
    xml_node_t *r = muc_iq_result(q->iq);
    xml_node_t *fin = xml_add_child(r, NS_MAM, "fin");
    if (complete)
        xml_attr_set(fin, "complete", "true");
    xml_node_t *set = xml_add_child(fin, NS_RSM, "set");
    if (first) {
        muc_child_text(set, NS_RSM, "first", first);
        muc_child_text(set, NS_RSM, "last", last);
    }
    muc_send_free(r);
    mam_free(q);
}

/* The archived message is from q->with (its 'from' is room/nick as the room
 * wrote it when it was broadcast). */
static int with_matches(const mam_q_t *q, const storage_rec_t *rec)
{
    if (!q->with)
        return 1;
    xml_node_t *m = muc_parse(rec->val, rec->len);
    int ok = m && xml_attr_get(m, "from") && !strcmp(xml_attr_get(m, "from"), q->with);
    xml_free(m);
    return ok;
}

static void mam_step(mam_q_t *q);

static void mam_got(storage_res_t *res, void *arg)
{
    mam_q_t *q = arg;
    q->inflight = 0;
    if (res->status == 1) {
        q->not_found = q->exhausted = 1;
    } else if (res->status < 0) {
        q->failed = q->exhausted = 1;
    } else {
        for (size_t k = 0; k < res->nrecs && q->nhits <= q->max; k++) {
            storage_rec_t *rec = &res->recs[k];
            if (!with_matches(q, rec))
                continue;
            q->hits = xrealloc(q->hits, (q->nhits + 1) * sizeof *q->hits);
            mam_hit_t *h = &q->hits[q->nhits++];
            h->key = xstrdup(rec->key);
            h->val = xmalloc(rec->len + 1);
            memcpy(h->val, rec->val, rec->len);
            h->val[rec->len] = 0;
            h->len = rec->len;
            h->stamp = rec->stamp;
        }
        size_t asked = q->with ? MAM_CHUNK : q->max + 1;
        if (res->nrecs < asked || q->nhits > q->max) {
            q->exhausted = 1;
        } else {
            char **bound = q->reverse ? &q->before : &q->after;   /* read on past the last seen */
            free(*bound);
            *bound = xstrdup(res->recs[res->nrecs - 1].key);
        }
    }
    if (!q->in_step)
        mam_step(q);
}

/* Submits reads until the page is full or the range ends; SQLite answers
 * inside the call (the loop here), PostgreSQL later (mam_got calls again). */
static void mam_step(mam_q_t *q)
{
    q->in_step = 1;
    while (!q->inflight && !q->exhausted) {
        q->inflight = 1;
        storage_range_t rq = {0};
        /* By stamp: the archive's one index scan on SQLite (a range by seq
         * sorts the room's index entries first: docs/storage.md). A room's
         * records are written in time order, so the order is the same. */
        rq.by_stamp = 1;
        rq.after = q->after && *q->after ? q->after : NULL;
        rq.before = q->before && *q->before ? q->before : NULL;
        rq.reverse = q->reverse;
        rq.since = q->since;
        rq.until = q->until;
        rq.limit = q->with ? MAM_CHUNK : q->max + 1;
        storage_range_async(muc_storage, q->room, COLL_ARCHIVE, &rq, mam_got, q);
    }
    q->in_step = 0;
    if (!q->inflight && q->exhausted)
        mam_finish(q);
}

/* XEP-0313 'with' on a room archive: an occupant's room JID (room/nick)
 * keeps that nick's messages; the room's own JID is no filter. *none: a JID
 * that no message of this room can be from. -1 for a malformed JID. */
static int parse_with(muc_room_t *r, const char *with, char **out, int *none)
{
    jid_t j;
    *out = NULL;
    *none = 0;
    if (!with || !*with)
        return 0;
    if (jid_parse(with, &j) != JID_OK)
        return -1;
    if (strcmp(j.bare, r->jid))
        *none = 1;
    else if (j.resource)
        *out = xstrdup(j.full);
    jid_clear(&j);
    return 0;
}

void muc_mam_iq(xml_node_t *iq, muc_room_t *r)
{
    const char *from = xml_attr_get(iq, "from");
    char *bare = jid_bare_of(from);
    int allowed = bare && (muc_occ_by_jid(r, from) || muc_aff_of(r, bare) >= AFF_MEMBER ||
                           (!r->cfg.members_only && muc_aff_of(r, bare) != AFF_OUTCAST));
    free(bare);
    if (!allowed) {
        muc_reply_error(iq, "forbidden", "auth", NULL);
        return;
    }
    if (!strcmp(xml_attr_get(iq, "type"), "get")) {
        mam_form(iq);
        return;
    }
    muc_metrics_mam_query();
    xml_node_t *qel = xml_child(iq, NS_MAM, "query");
    xml_node_t *x = xml_child(qel, NS_XDATA, "x");
    xml_node_t *set = xml_child(qel, NS_RSM, "set");
    char *start = form_field(x, "start"), *end = form_field(x, "end");
    char *with = form_field(x, "with");
    char *after_id = form_field(x, "after-id"), *before_id = form_field(x, "before-id");
    mam_q_t *q = xcalloc(1, sizeof *q);
    int bad = 0, none = 0;
    if (start && (q->since = muc_stamp_parse(start)) < 0)
        bad = 1;
    if (end && (q->until = muc_stamp_parse(end)) < 0)
        bad = 1;
    if (parse_with(r, with, &q->with, &none) < 0)
        bad = 1;
    q->max = (size_t)muc_config->mam_max;
    if (set) {
        xml_node_t *e;
        if ((e = xml_child(set, NS_RSM, "max"))) {
            char *maxs = xml_text(e);
            long m = strtol(maxs, NULL, 10);
            if (m >= 0 && m < (long)q->max)
                q->max = (size_t)m;
            free(maxs);
        }
        if ((e = xml_child(set, NS_RSM, "after")))
            q->after = xml_text(e);
        if ((e = xml_child(set, NS_RSM, "before"))) {
            q->before = xml_text(e);
            q->reverse = 1;                       /* <before/> alone: the last page */
        }
    }
    if (after_id && !q->after)
        q->after = xstrdup(after_id);
    if (before_id && !q->before)
        q->before = xstrdup(before_id);
    q->iq = xml_copy(iq);
    q->room = xstrdup(r->jid);
    const char *qid = xml_attr_get(qel, "queryid");
    q->queryid = qid ? xstrdup(qid) : NULL;
    if (bad) {
        muc_reply_error(iq, "bad-request", "modify", "bad start, end or with");
        mam_free(q);
    } else if (none) {
        q->exhausted = 1;                         /* nobody else speaks in this room */
        mam_finish(q);
    } else {
        mam_step(q);
    }
    free(start);
    free(end);
    free(with);
    free(after_id);
    free(before_id);
}
