/* metrics: the registry behind metrics.h. Families live in a list in
 * registration order (the order of the scrape), each with a fixed array of
 * series; lookups are linear, which is cheaper than hashing for the handful
 * of series a family has. Values are doubles, as Prometheus stores them;
 * counters stay exact up to 2^53. */
#include "metrics.h"
#include "log.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct metrics_series {
    const metrics_family_t *fam;          /* for a histogram's bounds */
    char *v[2];
    double value;                         /* counter, gauge; histogram: sum */
    unsigned long long count;             /* histogram observations */
    unsigned long long bucket[METRICS_BUCKETS_MAX];
};

struct metrics_family {
    char *name, *help;
    metrics_type_t type;
    char *label[2];
    int nlabels;
    double bounds[METRICS_BUCKETS_MAX];
    size_t nbuckets;
    metrics_series_t series[METRICS_SERIES_MAX];
    size_t nseries;
    int overflow_logged;
    metrics_family_t *next;
};

typedef struct metrics_coll {
    void (*fn)(void);
    struct metrics_coll *next;
} metrics_coll_t;

static metrics_family_t *families, **families_tail = &families;
static unsigned registry_epoch;       /* bumped by metrics_free */
static metrics_coll_t *collectors, **collectors_tail = &collectors;

metrics_family_t *metrics_family(const char *name, metrics_type_t type, const char *help, const char *labels,
                                 const double *buckets, size_t nbuckets)
{
    for (metrics_family_t *f = families; f; f = f->next) {
        if (!strcmp(f->name, name)) {
            if (f->type != type)
                log_panic("event=metrics-family name=%s reason=type-mismatch", name);
            return f;
        }
    }
    if (nbuckets > METRICS_BUCKETS_MAX)
        log_panic("event=metrics-family name=%s reason=too-many-buckets", name);
    metrics_family_t *f = xcalloc(1, sizeof *f);
    f->name = xstrdup(name);
    f->help = xstrdup(help);
    f->type = type;
    if (labels && *labels) {
        const char *comma = strchr(labels, ',');
        f->label[0] = comma ? xstrndup(labels, (size_t)(comma - labels)) : xstrdup(labels);
        f->nlabels = 1;
        if (comma) {
            f->label[1] = xstrdup(comma + 1);
            f->nlabels = 2;
        }
    }
    for (size_t i = 0; i < nbuckets; i++)
        f->bounds[i] = buckets[i];
    f->nbuckets = nbuckets;
    *families_tail = f;
    families_tail = &f->next;
    return f;
}

static int label_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

metrics_series_t *metrics_series(metrics_family_t *f, const char *v1, const char *v2)
{
    if (f->nlabels < 2)
        v2 = NULL;
    if (f->nlabels < 1)
        v1 = NULL;
    for (size_t i = 0; i < f->nseries; i++)
        if (label_eq(f->series[i].v[0], v1) && label_eq(f->series[i].v[1], v2))
            return &f->series[i];
    if (f->nseries == METRICS_SERIES_MAX) {
        if (!f->overflow_logged)
            log_warn("event=metrics-overflow name=%s max=%d", f->name, METRICS_SERIES_MAX);
        f->overflow_logged = 1;
        return NULL;
    }
    metrics_series_t *s = &f->series[f->nseries++];
    s->fam = f;
    s->v[0] = v1 ? xstrdup(v1) : NULL;
    s->v[1] = v2 ? xstrdup(v2) : NULL;
    return s;
}

void metrics_add(metrics_series_t *s, double v)
{
    if (s)
        s->value += v;
}

void metrics_set(metrics_series_t *s, double v)
{
    if (s)
        s->value = v;
}

void metrics_observe(metrics_series_t *s, double v)
{
    if (!s)
        return;
    s->value += v;
    s->count++;
    for (size_t i = 0; i < s->fam->nbuckets; i++)
        if (v <= s->fam->bounds[i])
            s->bucket[i]++;
}

void metrics_inc(metrics_family_t *f, const char *v1, const char *v2)
{
    metrics_add(metrics_series(f, v1, v2), 1);
}

void metrics_gauge_set(metrics_family_t *f, const char *v1, const char *v2, double v)
{
    metrics_set(metrics_series(f, v1, v2), v);
}

void metrics_reset(metrics_family_t *f)
{
    if (f->type == METRICS_HISTOGRAM)
        return;
    for (size_t i = 0; i < f->nseries; i++)
        f->series[i].value = 0;
}

void metrics_collector(void (*fn)(void))
{
    metrics_coll_t *c = xcalloc(1, sizeof *c);
    c->fn = fn;
    *collectors_tail = c;
    collectors_tail = &c->next;
}

/* Label values may hold any UTF-8; the format escapes \, " and newline. */
static void put_label_value(strbuf_t *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\')
            strbuf_puts(out, "\\\\");
        else if (*v == '"')
            strbuf_puts(out, "\\\"");
        else if (*v == '\n')
            strbuf_puts(out, "\\n");
        else
            strbuf_putc(out, *v);
    }
}

/* Help text escapes only \ and newline. */
static void put_help(strbuf_t *out, const char *h)
{
    for (; *h; h++) {
        if (*h == '\\')
            strbuf_puts(out, "\\\\");
        else if (*h == '\n')
            strbuf_puts(out, "\\n");
        else
            strbuf_putc(out, *h);
    }
}

static void put_number(strbuf_t *out, double v)
{
    if (isnan(v))
        strbuf_puts(out, "NaN");
    else if (isinf(v))
        strbuf_puts(out, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        strbuf_printf(out, "%.0f", v);
    else
        strbuf_printf(out, "%.15g", v);
}

/* name{labels[,le="x"]} value: extra_le is NULL outside histogram buckets. */
static void put_sample(strbuf_t *out, const metrics_family_t *f, const char *suffix, const metrics_series_t *s,
                       const char *extra_le, double v)
{
    strbuf_puts(out, f->name);
    strbuf_puts(out, suffix);
    int n = 0;
    for (int i = 0; i < f->nlabels; i++) {
        strbuf_puts(out, n++ ? "," : "{");
        strbuf_printf(out, "%s=\"", f->label[i]);
        put_label_value(out, s->v[i] ? s->v[i] : "");
        strbuf_putc(out, '"');
    }
    if (extra_le) {
        strbuf_puts(out, n++ ? "," : "{");
        strbuf_printf(out, "le=\"%s\"", extra_le);
    }
    if (n)
        strbuf_putc(out, '}');
    strbuf_putc(out, ' ');
    put_number(out, v);
    strbuf_putc(out, '\n');
}

static const char *type_word(metrics_type_t t)
{
    switch (t) {
    case METRICS_COUNTER: return "counter";
    case METRICS_GAUGE: return "gauge";
    case METRICS_HISTOGRAM: return "histogram";
    }
    return "untyped";
}

void metrics_render(strbuf_t *out)
{
    for (metrics_coll_t *c = collectors; c; c = c->next)
        c->fn();
    for (metrics_family_t *f = families; f; f = f->next) {
        strbuf_printf(out, "# HELP %s ", f->name);
        put_help(out, f->help);
        strbuf_printf(out, "\n# TYPE %s %s\n", f->name, type_word(f->type));
        /* A family without labels always shows its one series, so a counter
         * reads 0 before its first event rather than being absent. */
        if (f->nlabels == 0 && f->nseries == 0)
            metrics_series(f, NULL, NULL);
        for (size_t i = 0; i < f->nseries; i++) {
            const metrics_series_t *s = &f->series[i];
            if (f->type != METRICS_HISTOGRAM) {
                put_sample(out, f, "", s, NULL, s->value);
                continue;
            }
            char le[32];
            for (size_t b = 0; b < f->nbuckets; b++) {
                snprintf(le, sizeof le, "%g", f->bounds[b]);
                put_sample(out, f, "_bucket", s, le, (double)s->bucket[b]);
            }
            put_sample(out, f, "_bucket", s, "+Inf", (double)s->count);
            put_sample(out, f, "_sum", s, NULL, s->value);
            put_sample(out, f, "_count", s, NULL, (double)s->count);
        }
    }
}

unsigned metrics_epoch(void)
{
    return registry_epoch;
}

void metrics_free(void)
{
    registry_epoch++;
    while (families) {
        metrics_family_t *f = families;
        families = f->next;
        for (size_t i = 0; i < f->nseries; i++) {
            free(f->series[i].v[0]);
            free(f->series[i].v[1]);
        }
        free(f->label[0]);
        free(f->label[1]);
        free(f->name);
        free(f->help);
        free(f);
    }
    families_tail = &families;
    while (collectors) {
        metrics_coll_t *c = collectors;
        collectors = c->next;
        free(c);
    }
    collectors_tail = &collectors;
}
