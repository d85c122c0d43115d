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

static void private_get(sm_iq_t *req, sm_user_t *u, xml_node_t *q)
{
    xml_node_t *rq = xml_elem_new(NS_PRIVATE, "query");
    for (xml_node_t *c = xml_child(q, NULL, NULL); c; c = xml_next(c, NULL, NULL)) {
        char *val = NULL;
        size_t len = 0;
        int r = storage_get(sm_storage, u->bare, COLL_PRIVATE, c->ns, &val, &len);
        if (r < 0) {
            xml_free(rq);
            sm_iq_error(req, "internal-server-error", "wait");
            return;
        }
        if (r == 1 || append_stored(rq, u->bare, c->ns, val, len) < 0)
            xml_add_child(rq, c->ns, c->name);
        free(val);
    }
    sm_iq_reply(req, rq);
}

typedef struct ns_group {
    const char *ns;
    strbuf_t data;
} ns_group_t;

static void private_set(sm_iq_t *req, sm_user_t *u, xml_node_t *q)
{
    size_t n = 0;
    for (xml_node_t *c = xml_child(q, NULL, NULL); c; c = xml_next(c, NULL, NULL))
        n++;
    ns_group_t *g = xcalloc(n, sizeof *g);
    size_t ng = 0;
    const char *err = NULL, *etype = "modify";
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
    if (!err) {
        int stored = storage_count(sm_storage, u->bare, COLL_PRIVATE);
        size_t fresh = 0;
        for (size_t i = 0; i < ng; i++) {
            char *v = NULL;
            size_t l = 0;
            if (storage_get(sm_storage, u->bare, COLL_PRIVATE, g[i].ns, &v, &l) == 1)
                fresh++;
            free(v);
        }
        if (stored < 0) {
            err = "internal-server-error";
            etype = "wait";
        } else if ((size_t)stored + fresh > PRIVATE_MAX_NS) {
            err = "not-allowed";
            etype = "cancel";
        }
    }
    if (!err) {
        int r = storage_begin(sm_storage);
        for (size_t i = 0; i < ng && r == 0; i++)
            r = storage_put(sm_storage, u->bare, COLL_PRIVATE, g[i].ns, g[i].data.data, g[i].data.len);
        if (r == 0)
            r = storage_commit(sm_storage);
        else
            storage_rollback(sm_storage);
        if (r != 0) {
            err = "internal-server-error";
            etype = "wait";
        }
    }
    for (size_t i = 0; i < ng; i++)
        strbuf_free(&g[i].data);
    free(g);
    if (err) {
        log_info("event=private-set result=refused user=%s condition=%s", u->bare, err);
        sm_iq_error(req, err, etype);
        return;
    }
    sm_iq_reply(req, NULL);
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
    storage_del_all(sm_storage, u->bare, COLL_PRIVATE);
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
