/* mod_push: push notifications (XEP-0357) for phones that sleep.
 *
 * A client enables push with an app server's JID, a node and optional
 * publish-options; when a message arrives that the device will not see by
 * itself, the sm publishes a notification to the app server (a pubsub
 * publish iq over the normal routes: a component or s2s), which wakes the
 * device through its vendor's push service. When to publish:
 *
 * - the session that enabled the registration is hibernated (XEP-0198: c2s
 *   says so, docs/session-protocol.md) and a message with a body (or a call)
 *   is delivered to it; and once when it hibernates with such messages
 *   unacknowledged (pending);
 * - the registration's session is gone (the device is offline) and a message
 *   goes undelivered (to offline storage: this module runs before offline).
 *
 * The notification is the urn:xmpp:push:summary form with message-count
 * only; push.include-sender and push.include-body add last-message-sender and
 * last-message-body (for self-hosted app servers: a vendor's push service
 * would read them). An error answer from the app server (any type but wait)
 * removes that registration, as XEP-0357 section 8 asks.
 *
 * Storage: collection "push" of the user, key "<jid>\n<node>", value the
 * <enable/> element as the client sent it (serialized). Read once when the
 * user is loaded, written on enable, deleted on disable, on an app server
 * error and with the account; always through the asynchronous storage API,
 * with the user held while a write is in flight so its next stanzas wait.
 *
 * Per-user state: the registrations, each with the session that enabled it
 * while that session lives (c2s instance and sid) and the count of messages
 * notified since the device last came back. */
#include "module.h"
#include "log.h"
#include "xml_stream.h"
#include <stdlib.h>
#include <string.h>

#define NS_PUSH "urn:xmpp:push:0"
#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define NS_XDATA "jabber:x:data"
#define NS_PUBLISH_OPTIONS "http://jabber.org/protocol/pubsub#publish-options"
#define NS_SUMMARY "urn:xmpp:push:summary"
#define COLL_PUSH "push"
#define PUSH_RECORD_MAX 16384      /* bytes of one stored <enable/> */
#define PUSH_OUTSTANDING 1024      /* publish iqs whose answer is awaited */
#define PUSH_BODY_MAX 512          /* bytes of last-message-body (cut on a UTF-8 boundary) */

typedef struct push_cfg {
    int include_sender;
    int include_body;
    long max_regs;
} push_cfg_t;

extern sm_module_t sm_module_push;

typedef struct push_reg {
    char *key;                 /* "jid\nnode" */
    char *jid, *node;
    xml_node_t *enable;        /* as stored: for its publish-options */
    char *c2s, *sid;           /* the enabling session while it lives, else NULL */
    unsigned count;            /* notified since the device came back */
    struct push_reg *next;
} push_reg_t;

typedef struct push_user {
    int loaded;                /* registrations read from storage */
    unsigned waiting;          /* undelivered messages seen before they were */
    push_reg_t *regs;
} push_user_t;

/* Publish iqs on their way: the answer finds its registration by id. */
typedef struct push_out {
    char id[32];
    char *user, *key;
} push_out_t;
static push_out_t outstanding[PUSH_OUTSTANDING];
static unsigned long long next_id;

static const push_cfg_t *push_cfg(void)
{
    return sm_module_config(&sm_module_push);
}

static void push_reg_free(push_reg_t *r)
{
    free(r->key);
    free(r->jid);
    free(r->node);
    xml_free(r->enable);
    free(r->c2s);
    free(r->sid);
    free(r);
}

static void push_state_free(sm_user_t *u, void *state)
{
    (void)u;
    push_user_t *pu = state;
    while (pu->regs) {
        push_reg_t *r = pu->regs;
        pu->regs = r->next;
        push_reg_free(r);
    }
    free(pu);
}

static push_user_t *push_user(sm_user_t *u)
{
    push_user_t *pu = sm_user_state(u, &sm_module_push);
    if (!pu) {
        pu = xcalloc(1, sizeof *pu);
        sm_user_state_set(u, &sm_module_push, pu);
    }
    return pu;
}

static char *push_key(const char *jid, const char *node)
{
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_printf(&sb, "%s\n%s", jid, node);
    return strbuf_steal(&sb);
}

/* A registration from an <enable/> (validated or read back); NULL if it is
 * not one. */
static push_reg_t *push_reg_new(const xml_node_t *enable)
{
    const char *jid = xml_attr_get(enable, "jid"), *node = xml_attr_get(enable, "node");
    if (!jid || !node || !*node)
        return NULL;
    jid_t j;
    if (jid_parse(jid, &j) != JID_OK)
        return NULL;
    push_reg_t *r = xcalloc(1, sizeof *r);
    r->jid = xstrdup(j.full);
    jid_clear(&j);
    r->node = xstrdup(node);
    r->key = push_key(r->jid, r->node);
    r->enable = xml_copy(enable);
    return r;
}

static push_reg_t **push_find(push_user_t *pu, const char *key)
{
    push_reg_t **pp = &pu->regs;
    while (*pp && strcmp((*pp)->key, key))
        pp = &(*pp)->next;
    return pp;
}

/* ---------------------------------------------------------------- publishing */

static void push_remember(const char *id, const char *user, const char *key)
{
    push_out_t *o = &outstanding[next_id % PUSH_OUTSTANDING];
    free(o->user);
    free(o->key);
    snprintf(o->id, sizeof o->id, "%s", id);
    o->user = xstrdup(user);
    o->key = xstrdup(key);
}

static void push_field(xml_node_t *x, const char *var, const char *value)
{
    xml_node_t *f = xml_add_child(x, NS_XDATA, "field");
    xml_attr_set(f, "var", var);
    xml_node_t *v = xml_add_child(f, NS_XDATA, "value");
    xml_add_text(v, value, strlen(value));
}

/* Publishes a notification for registration r of u; msg is the message that
 * caused it (NULL: pending ones at hibernation), count how many it stands
 * for. */
static void push_publish(sm_user_t *u, push_reg_t *r, const xml_node_t *msg, unsigned count, const char *why)
{
    const push_cfg_t *cfg = push_cfg();
    r->count += count;
    char id[32], num[16];
    snprintf(id, sizeof id, "push-%llu", ++next_id);
    xml_node_t *iq = xml_elem_new(NS_CLIENT, "iq");
    xml_attr_set(iq, "type", "set");
    xml_attr_set(iq, "from", u->bare);
    xml_attr_set(iq, "to", r->jid);
    xml_attr_set(iq, "id", id);
    xml_node_t *ps = xml_add_child(iq, NS_PUBSUB, "pubsub");
    xml_node_t *pub = xml_add_child(ps, NS_PUBSUB, "publish");
    xml_attr_set(pub, "node", r->node);
    xml_node_t *item = xml_add_child(pub, NS_PUBSUB, "item");
    xml_node_t *note = xml_add_child(item, NS_PUSH, "notification");
    xml_node_t *x = xml_add_child(note, NS_XDATA, "x");
    xml_attr_set(x, "type", "submit");
    push_field(x, "FORM_TYPE", NS_SUMMARY);
    snprintf(num, sizeof num, "%u", r->count);
    push_field(x, "message-count", num);
    const char *from = msg ? xml_attr_get(msg, "from") : NULL;
    if (cfg->include_sender && from)
        push_field(x, "last-message-sender", from);
    xml_node_t *body = msg ? xml_child(msg, NS_CLIENT, "body") : NULL;
    if (cfg->include_body && body) {
        char *text = xml_text(body);
        size_t n = strlen(text);
        if (n > PUSH_BODY_MAX) {
            n = PUSH_BODY_MAX;
            while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
                n--;
            text[n] = '\0';
        }
        push_field(x, "last-message-body", text);
        free(text);
    }
    xml_node_t *opts = xml_child(r->enable, NS_XDATA, "x");
    if (opts) {
        xml_node_t *po = xml_add_child(ps, NS_PUBSUB, "publish-options");
        xml_append(po, xml_copy(opts));
    }
    push_remember(id, u->bare, r->key);
    log_info("event=push-published user=%s service=%s id=%s count=%u reason=%s", u->bare, r->jid, id, r->count, why);
    sm_send(iq);
    xml_free(iq);
}

/* What wakes a phone: a message someone reads (a body) or a call. */
static int push_worthy(const xml_node_t *msg)
{
    const char *type = xml_attr_get(msg, "type");
    if (type && strcmp(type, "chat") && strcmp(type, "normal"))
        return 0;
    if (xml_child(msg, NS_CLIENT, "body"))
        return 1;
    for (const xml_node_t *ch = xml_child(msg, NULL, NULL); ch; ch = xml_next(ch, NULL, NULL))
        if (!strncmp(ch->ns, "urn:xmpp:jingle-message:", 24) && !strcmp(ch->name, "propose"))
            return 1;
    return 0;
}

static sm_sess_t *push_reg_session(const push_reg_t *r)
{
    return r->c2s ? sm_sess_lookup(r->c2s, r->sid) : NULL;
}

/* ---------------------------------------------------------------- storage */

typedef struct push_load {
    char *user;
} push_load_t;

static void push_loaded(storage_res_t *res, void *arg)
{
    push_load_t *ld = arg;
    sm_user_t *u = sm_user_get(ld->user);
    if (u) {
        push_user_t *pu = push_user(u);
        for (size_t i = 0; res->status >= 0 && i < res->nrecs; i++) {
            xml_limits_t lim;
            xml_limits_default(&lim);
            char err[128];
            unsigned line = 0;
            xml_node_t *en = xml_parse_document(res->recs[i].val, res->recs[i].len, &lim, err, sizeof err, &line);
            push_reg_t *r = en && !strcmp(en->ns, NS_PUSH) && !strcmp(en->name, "enable") ? push_reg_new(en) : NULL;
            xml_free(en);
            if (!r) {
                log_warn("event=push-load result=bad-record user=%s key=%s", ld->user, res->recs[i].key);
                continue;
            }
            push_reg_t **pp = push_find(pu, r->key);
            if (*pp) {
                push_reg_free(r);   /* enabled again while the list was read */
                continue;
            }
            r->next = pu->regs;
            pu->regs = r;
        }
        if (res->status < 0)
            log_warn("event=push-load result=storage-error user=%s", ld->user);
        pu->loaded = 1;
        /* Messages that went undelivered before the list was there. */
        for (push_reg_t *r = pu->regs; pu->waiting && r; r = r->next)
            if (!push_reg_session(r))
                push_publish(u, r, NULL, pu->waiting, "offline");
        pu->waiting = 0;
        sm_user_release(u);
    }
    free(ld->user);
    free(ld);
}

static void on_user_load(sm_user_t *u)
{
    push_user(u);
    push_load_t *ld = xcalloc(1, sizeof *ld);
    ld->user = xstrdup(u->bare);
    sm_user_hold(u);
    storage_list_async(sm_storage, u->bare, COLL_PUSH, push_loaded, ld);
}

static void on_user_delete(sm_user_t *u)
{
    storage_del_all_async(sm_storage, u->bare, COLL_PUSH, NULL, NULL);
}

/* A write for a user, with the user held until it is done; the iq (if any)
 * is answered then. */
typedef struct push_write {
    char *user;
    sm_iq_t *req;
    push_reg_t *reg;           /* enable: added to the user's list once stored */
    char **keys;               /* disable / app server error: removed once deleted */
    size_t nkeys, done;
    int failed;
} push_write_t;

static void push_write_end(push_write_t *w)
{
    sm_user_t *u = sm_user_get(w->user);
    push_user_t *pu = u ? push_user(u) : NULL;
    if (!w->failed && pu && w->reg) {
        push_reg_t **pp = push_find(pu, w->reg->key);
        if (*pp) {
            push_reg_t *old = *pp;
            *pp = old->next;
            push_reg_free(old);
        }
        w->reg->next = pu->regs;
        pu->regs = w->reg;
        w->reg = NULL;
    }
    for (size_t i = 0; !w->failed && pu && i < w->nkeys; i++) {
        push_reg_t **pp = push_find(pu, w->keys[i]);
        if (*pp) {
            push_reg_t *old = *pp;
            *pp = old->next;
            push_reg_free(old);
        }
    }
    if (w->req) {
        if (w->failed)
            sm_iq_error(w->req, "internal-server-error", "wait");
        else
            sm_iq_reply(w->req, NULL);
    }
    if (u)
        sm_user_release(u);
    if (w->reg)
        push_reg_free(w->reg);
    for (size_t i = 0; i < w->nkeys; i++)
        free(w->keys[i]);
    free(w->keys);
    free(w->user);
    free(w);
}

static void push_del_next(storage_res_t *res, void *arg);

static void push_del_step(push_write_t *w)
{
    if (w->done == w->nkeys || w->failed) {
        push_write_end(w);
        return;
    }
    storage_del_async(sm_storage, w->user, COLL_PUSH, w->keys[w->done], push_del_next, w);
}

static void push_del_next(storage_res_t *res, void *arg)
{
    push_write_t *w = arg;
    if (res->status < 0)
        w->failed = 1;
    w->done++;
    push_del_step(w);
}

static void push_put_done(storage_res_t *res, void *arg)
{
    push_write_t *w = arg;
    w->failed = res->status < 0;
    push_write_end(w);
}

static push_write_t *push_write_new(sm_user_t *u, sm_iq_t *req)
{
    push_write_t *w = xcalloc(1, sizeof *w);
    w->user = xstrdup(u->bare);
    w->req = req;
    sm_user_hold(u);
    return w;
}

/* Deletes the registrations of u named by keys (taken). */
static void push_delete(sm_user_t *u, sm_iq_t *req, char **keys, size_t n)
{
    push_write_t *w = push_write_new(u, req);
    w->keys = keys;
    w->nkeys = n;
    push_del_step(w);
}

/* ---------------------------------------------------------------- the iqs */

/* XEP-0357 section 5: <enable jid='' node=''>[publish-options form]</enable>,
 * from the account's own session; the registration belongs to that session
 * while it lives. */
static void push_enable(sm_iq_t *req)
{
    if (!req->own || !req->sess) {
        sm_iq_error(req, "forbidden", "auth");
        return;
    }
    xml_node_t *x = xml_child(req->payload, NS_XDATA, "x");
    const char *xt = x ? xml_attr_get(x, "type") : NULL;
    if (x && xt && strcmp(xt, "submit")) {
        sm_iq_error(req, "bad-request", "modify");
        return;
    }
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(req->payload, "", &sb);
    int too_big = sb.len > PUSH_RECORD_MAX;
    push_reg_t *r = too_big ? NULL : push_reg_new(req->payload);
    if (!r) {
        strbuf_free(&sb);
        sm_iq_error(req, too_big ? "not-acceptable" : "bad-request", "modify");
        return;
    }
    sm_user_t *u = req->user;
    push_user_t *pu = push_user(u);
    size_t n = 0;
    for (push_reg_t *o = pu->regs; o; o = o->next)
        n += strcmp(o->key, r->key) != 0;
    if ((long)n >= push_cfg()->max_regs) {
        strbuf_free(&sb);
        push_reg_free(r);
        log_info("event=push-enable result=too-many user=%s max=%ld", u->bare, push_cfg()->max_regs);
        sm_iq_error(req, "not-allowed", "cancel");
        return;
    }
    r->c2s = xstrdup(req->sess->c2s);
    r->sid = xstrdup(req->sess->sid);
    log_info("event=push-enabled user=%s service=%s session=%s", u->bare, r->jid, req->sess->jid.full);
    push_write_t *w = push_write_new(u, sm_iq_defer(req));
    w->reg = r;
    storage_put_async(sm_storage, u->bare, COLL_PUSH, r->key, sb.data, sb.len, push_put_done, w);
    strbuf_free(&sb);
}

/* <disable jid='' [node='']/>: that registration, or every one with jid. */
static void push_disable(sm_iq_t *req)
{
    if (!req->own) {
        sm_iq_error(req, "forbidden", "auth");
        return;
    }
    const char *jid = xml_attr_get(req->payload, "jid"), *node = xml_attr_get(req->payload, "node");
    jid_t j;
    if (!jid || jid_parse(jid, &j) != JID_OK) {
        sm_iq_error(req, "bad-request", "modify");
        return;
    }
    sm_user_t *u = req->user;
    push_user_t *pu = push_user(u);
    char **keys = NULL;
    size_t n = 0;
    for (push_reg_t *r = pu->regs; r; r = r->next) {
        if (strcmp(r->jid, j.full) || (node && strcmp(r->node, node)))
            continue;
        keys = xrealloc(keys, (n + 1) * sizeof *keys);
        keys[n++] = xstrdup(r->key);
    }
    log_info("event=push-disabled user=%s service=%s registrations=%zu", u->bare, j.full, n);
    jid_clear(&j);
    push_delete(u, sm_iq_defer(req), keys, n);
}

static void push_set(sm_iq_t *req)
{
    if (!strcmp(req->payload->name, "enable"))
        push_enable(req);
    else if (!strcmp(req->payload->name, "disable"))
        push_disable(req);
    else
        sm_iq_error(req, "bad-request", "modify");
}

/* ---------------------------------------------------------------- hooks */

/* A message delivered to a session that is hibernated: the registrations of
 * that session publish. to NULL: the message goes to the best sessions. */
static sm_ret_t on_message_in(sm_user_t *u, sm_sess_t *to, xml_node_t *msg)
{
    push_user_t *pu = sm_user_state(u, &sm_module_push);
    if (!pu || !pu->regs || !push_worthy(msg))
        return SM_PASS;
    sm_sess_t *best[64];
    size_t nbest = to ? 0 : sm_sess_best(u, best, 64);
    for (push_reg_t *r = pu->regs; r; r = r->next) {
        sm_sess_t *s = push_reg_session(r);
        if (!s || !s->hibernated)
            continue;
        int gets = s == to;
        for (size_t i = 0; !gets && i < nbest; i++)
            gets = best[i] == s;
        if (gets)
            push_publish(u, r, msg, 1, "hibernated");
    }
    return SM_PASS;
}

/* No session got it (it goes to offline storage next): every registration
 * whose device is not connected publishes. */
static sm_ret_t on_undelivered(sm_user_t *u, xml_node_t *msg)
{
    if (!push_worthy(msg))
        return SM_PASS;
    push_user_t *pu = push_user(u);
    if (!pu->loaded) {
        pu->waiting++;
        return SM_PASS;
    }
    for (push_reg_t *r = pu->regs; r; r = r->next)
        if (!push_reg_session(r))
            push_publish(u, r, msg, 1, "offline");
    return SM_PASS;
}

/* The answer of an app server to one of our publishes. */
static sm_ret_t on_iq_in(sm_user_t *u, sm_sess_t *to, xml_node_t *iq)
{
    const char *id = xml_attr_get(iq, "id"), *type = xml_attr_get(iq, "type");
    if (to || !id || strncmp(id, "push-", 5) || !type || (strcmp(type, "result") && strcmp(type, "error")))
        return SM_PASS;
    push_out_t *o = NULL;
    for (size_t i = 0; i < PUSH_OUTSTANDING && !o; i++)
        if (outstanding[i].user && !strcmp(outstanding[i].id, id) && !strcmp(outstanding[i].user, u->bare))
            o = &outstanding[i];
    if (!o)
        return SM_PASS;
    char *key = o->key;
    free(o->user);
    o->user = o->key = NULL;
    o->id[0] = '\0';
    push_user_t *pu = push_user(u);
    push_reg_t *r = *push_find(pu, key);
    const char *from = xml_attr_get(iq, "from");
    if (!r || !from || strcmp(from, r->jid)) {
        free(key);
        return r ? SM_PASS : SM_HANDLED;
    }
    if (!strcmp(type, "result")) {
        free(key);
        return SM_HANDLED;
    }
    xml_node_t *err = xml_child(iq, NULL, "error");
    const char *etype = err ? xml_attr_get(err, "type") : NULL;
    if (etype && !strcmp(etype, "wait")) {
        log_info("event=push-error user=%s service=%s id=%s result=kept type=wait", u->bare, r->jid, id);
        free(key);
        return SM_HANDLED;
    }
    log_notice("event=push-error user=%s service=%s id=%s result=disabled type=%s", u->bare, r->jid, id,
               etype ? etype : "-");
    char **keys = xcalloc(1, sizeof *keys);
    keys[0] = key;
    push_delete(u, NULL, keys, 1);
    return SM_HANDLED;
}

static void on_sess_hibernate(sm_sess_t *s, int on, unsigned pending)
{
    push_user_t *pu = sm_user_state(s->user, &sm_module_push);
    for (push_reg_t *r = pu ? pu->regs : NULL; r; r = r->next) {
        if (push_reg_session(r) != s)
            continue;
        if (!on)
            r->count = 0;   /* the device is back and reads for itself */
        else if (pending)
            push_publish(s->user, r, NULL, pending, "hibernated-pending");
    }
}

/* The session is gone: its registrations now stand for a device that is
 * offline. */
static void on_sess_end(sm_sess_t *s, xml_node_t *unavailable)
{
    (void)unavailable;
    push_user_t *pu = sm_user_state(s->user, &sm_module_push);
    for (push_reg_t *r = pu ? pu->regs : NULL; r; r = r->next) {
        if (r->c2s && !strcmp(r->c2s, s->c2s) && !strcmp(r->sid, s->sid)) {
            free(r->c2s);
            free(r->sid);
            r->c2s = r->sid = NULL;
        }
    }
}

static void push_free(void)
{
    for (size_t i = 0; i < PUSH_OUTSTANDING; i++) {
        free(outstanding[i].user);
        free(outstanding[i].key);
        outstanding[i].user = outstanding[i].key = NULL;
    }
}

static const cfg_option_t push_options[] = {
    {"include-sender", CFG_BOOL, "false", 0, 0, 1, offsetof(push_cfg_t, include_sender), NULL,
     "Put last-message-sender (the sender's JID) in push notifications; for app servers you run yourself."},
    {"include-body", CFG_BOOL, "false", 0, 0, 1, offsetof(push_cfg_t, include_body), NULL,
     "Put last-message-body (up to 512 bytes of the body) in push notifications; for app servers you run yourself."},
    {"max-registrations", CFG_INT, "20", 1, 1000, 1, offsetof(push_cfg_t, max_regs), NULL,
     "Push registrations (app server and node) one account may hold; one more gets not-allowed."},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, NULL},
};

static const sm_hooks_t push_hooks = {
    .user_load = on_user_load,
    .user_delete = on_user_delete,
    .message_in = on_message_in,
    .iq_in = on_iq_in,
    .undelivered = on_undelivered,
    .sess_end = on_sess_end,
    .sess_hibernate = on_sess_hibernate,
};

static const sm_iq_handler_t push_iqs[] = {
    {NS_PUSH, SM_IQ_ACCOUNT, NULL, push_set, "bad-request"},
    {NULL, 0, NULL, NULL, NULL},
};

static const char *const push_features[] = {NS_PUSH, NULL};

sm_module_t sm_module_push = {
    .name = "push",
    .help = "Push notifications (XEP-0357) to app servers for hibernated and offline devices.",
    .free = push_free,
    .options = push_options,
    .config_size = sizeof(push_cfg_t),
    .hooks = &push_hooks,
    .iqs = push_iqs,
    .account_features = push_features,
    .user_state_free = push_state_free,
};
