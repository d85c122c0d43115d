/* comp_proto: builders shared by both ends of the internal protocol. */
#include "comp_proto.h"
#include "xml_stream.h"
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

void comp_proto_header(strbuf_t *out, const char *from, const char *to, const char *id,
                       int internal)
{
    strbuf_puts(out, "<?xml version='1.0'?><stream:stream xmlns='" COMP_NS_ACCEPT
                     "' xmlns:stream='" XML_NS_STREAM "'");
    if (internal)
        strbuf_puts(out, " xmlns:w='" COMP_NS "' version='1.0'");
    const char *names[3] = {"from", "to", "id"};
    const char *vals[3] = {from, to, id};
    for (int i = 0; i < 3; i++) {
        if (!vals[i])
            continue;
        strbuf_printf(out, " %s='", names[i]);
        xml_escape(out, vals[i], strlen(vals[i]), 1);
        strbuf_putc(out, '\'');
    }
    strbuf_putc(out, '>');
}

void comp_proto_stream_error(strbuf_t *out, const char *condition, const char *text)
{
    strbuf_printf(out, "<stream:error><%s xmlns='" NS_STREAMS "'/>", condition);
    if (text) {
        strbuf_puts(out, "<text xmlns='" NS_STREAMS "'>");
        xml_escape(out, text, strlen(text), 0);
        strbuf_puts(out, "</text>");
    }
    strbuf_puts(out, "</stream:error></stream:stream>");
}

int comp_proto_bounceable(const char *name, const char *type)
{
    if (type && !strcmp(type, "error"))
        return 0;
    if (!strcmp(name, "iq"))
        return type && (!strcmp(type, "get") || !strcmp(type, "set"));
    return 1;
}

typedef struct bounce_ctx {
    xml_node_t *el;
} bounce_ctx_t;

static void bounce_on_stanza(void *ctx, xml_node_t *st)
{
    bounce_ctx_t *b = ctx;
    if (b->el)
        xml_free(b->el);
    b->el = st;
}

xml_node_t *comp_proto_parse(const char *bytes, size_t len)
{
    /* w: declared as on a component stream: the router parses its own
     * <w:fan/> elements again when it requeues their deliveries. */
    static const char hdr[] = "<stream:stream xmlns='" COMP_NS_ACCEPT "' xmlns:stream='" XML_NS_STREAM
                              "' xmlns:w='" COMP_NS "'>";
    xml_stream_cb_t cb = {0};
    cb.on_stanza = bounce_on_stanza;
    bounce_ctx_t b = {NULL};
    xml_limits_t lim;
    xml_limits_default(&lim);
    lim.max_stanza_bytes = len + 1;
    xml_stream_t *xs = xml_stream_new(&cb, &b, &lim);
    if (xml_stream_feed(xs, hdr, sizeof hdr - 1) != XS_OK || xml_stream_feed(xs, bytes, len) != XS_OK) {
        xml_stream_free(xs);
        if (b.el)
            xml_free(b.el);
        return NULL;
    }
    xml_stream_free(xs);
    return b.el;
}

xml_node_t *comp_proto_bounce(const char *bytes, size_t len, const char *condition,
                              const char *etype)
{
    xml_node_t *el = comp_proto_parse(bytes, len);
    if (!el)
        return NULL;
    if (!comp_proto_bounceable(el->name, xml_attr_get(el, "type"))) {
        xml_free(el);
        return NULL;
    }
    char *from = xml_attr_get(el, "from") ? xstrdup(xml_attr_get(el, "from")) : NULL;
    char *to = xml_attr_get(el, "to") ? xstrdup(xml_attr_get(el, "to")) : NULL;
    xml_attr_set(el, "from", to);
    xml_attr_set(el, "to", from);
    free(from);
    free(to);
    xml_attr_set(el, "type", "error");
    xml_node_t *err = xml_add_child(el, el->ns, "error");
    xml_attr_set(err, "type", etype);
    xml_add_child(err, NS_STANZAS, condition);
    return el;
}

/* FNV-1a over key and instance, finished with the splitmix64 mixer so nearby
 * inputs spread evenly. */
uint64_t comp_proto_partition_score(const char *key, size_t key_len, const char *instance)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < key_len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ULL;
    }
    h ^= 0xff;
    h *= 1099511628211ULL;
    for (const char *p = instance; *p; p++) {
        h ^= (unsigned char)*p;
        h *= 1099511628211ULL;
    }
    h += 0x9e3779b97f4a7c15ULL;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

void comp_proto_random_hex(char *buf, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[64];
    if (nbytes > sizeof raw)
        nbytes = sizeof raw;
    RAND_bytes(raw, (int)nbytes);
    for (size_t i = 0; i < nbytes; i++) {
        buf[2 * i] = hex[raw[i] >> 4];
        buf[2 * i + 1] = hex[raw[i] & 15];
    }
    buf[2 * nbytes] = '\0';
}

int comp_proto_parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > UINT64_MAX / 10 - 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}
