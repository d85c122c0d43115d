/* test_tls: self-signed bootstrap, context policy, full in-process handshakes
 * over an OpenSSL BIO pair (no sockets, no threads: both ends are stepped in
 * turn), peer-name checks, client certificates and channel-binding agreement. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "tls.h"

static char tmpdir[256];
static char srv_cert[512], srv_key[512], cli_cert[512], cli_key[512];

static int group_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/weft_test_tls.XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(srv_cert, sizeof srv_cert, "%s/server/certs/cert.pem", tmpdir);
    snprintf(srv_key, sizeof srv_key, "%s/server/private/key.pem", tmpdir);
    snprintf(cli_cert, sizeof cli_cert, "%s/client/cert.pem", tmpdir);
    snprintf(cli_key, sizeof cli_key, "%s/client/key.pem", tmpdir);
    char err[256];
    if (tls_selfsigned_ensure(srv_cert, srv_key, "example.test", err, sizeof err) < 0 ||
        tls_selfsigned_ensure(cli_cert, cli_key, "client.test", err, sizeof err) < 0) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    return 0;
}

/* rm -r of the small tree made above (depth <= 3). */
static void rm_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rm_tree(sub);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static int group_teardown(void **state)
{
    (void)state;
    rm_tree(tmpdir);
    return 0;
}

static X509 *read_cert(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return NULL;
    X509 *x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    return x;
}

/* ---- handshake driver ---- */

typedef struct pair {
    SSL *c, *s;
} pair_t;

static void pair_new(pair_t *p, SSL_CTX *sctx, SSL_CTX *cctx)
{
    BIO *bc, *bs;
    assert_int_equal(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
    p->c = SSL_new(cctx);
    p->s = SSL_new(sctx);
    assert_non_null(p->c);
    assert_non_null(p->s);
    SSL_set_bio(p->c, bc, bc);
    SSL_set_bio(p->s, bs, bs);
    SSL_set_connect_state(p->c);
    SSL_set_accept_state(p->s);
}

static void pair_free(pair_t *p)
{
    SSL_free(p->c);
    SSL_free(p->s);
}

/* Steps both ends until both finish (0) or one fails (-1). */
static int pair_handshake(pair_t *p)
{
    int cdone = 0, sdone = 0;
    for (int i = 0; i < 100 && !(cdone && sdone); i++) {
        if (!cdone) {
            int r = SSL_do_handshake(p->c);
            if (r == 1)
                cdone = 1;
            else if (SSL_get_error(p->c, r) != SSL_ERROR_WANT_READ &&
                     SSL_get_error(p->c, r) != SSL_ERROR_WANT_WRITE)
                return -1;
        }
        if (!sdone) {
            int r = SSL_do_handshake(p->s);
            if (r == 1)
                sdone = 1;
            else if (SSL_get_error(p->s, r) != SSL_ERROR_WANT_READ &&
                     SSL_get_error(p->s, r) != SSL_ERROR_WANT_WRITE)
                return -1;
        }
    }
    if (!(cdone && sdone))
        return -1;
    /* Prove the channel carries data both ways. */
    char buf[16];
    if (SSL_write(p->c, "ping", 4) != 4)
        return -1;
    if (SSL_read(p->s, buf, sizeof buf) != 4 || memcmp(buf, "ping", 4) != 0)
        return -1;
    if (SSL_write(p->s, "pong", 4) != 4)
        return -1;
    if (SSL_read(p->c, buf, sizeof buf) != 4 || memcmp(buf, "pong", 4) != 0)
        return -1;
    return 0;
}

static SSL_CTX *server_ctx(int client_cert, const char *ca)
{
    char err[512];
    SSL_CTX *ctx = tls_server_ctx_new(srv_cert, srv_key, ca, client_cert, err, sizeof err);
    if (!ctx)
        fprintf(stderr, "server ctx: %s\n", err);
    assert_non_null(ctx);
    return ctx;
}

static SSL_CTX *client_ctx(int verify)
{
    char err[512];
    SSL_CTX *ctx = tls_client_ctx_new(srv_cert, verify, err, sizeof err);
    if (!ctx)
        fprintf(stderr, "client ctx: %s\n", err);
    assert_non_null(ctx);
    return ctx;
}

/* ---- tests ---- */

static void test_selfsigned_files(void **state)
{
    (void)state;
    struct stat st;
    assert_int_equal(stat(srv_key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(srv_cert, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);

    X509 *x = read_cert(srv_cert);
    assert_non_null(x);
    assert_int_equal(X509_get_version(x), 2);
    /* SAN: the domain and its subdomains (one label), nothing else. */
    assert_int_equal(X509_check_host(x, "example.test", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(x, "conference.example.test", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(x, "other.test", 0, 0, NULL), 0);
    assert_int_equal(X509_check_host(x, "a.b.example.test", 0, 0, NULL), 0);
    GENERAL_NAMES *san = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    assert_non_null(san);
    assert_int_equal(sk_GENERAL_NAME_num(san), 2);
    GENERAL_NAMES_free(san);
    /* Ten years, give or take the skew allowance. */
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)), 1);
    assert_in_range(days, 3649, 3651);
    /* Serial is positive and not trivially small. */
    const ASN1_INTEGER *serial = X509_get0_serialNumber(x);
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
    assert_false(BN_is_negative(bn));
    assert_true(BN_num_bits(bn) > 64);
    BN_free(bn);
    /* The key on disk is P-256 and matches the cert. */
    FILE *fp = fopen(srv_key, "r");
    assert_non_null(fp);
    EVP_PKEY *pk = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(pk);
    assert_int_equal(EVP_PKEY_base_id(pk), EVP_PKEY_EC);
    assert_int_equal(EVP_PKEY_bits(pk), 256);
    assert_int_equal(X509_check_private_key(x, pk), 1);
    EVP_PKEY_free(pk);
    X509_free(x);
}

static void test_selfsigned_keeps_existing(void **state)
{
    (void)state;
    struct stat before_c, before_k, after_c, after_k;
    assert_int_equal(stat(srv_cert, &before_c), 0);
    assert_int_equal(stat(srv_key, &before_k), 0);
    X509 *x1 = read_cert(srv_cert);
    char err[256];
    assert_int_equal(tls_selfsigned_ensure(srv_cert, srv_key, "example.test", err, sizeof err), 0);
    assert_int_equal(stat(srv_cert, &after_c), 0);
    assert_int_equal(stat(srv_key, &after_k), 0);
    assert_true(before_c.st_ino == after_c.st_ino);
    assert_true(before_k.st_ino == after_k.st_ino);
    assert_true(before_c.st_mtim.tv_sec == after_c.st_mtim.tv_sec &&
                before_c.st_mtim.tv_nsec == after_c.st_mtim.tv_nsec);
    X509 *x2 = read_cert(srv_cert);
    assert_int_equal(X509_cmp(x1, x2), 0);
    X509_free(x1);
    X509_free(x2);
}

static void test_selfsigned_bad_domain(void **state)
{
    (void)state;
    char cert[600], key[600], err[256];
    snprintf(cert, sizeof cert, "%s/bad/cert.pem", tmpdir);
    snprintf(key, sizeof key, "%s/bad/key.pem", tmpdir);
    assert_int_equal(tls_selfsigned_ensure(cert, key, "evil.test,DNS:bank.test", err, sizeof err), -1);
    assert_non_null(strstr(err, "not a DNS name"));
    assert_int_equal(tls_selfsigned_ensure(cert, key, "", err, sizeof err), -1);
    assert_int_equal(access(cert, F_OK), -1);
}

static void test_server_ctx_errors(void **state)
{
    (void)state;
    char err[512];
    assert_null(tls_server_ctx_new("/nonexistent/cert.pem", srv_key, NULL, 0, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/cert.pem"));
    assert_int_equal(ERR_peek_error(), 0);   /* queue drained */
    /* Key of another certificate. */
    assert_null(tls_server_ctx_new(srv_cert, cli_key, NULL, 0, err, sizeof err));
    assert_int_equal(ERR_peek_error(), 0);

    /* tls_error_string on an empty queue, and on a small buffer. */
    char small[8];
    tls_error_string(err, sizeof err);
    assert_string_equal(err, "no OpenSSL error detail");
    ERR_put_error(ERR_LIB_SSL, 0, SSL_R_BAD_LENGTH, __FILE__, __LINE__);
    ERR_put_error(ERR_LIB_SSL, 0, SSL_R_BAD_LENGTH, __FILE__, __LINE__);
    tls_error_string(small, sizeof small);
    assert_true(strlen(small) < sizeof small);
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_policy(void **state)
{
    (void)state;
    SSL_CTX *s = server_ctx(TLS_CLIENT_CERT_NONE, NULL);
    SSL_CTX *c = client_ctx(1);
    assert_int_equal(SSL_CTX_get_min_proto_version(s), TLS1_2_VERSION);
    assert_int_equal(SSL_CTX_get_min_proto_version(c), TLS1_2_VERSION);
    assert_true(SSL_CTX_get_options(s) & SSL_OP_NO_COMPRESSION);
    assert_true(SSL_CTX_get_options(s) & SSL_OP_NO_RENEGOTIATION);
    assert_true(SSL_CTX_get_mode(s) & SSL_MODE_RELEASE_BUFFERS);
    /* Every TLS 1.2 suite offered is ECDHE with an AEAD. */
    SSL *ssl = SSL_new(s);
    STACK_OF(SSL_CIPHER) *ciphers = SSL_get_ciphers(ssl);
    for (int i = 0; i < sk_SSL_CIPHER_num(ciphers); i++) {
        const SSL_CIPHER *ci = sk_SSL_CIPHER_value(ciphers, i);
        if (SSL_CIPHER_get_protocol_id(ci) >> 8 == 0x13)
            continue;   /* TLS 1.3 suite */
        assert_int_equal(SSL_CIPHER_get_kx_nid(ci), NID_kx_ecdhe);
        assert_true(SSL_CIPHER_is_aead(ci));
    }
    SSL_free(ssl);
    SSL_CTX_free(s);
    SSL_CTX_free(c);
}

static void check_cbind(pair_t *p, int tls13)
{
    unsigned char a[32], b[32];
    if (tls13) {
        assert_int_equal(tls_cbind_exporter(p->c, a), 0);
        assert_int_equal(tls_cbind_exporter(p->s, b), 0);
        assert_memory_equal(a, b, 32);
    } else {
        assert_int_equal(tls_cbind_exporter(p->c, a), -1);
        assert_int_equal(tls_cbind_exporter(p->s, b), -1);
    }
    unsigned char sa[TLS_CBIND_MAX], sb[TLS_CBIND_MAX];
    size_t la = 0, lb = 0;
    assert_int_equal(tls_cbind_server_end_point(p->c, 0, sa, &la), 0);
    assert_int_equal(tls_cbind_server_end_point(p->s, 1, sb, &lb), 0);
    assert_int_equal(la, 32);   /* ecdsa-with-SHA256 */
    assert_int_equal(lb, la);
    assert_memory_equal(sa, sb, la);
    /* And it is the SHA-256 of the certificate file's cert. */
    X509 *x = read_cert(srv_cert);
    unsigned char d[32];
    unsigned int dl = 0;
    X509_digest(x, EVP_sha256(), d, &dl);
    assert_memory_equal(sa, d, 32);
    X509_free(x);
}

static void test_handshake_tls13(void **state)
{
    (void)state;
    SSL_CTX *s = server_ctx(TLS_CLIENT_CERT_NONE, NULL);
    SSL_CTX *c = client_ctx(1);
    pair_t p;
    pair_new(&p, s, c);
    unsigned char early[32];
    assert_int_equal(tls_cbind_exporter(p.c, early), -1);   /* not before the handshake */
    assert_int_equal(tls_client_set_peer_name(p.c, "example.test"), 0);
    assert_int_equal(pair_handshake(&p), 0);
    assert_int_equal(SSL_version(p.c), TLS1_3_VERSION);
    assert_int_equal(tls_peer_cert_matches(p.c, "example.test"), 1);
    assert_int_equal(tls_peer_cert_matches(p.s, "example.test"), 0);   /* no client cert */
    check_cbind(&p, 1);
    pair_free(&p);
    SSL_CTX_free(s);
    SSL_CTX_free(c);
}

/* tls_server_set_tickets: off sends no ticket in TLS 1.3 (no NewSessionTicket
 * at all, not stateful ones) nor in TLS 1.2; on, the client holds one after
 * the handshake and the first data. */
static void test_session_tickets(void **state)
{
    (void)state;
    static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    for (size_t v = 0; v < sizeof versions / sizeof versions[0]; v++) {
        int max = versions[v];
        for (int on = 0; on <= 1; on++) {
            SSL_CTX *s = server_ctx(TLS_CLIENT_CERT_NONE, NULL);
            SSL_CTX *c = client_ctx(0);
            SSL_CTX_set_max_proto_version(c, max);
            tls_server_set_tickets(s, on);
            pair_t p;
            pair_new(&p, s, c);
            assert_int_equal(pair_handshake(&p), 0);   /* the client read data after any ticket */
            assert_int_equal(SSL_version(p.c), max);
            assert_int_equal(SSL_SESSION_has_ticket(SSL_get0_session(p.c)), on);
            pair_free(&p);
            SSL_CTX_free(s);
            SSL_CTX_free(c);
        }
    }
}

static void test_handshake_tls12(void **state)
{
    (void)state;
    SSL_CTX *s = server_ctx(TLS_CLIENT_CERT_NONE, NULL);
    SSL_CTX *c = client_ctx(1);
    SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION);
    pair_t p;
    pair_new(&p, s, c);
    assert_int_equal(tls_client_set_peer_name(p.c, "example.test"), 0);
    assert_int_equal(pair_handshake(&p), 0);
    assert_int_equal(SSL_version(p.c), TLS1_2_VERSION);
    const SSL_CIPHER *ci = SSL_get_current_cipher(p.c);
    assert_int_equal(SSL_CIPHER_get_kx_nid(ci), NID_kx_ecdhe);
    assert_true(SSL_CIPHER_is_aead(ci));
    check_cbind(&p, 0);
    pair_free(&p);
    SSL_CTX_free(s);
    SSL_CTX_free(c);
}

/* A client limited to TLS 1.0/1.1 with every restriction of its own lifted. */
static SSL_CTX *old_client_ctx(void)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    assert_non_null(c);
    SSL_CTX_set_security_level(c, 0);
    SSL_CTX_set_min_proto_version(c, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(c, TLS1_1_VERSION);
    SSL_CTX_set_cipher_list(c, "ALL:@SECLEVEL=0");
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
    return c;
}

static void test_tls11_refused(void **state)
{
    (void)state;
    SSL_CTX *old = old_client_ctx();

    /* Control: a permissive server shows whether this OpenSSL build can speak
     * TLS 1.1 at all; if not, the refusal below proves less, so say so. */
    SSL_CTX *lax = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_security_level(lax, 0);
    SSL_CTX_set_min_proto_version(lax, TLS1_VERSION);
    SSL_CTX_set_cipher_list(lax, "ALL:@SECLEVEL=0");
    SSL_CTX_use_certificate_file(lax, srv_cert, SSL_FILETYPE_PEM);
    SSL_CTX_use_PrivateKey_file(lax, srv_key, SSL_FILETYPE_PEM);
    pair_t p;
    pair_new(&p, lax, old);
    if (pair_handshake(&p) != 0)
        fprintf(stderr, "note: this OpenSSL cannot do TLS 1.1 even when allowed\n");
    else
        assert_int_equal(SSL_version(p.c), TLS1_1_VERSION);
    pair_free(&p);
    SSL_CTX_free(lax);
    ERR_clear_error();

    SSL_CTX *s = server_ctx(TLS_CLIENT_CERT_NONE, NULL);
    pair_new(&p, s, old);
    assert_int_equal(pair_handshake(&p), -1);
    pair_free(&p);
    ERR_clear_error();
    SSL_CTX_free(s);
    SSL_CTX_free(old);
}

static void test_hostname(void **state)
{
    (void)state;
    SSL_CTX *s = server_ctx(TLS_CLIENT_CERT_NONE, NULL);
    SSL_CTX *c = client_ctx(1);
    pair_t p;

    /* Wildcard SAN covers one label. */
    pair_new(&p, s, c);
    assert_int_equal(tls_client_set_peer_name(p.c, "pubsub.example.test"), 0);
    assert_int_equal(pair_handshake(&p), 0);
    assert_int_equal(tls_peer_cert_matches(p.c, "pubsub.example.test"), 1);
    pair_free(&p);

    /* Wrong name with verification: the handshake fails. */
    pair_new(&p, s, c);
    assert_int_equal(tls_client_set_peer_name(p.c, "other.test"), 0);
    assert_int_equal(pair_handshake(&p), -1);
    assert_int_equal(SSL_get_verify_result(p.c), X509_V_ERR_HOSTNAME_MISMATCH);
    pair_free(&p);
    ERR_clear_error();
    SSL_CTX_free(c);

    /* Without enforcement the handshake completes and the check says no. */
    c = client_ctx(0);
    pair_new(&p, s, c);
    assert_int_equal(tls_client_set_peer_name(p.c, "other.test"), 0);
    assert_int_equal(pair_handshake(&p), 0);
    assert_int_equal(tls_peer_cert_matches(p.c, "other.test"), 0);
    pair_free(&p);
    pair_new(&p, s, c);
    assert_int_equal(pair_handshake(&p), 0);
    assert_int_equal(tls_peer_cert_matches(p.c, "example.test"), 1);
    assert_int_equal(tls_peer_cert_matches(p.c, "other.test"), 0);
    assert_int_equal(tls_peer_cert_matches(p.c, "a.b.example.test"), 0);
    pair_free(&p);
    SSL_CTX_free(c);

    /* A client that does not trust the server's cert. */
    char err[256];
    c = tls_client_ctx_new(cli_cert, 0, err, sizeof err);
    assert_non_null(c);
    pair_new(&p, s, c);
    assert_int_equal(pair_handshake(&p), 0);
    assert_int_equal(tls_peer_cert_matches(p.c, "example.test"), 0);
    pair_free(&p);
    SSL_CTX_free(c);
    SSL_CTX_free(s);
}

static void test_client_cert(void **state)
{
    (void)state;
    SSL_CTX *c = client_ctx(1);
    pair_t p;

    /* Required and not presented: refused. */
    SSL_CTX *s = server_ctx(TLS_CLIENT_CERT_REQUIRE, cli_cert);
    pair_new(&p, s, c);
    assert_int_equal(pair_handshake(&p), -1);
    pair_free(&p);
    ERR_clear_error();

    /* Required and presented. */
    SSL_CTX *cc = client_ctx(1);
    assert_int_equal(SSL_CTX_use_certificate_file(cc, cli_cert, SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(cc, cli_key, SSL_FILETYPE_PEM), 1);
    pair_new(&p, s, cc);
    assert_int_equal(pair_handshake(&p), 0);
    assert_int_equal(tls_peer_cert_matches(p.s, "client.test"), 1);
    assert_int_equal(tls_peer_cert_matches(p.s, "example.test"), 0);
    pair_free(&p);
    SSL_CTX_free(s);

    /* Optional: a cert from an untrusted issuer does not fail the handshake,
     * but it does not match either. */
    s = server_ctx(TLS_CLIENT_CERT_OPTIONAL, srv_cert);
    pair_new(&p, s, cc);
    assert_int_equal(pair_handshake(&p), 0);
    assert_non_null(SSL_get0_peer_certificate(p.s));
    assert_int_equal(tls_peer_cert_matches(p.s, "client.test"), 0);
    pair_free(&p);
    /* Optional and absent. */
    pair_new(&p, s, c);
    assert_int_equal(pair_handshake(&p), 0);
    assert_int_equal(tls_peer_cert_matches(p.s, "client.test"), 0);
    pair_free(&p);
    SSL_CTX_free(s);

    /* Optional with the right CA: matches. */
    s = server_ctx(TLS_CLIENT_CERT_OPTIONAL, cli_cert);
    pair_new(&p, s, cc);
    assert_int_equal(pair_handshake(&p), 0);
    assert_int_equal(tls_peer_cert_matches(p.s, "client.test"), 1);
    pair_free(&p);
    SSL_CTX_free(s);
    SSL_CTX_free(cc);
    SSL_CTX_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_selfsigned_files),
        cmocka_unit_test(test_selfsigned_keeps_existing),
        cmocka_unit_test(test_selfsigned_bad_domain),
        cmocka_unit_test(test_server_ctx_errors),
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_handshake_tls13),
        cmocka_unit_test(test_handshake_tls12),
        cmocka_unit_test(test_session_tickets),
        cmocka_unit_test(test_tls11_refused),
        cmocka_unit_test(test_hostname),
        cmocka_unit_test(test_client_cert),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
