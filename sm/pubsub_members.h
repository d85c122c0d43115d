/* pubsub_members: who a PEP node knows by JID beyond its owner account:
 * affiliations (XEP-0060 4.1: owner, publisher, publish-only, member,
 * outcast, keyed by bare JID) and explicit subscriptions (6.1, keyed by the subscribed JID,
 * bare or full). Both are small JID -> value maps; the caller (mod_pep)
 * bounds their size with its options. */
#ifndef WEFT_SM_PUBSUB_MEMBERS_H
#define WEFT_SM_PUBSUB_MEMBERS_H
#include <stddef.h>

/* Stored by name (pn_aff_name), so the order may grow at the end only for
 * readability, not for compatibility. */
typedef enum pn_aff {
    PN_AFF_NONE, PN_AFF_OWNER, PN_AFF_PUBLISHER, PN_AFF_MEMBER, PN_AFF_OUTCAST, PN_AFF_PUBLISH_ONLY
} pn_aff_t;

typedef struct pn_entry {
    char *jid;                 /* owned */
    int val;                   /* pn_aff_t for affiliations; 1 for a subscription */
} pn_entry_t;

typedef struct pn_jidmap {
    pn_entry_t *e;             /* in insertion order */
    size_t n, cap;
} pn_jidmap_t;

/* The value stored for jid, or -1 when absent. */
int pn_jidmap_get(const pn_jidmap_t *m, const char *jid);
/* Stores val for jid (replacing it when present). */
void pn_jidmap_set(pn_jidmap_t *m, const char *jid, int val);
/* Removes jid: 0, or -1 when it was absent. */
int pn_jidmap_del(pn_jidmap_t *m, const char *jid);
void pn_jidmap_clear(pn_jidmap_t *m);

/* "owner", "publisher", "member", "none", "outcast", "publish-only". */
const char *pn_aff_name(pn_aff_t a);
/* The affiliation of that name, or -1 (unknown names). */
int pn_aff_parse(const char *name);

#endif
