/* mod_disco: XEP-0030 service discovery for the served domain and for the
 * accounts it hosts.
 *
 * - The domain ('to' set to the domain): disco#info answers identity
 *   server/im named by version.name (mod_version), the features disco#info
 *   and disco#items, and every loaded module's server features (and what
 *   the disco_server hooks add). disco#items lists the names of disco.items
 *   (the domain's services: upload.localhost, conference.localhost) that
 *   some component has bound on the router right now, as its availability
 *   notices tell (the component_change hook): a service that is not running
 *   is not offered to clients.
 * - An account's bare JID (or no 'to' from the account's own session): the
 *   owner and contacts with a 'from' or 'both' subscription get identity
 *   account/registered with disco#info, disco#items and the modules' account
 *   features (and what the disco_account hooks add); items are
 *   an empty list (PEP nodes come later). Anyone else gets service-unavailable,
 *   the same answer as for an account that does not exist, so disco reveals
 *   nothing about an account to a stranger (XEP-0030 sections 3.1 and 9).
 * - A 'node' of the domain is answered by the module that knows it (the
 *   disco_server_node hooks: mod_adhoc's commands node and command nodes).
 *   A node "anything#ver" nobody knows, where ver is the XEP-0115 hash of
 *   the domain's own answer, is the caps node of the server's caps that c2s
 *   puts in its stream features (docs/c2s.md): it gets that same answer, as
 *   XEP-0115 section 6.2 has clients ask. The domain lists the caps feature.
 * - A 'node' nobody knows: item-not-found. An iq set: not-allowed (disco is
 *   get-only). Results and errors are never answered.
 *
 * Invariant: a disco#info answer never lists a feature twice, whatever the
 * modules add (entity capabilities hashes depend on it). No per-user state. */
#include "caps_hash.h"
#include "mod_roster.h"
#include "mod_version.h"
#include "module.h"
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct disco_cfg {
    char *items;              /* space-separated JIDs listed while bound */
} disco_cfg_t;

extern sm_module_t sm_module_disco;

/* (name, instance) pairs the router says are up. */
typedef struct disco_up {
    char *name;
    char *instance;
} disco_up_t;
static disco_up_t *ups;
static size_t nups;

static void disco_component_change(const char *name, const char *instance, int up)
{
    for (size_t i = 0; i < nups; i++) {
        if (strcmp(ups[i].name, name) || strcmp(ups[i].instance, instance))
            continue;
        if (!up) {
            free(ups[i].name);
            free(ups[i].instance);
            ups[i] = ups[--nups];
        }
        return;
    }
    if (!up)
        return;
    ups = xrealloc(ups, (nups + 1) * sizeof *ups);
    ups[nups].name = xstrdup(name);
    ups[nups].instance = xstrdup(instance);
    nups++;
}

static int name_up(const char *name, size_t n)
{
    for (size_t i = 0; i < nups; i++)
        if (strlen(ups[i].name) == n && !strncmp(ups[i].name, name, n))
            return 1;
    return 0;
}

/* The domain's disco#items: the configured names that are bound now. */
static void add_items(xml_node_t *q)
{
    const disco_cfg_t *cfg = sm_module_config(&sm_module_disco);
    const char *p = cfg->items ? cfg->items : "";
    while (*p) {
        p += strspn(p, " \t\n,");
        size_t n = strcspn(p, " \t\n,");
        if (n && name_up(p, n)) {
            char *jid = xstrndup(p, n);
            xml_attr_set(xml_add_child(q, q->ns, "item"), "jid", jid);
            free(jid);
        }
        p += n;
    }
}

static void disco_free(void)
{
    for (size_t i = 0; i < nups; i++) {
        free(ups[i].name);
        free(ups[i].instance);
    }
    free(ups);
    ups = NULL;
    nups = 0;
}

#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"

static void add_feature(xml_node_t *q, const char *var)
{
    xml_node_t *f = xml_add_child(q, NS_DISCO_INFO, "feature");
    xml_attr_set(f, "var", var);
}

/* Removes every <feature/> whose var appeared before it (and those without var). */
static void dedup_features(xml_node_t *q)
{
    xml_node_t *f = xml_child(q, NS_DISCO_INFO, "feature");
    while (f) {
        xml_node_t *next = xml_next(f, NS_DISCO_INFO, "feature");
        const char *var = xml_attr_get(f, "var");
        int dup = !var;
        for (xml_node_t *p = xml_child(q, NS_DISCO_INFO, "feature"); p && p != f && !dup;
             p = xml_next(p, NS_DISCO_INFO, "feature"))
            dup = sm_streq(xml_attr_get(p, "var"), var);
        if (dup) {
            xml_detach(f);
            xml_free(f);
        }
        f = next;
    }
}

/* 1 if the sender may see disco information of the account: the owner or a
 * contact the account shares presence with (subscription 'from' or 'both'). */
static int may_see(const sm_iq_t *req)
{
    if (req->own)
        return 1;
    if (!req->from_bare)
        return 0;
    int sub = sm_roster_sub(req->user, req->from_bare);
    return sub >= 0 && (sub & SM_SUB_FROM);
}

static int known_node(sm_iq_t *req)
{
    if (!xml_attr_get(req->payload, "node"))
        return 1;
    sm_iq_error(req, "item-not-found", "cancel");
    return 0;
}

/* The disco#info of the domain (req->user NULL) or of req's account, as a
 * new <query/> without a node. */
static xml_node_t *info_query(const sm_iq_t *req)
{
    xml_node_t *rq = xml_elem_new(NS_DISCO_INFO, "query");
    xml_node_t *id = xml_add_child(rq, NS_DISCO_INFO, "identity");
    if (req->user) {
        xml_attr_set(id, "category", "account");
        xml_attr_set(id, "type", "registered");
    } else {
        xml_attr_set(id, "category", "server");
        xml_attr_set(id, "type", "im");
        xml_attr_set(id, "name", sm_version_name());
    }
    add_feature(rq, NS_DISCO_INFO);
    add_feature(rq, NS_DISCO_ITEMS);
    if (!req->user)
        add_feature(rq, CAPS_NS);
    sm_disco_features(rq, req->user == NULL, req->user, req->sess);
    dedup_features(rq);
    return rq;
}

/* The domain's XEP-0115 caps node (node#ver, ver the hash of the domain's
 * answer; the node part is c2s's caps.node, which the sm need not know):
 * the domain's answer with the node set. NULL when node is not one. */
static xml_node_t *caps_node_info(const sm_iq_t *req, const char *node)
{
    const char *hash = strrchr(node, '#');
    if (!hash)
        return NULL;
    xml_node_t *rq = info_query(req);
    char *ver = caps_hash_ver(rq);
    int ok = ver && !strcmp(ver, hash + 1);
    free(ver);
    if (!ok) {
        xml_free(rq);
        return NULL;
    }
    xml_attr_set(rq, "node", node);
    return rq;
}

/* A node of the domain: answered if a module knows it, or if it is the
 * domain's caps node. Returns 1 when req was answered. */
static int server_node(sm_iq_t *req, int items)
{
    const char *node = xml_attr_get(req->payload, "node");
    if (req->user || !node)
        return 0;
    xml_node_t *rq = xml_elem_new(items ? NS_DISCO_ITEMS : NS_DISCO_INFO, "query");
    xml_attr_set(rq, "node", node);
    if (sm_disco_server_node(req->from_bare, node, items, rq)) {
        sm_iq_reply(req, rq);
        return 1;
    }
    xml_free(rq);
    rq = items ? NULL : caps_node_info(req, node);
    if (rq)
        sm_iq_reply(req, rq);
    else
        sm_iq_error(req, "item-not-found", "cancel");
    return 1;
}

static void disco_info(sm_iq_t *req)
{
    if (req->user && !may_see(req)) {
        sm_iq_error(req, "service-unavailable", "cancel");
        return;
    }
    if (server_node(req, 0) || !known_node(req))
        return;
    sm_iq_reply(req, info_query(req));
}

static void disco_items(sm_iq_t *req)
{
    if (req->user && !may_see(req)) {
        sm_iq_error(req, "service-unavailable", "cancel");
        return;
    }
    if (server_node(req, 1) || !known_node(req))
        return;
    xml_node_t *q = xml_elem_new(NS_DISCO_ITEMS, "query");
    if (!req->user)
        add_items(q);
    sm_iq_reply(req, q);
}

/* Disco is get-only; a stranger still learns nothing about an account. */
static void disco_set(sm_iq_t *req)
{
    if (req->user && !may_see(req))
        sm_iq_error(req, "service-unavailable", "cancel");
    else
        sm_iq_error(req, "not-allowed", "cancel");
}

static const sm_iq_handler_t disco_iqs[] = {
    {NS_DISCO_INFO, SM_IQ_SERVER | SM_IQ_ACCOUNT, disco_info, disco_set, NULL},
    {NS_DISCO_ITEMS, SM_IQ_SERVER | SM_IQ_ACCOUNT, disco_items, disco_set, NULL},
    {NULL, 0, NULL, NULL, NULL},
};

static const cfg_option_t disco_options[] = {
    {"items", CFG_STRING, "", 0, 0, 1, offsetof(disco_cfg_t, items), NULL,
     "Services (JIDs, space separated) the domain's disco#items lists while a component has them bound, e.g. upload.example.org conference.example.org."},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, NULL},
};

static const sm_hooks_t disco_hooks = {
    .component_change = disco_component_change,
};

sm_module_t sm_module_disco = {
    .name = "disco",
    .help = "Service discovery (XEP-0030) of the domain and of accounts.",
    .free = disco_free,
    .options = disco_options,
    .config_size = sizeof(disco_cfg_t),
    .hooks = &disco_hooks,
    .iqs = disco_iqs,
};
