/* comp_fanout: reading and writing the fan-out element (comp_fanout.h). */
#include "comp_fanout.h"
#include "comp_proto.h"
#include <stdlib.h>
#include <string.h>

/* Length of s escaped as an attribute value by xml_escape (exact for valid
 * UTF-8, which is all a parsed tree or a prepared JID holds). */
static size_t escaped_len(const char *s)
{
    size_t n = 0;
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '&': n += 5; break;
        case '<': case '>': n += 4; break;
        case '"': case '\'': n += 6; break;
        case '\r': n += 5; break;
        case '\t': n += 4; break;
        case '\n': n += 5; break;
        default: n += 1; break;
        }
    }
    return n;
}

int comp_fanout_parse(xml_node_t *el, comp_fanout_t *f, const char **why)
{
    memset(f, 0, sizeof *f);
    strbuf_init(&f->tmpl);
    const char *h = xml_attr_get(el, "h"), *skip = xml_attr_get(el, "skip");
    if (h) {
        if (comp_proto_parse_u64(h, &f->h) < 0) {
            *why = "fanout with an h that is not decimal";
            return -1;
        }
        f->has_h = 1;
    }
    if (skip && comp_proto_parse_u64(skip, &f->skip) < 0) {
        *why = "fanout with a skip that is not decimal";
        return -1;
    }
    xml_node_t *stanza = NULL;
    size_t n = 0;
    for (xml_node_t *c = el->first_child; c; c = c->next) {
        if (!c->name)
            continue;       /* whitespace between children is allowed */
        if (!strcmp(c->ns, COMP_NS)) {
            if (strcmp(c->name, "r") || !xml_attr_get(c, "to")) {
                *why = "fanout child other than <w:r to='...'/> in the component namespace";
                return -1;
            }
            n++;
        } else if (!strcmp(c->ns, XML_NS_STREAM)) {
            *why = "fanout of a stream-level element";
            return -1;
        } else if (stanza) {
            *why = "fanout with more than one stanza";
            return -1;
        } else {
            stanza = c;
        }
    }
    if (!stanza) {
        *why = "fanout without a stanza";
        return -1;
    }
    if (f->skip > n) {
        *why = "fanout skip larger than its recipients";
        return -1;
    }
    f->to = xmalloc((n ? n : 1) * sizeof *f->to);
    for (xml_node_t *c = el->first_child; c; c = c->next)
        if (c->name && !strcmp(c->ns, COMP_NS))
            f->to[f->nto++] = xml_attr_get(c, "to");
    xml_attr_set(stanza, "to", NULL);
    f->ns = stanza->ns;
    f->name = stanza->name;
    f->type = xml_attr_get(stanza, "type");
    f->from = xml_attr_get(stanza, "from");
    f->user = xml_attr_get(stanza, "user");
    /* Serialized as a routed element of the receiver's stream: in
     * jabber:component:accept without a declaration (section 3.3). */
    xml_serialize(stanza, COMP_NS_ACCEPT, &f->tmpl);
    size_t i = 1;
    while (i < f->tmpl.len && !strchr(" \t\r\n/>", f->tmpl.data[i]))
        i++;
    f->name_end = i;
    return 0;
}

void comp_fanout_clear(comp_fanout_t *f)
{
    free(f->to);
    f->to = NULL;
    strbuf_free(&f->tmpl);
}

void comp_fanout_delivery(const comp_fanout_t *f, const char *to, strbuf_t *out)
{
    strbuf_append(out, f->tmpl.data, f->name_end);
    strbuf_puts(out, " to='");
    xml_escape(out, to, strlen(to), 1);
    strbuf_putc(out, '\'');
    strbuf_append(out, f->tmpl.data + f->name_end, f->tmpl.len - f->name_end);
}

size_t comp_fanout_delivery_len(const comp_fanout_t *f, const char *to)
{
    return f->tmpl.len + 6 + escaped_len(to);
}

size_t comp_fanout_recipient_len(const char *to)
{
    return strlen("<w:r to=''/>") + escaped_len(to);
}

void comp_fanout_write_body(strbuf_t *out, const char *stanza, size_t len, const char *const *to,
                            size_t n)
{
    strbuf_putc(out, '>');
    for (size_t i = 0; i < n; i++) {
        strbuf_puts(out, "<w:r to='");
        xml_escape(out, to[i], strlen(to[i]), 1);
        strbuf_puts(out, "'/>");
    }
    strbuf_append(out, stanza, len);
    strbuf_puts(out, "</w:fanout>");
}

/* --- <w:fan/>: the router's grouped deliveries ------------------------------ */

int comp_fanin_parse(xml_node_t *el, comp_fanin_t *f, const char **why)
{
    memset(f, 0, sizeof *f);
    uint64_t next;
    if (comp_proto_parse_u64(xml_attr_get(el, "n"), &next) < 0 || next == 0) {
        *why = "fan without a valid n";
        return -1;
    }
    f->epoch = xml_attr_get(el, "e");
    f->via = xml_attr_get(el, "p");
    if (f->epoch && !*f->epoch) {
        *why = "fan with an empty e";
        return -1;
    }
    size_t n = 0;
    for (xml_node_t *c = el->first_child; c; c = c->next) {
        if (!c->name)
            continue;
        if (!strcmp(c->ns, COMP_NS)) {
            if (strcmp(c->name, "r") || !xml_attr_get(c, "to")) {
                *why = "fan child other than <w:r to='...'/> in the component namespace";
                return -1;
            }
            n++;
        } else if (!strcmp(c->ns, XML_NS_STREAM)) {
            *why = "fan of a stream-level element";
            return -1;
        } else if (f->stanza) {
            *why = "fan with more than one stanza";
            return -1;
        } else {
            f->stanza = c;
        }
    }
    if (!f->stanza || !n) {
        *why = f->stanza ? "fan without a recipient" : "fan without a stanza";
        return -1;
    }
    f->to = xmalloc(n * sizeof *f->to);
    f->n = xmalloc(n * sizeof *f->n);
    uint64_t prev = 0;
    for (xml_node_t *c = el->first_child; c; c = c->next) {
        if (!c->name || strcmp(c->ns, COMP_NS))
            continue;
        const char *own = xml_attr_get(c, "n");
        uint64_t seq = next;
        if (own && (comp_proto_parse_u64(own, &seq) < 0 || seq == 0 || seq < next)) {
            *why = "fan recipient with an n that is not decimal or not larger than the one before";
            comp_fanin_clear(f);
            return -1;
        }
        if (f->nto && seq <= prev) {
            *why = "fan recipient seqs out of order";
            comp_fanin_clear(f);
            return -1;
        }
        f->to[f->nto] = xml_attr_get(c, "to");
        f->n[f->nto++] = seq;
        prev = seq;
        next = seq + 1;
        if (next == 0) {            /* past UINT64_MAX: nothing may follow */
            *why = "fan recipient seq overflow";
            comp_fanin_clear(f);
            return -1;
        }
    }
    return 0;
}

void comp_fanin_clear(comp_fanin_t *f)
{
    free(f->to);
    free(f->n);
    f->to = NULL;
    f->n = NULL;
    f->nto = 0;
}

/* Decimal of v into buf (at least 21 bytes); returns its length. */
static size_t dec(char *buf, uint64_t v)
{
    char tmp[20];
    size_t k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < k; i++)
        buf[i] = tmp[k - 1 - i];
    return k;
}

void comp_fanin_write(strbuf_t *out, const char *epoch, const char *via, const char *const *to,
                      const uint64_t *n, size_t k, const char *tmpl, size_t tlen)
{
    char num[24];
    strbuf_puts(out, "<w:fan");
    if (epoch) {
        strbuf_puts(out, " e='");
        xml_escape(out, epoch, strlen(epoch), 1);
        strbuf_putc(out, '\'');
    }
    if (via) {
        strbuf_puts(out, " p='");
        xml_escape(out, via, strlen(via), 1);
        strbuf_putc(out, '\'');
    }
    strbuf_puts(out, " n='");
    strbuf_append(out, num, dec(num, k ? n[0] : 1));
    strbuf_puts(out, "'>");
    for (size_t i = 0; i < k; i++) {
        strbuf_puts(out, "<w:r to='");
        xml_escape(out, to[i], strlen(to[i]), 1);
        strbuf_putc(out, '\'');
        if (i && n[i] != n[i - 1] + 1) {
            strbuf_puts(out, " n='");
            strbuf_append(out, num, dec(num, n[i]));
            strbuf_putc(out, '\'');
        }
        strbuf_puts(out, "/>");
    }
    strbuf_append(out, tmpl, tlen);
    strbuf_puts(out, "</w:fan>");
}

size_t comp_fanin_recipient_len(const char *to, uint64_t n)
{
    (void)n;
    return strlen("<w:r to='' n='18446744073709551615'/>") + escaped_len(to);
}
