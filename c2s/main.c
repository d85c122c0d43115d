/* weft-c2s: the client-to-server process. This file wires the option table and
 * the callbacks to the daemon skeleton; the work lives in listen.c (sockets,
 * TLS), client.c (streams), auth.c, bind.c, ibr.c, smacks.c and sm_link.c. */
#include "c2s.h"
#include "log.h"
#include <stdlib.h>

static int c2s_start(struct event_base *base, void *config)
{
    c2s_config = config;
    /* libevent refuses a token bucket whose rate exceeds its burst, and the
     * connections would then be read unlimited: refuse the config instead. */
    if (c2s_config->rate > c2s_config->burst) {
        log_error("event=config option=limits.rate value=%zu reason=above-limits.burst burst=%zu",
                  c2s_config->rate, c2s_config->burst);
        return -1;
    }
    if (sm_link_start(base) < 0)
        return -1;
    return listen_start(base);
}

/* Clients get system-shutdown and their sessions end at the sm; the loop ends
 * shortly after so the stream errors and session ends can leave. */
static void c2s_stop(void)
{
    listen_stop();
    client_close_all();
    sm_link_stop();
    struct timeval tv = {0, 500000};
    event_base_loopexit(daemon_base(), &tv);
}

/* SIGHUP: timeouts and limits marked reloadable are read from c2s_config on
 * every use, so swapping the pointer applies them; the rest keeps its running
 * value (listeners, TLS, router link need a restart). */
static void c2s_reload(void *config)
{
    c2s_cfg_t *fresh = config, *old = c2s_config;
    char **keep[] = {&fresh->instance, &fresh->router, &fresh->router_name, &fresh->router_ca,
                     &fresh->name, &fresh->secret, &fresh->domain, &fresh->listen_starttls,
                     &fresh->listen_tls, &fresh->tls_cert, &fresh->tls_key};
    char **from[] = {&old->instance, &old->router, &old->router_name, &old->router_ca,
                     &old->name, &old->secret, &old->domain, &old->listen_starttls,
                     &old->listen_tls, &old->tls_cert, &old->tls_key};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        char *t = *keep[i];
        *keep[i] = *from[i];
        *from[i] = t;
    }
    fresh->stanza_bytes = old->stanza_bytes;
    fresh->depth = old->depth;
    fresh->attrs = old->attrs;
    fresh->rate = old->rate;
    fresh->burst = old->burst;
    fresh->output_max = old->output_max;
    fresh->tls_required = old->tls_required;
    c2s_config = fresh;
}

static void c2s_cron(void)
{
    double now = daemon_now();
    client_cron(now);
    limits_cron(now);
}

static void c2s_cleanup(void)
{
    client_free_all();
    listen_free();
    sm_link_free();
    limits_free();
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
        .cron = c2s_cron,
        .cleanup = c2s_cleanup,
    };
    return daemon_main(argc, argv, &spec);
}
