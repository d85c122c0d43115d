/* http_parse: the request head of HTTP/1.1 (RFC 9112), read from hostile
 * bytes, as weft-upload needs it. The grammar is common/http_request.c's
 * (strict: a request line METHOD SP TARGET SP HTTP/1.x and header lines end
 * with CRLF; no obsolete line folding, no whitespace before a header's
 * colon, no control characters, at most HTTP_HEADERS_MAX header lines);
 * this adds HTTP/1.0 or 1.1 only, an origin-form target, one Host, and
 * keeps only what weft-upload serves by: method, path (query split off),
 * Content-Length (one value, digits only), whether a Transfer-Encoding was
 * sent, Content-Type, Expect, and whether the client asked to close.
 * Everything else is skipped. No I/O: unit-tested and fuzzed alone
 * (tests/unit/test_http_parse.c, tests/fuzz/fuzz_http_parse.c); http_conn.c
 * feeds it what a connection has read so far. */
#ifndef WEFT_HTTP_PARSE_H
#define WEFT_HTTP_PARSE_H
#include "http_request.h"
#include <stddef.h>

#define HTTP_TARGET_MAX 2048      /* request-target bytes (414 past it) */
#define HTTP_CTYPE_MAX 255        /* Content-Type bytes kept (longer: 400) */

typedef enum http_method {
    HTTP_GET, HTTP_HEAD, HTTP_PUT, HTTP_OPTIONS, HTTP_OTHER,
} http_method_t;

typedef enum http_parse_ret {
    HTTP_PARSE_DONE = 0,        /* a whole head: out is filled, out->head_len consumed */
    HTTP_PARSE_MORE,            /* no CRLFCRLF yet, and nothing wrong so far */
    HTTP_PARSE_BAD,             /* 400 */
    HTTP_PARSE_TOO_LARGE,       /* the head exceeds the caller's limit: 431 */
    HTTP_PARSE_URI_TOO_LONG,    /* 414 */
    HTTP_PARSE_VERSION,         /* not HTTP/1.0 or 1.1: 505 */
} http_parse_ret_t;

typedef struct http_head {
    http_method_t method;
    int minor;                         /* HTTP/1.minor */
    char path[HTTP_TARGET_MAX + 1];    /* target up to '?', still percent-encoded */
    char query[HTTP_TARGET_MAX + 1];   /* after '?', or "" */
    long long content_length;          /* -1: none sent */
    int transfer_encoding;             /* 1: a Transfer-Encoding header was sent */
    int close;                         /* the client wants the connection closed after */
    int expect_continue;               /* Expect: 100-continue */
    char content_type[HTTP_CTYPE_MAX + 1];  /* "" if none */
    size_t head_len;                   /* bytes of the head, CRLFCRLF included */
} http_head_t;

/* Parses the head at the start of buf[0..len). max bounds the head's size:
 * with no end of head within max bytes the answer is HTTP_PARSE_TOO_LARGE.
 * A head that is already wrong is reported without waiting for its end. */
http_parse_ret_t http_parse_head(const char *buf, size_t len, size_t max, http_head_t *out);

/* The status code (400, 414, 431, 505) a failed parse is answered with. */
int http_parse_status(http_parse_ret_t r);

/* Decodes %XX escapes of a path segment into out (cap bytes, NUL-terminated).
 * -1 for a bad escape, an encoded NUL or a result that does not fit. */
int http_percent_decode(const char *in, size_t len, char *out, size_t cap);

#endif
