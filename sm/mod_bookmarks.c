/* mod_bookmarks: XEP-0402 PEP native bookmarks kept in step with the older
 * forms clients still use (XEP-0402 "#compat" and "#compat-pep"):
 *
 * - urn:xmpp:bookmarks:1 (one PEP item per room, id = room JID, payload
 *   <conference xmlns='urn:xmpp:bookmarks:1'/>),
 * - XEP-0048 in private XML storage (XEP-0049): <storage
 *   xmlns='storage:bookmarks'/> under jabber:iq:private,
 * - XEP-0048 over PEP: node storage:bookmarks, item "current".
 *
 * A change through any one of them is written to the two others: a
 * publish or retraction on urn:xmpp:bookmarks:1 (mod_pep's observer)
 * rebuilds the <storage/> (keeping its <url/>s) for private storage and the
 * legacy node; a private-storage set of storage:bookmarks (seen in the
 * session's outgoing iq, before mod_private stores it) or a publish on the
 * legacy node replaces the urn:xmpp:bookmarks:1 items (rooms no longer
 * listed are retracted) and the other legacy copy. Writes made here do not
 * trigger the observers again.
 *
 * Storage: through mod_pep (its nodes) and the documented record of
 * mod_private (collection "private", key = namespace, value = the
 * serialized elements), written with the asynchronous API while the user is
 * held. No per-user state. */
#include "mod_pep.h"
#include "module.h"
#include "log.h"
#include "xml_stream.h"
#include <stdlib.h>
#include <string.h>

#define NS_BM2 "urn:xmpp:bookmarks:1"
#define NS_BM "storage:bookmarks"
#define NS_PRIVATE "jabber:iq:private"
#define COLL_PRIVATE "private"

extern sm_module_t sm_module_bookmarks;

static int truthy(const char *v)
{
    return v && (!strcmp(v, "1") || !strcmp(v, "true"));
}

static void copy_text_child(const xml_node_t *from, const char *from_ns, xml_node_t *to, const char *to_ns,
                            const char *name)
{
    xml_node_t *c = xml_child(from, from_ns, name);
    if (!c)
        return;
    char *t = xml_text(c);
    xml_add_text(xml_add_child(to, to_ns, name), t, strlen(t));
    free(t);
}

/* XEP-0048 <conference jid=.../> -> XEP-0402 payload. */
static xml_node_t *conf_to_402(const xml_node_t *c)
{
    xml_node_t *n = xml_elem_new(NS_BM2, "conference");
    if (xml_attr_get(c, "name"))
        xml_attr_set(n, "name", xml_attr_get(c, "name"));
    xml_attr_set(n, "autojoin", truthy(xml_attr_get(c, "autojoin")) ? "true" : "false");
    copy_text_child(c, NS_BM, n, NS_BM2, "nick");
    copy_text_child(c, NS_BM, n, NS_BM2, "password");
    return n;
}

/* XEP-0402 item -> XEP-0048 <conference/> appended to storage. */
static void conf_from_402(const char *id, const xml_node_t *item, void *arg)
{
    xml_node_t *storage = arg;
    xml_node_t *c = xml_child(item, NS_BM2, "conference");
    if (!c)
        return;
    xml_node_t *o = xml_add_child(storage, NS_BM, "conference");
    xml_attr_set(o, "jid", id);
    if (xml_attr_get(c, "name"))
        xml_attr_set(o, "name", xml_attr_get(c, "name"));
    xml_attr_set(o, "autojoin", truthy(xml_attr_get(c, "autojoin")) ? "true" : "false");
    copy_text_child(c, NS_BM2, o, NS_BM, "nick");
    copy_text_child(c, NS_BM2, o, NS_BM, "password");
}

static void private_written(storage_res_t *res, void *arg)
{
    sm_user_t *u = arg;
    if (res->status < 0)
        log_warn("event=bookmarks-sync result=error user=%s what=private", u->bare);
    sm_user_release(u);
}

static void write_private(sm_user_t *u, const xml_node_t *storage)
{
    if (!sm_module_enabled(&sm_module_bookmarks))
        return;
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(storage, "", &sb);
    sm_user_hold(u);
    storage_put_async(sm_storage, u->bare, COLL_PRIVATE, NS_BM, sb.data, sb.len, private_written, u);
    strbuf_free(&sb);
}

typedef struct ids {
    char **v;
    size_t n;
} ids_t;

static void collect_id(const char *id, const xml_node_t *item, void *arg)
{
    (void)item;
    ids_t *ids = arg;
    ids->v = xrealloc(ids->v, (ids->n + 1) * sizeof *ids->v);
    ids->v[ids->n++] = xstrdup(id);
}

static int storage_has(const xml_node_t *storage, const char *jid)
{
    for (xml_node_t *c = xml_child(storage, NS_BM, "conference"); c; c = xml_next(c, NS_BM, "conference"))
        if (sm_streq(xml_attr_get(c, "jid"), jid))
            return 1;
    return 0;
}

enum origin { FROM_PRIVATE, FROM_LEGACY_PEP };

/* A XEP-0048 <storage/> became the truth: the XEP-0402 items follow it, and
 * the legacy copy it did not come from. */
static void from_legacy(sm_user_t *u, const xml_node_t *storage, enum origin origin)
{
    size_t n = 0;
    for (xml_node_t *c = xml_child(storage, NS_BM, "conference"); c; c = xml_next(c, NS_BM, "conference")) {
        const char *jid = xml_attr_get(c, "jid");
        if (!jid || !*jid)
            continue;
        xml_node_t *p = conf_to_402(c);
        pep_put(u, NS_BM2, jid, p, PN_WHITELIST, PN_MAX_ITEMS_MAX);
        xml_free(p);
        n++;
    }
    ids_t ids = {NULL, 0};
    pep_foreach(u, NS_BM2, collect_id, &ids);
    for (size_t i = 0; i < ids.n; i++) {
        if (!storage_has(storage, ids.v[i]))
            pep_del(u, NS_BM2, ids.v[i]);
        free(ids.v[i]);
    }
    free(ids.v);
    if (origin == FROM_PRIVATE)
        pep_put(u, NS_BM, "current", storage, PN_WHITELIST, 1);
    else
        write_private(u, storage);
    log_debug("event=bookmarks-sync user=%s from=%s rooms=%zu", u->bare,
              origin == FROM_PRIVATE ? "private" : "legacy-pep", n);
}

/* XEP-0402 changed: rebuild the XEP-0048 form for both legacy places,
 * keeping the <url/>s the legacy copy had. */
static void on_bm2(sm_user_t *u, const char *node, const char *id, const xml_node_t *item)
{
    (void)node;
    (void)id;
    (void)item;
    xml_node_t *storage = xml_elem_new(NS_BM, "storage");
    pep_foreach(u, NS_BM2, conf_from_402, storage);
    const xml_node_t *old = pep_get(u, NS_BM, "current");
    const xml_node_t *os = old ? xml_child(old, NS_BM, "storage") : NULL;
    for (xml_node_t *c = os ? xml_child(os, NS_BM, "url") : NULL; c; c = xml_next(c, NS_BM, "url"))
        xml_append(storage, xml_copy(c));
    pep_put(u, NS_BM, "current", storage, PN_WHITELIST, 1);
    write_private(u, storage);
    log_debug("event=bookmarks-sync user=%s from=bookmarks2", u->bare);
    xml_free(storage);
}

static void on_legacy_pep(sm_user_t *u, const char *node, const char *id, const xml_node_t *item)
{
    (void)node;
    (void)id;
    const xml_node_t *storage = item ? xml_child(item, NS_BM, "storage") : NULL;
    if (storage)
        from_legacy(u, storage, FROM_LEGACY_PEP);
}

/* A private-storage set of storage:bookmarks by the account's own session:
 * taken note of, then left to mod_private. */
static sm_ret_t on_iq_out(sm_sess_t *s, xml_node_t *iq)
{
    const char *to = xml_attr_get(iq, "to");
    if (!sm_streq(xml_attr_get(iq, "type"), "set") || (to && strcmp(to, s->user->bare)))
        return SM_PASS;
    xml_node_t *q = xml_child(iq, NS_PRIVATE, "query");
    xml_node_t *storage = q ? xml_child(q, NS_BM, "storage") : NULL;
    if (storage)
        from_legacy(s->user, storage, FROM_PRIVATE);
    return SM_PASS;
}

static int bookmarks_init(void)
{
    pep_observe(NS_BM2, on_bm2);
    pep_observe(NS_BM, on_legacy_pep);
    return 0;
}

static const sm_hooks_t bookmarks_hooks = {
    .iq_out = on_iq_out,
};

static const char *const bookmarks_account_features[] = {NS_BM2 "#compat", NS_BM2 "#compat-pep", NULL};

sm_module_t sm_module_bookmarks = {
    .name = "bookmarks",
    .help = "Bookmarks: XEP-0402 (PEP) kept in step with XEP-0048 in private storage and in PEP.",
    .init = bookmarks_init,
    .hooks = &bookmarks_hooks,
    .account_features = bookmarks_account_features,
};
