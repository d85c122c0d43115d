/* pep_internal: what mod_pep.c (nodes, items, notifications, storage) shares
 * with pep_subs.c (explicit subscriptions and affiliations, XEP-0060 5.6,
 * 5.7, 6.1, 6.2, 8.8, 8.9). Not an API for other modules: theirs is
 * mod_pep.h. */
#ifndef WEFT_SM_PEP_INTERNAL_H
#define WEFT_SM_PEP_INTERNAL_H
#include "caps.h"
#include "module.h"
#include "pubsub_node.h"
#include "store.h"

typedef struct pep_cfg {
    long max_nodes;
    long max_items;
    size_t max_item_size;
    long notify_rate;
    long caps_cache;
    long max_watchers;
    long max_affiliations;
    long max_subscriptions;
} pep_cfg_t;

/* A full JID that announced caps in presence: an owner's resource or a
 * contact's. known: its interests (nt) are known. had_from: the contact had
 * a 'from' subscription when last looked at (to notice an approval). */
typedef struct watcher {
    char *jid, *bare, *ver;
    int known, had_from;
    caps_notify_t nt;
} watcher_t;

typedef struct pep_user {
    int loaded;
    pn_node_t **nodes;
    size_t nnodes;
    watcher_t *w;
    size_t nw;
    double tokens, stamp;          /* notification budget (notify-rate) */
    sm_iq_t **waiting;             /* deferred requests waiting for the load */
    size_t nwaiting;
} pep_user_t;

/* A request whose answer waits for its storage writes. pending counts the
 * writes in flight plus one while they are being submitted. after (owned,
 * or NULL) is sent once the reply went: the last item for a new subscriber
 * (XEP-0060 6.1.7) follows the subscription's result. */
typedef struct pep_op {
    sm_iq_t *req;
    xml_node_t *reply;
    xml_node_t *after;
    int pending, failed;
    sm_batch_t *batch;    /* its writes, committed together (pep_op_done) */
} pep_op_t;

const pep_cfg_t *pep_cfg(void);
pn_node_t *pep_node_find(pep_user_t *p, const char *name);

/* An op answering req (deferring it unless deferred already). */
pep_op_t *pep_op_begin(sm_iq_t *req, int deferred);
/* An op with no request: a write the server makes on its own. */
pep_op_t *pep_op_new(void);
/* Ends the submitting phase or one write; the last one answers and frees. */
void pep_op_done(pep_op_t *o);
/* Writes n's record (configuration, affiliations, subscriptions). */
void pep_op_put_node(pep_op_t *o, const char *owner, const pn_node_t *n);

/* 1 if from (a bare JID) may read n of u: the affiliation first
 * (owner/publisher/member read any node, outcast and publish-only none),
 * then the access model (roster: in one of n's roster_groups_allowed). */
int pep_may_read(sm_user_t *u, const pn_node_t *n, const char *from);
/* The error of XEP-0060 6.1.3 / 6.5.9 for a reader n refuses. */
void pep_deny(sm_iq_t *req, const pn_node_t *n);
/* An error with a pubsub#errors condition (app, or NULL). */
void pep_perr(sm_iq_t *req, const char *cond, const char *type, const char *app);
/* The node attribute of el, or NULL after answering nodeid-required. */
const char *pep_node_of(sm_iq_t *req, const xml_node_t *el);
/* The event message carrying n's newest item, for to; NULL when there is
 * none or n never sends it (send_last_published_item 'never'). */
xml_node_t *pep_last_item_message(sm_user_t *u, const pn_node_t *n, const char *to);

/* --- pep_subs.c ------------------------------------------------------------------ */

/* Answers req if op is one of subscribe, unsubscribe, options,
 * subscriptions, affiliations (both namespaces) and returns 1; else 0. */
int pep_subs_request(sm_iq_t *req, int deferred, sm_user_t *u, pep_user_t *p, xml_node_t *op, int owner_ns);
/* 1 if the non-owner sender of req may make this write (publish/retract as
 * a publisher or owner of the node; pubsub#owner requests as its owner). */
int pep_subs_may_write(const sm_iq_t *req, pep_user_t *p, const xml_node_t *op, int owner_ns);
/* 1 if an explicit subscription of n covers the resource jid (of bare):
 * the notification goes there by the subscription, not by caps. */
int pep_subs_covers(const pn_node_t *n, const char *jid, const char *bare);
/* 1 if the subscribed jid may receive n's notifications now. */
int pep_subs_allowed(sm_user_t *u, const pn_node_t *n, const char *jid);
/* Removes the subscriptions of n (only those of bare's JIDs when bare is not
 * NULL) that the access model and affiliations no longer allow; returns
 * how many (the caller writes the node). */
size_t pep_subs_prune_node(sm_user_t *u, pn_node_t *n, const char *bare);
/* The same over every node of u, writing the nodes that changed. */
void pep_subs_prune(sm_user_t *u, pep_user_t *p, const char *bare);

#endif
