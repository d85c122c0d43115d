/* mod_disco: XEP-0030 service discovery for the served domain and for the
 * accounts it hosts.
 *
 * - The domain ('to' set to the domain): disco#info answers identity
 *   server/im named by version.name (mod_version), the features disco#info
 *   and disco#items, and every loaded module's server features (and what
 *   the disco_server hooks add). disco#items answers an empty list: no
 *   component is announced yet.
 * - An account's bare JID (or no 'to' from the account's own session): the
 *   owner and contacts with a 'from' or 'both' subscription get identity
 *   account/registered with disco#info, disco#items and the modules' account
 *   features (and what the disco_account hooks add); items are
 *   an empty list (PEP nodes come later). Anyone else gets service-unavailable,
 *   the same answer as for an account that does not exist, so disco reveals
 *   nothing about an account to a stranger (XEP-0030 sections 3.1 and 9).
 * - A 'node' of the domain is answered by the module that knows it (the
 *   disco_server_node hooks: mod_adhoc's commands node and command nodes).
 * - A 'node' nobody knows: item-not-found. An iq set: not-allowed (disco is
 *   get-only). Results and errors are never answered.
 *
 * Invariant: a disco#info answer never lists a feature twice, whatever the
 * modules add (entity capabilities hashes depend on it). No per-user state. */
#include "mod_roster.h"
#include "mod_version.h"
#include "module.h"
#include <stdlib.h>
#include <string.h>

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

/* A node of the domain: answered if a module knows it. Returns 1 when req
 * was answered. */
static int server_node(sm_iq_t *req, int items)
{
    const char *node = xml_attr_get(req->payload, "node");
    if (req->user || !node)
        return 0;
    xml_node_t *rq = xml_elem_new(items ? NS_DISCO_ITEMS : NS_DISCO_INFO, "query");
    xml_attr_set(rq, "node", node);
    if (sm_disco_server_node(req->from_bare, node, items, rq)) {
        sm_iq_reply(req, rq);
    } else {
        xml_free(rq);
        sm_iq_error(req, "item-not-found", "cancel");
    }
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
    sm_disco_features(rq, req->user == NULL, req->user, req->sess);
    dedup_features(rq);
    sm_iq_reply(req, rq);
}

static void disco_items(sm_iq_t *req)
{
    if (req->user && !may_see(req)) {
        sm_iq_error(req, "service-unavailable", "cancel");
        return;
    }
    if (!server_node(req, 1) && known_node(req))
        sm_iq_reply(req, xml_elem_new(NS_DISCO_ITEMS, "query"));
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

sm_module_t sm_module_disco = {
    .name = "disco",
    .help = "Service discovery (XEP-0030) of the domain and of accounts.",
    .iqs = disco_iqs,
};
