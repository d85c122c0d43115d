/* test_jid: RFC 7622 §3.5 examples and the preparation rules of common/jid.c
 * (stringprep profiles, IDN, IP literals, length limits, UTF-8 checks). Where
 * RFC 7622 (PRECIS) and the stringprep profiles we use differ, the stringprep
 * result is what is checked, and the test says so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jid.h"
#include <ctype.h>
#include <idn-free.h>
#include <idna.h>
#include <stringprep.h>

/* Parses s, expects success and the given prepared parts. */
static void expect_jid(const char *s, const char *node, const char *domain, const char *resource)
{
    jid_t j;
    jid_err_t e = jid_parse(s, &j);
    if (e != JID_OK)
        fail_msg("jid_parse(\"%s\") = %d (%s)", s, e, jid_strerror(e));
    if (node)
        assert_string_equal(j.node, node);
    else
        assert_null(j.node);
    assert_string_equal(j.domain, domain);
    if (resource)
        assert_string_equal(j.resource, resource);
    else
        assert_null(j.resource);
    /* bare and full are built from the parts */
    char expect[8192];
    snprintf(expect, sizeof expect, "%s%s%s", node ? node : "", node ? "@" : "", domain);
    assert_string_equal(j.bare, expect);
    if (resource) {
        size_t n = strlen(expect);
        snprintf(expect + n, sizeof expect - n, "/%s", resource);
    }
    assert_string_equal(j.full, expect);
    jid_clear(&j);
    assert_null(j.full);
}

static void expect_err(const char *s, jid_err_t want)
{
    jid_t j;
    jid_err_t e = jid_parse(s, &j);
    if (e != want)
        fail_msg("jid_parse(\"%s\") = %d, want %d", s, e, want);
    assert_null(j.node);
    assert_null(j.domain);
    assert_null(j.resource);
    assert_null(j.bare);
    assert_null(j.full);
}

static void test_rfc7622_valid(void **state)
{
    (void)state;
    expect_jid("juliet@example.com", "juliet", "example.com", NULL);
    expect_jid("juliet@example.com/foo", "juliet", "example.com", "foo");
    expect_jid("juliet@example.com/foo bar", "juliet", "example.com", "foo bar");
    expect_jid("juliet@example.com/foo@bar", "juliet", "example.com", "foo@bar");
    expect_jid("foo\\20bar@example.com", "foo\\20bar", "example.com", NULL);
    expect_jid("fussball@example.com", "fussball", "example.com", NULL);
    /* stringprep's case folding maps sharp s to "ss" (PRECIS would keep it) */
    expect_jid("fu\xc3\x9f" "ball@example.com", "fussball", "example.com", NULL);
    expect_jid("\xcf\x80@example.com", "\xcf\x80", "example.com", NULL);               /* pi */
    expect_jid("\xce\xa3@example.com", "\xcf\x83", "example.com", NULL);               /* Sigma */
    expect_jid("\xcf\x83@example.com", "\xcf\x83", "example.com", NULL);               /* sigma */
    expect_jid("\xcf\x82@example.com", "\xcf\x83", "example.com", NULL);               /* final sigma */
    expect_jid("king@example.com/\xe2\x99\x9a", "king", "example.com", "\xe2\x99\x9a"); /* U+265A */
    expect_jid("example.com", NULL, "example.com", NULL);
    expect_jid("example.com/foobar", NULL, "example.com", "foobar");
    expect_jid("a.example.com/b@example.net", NULL, "a.example.com", "b@example.net");
    expect_jid("juliet@example.com/ foo", "juliet", "example.com", " foo");
    expect_jid("juliet@example.com/a/b/c", "juliet", "example.com", "a/b/c");
}

static void test_rfc7622_invalid(void **state)
{
    (void)state;
    expect_err("\"juliet\"@example.com", JID_ERR_NODE);
    expect_err("foo bar@example.com", JID_ERR_NODE);
    expect_err("juliet@@example.com", JID_ERR_DOMAIN);
    expect_err("@example.com", JID_ERR_NODE);
    expect_err("juliet@", JID_ERR_EMPTY);
    expect_err("/foobar", JID_ERR_EMPTY);
    expect_err("example.com/", JID_ERR_RESOURCE);
    expect_err("juliet@example.com/", JID_ERR_RESOURCE);
    expect_err("", JID_ERR_EMPTY);
    expect_err("@", JID_ERR_EMPTY);
    expect_err("@/", JID_ERR_EMPTY);
    assert_int_equal(jid_parse(NULL, &(jid_t){ 0 }), JID_ERR_EMPTY);
}

static void test_case_folding(void **state)
{
    (void)state;
    jid_t a, b, c;
    assert_int_equal(jid_parse("JULIET@EXAMPLE.COM/Balcony", &a), JID_OK);
    assert_int_equal(jid_parse("juliet@example.com/Balcony", &b), JID_OK);
    assert_int_equal(jid_parse("juliet@example.com/balcony", &c), JID_OK);
    assert_string_equal(a.full, "juliet@example.com/Balcony");
    assert_true(jid_equal(&a, &b));
    assert_false(jid_equal(&a, &c)); /* resources keep their case */
    assert_true(jid_bare_equal(&a, &c));
    jid_clear(&a);
    jid_clear(&b);
    jid_clear(&c);
}

static void test_prohibited_node(void **state)
{
    (void)state;
    const char *bad[] = { "a\"b", "a&b", "a'b", "a:b", "a<b", "a>b", "a b" };
    char buf[64];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(buf, sizeof buf, "%s@example.com", bad[i]);
        expect_err(buf, JID_ERR_NODE);
        assert_null(jid_prep_node(bad[i]));
    }
    /* '/' and '@' cannot reach the node through parsing, only through prep */
    assert_null(jid_prep_node("a/b"));
    assert_null(jid_prep_node("a@b"));
    assert_null(jid_prep_node(""));
    char *p = jid_prep_node("Romeo");
    assert_string_equal(p, "romeo");
    free(p);
}

static void test_control_chars(void **state)
{
    (void)state;
    expect_err("a\x01" "b@example.com", JID_ERR_NODE);
    expect_err("ab@example.com/x\x7f", JID_ERR_RESOURCE);
    expect_err("ab@example.com/x\ty", JID_ERR_RESOURCE);
    expect_err("ab@exa\x02mple.com", JID_ERR_DOMAIN);
    /* U+0085 (C1 control) and U+200E (LRM) are prohibited too */
    expect_err("ab@example.com/x\xc2\x85", JID_ERR_RESOURCE);
    expect_err("a\xe2\x80\x8e" "b@example.com", JID_ERR_NODE);
    /* private use (U+E000) is prohibited; ideographic space is no error since
     * NFKC turns it into an ASCII space before the prohibition step */
    expect_err("ab@example.com/a\xee\x80\x80" "b", JID_ERR_RESOURCE);
    expect_jid("ab@example.com/a\xe3\x80\x80" "b", "ab", "example.com", "a b");
}

static void test_bidi(void **state)
{
    (void)state;
    /* Hebrew alef followed by a Latin letter: RandALCat mixed with LCat */
    expect_err("\xd7\x90" "a@example.com", JID_ERR_NODE);
    expect_err("juliet@example.com/\xd7\x90" "a", JID_ERR_RESOURCE);
    /* RandALCat must be first and last */
    expect_err("\xd7\x90" "1@example.com", JID_ERR_NODE);
    expect_jid("\xd7\x90\xd7\x91@example.com", "\xd7\x90\xd7\x91", "example.com", NULL);
    expect_jid("\xd7\x90" "1" "\xd7\x91@example.com", "\xd7\x90" "1" "\xd7\x91", "example.com",
               NULL);
}

static void test_idn(void **state)
{
    (void)state;
    const char *u = "r\xc3\xa4ksm\xc3\xb6rg\xc3\xa5s.josefsson.org";
    expect_jid("juliet@xn--rksmrgs-5wao1o.josefsson.org", "juliet", u, NULL);
    expect_jid("juliet@XN--RKSMRGS-5WAO1O.josefsson.org", "juliet", u, NULL);
    expect_jid("juliet@r\xc3\xa4ksm\xc3\xb6rg\xc3\xa5s.josefsson.org", "juliet", u, NULL);
    expect_jid("juliet@R\xc3\x84KSM\xc3\x96RG\xc3\x85S.JOSEFSSON.ORG", "juliet", u, NULL);

    jid_t a, b;
    assert_int_equal(jid_parse("juliet@xn--rksmrgs-5wao1o.josefsson.org/r", &a), JID_OK);
    assert_int_equal(jid_parse("juliet@r\xc3\xa4ksm\xc3\xb6rg\xc3\xa5s.josefsson.org/r", &b), JID_OK);
    assert_true(jid_equal(&a, &b));
    jid_clear(&a);
    jid_clear(&b);

    /* full-width letters and the ideographic full stop map to ASCII */
    expect_jid("a@\xef\xbd\x85\xef\xbd\x98.com", "a", "ex.com", NULL);
    expect_jid("a@example\xe3\x80\x82" "com", "a", "example.com", NULL);
    /* an ACE-prefixed label that is not valid punycode is refused */
    expect_err("a@xn--zzzzz-bad.org", JID_ERR_DOMAIN);
    expect_err("a@xn--.org", JID_ERR_DOMAIN);
    /* a label that only becomes ACE-like through preparation is refused */
    expect_err("a@xn--fu\xc3\x9f" "ball.org", JID_ERR_DOMAIN);
    expect_err("a@XN--FU\xc3\x9f" "ball.org", JID_ERR_DOMAIN);
    /* U+2024 ONE DOT LEADER becomes '.' under NFKC: no hidden label splits */
    expect_err("a@ex\xe2\x80\xa4" "com", JID_ERR_DOMAIN);
    /* prohibited in nameprep: U+3000 ideographic space */
    expect_err("a@ex\xe3\x80\x80" "com", JID_ERR_DOMAIN);
}

static void test_domain_rules(void **state)
{
    (void)state;
    expect_jid("a@Example.COM.", "a", "example.com", NULL);
    expect_jid("example.com./r", NULL, "example.com", "r");
    expect_err("a@example.com..", JID_ERR_DOMAIN);
    expect_err("a@.", JID_ERR_EMPTY);
    expect_err("a@.example.com", JID_ERR_DOMAIN);
    expect_err("a@example..com", JID_ERR_DOMAIN);
    expect_err("a@-example.com", JID_ERR_DOMAIN);
    expect_err("a@example-.com", JID_ERR_DOMAIN);
    expect_err("a@exa_mple.com", JID_ERR_DOMAIN);
    expect_err("a@exa mple.com", JID_ERR_DOMAIN);
    expect_err("a@exa\"mple.com", JID_ERR_DOMAIN);
    expect_jid("a@ex-ample.com", "a", "ex-ample.com", NULL);
    expect_jid("a@1.2.3.4/r", "a", "1.2.3.4", "r");
    expect_jid("[::1]", NULL, "[::1]", NULL);
    expect_jid("a@[2001:db8::1]/r", "a", "[2001:db8::1]", "r");
    expect_err("a@[::1", JID_ERR_DOMAIN);
    expect_err("a@[example.com]", JID_ERR_DOMAIN);
    expect_err("a@[]", JID_ERR_DOMAIN);

    /* labels: 63 bytes is the limit */
    char dom[200];
    memset(dom, 'a', 63);
    strcpy(dom + 63, ".com");
    char *p = jid_prep_domain(dom);
    assert_non_null(p);
    free(p);
    memset(dom, 'a', 64);
    strcpy(dom + 64, ".com");
    assert_null(jid_prep_domain(dom));
}

/* A string of n bytes made of c (an ASCII letter). */
static char *filled(size_t n, char c)
{
    char *s = malloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void test_length_limits(void **state)
{
    (void)state;
    char *buf = malloc(8192);
    char *n1023 = filled(1023, 'n'), *n1024 = filled(1024, 'n');

    snprintf(buf, 8192, "%s@example.com", n1023);
    expect_jid(buf, n1023, "example.com", NULL);
    snprintf(buf, 8192, "%s@example.com", n1024);
    expect_err(buf, JID_ERR_TOO_LONG);

    snprintf(buf, 8192, "a@example.com/%s", n1023);
    expect_jid(buf, "a", "example.com", n1023);
    snprintf(buf, 8192, "a@example.com/%s", n1024);
    expect_err(buf, JID_ERR_TOO_LONG);

    /* domain of 1023 bytes: 16 labels of 63 plus dots is 1023 exactly */
    char dom[1100];
    size_t len = 0;
    for (int i = 0; i < 16; i++) {
        if (i)
            dom[len++] = '.';
        memset(dom + len, 'd', 63);
        len += 63;
    }
    dom[len] = '\0';
    assert_int_equal(len, 1023);
    snprintf(buf, 8192, "a@%s", dom);
    expect_jid(buf, "a", dom, NULL);
    snprintf(buf, 8192, "a@%s.x", dom); /* 1025 */
    expect_err(buf, JID_ERR_TOO_LONG);
    snprintf(buf, 8192, "a@%s.", dom);  /* trailing dot stripped: still 1023 */
    expect_jid(buf, "a", dom, NULL);

    /* the limit applies after preparation: 1024 letters with one soft hyphen
     * (mapped to nothing) short enough, upper case folds without growing */
    char *upper = filled(1023, 'N');
    snprintf(buf, 8192, "%s@example.com", upper);
    expect_jid(buf, n1023, "example.com", NULL);
    snprintf(buf, 8192, "%s\xc2\xad@example.com", n1023);
    expect_jid(buf, n1023, "example.com", NULL);

    free(upper);
    free(n1023);
    free(n1024);
    free(buf);
}

static void test_utf8(void **state)
{
    (void)state;
    expect_err("a\xff@example.com", JID_ERR_UTF8);
    expect_err("a@exam\xc3ple.com", JID_ERR_UTF8);      /* truncated sequence */
    expect_err("a@example.com/\xc0\xaf", JID_ERR_UTF8); /* overlong '/' */
    expect_err("a@example.com/\xed\xa0\x80", JID_ERR_UTF8); /* surrogate */
    expect_err("a@example.com/\xf4\x90\x80\x80", JID_ERR_UTF8); /* > U+10FFFF */
    expect_err("a@example.com/\xe2\x82", JID_ERR_UTF8);  /* cut at end */
    assert_null(jid_prep_resource("\x80"));
    assert_null(jid_bare_of("\xfe@x"));
}

static void test_unassigned(void **state)
{
    (void)state;
    /* U+0221 was unassigned in Unicode 3.2; NO_UNASSIGNED refuses it */
    expect_err("a\xc8\xa1@example.com", JID_ERR_NODE);
    expect_err("a@example.com/\xc8\xa1", JID_ERR_RESOURCE);
    expect_err("a@b\xc8\xa1.com", JID_ERR_DOMAIN);
}

static void test_build_copy_helpers(void **state)
{
    (void)state;
    jid_t j, k;
    assert_int_equal(jid_build("Juliet", "EXAMPLE.com", "Home", &j), JID_OK);
    assert_string_equal(j.full, "juliet@example.com/Home");
    assert_string_equal(j.bare, "juliet@example.com");
    assert_int_equal(jid_copy(&j, &k), JID_OK);
    assert_true(jid_equal(&j, &k));
    assert_ptr_not_equal(j.full, k.full);
    jid_clear(&j);
    jid_clear(&k);
    assert_int_equal(jid_build(NULL, "example.com", NULL, &j), JID_OK);
    assert_string_equal(j.full, "example.com");
    jid_clear(&j);
    assert_int_equal(jid_build("a b", "example.com", NULL, &j), JID_ERR_NODE);
    assert_int_equal(jid_build("a", NULL, NULL, &j), JID_ERR_EMPTY);
    assert_int_equal(jid_build("", "example.com", NULL, &j), JID_ERR_NODE);
    assert_int_equal(jid_build("a", "example.com", "", &j), JID_ERR_RESOURCE);
    assert_int_equal(jid_copy(&j, &k), JID_ERR_EMPTY);

    char *b = jid_bare_of("Romeo@Example.net/Orchard");
    assert_string_equal(b, "romeo@example.net");
    free(b);
    assert_null(jid_bare_of("romeo@"));
    char *d = jid_prep_domain("Example.NET.");
    assert_string_equal(d, "example.net");
    free(d);
    char *r = jid_prep_resource("Orchard");
    assert_string_equal(r, "Orchard");
    free(r);
    for (int e = 0; e >= -6; e--)
        assert_non_null(jid_strerror((jid_err_t)e));
}

static void test_domain_span(void **state)
{
    (void)state;
    size_t len;
    const char *d;
    d = jid_domain_span("juliet@example.com/foo@bar", &len);
    assert_int_equal(len, 11);
    assert_memory_equal(d, "example.com", 11);
    d = jid_domain_span("example.com", &len);
    assert_int_equal(len, 11);
    d = jid_domain_span("a.example.com/b@example.net", &len);
    assert_int_equal(len, 13);
    assert_memory_equal(d, "a.example.com", 13);
    d = jid_domain_span("EXAMPLE.com/x", &len);
    assert_memory_equal(d, "EXAMPLE.com", 11); /* not prepared */
    assert_null(jid_domain_span("", &len));
    assert_int_equal(len, 0);
    assert_null(jid_domain_span("juliet@", &len));
    assert_null(jid_domain_span("/foo", &len));
}

/* libidn's verdict for one profile: the prepared string, or NULL. */
static char *idn_ref(const char *s, const Stringprep_profile *profile)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    if (stringprep(buf, sizeof buf, STRINGPREP_NO_UNASSIGNED, profile) != STRINGPREP_OK || !buf[0])
        return NULL;
    return strdup(buf);
}

static void expect_same(const char *in, char *got, char *want)
{
    if ((got == NULL) != (want == NULL) || (got && strcmp(got, want)))
        fail_msg("%s: weft gives %s, libidn %s", in, got ? got : "(refused)", want ? want : "(refused)");
    free(got);
    free(want);
}

/* The ASCII fast paths of nodeprep, resourceprep and nameprep agree with
 * libidn for every ASCII character, alone and inside a part. */
static void test_ascii_fast_path(void **state)
{
    (void)state;
    for (int c = 1; c < 128; c++) {
        char forms[3][16];
        snprintf(forms[0], sizeof forms[0], "%c", c);
        snprintf(forms[1], sizeof forms[1], "Ab%cZ9", c);
        snprintf(forms[2], sizeof forms[2], "%cx-Y", c);
        for (int f = 0; f < 3; f++) {
            const char *in = forms[f];
            expect_same(in, jid_prep_node(in), idn_ref(in, stringprep_xmpp_nodeprep));
            expect_same(in, jid_prep_resource(in), idn_ref(in, stringprep_xmpp_resourceprep));
            if (c == '.')
                continue; /* a label separator, not part of a label */
            /* A label: libidn's ToASCII with the STD3 rules, folded as nameprep folds. */
            char *want = NULL, *ace = NULL;
            if (idna_to_ascii_8z(in, &ace, IDNA_USE_STD3_ASCII_RULES) == IDNA_SUCCESS && ace) {
                want = strdup(ace);
                for (char *q = want; *q; q++)
                    *q = (char)tolower((unsigned char)*q);
            }
            if (ace)
                idn_free(ace);
            expect_same(in, jid_prep_domain(in), want);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7622_valid),
        cmocka_unit_test(test_rfc7622_invalid),
        cmocka_unit_test(test_case_folding),
        cmocka_unit_test(test_prohibited_node),
        cmocka_unit_test(test_control_chars),
        cmocka_unit_test(test_bidi),
        cmocka_unit_test(test_idn),
        cmocka_unit_test(test_domain_rules),
        cmocka_unit_test(test_length_limits),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_unassigned),
        cmocka_unit_test(test_build_copy_helpers),
        cmocka_unit_test(test_domain_span),
        cmocka_unit_test(test_ascii_fast_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
