/* Unit tests for weft-muc's stanza helpers (muc/stanza.c): XEP-0082 stamps
 * read from what clients send in <history since=''/> and MAM forms (zones,
 * fractions, garbage), written back in UTC; stanza ids derived from an
 * origin marker are stable (a message given again after a restart keeps its
 * id) and differ between markers; role and affiliation names; the error
 * reply a stanza gets. muc_send is replaced here by a recorder. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "muc.h"

muc_cfg_t *muc_config;
storage_t *muc_storage;
static strbuf_t sent;

int muc_send(const xml_node_t *st)
{
    xml_serialize(st, NS_CLIENT, &sent);
    return 0;
}

void muc_send_free(xml_node_t *st)
{
    muc_send(st);
    xml_free(st);
}

static void test_stamp_parse(void **state)
{
    (void)state;
    assert_int_equal(muc_stamp_parse("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(muc_stamp_parse("2002-09-10T23:08:25Z"), 1031699305LL * 1000000);
    assert_int_equal(muc_stamp_parse("2002-09-10T23:08:25.5Z"), 1031699305LL * 1000000 + 500000);
    assert_int_equal(muc_stamp_parse("2002-09-10T23:08:25.123456789Z"), 1031699305LL * 1000000 + 123456);
    assert_int_equal(muc_stamp_parse("2002-09-11T01:08:25+02:00"), 1031699305LL * 1000000);
    assert_int_equal(muc_stamp_parse("2002-09-10T18:08:25-05:00"), 1031699305LL * 1000000);
    assert_int_equal(muc_stamp_parse("2002-09-10T23:08:25"), -1);       /* no zone */
    assert_int_equal(muc_stamp_parse("yesterday"), -1);
    assert_int_equal(muc_stamp_parse(""), -1);
    assert_int_equal(muc_stamp_parse(NULL), -1);
}

static void test_stamp_roundtrip(void **state)
{
    (void)state;
    char buf[48];
    int64_t us = 1031699305LL * 1000000 + 42;
    assert_string_equal(muc_stamp(us, buf, sizeof buf), "2002-09-10T23:08:25.000042Z");
    assert_int_equal(muc_stamp_parse(buf), us);
}

static void test_derived_ids(void **state)
{
    (void)state;
    char *a = muc_derived_id("e1.abc", 7), *b = muc_derived_id("e1.abc", 7);
    char *c = muc_derived_id("e1.abc", 8), *d = muc_derived_id("e2.abc", 7);
    assert_int_equal(strlen(a), 16);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_string_not_equal(a, d);
    char *r1 = muc_new_id(), *r2 = muc_new_id();
    assert_int_equal(strlen(r1), 16);
    assert_string_not_equal(r1, r2);
    free(a), free(b), free(c), free(d), free(r1), free(r2);
}

static void test_names(void **state)
{
    (void)state;
    muc_role_t r;
    muc_aff_t a;
    assert_int_equal(muc_role_parse("moderator", &r), 0);
    assert_int_equal(r, ROLE_MODERATOR);
    assert_int_equal(muc_role_parse("king", &r), -1);
    assert_int_equal(muc_role_parse(NULL, &r), -1);
    assert_int_equal(muc_aff_parse("outcast", &a), 0);
    assert_int_equal(a, AFF_OUTCAST);
    assert_int_equal(muc_aff_parse("Owner", &a), -1);
    assert_string_equal(muc_aff_name(AFF_MEMBER), "member");
    assert_string_equal(muc_role_name(ROLE_NONE), "none");
    assert_true(AFF_OUTCAST < AFF_NONE && AFF_NONE < AFF_MEMBER && AFF_ADMIN < AFF_OWNER);
}

static void test_errors(void **state)
{
    (void)state;
    xml_node_t *m = xml_elem_new(NS_CLIENT, "message");
    xml_attr_set(m, "from", "a@x/r");
    xml_attr_set(m, "to", "room@muc.x");
    xml_attr_set(m, "id", "m1");
    strbuf_init(&sent);
    muc_reply_error(m, "forbidden", "auth", "no");
    strbuf_putc(&sent, 0);
    assert_non_null(strstr(sent.data, "to='a@x/r'"));
    assert_non_null(strstr(sent.data, "from='room@muc.x'"));
    assert_non_null(strstr(sent.data, "type='error'"));
    assert_non_null(strstr(sent.data, "<error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"));
    strbuf_reset(&sent);
    xml_attr_set(m, "type", "error");                 /* never an error to an error */
    muc_reply_error(m, "forbidden", "auth", NULL);
    assert_int_equal(sent.len, 0);
    xml_attr_set(m, "type", NULL);
    xml_node_t *p = xml_elem_new(NS_CLIENT, "presence");
    xml_attr_set(p, "from", "a@x/r");
    xml_attr_set(p, "to", "room@muc.x/nick");
    muc_presence_error(p, "conflict", "cancel");
    strbuf_putc(&sent, 0);
    assert_non_null(strstr(sent.data, "<x xmlns='http://jabber.org/protocol/muc'/>"));
    assert_non_null(strstr(sent.data, "from='room@muc.x/nick'"));
    assert_non_null(strstr(sent.data, "<conflict "));
    strbuf_free(&sent);
    xml_free(m);
    xml_free(p);
}

static void test_serialize_parse(void **state)
{
    (void)state;
    xml_node_t *m = xml_elem_new(NS_CLIENT, "message");
    xml_attr_set(m, "from", "r@m/n");
    muc_child_text(m, NS_CLIENT, "body", "a < b & c");
    size_t len;
    char *s = muc_serialize(m, &len);
    xml_node_t *back = muc_parse(s, len);
    assert_non_null(back);
    assert_true(xml_equal(m, back));
    assert_null(muc_parse("<message", 8));
    free(s);
    xml_free(m);
    xml_free(back);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stamp_parse),
        cmocka_unit_test(test_stamp_roundtrip),
        cmocka_unit_test(test_derived_ids),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_serialize_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
