/* Unit tests for the stanza tree (xml.c) and the serializer (xml_serialize.c).
 * The round-trip tests parse with xml_parse_document, so they also exercise
 * xml_stream.c; the invariant checked is parse(serialize(x)) == x. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "xml.h"
#include "xml_stream.h"

static char *ser(const xml_node_t *el, const char *default_ns)
{
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(el, default_ns, &sb);
    return strbuf_steal(&sb);
}

static xml_node_t *parse(const char *s)
{
    char err[256];
    unsigned line = 0;
    xml_node_t *n = xml_parse_document(s, strlen(s), NULL, err, sizeof(err), &line);
    if (!n)
        fprintf(stderr, "parse failed: %s (line %u) in: %s\n", err, line, s);
    return n;
}

static void test_build_and_access(void **state)
{
    (void)state;
    xml_node_t *m = xml_elem_new("jabber:client", "message");
    assert_string_equal(m->ns, "jabber:client");
    assert_string_equal(m->name, "message");
    xml_attr_set(m, "to", "a@b");
    xml_attr_set(m, "type", "chat");
    xml_attr_set(m, "to", "c@d");       /* replaces */
    assert_int_equal(m->nattrs, 2);
    assert_string_equal(xml_attr_get(m, "to"), "c@d");
    xml_attr_set(m, "type", NULL);      /* removes */
    assert_null(xml_attr_get(m, "type"));
    assert_int_equal(m->nattrs, 1);
    xml_attr_set(m, "missing", NULL);   /* removing nothing is fine */

    xml_attr_set_ns(m, XML_NS_XML, "lang", "en");
    assert_string_equal(xml_attr_get_ns(m, XML_NS_XML, "lang"), "en");
    assert_null(xml_attr_get(m, "lang"));
    xml_attr_set_ns(m, "", "x", "1");   /* "" means unqualified */
    assert_string_equal(xml_attr_get(m, "x"), "1");
    assert_string_equal(xml_attr_get_ns(m, NULL, "x"), "1");

    /* Many attributes: exercises the implicit capacity rule. */
    char nm[16];
    for (int i = 0; i < 40; i++) {
        snprintf(nm, sizeof(nm), "a%d", i);
        xml_attr_set(m, nm, nm);
    }
    for (int i = 0; i < 40; i += 3) {
        snprintf(nm, sizeof(nm), "a%d", i);
        xml_attr_set(m, nm, NULL);
    }
    for (int i = 40; i < 60; i++) {
        snprintf(nm, sizeof(nm), "a%d", i);
        xml_attr_set(m, nm, nm);
    }
    for (int i = 0; i < 60; i++) {
        snprintf(nm, sizeof(nm), "a%d", i);
        if (i < 40 && i % 3 == 0)
            assert_null(xml_attr_get(m, nm));
        else
            assert_string_equal(xml_attr_get(m, nm), nm);
    }

    xml_node_t *body = xml_add_child(m, "jabber:client", "body");
    xml_add_text(body, "hel", 3);
    xml_add_text(body, "lo", 2);
    assert_ptr_equal(body->first_child, body->last_child);  /* merged */
    xml_node_t *thread = xml_add_child(m, NULL, "thread");
    assert_string_equal(thread->ns, "");
    xml_node_t *x = xml_add_child(m, "jabber:x:oob", "x");
    xml_add_text(m, "tail", 4);

    assert_ptr_equal(xml_child(m, NULL, NULL), body);
    assert_ptr_equal(xml_child(m, "jabber:x:oob", NULL), x);
    assert_ptr_equal(xml_child(m, NULL, "thread"), thread);
    assert_null(xml_child(m, "jabber:client", "thread"));
    assert_ptr_equal(xml_next(body, NULL, NULL), thread);
    assert_ptr_equal(xml_next(body, "jabber:x:oob", "x"), x);
    assert_null(xml_next(x, NULL, NULL));

    char *t = xml_text(body);
    assert_string_equal(t, "hello");
    free(t);
    t = xml_text(m);
    assert_string_equal(t, "tail");
    free(t);
    t = xml_text(thread);
    assert_string_equal(t, "");
    free(t);

    xml_detach(thread);
    assert_null(thread->parent);
    assert_ptr_equal(xml_next(body, NULL, NULL), x);
    xml_append(x, thread);
    assert_ptr_equal(thread->parent, x);
    xml_detach(body);                   /* first child */
    assert_ptr_equal(m->first_child, x);
    xml_free(body);
    xml_node_t *tail = m->last_child;
    xml_detach(tail);                   /* last child */
    assert_ptr_equal(m->last_child, x);
    xml_free(tail);

    xml_node_t *c = xml_copy(m);
    assert_true(xml_equal(m, c));
    xml_attr_set(c, "to", "other");
    assert_false(xml_equal(m, c));
    xml_free(c);
    xml_free(m);
}

static void test_equal(void **state)
{
    (void)state;
    xml_node_t *a = xml_elem_new("ns", "e");
    xml_node_t *b = xml_elem_new("ns", "e");
    xml_attr_set(a, "x", "1");
    xml_attr_set(a, "y", "2");
    xml_attr_set(b, "y", "2");
    xml_attr_set(b, "x", "1");
    assert_true(xml_equal(a, b));       /* attribute order does not matter */

    /* Split text compares as merged text. */
    xml_add_text(a, "abcdef", 6);
    xml_node_t *t1 = xml_elem_new(NULL, "tmp");
    xml_add_text(t1, "abc", 3);
    xml_node_t *tn = t1->first_child;
    xml_detach(tn);
    xml_append(b, tn);
    xml_add_text(b, "def", 3);          /* merged into tn by add_text */
    xml_free(t1);
    assert_true(xml_equal(a, b));

    /* Force two separate text nodes in b. */
    xml_node_t *b2 = xml_elem_new("ns", "e");
    xml_attr_set(b2, "x", "1");
    xml_attr_set(b2, "y", "2");
    xml_node_t *h1 = xml_elem_new(NULL, "h"), *h2 = xml_elem_new(NULL, "h");
    xml_add_text(h1, "ab", 2);
    xml_add_text(h2, "cdef", 4);
    xml_node_t *n1 = h1->first_child, *n2 = h2->first_child;
    xml_detach(n1);
    xml_detach(n2);
    xml_append(b2, n1);
    xml_append(b2, n2);
    xml_free(h1);
    xml_free(h2);
    assert_true(xml_equal(a, b2));
    xml_add_child(b2, "ns", "k");
    assert_false(xml_equal(a, b2));

    xml_node_t *c = xml_elem_new("other", "e");
    assert_false(xml_equal(a, c));
    xml_free(c);
    c = xml_elem_new("ns", "e");
    xml_attr_set(c, "x", "1");
    xml_attr_set_ns(c, "urn:z", "y", "2");
    xml_add_text(c, "abcdef", 6);
    assert_false(xml_equal(a, c));      /* qualified attribute differs */
    xml_free(c);
    assert_true(xml_equal(NULL, NULL));
    assert_false(xml_equal(a, NULL));
    xml_free(a);
    xml_free(b);
    xml_free(b2);
}

static void test_attrs_find(void **state)
{
    (void)state;
    const char *attrs[] = { "to", "a@b", XML_NS_XML "|lang", "en", NULL };
    assert_string_equal(xml_attrs_find(attrs, "to"), "a@b");
    assert_string_equal(xml_attrs_find(attrs, XML_NS_XML "|lang"), "en");
    assert_null(xml_attrs_find(attrs, "from"));
    assert_null(xml_attrs_find(NULL, "from"));
}

static void test_escape(void **state)
{
    (void)state;
    strbuf_t sb;
    strbuf_init(&sb);
    const char s[] = "a<b>&\"'\t\n\r]]>";
    xml_escape(&sb, s, strlen(s), 0);
    assert_string_equal(sb.data, "a&lt;b&gt;&amp;\"'\t\n&#13;]]&gt;");
    strbuf_reset(&sb);
    xml_escape(&sb, s, strlen(s), 1);
    assert_string_equal(sb.data, "a&lt;b&gt;&amp;&quot;&apos;&#9;&#10;&#13;]]&gt;");
    strbuf_reset(&sb);
    /* Valid multibyte passes; invalid bytes and forbidden chars become U+FFFD. */
    const char u[] = "\xc3\xa9\xe2\x98\x83\xf0\x9d\x84\x9e";
    xml_escape(&sb, u, strlen(u), 0);
    assert_string_equal(sb.data, u);
    strbuf_reset(&sb);
    const char bad[] = "a\x01" "b\xc0\xaf" "c\xed\xa0\x80" "d\xef\xbf\xbe" "e\xc3";
    xml_escape(&sb, bad, strlen(bad), 0);
    assert_string_equal(sb.data, "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd"
                                 "c\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                                 "d\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "e\xef\xbf\xbd");
    strbuf_reset(&sb);
    xml_escape(&sb, "x\0y", 3, 0);      /* NUL is not XML either */
    assert_string_equal(sb.data, "x\xef\xbf\xbdy");
    strbuf_free(&sb);
}

static void test_serialize_namespaces(void **state)
{
    (void)state;
    xml_node_t *m = xml_elem_new("jabber:client", "message");
    xml_attr_set(m, "to", "a@b");
    xml_add_text(xml_add_child(m, "jabber:client", "body"), "hi & <bye>", 10);
    xml_add_child(m, "urn:xmpp:receipts", "request");
    xml_node_t *n = xml_add_child(m, NULL, "nons");
    xml_add_child(n, NULL, "inner");

    char *s = ser(m, "jabber:client");
    assert_string_equal(s, "<message to='a@b'><body>hi &amp; &lt;bye&gt;</body>"
                           "<request xmlns='urn:xmpp:receipts'/><nons xmlns=''><inner/></nons>"
                           "</message>");
    free(s);
    s = ser(m, NULL);
    assert_string_equal(s, "<message xmlns='jabber:client' to='a@b'><body>hi &amp; &lt;bye&gt;"
                           "</body><request xmlns='urn:xmpp:receipts'/><nons xmlns=''><inner/>"
                           "</nons></message>");
    free(s);
    xml_free(m);
}

static void test_serialize_attr_prefixes(void **state)
{
    (void)state;
    xml_node_t *e = xml_elem_new("urn:e", "e");
    xml_attr_set_ns(e, XML_NS_XML, "lang", "en");
    xml_attr_set_ns(e, "urn:a", "x", "1");
    xml_attr_set(e, "x", "plain");
    xml_attr_set_ns(e, "urn:b", "x", "2");
    xml_attr_set_ns(e, "urn:a", "y", "3");
    xml_attr_set(e, "xmlns", "ignored");   /* would duplicate the declaration */
    xml_attr_set(e, "xmlns:w1", "urn:evil"); /* would clash with a prefix */
    char *s = ser(e, "urn:e");
    assert_string_equal(s, "<e xmlns:w1='urn:a' xmlns:w3='urn:b' xml:lang='en' w1:x='1' x='plain'"
                           " w3:x='2' w1:y='3'/>");
    xml_node_t *back = parse(s);
    assert_non_null(back);
    xml_attr_set(e, "xmlns", NULL);
    xml_attr_set(e, "xmlns:w1", NULL);
    /* parsed without scope: the root gets urn:e only when serialized with "" */
    free(s);
    xml_free(back);
    s = ser(e, "");
    back = parse(s);
    assert_non_null(back);
    assert_true(xml_equal(e, back));
    assert_string_equal(xml_attr_get_ns(back, XML_NS_XML, "lang"), "en");
    assert_string_equal(xml_attr_get_ns(back, "urn:b", "x"), "2");
    free(s);
    xml_free(back);
    xml_free(e);
}

static void test_serialize_text_node(void **state)
{
    (void)state;
    xml_node_t *p = xml_elem_new(NULL, "p");
    xml_add_text(p, "<a>", 3);
    char *s = ser(p->first_child, NULL);
    assert_string_equal(s, "&lt;a&gt;");
    free(s);
    xml_free(p);
}

/* ---- randomized round trip ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static const char *const elem_ns[] = { "", "jabber:client", "urn:a", "urn:b",
                                       "urn:q'\"&<>\xc3\xa9" };
static const char *const attr_ns[] = { NULL, NULL, NULL, XML_NS_XML, "urn:a", "urn:c",
                                       "jabber:client" };
static const char *const names[] = { "a", "b", "message", "body", "x", "lang",
                                     "w0", "\xc3\xa9l\xc3\xa9ment", "n.s-1" };
static const char *const texts[] = { "<", "&", "'\"", "]]>", "]]", ">",
                                     "h\xc3\xa9llo \xe2\x98\x83 \xf0\x9d\x84\x9e", "\r\n",
                                     "\r", "\t", " ", "&amp;", "x", "\n\n", "&#13;",
                                     "<![CDATA[", "\xef\xbf\xbd" };

static void rand_text(strbuf_t *sb)
{
    strbuf_reset(sb);
    unsigned n = rnd(5);
    for (unsigned i = 0; i < n; i++)
        strbuf_puts(sb, texts[rnd(sizeof(texts) / sizeof(texts[0]))]);
}

static xml_node_t *rand_tree(unsigned depth, strbuf_t *sb)
{
    xml_node_t *el = xml_elem_new(elem_ns[rnd(5)], names[rnd(9)]);
    unsigned na = rnd(5);
    for (unsigned i = 0; i < na; i++) {
        const char *ns = attr_ns[rnd(7)];
        rand_text(sb);
        xml_attr_set_ns(el, ns, ns && strcmp(ns, XML_NS_XML) == 0 ? "lang" : names[rnd(9)],
                        sb->len ? sb->data : "");
    }
    unsigned nc = depth ? rnd(5) : 0;
    for (unsigned i = 0; i < nc; i++) {
        if (rnd(2)) {
            rand_text(sb);
            /* Two calls in a row still make one node; equality must not care. */
            xml_add_text(el, sb->data ? sb->data : "", sb->len);
        } else {
            xml_append(el, rand_tree(depth - 1, sb));
        }
    }
    return el;
}

static void test_round_trip_random(void **state)
{
    (void)state;
    strbuf_t sb, doc;
    strbuf_init(&sb);
    strbuf_init(&doc);
    for (int i = 0; i < 600; i++) {
        xml_node_t *t = rand_tree(4, &sb);
        /* Standalone: no namespace in scope. */
        char *s = ser(t, NULL);
        xml_node_t *back = parse(s);
        assert_non_null(back);
        if (!xml_equal(t, back))
            fail_msg("round trip %d differs: %s", i, s);
        xml_free(back);
        free(s);
        /* Inside a jabber:client scope, as c2s writes stanzas. */
        strbuf_reset(&doc);
        strbuf_puts(&doc, "<wrap xmlns='jabber:client'>");
        xml_serialize(t, "jabber:client", &doc);
        strbuf_puts(&doc, "</wrap>");
        back = parse(doc.data);
        assert_non_null(back);
        if (!xml_equal(t, back->first_child))
            fail_msg("scoped round trip %d differs: %s", i, doc.data);
        xml_free(back);
        xml_free(t);
    }
    strbuf_free(&sb);
    strbuf_free(&doc);
}

static void test_round_trip_parsed(void **state)
{
    (void)state;
    const char *in =
        "<a:x xmlns:a='urn:a' xmlns='urn:d' xmlns:b='urn:b' b:k='v' xml:lang='fr'>"
        "<y a:z='1'>t&amp;<![CDATA[<raw>]]>&#x10000;</y><b:y xmlns:a='urn:a2' a:q=''/></a:x>";
    xml_node_t *t = parse(in);
    assert_non_null(t);
    assert_string_equal(t->ns, "urn:a");
    assert_string_equal(t->name, "x");
    assert_string_equal(xml_attr_get_ns(t, "urn:b", "k"), "v");
    assert_string_equal(xml_attr_get_ns(t, XML_NS_XML, "lang"), "fr");
    xml_node_t *y = xml_child(t, "urn:d", "y");
    assert_non_null(y);
    char *txt = xml_text(y);
    assert_string_equal(txt, "t&<raw>\xf0\x90\x80\x80");
    free(txt);
    xml_node_t *by = xml_child(t, "urn:b", "y");
    assert_non_null(by);
    assert_string_equal(xml_attr_get_ns(by, "urn:a2", "q"), "");
    char *s = ser(t, NULL);
    xml_node_t *back = parse(s);
    assert_true(xml_equal(t, back));
    free(s);
    xml_free(back);
    xml_free(t);
}

/* xml_mutations counts changes made through the API, and only those: the
 * sm's fan-out reuses a tree while nothing changed it (sm/core.c). */
static void test_mutations_counted(void **state)
{
    (void)state;
    xml_node_t *m = xml_elem_new("jabber:client", "message");
    xml_attr_set(m, "to", "a@x");
    xml_add_text(xml_add_child(m, NULL, "body"), "hi", 2);
    unsigned long n = xml_mutations();
    xml_node_t *c = xml_copy(m);
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(c, "jabber:client", &sb);
    assert_non_null(xml_attr_get(c, "to"));
    assert_non_null(xml_child(c, NULL, "body"));
    assert_int_equal(xml_mutations(), n);             /* reading and copying change nothing */
    xml_attr_set(c, "to", "b@x");
    assert_true(xml_mutations() > n);
    n = xml_mutations();
    xml_attr_set(c, "id", NULL);                       /* removing an absent attribute */
    xml_node_t *body = xml_child(c, NULL, "body");
    xml_add_text(body, "!", 1);
    assert_true(xml_mutations() > n);
    n = xml_mutations();
    xml_detach(body);
    assert_true(xml_mutations() > n);
    n = xml_mutations();
    xml_add_child(c, "urn:xmpp:sid:0", "stanza-id");
    assert_true(xml_mutations() > n);
    n = xml_mutations();
    xml_rename_ns(c, "jabber:client", "jabber:server");
    assert_true(xml_mutations() > n);
    xml_free(body);
    xml_free(c);
    xml_free(m);
    strbuf_free(&sb);
}

/* A tree's version names its content: a copy of the whole tree has it,
 * every change to any of its nodes gives the root a new one, and equal
 * versions serialize equally (mod_mam reuses a sent stanza's bytes for its
 * received copy on that promise). */
static void test_versions(void **state)
{
    (void)state;
    xml_node_t *m = xml_elem_new("jabber:client", "message");
    xml_attr_set(m, "to", "a@x");
    xml_node_t *body = xml_add_child(m, NULL, "body");
    xml_add_text(body, "hi", 2);
    uint64_t v = xml_version(m);
    assert_true(v != 0);
    assert_int_equal(xml_version(body), 0);           /* not a root */
    xml_node_t *c = xml_copy(m);
    assert_true(xml_version(c) == v);
    strbuf_t a, b;
    strbuf_init(&a);
    strbuf_init(&b);
    xml_serialize(m, NULL, &a);
    xml_serialize(c, NULL, &b);
    assert_string_equal(a.data, b.data);
    xml_node_t *cc = xml_copy(c);                      /* a copy of a copy too */
    assert_true(xml_version(cc) == v);
    xml_free(cc);
    xml_node_t *sub = xml_copy(body);                  /* a subtree's copy: its own */
    assert_true(xml_version(sub) != v && xml_version(sub) != 0);
    xml_free(sub);
    /* Each change, however deep, and the copy no longer matches. */
    uint64_t seen[8];
    int k = 0;
    seen[k++] = v;
    xml_add_text(xml_child(c, NULL, "body"), "!", 1);  /* merged into the text node */
    seen[k++] = xml_version(c);
    xml_attr_set(xml_child(c, NULL, "body"), "xml:lang", "en");
    seen[k++] = xml_version(c);
    xml_add_child(xml_child(c, NULL, "body"), "urn:x", "x");
    seen[k++] = xml_version(c);
    xml_rename_ns(c, "jabber:client", "jabber:server");
    seen[k++] = xml_version(c);
    xml_node_t *d = xml_child(c, NULL, "body");
    xml_detach(d);
    seen[k++] = xml_version(c);
    assert_true(xml_version(d) != 0);                  /* a root again, with a new version */
    seen[k++] = xml_version(d);
    for (int i = 0; i < k; i++)
        for (int j = i + 1; j < k; j++)
            assert_true(seen[i] != seen[j]);
    assert_true(xml_version(m) == v);                  /* the original is untouched */
    xml_free(d);
    xml_free(c);
    xml_free(m);
    strbuf_free(&a);
    strbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_and_access),
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_attrs_find),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_serialize_namespaces),
        cmocka_unit_test(test_serialize_attr_prefixes),
        cmocka_unit_test(test_serialize_text_node),
        cmocka_unit_test(test_round_trip_random),
        cmocka_unit_test(test_round_trip_parsed),
        cmocka_unit_test(test_mutations_counted),
        cmocka_unit_test(test_versions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
