/* mod_vcard: vcard-temp (XEP-0054) for local accounts.
 *
 * - get, from anyone, to an account's bare JID (or with no 'to' / to the
 *   sender's own bare JID: the sender's own vCard): the stored <vCard/>, or an
 *   empty <vCard xmlns='vcard-temp'/> when the user never published one (what
 *   clients expect; XEP-0054 allows either that or item-not-found).
 * - set, only by a session of the account itself: replaces the stored vCard;
 *   an empty <vCard/> deletes it. Larger than VCARD_MAX bytes serialized:
 *   not-acceptable. A set to another account: forbidden.
 * - vcard-temp is advertised on the domain and on accounts.
 *
 * Storage: collection "vcard", key "" of the owner: the <vCard/> element
 * serialized with its namespace declared. The write is committed before the
 * result leaves. user_delete removes it. No per-user state. */
#include "mod_vcard.h"
#include "module.h"
#include "store.h"
#include "log.h"
#include "xml_stream.h"
#include <stdlib.h>
#include <string.h>

#define NS_VCARD "vcard-temp"
#define COLL_VCARD "vcard"
#define VCARD_MAX (64u * 1024u)   /* bytes of one serialized vCard */

/* The stored record parsed back, or NULL (logged) when unreadable. */
static xml_node_t *vcard_parse(const char *owner, const char *val, size_t len)
{
    xml_limits_t lim;
    xml_limits_default(&lim);
    lim.max_stanza_bytes = VCARD_MAX * 2;
    char err[128];
    unsigned line = 0;
    xml_node_t *vc = xml_parse_document(val, len, &lim, err, sizeof err, &line);
    if (!vc || strcmp(vc->ns, NS_VCARD) || strcmp(vc->name, "vCard")) {
        log_warn("event=vcard-load result=bad-record user=%s error=\"%s\"", owner, vc ? "not a vCard" : err);
        xml_free(vc);
        vc = NULL;
    }
    return vc;
}

typedef struct load_ctx {
    char *owner;
    sm_vcard_fn fn;
    void *arg;
} load_ctx_t;

static void vcard_loaded(storage_res_t *res, void *arg)
{
    load_ctx_t *c = arg;
    xml_node_t *vc = res->status == 0 ? vcard_parse(c->owner, res->val, res->len) : NULL;
    c->fn(res->status < 0 ? -1 : 0, vc, c->arg);
    free(c->owner);
    free(c);
}

void sm_vcard_load(const char *owner, sm_vcard_fn fn, void *arg)
{
    load_ctx_t *c = xmalloc(sizeof *c);
    c->owner = xstrdup(owner);
    c->fn = fn;
    c->arg = arg;
    storage_get_async(sm_storage, owner, COLL_VCARD, "", vcard_loaded, c);
}

static void vcard_got(storage_res_t *res, void *arg)
{
    sm_iq_t *req = arg;
    if (res->status < 0) {
        sm_iq_error(req, "internal-server-error", "wait");
        return;
    }
    xml_node_t *vc = res->status == 0 ? vcard_parse(req->user->bare, res->val, res->len) : NULL;
    sm_iq_reply(req, vc ? vc : xml_elem_new(NS_VCARD, "vCard"));
}

/* From anyone: the stored vCard, or an empty one. Written on storage's
 * asynchronous form: the request is deferred and answered from the callback
 * (at once on SQLite, from the event loop on a network database). */
static void vcard_get(sm_iq_t *req)
{
    sm_iq_t *later = sm_iq_defer(req);
    storage_get_async(sm_storage, later->user->bare, COLL_VCARD, "", vcard_got, later);
}

static void vcard_stored(storage_res_t *res, void *arg)
{
    sm_iq_t *req = arg;
    if (res->status < 0)
        sm_iq_error(req, "internal-server-error", "wait");
    else
        sm_iq_reply(req, NULL);
}

/* Only by the account itself; answered once the write committed. */
static void vcard_set(sm_iq_t *req)
{
    sm_user_t *u = req->user;
    xml_node_t *vc = req->payload;
    if (!req->own) {
        sm_iq_error(req, "forbidden", "auth");
        return;
    }
    if (!xml_child(vc, NULL, NULL)) {
        sm_store_del(u->bare, COLL_VCARD, "", vcard_stored, sm_iq_defer(req));
    } else {
        strbuf_t sb;
        strbuf_init(&sb);
        xml_serialize(vc, "", &sb);
        if (sb.len > VCARD_MAX) {
            strbuf_free(&sb);
            log_info("event=vcard-set result=too-large user=%s", u->bare);
            sm_iq_error(req, "not-acceptable", "modify");
            return;
        }
        sm_store_put(u->bare, COLL_VCARD, "", sb.data, sb.len, vcard_stored, sm_iq_defer(req));
        strbuf_free(&sb);
    }
}

static void on_user_delete(sm_user_t *u)
{
    sm_store_del_all(u->bare, COLL_VCARD, NULL, NULL);
}

static const sm_hooks_t vcard_hooks = {
    .user_delete = on_user_delete,
};

static const sm_iq_handler_t vcard_iqs[] = {
    {NS_VCARD, SM_IQ_ACCOUNT, vcard_get, vcard_set, NULL},
    {NULL, 0, NULL, NULL, NULL},
};

static const char *const vcard_features[] = {NS_VCARD, NULL};

sm_module_t sm_module_vcard = {
    .name = "vcard",
    .help = "vCards (XEP-0054) of local accounts.",
    .hooks = &vcard_hooks,
    .iqs = vcard_iqs,
    .server_features = vcard_features,
    .account_features = vcard_features,
};
