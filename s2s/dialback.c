/* dialback: server dialback keys (XEP-0220) made as XEP-0185 recommends, so
 * that any s2s instance holding the deployment's secret can answer a
 * db:verify for a stream another instance opened:
 *   key = hex(HMAC-SHA256(hex(SHA-256(secret)), receiving ' ' originating ' ' id))
 * Without a configured secret each process makes a random one at start. */
#include "s2s.h"
#include "comp_proto.h"
#include "log.h"
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <string.h>

static char random_secret[65];

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void dialback_init(void)
{
    if (!*s2s_config->dialback_secret) {
        comp_proto_random_hex(random_secret, 32);
        log_notice("event=dialback-secret source=random note=\"set auth.dialback-secret when several s2s instances serve a domain\"");
    }
}

const char *dialback_secret(void)
{
    return *s2s_config->dialback_secret ? s2s_config->dialback_secret : random_secret;
}

void dialback_key(const char *secret, const char *receiving, const char *originating, const char *stream_id,
                  char out[65])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    char hkey[2 * SHA256_DIGEST_LENGTH + 1];
    SHA256((const unsigned char *)secret, strlen(secret), digest);
    hex(digest, sizeof digest, hkey);
    strbuf_t text;
    strbuf_init(&text);
    strbuf_printf(&text, "%s %s %s", receiving, originating, stream_id);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    HMAC(EVP_sha256(), hkey, (int)strlen(hkey), (const unsigned char *)text.data, text.len, mac, &maclen);
    strbuf_free(&text);
    hex(mac, maclen, out);
}

int dialback_check(const char *secret, const char *receiving, const char *originating, const char *stream_id,
                   const char *key)
{
    char want[65];
    dialback_key(secret, receiving, originating, stream_id, want);
    size_t n = key ? strlen(key) : 0;
    if (n != 64)
        return 0;
    return CRYPTO_memcmp(want, key, 64) == 0;
}
