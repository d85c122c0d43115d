/* test_metrics: the registry's text exposition (format 0.0.4): HELP and TYPE
 * lines, label escaping, counters that read 0 before their first event,
 * cumulative histogram buckets with +Inf, _sum and _count, collectors run
 * before each render, the series cap of a family, and a second registration
 * of a name returning the first family. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static char *render(void)
{
    strbuf_t sb;
    strbuf_init(&sb);
    metrics_render(&sb);
    strbuf_putc(&sb, '\0');
    return strbuf_steal(&sb);
}

static void test_counter_and_labels(void **state)
{
    (void)state;
    metrics_family_t *plain = metrics_family("t_events_total", METRICS_COUNTER, "Events.\nTwo lines \\ here.", NULL,
                                             NULL, 0);
    metrics_family_t *by = metrics_family("t_logins_total", METRICS_COUNTER, "Logins.", "mechanism,result", NULL, 0);
    metrics_inc(by, "PLAIN", "ok");
    metrics_inc(by, "PLAIN", "ok");
    metrics_inc(by, "we\"ird\\\n", "failed");
    assert_ptr_equal(metrics_family("t_logins_total", METRICS_COUNTER, "other help", NULL, NULL, 0), by);
    (void)plain;
    char *out = render();
    assert_non_null(strstr(out, "# HELP t_events_total Events.\\nTwo lines \\\\ here.\n"
                                "# TYPE t_events_total counter\n"
                                "t_events_total 0\n"));
    assert_non_null(strstr(out, "# HELP t_logins_total Logins.\n"
                                "# TYPE t_logins_total counter\n"
                                "t_logins_total{mechanism=\"PLAIN\",result=\"ok\"} 2\n"
                                "t_logins_total{mechanism=\"we\\\"ird\\\\\\n\",result=\"failed\"} 1\n"));
    free(out);
    metrics_free();
}

static void test_histogram(void **state)
{
    (void)state;
    static const double b[] = {0.01, 0.1, 1};
    metrics_family_t *h = metrics_family("t_latency_seconds", METRICS_HISTOGRAM, "Latency.", "op", b, 3);
    metrics_series_t *s = metrics_series(h, "get", NULL);
    metrics_observe(s, 0.005);
    metrics_observe(s, 0.05);
    metrics_observe(s, 0.1);
    metrics_observe(s, 7);
    char *out = render();
    assert_non_null(strstr(out, "# TYPE t_latency_seconds histogram\n"
                                "t_latency_seconds_bucket{op=\"get\",le=\"0.01\"} 1\n"
                                "t_latency_seconds_bucket{op=\"get\",le=\"0.1\"} 3\n"
                                "t_latency_seconds_bucket{op=\"get\",le=\"1\"} 3\n"
                                "t_latency_seconds_bucket{op=\"get\",le=\"+Inf\"} 4\n"
                                "t_latency_seconds_sum{op=\"get\"} 7.155\n"
                                "t_latency_seconds_count{op=\"get\"} 4\n"));
    free(out);
    metrics_free();
}

static metrics_family_t *gauge;
static int collected;

static void collect(void)
{
    collected++;
    metrics_reset(gauge);
    metrics_gauge_set(gauge, "open", NULL, 3);
}

static void test_collector_and_gauge(void **state)
{
    (void)state;
    gauge = metrics_family("t_conns", METRICS_GAUGE, "Connections.", "state", NULL, 0);
    metrics_gauge_set(gauge, "closing", NULL, 5);
    metrics_collector(collect);
    char *out = render();
    assert_int_equal(collected, 1);
    assert_non_null(strstr(out, "t_conns{state=\"closing\"} 0\nt_conns{state=\"open\"} 3\n"));
    free(out);
    metrics_free();
}

static void test_series_cap(void **state)
{
    (void)state;
    metrics_family_t *f = metrics_family("t_capped_total", METRICS_COUNTER, "Capped.", "k", NULL, 0);
    char v[16];
    for (int i = 0; i < METRICS_SERIES_MAX; i++) {
        snprintf(v, sizeof v, "v%d", i);
        assert_non_null(metrics_series(f, v, NULL));
    }
    assert_null(metrics_series(f, "one-too-many", NULL));
    metrics_inc(f, "one-too-many", NULL);   /* recorded nowhere, no crash */
    metrics_inc(f, "v0", NULL);             /* existing series still work */
    char *out = render();
    assert_null(strstr(out, "one-too-many"));
    assert_non_null(strstr(out, "t_capped_total{k=\"v0\"} 1\n"));
    free(out);
    metrics_free();
}

static void test_numbers(void **state)
{
    (void)state;
    metrics_family_t *g = metrics_family("t_value", METRICS_GAUGE, "Values.", "k", NULL, 0);
    metrics_gauge_set(g, "big", NULL, 123456789012.0);
    metrics_gauge_set(g, "frac", NULL, 0.25);
    metrics_gauge_set(g, "neg", NULL, -2);
    char *out = render();
    assert_non_null(strstr(out, "t_value{k=\"big\"} 123456789012\n"));
    assert_non_null(strstr(out, "t_value{k=\"frac\"} 0.25\n"));
    assert_non_null(strstr(out, "t_value{k=\"neg\"} -2\n"));
    free(out);
    metrics_free();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_and_labels), cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_collector_and_gauge), cmocka_unit_test(test_series_cap),
        cmocka_unit_test(test_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
