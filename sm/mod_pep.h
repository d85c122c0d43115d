/* mod_pep's API for other modules: the conversions between PEP and older
 * storage (mod_bookmarks: XEP-0402 <-> XEP-0048/0049; mod_avatar: XEP-0084
 * <-> vcard-temp) observe what a client publishes and publish on the
 * user's behalf. When mod_pep is disabled, observing does nothing and
 * pep_put/pep_del fail. */
#ifndef WEFT_SM_MOD_PEP_H
#define WEFT_SM_MOD_PEP_H
#include "pubsub_node.h"
#include "sm.h"

/* Called after a client of u published item (the <item id=...> element,
 * borrowed) on node, or retracted id (item NULL), or purged or deleted the
 * node (id and item NULL). Not called for pep_put/pep_del. */
typedef void (*pep_observer_fn)(sm_user_t *u, const char *node, const char *id, const xml_node_t *item);
/* Registers fn for node (from a module's init; at most 16 in all). */
void pep_observe(const char *node, pep_observer_fn fn);

/* Publishes payload (borrowed; copied into an <item id=id/>) on u's node,
 * creating the node with that access model and max_items
 * (PN_MAX_ITEMS_MAX for "max") when it does not exist, and notifying as a
 * client's publish does. 0, or -1 when the user's nodes are not loaded yet
 * or a limit refuses it (logged). */
int pep_put(sm_user_t *u, const char *node, const char *id, const xml_node_t *payload, pn_access_t access,
            long max_items);
/* Retracts id from u's node (notified if the node says so): 0, or -1 if absent. */
int pep_del(sm_user_t *u, const char *node, const char *id);
/* The <item/> of id on u's node (id NULL: the newest), borrowed; NULL if none. */
const xml_node_t *pep_get(sm_user_t *u, const char *node, const char *id);
typedef void (*pep_item_fn)(const char *id, const xml_node_t *item, void *arg);
/* Calls fn for every item of u's node, oldest first. */
void pep_foreach(sm_user_t *u, const char *node, pep_item_fn fn, void *arg);

#endif
