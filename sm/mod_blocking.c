/* mod_blocking: the blocking command (XEP-0191) and its enforcement.
 *
 * The blocklist: <blocklist/> get (the asking session then receives pushes),
 * <block/> and <unblock/> sets with no 'to' (or to the user's own bare JID).
 * Items are prepared JIDs; an invalid one fails the whole command with
 * jid-malformed, an empty <block/> with bad-request, an empty <unblock/>
 * unblocks everything. Changes are committed before the result, then pushed
 * to every session that asked for the blocklist (the sender included). At
 * most BLOCKLIST_MAX items (not-allowed past it).
 *
 * Matching (sm_blocking_blocks, XEP-0191 section 6 / XEP-0016): an item
 * user@domain/resource matches only that JID; user@domain any of its
 * resources; domain/resource only that; domain the domain itself, every JID
 * at it and every JID at a subdomain of it.
 *
 * Enforcement (XEP-0191 section 3.3), run first in every chain (this module
 * is first in the module list):
 * - inbound (the in hooks, bare or full JID) from a blocked JID: presence
 *   dropped without answer; message answered service-unavailable; iq get/set
 *   answered service-unavailable; iq result/error and message errors dropped.
 * - outbound (the out hooks) to a blocked JID: not routed; the session gets
 *   <not-acceptable/> with <blocked xmlns='urn:xmpp:blocking:errors'/>
 *   (iq results/errors and presence errors are dropped silently).
 * The user's own account and the served domain itself are never blocked, so a
 * careless item cannot cut a user off from their own server.
 * - presence: when a block starts applying to a contact that may see the
 *   user's presence (subscription 'from'/'both', or a directed-presence
 *   recipient), each available session sends it unavailable presence; when
 *   it stops applying, each available session sends its current presence, and
 *   a contact whose presence the user gets ('to'/'both') is probed so the
 *   user sees it again (its presence was dropped meanwhile).
 *
 * Storage: collection "blocklist" of the user, key = the prepared JID, value
 * empty. Memory: the module's user state holds the list (loaded on first
 * use) and the sessions that asked for it (forgotten when they end). */
#include "mod_blocking.h"
#include "mod_roster.h"
#include "module.h"
#include "store.h"
#include "comp_proto.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_BLOCKING "urn:xmpp:blocking"
#define NS_BLOCKING_ERRORS "urn:xmpp:blocking:errors"
#define COLL_BLOCKLIST "blocklist"
#define BLOCKLIST_MAX 10000

typedef struct blocklist {
    char **jids;
    size_t n;
    sm_sess_t **wants;        /* sessions that asked for the blocklist (pushes) */
    size_t nwants;
} blocklist_t;

extern sm_module_t sm_module_blocking;
static unsigned long push_ids;

/* --- the list ----------------------------------------------------------------- */

static int load_item(const char *key, const char *val, size_t len, void *arg)
{
    (void)val;
    (void)len;
    blocklist_t *b = arg;
    b->jids = xrealloc(b->jids, (b->n + 1) * sizeof *b->jids);
    b->jids[b->n++] = xstrdup(key);
    return 0;
}

/* The loaded list (the user_load hook reads it while the user is held). */
static blocklist_t *list_get(sm_user_t *u)
{
    blocklist_t *b = sm_user_state(u, &sm_module_blocking);
    if (!b) {
        b = xcalloc(1, sizeof *b);
        sm_user_state_set(u, &sm_module_blocking, b);
    }
    return b;
}

static void list_loaded(storage_res_t *res, void *arg)
{
    sm_user_t *u = arg;
    blocklist_t *b = list_get(u);
    if (res->status < 0)
        log_warn("event=blocklist-load result=error user=%s", u->bare);
    for (size_t i = 0; i < res->nrecs; i++)
        load_item(res->recs[i].key, res->recs[i].val, res->recs[i].len, b);
    sm_user_release(u);
}

static void on_user_load(sm_user_t *u)
{
    list_get(u);
    sm_user_hold(u);
    storage_list_async(sm_storage, u->bare, COLL_BLOCKLIST, list_loaded, u);
}

static int list_has(const blocklist_t *b, const char *jid)
{
    for (size_t i = 0; i < b->n; i++)
        if (!strcmp(b->jids[i], jid))
            return 1;
    return 0;
}

/* 1 if domain d is dom or a subdomain of it. */
static int domain_within(const char *d, const char *dom)
{
    size_t dl = strlen(d), l = strlen(dom);
    if (dl == l)
        return !strcmp(d, dom);
    return dl > l && d[dl - l - 1] == '.' && !strcmp(d + dl - l, dom);
}

static int item_matches(const char *item, const jid_t *j)
{
    const char *at = strchr(item, '@');
    const char *slash = strchr(item, '/');
    if (at && slash && at > slash)
        at = NULL;                              /* '@' inside a resource */
    if (at)                                     /* user@domain[/resource] */
        return slash ? !strcmp(item, j->full) : !strcmp(item, j->bare);
    if (slash)                                  /* domain/resource */
        return !j->node && !strcmp(item, j->full);
    return domain_within(j->domain, item);      /* domain */
}

static int list_blocks(const blocklist_t *b, const jid_t *j)
{
    for (size_t i = 0; i < b->n; i++)
        if (item_matches(b->jids[i], j))
            return 1;
    return 0;
}

/* The user's own account and our domain itself are never blocked. */
static int exempt(const sm_user_t *u, const jid_t *j)
{
    return !strcmp(j->bare, u->bare) || (!j->node && sm_is_local(j->domain));
}

int sm_blocking_blocks(sm_user_t *u, const char *jid)
{
    if (!u || !jid || !sm_module_enabled(&sm_module_blocking))
        return 0;
    blocklist_t *b = list_get(u);
    if (!b->n)
        return 0;
    jid_t j;
    if (jid_parse(jid, &j) != JID_OK)
        return 0;
    int r = !exempt(u, &j) && list_blocks(b, &j);
    jid_clear(&j);
    return r;
}

/* --- presence effects of a change ------------------------------------------------ */

typedef struct audience {
    sm_user_t *u;
    char **jids;
    int *sub;                 /* roster subscription, or -1 for a directed recipient */
    int *was;                 /* blocked before the change */
    size_t n;
} audience_t;

static void audience_add(audience_t *a, const char *jid, int sub)
{
    for (size_t i = 0; i < a->n; i++)
        if (!strcmp(a->jids[i], jid))
            return;
    a->jids = xrealloc(a->jids, (a->n + 1) * sizeof *a->jids);
    a->sub = xrealloc(a->sub, (a->n + 1) * sizeof *a->sub);
    a->was = xrealloc(a->was, (a->n + 1) * sizeof *a->was);
    a->jids[a->n] = xstrdup(jid);
    a->sub[a->n] = sub;
    a->was[a->n] = sm_blocking_blocks(a->u, jid);
    a->n++;
}

static void audience_roster(const char *contact, sm_sub_t sub, void *arg)
{
    if (sub != SM_SUB_NONE)
        audience_add(arg, contact, (int)sub);
}

/* Everyone the block state matters to for presence, with their state now. */
static void audience_snapshot(sm_user_t *u, audience_t *a)
{
    memset(a, 0, sizeof *a);
    a->u = u;
    sm_roster_foreach(u, audience_roster, a);
    for (sm_sess_t *s = u->sessions; s; s = s->next)
        for (size_t i = 0; i < s->ndirected; i++)
            audience_add(a, s->directed[i], -1);
}

static void send_presence(const char *from, const char *to, const char *type, const xml_node_t *copy)
{
    xml_node_t *p = copy ? xml_copy(copy) : xml_elem_new(NS_CLIENT, "presence");
    if (type)
        xml_attr_set(p, "type", type);
    xml_attr_set(p, "from", from);
    xml_attr_set(p, "to", to);
    sm_send(p);
    xml_free(p);
}

static void audience_free(audience_t *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->jids[i]);
    free(a->jids);
    free(a->sub);
    free(a->was);
    memset(a, 0, sizeof *a);
}

/* Compares with the state after the change and tells those it changed for. */
static void audience_apply(sm_user_t *u, audience_t *a)
{
    for (size_t i = 0; i < a->n; i++) {
        int now = sm_blocking_blocks(u, a->jids[i]);
        int sees = a->sub[i] < 0 || (a->sub[i] & SM_SUB_FROM);
        if (now != a->was[i] && sees) {
            for (sm_sess_t *s = u->sessions; s; s = s->next) {
                if (!s->available)
                    continue;
                if (now)
                    send_presence(s->jid.full, a->jids[i], "unavailable", NULL);
                else if (s->presence)
                    send_presence(s->jid.full, a->jids[i], NULL, s->presence);
            }
        }
        if (!now && a->was[i] && a->sub[i] >= 0 && (a->sub[i] & SM_SUB_TO))
            send_presence(u->bare, a->jids[i], "probe", NULL);
    }
    audience_free(a);
}

/* --- the iq ------------------------------------------------------------------------- */

static void wants_add(blocklist_t *b, sm_sess_t *s)
{
    for (size_t i = 0; i < b->nwants; i++)
        if (b->wants[i] == s)
            return;
    b->wants = xrealloc(b->wants, (b->nwants + 1) * sizeof *b->wants);
    b->wants[b->nwants++] = s;
}

static void push(sm_user_t *u, blocklist_t *b, const char *what, char **jids, size_t n)
{
    for (size_t w = 0; w < b->nwants; w++) {
        sm_sess_t *s = b->wants[w];
        char id[40];
        snprintf(id, sizeof id, "block-push-%lu", ++push_ids);
        xml_node_t *iq = xml_elem_new(NS_CLIENT, "iq");
        xml_attr_set(iq, "type", "set");
        xml_attr_set(iq, "id", id);
        xml_attr_set(iq, "from", u->bare);
        xml_attr_set(iq, "to", s->jid.full);
        xml_node_t *el = xml_add_child(iq, NS_BLOCKING, what);
        for (size_t i = 0; i < n; i++)
            xml_attr_set(xml_add_child(el, NS_BLOCKING, "item"), "jid", jids[i]);
        sm_deliver(s, iq);
        xml_free(iq);
    }
}

static void blocklist_get(sm_iq_t *req)
{
    blocklist_t *b = list_get(req->user);
    if (req->sess)
        wants_add(b, req->sess);
    xml_node_t *bl = xml_elem_new(NS_BLOCKING, "blocklist");
    for (size_t i = 0; i < b->n; i++)
        xml_attr_set(xml_add_child(bl, NS_BLOCKING, "item"), "jid", b->jids[i]);
    sm_iq_reply(req, bl);
}

/* Prepared JIDs of the <item/> children; NULL with *cond set on error. */
static char **parse_items(const xml_node_t *el, size_t *n, const char **cond)
{
    char **out = NULL;
    *n = 0;
    *cond = NULL;
    for (xml_node_t *it = xml_child(el, NS_BLOCKING, "item"); it; it = xml_next(it, NS_BLOCKING, "item")) {
        const char *jid = xml_attr_get(it, "jid");
        jid_t j;
        if (!jid || jid_parse(jid, &j) != JID_OK) {
            *cond = "jid-malformed";
            break;
        }
        int dup = 0;
        for (size_t i = 0; i < *n && !dup; i++)
            dup = !strcmp(out[i], j.full);
        if (!dup) {
            out = xrealloc(out, (*n + 1) * sizeof *out);
            out[(*n)++] = xstrdup(j.full);
        }
        jid_clear(&j);
        if (*n > BLOCKLIST_MAX) {
            *cond = "not-allowed";
            break;
        }
    }
    if (*cond) {
        for (size_t i = 0; i < *n; i++)
            free(out[i]);
        free(out);
        *n = 0;
        return NULL;
    }
    return out;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* A block or unblock waiting for its commit (the user is held meanwhile). */
typedef struct block_ctx {
    sm_iq_t *req;
    sm_user_t *u;
    char **jids;
    size_t n;
    int block;
    audience_t aud;
} block_ctx_t;

static void block_done(int ok, void *arg)
{
    block_ctx_t *c = arg;
    sm_user_t *u = c->u;
    blocklist_t *b = list_get(u);
    char **jids = c->jids;
    size_t n = c->n;
    int block = c->block;
    if (!ok) {
        log_warn("event=blocklist-change result=store-failed user=%s", u->bare);
        audience_free(&c->aud);
        strv_free(jids, n);
        sm_iq_error(c->req, "internal-server-error", "wait");
        free(c);
        return;
    }
    /* Memory follows storage. */
    if (block) {
        for (size_t i = 0; i < n; i++) {
            if (!list_has(b, jids[i])) {
                b->jids = xrealloc(b->jids, (b->n + 1) * sizeof *b->jids);
                b->jids[b->n++] = xstrdup(jids[i]);
            }
        }
    } else {
        size_t k = 0;
        for (size_t i = 0; i < b->n; i++) {
            int gone = !n;
            for (size_t x = 0; x < n && !gone; x++)
                gone = !strcmp(b->jids[i], jids[x]);
            if (gone)
                free(b->jids[i]);
            else
                b->jids[k++] = b->jids[i];
        }
        b->n = k;
    }
    log_info("event=blocklist-change user=%s action=%s items=%zu total=%zu", u->bare,
             block ? "block" : "unblock", n, b->n);
    sm_iq_reply(c->req, NULL);
    push(u, b, block ? "block" : "unblock", jids, n);
    audience_apply(u, &c->aud);
    strv_free(jids, n);
    free(c);
}

static void block_set(sm_iq_t *req, sm_user_t *u, xml_node_t *el, int block)
{
    blocklist_t *b = list_get(u);
    size_t n;
    const char *cond;
    char **jids = parse_items(el, &n, &cond);
    if (cond) {
        sm_iq_error(req, cond, !strcmp(cond, "not-allowed") ? "cancel" : "modify");
        return;
    }
    if (block && !n) {
        sm_iq_error(req, "bad-request", "modify");
        return;
    }
    size_t fresh = 0;
    for (size_t i = 0; i < n; i++)
        fresh += block ? !list_has(b, jids[i]) : 0;
    if (block && b->n + fresh > BLOCKLIST_MAX) {
        strv_free(jids, n);
        sm_iq_error(req, "not-allowed", "cancel");
        return;
    }
    block_ctx_t *c = xcalloc(1, sizeof *c);
    audience_snapshot(u, &c->aud);
    c->req = sm_iq_defer(req);
    c->u = u;
    c->jids = jids;
    c->n = n;
    c->block = block;
    sm_batch_t *bt = sm_batch_new();
    if (!block && !n)
        sm_batch_del_all(bt, u->bare, COLL_BLOCKLIST);
    for (size_t i = 0; i < n; i++) {
        if (block && !list_has(b, jids[i]))
            sm_batch_put(bt, u->bare, COLL_BLOCKLIST, jids[i], "", 0);
        else if (!block)
            sm_batch_del(bt, u->bare, COLL_BLOCKLIST, jids[i]);
    }
    sm_batch_commit(bt, block_done, c);
}

/* Only the account itself reads or changes its list. */
static void blocking_get(sm_iq_t *req)
{
    if (!req->own)
        sm_iq_error(req, "service-unavailable", "cancel");
    else if (!strcmp(req->payload->name, "blocklist"))
        blocklist_get(req);
    else
        sm_iq_error(req, "bad-request", "modify");
}

static void blocking_set(sm_iq_t *req)
{
    const char *what = req->payload->name;
    if (!req->own)
        sm_iq_error(req, "service-unavailable", "cancel");
    else if (!strcmp(what, "block") || !strcmp(what, "unblock"))
        block_set(req, req->user, req->payload, !strcmp(what, "block"));
    else
        sm_iq_error(req, "bad-request", "modify");
}

/* --- enforcement -------------------------------------------------------------------- */

/* The error for a stanza a user sent to a JID they block (XEP-0191 3.3). */
static void reply_blocked(sm_sess_t *s, const xml_node_t *st)
{
    const char *type = xml_attr_get(st, "type");
    if (!comp_proto_bounceable(st->name, type))
        return;
    xml_node_t *e = xml_copy(st);
    xml_attr_set(e, "to", s->jid.full);
    xml_attr_set(e, "from", xml_attr_get(st, "to"));
    xml_attr_set(e, "type", "error");
    xml_node_t *err = xml_add_child(e, st->ns, "error");
    xml_attr_set(err, "type", "cancel");
    xml_add_child(err, NS_STANZAS, "not-acceptable");
    xml_add_child(err, NS_BLOCKING_ERRORS, "blocked");
    sm_deliver(s, e);
    xml_free(e);
}

static sm_ret_t on_out(sm_sess_t *s, xml_node_t *st)
{
    const char *to = xml_attr_get(st, "to");
    if (!to || !sm_blocking_blocks(s->user, to))
        return SM_PASS;
    log_debug("event=blocked direction=out user=%s to=%s element=%s", s->user->bare, to, st->name);
    reply_blocked(s, st);
    return SM_HANDLED;
}

static sm_ret_t on_in(sm_user_t *u, sm_sess_t *to, xml_node_t *st)
{
    (void)to;                                 /* the bare JID and every resource alike */
    const char *from = xml_attr_get(st, "from");
    if (!from || !sm_blocking_blocks(u, from))
        return SM_PASS;
    log_debug("event=blocked direction=in user=%s from=%s element=%s", u->bare, from, st->name);
    const char *type = xml_attr_get(st, "type");
    if (!strcmp(st->name, "message") || (!strcmp(st->name, "iq") && (sm_streq(type, "get") || sm_streq(type, "set"))))
        sm_reply_error(st, "service-unavailable", "cancel");
    return SM_HANDLED;
}

static void on_sess_end(sm_sess_t *s, xml_node_t *unavailable)
{
    (void)unavailable;
    blocklist_t *b = sm_user_state(s->user, &sm_module_blocking);
    if (!b)
        return;
    size_t k = 0;
    for (size_t i = 0; i < b->nwants; i++)
        if (b->wants[i] != s)
            b->wants[k++] = b->wants[i];
    b->nwants = k;
}

static void on_user_delete(sm_user_t *u)
{
    sm_store_del_all(u->bare, COLL_BLOCKLIST, NULL, NULL);
    blocklist_t *b = sm_user_state(u, &sm_module_blocking);
    if (b) {
        strv_free(b->jids, b->n);
        b->jids = NULL;
        b->n = 0;
    }
}

static void state_free(sm_user_t *u, void *state)
{
    (void)u;
    blocklist_t *b = state;
    strv_free(b->jids, b->n);
    free(b->wants);
    free(b);
}

static const sm_hooks_t blocking_hooks = {
    .user_load = on_user_load,
    .message_out = on_out,
    .presence_out = on_out,
    .iq_out = on_out,
    .message_in = on_in,
    .presence_in = on_in,
    .iq_in = on_in,
    .sess_end = on_sess_end,
    .user_delete = on_user_delete,
};

static const sm_iq_handler_t blocking_iqs[] = {
    {NS_BLOCKING, SM_IQ_ACCOUNT, blocking_get, blocking_set, NULL},
    {NULL, 0, NULL, NULL, NULL},
};

static const char *const blocking_features[] = {NS_BLOCKING, NULL};

sm_module_t sm_module_blocking = {
    .name = "blocking",
    .help = "Blocking command (XEP-0191): a user's list of JIDs whose stanzas are refused both ways.",
    .hooks = &blocking_hooks,
    .iqs = blocking_iqs,
    .server_features = blocking_features,
    .user_state_free = state_free,
};
