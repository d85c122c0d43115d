/* weft-muc: the group chat service process. This file wires the option table
 * and the callbacks to the daemon skeleton, owns the router link and the
 * storage, and hands each stanza the router delivers to dispatch.c, whose
 * output it is. The link is opened only once persist.c has loaded every
 * room, so nothing is answered from a half-loaded state: the router holds
 * what arrives meanwhile. */
#include "muc.h"
#include "comp_client.h"
#include "comp_proto.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

static comp_client_t *link_;
static int stopping;

/* The fan-out output of dispatch.c (docs/component-protocol.md 9.7), held
 * with the rest of the stanza's output by outq.c. */
static void link_send_fanout(const xml_node_t *st, const char *const *to, size_t n)
{
    if (!n)
        return;
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(st, NS_CLIENT, &sb);    /* reads as jabber:component:accept on the link */
    muc_outq_add(&sb, to, n);
    strbuf_free(&sb);
}

/* The output of dispatch.c: the router link, through outq.c. */
static int link_send(const xml_node_t *st)
{
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(st, NS_CLIENT, &sb);    /* reads as jabber:component:accept on the link */
    muc_outq_add(&sb, NULL, 0);
    strbuf_free(&sb);
    return link_ ? 0 : -1;
}

int muc_link_ready(void)
{
    return link_ && comp_client_is_ready(link_);
}

size_t muc_link_unacked(void)
{
    return link_ ? comp_client_unacked(link_) : 0;
}

static int is_stanza_name(const char *n)
{
    return !strcmp(n, "message") || !strcmp(n, "presence") || !strcmp(n, "iq");
}

/* A stanza id for the message being handled: derived from its origin
 * marker when it has one, so a message the router gives again after a
 * restart (delivered, archived, but not acknowledged before a kill) gets the
 * same id and replaces its archive record instead of adding a second. */
static char *origin_id(void)
{
    const char *epoch;
    uint64_t seq;
    if (!link_ || comp_client_in_origin(link_, &epoch, &seq) < 0)
        return NULL;
    return muc_derived_id(epoch, seq);
}

/* Stanzas waiting for room on the router socket, oldest first. A stanza is
 * handled only when what it causes (a broadcast: at most limits.occupants
 * copies) and its acknowledgement can go to the kernel in one write: a
 * kill -9 then leaves each stanza either wholly done and acknowledged or not
 * started (the router gives it again), never half broadcast. */
typedef struct inq {
    xml_node_t *st;
    uint64_t token;
    char *id;
    struct inq *next;
} inq_t;
static inq_t *inq_head, **inq_tail = &inq_head;
static size_t inq_len;
static struct event *inq_timer;
#define ROOM_NEEDED (1u << 19)

/* On an asynchronous storage the stanza's writes are recorded, and outq.c
 * holds its output until they are committed (docs/architecture.md: writes
 * that acknowledge something are committed first); then the output goes
 * with the acknowledgement, as on SQLite, where writes complete inside the
 * call and the output goes at once. */
static void handle(xml_node_t *st, uint64_t token, char *id)
{
    int async = storage_is_async(muc_storage);
    if (async)
        muc_persist_journal_begin();
    muc_outq_begin(token);
    muc_dispatch(st, id);
    free(id);
    muc_outq_end(async ? muc_persist_journal_end() : NULL);
    xml_free(st);
}

/* Room for a large broadcast, or half the socket's buffer when that is
 * smaller (a UNIX socket's is about 200 KiB); the link below its
 * high-water mark (comp_client.h): what waits here then waits for the router's
 * acks like what comp_client parks, instead of filling the link's buffer;
 * and outq.c holding less than its bound of output (muc_outq_blocked). */
static int has_room(void)
{
    size_t room, cap;
    if (link_ && comp_client_above_high(link_))
        return 0;
    if (muc_outq_blocked())
        return 0;
    if (comp_client_write_room(link_, &room, &cap) < 0)
        return 1;
    return room >= (cap / 2 < ROOM_NEEDED ? cap / 2 : ROOM_NEEDED);
}

static void inq_run(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    while (inq_head && has_room()) {
        inq_t *q = inq_head;
        inq_head = q->next;
        if (!inq_head)
            inq_tail = &inq_head;
        inq_len--;
        handle(q->st, q->token, q->id);
        free(q);
    }
    if (inq_head) {
        struct timeval tv = {0, 1000};
        evtimer_add(inq_timer, &tv);
    }
}

static void inq_free(void)
{
    while (inq_head) {
        inq_t *q = inq_head;
        inq_head = q->next;
        xml_free(q->st);
        free(q->id);
        free(q);
    }
    inq_tail = &inq_head;
    inq_len = 0;
    if (inq_timer)
        event_free(inq_timer);
    inq_timer = NULL;
}

size_t muc_deferred_count(void)
{
    return inq_len;
}

static void on_stanza(void *ctx, xml_node_t *st)
{
    (void)ctx;
    const char *ns = st->ns ? st->ns : "";
    uint64_t token = comp_client_in_token(link_);
    if ((!strcmp(ns, COMP_NS_ACCEPT) || !strcmp(ns, NS_CLIENT)) && is_stanza_name(st->name)) {
        xml_rename_ns(st, COMP_NS_ACCEPT, NS_CLIENT);
        if (!inq_head && has_room()) {
            handle(st, token, origin_id());
            return;
        }
        if (!inq_head)
            log_debug("event=input-deferred reason=router-socket-full");
        inq_t *q = xcalloc(1, sizeof *q);
        q->st = st;
        q->token = token;
        q->id = origin_id();
        *inq_tail = q;
        inq_tail = &q->next;
        inq_len++;
        if (!inq_timer)
            inq_timer = evtimer_new(daemon_base(), inq_run, NULL);
        if (!evtimer_pending(inq_timer, NULL)) {
            struct timeval tv = {0, 1000};
            evtimer_add(inq_timer, &tv);
        }
        return;
    }
    comp_client_done(link_, token);
    const char *from = xml_attr_get(st, "from");
    log_warn("event=protocol-error reason=unknown-element element={%s}%s from=%s", ns, st->name,
             from ? from : "-");
    xml_free(st);
}

/* Below the low-water mark again: what waits here goes first. */
static void on_pressure(void *ctx, int above)
{
    (void)ctx;
    if (!above && inq_head)
        inq_run(-1, 0, NULL);
}

static void on_name(void *ctx, const char *name, const char *instance, int up)
{
    (void)ctx;
    if (!strcmp(name, muc_config->domain))
        log_info("event=muc-instance instance=%s state=%s", instance, up ? "up" : "down");
}

static void on_ready(void *ctx)
{
    (void)ctx;
    log_notice("event=ready domain=%s rooms=%zu", muc_config->domain, muc_room_count());
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

/* persist.c has every room in memory: now the router may deliver. */
static void loaded(void)
{
    if (stopping)
        return;
    const char *binds[1] = {muc_config->domain};
    comp_client_cfg_t cc = {
        .binds = binds,
        .nbinds = 1,
        .manual_ack = 1,
    };
    comp_link_cfg_apply(&cc, &muc_config->link);
    static const comp_client_cb_t cb = {
        .on_ready = on_ready,
        .on_down = on_down,
        .on_stanza = on_stanza,
        .on_name = on_name,
        .on_bind_error = on_bind_error,
        .on_pressure = on_pressure,
    };
    link_ = comp_client_new(daemon_base(), &cc, &cb, NULL);
    if (!link_)
        daemon_exit();
}

static int muc_start(struct event_base *base, void *config)
{
    muc_config = config;
    muc_set_output(link_send, link_send_fanout);
    muc_outq_init(&link_);
    char err[512];
    const char *url = *muc_config->storage ? muc_config->storage : muc_config->database;
    muc_storage = storage_open(url, base, err, sizeof err);
    if (!muc_storage) {
        log_error("event=start reason=storage error=\"%s\"", err);
        return -1;
    }
    muc_persist_load(loaded);
    return 0;
}

/* A stopping muc keeps its rooms and occupants in storage: nobody is told
 * to leave, and the next start carries on. */
static void muc_stop(void)
{
    stopping = 1;
    if (!link_) {
        daemon_exit();
        return;
    }
    comp_client_close(link_, 0);
    struct timeval tv = {2, 0};
    event_base_loopexit(daemon_base(), &tv);
}

/* SIGHUP: the limits take the new values; link, domain and storage stay. */
static void muc_reload(void *config)
{
    muc_cfg_t *fresh = config, *old = muc_config;
    comp_link_cfg_keep(&fresh->link, &old->link);
    cfg_swap_str(&fresh->domain, &old->domain);
    cfg_swap_str(&fresh->database, &old->database);
    cfg_swap_str(&fresh->storage, &old->storage);
    muc_config = fresh;
}

static void muc_cron(void)
{
    muc_iq_relay_expire(daemon_now());
}

static void muc_cleanup(void)
{
    inq_free();
    muc_iq_relay_free();
    if (link_)
        comp_client_free(link_);
    link_ = NULL;
    muc_outq_free();      /* never acknowledged: the router gives those stanzas again */
    if (muc_storage)
        storage_drain(muc_storage);
    muc_room_free_all();
    if (muc_storage)
        storage_close(muc_storage);
    muc_storage = NULL;
}

int main(int argc, char **argv)
{
    daemon_spec_t spec = {
        .ident = "muc",
        .default_config = "etc/muc.xml",
        .start = muc_start,
        .stop = muc_stop,
        .reload = muc_reload,
        .metrics = muc_metrics_register,
        .cron = muc_cron,
        .cleanup = muc_cleanup,
    };
    spec.table = muc_config_table(&spec.config_size);
    return daemon_main(argc, argv, &spec);
}
