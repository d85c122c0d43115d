/* mod_roster: the roster (RFC 6121 section 2), roster versioning (XEP-0237)
 * and the presence subscription state machine (RFC 6121 section 3 and
 * Appendix A), for local and remote contacts alike: what goes to a contact
 * leaves through sm_send, whatever server it lives on.
 *
 * State per contact: subscription (none/to/from/both), pending out ('ask'),
 * pending in (a subscribe request not yet answered; the request itself is kept
 * and delivered again when the user next becomes available) and pre-approval
 * ('approved'). A record exists while the contact is in the roster or has a
 * pending-in request (such a contact is not shown in the roster).
 *
 * Storage (owner = the user's bare JID): "roster" key contact → serialized
 * <item/> with our own attributes; "roster-pending" key contact → the pending
 * subscribe stanza; "roster-ver" key "ver" → the roster version, a counter
 * bumped by every change a client can see. A change is one storage batch
 * (store.h) submitted at once; the iq result and the pushes of a roster set
 * leave from its callback, once committed. Subscription changes update
 * memory at once and go on; their writes hold the router's acknowledgement
 * of the presence that caused them until committed.
 *
 * Memory: the module's user state holds the roster, loaded by the user_load
 * hook asynchronously while the user is held (its stanzas wait). Every
 * change runs the roster_change hooks. */
#include "mod_roster.h"
#include "module.h"
#include "store.h"
#include <stddef.h>
#include "log.h"
#include "xml_stream.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_ROSTER "jabber:iq:roster"
#define COLL "roster"
#define COLL_PENDING "roster-pending"
#define COLL_VER "roster-ver"

/* Kept for every contact of every loaded user (docs/performance.md, memory
 * per session). Flags are bits, and the item's strings are packed into one
 * buffer, "jid\0name\0group1\0group2\0...", so that an item is two heap
 * chunks (a 32-byte struct and its text) instead of 4 + one per group: glibc
 * adds ~16 bytes to every chunk and makes none smaller than 32, so separate
 * jid, name, groups array and group strings cost more in malloc overhead than
 * in text. Read the strings through item_jid, item_name and
 * item_groups/group_next; change them only with item_set. */
typedef struct ritem {
    struct ritem *next;
    struct ritem *hnext;       /* chain of its bucket in roster_t.hash (fits the same malloc chunk) */
    xml_node_t *pending;
    char *text;                /* "jid\0name\0groups...": see item_set */
    unsigned sub : 2;          /* sm_sub_t bits: SM_SUB_TO | SM_SUB_FROM */
    unsigned ask : 1;          /* pending out */
    unsigned approved : 1;     /* pre-approved (RFC 6121 3.4) */
    unsigned pending_in : 1;   /* xml in pending (owned) */
    unsigned in_roster : 1;    /* visible roster item */
    unsigned has_name : 1;     /* name present (it may be empty), else none */
    unsigned ngroups;          /* strings after the name in text */
} ritem_t;

typedef struct roster {
    ritem_t *items;
    size_t count;              /* in_roster items */
    unsigned long ver;
    /* Items by JID once there are more than ROSTER_INDEX_MIN of them: PEP
     * and presence ask "is X a contact?" once per contact, so a list scan
     * made a publish to 1,000 contacts a million string compares (59 % of
     * the sm's time in the PEP benchmark). */
    ritem_t **hash;
    size_t nbuckets;           /* a power of two; 0: no index yet */
    size_t nitems;             /* every item, in the roster or only pending */
} roster_t;

#define ROSTER_INDEX_MIN 16

static size_t jid_bucket(const roster_t *r, const char *jid)
{
    uint32_t h = 2166136261u;
    for (; *jid; jid++)
        h = (h ^ (unsigned char)*jid) * 16777619u;
    return h & (r->nbuckets - 1);
}

static const char *item_jid(const ritem_t *it);
static ritem_t *item_find(roster_t *r, const char *jid);

static void index_put(roster_t *r, ritem_t *it)
{
    size_t b = jid_bucket(r, item_jid(it));
    it->hnext = r->hash[b];
    r->hash[b] = it;
}

/* Called after an item joins the list: builds or grows the index. */
static void index_added(roster_t *r, ritem_t *it)
{
    r->nitems++;
    if (r->nbuckets && r->nitems <= 2 * r->nbuckets) {
        index_put(r, it);
        return;
    }
    if (!r->nbuckets && r->nitems <= ROSTER_INDEX_MIN)
        return;
    free(r->hash);
    r->nbuckets = r->nbuckets ? 4 * r->nbuckets : 64;
    r->hash = xcalloc(r->nbuckets, sizeof *r->hash);
    for (ritem_t *x = r->items; x; x = x->next)
        index_put(r, x);
}

static void index_removed(roster_t *r, ritem_t *it)
{
    r->nitems--;
    if (!r->nbuckets)
        return;
    for (ritem_t **pp = &r->hash[jid_bucket(r, item_jid(it))]; *pp; pp = &(*pp)->hnext) {
        if (*pp == it) {
            *pp = it->hnext;
            return;
        }
    }
}

typedef struct roster_cfg {
    long max_items;            /* roster items per user */
} roster_cfg_t;

extern sm_module_t sm_module_roster;
static unsigned long push_ids;

static size_t roster_max(void)
{
    return (size_t)((const roster_cfg_t *)sm_module_config(&sm_module_roster))->max_items;
}

static const char *sub_name(int sub)
{
    static const char *names[] = {"none", "to", "from", "both"};
    return names[sub & 3];
}

static int sub_parse(const char *s)
{
    if (sm_streq(s, "to"))
        return SM_SUB_TO;
    if (sm_streq(s, "from"))
        return SM_SUB_FROM;
    if (sm_streq(s, "both"))
        return SM_SUB_BOTH;
    return SM_SUB_NONE;
}

/* The contact (prepared JID, normally bare). */
static const char *item_jid(const ritem_t *it)
{
    return it->text;
}

/* NULL when the item has no name. */
static const char *item_name(const ritem_t *it)
{
    const char *n = it->text + strlen(it->text) + 1;
    return it->has_name ? n : NULL;
}

/* The first of it->ngroups group names (meaningless when there are none);
 * group_next steps to the following one:
 *   const char *g = item_groups(it);
 *   for (unsigned i = 0; i < it->ngroups; i++, g = group_next(g)) ... */
static const char *item_groups(const ritem_t *it)
{
    const char *n = it->text + strlen(it->text) + 1;
    return n + strlen(n) + 1;
}

static const char *group_next(const char *g)
{
    return g + strlen(g) + 1;
}

/* Sets the jid, name (NULL: none) and groups at once, in a new text buffer;
 * the arguments may point into the old one, freed after. */
static void item_set(ritem_t *it, const char *jid, const char *name, char *const *groups, unsigned ngroups)
{
    size_t jl = strlen(jid) + 1, nl = name ? strlen(name) + 1 : 1, len = jl + nl;
    for (unsigned i = 0; i < ngroups; i++)
        len += strlen(groups[i]) + 1;
    char *t = xmalloc(len), *p = t;
    memcpy(p, jid, jl);
    p += jl;
    if (name)
        memcpy(p, name, nl);
    else
        *p = '\0';
    p += nl;
    for (unsigned i = 0; i < ngroups; i++) {
        size_t gl = strlen(groups[i]) + 1;
        memcpy(p, groups[i], gl);
        p += gl;
    }
    free(it->text);
    it->text = t;
    it->has_name = name != NULL;
    it->ngroups = ngroups;
}

static void item_free(ritem_t *it)
{
    free(it->text);
    xml_free(it->pending);
    free(it);
}

static xml_node_t *parse_stored(const char *val, size_t len)
{
    xml_limits_t lim;
    xml_limits_default(&lim);
    char err[128];
    unsigned line = 0;
    return xml_parse_document(val, len, &lim, err, sizeof err, &line);
}

typedef struct load_ctx {
    roster_t *r;
    const char *owner;
} load_ctx_t;

static int load_item(const char *key, const char *val, size_t len, void *arg)
{
    load_ctx_t *lc = arg;
    xml_node_t *x = parse_stored(val, len);
    if (!x) {
        log_warn("event=roster-load result=bad-record user=%s contact=%s", lc->owner, key);
        return 0;
    }
    ritem_t *it = xcalloc(1, sizeof *it);
    unsigned ng = 0;
    for (xml_node_t *g = xml_child(x, NULL, "group"); g; g = xml_next(g, NULL, "group"))
        ng++;
    char **groups = ng ? xcalloc(ng, sizeof *groups) : NULL;
    unsigned k = 0;
    for (xml_node_t *g = xml_child(x, NULL, "group"); g; g = xml_next(g, NULL, "group"))
        groups[k++] = xml_text(g);
    item_set(it, key, xml_attr_get(x, "name"), groups, k);
    for (unsigned i = 0; i < k; i++)
        free(groups[i]);
    free(groups);
    it->sub = sub_parse(xml_attr_get(x, "subscription"));
    it->ask = sm_streq(xml_attr_get(x, "ask"), "subscribe");
    it->approved = sm_streq(xml_attr_get(x, "approved"), "true");
    it->pending_in = sm_streq(xml_attr_get(x, "pending-in"), "true");
    it->in_roster = !sm_streq(xml_attr_get(x, "in-roster"), "false");
    xml_free(x);
    it->next = lc->r->items;
    lc->r->items = it;
    index_added(lc->r, it);
    if (it->in_roster)
        lc->r->count++;
    return 0;
}

static int load_pending(const char *key, const char *val, size_t len, void *arg)
{
    load_ctx_t *lc = arg;
    ritem_t *it = item_find(lc->r, key);
    if (it) {
        xml_free(it->pending);
        it->pending = parse_stored(val, len);
    }
    return 0;
}

/* The loaded roster (empty when the module state is gone: after account
 * removal). */
static roster_t *roster_get(sm_user_t *u)
{
    roster_t *r = sm_user_state(u, &sm_module_roster);
    if (!r) {
        r = xcalloc(1, sizeof *r);
        sm_user_state_set(u, &sm_module_roster, r);
    }
    return r;
}

/* Loading: three reads submitted together; the last answer releases the
 * user. */
typedef struct roster_load {
    sm_user_t *u;
    int left;
} roster_load_t;

static void load_step_done(roster_load_t *l)
{
    if (--l->left)
        return;
    sm_user_release(l->u);
    free(l);
}

static void loaded_items(storage_res_t *res, void *arg)
{
    roster_load_t *l = arg;
    load_ctx_t lc = {roster_get(l->u), l->u->bare};
    if (res->status < 0)
        log_warn("event=roster-load result=error user=%s", l->u->bare);
    for (size_t i = 0; i < res->nrecs; i++)
        load_item(res->recs[i].key, res->recs[i].val, res->recs[i].len, &lc);
    load_step_done(l);
}

static void loaded_pending(storage_res_t *res, void *arg)
{
    roster_load_t *l = arg;
    load_ctx_t lc = {roster_get(l->u), l->u->bare};
    for (size_t i = 0; i < res->nrecs; i++)
        load_pending(res->recs[i].key, res->recs[i].val, res->recs[i].len, &lc);
    load_step_done(l);
}

static void loaded_ver(storage_res_t *res, void *arg)
{
    roster_load_t *l = arg;
    if (res->status == 0)
        roster_get(l->u)->ver = strtoul(res->val, NULL, 10);
    load_step_done(l);
}

static void on_user_load(sm_user_t *u)
{
    roster_get(u);
    roster_load_t *l = xcalloc(1, sizeof *l);
    l->u = u;
    l->left = 3;
    sm_user_hold(u);
    storage_list_async(sm_storage, u->bare, COLL, loaded_items, l);
    storage_list_async(sm_storage, u->bare, COLL_PENDING, loaded_pending, l);
    storage_get_async(sm_storage, u->bare, COLL_VER, "ver", loaded_ver, l);
}

static ritem_t *item_find(roster_t *r, const char *jid)
{
    if (r->nbuckets) {
        for (ritem_t *it = r->hash[jid_bucket(r, jid)]; it; it = it->hnext)
            if (!strcmp(item_jid(it), jid))
                return it;
        return NULL;
    }
    for (ritem_t *it = r->items; it; it = it->next)
        if (!strcmp(item_jid(it), jid))
            return it;
    return NULL;
}

static ritem_t *item_new(roster_t *r, const char *jid)
{
    ritem_t *it = xcalloc(1, sizeof *it);
    item_set(it, jid, NULL, NULL, 0);
    it->next = r->items;
    r->items = it;
    index_added(r, it);
    return it;
}

static void item_unlink(roster_t *r, ritem_t *it)
{
    for (ritem_t **pp = &r->items; *pp; pp = &(*pp)->next) {
        if (*pp == it) {
            *pp = it->next;
            index_removed(r, it);
            return;
        }
    }
}

/* --- storage ------------------------------------------------------------------- */

static void item_store(sm_batch_t *b, sm_user_t *u, ritem_t *it)
{
    if (!it->in_roster && !it->pending_in) {
        sm_batch_del(b, u->bare, COLL_PENDING, item_jid(it));
        sm_batch_del(b, u->bare, COLL, item_jid(it));
        return;
    }
    xml_node_t *x = xml_elem_new(NULL, "item");
    if (it->has_name)
        xml_attr_set(x, "name", item_name(it));
    xml_attr_set(x, "subscription", sub_name(it->sub));
    if (it->ask)
        xml_attr_set(x, "ask", "subscribe");
    if (it->approved)
        xml_attr_set(x, "approved", "true");
    if (it->pending_in)
        xml_attr_set(x, "pending-in", "true");
    if (!it->in_roster)
        xml_attr_set(x, "in-roster", "false");
    const char *gn = item_groups(it);
    for (unsigned i = 0; i < it->ngroups; i++, gn = group_next(gn)) {
        xml_node_t *g = xml_add_child(x, NULL, "group");
        xml_add_text(g, gn, strlen(gn));
    }
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(x, "", &sb);
    sm_batch_put(b, u->bare, COLL, item_jid(it), sb.data, sb.len);
    strbuf_free(&sb);
    xml_free(x);
    if (it->pending_in && it->pending) {
        strbuf_init(&sb);
        xml_serialize(it->pending, "", &sb);
        sm_batch_put(b, u->bare, COLL_PENDING, item_jid(it), sb.data, sb.len);
        strbuf_free(&sb);
    } else if (!it->pending_in) {
        sm_batch_del(b, u->bare, COLL_PENDING, item_jid(it));
    }
}

typedef struct commit_ctx {
    char *user, *contact;
    sm_batch_fn done;
    void *arg;
} commit_ctx_t;

static void commit_done(int ok, void *arg)
{
    commit_ctx_t *c = arg;
    if (!ok)
        log_error("event=roster-write result=error user=%s contact=%s", c->user, c->contact);
    if (c->done)
        c->done(ok, c->arg);
    free(c->user);
    free(c->contact);
    free(c);
}

/* Writes the item (and, when a client can see the change, a new version) in
 * one transaction; the version in memory moves at once. done (may be NULL)
 * runs once committed or failed. */
static void commit(sm_user_t *u, roster_t *r, ritem_t *it, int visible, sm_batch_fn done, void *arg)
{
    sm_batch_t *b = sm_batch_new();
    item_store(b, u, it);
    if (visible) {
        char buf[32];
        int n = snprintf(buf, sizeof buf, "%lu", ++r->ver);
        sm_batch_put(b, u->bare, COLL_VER, "ver", buf, (size_t)n);
    }
    commit_ctx_t *c = xcalloc(1, sizeof *c);
    c->user = xstrdup(u->bare);
    c->contact = xstrdup(item_jid(it));
    c->done = done;
    c->arg = arg;
    sm_batch_commit(b, commit_done, c);
}

/* --- what clients see ---------------------------------------------------------- */

static void item_xml(const ritem_t *it, xml_node_t *query, int removed)
{
    xml_node_t *x = xml_add_child(query, NS_ROSTER, "item");
    xml_attr_set(x, "jid", item_jid(it));
    if (removed) {
        xml_attr_set(x, "subscription", "remove");
        return;
    }
    if (it->has_name)
        xml_attr_set(x, "name", item_name(it));
    xml_attr_set(x, "subscription", sub_name(it->sub));
    if (it->ask)
        xml_attr_set(x, "ask", "subscribe");
    if (it->approved && !(it->sub & SM_SUB_FROM))
        xml_attr_set(x, "approved", "true");
    const char *gn = item_groups(it);
    for (unsigned i = 0; i < it->ngroups; i++, gn = group_next(gn)) {
        xml_node_t *g = xml_add_child(x, NS_ROSTER, "group");
        xml_add_text(g, gn, strlen(gn));
    }
}

/* Roster push (RFC 6121 2.1.6) to every session that asked for the roster. */
static void push(sm_user_t *u, roster_t *r, const ritem_t *it, int removed)
{
    char ver[32], id[32];
    snprintf(ver, sizeof ver, "%lu", r->ver);
    for (sm_sess_t *s = u->sessions; s; s = s->next) {
        if (!s->roster_requested)
            continue;
        xml_node_t *iq = xml_elem_new(NS_CLIENT, "iq");
        xml_attr_set(iq, "type", "set");
        snprintf(id, sizeof id, "push%lu", ++push_ids);
        xml_attr_set(iq, "id", id);
        xml_attr_set(iq, "to", s->jid.full);
        xml_node_t *q = xml_add_child(iq, NS_ROSTER, "query");
        xml_attr_set(q, "ver", ver);
        item_xml(it, q, removed);
        sm_deliver(s, iq);
        xml_free(iq);
    }
}

/* Commit then push; logs the transition for operators. The write goes on
 * in storage (store.h: the presence that caused it is acknowledged to the
 * router once it is committed). */
static int change(sm_user_t *u, roster_t *r, ritem_t *it, int visible)
{
    commit(u, r, it, visible, NULL, NULL);
    log_debug("event=roster-change user=%s contact=%s subscription=%s ask=%d pending-in=%d approved=%d",
              u->bare, item_jid(it), sub_name(it->sub), it->ask, it->pending_in, it->approved);
    if (visible && it->in_roster)
        push(u, r, it, 0);
    sm_hooks_roster_change(u, item_jid(it), it->in_roster ? (int)it->sub : -1);
    return 0;
}

/* Drops a record nobody needs any more (not in roster, nothing pending). */
static void item_gc(roster_t *r, ritem_t *it)
{
    if (!it->in_roster && !it->pending_in) {
        item_unlink(r, it);
        item_free(it);
    }
}

/* --- sending on the user's behalf ------------------------------------------------- */

static void send_presence_type(const char *from, const char *to, const char *type)
{
    xml_node_t *p = xml_elem_new(NS_CLIENT, "presence");
    if (type)
        xml_attr_set(p, "type", type);
    xml_attr_set(p, "from", from);
    xml_attr_set(p, "to", to);
    sm_send(p);
    xml_free(p);
}

/* The current presence of each available session (or unavailable) to contact:
 * after an approval (RFC 6121 3.1.5) or a cancellation (3.2.2, 3.3.3). */
static void send_sessions_presence(sm_user_t *u, const char *contact, int unavailable)
{
    for (sm_sess_t *s = u->sessions; s; s = s->next) {
        if (!s->available)
            continue;
        if (unavailable || !s->presence) {
            send_presence_type(s->jid.full, contact, unavailable ? "unavailable" : NULL);
            continue;
        }
        xml_node_t *p = xml_copy(s->presence);
        xml_attr_set(p, "from", s->jid.full);
        xml_attr_set(p, "to", contact);
        sm_send(p);
        xml_free(p);
    }
}

static void deliver_available(sm_user_t *u, xml_node_t *st)
{
    for (sm_sess_t *s = u->sessions; s; s = s->next)
        if (s->available)
            sm_deliver(s, st);
}

/* --- outbound subscription stanzas (RFC 6121 A.2) ------------------------------------ */

static sm_ret_t out_subscription(sm_user_t *u, sm_sess_t *sess, xml_node_t *st, const char *type)
{
    char *contact = jid_bare_of(xml_attr_get(st, "to"));
    if (!contact) {
        sm_reply_error(st, "jid-malformed", "modify");
        return SM_HANDLED;
    }
    if (!strcmp(contact, u->bare)) {
        free(contact);
        return SM_HANDLED;                   /* subscriptions to oneself are meaningless */
    }
    /* 3.1.2: routed with the user's bare JID and the contact's bare JID. */
    xml_attr_set(st, "from", u->bare);
    xml_attr_set(st, "to", contact);
    roster_t *r = roster_get(u);
    ritem_t *it = item_find(r, contact);
    int route = 1;
    if (!strcmp(type, "subscribe") || !strcmp(type, "subscribed")) {
        int will_add = !it || !it->in_roster;
        int approve_only = !strcmp(type, "subscribed") && !(it && it->pending_in);
        if (!strcmp(type, "subscribed") && it && it->in_roster && (it->sub & SM_SUB_FROM) && !it->pending_in) {
            free(contact);                   /* 3.1.5: already subscribed: nothing */
            return SM_HANDLED;
        }
        if (will_add && (approve_only || !strcmp(type, "subscribe")) &&
            r->count >= roster_max()) {
            sm_reply_error(st, "resource-constraint", "wait");
            free(contact);
            return SM_HANDLED;
        }
        if (!it)
            it = item_new(r, contact);
        int changed = 0;
        if (!it->in_roster) {
            it->in_roster = 1;
            r->count++;
            changed = 1;
        }
        if (!strcmp(type, "subscribe")) {
            if (!(it->sub & SM_SUB_TO) && !it->ask) {
                it->ask = 1;
                changed = 1;
            }
        } else if (it->pending_in) {
            /* Approval of a pending request: None+PendingIn → From, etc. */
            it->pending_in = 0;
            xml_free(it->pending);
            it->pending = NULL;
            it->sub |= SM_SUB_FROM;
            it->approved = 0;
            changed = 1;
        } else {
            /* 3.4: pre-approval; the contact is not told. */
            route = 0;
            if (!it->approved) {
                it->approved = 1;
                changed = 1;
            }
        }
        if (changed && change(u, r, it, 1) < 0) {
            sm_reply_error(st, "internal-server-error", "wait");
            free(contact);
            return SM_HANDLED;
        }
        if (route)
            sm_send(st);
        if (!strcmp(type, "subscribed") && route)
            send_sessions_presence(u, contact, 0);
    } else if (!strcmp(type, "unsubscribe")) {
        if (it && (it->ask || (it->sub & SM_SUB_TO))) {
            it->ask = 0;
            it->sub &= ~SM_SUB_TO;
            if (change(u, r, it, it->in_roster) < 0) {
                sm_reply_error(st, "internal-server-error", "wait");
                free(contact);
                return SM_HANDLED;
            }
        }
        sm_send(st);
    } else {                                 /* unsubscribed */
        int was_from = it && (it->sub & SM_SUB_FROM);
        int changed = 0, visible = 0;
        if (it && it->pending_in) {
            it->pending_in = 0;
            xml_free(it->pending);
            it->pending = NULL;
            changed = 1;
        }
        if (was_from) {
            it->sub &= ~SM_SUB_FROM;
            changed = visible = 1;
        }
        if (it && it->approved) {
            it->approved = 0;                /* cancels a pre-approval (3.4) */
            visible = 1;
        }
        if ((changed || visible) && change(u, r, it, visible && it->in_roster) < 0) {
            sm_reply_error(st, "internal-server-error", "wait");
            free(contact);
            return SM_HANDLED;
        }
        if (changed) {
            sm_send(st);
            if (was_from)
                send_sessions_presence(u, contact, 1);
        }
        if (it)
            item_gc(r, it);
    }
    (void)sess;
    free(contact);
    return SM_HANDLED;
}

/* --- inbound subscription stanzas (RFC 6121 A.3) --------------------------------------- */

static sm_ret_t in_subscription(sm_user_t *u, xml_node_t *st, const char *type)
{
    char *contact = jid_bare_of(xml_attr_get(st, "from"));
    if (!contact)
        return SM_HANDLED;
    xml_attr_set(st, "from", contact);
    xml_attr_set(st, "to", u->bare);
    roster_t *r = roster_get(u);
    ritem_t *it = item_find(r, contact);
    if (!strcmp(type, "subscribe")) {
        if (it && it->in_roster && (it->sub & SM_SUB_FROM)) {
            send_presence_type(u->bare, contact, "subscribed");      /* 3.1.3: already */
        } else if (it && it->in_roster && it->approved) {
            it->approved = 0;
            it->sub |= SM_SUB_FROM;
            if (change(u, r, it, 1) == 0) {
                send_presence_type(u->bare, contact, "subscribed");
                send_sessions_presence(u, contact, 0);
            }
        } else {
            if (!it)
                it = item_new(r, contact);
            it->pending_in = 1;
            xml_free(it->pending);
            it->pending = xml_copy(st);
            if (change(u, r, it, 0) == 0)
                deliver_available(u, st);   /* else kept: delivered at next login */
        }
    } else if (!strcmp(type, "subscribed")) {
        if (it && it->in_roster && it->ask) {
            it->ask = 0;
            it->sub |= SM_SUB_TO;
            if (change(u, r, it, 1) == 0)
                deliver_available(u, st);
        }
    } else if (!strcmp(type, "unsubscribe")) {
        if (it && (it->pending_in || (it->sub & SM_SUB_FROM))) {
            int was_from = it->sub & SM_SUB_FROM;
            it->pending_in = 0;
            xml_free(it->pending);
            it->pending = NULL;
            it->sub &= ~SM_SUB_FROM;
            if (change(u, r, it, was_from && it->in_roster) == 0) {
                deliver_available(u, st);
                if (was_from)
                    send_sessions_presence(u, contact, 1);
            }
            item_gc(r, it);
        }
    } else {                                 /* unsubscribed */
        if (it && it->in_roster && (it->ask || (it->sub & SM_SUB_TO))) {
            it->ask = 0;
            it->sub &= ~SM_SUB_TO;
            if (change(u, r, it, 1) == 0)
                deliver_available(u, st);
        }
    }
    free(contact);
    return SM_HANDLED;
}

/* --- jabber:iq:roster --------------------------------------------------------------- */

/* Only the account itself reads or changes its roster (RFC 6121 2.1.5). */
static void roster_get_iq(sm_iq_t *req)
{
    if (!req->own) {
        sm_iq_error(req, "forbidden", "auth");
        return;
    }
    roster_t *r = roster_get(req->user);
    if (req->sess)
        req->sess->roster_requested = 1;
    char ver[32];
    snprintf(ver, sizeof ver, "%lu", r->ver);
    const char *cver = xml_attr_get(req->payload, "ver");
    xml_node_t *rq = NULL;
    if (!cver || strcmp(cver, ver)) {
        /* XEP-0237: an unknown or older version gets the whole roster. */
        rq = xml_elem_new(NS_ROSTER, "query");
        xml_attr_set(rq, "ver", ver);
        for (ritem_t *it = r->items; it; it = it->next)
            if (it->in_roster)
                item_xml(it, rq, 0);
    }
    sm_iq_reply(req, rq);
}

static void roster_remove(sm_user_t *u, ritem_t *it)
{
    /* RFC 6121 2.5.2: cancel both directions with the contact. */
    if (it->ask || (it->sub & SM_SUB_TO))
        send_presence_type(u->bare, item_jid(it), "unsubscribe");
    if (it->pending_in || (it->sub & SM_SUB_FROM))
        send_presence_type(u->bare, item_jid(it), "unsubscribed");
    if (it->sub & SM_SUB_FROM)
        send_sessions_presence(u, item_jid(it), 1);
}

/* A roster set waiting for its commit: the user is held (sm_iq_defer), so
 * the item stays as it is until the callback. */
typedef struct set_ctx {
    sm_iq_t *req;
    sm_user_t *u;
    ritem_t *it;
    int removed;
} set_ctx_t;

static void set_done(int ok, void *arg)
{
    set_ctx_t *c = arg;
    sm_user_t *u = c->u;
    roster_t *r = roster_get(u);
    ritem_t *it = c->it;
    if (!ok) {
        if (c->removed) {
            it->in_roster = 1;
            r->count++;
        }
        sm_iq_error(c->req, "internal-server-error", "wait");
    } else if (c->removed) {
        sm_iq_reply(c->req, NULL);
        push(u, r, it, 1);
        sm_hooks_roster_change(u, item_jid(it), -1);
        item_unlink(r, it);
        item_free(it);
    } else {
        sm_iq_reply(c->req, NULL);
        push(u, r, it, 0);
        sm_hooks_roster_change(u, item_jid(it), (int)it->sub);
    }
    free(c);
}

/* Commits a roster set; the result and the pushes leave once committed. */
static void set_commit(sm_iq_t *req, sm_user_t *u, roster_t *r, ritem_t *it, int removed)
{
    set_ctx_t *c = xcalloc(1, sizeof *c);
    c->req = sm_iq_defer(req);
    c->u = u;
    c->it = it;
    c->removed = removed;
    commit(u, r, it, 1, set_done, c);
}

static void roster_set_iq(sm_iq_t *req)
{
    if (!req->own) {
        sm_iq_error(req, "forbidden", "auth");
        return;
    }
    sm_user_t *u = req->user;
    xml_node_t *q = req->payload;
    xml_node_t *item = xml_child(q, NS_ROSTER, "item");
    if (!item || xml_next(item, NS_ROSTER, "item") || !xml_attr_get(item, "jid")) {
        sm_iq_error(req, "bad-request", "modify");
        return;
    }
    jid_t j;
    if (jid_parse(xml_attr_get(item, "jid"), &j) != JID_OK) {
        sm_iq_error(req, "jid-malformed", "modify");
        return;
    }
    char *cj = xstrdup(j.full);
    int self = !strcmp(j.bare, u->bare) && !j.resource;
    jid_clear(&j);
    roster_t *r = roster_get(u);
    ritem_t *it = item_find(r, cj);
    if (sm_streq(xml_attr_get(item, "subscription"), "remove")) {
        if (!it || !it->in_roster) {
            sm_iq_error(req, "item-not-found", "cancel");
            free(cj);
            return;
        }
        roster_remove(u, it);
        it->in_roster = 0;
        it->pending_in = 0;
        r->count--;
        set_commit(req, u, r, it, 1);
        free(cj);
        return;
    }
    if (self) {
        sm_iq_error(req, "not-allowed", "cancel");
        free(cj);
        return;
    }
    /* Groups: non-empty (not-acceptable) and unique (bad-request), RFC 6121 2.3.3. */
    size_t ng = 0;
    for (xml_node_t *g = xml_child(item, NS_ROSTER, "group"); g; g = xml_next(g, NS_ROSTER, "group"))
        ng++;
    char **groups = ng ? xcalloc(ng, sizeof *groups) : NULL;
    size_t k = 0;
    const char *err = NULL, *etype = "modify";
    for (xml_node_t *g = xml_child(item, NS_ROSTER, "group"); g; g = xml_next(g, NS_ROSTER, "group")) {
        char *t = xml_text(g);
        if (!*t)
            err = "not-acceptable";
        for (size_t i = 0; i < k && !err; i++)
            if (!strcmp(groups[i], t))
                err = "bad-request";
        groups[k++] = t;
    }
    const char *name = xml_attr_get(item, "name");
    if (!err && name && strlen(name) > 1023)
        err = "not-acceptable";
    if (!err && (!it || !it->in_roster) && r->count >= roster_max()) {
        err = "not-allowed";
        etype = "cancel";
    }
    if (err) {
        for (size_t i = 0; i < k; i++)
            free(groups[i]);
        free(groups);
        sm_iq_error(req, err, etype);
        free(cj);
        return;
    }
    if (!it)
        it = item_new(r, cj);
    if (!it->in_roster) {
        it->in_roster = 1;
        r->count++;
    }
    item_set(it, item_jid(it), name && *name ? name : NULL, groups, (unsigned)k);
    for (size_t i = 0; i < k; i++)
        free(groups[i]);
    free(groups);
    set_commit(req, u, r, it, 0);
    free(cj);
}

/* --- hooks ----------------------------------------------------------------------- */

static int is_subscription(const char *type)
{
    return sm_streq(type, "subscribe") || sm_streq(type, "subscribed") || sm_streq(type, "unsubscribe") ||
           sm_streq(type, "unsubscribed");
}

/* Re-delivers pending subscription requests when a session becomes available
 * (RFC 6121 3.1.3: "when the contact next has an available resource"). */
static void redeliver_pending(sm_user_t *u, sm_sess_t *s)
{
    roster_t *r = roster_get(u);
    for (ritem_t *it = r->items; it; it = it->next)
        if (it->pending_in && it->pending)
            sm_deliver(s, it->pending);
}

static sm_ret_t on_presence_out(sm_sess_t *s, xml_node_t *st)
{
    const char *to = xml_attr_get(st, "to");
    const char *type = xml_attr_get(st, "type");
    if (to && is_subscription(type))
        return out_subscription(s->user, s, st, type);
    if (!to && !type && !s->available)
        redeliver_pending(s->user, s);
    return SM_PASS;
}

/* Subscription states change only for what reaches the bare JID (RFC 6121
 * 8.5.3: the core hands subscriptions to a full JID in as for the bare). */
static sm_ret_t on_presence_in(sm_user_t *u, sm_sess_t *to, xml_node_t *st)
{
    const char *type = xml_attr_get(st, "type");
    if (!to && is_subscription(type))
        return in_subscription(u, st, type);
    return SM_PASS;
}

static void state_free(sm_user_t *u, void *state)
{
    (void)u;
    roster_t *r = state;
    while (r->items) {
        ritem_t *it = r->items;
        r->items = it->next;
        item_free(it);
    }
    free(r->hash);
    free(r);
}

/* Account removal: tell every contact, then forget everything (the cache too:
 * an account created again under the same JID starts empty). */
static void on_user_delete(sm_user_t *u)
{
    roster_t *r = roster_get(u);
    for (ritem_t *it = r->items; it; it = it->next) {
        if (it->ask || (it->sub & SM_SUB_TO))
            send_presence_type(u->bare, item_jid(it), "unsubscribe");
        if (it->pending_in || (it->sub & SM_SUB_FROM))
            send_presence_type(u->bare, item_jid(it), "unsubscribed");
    }
    sm_store_del_all(u->bare, COLL, NULL, NULL);
    sm_store_del_all(u->bare, COLL_PENDING, NULL, NULL);
    sm_store_del_all(u->bare, COLL_VER, NULL, NULL);
    state_free(u, r);
    sm_user_state_set(u, &sm_module_roster, NULL);
}

int sm_roster_sub(sm_user_t *u, const char *contact)
{
    if (!sm_module_enabled(&sm_module_roster))
        return -1;
    ritem_t *it = item_find(roster_get(u), contact);
    return it && it->in_roster ? it->sub : -1;
}

int sm_roster_in_group(sm_user_t *u, const char *contact, const char *group)
{
    if (!sm_module_enabled(&sm_module_roster))
        return 0;
    ritem_t *it = item_find(roster_get(u), contact);
    if (!it || !it->in_roster)
        return 0;
    const char *g = item_groups(it);
    for (unsigned i = 0; i < it->ngroups; i++, g = group_next(g))
        if (!strcmp(g, group))
            return 1;
    return 0;
}

void sm_roster_foreach(sm_user_t *u, sm_roster_fn fn, void *arg)
{
    if (!sm_module_enabled(&sm_module_roster))
        return;
    for (ritem_t *it = roster_get(u)->items; it; it = it->next)
        if (it->in_roster)
            fn(item_jid(it), (sm_sub_t)it->sub, arg);
}

static const cfg_option_t roster_options[] = {
    {"max-items", CFG_INT, "1000", 1, 1000000, 1, offsetof(roster_cfg_t, max_items), NULL,
     "Roster items per user; adding more is refused with not-allowed."},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, NULL},
};

static const sm_hooks_t roster_hooks = {
    .user_load = on_user_load,
    .presence_out = on_presence_out,
    .presence_in = on_presence_in,
    .user_delete = on_user_delete,
};

static const sm_iq_handler_t roster_iqs[] = {
    {NS_ROSTER, SM_IQ_ACCOUNT, roster_get_iq, roster_set_iq, NULL},
    {NULL, 0, NULL, NULL, NULL},
};

sm_module_t sm_module_roster = {
    .name = "roster",
    .help = "Roster and presence subscriptions (RFC 6121 sections 2 and 3, XEP-0237 versions).",
    .options = roster_options,
    .config_size = sizeof(roster_cfg_t),
    .hooks = &roster_hooks,
    .iqs = roster_iqs,
    .user_state_free = state_free,
};
