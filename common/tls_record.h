/* tls_record: the TLS 1.3 record layer of an established connection, run by
 * weft itself after OpenSSL did the handshake and its SSL object was freed.
 *
 * Why: an idle OpenSSL 3.0 server connection holds ~13 KB (the SSL struct
 * alone is 7.6 KB, most of it record-layer slots for 32 pipelines; then its
 * CERT copy, SSL_SESSION, two cipher contexts, the ephemeral keys and the
 * handshake digests). What a TLS 1.3 connection needs once the handshake is
 * over is two traffic secrets, two IVs and two sequence numbers: ~170 bytes,
 * plus cipher contexts while records flow (tls_record_idle drops them).
 *
 * How the state leaves OpenSSL, with public API only: on a context prepared
 * with tls_record_ctx_prepare, the keylog callback hands over the application
 * traffic secrets, and the message callback sees every record header and
 * every handshake message, so each direction's sequence number is counted
 * from its Finished (and from each KeyUpdate, whose next secret is derived
 * here). tls_record_take then moves that state out of an SSL that has nothing
 * buffered; the caller frees the SSL without sending anything on it.
 *
 * Supported: TLS 1.3 with TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384 or
 * TLS_CHACHA20_POLY1305_SHA256; anything else stays with OpenSSL (take
 * returns NULL). After the take-over (RFC 8446 section 5): application data
 * both ways, the peer's KeyUpdate (answered with ours when it asks), ours
 * after TLS_RECORD_KEY_LIMIT records (tls_record_set_key_limit),
 * close_notify as end of stream, user_canceled ignored. Anything else (another
 * handshake message, another alert, a bad tag, a record over 2^14 bytes of
 * plaintext, a record that is not application_data on the wire) is fatal: an
 * alert is queued for the peer and the connection must be dropped. */
#ifndef WEFT_TLS_RECORD_H
#define WEFT_TLS_RECORD_H
#include <stddef.h>
#include <stdint.h>
#include <event2/buffer.h>
#include <openssl/ssl.h>
#include "strbuf.h"

typedef struct tls_record tls_record_t;

enum {
    TLSR_OK = 0,      /* one record consumed */
    TLSR_AGAIN = 1,   /* no complete record buffered */
    TLSR_EOF = 2,     /* the peer sent close_notify */
    TLSR_ERROR = -1,  /* fatal: drop the connection (tls_record_error says why) */
};

/* Installs the keylog and message callbacks on ctx (replacing any), so that
 * SSLs made from it from now on can be taken over. 0 / -1. */
int tls_record_ctx_prepare(SSL_CTX *ctx);

/* Moves an established TLS 1.3 connection out of ssl. NULL (ssl untouched,
 * keep using it) when ssl is not TLS 1.3 with a supported suite, the handshake
 * is not over, OpenSSL holds buffered or pending data, or its context was not
 * prepared; why (may be NULL) then says which. On success the caller must
 * free ssl without writing to it (no SSL_shutdown); every byte already
 * written by OpenSSL belongs before anything sealed here. */
tls_record_t *tls_record_take(SSL *ssl, const char **why);
void tls_record_free(tls_record_t *r);

/* A record layer from known secrets, for tests and fuzzing: suite_id is the
 * IANA number (0x1301, 0x1302, 0x1303), the secrets are the current
 * application traffic secrets of the direction read and the one written
 * (hash length bytes each), both sequence numbers 0. NULL if unsupported. */
tls_record_t *tls_record_new(unsigned suite_id, const unsigned char *read_secret,
                             const unsigned char *write_secret, size_t secret_len);

/* For tests and fuzzing: one record whose inner plaintext is data followed
 * by the content type byte; type 0 leaves data to end with its own type and
 * padding (RFC 8446 5.4). len <= 2^14 + 255. 0 / -1. */
int tls_record_seal_raw(tls_record_t *r, unsigned char type, const void *data, size_t len,
                        struct evbuffer *out);

/* Sends our KeyUpdate now (request: ask the peer to update its keys too) and
 * moves the write direction to the next secret. 0, or -1 after a fatal error. */
int tls_record_key_update(tls_record_t *r, int request, struct evbuffer *out);

/* Records sealed under one key before tls_record_seal sends a KeyUpdate
 * (update_not_requested) on its own, for every connection of the process.
 * RFC 8446 5.5 bounds AES-GCM keys to 2^24.5 full-size records; 0 restores
 * the default. */
#define TLS_RECORD_KEY_LIMIT (1ull << 24)
void tls_record_set_key_limit(uint64_t records);

/* Decrypts the first record of in if it is complete: drains it from in and
 * appends its application data (possibly none) to plain. What must go back
 * to the peer (our KeyUpdate, a fatal alert) is appended to out. */
int tls_record_open(tls_record_t *r, struct evbuffer *in, strbuf_t *plain, struct evbuffer *out);

/* Encrypts len bytes as application-data records (2^14 bytes of plaintext
 * each at most) appended to out. 0, or -1 after a fatal error. */
int tls_record_seal(tls_record_t *r, const void *data, size_t len, struct evbuffer *out);

/* Frees the cipher contexts (~1 KB each) of a connection quiet on its read
 * side: the read one always, the write one when nothing was sealed since the
 * previous call. The next record makes them again from the secrets. */
void tls_record_idle(tls_record_t *r);

/* Why the last TLSR_ERROR happened (static text). */
const char *tls_record_error(const tls_record_t *r);

#endif
