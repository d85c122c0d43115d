/* metrics: the sm's Prometheus metrics. Sessions by state are counted at each
 * scrape from admin.c's index of live sessions (the one `weftctl sessions`
 * reads); the storage latency histogram (weft_storage_request_seconds) is
 * filled by common/storage.c for every request of every driver. */
#include "sm.h"
#include "metrics.h"

static metrics_family_t *m_sessions, *m_resync;

static void sm_metrics_count(const sm_sess_t *s, void *arg)
{
    (void)arg;
    metrics_add(metrics_series(m_sessions, s->available ? "available" : "unavailable", NULL), 1);
}

static void sm_metrics_collect(void)
{
    metrics_reset(m_sessions);
    metrics_series(m_sessions, "available", NULL);
    metrics_series(m_sessions, "unavailable", NULL);
    admin_foreach_session(sm_metrics_count, NULL);
    metrics_gauge_set(m_resync, NULL, NULL, (double)sm_resync_waiting());
}

void sm_metrics_register(void)
{
    m_sessions = metrics_family("weft_sm_sessions", METRICS_GAUGE,
                                "Live sessions by presence state (unavailable: no initial presence yet).", "state",
                                NULL, 0);
    m_resync = metrics_family("weft_sm_resync_waiting", METRICS_GAUGE,
                              "Stanzas waiting in the resync window for sessions c2s has not re-announced yet.",
                              NULL, NULL, 0);
    storage_metrics_register();
    metrics_collector(sm_metrics_collect);
}
