/* test_base64: RFC 4648 §10 vectors both ways, and the strict decoder's
 * refusals (characters outside the alphabet, whitespace, bad or misplaced
 * padding, non-zero unused bits, lengths not a multiple of four). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "base64.h"

static const struct {
    const char *plain, *enc;
} vectors[] = {
    { "", "" },
    { "f", "Zg==" },
    { "fo", "Zm8=" },
    { "foo", "Zm9v" },
    { "foob", "Zm9vYg==" },
    { "fooba", "Zm9vYmE=" },
    { "foobar", "Zm9vYmFy" },
};

static void test_rfc4648_encode(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        strbuf_t sb;
        strbuf_init(&sb);
        base64_encode((const unsigned char *)vectors[i].plain, strlen(vectors[i].plain), &sb);
        assert_int_equal(sb.len, strlen(vectors[i].enc));
        if (sb.len)
            assert_string_equal(sb.data, vectors[i].enc);
        strbuf_free(&sb);
    }
}

static void test_rfc4648_decode(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        strbuf_t sb;
        strbuf_init(&sb);
        assert_int_equal(base64_decode(vectors[i].enc, strlen(vectors[i].enc), &sb), 0);
        assert_int_equal(sb.len, strlen(vectors[i].plain));
        if (sb.len)
            assert_memory_equal(sb.data, vectors[i].plain, sb.len);
        strbuf_free(&sb);
    }
}

static void test_appends_and_binary(void **state)
{
    (void)state;
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    strbuf_t enc, dec;
    strbuf_init(&enc);
    strbuf_init(&dec);
    for (size_t n = 0; n <= sizeof all; n++) {
        strbuf_reset(&enc);
        strbuf_reset(&dec);
        base64_encode(all, n, &enc);
        assert_int_equal(enc.len, (n + 2) / 3 * 4);
        strbuf_puts(&dec, "pre");
        assert_int_equal(base64_decode(enc.data ? enc.data : "", enc.len, &dec), 0);
        assert_int_equal(dec.len, 3 + n);
        assert_memory_equal(dec.data, "pre", 3);
        if (n)
            assert_memory_equal(dec.data + 3, all, n);
    }
    /* the URL-safe alphabet is not ours: '+' and '/' are */
    strbuf_reset(&enc);
    const unsigned char hi[] = { 0xfb, 0xff, 0xbf };
    base64_encode(hi, 3, &enc);
    assert_string_equal(enc.data, "+/+/");
    strbuf_free(&enc);
    strbuf_free(&dec);
}

static void test_sasl_empty(void **state)
{
    (void)state;
    strbuf_t sb;
    strbuf_init(&sb);
    assert_int_equal(base64_decode("=", 1, &sb), 0);
    assert_int_equal(sb.len, 0);
    assert_int_equal(base64_decode("", 0, &sb), 0);
    assert_int_equal(sb.len, 0);
    assert_int_equal(base64_decode("==", 2, &sb), -1);
    assert_int_equal(base64_decode("====", 4, &sb), -1);
    strbuf_free(&sb);
}

static void test_strict_rejects(void **state)
{
    (void)state;
    const char *bad[] = {
        "Zg",         /* missing padding */
        "Zg=",        /* short padding */
        "Zg===",
        "Zm9",        /* length not a multiple of 4 */
        "Zm9vY",
        "Zm9v\n",     /* whitespace */
        "Zm9 v",
        " Zm9v",
        "Zm9v\r\nYmFy",
        "Zm9\tv",
        "Zm9-",       /* URL-safe alphabet */
        "Zm9_",
        "Zm9*",
        "Zm9v!mFy",
        "Z===",       /* one sextet cannot hold a byte */
        "=Zm9",       /* padding first */
        "Zm=v",       /* padding in the middle of a quantum */
        "Zg==Zm9v",   /* padding before the end */
        "Zm8=Zm9v",
        "Zh==",       /* unused bits set: not canonical */
        "Zm9=",       /* "fo" is Zm8= */
        "Zm9vYmE!",
        "Zm9v\x80mFy",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        strbuf_t sb;
        strbuf_init(&sb);
        strbuf_puts(&sb, "keep");
        if (base64_decode(bad[i], strlen(bad[i]), &sb) != -1)
            fail_msg("accepted \"%s\"", bad[i]);
        /* a failed decode leaves the buffer as it was */
        assert_int_equal(sb.len, 4);
        assert_string_equal(sb.data, "keep");
        strbuf_free(&sb);
    }
    /* an embedded NUL is not in the alphabet either */
    strbuf_t sb;
    strbuf_init(&sb);
    assert_int_equal(base64_decode("Zm\0v", 4, &sb), -1);
    strbuf_free(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_encode),
        cmocka_unit_test(test_rfc4648_decode),
        cmocka_unit_test(test_appends_and_binary),
        cmocka_unit_test(test_sasl_empty),
        cmocka_unit_test(test_strict_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
