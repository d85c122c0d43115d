/* Unit tests for the incremental stream parser (xml_stream.c): header, tree and
 * raw stanzas, byte splits, hostile input, limits, restart, documents.
 * Every event is logged as text by a recorder so runs can be compared. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "xml_stream.h"
#include "xml_parser_mem.h"

#define HDR "<?xml version='1.0'?><stream:stream xmlns='jabber:client' " \
            "xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>"

typedef struct rec {
    strbuf_t log;
    xml_stream_t *xs;
    const char *raw_name;       /* classify this local name as XS_RAW */
    const char *restart_name;   /* restart after a stanza with this name */
    int opens, stanzas, raws, closes;
    xml_node_t *last;           /* last stanza tree, kept for inspection */
    char *last_raw;
} rec_t;

static void r_open(void *ctx, const xml_node_t *hdr, const char *default_ns)
{
    rec_t *r = ctx;
    r->opens++;
    strbuf_printf(&r->log, "open ns=%s ", default_ns);
    xml_serialize(hdr, NULL, &r->log);
    strbuf_putc(&r->log, '\n');
}

static int r_classify(void *ctx, const char *ns, const char *name, const char **attrs)
{
    rec_t *r = ctx;
    (void)ns, (void)attrs;
    return r->raw_name && strcmp(name, r->raw_name) == 0 ? XS_RAW : XS_TREE;
}

static void r_stanza(void *ctx, xml_node_t *st)
{
    rec_t *r = ctx;
    r->stanzas++;
    strbuf_printf(&r->log, "stanza ");
    xml_serialize(st, "jabber:client", &r->log);
    strbuf_putc(&r->log, '\n');
    int restart = r->restart_name && strcmp(st->name, r->restart_name) == 0;
    xml_free(r->last);
    r->last = st;
    if (restart)
        xml_stream_restart(r->xs);
}

static void r_raw(void *ctx, const char *ns, const char *name, const char **attrs,
                  const char *bytes, size_t len)
{
    rec_t *r = ctx;
    r->raws++;
    strbuf_printf(&r->log, "raw {%s}%s", ns, name);
    for (size_t i = 0; attrs[i]; i += 2)
        strbuf_printf(&r->log, " [%s]=[%s]", attrs[i], attrs[i + 1]);
    strbuf_puts(&r->log, " bytes=");
    strbuf_append(&r->log, bytes, len);
    strbuf_putc(&r->log, '\n');
    free(r->last_raw);
    r->last_raw = xstrndup(bytes, len);
    if (r->restart_name && strcmp(name, r->restart_name) == 0)
        xml_stream_restart(r->xs);
}

static void r_close(void *ctx)
{
    rec_t *r = ctx;
    r->closes++;
    strbuf_puts(&r->log, "close\n");
}

static const xml_stream_cb_t rec_cb = { r_open, r_classify, r_stanza, r_raw, r_close };

static void rec_init(rec_t *r, const xml_limits_t *lim)
{
    memset(r, 0, sizeof(*r));
    strbuf_init(&r->log);
    r->xs = xml_stream_new(&rec_cb, r, lim);
}

static void rec_done(rec_t *r)
{
    xml_stream_free(r->xs);
    strbuf_free(&r->log);
    xml_free(r->last);
    free(r->last_raw);
}

/* Feeds s in pieces of `step` bytes (0 = all at once); returns the first error
 * and leaves the log in *out (caller frees). */
static xs_err_t run(const char *s, size_t len, size_t step, const char *raw_name,
                    const xml_limits_t *lim, char **out)
{
    rec_t r;
    rec_init(&r, lim);
    r.raw_name = raw_name;
    xs_err_t err = XS_OK;
    if (step == 0)
        step = len ? len : 1;
    for (size_t off = 0; off < len && err == XS_OK; off += step) {
        size_t n = len - off < step ? len - off : step;
        err = xml_stream_feed(r.xs, s + off, n);
    }
    if (err != XS_OK) {
        const char *t = xml_stream_error_text(r.xs);
        assert_non_null(t);
        assert_true(strlen(t) > 0);
        /* Errors are sticky. */
        assert_int_equal(xml_stream_feed(r.xs, "<a/>", 4), err);
        strbuf_printf(&r.log, "error %d\n", err);
    }
    if (out)
        *out = strbuf_steal(&r.log);
    rec_done(&r);
    return err;
}

static xs_err_t run_str(const char *s, const char *raw_name, char **out)
{
    return run(s, strlen(s), 0, raw_name, NULL, out);
}

static void test_header(void **state)
{
    (void)state;
    rec_t r;
    rec_init(&r, NULL);
    const char *h = "<?xml version='1.0'?>\n<stream:stream xmlns='jabber:client' "
                    "xmlns:stream='http://etherx.jabber.org/streams' to='example.com' "
                    "version='1.0' xml:lang='en'>";
    assert_int_equal(xml_stream_feed(r.xs, h, strlen(h)), XS_OK);
    assert_int_equal(r.opens, 1);
    assert_string_equal(r.log.data,
        "open ns=jabber:client <stream xmlns='http://etherx.jabber.org/streams' "
        "to='example.com' version='1.0' xml:lang='en'/>\n");
    assert_int_equal(xml_stream_feed(r.xs, "</stream:stream>\n ", 18), XS_OK);
    assert_int_equal(r.closes, 1);
    assert_int_equal(xml_stream_feed(r.xs, "  \r\n", 4), XS_OK);  /* whitespace is fine */
    assert_int_equal(xml_stream_feed(r.xs, " x", 2), XS_ERR_CLOSED);
    assert_int_equal(xml_stream_feed(r.xs, " ", 1), XS_ERR_CLOSED);
    rec_done(&r);

    /* Header without a default namespace; unprefixed stream element. */
    char *log;
    assert_int_equal(run_str("<stream xmlns='http://etherx.jabber.org/streams'>", NULL, &log),
                     XS_OK);
    assert_string_equal(log, "open ns=http://etherx.jabber.org/streams "
                             "<stream xmlns='http://etherx.jabber.org/streams'/>\n");
    free(log);
    assert_int_equal(run_str("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
                             NULL, &log), XS_OK);
    assert_string_equal(log, "open ns= <stream xmlns='http://etherx.jabber.org/streams'/>\n");
    free(log);
}

static void test_stanzas_tree(void **state)
{
    (void)state;
    rec_t r;
    rec_init(&r, NULL);
    const char *s = HDR "\n<message to='a@b' type='chat' xml:lang='de'>"
                    "<body>Hi &amp; &lt;3 &#x263A;</body>\n  <x xmlns='urn:x'><y/></x></message>"
                    " \n\t<presence/><iq xmlns='jabber:server' type='get' id='1'/>";
    assert_int_equal(xml_stream_feed(r.xs, s, strlen(s)), XS_OK);
    assert_int_equal(r.stanzas, 3);
    assert_string_equal(strchr(r.log.data, '\n') + 1,
        "stanza <message to='a@b' type='chat' xml:lang='de'><body>Hi &amp; &lt;3 \xe2\x98\xba"
        "</body>\n  <x xmlns='urn:x'><y/></x></message>\n"
        "stanza <presence/>\n"
        "stanza <iq xmlns='jabber:server' type='get' id='1'/>\n");
    xml_node_t *iq = r.last;
    assert_string_equal(iq->ns, "jabber:server");
    assert_string_equal(xml_attr_get(iq, "id"), "1");
    rec_done(&r);
}

static void test_prefixes(void **state)
{
    (void)state;
    rec_t r;
    rec_init(&r, NULL);
    const char *s = HDR "<foo:bar xmlns:foo='x' foo:a='1' b='2'><foo:c/><d/></foo:bar>";
    assert_int_equal(xml_stream_feed(r.xs, s, strlen(s)), XS_OK);
    assert_non_null(r.last);
    assert_string_equal(r.last->ns, "x");
    assert_string_equal(r.last->name, "bar");
    assert_string_equal(xml_attr_get_ns(r.last, "x", "a"), "1");
    assert_string_equal(xml_attr_get(r.last, "b"), "2");
    assert_null(xml_attr_get(r.last, "a"));
    assert_string_equal(xml_child(r.last, "x", "c")->name, "c");
    assert_non_null(xml_child(r.last, "jabber:client", "d"));
    rec_done(&r);
}

static void test_raw(void **state)
{
    (void)state;
    const char *st1 = "<message to='a@b' xml:lang='en' xmlns:p='urn:p' p:q='v&amp;'>"
                      "<body>caf\xc3\xa9 &lt;</body><x xmlns='urn:x'/></message>";
    const char *st2 = "<message/>";
    strbuf_t in;
    strbuf_init(&in);
    strbuf_puts(&in, HDR "\n ");
    strbuf_puts(&in, st1);
    strbuf_puts(&in, "<presence/>\n");
    strbuf_puts(&in, st2);
    strbuf_puts(&in, "</stream:stream>");
    char *log;
    assert_int_equal(run(in.data, in.len, 0, "message", NULL, &log), XS_OK);
    strbuf_t want;
    strbuf_init(&want);
    strbuf_printf(&want, "raw {jabber:client}message [to]=[a@b] [%s|lang]=[en] [urn:p|q]=[v&] "
                  "bytes=%s\n", XML_NS_XML, st1);
    strbuf_puts(&want, "stanza <presence/>\n");
    strbuf_printf(&want, "raw {jabber:client}message bytes=%s\nclose\n", st2);
    assert_string_equal(strchr(log, '\n') + 1, want.data);
    free(log);
    /* Byte by byte gives the same. */
    assert_int_equal(run(in.data, in.len, 1, "message", NULL, &log), XS_OK);
    assert_string_equal(strchr(log, '\n') + 1, want.data);
    free(log);
    strbuf_free(&want);
    strbuf_free(&in);
}

/* Every split point, both modes, against the one-chunk result. */
static void test_split_everywhere(void **state)
{
    (void)state;
    const char *s = HDR "<message to='j\xc3\xbcrgen@\xe4\xbe\x8b\xe5\xad\x90' id='\xf0\x9f\x98\x80'>"
                    "<body>\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e &amp; &#233;<![CDATA[<&>]]>"
                    "</body></message>  <iq type='get'><q xmlns='urn:\xc3\xa9'/></iq>"
                    "<message><body>\xe6\x97\xa5\xe6\x9c\xac</body></message></stream:stream>";
    size_t len = strlen(s);
    const char *modes[] = { NULL, "message", "iq" };
    for (int m = 0; m < 3; m++) {
        char *whole;
        assert_int_equal(run(s, len, 0, modes[m], NULL, &whole), XS_OK);
        for (size_t cut = 1; cut < len; cut++) {
            rec_t r;
            rec_init(&r, NULL);
            r.raw_name = modes[m];
            assert_int_equal(xml_stream_feed(r.xs, s, cut), XS_OK);
            assert_int_equal(xml_stream_feed(r.xs, s + cut, len - cut), XS_OK);
            if (strcmp(r.log.data, whole) != 0)
                fail_msg("mode %d cut %zu:\n%s\nvs\n%s", m, cut, r.log.data, whole);
            rec_done(&r);
        }
        for (size_t step = 1; step < 8; step++) {
            char *log;
            assert_int_equal(run(s, len, step, modes[m], NULL, &log), XS_OK);
            assert_string_equal(log, whole);
            free(log);
        }
        free(whole);
    }
}

typedef struct hostile {
    const char *name;
    const char *doc;
    xs_err_t want;
} hostile_t;

#define HDRS "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"

static const hostile_t hostile[] = {
    { "billion laughs",
      "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
      "<!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>"
      "<!ENTITY lol2 '&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;'>"
      "<!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>"
      "<!ENTITY lol4 '&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;'>"
      "<!ENTITY lol5 '&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;'>"
      "<!ENTITY lol6 '&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;'>"
      "<!ENTITY lol7 '&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;'>"
      "<!ENTITY lol8 '&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;'>"
      "<!ENTITY lol9 '&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;'>]>"
      HDRS "<message><body>&lol9;</body></message>", XS_ERR_RESTRICTED },
    { "external entity",
      "<?xml version='1.0'?><!DOCTYPE foo [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"
      HDRS "<message><body>&xxe;</body></message>", XS_ERR_RESTRICTED },
    { "external dtd", "<!DOCTYPE stream SYSTEM 'file:///etc/passwd'>" HDRS, XS_ERR_RESTRICTED },
    { "doctype", "<!DOCTYPE stream>" HDRS, XS_ERR_RESTRICTED },
    { "internal entity decl", "<!DOCTYPE s [<!ENTITY a 'b'>]>" HDRS "<m>&a;</m>",
      XS_ERR_RESTRICTED },
    { "undefined entity", HDRS "<message><body>&foo;</body></message>", XS_ERR_RESTRICTED },
    { "undefined entity in attr", HDRS "<message to='&foo;'/>", XS_ERR_RESTRICTED },
    { "char ref nul", HDRS "<message><body>&#0;</body></message>", XS_ERR_NOT_WELL_FORMED },
    { "char ref x1", HDRS "<message><body>&#x1;</body></message>", XS_ERR_NOT_WELL_FORMED },
    { "char ref surrogate", HDRS "<m a='&#xD800;'/>", XS_ERR_NOT_WELL_FORMED },
    { "comment", HDRS "<message><!-- hi --></message>", XS_ERR_RESTRICTED },
    { "comment before header", "<!-- hi -->" HDRS, XS_ERR_RESTRICTED },
    { "processing instruction", HDRS "<message><?php echo 1; ?></message>", XS_ERR_RESTRICTED },
    { "pi at top level", HDRS "<?foo bar?>", XS_ERR_RESTRICTED },
    { "misplaced xml decl", HDRS "<?xml version='1.0'?>", XS_ERR_NOT_WELL_FORMED },
    { "overlong utf8", HDRS "<message><body>\xc0\xaf</body></message>", XS_ERR_NOT_WELL_FORMED },
    { "overlong utf8 3", HDRS "<m>\xe0\x80\xaf</m>", XS_ERR_NOT_WELL_FORMED },
    { "lone continuation", HDRS "<message><body>a\x80z</body></message>",
      XS_ERR_NOT_WELL_FORMED },
    { "truncated then more", HDRS "<message><body>\xc3" "A</body></message>",
      XS_ERR_NOT_WELL_FORMED },
    { "surrogate in utf8", HDRS "<message><body>\xed\xa0\x80</body></message>",
      XS_ERR_NOT_WELL_FORMED },
    { "invalid utf8 in attr", HDRS "<message to='\xff'/>", XS_ERR_NOT_WELL_FORMED },
    { "raw control char", HDRS "<message>\x01</message>", XS_ERR_NOT_WELL_FORMED },
    { "fffe", HDRS "<m>\xef\xbf\xbe</m>", XS_ERR_NOT_WELL_FORMED },
    { "data after close", HDRS "<message/></stream:stream><message/>", XS_ERR_CLOSED },
    { "wrong root ns", "<stream:stream xmlns:stream='jabber:client'>", XS_ERR_BAD_NS },
    { "wrong root name", "<stream:foo xmlns:stream='http://etherx.jabber.org/streams'>",
      XS_ERR_BAD_NS },
    { "unbound prefix", HDRS "<a:b/>", XS_ERR_NOT_WELL_FORMED },
    { "mismatched tag", HDRS "<a></b>", XS_ERR_NOT_WELL_FORMED },
    { "duplicate attr", HDRS "<a x='1' x='2'/>", XS_ERR_NOT_WELL_FORMED },
    { "duplicate ns attr", HDRS "<a xmlns:p='u' xmlns:q='u' p:x='1' q:x='2'/>",
      XS_ERR_NOT_WELL_FORMED },
    { "separator in uri", HDRS "<a xmlns='u\x01v'/>", XS_ERR_NOT_WELL_FORMED },
    { "xml ns redeclared", HDRS "<a xmlns:xml='urn:x'/>", XS_ERR_NOT_WELL_FORMED },
    /* Well-formed to expat, but no serializer could write it back. */
    { "element in xml ns", HDRS "<xml:message/>", XS_ERR_NOT_WELL_FORMED },
    { "child in xml ns", HDRS "<message><body/><xml:x a='1'/></message>", XS_ERR_NOT_WELL_FORMED },
};

static void test_hostile(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
        const hostile_t *h = &hostile[i];
        for (size_t step = 0; step < 3; step++) {
            xs_err_t got = run(h->doc, strlen(h->doc), step, step == 2 ? "message" : NULL,
                               NULL, NULL);
            if (got != h->want)
                fail_msg("%s (step %zu): got %d want %d", h->name, step, got, h->want);
        }
    }
    assert_string_equal(xs_err_condition(XS_ERR_RESTRICTED), "restricted-xml");
    assert_string_equal(xs_err_condition(XS_ERR_POLICY), "policy-violation");
    assert_string_equal(xs_err_condition(XS_ERR_BAD_NS), "invalid-namespace");
    assert_string_equal(xs_err_condition(XS_ERR_NOT_WELL_FORMED), "not-well-formed");
}

static void test_limits(void **state)
{
    (void)state;
    xml_limits_t def, lim;
    xml_limits_default(&def);
    assert_int_equal(def.max_stanza_bytes, 262144);
    assert_int_equal(def.max_depth, 64);
    assert_int_equal(def.max_attrs, 64);
    assert_int_equal(def.max_text, 262144);
    assert_int_equal(def.max_header_bytes, 4096);

    strbuf_t sb;
    strbuf_init(&sb);
    for (int raw = 0; raw < 2; raw++) {
        const char *rn = raw ? "m" : NULL;
        /* Depth: 64 levels below the root pass, 65 do not. */
        for (int depth = 64; depth <= 65; depth++) {
            strbuf_reset(&sb);
            strbuf_puts(&sb, HDRS);
            for (int i = 0; i < depth; i++)
                strbuf_puts(&sb, i ? "<e>" : "<m>");
            for (int i = depth - 1; i >= 0; i--)
                strbuf_puts(&sb, i ? "</e>" : "</m>");
            assert_int_equal(run(sb.data, sb.len, 0, rn, NULL, NULL),
                             depth == 64 ? XS_OK : XS_ERR_POLICY);
        }
        /* A never-closing nest is cut off while it streams in. */
        strbuf_reset(&sb);
        strbuf_puts(&sb, HDRS);
        for (int i = 0; i < 100000; i++)
            strbuf_puts(&sb, "<e>");
        assert_int_equal(run(sb.data, sb.len, 7, rn, NULL, NULL), XS_ERR_POLICY);

        /* Attribute count: 64 ok, 65 not (namespace declarations count too). */
        for (int n = 64; n <= 65; n++) {
            strbuf_reset(&sb);
            strbuf_puts(&sb, HDRS "<m");
            for (int i = 0; i < n; i++)
                strbuf_printf(&sb, " a%d='%d'", i, i);
            strbuf_puts(&sb, "/>");
            assert_int_equal(run(sb.data, sb.len, 0, rn, NULL, NULL),
                             n == 64 ? XS_OK : XS_ERR_POLICY);
        }
        strbuf_reset(&sb);
        strbuf_puts(&sb, HDRS "<m");
        for (int i = 0; i < 60; i++)
            strbuf_printf(&sb, " xmlns:p%d='urn:%d'", i, i);
        strbuf_puts(&sb, " a='1' b='2' c='3' d='4' e='5'/>");
        assert_int_equal(run(sb.data, sb.len, 0, rn, NULL, NULL), XS_ERR_POLICY);
        strbuf_reset(&sb);
        strbuf_puts(&sb, HDRS "<m");
        for (int i = 0; i < 10000; i++)
            strbuf_printf(&sb, " a%d='%d'", i, i);
        strbuf_puts(&sb, "/>");
        assert_int_equal(run(sb.data, sb.len, 0, rn, NULL, NULL), XS_ERR_POLICY);

        /* Text and attribute sizes, with tighter limits. */
        lim = def;
        lim.max_text = 1000;
        lim.max_stanza_bytes = 5000;
        strbuf_reset(&sb);
        strbuf_puts(&sb, HDRS "<m><b>");
        for (int i = 0; i < 1000; i++)
            strbuf_putc(&sb, 'x');
        strbuf_puts(&sb, "</b></m>");
        assert_int_equal(run(sb.data, sb.len, 0, rn, &lim, NULL), XS_OK);
        strbuf_reset(&sb);
        strbuf_puts(&sb, HDRS "<m><b>");
        for (int i = 0; i < 1001; i++)
            strbuf_putc(&sb, 'x');
        strbuf_puts(&sb, "</b></m>");
        assert_int_equal(run(sb.data, sb.len, 0, rn, &lim, NULL), XS_ERR_POLICY);
        assert_int_equal(run(sb.data, sb.len, 13, rn, &lim, NULL), XS_ERR_POLICY);
        strbuf_reset(&sb);
        strbuf_puts(&sb, HDRS "<m a='");
        for (int i = 0; i < 1001; i++)
            strbuf_putc(&sb, 'x');
        strbuf_puts(&sb, "'/>");
        assert_int_equal(run(sb.data, sb.len, 0, rn, &lim, NULL), XS_ERR_POLICY);

        /* Whole stanza size: many small children. */
        strbuf_reset(&sb);
        strbuf_puts(&sb, HDRS "<m>");
        for (int i = 0; i < 1000; i++)
            strbuf_puts(&sb, "<c/>");
        strbuf_puts(&sb, "</m>");
        assert_int_equal(run(sb.data, sb.len, 0, rn, &lim, NULL), XS_OK);
        strbuf_reset(&sb);
        strbuf_puts(&sb, HDRS "<m>");
        for (int i = 0; i < 1300; i++)
            strbuf_puts(&sb, "<c/>");
        strbuf_puts(&sb, "</m>");
        assert_int_equal(run(sb.data, sb.len, 0, rn, &lim, NULL), XS_ERR_POLICY);
        assert_int_equal(run(sb.data, sb.len, 100, rn, &lim, NULL), XS_ERR_POLICY);

        /* A start tag that never ends is cut off while it streams in: the
         * error comes before the feeds exceed the limit by more than a chunk. */
        rec_t r;
        rec_init(&r, &lim);
        r.raw_name = rn;
        assert_int_equal(xml_stream_feed(r.xs, HDRS "<m a='", strlen(HDRS) + 6), XS_OK);
        char chunk[512];
        memset(chunk, 'y', sizeof(chunk));
        xs_err_t err = XS_OK;
        size_t fed = 0;
        while (err == XS_OK && fed < 100000) {
            err = xml_stream_feed(r.xs, chunk, sizeof(chunk));
            fed += sizeof(chunk);
        }
        assert_int_equal(err, XS_ERR_POLICY);
        assert_true(fed <= lim.max_stanza_bytes + sizeof(chunk));
        rec_done(&r);
    }

    /* Header size. */
    lim = def;
    strbuf_reset(&sb);
    strbuf_puts(&sb, "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' a='");
    for (int i = 0; i < 5000; i++)
        strbuf_putc(&sb, 'h');
    strbuf_puts(&sb, "'>");
    assert_int_equal(run(sb.data, sb.len, 0, NULL, NULL, NULL), XS_ERR_POLICY);
    assert_int_equal(run(sb.data, sb.len, 100, NULL, NULL, NULL), XS_ERR_POLICY);
    strbuf_free(&sb);
}

/* A stream that starts with a NUL or a UTF-16 byte order mark would make
 * expat switch to UTF-16; it is refused (unsupported-encoding) at the start
 * of every stream, in whatever split the bytes come, and only there. */
static void test_utf16_refused(void **state)
{
    (void)state;
    static const char *starts[] = { "\xFE\xFF\x00<", "\xFF\xFE<\x00", "\x00<\x00s", "<\x00s\x00" };
    for (size_t i = 0; i < sizeof starts / sizeof *starts; i++) {
        for (size_t step = 1; step <= 4; step++) {
            rec_t r;
            rec_init(&r, NULL);
            xs_err_t e = XS_OK;
            for (size_t off = 0; off < 4 && e == XS_OK; off += step)
                e = xml_stream_feed(r.xs, starts[i] + off, 4 - off < step ? 4 - off : step);
            assert_int_equal(e, XS_ERR_ENCODING);
            assert_non_null(strstr(xml_stream_error_text(r.xs), "not UTF-8"));
            rec_done(&r);
        }
    }
    /* The same bytes later in a stream are just bad characters (expat's verdict),
     * and a UTF-8 BOM is fine. */
    rec_t r;
    rec_init(&r, NULL);
    assert_int_equal(xml_stream_feed(r.xs, "\xEF\xBB\xBF" HDR, strlen(HDR) + 3), XS_OK);
    assert_int_equal(r.opens, 1);
    assert_int_equal(xml_stream_feed(r.xs, "<a>\x00</a>", 8), XS_ERR_NOT_WELL_FORMED);
    assert_null(strstr(xml_stream_error_text(r.xs), "not UTF-8"));
    rec_done(&r);
}

/* XMPP is UTF-8 only (RFC 6120 section 11.6) and the parser is told so, which
 * makes expat ignore the declared encoding: a declaration naming another one
 * is refused as unsupported-encoding once it is complete, fed in two pieces
 * split at every byte, also in the stream after a restart. A malformed
 * declaration is not-well-formed, whatever it names. */
static void test_encoding_declared(void **state)
{
    (void)state;
    static const struct { const char *decl; xs_err_t want; } cases[] = {
        { "<?xml version='1.0' encoding='ISO-8859-1'?>", XS_ERR_ENCODING },
        { "<?xml version=\"1.0\" encoding=\"UTF-16\" standalone=\"no\"?>", XS_ERR_ENCODING },
        { "<?xml version='1.0' encoding='us-ascii'?>", XS_ERR_ENCODING },
        { "<?xml version='1.0' encoding='UTF8'?>", XS_ERR_ENCODING },
        { "\xEF\xBB\xBF<?xml version='1.0' encoding='windows-1252'?>", XS_ERR_ENCODING },
        { "<?xml version='1.0' encoding='UTF-8'?>", XS_OK },
        { "<?xml version='1.0' encoding='utf-8' standalone='yes'?>", XS_OK },
        { "<?xml version='1.0'?>", XS_OK },
        { "<?xml version='1.0' standalone='yes'?>", XS_OK },
        { "<?xml version='1.0' encoding='ISO-8859-1' standalone='maybe'?>", XS_ERR_NOT_WELL_FORMED },
        { "<?xml version='one' encoding='ISO-8859-1'?>", XS_ERR_NOT_WELL_FORMED },
        { "<?xml version='1.x'?>", XS_ERR_NOT_WELL_FORMED },
        { "<?xml version=''?>", XS_ERR_NOT_WELL_FORMED },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        for (int restarted = 0; restarted < 2; restarted++) {
            strbuf_t sb;
            strbuf_init(&sb);
            if (restarted)
                strbuf_puts(&sb, HDRS "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
            strbuf_puts(&sb, cases[i].decl);
            strbuf_puts(&sb, HDRS "<message><body>x</body></message>");
            for (size_t cut = 0; cut <= sb.len; cut++) {
                rec_t r;
                rec_init(&r, NULL);
                r.restart_name = "proceed";
                xs_err_t e = cut ? xml_stream_feed(r.xs, sb.data, cut) : XS_OK;
                if (e == XS_OK)
                    e = xml_stream_feed(r.xs, sb.data + cut, sb.len - cut);
                if (e != cases[i].want)
                    fail_msg("%s (restarted %d) cut %zu: got %d want %d", cases[i].decl, restarted,
                             cut, e, cases[i].want);
                /* Refused before the header that follows is reported. */
                assert_int_equal(r.opens, restarted + (e == XS_OK));
                if (e == XS_ERR_ENCODING)
                    assert_non_null(strstr(xml_stream_error_text(r.xs), "not supported"));
                rec_done(&r);
            }
            strbuf_free(&sb);
        }
    }
    assert_string_equal(xs_err_condition(XS_ERR_ENCODING), "unsupported-encoding");
}

static void test_restart(void **state)
{
    (void)state;
    for (int raw = 0; raw < 2; raw++) {
        for (size_t step = 0; step < 3; step++) {
            rec_t r;
            rec_init(&r, NULL);
            r.restart_name = "proceed";
            r.raw_name = raw ? "proceed" : NULL;
            const char *s = HDR "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
                            "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
                            "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                            "xmlns:stream='http://etherx.jabber.org/streams' to='b'>"
                            "<message><body>after</body></message>";
            size_t len = strlen(s), st = step ? step : len;
            for (size_t off = 0; off < len; off += st)
                assert_int_equal(xml_stream_feed(r.xs, s + off, len - off < st ? len - off : st),
                                 XS_OK);
            assert_int_equal(r.opens, 2);
            assert_int_equal(r.stanzas + r.raws, 3);
            assert_non_null(strstr(r.log.data, "open ns=jabber:server "));
            assert_non_null(r.last);
            assert_string_equal(r.last->ns, "jabber:server");
            assert_string_equal(r.last->name, "message");
            rec_done(&r);
        }
    }
    /* Restart outside a callback resets at once. */
    rec_t r;
    rec_init(&r, NULL);
    assert_int_equal(xml_stream_feed(r.xs, HDR "<message><bo", strlen(HDR) + 12), XS_OK);
    xml_stream_restart(r.xs);
    assert_int_equal(xml_stream_feed(r.xs, HDR "<iq/>", strlen(HDR) + 5), XS_OK);
    assert_int_equal(r.opens, 2);
    assert_int_equal(r.stanzas, 1);
    assert_string_equal(r.last->name, "iq");
    rec_done(&r);
}

/* A big element completed by a tiny feed is delivered at once (expat's reparse
 * deferral, which would hold it back, is switched off). */
static void test_no_deferral(void **state)
{
    (void)state;
    for (int raw = 0; raw < 2; raw++) {
        rec_t r;
        rec_init(&r, NULL);
        r.raw_name = raw ? "m" : NULL;
        assert_int_equal(xml_stream_feed(r.xs, HDRS, strlen(HDRS)), XS_OK);
        strbuf_t sb;
        strbuf_init(&sb);
        strbuf_puts(&sb, "<m a='");
        for (int i = 0; i < 200000; i++)
            strbuf_putc(&sb, 'v');
        strbuf_puts(&sb, "'/");
        for (size_t off = 0; off < sb.len; off += 4096)
            assert_int_equal(xml_stream_feed(r.xs, sb.data + off,
                                             sb.len - off < 4096 ? sb.len - off : 4096), XS_OK);
        assert_int_equal(r.stanzas + r.raws, 0);
        assert_int_equal(xml_stream_feed(r.xs, ">", 1), XS_OK);
        assert_int_equal(r.stanzas + r.raws, 1);
        strbuf_free(&sb);
        rec_done(&r);
    }
}

static void test_parse_document(void **state)
{
    (void)state;
    const char *doc = "<?xml version='1.0'?>\n<config xmlns='urn:weft:config'>\n"
                      "  <listen port='5222'/>\n\n  <log level='info'>x</log>\n</config>\n";
    char err[128];
    unsigned line = 99;
    xml_node_t *root = xml_parse_document(doc, strlen(doc), NULL, err, sizeof(err), &line);
    assert_non_null(root);
    assert_int_equal(line, 0);
    assert_string_equal(root->ns, "urn:weft:config");
    assert_int_equal(root->line, 2);
    xml_node_t *l = xml_child(root, NULL, "listen");
    assert_int_equal(l->line, 3);
    assert_string_equal(xml_attr_get(l, "port"), "5222");
    assert_int_equal(xml_child(root, NULL, "log")->line, 5);
    xml_free(root);

    const char *bad = "<config>\n<a>\n<b></a>\n</config>";
    root = xml_parse_document(bad, strlen(bad), NULL, err, sizeof(err), &line);
    assert_null(root);
    assert_int_equal(line, 3);
    assert_true(strlen(err) > 0);

    const char *dtd = "<!DOCTYPE c [<!ENTITY a 'b'>]>\n<c>&a;</c>";
    assert_null(xml_parse_document(dtd, strlen(dtd), NULL, err, sizeof(err), &line));
    assert_non_null(strstr(err, "DOCTYPE"));
    const char *cm = "<c>\n\n<!-- x --></c>";
    assert_null(xml_parse_document(cm, strlen(cm), NULL, err, sizeof(err), &line));
    assert_int_equal(line, 3);
    /* A config file is UTF-8 too: one that says otherwise would be misread. */
    const char *latin = "<?xml version='1.0' encoding='ISO-8859-1'?>\n<c/>";
    assert_null(xml_parse_document(latin, strlen(latin), NULL, err, sizeof(err), &line));
    assert_non_null(strstr(err, "ISO-8859-1"));
    assert_null(xml_parse_document("", 0, NULL, err, sizeof(err), &line));
    assert_null(xml_parse_document("<a>", 3, NULL, err, sizeof(err), &line));
    assert_null(xml_parse_document("<a/><b/>", 8, NULL, err, sizeof(err), &line));
    xml_limits_t lim;
    xml_limits_default(&lim);
    lim.max_depth = 2;
    assert_null(xml_parse_document("<a><b><c/></b></a>", 18, &lim, err, sizeof(err), &line));
    root = xml_parse_document("<a><b/></a>", 11, &lim, NULL, 0, NULL);
    assert_non_null(root);
    xml_free(root);
}

/* Compaction between stanzas must be invisible: the same events, for every
 * split, as an uncompacted parser (line numbers aside: they restart, and the
 * sample has one line); prefixes declared on the header (the
 * root's own and others) stay in scope; errors are still found. */
static char *run_compacting(const char *s, size_t step, const char *raw_name, int *compactions, xs_err_t *err)
{
    rec_t r;
    rec_init(&r, NULL);
    r.raw_name = raw_name;
    size_t len = strlen(s);
    *err = XS_OK;
    *compactions = 0;
    for (size_t off = 0; off < len && *err == XS_OK; off += step) {
        size_t n = len - off < step ? len - off : step;
        *err = xml_stream_feed(r.xs, s + off, n);
        if (*err == XS_OK && xml_stream_compact(r.xs))
            (*compactions)++;
    }
    if (*err != XS_OK)
        strbuf_printf(&r.log, "error %d\n", *err);
    char *out = strbuf_steal(&r.log);
    rec_done(&r);
    return out;
}

static void test_compact(void **state)
{
    (void)state;
    const char *doc =
        "<?xml version='1.0'?><s:stream xmlns='jabber:client' xmlns:s='http://etherx.jabber.org/streams' "
        "xmlns:x='urn:x' to='example.com' version='1.0'>"
        "<message to='a@b'><body>one &amp; two</body><x:y x:z='1'/></message> \t "
        "<iq type='get' id='1'><query xmlns='urn:q'/></iq>"
        "<presence/>  </s:stream>";
    for (const char *raw = NULL;; raw = "message") {
        char *want = NULL;
        assert_int_equal(run(doc, strlen(doc), 0, raw, NULL, &want), XS_OK);
        for (size_t step = 1; step <= strlen(doc); step++) {
            int n;
            xs_err_t err;
            char *got = run_compacting(doc, step, raw, &n, &err);
            assert_int_equal(err, XS_OK);
            assert_string_equal(got, want);
            if (step == 1)
                assert_true(n >= 4);   /* after the header and after each stanza */
            free(got);
        }
        free(want);
        if (raw)
            break;
    }
    /* Not compactable inside a stanza. */
    rec_t r;
    rec_init(&r, NULL);
    const char *part = HDR "<message><body>half";
    assert_int_equal(xml_stream_feed(r.xs, part, strlen(part)), XS_OK);
    assert_int_equal(xml_stream_compact(r.xs), 0);
    assert_int_equal(xml_stream_feed(r.xs, "</body></message>", 17), XS_OK);
    assert_int_equal(xml_stream_compact(r.xs), 1);
    /* Errors after a compaction are still errors. */
    assert_int_equal(xml_stream_feed(r.xs, "<a></b>", 7), XS_ERR_NOT_WELL_FORMED);
    rec_done(&r);
    rec_init(&r, NULL);
    assert_int_equal(xml_stream_feed(r.xs, HDR, strlen(HDR)), XS_OK);
    assert_int_equal(xml_stream_compact(r.xs), 1);
    assert_int_equal(xml_stream_feed(r.xs, "<!-- c -->", 10), XS_ERR_RESTRICTED);
    rec_done(&r);
}

/* Each parser's memory lives in blocks of its own (xml_parser_mem.c): live
 * streams hold blocks, compacted or freed ones give them back (a few stay
 * cached), a big stanza's buffer gets a block of its own, and a parse nested
 * in a callback uses its own arena and leaves the outer one current. */
static int nested_ok;

static void nest_stanza(void *ctx, xml_node_t *st)
{
    (void)ctx;
    size_t before = xpm_blocks_mapped();
    char err[64];
    xml_node_t *d = xml_parse_document("<a xmlns='urn:a'><b/></a>", 25, NULL, err, sizeof err, NULL);
    nested_ok += d != NULL && xpm_blocks_mapped() <= before + 1;
    xml_free(d);
    xml_free(st);
}

static void test_parser_memory(void **state)
{
    (void)state;
    enum { N = 64, CACHED = 4 };
    size_t base = xpm_blocks_mapped();
    rec_t r[N];
    const char *st = "<message to='a@b'><body>hi</body></message>";
    for (int i = 0; i < N; i++) {
        rec_init(&r[i], NULL);
        assert_int_equal(xml_stream_feed(r[i].xs, HDR, strlen(HDR)), XS_OK);
        assert_int_equal(xml_stream_feed(r[i].xs, st, strlen(st)), XS_OK);
    }
    assert_true(xpm_blocks_mapped() + CACHED >= base + N);   /* cached blocks are used first */
    for (int i = 0; i < N; i++)
        assert_int_equal(xml_stream_compact(r[i].xs), 1);
    assert_true(xpm_blocks_mapped() <= base + CACHED);
    /* Uncompacting takes a block again; the stream still works. */
    for (int i = 0; i < N; i++) {
        assert_int_equal(xml_stream_feed(r[i].xs, st, strlen(st)), XS_OK);
        assert_int_equal(r[i].stanzas, 2);
        rec_done(&r[i]);
    }
    assert_true(xpm_blocks_mapped() <= base + CACHED);

    /* A 200 KB body: expat's buffer outgrows a block, and is given back. */
    rec_t big;
    rec_init(&big, NULL);
    assert_int_equal(xml_stream_feed(big.xs, HDR "<message><body>", strlen(HDR) + 15), XS_OK);
    char chunk[4096];
    memset(chunk, 'x', sizeof chunk);
    for (int i = 0; i < 50; i++)
        assert_int_equal(xml_stream_feed(big.xs, chunk, sizeof chunk), XS_OK);
    assert_int_equal(xml_stream_feed(big.xs, "</body></message>", 17), XS_OK);
    assert_int_equal(big.stanzas, 1);
    rec_done(&big);
    assert_true(xpm_blocks_mapped() <= base + CACHED);

    static const xml_stream_cb_t nest_cb = { NULL, NULL, nest_stanza, NULL, NULL };
    xml_stream_t *xs = xml_stream_new(&nest_cb, NULL, NULL);
    nested_ok = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(xml_stream_feed(xs, i ? "" : HDR, i ? 0 : strlen(HDR)), XS_OK);
        assert_int_equal(xml_stream_feed(xs, st, strlen(st)), XS_OK);
    }
    assert_int_equal(nested_ok, 3);
    xml_stream_free(xs);
    assert_true(xpm_blocks_mapped() <= base + CACHED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_stanzas_tree),
        cmocka_unit_test(test_prefixes),
        cmocka_unit_test(test_raw),
        cmocka_unit_test(test_split_everywhere),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_restart),
        cmocka_unit_test(test_utf16_refused),
        cmocka_unit_test(test_encoding_declared),
        cmocka_unit_test(test_no_deferral),
        cmocka_unit_test(test_parse_document),
        cmocka_unit_test(test_compact),
        cmocka_unit_test(test_parser_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
