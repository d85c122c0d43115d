/* xml: construction, access, copy, comparison and freeing of the stanza tree.
 *
 * Ownership: an element owns its name strings, its attribute array and every
 * child; xml_free releases the whole subtree. Invariants kept here:
 *  - an element always has ns != NULL ("" = no namespace) and name != NULL;
 *  - a text node has name == NULL, ns == NULL and text NUL-terminated with
 *    text_len bytes (it may hold NULs, text_len is authoritative);
 *  - attributes are unique by (ns, name); an unqualified attribute has ns NULL
 *    (an ns of "" is normalised to NULL on the way in);
 *  - the attribute array's capacity is implicit (see attrs_grow), so the public
 *    struct needs no extra field. */
#include "xml.h"
#include <stdlib.h>
#include <string.h>

/* The last version given to a tree (xml_version). */
static uint64_t versions;

xml_node_t *xml_elem_new(const char *ns, const char *name)
{
    xml_node_t *n = xcalloc(1, sizeof(*n));
    n->version = ++versions;
    n->ns = xstrdup(ns ? ns : "");
    n->name = xstrdup(name);
    return n;
}

/* Every change to a tree through this API counts (xml_mutations). */
static unsigned long mutations;

unsigned long xml_mutations(void)
{
    return mutations;
}

uint64_t xml_version(const xml_node_t *root)
{
    return root->parent ? 0 : root->version;
}

/* A change to the tree that holds n: counted, and its root gets a new
 * version (the walk up is bounded by the depth the parser allows). */
static void changed(xml_node_t *n)
{
    mutations++;
    while (n->parent)
        n = n->parent;
    n->version = ++versions;
}

static void link_child(xml_node_t *parent, xml_node_t *child)
{
    child->parent = parent;
    child->next = NULL;
    if (parent->last_child)
        parent->last_child->next = child;
    else
        parent->first_child = child;
    parent->last_child = child;
}

void xml_append(xml_node_t *parent, xml_node_t *child)
{
    changed(parent);
    link_child(parent, child);
}

xml_node_t *xml_add_child(xml_node_t *parent, const char *ns, const char *name)
{
    xml_node_t *n = xml_elem_new(ns, name);
    xml_append(parent, n);
    return n;
}

/* Adjacent text is merged into one node: the parser delivers text in pieces
 * and a merged tree is smaller and simpler for handlers to read. */
void xml_add_text(xml_node_t *parent, const char *text, size_t len)
{
    if (len == 0)
        return;
    xml_node_t *last = parent->last_child;
    if (last && !last->name) {
        last->text = xrealloc(last->text, last->text_len + len + 1);
        memcpy(last->text + last->text_len, text, len);
        last->text_len += len;
        last->text[last->text_len] = '\0';
        changed(parent);
        return;
    }
    xml_node_t *t = xcalloc(1, sizeof(*t));
    t->text = xstrndup(text, len);
    t->text_len = len;
    xml_append(parent, t);
}

void xml_detach(xml_node_t *node)
{
    xml_node_t *p = node->parent;
    if (!p)
        return;
    changed(p);
    xml_node_t *prev = NULL;
    for (xml_node_t *c = p->first_child; c && c != node; c = c->next)
        prev = c;
    if (prev)
        prev->next = node->next;
    else
        p->first_child = node->next;
    if (p->last_child == node)
        p->last_child = prev;
    node->parent = NULL;
    node->next = NULL;
    node->version = ++versions;        /* a new tree */
}

/* Recursion is bounded by tree depth, which the parser limits (max_depth). */
void xml_free(xml_node_t *node)
{
    if (!node)
        return;
    xml_node_t *c = node->first_child;
    while (c) {
        xml_node_t *next = c->next;
        xml_free(c);
        c = next;
    }
    for (unsigned i = 0; i < node->nattrs; i++) {
        free(node->attrs[i].ns);
        free(node->attrs[i].name);
        free(node->attrs[i].value);
    }
    free(node->attrs);
    free(node->ns);
    free(node->name);
    free(node->text);
    free(node);
}

static xml_node_t *copy_node(const xml_node_t *node)
{
    xml_node_t *n = xcalloc(1, sizeof(*n));
    n->line = node->line;
    if (!node->name) {
        n->text = xstrndup(node->text ? node->text : "", node->text_len);
        n->text_len = node->text_len;
        return n;
    }
    n->ns = xstrdup(node->ns ? node->ns : "");
    n->name = xstrdup(node->name);
    if (node->nattrs) {
        /* Room for the implicit capacity rule of attrs_grow. */
        unsigned cap = 4;
        while (cap < node->nattrs)
            cap *= 2;
        n->attrs = xmalloc(cap * sizeof(xml_attr_t));
        for (unsigned i = 0; i < node->nattrs; i++) {
            const xml_attr_t *a = &node->attrs[i];
            n->attrs[i].ns = a->ns ? xstrdup(a->ns) : NULL;
            n->attrs[i].name = xstrdup(a->name);
            n->attrs[i].value = xstrdup(a->value);
        }
        n->nattrs = node->nattrs;
    }
    for (const xml_node_t *c = node->first_child; c; c = c->next)
        link_child(n, copy_node(c));  /* a new tree: not a change to any (xml_mutations) */
    return n;
}

xml_node_t *xml_copy(const xml_node_t *node)
{
    xml_node_t *n = copy_node(node);
    /* A whole tree's copy has its content, so its version; a subtree's is
     * content no version named yet. */
    n->version = node->parent ? ++versions : node->version;
    return n;
}

/* ---- attributes ---- */

static int ns_eq(const char *a, const char *b)
{
    if (!a || !*a)
        return !b || !*b;
    return b && strcmp(a, b) == 0;
}

static xml_attr_t *attr_find(const xml_node_t *el, const char *ns, const char *name)
{
    for (unsigned i = 0; i < el->nattrs; i++)
        if (strcmp(el->attrs[i].name, name) == 0 && ns_eq(el->attrs[i].ns, ns))
            return &el->attrs[i];
    return NULL;
}

/* The array's capacity is max(4, next power of two >= nattrs); it grows when
 * nattrs reaches such a value. Removal never shrinks, so the real allocation is
 * always at least the implicit capacity. */
static void attrs_grow(xml_node_t *el)
{
    unsigned n = el->nattrs;
    if (n == 0)
        el->attrs = xrealloc(el->attrs, 4 * sizeof(xml_attr_t));
    else if (n >= 4 && (n & (n - 1)) == 0)
        el->attrs = xrealloc(el->attrs, 2 * (size_t)n * sizeof(xml_attr_t));
}

const char *xml_attr_get_ns(const xml_node_t *el, const char *ns, const char *name)
{
    if (!el || !el->name)
        return NULL;
    xml_attr_t *a = attr_find(el, ns, name);
    return a ? a->value : NULL;
}

const char *xml_attr_get(const xml_node_t *el, const char *name)
{
    return xml_attr_get_ns(el, NULL, name);
}

void xml_attr_set_ns(xml_node_t *el, const char *ns, const char *name, const char *value)
{
    changed(el);
    xml_attr_t *a = attr_find(el, ns, name);
    if (!value) {
        if (!a)
            return;
        free(a->ns);
        free(a->name);
        free(a->value);
        unsigned i = (unsigned)(a - el->attrs);
        memmove(a, a + 1, (el->nattrs - i - 1) * sizeof(*a));
        el->nattrs--;
        return;
    }
    if (a) {
        char *v = xstrdup(value);   /* value may alias a->value */
        free(a->value);
        a->value = v;
        return;
    }
    attrs_grow(el);
    a = &el->attrs[el->nattrs++];
    a->ns = ns && *ns ? xstrdup(ns) : NULL;
    a->name = xstrdup(name);
    a->value = xstrdup(value);
}

void xml_attr_set(xml_node_t *el, const char *name, const char *value)
{
    xml_attr_set_ns(el, NULL, name, value);
}

const char *xml_attrs_find(const char **attrs, const char *name)
{
    if (!attrs)
        return NULL;
    for (size_t i = 0; attrs[i]; i += 2)
        if (strcmp(attrs[i], name) == 0)
            return attrs[i + 1];
    return NULL;
}

/* ---- navigation ---- */

static int elem_matches(const xml_node_t *n, const char *ns, const char *name)
{
    if (!n->name)
        return 0;
    if (ns && strcmp(n->ns, ns) != 0)
        return 0;
    if (name && strcmp(n->name, name) != 0)
        return 0;
    return 1;
}

xml_node_t *xml_child(const xml_node_t *el, const char *ns, const char *name)
{
    if (!el)
        return NULL;
    for (xml_node_t *c = el->first_child; c; c = c->next)
        if (elem_matches(c, ns, name))
            return c;
    return NULL;
}

xml_node_t *xml_next(const xml_node_t *el, const char *ns, const char *name)
{
    if (!el)
        return NULL;
    for (xml_node_t *c = el->next; c; c = c->next)
        if (elem_matches(c, ns, name))
            return c;
    return NULL;
}

char *xml_text(const xml_node_t *el)
{
    strbuf_t sb;
    strbuf_init(&sb);
    if (el)
        for (const xml_node_t *c = el->first_child; c; c = c->next)
            if (!c->name)
                strbuf_append(&sb, c->text, c->text_len);
    return strbuf_steal(&sb);
}

/* ---- equality ---- */

/* A cursor over a run of adjacent text nodes, read as one byte string. */
typedef struct text_cur {
    const xml_node_t *node;
    size_t off;
} text_cur_t;

/* Skips exhausted text nodes; returns 1 if a byte is available. */
static int text_cur_ready(text_cur_t *c)
{
    while (c->node && !c->node->name && c->off >= c->node->text_len) {
        c->node = c->node->next;
        c->off = 0;
    }
    return c->node && !c->node->name;
}

/* Compares the text runs starting at *a and *b (either may be an element or
 * NULL, i.e. an empty run) and advances both past their runs. */
static int text_runs_equal(const xml_node_t **a, const xml_node_t **b)
{
    text_cur_t ca = { *a, 0 }, cb = { *b, 0 };
    for (;;) {
        int ra = text_cur_ready(&ca), rb = text_cur_ready(&cb);
        if (!ra || !rb) {
            *a = ca.node;
            *b = cb.node;
            return ra == rb;
        }
        size_t na = ca.node->text_len - ca.off, nb = cb.node->text_len - cb.off;
        size_t n = na < nb ? na : nb;
        if (memcmp(ca.node->text + ca.off, cb.node->text + cb.off, n) != 0)
            return 0;
        ca.off += n;
        cb.off += n;
    }
}

static int attrs_equal(const xml_node_t *a, const xml_node_t *b)
{
    if (a->nattrs != b->nattrs)
        return 0;
    for (unsigned i = 0; i < a->nattrs; i++) {
        const xml_attr_t *x = &a->attrs[i];
        const xml_attr_t *y = attr_find(b, x->ns, x->name);
        if (!y || strcmp(x->value, y->value) != 0)
            return 0;
    }
    return 1;
}

int xml_equal(const xml_node_t *a, const xml_node_t *b)
{
    if (!a || !b)
        return a == b;
    if (!a->name || !b->name) {
        if (a->name || b->name)
            return 0;
        return a->text_len == b->text_len && memcmp(a->text, b->text, a->text_len) == 0;
    }
    if (strcmp(a->name, b->name) != 0 || !ns_eq(a->ns, b->ns) || !attrs_equal(a, b))
        return 0;
    const xml_node_t *x = a->first_child, *y = b->first_child;
    for (;;) {
        if (!text_runs_equal(&x, &y))
            return 0;
        if (!x || !y)
            return x == y;
        if (!xml_equal(x, y))
            return 0;
        x = x->next;
        y = y->next;
    }
}

static void rename_ns(xml_node_t *n, const char *from, const char *to)
{
    if (!n->name)
        return;
    if (n->ns && !strcmp(n->ns, from)) {
        free(n->ns);
        n->ns = xstrdup(to);
    }
    for (xml_node_t *c = n->first_child; c; c = c->next)
        rename_ns(c, from, to);
}

void xml_rename_ns(xml_node_t *n, const char *from, const char *to)
{
    if (!n->name)
        return;
    changed(n);
    rename_ns(n, from, to);
}
