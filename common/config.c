/* config: the table-driven XML configuration loader (see config.h).
 *
 * The table is the single source of truth for an option: name, type, default,
 * bounds, reloadability and help. The same table drives loading, the dump of
 * non-default values and the markdown reference, so an option cannot exist
 * without being documented.
 *
 * Invariants: defaults are applied (and bounds-checked, a bad default being a
 * bug in the table) before the file is read; every element of the file maps to
 * exactly one option or to a container of options, else loading fails naming
 * file and line; a value option appears at most once; on failure the target
 * holds no string allocations (cfg_free has run) and cfg_free stays safe to
 * call again. Loading overwrites string fields without freeing them: pass a
 * zeroed target, or one cfg_free has emptied. CFG_SECTION callbacks receive the
 * whole target (their option's offset is unused) and own whatever they
 * allocate in it. */
#include "config.h"
#include "xml_stream.h"
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A config file larger than this is certainly a mistake (a log, a binary). */
#define CFG_MAX_FILE_BYTES (16u * 1024 * 1024)

int cfg_errorf(cfg_error_t *err, const char *file, unsigned line, const char *fmt, ...)
{
    if (!err)
        return -1;
    size_t n;
    if (line)
        n = (size_t)snprintf(err->msg, sizeof err->msg, "%s:%u: ", file ? file : "?", line);
    else
        n = (size_t)snprintf(err->msg, sizeof err->msg, "%s: ", file ? file : "?");
    if (n < sizeof err->msg) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg + n, sizeof err->msg - n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- value parsers ---- */

int cfg_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = { "true", "yes", "on", "1" };
    static const char *const no[] = { "false", "no", "off", "0" };
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* Plain decimal digits only: strtoull alone would accept "-1" (wrapping),
 * leading blanks and hex. */
int cfg_parse_size(const char *s, size_t *out)
{
    if (!isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE)
        return -1;
    unsigned long long mult = 1;
    if (*end) {
        switch (*end) {
        case 'K': case 'k': mult = 1024ull; break;
        case 'M': case 'm': mult = 1024ull * 1024; break;
        case 'G': case 'g': mult = 1024ull * 1024 * 1024; break;
        default: return -1;
        }
        if (end[1] != '\0')
            return -1;
    }
    if (v > SIZE_MAX / mult)
        return -1;
    *out = (size_t)(v * mult);
    return 0;
}

/* Non-negative decimal number with optional unit; no unit means seconds. */
int cfg_parse_seconds(const char *s, double *out)
{
    /* Digits with at most one '.', then the unit: strtod alone would also take
     * exponents, hex floats, "inf" and "nan". */
    const char *p = s;
    int digits = 0, dots = 0;
    for (; isdigit((unsigned char)*p) || *p == '.'; p++) {
        if (*p == '.')
            dots++;
        else
            digits++;
    }
    if (!digits || dots > 1)
        return -1;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (end != p || errno == ERANGE || !isfinite(v))
        return -1;
    double mult;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mult = 1;
    else if (strcmp(end, "ms") == 0)
        mult = 0.001;
    else if (strcmp(end, "m") == 0)
        mult = 60;
    else if (strcmp(end, "h") == 0)
        mult = 3600;
    else
        return -1;
    *out = v * mult;
    return 0;
}

static int cfg_parse_long(const char *s, long *out)
{
    const char *p = s + (s[0] == '-' || s[0] == '+');
    if (!isdigit((unsigned char)*p))
        return -1;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno == ERANGE || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* ---- applying one value ---- */

static int cfg_has_bounds(const cfg_option_t *o)
{
    return !(o->min == 0 && o->max == 0);
}

static const char *cfg_type_name(cfg_type_t t)
{
    switch (t) {
    case CFG_STRING: return "string";
    case CFG_INT: return "integer";
    case CFG_BOOL: return "boolean";
    case CFG_SIZE: return "size";
    case CFG_SECONDS: return "seconds";
    case CFG_SECTION: return "section";
    }
    return "?";
}

static const char *cfg_type_hint(cfg_type_t t)
{
    switch (t) {
    case CFG_INT: return "an integer";
    case CFG_BOOL: return "true/false, yes/no, on/off or 1/0";
    case CFG_SIZE: return "a size in bytes with optional K, M or G suffix";
    case CFG_SECONDS: return "a duration with optional ms, s, m or h suffix";
    default: return "a value";
    }
}

/* Checks num against the option's bounds; text is the value as written. */
static int cfg_check_bounds(const cfg_option_t *o, double num, const char *text,
                            const char *file, unsigned line, cfg_error_t *err)
{
    if (!cfg_has_bounds(o))
        return 0;
    if (num < o->min)
        return cfg_errorf(err, file, line, "%s: %s is below the minimum %.15g", o->name, text,
                          o->min);
    if (num > o->max)
        return cfg_errorf(err, file, line, "%s: %s is above the maximum %.15g", o->name, text,
                          o->max);
    return 0;
}

/* Parses text (already trimmed) and stores it into target. Replaces (and frees)
 * a previous string value. */
static int cfg_set(const cfg_option_t *o, void *target, const char *text, const char *file,
                   unsigned line, cfg_error_t *err)
{
    void *field = (char *)target + o->offset;
    if (o->type != CFG_STRING && text[0] == '\0')
        return cfg_errorf(err, file, line, "%s: empty value, expected %s", o->name,
                          cfg_type_hint(o->type));
    switch (o->type) {
    case CFG_STRING: {
        char **sp = field;
        free(*sp);
        *sp = xstrdup(text);
        return 0;
    }
    case CFG_INT: {
        long v;
        if (cfg_parse_long(text, &v) < 0)
            break;
        if (cfg_check_bounds(o, (double)v, text, file, line, err) < 0)
            return -1;
        *(long *)field = v;
        return 0;
    }
    case CFG_BOOL: {
        int v;
        if (cfg_parse_bool(text, &v) < 0)
            break;
        *(int *)field = v;
        return 0;
    }
    case CFG_SIZE: {
        size_t v;
        if (cfg_parse_size(text, &v) < 0)
            break;
        if (cfg_check_bounds(o, (double)v, text, file, line, err) < 0)
            return -1;
        *(size_t *)field = v;
        return 0;
    }
    case CFG_SECONDS: {
        double v;
        if (cfg_parse_seconds(text, &v) < 0)
            break;
        if (cfg_check_bounds(o, v, text, file, line, err) < 0)
            return -1;
        *(double *)field = v;
        return 0;
    }
    case CFG_SECTION:
        return 0;
    }
    return cfg_errorf(err, file, line, "%s: invalid value '%s', expected %s", o->name, text,
                      cfg_type_hint(o->type));
}

static int cfg_apply_defaults(const cfg_option_t *table, void *target, cfg_error_t *err)
{
    for (const cfg_option_t *o = table; o->name; o++) {
        if (o->type == CFG_SECTION)
            continue;
        if (o->type == CFG_STRING) {
            char **sp = (char **)((char *)target + o->offset);
            *sp = o->def ? xstrdup(o->def) : NULL;
            continue;
        }
        if (!o->def) {
            /* No default for a number: zero, as in a zeroed struct. */
            memset((char *)target + o->offset, 0,
                   o->type == CFG_INT ? sizeof(long) :
                   o->type == CFG_BOOL ? sizeof(int) :
                   o->type == CFG_SIZE ? sizeof(size_t) : sizeof(double));
            continue;
        }
        if (cfg_set(o, target, o->def, "(built-in default)", 0, err) < 0)
            return -1;
    }
    return 0;
}

/* ---- walking the document ---- */

typedef struct cfg_walk {
    const cfg_option_t *table;
    void *target;
    const char *file;
    unsigned *seen;      /* per option: line of first occurrence, 0 = not yet */
    cfg_error_t *err;
} cfg_walk_t;

static int cfg_is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    }
    return 1;
}

/* Trims XML whitespace in place; returns the start. */
static char *cfg_trim(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        n--;
    s[n] = '\0';
    return s;
}

/* 1 if some option's name starts with "path." — path is then a container. */
static int cfg_is_container(const cfg_option_t *table, const char *path)
{
    size_t n = strlen(path);
    for (const cfg_option_t *o = table; o->name; o++) {
        if (strncmp(o->name, path, n) == 0 && o->name[n] == '.')
            return 1;
    }
    return 0;
}

static int cfg_value_option(cfg_walk_t *w, const cfg_option_t *o, const xml_node_t *el)
{
    size_t idx = (size_t)(o - w->table);
    if (w->seen[idx])
        return cfg_errorf(w->err, w->file, el->line,
                          "%s: given twice (first at line %u); it may appear only once",
                          o->name, w->seen[idx]);
    w->seen[idx] = el->line ? el->line : 1;
    if (el->nattrs)
        return cfg_errorf(w->err, w->file, el->line, "%s: unexpected attribute '%s'", o->name,
                          el->attrs[0].name);
    for (const xml_node_t *c = el->first_child; c; c = c->next) {
        if (c->name)
            return cfg_errorf(w->err, w->file, c->line ? c->line : el->line,
                              "%s: takes a value, not a child element <%s>", o->name, c->name);
    }
    char *raw = xml_text(el);
    int rc = cfg_set(o, w->target, cfg_trim(raw), w->file, el->line, w->err);
    free(raw);
    return rc;
}

/* Walks the children of el, whose dotted path is prefix ("" for the root). */
static int cfg_walk_children(cfg_walk_t *w, const xml_node_t *el, const char *prefix)
{
    for (const xml_node_t *c = el->first_child; c; c = c->next) {
        if (!c->name) {
            if (!cfg_is_blank(c->text, c->text_len))
                return cfg_errorf(w->err, w->file, c->line ? c->line : el->line,
                                  "unexpected text inside <%s>", el->name);
            continue;
        }
        strbuf_t path;
        strbuf_init(&path);
        if (*prefix)
            strbuf_printf(&path, "%s.", prefix);
        strbuf_puts(&path, c->name);

        const cfg_option_t *match = NULL;
        for (const cfg_option_t *o = w->table; o->name; o++) {
            if (strcmp(o->name, path.data) == 0) {
                match = o;
                break;
            }
        }
        int rc;
        if (match && match->type == CFG_SECTION) {
            rc = match->parse ? match->parse(w->target, c, w->file, w->err)
                              : cfg_errorf(w->err, w->file, c->line,
                                           "%s: section has no parser", match->name);
        } else if (match) {
            rc = cfg_value_option(w, match, c);
        } else if (cfg_is_container(w->table, path.data)) {
            rc = c->nattrs ? cfg_errorf(w->err, w->file, c->line,
                                        "%s: unexpected attribute '%s'", path.data,
                                        c->attrs[0].name)
                           : cfg_walk_children(w, c, path.data);
        } else {
            rc = cfg_errorf(w->err, w->file, c->line, "unknown option '%s'", path.data);
        }
        strbuf_free(&path);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* The document in data, parsed as every config file is (comments allowed);
 * NULL with err naming the line. */
static xml_node_t *cfg_parse_text(const char *file, const char *data, size_t len, cfg_error_t *err)
{
    xml_limits_t limits;
    xml_limits_default(&limits);
    limits.allow_comments = 1; /* operators annotate their config files */
    limits.max_stanza_bytes = 4u << 20;
    char xerr[256] = "";
    unsigned xline = 0;
    xml_node_t *root = xml_parse_document(data, len, &limits, xerr, sizeof xerr, &xline);
    if (!root) {
        /* The parser's text may repeat the line ("line 3 column 12: ..."); the
         * prefix already says it. */
        const char *what = xerr;
        unsigned l = 0;
        int skip = 0;
        if (sscanf(xerr, "line %u %n", &l, &skip) == 1 && skip > 0 && l == xline)
            what = xerr + skip;
        cfg_errorf(err, file, xline, "%s", *what ? what : "not a valid XML document");
    }
    return root;
}

/* The whole file into sb (at most CFG_MAX_FILE_BYTES); 0, or -1 with err. */
static int cfg_read_file(const char *file, strbuf_t *sb, cfg_error_t *err)
{
    FILE *fp = fopen(file, "rb");
    if (!fp)
        return cfg_errorf(err, file, 0, "cannot open: %s", strerror(errno));
    char buf[8192];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, fp)) > 0) {
        strbuf_append(sb, buf, got);
        if (sb->len > CFG_MAX_FILE_BYTES)
            break;
    }
    int rd_err = ferror(fp) ? errno : 0;
    fclose(fp);
    if (rd_err)
        return cfg_errorf(err, file, 0, "cannot read: %s", strerror(rd_err));
    if (sb->len > CFG_MAX_FILE_BYTES)
        return cfg_errorf(err, file, 0, "file larger than %u bytes", CFG_MAX_FILE_BYTES);
    return 0;
}

xml_node_t *cfg_read_document(const char *file, cfg_error_t *err)
{
    strbuf_t sb;
    strbuf_init(&sb);
    xml_node_t *root = NULL;
    if (cfg_read_file(file, &sb, err) == 0)
        root = cfg_parse_text(file, sb.data ? sb.data : "", sb.len, err);
    strbuf_free(&sb);
    return root;
}

int cfg_load_buffer(const cfg_option_t *table, void *target, const char *file,
                    const char *data, size_t len, cfg_error_t *err)
{
    if (cfg_apply_defaults(table, target, err) < 0) {
        cfg_free(table, target);
        return -1;
    }
    xml_node_t *root = cfg_parse_text(file, data, len, err);
    if (!root) {
        cfg_free(table, target);
        return -1;
    }

    size_t n = 0;
    while (table[n].name)
        n++;
    cfg_walk_t w = { table, target, file, xcalloc(n + 1, sizeof(unsigned)), err };
    int rc = cfg_walk_children(&w, root, "");
    free(w.seen);
    xml_free(root);
    if (rc < 0)
        cfg_free(table, target);
    return rc;
}

int cfg_load(const cfg_option_t *table, void *target, const char *file, cfg_error_t *err)
{
    strbuf_t sb;
    strbuf_init(&sb);
    int rc;
    if (cfg_read_file(file, &sb, err) < 0) {
        /* Same state as any other failure: numeric defaults, no strings. */
        cfg_error_t ignored;
        if (cfg_apply_defaults(table, target, &ignored) == 0)
            cfg_free(table, target);
        rc = -1;
    } else {
        rc = cfg_load_buffer(table, target, file, sb.data ? sb.data : "", sb.len, err);
    }
    strbuf_free(&sb);
    return rc;
}

void cfg_swap_str(char **a, char **b)
{
    char *t = *a;
    *a = *b;
    *b = t;
}

void cfg_free(const cfg_option_t *table, void *target)
{
    for (const cfg_option_t *o = table; o->name; o++) {
        if (o->type != CFG_STRING)
            continue;
        char **sp = (char **)((char *)target + o->offset);
        free(*sp);
        *sp = NULL;
    }
}

/* ---- dump and docs ---- */

/* Values of options whose name says they are secret are never written out
 * (the dump goes to logs). */
static int cfg_is_secret(const char *name)
{
    return strstr(name, "secret") || strstr(name, "password") || strstr(name, "passphrase");
}

/* Writes a value in a form cfg_parse_* reads back. */
static void cfg_format_size(strbuf_t *out, size_t v)
{
    static const char suffix[] = "GMK";
    for (int i = 0; i < 3; i++) {
        size_t unit = (size_t)1 << (10 * (3 - i));
        if (v && v % unit == 0) {
            strbuf_printf(out, "%zu%c", v / unit, suffix[i]);
            return;
        }
    }
    strbuf_printf(out, "%zu", v);
}

static void cfg_format_seconds(strbuf_t *out, double v)
{
    if (v != 0 && v < 1 && fabs(v * 1000 - round(v * 1000)) < 1e-9)
        strbuf_printf(out, "%.15gms", round(v * 1000));
    else if (v >= 3600 && fmod(v, 3600) == 0)
        strbuf_printf(out, "%.15gh", v / 3600);
    else if (v >= 60 && fmod(v, 60) == 0)
        strbuf_printf(out, "%.15gm", v / 60);
    else
        strbuf_printf(out, "%.15gs", v);
}

static void cfg_format_value(strbuf_t *out, const cfg_option_t *o, const void *target)
{
    const void *field = (const char *)target + o->offset;
    switch (o->type) {
    case CFG_STRING: {
        const char *s = *(char *const *)field;
        strbuf_puts(out, s ? s : "");
        break;
    }
    case CFG_INT: strbuf_printf(out, "%ld", *(const long *)field); break;
    case CFG_BOOL: strbuf_puts(out, *(const int *)field ? "true" : "false"); break;
    case CFG_SIZE: cfg_format_size(out, *(const size_t *)field); break;
    case CFG_SECONDS: cfg_format_seconds(out, *(const double *)field); break;
    case CFG_SECTION: break;
    }
}

/* 1 if the current value equals what the default would give. */
static int cfg_is_default(const cfg_option_t *o, const void *target)
{
    const void *field = (const char *)target + o->offset;
    if (o->type == CFG_STRING) {
        const char *s = *(char *const *)field;
        const char *d = o->def;
        if (!s || !d)
            return (!s || !*s) && (!d || !*d);
        return strcmp(s, d) == 0;
    }
    /* Numbers: parse the default into a scratch field of the same type. */
    union { long l; int b; size_t z; double d; } def;
    memset(&def, 0, sizeof def);
    if (o->def) {
        int rc = 0;
        switch (o->type) {
        case CFG_INT: rc = cfg_parse_long(o->def, &def.l); break;
        case CFG_BOOL: rc = cfg_parse_bool(o->def, &def.b); break;
        case CFG_SIZE: rc = cfg_parse_size(o->def, &def.z); break;
        case CFG_SECONDS: rc = cfg_parse_seconds(o->def, &def.d); break;
        default: break;
        }
        if (rc < 0)
            return 0;
    }
    switch (o->type) {
    case CFG_INT: return *(const long *)field == def.l;
    case CFG_BOOL: return !*(const int *)field == !def.b;
    case CFG_SIZE: return *(const size_t *)field == def.z;
    case CFG_SECONDS: return *(const double *)field == def.d;
    default: return 1;
    }
}

void cfg_dump_changed(const cfg_option_t *table, const void *target, strbuf_t *out)
{
    for (const cfg_option_t *o = table; o->name; o++) {
        if (o->type == CFG_SECTION || cfg_is_default(o, target))
            continue;
        strbuf_printf(out, "%s = ", o->name);
        if (cfg_is_secret(o->name))
            strbuf_puts(out, "(hidden)");
        else
            cfg_format_value(out, o, target);
        strbuf_putc(out, '\n');
    }
}

/* Markdown table cells must not contain '|' or newlines. */
static void cfg_md_cell(strbuf_t *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            strbuf_puts(out, "\\|");
        else if (*s == '\n')
            strbuf_putc(out, ' ');
        else
            strbuf_putc(out, *s);
    }
}

void cfg_doc_markdown(const cfg_option_t *table, strbuf_t *out)
{
    strbuf_puts(out, "| Option | Type | Default | Bounds | Reload | Description |\n");
    strbuf_puts(out, "|---|---|---|---|---|---|\n");
    for (const cfg_option_t *o = table; o->name; o++) {
        strbuf_printf(out, "| `%s` | %s | ", o->name, cfg_type_name(o->type));
        if (o->type == CFG_SECTION) {
            strbuf_puts(out, "(repeatable)");
        } else if (o->def && *o->def) {
            strbuf_putc(out, '`');
            cfg_md_cell(out, o->def);
            strbuf_putc(out, '`');
        } else {
            strbuf_puts(out, "(none)");
        }
        strbuf_puts(out, " | ");
        if (cfg_has_bounds(o) && o->type != CFG_SECTION) {
            if (o->type == CFG_SIZE) {
                cfg_format_size(out, (size_t)o->min);
                strbuf_puts(out, " – ");
                cfg_format_size(out, (size_t)o->max);
            } else if (o->type == CFG_SECONDS) {
                cfg_format_seconds(out, o->min);
                strbuf_puts(out, " – ");
                cfg_format_seconds(out, o->max);
            } else {
                strbuf_printf(out, "%.15g – %.15g", o->min, o->max);
            }
        }
        strbuf_printf(out, " | %s | ", o->reloadable ? "yes" : "no");
        cfg_md_cell(out, o->help ? o->help : "");
        strbuf_puts(out, " |\n");
    }
}
