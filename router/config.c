/* router config: the option table (docs/configuration.md is generated from it)
 * and the <component> / <partition> sections. */
#include "router.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

router_cfg_t *router_config;

static int parse_component(void *target, const xml_node_t *el, const char *file, cfg_error_t *err)
{
    router_cfg_t *cfg = target;
    const char *name = xml_attr_get(el, "name");
    const char *secret = xml_attr_get(el, "secret");
    if (!name || !*name)
        return cfg_errorf(err, file, el->line, "component: missing name attribute");
    if (!secret || !*secret)
        return cfg_errorf(err, file, el->line, "component %s: missing secret attribute", name);
    for (acl_t *a = cfg->acls; a; a = a->next)
        if (!strcmp(a->name, name))
            return cfg_errorf(err, file, el->line, "component %s: defined twice", name);
    acl_t *a = xcalloc(1, sizeof *a);
    a->name = xstrdup(name);
    a->secret = xstrdup(secret);
    const char *proto = xml_attr_get(el, "protocol");
    if (proto && !strcmp(proto, "xep0114"))
        a->xep0114 = 1;
    else if (proto && strcmp(proto, "internal")) {
        free(a->name);
        free(a->secret);
        free(a);
        return cfg_errorf(err, file, el->line, "component %s: protocol must be internal or xep0114", name);
    }
    const char *flags[2] = {"default-route", "trusted-from"};
    int *dst[2] = {&a->may_default, &a->trusted_from};
    for (int i = 0; i < 2; i++) {
        const char *v = xml_attr_get(el, flags[i]);
        if (v && cfg_parse_bool(v, dst[i]) < 0) {
            free(a->name);
            free(a->secret);
            free(a);
            return cfg_errorf(err, file, el->line, "component %s: %s: not a boolean", name, flags[i]);
        }
    }
    a->next = cfg->acls;
    cfg->acls = a;
    for (xml_node_t *b = xml_child(el, NULL, NULL); b; b = xml_next(b, NULL, NULL)) {
        if (strcmp(b->name, "bind"))
            return cfg_errorf(err, file, b->line, "component %s: unknown element <%s>", name, b->name);
        char *t = xml_text(b);
        if (!*t) {
            free(t);
            return cfg_errorf(err, file, b->line, "component %s: empty <bind>", name);
        }
        a->binds = xrealloc(a->binds, (a->nbinds + 1) * sizeof *a->binds);
        a->binds[a->nbinds++] = t;
    }
    /* A legacy component is its own domain and binds exactly that. */
    if (a->xep0114 && a->nbinds == 0) {
        a->binds = xmalloc(sizeof *a->binds);
        a->binds[a->nbinds++] = xstrdup(name);
    }
    return 0;
}

static int parse_partition(void *target, const xml_node_t *el, const char *file, cfg_error_t *err)
{
    router_cfg_t *cfg = target;
    char *t = xml_text(el);
    if (!*t) {
        free(t);
        return cfg_errorf(err, file, el->line, "partition: empty name");
    }
    cfg->partitioned = xrealloc(cfg->partitioned, (cfg->npartitioned + 1) * sizeof(char *));
    cfg->partitioned[cfg->npartitioned++] = t;
    return 0;
}

#define OPT(n, t, d, lo, hi, r, f, h) {n, t, d, lo, hi, r, offsetof(router_cfg_t, f), NULL, h}
const cfg_option_t router_options[] = {
    DAEMON_COMMON_OPTIONS(router_cfg_t),
    OPT("name", CFG_STRING, "router", 0, 0, 0, name,
        "Name the router gives itself in stream headers and SASL."),
    OPT("listen", CFG_STRING, "127.0.0.1:5347", 0, 0, 0, listen,
        "Space-separated TCP addresses components connect to (host:port, [v6]:port, port 5347 if none); empty: none."),
    OPT("listen-unix", CFG_STRING, "", 0, 0, 0, listen_unix,
        "Space-separated UNIX socket paths components may connect to (mode 0660); empty: none."),
    OPT("control", CFG_STRING, "", 0, 0, 0, control,
        "UNIX socket of the admin interface (weftctl); empty disables."),
    OPT("tls.certificate", CFG_STRING, "", 0, 0, 1, tls_cert,
        "PEM certificate offered with STARTTLS to components; empty: no TLS."),
    OPT("tls.key", CFG_STRING, "", 0, 0, 1, tls_key, "PEM private key for tls.certificate."),
    OPT("tls.required-remote", CFG_BOOL, "true", 0, 0, 0, tls_required_remote,
        "Require STARTTLS before authentication from peers not on loopback/UNIX."),
    OPT("xep0114.allow-remote", CFG_BOOL, "false", 0, 0, 0, xep0114_remote,
        "Accept XEP-0114 components (which cannot use TLS) from non-loopback peers."),
    OPT("limits.stanza-bytes", CFG_SIZE, "262144", 1024, 16777216, 0, stanza_bytes,
        "Largest top-level element a component may send (policy-violation past it)."),
    OPT("limits.depth", CFG_INT, "64", 4, 1024, 0, depth, "Deepest element nesting in a stanza."),
    OPT("limits.attributes", CFG_INT, "64", 4, 4096, 0, attrs, "Most attributes on one element."),
    OPT("limits.output-buffer", CFG_SIZE, "1M", 16384, 1073741824, 0, output_high,
        "Bytes queued to a slow component before its senders are paused."),
    OPT("limits.window", CFG_INT, "1048576", 1024, 268435456, 0, window,
        "Stanzas from one component in flight (not yet acknowledged) before it is paused."),
    OPT("limits.fanout-recipients", CFG_INT, "4096", 1, 1048576, 0, fanout_recipients,
        "Most recipients of one fan-out element (more: refused with w:fanout-error, the link stays)."),
    OPT("limits.fanout-bytes", CFG_SIZE, "32M", 65536, 1073741824, 0, fanout_bytes,
        "Most bytes one fan-out element may expand into, all its deliveries together (more: refused, the link stays)."),
    OPT("hold.seconds", CFG_SECONDS, "30", 0, 86400, 0, hold_seconds,
        "How long stanzas for a name whose component went away are held for its return."),
    OPT("hold.bytes", CFG_SIZE, "4M", 0, 1073741824, 0, hold_bytes,
        "Most bytes held per name instance; past it stanzas bounce with resource-constraint."),
    OPT("takeover.seconds", CFG_SECONDS, "10", 0, 86400, 0, takeover_seconds,
        "Seconds an instance of a partitioned name may be away before the others take over its users (0: never; below hold.seconds)."),
    OPT("takeover.handback-timeout", CFG_SECONDS, "5", 0.1, 600, 0, handback_timeout,
        "Seconds a returning instance waits for the others to release its users before it serves them anyway."),
    OPT("auth.timeout", CFG_SECONDS, "10", 1, 600, 0, auth_timeout,
        "Seconds a connection may take to authenticate."),
    OPT("auth.scram-iterations", CFG_INT, "4096", 4096, 1000000, 0, scram_iterations,
        "PBKDF2 iterations of the SCRAM keys derived from component secrets."),
    {"component", CFG_SECTION, NULL, 0, 0, 0, 0, parse_component,
     "A component that may connect: name, secret, protocol, default-route, trusted-from, <bind> names."},
    {"partition", CFG_SECTION, NULL, 0, 0, 0, 0, parse_partition,
     "A name that several instances bind together, users spread by a stable hash."},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, NULL},
};

const acl_t *router_acl_find(const char *name)
{
    for (const acl_t *a = router_config->acls; a; a = a->next)
        if (!strcmp(a->name, name))
            return a;
    return NULL;
}

int router_acl_may_bind(const acl_t *acl, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < acl->nbinds; i++) {
        const char *p = acl->binds[i];
        if (!strcmp(p, name) || !strcmp(p, "*"))
            return 1;
        /* "*.example.org" matches any subdomain, not example.org itself */
        if (p[0] == '*' && p[1] == '.') {
            size_t pl = strlen(p + 1);
            if (nl > pl && !strcmp(name + nl - pl, p + 1))
                return 1;
        }
    }
    return 0;
}
