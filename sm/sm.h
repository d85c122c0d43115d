/* sm: the session manager's core types and API (users, sessions, sending).
 *
 * Ownership: core.c owns users (sm_user_t, loaded on demand, kept while they
 * have sessions) and sessions (sm_sess_t); main.c owns the router link and
 * storage. Feature modules are written against module.h; a module that
 * offers functions to others has its own header (mod_roster.h, ...).
 * Everything runs on one event loop; nothing is thread-safe. */
#ifndef WEFT_SM_H
#define WEFT_SM_H
#include <stddef.h>
#include "comp_client.h"
#include "daemon.h"
#include "jid.h"
#include "storage.h"
#include "xml.h"

#define SM_NS_SESSION "urn:xmpp:weft:session:1"
#define SM_NS_AUTHREG "urn:xmpp:weft:authreg:1"
#define NS_CLIENT "jabber:client"

typedef struct sm_user sm_user_t;
typedef struct sm_sess sm_sess_t;

struct sm_sess {
    sm_user_t *user;
    char *c2s;                 /* the c2s instance name (where deliveries go) */
    char *sid;                 /* id of the session within that c2s */
    jid_t jid;                 /* full JID */
    int available;             /* has sent available presence */
    int priority;              /* of its last available presence */
    xml_node_t *presence;      /* last available presence it broadcast (owned), or NULL */
    int roster_requested;      /* did a roster get: receives roster pushes (RFC 6121 2.1.6) */
    int carbons;               /* XEP-0280 enabled */
    int hibernated;            /* XEP-0198: its client's connection is gone, c2s keeps the session */
    int deliver_many;          /* its c2s takes <deliver/> (said so at the session start) */
    char **directed;           /* JIDs it sent directed presence to (RFC 6121 4.6) */
    size_t ndirected;
    sm_sess_t *next;           /* next session of the same user */
};

struct sm_user {
    char *bare;                /* prepared bare JID "node@domain" */
    sm_sess_t *sessions;
    void **state;              /* one pointer per module (sm_user_state, module.h) */
    sm_user_t *next;           /* hash chain */
};

/* main.c: process-wide state. */
typedef struct sm_cfg {
    daemon_common_t common;
    comp_link_cfg_t link;      /* router.*, name, secret (common/comp_client.h) */
    char *domain;             /* the served domain */
    char *database;           /* SQLite file (the older form of storage) */
    char *storage;            /* storage URL (docs/storage.md); empty: sqlite:database */
    size_t database_cache;    /* SQLite page cache bytes */
    long pending_max;         /* sessions.pending-max: routes held for sessions not yet re-announced */
    int conflict_refuse;      /* sessions.conflict-refuse: a taken resource refuses the new session */
    long deliver_recipients;  /* sessions.deliver-recipients: most <r/> in one <deliver/> */
    double resync_wait;       /* sessions.resync-wait: seconds the resync window lasts (resync_wait.c) */
    long resync_max;          /* sessions.resync-max: most stanzas waiting in it */
    char *control;            /* admin socket path (admin.c), empty: none */
    /* The modules' options follow in the same allocation (module_config.c). */
} sm_cfg_t;

extern sm_cfg_t *sm_config;
extern storage_t *sm_storage;

/* core.c: users, sessions, routing decisions. */
sm_user_t *sm_user_get(const char *bare);            /* loaded user or NULL */
/* Calls fn(u, arg) once the account of bare is checked in storage and its
 * data loaded (the user_load hooks done), with u NULL when there is no such
 * account: at once when it is in memory with a session (or on SQLite), else
 * from storage's callback, after the user's stanzas that arrived before. */
typedef void (*sm_user_fn)(sm_user_t *u, void *arg);
void sm_user_with(const char *bare, sm_user_fn fn, void *arg);
/* The account was removed: the modules' state goes and the next stanza for
 * it checks storage again (authreg.c). */
void sm_user_unload(sm_user_t *u);
sm_sess_t *sm_sess_find(sm_user_t *u, const char *resource);
sm_sess_t *sm_sess_lookup(const char *c2s, const char *sid);   /* live session or NULL */
/* Highest-priority available sessions with non-negative priority
 * (RFC 6121 8.5.2.1.1): fills out[] (at most max), returns the count. */
size_t sm_sess_best(sm_user_t *u, sm_sess_t **out, size_t max);
int sm_is_local(const char *domain);                 /* domain is the one we serve */
/* Sends a stanza on its way: to a local account owned by this sm it is
 * processed inbound at once; anything else goes to the router. The stanza is
 * borrowed (serialized, not kept). */
void sm_send(xml_node_t *st);
/* sm_send of st to each of to[0..n) (st's own 'to' is not used, and is left
 * set to one of them): the same rules and order, one queued copy for the
 * local ones (a PEP notification to every contact). */
void sm_send_each(xml_node_t *st, const char *const *to, size_t n);
/* Sends a non-stanza element (session protocol: <authreg/>, <session/>) to the
 * router as is. el is borrowed (serialized, not kept). */
void sm_send_raw_element(xml_node_t *el);
/* Delivers a stanza to one session's client (wrapped in a session route;
 * deliver_batch.c merges consecutive deliveries of one stanza into one
 * <deliver/> element per c2s). st is borrowed. */
void sm_deliver(sm_sess_t *s, xml_node_t *st);
/* Writes the deliveries deliver_batch.c still holds (before any other write
 * to the router and before every acknowledgement). */
void sm_deliver_flush(void);
void sm_deliver_batch_free(void);
/* main.c's fan-out loop (one stanza tree for several recipients, only 'to'
 * set anew for each): st is that tree as the next recipient gets it; fresh
 * says it is a new tree (or a new copy) whose serialization nothing has
 * seen. As long as nothing changes any tree (xml_mutations), sm_deliver
 * reuses st's serialization without 'to' instead of making it again.
 * NULL when the loop is over. */
void sm_deliver_shared(const xml_node_t *st, int fresh);
/* A <deliver/> the router bounced (its c2s unreachable): each of its
 * sessions is handled as for a bounced route (core.c). */
void sm_deliver_bounced(xml_node_t *el);
/* The domain the sm serves, prepared (core.c). */
const char *sm_domain(void);
/* Processes a stanza addressed to a local JID (bare or full), RFC 6121 8.5. */
void sm_inbound(xml_node_t *st);

/* resync_wait.c: the window after the sm starts or gains users, during which
 * stanzas for sessions c2s has not re-announced yet wait (docs/sm.md). */
void sm_resync_open(const char *why);
void sm_resync_seen(void);                  /* a re-announcement came: it lasts longer */
int sm_resync_waits(const xml_node_t *st, const jid_t *to);   /* 1: st (copied) waits */
void sm_resync_send_away(int all, int (*send)(const xml_node_t *st));
void sm_resync_resume(void);               /* the link is below its low-water mark again */
size_t sm_resync_waiting(void);
void sm_resync_free(void);
/* sm_inbound once per recipient i < n, with 'to' set to to(i, arg): the
 * local fan-out of sm_send_each, and a room message the router delivered as
 * one <w:fan/> (main.c). One working tree serves while nothing changes any
 * tree (xml_mutations); after a change the next recipient gets a fresh copy
 * of st as it came. around(i, 1, arg) and around(i, 0, arg), when not NULL,
 * bracket recipient i (main.c: each delivery's acknowledgement). Takes st. */
void sm_inbound_each(xml_node_t *st, size_t n, const char *(*to)(size_t i, void *arg),
                     void (*around)(size_t i, int enter, void *arg), void *arg);
/* Answers st with an error of that condition/type (never for errors/results). */
void sm_reply_error(xml_node_t *st, const char *condition, const char *type);
/* Sends a reply to the session that asked (s), or on its way when the
 * request did not come from a local session; frees res. */
void sm_answer(sm_sess_t *s, xml_node_t *res);
/* 1 if both strings are present and equal. */
int sm_streq(const char *a, const char *b);
/* Builds a result iq for an iq get/set (to/from swapped, same id); caller owns. */
xml_node_t *sm_iq_result(const xml_node_t *iq);
/* Ends a session: unavailable broadcast (the sess_end hooks) and removal. If
 * notify_c2s, the c2s is told to close the client stream with reason. */
void sm_sess_end(sm_sess_t *s, int notify_c2s, const char *reason);

/* authreg.c: answers an <authreg/> request from a c2s. */
void sm_authreg_handle(xml_node_t *req);

/* module.c: the module list (modules_list.c, generated from sm/meson.build). */
int sm_modules_init(void);                /* 0, or -1 when a module failed to start */
void sm_modules_free(void);

/* Between the sm's own files (not for modules). config.c: the core's option
 * table; module_config.c: it joined with every module's options. */
extern const cfg_option_t sm_options[];
const cfg_option_t *sm_config_table(size_t *config_size);
int sm_module_section(void *target, const xml_node_t *el, const char *file, cfg_error_t *err);
void sm_config_table_free(void);
/* main.c: the router link and the set of sm instances serving our domain. */
int sm_link_send_raw(const char *bytes, size_t len);  /* 0, or -1 when the buffer is full */
int sm_link_above(void);                              /* router link above its high-water mark */
size_t sm_link_stanza_limit(void);                    /* the router's limits.stanza-bytes */
void sm_users_resume(void);                           /* below it again: held stanzas go on */
int sm_owns(const char *bare);                        /* 1 if this instance owns that user */
/* core.c: what main.c hands it. Elements are borrowed. */
void sm_core_init(struct event_base *base);
void sm_core_free(void);
void sm_core_cron(double now);
void sm_session_control(xml_node_t *el);  /* {S}session from a c2s */
void sm_route_in(xml_node_t *el);         /* {S}route from a c2s */
void sm_c2s_down(const char *instance);   /* a c2s instance went away: end its sessions */
/* Takeover (docs/component-protocol.md 8.5): forgets, without ending them,
 * the sessions and users this instance no longer owns (all: every one);
 * returns how many users still have storage work under way (not 0: call
 * again later). forget_all: we were taken over while away. */
size_t sm_core_release(int all);
void sm_core_forget_all(void);
/* core.c: while a user is held, stanzas for and from that user (and its
 * sessions' ends) wait in arrival order; release processes them once the
 * last hold is gone. iq.c holds the user of a deferred IQ request; a hook
 * that starts slow work for a user (asynchronous storage) holds it the same
 * way and releases it from its callback. Calls must pair. */
void sm_user_hold(sm_user_t *u);
void sm_user_release(sm_user_t *u);
/* admin.c: the admin socket (weftctl sessions); core.c tells it when
 * sessions start and end. */
int admin_start(struct event_base *base, const char *path);
void admin_sess_start(sm_sess_t *s);
void admin_sess_end(sm_sess_t *s);
void admin_stop(void);
void admin_free(void);
/* Calls fn for every live session (metrics.c). */
void admin_foreach_session(void (*fn)(const sm_sess_t *s, void *arg), void *arg);

/* metrics.c: Prometheus metrics (docs/operations.md, "Metrics"). */
void sm_metrics_register(void);

#endif
