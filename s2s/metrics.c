/* metrics: the s2s's Prometheus metrics. Streams by direction and state are
 * counted from conn.c's list at each scrape, outgoing routes from out.c;
 * TLS handshakes, stanzas and bytes are counted where they happen (conn.c,
 * in.c). */
#include "s2s.h"
#include "metrics.h"
#include <string.h>

static metrics_family_t *m_streams, *m_routes, *m_tls, *m_stanzas, *m_bytes;

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
    m_stanzas = metrics_family("weft_s2s_stanzas_total", METRICS_COUNTER,
                               "Stanzas received from (in) and written to (out) remote servers by kind.",
                               "direction,kind", NULL, 0);
    m_bytes = metrics_family("weft_s2s_bytes_total", METRICS_COUNTER,
                             "XML stream bytes read from and written to remote servers (inside TLS).", "direction",
                             NULL, 0);
    static const char *const dirs[] = {"in", "out"};
    static const char *const kinds[] = {"message", "presence", "iq"};
    for (size_t i = 0; i < 2; i++) {
        metrics_series(m_tls, dirs[i], "ok");
        metrics_series(m_tls, dirs[i], "failed");
        for (size_t k = 0; k < 3; k++)
            metrics_series(m_stanzas, dirs[i], kinds[k]);
        metrics_series(m_bytes, dirs[i], NULL);
    }
    metrics_collector(s2s_metrics_collect);
}

void s2s_metrics_tls(int outbound, int ok)
{
    metrics_inc(m_tls, outbound ? "out" : "in", ok ? "ok" : "failed");
}

void s2s_metrics_stanza(int in, const char *name)
{
    const char *kind = !strcmp(name, "message") ? "message" : !strcmp(name, "presence") ? "presence" : "iq";
    metrics_inc(m_stanzas, in ? "in" : "out", kind);
}

void s2s_metrics_bytes(int in, size_t n)
{
    metrics_add(metrics_series(m_bytes, in ? "in" : "out", NULL), (double)n);
}
