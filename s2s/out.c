/* out: outgoing server-to-server routes. A route is one (local domain,
 * remote domain) pair with a bounded queue of stanzas, at most one
 * connection, and the dialback verifications (db:verify) that incoming
 * streams asked us to carry to that remote domain's authoritative server.
 *
 * A route's life: IDLE -> RESOLVING (DNS: resolve.c) -> CONNECTING (one
 * target after the other: stream header, STARTTLS, then SASL EXTERNAL when
 * the peer offers it, else dialback) -> READY (queue flushed, stanzas written
 * at once) -> IDLE when the connection ends. A failed attempt goes to WAIT
 * for a pause that doubles up to timeouts.retry-max; queued stanzas wait
 * through it until timeouts.queue, then bounce with remote-server-timeout.
 *
 * A route that has been READY before is a server that went away and will
 * likely be back soon: for timeouts.retry-fast-period after its first failure
 * its pauses stay under timeouts.retry-fast, and an authenticated incoming
 * stream from that domain (out_peer_back) ends the pause at once. A route
 * that never was READY and finds nobody to talk to (DNS has no such domain,
 * or does not answer; no address answers) bounces its queue at once with
 * remote-server-not-found, and what comes during the pause that follows
 * bounces too. Nothing is dropped without an error stanza. */
#include "s2s.h"
#include "base64.h"
#include "comp_proto.h"
#include "log.h"
#include "net.h"
#include "resolve.h"
#include "tls.h"
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#define ROUTE_BUCKETS 1024

typedef enum route_state { RS_IDLE, RS_RESOLVING, RS_CONNECTING, RS_READY, RS_WAIT } route_state_t;
typedef enum out_stage { OS_HEADER, OS_FEATURES, OS_STARTTLS, OS_EXTERNAL, OS_EXTERNAL_DONE, OS_DIALBACK,
                         OS_READY } out_stage_t;

typedef struct qitem {
    xml_node_t *st;
    uint64_t token;           /* link_done once written or bounced */
    size_t bytes;
    double at;
    struct qitem *next;
} qitem_t;

typedef struct verify_req {
    char *stream_id;
    char *key;
    uint64_t in_serial;
    double at;
    int sent;
    struct verify_req *next;
} verify_req_t;

typedef struct route {
    char *local, *remote;
    route_state_t state;
    s2s_conn_t *conn;
    out_stage_t stage;
    int stream_open;          /* features seen on the stream we keep: db:verify may go */
    int auth_failed;          /* the peer refused us: no point trying its other addresses */
    resolve_req_t *lookup;
    s2s_target_t *targets;
    size_t ntargets, next_target;
    int got_bytes;            /* the current connection has heard from the peer */
    int heard;                /* some connection of the current attempt heard from the peer */
    int ever_ready;           /* was READY once: failures wait for the server to come back */
    const char *refusing;     /* set during a pause that bounced the queue: the condition for
                               * stanzas that come meanwhile */
    qitem_t *q_head, **q_tail;
    size_t q_bytes, q_len;
    verify_req_t *verifies;
    unsigned backoff;         /* doublings of the pause so far */
    double retry_at, idle_since;
    double early_at;          /* when the last attempt before the end of a pause started */
    double down_since;        /* first failure since READY (0: none): the fast period's start */
    struct event *retry_ev;   /* ends the pause */
    struct route *hnext;
} route_t;

static route_t *routes[ROUTE_BUCKETS];
static size_t nroutes;
static resolver_t *resolver;

static void route_attempt(route_t *r);
static void route_connect_next(route_t *r);
static void route_retry_cb(evutil_socket_t fd, short what, void *arg);
static const s2s_conn_ops_t out_ops;

size_t out_route_count(void)
{
    return nroutes;
}

static unsigned route_hash(const char *local, const char *remote)
{
    unsigned h = 2166136261u;
    for (const char *p = local; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    h = (h ^ 0xffu) * 16777619u;
    for (const char *p = remote; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h % ROUTE_BUCKETS;
}

static route_t *route_get(const char *local, const char *remote, int create)
{
    unsigned b = route_hash(local, remote);
    for (route_t *r = routes[b]; r; r = r->hnext)
        if (!strcmp(r->local, local) && !strcmp(r->remote, remote))
            return r;
    if (!create)
        return NULL;
    route_t *r = xcalloc(1, sizeof *r);
    r->local = xstrdup(local);
    r->remote = xstrdup(remote);
    r->q_tail = &r->q_head;
    r->idle_since = daemon_now();
    r->retry_ev = evtimer_new(daemon_base(), route_retry_cb, r);
    r->hnext = routes[b];
    routes[b] = r;
    nroutes++;
    return r;
}

static void route_free(route_t *r)
{
    for (route_t **pp = &routes[route_hash(r->local, r->remote)]; *pp; pp = &(*pp)->hnext) {
        if (*pp == r) {
            *pp = r->hnext;
            break;
        }
    }
    nroutes--;
    event_free(r->retry_ev);
    if (r->lookup)
        resolver_cancel(r->lookup);
    if (r->conn) {
        r->conn->owner = NULL;
        conn_close(r->conn, "route-freed");
    }
    while (r->q_head) {
        qitem_t *q = r->q_head;
        r->q_head = q->next;
        xml_free(q->st);
        free(q);
    }
    while (r->verifies) {
        verify_req_t *v = r->verifies;
        r->verifies = v->next;
        free(v->stream_id);
        free(v->key);
        free(v);
    }
    free(r->targets);
    free(r->local);
    free(r->remote);
    free(r);
}

/* ---------------------------------------------------------------- queue */

static void queue_bounce_all(route_t *r, const char *condition)
{
    size_t n = r->q_len;
    while (r->q_head) {
        qitem_t *q = r->q_head;
        r->q_head = q->next;
        link_bounce(q->st, condition, "wait");
        link_done(q->token);
        xml_free(q->st);
        free(q);
    }
    r->q_tail = &r->q_head;
    r->q_bytes = r->q_len = 0;
    if (n)
        log_info("event=bounced local=%s remote=%s stanzas=%zu condition=%s", r->local, r->remote, n, condition);
}

static void queue_expire(route_t *r, double now)
{
    size_t n = 0;
    while (r->q_head && now - r->q_head->at >= s2s_config->t_queue) {
        qitem_t *q = r->q_head;
        r->q_head = q->next;
        r->q_bytes -= q->bytes;
        r->q_len--;
        link_bounce(q->st, "remote-server-timeout", "wait");
        link_done(q->token);
        xml_free(q->st);
        free(q);
        n++;
    }
    if (!r->q_head)
        r->q_tail = &r->q_head;
    if (n)
        log_info("event=bounced local=%s remote=%s stanzas=%zu condition=remote-server-timeout", r->local,
                 r->remote, n);
}

static void queue_flush(route_t *r)
{
    while (r->q_head && r->conn && !r->conn->closed) {
        qitem_t *q = r->q_head;
        r->q_head = q->next;
        r->q_bytes -= q->bytes;
        r->q_len--;
        conn_write_stanza(r->conn, q->st, q->token);
        xml_free(q->st);
        free(q);
    }
    if (!r->q_head)
        r->q_tail = &r->q_head;
}

/* ---------------------------------------------------------------- dialback verify */

static void verify_send(route_t *r, verify_req_t *v)
{
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_puts(&sb, "<db:verify from='");
    xml_escape(&sb, r->local, strlen(r->local), 1);
    strbuf_puts(&sb, "' to='");
    xml_escape(&sb, r->remote, strlen(r->remote), 1);
    strbuf_puts(&sb, "' id='");
    xml_escape(&sb, v->stream_id, strlen(v->stream_id), 1);
    strbuf_puts(&sb, "'>");
    xml_escape(&sb, v->key, strlen(v->key), 0);
    strbuf_puts(&sb, "</db:verify>");
    conn_write(r->conn, sb.data, sb.len);
    strbuf_free(&sb);
    v->sent = 1;
}

static void verify_flush(route_t *r)
{
    for (verify_req_t *v = r->verifies; v; v = v->next)
        if (!v->sent && r->conn && !r->conn->closed)
            verify_send(r, v);
}

/* Answers every verification this route carries with result (-1: could not
 * ask), or only those older than max_age when max_age > 0. */
static void verify_fail(route_t *r, double now, double max_age)
{
    for (verify_req_t **pp = &r->verifies; *pp;) {
        verify_req_t *v = *pp;
        if (max_age > 0 && now - v->at < max_age) {
            pp = &v->next;
            continue;
        }
        *pp = v->next;
        in_verify_result(v->in_serial, r->local, r->remote, -1);
        free(v->stream_id);
        free(v->key);
        free(v);
    }
}

static void verify_answer(route_t *r, const xml_node_t *el)
{
    const char *id = xml_attr_get(el, "id"), *type = xml_attr_get(el, "type");
    if (!id || !type)
        return;
    for (verify_req_t **pp = &r->verifies; *pp; pp = &(*pp)->next) {
        verify_req_t *v = *pp;
        if (!v->sent || strcmp(v->stream_id, id))
            continue;
        *pp = v->next;
        int valid = !strcmp(type, "valid") ? 1 : !strcmp(type, "invalid") ? 0 : -1;
        log_info("event=dialback-verify local=%s remote=%s result=%s", r->local, r->remote, type);
        in_verify_result(v->in_serial, r->local, r->remote, valid);
        free(v->stream_id);
        free(v->key);
        free(v);
        return;
    }
}

static void route_pause_until(route_t *r, double at, double now)
{
    r->retry_at = at;
    double d = at > now ? at - now : 0;
    struct timeval tv = {(time_t)d, (suseconds_t)((d - (double)(time_t)d) * 1e6)};
    evtimer_add(r->retry_ev, &tv);
}

/* The remote server is talking to us (it asked for dialback), so it may be
 * back: the pause ends now, or, when such an early attempt was made less than
 * timeouts.retry-fast ago, that long after it. */
static void route_early_attempt(route_t *r, double now)
{
    double at = r->early_at + s2s_config->t_retry_fast;
    if (now >= at) {
        r->early_at = now;
        route_attempt(r);
    } else if (r->retry_at > at) {
        r->early_at = at;
        route_pause_until(r, at, now);
    }
}

void out_verify(const char *local, const char *remote, const char *stream_id, const char *key, uint64_t in_serial)
{
    route_t *r = route_get(local, remote, 1);
    verify_req_t *v = xcalloc(1, sizeof *v);
    v->stream_id = xstrdup(stream_id);
    v->key = xstrdup(key);
    v->in_serial = in_serial;
    v->at = daemon_now();
    v->next = r->verifies;
    r->verifies = v;
    if (r->conn && r->stream_open)
        verify_send(r, v);
    else if (r->state == RS_IDLE || r->state == RS_READY)
        route_attempt(r);
    else if (r->state == RS_WAIT)
        route_early_attempt(r, v->at);
}

void out_peer_back(const char *remote)
{
    size_t kicked = 0;
    for (size_t b = 0; b < ROUTE_BUCKETS; b++) {
        for (route_t *r = routes[b]; r; r = r->hnext) {
            if (strcmp(r->remote, remote))
                continue;
            r->backoff = 0;
            r->down_since = 0;
            if (r->state != RS_WAIT)
                continue;
            r->refusing = NULL;
            r->retry_at = daemon_now();
            event_del(r->retry_ev);
            if (r->q_head || r->verifies) {
                route_attempt(r);
                kicked++;
            }
        }
    }
    if (kicked)
        log_info("event=s2s-peer-back remote=%s routes=%zu", remote, kicked);
}

/* ---------------------------------------------------------------- attempts */

/* 0.8 .. 1.2: routes that failed together do not retry in lockstep. */
static double jitter(void)
{
    unsigned char b = 128;
    RAND_bytes(&b, 1);
    return 0.8 + 0.4 * b / 255.0;
}

/* The pause after a failure: 1 s doubling up to timeouts.retry-max, but at
 * most timeouts.retry-fast during the fast period of a route that was READY
 * (the doubling resumes where it stood when the period ends). */
static double route_pause(route_t *r, double now)
{
    const s2s_cfg_t *cfg = s2s_config;
    double pause = 1.0;
    for (unsigned i = 0; i < r->backoff && pause < cfg->t_retry_max; i++)
        pause *= 2;
    if (pause > cfg->t_retry_max)
        pause = cfg->t_retry_max;
    int fast = r->ever_ready && now - r->down_since < cfg->t_retry_fast_period;
    if (fast && pause * 1.2 > cfg->t_retry_fast)
        return cfg->t_retry_fast * (jitter() + 0.2) / 1.4;    /* 0.71 .. 1 of it: never over */
    r->backoff++;
    return pause * jitter();
}

/* The attempt failed. bounce: the condition queued stanzas bounce with now
 * (and those that come during the pause); NULL: they wait for the next
 * attempt, until timeouts.queue. */
static void route_failed(route_t *r, const char *reason, const char *bounce)
{
    double now = daemon_now();
    r->state = RS_WAIT;
    int first = !r->down_since;
    if (r->ever_ready && first)
        r->down_since = now;
    double pause = route_pause(r, now);
    route_pause_until(r, now + pause, now);
    r->idle_since = now;
    free(r->targets);
    r->targets = NULL;
    r->ntargets = r->next_target = 0;
    /* A lost peer's fast retries (a few a second) are routine: notice for the
     * first failure, debug for the others. */
    if (first || bounce)
        log_notice("event=s2s-failed local=%s remote=%s reason=%s queued=%zu retry_in=%.2f", r->local, r->remote,
                   reason, r->q_len, pause);
    else
        log_debug("event=s2s-failed local=%s remote=%s reason=%s queued=%zu retry_in=%.2f", r->local, r->remote,
                  reason, r->q_len, pause);
    verify_fail(r, 0, 0);
    r->refusing = bounce;
    if (bounce)
        queue_bounce_all(r, bounce);
}

/* The pause is over: the next attempt, if anything waits for one. */
static void route_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    route_t *r = arg;
    if (r->state == RS_WAIT && (r->q_head || r->verifies))
        route_attempt(r);
}

/* Nobody could be asked or reached: a route that never got through has
 * nothing to wait for (remote-server-not-found now, as other servers do); one
 * that did waits for its server to come back. */
static const char *route_unreachable_bounce(const route_t *r)
{
    return r->ever_ready ? NULL : "remote-server-not-found";
}

static void route_resolved(void *arg, const s2s_target_t *targets, size_t n, const char *error)
{
    route_t *r = arg;
    r->lookup = NULL;
    if (error || n == 0) {
        int gone = error && !strcmp(error, "not-found");
        route_failed(r, gone ? "dns-not-found" : error ? error : "no-address",
                     gone ? "remote-server-not-found" : route_unreachable_bounce(r));
        return;
    }
    free(r->targets);
    r->targets = xmalloc(n * sizeof *targets);
    memcpy(r->targets, targets, n * sizeof *targets);
    r->ntargets = n;
    r->next_target = 0;
    r->state = RS_CONNECTING;
    route_connect_next(r);
}

static void route_attempt(route_t *r)
{
    if (r->lookup || r->conn)
        return;
    r->state = RS_RESOLVING;
    r->auth_failed = 0;
    r->heard = 0;
    r->refusing = NULL;
    event_del(r->retry_ev);
    log_debug("event=s2s-attempt local=%s remote=%s", r->local, r->remote);
    r->lookup = resolver_lookup(resolver, r->remote, route_resolved, r);
    if (!r->lookup)
        route_failed(r, "resolver", route_unreachable_bounce(r));
}

static void route_connect_next(route_t *r)
{
    while (r->next_target < r->ntargets) {
        const s2s_target_t *t = &r->targets[r->next_target++];
        struct bufferevent *bev;
        SSL *ssl = NULL;
        if (t->direct_tls) {
            ssl = listen_client_ctx() ? SSL_new(listen_client_ctx()) : NULL;
            if (!ssl)
                continue;
            SSL_set_tlsext_host_name(ssl, r->remote);
            bev = bufferevent_openssl_socket_new(daemon_base(), -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                 BEV_OPT_CLOSE_ON_FREE);
        } else {
            bev = bufferevent_socket_new(daemon_base(), -1, BEV_OPT_CLOSE_ON_FREE);
        }
        if (!bev) {
            if (ssl)
                SSL_free(ssl);
            continue;
        }
        if (bufferevent_socket_connect(bev, (const struct sockaddr *)&t->addr, (int)t->addrlen) < 0) {
            bufferevent_free(bev);
            continue;
        }
        evutil_socket_t fd = bufferevent_getfd(bev);
        if (fd >= 0)
            net_tune_accepted(fd, (const struct sockaddr *)&t->addr);
        char peer[64];
        net_addr_format((const struct sockaddr *)&t->addr, t->addrlen, peer, sizeof peer);
        r->conn = conn_new(bev, 1, peer, &out_ops, r);
        r->conn->tls = t->direct_tls;
        r->stage = OS_HEADER;
        r->stream_open = 0;
        r->got_bytes = 0;
        log_info("event=s2s-connecting local=%s remote=%s host=%s peer=%s tls=%s", r->local, r->remote, t->host,
                 peer, t->direct_tls ? "direct" : "starttls");
        conn_send_header(r->conn, r->local, r->remote, NULL);
        return;
    }
    if (r->heard)
        route_failed(r, "no-target-usable", NULL);
    else
        route_failed(r, "no-target-reachable", route_unreachable_bounce(r));
}

static void route_ready(route_t *r, const char *method)
{
    r->stage = OS_READY;
    r->state = RS_READY;
    r->ever_ready = 1;
    r->backoff = 0;
    r->down_since = 0;
    SSL *ssl = conn_ssl(r->conn);
    log_notice("event=s2s-authenticated direction=out local=%s remote=%s method=%s peer=%s tls=%s cert=%s",
               r->local, r->remote, method, r->conn->peer, ssl ? SSL_get_version(ssl) : "none",
               ssl && tls_peer_cert_matches(ssl, r->remote) ? "valid" : "unverified");
    queue_flush(r);
}

/* ---------------------------------------------------------------- stream */

static void out_send_dialback(route_t *r)
{
    char key[65];
    dialback_key(dialback_secret(), r->remote, r->local, r->conn->stream_id, key);
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_puts(&sb, "<db:result from='");
    xml_escape(&sb, r->local, strlen(r->local), 1);
    strbuf_puts(&sb, "' to='");
    xml_escape(&sb, r->remote, strlen(r->remote), 1);
    strbuf_printf(&sb, "'>%s</db:result>", key);
    conn_write(r->conn, sb.data, sb.len);
    strbuf_free(&sb);
    r->stage = OS_DIALBACK;
}

static int offers_mechanism(const xml_node_t *features, const char *mech)
{
    xml_node_t *mechs = xml_child(features, NS_SASL, "mechanisms");
    for (xml_node_t *m = mechs ? xml_child(mechs, NS_SASL, "mechanism") : NULL; m;
         m = xml_next(m, NS_SASL, "mechanism")) {
        char *t = xml_text(m);
        int hit = !strcmp(t, mech);
        free(t);
        if (hit)
            return 1;
    }
    return 0;
}

static void out_features(route_t *r, const xml_node_t *features)
{
    s2s_conn_t *c = r->conn;
    if (!c->tls) {
        if (xml_child(features, NS_TLS, "starttls") && listen_client_ctx()) {
            conn_write_str(c, "<starttls xmlns='" NS_TLS "'/>");
            r->stage = OS_STARTTLS;
            return;
        }
        if (s2s_config->tls_required) {
            log_notice("event=s2s-refused direction=out local=%s remote=%s reason=peer-offers-no-tls", r->local,
                       r->remote);
            conn_stream_error(c, "policy-violation", "TLS is required");
            return;
        }
    }
    r->stream_open = 1;
    verify_flush(r);
    if (r->stage == OS_EXTERNAL_DONE) {
        route_ready(r, "external");
        return;
    }
    if (s2s_config->auth_external && c->tls && offers_mechanism(features, "EXTERNAL")) {
        /* XEP-0178: the authorization identity is our domain. */
        strbuf_t sb;
        strbuf_init(&sb);
        strbuf_puts(&sb, "<auth xmlns='" NS_SASL "' mechanism='EXTERNAL'>");
        base64_encode((const unsigned char *)r->local, strlen(r->local), &sb);
        strbuf_puts(&sb, "</auth>");
        conn_write(c, sb.data, sb.len);
        strbuf_free(&sb);
        r->stage = OS_EXTERNAL;
        return;
    }
    if (s2s_config->auth_dialback) {
        out_send_dialback(r);
        return;
    }
    log_notice("event=s2s-refused direction=out local=%s remote=%s reason=no-common-authentication", r->local,
               r->remote);
    r->auth_failed = 1;
    conn_close(c, "no-authentication");
}

static void out_on_open(s2s_conn_t *c, const xml_node_t *hdr, const char *default_ns)
{
    route_t *r = c->owner;
    if (!r)
        return;
    r->got_bytes = r->heard = 1;
    if (strcmp(default_ns, NS_SERVER)) {
        conn_stream_error(c, "invalid-namespace", NULL);
        return;
    }
    const char *id = xml_attr_get(hdr, "id"), *ver = xml_attr_get(hdr, "version");
    if (!id || !*id || strlen(id) >= sizeof c->stream_id) {
        conn_stream_error(c, "invalid-id", NULL);
        return;
    }
    if (!ver || strncmp(ver, "1.", 2)) {
        conn_stream_error(c, "unsupported-version", NULL);
        return;
    }
    snprintf(c->stream_id, sizeof c->stream_id, "%s", id);
    if (r->stage == OS_HEADER || r->stage == OS_STARTTLS)
        r->stage = OS_FEATURES;
}

static void out_on_element(s2s_conn_t *c, xml_node_t *el)
{
    route_t *r = c->owner;
    const char *ns = el->ns ? el->ns : "";
    if (!r) {
        xml_free(el);
        return;
    }
    r->got_bytes = r->heard = 1;
    if (!strcmp(ns, XML_NS_STREAM) && !strcmp(el->name, "features")) {
        out_features(r, el);
    } else if (!strcmp(ns, XML_NS_STREAM) && !strcmp(el->name, "error")) {
        xml_node_t *cond = xml_child(el, NS_STREAMS, NULL);
        log_notice("event=s2s-stream-error direction=out local=%s remote=%s condition=%s", r->local, r->remote,
                   cond ? cond->name : "-");
        if (r->stage == OS_DIALBACK || r->stage == OS_EXTERNAL)
            r->auth_failed = 1;
        conn_close(c, "peer-stream-error");
    } else if (!strcmp(ns, NS_TLS) && !strcmp(el->name, "proceed") && r->stage == OS_STARTTLS) {
        conn_restart(c);
        conn_starttls(c, 0, r->remote);
    } else if (!strcmp(ns, NS_TLS)) {
        conn_close(c, "starttls-refused");
    } else if (!strcmp(ns, NS_SASL) && !strcmp(el->name, "success") && r->stage == OS_EXTERNAL) {
        r->stage = OS_EXTERNAL_DONE;
        conn_restart(c);
        conn_send_header(c, r->local, r->remote, NULL);
    } else if (!strcmp(ns, NS_SASL) && !strcmp(el->name, "failure") && r->stage == OS_EXTERNAL) {
        log_info("event=sasl-external-refused local=%s remote=%s", r->local, r->remote);
        if (s2s_config->auth_dialback) {
            out_send_dialback(r);
        } else {
            r->auth_failed = 1;
            conn_close(c, "external-refused");
        }
    } else if (!strcmp(ns, NS_DIALBACK) && !strcmp(el->name, "result") && r->stage == OS_DIALBACK) {
        const char *type = xml_attr_get(el, "type");
        if (type && !strcmp(type, "valid")) {
            route_ready(r, "dialback");
        } else {
            log_notice("event=s2s-refused direction=out local=%s remote=%s reason=dialback-%s", r->local,
                       r->remote, type ? type : "no-type");
            r->auth_failed = 1;
            conn_close(c, "dialback-refused");
        }
    } else if (!strcmp(ns, NS_DIALBACK) && !strcmp(el->name, "verify")) {
        verify_answer(r, el);
    } else {
        log_debug("event=ignored direction=out local=%s remote=%s element={%s}%s", r->local, r->remote, ns,
                  el->name ? el->name : "");
    }
    xml_free(el);
}

static void out_on_tls_ready(s2s_conn_t *c)
{
    route_t *r = c->owner;
    /* After STARTTLS the stream starts again; a direct TLS stream already
     * sent its header into the TLS buffer at connect. */
    if (r && r->stage == OS_STARTTLS)
        conn_send_header(c, r->local, r->remote, NULL);
}

static void out_on_gone(s2s_conn_t *c, const char *reason)
{
    route_t *r = c->owner;
    if (!r || r->conn != c)
        return;
    r->conn = NULL;
    r->stream_open = 0;
    for (verify_req_t *v = r->verifies; v; v = v->next)
        v->sent = 0;   /* asked on a stream that is gone: ask again */
    if (r->state == RS_READY) {
        log_info("event=s2s-closed direction=out local=%s remote=%s reason=%s", r->local, r->remote, reason);
        r->state = RS_IDLE;
        r->idle_since = daemon_now();
        if (r->q_head || r->verifies)
            route_attempt(r);
        return;
    }
    log_info("event=s2s-connection-failed local=%s remote=%s peer=%s stage=%d reason=%s", r->local, r->remote,
             c->peer, (int)r->stage, reason);
    if (r->auth_failed)
        route_failed(r, "authentication-refused", "remote-server-not-found");
    else if (r->state == RS_CONNECTING)
        route_connect_next(r);
}

static const s2s_conn_ops_t out_ops = {
    .on_open = out_on_open,
    .on_element = out_on_element,
    .on_tls_ready = out_on_tls_ready,
    .on_gone = out_on_gone,
};

/* ---------------------------------------------------------------- entry points */

void out_send(xml_node_t *st, const char *local, const char *remote, uint64_t token)
{
    route_t *r = route_get(local, remote, 1);
    if (r->state == RS_READY && r->conn && !r->q_head) {
        conn_write_stanza(r->conn, st, token);
        xml_free(st);
        return;
    }
    double now = daemon_now();
    if (r->state == RS_WAIT && r->refusing && now < r->retry_at) {
        log_info("event=bounced local=%s remote=%s stanzas=1 condition=%s reason=pause retry_in=%.2f", local,
                 remote, r->refusing, r->retry_at - now);
        link_bounce(st, r->refusing, "wait");
        link_done(token);
        xml_free(st);
        return;
    }
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(st, NS_SERVER, &sb);
    size_t bytes = sb.len + sizeof(qitem_t);
    strbuf_free(&sb);
    if (r->q_bytes + bytes > s2s_config->queue_bytes) {
        log_warn("event=bounced local=%s remote=%s reason=queue-full queued=%zu", local, remote, r->q_len);
        link_bounce(st, "resource-constraint", "wait");
        link_done(token);
        xml_free(st);
        return;
    }
    qitem_t *q = xcalloc(1, sizeof *q);
    q->st = st;
    q->token = token;
    q->bytes = bytes;
    q->at = now;
    *r->q_tail = q;
    r->q_tail = &q->next;
    r->q_bytes += bytes;
    r->q_len++;
    if (r->state == RS_IDLE || (r->state == RS_WAIT && now >= r->retry_at))
        route_attempt(r);
}

void out_cron(double now)
{
    const s2s_cfg_t *cfg = s2s_config;
    for (size_t b = 0; b < ROUTE_BUCKETS; b++) {
        for (route_t *r = routes[b], *next; r; r = next) {
            next = r->hnext;
            queue_expire(r, now);
            verify_fail(r, now, cfg->t_negotiation);
            s2s_conn_t *c = r->conn;
            if (c && !c->closed) {
                if (r->stage != OS_READY && !r->got_bytes && now - c->opened > cfg->t_connect)
                    conn_close(c, "connect-timeout");
                else if (r->stage != OS_READY && now - c->opened > cfg->t_negotiation)
                    conn_stream_error(c, "connection-timeout", "negotiation took too long");
                else if (r->stage == OS_READY && now - c->last_active > cfg->t_idle)
                    conn_close(c, "idle");
                continue;
            }
            if (r->state == RS_WAIT && now >= r->retry_at && (r->q_head || r->verifies)) {
                route_attempt(r);
            } else if ((r->state == RS_IDLE || (r->state == RS_WAIT && now >= r->retry_at)) && !r->q_head &&
                       !r->verifies && !r->conn && now - r->idle_since > cfg->t_idle) {
                route_free(r);
            }
        }
    }
}

int out_init(struct event_base *base)
{
    const s2s_cfg_t *cfg = s2s_config;
    resolver_cfg_t rc = {
        .resolv_conf = cfg->dns_resolv_conf,
        .nameservers = cfg->dns_nameservers,
        .hosts_file = cfg->dns_hosts,
        .timeout = cfg->dns_timeout,
        .default_port = (int)cfg->dns_port,
    };
    char err[256];
    resolver = resolver_new(base, &rc, err, sizeof err);
    if (!resolver) {
        log_error("event=start reason=resolver detail=\"%s\"", err);
        return -1;
    }
    for (const s2s_peer_cfg_t *p = cfg->peers; p; p = p->next) {
        if (resolver_add_static(resolver, p->domain, p->address, p->direct_tls) < 0) {
            log_error("event=start reason=bad-peer domain=%s address=%s", p->domain, p->address);
            return -1;
        }
    }
    return 0;
}

void out_close_all(void)
{
    for (size_t b = 0; b < ROUTE_BUCKETS; b++)
        for (route_t *r = routes[b]; r; r = r->hnext)
            if (r->conn)
                conn_close(r->conn, "shutdown");
}

void out_free_all(void)
{
    for (size_t b = 0; b < ROUTE_BUCKETS; b++)
        while (routes[b])
            route_free(routes[b]);
    if (resolver)
        resolver_free(resolver);
    resolver = NULL;
}
