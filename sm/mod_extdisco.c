/* mod_extdisco: XEP-0215 external service discovery, so that clients find
 * the STUN and TURN servers their audio and video calls need.
 *
 * The services come from extdisco.services, a list of RFC 7064/7065 URIs
 * (stun:host[:port], stuns:..., turn:host[:port][?transport=udp|tcp],
 * turns:...). With extdisco.secret set, TURN entries are restricted and
 * carry credentials made the way coturn's REST API convention (its
 * use-auth-secret / static-auth-secret) checks them: username
 * "EXPIRY:BAREJID" with EXPIRY the Unix time extdisco.ttl from now, password
 * base64(HMAC-SHA1(secret, username)), and the expiry as an XEP-0082
 * 'expires'. Nothing is stored: the TURN server verifies by recomputing.
 *
 * - <services/> (optionally type='stun|turn|...'): the list, with
 *   credentials on restricted entries.
 * - <credentials><service host type [port]/></credentials>: credentials for
 *   that service; item-not-found when none matches.
 * Only the domain's own users' sessions are answered (credentials are not
 * for anyone who can reach the domain): others get forbidden. A set:
 * not-allowed. No per-user state. */
#include "base64.h"
#include "log.h"
#include "module.h"
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NS_EXTDISCO "urn:xmpp:extdisco:2"

typedef struct extdisco_cfg {
    char *services;
    char *secret;
    double ttl;
} extdisco_cfg_t;

extern sm_module_t sm_module_extdisco;

/* One entry of extdisco.services, parsed. */
typedef struct ext_service {
    char type[8];        /* stun, stuns, turn, turns */
    char host[256];
    char port[8];
    char transport[4];   /* udp or tcp */
} ext_service_t;

/* Parses one URI; 0 / -1. Hosts may be [v6] literals. */
static int service_parse(const char *uri, size_t n, ext_service_t *out)
{
    memset(out, 0, sizeof *out);
    const char *colon = memchr(uri, ':', n);
    if (!colon || colon - uri >= (ptrdiff_t)sizeof out->type)
        return -1;
    memcpy(out->type, uri, (size_t)(colon - uri));
    int secure = !strcmp(out->type, "stuns") || !strcmp(out->type, "turns");
    if (strcmp(out->type, "stun") && strcmp(out->type, "turn") && !secure)
        return -1;
    const char *p = colon + 1, *end = uri + n;
    const char *q = memchr(p, '?', (size_t)(end - p));
    const char *hend = q ? q : end;
    const char *portp = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(hend - p));
        if (!rb)
            return -1;
        portp = rb + 1 < hend && rb[1] == ':' ? rb + 2 : NULL;
        p++;
        hend = rb;
    } else {
        const char *c = memchr(p, ':', (size_t)(hend - p));
        if (c) {
            portp = c + 1;
            hend = c;
        }
    }
    size_t hl = (size_t)(hend - p);
    if (hl == 0 || hl >= sizeof out->host)
        return -1;
    memcpy(out->host, p, hl);
    const char *pend = q ? q : end;
    if (portp) {
        size_t pl = (size_t)(pend - portp);
        if (pl == 0 || pl >= sizeof out->port || strspn(portp, "0123456789") < pl)
            return -1;
        memcpy(out->port, portp, pl);
    } else {
        strcpy(out->port, secure ? "5349" : "3478");
    }
    strcpy(out->transport, secure ? "tcp" : "udp");
    if (q) {
        if ((size_t)(end - q) == 14 && !strncmp(q, "?transport=udp", 14))
            strcpy(out->transport, "udp");
        else if ((size_t)(end - q) == 14 && !strncmp(q, "?transport=tcp", 14))
            strcpy(out->transport, "tcp");
        else
            return -1;
    }
    return 0;
}

/* Calls fn for every configured service; stops when fn returns 1. */
static void services_each(int (*fn)(const ext_service_t *s, void *arg), void *arg)
{
    const extdisco_cfg_t *cfg = sm_module_config(&sm_module_extdisco);
    const char *p = cfg->services ? cfg->services : "";
    while (*p) {
        p += strspn(p, " \t\n,");
        size_t n = strcspn(p, " \t\n,");
        ext_service_t s;
        if (n && service_parse(p, n, &s) == 0 && fn(&s, arg))
            return;
        p += n;
    }
}

static int restricted(const ext_service_t *s)
{
    const extdisco_cfg_t *cfg = sm_module_config(&sm_module_extdisco);
    return s->type[0] == 't' && cfg->secret && *cfg->secret;
}

/* The coturn REST credentials of user for a restricted service. */
static void add_credentials(xml_node_t *el, const char *user)
{
    const extdisco_cfg_t *cfg = sm_module_config(&sm_module_extdisco);
    time_t expiry = time(NULL) + (time_t)cfg->ttl;
    char username[1100];
    snprintf(username, sizeof username, "%lld:%s", (long long)expiry, user);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha1(), cfg->secret, (int)strlen(cfg->secret), (const unsigned char *)username, strlen(username),
         mac, &len);
    strbuf_t pw;
    strbuf_init(&pw);
    base64_encode(mac, len, &pw);
    char stamp[32];
    struct tm tm;
    gmtime_r(&expiry, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    xml_attr_set(el, "restricted", "1");
    xml_attr_set(el, "username", username);
    xml_attr_set(el, "password", pw.data);
    xml_attr_set(el, "expires", stamp);
    strbuf_free(&pw);
}

static xml_node_t *service_el(xml_node_t *parent, const ext_service_t *s)
{
    xml_node_t *el = xml_add_child(parent, NS_EXTDISCO, "service");
    xml_attr_set(el, "type", s->type);
    xml_attr_set(el, "host", s->host);
    xml_attr_set(el, "port", s->port);
    xml_attr_set(el, "transport", s->transport);
    return el;
}

typedef struct walk {
    xml_node_t *out;
    const char *user;
    const char *type;     /* filter, or NULL */
    const char *host;     /* credentials: the service asked for */
    const char *port;     /* or NULL */
    int found;
} walk_t;

static int list_one(const ext_service_t *s, void *arg)
{
    walk_t *w = arg;
    if (w->type && strcmp(w->type, s->type))
        return 0;
    xml_node_t *el = service_el(w->out, s);
    if (restricted(s))
        add_credentials(el, w->user);
    return 0;
}

static int credentials_one(const ext_service_t *s, void *arg)
{
    walk_t *w = arg;
    if (strcmp(w->type, s->type) || strcmp(w->host, s->host) || (w->port && strcmp(w->port, s->port)) ||
        !restricted(s))
        return 0;
    add_credentials(service_el(w->out, s), w->user);
    w->found = 1;
    return 1;
}

/* Only sessions of the domain's users (see the file comment). */
static int local_asker(sm_iq_t *req)
{
    if (req->sess && req->from_bare)
        return 1;
    sm_iq_error(req, "forbidden", "auth");
    return 0;
}

static void services_get(sm_iq_t *req)
{
    if (!local_asker(req))
        return;
    xml_node_t *q = xml_elem_new(NS_EXTDISCO, "services");
    const char *type = xml_attr_get(req->payload, "type");
    if (type)
        xml_attr_set(q, "type", type);
    walk_t w = {.out = q, .user = req->from_bare, .type = type};
    services_each(list_one, &w);
    sm_iq_reply(req, q);
}

static void credentials_get(sm_iq_t *req)
{
    if (!local_asker(req))
        return;
    xml_node_t *want = xml_child(req->payload, NS_EXTDISCO, "service");
    const char *type = want ? xml_attr_get(want, "type") : NULL;
    const char *host = want ? xml_attr_get(want, "host") : NULL;
    if (!type || !host) {
        sm_iq_error(req, "bad-request", "modify");
        return;
    }
    xml_node_t *q = xml_elem_new(NS_EXTDISCO, "credentials");
    walk_t w = {.out = q, .user = req->from_bare, .type = type, .host = host, .port = xml_attr_get(want, "port")};
    services_each(credentials_one, &w);
    if (w.found) {
        sm_iq_reply(req, q);
    } else {
        xml_free(q);
        sm_iq_error(req, "item-not-found", "cancel");
    }
}

/* Both queries share the namespace: the payload's name picks. */
static void extdisco_get(sm_iq_t *req)
{
    if (!strcmp(req->payload->name, "services"))
        services_get(req);
    else if (!strcmp(req->payload->name, "credentials"))
        credentials_get(req);
    else
        sm_iq_error(req, "bad-request", "modify");
}

static int extdisco_init(void)
{
    const extdisco_cfg_t *cfg = sm_module_config(&sm_module_extdisco);
    const char *p = cfg->services ? cfg->services : "";
    while (*p) {
        p += strspn(p, " \t\n,");
        size_t n = strcspn(p, " \t\n,");
        ext_service_t s;
        if (n && service_parse(p, n, &s) < 0) {
            log_error("event=start module=extdisco reason=bad-service service=\"%.*s\" hint=\"stun:host[:port], "
                      "turn:host[:port][?transport=udp|tcp], stuns: or turns:\"",
                      (int)n, p);
            return -1;
        }
        p += n;
    }
    return 0;
}

static const cfg_option_t extdisco_options[] = {
    {"services", CFG_STRING, "", 0, 0, 1, offsetof(extdisco_cfg_t, services), NULL,
     "STUN/TURN servers announced (space separated RFC 7064/7065 URIs: stun:host[:port], turn:host[:port][?transport=udp|tcp], stuns:, turns:); empty: none."},
    {"secret", CFG_STRING, "", 0, 0, 1, offsetof(extdisco_cfg_t, secret), NULL,
     "The TURN server's shared secret (coturn static-auth-secret): TURN entries get time-limited credentials; empty: none."},
    {"ttl", CFG_SECONDS, "24h", 60, 31536000, 1, offsetof(extdisco_cfg_t, ttl), NULL,
     "How long TURN credentials are valid from the request."},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, NULL},
};

static const sm_iq_handler_t extdisco_iqs[] = {
    {NS_EXTDISCO, SM_IQ_SERVER, extdisco_get, NULL, "not-allowed"},
    {NULL, 0, NULL, NULL, NULL},
};

static const char *const extdisco_features[] = {NS_EXTDISCO, NULL};

sm_module_t sm_module_extdisco = {
    .name = "extdisco",
    .help = "External service discovery (XEP-0215): STUN/TURN servers, with coturn REST credentials from a shared secret.",
    .init = extdisco_init,
    .options = extdisco_options,
    .config_size = sizeof(extdisco_cfg_t),
    .iqs = extdisco_iqs,
    .server_features = extdisco_features,
};
