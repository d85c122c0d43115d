/* mod_mam: the message archive (XEP-0313) and stanza ids (XEP-0359), as
 * other sm files see it.
 *
 * mod_mam.c owns the archiving (hooks, ids, preferences, retention);
 * mam_query.c answers the queries of the urn:xmpp:mam:2 namespace; this
 * header joins them, and offers mod_carbons the one call it needs.
 *
 * Storage (owner = the user's bare JID), docs/mam.md:
 *   "mam"          every archived message, key = its archive id, tag = the
 *                  contact's bare JID, so that "the last 50 with X" is one
 *                  range over the tag's index (storage_range_t.tag)
 *   "mam-prefs"    key "": the XEP-0441 preferences, serialized <prefs/>
 * and, owned by the domain, "mam-users" (key = a user's bare JID): the users
 * that have an archive, walked by the retention sweep.
 *
 * A record's value is one header line, then the stanza:
 *   "<stamp µs> <i|o> <with JID, full>\n<message .../>" */
#ifndef WEFT_SM_MOD_MAM_H
#define WEFT_SM_MOD_MAM_H
#include <stdint.h>
#include "module.h"

#define MAM_NS "urn:xmpp:mam:2"
#define MAM_NS_EXT "urn:xmpp:mam:2#extended"
#define MAM_NS_SID "urn:xmpp:sid:0"
#define MAM_NS_FORWARD "urn:xmpp:forward:0"
#define MAM_NS_DELAY "urn:xmpp:delay"
#define MAM_COLL "mam"
#define MAM_COLL_PREFS "mam-prefs"
#define MAM_COLL_USERS "mam-users"

typedef struct mam_cfg {
    long default_page;        /* results per page when the client gives no <max/> */
    long max_page;            /* the most a client may ask for */
    double max_age;           /* retention: seconds a message is kept; 0 forever */
    long max_messages;        /* retention: messages kept per user; 0 no limit */
    double sweep_period;      /* seconds between retention sweeps */
    double write_delay;       /* seconds archive writes wait to be committed together */
    long write_batch;         /* records that make a batch commit at once */
    size_t write_cache;       /* SQLite page cache while a batch commits; 0: database-cache */
    char *default_text;       /* always, never or roster (XEP-0441 default) */
} mam_cfg_t;

extern sm_module_t sm_module_mam;

/* One stored record, parsed. Strings point into the record's value. */
typedef struct mam_rec {
    const char *id;
    int64_t stamp;            /* µs since the epoch, when it was archived */
    char dir;                 /* 'i' received, 'o' sent */
    const char *with;         /* the contact's full JID as the stanza had it */
    size_t with_len;
    const char *xml;          /* the stanza */
    size_t xml_len;
} mam_rec_t;

/* Parses a record's value (NUL-terminated); 0, or -1 when it is not one. */
int mam_rec_parse(const char *key, const char *val, size_t len, mam_rec_t *out);
/* XEP-0082 DateTime of a µs stamp, milliseconds, UTC ("...Z"). */
void mam_stamp_format(int64_t us, char *buf, size_t len);
/* A DateTime into µs; -1 when it is not one. */
int64_t mam_stamp_parse(const char *s);

/* Submits the archive writes waiting for the end of the loop turn (a query
 * calls it first, so it sees them). */
void mam_flush(void);

/* mam_query.c: the IQ handlers of urn:xmpp:mam:2 (query, prefs, metadata). */
void mam_iq_get(sm_iq_t *req);
void mam_iq_set(sm_iq_t *req);
/* mod_mam.c: the preferences get and set (called by mam_iq_*). */
void mam_prefs_get(sm_iq_t *req);
void mam_prefs_set(sm_iq_t *req);

/* For mod_carbons: copy is the message inside a <sent/> carbon of orig, the
 * message a session of the user is sending. When the archive kept orig,
 * copy gets the same <stanza-id/> the archive has, so every device of the
 * user knows the message by one id. Does nothing when mod_mam is off. */
void mam_mark_sent_copy(const xml_node_t *orig, xml_node_t *copy);

#endif
