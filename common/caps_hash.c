/* caps_hash: builds the string S of XEP-0115 section 5.1 from a disco#info
 * <query/> and hashes it.
 *
 * Each part (identities, features, forms, a form's fields, a field's values)
 * is gathered into an array of pointers borrowed from the tree (or texts
 * owned by the array), sorted with "i;octet" collation — strcmp compares
 * bytes as unsigned char — and appended. The duplicates section 5.4 forbids
 * are found by comparing neighbours after the sort, so a hostile answer with
 * thousands of children costs n log n, never n squared. */
#include "caps_hash.h"
#include "base64.h"
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#define FORM_TYPE "FORM_TYPE"

static const char *or_empty(const char *s)
{
    return s ? s : "";
}

static int streq(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static size_t count(const xml_node_t *el, const char *ns, const char *name)
{
    size_t n = 0;
    for (xml_node_t *c = xml_child(el, ns, name); c; c = xml_next(c, ns, name))
        n++;
    return n;
}

/* --- identities and features ----------------------------------------------------- */

typedef struct ident {
    const char *cat, *type, *lang, *name;
} ident_t;

/* By category, type and xml:lang as 5.1 says; the name only breaks ties, so
 * that two identities alike in all four end up side by side. */
static int cmp_ident(const void *a, const void *b)
{
    const ident_t *x = a, *y = b;
    int r = strcmp(x->cat, y->cat);
    if (!r)
        r = strcmp(x->type, y->type);
    if (!r)
        r = strcmp(x->lang, y->lang);
    if (!r)
        r = strcmp(x->name, y->name);
    return r;
}

static int append_identities(const xml_node_t *q, strbuf_t *out)
{
    size_t n = count(q, CAPS_NS_DISCO_INFO, "identity"), i = 0;
    ident_t *id = xcalloc(n + 1, sizeof *id);
    for (xml_node_t *c = xml_child(q, CAPS_NS_DISCO_INFO, "identity"); c;
         c = xml_next(c, CAPS_NS_DISCO_INFO, "identity")) {
        id[i].cat = or_empty(xml_attr_get(c, "category"));
        id[i].type = or_empty(xml_attr_get(c, "type"));
        id[i].lang = or_empty(xml_attr_get_ns(c, XML_NS_XML, "lang"));
        id[i].name = or_empty(xml_attr_get(c, "name"));
        i++;
    }
    qsort(id, n, sizeof *id, cmp_ident);
    int rc = 0;
    for (i = 0; i < n && !rc; i++) {
        if (i && !cmp_ident(&id[i - 1], &id[i]))
            rc = -1;
        else
            strbuf_printf(out, "%s/%s/%s/%s<", id[i].cat, id[i].type, id[i].lang, id[i].name);
    }
    free(id);
    return rc;
}

static int append_features(const xml_node_t *q, strbuf_t *out)
{
    size_t n = count(q, CAPS_NS_DISCO_INFO, "feature"), i = 0;
    const char **f = xcalloc(n + 1, sizeof *f);
    for (xml_node_t *c = xml_child(q, CAPS_NS_DISCO_INFO, "feature"); c;
         c = xml_next(c, CAPS_NS_DISCO_INFO, "feature")) {
        const char *var = xml_attr_get(c, "var");
        if (var)                   /* XEP-0030 requires it: one without says nothing */
            f[i++] = var;
    }
    n = i;
    qsort(f, n, sizeof *f, cmp_str);
    int rc = 0;
    for (i = 0; i < n && !rc; i++) {
        if (i && !strcmp(f[i - 1], f[i]))
            rc = -1;
        else
            strbuf_printf(out, "%s<", f[i]);
    }
    free(f);
    return rc;
}

/* --- XEP-0128 forms ------------------------------------------------------------------- */

typedef struct form {
    char *type;                /* the FORM_TYPE value (owned) */
    const xml_node_t *x;
} form_t;

static int cmp_form(const void *a, const void *b)
{
    return strcmp(((const form_t *)a)->type, ((const form_t *)b)->type);
}

typedef struct field {
    const char *var;
    const xml_node_t *f;
} field_t;

static int cmp_field(const void *a, const void *b)
{
    return strcmp(((const field_t *)a)->var, ((const field_t *)b)->var);
}

/* The FORM_TYPE of form x: 1 with *type (the caller frees it); 0 when the
 * form does not count (no FORM_TYPE field, not type 'hidden', no value);
 * -1 when its values differ (ill-formed). The first FORM_TYPE field rules. */
static int form_type_of(const xml_node_t *x, char **type)
{
    *type = NULL;
    for (xml_node_t *f = xml_child(x, CAPS_NS_DATA, "field"); f; f = xml_next(f, CAPS_NS_DATA, "field")) {
        if (!streq(xml_attr_get(f, "var"), FORM_TYPE))
            continue;
        if (!streq(xml_attr_get(f, "type"), "hidden"))
            return 0;
        char *first = NULL;
        for (xml_node_t *v = xml_child(f, CAPS_NS_DATA, "value"); v; v = xml_next(v, CAPS_NS_DATA, "value")) {
            char *t = xml_text(v);
            if (!first) {
                first = t;
                continue;
            }
            int same = !strcmp(first, t);
            free(t);
            if (!same) {
                free(first);
                return -1;
            }
        }
        if (!first)
            return 0;
        *type = first;
        return 1;
    }
    return 0;
}

/* A field's values, sorted, each followed by '<'. */
static void append_values(const xml_node_t *f, strbuf_t *out)
{
    size_t n = count(f, CAPS_NS_DATA, "value"), i = 0;
    char **v = xcalloc(n + 1, sizeof *v);
    for (xml_node_t *c = xml_child(f, CAPS_NS_DATA, "value"); c; c = xml_next(c, CAPS_NS_DATA, "value"))
        v[i++] = xml_text(c);
    qsort(v, n, sizeof *v, cmp_str);
    for (i = 0; i < n; i++) {
        strbuf_printf(out, "%s<", v[i]);
        free(v[i]);
    }
    free(v);
}

/* One form: its FORM_TYPE, then every other field with a var, sorted. */
static void append_form(const form_t *fm, strbuf_t *out)
{
    strbuf_printf(out, "%s<", fm->type);
    size_t n = count(fm->x, CAPS_NS_DATA, "field"), k = 0;
    field_t *fl = xcalloc(n + 1, sizeof *fl);
    for (xml_node_t *f = xml_child(fm->x, CAPS_NS_DATA, "field"); f; f = xml_next(f, CAPS_NS_DATA, "field")) {
        const char *var = xml_attr_get(f, "var");
        if (!var || !strcmp(var, FORM_TYPE))
            continue;              /* a 'fixed' field has no var and no meaning here */
        fl[k].var = var;
        fl[k].f = f;
        k++;
    }
    qsort(fl, k, sizeof *fl, cmp_field);
    for (size_t j = 0; j < k; j++) {
        strbuf_printf(out, "%s<", fl[j].var);
        append_values(fl[j].f, out);
    }
    free(fl);
}

static int append_forms(const xml_node_t *q, strbuf_t *out)
{
    size_t n = count(q, CAPS_NS_DATA, "x"), nf = 0;
    form_t *fm = xcalloc(n + 1, sizeof *fm);
    int rc = 0;
    for (xml_node_t *x = xml_child(q, CAPS_NS_DATA, "x"); x && !rc; x = xml_next(x, CAPS_NS_DATA, "x")) {
        char *type;
        int r = form_type_of(x, &type);
        if (r < 0)
            rc = -1;
        else if (r > 0) {
            fm[nf].type = type;
            fm[nf].x = x;
            nf++;
        }
    }
    if (!rc) {
        qsort(fm, nf, sizeof *fm, cmp_form);
        for (size_t i = 1; i < nf && !rc; i++)
            if (!strcmp(fm[i - 1].type, fm[i].type))
                rc = -1;
    }
    for (size_t i = 0; i < nf && !rc; i++)
        append_form(&fm[i], out);
    for (size_t i = 0; i < nf; i++)
        free(fm[i].type);
    free(fm);
    return rc;
}

/* --- entry points ------------------------------------------------------------------- */

int caps_hash_input(const xml_node_t *query, strbuf_t *out)
{
    if (append_identities(query, out) < 0 || append_features(query, out) < 0 || append_forms(query, out) < 0)
        return -1;
    return 0;
}

char *caps_hash_ver(const xml_node_t *query)
{
    strbuf_t s;
    strbuf_init(&s);
    if (caps_hash_input(query, &s) < 0) {
        strbuf_free(&s);
        return NULL;
    }
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)(s.data ? s.data : ""), s.len, md);
    strbuf_free(&s);
    strbuf_t out;
    strbuf_init(&out);
    base64_encode(md, sizeof md, &out);
    return strbuf_steal(&out);
}
