/* xml_serialize: turns a stanza tree back into bytes.
 *
 * Guarantee: for every tree whose names are valid NCNames and whose element
 * namespaces are not the reserved xml/xmlns URIs, parsing the output gives a
 * tree xml_equal to the input. To keep that true:
 *  - an element carries xmlns='...' whenever its namespace differs from the one
 *    in scope (including xmlns='' to leave a default namespace);
 *  - namespaced attributes get a generated prefix (w0, w1, ...) declared on
 *    the same element; the XML namespace uses the predefined xml: prefix;
 *  - characters a parser would normalise (CR in text; TAB, LF, CR in
 *    attribute values) are written as character references.
 * The output is always well-formed, whatever the tree holds: bytes that are not
 * valid UTF-8 and characters XML 1.0 forbids become U+FFFD, and attributes
 * spelled like namespace declarations (which the tree expresses through ns) are
 * skipped rather than emitted twice. */
#include "xml.h"
#include <string.h>

#define XMLNS_URI "http://www.w3.org/2000/xmlns/"

/* Length of the valid, XML-allowed UTF-8 character at s (n bytes available),
 * or 0 if the bytes there are invalid or the character is forbidden. */
static size_t utf8_char_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return (c >= 0x20 || c == 0x9 || c == 0xA || c == 0xD) ? 1 : 0;
    if (c < 0xC2)
        return 0;                              /* continuation or overlong */
    if (c < 0xE0) {
        if (n < 2 || (s[1] & 0xC0) != 0x80)
            return 0;
        return 2;
    }
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        unsigned cp = ((c & 0x0F) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
        if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE || cp == 0xFFFF)
            return 0;
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 ||
            (s[3] & 0xC0) != 0x80)
            return 0;
        unsigned cp = ((c & 0x07) << 18) | ((s[1] & 0x3Fu) << 12) |
                      ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
        if (cp < 0x10000 || cp > 0x10FFFF)
            return 0;
        return 4;
    }
    return 0;
}

/* Per byte: bit 0 set when text needs more than a copy of it, bit 1 when an
 * attribute value does (markup, quotes, whitespace a parser would
 * normalise, control characters, and every byte of a multibyte character,
 * which is checked as UTF-8). Everything else is copied in runs. */
static const unsigned char esc_class[256] = {
    3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    0, 0, 2, 0, 0, 0, 3, 2, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 3, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
};

void xml_escape(strbuf_t *out, const char *s, size_t len, int attr)
{
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char mask = attr ? 2 : 1;
    size_t i = 0, run = 0;   /* bytes [run, i) are copied verbatim in one go */
    while (i < len) {
        unsigned char c = p[i];
        if (!(esc_class[c] & mask)) {
            i++;
            continue;
        }
        const char *rep = NULL;
        size_t step = 1;
        switch (c) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '\r': rep = "&#13;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&apos;"; break;
        case '\t': rep = "&#9;"; break;
        case '\n': rep = "&#10;"; break;
        default:
            step = utf8_char_len(p + i, len - i);
            if (step == 0) {
                rep = "\xEF\xBF\xBD";    /* U+FFFD for one bad byte */
                step = 1;
            }
            break;
        }
        if (rep) {
            strbuf_append(out, s + run, i - run);
            strbuf_puts(out, rep);
            i += step;
            run = i;
        } else {
            i += step;
        }
    }
    strbuf_append(out, s + run, len - run);
}

/* Attributes that would collide with namespace declarations. */
static int attr_skipped(const xml_attr_t *a)
{
    if (a->ns && *a->ns)
        return strcmp(a->ns, XMLNS_URI) == 0;
    return strncmp(a->name, "xmlns", 5) == 0 && (a->name[5] == '\0' || a->name[5] == ':');
}

static int attr_generic_ns(const xml_attr_t *a)
{
    return a->ns && *a->ns && strcmp(a->ns, XML_NS_XML) != 0 && strcmp(a->ns, XMLNS_URI) != 0;
}

/* Prefix number of attribute i: the index of the first attribute in the same
 * namespace, so one namespace gets one prefix per element. Quadratic, but
 * elements carry a handful of attributes. */
static unsigned attr_prefix_no(const xml_node_t *el, unsigned i)
{
    for (unsigned j = 0; j < i; j++)
        if (attr_generic_ns(&el->attrs[j]) && strcmp(el->attrs[j].ns, el->attrs[i].ns) == 0)
            return j;
    return i;
}

static void attr_write(strbuf_t *out, const char *prefix, unsigned no, const char *name,
                       const char *value)
{
    strbuf_putc(out, ' ');
    if (prefix) {
        strbuf_puts(out, prefix);
        if (no != (unsigned)-1)
            strbuf_printf(out, "%u", no);
        strbuf_putc(out, ':');
    }
    strbuf_puts(out, name);
    strbuf_puts(out, "='");
    xml_escape(out, value, strlen(value), 1);
    strbuf_putc(out, '\'');
}

/* Recursion depth is the tree's depth, which parsing bounds by max_depth.
 * omit: an attribute (no namespace) of el itself left out, or NULL. */
static void serialize_elem(const xml_node_t *el, const char *scope_ns, const char *omit, strbuf_t *out)
{
    if (!el->name) {
        xml_escape(out, el->text, el->text_len, 0);
        return;
    }
    const char *ns = el->ns ? el->ns : "";
    strbuf_putc(out, '<');
    strbuf_puts(out, el->name);
    if (strcmp(ns, scope_ns) != 0)
        attr_write(out, NULL, 0, "xmlns", ns);
    for (unsigned i = 0; i < el->nattrs; i++) {
        const xml_attr_t *a = &el->attrs[i];
        if (!attr_generic_ns(a))
            continue;
        unsigned no = attr_prefix_no(el, i);
        /* Declare each prefix once, at its namespace's first attribute. */
        if (no == i) {
            strbuf_printf(out, " xmlns:w%u='", no);
            xml_escape(out, a->ns, strlen(a->ns), 1);
            strbuf_putc(out, '\'');
        }
    }
    for (unsigned i = 0; i < el->nattrs; i++) {
        const xml_attr_t *a = &el->attrs[i];
        if (attr_skipped(a) || (omit && !(a->ns && *a->ns) && !strcmp(a->name, omit)))
            continue;
        if (attr_generic_ns(a))
            attr_write(out, "w", attr_prefix_no(el, i), a->name, a->value);
        else if (a->ns && *a->ns)
            attr_write(out, "xml", (unsigned)-1, a->name, a->value);
        else
            attr_write(out, NULL, 0, a->name, a->value);
    }
    if (!el->first_child) {
        strbuf_puts(out, "/>");
        return;
    }
    strbuf_putc(out, '>');
    for (const xml_node_t *c = el->first_child; c; c = c->next)
        serialize_elem(c, ns, NULL, out);
    strbuf_puts(out, "</");
    strbuf_puts(out, el->name);
    strbuf_putc(out, '>');
}

void xml_serialize(const xml_node_t *el, const char *default_ns, strbuf_t *out)
{
    if (!el)
        return;
    serialize_elem(el, default_ns ? default_ns : "", NULL, out);
}

void xml_serialize_omit(const xml_node_t *el, const char *default_ns, const char *omit, strbuf_t *out)
{
    if (!el)
        return;
    serialize_elem(el, default_ns ? default_ns : "", omit, out);
}
