/* caps: XEP-0115 entity capabilities as the sm learns them from presence,
 * for PEP's +notify filtering (XEP-0163 section 4.3).
 *
 * A presence carrying <c xmlns='http://jabber.org/protocol/caps'/> names a
 * verification string; the first time a string is seen, the sm asks one
 * entity announcing it for its disco#info (node#ver) and, when the answer
 * hashes to the string (sha-1, XEP-0115 section 5), keeps its +notify
 * interests in a cache shared by every user: one query per hash, however
 * many contacts use that client. An answer that does not verify (or an
 * unknown hash algorithm) is used for the one entity that gave it and not
 * cached. The cache and the queries in flight are bounded (oldest dropped).
 *
 * Owned here: the cache and the pending queries. The caller learns results
 * through the callback given to caps_init. */
#ifndef WEFT_SM_CAPS_H
#define WEFT_SM_CAPS_H
#include <stddef.h>
#include "caps_hash.h"
#include "xml.h"

#define NS_CAPS CAPS_NS

/* A set of node names an entity wants notifications for ("+notify"). */
typedef struct caps_notify {
    char **nodes;
    size_t n;
} caps_notify_t;

/* Called for each entity waiting on a query once its answer came:
 * owner (bare JID the query was made for), jid (full JID of the entity) and
 * its interests (borrowed for the call). */
typedef void (*caps_result_fn)(const char *owner, const char *jid, const caps_notify_t *nt);

void caps_init(caps_result_fn fn);
void caps_free(void);
/* Bounds the cache (and the pending queries) to max entries. */
void caps_set_max(size_t max);

/* The <c/> of a presence: 0 with its ver/node/hash (borrowed), or -1. */
int caps_of(const xml_node_t *pres, const char **ver, const char **node, const char **hash);
/* The cached interests of ver, or NULL if unknown. */
const caps_notify_t *caps_lookup(const char *ver);
/* Asks jid for its disco#info (from owner's bare JID) unless a query for
 * ver is in flight already, in which case jid waits on it. */
void caps_request(const char *owner, const char *jid, const char *node, const char *ver, const char *hash);
/* An iq result or error that reached owner's bare JID: 1 if it answered one
 * of our queries (consumed), else 0. */
int caps_iq_result(const char *owner, const xml_node_t *iq);

void caps_notify_copy(caps_notify_t *dst, const caps_notify_t *src);
void caps_notify_clear(caps_notify_t *nt);
int caps_notify_has(const caps_notify_t *nt, const char *node);

#endif
