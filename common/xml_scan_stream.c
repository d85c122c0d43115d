/* xml_scan_stream: xml_scan framing a stream, xml_stream judging what the
 * scanner does not forward raw (see xml_scan.h). Only the public API of
 * both parsers is used here. */
#include "xml_scan.h"
#include <stdlib.h>

struct xml_scan_stream {
    xml_stream_cb_t cb;
    void *ctx;
    xml_scan_t *sc;
    xml_stream_t *xs;
    int passthrough;
    int events;        /* xml_stream events during a hand-off */
    int xs_closed;
    xs_err_t err;      /* xml_stream's verdict, kept by the wrapper */
};

static void w_open(void *ctx, const xml_node_t *hdr, const char *default_ns)
{
    xml_scan_stream_t *ss = ctx;
    ss->events++;
    if (ss->cb.on_open)
        ss->cb.on_open(ss->ctx, hdr, default_ns);
}

static int w_classify(void *ctx, const char *ns, const char *name, const char **attrs)
{
    xml_scan_stream_t *ss = ctx;
    if (!ss->cb.classify || !ss->cb.on_raw)
        return XS_TREE;
    return ss->cb.classify(ss->ctx, ns, name, attrs);
}

static void w_stanza(void *ctx, xml_node_t *st)
{
    xml_scan_stream_t *ss = ctx;
    ss->events++;
    if (ss->cb.on_stanza)
        ss->cb.on_stanza(ss->ctx, st);
    else
        xml_free(st);
}

static void w_raw(void *ctx, const char *ns, const char *name, const char **attrs,
                  const char *bytes, size_t len)
{
    xml_scan_stream_t *ss = ctx;
    ss->events++;
    if (ss->cb.on_raw)
        ss->cb.on_raw(ss->ctx, ns, name, attrs, bytes, len);
}

static void w_close(void *ctx)
{
    xml_scan_stream_t *ss = ctx;
    ss->events++;
    ss->xs_closed = 1;
    if (ss->cb.on_close)
        ss->cb.on_close(ss->ctx);
}

static const xml_stream_cb_t w_cb = { w_open, w_classify, w_stanza, w_raw, w_close };

/* Gives one unit the scanner framed (header or element) to xml_stream. It
 * must report something; if it waits for more instead, or the stream is
 * over, the rest of the stream is its alone. */
static void handoff(xml_scan_stream_t *ss, const char *bytes, size_t len)
{
    ss->events = 0;
    xs_err_t e = xml_stream_feed(ss->xs, bytes, len);
    if (e != XS_OK) {
        ss->err = e;
        xml_scan_stop(ss->sc, 1);
    } else if (ss->xs_closed || ss->events == 0) {
        xml_scan_stop(ss->sc, 1);
    }
}

static void s_header(void *ctx, const xscan_elem_t *hdr, const char *default_ns)
{
    (void)default_ns;
    handoff(ctx, hdr->bytes, hdr->len);
}

static void s_element(void *ctx, const xscan_elem_t *el)
{
    xml_scan_stream_t *ss = ctx;
    if (!el->unsure && ss->cb.classify && ss->cb.on_raw &&
        ss->cb.classify(ss->ctx, el->ns, el->name, el->attrs) == XS_RAW)
        ss->cb.on_raw(ss->ctx, el->ns, el->name, el->attrs, el->bytes, el->len);
    else
        handoff(ss, el->bytes, el->len);
}

static void s_close(void *ctx, const char *bytes, size_t len)
{
    (void)bytes, (void)len;
    xml_scan_stream_t *ss = ctx;
    /* xml_stream reads the closing tag and checks what follows. */
    if (!ss->xs_closed)
        xml_scan_stop(ss->sc, 0);
}

static const xml_scan_cb_t s_cb = { s_header, s_element, s_close };

xml_scan_stream_t *xml_scan_stream_new(const xml_stream_cb_t *cb, void *ctx,
                                       const xml_limits_t *limits)
{
    xml_scan_stream_t *ss = xcalloc(1, sizeof *ss);
    if (cb)
        ss->cb = *cb;
    ss->ctx = ctx;
    ss->sc = xml_scan_new(&s_cb, ss, limits);
    ss->xs = xml_stream_new(&w_cb, ss, limits);
    return ss;
}

void xml_scan_stream_free(xml_scan_stream_t *ss)
{
    if (!ss)
        return;
    xml_scan_free(ss->sc);
    xml_stream_free(ss->xs);
    free(ss);
}

xs_err_t xml_scan_stream_feed(xml_scan_stream_t *ss, const char *data, size_t len)
{
    if (ss->err)
        return ss->err;
    if (!ss->passthrough) {
        int r = xml_scan_feed(ss->sc, data, len);
        if (ss->err || r == XS_OK)
            return ss->err;
        /* From the unit the scanner was in, the stream is expat's
         * (xml_stream refuses a stream expat would read as UTF-16). */
        xml_scan_pending(ss->sc, &data, &len);
        ss->passthrough = 1;
    }
    ss->err = xml_stream_feed(ss->xs, data, len);
    return ss->err;
}

void xml_scan_stream_restart(xml_scan_stream_t *ss)
{
    xml_stream_restart(ss->xs);
    if (!ss->passthrough)
        xml_scan_restart(ss->sc);
    ss->xs_closed = 0;
    /* Outside a callback a restart clears the error, as xml_stream's does
     * (inside one there is none). */
    ss->err = XS_OK;
}

const char *xml_scan_stream_error_text(const xml_scan_stream_t *ss)
{
    if (!ss->err)
        return "";
    return xml_stream_error_text(ss->xs);
}

int xml_scan_stream_passthrough(const xml_scan_stream_t *ss)
{
    return ss->passthrough;
}

const xml_scan_t *xml_scan_stream_scanner(const xml_scan_stream_t *ss)
{
    return ss->sc;
}
