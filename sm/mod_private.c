/* mod_private: private XML storage (XEP-0049), the user's own account only.
 *
 * - get: <query xmlns='jabber:iq:private'> with one child (clients send one;
 *   several are answered each): the stored elements of that child's
 *   namespace, or the child as sent (empty) when nothing is stored. No child:
 *   bad-request (XEP-0049's "Bad Format").
 * - set: every child is stored under its namespace; several children of one
 *   namespace are stored together and replace what that namespace held. No
 *   child: not-acceptable. All children are checked before anything is
 *   written, and the writes of one set are one transaction.
 * - Reserved namespaces (XEP-0049 section 2.3): the empty namespace, anything
 *   starting with "jabber:" (jabber:client, jabber:iq:private, ...) and
 *   vcard-temp are refused with not-acceptable. "http://jabber.org/..." is
 *   accepted: clients do store data there.
 * - To another account (bare JID): forbidden.
 * - Limits: PRIVATE_MAX bytes per namespace (not-acceptable) and
 *   PRIVATE_MAX_NS namespaces per user (not-allowed).
 *
 * Storage: collection "private" of the user, key = namespace, value = the
 * elements of that namespace serialized one after the other, each declaring
 * its namespace. user_delete removes them. No per-user state. */
#include "module.h"
#include "store.h"
#include "log.h"
#include "xml_stream.h"
#include <stdlib.h>
#include <string.h>

#define NS_PRIVATE "jabber:iq:private"
#define COLL_PRIVATE "private"
#define PRIVATE_MAX (256u * 1024u)  /* bytes stored for one namespace */
#define PRIVATE_MAX_NS 128          /* namespaces stored per user */

static int reserved(const char *ns)
{
    return !ns || !*ns || !strncmp(ns, "jabber:", 7) || !strcmp(ns, "vcard-temp");
}

/* Parses a stored record (elements one after the other) and appends them to
 * q. Returns 0, or -1 when the record is unreadable (nothing appended). */
static int append_stored(xml_node_t *q, const char *owner, const char *ns, const char *val, size_t len)
{
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_puts(&sb, "<r>");
    strbuf_append(&sb, val, len);
    strbuf_puts(&sb, "</r>");
    xml_limits_t lim;
    xml_limits_default(&lim);
    lim.max_stanza_bytes = sb.len + 1;
    lim.max_text = sb.len + 1;
    char err[128];
    unsigned line = 0;
    xml_node_t *r = xml_parse_document(sb.data, sb.len, &lim, err, sizeof err, &line);
    strbuf_free(&sb);
    if (!r) {
        log_warn("event=private-load result=bad-record user=%s ns=%s error=\"%s\"", owner, ns, err);
        return -1;
    }
    for (xml_node_t *c = r->first_child, *next; c; c = next) {
        next = c->next;
        if (!c->name)
            continue;
        xml_detach(c);
        xml_append(q, c);
    }
    xml_free(r);
    return 0;
}

/* A get or set waiting for storage: one read per namespace (and, for a
 * set, a count), submitted together; the last answer goes on. */
typedef struct ns_group {
    const char *ns;            /* points into the deferred request */
    strbuf_t data;             /* set: what to store */
    char *val;                 /* get: what is stored (NULL: nothing) */
    size_t len;
    int found;
} ns_group_t;

typedef struct priv_op {
    sm_iq_t *req;
    ns_group_t *g;
    size_t ng;
    int left, failed;
    int64_t stored;            /* set: namespaces stored before */
} priv_op_t;

static void op_free(priv_op_t *op)
{
    for (size_t i = 0; i < op->ng; i++) {
        strbuf_free(&op->g[i].data);
        free(op->g[i].val);
    }
    free(op->g);
    free(op);
}

typedef struct slot {
    priv_op_t *op;
    size_t i;
} slot_t;

static void got_one(storage_res_t *res, void *arg);
static void private_finish(priv_op_t *op);

static void count_one(priv_op_t *op, sm_user_t *u);

static void read_all(priv_op_t *op, sm_user_t *u, int count)
{
    op->left = (int)op->ng + count + 1;       /* + 1: until every read is submitted */
    if (count)
        count_one(op, u);
    for (size_t i = 0; i < op->ng; i++) {
        slot_t *sl = xmalloc(sizeof *sl);
        sl->op = op;
        sl->i = i;
        storage_get_async(sm_storage, u->bare, COLL_PRIVATE, op->g[i].ns, got_one, sl);
    }
    if (--op->left == 0)
        private_finish(op);
}

static void got_one(storage_res_t *res, void *arg)
{
    slot_t *sl = arg;
    priv_op_t *op = sl->op;
    if (res->status < 0)
        op->failed = 1;
    if (sl->i == (size_t)-1) {
        op->stored = res->n;
    } else if (res->status == 0) {
        op->g[sl->i].found = 1;
        op->g[sl->i].val = res->val;
        op->g[sl->i].len = res->len;
        res->val = NULL;                      /* kept (storage.h) */
    }
    free(sl);
    if (--op->left == 0)
        private_finish(op);
}

static void count_one(priv_op_t *op, sm_user_t *u)
{
    slot_t *sl = xmalloc(sizeof *sl);
    sl->op = op;
    sl->i = (size_t)-1;
    storage_count_async(sm_storage, u->bare, COLL_PRIVATE, got_one, sl);
}

static void private_get_done(priv_op_t *op)
{
    sm_iq_t *req = op->req;
    if (op->failed) {
        sm_iq_error(req, "internal-server-error", "wait");
        op_free(op);
        return;
    }
    xml_node_t *rq = xml_elem_new(NS_PRIVATE, "query");
    size_t i = 0;
    for (xml_node_t *c = xml_child(req->payload, NULL, NULL); c; c = xml_next(c, NULL, NULL), i++) {
        ns_group_t *g = &op->g[i];
        if (!g->found || append_stored(rq, req->user->bare, c->ns, g->val, g->len) < 0)
            xml_add_child(rq, c->ns, c->name);
    }
    sm_iq_reply(req, rq);
    op_free(op);
}

static void private_get(sm_iq_t *req, sm_user_t *u, xml_node_t *q)
{
    priv_op_t *op = xcalloc(1, sizeof *op);
    op->req = sm_iq_defer(req);
    (void)q;
    for (xml_node_t *c = xml_child(op->req->payload, NULL, NULL); c; c = xml_next(c, NULL, NULL))
        op->ng++;
    op->g = xcalloc(op->ng, sizeof *op->g);
    size_t i = 0;
    for (xml_node_t *c = xml_child(op->req->payload, NULL, NULL); c; c = xml_next(c, NULL, NULL))
        op->g[i++].ns = c->ns;
    read_all(op, u, 0);
}

static void private_set_stored(int ok, void *arg)
{
    sm_iq_t *req = arg;
    if (!ok) {
        log_info("event=private-set result=refused user=%s condition=internal-server-error", req->user->bare);
        sm_iq_error(req, "internal-server-error", "wait");
    } else {
        sm_iq_reply(req, NULL);
    }
}

static void private_set_done(priv_op_t *op)
{
    sm_iq_t *req = op->req;
    sm_user_t *u = req->user;
    size_t fresh = 0;
    for (size_t i = 0; i < op->ng; i++)
        fresh += !op->g[i].found;
    const char *err = NULL, *etype = "wait";
    if (op->failed || op->stored < 0)
        err = "internal-server-error";
    else if ((size_t)op->stored + fresh > PRIVATE_MAX_NS)
        err = "not-allowed", etype = "cancel";
    if (err) {
        log_info("event=private-set result=refused user=%s condition=%s", u->bare, err);
        sm_iq_error(req, err, etype);
        op_free(op);
        return;
    }
    sm_batch_t *b = sm_batch_new();
    for (size_t i = 0; i < op->ng; i++)
        sm_batch_put(b, u->bare, COLL_PRIVATE, op->g[i].ns, op->g[i].data.data, op->g[i].data.len);
    op_free(op);
    sm_batch_commit(b, private_set_stored, req);
}

static void private_finish(priv_op_t *op)
{
    if (op->req->set)
        private_set_done(op);
    else
        private_get_done(op);
}

static void private_set(sm_iq_t *req, sm_user_t *u, xml_node_t *q)
{
    size_t n = 0;
    for (xml_node_t *c = xml_child(q, NULL, NULL); c; c = xml_next(c, NULL, NULL))
        n++;
    ns_group_t *g = xcalloc(n, sizeof *g);
    size_t ng = 0;
    const char *err = NULL;
    for (xml_node_t *c = xml_child(q, NULL, NULL); c && !err; c = xml_next(c, NULL, NULL)) {
        size_t i = 0;
        while (i < ng && strcmp(g[i].ns, c->ns))
            i++;
        if (i == ng) {
            g[ng].ns = c->ns;
            strbuf_init(&g[ng].data);
            ng++;
        }
        xml_serialize(c, "", &g[i].data);
        if (g[i].data.len > PRIVATE_MAX)
            err = "not-acceptable";
    }
    priv_op_t *op = xcalloc(1, sizeof *op);
    op->g = g;
    op->ng = ng;
    if (err) {
        op_free(op);
        log_info("event=private-set result=refused user=%s condition=%s", u->bare, err);
        sm_iq_error(req, err, "modify");
        return;
    }
    /* The namespaces point into the request: the deferred copy's from here. */
    op->req = sm_iq_defer(req);
    size_t i = 0;
    for (xml_node_t *c = xml_child(op->req->payload, NULL, NULL); c && i < ng; c = xml_next(c, NULL, NULL)) {
        int seen = 0;
        for (size_t k = 0; k < i; k++)
            seen |= !strcmp(op->g[k].ns, c->ns);
        if (!seen)
            op->g[i++].ns = c->ns;
    }
    read_all(op, u, 1);
}

/* Only the account itself reads or writes its private storage. */
static void private_iq(sm_iq_t *req)
{
    if (!req->own) {
        sm_iq_error(req, "forbidden", "auth");
        return;
    }
    xml_node_t *q = req->payload;
    xml_node_t *first = xml_child(q, NULL, NULL);
    if (!first) {
        sm_iq_error(req, req->set ? "not-acceptable" : "bad-request", "modify");
        return;
    }
    for (xml_node_t *c = first; c; c = xml_next(c, NULL, NULL)) {
        if (reserved(c->ns)) {
            sm_iq_error(req, "not-acceptable", "modify");
            return;
        }
    }
    if (req->set)
        private_set(req, req->user, q);
    else
        private_get(req, req->user, q);
}

static void on_user_delete(sm_user_t *u)
{
    sm_store_del_all(u->bare, COLL_PRIVATE, NULL, NULL);
}

static const sm_hooks_t private_hooks = {
    .user_delete = on_user_delete,
};

static const sm_iq_handler_t private_iqs[] = {
    {NS_PRIVATE, SM_IQ_ACCOUNT, private_iq, private_iq, NULL},
    {NULL, 0, NULL, NULL, NULL},
};

static const char *const private_features[] = {NS_PRIVATE, NULL};

sm_module_t sm_module_private = {
    .name = "private",
    .help = "Private XML storage (XEP-0049).",
    .hooks = &private_hooks,
    .iqs = private_iqs,
    .server_features = private_features,
};
