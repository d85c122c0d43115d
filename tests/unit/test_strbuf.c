/* Unit tests for strbuf: growth, formatting, consume and steal. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "strbuf.h"

static void test_append_grows(void **state)
{
    (void)state;
    strbuf_t sb;
    strbuf_init(&sb);
    for (int i = 0; i < 1000; i++)
        strbuf_append(&sb, "abc", 3);
    assert_int_equal(sb.len, 3000);
    assert_int_equal(sb.data[sb.len], '\0');
    assert_memory_equal(sb.data + 2997, "abc", 3);
    strbuf_free(&sb);
}

static void test_printf_and_consume(void **state)
{
    (void)state;
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_printf(&sb, "%s=%d", "h", 42);
    strbuf_putc(&sb, ';');
    assert_string_equal(sb.data, "h=42;");
    strbuf_consume(&sb, 2);
    assert_string_equal(sb.data, "42;");
    strbuf_consume(&sb, 10);
    assert_int_equal(sb.len, 0);
    assert_string_equal(sb.data, "");
    strbuf_free(&sb);
}

static void test_steal(void **state)
{
    (void)state;
    strbuf_t sb;
    strbuf_init(&sb);
    char *empty = strbuf_steal(&sb);
    assert_string_equal(empty, "");
    free(empty);
    strbuf_puts(&sb, "x");
    char *s = strbuf_steal(&sb);
    assert_string_equal(s, "x");
    assert_null(sb.data);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_grows),
        cmocka_unit_test(test_printf_and_consume),
        cmocka_unit_test(test_steal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
