/* test_comp_fanout: the fan-out element (docs/component-protocol.md 9.7)
 * as both ends see it: the component's writer and the router's reader agree
 * on recipients, h and skip; each delivery is the stanza with its own 'to'
 * (escaped, first attribute, a 'to' on the stanza dropped); malformed
 * elements are refused with a reason. And the router's grouped deliveries
 * <w:fan/> (9.8): the router's writer and comp_client's reader agree on
 * epoch, recipients and their seqs (an explicit n only at a gap), and
 * malformed ones are refused. */
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

static xml_node_t *parse_raw(const char *s)
{
    return comp_proto_parse(s, strlen(s));
}

static void test_fanin_writer_and_reader_agree(void **state)
{
    (void)state;
    const char *to[] = {"a@b.test/r1", "c@b.test", "o'r@b.test/x&y", "z@b.test/z"};
    const uint64_t n[] = {7, 8, 12, 13};
    const char *st = "<message from='room@muc.test/n' type='groupchat' id='m1'><body>hi</body></message>";
    strbuf_t sb;
    strbuf_init(&sb);
    comp_fanin_write(&sb, "0a1b2c3d4e5f6071", NULL, to, n, 4, st, strlen(st));
    /* Only the third recipient names its seq (a gap before it). */
    assert_non_null(strstr(sb.data, "<w:r to='c@b.test'/>"));
    assert_non_null(strstr(sb.data, "x&amp;y' n='12'/>"));
    assert_non_null(strstr(sb.data, "<w:r to='z@b.test/z'/>"));
    size_t bound = strlen(st) + 96 + 16;
    for (int i = 0; i < 4; i++)
        bound += comp_fanin_recipient_len(to[i], n[i]);
    assert_true(sb.len <= bound);
    xml_node_t *el = parse_raw(sb.data);
    assert_non_null(el);
    comp_fanin_t f;
    const char *why = NULL;
    assert_int_equal(comp_fanin_parse(el, &f, &why), 0);
    assert_string_equal(f.epoch, "0a1b2c3d4e5f6071");
    assert_null(f.via);
    assert_int_equal(f.nto, 4);
    for (int i = 0; i < 4; i++) {
        assert_string_equal(f.to[i], to[i]);
        assert_int_equal(f.n[i], n[i]);
    }
    assert_string_equal(f.stanza->name, "message");
    assert_null(xml_attr_get(f.stanza, "to"));
    comp_fanin_clear(&f);
    xml_free(el);
    strbuf_reset(&sb);
    /* No epoch (the previous marker's), a p. */
    comp_fanin_write(&sb, NULL, "sm1", to, n, 1, st, strlen(st));
    el = parse_raw(sb.data);
    assert_int_equal(comp_fanin_parse(el, &f, &why), 0);
    assert_null(f.epoch);
    assert_string_equal(f.via, "sm1");
    assert_int_equal(f.nto, 1);
    assert_int_equal(f.n[0], 7);
    comp_fanin_clear(&f);
    xml_free(el);
    strbuf_free(&sb);
}

static void test_fanin_malformed_refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "<w:fan><w:r to='a@b'/><message/></w:fan>",                       /* no n */
        "<w:fan n='0'><w:r to='a@b'/><message/></w:fan>",                 /* n 0 */
        "<w:fan n='x'><w:r to='a@b'/><message/></w:fan>",                 /* not decimal */
        "<w:fan n='1'><message/></w:fan>",                                /* no recipient */
        "<w:fan n='1'><w:r to='a@b'/></w:fan>",                           /* no stanza */
        "<w:fan n='1'><w:r to='a@b'/><message/><iq/></w:fan>",            /* two */
        "<w:fan n='1'><w:r/><message/></w:fan>",                          /* r without to */
        "<w:fan n='1'><w:o n='1'/><w:r to='a@b'/><message/></w:fan>",     /* other w: child */
        "<w:fan n='5'><w:r to='a@b'/><w:r to='c@d' n='5'/><message/></w:fan>",   /* not increasing */
        "<w:fan n='5'><w:r to='a@b' n='4'/><message/></w:fan>",           /* below n */
        "<w:fan n='1' e=''><w:r to='a@b'/><message/></w:fan>",            /* empty e */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        strbuf_t sb;
        strbuf_init(&sb);
        strbuf_printf(&sb, "<w:fan xmlns:w='" COMP_NS "'%s", bad[i] + strlen("<w:fan"));
        xml_node_t *el = parse_raw(sb.data);
        assert_non_null(el);
        comp_fanin_t f;
        const char *why = NULL;
        assert_int_equal(comp_fanin_parse(el, &f, &why), -1);
        assert_non_null(why);
        comp_fanin_clear(&f);
        xml_free(el);
        strbuf_free(&sb);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_and_reader_agree),
        cmocka_unit_test(test_to_on_the_stanza_is_replaced),
        cmocka_unit_test(test_malformed_refused),
        cmocka_unit_test(test_fanin_writer_and_reader_agree),
        cmocka_unit_test(test_fanin_malformed_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
