/* resolve: where to connect for a remote domain (RFC 6120 §3.2, RFC 2782,
 * XEP-0368), asynchronously on the caller's libevent loop.
 *
 * A lookup asks _xmpps-server._tcp.DOMAIN and _xmpp-server._tcp.DOMAIN at
 * once, orders the merged SRV records (priority, then weighted random choice,
 * direct TLS first at equal priority and weight), and resolves each target to
 * its IPv6 then IPv4 addresses. Without any SRV record it falls back to the
 * domain's own addresses on default_port; a static entry replaces DNS for its
 * domain. The callback always runs from the event loop, exactly once, unless
 * the lookup was cancelled or the resolver freed first. */
#ifndef WEFT_RESOLVE_H
#define WEFT_RESOLVE_H
#include <stddef.h>
#include <sys/socket.h>
#include <event2/event.h>

typedef struct s2s_target {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int direct_tls;       /* 1: from _xmpps-server (XEP-0368): TLS from the first byte */
    char host[256];       /* SRV target host (or the domain itself on fallback), for logs and TLS checks */
} s2s_target_t;

typedef struct resolver_cfg {
    const char *resolv_conf;   /* path, e.g. "/etc/resolv.conf"; nameserver lines are read from it */
    const char *nameservers;   /* space-separated "ip" or "ip:port" / "[v6]:port"; when non-empty it replaces resolv.conf's nameservers */
    const char *hosts_file;    /* e.g. "/etc/hosts", "" = none; used for A/AAAA only */
    double timeout;            /* seconds for the whole lookup (SRV + address lookups) */
    int default_port;          /* 5269 */
} resolver_cfg_t;

/* error: NULL on success; else "not-found" (NXDOMAIN / no records at all / SRV target "."), "timeout", or "failed".
 * targets is only valid during the call (the caller copies what it keeps). */
typedef void (*resolve_cb)(void *arg, const s2s_target_t *targets, size_t n, const char *error);
typedef struct resolver resolver_t;
typedef struct resolve_req resolve_req_t;

/* NULL with a reason in err when the nameservers or the hosts file cannot be read. */
resolver_t *resolver_new(struct event_base *base, const resolver_cfg_t *cfg, char *err, size_t errlen);
void resolver_free(resolver_t *r);            /* cancels pending lookups without calling their callbacks */
/* Static override table (operator config): when a domain has entries, DNS is not used for it;
   entries are tried in the order added. address is "host:port" with a numeric host, or a host name resolved via A/AAAA.
   Without a port, default_port. 0, or -1 when address cannot be parsed. */
int resolver_add_static(resolver_t *r, const char *domain, const char *address, int direct_tls);
/* NULL only when domain is empty or longer than a domain can be. */
resolve_req_t *resolver_lookup(resolver_t *r, const char *domain, resolve_cb cb, void *arg);
void resolver_cancel(resolve_req_t *q);       /* callback will not be called */

#endif
