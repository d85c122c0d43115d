/* libFuzzer target for comp_fanout.c, both of its readers of network
 * input. The router's reader of the fan-out element (docs/component-protocol.md
 * 9.7), as the router reaches it: the input follows an internal component's
 * stream header (xmlns:w declared) and every <w:fanout/> it holds is parsed
 * with comp_fanout_parse. Checked properties: no crash or leak under
 * ASan/UBSan; a fan-out that parses has skip <= its recipients; each
 * delivery it makes parses back as one element with the stanza's name and
 * the recipient as its 'to', and its length is the one
 * comp_fanout_delivery_len announced; the component-side writer gives back
 * an element that parses to the same recipients.
 * And comp_client's reader of the router's grouped deliveries (9.8): every
 * <w:fan/> is parsed with comp_fanin_parse as comp_client does. Checked: one
 * that parses has at least one recipient, a stanza outside w:, strictly
 * increasing seqs >= 1; the router's writer (comp_fanin_write) gives back an
 * element that parses to the same recipients and seqs, no longer than
 * comp_fanin_recipient_len promises. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "comp_fanout.h"
#include "comp_proto.h"
#include "xml_stream.h"

static void check_delivery(const comp_fanout_t *f, const char *to)
{
    strbuf_t sb;
    strbuf_init(&sb);
    comp_fanout_delivery(f, to, &sb);
    if (sb.len != comp_fanout_delivery_len(f, to))
        abort();
    xml_node_t *d = comp_proto_parse(sb.data, sb.len);
    if (!d || strcmp(d->name, f->name) || !xml_attr_get(d, "to") || strcmp(xml_attr_get(d, "to"), to))
        abort();
    xml_free(d);
    strbuf_free(&sb);
}

/* The writer's element read back by the reader: same recipients. */
static void check_roundtrip(const comp_fanout_t *f)
{
    strbuf_t el;
    strbuf_init(&el);
    strbuf_puts(&el, "<w:fanout xmlns:w='" COMP_NS "'");
    comp_fanout_write_body(&el, f->tmpl.data, f->tmpl.len, f->to, f->nto);
    xml_node_t *back = comp_proto_parse(el.data, el.len);
    comp_fanout_t g;
    const char *why = NULL;
    if (!back || comp_fanout_parse(back, &g, &why) < 0 || g.nto != f->nto)
        abort();
    for (size_t i = 0; i < g.nto; i++)
        if (strcmp(g.to[i], f->to[i]))
            abort();
    comp_fanout_clear(&g);
    xml_free(back);
    strbuf_free(&el);
}

/* comp_client's reader: properties of a <w:fan/> that parsed, and the
 * router's writer read back. */
static void check_fanin(xml_node_t *st)
{
    comp_fanin_t f;
    const char *why = NULL;
    if (comp_fanin_parse(st, &f, &why) < 0) {
        if (!why || !*why)
            abort();
        return;
    }
    if (!f.nto || !f.stanza || !strcmp(f.stanza->ns, COMP_NS) || f.n[0] == 0)
        abort();
    for (size_t i = 1; i < f.nto; i++)
        if (f.n[i] <= f.n[i - 1])
            abort();
    strbuf_t tmpl, el;
    strbuf_init(&tmpl);
    strbuf_init(&el);
    xml_attr_set(f.stanza, "to", NULL);
    xml_serialize(f.stanza, COMP_NS_ACCEPT, &tmpl);
    strbuf_puts(&el, "<w:fan xmlns:w='" COMP_NS "'");
    size_t hdr = el.len;
    comp_fanin_write(&el, f.epoch, f.via, f.to, f.n, f.nto, tmpl.data, tmpl.len);
    /* comp_fanin_write wrote "<w:fan" again: keep one, with the declaration. */
    memmove(el.data + hdr, el.data + hdr + strlen("<w:fan"), el.len - hdr - strlen("<w:fan"));
    el.len -= strlen("<w:fan");
    size_t bound = tmpl.len + 96 + (f.epoch ? 6 * strlen(f.epoch) : 0) + (f.via ? 6 * strlen(f.via) : 0) +
                   strlen(" xmlns:w='" COMP_NS "'");
    for (size_t i = 0; i < f.nto; i++)
        bound += comp_fanin_recipient_len(f.to[i], f.n[i]);
    if (el.len > bound)
        abort();
    xml_node_t *back = comp_proto_parse(el.data, el.len);
    comp_fanin_t g;
    if (!back || comp_fanin_parse(back, &g, &why) < 0 || g.nto != f.nto)
        abort();
    for (size_t i = 0; i < g.nto; i++)
        if (strcmp(g.to[i], f.to[i]) || g.n[i] != f.n[i])
            abort();
    if ((f.epoch == NULL) != (g.epoch == NULL) || (f.epoch && strcmp(f.epoch, g.epoch)))
        abort();
    comp_fanin_clear(&g);
    xml_free(back);
    strbuf_free(&el);
    strbuf_free(&tmpl);
    comp_fanin_clear(&f);
}

static void fz_stanza(void *ctx, xml_node_t *st)
{
    (void)ctx;
    if (!strcmp(st->ns, COMP_NS) && !strcmp(st->name, "fan"))
        check_fanin(st);
    if (!strcmp(st->ns, COMP_NS) && !strcmp(st->name, "fanout")) {
        comp_fanout_t f;
        const char *why = NULL;
        if (comp_fanout_parse(st, &f, &why) == 0) {
            if (f.skip > f.nto || f.name_end < 2 || f.name_end > f.tmpl.len)
                abort();
            for (size_t i = (size_t)f.skip; i < f.nto; i++)
                check_delivery(&f, f.to[i]);
            check_roundtrip(&f);
        } else if (!why || !*why) {
            abort();
        }
        comp_fanout_clear(&f);
    }
    xml_free(st);
}

static const xml_stream_cb_t fz_cb = { .on_stanza = fz_stanza };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    strbuf_t hdr;
    strbuf_init(&hdr);
    comp_proto_header(&hdr, NULL, "router", NULL, 1);
    xml_limits_t lim;
    xml_limits_default(&lim);
    lim.max_stanza_bytes = 1u << 16;
    xml_stream_t *xs = xml_stream_new(&fz_cb, NULL, &lim);
    if (xml_stream_feed(xs, hdr.data, hdr.len) == XS_OK)
        (void)xml_stream_feed(xs, (const char *)data, size);
    xml_stream_free(xs);
    strbuf_free(&hdr);
    return 0;
}
