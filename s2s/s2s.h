/* s2s: the server-to-server process's shared types.
 *
 * Ownership: conn.c owns the stream machinery of every connection (bufferevent,
 * parser, TLS switch-over, closing and freeing); out.c owns the outgoing
 * routes (one per (local domain, remote domain) pair: its queue, its DNS
 * lookup, its connection and the dialback verifications it carries); in.c owns
 * what incoming streams do (features, STARTTLS, SASL EXTERNAL, dialback) and
 * which (remote, local) domain pairs each one authenticated; link.c owns the
 * router link; listen.c the listeners and both TLS contexts.
 *
 * Stanzas leave towards a remote server only on an outgoing stream and arrive
 * only on an incoming one (RFC 6120 §4.1: server streams are one-way).
 *
 * Everything runs on one libevent loop; nothing here is thread-safe. */
#ifndef WEFT_S2S_H
#define WEFT_S2S_H
#include <stddef.h>
#include <stdint.h>
#include <event2/bufferevent.h>
#include <openssl/ssl.h>
#include "comp_client.h"
#include "daemon.h"
#include "xml.h"
#include "xml_stream.h"

#define NS_SERVER "jabber:server"
#define NS_DIALBACK "jabber:server:dialback"
#define NS_DIALBACK_FEATURE "urn:xmpp:features:dialback"

/* A static route that replaces DNS for one domain (<peer> in s2s.xml). */
typedef struct s2s_peer_cfg {
    char *domain;
    char *address;
    int direct_tls;
    struct s2s_peer_cfg *next;
} s2s_peer_cfg_t;

typedef struct s2s_cfg {
    daemon_common_t common;
    char *instance;
    comp_link_cfg_t link;      /* router.*, name, secret (common/comp_client.h) */
    char *domains;            /* space-separated local domains */
    char *listen_starttls;
    char *listen_tls;
    char *tls_cert;
    char *tls_key;
    int tls_selfsigned;
    char *tls_ca;             /* verifies peers' certificates; "" = system store */
    int tls_required;
    int tls_tickets;          /* TLS session tickets to peers that connect to us */
    int auth_dialback;
    int auth_external;
    char *dialback_secret;
    char *dns_resolv_conf;
    char *dns_nameservers;
    char *dns_hosts;
    double dns_timeout;
    long dns_port;            /* port of the A/AAAA fallback */
    double t_connect;         /* TCP connect to one address */
    double t_negotiation;     /* connected -> authenticated */
    double t_queue;           /* a stanza waits at most this long for a route */
    double t_idle;            /* nothing sent or received for this long */
    double t_retry_max;       /* largest pause between attempts at a failing domain */
    double t_retry_fast;      /* largest pause while a lost peer is in its fast period */
    double t_retry_fast_period; /* how long after the first failure the fast pauses last */
    double t_close;
    size_t queue_bytes;       /* per remote domain */
    size_t stanza_bytes;
    long depth;
    long attrs;
    size_t output_max;
    long max_in;              /* incoming connections in all */
    long max_in_per_ip;
    long max_domains_per_stream; /* domain pairs one incoming stream may authenticate */
    int components_federate;  /* names the router serves count as local (names.c) */
    char *components_exclude; /* space-separated names never federated */
    s2s_peer_cfg_t *peers;
} s2s_cfg_t;

extern s2s_cfg_t *s2s_config;
extern const cfg_option_t s2s_options[];
void s2s_config_free_peers(s2s_cfg_t *cfg);
/* 1 if d (prepared) is one of our domains: listed in `domains`, or a name
 * the router serves to a local component right now (names.c). */
int s2s_is_local(const char *d);

/* ---------------------------------------------------------------- names.c */

/* An availability notification from the router: slot (name, instance) is up
 * or down. */
void names_update(const char *name, const char *instance, int up);
/* 1 if d (prepared) is a component name learned from the router and served. */
int names_served(const char *d);
/* Forgets every learned name (router link lost; the router lists them again). */
void names_clear(void);

/* ---------------------------------------------------------------- conn.c */

typedef struct s2s_conn s2s_conn_t;

/* What a connection's owner (in.c or out.c) does with the stream. */
typedef struct s2s_conn_ops {
    void (*on_open)(s2s_conn_t *c, const xml_node_t *hdr, const char *default_ns);
    void (*on_element)(s2s_conn_t *c, xml_node_t *el);   /* callee owns el */
    void (*on_tls_ready)(s2s_conn_t *c);                 /* handshake done (may be NULL) */
    /* The connection is gone: closed by us or the peer, or failed. Called
     * once; the owner forgets c (it is freed right after). */
    void (*on_gone)(s2s_conn_t *c, const char *reason);
} s2s_conn_ops_t;

struct s2s_conn {
    uint64_t serial;          /* unique in this process (dialback answers find streams by it) */
    int outbound;
    const s2s_conn_ops_t *ops;
    void *owner;
    struct bufferevent *bev;
    xml_stream_t *xs;
    char peer[64];            /* "ip:port" */
    char ip[48];
    char stream_id[256];      /* the id of the stream: ours inbound, the peer's outbound */
    int tls;                  /* TLS is up (handshake may still run) */
    int tls_done;
    int starttls_pending;     /* switch to TLS once the parser returns */
    int starttls_accepting;
    char *starttls_sni;
    int header_sent;
    int closed;               /* closing: no more input handled, output draining */
    int gone;                 /* on_gone was called */
    int reap_pending;
    int dead;                 /* socket unusable: free without draining */
    double opened, last_active, closing_at;
    s2s_conn_t *lnext, *lprev;
    /* Router tokens of stanzas written here, done once their bytes are in
     * the kernel (conn_release_done): an s2s killed before that gets them
     * again from the router. end: plain_total after the stanza. */
    uint64_t plain_total;     /* bytes ever written to bev */
    struct conn_pending { uint64_t end, token; } *pend;
    size_t pend_head, pend_len, pend_cap;
    struct evbuffer_cb_entry *pend_cb;   /* on the TLS filter's socket output */
    struct evbuffer *pend_cb_buf;
};

/* Wraps an accepted or connecting bufferevent; the stream parser starts in a
 * waiting-for-header state. */
s2s_conn_t *conn_new(struct bufferevent *bev, int outbound, const char *peer, const s2s_conn_ops_t *ops,
                     void *owner);
void conn_write(s2s_conn_t *c, const char *data, size_t len);
void conn_write_str(s2s_conn_t *c, const char *s);
/* Serializes a stanza or other element with jabber:server as the default ns. */
void conn_write_node(s2s_conn_t *c, const xml_node_t *el);
/* As conn_write_node for a stanza from the router: link_done(token) once its
 * bytes have left this process (or the connection is freed). */
void conn_write_stanza(s2s_conn_t *c, const xml_node_t *el, uint64_t token);
/* Writes our stream header (jabber:server, db prefix declared). id may be NULL. */
void conn_send_header(s2s_conn_t *c, const char *from, const char *to, const char *id);
/* Stream error, closing tag, then close. */
void conn_stream_error(s2s_conn_t *c, const char *condition, const char *text);
/* Closing tag (when a header went out) and close after the output drained. */
void conn_close(s2s_conn_t *c, const char *reason);
/* The parser expects a new stream header (after STARTTLS or SASL). */
void conn_restart(s2s_conn_t *c);
/* Switches to TLS once the current parser callback returned: accepting (we
 * are the server) or connecting with SNI and the peer name to check. */
void conn_starttls(s2s_conn_t *c, int accepting, const char *sni);
SSL *conn_ssl(s2s_conn_t *c);
void conn_cron(double now);
void conn_close_all(void);
void conn_free_all(void);
size_t conn_count(int outbound);
/* The list of every connection (for metrics.c), linked by lnext. */
s2s_conn_t *conn_first(void);

/* ---------------------------------------------------------------- metrics.c */

/* Prometheus metrics (docs/operations.md, "Metrics"). */
void s2s_metrics_register(void);
void s2s_metrics_tls(int outbound, int ok);   /* a TLS handshake ended */
void s2s_metrics_stanza(int in, const char *name); /* in: 1 from a remote server, 0 to one */
void s2s_metrics_bytes(int in, size_t n);          /* in: 1 read, 0 written (inside TLS) */

/* ---------------------------------------------------------------- dialback.c */

/* XEP-0185 key: hex HMAC-SHA256 keyed with hex(SHA-256(secret)) over
 * "receiving originating stream-id". out holds 65 bytes. */
void dialback_key(const char *secret, const char *receiving, const char *originating, const char *stream_id,
                  char out[65]);
/* Constant-time check of a key received. 1 if valid. */
int dialback_check(const char *secret, const char *receiving, const char *originating, const char *stream_id,
                   const char *key);
const char *dialback_secret(void);
void dialback_init(void);

/* ---------------------------------------------------------------- out.c */

/* A stanza from the router for a remote domain (from is one of ours). Takes
 * ownership; token goes back to link_done once the stanza was written to the
 * remote server or bounced. */
void out_send(xml_node_t *st, const char *local, const char *remote, uint64_t token);
/* Asks the authoritative server of remote whether key is right for the
 * stream stream_id that remote opened to us (local). The answer comes to
 * in_verify_result(in_serial, ...). */
void out_verify(const char *local, const char *remote, const char *stream_id, const char *key, uint64_t in_serial);
/* remote's server has just shown it is up (an incoming stream from it
 * authenticated): routes to it that wait after failures try again now, with
 * their backoff reset. */
void out_peer_back(const char *remote);
void out_cron(double now);
int out_init(struct event_base *base);
void out_close_all(void);
void out_free_all(void);
size_t out_route_count(void);

/* ---------------------------------------------------------------- in.c */

void in_accept(evutil_socket_t fd, const struct sockaddr *sa, int socklen, int direct_tls);
/* Result of a dialback verification started for an incoming stream:
 * valid 1/0, or -1 when the authoritative server could not be asked. */
void in_verify_result(uint64_t in_serial, const char *local, const char *remote, int valid);
void in_cron(double now);
void in_free_all(void);

/* ---------------------------------------------------------------- link.c */

int link_start(struct event_base *base);
/* Sends a stanza (any of jabber:server/jabber:client/accept) into the router;
 * st stays the caller's (its namespace may be changed). 0 / -1 when the link
 * buffer is full. */
int link_send(xml_node_t *st);
/* Answers st (towards its sender, through the router) with a stanza error. */
void link_bounce(const xml_node_t *st, const char *condition, const char *type);
/* A stanza the router gave us is finished with (written out or bounced): the
 * router may forget it. Until then it is sent again if we die. */
void link_done(uint64_t token);
void link_stop(void);
void link_free(void);

/* ---------------------------------------------------------------- listen.c */

int listen_start(struct event_base *base);
void listen_stop(void);
void listen_free(void);
SSL_CTX *listen_server_ctx(void);
SSL_CTX *listen_client_ctx(void);
void listen_reload_tls(void);

#endif
