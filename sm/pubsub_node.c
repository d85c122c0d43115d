/* pubsub_node: a PEP node's configuration, items and XEP-0004 forms.
 *
 * The configuration fields understood are those PEP clients use
 * (pubsub#access_model, max_items, persist_items, send_last_published_item,
 * notify_retract, notify_delete, title, roster_groups_allowed); FORM_TYPE
 * is skipped. roster_groups_allowed is list-multi: every <value/> is a
 * group; the other fields read their first value. Any other
 * field is refused, so a client that asks for something we cannot do
 * learns it (precondition-not-met for publish-options, not-acceptable for a
 * configuration). Booleans read as XEP-0004 does: 1/true, 0/false. */
#include "pubsub_node.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_PEP_RECORD "urn:xmpp:weft:pep:1"

static const char *const access_names[] = {"open", "presence", "roster", "whitelist"};
static const char *const slpi_names[] = {"never", "on_sub", "on_sub_and_presence"};

const char *pn_access_name(pn_access_t a)
{
    return access_names[a];
}

const char *pn_slpi_name(pn_slpi_t s)
{
    return slpi_names[s];
}

static int name_index(const char *const *names, size_t n, const char *v)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(names[i], v))
            return (int)i;
    return -1;
}

void pn_config_default(pn_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->access = PN_PRESENCE;
    c->max_items = 1;
    c->persist = 1;
    c->slpi = PN_SLPI_ON_SUB_AND_PRESENCE;
    c->notify_retract = 1;
    c->notify_delete = 1;
}

static void groups_clear(pn_config_t *c)
{
    for (size_t i = 0; i < c->ngroups; i++)
        free(c->groups[i]);
    free(c->groups);
    c->groups = NULL;
    c->ngroups = 0;
}

int pn_config_has_group(const pn_config_t *c, const char *group)
{
    for (size_t i = 0; i < c->ngroups; i++)
        if (!strcmp(c->groups[i], group))
            return 1;
    return 0;
}

/* Adds group unless it is there already; -1 past PN_GROUPS_MAX. */
static int group_add(pn_config_t *c, const char *group)
{
    if (pn_config_has_group(c, group))
        return 0;
    if (c->ngroups >= PN_GROUPS_MAX)
        return -1;
    c->groups = xrealloc(c->groups, (c->ngroups + 1) * sizeof *c->groups);
    c->groups[c->ngroups++] = xstrdup(group);
    return 0;
}

void pn_config_copy(pn_config_t *dst, const pn_config_t *src)
{
    *dst = *src;
    dst->title = src->title ? xstrdup(src->title) : NULL;
    dst->groups = NULL;
    dst->ngroups = 0;
    for (size_t i = 0; i < src->ngroups; i++)
        group_add(dst, src->groups[i]);
}

void pn_config_clear(pn_config_t *c)
{
    free(c->title);
    c->title = NULL;
    groups_clear(c);
}

int pn_config_equal(const pn_config_t *a, const pn_config_t *b)
{
    int same_title = (!a->title && !b->title) || (a->title && b->title && !strcmp(a->title, b->title));
    if (a->access != b->access || a->max_items != b->max_items || a->persist != b->persist ||
        a->slpi != b->slpi || a->notify_retract != b->notify_retract || a->notify_delete != b->notify_delete ||
        !same_title || a->ngroups != b->ngroups)
        return 0;
    for (size_t i = 0; i < a->ngroups; i++)       /* no duplicates: one way is enough */
        if (!pn_config_has_group(b, a->groups[i]))
            return 0;
    return 1;
}

size_t pn_config_keep(const pn_config_t *c, size_t limit)
{
    if (c->max_items == PN_MAX_ITEMS_MAX || (size_t)c->max_items > limit)
        return limit;
    return (size_t)c->max_items;
}

/* --- forms ---------------------------------------------------------------------- */

static int parse_bool(const char *v, int *out)
{
    if (!strcmp(v, "1") || !strcmp(v, "true"))
        *out = 1;
    else if (!strcmp(v, "0") || !strcmp(v, "false"))
        *out = 0;
    else
        return -1;
    return 0;
}

static int parse_max(const char *v, size_t limit, long *out)
{
    if (!strcmp(v, "max")) {
        *out = PN_MAX_ITEMS_MAX;
        return 0;
    }
    char *end = NULL;
    long n = strtol(v, &end, 10);
    if (!*v || *end || n < 1 || (size_t)n > limit)
        return -1;
    *out = n;
    return 0;
}

/* Every <value/> of field f as c's roster groups (none: an empty list);
 * -1 past PN_GROUPS_MAX. */
static int apply_groups(pn_config_t *c, const xml_node_t *f)
{
    groups_clear(c);
    for (xml_node_t *ve = xml_child(f, NS_DATA, "value"); ve; ve = xml_next(ve, NS_DATA, "value")) {
        char *g = xml_text(ve);
        int r = *g ? group_add(c, g) : 0;        /* an empty value names no group */
        free(g);
        if (r < 0)
            return -1;
    }
    return 0;
}

/* One field f (named var, first value v) into c; -1 for an unknown field
 * or a bad value. */
static int apply_field(pn_config_t *c, const char *var, const xml_node_t *f, const char *v, size_t limit)
{
    int b, i;
    if (!strcmp(var, "pubsub#roster_groups_allowed")) {
        return apply_groups(c, f);
    } else if (!strcmp(var, "pubsub#access_model")) {
        if ((i = name_index(access_names, 4, v)) < 0)
            return -1;
        c->access = (pn_access_t)i;
    } else if (!strcmp(var, "pubsub#max_items")) {
        return parse_max(v, limit, &c->max_items);
    } else if (!strcmp(var, "pubsub#persist_items")) {
        if (parse_bool(v, &b) < 0)
            return -1;
        c->persist = b;
    } else if (!strcmp(var, "pubsub#send_last_published_item")) {
        if ((i = name_index(slpi_names, 3, v)) < 0)
            return -1;
        c->slpi = (pn_slpi_t)i;
    } else if (!strcmp(var, "pubsub#notify_retract")) {
        if (parse_bool(v, &b) < 0)
            return -1;
        c->notify_retract = b;
    } else if (!strcmp(var, "pubsub#notify_delete")) {
        if (parse_bool(v, &b) < 0)
            return -1;
        c->notify_delete = b;
    } else if (!strcmp(var, "pubsub#title")) {
        free(c->title);
        c->title = *v ? xstrdup(v) : NULL;
    } else {
        return -1;
    }
    return 0;
}

/* Calls fn for each field of x but FORM_TYPE with its (first) value. */
static int each_field(const xml_node_t *x,
                      int (*fn)(const char *var, const xml_node_t *f, const char *v, void *arg), void *arg,
                      const char **bad)
{
    for (xml_node_t *f = xml_child(x, NS_DATA, "field"); f; f = xml_next(f, NS_DATA, "field")) {
        const char *var = xml_attr_get(f, "var");
        if (!var || !strcmp(var, "FORM_TYPE"))
            continue;
        xml_node_t *ve = xml_child(f, NS_DATA, "value");
        char *v = ve ? xml_text(ve) : xstrdup("");
        int r = fn(var, f, v, arg);
        free(v);
        if (r < 0) {
            *bad = xml_attr_get(f, "var");
            return -1;
        }
    }
    return 0;
}

typedef struct apply_ctx {
    pn_config_t *c;
    size_t limit;
    const pn_config_t *cur;
} apply_ctx_t;

static int apply_cb(const char *var, const xml_node_t *f, const char *v, void *arg)
{
    apply_ctx_t *a = arg;
    return apply_field(a->c, var, f, v, a->limit);
}

int pn_config_apply(pn_config_t *c, const xml_node_t *x, size_t limit, const char **bad)
{
    pn_config_t tmp;
    pn_config_copy(&tmp, c);
    apply_ctx_t a = {&tmp, limit, NULL};
    if (each_field(x, apply_cb, &a, bad) < 0) {
        pn_config_clear(&tmp);
        return -1;
    }
    pn_config_clear(c);
    *c = tmp;
    return 0;
}

/* A field matches when applying it to a copy of the node's configuration
 * changes nothing. */
static int match_cb(const char *var, const xml_node_t *f, const char *v, void *arg)
{
    apply_ctx_t *a = arg;
    pn_config_t t;
    pn_config_copy(&t, a->cur);
    int r = apply_field(&t, var, f, v, a->limit);
    if (r == 0 && !pn_config_equal(&t, a->cur))
        r = -1;
    pn_config_clear(&t);
    return r;
}

int pn_config_matches(const pn_config_t *c, const xml_node_t *x, size_t limit, const char **bad)
{
    apply_ctx_t a = {NULL, limit, c};
    return each_field(x, match_cb, &a, bad) == 0;
}

static void add_field(xml_node_t *x, const char *var, const char *type, const char *value)
{
    xml_node_t *f = xml_add_child(x, NS_DATA, "field");
    xml_attr_set(f, "var", var);
    if (type)
        xml_attr_set(f, "type", type);
    xml_node_t *v = xml_add_child(f, NS_DATA, "value");
    xml_add_text(v, value, strlen(value));
}

static void add_list(xml_node_t *x, const char *var, const char *value, const char *const *opts, size_t n)
{
    add_field(x, var, "list-single", value);
    xml_node_t *f = x->last_child;
    for (size_t i = 0; i < n; i++) {
        xml_node_t *o = xml_add_child(f, NS_DATA, "option");
        xml_node_t *v = xml_add_child(o, NS_DATA, "value");
        xml_add_text(v, opts[i], strlen(opts[i]));
    }
}

xml_node_t *pn_config_form(const pn_config_t *c)
{
    xml_node_t *x = xml_elem_new(NS_DATA, "x");
    xml_attr_set(x, "type", "form");
    add_field(x, "FORM_TYPE", "hidden", PN_FORM_CONFIG);
    add_list(x, "pubsub#access_model", access_names[c->access], access_names, 4);
    char num[32];
    if (c->max_items == PN_MAX_ITEMS_MAX)
        strcpy(num, "max");
    else
        snprintf(num, sizeof num, "%ld", c->max_items);
    add_field(x, "pubsub#max_items", "text-single", num);
    add_field(x, "pubsub#persist_items", "boolean", c->persist ? "1" : "0");
    add_list(x, "pubsub#send_last_published_item", slpi_names[c->slpi], slpi_names, 3);
    add_field(x, "pubsub#notify_retract", "boolean", c->notify_retract ? "1" : "0");
    add_field(x, "pubsub#notify_delete", "boolean", c->notify_delete ? "1" : "0");
    add_field(x, "pubsub#title", "text-single", c->title ? c->title : "");
    /* list-multi with one <value/> per group (none: no value). The owner's
     * roster groups are not offered as options: this file knows no roster,
     * and a group not (yet) in the roster is a valid choice. */
    xml_node_t *g = xml_add_child(x, NS_DATA, "field");
    xml_attr_set(g, "var", "pubsub#roster_groups_allowed");
    xml_attr_set(g, "type", "list-multi");
    for (size_t i = 0; i < c->ngroups; i++)
        xml_add_text(xml_add_child(g, NS_DATA, "value"), c->groups[i], strlen(c->groups[i]));
    return x;
}

/* --- storage record ---------------------------------------------------------------- */

xml_node_t *pn_node_record(const pn_node_t *n)
{
    const pn_config_t *c = &n->cfg;
    xml_node_t *r = xml_elem_new(NS_PEP_RECORD, "node");
    char num[32];
    snprintf(num, sizeof num, "%ld", c->max_items);
    xml_attr_set(r, "name", n->name);
    xml_attr_set(r, "access", access_names[c->access]);
    xml_attr_set(r, "max", num);
    xml_attr_set(r, "persist", c->persist ? "1" : "0");
    xml_attr_set(r, "slpi", slpi_names[c->slpi]);
    xml_attr_set(r, "notify-retract", c->notify_retract ? "1" : "0");
    xml_attr_set(r, "notify-delete", c->notify_delete ? "1" : "0");
    if (c->title)
        xml_attr_set(r, "title", c->title);
    for (size_t i = 0; i < n->affs.n; i++) {
        xml_node_t *a = xml_add_child(r, NS_PEP_RECORD, "aff");
        xml_attr_set(a, "jid", n->affs.e[i].jid);
        xml_attr_set(a, "a", pn_aff_name((pn_aff_t)n->affs.e[i].val));
    }
    for (size_t i = 0; i < n->subs.n; i++)
        xml_attr_set(xml_add_child(r, NS_PEP_RECORD, "sub"), "jid", n->subs.e[i].jid);
    for (size_t i = 0; i < c->ngroups; i++)
        xml_add_text(xml_add_child(r, NS_PEP_RECORD, "group"), c->groups[i], strlen(c->groups[i]));
    return r;
}

static int is_zero(const char *v)
{
    return v && !strcmp(v, "0");
}

pn_node_t *pn_node_from_record(const xml_node_t *rec)
{
    const char *name = xml_attr_get(rec, "name");
    const char *access = xml_attr_get(rec, "access"), *max = xml_attr_get(rec, "max");
    const char *slpi = xml_attr_get(rec, "slpi");
    if (!name || !access || !max || !slpi || strcmp(rec->ns, NS_PEP_RECORD))
        return NULL;
    pn_config_t c;
    pn_config_default(&c);
    int a = name_index(access_names, 4, access), s = name_index(slpi_names, 3, slpi);
    if (a < 0 || s < 0)
        return NULL;
    c.access = (pn_access_t)a;
    c.slpi = (pn_slpi_t)s;
    c.max_items = strtol(max, NULL, 10);
    if (c.max_items == 0 || c.max_items < PN_MAX_ITEMS_MAX)
        c.max_items = 1;
    c.persist = !is_zero(xml_attr_get(rec, "persist"));
    c.notify_retract = !is_zero(xml_attr_get(rec, "notify-retract"));
    c.notify_delete = !is_zero(xml_attr_get(rec, "notify-delete"));
    const char *t = xml_attr_get(rec, "title");
    c.title = t ? xstrdup(t) : NULL;
    for (xml_node_t *g = xml_child(rec, NS_PEP_RECORD, "group"); g; g = xml_next(g, NS_PEP_RECORD, "group")) {
        char *name = xml_text(g);
        if (*name)
            group_add(&c, name);                 /* past PN_GROUPS_MAX: the rest is dropped */
        free(name);
    }
    pn_node_t *n = pn_node_new(name, &c);
    pn_config_clear(&c);
    for (xml_node_t *a = xml_child(rec, NS_PEP_RECORD, "aff"); a; a = xml_next(a, NS_PEP_RECORD, "aff")) {
        const char *jid = xml_attr_get(a, "jid");
        int v = pn_aff_parse(xml_attr_get(a, "a"));
        if (jid && v > PN_AFF_NONE)
            pn_jidmap_set(&n->affs, jid, v);
    }
    for (xml_node_t *b = xml_child(rec, NS_PEP_RECORD, "sub"); b; b = xml_next(b, NS_PEP_RECORD, "sub")) {
        const char *jid = xml_attr_get(b, "jid");
        if (jid)
            pn_jidmap_set(&n->subs, jid, 1);
    }
    return n;
}

/* --- items ------------------------------------------------------------------------- */

pn_node_t *pn_node_new(const char *name, const pn_config_t *cfg)
{
    pn_node_t *n = xcalloc(1, sizeof *n);
    n->name = xstrdup(name);
    pn_config_copy(&n->cfg, cfg);
    return n;
}

void pn_node_purge(pn_node_t *n)
{
    for (size_t i = 0; i < n->nitems; i++) {
        free(n->items[i].id);
        free(n->items[i].publisher);
        xml_free(n->items[i].item);
    }
    n->nitems = 0;
}

void pn_node_free(pn_node_t *n)
{
    if (!n)
        return;
    pn_node_purge(n);
    free(n->items);
    pn_jidmap_clear(&n->affs);
    pn_jidmap_clear(&n->subs);
    free(n->name);
    pn_config_clear(&n->cfg);
    free(n);
}

pn_item_t *pn_node_find(pn_node_t *n, const char *id)
{
    for (size_t i = 0; i < n->nitems; i++)
        if (!strcmp(n->items[i].id, id))
            return &n->items[i];
    return NULL;
}

pn_item_t *pn_node_last(pn_node_t *n)
{
    return n->nitems ? &n->items[n->nitems - 1] : NULL;
}

static void remove_at(pn_node_t *n, size_t i)
{
    free(n->items[i].id);
    free(n->items[i].publisher);
    xml_free(n->items[i].item);
    memmove(&n->items[i], &n->items[i + 1], (n->nitems - i - 1) * sizeof *n->items);
    n->nitems--;
}

int pn_node_remove(pn_node_t *n, const char *id)
{
    for (size_t i = 0; i < n->nitems; i++) {
        if (!strcmp(n->items[i].id, id)) {
            remove_at(n, i);
            return 0;
        }
    }
    return -1;
}

void pn_node_put(pn_node_t *n, const char *id, xml_node_t *item)
{
    pn_node_remove(n, id);
    if (n->nitems == n->cap) {
        n->cap = n->cap ? n->cap * 2 : 4;
        n->items = xrealloc(n->items, n->cap * sizeof *n->items);
    }
    n->items[n->nitems].id = xstrdup(id);
    n->items[n->nitems].item = item;
    n->items[n->nitems].publisher = NULL;
    n->nitems++;
}

void pn_item_set_publisher(pn_item_t *it, const char *bare)
{
    free(it->publisher);
    it->publisher = bare ? xstrdup(bare) : NULL;
}

void pn_node_trim(pn_node_t *n, size_t keep, void (*fn)(const char *id, void *arg), void *arg)
{
    while (n->nitems > keep) {
        if (fn)
            fn(n->items[0].id, arg);
        remove_at(n, 0);
    }
}
