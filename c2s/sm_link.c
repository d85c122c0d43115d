/* sm_link: c2s's link to the router (common/comp_client) and its side of the
 * session protocol (docs/session-protocol.md): authreg requests, session
 * start/end, client stanzas wrapped in routes, and what the sm sends back —
 * deliveries, started/failed, end with a reason, authreg answers.
 *
 * Owns the comp_client. Answers find their client by the session id: authreg
 * ids are "sid.n" and the client keeps n, so an answer for a client that has
 * gone or asked again since is dropped. When the router says the sm's domain
 * came back after being down (or the link itself came back), every live
 * session is re-announced with resync='true' and its last presence; so it
 * is when an sm instance is taken over (its users moved to the others).
 * An sm instance coming up also has server_caps.c ask for the domain's
 * disco#info (the server's caps in the stream features); none left up
 * withdraws them. */
#include "c2s.h"
#include "comp_proto.h"
#include "comp_client.h"
#include "jid.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

static comp_client_t *router_link;
static int link_was_ready;  /* the router router_link has been up before */
/* The sm instances of our domain the router says are up. One that comes up
 * and was not (back from a restart, back after a takeover, or new) gets the
 * sessions of its users re-announced: only the router knows whose they are. */
static char **sm_up;
static size_t nsm_up;

static int sm_link_send(const xml_node_t *el)
{
    if (!router_link || comp_client_send(router_link, el) < 0) {
        log_warn("event=router-send result=dropped reason=buffer-full element=%s", el->name);
        return -1;
    }
    return 0;
}

int sm_link_send_stanza(const xml_node_t *st)
{
    return sm_link_send(st);
}

int sm_link_sm_up(void)
{
    return nsm_up > 0 && router_link && comp_client_is_ready(router_link);
}

int sm_link_authreg(client_t *c, xml_node_t *req, int kind)
{
    char id[48];
    snprintf(id, sizeof id, "%s.%u", c->sid_str, ++c->req_no);
    xml_attr_set(req, "id", id);
    xml_attr_set(req, "to", c2s_config->domain);
    xml_attr_set(req, "from", c2s_config->instance);
    if (sm_link_send(req) < 0)
        return -1;
    c->req_kind = kind;
    c->wait_until = daemon_now() + c2s_config->t_authreg;
    return 0;
}

static xml_node_t *sm_link_session_el(client_t *c, const char *type)
{
    xml_node_t *s = xml_elem_new(NS_WEFT_SESSION, "session");
    xml_attr_set(s, "type", type);
    xml_attr_set(s, "to", c2s_config->domain);
    xml_attr_set(s, "from", c2s_config->instance);
    xml_attr_set(s, "user", c->jid.bare);
    xml_attr_set(s, "sid", c->sid_str);
    return s;
}

int sm_link_session(client_t *c, const char *type, int resync)
{
    xml_node_t *s = sm_link_session_el(c, type);
    if (!strcmp(type, "start")) {
        xml_attr_set(s, "jid", c->jid.full);
        xml_attr_set(s, "deliver", "1");   /* we take <deliver/> (docs/session-protocol.md) */
    }
    if (resync) {
        xml_attr_set(s, "resync", "true");
        if (c->last_presence)
            xml_append(s, xml_copy(c->last_presence));
    }
    int rc = sm_link_send(s);
    xml_free(s);
    return rc;
}

int sm_link_hibernation(client_t *c, int on)
{
    xml_node_t *s = sm_link_session_el(c, on ? "hibernated" : "resumed");
    if (on) {
        char n[24];
        snprintf(n, sizeof n, "%zu", smacks_pending_messages(c));
        xml_attr_set(s, "pending", n);
    }
    int rc = sm_link_send(s);
    xml_free(s);
    return rc;
}

/* stanza is borrowed: a copy goes inside the route. */
int sm_link_route(client_t *c, xml_node_t *stanza, const char *type)
{
    xml_node_t *r = xml_elem_new(NS_WEFT_SESSION, "route");
    xml_attr_set(r, "to", c2s_config->domain);
    xml_attr_set(r, "from", c2s_config->instance);
    xml_attr_set(r, "user", c->jid.bare);
    xml_attr_set(r, "sid", c->sid_str);
    if (type)
        xml_attr_set(r, "type", type);
    xml_append(r, xml_copy(stanza));
    int rc = sm_link_send(r);
    xml_free(r);
    return rc;
}

/* A <deliver/> element is one router element for several sessions: its
 * token is acknowledged once the copy of every session is done. Each copy
 * carries a group token (GROUP_BIT | slot) that sm_link_done counts down;
 * deliver.c, smacks.c and csi.c hold and give it like any other. */
#define GROUP_BIT (1ULL << 63)
typedef struct group {
    uint64_t token;     /* the element's router token */
    size_t left;        /* copies not done yet; 0: the slot is free */
} group_t;
static group_t *groups;
static size_t ngroups;
static size_t *group_free;   /* free slots (a stack) */
static size_t ngroup_free;

static uint64_t group_new(uint64_t token, size_t n)
{
    size_t i;
    if (ngroup_free) {
        i = group_free[--ngroup_free];
    } else {
        i = ngroups++;
        groups = xrealloc(groups, ngroups * sizeof *groups);
        group_free = xrealloc(group_free, ngroups * sizeof *group_free);
    }
    groups[i] = (group_t){.token = token, .left = n};
    return GROUP_BIT | i;
}

void sm_link_done(uint64_t token)
{
    if (token & GROUP_BIT) {
        size_t i = (size_t)(token & ~GROUP_BIT);
        if (i >= ngroups || !groups[i].left || --groups[i].left)
            return;
        group_free[ngroup_free++] = i;
        token = groups[i].token;
    }
    if (router_link)
        comp_client_done(router_link, token);
}

void sm_link_flush(void)
{
    if (router_link)
        comp_client_flush(router_link);
}

/* A stanza for one of our sessions: written now, or queued for a detached
 * XEP-0198 session to get on resumption. Its token is acknowledged by
 * deliver.c (bytes in the kernel) or smacks.c (the client's <a/>); a bounce
 * or a stanza handed back to the sm is done at once (the caller does it: the
 * route back goes out on this same link before our acknowledgement, so the
 * router cannot see one without the other). Returns 1 when the route itself
 * was taken (deliver.c frees it), 0 when the caller frees it; *kept says
 * whether the token was taken. A client that said it is inactive
 * (XEP-0352) may have it held (csi.c). */
static int sm_link_deliver(xml_node_t *route, uint64_t token, int *kept)
{
    *kept = 0;
    const char *sid = xml_attr_get(route, "sid");
    client_t *c = client_find_str(sid);
    xml_node_t *st = xml_child(route, NULL, NULL);
    if (!st) {
        log_warn("event=protocol-error reason=empty-route sid=%s", sid ? sid : "-");
        return 0;
    }
    const char *rtype = xml_attr_get(route, "type");
    if (rtype && !strcmp(rtype, "error")) {
        /* The router bounced one of our routes (no sm took it in time): the
         * client gets its stanza back as a stanza error, never as if sent
         * to it. */
        xml_node_t *err = xml_child(route, NULL, "error");
        xml_node_t *cond = err ? xml_child(err, NS_STANZAS, NULL) : NULL;
        const char *etype = err ? xml_attr_get(err, "type") : NULL;
        if (c && st != err && (c->state == CL_SESSION || c->state == CL_BINDING))
            client_stanza_error(c, st, cond ? cond->name : "service-unavailable", etype ? etype : "wait");
        log_info("event=route-bounced sid=%s element=%s condition=%s", sid ? sid : "-", st->name,
                 cond ? cond->name : "-");
        return 0;
    }
    if (!c || (c->state != CL_SESSION && c->state != CL_BINDING)) {
        /* The session ended while this was on its way: give it back to the sm
         * as undelivered, which handles it as for an offline session (another
         * resource or offline storage) instead of losing it. */
        const char *type = xml_attr_get(st, "type");
        const char *to = xml_attr_get(st, "to");
        char *bare = to ? jid_bare_of(to) : NULL;
        if (bare && !(type && !strcmp(type, "error"))) {
            xml_node_t *r = xml_elem_new(NS_WEFT_SESSION, "route");
            xml_attr_set(r, "to", c2s_config->domain);
            xml_attr_set(r, "from", c2s_config->instance);
            xml_attr_set(r, "user", bare);
            xml_attr_set(r, "sid", sid ? sid : "0");
            xml_attr_set(r, "type", "unacked");
            xml_append(r, xml_copy(st));
            sm_link_send(r);
            xml_free(r);
            log_info("event=delivery-returned reason=no-session sid=%s element=%s", sid ? sid : "-", st->name);
        } else {
            log_info("event=delivery-dropped reason=no-session sid=%s element=%s", sid ? sid : "-", st->name);
        }
        free(bare);
        return 0;
    }
    *kept = 1;
    if (!csi_hold(c, route, st, token))
        deliver_send(c, route, token);
    return 1;
}

/* One stanza for several sessions (docs/session-protocol.md, "Delivering
 * one stanza to several sessions"): each <r sid='...' to='...'/> gets its
 * copy through sm_link_deliver as if it had come in a <route/> of its own
 * (held for an inactive client, queued for XEP-0198, handed back for a
 * session that has gone), and the copies of every eligible session go out
 * in one pass of out_batch.c. The element's token is done with the last
 * copy. */
/* A session its copy can go to straight from bytes: bound, written by c2s
 * itself in the pass, no XEP-0198 queue, not inactive (csi.c may hold). */
static int copy_direct(const client_t *c)
{
    return c->state == CL_SESSION && !c->sm_enabled && !c->ws && !csi_inactive(c) && out_batch_takes(c);
}

static void put_to(strbuf_t *out, const strbuf_t *tmpl, size_t name_end, const char *to)
{
    strbuf_append(out, tmpl->data, name_end);
    if (to) {
        strbuf_puts(out, " to='");
        xml_escape(out, to, strlen(to), 1);
        strbuf_puts(out, "'");
    }
    strbuf_append(out, tmpl->data + name_end, tmpl->len - name_end);
}

static void sm_link_deliver_many(xml_node_t *el, uint64_t token)
{
    xml_node_t *st = NULL;
    size_t n = 0;
    for (xml_node_t *c = el->first_child; c; c = c->next) {
        if (!c->name)
            continue;
        if (!strcmp(c->ns, NS_WEFT_SESSION) && !strcmp(c->name, "r"))
            n++;
        else
            st = c;
    }
    if (!st || !n) {
        log_warn("event=protocol-error reason=empty-deliver from=%s",
                 xml_attr_get(el, "from") ? xml_attr_get(el, "from") : "-");
        sm_link_done(token);
        return;
    }
    c2s_metrics_delivery(1, n);
    uint64_t group = group_new(token, n);
    const char *from = xml_attr_get(el, "from");
    /* The stanza serialized once without 'to', as client_write_node would
     * (jabber:client the default): each direct copy puts its 'to' back in
     * right after the name. */
    xml_detach(st);
    xml_attr_set(st, "to", NULL);
    deliver_shared_t *sh = xcalloc(1, sizeof *sh);
    sh->st = st;
    sh->refs = 1;
    strbuf_t tmpl, one;
    strbuf_init(&tmpl);
    strbuf_init(&one);
    xml_serialize(st, NS_CLIENT, &tmpl);
    size_t name_end = 1 + strlen(st->name), direct = 0;
    out_batch_force(1);
    for (xml_node_t *r = el->first_child; r; r = r->next) {
        if (!r->name || strcmp(r->ns, NS_WEFT_SESSION) || strcmp(r->name, "r"))
            continue;
        const char *sid = xml_attr_get(r, "sid"), *to = xml_attr_get(r, "to");
        client_t *c = client_find_str(sid);
        if (c && copy_direct(c)) {
            strbuf_reset(&one);
            put_to(&one, &tmpl, name_end, to);
            direct++;
            deliver_write_copy(c, sh, to, one.data, one.len, group);
            continue;
        }
        xml_node_t *route = xml_elem_new(NS_WEFT_SESSION, "route");
        xml_attr_set(route, "to", c2s_config->instance);
        xml_attr_set(route, "from", from);
        xml_attr_set(route, "sid", sid);
        xml_node_t *copy = xml_copy(st);
        xml_attr_set(copy, "to", to);
        xml_append(route, copy);
        int kept = 0;
        if (!sm_link_deliver(route, group, &kept)) {
            if (!kept)
                sm_link_done(group);
            xml_free(route);
        }
    }
    out_batch_force(0);
    c2s_metrics_stanzas(0, st->name, direct);   /* one lookup of the series, not one per copy */
    deliver_shared_unref(sh);
    strbuf_free(&tmpl);
    strbuf_free(&one);
}

static void sm_link_session_in(xml_node_t *el)
{
    const char *type = xml_attr_get(el, "type");
    client_t *c = client_find_str(xml_attr_get(el, "sid"));
    if (!c || !type)
        return;
    if (!strcmp(type, "started") || !strcmp(type, "failed")) {
        bind_session_answer(c, el);
    } else if (!strcmp(type, "end")) {
        const char *reason = xml_attr_get(el, "reason");
        static const char *const ok[] = {"conflict", "not-authorized", "system-shutdown", "policy-violation"};
        const char *cond = "undefined-condition";
        for (size_t i = 0; reason && i < sizeof ok / sizeof ok[0]; i++)
            if (!strcmp(reason, ok[i]))
                cond = ok[i];
        log_info("event=session-ended-by-sm sid=%s jid=%s reason=%s", c->sid_str,
                 c->jid.full ? c->jid.full : "-", reason ? reason : "-");
        /* The sm already forgot the session: give back what the client did
         * not acknowledge, but no end. */
        if (c->state == CL_BINDING)
            c->state = CL_AUTHED;
        /* The sm ends the sessions of a removed account before it answers
         * the remove; XEP-0077 §3.2 wants the client to see the result
         * before the stream closes. */
        if (c->req_kind == REQ_REMOVE && !strcmp(cond, "not-authorized")) {
            xml_node_t *ok = xml_elem_new(NS_WEFT_AUTHREG, "authreg");
            xml_attr_set(ok, "type", "result");
            xml_attr_set(ok, "user", c->jid.bare);
            ibr_authreg_answer(c, ok);
            xml_free(ok);
        }
        if (c->detached) {
            client_close(c, CLOSE_UNACKED);
        } else {
            const char *text = !strcmp(cond, "conflict") ? "replaced by a new session with the same resource" : NULL;
            smacks_return_unacked(c);
            c->state = CL_AUTHED; /* so the error does not end the session again */
            client_stream_error(c, cond, text);
        }
    } else {
        log_warn("event=protocol-error reason=unknown-session-type type=%s", type);
    }
}

static void sm_link_authreg_in(xml_node_t *el)
{
    const char *id = xml_attr_get(el, "id");
    const char *dot = id ? strchr(id, '.') : NULL;
    if (!dot)
        return;
    char sid[24];
    size_t n = (size_t)(dot - id);
    if (n >= sizeof sid)
        return;
    memcpy(sid, id, n);
    sid[n] = '\0';
    client_t *c = client_find_str(sid);
    if (!c || c->req_kind == REQ_NONE || strtoul(dot + 1, NULL, 10) != c->req_no) {
        log_debug("event=authreg-late id=%s", id);
        return;
    }
    if (c->req_kind == REQ_AUTH)
        auth_authreg_answer(c, el);
    else
        ibr_authreg_answer(c, el);
}

/* Every stanza from the router is acknowledged once finished with
 * (manual_ack): at once, except deliveries to clients (deliver.c, smacks.c). */
static void sm_link_on_stanza(void *ctx, xml_node_t *st)
{
    (void)ctx;
    uint64_t token = comp_client_in_token(router_link);
    int kept = 0;
    if (!strcmp(st->ns, NS_WEFT_SESSION) && !strcmp(st->name, "route")) {
        c2s_metrics_delivery(0, 1);
        if (sm_link_deliver(st, token, &kept))
            return;
    } else if (!strcmp(st->ns, NS_WEFT_SESSION) && !strcmp(st->name, "deliver")) {
        sm_link_deliver_many(st, token);
        kept = 1;
    } else if (!strcmp(st->ns, NS_WEFT_SESSION) && !strcmp(st->name, "session")) {
        sm_link_session_in(st);
    } else if (!strcmp(st->ns, NS_WEFT_AUTHREG) && !strcmp(st->name, "authreg")) {
        sm_link_authreg_in(st);
    } else if ((!strcmp(st->ns, COMP_NS_ACCEPT) || !strcmp(st->ns, NS_CLIENT)) && !strcmp(st->name, "iq") &&
               server_caps_iq(st)) {
        ;                          /* the domain's disco#info for our caps */
    } else {
        log_warn("event=protocol-error reason=unexpected-element ns=%s element=%s from=%s", st->ns, st->name,
                 xml_attr_get(st, "from") ? xml_attr_get(st, "from") : "-");
    }
    if (!kept)
        comp_client_done(router_link, token);
    xml_free(st);
}

static void sm_link_resync_one(client_t *c, void *arg)
{
    (void)arg;
    if (c->state == CL_SESSION) {
        sm_link_session(c, "start", 1);
        if (c->detached)
            sm_link_hibernation(c, 1);
    }
}

static void sm_link_resync(const char *why)
{
    log_notice("event=resync reason=%s sessions=%zu", why, client_count());
    client_foreach(sm_link_resync_one, NULL);
}

static void sm_link_on_ready(void *ctx)
{
    (void)ctx;
    log_notice("event=router-ready router=%s", c2s_config->link.router);
    if (link_was_ready)
        sm_link_resync("router-router_link-back");
    link_was_ready = 1;
    if (nsm_up)
        server_caps_ask();
}

static void sm_link_on_down(void *ctx)
{
    (void)ctx;
    log_warn("event=router-down router=%s", c2s_config->link.router);
    /* What changed meanwhile is unknown: the router lists the instances up
     * when we are back, and on_ready re-announces every session. */
    for (size_t i = 0; i < nsm_up; i++)
        free(sm_up[i]);
    nsm_up = 0;
    server_caps_forget("router-down");
}

static void sm_link_on_name(void *ctx, const char *name, const char *instance, int up)
{
    (void)ctx;
    if (strcmp(name, c2s_config->domain))
        return;
    log_notice("event=sm-%s name=%s instance=%s", up ? "up" : "down", name, instance ? instance : "-");
    size_t i = 0;
    while (i < nsm_up && strcmp(sm_up[i], instance))
        i++;
    if (!up) {
        if (i < nsm_up) {
            free(sm_up[i]);
            sm_up[i] = sm_up[--nsm_up];
        }
        if (!nsm_up)
            server_caps_forget("sm-down");
        return;
    }
    if (i < nsm_up)
        return;
    sm_up = xrealloc(sm_up, (nsm_up + 1) * sizeof *sm_up);
    sm_up[nsm_up++] = xstrdup(instance);
    /* The list the router sends before we are ready is followed by
     * on_ready, which re-announces everything once if needed. */
    if (comp_client_is_ready(router_link)) {
        sm_link_resync("sm-back");
        server_caps_ask();
    }
}

/* An sm instance was taken over: its users' sessions are re-announced, and
 * the router takes each to its new owner; the others answer started. */
static void sm_link_on_lost(void *ctx, const char *name, const char *instance)
{
    (void)ctx;
    if (strcmp(name, c2s_config->domain))
        return;
    log_notice("event=sm-lost name=%s instance=%s", name, instance);
    sm_link_resync("sm-taken-over");
}

static void sm_link_on_bind_error(void *ctx, const char *name, const char *condition)
{
    (void)ctx;
    log_error("event=bind-failed name=%s condition=%s", name, condition);
}

int sm_link_start(struct event_base *base)
{
    const char *binds[1] = {c2s_config->instance};
    comp_client_cfg_t cfg = {
        .binds = binds,
        .nbinds = 1,
        .manual_ack = 1,   /* deliveries: once in the kernel (deliver.c) */
    };
    comp_link_cfg_apply(&cfg, &c2s_config->link);
    static const comp_client_cb_t cb = {
        .on_ready = sm_link_on_ready,
        .on_down = sm_link_on_down,
        .on_stanza = sm_link_on_stanza,
        .on_name = sm_link_on_name,
        .on_bind_error = sm_link_on_bind_error,
        .on_lost = sm_link_on_lost,
    };
    router_link = comp_client_new(base, &cfg, &cb, NULL);
    return router_link ? 0 : -1;
}

void sm_link_stop(void)
{
    if (router_link)
        comp_client_close(router_link, 0);
}

void sm_link_free(void)
{
    free(groups);
    groups = NULL;
    free(group_free);
    group_free = NULL;
    ngroups = ngroup_free = 0;
    if (router_link)
        comp_client_free(router_link);
    router_link = NULL;
    for (size_t i = 0; i < nsm_up; i++)
        free(sm_up[i]);
    free(sm_up);
    sm_up = NULL;
    nsm_up = 0;
}
