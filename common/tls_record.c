/* tls_record: TLS 1.3 records after the handshake, outside OpenSSL's SSL
 * object (see tls_record.h for why and what).
 *
 * Owns: per SSL of a prepared context, a tls_track_t in the SSL's ex_data
 * (secrets and record counts, freed with the SSL or moved out by take); per
 * connection taken over, a tls_record_t. The fetched ciphers and digests are
 * process-wide and live until exit.
 *
 * Invariants: d = 0 is the direction we read, d = 1 the one we write.
 * tls_track_t.seq[d] is the number of records that direction carried under
 * its current application secret (= the next record's sequence number) as
 * long as app[d] is set; secret[d] is application_traffic_secret_0 and
 * updates[d] the number of KeyUpdates since. A tls_record_t that failed stays
 * failed: every later call returns an error and writes nothing. */
#include "tls_record.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#define REC_HDR 5
#define REC_TAG 16
#define REC_PLAIN_MAX 16384               /* RFC 8446 5.1 */
#define REC_CIPHER_MAX (REC_PLAIN_MAX + 256) /* RFC 8446 5.2 */
#define CT_ALERT 21
#define CT_HANDSHAKE 22
#define CT_APPDATA 23
#define HS_FINISHED 20
#define HS_KEY_UPDATE 24
#define SECRET_MAX 48

enum { SUITE_AES128GCM, SUITE_AES256GCM, SUITE_CHACHA, SUITE_COUNT };

static const struct suite_info {
    uint32_t id;            /* SSL_CIPHER_get_id */
    const char *cipher, *md;
    unsigned char key_len, hash_len;
} suites[SUITE_COUNT] = {
    {0x03001301, "AES-128-GCM", "SHA256", 16, 32},
    {0x03001302, "AES-256-GCM", "SHA384", 32, 48},
    {0x03001303, "ChaCha20-Poly1305", "SHA256", 32, 32},
};
static EVP_CIPHER *suite_cipher[SUITE_COUNT];
/* tls_record_set_key_limit: records sealed under one key before we update it. */
static uint64_t key_limit = TLS_RECORD_KEY_LIMIT;

typedef struct tls_dir {
    unsigned char secret[SECRET_MAX];
    unsigned char iv[12];
    uint64_t seq;
    EVP_CIPHER_CTX *ctx;    /* made on first use, dropped by tls_record_idle */
} tls_dir_t;

struct tls_record {
    tls_dir_t d[2];         /* [0] read, [1] write */
    unsigned char suite;
    unsigned char failed;
    unsigned char hs_len;   /* bytes of a partial post-handshake message */
    unsigned char hs[5];    /* only KeyUpdate (4 + 1 bytes) is accepted */
    const char *err;
    uint64_t idle_wseq;     /* write seq at the last tls_record_idle */
};

/* Per-SSL bookkeeping until take (ex_data). */
typedef struct tls_track {
    unsigned char secret[2][SECRET_MAX];
    unsigned char secret_len[2];
    unsigned char app[2];
    unsigned updates[2];
    uint64_t seq[2];
} tls_track_t;

static int track_idx = -1;

static void track_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    if (ptr) {
        OPENSSL_cleanse(ptr, sizeof(tls_track_t));
        free(ptr);
    }
}

static tls_track_t *track_get(const SSL *ssl)
{
    tls_track_t *t = SSL_get_ex_data(ssl, track_idx);
    if (!t) {
        t = xcalloc(1, sizeof *t);
        if (!SSL_set_ex_data((SSL *)ssl, track_idx, t)) {
            free(t);
            return NULL;
        }
    }
    return t;
}

static int hex_val(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* "CLIENT_TRAFFIC_SECRET_0 <client random> <secret>" (NSS key log format). */
static void on_keylog(const SSL *ssl, const char *line)
{
    int client;
    if (!strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24))
        client = 1;
    else if (!strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24))
        client = 0;
    else
        return;
    const char *hex = strchr(line + 24, ' ');
    if (!hex)
        return;
    hex++;
    size_t n = strlen(hex) / 2;
    tls_track_t *t = track_get(ssl);
    if (!t || n > SECRET_MAX)
        return;
    /* The client's secret protects what the server reads. */
    int d = client == SSL_is_server(ssl) ? 0 : 1;
    for (size_t i = 0; i < n; i++) {
        int hi = hex_val(hex[2 * i]), lo = hex_val(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return;
        t->secret[d][i] = (unsigned char)(hi << 4 | lo);
    }
    t->secret_len[d] = (unsigned char)n;
}

/* Counts records per direction: OpenSSL reports a record's header when it
 * reads or writes it, and a handshake message after its record. A direction
 * switches to its application secret after its Finished, to the next one
 * after each KeyUpdate, and its sequence number restarts at 0 then. */
static void on_msg(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl,
                   void *arg)
{
    (void)version;
    (void)arg;
    int d = write_p ? 1 : 0;
    tls_track_t *t = track_get(ssl);
    if (!t)
        return;
    if (content_type == SSL3_RT_HEADER) {
        if (t->app[d])
            t->seq[d]++;
    } else if (content_type == SSL3_RT_HANDSHAKE && len >= 1) {
        unsigned char type = ((const unsigned char *)buf)[0];
        if (type == HS_FINISHED && !t->app[d]) {
            t->app[d] = 1;
            t->seq[d] = 0;
        } else if (type == HS_KEY_UPDATE && t->app[d]) {
            t->updates[d]++;
            t->seq[d] = 0;
        }
    }
}

static int fetch_ciphers(void)
{
    for (int i = 0; i < SUITE_COUNT; i++) {
        if (!suite_cipher[i]) {
            suite_cipher[i] = EVP_CIPHER_fetch(NULL, suites[i].cipher, NULL);
            if (!suite_cipher[i])
                return -1;
        }
    }
    return 0;
}

int tls_record_ctx_prepare(SSL_CTX *ctx)
{
    if (track_idx < 0) {
        track_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, track_free);
        if (track_idx < 0)
            return -1;
    }
    if (fetch_ciphers() < 0)
        return -1;
    SSL_CTX_set_keylog_callback(ctx, on_keylog);
    SSL_CTX_set_msg_callback(ctx, on_msg);
    return 0;
}

/* ---- key schedule (RFC 8446 7.1, 7.2, 7.3) ---- */

/* HKDF-Expand-Label(secret, label, "", out_len) with out_len <= hash length,
 * so HKDF-Expand is a single HMAC: T(1) = HMAC(secret, HkdfLabel || 0x01). */
static int expand_label(const struct suite_info *s, const unsigned char *secret, const char *label,
                        unsigned char *out, size_t out_len)
{
    unsigned char info[2 + 1 + 6 + 16 + 1 + 1];
    size_t ll = strlen(label), n = 0;
    if (ll > 16 || out_len > s->hash_len)
        return -1;
    info[n++] = (unsigned char)(out_len >> 8);
    info[n++] = (unsigned char)out_len;
    info[n++] = (unsigned char)(6 + ll);
    memcpy(info + n, "tls13 ", 6);
    n += 6;
    memcpy(info + n, label, ll);
    n += ll;
    info[n++] = 0;   /* empty context */
    info[n++] = 1;   /* HKDF-Expand counter */
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_len = 0;
    if (!EVP_Q_mac(NULL, "HMAC", NULL, s->md, NULL, secret, s->hash_len, info, n, mac, sizeof mac,
                   &mac_len) ||
        mac_len < out_len) {
        ERR_clear_error();
        return -1;
    }
    memcpy(out, mac, out_len);
    OPENSSL_cleanse(mac, sizeof mac);
    return 0;
}

/* Installs a direction's secret: its IV now, its key when a record needs it. */
static int dir_set(tls_record_t *r, tls_dir_t *d, const unsigned char *secret)
{
    const struct suite_info *s = &suites[r->suite];
    if (secret != d->secret)
        memcpy(d->secret, secret, s->hash_len);
    d->seq = 0;
    EVP_CIPHER_CTX_free(d->ctx);
    d->ctx = NULL;
    return expand_label(s, d->secret, "iv", d->iv, sizeof d->iv);
}

/* application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "", Hash.length) */
static int next_secret(const struct suite_info *s, unsigned char *secret)
{
    unsigned char next[SECRET_MAX];
    if (expand_label(s, secret, "traffic upd", next, s->hash_len) < 0)
        return -1;
    memcpy(secret, next, s->hash_len);
    OPENSSL_cleanse(next, sizeof next);
    return 0;
}

static EVP_CIPHER_CTX *dir_ctx(tls_record_t *r, tls_dir_t *d, int enc)
{
    if (d->ctx)
        return d->ctx;
    const struct suite_info *s = &suites[r->suite];
    unsigned char key[32];
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx || expand_label(s, d->secret, "key", key, s->key_len) < 0 ||
        !EVP_CipherInit_ex(ctx, suite_cipher[r->suite], NULL, key, NULL, enc)) {
        EVP_CIPHER_CTX_free(ctx);
        OPENSSL_cleanse(key, sizeof key);
        ERR_clear_error();
        return NULL;
    }
    OPENSSL_cleanse(key, sizeof key);
    d->ctx = ctx;
    return ctx;
}

/* RFC 8446 5.3: the per-record nonce is the IV xor the sequence number. */
static void dir_nonce(const tls_dir_t *d, unsigned char nonce[12])
{
    memcpy(nonce, d->iv, 12);
    for (int i = 0; i < 8; i++)
        nonce[11 - i] ^= (unsigned char)(d->seq >> (8 * i));
}

/* ---- take-over ---- */

tls_record_t *tls_record_take(SSL *ssl, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    *why = NULL;
    tls_track_t *t = track_idx >= 0 ? SSL_get_ex_data(ssl, track_idx) : NULL;
    if (!t) {
        *why = "context not prepared";
        return NULL;
    }
    if (SSL_version(ssl) != TLS1_3_VERSION) {
        *why = "not TLS 1.3";
        return NULL;
    }
    if (!SSL_is_init_finished(ssl) || SSL_in_init(ssl)) {
        *why = "handshake not finished";
        return NULL;
    }
    if (SSL_has_pending(ssl) || SSL_want_write(ssl) || SSL_get_shutdown(ssl)) {
        *why = "data buffered in OpenSSL";
        return NULL;
    }
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
    uint32_t id = c ? SSL_CIPHER_get_id(c) : 0;
    int suite = -1;
    for (int i = 0; i < SUITE_COUNT; i++)
        if (suites[i].id == id && suite_cipher[i])
            suite = i;
    if (suite < 0) {
        *why = "cipher suite not supported";
        return NULL;
    }
    const struct suite_info *s = &suites[suite];
    if (!t->app[0] || !t->app[1] || t->secret_len[0] != s->hash_len || t->secret_len[1] != s->hash_len) {
        *why = "traffic secrets not seen";
        return NULL;
    }
    tls_record_t *r = xcalloc(1, sizeof *r);
    r->suite = (unsigned char)suite;
    for (int d = 0; d < 2; d++) {
        unsigned char secret[SECRET_MAX];
        memcpy(secret, t->secret[d], s->hash_len);
        int ok = 1;
        for (unsigned u = 0; u < t->updates[d] && ok; u++)
            ok = next_secret(s, secret) == 0;
        ok = ok && dir_set(r, &r->d[d], secret) == 0;
        OPENSSL_cleanse(secret, sizeof secret);
        if (!ok) {
            tls_record_free(r);
            *why = "key derivation failed";
            return NULL;
        }
        r->d[d].seq = t->seq[d];
    }
    SSL_set_ex_data(ssl, track_idx, NULL);
    OPENSSL_cleanse(t, sizeof *t);
    free(t);
    return r;
}

tls_record_t *tls_record_new(unsigned suite_id, const unsigned char *read_secret,
                             const unsigned char *write_secret, size_t secret_len)
{
    if (fetch_ciphers() < 0)
        return NULL;
    int suite = -1;
    for (int i = 0; i < SUITE_COUNT; i++)
        if ((suites[i].id & 0xffff) == suite_id)
            suite = i;
    if (suite < 0 || secret_len != suites[suite].hash_len)
        return NULL;
    tls_record_t *r = xcalloc(1, sizeof *r);
    r->suite = (unsigned char)suite;
    if (dir_set(r, &r->d[0], read_secret) < 0 || dir_set(r, &r->d[1], write_secret) < 0) {
        tls_record_free(r);
        return NULL;
    }
    return r;
}

void tls_record_set_key_limit(uint64_t records)
{
    key_limit = records ? records : TLS_RECORD_KEY_LIMIT;
}

void tls_record_free(tls_record_t *r)
{
    if (!r)
        return;
    EVP_CIPHER_CTX_free(r->d[0].ctx);
    EVP_CIPHER_CTX_free(r->d[1].ctx);
    OPENSSL_cleanse(r, sizeof *r);
    free(r);
}

void tls_record_idle(tls_record_t *r)
{
    EVP_CIPHER_CTX_free(r->d[0].ctx);
    r->d[0].ctx = NULL;
    /* A client that only listens (a room's reader, a PEP contact) is quiet
     * on the read side while records go out to it: its write context is
     * dropped only once nothing was sealed since the last call, else every
     * burst after a pause would pay for a key schedule per connection. */
    if (r->d[1].seq == r->idle_wseq) {
        EVP_CIPHER_CTX_free(r->d[1].ctx);
        r->d[1].ctx = NULL;
    }
    r->idle_wseq = r->d[1].seq;
}

const char *tls_record_error(const tls_record_t *r)
{
    return r->err ? r->err : "no error";
}

/* ---- records ---- */

/* One record of inner type `type` holding len (<= 2^14) bytes. */
static int seal_one(tls_record_t *r, unsigned char type, const unsigned char *data, size_t len,
                    struct evbuffer *out)
{
    tls_dir_t *d = &r->d[1];
    EVP_CIPHER_CTX *ctx = dir_ctx(r, d, 1);
    if (!ctx)
        return -1;
    size_t clen = len + 1 + REC_TAG;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(out, (ev_ssize_t)(REC_HDR + clen), &v, 1) != 1 ||
        v.iov_len < REC_HDR + clen)
        return -1;
    unsigned char *p = v.iov_base;
    p[0] = CT_APPDATA;
    p[1] = 3;
    p[2] = 3;
    p[3] = (unsigned char)(clen >> 8);
    p[4] = (unsigned char)clen;
    unsigned char nonce[12];
    dir_nonce(d, nonce);
    int n1 = 0, n2 = 0, n3 = 0, n4 = 0;
    if (!EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) || !EVP_EncryptUpdate(ctx, NULL, &n1, p, REC_HDR) ||
        (len && !EVP_EncryptUpdate(ctx, p + REC_HDR, &n2, data, (int)len)) ||
        !EVP_EncryptUpdate(ctx, p + REC_HDR + n2, &n3, &type, 1) ||
        !EVP_EncryptFinal_ex(ctx, p + REC_HDR + n2 + n3, &n4) || (size_t)(n2 + n3 + n4) != len + 1 ||
        !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, REC_TAG, p + REC_HDR + len + 1)) {
        ERR_clear_error();
        return -1;
    }
    v.iov_len = REC_HDR + clen;
    if (evbuffer_commit_space(out, &v, 1) < 0)
        return -1;
    d->seq++;
    return 0;
}

static int fail(tls_record_t *r, const char *why, int alert, struct evbuffer *out)
{
    if (!r->failed) {
        r->err = why;
        if (alert >= 0 && out) {
            unsigned char a[2] = {2, (unsigned char)alert};   /* fatal */
            seal_one(r, CT_ALERT, a, sizeof a, out);
        }
        r->failed = 1;
    }
    return TLSR_ERROR;
}

int tls_record_seal_raw(tls_record_t *r, unsigned char type, const void *data, size_t len,
                        struct evbuffer *out)
{
    if (r->failed || len > REC_PLAIN_MAX + 255)
        return -1;
    return seal_one(r, type, data, len, out);
}

/* Our KeyUpdate (RFC 8446 4.6.3): sent under the old key, then the write
 * direction moves to the next secret. */
static int send_key_update(tls_record_t *r, int request, struct evbuffer *out)
{
    const struct suite_info *s = &suites[r->suite];
    const unsigned char ku[5] = {HS_KEY_UPDATE, 0, 0, 1, (unsigned char)(request ? 1 : 0)};
    if (seal_one(r, CT_HANDSHAKE, ku, sizeof ku, out) < 0 || next_secret(s, r->d[1].secret) < 0 ||
        dir_set(r, &r->d[1], r->d[1].secret) < 0)
        return -1;
    return 0;
}

int tls_record_key_update(tls_record_t *r, int request, struct evbuffer *out)
{
    if (r->failed)
        return -1;
    if (send_key_update(r, request, out) < 0) {
        r->err = "key update failed";
        r->failed = 1;
        return -1;
    }
    return 0;
}

int tls_record_seal(tls_record_t *r, const void *data, size_t len, struct evbuffer *out)
{
    if (r->failed)
        return -1;
    const unsigned char *p = data;
    do {
        size_t n = len > REC_PLAIN_MAX ? REC_PLAIN_MAX : len;
        /* RFC 8446 5.5: a key protects a bounded number of records; past our
         * limit the next record goes under a new key. The peer is not asked
         * to renew its own (its keys are its business): GnuTLS 3.7 drops the
         * connection with illegal_parameter when a KeyUpdate asking for one
         * crosses its own request in flight, which RFC 8446 4.6.3 allows. */
        if (r->d[1].seq >= key_limit && tls_record_key_update(r, 0, out) < 0)
            return -1;
        if (seal_one(r, CT_APPDATA, p, n, out) < 0) {
            r->err = "encryption failed";
            r->failed = 1;
            return -1;
        }
        p += n;
        len -= n;
    } while (len > 0);
    return 0;
}

/* The peer's post-handshake messages: KeyUpdate only (we never ask for a
 * client certificate and never send a ticket request the client answers). */
static int on_handshake(tls_record_t *r, const unsigned char *m, size_t len, struct evbuffer *out)
{
    const struct suite_info *s = &suites[r->suite];
    for (size_t i = 0; i < len; i++) {
        if (r->hs_len >= sizeof r->hs)
            return fail(r, "handshake message after KeyUpdate in one record", 10, out);
        r->hs[r->hs_len++] = m[i];
        if (r->hs[0] != HS_KEY_UPDATE)
            return fail(r, "unexpected post-handshake message", 10, out);   /* unexpected_message */
        if (r->hs_len == 4 && (r->hs[1] || r->hs[2] || r->hs[3] != 1))
            return fail(r, "bad KeyUpdate length", 50, out);                 /* decode_error */
        if (r->hs_len < 5)
            continue;
        if (r->hs[4] > 1)
            return fail(r, "bad KeyUpdate value", 47, out);                  /* illegal_parameter */
        /* RFC 8446 5.1: nothing may follow a KeyUpdate in its record. */
        if (i + 1 != len)
            return fail(r, "data after KeyUpdate in its record", 10, out);
        int requested = r->hs[4];
        r->hs_len = 0;
        if (next_secret(s, r->d[0].secret) < 0 || dir_set(r, &r->d[0], r->d[0].secret) < 0)
            return fail(r, "key update failed", 80, NULL);
        if (requested && send_key_update(r, 0, out) < 0)
            return fail(r, "key update failed", 80, NULL);
    }
    return TLSR_OK;
}

int tls_record_open(tls_record_t *r, struct evbuffer *in, strbuf_t *plain, struct evbuffer *out)
{
    if (r->failed)
        return TLSR_ERROR;
    unsigned char hdr[REC_HDR];
    size_t avail = evbuffer_get_length(in);
    if (avail < REC_HDR)
        return TLSR_AGAIN;
    evbuffer_copyout(in, hdr, REC_HDR);
    size_t clen = (size_t)hdr[3] << 8 | hdr[4];
    /* After the handshake every record is application_data on the wire;
     * a change_cipher_spec or a clear alert here is a protocol error. */
    if (hdr[0] != CT_APPDATA)
        return fail(r, "record type is not application_data", 10, out);
    if (hdr[1] != 3 || hdr[2] != 3)
        return fail(r, "bad record version", 50, out);
    if (clen > REC_CIPHER_MAX)
        return fail(r, "record too long", 22, out);                        /* record_overflow */
    if (clen < 1 + REC_TAG)
        return fail(r, "record too short", 50, out);
    if (avail < REC_HDR + clen)
        return TLSR_AGAIN;
    tls_dir_t *d = &r->d[0];
    EVP_CIPHER_CTX *ctx = dir_ctx(r, d, 0);
    if (!ctx)
        return fail(r, "cipher setup failed", 80, out);                    /* internal_error */
    unsigned char *p = evbuffer_pullup(in, (ev_ssize_t)(REC_HDR + clen));
    if (!p)
        return fail(r, "out of memory", 80, out);
    size_t body = clen - REC_TAG;
    strbuf_reserve(plain, body);
    unsigned char *dst = (unsigned char *)plain->data + plain->len;
    unsigned char nonce[12];
    dir_nonce(d, nonce);
    int n1 = 0, n2 = 0, n3 = 0;
    if (!EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, nonce) || !EVP_DecryptUpdate(ctx, NULL, &n1, p, REC_HDR) ||
        !EVP_DecryptUpdate(ctx, dst, &n2, p + REC_HDR, (int)body) ||
        !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, REC_TAG, p + REC_HDR + body) ||
        !EVP_DecryptFinal_ex(ctx, dst + n2, &n3) || (size_t)(n2 + n3) != body) {
        ERR_clear_error();
        OPENSSL_cleanse(dst, body);
        return fail(r, "record authentication failed", 20, out);          /* bad_record_mac */
    }
    evbuffer_drain(in, REC_HDR + clen);
    d->seq++;
    /* RFC 8446 5.4: zero padding, then the real content type. */
    size_t n = body;
    while (n > 0 && dst[n - 1] == 0)
        n--;
    if (n == 0)
        return fail(r, "record without content type", 10, out);
    unsigned char type = dst[--n];
    if (n > REC_PLAIN_MAX)
        return fail(r, "plaintext too long", 22, out);
    switch (type) {
    case CT_APPDATA:
        if (r->hs_len)
            return fail(r, "application data inside a handshake message", 10, out);
        plain->len += n;
        plain->data[plain->len] = '\0';
        return TLSR_OK;
    case CT_ALERT:
        if (n != 2)
            return fail(r, "bad alert", 50, out);
        plain->data[plain->len] = '\0';
        if (dst[1] == 0) {   /* close_notify */
            r->err = "close_notify";
            r->failed = 1;
            return TLSR_EOF;
        }
        if (dst[1] == 90)    /* user_canceled: a close_notify follows */
            return TLSR_OK;
        r->err = "alert received";
        r->failed = 1;
        return TLSR_ERROR;
    case CT_HANDSHAKE: {
        if (n == 0)
            return fail(r, "empty handshake record", 10, out);
        int rc = on_handshake(r, dst, n, out);
        plain->data[plain->len] = '\0';
        return rc;
    }
    default:
        return fail(r, "unexpected content type", 10, out);
    }
}
