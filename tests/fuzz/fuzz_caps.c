/* libFuzzer target for common/caps_hash.c: the XEP-0115 verification string
 * and the XEP-0128 data-forms reading it does, on whatever a client answers
 * to the sm's disco#info (sm/caps.c) — and on what the sm answers c2s.
 *
 * The input is parsed as one XML document with the stream limits (the
 * project's parser, as a stanza from the network is). A disco#info <query/>
 * is hashed as it is; any other root (a bare <x xmlns='jabber:x:data'/>
 * form, an identity, ...) is hashed inside a query made for it, so the
 * form paths are reached without the fuzzer having to find the query first.
 * Checked: no crash or leak under ASan/UBSan; the hash is 28 base64
 * characters or NULL exactly when caps_hash_input says ill-formed; and the
 * order of the query's children does not change the outcome (reversed, the
 * same string S, or ill-formed again). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "caps_hash.h"
#include "xml_stream.h"

/* A copy of q with its children in the opposite order. */
static xml_node_t *reversed(const xml_node_t *q)
{
    xml_node_t *r = xml_copy(q);
    xml_node_t *kids = NULL;
    while (r->first_child) {
        xml_node_t *c = r->first_child;
        xml_detach(c);
        c->next = kids;        /* a private stack, relinked by xml_append */
        kids = c;
    }
    while (kids) {
        xml_node_t *c = kids;
        kids = c->next;
        c->next = NULL;
        xml_append(r, c);
    }
    return r;
}

static void check(const xml_node_t *q)
{
    strbuf_t s;
    strbuf_init(&s);
    int rc = caps_hash_input(q, &s);
    char *ver = caps_hash_ver(q);
    if ((rc == 0) != (ver != NULL))
        abort();
    if (ver && strlen(ver) != 28)
        abort();
    free(ver);

    xml_node_t *r = reversed(q);
    strbuf_t s2;
    strbuf_init(&s2);
    int rc2 = caps_hash_input(r, &s2);
    if (rc != rc2)
        abort();
    if (!rc && (s.len != s2.len || (s.len && memcmp(s.data, s2.data, s.len))))
        abort();
    strbuf_free(&s2);
    strbuf_free(&s);
    xml_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xml_limits_t lim;
    xml_limits_default(&lim);
    char err[64];
    xml_node_t *doc = xml_parse_document((const char *)data, size, &lim, err, sizeof err, NULL);
    if (!doc)
        return 0;
    if (!strcmp(doc->ns, CAPS_NS_DISCO_INFO) && !strcmp(doc->name, "query")) {
        check(doc);
        xml_free(doc);
    } else {
        xml_node_t *q = xml_elem_new(CAPS_NS_DISCO_INFO, "query");
        xml_append(q, doc);
        check(q);
        xml_free(q);
    }
    return 0;
}
