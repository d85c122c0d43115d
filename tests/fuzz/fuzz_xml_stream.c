/* libFuzzer target for xml_stream.c (and, through round trips, xml.c and
 * xml_serialize.c). The first input byte picks the split point of the rest
 * and a few options; the input is then parsed twice (tree mode, raw mode).
 * Checked properties: no crash or leak under ASan/UBSan, raw bytes are an
 * exact slice of the input, every stanza tree survives serialize + reparse
 * unchanged, and xml_parse_document copes with the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "xml_stream.h"

typedef struct fz {
    xml_stream_t *xs;
    const uint8_t *in;
    size_t in_len;
    int raw;
    int restart;
} fz_t;

static void fz_open(void *ctx, const xml_node_t *hdr, const char *default_ns)
{
    (void)ctx;
    if (!hdr || !default_ns)
        abort();
}

static int fz_classify(void *ctx, const char *ns, const char *name, const char **attrs)
{
    fz_t *f = ctx;
    (void)ns, (void)name;
    (void)xml_attrs_find(attrs, "to");
    return f->raw ? XS_RAW : XS_TREE;
}

static void fz_stanza(void *ctx, xml_node_t *st)
{
    fz_t *f = ctx;
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(st, NULL, &sb);
    /* Generous limits: serializing may add declarations and references. */
    xml_limits_t lim = { 1u << 24, 1000, 100000, 1u << 24, 1u << 16, 0 };
    char err[128];
    xml_node_t *back = xml_parse_document(sb.data, sb.len, &lim, err, sizeof(err), NULL);
    if (!back || !xml_equal(st, back))
        abort();
    xml_free(back);
    strbuf_free(&sb);
    if (f->restart && strcmp(st->name, "proceed") == 0)
        xml_stream_restart(f->xs);
    xml_free(st);
}

static void fz_raw(void *ctx, const char *ns, const char *name, const char **attrs,
                   const char *bytes, size_t len)
{
    fz_t *f = ctx;
    (void)ns, (void)attrs;
    if (len < 2 || bytes[0] != '<' || bytes[len - 1] != '>')
        abort();
    /* The slice must be somewhere in the input (restarts shift offsets). */
    if (!memmem(f->in, f->in_len, bytes, len))
        abort();
    if (f->restart && strcmp(name, "proceed") == 0)
        xml_stream_restart(f->xs);
}

static void fz_close(void *ctx)
{
    (void)ctx;
}

static const xml_stream_cb_t fz_cb = { fz_open, fz_classify, fz_stanza, fz_raw, fz_close };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t ctl = data[0];
    const uint8_t *in = data + 1;
    size_t len = size - 1;
    size_t cut = len ? (size_t)(ctl * len / 255) : 0;
    xml_limits_t lim;
    xml_limits_default(&lim);
    if (ctl & 1) {
        /* Small limits reach the limit paths with short inputs. */
        lim.max_stanza_bytes = 200;
        lim.max_depth = 4;
        lim.max_attrs = 3;
        lim.max_text = 30;
        lim.max_header_bytes = 150;
    }
    for (int raw = 0; raw < 2; raw++) {
        fz_t f = { NULL, in, len, raw, (ctl & 2) != 0 };
        f.xs = xml_stream_new(&fz_cb, &f, &lim);
        xs_err_t err = xml_stream_feed(f.xs, (const char *)in, cut);
        if (err == XS_OK)
            err = xml_stream_feed(f.xs, (const char *)in + cut, len - cut);
        if (err != XS_OK && !xml_stream_error_text(f.xs)[0])
            abort();
        (void)xs_err_condition(err);
        xml_stream_free(f.xs);
    }
    char err[64];
    unsigned line;
    xml_node_t *doc = xml_parse_document((const char *)in, len, &lim, err, sizeof(err), &line);
    xml_free(doc);
    return 0;
}
