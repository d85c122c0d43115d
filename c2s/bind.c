/* bind: resource binding (RFC 6120 §7) and the RFC 3921 session element.
 *
 * A bind request is answered only when the sm has the session: c2s sends
 * <session type='start'/> and waits for 'started' (the bind result) or
 * 'failed' (a bind error). The client's resource is resourceprep'd; a missing
 * or empty one is generated. While waiting the client is CL_BINDING and its
 * jid is already the full JID asked for; on failure it goes back to the bare
 * JID and may try again. XEP-0078 (iqauth.c) binds through here too and gets
 * the sm's answer back. */
#include "c2s.h"
#include "comp_proto.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

int bind_is_bind_iq(const xml_node_t *iq)
{
    return xml_child(iq, NS_BIND, "bind") != NULL;
}

static void bind_back_to_bare(client_t *c)
{
    jid_t bare;
    if (jid_build(c->node, c2s_config->domain, NULL, &bare) == JID_OK) {
        jid_clear(&c->jid);
        c->jid = bare;
    }
    c->state = CL_AUTHED;
    c->wait_until = 0;
}

static void bind_iq_error(client_t *c, const char *id, const char *condition, const char *type)
{
    xml_node_t *iq = xml_elem_new(NS_CLIENT, "iq");
    xml_attr_set(iq, "type", "error");
    xml_attr_set(iq, "id", id);
    xml_node_t *err = xml_add_child(iq, NS_CLIENT, "error");
    xml_attr_set(err, "type", type);
    xml_add_child(err, NS_STANZAS, condition);
    client_write_own_stanza(c, iq);
    xml_free(iq);
}

void bind_handle_iq(client_t *c, xml_node_t *iq)
{
    const char *type = xml_attr_get(iq, "type");
    const char *id = xml_attr_get(iq, "id");
    if (!type || strcmp(type, "set") || !id) {
        client_stanza_error(c, iq, "bad-request", "modify");
        return;
    }
    if (c->state != CL_AUTHED) {
        /* One resource per stream (RFC 6120 §7.7.2.1 allows refusing more). */
        client_stanza_error(c, iq, "not-allowed", "cancel");
        return;
    }
    xml_node_t *b = xml_child(iq, NS_BIND, "bind");
    xml_node_t *r = xml_child(b, NS_BIND, "resource");
    char *want = r ? xml_text(r) : NULL;
    char *res = NULL;
    if (want && *want) {
        res = jid_prep_resource(want);
        if (!res) {
            free(want);
            log_info("event=bind-refused peer=%s user=%s reason=resourceprep", c->peer, c->jid.bare);
            client_stanza_error(c, iq, "bad-request", "modify");
            return;
        }
    } else {
        char rnd[17];
        comp_proto_random_hex(rnd, 8);
        strbuf_t sb;
        strbuf_init(&sb);
        strbuf_printf(&sb, "weft-%s", rnd);
        res = strbuf_steal(&sb);
    }
    free(want);
    int rc = bind_session_start(c, id, res);
    free(res);
    if (rc == -1)
        client_stanza_error(c, iq, "bad-request", "modify");
    else if (rc < 0)
        bind_iq_error(c, id, "resource-constraint", "wait");
}

int bind_session_start(client_t *c, const char *id, const char *res)
{
    jid_t full;
    if (jid_build(c->node, c2s_config->domain, res, &full) != JID_OK)
        return -1;
    jid_clear(&c->jid);
    c->jid = full;
    if (c->bind_iq_id != id) {
        free(c->bind_iq_id);
        c->bind_iq_id = xstrdup(id);
    }
    c->state = CL_BINDING;
    c->wait_until = daemon_now() + c2s_config->t_authreg;
    if (sm_link_session(c, "start", 0) < 0) {
        bind_back_to_bare(c);
        return -2;
    }
    return 0;
}

/* The sm's answer to our session start (el NULL: it did not come in time). */
void bind_session_answer(client_t *c, xml_node_t *el)
{
    if (c->state != CL_BINDING)
        return;
    if (c->legacy) {
        iqauth_session_answer(c, el);
        return;
    }
    const char *type = el ? xml_attr_get(el, "type") : NULL;
    if (type && !strcmp(type, "started")) {
        c->state = CL_SESSION;
        c->wait_until = 0;
        xml_node_t *iq = xml_elem_new(NS_CLIENT, "iq");
        xml_attr_set(iq, "type", "result");
        xml_attr_set(iq, "id", c->bind_iq_id);
        xml_node_t *b = xml_add_child(iq, NS_BIND, "bind");
        xml_node_t *j = xml_add_child(b, NS_BIND, "jid");
        xml_add_text(j, c->jid.full, strlen(c->jid.full));
        client_write_own_stanza(c, iq);
        xml_free(iq);
        log_notice("event=session-start peer=%s sid=%s jid=%s", c->peer, c->sid_str, c->jid.full);
        return;
    }
    const char *reason = el ? xml_attr_get(el, "reason") : NULL;
    const char *cond = "internal-server-error", *etype = "wait";
    if (reason && !strcmp(reason, "not-allowed"))
        cond = "not-allowed", etype = "cancel";
    else if (reason && !strcmp(reason, "resource-constraint"))
        cond = "resource-constraint";
    else if (reason && !strcmp(reason, "conflict"))
        cond = "conflict", etype = "cancel";  /* sm policy: the older session keeps it */
    log_warn("event=bind-failed peer=%s jid=%s reason=%s", c->peer, c->jid.full,
             el ? (reason ? reason : "-") : "sm-timeout");
    /* A late 'started' must not leave a session the client does not know. */
    if (!el)
        sm_link_session(c, "end", 0);
    bind_back_to_bare(c);
    bind_iq_error(c, c->bind_iq_id, cond, etype);
}
