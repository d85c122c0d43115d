/* xml_scan_chars: byte classes, UTF-8 and reference helpers and the XML
 * declaration check used by the scanner (xml_scan.c). Internal to common/. */
#ifndef WEFT_XML_SCAN_CHARS_H
#define WEFT_XML_SCAN_CHARS_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Byte classes. */
enum {
    K_NMSTRT = 0x01,  /* A-Z a-z _ */
    K_NAME = 0x02,    /* A-Z a-z _ 0-9 . - */
    K_WS = 0x04,      /* space, tab, LF, CR */
    K_TEXT = 0x08,    /* needs no attention in character data */
    K_ATTR = 0x10,    /* needs no attention in an attribute value */
    K_CDATA = 0x20,   /* needs no attention in a CDATA section */
    K_CMT = 0x40,     /* needs no attention in a comment */
    K_PI = 0x80,      /* needs no attention in a processing instruction */
};
/* The class bits of every byte; filled by xml_scan_classes_init. */
extern uint8_t xml_scan_cc[256];

void xml_scan_classes_init(void);
/* 1 if the complete sequence is not a UTF-8 encoded XML character
 * (overlong, surrogate, U+FFFE/U+FFFF, beyond U+10FFFF). */
int xml_scan_utf8_bad(const unsigned char *s, int len);
/* Writes ch as UTF-8 to o; returns its length. */
int xml_scan_utf8_put(uint32_t ch, char *o);
/* 1 if a stream starting with these bytes would make expat switch to
 * UTF-16 (a NUL in the first two bytes, or a UTF-16 byte order mark). */
int xml_scan_utf16(const char *p, size_t n);
/* 1 if v is an XML VersionNum ('1.' followed by digits). Expat takes any
 * name characters there; xml_stream and the scanner both refuse the rest. */
int xml_scan_version_ok(const char *v, size_t len);
/* Checks the XML declaration's pseudo-attributes (between "<?xml" and "?>"),
 * as expat reads them (and the version as XML 1.0 says): 1 if well-formed, with *enc and *enclen the encoding
 * it names (NULL if none), 0 if not. */
int xml_scan_xmldecl_ok(const char *p, const char *end, const char **enc, size_t *enclen);

/* The first byte at or after p that is a control character, not ASCII, or
 * one of a, b and c, looked for 16 bytes at a time; a shorter tail is left
 * to the caller's table loop (which this only speeds up). */
static inline size_t skip_plain(const unsigned char *s, size_t p, size_t n, char a, char b, char c)
{
#if defined(__SSE2__)
    const __m128i sp = _mm_set1_epi8(0x20), va = _mm_set1_epi8(a), vb = _mm_set1_epi8(b),
                  vc = _mm_set1_epi8(c);
    while (n - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + p));
        /* Signed: below 0x20 or 0x80 and up. */
        __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmplt_epi8(v, sp), _mm_cmpeq_epi8(v, va)),
                                 _mm_or_si128(_mm_cmpeq_epi8(v, vb), _mm_cmpeq_epi8(v, vc)));
        unsigned mask = (unsigned)_mm_movemask_epi8(m);
        if (mask)
            return p + (size_t)__builtin_ctz(mask);
        p += 16;
    }
#else
    (void)s, (void)n, (void)a, (void)b, (void)c;
#endif
    return p;
}

/* Bytes of the UTF-8 sequence a lead byte announces (as expat reads them:
 * C0 and C1 announce two and are then invalid); 0 if it cannot lead. */
static inline int utf8_len(unsigned c)
{
    if (c < 0xC0)
        return 0;
    if (c < 0xE0)
        return 2;
    if (c < 0xF0)
        return 3;
    return c < 0xF5 ? 4 : 0;
}

static inline size_t utf8_size(uint32_t ch)
{
    return ch < 0x80 ? 1 : ch < 0x800 ? 2 : ch < 0x10000 ? 3 : 4;
}

/* A character reference must denote an XML 1.0 character. */
static inline int charref_ok(uint32_t v)
{
    if (v < 0x20)
        return v == 0x9 || v == 0xA || v == 0xD;
    if (v >= 0xD800 && v <= 0xDFFF)
        return 0;
    return v != 0xFFFE && v != 0xFFFF && v < 0x110000;
}

static inline int hexval(unsigned c)
{
    if (c >= '0' && c <= '9')
        return (int)(c - '0');
    if (c >= 'a' && c <= 'f')
        return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F')
        return (int)(c - 'A' + 10);
    return -1;
}

/* The five predefined entities; 0 for any other name. */
static inline char predefined(const char *s, size_t len)
{
    if (len == 2 && s[1] == 't' && (s[0] == 'l' || s[0] == 'g'))
        return s[0] == 'l' ? '<' : '>';
    if (len == 3 && !memcmp(s, "amp", 3))
        return '&';
    if (len == 4 && !memcmp(s, "quot", 4))
        return '"';
    if (len == 4 && !memcmp(s, "apos", 4))
        return '\'';
    return 0;
}

#endif
