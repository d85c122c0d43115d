/* mod_jud: the user directory (XEP-0055 jabber:iq:search at the domain; the
 * "Jabber User Directory" of the Jabber white paper). Off by default
 * (<module name="jud"/> turns it on).
 *
 * - Who is listed: only users who chose it. A user opts in or out with an iq
 *   set to its own account (no 'to') in weft's namespace
 *   urn:xmpp:weft:jud:1: <listing xmlns='urn:xmpp:weft:jud:1' listed='true'/>
 *   (or 'false'); a get answers the current choice. A listed user is found
 *   by the fields of its vCard (mod_vcard's record), read at search time, so
 *   a vCard change shows at once.
 * - Search: a get to the domain answers the legacy fields (first, last,
 *   nick, email) with instructions and the same as a XEP-0004 form
 *   (FORM_TYPE jabber:iq:search); a set with legacy fields answers <item/>s,
 *   a set with a submitted form answers a result form with <reported/>
 *   fields. A field matches when the vCard's value contains the searched
 *   text, ignoring case (first: N/GIVEN, last: N/FAMILY, nick: NICKNAME,
 *   email: EMAIL/USERID); every given field must match; no field given lists
 *   every listed user. At most max-results items, in the index's order.
 * - Who may search: the domain's own users; others only with allow-remote
 *   (forbidden otherwise).
 *
 * Storage: the user's choice in collection "jud", key "" of the user; the
 * index of listed users in collection "jud", owner = the domain, key = the
 * bare JID. Both are written in one transaction and removed on user_delete.
 * (The storage API has no cross-user query; the index is the directory's own
 * record set. With storage drivers a range query over it would page it.) */
#include "mod_vcard.h"
#include "module.h"
#include "store.h"
#include "log.h"
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define NS_SEARCH "jabber:iq:search"
#define NS_XDATA "jabber:x:data"
#define NS_JUD "urn:xmpp:weft:jud:1"
#define NS_VCARD "vcard-temp"
#define COLL_JUD "jud"

typedef struct jud_cfg {
    long max_results;
    int allow_remote;
} jud_cfg_t;

extern sm_module_t sm_module_jud;

/* The searchable fields: name, form label, where in the vCard. */
static const struct {
    const char *var, *label, *el, *sub;
} fields[] = {
    {"first", "Given Name", "N", "GIVEN"},
    {"last", "Family Name", "N", "FAMILY"},
    {"nick", "Nickname", "NICKNAME", NULL},
    {"email", "Email", "EMAIL", "USERID"},
};
#define NFIELDS (sizeof fields / sizeof fields[0])

static void add_text(xml_node_t *parent, const char *ns, const char *name, const char *text)
{
    xml_node_t *c = xml_add_child(parent, ns, name);
    if (text && *text)
        xml_add_text(c, text, strlen(text));
}

/* The text of field i in vc, or NULL (the caller frees). */
static char *vcard_field(const xml_node_t *vc, size_t i)
{
    xml_node_t *el = xml_child(vc, NS_VCARD, fields[i].el);
    if (!el)
        return NULL;
    if (fields[i].sub) {
        xml_node_t *sub = xml_child(el, NS_VCARD, fields[i].sub);
        if (sub)
            return xml_text(sub);
        if (xml_child(el, NULL, NULL))
            return NULL;            /* EMAIL without USERID but with other children */
    }
    return xml_text(el);
}

/* --- opting in -------------------------------------------------------------------- */

static void listing_got(storage_res_t *res, void *arg)
{
    sm_iq_t *req = arg;
    if (res->status < 0) {
        sm_iq_error(req, "internal-server-error", "wait");
        return;
    }
    xml_node_t *l = xml_elem_new(NS_JUD, "listing");
    xml_attr_set(l, "listed", res->status == 0 ? "true" : "false");
    sm_iq_reply(req, l);
}

static void listing_get(sm_iq_t *req)
{
    if (!req->own) {
        sm_iq_error(req, "forbidden", "auth");
        return;
    }
    storage_get_async(sm_storage, req->user->bare, COLL_JUD, "", listing_got, sm_iq_defer(req));
}

static void listing_stored(int ok, void *arg)
{
    sm_iq_t *req = arg;
    if (!ok) {
        sm_iq_error(req, "internal-server-error", "wait");
        return;
    }
    log_info("event=jud-listing user=%s listed=%d", req->user->bare,
             sm_streq(xml_attr_get(req->payload, "listed"), "true") ||
             sm_streq(xml_attr_get(req->payload, "listed"), "1"));
    sm_iq_reply(req, NULL);
}

static void listing_set(sm_iq_t *req)
{
    const char *v = xml_attr_get(req->payload, "listed");
    int on = sm_streq(v, "true") || sm_streq(v, "1");
    if (!req->own) {
        sm_iq_error(req, "forbidden", "auth");
        return;
    }
    if (strcmp(req->payload->name, "listing") || (!on && !sm_streq(v, "false") && !sm_streq(v, "0"))) {
        sm_iq_error(req, "bad-request", "modify");
        return;
    }
    const char *bare = req->user->bare;
    sm_batch_t *b = sm_batch_new();
    if (on) {
        sm_batch_put(b, bare, COLL_JUD, "", "1", 1);
        sm_batch_put(b, sm_config->domain, COLL_JUD, bare, "", 0);
    } else {
        sm_batch_del(b, bare, COLL_JUD, "");
        sm_batch_del(b, sm_config->domain, COLL_JUD, bare);
    }
    sm_batch_commit(b, listing_stored, sm_iq_defer(req));
}

/* --- searching -------------------------------------------------------------------- */

static void search_get(sm_iq_t *req)
{
    xml_node_t *q = xml_elem_new(NS_SEARCH, "query");
    static const char *const how = "Fill in a field to search for users listed in this server's directory.";
    add_text(q, NS_SEARCH, "instructions", how);
    for (size_t i = 0; i < NFIELDS; i++)
        xml_add_child(q, NS_SEARCH, fields[i].var);
    xml_node_t *x = xml_add_child(q, NS_XDATA, "x");
    xml_attr_set(x, "type", "form");
    add_text(x, NS_XDATA, "title", "User directory");
    add_text(x, NS_XDATA, "instructions", how);
    xml_node_t *ft = xml_add_child(x, NS_XDATA, "field");
    xml_attr_set(ft, "type", "hidden");
    xml_attr_set(ft, "var", "FORM_TYPE");
    add_text(ft, NS_XDATA, "value", NS_SEARCH);
    for (size_t i = 0; i < NFIELDS; i++) {
        xml_node_t *f = xml_add_child(x, NS_XDATA, "field");
        xml_attr_set(f, "type", "text-single");
        xml_attr_set(f, "label", fields[i].label);
        xml_attr_set(f, "var", fields[i].var);
    }
    sm_iq_reply(req, q);
}

typedef struct search {
    char *want[NFIELDS];       /* searched text per field, or NULL */
    int form;                  /* answer as a XEP-0004 result form */
    xml_node_t *out;           /* <query/> or its <x/> */
    long found, max;
} search_t;

/* The criteria of a set: a submitted form, or the legacy fields. */
static void search_parse(search_t *s, const xml_node_t *q)
{
    xml_node_t *x = xml_child(q, NS_XDATA, "x");
    s->form = x != NULL;
    for (size_t i = 0; i < NFIELDS; i++) {
        char *t = NULL;
        if (x) {
            for (xml_node_t *f = xml_child(x, NS_XDATA, "field"); f && !t; f = xml_next(f, NS_XDATA, "field")) {
                xml_node_t *v = sm_streq(xml_attr_get(f, "var"), fields[i].var) ? xml_child(f, NS_XDATA, "value")
                                                                              : NULL;
                t = v ? xml_text(v) : NULL;
            }
        } else {
            xml_node_t *el = xml_child(q, NS_SEARCH, fields[i].var);
            t = el ? xml_text(el) : NULL;
        }
        if (t && !*t) {
            free(t);
            t = NULL;
        }
        s->want[i] = t;
    }
}

static void field_value(xml_node_t *item, const char *var, const char *value)
{
    xml_node_t *f = xml_add_child(item, NS_XDATA, "field");
    xml_attr_set(f, "var", var);
    add_text(f, NS_XDATA, "value", value ? value : "");
}

/* One listed user: added to the answer when its vCard matches. */
static void search_one(search_t *s, const char *bare, const xml_node_t *vc)
{
    if (s->found >= s->max)
        return;
    char *got[NFIELDS];
    int match = 1;
    for (size_t i = 0; i < NFIELDS; i++) {
        got[i] = vc ? vcard_field(vc, i) : NULL;
        if (s->want[i] && (!got[i] || !strcasestr(got[i], s->want[i])))
            match = 0;
    }
    if (match) {
        s->found++;
        xml_node_t *item;
        if (s->form) {
            item = xml_add_child(s->out, NS_XDATA, "item");
            field_value(item, "jid", bare);
            for (size_t i = 0; i < NFIELDS; i++)
                field_value(item, fields[i].var, got[i]);
        } else {
            item = xml_add_child(s->out, NS_SEARCH, "item");
            xml_attr_set(item, "jid", bare);
            for (size_t i = 0; i < NFIELDS; i++)
                add_text(item, NS_SEARCH, fields[i].var, got[i]);
        }
    }
    for (size_t i = 0; i < NFIELDS; i++)
        free(got[i]);
}

/* A search waiting for storage: the index, then every listed user's vCard
 * (read together; matched in the index's order once all are there). */
typedef struct search_op {
    search_t s;
    sm_iq_t *req;
    xml_node_t *q;
    char **bares;
    xml_node_t **vcs;
    size_t n;
    size_t left;
} search_op_t;

typedef struct vslot {
    search_op_t *op;
    size_t i;
} vslot_t;

static void search_end(search_op_t *op, int failed)
{
    if (failed) {
        xml_free(op->q);
        sm_iq_error(op->req, "internal-server-error", "wait");
    } else {
        for (size_t i = 0; i < op->n; i++)
            search_one(&op->s, op->bares[i], op->vcs[i]);
        log_debug("event=jud-search from=%s found=%ld", op->req->from_bare ? op->req->from_bare : "-",
                  op->s.found);
        sm_iq_reply(op->req, op->q);
    }
    for (size_t i = 0; i < NFIELDS; i++)
        free(op->s.want[i]);
    for (size_t i = 0; i < op->n; i++) {
        free(op->bares[i]);
        xml_free(op->vcs[i]);
    }
    free(op->bares);
    free(op->vcs);
    free(op);
}

static void search_vcard(int rc, xml_node_t *vc, void *arg)
{
    vslot_t *sl = arg;
    search_op_t *op = sl->op;
    op->vcs[sl->i] = vc;
    (void)rc;                                 /* unreadable: no match */
    free(sl);
    if (--op->left == 0)
        search_end(op, 0);
}

static void search_listed(storage_res_t *res, void *arg)
{
    search_op_t *op = arg;
    if (res->status < 0) {
        search_end(op, 1);
        return;
    }
    op->n = res->nrecs;
    op->bares = xcalloc(op->n + 1, sizeof *op->bares);
    op->vcs = xcalloc(op->n + 1, sizeof *op->vcs);
    op->left = op->n + 1;                     /* + 1: until every read is submitted */
    for (size_t i = 0; i < op->n; i++) {
        op->bares[i] = xstrdup(res->recs[i].key);
        vslot_t *sl = xmalloc(sizeof *sl);
        sl->op = op;
        sl->i = i;
        sm_vcard_load(op->bares[i], search_vcard, sl);
    }
    if (--op->left == 0)
        search_end(op, 0);
}

static void search_set(sm_iq_t *req)
{
    const jud_cfg_t *cfg = sm_module_config(&sm_module_jud);
    search_t s = {0};
    s.max = cfg->max_results;
    search_parse(&s, req->payload);
    xml_node_t *q = xml_elem_new(NS_SEARCH, "query");
    s.out = q;
    if (s.form) {
        xml_node_t *x = xml_add_child(q, NS_XDATA, "x");
        xml_attr_set(x, "type", "result");
        xml_node_t *ft = xml_add_child(x, NS_XDATA, "field");
        xml_attr_set(ft, "type", "hidden");
        xml_attr_set(ft, "var", "FORM_TYPE");
        add_text(ft, NS_XDATA, "value", NS_SEARCH);
        xml_node_t *rep = xml_add_child(x, NS_XDATA, "reported");
        xml_node_t *jf = xml_add_child(rep, NS_XDATA, "field");
        xml_attr_set(jf, "var", "jid");
        xml_attr_set(jf, "label", "JID");
        xml_attr_set(jf, "type", "jid-single");
        for (size_t i = 0; i < NFIELDS; i++) {
            xml_node_t *f = xml_add_child(rep, NS_XDATA, "field");
            xml_attr_set(f, "var", fields[i].var);
            xml_attr_set(f, "label", fields[i].label);
            xml_attr_set(f, "type", "text-single");
        }
        s.out = x;
    }
    search_op_t *op = xcalloc(1, sizeof *op);
    op->s = s;
    op->q = q;
    op->req = sm_iq_defer(req);
    storage_list_async(sm_storage, sm_config->domain, COLL_JUD, search_listed, op);
}

/* Strangers from other servers search only when the operator allows it. */
static int may_search(sm_iq_t *req)
{
    const jud_cfg_t *cfg = sm_module_config(&sm_module_jud);
    const char *at = req->from_bare ? strchr(req->from_bare, '@') : NULL;
    if (cfg->allow_remote || (at && sm_is_local(at + 1)))
        return 1;
    sm_iq_error(req, "forbidden", "auth");
    return 0;
}

static void search_get_checked(sm_iq_t *req)
{
    if (may_search(req))
        search_get(req);
}

static void search_set_checked(sm_iq_t *req)
{
    if (may_search(req))
        search_set(req);
}

static void on_user_delete(sm_user_t *u)
{
    sm_store_del_all(u->bare, COLL_JUD, NULL, NULL);
    sm_store_del(sm_config->domain, COLL_JUD, u->bare, NULL, NULL);
}

static const cfg_option_t jud_options[] = {
    {"max-results", CFG_INT, "50", 1, 10000, 1, offsetof(jud_cfg_t, max_results), NULL,
     "Most users one directory search answers."},
    {"allow-remote", CFG_BOOL, "false", 0, 0, 1, offsetof(jud_cfg_t, allow_remote), NULL,
     "Let users of other servers search the directory (else forbidden)."},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, NULL},
};

static const sm_hooks_t jud_hooks = {
    .user_delete = on_user_delete,
};

static const sm_iq_handler_t jud_iqs[] = {
    {NS_SEARCH, SM_IQ_SERVER, search_get_checked, search_set_checked, NULL},
    {NS_JUD, SM_IQ_ACCOUNT, listing_get, listing_set, NULL},
    {NULL, 0, NULL, NULL, NULL},
};

static const char *const jud_features[] = {NS_SEARCH, NULL};

sm_module_t sm_module_jud = {
    .name = "jud",
    .help = "User directory (XEP-0055 search of the vCards of users who opted in); off by default.",
    .off_by_default = 1,
    .options = jud_options,
    .config_size = sizeof(jud_cfg_t),
    .hooks = &jud_hooks,
    .iqs = jud_iqs,
    .server_features = jud_features,
};
