/* xml_stream: incremental, restricted XMPP stream parser on expat.
 *
 * Bytes arrive in any split (even inside a UTF-8 sequence). The parser reports
 * the stream header, then each top-level child of the stream ("stanza") either as
 * a tree (on_stanza, ownership passes to the callback) or, when classify() says
 * so, as the exact raw bytes of the element plus its attributes (on_raw): the
 * router forwards those bytes without building a tree.
 *
 * Restricted XML (RFC 6120 §11.1) is an error: DOCTYPE/DTD, entity declarations
 * and references other than the five predefined, comments, processing
 * instructions, invalid UTF-8 or characters. A stream in any encoding but
 * UTF-8 (an XML declaration naming another, a UTF-16 byte order mark) is
 * XS_ERR_ENCODING (RFC 6120 §11.6). Limits are enforced; exceeding one is
 * XS_ERR_POLICY. After an error every further feed returns the same error. */
#ifndef WEFT_XML_STREAM_H
#define WEFT_XML_STREAM_H
#include <stddef.h>
#include "xml.h"

typedef struct xml_limits {
    size_t max_stanza_bytes;  /* bytes of one top-level element (default 262144) */
    unsigned max_depth;       /* element nesting below the stream root (default 64) */
    unsigned max_attrs;       /* attributes per element (default 64) */
    size_t max_text;          /* bytes of one text run / attribute value (default 262144) */
    size_t max_header_bytes;  /* bytes of the stream header (default 4096) */
    int allow_comments;       /* 1 for trusted documents (config files); never on streams */
} xml_limits_t;

void xml_limits_default(xml_limits_t *l);

typedef enum xs_err {
    XS_OK = 0,
    XS_ERR_NOT_WELL_FORMED = -1,  /* stream error not-well-formed (incl. invalid UTF-8/chars) */
    XS_ERR_RESTRICTED = -2,       /* restricted-xml */
    XS_ERR_POLICY = -3,           /* policy-violation: a limit was exceeded */
    XS_ERR_BAD_NS = -4,           /* invalid-namespace: root is not stream:stream */
    XS_ERR_CLOSED = -5,           /* data after </stream:stream> */
    XS_ERR_ENCODING = -6,         /* unsupported-encoding: not UTF-8 (declared or UTF-16) */
} xs_err_t;

/* Returns the RFC 6120 stream error condition name for err ("not-well-formed",...). */
const char *xs_err_condition(xs_err_t err);

enum { XS_TREE = 0, XS_RAW = 1 };

typedef struct xml_stream_cb {
    /* Stream header parsed; hdr is the root element with its attributes and no
     * children, valid only during the call. ns is the default namespace declared
     * on the header ("" if none). */
    void (*on_open)(void *ctx, const xml_node_t *hdr, const char *default_ns);
    /* Optional; decides per top-level element. NULL means always XS_TREE.
     * attrs is expat-style (see xml_attrs_find). */
    int (*classify)(void *ctx, const char *ns, const char *name, const char **attrs);
    /* A complete top-level element; the callback owns it. */
    void (*on_stanza)(void *ctx, xml_node_t *stanza);
    /* A complete top-level element classified XS_RAW: its exact bytes (from '<'
     * to the final '>'), its namespace/name and expat-style attrs, valid only
     * during the call. */
    void (*on_raw)(void *ctx, const char *ns, const char *name, const char **attrs,
                   const char *bytes, size_t len);
    /* </stream:stream> received. */
    void (*on_close)(void *ctx);
} xml_stream_cb_t;

typedef struct xml_stream xml_stream_t;

xml_stream_t *xml_stream_new(const xml_stream_cb_t *cb, void *ctx, const xml_limits_t *limits);
void xml_stream_free(xml_stream_t *xs);
/* Parses len bytes. Callbacks run from inside. Returns XS_OK or an error.
 * A callback may call xml_stream_restart(). */
xs_err_t xml_stream_feed(xml_stream_t *xs, const char *data, size_t len);
/* Stream restart (after STARTTLS or SASL success): called from a callback, it
 * makes the parser expect a fresh stream header; bytes after the current element
 * are parsed as the new stream. Outside a callback it resets at once. */
void xml_stream_restart(xml_stream_t *xs);
/* Frees the expat parser and every buffer when the stream sits between
 * stanzas with nothing pending (an idle connection); the next feed recreates
 * the parser and replays the stream header's start tag into it, silently.
 * Saves ~10 KB per idle stream. Line numbers in later error texts count from
 * the compaction. 1 if compacted (or already), 0 if the stream
 * is not at a point where it can be. Not from inside a callback. */
int xml_stream_compact(xml_stream_t *xs);
/* 1 while a top-level element has started and not ended (c2s's WebSocket
 * transport refuses a message that leaves one open). */
int xml_stream_in_stanza(const xml_stream_t *xs);
/* Human-readable detail of the last error (for logs). */
const char *xml_stream_error_text(const xml_stream_t *xs);

/* Parses a whole standalone document (config files, tests) with the same
 * restrictions; returns the root element or NULL with *err and *line set. */
xml_node_t *xml_parse_document(const char *data, size_t len, const xml_limits_t *limits,
                               char *errbuf, size_t errlen, unsigned *err_line);

#endif
