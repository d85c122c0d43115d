/* weft-muc: the XEP-0045 group chat service, a component behind the router.
 *
 * One process serves one service domain (conference.localhost by default),
 * or a partition of it when several instances bind the same partitioned name
 * (the router picks the instance by the room's bare JID). Everything lives on
 * one libevent loop; durable state (rooms, configuration, affiliations,
 * occupants, the archive) goes through the asynchronous storage API
 * (persist.c) so a kill -9 and a restart leave every occupant in its room.
 *
 * Inside the process every stanza is in jabber:client (main.c renames what
 * the router delivers); muc_send serializes it for the link. Files:
 *   main.c      skeleton, router link, input queue and acknowledgements
 *   outq.c      each stanza's output, held until its writes are committed
 *   dispatch.c  the entry point (by stanza kind) and the exit (muc_send)
 *   metrics.c   Prometheus metrics
 *   config.c    option table
 *   room.c      rooms: lookup, creation, destruction; occupants and sessions
 *   occupant.c  presence: join, leave, nick change, status codes, sessions
 *   message.c   groupchat, subject, private messages, invitations, voice requests
 *   affil.c     roles and affiliations, the muc#admin IQ (kick, ban, lists)
 *   config_form.c  the muc#owner IQ: configuration form, instant rooms, destroy
 *   history.c   discussion history on join, stanza ids, MAM (XEP-0313)
 *   disco.c     service and room disco, ping, registered nicknames
 *   iq_relay.c  IQs between occupants through the room
 *   persist.c   storage of rooms, affiliations, occupants and the archive
 *   stanza.c    replies, errors and small builders */
#ifndef WEFT_MUC_H
#define WEFT_MUC_H
#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "comp_client.h"
#include "daemon.h"
#include "jid.h"
#include "storage.h"
#include "xml.h"

#define NS_CLIENT "jabber:client"
#define NS_MUC "http://jabber.org/protocol/muc"
#define NS_MUC_USER "http://jabber.org/protocol/muc#user"
#define NS_MUC_ADMIN "http://jabber.org/protocol/muc#admin"
#define NS_MUC_OWNER "http://jabber.org/protocol/muc#owner"
#define NS_XDATA "jabber:x:data"
#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define NS_PING "urn:xmpp:ping"
#define NS_SID "urn:xmpp:sid:0"
#define NS_OCCUPANT_ID "urn:xmpp:occupant-id:0"
#define NS_MAM "urn:xmpp:mam:2"
#define NS_RSM "http://jabber.org/protocol/rsm"
#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_DELAY "urn:xmpp:delay"
#define NS_REGISTER "jabber:iq:register"

typedef struct muc_cfg {
    daemon_common_t common;
    comp_link_cfg_t link;      /* router.*, name, secret (common/comp_client.h) */
    char *domain;        /* the service domain bound on the router */
    char *database, *storage;
    long rooms_per_user;
    long occupants_max;  /* default max-users of a new room and its upper bound */
    long history_max;    /* messages kept in memory per room for join history */
    long history_default; /* sent on join when the client asks for nothing */
    long msg_rate;       /* groupchat messages per second per occupant (burst = 2x) */
    size_t stanza_max;   /* largest message or presence accepted, bytes */
    int create_any;      /* anyone may create rooms */
    long nick_max;       /* nickname length, bytes */
    long mam_max;        /* results per MAM page */
    long sessions_max;   /* sessions (devices) of one occupant; 1: none shared */
    long held_max;       /* stanzas whose output waits for its writes (outq.c) */
    double lock_timeout; /* seconds a new room waits locked for its configuration; 0: forever */
} muc_cfg_t;

typedef enum { ROLE_NONE, ROLE_VISITOR, ROLE_PARTICIPANT, ROLE_MODERATOR } muc_role_t;
typedef enum { AFF_OUTCAST, AFF_NONE, AFF_MEMBER, AFF_ADMIN, AFF_OWNER } muc_aff_t;

/* One session of an occupant: a real full JID in the room. */
typedef struct muc_sess {
    char *jid;               /* real full JID */
    xml_node_t *presence;    /* its last available presence as sent (jabber:client) */
    struct muc_sess *next;
} muc_sess_t;

/* One occupant: one nick, role, affiliation and occupant-id for one bare
 * JID, with one or more sessions (a user's phone and desktop under the same
 * nick, "multi-session nick", docs/muc.md). Never linked without a session. */
typedef struct muc_occ {
    char *nick;
    char *bare;
    muc_role_t role;
    muc_sess_t *sess;        /* in joining order */
    size_t nsess;
    double rate_t;           /* token bucket for msg_rate */
    double rate_tokens;
    char oid[33];            /* occupant id (XEP-0421), computed at first use */
    unsigned oid_salt;       /* the salt generation oid was computed with */
    struct muc_occ *next;
} muc_occ_t;

typedef struct muc_aff_ent {
    char *bare;
    muc_aff_t aff;
    char *nick;              /* registered nickname, or NULL */
    char *reason;
    struct muc_aff_ent *next;
} muc_aff_ent_t;

typedef struct muc_room_cfg {
    char *name, *desc, *password;
    int persistent, public_, members_only, moderated, password_protected;
    int whois_anyone;        /* non-anonymous: real JIDs to everyone */
    int change_subject;      /* participants may change the subject */
    int allow_invites;       /* participants may invite */
    int allow_pm;            /* 0 none, 1 moderators, 2 participants, 3 anyone */
    int logging;             /* archived (MAM); on by default */
    long max_users;
    long history_len;
} muc_room_cfg_t;

typedef struct muc_hist {
    char *id;                /* stanza id (XEP-0359), also the archive key */
    int64_t stamp_us;
    xml_node_t *msg;         /* the message as broadcast, 'to' removed */
} muc_hist_t;

typedef struct muc_room {
    char *jid;               /* bare room JID, node@domain */
    char *node;
    muc_room_cfg_t cfg;
    int locked;              /* created with the MUC namespace, awaiting configuration */
    double unlock_at;        /* daemon_now() when a locked room opens by itself; 0: never */
    char *subject, *subject_from;
    muc_aff_ent_t *affs;
    muc_occ_t *occs;
    size_t nocc;
    muc_hist_t *hist;        /* ring of cfg.history_len (at most history_max) */
    size_t hist_n, hist_head, hist_cap;
    struct muc_room *next;
} muc_room_t;

extern muc_cfg_t *muc_config;
extern storage_t *muc_storage;

/* config.c */
const cfg_option_t *muc_config_table(size_t *size);

/* dispatch.c: the service's one entry point for a stanza from the network
 * (jabber:client inside), and its one exit: muc_send hands each stanza to
 * the output set with muc_set_output (main.c: the router link; the fuzz
 * target: a capture). in_id: the stanza id for a message being handled
 * (stable across its redelivery after a restart), NULL for a fresh one. */
void muc_dispatch(xml_node_t *st, const char *in_id);
typedef int (*muc_output_fn)(const xml_node_t *st);
/* A fan-out output: st (without 'to') to each of to[0..n) as one element. */
typedef void (*muc_fanout_fn)(const xml_node_t *st, const char *const *to, size_t n);
/* fanout may be NULL: muc_send_fanout then sends one copy per recipient. */
void muc_set_output(muc_output_fn fn, muc_fanout_fn fanout);
int muc_send(const xml_node_t *st);
/* The stanza id for the message being dispatched; caller frees. */
char *muc_in_stanza_id(void);
void muc_send_free(xml_node_t *st);
/* Writes st (without 'to') to each of to[0..n) as one fan-out element; the
 * acknowledgement of the stanza being handled goes in it when it is the
 * last thing its handler sends. */
void muc_send_fanout(const xml_node_t *st, const char *const *to, size_t n);

/* metrics.c: weft-muc's Prometheus metrics (docs/muc.md, "Metrics"). */
void muc_metrics_register(void);
void muc_metrics_stanza(const char *direction, const char *name);
void muc_metrics_mam_query(void);
void muc_metrics_session_gone(void);
void muc_metrics_restored(size_t occupants, size_t sessions);
/* main.c's state for the collector. */
int muc_link_ready(void);
size_t muc_link_unacked(void);
size_t muc_deferred_count(void);

/* stanza.c */
/* An error reply to st (swaps to/from, copies the children); nothing for an
 * error or result. */
void muc_reply_error(const xml_node_t *st, const char *condition, const char *type,
                     const char *text);
/* A presence error from room/nick carrying the <x xmlns=muc/> (7.2.x). */
void muc_presence_error(const xml_node_t *st, const char *condition, const char *type);
xml_node_t *muc_iq_result(const xml_node_t *iq);
xml_node_t *muc_child_text(xml_node_t *parent, const char *ns, const char *name, const char *text);
const char *muc_role_name(muc_role_t r);
const char *muc_aff_name(muc_aff_t a);
int muc_role_parse(const char *s, muc_role_t *out);
int muc_aff_parse(const char *s, muc_aff_t *out);
char *muc_stamp(int64_t us, char *buf, size_t len);   /* XEP-0082 UTC */
int64_t muc_stamp_parse(const char *s);               /* -1 if bad */
char *muc_new_id(void);                               /* 16 hex digits, caller frees */
char *muc_derived_id(const char *epoch, uint64_t seq);  /* 16 hex digits of a hash */
/* The first `bytes` bytes of SHA-256(data) as hex into hex (2 * bytes + 1). */
void muc_sha256_hex(const void *data, size_t len, char *hex, size_t bytes);
void muc_sha256_free(void);     /* at exit */
/* A stored element: serialized with its namespace declared, parsed back
 * (NULL, logged, when unreadable). Caller frees. */
char *muc_serialize(const xml_node_t *el, size_t *len);
xml_node_t *muc_parse(const char *val, size_t len);

/* room.c */
muc_room_t *muc_room_get(const char *bare);
muc_room_t *muc_room_new(const char *bare, const char *node);
/* Locks a room awaiting its owner's configuration (XEP-0045 10.1.2) for
 * lock-timeout seconds from now. */
void muc_room_lock(muc_room_t *r);
/* Whether the room is still locked: a lock past its time is lifted here (the
 * room becomes an instant room, stored so), so every check goes through it. */
int muc_room_locked(muc_room_t *r);
/* Removes the room, its records and every occupant without a word (callers
 * send what the XEP asks first). */
void muc_room_destroy(muc_room_t *r);
void muc_room_free_all(void);   /* at exit: memory only, records stay */
/* Every room, in no order: muc_room_each(NULL), then muc_room_each(prev). */
muc_room_t *muc_room_each(muc_room_t *prev);
size_t muc_room_count(void);
size_t muc_rooms_owned_by(const char *bare);
muc_occ_t *muc_occ_by_nick(muc_room_t *r, const char *nick);
/* The occupant one of whose sessions is this full JID. */
muc_occ_t *muc_occ_by_jid(muc_room_t *r, const char *full);
muc_sess_t *muc_sess_find(muc_occ_t *o, const char *full);
/* The session whose presence stands for the occupant: the highest
 * <priority>, the earliest joined among equals. */
muc_sess_t *muc_occ_primary(muc_occ_t *o);
muc_sess_t *muc_sess_add(muc_occ_t *o, const char *full, xml_node_t *presence);
void muc_sess_free(muc_sess_t *s);
void muc_occ_free(muc_occ_t *o);
void muc_occ_unlink(muc_room_t *r, muc_occ_t *o);
muc_aff_t muc_aff_of(muc_room_t *r, const char *bare);
muc_aff_ent_t *muc_aff_ent(muc_room_t *r, const char *bare);
void muc_aff_set(muc_room_t *r, const char *bare, muc_aff_t a, const char *reason);
const char *muc_registered_nick_owner(muc_room_t *r, const char *nick);
/* The role an affiliation gets on joining this room. */
muc_role_t muc_default_role(muc_room_t *r, muc_aff_t a);
/* XEP-0421: o's occupant id, stable per (room, real bare JID): 32 hex
 * digits of a salted hash, kept in o until the salt changes. */
const char *muc_occ_id(muc_room_t *r, muc_occ_t *o);
void muc_set_salt(const char *salt);

/* occupant.c */
void muc_presence_in(xml_node_t *st, jid_t *to);
/* Presence of o as others see it (to filled in per receiver), with an item
 * showing the real JID when show_jid; codes appended by the caller. */
xml_node_t *muc_occ_presence(muc_room_t *r, muc_occ_t *o, int unavailable, int show_jid);
/* Sends o's presence to every occupant (self with 110), with extra status
 * codes and, for a removal, actor/reason; then, for a removal, drops o. */
void muc_broadcast_presence(muc_room_t *r, muc_occ_t *o, int unavailable, const int *codes,
                            size_t ncodes, const char *actor, const char *reason);
/* Removes o, every session of it, as kicked/banned/... (codes 307, 301,
 * 321, 322, 333). */
void muc_occ_remove(muc_room_t *r, muc_occ_t *o, int code, const char *actor_nick,
                    const char *reason);
/* Sends the presence of an occupant after its role/affiliation changed. */
void muc_occ_changed(muc_room_t *r, muc_occ_t *o);
/* An error from a real JID: that session went away (XEP-0045 18.1, 333);
 * the occupant goes with its last session. */
void muc_occ_error_in(const xml_node_t *st, jid_t *to);

/* message.c */
void muc_message_in(xml_node_t *st, jid_t *to);
void muc_broadcast_message(muc_room_t *r, xml_node_t *msg);

/* affil.c */
void muc_admin_iq(xml_node_t *iq, muc_room_t *r);

/* config_form.c */
void muc_owner_iq(xml_node_t *iq, muc_room_t *r);
void muc_room_cfg_defaults(muc_room_cfg_t *c);
void muc_room_cfg_clear(muc_room_cfg_t *c);
/* Destroys r, telling each occupant (alternate venue and reason optional). */
void muc_room_destroy_notify(muc_room_t *r, const char *alt, const char *reason);

/* history.c */
/* Adds msg (taken) to r's history; an entry with the same id is replaced. */
void muc_hist_add(muc_room_t *r, const char *id, int64_t stamp_us, xml_node_t *msg);
void muc_hist_clear(muc_room_t *r);
/* Sends the discussion history to a new occupant per its <history/>. */
void muc_hist_send(muc_room_t *r, const char *to, const xml_node_t *history);
void muc_mam_iq(xml_node_t *iq, muc_room_t *r);

/* disco.c */
void muc_iq_in(xml_node_t *iq, jid_t *to);

/* iq_relay.c */
void muc_iq_relay(xml_node_t *iq, muc_room_t *r, const char *nick);
/* An answer to a relayed IQ (its id is ours): sent on; 1 when it was ours. */
int muc_iq_relay_reply(xml_node_t *iq);
void muc_iq_relay_expire(double now);
void muc_iq_relay_free(void);

/* persist.c: every write is asynchronous; load runs once at start and calls
 * done when every room is in memory. */
void muc_persist_load(void (*done)(void));
void muc_persist_room(muc_room_t *r);      /* configuration, subject, lock */
void muc_persist_room_del(muc_room_t *r);  /* the room and everything it owns */
void muc_persist_aff(muc_room_t *r, muc_aff_ent_t *e, int del);
void muc_persist_occ(muc_room_t *r, muc_occ_t *o, int del);   /* every session */
void muc_persist_sess(muc_room_t *r, muc_occ_t *o, muc_sess_t *s, int del);
void muc_persist_msg(muc_room_t *r, const char *id, const xml_node_t *msg);
/* Writes submitted so far, and those that failed (counted as they
 * complete; not the last write of a journal, whose callback is the caller's). */
uint64_t muc_persist_writes(void);
uint64_t muc_persist_failures(void);
/* The writes of one stanza on an asynchronous storage. begin opens a
 * journal: every write is recorded in it instead of being submitted; end
 * closes it and hands it over (NULL when nothing was written). submit
 * submits its writes in order, done called with the last one's result (every
 * write before it has completed then; as many times as it is submitted). */
typedef struct muc_journal muc_journal_t;
void muc_persist_journal_begin(void);
muc_journal_t *muc_persist_journal_end(void);
void muc_persist_journal_submit(const muc_journal_t *j, storage_cb done, void *arg);
void muc_persist_journal_free(muc_journal_t *j);

/* outq.c: the output of each stanza handled, held on an asynchronous
 * storage until the writes it caused are committed, then written with the
 * stanza's acknowledgement; in stanza order (see the file). link: main.c's
 * router link (may be NULL). */
void muc_outq_init(comp_client_t **link);
/* Around one stanza's handling: begin with its token (comp_client_in_token),
 * end with the journal of its writes (taken; NULL: none, or SQLite). */
void muc_outq_begin(uint64_t token);
void muc_outq_end(muc_journal_t *writes);
/* One serialized stanza (bytes taken: *bytes is left empty), for each of
 * to[0..n) as a fan-out element, or as it is when to is NULL. */
void muc_outq_add(strbuf_t *bytes, const char *const *to, size_t n);
/* 1 while input should wait: limits.held-stanzas reached, or a quarter of
 * router.buffer in bytes, or a failed write waits to be submitted again. */
int muc_outq_blocked(void);
size_t muc_outq_held(void);
void muc_outq_free(void);

#endif
