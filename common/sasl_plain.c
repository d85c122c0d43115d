/* sasl_plain: the PLAIN mechanism (RFC 4616), server check and client message.
 * The generic sasl_server_* / sasl_client_* objects live in sasl_scram.c and
 * call in here for PLAIN.
 *
 * We hold no passwords, only SCRAM keys, so a PLAIN password is checked by
 * deriving the SCRAM keys with the user's stored salt and iteration count and
 * comparing StoredKey in constant time. SCRAM-SHA-256 keys are preferred, the
 * SHA-1 keys are the fallback. An unknown user costs the same PBKDF2 work as a
 * known one, so timing does not tell whether the user exists. */
#include "sasl_mech.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

/* RFC 4616 §2: each field is at most 255 octets. */
#define PLAIN_FIELD_MAX 255

static void sasl_plain_wipe_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

/* message = [authzid] NUL authcid NUL passwd. On success returns 0 and hands
 * the SASLprep'd authcid and the authzid (NULL if empty) to the caller, who
 * frees them. On failure returns -1 with *condition set (RFC 6120 §6.5). */
int sasl_plain_server_check(const char *in, size_t inlen, sasl_lookup_fn lookup, void *ctx,
                            char **authcid, char **authzid, const char **condition)
{
    const char *nul1 = memchr(in, '\0', inlen);
    const char *nul2 = nul1 ? memchr(nul1 + 1, '\0', inlen - (size_t)(nul1 + 1 - in)) : NULL;
    char *user = NULL, *pass_raw = NULL, *pass = NULL, *zid = NULL;
    scram_keys_t keys, offered;
    int rc = -1;

    *authcid = *authzid = NULL;
    *condition = "malformed-request";
    if (!nul1 || !nul2 || memchr(nul2 + 1, '\0', inlen - (size_t)(nul2 + 1 - in)))
        return -1;
    size_t zl = (size_t)(nul1 - in), ul = (size_t)(nul2 - nul1 - 1);
    size_t pl = inlen - (size_t)(nul2 + 1 - in);
    if (ul == 0 || pl == 0 || zl > PLAIN_FIELD_MAX || ul > PLAIN_FIELD_MAX || pl > PLAIN_FIELD_MAX ||
        !sasl_utf8_valid(in, zl) || !sasl_utf8_valid(nul1 + 1, ul) ||
        !sasl_utf8_valid(nul2 + 1, pl))
        return -1;

    char *raw_user = xstrndup(nul1 + 1, ul);
    user = sasl_saslprep(raw_user, 1);
    free(raw_user);
    pass_raw = xstrndup(nul2 + 1, pl);
    pass = sasl_saslprep(pass_raw, 0);
    if (!user || !*user || !pass || !*pass)
        goto out;
    zid = zl ? xstrndup(in, zl) : NULL;

    int known = lookup && lookup(ctx, user, SCRAM_SHA256, &keys) == 0 && keys.hash == SCRAM_SHA256;
    if (!known)
        known = lookup && lookup(ctx, user, SCRAM_SHA1, &keys) == 0 && keys.hash == SCRAM_SHA1;
    if (!known)
        sasl_fake_keys(SCRAM_SHA256, user, &keys); /* same PBKDF2 cost as a real user */

    *condition = "not-authorized";
    if (scram_keys_derive(keys.hash, pass, keys.salt, keys.salt_len, keys.iterations, &offered) < 0)
        goto out;
    int match = sasl_ct_equal(offered.stored_key, keys.stored_key, scram_hash_len(keys.hash));
    if (!match || !known)
        goto out;
    if (!sasl_authzid_ok(zid, user)) {
        *condition = "invalid-authzid";
        goto out;
    }
    *authcid = user;
    *authzid = zid;
    user = zid = NULL;
    *condition = NULL;
    rc = 0;
out:
    OPENSSL_cleanse(&keys, sizeof keys);
    OPENSSL_cleanse(&offered, sizeof offered);
    sasl_plain_wipe_free(pass_raw);
    sasl_plain_wipe_free(pass);
    free(user);
    free(zid);
    return rc;
}

void sasl_plain_client_message(const char *authzid, const char *authcid, const char *password,
                               strbuf_t *out)
{
    if (authzid)
        strbuf_puts(out, authzid);
    strbuf_putc(out, '\0');
    strbuf_puts(out, authcid);
    strbuf_putc(out, '\0');
    strbuf_puts(out, password);
}
