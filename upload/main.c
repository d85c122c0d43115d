/* weft-upload: the XEP-0363 HTTP File Upload service, a component behind
 * the router like the sm. This file wires the option table and callbacks to
 * the daemon skeleton, owns the router link, and hands what the router
 * delivers to slot.c; store.c keeps the files, http_conn.c serves them.
 * docs/upload.md describes the service and its limits. */
#include "comp_client.h"
#include "comp_proto.h"
#include "http_conn.h"
#include "listen_set.h"
#include "log.h"
#include "store.h"
#include "upload.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

upload_cfg_t *upload_config;

static comp_client_t *link_;
static int stopping;
static char base_url[1024];

const char *upload_base_url(void)
{
    return base_url;
}

void upload_send(const xml_node_t *stanza)
{
    if (!link_ || comp_client_send(link_, stanza) < 0)
        log_warn("event=router-send result=dropped reason=buffer-full");
}

static void on_stanza(void *ctx, xml_node_t *st)
{
    (void)ctx;
    if (st->ns && !strcmp(st->ns, COMP_NS_ACCEPT))
        slot_handle(st);
    else
        log_warn("event=protocol-error reason=unknown-element element={%s}%s", st->ns ? st->ns : "", st->name);
    xml_free(st);
}

static void on_ready(void *ctx)
{
    (void)ctx;
    log_notice("event=ready domain=%s url=%s", upload_config->domain, base_url);
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

/* public-url, or the scheme and first address of http.listen. */
static void make_base_url(const upload_cfg_t *c)
{
    if (*c->public_url) {
        snprintf(base_url, sizeof base_url, "%s", c->public_url);
    } else {
        const char *l = c->http_listen + strspn(c->http_listen, LISTEN_SEPARATORS);
        char first[256];
        size_t n = strcspn(l, LISTEN_SEPARATORS);
        if (n >= sizeof first)
            n = sizeof first - 1;
        memcpy(first, l, n);
        first[n] = '\0';
        snprintf(base_url, sizeof base_url, "%s://%s", *c->tls_cert ? "https" : "http", first);
        if (!strncmp(l, "0.0.0.0", 7) || !strncmp(l, "[::]", 4))
            log_warn("event=start reason=public-url-unset url=%s hint=\"set http.public-url: clients "
                     "cannot reach a wildcard address\"",
                     base_url);
    }
    size_t n = strlen(base_url);
    while (n > 0 && base_url[n - 1] == '/')
        base_url[--n] = '\0';
}

static int upload_start(struct event_base *base, void *config)
{
    upload_config = config;
    char err[512];
    if (store_open(upload_config->directory, err, sizeof err) < 0) {
        log_error("event=start reason=storage error=\"%s\"", err);
        return -1;
    }
    make_base_url(upload_config);
    if (http_conn_start(base, upload_config) < 0)
        return -1;
    const char *binds[1] = {upload_config->domain};
    comp_client_cfg_t cc = {
        .binds = binds,
        .nbinds = 1,
    };
    comp_link_cfg_apply(&cc, &upload_config->link);
    static const comp_client_cb_t cb = {
        .on_ready = on_ready,
        .on_down = on_down,
        .on_stanza = on_stanza,
        .on_bind_error = on_bind_error,
    };
    link_ = comp_client_new(base, &cc, &cb, NULL);
    return link_ ? 0 : -1;
}

/* Uploads in progress are cut (clients retry); stored files stay. */
static void upload_stop(void)
{
    stopping = 1;
    http_conn_stop();
    comp_client_close(link_, 0);
    struct timeval tv = {2, 0};
    event_base_loopexit(daemon_base(), &tv);
}

/* SIGHUP: the limits, allowed domains and CORS origin take the new values;
 * the link, listeners, directory and URLs stay as started. */
static void upload_reload(void *config)
{
    upload_cfg_t *fresh = config, *old = upload_config;
    comp_link_cfg_keep(&fresh->link, &old->link);
    cfg_swap_str(&fresh->domain, &old->domain);
    cfg_swap_str(&fresh->directory, &old->directory);
    cfg_swap_str(&fresh->http_listen, &old->http_listen);
    cfg_swap_str(&fresh->public_url, &old->public_url);
    cfg_swap_str(&fresh->tls_cert, &old->tls_cert);
    cfg_swap_str(&fresh->tls_key, &old->tls_key);
    upload_config = fresh;
}

/* Once a second: a scan of the index, cheap next to the disk work of one
 * upload. */
static void upload_cron(void)
{
    store_expire((long long)time(NULL), upload_config->expire_after, upload_config->slot_timeout);
}

static void upload_cleanup(void)
{
    http_conn_stop();
    if (link_)
        comp_client_free(link_);
    link_ = NULL;
    store_close();
}

int main(int argc, char **argv)
{
    daemon_spec_t spec = {
        .ident = "upload",
        .default_config = "etc/upload.xml",
        .table = upload_config_table(),
        .config_size = sizeof(upload_cfg_t),
        .start = upload_start,
        .stop = upload_stop,
        .reload = upload_reload,
        .metrics = upload_metrics_register,
        .cron = upload_cron,
        .cleanup = upload_cleanup,
    };
    return daemon_main(argc, argv, &spec);
}
