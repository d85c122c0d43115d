/* bench_xmpp: the pieces of weft-bench-xmpp shared between its two files.
 *
 * bench_xmpp_conn.c is one XMPP client connection as a state machine on the
 * shared event loop: TCP, STARTTLS or direct TLS (no certificate verification:
 * the servers under test use self-signed certificates), in-band registration
 * or SASL (common/sasl client side), bind, optional session, roster fetch and
 * initial presence, then stanzas are handed to the scenario. bench_xmpp.c
 * holds the command line, account provisioning, the scenarios and the
 * report. A connection is freed by this module only; the scenario learns of it
 * through on_closed and must drop its pointer there. A connection knows its
 * target (bx_target_t), so one run can hold connections to two servers
 * (--peer-host). */
#ifndef WEFT_BENCH_XMPP_H
#define WEFT_BENCH_XMPP_H
#include "net.h"
#include "strbuf.h"
#include "xml.h"
#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdint.h>

enum { BX_TLS_NONE = 0, BX_TLS_STARTTLS, BX_TLS_DIRECT };

/* What the whole run connects to; filled from the command line. */
typedef struct bx_target {
    struct event_base *base;
    net_addr_t addr;
    const char *domain;
    int tls;                 /* BX_TLS_* */
    SSL_CTX *ssl_ctx;        /* NULL when tls == BX_TLS_NONE */
    const char *mech;        /* SASL mechanism to insist on */
    const char *password;
    const char *user_template;  /* printf-style with one %d */
    int scram_cache;         /* keep SaltedPassword per account, as real clients do */
    const char *ws_path;     /* --websocket: RFC 7395 at this HTTP path; NULL for TCP */
} bx_target_t;

/* Connection flags: what to do after bind. */
enum {
    BX_F_REGISTER = 1,   /* XEP-0077 registration, then close (no login) */
    BX_F_ROSTER = 2,     /* fetch the roster after bind */
    BX_F_PRESENCE = 4,   /* send initial presence before ready */
};

typedef struct bx_conn bx_conn_t;

typedef struct bx_handler {
    /* Bound (and roster fetched, presence sent, as flagged). */
    void (*on_ready)(bx_conn_t *c);
    /* Any stanza the connection does not consume itself, after bind. The tree
     * is freed after the call. */
    void (*on_stanza)(bx_conn_t *c, xml_node_t *st);
    /* Optional: the roster result (query element, may be NULL). Returns the
     * number of roster-set iqs (ids "rs...") it sent with bx_conn_send; the
     * connection waits for their answers before presence. */
    int (*on_roster)(bx_conn_t *c, const xml_node_t *query);
    /* Optional: an iq get or set from the server; returns 1 if it answered,
     * else the connection answers (a result to roster pushes, otherwise
     * service-unavailable). */
    int (*on_iq)(bx_conn_t *c, xml_node_t *iq);
    /* The connection ended: clean=1 after our close handshake or a finished
     * registration (reg_status then says "ok", "conflict" or the error);
     * clean=0 with why on failure. c is freed right after. */
    void (*on_closed)(bx_conn_t *c, int clean, const char *why);
} bx_handler_t;

struct bx_conn {
    const bx_target_t *t;
    const bx_handler_t *h;
    int idx;                 /* user number */
    int flags;
    void *ud;                /* scenario data */
    long slot;               /* scenario data */
    char user[64];
    char resource[32];
    char jid[320];           /* full JID after bind */
    char bare[300];
    const char *reg_status;  /* registration outcome: a static string or reg_error */
    char reg_error[48];      /* the error condition, copied: it outlives the stanza */
    uint64_t t_start;        /* monotonic ns at connect */
    /* internals (bench_xmpp_conn.c) */
    struct bufferevent *bev;
    struct xml_stream *xs;
    struct sasl_client *sasl;
    struct event *close_timer;
    int state;
    int tls_on, authed, need_session, pending_rs, in_feed, dead, dead_clean;
    int ws_up;               /* WebSocket: the 101 was read */
    char dead_why[256];
};

extern int bx_trace;
/* Top-level elements received on every connection so far (tree or raw). */
extern uint64_t bx_stanzas_in;

/* Monotonic time in nanoseconds. */
uint64_t bx_now_ns(void);

/* Starts a connection for user number idx; NULL (with a warning) only when
 * the socket cannot be created. */
bx_conn_t *bx_conn_start(const bx_target_t *t, const bx_handler_t *h, int idx, int flags,
                         const char *resource, void *ud);
/* Queues bytes on the stream. */
void bx_conn_send(bx_conn_t *c, const char *data, size_t len);
void bx_conn_sends(bx_conn_t *c, const char *s);
/* Sends </stream:stream> and waits (at most 5 s) for the server's close;
 * on_closed(clean=1) follows. */
void bx_conn_close(bx_conn_t *c);
/* Drops the connection at once; on_closed(clean=0, why) follows. */
void bx_conn_abort(bx_conn_t *c, const char *why);
/* Bytes queued for writing (flow control for the chat scenario). */
size_t bx_conn_outq(const bx_conn_t *c);

/* bench_xmpp_ws.c: the WebSocket transport (t->ws_path set). */
void bx_ws_upgrade(bx_conn_t *c);
void bx_ws_send(bx_conn_t *c, const char *data, size_t len);
struct evbuffer;
int bx_ws_read(bx_conn_t *c, struct evbuffer *in, int (*feed)(bx_conn_t *, const char *, size_t), char *why,
               size_t whylen);

#endif
