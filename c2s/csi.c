/* csi: client state indication (XEP-0352) — while a client says it is
 * <inactive/>, what it need not see at once waits in c2s.
 *
 * Held: presence updates (available / unavailable) and messages that carry
 * nothing a person reads (chat states, receipts, markers, pubsub events).
 * Collapsed: of the presences of one sender (full JID) only the latest is
 * kept, and of one sender's chat-state-only messages only the latest. Sent at
 * once, after everything held (in arrival order): a message with a body or
 * subject, encrypted or a call (Jingle message initiation), a carbon or an
 * archive result of such a message, any error, any iq (the client's own
 * answers and requests it must answer), subscription requests. <active/>
 * sends everything held; so does reaching csi.queue-max held stanzas.
 *
 * Held stanzas are not yet written: they are outside XEP-0198's counts
 * (smacks.c counts them when they are sent) and their router tokens are not
 * acknowledged (docs/c2s.md, "Delivery and acknowledgement"), except a
 * superseded one (done at once: the newer stanza replaces it) and one held
 * past timeouts.delivery-ack (given anyway, like any late delivery). When the
 * session ends, what is held is dropped: presence and chat states for a
 * session that is gone have no one to go to.
 *
 * Memory: the state exists only while the client is inactive or something
 * is held; an active client costs one NULL pointer. */
#include "c2s.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

#define NS_CHATSTATES "http://jabber.org/protocol/chatstates"

typedef struct csi_item {
    xml_node_t *route;   /* owned: the delivery as the router sent it */
    uint64_t token;      /* router token; 0 once acknowledged */
    double at;
    char *key;           /* collapse key, or NULL: never replaced */
    struct csi_item *next;
} csi_item_t;

struct csi {
    int inactive;
    csi_item_t *head, *tail;
    size_t len;
};

enum { CSI_URGENT, CSI_HOLD, CSI_COLLAPSE };

static struct csi *csi_state(client_t *c)
{
    if (!c->csi)
        c->csi = xcalloc(1, sizeof *c->csi);
    return c->csi;
}

/* A message a person must see now: body, subject, encrypted payload, a
 * call. Looks inside carbons and archive results (their forwarded copy). */
static int csi_message_urgent(const xml_node_t *m, int depth)
{
    const char *type = xml_attr_get(m, "type");
    if (type && !strcmp(type, "error"))
        return 1;
    for (const xml_node_t *ch = xml_child(m, NULL, NULL); ch; ch = xml_next(ch, NULL, NULL)) {
        if (!strcmp(ch->ns, NS_CLIENT) && (!strcmp(ch->name, "body") || !strcmp(ch->name, "subject")))
            return 1;
        if (!strncmp(ch->ns, "urn:xmpp:jingle-message:", 24) || !strcmp(ch->ns, "urn:xmpp:openpgp:0") ||
            !strcmp(ch->ns, "eu.siacs.conversations.axolotl") || !strcmp(ch->ns, "jabber:x:encrypted") ||
            !strncmp(ch->ns, "urn:xmpp:omemo:", 15))
            return 1;
        if (!strncmp(ch->ns, "urn:xmpp:mam:", 13))
            return 1;   /* a result of the client's own archive query */
        if (!strcmp(ch->ns, "urn:xmpp:carbons:2") && depth < 2) {
            xml_node_t *fw = xml_child(ch, "urn:xmpp:forward:0", "forwarded");
            xml_node_t *inner = fw ? xml_child(fw, NULL, "message") : NULL;
            if (inner && csi_message_urgent(inner, depth + 1))
                return 1;
        }
    }
    return 0;
}

/* A message whose only payload is a chat state (thread and hints aside). */
static int csi_chat_state_only(const xml_node_t *m)
{
    int states = 0;
    for (const xml_node_t *ch = xml_child(m, NULL, NULL); ch; ch = xml_next(ch, NULL, NULL)) {
        if (!strcmp(ch->ns, NS_CHATSTATES))
            states++;
        else if (!(!strcmp(ch->ns, NS_CLIENT) && !strcmp(ch->name, "thread")) && strcmp(ch->ns, "urn:xmpp:hints") &&
                 strcmp(ch->ns, "urn:xmpp:sid:0"))
            return 0;
    }
    return states > 0;
}

/* Which class st is; *key gets the collapse key (caller frees) for
 * CSI_COLLAPSE. */
static int csi_classify(const xml_node_t *st, char **key)
{
    *key = NULL;
    const char *type = xml_attr_get(st, "type");
    const char *from = xml_attr_get(st, "from");
    strbuf_t sb;
    if (!strcmp(st->name, "presence")) {
        if (type && strcmp(type, "unavailable"))
            return CSI_URGENT;   /* errors and subscription requests */
        strbuf_init(&sb);
        strbuf_printf(&sb, "p %s", from ? from : "");
        *key = strbuf_steal(&sb);
        return CSI_COLLAPSE;
    }
    if (!strcmp(st->name, "message")) {
        if (csi_message_urgent(st, 0))
            return CSI_URGENT;
        if (!csi_chat_state_only(st))
            return CSI_HOLD;
        strbuf_init(&sb);
        strbuf_printf(&sb, "c %s", from ? from : "");
        *key = strbuf_steal(&sb);
        return CSI_COLLAPSE;
    }
    return CSI_URGENT;   /* iq: answers and requests wait for nobody */
}

static void csi_item_free(csi_item_t *it)
{
    if (it->token)
        sm_link_done(it->token);
    xml_free(it->route);
    free(it->key);
    free(it);
}

/* Writes everything held, oldest first. */
void csi_flush(client_t *c, const char *why)
{
    struct csi *s = c->csi;
    if (!s || !s->head)
        return;
    size_t n = s->len;
    csi_item_t *it = s->head;
    s->head = s->tail = NULL;
    s->len = 0;
    while (it) {
        csi_item_t *next = it->next;
        deliver_send(c, it->route, it->token);
        free(it->key);
        free(it);
        it = next;
    }
    log_debug("event=csi-flush sid=%s jid=%s stanzas=%zu reason=%s", c->sid_str, c->jid.full ? c->jid.full : "-",
              n, why);
}

/* Drops the state when the client is active and nothing is held. */
static void csi_maybe_free(client_t *c)
{
    if (c->csi && !c->csi->inactive && !c->csi->head) {
        free(c->csi);
        c->csi = NULL;
    }
}

int csi_hold(client_t *c, xml_node_t *route, const xml_node_t *st, uint64_t token)
{
    struct csi *s = c->csi;
    if (!s || !s->inactive)
        return 0;
    char *key;
    int cls = csi_classify(st, &key);
    if (cls == CSI_URGENT) {
        csi_flush(c, "urgent");
        return 0;
    }
    size_t superseded = 0;
    if (key) {
        csi_item_t **pp = &s->head, *prev = NULL;
        while (*pp) {
            csi_item_t *it = *pp;
            if (it->key && !strcmp(it->key, key)) {
                *pp = it->next;
                if (s->tail == it)
                    s->tail = prev;
                s->len--;
                csi_item_free(it);   /* acknowledged: replaced by the newer one */
                superseded++;
            } else {
                prev = it;
                pp = &it->next;
            }
        }
    }
    csi_item_t *it = xcalloc(1, sizeof *it);
    it->route = route;
    it->token = token;
    it->at = daemon_now();
    it->key = key;
    if (s->tail)
        s->tail->next = it;
    else
        s->head = it;
    s->tail = it;
    s->len++;
    if (superseded)
        sm_link_flush();
    if ((long)s->len >= c2s_config->csi_queue_max)
        csi_flush(c, "queue-max");
    return 1;
}

void csi_handle(client_t *c, xml_node_t *el)
{
    if (!c->authed) {
        client_stream_error(c, "not-authorized", NULL);
        return;
    }
    if (!strcmp(el->name, "inactive")) {
        csi_state(c)->inactive = 1;
        log_debug("event=csi state=inactive sid=%s jid=%s", c->sid_str, c->jid.full ? c->jid.full : "-");
    } else if (!strcmp(el->name, "active")) {
        if (c->csi) {
            c->csi->inactive = 0;
            csi_flush(c, "active");
            csi_maybe_free(c);
        }
        log_debug("event=csi state=active sid=%s jid=%s", c->sid_str, c->jid.full ? c->jid.full : "-");
    } else {
        client_stream_error(c, "unsupported-stanza-type", NULL);
    }
}

int csi_inactive(const client_t *c)
{
    return c->csi && c->csi->inactive;
}

size_t csi_held(const client_t *c)
{
    return c->csi ? c->csi->len : 0;
}

/* Held longer than timeouts.delivery-ack: the router gets the token now
 * (acknowledgements are cumulative; see deliver.c); the stanza stays held. */
void csi_cron(client_t *c, double now)
{
    struct csi *s = c->csi;
    if (!s)
        return;
    size_t late = 0;
    for (csi_item_t *it = s->head; it && now - it->at > c2s_config->t_delivery_ack; it = it->next) {
        if (it->token) {
            sm_link_done(it->token);
            it->token = 0;
            late++;
        }
    }
    if (late)
        sm_link_flush();
}

/* Resumption (XEP-0198): the new connection n takes the session's state. */
void csi_take_over(client_t *n, client_t *o)
{
    csi_free(n);
    n->csi = o->csi;
    o->csi = NULL;
}

void csi_free(client_t *c)
{
    struct csi *s = c->csi;
    if (!s)
        return;
    size_t n = s->len;
    while (s->head) {
        csi_item_t *it = s->head;
        s->head = it->next;
        csi_item_free(it);
    }
    if (n) {
        log_debug("event=csi-dropped sid=%s jid=%s stanzas=%zu", c->sid_str, c->jid.full ? c->jid.full : "-", n);
        sm_link_flush();
    }
    free(s);
    c->csi = NULL;
}
