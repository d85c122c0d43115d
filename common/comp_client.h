/* comp_client: the component side of the internal protocol, as a library.
 *
 * Connects to the router (TCP or UNIX socket; STARTTLS when the router is not
 * on loopback or requires it), authenticates with SCRAM-SHA-256 (-PLUS over
 * TLS), binds its names and keeps the link up forever: reconnects with capped,
 * jittered exponential backoff and re-binds. Every stanza sent is numbered and
 * kept until the router acknowledges it (the router only does so once the
 * destination acknowledged it), so a router restart loses nothing; after a
 * reconnect the unacknowledged ones are sent again and the receiving side drops
 * the duplicates by their origin marker. The buffer is bounded (max_buffer):
 * comp_client_send fails when it is full and the caller decides (bounce, wait).
 * Before that, backpressure: above half of max_buffer (the high-water mark)
 * the stanzas the router delivers are parked, unacknowledged, and given to
 * on_stanza only once the buffer fell to a quarter (the low-water mark); so
 * the half above the mark is room for the output of the element being
 * handled, and the hard limit is not reached in normal overload.
 * A component that sets on_fan gets the router's grouped deliveries of one
 * fan-out (<w:fan/>, docs/component-protocol.md 9.8) as one call: one parse
 * for many recipients, each still its own delivery and token. */
#ifndef WEFT_COMP_CLIENT_H
#define WEFT_COMP_CLIENT_H
#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>
#include "xml.h"

typedef struct comp_client_cfg {
    const char *router;        /* "host:port" or "unix:/path" */
    const char *router_name;   /* the router's name (stream 'to', TLS name check) */
    const char *name;          /* our component name (SASL identity) */
    const char *secret;
    const char *const *binds;  /* names to bind */
    size_t nbinds;
    int bind_default;          /* also bind the default route */
    const char *tls_ca;        /* CA bundle to verify the router; NULL: system default */
    int tls_verify;            /* verify the router's certificate when TLS is used */
    int tls_always;            /* use STARTTLS even on loopback (else only when the
                                  router is remote or requires it) */
    size_t max_buffer;         /* unacknowledged bytes kept (0: 16 MiB) */
    double backoff_max;        /* seconds (0: 10) */
    int manual_ack;            /* acknowledge a stanza to the router only once the
                                  component called comp_client_done for it (and for
                                  every one before it): what it still holds is sent
                                  again if it dies. Default: acknowledged on receipt. */
} comp_client_cfg_t;

/* The router-link settings of every component's config, one block in its
 * config struct (`comp_link_cfg_t link;`) and one line in its option table:
 * COMP_LINK_OPTIONS(its config type, default name, default secret, default
 * buffer) gives router.address, router.name, router.tls-ca, router.buffer,
 * name and secret (the file that expands it includes config.h). */
typedef struct comp_link_cfg {
    char *router;          /* router.address */
    char *router_name;     /* router.name */
    char *tls_ca;          /* router.tls-ca; "": system default */
    size_t buffer;         /* router.buffer */
    char *name;            /* component name: its <component> entry in router.xml */
    char *secret;
} comp_link_cfg_t;

#define COMP_LINK_OPTIONS(type, def_name, def_secret, def_buffer)                                        \
    {"router.address", CFG_STRING, "127.0.0.1:5347", 0, 0, 0, offsetof(type, link.router), NULL,          \
     "Where the router listens: host:port, [v6]:port or unix:/path."},                                   \
    {"router.name", CFG_STRING, "router", 0, 0, 0, offsetof(type, link.router_name), NULL,                \
     "The router's name (stream 'to', and the TLS certificate name checked)."},                          \
    {"router.tls-ca", CFG_STRING, "", 0, 0, 0, offsetof(type, link.tls_ca), NULL,                          \
     "CA bundle that verifies the router's certificate; empty: system default."},                        \
    {"router.buffer", CFG_SIZE, def_buffer, 65536, 1073741824, 0, offsetof(type, link.buffer), NULL,      \
     "Bytes sent to the router and not yet acknowledged before sends fail; above half, input waits."},  \
    {"name", CFG_STRING, def_name, 0, 0, 0, offsetof(type, link.name), NULL,                              \
     "Component name of this instance (its <component> entry in router.xml)."},                          \
    {"secret", CFG_STRING, def_secret, 0, 0, 0, offsetof(type, link.secret), NULL,                        \
     "Secret of that <component> entry."}

/* Sets cc's router, router_name, name, secret, tls_ca (NULL when empty),
 * tls_verify and max_buffer from l; the rest of cc is the caller's. */
void comp_link_cfg_apply(comp_client_cfg_t *cc, const comp_link_cfg_t *l);
/* SIGHUP: the link stays as started, so fresh takes old's settings (old's
 * strings are freed with old). */
void comp_link_cfg_keep(comp_link_cfg_t *fresh, comp_link_cfg_t *old);

/* One delivery of a grouped <w:fan/> (on_fan). */
typedef struct comp_fan_rcpt {
    const char *to;            /* the recipient's JID, valid during the call */
    uint64_t token;            /* as comp_client_in_token gives in on_stanza */
} comp_fan_rcpt_t;

typedef struct comp_client_cb {
    void (*on_ready)(void *ctx);                          /* authenticated and names bound */
    void (*on_down)(void *ctx);                           /* link lost; reconnecting */
    void (*on_stanza)(void *ctx, xml_node_t *stanza);     /* callee owns stanza */
    /* Several deliveries of one stanza that the router sent as one <w:fan/>
     * element (docs/component-protocol.md 9.8): the stanza parsed once,
     * without 'to' (callee owns it), and its n recipients in delivery
     * order, each one delivery with its own token (with manual_ack, each
     * goes to comp_client_done). Duplicates (9.4) are left out already.
     * Set, it makes the component ask for <w:fan/> at session time; unset,
     * the router sends plain routed elements. */
    void (*on_fan)(void *ctx, xml_node_t *stanza, const comp_fan_rcpt_t *r, size_t n);
    void (*on_name)(void *ctx, const char *name, const char *instance, int up);
    void (*on_bind_error)(void *ctx, const char *name, const char *condition);
    /* An instance of a partitioned name was taken over (state='lost'; on_name
     * reports it as down first): its users are the others' now. Our own
     * instance name here means we were lost and must forget those users. */
    void (*on_lost)(void *ctx, const char *name, const char *instance);
    /* A lost instance is back: finish with the users that move back to it,
     * then call comp_client_released. Unset: released at once. */
    void (*on_handback)(void *ctx, const char *name, const char *instance);
    /* The link went above its high-water mark (above 1: on_stanza is not
     * called until it is below its low-water mark again) or below (0). A
     * component that queues input of its own stops taking from it too. */
    void (*on_pressure)(void *ctx, int above);
    /* Right before an acknowledgement is written: a component that holds
     * output back to merge it (the sm's deliver_batch.c) writes it now, so
     * nothing it caused comes after the ack that lets the router forget its
     * cause. */
    void (*before_ack)(void *ctx);
} comp_client_cb_t;

typedef struct comp_client comp_client_t;

/* Copies cfg (strings included) and starts connecting at once. NULL (logged)
 * when cfg names a tls_ca that cannot be read: the process should not start. */
comp_client_t *comp_client_new(struct event_base *base, const comp_client_cfg_t *cfg,
                               const comp_client_cb_t *cb, void *ctx);
void comp_client_free(comp_client_t *c);
/* Queues a stanza (serialized in jabber:component:accept). 0, or -1 when the
 * buffer is full. Safe to call while disconnected. */
int comp_client_send(comp_client_t *c, const xml_node_t *stanza);
/* Same with an already serialized top-level element. */
int comp_client_send_raw(comp_client_t *c, const char *bytes, size_t len);
/* The largest element the router takes (its limits.stanza-bytes, learnt at
 * the session; the default until then). */
size_t comp_client_stanza_limit(const comp_client_t *c);
/* One stanza to n recipients as fan-out elements (docs/component-protocol.md
 * 9.7): stanza is serialized without 'to' (the router adds each
 * recipient's). With manual_ack, ack_token (from comp_client_in_token, or 0)
 * marks that stanza done and the resulting acknowledgement rides in the
 * element, so the router takes every delivery and the ack together or
 * neither. When the router's limits (recipients, element size, expanded
 * bytes, learnt at the session) need several elements, the ack rides on the
 * last. 0, or -1 when the buffer is full. */
int comp_client_send_fanout(comp_client_t *c, const char *stanza, size_t len, const char *const *to, size_t n,
                            uint64_t ack_token);
int comp_client_is_ready(const comp_client_t *c);
/* Stanzas sent and not yet acknowledged (still in our buffer). */
size_t comp_client_unacked(const comp_client_t *c);
size_t comp_client_buffered_bytes(const comp_client_t *c);
/* 1 from the moment the buffer passed the high-water mark until it fell to
 * the low-water mark (on_pressure tells both): input should wait. 0 while a
 * stalled link hands parked input on (docs/component-protocol.md 10.1). */
int comp_client_above_high(const comp_client_t *c);
/* Stanzas received meanwhile and not yet given to on_stanza. */
size_t comp_client_parked(const comp_client_t *c);
/* With manual_ack: inside on_stanza, the token of the stanza being delivered;
 * pass it to comp_client_done once the stanza is finished with (sent on,
 * bounced or dropped on purpose). Tokens of an earlier router link are
 * ignored: the router sent those stanzas again on the new link. */
uint64_t comp_client_in_token(const comp_client_t *c);
void comp_client_done(comp_client_t *c, uint64_t token);
/* Inside on_stanza: the origin marker the router put on the stanza (the
 * sender's epoch and seq, component-protocol.md section 9). The same stanza
 * given again after the receiver's own restart carries the same marker, so a
 * receiver can derive a stable identity from it. -1 when it came without. */
int comp_client_in_origin(const comp_client_t *c, const char **epoch, uint64_t *seq);
/* Writes what the link holds (acknowledgements included, also from inside
 * on_stanza) to the router's socket now rather than at the next loop turn,
 * when the link is a plain TCP or UNIX socket (a TLS link waits for its
 * turn). c2s calls it right
 * after a client's bytes reached the kernel, so that the window in which a
 * kill leaves a stanza delivered but unacknowledged (given again from
 * offline storage) is as short as two system calls. */
void comp_client_flush(comp_client_t *c);
/* For a plain TCP or UNIX link: in *room, about how many bytes the kernel
 * would take now without a partial write (0 while our own output buffer is
 * not empty, SIZE_MAX when the socket's queue is empty), and in *capacity
 * the socket's send buffer size. -1 for a TLS link or no link. weft-muc
 * waits for room before handling a stanza, so that a stanza's effects and
 * its acknowledgement reach the kernel in one write. */
int comp_client_write_room(const comp_client_t *c, size_t *room, size_t *capacity);
/* Answers a handback (<w:released/>), after everything sent before it. */
void comp_client_released(comp_client_t *c, const char *name, const char *instance);
/* Once everything is acknowledged (or at once with force) sends the final
 * ack and </stream:stream>, processes nothing more, and closes when the
 * router answers (or after 2 s); it then stops reconnecting and calls
 * on_down. */
void comp_client_close(comp_client_t *c, int force);

#endif
