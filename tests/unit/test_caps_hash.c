/* test_caps_hash: the XEP-0115 verification string (common/caps_hash.c) on
 * the examples of sections 5.2 and 5.3, the order of the input not
 * mattering, the forms section 5.4 says to leave out, and the answers it
 * calls ill-formed (no hash at all). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "caps_hash.h"
#include "xml_stream.h"

#define Q "<query xmlns='http://jabber.org/protocol/disco#info'>"
#define QEND "</query>"
#define FEATURES                                           \
    "<feature var='http://jabber.org/protocol/caps'/>"     \
    "<feature var='http://jabber.org/protocol/disco#info'/>" \
    "<feature var='http://jabber.org/protocol/disco#items'/>" \
    "<feature var='http://jabber.org/protocol/muc'/>"

/* Section 5.2. */
static const char simple[] = Q "<identity category='client' name='Exodus 0.9.1' type='pc'/>" FEATURES QEND;

/* Section 5.3 ("Ψ 0.11" in UTF-8). */
#define SOFTWARE_FORM                                                                   \
    "<x xmlns='jabber:x:data' type='result'>"                                           \
    "<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>" \
    "<field var='ip_version'><value>ipv4</value><value>ipv6</value></field>"            \
    "<field var='os'><value>Mac</value></field>"                                        \
    "<field var='os_version'><value>10.5.1</value></field>"                             \
    "<field var='software'><value>Psi</value></field>"                                  \
    "<field var='software_version'><value>0.11</value></field>"                         \
    "</x>"
static const char complex_[] = Q
    "<identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>"
    "<identity xml:lang='el' category='client' name='\xce\xa8 0.11' type='pc'/>"
    FEATURES SOFTWARE_FORM QEND;

static xml_node_t *parse(const char *s)
{
    xml_limits_t lim;
    xml_limits_default(&lim);
    char err[128];
    xml_node_t *q = xml_parse_document(s, strlen(s), &lim, err, sizeof err, NULL);
    assert_non_null(q);
    return q;
}

/* The ver of s, or NULL; the caller frees. */
static char *ver_of(const char *s)
{
    xml_node_t *q = parse(s);
    char *v = caps_hash_ver(q);
    xml_free(q);
    return v;
}

static void assert_ver(const char *s, const char *want)
{
    char *v = ver_of(s);
    assert_non_null(v);
    assert_string_equal(v, want);
    free(v);
}

static void test_simple_example(void **state)
{
    (void)state;
    assert_ver(simple, "QgayPKawpkPSDYmwT/WM94uAlu0=");
    xml_node_t *q = parse(simple);
    strbuf_t s;
    strbuf_init(&s);
    assert_int_equal(caps_hash_input(q, &s), 0);
    assert_string_equal(s.data, "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<"
                                "http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<"
                                "http://jabber.org/protocol/muc<");
    strbuf_free(&s);
    xml_free(q);
}

static void test_complex_example(void **state)
{
    (void)state;
    assert_ver(complex_, "q07IKJEyjvHSyhy//CH0CxmKi8w=");
}

/* The order of identities, features, fields and values on the wire does
 * not change the hash. */
static void test_order_does_not_matter(void **state)
{
    (void)state;
    assert_ver(Q "<feature var='http://jabber.org/protocol/muc'/>"
                 "<x xmlns='jabber:x:data' type='result'>"
                 "<field var='software_version'><value>0.11</value></field>"
                 "<field var='ip_version'><value>ipv6</value><value>ipv4</value></field>"
                 "<field var='software'><value>Psi</value></field>"
                 "<field var='os_version'><value>10.5.1</value></field>"
                 "<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>"
                 "<field var='os'><value>Mac</value></field>"
                 "</x>"
                 "<feature var='http://jabber.org/protocol/disco#items'/>"
                 "<identity xml:lang='el' category='client' name='\xce\xa8 0.11' type='pc'/>"
                 "<feature var='http://jabber.org/protocol/caps'/>"
                 "<identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>"
                 "<feature var='http://jabber.org/protocol/disco#info'/>" QEND,
               "q07IKJEyjvHSyhy//CH0CxmKi8w=");
}

/* Forms that do not count (5.4 step 3.6): no FORM_TYPE, a FORM_TYPE that is
 * not hidden, a FORM_TYPE without a value; children in other namespaces. */
static void test_ignored_forms(void **state)
{
    (void)state;
    static const char *const extra[] = {
        "<x xmlns='jabber:x:data' type='result'><field var='os'><value>Mac</value></field></x>",
        "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'><value>urn:a</value></field></x>",
        "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='text-single'>"
        "<value>urn:a</value></field></x>",
        "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'/></x>",
        "<feature xmlns='urn:other' var='urn:x'/><identity xmlns='urn:other' category='a' type='b'/>",
        "<feature/>",
    };
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        strbuf_t s;
        strbuf_init(&s);
        strbuf_printf(&s, Q "<identity category='client' name='Exodus 0.9.1' type='pc'/>" FEATURES "%s" QEND,
                      extra[i]);
        assert_ver(s.data, "QgayPKawpkPSDYmwT/WM94uAlu0=");
        strbuf_free(&s);
    }
    /* A repeated FORM_TYPE value that is the same each time is fine. */
    char *v = ver_of(Q "<x xmlns='jabber:x:data'><field var='FORM_TYPE' type='hidden'>"
                       "<value>urn:a</value><value>urn:a</value></field></x>" QEND);
    assert_non_null(v);
    free(v);
}

/* 5.4 steps 3.3-3.5: no verification string at all. */
static void test_ill_formed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        Q "<identity category='client' type='pc' name='a'/><identity category='client' type='pc' name='a'/>" QEND,
        Q "<feature var='urn:a'/><feature var='urn:b'/><feature var='urn:a'/>" QEND,
        Q "<x xmlns='jabber:x:data'><field var='FORM_TYPE' type='hidden'><value>urn:a</value></field></x>"
          "<x xmlns='jabber:x:data'><field var='FORM_TYPE' type='hidden'><value>urn:a</value></field>"
          "<field var='f'><value>1</value></field></x>" QEND,
        Q "<x xmlns='jabber:x:data'><field var='FORM_TYPE' type='hidden'>"
          "<value>urn:a</value><value>urn:b</value></field></x>" QEND,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_null(ver_of(bad[i]));
    /* Identities differing only in xml:lang are two identities, not one twice. */
    char *v = ver_of(Q "<identity category='client' type='pc' name='a' xml:lang='en'/>"
                       "<identity category='client' type='pc' name='a' xml:lang='de'/>" QEND);
    assert_non_null(v);
    free(v);
}

/* Nothing at all still has a hash: that of the empty string. */
static void test_empty(void **state)
{
    (void)state;
    assert_ver(Q QEND, "2jmj7l5rSw0yVb/vlWAYkK/YBwk=");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_example),
        cmocka_unit_test(test_complex_example),
        cmocka_unit_test(test_order_does_not_matter),
        cmocka_unit_test(test_ignored_forms),
        cmocka_unit_test(test_ill_formed),
        cmocka_unit_test(test_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
