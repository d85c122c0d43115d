/* sasl_scram: SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677) with the -PLUS
 * variants (channel bindings tls-exporter, RFC 9266, and tls-server-end-point,
 * RFC 5929), server and client; SCRAM key derivation and storage format; and the
 * generic sasl_server_* / sasl_client_* entry points, which dispatch to PLAIN
 * (sasl_plain.c) by mechanism name.
 *
 * Every message is parsed strictly against the RFC 5802 §7 grammar: attributes
 * in the fixed order, no NUL, valid UTF-8 names, strict base64, and the reserved
 * "m=" extension refused. Failures map to RFC 6120 §6.5 conditions: syntax
 * errors are malformed-request, a bad proof, nonce, channel binding or an
 * unknown user is not-authorized, and an authzid other than the user is
 * invalid-authzid (no proxy authorization).
 *
 * An unknown user gets a full fake exchange, with a salt derived from the name
 * and a per-process secret, so that the server-first message for a name is
 * stable and looks like a real one: whether a user exists does not leak.
 *
 * All state lives in the sasl_server_t / sasl_client_t objects; the only global
 * is that fake-salt secret, initialised on first use from the event-loop thread.
 * Secrets (salted password, keys) are wiped before their memory is freed. */
#include "sasl_mech.h"
#include "base64.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stringprep.h>

/* Longest SASL message we accept; real ones are a few hundred bytes. */
#define SASL_MAX_MESSAGE 8192
/* Iteration bounds a client accepts from a server: RFC 5802 §5.1 recommends at
 * least 4096; the upper bound stops a hostile server making us burn CPU. */
#define SCRAM_CLIENT_MIN_ITER 4096
#define SCRAM_CLIENT_MAX_ITER 10000000u
/* Iterations shown to unknown users; matches the usual registration setting. */
#define SCRAM_FAKE_ITER 4096
/* Random bytes in a server or client nonce (base64-encoded on the wire). */
#define SCRAM_NONCE_BYTES 24

/* ---------------------------------------------------------------- helpers */

static const EVP_MD *scram_md(scram_hash_t h)
{
    return h == SCRAM_SHA1 ? EVP_sha1() : h == SCRAM_SHA256 ? EVP_sha256() : NULL;
}

size_t scram_hash_len(scram_hash_t h)
{
    return h == SCRAM_SHA1 ? 20 : h == SCRAM_SHA256 ? 32 : 0;
}

int sasl_ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

int sasl_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i], cp, min;
        size_t need;
        if (c < 0x80) {
            if (c == 0)
                return 0;
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            need = 1, min = 0x80, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            need = 2, min = 0x800, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            need = 3, min = 0x10000, cp = c & 0x07;
        else
            return 0;
        if (n - i <= need)
            return 0;
        for (size_t k = 1; k <= need; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += need + 1;
    }
    return 1;
}

/* SASLprep (RFC 4013) into a new string, or NULL. Stored strings (user names)
 * refuse unassigned code points; queries (passwords) allow them, as RFC 4013
 * §2 permits, so that a password typed today still works after an update. */
char *sasl_saslprep(const char *s, int stored)
{
    size_t n = strlen(s);
    if (!sasl_utf8_valid(s, n))
        return NULL;
    size_t cap = n * 2 + 16;
    for (;;) {
        char *buf = xmalloc(cap);
        memcpy(buf, s, n + 1);
        int rc = stringprep(buf, cap, stored ? STRINGPREP_NO_UNASSIGNED : 0, stringprep_saslprep);
        if (rc == STRINGPREP_OK)
            return buf;
        OPENSSL_cleanse(buf, cap);
        free(buf);
        if (rc != STRINGPREP_TOO_SMALL_BUFFER || cap > (size_t)1 << 20)
            return NULL;
        cap *= 2;
    }
}

/* No proxy authorization: the authzid must name the user itself, either as the
 * bare user name or as a JID whose localpart is the user name (clients send
 * "juliet@example.com"). The c2s checks the domain of such a JID. */
int sasl_authzid_ok(const char *authzid, const char *authcid)
{
    if (!authzid)
        return 1;
    size_t n = strlen(authcid);
    if (strncmp(authzid, authcid, n) != 0)
        return 0;
    return authzid[n] == '\0' || (authzid[n] == '@' && authzid[n + 1] != '\0' &&
                                  !strchr(authzid + n + 1, '/') && !strchr(authzid + n + 1, '@'));
}

static int scram_hmac(scram_hash_t h, const unsigned char *key, size_t keylen, const void *data,
                      size_t len, unsigned char *out)
{
    unsigned outlen = 0;
    if (!HMAC(scram_md(h), key, (int)keylen, data, len, out, &outlen))
        return -1;
    return outlen == scram_hash_len(h) ? 0 : -1;
}

static int scram_digest(scram_hash_t h, const unsigned char *in, size_t len, unsigned char *out)
{
    unsigned outlen = 0;
    if (EVP_Digest(in, len, out, &outlen, scram_md(h), NULL) != 1)
        return -1;
    return outlen == scram_hash_len(h) ? 0 : -1;
}

/* Fills the per-process secret used for fake salts, once. */
static unsigned char sasl_fake_secret[32];
static int sasl_fake_secret_ready;

void sasl_fake_keys(scram_hash_t h, const char *authcid, scram_keys_t *out)
{
    unsigned char mac[32];
    unsigned len = 0;
    if (!sasl_fake_secret_ready) {
        if (RAND_bytes(sasl_fake_secret, sizeof sasl_fake_secret) != 1)
            abort(); /* no entropy: a broken environment, not a user error */
        sasl_fake_secret_ready = 1;
    }
    memset(out, 0, sizeof *out);
    out->hash = h;
    out->iterations = SCRAM_FAKE_ITER;
    /* Salt depends on hash and name so the same name always shows the same salt. */
    strbuf_t in;
    strbuf_init(&in);
    strbuf_printf(&in, "%d:%s", (int)h, authcid);
    HMAC(EVP_sha256(), sasl_fake_secret, sizeof sasl_fake_secret, (unsigned char *)in.data,
         in.len, mac, &len);
    strbuf_free(&in);
    memcpy(out->salt, mac, 16);
    out->salt_len = 16;
    /* Keys that no password can match (the exchange fails regardless). */
    RAND_bytes(out->stored_key, sizeof out->stored_key);
    RAND_bytes(out->server_key, sizeof out->server_key);
}

/* ---------------------------------------------------------- key derivation */

int scram_keys_derive(scram_hash_t h, const char *password, const unsigned char *salt,
                      size_t salt_len, unsigned iterations, scram_keys_t *out)
{
    unsigned char salted[SCRAM_MAX_HASH], client_key[SCRAM_MAX_HASH];
    size_t hl = scram_hash_len(h);
    int rc = -1;

    memset(out, 0, sizeof *out);
    if (!hl || !password || !salt || salt_len == 0 || salt_len > SCRAM_MAX_SALT ||
        iterations == 0 || iterations > INT_MAX)
        return -1;
    if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len, (int)iterations,
                          scram_md(h), (int)hl, salted) != 1)
        goto out;
    if (scram_hmac(h, salted, hl, "Client Key", 10, client_key) < 0 ||
        scram_digest(h, client_key, hl, out->stored_key) < 0 ||
        scram_hmac(h, salted, hl, "Server Key", 10, out->server_key) < 0)
        goto out;
    out->hash = h;
    out->iterations = iterations;
    memcpy(out->salt, salt, salt_len);
    out->salt_len = salt_len;
    rc = 0;
out:
    OPENSSL_cleanse(salted, sizeof salted);
    OPENSSL_cleanse(client_key, sizeof client_key);
    if (rc < 0)
        OPENSSL_cleanse(out, sizeof *out);
    return rc;
}

int scram_keys_new(scram_hash_t h, const char *password, unsigned iterations, scram_keys_t *out)
{
    unsigned char salt[16];
    if (RAND_bytes(salt, sizeof salt) != 1)
        return -1;
    return scram_keys_derive(h, password, salt, sizeof salt, iterations, out);
}

void scram_keys_format(const scram_keys_t *k, strbuf_t *out)
{
    size_t hl = scram_hash_len(k->hash);
    strbuf_printf(out, "%s:%u:", k->hash == SCRAM_SHA1 ? "SHA-1" : "SHA-256", k->iterations);
    base64_encode(k->salt, k->salt_len, out);
    strbuf_putc(out, ':');
    base64_encode(k->stored_key, hl, out);
    strbuf_putc(out, ':');
    base64_encode(k->server_key, hl, out);
}

/* Decodes exactly want bytes (or 1..max when want is 0) of base64 into dst. */
static int scram_b64_field(const char *s, size_t n, unsigned char *dst, size_t want, size_t max,
                           size_t *got)
{
    strbuf_t sb;
    strbuf_init(&sb);
    int ok = base64_decode(s, n, &sb) == 0 && (want ? sb.len == want : sb.len >= 1 && sb.len <= max);
    if (ok) {
        memcpy(dst, sb.data, sb.len);
        if (got)
            *got = sb.len;
    }
    if (sb.data)
        OPENSSL_cleanse(sb.data, sb.cap);
    strbuf_free(&sb);
    return ok ? 0 : -1;
}

/* Strict decimal: 1..max, no sign, no leading zero, no overflow. */
static int scram_parse_uint(const char *s, size_t n, unsigned long max, unsigned *out)
{
    unsigned long v = 0;
    if (n == 0 || n > 10 || s[0] == '0')
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

int scram_keys_parse(const char *s, scram_keys_t *out)
{
    const char *f[5];
    size_t fl[5];
    const char *p = s;
    memset(out, 0, sizeof *out);
    for (int i = 0; i < 5; i++) {
        const char *e = strchr(p, ':');
        if ((i < 4) != (e != NULL))
            return -1;
        f[i] = p;
        fl[i] = e ? (size_t)(e - p) : strlen(p);
        p = e ? e + 1 : p;
    }
    if (fl[0] == 5 && memcmp(f[0], "SHA-1", 5) == 0)
        out->hash = SCRAM_SHA1;
    else if (fl[0] == 7 && memcmp(f[0], "SHA-256", 7) == 0)
        out->hash = SCRAM_SHA256;
    else
        return -1;
    size_t hl = scram_hash_len(out->hash);
    if (scram_parse_uint(f[1], fl[1], INT_MAX, &out->iterations) < 0 ||
        scram_b64_field(f[2], fl[2], out->salt, 0, SCRAM_MAX_SALT, &out->salt_len) < 0 ||
        scram_b64_field(f[3], fl[3], out->stored_key, hl, hl, NULL) < 0 ||
        scram_b64_field(f[4], fl[4], out->server_key, hl, hl, NULL) < 0) {
        OPENSSL_cleanse(out, sizeof *out);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ wire syntax */

/* Appends s as a saslname (',' -> "=2C", '=' -> "=3D"). */
static void scram_escape(const char *s, strbuf_t *out)
{
    for (; *s; s++) {
        if (*s == ',')
            strbuf_puts(out, "=2C");
        else if (*s == '=')
            strbuf_puts(out, "=3D");
        else
            strbuf_putc(out, *s);
    }
}

/* Decodes a saslname of n bytes into a new string; NULL if empty, if '=' is not
 * followed by 2C or 3D, or if the result is not UTF-8. */
static char *scram_unescape(const char *s, size_t n)
{
    strbuf_t sb;
    strbuf_init(&sb);
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '=') {
            strbuf_putc(&sb, s[i]);
        } else if (n - i >= 3 && s[i + 1] == '2' && s[i + 2] == 'C') {
            strbuf_putc(&sb, ',');
            i += 2;
        } else if (n - i >= 3 && s[i + 1] == '3' && s[i + 2] == 'D') {
            strbuf_putc(&sb, '=');
            i += 2;
        } else {
            strbuf_free(&sb);
            return NULL;
        }
    }
    if (sb.len == 0 || !sasl_utf8_valid(sb.data, sb.len)) {
        strbuf_free(&sb);
        return NULL;
    }
    return strbuf_steal(&sb);
}

/* A cursor over one message; attributes are "x=value" separated by ','. */
typedef struct scram_cursor {
    const char *p, *end;
} scram_cursor_t;

/* Reads attribute 'name' at the cursor: its value span, advancing past it and
 * the following ',' if any. -1 if the next attribute is not 'name'. */
static int scram_attr(scram_cursor_t *c, char name, const char **val, size_t *len)
{
    if (c->end - c->p < 2 || c->p[0] != name || c->p[1] != '=')
        return -1;
    const char *v = c->p + 2;
    const char *e = memchr(v, ',', (size_t)(c->end - v));
    *val = v;
    *len = (size_t)((e ? e : c->end) - v);
    c->p = e ? e + 1 : c->end;
    /* a trailing ',' with nothing after it is a syntax error */
    return e && c->p == c->end ? -1 : 0;
}

static int scram_at_end(const scram_cursor_t *c)
{
    return c->p == c->end;
}

/* RFC 5802 "printable": %x21-2B / %x2D-7E. */
static int scram_printable(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
            return 0;
    return 1;
}

/* Skips optional extensions (attr-val *("," attr-val)) up to the end, or up to
 * an attribute named 'stop' (the proof) if stop is not 0. */
static int scram_skip_extensions(scram_cursor_t *c, char stop)
{
    while (!scram_at_end(c)) {
        char a = c->p[0];
        if (stop && a == stop)
            return 0;
        if (!((a >= 'a' && a <= 'z') || (a >= 'A' && a <= 'Z')) || a == 'm')
            return -1;
        const char *v;
        size_t n;
        if (scram_attr(c, a, &v, &n) < 0 || n == 0 || !sasl_utf8_valid(v, n))
            return -1;
    }
    return 0;
}

static void scram_random_nonce(strbuf_t *out)
{
    unsigned char r[SCRAM_NONCE_BYTES];
    if (RAND_bytes(r, sizeof r) != 1)
        abort(); /* no entropy: a broken environment */
    base64_encode(r, sizeof r, out);
}

/* Proof and signatures over AuthMessage (RFC 5802 §3). */
static int scram_auth_message(strbuf_t *am, const char *client_first_bare,
                              const char *server_first, const char *client_final_wo_proof,
                              size_t wo_len)
{
    strbuf_reset(am);
    strbuf_puts(am, client_first_bare);
    strbuf_putc(am, ',');
    strbuf_puts(am, server_first);
    strbuf_putc(am, ',');
    strbuf_append(am, client_final_wo_proof, wo_len);
    return 0;
}

/* --------------------------------------------------------------- mechanisms */

typedef enum sasl_mech_kind { SASL_KIND_SCRAM, SASL_KIND_PLAIN } sasl_mech_kind_t;

typedef struct sasl_mech {
    const char *name;
    sasl_mech_kind_t kind;
    scram_hash_t hash;
    int plus;
} sasl_mech_t;

static const sasl_mech_t sasl_mechs[] = {
    { "SCRAM-SHA-256-PLUS", SASL_KIND_SCRAM, SCRAM_SHA256, 1 },
    { "SCRAM-SHA-256", SASL_KIND_SCRAM, SCRAM_SHA256, 0 },
    { "SCRAM-SHA-1-PLUS", SASL_KIND_SCRAM, SCRAM_SHA1, 1 },
    { "SCRAM-SHA-1", SASL_KIND_SCRAM, SCRAM_SHA1, 0 },
    { "PLAIN", SASL_KIND_PLAIN, 0, 0 },
};

static const sasl_mech_t *sasl_mech_find(const char *name)
{
    for (size_t i = 0; name && i < sizeof sasl_mechs / sizeof sasl_mechs[0]; i++)
        if (strcmp(name, sasl_mechs[i].name) == 0)
            return &sasl_mechs[i];
    return NULL;
}

/* ------------------------------------------------------------------ server */

typedef enum scram_server_state {
    SRV_START,       /* waiting for the initial response */
    SRV_WAIT_FINAL,  /* server-first sent */
    SRV_DONE,
    SRV_FAILED,
} scram_server_state_t;

struct sasl_server {
    const sasl_mech_t *mech;
    sasl_lookup_fn lookup;
    void *ctx;
    int plus_offered;
    /* copies of the TLS layer's channel binding data (it may go away first) */
    unsigned char *cb_exporter, *cb_endpoint, *cb_unique;
    size_t cb_exporter_len, cb_endpoint_len, cb_unique_len;

    scram_server_state_t state;
    int sent_empty;          /* empty challenge sent for a missing initial response */
    const char *condition;   /* static string, set on failure */
    char *authcid, *authzid;
    char *fixed_nonce;       /* tests only */

    char *gs2_header;        /* as received, e.g. "p=tls-exporter,," */
    const unsigned char *cb_data; /* points at one of the copies above, or NULL */
    size_t cb_len;
    char *client_first_bare, *server_first, *nonce;
    scram_keys_t keys;
    int fake;                /* unknown user: fail at the end whatever the proof */
};

static unsigned char *sasl_memdup(const unsigned char *p, size_t n)
{
    if (!p)
        return NULL;
    unsigned char *q = xmalloc(n ? n : 1);
    memcpy(q, p, n);
    return q;
}

sasl_server_t *sasl_server_new(const char *mech, sasl_lookup_fn lookup, void *ctx,
                               const sasl_cbind_t *cbind, int plus_offered)
{
    const sasl_mech_t *m = sasl_mech_find(mech);
    if (!m)
        return NULL;
    sasl_server_t *s = xcalloc(1, sizeof *s);
    s->mech = m;
    s->lookup = lookup;
    s->ctx = ctx;
    s->plus_offered = plus_offered;
    if (cbind) {
        s->cb_exporter = sasl_memdup(cbind->tls_exporter, cbind->tls_exporter_len);
        s->cb_exporter_len = cbind->tls_exporter ? cbind->tls_exporter_len : 0;
        s->cb_endpoint = sasl_memdup(cbind->tls_server_end_point, cbind->tls_server_end_point_len);
        s->cb_endpoint_len = cbind->tls_server_end_point ? cbind->tls_server_end_point_len : 0;
        s->cb_unique = sasl_memdup(cbind->tls_unique, cbind->tls_unique_len);
        s->cb_unique_len = cbind->tls_unique ? cbind->tls_unique_len : 0;
    }
    return s;
}

void sasl_server_free(sasl_server_t *s)
{
    if (!s)
        return;
    free(s->cb_exporter);
    free(s->cb_endpoint);
    free(s->cb_unique);
    free(s->authcid);
    free(s->authzid);
    free(s->fixed_nonce);
    free(s->gs2_header);
    free(s->client_first_bare);
    free(s->server_first);
    free(s->nonce);
    OPENSSL_cleanse(&s->keys, sizeof s->keys);
    free(s);
}

void sasl_server_set_nonce(sasl_server_t *s, const char *nonce)
{
    free(s->fixed_nonce);
    s->fixed_nonce = nonce ? xstrdup(nonce) : NULL;
}

const char *sasl_server_condition(const sasl_server_t *s)
{
    return s->state == SRV_FAILED ? s->condition : NULL;
}

const char *sasl_server_authcid(const sasl_server_t *s)
{
    return s->state == SRV_DONE ? s->authcid : NULL;
}

const char *sasl_server_authzid(const sasl_server_t *s)
{
    return s->state == SRV_DONE ? s->authzid : NULL;
}

static sasl_result_t scram_server_fail(sasl_server_t *s, const char *condition)
{
    s->state = SRV_FAILED;
    s->condition = condition;
    return SASL_FAIL;
}

/* client-first-message (RFC 5802 §7): gs2-header client-first-message-bare. */
static sasl_result_t scram_server_first(sasl_server_t *s, const char *msg, size_t len,
                                        strbuf_t *out)
{
    scram_cursor_t c = { msg, msg + len };
    const char *v;
    size_t n;
    char flag = msg[0];

    /* gs2-cbind-flag */
    if (flag == 'n' || flag == 'y') {
        if (len < 2 || msg[1] != ',')
            return scram_server_fail(s, "malformed-request");
        c.p += 2;
    } else if (flag == 'p') {
        if (scram_attr(&c, 'p', &v, &n) < 0 || n == 0)
            return scram_server_fail(s, "malformed-request");
        for (size_t i = 0; i < n; i++) {
            char ch = v[i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '-'))
                return scram_server_fail(s, "malformed-request");
        }
        if (!s->mech->plus) /* RFC 5802 §6: 'p' only with a -PLUS mechanism */
            return scram_server_fail(s, "malformed-request");
        if (n == 12 && memcmp(v, "tls-exporter", 12) == 0 && s->cb_exporter) {
            s->cb_data = s->cb_exporter, s->cb_len = s->cb_exporter_len;
        } else if (n == 20 && memcmp(v, "tls-server-end-point", 20) == 0 && s->cb_endpoint) {
            s->cb_data = s->cb_endpoint, s->cb_len = s->cb_endpoint_len;
        } else if (n == 10 && memcmp(v, "tls-unique", 10) == 0 && s->cb_unique) {
            s->cb_data = s->cb_unique, s->cb_len = s->cb_unique_len;
        } else {
            return scram_server_fail(s, "not-authorized"); /* unsupported binding type */
        }
    } else {
        return scram_server_fail(s, "malformed-request");
    }
    if (flag != 'p' && s->mech->plus)
        return scram_server_fail(s, "malformed-request");
    /* 'y': the client could bind but believes we cannot. We offered -PLUS, so
     * someone stripped it from the list: a downgrade (RFC 5802 §6). */
    if (flag == 'y' && s->plus_offered)
        return scram_server_fail(s, "not-authorized");

    /* [ authzid ] "," */
    char *authzid = NULL;
    if (c.p < c.end && c.p[0] == 'a') {
        if (scram_attr(&c, 'a', &v, &n) < 0 || !(authzid = scram_unescape(v, n)))
            return scram_server_fail(s, "malformed-request");
    } else if (c.p < c.end && c.p[0] == ',') {
        c.p++;
    } else {
        return scram_server_fail(s, "malformed-request");
    }
    s->authzid = authzid;
    s->gs2_header = xstrndup(msg, (size_t)(c.p - msg));

    /* client-first-message-bare */
    const char *bare = c.p;
    if (c.p < c.end && c.p[0] == 'm') /* reserved mandatory extension */
        return scram_server_fail(s, "malformed-request");
    char *name = NULL;
    if (scram_attr(&c, 'n', &v, &n) < 0 || !(name = scram_unescape(v, n)))
        return scram_server_fail(s, "malformed-request");
    s->authcid = sasl_saslprep(name, 1);
    free(name);
    if (!s->authcid || !*s->authcid)
        return scram_server_fail(s, "malformed-request");
    const char *cnonce;
    size_t cnonce_len;
    if (scram_attr(&c, 'r', &cnonce, &cnonce_len) < 0 || !scram_printable(cnonce, cnonce_len))
        return scram_server_fail(s, "malformed-request");
    if (scram_skip_extensions(&c, 0) < 0)
        return scram_server_fail(s, "malformed-request");
    s->client_first_bare = xstrndup(bare, (size_t)(c.end - bare));

    scram_hash_t h = s->mech->hash;
    if (!s->lookup || s->lookup(s->ctx, s->authcid, h, &s->keys) < 0 || s->keys.hash != h ||
        s->keys.salt_len == 0 || s->keys.salt_len > SCRAM_MAX_SALT || s->keys.iterations == 0) {
        sasl_fake_keys(h, s->authcid, &s->keys);
        s->fake = 1;
    }

    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_append(&sb, cnonce, cnonce_len);
    if (s->fixed_nonce)
        strbuf_puts(&sb, s->fixed_nonce);
    else
        scram_random_nonce(&sb);
    s->nonce = strbuf_steal(&sb);

    strbuf_printf(&sb, "r=%s,s=", s->nonce);
    base64_encode(s->keys.salt, s->keys.salt_len, &sb);
    strbuf_printf(&sb, ",i=%u", s->keys.iterations);
    s->server_first = xstrdup(sb.data);
    strbuf_append(out, sb.data, sb.len);
    strbuf_free(&sb);
    s->state = SRV_WAIT_FINAL;
    return SASL_CONTINUE;
}

/* client-final-message: channel-binding "," nonce ["," extensions] "," proof. */
static sasl_result_t scram_server_final(sasl_server_t *s, const char *msg, size_t len,
                                        strbuf_t *out)
{
    scram_cursor_t c = { msg, msg + len };
    const char *v, *proof_b64;
    size_t n, proof_len;
    size_t hl = scram_hash_len(s->mech->hash);
    strbuf_t cb, am;
    unsigned char proof[SCRAM_MAX_HASH], sig[SCRAM_MAX_HASH], key[SCRAM_MAX_HASH];
    unsigned char stored[SCRAM_MAX_HASH];
    sasl_result_t rc;

    strbuf_init(&cb);
    strbuf_init(&am);
    if (scram_attr(&c, 'c', &v, &n) < 0 || base64_decode(v, n, &cb) < 0) {
        rc = scram_server_fail(s, "malformed-request");
        goto out;
    }
    const char *nonce;
    size_t nonce_len;
    if (scram_attr(&c, 'r', &nonce, &nonce_len) < 0 || !scram_printable(nonce, nonce_len) ||
        scram_skip_extensions(&c, 'p') < 0) {
        rc = scram_server_fail(s, "malformed-request");
        goto out;
    }
    const char *wo_proof_end = c.p - 1; /* the ',' before "p=" */
    if (scram_at_end(&c) || scram_attr(&c, 'p', &proof_b64, &proof_len) < 0 ||
        !scram_at_end(&c) ||
        scram_b64_field(proof_b64, proof_len, proof, hl, hl, NULL) < 0) {
        rc = scram_server_fail(s, "malformed-request");
        goto out;
    }

    /* c= must carry our gs2 header and, with 'p', our own binding data. */
    size_t gl = strlen(s->gs2_header);
    if (cb.len != gl + s->cb_len || memcmp(cb.data, s->gs2_header, gl) != 0 ||
        (s->cb_len && !sasl_ct_equal(cb.data + gl, s->cb_data, s->cb_len))) {
        rc = scram_server_fail(s, "not-authorized");
        goto out;
    }
    if (nonce_len != strlen(s->nonce) || memcmp(nonce, s->nonce, nonce_len) != 0) {
        rc = scram_server_fail(s, "not-authorized");
        goto out;
    }

    /* ClientKey = proof XOR HMAC(StoredKey, AuthMessage); H(ClientKey) == StoredKey */
    scram_auth_message(&am, s->client_first_bare, s->server_first, msg,
                       (size_t)(wo_proof_end - msg));
    if (scram_hmac(s->mech->hash, s->keys.stored_key, hl, am.data, am.len, sig) < 0) {
        rc = scram_server_fail(s, "temporary-auth-failure");
        goto out;
    }
    for (size_t i = 0; i < hl; i++)
        key[i] = proof[i] ^ sig[i];
    if (scram_digest(s->mech->hash, key, hl, stored) < 0) {
        rc = scram_server_fail(s, "temporary-auth-failure");
        goto out;
    }
    int match = sasl_ct_equal(stored, s->keys.stored_key, hl);
    if (!match || s->fake) {
        rc = scram_server_fail(s, "not-authorized");
        goto out;
    }
    /* Checked only once the password is right, so a wrong password never
     * learns anything from the authzid answer. */
    if (!sasl_authzid_ok(s->authzid, s->authcid)) {
        rc = scram_server_fail(s, "invalid-authzid");
        goto out;
    }
    if (scram_hmac(s->mech->hash, s->keys.server_key, hl, am.data, am.len, sig) < 0) {
        rc = scram_server_fail(s, "temporary-auth-failure");
        goto out;
    }
    strbuf_puts(out, "v=");
    base64_encode(sig, hl, out);
    s->state = SRV_DONE;
    rc = SASL_DONE;
out:
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(proof, sizeof proof);
    strbuf_free(&cb);
    strbuf_free(&am);
    return rc;
}

sasl_result_t sasl_server_step(sasl_server_t *s, const char *in, size_t inlen, strbuf_t *out)
{
    strbuf_reset(out);
    if (s->state == SRV_DONE || s->state == SRV_FAILED)
        return scram_server_fail(s, s->condition ? s->condition : "malformed-request");
    if (inlen > SASL_MAX_MESSAGE)
        return scram_server_fail(s, "malformed-request");
    /* No initial response: RFC 6120 §6.4.2 has us send an empty challenge.
     * An empty message is never valid for PLAIN or SCRAM, so this is safe. */
    if (s->state == SRV_START && inlen == 0 && !s->sent_empty) {
        s->sent_empty = 1;
        return SASL_CONTINUE;
    }
    if (inlen == 0 || !in)
        return scram_server_fail(s, "malformed-request");

    if (s->mech->kind == SASL_KIND_PLAIN) {
        const char *cond = NULL;
        if (sasl_plain_server_check(in, inlen, s->lookup, s->ctx, &s->authcid, &s->authzid,
                                    &cond) < 0)
            return scram_server_fail(s, cond ? cond : "not-authorized");
        s->state = SRV_DONE;
        return SASL_DONE;
    }

    /* SCRAM messages are text: an embedded NUL is a syntax error. */
    if (memchr(in, '\0', inlen))
        return scram_server_fail(s, "malformed-request");
    char *msg = xstrndup(in, inlen);
    sasl_result_t rc = s->state == SRV_START ? scram_server_first(s, msg, inlen, out)
                                             : scram_server_final(s, msg, inlen, out);
    free(msg);
    if (rc == SASL_FAIL)
        strbuf_reset(out);
    return rc;
}

/* ------------------------------------------------------------------ client */

typedef enum scram_client_state {
    CLI_START,
    CLI_WAIT_FIRST,  /* client-first sent */
    CLI_WAIT_FINAL,  /* client-final sent */
    CLI_DONE,
    CLI_FAILED,
} scram_client_state_t;

struct sasl_client {
    const sasl_mech_t *mech;
    scram_client_state_t state;
    char *authcid, *password, *authzid;   /* password SASLprep'd */
    char *gs2_header;
    unsigned char *cb_data;
    size_t cb_len;
    char *nonce;                          /* client part */
    char *client_first_bare;
    unsigned char server_sig[SCRAM_MAX_HASH];
    scram_salted_t *salted_cache;         /* the caller's, may be NULL */
};

/* Channel binding choice: -PLUS binds with tls-exporter when the TLS layer has
 * it, else tls-server-end-point; without -PLUS, 'y' if we could bind (the
 * caller chose a plain SCRAM because the server did not offer -PLUS), 'n' if
 * there is no TLS binding data at all. A caller that wants no binding with a
 * server offering -PLUS passes cbind = NULL. */
sasl_client_t *sasl_client_new(const char *mech, const char *authcid, const char *password,
                               const char *authzid, const sasl_cbind_t *cbind)
{
    const sasl_mech_t *m = sasl_mech_find(mech);
    if (!m || !authcid || !*authcid || !password)
        return NULL;
    char *prepped = sasl_saslprep(password, 0);
    if (!prepped)
        return NULL;
    sasl_client_t *c = xcalloc(1, sizeof *c);
    c->mech = m;
    c->authcid = xstrdup(authcid);
    c->password = prepped;
    c->authzid = authzid && *authzid ? xstrdup(authzid) : NULL;

    strbuf_t sb;
    strbuf_init(&sb);
    int have_cb = cbind && (cbind->tls_exporter || cbind->tls_server_end_point);
    if (m->plus) {
        if (cbind && cbind->tls_exporter) {
            strbuf_puts(&sb, "p=tls-exporter,");
            c->cb_data = sasl_memdup(cbind->tls_exporter, cbind->tls_exporter_len);
            c->cb_len = cbind->tls_exporter_len;
        } else if (cbind && cbind->tls_server_end_point) {
            strbuf_puts(&sb, "p=tls-server-end-point,");
            c->cb_data = sasl_memdup(cbind->tls_server_end_point, cbind->tls_server_end_point_len);
            c->cb_len = cbind->tls_server_end_point_len;
        } else {
            strbuf_free(&sb);
            sasl_client_free(c);
            return NULL;
        }
    } else {
        strbuf_puts(&sb, have_cb ? "y," : "n,");
    }
    if (c->authzid) {
        strbuf_puts(&sb, "a=");
        scram_escape(c->authzid, &sb);
    }
    strbuf_putc(&sb, ',');
    c->gs2_header = strbuf_steal(&sb);
    return c;
}

void sasl_client_free(sasl_client_t *c)
{
    if (!c)
        return;
    if (c->password) {
        OPENSSL_cleanse(c->password, strlen(c->password));
        free(c->password);
    }
    free(c->authcid);
    free(c->authzid);
    free(c->gs2_header);
    free(c->cb_data);
    free(c->nonce);
    free(c->client_first_bare);
    OPENSSL_cleanse(c->server_sig, sizeof c->server_sig);
    free(c);
}

void sasl_client_set_nonce(sasl_client_t *c, const char *nonce)
{
    free(c->nonce);
    c->nonce = nonce ? xstrdup(nonce) : NULL;
}

void sasl_client_set_salted_cache(sasl_client_t *c, scram_salted_t *slot)
{
    c->salted_cache = slot;
}

/* SaltedPassword: from the caller's cache when hash, salt and iterations
 * match, else PBKDF2 (and the cache is filled). */
static int scram_client_salted(sasl_client_t *c, scram_hash_t h, const unsigned char *salt,
                               size_t salt_len, unsigned iter, unsigned char *salted)
{
    size_t hl = scram_hash_len(h);
    scram_salted_t *k = c->salted_cache;
    if (k && k->iterations == iter && k->hash == h && k->salt_len == salt_len &&
        !memcmp(k->salt, salt, salt_len)) {
        memcpy(salted, k->salted, hl);
        return 0;
    }
    if (PKCS5_PBKDF2_HMAC(c->password, (int)strlen(c->password), salt, (int)salt_len, (int)iter,
                          scram_md(h), (int)hl, salted) != 1)
        return -1;
    if (k && salt_len <= sizeof k->salt) {
        k->hash = h;
        k->iterations = iter;
        k->salt_len = salt_len;
        memcpy(k->salt, salt, salt_len);
        memcpy(k->salted, salted, hl);
    }
    return 0;
}

static sasl_result_t scram_client_fail(sasl_client_t *c, strbuf_t *out)
{
    strbuf_reset(out);
    c->state = CLI_FAILED;
    return SASL_FAIL;
}

/* server-first-message: [reserved-mext ","] nonce "," salt "," iteration-count
 * ["," extensions]. Computes the proof and the server signature we expect. */
static sasl_result_t scram_client_final(sasl_client_t *c, const char *msg, size_t len,
                                        strbuf_t *out)
{
    scram_cursor_t cur = { msg, msg + len };
    const char *nonce, *salt_b64, *iter_s;
    size_t nonce_len, salt_len, iter_len, cn = strlen(c->nonce);
    unsigned char salt[SCRAM_MAX_SALT * 4];
    unsigned iter;
    scram_hash_t h = c->mech->hash;
    size_t hl = scram_hash_len(h);
    unsigned char salted[SCRAM_MAX_HASH], ckey[SCRAM_MAX_HASH], stored[SCRAM_MAX_HASH];
    unsigned char csig[SCRAM_MAX_HASH], skey[SCRAM_MAX_HASH];
    strbuf_t am, wo;
    sasl_result_t rc = SASL_FAIL;

    if (scram_attr(&cur, 'r', &nonce, &nonce_len) < 0 || !scram_printable(nonce, nonce_len) ||
        nonce_len <= cn || memcmp(nonce, c->nonce, cn) != 0 ||
        scram_attr(&cur, 's', &salt_b64, &salt_len) < 0 ||
        scram_b64_field(salt_b64, salt_len, salt, 0, sizeof salt, &salt_len) < 0 ||
        scram_attr(&cur, 'i', &iter_s, &iter_len) < 0 ||
        scram_parse_uint(iter_s, iter_len, SCRAM_CLIENT_MAX_ITER, &iter) < 0 ||
        iter < SCRAM_CLIENT_MIN_ITER || scram_skip_extensions(&cur, 0) < 0)
        return scram_client_fail(c, out);

    strbuf_init(&am);
    strbuf_init(&wo);
    if (scram_client_salted(c, h, salt, salt_len, iter, salted) < 0 ||
        scram_hmac(h, salted, hl, "Client Key", 10, ckey) < 0 ||
        scram_digest(h, ckey, hl, stored) < 0 ||
        scram_hmac(h, salted, hl, "Server Key", 10, skey) < 0)
        goto out;

    /* client-final-message-without-proof: c=base64(gs2-header + cb-data),r=nonce */
    strbuf_t cbin;
    strbuf_init(&cbin);
    strbuf_puts(&cbin, c->gs2_header);
    if (c->cb_len)
        strbuf_append(&cbin, (const char *)c->cb_data, c->cb_len);
    strbuf_puts(&wo, "c=");
    base64_encode((const unsigned char *)cbin.data, cbin.len, &wo);
    strbuf_free(&cbin);
    strbuf_puts(&wo, ",r=");
    strbuf_append(&wo, nonce, nonce_len);

    scram_auth_message(&am, c->client_first_bare, msg, wo.data, wo.len);
    if (scram_hmac(h, stored, hl, am.data, am.len, csig) < 0 ||
        scram_hmac(h, skey, hl, am.data, am.len, c->server_sig) < 0)
        goto out;
    for (size_t i = 0; i < hl; i++)
        csig[i] ^= ckey[i]; /* ClientProof */
    strbuf_reset(out);
    strbuf_append(out, wo.data, wo.len);
    strbuf_puts(out, ",p=");
    base64_encode(csig, hl, out);
    c->state = CLI_WAIT_FINAL;
    rc = SASL_CONTINUE;
out:
    OPENSSL_cleanse(salted, sizeof salted);
    OPENSSL_cleanse(ckey, sizeof ckey);
    OPENSSL_cleanse(skey, sizeof skey);
    OPENSSL_cleanse(csig, sizeof csig);
    strbuf_free(&am);
    strbuf_free(&wo);
    return rc == SASL_FAIL ? scram_client_fail(c, out) : rc;
}

/* server-final-message: ("e=" error / "v=" verifier) ["," extensions]. */
static sasl_result_t scram_client_verify(sasl_client_t *c, const char *msg, size_t len,
                                         strbuf_t *out)
{
    scram_cursor_t cur = { msg, msg + len };
    const char *v;
    size_t n, hl = scram_hash_len(c->mech->hash);
    unsigned char sig[SCRAM_MAX_HASH];
    if (scram_attr(&cur, 'v', &v, &n) < 0 || scram_b64_field(v, n, sig, hl, hl, NULL) < 0 ||
        scram_skip_extensions(&cur, 0) < 0 || !sasl_ct_equal(sig, c->server_sig, hl))
        return scram_client_fail(c, out);
    strbuf_reset(out);
    c->state = CLI_DONE;
    return SASL_DONE;
}

sasl_result_t sasl_client_step(sasl_client_t *c, const char *in, size_t inlen, strbuf_t *out)
{
    strbuf_reset(out);
    if (c->state == CLI_DONE || c->state == CLI_FAILED)
        return scram_client_fail(c, out);
    if (c->state == CLI_START) {
        if (c->mech->kind == SASL_KIND_PLAIN) {
            sasl_plain_client_message(c->authzid, c->authcid, c->password, out);
            c->state = CLI_WAIT_FINAL;
            return SASL_CONTINUE;
        }
        if (!c->nonce) {
            strbuf_t nb;
            strbuf_init(&nb);
            scram_random_nonce(&nb);
            c->nonce = strbuf_steal(&nb);
        }
        strbuf_t bare;
        strbuf_init(&bare);
        strbuf_puts(&bare, "n=");
        scram_escape(c->authcid, &bare);
        strbuf_printf(&bare, ",r=%s", c->nonce);
        c->client_first_bare = strbuf_steal(&bare);
        strbuf_puts(out, c->gs2_header);
        strbuf_puts(out, c->client_first_bare);
        c->state = CLI_WAIT_FIRST;
        return SASL_CONTINUE;
    }
    if (inlen > SASL_MAX_MESSAGE || (inlen && (!in || memchr(in, '\0', inlen))))
        return scram_client_fail(c, out);
    if (c->mech->kind == SASL_KIND_PLAIN) {
        /* PLAIN has nothing after the initial response: <success/> is empty. */
        if (inlen != 0)
            return scram_client_fail(c, out);
        c->state = CLI_DONE;
        return SASL_DONE;
    }
    if (inlen == 0)
        return scram_client_fail(c, out);
    char *msg = xstrndup(in, inlen);
    sasl_result_t rc = c->state == CLI_WAIT_FIRST ? scram_client_final(c, msg, inlen, out)
                                                  : scram_client_verify(c, msg, inlen, out);
    free(msg);
    return rc;
}
