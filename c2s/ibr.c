/* ibr: in-band registration (XEP-0077) — account creation before
 * authentication (when register.enabled, over TLS when tls.required, and at
 * most register.per-ip accounts per IP per window), and after authentication
 * password change and account removal.
 *
 * Passwords never leave c2s: they are SASLprep'd and turned into SCRAM-SHA-256
 * and SCRAM-SHA-1 keys here, and only the keys go to the sm in an authreg
 * request. The client's iq waits for the sm's answer (c->req_iq_id). The key
 * derivation (PBKDF2, register.scram-iterations) runs on the event loop: at
 * the default 4096 iterations it costs about a millisecond. */
#include "c2s.h"
#include "comp_proto.h"
#include "log.h"
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

int ibr_is_register_iq(const xml_node_t *iq)
{
    if (strcmp(iq->name, "iq") || !xml_child(iq, NS_REGISTER, "query"))
        return 0;
    /* After auth, only requests to the server itself are ours; others go on. */
    const char *to = xml_attr_get(iq, "to");
    if (!to)
        return 1;
    char *dom = jid_prep_domain(to);
    int ours = dom && !strcmp(dom, c2s_config->domain);
    free(dom);
    return ours;
}

static void ibr_reply(client_t *c, const char *id, const char *condition, const char *etype, xml_node_t *payload)
{
    xml_node_t *iq = xml_elem_new(NS_CLIENT, "iq");
    xml_attr_set(iq, "type", condition ? "error" : "result");
    xml_attr_set(iq, "id", id);
    if (payload)
        xml_append(iq, payload);
    if (condition) {
        xml_node_t *err = xml_add_child(iq, NS_CLIENT, "error");
        xml_attr_set(err, "type", etype);
        xml_add_child(err, NS_STANZAS, condition);
    }
    client_write_own_stanza(c, iq);
    xml_free(iq);
}

static char *ibr_field(const xml_node_t *q, const char *name)
{
    xml_node_t *f = xml_child(q, NS_REGISTER, name);
    return f ? xml_text(f) : NULL;
}

/* Fills req's sha256/sha1 attributes from a password; -1 if the password is
 * not acceptable (SASLprep fails or it is empty). */
static int ibr_keys(xml_node_t *req, const char *password)
{
    char *prepped = sasl_saslprep(password, 1);
    if (!prepped || !*prepped) {
        free(prepped);
        return -1;
    }
    scram_hash_t hs[2] = {SCRAM_SHA256, SCRAM_SHA1};
    const char *attr[2] = {"sha256", "sha1"};
    int rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++) {
        scram_keys_t k;
        if (scram_keys_new(hs[i], prepped, (unsigned)c2s_config->scram_iter, &k) < 0) {
            rc = -1;
            break;
        }
        strbuf_t sb;
        strbuf_init(&sb);
        scram_keys_format(&k, &sb);
        xml_attr_set(req, attr[i], sb.data);
        OPENSSL_cleanse(&k, sizeof k);
        strbuf_free(&sb);
    }
    OPENSSL_cleanse(prepped, strlen(prepped));
    free(prepped);
    return rc;
}

static void ibr_send(client_t *c, const xml_node_t *iq, xml_node_t *req, int kind, const char *bare)
{
    xml_attr_set(req, "user", bare);
    if (sm_link_authreg(c, req, kind) < 0) {
        ibr_reply(c, xml_attr_get(iq, "id"), "resource-constraint", "wait", NULL);
        return;
    }
    free(c->req_iq_id);
    c->req_iq_id = xstrdup(xml_attr_get(iq, "id") ? xml_attr_get(iq, "id") : "");
}

void ibr_handle(client_t *c, xml_node_t *iq)
{
    const char *type = xml_attr_get(iq, "type");
    const char *id = xml_attr_get(iq, "id");
    xml_node_t *q = xml_child(iq, NS_REGISTER, "query");
    if (!id || !type) {
        client_stanza_error(c, iq, "bad-request", "modify");
        return;
    }
    if (!c->authed && !c2s_config->reg_enabled) {
        ibr_reply(c, id, "service-unavailable", "cancel", NULL);
        return;
    }
    if (c->req_kind != REQ_NONE) {
        ibr_reply(c, id, "resource-constraint", "wait", NULL);
        return;
    }
    if (!strcmp(type, "get")) {
        xml_node_t *r = xml_elem_new(NS_REGISTER, "query");
        xml_node_t *ins = xml_add_child(r, NS_REGISTER, "instructions");
        const char *t = "Choose a username and password.";
        xml_add_text(ins, t, strlen(t));
        if (c->authed) {
            xml_add_child(r, NS_REGISTER, "registered");
            xml_node_t *u = xml_add_child(r, NS_REGISTER, "username");
            xml_add_text(u, c->node, strlen(c->node));
        } else {
            xml_add_child(r, NS_REGISTER, "username");
        }
        xml_add_child(r, NS_REGISTER, "password");
        ibr_reply(c, id, NULL, NULL, r);
        return;
    }
    if (strcmp(type, "set")) {
        client_stanza_error(c, iq, "bad-request", "modify");
        return;
    }
    xml_node_t *req = xml_elem_new(NS_WEFT_AUTHREG, "authreg");
    char *user = ibr_field(q, "username"), *pass = ibr_field(q, "password");
    char *node = user ? jid_prep_node(user) : NULL;
    if (c->authed && xml_child(q, NS_REGISTER, "remove")) {
        xml_attr_set(req, "type", "remove");
        log_notice("event=account-remove-requested peer=%s user=%s", c->peer, c->jid.bare);
        ibr_send(c, iq, req, REQ_REMOVE, c->jid.bare);
    } else if (!user || !pass || !*pass) {
        ibr_reply(c, id, "not-acceptable", "modify", NULL);
    } else if (!node || (c->authed && strcmp(node, c->node))) {
        ibr_reply(c, id, c->authed ? "not-allowed" : "jid-malformed", "modify", NULL);
    } else if (!c->authed && !limits_reg_allowed(c->ip)) {
        log_notice("event=register-refused peer=%s ip=%s reason=rate-limit", c->peer, c->ip);
        ibr_reply(c, id, "resource-constraint", "wait", NULL);
    } else if (ibr_keys(req, pass) < 0) {
        ibr_reply(c, id, "not-acceptable", "modify", NULL);
    } else {
        strbuf_t bare;
        strbuf_init(&bare);
        strbuf_printf(&bare, "%s@%s", node, c2s_config->domain);
        xml_attr_set(req, "type", c->authed ? "password" : "register");
        ibr_send(c, iq, req, c->authed ? REQ_PASSWORD : REQ_REGISTER, bare.data);
        strbuf_free(&bare);
    }
    if (pass)
        OPENSSL_cleanse(pass, strlen(pass));
    free(user);
    free(pass);
    free(node);
    xml_free(req);
}

/* The sm's answer (ans NULL: timeout). */
void ibr_authreg_answer(client_t *c, xml_node_t *ans)
{
    int kind = c->req_kind;
    c->req_kind = REQ_NONE;
    c->wait_until = 0;
    char *id = c->req_iq_id;
    c->req_iq_id = NULL;
    const char *type = ans ? xml_attr_get(ans, "type") : NULL;
    const char *user = ans ? xml_attr_get(ans, "user") : NULL;
    static const char *const kinds[] = {"-", "auth", "register", "password", "remove"};
    if (type && !strcmp(type, "result")) {
        log_notice("event=%s-done peer=%s user=%s", kinds[kind], c->peer, user ? user : "-");
        ibr_reply(c, id, NULL, NULL, NULL);
    } else {
        const char *cond = ans ? xml_attr_get(ans, "condition") : NULL;
        log_notice("event=%s-failed peer=%s user=%s condition=%s", kinds[kind], c->peer, user ? user : "-",
                   ans ? (cond ? cond : "-") : "sm-timeout");
        if (!ans)
            ibr_reply(c, id, "remote-server-timeout", "wait", NULL);
        else if (cond && !strcmp(cond, "conflict"))
            ibr_reply(c, id, "conflict", "cancel", NULL);
        else if (cond && !strcmp(cond, "item-not-found"))
            ibr_reply(c, id, "item-not-found", "cancel", NULL);
        else if (cond && !strcmp(cond, "not-allowed"))
            ibr_reply(c, id, "not-allowed", "cancel", NULL);
        else
            ibr_reply(c, id, "internal-server-error", "wait", NULL);
    }
    free(id);
}
