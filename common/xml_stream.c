/* xml_stream: incremental, restricted XMPP stream parser on expat.
 *
 * Owns one expat parser (namespace processing on, separator '\x01', which XML
 * 1.0 forbids in documents so it can never occur in a namespace URI), the
 * partial tree of the current top-level element, and `in`: a copy of the fed
 * bytes the stream may still need, i.e. from the start of the current raw
 * element (for on_raw) or from the end of the last parse event (so a stream
 * restart can re-feed what follows). Everything before that is freed after
 * each feed.
 *
 * Offsets ("parser offsets") count bytes fed to the current expat parser, as
 * XML_GetCurrentByteIndex does; a restart starts a new parser at offset 0.
 * Invariants: in.data[0] is at parser offset in_base; in_base + in.len is the
 * number of bytes fed to the parser; in_base <= keep_from, and in_base <=
 * stanza_start while a raw element is open.
 *
 * The parser is created for UTF-8, which makes expat ignore the encoding an
 * XML declaration names: h_xmldecl refuses any but UTF-8, and a stream that
 * starts as UTF-16 is refused before expat sees it (RFC 6120 section 11.6).
 * It also refuses a version that is not '1.' and digits, which expat takes.
 *
 * Restricted XML is refused by handlers that stop the parser on the first
 * DOCTYPE, entity declaration, comment or processing instruction: the DOCTYPE
 * handler fires at the '[' of an internal subset, before any entity is
 * declared, so entity expansion attacks never start. Expat itself rejects
 * invalid UTF-8, forbidden characters and undefined entities.
 *
 * Handlers ignore every event once `halted` is set: XML_StopParser lets expat
 * finish its current token, which may fire one more handler. */
#include "xml_stream.h"
#include "xml_parser_mem.h"
#include "xml_scan_chars.h"
#include <expat.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NS_SEP '\x01'
#define STREAM_QNAME XML_NS_STREAM "\x01" "stream"

/* Expat 2.6 (and distributions that backported it, such as Debian 12's
 * 2.5.0+deb12u5) may defer reparsing an incomplete token, which can hold a
 * complete stanza back until more bytes arrive: fatal for an interactive
 * stream. The symbol is weak so the same code runs with an older libexpat. */
extern XML_Bool XML_SetReparseDeferralEnabled(XML_Parser parser, XML_Bool enabled)
    __attribute__((weak));

enum { MODE_STREAM, MODE_DOC };

struct xml_stream {
    xml_stream_cb_t cb;
    void *ctx;
    xml_limits_t lim;
    int mode;
    XML_Parser p;

    xs_err_t err;
    char errtext[256];
    unsigned err_line;

    int opened;             /* stream header seen */
    int closed;             /* </stream:stream> seen */
    size_t closed_at;       /* parser offset just after the closing tag */
    int halted;             /* parser stopped: handlers ignore events */
    int in_cb;              /* a user callback is running */
    int restart_pending;    /* xml_stream_restart called from a callback */
    size_t restart_at;      /* parser offset where the new stream begins */

    unsigned depth;         /* open elements, the stream root included */
    unsigned ns_decls;      /* namespace declarations of the next start tag */
    char *hdr_default_ns;   /* default namespace declared on the header */

    /* The current top-level element (the stanza; the root in MODE_DOC). */
    int in_stanza;
    int raw;
    size_t stanza_start;    /* parser offset of its '<' */
    xml_node_t *tree;       /* tree mode: its root ... */
    xml_node_t *cur;        /* ... and the innermost open element */
    strbuf_t text;          /* tree mode: text not yet added to cur */
    size_t text_run;        /* bytes of the current text run (both modes) */
    xml_node_t *doc;        /* MODE_DOC: the finished root */

    /* Raw mode: name and attributes copied at the start tag, used at the end
     * tag. Reused from element to element, so no per-element allocation. */
    strbuf_t arena;
    size_t *offs;
    size_t offs_cap;
    const char **attv;

    strbuf_t in;
    size_t in_base;
    size_t keep_from;       /* parser offset before which no byte is needed */

    strbuf_t scratch;

    /* Compaction (xml_stream_compact): the header's exact start tag, replayed
     * into a fresh parser when bytes arrive after the parser was freed. */
    strbuf_t hdr_bytes;
    int compacted;
    int replaying;
    xpm_t mem;             /* expat's memory for p (xml_parser_mem.h) */
};

void xml_limits_default(xml_limits_t *l)
{
    l->max_stanza_bytes = 262144;
    l->max_depth = 64;
    l->max_attrs = 64;
    l->max_text = 262144;
    l->max_header_bytes = 4096;
    l->allow_comments = 0;
}

const char *xs_err_condition(xs_err_t err)
{
    switch (err) {
    case XS_ERR_NOT_WELL_FORMED: return "not-well-formed";
    case XS_ERR_RESTRICTED: return "restricted-xml";
    case XS_ERR_POLICY: return "policy-violation";
    case XS_ERR_BAD_NS: return "invalid-namespace";
    case XS_ERR_CLOSED: return "not-well-formed";
    case XS_ERR_ENCODING: return "unsupported-encoding";
    case XS_OK: break;
    }
    return "undefined-condition";
}

/* ---- small helpers ---- */

static void xs_halt(xml_stream_t *xs)
{
    if (xs->halted)
        return;
    xs->halted = 1;
    XML_StopParser(xs->p, XML_FALSE);
}

static void xs_fail(xml_stream_t *xs, xs_err_t err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void xs_fail(xml_stream_t *xs, xs_err_t err, const char *fmt, ...)
{
    if (xs->err != XS_OK)
        return;
    xs->err = err;
    xs->err_line = (unsigned)XML_GetCurrentLineNumber(xs->p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(xs->errtext, sizeof(xs->errtext), fmt, ap);
    va_end(ap);
    xs_halt(xs);
}

static size_t ev_start(const xml_stream_t *xs)
{
    XML_Index i = XML_GetCurrentByteIndex(xs->p);
    return i < 0 ? 0 : (size_t)i;
}

static size_t ev_end(const xml_stream_t *xs)
{
    return ev_start(xs) + (size_t)XML_GetCurrentByteCount(xs->p);
}

/* Splits an expat name "uri\x01local" (or "local"); returns local. */
static const char *name_split(const char *qname, size_t *nslen)
{
    const char *sep = strrchr(qname, NS_SEP);
    if (!sep) {
        *nslen = 0;
        return qname;
    }
    *nslen = (size_t)(sep - qname);
    return sep + 1;
}

/* Builds an element (no children) from expat's name and attributes. */
static xml_node_t *node_from_expat(xml_stream_t *xs, const char *qname, const char **atts)
{
    size_t nslen;
    const char *local = name_split(qname, &nslen);
    strbuf_reset(&xs->scratch);
    strbuf_append(&xs->scratch, qname, nslen);
    xml_node_t *el = xml_elem_new(xs->scratch.data, local);
    /* Lines are for a document's errors (a config file's). expat counts
     * them by rescanning the bytes since it last did: on a stream that was
     * a pass over every stanza's bytes (2 % of c2s in the chat benchmark). */
    if (xs->mode == MODE_DOC)
        el->line = (unsigned)XML_GetCurrentLineNumber(xs->p);
    for (size_t i = 0; atts[i]; i += 2) {
        local = name_split(atts[i], &nslen);
        strbuf_reset(&xs->scratch);
        strbuf_append(&xs->scratch, atts[i], nslen);
        xml_attr_set_ns(el, nslen ? xs->scratch.data : NULL, local, atts[i + 1]);
    }
    return el;
}

static void text_flush(xml_stream_t *xs)
{
    if (xs->text.len && xs->cur)
        xml_add_text(xs->cur, xs->text.data, xs->text.len);
    strbuf_reset(&xs->text);
}

/* Copies name and attributes of a top-level element into the arena in the
 * documented "nsURI|local" form and points attv at them; local names cannot
 * contain '|', so the last '|' always separates. offs and attv share a
 * capacity (offs_cap) and only grow. */
static void raw_capture(xml_stream_t *xs, const char *qname, const char **atts, size_t nat)
{
    size_t nstr = 2 + 2 * nat;
    if (xs->offs_cap < nstr) {
        xs->offs_cap = nstr * 2;
        xs->offs = xrealloc(xs->offs, xs->offs_cap * sizeof(*xs->offs));
        xs->attv = xrealloc(xs->attv, xs->offs_cap * sizeof(*xs->attv));
    }
    strbuf_reset(&xs->arena);
    size_t nslen;
    const char *local = name_split(qname, &nslen);
    xs->offs[0] = xs->arena.len;
    strbuf_append(&xs->arena, qname, nslen);
    strbuf_putc(&xs->arena, '\0');
    xs->offs[1] = xs->arena.len;
    strbuf_append(&xs->arena, local, strlen(local) + 1);
    for (size_t i = 0; i < 2 * nat; i += 2) {
        xs->offs[2 + i] = xs->arena.len;
        local = name_split(atts[i], &nslen);
        if (nslen) {
            strbuf_append(&xs->arena, atts[i], nslen);
            strbuf_putc(&xs->arena, '|');
        }
        /* Name and value with their NULs, one append each. */
        strbuf_append(&xs->arena, local, strlen(local) + 1);
        xs->offs[3 + i] = xs->arena.len;
        strbuf_append(&xs->arena, atts[i + 1], strlen(atts[i + 1]) + 1);
    }
    /* The arena no longer grows, so pointers into it stay valid. */
    for (size_t i = 0; i < 2 * nat; i++)
        xs->attv[i] = xs->arena.data + xs->offs[2 + i];
    xs->attv[2 * nat] = NULL;
}

static const char *raw_ns(const xml_stream_t *xs)
{
    return xs->arena.data + xs->offs[0];
}

static const char *raw_name(const xml_stream_t *xs)
{
    return xs->arena.data + xs->offs[1];
}

static int stanza_too_big(xml_stream_t *xs, size_t end)
{
    if (end - xs->stanza_start <= xs->lim.max_stanza_bytes)
        return 0;
    xs_fail(xs, XS_ERR_POLICY, "element exceeds %zu bytes", xs->lim.max_stanza_bytes);
    return 1;
}

/* ---- expat handlers ---- */

static void stream_open(xml_stream_t *xs, const char *qname, const char **atts)
{
    size_t end = ev_end(xs);
    if (end > xs->lim.max_header_bytes) {
        xs_fail(xs, XS_ERR_POLICY, "stream header exceeds %zu bytes", xs->lim.max_header_bytes);
        return;
    }
    if (strcmp(qname, STREAM_QNAME) != 0) {
        xs_fail(xs, XS_ERR_BAD_NS, "root element is not {%s}stream", XML_NS_STREAM);
        return;
    }
    xs->opened = 1;
    xs->keep_from = end;
    if (xs->replaying)
        return;   /* the header of a compacted stream: already reported */
    size_t start = ev_start(xs);
    strbuf_reset(&xs->hdr_bytes);
    if (start >= xs->in_base && end <= xs->in_base + xs->in.len)
        strbuf_append(&xs->hdr_bytes, xs->in.data + (start - xs->in_base), end - start);
    xml_node_t *hdr = node_from_expat(xs, qname, atts);
    if (xs->cb.on_open) {
        xs->in_cb = 1;
        xs->cb.on_open(xs->ctx, hdr, xs->hdr_default_ns ? xs->hdr_default_ns : "");
        xs->in_cb = 0;
    }
    xml_free(hdr);
    free(xs->hdr_default_ns);
    xs->hdr_default_ns = NULL;
    if (xs->restart_pending) {
        xs->restart_at = end;
        xs_halt(xs);
    }
}

static void toplevel_begin(xml_stream_t *xs, const char *qname, const char **atts, size_t nat)
{
    xs->in_stanza = 1;
    xs->stanza_start = ev_start(xs);
    xs->raw = 0;
    if (stanza_too_big(xs, ev_end(xs)))
        return;
    if (xs->mode == MODE_STREAM && xs->cb.classify && xs->cb.on_raw) {
        raw_capture(xs, qname, atts, nat);
        xs->in_cb = 1;
        xs->raw = xs->cb.classify(xs->ctx, raw_ns(xs), raw_name(xs), xs->attv) == XS_RAW;
        xs->in_cb = 0;
    }
}

static void toplevel_end(xml_stream_t *xs, size_t end)
{
    xs->in_stanza = 0;
    xs->keep_from = end;
    if (xs->mode == MODE_DOC) {
        xs->doc = xs->tree;
        xs->tree = xs->cur = NULL;
        return;
    }
    xs->in_cb = 1;
    if (xs->raw) {
        /* in_base <= stanza_start and end <= in_base + in.len (see top). */
        const char *bytes = xs->in.data + (xs->stanza_start - xs->in_base);
        xs->cb.on_raw(xs->ctx, raw_ns(xs), raw_name(xs), xs->attv, bytes,
                      end - xs->stanza_start);
    } else {
        xml_node_t *t = xs->tree;
        xs->tree = xs->cur = NULL;
        if (xs->cb.on_stanza)
            xs->cb.on_stanza(xs->ctx, t);
        else
            xml_free(t);
    }
    xs->in_cb = 0;
    xs->raw = 0;
    if (xs->restart_pending) {
        xs->restart_at = end;
        xs_halt(xs);
    }
}

static void XMLCALL h_start(void *ud, const XML_Char *qname, const XML_Char **atts)
{
    xml_stream_t *xs = ud;
    if (xs->halted)
        return;
    unsigned ndecl = xs->ns_decls;
    xs->ns_decls = 0;
    xs->depth++;
    size_t nat = 0;
    while (atts[2 * nat])
        nat++;
    if (nat + ndecl > xs->lim.max_attrs) {
        xs_fail(xs, XS_ERR_POLICY, "more than %u attributes", xs->lim.max_attrs);
        return;
    }
    for (size_t i = 0; i < nat; i++)
        if (strlen(atts[2 * i + 1]) > xs->lim.max_text) {
            xs_fail(xs, XS_ERR_POLICY, "attribute value exceeds %zu bytes", xs->lim.max_text);
            return;
        }
    if (xs->mode == MODE_STREAM && xs->depth == 1) {
        stream_open(xs, qname, atts);
        return;
    }
    unsigned level = xs->mode == MODE_STREAM ? xs->depth - 1 : xs->depth;
    if (level > xs->lim.max_depth) {
        xs_fail(xs, XS_ERR_POLICY, "nesting deeper than %u", xs->lim.max_depth);
        return;
    }
    /* expat accepts <xml:foo/>, but no serializer can write such an element
     * back (the XML namespace cannot be the default one), so a stanza holding
     * one could never be forwarded. */
    if (!strncmp(qname, XML_NS_XML "\x01", sizeof XML_NS_XML)) {
        xs_fail(xs, XS_ERR_NOT_WELL_FORMED, "element in the reserved xml namespace");
        return;
    }
    xs->text_run = 0;
    if (level == 1) {
        toplevel_begin(xs, qname, atts, nat);
        if (xs->halted)
            return;
    } else if (stanza_too_big(xs, ev_end(xs))) {
        return;
    }
    if (xs->raw)
        return;
    text_flush(xs);
    xml_node_t *el = node_from_expat(xs, qname, atts);
    if (xs->cur)
        xml_append(xs->cur, el);
    else
        xs->tree = el;
    xs->cur = el;
    xs->keep_from = ev_end(xs);
}

static void XMLCALL h_end(void *ud, const XML_Char *qname)
{
    (void)qname;
    xml_stream_t *xs = ud;
    if (xs->halted)
        return;
    size_t end = ev_end(xs);
    unsigned depth = xs->depth--;
    if (xs->mode == MODE_STREAM && depth == 1) {
        xs->closed = 1;
        xs->closed_at = end;
        xs->keep_from = end;
        if (xs->cb.on_close) {
            xs->in_cb = 1;
            xs->cb.on_close(xs->ctx);
            xs->in_cb = 0;
        }
        if (xs->restart_pending)
            xs->restart_at = end;
        /* Stop here: what follows is checked by hand (whitespace only). */
        xs_halt(xs);
        return;
    }
    unsigned level = xs->mode == MODE_STREAM ? depth - 1 : depth;
    if (stanza_too_big(xs, end))
        return;
    xs->text_run = 0;
    if (!xs->raw) {
        text_flush(xs);
        xs->cur = xs->cur ? xs->cur->parent : NULL;
        xs->keep_from = end;
    }
    if (level == 1)
        toplevel_end(xs, end);
}

static void XMLCALL h_text(void *ud, const XML_Char *s, int len)
{
    xml_stream_t *xs = ud;
    if (xs->halted)
        return;
    if (!xs->in_stanza) {
        /* Whitespace between stanzas: nothing to keep, nothing to build. */
        xs->keep_from = ev_end(xs);
        return;
    }
    xs->text_run += (size_t)len;
    if (xs->text_run > xs->lim.max_text) {
        xs_fail(xs, XS_ERR_POLICY, "text exceeds %zu bytes", xs->lim.max_text);
        return;
    }
    if (stanza_too_big(xs, ev_end(xs)))
        return;
    if (!xs->raw) {
        strbuf_append(&xs->text, s, (size_t)len);
        xs->keep_from = ev_end(xs);
    }
}

static void XMLCALL h_ns_start(void *ud, const XML_Char *prefix, const XML_Char *uri)
{
    xml_stream_t *xs = ud;
    if (xs->halted)
        return;
    xs->ns_decls++;
    if (xs->mode == MODE_STREAM && xs->depth == 0 && !prefix) {
        free(xs->hdr_default_ns);
        xs->hdr_default_ns = xstrdup(uri ? uri : "");
    }
}

/* The parser is told the stream is UTF-8 and ignores what the declaration
 * says, so a stream that declares another encoding would be read wrongly
 * instead of refused (RFC 6120 section 11.6). Expat calls this only for a
 * well-formed declaration at the very start of the entity. */
static void XMLCALL h_xmldecl(void *ud, const XML_Char *version, const XML_Char *encoding,
                              int standalone)
{
    (void)standalone;
    xml_stream_t *xs = ud;
    if (xs->halted)
        return;
    /* Expat takes any name characters as the version; XML 1.0 does not. */
    if (version && !xml_scan_version_ok(version, strlen(version)))
        xs_fail(xs, XS_ERR_NOT_WELL_FORMED, "XML declaration: bad version '%.32s'", version);
    else if (encoding && strcasecmp(encoding, "UTF-8") != 0)
        xs_fail(xs, XS_ERR_ENCODING, "encoding '%.64s' is not supported (UTF-8 only)", encoding);
}

static void XMLCALL h_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                              const XML_Char *pubid, int has_internal_subset)
{
    (void)name, (void)sysid, (void)pubid, (void)has_internal_subset;
    xs_fail(ud, XS_ERR_RESTRICTED, "DOCTYPE is not allowed");
}

static void XMLCALL h_entity_decl(void *ud, const XML_Char *name, int is_pe,
                                  const XML_Char *value, int value_len, const XML_Char *base,
                                  const XML_Char *sysid, const XML_Char *pubid,
                                  const XML_Char *notation)
{
    (void)name, (void)is_pe, (void)value, (void)value_len, (void)base;
    (void)sysid, (void)pubid, (void)notation;
    xs_fail(ud, XS_ERR_RESTRICTED, "entity declarations are not allowed");
}

static void XMLCALL h_skipped_entity(void *ud, const XML_Char *name, int is_pe)
{
    (void)is_pe;
    xs_fail(ud, XS_ERR_RESTRICTED, "entity reference &%.64s; is not allowed", name);
}

static int XMLCALL h_ext_entity(XML_Parser p, const XML_Char *context, const XML_Char *base,
                                const XML_Char *sysid, const XML_Char *pubid)
{
    (void)context, (void)base, (void)sysid, (void)pubid;
    xs_fail(XML_GetUserData(p), XS_ERR_RESTRICTED, "external entities are not allowed");
    return XML_STATUS_ERROR;
}

static void XMLCALL h_comment(void *ud, const XML_Char *data)
{
    (void)data;
    xs_fail(ud, XS_ERR_RESTRICTED, "comments are not allowed");
}

static void XMLCALL h_pi(void *ud, const XML_Char *target, const XML_Char *data)
{
    (void)target, (void)data;
    xs_fail(ud, XS_ERR_RESTRICTED, "processing instructions are not allowed");
}

/* ---- parser life cycle ---- */

static enum XML_Status xs_parse(xml_stream_t *xs, const char *data, int len, int final)
{
    xpm_t *prev = xpm_enter(&xs->mem);
    enum XML_Status st = XML_Parse(xs->p, data, len, final ? XML_TRUE : XML_FALSE);
    xpm_leave(prev);
    return st;
}

static void parser_free(xml_stream_t *xs)
{
    if (xs->p)
        XML_ParserFree(xs->p);
    xs->p = NULL;
    xpm_release(&xs->mem);
}

static void parser_create(xml_stream_t *xs)
{
    static const XML_Char sep[] = { NS_SEP, 0 };
    /* Forcing UTF-8 overrides whatever encoding a document declares;
     * h_xmldecl refuses a declaration that names another. */
    xpm_t *prev = xpm_enter(&xs->mem);
    xs->p = XML_ParserCreate_MM("UTF-8", &xpm_suite, sep);
    xpm_leave(prev);
    if (!xs->p) {
        fputs("fatal: out of memory (expat)\n", stderr);
        abort();
    }
    XML_SetUserData(xs->p, xs);
    XML_SetElementHandler(xs->p, h_start, h_end);
    XML_SetCharacterDataHandler(xs->p, h_text);
    XML_SetStartNamespaceDeclHandler(xs->p, h_ns_start);
    XML_SetXmlDeclHandler(xs->p, h_xmldecl);
    XML_SetStartDoctypeDeclHandler(xs->p, h_doctype);
    XML_SetEntityDeclHandler(xs->p, h_entity_decl);
    XML_SetSkippedEntityHandler(xs->p, h_skipped_entity);
    XML_SetExternalEntityRefHandler(xs->p, h_ext_entity);
    if (!xs->lim.allow_comments)
        XML_SetCommentHandler(xs->p, h_comment);
    XML_SetProcessingInstructionHandler(xs->p, h_pi);
    XML_SetParamEntityParsing(xs->p, XML_PARAM_ENTITY_PARSING_NEVER);
    if (XML_SetReparseDeferralEnabled)
        XML_SetReparseDeferralEnabled(xs->p, XML_FALSE);
}

/* Drops per-stream state and starts a fresh parser; the bytes in `in` from
 * parser offset `from` on are kept, now at offset 0 of the new parser. */
static void stream_reset(xml_stream_t *xs, size_t from)
{
    parser_free(xs);
    xml_free(xs->tree);
    xml_free(xs->doc);
    free(xs->hdr_default_ns);
    xs->tree = xs->cur = xs->doc = NULL;
    xs->hdr_default_ns = NULL;
    strbuf_reset(&xs->text);
    if (from > xs->in_base)
        strbuf_consume(&xs->in, from - xs->in_base);
    xs->in_base = 0;
    xs->keep_from = 0;
    xs->err = XS_OK;
    xs->errtext[0] = '\0';
    xs->err_line = 0;
    xs->opened = xs->closed = xs->halted = 0;
    xs->restart_pending = 0;
    xs->closed_at = xs->restart_at = 0;
    xs->depth = xs->ns_decls = 0;
    xs->in_stanza = xs->raw = 0;
    xs->stanza_start = xs->text_run = 0;
    strbuf_reset(&xs->hdr_bytes);
    xs->compacted = 0;
    parser_create(xs);
}

static xml_stream_t *stream_create(const xml_stream_cb_t *cb, void *ctx,
                                   const xml_limits_t *limits, int mode)
{
    xml_stream_t *xs = xcalloc(1, sizeof(*xs));
    if (cb)
        xs->cb = *cb;
    xs->ctx = ctx;
    if (limits)
        xs->lim = *limits;
    else
        xml_limits_default(&xs->lim);
    xs->mode = mode;
    strbuf_init(&xs->text);
    strbuf_init(&xs->arena);
    strbuf_init(&xs->in);
    strbuf_init(&xs->scratch);
    strbuf_init(&xs->hdr_bytes);
    parser_create(xs);
    return xs;
}

xml_stream_t *xml_stream_new(const xml_stream_cb_t *cb, void *ctx, const xml_limits_t *limits)
{
    return stream_create(cb, ctx, limits, MODE_STREAM);
}

void xml_stream_free(xml_stream_t *xs)
{
    if (!xs)
        return;
    parser_free(xs);
    strbuf_free(&xs->hdr_bytes);
    xml_free(xs->tree);
    xml_free(xs->doc);
    free(xs->hdr_default_ns);
    strbuf_free(&xs->text);
    strbuf_free(&xs->arena);
    strbuf_free(&xs->in);
    strbuf_free(&xs->scratch);
    free(xs->offs);
    free(xs->attv);
    free(xs);
}

void xml_stream_restart(xml_stream_t *xs)
{
    if (xs->in_cb) {
        xs->restart_pending = 1;
        return;
    }
    stream_reset(xs, xs->in_base + xs->in.len);
}

const char *xml_stream_error_text(const xml_stream_t *xs)
{
    return xs->err ? xs->errtext : "";
}

/* ---- feeding ---- */

static xs_err_t expat_error(xml_stream_t *xs)
{
    enum XML_Error code = XML_GetErrorCode(xs->p);
    xs_err_t err = XS_ERR_NOT_WELL_FORMED;
    switch (code) {
    case XML_ERROR_UNDEFINED_ENTITY:
    case XML_ERROR_RECURSIVE_ENTITY_REF:
    case XML_ERROR_BINARY_ENTITY_REF:
    case XML_ERROR_ATTRIBUTE_EXTERNAL_ENTITY_REF:
    case XML_ERROR_EXTERNAL_ENTITY_HANDLING:
    case XML_ERROR_PARAM_ENTITY_REF:
    case XML_ERROR_ENTITY_DECLARED_IN_PE:
    case XML_ERROR_NOT_STANDALONE:
#if XML_MAJOR_VERSION > 2 || (XML_MAJOR_VERSION == 2 && XML_MINOR_VERSION >= 4)
    case XML_ERROR_AMPLIFICATION_LIMIT_BREACH:
#endif
        err = XS_ERR_RESTRICTED;
        break;
    default:
        break;
    }
    xs->err = err;
    xs->err_line = (unsigned)XML_GetCurrentLineNumber(xs->p);
    snprintf(xs->errtext, sizeof(xs->errtext), "line %u column %lu: %s", xs->err_line,
             (unsigned long)XML_GetCurrentColumnNumber(xs->p), XML_ErrorString(code));
    xs->halted = 1;
    return err;
}

static int all_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

/* After </stream:stream> only whitespace may follow (kept by no one). */
static xs_err_t after_close(xml_stream_t *xs, const char *s, size_t n)
{
    if (all_space(s, n))
        return XS_OK;
    xs->err = XS_ERR_CLOSED;
    snprintf(xs->errtext, sizeof(xs->errtext), "data after </stream:stream>");
    return xs->err;
}

/* Enforces the size limits on bytes expat holds but has not reported yet
 * (a start tag or attribute that never ends), so memory stays bounded. */
static void check_pending(xml_stream_t *xs)
{
    size_t fed = xs->in_base + xs->in.len;
    if (!xs->opened) {
        if (fed > xs->lim.max_header_bytes)
            xs_fail(xs, XS_ERR_POLICY, "stream header exceeds %zu bytes",
                    xs->lim.max_header_bytes);
    } else if (xs->in_stanza) {
        stanza_too_big(xs, fed);
    } else if (fed - xs->keep_from > xs->lim.max_stanza_bytes) {
        xs_fail(xs, XS_ERR_POLICY, "element exceeds %zu bytes", xs->lim.max_stanza_bytes);
    }
}

/* Frees the input nobody needs any more. */
static void trim_input(xml_stream_t *xs)
{
    size_t keep = xs->in_stanza && xs->raw ? xs->stanza_start : xs->keep_from;
    if (keep > xs->in_base + xs->in.len)
        keep = xs->in_base + xs->in.len;
    if (keep > xs->in_base) {
        strbuf_consume(&xs->in, keep - xs->in_base);
        xs->in_base = keep;
    }
}

/* Parses in.data[off..] (bytes not yet seen by the parser). */
/* 1 if the stream's first bytes hold a NUL or a UTF-16 byte order mark:
 * expat then reads the stream as UTF-16 whatever encoding it was told, and
 * XMPP is UTF-8 only (RFC 6120 section 11.6). */
static int starts_as_utf16(const xml_stream_t *xs)
{
    const unsigned char *s = (const unsigned char *)xs->in.data;
    size_t n = xs->in.len;
    return (n >= 1 && (s[0] == 0 || s[0] == 0xFE || s[0] == 0xFF)) || (n >= 2 && s[1] == 0);
}

static xs_err_t parse_input(xml_stream_t *xs, size_t off)
{
    for (;;) {
        enum XML_Status st = XML_STATUS_OK;
        /* Judged before expat sees the second byte of a stream. */
        if (xs->mode == MODE_STREAM && xs->in_base == 0 && off < 2 && starts_as_utf16(xs)) {
            xs_fail(xs, XS_ERR_ENCODING, "the stream is not UTF-8");
            return xs->err;
        }
        /* XML_Parse takes an int length. */
        while (off < xs->in.len && !xs->halted) {
            size_t n = xs->in.len - off;
            if (n > (1u << 30))
                n = 1u << 30;
            st = xs_parse(xs, xs->in.data + off, (int)n, 0);
            off += n;
            if (st == XML_STATUS_ERROR)
                break;
        }
        if (xs->err)
            return xs->err;
        if (st == XML_STATUS_ERROR && !xs->halted)
            return expat_error(xs);
        if (xs->restart_pending) {
            stream_reset(xs, xs->restart_at);
            off = 0;
            continue;
        }
        if (xs->closed) {
            size_t at = xs->closed_at - xs->in_base;
            xs_err_t err = after_close(xs, xs->in.data + at, xs->in.len - at);
            strbuf_reset(&xs->in);
            xs->in_base = xs->closed_at;
            return err;
        }
        check_pending(xs);
        if (xs->err)
            return xs->err;
        trim_input(xs);
        return XS_OK;
    }
}

int xml_stream_in_stanza(const xml_stream_t *xs)
{
    return xs->in_stanza;
}

int xml_stream_compact(xml_stream_t *xs)
{
    if (xs->compacted)
        return 1;
    size_t fed = xs->in_base + xs->in.len;
    if (xs->mode != MODE_STREAM || !xs->opened || xs->closed || xs->err || xs->in_cb || xs->in_stanza ||
        xs->restart_pending || xs->depth != 1 || !xs->hdr_bytes.len || xs->keep_from > fed ||
        (fed > xs->keep_from && !all_space(xs->in.data + (xs->keep_from - xs->in_base), fed - xs->keep_from)))
        return 0;
    parser_free(xs);
    strbuf_free(&xs->in);
    strbuf_free(&xs->text);
    strbuf_free(&xs->arena);
    strbuf_free(&xs->scratch);
    free(xs->offs);
    free(xs->attv);
    xs->offs = NULL;
    xs->attv = NULL;
    xs->offs_cap = 0;
    xs->in_base = xs->keep_from = 0;
    xs->compacted = 1;
    return 1;
}

/* A fresh parser in the state the freed one was in: inside the stream root,
 * with the header's namespace declarations in scope. */
static void uncompact(xml_stream_t *xs)
{
    parser_create(xs);
    xs->compacted = 0;
    xs->depth = xs->ns_decls = 0;
    xs->replaying = 1;
    enum XML_Status st = xs_parse(xs, xs->hdr_bytes.data, (int)xs->hdr_bytes.len, 0);
    xs->replaying = 0;
    free(xs->hdr_default_ns);
    xs->hdr_default_ns = NULL;
    if (st == XML_STATUS_ERROR || xs->depth != 1) {
        /* Cannot happen: these bytes parsed before. Fail the stream, loudly. */
        xs_fail(xs, XS_ERR_NOT_WELL_FORMED, "internal: stream header replay failed");
        return;
    }
    xs->in_base = xs->keep_from = xs->hdr_bytes.len;
}

xs_err_t xml_stream_feed(xml_stream_t *xs, const char *data, size_t len)
{
    if (xs->err)
        return xs->err;
    if (xs->closed)
        return after_close(xs, data, len);
    if (xs->compacted) {
        uncompact(xs);
        if (xs->err)
            return xs->err;
    }
    size_t off = xs->in.len;
    strbuf_append(&xs->in, data, len);
    return parse_input(xs, off);
}

/* ---- whole documents ---- */

xml_node_t *xml_parse_document(const char *data, size_t len, const xml_limits_t *limits,
                               char *errbuf, size_t errlen, unsigned *err_line)
{
    xml_stream_t *xs = stream_create(NULL, NULL, limits, MODE_DOC);
    xml_node_t *root = NULL;
    if (len > xs->lim.max_stanza_bytes || len > (1u << 30)) {
        xs->err = XS_ERR_POLICY;
        snprintf(xs->errtext, sizeof(xs->errtext), "document exceeds %zu bytes",
                 xs->lim.max_stanza_bytes);
    } else if (xs_parse(xs, data, (int)len, 1) == XML_STATUS_ERROR && !xs->err) {
        expat_error(xs);
    } else if (!xs->err && !xs->doc) {
        xs->err = XS_ERR_NOT_WELL_FORMED;
        snprintf(xs->errtext, sizeof(xs->errtext), "no root element");
    }
    if (!xs->err) {
        root = xs->doc;
        xs->doc = NULL;
    }
    if (errbuf && errlen)
        snprintf(errbuf, errlen, "%s", xs->err ? xs->errtext : "");
    if (err_line)
        *err_line = xs->err ? xs->err_line : 0;
    xml_stream_free(xs);
    return root;
}
