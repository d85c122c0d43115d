/* http_request: the head of one HTTP/1.x request (RFC 9112 §2-5): request
 * line and header fields, never a body. It reads network input, so it is
 * strict and bounded: a head longer than the caller's maximum, more than
 * HTTP_HEADERS_MAX fields, bytes outside the grammar (a control character, a
 * space before a field's colon, an obsolete folded line, a bare LF) are
 * refused with the status code to answer. A pure function of its input:
 * unit tests and the fuzz target call it directly (tests/fuzz/fuzz_http_request.c).
 *
 * The parsed request owns one copy of the head; its strings point into it and
 * live until http_request_free. */
#ifndef WEFT_HTTP_REQUEST_H
#define WEFT_HTTP_REQUEST_H
#include <stddef.h>

#define HTTP_HEADERS_MAX 48

typedef struct http_header {
    const char *name;          /* as sent; compare case-insensitively */
    const char *value;         /* without leading and trailing blanks */
} http_header_t;

typedef struct http_request {
    char *buf;                 /* the head, NUL-separated: owns every string below */
    const char *method;
    const char *target;        /* request-target as sent (origin-form: path and query) */
    int minor;                 /* HTTP/1.minor */
    http_header_t headers[HTTP_HEADERS_MAX];
    size_t nheaders;
} http_request_t;

/* Looks for a whole head at the start of data[0..len). Returns its length
 * (through the empty line) with *req filled (free it with http_request_free);
 * 0 when more bytes are needed; -1 when the head is bad or, with no end in
 * sight, already longer than max: *status is the code to answer (400, 431,
 * 501 or 505) and *req is untouched. */
long http_request_parse(const char *data, size_t len, size_t max, http_request_t *req, int *status);
void http_request_free(http_request_t *req);
/* The value of the first field called name (case-insensitive), or NULL. */
const char *http_request_header(const http_request_t *req, const char *name);
/* Whether a comma-separated field value (Connection, Sec-WebSocket-Protocol)
 * lists token, compared case-insensitively. */
int http_list_has(const char *value, const char *token);

#endif
