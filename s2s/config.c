/* s2s config: the option table of weft-s2s (`weft-s2s --doc` prints it for
 * docs/configuration.md) and the <peer> static routes. Defaults are the safe
 * ones: TLS required, dialback and SASL EXTERNAL on, bounded queues. */
#include "s2s.h"
#include "jid.h"
#include "tls.h"
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

s2s_cfg_t *s2s_config;

static int parse_peer(void *target, const xml_node_t *el, const char *file, cfg_error_t *err)
{
    s2s_cfg_t *cfg = target;
    const char *domain = xml_attr_get(el, "domain");
    const char *address = xml_attr_get(el, "address");
    const char *tls = xml_attr_get(el, "direct-tls");
    if (!domain || !*domain || !address || !*address)
        return cfg_errorf(err, file, el->line, "peer: needs domain and address attributes");
    int direct = 0;
    if (tls && cfg_parse_bool(tls, &direct) < 0)
        return cfg_errorf(err, file, el->line, "peer %s: direct-tls: not a boolean", domain);
    char *prepped = jid_prep_domain(domain);
    if (!prepped)
        return cfg_errorf(err, file, el->line, "peer %s: not a valid domain", domain);
    s2s_peer_cfg_t *p = xcalloc(1, sizeof *p);
    p->domain = prepped;
    p->address = xstrdup(address);
    p->direct_tls = direct;
    /* Kept in file order: the resolver tries a domain's entries in order. */
    s2s_peer_cfg_t **tail = &cfg->peers;
    while (*tail)
        tail = &(*tail)->next;
    *tail = p;
    return 0;
}

void s2s_config_free_peers(s2s_cfg_t *cfg)
{
    while (cfg->peers) {
        s2s_peer_cfg_t *p = cfg->peers;
        cfg->peers = p->next;
        free(p->domain);
        free(p->address);
        free(p);
    }
}

int s2s_is_local(const char *d)
{
    if (!d || !*d)
        return 0;
    size_t n = strlen(d);
    for (const char *p = s2s_config->domains; *p;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ' ' && *e != '\t' && *e != '\n' && *e != ',')
            e++;
        if ((size_t)(e - p) == n && !strncmp(p, d, n))
            return 1;
        p = e;
    }
    return names_served(d);
}

#define OPT(n, t, d, lo, hi, r, f, h) {n, t, d, lo, hi, r, offsetof(s2s_cfg_t, f), NULL, h}
const cfg_option_t s2s_options[] = {
    DAEMON_COMMON_OPTIONS(s2s_cfg_t),
    OPT("instance", CFG_STRING, "s2s.localhost", 0, 0, 0, instance,
        "Name this instance binds on the router besides the default route."),
    COMP_LINK_OPTIONS(s2s_cfg_t, "s2s", "weft-s2s-secret", "16M"),
    OPT("domains", CFG_STRING, "localhost", 0, 0, 0, domains,
        "Space-separated local XMPP domains this s2s speaks for (stanzas from others are not sent)."),
    OPT("listen.starttls", CFG_STRING, "127.0.0.1:5269", 0, 0, 0, listen_starttls,
        "Space-separated addresses for incoming server streams that start in clear text (STARTTLS); empty: none."),
    OPT("listen.tls", CFG_STRING, "", 0, 0, 0, listen_tls,
        "Space-separated addresses for direct TLS server streams (XEP-0368, _xmpps-server); empty: none."),
    OPT("tls.certificate", CFG_STRING, TLS_DEFAULT_CERT, 0, 0, 0, tls_cert,
        "PEM certificate chain for the local domains (presented to peers as server and as client)."),
    OPT("tls.key", CFG_STRING, TLS_DEFAULT_KEY, 0, 0, 0, tls_key, "PEM private key of tls.certificate."),
    OPT("tls.self-signed", CFG_BOOL, "true", 0, 0, 0, tls_selfsigned,
        "Create a self-signed certificate for the first domain when tls.certificate is the default path and missing; "
        "a path set in the config must exist (start fails naming it)."),
    OPT("tls.ca", CFG_STRING, "", 0, 0, 0, tls_ca,
        "CA bundle that verifies peers' certificates (SASL EXTERNAL); empty: the system store."),
    OPT("tls.required", CFG_BOOL, "true", 0, 0, 0, tls_required,
        "Require TLS on every server stream, incoming and outgoing."),
    OPT("tls.session-tickets", CFG_BOOL, "false", 0, 0, 0, tls_tickets,
        "Send TLS session tickets to servers that connect to us (off: server streams are long-lived, and "
        "jabberd2 2.7 drops streams on them; docs/s2s.md)."),
    OPT("auth.dialback", CFG_BOOL, "true", 0, 0, 0, auth_dialback,
        "Authenticate with server dialback (XEP-0220) when certificates do not verify."),
    OPT("auth.external", CFG_BOOL, "true", 0, 0, 0, auth_external,
        "Authenticate with SASL EXTERNAL (XEP-0178) when the peer's certificate verifies for its domain."),
    OPT("auth.dialback-secret", CFG_STRING, "", 0, 0, 0, dialback_secret,
        "Secret dialback keys are made from (XEP-0185); every s2s instance of a deployment needs the same. "
        "Empty: a random one per start (right only for a single instance)."),
    OPT("dns.resolv-conf", CFG_STRING, "/etc/resolv.conf", 0, 0, 0, dns_resolv_conf,
        "File whose nameserver lines name the DNS servers."),
    OPT("dns.nameservers", CFG_STRING, "", 0, 0, 0, dns_nameservers,
        "Space-separated DNS servers (ip or ip:port); when set, replaces dns.resolv-conf."),
    OPT("dns.hosts-file", CFG_STRING, "/etc/hosts", 0, 0, 0, dns_hosts,
        "Hosts file consulted for address lookups; empty: none."),
    OPT("dns.timeout", CFG_SECONDS, "5", 0.5, 300, 0, dns_timeout,
        "Seconds one lookup of a domain (SRV and addresses) may take."),
    OPT("dns.fallback-port", CFG_INT, "5269", 1, 65535, 0, dns_port,
        "Port used with a domain's own addresses when it has no SRV records."),
    OPT("timeouts.connect", CFG_SECONDS, "10", 0.5, 300, 1, t_connect,
        "Seconds a TCP connection to one address may take before the next one is tried."),
    OPT("timeouts.negotiation", CFG_SECONDS, "30", 1, 600, 1, t_negotiation,
        "Seconds from connect until a stream is authenticated."),
    OPT("timeouts.queue", CFG_SECONDS, "60", 1, 3600, 1, t_queue,
        "Seconds a stanza waits for a connection to its domain before it bounces with remote-server-timeout."),
    OPT("timeouts.idle", CFG_SECONDS, "600", 10, 86400, 1, t_idle,
        "Seconds without traffic before a server stream is closed."),
    OPT("timeouts.retry-max", CFG_SECONDS, "300", 1, 86400, 1, t_retry_max,
        "Largest pause between connection attempts to a failing domain (doubles from 1 s)."),
    OPT("timeouts.close", CFG_SECONDS, "5", 0.1, 600, 1, t_close,
        "Seconds a closing stream may take to drain before the connection is dropped."),
    OPT("limits.queue-bytes", CFG_SIZE, "1M", 4096, 1073741824, 1, queue_bytes,
        "Bytes of stanzas waiting for one remote domain; past it stanzas bounce with resource-constraint."),
    OPT("limits.stanza-bytes", CFG_SIZE, "262144", 4096, 16777216, 0, stanza_bytes,
        "Largest stanza a peer may send (policy-violation past it)."),
    OPT("limits.depth", CFG_INT, "32", 4, 1024, 0, depth, "Deepest element nesting in a stanza from a peer."),
    OPT("limits.attributes", CFG_INT, "64", 4, 4096, 0, attrs, "Most attributes on one element from a peer."),
    OPT("limits.output-buffer", CFG_SIZE, "8M", 65536, 1073741824, 1, output_max,
        "Bytes queued to a peer that does not read before its connection is dropped."),
    OPT("limits.connections", CFG_INT, "10000", 1, 10000000, 1, max_in,
        "Incoming server connections accepted in all."),
    OPT("limits.connections-per-ip", CFG_INT, "64", 1, 1000000, 1, max_in_per_ip,
        "Incoming server connections one IP address may hold open."),
    OPT("limits.domains-per-stream", CFG_INT, "100", 1, 100000, 1, max_domains_per_stream,
        "Domain pairs one incoming stream may authenticate (XEP-0220 multiplexing)."),
    OPT("components.federate", CFG_BOOL, "true", 0, 0, 0, components_federate,
        "Let remote servers reach the names the router serves to local components (learned from it), "
        "besides domains; off: only domains."),
    OPT("components.exclude", CFG_STRING, "", 0, 0, 0, components_exclude,
        "Space-separated names the router serves that remote servers may not reach (e.g. c2s instance names)."),
    OPT("timeouts.retry-fast", CFG_SECONDS, "250ms", 0.1, 60, 1, t_retry_fast,
        "Largest pause between connection attempts to a domain whose stream was up before, during "
        "timeouts.retry-fast-period: the worst-case delay, besides connecting, after that server is back."),
    OPT("timeouts.retry-fast-period", CFG_SECONDS, "60", 0, 86400, 1, t_retry_fast_period,
        "Seconds from the first failed attempt at a domain whose stream was up before during which pauses "
        "stay under timeouts.retry-fast; then they double up to timeouts.retry-max. 0: no fast period."),
    {"peer", CFG_SECTION, NULL, 0, 0, 0, 0, parse_peer,
     "A static route replacing DNS for one domain: domain, address (host:port), direct-tls (true/false). "
     "Several entries for a domain are tried in order."},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, NULL},
};
