/* in: incoming server-to-server streams. A remote server opens a stream to
 * one of our domains, upgrades it with STARTTLS, then authenticates one or
 * more (its domain, our domain) pairs: with SASL EXTERNAL when its
 * certificate verifies for its domain (XEP-0178), or with dialback
 * (XEP-0220), where out.c asks the remote domain's authoritative server
 * whether the key is right. The same stream also answers db:verify requests
 * for keys our own outgoing streams sent (as the authoritative server).
 *
 * Nothing is routed from a pair that is not authenticated: a stanza whose
 * from domain is not authenticated on the stream gets invalid-from, one whose
 * to is not a domain of ours host-unknown (RFC 6120 §4.9.3). "Ours" is
 * `domains` and the names the router serves to local components (names.c). */
#include "s2s.h"
#include "base64.h"
#include "comp_proto.h"
#include "jid.h"
#include "log.h"
#include "net.h"
#include "tls.h"
#include <event2/bufferevent_ssl.h>
#include <stdlib.h>
#include <string.h>

#define STREAM_BUCKETS 1024
#define IP_BUCKETS 1024

typedef enum pair_state { PAIR_PENDING, PAIR_VALID } pair_state_t;

typedef struct in_pair {
    char *remote, *local;
    pair_state_t state;
    struct in_pair *next;
} in_pair_t;

typedef struct in_stream {
    s2s_conn_t *c;
    char *from;                /* prepared 'from' of the stream header, if any */
    char *to;                  /* the local domain the header named */
    int counted;
    int sasl_done;
    in_pair_t *pairs;
    size_t npairs;
    struct in_stream *hnext;
} in_stream_t;

typedef struct ip_count {
    char ip[48];
    long n;
    struct ip_count *next;
} ip_count_t;

static in_stream_t *streams[STREAM_BUCKETS];
static ip_count_t *ips[IP_BUCKETS];
static size_t nstreams;

/* ---------------------------------------------------------------- tables */

static unsigned ip_hash(const char *ip)
{
    unsigned h = 2166136261u;
    for (; *ip; ip++)
        h = (h ^ (unsigned char)*ip) * 16777619u;
    return h % IP_BUCKETS;
}

static int ip_add(const char *ip)
{
    ip_count_t **pp = &ips[ip_hash(ip)];
    for (ip_count_t *e = *pp; e; e = e->next) {
        if (!strcmp(e->ip, ip)) {
            if (e->n >= s2s_config->max_in_per_ip)
                return -1;
            e->n++;
            return 0;
        }
    }
    ip_count_t *e = xcalloc(1, sizeof *e);
    snprintf(e->ip, sizeof e->ip, "%s", ip);
    e->n = 1;
    e->next = *pp;
    *pp = e;
    return 0;
}

static void ip_del(const char *ip)
{
    for (ip_count_t **pp = &ips[ip_hash(ip)]; *pp; pp = &(*pp)->next) {
        ip_count_t *e = *pp;
        if (!strcmp(e->ip, ip)) {
            if (--e->n == 0) {
                *pp = e->next;
                free(e);
            }
            return;
        }
    }
}

static in_stream_t *stream_find(uint64_t serial)
{
    for (in_stream_t *s = streams[serial % STREAM_BUCKETS]; s; s = s->hnext)
        if (s->c && s->c->serial == serial)
            return s;
    return NULL;
}

static in_pair_t *pair_find(in_stream_t *s, const char *remote, const char *local)
{
    for (in_pair_t *p = s->pairs; p; p = p->next)
        if (!strcmp(p->remote, remote) && !strcmp(p->local, local))
            return p;
    return NULL;
}

static void pair_remove(in_stream_t *s, in_pair_t *gone)
{
    for (in_pair_t **pp = &s->pairs; *pp; pp = &(*pp)->next) {
        if (*pp == gone) {
            *pp = gone->next;
            free(gone->remote);
            free(gone->local);
            free(gone);
            s->npairs--;
            return;
        }
    }
}

static in_pair_t *pair_add(in_stream_t *s, const char *remote, const char *local, pair_state_t st)
{
    in_pair_t *p = xcalloc(1, sizeof *p);
    p->remote = xstrdup(remote);
    p->local = xstrdup(local);
    p->state = st;
    p->next = s->pairs;
    s->pairs = p;
    s->npairs++;
    return p;
}

static int stream_authenticated(const in_stream_t *s)
{
    for (const in_pair_t *p = s->pairs; p; p = p->next)
        if (p->state == PAIR_VALID)
            return 1;
    return 0;
}

/* ---------------------------------------------------------------- features */

static int tls_ok(const in_stream_t *s)
{
    return s->c->tls || !s2s_config->tls_required;
}

static void in_send_features(in_stream_t *s)
{
    s2s_conn_t *c = s->c;
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_puts(&sb, "<stream:features>");
    if (!c->tls && listen_server_ctx())
        strbuf_printf(&sb, "<starttls xmlns='" NS_TLS "'>%s</starttls>",
                      s2s_config->tls_required ? "<required/>" : "");
    if (tls_ok(s)) {
        SSL *ssl = conn_ssl(c);
        if (s2s_config->auth_external && !s->sasl_done && ssl && s->from && tls_peer_cert_matches(ssl, s->from))
            strbuf_puts(&sb, "<mechanisms xmlns='" NS_SASL "'><mechanism>EXTERNAL</mechanism></mechanisms>");
        if (s2s_config->auth_dialback)
            strbuf_puts(&sb, "<dialback xmlns='" NS_DIALBACK_FEATURE "'><errors/></dialback>");
    }
    strbuf_puts(&sb, "</stream:features>");
    conn_write(c, sb.data, sb.len);
    strbuf_free(&sb);
}

static void in_on_open(s2s_conn_t *c, const xml_node_t *hdr, const char *default_ns)
{
    in_stream_t *s = c->owner;
    comp_proto_random_hex(c->stream_id, 16);
    const char *to = xml_attr_get(hdr, "to"), *from = xml_attr_get(hdr, "from");
    char *to_p = to ? jid_prep_domain(to) : NULL;
    char *from_p = from ? jid_prep_domain(from) : NULL;
    conn_send_header(c, to_p && s2s_is_local(to_p) ? to_p : NULL, from_p, c->stream_id);
    free(s->from);
    s->from = from_p;
    if (strcmp(default_ns, NS_SERVER)) {
        free(to_p);
        conn_stream_error(c, "invalid-namespace", NULL);
        return;
    }
    if (!to_p || !s2s_is_local(to_p)) {
        free(to_p);
        conn_stream_error(c, "host-unknown", NULL);
        return;
    }
    free(s->to);
    s->to = to_p;
    const char *ver = xml_attr_get(hdr, "version");
    if (!ver || strncmp(ver, "1.", 2)) {
        conn_stream_error(c, "unsupported-version", NULL);
        return;
    }
    in_send_features(s);
}

/* ---------------------------------------------------------------- SASL EXTERNAL */

static void in_sasl_failure(in_stream_t *s, const char *condition, const char *why)
{
    log_notice("event=s2s-refused direction=in peer=%s remote=%s method=external reason=%s", s->c->peer,
               s->from ? s->from : "-", why);
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_printf(&sb, "<failure xmlns='" NS_SASL "'><%s/></failure>", condition);
    conn_write(s->c, sb.data, sb.len);
    strbuf_free(&sb);
}

static void in_sasl(in_stream_t *s, const xml_node_t *el)
{
    const char *mech = xml_attr_get(el, "mechanism");
    if (strcmp(el->name, "auth")) {
        in_sasl_failure(s, "aborted", "not-auth");
        return;
    }
    SSL *ssl = conn_ssl(s->c);
    if (!s2s_config->auth_external || s->sasl_done || !ssl || !mech || strcmp(mech, "EXTERNAL")) {
        in_sasl_failure(s, "invalid-mechanism", "mechanism-not-offered");
        return;
    }
    if (!s->from) {
        in_sasl_failure(s, "not-authorized", "no-stream-from");
        return;
    }
    /* The authorization identity, when given, must be the stream's from. */
    char *text = xml_text(el);
    strbuf_t authz;
    strbuf_init(&authz);
    int bad = base64_decode(text, strlen(text), &authz) < 0;
    free(text);
    char *authz_p = !bad && authz.len ? jid_prep_domain(authz.data) : NULL;
    int mismatch = !bad && authz.len && (!authz_p || strcmp(authz_p, s->from));
    strbuf_free(&authz);
    free(authz_p);
    if (bad) {
        in_sasl_failure(s, "incorrect-encoding", "bad-base64");
        return;
    }
    if (mismatch) {
        in_sasl_failure(s, "invalid-authzid", "authzid-not-stream-from");
        return;
    }
    if (!tls_peer_cert_matches(ssl, s->from)) {
        in_sasl_failure(s, "not-authorized", "certificate-not-valid-for-domain");
        return;
    }
    if (!pair_find(s, s->from, s->to))
        pair_add(s, s->from, s->to, PAIR_VALID);
    else
        pair_find(s, s->from, s->to)->state = PAIR_VALID;
    s->sasl_done = 1;
    conn_write_str(s->c, "<success xmlns='" NS_SASL "'/>");
    conn_restart(s->c);
    log_notice("event=s2s-authenticated direction=in local=%s remote=%s method=external peer=%s", s->to, s->from,
               s->c->peer);
    out_peer_back(s->from);
}

/* ---------------------------------------------------------------- dialback */

static void in_db_answer(in_stream_t *s, const char *local, const char *remote, const char *type,
                         const char *error_condition)
{
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_puts(&sb, "<db:result from='");
    xml_escape(&sb, local, strlen(local), 1);
    strbuf_puts(&sb, "' to='");
    xml_escape(&sb, remote, strlen(remote), 1);
    strbuf_printf(&sb, "' type='%s'", type);
    if (error_condition)
        strbuf_printf(&sb, "><error type='cancel'><%s xmlns='" NS_STANZAS "'/></error></db:result>",
                      error_condition);
    else
        strbuf_puts(&sb, "/>");
    conn_write(s->c, sb.data, sb.len);
    strbuf_free(&sb);
}

/* <db:result from='remote' to='local'>key</db:result>: remote asks to send
 * stanzas to local on this stream; its authoritative server decides. */
static void in_db_result(in_stream_t *s, const xml_node_t *el)
{
    const char *from = xml_attr_get(el, "from"), *to = xml_attr_get(el, "to");
    char *remote = from ? jid_prep_domain(from) : NULL;
    char *local = to ? jid_prep_domain(to) : NULL;
    char *key = xml_text(el);
    if (!remote || !local) {
        conn_stream_error(s->c, "improper-addressing", "db:result needs from and to domains");
    } else if (!s2s_is_local(local)) {
        in_db_answer(s, local, remote, "error", "item-not-found");
    } else if (s2s_is_local(remote)) {
        /* Nobody else may speak for our own domains. */
        log_notice("event=dialback-invalid local=%s remote=%s peer=%s reason=claims-local-domain", local, remote,
                   s->c->peer);
        in_db_answer(s, local, remote, "invalid", NULL);
    } else if (!*key) {
        in_db_answer(s, local, remote, "error", "bad-request");
    } else if (pair_find(s, remote, local)) {
        if (pair_find(s, remote, local)->state == PAIR_VALID)
            in_db_answer(s, local, remote, "valid", NULL);
    } else if (s->npairs >= (size_t)s2s_config->max_domains_per_stream) {
        conn_stream_error(s->c, "policy-violation", "too many domains on one stream");
    } else {
        pair_add(s, remote, local, PAIR_PENDING);
        log_debug("event=dialback-check local=%s remote=%s peer=%s", local, remote, s->c->peer);
        out_verify(local, remote, s->c->stream_id, key, s->c->serial);
    }
    free(remote);
    free(local);
    free(key);
}

/* <db:verify from='receiving' to='us' id='stream'>key</db:verify>: a server
 * our outgoing stream sent a key to asks whether we made it. */
static void in_db_verify(in_stream_t *s, const xml_node_t *el)
{
    const char *from = xml_attr_get(el, "from"), *to = xml_attr_get(el, "to"), *id = xml_attr_get(el, "id");
    if (!from || !to || !id) {
        conn_stream_error(s->c, "improper-addressing", "db:verify needs from, to and id");
        return;
    }
    char *key = xml_text(el);
    int valid = s2s_is_local(to) && dialback_check(dialback_secret(), from, to, id, key);
    free(key);
    log_info("event=dialback-verify-asked local=%s remote=%s result=%s", to, from, valid ? "valid" : "invalid");
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_puts(&sb, "<db:verify from='");
    xml_escape(&sb, to, strlen(to), 1);
    strbuf_puts(&sb, "' to='");
    xml_escape(&sb, from, strlen(from), 1);
    strbuf_puts(&sb, "' id='");
    xml_escape(&sb, id, strlen(id), 1);
    strbuf_printf(&sb, "' type='%s'/>", valid ? "valid" : "invalid");
    conn_write(s->c, sb.data, sb.len);
    strbuf_free(&sb);
}

void in_verify_result(uint64_t in_serial, const char *local, const char *remote, int valid)
{
    in_stream_t *s = stream_find(in_serial);
    if (!s || s->c->closed)
        return;
    in_pair_t *p = pair_find(s, remote, local);
    if (!p || p->state != PAIR_PENDING)
        return;
    if (valid == 1) {
        p->state = PAIR_VALID;
        in_db_answer(s, local, remote, "valid", NULL);
        log_notice("event=s2s-authenticated direction=in local=%s remote=%s method=dialback peer=%s", local,
                   remote, s->c->peer);
        out_peer_back(remote);
    } else if (valid == 0) {
        pair_remove(s, p);
        log_notice("event=dialback-invalid local=%s remote=%s peer=%s", local, remote, s->c->peer);
        in_db_answer(s, local, remote, "invalid", NULL);
    } else {
        pair_remove(s, p);
        log_notice("event=s2s-refused direction=in local=%s remote=%s peer=%s reason=authoritative-unreachable",
                   local, remote, s->c->peer);
        in_db_answer(s, local, remote, "error", "remote-server-not-found");
    }
}

/* ---------------------------------------------------------------- stanzas */

static int is_stanza(const xml_node_t *el)
{
    return !strcmp(el->ns, NS_SERVER) &&
           (!strcmp(el->name, "message") || !strcmp(el->name, "presence") || !strcmp(el->name, "iq"));
}

static void in_stanza(in_stream_t *s, xml_node_t *st)   /* st stays the caller's */
{
    const char *from = xml_attr_get(st, "from"), *to = xml_attr_get(st, "to");
    if (!from || !to) {
        conn_stream_error(s->c, "improper-addressing", NULL);
        return;
    }
    jid_t f, t;
    int fok = jid_parse(from, &f) == JID_OK, tok = jid_parse(to, &t) == JID_OK;
    in_pair_t *p = fok && tok ? pair_find(s, f.domain, t.domain) : NULL;
    int valid = p && p->state == PAIR_VALID;
    /* A pair authenticated for a component name stays usable when the
     * component goes away: the router holds or bounces its stanzas, and the
     * stream's other pairs are not ended with it. */
    if (!fok || !tok || (!valid && !s2s_is_local(t.domain))) {
        log_notice("event=s2s-refused direction=in peer=%s reason=%s from=%s to=%s", s->c->peer,
                   !fok ? "bad-from" : !tok ? "bad-to" : "not-our-domain", from, to);
        conn_stream_error(s->c, !fok ? "invalid-from" : "host-unknown", NULL);
    } else if (!valid) {
        log_notice("event=s2s-refused direction=in peer=%s reason=unauthenticated-from from=%s to=%s", s->c->peer,
                   from, to);
        conn_stream_error(s->c, stream_authenticated(s) ? "invalid-from" : "not-authorized", NULL);
    } else {
        /* Prepared forms go on, so the sm compares like with like. */
        xml_attr_set(st, "from", f.full);
        xml_attr_set(st, "to", t.full);
        if (link_send(st) < 0)
            log_warn("event=dropped direction=in reason=router-buffer-full from=%s", from);
    }
    if (fok)
        jid_clear(&f);
    if (tok)
        jid_clear(&t);
}

static void in_on_element(s2s_conn_t *c, xml_node_t *el)
{
    in_stream_t *s = c->owner;
    const char *ns = el->ns ? el->ns : "";
    if (!s->to) {
        conn_stream_error(c, "not-authorized", "no stream to");
    } else if (!strcmp(ns, NS_TLS) && !strcmp(el->name, "starttls")) {
        if (c->tls || !listen_server_ctx()) {
            conn_write_str(c, "<failure xmlns='" NS_TLS "'/>");
            conn_close(c, "starttls-refused");
        } else {
            conn_write_str(c, "<proceed xmlns='" NS_TLS "'/>");
            conn_restart(c);
            conn_starttls(c, 1, NULL);
        }
    } else if (!tls_ok(s)) {
        conn_stream_error(c, "policy-violation", "STARTTLS is required first");
    } else if (!strcmp(ns, NS_SASL)) {
        in_sasl(s, el);
    } else if (!strcmp(ns, NS_DIALBACK) && !strcmp(el->name, "result") && s2s_config->auth_dialback) {
        in_db_result(s, el);
    } else if (!strcmp(ns, NS_DIALBACK) && !strcmp(el->name, "verify")) {
        in_db_verify(s, el);
    } else if (is_stanza(el)) {
        s2s_metrics_stanza(1, el->name);
        in_stanza(s, el);
    } else if (!strcmp(ns, XML_NS_STREAM) && !strcmp(el->name, "error")) {
        xml_node_t *cond = xml_child(el, NS_STREAMS, NULL);
        log_notice("event=s2s-stream-error direction=in peer=%s condition=%s", c->peer, cond ? cond->name : "-");
        conn_close(c, "peer-stream-error");
    } else {
        conn_stream_error(c, "unsupported-stanza-type", NULL);
    }
    xml_free(el);
}

static void in_on_gone(s2s_conn_t *c, const char *reason)
{
    in_stream_t *s = c->owner;
    if (!s)
        return;
    for (in_stream_t **pp = &streams[c->serial % STREAM_BUCKETS]; *pp; pp = &(*pp)->hnext) {
        if (*pp == s) {
            *pp = s->hnext;
            break;
        }
    }
    nstreams--;
    if (stream_authenticated(s))
        log_info("event=s2s-closed direction=in peer=%s remote=%s reason=%s", c->peer, s->from ? s->from : "-",
                 reason);
    if (s->counted)
        ip_del(c->ip);
    while (s->pairs)
        pair_remove(s, s->pairs);
    free(s->from);
    free(s->to);
    free(s);
    c->owner = NULL;
}

static const s2s_conn_ops_t in_ops = {
    .on_open = in_on_open,
    .on_element = in_on_element,
    .on_gone = in_on_gone,
};

void in_accept(evutil_socket_t fd, const struct sockaddr *sa, int socklen, int direct_tls)
{
    char peer[64];
    net_addr_format(sa, (socklen_t)socklen, peer, sizeof peer);
    if (nstreams >= (size_t)s2s_config->max_in) {
        log_warn("event=connection-refused peer=%s reason=connections-limit", peer);
        evutil_closesocket(fd);
        return;
    }
    evutil_make_socket_nonblocking(fd);
    struct bufferevent *bev;
    if (direct_tls) {
        SSL *ssl = SSL_new(listen_server_ctx());
        bev = ssl ? bufferevent_openssl_socket_new(daemon_base(), fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                   BEV_OPT_CLOSE_ON_FREE)
                  : NULL;
    } else {
        bev = bufferevent_socket_new(daemon_base(), fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!bev) {
        log_warn("event=connection-refused peer=%s reason=setup", peer);
        evutil_closesocket(fd);
        return;
    }
    in_stream_t *s = xcalloc(1, sizeof *s);
    s2s_conn_t *c = conn_new(bev, 0, peer, &in_ops, s);
    s->c = c;
    c->tls = direct_tls;
    if (ip_add(c->ip) < 0) {
        log_warn("event=connection-refused peer=%s reason=connections-per-ip", peer);
        s->counted = 0;
    } else {
        s->counted = 1;
    }
    unsigned b = (unsigned)(c->serial % STREAM_BUCKETS);
    s->hnext = streams[b];
    streams[b] = s;
    nstreams++;
    if (!s->counted)
        conn_stream_error(c, "policy-violation", "too many connections from this address");
    else
        log_debug("event=connected direction=in peer=%s tls=%s", peer, direct_tls ? "direct" : "none");
}

/* Streams that never authenticate, and authenticated ones that went quiet. */
void in_cron(double now)
{
    for (size_t b = 0; b < STREAM_BUCKETS; b++) {
        for (in_stream_t *s = streams[b], *next; s; s = next) {
            next = s->hnext;
            s2s_conn_t *c = s->c;
            if (c->closed)
                continue;
            if (!stream_authenticated(s) && now - c->opened > s2s_config->t_negotiation)
                conn_stream_error(c, "connection-timeout", "not authenticated in time");
            else if (now - c->last_active > s2s_config->t_idle)
                conn_close(c, "idle");
        }
    }
}

void in_free_all(void)
{
    for (size_t b = 0; b < IP_BUCKETS; b++) {
        while (ips[b]) {
            ip_count_t *e = ips[b];
            ips[b] = e->next;
            free(e);
        }
    }
}
