/* fuzz_ws_frame: libFuzzer target for the WebSocket frame parser, run as
 * c2s's reader runs it: frame after frame over the input, each payload
 * unmasked in place. Checks that a parsed header fits the rules it claims
 * (masked, known opcode, control frames final and short, length in its
 * shortest form), that unmasking twice gives the bytes back, and that a
 * header our encoder makes parses to the same length. Any violation aborts. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    size_t pos = 0;
    while (pos < size) {
        ws_frame_t f;
        int code = 0;
        int rc = ws_frame_parse(buf + pos, size - pos, &f, &code);
        if (rc < 0) {
            if (code != WS_CLOSE_PROTOCOL)
                abort();
            break;
        }
        if (rc == 0)
            break;
        if (!(buf[pos + 1] & 0x80) || f.header_len < 6 || f.header_len > WS_FRAME_HEADER_MAX)
            abort();
        if (ws_frame_is_control(f.opcode) && (!f.fin || f.len > 125))
            abort();
        if ((f.header_len == 8 && f.len < 126) || (f.header_len == 14 && f.len < 65536) || (f.len >> 63))
            abort();
        uint8_t hdr[WS_FRAME_HEADER_MAX];
        size_t hl = ws_frame_header(hdr, f.opcode, f.len);
        if (hl + 4 != f.header_len)
            abort();
        if (size - pos - f.header_len < f.len)
            break;
        uint8_t *p = buf + pos + f.header_len;
        size_t n = (size_t)f.len;
        uint8_t *copy = malloc(n ? n : 1);
        if (!copy)
            break;
        memcpy(copy, p, n);
        ws_frame_unmask(p, n, f.mask, 0);
        ws_frame_unmask(p, n / 2, f.mask, 0);
        ws_frame_unmask(p + n / 2, n - n / 2, f.mask, n / 2);
        if (memcmp(copy, p, n))
            abort();
        free(copy);
        pos += f.header_len + n;
    }
    free(buf);
    return 0;
}
