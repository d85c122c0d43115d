/* test_ws_frame: RFC 6455 framing primitives (common/ws_frame.c): the
 * RFC's own examples (5.7: "Hello" masked, 4.2.2: the accept key), header
 * lengths at every encoding boundary, partial headers, and each refused
 * frame with its close code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "ws_frame.h"

static void test_rfc_masked_hello(void **state)
{
    (void)state;
    /* RFC 6455 5.7: a single-frame masked text message "Hello" */
    uint8_t f[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    ws_frame_t fr;
    int code = 0;
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(ws_frame_parse(f, i, &fr, &code), 0);
    assert_int_equal(ws_frame_parse(f, sizeof f, &fr, &code), 1);
    assert_true(fr.fin);
    assert_int_equal(fr.opcode, WS_OP_TEXT);
    assert_int_equal(fr.len, 5);
    assert_int_equal(fr.header_len, 6);
    ws_frame_unmask(f + 6, 5, fr.mask, 0);
    assert_memory_equal(f + 6, "Hello", 5);
    /* unmasking in pieces gives the same */
    uint8_t g[] = {0x7f, 0x9f, 0x4d, 0x51, 0x58};
    ws_frame_unmask(g, 2, fr.mask, 0);
    ws_frame_unmask(g + 2, 3, fr.mask, 2);
    assert_memory_equal(g, "Hello", 5);
}

static void test_accept_key(void **state)
{
    (void)state;
    char out[29];
    assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);   /* RFC 6455 4.2.2 */
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(ws_accept_key("short", out), -1);
    assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ=!", out), -1);
    assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ", out), -1);
}

/* Our headers round-trip through the parser (with the mask bit set). */
static void test_header_lengths(void **state)
{
    (void)state;
    static const uint64_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 1u << 30, (uint64_t)1 << 40};
    static const size_t hl[] = {2, 2, 2, 4, 4, 4, 10, 10, 10};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        uint8_t h[WS_FRAME_HEADER_MAX];
        size_t n = ws_frame_header(h, WS_OP_TEXT, lens[i]);
        assert_int_equal(n, hl[i]);
        assert_int_equal(h[0], 0x81);
        assert_false(h[1] & 0x80);   /* a server does not mask */
        h[1] |= 0x80;
        memset(h + n, 0, 4);
        ws_frame_t f;
        int code;
        assert_int_equal(ws_frame_parse(h, n + 3, &f, &code), 0);
        assert_int_equal(ws_frame_parse(h, n + 4, &f, &code), 1);
        assert_int_equal(f.len, lens[i]);
        assert_int_equal(f.header_len, n + 4);
    }
}

static void test_refused(void **state)
{
    (void)state;
    static const struct {
        uint8_t b[14];
        size_t n;
        int code;
    } bad[] = {
        {{0x81, 0x05}, 2, WS_CLOSE_PROTOCOL},                            /* not masked */
        {{0xc1, 0x85, 0, 0, 0, 0}, 6, WS_CLOSE_PROTOCOL},                 /* RSV1 */
        {{0x91, 0x85, 0, 0, 0, 0}, 6, WS_CLOSE_PROTOCOL},                 /* RSV3 */
        {{0x83, 0x85, 0, 0, 0, 0}, 6, WS_CLOSE_PROTOCOL},                 /* opcode 3 */
        {{0x8b, 0x80, 0, 0, 0, 0}, 6, WS_CLOSE_PROTOCOL},                 /* opcode 0xB */
        {{0x09, 0x80, 0, 0, 0, 0}, 6, WS_CLOSE_PROTOCOL},                 /* fragmented ping */
        {{0x88, 0xfe, 0x00, 0x7e}, 4, WS_CLOSE_PROTOCOL},                 /* 126-byte close */
        {{0x81, 0xfe, 0x00, 0x7d}, 4, WS_CLOSE_PROTOCOL},                 /* 16-bit length < 126 */
        {{0x81, 0xff, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 10, WS_CLOSE_PROTOCOL}, /* 64-bit length < 65536 */
        {{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0}, 10, WS_CLOSE_PROTOCOL},  /* top bit set */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ws_frame_t f;
        int code = 0;
        assert_int_equal(ws_frame_parse(bad[i].b, bad[i].n, &f, &code), -1);
        assert_int_equal(code, bad[i].code);
    }
    /* a 125-byte pong and a zero-length close pass */
    uint8_t pong[] = {0x8a, 0xfd, 1, 2, 3, 4};
    uint8_t close[] = {0x88, 0x80, 1, 2, 3, 4};
    ws_frame_t f;
    int code;
    assert_int_equal(ws_frame_parse(pong, sizeof pong, &f, &code), 1);
    assert_true(ws_frame_is_control(f.opcode));
    assert_int_equal(ws_frame_parse(close, sizeof close, &f, &code), 1);
    assert_int_equal(f.opcode, WS_OP_CLOSE);
    /* a continuation frame without FIN */
    uint8_t cont[] = {0x00, 0x81, 1, 2, 3, 4};
    assert_int_equal(ws_frame_parse(cont, sizeof cont, &f, &code), 1);
    assert_false(f.fin);
    assert_int_equal(f.opcode, WS_OP_CONT);
    assert_false(ws_frame_is_control(WS_OP_BINARY));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc_masked_hello),
        cmocka_unit_test(test_accept_key),
        cmocka_unit_test(test_header_lengths),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
