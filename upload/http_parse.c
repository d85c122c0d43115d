/* http_parse: the strict HTTP/1.1 request-head reader of weft-upload (see
 * http_parse.h for what it accepts). It reads the head in one pass once the
 * blank line that ends it is in the buffer; before that it only checks the
 * request line, so a client that sends garbage is answered at once. Nothing
 * here allocates; every copy is bounded by the fixed arrays of http_head_t. */
#include "http_parse.h"
#include <string.h>
#include <strings.h>

/* RFC 9110 5.6.2 tchar. */
static int is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A field value's byte: VCHAR, obs-text, SP or HTAB (no CR, LF, NUL, DEL). */
static int is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static const char *find_crlfcrlf(const char *buf, size_t len)
{
    for (size_t i = 0; i + 3 < len; i++)
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n')
            return buf + i;
    return NULL;
}

static http_method_t method_of(const char *m, size_t n)
{
    if (n == 3 && !memcmp(m, "GET", 3))
        return HTTP_GET;
    if (n == 4 && !memcmp(m, "HEAD", 4))
        return HTTP_HEAD;
    if (n == 3 && !memcmp(m, "PUT", 3))
        return HTTP_PUT;
    if (n == 7 && !memcmp(m, "OPTIONS", 7))
        return HTTP_OPTIONS;
    return HTTP_OTHER;
}

/* The request line buf[0..end), end at its CR. */
static http_parse_ret_t parse_request_line(const char *buf, size_t end, http_head_t *out)
{
    size_t i = 0;
    while (i < end && is_tchar((unsigned char)buf[i]))
        i++;
    if (i == 0 || i > 16 || i >= end || buf[i] != ' ')
        return HTTP_PARSE_BAD;
    out->method = method_of(buf, i);
    size_t t0 = ++i;
    while (i < end && buf[i] > 0x20 && buf[i] < 0x7f)
        i++;
    size_t tlen = i - t0;
    if (tlen > HTTP_TARGET_MAX)
        return HTTP_PARSE_URI_TOO_LONG;
    if (tlen == 0 || i >= end || buf[i] != ' ')
        return HTTP_PARSE_BAD;
    if (buf[t0] != '/' && !(tlen == 1 && buf[t0] == '*' && out->method == HTTP_OPTIONS))
        return HTTP_PARSE_BAD;
    const char *q = memchr(buf + t0, '?', tlen);
    size_t plen = q ? (size_t)(q - (buf + t0)) : tlen;
    memcpy(out->path, buf + t0, plen);
    out->path[plen] = '\0';
    if (q) {
        size_t qlen = tlen - plen - 1;
        memcpy(out->query, q + 1, qlen);
        out->query[qlen] = '\0';
    }
    i++;
    if (end - i != 8 || memcmp(buf + i, "HTTP/", 5))
        return HTTP_PARSE_BAD;
    char major = buf[i + 5], dot = buf[i + 6], minor = buf[i + 7];
    if (major < '0' || major > '9' || dot != '.' || minor < '0' || minor > '9')
        return HTTP_PARSE_BAD;
    if (major != '1' || minor > '1')
        return HTTP_PARSE_VERSION;
    out->minor = minor - '0';
    out->close = out->minor == 0;
    return HTTP_PARSE_DONE;
}

/* 1 if the comma-separated list v[0..n) has token tok (case-insensitive). */
static int list_has(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok), i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && !strncasecmp(v + s, tok, tl))
            return 1;
    }
    return 0;
}

static int name_is(const char *name, size_t n, const char *want)
{
    return strlen(want) == n && !strncasecmp(name, want, n);
}

/* One header field; counts hosts in *hosts. */
static http_parse_ret_t parse_field(const char *name, size_t nlen, const char *v, size_t vlen,
                                    http_head_t *out, int *hosts, int *have_ctype)
{
    if (name_is(name, nlen, "Content-Length")) {
        if (vlen == 0 || vlen > 18)
            return HTTP_PARSE_BAD;
        long long n = 0;
        for (size_t i = 0; i < vlen; i++) {
            if (v[i] < '0' || v[i] > '9')
                return HTTP_PARSE_BAD;
            n = n * 10 + (v[i] - '0');
        }
        if (out->content_length >= 0 && out->content_length != n)
            return HTTP_PARSE_BAD;
        out->content_length = n;
    } else if (name_is(name, nlen, "Transfer-Encoding")) {
        out->transfer_encoding = 1;
    } else if (name_is(name, nlen, "Connection")) {
        if (list_has(v, vlen, "close"))
            out->close = 1;
        else if (list_has(v, vlen, "keep-alive") && out->minor == 0)
            out->close = 0;
    } else if (name_is(name, nlen, "Content-Type")) {
        if (*have_ctype || vlen > HTTP_CTYPE_MAX)
            return HTTP_PARSE_BAD;
        memcpy(out->content_type, v, vlen);
        out->content_type[vlen] = '\0';
        *have_ctype = 1;
    } else if (name_is(name, nlen, "Expect")) {
        out->expect_continue = list_has(v, vlen, "100-continue");
    } else if (name_is(name, nlen, "Host")) {
        (*hosts)++;
    }
    return HTTP_PARSE_DONE;
}

static http_parse_ret_t parse_fields(const char *buf, size_t i, size_t end, http_head_t *out)
{
    int nfields = 0, hosts = 0, have_ctype = 0;
    while (i < end) {
        const char *line = buf + i;
        const char *cr = memchr(line, '\r', end - i);
        size_t llen = cr ? (size_t)(cr - line) : end - i;
        if (!cr || (size_t)(cr - buf) + 1 >= end || cr[1] != '\n')
            return HTTP_PARSE_BAD;
        if (++nfields > HTTP_HEADERS_MAX)
            return HTTP_PARSE_TOO_LARGE;
        size_t n = 0;
        while (n < llen && is_tchar((unsigned char)line[n]))
            n++;
        if (n == 0 || n >= llen || line[n] != ':')
            return HTTP_PARSE_BAD;   /* folding, space before ':', empty name */
        size_t v = n + 1, e = llen;
        for (size_t k = v; k < llen; k++)
            if (!is_value_char((unsigned char)line[k]))
                return HTTP_PARSE_BAD;
        while (v < e && (line[v] == ' ' || line[v] == '\t'))
            v++;
        while (e > v && (line[e - 1] == ' ' || line[e - 1] == '\t'))
            e--;
        http_parse_ret_t r = parse_field(line, n, line + v, e - v, out, &hosts, &have_ctype);
        if (r != HTTP_PARSE_DONE)
            return r;
        i += llen + 2;
    }
    /* RFC 9112 3.2: exactly one Host in HTTP/1.1. */
    if (out->minor == 1 && hosts != 1)
        return HTTP_PARSE_BAD;
    return HTTP_PARSE_DONE;
}

http_parse_ret_t http_parse_head(const char *buf, size_t len, size_t max, http_head_t *out)
{
    memset(out, 0, sizeof *out);
    out->content_length = -1;
    size_t scan = len < max ? len : max;
    const char *end = find_crlfcrlf(buf, scan);
    /* The request line alone, as soon as it is complete. */
    const char *eol = memchr(buf, '\n', end ? (size_t)(end - buf) + 2 : scan);
    if (eol) {
        if (eol == buf || eol[-1] != '\r')
            return HTTP_PARSE_BAD;
        http_parse_ret_t r = parse_request_line(buf, (size_t)(eol - buf) - 1, out);
        if (r != HTTP_PARSE_DONE)
            return r;
    } else if (scan > HTTP_TARGET_MAX + 32) {
        return HTTP_PARSE_URI_TOO_LONG;
    }
    if (!end)
        return len >= max ? HTTP_PARSE_TOO_LARGE : HTTP_PARSE_MORE;
    /* Fields run from after the request line to end (the CRLF before the
     * blank line is the last field's). */
    size_t fields_from = (size_t)(eol - buf) + 1;
    size_t fields_end = (size_t)(end - buf) + 2;
    http_parse_ret_t r = parse_fields(buf, fields_from, fields_end, out);
    if (r != HTTP_PARSE_DONE)
        return r;
    out->head_len = (size_t)(end - buf) + 4;
    return HTTP_PARSE_DONE;
}

int http_parse_status(http_parse_ret_t r)
{
    switch (r) {
    case HTTP_PARSE_TOO_LARGE:
        return 431;
    case HTTP_PARSE_URI_TOO_LONG:
        return 414;
    case HTTP_PARSE_VERSION:
        return 505;
    default:
        return 400;
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int http_percent_decode(const char *in, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)in[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -1;
            int h = hexval(in[i + 1]), l = hexval(in[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            c = h * 16 + l;
            i += 2;
            if (c == 0)
                return -1;
        }
        if (o + 1 >= cap)
            return -1;
        out[o++] = (char)c;
    }
    if (cap == 0)
        return -1;
    out[o] = '\0';
    return 0;
}
