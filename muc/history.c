/* history: a room's recent messages in a ring (cfg.history_len, at most
 * limits.history) for the discussion history sent on join (XEP-0045 7.2.14:
 * maxstanzas, maxchars, seconds, since), and MAM (XEP-0313) over the
 * archive persist.c writes. Both carry the same stanza ids (XEP-0359): the
 * archive key of a message is the id the room stamped on it. */
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

void muc_hist_add(muc_room_t *r, const char *id, int64_t stamp_us, const xml_node_t *msg)
{
    size_t cap = (size_t)r->cfg.history_len;
    if (cap == 0)
        return;
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
            h->msg = xml_copy(msg);
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
    h->msg = xml_copy(msg);
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

void muc_hist_send(muc_room_t *r, muc_occ_t *o, const xml_node_t *hist)
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
        xml_attr_set(m, "to", o->jid);
        muc_send_free(m);
    }
}

/* --- MAM ------------------------------------------------------------------ */

typedef struct mam_q {
    xml_node_t *iq;
    char *room;
    char *queryid;
    size_t max;
    int reverse;       /* a page before something: fetched newest first */
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
    xml_free(q->iq);
    free(q->room);
    free(q->queryid);
    free(q);
}

static void mam_done(storage_res_t *res, void *arg)
{
    mam_q_t *q = arg;
    if (res->status == 1) {
        muc_reply_error(q->iq, "item-not-found", "cancel", "no such archived message");
        mam_free(q);
        return;
    }
    if (res->status < 0) {
        muc_reply_error(q->iq, "internal-server-error", "wait", NULL);
        mam_free(q);
        return;
    }
    size_t n = res->nrecs > q->max ? q->max : res->nrecs;
    int complete = res->nrecs <= q->max;
    const char *to = xml_attr_get(q->iq, "from");
    const char *first = NULL, *last = NULL;
    for (size_t k = 0; k < n; k++) {
        storage_rec_t *rec = &res->recs[q->reverse ? n - 1 - k : k];
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
    xml_node_t *qel = xml_child(iq, NS_MAM, "query");
    xml_node_t *x = xml_child(qel, NS_XDATA, "x");
    xml_node_t *set = xml_child(qel, NS_RSM, "set");
    char *start = form_field(x, "start"), *end = form_field(x, "end");
    char *with = form_field(x, "with");
    char *after_id = form_field(x, "after-id"), *before_id = form_field(x, "before-id");
    storage_range_t rq = {0};
    int bad = 0;
    rq.by_stamp = 1;
    if (start && (rq.since = muc_stamp_parse(start)) < 0)
        bad = 1;
    if (end && (rq.until = muc_stamp_parse(end)) < 0)
        bad = 1;
    mam_q_t *q = xcalloc(1, sizeof *q);
    q->max = (size_t)muc_config->mam_max;
    char *after = NULL, *before = NULL, *maxs = NULL;
    if (set) {
        xml_node_t *e;
        if ((e = xml_child(set, NS_RSM, "max"))) {
            maxs = xml_text(e);
            long m = strtol(maxs, NULL, 10);
            if (m >= 0 && m < (long)q->max)
                q->max = (size_t)m;
        }
        if ((e = xml_child(set, NS_RSM, "after")))
            after = xml_text(e);
        if ((e = xml_child(set, NS_RSM, "before"))) {
            before = xml_text(e);
            q->reverse = 1;                       /* <before/> alone: the last page */
        }
    }
    if (after_id && !after)
        after = xstrdup(after_id);
    if (before_id && !before)
        before = xstrdup(before_id);
    if (with && *with) {
        /* A room archive by occupant: not offered (the form lists it for
         * clients that send it empty). */
        bad = 1;
    }
    if (bad) {
        muc_reply_error(iq, "bad-request", "modify", "bad start, end or with");
        free(q);
    } else {
        rq.by_stamp = 0;
        rq.after = after && *after ? after : NULL;
        rq.before = before && *before ? before : NULL;
        rq.reverse = q->reverse;
        rq.limit = q->max + 1;
        q->iq = xml_copy(iq);
        q->room = xstrdup(r->jid);
        const char *qid = xml_attr_get(qel, "queryid");
        q->queryid = qid ? xstrdup(qid) : NULL;
        storage_range_async(muc_storage, r->jid, COLL_ARCHIVE, &rq, mam_done, q);
    }
    free(start);
    free(end);
    free(with);
    free(after_id);
    free(before_id);
    free(after);
    free(before);
    free(maxs);
}
