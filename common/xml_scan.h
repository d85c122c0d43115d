/* xml_scan: a fast, incremental, restricted-XML scanner for streams whose
 * top-level elements are forwarded as bytes (the router), and
 * xml_scan_stream, the stream parser the router uses: this scanner for the
 * elements it forwards, xml_stream (expat) for everything else.
 *
 * The scanner reads a stream from its first byte: prolog (optional BOM and
 * XML declaration), the header start tag, then top-level elements until the
 * closing tag of the root. For every top-level element it reports the exact
 * bytes (from '<' to the final '>'), the namespace URI and local name, and
 * the attributes decoded (expat-style array, "uri|local" for qualified
 * names, as xml_stream's on_raw gives them). It checks the whole element as
 * xml_stream would: tag nesting, attribute syntax and uniqueness (also after
 * namespace resolution), quotes, '<' and '&' in text and attribute values,
 * references (the five predefined entities and character references to XML
 * characters; any other entity is restricted-xml), CDATA sections (allowed,
 * as expat allows them), UTF-8 and XML 1.0 characters, namespace
 * declarations (undeclared prefixes, the reserved xml and xmlns prefixes
 * and names), comments and processing instructions (restricted-xml), and the
 * limits of xml_limits_t with the same error classes, at the same byte and
 * in the same order as expat and xml_stream. Top-level text between elements
 * is checked and skipped. Bytes arrive in any split; nothing is scanned
 * twice except the few bytes a lookahead needs (a UTF-8 sequence, CR, "]]",
 * "--", "?>", "CDATA[") at the end of a feed. A top-level element is copied
 * only when it spans two feeds; otherwise it is reported in place.
 *
 * Decided differences from xml_stream, found and checked by
 * tests/fuzz/fuzz_xml_scan.c (both parsers, the same bytes, random splits):
 *
 *  - Names (of elements, attributes, prefixes, entity references, PI
 *    targets) with non-ASCII characters are not judged: expat's name tables
 *    (XML 1.0 4th edition, Appendix B) are not worth copying for names XMPP
 *    does not use. The scanner checks their UTF-8, frames the element as
 *    usual and reports it with unsure set; an error inside such an element
 *    is XSCAN_UNSURE. xml_scan_stream hands such elements to expat, which
 *    judges them once they are complete (expat alone may refuse a bad one a
 *    few bytes earlier).
 *  - A DOCTYPE, text or non-ASCII bytes in the prolog are XSCAN_UNSURE
 *    (xml_stream refuses them all, as restricted-xml or not-well-formed).
 *  - A stream whose first two bytes hold a NUL or a UTF-16 byte order mark
 *    is unsupported-encoding (XS_ERR_ENCODING), decided on those bytes.
 *    Expat switches to UTF-16 on them whatever encoding it was told;
 *    xml_stream refuses them itself before expat sees them, and XMPP is
 *    UTF-8 only (RFC 6120 section 11.6). An XML declaration naming any
 *    encoding but UTF-8 is XS_ERR_ENCODING in both parsers, at its "?>".
 *  - Error texts are the scanner's own (no line or column).
 *
 * Everything a callback gets is valid only during the call. */
#ifndef WEFT_XML_SCAN_H
#define WEFT_XML_SCAN_H
#include <stddef.h>
#include "xml_stream.h"

/* xml_scan_feed's result: an xs_err_t, or one of these. */
enum {
    XSCAN_UNSURE = -16,   /* a construct the scanner does not judge (see above) */
    XSCAN_STOPPED = -17,  /* a callback called xml_scan_stop() */
};

typedef struct xscan_elem {
    const char *ns;       /* namespace URI, "" for none */
    const char *name;     /* local name */
    const char **attrs;   /* {name, value, ..., NULL}; "uri|local" for qualified names */
    const char *bytes;    /* the element's exact bytes; for the header, from the
                           * stream's first byte to the '>' of the root tag */
    size_t len;
    int unsure;           /* it has non-ASCII names the scanner did not judge */
} xscan_elem_t;

typedef struct xml_scan_cb {
    /* The root start tag was read; default_ns is the default namespace it
     * declared ("" if none). */
    void (*on_header)(void *ctx, const xscan_elem_t *hdr, const char *default_ns);
    /* A complete top-level element. */
    void (*on_element)(void *ctx, const xscan_elem_t *el);
    /* The closing tag of the root (its bytes; len 0 for an empty root tag). */
    void (*on_close)(void *ctx, const char *bytes, size_t len);
} xml_scan_cb_t;

typedef struct xml_scan xml_scan_t;

xml_scan_t *xml_scan_new(const xml_scan_cb_t *cb, void *ctx, const xml_limits_t *limits);
void xml_scan_free(xml_scan_t *sc);
/* Scans len more bytes; callbacks run from inside. Returns XS_OK, an
 * xs_err_t, XSCAN_UNSURE or XSCAN_STOPPED. Anything but XS_OK is sticky. */
int xml_scan_feed(xml_scan_t *sc, const char *data, size_t len);
/* From a callback: a new stream starts right after the current unit (the
 * header or element being reported). Elsewhere: at once, and buffered bytes
 * are dropped. Clears a previous error. */
void xml_scan_restart(xml_scan_t *sc);
/* From a callback: xml_scan_feed returns XSCAN_STOPPED after it; the
 * element being reported counts as consumed if after is 1, not if 0. */
void xml_scan_stop(xml_scan_t *sc, int after);
/* After xml_scan_feed returned anything but XS_OK: the bytes from the start
 * of the unit the scanner was in (the header and its prolog, a top-level
 * element, or a top-level character or reference) to the end of what was
 * fed, i.e. what another parser has to be given to carry on. Valid until the
 * next call on sc. */
void xml_scan_pending(const xml_scan_t *sc, const char **bytes, size_t *len);
/* 1 if the unit being read has non-ASCII names the scanner did not judge
 * (its verdict on that unit would be XSCAN_UNSURE). */
int xml_scan_unsure(const xml_scan_t *sc);
const char *xml_scan_error_text(const xml_scan_t *sc);

/* xml_scan_stream: a drop-in for xml_stream_t with the same callbacks and
 * the same verdicts, faster for elements classify() marks XS_RAW.
 *
 * The scanner frames the stream. The header (with its prolog) and every
 * element classify() does not mark XS_RAW, or that has names the scanner
 * did not judge, are handed, as their exact bytes, to an xml_stream that
 * thus sees the stream minus the raw elements and the top-level white space
 * between elements (both complete units it ignores anyway), keeps its
 * namespace context and gives its own verdicts; it calls on_open, on_stanza
 * and on_raw for them. Raw elements go to on_raw straight from the scanner.
 * When the scanner finds an error or something it does not judge, when
 * xml_stream does not end an element where the scanner did (which would be
 * a scanner bug), and from the closing tag of the root on, the rest of the
 * stream goes to xml_stream alone ("passthrough"), starting with the unit
 * the scanner was in: the verdict and the stream error condition are then
 * expat's. Passthrough lasts until the wrapper is freed, across restarts;
 * the one exception is a stream that expat would read as UTF-16 (see above),
 * which is refused without asking it. A passthrough that begins in the
 * middle of a stream (only after a false refusal by the scanner) leaves the
 * next streams of the link to xml_stream, UTF-16 detection included. */
typedef struct xml_scan_stream xml_scan_stream_t;

xml_scan_stream_t *xml_scan_stream_new(const xml_stream_cb_t *cb, void *ctx,
                                       const xml_limits_t *limits);
void xml_scan_stream_free(xml_scan_stream_t *ss);
xs_err_t xml_scan_stream_feed(xml_scan_stream_t *ss, const char *data, size_t len);
/* As xml_stream_restart. */
void xml_scan_stream_restart(xml_scan_stream_t *ss);
const char *xml_scan_stream_error_text(const xml_scan_stream_t *ss);
/* For tests: 1 once the stream is handled by xml_stream alone; the scanner. */
int xml_scan_stream_passthrough(const xml_scan_stream_t *ss);
const xml_scan_t *xml_scan_stream_scanner(const xml_scan_stream_t *ss);

#endif
