/* iqauth: XEP-0078 non-SASL authentication (jabber:iq:auth) for clients that
 * predate SASL, off unless auth.legacy is on.
 *
 * Only the plaintext password method is offered, and only over TLS: we hold
 * SCRAM keys, not passwords, so the digest method (SHA-1 of stream id and
 * password) cannot be checked. The password goes through exactly the path of
 * SASL PLAIN: iqauth builds a PLAIN message (empty authzid, username,
 * password) and auth.c asks the sm for the user's keys and runs the PLAIN
 * mechanism on it, with the same logging and per-IP failure accounting. On
 * success the stream is not restarted (XEP-0078 has no restart): the resource
 * is bound at once through bind.c, and the iq result goes out when the sm has
 * started the session.
 *
 * State while it runs: c->legacy is set, c->legacy_res holds the prepared
 * resource and c->bind_iq_id the client's iq id; iqauth_failed and
 * iqauth_session_answer clear them. */
#include "c2s.h"
#include "comp_proto.h"
#include "log.h"
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

int iqauth_is_auth_iq(const xml_node_t *iq)
{
    return !strcmp(iq->name, "iq") && xml_child(iq, NS_IQAUTH, "query") != NULL;
}

/* XEP-0078 examples carry the legacy numeric codes; old clients read them. */
static void iqauth_error(client_t *c, const char *id, const char *condition)
{
    static const struct {
        const char *cond, *type, *code;
    } map[] = {
        {"not-authorized", "auth", "401"},     {"not-acceptable", "modify", "406"},
        {"service-unavailable", "cancel", "503"}, {"policy-violation", "modify", "406"},
        {"resource-constraint", "wait", "500"},   {"internal-server-error", "wait", "500"},
    };
    size_t i = 0;
    while (i + 1 < sizeof map / sizeof map[0] && strcmp(map[i].cond, condition))
        i++;
    if (strcmp(map[i].cond, condition))
        log_panic("event=iqauth-error reason=unmapped-condition condition=%s", condition);
    xml_node_t *iq = xml_elem_new(NS_CLIENT, "iq");
    xml_attr_set(iq, "type", "error");
    xml_attr_set(iq, "id", id);
    xml_node_t *err = xml_add_child(iq, NS_CLIENT, "error");
    xml_attr_set(err, "code", map[i].code);
    xml_attr_set(err, "type", map[i].type);
    xml_add_child(err, NS_STANZAS, condition);
    client_write_own_stanza(c, iq);
    xml_free(iq);
}

static char *iqauth_field(const xml_node_t *q, const char *name)
{
    xml_node_t *f = xml_child(q, NS_IQAUTH, name);
    return f ? xml_text(f) : NULL;
}

/* Forgets the running XEP-0078 attempt. */
static void iqauth_clear(client_t *c)
{
    c->legacy = 0;
    free(c->legacy_res);
    c->legacy_res = NULL;
    free(c->bind_iq_id);
    c->bind_iq_id = NULL;
}

static void iqauth_get(client_t *c, const xml_node_t *iq, const xml_node_t *q)
{
    xml_node_t *r = xml_elem_new(NS_CLIENT, "iq");
    xml_attr_set(r, "type", "result");
    xml_attr_set(r, "id", xml_attr_get(iq, "id"));
    xml_node_t *rq = xml_add_child(r, NS_IQAUTH, "query");
    xml_node_t *u = xml_add_child(rq, NS_IQAUTH, "username");
    char *user = iqauth_field(q, "username");
    if (user && *user)
        xml_add_text(u, user, strlen(user));
    free(user);
    xml_add_child(rq, NS_IQAUTH, "password");
    xml_add_child(rq, NS_IQAUTH, "resource");
    client_write_own_stanza(c, r);
    xml_free(r);
}

static void iqauth_set(client_t *c, const xml_node_t *iq, const xml_node_t *q)
{
    const char *id = xml_attr_get(iq, "id");
    char *user = iqauth_field(q, "username");
    char *pass = iqauth_field(q, "password");
    char *res_raw = iqauth_field(q, "resource");
    char *res = res_raw && *res_raw ? jid_prep_resource(res_raw) : NULL;
    if (!user || !*user || !pass || !*pass || !res_raw || !*res_raw) {
        /* A digest alone is "missing the password": we offer no digest. */
        iqauth_error(c, id, "not-acceptable");
    } else if (!res) {
        log_info("event=bind-refused peer=%s reason=resourceprep method=iq-auth", c->peer);
        iqauth_error(c, id, "not-acceptable");
    } else if (limits_auth_blocked(c->ip)) {
        log_notice("event=auth-refused peer=%s ip=%s reason=too-many-failures", c->peer, c->ip);
        client_stream_error(c, "policy-violation", "too many authentication failures");
    } else {
        /* authzid NUL authcid NUL password, as a SASL PLAIN client sends it. */
        strbuf_t msg;
        strbuf_init(&msg);
        strbuf_putc(&msg, '\0');
        strbuf_append(&msg, user, strlen(user));
        strbuf_putc(&msg, '\0');
        strbuf_append(&msg, pass, strlen(pass));
        iqauth_clear(c);
        c->legacy = 1;
        c->legacy_res = res;
        res = NULL;
        c->bind_iq_id = xstrdup(id);
        auth_legacy_begin(c, msg.data, msg.len);
        OPENSSL_cleanse(msg.data, msg.len);
        strbuf_free(&msg);
    }
    if (pass)
        OPENSSL_cleanse(pass, strlen(pass));
    free(user);
    free(pass);
    free(res_raw);
    free(res);
}

/* Before authentication (client.c sends every jabber:iq:auth iq here). */
void iqauth_handle(client_t *c, xml_node_t *iq)
{
    const char *type = xml_attr_get(iq, "type");
    const char *id = xml_attr_get(iq, "id");
    if (!id || !type || (strcmp(type, "get") && strcmp(type, "set"))) {
        client_stanza_error(c, iq, "bad-request", "modify");
        return;
    }
    if (!c2s_config->legacy_auth) {
        iqauth_error(c, id, "service-unavailable");
        return;
    }
    if (!c->secure) {
        /* The password would cross the network in clear. */
        log_notice("event=auth-refused peer=%s ip=%s reason=iq-auth-without-tls", c->peer, c->ip);
        iqauth_error(c, id, "policy-violation");
        return;
    }
    if (c->state != CL_OPEN || c->legacy || c->req_kind != REQ_NONE) {
        iqauth_error(c, id, "resource-constraint");
        return;
    }
    xml_node_t *q = xml_child(iq, NS_IQAUTH, "query");
    if (!strcmp(type, "get"))
        iqauth_get(c, iq, q);
    else
        iqauth_set(c, iq, q);
}

void iqauth_failed(client_t *c, const char *condition)
{
    const char *cond = "not-authorized";
    if (!strcmp(condition, "malformed-request") || !strcmp(condition, "incorrect-encoding"))
        cond = "not-acceptable";
    else if (!strcmp(condition, "temporary-auth-failure"))
        cond = "internal-server-error";
    iqauth_error(c, c->bind_iq_id ? c->bind_iq_id : "", cond);
    iqauth_clear(c);
}

/* Goes back to an unauthenticated stream: the client may try again. */
static void iqauth_unauth(client_t *c)
{
    c->authed = 0;
    c->state = CL_OPEN;
    c->wait_until = 0;
    jid_clear(&c->jid);
    free(c->node);
    c->node = NULL;
}

void iqauth_done(client_t *c)
{
    int rc = bind_session_start(c, c->bind_iq_id, c->legacy_res);
    if (rc < 0) {
        iqauth_error(c, c->bind_iq_id, rc == -1 ? "not-acceptable" : "resource-constraint");
        iqauth_clear(c);
        iqauth_unauth(c);
    }
}

void iqauth_session_answer(client_t *c, xml_node_t *el)
{
    const char *type = el ? xml_attr_get(el, "type") : NULL;
    if (type && !strcmp(type, "started")) {
        c->state = CL_SESSION;
        c->wait_until = 0;
        xml_node_t *iq = xml_elem_new(NS_CLIENT, "iq");
        xml_attr_set(iq, "type", "result");
        xml_attr_set(iq, "id", c->bind_iq_id);
        client_write_own_stanza(c, iq);
        xml_free(iq);
        log_notice("event=session-start peer=%s sid=%s jid=%s method=iq-auth", c->peer, c->sid_str, c->jid.full);
        iqauth_clear(c);
        return;
    }
    const char *reason = el ? xml_attr_get(el, "reason") : NULL;
    log_warn("event=bind-failed peer=%s jid=%s reason=%s method=iq-auth", c->peer,
             c->jid.full ? c->jid.full : "-", el ? (reason ? reason : "-") : "sm-timeout");
    /* A late 'started' must not leave a session the client does not know. */
    if (!el && c->state == CL_BINDING)
        sm_link_session(c, "end", 0);
    iqauth_error(c, c->bind_iq_id ? c->bind_iq_id : "",
                 reason && !strcmp(reason, "resource-constraint") ? "resource-constraint" : "internal-server-error");
    iqauth_clear(c);
    iqauth_unauth(c);
}
