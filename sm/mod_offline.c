/* mod_offline: messages for users with no available session (XEP-0160,
 * RFC 6121 8.5.2.2).
 *
 * Storage: collection "offline" of the recipient, one record per message,
 * the stanza serialized with its own namespace declared and a XEP-0203
 * <delay/> added; storage_append keys keep them in arrival order. At most
 * max-messages records per user (option of this module).
 *
 * Storing: the core runs the undelivered hook for a message no session took;
 * this module takes it (SM_HANDLED) to store it, or when it is a kind that is
 * dropped silently (headline, error, a bare chat state); it passes the rest
 * (groupchat, no-store hint) so the sender gets service-unavailable. The
 * store is asynchronous (count, then append): the user is held until the
 * append committed, so its next presence cannot fetch the messages before
 * this one is there, and the router element that brought the message is
 * acknowledged only then (store.h): a message is never acknowledged before
 * the database has it. A full quota or a failed write answers the sender
 * service-unavailable from the callback.
 *
 * Delivery: when a session sends available presence (no type, no 'to') with
 * a non-negative priority, every stored message goes to that session in
 * order, and the records are deleted in one transaction after being handed
 * to sm_deliver. Delivery does not depend on the session's previous state:
 * messages are only stored while the user has no available session of
 * non-negative priority, so stored ones exist only when this presence is the
 * first to make the user reachable (XEP-0160 section 3: "when the recipient
 * next sends non-negative available presence"). The handler always passes,
 * so presence processing still sees the stanza; it must run before any
 * handler that stops the chain for broadcast presence.
 *
 * Also: user_delete removes the user's offline records; the domain
 * advertises 'msgoffline'. No per-user state. */
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "module.h"
#include "store.h"
#include "xml_stream.h"

#define OFFLINE_COLL "offline"
#define NS_DELAY "urn:xmpp:delay"
#define NS_CHATSTATES "http://jabber.org/protocol/chatstates"
#define NS_HINTS "urn:xmpp:hints"
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
/* Largest stored record parsed back: a stanza passed the stream's size limit
 * before it was stored; this leaves room for what we added and for a limit
 * raised since. */
#define OFFLINE_MAX_RECORD (4u * 1024 * 1024)

typedef struct offline_cfg {
    long max;                 /* offline messages kept per user */
} offline_cfg_t;

extern sm_module_t sm_module_offline;

/* ------------------------------------------------------------ storing */

/* XEP-0203 stamp: UTC, milliseconds. */
static void offline_stamp(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* A message that only says someone is typing (XEP-0085) means nothing once
 * its moment has passed: not worth storing. True when there is a chat state
 * and no other child element but a <thread/>. */
static int offline_only_chatstate(const xml_node_t *msg)
{
    int states = 0;
    for (const xml_node_t *c = msg->first_child; c; c = c->next) {
        if (!c->name || (!strcmp(c->name, "thread") && !strcmp(c->ns, msg->ns)))
            continue;
        if (strcmp(c->ns, NS_CHATSTATES) != 0)
            return 0;
        states++;
    }
    return states > 0;
}

/* A message being stored: counted, then appended. */
typedef struct store_ctx {
    sm_user_t *u;              /* held until the end */
    xml_node_t *msg;           /* as received, for an error to its sender */
    strbuf_t data;             /* the record */
    long max;
    int64_t n;
    sm_ack_t *ack;
} store_ctx_t;

static void store_end(store_ctx_t *c, int stored)
{
    if (!stored)
        sm_reply_error(c->msg, "service-unavailable", "cancel");
    sm_user_t *u = c->u;
    xml_free(c->msg);
    strbuf_free(&c->data);
    sm_ack_drop(c->ack);
    free(c);
    sm_user_release(u);
}

static void store_appended(storage_res_t *res, void *arg)
{
    store_ctx_t *c = arg;
    if (res->status < 0)
        log_error("sm: event=offline-store-failed user=%s", c->u->bare);
    else
        log_debug("sm: event=offline-stored user=%s count=%lld", c->u->bare, (long long)c->n + 1);
    store_end(c, res->status == 0);
}

static void store_counted(storage_res_t *res, void *arg)
{
    store_ctx_t *c = arg;
    if (res->status < 0) {
        store_end(c, 0);
        return;
    }
    c->n = res->n;
    if (c->n >= c->max) {
        log_notice("sm: event=offline-full user=%s max=%ld", c->u->bare, c->max);
        store_end(c, 0);
        return;
    }
    storage_append_async(sm_storage, c->u->bare, OFFLINE_COLL, c->data.data, c->data.len, store_appended, c);
}

/* Which types are kept follows RFC 6121 8.5.2.2.1: normal (also an absent or
 * unknown type, 5.2.2) and chat are stored; groupchat is refused (the caller
 * answers service-unavailable); headline and error are dropped silently and
 * 0 is returned, as the caller must not answer them either. A message with a
 * XEP-0334 <no-store/> hint is refused; a standalone chat state is dropped. */
/* 0 taken (its store started, answered by store_end on failure, or dropped
 * silently), -1 refused: the caller lets the sender get an error. */
static int offline_store(sm_user_t *u, xml_node_t *msg)
{
    const offline_cfg_t *cfg = sm_module_config(&sm_module_offline);
    const char *type = xml_attr_get(msg, "type");
    if (type && !strcmp(type, "groupchat"))
        return -1;
    if (type && (!strcmp(type, "headline") || !strcmp(type, "error")))
        return 0;
    if (offline_only_chatstate(msg))
        return 0;
    if (xml_child(msg, NS_HINTS, "no-store"))
        return -1;

    xml_node_t *copy = xml_copy(msg);
    xml_node_t *delay = xml_add_child(copy, NS_DELAY, "delay");
    char stamp[40];
    offline_stamp(stamp, sizeof stamp);
    xml_attr_set(delay, "from", sm_config->domain);
    xml_attr_set(delay, "stamp", stamp);
    store_ctx_t *c = xcalloc(1, sizeof *c);
    c->u = u;
    c->msg = xml_copy(msg);
    c->max = cfg->max;
    c->ack = sm_ack_take();
    strbuf_init(&c->data);
    xml_serialize(copy, NULL, &c->data);   /* declares the stanza's namespace */
    xml_free(copy);
    sm_user_hold(u);
    storage_count_async(sm_storage, u->bare, OFFLINE_COLL, store_counted, c);
    return 0;
}

/* ------------------------------------------------------------ delivering */

/* A fetch for a session that became available: the user is held from the
 * presence until the records are delivered and their delete submitted. */
typedef struct fetch_ctx {
    sm_user_t *u;
    char *c2s, *sid;
} fetch_ctx_t;

static void fetch_deleted(int ok, void *arg)
{
    char *bare = arg;
    if (!ok) {
        /* The messages handed over stay stored and come again at the next
         * presence: a duplicate rather than a loss. */
        log_error("sm: event=offline-delete-failed user=%s", bare);
    }
    free(bare);
}

static void fetch_listed(storage_res_t *res, void *arg)
{
    fetch_ctx_t *c = arg;
    sm_user_t *u = c->u;
    const char *bare = u->bare;
    sm_sess_t *s = sm_sess_lookup(c->c2s, c->sid);
    if (res->status == 0 && res->nrecs && s) {
        xml_limits_t lim;
        xml_limits_default(&lim);
        lim.max_stanza_bytes = OFFLINE_MAX_RECORD;
        lim.max_text = OFFLINE_MAX_RECORD;
        size_t delivered = 0, bad = 0;
        sm_batch_t *b = sm_batch_new();
        for (size_t i = 0; i < res->nrecs; i++) {
            storage_rec_t *r = &res->recs[i];
            char errbuf[128];
            xml_node_t *msg = xml_parse_document(r->val, r->len, &lim, errbuf, sizeof errbuf, NULL);
            if (msg) {
                sm_deliver(s, msg);
                xml_free(msg);
                delivered++;
            } else {
                /* It can never be delivered: dropped, and said so. */
                log_warn("sm: event=offline-unreadable user=%s key=%s error=\"%s\"", bare, r->key, errbuf);
                bad++;
            }
            sm_batch_del(b, bare, OFFLINE_COLL, r->key);
        }
        log_info("sm: event=offline-delivered user=%s jid=%s count=%zu dropped=%zu", bare, s->jid.full,
                 delivered, bad);
        sm_batch_commit(b, fetch_deleted, xstrdup(bare));
    }
    free(c->c2s);
    free(c->sid);
    free(c);
    sm_user_release(u);
}

static void offline_deliver(sm_sess_t *s)
{
    fetch_ctx_t *c = xcalloc(1, sizeof *c);
    c->u = s->user;
    c->c2s = xstrdup(s->c2s);
    c->sid = xstrdup(s->sid);
    sm_user_hold(c->u);
    storage_list_async(sm_storage, s->user->bare, OFFLINE_COLL, fetch_listed, c);
}

/* Available broadcast presence with priority >= 0 (absent priority is 0;
 * an unreadable one is left to the presence module to refuse). */
static int offline_is_initial_like(const xml_node_t *st)
{
    if (!st->name || strcmp(st->name, "presence") != 0 || xml_attr_get(st, "type") ||
        xml_attr_get(st, "to"))
        return 0;
    xml_node_t *p = xml_child(st, st->ns, "priority");
    if (!p)
        return 1;
    char *text = xml_text(p), *end;
    long prio = strtol(text, &end, 10);
    while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
        end++;
    int ok = end != text && *end == '\0' && prio >= 0 && prio <= 127;
    free(text);
    return ok;
}

static sm_ret_t offline_presence_out(sm_sess_t *s, xml_node_t *pres)
{
    if (offline_is_initial_like(pres))
        offline_deliver(s);
    return SM_PASS;
}

static sm_ret_t offline_undelivered(sm_user_t *u, xml_node_t *msg)
{
    return offline_store(u, msg) == 0 ? SM_HANDLED : SM_PASS;
}

/* ------------------------------------------------------------ the rest */

static void offline_user_delete(sm_user_t *u)
{
    sm_store_del_all(u->bare, OFFLINE_COLL, NULL, NULL);
}

static const cfg_option_t offline_options[] = {
    {"max-messages", CFG_INT, "1000", 0, 1000000, 1, offsetof(offline_cfg_t, max), NULL,
     "Offline messages kept per user; past it senders get service-unavailable."},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, NULL},
};

static const sm_hooks_t offline_hooks = {
    .presence_out = offline_presence_out,
    .undelivered = offline_undelivered,
    .user_delete = offline_user_delete,
};

static const char *const offline_features[] = {"msgoffline", NULL};

sm_module_t sm_module_offline = {
    .name = "offline",
    .help = "Offline messages (XEP-0160): stores messages for users with no available session.",
    .options = offline_options,
    .config_size = sizeof(offline_cfg_t),
    .hooks = &offline_hooks,
    .server_features = offline_features,
};
