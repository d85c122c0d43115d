/* client: one client connection and its XMPP stream (RFC 6120 §4): the
 * response header, stream features, STARTTLS, stream restarts, stream errors,
 * the closing handshake, timeouts, and the dispatch of what the client sends
 * to auth.c, bind.c, ibr.c, iqauth.c, smacks.c or on to the sm.
 *
 * Owns every client_t: a table by session id (deliveries from the sm find
 * their client there) and a list for the cron. Invariants: a client leaves the
 * table when it is closed, so nothing is delivered to it after; a client_t and
 * its connection are only freed from a deferred callback (client_reap), never
 * from inside its own parser or bufferevent callbacks.
 *
 * A connection is a socket bufferevent (raw) and, under TLS, OpenSSL's filter
 * over it (bev); once the handshake is over the filter and its SSL give way
 * to c2s's own TLS 1.3 record layer (client_tls_takeover, tls_record.c), and
 * bev is raw again, carrying records.
 *
 * A WebSocket client (c->ws) is the same client_t running the same session:
 * ws.h's transport frames what is written and unframes what is read, at
 * client_write and client_feed, and stands in for the stream header, stream
 * errors and end. */
#include "c2s.h"
#include "ws.h"
#include "comp_proto.h"
#include "log.h"
#include "net.h"
#include "stanza_check.h"
#include "tls.h"
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>

#define CLIENT_BUCKETS 4096

static client_t *client_tab[CLIENT_BUCKETS];
static client_t *client_list;
static size_t nclients;
static uint64_t next_sid = 1;
static size_t nhibernated;   /* clients with detached set, not closed */
static struct ev_token_bucket_cfg *rate_cfg;
/* sids waiting for a TLS takeover attempt (client_takeover_soon) */
static uint64_t *takeover_q;
static size_t takeover_len, takeover_cap;
static struct event *takeover_ev;

static void client_read_cb(struct bufferevent *bev, void *ctx);
static void client_write_cb(struct bufferevent *bev, void *ctx);
static void client_event_cb(struct bufferevent *bev, short what, void *ctx);

/* ---------------------------------------------------------------- table */

static void client_hash_add(client_t *c)
{
    unsigned b = (unsigned)(c->sid % CLIENT_BUCKETS);
    c->hnext = client_tab[b];
    client_tab[b] = c;
    c->in_table = 1;
}

static void client_hash_del(client_t *c)
{
    if (!c->in_table)
        return;
    for (client_t **pp = &client_tab[c->sid % CLIENT_BUCKETS]; *pp; pp = &(*pp)->hnext) {
        if (*pp == c) {
            *pp = c->hnext;
            break;
        }
    }
    c->in_table = 0;
}

client_t *client_find(uint64_t sid)
{
    for (client_t *c = client_tab[sid % CLIENT_BUCKETS]; c; c = c->hnext)
        if (c->sid == sid)
            return c;
    return NULL;
}

client_t *client_find_str(const char *sid)
{
    if (!sid || !*sid)
        return NULL;
    char *end;
    unsigned long long v = strtoull(sid, &end, 10);
    if (*end)
        return NULL;
    return client_find((uint64_t)v);
}

void client_rekey(client_t *c, uint64_t new_sid)
{
    client_hash_del(c);
    c->sid = new_sid;
    snprintf(c->sid_str, sizeof c->sid_str, "%llu", (unsigned long long)new_sid);
    client_hash_add(c);
}

client_t *client_first(void)
{
    return client_list;
}

size_t client_count(void)
{
    return nclients;
}

void client_foreach(client_each_fn fn, void *arg)
{
    for (client_t *c = client_list, *next; c; c = next) {
        next = c->lnext;
        if (c->state != CL_CLOSED)
            fn(c, arg);
    }
}

/* ---------------------------------------------------------------- freeing */

/* The TLS filter is made without BEV_OPT_CLOSE_ON_FREE, so that the record
 * takeover can free it and its SSL and keep the socket: here each of the
 * three goes on its own. */
static void client_release_conn(client_t *c)
{
    out_batch_leave(c, 1);
    if (c->ob)
        evbuffer_free(c->ob);
    c->ob = NULL;
    deliver_conn_gone(c);
    if (c->bev && c->bev != c->raw) {
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        bufferevent_free(c->bev);
        SSL_free(ssl);
    }
    if (c->raw)
        bufferevent_free(c->raw);
    c->bev = c->raw = NULL;
    tls_record_free(c->rec);
    c->rec = NULL;
    if (c->xs) {
        xml_stream_free(c->xs);
        c->xs = NULL;
    }
    ws_conn_free(c->ws);
    c->ws = NULL;
    if (c->counted) {
        limits_conn_del(c->ip);
        c->counted = 0;
    }
}

static void client_free(client_t *c)
{
    client_hash_del(c);
    client_release_conn(c);
    if (c->lprev)
        c->lprev->lnext = c->lnext;
    else
        client_list = c->lnext;
    if (c->lnext)
        c->lnext->lprev = c->lprev;
    nclients--;
    sasl_server_free(c->sasl);
    auth_cbind_drop(c);
    strbuf_free(&c->sasl_pending);
    auth_keys_drop(c);
    free(c->node);
    free(c->req_iq_id);
    free(c->bind_iq_id);
    free(c->legacy_res);
    jid_clear(&c->jid);
    xml_free(c->last_presence);
    csi_free(c);
    smacks_free(c);
    free(c);
}

/* Deferred work on a client outside its callbacks: drop a dead connection
 * (detached XEP-0198 session), or free a closed client whose output left. */
static void client_reap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    client_t *c = arg;
    c->reap_pending = 0;
    if (c->state == CL_CLOSED) {
        if (!c->output_full && net_bev_output_pending(c->bev) && daemon_now() - c->closing_at < c2s_config->t_close) {
            /* Under TLS the socket bufferevent drains after the filter's
             * write callback ran: look again shortly. */
            c->reap_pending = 1;
            struct timeval tv = {0, 20000};
            event_base_once(daemon_base(), -1, EV_TIMEOUT, client_reap, c, &tv);
            return;
        }
        client_free(c);
    } else if (c->detached) {
        client_release_conn(c);
    }
}

static void client_schedule_reap(client_t *c)
{
    if (c->reap_pending)
        return;
    c->reap_pending = 1;
    struct timeval zero = {0, 0};
    event_base_once(daemon_base(), -1, EV_TIMEOUT, client_reap, c, &zero);
}

/* ---------------------------------------------------------------- output */

void client_write(client_t *c, const char *data, size_t len)
{
    if (c->ws)
        ws_conn_send(c, data, len);
    else
        client_send_bytes(c, data, len);
}

void client_send_bytes(client_t *c, const char *data, size_t len)
{
    if (!c->bev || c->detached || c->state == CL_CLOSED)
        return;
    c2s_metrics_bytes_out(len);
    struct evbuffer *out = out_batch_buffer(c);
    if (evbuffer_get_length(out) + len > c2s_config->output_max) {
        log_warn("event=client-dropped peer=%s sid=%s reason=output-buffer-full bytes=%zu", c->peer,
                 c->sid_str, evbuffer_get_length(out));
        c->output_full = 1;
        /* The connection is unusable; detach or end from outside this path. */
        bufferevent_disable(c->bev, EV_READ);
        client_connection_lost(c);
        return;
    }
    if (!c->rec) {
        evbuffer_add(out, data, len);
    } else if (tls_record_seal(c->rec, data, len, out) < 0) {
        log_info("event=tls-failed peer=%s sid=%s reason=\"%s\"", c->peer, c->sid_str, tls_record_error(c->rec));
        c->output_full = 1;
        bufferevent_disable(c->bev, EV_READ);
        client_connection_lost(c);
    }
}

/* A stanza c2s answers itself (session result, stanza errors): once stream
 * management is on it counts toward the client's h and is kept for a
 * resumption like every delivery (XEP-0198 4), or the client's h runs ahead
 * of ours and the ack looks like one for stanzas never sent. */
void client_write_own_stanza(client_t *c, const xml_node_t *st)
{
    if (c->sm_enabled) {
        smacks_sent(c, st, 0);
        if (c->detached || c->state == CL_CLOSED)
            return;
    }
    client_write_node(c, st);
}

void client_write_node(client_t *c, const xml_node_t *el)
{
    strbuf_t sb;
    strbuf_init(&sb);
    /* A WebSocket message stands alone: the stanza declares jabber:client. */
    xml_serialize(el, c->ws ? NULL : NS_CLIENT, &sb);
    client_write(c, sb.data, sb.len);
    strbuf_free(&sb);
}

static void client_send_header(client_t *c, const char *to_attr)
{
    char id[33];
    comp_proto_random_hex(id, 16);
    c->header_sent = 1;
    if (c->ws) {
        ws_xmpp_open(c, to_attr, id);
        return;
    }
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_puts(&sb, "<?xml version='1.0'?><stream:stream xmlns='" NS_CLIENT
                     "' xmlns:stream='" XML_NS_STREAM "' from='");
    xml_escape(&sb, c2s_config->domain, strlen(c2s_config->domain), 1);
    strbuf_puts(&sb, "'");
    if (to_attr) {
        strbuf_puts(&sb, " to='");
        xml_escape(&sb, to_attr, strlen(to_attr), 1);
        strbuf_puts(&sb, "'");
    }
    strbuf_printf(&sb, " id='%s' version='1.0' xml:lang='", id);
    xml_escape(&sb, c->lang, strlen(c->lang), 1);
    strbuf_puts(&sb, "'>");
    client_write(c, sb.data, sb.len);
    strbuf_free(&sb);
}

static void client_send_features(client_t *c)
{
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_puts(&sb, c->ws ? "<stream:features xmlns:stream='" XML_NS_STREAM "'>" : "<stream:features>");
    if (!c->authed) {
        /* RFC 7395 3.8: no STARTTLS over a WebSocket. */
        if (!c->tls && !c->ws && listen_tls_ctx())
            strbuf_printf(&sb, "<starttls xmlns='" NS_TLS "'>%s</starttls>",
                          c2s_config->tls_required ? "<required/>" : "");
        if (c->secure || !c2s_config->tls_required) {
            auth_features(c, &sb);
            if (c2s_config->reg_enabled)
                strbuf_puts(&sb, "<register xmlns='" NS_REGISTER_FEATURE "'/>");
            if (c->secure && c2s_config->legacy_auth)
                strbuf_puts(&sb, "<auth xmlns='" NS_IQAUTH_FEATURE "'/>");
        }
    } else {
        /* rosterver: the sm keeps roster versions (RFC 6121 2.6, docs/sm.md). */
        strbuf_puts(&sb, "<bind xmlns='" NS_BIND "'/>"
                         "<session xmlns='" NS_SESSION_LEGACY "'><optional/></session>"
                         "<sm xmlns='" NS_SM "'/>"
                         "<csi xmlns='" NS_CSI "'/>"
                         "<ver xmlns='" NS_ROSTERVER "'/>");
        server_caps_features(&sb);
    }
    strbuf_puts(&sb, "</stream:features>");
    client_write(c, sb.data, sb.len);
    strbuf_free(&sb);
}

/* ---------------------------------------------------------------- closing */

void client_stream_error(client_t *c, const char *condition, const char *text)
{
    if (c->state == CL_CLOSED)
        return;
    if (!c->header_sent)
        client_send_header(c, NULL);
    if (c->ws) {
        ws_xmpp_stream_error(c, condition, text, NULL);
    } else {
        strbuf_t sb;
        strbuf_init(&sb);
        comp_proto_stream_error(&sb, condition, text);
        client_write(c, sb.data, sb.len);
        strbuf_free(&sb);
    }
    log_info("event=stream-error peer=%s sid=%s user=%s condition=%s", c->peer, c->sid_str,
             c->jid.full ? c->jid.full : "-", condition);
    client_close(c, CLOSE_END);
}

/* how: CLOSE_END gives the unacked stanzas back and ends the session at the sm
 * (the client went away); CLOSE_UNACKED only gives the stanzas back (the sm
 * ended the session itself); CLOSE_SILENT tells the sm nothing (the session
 * moved to another connection by XEP-0198 resumption). */
void client_close(client_t *c, int how)
{
    if (c->state == CL_CLOSED)
        return;
    int had_session = c->state == CL_SESSION || c->state == CL_BINDING;
    if (c->detached)
        nhibernated--;
    csi_free(c);   /* held presences and chat states have no one to go to */
    if (had_session && how != CLOSE_SILENT)
        smacks_return_unacked(c);
    if (had_session && how == CLOSE_END)
        sm_link_session(c, "end", 0);
    if (had_session)
        log_info("event=session-end peer=%s sid=%s jid=%s", c->peer, c->sid_str, c->jid.full ? c->jid.full : "-");
    client_hash_del(c);
    if (c->ws)
        ws_conn_end(c);   /* the close frame, while the client may still write */
    c->state = CL_CLOSED;
    c->closing_at = daemon_now();
    out_batch_leave(c, 0);   /* its bytes drain through the bufferevent before the reap */
    if (c->bev) {
        bufferevent_disable(c->bev, EV_READ);
        /* A non-empty output buffer is drained first: client_write_cb reaps. */
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0 && !c->output_full && !c->detached)
            return;
    }
    client_schedule_reap(c);
}

void client_set_detached(client_t *c)
{
    if (c->detached)
        return;
    c->detached = 1;
    c->detached_at = daemon_now();
    nhibernated++;
}

/* Over stream-management.max-hibernated: the session hibernated longest
 * (not c, which just did) ends; its queue goes back to the sm (offline
 * storage or another resource). */
static void client_evict_hibernated(client_t *c)
{
    if (nhibernated <= (size_t)c2s_config->sm_max_hibernated)
        return;
    client_t *oldest = NULL;
    for (client_t *o = client_list; o; o = o->lnext)
        if (o != c && o->detached && o->state != CL_CLOSED && (!oldest || o->detached_at < oldest->detached_at))
            oldest = o;
    if (oldest) {
        log_warn("event=hibernation-evicted sid=%s jid=%s hibernated=%zu max=%ld", oldest->sid_str, oldest->jid.full,
                 nhibernated, c2s_config->sm_max_hibernated);
        client_close(oldest, CLOSE_END);
    }
}

/* The TCP connection is gone or unusable (EOF, reset, output full). A session
 * with XEP-0198 resumption enabled stays for the client to come back; any
 * other ends here. */
void client_connection_lost(client_t *c)
{
    if (c->state == CL_CLOSED || c->detached)
        return;
    if (c->state == CL_SESSION && c->sm_resume && c2s_config->sm_resume > 0) {
        client_set_detached(c);
        log_info("event=detached peer=%s sid=%s jid=%s unacked=%zu", c->peer, c->sid_str, c->jid.full,
                 c->sm_len);
        sm_link_hibernation(c, 1);
        client_schedule_reap(c);
        client_evict_hibernated(c);
        return;
    }
    c->output_full = 1; /* nothing more can be written */
    client_close(c, CLOSE_END);
}

/* RFC 6120 §4.9.3.19: the condition element carries the host to go to. */
static void client_see_other_host(client_t *c, const char *host)
{
    if (!c->header_sent)
        client_send_header(c, NULL);
    if (c->ws) {
        ws_xmpp_stream_error(c, "see-other-host", NULL, host);
    } else {
        strbuf_t sb;
        strbuf_init(&sb);
        strbuf_puts(&sb, "<stream:error><see-other-host xmlns='" NS_STREAMS "'>");
        xml_escape(&sb, host, strlen(host), 0);
        strbuf_puts(&sb, "</see-other-host></stream:error></stream:stream>");
        client_write(c, sb.data, sb.len);
        strbuf_free(&sb);
    }
    log_info("event=stream-error peer=%s sid=%s user=%s condition=see-other-host host=%s", c->peer,
             c->sid_str, c->jid.full ? c->jid.full : "-", host);
    client_close(c, CLOSE_END);
}

/* Graceful stop: every connection gets system-shutdown, or see-other-host
 * when shutdown.see-other-host names where to go. */
void client_close_all(void)
{
    const char *host = c2s_config->shutdown_host;
    for (client_t *c = client_list; c; c = c->lnext) {
        if (c->state == CL_CLOSED)
            continue;
        if (c->detached)
            client_close(c, CLOSE_END);
        else if (host && *host)
            client_see_other_host(c, host);
        else
            client_stream_error(c, "system-shutdown", NULL);
    }
}

void client_free_all(void)
{
    while (client_list)
        client_free(client_list);
    out_batch_free();
    if (takeover_ev) {
        event_free(takeover_ev);
        takeover_ev = NULL;
    }
    free(takeover_q);
    takeover_q = NULL;
    takeover_len = takeover_cap = 0;
    if (rate_cfg) {
        ev_token_bucket_cfg_free(rate_cfg);
        rate_cfg = NULL;
    }
}

/* ---------------------------------------------------------------- stanzas */

void client_stanza_error(client_t *c, const xml_node_t *st, const char *condition, const char *type)
{
    if (!stanza_error_allowed(st))
        return;
    xml_node_t *e = xml_copy(st);
    const char *to = xml_attr_get(st, "to");
    char *from = to ? xstrdup(to) : NULL;
    xml_attr_set(e, "from", from);
    xml_attr_set(e, "to", c->jid.full);
    xml_attr_set(e, "type", "error");
    free(from);
    xml_node_t *err = xml_add_child(e, NS_CLIENT, "error");
    xml_attr_set(err, "type", type);
    xml_add_child(err, NS_STANZAS, condition);
    client_write_own_stanza(c, e);
    xml_free(e);
}

/* RFC 6120 §8.1.2.1: from is stamped with the session's full JID; a client
 * claiming another address gets invalid-from. to is prepared (jid-malformed
 * when it does not parse). Then the stanza goes to the sm in a route. */
static void client_route_stanza(client_t *c, xml_node_t *st)
{
    const char *from = xml_attr_get(st, "from");
    if (from) {
        jid_t f;
        int ok = jid_parse(from, &f) == JID_OK &&
                 (jid_equal(&f, &c->jid) || (!f.resource && jid_bare_equal(&f, &c->jid)));
        jid_clear(&f);
        if (!ok) {
            client_stream_error(c, "invalid-from", NULL);
            return;
        }
    }
    xml_attr_set(st, "from", c->jid.full);
    const char *to = xml_attr_get(st, "to");
    if (to) {
        jid_t t;
        if (jid_parse(to, &t) != JID_OK) {
            client_stanza_error(c, st, "jid-malformed", "modify");
            return;
        }
        xml_attr_set(st, "to", t.full);
        jid_clear(&t);
    }
    if (!strcmp(st->name, "presence") && !xml_attr_get(st, "to")) {
        const char *type = xml_attr_get(st, "type");
        if (!type || !strcmp(type, "unavailable")) {
            xml_free(c->last_presence);
            c->last_presence = type ? NULL : xml_copy(st);
        }
    }
    if (sm_link_route(c, st, NULL) < 0)
        client_stanza_error(c, st, "resource-constraint", "wait");
}

/* A TLS server filter over the socket bufferevent raw; it owns neither raw
 * nor its SSL (see client_release_conn). NULL on failure. */
static struct bufferevent *client_tls_filter(struct bufferevent *raw)
{
    SSL *ssl = SSL_new(listen_tls_ctx());
    struct bufferevent *tb =
        ssl ? bufferevent_openssl_filter_new(daemon_base(), raw, ssl, BUFFEREVENT_SSL_ACCEPTING, 0) : NULL;
    if (!tb && ssl)
        SSL_free(ssl);
    return tb;
}

static void client_start_tls(client_t *c)
{
    c->starttls_pending = 0;
    struct evbuffer *plain_in = bufferevent_get_input(c->bev);
    evbuffer_drain(plain_in, evbuffer_get_length(plain_in));
    struct bufferevent *tb = client_tls_filter(c->raw);
    if (!tb) {
        log_warn("event=tls-failed peer=%s reason=setup", c->peer);
        client_close(c, CLOSE_SILENT);
        return;
    }
    c->bev = tb;
    c->tls = c->secure = 1;
    bufferevent_setcb(tb, client_read_cb, client_write_cb, client_event_cb, c);
    bufferevent_enable(tb, EV_READ | EV_WRITE);
}

static void client_handle_starttls(client_t *c)
{
    if (c->tls || c->ws || c->authed || !listen_tls_ctx()) {
        client_write(c, "<failure xmlns='" NS_TLS "'/>", strlen("<failure xmlns='" NS_TLS "'/>"));
        client_close(c, CLOSE_END);
        return;
    }
    client_write(c, "<proceed xmlns='" NS_TLS "'/>", strlen("<proceed xmlns='" NS_TLS "'/>"));
    client_restart_stream(c);
    c->starttls_pending = 1; /* the filter goes in once the parser returned */
}

void client_restart_stream(client_t *c)
{
    xml_stream_restart(c->xs);
    c->want_header = 1;
}

static int client_is_stanza(const xml_node_t *st)
{
    return !strcmp(st->ns, NS_CLIENT) &&
           (!strcmp(st->name, "message") || !strcmp(st->name, "presence") || !strcmp(st->name, "iq"));
}

static int client_is_session_iq(const xml_node_t *st)
{
    return !strcmp(st->name, "iq") && xml_child(st, NS_SESSION_LEGACY, "session");
}

static void client_on_stanza(void *ctx, xml_node_t *st)
{
    client_t *c = ctx;
    if (c->state == CL_CLOSED) {
        xml_free(st);
        return;
    }
    if (!strcmp(st->ns, NS_TLS) && !strcmp(st->name, "starttls")) {
        client_handle_starttls(c);
    } else if (!strcmp(st->ns, NS_SASL)) {
        if (c->authed)
            client_stream_error(c, "policy-violation", "already authenticated");
        else if (!c->secure && c2s_config->tls_required && listen_tls_ctx())
            client_stream_error(c, "policy-violation", "STARTTLS is required first");
        else
            auth_handle(c, st);
    } else if (!strcmp(st->ns, NS_SM)) {
        smacks_handle(c, st);
    } else if (!strcmp(st->ns, NS_CSI)) {
        csi_handle(c, st);
    } else if (!client_is_stanza(st)) {
        client_stream_error(c, "unsupported-stanza-type", NULL);
    } else if (!c->authed) {
        int tls_ok = c->secure || !c2s_config->tls_required || !listen_tls_ctx();
        if (tls_ok && ibr_is_register_iq(st))
            ibr_handle(c, st);
        else if (iqauth_is_auth_iq(st))
            iqauth_handle(c, st);   /* it refuses a clear stream itself */
        else
            client_stream_error(c, "not-authorized", NULL);
    } else {
        c2s_metrics_stanza(1, st->name);
        if (c->state == CL_SESSION)
            smacks_count_in(c);
        const char *bad = stanza_check(st);
        if (bad) {
            client_stanza_error(c, st, bad, "modify");   /* RFC 6120 8.2.3, 8.3.3.1 */
        } else if (!strcmp(st->name, "iq") && bind_is_bind_iq(st)) {
            bind_handle_iq(c, st);
        } else if (client_is_session_iq(st)) {
            if (c->state != CL_SESSION) {
                client_stanza_error(c, st, "not-allowed", "cancel");
            } else {
                xml_node_t *r = xml_elem_new(NS_CLIENT, "iq");
                xml_attr_set(r, "type", "result");
                xml_attr_set(r, "id", xml_attr_get(st, "id"));
                client_write_own_stanza(c, r);
                xml_free(r);
            }
        } else if (c->state != CL_SESSION) {
            client_stream_error(c, "not-authorized", "bind a resource first");
        } else if (ibr_is_register_iq(st)) {
            ibr_handle(c, st);
        } else {
            client_route_stanza(c, st);
        }
    }
    xml_free(st);
}

static void client_on_open(void *ctx, const xml_node_t *hdr, const char *default_ns)
{
    client_t *c = ctx;
    if (c->state == CL_CLOSED)
        return;
    c->want_header = 0;
    c->stream_no++;
    const char *lang = xml_attr_get_ns(hdr, XML_NS_XML, "lang");
    snprintf(c->lang, sizeof c->lang, "%s", lang && strlen(lang) < sizeof c->lang ? lang : "en");
    for (char *p = c->lang; *p; p++)
        if (*p == '\'' || *p == '<' || *p == '&')
            *p = '-';
    /* RFC 6120 §4.7.2: echo the client's from as 'to' only when it is a JID. */
    const char *from = xml_attr_get(hdr, "from");
    jid_t fj = {0};
    int from_ok = from && jid_parse(from, &fj) == JID_OK;
    client_send_header(c, from_ok ? fj.full : NULL);
    jid_clear(&fj);
    if (strcmp(default_ns, NS_CLIENT)) {
        client_stream_error(c, "invalid-namespace", NULL);
        return;
    }
    const char *to = xml_attr_get(hdr, "to");
    char *dom = to ? jid_prep_domain(to) : NULL;
    int host_ok = dom && !strcmp(dom, c2s_config->domain);
    free(dom);
    if (!host_ok) {
        client_stream_error(c, "host-unknown", NULL);
        return;
    }
    /* RFC 6120 §4.7.5: major version 1 is required; no version means 0.9. */
    const char *ver = xml_attr_get(hdr, "version");
    if (!ver || strtol(ver, NULL, 10) != 1 || strncmp(ver, "1.", 2)) {
        client_stream_error(c, "unsupported-version", NULL);
        return;
    }
    client_send_features(c);
}

static void client_on_close(void *ctx)
{
    client_t *c = ctx;
    if (c->state == CL_CLOSED)
        return;
    if (c->ws)
        ws_xmpp_close(c);
    else
        client_write(c, "</stream:stream>", 16);
    client_close(c, CLOSE_END);
}

static const xml_stream_cb_t client_parser_cb = {
    .on_open = client_on_open,
    .on_stanza = client_on_stanza,
    .on_close = client_on_close,
};

/* ---------------------------------------------------------------- TLS takeover */

/* tls.record-takeover: once the handshake is over and nothing is buffered on
 * the way in or out, a connection's TLS leaves OpenSSL. What OpenSSL already
 * encrypted stays queued on the socket and goes out first; from then on
 * records are opened and sealed by tls_record.c, and the filter and its SSL
 * (~13 KB per connection, docs/performance.md) are freed. Done as early as
 * possible, before SASL and binding, so that the per-session objects made
 * after it reuse the handshake's memory instead of pinning pages between
 * freed handshake buffers. The channel-binding data SASL may still need is
 * saved first (auth_cbind_keep). */
static void client_tls_takeover(client_t *c)
{
    if (!c->tls || c->rec || c->tls_kept || !c->bev || c->bev == c->raw || c->detached ||
        c->state == CL_CLOSED || c->starttls_pending || !c2s_config->tls_takeover)
        return;
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    if (!ssl || !SSL_is_init_finished(ssl) || evbuffer_get_length(bufferevent_get_input(c->bev)) ||
        evbuffer_get_length(bufferevent_get_output(c->bev)) || evbuffer_get_length(bufferevent_get_input(c->raw)) ||
        SSL_has_pending(ssl) || SSL_want_write(ssl))
        return;   /* busy or still shaking hands: next time */
    auth_cbind_keep(c);
    const char *why = NULL;
    tls_record_t *r = tls_record_take(ssl, &why);
    if (!r) {
        auth_cbind_drop(c);
        c->tls_kept = 1;
        log_debug("event=tls-takeover peer=%s sid=%s result=kept reason=\"%s\"", c->peer, c->sid_str, why);
        return;
    }
    deliver_filter_gone(c);
    bufferevent_free(c->bev);
    SSL_free(ssl);
    c->bev = c->raw;
    c->rec = r;
    bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    log_debug("event=tls-takeover peer=%s sid=%s result=done", c->peer, c->sid_str);
}

/* Takeovers wait for the end of the current callbacks (a filter cannot be
 * freed from inside its own): session ids, not pointers, are queued, so a
 * client freed meanwhile is simply not found. */
static void client_takeover_run(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    for (size_t i = 0; i < takeover_len; i++) {
        client_t *c = client_find(takeover_q[i]);
        if (c)
            client_tls_takeover(c);
    }
    takeover_len = 0;
}

static void client_takeover_soon(client_t *c)
{
    if (!c->tls || c->rec || c->tls_kept || !c2s_config->tls_takeover)
        return;
    if (takeover_len && takeover_q[takeover_len - 1] == c->sid)
        return;
    if (!takeover_ev) {
        takeover_ev = event_new(daemon_base(), -1, 0, client_takeover_run, NULL);
        if (!takeover_ev)
            return;   /* the cron tries again */
    }
    if (takeover_len == takeover_cap) {
        takeover_cap = takeover_cap ? 2 * takeover_cap : 64;
        takeover_q = xrealloc(takeover_q, takeover_cap * sizeof *takeover_q);
    }
    takeover_q[takeover_len++] = c->sid;
    event_active(takeover_ev, EV_TIMEOUT, 0);
}

/* ---------------------------------------------------------------- I/O */

int client_feed_xml(client_t *c, const char *data, size_t n)
{
    xs_err_t err = xml_stream_feed(c->xs, data, n);
    if (c->state == CL_CLOSED || c->detached)
        return -1;
    if (err == XS_ERR_CLOSED) {
        client_close(c, CLOSE_END);
    } else if (err != XS_OK) {
        log_info("event=parse-error peer=%s sid=%s detail=\"%s\"", c->peer, c->sid_str,
                 xml_stream_error_text(c->xs));
        client_stream_error(c, xs_err_condition(err), NULL);
    }
    return 0;
}

/* Feeds n bytes read from the client (plaintext under TLS) to its stream,
 * through the WebSocket transport when it has one. 0, or -1 when the client
 * is no longer one to read for (closed, detached). */
static int client_feed(client_t *c, const char *data, size_t n)
{
    c2s_metrics_bytes_in(n);
    if (c->ws)
        return ws_conn_feed(c, data, n);
    return client_feed_xml(c, data, n);
}

/* After the record takeover the socket carries TLS records: open each one
 * and feed its plaintext. End of stream and TLS errors take the paths an
 * OpenSSL filter would have reported through client_event_cb. */
static void client_read_records(client_t *c, struct evbuffer *in)
{
    static strbuf_t plain;   /* shared: the parser copies what it keeps */
    struct evbuffer *out = out_batch_current(c);   /* records stay in sequence */
    while (c->state != CL_CLOSED && !c->detached) {
        strbuf_reset(&plain);
        int rc = tls_record_open(c->rec, in, &plain, out);
        if (plain.len && client_feed(c, plain.data, plain.len) < 0)
            return;
        if (rc == TLSR_OK)
            continue;
        if (rc == TLSR_AGAIN || c->state == CL_CLOSED)
            return;
        if (rc == TLSR_EOF) {
            client_event_cb(c->bev, BEV_EVENT_READING | BEV_EVENT_EOF, c);
        } else {
            log_info("event=tls-failed peer=%s sid=%s reason=\"%s\"", c->peer, c->sid_str,
                     tls_record_error(c->rec));
            client_event_cb(c->bev, BEV_EVENT_READING | BEV_EVENT_ERROR, c);
        }
        return;
    }
}

static void client_read_cb(struct bufferevent *bev, void *ctx)
{
    client_t *c = ctx;
    struct evbuffer *in = bufferevent_get_input(bev);
    c->last_read = daemon_now();
    if (c->rec) {
        client_read_records(c, in);
        return;
    }
    while (c->state != CL_CLOSED && !c->detached && !c->starttls_pending && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t n = v.iov_len;
        if (client_feed(c, v.iov_base, n) < 0)
            break;
        evbuffer_drain(in, n);
    }
    if (c->starttls_pending && c->state != CL_CLOSED)
        client_start_tls(c);
    else if (c->tls && !c->rec && c->state != CL_CLOSED)
        client_takeover_soon(c);
}

static void client_write_cb(struct bufferevent *bev, void *ctx)
{
    (void)bev;
    client_t *c = ctx;
    if (c->state == CL_CLOSED)
        client_schedule_reap(c);
}

static void client_event_cb(struct bufferevent *bev, short what, void *ctx)
{
    (void)bev;
    client_t *c = ctx;
    if (what & BEV_EVENT_CONNECTED) {
        c2s_metrics_tls(1);
        client_takeover_soon(c);   /* the TLS handshake is over */
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        unsigned long e = bufferevent_get_openssl_error(bev);
        if (e) {
            char buf[256];
            ERR_error_string_n(e, buf, sizeof buf);
            log_info("event=tls-failed peer=%s reason=\"%s\"", c->peer, buf);
            SSL *ssl = bufferevent_openssl_get_ssl(bev);
            if (ssl && !SSL_is_init_finished(ssl))
                c2s_metrics_tls(0);
        }
    }
    if (c->state == CL_CLOSED) {
        c->output_full = 1;
        client_schedule_reap(c);
        return;
    }
    log_debug("event=connection-lost peer=%s sid=%s what=0x%x", c->peer, c->sid_str, (unsigned)what);
    client_connection_lost(c);
}

void client_accept(evutil_socket_t fd, const struct sockaddr *sa, int socklen, int kind)
{
    int direct_tls = kind == LISTEN_TLS || kind == LISTEN_WSS;
    char peer[64], ip[48];
    net_addr_format(sa, (socklen_t)socklen, peer, sizeof peer);
    /* The per-IP key is the address without the port. */
    size_t iplen = strlen(peer);
    const char *colon = strrchr(peer, ':');
    if (colon && colon != peer)
        iplen = (size_t)(colon - peer);
    if (iplen >= sizeof ip)
        iplen = sizeof ip - 1;
    memcpy(ip, peer, iplen);
    ip[iplen] = '\0';
    if (nclients >= (size_t)c2s_config->max_clients) {
        log_warn("event=connection-refused peer=%s reason=clients-limit", peer);
        evutil_closesocket(fd);
        return;
    }
    if (limits_conn_add(ip) < 0) {
        log_warn("event=connection-refused peer=%s reason=connections-per-ip", peer);
        evutil_closesocket(fd);
        return;
    }
    evutil_make_socket_nonblocking(fd);
    /* Direct TLS, like STARTTLS, is a filter over a socket bufferevent, so
     * that the record takeover can drop the filter and keep the socket. */
    struct bufferevent *raw = bufferevent_socket_new(daemon_base(), fd, BEV_OPT_CLOSE_ON_FREE);
    struct bufferevent *bev = raw && direct_tls ? client_tls_filter(raw) : raw;
    if (!bev) {
        log_warn("event=connection-refused peer=%s reason=setup", peer);
        limits_conn_del(ip);
        if (raw)
            bufferevent_free(raw);   /* closes fd */
        else
            evutil_closesocket(fd);
        return;
    }
    client_t *c = xcalloc(1, sizeof *c);
    c->counted = 1;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    snprintf(c->ip, sizeof c->ip, "%s", ip);
    c->sid = next_sid++;
    snprintf(c->sid_str, sizeof c->sid_str, "%llu", (unsigned long long)c->sid);
    c->tls = c->secure = c->direct_tls = direct_tls;
    if (kind == LISTEN_WS || kind == LISTEN_WSS) {
        /* Plain WebSocket from loopback: a browser on this host, or a reverse
         * proxy that ended TLS; from elsewhere only with websocket.trust-plain. */
        c->ws = ws_conn_new(direct_tls || net_addr_is_local(sa) || c2s_config->ws_trust_plain);
        c->secure = ws_conn_trusted(c->ws);
    }
    c->bev = bev;
    c->raw = raw;
    c->state = CL_OPEN;
    c->want_header = 1;
    c->opened = c->last_read = daemon_now();
    strbuf_init(&c->sasl_pending);
    snprintf(c->lang, sizeof c->lang, "en");
    xml_limits_t lim;
    xml_limits_default(&lim);
    lim.max_stanza_bytes = c2s_config->stanza_bytes;
    lim.max_depth = (unsigned)c2s_config->depth;
    lim.max_attrs = (unsigned)c2s_config->attrs;
    lim.max_text = c2s_config->stanza_bytes;
    c->xs = xml_stream_new(&client_parser_cb, c, &lim);
    if (!rate_cfg) {
        struct timeval tick = {1, 0};
        rate_cfg = ev_token_bucket_cfg_new(c2s_config->rate, c2s_config->burst, EV_RATE_LIMIT_MAX,
                                           EV_RATE_LIMIT_MAX, &tick);
        /* c2s_start checked rate <= burst: only allocation can fail here. */
        if (!rate_cfg)
            log_panic("event=rate-limit reason=token-bucket rate=%zu burst=%zu", c2s_config->rate,
                      c2s_config->burst);
    }
    bufferevent_set_rate_limit(raw, rate_cfg);
    c->lnext = client_list;
    if (client_list)
        client_list->lprev = c;
    client_list = c;
    nclients++;
    client_hash_add(c);
    bufferevent_setcb(bev, client_read_cb, client_write_cb, client_event_cb, c);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    log_debug("event=connected peer=%s sid=%s tls=%s websocket=%d", peer, c->sid_str, direct_tls ? "direct" : "none",
              c->ws != NULL);
}

/* ---------------------------------------------------------------- cron */


void client_cron(double now)
{
    const c2s_cfg_t *cfg = c2s_config;
    for (client_t *c = client_list, *next; c; c = next) {
        next = c->lnext;
        deliver_cron(c, now);
        smacks_ack_late(c, now);
        csi_cron(c, now);
        if (c->state == CL_CLOSED) {
            if (now - c->closing_at > cfg->t_close) {
                c->output_full = 1;
                client_schedule_reap(c);
            }
            continue;
        }
        if (c->detached) {
            if (now - c->detached_at > cfg->sm_resume) {
                log_info("event=resume-expired sid=%s jid=%s unacked=%zu", c->sid_str, c->jid.full, c->sm_len);
                client_close(c, CLOSE_END);
            }
            continue;
        }
        if (c->wait_until > 0 && now > c->wait_until) {
            c->wait_until = 0;
            if (c->req_kind == REQ_AUTH)
                auth_authreg_answer(c, NULL);
            else if (c->req_kind != REQ_NONE)
                ibr_authreg_answer(c, NULL);
            else if (c->state == CL_BINDING)
                bind_session_answer(c, NULL);
            if (c->state == CL_CLOSED)
                continue;
        }
        if (c->state != CL_SESSION && now - c->opened > cfg->t_negotiation) {
            client_stream_error(c, "connection-timeout", "negotiation took too long");
            continue;
        }
        if (now - c->last_read > cfg->t_idle) {
            if (c->state == CL_SESSION && c->sm_resume && cfg->sm_resume > 0) {
                /* silent for so long: its network is gone, the session hibernates */
                log_info("event=idle-timeout peer=%s sid=%s jid=%s result=hibernated", c->peer, c->sid_str,
                         c->jid.full);
                client_connection_lost(c);
            } else {
                client_stream_error(c, "connection-timeout", NULL);
            }
            continue;
        }
        if (c->state == CL_SESSION)
            smacks_cron(c, now);
        if (c->ws)
            ws_conn_cron(c, now);
        client_tls_takeover(c);   /* in case no read came after a busy moment */
        /* An idle stream gives its parser back (~10 KB) and its cipher
         * contexts (~2 KB); the next byte from the client rebuilds them.
         * Soon after login, so that the parsers of a crowd of logins do not
         * pile up (each one's blocks go back whole: xml_parser_mem.h). */
        if (c->xs && now - c->last_read >= cfg->t_parser_release) {
            xml_stream_compact(c->xs);
            if (c->rec)
                tls_record_idle(c->rec);
        }
    }
}
