/* module: the API an sm feature module is written against.
 *
 * A module is one file that defines one sm_module_t and is named once in
 * sm/meson.build's module list (the list in the generated modules_list.c
 * follows it; its order is the order hooks run in). The descriptor says
 * everything the core needs: the module's options (parsed from sm.xml as
 * <module name="X">...</module> or <X>...</X>, and printed by --doc), the
 * hooks it handles (typed, one member per event), the IQ namespaces it
 * serves (the core dispatches and answers the errors), the disco features it
 * adds, and how to free its per-user state. docs/sm-modules.md is the guide,
 * tests/modules/mod_example.c the example that uses every part.
 *
 * Ownership: stanzas handed to hooks and IQ handlers are borrowed for the
 * call (an IQ request that is deferred is copied by the core, see sm_iq_t).
 * Everything runs on the sm's one event loop. */
#ifndef WEFT_SM_MODULE_H
#define WEFT_SM_MODULE_H
#include "config.h"
#include "sm.h"

typedef enum sm_ret { SM_PASS = 0, SM_HANDLED = 1 } sm_ret_t;

/* --- IQ requests ------------------------------------------------------------
 *
 * The core hands an iq get/set to the handler registered for its payload's
 * namespace (and for the target: the domain or an account). The handler
 * answers with sm_iq_reply or sm_iq_error, at once or later: a handler that
 * must wait (asynchronous storage) calls sm_iq_defer before it returns and
 * answers the request it returned when its callback runs. Until then the core holds every later
 * stanza of the same user (what its sessions send and what reaches it) in
 * arrival order, so a client never sees a later answer overtake an earlier
 * one. A request that is not answered nor deferred when its handler returns
 * gets internal-server-error (and a log line naming the module). */
typedef struct sm_iq sm_iq_t;
struct sm_iq {
    xml_node_t *iq;          /* the request; from stamped, type get or set */
    xml_node_t *payload;     /* its one child element */
    int set;                 /* 1 for type set, 0 for get */
    sm_user_t *user;         /* the account addressed; NULL when to the domain */
    sm_sess_t *sess;         /* the local session that sent it: for the domain,
                              * any session; for an account, only its owner's
                              * own session (no 'to' or its own bare JID);
                              * NULL otherwise */
    int own;                 /* the sender is the addressed account itself */
    const char *from_bare;   /* the sender's bare JID (NULL if none) */
};
typedef void (*sm_iq_fn)(sm_iq_t *req);

/* Answers with a result carrying payload (owned by the call; NULL: an empty
 * result). Ends the request: req is invalid afterwards. */
void sm_iq_reply(sm_iq_t *req, xml_node_t *payload);
/* Answers with a stanza error (condition of RFC 6120 8.3.3, type cancel,
 * modify, auth or wait). Ends the request. */
void sm_iq_error(sm_iq_t *req, const char *condition, const char *type);
/* Keeps the request past the handler's return: returns the request to answer
 * later (a copy the core owns; req itself is spent). Its sess is NULL
 * (sessions may end meanwhile: the answer is routed to the sender's full
 * JID); its user stays loaded and held until the answer. */
sm_iq_t *sm_iq_defer(sm_iq_t *req);

#define SM_IQ_SERVER 1u      /* iqs to the domain (or with no 'to' when no account handler) */
#define SM_IQ_ACCOUNT 2u     /* iqs to an account's bare JID (or with no 'to' from its session) */

typedef struct sm_iq_handler {
    const char *ns;          /* namespace of the payload */
    unsigned where;          /* SM_IQ_SERVER | SM_IQ_ACCOUNT */
    sm_iq_fn get, set;       /* NULL: that type is refused */
    const char *refuse;      /* condition for a refused type; NULL: service-unavailable */
} sm_iq_handler_t;

/* --- hooks ------------------------------------------------------------------
 *
 * One member per event; a module sets those it handles. Handlers run in the
 * module list's order. The sm_ret_t ones stop the chain with SM_HANDLED (the
 * stanza was consumed: nothing later, not even the core's default rule, sees
 * it). */
typedef struct sm_hooks {
    /* A session started (before 'started' goes to c2s) / ends (still on its
     * user's list; unavailable is the presence broadcast for it, or NULL). */
    void (*sess_start)(sm_sess_t *s);
    void (*sess_end)(sm_sess_t *s, xml_node_t *unavailable);
    /* A user was loaded into memory / the account is being removed (delete
     * what the module stored for it). */
    void (*user_load)(sm_user_t *u);
    void (*user_delete)(sm_user_t *u);
    /* What a local session sends: from stamped, to prepared or absent. */
    sm_ret_t (*message_out)(sm_sess_t *s, xml_node_t *msg);
    sm_ret_t (*presence_out)(sm_sess_t *s, xml_node_t *pres);
    sm_ret_t (*iq_out)(sm_sess_t *s, xml_node_t *iq);
    /* What reaches a local account: to is the addressed live session, or NULL
     * for the bare JID (and for what RFC 6121 8.5.3 handles as such). */
    sm_ret_t (*message_in)(sm_user_t *u, sm_sess_t *to, xml_node_t *msg);
    sm_ret_t (*presence_in)(sm_user_t *u, sm_sess_t *to, xml_node_t *pres);
    sm_ret_t (*iq_in)(sm_user_t *u, sm_sess_t *to, xml_node_t *iq);
    /* A message for an account that no session received (RFC 6121 8.5.2.1.1
     * with no available resource). SM_HANDLED: the module took it (stored
     * it); if none does, the sender gets service-unavailable. */
    sm_ret_t (*undelivered)(sm_user_t *u, xml_node_t *msg);
    /* disco#info of the domain (asker: the local session asking, or NULL) or
     * of an account: add <feature/> children to query beyond the module's
     * static feature lists. */
    void (*disco_server)(sm_sess_t *asker, xml_node_t *query);
    void (*disco_account)(sm_user_t *u, xml_node_t *query);
    /* An item of u's roster changed (sub: sm_sub_t, or -1 when removed). */
    void (*roster_change)(sm_user_t *u, const char *contact, int sub);
    /* disco#info (items = 0) or disco#items (items = 1) of a node of the
     * domain, asked by from_bare (NULL if unknown): a module that knows the
     * node fills query (identities and features, or items) and returns 1;
     * 0 passes it on. No module knowing it: item-not-found. */
    int (*disco_server_node)(const char *from_bare, const char *node, int items, xml_node_t *query);
    /* The router announced that a name came up or went down (bound or lost
     * by a component instance: docs/component-protocol.md section 7), for
     * every name, the sm's own domain included. mod_disco lists components
     * with it. */
    void (*component_change)(const char *name, const char *instance, int up);
    /* Once a second (the sm's cron), with the daemon's clock: a module's
     * periodic work (mod_mam's retention), kept short: the loop waits. */
    void (*cron)(double now);
    /* A session hibernated (XEP-0198: its client's connection is gone, c2s
     * queues what comes; pending = messages with a body the client did not
     * acknowledge) or resumed (on = 0, pending = 0). s->hibernated is set
     * already. */
    void (*sess_hibernate)(sm_sess_t *s, int on, unsigned pending);
} sm_hooks_t;

/* --- the descriptor ------------------------------------------------------------ */

typedef struct sm_module sm_module_t;
struct sm_module {
    const char *name;                    /* sm.xml <module name=...>; its options' prefix */
    const char *help;                    /* one line for docs/configuration.md */
    int off_by_default;                  /* 1: loaded only when sm.xml enables it */
    int (*init)(void);                   /* 0, or -1 (logged) to stop the start */
    void (*free)(void);                  /* at exit, after every user was freed */
    const cfg_option_t *options;         /* names relative to the module; offsets in its
                                          * config struct; NULL-name terminated; or NULL */
    size_t config_size;                  /* sizeof that struct */
    const sm_hooks_t *hooks;             /* or NULL */
    const sm_iq_handler_t *iqs;          /* ns == NULL terminated, or NULL */
    const char *const *server_features;  /* disco features of the domain, NULL terminated */
    const char *const *account_features; /* and of an account */
    void (*user_state_free)(sm_user_t *u, void *state);   /* frees sm_user_state() */
    /* Filled by the core; a module never touches them. */
    int index;
    size_t cfg_offset;
};

/* The module's loaded configuration (its config struct, defaults applied);
 * the pointer changes on SIGHUP: ask again rather than keep it. */
const void *sm_module_config(const sm_module_t *m);
/* 1 if m is loaded (enabled in sm.xml). */
int sm_module_enabled(const sm_module_t *m);

/* Per-user state: one pointer per module and user, NULL until set; the core
 * calls m->user_state_free when the user leaves memory. */
void *sm_user_state(const sm_user_t *u, const sm_module_t *m);
void sm_user_state_set(sm_user_t *u, const sm_module_t *m, void *state);

/* Runs the roster_change hooks (mod_roster calls it). */
void sm_hooks_roster_change(sm_user_t *u, const char *contact, int sub);
/* Adds the domain's (server=1) or an account's features of every loaded
 * module to a disco#info query, then runs the disco hooks (mod_disco). */
void sm_disco_features(xml_node_t *query, int server, sm_user_t *u, sm_sess_t *asker);
/* Asks the disco_server_node hooks about a node of the domain: 1 if one
 * filled query (mod_disco). */
int sm_disco_server_node(const char *from_bare, const char *node, int items, xml_node_t *query);

#endif
