/* weft-router: the hub every component connects to (see router.h for who owns
 * what). This file wires the config table and callbacks to the skeleton. */
#include "router.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

static int router_start(struct event_base *base, void *config)
{
    router_config = config;
    for (acl_t *a = router_config->acls; a; a = a->next) {
        if (!a->xep0114 && scram_keys_new(SCRAM_SHA256, a->secret, (unsigned)router_config->scram_iterations,
                                          &a->keys) < 0) {
            log_error("event=start reason=scram-keys component=%s", a->name);
            return -1;
        }
    }
    names_init(router_config);
    if (link_start(base, router_config) < 0)
        return -1;
    return control_start(base, router_config->control);
}

static void router_stop(void)
{
    control_stop();
    link_stop_all();
    /* Give the stream errors a moment to leave; the skeleton's second signal or
     * this timer ends the loop. */
    struct timeval tv = {0, 300000};
    event_base_loopexit(daemon_base(), &tv);
}

static void free_acls(acl_t *a)
{
    while (a) {
        acl_t *next = a->next;
        for (size_t i = 0; i < a->nbinds; i++)
            free(a->binds[i]);
        free(a->binds);
        free(a->name);
        free(a->secret);
        free(a);
        a = next;
    }
}

static void free_partitions(router_cfg_t *c)
{
    for (size_t i = 0; i < c->npartitioned; i++)
        free(c->partitioned[i]);
    free(c->partitioned);
    c->partitioned = NULL;
    c->npartitioned = 0;
}

/* The component ACLs and partitioned names of a config that did not run. */
static void router_free_sections(void *config)
{
    router_cfg_t *c = config;
    free_acls(c->acls);
    c->acls = NULL;
    free_partitions(c);
}

/* SIGHUP: log settings are applied by the skeleton. Listeners, ACLs and limits
 * need a restart (docs/operations.md); the running ones are kept. */
static void router_reload(void *config)
{
    router_cfg_t *fresh = config;
    free_acls(fresh->acls);
    free_partitions(fresh);
    fresh->acls = router_config->acls;
    fresh->partitioned = router_config->partitioned;
    fresh->npartitioned = router_config->npartitioned;
    router_config->acls = NULL;
    router_config->partitioned = NULL;
    router_config->npartitioned = 0;
    /* Keep every non-reloadable value of the running config. */
    router_cfg_t keep = *router_config;
    fresh->stanza_bytes = keep.stanza_bytes;
    fresh->output_high = keep.output_high;
    fresh->window = keep.window;
    fresh->hold_seconds = keep.hold_seconds;
    fresh->hold_bytes = keep.hold_bytes;
    fresh->takeover_seconds = keep.takeover_seconds;
    fresh->handback_timeout = keep.handback_timeout;
    fresh->auth_timeout = keep.auth_timeout;
    fresh->tls_required_remote = keep.tls_required_remote;
    fresh->xep0114_remote = keep.xep0114_remote;
    router_config = fresh;
    if (link_load_tls() == 0 && *fresh->tls_cert)
        log_notice("event=tls-reloaded certificate=%s", fresh->tls_cert);
}

static void router_cron(void)
{
    double now = daemon_now();
    takeover_cron(now);
    names_cron(now);
    origin_cron(now);
    forward_cron();
}

static void router_cleanup(void)
{
    link_free_all();
    names_free_all();
    takeover_free_all();
    origin_free_all();
    control_stop();
    free_acls(router_config->acls);
    free_partitions(router_config);
    router_config->acls = NULL;
}

int main(int argc, char **argv)
{
    static const daemon_spec_t spec = {
        .ident = "router",
        .default_config = "etc/router.xml",
        .table = router_options,
        .config_size = sizeof(router_cfg_t),
        .start = router_start,
        .stop = router_stop,
        .reload = router_reload,
        .metrics = router_metrics_register,
        .cron = router_cron,
        .cleanup = router_cleanup,
        .free_sections = router_free_sections,
    };
    return daemon_main(argc, argv, &spec);
}
