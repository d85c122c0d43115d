/* libFuzzer target for the SASL server steps (sasl_scram.c, sasl_plain.c):
 * what a client sends in <auth/> and <response/> before it is authenticated.
 *
 * The first input byte picks the mechanism (bits 0-2: SCRAM-SHA-256,
 * SCRAM-SHA-256-PLUS, SCRAM-SHA-1, SCRAM-SHA-1-PLUS, PLAIN), whether the TLS
 * layer has channel-binding data (bit 3) and whether -PLUS was offered (bit
 * 4). The rest is the client's messages, split at each 0xff byte (a byte
 * never valid in UTF-8, so it hides nothing a real message could hold). The
 * server's nonce and the one known user ("user", password "pencil", 16
 * iterations) are fixed, so a seed can hold a complete, valid exchange and
 * the fuzzer can reach the proof and channel-binding checks.
 * Checked: no crash, leak or UB; SASL_DONE comes with an authenticated name
 * and no condition, SASL_FAIL with a condition and no name, and after either
 * every further step fails. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fz_mechs[8] = {"SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1",
                                        "SCRAM-SHA-1-PLUS", "PLAIN", "PLAIN",
                                        "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"};
static scram_keys_t fz_k256, fz_k1;

static int fz_lookup(void *ctx, const char *authcid, scram_hash_t h, scram_keys_t *out)
{
    (void)ctx;
    if (strcmp(authcid, "user") != 0)
        return -1;
    *out = h == SCRAM_SHA256 ? fz_k256 : fz_k1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        static const unsigned char salt[16] = "weft-fuzz-salt!";
        if (scram_keys_derive(SCRAM_SHA256, "pencil", salt, sizeof salt, 16, &fz_k256) < 0 ||
            scram_keys_derive(SCRAM_SHA1, "pencil", salt, sizeof salt, 16, &fz_k1) < 0)
            abort();
        ready = 1;
    }
    if (size < 1)
        return 0;
    unsigned flags = data[0];
    data++, size--;

    /* Channel-binding data as c2s would hand it over after a handshake. */
    static const unsigned char exporter[32] = "tls-exporter-0123456789abcdefgh";
    static const unsigned char endpoint[32] = "tls-server-end-point-0123456789";
    static const unsigned char unique[12] = "tls-unique!";
    sasl_cbind_t cb = {exporter, sizeof exporter, endpoint, sizeof endpoint, unique, sizeof unique};

    sasl_server_t *s = sasl_server_new(fz_mechs[flags & 7], fz_lookup, NULL, (flags & 8) ? &cb : NULL,
                                       (flags & 16) != 0);
    if (!s)
        abort();
    sasl_server_set_nonce(s, "SERVERNONCE");
    strbuf_t out;
    strbuf_init(&out);
    int over = 0;
    for (;;) {
        const uint8_t *end = memchr(data, 0xff, size);
        size_t len = end ? (size_t)(end - data) : size;
        sasl_result_t rc = sasl_server_step(s, (const char *)data, len, &out);
        if (over && rc != SASL_FAIL)
            abort();   /* nothing goes on after success or failure */
        if (rc == SASL_DONE) {
            if (!sasl_server_authcid(s) || sasl_server_condition(s))
                abort();
            over = 1;
        } else if (rc == SASL_FAIL) {
            if (!sasl_server_condition(s) || sasl_server_authcid(s))
                abort();
            if (out.len)
                abort();   /* a failure says nothing more than its condition */
            over = 1;
        } else if (rc != SASL_CONTINUE) {
            abort();
        }
        if (!end)
            break;
        size -= len + 1;
        data = end + 1;
    }
    strbuf_free(&out);
    sasl_server_free(s);
    return 0;
}
