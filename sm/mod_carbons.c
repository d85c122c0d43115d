/* mod_carbons: message carbons (XEP-0280, urn:xmpp:carbons:2).
 *
 * - <enable/> / <disable/> iq sets with no 'to' (or to the user's own bare
 *   JID or to the domain) switch sm_sess_t.carbons of the sending session;
 *   repeating one is not an error (section 9.1).
 * - Eligible messages (section 6): type chat, or type normal (or no type)
 *   with a <body/>; never a message carrying <private xmlns='urn:xmpp:carbons:2'/>
 *   or <no-copy xmlns='urn:xmpp:hints'/>, one from a MUC (it carries a
 *   muc#user <x/>), one that already is a carbon, or one between two
 *   resources of the same account.
 * - Inbound (message_in, to a live session or to the bare JID, delivered by
 *   the core to the sessions sm_sess_best picks): each other carbons-enabled
 *   session gets <received/> wrapping the message. A message to the bare JID
 *   that no session receives goes to offline storage and is not copied (the
 *   sessions get it from there). A <private/> element is removed before the
 *   recipient gets the message (section 8).
 * - Outbound (message_out): each other carbons-enabled session of the sender
 *   gets <sent/> wrapping the message, whether or not the sender enabled
 *   carbons (section 7).
 * - A copy comes from the user's bare JID to the receiving full JID, keeps the
 *   message's type and wraps it in <forwarded xmlns='urn:xmpp:forward:0'/>.
 *
 * Runs after mod_blocking (which stops what it blocks first). State: only
 * sm_sess_t.carbons, owned by core.c with the session. */
#include "module.h"
#include "mod_mam.h"
#include "log.h"
#include <string.h>

#define NS_CARBONS "urn:xmpp:carbons:2"
#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_HINTS "urn:xmpp:hints"
#define NS_MUC_USER "http://jabber.org/protocol/muc#user"
#define BEST_MAX 64

/* 1 if jid (full or bare) belongs to the account u. */
static int own_jid(const sm_user_t *u, const char *jid)
{
    if (!jid)
        return 0;
    size_t n = strlen(u->bare);
    return !strncmp(jid, u->bare, n) && (jid[n] == '\0' || jid[n] == '/');
}

static int eligible(const xml_node_t *m)
{
    const char *type = xml_attr_get(m, "type");
    if (!(sm_streq(type, "chat") || ((!type || sm_streq(type, "normal")) && xml_child(m, NULL, "body"))))
        return 0;
    if (xml_child(m, NS_CARBONS, "private") || xml_child(m, NS_HINTS, "no-copy"))
        return 0;
    if (xml_child(m, NS_CARBONS, "received") || xml_child(m, NS_CARBONS, "sent"))
        return 0;
    if (xml_child(m, NS_MUC_USER, "x"))
        return 0;
    return 1;
}

/* Sends a <received/> or <sent/> copy of m to session s. */
static void copy_to(sm_user_t *u, sm_sess_t *s, const xml_node_t *m, const char *dir)
{
    xml_node_t *w = xml_elem_new(NS_CLIENT, "message");
    xml_attr_set(w, "from", u->bare);
    xml_attr_set(w, "to", s->jid.full);
    const char *type = xml_attr_get(m, "type");
    if (type)
        xml_attr_set(w, "type", type);
    xml_node_t *d = xml_add_child(w, NS_CARBONS, dir);
    xml_node_t *f = xml_add_child(d, NS_FORWARD, "forwarded");
    xml_node_t *inner = xml_copy(m);
    if (!strcmp(dir, "sent"))
        mam_mark_sent_copy(m, inner);      /* the archive's id (XEP-0313 5.1.2) */
    xml_append(f, inner);
    sm_deliver(s, w);
    xml_free(w);
}

static void strip_private(xml_node_t *m)
{
    xml_node_t *p;
    while ((p = xml_child(m, NS_CARBONS, "private"))) {
        xml_detach(p);
        xml_free(p);
    }
}

static int in_list(sm_sess_t *const *v, size_t n, const sm_sess_t *s)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == s)
            return 1;
    return 0;
}

/* --- enable / disable ---------------------------------------------------------- */

/* Served for the domain and for accounts; only a local session has a switch. */
static void carbons_set(sm_iq_t *req)
{
    const char *what = req->payload->name;
    int en = !strcmp(what, "enable");
    if (!req->sess || (!en && strcmp(what, "disable"))) {
        sm_iq_error(req, "service-unavailable", "cancel");
        return;
    }
    req->sess->carbons = en;
    log_debug("event=carbons jid=%s enabled=%d", req->sess->jid.full, en);
    sm_iq_reply(req, NULL);
}

/* --- hooks ------------------------------------------------------------------------ */

static sm_ret_t on_message_out(sm_sess_t *s, xml_node_t *st)
{
    sm_user_t *u = s->user;
    const char *to = xml_attr_get(st, "to");
    if (!to || own_jid(u, to) || !eligible(st))
        return SM_PASS;
    for (sm_sess_t *o = u->sessions; o; o = o->next)
        if (o != s && o->carbons)
            copy_to(u, o, st, "sent");
    return SM_PASS;
}

/* to: the live session addressed, or NULL for the bare JID (the core then
 * gives a chat/normal message to the sessions sm_sess_best picks). */
static sm_ret_t on_message_in(sm_user_t *u, sm_sess_t *to, xml_node_t *st)
{
    if (eligible(st) && !own_jid(u, xml_attr_get(st, "from"))) {
        if (to) {
            for (sm_sess_t *o = u->sessions; o; o = o->next)
                if (o != to && o->carbons)
                    copy_to(u, o, st, "received");
        } else {
            sm_sess_t *best[BEST_MAX];
            size_t n = sm_sess_best(u, best, BEST_MAX);
            if (n > 0) {
                for (sm_sess_t *o = u->sessions; o; o = o->next)
                    if (o->carbons && !in_list(best, n, o))
                        copy_to(u, o, st, "received");
            }
        }
    }
    strip_private(st);
    return SM_PASS;
}

static const sm_hooks_t carbons_hooks = {
    .message_out = on_message_out,
    .message_in = on_message_in,
};

static const sm_iq_handler_t carbons_iqs[] = {
    {NS_CARBONS, SM_IQ_SERVER | SM_IQ_ACCOUNT, NULL, carbons_set, "bad-request"},
    {NULL, 0, NULL, NULL, NULL},
};

static const char *const carbons_features[] = {NS_CARBONS, NULL};

sm_module_t sm_module_carbons = {
    .name = "carbons",
    .help = "Message carbons (XEP-0280): copies of a user's chats to all of its clients.",
    .hooks = &carbons_hooks,
    .iqs = carbons_iqs,
    .server_features = carbons_features,
};
