/* xml_scan: the scanner (see xml_scan.h; xml_scan_stream is in xml_scan_stream.c).
 *
 * The scanner is a byte-level state machine. Its input is one "unit" at a
 * time: the header with its prolog, a top-level element, or a top-level
 * character or reference. u points at the unit's first byte, n bytes are
 * available from there and p is the scan position; every offset kept in the
 * state (tag and attribute names and values, open elements) is relative to
 * u. A unit that is incomplete at the end of a feed is copied into buf and
 * the next feed is appended to it; once the unit ends, scanning goes back
 * to the caller's bytes (chunk). So the common case copies nothing.
 *
 * The states follow expat's tokenizer so that errors appear at the same
 * byte: a malformed byte is an error as soon as it is seen, except that a
 * multi-byte UTF-8 character is judged once all its bytes (as many as its
 * lead byte announces) are there, and "]" in text once it is known whether
 * "]]>" follows. The semantic checks of a start tag run when its '>' is
 * read, in expat's order (per attribute: duplicate name, references in the
 * value, namespace declaration; then prefixed attribute names; then the
 * element's prefix), followed by xml_stream's limits in its order.
 * Character data counts toward the text and element limits per token, as
 * expat reports it to xml_stream's handler (see S_TEXT). The end of each
 * feed checks what is held, as xml_stream does, so limit verdicts depend on
 * the splits in the same way.
 *
 * Namespace bindings live in nsb/nsa: the implicit xml prefix first, then
 * the header's declarations (kept for the stream), then those of open
 * elements (dropped with them). The top-level element's name and decoded
 * attributes are built in out when its start tag ends and reported when it
 * ends. Nothing is allocated per element once the arrays have grown. */
#include "xml_scan.h"
#include "xml_scan_chars.h"
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define XML_NS_XMLNS "http://www.w3.org/2000/xmlns/"

enum { PH_PROLOG, PH_CONTENT, PH_CLOSED };

enum {
    S_PROLOG, S_TEXT, S_LT, S_STAG_NAME, S_STAG_SP, S_ATT_NAME, S_ATT_NAME_SP, S_ATT_EQ,
    S_ATT_VAL, S_ATT_AFTER, S_STAG_SLASH, S_ETAG_START, S_ETAG_NAME, S_ETAG_SP, S_BANG,
    S_COMMENT_DASH, S_COMMENT, S_CDATA_OPEN, S_CDATA, S_PI_START, S_PI_TARGET, S_PI_QUEST,
    S_PI_BODY, S_REF, S_REF_NAME, S_REF_HASH, S_REF_DEC, S_REF_HEX0, S_REF_HEX,
};

/* Where a reference is: character data in an element, at the top level, or
 * in an attribute value. */
enum { RC_TEXT, RC_TOP, RC_ATTR };

enum { A_REF = 1, A_NORM = 2, A_DECL = 4 };

typedef struct xattr {
    size_t name, nlen, colon;  /* colon: offset of ':' in the name + 1, 0 if none */
    size_t val, vlen;          /* the raw value, between the quotes */
    size_t dlen;               /* its decoded length */
    size_t bind;               /* binding of its prefix (pass 2) */
    int flags;
    int ref_err;               /* first bad reference in the value, as an xs_err_t */
} xattr_t;

typedef struct xopen {
    size_t name, nlen;         /* raw qname, for the end tag */
    size_t nsmark, amark;      /* binding count and nsa length before its declarations */
} xopen_t;

typedef struct nsbind {
    size_t pfx, plen, uri, ulen;   /* offsets into nsa */
} nsbind_t;

struct xml_scan {
    xml_scan_cb_t cb;
    void *ctx;
    xml_limits_t lim;

    int err;
    char errtext[160];

    /* input: see the top of the file */
    const char *u;
    size_t n, p;
    strbuf_t buf;
    int in_buf;
    size_t chunk_at;           /* in_buf: where the current feed starts in buf */
    const char *chunk;

    int in_cb, restart_req, stop_req, stop_after;

    int phase, st;
    int unsure;                /* the unit has names the scanner did not judge */
    size_t keep;               /* top-level CDATA: content before this was "reported" */
    size_t bom;                /* length of a BOM at the stream start (the XML declaration follows) */
    int bom_done;
    size_t depth;              /* open elements below the root */
    size_t text_run;

    /* the tag being read */
    size_t name, nlen, colon;
    int had_colon;
    char quote;
    xattr_t *att;
    size_t natt, catt;
    /* the reference being read */
    size_t ref;
    int ref_ctx, ref_big;
    uint32_t ref_val;
    /* the comment, CDATA section or PI being read */
    size_t mark;
    int pi_kind;               /* 0 PI, 1 XML declaration */
    size_t pi_body;            /* where its body starts */

    xopen_t *open;
    size_t copen;
    char *root_q;              /* raw qname of the root, for its end tag */
    size_t root_qlen;

    nsbind_t *nsb;
    size_t nnsb, cnsb;
    strbuf_t nsa;

    strbuf_t tmp;              /* a namespace name being decoded */
    /* the top-level element (or header) as reported */
    strbuf_t out;
    size_t *oo;
    const char **attv;
    size_t cout;
    size_t nout;               /* strings in out: ns, name, then name/value pairs */
};

static int scan_fail(xml_scan_t *sc, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int scan_fail(xml_scan_t *sc, int err, const char *fmt, ...)
{
    if (sc->err)
        return sc->err;
    if (sc->unsure && err != XS_ERR_CLOSED) {
        /* With names it did not judge, expat might have found another error. */
        err = XSCAN_UNSURE;
        snprintf(sc->errtext, sizeof sc->errtext, "not judged: non-ASCII name");
        sc->err = err;
        return err;
    }
    sc->err = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sc->errtext, sizeof sc->errtext, fmt, ap);
    va_end(ap);
    return err;
}

/* ---- namespaces ---- */

static void ns_push(xml_scan_t *sc, const char *pfx, size_t plen, const char *uri, size_t ulen)
{
    if (sc->nnsb == sc->cnsb) {
        sc->cnsb = sc->cnsb ? 2 * sc->cnsb : 16;
        sc->nsb = xrealloc(sc->nsb, sc->cnsb * sizeof *sc->nsb);
    }
    nsbind_t *b = &sc->nsb[sc->nnsb++];
    b->pfx = sc->nsa.len;
    b->plen = plen;
    strbuf_append(&sc->nsa, pfx, plen);
    strbuf_putc(&sc->nsa, '\0');
    b->uri = sc->nsa.len;
    b->ulen = ulen;
    strbuf_append(&sc->nsa, uri, ulen);
    strbuf_putc(&sc->nsa, '\0');
}

/* Index of the binding in scope for a prefix ("" = default), or -1. A
 * default namespace undeclared with xmlns='' is a binding of length 0. */
static long ns_find(const xml_scan_t *sc, const char *pfx, size_t plen)
{
    if (!plen) {
        for (size_t i = sc->nnsb; i-- > 0;)
            if (!sc->nsb[i].plen)
                return (long)i;
        return -1;
    }
    for (size_t i = sc->nnsb; i-- > 0;) {
        const nsbind_t *b = &sc->nsb[i];
        if (b->plen == plen && !memcmp(sc->nsa.data + b->pfx, pfx, plen))
            return (long)i;
    }
    return -1;
}

static void ns_reset(xml_scan_t *sc)
{
    sc->nnsb = 0;
    strbuf_reset(&sc->nsa);
    ns_push(sc, "xml", 3, XML_NS_XML, strlen(XML_NS_XML));
}

/* ---- input ---- */

/* Makes the unit start q bytes further (at the current p when q == p). */
static void unit_advance(xml_scan_t *sc, size_t q)
{
    sc->u += q;
    sc->n -= q;
    sc->p -= q;
    sc->keep = 0;
    sc->unsure = 0;
    if (sc->in_buf && (size_t)(sc->u - sc->buf.data) >= sc->chunk_at) {
        /* The rest is the caller's bytes: scan them in place. */
        size_t off = (size_t)(sc->u - sc->buf.data) - sc->chunk_at;
        sc->u = sc->chunk + off;
        sc->in_buf = 0;
        strbuf_reset(&sc->buf);
    }
}

static void stream_reset(xml_scan_t *sc)
{
    sc->phase = PH_PROLOG;
    sc->st = S_PROLOG;
    sc->bom = 0;
    sc->bom_done = 0;
    sc->unsure = 0;
    sc->depth = 0;
    sc->text_run = 0;
    sc->natt = 0;
    free(sc->root_q);
    sc->root_q = NULL;
    sc->root_qlen = 0;
    ns_reset(sc);
}

/* Runs after a callback: a restart or stop it asked for. Returns 0 or
 * XSCAN_STOPPED. */
static int after_cb(xml_scan_t *sc, size_t end)
{
    sc->in_cb = 0;
    if (sc->stop_req) {
        sc->stop_req = 0;
        if (sc->stop_after)
            unit_advance(sc, end);
        sc->err = XSCAN_STOPPED;
        snprintf(sc->errtext, sizeof sc->errtext, "stopped");
        return XSCAN_STOPPED;
    }
    unit_advance(sc, end);
    if (sc->restart_req) {
        sc->restart_req = 0;
        stream_reset(sc);
    }
    return 0;
}

/* ---- attribute values ---- */

/* Decodes the reference at r (already checked) into o; returns its length
 * in r. */
static size_t ref_decode(const char *r, char *o, size_t *olen)
{
    size_t i = 1;
    if (r[1] == '#') {
        uint32_t v = 0;
        if (r[2] == 'x') {
            for (i = 3; r[i] != ';'; i++)
                v = v * 16 + (uint32_t)hexval((unsigned char)r[i]);
        } else {
            for (i = 2; r[i] != ';'; i++)
                v = v * 10 + (uint32_t)(r[i] - '0');
        }
        *olen = (size_t)xml_scan_utf8_put(v, o);
    } else {
        while (r[i] != ';')
            i++;
        o[0] = predefined(r + 1, i - 1);
        *olen = 1;
    }
    return i + 1;
}

/* Writes attribute a's value at o as expat reports it: references
 * replaced, tab, LF, CR and CR LF each turned into one space. The result is
 * never longer than the raw value. Returns the end. */
static char *att_decode(const char *s, const xattr_t *a, char *o)
{
    const char *v = s + a->val, *e = v + a->vlen;
    if (!(a->flags & (A_REF | A_NORM))) {
        memcpy(o, v, a->vlen);
        return o + a->vlen;
    }
    while (v < e) {
        char c = *v;
        if (c == '&') {
            size_t tl;
            v += ref_decode(v, o, &tl);
            o += tl;
            continue;
        }
        if (c == '\t' || c == '\n' || c == '\r') {
            if (c == '\r' && v + 1 < e && v[1] == '\n')
                v++;
            c = ' ';
        }
        *o++ = c;
        v++;
    }
    return o;
}

/* ---- tags ---- */

static xattr_t *att_new(xml_scan_t *sc, size_t at)
{
    if (sc->natt == sc->catt) {
        sc->catt = sc->catt ? 2 * sc->catt : 16;
        sc->att = xrealloc(sc->att, sc->catt * sizeof *sc->att);
    }
    xattr_t *a = &sc->att[sc->natt++];
    memset(a, 0, sizeof *a);
    a->name = at;
    return a;
}

/* Builds the reported form of the current tag in out: its namespace, local
 * name and attributes as NUL-terminated strings, offsets in oo. */
static void out_build(xml_scan_t *sc, const nsbind_t *eb)
{
    const char *s = sc->u;
    const char *nsa = sc->nsa.data;
    size_t k = 2 + 2 * sc->natt + 1;
    if (k > sc->cout) {
        sc->cout = 2 * k;
        sc->oo = xrealloc(sc->oo, sc->cout * sizeof *sc->oo);
        sc->attv = xrealloc(sc->attv, sc->cout * sizeof *sc->attv);
    }
    /* Raw lengths bound decoded ones. */
    size_t need = (eb ? eb->ulen : 0) + sc->nlen + 2;
    for (size_t i = 0; i < sc->natt; i++) {
        const xattr_t *a = &sc->att[i];
        need += a->nlen + a->vlen + 3 + (a->colon ? sc->nsb[a->bind].ulen : 0);
    }
    strbuf_reset(&sc->out);
    strbuf_reserve(&sc->out, need);
    char *base = sc->out.data, *o = base;
    size_t *oo = sc->oo;
    k = 0;
    oo[k++] = 0;
    if (eb) {
        memcpy(o, nsa + eb->uri, eb->ulen);
        o += eb->ulen;
    }
    *o++ = '\0';
    oo[k++] = (size_t)(o - base);
    memcpy(o, s + sc->name + sc->colon, sc->nlen - sc->colon);
    o += sc->nlen - sc->colon;
    *o++ = '\0';
    for (size_t i = 0; i < sc->natt; i++) {
        const xattr_t *a = &sc->att[i];
        if (a->flags & A_DECL)
            continue;
        oo[k++] = (size_t)(o - base);
        if (a->colon) {
            const nsbind_t *b = &sc->nsb[a->bind];
            memcpy(o, nsa + b->uri, b->ulen);
            o += b->ulen;
            *o++ = '|';
        }
        memcpy(o, s + a->name + a->colon, a->nlen - a->colon);
        o += a->nlen - a->colon;
        *o++ = '\0';
        oo[k++] = (size_t)(o - base);
        o = att_decode(s, a, o);
        *o++ = '\0';
    }
    sc->out.len = (size_t)(o - base) - 1;
    sc->nout = k;
}

static void out_elem(xml_scan_t *sc, xscan_elem_t *el, size_t len)
{
    for (size_t i = 2; i < sc->nout; i++)
        sc->attv[i - 2] = sc->out.data + sc->oo[i];
    sc->attv[sc->nout - 2] = NULL;
    el->ns = sc->out.data + sc->oo[0];
    el->name = sc->out.data + sc->oo[1];
    el->attrs = sc->attv;
    el->bytes = sc->u;
    el->len = len;
    el->unsure = sc->unsure;
}

/* Namespace declaration checks, as expat's addBinding makes them. */
static int decl_check(xml_scan_t *sc, const char *pfx, size_t plen, const char *uri, size_t ulen)
{
    static const char xmlns_ns[] = XML_NS_XMLNS;
    if (plen && !ulen)
        return scan_fail(sc, XS_ERR_NOT_WELL_FORMED, "must not undeclare prefix");
    if (plen == 5 && !memcmp(pfx, "xmlns", 5))
        return scan_fail(sc, XS_ERR_NOT_WELL_FORMED, "reserved prefix (xmlns) must not be declared");
    int must_xml = plen == 3 && !memcmp(pfx, "xml", 3);
    int is_xml = ulen == strlen(XML_NS_XML) && !memcmp(uri, XML_NS_XML, ulen);
    if (must_xml != is_xml)
        return scan_fail(sc, XS_ERR_NOT_WELL_FORMED, "reserved prefix or namespace name misused");
    if (ulen == sizeof xmlns_ns - 1 && !memcmp(uri, xmlns_ns, ulen))
        return scan_fail(sc, XS_ERR_NOT_WELL_FORMED, "reserved namespace name bound");
    return 0;
}

static int ns_for(xml_scan_t *sc, const char *q, size_t colon, long *bi)
{
    *bi = ns_find(sc, q, colon ? colon - 1 : 0);
    if (colon && (*bi < 0 || sc->nsb[*bi].ulen == 0))
        return scan_fail(sc, XS_ERR_NOT_WELL_FORMED, "unbound prefix");
    return 0;
}

static int stag_done(xml_scan_t *sc, size_t end, int empty);
static int etag_done(xml_scan_t *sc, size_t end);

/* The start tag ending at end (just after '>') is lexically complete. */
static int stag_done(xml_scan_t *sc, size_t end, int empty)
{
    const char *s = sc->u;
    int root = sc->phase == PH_PROLOG;
    size_t nsmark = sc->nnsb, amark = sc->nsa.len;
    strbuf_t *tmp = &sc->tmp;

    for (size_t i = 0; i < sc->natt; i++) {
        xattr_t *a = &sc->att[i];
        const char *an = s + a->name;
        for (size_t j = 0; j < i; j++) {
            const char *bn = s + sc->att[j].name;
            if (sc->att[j].nlen == a->nlen && bn[0] == an[0] && !memcmp(bn, an, a->nlen))
                return scan_fail(sc, XS_ERR_NOT_WELL_FORMED, "duplicate attribute");
        }
        if (a->ref_err)
            return scan_fail(sc, a->ref_err, a->ref_err == XS_ERR_RESTRICTED ?
                             "undefined entity" : "reference to invalid character number");
        int decl = an[0] == 'x' && (a->nlen == 5 || (a->nlen > 5 && a->colon == 6)) &&
                   !memcmp(an, "xmlns", 5);
        if (!decl)
            continue;
        a->flags |= A_DECL;
        strbuf_reset(tmp);
        strbuf_reserve(tmp, a->vlen + 1);
        tmp->len = (size_t)(att_decode(s, a, tmp->data) - tmp->data);
        tmp->data[tmp->len] = '\0';
        const char *pfx = s + a->name + 6;
        size_t plen = a->nlen == 5 ? 0 : a->nlen - 6;
        if (decl_check(sc, pfx, plen, tmp->data, tmp->len))
            return sc->err;
        ns_push(sc, pfx, plen, tmp->data, tmp->len);
    }
    for (size_t i = 0; i < sc->natt; i++) {
        xattr_t *a = &sc->att[i];
        if (!a->colon || (a->flags & A_DECL))
            continue;
        long bi;
        if (ns_for(sc, s + a->name, a->colon, &bi))
            return sc->err;
        a->bind = (size_t)bi;
        const nsbind_t *b = &sc->nsb[bi];
        for (size_t j = 0; j < i; j++) {
            const xattr_t *o = &sc->att[j];
            if (!o->colon || (o->flags & A_DECL) || o->nlen - o->colon != a->nlen - a->colon ||
                memcmp(s + o->name + o->colon, s + a->name + a->colon, a->nlen - a->colon))
                continue;
            const nsbind_t *ob = &sc->nsb[o->bind];
            if (ob->ulen == b->ulen && !memcmp(sc->nsa.data + ob->uri, sc->nsa.data + b->uri, b->ulen))
                return scan_fail(sc, XS_ERR_NOT_WELL_FORMED, "duplicate attribute");
        }
    }
    long ebi;
    if (ns_for(sc, s + sc->name, sc->colon, &ebi))
        return sc->err;
    const nsbind_t *eb = ebi >= 0 && sc->nsb[ebi].ulen ? &sc->nsb[ebi] : NULL;

    /* xml_stream's limits, in its order. */
    if (sc->natt > sc->lim.max_attrs)
        return scan_fail(sc, XS_ERR_POLICY, "more than %u attributes", sc->lim.max_attrs);
    for (size_t i = 0; i < sc->natt; i++)
        if (!(sc->att[i].flags & A_DECL) && sc->att[i].dlen > sc->lim.max_text)
            return scan_fail(sc, XS_ERR_POLICY, "attribute value exceeds %zu bytes", sc->lim.max_text);
    if (root) {
        if (end > sc->lim.max_header_bytes)
            return scan_fail(sc, XS_ERR_POLICY, "stream header exceeds %zu bytes",
                             sc->lim.max_header_bytes);
        if (!eb || strcmp(sc->nsa.data + eb->uri, XML_NS_STREAM) ||
            sc->nlen - sc->colon != 6 || memcmp(s + sc->name + sc->colon, "stream", 6))
            return scan_fail(sc, XS_ERR_BAD_NS, "root element is not {%s}stream", XML_NS_STREAM);
    } else {
        if (sc->depth + 1 > sc->lim.max_depth)
            return scan_fail(sc, XS_ERR_POLICY, "nesting deeper than %u", sc->lim.max_depth);
        if (eb && eb->ulen == strlen(XML_NS_XML) && !memcmp(sc->nsa.data + eb->uri, XML_NS_XML, eb->ulen))
            return scan_fail(sc, XS_ERR_NOT_WELL_FORMED, "element in the reserved xml namespace");
        if (end > sc->lim.max_stanza_bytes)
            return scan_fail(sc, XS_ERR_POLICY, "element exceeds %zu bytes", sc->lim.max_stanza_bytes);
    }
    sc->text_run = 0;

    if (root) {
        long di = ns_find(sc, "", 0);
        const char *dns = di >= 0 ? sc->nsa.data + sc->nsb[di].uri : "";
        out_build(sc, eb);
        sc->root_q = xstrndup(s + sc->name, sc->nlen);
        sc->root_qlen = sc->nlen;
        sc->phase = PH_CONTENT;
        sc->st = S_TEXT;
        xscan_elem_t el;
        out_elem(sc, &el, end);
        sc->in_cb = 1;
        if (sc->cb.on_header)
            sc->cb.on_header(sc->ctx, &el, dns);
        int r = after_cb(sc, end);
        if (r || !empty || sc->phase != PH_CONTENT)
            return r;
        /* <stream:stream/>: the stream ends with its header. */
        sc->phase = PH_CLOSED;
        sc->in_cb = 1;
        if (sc->cb.on_close)
            sc->cb.on_close(sc->ctx, sc->u, 0);
        return after_cb(sc, 0);
    }
    sc->st = S_TEXT;
    if (sc->depth == 0)
        out_build(sc, eb);
    if (empty) {
        sc->nnsb = nsmark;
        sc->nsa.len = amark;
        sc->nsa.data[amark] = '\0';
        if (sc->depth > 0)
            return 0;
        xscan_elem_t el;
        out_elem(sc, &el, end);
        sc->in_cb = 1;
        if (sc->cb.on_element)
            sc->cb.on_element(sc->ctx, &el);
        return after_cb(sc, end);
    }
    if (sc->depth == sc->copen) {
        sc->copen = sc->copen ? 2 * sc->copen : 16;
        sc->open = xrealloc(sc->open, sc->copen * sizeof *sc->open);
    }
    xopen_t *o = &sc->open[sc->depth++];
    o->name = sc->name;
    o->nlen = sc->nlen;
    o->nsmark = nsmark;
    o->amark = amark;
    return 0;
}

/* The end tag ending at end is lexically complete. */
static int etag_done(xml_scan_t *sc, size_t end)
{
    const char *s = sc->u;
    if (sc->depth == 0) {
        if (sc->nlen != sc->root_qlen || memcmp(s + sc->name, sc->root_q, sc->nlen))
            return scan_fail(sc, XS_ERR_NOT_WELL_FORMED, "mismatched tag");
        sc->phase = PH_CLOSED;
        sc->in_cb = 1;
        if (sc->cb.on_close)
            sc->cb.on_close(sc->ctx, s, end);
        return after_cb(sc, end);
    }
    xopen_t *o = &sc->open[sc->depth - 1];
    if (sc->nlen != o->nlen || memcmp(s + sc->name, s + o->name, sc->nlen))
        return scan_fail(sc, XS_ERR_NOT_WELL_FORMED, "mismatched tag");
    if (end > sc->lim.max_stanza_bytes)
        return scan_fail(sc, XS_ERR_POLICY, "element exceeds %zu bytes", sc->lim.max_stanza_bytes);
    sc->text_run = 0;
    sc->nnsb = o->nsmark;
    sc->nsa.len = o->amark;
    sc->nsa.data[o->amark] = '\0';
    sc->st = S_TEXT;
    if (--sc->depth > 0)
        return 0;
    xscan_elem_t el;
    out_elem(sc, &el, end);
    sc->in_cb = 1;
    if (sc->cb.on_element)
        sc->cb.on_element(sc->ctx, &el);
    return after_cb(sc, end);
}

/* ---- the state machine ---- */

#define NEED() goto need
/* Needs k more bytes (from p) to go on. */
#define WANT(k) do { if (n - p < (size_t)(k)) NEED(); } while (0)
/* Skips white space and needs a byte after it. */
#define SKIP_WS() do { while (p < n && (xml_scan_cc[s[p]] & K_WS)) p++; WANT(1); } while (0)
#define FAIL(e, ...) do { sc->p = p; return scan_fail(sc, e, __VA_ARGS__); } while (0)
#define UNSURE(what) FAIL(XSCAN_UNSURE, "not judged: %s", what)
#define RET() do { sc->p = p; return sc->err; } while (0)
/* Goes on in another state without the trip through the dispatch. */
#define GO(S) do { sc->st = (S); goto L_##S; } while (0)
/* After a tag: character data follows, unless a callback restarted or the
 * stream ended. */
#define STEP_TAG(call) do { STEP(call); if (sc->phase == PH_CONTENT) goto L_S_TEXT; } while (0)
#define RELOAD() (s = (const unsigned char *)sc->u, n = sc->n, p = sc->p)
/* Runs a step that may call back (and so move the unit), then reloads. */
#define STEP(call) do { sc->p = p; int r_ = (call); if (r_) return r_; RELOAD(); } while (0)

/* One character in character data or a comment/PI/CDATA body whose first
 * byte needed attention: 0 and its length in *len, 1 if more bytes are
 * needed, or an error (negative). */
static int char_check(xml_scan_t *sc, const unsigned char *s, size_t p, size_t n, size_t *len)
{
    unsigned c = s[p];
    if (c < 0x80) {
        if (c == '\t' || c == '\n' || c == '\r' || c >= 0x20) {
            *len = 1;
            return 0;
        }
        return scan_fail(sc, XS_ERR_NOT_WELL_FORMED, "invalid character 0x%02x", c);
    }
    int l = utf8_len(c);
    if (!l)
        return scan_fail(sc, XS_ERR_NOT_WELL_FORMED, "invalid UTF-8");
    if (n - p < (size_t)l)
        return 1;
    if (xml_scan_utf8_bad(s + p, l))
        return scan_fail(sc, XS_ERR_NOT_WELL_FORMED, "invalid UTF-8 or character");
    *len = (size_t)l;
    return 0;
}

/* A non-ASCII character in a name. The scanner does not judge it (expat's
 * name tables are not copied): it only checks the UTF-8 and marks the unit
 * unsure. 0 and its length in *len, 1 if more bytes are needed, or an
 * error. */
static int name_nonascii(xml_scan_t *sc, const unsigned char *s, size_t p, size_t n, size_t *len)
{
    int l = utf8_len(s[p]);
    if (!l)
        return scan_fail(sc, XS_ERR_NOT_WELL_FORMED, "invalid UTF-8 in a name");
    if (n - p < (size_t)l)
        return 1;
    if (xml_scan_utf8_bad(s + p, l))
        return scan_fail(sc, XS_ERR_NOT_WELL_FORMED, "invalid UTF-8 in a name");
    sc->unsure = 1;
    *len = (size_t)l;
    return 0;
}

/* Skips name characters (ASCII ones matching ok, non-ASCII ones through
 * name_nonascii). */
#define NAME_RUN(ok)                                   \
    for (;;) {                                         \
        while (p < n && (ok))                          \
            p++;                                       \
        if (p >= n || s[p] < 0x80)                     \
            break;                                     \
        r = name_nonascii(sc, s, p, n, &len);          \
        if (r > 0)                                     \
            NEED();                                    \
        if (r)                                         \
            return r;                                  \
        p += len;                                      \
    }

/* Character data counts toward xml_stream's text and element limits. */
static int text_count(xml_scan_t *sc, size_t add, size_t pos)
{
    sc->text_run += add;
    if (sc->text_run > sc->lim.max_text)
        return scan_fail(sc, XS_ERR_POLICY, "text exceeds %zu bytes", sc->lim.max_text);
    if (pos > sc->lim.max_stanza_bytes)
        return scan_fail(sc, XS_ERR_POLICY, "element exceeds %zu bytes", sc->lim.max_stanza_bytes);
    return 0;
}

static int after_markup(xml_scan_t *sc)
{
    return sc->phase == PH_PROLOG ? S_PROLOG : S_TEXT;
}

static int scan(xml_scan_t *sc)
{
    const unsigned char *s;
    size_t n, p, len;
    int r;
    RELOAD();
    for (;;) {
        if (sc->phase == PH_CLOSED) {
            for (; p < n; p++)
                if (s[p] != ' ' && s[p] != '\t' && s[p] != '\r' && s[p] != '\n')
                    FAIL(XS_ERR_CLOSED, "data after </stream:stream>");
            sc->p = p;
            unit_advance(sc, p);
            return 0;
        }
        switch (sc->st) {
        case S_PROLOG:
            if (!sc->bom_done) {
                /* Expat would take these first bytes for UTF-16, whatever
                 * encoding it was told; XMPP is UTF-8 only. Like expat,
                 * decide on the second byte only when it is there or the
                 * first is one that could start a BOM or '<' in UTF-16. */
                WANT(1);
                if (n < 2 && (s[0] == '<' || s[0] == 0xEF))
                    NEED();
                if (xml_scan_utf16(sc->u, n))
                    FAIL(XS_ERR_ENCODING, "the stream is not UTF-8");
                if (s[0] == 0xEF) {
                    if (n < 3)
                        NEED();
                    if (s[1] != 0xBB || s[2] != 0xBF)
                        UNSURE("non-ASCII in the prolog");
                    sc->bom = p = 3;
                }
                sc->bom_done = 1;
            }
            SKIP_WS();
            if (s[p] != '<')
                UNSURE("text in the prolog");
            p++;
            GO(S_LT);

        case S_TEXT: L_S_TEXT: {
            /* Character data. Expat reports it per token: a run ends at a
             * newline, a reference, markup, a character it has to look at,
             * or the end of the input, and is counted then (inside an
             * element); a run that turns out to hold "]]>" is never
             * reported. Between top-level elements (usually white space)
             * nothing is counted and each character is a unit of its own. */
            int top = sc->depth == 0;
            size_t pend = 0;
#define FLUSH() do { if (pend && text_count(sc, pend, p)) RET(); pend = 0; } while (0)
            for (;;) {
                if (top) {
                    sc->p = p;
                    unit_advance(sc, p);
                    RELOAD();
                }
                size_t q = skip_plain(s, p, n, '<', '&', ']');
                while (q < n && (xml_scan_cc[s[q]] & K_TEXT))
                    q++;
                pend += top ? 0 : q - p;
                p = q;
                if (top && p > 0)
                    continue;   /* a new unit at p */
                if (p >= n) {
                    FLUSH();
                    NEED();
                }
                unsigned c = s[p];
                if (c == ']') {
                    if (n - p < 2 || (s[p + 1] == ']' && n - p < 3)) {
                        FLUSH();
                        NEED();
                    }
                    if (s[p + 1] == ']' && s[p + 2] == '>')
                        FAIL(XS_ERR_NOT_WELL_FORMED, "']]>' in character data");
                    p++;
                    pend += !top;
                    continue;
                }
                if (c >= 0x80) {
                    /* A complete valid character stays in the run;
                     * otherwise the run is reported first. */
                    int l = utf8_len(c);
                    if (l && n - p >= (size_t)l && !xml_scan_utf8_bad(s + p, l)) {
                        p += (size_t)l;
                        pend += top ? 0 : (size_t)l;
                        continue;
                    }
                }
                FLUSH();
                if (c == '<') {
                    p++;
                    GO(S_LT);
                }
                if (c == '&') {
                    sc->ref = p++;
                    sc->ref_ctx = top ? RC_TOP : RC_TEXT;
                    GO(S_REF);
                }
                if (c == '\r' || c == '\n') {
                    if (c == '\r')
                        WANT(2);
                    p += c == '\r' && s[p + 1] == '\n' ? 2 : 1;
                    if (!top && text_count(sc, 1, p))
                        RET();
                    continue;
                }
                r = char_check(sc, s, p, n, &len);
                if (r > 0)
                    NEED();
                return r;
            }
#undef FLUSH
        }

        case S_LT: L_S_LT: {
            WANT(1);
            unsigned c = s[p];
            if ((xml_scan_cc[c] & K_NMSTRT) || c >= 0x80) {
                /* The name run below reads (and judges) the first character. */
                sc->name = p;
                sc->had_colon = 0;
                sc->colon = 0;
                sc->natt = 0;
                GO(S_STAG_NAME);
            } else if (c == '/' && sc->phase == PH_CONTENT) {
                p++;
                GO(S_ETAG_START);
            } else if (c == '!') {
                sc->mark = p - 1;
                p++;
                GO(S_BANG);
            } else if (c == '?') {
                sc->mark = p - 1;
                p++;
                GO(S_PI_START);
            } else {
                FAIL(XS_ERR_NOT_WELL_FORMED, "invalid character after '<'");
            }
            break;
        }

        case S_STAG_NAME: L_S_STAG_NAME:
        case S_ATT_NAME: L_S_ATT_NAME: {
            /* A QName: at most one colon, each part starting with a name
             * start character. */
            for (;;) {
                NAME_RUN(xml_scan_cc[s[p]] & K_NAME);
                WANT(1);
                if (s[p] != ':')
                    break;
                if (sc->had_colon)
                    FAIL(XS_ERR_NOT_WELL_FORMED, "more than one colon in a name");
                WANT(2);
                if (!(xml_scan_cc[s[p + 1]] & K_NMSTRT) && s[p + 1] < 0x80)
                    FAIL(XS_ERR_NOT_WELL_FORMED, "bad character after a colon");
                sc->had_colon = 1;
                if (sc->st == S_STAG_NAME)
                    sc->colon = p - sc->name + 1;
                else
                    sc->att[sc->natt - 1].colon = p - sc->att[sc->natt - 1].name + 1;
                p++;
            }
            unsigned c = s[p];
            if (sc->st == S_ATT_NAME) {
                xattr_t *a = &sc->att[sc->natt - 1];
                a->nlen = p - a->name;
                p++;
                if (xml_scan_cc[c] & K_WS)
                    GO(S_ATT_NAME_SP);
                if (c == '=')
                    GO(S_ATT_EQ);
                FAIL(XS_ERR_NOT_WELL_FORMED, "bad character in an attribute name");
            }
            sc->nlen = p - sc->name;
            p++;
            if (xml_scan_cc[c] & K_WS)
                GO(S_STAG_SP);
            else if (c == '/')
                GO(S_STAG_SLASH);
            else if (c == '>')
                STEP_TAG(stag_done(sc, p, 0));
            else
                FAIL(XS_ERR_NOT_WELL_FORMED, "bad character in an element name");
            break;
        }

        case S_STAG_SP: L_S_STAG_SP: {
            SKIP_WS();
            unsigned c = s[p];
            if ((xml_scan_cc[c] & K_NMSTRT) || c >= 0x80) {
                att_new(sc, p);
                sc->had_colon = 0;
                GO(S_ATT_NAME);
            } else if (c == '>') {
                p++;
                STEP_TAG(stag_done(sc, p, 0));
            } else if (c == '/') {
                p++;
                GO(S_STAG_SLASH);
            } else {
                FAIL(XS_ERR_NOT_WELL_FORMED, "bad character in a start tag");
            }
            break;
        }

        case S_ATT_NAME_SP: L_S_ATT_NAME_SP:
            SKIP_WS();
            if (s[p] != '=')
                FAIL(XS_ERR_NOT_WELL_FORMED, "'=' expected");
            p++;
            GO(S_ATT_EQ);

        case S_ATT_EQ: L_S_ATT_EQ:
            SKIP_WS();
            if (s[p] != '\'' && s[p] != '"')
                FAIL(XS_ERR_NOT_WELL_FORMED, "quote expected");
            sc->quote = (char)s[p++];
            sc->att[sc->natt - 1].val = p;
            GO(S_ATT_VAL);

        case S_ATT_VAL: L_S_ATT_VAL: {
            xattr_t *a = &sc->att[sc->natt - 1];
            for (;;) {
                size_t q = skip_plain(s, p, n, '<', '&', sc->quote);
                while (q < n && (xml_scan_cc[s[q]] & K_ATTR))
                    q++;
                a->dlen += q - p;
                p = q;
                WANT(1);
                unsigned c = s[p];
                if (c == (unsigned char)sc->quote) {
                    a->vlen = p - a->val;
                    p++;
                    GO(S_ATT_AFTER);
                }
                if (c == '\'' || c == '"') {
                    p++;
                    a->dlen++;
                } else if (c == '&') {
                    sc->ref = p++;
                    sc->ref_ctx = RC_ATTR;
                    GO(S_REF);
                } else if (c == '<') {
                    FAIL(XS_ERR_NOT_WELL_FORMED, "'<' in an attribute value");
                } else if (c == '\r') {
                    WANT(2);
                    p += s[p + 1] == '\n' ? 2 : 1;
                    a->flags |= A_NORM;
                    a->dlen++;
                } else {
                    r = char_check(sc, s, p, n, &len);
                    if (r > 0)
                        NEED();
                    if (r)
                        return r;
                    if (c == '\t' || c == '\n')
                        a->flags |= A_NORM;
                    p += len;
                    a->dlen += len;
                }
            }
            break;
        }

        case S_ATT_AFTER: L_S_ATT_AFTER: {
            WANT(1);
            unsigned c = s[p++];
            if (xml_scan_cc[c] & K_WS)
                GO(S_STAG_SP);
            else if (c == '/')
                GO(S_STAG_SLASH);
            else if (c == '>')
                STEP_TAG(stag_done(sc, p, 0));
            else
                FAIL(XS_ERR_NOT_WELL_FORMED, "bad character after an attribute value");
            break;
        }

        case S_STAG_SLASH: L_S_STAG_SLASH:
            WANT(1);
            if (s[p] != '>')
                FAIL(XS_ERR_NOT_WELL_FORMED, "'>' expected after '/'");
            p++;
            STEP_TAG(stag_done(sc, p, 1));
            break;

        case S_ETAG_START: L_S_ETAG_START:
            WANT(1);
            if (!(xml_scan_cc[s[p]] & K_NMSTRT) && s[p] < 0x80)
                FAIL(XS_ERR_NOT_WELL_FORMED, "bad character in an end tag");
            sc->name = p;
            {
                /* Usually the name of the open element follows, then '>':
                 * compare it whole instead of reading it byte by byte. */
                const char *want = sc->depth ? (const char *)s + sc->open[sc->depth - 1].name : sc->root_q;
                size_t wl = sc->depth ? sc->open[sc->depth - 1].nlen : sc->root_qlen;
                if (n - p > wl && !memcmp(s + p, want, wl) &&
                    (s[p + wl] == '>' || (xml_scan_cc[s[p + wl]] & K_WS))) {
                    sc->nlen = wl;
                    p += wl + 1;
                    if (s[p - 1] != '>')
                        GO(S_ETAG_SP);
                    STEP_TAG(etag_done(sc, p));
                    break;
                }
            }
            GO(S_ETAG_NAME);

        case S_ETAG_NAME: L_S_ETAG_NAME: {
            NAME_RUN((xml_scan_cc[s[p]] & K_NAME) || s[p] == ':');
            WANT(1);
            unsigned c = s[p];
            sc->nlen = p - sc->name;
            p++;
            if (xml_scan_cc[c] & K_WS)
                GO(S_ETAG_SP);
            else if (c == '>')
                STEP_TAG(etag_done(sc, p));
            else
                FAIL(XS_ERR_NOT_WELL_FORMED, "bad character in an end tag");
            break;
        }

        case S_ETAG_SP: L_S_ETAG_SP:
            SKIP_WS();
            if (s[p] != '>')
                FAIL(XS_ERR_NOT_WELL_FORMED, "'>' expected in an end tag");
            p++;
            STEP_TAG(etag_done(sc, p));
            break;

        case S_BANG: L_S_BANG:
            WANT(1);
            if (s[p] == '-') {
                p++;
                GO(S_COMMENT_DASH);
            } else if (sc->phase == PH_PROLOG) {
                UNSURE("declaration in the prolog");
            } else if (s[p] == '[') {
                p++;
                sc->st = S_CDATA_OPEN;
            } else {
                FAIL(XS_ERR_NOT_WELL_FORMED, "bad character after '<!'");
            }
            break;

        case S_COMMENT_DASH: L_S_COMMENT_DASH:
            WANT(1);
            if (s[p] != '-')
                FAIL(XS_ERR_NOT_WELL_FORMED, "'-' expected");
            p++;
            GO(S_COMMENT);

        case S_COMMENT: L_S_COMMENT:
            for (;;) {
                while (p < n && (xml_scan_cc[s[p]] & K_CMT))
                    p++;
                WANT(1);
                if (s[p] == '-') {
                    if (n - p < 2 || (s[p + 1] == '-' && n - p < 3))
                        NEED();
                    if (s[p + 1] != '-') {
                        p++;
                        continue;
                    }
                    if (s[p + 2] != '>')
                        FAIL(XS_ERR_NOT_WELL_FORMED, "'--' in a comment");
                    p += 3;
                    break;
                }
                r = char_check(sc, s, p, n, &len);
                if (r > 0)
                    NEED();
                if (r)
                    return r;
                p += len;
            }
            if (!sc->lim.allow_comments)
                FAIL(XS_ERR_RESTRICTED, "comments are not allowed");
            sc->st = after_markup(sc);
            break;

        case S_CDATA_OPEN:
            if (n - p < 6)
                NEED();
            if (memcmp(s + p, "CDATA[", 6))
                FAIL(XS_ERR_NOT_WELL_FORMED, "bad CDATA section");
            p += 6;
            GO(S_CDATA);

        case S_CDATA: L_S_CDATA:
            for (;;) {
                size_t q = p;
                while (q < n && (xml_scan_cc[s[q]] & K_CDATA))
                    q++;
                if (q > p && sc->depth == 0)
                    sc->keep = q;   /* see the end of xml_scan_feed */
                else if (q > p && text_count(sc, q - p, q))
                    RET();
                p = q;
                WANT(1);
                unsigned c = s[p];
                if (c == ']') {
                    if (n - p < 2 || (s[p + 1] == ']' && n - p < 3))
                        NEED();
                    if (s[p + 1] == ']' && s[p + 2] == '>') {
                        p += 3;
                        break;
                    }
                    p++;
                    len = 1;
                } else if (c == '\r') {
                    WANT(2);
                    p += s[p + 1] == '\n' ? 2 : 1;
                    len = 1;
                } else {
                    r = char_check(sc, s, p, n, &len);
                    if (r > 0)
                        NEED();
                    if (r)
                        return r;
                    p += len;
                }
                if (sc->depth == 0)
                    sc->keep = p;
                else if (text_count(sc, len, p))
                    RET();
            }
            sc->st = S_TEXT;
            break;

        case S_PI_START: L_S_PI_START:
            WANT(1);
            if (!(xml_scan_cc[s[p]] & K_NMSTRT) && s[p] < 0x80)
                FAIL(XS_ERR_NOT_WELL_FORMED, "bad processing instruction target");
            sc->name = p;
            GO(S_PI_TARGET);

        case S_PI_TARGET: L_S_PI_TARGET: {
            NAME_RUN(xml_scan_cc[s[p]] & K_NAME);
            WANT(1);
            unsigned c = s[p];
            if (!(xml_scan_cc[c] & K_WS) && c != '?')
                FAIL(XS_ERR_NOT_WELL_FORMED, "bad character in a processing instruction target");
            size_t tl = p - sc->name;
            const unsigned char *t = s + sc->name;
            sc->pi_kind = 0;
            if (tl == 3 && (t[0] | 0x20) == 'x' && (t[1] | 0x20) == 'm' && (t[2] | 0x20) == 'l') {
                if (t[0] != 'x' || t[1] != 'm' || t[2] != 'l')
                    FAIL(XS_ERR_NOT_WELL_FORMED, "reserved processing instruction target");
                sc->pi_kind = 1;
            }
            sc->pi_body = p;
            p++;
            sc->st = c == '?' ? S_PI_QUEST : S_PI_BODY;
            break;
        }

        case S_PI_QUEST:
        case S_PI_BODY:
            if (sc->st == S_PI_QUEST) {
                WANT(1);
                if (s[p] != '>')
                    FAIL(XS_ERR_NOT_WELL_FORMED, "'>' expected after '?'");
                p++;
            } else {
                for (;;) {
                    while (p < n && (xml_scan_cc[s[p]] & K_PI))
                        p++;
                    WANT(1);
                    if (s[p] == '?') {
                        WANT(2);
                        p++;
                        if (s[p] == '>') {
                            p++;
                            break;
                        }
                        continue;
                    }
                    r = char_check(sc, s, p, n, &len);
                    if (r > 0)
                        NEED();
                    if (r)
                        return r;
                    p += len;
                }
            }
            if (!sc->pi_kind)
                FAIL(XS_ERR_RESTRICTED, "processing instructions are not allowed");
            if (sc->phase != PH_PROLOG || sc->mark != sc->bom)
                FAIL(XS_ERR_NOT_WELL_FORMED, "XML declaration not at start of entity");
            {
                const char *enc;
                size_t elen;
                if (!xml_scan_xmldecl_ok((const char *)s + sc->pi_body, (const char *)s + p - 2,
                                         &enc, &elen))
                    FAIL(XS_ERR_NOT_WELL_FORMED, "XML declaration not well-formed");
                /* XMPP is UTF-8 only (RFC 6120 section 11.6), as in xml_stream. */
                if (enc && !(elen == 5 && !strncasecmp(enc, "UTF-8", 5)))
                    FAIL(XS_ERR_ENCODING, "encoding '%.*s' is not supported (UTF-8 only)",
                         elen > 64 ? 64 : (int)elen, enc);
            }
            sc->st = S_PROLOG;
            break;

        case S_REF: L_S_REF: {
            WANT(1);
            unsigned c = s[p];
            if (c == '#' || (xml_scan_cc[c] & K_NMSTRT))
                p++;
            else if (c < 0x80)
                FAIL(XS_ERR_NOT_WELL_FORMED, "bad reference");
            sc->st = c == '#' ? S_REF_HASH : S_REF_NAME;
            sc->ref_val = 0;
            sc->ref_big = 0;
            break;
        }

        case S_REF_NAME:
        case S_REF_HASH:
        case S_REF_DEC:
        case S_REF_HEX0:
        case S_REF_HEX: {
            int bad = 0;
            uint32_t ch = 0;
            if (sc->st == S_REF_NAME) {
                NAME_RUN(xml_scan_cc[s[p]] & K_NAME);
                WANT(1);
                if (s[p] != ';')
                    FAIL(XS_ERR_NOT_WELL_FORMED, "bad reference");
                char pc = predefined((const char *)s + sc->ref + 1, p - sc->ref - 1);
                if (!pc)
                    bad = XS_ERR_RESTRICTED;
                ch = (unsigned char)pc;
            } else {
                if (sc->st == S_REF_HASH || sc->st == S_REF_HEX0) {
                    WANT(1);
                    if (sc->st == S_REF_HASH && s[p] == 'x') {
                        p++;
                        sc->st = S_REF_HEX0;
                        break;
                    }
                    int d = sc->st == S_REF_HASH ? (s[p] >= '0' && s[p] <= '9' ? s[p] - '0' : -1)
                                                 : hexval(s[p]);
                    if (d < 0)
                        FAIL(XS_ERR_NOT_WELL_FORMED, "bad character reference");
                    sc->ref_val = (uint32_t)d;
                    sc->st = sc->st == S_REF_HASH ? S_REF_DEC : S_REF_HEX;
                    p++;
                }
                uint32_t base = sc->st == S_REF_DEC ? 10 : 16;
                for (;;) {
                    WANT(1);
                    int d = base == 10 ? (s[p] >= '0' && s[p] <= '9' ? s[p] - '0' : -1) : hexval(s[p]);
                    if (d < 0)
                        break;
                    if (!sc->ref_big) {
                        sc->ref_val = sc->ref_val * base + (uint32_t)d;
                        if (sc->ref_val >= 0x110000)
                            sc->ref_big = 1;
                    }
                    p++;
                }
                if (s[p] != ';')
                    FAIL(XS_ERR_NOT_WELL_FORMED, "bad character reference");
                ch = sc->ref_val;
                if (sc->ref_big || !charref_ok(ch))
                    bad = XS_ERR_NOT_WELL_FORMED;
            }
            p++;
            if (sc->ref_ctx == RC_ATTR) {
                xattr_t *a = &sc->att[sc->natt - 1];
                if (bad && !a->ref_err)
                    a->ref_err = bad;
                a->flags |= A_REF;
                a->dlen += bad ? 1 : utf8_size(ch);
                GO(S_ATT_VAL);
            }
            if (bad)
                FAIL(bad, bad == XS_ERR_RESTRICTED ? "undefined entity" :
                     "reference to invalid character number");
            sc->st = S_TEXT;
            if (sc->ref_ctx == RC_TEXT && text_count(sc, utf8_size(ch), p))
                RET();
            break;
        }
        }
    }
need:
    sc->p = p;
    return 0;
}

/* ---- public: scanner ---- */

xml_scan_t *xml_scan_new(const xml_scan_cb_t *cb, void *ctx, const xml_limits_t *limits)
{
    xml_scan_classes_init();
    xml_scan_t *sc = xcalloc(1, sizeof *sc);
    if (cb)
        sc->cb = *cb;
    sc->ctx = ctx;
    if (limits)
        sc->lim = *limits;
    else
        xml_limits_default(&sc->lim);
    strbuf_init(&sc->buf);
    strbuf_init(&sc->nsa);
    strbuf_init(&sc->out);
    strbuf_init(&sc->tmp);
    stream_reset(sc);
    return sc;
}

void xml_scan_free(xml_scan_t *sc)
{
    if (!sc)
        return;
    strbuf_free(&sc->buf);
    strbuf_free(&sc->nsa);
    strbuf_free(&sc->out);
    strbuf_free(&sc->tmp);
    free(sc->att);
    free(sc->open);
    free(sc->nsb);
    free(sc->oo);
    free(sc->attv);
    free(sc->root_q);
    free(sc);
}

int xml_scan_feed(xml_scan_t *sc, const char *data, size_t len)
{
    if (sc->err)
        return sc->err;
    sc->chunk = data;
    if (sc->in_buf) {
        sc->chunk_at = sc->buf.len;
        strbuf_append(&sc->buf, data, len);
        sc->u = sc->buf.data;
        sc->n = sc->buf.len;
    } else {
        sc->u = data;
        sc->n = len;
        sc->p = 0;
    }
    int r = scan(sc);
    if (r)
        return r;
    /* xml_stream's check of what expat holds and has not reported yet. */
    if (sc->phase == PH_PROLOG && sc->n > sc->lim.max_header_bytes)
        return scan_fail(sc, XS_ERR_POLICY, "stream header exceeds %zu bytes",
                         sc->lim.max_header_bytes);
    if (sc->phase == PH_CONTENT && sc->n - sc->keep > sc->lim.max_stanza_bytes)
        return scan_fail(sc, XS_ERR_POLICY, "element exceeds %zu bytes", sc->lim.max_stanza_bytes);
    /* Keep the unfinished unit for the next feed. */
    if (!sc->n) {
        sc->in_buf = 0;
        strbuf_reset(&sc->buf);
    } else if (sc->in_buf) {
        strbuf_consume(&sc->buf, (size_t)(sc->u - sc->buf.data));
    } else {
        strbuf_reset(&sc->buf);
        strbuf_append(&sc->buf, sc->u, sc->n);
        sc->in_buf = 1;
    }
    sc->u = sc->buf.data;
    return 0;
}

void xml_scan_restart(xml_scan_t *sc)
{
    if (sc->in_cb) {
        sc->restart_req = 1;
        return;
    }
    sc->err = 0;
    sc->errtext[0] = '\0';
    sc->in_buf = 0;
    strbuf_reset(&sc->buf);
    sc->u = sc->buf.data;
    sc->n = sc->p = 0;
    stream_reset(sc);
}

void xml_scan_stop(xml_scan_t *sc, int after)
{
    if (!sc->in_cb)
        return;
    sc->stop_req = 1;
    sc->stop_after = after;
}

void xml_scan_pending(const xml_scan_t *sc, const char **bytes, size_t *len)
{
    *bytes = sc->u;
    *len = sc->n;
}

int xml_scan_unsure(const xml_scan_t *sc)
{
    return sc->unsure;
}

const char *xml_scan_error_text(const xml_scan_t *sc)
{
    return sc->err ? sc->errtext : "";
}
