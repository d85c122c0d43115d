/* weft-s2s-resolve: asks the s2s resolver (resolve.c) where a remote domain's
 * server is, exactly as weft-s2s would, and prints one line per target:
 *
 *     host addr:port tls=direct|starttls
 *
 * or "error=CONDITION" (not-found, timeout, failed). Exit 0 with targets, 1
 * on a lookup error, 2 on bad usage. For operators checking a peer's DNS,
 * and for the integration tests. Log lines (--debug) go to stderr. */
#include "log.h"
#include "net.h"
#include "resolve.h"
#include "strbuf.h"
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct probe {
    struct event_base *base;
    int status;
} probe_t;

static void usage(void)
{
    fprintf(stderr, "usage: weft-s2s-resolve [--nameservers LIST] [--resolv-conf FILE] [--hosts FILE] "
                    "[--timeout SECONDS] [--port N] [--static DOMAIN=ADDR[,tls]]... [--debug] DOMAIN\n");
    exit(2);
}

static void probe_done(void *arg, const s2s_target_t *targets, size_t n, const char *error)
{
    probe_t *p = arg;
    if (error) {
        printf("error=%s\n", error);
        p->status = 1;
    }
    for (size_t i = 0; i < n; i++) {
        char a[80];
        net_addr_format((const struct sockaddr *)&targets[i].addr, targets[i].addrlen, a, sizeof a);
        printf("%s %s tls=%s\n", targets[i].host, a, targets[i].direct_tls ? "direct" : "starttls");
    }
    event_base_loopbreak(p->base);
}

/* "DOMAIN=ADDR" or "DOMAIN=ADDR,tls". 0 / -1. */
static int add_static(resolver_t *r, const char *spec)
{
    char *copy = xstrdup(spec), *eq = strchr(copy, '=');
    int tls = 0, rc = -1;
    if (eq) {
        *eq = '\0';
        char *comma = strrchr(eq + 1, ',');
        if (comma && !strcmp(comma, ",tls")) {
            *comma = '\0';
            tls = 1;
        }
        rc = resolver_add_static(r, copy, eq + 1, tls);
    }
    free(copy);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"nameservers", required_argument, NULL, 'n'}, {"resolv-conf", required_argument, NULL, 'r'},
        {"hosts", required_argument, NULL, 'H'},       {"timeout", required_argument, NULL, 't'},
        {"port", required_argument, NULL, 'p'},        {"static", required_argument, NULL, 's'},
        {"debug", no_argument, NULL, 'd'},             {NULL, 0, NULL, 0},
    };
    resolver_cfg_t cfg = {"/etc/resolv.conf", "", "/etc/hosts", 10.0, 5269};
    const char *statics[64];
    size_t nstatics = 0;
    log_level_t level = LOG_LVL_NOTICE;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        switch (ch) {
        case 'n': cfg.nameservers = optarg; break;
        case 'r': cfg.resolv_conf = optarg; break;
        case 'H': cfg.hosts_file = optarg; break;
        case 't':
            cfg.timeout = strtod(optarg, &end);
            if (*end || cfg.timeout <= 0)
                usage();
            break;
        case 'p':
            cfg.default_port = (int)strtol(optarg, &end, 10);
            if (*end || cfg.default_port < 1 || cfg.default_port > 65535)
                usage();
            break;
        case 's':
            if (nstatics == sizeof statics / sizeof statics[0])
                usage();
            statics[nstatics++] = optarg;
            break;
        case 'd': level = LOG_LVL_DEBUG; break;
        default: usage();
        }
    }
    if (optind + 1 != argc)
        usage();
    log_open("weft-s2s-resolve", "stderr", level);

    probe_t p = {event_base_new(), 0};
    char err[256];
    resolver_t *r = resolver_new(p.base, &cfg, err, sizeof err);
    if (!r) {
        fprintf(stderr, "weft-s2s-resolve: %s\n", err);
        event_base_free(p.base);
        return 2;
    }
    for (size_t i = 0; i < nstatics && !p.status; i++) {
        if (add_static(r, statics[i]) < 0) {
            fprintf(stderr, "weft-s2s-resolve: bad --static %s (want DOMAIN=HOST:PORT[,tls])\n", statics[i]);
            p.status = 2;
        }
    }
    if (!p.status && !resolver_lookup(r, argv[optind], probe_done, &p)) {
        printf("error=failed\n");
        p.status = 1;
    } else if (!p.status) {
        event_base_dispatch(p.base);
    }
    /* Lookups abandoned at the deadline are still called back by evdns:
     * the loop runs until they were, and the resolver is gone. */
    resolver_free(r);
    event_base_dispatch(p.base);
    event_base_free(p.base);
    fflush(stdout);
    return p.status;
}
