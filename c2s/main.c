/* weft-c2s: the client-to-server process. This file wires the option table and
 * the callbacks to the daemon skeleton; the work lives in listen.c (sockets,
 * TLS), client.c (streams), auth.c, bind.c, ibr.c, smacks.c and sm_link.c. */
#include "c2s.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

/* shutdown.see-other-host: empty, or one host[:port] token (RFC 6120
 * §4.9.3.19: a domain name or an IP address, v6 in brackets). */
static int c2s_host_ok(const char *h)
{
    if (strlen(h) > 255)
        return 0;
    for (const char *p = h; *p; p++)
        if ((unsigned char)*p <= ' ' || strchr("<>&'\"/@", *p))
            return 0;
    return 1;
}

static int c2s_start(struct event_base *base, void *config)
{
    c2s_config = config;
    if (!c2s_host_ok(c2s_config->shutdown_host)) {
        log_error("event=config option=shutdown.see-other-host value=\"%s\" reason=not-a-host",
                  c2s_config->shutdown_host);
        return -1;
    }
    /* libevent refuses a token bucket whose rate exceeds its burst, and the
     * connections would then be read unlimited: refuse the config instead. */
    if (c2s_config->rate > c2s_config->burst) {
        log_error("event=config option=limits.rate value=%zu reason=above-limits.burst burst=%zu",
                  c2s_config->rate, c2s_config->burst);
        return -1;
    }
    size_t n = 0;
    const char *bad = auth_mechs_unknown(c2s_config->auth_mechs, &n);
    if (bad) {
        log_error("event=config option=auth.mechanisms value=\"%.*s\" reason=unknown-mechanism", (int)n, bad);
        return -1;
    }
    if (sm_link_start(base) < 0)
        return -1;
    return listen_start(base);
}

/* Clients get system-shutdown (or see-other-host, shutdown.see-other-host)
 * and their sessions end at the sm, which gives what they had not
 * acknowledged to offline storage; the loop ends shortly after so the stream
 * errors and session ends can leave. */
static void c2s_stop(void)
{
    listen_stop();
    client_close_all();
    sm_link_stop();
    struct timeval tv = {0, 500000};
    event_base_loopexit(daemon_base(), &tv);
}

/* SIGHUP: timeouts and limits marked reloadable are read from c2s_config on
 * every use, so swapping the pointer applies them. The certificate and key
 * are loaded again (new connections get them, open ones keep theirs; when
 * they do not load, the running ones stay). The rest keeps its running value
 * (listeners, router link need a restart). */
static void c2s_reload(void *config)
{
    c2s_cfg_t *fresh = config, *old = c2s_config;
    comp_link_cfg_keep(&fresh->link, &old->link);
    char **keep[] = {&fresh->instance, &fresh->domain, &fresh->listen_starttls,
                     &fresh->listen_tls, &fresh->listen_ws, &fresh->listen_wss};
    char **from[] = {&old->instance, &old->domain, &old->listen_starttls,
                     &old->listen_tls, &old->listen_ws, &old->listen_wss};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        cfg_swap_str(keep[i], from[i]);
    if (listen_reload_tls(fresh->tls_cert, fresh->tls_key) < 0) {
        cfg_swap_str(&fresh->tls_cert, &old->tls_cert);
        cfg_swap_str(&fresh->tls_key, &old->tls_key);
    }
    if (!c2s_host_ok(fresh->shutdown_host)) {
        log_error("event=config option=shutdown.see-other-host value=\"%s\" reason=not-a-host action=kept-old",
                  fresh->shutdown_host);
        cfg_swap_str(&fresh->shutdown_host, &old->shutdown_host);
    }
    fresh->stanza_bytes = old->stanza_bytes;
    fresh->depth = old->depth;
    fresh->attrs = old->attrs;
    fresh->rate = old->rate;
    fresh->burst = old->burst;
    fresh->output_max = old->output_max;
    fresh->tls_required = old->tls_required;
    fresh->tls_tickets = old->tls_tickets;
    c2s_config = fresh;
}

static void c2s_cron(void)
{
    double now = daemon_now();
    client_cron(now);
    limits_cron(now);
    server_caps_cron(now);
}

static void c2s_cleanup(void)
{
    client_free_all();
    listen_free();
    sm_link_free();
    limits_free();
    server_caps_free();
}

int main(int argc, char **argv)
{
    static const daemon_spec_t spec = {
        .ident = "c2s",
        .default_config = "etc/c2s.xml",
        .table = c2s_options,
        .config_size = sizeof(c2s_cfg_t),
        .start = c2s_start,
        .stop = c2s_stop,
        .reload = c2s_reload,
        .metrics = c2s_metrics_register,
        .cron = c2s_cron,
        .cleanup = c2s_cleanup,
    };
    return daemon_main(argc, argv, &spec);
}
