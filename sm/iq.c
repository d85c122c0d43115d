/* iq: the IQ registry. Loaded modules declare (namespace, target, get, set);
 * the core hands every iq get/set addressed to the domain or to an account's
 * bare JID to sm_iq_dispatch, which finds the handler by the payload's
 * namespace and answers the errors every module would otherwise repeat:
 * service-unavailable for a namespace nobody serves at that target (RFC 6120
 * 8.4 and RFC 6121 8.5.2.1.3 / 8.5.1 ask the same answer as for a missing
 * account, so a stranger learns nothing), and the registration's refusal
 * (service-unavailable unless it names another) for a type it has no
 * handler for. A malformed iq (no id, not one child) never gets here:
 * stanza_check answered bad-request at the entry point.
 *
 * Requests: a handler gets an sm_iq_t that lives on the stack of the
 * dispatch unless the handler defers it; then it is copied to the heap
 * (with the iq) and its user is held (core.c queues that user's stanzas)
 * until sm_iq_reply / sm_iq_error ends it. */
#include "module_run.h"
#include "store.h"
#include "comp_proto.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

typedef struct reg {
    const sm_iq_handler_t *h;
    const sm_module_t *m;
} reg_t;

static reg_t *regs;
static size_t nregs;

typedef struct req_ent {
    sm_iq_t req;                 /* first: a sm_iq_t* of ours is a req_ent_t* */
    const sm_module_t *m;
    int answered;
    int deferred;                /* on the heap, owns iq and from_bare */
    sm_user_t *held;             /* the user held while deferred */
    char *c2s, *sid;             /* deferred: the asking session, looked up again to answer */
    sm_ack_t *ack;               /* deferred: the router element is acknowledged after the answer */
} req_ent_t;

static const reg_t *lookup(const char *ns, unsigned where)
{
    for (size_t i = 0; i < nregs; i++)
        if ((regs[i].h->where & where) && !strcmp(regs[i].h->ns, ns))
            return &regs[i];
    return NULL;
}

int sm_iq_registry_init(void)
{
    sm_module_t *const *mods;
    size_t n = sm_modules_loaded(&mods);
    for (size_t i = 0; i < n; i++) {
        for (const sm_iq_handler_t *h = mods[i]->iqs; h && h->ns; h++) {
            const reg_t *dup = lookup(h->ns, h->where);
            if (dup) {
                log_error("event=module-failed module=%s reason=namespace-taken ns=%s by=%s", mods[i]->name,
                          h->ns, dup->m->name);
                return -1;
            }
            regs = xrealloc(regs, (nregs + 1) * sizeof *regs);
            regs[nregs].h = h;
            regs[nregs].m = mods[i];
            nregs++;
        }
    }
    return 0;
}

void sm_iq_registry_free(void)
{
    free(regs);
    regs = NULL;
    nregs = 0;
}

static const char *error_type(const char *cond)
{
    if (!strcmp(cond, "bad-request") || !strcmp(cond, "not-acceptable") || !strcmp(cond, "jid-malformed"))
        return "modify";
    if (!strcmp(cond, "forbidden") || !strcmp(cond, "not-authorized"))
        return "auth";
    return "cancel";
}

static void req_end(req_ent_t *e)
{
    e->answered = 1;
    if (!e->deferred)
        return;
    sm_user_t *held = e->held;
    sm_ack_t *ack = e->ack;
    xml_free(e->req.iq);
    free((char *)e->req.from_bare);
    free(e->c2s);
    free(e->sid);
    free(e);
    if (held)
        sm_user_release(held);       /* may process queued stanzas: e is gone already */
    sm_ack_drop(ack);
}

void sm_iq_reply(sm_iq_t *req, xml_node_t *payload)
{
    req_ent_t *e = (req_ent_t *)req;
    if (e->answered)
        log_panic("event=iq-reply reason=answered-twice module=%s", e->m->name);
    xml_node_t *res = sm_iq_result(req->iq);
    if (payload)
        xml_append(res, payload);
    sm_sess_t *s = req->sess;
    if (e->deferred && e->c2s)
        s = sm_sess_lookup(e->c2s, e->sid);    /* gone: routed to the full JID instead */
    sm_answer(s, res);
    req_end(e);
}

void sm_iq_error(sm_iq_t *req, const char *condition, const char *type)
{
    req_ent_t *e = (req_ent_t *)req;
    if (e->answered)
        log_panic("event=iq-error reason=answered-twice module=%s", e->m->name);
    sm_reply_error(req->iq, condition, type);
    req_end(e);
}

void sm_iq_error_app(sm_iq_t *req, const char *condition, const char *type, xml_node_t *app)
{
    req_ent_t *e = (req_ent_t *)req;
    if (e->answered)
        log_panic("event=iq-error reason=answered-twice module=%s", e->m->name);
    const xml_node_t *iq = req->iq;
    const char *from = xml_attr_get(iq, "from");
    if (from) {
        xml_node_t *r = xml_copy(iq);
        xml_attr_set(r, "to", from);
        xml_attr_set(r, "from", xml_attr_get(iq, "to"));
        xml_attr_set(r, "type", "error");
        xml_node_t *err = xml_add_child(r, iq->ns, "error");
        xml_attr_set(err, "type", type);
        xml_add_child(err, NS_STANZAS, condition);
        if (app)
            xml_append(err, app);
        app = NULL;
        sm_sess_t *s = req->sess;
        if (e->deferred && e->c2s)
            s = sm_sess_lookup(e->c2s, e->sid);
        log_debug("event=stanza-error condition=%s element=iq to=%s", condition, from);
        sm_answer(s, r);
    }
    xml_free(app);
    req_end(e);
}

sm_iq_t *sm_iq_defer(sm_iq_t *req)
{
    req_ent_t *e = (req_ent_t *)req;
    if (e->deferred || e->answered)
        log_panic("event=iq-defer reason=%s module=%s", e->answered ? "answered" : "deferred-twice", e->m->name);
    e->deferred = 1;                   /* the stack copy is spent */
    req_ent_t *h = xcalloc(1, sizeof *h);
    h->m = e->m;
    h->deferred = 1;
    h->req.iq = xml_copy(req->iq);
    h->req.payload = xml_child(h->req.iq, NULL, NULL);
    h->req.set = req->set;
    h->req.user = req->user;
    h->req.own = req->own;
    h->req.sess = NULL;
    h->req.from_bare = req->from_bare ? xstrdup(req->from_bare) : NULL;
    if (req->sess) {
        h->c2s = xstrdup(req->sess->c2s);
        h->sid = xstrdup(req->sess->sid);
    }
    h->ack = sm_ack_take();
    h->held = req->user ? req->user : (req->sess ? req->sess->user : NULL);
    if (h->held)
        sm_user_hold(h->held);
    return &h->req;
}

/* After the handler returned: the stack request was answered or deferred. */
static void req_finish(req_ent_t *e)
{
    if (e->answered || e->deferred)
        return;
    log_warn("event=iq-unanswered module=%s ns=%s", e->m->name, e->req.payload->ns);
    sm_reply_error(e->req.iq, "internal-server-error", "wait");
}

void sm_iq_dispatch(xml_node_t *iq, sm_user_t *u, sm_sess_t *sess, int no_to)
{
    xml_node_t *payload = xml_child(iq, NULL, NULL);
    const char *type = xml_attr_get(iq, "type");
    int set = sm_streq(type, "set");
    if (!payload || !payload->ns || (!set && !sm_streq(type, "get")))
        return;                        /* stanza_check lets nothing else through */
    const reg_t *r = NULL;
    if (u)
        r = lookup(payload->ns, SM_IQ_ACCOUNT);
    if (!r && (!u || no_to)) {
        r = lookup(payload->ns, SM_IQ_SERVER);
        if (r)
            u = NULL;
    }
    if (!r) {
        sm_reply_error(iq, "service-unavailable", "cancel");
        return;
    }
    sm_iq_fn fn = set ? r->h->set : r->h->get;
    if (!fn) {
        const char *cond = r->h->refuse ? r->h->refuse : "service-unavailable";
        sm_reply_error(iq, cond, error_type(cond));
        return;
    }
    const char *from = xml_attr_get(iq, "from");
    char *fb = from ? jid_bare_of(from) : NULL;
    req_ent_t e = {0};
    e.m = r->m;
    e.req.iq = iq;
    e.req.payload = payload;
    e.req.set = set;
    e.req.user = u;
    e.req.own = u && fb && !strcmp(fb, u->bare);
    e.req.sess = u && !e.req.own ? NULL : sess;
    e.req.from_bare = fb;
    fn(&e.req);
    req_finish(&e);
    free(fb);
}
