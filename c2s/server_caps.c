/* server_caps: the server's own XEP-0115 entity capabilities in the stream
 * features after authentication (section 6.3):
 * <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='caps.node' ver='...'/>.
 *
 * The sm answers the domain's disco#info, not c2s, so c2s asks it over the
 * router link as any entity would: an iq get from our instance name to the
 * domain each time an sm instance of the domain comes up (a restarted sm may
 * run other modules) and when the link comes back with one up; ver is the
 * hash of the answer (common/caps_hash.c). Before an answer, after an error
 * or an ill-formed answer, and while no sm instance is up, the features
 * carry no <c/>: a client never gets a hash that may not be the server's.
 * A query unanswered after timeouts.sm is asked again while an sm is up.
 *
 * Owns: the current ver and the id of the query in flight. Not before
 * authentication: an unauthenticated client could not verify the hash (it
 * may not send the disco#info), and the stream would tell anyone which
 * modules run. */
#include "c2s.h"
#include "caps_hash.h"
#include "comp_proto.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ID_PREFIX "weft-c2s-caps-"

static char *cur_ver;          /* NULL: no <c/> in the features */
static char pending_id[48];    /* the query in flight; "" when none */
static double pending_at;
static unsigned long query_no;

void server_caps_ask(void)
{
    snprintf(pending_id, sizeof pending_id, ID_PREFIX "%lu", ++query_no);
    pending_at = daemon_now();
    xml_node_t *iq = xml_elem_new(COMP_NS_ACCEPT, "iq");
    xml_attr_set(iq, "type", "get");
    xml_attr_set(iq, "id", pending_id);
    xml_attr_set(iq, "from", c2s_config->instance);
    xml_attr_set(iq, "to", c2s_config->domain);
    xml_add_child(iq, CAPS_NS_DISCO_INFO, "query");
    /* A full link buffer is logged by sm_link; the cron asks again. */
    if (sm_link_send_stanza(iq) == 0)
        log_debug("event=server-caps-query id=%s to=%s", pending_id, c2s_config->domain);
    xml_free(iq);
}

void server_caps_forget(const char *why)
{
    if (cur_ver)
        log_info("event=server-caps result=withdrawn reason=%s", why);
    free(cur_ver);
    cur_ver = NULL;
    pending_id[0] = '\0';
}

/* Why an answer gives no hash, for the log. */
static const char *refusal(const xml_node_t *iq, const char *type, const xml_node_t *q)
{
    if (type && !strcmp(type, "error")) {
        xml_node_t *err = xml_child(iq, NULL, "error");
        xml_node_t *cond = err ? xml_child(err, NS_STANZAS, NULL) : NULL;
        return cond ? cond->name : "error";
    }
    return q ? "ill-formed" : "no-query";
}

int server_caps_iq(const xml_node_t *iq)
{
    const char *id = xml_attr_get(iq, "id");
    if (!id || strncmp(id, ID_PREFIX, strlen(ID_PREFIX)))
        return 0;
    if (strcmp(id, pending_id)) {
        log_debug("event=server-caps-late id=%s", id);
        return 1;
    }
    pending_id[0] = '\0';
    const char *type = xml_attr_get(iq, "type");
    const char *from = xml_attr_get(iq, "from");
    if (!from || strcasecmp(from, c2s_config->domain)) {
        log_warn("event=server-caps result=refused reason=wrong-from from=%s", from ? from : "-");
        return 1;
    }
    if (type && !strcmp(type, "get")) {
        log_warn("event=server-caps result=refused reason=not-an-answer from=%s", from);
        return 1;
    }
    xml_node_t *q = xml_child(iq, CAPS_NS_DISCO_INFO, "query");
    char *ver = type && !strcmp(type, "result") && q ? caps_hash_ver(q) : NULL;
    free(cur_ver);
    cur_ver = ver;
    if (ver)
        log_notice("event=server-caps ver=%s node=%s", ver, c2s_config->caps_node);
    else
        log_warn("event=server-caps result=none reason=%s", refusal(iq, type, q));
    return 1;
}

void server_caps_cron(double now)
{
    if (!pending_id[0] || now - pending_at < c2s_config->t_authreg)
        return;
    log_warn("event=server-caps result=timeout id=%s", pending_id);
    pending_id[0] = '\0';
    if (sm_link_sm_up())
        server_caps_ask();
}

void server_caps_features(strbuf_t *out)
{
    const char *node = c2s_config->caps_node;
    if (!cur_ver || !node || !*node)
        return;
    strbuf_puts(out, "<c xmlns='" CAPS_NS "' hash='sha-1' node='");
    xml_escape(out, node, strlen(node), 1);
    strbuf_puts(out, "' ver='");
    xml_escape(out, cur_ver, strlen(cur_ver), 1);
    strbuf_puts(out, "'/>");
}

void server_caps_free(void)
{
    free(cur_ver);
    cur_ver = NULL;
    pending_id[0] = '\0';
}
