/* base64: RFC 4648 §4 encoding (standard alphabet, with padding) and a strict
 * decoder for SASL data (RFC 6120 §6.4.2): no whitespace, no characters outside
 * the alphabet, length a multiple of four, '=' only as final padding, and the
 * unused bits of the last quantum zero, so every byte string has exactly one
 * accepted encoding. Output is appended to the caller's strbuf; on a decode
 * error the strbuf is left as it was. */
#include "base64.h"

static const char base64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void base64_encode(const unsigned char *in, size_t len, strbuf_t *out)
{
    strbuf_reserve(out, (len + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        char q[4] = { base64_alphabet[v >> 18], base64_alphabet[(v >> 12) & 63],
                      base64_alphabet[(v >> 6) & 63], base64_alphabet[v & 63] };
        strbuf_append(out, q, 4);
    }
    if (len - i == 1) {
        unsigned v = (unsigned)in[i] << 16;
        char q[4] = { base64_alphabet[v >> 18], base64_alphabet[(v >> 12) & 63], '=', '=' };
        strbuf_append(out, q, 4);
    } else if (len - i == 2) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
        char q[4] = { base64_alphabet[v >> 18], base64_alphabet[(v >> 12) & 63],
                      base64_alphabet[(v >> 6) & 63], '=' };
        strbuf_append(out, q, 4);
    }
}

/* Value of one alphabet character, or -1 (including for '='). */
static int base64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int base64_decode(const char *in, size_t len, strbuf_t *out)
{
    /* "=" is how XMPP carries an empty SASL response (RFC 6120 §6.4.2). */
    if (len == 1 && in[0] == '=')
        return 0;
    if (len % 4 != 0)
        return -1;
    size_t start = out->len;
    strbuf_reserve(out, len / 4 * 3);
    for (size_t i = 0; i < len; i += 4) {
        const unsigned char *q = (const unsigned char *)in + i;
        int last = (i + 4 == len);
        int a = base64_value(q[0]), b = base64_value(q[1]);
        int c = base64_value(q[2]), d = base64_value(q[3]);
        if (a < 0 || b < 0)
            goto bad;
        if (c >= 0 && d >= 0) {
            unsigned v = (unsigned)a << 18 | (unsigned)b << 12 | (unsigned)c << 6 | (unsigned)d;
            char o[3] = { (char)(v >> 16), (char)(v >> 8), (char)v };
            strbuf_append(out, o, 3);
        } else if (last && c >= 0 && q[3] == '=') {
            if (c & 3) /* non-zero unused bits: not the canonical encoding */
                goto bad;
            unsigned v = (unsigned)a << 18 | (unsigned)b << 12 | (unsigned)c << 6;
            char o[2] = { (char)(v >> 16), (char)(v >> 8) };
            strbuf_append(out, o, 2);
        } else if (last && q[2] == '=' && q[3] == '=') {
            if (b & 15)
                goto bad;
            char o = (char)((unsigned)a << 2 | (unsigned)b >> 4);
            strbuf_append(out, &o, 1);
        } else {
            goto bad;
        }
    }
    return 0;
bad:
    out->len = start;
    if (out->cap > 0)
        out->data[start] = '\0';
    return -1;
}
