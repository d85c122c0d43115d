/* metrics: a process's Prometheus registry (counters, gauges, histograms with
 * fixed buckets) and its rendering in the text exposition format 0.0.4.
 *
 * A family has a name, a type, a help line and at most two label names; its
 * series are created on first use with label values the caller chooses from a
 * bounded set (states, mechanisms, directions: never a user or a peer). A
 * family holds at most METRICS_SERIES_MAX series; values beyond that are
 * counted in no series and logged once, so a mistake cannot grow memory.
 *
 * Gauges that mirror live state (clients by state, queue depths) are set by
 * collectors, called just before each scrape, instead of being tracked at
 * every change: the process's own structures stay the one source of truth.
 * Everything is single-threaded, on the process's event loop. */
#ifndef WEFT_METRICS_H
#define WEFT_METRICS_H
#include "strbuf.h"
#include <stddef.h>

#define METRICS_SERIES_MAX 64
#define METRICS_BUCKETS_MAX 16

typedef enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM } metrics_type_t;

typedef struct metrics_family metrics_family_t;
typedef struct metrics_series metrics_series_t;

/* Registers a family, or returns the one of that name (same type) already
 * registered. labels: NULL, "a" or "a,b". buckets: the upper bounds of a
 * histogram, increasing, +Inf implied (NULL/0 otherwise). Never NULL; a
 * name registered twice with another type is a panic. */
metrics_family_t *metrics_family(const char *name, metrics_type_t type, const char *help, const char *labels,
                                 const double *buckets, size_t nbuckets);
/* The series for these label values (NULL for unused labels), created at 0
 * on first use; NULL when the family is full (then nothing is recorded). */
metrics_series_t *metrics_series(metrics_family_t *f, const char *v1, const char *v2);

void metrics_add(metrics_series_t *s, double v);     /* counter or gauge */
void metrics_set(metrics_series_t *s, double v);     /* gauge */
void metrics_observe(metrics_series_t *s, double v); /* histogram */

/* Shorthands through metrics_series. */
void metrics_inc(metrics_family_t *f, const char *v1, const char *v2);
void metrics_gauge_set(metrics_family_t *f, const char *v1, const char *v2, double v);
/* Sets every series of f (not a histogram) to 0: a collector that rebuilds a
 * family from live state starts with it, so a state that emptied since the
 * last scrape reads 0, not its old value. */
void metrics_reset(metrics_family_t *f);

/* fn runs before every render, in registration order. */
void metrics_collector(void (*fn)(void));

/* The whole registry in the text format, appended to out. */
void metrics_render(strbuf_t *out);

/* Frees the registry (at exit; valgrind-clean). */
void metrics_free(void);
/* Changes whenever metrics_free has run: a pointer into the registry kept
 * by a hot path (storage's per-request series) is good while it is the same. */
unsigned metrics_epoch(void);

#endif
