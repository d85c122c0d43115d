/* tls: OpenSSL contexts, self-signed certificate bootstrap, peer identity and
 * channel-binding data (see tls.h).
 *
 * Owns no global state beyond what OpenSSL keeps. Invariants: every context is
 * built by tls_ctx_common, so server and client ends can never drift apart in
 * protocol policy; every failure path leaves the OpenSSL error queue drained
 * into the caller's err buffer, so a later, unrelated error is not blamed on
 * stale entries. */
#include "tls.h"
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* TLS 1.2 suites: forward secrecy and AEAD only. TLS 1.3 uses OpenSSL's
 * defaults, which are all acceptable. */
#define TLS_CIPHERS_12 "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL"

static const unsigned char tls_sid_ctx[] = "weft";

void tls_error_string(char *buf, size_t len)
{
    if (!len)
        return;
    buf[0] = '\0';
    size_t used = 0;
    unsigned long e;
    while ((e = ERR_get_error()) != 0) {
        char one[256];
        ERR_error_string_n(e, one, sizeof one);
        int n = snprintf(buf + used, len - used, "%s%s", used ? "; " : "", one);
        if (n < 0 || (size_t)n >= len - used)
            used = len - 1;   /* full: keep draining so the queue ends empty */
        else
            used += (size_t)n;
    }
    if (!used)
        snprintf(buf, len, "no OpenSSL error detail");
}

/* Formats "what: <openssl errors>" into err; returns NULL for convenience. */
static void *tls_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void *tls_fail(char *err, size_t errlen, const char *fmt, ...)
{
    char detail[512];
    tls_error_string(detail, sizeof detail);
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < errlen)
            snprintf(err + n, errlen - (size_t)n, ": %s", detail);
    }
    return NULL;
}

/* Plain (non-OpenSSL) failure message. */
static int tls_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int tls_errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* The protocol policy shared by both ends. */
static SSL_CTX *tls_ctx_common(const SSL_METHOD *method, char *err, size_t errlen)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (!ctx)
        return tls_fail(err, errlen, "SSL_CTX_new");
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS_12)) {
        SSL_CTX_free(ctx);
        return tls_fail(err, errlen, "TLS protocol settings");
    }
    /* Compression invites CRIME; renegotiation has a history of DoS and
     * injection bugs and XMPP never needs it. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Thousands of idle XMPP connections: give back the 34 KB buffers. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

/* Keeps the handshake going whatever the chain's verdict; the verdict stays in
 * SSL_get_verify_result for tls_peer_cert_matches. */
static int tls_verify_accept_all(int preverify_ok, X509_STORE_CTX *store)
{
    (void)preverify_ok;
    (void)store;
    return 1;
}

static int tls_load_trust(SSL_CTX *ctx, const char *ca_file)
{
    if (ca_file)
        return SSL_CTX_load_verify_locations(ctx, ca_file, NULL);
    return SSL_CTX_set_default_verify_paths(ctx);
}

/* A configured file that cannot be opened is named with the system's reason
 * ("No such file or directory", "Permission denied"): OpenSSL's own report
 * of the same failure reads "system lib" and hides which file it was. */
int tls_file_check(const char *what, const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return tls_errf(err, errlen, "%s %s: %s", what, path, strerror(errno));
    struct stat st;
    int dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
    close(fd);
    if (dir)
        return tls_errf(err, errlen, "%s %s: %s", what, path, strerror(EISDIR));
    return 0;
}

SSL_CTX *tls_server_ctx_new(const char *cert_file, const char *key_file, const char *ca_file,
                            int client_cert, char *err, size_t errlen)
{
    if (tls_file_check("certificate", cert_file, err, errlen) < 0 ||
        tls_file_check("key", key_file, err, errlen) < 0 ||
        (client_cert != TLS_CLIENT_CERT_NONE && ca_file && tls_file_check("CA", ca_file, err, errlen) < 0))
        return NULL;
    SSL_CTX *ctx = tls_ctx_common(TLS_server_method(), err, errlen);
    if (!ctx)
        return NULL;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        SSL_CTX_free(ctx);
        return tls_fail(err, errlen, "cannot load certificate %s", cert_file);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        SSL_CTX_free(ctx);
        return tls_fail(err, errlen, "cannot load private key %s", key_file);
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        SSL_CTX_free(ctx);
        return tls_fail(err, errlen, "private key %s does not match certificate %s", key_file,
                        cert_file);
    }
    /* Needed for session resumption once client certificates are involved. */
    SSL_CTX_set_session_id_context(ctx, tls_sid_ctx, sizeof tls_sid_ctx - 1);

    if (client_cert != TLS_CLIENT_CERT_NONE) {
        if (tls_load_trust(ctx, ca_file) != 1) {
            SSL_CTX_free(ctx);
            return tls_fail(err, errlen, "cannot load CA %s", ca_file ? ca_file : "(system)");
        }
        if (ca_file) {
            /* Tell clients which CAs we accept, so they pick the right cert. */
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_file);
            if (names)
                SSL_CTX_set_client_CA_list(ctx, names);
        }
        if (client_cert == TLS_CLIENT_CERT_REQUIRE)
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        else
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, tls_verify_accept_all);
    }
    ERR_clear_error();
    return ctx;
}

void tls_server_set_tickets(SSL_CTX *ctx, int on)
{
    /* SSL_OP_NO_TICKET alone would still send TLS 1.3 tickets (stateful
     * ones, kept in the server's cache); a count of 0 sends none. */
    if (on) {
        SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, 2);
    } else {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, 0);
    }
}

SSL_CTX *tls_client_ctx_new(const char *ca_file, int verify, char *err, size_t errlen)
{
    SSL_CTX *ctx = tls_ctx_common(TLS_client_method(), err, errlen);
    if (!ctx)
        return NULL;
    /* Trust is loaded even when not enforced: the chain is still checked and
     * its verdict is what tls_peer_cert_matches reports. */
    if (tls_load_trust(ctx, ca_file) != 1) {
        SSL_CTX_free(ctx);
        return tls_fail(err, errlen, "cannot load CA %s", ca_file ? ca_file : "(system)");
    }
    SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    ERR_clear_error();
    return ctx;
}

int tls_client_set_peer_name(SSL *ssl, const char *name)
{
    if (!name || !*name)
        return -1;
    if (SSL_set_tlsext_host_name(ssl, name) != 1)
        return -1;
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (X509_VERIFY_PARAM_set1_host(param, name, 0) != 1)
        return -1;
    return 0;
}

/* ---- channel binding ---- */

int tls_cbind_exporter(SSL *ssl, unsigned char out[32])
{
    static const char label[] = "EXPORTER-Channel-Binding";
    /* Before TLS 1.3 the exporter is not bound to the full handshake unless
     * extended master secret is in use; RFC 9266 restricts it to 1.3. */
    if (!SSL_is_init_finished(ssl) || SSL_version(ssl) != TLS1_3_VERSION)
        return -1;
    if (SSL_export_keying_material(ssl, out, 32, label, sizeof label - 1, NULL, 0, 0) != 1) {
        ERR_clear_error();
        return -1;
    }
    return 0;
}

int tls_cbind_server_end_point(SSL *ssl, int is_server, unsigned char *out, size_t *len)
{
    X509 *cert;
    if (is_server) {
        cert = SSL_get_certificate(ssl);
        if (cert)
            X509_up_ref(cert);   /* uniform free below */
    } else {
        cert = SSL_get1_peer_certificate(ssl);
    }
    if (!cert)
        return -1;
    int md_nid = NID_undef;
    int rc = -1;
    if (X509_get_signature_info(cert, &md_nid, NULL, NULL, NULL) == 1) {
        const EVP_MD *md = NULL;
        if (md_nid == NID_md5 || md_nid == NID_sha1)
            md = EVP_sha256();   /* RFC 5929 §4.1 */
        else if (md_nid != NID_undef)
            md = EVP_get_digestbynid(md_nid);
        unsigned int n = 0;
        if (md && X509_digest(cert, md, out, &n) == 1 && n <= TLS_CBIND_MAX) {
            *len = n;
            rc = 0;
        }
    }
    X509_free(cert);
    ERR_clear_error();
    return rc;
}

int tls_peer_cert_matches(SSL *ssl, const char *domain)
{
    if (!domain || !*domain)
        return 0;
    X509 *cert = SSL_get1_peer_certificate(ssl);
    if (!cert)
        return 0;
    int ok = SSL_get_verify_result(ssl) == X509_V_OK &&
             X509_check_host(cert, domain, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
    X509_free(cert);
    return ok;
}

/* ---- self-signed bootstrap ---- */

/* A DNS name in A-label form; anything else (',' in particular) could inject
 * extra entries into the SAN configuration string below. */
static int tls_domain_ok(const char *d)
{
    size_t n = strlen(d);
    if (n == 0 || n > 253 || d[0] == '.' || d[0] == '-' || d[n - 1] == '.')
        return 0;
    for (const char *p = d; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
            return 0;
        if (*p == '.' && p[1] == '.')
            return 0;
    }
    return 1;
}

/* mkdir -p of path's parent directory. */
static int tls_mkdir_parents(const char *path, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
        return tls_errf(err, errlen, "%s: path too long", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1; ; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
            return tls_errf(err, errlen, "mkdir %s: %s", dir, strerror(errno));
        *p = saved;
        if (!saved)
            break;
    }
    return 0;
}

/* Opens the directory holding path, for flock: serialises concurrent
 * generators (c2s and s2s starting together) without leaving a lock file. */
static int tls_open_parent(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    return open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static EVP_PKEY *tls_gen_p256(void)
{
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, NULL);
    if (kctx && EVP_PKEY_keygen_init(kctx) == 1 &&
        EVP_PKEY_CTX_set_ec_paramgen_curve_nid(kctx, NID_X9_62_prime256v1) == 1)
        EVP_PKEY_keygen(kctx, &pkey);
    EVP_PKEY_CTX_free(kctx);
    return pkey;
}

static int tls_add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

static X509 *tls_make_cert(EVP_PKEY *pkey, const char *domain)
{
    X509 *x = X509_new();
    if (!x)
        return NULL;
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    X509_NAME *name = X509_get_subject_name(x);
    char san[600];
    snprintf(san, sizeof san, "DNS:%s,DNS:*.%s", domain, domain);

    if (RAND_bytes(serial, sizeof serial) != 1)
        goto fail;
    serial[0] &= 0x7f;   /* positive, as RFC 5280 requires */
    serial[0] |= 0x01;   /* and non-zero */
    bn = BN_bin2bn(serial, sizeof serial, NULL);
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
        goto fail;
    if (X509_set_version(x, 2) != 1 ||   /* v3 */
        !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||   /* tolerate clock skew */
        !X509_time_adj_ex(X509_getm_notAfter(x), 3650, 0, NULL) ||
        X509_set_pubkey(x, pkey) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)domain, -1,
                                   -1, 0) != 1 ||
        X509_set_issuer_name(x, name) != 1)
        goto fail;
    /* No keyUsage: with one lacking keyCertSign, OpenSSL would not treat the
     * certificate as self-issued, and peers could not pin it as a trust anchor. */
    if (tls_add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        tls_add_ext(x, NID_ext_key_usage, "serverAuth,clientAuth") < 0 ||
        tls_add_ext(x, NID_subject_key_identifier, "hash") < 0 ||
        tls_add_ext(x, NID_subject_alt_name, san) < 0)
        goto fail;
    if (X509_sign(x, pkey, EVP_sha256()) <= 0)
        goto fail;
    BN_free(bn);
    return x;
fail:
    BN_free(bn);
    X509_free(x);
    return NULL;
}

/* Writes a PEM object to a temporary file next to path with exactly mode, then
 * renames it into place, so readers never see a half-written file. */
static int tls_write_pem(const char *path, mode_t mode, EVP_PKEY *pkey, X509 *x, char *err,
                         size_t errlen)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return tls_errf(err, errlen, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return tls_errf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
    if (fchmod(fd, mode) < 0) {   /* the umask must not change it */
        int e = errno;
        close(fd);
        unlink(tmp);
        return tls_errf(err, errlen, "chmod %s: %s", tmp, strerror(e));
    }
    FILE *fp = fdopen(fd, "w");
    if (!fp) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return tls_errf(err, errlen, "fdopen %s: %s", tmp, strerror(e));
    }
    int ok = pkey ? PEM_write_PrivateKey(fp, pkey, NULL, NULL, 0, NULL, NULL)
                  : PEM_write_X509(fp, x);
    if (fflush(fp) != 0 || fsync(fileno(fp)) != 0)
        ok = 0;
    if (fclose(fp) != 0)
        ok = 0;
    if (!ok) {
        unlink(tmp);
        tls_fail(err, errlen, "cannot write %s", path);
        return -1;
    }
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return tls_errf(err, errlen, "rename %s: %s", path, strerror(e));
    }
    return 0;
}

int tls_selfsigned_ensure(const char *cert_path, const char *key_path, const char *domain,
                          char *err, size_t errlen)
{
    struct stat st;
    if (stat(cert_path, &st) == 0)
        return 0;
    if (errno != ENOENT)
        return tls_errf(err, errlen, "%s: %s", cert_path, strerror(errno));
    if (!domain || !tls_domain_ok(domain))
        return tls_errf(err, errlen, "cannot make a certificate for '%s': not a DNS name",
                        domain ? domain : "");
    if (tls_mkdir_parents(cert_path, err, errlen) < 0 ||
        tls_mkdir_parents(key_path, err, errlen) < 0)
        return -1;

    int lockfd = tls_open_parent(cert_path);
    if (lockfd < 0)
        return tls_errf(err, errlen, "%s: %s", cert_path, strerror(errno));
    if (flock(lockfd, LOCK_EX) < 0) {
        int e = errno;
        close(lockfd);
        return tls_errf(err, errlen, "lock for %s: %s", cert_path, strerror(e));
    }
    int rc = 0;
    /* Someone may have generated it while we waited for the lock. */
    if (stat(cert_path, &st) == 0)
        goto out;

    ERR_clear_error();
    EVP_PKEY *pkey = tls_gen_p256();
    X509 *x = pkey ? tls_make_cert(pkey, domain) : NULL;
    if (!x) {
        tls_fail(err, errlen, "cannot generate a certificate for %s", domain);
        rc = -1;
    } else if (tls_write_pem(key_path, 0600, pkey, NULL, err, errlen) < 0 ||
               /* key first: an existing cert then always has its key */
               tls_write_pem(cert_path, 0644, NULL, x, err, errlen) < 0) {
        rc = -1;
    }
    X509_free(x);
    EVP_PKEY_free(pkey);
out:
    flock(lockfd, LOCK_UN);
    close(lockfd);
    return rc;
}

int tls_cert_prepare(const char *cert_path, const char *key_path, int selfsigned,
                     const char *domain, char *err, size_t errlen)
{
    if (selfsigned && !strcmp(cert_path, TLS_DEFAULT_CERT))
        return tls_selfsigned_ensure(cert_path, key_path, domain, err, errlen);
    /* A path the operator typed is a certificate they mean to use: a typo or
     * a missing file must not turn into a fresh self-signed one. */
    struct stat st;
    if (selfsigned && stat(cert_path, &st) < 0 && errno == ENOENT)
        return tls_errf(err, errlen, "certificate %s: %s (tls.self-signed creates one only at the default "
                        "path, " TLS_DEFAULT_CERT ")", cert_path, strerror(ENOENT));
    return 0;
}

int tls_cbind_unique(SSL *ssl, int is_server, unsigned char *out, size_t *len)
{
    /* Client Finished first on a full handshake, server Finished on a resumed one. */
    int ours = is_server ? SSL_session_reused(ssl) : !SSL_session_reused(ssl);
    size_t n = ours ? SSL_get_finished(ssl, out, *len) : SSL_get_peer_finished(ssl, out, *len);
    if (n == 0 || n > *len)
        return -1;
    *len = n;
    return 0;
}
