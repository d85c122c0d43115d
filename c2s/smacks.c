/* smacks: stream management (XEP-0198 v3) — acks, and resumption of a
 * session whose TCP connection dropped.
 *
 * Counting: sm_in counts stanzas the client sent since <enable/>; sm_out
 * counts stanzas we sent, and every one not yet acknowledged is kept (a copy)
 * in the client's queue, so sm_out == sm_acked + sm_len. While a session is
 * detached (client.c) deliveries keep going into the queue; on <resume/> the
 * new connection takes the session over (same sid, so the sm sees nothing)
 * and the queue past the client's h is sent again. A session that is not
 * resumed gives its queue back to the sm as <route type='unacked'/> before
 * its end, so nothing is lost and nothing is delivered twice by us.
 *
 * Each queued stanza keeps its router token (manual_ack, sm_link.c): the
 * router counts it delivered only once the client acknowledged it or it went
 * back to the sm, so a c2s killed meanwhile has the router give it to the
 * next c2s and on to offline storage. Past timeouts.delivery-ack the token is
 * given anyway (acknowledgements to the router are cumulative: one silent
 * client must not hold back every other one's). */
#include "c2s.h"
#include "comp_proto.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

/* An <r/> goes out after this many unacked stanzas, or in the cron after a
 * quiet second with stanzas still unacked. */
#define SMACKS_R_EVERY 5

static void smacks_write(client_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void smacks_write(client_t *c, const char *fmt, ...)
{
    strbuf_t sb;
    strbuf_init(&sb);
    va_list ap;
    va_start(ap, fmt);
    strbuf_vprintf(&sb, fmt, ap);
    va_end(ap);
    client_write(c, sb.data, sb.len);
    strbuf_free(&sb);
}

static void smacks_failed(client_t *c, const char *condition)
{
    smacks_write(c, "<failed xmlns='" NS_SM "'><%s xmlns='" NS_STANZAS "'/></failed>", condition);
}

static void smacks_request(client_t *c)
{
    smacks_write(c, "<r xmlns='" NS_SM "'/>");
    c->sm_r_at = daemon_now();
    if (!c->sm_r_unanswered)
        c->sm_r_unanswered = c->sm_r_at;
}

/* Drops queued stanzas up to h (mod 2^32). -1 if h acknowledges more than
 * was sent. */
static int smacks_ack(client_t *c, uint32_t h)
{
    uint32_t n = h - c->sm_acked;
    if (n > c->sm_len)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        smacks_item_t *it = c->sm_head;
        c->sm_head = it->next;
        if (!c->sm_head)
            c->sm_tail = NULL;
        if (it->token)
            sm_link_done(it->token);
        xml_free(it->st);
        free(it);
        c->sm_len--;
    }
    c->sm_acked = h;
    if (n)
        sm_link_flush();
    return 0;
}

static int smacks_parse_h(const xml_node_t *el, uint32_t *h)
{
    const char *s = xml_attr_get(el, "h");
    if (!s || !*s)
        return -1;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || v > 0xffffffffULL)
        return -1;
    *h = (uint32_t)v;
    return 0;
}

void smacks_count_in(client_t *c)
{
    if (c->sm_enabled)
        c->sm_in++;
}

void smacks_sent(client_t *c, const xml_node_t *st, uint64_t token)
{
    smacks_item_t *it = xcalloc(1, sizeof *it);
    it->st = xml_copy(st);
    it->token = token;
    it->at = daemon_now();
    if (c->sm_tail)
        c->sm_tail->next = it;
    else
        c->sm_head = it;
    c->sm_tail = it;
    c->sm_len++;
    c->sm_out++;
    if ((long)c->sm_len > c2s_config->sm_queue) {
        log_warn("event=smacks-queue-full sid=%s jid=%s queued=%zu", c->sid_str, c->jid.full, c->sm_len);
        if (c->detached)
            client_close(c, CLOSE_END);
        else
            client_stream_error(c, "resource-constraint", "too many unacknowledged stanzas");
        return;
    }
    if (!c->detached && c->sm_len % SMACKS_R_EVERY == 0)
        c->sm_r_due = 1;
}

void smacks_return_unacked(client_t *c)
{
    size_t n = 0;
    while (c->sm_head) {
        smacks_item_t *it = c->sm_head;
        c->sm_head = it->next;
        /* Errors are never bounced back (no loops); the rest goes back. */
        const char *type = xml_attr_get(it->st, "type");
        if (!(type && !strcmp(type, "error")) && sm_link_route(c, it->st, "unacked") == 0)
            n++;
        /* The route back is on the link before this acknowledgement. */
        if (it->token)
            sm_link_done(it->token);
        xml_free(it->st);
        free(it);
    }
    c->sm_tail = NULL;
    c->sm_len = 0;
    if (n)
        log_info("event=unacked-returned sid=%s jid=%s stanzas=%zu", c->sid_str, c->jid.full, n);
}

void smacks_free(client_t *c)
{
    while (c->sm_head) {
        smacks_item_t *it = c->sm_head;
        c->sm_head = it->next;
        if (it->token)
            sm_link_done(it->token);
        xml_free(it->st);
        free(it);
    }
    c->sm_tail = NULL;
    c->sm_len = 0;
    free(c->sm_id);
    c->sm_id = NULL;
}

/* The new connection n takes over the detached (or not yet noticed dead)
 * session o: its sid, JID, counters, queue and last presence. */
static void smacks_take_over(client_t *n, client_t *o)
{
    jid_clear(&n->jid);
    jid_copy(&o->jid, &n->jid);
    xml_free(n->last_presence);
    n->last_presence = o->last_presence;
    o->last_presence = NULL;
    smacks_free(n);
    n->sm_enabled = 1;
    n->sm_resume = 1;
    n->sm_id = o->sm_id;
    o->sm_id = NULL;
    n->sm_in = o->sm_in;
    n->sm_out = o->sm_out;
    n->sm_acked = o->sm_acked;
    n->sm_head = o->sm_head;
    n->sm_tail = o->sm_tail;
    n->sm_len = o->sm_len;
    csi_take_over(n, o);
    o->sm_head = o->sm_tail = NULL;
    o->sm_len = 0;
    uint64_t sid = o->sid;
    /* What o wrote before <enable/> and the kernel has not taken stays
     * unwritten; the session lives on, so it is not handed back. */
    deliver_conn_gone(o);
    client_close(o, CLOSE_SILENT); /* leaves the table: the sid is free */
    client_rekey(n, sid);
    n->state = CL_SESSION;
}

static void smacks_resume(client_t *c, xml_node_t *el)
{
    const char *previd = xml_attr_get(el, "previd");
    uint32_t h;
    if (c->state != CL_AUTHED || !previd || smacks_parse_h(el, &h) < 0) {
        smacks_failed(c, c->state != CL_AUTHED ? "unexpected-request" : "bad-request");
        return;
    }
    /* previd is "sid-token": the sid finds the session, the token proves it. */
    char sid[24];
    const char *dash = strchr(previd, '-');
    size_t sl = dash ? (size_t)(dash - previd) : 0;
    client_t *o = NULL;
    if (dash && sl < sizeof sid) {
        memcpy(sid, previd, sl);
        sid[sl] = '\0';
        o = client_find_str(sid);
    }
    if (!o || o == c || o->state != CL_SESSION || !o->sm_resume || !o->sm_id || strcmp(o->sm_id, previd) ||
        !jid_bare_equal(&o->jid, &c->jid)) {
        log_info("event=resume-failed peer=%s user=%s previd=%s", c->peer, c->jid.bare, previd);
        smacks_failed(c, "item-not-found");
        return;
    }
    if (smacks_ack(o, h) < 0) {
        smacks_failed(c, "unexpected-request");
        client_close(o, CLOSE_END);
        return;
    }
    if (!o->detached) {
        /* The old connection has not noticed it is dead; drop it now. */
        client_set_detached(o);
    }
    smacks_take_over(c, o);
    smacks_write(c, "<resumed xmlns='" NS_SM "' previd='%s' h='%u'/>", c->sm_id, c->sm_in);
    for (smacks_item_t *it = c->sm_head; it; it = it->next)
        client_write_node(c, it->st);
    if (c->sm_len)
        smacks_request(c);
    log_notice("event=resumed peer=%s sid=%s jid=%s resent=%zu", c->peer, c->sid_str, c->jid.full, c->sm_len);
    sm_link_hibernation(c, 0);
}

void smacks_handle(client_t *c, xml_node_t *el)
{
    if (!strcmp(el->name, "resume")) {
        smacks_resume(c, el);
        return;
    }
    if (!c->authed) {
        client_stream_error(c, "not-authorized", NULL);
        return;
    }
    if (!strcmp(el->name, "enable")) {
        if (c->state != CL_SESSION || c->sm_enabled) {
            smacks_failed(c, "unexpected-request");
            return;
        }
        c->sm_enabled = 1;
        const char *r = xml_attr_get(el, "resume");
        c->sm_resume = r && (!strcmp(r, "true") || !strcmp(r, "1")) && c2s_config->sm_resume > 0;
        if (c->sm_resume) {
            char tok[33];
            comp_proto_random_hex(tok, 16);
            strbuf_t sb;
            strbuf_init(&sb);
            strbuf_printf(&sb, "%s-%s", c->sid_str, tok);
            c->sm_id = strbuf_steal(&sb);
            smacks_write(c, "<enabled xmlns='" NS_SM "' id='%s' resume='true' max='%u'/>", c->sm_id,
                         (unsigned)c2s_config->sm_resume);
        } else {
            smacks_write(c, "<enabled xmlns='" NS_SM "'/>");
        }
    } else if (!c->sm_enabled) {
        smacks_failed(c, "unexpected-request");
    } else if (!strcmp(el->name, "r")) {
        smacks_write(c, "<a xmlns='" NS_SM "' h='%u'/>", c->sm_in);
    } else if (!strcmp(el->name, "a")) {
        uint32_t h;
        if (smacks_parse_h(el, &h) < 0 || smacks_ack(c, h) < 0)
            client_stream_error(c, "undefined-condition", "h acknowledges stanzas never sent");
        else
            c->sm_r_unanswered = 0;
    } else {
        client_stream_error(c, "unsupported-stanza-type", NULL);
    }
}

void smacks_ack_late(client_t *c, double now)
{
    size_t late = 0;
    for (smacks_item_t *it = c->sm_head; it && now - it->at > c2s_config->t_delivery_ack; it = it->next) {
        if (it->token) {
            sm_link_done(it->token);
            it->token = 0;
            late++;
        }
    }
    if (late) {
        log_info("event=delivery-ack-timeout sid=%s jid=%s stanzas=%zu unacked=%zu", c->sid_str,
                 c->jid.full ? c->jid.full : "-", late, c->sm_len);
        sm_link_flush();
    }
}

size_t smacks_pending_messages(const client_t *c)
{
    size_t n = 0;
    for (const smacks_item_t *it = c->sm_head; it; it = it->next)
        if (!strcmp(it->st->name, "message") && xml_child(it->st, NS_CLIENT, "body"))
            n++;
    return n;
}

/* A phone whose network went away says nothing: its socket stays open and
 * takes our bytes, but no <a/> comes back. An <r/> unanswered for
 * stream-management.ack-timeout means the connection is dead; a resumable
 * session then hibernates at once instead of after timeouts.idle (Prosody
 * does the same), so push notifications start. */
void smacks_cron(client_t *c, double now)
{
    if (!c->sm_enabled || c->detached)
        return;
    if (c->sm_resume && c->sm_r_unanswered && now - c->sm_r_unanswered > c2s_config->sm_ack_timeout) {
        log_info("event=ack-timeout peer=%s sid=%s jid=%s unacked=%zu", c->peer, c->sid_str, c->jid.full, c->sm_len);
        c->sm_r_unanswered = 0;
        client_connection_lost(c);
        return;
    }
    if (!c->sm_len)
        return;
    if (c->sm_r_due || now - c->sm_r_at > 1.0) {
        c->sm_r_due = 0;
        smacks_request(c);
    }
}
