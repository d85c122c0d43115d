/* Unit tests for the sm's PEP node helpers (sm/pubsub_node.c,
 * sm/pubsub_members.c): the JID maps that hold a node's affiliations and
 * explicit subscriptions (set, replace, remove, order), affiliation names
 * (publish-only and garbage refused), and a node's storage record keeping
 * both across a write and a read, with unreadable entries of a damaged
 * record skipped. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pubsub_node.h"

static void test_jidmap(void **state)
{
    (void)state;
    pn_jidmap_t m = {0};
    assert_int_equal(pn_jidmap_get(&m, "a@x"), -1);
    assert_int_equal(pn_jidmap_del(&m, "a@x"), -1);
    for (int i = 0; i < 10; i++) {
        char jid[16];
        snprintf(jid, sizeof jid, "u%d@x", i);
        pn_jidmap_set(&m, jid, i);
    }
    assert_int_equal(m.n, 10);
    pn_jidmap_set(&m, "u3@x", 42);                     /* replaced, not added */
    assert_int_equal(m.n, 10);
    assert_int_equal(pn_jidmap_get(&m, "u3@x"), 42);
    assert_int_equal(pn_jidmap_del(&m, "u0@x"), 0);
    assert_int_equal(pn_jidmap_get(&m, "u0@x"), -1);
    assert_string_equal(m.e[0].jid, "u1@x");           /* order kept */
    assert_int_equal(pn_jidmap_get(&m, "u9@x"), 9);
    pn_jidmap_clear(&m);
    assert_int_equal(m.n, 0);
}

static void test_aff_names(void **state)
{
    (void)state;
    const char *names[] = {"none", "owner", "publisher", "member", "outcast"};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(pn_aff_parse(names[i]), i);
        assert_string_equal(pn_aff_name((pn_aff_t)i), names[i]);
    }
    assert_int_equal(pn_aff_parse("publish-only"), -1);
    assert_int_equal(pn_aff_parse("OWNER"), -1);
    assert_int_equal(pn_aff_parse(""), -1);
    assert_int_equal(pn_aff_parse(NULL), -1);
}

static void test_record_keeps_members(void **state)
{
    (void)state;
    pn_config_t c;
    pn_config_default(&c);
    c.access = PN_WHITELIST;
    pn_node_t *n = pn_node_new("urn:example:n", &c);
    pn_config_clear(&c);
    pn_jidmap_set(&n->affs, "bob@x", PN_AFF_MEMBER);
    pn_jidmap_set(&n->affs, "eve@x", PN_AFF_OUTCAST);
    pn_jidmap_set(&n->subs, "bob@x/phone", 1);
    xml_node_t *r = pn_node_record(n);
    /* a damaged record: entries without a JID or with an unknown value are skipped */
    xml_attr_set(xml_add_child(r, "urn:xmpp:weft:pep:1", "aff"), "a", "member");
    xml_node_t *bad = xml_add_child(r, "urn:xmpp:weft:pep:1", "aff");
    xml_attr_set(bad, "jid", "mallory@x");
    xml_attr_set(bad, "a", "emperor");
    xml_add_child(r, "urn:xmpp:weft:pep:1", "sub");
    pn_node_t *back = pn_node_from_record(r);
    assert_non_null(back);
    assert_int_equal(back->cfg.access, PN_WHITELIST);
    assert_int_equal(back->affs.n, 2);
    assert_int_equal(pn_jidmap_get(&back->affs, "bob@x"), PN_AFF_MEMBER);
    assert_int_equal(pn_jidmap_get(&back->affs, "eve@x"), PN_AFF_OUTCAST);
    assert_int_equal(pn_jidmap_get(&back->affs, "mallory@x"), -1);
    assert_int_equal(back->subs.n, 1);
    assert_int_equal(pn_jidmap_get(&back->subs, "bob@x/phone"), 1);
    xml_free(r);
    pn_node_free(n);
    pn_node_free(back);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jidmap),
        cmocka_unit_test(test_aff_names),
        cmocka_unit_test(test_record_keeps_members),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
