/* test_stanza_check: the RFC 6120 / 6121 syntax rules of common/stanza_check.c
 * (iq type, id and payload count; presence types; message types pass) and
 * which stanzas may be answered with an error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "stanza_check.h"
#include "xml_stream.h"

static xml_node_t *parse(const char *s)
{
    char err[256];
    unsigned line;
    xml_node_t *n = xml_parse_document(s, strlen(s), NULL, err, sizeof err, &line);
    if (!n)
        fail_msg("parse %s: %s", s, err);
    return n;
}

/* want: NULL for a good stanza, else the condition. */
static void expect(const char *s, const char *want, int error_allowed)
{
    xml_node_t *n = parse(s);
    const char *got = stanza_check(n);
    if (want ? !got || strcmp(got, want) : got != NULL)
        fail_msg("stanza_check(%s) = %s, want %s", s, got ? got : "NULL", want ? want : "NULL");
    if (stanza_error_allowed(n) != error_allowed)
        fail_msg("stanza_error_allowed(%s) = %d, want %d", s, !error_allowed, error_allowed);
    xml_free(n);
}

static void test_iq(void **state)
{
    (void)state;
    expect("<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>", NULL, 1);
    expect("<iq type='set' id='1'> <q xmlns='urn:q'/> </iq>", NULL, 1);          /* text is not a child */
    expect("<iq type='result' id='1'/>", NULL, 0);
    expect("<iq type='result' id='1'><a xmlns='urn:a'/><b xmlns='urn:b'/></iq>", NULL, 0);
    expect("<iq type='error' id='1'/>", NULL, 0);
    expect("<iq type='fetch' id='1'><ping xmlns='urn:xmpp:ping'/></iq>", "bad-request", 1);
    expect("<iq id='1'><ping xmlns='urn:xmpp:ping'/></iq>", "bad-request", 1);
    expect("<iq type='GET' id='1'><ping xmlns='urn:xmpp:ping'/></iq>", "bad-request", 1);
    expect("<iq type='get' id='1'/>", "bad-request", 1);
    expect("<iq type='get' id='1'>text only</iq>", "bad-request", 1);
    expect("<iq type='set' id='1'><a xmlns='urn:a'/><b xmlns='urn:b'/></iq>", "bad-request", 1);
    expect("<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>", "bad-request", 1);
}

static void test_presence_and_message(void **state)
{
    (void)state;
    const char *ok[] = {"unavailable", "subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe"};
    char buf[128];
    expect("<presence/>", NULL, 1);
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        snprintf(buf, sizeof buf, "<presence type='%s'/>", ok[i]);
        expect(buf, NULL, 1);
    }
    expect("<presence type='error'/>", NULL, 0);
    expect("<presence type='available'/>", "bad-request", 1);
    expect("<presence type=''/>", "bad-request", 1);
    expect("<message/>", NULL, 1);
    expect("<message type='chat'/>", NULL, 1);
    expect("<message type='whisper'/>", NULL, 1);                                 /* RFC 6121 5.2.2: normal */
    expect("<message type='error'/>", NULL, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iq),
        cmocka_unit_test(test_presence_and_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
