/* Unit tests for dns_wire: the query we send, and what the parser makes of
 * responses, honest and hostile (compression, loops, bounds, rcodes, TC). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "dns_wire.h"

#define QNAME "_xmpp-server._tcp.example.com"

/* A response to (id 0xBEEF, QNAME, SRV) with two answers; offsets on the left. */
static const uint8_t two_srv[] = {
    /*  0 */ 0xBE, 0xEF, 0x81, 0x80, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00,
    /* 12 */ 12, '_', 'x', 'm', 'p', 'p', '-', 's', 'e', 'r', 'v', 'e', 'r',
    /* 25 */ 4, '_', 't', 'c', 'p',
    /* 30 */ 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e',
    /* 38 */ 3, 'c', 'o', 'm', 0,
    /* 43 */ 0x00, 0x21, 0x00, 0x01,
    /* 47: owner -> 12, SRV IN, ttl 3600, rdlen 14 */
    0xC0, 0x0C, 0x00, 0x21, 0x00, 0x01, 0x00, 0x00, 0x0E, 0x10, 0x00, 0x0E,
    /* 59: prio 10, weight 60, port 5269, "xmpp1" + -> 30 (example.com) */
    0x00, 0x0A, 0x00, 0x3C, 0x14, 0x95, 5, 'x', 'm', 'p', 'p', '1', 0xC0, 0x1E,
    /* 73: owner -> 12, SRV IN, ttl 3600, rdlen 14 */
    0xC0, 0x0C, 0x00, 0x21, 0x00, 0x01, 0x00, 0x00, 0x0E, 0x10, 0x00, 0x0E,
    /* 85: prio 20, weight 0, port 5270, "xmpp2" + -> 65 ("xmpp1" -> 30): two jumps */
    0x00, 0x14, 0x00, 0x00, 0x14, 0x96, 5, 'x', 'm', 'p', 'p', '2', 0xC0, 0x41,
    /* 99 */
};

/* Same question, one SRV record with the root as target ("no service"). */
static const uint8_t dot_srv[] = {
    0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
    12, '_', 'x', 'm', 'p', 'p', '-', 's', 'e', 'r', 'v', 'e', 'r', 4, '_', 't', 'c', 'p',
    7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0x00, 0x21, 0x00, 0x01,
    0xC0, 0x0C, 0x00, 0x21, 0x00, 0x01, 0x00, 0x00, 0x0E, 0x10, 0x00, 0x07,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};

static dns_srv_t recs[8];

static dns_status_t parse(const uint8_t *p, size_t len, uint16_t id, size_t *n)
{
    return dns_parse_srv(p, len, id, QNAME, recs, 8, n);
}

/* A copy of two_srv to patch. */
static uint8_t *copy_two(void)
{
    uint8_t *p = malloc(sizeof two_srv);
    memcpy(p, two_srv, sizeof two_srv);
    return p;
}

/* A small builder for the cases the arrays above cannot express. */
typedef struct pk {
    uint8_t b[2048];
    size_t n;
} pk_t;

static void pk16(pk_t *p, uint16_t v)
{
    p->b[p->n++] = (uint8_t)(v >> 8);
    p->b[p->n++] = (uint8_t)v;
}

static void pkname(pk_t *p, const char *name)   /* uncompressed; "" = root */
{
    while (*name) {
        const char *dot = strchr(name, '.');
        size_t l = dot ? (size_t)(dot - name) : strlen(name);
        p->b[p->n++] = (uint8_t)l;
        memcpy(p->b + p->n, name, l);
        p->n += l;
        name += l + (dot ? 1 : 0);
    }
    p->b[p->n++] = 0;
}

static void pkhead(pk_t *p, uint16_t id, uint16_t ancount)
{
    p->n = 0;
    pk16(p, id);
    pk16(p, 0x8180);
    pk16(p, 1);
    pk16(p, ancount);
    pk16(p, 0);
    pk16(p, 0);
    pkname(p, QNAME);
    pk16(p, DNS_TYPE_SRV);
    pk16(p, DNS_CLASS_IN);
}

static void pkrr(pk_t *p, const char *owner, uint16_t type)   /* rdlen follows */
{
    pkname(p, owner);
    pk16(p, type);
    pk16(p, DNS_CLASS_IN);
    pk16(p, 0);
    pk16(p, 300);
}

static void pksrv(pk_t *p, const char *owner, uint16_t prio, uint16_t weight, uint16_t port, const char *target)
{
    pkrr(p, owner, DNS_TYPE_SRV);
    pk16(p, (uint16_t)(6 + strlen(target) + 2 - (*target ? 0 : 1)));
    pk16(p, prio);
    pk16(p, weight);
    pk16(p, port);
    pkname(p, target);
}

static void pkcname(pk_t *p, const char *owner, const char *alias)
{
    pkrr(p, owner, DNS_TYPE_CNAME);
    pk16(p, (uint16_t)(strlen(alias) + 2));
    pkname(p, alias);
}

/* ---- building ---- */

static void test_query_build(void **state)
{
    (void)state;
    static const uint8_t want[] = {
        0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        12, '_', 'x', 'm', 'p', 'p', '-', 's', 'e', 'r', 'v', 'e', 'r', 4, '_', 't', 'c', 'p',
        7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0x00, 0x21, 0x00, 0x01,
    };
    uint8_t buf[DNS_QUERY_MAX];
    int n = dns_query_build(buf, sizeof buf, 0x1234, QNAME, DNS_TYPE_SRV);
    assert_int_equal(n, sizeof want);
    assert_memory_equal(buf, want, sizeof want);
    /* the trailing dot changes nothing */
    n = dns_query_build(buf, sizeof buf, 0x1234, QNAME ".", DNS_TYPE_SRV);
    assert_int_equal(n, sizeof want);
    assert_memory_equal(buf, want, sizeof want);
    /* another type, another id */
    n = dns_query_build(buf, sizeof buf, 0xFFFE, "a.b", DNS_TYPE_AAAA);
    static const uint8_t want2[] = {0xFF, 0xFE, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0,
                                    1, 'a', 1, 'b', 0, 0x00, 0x1C, 0x00, 0x01};
    assert_int_equal(n, sizeof want2);
    assert_memory_equal(buf, want2, sizeof want2);
}

static void test_query_build_rejects(void **state)
{
    (void)state;
    uint8_t buf[DNS_QUERY_MAX];
    char name[300];
    assert_int_equal(dns_query_build(buf, sizeof buf, 1, "", DNS_TYPE_SRV), -1);
    assert_int_equal(dns_query_build(buf, sizeof buf, 1, ".", DNS_TYPE_SRV), -1);
    assert_int_equal(dns_query_build(buf, sizeof buf, 1, "a..b", DNS_TYPE_SRV), -1);
    assert_int_equal(dns_query_build(buf, sizeof buf, 1, ".a", DNS_TYPE_SRV), -1);
    assert_int_equal(dns_query_build(buf, 20, 1, QNAME, DNS_TYPE_SRV), -1);     /* buffer too small */
    memset(name, 'a', 64);
    name[64] = '\0';
    assert_int_equal(dns_query_build(buf, sizeof buf, 1, name, DNS_TYPE_SRV), -1);   /* 64-octet label */
    name[63] = '\0';
    assert_int_equal(dns_query_build(buf, sizeof buf, 1, name, DNS_TYPE_SRV), 12 + 65 + 4);
    /* 253 characters (255 octets on the wire) is the longest name */
    memset(name, 'a', 253);
    for (int i = 63; i < 253; i += 64)
        name[i] = '.';
    name[253] = '\0';
    assert_int_equal(dns_query_build(buf, sizeof buf, 1, name, DNS_TYPE_SRV), 12 + 255 + 4);
    name[253] = 'a';
    name[254] = '\0';
    assert_int_equal(dns_query_build(buf, sizeof buf, 1, name, DNS_TYPE_SRV), -1);
}

/* ---- honest responses ---- */

static void test_parse_two_records(void **state)
{
    (void)state;
    size_t n = 99;
    assert_int_equal(sizeof two_srv, 99);
    assert_int_equal(parse(two_srv, sizeof two_srv, 0xBEEF, &n), DNS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(recs[0].priority, 10);
    assert_int_equal(recs[0].weight, 60);
    assert_int_equal(recs[0].port, 5269);
    assert_string_equal(recs[0].target, "xmpp1.example.com");
    assert_int_equal(recs[1].priority, 20);
    assert_int_equal(recs[1].weight, 0);
    assert_int_equal(recs[1].port, 5270);
    assert_string_equal(recs[1].target, "xmpp2.xmpp1.example.com");
    /* the name we asked may carry the trailing dot */
    assert_int_equal(dns_parse_srv(two_srv, sizeof two_srv, 0xBEEF, QNAME ".", recs, 8, &n), DNS_OK);
    assert_int_equal(n, 2);
}

static void test_parse_keeps_at_most_max(void **state)
{
    (void)state;
    size_t n;
    assert_int_equal(dns_parse_srv(two_srv, sizeof two_srv, 0xBEEF, QNAME, recs, 1, &n), DNS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(recs[0].port, 5269);
}

static void test_parse_dot_target(void **state)
{
    (void)state;
    size_t n;
    assert_int_equal(parse(dot_srv, sizeof dot_srv, 0x1234, &n), DNS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(recs[0].target, ".");
}

static void test_parse_rcodes(void **state)
{
    (void)state;
    uint8_t *p = copy_two();
    size_t n = 7;
    p[3] = 0x83;                           /* NXDOMAIN */
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_NXDOMAIN);
    assert_int_equal(n, 0);
    p[3] = 0x82;                           /* SERVFAIL */
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_SERVFAIL);
    p[3] = 0x85;                           /* REFUSED counts as a server failure */
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_SERVFAIL);
    p[3] = 0x80;                           /* NOERROR without answers: NODATA */
    p[7] = 0;
    assert_int_equal(parse(p, 47, 0xBEEF, &n), DNS_NODATA);
    assert_int_equal(n, 0);
    /* NXDOMAIN needs no answer section */
    p[3] = 0x83;
    assert_int_equal(parse(p, 47, 0xBEEF, &n), DNS_NXDOMAIN);
    free(p);
}

static void test_parse_truncated_flag(void **state)
{
    (void)state;
    uint8_t *p = copy_two();
    size_t n = 7;
    p[2] |= 0x02;
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_TRUNCATED);
    assert_int_equal(n, 0);
    free(p);
}

static void test_parse_not_ours(void **state)
{
    (void)state;
    uint8_t *p = copy_two();
    size_t n;
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEE, &n), DNS_MISMATCH);          /* wrong id */
    assert_int_equal(dns_parse_srv(p, sizeof two_srv, 0xBEEF, "_xmpps-server._tcp.example.com", recs, 8, &n),
                     DNS_MISMATCH);                                                  /* other question */
    p[44] = DNS_TYPE_A;                                                              /* other qtype */
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_MISMATCH);
    p[44] = DNS_TYPE_SRV;
    p[2] &= 0x7F;                                                                    /* a query, not a response */
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_MISMATCH);
    p[2] = 0x81 | 0x08;                                                              /* opcode 1 */
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_MISMATCH);
    p[2] = 0x81;
    p[5] = 0;                                                                        /* no question */
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_MISMATCH);
    p[5] = 2;
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_MISMATCH);
    p[5] = 1;
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_OK);                  /* restored */
    free(p);
}

static void test_parse_case_insensitive(void **state)
{
    (void)state;
    uint8_t *p = copy_two();
    size_t n;
    for (size_t i = 13; i < 42; i++)        /* question name in upper case */
        if (p[i] >= 'a' && p[i] <= 'z')
            p[i] = (uint8_t)(p[i] - 32);
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_OK);
    assert_int_equal(n, 2);
    assert_string_equal(recs[0].target, "xmpp1.example.com");   /* targets come out lowercase */
    free(p);
}

static void test_parse_cname_chain(void **state)
{
    (void)state;
    pk_t p;
    size_t n;
    pkhead(&p, 7, 3);
    pkcname(&p, QNAME, "alias.example.net");
    pksrv(&p, "other.example.net", 1, 1, 1111, "wrong.example.net");   /* not for our name */
    pksrv(&p, "alias.example.net", 5, 10, 5269, "xmpp.example.net");
    assert_int_equal(parse(p.b, p.n, 7, &n), DNS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(recs[0].port, 5269);
    assert_string_equal(recs[0].target, "xmpp.example.net");

    /* SRV records for another name only: no data */
    pkhead(&p, 7, 1);
    pksrv(&p, "other.example.net", 1, 1, 1111, "wrong.example.net");
    assert_int_equal(parse(p.b, p.n, 7, &n), DNS_NODATA);

    /* a CNAME loop ends, matching nothing */
    pkhead(&p, 7, 3);
    pkcname(&p, QNAME, "a.example.net");
    pkcname(&p, "a.example.net", QNAME);
    pksrv(&p, "b.example.net", 1, 1, 1, "x.example.net");
    assert_int_equal(parse(p.b, p.n, 7, &n), DNS_NODATA);
}

static void test_parse_odd_target_skipped(void **state)
{
    (void)state;
    pk_t p;
    size_t n;
    pkhead(&p, 9, 2);
    pksrv(&p, QNAME, 0, 0, 5269, "bad host.example");   /* a space inside a label */
    pksrv(&p, QNAME, 0, 0, 5270, "good.example");
    assert_int_equal(parse(p.b, p.n, 9, &n), DNS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(recs[0].target, "good.example");

    pkhead(&p, 9, 1);
    pksrv(&p, QNAME, 0, 0, 5269, "x\ny.example");
    assert_int_equal(parse(p.b, p.n, 9, &n), DNS_NODATA);
}

/* ---- hostile responses ---- */

/* One SRV answer whose owner is a pointer to a chain of `chain` more
 * pointers at the end of the packet, the last one to the root. */
static void pointer_chain(pk_t *p, int chain)
{
    pkhead(p, 5, 1);
    size_t at = p->n + 2 + 10 + 7;
    p->b[p->n++] = (uint8_t)(0xC0 | (at >> 8));
    p->b[p->n++] = (uint8_t)at;
    pk16(p, DNS_TYPE_SRV);
    pk16(p, DNS_CLASS_IN);
    pk16(p, 0);
    pk16(p, 0);
    pk16(p, 7);
    pk16(p, 0);
    pk16(p, 0);
    pk16(p, 1);
    p->b[p->n++] = 0;
    for (int i = 0; i < chain; i++) {
        size_t next = p->n + 2;
        p->b[p->n++] = (uint8_t)(0xC0 | (next >> 8));
        p->b[p->n++] = (uint8_t)next;
    }
    p->b[p->n++] = 0;
}

static void test_parse_every_prefix_is_malformed(void **state)
{
    (void)state;
    size_t n;
    for (size_t len = 0; len < sizeof two_srv; len++) {
        dns_status_t st = parse(two_srv, len, 0xBEEF, &n);
        if (st != DNS_MALFORMED)
            fail_msg("prefix of %zu bytes gave %s", len, dns_status_name(st));
        assert_int_equal(n, 0);
    }
}

static void test_parse_pointer_loops(void **state)
{
    (void)state;
    size_t n;
    uint8_t *p = copy_two();
    p[47] = 0xC0;                /* the first answer's owner points at itself */
    p[48] = 47;
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_MALFORMED);
    free(p);

    p = copy_two();
    p[71] = 0xC0;                /* "xmpp1" -> "xmpp2" -> "xmpp1" -> ...: a cycle through labels */
    p[72] = 91;
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_MALFORMED);
    free(p);

    p = copy_two();
    p[12] = 0xC0;                /* the question name points at itself */
    p[13] = 12;
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_MALFORMED);
    free(p);

    /* owners reached through chains of pointers: up to DNS_MAX_JUMPS is fine */
    pk_t q;
    pointer_chain(&q, DNS_MAX_JUMPS - 1);
    assert_int_equal(parse(q.b, q.n, 5, &n), DNS_NODATA);   /* the owner is the root: not ours */
    pointer_chain(&q, DNS_MAX_JUMPS);
    assert_int_equal(parse(q.b, q.n, 5, &n), DNS_MALFORMED);
}

static void test_parse_out_of_bounds(void **state)
{
    (void)state;
    size_t n;
    uint8_t *p = copy_two();
    p[97] = 0xC0;                /* second target -> offset 200, past the end */
    p[98] = 200;
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_MALFORMED);
    assert_int_equal(n, 0);      /* the good first record does not count (fuzz_dns_wire) */
    p[97] = 0xFF;                /* -> 0x3FFF */
    p[98] = 0xFF;
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_MALFORMED);
    assert_int_equal(n, 0);
    free(p);

    p = copy_two();
    p[58] = 0xFF;                /* first rdlength runs past the end */
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_MALFORMED);
    p[58] = 5;                   /* too short for an SRV record */
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_MALFORMED);
    p[58] = 15;                  /* longer than its target: the name does not fill it */
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_MALFORMED);
    p[58] = 13;                  /* shorter than its target */
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_MALFORMED);
    free(p);

    p = copy_two();
    p[7] = 3;                    /* a third answer announced, not present */
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_MALFORMED);
    free(p);

    p = copy_two();
    p[65] = 60;                  /* a label longer than the packet left */
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_MALFORMED);
    p[65] = 0x45;                /* reserved label type 01 */
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_MALFORMED);
    p[65] = 0x85;                /* reserved label type 10 */
    assert_int_equal(parse(p, sizeof two_srv, 0xBEEF, &n), DNS_MALFORMED);
    free(p);
}

static void test_parse_name_too_long(void **state)
{
    (void)state;
    pk_t p;
    size_t n;
    char longname[400];
    /* four 63-octet labels and one more: 4 * 64 + 2 + 1 = 259 octets */
    memset(longname, 'a', sizeof longname);
    for (int i = 63; i < 256; i += 64)
        longname[i] = '.';
    longname[256] = 'b';
    longname[257] = '\0';
    pkhead(&p, 3, 1);
    pksrv(&p, QNAME, 0, 0, 5269, longname);
    assert_int_equal(parse(p.b, p.n, 3, &n), DNS_MALFORMED);

    /* the same length reached through compression: the target's two labels
     * point at `labels` more 63-octet labels after the answer */
    for (int labels = 1; labels <= 2; labels++) {
        pkhead(&p, 3, 1);
        pkrr(&p, QNAME, DNS_TYPE_SRV);
        pk16(&p, 6 + 64 + 64 + 2);
        pk16(&p, 0);
        pk16(&p, 0);
        pk16(&p, 1);
        for (int i = 0; i < 2; i++) {
            p.b[p.n++] = 63;
            memset(p.b + p.n, 'z', 63);
            p.n += 63;
        }
        size_t at = p.n + 2;
        p.b[p.n++] = (uint8_t)(0xC0 | (at >> 8));
        p.b[p.n++] = (uint8_t)at;
        for (int i = 0; i < labels; i++) {
            p.b[p.n++] = 63;
            memset(p.b + p.n, 'y', 63);
            p.n += 63;
        }
        p.b[p.n++] = 0;
        /* 3 labels: 193 octets, fine; 4 labels: 257 octets, too long */
        assert_int_equal(parse(p.b, p.n, 3, &n), labels == 1 ? DNS_OK : DNS_MALFORMED);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_build),
        cmocka_unit_test(test_query_build_rejects),
        cmocka_unit_test(test_parse_two_records),
        cmocka_unit_test(test_parse_keeps_at_most_max),
        cmocka_unit_test(test_parse_dot_target),
        cmocka_unit_test(test_parse_rcodes),
        cmocka_unit_test(test_parse_truncated_flag),
        cmocka_unit_test(test_parse_not_ours),
        cmocka_unit_test(test_parse_case_insensitive),
        cmocka_unit_test(test_parse_cname_chain),
        cmocka_unit_test(test_parse_odd_target_skipped),
        cmocka_unit_test(test_parse_every_prefix_is_malformed),
        cmocka_unit_test(test_parse_pointer_loops),
        cmocka_unit_test(test_parse_out_of_bounds),
        cmocka_unit_test(test_parse_name_too_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
