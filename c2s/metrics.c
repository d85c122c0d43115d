/* metrics: the c2s's Prometheus metrics. Connections by state are counted
 * from the client list at each scrape; events (logins, stanzas, bytes, TLS
 * handshakes) are counted where they happen through the calls below.
 * Label values come from fixed sets: a mechanism the client names that we
 * do not offer is "other", so a client cannot create series. */
#include "c2s.h"
#include "metrics.h"
#include <string.h>

static metrics_family_t *m_conns, *m_logins, *m_failures, *m_stanzas, *m_bytes, *m_tls, *m_copies;

static const char *c2s_metrics_state(const client_t *c)
{
    if (c->detached)
        return "detached";
    switch (c->state) {
    case CL_HEADER: return "header";
    case CL_OPEN: return "negotiating";
    case CL_AUTH_WAIT: return "authenticating";
    case CL_AUTHED: return "authenticated";
    case CL_BINDING: return "binding";
    case CL_SESSION: return "session";
    case CL_CLOSED: return "closing";
    }
    return "closing";
}

static void c2s_metrics_collect(void)
{
    static const char *const states[] = {"header", "negotiating", "authenticating", "authenticated",
                                         "binding", "session", "detached", "closing"};
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
        metrics_gauge_set(m_conns, states[i], NULL, 0);
    for (const client_t *c = client_first(); c; c = c->lnext)
        metrics_add(metrics_series(m_conns, c2s_metrics_state(c), NULL), 1);
}

void c2s_metrics_register(void)
{
    m_conns = metrics_family("weft_c2s_connections", METRICS_GAUGE,
                             "Client connections by state (detached: XEP-0198 sessions waiting for a resume).", "state",
                             NULL, 0);
    m_logins = metrics_family("weft_c2s_logins_total", METRICS_COUNTER, "Successful authentications by mechanism.",
                              "mechanism", NULL, 0);
    m_failures = metrics_family("weft_c2s_login_failures_total", METRICS_COUNTER,
                                "Failed authentications by mechanism (not counting aborts and server-side errors).",
                                "mechanism", NULL, 0);
    m_stanzas = metrics_family("weft_c2s_stanzas_total", METRICS_COUNTER,
                               "Stanzas from authenticated clients (in) and routed to clients (out) by kind.",
                               "direction,kind", NULL, 0);
    m_bytes = metrics_family("weft_c2s_bytes_total", METRICS_COUNTER,
                             "XML stream bytes read from and written to clients (inside TLS).", "direction", NULL, 0);
    m_tls = metrics_family("weft_c2s_tls_handshakes_total", METRICS_COUNTER, "TLS handshakes with clients by result.",
                           "result", NULL, 0);
    m_copies = metrics_family("weft_c2s_router_deliveries_total", METRICS_COUNTER,
                              "Stanzas the sm handed over for one session, by the element that carried them: a "
                              "route of its own, or a deliver element with the same stanza for several sessions.",
                              "element", NULL, 0);
    metrics_series(m_copies, "route", NULL);
    metrics_series(m_copies, "deliver", NULL);
    static const char *const kinds[] = {"message", "presence", "iq"};
    for (size_t i = 0; i < 3; i++) {
        metrics_series(m_stanzas, "in", kinds[i]);
        metrics_series(m_stanzas, "out", kinds[i]);
    }
    metrics_series(m_bytes, "in", NULL);
    metrics_series(m_bytes, "out", NULL);
    metrics_series(m_tls, "ok", NULL);
    metrics_series(m_tls, "failed", NULL);
    metrics_collector(c2s_metrics_collect);
}

static const char *c2s_metrics_mech(const char *mech)
{
    static const char *const known[] = {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256",
                                        "SCRAM-SHA-1", "PLAIN", "iq-auth"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(mech, known[i]))
            return known[i];
    return "other";
}

void c2s_metrics_login(const char *mech, int ok)
{
    metrics_inc(ok ? m_logins : m_failures, c2s_metrics_mech(mech), NULL);
}

void c2s_metrics_stanzas(int in, const char *name, size_t n)
{
    const char *kind = !strcmp(name, "message") ? "message" : !strcmp(name, "presence") ? "presence" : "iq";
    metrics_add(metrics_series(m_stanzas, in ? "in" : "out", kind), (double)n);
}

void c2s_metrics_stanza(int in, const char *name)
{
    c2s_metrics_stanzas(in, name, 1);
}

void c2s_metrics_delivery(int merged, size_t n)
{
    metrics_add(metrics_series(m_copies, merged ? "deliver" : "route", NULL), (double)n);
}

void c2s_metrics_bytes_in(size_t n)
{
    metrics_add(metrics_series(m_bytes, "in", NULL), (double)n);
}

void c2s_metrics_bytes_out(size_t n)
{
    metrics_add(metrics_series(m_bytes, "out", NULL), (double)n);
}

void c2s_metrics_tls(int ok)
{
    metrics_inc(m_tls, ok ? "ok" : "failed", NULL);
}
