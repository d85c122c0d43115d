/* admin: the sm's admin socket (UNIX, mode 0600; option `control`, empty =
 * none), for weftctl. A client writes one command line and reads the answer
 * until the sm closes:
 *   sessions   one line per live session
 *              "jid=J c2s=INSTANCE sid=SID available=0|1 priority=N",
 *              then "count=N"
 * Anything else is "error unknown-command". Lines are key=value, as on the
 * router's control socket (router/control.c).
 *
 * Sessions belong to core.c, which calls admin_sess_start and admin_sess_end
 * (before any module's hook runs) and admin keeps an index of pointers.
 * Invariant: a pointer is in the index exactly from the start to the end of
 * its session, so every pointer in it is live; at exit core frees sessions
 * without ending them, so admin_free empties the index without looking
 * inside. */
#include "sm.h"
#include "log.h"
#include "net.h"
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ADMIN_BUCKETS 4096
#define ADMIN_LINE_MAX 256

typedef struct admin_ent {
    sm_sess_t *s;
    struct admin_ent *next;
} admin_ent_t;

static admin_ent_t *admin_tab[ADMIN_BUCKETS];
static size_t admin_nsess;
static struct evconnlistener *admin_listener;
static struct event_base *admin_base;

static unsigned admin_hash(const sm_sess_t *s)
{
    uintptr_t p = (uintptr_t)s;
    return (unsigned)((p >> 4) ^ (p >> 16)) % ADMIN_BUCKETS;
}

void admin_sess_start(sm_sess_t *s)
{
    admin_ent_t **pp = &admin_tab[admin_hash(s)];
    admin_ent_t *e = xcalloc(1, sizeof *e);
    e->s = s;
    e->next = *pp;
    *pp = e;
    admin_nsess++;
}

void admin_sess_end(sm_sess_t *s)
{
    for (admin_ent_t **pp = &admin_tab[admin_hash(s)]; *pp; pp = &(*pp)->next) {
        if ((*pp)->s == s) {
            admin_ent_t *e = *pp;
            *pp = e->next;
            free(e);
            admin_nsess--;
            return;
        }
    }
}

void admin_foreach_session(void (*fn)(const sm_sess_t *s, void *arg), void *arg)
{
    for (size_t b = 0; b < ADMIN_BUCKETS; b++)
        for (admin_ent_t *e = admin_tab[b]; e; e = e->next)
            fn(e->s, arg);
}

static void admin_write_sessions(strbuf_t *out)
{
    for (size_t b = 0; b < ADMIN_BUCKETS; b++) {
        for (admin_ent_t *e = admin_tab[b]; e; e = e->next) {
            const sm_sess_t *s = e->s;
            strbuf_printf(out, "jid=%s c2s=%s sid=%s available=%d priority=%d\n", s->jid.full, s->c2s, s->sid,
                          s->available ? 1 : 0, s->priority);
        }
    }
    strbuf_printf(out, "count=%zu\n", admin_nsess);
}

static void admin_read_cb(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n;
    char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_ANY);
    if (!line) {
        if (evbuffer_get_length(in) > ADMIN_LINE_MAX)
            bufferevent_free(bev);
        return;
    }
    strbuf_t out;
    strbuf_init(&out);
    if (!strcmp(line, "sessions"))
        admin_write_sessions(&out);
    else
        strbuf_puts(&out, "error unknown-command\n");
    log_debug("event=admin-command command=\"%.32s\"", line);
    free(line);
    bufferevent_write(bev, out.data, out.len);
    strbuf_free(&out);
    /* Answered: close once the output has left (admin_write_cb). */
    bufferevent_disable(bev, EV_READ);
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
}

static void admin_write_cb(struct bufferevent *bev, void *arg)
{
    (void)arg;
    if (!(bufferevent_get_enabled(bev) & EV_READ))
        bufferevent_free(bev);
}

static void admin_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)what;
    (void)arg;
    bufferevent_free(bev);
}

static void admin_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
    (void)lis;
    (void)sa;
    (void)len;
    (void)arg;
    struct bufferevent *bev = bufferevent_socket_new(admin_base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    bufferevent_setcb(bev, admin_read_cb, admin_write_cb, admin_event_cb, NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* Opens the socket when path is set (the index is kept always: it costs a
 * pointer per session). 0, or -1 after logging why. */
int admin_start(struct event_base *base, const char *path)
{
    admin_base = base;
    if (!path || !*path)
        return 0;
    char spec[1100];
    snprintf(spec, sizeof spec, "unix:%s", path);
    net_addr_t addr;
    if (strlen(path) >= sizeof spec - 6 || net_addr_parse(spec, 0, &addr) < 0) {
        log_error("event=control-failed path=%s reason=bad-path", path);
        return -1;
    }
    char err[256];
    /* net_listen creates UNIX sockets 0600: only our user may connect. */
    admin_listener = net_listen(base, &addr, admin_accept, NULL, err, sizeof err);
    if (!admin_listener) {
        log_error("event=control-failed path=%s reason=\"%s\"", path, err);
        return -1;
    }
    log_info("event=control-listening path=%s", path);
    return 0;
}

void admin_stop(void)
{
    if (admin_listener)
        evconnlistener_free(admin_listener);
    admin_listener = NULL;
}

void admin_free(void)
{
    admin_stop();
    for (size_t b = 0; b < ADMIN_BUCKETS; b++) {
        while (admin_tab[b]) {
            admin_ent_t *e = admin_tab[b];
            admin_tab[b] = e->next;
            free(e);
        }
    }
    admin_nsess = 0;
}
