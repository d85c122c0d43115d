/* weft-sm: the session manager process. This file wires the option table and
 * the callbacks to the daemon skeleton, owns the router link and storage, and
 * dispatches what the router delivers: session control and client stanzas
 * from c2s (docs/session-protocol.md), authreg requests, and plain stanzas for
 * our users; it starts admin.c's socket. It also keeps the set of sm
 * instances serving our domain so that sm_send can tell which users this
 * instance owns (the router's rendezvous hash, docs/component-protocol.md
 * 8.2), and follows takeovers and handbacks (8.5). */
#include "sm.h"
#include "store.h"
#include "comp_client.h"
#include "comp_fanout.h"
#include "comp_proto.h"
#include "log.h"
#include "module_run.h"
#include <stdlib.h>
#include <string.h>

sm_cfg_t *sm_config;
storage_t *sm_storage;

static comp_client_t *link_;
static int stopping;

/* An sm instance seen binding our domain. A down instance keeps its users for
 * a while (the router keeps its slot while it restarts); past that its users
 * are ours to compute again. When in doubt sm_send goes through the router,
 * which always knows: our computation only saves a round trip. */
#define SM_PEER_FORGET 600.0
typedef struct sm_peer {
    char *name;
    int up;
    double down_at;
} sm_peer_t;
static sm_peer_t *peers;
static size_t npeers;

int sm_link_send_raw(const char *bytes, size_t len)
{
    sm_deliver_flush();   /* what deliver_batch.c holds goes first: order on the link */
    if (!link_ || comp_client_send_raw(link_, bytes, len) < 0) {
        log_warn("event=router-send result=dropped reason=buffer-full bytes=%zu", len);
        return -1;
    }
    return 0;
}

size_t sm_link_stanza_limit(void)
{
    return link_ ? comp_client_stanza_limit(link_) : COMP_FANOUT_DEFAULT_STANZA;
}

static void before_ack(void *ctx)
{
    (void)ctx;
    sm_deliver_flush();
}

/* Input waits while this is 1: comp_client parks what the router delivers,
 * and core.c's per-user queues are not drained (sm_users_resume). */
int sm_link_above(void)
{
    return link_ && comp_client_above_high(link_);
}

static void on_pressure(void *ctx, int above)
{
    (void)ctx;
    if (!above)
        sm_users_resume();
}

int sm_owns(const char *bare)
{
    const char *self = sm_config->link.name;
    size_t klen = strlen(bare);
    uint64_t best = comp_proto_partition_score(bare, klen, self);
    double now = daemon_now();
    for (size_t i = 0; i < npeers; i++) {
        sm_peer_t *p = &peers[i];
        if (!strcmp(p->name, self) || (!p->up && now - p->down_at > SM_PEER_FORGET))
            continue;
        if (comp_proto_partition_score(bare, klen, p->name) > best)
            return 0;
    }
    return 1;
}

static void peer_update(const char *instance, int up)
{
    for (size_t i = 0; i < npeers; i++) {
        if (!strcmp(peers[i].name, instance)) {
            peers[i].up = up;
            peers[i].down_at = daemon_now();
            return;
        }
    }
    peers = xrealloc(peers, (npeers + 1) * sizeof *peers);
    peers[npeers].name = xstrdup(instance);
    peers[npeers].up = up;
    peers[npeers].down_at = daemon_now();
    npeers++;
}

/* Plain stanzas arrive in jabber:component:accept; inside the sm every stanza
 * is in jabber:client (sm_send and sm_deliver serialize accordingly). */
static int is_stanza_name(const char *n)
{
    return !strcmp(n, "message") || !strcmp(n, "presence") || !strcmp(n, "iq");
}

/* An element is acknowledged to the router once its processing and the
 * writes it caused are done (store.h): sm_ack_enter/leave around it. While the
 * link is above its high-water mark comp_client parks what the router
 * delivers (comp_client.h), so a presence storm waits unread here instead of
 * its fan-outs filling the link's buffer. */
static void ack_done(unsigned long long token)
{
    if (link_)
        comp_client_done(link_, token);
}

/* One element the router delivered, acknowledged with token once done;
 * takes st. */
static void handle_element(xml_node_t *st, uint64_t token)
{
    sm_ack_enter(token);
    const char *ns = st->ns ? st->ns : "";
    if (!strcmp(ns, SM_NS_SESSION) && !strcmp(st->name, "session")) {
        sm_session_control(st);
    } else if (!strcmp(ns, SM_NS_SESSION) && !strcmp(st->name, "route")) {
        sm_route_in(st);
    } else if (!strcmp(ns, SM_NS_SESSION) && !strcmp(st->name, "deliver")) {
        sm_deliver_bounced(st);
    } else if (!strcmp(ns, SM_NS_AUTHREG) && !strcmp(st->name, "authreg")) {
        sm_authreg_handle(st);
    } else if ((!strcmp(ns, COMP_NS_ACCEPT) || !strcmp(ns, NS_CLIENT)) && is_stanza_name(st->name)) {
        xml_rename_ns(st, COMP_NS_ACCEPT, NS_CLIENT);
        sm_inbound(st);
    } else {
        const char *from = xml_attr_get(st, "from");
        log_warn("event=protocol-error reason=unknown-element element={%s}%s from=%s", ns, st->name,
                 from ? from : "-");
    }
    xml_free(st);
    sm_ack_leave();
}

static void on_stanza(void *ctx, xml_node_t *st)
{
    (void)ctx;
    handle_element(st, comp_client_in_token(link_));
}

/* Deliveries of one stanza to n recipients that the router sent as one
 * <w:fan/> (a room message to its local occupants, docs/component-protocol.md
 * 9.8), parsed once. Each recipient is its own delivery with its own
 * acknowledgement, handled as on_stanza handles a routed stanza, on one tree
 * with only 'to' set anew while nothing changes it (sm_inbound_each). */
static const char *fan_to(size_t i, void *arg)
{
    return ((const comp_fan_rcpt_t *)arg)[i].to;
}

static void fan_ack(size_t i, int enter, void *arg)
{
    if (enter)
        sm_ack_enter(((const comp_fan_rcpt_t *)arg)[i].token);
    else
        sm_ack_leave();
}

static void on_fan(void *ctx, xml_node_t *st, const comp_fan_rcpt_t *r, size_t n)
{
    (void)ctx;
    const char *ns = st->ns ? st->ns : "";
    if (!((!strcmp(ns, COMP_NS_ACCEPT) || !strcmp(ns, NS_CLIENT)) && is_stanza_name(st->name))) {
        for (size_t i = 0; i < n; i++) {     /* not a stanza: as on_stanza, one copy each */
            xml_node_t *one = xml_copy(st);
            xml_attr_set(one, "to", r[i].to);
            handle_element(one, r[i].token);
        }
        xml_free(st);
        return;
    }
    xml_rename_ns(st, COMP_NS_ACCEPT, NS_CLIENT);
    sm_inbound_each(st, n, fan_to, fan_ack, (void *)r);
}

static void on_name(void *ctx, const char *name, const char *instance, int up)
{
    (void)ctx;
    sm_run_component_change(name, instance, up);
    if (!strcmp(name, sm_config->domain)) {
        peer_update(instance, up);
        log_info("event=sm-instance instance=%s state=%s", instance, up ? "up" : "down");
        /* Users that hash to an instance that came (back) are its own: we
         * forget the sessions we kept for them (a handback says when we are
         * done; this also covers an instance added to the partition). */
        if (up && strcmp(instance, sm_config->link.name))
            sm_core_release(0);
        return;
    }
    if (!up)
        sm_c2s_down(name);
}

/* An instance was taken over (docs/component-protocol.md 8.5): when it is
 * another, its users hash to the rest of us from now on; when it is us, the
 * others served our users while we were away, so what we kept of them is
 * stale. */
static void on_lost(void *ctx, const char *name, const char *instance)
{
    (void)ctx;
    if (strcmp(name, sm_config->domain))
        return;
    if (!strcmp(instance, sm_config->link.name)) {
        log_warn("event=taken-over name=%s", name);
        sm_core_forget_all();
        sm_resync_open("taken-over");        /* c2s re-announces our users' sessions */
        return;
    }
    for (size_t i = 0; i < npeers; i++) {
        if (!strcmp(peers[i].name, instance)) {
            free(peers[i].name);
            peers[i] = peers[--npeers];
            break;
        }
    }
    log_notice("event=sm-instance instance=%s state=lost", instance);
    sm_resync_open("takeover");              /* its users are ours now, sessions to come */
}

/* A handback: released once no user going back has storage work under way
 * (then every stanza we produced for them is on the link before the
 * <w:released/>); polled, as the work ends in storage callbacks. */
typedef struct handback {
    char *name, *instance;
    struct event *ev;
} handback_t;

static void handback_try(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    handback_t *h = arg;
    if (sm_core_release(0) && !stopping) {
        struct timeval tv = {0, 10000};
        evtimer_add(h->ev, &tv);
        return;
    }
    if (link_)
        comp_client_released(link_, h->name, h->instance);
    log_notice("event=handback-released name=%s instance=%s", h->name, h->instance);
    event_free(h->ev);
    free(h->name);
    free(h->instance);
    free(h);
}

static void on_handback(void *ctx, const char *name, const char *instance)
{
    (void)ctx;
    handback_t *h = xcalloc(1, sizeof *h);
    h->name = xstrdup(name);
    h->instance = xstrdup(instance);
    h->ev = evtimer_new(daemon_base(), handback_try, h);
    handback_try(-1, 0, h);
}

static void on_ready(void *ctx)
{
    (void)ctx;
    static int was_ready;
    log_notice("event=ready domain=%s", sm_config->domain);
    /* The first time: what the router held for us comes next, before c2s's
     * re-announcements. Later (a router restart) we still know the sessions. */
    if (!was_ready)
        sm_resync_open("start");
    was_ready = 1;
}

static void on_down(void *ctx)
{
    (void)ctx;
    if (stopping)
        daemon_exit();
}

static void on_bind_error(void *ctx, const char *name, const char *condition)
{
    (void)ctx;
    log_error("event=bind-failed name=%s condition=%s", name, condition);
}

static int sm_start(struct event_base *base, void *config)
{
    sm_config = config;
    char err[512];
    const char *url = *sm_config->storage ? sm_config->storage : sm_config->database;
    sm_storage = storage_open(url, base, err, sizeof err);
    if (!sm_storage) {
        log_error("event=start reason=storage error=\"%s\"", err);
        return -1;
    }
    log_info("event=storage driver=%s", storage_driver_name(sm_storage));
    sm_ack_init(ack_done);
    storage_set_cache(sm_storage, sm_config->database_cache);
    sm_core_init(base);
    /* Before the modules: admin's session hooks must run first. */
    if (admin_start(base, sm_config->control) < 0)
        return -1;
    if (sm_modules_init() < 0)
        return -1;
    const char *binds[1] = {sm_config->domain};
    comp_client_cfg_t cc = {
        .binds = binds,
        .nbinds = 1,
        .manual_ack = 1,   /* once processed and stored (store.h) */
    };
    comp_link_cfg_apply(&cc, &sm_config->link);
    static const comp_client_cb_t cb = {
        .on_ready = on_ready,
        .on_down = on_down,
        .on_stanza = on_stanza,
        .on_fan = on_fan,
        .on_name = on_name,
        .on_bind_error = on_bind_error,
        .on_lost = on_lost,
        .on_handback = on_handback,
        .on_pressure = on_pressure,
        .before_ack = before_ack,
    };
    link_ = comp_client_new(base, &cc, &cb, NULL);
    return link_ ? 0 : -1;
}

/* A stopping sm keeps its sessions: c2s keeps the clients connected and
 * re-announces them (resync) when an sm is back. */
static void sm_stop(void)
{
    stopping = 1;
    admin_stop();
    comp_client_close(link_, 0);
    struct timeval tv = {2, 0};
    event_base_loopexit(daemon_base(), &tv);
}

/* SIGHUP: the limits and the modules' options take the new values; the link,
 * domain and database stay as started (their strings are swapped into the old
 * struct, which the skeleton frees after this returns). */
static void sm_reload(void *config)
{
    sm_cfg_t *fresh = config, *old = sm_config;
    comp_link_cfg_keep(&fresh->link, &old->link);
    cfg_swap_str(&fresh->domain, &old->domain);
    cfg_swap_str(&fresh->database, &old->database);
    cfg_swap_str(&fresh->storage, &old->storage);
    cfg_swap_str(&fresh->control, &old->control);
    sm_config = fresh;
}

static void sm_cron(void)
{
    sm_core_cron(daemon_now());
}

static void sm_cleanup(void)
{
    if (link_)
        comp_client_free(link_);
    link_ = NULL;
    admin_free();
    sm_deliver_batch_free();
    sm_core_free();
    sm_modules_free();
    if (sm_storage)
        storage_close(sm_storage);
    sm_storage = NULL;
    for (size_t i = 0; i < npeers; i++)
        free(peers[i].name);
    free(peers);
    peers = NULL;
    npeers = 0;
}

int main(int argc, char **argv)
{
    daemon_spec_t spec = {
        .ident = "sm",
        .default_config = "etc/sm.xml",
        .start = sm_start,
        .stop = sm_stop,
        .reload = sm_reload,
        .metrics = sm_metrics_register,
        .cron = sm_cron,
        .cleanup = sm_cleanup,
    };
    spec.table = sm_config_table(&spec.config_size);   /* the core's options and the modules' */
    int rc = daemon_main(argc, argv, &spec);
    sm_config_table_free();
    return rc;
}
