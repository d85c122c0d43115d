/* resolve: the s2s's asynchronous resolver for remote domains (resolve.h).
 *
 * A lookup runs in up to two phases, bounded together by one deadline timer:
 *  1. SRV: _xmpps-server._tcp.D and _xmpp-server._tcp.D are asked at once by
 *     our own small DNS client (evdns in libevent 2.1 cannot ask for SRV):
 *     one UDP socket per query, connected to the nameserver so that the
 *     kernel drops packets from anyone else; no answer within UDP_WAIT moves
 *     the query to the next nameserver (a new socket and id); an error answer
 *     marks that nameserver failed for the query; a truncated answer is asked
 *     again over TCP to the same nameserver. dns_wire.c checks id and question.
 *  2. addresses: every distinct target host (SRV targets, else D itself on
 *     default_port, or the hosts of a static entry) is resolved to AAAA and A,
 *     all lookups at once: from the hosts file when it names the host (then
 *     only from there), else by evdns (DNS_QUERY_NO_SEARCH). We read the hosts
 *     file ourselves: evdns 2.1 consults it only in evdns_getaddrinfo, which
 *     reports "no such record" and "server failure" alike, and the two must
 *     differ here (not-found bounces at once, failed is retried).
 * The final list keeps the SRV order and, for each record, lists its host's
 * IPv6 addresses, then its IPv4 ones (not interleaved: out.c tries them in
 * turn, and a dual-stack peer usually serves both).
 * The result always reaches the callback through the `kick` event, so never
 * from inside resolver_lookup.
 *
 * Ownership: the resolver owns its requests and the hosts table; a request
 * owns its SRV queries, candidates, hosts and address lookups. An evdns
 * lookup that is abandoned (deadline, cancel) is cancelled but detached
 * rather than freed: evdns still calls it back (from the loop), and that
 * callback frees it. The resolver and its evdns base outlive resolver_free
 * until the last such callback. */
#include "resolve.h"
#include "dns_wire.h"
#include "log.h"
#include "net.h"
#include "strbuf.h"
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <openssl/rand.h>

#define NS_MAX 8            /* nameservers used (bits of srv_query_t.failed) */
#define SRV_MAX 32          /* records kept per SRV query */
#define ADDR_MAX 8          /* addresses kept per host and family */
#define UDP_WAIT 1.0        /* seconds before the next nameserver is asked */
#define TCP_WAIT 3.0        /* seconds a TCP retry may take */
#define DOMAIN_MAX 256      /* text form with its NUL */

typedef struct ns_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[64];
} ns_addr_t;

typedef struct hosts_entry {
    char *name;
    int family;
    struct in6_addr a6;
    struct in_addr a4;
} hosts_entry_t;

typedef struct static_entry {
    char *domain;
    char host[256];
    int port;
    int direct_tls;
    struct static_entry *next;
} static_entry_t;

struct resolver {
    struct event_base *base;
    struct evdns_base *evdns;
    ns_addr_t ns[NS_MAX];
    size_t nns;
    struct timeval timeout;
    int default_port;
    static_entry_t *statics;
    hosts_entry_t *hosts;       /* the hosts file, one entry per (address, name) */
    size_t nhosts, hosts_cap;
    resolve_req_t *reqs;        /* pending lookups */
    size_t live_lookups;        /* evdns lookups not yet called back, detached ones included */
    int dying;                  /* resolver_free ran; the last callback frees */
};

typedef struct srv_query {
    resolve_req_t *req;
    int direct_tls;
    char qname[DNS_NAME_MAX + 32];
    uint16_t id;
    uint8_t pkt[DNS_QUERY_MAX];
    size_t pktlen;
    size_t ns_cur;              /* nameserver asked now */
    unsigned failed;            /* bit i: nameserver i answered with an error */
    evutil_socket_t fd;
    struct event *rd;
    struct event *wait;         /* retransmission (UDP) or answer (TCP) timer */
    struct bufferevent *tcp;
    dns_status_t status;        /* once the query ended */
    dns_srv_t recs[SRV_MAX];
    size_t nrecs;
} srv_query_t;

/* One place to connect to, in final order: an SRV record, a static entry or the fallback. */
typedef struct cand {
    uint16_t priority;
    uint16_t weight;
    uint16_t port;
    int direct_tls;
    size_t host;                /* index into req->hosts */
} cand_t;

typedef struct host {
    char name[256];
    struct in6_addr a6[ADDR_MAX];
    struct in_addr a4[ADDR_MAX];
    size_t n6, n4;
    int numeric;                /* an address literal: nothing to look up */
    int notfound, failed;       /* lookups that ended without addresses, by reason */
} host_t;

typedef struct addr_lookup {
    resolver_t *r;
    resolve_req_t *req;         /* NULL once abandoned */
    size_t host;
    int family;
    struct evdns_request *dr;
    struct addr_lookup *next;
} addr_lookup_t;

enum phase { PH_SRV, PH_ADDR, PH_DONE };

struct resolve_req {
    resolver_t *r;
    resolve_req_t *prev, *next;
    char domain[DOMAIN_MAX];
    const char *source;         /* srv, fallback, static, literal: for logs */
    resolve_cb cb;
    void *arg;
    struct event *timer;        /* the whole lookup's deadline */
    struct event *kick;         /* delivers the result from the loop */
    enum phase phase;
    int timed_out;
    struct timeval started;
    srv_query_t q[2];           /* [0] _xmpps-server, [1] _xmpp-server */
    int srv_pending;
    cand_t *cands;
    size_t ncands;
    host_t *hosts;
    size_t nhosts;
    addr_lookup_t *lookups;     /* in flight and attached */
    int addr_pending;
    s2s_target_t *targets;
    size_t ntargets;
    const char *error;
};

static void srv_send(srv_query_t *sq);
static void complete(resolve_req_t *q, const char *error);

static uint32_t rand32(void)
{
    uint32_t v;
    if (RAND_bytes((unsigned char *)&v, sizeof v) != 1)
        log_panic("event=dns-id reason=rand-bytes-failed");
    return v;
}

static struct timeval tv_of(double s)
{
    struct timeval tv = {(time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6)};
    return tv;
}

/* Splits "host", "host:port", "[v6]:port" or a bare IPv6 address. 0 / -1. */
static int split_hostport(const char *s, int default_port, char *host, size_t cap, int *port)
{
    const char *hs = s, *ps = NULL;
    size_t hl;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || (end[1] && end[1] != ':'))
            return -1;
        hs = s + 1;
        hl = (size_t)(end - hs);
        if (end[1])
            ps = end + 2;
    } else {
        const char *colon = strchr(s, ':');
        if (colon && colon == strrchr(s, ':')) {
            hl = (size_t)(colon - s);
            ps = colon + 1;
        } else {
            hl = strlen(s);          /* no port, or an IPv6 address without brackets */
        }
    }
    if (hl == 0 || hl >= cap)
        return -1;
    memcpy(host, hs, hl);
    host[hl] = '\0';
    *port = default_port;
    if (ps) {
        char *e;
        long p = strtol(ps, &e, 10);
        if (!*ps || *e || p < 1 || p > 65535)
            return -1;
        *port = (int)p;
    }
    return 0;
}

/* Numeric addresses only (never a DNS query); accepts IPv6 scope ids. */
static int numeric_sockaddr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo hints = {0}, *res = NULL;
    char ps[8];
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    hints.ai_socktype = SOCK_DGRAM;
    snprintf(ps, sizeof ps, "%d", port);
    if (getaddrinfo(host, ps, &hints, &res) != 0 || !res)
        return -1;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int ns_add(resolver_t *r, const char *spec)
{
    char host[128];
    int port;
    if (r->nns == NS_MAX) {
        log_warn("event=dns-config reason=too-many-nameservers nameserver=%s max=%d action=ignored", spec, NS_MAX);
        return 0;
    }
    ns_addr_t *ns = &r->ns[r->nns];
    if (split_hostport(spec, 53, host, sizeof host, &port) < 0 || numeric_sockaddr(host, port, &ns->ss, &ns->len) < 0)
        return -1;
    net_addr_format((const struct sockaddr *)&ns->ss, ns->len, ns->text, sizeof ns->text);
    r->nns++;
    return 0;
}

static int ns_from_list(resolver_t *r, const char *list, char *err, size_t errlen)
{
    char *copy = xstrdup(list), *save = NULL;
    for (char *tok = strtok_r(copy, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
        if (ns_add(r, tok) < 0) {
            snprintf(err, errlen, "bad nameserver \"%s\" (an IP address, optionally with :port)", tok);
            free(copy);
            return -1;
        }
    }
    free(copy);
    return 0;
}

/* The "nameserver ADDR" lines of a resolv.conf; others are ignored. */
static int ns_from_resolv_conf(resolver_t *r, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *save = NULL, *key = strtok_r(line, " \t\r\n", &save);
        if (!key || strcmp(key, "nameserver"))
            continue;
        char *val = strtok_r(NULL, " \t\r\n", &save);
        if (val && ns_add(r, val) < 0)
            log_warn("event=dns-config file=%s reason=bad-nameserver nameserver=%s action=ignored", path, val);
    }
    fclose(f);
    return 0;
}

/* Lines "ADDRESS NAME [ALIAS...]" of a hosts file; '#' starts a comment. */
static int hosts_load(resolver_t *r, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read hosts file %s: %s", path, strerror(errno));
        return -1;
    }
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "#")] = '\0';
        char *save = NULL, *addr = strtok_r(line, " \t\r\n", &save);
        hosts_entry_t e = {0};
        if (!addr)
            continue;
        if (evutil_inet_pton(AF_INET6, addr, &e.a6) == 1)
            e.family = AF_INET6;
        else if (evutil_inet_pton(AF_INET, addr, &e.a4) == 1)
            e.family = AF_INET;
        else
            continue;
        for (char *name = strtok_r(NULL, " \t\r\n", &save); name; name = strtok_r(NULL, " \t\r\n", &save)) {
            if (r->nhosts == r->hosts_cap) {
                r->hosts_cap = r->hosts_cap ? 2 * r->hosts_cap : 16;
                r->hosts = xrealloc(r->hosts, r->hosts_cap * sizeof *r->hosts);
            }
            e.name = xstrdup(name);
            r->hosts[r->nhosts++] = e;
        }
    }
    fclose(f);
    return 0;
}

/* Fills h from the hosts file; 1 when the file names the host (even with
 * addresses of one family only: DNS is then not asked), else 0. */
static int hosts_lookup(const resolver_t *r, host_t *h)
{
    int found = 0;
    for (size_t i = 0; i < r->nhosts; i++) {
        const hosts_entry_t *e = &r->hosts[i];
        if (strcasecmp(e->name, h->name))
            continue;
        found = 1;
        if (e->family == AF_INET6 && h->n6 < ADDR_MAX)
            h->a6[h->n6++] = e->a6;
        else if (e->family == AF_INET && h->n4 < ADDR_MAX)
            h->a4[h->n4++] = e->a4;
    }
    return found;
}

static void evdns_log(int is_warn, const char *msg)
{
    if (is_warn)
        log_warn("event=evdns detail=\"%s\"", msg);
    else
        log_debug("event=evdns detail=\"%s\"", msg);
}

static void resolver_destroy(resolver_t *r)
{
    if (r->evdns)
        evdns_base_free(r->evdns, 0);
    for (size_t i = 0; i < r->nhosts; i++)
        free(r->hosts[i].name);
    free(r->hosts);
    free(r);
}

resolver_t *resolver_new(struct event_base *base, const resolver_cfg_t *cfg, char *err, size_t errlen)
{
    resolver_t *r = xcalloc(1, sizeof *r);
    r->base = base;
    r->default_port = cfg->default_port > 0 ? cfg->default_port : 5269;
    r->timeout = tv_of(cfg->timeout > 0 ? cfg->timeout : 10);
    const char *rc = cfg->resolv_conf && *cfg->resolv_conf ? cfg->resolv_conf : "/etc/resolv.conf";
    if (cfg->nameservers && *cfg->nameservers) {
        if (ns_from_list(r, cfg->nameservers, err, errlen) < 0)
            goto fail;
    } else if (ns_from_resolv_conf(r, rc, err, errlen) < 0) {
        goto fail;
    }
    if (r->nns == 0) {
        snprintf(err, errlen, "no nameserver (dns.nameservers is empty and %s names none)", rc);
        goto fail;
    }
    evdns_set_log_fn(evdns_log);
    r->evdns = evdns_base_new(base, 0);
    if (!r->evdns) {
        snprintf(err, errlen, "evdns_base_new failed");
        goto fail;
    }
    for (size_t i = 0; i < r->nns; i++) {
        if (evdns_base_nameserver_sockaddr_add(r->evdns, (struct sockaddr *)&r->ns[i].ss, r->ns[i].len, 0) != 0) {
            snprintf(err, errlen, "cannot use nameserver %s", r->ns[i].text);
            goto fail;
        }
    }
    /* Address lookups: 1 s per try like our SRV queries; the deadline bounds the rest. */
    evdns_base_set_option(r->evdns, "timeout:", "1");
    evdns_base_set_option(r->evdns, "attempts:", "3");
    if (cfg->hosts_file && *cfg->hosts_file && hosts_load(r, cfg->hosts_file, err, errlen) < 0)
        goto fail;
    return r;
fail:
    resolver_destroy(r);
    return NULL;
}

int resolver_add_static(resolver_t *r, const char *domain, const char *address, int direct_tls)
{
    char host[256];
    int port;
    if (!*domain || strlen(domain) >= DOMAIN_MAX ||
        split_hostport(address, r->default_port, host, sizeof host, &port) < 0)
        return -1;
    static_entry_t *e = xcalloc(1, sizeof *e), **tail = &r->statics;
    e->domain = xstrdup(domain);
    memcpy(e->host, host, sizeof host);
    e->port = port;
    e->direct_tls = direct_tls ? 1 : 0;
    while (*tail)
        tail = &(*tail)->next;
    *tail = e;
    return 0;
}

/* ---- hosts and candidates ---- */

/* AF_INET6 or AF_INET when name is an address literal (IPv6 in brackets or
 * not), filling a6 or a4; else 0. */
static int addr_literal(const char *name, struct in6_addr *a6, struct in_addr *a4)
{
    char lit[256];
    size_t n = strlen(name);
    if (name[0] == '[' && n > 2 && name[n - 1] == ']')
        snprintf(lit, sizeof lit, "%.*s", (int)(n - 2), name + 1);
    else
        snprintf(lit, sizeof lit, "%s", name);
    if (evutil_inet_pton(AF_INET6, lit, a6) == 1)
        return AF_INET6;
    if (evutil_inet_pton(AF_INET, lit, a4) == 1)
        return AF_INET;
    return 0;
}

/* Index of host name in q->hosts, added when new; an address literal is
 * filled in at once and never looked up. */
static size_t host_add(resolve_req_t *q, const char *name)
{
    for (size_t i = 0; i < q->nhosts; i++)
        if (!strcasecmp(q->hosts[i].name, name))
            return i;
    q->hosts = xrealloc(q->hosts, (q->nhosts + 1) * sizeof *q->hosts);
    host_t *h = &q->hosts[q->nhosts];
    memset(h, 0, sizeof *h);
    snprintf(h->name, sizeof h->name, "%s", name);
    int family = addr_literal(name, &h->a6[0], &h->a4[0]);
    h->numeric = family != 0;
    h->n6 = family == AF_INET6;
    h->n4 = family == AF_INET;
    return q->nhosts++;
}

static void cand_add(resolve_req_t *q, uint16_t prio, uint16_t weight, int port, int direct_tls, size_t host)
{
    for (size_t i = 0; i < q->ncands; i++) {
        const cand_t *c = &q->cands[i];
        if (c->host == host && c->port == port && c->direct_tls == direct_tls)
            return;      /* the same place twice adds nothing */
    }
    q->cands = xrealloc(q->cands, (q->ncands + 1) * sizeof *q->cands);
    q->cands[q->ncands++] = (cand_t){prio, weight, (uint16_t)port, direct_tls, host};
}

/* RFC 2782 order: priority ascending; within a priority, repeatedly pick
 * one remaining record with probability proportional to its weight (weight-0
 * records first in the running sum, so they are rarely picked before the
 * others). When the pick is a STARTTLS record and a direct-TLS one of the same
 * weight remains, the direct-TLS one goes first: at equal priority and weight
 * we prefer TLS from the first byte (XEP-0368). */
static void cands_order(resolve_req_t *q)
{
    cand_t *c = q->cands;
    size_t n = q->ncands;
    for (size_t i = 1; i < n; i++) {          /* stable: by priority, zero weights first */
        cand_t t = c[i];
        size_t j = i;
        while (j > 0 && (c[j - 1].priority > t.priority ||
                         (c[j - 1].priority == t.priority && c[j - 1].weight && !t.weight))) {
            c[j] = c[j - 1];
            j--;
        }
        c[j] = t;
    }
    for (size_t g = 0; g < n;) {
        size_t end = g;
        while (end < n && c[end].priority == c[g].priority)
            end++;
        for (size_t k = g; k + 1 < end; k++) {
            uint32_t total = 0, run = 0;
            for (size_t i = k; i < end; i++)
                total += c[i].weight;
            uint32_t pick = rand32() % (total + 1);
            size_t m = k;
            for (; m + 1 < end; m++) {
                run += c[m].weight;
                if (run >= pick)
                    break;
            }
            for (size_t i = k; i < end && !c[m].direct_tls; i++)
                if (c[i].direct_tls && c[i].weight == c[m].weight)
                    m = i;
            cand_t t = c[m];
            memmove(&c[k + 1], &c[k], (m - k) * sizeof *c);
            c[k] = t;
        }
        g = end;
    }
}

/* ---- phase 2: addresses ---- */

static void addr_lookup_unlink(resolve_req_t *q, addr_lookup_t *l)
{
    for (addr_lookup_t **p = &q->lookups; *p; p = &(*p)->next) {
        if (*p == l) {
            *p = l->next;
            return;
        }
    }
}

static void addr_answer(int result, char type, int count, int ttl, void *addrs, void *arg)
{
    addr_lookup_t *l = arg;
    resolver_t *r = l->r;
    resolve_req_t *q = l->req;
    (void)ttl;
    if (q) {
        host_t *h = &q->hosts[l->host];
        int got = 0;
        for (int i = 0; result == DNS_ERR_NONE && i < count; i++, got++) {
            if (type == DNS_IPv6_AAAA && h->n6 < ADDR_MAX)
                memcpy(&h->a6[h->n6++], (const uint8_t *)addrs + 16 * i, 16);
            else if (type == DNS_IPv4_A && h->n4 < ADDR_MAX)
                memcpy(&h->a4[h->n4++], (const uint8_t *)addrs + 4 * i, 4);
        }
        if (!got && (result == DNS_ERR_NONE || result == DNS_ERR_NOTEXIST || result == DNS_ERR_NODATA))
            h->notfound++;
        else if (!got)
            h->failed++;
        log_debug("event=dns-address host=%s type=%s result=\"%s\" addresses=%d", h->name,
                  l->family == AF_INET6 ? "AAAA" : "A", evdns_err_to_string(result), got);
        addr_lookup_unlink(q, l);
    }
    free(l);
    r->live_lookups--;
    if (q) {
        if (--q->addr_pending == 0)
            complete(q, NULL);
    } else if (r->dying && r->live_lookups == 0) {
        resolver_destroy(r);
    }
}

static void addr_launch(resolve_req_t *q, size_t host, int family)
{
    resolver_t *r = q->r;
    addr_lookup_t *l = xcalloc(1, sizeof *l);
    l->r = r;
    l->req = q;
    l->host = host;
    l->family = family;
    if (family == AF_INET6)
        l->dr = evdns_base_resolve_ipv6(r->evdns, q->hosts[host].name, DNS_QUERY_NO_SEARCH, addr_answer, l);
    else
        l->dr = evdns_base_resolve_ipv4(r->evdns, q->hosts[host].name, DNS_QUERY_NO_SEARCH, addr_answer, l);
    if (!l->dr) {               /* evdns refused the name: never called back */
        q->hosts[host].failed++;
        free(l);
        return;
    }
    l->next = q->lookups;
    q->lookups = l;
    q->addr_pending++;
    r->live_lookups++;
}

/* evdns never calls back from inside evdns_base_resolve_*, so nothing can
 * complete q while the lookups are being started. */
static void addr_start(resolve_req_t *q)
{
    q->phase = PH_ADDR;
    for (size_t i = 0; i < q->nhosts; i++) {
        host_t *h = &q->hosts[i];
        if (!h->numeric && !hosts_lookup(q->r, h)) {
            addr_launch(q, i, AF_INET6);
            addr_launch(q, i, AF_INET);
        }
    }
    if (q->addr_pending == 0)
        complete(q, NULL);
}

/* ---- phase 1: SRV ---- */

static void srv_close(srv_query_t *sq)
{
    if (sq->rd) {
        event_free(sq->rd);
        sq->rd = NULL;
    }
    if (sq->fd >= 0) {
        evutil_closesocket(sq->fd);
        sq->fd = -1;
    }
    if (sq->tcp) {
        bufferevent_free(sq->tcp);
        sq->tcp = NULL;
    }
    if (sq->wait)
        event_del(sq->wait);
}

static void srv_merge(resolve_req_t *q)
{
    int dot = 0, negative = 1;
    for (int i = 0; i < 2; i++) {
        const srv_query_t *sq = &q->q[i];
        for (size_t k = 0; k < sq->nrecs; k++) {
            const dns_srv_t *s = &sq->recs[k];
            if (!strcmp(s->target, "."))
                dot = 1;
            else
                cand_add(q, s->priority, s->weight, s->port, sq->direct_tls, host_add(q, s->target));
        }
        if (sq->status != DNS_OK && sq->status != DNS_NXDOMAIN && sq->status != DNS_NODATA)
            negative = 0;
    }
    if (q->ncands) {
        cands_order(q);
        addr_start(q);
    } else if (dot) {
        complete(q, "not-found");      /* RFC 2782: "." = decidedly not available here */
    } else if (!negative) {
        complete(q, "failed");
    } else {
        q->source = "fallback";        /* RFC 6120 §3.2.2: the domain's own addresses */
        cand_add(q, 0, 0, q->r->default_port, 0, host_add(q, q->domain));
        addr_start(q);
    }
}

static void srv_done(srv_query_t *sq, dns_status_t st)
{
    srv_close(sq);
    sq->status = st;
    if (st != DNS_OK)
        sq->nrecs = 0;
    if (--sq->req->srv_pending == 0)
        srv_merge(sq->req);
}

/* Asks the next nameserver that has not answered with an error (the same
 * one again when it is the only one left); ends the query as failed when
 * every nameserver has. */
static void srv_next(srv_query_t *sq)
{
    const resolver_t *r = sq->req->r;
    for (size_t i = 1; i <= r->nns; i++) {
        size_t k = (sq->ns_cur + i) % r->nns;
        if (!(sq->failed & (1u << k))) {
            sq->ns_cur = k;
            srv_send(sq);
            return;
        }
    }
    srv_done(sq, DNS_SERVFAIL);
}

static void srv_server_failed(srv_query_t *sq, const char *why)
{
    log_debug("event=dns-server-failed name=%s server=%s reason=\"%s\"", sq->qname, sq->req->r->ns[sq->ns_cur].text,
              why);
    sq->failed |= 1u << sq->ns_cur;
    srv_next(sq);
}

static void srv_tcp(srv_query_t *sq);

/* One response for sq. Returns 1 when the query moved on (the socket or
 * connection it came on is gone), 0 to keep waiting on it. */
static int srv_answer(srv_query_t *sq, const uint8_t *pkt, size_t len, int tcp)
{
    size_t n;
    dns_status_t st = dns_parse_srv(pkt, len, sq->id, sq->qname, sq->recs, SRV_MAX, &n);
    log_debug("event=dns-answer name=%s server=%s transport=%s status=%s records=%zu bytes=%zu", sq->qname,
              sq->req->r->ns[sq->ns_cur].text, tcp ? "tcp" : "udp", dns_status_name(st), n, len);
    switch (st) {
    case DNS_OK:
    case DNS_NODATA:
    case DNS_NXDOMAIN:
        sq->nrecs = n;
        srv_done(sq, st);
        return 1;
    case DNS_TRUNCATED:
        if (tcp)
            srv_server_failed(sq, "truncated over tcp");
        else
            srv_tcp(sq);
        return 1;
    case DNS_SERVFAIL:
        srv_server_failed(sq, "error rcode");
        return 1;
    case DNS_MISMATCH:
    case DNS_MALFORMED:
        break;
    }
    if (tcp) {                  /* a TCP connection carries nothing else: that server is broken */
        srv_server_failed(sq, dns_status_name(st));
        return 1;
    }
    return 0;                   /* a stray or broken datagram: the real answer may still come */
}

static void srv_udp_read(evutil_socket_t fd, short what, void *arg)
{
    srv_query_t *sq = arg;
    uint8_t buf[4096];
    (void)what;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            srv_server_failed(sq, strerror(errno));   /* ECONNREFUSED: nothing listens there */
            return;
        }
        if (srv_answer(sq, buf, (size_t)n, 0))
            return;
    }
}

static void srv_send(srv_query_t *sq)
{
    resolver_t *r = sq->req->r;
    const ns_addr_t *ns = &r->ns[sq->ns_cur];
    srv_close(sq);
    sq->id = (uint16_t)rand32();
    sq->pktlen = (size_t)dns_query_build(sq->pkt, sizeof sq->pkt, sq->id, sq->qname, DNS_TYPE_SRV);
    sq->fd = socket(ns->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (sq->fd < 0 || connect(sq->fd, (const struct sockaddr *)&ns->ss, ns->len) < 0 ||
        send(sq->fd, sq->pkt, sq->pktlen, 0) < 0) {
        srv_server_failed(sq, strerror(errno));
        return;
    }
    sq->rd = event_new(r->base, sq->fd, EV_READ | EV_PERSIST, srv_udp_read, sq);
    event_add(sq->rd, NULL);
    struct timeval tv = tv_of(UDP_WAIT);
    event_add(sq->wait, &tv);
    log_debug("event=dns-query name=%s type=SRV server=%s transport=udp id=%u", sq->qname, ns->text, sq->id);
}

static void srv_tcp_read(struct bufferevent *bev, void *arg)
{
    srv_query_t *sq = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    uint8_t l[2];
    if (evbuffer_copyout(in, l, 2) < 2)
        return;
    size_t need = 2 + (size_t)((l[0] << 8) | l[1]);
    if (evbuffer_get_length(in) < need)
        return;
    const uint8_t *pkt = evbuffer_pullup(in, (ev_ssize_t)need);
    srv_answer(sq, pkt + 2, need - 2, 1);   /* always moves on: bev is freed */
}

static void srv_tcp_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF | BEV_EVENT_TIMEOUT))
        srv_server_failed(arg, "tcp connection failed or closed");
}

/* The same query (same id) again over TCP to the same nameserver (RFC 7766). */
static void srv_tcp(srv_query_t *sq)
{
    resolver_t *r = sq->req->r;
    const ns_addr_t *ns = &r->ns[sq->ns_cur];
    uint8_t l[2] = {(uint8_t)(sq->pktlen >> 8), (uint8_t)sq->pktlen};
    srv_close(sq);
    sq->tcp = bufferevent_socket_new(r->base, -1, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(sq->tcp, srv_tcp_read, NULL, srv_tcp_event, sq);
    bufferevent_setwatermark(sq->tcp, EV_READ, 0, 2 + 65535);
    bufferevent_enable(sq->tcp, EV_READ | EV_WRITE);
    bufferevent_write(sq->tcp, l, 2);
    bufferevent_write(sq->tcp, sq->pkt, sq->pktlen);
    if (bufferevent_socket_connect(sq->tcp, (const struct sockaddr *)&ns->ss, (int)ns->len) < 0) {
        srv_server_failed(sq, "tcp connect");
        return;
    }
    struct timeval tv = tv_of(TCP_WAIT);
    event_add(sq->wait, &tv);
    log_debug("event=dns-query name=%s type=SRV server=%s transport=tcp id=%u", sq->qname, ns->text, sq->id);
}

/* No answer in time: ask the next nameserver. */
static void srv_wait_expired(evutil_socket_t fd, short what, void *arg)
{
    srv_query_t *sq = arg;
    (void)fd;
    (void)what;
    log_debug("event=dns-retry name=%s server=%s", sq->qname, sq->req->r->ns[sq->ns_cur].text);
    srv_next(sq);
}

static void srv_start(resolve_req_t *q)
{
    static const char *const service[2] = {"_xmpps-server._tcp", "_xmpp-server._tcp"};
    uint8_t probe[DNS_QUERY_MAX];
    q->phase = PH_SRV;
    q->source = "srv";
    q->srv_pending = 2;
    for (int i = 0; i < 2; i++) {
        srv_query_t *sq = &q->q[i];
        sq->req = q;
        sq->direct_tls = i == 0;
        sq->fd = -1;
        snprintf(sq->qname, sizeof sq->qname, "%s.%s", service[i], q->domain);
        sq->wait = evtimer_new(q->r->base, srv_wait_expired, sq);
    }
    for (int i = 0; i < 2; i++) {
        srv_query_t *sq = &q->q[i];
        if (dns_query_build(probe, sizeof probe, 0, sq->qname, DNS_TYPE_SRV) < 0)
            srv_done(sq, DNS_NODATA);    /* the service name would be too long: no such record can exist */
        else
            srv_send(sq);
    }
}

/* ---- a request's life ---- */

static void req_stop(resolve_req_t *q)
{
    event_del(q->timer);
    for (int i = 0; i < 2; i++)
        srv_close(&q->q[i]);
    while (q->lookups) {
        addr_lookup_t *l = q->lookups;
        q->lookups = l->next;
        l->req = NULL;                 /* its callback now only frees it */
        evdns_cancel_request(q->r->evdns, l->dr);
    }
}

static void build_targets(resolve_req_t *q)
{
    size_t n = 0;
    for (size_t i = 0; i < q->ncands; i++)
        n += q->hosts[q->cands[i].host].n6 + q->hosts[q->cands[i].host].n4;
    if (!n)
        return;
    q->targets = xcalloc(n, sizeof *q->targets);
    for (size_t i = 0; i < q->ncands; i++) {
        const cand_t *c = &q->cands[i];
        const host_t *h = &q->hosts[c->host];
        for (size_t k = 0; k < h->n6 + h->n4; k++) {
            s2s_target_t *t = &q->targets[q->ntargets++];
            if (k < h->n6) {
                struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&t->addr;
                sin6->sin6_family = AF_INET6;
                sin6->sin6_addr = h->a6[k];
                sin6->sin6_port = htons(c->port);
                t->addrlen = sizeof *sin6;
            } else {
                struct sockaddr_in *sin = (struct sockaddr_in *)&t->addr;
                sin->sin_family = AF_INET;
                sin->sin_addr = h->a4[k - h->n6];
                sin->sin_port = htons(c->port);
                t->addrlen = sizeof *sin;
            }
            t->direct_tls = c->direct_tls;
            snprintf(t->host, sizeof t->host, "%s", h->name);
        }
    }
}

/* Why no address came out: "failed" if any lookup failed for another reason than
 * the name having no such record, else "not-found". */
static const char *hosts_error(const resolve_req_t *q)
{
    for (size_t i = 0; i < q->nhosts; i++)
        if (q->hosts[i].failed)
            return "failed";
    return "not-found";
}

/* Ends the lookup (once): stops everything still running, builds the result
 * and has the loop deliver it. error NULL: whatever addresses came in. */
static void complete(resolve_req_t *q, const char *error)
{
    if (q->phase == PH_DONE)
        return;
    q->phase = PH_DONE;
    req_stop(q);
    if (!error) {
        build_targets(q);
        if (!q->ntargets)
            error = q->timed_out ? "timeout" : hosts_error(q);
    }
    q->error = error;
    struct timeval now, d;
    evutil_gettimeofday(&now, NULL);
    evutil_timersub(&now, &q->started, &d);
    long ms = (long)d.tv_sec * 1000 + (long)d.tv_usec / 1000;
    if (error) {
        log_info("event=dns-result domain=%s result=%s source=%s ms=%ld", q->domain, error, q->source, ms);
    } else {
        char a[80];
        net_addr_format((const struct sockaddr *)&q->targets[0].addr, q->targets[0].addrlen, a, sizeof a);
        log_info("event=dns-result domain=%s result=ok source=%s targets=%zu first=%s first_addr=%s tls=%s "
                 "partial=%d ms=%ld", q->domain, q->source, q->ntargets, q->targets[0].host, a,
                 q->targets[0].direct_tls ? "direct" : "starttls", q->timed_out, ms);
    }
    event_active(q->kick, EV_TIMEOUT, 0);
}

static void req_deadline(evutil_socket_t fd, short what, void *arg)
{
    resolve_req_t *q = arg;
    (void)fd;
    (void)what;
    q->timed_out = 1;
    complete(q, q->phase == PH_SRV ? "timeout" : NULL);   /* addresses so far, if any */
}

static void req_unlink(resolve_req_t *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        q->r->reqs = q->next;
    if (q->next)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
}

static void req_free(resolve_req_t *q)
{
    req_stop(q);
    for (int i = 0; i < 2; i++)
        if (q->q[i].wait)
            event_free(q->q[i].wait);
    event_free(q->timer);
    event_free(q->kick);
    free(q->cands);
    free(q->hosts);
    free(q->targets);
    free(q);
}

/* The callback may free the resolver or start new lookups: q is unlinked first. */
static void req_deliver(evutil_socket_t fd, short what, void *arg)
{
    resolve_req_t *q = arg;
    (void)fd;
    (void)what;
    req_unlink(q);
    q->cb(q->arg, q->targets, q->ntargets, q->error);
    req_free(q);
}

resolve_req_t *resolver_lookup(resolver_t *r, const char *domain, resolve_cb cb, void *arg)
{
    size_t dl = strlen(domain);
    if (dl == 0 || dl >= DOMAIN_MAX)
        return NULL;
    resolve_req_t *q = xcalloc(1, sizeof *q);
    q->r = r;
    /* No socket yet: a static or literal lookup never starts the SRV phase,
     * and srv_close must not take fd 0 (calloc's zero) for one of ours. */
    for (int i = 0; i < 2; i++)
        q->q[i].fd = -1;
    memcpy(q->domain, domain, dl + 1);
    q->cb = cb;
    q->arg = arg;
    q->next = r->reqs;
    if (r->reqs)
        r->reqs->prev = q;
    r->reqs = q;
    q->timer = evtimer_new(r->base, req_deadline, q);
    q->kick = event_new(r->base, -1, 0, req_deliver, q);
    evtimer_add(q->timer, &r->timeout);
    evutil_gettimeofday(&q->started, NULL);

    struct in6_addr a6;
    struct in_addr a4;
    if (addr_literal(domain, &a6, &a4)) {   /* an IP literal: nothing to look up */
        q->source = "literal";
        cand_add(q, 0, 0, r->default_port, 0, host_add(q, domain));
        addr_start(q);
        return q;
    }
    for (const static_entry_t *e = r->statics; e; e = e->next)
        if (!strcasecmp(e->domain, domain))
            cand_add(q, 0, 0, e->port, e->direct_tls, host_add(q, e->host));
    if (q->ncands) {
        q->source = "static";
        addr_start(q);
        return q;
    }
    srv_start(q);
    return q;
}

void resolver_cancel(resolve_req_t *q)
{
    if (!q)
        return;
    req_unlink(q);
    req_free(q);
}

void resolver_free(resolver_t *r)
{
    if (!r)
        return;
    while (r->reqs)
        resolver_cancel(r->reqs);
    while (r->statics) {
        static_entry_t *e = r->statics;
        r->statics = e->next;
        free(e->domain);
        free(e);
    }
    r->dying = 1;
    if (r->live_lookups == 0)
        resolver_destroy(r);
}
