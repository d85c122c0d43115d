/* test_comp_fanout: the fan-out element (docs/component-protocol.md 9.7)
 * as both ends see it: the component's writer and the router's reader agree
 * on recipients, h and skip; each delivery is the stanza with its own 'to'
 * (escaped, first attribute, a 'to' on the stanza dropped); malformed
 * elements are refused with a reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "comp_fanout.h"
#include "comp_proto.h"

/* Parses an element written with the w: prefix, declared on it. */
static xml_node_t *parse(const char *head, const char *body)
{
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_printf(&sb, "<w:fanout xmlns:w='" COMP_NS "'%s", head);
    strbuf_puts(&sb, body);
    xml_node_t *el = comp_proto_parse(sb.data, sb.len);
    strbuf_free(&sb);
    return el;
}

static void test_writer_and_reader_agree(void **state)
{
    (void)state;
    const char *to[] = {"a@b.test/r1", "c@d.test", "o'r@b.test/x&y"};
    const char *st = "<message from='room@muc.test/n' type='groupchat' id='m1'><body>hi</body></message>";
    strbuf_t body;
    strbuf_init(&body);
    comp_fanout_write_body(&body, st, strlen(st), to, 3);
    xml_node_t *el = parse(" h='7' skip='1'", body.data);
    assert_non_null(el);
    comp_fanout_t f;
    const char *why = NULL;
    assert_int_equal(comp_fanout_parse(el, &f, &why), 0);
    assert_int_equal(f.has_h, 1);
    assert_int_equal(f.h, 7);
    assert_int_equal(f.skip, 1);
    assert_int_equal(f.nto, 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(f.to[i], to[i]);
    assert_string_equal(f.name, "message");
    assert_string_equal(f.type, "groupchat");
    assert_string_equal(f.from, "room@muc.test/n");
    strbuf_t d;
    strbuf_init(&d);
    comp_fanout_delivery(&f, to[2], &d);
    assert_string_equal(d.data, "<message to='o&apos;r@b.test/x&amp;y' from='room@muc.test/n' type='groupchat' "
                                "id='m1'><body>hi</body></message>");
    assert_int_equal(d.len, comp_fanout_delivery_len(&f, to[2]));
    strbuf_free(&d);
    comp_fanout_clear(&f);
    xml_free(el);
    strbuf_free(&body);
}

static void test_to_on_the_stanza_is_replaced(void **state)
{
    (void)state;
    xml_node_t *el = parse("", "><w:r to='x@y.test'/><presence to='old@y.test' from='r@m.test/n'/></w:fanout>");
    comp_fanout_t f;
    const char *why = NULL;
    assert_int_equal(comp_fanout_parse(el, &f, &why), 0);
    assert_int_equal(f.has_h, 0);
    strbuf_t d;
    strbuf_init(&d);
    comp_fanout_delivery(&f, f.to[0], &d);
    assert_string_equal(d.data, "<presence to='x@y.test' from='r@m.test/n'/>");
    strbuf_free(&d);
    comp_fanout_clear(&f);
    xml_free(el);
}

static void test_malformed_refused(void **state)
{
    (void)state;
    const char *bad[][2] = {
        {"", "><w:r to='u@b.test'/></w:fanout>"},                                  /* no stanza */
        {"", "><w:r/><message/></w:fanout>"},                                      /* r without to */
        {"", "><w:x/><message/></w:fanout>"},                                      /* unknown w: child */
        {"", "><message/><iq/></w:fanout>"},                                       /* two stanzas */
        {" h='x'", "><message/></w:fanout>"},                                      /* h not decimal */
        {" skip='2'", "><w:r to='u@b.test'/><message/></w:fanout>"},               /* skip too large */
        {" skip='-1'", "><message/></w:fanout>"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        xml_node_t *el = parse(bad[i][0], bad[i][1]);
        assert_non_null(el);
        comp_fanout_t f;
        const char *why = NULL;
        assert_int_equal(comp_fanout_parse(el, &f, &why), -1);
        assert_non_null(why);
        comp_fanout_clear(&f);
        xml_free(el);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_and_reader_agree),
        cmocka_unit_test(test_to_on_the_stanza_is_replaced),
        cmocka_unit_test(test_malformed_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
