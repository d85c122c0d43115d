/* bench_xmpp: the pieces of weft-bench-xmpp shared between its files.
 *
 * bench_xmpp_conn.c is one XMPP client connection as a state machine on the
 * shared event loop: TCP, STARTTLS or direct TLS (no certificate verification:
 * the servers under test use self-signed certificates), in-band registration
 * or SASL (common/sasl client side), bind, optional session, roster fetch and
 * initial presence, then stanzas are handed to the scenario (hot ones as
 * their checked bytes, bench_xmpp_raw.c). bench_xmpp_io.c reads and writes
 * a connection once it is set up (own reads; STARTTLS sessions on weft's
 * TLS record layer). bench_xmpp.c
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
    /* Optional, both or neither: messages read from their bytes instead of
     * a tree (bench_xmpp_raw.c), for the scenarios' hot stanzas. raw_want
     * decides once the session is ready, from the name and the top-level
     * attributes (expat-style, xml_attrs_find); on_raw gets the element's
     * exact bytes, checked by the scanner, and returns 0 when it needs the
     * tree after all: on_stanza then gets it. */
    int (*raw_want)(bx_conn_t *c, const char *name, const char **attrs);
    int (*on_raw)(bx_conn_t *c, const char **attrs, const char *bytes, size_t len);
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
    /* internals (bench_xmpp_conn.c, bench_xmpp_io.c) */
    struct bufferevent *bev;     /* what is read and written: raw, or a TLS bufferevent */
    struct bufferevent *raw;     /* the socket's, under a STARTTLS filter; NULL otherwise */
    SSL *ssl;                    /* the filter's until the takeover (freed here, not by libevent) */
    struct tls_record *rec;      /* after the takeover: weft's record layer, over raw */
    struct event *rd_ev;         /* own reads (bench_xmpp_io.c), once bev no longer reads */
    struct event *takeover_ev;
    struct evbuffer *rin;        /* own reads under TLS: an incomplete record */
    struct evbuffer *win;        /* own reads over WebSocket: an incomplete frame */
    struct xml_scan_stream *xs;
    struct sasl_client *sasl;
    struct event *close_timer;
    int state;
    int tls_on, authed, need_session, pending_rs, in_feed, dead, dead_clean;
    int tls_kept;            /* the takeover was refused: OpenSSL keeps the connection */
    int ws_up;               /* WebSocket: the 101 was read */
    char dead_why[256];
};

extern int bx_trace;
/* Top-level elements received on every connection so far (tree or raw). */
extern uint64_t bx_stanzas_in;
/* Of them, read raw (without a tree); sessions whose TLS moved to weft's
 * record layer, and those OpenSSL kept (bench_xmpp_io.c). */
extern uint64_t bx_raw_in, bx_tls_taken, bx_tls_kept;
/* WEFT_BENCH_OPENSSL=1 keeps every session with OpenSSL, WEFT_BENCH_TREES=1
 * parses every stanza into a tree: to tell the generator's part in a change
 * of figures. */
extern int bx_no_takeover, bx_no_raw;

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

/* Between bench_xmpp_conn.c and bench_xmpp_io.c. */
/* Plaintext from the server to the stream (through the WebSocket framing
 * when there is one); -1 once the connection is ending. */
int bx_conn_feed(bx_conn_t *c, const char *data, size_t len);
/* The link failed or the server ended it: the connection ends, cleanly
 * if we were closing (freed at once, or by bx_conn_reap after a feed). */
void bx_conn_lost(bx_conn_t *c, const char *why);
/* After a read: frees the connection if it ended meanwhile. */
void bx_conn_reap(bx_conn_t *c);
void bx_conn_event_cb(struct bufferevent *bev, short what, void *arg);

/* bench_xmpp_io.c: reading with one read() of up to 64 KiB per wakeup
 * instead of bufferevent's FIONREAD and 4 KiB reads, and TLS records
 * opened by weft's own record layer once OpenSSL handed them over. */
void bx_io_start(bx_conn_t *c);             /* bev stops reading; we read the socket */
void bx_io_takeover_soon(bx_conn_t *c);     /* after a read under a STARTTLS filter */
void bx_io_write(bx_conn_t *c, const void *data, size_t len);   /* sealed when rec */
size_t bx_io_outq(const bx_conn_t *c);

/* bench_xmpp_raw.c: values from a checked element's bytes. Each returns 1
 * when found, 0 when the tree has none either, -1 when only the tree can
 * tell (ask bx_raw_tree). bx_raw_find follows path (local names, one per
 * level below the element, each the first child of that name) and gives
 * the last one's start tag; bx_raw_attr reads an attribute of such a tag;
 * bx_raw_child_text copies the first text of the first child name into buf
 * (NUL-terminated; -1 if it does not fit). */
int bx_raw_find(const char *el, size_t len, const char *const *path, int n, const char **tag, size_t *tag_len);
int bx_raw_attr(const char *tag, size_t tag_len, const char *name, const char **v, size_t *vlen);
int bx_raw_child_text(const char *el, size_t len, const char *name, char *buf, size_t buflen);
/* The tree of a checked element, as a client stream would give it; NULL if
 * it cannot be read alone. The caller frees it. */
xml_node_t *bx_raw_tree(const char *bytes, size_t len);

/* bench_xmpp_ws.c: the WebSocket transport (t->ws_path set). */
void bx_ws_upgrade(bx_conn_t *c);
void bx_ws_send(bx_conn_t *c, const char *data, size_t len);
struct evbuffer;
int bx_ws_read(bx_conn_t *c, struct evbuffer *in, int (*feed)(bx_conn_t *, const char *, size_t), char *why,
               size_t whylen);

#endif
