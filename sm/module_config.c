/* module_config: the sm's option table joined with every compiled module's.
 *
 * The daemon skeleton loads one table into one allocation. Built once at
 * start, the joined table holds the core's options (config.c), then for each
 * module "<name>.enabled" and its own options renamed "<name>.<option>" with
 * offsets moved past sm_cfg_t, into that module's area of the same
 * allocation. So a module's options can be written as today's
 * <offline><max-messages>..</max-messages></offline> or as
 * <module name="offline" enabled="true"><max-messages>..</max-messages></module>
 * (the <module> element is the core's CFG_SECTION option "module", parsed
 * here), --doc and --dump-config cover them, and SIGHUP reloads them with
 * the rest. Layout of the allocation: sm_cfg_t, then per module a 16-byte
 * slot with its enabled flag (int) followed by its config struct. */
#include "module_run.h"
#include "log.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN16(n) (((n) + 15u) & ~(size_t)15u)

static cfg_option_t *table;
static char **names;             /* the option names built here, freed at exit */
static size_t nnames;

static const char *name_add(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *n = xmalloc(la + lb + 2);
    memcpy(n, a, la);
    n[la] = '.';
    memcpy(n + la + 1, b, lb + 1);
    names = xrealloc(names, (nnames + 1) * sizeof *names);
    names[nnames++] = n;
    return n;
}

const cfg_option_t *sm_config_table(size_t *config_size)
{
    size_t ncore = 0, n = 0;
    while (sm_options[ncore].name)
        ncore++;
    n = ncore;
    for (size_t i = 0; i < sm_module_count; i++) {
        n++;
        for (const cfg_option_t *o = sm_module_list[i]->options; o && o->name; o++)
            n++;
    }
    table = xcalloc(n + 1, sizeof *table);
    memcpy(table, sm_options, ncore * sizeof *table);
    size_t k = ncore, at = ALIGN16(sizeof(sm_cfg_t));
    for (size_t i = 0; i < sm_module_count; i++) {
        sm_module_t *m = sm_module_list[i];
        cfg_option_t *en = &table[k++];
        en->name = name_add(m->name, "enabled");
        en->type = CFG_BOOL;
        en->def = m->off_by_default ? "false" : "true";
        en->offset = at;
        en->help = m->help;
        m->cfg_offset = at + 16;
        for (const cfg_option_t *o = m->options; o && o->name; o++) {
            table[k] = *o;
            table[k].name = name_add(m->name, o->name);
            table[k].offset = m->cfg_offset + o->offset;
            k++;
        }
        at = m->cfg_offset + ALIGN16(m->config_size);
    }
    *config_size = at;
    return table;
}

void sm_config_table_free(void)
{
    for (size_t i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    names = NULL;
    nnames = 0;
    free(table);
    table = NULL;
}

const void *sm_module_config(const sm_module_t *m)
{
    return (const char *)sm_config + m->cfg_offset;
}

int sm_module_config_enabled(const sm_module_t *m)
{
    return *(const int *)((const char *)sm_config + m->cfg_offset - 16);
}

/* --- <module name="X" enabled="..."> ------------------------------------------- */

static const cfg_option_t *find(const char *name)
{
    for (const cfg_option_t *o = table; o && o->name; o++)
        if (!strcmp(o->name, name))
            return o;
    return NULL;
}

/* The value parsers of common/config.c for one option (it keeps its own
 * setter private; this one handles the value types modules use). */
static int set_value(const cfg_option_t *o, void *target, const char *text, const char *file, unsigned line,
                     cfg_error_t *err)
{
    char *p = (char *)target + o->offset;
    int bounded = !(o->min == 0 && o->max == 0);
    switch (o->type) {
    case CFG_STRING:
        free(*(char **)p);
        *(char **)p = xstrdup(text);
        return 0;
    case CFG_BOOL:
        if (cfg_parse_bool(text, (int *)p) < 0)
            return cfg_errorf(err, file, line, "%s: '%s' is not a boolean", o->name, text);
        return 0;
    case CFG_INT: {
        char *end;
        long v = strtol(text, &end, 10);
        if (!*text || *end || (bounded && (v < o->min || v > o->max)))
            return cfg_errorf(err, file, line, "%s: '%s' is not an integer in [%.0f, %.0f]", o->name, text,
                              o->min, o->max);
        *(long *)p = v;
        return 0;
    }
    case CFG_SIZE: {
        size_t v;
        if (cfg_parse_size(text, &v) < 0 || (bounded && (v < o->min || v > o->max)))
            return cfg_errorf(err, file, line, "%s: '%s' is not a size in [%.0f, %.0f]", o->name, text,
                              o->min, o->max);
        *(size_t *)p = v;
        return 0;
    }
    case CFG_SECONDS: {
        double v;
        if (cfg_parse_seconds(text, &v) < 0 || (bounded && (v < o->min || v > o->max)))
            return cfg_errorf(err, file, line, "%s: '%s' is not a duration in [%g, %g]", o->name, text, o->min,
                              o->max);
        *(double *)p = v;
        return 0;
    }
    default:
        return cfg_errorf(err, file, line, "%s: cannot be set inside <module>", o->name);
    }
}

static int has_elements(const xml_node_t *el)
{
    for (const xml_node_t *c = el->first_child; c; c = c->next)
        if (c->name)
            return 1;
    return 0;
}

static int is_container(const char *path)
{
    size_t n = strlen(path);
    for (const cfg_option_t *o = table; o && o->name; o++)
        if (!strncmp(o->name, path, n) && o->name[n] == '.')
            return 1;
    return 0;
}

static char *trimmed_text(const xml_node_t *el)
{
    char *raw = xml_text(el), *t = raw;
    while (*t == ' ' || *t == '\t' || *t == '\n' || *t == '\r')
        t++;
    size_t len = strlen(t);
    while (len && (t[len - 1] == ' ' || t[len - 1] == '\t' || t[len - 1] == '\n' || t[len - 1] == '\r'))
        len--;
    memmove(raw, t, len);
    raw[len] = '\0';
    return raw;
}

/* Children of el, whose option path is prefix ("offline", "offline.x"). */
static int walk(void *target, const xml_node_t *el, const char *prefix, const char *file, cfg_error_t *err)
{
    for (const xml_node_t *c = el->first_child; c; c = c->next) {
        if (!c->name)
            continue;                  /* text between elements: blank (a value has no children) */
        strbuf_t path;
        strbuf_init(&path);
        strbuf_printf(&path, "%s.%s", prefix, c->name);
        const cfg_option_t *o = find(path.data);
        int rc;
        if (o && o->type != CFG_SECTION && !has_elements(c) && !c->nattrs) {
            char *t = trimmed_text(c);
            rc = set_value(o, target, t, file, c->line, err);
            free(t);
        } else if (o) {
            rc = cfg_errorf(err, file, c->line, "%s: takes a value, not child elements or attributes", path.data);
        } else if (is_container(path.data) && !c->nattrs) {
            rc = walk(target, c, path.data, file, err);
        } else {
            rc = cfg_errorf(err, file, c->line, "unknown option '%s'", path.data);
        }
        strbuf_free(&path);
        if (rc < 0)
            return -1;
    }
    return 0;
}

int sm_module_section(void *target, const xml_node_t *el, const char *file, cfg_error_t *err)
{
    const char *name = xml_attr_get(el, "name");
    if (!name)
        return cfg_errorf(err, file, el->line, "module: needs a name attribute");
    for (size_t i = 0; i < el->nattrs; i++)
        if (strcmp(el->attrs[i].name, "name") && strcmp(el->attrs[i].name, "enabled"))
            return cfg_errorf(err, file, el->line, "module %s: unexpected attribute '%s'", name,
                              el->attrs[i].name);
    const sm_module_t *m = NULL;
    for (size_t i = 0; i < sm_module_count && !m; i++)
        if (!strcmp(sm_module_list[i]->name, name))
            m = sm_module_list[i];
    if (!m)
        return cfg_errorf(err, file, el->line, "module: no module named '%s' in this build", name);
    const char *en = xml_attr_get(el, "enabled");
    int *flag = (int *)((char *)target + m->cfg_offset - 16);
    if (!en)
        *flag = 1;                     /* naming a module loads it */
    else if (cfg_parse_bool(en, flag) < 0)
        return cfg_errorf(err, file, el->line, "module %s: enabled='%s' is not a boolean", name, en);
    return walk(target, el, name, file, err);
}
