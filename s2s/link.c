/* link: the s2s end of the router link. The s2s binds the default route, so
 * the router hands it every stanza for a domain no local component serves;
 * out.c carries those to the remote domain. Stanzas from remote servers go
 * the other way, into the router, which routes them to the sm (or a
 * component) of the local domain they are for.
 *
 * Stanzas for remote domains are acknowledged to the router only once their
 * bytes reached the kernel (conn_write_stanza) or they were bounced
 * (manual_ack): an s2s killed
 * while stanzas wait for a connection gets them again when it is back. */
#include "s2s.h"
#include "comp_client.h"
#include "comp_proto.h"
#include "jid.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

static comp_client_t *link_;
static int stopping;

static void to_accept_ns(xml_node_t *st)
{
    xml_rename_ns(st, NS_SERVER, COMP_NS_ACCEPT);
    xml_rename_ns(st, "jabber:client", COMP_NS_ACCEPT);
}

int link_send(xml_node_t *st)
{
    to_accept_ns(st);
    if (!link_ || comp_client_send(link_, st) < 0) {
        log_warn("event=router-send result=dropped reason=buffer-full element=%s", st->name);
        return -1;
    }
    return 0;
}

void link_bounce(const xml_node_t *st, const char *condition, const char *type)
{
    if (!comp_proto_bounceable(st->name, xml_attr_get(st, "type")))
        return;
    xml_node_t *e = xml_copy(st);
    to_accept_ns(e);
    const char *from = xml_attr_get(st, "from"), *to = xml_attr_get(st, "to");
    xml_attr_set(e, "from", to);
    xml_attr_set(e, "to", from);
    xml_attr_set(e, "type", "error");
    xml_node_t *err = xml_add_child(e, COMP_NS_ACCEPT, "error");
    xml_attr_set(err, "type", type);
    xml_add_child(err, NS_STANZAS, condition);
    if (link_)
        comp_client_send(link_, e);
    xml_free(e);
}

static int is_stanza_name(const char *n)
{
    return n && (!strcmp(n, "message") || !strcmp(n, "presence") || !strcmp(n, "iq"));
}

/* A stanza for a remote domain. Its from must be one of our domains (the
 * router stamps c2s/sm traffic; anything else is a misrouted element). */
static void on_stanza(void *ctx, xml_node_t *st)
{
    (void)ctx;
    uint64_t token = comp_client_in_token(link_);
    const char *from = xml_attr_get(st, "from"), *to = xml_attr_get(st, "to");
    if (!is_stanza_name(st->name) || !from || !to) {
        log_warn("event=protocol-error reason=not-a-routable-stanza element=%s", st->name ? st->name : "-");
        link_done(token);
        xml_free(st);
        return;
    }
    jid_t f, t;
    int fok = jid_parse(from, &f) == JID_OK, tok = jid_parse(to, &t) == JID_OK;
    if (!fok || !tok) {
        link_bounce(st, "jid-malformed", "modify");
    } else if (!s2s_is_local(f.domain)) {
        log_warn("event=refused reason=from-not-local from=%s to=%s", from, to);
        link_bounce(st, "not-allowed", "cancel");
    } else if (s2s_is_local(t.domain)) {
        /* Ours, but nothing on the router serves it (e.g. a component that is not configured). */
        link_bounce(st, "service-unavailable", "cancel");
    } else {
        xml_rename_ns(st, COMP_NS_ACCEPT, NS_SERVER);
        xml_rename_ns(st, "jabber:client", NS_SERVER);
        out_send(st, f.domain, t.domain, token);
        st = NULL;
    }
    if (fok)
        jid_clear(&f);
    if (tok)
        jid_clear(&t);
    if (st)
        link_done(token);
    xml_free(st);
}

void link_done(uint64_t token)
{
    if (link_)
        comp_client_done(link_, token);
}

static void on_ready(void *ctx)
{
    (void)ctx;
    log_notice("event=router-ready domains=\"%s\"", s2s_config->domains);
}

static void on_down(void *ctx)
{
    (void)ctx;
    names_clear();   /* the router lists what is up again after the reconnect */
    if (stopping)
        daemon_exit();
}

/* Availability notifications: which names local components serve. */
static void on_name(void *ctx, const char *name, const char *instance, int up)
{
    (void)ctx;
    names_update(name, instance, up);
}

static void on_bind_error(void *ctx, const char *name, const char *condition)
{
    (void)ctx;
    log_error("event=bind-failed name=%s condition=%s", *name ? name : "(default route)", condition);
}

int link_start(struct event_base *base)
{
    const char *binds[1] = {s2s_config->instance};
    comp_client_cfg_t cc = {
        .binds = binds,
        .nbinds = *s2s_config->instance ? 1 : 0,
        .bind_default = 1,
        .manual_ack = 1,
    };
    comp_link_cfg_apply(&cc, &s2s_config->link);
    static const comp_client_cb_t cb = {
        .on_ready = on_ready,
        .on_down = on_down,
        .on_stanza = on_stanza,
        .on_name = on_name,
        .on_bind_error = on_bind_error,
    };
    link_ = comp_client_new(base, &cc, &cb, NULL);
    return link_ ? 0 : -1;
}

void link_stop(void)
{
    stopping = 1;
    if (link_)
        comp_client_close(link_, 0);
}

void link_free(void)
{
    if (link_)
        comp_client_free(link_);
    link_ = NULL;
}
