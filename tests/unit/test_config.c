/* test_config: the table-driven loader — defaults, each value type and its
 * suffixes, bounds, error messages naming file:line, duplicates, sections,
 * malformed XML, missing file, the dump of changed values and the markdown
 * reference. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include "config.h"

typedef struct comp_seen {
    int n;
    unsigned lines[8];
    char names[8][32];
} comp_seen_t;

typedef struct conf {
    char *id;
    char *path;
    long workers;
    long depth;
    int tls_required;
    int verbose;
    size_t stanza_bytes;
    double idle;
    double ping;
    char *secret;
    comp_seen_t comps;
} conf_t;

/* Section parser: records each occurrence; fails when the name is missing, to
 * show its message reaches the caller unchanged. */
static int comp_parse(void *target, const xml_node_t *el, const char *file, cfg_error_t *err)
{
    conf_t *c = target;
    const char *name = xml_attr_get(el, "name");
    if (!name)
        return cfg_errorf(err, file, el->line, "component: missing name attribute");
    if (c->comps.n < 8) {
        c->comps.lines[c->comps.n] = el->line;
        snprintf(c->comps.names[c->comps.n], sizeof c->comps.names[0], "%s", name);
        c->comps.n++;
    }
    return 0;
}

#define OFF(f) offsetof(conf_t, f)
static const cfg_option_t table[] = {
    { "id", CFG_STRING, "router", 0, 0, 0, OFF(id), NULL, "Instance name" },
    { "path", CFG_STRING, NULL, 0, 0, 1, OFF(path), NULL, "Optional path | with a pipe" },
    { "workers", CFG_INT, "4", 1, 64, 0, OFF(workers), NULL, "Worker count" },
    { "limits.depth", CFG_INT, "64", 0, 0, 1, OFF(depth), NULL, "Unbounded integer" },
    { "limits.stanza-bytes", CFG_SIZE, "256K", 1024, 16 * 1024 * 1024, 1, OFF(stanza_bytes),
      NULL, "Largest stanza" },
    { "tls.required", CFG_BOOL, "true", 0, 0, 0, OFF(tls_required), NULL, "Require TLS" },
    { "verbose", CFG_BOOL, NULL, 0, 0, 1, OFF(verbose), NULL, "Chatty" },
    { "timeouts.idle", CFG_SECONDS, "5m", 1, 86400, 1, OFF(idle), NULL, "Idle timeout" },
    { "timeouts.keepalive.ping", CFG_SECONDS, "500ms", 0, 0, 1, OFF(ping), NULL, "Ping" },
    { "component-secret", CFG_STRING, NULL, 0, 0, 0, OFF(secret), NULL, "Shared secret" },
    { "component", CFG_SECTION, NULL, 0, 0, 0, 0, comp_parse, "A component entry" },
    { NULL, 0, NULL, 0, 0, 0, 0, NULL, NULL },
};

static int load(conf_t *c, const char *doc, cfg_error_t *err)
{
    memset(c, 0, sizeof *c);
    return cfg_load_buffer(table, c, "t.xml", doc, strlen(doc), err);
}

/* Loads doc expecting failure with exactly msg; checks nothing leaks. */
static void expect_error(const char *doc, const char *msg)
{
    conf_t c;
    cfg_error_t err;
    assert_int_equal(load(&c, doc, &err), -1);
    assert_string_equal(err.msg, msg);
    assert_null(c.id);   /* strings freed on failure */
    cfg_free(table, &c);  /* and cfg_free stays safe */
}

static void test_defaults(void **state)
{
    (void)state;
    conf_t c;
    cfg_error_t err;
    assert_int_equal(load(&c, "<router/>", &err), 0);
    assert_string_equal(c.id, "router");
    assert_null(c.path);
    assert_null(c.secret);
    assert_int_equal(c.workers, 4);
    assert_int_equal(c.depth, 64);
    assert_int_equal(c.stanza_bytes, 256 * 1024);
    assert_int_equal(c.tls_required, 1);
    assert_int_equal(c.verbose, 0);
    assert_true(c.idle == 300.0);
    assert_true(c.ping == 0.5);
    assert_int_equal(c.comps.n, 0);
    cfg_free(table, &c);
    assert_null(c.id);
    cfg_free(table, &c);
}

static void test_each_type(void **state)
{
    (void)state;
    conf_t c;
    cfg_error_t err;
    const char *doc =
        "<?xml version='1.0'?>\n"
        "<anything>\n"
        "  <id>\n    c2s.host1  \n  </id>\n"
        "  <path>/var/lib/weft</path>\n"
        "  <workers>16</workers>\n"
        "  <limits><depth>-3</depth>\n"
        "    <stanza-bytes>1M</stanza-bytes></limits>\n"
        "  <tls><required>no</required></tls>\n"
        "  <verbose>YES</verbose>\n"
        "  <timeouts><idle>1.5h</idle><keepalive><ping>250ms</ping></keepalive></timeouts>\n"
        "  <component-secret>s3cr3t</component-secret>\n"
        "</anything>\n";
    int rc = load(&c, doc, &err);
    if (rc)
        fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_string_equal(c.id, "c2s.host1");
    assert_string_equal(c.path, "/var/lib/weft");
    assert_int_equal(c.workers, 16);
    assert_int_equal(c.depth, -3);
    assert_int_equal(c.stanza_bytes, 1024 * 1024);
    assert_int_equal(c.tls_required, 0);
    assert_int_equal(c.verbose, 1);
    assert_true(c.idle == 5400.0);
    assert_true(c.ping == 0.25);
    assert_string_equal(c.secret, "s3cr3t");
    cfg_free(table, &c);

    /* An empty string option is the empty string, not an error. */
    assert_int_equal(load(&c, "<r><path/><id>  </id></r>", &err), 0);
    assert_string_equal(c.path, "");
    assert_string_equal(c.id, "");
    cfg_free(table, &c);
}

static void test_parsers(void **state)
{
    (void)state;
    size_t z;
    assert_int_equal(cfg_parse_size("0", &z), 0);
    assert_int_equal(z, 0);
    assert_int_equal(cfg_parse_size("123", &z), 0);
    assert_int_equal(z, 123);
    assert_int_equal(cfg_parse_size("4K", &z), 0);
    assert_int_equal(z, 4096);
    assert_int_equal(cfg_parse_size("4k", &z), 0);
    assert_int_equal(z, 4096);
    assert_int_equal(cfg_parse_size("3M", &z), 0);
    assert_int_equal(z, 3 * 1024 * 1024);
    assert_int_equal(cfg_parse_size("2G", &z), 0);
    assert_int_equal(z, (size_t)2 * 1024 * 1024 * 1024);
    const char *bad_sizes[] = { "", "-1", " 1", "1 K", "1KB", "1T", "K", "0x10", "1.5K",
                                "99999999999999999999", "18014398509481984G" };
    for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++)
        assert_int_equal(cfg_parse_size(bad_sizes[i], &z), -1);

    double d;
    assert_int_equal(cfg_parse_seconds("30", &d), 0);
    assert_true(d == 30);
    assert_int_equal(cfg_parse_seconds("30s", &d), 0);
    assert_true(d == 30);
    assert_int_equal(cfg_parse_seconds("1500ms", &d), 0);
    assert_true(d == 1.5);
    assert_int_equal(cfg_parse_seconds("2m", &d), 0);
    assert_true(d == 120);
    assert_int_equal(cfg_parse_seconds("2h", &d), 0);
    assert_true(d == 7200);
    assert_int_equal(cfg_parse_seconds("0.5", &d), 0);
    assert_true(d == 0.5);
    assert_int_equal(cfg_parse_seconds(".5s", &d), 0);
    assert_true(d == 0.5);
    const char *bad_secs[] = { "", "-1", "inf", "nan", "1e3", "0x10", "1..2", "5 s", "5d",
                               "5mss", ".", "s" };
    for (size_t i = 0; i < sizeof bad_secs / sizeof bad_secs[0]; i++)
        assert_int_equal(cfg_parse_seconds(bad_secs[i], &d), -1);

    int b;
    const char *yes[] = { "true", "yes", "on", "1", "TRUE", "Yes" };
    const char *no[] = { "false", "no", "off", "0", "False" };
    for (size_t i = 0; i < 6; i++) {
        b = 0;
        assert_int_equal(cfg_parse_bool(yes[i], &b), 0);
        assert_int_equal(b, 1);
    }
    for (size_t i = 0; i < 5; i++) {
        b = 1;
        assert_int_equal(cfg_parse_bool(no[i], &b), 0);
        assert_int_equal(b, 0);
    }
    assert_int_equal(cfg_parse_bool("2", &b), -1);
    assert_int_equal(cfg_parse_bool("", &b), -1);
    assert_int_equal(cfg_parse_bool("yess", &b), -1);
}

static void test_bad_values(void **state)
{
    (void)state;
    expect_error("<r>\n<limits>\n<stanza-bytes>12</stanza-bytes></limits></r>",
                 "t.xml:3: limits.stanza-bytes: 12 is below the minimum 1024");
    expect_error("<r>\n<limits><stanza-bytes>17M</stanza-bytes></limits></r>",
                 "t.xml:2: limits.stanza-bytes: 17M is above the maximum 16777216");
    expect_error("<r><workers>0</workers></r>", "t.xml:1: workers: 0 is below the minimum 1");
    expect_error("<r><workers>65</workers></r>", "t.xml:1: workers: 65 is above the maximum 64");
    expect_error("<r><timeouts><idle>500ms</idle></timeouts></r>",
                 "t.xml:1: timeouts.idle: 500ms is below the minimum 1");
    expect_error("<r><timeouts><idle>25h</idle></timeouts></r>",
                 "t.xml:1: timeouts.idle: 25h is above the maximum 86400");
    expect_error("<r>\n\n<workers>four</workers></r>",
                 "t.xml:3: workers: invalid value 'four', expected an integer");
    expect_error("<r><workers>99999999999999999999999</workers></r>",
                 "t.xml:1: workers: invalid value '99999999999999999999999', expected an integer");
    expect_error("<r><workers></workers></r>",
                 "t.xml:1: workers: empty value, expected an integer");
    expect_error("<r><tls><required>maybe</required></tls></r>",
                 "t.xml:1: tls.required: invalid value 'maybe', expected true/false, yes/no, "
                 "on/off or 1/0");
    expect_error("<r><limits><stanza-bytes>1T</stanza-bytes></limits></r>",
                 "t.xml:1: limits.stanza-bytes: invalid value '1T', expected a size in bytes "
                 "with optional K, M or G suffix");
    expect_error("<r><timeouts><idle>soon</idle></timeouts></r>",
                 "t.xml:1: timeouts.idle: invalid value 'soon', expected a duration with "
                 "optional ms, s, m or h suffix");
    /* Bounds are inclusive. */
    conf_t c;
    cfg_error_t err;
    assert_int_equal(load(&c, "<r><workers>64</workers><limits><stanza-bytes>1K</stanza-bytes>"
                              "</limits></r>", &err), 0);
    assert_int_equal(c.stanza_bytes, 1024);
    cfg_free(table, &c);
}

static void test_structure_errors(void **state)
{
    (void)state;
    expect_error("<router>\n  <limits>\n    <foo>1</foo>\n  </limits>\n</router>",
                 "t.xml:3: unknown option 'limits.foo'");
    expect_error("<router>\n<bogus/>\n</router>", "t.xml:2: unknown option 'bogus'");
    /* A value option's name is not a container, nor the reverse. */
    expect_error("<r>\n<workers><n>1</n></workers></r>",
                 "t.xml:2: workers: takes a value, not a child element <n>");
    expect_error("<r><limits>12</limits></r>", "t.xml:1: unexpected text inside <limits>");
    expect_error("<r>\n<timeouts><keepalive><pong>1</pong></keepalive></timeouts></r>",
                 "t.xml:2: unknown option 'timeouts.keepalive.pong'");
    expect_error("<r>stray</r>", "t.xml:1: unexpected text inside <r>");
    expect_error("<r><workers unit='x'>1</workers></r>",
                 "t.xml:1: workers: unexpected attribute 'unit'");
    /* Prefix of an option name that is not a whole element name. */
    expect_error("<r><lim/></r>", "t.xml:1: unknown option 'lim'");
}

static void test_duplicate(void **state)
{
    (void)state;
    expect_error("<r>\n<workers>2</workers>\n\n<workers>3</workers>\n</r>",
                 "t.xml:4: workers: given twice (first at line 2); it may appear only once");
    /* A container may repeat; the options inside it still may not. */
    conf_t c;
    cfg_error_t err;
    assert_int_equal(load(&c, "<r><limits><depth>1</depth></limits>\n"
                              "<limits><stanza-bytes>2K</stanza-bytes></limits></r>", &err), 0);
    assert_int_equal(c.depth, 1);
    assert_int_equal(c.stanza_bytes, 2048);
    cfg_free(table, &c);
    expect_error("<r><limits><depth>1</depth></limits>\n<limits><depth>2</depth></limits></r>",
                 "t.xml:2: limits.depth: given twice (first at line 1); it may appear only once");
    expect_error("<r><id>a</id><id>b</id></r>",
                 "t.xml:1: id: given twice (first at line 1); it may appear only once");
}

static void test_sections(void **state)
{
    (void)state;
    conf_t c;
    cfg_error_t err;
    const char *doc = "<router>\n"
                      "  <component name='c2s'>\n"
                      "    <secret>x</secret>\n"
                      "  </component>\n"
                      "  <workers>2</workers>\n"
                      "  <component name='sm'/>\n"
                      "  <component name='s2s'/>\n"
                      "</router>\n";
    assert_int_equal(load(&c, doc, &err), 0);
    assert_int_equal(c.comps.n, 3);
    assert_int_equal(c.comps.lines[0], 2);
    assert_int_equal(c.comps.lines[1], 6);
    assert_int_equal(c.comps.lines[2], 7);
    assert_string_equal(c.comps.names[0], "c2s");
    assert_string_equal(c.comps.names[1], "sm");
    assert_string_equal(c.comps.names[2], "s2s");
    assert_int_equal(c.workers, 2);
    cfg_free(table, &c);

    expect_error("<router>\n<component name='a'/>\n<component/>\n</router>",
                 "t.xml:3: component: missing name attribute");
}

static void test_bad_xml(void **state)
{
    (void)state;
    conf_t c;
    cfg_error_t err;
    assert_int_equal(load(&c, "<router>\n<id>x</id>\n<workers>1</wrk>\n</router>", &err), -1);
    assert_true(strncmp(err.msg, "t.xml:3: ", 9) == 0);
    assert_null(c.id);
    assert_int_equal(load(&c, "<router>\n<id>x</id>\n", &err), -1);
    assert_true(strncmp(err.msg, "t.xml:", 6) == 0);
    assert_int_equal(load(&c, "", &err), -1);
    assert_true(strncmp(err.msg, "t.xml:", 6) == 0);
    /* DOCTYPE is refused (the real parser's restricted-XML rule). */
    assert_int_equal(load(&c, "<!DOCTYPE r [<!ENTITY e 'x'>]>\n<r><id>&e;</id></r>", &err), -1);
    assert_true(strncmp(err.msg, "t.xml:", 6) == 0);
}

static void test_files(void **state)
{
    (void)state;
    conf_t c;
    cfg_error_t err;
    memset(&c, 0, sizeof c);
    assert_int_equal(cfg_load(table, &c, "/nonexistent/weft/router.xml", &err), -1);
    assert_string_equal(err.msg, "/nonexistent/weft/router.xml: cannot open: No such file or directory");
    assert_null(c.id);

    char path[] = "/tmp/weft_test_config.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *doc = "<router>\n  <workers>8</workers>\n  <bogus/>\n</router>\n";
    assert_int_equal(write(fd, doc, strlen(doc)), (ssize_t)strlen(doc));
    close(fd);
    memset(&c, 0, sizeof c);
    assert_int_equal(cfg_load(table, &c, path, &err), -1);
    char want[256];
    snprintf(want, sizeof want, "%s:3: unknown option 'bogus'", path);
    assert_string_equal(err.msg, want);

    fd = open(path, O_WRONLY | O_TRUNC);
    doc = "<router>\n  <workers>8</workers>\n</router>\n";
    assert_int_equal(write(fd, doc, strlen(doc)), (ssize_t)strlen(doc));
    close(fd);
    memset(&c, 0, sizeof c);
    assert_int_equal(cfg_load(table, &c, path, &err), 0);
    assert_int_equal(c.workers, 8);
    assert_string_equal(c.id, "router");
    cfg_free(table, &c);
    unlink(path);
}

static void test_bad_default(void **state)
{
    (void)state;
    typedef struct bad_conf { long n; char *s; } bad_conf_t;
    bad_conf_t t;
    static const cfg_option_t bad[] = {
        { "s", CFG_STRING, "x", 0, 0, 0, offsetof(bad_conf_t, s), NULL, "s" },
        { "n", CFG_INT, "100", 1, 10, 0, offsetof(bad_conf_t, n), NULL, "n" },
        { NULL, 0, NULL, 0, 0, 0, 0, NULL, NULL },
    };
    cfg_error_t err;
    memset(&t, 0, sizeof t);
    assert_int_equal(cfg_load_buffer(bad, &t, "t.xml", "<r/>", 4, &err), -1);
    assert_string_equal(err.msg, "(built-in default): n: 100 is above the maximum 10");
    assert_null(t.s);
}

static void test_dump_changed(void **state)
{
    (void)state;
    conf_t c;
    cfg_error_t err;
    strbuf_t sb;
    strbuf_init(&sb);
    assert_int_equal(load(&c, "<r/>", &err), 0);
    cfg_dump_changed(table, &c, &sb);
    assert_string_equal(sb.data ? sb.data : "", "");
    cfg_free(table, &c);

    /* Values equal to their defaults (written differently) are not changes. */
    assert_int_equal(load(&c, "<r><workers>4</workers><limits><stanza-bytes>262144</stanza-bytes>"
                              "</limits><tls><required>yes</required></tls>"
                              "<timeouts><idle>300s</idle></timeouts><id>router</id></r>", &err), 0);
    strbuf_reset(&sb);
    cfg_dump_changed(table, &c, &sb);
    assert_string_equal(sb.data ? sb.data : "", "");
    cfg_free(table, &c);

    assert_int_equal(load(&c, "<r><id>c2s.a</id><path>/srv</path><workers>9</workers>"
                              "<limits><stanza-bytes>3000</stanza-bytes><depth>7</depth></limits>"
                              "<tls><required>off</required></tls><verbose>1</verbose>"
                              "<timeouts><idle>2h</idle><keepalive><ping>1.5</ping></keepalive>"
                              "</timeouts><component-secret>hunter2</component-secret></r>",
                          &err), 0);
    strbuf_reset(&sb);
    cfg_dump_changed(table, &c, &sb);
    assert_string_equal(sb.data, "id = c2s.a\n"
                                 "path = /srv\n"
                                 "workers = 9\n"
                                 "limits.depth = 7\n"
                                 "limits.stanza-bytes = 3000\n"
                                 "tls.required = false\n"
                                 "verbose = true\n"
                                 "timeouts.idle = 2h\n"
                                 "timeouts.keepalive.ping = 1.5s\n"
                                 "component-secret = (hidden)\n");
    assert_null(strstr(sb.data, "hunter2"));
    cfg_free(table, &c);

    /* Units chosen so the dump reads back as the same value. */
    assert_int_equal(load(&c, "<r><limits><stanza-bytes>2M</stanza-bytes></limits>"
                              "<timeouts><idle>90</idle><keepalive><ping>250ms</ping></keepalive>"
                              "</timeouts></r>", &err), 0);
    strbuf_reset(&sb);
    cfg_dump_changed(table, &c, &sb);
    assert_string_equal(sb.data, "limits.stanza-bytes = 2M\n"
                                 "timeouts.idle = 90s\n"
                                 "timeouts.keepalive.ping = 250ms\n");
    cfg_free(table, &c);
    strbuf_free(&sb);
}

static void test_doc_markdown(void **state)
{
    (void)state;
    strbuf_t sb;
    strbuf_init(&sb);
    cfg_doc_markdown(table, &sb);
    for (const cfg_option_t *o = table; o->name; o++) {
        char want[128];
        snprintf(want, sizeof want, "| `%s` | ", o->name);
        assert_non_null(strstr(sb.data, want));
        if (!strchr(o->help, '|'))   /* escaped; checked below */
            assert_non_null(strstr(sb.data, o->help));
    }
    assert_true(strncmp(sb.data, "| Option | Type | Default | Bounds | Reload | Description |\n"
                                 "|---|---|---|---|---|---|\n", 80) == 0);
    assert_non_null(strstr(sb.data,
                           "| `limits.stanza-bytes` | size | `256K` | 1K – 16M | yes | Largest stanza |"));
    assert_non_null(strstr(sb.data, "| `workers` | integer | `4` | 1 – 64 | no | Worker count |"));
    assert_non_null(strstr(sb.data, "| `path` | string | (none) |  | yes | Optional path \\| with a pipe |"));
    assert_non_null(strstr(sb.data, "| `component` | section | (repeatable) |  | no |"));
    /* One header, one rule, one row per option. */
    size_t lines = 0, n = 0;
    for (const char *p = sb.data; *p; p++)
        lines += *p == '\n';
    while (table[n].name)
        n++;
    assert_int_equal(lines, n + 2);
    strbuf_free(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_each_type),
        cmocka_unit_test(test_parsers),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_structure_errors),
        cmocka_unit_test(test_duplicate),
        cmocka_unit_test(test_sections),
        cmocka_unit_test(test_bad_xml),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_bad_default),
        cmocka_unit_test(test_dump_changed),
        cmocka_unit_test(test_doc_markdown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
