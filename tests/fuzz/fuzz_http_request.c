/* fuzz_http_request: libFuzzer target for http_request_parse. Checks that
 * parsing never crashes or reads past the input, that a parsed head is the
 * length it says and ends with an empty line, that every string it gives
 * lies in its own copy and holds no CR or LF, and that parsing a prefix of
 * a good head never succeeds. Any violation aborts. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_http_check_str(const http_request_t *r, const char *s, size_t head)
{
    if (!s || s < r->buf || s >= r->buf + head || strpbrk(s, "\r\n"))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    http_request_t r;
    int status = 0;
    long n = http_request_parse(in, size, 4096, &r, &status);
    if (n < 0) {
        if (status != 400 && status != 431 && status != 501 && status != 505)
            abort();
        return 0;
    }
    if (n == 0) {
        if (size >= 4096)
            abort();   /* past the maximum it must decide */
        return 0;
    }
    size_t head = (size_t)n;
    if (head > size || head > 4096 || head < 4 || memcmp(in + head - 4, "\r\n\r\n", 4))
        abort();
    fuzz_http_check_str(&r, r.method, head);
    fuzz_http_check_str(&r, r.target, head);
    if (!*r.method || !*r.target || r.minor < 0 || r.minor > 9 || r.nheaders > HTTP_HEADERS_MAX)
        abort();
    for (size_t i = 0; i < r.nheaders; i++) {
        fuzz_http_check_str(&r, r.headers[i].name, head);
        fuzz_http_check_str(&r, r.headers[i].value, head);
        if (!*r.headers[i].name || http_request_header(&r, r.headers[i].name) == NULL)
            abort();
    }
    http_list_has(http_request_header(&r, "Connection"), "upgrade");
    http_request_free(&r);
    http_request_t again;
    if (http_request_parse(in, head - 1, 4096, &again, &status) > 0)
        abort();
    return 0;
}
