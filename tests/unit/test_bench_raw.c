/* weft-bench-xmpp's raw stanza reader (tools/bench_xmpp_raw.c): whenever
 * it answers (found or not found), the answer is the tree's (xml_child's
 * first child of that name, then its first text or an attribute); when it
 * cannot be sure it says so (-1) and the generator asks expat. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>
#include "bench_xmpp.h"

/* bench_xmpp_raw.c's neighbours are not linked in. */
int bx_trace;
uint64_t bx_stanzas_in;

static const char *const cases[] = {
    "<message from='r@c/n' type='groupchat'><body>1 2 3 4 xx</body></message>",
    "<message from='a&gt;b' type=\"x'y\"><subject>s</subject><body>1 2</body></message>",
    "<message><x><body>no</body></x><body>yes</body></message>",
    "<message><x><body>no</body></x></message>",
    "<message><body/><body>second</body></message>",
    "<message/>",
    "<message><body></body></message>",
    "<message><body>a &amp; b</body></message>",
    "<message><body>a<![CDATA[b]]></body></message>",
    "<message><body><![CDATA[b]]></body></message>",
    "<message><body><x/>after</body></message>",
    "<message><body> <x/>after</body></message>",
    "<message><b:body xmlns:b='urn:x'>z</b:body></message>",
    "<message><bodyx>z</bodyx><body >ok</body></message>",
    "<message><body xml:lang='en' id='a>b'>t &#x31;</body></message>",
    "<message><body>line\r\nbreak</body></message>",
    "<message><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='n'><item id='r5'>"
    "<entry xmlns='n'>round 5</entry></item></items></event></message>",
    "<message><event xmlns='e'><items/><items><item id='r1'/></items></event></message>",
    "<message><event xmlns='e'><items><item id = \"r7\"/></items></event><event><items><item id='r9'/></items></event></message>",
    "<message><delay/><event xmlns='e'><items><retract id='r1'/><item id='r&#x33;'/></items></event></message>",
    "<message><event xmlns='e'><items><x><item id='deep'/></x><item id='r2' a='1'/></items></event></message>",
    "<message><event xmlns='e'><items><item/></items></event></message>",
    "<message><event xmlns='e'><items><item id='a&#9;b'/></items></event></message>",
};

static const char *tree_text(const xml_node_t *st)
{
    const xml_node_t *b = xml_child(st, NULL, "body");
    return b && b->first_child && b->first_child->text ? b->first_child->text : NULL;
}

static const char *tree_item_id(const xml_node_t *st)
{
    const xml_node_t *n = st;
    static const char *const path[] = {"event", "items", "item"};
    for (int i = 0; i < 3 && n; i++)
        n = xml_child(n, NULL, path[i]);
    return n ? xml_attr_get(n, "id") : NULL;
}

static void test_agrees_with_the_tree(void **state)
{
    (void)state;
    int answered = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *el = cases[i];
        size_t len = strlen(el);
        xml_node_t *st = bx_raw_tree(el, len);
        assert_non_null(st);

        char buf[64];
        int r = bx_raw_child_text(el, len, "body", buf, sizeof buf);
        const char *want = tree_text(st);
        if (r >= 0) {
            answered++;
            if (r == 0)
                assert_null(want);
            else
                assert_string_equal(buf, want);
        }

        static const char *const path[] = {"event", "items", "item"};
        const char *tag, *v;
        size_t tl, vl;
        r = bx_raw_find(el, len, path, 3, &tag, &tl);
        const char *want_id = tree_item_id(st);
        if (r == 1)
            r = bx_raw_attr(tag, tl, "id", &v, &vl);
        if (r >= 0) {
            answered++;
            if (r == 0) {
                assert_null(want_id);
            } else {
                assert_non_null(want_id);
                assert_int_equal(vl, strlen(want_id));
                assert_memory_equal(v, want_id, vl);
            }
        }
        xml_free(st);
    }
    assert_true(answered > 20);   /* it does answer the plain cases */
}

static void test_plain_cases_are_answered(void **state)
{
    (void)state;
    char buf[64];
    const char *el = cases[0];
    assert_int_equal(bx_raw_child_text(el, strlen(el), "body", buf, sizeof buf), 1);
    assert_string_equal(buf, "1 2 3 4 xx");
    el = cases[3];
    assert_int_equal(bx_raw_child_text(el, strlen(el), "body", buf, sizeof buf), 0);
    /* too long for the buffer: the tree decides */
    el = "<message><body>0123456789012345678901234567890123456789012345678901234567890123456789</body></message>";
    assert_int_equal(bx_raw_child_text(el, strlen(el), "body", buf, sizeof buf), -1);
    /* references, CDATA, prefixes: the tree decides */
    assert_int_equal(bx_raw_child_text(cases[7], strlen(cases[7]), "body", buf, sizeof buf), -1);
    assert_int_equal(bx_raw_child_text(cases[8], strlen(cases[8]), "body", buf, sizeof buf), -1);
    assert_int_equal(bx_raw_child_text(cases[12], strlen(cases[12]), "body", buf, sizeof buf), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agrees_with_the_tree),
        cmocka_unit_test(test_plain_cases_are_answered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
