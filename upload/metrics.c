/* metrics: weft-upload's Prometheus metrics (served at metrics.listen by the
 * skeleton). Counters for slot answers, HTTP responses by status and bytes
 * in and out; gauges for open connections, files and slots and the bytes
 * stored, computed at each scrape from http_conn.c's and store.c's own
 * state. Labels come from fixed sets (results, status codes), never a user. */
#include "http_conn.h"
#include "metrics.h"
#include "store.h"
#include "upload.h"
#include <stdio.h>

static metrics_family_t *m_slots, *m_http, *m_bytes, *m_conns, *m_files, *m_stored;

void upload_metrics_slot(const char *result)
{
    metrics_inc(m_slots, result, NULL);
}

void upload_metrics_http(int status)
{
    char code[8];
    snprintf(code, sizeof code, "%d", status);
    metrics_inc(m_http, code, NULL);
}

void upload_metrics_bytes(const char *direction, long long n)
{
    metrics_add(metrics_series(m_bytes, direction, NULL), (double)n);
}

static void upload_metrics_collect(void)
{
    size_t complete = 0, slots = 0;
    long long bytes = 0;
    store_totals(&complete, &slots, &bytes);
    metrics_gauge_set(m_files, "complete", NULL, (double)complete);
    metrics_gauge_set(m_files, "slot", NULL, (double)slots);
    metrics_gauge_set(m_stored, NULL, NULL, (double)bytes);
    metrics_gauge_set(m_conns, NULL, NULL, (double)http_conn_count());
}

void upload_metrics_register(void)
{
    m_slots = metrics_family("weft_upload_slot_requests_total", METRICS_COUNTER,
                             "Slot requests by answer: given, not-allowed, too-large, quota, bad-request, error.",
                             "result", NULL, 0);
    m_http = metrics_family("weft_upload_http_responses_total", METRICS_COUNTER,
                            "HTTP responses by status code (503s of refused connections included).", "code", NULL,
                            0);
    m_bytes = metrics_family("weft_upload_bytes_total", METRICS_COUNTER,
                             "File bytes stored by PUTs (in) and sent by GETs (out).", "direction", NULL, 0);
    m_conns = metrics_family("weft_upload_http_connections", METRICS_GAUGE, "Open HTTP connections.", NULL, NULL,
                             0);
    m_files = metrics_family("weft_upload_files", METRICS_GAUGE,
                             "Stored files (complete) and slots waiting for their PUT (slot).", "state", NULL, 0);
    m_stored = metrics_family("weft_upload_stored_bytes", METRICS_GAUGE, "Bytes of the stored files.", NULL, NULL,
                              0);
    metrics_series(m_bytes, "in", NULL);
    metrics_series(m_bytes, "out", NULL);
    metrics_collector(upload_metrics_collect);
}
