/* Unit tests for the sm's PEP node helpers (sm/pubsub_node.c,
 * sm/pubsub_members.c): the JID maps that hold a node's affiliations and
 * explicit subscriptions (set, replace, remove, order), affiliation names
 * (garbage refused), a node's storage record keeping both across a write
 * and a read, with unreadable entries of a damaged record skipped, and
 * roster_groups_allowed: every value of the list-multi field, duplicates
 * and empty values dropped, the bound, the precondition in any order, the
 * form, the record, and a record written before groups existed. */
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
    const char *names[] = {"none", "owner", "publisher", "member", "outcast", "publish-only"};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(pn_aff_parse(names[i]), i);
        assert_string_equal(pn_aff_name((pn_aff_t)i), names[i]);
    }
    assert_int_equal(pn_aff_parse("publish_only"), -1);
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

/* A submitted form with one field var holding the values given. */
static xml_node_t *groups_form(const char *var, int n, ...)
{
    xml_node_t *x = xml_elem_new(NS_DATA, "x");
    xml_node_t *f = xml_add_child(x, NS_DATA, "field");
    xml_attr_set(f, "var", var);
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const char *v = va_arg(ap, const char *);
        xml_add_text(xml_add_child(f, NS_DATA, "value"), v, strlen(v));
    }
    va_end(ap);
    return x;
}

static void test_roster_groups(void **state)
{
    (void)state;
    pn_config_t c;
    pn_config_default(&c);
    assert_int_equal(c.ngroups, 0);
    const char *bad = NULL;
    xml_node_t *x = groups_form("pubsub#roster_groups_allowed", 4, "Friends", "Family", "Friends", "");
    assert_int_equal(pn_config_apply(&c, x, 10, &bad), 0);
    xml_free(x);
    assert_int_equal(c.ngroups, 2);
    assert_true(pn_config_has_group(&c, "Friends") && pn_config_has_group(&c, "Family"));
    assert_false(pn_config_has_group(&c, "friends"));
    /* publish-options: the same groups in another order match, others do not */
    x = groups_form("pubsub#roster_groups_allowed", 2, "Family", "Friends");
    assert_true(pn_config_matches(&c, x, 10, &bad));
    xml_free(x);
    x = groups_form("pubsub#roster_groups_allowed", 1, "Friends");
    assert_false(pn_config_matches(&c, x, 10, &bad));
    assert_string_equal(bad, "pubsub#roster_groups_allowed");
    xml_free(x);
    /* the form lists them as list-multi values */
    xml_node_t *form = pn_config_form(&c);
    int values = 0;
    for (xml_node_t *f = xml_child(form, NS_DATA, "field"); f; f = xml_next(f, NS_DATA, "field")) {
        if (strcmp(xml_attr_get(f, "var"), "pubsub#roster_groups_allowed"))
            continue;
        assert_string_equal(xml_attr_get(f, "type"), "list-multi");
        for (xml_node_t *v = xml_child(f, NS_DATA, "value"); v; v = xml_next(v, NS_DATA, "value"))
            values++;
    }
    assert_int_equal(values, 2);
    xml_free(form);
    /* past the bound: refused, the configuration unchanged */
    x = groups_form("pubsub#roster_groups_allowed", 0);
    xml_node_t *f = xml_child(x, NS_DATA, "field");
    for (int i = 0; i <= PN_GROUPS_MAX; i++) {
        char g[16];
        snprintf(g, sizeof g, "g%d", i);
        xml_add_text(xml_add_child(f, NS_DATA, "value"), g, strlen(g));
    }
    assert_int_equal(pn_config_apply(&c, x, 10, &bad), -1);
    assert_int_equal(c.ngroups, 2);
    xml_free(x);
    /* the record keeps them; a record without <group/> (written before) has none */
    c.access = PN_ROSTER;
    pn_node_t *n = pn_node_new("urn:example:g", &c);
    xml_node_t *r = pn_node_record(n);
    pn_node_t *back = pn_node_from_record(r);
    assert_true(pn_config_equal(&back->cfg, &n->cfg));
    pn_node_free(back);
    for (xml_node_t *g; (g = xml_child(r, "urn:xmpp:weft:pep:1", "group"));) {
        xml_detach(g);
        xml_free(g);
    }
    back = pn_node_from_record(r);
    assert_non_null(back);
    assert_int_equal(back->cfg.access, PN_ROSTER);
    assert_int_equal(back->cfg.ngroups, 0);
    pn_node_free(back);
    xml_free(r);
    pn_node_free(n);
    /* an empty field: no group */
    x = groups_form("pubsub#roster_groups_allowed", 0);
    assert_int_equal(pn_config_apply(&c, x, 10, &bad), 0);
    assert_int_equal(c.ngroups, 0);
    xml_free(x);
    pn_config_clear(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jidmap),
        cmocka_unit_test(test_aff_names),
        cmocka_unit_test(test_record_keeps_members),
        cmocka_unit_test(test_roster_groups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
