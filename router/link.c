/* link: one component connection to the router, from accept to close.
 *
 * Stream negotiation for internal components (STARTTLS when offered or
 * required, SASL SCRAM-SHA-256[-PLUS], restart, <w:session/>), the XEP-0114
 * handshake for legacy ones, the control elements (bind, unbind, ack), and
 * hand-off of every other top-level element to forward_raw() as raw bytes.
 * A link that misbehaves gets a stream error and is closed; no other link is
 * affected. Invariant: once torn down, a link is in no routing structure.
 *
 * Parsing: a link's bytes go through xml_scan_stream (common/xml_scan.h).
 * Its scanner frames every top-level element and itself checks the ones
 * classify() marks XS_RAW (routed elements, once the link is ready), for a
 * fraction of expat's cost (docs/performance.md, "Router"); forward_raw
 * gets their exact bytes, and so does the acknowledgement <w:a/>, read by
 * on_raw. The stream header and every other element (SASL, STARTTLS, the
 * XEP-0114 handshake, other w: control elements, stream-level
 * elements) are handed as exact bytes to an expat parser that has seen the
 * stream minus the routed elements, and reach on_open/on_stanza as before.
 * Anything the scanner refuses or does not judge is handed to expat with the
 * rest of the stream, so verdicts and stream error conditions are expat's.
 * Input: see link_read_cb. */
#include "router.h"
#include "base64.h"
#include "comp_proto.h"
#include "log.h"
#include "net.h"
#include "listen_set.h"
#include "tls.h"
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

static struct event_base *base;
/* Every configured address (listen, listen-unix), closed together at stop. */
static listen_set_t listeners;
static SSL_CTX *tls_ctx;
static link_t *links;
static size_t nlinks;
static uint64_t next_link_id;
static xml_limits_t limits;

static void link_read_cb(struct bufferevent *bev, void *arg);
static void link_write_cb(struct bufferevent *bev, void *arg);
static void link_event_cb(struct bufferevent *bev, short what, void *arg);

link_t *link_list(void)
{
    return links;
}

size_t link_count(void)
{
    return nlinks;
}

void link_send(link_t *l, const char *data, size_t len)
{
    if (l->state == LINK_CLOSING)
        return;
    if (l->rout < l->rtail)
        forward_flush(l);
    bufferevent_write(l->bev, data, len);
}

static void send_sb(link_t *l, strbuf_t *sb)
{
    link_send(l, sb->data, sb->len);
    strbuf_free(sb);
}

void link_pause(link_t *l, int reason)
{
    l->pause_reasons |= reason;
    if (!l->paused) {
        l->paused = 1;
        bufferevent_disable(l->bev, EV_READ);
    }
}

void link_resume(link_t *l, int reason)
{
    l->pause_reasons &= ~reason;
    if (l->paused && !l->pause_reasons && l->state != LINK_CLOSING) {
        l->paused = 0;
        bufferevent_enable(l->bev, EV_READ);
        /* Input that arrived before the pause is still buffered. Not from
         * inside the parser (an element's bounce or refusal can resume its
         * own sender): feed_input's loop goes on by itself then. */
        if (!l->feeding && evbuffer_get_length(bufferevent_get_input(l->bev)))
            link_read_cb(l->bev, l);
    }
}

/* Removes the link from routing: its names go away (held for their return),
 * what it had not acknowledged is requeued, its senders are released. */
static void link_teardown(link_t *l)
{
    if (l->torn_down)
        return;
    l->torn_down = 1;
    if (l->origin) {
        origin_detach(l->origin);
        l->origin = NULL;
    }
    origin_forget_link(l);
    names_link_lost(l);
    /* After names_link_lost: nothing is forwarded to l from here on. */
    forward_forget_flush(l);
    forward_forget_waiter(l);
    size_t n = l->nwaiters;
    link_t **w = l->waiters;
    l->waiters = NULL;
    l->nwaiters = l->capwaiters = 0;
    for (size_t i = 0; i < n; i++)
        link_resume(w[i], 1);
    free(w);
}

static void link_free(link_t *l)
{
    link_teardown(l);
    for (link_t **pp = &links; *pp; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    }
    nlinks--;
    if (l->auth_timer)
        event_free(l->auth_timer);
    if (l->sasl)
        sasl_server_free(l->sasl);
    if (l->xs)
        xml_scan_stream_free(l->xs);
    bufferevent_free(l->bev);
    free(l->rbuf);
    free(l->fifo);
    free(l);
}

static void close_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    link_free(arg);
}

void link_close_error(link_t *l, const char *condition, const char *text)
{
    if (l->state == LINK_CLOSING)
        return;
    log_warn("event=stream-error component=%s peer=%s condition=%s text=\"%s\"",
             l->acl ? l->acl->name : "-", l->peer, condition, text ? text : "");
    strbuf_t sb;
    strbuf_init(&sb);
    if (!l->header_sent) {
        /* RFC 6120 4.9.1.1: open a stream before the error if none was sent. */
        comp_proto_header(&sb, router_config->name, NULL, "error", 1);
    }
    comp_proto_stream_error(&sb, condition, text);
    forward_flush(l);
    bufferevent_write(l->bev, sb.data, sb.len);
    strbuf_free(&sb);
    /* Closing first, so nothing (our own name's down notice) follows the
     * closing tag. */
    l->state = LINK_CLOSING;
    link_teardown(l);
    bufferevent_disable(l->bev, EV_READ);
    /* Freed once the error is written, or after two seconds at the latest. */
    bufferevent_setwatermark(l->bev, EV_WRITE, 0, 0);
    if (l->auth_timer)
        event_free(l->auth_timer);
    l->auth_timer = evtimer_new(base, close_timer_cb, l);
    struct timeval tv = {2, 0};
    evtimer_add(l->auth_timer, &tv);
}

static void auth_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    link_t *l = arg;
    if (l->state != LINK_READY)
        link_close_error(l, "connection-timeout", "authentication took too long");
}

/* --- stream header and features ------------------------------------------- */

static void send_features(link_t *l)
{
    strbuf_t sb;
    strbuf_init(&sb);
    comp_proto_header(&sb, router_config->name, NULL, l->stream_id, 1);
    l->header_sent = 1;
    strbuf_puts(&sb, "<stream:features>");
    if (l->state == LINK_SESSION) {
        strbuf_puts(&sb, "<session xmlns='" COMP_NS "'/>");
    } else {
        int tls_needed = !l->local && router_config->tls_required_remote && !l->tls;
        if (tls_ctx && !l->tls)
            strbuf_printf(&sb, "<starttls xmlns='" NS_TLS "'>%s</starttls>", tls_needed ? "<required/>" : "");
        if (!tls_needed) {
            strbuf_puts(&sb, "<mechanisms xmlns='" NS_SASL "'>");
            if (l->tls)
                strbuf_puts(&sb, "<mechanism>SCRAM-SHA-256-PLUS</mechanism>");
            strbuf_puts(&sb, "<mechanism>SCRAM-SHA-256</mechanism></mechanisms>");
        }
    }
    strbuf_puts(&sb, "</stream:features>");
    send_sb(l, &sb);
}

static void on_open(void *ctx, const xml_node_t *hdr, const char *default_ns)
{
    link_t *l = ctx;
    if (strcmp(default_ns, COMP_NS_ACCEPT)) {
        link_close_error(l, "invalid-namespace", "default namespace must be jabber:component:accept");
        return;
    }
    const char *version = xml_attr_get(hdr, "version");
    const char *to = xml_attr_get(hdr, "to");
    int first = !l->stream_id[0];
    /* A fresh id for every stream, restarts included (RFC 6120 4.7.3). */
    comp_proto_random_hex(l->stream_id, 16);
    if (first && !(version && !strcmp(version, "1.0"))) {
        /* XEP-0114: the 'to' names the component, which then proves the secret. */
        const acl_t *a = to ? router_acl_find(to) : NULL;
        if (!a || !a->xep0114) {
            strbuf_t sb;
            strbuf_init(&sb);
            comp_proto_header(&sb, to ? to : router_config->name, NULL, l->stream_id, 0);
            l->header_sent = 1;
            send_sb(l, &sb);
            link_close_error(l, "host-unknown", "no such component");
            return;
        }
        if (!l->local && !router_config->xep0114_remote) {
            link_close_error(l, "policy-violation", "XEP-0114 is only accepted on loopback");
            return;
        }
        l->acl = a;
        l->internal = 0;
        strbuf_t sb;
        strbuf_init(&sb);
        comp_proto_header(&sb, to, NULL, l->stream_id, 0);
        l->header_sent = 1;
        send_sb(l, &sb);
        return;
    }
    l->internal = 1;
    if (to && strcmp(to, router_config->name)) {
        link_close_error(l, "host-unknown", "the router's name is different");
        return;
    }
    if (first) {
        l->state = LINK_AUTH;
    } else if (l->state == LINK_HEADER) {
        l->state = LINK_AUTH;
    }
    send_features(l);
}

/* --- authentication -------------------------------------------------------- */

static int lookup_keys(void *ctx, const char *authcid, scram_hash_t h, scram_keys_t *out)
{
    (void)ctx;
    const acl_t *a = router_acl_find(authcid);
    if (!a || a->xep0114 || h != SCRAM_SHA256)
        return -1;
    *out = a->keys;
    return 0;
}

static void sasl_fail(link_t *l, const char *condition)
{
    log_warn("event=auth-failed peer=%s condition=%s", l->peer, condition);
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_printf(&sb, "<failure xmlns='" NS_SASL "'><%s/></failure>", condition);
    send_sb(l, &sb);
    link_close_error(l, "not-authorized", "authentication failed");
}

static void sasl_reply(link_t *l, sasl_result_t r, strbuf_t *out)
{
    strbuf_t sb;
    strbuf_init(&sb);
    if (r == SASL_FAIL) {
        sasl_fail(l, sasl_server_condition(l->sasl));
        return;
    }
    const char *el = r == SASL_CONTINUE ? "challenge" : "success";
    strbuf_printf(&sb, "<%s xmlns='" NS_SASL "'>", el);
    base64_encode((const unsigned char *)out->data, out->len, &sb);
    strbuf_printf(&sb, "</%s>", el);
    send_sb(l, &sb);
    if (r == SASL_DONE) {
        const char *who = sasl_server_authcid(l->sasl);
        l->acl = router_acl_find(who);
        log_notice("event=authenticated component=%s peer=%s tls=%d mechanism=%s", who, l->peer, l->tls,
                   l->mech);
        sasl_server_free(l->sasl);
        l->sasl = NULL;
        l->state = LINK_SESSION;
        xml_scan_stream_restart(l->xs);
    }
}

static void handle_sasl(link_t *l, xml_node_t *st)
{
    int tls_needed = !l->local && router_config->tls_required_remote && !l->tls;
    if (tls_needed) {
        link_close_error(l, "policy-violation", "STARTTLS is required first");
        return;
    }
    strbuf_t in, out;
    strbuf_init(&in);
    strbuf_init(&out);
    if (!strcmp(st->name, "auth")) {
        const char *mech = xml_attr_get(st, "mechanism");
        if (l->sasl || !mech || (strcmp(mech, "SCRAM-SHA-256") && !(l->tls && !strcmp(mech, "SCRAM-SHA-256-PLUS")))) {
            sasl_fail(l, "invalid-mechanism");
            goto out;
        }
        unsigned char exporter[32], endpoint[TLS_CBIND_MAX];
        size_t endpoint_len = sizeof endpoint;
        sasl_cbind_t cb = {0};
        if (l->tls) {
            SSL *ssl = bufferevent_openssl_get_ssl(l->bev);
            if (tls_cbind_exporter(ssl, exporter) == 0) {
                cb.tls_exporter = exporter;
                cb.tls_exporter_len = 32;
            }
            if (tls_cbind_server_end_point(ssl, 1, endpoint, &endpoint_len) == 0) {
                cb.tls_server_end_point = endpoint;
                cb.tls_server_end_point_len = endpoint_len;
            }
        }
        l->sasl = sasl_server_new(mech, lookup_keys, NULL, l->tls ? &cb : NULL, l->tls);
        snprintf(l->mech, sizeof l->mech, "%s", mech);
        if (!l->sasl) {
            sasl_fail(l, "invalid-mechanism");
            goto out;
        }
    } else if (!strcmp(st->name, "response")) {
        if (!l->sasl) {
            link_close_error(l, "not-authorized", "response without auth");
            goto out;
        }
    } else if (!strcmp(st->name, "abort")) {
        sasl_fail(l, "aborted");
        goto out;
    } else {
        link_close_error(l, "not-authorized", "unexpected SASL element");
        goto out;
    }
    char *text = xml_text(st);
    int bad = base64_decode(text, strlen(text), &in) < 0;
    free(text);
    if (bad) {
        sasl_fail(l, "incorrect-encoding");
        goto out;
    }
    sasl_reply(l, sasl_server_step(l->sasl, in.data ? in.data : "", in.len, &out), &out);
out:
    strbuf_free(&in);
    strbuf_free(&out);
}

static void handle_starttls(link_t *l)
{
    if (!tls_ctx || l->tls) {
        strbuf_t sb;
        strbuf_init(&sb);
        strbuf_puts(&sb, "<failure xmlns='" NS_TLS "'/>");
        send_sb(l, &sb);
        link_close_error(l, "undefined-condition", "STARTTLS not available");
        return;
    }
    bufferevent_write(l->bev, "<proceed xmlns='" NS_TLS "'/>", strlen("<proceed xmlns='" NS_TLS "'/>"));
    xml_scan_stream_restart(l->xs);
    /* The TLS filter goes in once the parser has returned (link_read_cb). */
    l->starttls_pending = 1;
}

/* Puts TLS under the stream. Runs after the parser returned: the plain bytes
 * read so far (<starttls/> itself) are dropped, since a compliant peer sends
 * nothing more before <proceed/>. */
static void start_tls_now(link_t *l)
{
    l->starttls_pending = 0;
    struct evbuffer *plain_in = bufferevent_get_input(l->bev);
    evbuffer_drain(plain_in, evbuffer_get_length(plain_in));
    SSL *ssl = SSL_new(tls_ctx);
    struct bufferevent *tb = bufferevent_openssl_filter_new(base, l->bev, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                            BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!tb) {
        link_close_error(l, "internal-server-error", "TLS setup failed");
        return;
    }
    l->bev = tb;
    l->tls = 1;
    l->state = LINK_HEADER;
    bufferevent_setcb(tb, link_read_cb, link_write_cb, link_event_cb, l);
    bufferevent_setwatermark(tb, EV_WRITE, router_config->output_high / 2, 0);
    bufferevent_enable(tb, EV_READ | EV_WRITE);
}

static void handle_handshake(link_t *l, xml_node_t *st)
{
    char *digest = xml_text(st);
    unsigned char md[20];
    char hex[41];
    strbuf_t in;
    strbuf_init(&in);
    strbuf_puts(&in, l->stream_id);
    strbuf_puts(&in, l->acl->secret);
    EVP_Digest(in.data, in.len, md, NULL, EVP_sha1(), NULL);
    strbuf_free(&in);
    for (int i = 0; i < 20; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    for (char *p = digest; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p + 32);
    int ok = strlen(digest) == 40 && sasl_ct_equal(digest, hex, 40);
    free(digest);
    if (!ok) {
        log_warn("event=auth-failed protocol=xep0114 component=%s peer=%s", l->acl->name, l->peer);
        link_close_error(l, "not-authorized", "wrong secret");
        return;
    }
    link_send(l, "<handshake/>", 12);
    l->state = LINK_READY;
    l->origin = origin_anonymous(l);
    log_notice("event=authenticated protocol=xep0114 component=%s peer=%s", l->acl->name, l->peer);
    for (size_t i = 0; i < l->acl->nbinds; i++) {
        if (strchr(l->acl->binds[i], '*'))
            continue; /* a pattern is not a name */
        const char *err = names_bind(l, l->acl->binds[i], 0);
        if (err)
            log_warn("event=bind-failed component=%s name=%s condition=%s", l->acl->name, l->acl->binds[i], err);
    }
}

/* --- control elements ------------------------------------------------------ */

static void reply_bind(link_t *l, const char *el, const char *name, const char *cond)
{
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_printf(&sb, "<w:%s", el);
    if (name) {
        strbuf_puts(&sb, " name='");
        xml_escape(&sb, name, strlen(name), 1);
        strbuf_putc(&sb, '\'');
    } else {
        strbuf_puts(&sb, " default='true'");
    }
    if (cond)
        strbuf_printf(&sb, " condition='%s'", cond);
    strbuf_puts(&sb, "/>");
    send_sb(l, &sb);
}

/* <w:a h='N'/>, from the tree or straight from the scanner (on_raw). */
static void handle_ack(link_t *l, const char *h_attr)
{
    uint64_t h;
    if (comp_proto_parse_u64(h_attr, &h) < 0) {
        link_close_error(l, "bad-format", "ack without a valid h");
        return;
    }
    forward_ack(l, h);
}

static void handle_control(link_t *l, xml_node_t *st)
{
    const char *n = st->name;
    if (l->state == LINK_SESSION) {
        uint64_t next;
        const char *epoch = xml_attr_get(st, "epoch");
        if (strcmp(n, "session") || !epoch || strlen(epoch) < 8 || strlen(epoch) > 32 ||
            strspn(epoch, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(epoch) ||
            comp_proto_parse_u64(xml_attr_get(st, "next"), &next) < 0 || next == 0) {
            link_close_error(l, "bad-format", "expected <w:session epoch='...' next='N'/>");
            return;
        }
        l->origin = origin_attach(epoch, next, l);
        l->state = LINK_READY;
        /* It reads grouped deliveries of a fan-out (9.8). */
        const char *fan = xml_attr_get(st, "fan");
        l->fan_ok = fan && (!strcmp(fan, "1") || !strcmp(fan, "true"));
        /* The limits a component needs to size its fan-out elements (9.7). */
        char buf[200];
        int len = snprintf(buf, sizeof buf,
                           "<w:session acked='%llu' stanza-bytes='%zu' fanout-recipients='%ld' fanout-bytes='%zu'/>",
                           (unsigned long long)l->origin->done_upto, router_config->stanza_bytes,
                           router_config->fanout_recipients, router_config->fanout_bytes);
        link_send(l, buf, (size_t)len);
        names_announce_all(l);
        if (l->auth_timer) {
            event_free(l->auth_timer);
            l->auth_timer = NULL;
        }
        return;
    }
    if (!strcmp(n, "a")) {
        handle_ack(l, xml_attr_get(st, "h"));
    } else if (!strcmp(n, "fanout") && l->internal) {
        forward_fanout(l, st);
    } else if (!strcmp(n, "bind")) {
        /* Routing compares lower-cased domains: bind the same form. */
        for (xml_attr_t *a = st->attrs; a < st->attrs + st->nattrs; a++)
            if (!strcmp(a->name, "name"))
                for (char *p = a->value; *p; p++)
                    if (*p >= 'A' && *p <= 'Z')
                        *p = (char)(*p + 32);
        const char *name = xml_attr_get(st, "name");
        const char *def = xml_attr_get(st, "default");
        int is_default = def && (!strcmp(def, "true") || !strcmp(def, "1"));
        if (!is_default && (!name || !*name)) {
            link_close_error(l, "bad-format", "bind without a name");
            return;
        }
        /* The reply goes out before anything held for the name is flushed. */
        const char *err = names_bind_check(l, is_default ? "" : name, is_default);
        if (err)
            log_warn("event=bind-failed component=%s name=%s condition=%s", l->acl->name,
                     is_default ? "(default)" : name, err);
        reply_bind(l, err ? "bind-error" : "bound", is_default ? NULL : name, err);
        if (!err)
            names_bind(l, is_default ? "" : name, is_default);
    } else if (!strcmp(n, "unbind")) {
        const char *name = xml_attr_get(st, "name");
        const char *def = xml_attr_get(st, "default");
        int is_default = def && (!strcmp(def, "true") || !strcmp(def, "1"));
        if (!is_default && !name) {
            link_close_error(l, "bad-format", "unbind without a name");
            return;
        }
        names_unbind(l, is_default ? "" : name);
        reply_bind(l, "unbound", is_default ? NULL : name, NULL);
    } else if (!strcmp(n, "released")) {
        const char *name = xml_attr_get(st, "name");
        const char *inst = xml_attr_get(st, "instance");
        if (!name || !inst) {
            link_close_error(l, "bad-format", "released without name and instance");
            return;
        }
        takeover_released(l, name, inst);
    } else {
        link_close_error(l, "unsupported-stanza-type", n);
    }
}

/* --- parser callbacks -------------------------------------------------------- */

/* The acknowledgement <w:a/> (one every few dozen stanzas under load) is
 * taken raw too: on_raw reads its h without building a tree. */
static int is_ack(const char *ns, const char *name)
{
    return name[0] == 'a' && !name[1] && ns[0] == 'u' && !strcmp(ns, COMP_NS);
}

static int classify(void *ctx, const char *ns, const char *name, const char **attrs)
{
    (void)attrs;
    link_t *l = ctx;
    if (l->state != LINK_READY)
        return XS_TREE;
    /* Runs for every routed element: compare the first byte first. */
    if ((ns[0] == 'u' && !strcmp(ns, COMP_NS) && !is_ack(ns, name)) ||
        (ns[0] == 'h' && !strcmp(ns, XML_NS_STREAM)))
        return XS_TREE;
    return XS_RAW;
}

static void on_stanza(void *ctx, xml_node_t *st)
{
    link_t *l = ctx;
    if (l->state == LINK_CLOSING) {
        xml_free(st);
        return;
    }
    if (!strcmp(st->ns, XML_NS_STREAM)) {
        if (!strcmp(st->name, "error"))
            log_warn("event=peer-stream-error component=%s peer=%s", l->acl ? l->acl->name : "-", l->peer);
        link_close_error(l, "unsupported-stanza-type", "stream-level element");
    } else if (!l->internal && l->state != LINK_READY) {
        if (!strcmp(st->name, "handshake"))
            handle_handshake(l, st);
        else
            link_close_error(l, "not-authorized", "handshake expected");
    } else if (l->state == LINK_AUTH && !strcmp(st->ns, NS_TLS) && !strcmp(st->name, "starttls")) {
        handle_starttls(l);
    } else if (l->state == LINK_AUTH && !strcmp(st->ns, NS_SASL)) {
        handle_sasl(l, st);
    } else if ((l->state == LINK_SESSION || l->state == LINK_READY) && !strcmp(st->ns, COMP_NS)) {
        handle_control(l, st);
    } else if (l->state != LINK_READY) {
        link_close_error(l, "not-authorized", "authenticate first");
    } else {
        link_close_error(l, "unsupported-stanza-type", st->name);
    }
    xml_free(st);
}

static void on_raw(void *ctx, const char *ns, const char *name, const char **attrs,
                   const char *bytes, size_t len)
{
    link_t *l = ctx;
    if (l->state != LINK_READY)
        return;
    if (is_ack(ns, name)) {
        /* As xml_attr_get(, "h") on the tree: the unqualified h. */
        const char *h = NULL;
        for (size_t i = 0; attrs[i]; i += 2)
            if (attrs[i][0] == 'h' && !attrs[i][1])
                h = attrs[i + 1];
        handle_ack(l, h);
        return;
    }
    forward_raw(l, ns, name, attrs, bytes, len);
}

static void on_close(void *ctx)
{
    link_t *l = ctx;
    log_info("event=stream-closed component=%s peer=%s", l->acl ? l->acl->name : "-", l->peer);
    l->state = LINK_CLOSING;
    forward_flush(l);
    link_teardown(l);
    bufferevent_write(l->bev, "</stream:stream>", 16);
    bufferevent_disable(l->bev, EV_READ);
    bufferevent_setwatermark(l->bev, EV_WRITE, 0, 0);
}

static const xml_stream_cb_t parser_cb = {
    .on_open = on_open,
    .classify = classify,
    .on_stanza = on_stanza,
    .on_raw = on_raw,
    .on_close = on_close,
};

/* --- libevent callbacks ---------------------------------------------------- */

/* Parses what the bufferevent has read, one segment at a time so that a
 * pause (flow control) leaves the rest buffered. */
static void feed_input(link_t *l, struct bufferevent *bev)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    l->feeding = 1;
    while (l->bev == bev && l->state != LINK_CLOSING && (!l->paused || l->draining) && evbuffer_get_length(in)) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t n = v.iov_len;
        xs_err_t e = xml_scan_stream_feed(l->xs, v.iov_base, n);
        evbuffer_drain(in, n);
        if (l->starttls_pending && e == XS_OK) {
            start_tls_now(l);
            break;
        }
        if (e != XS_OK) {
            log_warn("event=bad-xml component=%s peer=%s detail=\"%s\"", l->acl ? l->acl->name : "-",
                     l->peer, xml_scan_stream_error_text(l->xs));
            link_close_error(l, xs_err_condition(e), NULL);
            break;
        }
    }
    l->feeding = 0;
}

/* libevent reads at most 4096 bytes per read event, so a busy link costs an
 * event loop turn, a FIONREAD and a readv per 20 stanzas. On plain sockets
 * the router reads on by itself, up to READ_CHUNK at a time and READ_BUDGET
 * per event (other links get their turn), into the same input buffer: a
 * pause leaves the unparsed rest there as before. End of file and errors are
 * left for libevent's next read to report. */
#define READ_CHUNK 65536
#define READ_BUDGET (4 * READ_CHUNK)

static void link_read_cb(struct bufferevent *bev, void *arg)
{
    link_t *l = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    feed_input(l, bev);
    evutil_socket_t fd = bufferevent_getfd(bev);
    for (size_t got = 0; got < READ_BUDGET && !l->tls && fd >= 0 && l->bev == bev &&
                         l->state != LINK_CLOSING && !l->paused && !evbuffer_get_length(in);) {
        ssize_t r = net_recv_more(in, fd, READ_CHUNK);
        if (r <= 0)
            break;
        got += (size_t)r;
        feed_input(l, bev);
    }
}

static void link_write_cb(struct bufferevent *bev, void *arg)
{
    link_t *l = arg;
    if (l->state == LINK_CLOSING) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            link_free(l);
        return;
    }
    if (l->nwaiters)
        forward_output_drained(l);
}

/* Most a lost link's leftovers are read: more than a socket buffer holds. */
#define DRAIN_MAX (64u << 20)

/* A component that died or closed its socket may have left whole elements
 * in our input buffer (unparsed while flow control paused the link) and in
 * the kernel's receive queue, which a reset does not empty: deliveries and
 * the acknowledgements behind them. They are read and handled, pauses
 * ignored, before the link goes; otherwise its stanzas would be lost or,
 * unacknowledged, handled a second time by its next instance. A partial
 * element at the end is dropped with the parser. */
static void link_drain(link_t *l)
{
    if (l->state != LINK_READY || l->starttls_pending)
        return;
    l->draining = 1;
    feed_input(l, l->bev);
    evutil_socket_t fd = bufferevent_getfd(l->bev);
    struct evbuffer *in = bufferevent_get_input(l->bev);
    for (size_t got = 0; got < DRAIN_MAX && !l->tls && fd >= 0 && l->state == LINK_READY;) {
        ssize_t r = net_recv_more(in, fd, READ_CHUNK);
        if (r <= 0)
            break;
        got += (size_t)r;
        feed_input(l, l->bev);
    }
    l->draining = 0;
}

static void link_event_cb(struct bufferevent *bev, short what, void *arg)
{
    link_t *l = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        size_t before = (size_t)l->c.stanzas_in;
        link_drain(l);
        if (l->c.stanzas_in != before)
            log_info("event=link-drained component=%s peer=%s stanzas=%zu", l->acl ? l->acl->name : "-",
                     l->peer, (size_t)l->c.stanzas_in - before);
        char reason[256];
        snprintf(reason, sizeof reason, "%s", (what & BEV_EVENT_EOF) ? "eof" : "error");
        unsigned long e;
        while (l->tls && (e = bufferevent_get_openssl_error(bev)))
            ERR_error_string_n(e, reason, sizeof reason);
        if (l->state != LINK_CLOSING)
            log_notice("event=link-lost component=%s peer=%s reason=\"%s\"", l->acl ? l->acl->name : "-",
                       l->peer, reason);
        link_free(l);
    }
}

static void accept_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    (void)lis;
    (void)arg;
    net_tune_accepted(fd, sa);
    link_t *l = xcalloc(1, sizeof *l);
    l->id = ++next_link_id;
    l->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    net_addr_format(sa, (socklen_t)salen, l->peer, sizeof l->peer);
    l->local = net_addr_is_local(sa);
    l->state = LINK_HEADER;
    l->xs = xml_scan_stream_new(&parser_cb, l, &limits);
    l->next = links;
    links = l;
    nlinks++;
    bufferevent_setcb(l->bev, link_read_cb, link_write_cb, link_event_cb, l);
    bufferevent_setwatermark(l->bev, EV_WRITE, router_config->output_high / 2, 0);
    bufferevent_enable(l->bev, EV_READ | EV_WRITE);
    l->auth_timer = evtimer_new(base, auth_timeout_cb, l);
    struct timeval tv = {(time_t)router_config->auth_timeout, (suseconds_t)((router_config->auth_timeout - (long)router_config->auth_timeout) * 1e6)};
    evtimer_add(l->auth_timer, &tv);
    log_debug("event=accept peer=%s", l->peer);
}

static void accept_error_cb(struct evconnlistener *lis, void *arg)
{
    (void)lis;
    (void)arg;
    log_error("event=accept-failed reason=\"%s\"", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

/* Opens every address of list (TCP host:port, or with is_unix UNIX socket
 * paths), separated by spaces, into the router's listener set. 0 / -1
 * (logged by listen_set_open, naming the address). */
static int listen_list(const char *list, int is_unix)
{
    strbuf_t spec;
    strbuf_init(&spec);
    char *copy = xstrdup(list), *save = NULL;
    for (char *tok = strtok_r(copy, LISTEN_SEPARATORS, &save); tok; tok = strtok_r(NULL, LISTEN_SEPARATORS, &save))
        strbuf_printf(&spec, "%s%s ", is_unix ? "unix:" : "", tok);
    size_t first = listeners.n;
    int rc = spec.len ? listen_set_open(&listeners, base, spec.data, 5347, accept_cb, NULL,
                                        tls_ctx ? "starttls" : "none") : 0;
    for (size_t i = first; i < listeners.n; i++) {
        evconnlistener_set_error_cb(listeners.listeners[i], accept_error_cb);
        /* Components of the same group (e.g. user weft) may use a socket. */
        struct sockaddr_un sun = {0};
        socklen_t len = sizeof sun - 1;   /* keeps sun_path NUL-terminated */
        if (is_unix && getsockname(evconnlistener_get_fd(listeners.listeners[i]), (struct sockaddr *)&sun, &len) == 0)
            chmod(sun.sun_path, 0660);
    }
    free(copy);
    strbuf_free(&spec);
    return rc;
}

/* (Re)creates the TLS context from the configured files; connections already
 * up keep the context they started with. */
int link_load_tls(void)
{
    if (!*router_config->tls_cert)
        return 0;
    char err[256];
    SSL_CTX *ctx = tls_server_ctx_new(router_config->tls_cert,
                                      *router_config->tls_key ? router_config->tls_key : router_config->tls_cert,
                                      NULL, TLS_CLIENT_CERT_NONE, err, sizeof err);
    if (!ctx) {
        log_error("event=tls-failed certificate=%s reason=\"%s\"", router_config->tls_cert, err);
        return -1;
    }
    if (tls_ctx)
        SSL_CTX_free(tls_ctx);
    tls_ctx = ctx;
    return 0;
}

int link_start(struct event_base *b, router_cfg_t *c)
{
    base = b;
    xml_limits_default(&limits);
    limits.max_stanza_bytes = c->stanza_bytes;
    limits.max_depth = (unsigned)c->depth;
    limits.max_attrs = (unsigned)c->attrs;
    if (link_load_tls() < 0)
        return -1;
    if (listen_list(c->listen, 0) < 0 || listen_list(c->listen_unix, 1) < 0)
        return -1;
    return 0;
}

/* Graceful stop: every component is told the router is going (system-shutdown)
 * so it reconnects with backoff instead of treating it as an error. */
void link_stop_all(void)
{
    listen_set_close(&listeners);
    for (link_t *l = links; l; l = l->next)
        link_close_error(l, "system-shutdown", NULL);
}

void link_free_all(void)
{
    listen_set_close(&listeners);   /* after a failed start, what did open */
    while (links)
        link_free(links);
    if (tls_ctx)
        SSL_CTX_free(tls_ctx);
    tls_ctx = NULL;
}
