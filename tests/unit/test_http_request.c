/* test_http_request: the HTTP request head parser (common/http_request.c):
 * a WebSocket upgrade request read whole and in every split, field lookup
 * and token lists, and each refusal with its status (bare LF, space before
 * a colon, folded line, control bytes, NUL, bad version, too many fields,
 * a head past the maximum). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "http_request.h"
#include "http_status.h"

static const char upgrade[] =
    "GET /xmpp-websocket?x=1 HTTP/1.1\r\n"
    "Host: example.org:5280\r\n"
    "Upgrade: websocket\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Protocol: chat,  xmpp \r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "X-Empty:\r\n"
    "\r\n"
    "\x81\x85";   /* the first frame's bytes may follow the head */

static void test_upgrade_request(void **state)
{
    (void)state;
    http_request_t req;
    int status = 0;
    long n = http_request_parse(upgrade, sizeof upgrade - 1, 8192, &req, &status);
    assert_int_equal(n, (long)(sizeof upgrade - 3));
    assert_string_equal(req.method, "GET");
    assert_string_equal(req.target, "/xmpp-websocket?x=1");
    assert_int_equal(req.minor, 1);
    assert_int_equal(req.nheaders, 7);
    assert_string_equal(http_request_header(&req, "host"), "example.org:5280");
    assert_string_equal(http_request_header(&req, "SEC-WEBSOCKET-PROTOCOL"), "chat,  xmpp");
    assert_string_equal(http_request_header(&req, "x-empty"), "");
    assert_null(http_request_header(&req, "Origin"));
    assert_true(http_list_has(http_request_header(&req, "Connection"), "upgrade"));
    assert_true(http_list_has(http_request_header(&req, "Sec-WebSocket-Protocol"), "xmpp"));
    assert_false(http_list_has(http_request_header(&req, "Sec-WebSocket-Protocol"), "xmp"));
    assert_false(http_list_has("", "xmpp"));
    http_request_free(&req);
}

/* Every prefix is "more, please"; the whole head parses the same. */
static void test_every_split(void **state)
{
    (void)state;
    size_t head = sizeof upgrade - 3;
    for (size_t i = 0; i < head; i++) {
        http_request_t req;
        int status = 0;
        assert_int_equal(http_request_parse(upgrade, i, 8192, &req, &status), 0);
    }
}

static long parse_status(const char *s, size_t max, int *status)
{
    http_request_t req;
    *status = 0;
    long n = http_request_parse(s, strlen(s), max, &req, status);
    if (n > 0)
        http_request_free(&req);
    return n;
}

static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *head;
        int status;
    } bad[] = {
        {"GET / HTTP/1.1\nHost: x\n\n", 400},                 /* bare LF */
        {"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},          /* space before the colon */
        {"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400}, /* obs-fold */
        {"GET / HTTP/1.1\r\nHost: a\x01z\r\n\r\n", 400},       /* control byte */
        {"GET / HTTP/1.1\r\nHost x\r\n\r\n", 400},            /* no colon */
        {"GET / HTTP/1.1\r\n: x\r\n\r\n", 400},               /* empty name */
        {"GET /a b HTTP/1.1\r\n\r\n", 400},                   /* space in the target */
        {"GET  / HTTP/1.1\r\n\r\n", 400},
        {"G(T / HTTP/1.1\r\n\r\n", 400},                      /* not a token */
        {"GET / HTTP/1.1x\r\n\r\n", 400},
        {"GET / HTTPS/1.1\r\n\r\n", 400},
        {"GET / HTTP/2.0\r\n\r\n", 505},
        {"GET /\r\n\r\n", 400},
        {"\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", 400},           /* bare CR in a value */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int status;
        assert_int_equal(parse_status(bad[i].head, 8192, &status), -1);
        assert_int_equal(status, bad[i].status);
    }
    /* NUL inside the head */
    static const char nul[] = "GET / HTTP/1.1\r\nA: b\0c\r\n\r\n";
    http_request_t req;
    int status = 0;
    assert_int_equal(http_request_parse(nul, sizeof nul - 1, 8192, &req, &status), -1);
    assert_int_equal(status, 400);
}

static void test_limits(void **state)
{
    (void)state;
    int status;
    /* no end within max bytes */
    char big[300];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    assert_int_equal(parse_status(big, 256, &status), -1);
    assert_int_equal(status, 431);
    assert_int_equal(parse_status(big, 1024, &status), 0);
    /* an end past max is not looked at */
    assert_int_equal(parse_status("GET / HTTP/1.1\r\nHost: abcdef\r\n\r\n", 20, &status), -1);
    assert_int_equal(status, 431);
    /* HTTP_HEADERS_MAX fields pass, one more does not */
    char many[4096];
    size_t len = (size_t)snprintf(many, sizeof many, "GET / HTTP/1.0\r\n");
    for (int i = 0; i < HTTP_HEADERS_MAX; i++)
        len += (size_t)snprintf(many + len, sizeof many - len, "F%d: v\r\n", i);
    snprintf(many + len, sizeof many - len, "\r\n");
    assert_true(parse_status(many, sizeof many, &status) > 0);
    snprintf(many + len, sizeof many - len, "One: more\r\n\r\n");
    assert_int_equal(parse_status(many, sizeof many, &status), -1);
    assert_int_equal(status, 431);
}

static void test_status_text(void **state)
{
    (void)state;
    assert_string_equal(http_status_text(101), "Switching Protocols");
    assert_string_equal(http_status_text(431), "Request Header Fields Too Large");
    assert_string_equal(http_status_text(999), "Error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upgrade_request),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_status_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
