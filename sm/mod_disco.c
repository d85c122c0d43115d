/* mod_disco: XEP-0030 service discovery for the served domain and for the
 * accounts it hosts.
 *
 * - The domain (SM_HOOK_SERVER, 'to' set to the domain): disco#info answers
 *   identity server/im named by version.name, the features disco#info and
 *   disco#items, and every feature other modules add on
 *   SM_HOOK_DISCO_FEATURES. disco#items answers an empty list: no component
 *   is announced yet.
 * - An account's bare JID (SM_HOOK_IN_BARE, or SM_HOOK_OUT when a session asks
 *   about its own account with no 'to'): the owner and contacts with a 'from'
 *   or 'both' subscription get identity account/registered with disco#info,
 *   disco#items and the features added on SM_HOOK_ACCOUNT_FEATURES; items are
 *   an empty list (PEP nodes come later). Anyone else gets service-unavailable,
 *   the same answer as for an account that does not exist, so disco reveals
 *   nothing about an account to a stranger (XEP-0030 sections 3.1 and 9).
 * - A 'node' we do not know: item-not-found. An iq set: not-allowed (disco is
 *   get-only). Results and errors are never answered.
 *
 * Invariant: a disco#info answer never lists a feature twice, whatever the
 * modules add (entity capabilities hashes depend on it). No per-user state. */
#include "sm.h"
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

/* The disco query of an iq, or NULL; *info says which of the two it is. */
static xml_node_t *disco_query(const xml_node_t *iq, int *info)
{
    if (strcmp(iq->name, "iq"))
        return NULL;
    xml_node_t *q = xml_child(iq, NS_DISCO_INFO, "query");
    *info = q != NULL;
    return q ? q : xml_child(iq, NS_DISCO_ITEMS, "query");
}

/* Common checks; returns 1 when the caller should build a result. */
static int acceptable(xml_node_t *iq, const xml_node_t *q)
{
    const char *type = xml_attr_get(iq, "type");
    if (sm_streq(type, "set")) {
        sm_reply_error(iq, "not-allowed", "cancel");
        return 0;
    }
    if (!sm_streq(type, "get"))
        return 0;                               /* results and errors end here */
    if (xml_attr_get(q, "node")) {
        sm_reply_error(iq, "item-not-found", "cancel");
        return 0;
    }
    return 1;
}

static void server_disco(sm_sess_t *s, xml_node_t *iq, xml_node_t *q, int info)
{
    if (!acceptable(iq, q))
        return;
    xml_node_t *res = sm_iq_result(iq);
    if (info) {
        xml_node_t *rq = xml_add_child(res, NS_DISCO_INFO, "query");
        xml_node_t *id = xml_add_child(rq, NS_DISCO_INFO, "identity");
        xml_attr_set(id, "category", "server");
        xml_attr_set(id, "type", "im");
        const char *name = sm_config->version_name;
        xml_attr_set(id, "name", name && *name ? name : "weft");
        add_feature(rq, NS_DISCO_INFO);
        add_feature(rq, NS_DISCO_ITEMS);
        sm_hook_run(SM_HOOK_DISCO_FEATURES, s ? s->user : NULL, s, rq);
        dedup_features(rq);
    } else {
        xml_add_child(res, NS_DISCO_ITEMS, "query");
    }
    sm_answer(s, res);
}

static void account_disco(sm_user_t *u, sm_sess_t *s, xml_node_t *iq, xml_node_t *q, int info)
{
    if (!acceptable(iq, q))
        return;
    xml_node_t *res = sm_iq_result(iq);
    if (info) {
        xml_node_t *rq = xml_add_child(res, NS_DISCO_INFO, "query");
        xml_node_t *id = xml_add_child(rq, NS_DISCO_INFO, "identity");
        xml_attr_set(id, "category", "account");
        xml_attr_set(id, "type", "registered");
        add_feature(rq, NS_DISCO_INFO);
        add_feature(rq, NS_DISCO_ITEMS);
        sm_hook_run(SM_HOOK_ACCOUNT_FEATURES, u, s, rq);
        dedup_features(rq);
    } else {
        xml_add_child(res, NS_DISCO_ITEMS, "query");
    }
    sm_answer(s, res);
}

/* 1 if the sender of st may see disco information of account u: the owner
 * or a contact u shares presence with (subscription 'from' or 'both'). */
static int may_see(sm_user_t *u, const xml_node_t *st)
{
    const char *from = xml_attr_get(st, "from");
    char *fb = from ? jid_bare_of(from) : NULL;
    if (!fb)
        return 0;
    int ok = !strcmp(fb, u->bare);
    if (!ok) {
        int sub = sm_roster_sub(u, fb);
        ok = sub >= 0 && (sub & SM_SUB_FROM);
    }
    free(fb);
    return ok;
}

static sm_ret_t on_out(sm_hook_t hook, sm_user_t *u, sm_sess_t *s, xml_node_t *st, void *arg)
{
    (void)hook;
    (void)arg;
    int info;
    xml_node_t *q = disco_query(st, &info);
    if (!q)
        return SM_PASS;
    const char *to = xml_attr_get(st, "to");
    if (to && strcmp(to, u->bare))
        return SM_PASS;                         /* the domain or someone else: routed */
    account_disco(u, s, st, q, info);
    return SM_HANDLED;
}

static sm_ret_t on_server(sm_hook_t hook, sm_user_t *u, sm_sess_t *s, xml_node_t *st, void *arg)
{
    (void)hook;
    (void)u;
    (void)arg;
    int info;
    xml_node_t *q = disco_query(st, &info);
    if (!q)
        return SM_PASS;
    server_disco(s, st, q, info);
    return SM_HANDLED;
}

static sm_ret_t on_in_bare(sm_hook_t hook, sm_user_t *u, sm_sess_t *s, xml_node_t *st, void *arg)
{
    (void)hook;
    (void)arg;
    int info;
    xml_node_t *q = disco_query(st, &info);
    if (!q)
        return SM_PASS;
    if (!may_see(u, st)) {
        const char *type = xml_attr_get(st, "type");
        if (sm_streq(type, "get") || sm_streq(type, "set"))
            sm_reply_error(st, "service-unavailable", "cancel");
        return SM_HANDLED;
    }
    /* s is set only for an iq a session sent without 'to' (its own account). */
    account_disco(u, s, st, q, info);
    return SM_HANDLED;
}

void mod_disco_init(void)
{
    sm_hook_add(SM_HOOK_OUT, on_out, NULL);
    sm_hook_add(SM_HOOK_SERVER, on_server, NULL);
    sm_hook_add(SM_HOOK_IN_BARE, on_in_bare, NULL);
}
