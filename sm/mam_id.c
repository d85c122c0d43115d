/* mam_id: archive ids, 16 hex digits (the time in µs, 13 digits, then 3
 * random) and 12 hex digits of a tag: the first 48 bits of
 * SipHash-2-4(k, bare JID "\n" those 16), k the first 16 bytes of
 * SHA-256(key). Ids made before this tag (tagged with HMAC-SHA256(key,
 * the same text), first 6 bytes in hex) still verify: mam_id_genuine
 * accepts either tag.
 *
 * Time first: a user's new records land at the end of the storage's key
 * index, not on a random page of it (fewer pages written per message). The
 * tag makes ids unforgeable: it tells a message this server already archived
 * (one c2s hands back as never acknowledged: docs/session-protocol.md,
 * type='unacked') from one carrying an id someone forged.
 *
 * Every archived message needs one id per archive it enters (two for a chat
 * between two local users), so the cost per id matters (docs/performance.md,
 * "What archiving costs the chat benchmark"). HMAC-SHA256 through OpenSSL's
 * EVP, even with a context keyed once, was about 1 µs an id on the
 * benchmark machine (4 % of the archiving sm's CPU); SipHash, a PRF made
 * for MACs of short inputs, takes a few dozen nanoseconds. Random digits
 * come from a pool of bytes drawn 1 KiB at a time.
 *
 * Owns: the SipHash key and the HMAC context (for old ids), each with the
 * secret it was made from (the secret may change at a reload), the pool and
 * the last time handed out. Not thread-safe, like the sm. */
#include "mam_id.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "log.h"
#include "siphash.h"
#include "strbuf.h"

/* The fallback's buffer: a bare JID is at most 2047 bytes (RFC 7622: 1023
 * for the local part, "@", 1023 for the domain), then "\n" and 16 digits. */
#define MAM_ID_DATA_MAX 3200

static EVP_MAC *id_mac;
static EVP_MAC_CTX *id_ctx;
static char *id_key;                /* the key id_ctx was made with */
static unsigned char id_pool[1024];
static size_t id_pool_left;
static int64_t id_last;
static unsigned char sip_key[16];
static char *sip_secret;            /* the secret sip_key was derived from */

/* The context keyed with key, made when there is none or the key changed;
 * NULL when OpenSSL cannot make it (logged; the caller falls back). */
static EVP_MAC_CTX *id_context(const char *key)
{
    if (id_ctx && !strcmp(id_key, key))
        return id_ctx;
    mam_id_free();
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    id_mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    id_ctx = id_mac ? EVP_MAC_CTX_new(id_mac) : NULL;
    if (!id_ctx || !EVP_MAC_init(id_ctx, (const unsigned char *)key, strlen(key), params)) {
        log_error("sm: event=mam-id-mac error=\"cannot make an HMAC-SHA256 context\"");
        mam_id_free();
        return NULL;
    }
    id_key = xstrdup(key);
    return id_ctx;
}

/* HMAC-SHA256(key, bare "\n" random) into mac with the kept context; 0 or
 * -1. A NULL key starts the context again from its key (OpenSSL's HMAC keeps
 * the padded key's digest states), without a lookup or an allocation. */
static int id_mac_kept(const char *key, const char *bare, const char *random, unsigned char *mac,
                       size_t *len)
{
    EVP_MAC_CTX *c = id_context(key);
    return c && EVP_MAC_init(c, NULL, 0, NULL) &&
                   EVP_MAC_update(c, (const unsigned char *)bare, strlen(bare)) &&
                   EVP_MAC_update(c, (const unsigned char *)"\n", 1) &&
                   EVP_MAC_update(c, (const unsigned char *)random, MAM_ID_RANDOM) &&
                   EVP_MAC_final(c, mac, len, EVP_MAX_MD_SIZE)
               ? 0
               : -1;
}

/* The same MAC in one call: the fallback when the kept context fails. */
static int id_mac_once(const char *key, const char *bare, const char *random, unsigned char *mac,
                       size_t *len)
{
    char data[MAM_ID_DATA_MAX];
    int n = snprintf(data, sizeof data, "%s\n%.*s", bare, MAM_ID_RANDOM, random);
    if (n < 0 || (size_t)n >= sizeof data)
        return -1;
    return EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, strlen(key), (const unsigned char *)data,
                     (size_t)n, mac, EVP_MAX_MD_SIZE, len)
               ? 0
               : -1;
}

static const char hex_digits[] = "0123456789abcdef";

/* The HMAC tag (ids made before the SipHash tag) of bare's id that starts
 * with random (MAM_ID_RANDOM digits) into out (MAM_ID_TAG hex digits, no
 * NUL); -1 (zeros) when no MAC could be made. */
static int id_tag_hmac(const char *key, const char *bare, const char *random, char *out)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t len = 0;
    if ((id_mac_kept(key, bare, random, mac, &len) < 0 && id_mac_once(key, bare, random, mac, &len) < 0) ||
        len < MAM_ID_TAG / 2) {
        memset(out, '0', MAM_ID_TAG);
        return -1;
    }
    for (int i = 0; i < MAM_ID_TAG / 2; i++) {
        out[2 * i] = hex_digits[mac[i] >> 4];
        out[2 * i + 1] = hex_digits[mac[i] & 15];
    }
    return 0;
}

/* The SipHash tag, as above; the key derived again when the secret changed. */
static int id_tag(const char *key, const char *bare, const char *random, char *out)
{
    if (!sip_secret || strcmp(sip_secret, key) != 0) {
        unsigned char d[EVP_MAX_MD_SIZE];
        unsigned int dlen = 0;
        if (!EVP_Digest(key, strlen(key), d, &dlen, EVP_sha256(), NULL) || dlen < sizeof sip_key) {
            log_error("sm: event=mam-id-mac error=\"cannot derive the id key\"");
            memset(out, '0', MAM_ID_TAG);
            return -1;
        }
        memcpy(sip_key, d, sizeof sip_key);
        free(sip_secret);
        sip_secret = xstrdup(key);
    }
    const void *parts[3] = {bare, "\n", random};
    size_t lens[3] = {strlen(bare), 1, MAM_ID_RANDOM};
    uint64_t h = siphash24_parts(sip_key, parts, lens, 3);
    for (int i = 0; i < MAM_ID_TAG; i++)
        out[i] = hex_digits[h >> (60 - 4 * i) & 15];
    return 0;
}

/* 12 random bits, from the pool (refilled from RAND_bytes when empty). */
static unsigned id_random12(void)
{
    if (id_pool_left < 2) {
        if (RAND_bytes(id_pool, sizeof id_pool) != 1)
            log_warn("sm: event=mam-id-random error=\"RAND_bytes failed\"");
        id_pool_left = sizeof id_pool;
    }
    id_pool_left -= 2;
    /* Each byte is used once; they need no secrecy (the id shows them). */
    return ((unsigned)id_pool[id_pool_left] << 8 | id_pool[id_pool_left + 1]) & 0xfff;
}

int64_t mam_id_new(const char *key, const char *bare, int64_t us, char *buf)
{
    if (us <= id_last)
        us = id_last + 1;               /* ids of one process only grow */
    id_last = us;
    /* "%013llx%03x" by hand: snprintf cost more than the MAC (perf of the
     * archiving sm). */
    const char *hex = hex_digits;
    uint64_t t = (uint64_t)us & 0xfffffffffffffull;
    for (int i = 12; i >= 0; i--, t >>= 4)
        buf[i] = hex[t & 15];
    unsigned r = id_random12();
    buf[13] = hex[r >> 8 & 15];
    buf[14] = hex[r >> 4 & 15];
    buf[15] = hex[r & 15];
    (void)id_tag(key, bare, buf, buf + MAM_ID_RANDOM);   /* unique by time even if it failed */
    buf[MAM_ID_LEN] = '\0';
    return (int64_t)((uint64_t)us & 0xfffffffffffffull);
}

int mam_id_genuine(const char *key, const char *bare, const char *id)
{
    char tag[MAM_ID_TAG];
    if (!id || strlen(id) != MAM_ID_LEN)
        return 0;
    if (id_tag(key, bare, id, tag) == 0 && CRYPTO_memcmp(tag, id + MAM_ID_RANDOM, MAM_ID_TAG) == 0)
        return 1;
    return id_tag_hmac(key, bare, id, tag) == 0 &&
           CRYPTO_memcmp(tag, id + MAM_ID_RANDOM, MAM_ID_TAG) == 0;
}

void mam_id_free(void)
{
    EVP_MAC_CTX_free(id_ctx);
    EVP_MAC_free(id_mac);
    free(id_key);
    free(sip_secret);
    sip_secret = NULL;
    id_ctx = NULL;
    id_mac = NULL;
    id_key = NULL;
}
