/* pubsub_node: one XEP-0060 node of a PEP service (XEP-0163) in memory: its
 * configuration, its items in publish order, and the XEP-0004 forms that
 * read and change the configuration (node_config and publish-options).
 *
 * Nothing here knows about users, storage or the network: mod_pep owns the
 * nodes (per user), persists them and sends notifications. A node's items
 * are kept oldest first; publishing an id that exists moves it to the end
 * (it is the newest again, XEP-0060 7.1.2). */
#ifndef WEFT_SM_PUBSUB_NODE_H
#define WEFT_SM_PUBSUB_NODE_H
#include <stddef.h>
#include "pubsub_members.h"
#include "xml.h"

#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define NS_PUBSUB_OWNER "http://jabber.org/protocol/pubsub#owner"
#define NS_PUBSUB_EVENT "http://jabber.org/protocol/pubsub#event"
#define NS_PUBSUB_ERRORS "http://jabber.org/protocol/pubsub#errors"
#define NS_DATA "jabber:x:data"

typedef enum pn_access { PN_OPEN, PN_PRESENCE, PN_ROSTER, PN_WHITELIST } pn_access_t;
typedef enum pn_slpi { PN_SLPI_NEVER, PN_SLPI_ON_SUB, PN_SLPI_ON_SUB_AND_PRESENCE } pn_slpi_t;

typedef struct pn_config {
    pn_access_t access;        /* pubsub#access_model */
    long max_items;            /* pubsub#max_items; PN_MAX_ITEMS_MAX for "max" */
    int persist;               /* pubsub#persist_items */
    pn_slpi_t slpi;            /* pubsub#send_last_published_item */
    int notify_retract;        /* pubsub#notify_retract */
    int notify_delete;         /* pubsub#notify_delete */
    char *title;               /* pubsub#title (owned), or NULL */
    char **groups;             /* pubsub#roster_groups_allowed (owned, no duplicates), */
    size_t ngroups;            /* read by the roster model; none: only owner and affiliates */
} pn_config_t;
#define PN_MAX_ITEMS_MAX (-1L)
/* Roster groups a node may name: more is a bad value (not-acceptable). */
#define PN_GROUPS_MAX 100

typedef struct pn_item {
    char *id;
    xml_node_t *item;          /* <item xmlns=pubsub id=...>payload</item>, owned */
    char *publisher;           /* bare JID of a publisher other than the account (owned), or
                                * NULL: a publish-only entity retracts only its own items */
} pn_item_t;

typedef struct pn_node {
    char *name;
    pn_config_t cfg;
    pn_item_t *items;          /* oldest first */
    size_t nitems, cap;
    pn_jidmap_t affs;          /* bare JID -> pn_aff_t (the account itself is not listed) */
    pn_jidmap_t subs;          /* explicit subscriptions: subscribed JID -> 1 */
} pn_node_t;

/* Form types of XEP-0060 */
#define PN_FORM_CONFIG "http://jabber.org/protocol/pubsub#node_config"
#define PN_FORM_PUBLISH "http://jabber.org/protocol/pubsub#publish-options"

void pn_config_default(pn_config_t *c);
void pn_config_copy(pn_config_t *dst, const pn_config_t *src);
void pn_config_clear(pn_config_t *c);
/* The number of items the node keeps: max_items, "max" meaning limit, and
 * never above limit. */
size_t pn_config_keep(const pn_config_t *c, size_t limit);

/* Applies a submitted form (node_config or publish-options) to c. Unknown
 * fields, bad values or a max_items above limit leave c unchanged and return
 * the field's name in *bad; 0 on success, -1 on failure. */
int pn_config_apply(pn_config_t *c, const xml_node_t *x, size_t limit, const char **bad);
/* 1 if group is one of c's roster_groups_allowed. */
int pn_config_has_group(const pn_config_t *c, const char *group);
/* 1 if a and b are the same configuration (groups in any order). */
int pn_config_equal(const pn_config_t *a, const pn_config_t *b);
/* 1 if every field of a publish-options form matches c (XEP-0060 7.1.5);
 * else 0 with the first mismatching field in *bad. */
int pn_config_matches(const pn_config_t *c, const xml_node_t *x, size_t limit, const char **bad);
/* The node_config form showing c (type "form"); the caller owns it. */
xml_node_t *pn_config_form(const pn_config_t *c);

/* Storage form of a node: <node xmlns='urn:xmpp:weft:pep:1' .../> with an
 * <aff jid a/> child per affiliation, a <sub jid/> per subscription and a
 * <group>name</group> per roster group allowed (records written before
 * groups existed have none: they read as an empty list). */
xml_node_t *pn_node_record(const pn_node_t *n);
/* A node from its record, or NULL when unreadable. */
pn_node_t *pn_node_from_record(const xml_node_t *rec);

pn_node_t *pn_node_new(const char *name, const pn_config_t *cfg);
void pn_node_free(pn_node_t *n);
pn_item_t *pn_node_find(pn_node_t *n, const char *id);
pn_item_t *pn_node_last(pn_node_t *n);
/* Appends item (taken) under id, replacing an item of the same id; its
 * publisher is NULL (the account). */
void pn_node_put(pn_node_t *n, const char *id, xml_node_t *item);
/* Sets the item's publisher (a bare JID, copied; NULL: the account). */
void pn_item_set_publisher(pn_item_t *it, const char *bare);
/* Removes the item of that id: 0, or -1 when there is none. */
int pn_node_remove(pn_node_t *n, const char *id);
/* Drops the oldest items beyond keep; calls fn(id, arg) for each before it
 * goes. */
void pn_node_trim(pn_node_t *n, size_t keep, void (*fn)(const char *id, void *arg), void *arg);
void pn_node_purge(pn_node_t *n);

const char *pn_access_name(pn_access_t a);
const char *pn_slpi_name(pn_slpi_t s);

#endif
