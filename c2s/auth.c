/* auth: SASL for clients (RFC 6120 §6) on top of common/sasl.h.
 *
 * Mechanisms: SCRAM-SHA-256(-PLUS), SCRAM-SHA-1(-PLUS), PLAIN over TLS only.
 * c2s holds no credentials: when the client's first SASL message arrives, the
 * username is read out of it, the stream pauses (CL_AUTH_WAIT) and an authreg
 * get asks the sm that owns the user for its SCRAM keys; the answer (or a
 * timeout: temporary-auth-failure) resumes the exchange with a lookup callback
 * that hands those keys to the SASL server. An unknown user gets no keys and
 * the SASL layer's dummy exchange ends in not-authorized, so existence does
 * not leak. Every failure is logged with the peer address (fail2ban) and
 * counted per IP (limits.c). XEP-0078 passwords (iqauth.c) run through the
 * same PLAIN check with c->legacy set: outcomes then go back to iqauth.c
 * instead of becoming SASL elements. */
#include "c2s.h"
#include "base64.h"
#include "comp_proto.h"
#include "log.h"
#include "tls.h"
#include <event2/bufferevent_ssl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Offered in this order: strongest first, -PLUS only where binding data exist. */
static const char *const auth_mechs[] = {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256",
                                         "SCRAM-SHA-1", "PLAIN"};

struct auth_cbind {
    unsigned char exporter[32], endpoint[TLS_CBIND_MAX], unique[TLS_CBIND_MAX];
    sasl_cbind_t cb;
};
typedef struct auth_cbind auth_cbind_t;

/* Channel binding data of c's TLS session; 1 if there is any. After the
 * record takeover (client.c) the SSL is gone and what auth_cbind_keep saved
 * serves; its pointers are aimed at a's own arrays here. */
static int auth_cbind_get(client_t *c, auth_cbind_t *a)
{
    memset(a, 0, sizeof *a);
    if (!c->tls || !c->bev)
        return 0;
    if (c->cbind) {
        *a = *c->cbind;
        if (a->cb.tls_exporter)
            a->cb.tls_exporter = a->exporter;
        if (a->cb.tls_server_end_point)
            a->cb.tls_server_end_point = a->endpoint;
        if (a->cb.tls_unique)
            a->cb.tls_unique = a->unique;
        return a->cb.tls_exporter || a->cb.tls_server_end_point;
    }
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    if (!ssl)
        return 0;
    if (tls_cbind_exporter(ssl, a->exporter) == 0) {
        a->cb.tls_exporter = a->exporter;
        a->cb.tls_exporter_len = 32;
    }
    size_t len = sizeof a->endpoint;
    if (tls_cbind_server_end_point(ssl, 1, a->endpoint, &len) == 0) {
        a->cb.tls_server_end_point = a->endpoint;
        a->cb.tls_server_end_point_len = len;
    }
    len = sizeof a->unique;
    if (tls_cbind_unique(ssl, 1, a->unique, &len) == 0) {
        a->cb.tls_unique = a->unique;
        a->cb.tls_unique_len = len;
    }
    return a->cb.tls_exporter || a->cb.tls_server_end_point;
}

/* Held only while an exchange runs: 300 bytes per connection otherwise. */
struct auth_keys {
    int have_256, have_1;
    int disabled;              /* an admin disabled the account (sm authreg get) */
    scram_keys_t k256, k1;
};

void auth_keys_drop(client_t *c)
{
    if (c->keys) {
        OPENSSL_cleanse(c->keys, sizeof *c->keys);
        free(c->keys);
        c->keys = NULL;
    }
}

void auth_cbind_keep(client_t *c)
{
    if (c->authed || c->cbind)
        return;
    auth_cbind_t *k = xmalloc(sizeof *k);
    auth_cbind_get(c, k);
    c->cbind = k;
}

void auth_cbind_drop(client_t *c)
{
    if (c->cbind) {
        OPENSSL_cleanse(c->cbind, sizeof *c->cbind);
        free(c->cbind);
        c->cbind = NULL;
    }
}

/* Calls fn on each word of a space-separated list until it returns non-zero. */
static const char *auth_mechs_each(const char *list, int (*fn)(const char *w, size_t n, const void *arg),
                                   const void *arg, size_t *len)
{
    for (const char *p = list ? list : ""; *p;) {
        p += strspn(p, " \t\n,");
        size_t n = strcspn(p, " \t\n,");
        if (n && fn(p, n, arg)) {
            if (len)
                *len = n;
            return p;
        }
        p += n;
    }
    return NULL;
}

static int auth_word_is(const char *w, size_t n, const void *mech)
{
    return strlen(mech) == n && !strncasecmp(w, mech, n);
}

static int auth_word_unknown(const char *w, size_t n, const void *arg)
{
    (void)arg;
    for (size_t i = 0; i < sizeof auth_mechs / sizeof auth_mechs[0]; i++)
        if (auth_word_is(w, n, auth_mechs[i]))
            return 0;
    return 1;
}

const char *auth_mechs_unknown(const char *list, size_t *len)
{
    return auth_mechs_each(list, auth_word_unknown, NULL, len);
}

static int auth_mech_offered(client_t *c, const char *mech, int have_cbind)
{
    const char *allowed = c2s_config->auth_mechs;
    if (allowed && *allowed && !auth_mechs_each(allowed, auth_word_is, mech, NULL))
        return 0;
    if (!strcmp(mech, "PLAIN"))
        return c->secure;
    if (strstr(mech, "-PLUS"))
        return have_cbind;
    return !strcmp(mech, "SCRAM-SHA-256") || !strcmp(mech, "SCRAM-SHA-1");
}

void auth_features(client_t *c, strbuf_t *out)
{
    auth_cbind_t a;
    int have_cbind = auth_cbind_get(c, &a);
    strbuf_puts(out, "<mechanisms xmlns='" NS_SASL "'>");
    for (size_t i = 0; i < sizeof auth_mechs / sizeof auth_mechs[0]; i++)
        if (auth_mech_offered(c, auth_mechs[i], have_cbind))
            strbuf_printf(out, "<mechanism>%s</mechanism>", auth_mechs[i]);
    strbuf_puts(out, "</mechanisms>");
    /* XEP-0440: which channel-binding types -PLUS may use here. */
    if (have_cbind) {
        strbuf_puts(out, "<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>");
        if (a.cb.tls_exporter)
            strbuf_puts(out, "<channel-binding type='tls-exporter'/>");
        if (a.cb.tls_server_end_point)
            strbuf_puts(out, "<channel-binding type='tls-server-end-point'/>");
        if (a.cb.tls_unique)
            strbuf_puts(out, "<channel-binding type='tls-unique'/>");
        strbuf_puts(out, "</sasl-channel-binding>");
    }
}

static void auth_reset(client_t *c)
{
    sasl_server_free(c->sasl);
    c->sasl = NULL;
    c->mech[0] = '\0';
    c->awaiting_initial = 0;
    strbuf_free(&c->sasl_pending);
    auth_keys_drop(c);
    free(c->node);
    c->node = NULL;
    if (c->state == CL_AUTH_WAIT)
        c->state = CL_OPEN;
    if (c->req_kind == REQ_AUTH) {
        c->req_kind = REQ_NONE;
        c->wait_until = 0;
    }
}

static void auth_send(client_t *c, const char *el, const strbuf_t *data)
{
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_printf(&sb, "<%s xmlns='" NS_SASL "'>", el);
    if (data && data->len)
        base64_encode((const unsigned char *)data->data, data->len, &sb);
    strbuf_printf(&sb, "</%s>", el);
    client_write(c, sb.data, sb.len);
    strbuf_free(&sb);
}

/* The mechanism the SASL layer runs: XEP-0078 is PLAIN under another name. */
static const char *auth_sasl_mech(const client_t *c)
{
    return c->legacy ? "PLAIN" : c->mech;
}

static void auth_fail(client_t *c, const char *condition)
{
    if (c->legacy) {
        iqauth_failed(c, condition);
    } else {
        strbuf_t sb;
        strbuf_init(&sb);
        strbuf_printf(&sb, "<failure xmlns='" NS_SASL "'><%s/></failure>", condition);
        client_write(c, sb.data, sb.len);
        strbuf_free(&sb);
    }
    int counts = strcmp(condition, "aborted") && strcmp(condition, "temporary-auth-failure");
    if (counts) {
        log_notice("event=auth-failed peer=%s ip=%s user=%s mechanism=%s condition=%s", c->peer, c->ip,
                   c->node ? c->node : "-", c->mech[0] ? c->mech : "-", condition);
        c2s_metrics_login(c->mech, 0);
        limits_auth_failed(c->ip);
        c->auth_failures++;
    }
    auth_reset(c);
    if (counts && c->auth_failures >= (unsigned)c2s_config->auth_fail_conn)
        client_stream_error(c, "policy-violation", "too many authentication failures");
}

/* sasl_lookup_fn: the keys the sm gave us, for the user we asked about only. */
static int auth_lookup(void *ctx, const char *authcid, scram_hash_t h, scram_keys_t *out)
{
    client_t *c = ctx;
    if (!c->node)
        return -1;
    char *node = jid_prep_node(authcid);
    int same = node && !strcmp(node, c->node);
    free(node);
    if (!same)
        return -1;
    if (c->keys && h == SCRAM_SHA256 && c->keys->have_256) {
        *out = c->keys->k256;
        return 0;
    }
    if (c->keys && h == SCRAM_SHA1 && c->keys->have_1) {
        *out = c->keys->k1;
        return 0;
    }
    return -1;
}

/* The username of a client's first message, unescaped (SCRAM "=2C"/"=3D"),
 * or NULL when it cannot be found (the SASL layer then reports the precise
 * condition). Caller frees. */
static char *auth_username(const char *mech, const char *msg, size_t len)
{
    if (!strcmp(mech, "PLAIN")) {
        const char *z = memchr(msg, '\0', len);
        if (!z)
            return NULL;
        const char *u = z + 1;
        const char *e = memchr(u, '\0', len - (size_t)(u - msg));
        return e ? xstrndup(u, (size_t)(e - u)) : NULL;
    }
    /* gs2-header "cbflag,[a=authzid]," then "n=user,r=nonce" */
    const char *p = memchr(msg, ',', len);
    if (!p)
        return NULL;
    p = memchr(p + 1, ',', len - (size_t)(p + 1 - msg));
    if (!p || (size_t)(p + 3 - msg) > len || strncmp(p + 1, "n=", 2))
        return NULL;
    const char *u = p + 3;
    const char *e = memchr(u, ',', len - (size_t)(u - msg));
    if (!e)
        return NULL;
    strbuf_t sb;
    strbuf_init(&sb);
    for (const char *q = u; q < e; q++) {
        if (*q == '=' && e - q >= 3 && !strncmp(q, "=2C", 3)) {
            strbuf_putc(&sb, ',');
            q += 2;
        } else if (*q == '=' && e - q >= 3 && !strncmp(q, "=3D", 3)) {
            strbuf_putc(&sb, '=');
            q += 2;
        } else {
            strbuf_putc(&sb, *q);
        }
    }
    if (!sb.data)
        strbuf_puts(&sb, "");
    return strbuf_steal(&sb);
}

/* Accepts an authzid naming the user itself: its bare JID or its username. */
static int auth_authzid_ok(client_t *c, const char *authzid)
{
    if (!authzid || !*authzid)
        return 1;
    jid_t z;
    if (jid_parse(authzid, &z) != JID_OK)
        return 0;
    int ok = (!z.resource && jid_bare_equal(&z, &c->jid)) || (!z.node && !z.resource && !strcmp(z.domain, c->node));
    jid_clear(&z);
    return ok;
}

static void auth_result(client_t *c, sasl_result_t rc, strbuf_t *out)
{
    if (rc == SASL_CONTINUE) {
        auth_send(c, "challenge", out);
        return;
    }
    if (rc == SASL_FAIL) {
        auth_fail(c, sasl_server_condition(c->sasl));
        return;
    }
    jid_t bare;
    if (!c->node || jid_build(c->node, c2s_config->domain, NULL, &bare) != JID_OK) {
        auth_fail(c, "not-authorized");
        return;
    }
    jid_clear(&c->jid);
    c->jid = bare;
    if (!auth_authzid_ok(c, sasl_server_authzid(c->sasl))) {
        jid_clear(&c->jid);
        auth_fail(c, "invalid-authzid");
        return;
    }
    /* Only a client that proved the password learns that the account is
     * disabled (XEP-0133 disable-user); anyone else got not-authorized. */
    if (c->keys && c->keys->disabled) {
        jid_clear(&c->jid);
        auth_fail(c, "account-disabled");
        return;
    }
    if (!c->legacy)
        auth_send(c, "success", out);
    log_notice("event=authenticated peer=%s user=%s mechanism=%s tls=%d", c->peer, c->jid.bare, c->mech, c->tls);
    c2s_metrics_login(c->mech, 1);
    char mech[sizeof c->mech];
    memcpy(mech, c->mech, sizeof mech);
    char *node = c->node;
    c->node = NULL;
    auth_reset(c);
    c->node = node;
    memcpy(c->mech, mech, sizeof mech);
    c->authed = 1;
    c->state = CL_AUTHED;
    auth_cbind_drop(c);
    if (c->legacy)
        iqauth_done(c);      /* no stream restart in XEP-0078: bind now */
    else
        client_restart_stream(c);
}

/* Runs the SASL server on the held first message once the keys are known. */
static void auth_run(client_t *c)
{
    auth_cbind_t a;
    int have_cbind = auth_cbind_get(c, &a);
    c->sasl = sasl_server_new(auth_sasl_mech(c), auth_lookup, c, c->tls ? &a.cb : NULL, have_cbind);
    if (!c->sasl) {
        auth_fail(c, "invalid-mechanism");
        return;
    }
    strbuf_t out;
    strbuf_init(&out);
    sasl_result_t rc = sasl_server_step(c->sasl, c->sasl_pending.data ? c->sasl_pending.data : "",
                                        c->sasl_pending.len, &out);
    OPENSSL_cleanse(c->sasl_pending.data, c->sasl_pending.len);
    strbuf_reset(&c->sasl_pending);
    auth_result(c, rc, &out);
    strbuf_free(&out);
}

/* First message in hand: find the user and ask the sm for the keys. */
static void auth_begin(client_t *c, const char *msg, size_t len)
{
    strbuf_reset(&c->sasl_pending);
    strbuf_append(&c->sasl_pending, msg, len);
    c->awaiting_initial = 0;
    char *user = auth_username(auth_sasl_mech(c), msg, len);
    char *prepped = user ? sasl_saslprep(user, 1) : NULL;
    free(c->node);
    c->node = prepped ? jid_prep_node(prepped) : NULL;
    free(user);
    free(prepped);
    if (!c->node) {
        auth_run(c);
        return;
    }
    xml_node_t *req = xml_elem_new(NS_WEFT_AUTHREG, "authreg");
    xml_attr_set(req, "type", "get");
    strbuf_t bare;
    strbuf_init(&bare);
    strbuf_printf(&bare, "%s@%s", c->node, c2s_config->domain);
    xml_attr_set(req, "user", bare.data);
    strbuf_free(&bare);
    int rc = sm_link_authreg(c, req, REQ_AUTH);
    xml_free(req);
    if (rc < 0) {
        auth_fail(c, "temporary-auth-failure");
        return;
    }
    c->state = CL_AUTH_WAIT;
}

void auth_legacy_begin(client_t *c, const char *msg, size_t len)
{
    auth_reset(c);
    snprintf(c->mech, sizeof c->mech, "iq-auth");
    auth_begin(c, msg, len);
}

void auth_authreg_answer(client_t *c, xml_node_t *ans)
{
    if (c->state != CL_AUTH_WAIT)
        return;
    c->req_kind = REQ_NONE;
    c->wait_until = 0;
    c->state = CL_OPEN;
    const char *type = ans ? xml_attr_get(ans, "type") : NULL;
    if (!ans) {
        log_warn("event=authreg-timeout peer=%s user=%s", c->peer, c->node);
        auth_fail(c, "temporary-auth-failure");
        return;
    }
    if (type && !strcmp(type, "result")) {
        const char *k256 = xml_attr_get(ans, "sha256"), *k1 = xml_attr_get(ans, "sha1");
        auth_keys_drop(c);
        c->keys = xcalloc(1, sizeof *c->keys);
        c->keys->have_256 = k256 && scram_keys_parse(k256, &c->keys->k256) == 0 &&
                            c->keys->k256.hash == SCRAM_SHA256;
        c->keys->have_1 = k1 && scram_keys_parse(k1, &c->keys->k1) == 0 && c->keys->k1.hash == SCRAM_SHA1;
        const char *dis = xml_attr_get(ans, "disabled");
        c->keys->disabled = dis && !strcmp(dis, "true");
    } else {
        const char *cond = ans ? xml_attr_get(ans, "condition") : NULL;
        if (!cond || strcmp(cond, "item-not-found")) {
            log_warn("event=authreg-error peer=%s user=%s condition=%s", c->peer, c->node, cond ? cond : "-");
            auth_fail(c, "temporary-auth-failure");
            return;
        }
    }
    auth_run(c);
}

void auth_handle(client_t *c, xml_node_t *el)
{
    if (!strcmp(el->name, "abort")) {
        auth_fail(c, "aborted");
        return;
    }
    if (c->state == CL_AUTH_WAIT) {
        client_stream_error(c, "policy-violation", "SASL element out of order");
        return;
    }
    strbuf_t in;
    strbuf_init(&in);
    char *text = xml_text(el);
    int empty = !*text;
    int bad = !empty && base64_decode(text, strlen(text), &in) < 0;
    free(text);
    if (!strcmp(el->name, "auth")) {
        if (limits_auth_blocked(c->ip)) {
            log_notice("event=auth-refused peer=%s ip=%s reason=too-many-failures", c->peer, c->ip);
            client_stream_error(c, "policy-violation", "too many authentication failures");
            goto out;
        }
        auth_reset(c);
        const char *mech = xml_attr_get(el, "mechanism");
        auth_cbind_t a;
        int have_cbind = auth_cbind_get(c, &a);
        snprintf(c->mech, sizeof c->mech, "%s", mech && strlen(mech) < sizeof c->mech ? mech : "?");
        if (mech && !strcmp(mech, "PLAIN") && !c->secure)
            auth_fail(c, "encryption-required");
        else if (!mech || !auth_mech_offered(c, mech, have_cbind))
            auth_fail(c, "invalid-mechanism");
        else if (bad)
            auth_fail(c, "incorrect-encoding");
        else if (empty) {
            /* No initial response: an empty challenge asks for it. */
            c->awaiting_initial = 1;
            client_write(c, "<challenge xmlns='" NS_SASL "'/>", strlen("<challenge xmlns='" NS_SASL "'/>"));
        } else
            auth_begin(c, in.data ? in.data : "", in.len);
    } else if (!strcmp(el->name, "response")) {
        if (bad)
            auth_fail(c, "incorrect-encoding");
        else if (c->awaiting_initial)
            auth_begin(c, in.data ? in.data : "", in.len);
        else if (c->sasl) {
            strbuf_t out;
            strbuf_init(&out);
            sasl_result_t rc = sasl_server_step(c->sasl, in.data ? in.data : "", in.len, &out);
            auth_result(c, rc, &out);
            strbuf_free(&out);
        } else
            auth_fail(c, "malformed-request");
    } else {
        client_stream_error(c, "policy-violation", "unexpected SASL element");
    }
out:
    if (in.data)
        OPENSSL_cleanse(in.data, in.len);
    strbuf_free(&in);
}
