/* metrics: the router's Prometheus metrics, read at each scrape from the same
 * numbers `weftctl stats` prints (control.c): the link list with its
 * per-link counters and unacknowledged queue, and the names' hold queues.
 * Links are summed per component name, which the config bounds; a link that
 * has not authenticated yet counts under component="-". Per-link counters
 * start again at 0 when a component reconnects: Prometheus's rate() and
 * increase() read such a drop as a counter reset. */
#include "router.h"
#include "metrics.h"

static metrics_family_t *m_links, *m_queue, *m_stanzas, *m_bytes, *m_held, *m_fan;

static const char *router_metrics_state(link_state_t st)
{
    switch (st) {
    case LINK_HEADER: return "header";
    case LINK_AUTH: return "auth";
    case LINK_SESSION: return "session";
    case LINK_READY: return "routing";
    case LINK_CLOSING: return "closing";
    }
    return "closing";
}

static void router_metrics_collect(void)
{
    static const char *const states[] = {"header", "auth", "session", "routing", "closing"};
    metrics_reset(m_links);
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
        metrics_series(m_links, states[i], NULL);
    metrics_reset(m_queue);
    metrics_reset(m_stanzas);
    metrics_reset(m_bytes);
    metrics_reset(m_fan);
    for (const link_t *l = link_list(); l; l = l->next) {
        const char *comp = l->acl ? l->acl->name : "-";
        metrics_add(metrics_series(m_links, router_metrics_state(l->state), NULL), 1);
        metrics_add(metrics_series(m_queue, comp, NULL), (double)l->fifo_len);
        metrics_add(metrics_series(m_stanzas, comp, "in"), (double)l->c.stanzas_in);
        metrics_add(metrics_series(m_stanzas, comp, "out"), (double)l->c.stanzas_out);
        metrics_add(metrics_series(m_bytes, comp, "in"), (double)l->c.bytes_in);
        metrics_add(metrics_series(m_bytes, comp, "out"), (double)l->c.bytes_out);
        metrics_add(metrics_series(m_fan, comp, NULL), (double)l->c.fan_elements);
    }
    metrics_gauge_set(m_held, NULL, NULL, (double)names_held_total());
}

void router_metrics_register(void)
{
    m_links = metrics_family("weft_router_links", METRICS_GAUGE, "Component links by state.", "state", NULL, 0);
    m_queue = metrics_family("weft_router_link_queue_depth", METRICS_GAUGE,
                             "Stanzas sent to a component and not yet acknowledged, per component.", "component",
                             NULL, 0);
    m_stanzas = metrics_family("weft_router_link_stanzas_total", METRICS_COUNTER,
                               "Stanzas received from (in) and sent to (out) components over their current links.",
                               "component,direction", NULL, 0);
    m_bytes = metrics_family("weft_router_link_bytes_total", METRICS_COUNTER,
                             "Bytes received from (in) and sent to (out) components over their current links.",
                             "component,direction", NULL, 0);
    m_fan = metrics_family("weft_router_link_fan_elements_total", METRICS_COUNTER,
                           "Grouped <w:fan/> elements sent to a component (each carries several deliveries).",
                           "component", NULL, 0);
    m_held = metrics_family("weft_router_held_stanzas", METRICS_GAUGE,
                            "Stanzas held for names whose component is not bound (hold.seconds, hold.bytes).", NULL,
                            NULL, 0);
    metrics_collector(router_metrics_collect);
}
