/* Unit tests for the archive ids of mod_mam (sm/mam_id.c): new ids are
 * tagged with SipHash-2-4 under a key derived from the secret (the paper's
 * test vector, and the tag recomputed here for many inputs); ids tagged
 * before with HMAC-SHA256(key, bare "\n" first 16 digits), first 6 bytes in
 * hex, still verify (known answers, and the one-shot HMAC for many inputs);
 * ids only grow with a clock that stands still or goes back; a changed
 * digit, another user or another key (the secret changed at a reload) makes
 * an id not genuine. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "mam_id.h"
#include "siphash.h"

/* The tag as the sm computed it before mam_id.c (one-shot HMAC). */
static void tag_once(const char *key, const char *bare, const char *id, char *out)
{
    char data[3200];
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    int n = snprintf(data, sizeof data, "%s\n%.*s", bare, MAM_ID_RANDOM, id);
    HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)data, (size_t)n, mac, &len);
    for (int i = 0; i < MAM_ID_TAG / 2; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

static void test_known_answers(void **state)
{
    (void)state;
    /* Python: hmac.new(key, bare + "\n" + digits, sha256).hexdigest()[:12] */
    assert_true(mam_id_genuine("secret", "juliet@example.com", "0123456789abcdef519d01080615"));
    assert_true(mam_id_genuine("", "romeo@montague.lit", "00061f0e2d3c4a5b7084ee5104e7"));
    assert_false(mam_id_genuine("secret", "juliet@example.com", "0123456789abcdef519d01080616"));
    assert_false(mam_id_genuine("secret", "juliet@example.com", "1123456789abcdef519d01080615"));
    assert_false(mam_id_genuine("secret", "romeo@montague.lit", "0123456789abcdef519d01080615"));
    assert_false(mam_id_genuine("other", "juliet@example.com", "0123456789abcdef519d01080615"));
    assert_false(mam_id_genuine("secret", "juliet@example.com", "0123456789abcdef519d0108061"));
    assert_false(mam_id_genuine("secret", "juliet@example.com", NULL));
    mam_id_free();
}

/* SipHash-2-4 of the paper's appendix: key 00..0f, message 00..0e. */
static void test_siphash_vector(void **state)
{
    (void)state;
    unsigned char key[16], msg[64];
    for (int i = 0; i < 16; i++)
        key[i] = (unsigned char)i;
    for (int i = 0; i < 64; i++)
        msg[i] = (unsigned char)i;
    assert_true(siphash24(key, msg, 15) == 0xa129ca6149be45e5ull);
    /* In pieces (as the tag is computed), the same for every split. */
    for (size_t cut = 0; cut <= 15; cut++) {
        const void *parts[2] = {msg, msg + cut};
        size_t lens[2] = {cut, 15 - cut};
        assert_true(siphash24_parts(key, parts, lens, 2) == 0xa129ca6149be45e5ull);
    }
    assert_true(siphash24(key, msg, 0) == 0x726fdb47dd0e0e31ull);
    assert_true(siphash24(key, msg, 63) == 0x958a324ceb064572ull);
}

/* The tag as mam_id.c computes it, independently: SipHash-2-4 under the
 * first 16 bytes of SHA-256(key), top 48 bits in hex. */
static void tag_sip(const char *key, const char *bare, const char *id, char *out)
{
    unsigned char d[EVP_MAX_MD_SIZE], k[16];
    unsigned int dlen = 0;
    EVP_Digest(key, strlen(key), d, &dlen, EVP_sha256(), NULL);
    memcpy(k, d, 16);
    char data[3200];
    int n = snprintf(data, sizeof data, "%s\n%.*s", bare, MAM_ID_RANDOM, id);
    uint64_t h = siphash24(k, data, (size_t)n);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
    memcpy(out, hex, MAM_ID_TAG);
}

static void test_tags_new_and_old(void **state)
{
    (void)state;
    const char *keys[] = {"s3cret", "", "another secret, longer than one SHA-256 block of sixty-four bytes!"};
    char bare[2100];
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 200; i++) {
            /* JIDs of every length up to the longest bare JID (2047 bytes). */
            size_t len = i == 199 ? 2047 : (size_t)(1 + i * 7);
            memset(bare, 'a' + i % 26, len);
            bare[len / 2] = '@';
            bare[len] = '\0';
            char id[MAM_ID_LEN + 1], want[MAM_ID_TAG + 1];
            mam_id_new(keys[k], bare, 1700000000000000LL + i, id);
            tag_sip(keys[k], bare, id, want);
            assert_memory_equal(id + MAM_ID_RANDOM, want, MAM_ID_TAG);
            assert_true(mam_id_genuine(keys[k], bare, id));
            /* The same digits with the HMAC tag: an id of before. */
            tag_once(keys[k], bare, id, id + MAM_ID_RANDOM);
            assert_true(mam_id_genuine(keys[k], bare, id));
            id[MAM_ID_LEN - 1] = id[MAM_ID_LEN - 1] == '0' ? '1' : '0';
            assert_false(mam_id_genuine(keys[k], bare, id));
        }
    mam_id_free();
}

static void test_ids_grow(void **state)
{
    (void)state;
    char prev[MAM_ID_LEN + 1] = "", id[MAM_ID_LEN + 1];
    int64_t clock[] = {1800000000000000LL, 1800000000000000LL, 1799999999000000LL, 1800000000000005LL};
    int differ = 0;
    char first_random[4] = "";
    for (int i = 0; i < 400; i++) {
        mam_id_new("k", "u@x", clock[i % 4], id);
        assert_int_equal(strlen(id), MAM_ID_LEN);
        assert_int_equal(strspn(id, "0123456789abcdef"), MAM_ID_LEN);
        assert_true(strcmp(id, prev) > 0);
        if (i == 0)
            memcpy(first_random, id + 13, 3);
        else if (memcmp(first_random, id + 13, 3) != 0)
            differ = 1;
        memcpy(prev, id, sizeof id);
    }
    assert_true(differ);                 /* the 3 random digits are not fixed */
    /* The key changes (a reload): the new key's ids verify, the old key's do not
     * any more with the new key. */
    mam_id_new("k2", "u@x", 0, id);
    assert_true(mam_id_genuine("k2", "u@x", id));
    assert_false(mam_id_genuine("k", "u@x", id));
    assert_true(mam_id_genuine("k", "u@x", prev));
    mam_id_free();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_siphash_vector),
        cmocka_unit_test(test_tags_new_and_old),
        cmocka_unit_test(test_ids_grow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
