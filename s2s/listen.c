/* listen: the server-to-server listeners (STARTTLS and XEP-0368 direct TLS)
 * and the two TLS contexts: the server one asks peers for a certificate
 * without requiring it (SASL EXTERNAL uses it when it verifies), the client
 * one presents our certificate to the servers we connect to and lets the
 * handshake finish whatever theirs is (dialback authenticates then). */
#include "s2s.h"
#include "listen_set.h"
#include "log.h"
#include "net.h"
#include "tls.h"
#include <stdlib.h>
#include <string.h>

/* Every configured address must bind, v6 included (no default names one). */
static listen_set_t listeners;
static SSL_CTX *server_ctx, *client_ctx;
static int kind_starttls = 0, kind_tls = 1;

SSL_CTX *listen_server_ctx(void)
{
    return server_ctx;
}

SSL_CTX *listen_client_ctx(void)
{
    return client_ctx;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int socklen, void *ctx)
{
    (void)l;
    net_tune_accepted(fd, sa);
    in_accept(fd, sa, socklen, *(int *)ctx);
}

static char *first_domain(void)
{
    const char *p = s2s_config->domains;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == ',')
        p++;
    size_t n = strcspn(p, " \t\n,");
    char *d = xmalloc(n + 1);
    memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

/* Builds both TLS contexts from the configured files into *srv and *cli
 * (NULL, NULL when no certificate is configured). 0 / -1 (logged). */
static int tls_build(SSL_CTX **srv, SSL_CTX **cli)
{
    const s2s_cfg_t *cfg = s2s_config;
    char err[256];
    *srv = *cli = NULL;
    if (!*cfg->tls_cert) {
        if (cfg->tls_required) {
            log_error("event=tls reason=no-certificate tls.required=true");
            return -1;
        }
        return 0;
    }
    char *d = first_domain();
    int rc = tls_cert_prepare(cfg->tls_cert, cfg->tls_key, cfg->tls_selfsigned, d, err, sizeof err);
    free(d);
    if (rc < 0) {
        log_error("event=tls reason=certificate certificate=%s detail=\"%s\"", cfg->tls_cert, err);
        return -1;
    }
    const char *ca = *cfg->tls_ca ? cfg->tls_ca : NULL;
    *srv = tls_server_ctx_new(cfg->tls_cert, cfg->tls_key, ca, TLS_CLIENT_CERT_OPTIONAL, err, sizeof err);
    if (!*srv) {
        log_error("event=tls reason=certificate certificate=%s detail=\"%s\"", cfg->tls_cert, err);
        return -1;
    }
    tls_server_set_tickets(*srv, cfg->tls_tickets);
    *cli = tls_client_ctx_new(ca, 0, err, sizeof err);
    if (!*cli || SSL_CTX_use_certificate_chain_file(*cli, cfg->tls_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(*cli, cfg->tls_key, SSL_FILETYPE_PEM) != 1) {
        tls_error_string(err, sizeof err);
        log_error("event=tls reason=client-certificate certificate=%s detail=\"%s\"", cfg->tls_cert, err);
        SSL_CTX_free(*srv);
        if (*cli)
            SSL_CTX_free(*cli);
        *srv = *cli = NULL;
        return -1;
    }
    return 0;
}

static int tls_setup(void)
{
    return tls_build(&server_ctx, &client_ctx);
}

/* SIGHUP: the certificate files are read again (a renewed certificate); new
 * streams use it, established ones keep theirs (SSL_CTX is reference
 * counted). On any error the running contexts stay. */
void listen_reload_tls(void)
{
    SSL_CTX *srv, *cli;
    if (tls_build(&srv, &cli) < 0 || !srv) {
        log_error("event=tls-reload result=failed note=\"keeping the running certificate\"");
        return;
    }
    if (server_ctx)
        SSL_CTX_free(server_ctx);
    if (client_ctx)
        SSL_CTX_free(client_ctx);
    server_ctx = srv;
    client_ctx = cli;
    log_notice("event=tls-reloaded certificate=%s", s2s_config->tls_cert);
}

int listen_start(struct event_base *base)
{
    if (tls_setup() < 0)
        return -1;
    if (listen_set_open(&listeners, base, s2s_config->listen_starttls, 5269, on_accept, &kind_starttls, "starttls") < 0)
        return -1;
    if (*s2s_config->listen_tls) {
        if (!server_ctx) {
            log_error("event=start reason=direct-tls-without-certificate");
            return -1;
        }
        if (listen_set_open(&listeners, base, s2s_config->listen_tls, 5270, on_accept, &kind_tls, "direct") < 0)
            return -1;
    }
    return 0;
}

void listen_stop(void)
{
    listen_set_close(&listeners);
}

void listen_free(void)
{
    listen_stop();
    if (server_ctx)
        SSL_CTX_free(server_ctx);
    if (client_ctx)
        SSL_CTX_free(client_ctx);
    server_ctx = client_ctx = NULL;
}
