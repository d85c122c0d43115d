/* Differential libFuzzer target: xml_scan (and xml_scan_stream) against
 * xml_stream, the expat-based reference.
 *
 * Input: two control bytes, then the stream. The control bytes pick small or
 * default limits, whether a standard header is prepended, whether an element
 * named "proceed" restarts the stream, and the random split points (or one
 * byte at a time). Both parsers get the same splits: xml_stream checks the
 * size of what it holds at the end of each feed, so its verdict on an
 * oversized element depends on them, and the scanner's does the same way.
 *
 * Check A, the scanner alone: it must report the same header, the same
 * top-level elements (namespace, name, attributes, exact bytes) and the
 * close, and end with the same verdict and stream error condition. Where the
 * scanner does not judge (XSCAN_UNSURE, or an element it reports as unsure
 * because of non-ASCII names; see xml_scan.h), the two may part there and
 * only there.
 *
 * Streams whose first bytes make expat switch to UTF-16 are skipped: the
 * scanner refuses them on purpose (XMPP is UTF-8 only), expat does not.
 *
 * Check B, xml_scan_stream as the router uses it: a classify() that sends
 * some elements to the tree parser, the rest raw; every callback (trees
 * serialized) and the final verdict must be identical to xml_stream's,
 * except that an element with non-ASCII names is judged (by expat) only once
 * it is complete, where expat alone may refuse it earlier. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "xml_scan.h"

#define HDR "<stream:stream xmlns='jabber:component:accept' " \
    "xmlns:stream='http://etherx.jabber.org/streams' xmlns:w='urn:xmpp:weft:component:1'>"

typedef struct run {
    strbuf_t log;
    size_t unsure[1024];  /* log offsets of elements the scanner was unsure of */
    size_t nunsure;
    int restart;          /* restart on <proceed/> */
    xml_stream_t *xs;
    xml_scan_t *sc;
    xml_scan_stream_t *ss;
} run_t;

static void log_attrs(strbuf_t *l, const char **attrs)
{
    for (size_t i = 0; attrs[i]; i += 2) {
        strbuf_printf(l, " %s=[", attrs[i]);
        strbuf_append(l, attrs[i + 1], strlen(attrs[i + 1]));
        strbuf_putc(l, ']');
    }
}

static void log_node_attrs(strbuf_t *l, const xml_node_t *n)
{
    for (unsigned i = 0; i < n->nattrs; i++) {
        if (n->attrs[i].ns)
            strbuf_printf(l, " %s|%s=[", n->attrs[i].ns, n->attrs[i].name);
        else
            strbuf_printf(l, " %s=[", n->attrs[i].name);
        strbuf_puts(l, n->attrs[i].value);
        strbuf_putc(l, ']');
    }
}

static void do_restart(run_t *r)
{
    strbuf_puts(&r->log, "RESTART\n");
    if (r->xs)
        xml_stream_restart(r->xs);
    if (r->sc)
        xml_scan_restart(r->sc);
    if (r->ss)
        xml_scan_stream_restart(r->ss);
}

/* ---- callbacks of the xml_stream flavours (reference and wrapper) ---- */

static void x_open(void *ctx, const xml_node_t *hdr, const char *dns)
{
    run_t *r = ctx;
    strbuf_printf(&r->log, "OPEN {%s}%s dns=%s", hdr->ns, hdr->name, dns);
    log_node_attrs(&r->log, hdr);
    strbuf_putc(&r->log, '\n');
}

/* Check B's split: the weft control namespace, the stream namespace and
 * elements whose name starts with 't' go to the tree parser. */
static int x_classify_b(void *ctx, const char *ns, const char *name, const char **attrs)
{
    (void)ctx, (void)attrs;
    if (!strcmp(ns, "urn:xmpp:weft:component:1") || !strcmp(ns, XML_NS_STREAM) || name[0] == 't')
        return XS_TREE;
    return XS_RAW;
}

static int x_classify_a(void *ctx, const char *ns, const char *name, const char **attrs)
{
    (void)ctx, (void)ns, (void)name, (void)attrs;
    return XS_RAW;
}

static void x_stanza(void *ctx, xml_node_t *st)
{
    run_t *r = ctx;
    strbuf_puts(&r->log, "TREE ");
    xml_serialize(st, NULL, &r->log);
    strbuf_putc(&r->log, '\n');
    int proceed = !strcmp(st->name, "proceed");
    xml_free(st);
    if (r->restart && proceed)
        do_restart(r);
}

static void x_raw(void *ctx, const char *ns, const char *name, const char **attrs,
                  const char *bytes, size_t len)
{
    run_t *r = ctx;
    strbuf_printf(&r->log, "RAW {%s}%s", ns, name);
    log_attrs(&r->log, attrs);
    strbuf_puts(&r->log, " bytes=[");
    strbuf_append(&r->log, bytes, len);
    strbuf_puts(&r->log, "]\n");
    if (r->restart && !strcmp(name, "proceed"))
        do_restart(r);
}

static void x_close(void *ctx)
{
    run_t *r = ctx;
    strbuf_puts(&r->log, "CLOSE\n");
}

static const xml_stream_cb_t cb_a = { x_open, x_classify_a, x_stanza, x_raw, x_close };
static const xml_stream_cb_t cb_b = { x_open, x_classify_b, x_stanza, x_raw, x_close };

/* ---- callbacks of the scanner ---- */

static void note_unsure(run_t *r, const xscan_elem_t *el)
{
    if (el->unsure && r->nunsure < 1024)
        r->unsure[r->nunsure++] = r->log.len;
}

static void s_header(void *ctx, const xscan_elem_t *hdr, const char *dns)
{
    run_t *r = ctx;
    note_unsure(r, hdr);
    strbuf_printf(&r->log, "OPEN {%s}%s dns=%s", hdr->ns, hdr->name, dns);
    log_attrs(&r->log, hdr->attrs);
    strbuf_putc(&r->log, '\n');
}

static void s_element(void *ctx, const xscan_elem_t *el)
{
    note_unsure(ctx, el);
    x_raw(ctx, el->ns, el->name, el->attrs, el->bytes, el->len);
}

static void s_close(void *ctx, const char *bytes, size_t len)
{
    (void)bytes, (void)len;
    x_close(ctx);
}

static const xml_scan_cb_t cb_s = { s_header, s_element, s_close };

/* ---- driving ---- */

static uint32_t rng_next(uint32_t *st)
{
    *st ^= *st << 13;
    *st ^= *st >> 17;
    *st ^= *st << 5;
    return *st;
}

/* Feeds data in pieces chosen by seed (0: one byte at a time); stops at the
 * first result that is not XS_OK. */
static int feed_all(int (*feed)(void *, const char *, size_t), void *obj, const char *data,
                    size_t len, uint32_t seed)
{
    size_t off = 0;
    int r = 0;
    uint32_t st = seed | 1;
    while (off < len && r == 0) {
        size_t piece = 1;
        if (seed) {
            uint32_t v = rng_next(&st);
            piece = (v & 3) == 0 ? len - off : 1 + (v >> 8) % (len - off);
        }
        r = feed(obj, data + off, piece);
        off += piece;
    }
    if (r == 0)
        r = feed(obj, data + len, 0);
    return r;
}

static int f_xs(void *o, const char *d, size_t n) { return xml_stream_feed(o, d, n); }
static int f_sc(void *o, const char *d, size_t n) { return xml_scan_feed(o, d, n); }
static int f_ss(void *o, const char *d, size_t n) { return xml_scan_stream_feed(o, d, n); }

static void mismatch(const char *what, const run_t *a, int ra, const run_t *b, int rb,
                     const char *texta, const char *textb)
{
    fprintf(stderr, "MISMATCH (%s)\n--- xml_stream: %d %s\n%s--- other: %d %s\n%s", what, ra, texta,
            a->log.data ? a->log.data : "", rb, textb, b->log.data ? b->log.data : "");
    abort();
}

/* Check A's rule (see the top). */
static int a_agrees(const run_t *ref, int rr, const run_t *sc, int rs)
{
    const char *le = ref->log.data ? ref->log.data : "", *ls = sc->log.data ? sc->log.data : "";
    if (rr == rs && !strcmp(le, ls))
        return 1;
    size_t d = 0;
    while (le[d] && le[d] == ls[d])
        d++;
    if (rs == XSCAN_UNSURE && !ls[d])
        return 1;
    for (size_t i = 0; i < sc->nunsure; i++)
        if (sc->unsure[i] == d || (sc->unsure[i] < d && !le[d] && !ls[d]))
            return rs == XSCAN_UNSURE || rr != rs || sc->unsure[i] == d;
    return 0;
}

/* Expat reads a stream as UTF-16 when its first two bytes hold a NUL or a
 * UTF-16 byte order mark; a stream starts at the input or, with restarts,
 * after a '>'. */
static int utf16_start(const char *p, size_t n, int restart)
{
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && !(restart && p[i - 1] == '>'))
            continue;
        unsigned char a = (unsigned char)p[i], b = i + 1 < n ? (unsigned char)p[i + 1] : 1;
        if (a == 0 || a == 0xFE || a == 0xFF || b == 0)
            return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t c0 = data[0], c1 = data[1];
    xml_limits_t lim;
    xml_limits_default(&lim);
    if (c0 & 1) {
        lim.max_stanza_bytes = 200;
        lim.max_depth = 4;
        lim.max_attrs = 3;
        lim.max_text = 30;
        lim.max_header_bytes = 150 + ((c0 & 2) ? sizeof HDR : 0);
    }
    strbuf_t in;
    strbuf_init(&in);
    if (c0 & 2)
        strbuf_puts(&in, HDR);
    strbuf_append(&in, (const char *)data + 2, size - 2);
    int restart = (c0 & 4) != 0;
    if (utf16_start(in.data, in.len, restart)) {
        strbuf_free(&in);
        return 0;
    }
    uint32_t seed = (c0 & 16) ? 0 : 0xc2b2ae35u * (c1 + 3u) + (c0 >> 5);
    if (in.len > 4096 && !seed)
        seed = 1;   /* one byte at a time only for small inputs */

    /* Check A. */
    run_t ref = { .restart = restart };
    strbuf_init(&ref.log);
    ref.xs = xml_stream_new(&cb_a, &ref, &lim);
    int rr = feed_all(f_xs, ref.xs, in.data, in.len, seed);
    run_t sca = { .restart = restart };
    strbuf_init(&sca.log);
    sca.sc = xml_scan_new(&cb_s, &sca, &lim);
    int rs = feed_all(f_sc, sca.sc, in.data, in.len, seed);
    if (rs == XS_OK && xml_scan_unsure(sca.sc))
        rs = XSCAN_UNSURE;   /* in the middle of a unit it does not judge */
    if (!a_agrees(&ref, rr, &sca, rs))
        mismatch("A", &ref, rr, &sca, rs, xml_stream_error_text(ref.xs), xml_scan_error_text(sca.sc));
    xml_stream_free(ref.xs);
    xml_scan_free(sca.sc);
    strbuf_free(&ref.log);
    strbuf_free(&sca.log);

    /* Check B. */
    run_t refb = { .restart = restart };
    strbuf_init(&refb.log);
    refb.xs = xml_stream_new(&cb_b, &refb, &lim);
    rr = feed_all(f_xs, refb.xs, in.data, in.len, seed);
    run_t wr = { .restart = restart };
    strbuf_init(&wr.log);
    wr.ss = xml_scan_stream_new(&cb_b, &wr, &lim);
    rs = feed_all(f_ss, wr.ss, in.data, in.len, seed);
    const char *la = refb.log.data ? refb.log.data : "", *lb = wr.log.data ? wr.log.data : "";
    int later = rs == XS_OK && rr != XS_OK && !xml_scan_stream_passthrough(wr.ss) &&
                xml_scan_unsure(xml_scan_stream_scanner(wr.ss));
    if ((rs != rr && !later) || strcmp(la, lb))
        mismatch("B", &refb, rr, &wr, rs, xml_stream_error_text(refb.xs),
                 xml_scan_stream_error_text(wr.ss));
    xml_stream_free(refb.xs);
    xml_scan_stream_free(wr.ss);
    strbuf_free(&refb.log);
    strbuf_free(&wr.log);
    strbuf_free(&in);
    return 0;
}
