/* sasl: SASL mechanisms, server and client side, independent of any stream.
 * SCRAM-SHA-1 / SCRAM-SHA-256 (RFC 5802 / RFC 7677) with their -PLUS variants
 * (channel binding types tls-exporter and tls-server-end-point), and PLAIN
 * (RFC 4616). Passwords exist on the server only as SCRAM keys; PLAIN is checked
 * by deriving the keys from the offered password with the stored salt and
 * iteration count.
 *
 * Messages are raw (already base64-decoded) bytes; the stream layer encodes. */
#ifndef WEFT_SASL_H
#define WEFT_SASL_H
#include <stddef.h>
#include "strbuf.h"

typedef enum scram_hash { SCRAM_SHA1 = 1, SCRAM_SHA256 = 2 } scram_hash_t;

#define SCRAM_MAX_HASH 32
#define SCRAM_MAX_SALT 64

typedef struct scram_keys {
    scram_hash_t hash;
    unsigned iterations;
    unsigned char salt[SCRAM_MAX_SALT];
    size_t salt_len;
    unsigned char stored_key[SCRAM_MAX_HASH];
    unsigned char server_key[SCRAM_MAX_HASH];
} scram_keys_t;

size_t scram_hash_len(scram_hash_t h);
/* Derives stored/server keys from a password (SaltedPassword via PBKDF2). The
 * password should already be SASLprep'd by the caller when it may hold non-ASCII. */
int scram_keys_derive(scram_hash_t h, const char *password, const unsigned char *salt,
                      size_t salt_len, unsigned iterations, scram_keys_t *out);
/* Same with a fresh random 16-byte salt. */
int scram_keys_new(scram_hash_t h, const char *password, unsigned iterations, scram_keys_t *out);
/* Text form for storage: "hash:iter:b64salt:b64stored:b64server". */
void scram_keys_format(const scram_keys_t *k, strbuf_t *out);
int scram_keys_parse(const char *s, scram_keys_t *out);

typedef enum sasl_result {
    SASL_CONTINUE = 1,  /* send out as a challenge, wait for a response */
    SASL_DONE = 0,      /* success; out (maybe empty) is additional data for <success> */
    SASL_FAIL = -1,     /* failure; sasl_server_condition() says why */
} sasl_result_t;

/* Channel binding data the server (or client) can offer, from the TLS layer. */
typedef struct sasl_cbind {
    const unsigned char *tls_exporter;         size_t tls_exporter_len;   /* NULL if none */
    const unsigned char *tls_server_end_point; size_t tls_server_end_point_len;
    /* RFC 5929 tls-unique: what older clients (slixmpp 1.8, libraries that
     * predate RFC 9266) use; accepted by the server, never chosen by our client. */
    const unsigned char *tls_unique;           size_t tls_unique_len;
} sasl_cbind_t;

/* Looks up a user's keys for the given hash. Returns 0 and fills out, or -1 if
 * there is no such user (the server then fails with not-authorized after a
 * dummy exchange, so user existence does not leak). */
typedef int (*sasl_lookup_fn)(void *ctx, const char *authcid, scram_hash_t h, scram_keys_t *out);

typedef struct sasl_server sasl_server_t;

/* mech: "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1", "SCRAM-SHA-1-PLUS",
 * "PLAIN". cbind may be NULL (no TLS); plus_offered says whether the server
 * advertised -PLUS mechanisms (for the 'y' flag downgrade check).
 * Returns NULL for an unknown mechanism (invalid-mechanism). */
sasl_server_t *sasl_server_new(const char *mech, sasl_lookup_fn lookup, void *ctx,
                               const sasl_cbind_t *cbind, int plus_offered);
void sasl_server_free(sasl_server_t *s);
/* Feeds the client's message (initial response or response). */
sasl_result_t sasl_server_step(sasl_server_t *s, const char *in, size_t inlen, strbuf_t *out);
/* RFC 6120 §6.5 condition after SASL_FAIL: "not-authorized", "malformed-request",
 * "invalid-authzid", "encryption-required", "incorrect-encoding",... */
const char *sasl_server_condition(const sasl_server_t *s);
/* After SASL_DONE: the authenticated identity (the username, unprepared form as
 * sent after SASLprep) and the requested authzid (NULL if none). */
const char *sasl_server_authcid(const sasl_server_t *s);
const char *sasl_server_authzid(const sasl_server_t *s);

typedef struct sasl_client sasl_client_t;
/* Client side; cbind type chosen by mech name (-PLUS uses tls-exporter when
 * available, else tls-server-end-point). */
sasl_client_t *sasl_client_new(const char *mech, const char *authcid, const char *password,
                               const char *authzid, const sasl_cbind_t *cbind);
void sasl_client_free(sasl_client_t *c);
/* First call with in=NULL gives the initial response. Returns SASL_CONTINUE while
 * more is expected, SASL_DONE once the server's final message (server signature)
 * verified, SASL_FAIL on a bad server signature or malformed challenge. */
sasl_result_t sasl_client_step(sasl_client_t *c, const char *in, size_t inlen, strbuf_t *out);
/* What a client may keep per account to skip PBKDF2 on its next login (RFC
 * 5802 section 5.1: clients may store SaltedPassword). The caller keeps one
 * per account and password; the client uses it when the server's hash, salt
 * and iteration count match, and fills it otherwise. Zeroed = empty. */
typedef struct scram_salted {
    scram_hash_t hash;
    unsigned iterations;
    size_t salt_len;
    unsigned char salt[SCRAM_MAX_SALT * 4];
    unsigned char salted[SCRAM_MAX_HASH];
} scram_salted_t;
void sasl_client_set_salted_cache(sasl_client_t *c, scram_salted_t *slot);
/* For tests: fix the client nonce instead of a random one. */
void sasl_client_set_nonce(sasl_client_t *c, const char *nonce);
void sasl_server_set_nonce(sasl_server_t *s, const char *nonce);

/* SASLprep (RFC 4013) into a new string the caller frees, or NULL when s is
 * prohibited. stored=1 for names kept in storage (unassigned code points
 * refused), 0 for passwords (allowed, RFC 4013 section 2). c2s and weftctl
 * prepare user names and passwords with it so they match what SASL derives. */
char *sasl_saslprep(const char *s, int stored);

/* Constant-time comparison; 1 if equal. */
int sasl_ct_equal(const void *a, const void *b, size_t n);

#endif
