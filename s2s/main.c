/* weft-s2s: the server-to-server process. This file wires the option table
 * and the callbacks to the daemon skeleton; the work lives in link.c (router),
 * names.c (component names the router serves), out.c (outgoing routes), in.c
 * (incoming streams), conn.c (streams), dialback.c, resolve.c (DNS) and
 * listen.c (sockets, TLS). */
#include "s2s.h"
#include "log.h"
#include <stdlib.h>

static int s2s_start(struct event_base *base, void *config)
{
    s2s_config = config;
    if (!*s2s_config->domains) {
        log_error("event=config option=domains reason=empty");
        return -1;
    }
    dialback_init();
    if (out_init(base) < 0 || listen_start(base) < 0)
        return -1;
    return link_start(base);
}

/* Peers get system-shutdown; stanzas still queued bounce so their senders
 * know; the loop ends once the router link closed (or after 2 s). */
static void s2s_stop(void)
{
    listen_stop();
    conn_close_all();
    link_stop();
    struct timeval tv = {2, 0};
    event_base_loopexit(daemon_base(), &tv);
}

/* SIGHUP: timeouts and limits marked reloadable take their new values and
 * the certificate files are read again; the rest (domains, listeners, file
 * names, DNS, router link, static peers) keeps its running value until a
 * restart. */
static void s2s_reload(void *config)
{
    s2s_cfg_t *fresh = config, *old = s2s_config;
    comp_link_cfg_keep(&fresh->link, &old->link);
    char **keep[] = {&fresh->instance, &fresh->domains, &fresh->listen_starttls, &fresh->listen_tls,
                     &fresh->tls_cert, &fresh->tls_key, &fresh->tls_ca, &fresh->dialback_secret,
                     &fresh->dns_resolv_conf, &fresh->dns_nameservers, &fresh->dns_hosts,
                     &fresh->components_exclude};
    char **from[] = {&old->instance, &old->domains, &old->listen_starttls, &old->listen_tls,
                     &old->tls_cert, &old->tls_key, &old->tls_ca, &old->dialback_secret,
                     &old->dns_resolv_conf, &old->dns_nameservers, &old->dns_hosts,
                     &old->components_exclude};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        cfg_swap_str(keep[i], from[i]);
    s2s_peer_cfg_t *p = fresh->peers;
    fresh->peers = old->peers;
    old->peers = p;
    fresh->tls_selfsigned = old->tls_selfsigned;
    fresh->tls_required = old->tls_required;
    fresh->tls_tickets = old->tls_tickets;
    fresh->components_federate = old->components_federate;
    fresh->auth_dialback = old->auth_dialback;
    fresh->auth_external = old->auth_external;
    fresh->dns_timeout = old->dns_timeout;
    fresh->dns_port = old->dns_port;
    fresh->stanza_bytes = old->stanza_bytes;
    fresh->depth = old->depth;
    fresh->attrs = old->attrs;
    s2s_config_free_peers(old);
    s2s_config = fresh;
    listen_reload_tls();
}

static void s2s_cron(void)
{
    double now = daemon_now();
    out_cron(now);
    in_cron(now);
    conn_cron(now);
}

/* The static peers of a config that did not run. */
static void s2s_free_sections(void *config)
{
    s2s_config_free_peers(config);
}

static void s2s_cleanup(void)
{
    out_free_all();
    /* evdns lookups still running finish freeing the resolver from their
     * (cancelled) callbacks, which need one more turn of the loop. */
    event_base_loop(daemon_base(), EVLOOP_NONBLOCK);
    conn_free_all();
    in_free_all();
    listen_free();
    link_free();
    names_clear();
    if (s2s_config)
        s2s_config_free_peers(s2s_config);
}

int main(int argc, char **argv)
{
    static const daemon_spec_t spec = {
        .ident = "s2s",
        .default_config = "etc/s2s.xml",
        .table = s2s_options,
        .config_size = sizeof(s2s_cfg_t),
        .start = s2s_start,
        .stop = s2s_stop,
        .reload = s2s_reload,
        .metrics = s2s_metrics_register,
        .cron = s2s_cron,
        .cleanup = s2s_cleanup,
        .free_sections = s2s_free_sections,
    };
    return daemon_main(argc, argv, &spec);
}
