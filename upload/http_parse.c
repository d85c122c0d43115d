/* http_parse: weft-upload's reading of an HTTP/1.1 request head (see
 * http_parse.h for what it accepts). The grammar is common/http_request.c's,
 * the parser c2s's WebSocket listener uses (bounded, unit-tested, fuzzed);
 * this file keeps what weft-upload asks more of a head: HTTP/1.0 or 1.1
 * only, an origin-form target of at most HTTP_TARGET_MAX bytes, exactly one
 * Host in 1.1, one Content-Length of digits only (request smuggling), and
 * the fields it serves by. Before the head is whole, the request line is
 * checked as soon as its CRLF arrived, so a client sending garbage is
 * answered at once. */
#include "http_parse.h"
#include "http_request.h"
#include "strbuf.h"
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The answer to a status http_request_parse refused with. */
static http_parse_ret_t ret_of(int status)
{
    switch (status) {
    case 431:
        return HTTP_PARSE_TOO_LARGE;
    case 505:
        return HTTP_PARSE_VERSION;
    default:
        return HTTP_PARSE_BAD;
    }
}

static http_method_t method_of(const char *m)
{
    if (!strcmp(m, "GET"))
        return HTTP_GET;
    if (!strcmp(m, "HEAD"))
        return HTTP_HEAD;
    if (!strcmp(m, "PUT"))
        return HTTP_PUT;
    if (!strcmp(m, "OPTIONS"))
        return HTTP_OPTIONS;
    return HTTP_OTHER;
}

static http_parse_ret_t request_line_read(const http_request_t *req, http_head_t *out)
{
    if (req->minor > 1)
        return HTTP_PARSE_VERSION;
    size_t tlen = strlen(req->target);
    if (tlen > HTTP_TARGET_MAX)
        return HTTP_PARSE_URI_TOO_LONG;
    out->method = method_of(req->method);
    if (req->target[0] != '/' && !(!strcmp(req->target, "*") && out->method == HTTP_OPTIONS))
        return HTTP_PARSE_BAD;
    const char *q = strchr(req->target, '?');
    size_t plen = q ? (size_t)(q - req->target) : tlen;
    memcpy(out->path, req->target, plen);
    out->path[plen] = '\0';
    if (q)
        strcpy(out->query, q + 1);
    out->minor = req->minor;
    out->close = out->minor == 0;
    return HTTP_PARSE_DONE;
}

static http_parse_ret_t fields_read(const http_request_t *req, http_head_t *out)
{
    int hosts = 0, have_ctype = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        const char *name = req->headers[i].name, *v = req->headers[i].value;
        size_t vlen = strlen(v);
        if (!strcasecmp(name, "Content-Length")) {
            if (vlen == 0 || vlen > 18 || strspn(v, "0123456789") != vlen)
                return HTTP_PARSE_BAD;
            long long n = strtoll(v, NULL, 10);
            if (out->content_length >= 0 && out->content_length != n)
                return HTTP_PARSE_BAD;
            out->content_length = n;
        } else if (!strcasecmp(name, "Transfer-Encoding")) {
            out->transfer_encoding = 1;
        } else if (!strcasecmp(name, "Connection")) {
            if (http_list_has(v, "close"))
                out->close = 1;
            else if (http_list_has(v, "keep-alive") && out->minor == 0)
                out->close = 0;
        } else if (!strcasecmp(name, "Content-Type")) {
            if (have_ctype || vlen > HTTP_CTYPE_MAX)
                return HTTP_PARSE_BAD;
            memcpy(out->content_type, v, vlen + 1);
            have_ctype = 1;
        } else if (!strcasecmp(name, "Expect")) {
            out->expect_continue = http_list_has(v, "100-continue");
        } else if (!strcasecmp(name, "Host")) {
            hosts++;
        }
    }
    /* RFC 9112 3.2: exactly one Host in HTTP/1.1. */
    if (out->minor == 1 && hosts != 1)
        return HTTP_PARSE_BAD;
    return HTTP_PARSE_DONE;
}

/* An unfinished head: its request line alone, if its CRLF is within scan
 * bytes (read as a head of its own), else whether it is already too long. */
static http_parse_ret_t request_line_early(const char *buf, size_t scan, http_head_t *out)
{
    const char *eol = memchr(buf, '\n', scan);
    if (!eol)
        return scan > HTTP_TARGET_MAX + 32 ? HTTP_PARSE_URI_TOO_LONG : HTTP_PARSE_MORE;
    size_t n = (size_t)(eol - buf) + 1;
    char *line = xmalloc(n + 2);
    memcpy(line, buf, n);
    memcpy(line + n, "\r\n", 2);
    http_request_t req;
    int status;
    long r = http_request_parse(line, n + 2, n + 2, &req, &status);
    free(line);
    if (r < 0)
        return ret_of(status);
    http_parse_ret_t ret = request_line_read(&req, out);
    http_request_free(&req);
    return ret == HTTP_PARSE_DONE ? HTTP_PARSE_MORE : ret;
}

http_parse_ret_t http_parse_head(const char *buf, size_t len, size_t max, http_head_t *out)
{
    memset(out, 0, sizeof *out);
    out->content_length = -1;
    http_request_t req;
    int status;
    long end = http_request_parse(buf, len, max, &req, &status);
    if (end == 0)
        return request_line_early(buf, len < max ? len : max, out);
    if (end < 0) {
        /* A bad request line is the answer even when the head is too long. */
        http_parse_ret_t early = request_line_early(buf, len < max ? len : max, out);
        return early != HTTP_PARSE_MORE ? early : ret_of(status);
    }
    http_parse_ret_t r = request_line_read(&req, out);
    if (r == HTTP_PARSE_DONE)
        r = fields_read(&req, out);
    http_request_free(&req);
    if (r == HTTP_PARSE_DONE)
        out->head_len = (size_t)end;
    return r;
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
