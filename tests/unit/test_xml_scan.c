/* Unit tests for xml_scan.c: the scanner (header, element spans, names,
 * attributes, references, characters, CDATA, namespaces, restricted XML,
 * limits, close, restart, stop) and xml_scan_stream (hand-off to expat,
 * passthrough). Every verdict is checked with the input fed whole, split in
 * two at every byte boundary and one byte at a time, and against xml_stream
 * (expat) fed the same bytes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "xml_scan.h"

#define NS_W "urn:xmpp:weft:component:1"
#define SHORT "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>"
#define HDR "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' " \
            "xmlns:stream='http://etherx.jabber.org/streams' xmlns:w='" NS_W "' to='r' version='1.0'>"

typedef struct rec {
    strbuf_t log;
    xml_scan_t *sc;
    const char *restart_name;   /* restart after an element with this name */
    const char *stop_name;      /* stop (after) at an element with this name */
    const char *in;             /* the input, to check zero-copy spans */
    size_t in_len;
    int headers, elements, closes, in_place, unsure;
} rec_t;

static void log_attrs(strbuf_t *l, const char **attrs)
{
    for (size_t i = 0; attrs[i]; i += 2)
        strbuf_printf(l, " [%s]=[%s]", attrs[i], attrs[i + 1]);
}

static void r_header(void *ctx, const xscan_elem_t *hdr, const char *dns)
{
    rec_t *r = ctx;
    r->headers++;
    strbuf_printf(&r->log, "header {%s}%s dns=%s", hdr->ns, hdr->name, dns);
    log_attrs(&r->log, hdr->attrs);
    strbuf_printf(&r->log, " len=%zu\n", hdr->len);
}

static void r_element(void *ctx, const xscan_elem_t *el)
{
    rec_t *r = ctx;
    r->elements++;
    r->unsure += el->unsure;
    if (r->in && el->bytes >= r->in && el->bytes + el->len <= r->in + r->in_len)
        r->in_place++;
    strbuf_printf(&r->log, "element {%s}%s", el->ns, el->name);
    log_attrs(&r->log, el->attrs);
    strbuf_puts(&r->log, " bytes=");
    strbuf_append(&r->log, el->bytes, el->len);
    strbuf_putc(&r->log, '\n');
    if (r->restart_name && !strcmp(el->name, r->restart_name))
        xml_scan_restart(r->sc);
    if (r->stop_name && !strcmp(el->name, r->stop_name))
        xml_scan_stop(r->sc, 1);
}

static void r_close(void *ctx, const char *bytes, size_t len)
{
    rec_t *r = ctx;
    r->closes++;
    strbuf_puts(&r->log, "close ");
    strbuf_append(&r->log, bytes, len);
    strbuf_putc(&r->log, '\n');
}

static const xml_scan_cb_t rec_cb = { r_header, r_element, r_close };

static void rec_init(rec_t *r, const xml_limits_t *lim)
{
    memset(r, 0, sizeof *r);
    strbuf_init(&r->log);
    r->sc = xml_scan_new(&rec_cb, r, lim);
}

static void rec_free(rec_t *r)
{
    xml_scan_free(r->sc);
    strbuf_free(&r->log);
}

/* Feeds s in pieces: whole (step 0), split at one offset (cut), or step
 * bytes at a time. Returns the first result that is not XS_OK, or XS_OK. */
static int feed(rec_t *r, const char *s, size_t len, size_t cut, size_t step)
{
    int e;
    if (step) {
        for (size_t i = 0; i < len; i += step)
            if ((e = xml_scan_feed(r->sc, s + i, len - i < step ? len - i : step)))
                return e;
        return 0;
    }
    if (cut && (e = xml_scan_feed(r->sc, s, cut)))
        return e;
    return xml_scan_feed(r->sc, s + cut, len - cut);
}

/* Scans s whole and returns the result; the log goes to *log if not NULL. */
static int scan_once(const char *s, const xml_limits_t *lim, char **log)
{
    rec_t r;
    rec_init(&r, lim);
    int e = feed(&r, s, strlen(s), 0, 0);
    if (log)
        *log = xstrdup(r.log.data ? r.log.data : "");
    rec_free(&r);
    return e;
}

/* The verdict of xml_stream on the same bytes, fed as feed() feeds them. */
static void x_raw(void *ctx, const char *ns, const char *name, const char **attrs,
                  const char *bytes, size_t len)
{
    (void)ctx, (void)ns, (void)name, (void)attrs, (void)bytes, (void)len;
}

static int x_classify(void *ctx, const char *ns, const char *name, const char **attrs)
{
    (void)ctx, (void)ns, (void)name, (void)attrs;
    return XS_RAW;
}

static const xml_stream_cb_t x_cb = { NULL, x_classify, NULL, x_raw, NULL };

static int expat_feed(const char *s, size_t len, size_t cut, size_t step, const xml_limits_t *lim)
{
    xml_stream_t *xs = xml_stream_new(&x_cb, NULL, lim);
    int e = 0;
    if (step) {
        for (size_t i = 0; i < len && !e; i += step)
            e = xml_stream_feed(xs, s + i, len - i < step ? len - i : step);
    } else {
        if (cut)
            e = xml_stream_feed(xs, s, cut);
        if (!e)
            e = xml_stream_feed(xs, s + cut, len - cut);
    }
    xml_stream_free(xs);
    return e;
}

static int expat_verdict(const char *s, const xml_limits_t *lim)
{
    return expat_feed(s, strlen(s), 0, 0, lim);
}

/* Checks that s gets verdict want fed whole, and fed in two pieces split at
 * every byte or one byte at a time the same verdict as xml_stream fed the
 * same way (limits make both depend on where feeds end), with the same
 * events whenever the verdict is want. expat_want is xml_stream's verdict
 * fed whole; it differs from want only where the scanner does not judge,
 * and then the scanner must say want however it is fed. */
static void expect2(const char *s, int want, int expat_want, const xml_limits_t *lim)
{
    char *ref;
    int e = scan_once(s, lim, &ref);
    if (e != want)
        fail_msg("scanning <%s>: got %d, want %d", s, e, want);
    e = expat_verdict(s, lim);
    if (e != expat_want)
        fail_msg("xml_stream on <%s>: got %d, want %d", s, e, expat_want);
    size_t len = strlen(s);
    for (size_t cut = 0; cut <= len; cut++) {
        size_t step = cut == len ? 1 : 0;
        rec_t r;
        rec_init(&r, lim);
        e = feed(&r, s, len, cut, step);
        int x = expat_feed(s, len, cut, step, lim);
        int ok = want == expat_want ? e == x : e == want;
        if (!ok || (e == want && strcmp(ref, r.log.data ? r.log.data : "")))
            fail_msg("<%s> split at %zu: got %d, xml_stream %d\n%s\nvs\n%s", s, step ? 0 : cut, e, x,
                     r.log.data ? r.log.data : "", ref);
        rec_free(&r);
    }
    free(ref);
}

static void expect(const char *s, int want)
{
    expect2(s, want, want, NULL);
}

/* After the standard header. */
static void expect_body(const char *body, int want)
{
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_puts(&sb, HDR);
    strbuf_puts(&sb, body);
    expect(sb.data, want);
    strbuf_free(&sb);
}

static char *body_log(const char *body)
{
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_puts(&sb, HDR);
    strbuf_puts(&sb, body);
    char *log;
    int e = scan_once(sb.data, NULL, &log);
    assert_int_equal(e, XS_OK);
    strbuf_free(&sb);
    return log;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!hay)
        hay = "";
    if (!strstr(hay, needle))
        fail_msg("<%s> not in:\n%s", needle, hay);
}

/* ---- tests ---- */

static void test_header(void **state)
{
    (void)state;
    char *log;
    assert_int_equal(scan_once(HDR, NULL, &log), XS_OK);
    assert_string_equal(log, "header {http://etherx.jabber.org/streams}stream dns=jabber:component:accept"
                             " [to]=[r] [version]=[1.0] len=173\n");
    free(log);
    assert_int_equal(strlen(HDR), 173);
    /* Other prefixes, a BOM, no XML declaration, double quotes. */
    expect("\xef\xbb\xbf<s:stream xmlns:s=\"http://etherx.jabber.org/streams\" a='&lt;'>", XS_OK);
    expect("<stream xmlns='http://etherx.jabber.org/streams'>", XS_OK);
    expect("<stream:stream xmlns:stream='urn:other'>", XS_ERR_BAD_NS);
    expect("<stream:foo xmlns:stream='http://etherx.jabber.org/streams'>", XS_ERR_BAD_NS);
    expect("<stream:stream>", XS_ERR_NOT_WELL_FORMED);   /* unbound prefix */
    expect("<?xml version='1.0' encoding='UTF-8' standalone='no' ?>\n " SHORT, XS_OK);
    expect("<?xml version='1.0' standalone='maybe'?>" HDR, XS_ERR_NOT_WELL_FORMED);
    expect("<?xml encoding='UTF-8'?>" HDR, XS_ERR_NOT_WELL_FORMED);
    expect(" <?xml version='1.0'?>" HDR, XS_ERR_NOT_WELL_FORMED);
    expect("<?XML version='1.0'?>" HDR, XS_ERR_NOT_WELL_FORMED);
    expect("<?pi x?>" HDR, XS_ERR_RESTRICTED);
    /* XMPP is UTF-8 only (RFC 6120 section 11.6): a declaration naming
     * another encoding is unsupported-encoding at its "?>", a malformed one
     * is not-well-formed whatever it names. */
    expect("<?xml version='1.0' encoding='ISO-8859-1'?>" SHORT, XS_ERR_ENCODING);
    expect("<?xml version='1.0' encoding='ISO-8859-1'?>", XS_ERR_ENCODING);
    expect("<?xml version='1.0' encoding='ISO-8859-1'", XS_OK);
    expect("<?xml version=\"1.0\" encoding=\"UTF-16\" standalone=\"yes\"?>" SHORT, XS_ERR_ENCODING);
    expect("\xef\xbb\xbf<?xml version='1.0' encoding='latin1'?>" SHORT, XS_ERR_ENCODING);
    expect("<?xml version='1.0' encoding='US-ASCII' standalone='no' ?>" SHORT, XS_ERR_ENCODING);
    expect("<?xml version='1.0' encoding='UTF-8x'?>" SHORT, XS_ERR_ENCODING);
    expect("<?xml version='1.0' encoding='UTF8'?>" SHORT, XS_ERR_ENCODING);
    expect("<?xml version='1.0' encoding='utf-8'?>" SHORT, XS_OK);
    expect("<?xml version='1.0' encoding='Utf-8' standalone='yes'?>" SHORT, XS_OK);
    expect("<?xml version='1.0' encoding='ISO-8859-1' standalone='maybe'?>" SHORT, XS_ERR_NOT_WELL_FORMED);
    expect("<?xml version='1.0' encoding='ISO-8859-1' x='1'?>" SHORT, XS_ERR_NOT_WELL_FORMED);
    expect("<?xml version='1.0' standalone='yes' encoding='ISO-8859-1'?>" SHORT, XS_ERR_NOT_WELL_FORMED);
    expect("<?xml version='1.0' encoding='8859-1'?>" SHORT, XS_ERR_NOT_WELL_FORMED);
    expect("<?xml version='1.0' encoding=''?>" SHORT, XS_ERR_NOT_WELL_FORMED);
    expect("<?xml version='1.0'encoding='ISO-8859-1'?>" SHORT, XS_ERR_NOT_WELL_FORMED);
    /* Other declarations: standalone alone; a version must be '1.' and
     * digits (expat takes any name characters; both parsers refuse them). */
    expect("<?xml version='1.0' standalone='yes'?>" SHORT, XS_OK);
    expect("<?xml version='1.1'?>" SHORT, XS_OK);
    expect("<?xml version=''?>" SHORT, XS_ERR_NOT_WELL_FORMED);
    expect("<?xml version='abc'?>" SHORT, XS_ERR_NOT_WELL_FORMED);
    expect("<?xml version='1.'?>" SHORT, XS_ERR_NOT_WELL_FORMED);
    expect("<?xml version='2.0'?>" SHORT, XS_ERR_NOT_WELL_FORMED);
    expect("<?xml version='1.0a' encoding='ISO-8859-1'?>" SHORT, XS_ERR_NOT_WELL_FORMED);
    expect("<?xml version='1 0'?>" SHORT, XS_ERR_NOT_WELL_FORMED);
    expect("<?xml version='1.0'?><?xml version='1.0'?>" SHORT, XS_ERR_NOT_WELL_FORMED);
    expect(SHORT "<?xml version='1.0' encoding='ISO-8859-1'?>", XS_ERR_NOT_WELL_FORMED);
    expect("<!-- c -->" HDR, XS_ERR_RESTRICTED);
    expect("</stream:stream>", XS_ERR_NOT_WELL_FORMED);
    /* DOCTYPE and text in the prolog are left to expat. */
    expect2("<!DOCTYPE x>" HDR, XSCAN_UNSURE, XS_ERR_RESTRICTED, NULL);
    expect2("x" HDR, XSCAN_UNSURE, XS_ERR_NOT_WELL_FORMED, NULL);
}

static void test_elements(void **state)
{
    (void)state;
    char *log = body_log("<message from='a@a.test/r' to=\"b@b.test\" type='chat' id='1'>"
                         "<body>hi &amp; &#233;</body></message>\n  "
                         "<w:a h='3'/><x:iq xmlns:x='jabber:component:accept' x:to='y' to='z'/>"
                         "<q xmlns='urn:q' xml:lang='en' xmlns:p='urn:p' p:a='1'><p:r/></q>");
    assert_contains(log, "element {jabber:component:accept}message [from]=[a@a.test/r] [to]=[b@b.test] "
                         "[type]=[chat] [id]=[1] bytes=<message from='a@a.test/r' to=\"b@b.test\" "
                         "type='chat' id='1'><body>hi &amp; &#233;</body></message>\n");
    assert_contains(log, "element {" NS_W "}a [h]=[3] bytes=<w:a h='3'/>\n");
    assert_contains(log, "element {jabber:component:accept}iq [jabber:component:accept|to]=[y] [to]=[z] "
                         "bytes=<x:iq xmlns:x='jabber:component:accept' x:to='y' to='z'/>\n");
    assert_contains(log, "element {urn:q}q [http://www.w3.org/XML/1998/namespace|lang]=[en] [urn:p|a]=[1]");
    free(log);
    /* Decoded values: references, and white space normalized as expat does. */
    log = body_log("<m a='&lt;&gt;&amp;&quot;&apos;&#65;&#x42;&#x1F600;' b='x\r\ny\tz\nw\rv' c='&#10;&#9;'/>");
    assert_contains(log, "[a]=[<>&\"'AB\xf0\x9f\x98\x80] [b]=[x y z w v] [c]=[\n\t]");
    free(log);
    /* An element that fits in one feed is reported in place. */
    rec_t r;
    rec_init(&r, NULL);
    const char *s = HDR "<m><b>x</b></m><n/>";
    r.in = s;
    r.in_len = strlen(s);
    assert_int_equal(feed(&r, s, strlen(s), 0, 0), XS_OK);
    assert_int_equal(r.elements, 2);
    assert_int_equal(r.in_place, 2);
    rec_free(&r);
    /* ... and one that spans feeds is whole all the same. */
    rec_init(&r, NULL);
    assert_int_equal(feed(&r, s, strlen(s), strlen(HDR) + 5, 0), XS_OK);
    assert_contains(r.log.data, "bytes=<m><b>x</b></m>\n");
    rec_free(&r);
}

/* A sample stream split at every byte boundary and fed byte by byte gives
 * the same events as fed whole. */
static void test_split_everywhere(void **state)
{
    (void)state;
    const char *s = HDR "<message to='b@b.test' from='a@a.test' xml:lang='en'><body>caf\xc3\xa9 "
                        "\xf0\x9f\x98\x80 &lt;&#x263A;&#9786;]] ]></body><![CDATA[<x>&]]></message>\r\n"
                        "<w:a h='1'/> <iq xmlns:q='urn:q' q:x='1' type='get'><q:query/></iq>"
                        "</stream:stream>\n";
    expect(s, XS_OK);
    char *log;
    assert_int_equal(scan_once(s, NULL, &log), XS_OK);
    assert_contains(log, "close </stream:stream>\n");
    free(log);
}

static void test_nesting(void **state)
{
    (void)state;
    expect_body("<a><b></b></a>", XS_OK);
    expect_body("<a><b></a></b>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a></a >", XS_OK);
    expect_body("<a></ a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a></a x>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<p:a xmlns:p='u'></q:a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<p:a xmlns:p='u' xmlns:q='u'></q:a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("</stream:stream>", XS_OK);
    expect_body("</stream:streamx>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a:b:c xmlns:a='u'/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<:a/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a:/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a:1 xmlns:a='u'/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<1a/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a / >", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a/ >", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a\n\t/>", XS_OK);
    expect_body("<a.b-c_d/>", XS_OK);
}

static void test_attributes(void **state)
{
    (void)state;
    expect_body("<a b = 'x' c=\"y\"/>", XS_OK);
    expect_body("<a b='x'c='y'/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a b=x/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a b/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a b c='1'/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a b='x\"/>", XS_OK);   /* still inside the value: incomplete */
    expect_body("<a b='<'/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a b='>'/>", XS_OK);
    expect_body("<a b='&'/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a b='& x;'/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a b='1' b='2'/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a xmlns:p='u' xmlns:q='u' p:b='1' q:b='2'/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a xmlns:p='u' xmlns:q='v' p:b='1' q:b='2' b='3'/>", XS_OK);
    expect_body("<a xmlns='u' b='1' xmlns:p='u' p:b='2'/>", XS_OK);
    expect_body("<a xmlns:p='u' xmlns:p='v'/>", XS_ERR_NOT_WELL_FORMED);
    /* In expat's order: the first attribute's bad reference comes before
     * the duplicate, a lexical error anywhere in the tag before both. */
    expect_body("<a b='&foo;' b='x'/>", XS_ERR_RESTRICTED);
    expect_body("<a b='x' b='&foo;'/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a b='&foo;' c='<'/>", XS_ERR_NOT_WELL_FORMED);
}

static void test_references(void **state)
{
    (void)state;
    expect_body("<a>&lt;&gt;&amp;&quot;&apos;</a>", XS_OK);
    expect_body("<a>&#65;&#x41;&#0000000065;&#x10FFFF;&#x85;</a>", XS_OK);
    expect_body("<a>&#0;</a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a>&#xD800;</a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a>&#xFFFE;</a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a>&#x110000;</a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a>&#99999999999999999999;</a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a>&#X41;</a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a>&#x;</a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a>&#;</a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a>&foo;</a>", XS_ERR_RESTRICTED);
    expect_body("<a>&LT;</a>", XS_ERR_RESTRICTED);
    expect_body("<a>&a:b;</a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a>& </a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a>&amp</a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a b='&#0;'/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a b='&bar;'/>", XS_ERR_RESTRICTED);
    expect_body("&amp; <a/>", XS_OK);   /* top-level text is checked and skipped */
    expect_body("&foo; <a/>", XS_ERR_RESTRICTED);
}

static void test_chars(void **state)
{
    (void)state;
    expect_body("<a b='\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80'>\xc2\x80\xef\xb7\x90\xf4\x8f\xbf\xbf</a>", XS_OK);
    expect_body("<a>\x01</a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a>\x7f\t\n\r</a>", XS_OK);
    expect_body("<a>\xc0\x80</a>", XS_ERR_NOT_WELL_FORMED);         /* overlong */
    expect_body("<a>\xe0\x80\x80</a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a>\xed\xa0\x80</a>", XS_ERR_NOT_WELL_FORMED);     /* surrogate */
    expect_body("<a>\xef\xbf\xbe</a>", XS_ERR_NOT_WELL_FORMED);     /* U+FFFE */
    expect_body("<a>\xf4\x90\x80\x80</a>", XS_ERR_NOT_WELL_FORMED); /* > U+10FFFF */
    expect_body("<a>\xf5</a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a>\x80</a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a>\xe2\x82</a>", XS_ERR_NOT_WELL_FORMED);         /* truncated */
    expect_body("<a>\xe2\x82", XS_OK);                              /* not yet known */
    expect_body("<a b='\x02'/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a b='\xff'/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("\x03", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a>]]></a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a>]]]]></a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a>] ]> ]]</a>", XS_OK);
    expect_body("]]>", XS_ERR_NOT_WELL_FORMED);
    /* UTF-16 (which expat would switch to on its own) is an unsupported encoding. */
    rec_t r;
    rec_init(&r, NULL);
    assert_int_equal(xml_scan_feed(r.sc, "<\0s\0", 4), XS_ERR_ENCODING);
    rec_free(&r);
    rec_init(&r, NULL);
    assert_int_equal(xml_scan_feed(r.sc, "<", 1), XS_OK);
    assert_int_equal(xml_scan_feed(r.sc, "\0", 1), XS_ERR_ENCODING);
    rec_free(&r);
    assert_int_equal(scan_once("\xff\xfe<", NULL, NULL), XS_ERR_ENCODING);
}

static void test_cdata(void **state)
{
    (void)state;
    expect_body("<a><![CDATA[<b>&amp;]]]]></a>", XS_OK);
    expect_body("<a><![CDATA[x\x01]]></a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a><![CDATX[x]]></a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a><![CDA", XS_OK);
    expect_body("<![CDATA[top]]><a/>", XS_OK);
    char *log = body_log("<a><![CDATA[</a>]]></a>");
    assert_contains(log, "bytes=<a><![CDATA[</a>]]></a>\n");
    free(log);
}

static void test_namespaces(void **state)
{
    (void)state;
    expect_body("<p:a/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a p:b='1'/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a xmlns:p='u'/><p:b/>", XS_ERR_NOT_WELL_FORMED);   /* scope ended */
    expect_body("<a xmlns:p='u'><p:b/></a>", XS_OK);
    expect_body("<a><b xmlns:p='u'/><p:c/></a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a xmlns:p=''/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a xmlns=''/>", XS_OK);
    expect_body("<a xmlns:xml='http://www.w3.org/XML/1998/namespace'/>", XS_OK);
    expect_body("<a xmlns:xml='u'/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a xmlns:x='http://www.w3.org/XML/1998/namespace'/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a xmlns='http://www.w3.org/XML/1998/namespace'/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a xmlns:x='http://www.w3.org/2000/xmlns/'/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a xmlns:xmlns='u'/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<xmlns:a/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a xml:lang='en'/>", XS_OK);
    expect_body("<xml:a/>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a><xml:b/></a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a xmlns:p='&amp;' p:b='1'/>", XS_OK);
    char *log = body_log("<a xmlns=''/><stream:x/><b xmlns:p='u&lt;'><p:c/></b>");
    assert_contains(log, "element {}a bytes=");
    assert_contains(log, "element {http://etherx.jabber.org/streams}x bytes=");
    free(log);
    log = body_log("<a xmlns:p='u&lt;' p:q='1'/>");
    assert_contains(log, "[u<|q]=[1]");
    free(log);
}

static void test_restricted(void **state)
{
    (void)state;
    expect_body("<a><!-- c --></a>", XS_ERR_RESTRICTED);
    expect_body("<a><!-- a -- b --></a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a><!- c --></a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<!-- top -->", XS_ERR_RESTRICTED);
    expect_body("<a><?pi data?></a>", XS_ERR_RESTRICTED);
    expect_body("<a><?pi?></a>", XS_ERR_RESTRICTED);
    expect_body("<a><?xml version='1.0'?></a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a><?XmL x?></a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a><?a:b x?></a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a><!DOCTYPE x></a>", XS_ERR_NOT_WELL_FORMED);
    expect_body("<a><!ENTITY x 'y'></a>", XS_ERR_NOT_WELL_FORMED);
    /* Comments are skipped where the limits allow them (config files). */
    xml_limits_t lim;
    xml_limits_default(&lim);
    lim.allow_comments = 1;
    expect2(HDR "<a><!-- c --></a>", XS_OK, XS_OK, &lim);
}

static void test_limits(void **state)
{
    (void)state;
    xml_limits_t lim;
    xml_limits_default(&lim);
    lim.max_depth = 3;
    expect2(HDR "<a><b><c/></b></a>", XS_OK, XS_OK, &lim);
    expect2(HDR "<a><b><c><d/></c></b></a>", XS_ERR_POLICY, XS_ERR_POLICY, &lim);
    xml_limits_default(&lim);
    lim.max_attrs = 2;
    expect2(HDR, XS_ERR_POLICY, XS_ERR_POLICY, &lim);   /* the header has five */
    expect2(SHORT "<a b='1' c='2'/>", XS_OK, XS_OK, &lim);
    expect2(SHORT "<a b='1' c='2' d='3'/>", XS_ERR_POLICY, XS_ERR_POLICY, &lim);
    expect2(SHORT "<a b='1' xmlns:p='u' d='3'/>", XS_ERR_POLICY, XS_ERR_POLICY, &lim);
    xml_limits_default(&lim);
    lim.max_text = 5;
    expect2(HDR "<a>12345<b/>12345</a>", XS_OK, XS_OK, &lim);
    expect2(HDR "<a>123456</a>", XS_ERR_POLICY, XS_ERR_POLICY, &lim);
    expect2(HDR "<a>1234&amp;5</a>", XS_ERR_POLICY, XS_ERR_POLICY, &lim);
    expect2(HDR "<a>1\r\n345</a>", XS_OK, XS_OK, &lim);   /* CR LF counts once */
    expect2(HDR "<a><![CDATA[123456]]></a>", XS_ERR_POLICY, XS_ERR_POLICY, &lim);
    expect2(HDR "<a b='12345'/>", XS_OK, XS_OK, &lim);
    expect2(HDR "<a b='12&amp;456'/>", XS_ERR_POLICY, XS_ERR_POLICY, &lim);
    expect2(HDR "<a>123456]]></a>", XS_ERR_NOT_WELL_FORMED, XS_ERR_NOT_WELL_FORMED, &lim);
    expect2(HDR " hello world, this is long <a/>", XS_OK, XS_OK, &lim);   /* top level: no limit */
    xml_limits_default(&lim);
    lim.max_stanza_bytes = 20;
    expect2(HDR "<a>1234567890123</a>", XS_OK, XS_OK, &lim);   /* 20 bytes */
    expect2(HDR "<a>12345678901234</a>", XS_ERR_POLICY, XS_ERR_POLICY, &lim);
    expect2(HDR "<a b='1234567890123456'/>", XS_ERR_POLICY, XS_ERR_POLICY, &lim);
    expect2(HDR "<a b='1234567890123456789", XS_ERR_POLICY, XS_ERR_POLICY, &lim);   /* pending */
    xml_limits_default(&lim);
    lim.max_header_bytes = 100;
    expect2(HDR, XS_ERR_POLICY, XS_ERR_POLICY, &lim);
    expect2("<stream:stream xmlns:stream='http://etherx.jabber.org/streams' a='", XS_OK, XS_OK, &lim);
    expect2("<stream:stream xmlns:stream='http://etherx.jabber.org/streams' a='0123456789012345678901234567890123456789",
            XS_ERR_POLICY, XS_ERR_POLICY, &lim);
}

static void test_close(void **state)
{
    (void)state;
    expect_body("<a/></stream:stream> \r\n\t", XS_OK);
    expect_body("<a/></stream:stream> x", XS_ERR_CLOSED);
    expect_body("</stream:stream><a/>", XS_ERR_CLOSED);
    expect("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>\n", XS_OK);
    expect("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/><a/>", XS_ERR_CLOSED);
    char *log;
    assert_int_equal(scan_once("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>",
                               NULL, &log), XS_OK);
    assert_contains(log, "close \n");
    free(log);
    /* After the close every feed is checked, and an error stays. */
    rec_t r;
    rec_init(&r, NULL);
    assert_int_equal(feed(&r, HDR "</stream:stream>", strlen(HDR) + 16, 0, 0), XS_OK);
    assert_int_equal(xml_scan_feed(r.sc, "  ", 2), XS_OK);
    assert_int_equal(xml_scan_feed(r.sc, "x", 1), XS_ERR_CLOSED);
    assert_int_equal(xml_scan_feed(r.sc, " ", 1), XS_ERR_CLOSED);
    assert_string_equal(xml_scan_error_text(r.sc), "data after </stream:stream>");
    rec_free(&r);
}

static void test_unsure(void **state)
{
    (void)state;
    /* Non-ASCII names: framed and reported, marked unsure. */
    rec_t r;
    rec_init(&r, NULL);
    const char *s = HDR "<caf\xc3\xa9 x\xc3\xa9='1'><\xc3\xa9/></caf\xc3\xa9><b/>";
    assert_int_equal(feed(&r, s, strlen(s), 0, 0), XS_OK);
    assert_int_equal(r.elements, 2);
    assert_int_equal(r.unsure, 1);
    assert_contains(r.log.data, "element {jabber:component:accept}caf\xc3\xa9 [x\xc3\xa9]=[1]");
    rec_free(&r);
    /* An error in such an element is not judged. */
    expect2(HDR "<caf\xc3\xa9 a='1' a='2'/>", XSCAN_UNSURE, XS_ERR_NOT_WELL_FORMED, NULL);
    expect2(HDR "<a>&caf\xc3\xa9;</a>", XSCAN_UNSURE, XS_ERR_RESTRICTED, NULL);
    /* Invalid UTF-8 in a name is an error all the same. */
    expect_body("<a\xff/>", XS_ERR_NOT_WELL_FORMED);
}

static void test_restart(void **state)
{
    (void)state;
    const char *s = HDR "<success/>" HDR "<m/>";
    for (size_t step = 0; step < 3; step++) {
        rec_t r;
        rec_init(&r, NULL);
        r.restart_name = "success";
        assert_int_equal(feed(&r, s, strlen(s), 0, step), XS_OK);
        assert_int_equal(r.headers, 2);
        assert_int_equal(r.elements, 2);
        rec_free(&r);
    }
    /* The stream after a restart is checked as the first was, at every
     * split (xml_scan_stream against xml_stream: test_stream_restart). */
    const char *latin = HDR "<success/><?xml version='1.0' encoding='ISO-8859-1'?>" SHORT;
    const char *utf8 = HDR "<success/><?xml version='1.0' encoding='UTF-8'?>" SHORT "<m/>";
    for (int i = 0; i < 2; i++) {
        const char *t = i ? utf8 : latin;
        int want = i ? XS_OK : XS_ERR_ENCODING;
        for (size_t cut = 0; cut <= strlen(t); cut++) {
            rec_t r;
            rec_init(&r, NULL);
            r.restart_name = "success";
            assert_int_equal(feed(&r, t, strlen(t), cut, 0), want);
            assert_int_equal(r.headers, 1 + i);
            rec_free(&r);
        }
    }
    /* Outside a callback: at once, dropping what is buffered. */
    rec_t r;
    rec_init(&r, NULL);
    assert_int_equal(xml_scan_feed(r.sc, HDR "<m>partial", strlen(HDR) + 10), XS_OK);
    xml_scan_restart(r.sc);
    assert_int_equal(xml_scan_feed(r.sc, HDR "<n/>", strlen(HDR) + 4), XS_OK);
    assert_int_equal(r.headers, 2);
    assert_int_equal(r.elements, 1);
    /* ... and clears an error. */
    assert_int_equal(xml_scan_feed(r.sc, "<<", 2), XS_ERR_NOT_WELL_FORMED);
    xml_scan_restart(r.sc);
    assert_int_equal(xml_scan_feed(r.sc, HDR, strlen(HDR)), XS_OK);
    rec_free(&r);
}

static void test_stop_pending(void **state)
{
    (void)state;
    rec_t r;
    rec_init(&r, NULL);
    r.stop_name = "stop";
    const char *s = HDR "<a/><stop/> <rest/>";
    assert_int_equal(xml_scan_feed(r.sc, s, strlen(s)), XSCAN_STOPPED);
    const char *p;
    size_t n;
    xml_scan_pending(r.sc, &p, &n);
    assert_int_equal(n, 8);
    assert_memory_equal(p, " <rest/>", 8);
    rec_free(&r);
    /* After an error: from the start of the element the error is in. */
    rec_init(&r, NULL);
    assert_int_equal(xml_scan_feed(r.sc, HDR "<a/><b>x", strlen(HDR) + 8), XS_OK);
    assert_int_equal(xml_scan_feed(r.sc, "\x01</b>", 5), XS_ERR_NOT_WELL_FORMED);
    xml_scan_pending(r.sc, &p, &n);
    assert_int_equal(n, 9);
    assert_memory_equal(p, "<b>x\x01</b>", 9);
    rec_free(&r);
}

/* ---- xml_scan_stream ---- */

typedef struct wrec {
    strbuf_t log;
    xml_scan_stream_t *ss;
    xml_stream_t *xs;
    const char *in;
    size_t in_len;
    int raws_in_place;
} wrec_t;

static void w_open(void *ctx, const xml_node_t *hdr, const char *dns)
{
    wrec_t *w = ctx;
    strbuf_printf(&w->log, "open dns=%s ", dns);
    xml_serialize(hdr, NULL, &w->log);
    strbuf_putc(&w->log, '\n');
}

static int w_classify(void *ctx, const char *ns, const char *name, const char **attrs)
{
    (void)ctx, (void)name, (void)attrs;
    return !strcmp(ns, NS_W) || !strcmp(ns, XML_NS_STREAM) || !strcmp(ns, "urn:sasl") ? XS_TREE : XS_RAW;
}

static void w_stanza(void *ctx, xml_node_t *st)
{
    wrec_t *w = ctx;
    strbuf_puts(&w->log, "tree ");
    xml_serialize(st, NULL, &w->log);
    strbuf_putc(&w->log, '\n');
    int restart = !strcmp(st->name, "success");
    xml_free(st);
    if (restart && w->ss)
        xml_scan_stream_restart(w->ss);
    if (restart && w->xs)
        xml_stream_restart(w->xs);
}

static void w_raw(void *ctx, const char *ns, const char *name, const char **attrs,
                  const char *bytes, size_t len)
{
    wrec_t *w = ctx;
    if (w->in && bytes >= w->in && bytes + len <= w->in + w->in_len)
        w->raws_in_place++;
    strbuf_printf(&w->log, "raw {%s}%s", ns, name);
    log_attrs(&w->log, attrs);
    strbuf_puts(&w->log, " ");
    strbuf_append(&w->log, bytes, len);
    strbuf_putc(&w->log, '\n');
}

static void w_close(void *ctx)
{
    wrec_t *w = ctx;
    strbuf_puts(&w->log, "close\n");
}

static const xml_stream_cb_t w_cb = { w_open, w_classify, w_stanza, w_raw, w_close };

/* Runs s through xml_scan_stream (split at cut) and through xml_stream;
 * both logs and verdicts must be equal. Returns the verdict. */
static int w_compare(const char *s, size_t len, size_t cut)
{
    wrec_t a = {0}, b = {0};
    strbuf_init(&a.log);
    strbuf_init(&b.log);
    a.ss = xml_scan_stream_new(&w_cb, &a, NULL);
    b.xs = xml_stream_new(&w_cb, &b, NULL);
    int ea = xml_scan_stream_feed(a.ss, s, cut);
    if (!ea)
        ea = xml_scan_stream_feed(a.ss, s + cut, len - cut);
    int eb = xml_stream_feed(b.xs, s, cut);
    if (!eb)
        eb = xml_stream_feed(b.xs, s + cut, len - cut);
    if (ea != eb || strcmp(a.log.data ? a.log.data : "", b.log.data ? b.log.data : ""))
        fail_msg("cut %zu: %d vs xml_stream %d\n%s\nvs\n%s", cut, ea, eb, a.log.data, b.log.data);
    xml_stream_free(b.xs);
    xml_scan_stream_free(a.ss);
    strbuf_free(&b.log);
    strbuf_free(&a.log);
    return ea;
}

static void test_stream_handoff(void **state)
{
    (void)state;
    const char *s = HDR "<w:session epoch='abcdefgh' next='1'/><message to='b@b.test'><body>x</body></message>"
                        "<stream:error><x xmlns='urn:e'/></stream:error>";
    wrec_t w = {0};
    strbuf_init(&w.log);
    w.ss = xml_scan_stream_new(&w_cb, &w, NULL);
    w.in = s;
    w.in_len = strlen(s);
    assert_int_equal(xml_scan_stream_feed(w.ss, s, strlen(s)), XS_OK);
    assert_int_equal(xml_scan_stream_passthrough(w.ss), 0);
    assert_contains(w.log.data, "open dns=jabber:component:accept <stream xmlns='http://etherx.jabber.org/streams' "
                                "to='r' version='1.0'/>\n");
    assert_contains(w.log.data, "tree <session xmlns='" NS_W "' epoch='abcdefgh' next='1'/>\n");
    assert_contains(w.log.data, "raw {jabber:component:accept}message [to]=[b@b.test] "
                                "<message to='b@b.test'><body>x</body></message>\n");
    assert_contains(w.log.data, "tree <error xmlns='http://etherx.jabber.org/streams'><x xmlns='urn:e'/></error>\n");
    assert_int_equal(w.raws_in_place, 1);   /* straight from the scanner */
    xml_scan_stream_free(w.ss);
    strbuf_free(&w.log);
}

/* The router's negotiation: SASL in the first stream, restart, routing. */
static void test_stream_restart(void **state)
{
    (void)state;
    const char *s = HDR "<auth xmlns='urn:sasl'>x</auth><success xmlns='urn:sasl'/>"
                    HDR "<message to='a'/></stream:stream> ";
    size_t len = strlen(s);
    for (size_t cut = 0; cut <= len; cut++)
        assert_int_equal(w_compare(s, len, cut), XS_OK);
    /* The new stream's declaration is checked as the first one's was. */
    const char *enc[] = { HDR "<success xmlns='urn:sasl'/><?xml version='1.0' encoding='ISO-8859-1'?>" SHORT,
                          HDR "<success xmlns='urn:sasl'/><?xml version='1.0' encoding='utf-8'?>" SHORT "<m/>" };
    for (int i = 0; i < 2; i++)
        for (size_t cut = 0; cut <= strlen(enc[i]); cut++)
            assert_int_equal(w_compare(enc[i], strlen(enc[i]), cut), i ? XS_OK : XS_ERR_ENCODING);
    for (size_t cut = 0; cut <= len; cut += 7) {
        wrec_t w = {0};
        strbuf_init(&w.log);
        w.ss = xml_scan_stream_new(&w_cb, &w, NULL);
        int e = xml_scan_stream_feed(w.ss, s, cut);
        if (!e)
            e = xml_scan_stream_feed(w.ss, s + cut, len - cut);
        assert_int_equal(e, XS_OK);
        const char *l = w.log.data;
        const char *o1 = strstr(l, "open "), *t = strstr(l, "tree <success");
        const char *o2 = t ? strstr(t, "open ") : NULL, *m = o2 ? strstr(o2, "raw {jabber:component:accept}message") : NULL;
        assert_non_null(o1);
        assert_non_null(m);
        assert_non_null(strstr(m, "close\n"));
        xml_scan_stream_free(w.ss);
        strbuf_free(&w.log);
    }
}

/* Errors are expat's: the stream goes to xml_stream from the bad element. */
static void test_stream_errors(void **state)
{
    (void)state;
    struct { const char *body; int want; } cases[] = {
        { "<message><!-- x --></message>", XS_ERR_RESTRICTED },
        { "<message>&nbsp;</message>", XS_ERR_RESTRICTED },
        { "<message>\x01</message>", XS_ERR_NOT_WELL_FORMED },
        { "<message a='1' a='2'/>", XS_ERR_NOT_WELL_FORMED },
        { "<p:message/>", XS_ERR_NOT_WELL_FORMED },
        { "<m/></stream:stream>x", XS_ERR_CLOSED },
        { "<caf\xc3\xa9/><m/>", XS_OK },
        { "<caf\xe2\x82\xac/>", XS_ERR_NOT_WELL_FORMED },   /* U+20AC is not a name character */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        strbuf_t sb;
        strbuf_init(&sb);
        strbuf_puts(&sb, HDR);
        strbuf_puts(&sb, cases[i].body);
        for (size_t cut = 0; cut <= sb.len; cut++) {
            int e = w_compare(sb.data, sb.len, cut);
            if (e != cases[i].want)
                fail_msg("case %zu cut %zu: got %d want %d", i, cut, e, cases[i].want);
        }
        assert_int_equal(expat_verdict(sb.data, NULL), cases[i].want);
        strbuf_free(&sb);
    }
    /* A stream that expat would read as UTF-16 is refused outright. */
    xml_scan_stream_t *ss = xml_scan_stream_new(&w_cb, NULL, NULL);
    assert_int_equal(xml_scan_stream_feed(ss, "<\0s\0t\0", 6), XS_ERR_ENCODING);
    assert_string_equal(xml_scan_stream_error_text(ss), "the stream is not UTF-8");
    xml_scan_stream_free(ss);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_elements),
        cmocka_unit_test(test_split_everywhere),
        cmocka_unit_test(test_nesting),
        cmocka_unit_test(test_attributes),
        cmocka_unit_test(test_references),
        cmocka_unit_test(test_chars),
        cmocka_unit_test(test_cdata),
        cmocka_unit_test(test_namespaces),
        cmocka_unit_test(test_restricted),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_close),
        cmocka_unit_test(test_unsure),
        cmocka_unit_test(test_restart),
        cmocka_unit_test(test_stop_pending),
        cmocka_unit_test(test_stream_handoff),
        cmocka_unit_test(test_stream_restart),
        cmocka_unit_test(test_stream_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
