/* mod_pep: the Personal Eventing Protocol (XEP-0163 on XEP-0060): every
 * account is a pubsub service its owner publishes to and its contacts read
 * and get notifications from.
 *
 * - Requests (pubsub and pubsub#owner namespaces, to the account's bare JID
 *   or with no 'to' from its own sessions): publish (auto-creating the node,
 *   with publish-options checked as preconditions, XEP-0060 7.1.5), retract,
 *   items (all, by id, the last N), create (with configure), owner
 *   configure get/set, default, delete, purge; subscriptions and
 *   affiliations (subscribe, unsubscribe, own and owner lists and changes)
 *   are pep_subs.c's. The owner writes (and a JID affiliated publisher,
 *   publish-only or owner of a node; publish-only retracts only its own
 *   items, each item remembering a non-owner publisher); readers are
 *   checked against their affiliation and the node's access model (open,
 *   presence, roster with its roster_groups_allowed, whitelist).
 * - Notifications: a headline message from the owner's bare JID to each
 *   full JID that announced +notify for the node in its XEP-0115 caps (caps.c
 *   learns them) and may read it: the owner's own resources and contacts with
 *   a 'from'/'both' subscription (checked at send time, so a contact whose
 *   subscription ends stops getting them at once). The last item goes to a
 *   contact's resource when its caps are first known (it came online) and
 *   when the owner approves its subscription (send_last_published_item).
 *   Explicit subscribers (pep_subs.c) get every notification at the JID they
 *   subscribed, caps or not, and no duplicate by caps.
 *   Remote contacts are reached over s2s like any stanza; their requests are
 *   answered by the same handlers.
 * - Limits (options): nodes per account, items per node, item size,
 *   notifications per second per user, resources tracked per user, the caps
 *   cache.
 *
 * Storage (asynchronous API, docs/storage.md): collection "pep-node", key =
 * node name, value = <node xmlns='urn:xmpp:weft:pep:1' .../> (its config,
 * affiliations and explicit subscriptions);
 * collection "pep-item", key = node "\n" item id, value = <i node=...
 * [by=...]> around the <item/> (by: a publisher other than the account). A
 * republished id is deleted and written again so that its sequence number
 * (the load order) makes it the newest. A user's nodes are
 * read when the user is loaded (the user is held meanwhile); a request that
 * arrives before the read completes is deferred until it does. A write's
 * answer leaves once every storage write of the request completed.
 * user_delete removes both collections. Per-user state: pep_user_t. */
#include "caps.h"
#include "comp_proto.h"
#include "mod_blocking.h"
#include "mod_pep.h"
#include "mod_roster.h"
#include "module.h"
#include "pep_internal.h"
#include "pubsub_node.h"
#include "log.h"
#include "xml_stream.h"
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COLL_NODES "pep-node"
#define COLL_ITEMS "pep-item"
#define NS_PEP_RECORD "urn:xmpp:weft:pep:1"

extern sm_module_t sm_module_pep;

static const pep_cfg_t *cfg(void)
{
    return sm_module_config(&sm_module_pep);
}

const pep_cfg_t *pep_cfg(void)
{
    return cfg();
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- per-user state ------------------------------------------------------------------ */

static void watcher_clear(watcher_t *w)
{
    free(w->jid);
    free(w->bare);
    free(w->ver);
    caps_notify_clear(&w->nt);
}

static void nodes_clear(pep_user_t *p)
{
    for (size_t i = 0; i < p->nnodes; i++)
        pn_node_free(p->nodes[i]);
    free(p->nodes);
    p->nodes = NULL;
    p->nnodes = 0;
}

static void user_state_free(sm_user_t *u, void *state)
{
    (void)u;
    pep_user_t *p = state;
    nodes_clear(p);
    for (size_t i = 0; i < p->nw; i++)
        watcher_clear(&p->w[i]);
    free(p->w);
    for (size_t i = 0; i < p->nwaiting; i++)
        sm_iq_error(p->waiting[i], "internal-server-error", "wait");
    free(p->waiting);
    free(p);
}

pn_node_t *pep_node_find(pep_user_t *p, const char *name)
{
    for (size_t i = 0; i < p->nnodes; i++)
        if (!strcmp(p->nodes[i]->name, name))
            return p->nodes[i];
    return NULL;
}

static void node_add(pep_user_t *p, pn_node_t *n)
{
    p->nodes = xrealloc(p->nodes, (p->nnodes + 1) * sizeof *p->nodes);
    p->nodes[p->nnodes++] = n;
}

static void node_drop(pep_user_t *p, pn_node_t *n)
{
    for (size_t i = 0; i < p->nnodes; i++) {
        if (p->nodes[i] == n) {
            memmove(&p->nodes[i], &p->nodes[i + 1], (p->nnodes - i - 1) * sizeof *p->nodes);
            p->nnodes--;
            pn_node_free(n);
            return;
        }
    }
}

/* --- loading ----------------------------------------------------------------------------- */

static void pep_iq_run(sm_iq_t *req, int deferred);
static void send_last(sm_user_t *u, pep_user_t *p, const watcher_t *w, int presence);

static xml_node_t *parse_record(const char *owner, const char *val, size_t len)
{
    xml_limits_t lim;
    xml_limits_default(&lim);
    lim.max_stanza_bytes = len + 1024;
    lim.max_text = len + 1;
    char err[128];
    unsigned line = 0;
    xml_node_t *r = xml_parse_document(val, len, &lim, err, sizeof err, &line);
    if (!r || strcmp(r->ns, NS_PEP_RECORD)) {
        log_warn("event=pep-load result=bad-record user=%s error=\"%s\"", owner, r ? "foreign element" : err);
        xml_free(r);
        return NULL;
    }
    return r;
}

static void got_items(storage_res_t *res, void *arg)
{
    sm_user_t *u = arg;
    pep_user_t *p = sm_user_state(u, &sm_module_pep);
    if (res->status < 0)
        log_warn("event=pep-load result=error user=%s what=items", u->bare);
    for (size_t i = 0; res->status == 0 && i < res->nrecs; i++) {
        xml_node_t *r = parse_record(u->bare, res->recs[i].val, res->recs[i].len);
        if (!r)
            continue;
        const char *node = xml_attr_get(r, "node");
        xml_node_t *item = xml_child(r, NS_PUBSUB, "item");
        pn_node_t *n = node ? pep_node_find(p, node) : NULL;
        const char *id = item ? xml_attr_get(item, "id") : NULL;
        if (n && id) {
            char *idc = xstrdup(id);
            xml_detach(item);
            pn_node_put(n, idc, item);
            pn_item_set_publisher(pn_node_find(n, idc), xml_attr_get(r, "by"));
            free(idc);
        }
        xml_free(r);
    }
    size_t limit = (size_t)cfg()->max_items;
    for (size_t i = 0; i < p->nnodes; i++)
        pn_node_trim(p->nodes[i], pn_config_keep(&p->nodes[i]->cfg, limit), NULL, NULL);
    p->loaded = 1;
    log_debug("event=pep-load user=%s nodes=%zu", u->bare, p->nnodes);
    /* Resources whose interests became known before the nodes were read
     * had their last items held back (watcher_seen, on_caps): they go now.
     * The core holds the user while user_load's reads run, so the stanza
     * that loads it waits for them and this finds none; it keeps the
     * delivery if a state is ever made outside user_load. */
    for (size_t i = 0; i < p->nw; i++)
        if (p->w[i].known)
            send_last(u, p, &p->w[i], 1);
    sm_iq_t **w = p->waiting;
    size_t nw = p->nwaiting;
    p->waiting = NULL;
    p->nwaiting = 0;
    for (size_t i = 0; i < nw; i++)
        pep_iq_run(w[i], 1);
    free(w);
    sm_user_release(u);
}

static void got_nodes(storage_res_t *res, void *arg)
{
    sm_user_t *u = arg;
    pep_user_t *p = sm_user_state(u, &sm_module_pep);
    if (res->status < 0)
        log_warn("event=pep-load result=error user=%s what=nodes", u->bare);
    for (size_t i = 0; res->status == 0 && i < res->nrecs; i++) {
        xml_node_t *r = parse_record(u->bare, res->recs[i].val, res->recs[i].len);
        pn_node_t *n = r ? pn_node_from_record(r) : NULL;
        if (n && !pep_node_find(p, n->name))
            node_add(p, n);
        else
            pn_node_free(n);
        xml_free(r);
    }
    storage_list_async(sm_storage, u->bare, COLL_ITEMS, got_items, u);
}

/* The user's state, created (and its nodes' read started) on first use. */
static pep_user_t *state(sm_user_t *u)
{
    pep_user_t *p = sm_user_state(u, &sm_module_pep);
    if (p)
        return p;
    p = xcalloc(1, sizeof *p);
    p->tokens = (double)cfg()->notify_rate;
    p->stamp = now_s();
    sm_user_state_set(u, &sm_module_pep, p);
    sm_user_hold(u);
    storage_list_async(sm_storage, u->bare, COLL_NODES, got_nodes, u);
    return p;
}

static void on_user_load(sm_user_t *u)
{
    state(u);
}

/* --- writes ------------------------------------------------------------------------------- */

pep_op_t *pep_op_begin(sm_iq_t *req, int deferred)
{
    pep_op_t *o = xcalloc(1, sizeof *o);
    o->req = deferred ? req : sm_iq_defer(req);
    o->pending = 1;
    return o;
}

pep_op_t *pep_op_new(void)
{
    pep_op_t *o = xcalloc(1, sizeof *o);
    o->pending = 1;
    return o;
}

static void batch_cb(int ok, void *arg)
{
    pep_op_t *o = arg;
    if (!ok)
        o->failed = 1;
    pep_op_done(o);
}

/* The writes an op made go to storage as one transaction when its
 * submitting phase ends: a publish that replaces or trims an item, or
 * creates its node, wrote two or three rows, each its own commit (on SQLite
 * a WAL write and a lock each: about a fifth of weft-sm's time in a PEP
 * round to 200 contacts). */
static sm_batch_t *op_batch(pep_op_t *o)
{
    if (!o->batch)
        o->batch = sm_batch_new();
    return o->batch;
}

void pep_op_done(pep_op_t *o)
{
    if (o->batch) {
        sm_batch_t *b = o->batch;
        o->batch = NULL;
        o->pending++;                 /* answered once the transaction is done */
        sm_batch_commit(b, batch_cb, o);
    }
    if (--o->pending)
        return;
    if (!o->req) {                    /* a write on the user's behalf (mod_pep.h) */
        if (o->failed)
            log_warn("event=pep-write result=error");
        xml_free(o->reply);
    } else if (o->failed) {
        xml_free(o->reply);
        sm_iq_error(o->req, "internal-server-error", "wait");
    } else {
        sm_iq_reply(o->req, o->reply);
        if (o->after)
            sm_send(o->after);
    }
    xml_free(o->after);
    free(o);
}

static char *item_key(const char *node, const char *id)
{
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_printf(&sb, "%s\n%s", node, id);
    return sb.data;
}

void pep_op_put_node(pep_op_t *o, const char *owner, const pn_node_t *n)
{
    xml_node_t *r = pn_node_record(n);
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(r, "", &sb);
    xml_free(r);
    sm_batch_put(op_batch(o), owner, COLL_NODES, n->name, sb.data, sb.len);
    strbuf_free(&sb);
}

static void op_put_item(pep_op_t *o, const char *owner, const char *node, const pn_item_t *it)
{
    xml_node_t *r = xml_elem_new(NS_PEP_RECORD, "i");
    xml_attr_set(r, "node", node);
    if (it->publisher)
        xml_attr_set(r, "by", it->publisher);
    xml_append(r, xml_copy(it->item));
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(r, "", &sb);
    xml_free(r);
    char *key = item_key(node, it->id);
    sm_batch_put(op_batch(o), owner, COLL_ITEMS, key, sb.data, sb.len);
    free(key);
    strbuf_free(&sb);
}

static void op_del(pep_op_t *o, const char *owner, const char *coll, const char *key)
{
    sm_batch_del(op_batch(o), owner, coll, key);
}

static void op_del_item(pep_op_t *o, const char *owner, const char *node, const char *id)
{
    char *key = item_key(node, id);
    op_del(o, owner, COLL_ITEMS, key);
    free(key);
}

typedef struct trim_ctx {
    pep_op_t *o;
    const char *owner, *node;
    int persist;
} trim_ctx_t;

static void trim_cb(const char *id, void *arg)
{
    trim_ctx_t *t = arg;
    if (t->persist)
        op_del_item(t->o, t->owner, t->node, id);
}

/* --- observers (mod_pep.h) ---------------------------------------------------------------- */

#define OBSERVERS_MAX 16
static struct {
    const char *node;
    pep_observer_fn fn;
} observers[OBSERVERS_MAX];
static size_t nobservers;

void pep_observe(const char *node, pep_observer_fn fn)
{
    if (nobservers == OBSERVERS_MAX)
        log_panic("event=pep-observe reason=too-many node=%s", node);
    observers[nobservers].node = node;
    observers[nobservers].fn = fn;
    nobservers++;
}

static void observe(sm_user_t *u, const char *node, const char *id, const xml_node_t *item)
{
    for (size_t i = 0; i < nobservers; i++)
        if (!strcmp(observers[i].node, node))
            observers[i].fn(u, node, id, item);
}

/* --- access ---------------------------------------------------------------------------------- */

/* 1 if contact is in one of the roster groups n allows (XEP-0060 4.5:
 * the roster model). No group named: nobody (docs/pep.md). */
static int in_allowed_group(sm_user_t *u, const pn_node_t *n, const char *contact)
{
    for (size_t i = 0; i < n->cfg.ngroups; i++)
        if (sm_roster_in_group(u, contact, n->cfg.groups[i]))
            return 1;
    return 0;
}

/* 1 if from (bare JID) may read node n of u. */
int pep_may_read(sm_user_t *u, const pn_node_t *n, const char *from)
{
    if (from && !strcmp(from, u->bare))
        return 1;
    if (!from || sm_blocking_blocks(u, from))
        return 0;
    int aff = pn_jidmap_get(&n->affs, from);
    if (aff == PN_AFF_OUTCAST || aff == PN_AFF_PUBLISH_ONLY)     /* XEP-0060 4.1: neither retrieves */
        return 0;
    if (aff == PN_AFF_OWNER || aff == PN_AFF_PUBLISHER || aff == PN_AFF_MEMBER)
        return 1;
    int sub = sm_roster_sub(u, from);
    switch (n->cfg.access) {
    case PN_OPEN:
        return 1;
    case PN_PRESENCE:
        return sub >= 0 && (sub & SM_SUB_FROM);
    case PN_ROSTER:
        return sub >= 0 && in_allowed_group(u, n, from);
    case PN_WHITELIST:
        return 0;
    }
    return 0;
}

/* 1 if from gets notifications of n by its caps (implicit, XEP-0163): the
 * owner, or a contact with a 'from' subscription that may read n. */
static int may_notify(sm_user_t *u, const pn_node_t *n, const char *from)
{
    if (!strcmp(from, u->bare))
        return 1;
    int sub = sm_roster_sub(u, from);
    return sub >= 0 && (sub & SM_SUB_FROM) && pep_may_read(u, n, from);
}

void pep_perr(sm_iq_t *req, const char *cond, const char *type, const char *app)
{
    sm_iq_error_app(req, cond, type, app ? xml_elem_new(NS_PUBSUB_ERRORS, app) : NULL);
}

void pep_deny(sm_iq_t *req, const pn_node_t *n)
{
    int aff = req->from_bare ? pn_jidmap_get(&n->affs, req->from_bare) : -1;
    if (aff == PN_AFF_OUTCAST || aff == PN_AFF_PUBLISH_ONLY) {
        sm_iq_error(req, "forbidden", "auth");           /* XEP-0060 6.1.3.8: blocked; 4.1 */
        return;
    }
    switch (n->cfg.access) {
    case PN_PRESENCE:
        pep_perr(req, "not-authorized", "auth", "presence-subscription-required");
        break;
    case PN_ROSTER:
        pep_perr(req, "not-authorized", "auth", "not-in-roster-group");
        break;
    default:
        pep_perr(req, "not-allowed", "cancel", "closed-node");
        break;
    }
}

/* --- notifications ----------------------------------------------------------------------------- */

static int wants(sm_user_t *u, const watcher_t *w, const pn_node_t *n)
{
    return w->known && caps_notify_has(&w->nt, n->name) && may_notify(u, n, w->bare);
}

static xml_node_t *event_message(sm_user_t *u, xml_node_t **event)
{
    xml_node_t *m = xml_elem_new(NS_CLIENT, "message");
    xml_attr_set(m, "type", "headline");
    xml_attr_set(m, "from", u->bare);
    char id[24];
    comp_proto_random_hex(id, 8);
    xml_attr_set(m, "id", id);
    *event = xml_add_child(m, NS_PUBSUB_EVENT, "event");
    return m;
}

/* An <item/> of the node in the event namespace. */
static xml_node_t *event_item(const pn_item_t *it)
{
    xml_node_t *c = xml_copy(it->item);
    xml_rename_ns(c, NS_PUBSUB, NS_PUBSUB_EVENT);
    return c;
}

/* 1 if watcher w gets n's notifications by its caps: it wants them and no
 * explicit subscription already brings them (no duplicates). */
static int by_caps(sm_user_t *u, const watcher_t *w, const pn_node_t *n)
{
    return wants(u, w, n) && !pep_subs_covers(n, w->jid, w->bare);
}

/* The watchers audience() found for a publish, kept for its fan_out: each
 * check asks the roster (and the caps) once per watcher, and a publish to
 * 1,000 contacts asked twice. Valid only for the publish that made it. */
static struct {
    const pep_user_t *p;
    const pn_node_t *n;
    size_t *idx, len, cap;
} picked;

/* Sends m to every watcher that wants node n and to every explicit
 * subscriber still allowed to read it; returns how many. use_picked: the
 * publish just counted them with audience(). */
static size_t fan_out(sm_user_t *u, pep_user_t *p, const pn_node_t *n, xml_node_t *m, int use_picked)
{
    static const char **to;
    static size_t cap;
    size_t sent = 0, most = p->nw + n->subs.n;
    if (most > cap) {
        cap = most;
        to = xrealloc(to, cap * sizeof *to);
    }
    if (use_picked && picked.p == p && picked.n == n) {
        for (size_t k = 0; k < picked.len; k++)
            to[sent++] = p->w[picked.idx[k]].jid;
    } else {
        for (size_t i = 0; i < p->nw; i++)
            if (by_caps(u, &p->w[i], n))
                to[sent++] = p->w[i].jid;
    }
    picked.p = NULL;
    picked.n = NULL;
    for (size_t i = 0; i < n->subs.n; i++)
        if (pep_subs_allowed(u, n, n->subs.e[i].jid))
            to[sent++] = n->subs.e[i].jid;
    sm_send_each(m, to, sent);   /* one queued copy for the local ones */
    return sent;
}

static size_t audience(sm_user_t *u, pep_user_t *p, const pn_node_t *n)
{
    picked.len = 0;
    for (size_t i = 0; i < p->nw; i++) {
        if (!by_caps(u, &p->w[i], n))
            continue;
        if (picked.len == picked.cap) {
            picked.cap = picked.cap ? 2 * picked.cap : 64;
            picked.idx = xrealloc(picked.idx, picked.cap * sizeof *picked.idx);
        }
        picked.idx[picked.len++] = i;
    }
    picked.p = p;
    picked.n = n;
    return picked.len + n->subs.n;
}

/* Takes n notifications from the user's budget: 0 when it is spent (the
 * request is refused), else 1. The budget may go below zero by one
 * publish's audience, so any single publish goes through. */
static int budget_take(pep_user_t *p, size_t n)
{
    double rate = (double)cfg()->notify_rate, t = now_s();
    p->tokens += (t - p->stamp) * rate;
    if (p->tokens > rate)
        p->tokens = rate;
    p->stamp = t;
    if (n && p->tokens <= 0)
        return 0;
    p->tokens -= (double)n;
    return 1;
}

static void notify_item(sm_user_t *u, pep_user_t *p, const pn_node_t *n, const pn_item_t *it, int use_picked)
{
    xml_node_t *ev, *m = event_message(u, &ev);
    xml_node_t *items = xml_add_child(ev, NS_PUBSUB_EVENT, "items");
    xml_attr_set(items, "node", n->name);
    xml_append(items, event_item(it));
    size_t k = fan_out(u, p, n, m, use_picked);
    log_debug("event=pep-publish user=%s node=%s notified=%zu", u->bare, n->name, k);
    xml_free(m);
}

static void notify_retract(sm_user_t *u, pep_user_t *p, const pn_node_t *n, const char *id)
{
    xml_node_t *ev, *m = event_message(u, &ev);
    xml_node_t *items = xml_add_child(ev, NS_PUBSUB_EVENT, "items");
    xml_attr_set(items, "node", n->name);
    xml_attr_set(xml_add_child(items, NS_PUBSUB_EVENT, "retract"), "id", id);
    fan_out(u, p, n, m, 0);
    xml_free(m);
}

static void notify_node(sm_user_t *u, pep_user_t *p, const pn_node_t *n, const char *what)
{
    xml_node_t *ev, *m = event_message(u, &ev);
    xml_attr_set(xml_add_child(ev, NS_PUBSUB_EVENT, what), "node", n->name);
    fan_out(u, p, n, m, 0);
    xml_free(m);
}

xml_node_t *pep_last_item_message(sm_user_t *u, const pn_node_t *n, const char *to)
{
    const pn_item_t *it = n->nitems ? &n->items[n->nitems - 1] : NULL;
    if (!it || n->cfg.slpi == PN_SLPI_NEVER)
        return NULL;
    xml_node_t *ev, *m = event_message(u, &ev);
    xml_node_t *items = xml_add_child(ev, NS_PUBSUB_EVENT, "items");
    xml_attr_set(items, "node", n->name);
    xml_append(items, event_item(it));
    xml_attr_set(m, "to", to);
    return m;
}

/* The last item of each node w wants, to w (a resource came online:
 * presence = 1, or its subscription was approved: presence = 0). */
static void send_last(sm_user_t *u, pep_user_t *p, const watcher_t *w, int presence)
{
    for (size_t i = 0; i < p->nnodes; i++) {
        pn_node_t *n = p->nodes[i];
        if ((presence && n->cfg.slpi != PN_SLPI_ON_SUB_AND_PRESENCE) || !wants(u, w, n))
            continue;
        xml_node_t *m = pep_last_item_message(u, n, w->jid);
        if (m)
            sm_send(m);
        xml_free(m);
    }
}

/* --- watchers (who is online with which interests) ------------------------------------------------ */

static watcher_t *watcher_find(pep_user_t *p, const char *jid)
{
    for (size_t i = 0; i < p->nw; i++)
        if (!strcmp(p->w[i].jid, jid))
            return &p->w[i];
    return NULL;
}

/* Forgets jid (a bare JID: every resource of it). */
static void watcher_drop(pep_user_t *p, const char *jid)
{
    int bare = strchr(jid, '/') == NULL;
    size_t k = 0;
    for (size_t i = 0; i < p->nw; i++) {
        watcher_t *w = &p->w[i];
        if (bare ? !strcmp(w->bare, jid) : !strcmp(w->jid, jid))
            watcher_clear(w);
        else
            p->w[k++] = *w;
    }
    p->nw = k;
}

/* A presence of jid (full) with caps ver reached u (or u's own resource
 * sent one). New interests are looked up in the cache or asked for. */
static void watcher_seen(sm_user_t *u, pep_user_t *p, const char *jid, const char *bare, const char *ver,
                         const char *node, const char *hash)
{
    watcher_t *w = watcher_find(p, jid);
    if (w && !strcmp(w->ver, ver))
        return;                       /* a presence update: nothing new */
    if (!w) {
        if (p->nw >= (size_t)cfg()->max_watchers) {
            log_info("event=pep-watcher result=refused reason=max-watchers user=%s jid=%s", u->bare, jid);
            return;
        }
        p->w = xrealloc(p->w, (p->nw + 1) * sizeof *p->w);
        w = &p->w[p->nw++];
        memset(w, 0, sizeof *w);
        w->jid = xstrdup(jid);
        w->bare = xstrdup(bare);
    }
    free(w->ver);
    w->ver = xstrdup(ver);
    caps_notify_clear(&w->nt);
    w->known = 0;
    int sub = strcmp(bare, u->bare) ? sm_roster_sub(u, bare) : SM_SUB_BOTH;
    w->had_from = sub >= 0 && (sub & SM_SUB_FROM);
    caps_set_max((size_t)cfg()->caps_cache);
    const caps_notify_t *nt = caps_lookup(ver);
    if (nt) {
        caps_notify_copy(&w->nt, nt);
        w->known = 1;
        if (p->loaded)
            send_last(u, p, w, 1);
    } else {
        caps_request(u->bare, jid, node, ver, hash);
    }
}

/* caps.c learnt what jid wants: the last items it may have missed. */
static void on_caps(const char *owner, const char *jid, const caps_notify_t *nt)
{
    sm_user_t *u = sm_user_get(owner);
    pep_user_t *p = u ? sm_user_state(u, &sm_module_pep) : NULL;
    watcher_t *w = p ? watcher_find(p, jid) : NULL;
    if (!w)
        return;
    caps_notify_clear(&w->nt);
    caps_notify_copy(&w->nt, nt);
    w->known = 1;
    if (p->loaded)
        send_last(u, p, w, 1);
}

static sm_ret_t on_presence_in(sm_user_t *u, sm_sess_t *to, xml_node_t *st)
{
    (void)to;
    const char *from = xml_attr_get(st, "from"), *type = xml_attr_get(st, "type");
    if (!from)
        return SM_PASS;
    pep_user_t *p = state(u);
    if (sm_streq(type, "unavailable") || sm_streq(type, "error")) {
        watcher_drop(p, from);
        return SM_PASS;
    }
    const char *ver, *node, *hash;
    if (type || !strchr(from, '/') || caps_of(st, &ver, &node, &hash) < 0)
        return SM_PASS;
    char *bare = jid_bare_of(from);
    if (bare && strcmp(bare, u->bare) && sm_roster_sub(u, bare) >= 0)
        watcher_seen(u, p, from, bare, ver, node, hash);
    free(bare);
    return SM_PASS;
}

static sm_ret_t on_presence_out(sm_sess_t *s, xml_node_t *st)
{
    if (xml_attr_get(st, "to"))
        return SM_PASS;
    const char *type = xml_attr_get(st, "type");
    pep_user_t *p = state(s->user);
    const char *ver, *node, *hash;
    if (sm_streq(type, "unavailable"))
        watcher_drop(p, s->jid.full);
    else if (!type && caps_of(st, &ver, &node, &hash) == 0)
        watcher_seen(s->user, p, s->jid.full, s->user->bare, ver, node, hash);
    return SM_PASS;
}

static void on_sess_end(sm_sess_t *s, xml_node_t *unavailable)
{
    (void)unavailable;
    pep_user_t *p = sm_user_state(s->user, &sm_module_pep);
    if (p)
        watcher_drop(p, s->jid.full);
}

static sm_ret_t on_iq_in(sm_user_t *u, sm_sess_t *to, xml_node_t *iq)
{
    const char *type = xml_attr_get(iq, "type");
    if (to || !(sm_streq(type, "result") || sm_streq(type, "error")))
        return SM_PASS;
    return caps_iq_result(u->bare, iq) ? SM_HANDLED : SM_PASS;
}

/* A contact's subscription changed: an approval ('from' gained) sends it
 * the last items; a removal forgets its resources; explicit subscriptions
 * its new state no longer allows (presence and roster nodes) end. */
static void on_roster_change(sm_user_t *u, const char *contact, int sub)
{
    pep_user_t *p = sm_user_state(u, &sm_module_pep);
    if (!p)
        return;
    if (p->loaded)
        pep_subs_prune(u, p, contact);
    if (sub < 0) {
        watcher_drop(p, contact);
        return;
    }
    int from = (sub & SM_SUB_FROM) != 0;
    for (size_t i = 0; i < p->nw; i++) {
        watcher_t *w = &p->w[i];
        if (strcmp(w->bare, contact))
            continue;
        if (from && !w->had_from && p->loaded)
            send_last(u, p, w, 0);
        w->had_from = from;
    }
}

static void deleted(storage_res_t *res, void *arg)
{
    char *bare = arg;
    if (res->status < 0)
        log_warn("event=pep-delete result=error user=%s", bare);
    free(bare);
}

static void on_user_delete(sm_user_t *u)
{
    pep_user_t *p = sm_user_state(u, &sm_module_pep);
    if (p)
        nodes_clear(p);
    storage_del_all_async(sm_storage, u->bare, COLL_NODES, deleted, xstrdup(u->bare));
    storage_del_all_async(sm_storage, u->bare, COLL_ITEMS, deleted, xstrdup(u->bare));
}

static void on_disco_account(sm_user_t *u, xml_node_t *query)
{
    (void)u;
    xml_node_t *id = xml_add_child(query, "http://jabber.org/protocol/disco#info", "identity");
    xml_attr_set(id, "category", "pubsub");
    xml_attr_set(id, "type", "pep");
}

/* --- requests ---------------------------------------------------------------------------------- */

const char *pep_node_of(sm_iq_t *req, const xml_node_t *el)
{
    const char *n = xml_attr_get(el, "node");
    if (!n || !*n) {
        pep_perr(req, "bad-request", "modify", "nodeid-required");
        return NULL;
    }
    return n;
}

static int count_elems(const xml_node_t *el)
{
    int k = 0;
    for (xml_node_t *c = xml_child(el, NULL, NULL); c; c = xml_next(c, NULL, NULL))
        k++;
    return k;
}

static const xml_node_t *submitted_form(const xml_node_t *parent)
{
    xml_node_t *x = parent ? xml_child(parent, NS_DATA, "x") : NULL;
    return x && !sm_streq(xml_attr_get(x, "type"), "cancel") ? x : NULL;
}

static void do_publish(sm_iq_t *req, int deferred, sm_user_t *u, pep_user_t *p, xml_node_t *pub)
{
    const pep_cfg_t *c = cfg();
    size_t limit = (size_t)c->max_items;
    const char *name = pep_node_of(req, pub);
    if (!name)
        return;
    xml_node_t *item = xml_child(pub, NS_PUBSUB, "item");
    if (!item) {
        pep_perr(req, "bad-request", "modify", "item-required");
        return;
    }
    if (xml_next(item, NS_PUBSUB, "item") || count_elems(item) > 1) {
        pep_perr(req, "bad-request", "modify", "invalid-payload");
        return;
    }
    if (count_elems(item) == 0) {
        pep_perr(req, "bad-request", "modify", "payload-required");
        return;
    }
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(item, "", &sb);
    size_t size = sb.len;
    strbuf_free(&sb);
    if (size > c->max_item_size) {
        log_info("event=pep-publish result=refused reason=item-size user=%s node=%s bytes=%zu", u->bare, name, size);
        pep_perr(req, "not-acceptable", "modify", "payload-too-big");
        return;
    }
    const xml_node_t *opts = submitted_form(xml_child(req->payload, NS_PUBSUB, "publish-options"));
    const char *bad = NULL;
    pn_node_t *n = pep_node_find(p, name);
    /* XEP-0060 4.1: publish-only may not replace (so remove) an item it did
     * not publish, any more than it may retract one. */
    const pn_item_t *old = n && xml_attr_get(item, "id") ? pn_node_find(n, xml_attr_get(item, "id")) : NULL;
    if (old && !req->own && req->from_bare && pn_jidmap_get(&n->affs, req->from_bare) == PN_AFF_PUBLISH_ONLY &&
        (!old->publisher || strcmp(old->publisher, req->from_bare))) {
        log_info("event=pep-publish result=refused reason=not-its-item user=%s node=%s jid=%s", u->bare, name,
                 req->from_bare);
        sm_iq_error(req, "forbidden", "auth");
        return;
    }
    pn_config_t nc;
    pn_config_default(&nc);
    if (n && opts && !pn_config_matches(&n->cfg, opts, limit, &bad)) {
        log_info("event=pep-publish result=precondition-not-met user=%s node=%s field=%s", u->bare, name, bad);
        pep_perr(req, "conflict", "cancel", "precondition-not-met");
        return;
    }
    if (!n && opts && pn_config_apply(&nc, opts, limit, &bad) < 0) {
        pn_config_clear(&nc);
        pep_perr(req, "conflict", "cancel", "precondition-not-met");
        return;
    }
    if (!n && p->nnodes >= (size_t)c->max_nodes) {
        pn_config_clear(&nc);
        log_info("event=pep-publish result=refused reason=max-nodes user=%s node=%s", u->bare, name);
        pep_perr(req, "not-allowed", "cancel", "max-nodes-exceeded");
        return;
    }
    pn_node_t probe = {0};
    probe.name = (char *)name;
    probe.cfg = nc;
    if (!budget_take(p, audience(u, p, n ? n : &probe))) {
        pn_config_clear(&nc);
        log_info("event=pep-publish result=refused reason=notify-rate user=%s node=%s", u->bare, name);
        sm_iq_error(req, "resource-constraint", "wait");
        return;
    }
    const char *given = xml_attr_get(item, "id");
    char idbuf[40];
    if (!given || !*given) {
        comp_proto_random_hex(idbuf, 8);
        given = idbuf;
    }
    char *id = xstrdup(given);
    xml_node_t *copy = xml_copy(item);
    xml_attr_set(copy, "id", id);
    char *nname = xstrdup(name);
    char *by = !req->own && req->from_bare && strcmp(req->from_bare, u->bare) ? xstrdup(req->from_bare) : NULL;

    pep_op_t *o = pep_op_begin(req, deferred);         /* req, pub, item are spent from here */
    if (!n) {
        n = pn_node_new(nname, &nc);
        node_add(p, n);
        pep_op_put_node(o, u->bare, n);
    }
    pn_config_clear(&nc);
    int existed = pn_node_find(n, id) != NULL;
    pn_node_put(n, id, copy);
    pn_item_set_publisher(pn_node_find(n, id), by);
    free(by);
    trim_ctx_t t = {o, u->bare, n->name, n->cfg.persist};
    pn_node_trim(n, pn_config_keep(&n->cfg, limit), trim_cb, &t);
    pn_item_t *it = pn_node_find(n, id);
    if (n->cfg.persist && it) {
        if (existed)
            op_del_item(o, u->bare, n->name, id);
        op_put_item(o, u->bare, n->name, it);
    }
    if (it)
        notify_item(u, p, n, it, 1);   /* the watchers budget_take counted (an existing node's) */
    xml_node_t *r = xml_elem_new(NS_PUBSUB, "pubsub");
    xml_node_t *pe = xml_add_child(r, NS_PUBSUB, "publish");
    xml_attr_set(pe, "node", nname);
    xml_attr_set(xml_add_child(pe, NS_PUBSUB, "item"), "id", id);
    o->reply = r;
    xml_node_t *seen = it ? xml_copy(it->item) : NULL;
    if (seen)
        observe(u, nname, id, seen);
    xml_free(seen);
    free(id);
    free(nname);
    pep_op_done(o);
}

static void do_items(sm_iq_t *req, sm_user_t *u, pep_user_t *p, xml_node_t *items)
{
    const char *name = pep_node_of(req, items);
    if (!name)
        return;
    pn_node_t *n = pep_node_find(p, name);
    if (!n) {
        sm_iq_error(req, "item-not-found", "cancel");
        return;
    }
    if (!req->own && !pep_may_read(u, n, req->from_bare)) {
        pep_deny(req, n);
        return;
    }
    xml_node_t *r = xml_elem_new(NS_PUBSUB, "pubsub");
    xml_node_t *ri = xml_add_child(r, NS_PUBSUB, "items");
    xml_attr_set(ri, "node", name);
    if (xml_child(items, NS_PUBSUB, "item")) {
        for (xml_node_t *c = xml_child(items, NS_PUBSUB, "item"); c; c = xml_next(c, NS_PUBSUB, "item")) {
            const char *id = xml_attr_get(c, "id");
            pn_item_t *it = id ? pn_node_find(n, id) : NULL;
            if (it)
                xml_append(ri, xml_copy(it->item));
        }
    } else {
        size_t from = 0;
        const char *mx = xml_attr_get(items, "max_items");
        if (mx) {
            char *end = NULL;
            long k = strtol(mx, &end, 10);
            if (!*mx || *end || k < 0) {
                xml_free(r);
                sm_iq_error(req, "bad-request", "modify");
                return;
            }
            if ((size_t)k < n->nitems)
                from = n->nitems - (size_t)k;
        }
        for (size_t i = from; i < n->nitems; i++)
            xml_append(ri, xml_copy(n->items[i].item));
    }
    sm_iq_reply(req, r);
}

static int is_true(const char *v)
{
    return sm_streq(v, "1") || sm_streq(v, "true");
}

static void do_retract(sm_iq_t *req, int deferred, sm_user_t *u, pep_user_t *p, xml_node_t *re)
{
    const char *name = pep_node_of(req, re);
    if (!name)
        return;
    xml_node_t *item = xml_child(re, NS_PUBSUB, "item");
    const char *id = item ? xml_attr_get(item, "id") : NULL;
    if (!id) {
        pep_perr(req, "bad-request", "modify", "item-required");
        return;
    }
    pn_node_t *n = pep_node_find(p, name);
    pn_item_t *it = n ? pn_node_find(n, id) : NULL;
    if (!it) {
        sm_iq_error(req, "item-not-found", "cancel");
        return;
    }
    /* XEP-0060 4.1: publish-only retracts only what it published. */
    if (!req->own && req->from_bare && pn_jidmap_get(&n->affs, req->from_bare) == PN_AFF_PUBLISH_ONLY &&
        (!it->publisher || strcmp(it->publisher, req->from_bare))) {
        log_info("event=pep-retract result=refused reason=not-its-item user=%s node=%s jid=%s", u->bare, name,
                 req->from_bare);
        sm_iq_error(req, "forbidden", "auth");
        return;
    }
    int notify = is_true(xml_attr_get(re, "notify")) || n->cfg.notify_retract;
    char *idc = xstrdup(id);
    pep_op_t *o = pep_op_begin(req, deferred);
    pn_node_remove(n, idc);
    if (n->cfg.persist)
        op_del_item(o, u->bare, n->name, idc);
    if (notify)
        notify_retract(u, p, n, idc);
    observe(u, n->name, idc, NULL);
    free(idc);
    pep_op_done(o);
}

static void do_create(sm_iq_t *req, int deferred, sm_user_t *u, pep_user_t *p, xml_node_t *cr)
{
    const char *name = xml_attr_get(cr, "node");
    if (!name || !*name) {
        pep_perr(req, "not-acceptable", "modify", "nodeid-required");
        return;
    }
    if (pep_node_find(p, name)) {
        sm_iq_error(req, "conflict", "cancel");
        return;
    }
    if (p->nnodes >= (size_t)cfg()->max_nodes) {
        pep_perr(req, "not-allowed", "cancel", "max-nodes-exceeded");
        return;
    }
    pn_config_t nc;
    pn_config_default(&nc);
    const xml_node_t *x = submitted_form(xml_child(req->payload, NS_PUBSUB, "configure"));
    const char *bad = NULL;
    if (x && pn_config_apply(&nc, x, (size_t)cfg()->max_items, &bad) < 0) {
        pn_config_clear(&nc);
        sm_iq_error(req, "not-acceptable", "modify");
        return;
    }
    pn_node_t *n = pn_node_new(name, &nc);
    pn_config_clear(&nc);
    pep_op_t *o = pep_op_begin(req, deferred);
    node_add(p, n);
    pep_op_put_node(o, u->bare, n);
    pep_op_done(o);
}

/* pubsub#owner configure: get shows the form, set applies it. Lowering
 * max_items drops the oldest items; switching persist_items writes or
 * removes the stored items. */
static void do_configure(sm_iq_t *req, int deferred, sm_user_t *u, pep_user_t *p, xml_node_t *ce)
{
    const char *name = pep_node_of(req, ce);
    if (!name)
        return;
    pn_node_t *n = pep_node_find(p, name);
    if (!n) {
        sm_iq_error(req, "item-not-found", "cancel");
        return;
    }
    if (!req->set) {
        xml_node_t *r = xml_elem_new(NS_PUBSUB_OWNER, "pubsub");
        xml_node_t *c = xml_add_child(r, NS_PUBSUB_OWNER, "configure");
        xml_attr_set(c, "node", name);
        xml_append(c, pn_config_form(&n->cfg));
        sm_iq_reply(req, r);
        return;
    }
    const xml_node_t *x = xml_child(ce, NS_DATA, "x");
    if (!x) {
        sm_iq_error(req, "bad-request", "modify");
        return;
    }
    if (sm_streq(xml_attr_get(x, "type"), "cancel")) {
        sm_iq_reply(req, NULL);
        return;
    }
    size_t limit = (size_t)cfg()->max_items;
    pn_config_t nc;
    pn_config_copy(&nc, &n->cfg);
    const char *bad = NULL;
    if (pn_config_apply(&nc, x, limit, &bad) < 0) {
        pn_config_clear(&nc);
        log_info("event=pep-configure result=refused user=%s node=%s field=%s", u->bare, name, bad);
        sm_iq_error(req, "not-acceptable", "modify");
        return;
    }
    pep_op_t *o = pep_op_begin(req, deferred);
    int was = n->cfg.persist;
    pn_config_clear(&n->cfg);
    n->cfg = nc;
    trim_ctx_t t = {o, u->bare, n->name, was};
    pn_node_trim(n, pn_config_keep(&n->cfg, limit), trim_cb, &t);
    for (size_t i = 0; i < n->nitems && was != n->cfg.persist; i++) {
        if (n->cfg.persist)
            op_put_item(o, u->bare, n->name, &n->items[i]);
        else
            op_del_item(o, u->bare, n->name, n->items[i].id);
    }
    pep_subs_prune_node(u, n, NULL);          /* a stricter access model ends subscriptions */
    pep_op_put_node(o, u->bare, n);
    pep_op_done(o);
}

static void do_delete_or_purge(sm_iq_t *req, int deferred, sm_user_t *u, pep_user_t *p, xml_node_t *el, int del)
{
    const char *name = pep_node_of(req, el);
    if (!name)
        return;
    pn_node_t *n = pep_node_find(p, name);
    if (!n) {
        sm_iq_error(req, "item-not-found", "cancel");
        return;
    }
    pep_op_t *o = pep_op_begin(req, deferred);
    for (size_t i = 0; i < n->nitems && n->cfg.persist; i++)
        op_del_item(o, u->bare, n->name, n->items[i].id);
    if (del || n->cfg.notify_delete)
        notify_node(u, p, n, del ? "delete" : "purge");
    char *nname = xstrdup(n->name);
    if (del) {
        op_del(o, u->bare, COLL_NODES, n->name);
        node_drop(p, n);
    } else {
        pn_node_purge(n);
    }
    observe(u, nname, NULL, NULL);
    free(nname);
    pep_op_done(o);
}

static void pep_iq_run(sm_iq_t *req, int deferred)
{
    sm_user_t *u = req->user;
    pep_user_t *p = state(u);
    xml_node_t *q = req->payload;
    int owner_ns = !strcmp(q->ns, NS_PUBSUB_OWNER);
    xml_node_t *op = xml_child(q, q->ns, NULL);
    if (!op) {
        sm_iq_error(req, "bad-request", "modify");
        return;
    }
    const char *what = op->name;
    int reads = !owner_ns && (!strcmp(what, "items") || !strcmp(what, "subscriptions") ||
                              !strcmp(what, "affiliations") || !strcmp(what, "subscribe") ||
                              !strcmp(what, "unsubscribe") || !strcmp(what, "options"));
    if (!req->own && !reads && !pep_subs_may_write(req, p, op, owner_ns)) {
        sm_iq_error(req, "forbidden", "auth");
        return;
    }
    if (!owner_ns && !req->set && !strcmp(what, "items")) {
        do_items(req, u, p, op);
    } else if (pep_subs_request(req, deferred, u, p, op, owner_ns)) {
        return;
    } else if (!owner_ns && req->set && !strcmp(what, "publish")) {
        do_publish(req, deferred, u, p, op);
    } else if (!owner_ns && req->set && !strcmp(what, "retract")) {
        do_retract(req, deferred, u, p, op);
    } else if (!owner_ns && req->set && !strcmp(what, "create")) {
        do_create(req, deferred, u, p, op);
    } else if (owner_ns && !strcmp(what, "configure")) {
        do_configure(req, deferred, u, p, op);
    } else if (owner_ns && !req->set && !strcmp(what, "default")) {
        pn_config_t dc;
        pn_config_default(&dc);
        xml_node_t *r = xml_elem_new(NS_PUBSUB_OWNER, "pubsub");
        xml_append(xml_add_child(r, NS_PUBSUB_OWNER, "default"), pn_config_form(&dc));
        sm_iq_reply(req, r);
    } else if (owner_ns && req->set && (!strcmp(what, "delete") || !strcmp(what, "purge"))) {
        do_delete_or_purge(req, deferred, u, p, op, !strcmp(what, "delete"));
    } else {
        sm_iq_error(req, "feature-not-implemented", "cancel");
    }
}

/* --- on the user's behalf (mod_pep.h) ---------------------------------------------------- */

static pep_user_t *loaded_state(sm_user_t *u)
{
    if (!sm_module_enabled(&sm_module_pep))
        return NULL;
    pep_user_t *p = state(u);
    if (!p->loaded) {
        log_warn("event=pep-write result=refused reason=not-loaded user=%s", u->bare);
        return NULL;
    }
    return p;
}

int pep_put(sm_user_t *u, const char *node, const char *id, const xml_node_t *payload, pn_access_t access,
            long max_items)
{
    pep_user_t *p = loaded_state(u);
    if (!p)
        return -1;
    const pep_cfg_t *c = cfg();
    pn_node_t *n = pep_node_find(p, node);
    if (!n && p->nnodes >= (size_t)c->max_nodes) {
        log_info("event=pep-put result=refused reason=max-nodes user=%s node=%s", u->bare, node);
        return -1;
    }
    xml_node_t *item = xml_elem_new(NS_PUBSUB, "item");
    xml_attr_set(item, "id", id);
    xml_append(item, xml_copy(payload));
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(item, "", &sb);
    size_t size = sb.len;
    strbuf_free(&sb);
    if (size > c->max_item_size) {
        log_info("event=pep-put result=refused reason=item-size user=%s node=%s bytes=%zu", u->bare, node, size);
        xml_free(item);
        return -1;
    }
    pep_op_t *o = pep_op_new();
    if (!n) {
        pn_config_t nc;
        pn_config_default(&nc);
        nc.access = access;
        nc.max_items = max_items;
        n = pn_node_new(node, &nc);
        pn_config_clear(&nc);
        node_add(p, n);
        pep_op_put_node(o, u->bare, n);
    }
    int existed = pn_node_find(n, id) != NULL;
    pn_node_put(n, id, item);
    size_t limit = (size_t)c->max_items;
    trim_ctx_t t = {o, u->bare, n->name, n->cfg.persist};
    pn_node_trim(n, pn_config_keep(&n->cfg, limit), trim_cb, &t);
    pn_item_t *it = pn_node_find(n, id);
    if (n->cfg.persist && it) {
        if (existed)
            op_del_item(o, u->bare, n->name, id);
        op_put_item(o, u->bare, n->name, it);
    }
    if (it) {
        budget_take(p, audience(u, p, n));
        notify_item(u, p, n, it, 1);
    }
    pep_op_done(o);
    return 0;
}

int pep_del(sm_user_t *u, const char *node, const char *id)
{
    pep_user_t *p = loaded_state(u);
    pn_node_t *n = p ? pep_node_find(p, node) : NULL;
    if (!n || !pn_node_find(n, id))
        return -1;
    pep_op_t *o = pep_op_new();
    char *idc = xstrdup(id);
    pn_node_remove(n, idc);
    if (n->cfg.persist)
        op_del_item(o, u->bare, n->name, idc);
    if (n->cfg.notify_retract)
        notify_retract(u, p, n, idc);
    free(idc);
    pep_op_done(o);
    return 0;
}

const xml_node_t *pep_get(sm_user_t *u, const char *node, const char *id)
{
    pep_user_t *p = sm_module_enabled(&sm_module_pep) ? state(u) : NULL;
    pn_node_t *n = p ? pep_node_find(p, node) : NULL;
    pn_item_t *it = !n ? NULL : id ? pn_node_find(n, id) : pn_node_last(n);
    return it ? it->item : NULL;
}

void pep_foreach(sm_user_t *u, const char *node, pep_item_fn fn, void *arg)
{
    pep_user_t *p = sm_module_enabled(&sm_module_pep) ? state(u) : NULL;
    pn_node_t *n = p ? pep_node_find(p, node) : NULL;
    for (size_t i = 0; n && i < n->nitems; i++)
        fn(n->items[i].id, n->items[i].item, arg);
}

/* Entry point: a request that arrives before the user's nodes are read
 * (only on an asynchronous storage) waits for them. */
static void pep_iq(sm_iq_t *req)
{
    pep_user_t *p = state(req->user);
    if (p->loaded) {
        pep_iq_run(req, 0);
        return;
    }
    p->waiting = xrealloc(p->waiting, (p->nwaiting + 1) * sizeof *p->waiting);
    p->waiting[p->nwaiting++] = sm_iq_defer(req);
}

static int pep_init(void)
{
    caps_init(on_caps);
    return 0;
}

static void pep_free(void)
{
    caps_free();
    free(picked.idx);
    memset(&picked, 0, sizeof picked);
}

static const cfg_option_t pep_options[] = {
    {"max-nodes", CFG_INT, "100", 1, 100000, 1, offsetof(pep_cfg_t, max_nodes), NULL,
     "PEP nodes per account; creating one more gets not-allowed (max-nodes-exceeded)."},
    {"max-items", CFG_INT, "256", 1, 100000, 1, offsetof(pep_cfg_t, max_items), NULL,
     "Items kept per PEP node: what max_items 'max' means; a larger max_items is refused."},
    {"max-item-size", CFG_SIZE, "128K", 256, 16777216, 1, offsetof(pep_cfg_t, max_item_size), NULL,
     "Largest PEP item (serialized bytes); a larger publish gets not-acceptable (payload-too-big)."},
    {"notify-rate", CFG_INT, "10000", 1, 100000000, 1, offsetof(pep_cfg_t, notify_rate), NULL,
     "PEP notifications per second one user's publishes may cause (burst: one second's worth); "
     "past it a publish gets resource-constraint."},
    {"max-watchers", CFG_INT, "10000", 1, 10000000, 1, offsetof(pep_cfg_t, max_watchers), NULL,
     "Resources (full JIDs with caps) tracked per user for PEP notifications; past it new ones get none."},
    {"caps-cache", CFG_INT, "1000", 1, 1000000, 1, offsetof(pep_cfg_t, caps_cache), NULL,
     "XEP-0115 capability hashes cached (and disco#info queries in flight), oldest dropped first."},
    {"max-affiliations", CFG_INT, "256", 1, 100000, 1, offsetof(pep_cfg_t, max_affiliations), NULL,
     "Affiliations (member, publisher, owner, outcast) per PEP node; setting one more gets not-acceptable."},
    {"max-subscriptions", CFG_INT, "1000", 1, 100000, 1, offsetof(pep_cfg_t, max_subscriptions), NULL,
     "Explicit subscriptions per PEP node; one more gets policy-violation (too-many-subscriptions)."},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, NULL},
};

static const sm_hooks_t pep_hooks = {
    .user_load = on_user_load,
    .user_delete = on_user_delete,
    .presence_in = on_presence_in,
    .presence_out = on_presence_out,
    .sess_end = on_sess_end,
    .iq_in = on_iq_in,
    .roster_change = on_roster_change,
    .disco_account = on_disco_account,
};

static const sm_iq_handler_t pep_iqs[] = {
    {NS_PUBSUB, SM_IQ_ACCOUNT, pep_iq, pep_iq, NULL},
    {NS_PUBSUB_OWNER, SM_IQ_ACCOUNT, pep_iq, pep_iq, NULL},
    {NULL, 0, NULL, NULL, NULL},
};

static const char *const pep_account_features[] = {
    NS_PUBSUB "#access-open",
    NS_PUBSUB "#access-presence",
    NS_PUBSUB "#access-roster",
    NS_PUBSUB "#access-whitelist",
    NS_PUBSUB "#auto-create",
    NS_PUBSUB "#auto-subscribe",
    NS_PUBSUB "#config-node",
    NS_PUBSUB "#create-and-configure",
    NS_PUBSUB "#create-nodes",
    NS_PUBSUB "#delete-items",
    NS_PUBSUB "#delete-nodes",
    NS_PUBSUB "#filtered-notifications",
    NS_PUBSUB "#item-ids",
    NS_PUBSUB "#last-published",
    NS_PUBSUB "#manage-subscriptions",
    NS_PUBSUB "#member-affiliation",
    NS_PUBSUB "#modify-affiliations",
    NS_PUBSUB "#outcast-affiliation",
    NS_PUBSUB "#persistent-items",
    NS_PUBSUB "#presence-notifications",
    NS_PUBSUB "#publish",
    NS_PUBSUB "#publish-only-affiliation",
    NS_PUBSUB "#publish-options",
    NS_PUBSUB "#publisher-affiliation",
    NS_PUBSUB "#purge-nodes",
    NS_PUBSUB "#retract-items",
    NS_PUBSUB "#retrieve-affiliations",
    NS_PUBSUB "#retrieve-default",
    NS_PUBSUB "#retrieve-items",
    NS_PUBSUB "#retrieve-subscriptions",
    NS_PUBSUB "#subscribe",
    NULL,
};

static const char *const pep_server_features[] = {NS_PUBSUB "#publish", NULL};

sm_module_t sm_module_pep = {
    .name = "pep",
    .help = "Personal Eventing Protocol (XEP-0163 on XEP-0060) with XEP-0115 caps-filtered notifications.",
    .init = pep_init,
    .free = pep_free,
    .options = pep_options,
    .config_size = sizeof(pep_cfg_t),
    .hooks = &pep_hooks,
    .iqs = pep_iqs,
    .server_features = pep_server_features,
    .account_features = pep_account_features,
    .user_state_free = user_state_free,
};
