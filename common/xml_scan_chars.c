/* xml_scan_chars: see xml_scan_chars.h. */
#include "xml_scan_chars.h"

uint8_t xml_scan_cc[256];

void xml_scan_classes_init(void)
{
    if (xml_scan_cc['a'])
        return;
    for (int c = 0x20; c < 0x80; c++)
        xml_scan_cc[c] = K_TEXT | K_ATTR | K_CDATA | K_CMT | K_PI;
    for (int c = 'a'; c <= 'z'; c++)
        xml_scan_cc[c] |= K_NMSTRT | K_NAME;
    for (int c = 'A'; c <= 'Z'; c++)
        xml_scan_cc[c] |= K_NMSTRT | K_NAME;
    for (int c = '0'; c <= '9'; c++)
        xml_scan_cc[c] |= K_NAME;
    xml_scan_cc['_'] |= K_NMSTRT | K_NAME;
    xml_scan_cc['.'] |= K_NAME;
    xml_scan_cc['-'] |= K_NAME;
    xml_scan_cc['<'] &= (uint8_t)~(K_TEXT | K_ATTR);
    xml_scan_cc['&'] &= (uint8_t)~(K_TEXT | K_ATTR);
    xml_scan_cc[']'] &= (uint8_t)~(K_TEXT | K_CDATA);
    xml_scan_cc['\''] &= (uint8_t)~K_ATTR;
    xml_scan_cc['"'] &= (uint8_t)~K_ATTR;
    xml_scan_cc['-'] &= (uint8_t)~K_CMT;
    xml_scan_cc['?'] &= (uint8_t)~K_PI;
    xml_scan_cc[' '] |= K_WS;
    xml_scan_cc['\t'] = K_WS | K_TEXT | K_CDATA | K_CMT | K_PI;
    xml_scan_cc['\n'] = K_WS | K_CDATA | K_CMT | K_PI;
    xml_scan_cc['\r'] = K_WS | K_CMT | K_PI;
}

int xml_scan_utf8_bad(const unsigned char *s, int len)
{
    unsigned c = s[0];
    if ((s[1] & 0xC0) != 0x80)
        return 1;
    if (len == 2)
        return c < 0xC2;
    if ((s[2] & 0xC0) != 0x80)
        return 1;
    if (len == 3) {
        if (c == 0xE0 && s[1] < 0xA0)
            return 1;
        if (c == 0xED && s[1] > 0x9F)
            return 1;
        return c == 0xEF && s[1] == 0xBF && s[2] >= 0xBE;
    }
    if ((s[3] & 0xC0) != 0x80)
        return 1;
    if (c == 0xF0 && s[1] < 0x90)
        return 1;
    return c == 0xF4 && s[1] > 0x8F;
}

int xml_scan_utf8_put(uint32_t ch, char *o)
{
    if (ch < 0x80) {
        o[0] = (char)ch;
        return 1;
    }
    if (ch < 0x800) {
        o[0] = (char)(0xC0 | (ch >> 6));
        o[1] = (char)(0x80 | (ch & 0x3F));
        return 2;
    }
    if (ch < 0x10000) {
        o[0] = (char)(0xE0 | (ch >> 12));
        o[1] = (char)(0x80 | ((ch >> 6) & 0x3F));
        o[2] = (char)(0x80 | (ch & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (ch >> 18));
    o[1] = (char)(0x80 | ((ch >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((ch >> 6) & 0x3F));
    o[3] = (char)(0x80 | (ch & 0x3F));
    return 4;
}

int xml_scan_utf16(const char *p, size_t n)
{
    const unsigned char *s = (const unsigned char *)p;
    return (n >= 1 && (s[0] == 0 || s[0] == 0xFE || s[0] == 0xFF)) || (n >= 2 && s[1] == 0);
}

static int xd_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* One pseudo-attribute of the XML declaration, read as expat reads it.
 * Returns 0 if malformed; *name is NULL when there is none. */
static int xd_pseudo(const char **pp, const char *end, const char **name, size_t *nlen,
                     const char **val, size_t *vlen)
{
    const char *p = *pp;
    *name = NULL;
    if (p == end)
        return 1;
    if (!xd_space(*p))
        return 0;
    while (p < end && xd_space(*p))
        p++;
    if (p == end)
        return 1;
    const char *nm = p;
    for (;;) {
        if (p == end || (unsigned char)*p >= 0x80)
            return 0;
        if (*p == '=')
            break;
        if (xd_space(*p)) {
            *nlen = (size_t)(p - nm);
            while (p < end && xd_space(*p))
                p++;
            if (p == end || *p != '=')
                return 0;
            goto eq;
        }
        p++;
    }
    *nlen = (size_t)(p - nm);
eq:
    if (*nlen == 0)
        return 0;
    p++;
    while (p < end && xd_space(*p))
        p++;
    if (p == end || (*p != '\'' && *p != '"'))
        return 0;
    char open = *p++;
    const char *v = p;
    for (;; p++) {
        if (p == end)
            return 0;
        if (*p == open)
            break;
        if (!(xml_scan_cc[(unsigned char)*p] & K_NAME))
            return 0;
    }
    *name = nm;
    *val = v;
    *vlen = (size_t)(p - v);
    *pp = p + 1;
    return 1;
}

static int xd_is(const char *s, size_t len, const char *kw)
{
    return len == strlen(kw) && !memcmp(s, kw, len);
}

int xml_scan_version_ok(const char *v, size_t len)
{
    if (len < 3 || v[0] != '1' || v[1] != '.')
        return 0;
    for (size_t i = 2; i < len; i++)
        if (v[i] < '0' || v[i] > '9')
            return 0;
    return 1;
}

/* The encoding is reported only for a declaration that is well-formed as a
 * whole: expat reports a malformed one as such, whatever it names. */
static int xd_done(const char *enc, size_t elen, const char **encp, size_t *enclen)
{
    *encp = enc;
    *enclen = elen;
    return 1;
}

int xml_scan_xmldecl_ok(const char *p, const char *end, const char **enc, size_t *enclen)
{
    const char *name, *val, *e = NULL;
    size_t nlen = 0, vlen = 0, elen = 0;
    if (!xd_pseudo(&p, end, &name, &nlen, &val, &vlen) || !name || !xd_is(name, nlen, "version") ||
        !xml_scan_version_ok(val, vlen))
        return 0;
    if (!xd_pseudo(&p, end, &name, &nlen, &val, &vlen))
        return 0;
    if (!name)
        return xd_done(e, elen, enc, enclen);
    if (xd_is(name, nlen, "encoding")) {
        if (!vlen || !((val[0] >= 'a' && val[0] <= 'z') || (val[0] >= 'A' && val[0] <= 'Z')))
            return 0;
        e = val;
        elen = vlen;
        if (!xd_pseudo(&p, end, &name, &nlen, &val, &vlen))
            return 0;
        if (!name)
            return xd_done(e, elen, enc, enclen);
    }
    if (!xd_is(name, nlen, "standalone") || !(xd_is(val, vlen, "yes") || xd_is(val, vlen, "no")))
        return 0;
    while (p < end && xd_space(*p))
        p++;
    return p == end ? xd_done(e, elen, enc, enclen) : 0;
}
