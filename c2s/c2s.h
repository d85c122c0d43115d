/* c2s: the client-to-server process's shared types.
 *
 * Ownership: client.c owns every client_t (one per TCP connection, or one per
 * detached XEP-0198 session waiting for its client to come back) and the table
 * that finds them by session id; sm_link.c owns the router link; listen.c owns
 * the listeners and the TLS context; limits.c owns the per-IP counters.
 *
 * A client's life: CL_HEADER (waiting for a stream header) -> CL_OPEN
 * (negotiating: STARTTLS, SASL, IBR) -> CL_AUTH_WAIT (SASL paused while the sm
 * answers an authreg get) -> CL_AUTHED (stream restarted after SASL) ->
 * CL_BINDING (session start sent, waiting for 'started') -> CL_SESSION ->
 * CL_CLOSED (output draining, then freed). A XEP-0198 session whose TCP
 * connection dropped is CL_SESSION with bev == NULL ("detached").
 *
 * Everything runs on one libevent loop; nothing here is thread-safe. */
#ifndef WEFT_C2S_H
#define WEFT_C2S_H
#include <stddef.h>
#include <stdint.h>
#include <event2/bufferevent.h>
#include <openssl/ssl.h>
#include "comp_client.h"
#include "daemon.h"
#include "jid.h"
#include "sasl.h"
#include "tls_record.h"
#include "xml.h"
#include "xml_stream.h"

#define NS_CLIENT "jabber:client"
#define NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SESSION_LEGACY "urn:ietf:params:xml:ns:xmpp-session"
#define NS_SM "urn:xmpp:sm:3"
#define NS_ROSTERVER "urn:xmpp:features:rosterver"
#define NS_REGISTER "jabber:iq:register"
#define NS_REGISTER_FEATURE "http://jabber.org/features/iq-register"
#define NS_IQAUTH "jabber:iq:auth"
#define NS_IQAUTH_FEATURE "http://jabber.org/features/iq-auth"
#define NS_WEFT_SESSION "urn:xmpp:weft:session:1"
#define NS_WEFT_AUTHREG "urn:xmpp:weft:authreg:1"
#define NS_CSI "urn:xmpp:csi:0"

typedef struct c2s_cfg {
    daemon_common_t common;
    char *instance;            /* our instance name on the router (deliveries come to it) */
    comp_link_cfg_t link;      /* router.*, name, secret (common/comp_client.h) */
    char *domain;              /* the XMPP domain served */
    char *listen_starttls;     /* space-separated addresses (port 5222 style) */
    char *listen_tls;          /* space-separated addresses (XEP-0368 direct TLS) */
    char *tls_cert;
    char *tls_key;
    int tls_selfsigned;        /* create a self-signed cert when tls_cert is missing */
    int tls_required;          /* STARTTLS before SASL / IBR */
    int tls_takeover;          /* after the handshake, run TLS 1.3 records without OpenSSL's SSL */
    long tls_key_update;       /* records sealed under one key before our KeyUpdate (takeover only) */
    int tls_tickets;           /* TLS session tickets (resumption) for clients */
    double t_negotiation;      /* connect -> bound session */
    double t_idle;             /* nothing read for this long */
    double t_authreg;          /* sm answer to authreg / session start */
    double t_close;            /* our </stream:stream> -> drop */
    double t_parser_release;   /* idle stream -> parser and cipher contexts freed */
    double t_delivery_ack;     /* a delivery's router ack waits no longer for the kernel / client <a/> */
    size_t stanza_bytes;
    long depth;
    long attrs;
    size_t rate;               /* bytes/s read per connection */
    size_t burst;
    size_t output_max;         /* bytes queued to a slow client before it is dropped */
    long out_batch;            /* sessions written per pass of out_batch.c (0: off) */
    long conns_per_ip;
    long max_clients;
    long auth_fail_max;        /* SASL failures per IP per window */
    double auth_fail_window;
    long auth_fail_conn;       /* SASL failures per connection before closing */
    char *auth_mechs;          /* SASL mechanisms offered; empty: all */
    int legacy_auth;           /* offer XEP-0078 jabber:iq:auth (over TLS) */
    int reg_enabled;
    long reg_max;              /* registrations per IP per window */
    double reg_window;
    long scram_iter;
    double sm_resume;          /* XEP-0198 resumption window */
    long sm_queue;             /* unacked stanzas kept per session */
    double sm_ack_timeout;     /* an unanswered <r/> this old: the connection is dead, hibernate */
    long sm_max_hibernated;    /* hibernated sessions kept; past it the oldest ends */
    long csi_queue_max;        /* XEP-0352: stanzas held for an inactive client before a flush */
    char *shutdown_host;       /* see-other-host sent on SIGTERM; "" for system-shutdown */
    char *caps_node;           /* XEP-0115 node of the server's caps in the features; "" none */
    /* WebSocket (ws.h) */
    char *listen_ws;           /* plain HTTP: WebSocket and host-meta */
    char *listen_wss;          /* the same over TLS */
    char *ws_path;
    char *ws_origins;          /* "*", or the Origin values let in */
    char *ws_public_url;       /* host-meta's URL; "" made from Host */
    int ws_trust_plain;        /* plain connections from any address count as secure */
    size_t ws_frame_bytes;
    size_t ws_message_bytes;
    size_t ws_http_bytes;      /* HTTP request head */
    double ws_ping;            /* ping a connection quiet this long; 0 never */
} c2s_cfg_t;

extern c2s_cfg_t *c2s_config;
extern const cfg_option_t c2s_options[];

typedef enum client_state {
    CL_HEADER, CL_OPEN, CL_AUTH_WAIT, CL_AUTHED, CL_BINDING, CL_SESSION, CL_CLOSED
} client_state_t;

/* XEP-0198 state; the queue holds copies of stanzas sent and not yet acked,
 * with the router token of each (acknowledged to the router once the client
 * acknowledged the stanza, it went back to the sm, or t_delivery_ack passed;
 * 0 then). */
typedef struct smacks_item {
    xml_node_t *st;
    uint64_t token;
    double at;
    struct smacks_item *next;
} smacks_item_t;

typedef struct client client_t;
struct client {
    uint64_t sid;              /* session id, unique within this instance */
    char sid_str[24];
    client_state_t state;
    struct bufferevent *bev;   /* NULL when detached (XEP-0198) */
    struct bufferevent *raw;   /* the socket bufferevent: bev itself, or under bev's TLS filter */
    tls_record_t *rec;         /* TLS records run by c2s once OpenSSL's SSL is freed (bev == raw) */
    struct auth_cbind *cbind;  /* channel-binding data saved at the takeover, until authenticated */
    xml_stream_t *xs;
    char peer[64];             /* "ip:port" for logs */
    char ip[48];               /* per-IP accounting key */
    int counted;               /* holds a slot in the per-IP connection count */
    int tls;                   /* TLS is up */
    int tls_kept;              /* TLS stays with OpenSSL (not TLS 1.3, ...): no takeover */
    int direct_tls;            /* came in on the XEP-0368 port */
    int secure;                /* TLS, or a WebSocket connection counted as secure (ws.h) */
    struct ws_conn *ws;        /* WebSocket transport (ws.h); NULL for XMPP over TCP */
    int starttls_pending;      /* <proceed/> sent, switch after it is flushed */
    int header_sent;
    int want_header;           /* a (re)started stream waits for its header */
    int in_table, reap_pending;
    int detached;              /* XEP-0198: connection gone, session kept */
    int output_full;           /* connection unusable: free without draining */
    unsigned stream_no;        /* stream ids are sid + restart number */
    char lang[36];
    double opened, last_read, closing_at, detached_at, wait_until;
    /* SASL */
    sasl_server_t *sasl;
    char mech[24];
    int awaiting_initial;      /* <auth/> came without an initial response */
    strbuf_t sasl_pending;     /* client message held while the authreg get runs */
    struct auth_keys *keys;    /* the user's SCRAM keys while SASL runs (auth.c), else NULL */
    char *node;                /* nodeprep'd localpart being / been authenticated */
    unsigned auth_failures;
    int legacy;                /* the authentication running is XEP-0078, not SASL */
    char *legacy_res;          /* its resourceprep'd resource, bound on success */
    unsigned req_no;           /* authreg request counter (id = sid.req_no) */
    int req_kind;              /* what the pending authreg is for (auth.c / ibr.c) */
    char *req_iq_id;           /* the client iq the pending request answers */
    /* session */
    int authed;
    jid_t jid;                 /* bare after SASL, full after bind */
    char *bind_iq_id;
    xml_node_t *last_presence; /* for resync */
    /* XEP-0198 */
    int sm_enabled, sm_resume;
    char *sm_id;
    uint32_t sm_in;            /* stanzas handled from the client */
    uint32_t sm_out;           /* stanzas sent to the client */
    uint32_t sm_acked;         /* highest h the client acknowledged */
    smacks_item_t *sm_head, *sm_tail;
    size_t sm_len;
    double sm_r_at;            /* last <r/> we sent */
    double sm_r_unanswered;    /* when the oldest <r/> no <a/> answered yet went out, or 0 */
    int sm_r_due;              /* an <r/> should go out at the next cron */
    struct deliver *dl;        /* deliver.c: stanzas not yet in the kernel, or NULL */
    struct evbuffer *ob;       /* out_batch.c: bytes for this loop turn's pass, or NULL */
    size_t ob_idx;             /* its place in that pass + 1; 0: not in it */
    struct csi *csi;           /* csi.c: XEP-0352 state while inactive or holding, or NULL */
    client_t *hnext;           /* sid hash chain */
    client_t *lnext, *lprev;   /* list of all clients (cron) */
};

/* client.c */
/* kind: how the listener's connections begin (listen.c) */
enum { LISTEN_STARTTLS = 0, LISTEN_TLS = 1, LISTEN_WS = 2, LISTEN_WSS = 3 };
void client_accept(evutil_socket_t fd, const struct sockaddr *sa, int socklen, int kind);
client_t *client_find(uint64_t sid);
client_t *client_find_str(const char *sid);
/* One unit of the XMPP stream (an element, the features, ...): as it is on
 * TCP, one text message on a WebSocket. */
void client_write(client_t *c, const char *data, size_t len);
/* Bytes for the connection as they are (under TLS, its plaintext). */
void client_send_bytes(client_t *c, const char *data, size_t len);
/* XML stream bytes for the parser; 0, or -1 when c is no longer one to read
 * for (closed, detached). */
int client_feed_xml(client_t *c, const char *data, size_t n);
void client_write_node(client_t *c, const xml_node_t *el);
void client_write_own_stanza(client_t *c, const xml_node_t *st);
/* Sends a stream error (header first if needed) and closes the stream. */
void client_stream_error(client_t *c, const char *condition, const char *text);
/* Ends the client's session towards the sm (unacked stanzas, then end) unless
 * notify_sm is 0, and closes its connection. */
void client_close(client_t *c, int how);
enum { CLOSE_SILENT = 0, CLOSE_END = 1, CLOSE_UNACKED = 2 };
void client_connection_lost(client_t *c);
/* Marks a session's connection gone (XEP-0198 hibernation), counted against
 * stream-management.max-hibernated (client_connection_lost enforces it). */
void client_set_detached(client_t *c);
void client_restart_stream(client_t *c);
/* Answers st (an iq/message/presence from the client) with a stanza error. */
void client_stanza_error(client_t *c, const xml_node_t *st, const char *condition, const char *type);
void client_rekey(client_t *c, uint64_t new_sid);
void client_cron(double now);
void client_close_all(void);
void client_free_all(void);
typedef void (*client_each_fn)(client_t *c, void *arg);
void client_foreach(client_each_fn fn, void *arg);
size_t client_count(void);
/* The list of every client (for metrics.c), linked by lnext. */
client_t *client_first(void);

/* listen.c */
int listen_start(struct event_base *base);
/* SIGHUP: a new TLS context for connections accepted from now on; on failure
 * the running one stays (logged). 0 / -1. */
int listen_reload_tls(const char *cert, const char *key);
void listen_stop(void);
void listen_free(void);
SSL_CTX *listen_tls_ctx(void);

/* auth.c: SASL. */
void auth_features(client_t *c, strbuf_t *out);
/* NULL when every word of an auth.mechanisms value names a mechanism c2s
 * knows, else the first that does not (pointing into list). */
const char *auth_mechs_unknown(const char *list, size_t *len);
/* Saves the TLS channel-binding data before OpenSSL's SSL goes (record
 * takeover) when c is not authenticated yet; dropped once it is. */
void auth_cbind_keep(client_t *c);
void auth_cbind_drop(client_t *c);
void auth_keys_drop(client_t *c);   /* forgets the SCRAM keys (cleansed) */
void auth_handle(client_t *c, xml_node_t *el);
void auth_authreg_answer(client_t *c, xml_node_t *ans);
/* Checks a XEP-0078 password as SASL PLAIN checks one (msg is a PLAIN
 * message); the outcome comes back through iqauth_done / iqauth_failed. */
void auth_legacy_begin(client_t *c, const char *msg, size_t len);

/* bind.c: resource binding and the legacy session element. */
void bind_handle_iq(client_t *c, xml_node_t *iq);
/* Asks the sm for a session with resource res (prepared) for the iq id; the
 * answer comes to bind_session_answer. 0; -1 no valid full JID (bad-request);
 * -2 the router link is full (resource-constraint); c keeps its bare JID. */
int bind_session_start(client_t *c, const char *id, const char *res);
void bind_session_answer(client_t *c, xml_node_t *el);
int bind_is_bind_iq(const xml_node_t *iq);

/* sm_link.c: the router link and the session protocol. */
int sm_link_start(struct event_base *base);
void sm_link_stop(void);
void sm_link_free(void);
/* Sends an authreg request for c (type, extra attributes set by the caller on
 * req); assigns the id. 0 / -1 (link buffer full). */
int sm_link_authreg(client_t *c, xml_node_t *req, int kind);
int sm_link_session(client_t *c, const char *type, int resync);
int sm_link_route(client_t *c, xml_node_t *stanza, const char *type);
/* Tells the sm a session hibernated (on: its connection is gone, XEP-0198
 * keeps it) or resumed, for push (docs/session-protocol.md). */
int sm_link_hibernation(client_t *c, int on);
/* Acknowledges a stanza from the router (its token from the delivery) and
 * writes pending acknowledgements to the router's socket now. */
void sm_link_done(uint64_t token);
void sm_link_flush(void);
/* Sends a stanza of c2s's own (st borrowed, in jabber:component:accept,
 * from our instance name) to the router. 0 / -1 (link buffer full). */
int sm_link_send_stanza(const xml_node_t *st);
/* 1 while the link is up and an sm instance of our domain is. */
int sm_link_sm_up(void);

/* server_caps.c: the server's XEP-0115 caps in the stream features. */
/* Asks the sm for the domain's disco#info (an sm came up). */
void server_caps_ask(void);
/* No sm to answer any more: the features lose the <c/> until asked again. */
void server_caps_forget(const char *why);
/* An iq from the router: 1 if it answered our query (consumed), else 0. */
int server_caps_iq(const xml_node_t *iq);
void server_caps_cron(double now);
/* Appends the <c/> feature, when the hash is known, to the features. */
void server_caps_features(strbuf_t *out);
void server_caps_free(void);

/* out_batch.c: a session's output written straight to its socket once per
 * loop turn, for every session written to in that turn at once, instead of
 * through its bufferevent (an event armed and disarmed per write). */
/* Where c's bytes go now (the pass's buffer when c is in it or may join
 * it, else the bufferevent's output); joining it schedules the pass. */
struct evbuffer *out_batch_buffer(client_t *c);
/* c's buffer when c is in the pass, else the bufferevent's output (never
 * joins: for bytes that must only keep their order, TLS records). */
struct evbuffer *out_batch_current(client_t *c);
int out_batch_takes(const client_t *c);   /* out_batch_buffer would give the pass's buffer */
size_t out_batch_len(const client_t *c);
/* The pass now, when it holds output.batch sessions (deliver.c, after each
 * delivery). */
void out_batch_check(void);
/* While on, every eligible session joins the pass whatever output.batch
 * says, and the pass waits; off flushes it (sm_link.c: the sessions of one
 * <deliver/> element go out in one pass). */
void out_batch_force(int on);
void out_batch_flush(void);
/* c leaves the pass: its bytes go to its bufferevent's output (close),
 * or are dropped with the connection (drop = 1). */
void out_batch_leave(client_t *c, int drop);
void out_batch_free(void);

/* deliver.c: deliveries to clients without XEP-0198, acknowledged to the
 * router once their bytes are in the kernel. */
/* Writes st (a child of route, which deliver takes) to c; token is done once
 * the bytes are in the kernel, or when the connection goes. */
/* The stanza of a <deliver/> element, shared by the copies c2s wrote for
 * it straight from bytes (sm_link.c): kept for the way back to the sm. */
typedef struct deliver_shared {
    xml_node_t *st;
    unsigned refs;
} deliver_shared_t;
void deliver_shared_unref(deliver_shared_t *sh);
/* One copy of sh's stanza for c, serialized with its 'to' (bytes): written
 * and acknowledged as deliver_write does a route's. */
void deliver_write_copy(client_t *c, deliver_shared_t *sh, const char *to, const char *bytes, size_t len,
                        uint64_t token);
void deliver_write(client_t *c, xml_node_t *route, const xml_node_t *st, uint64_t token);
void deliver_filter_gone(client_t *c);   /* before the TLS filter is freed */
/* Before the connection's buffers are freed: what is unwritten goes back to
 * the sm when the session is over (CL_CLOSED). */
void deliver_conn_gone(client_t *c);
void deliver_cron(client_t *c, double now);
/* n bytes of c's output went straight to the kernel (out_batch.c). */
void deliver_sent(client_t *c, size_t n);
/* 1 when c has deliveries whose bytes are not all in the kernel yet. */
int deliver_waiting(const client_t *c);
/* Around a pass of out_batch.c: acknowledgements collect and go to the
 * router once, at the end. */
void deliver_pass_begin(void);
void deliver_pass_end(void);
/* Sends a delivery (route, taken) to c's client now: through the XEP-0198
 * queue when enabled, else deliver_write. On a closed client it goes back to
 * the sm (unacked). */
void deliver_send(client_t *c, xml_node_t *route, uint64_t token);

/* csi.c: XEP-0352 client state indication. */
void csi_handle(client_t *c, xml_node_t *el);
/* Holds a delivery for an inactive client (takes route; 1), or lets it go
 * now (0: the caller sends it; what was held went out first). */
int csi_hold(client_t *c, xml_node_t *route, const xml_node_t *st, uint64_t token);
void csi_flush(client_t *c, const char *why);
int csi_inactive(const client_t *c);
size_t csi_held(const client_t *c);
void csi_cron(client_t *c, double now);
void csi_take_over(client_t *n, client_t *o);
void csi_free(client_t *c);   /* drops what is held (acknowledged) */

/* ibr.c: XEP-0077. */
int ibr_is_register_iq(const xml_node_t *iq);
void ibr_handle(client_t *c, xml_node_t *iq);
void ibr_authreg_answer(client_t *c, xml_node_t *ans);

/* iqauth.c: XEP-0078 non-SASL authentication (auth.legacy). */
int iqauth_is_auth_iq(const xml_node_t *iq);
void iqauth_handle(client_t *c, xml_node_t *iq);
/* The password was right: bind the resource and start the session. */
void iqauth_done(client_t *c);
/* The check failed with a SASL condition: answer the iq with its error. */
void iqauth_failed(client_t *c, const char *condition);
/* The sm answered the session start (el NULL: timeout). */
void iqauth_session_answer(client_t *c, xml_node_t *el);

/* smacks.c: XEP-0198. */
void smacks_handle(client_t *c, xml_node_t *el);
void smacks_count_in(client_t *c);
/* Records a stanza written to the client (takes a copy) and the router token
 * acknowledged once the client acknowledged it. */
void smacks_sent(client_t *c, const xml_node_t *st, uint64_t token);
/* Acknowledges to the router the tokens held past t_delivery_ack. */
void smacks_ack_late(client_t *c, double now);
/* Gives every unacked stanza back to the sm and empties the queue. */
void smacks_return_unacked(client_t *c);
void smacks_free(client_t *c);
void smacks_cron(client_t *c, double now);
/* Messages with a body among the unacknowledged stanzas (push: what a
 * hibernated client has not seen). */
size_t smacks_pending_messages(const client_t *c);

/* limits.c: per-IP counters. */
int limits_conn_add(const char *ip);       /* 0, or -1 when over the limit */
void limits_conn_del(const char *ip);
int limits_auth_blocked(const char *ip);
void limits_auth_failed(const char *ip);
int limits_reg_allowed(const char *ip);   /* also counts the attempt */
void limits_cron(double now);
void limits_free(void);

/* metrics.c: Prometheus metrics (docs/operations.md, "Metrics"). */
void c2s_metrics_register(void);
void c2s_metrics_login(const char *mech, int ok);      /* ok: 1 success, 0 failure */
void c2s_metrics_stanza(int in, const char *name);     /* in: 1 from the client, 0 to it */
void c2s_metrics_stanzas(int in, const char *name, size_t n);   /* n of them at once */
/* n stanzas from the sm for one session each, in a <route/> (merged 0) or
 * a <deliver/> (1). */
void c2s_metrics_delivery(int merged, size_t n);
void c2s_metrics_bytes_in(size_t n);
void c2s_metrics_bytes_out(size_t n);
void c2s_metrics_tls(int ok);                          /* a TLS handshake ended */

/* kinds of pending authreg requests */
enum { REQ_NONE = 0, REQ_AUTH, REQ_REGISTER, REQ_PASSWORD, REQ_REMOVE };

#endif
