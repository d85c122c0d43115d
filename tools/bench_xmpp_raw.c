/* bench_xmpp_raw: reading the few values a hot stanza carries straight from
 * its bytes, so that weft-bench-xmpp does not build a tree for each of them.
 *
 * Why: a received groupchat message, chat message or PEP notification is
 * needed for one text or attribute; building its tree with expat cost the
 * generator more CPU than the servers spent on it (docs/performance.md,
 * "weft-bench-xmpp"). The bytes given here are a complete top-level element
 * that xml_scan has already framed and checked as expat would (well-formed,
 * namespaces declared, no comment or PI), so a reader only has to walk tags:
 * '<' starts markup, attribute values are quoted and hold no '<'. It does
 * not decide where a stanza ends: the scanner does, and stanzas are counted
 * there.
 *
 * Every answer has the meaning of xml_child/xml_text on the tree (the first
 * child of that name, then its first text). Whatever would need more than
 * a walk to match the tree exactly (a reference, a CDATA section, a CR, a
 * prefixed name on the way) is -1: the caller then asks for the tree
 * (bx_raw_tree), so no figure depends on this reader being clever. */
#include "bench_xmpp.h"
#include "xml_stream.h"
#include <string.h>

/* The '>' ending the start tag at p, quotes honoured; NULL if none. */
static const char *tag_end(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '"' || *p == '\'') {
            const char *q = memchr(p + 1, *p, (size_t)(end - p - 1));
            if (!q)
                return NULL;
            p = q;
        } else if (*p == '>') {
            return p;
        }
    }
    return NULL;
}

static size_t name_len(const char *p, const char *end)
{
    const char *q = p;
    while (q < end && *q != ' ' && *q != '\t' && *q != '\r' && *q != '\n' && *q != '/' && *q != '>')
        q++;
    return (size_t)(q - p);
}

int bx_raw_find(const char *el, size_t len, const char *const *path, int n, const char **tag, size_t *tag_len)
{
    const char *p = el, *end = el + len;
    int depth = 0, matched = 0;   /* open elements; path levels open on this branch */
    while (p < end && (p = memchr(p, '<', (size_t)(end - p))) != NULL) {
        if (p + 1 >= end || p[1] == '!' || p[1] == '?')
            return -1;            /* CDATA (comments and PIs are refused upstream) */
        if (p[1] == '/') {
            depth--;
            /* the root, or the last path element found, closed: the tree's
             * first-child lookup stops there too */
            if (depth <= 0 || matched >= depth)
                return 0;
            p = memchr(p, '>', (size_t)(end - p));
            if (!p)
                return -1;
            p++;
            continue;
        }
        const char *q = tag_end(p, end);
        if (!q)
            return -1;
        int empty = q[-1] == '/';
        if (depth >= 1 && depth == matched + 1) {
            const char *nm = p + 1;
            size_t nl = name_len(nm, q), want = strlen(path[matched]);
            const char *colon = memchr(nm, ':', nl);
            if (nl == want && !memcmp(nm, path[matched], nl)) {
                if (++matched == n) {
                    *tag = p;
                    *tag_len = (size_t)(q + 1 - p);
                    return 1;
                }
                if (empty)
                    return 0;     /* the first of that name has no children */
            } else if (colon && (size_t)(nm + nl - colon - 1) == want && !memcmp(colon + 1, path[matched], want)) {
                return -1;        /* a prefixed name the tree would match by its local part */
            }
        }
        if (!empty)
            depth++;
        else if (depth == 0)
            return 0;             /* an empty root */
        p = q + 1;
    }
    return -1;
}

/* 1 if s[0..n) holds what expat would rewrite (a reference, a CR, or in an
 * attribute value the white space it normalizes). */
static int needs_expat(const char *s, size_t n, int attr)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '&' || s[i] == '\r' || (attr && (s[i] == '\t' || s[i] == '\n')))
            return 1;
    return 0;
}

int bx_raw_attr(const char *tag, size_t tag_len, const char *name, const char **v, size_t *vlen)
{
    const char *end = tag + tag_len, *p = tag + 1;
    size_t want = strlen(name);
    p += name_len(p, end);
    for (;;) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
            p++;
        if (p >= end || *p == '/' || *p == '>')
            return 0;
        const char *an = p;
        while (p < end && *p != '=' && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            p++;
        size_t al = (size_t)(p - an);
        while (p < end && *p != '\'' && *p != '"')
            p++;
        if (p >= end)
            return -1;
        const char *q = memchr(p + 1, *p, (size_t)(end - p - 1));
        if (!q)
            return -1;
        if (al == want && !memcmp(an, name, al)) {
            if (needs_expat(p + 1, (size_t)(q - p - 1), 1))
                return -1;
            *v = p + 1;
            *vlen = (size_t)(q - p - 1);
            return 1;
        }
        p = q + 1;
    }
}

int bx_raw_child_text(const char *el, size_t len, const char *name, char *buf, size_t buflen)
{
    const char *path[1] = {name}, *tag;
    size_t tl;
    int r = bx_raw_find(el, len, path, 1, &tag, &tl);
    if (r <= 0)
        return r;
    if (tag[tl - 2] == '/')
        return 0;                 /* empty: no first child */
    const char *t = tag + tl, *end = el + len;
    const char *lt = memchr(t, '<', (size_t)(end - t));
    if (!lt)
        return -1;
    size_t n = (size_t)(lt - t);
    if (n == 0 && lt + 1 < end && lt[1] == '!')
        return -1;                /* starts with CDATA: the tree has its text */
    if (n == 0)
        return 0;                 /* a child element or nothing first: no text */
    if (lt[1] == '!' || needs_expat(t, n, 0) || n >= buflen)
        return -1;                /* the text goes on in a CDATA section, or needs expat */
    memcpy(buf, t, n);
    buf[n] = 0;
    return 1;
}

/* ---- the tree, when the walk above is not enough */

static xml_node_t *tree_out;

static void tree_stanza(void *ctx, xml_node_t *st)
{
    (void)ctx;
    if (tree_out)
        xml_free(tree_out);
    tree_out = st;
}

static const xml_stream_cb_t tree_cb = {.on_stanza = tree_stanza};

xml_node_t *bx_raw_tree(const char *bytes, size_t len)
{
    /* One stream for the whole process, opened as a client stream: each
     * element fed is complete and checked, so it comes back at once. A
     * failure (e.g. a prefix the server declared on its own header) costs
     * that element and a fresh stream for the next. */
    static xml_stream_t *xs;
    static const char hdr[] = "<stream:stream xmlns='jabber:client' "
                              "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
    if (!xs) {
        xml_limits_t lim;
        xml_limits_default(&lim);
        xs = xml_stream_new(&tree_cb, NULL, &lim);
        xml_stream_feed(xs, hdr, sizeof hdr - 1);
    }
    tree_out = NULL;
    if (xml_stream_feed(xs, bytes, len) != XS_OK) {
        xml_stream_free(xs);
        xs = NULL;
        if (tree_out)
            xml_free(tree_out);
        tree_out = NULL;
    }
    xml_node_t *st = tree_out;
    tree_out = NULL;
    return st;
}
