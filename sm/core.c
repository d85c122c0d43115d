/* core: users, sessions and the default routing rules of the sm.
 *
 * Owns every sm_user_t (loaded on demand when its account exists, freed by the
 * cron once it has had no session for USER_IDLE seconds) and every sm_sess_t
 * (indexed by (c2s instance, sid) and listed on its user). It implements the
 * session-control protocol (docs/session-protocol.md) and RFC 6121 section 8.5:
 * every stanza first runs its hook chain (the out hooks for what a session
 * sends, the in hooks for what reaches an account; module.c runs them), iq
 * gets and sets for the domain or an account go to the IQ registry (iq.c),
 * a message no session took runs the undelivered hooks, and if no module
 * handled a stanza, the default rule here applies (docs/sm.md has the table).
 * While a user is held (its account check in storage, the modules' loads of
 * its data, a deferred IQ request, a module's write), its stanzas, session
 * starts and ends wait on its user_ent_t in arrival order. Storage is only
 * used asynchronously: on SQLite the answers come inside the call, on
 * PostgreSQL later from the loop; both orders are the same. Whatever waits
 * carries the acknowledgement of the router element it came from (store.h).
 *
 * Invariants: a session is on its user's list and in the index from start to
 * end; stanzas for local users owned by this instance are processed from a
 * FIFO drained by an event on the loop (never recursively inside the caller),
 * so handlers never see a session list change under them because of sm_send. */
#include "module_run.h"
#include "store.h"
#include "comp_proto.h"
#include "log.h"
#include "stanza_check.h"
#include <stdlib.h>
#include <string.h>

#define USER_BUCKETS 4096
#define SESS_BUCKETS 4096
#define USER_IDLE 60.0          /* seconds a user without session stays loaded */
#define PENDING_AGE 30.0
#define LOCAL_QUEUE_MAX 100000  /* stanzas waiting for local processing */

typedef struct qitem {
    xml_node_t *st;             /* NULL: the session (c2s, sid) ended */
    char *c2s, *sid;            /* set: sent by that session; NULL: inbound */
    sm_user_fn fn;              /* set: a call waiting for the user (sm_user_with) */
    void *arg;
    sm_ack_t *ack;              /* the router element it came from (store.h) */
    char **tos;                 /* local queue: st goes to each of these (sm_send_each) */
    size_t ntos;
    struct qitem *next;
} qitem_t;

/* A user in memory. Its account is checked in storage (asynchronously)
 * when it is first needed and again whenever it has no session (weftctl may
 * have removed it meanwhile); the check holds the user, so what arrives
 * meanwhile waits in order. loaded: the user_load hooks ran (they may hold
 * the user while modules load its data); absent: the last check found no
 * account (freed by the cron once nothing waits). */
typedef struct user_ent {
    sm_user_t u;                /* first: a sm_user_t* is a user_ent_t* */
    double idle_since;          /* when the last session ended (or load time) */
    unsigned holds;             /* account check, deferred IQs, modules' loads */
    qitem_t *held, **held_tail; /* stanzas waiting for the holds to go */
    int draining;
    int checking, loaded, absent;
} user_ent_t;

typedef struct sess_ent {
    sm_sess_t s;                /* first: a sm_sess_t* is a sess_ent_t* */
    struct sess_ent *hnext;     /* (c2s, sid) index chain */
    int ending;
} sess_ent_t;

typedef struct pending {
    xml_node_t *route;          /* owned copy of the {S}route */
    sm_ack_t *ack;
    char *c2s, *sid;
    double at;
    struct pending *next;
} pending_t;

static sm_user_t *users[USER_BUCKETS];
static sess_ent_t *sessions[SESS_BUCKETS];
static size_t nusers, nsessions;
static pending_t *pending_head;
static pending_t **pending_tail = &pending_head;   /* O(1) append */
static size_t npending;
static qitem_t *q_head, *q_tail;
static size_t q_len;
static struct event *q_event;
static char *domain;            /* sm_config->domain, prepared */

static unsigned hash2(const char *a, const char *b)
{
    unsigned h = 2166136261u;
    for (; *a; a++)
        h = (h ^ (unsigned char)*a) * 16777619u;
    h = (h ^ 0xffu) * 16777619u;
    for (; b && *b; b++)
        h = (h ^ (unsigned char)*b) * 16777619u;
    return h;
}

/* --- users ----------------------------------------------------------------- */

int sm_is_local(const char *d)
{
    return d && domain && !strcmp(d, domain);
}

sm_user_t *sm_user_get(const char *bare)
{
    for (sm_user_t *u = users[hash2(bare, NULL) % USER_BUCKETS]; u; u = u->next)
        if (!strcmp(u->bare, bare))
            return u;
    return NULL;
}

static void qitem_free(qitem_t *q)
{
    for (size_t i = 0; i < q->ntos; i++)
        free(q->tos[i]);
    free(q->tos);
    sm_ack_drop(q->ack);
    xml_free(q->st);
    free(q->c2s);
    free(q->sid);
    free(q);
}

static void user_free(sm_user_t *u)
{
    user_ent_t *ue = (user_ent_t *)u;
    while (ue->held) {
        qitem_t *q = ue->held;
        ue->held = q->next;
        qitem_free(q);
    }
    sm_run_user_free(u);
    sm_user_t **pp = &users[hash2(u->bare, NULL) % USER_BUCKETS];
    while (*pp && *pp != u)
        pp = &(*pp)->next;
    if (*pp)
        *pp = u->next;
    nusers--;
    free(u->bare);
    free(u);
}

static void user_checked(storage_res_t *res, void *arg)
{
    user_ent_t *e = arg;
    sm_user_t *u = &e->u;
    e->checking = 0;
    if (res->status < 0)
        log_warn("event=user-exists result=error user=%s", u->bare);
    int exists = res->status == 0 && res->n == 1;
    e->absent = !exists;
    if (!exists && e->loaded) {
        sm_run_user_free(u);              /* removed behind our back: forget its data */
        e->loaded = 0;
    }
    if (exists && !e->loaded) {
        e->loaded = 1;
        log_debug("event=user-loaded user=%s", u->bare);
        sm_run_user_load(u);              /* modules may hold u while they load */
    }
    sm_user_release(u);
}

/* The user's entry, its account (re)checked when it has no session or was
 * never loaded. The check holds the user until storage answers: at once on
 * SQLite (inside this call), later on PostgreSQL. */
static user_ent_t *user_check(const char *bare)
{
    user_ent_t *e = (user_ent_t *)sm_user_get(bare);
    if (!e) {
        e = xcalloc(1, sizeof *e);
        e->idle_since = daemon_now();
        e->u.bare = xstrdup(bare);
        unsigned h = hash2(bare, NULL) % USER_BUCKETS;
        e->u.next = users[h];
        users[h] = &e->u;
        nusers++;
    } else if (e->u.sessions && e->loaded) {
        return e;
    }
    if (!e->u.sessions)
        e->idle_since = daemon_now();
    if (!e->checking) {
        e->checking = 1;
        sm_user_hold(&e->u);
        storage_user_exists_async(sm_storage, bare, user_checked, e);
    }
    return e;
}

void sm_user_unload(sm_user_t *u)
{
    user_ent_t *e = (user_ent_t *)u;
    sm_run_user_free(u);
    e->loaded = 0;
    e->absent = 1;
}

void sm_send_raw_element(xml_node_t *el)
{
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(el, COMP_NS_ACCEPT, &sb);
    sm_link_send_raw(sb.data, sb.len);
    strbuf_free(&sb);
}

/* --- sessions ---------------------------------------------------------------- */

static sess_ent_t *sess_lookup(const char *c2s, const char *sid)
{
    if (!c2s || !sid)
        return NULL;
    for (sess_ent_t *e = sessions[hash2(c2s, sid) % SESS_BUCKETS]; e; e = e->hnext)
        if (!strcmp(e->s.c2s, c2s) && !strcmp(e->s.sid, sid))
            return e;
    return NULL;
}

sm_sess_t *sm_sess_lookup(const char *c2s, const char *sid)
{
    sess_ent_t *e = sess_lookup(c2s, sid);
    return e && !e->ending ? &e->s : NULL;
}

sm_sess_t *sm_sess_find(sm_user_t *u, const char *resource)
{
    if (!u || !resource)
        return NULL;
    for (sm_sess_t *s = u->sessions; s; s = s->next)
        if (s->jid.resource && !strcmp(s->jid.resource, resource))
            return s;
    return NULL;
}

/* RFC 6121 8.5.2.1.1: a session of negative priority never gets what is
 * sent to the bare JID; with no other, the caller handles the user as
 * offline. */
size_t sm_sess_best(sm_user_t *u, sm_sess_t **out, size_t max)
{
    int best = -1;
    for (sm_sess_t *s = u->sessions; s; s = s->next)
        if (s->available && s->priority > best)
            best = s->priority;
    if (best < 0)
        return 0;
    size_t n = 0;
    for (sm_sess_t *s = u->sessions; s && n < max; s = s->next)
        if (s->available && s->priority == best)
            out[n++] = s;
    return n;
}

static void sess_free(sess_ent_t *e)
{
    sm_sess_t *s = &e->s;
    free(s->c2s);
    free(s->sid);
    jid_clear(&s->jid);
    xml_free(s->presence);
    for (size_t i = 0; i < s->ndirected; i++)
        free(s->directed[i]);
    free(s->directed);
    free(e);
}

static void send_session_el(const char *type, const char *c2s, const char *sid, const char *jid,
                            const char *reason)
{
    xml_node_t *el = xml_elem_new(SM_NS_SESSION, "session");
    xml_attr_set(el, "type", type);
    xml_attr_set(el, "to", c2s);
    xml_attr_set(el, "from", domain);
    xml_attr_set(el, "sid", sid);
    if (jid)
        xml_attr_set(el, "jid", jid);
    if (reason)
        xml_attr_set(el, "reason", reason);
    sm_send_raw_element(el);
    xml_free(el);
}

void sm_sess_end(sm_sess_t *s, int notify_c2s, const char *reason)
{
    sess_ent_t *e = (sess_ent_t *)s;
    if (e->ending)
        return;
    e->ending = 1;
    sm_user_t *u = s->user;
    xml_node_t *pres = NULL;
    if (s->available) {
        pres = xml_elem_new(NS_CLIENT, "presence");
        xml_attr_set(pres, "type", "unavailable");
        xml_attr_set(pres, "from", s->jid.full);
    }
    admin_sess_end(s);
    sm_run_sess_end(s, pres);
    xml_free(pres);
    if (notify_c2s)
        send_session_el("end", s->c2s, s->sid, NULL, reason ? reason : "system-shutdown");
    log_info("event=session-end jid=%s c2s=%s sid=%s reason=%s", s->jid.full, s->c2s, s->sid,
             reason ? reason : (notify_c2s ? "system-shutdown" : "client"));
    sm_sess_t **pp = &u->sessions;
    while (*pp && *pp != s)
        pp = &(*pp)->next;
    if (*pp)
        *pp = s->next;
    sess_ent_t **hp = &sessions[hash2(s->c2s, s->sid) % SESS_BUCKETS];
    while (*hp && *hp != e)
        hp = &(*hp)->hnext;
    if (*hp)
        *hp = e->hnext;
    nsessions--;
    if (!u->sessions)
        ((user_ent_t *)u)->idle_since = daemon_now();
    sess_free(e);
}

static void starting_cancel(const char *c2s);

/* Ends every session of a c2s instance that went away. Sids are copied first:
 * a hook run by one end must not leave us holding a freed session. */
void sm_c2s_down(const char *instance)
{
    char **sids = NULL;
    size_t n = 0;
    for (size_t b = 0; b < SESS_BUCKETS; b++)
        for (sess_ent_t *e = sessions[b]; e; e = e->hnext)
            if (!strcmp(e->s.c2s, instance)) {
                sids = xrealloc(sids, (n + 1) * sizeof *sids);
                sids[n++] = xstrdup(e->s.sid);
            }
    if (n)
        log_notice("event=c2s-lost c2s=%s sessions=%zu", instance, n);
    starting_cancel(instance);
    for (size_t i = 0; i < n; i++) {
        sess_ent_t *e = sess_lookup(instance, sids[i]);
        if (e)
            sm_sess_end(&e->s, 0, "c2s-lost");
        free(sids[i]);
    }
    free(sids);
}

/* --- sending ------------------------------------------------------------------- */

/* sm.h. Handling a stanza may change it (an archive adds its stanza-id,
 * mod_carbons strips <private/>, a third party's module may do more), so a
 * change to any tree while one recipient was handled gives the next a fresh
 * copy: none sees what another's handling did. Nothing on the inbound path
 * keeps the tree past the call (what waits is copied). */
void sm_inbound_each(xml_node_t *st, size_t n, const char *(*to)(size_t i, void *arg),
                     void (*around)(size_t i, int enter, void *arg), void *arg)
{
    xml_node_t *orig = n > 1 ? xml_copy(st) : NULL;
    size_t copies = orig ? 1 : 0;
    int fresh = 1;
    for (size_t i = 0; i < n; i++) {
        if (around)
            around(i, 1, arg);
        xml_attr_set(st, "to", to(i, arg));
        unsigned long before = xml_mutations();
        sm_deliver_shared(st, fresh);  /* serialized once while unchanged (deliver_batch.c) */
        fresh = 0;
        sm_inbound(st);
        if (orig && i + 1 < n && xml_mutations() != before) {
            xml_free(st);
            st = xml_copy(orig);
            copies++;
            fresh = 1;
        }
        if (around)
            around(i, 0, arg);
    }
    sm_deliver_shared(NULL, 1);
    xml_free(orig);
    xml_free(st);
    log_debug("event=local-fanout recipients=%zu copies=%zu", n, copies);
}

static const char *qitem_to(size_t i, void *arg)
{
    return ((qitem_t *)arg)->tos[i];
}

static void q_drain(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    /* Stanzas queued while draining are processed in the same run, in order;
     * the rest waits while the router link is above its high-water mark
     * (sm_users_resume goes on). */
    while (q_head && !sm_link_above()) {
        qitem_t *q = q_head;
        q_head = q->next;
        if (!q_head)
            q_tail = NULL;
        q_len -= q->tos ? q->ntos : 1;
        sm_ack_t *prev = sm_ack_swap(q->ack);
        if (q->tos) {
            xml_node_t *st = q->st;    /* taken: the queue item keeps its recipients */
            q->st = NULL;
            sm_inbound_each(st, q->ntos, qitem_to, NULL, q);
        } else {
            sm_inbound(q->st);
        }
        sm_ack_swap(prev);
        qitem_free(q);
    }
}

/* Queues st (copied) for local handling: to its own 'to' (tos NULL), or to
 * each of tos[0..n) (taken), counted as n stanzas against the bound. */
static void q_push_each(const xml_node_t *st, char **tos, size_t n)
{
    size_t count = tos ? n : 1;
    if (q_len + count > LOCAL_QUEUE_MAX) {
        log_warn("event=local-queue-full result=dropped to=%s recipients=%zu",
                 tos ? tos[0] : xml_attr_get(st, "to"), count);
        for (size_t i = 0; tos && i < n; i++)
            free(tos[i]);
        free(tos);
        return;
    }
    qitem_t *q = xcalloc(1, sizeof *q);
    q->st = xml_copy(st);
    q->tos = tos;
    q->ntos = tos ? n : 0;
    q->ack = sm_ack_take();
    if (q_tail)
        q_tail->next = q;
    else
        q_head = q;
    q_tail = q;
    q_len += count;
    if (q_event)
        event_active(q_event, EV_TIMEOUT, 0);
}

static void q_push(const xml_node_t *st)
{
    q_push_each(st, NULL, 0);
}

/* Stanzas inside the sm are in jabber:client; serialized with that as the
 * default namespace they read as jabber:component:accept on the link. */
static int link_send_stanza(const xml_node_t *st)
{
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(st, NS_CLIENT, &sb);
    int r = sm_link_send_raw(sb.data, sb.len);
    strbuf_free(&sb);
    return r;
}

/* 1: to names an account this sm handles itself (or the domain), 0: it
 * goes to the router, -1: not a JID. */
static int to_local(const char *to)
{
    jid_t j;
    if (jid_parse(to, &j) != JID_OK)
        return -1;
    int local = sm_is_local(j.domain) && (!j.node || sm_owns(j.bare));
    jid_clear(&j);
    return local;
}

void sm_send(xml_node_t *st)
{
    const char *to = xml_attr_get(st, "to");
    if (!to) {
        log_debug("event=send result=dropped reason=no-to element=%s", st->name);
        return;
    }
    int local = to_local(to);
    if (local < 0) {
        sm_reply_error(st, "jid-malformed", "modify");
        return;
    }
    if (local) {
        q_push(st);
    } else if (link_send_stanza(st) < 0) {
        sm_reply_error(st, "resource-constraint", "wait");
    }
}

void sm_send_each(xml_node_t *st, const char *const *to, size_t n)
{
    char **local = NULL;
    size_t nlocal = 0;
    for (size_t i = 0; i < n; i++) {
        int here = to_local(to[i]);
        if (here < 0) {
            xml_attr_set(st, "to", to[i]);
            sm_reply_error(st, "jid-malformed", "modify");
            continue;
        }
        if (here) {
            if (!local)
                local = xmalloc(n * sizeof *local);
            local[nlocal++] = xstrdup(to[i]);
            continue;
        }
        /* What is queued before goes first: local ones so far, then this. */
        if (nlocal) {
            q_push_each(st, local, nlocal);
            local = NULL;
            nlocal = 0;
        }
        xml_attr_set(st, "to", to[i]);
        if (link_send_stanza(st) < 0)
            sm_reply_error(st, "resource-constraint", "wait");
    }
    if (nlocal)
        q_push_each(st, local, nlocal);
    else
        free(local);
}

const char *sm_domain(void)
{
    return domain;
}

void sm_reply_error(xml_node_t *st, const char *condition, const char *type)
{
    const char *from = xml_attr_get(st, "from");
    if (!st->name || !stanza_error_allowed(st) || !from)
        return;
    xml_node_t *e = xml_copy(st);
    char *to = xml_attr_get(st, "to") ? xstrdup(xml_attr_get(st, "to")) : NULL;
    xml_attr_set(e, "to", from);
    xml_attr_set(e, "from", to);
    free(to);
    xml_attr_set(e, "type", "error");
    xml_node_t *err = xml_add_child(e, st->ns, "error");
    xml_attr_set(err, "type", type);
    xml_add_child(err, NS_STANZAS, condition);
    log_debug("event=stanza-error condition=%s element=%s to=%s", condition, st->name, from);
    sm_send(e);
    xml_free(e);
}

xml_node_t *sm_iq_result(const xml_node_t *iq)
{
    xml_node_t *r = xml_elem_new(NS_CLIENT, "iq");
    xml_attr_set(r, "type", "result");
    const char *id = xml_attr_get(iq, "id");
    xml_attr_set(r, "id", id ? id : "");
    if (xml_attr_get(iq, "from"))
        xml_attr_set(r, "to", xml_attr_get(iq, "from"));
    if (xml_attr_get(iq, "to"))
        xml_attr_set(r, "from", xml_attr_get(iq, "to"));
    return r;
}

/* --- holds (deferred IQ requests, iq.c) ------------------------------------------ */

static void sess_out(sm_sess_t *s, xml_node_t *st);

/* Queues a copy of st (or a session end: st NULL) behind u's holds; 0 when u
 * is not held (the caller processes st now). */
static int hold_push(sm_user_t *u, const xml_node_t *st, const char *c2s, const char *sid)
{
    user_ent_t *e = (user_ent_t *)u;
    if (!e->holds && (!e->held || e->draining))
        return 0;                             /* not held, or it is its turn */
    qitem_t *q = xcalloc(1, sizeof *q);
    q->st = st ? xml_copy(st) : NULL;
    q->c2s = c2s ? xstrdup(c2s) : NULL;
    q->sid = sid ? xstrdup(sid) : NULL;
    q->ack = sm_ack_take();
    if (!e->held)
        e->held_tail = &e->held;
    *e->held_tail = q;
    e->held_tail = &q->next;
    return 1;
}

void sm_user_hold(sm_user_t *u)
{
    ((user_ent_t *)u)->holds++;
}

/* Queues a call behind u's holds (as hold_push does a stanza). */
static int hold_push_call(user_ent_t *e, sm_user_fn fn, void *arg)
{
    if (!e->holds && (!e->held || e->draining))
        return 0;
    qitem_t *q = xcalloc(1, sizeof *q);
    q->fn = fn;
    q->arg = arg;
    q->ack = sm_ack_take();
    if (!e->held)
        e->held_tail = &e->held;
    *e->held_tail = q;
    e->held_tail = &q->next;
    return 1;
}

void sm_user_with(const char *bare, sm_user_fn fn, void *arg)
{
    user_ent_t *e = user_check(bare);
    if (!hold_push_call(e, fn, arg))
        fn(e->absent ? NULL : &e->u, arg);
}

static void user_inbound(user_ent_t *e, xml_node_t *st, const jid_t *to);

/* Processes what waited, in order, until a stanza holds the user again or
 * the router link passes its high-water mark (backpressure: the rest waits
 * for sm_users_resume, docs/component-protocol.md 10.1). */
static void user_drain(user_ent_t *e)
{
    sm_user_t *u = &e->u;
    if (e->draining)
        return;
    e->draining = 1;
    while (!e->holds && e->held && !sm_link_above()) {
        qitem_t *q = e->held;
        e->held = q->next;
        sm_ack_t *prev = sm_ack_swap(q->ack);
        if (q->fn) {
            q->fn(e->absent ? NULL : u, q->arg);
        } else if (q->c2s) {
            sess_ent_t *se = sess_lookup(q->c2s, q->sid);
            if (se && !q->st)
                sm_sess_end(&se->s, 0, NULL);
            else if (se)
                sess_out(&se->s, q->st);
            else
                log_debug("event=held-stanza result=dropped reason=session-gone c2s=%s sid=%s", q->c2s, q->sid);
        } else {
            user_inbound(e, q->st, NULL);
        }
        sm_ack_swap(prev);
        qitem_free(q);
    }
    e->draining = 0;
}

void sm_user_release(sm_user_t *u)
{
    user_ent_t *e = (user_ent_t *)u;
    if (e->holds)
        e->holds--;
    user_drain(e);
}

/* The link is below its low-water mark again: what the resync window left
 * (resync_wait.c), the local queue, then users whose waiting stanzas were
 * left for it go on, until the mark is passed again. A drain may change a
 * bucket's list, so the bucket is scanned again after each. */
void sm_users_resume(void)
{
    sm_resync_resume();                       /* the oldest: what waited for c2s's resync */
    if (sm_link_above())
        return;
    if (q_head)
        q_drain(-1, 0, NULL);
    if (sm_link_above())
        return;
    for (size_t b = 0; b < USER_BUCKETS; b++) {
    again:
        for (sm_user_t *u = users[b]; u; u = u->next) {
            user_ent_t *e = (user_ent_t *)u;
            if (e->holds || !e->held || e->draining)
                continue;
            user_drain(e);
            if (sm_link_above())
                return;
            goto again;
        }
    }
}

/* --- RFC 6121 8.5: inbound ---------------------------------------------------- */

static int is_get_set(const char *type)
{
    return sm_streq(type, "get") || sm_streq(type, "set");
}

static int is_subscription(const char *type)
{
    return sm_streq(type, "subscribe") || sm_streq(type, "subscribed") || sm_streq(type, "unsubscribe") ||
           sm_streq(type, "unsubscribed");
}

/* To the domain itself (or domain/resource), from anyone but a local session. */
static void server_inbound(xml_node_t *st, const jid_t *to)
{
    const char *name = st->name, *type = xml_attr_get(st, "type");
    int iq = !strcmp(name, "iq");
    if (iq && !to->resource && is_get_set(type))
        sm_iq_dispatch(st, NULL, NULL, 0);
    else if (iq ? is_get_set(type) : (!strcmp(name, "message") && to->resource))
        sm_reply_error(st, "service-unavailable", "cancel");
}

/* RFC 6121 8.5.1: the account does not exist. */
static void nouser_inbound(xml_node_t *st, const jid_t *to)
{
    const char *name = st->name, *type = xml_attr_get(st, "type");
    if (!strcmp(name, "presence")) {
        /* A probe gets 'unsubscribed' (8.5.1 leaves the choice; 4.3.2 asks
         * it of an existing account too); every other presence, the
         * subscription requests included, is silently ignored (8.5.1). */
        const char *from = xml_attr_get(st, "from");
        if (from && sm_streq(type, "probe")) {
            char *fb = jid_bare_of(from);
            if (fb) {
                xml_node_t *p = xml_elem_new(NS_CLIENT, "presence");
                xml_attr_set(p, "type", "unsubscribed");
                xml_attr_set(p, "from", to->bare);
                xml_attr_set(p, "to", fb);
                sm_send(p);
                xml_free(p);
                free(fb);
            }
        }
        return;
    }
    if (!strcmp(name, "message") || is_get_set(type))
        sm_reply_error(st, "service-unavailable", "cancel");
}

static void deliver_available(sm_user_t *u, xml_node_t *st, int nonneg_only)
{
    for (sm_sess_t *s = u->sessions; s; s = s->next)
        if (s->available && (!nonneg_only || s->priority >= 0))
            sm_deliver(s, st);
}

/* RFC 6121 8.5.2: to the bare JID of an existing account. */
static void bare_inbound(sm_user_t *u, xml_node_t *st)
{
    if (sm_run_in(u, NULL, st) == SM_HANDLED)
        return;
    const char *name = st->name, *type = xml_attr_get(st, "type");
    if (!strcmp(name, "message")) {
        if (sm_streq(type, "error"))
            return;
        if (sm_streq(type, "groupchat")) {
            sm_reply_error(st, "service-unavailable", "cancel");
            return;
        }
        if (sm_streq(type, "headline")) {
            deliver_available(u, st, 1);
            return;
        }
        sm_sess_t *best[64];
        size_t n = sm_sess_best(u, best, 64);
        for (size_t i = 0; i < n; i++)
            sm_deliver(best[i], st);
        if (n == 0 && sm_run_undelivered(u, st) != SM_HANDLED)
            sm_reply_error(st, "service-unavailable", "cancel");
    } else if (!strcmp(name, "presence")) {
        if (!type || sm_streq(type, "unavailable"))
            deliver_available(u, st, 0);
    } else if (is_get_set(type)) {
        sm_iq_dispatch(st, u, NULL, 0);
    }
}

/* A stanza to a local account whose check is done: e->absent says whether
 * the account exists (RFC 6121 8.5.1) or not (8.5.2, 8.5.3). to is st's
 * 'to' parsed, or NULL (it waited in a queue: parsed again here). */
static void user_inbound(user_ent_t *e, xml_node_t *st, const jid_t *to)
{
    jid_t parsed = {0};
    if (!to) {
        if (jid_parse(xml_attr_get(st, "to"), &parsed) != JID_OK)
            return;                           /* parsed before it was queued */
        to = &parsed;
    }
    const jid_t j = *to;
    sm_user_t *u = &e->u;
    const char *name = st->name, *type = xml_attr_get(st, "type");
    if (e->absent) {
        nouser_inbound(st, &j);
    } else if (!j.resource) {
        bare_inbound(u, st);
    } else {
        sm_sess_t *s = sm_sess_find(u, j.resource);
        int pres = !strcmp(name, "presence");
        if (pres && (is_subscription(type) || sm_streq(type, "probe"))) {
            bare_inbound(u, st);              /* 8.5.3.1 / 8.5.3.2.2: as for the bare JID */
        } else if (s) {
            if (sm_run_in(u, s, st) != SM_HANDLED)
                sm_deliver(s, st);
        } else if (!strcmp(name, "message")) {
            /* 8.5.3.2.1: chat is handled as for the bare JID; headline
             * and error are silently ignored; normal (or an unknown
             * type, 5.2.2) and groupchat get service-unavailable (the
             * RFC's other choice is to ignore them: the sender had better
             * learn that the resource it chose is gone). */
            if (sm_streq(type, "chat"))
                bare_inbound(u, st);
            else if (!sm_streq(type, "headline") && !sm_streq(type, "error"))
                sm_reply_error(st, "service-unavailable", "cancel");
        } else if (!pres && is_get_set(type)) {
            sm_reply_error(st, "service-unavailable", "cancel");
        }
    }
    jid_clear(&parsed);
}

void sm_inbound(xml_node_t *st)
{
    const char *to = xml_attr_get(st, "to");
    const char *name = st->name;
    if (!to || !name)
        return;
    const char *bad = stanza_check(st);
    if (bad) {                                /* from s2s or a component: c2s checks its own */
        sm_reply_error(st, bad, "modify");
        return;
    }
    jid_t j;
    if (jid_parse(to, &j) != JID_OK) {
        sm_reply_error(st, "jid-malformed", "modify");
        return;
    }
    sm_user_t *held = j.node ? sm_user_get(j.bare) : NULL;
    if (!sm_is_local(j.domain)) {
        log_warn("event=inbound result=dropped reason=not-our-domain to=%s", to);
    } else if (sm_resync_waits(st, &j)) {
        ;                                     /* for a session not re-announced yet */
    } else if (held && hold_push(held, st, NULL, NULL)) {
        ;                                     /* processed when the user's holds are gone */
    } else if (!j.node) {
        server_inbound(st, &j);
    } else {
        /* The account check may answer later: then st waits behind it. */
        user_ent_t *e = user_check(j.bare);
        if (!hold_push(&e->u, st, NULL, NULL))
            user_inbound(e, st, &j);
    }
    jid_clear(&j);
}

/* --- stanzas from sessions ------------------------------------------------------ */

/* Rule for what a session sends (docs/sm.md): the out hooks always run first.
 * Then an iq get/set with no 'to' goes to the IQ registry as the account's
 * (the domain's when no module serves its namespace for accounts); a message
 * with no 'to' is handled as sent to the account's bare JID (RFC 6120
 * 10.3.1). An iq to the domain or to the account's own bare JID goes to the
 * registry with the session. Else the stanza goes on its way with sm_send. */
static void sess_out(sm_sess_t *s, xml_node_t *st)
{
    if (!st->name || (strcmp(st->name, "message") && strcmp(st->name, "presence") && strcmp(st->name, "iq"))) {
        log_warn("event=protocol-error reason=not-a-stanza jid=%s element=%s", s->jid.full,
                 st->name ? st->name : "(text)");
        return;
    }
    xml_attr_set(st, "from", s->jid.full);
    const char *bad = stanza_check(st);       /* c2s checked it already; an older c2s may not */
    if (bad) {
        sm_reply_error(st, bad, "modify");
        return;
    }
    const char *type = xml_attr_get(st, "type");
    int has_to = xml_attr_get(st, "to") != NULL;
    jid_t j = {0};
    if (has_to) {
        if (jid_parse(xml_attr_get(st, "to"), &j) != JID_OK) {
            sm_reply_error(st, "jid-malformed", "modify");
            return;
        }
        xml_attr_set(st, "to", j.full);       /* prepared form from here on */
    }
    sm_user_t *u = s->user;
    if (sm_run_out(s, st) == SM_HANDLED) {
        jid_clear(&j);
        return;
    }
    int iq = !strcmp(st->name, "iq");
    if (!has_to && !strcmp(st->name, "presence")) {
        ;                                     /* broadcast: mod_presence did it */
    } else if (!has_to) {
        if (iq && is_get_set(type)) {
            sm_iq_dispatch(st, u, s, 1);      /* the account's, else the domain's */
        } else if (!strcmp(st->name, "message")) {
            xml_attr_set(st, "to", u->bare);
            sm_send(st);
        }
    } else if (sm_is_local(j.domain) && !j.node) {
        if (iq && !j.resource && is_get_set(type))
            sm_iq_dispatch(st, NULL, s, 0);
        else if (iq ? is_get_set(type) : (!strcmp(st->name, "message") && j.resource))
            sm_reply_error(st, "service-unavailable", "cancel");
    } else if (iq && !j.resource && is_get_set(type) && !strcmp(j.bare, u->bare)) {
        sm_iq_dispatch(st, u, s, 0);          /* its own account, asked by its own session */
    } else {
        sm_send(st);
    }
    jid_clear(&j);
}

/* --- session control -------------------------------------------------------------- */

static void pending_replay(sess_ent_t *e);

/* Session starts waiting for their account check (sm_user_with): an end or a
 * lost c2s must find them. */
typedef struct starting {
    xml_node_t *el;
    char *c2s, *sid;
    jid_t j;
    int resync, cancelled;
    struct starting *next;
} starting_t;
static starting_t *starting;

static starting_t *starting_find(const char *c2s, const char *sid)
{
    for (starting_t *st = starting; st; st = st->next)
        if (sm_streq(st->c2s, c2s) && sm_streq(st->sid, sid))
            return st;
    return NULL;
}

static void starting_cancel(const char *c2s)
{
    for (starting_t *st = starting; st; st = st->next)
        if (!strcmp(st->c2s, c2s))
            st->cancelled = 1;
}

static void sess_start_user(sm_user_t *u, void *arg);
static void sess_create(sm_user_t *u, xml_node_t *el, const char *c2s, const char *sid, jid_t *jp, int is_resync);

static void sess_start(xml_node_t *el)
{
    const char *c2s = xml_attr_get(el, "from");
    const char *sid = xml_attr_get(el, "sid");
    const char *jid = xml_attr_get(el, "jid");
    const char *user = xml_attr_get(el, "user");
    const char *resync = xml_attr_get(el, "resync");
    int is_resync = sm_streq(resync, "true") || sm_streq(resync, "1");
    if (!c2s || !sid || !jid) {
        log_warn("event=protocol-error reason=session-start-incomplete c2s=%s", c2s ? c2s : "-");
        if (c2s && sid)
            send_session_el("failed", c2s, sid, jid, "not-allowed");
        return;
    }
    jid_t j;
    if (jid_parse(jid, &j) != JID_OK || !j.node || !j.resource || !sm_is_local(j.domain)) {
        if (j.domain)
            jid_clear(&j);
        log_warn("event=session-failed reason=bad-jid jid=%s c2s=%s", jid, c2s);
        send_session_el("failed", c2s, sid, jid, "not-allowed");
        return;
    }
    char *ub = user ? jid_bare_of(user) : NULL;
    if (user && (!ub || strcmp(ub, j.bare))) {
        log_warn("event=session-failed reason=user-mismatch jid=%s user=%s c2s=%s", jid, user, c2s);
        send_session_el("failed", c2s, sid, jid, "not-allowed");
        free(ub);
        jid_clear(&j);
        return;
    }
    free(ub);
    sess_ent_t *e = sess_lookup(c2s, sid);
    if (e) {                                  /* repeated start or resync of a known session */
        send_session_el("started", c2s, sid, e->s.jid.full, NULL);
        jid_clear(&j);
        return;
    }
    if (starting_find(c2s, sid)) {
        log_debug("event=session-start result=already-starting c2s=%s sid=%s", c2s, sid);
        jid_clear(&j);
        return;
    }
    starting_t *st = xcalloc(1, sizeof *st);
    st->el = xml_copy(el);
    st->c2s = xstrdup(c2s);
    st->sid = xstrdup(sid);
    st->j = j;                                /* takes the parsed strings */
    st->resync = is_resync;
    if (is_resync)
        sm_resync_seen();
    st->next = starting;
    starting = st;
    char *bare = xstrdup(j.bare);
    sm_user_with(bare, sess_start_user, st);  /* once the account is checked and loaded */
    free(bare);
}

/* The second half of a session start: u is the checked account (NULL: none). */
static void sess_start_user(sm_user_t *u, void *arg)
{
    starting_t *st = arg;
    for (starting_t **pp = &starting; *pp; pp = &(*pp)->next) {
        if (*pp == st) {
            *pp = st->next;
            break;
        }
    }
    const char *c2s = st->c2s, *sid = st->sid, *jid = st->j.full;
    int is_resync = st->resync;
    if (st->cancelled) {
        log_info("event=session-failed reason=c2s-lost jid=%s c2s=%s", jid, c2s);
    } else if (!u) {
        log_warn("event=session-failed reason=no-account jid=%s c2s=%s", jid, c2s);
        send_session_el("failed", c2s, sid, jid, "not-allowed");
    } else if (sess_lookup(c2s, sid)) {
        send_session_el("started", c2s, sid, jid, NULL);
    } else {
        sess_create(u, st->el, c2s, sid, &st->j, is_resync);
    }
    jid_clear(&st->j);
    xml_free(st->el);
    free(st->c2s);
    free(st->sid);
    free(st);
}

static void sess_create(sm_user_t *u, xml_node_t *el, const char *c2s, const char *sid, jid_t *jp, int is_resync)
{
    const char *jid = jp->full;
    jid_t j = *jp;
    memset(jp, 0, sizeof *jp);                /* the session takes the strings */
    sess_ent_t *e;
    sm_sess_t *old = sm_sess_find(u, j.resource);
    /* sessions.conflict: by default the new session wins (the old one gets
     * the conflict stream error); "refuse" keeps the old one instead. A resync
     * always wins: it is the same client coming back. */
    if (old && !is_resync && sm_config->conflict_refuse) {
        log_info("event=session-failed reason=conflict jid=%s c2s=%s", jid, c2s);
        send_session_el("failed", c2s, sid, jid, "conflict");
        jid_clear(&j);
        return;
    }
    if (old)
        sm_sess_end(old, 1, "conflict");
    e = xcalloc(1, sizeof *e);
    sm_sess_t *s = &e->s;
    s->user = u;
    s->c2s = xstrdup(c2s);
    s->sid = xstrdup(sid);
    s->jid = j;                               /* takes the parsed strings */
    s->roster_requested = is_resync;          /* a resynced client had its roster */
    s->deliver_many = sm_streq(xml_attr_get(el, "deliver"), "1");
    sm_sess_t **pp = &u->sessions;
    while (*pp)
        pp = &(*pp)->next;
    *pp = s;
    unsigned h = hash2(c2s, sid) % SESS_BUCKETS;
    e->hnext = sessions[h];
    sessions[h] = e;
    nsessions++;
    log_info("event=session-start jid=%s c2s=%s sid=%s resync=%d", s->jid.full, c2s, sid, is_resync);
    admin_sess_start(s);
    sm_run_sess_start(s);
    send_session_el("started", c2s, sid, s->jid.full, NULL);
    /* Resync of a session we did not know (we restarted): restore its
     * presence as if the client had just sent it. */
    xml_node_t *pres = is_resync ? xml_child(el, NS_CLIENT, "presence") : NULL;
    if (pres && !xml_attr_get(pres, "to"))
        sess_out(s, pres);
    pending_replay(e);
}

void sm_session_control(xml_node_t *el)
{
    const char *type = xml_attr_get(el, "type");
    const char *c2s = xml_attr_get(el, "from");
    const char *sid = xml_attr_get(el, "sid");
    if (sm_streq(type, "start")) {
        sess_start(el);
    } else if (sm_streq(type, "end")) {
        sess_ent_t *e = sess_lookup(c2s, sid);
        if (e && hold_push(e->s.user, NULL, c2s, sid))
            ;                                 /* ends after what the session sent before */
        else if (e)
            sm_sess_end(&e->s, 0, NULL);
        else if (starting_find(c2s, sid))
            starting_find(c2s, sid)->cancelled = 1;   /* ended before it started */
        else
            log_debug("event=session-end result=unknown c2s=%s sid=%s", c2s ? c2s : "-", sid ? sid : "-");
    } else if (sm_streq(type, "hibernated") || sm_streq(type, "resumed")) {
        /* Not held behind the user's queue: it says what is true of the
         * connection now, and push (mod_push) acts on the deliveries after. */
        sess_ent_t *e = sess_lookup(c2s, sid);
        int on = sm_streq(type, "hibernated");
        const char *p = xml_attr_get(el, "pending");
        unsigned pending = on && p ? (unsigned)strtoul(p, NULL, 10) : 0;
        if (e) {
            e->s.hibernated = on;
            log_info("event=session-%s jid=%s pending=%u", type, e->s.jid.full, pending);
            sm_run_sess_hibernate(&e->s, on, pending);
        } else {
            log_debug("event=session-%s result=unknown c2s=%s sid=%s", type, c2s ? c2s : "-", sid ? sid : "-");
        }
    } else if (sm_streq(type, "error")) {
        log_warn("event=session-control-bounced c2s=%s sid=%s", c2s ? c2s : "-", sid ? sid : "-");
    } else {
        log_warn("event=protocol-error reason=unknown-session-type type=%s c2s=%s", type ? type : "-",
                 c2s ? c2s : "-");
    }
}

/* Routes for a session we do not know yet: after our restart the router
 * delivers what it held before c2s has re-announced its sessions. */
static void pending_add(xml_node_t *route, const char *c2s, const char *sid)
{
    if (npending >= (size_t)sm_config->pending_max) {
        log_warn("event=route-dropped reason=pending-full c2s=%s sid=%s max=%ld", c2s, sid,
                 sm_config->pending_max);
        return;
    }
    pending_t *p = xcalloc(1, sizeof *p);
    p->route = xml_copy(route);
    p->ack = sm_ack_take();
    p->c2s = xstrdup(c2s);
    p->sid = xstrdup(sid);
    p->at = daemon_now();
    *pending_tail = p;
    pending_tail = &p->next;
    npending++;
}

/* After removals from the list, the tail pointer is found again. */
static void pending_fix_tail(void)
{
    pending_tail = &pending_head;
    while (*pending_tail)
        pending_tail = &(*pending_tail)->next;
}

static void pending_free(pending_t *p)
{
    sm_ack_drop(p->ack);
    xml_free(p->route);
    free(p->c2s);
    free(p->sid);
    free(p);
    npending--;
}

static void pending_replay(sess_ent_t *e)
{
    pending_t *mine = NULL, **tail = &mine;
    for (pending_t **pp = &pending_head; *pp;) {
        pending_t *p = *pp;
        if (!strcmp(p->c2s, e->s.c2s) && !strcmp(p->sid, e->s.sid)) {
            *pp = p->next;
            p->next = NULL;
            *tail = p;
            tail = &p->next;
        } else {
            pp = &p->next;
        }
    }
    pending_fix_tail();
    while (mine) {
        pending_t *p = mine;
        mine = p->next;
        sm_ack_t *prev = sm_ack_swap(p->ack);
        sm_route_in(p->route);
        sm_ack_swap(prev);
        pending_free(p);
    }
}

static xml_node_t *first_elem(const xml_node_t *el)
{
    for (xml_node_t *c = el->first_child; c; c = c->next)
        if (c->name && strcmp(c->name, "error"))
            return c;
    return NULL;
}

void sm_route_in(xml_node_t *el)
{
    const char *c2s = xml_attr_get(el, "from");
    const char *sid = xml_attr_get(el, "sid");
    const char *type = xml_attr_get(el, "type");
    xml_node_t *st = first_elem(el);
    if (!c2s || !sid || !st) {
        log_warn("event=protocol-error reason=route-incomplete c2s=%s", c2s ? c2s : "-");
        return;
    }
    sess_ent_t *e = sess_lookup(c2s, sid);
    if (sm_streq(type, "unacked") || sm_streq(type, "error")) {
        /* The client never got it (XEP-0198 unacked, or the route to its c2s
         * bounced): the session is over; handle the stanza again as inbound,
         * without that session. */
        if (e)
            sm_sess_end(&e->s, 0, sm_streq(type, "error") ? "c2s-unreachable" : NULL);
        sm_inbound(st);
        return;
    }
    if (!e) {
        pending_add(el, c2s, sid);
        return;
    }
    if (!hold_push(e->s.user, st, c2s, sid)) {
        /* Out of its envelope, the stanza is a tree of its own, whose
         * version a local recipient's copy keeps (xml_version: the archive
         * reuses its bytes then). */
        xml_detach(st);
        sess_out(&e->s, st);
        xml_free(st);
    }
}

/* As sm_route_in does for a route of type error, once per session: the
 * session is over and its copy is handled again as inbound. A <deliver/> is
 * only ever seen here bounced (the sm writes them, c2s reads them). */
void sm_deliver_bounced(xml_node_t *el)
{
    const char *c2s = xml_attr_get(el, "from");
    if (!c2s || !sm_streq(xml_attr_get(el, "type"), "error")) {
        log_warn("event=protocol-error reason=unexpected-deliver c2s=%s", c2s ? c2s : "-");
        return;
    }
    xml_node_t *st = NULL;
    for (xml_node_t *c = first_elem(el); c; c = c->next)
        if (c->name && (!strcmp(c->name, "message") || !strcmp(c->name, "presence") || !strcmp(c->name, "iq")))
            st = c;
    if (!st)
        return;
    for (xml_node_t *r = first_elem(el); r; r = r->next) {
        if (!r->name || strcmp(r->name, "r"))
            continue;
        sess_ent_t *e = sess_lookup(c2s, xml_attr_get(r, "sid"));
        if (e)
            sm_sess_end(&e->s, 0, "c2s-unreachable");
        xml_node_t *copy = xml_copy(st);
        xml_attr_set(copy, "to", xml_attr_get(r, "to"));
        sm_inbound(copy);
        xml_free(copy);
    }
}

/* --- takeover and handback (docs/component-protocol.md 8.5) ------------------------- */

/* Forgets a session without ending it: the client stays connected and its
 * session moves to another instance, so no unavailable presence goes out
 * (directed-presence targets are forgotten first for the same reason) and
 * c2s is not told. The sess_end hooks still run: modules drop what points
 * at the session. */
static void sess_drop(sess_ent_t *e)
{
    sm_sess_t *s = &e->s;
    e->ending = 1;
    for (size_t i = 0; i < s->ndirected; i++)
        free(s->directed[i]);
    s->ndirected = 0;
    admin_sess_end(s);
    sm_run_sess_end(s, NULL);
    log_info("event=session-moved jid=%s c2s=%s sid=%s", s->jid.full, s->c2s, s->sid);
    sm_user_t *u = s->user;
    sm_sess_t **pp = &u->sessions;
    while (*pp && *pp != s)
        pp = &(*pp)->next;
    if (*pp)
        *pp = s->next;
    sess_ent_t **hp = &sessions[hash2(s->c2s, s->sid) % SESS_BUCKETS];
    while (*hp && *hp != e)
        hp = &(*hp)->hnext;
    if (*hp)
        *hp = e->hnext;
    nsessions--;
    sess_free(e);
}

/* Routes that wait for a session of a user who is no longer ours go back to
 * the router, which takes them to the user's owner. */
static void pending_send_away(int all)
{
    for (pending_t **pp = &pending_head; *pp;) {
        pending_t *p = *pp;
        const char *user = xml_attr_get(p->route, "user");
        if (all || (user && !sm_owns(user))) {
            *pp = p->next;
            sm_send_raw_element(p->route);
            pending_free(p);
        } else {
            pp = &p->next;
        }
    }
    pending_fix_tail();
}

size_t sm_core_release(int all)
{
    size_t busy = 0, moved = 0;
    /* What is queued for a user who moves is processed here first; what is
     * for the users who stay may wait (under load the queue is rarely
     * empty: waiting for that took seconds). */
    for (qitem_t *q = all ? NULL : q_head; q; q = q->next) {
        const char *to = q->st ? xml_attr_get(q->st, "to") : NULL;
        char *bare = to ? jid_bare_of(to) : NULL;
        int moves = bare && strchr(bare, '@') && !sm_owns(bare);
        if (moves)
            log_debug("event=release-wait reason=queued user=%s", bare);
        free(bare);
        if (moves)
            return 1;
    }
    pending_send_away(all);
    sm_resync_send_away(all, link_send_stanza);
    for (size_t b = 0; b < USER_BUCKETS; b++) {
        for (sm_user_t *u = users[b], *next; u; u = next) {
            next = u->next;
            if (!all && sm_owns(u->bare))
                continue;
            user_ent_t *e = (user_ent_t *)u;
            while (u->sessions) {
                sess_drop((sess_ent_t *)u->sessions);
                moved++;
            }
            if (e->holds || e->held) {
                busy++;         /* storage work under way: freed later by the cron */
                log_debug("event=release-wait reason=held user=%s holds=%u", u->bare, e->holds);
            }
            else
                user_free(u);
        }
    }
    if (moved || busy)
        log_notice("event=users-released sessions=%zu busy=%zu all=%d", moved, busy, all);
    return busy;
}

/* We were taken over: what waits in the local queue goes through the
 * router to whoever owns its user now. */
void sm_core_forget_all(void)
{
    size_t n = 0;
    while (q_head) {
        qitem_t *q = q_head;
        q_head = q->next;
        q_len -= q->tos ? q->ntos : 1;
        for (size_t i = 0; i < q->ntos; i++) {
            xml_attr_set(q->st, "to", q->tos[i]);
            link_send_stanza(q->st);
        }
        if (!q->tos)
            link_send_stanza(q->st);
        qitem_free(q);
        n++;
    }
    q_tail = NULL;
    log_notice("event=taken-over users=%zu sessions=%zu queued=%zu", nusers, nsessions, n);
    sm_core_release(1);
}

/* --- lifetime ------------------------------------------------------------------------- */

void sm_core_init(struct event_base *base)
{
    domain = jid_prep_domain(sm_config->domain);
    if (!domain)
        log_fatal("event=config option=domain value=%s reason=invalid-domain", sm_config->domain);
    q_event = event_new(base, -1, 0, q_drain, NULL);
}

void sm_core_cron(double now)
{
    sm_run_cron(now);
    for (pending_t **pp = &pending_head; *pp;) {
        pending_t *p = *pp;
        if (now - p->at > PENDING_AGE) {
            log_warn("event=route-dropped reason=session-never-started c2s=%s sid=%s", p->c2s, p->sid);
            *pp = p->next;
            pending_free(p);
        } else {
            pp = &p->next;
        }
    }
    pending_fix_tail();
    for (size_t b = 0; b < USER_BUCKETS; b++) {
        for (sm_user_t *u = users[b], *next; u; u = next) {
            next = u->next;
            user_ent_t *e = (user_ent_t *)u;
            if (!u->sessions && !e->holds && !e->held && (e->absent || now - e->idle_since > USER_IDLE))
                user_free(u);
        }
    }
}

/* At exit: free everything without broadcasting (c2s will resync). What
 * storage still has in flight finishes first: its callbacks hold users. */
void sm_core_free(void)
{
    if (sm_storage)
        storage_drain(sm_storage);
    while (q_head) {
        qitem_t *q = q_head;
        q_head = q->next;
        qitem_free(q);
    }
    q_tail = NULL;
    q_len = 0;
    if (q_event)
        event_free(q_event);
    q_event = NULL;
    for (size_t b = 0; b < SESS_BUCKETS; b++) {
        while (sessions[b]) {
            sess_ent_t *e = sessions[b];
            sessions[b] = e->hnext;
            sess_free(e);
        }
    }
    nsessions = 0;
    for (size_t b = 0; b < USER_BUCKETS; b++) {
        while (users[b]) {
            users[b]->sessions = NULL;
            user_free(users[b]);
        }
    }
    sm_resync_free();
    pending_tail = &pending_head;
    while (pending_head) {
        pending_t *p = pending_head;
        pending_head = p->next;
        pending_free(p);
    }
    free(domain);
    domain = NULL;
}

int sm_streq(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

void sm_answer(sm_sess_t *s, xml_node_t *res)
{
    if (s)
        sm_deliver(s, res);
    else
        sm_send(res);
    xml_free(res);
}
