/* Unit tests for http_parse (weft-upload's HTTP request-head reader): what
 * it keeps of honest heads, and how it answers hostile ones (folding,
 * smuggling by two Content-Lengths, oversized heads and targets, bare LF,
 * control characters), including heads that arrive a byte at a time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "http_parse.h"

static http_head_t h;

static http_parse_ret_t parse(const char *s)
{
    return http_parse_head(s, strlen(s), 16384, &h);
}

static void test_put_head(void **state)
{
    (void)state;
    const char *req = "PUT /0123/caf%C3%A9.png?token=abc HTTP/1.1\r\nHost: up\r\n"
                      "Content-Length: 1234\r\nContent-Type:  image/png \r\nExpect: 100-continue\r\n\r\nBODY";
    assert_int_equal(parse(req), HTTP_PARSE_DONE);
    assert_int_equal(h.method, HTTP_PUT);
    assert_int_equal(h.minor, 1);
    assert_string_equal(h.path, "/0123/caf%C3%A9.png");
    assert_string_equal(h.query, "token=abc");
    assert_int_equal(h.content_length, 1234);
    assert_string_equal(h.content_type, "image/png");
    assert_true(h.expect_continue);
    assert_false(h.close);
    assert_false(h.transfer_encoding);
    assert_int_equal(h.head_len, strlen(req) - 4);
}

static void test_methods_and_close(void **state)
{
    (void)state;
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n"), HTTP_PARSE_DONE);
    assert_int_equal(h.method, HTTP_GET);
    assert_true(h.close);
    assert_int_equal(h.content_length, -1);
    assert_int_equal(parse("HEAD /a HTTP/1.0\r\n\r\n"), HTTP_PARSE_DONE);   /* 1.0 needs no Host */
    assert_int_equal(h.method, HTTP_HEAD);
    assert_true(h.close);
    assert_int_equal(parse("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), HTTP_PARSE_DONE);
    assert_false(h.close);
    assert_int_equal(parse("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"), HTTP_PARSE_DONE);
    assert_int_equal(h.method, HTTP_OPTIONS);
    assert_int_equal(parse("DELETE /a HTTP/1.1\r\nHost: x\r\n\r\n"), HTTP_PARSE_DONE);
    assert_int_equal(h.method, HTTP_OTHER);
    assert_int_equal(parse("PUT /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"), HTTP_PARSE_DONE);
    assert_true(h.transfer_encoding);
}

static void test_incomplete_then_complete(void **state)
{
    (void)state;
    const char *req = "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n";
    size_t n = strlen(req);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(http_parse_head(req, i, 16384, &h), HTTP_PARSE_MORE);
    assert_int_equal(http_parse_head(req, n, 16384, &h), HTTP_PARSE_DONE);
    assert_int_equal(h.content_length, 5);
}

static void test_hostile(void **state)
{
    (void)state;
    /* Request line. */
    assert_int_equal(parse("GARBAGE\r\n\r\n"), HTTP_PARSE_BAD);
    assert_int_equal(parse("GET  / HTTP/1.1\r\nHost: x\r\n\r\n"), HTTP_PARSE_BAD);
    assert_int_equal(parse("GET http://evil/ HTTP/1.1\r\nHost: x\r\n\r\n"), HTTP_PARSE_BAD);
    assert_int_equal(parse("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), HTTP_PARSE_VERSION);
    assert_int_equal(parse("GET / HTTP/1.2\r\nHost: x\r\n\r\n"), HTTP_PARSE_VERSION);
    assert_int_equal(parse("GET / HTTP/1.1 \r\nHost: x\r\n\r\n"), HTTP_PARSE_BAD);
    assert_int_equal(parse("GET / HTTP/1.1\nHost: x\r\n\r\n"), HTTP_PARSE_BAD);   /* bare LF */
    assert_int_equal(parse("GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n"), HTTP_PARSE_BAD);
    /* Reported before the head ends. */
    assert_int_equal(parse("BAD REQUEST LINE\r\n"), HTTP_PARSE_BAD);
    /* Fields. */
    assert_int_equal(parse("GET / HTTP/1.1\r\n\r\n"), HTTP_PARSE_BAD);                       /* no Host */
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), HTTP_PARSE_BAD);  /* two */
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n"), HTTP_PARSE_BAD);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost : x\r\n\r\n"), HTTP_PARSE_BAD);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: x\r\nA: b\rc\r\n\r\n"), HTTP_PARSE_BAD);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n"), HTTP_PARSE_BAD);
    /* Content-Length: digits only, one value (request smuggling). */
    assert_int_equal(parse("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
                     HTTP_PARSE_BAD);
    assert_int_equal(parse("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
                     HTTP_PARSE_DONE);
    assert_int_equal(parse("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"), HTTP_PARSE_BAD);
    assert_int_equal(parse("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\n"), HTTP_PARSE_BAD);
    assert_int_equal(parse("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999999999999999\r\n\r\n"),
                     HTTP_PARSE_BAD);
    assert_int_equal(parse("PUT / HTTP/1.1\r\nHost: x\r\nContent-Type: a\r\nContent-Type: b\r\n\r\n"),
                     HTTP_PARSE_BAD);
}

static void test_limits(void **state)
{
    (void)state;
    /* A target longer than HTTP_TARGET_MAX. */
    static char big[HTTP_TARGET_MAX + 64];
    strcpy(big, "GET /");
    memset(big + 5, 'a', HTTP_TARGET_MAX);
    strcpy(big + 5 + HTTP_TARGET_MAX, " HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(parse(big), HTTP_PARSE_URI_TOO_LONG);
    /* ... even before its line ends. */
    memset(big + 5, 'a', HTTP_TARGET_MAX + 40);
    big[5 + HTTP_TARGET_MAX + 40] = '\0';
    assert_int_equal(http_parse_head(big, strlen(big), 16384, &h), HTTP_PARSE_URI_TOO_LONG);
    /* No end of head within the caller's limit. */
    const char *req = "GET / HTTP/1.1\r\nHost: x\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    assert_int_equal(http_parse_head(req, strlen(req), 40, &h), HTTP_PARSE_TOO_LARGE);
    assert_int_equal(http_parse_head(req, strlen(req), 16384, &h), HTTP_PARSE_MORE);
    /* Too many fields. */
    static char many[64 + (HTTP_HEADERS_MAX + 1) * 8];
    strcpy(many, "GET / HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < HTTP_HEADERS_MAX; i++)
        strcat(many, "A: b\r\n");
    strcat(many, "\r\n");
    assert_int_equal(http_parse_head(many, strlen(many), 16384, &h), HTTP_PARSE_TOO_LARGE);
    assert_int_equal(http_parse_status(HTTP_PARSE_TOO_LARGE), 431);
    assert_int_equal(http_parse_status(HTTP_PARSE_URI_TOO_LONG), 414);
    assert_int_equal(http_parse_status(HTTP_PARSE_VERSION), 505);
    assert_int_equal(http_parse_status(HTTP_PARSE_BAD), 400);
}

static void test_percent_decode(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(http_percent_decode("caf%C3%A9%20x", 13, out, sizeof out), 0);
    assert_string_equal(out, "caf\xC3\xA9 x");
    assert_int_equal(http_percent_decode("%2e%2E%2f", 9, out, sizeof out), 0);
    assert_string_equal(out, "../");   /* decoded, but never a path: store.c uses the id only */
    assert_int_equal(http_percent_decode("a%00b", 5, out, sizeof out), -1);
    assert_int_equal(http_percent_decode("a%4", 3, out, sizeof out), -1);
    assert_int_equal(http_percent_decode("a%", 2, out, sizeof out), -1);
    assert_int_equal(http_percent_decode("%zz", 3, out, sizeof out), -1);
    assert_int_equal(http_percent_decode("0123456789abcdef", 16, out, sizeof out), -1);   /* no room */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_head),
        cmocka_unit_test(test_methods_and_close),
        cmocka_unit_test(test_incomplete_then_complete),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_percent_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
