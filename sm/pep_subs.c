/* pep_subs: explicit subscriptions and affiliations of PEP nodes (XEP-0060
 * 5.6, 5.7, 6.1, 6.2, 8.8, 8.9), beside mod_pep's implicit (caps +notify)
 * delivery.
 *
 * - A contact subscribes a JID of its own (bare or full) to a node when the
 *   node's access model, or an affiliation, lets it read the node; the
 *   subscription then gets every notification, caps or not, and the last
 *   item at once (6.1.7). One subscription per JID and node: no subid.
 * - Affiliations (by bare JID): member reads any node (a whitelist node's
 *   readers), publisher also publishes and retracts, owner also manages the
 *   node; publish-only publishes and retracts its own items but neither
 *   reads nor subscribes (XEP-0060 4.1); outcast is refused everything.
 *   The account itself is always the owner and cannot be changed.
 * - Both live in the node's storage record (pep_op_put_node), so they go
 *   with the node and with the account. A subscription the access model no
 *   longer allows (the contact's presence subscription ended, the model or
 *   an affiliation changed) is removed (pep_subs_prune*), and checked again
 *   at each notification.
 * - Bounds: max-subscriptions and max-affiliations per node (options). */
#include "jid.h"
#include "log.h"
#include "pep_internal.h"
#include <stdlib.h>
#include <string.h>

/* --- checks used by mod_pep.c ----------------------------------------------------------- */

int pep_subs_may_write(const sm_iq_t *req, pep_user_t *p, const xml_node_t *op, int owner_ns)
{
    const char *name = xml_attr_get(op, "node");
    pn_node_t *n = name && req->from_bare ? pep_node_find(p, name) : NULL;
    if (!n)
        return 0;
    int aff = pn_jidmap_get(&n->affs, req->from_bare);
    if (owner_ns)
        return aff == PN_AFF_OWNER && strcmp(op->name, "default");
    return req->set && (aff == PN_AFF_OWNER || aff == PN_AFF_PUBLISHER || aff == PN_AFF_PUBLISH_ONLY) &&
           (!strcmp(op->name, "publish") || !strcmp(op->name, "retract"));
}

int pep_subs_covers(const pn_node_t *n, const char *jid, const char *bare)
{
    return n->subs.n && (pn_jidmap_get(&n->subs, jid) >= 0 || pn_jidmap_get(&n->subs, bare) >= 0);
}

int pep_subs_allowed(sm_user_t *u, const pn_node_t *n, const char *jid)
{
    char *bare = jid_bare_of(jid);
    int ok = bare && pep_may_read(u, n, bare);
    free(bare);
    return ok;
}

size_t pep_subs_prune_node(sm_user_t *u, pn_node_t *n, const char *bare)
{
    size_t k = 0;
    for (size_t i = n->subs.n; i-- > 0;) {
        char *b = jid_bare_of(n->subs.e[i].jid);
        if (b && (!bare || !strcmp(b, bare)) && !pep_may_read(u, n, b)) {
            log_info("event=pep-unsubscribe reason=not-allowed user=%s node=%s jid=%s", u->bare, n->name,
                     n->subs.e[i].jid);
            char *jid = xstrdup(n->subs.e[i].jid);
            pn_jidmap_del(&n->subs, jid);
            free(jid);
            k++;
        }
        free(b);
    }
    return k;
}

void pep_subs_prune(sm_user_t *u, pep_user_t *p, const char *bare)
{
    pep_op_t *o = NULL;
    for (size_t i = 0; i < p->nnodes; i++) {
        if (!pep_subs_prune_node(u, p->nodes[i], bare))
            continue;
        if (!o)
            o = pep_op_new();
        pep_op_put_node(o, u->bare, p->nodes[i]);
    }
    if (o)
        pep_op_done(o);
}

/* --- a subscriber's requests (6.1, 6.2, 5.6, 5.7) ----------------------------------------- */

/* The prepared JID of el's 'jid' attribute into j; -1 after answering the
 * error (missing: jid-required, invalid: invalid-jid). */
static int jid_of(sm_iq_t *req, const xml_node_t *el, jid_t *j)
{
    const char *s = xml_attr_get(el, "jid");
    if (!s || !*s) {
        pep_perr(req, "bad-request", "modify", "jid-required");
        return -1;
    }
    if (jid_parse(s, j) != JID_OK) {
        pep_perr(req, "bad-request", "modify", "invalid-jid");
        return -1;
    }
    return 0;
}

static xml_node_t *subscription_el(xml_node_t *parent, const char *ns, const char *node, const char *jid,
                                   const char *state)
{
    xml_node_t *s = xml_add_child(parent, ns, "subscription");
    if (node)
        xml_attr_set(s, "node", node);
    xml_attr_set(s, "jid", jid);
    xml_attr_set(s, "subscription", state);
    return s;
}

static void do_subscribe(sm_iq_t *req, int deferred, sm_user_t *u, pep_user_t *p, const xml_node_t *el)
{
    const char *name = pep_node_of(req, el);
    jid_t j;
    if (!name || jid_of(req, el, &j) < 0)
        return;
    pn_node_t *n = pep_node_find(p, name);
    if (!req->from_bare || strcmp(j.bare, req->from_bare)) {
        pep_perr(req, "bad-request", "modify", "invalid-jid");          /* 6.1.3.1 */
    } else if (!n) {
        sm_iq_error(req, "item-not-found", "cancel");                   /* 6.1.3.12 */
    } else if (!pep_may_read(u, n, j.bare)) {
        log_info("event=pep-subscribe result=refused user=%s node=%s jid=%s", u->bare, name, j.full);
        pep_deny(req, n);                                               /* 6.1.3.2-4, 8 */
    } else if (pn_jidmap_get(&n->subs, j.full) < 0 && n->subs.n >= (size_t)pep_cfg()->max_subscriptions) {
        log_info("event=pep-subscribe result=refused reason=max-subscriptions user=%s node=%s", u->bare, name);
        pep_perr(req, "policy-violation", "wait", "too-many-subscriptions");   /* 6.1.3.9 */
    } else {
        int existed = pn_jidmap_get(&n->subs, j.full) >= 0;
        pep_op_t *o = pep_op_begin(req, deferred);
        if (!existed) {
            pn_jidmap_set(&n->subs, j.full, 1);
            pep_op_put_node(o, u->bare, n);
            log_info("event=pep-subscribe user=%s node=%s jid=%s", u->bare, n->name, j.full);
        }
        xml_node_t *r = xml_elem_new(NS_PUBSUB, "pubsub");
        subscription_el(r, NS_PUBSUB, n->name, j.full, "subscribed");
        o->reply = r;
        o->after = pep_last_item_message(u, n, j.full);                 /* 6.1.7 */
        pep_op_done(o);
    }
    jid_clear(&j);
}

static void do_unsubscribe(sm_iq_t *req, int deferred, sm_user_t *u, pep_user_t *p, const xml_node_t *el)
{
    const char *name = pep_node_of(req, el);
    jid_t j;
    if (!name || jid_of(req, el, &j) < 0)
        return;
    pn_node_t *n = pep_node_find(p, name);
    if (!n) {
        sm_iq_error(req, "item-not-found", "cancel");                   /* 6.2.3.4 */
    } else if (!req->own && (!req->from_bare || strcmp(j.bare, req->from_bare))) {
        sm_iq_error(req, "forbidden", "auth");                          /* 6.2.3.3 */
    } else if (pn_jidmap_del(&n->subs, j.full) < 0) {
        pep_perr(req, "unexpected-request", "cancel", "not-subscribed"); /* 6.2.3.2 */
    } else {
        log_info("event=pep-unsubscribe user=%s node=%s jid=%s", u->bare, n->name, j.full);
        pep_op_t *o = pep_op_begin(req, deferred);
        pep_op_put_node(o, u->bare, n);
        pep_op_done(o);
    }
    jid_clear(&j);
}

/* The node named by el's optional 'node' attribute into *n (NULL: every
 * node); -1 after answering item-not-found. */
static int optional_node(sm_iq_t *req, pep_user_t *p, const xml_node_t *el, pn_node_t **n)
{
    const char *name = xml_attr_get(el, "node");
    *n = NULL;
    if (!name || !*name)
        return 0;
    if (!(*n = pep_node_find(p, name))) {
        sm_iq_error(req, "item-not-found", "cancel");
        return -1;
    }
    return 0;
}

/* 5.6: the requester's subscriptions (its bare JID's and its resources'). */
static void own_subscriptions(sm_iq_t *req, pep_user_t *p, const xml_node_t *el)
{
    pn_node_t *only;
    if (optional_node(req, p, el, &only) < 0)
        return;
    xml_node_t *r = xml_elem_new(NS_PUBSUB, "pubsub");
    xml_node_t *l = xml_add_child(r, NS_PUBSUB, "subscriptions");
    for (size_t i = 0; i < p->nnodes && req->from_bare; i++) {
        pn_node_t *n = p->nodes[i];
        if (only && n != only)
            continue;
        for (size_t k = 0; k < n->subs.n; k++) {
            char *b = jid_bare_of(n->subs.e[k].jid);
            if (b && !strcmp(b, req->from_bare))
                subscription_el(l, NS_PUBSUB, n->name, n->subs.e[k].jid, "subscribed");
            free(b);
        }
    }
    sm_iq_reply(req, r);
}

/* 5.7: the requester's affiliations: the account owns every node. */
static void own_affiliations(sm_iq_t *req, pep_user_t *p, const xml_node_t *el)
{
    pn_node_t *only;
    if (optional_node(req, p, el, &only) < 0)
        return;
    xml_node_t *r = xml_elem_new(NS_PUBSUB, "pubsub");
    xml_node_t *l = xml_add_child(r, NS_PUBSUB, "affiliations");
    for (size_t i = 0; i < p->nnodes && req->from_bare; i++) {
        pn_node_t *n = p->nodes[i];
        int aff = req->own ? PN_AFF_OWNER : pn_jidmap_get(&n->affs, req->from_bare);
        if ((only && n != only) || aff <= PN_AFF_NONE)
            continue;
        xml_node_t *a = xml_add_child(l, NS_PUBSUB, "affiliation");
        xml_attr_set(a, "node", n->name);
        xml_attr_set(a, "affiliation", pn_aff_name((pn_aff_t)aff));
    }
    sm_iq_reply(req, r);
}

/* --- the owner's requests (8.8, 8.9) -------------------------------------------------------- */

static pn_node_t *owned_node(sm_iq_t *req, pep_user_t *p, const xml_node_t *el)
{
    const char *name = pep_node_of(req, el);
    if (!name)
        return NULL;
    pn_node_t *n = pep_node_find(p, name);
    if (!n)
        sm_iq_error(req, "item-not-found", "cancel");
    return n;
}

/* 8.8.1 list / 8.8.2 modify. A modification is applied whole or not at
 * all: an entry with a bad JID or state, a 'subscribed' the node's access
 * model and affiliations would refuse, or one past max-subscriptions gets
 * not-acceptable and nothing changes. */
static void owner_subscriptions(sm_iq_t *req, int deferred, sm_user_t *u, pep_user_t *p, const xml_node_t *el)
{
    pn_node_t *n = owned_node(req, p, el);
    if (!n)
        return;
    if (!req->set) {
        xml_node_t *r = xml_elem_new(NS_PUBSUB_OWNER, "pubsub");
        xml_node_t *l = xml_add_child(r, NS_PUBSUB_OWNER, "subscriptions");
        xml_attr_set(l, "node", n->name);
        for (size_t i = 0; i < n->subs.n; i++)
            subscription_el(l, NS_PUBSUB_OWNER, NULL, n->subs.e[i].jid, "subscribed");
        sm_iq_reply(req, r);
        return;
    }
    size_t adds = 0;
    for (xml_node_t *s = xml_child(el, NS_PUBSUB_OWNER, "subscription"); s;
         s = xml_next(s, NS_PUBSUB_OWNER, "subscription")) {
        const char *state = xml_attr_get(s, "subscription");
        jid_t j;
        const char *js = xml_attr_get(s, "jid");
        int parsed = js && jid_parse(js, &j) == JID_OK, ok = parsed;
        int sub = sm_streq(state, "subscribed");
        if (ok && !sub && !sm_streq(state, "none"))
            ok = 0;
        if (ok && sub && pn_jidmap_get(&n->subs, j.full) < 0) {
            ok = pep_may_read(u, n, j.bare);
            adds++;
        }
        if (parsed)
            jid_clear(&j);
        if (!ok || n->subs.n + adds > (size_t)pep_cfg()->max_subscriptions) {
            log_info("event=pep-owner-subscriptions result=refused user=%s node=%s jid=%s", u->bare, n->name,
                     js ? js : "-");
            sm_iq_error(req, "not-acceptable", "modify");
            return;
        }
    }
    pep_op_t *o = pep_op_begin(req, deferred);
    for (xml_node_t *s = xml_child(el, NS_PUBSUB_OWNER, "subscription"); s;
         s = xml_next(s, NS_PUBSUB_OWNER, "subscription")) {
        jid_t j;
        if (jid_parse(xml_attr_get(s, "jid"), &j) != JID_OK)
            continue;
        if (sm_streq(xml_attr_get(s, "subscription"), "subscribed"))
            pn_jidmap_set(&n->subs, j.full, 1);
        else
            pn_jidmap_del(&n->subs, j.full);
        log_info("event=pep-owner-subscription user=%s node=%s jid=%s subscription=%s", u->bare, n->name, j.full,
                 xml_attr_get(s, "subscription"));
        jid_clear(&j);
    }
    pep_op_put_node(o, u->bare, n);
    pep_op_done(o);
}

/* 8.9.1 list / 8.9.2 modify, whole or not at all as above: a bad JID or
 * affiliation, the account's own (it stays the owner), or one past
 * max-affiliations gets not-acceptable. Subscriptions the new affiliations
 * no longer allow (outcast, or none on a whitelist node) end. */
static void owner_affiliations(sm_iq_t *req, int deferred, sm_user_t *u, pep_user_t *p, const xml_node_t *el)
{
    pn_node_t *n = owned_node(req, p, el);
    if (!n)
        return;
    if (!req->set) {
        xml_node_t *r = xml_elem_new(NS_PUBSUB_OWNER, "pubsub");
        xml_node_t *l = xml_add_child(r, NS_PUBSUB_OWNER, "affiliations");
        xml_attr_set(l, "node", n->name);
        xml_node_t *a = xml_add_child(l, NS_PUBSUB_OWNER, "affiliation");
        xml_attr_set(a, "jid", u->bare);
        xml_attr_set(a, "affiliation", "owner");
        for (size_t i = 0; i < n->affs.n; i++) {
            a = xml_add_child(l, NS_PUBSUB_OWNER, "affiliation");
            xml_attr_set(a, "jid", n->affs.e[i].jid);
            xml_attr_set(a, "affiliation", pn_aff_name((pn_aff_t)n->affs.e[i].val));
        }
        sm_iq_reply(req, r);
        return;
    }
    size_t adds = 0;
    for (xml_node_t *a = xml_child(el, NS_PUBSUB_OWNER, "affiliation"); a;
         a = xml_next(a, NS_PUBSUB_OWNER, "affiliation")) {
        const char *js = xml_attr_get(a, "jid");
        char *bare = js ? jid_bare_of(js) : NULL;
        int aff = pn_aff_parse(xml_attr_get(a, "affiliation"));
        int ok = bare && aff >= 0 && strcmp(bare, u->bare);
        if (ok && aff != PN_AFF_NONE && pn_jidmap_get(&n->affs, bare) < 0)
            adds++;
        free(bare);
        if (!ok || n->affs.n + adds > (size_t)pep_cfg()->max_affiliations) {
            log_info("event=pep-owner-affiliations result=refused user=%s node=%s jid=%s", u->bare, n->name,
                     js ? js : "-");
            sm_iq_error(req, "not-acceptable", "modify");
            return;
        }
    }
    pep_op_t *o = pep_op_begin(req, deferred);
    for (xml_node_t *a = xml_child(el, NS_PUBSUB_OWNER, "affiliation"); a;
         a = xml_next(a, NS_PUBSUB_OWNER, "affiliation")) {
        char *bare = jid_bare_of(xml_attr_get(a, "jid"));
        int aff = pn_aff_parse(xml_attr_get(a, "affiliation"));
        if (aff == PN_AFF_NONE)
            pn_jidmap_del(&n->affs, bare);
        else
            pn_jidmap_set(&n->affs, bare, aff);
        log_info("event=pep-owner-affiliation user=%s node=%s jid=%s affiliation=%s", u->bare, n->name, bare,
                 pn_aff_name((pn_aff_t)aff));
        pep_subs_prune_node(u, n, bare);
        free(bare);
    }
    pep_op_put_node(o, u->bare, n);
    pep_op_done(o);
}

static void unsupported(sm_iq_t *req, const char *feature)
{
    xml_node_t *app = xml_elem_new(NS_PUBSUB_ERRORS, "unsupported");
    xml_attr_set(app, "feature", feature);
    sm_iq_error_app(req, "feature-not-implemented", "cancel", app);
}

int pep_subs_request(sm_iq_t *req, int deferred, sm_user_t *u, pep_user_t *p, xml_node_t *op, int owner_ns)
{
    const char *w = op->name;
    if (owner_ns && !strcmp(w, "subscriptions"))
        owner_subscriptions(req, deferred, u, p, op);
    else if (owner_ns && !strcmp(w, "affiliations"))
        owner_affiliations(req, deferred, u, p, op);
    else if (owner_ns)
        return 0;
    else if (req->set && !strcmp(w, "subscribe"))
        do_subscribe(req, deferred, u, p, op);
    else if (req->set && !strcmp(w, "unsubscribe"))
        do_unsubscribe(req, deferred, u, p, op);
    else if (!strcmp(w, "options"))
        unsupported(req, "subscription-options");
    else if (!req->set && !strcmp(w, "subscriptions"))
        own_subscriptions(req, p, op);
    else if (!req->set && !strcmp(w, "affiliations"))
        own_affiliations(req, p, op);
    else
        return 0;
    return 1;
}
