/* control: the router's admin socket (UNIX, mode 0600). A client writes one
 * command line and reads the answer until the router closes:
 *   stats   one line per component link, then one per name instance
 * Lines are key=value, so weftctl and scripts can parse them. */
#include "router.h"
#include "log.h"
#include "net.h"
#include <event2/buffer.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static struct evconnlistener *listener;
static struct event_base *base;

/* The word stats prints for a link's state (docs/component-protocol.md). */
static const char *link_state_word(link_state_t st)
{
    switch (st) {
    case LINK_HEADER: return "header";
    case LINK_AUTH: return "auth";
    case LINK_SESSION: return "session";
    case LINK_READY: return "routing";
    case LINK_CLOSING: return "closing";
    }
    return "unknown";
}

static void write_stats(strbuf_t *out)
{
    strbuf_printf(out, "router links=%zu held=%zu\n", link_count(), names_held_total());
    for (link_t *l = link_list(); l; l = l->next) {
        strbuf_printf(out,
                      "link id=%llu component=%s protocol=%s peer=%s tls=%d state=%s stanzas_in=%llu "
                      "stanzas_out=%llu bytes_in=%llu bytes_out=%llu unacked=%zu paused=%d fan=%d fan_elements=%llu\n",
                      (unsigned long long)l->id, l->acl ? l->acl->name : "-", l->internal ? "internal" : "xep0114",
                      l->peer, l->tls, link_state_word(l->state), (unsigned long long)l->c.stanzas_in,
                      (unsigned long long)l->c.stanzas_out, (unsigned long long)l->c.bytes_in,
                      (unsigned long long)l->c.bytes_out, l->fifo_len, l->paused, l->fan_ok,
                      (unsigned long long)l->c.fan_elements);
    }
    names_stats(out);
}

static void ctl_read_cb(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n;
    char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_ANY);
    if (!line) {
        if (evbuffer_get_length(in) > 256)
            bufferevent_free(bev);
        return;
    }
    strbuf_t out;
    strbuf_init(&out);
    if (!strcmp(line, "stats"))
        write_stats(&out);
    else
        strbuf_printf(&out, "error unknown-command\n");
    free(line);
    bufferevent_write(bev, out.data, out.len);
    strbuf_free(&out);
    bufferevent_disable(bev, EV_READ);
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
}

static void ctl_write_cb(struct bufferevent *bev, void *arg)
{
    (void)arg;
    if (!(bufferevent_get_enabled(bev) & EV_READ))
        bufferevent_free(bev);
}

static void ctl_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)what;
    (void)arg;
    bufferevent_free(bev);
}

static void ctl_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
    (void)lis;
    (void)sa;
    (void)len;
    (void)arg;
    struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(bev, ctl_read_cb, ctl_write_cb, ctl_event_cb, NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

int control_start(struct event_base *b, const char *path)
{
    base = b;
    if (!*path)
        return 0;
    char spec[1100];
    snprintf(spec, sizeof spec, "unix:%s", path);
    net_addr_t addr;
    if (net_addr_parse(spec, 0, &addr) < 0) {
        log_error("event=control-failed path=%s reason=bad-path", path);
        return -1;
    }
    char err[256];
    listener = net_listen(b, &addr, ctl_accept, NULL, err, sizeof err);
    if (!listener) {
        log_error("event=control-failed path=%s reason=\"%s\"", path, err);
        return -1;
    }
    return 0; /* net_listen created it 0600 */
}

void control_stop(void)
{
    if (listener)
        evconnlistener_free(listener);
    listener = NULL;
}
