/* sm: the session manager's shared types and its small hook API.
 *
 * Ownership: core.c owns users (sm_user_t, loaded on demand, kept while they
 * have sessions or module state) and sessions (sm_sess_t); main.c owns the
 * router link and storage. Feature modules (mod_*.c, one file each) register
 * handlers on hooks at start and keep per-user state in user->mod[their slot].
 *
 * Stanzas handed to handlers are borrowed: the caller frees them after the
 * chain ran. A handler returns SM_HANDLED to stop the chain or SM_PASS to let
 * the next one (and finally the core's default rules) see the stanza.
 * Everything runs on one event loop; nothing is thread-safe. */
#ifndef WEFT_SM_H
#define WEFT_SM_H
#include <stddef.h>
#include "daemon.h"
#include "jid.h"
#include "storage.h"
#include "xml.h"

#define SM_NS_SESSION "urn:xmpp:weft:session:1"
#define SM_NS_AUTHREG "urn:xmpp:weft:authreg:1"
#define NS_CLIENT "jabber:client"
/* Per-user state slots (sm_module_slot). Every loaded user carries all of
 * them: three are taken today; raise when a module needs one more. */
#define SM_MAX_MODULES 8

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
    char **directed;           /* JIDs it sent directed presence to (RFC 6121 4.6) */
    size_t ndirected;
    sm_sess_t *next;           /* next session of the same user */
};

struct sm_user {
    char *bare;                /* prepared bare JID "node@domain" */
    sm_sess_t *sessions;
    void *mod[SM_MAX_MODULES]; /* per-module state (freed by the module on SM_HOOK_USER_FREE) */
    sm_user_t *next;           /* hash chain */
};

typedef enum sm_ret { SM_PASS = 0, SM_HANDLED = 1 } sm_ret_t;

typedef enum sm_hook {
    SM_HOOK_SESS_START,   /* sess: a new session (before 'started' goes to c2s) */
    SM_HOOK_SESS_END,     /* sess: ending (still in the user's list); stanza = unavailable presence or NULL */
    SM_HOOK_OUT,          /* sess, stanza: sent by a local session, from stamped; to may be absent */
    SM_HOOK_IN_BARE,      /* user, stanza: to a local account's bare JID (user exists) */
    SM_HOOK_IN_FULL,      /* sess, stanza: to the full JID of a live session */
    SM_HOOK_SERVER,       /* stanza: to the served domain itself (or to nothing, from a session: see core) */
    SM_HOOK_DISCO_FEATURES, /* stanza = <query/> of a disco#info result for the server: add <feature/> children */
    SM_HOOK_ACCOUNT_FEATURES, /* same for a disco#info of an account (bare JID) */
    SM_HOOK_USER_DELETE,  /* user: the account is being removed (delete stored records) */
    SM_HOOK_USER_FREE,    /* user: leaving memory (free user->mod[slot]) */
    SM_HOOK_COUNT
} sm_hook_t;

/* One call signature for every hook; unused arguments are NULL. */
typedef sm_ret_t (*sm_handler_fn)(sm_hook_t hook, sm_user_t *user, sm_sess_t *sess,
                                  xml_node_t *stanza, void *arg);

/* hooks.c */
void sm_hook_add(sm_hook_t hook, sm_handler_fn fn, void *arg);
sm_ret_t sm_hook_run(sm_hook_t hook, sm_user_t *user, sm_sess_t *sess, xml_node_t *stanza);
/* A ready-made handler for SM_HOOK_DISCO_FEATURES / SM_HOOK_ACCOUNT_FEATURES:
 * adds <feature var=arg/> (arg: a static string) to the query. A module that
 * advertises one namespace registers it instead of writing its own. */
sm_ret_t sm_feature_handler(sm_hook_t hook, sm_user_t *user, sm_sess_t *sess,
                            xml_node_t *query, void *arg);
/* A ready-made SM_HOOK_USER_DELETE handler: deletes the user's records of
 * the collection named by arg (a static string). */
sm_ret_t sm_delete_collection_handler(sm_hook_t hook, sm_user_t *user, sm_sess_t *sess,
                                      xml_node_t *stanza, void *arg);
/* A module asks for its per-user state slot once, at registration. */
int sm_module_slot(void);

/* main.c: process-wide state. */
typedef struct sm_cfg {
    daemon_common_t common;
    char *router;
    char *router_name;
    char *name;               /* component name (router ACL) */
    char *secret;
    char *domain;             /* the served domain */
    char *database;           /* SQLite file (the older form of storage) */
    char *storage;            /* storage URL (docs/storage.md); empty: sqlite:database */
    size_t database_cache;    /* SQLite page cache bytes */
    char *tls_ca;
    long offline_max;         /* offline messages kept per user */
    long roster_max;          /* roster items per user */
    size_t max_buffer;
    char *version_name;       /* XEP-0092 answer */
    int version_os;           /* include the OS in XEP-0092 */
    long pending_max;         /* sessions.pending-max: routes held for sessions not yet re-announced */
    int conflict_refuse;      /* sessions.conflict-refuse: a taken resource refuses the new session */
    char *control;            /* admin socket path (admin.c), empty: none */
} sm_cfg_t;

extern sm_cfg_t *sm_config;
extern storage_t *sm_storage;

/* core.c: users, sessions, routing decisions. */
sm_user_t *sm_user_get(const char *bare);            /* loaded user or NULL */
sm_user_t *sm_user_load(const char *bare);           /* loads if the account exists, else NULL */
int sm_user_exists(const char *bare);                /* account in storage (1/0) */
sm_sess_t *sm_sess_find(sm_user_t *u, const char *resource);
/* Highest-priority available sessions with non-negative priority
 * (RFC 6121 8.5.2.1.1): fills out[] (at most max), returns the count. */
size_t sm_sess_best(sm_user_t *u, sm_sess_t **out, size_t max);
int sm_is_local(const char *domain);                 /* domain is the one we serve */
/* Sends a stanza on its way: to a local account owned by this sm it is
 * processed inbound at once; anything else goes to the router. The stanza is
 * borrowed (serialized, not kept). */
void sm_send(xml_node_t *st);
/* Sends a non-stanza element (session protocol: <authreg/>, <session/>) to the
 * router as is. el is borrowed (serialized, not kept). */
void sm_send_raw_element(xml_node_t *el);
/* Delivers a stanza to one session's client (wrapped in a session route). */
void sm_deliver(sm_sess_t *s, xml_node_t *st);
/* Processes a stanza addressed to a local JID (bare or full), RFC 6121 8.5. */
void sm_inbound(xml_node_t *st);
/* Answers st with an error of that condition/type (never for errors/results). */
void sm_reply_error(xml_node_t *st, const char *condition, const char *type);
/* Sends a reply to the session that asked (s), or on its way when the
 * request did not come from a local session; frees res. */
void sm_answer(sm_sess_t *s, xml_node_t *res);
/* 1 if both strings are present and equal. */
int sm_streq(const char *a, const char *b);
/* Builds a result iq for an iq get/set (to/from swapped, same id); caller owns. */
xml_node_t *sm_iq_result(const xml_node_t *iq);
/* Ends a session: unavailable broadcast (SM_HOOK_SESS_END) and removal. If
 * notify_c2s, the c2s is told to close the client stream with reason. */
void sm_sess_end(sm_sess_t *s, int notify_c2s, const char *reason);

/* mod_roster.c: the roster and the subscription state machine. */
typedef enum sm_sub { SM_SUB_NONE = 0, SM_SUB_TO = 1, SM_SUB_FROM = 2, SM_SUB_BOTH = 3 } sm_sub_t;
/* Subscription of u toward contact (bare JID), or -1 if not in the roster. */
int sm_roster_sub(sm_user_t *u, const char *contact);
typedef void (*sm_roster_fn)(const char *contact, sm_sub_t sub, void *arg);
void sm_roster_foreach(sm_user_t *u, sm_roster_fn fn, void *arg);

/* mod_blocking.c: XEP-0191. 1 if u blocks jid (full or bare; RFC 6121 rules of
 * XEP-0191 section 3.3 apply: a bare item blocks every resource). */
int sm_blocking_blocks(sm_user_t *u, const char *jid);

/* mod_offline.c: stores a message for a user with no available session
 * (adds a XEP-0203 delay). 0 stored, -1 quota reached or error (the caller
 * answers service-unavailable). */
int sm_offline_store(sm_user_t *u, xml_node_t *msg);

/* authreg.c: answers an <authreg/> request from a c2s. */
void sm_authreg_handle(xml_node_t *req);

/* modules.c: calls every module's init in a fixed order. */
void sm_modules_init(void);

/* Between the sm's own files (not for modules). config.c: the option table. */
extern const cfg_option_t sm_options[];
/* main.c: the router link and the set of sm instances serving our domain. */
int sm_link_send_raw(const char *bytes, size_t len);  /* 0, or -1 when the buffer is full */
int sm_owns(const char *bare);                        /* 1 if this instance owns that user */
/* core.c: what main.c hands it. Elements are borrowed. */
void sm_core_init(struct event_base *base);
void sm_core_free(void);
void sm_core_cron(double now);
void sm_session_control(xml_node_t *el);  /* {S}session from a c2s */
void sm_route_in(xml_node_t *el);         /* {S}route from a c2s */
void sm_c2s_down(const char *instance);   /* a c2s instance went away: end its sessions */
/* admin.c: the admin socket (weftctl sessions). */
int admin_start(struct event_base *base, const char *path);
void admin_stop(void);
void admin_free(void);
/* Calls fn for every live session (metrics.c). */
void admin_foreach_session(void (*fn)(const sm_sess_t *s, void *arg), void *arg);

/* metrics.c: Prometheus metrics (docs/operations.md, "Metrics"). */
void sm_metrics_register(void);

#endif
