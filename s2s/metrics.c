/* metrics: the s2s's Prometheus metrics. Streams by direction and state are
 * counted from conn.c's list at each scrape, outgoing routes from out.c;
 * TLS handshakes are counted where they end (conn.c). */
#include "s2s.h"
#include "metrics.h"

static metrics_family_t *m_streams, *m_routes, *m_tls;

/* plain: no TLS (yet); tls: handshake done; closing: output draining. */
static const char *s2s_metrics_state(const s2s_conn_t *c)
{
    if (c->closed)
        return "closing";
    return c->tls_done ? "tls" : "plain";
}

static void s2s_metrics_collect(void)
{
    static const char *const states[] = {"plain", "tls", "closing"};
    metrics_reset(m_streams);
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
        metrics_series(m_streams, "in", states[i]);
        metrics_series(m_streams, "out", states[i]);
    }
    for (const s2s_conn_t *c = conn_first(); c; c = c->lnext)
        metrics_add(metrics_series(m_streams, c->outbound ? "out" : "in", s2s_metrics_state(c)), 1);
    metrics_gauge_set(m_routes, NULL, NULL, (double)out_route_count());
}

void s2s_metrics_register(void)
{
    m_streams = metrics_family("weft_s2s_streams", METRICS_GAUGE, "Server-to-server TCP streams by direction and state.",
                               "direction,state", NULL, 0);
    m_routes = metrics_family("weft_s2s_routes", METRICS_GAUGE,
                              "Outgoing routes: (local domain, remote domain) pairs with a queue or a stream.", NULL,
                              NULL, 0);
    m_tls = metrics_family("weft_s2s_tls_handshakes_total", METRICS_COUNTER,
                           "TLS handshakes with remote servers by direction and result.", "direction,result", NULL,
                           0);
    static const char *const dirs[] = {"in", "out"};
    for (size_t i = 0; i < 2; i++) {
        metrics_series(m_tls, dirs[i], "ok");
        metrics_series(m_tls, dirs[i], "failed");
    }
    metrics_collector(s2s_metrics_collect);
}

void s2s_metrics_tls(int outbound, int ok)
{
    metrics_inc(m_tls, outbound ? "out" : "in", ok ? "ok" : "failed");
}
