/* router: shared types of the router process.
 *
 * Ownership: link_t (one per component connection) is owned by link.c; the
 * routing table (names, their instance slots and hold queues) by names.c;
 * origin_t (one per sending component epoch: what the router has to
 * acknowledge back to it) by origin.c; forward.c moves stanzas between them.
 * Everything lives on one event loop; nothing here is thread-safe. */
#ifndef WEFT_ROUTER_H
#define WEFT_ROUTER_H
#include <stddef.h>
#include <stdint.h>
#include <event2/bufferevent.h>
#include <event2/buffer.h>
#include <openssl/ssl.h>
#include "daemon.h"
#include "sasl.h"
#include "xml_scan.h"

/* One <component> entry of router.xml: who may connect and what it may do. */
typedef struct acl {
    char *name;            /* authentication name (SASL authcid / XEP-0114 domain) */
    char *secret;
    int xep0114;           /* 1: legacy jabber:component:accept handshake */
    int may_default;       /* may bind the default route */
    int trusted_from;      /* from= is not checked against its bound names */
    char **binds;          /* names it may bind: exact, or "*.suffix" */
    size_t nbinds;
    scram_keys_t keys;     /* derived from secret at start */
    struct acl *next;
} acl_t;

typedef struct router_cfg {
    daemon_common_t common;
    char *name;
    char *listen;
    char *listen_unix;
    char *control;
    char *tls_cert;
    char *tls_key;
    int tls_required_remote;
    int xep0114_remote;
    size_t stanza_bytes;
    long depth;
    long attrs;
    size_t output_high;
    long window;
    long fanout_recipients;    /* most recipients of one <w:fanout/> */
    size_t fanout_bytes;       /* most bytes one <w:fanout/> may expand into */
    double hold_seconds;
    size_t hold_bytes;
    double takeover_seconds;   /* 0: an away partition instance is never taken over */
    double handback_timeout;
    double auth_timeout;
    long scram_iterations;
    acl_t *acls;
    char **partitioned;
    size_t npartitioned;
} router_cfg_t;

extern const cfg_option_t router_options[];
extern router_cfg_t *router_config;
const acl_t *router_acl_find(const char *name);
int router_acl_may_bind(const acl_t *acl, const char *name);

typedef struct link link_t;
typedef struct slot slot_t;
typedef struct origin origin_t;

/* A stanza forwarded to an internal component and not yet acknowledged by it.
 * Its bytes are in the link's retained ring: mlen bytes of origin marker,
 * then the len bytes of the stanza. A delivery that went out in a grouped
 * <w:fan/> element (fan_n deliveries, this one number fan_i) has mlen 0 and
 * len 0, except the group's last, whose len is the whole element's: the
 * bytes leave the ring when every delivery of the group is acknowledged,
 * and a lost link parses the element again to requeue each on its own. */
typedef struct inflight {
    origin_t *origin;
    uint64_t seq;
    slot_t *slot;
    const char *via;           /* takeover.c: the lost instance it was held for, or NULL */
    size_t len;
    size_t mlen;
    uint32_t fan_n, fan_i;     /* 0, 0: a plain element */
} inflight_t;

typedef enum link_state {
    LINK_HEADER,      /* waiting for the stream header */
    LINK_AUTH,        /* features sent; STARTTLS or SASL expected */
    LINK_SESSION,     /* authenticated; <w:session> expected */
    LINK_READY,       /* routing */
    LINK_CLOSING,     /* stream error sent; closing after flush */
} link_state_t;

typedef struct link_counters {
    uint64_t stanzas_in, stanzas_out, bytes_in, bytes_out, bounced;
    uint64_t fan_elements;     /* <w:fan/> elements written (each several of stanzas_out) */
} link_counters_t;

struct link {
    uint64_t id;
    struct bufferevent *bev;
    xml_scan_stream_t *xs;
    char peer[64];
    int local;                 /* loopback or UNIX peer */
    int internal;              /* internal protocol (else XEP-0114) */
    int fan_ok;                /* said fan='1' in <w:session/>: takes <w:fan/> (9.8) */
    int tls;
    int starttls_pending;      /* <proceed/> sent; TLS starts after the parser returns */
    int torn_down;             /* removed from routing (link_teardown ran) */
    int draining;              /* reading what a lost peer left, pauses ignored */
    int feeding;               /* feed_input is running (its parser is on the stack) */
    link_state_t state;
    const acl_t *acl;
    char stream_id[33];
    int header_sent;           /* our stream header is out (errors need one first) */
    sasl_server_t *sasl;
    char mech[24];             /* SASL mechanism in use */
    struct event *auth_timer;
    origin_t *origin;          /* our bookkeeping of what it sent */
    /* Stanzas sent to it, in order, kept until acknowledged (internal only). */
    uint64_t out_count;        /* stanzas forwarded on this link */
    uint64_t out_acked;
    inflight_t *fifo;
    size_t fifo_head, fifo_len, fifo_cap;
    /* Retained ring: marker and bytes of the fifo's stanzas, same order, in
     * rbuf[rhead, rtail); link.c frees rbuf. rbuf[rout, rtail) is not in the
     * output yet: forward_flush hands it over in one add, once per loop
     * turn and before anything else is written to the link (link_send), so
     * a stanza is copied once on its way and the output's callbacks run
     * once per turn. Invariant: rhead <= rout <= rtail. */
    char *rbuf;
    size_t rhead, rout, rtail, rcap;
    link_t *flush_next;        /* links with something to flush */
    int flush_pending;
    const origin_t *last_marker;
    /* Sources paused because this link's output is full. */
    link_t **waiters;
    size_t nwaiters, capwaiters;
    int paused;                /* our reading from it is paused */
    int pause_reasons;         /* bit 1: destination full, bit 2: window full */
    char **bound;              /* names it bound */
    size_t nbound;
    link_counters_t c;
    link_t *next;              /* all links */
    link_t *ack_next;          /* pending-ack list */
    int ack_pending;
};

/* link.c */
int link_start(struct event_base *base, router_cfg_t *cfg);
void link_stop_all(void);
void link_free_all(void);
int link_load_tls(void);
void link_send(link_t *l, const char *data, size_t len);
void link_close_error(link_t *l, const char *condition, const char *text);
void link_pause(link_t *l, int reason);
void link_resume(link_t *l, int reason);
link_t *link_list(void);
size_t link_count(void);

/* origin.c: tracking which of a component's stanzas are done. */
struct origin {
    char epoch[40];
    char owner[64];            /* component (ACL) name the epoch belongs to */
    link_t *link;              /* attached link, NULL while away */
    uint64_t done_upto;        /* every seq <= done_upto is done */
    uint64_t next_seq;         /* seq the next stanza read gets */
    uint8_t *bits;             /* ring of done flags for (done_upto, next_seq) */
    uint64_t ring;             /* ring size (power of two) */
    unsigned refs;             /* inflight/held entries pointing here */
    double detached_at;
    origin_t *next;
};
origin_t *origin_attach(const char *epoch, uint64_t next, link_t *l);
origin_t *origin_anonymous(link_t *l);
void origin_detach(origin_t *o);
void origin_done(origin_t *o, uint64_t seq);
int origin_window_full(const origin_t *o);
void origin_reserve(origin_t *o);
void origin_ref(origin_t *o);
void origin_unref(origin_t *o);
void origin_cron(double now);
void origin_flush_acks(void);
void origin_forget_link(link_t *l);
void origin_free_all(void);

/* names.c: the routing table. */
typedef struct held {
    struct held *next;
    origin_t *origin;
    uint64_t seq;
    const char *via;           /* as inflight_t's */
    double since;
    size_t len;
    char bytes[];
} held_t;

struct slot {
    char *instance;            /* the ACL name of the instance */
    link_t *link;              /* NULL while away */
    double down_since;
    held_t *head, *tail;
    size_t held_bytes, held_count;
    struct route_name *rn;
    slot_t *next;
    /* Handback (takeover.c): the instance is back after a takeover; it
     * binds, but what is for it is held until every survivor has released
     * its users (links listed here) or handback.timeout has passed. */
    int fenced;
    double fenced_at;
    int bound_once;            /* bound since the router started */
    uint64_t *handback;        /* ids of the links that have not released */
    size_t nhandback;
};

typedef struct route_name {
    char *name;                /* "" for the default route */
    size_t len;                /* strlen(name) */
    int partitioned;
    slot_t *slots;
    char **lost;               /* instances taken over (takeover.c), until they bind again */
    size_t nlost;
    struct route_name *next;   /* hash chain */
} route_name_t;

void names_init(router_cfg_t *cfg);
void names_free_all(void);
/* Bind: 0 ok; otherwise a condition name for <w:bind-error>. */
const char *names_bind(link_t *l, const char *name, int is_default);
const char *names_bind_check(link_t *l, const char *name, int is_default);
void names_unbind(link_t *l, const char *name);
/* Called when a link goes away: its slots go down, inflight requeued. */
void names_link_lost(link_t *l);
route_name_t *names_lookup(const char *name, size_t len);
route_name_t *names_default(void);
slot_t *names_pick(route_name_t *rn, const char *key, size_t keylen);
int names_hold(slot_t *s, origin_t *o, uint64_t seq, const char *via, const char *bytes, size_t len);
void names_cron(double now);
void names_announce_all(link_t *to);
void names_broadcast(const char *name, const char *instance, int up);
size_t names_held_total(void);
void names_slot_flush(slot_t *s);
void names_foreach(void (*fn)(route_name_t *rn, void *arg), void *arg);

/* takeover.c: survivors take over a lost partition instance's users and
 * hand them back when it returns (docs/component-protocol.md, 8.5). */
void takeover_cron(double now);
/* A bind of rn by l's instance, slot s: 1 when s is fenced (held for a
 * handback), 0 when it may be flushed now. */
int takeover_on_bind(link_t *l, route_name_t *rn, slot_t *s);
void takeover_released(link_t *l, const char *name, const char *instance);
void takeover_link_lost(link_t *l);
void takeover_free_rn(route_name_t *rn);
void takeover_free_slot(slot_t *s);
/* The interned copy of an instance name (lives until exit). */
const char *takeover_intern(const char *instance);
void takeover_free_all(void);

/* metrics.c: Prometheus metrics (docs/operations.md, "Metrics"). */
void router_metrics_register(void);
void names_stats(strbuf_t *out);

/* forward.c */
void forward_raw(link_t *from, const char *ns, const char *name, const char **attrs,
                 const char *bytes, size_t len);
/* A <w:fanout/> from an internal component (docs/component-protocol.md 9.7):
 * every delivery, then the ack it carries. */
void forward_fanout(link_t *from, xml_node_t *el);
/* via: the instance a taken-over element was held for (takeover.c), or NULL;
 * the receiver's marker names it (p='...'), see docs/component-protocol.md 9.4. */
void forward_to_slot(slot_t *s, origin_t *o, uint64_t seq, const char *via, const char *bytes, size_t len);
void forward_ack(link_t *l, uint64_t h);
void forward_bounce(origin_t *o, uint64_t seq, const char *bytes, size_t len,
                    const char *condition, const char *etype);
/* Routes a held element again among rn's slots (its owner was taken over). */
void forward_reroute(route_name_t *rn, origin_t *o, uint64_t seq, const char *via, const char *bytes, size_t len);
void forward_output_drained(link_t *l);
void forward_flush(link_t *l);
/* Decimal digits of v into buf (no NUL, at most 20); returns the length. */
size_t u64_dec(char *buf, uint64_t v);
void forward_forget_flush(link_t *l);
size_t forward_output_length(link_t *l);
void forward_cron(void);
void forward_forget_waiter(link_t *gone);

/* control.c: the admin socket. */
int control_start(struct event_base *base, const char *path);
void control_stop(void);

#endif
