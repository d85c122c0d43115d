/* listen: the client listeners (STARTTLS ports, XEP-0368 direct TLS ports,
 * WebSocket ports plain and over TLS (ws.h), IPv4 and IPv6) and the server TLS context they share. On first start with
 * tls.self-signed, a self-signed certificate for the domain is created at the
 * default tls.certificate path; a path the config names must exist. Owns the listener set and the SSL_CTX.
 * SIGHUP swaps in a context loaded afresh (listen_reload_tls): connections
 * accepted from then on use it, open ones keep the one they started with
 * (each SSL holds a reference), and a certificate that does not load leaves
 * the running context in place. */
#include "c2s.h"
#include "listen_set.h"
#include "log.h"
#include "net.h"
#include "tls.h"
#include <stdio.h>

/* The default config listens on [::1] too: a host without IPv6 still starts. */
static listen_set_t listeners = {.v6_optional = 1};
static SSL_CTX *tls_ctx;
/* Distinct addresses of the two callbacks' ctx say which kind a socket is. */
static int kind_starttls = LISTEN_STARTTLS, kind_tls = LISTEN_TLS, kind_ws = LISTEN_WS, kind_wss = LISTEN_WSS;

SSL_CTX *listen_tls_ctx(void)
{
    return tls_ctx;
}

static void listen_on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                             int socklen, void *ctx)
{
    (void)l;
    net_tune_accepted(fd, sa);
    client_accept(fd, sa, socklen, *(int *)ctx);
}

/* What every server context gets before use: tls.session-tickets, and for
 * tls.record-takeover, connections from ctx can leave OpenSSL once bound
 * (client.c, common/tls_record.c). */
static int listen_tls_prepare(SSL_CTX *ctx)
{
    tls_server_set_tickets(ctx, c2s_config->tls_tickets);
    if (c2s_config->tls_takeover && tls_record_ctx_prepare(ctx) < 0) {
        log_error("event=start reason=tls-record-takeover detail=\"cannot fetch the TLS 1.3 ciphers\"");
        return -1;
    }
    tls_record_set_key_limit((uint64_t)c2s_config->tls_key_update);
    return 0;
}

static int listen_tls_setup(void)
{
    char err[256];
    const c2s_cfg_t *cfg = c2s_config;
    if (!*cfg->tls_cert) {
        if (cfg->tls_required || *cfg->listen_tls || *cfg->listen_wss) {
            log_error("event=start reason=no-certificate tls.required=%d", cfg->tls_required);
            return -1;
        }
        return 0;
    }
    if (tls_cert_prepare(cfg->tls_cert, cfg->tls_key, cfg->tls_selfsigned, cfg->domain, err, sizeof err) < 0) {
        log_error("event=start reason=certificate certificate=%s detail=\"%s\"", cfg->tls_cert, err);
        return -1;
    }
    tls_ctx = tls_server_ctx_new(cfg->tls_cert, cfg->tls_key, NULL, TLS_CLIENT_CERT_NONE, err, sizeof err);
    if (!tls_ctx) {
        log_error("event=start reason=tls certificate=%s detail=\"%s\"", cfg->tls_cert, err);
        return -1;
    }
    return listen_tls_prepare(tls_ctx);
}

int listen_reload_tls(const char *cert, const char *key)
{
    char err[256];
    if (!tls_ctx) {
        /* Started without TLS (no certificate): adding it needs a restart,
         * the listeners and features were set up for clear text. */
        log_warn("event=tls-reload result=skipped reason=started-without-tls");
        return -1;
    }
    SSL_CTX *fresh = tls_server_ctx_new(cert, key, NULL, TLS_CLIENT_CERT_NONE, err, sizeof err);
    if (fresh && listen_tls_prepare(fresh) < 0) {
        SSL_CTX_free(fresh);
        fresh = NULL;
        snprintf(err, sizeof err, "tls.record-takeover setup failed");
    }
    if (!fresh) {
        log_error("event=tls-reload result=failed certificate=%s key=%s detail=\"%s\" action=kept-old", cert, key,
                  err);
        return -1;
    }
    SSL_CTX_free(tls_ctx);
    tls_ctx = fresh;
    log_notice("event=tls-reloaded certificate=%s", cert);
    return 0;
}

int listen_start(struct event_base *base)
{
    if (listen_tls_setup() < 0)
        return -1;
    if (listen_set_open(&listeners, base, c2s_config->listen_starttls, 5222, listen_on_accept, &kind_starttls,
                        "starttls") < 0)
        return -1;
    if (*c2s_config->listen_tls) {
        if (!tls_ctx) {
            log_error("event=start reason=direct-tls-without-certificate");
            return -1;
        }
        if (listen_set_open(&listeners, base, c2s_config->listen_tls, 5223, listen_on_accept, &kind_tls, "direct") < 0)
            return -1;
    }
    if (*c2s_config->listen_ws &&
        listen_set_open(&listeners, base, c2s_config->listen_ws, 5280, listen_on_accept, &kind_ws, "websocket") < 0)
        return -1;
    if (*c2s_config->listen_wss) {
        if (!tls_ctx) {
            log_error("event=start reason=websocket-tls-without-certificate");
            return -1;
        }
        if (listen_set_open(&listeners, base, c2s_config->listen_wss, 5281, listen_on_accept, &kind_wss,
                            "websocket-tls") < 0)
            return -1;
    }
    return 0;
}

void listen_stop(void)
{
    listen_set_close(&listeners);
}

/* SSL_CTX is reference counted: connections still open keep theirs. */
void listen_free(void)
{
    listen_stop();
    if (tls_ctx)
        SSL_CTX_free(tls_ctx);
    tls_ctx = NULL;
}
