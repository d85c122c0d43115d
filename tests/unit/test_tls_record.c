/* test_tls_record: taking a TLS 1.3 connection over from OpenSSL after the
 * handshake. An OpenSSL client talks over a BIO pair to a server SSL made
 * from a prepared context; after tls_record_take the server end is this
 * module, fed the pair's bytes by hand. The client is OpenSSL throughout, so
 * every record sealed here is checked by an independent implementation, and
 * every record it sends is one this module must open. Covers each suite,
 * sequence numbers carried over (application data and tickets before the
 * take), KeyUpdate both ways before and after, close_notify, tampering,
 * records arriving a byte at a time, and the cases that must stay with
 * OpenSSL (TLS 1.2, buffered data). */
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
#include <event2/buffer.h>
#include <openssl/err.h>
#include "tls.h"
#include "tls_record.h"

static char tmpdir[256];
static char srv_cert[512], srv_key[512];

static int group_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/weft_test_tls_record.XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(srv_cert, sizeof srv_cert, "%s/cert.pem", tmpdir);
    snprintf(srv_key, sizeof srv_key, "%s/key.pem", tmpdir);
    char err[256];
    if (tls_selfsigned_ensure(srv_cert, srv_key, "example.test", err, sizeof err) < 0) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    unlink(srv_cert);
    unlink(srv_key);
    rmdir(tmpdir);
    return 0;
}

typedef struct conn {
    SSL_CTX *sctx, *cctx;
    SSL *c, *s;
    BIO *bs;               /* the server's end of the pair, kept after SSL_free */
    tls_record_t *r;
    struct evbuffer *in, *out;   /* server side: bytes from / to the client */
    strbuf_t plain;
} conn_t;

static void conn_new(conn_t *k, const char *suites, int max_version)
{
    memset(k, 0, sizeof *k);
    char err[512];
    k->sctx = tls_server_ctx_new(srv_cert, srv_key, NULL, TLS_CLIENT_CERT_NONE, err, sizeof err);
    assert_non_null(k->sctx);
    assert_int_equal(tls_record_ctx_prepare(k->sctx), 0);
    k->cctx = tls_client_ctx_new(srv_cert, 0, err, sizeof err);
    assert_non_null(k->cctx);
    if (suites)
        assert_int_equal(SSL_CTX_set_ciphersuites(k->cctx, suites), 1);
    if (max_version)
        assert_int_equal(SSL_CTX_set_max_proto_version(k->cctx, max_version), 1);
    BIO *bc;
    assert_int_equal(BIO_new_bio_pair(&bc, 0, &k->bs, 0), 1);
    k->c = SSL_new(k->cctx);
    k->s = SSL_new(k->sctx);
    SSL_set_bio(k->c, bc, bc);
    SSL_set_bio(k->s, k->bs, k->bs);
    SSL_set_connect_state(k->c);
    SSL_set_accept_state(k->s);
    k->in = evbuffer_new();
    k->out = evbuffer_new();
    strbuf_init(&k->plain);
    int cdone = 0, sdone = 0;
    for (int i = 0; i < 100 && !(cdone && sdone); i++) {
        if (!cdone) {
            int r = SSL_do_handshake(k->c);
            cdone = r == 1;
            assert_true(r == 1 || SSL_get_error(k->c, r) == SSL_ERROR_WANT_READ);
        }
        if (!sdone) {
            int r = SSL_do_handshake(k->s);
            sdone = r == 1;
            assert_true(r == 1 || SSL_get_error(k->s, r) == SSL_ERROR_WANT_READ);
        }
    }
    assert_true(cdone && sdone);
}

static void conn_free(conn_t *k)
{
    if (k->s)
        SSL_free(k->s);
    else
        BIO_free(k->bs);
    SSL_free(k->c);
    SSL_CTX_free(k->sctx);
    SSL_CTX_free(k->cctx);
    tls_record_free(k->r);
    evbuffer_free(k->in);
    evbuffer_free(k->out);
    strbuf_free(&k->plain);
}

/* Data through OpenSSL on both ends (before the take). */
static void ssl_c2s(conn_t *k, const char *msg)
{
    char buf[256];
    assert_int_equal(SSL_write(k->c, msg, (int)strlen(msg)), (int)strlen(msg));
    int n = SSL_read(k->s, buf, sizeof buf);
    assert_int_equal(n, (int)strlen(msg));
    assert_memory_equal(buf, msg, strlen(msg));
}

static void ssl_s2c(conn_t *k, const char *msg)
{
    char buf[256];
    assert_int_equal(SSL_write(k->s, msg, (int)strlen(msg)), (int)strlen(msg));
    int n = SSL_read(k->c, buf, sizeof buf);
    assert_int_equal(n, (int)strlen(msg));
    assert_memory_equal(buf, msg, strlen(msg));
}

static void take(conn_t *k)
{
    const char *why = NULL;
    k->r = tls_record_take(k->s, &why);
    if (!k->r)
        fprintf(stderr, "take: %s\n", why);
    assert_non_null(k->r);
    BIO_up_ref(k->bs);
    SSL_free(k->s);
    k->s = NULL;
}

/* Moves what the client wrote into k->in. */
static void pump_in(conn_t *k)
{
    char buf[4096];
    int n;
    while ((n = BIO_read(k->bs, buf, sizeof buf)) > 0)
        evbuffer_add(k->in, buf, (size_t)n);
}

/* Moves as much of k->out to the client as the pair takes. */
static void pump_out(conn_t *k)
{
    while (evbuffer_get_length(k->out) > 0) {
        size_t room = BIO_ctrl_get_write_guarantee(k->bs);
        if (!room)
            break;
        size_t n = evbuffer_get_length(k->out) < room ? evbuffer_get_length(k->out) : room;
        unsigned char *p = evbuffer_pullup(k->out, (ev_ssize_t)n);
        assert_int_equal(BIO_write(k->bs, p, (int)n), (int)n);
        evbuffer_drain(k->out, n);
    }
}

/* Client -> us after the take: everything the client sent, opened. */
static void rec_c2s(conn_t *k, const char *msg)
{
    assert_int_equal(SSL_write(k->c, msg, (int)strlen(msg)), (int)strlen(msg));
    pump_in(k);
    strbuf_reset(&k->plain);
    int rc;
    while ((rc = tls_record_open(k->r, k->in, &k->plain, k->out)) == TLSR_OK)
        ;
    assert_int_equal(rc, TLSR_AGAIN);
    assert_int_equal(k->plain.len, strlen(msg));
    assert_memory_equal(k->plain.data, msg, strlen(msg));
}

/* Us -> client after the take. */
static void rec_s2c(conn_t *k, const char *msg, size_t len)
{
    assert_int_equal(tls_record_seal(k->r, msg, len, k->out), 0);
    char *got = malloc(len + 1);
    size_t have = 0;
    for (int i = 0; i < 1000 && have < len; i++) {
        pump_out(k);
        int n = SSL_read(k->c, got + have, (int)(len - have));
        if (n > 0)
            have += (size_t)n;
        else
            assert_int_equal(SSL_get_error(k->c, n), SSL_ERROR_WANT_READ);
    }
    assert_int_equal(have, len);
    assert_memory_equal(got, msg, len);
    free(got);
}

static void talk(conn_t *k)
{
    rec_c2s(k, "<presence/>");
    rec_s2c(k, "<message/>", 10);
    rec_c2s(k, "<iq type='get' id='1'/>");
    rec_c2s(k, "");
    rec_s2c(k, "<iq type='result' id='1'/>", 26);
    size_t big = 40000;
    char *b = malloc(big);
    for (size_t i = 0; i < big; i++)
        b[i] = (char)('a' + i % 26);
    rec_s2c(k, b, big);   /* three records */
    free(b);
}

/* ---- tests ---- */

static void test_suites(void **state)
{
    (void)state;
    const char *list[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"};
    for (size_t i = 0; i < 3; i++) {
        conn_t k;
        conn_new(&k, list[i], 0);
        assert_string_equal(SSL_CIPHER_get_name(SSL_get_current_cipher(k.s)), list[i]);
        ssl_c2s(&k, "stream header");
        ssl_s2c(&k, "stream header back");
        ssl_s2c(&k, "features");
        ssl_c2s(&k, "auth");
        take(&k);
        talk(&k);
        conn_free(&k);
    }
}

/* Taken right after the handshake: only the tickets were sent. */
static void test_take_at_once(void **state)
{
    (void)state;
    conn_t k;
    conn_new(&k, NULL, 0);
    /* The server finishes sending its tickets on its next call. */
    char buf[8];
    assert_int_equal(SSL_read(k.s, buf, sizeof buf), -1);
    assert_int_equal(SSL_get_error(k.s, -1), SSL_ERROR_WANT_READ);
    take(&k);
    rec_s2c(&k, "first", 5);
    rec_c2s(&k, "second");
    conn_free(&k);
}

static void test_key_update_after(void **state)
{
    (void)state;
    conn_t k;
    conn_new(&k, NULL, 0);
    ssl_c2s(&k, "hello");
    take(&k);
    talk(&k);
    /* The client updates and asks us to: we answer with ours. */
    assert_int_equal(SSL_key_update(k.c, SSL_KEY_UPDATE_REQUESTED), 1);
    rec_c2s(&k, "after update");
    assert_true(evbuffer_get_length(k.out) > 0);   /* our KeyUpdate */
    rec_s2c(&k, "reply under the new key", 23);
    /* Without a request: only the client's read side moves. */
    assert_int_equal(SSL_key_update(k.c, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
    rec_c2s(&k, "second update");
    assert_int_equal(evbuffer_get_length(k.out), 0);
    rec_s2c(&k, "still fine", 10);
    talk(&k);
    conn_free(&k);
}

/* Ours: past tls_record_set_key_limit records under one key, the next seal
 * sends a KeyUpdate (not asking the client for one) and an OpenSSL client
 * follows; the client's own KeyUpdates still work in between.
 * tls_record_key_update sends one on demand, with or without the request. */
static void test_key_update_ours(void **state)
{
    (void)state;
    conn_t k;
    conn_new(&k, NULL, 0);
    ssl_c2s(&k, "hello");
    take(&k);
    tls_record_set_key_limit(2);
    int updates = 0;
    for (int i = 0; i < 7; i++) {
        size_t before = evbuffer_get_length(k.out);
        assert_int_equal(tls_record_seal(k.r, "tick", 4, k.out), 0);
        /* a record of 4 bytes (5 + 4 + 1 + 16), preceded by our KeyUpdate
         * (5 + 5 + 1 + 16) whenever 2 records went out under the current
         * key: at the first seal (OpenSSL's two tickets), then every other */
        size_t n = evbuffer_get_length(k.out) - before;
        assert_true(n == 26 || n == 26 + 27);
        updates += n > 26;
        char buf[8];
        pump_out(&k);
        assert_int_equal(SSL_read(k.c, buf, sizeof buf), 4);
        assert_memory_equal(buf, "tick", 4);
        rec_c2s(&k, "tock");
        if (i == 3) {   /* the client's own, asking for ours: answered at once */
            assert_int_equal(SSL_key_update(k.c, SSL_KEY_UPDATE_REQUESTED), 1);
            rec_c2s(&k, "client rekeyed");
            assert_true(evbuffer_get_length(k.out) > 0);
            rec_s2c(&k, "answered", 8);
        }
    }
    assert_true(updates >= 3);   /* 7 seals at 2 records a key, one answer between */
    tls_record_set_key_limit(0);
    assert_int_equal(tls_record_key_update(k.r, 0, k.out), 0);
    rec_s2c(&k, "not requested", 13);
    assert_int_equal(tls_record_key_update(k.r, 1, k.out), 0);
    rec_s2c(&k, "requested", 9);
    rec_c2s(&k, "the client answers with its KeyUpdate first");
    talk(&k);
    conn_free(&k);
}

static void test_key_update_before(void **state)
{
    (void)state;
    conn_t k;
    conn_new(&k, NULL, 0);
    ssl_c2s(&k, "hello");
    assert_int_equal(SSL_key_update(k.c, SSL_KEY_UPDATE_REQUESTED), 1);
    ssl_c2s(&k, "updated");        /* OpenSSL answers with its own update */
    ssl_s2c(&k, "ok");
    assert_int_equal(SSL_key_update(k.s, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
    ssl_s2c(&k, "server moved too");
    ssl_c2s(&k, "and again");
    take(&k);
    talk(&k);
    conn_free(&k);
}

static void test_close_notify(void **state)
{
    (void)state;
    conn_t k;
    conn_new(&k, NULL, 0);
    ssl_c2s(&k, "x");
    take(&k);
    rec_c2s(&k, "</stream:stream>");
    assert_int_equal(SSL_shutdown(k.c), 0);
    pump_in(&k);
    assert_int_equal(tls_record_open(k.r, k.in, &k.plain, k.out), TLSR_EOF);
    conn_free(&k);
}

static void test_tampered(void **state)
{
    (void)state;
    conn_t k;
    conn_new(&k, NULL, 0);
    ssl_c2s(&k, "x");
    take(&k);
    assert_int_equal(SSL_write(k.c, "secret", 6), 6);
    pump_in(&k);
    size_t len = evbuffer_get_length(k.in);
    unsigned char *p = evbuffer_pullup(k.in, -1);
    p[len - 3] ^= 1;
    assert_int_equal(tls_record_open(k.r, k.in, &k.plain, k.out), TLSR_ERROR);
    assert_int_equal(k.plain.len, 0);
    assert_string_equal(tls_record_error(k.r), "record authentication failed");
    /* A fatal alert went out, and the client takes it as one. */
    assert_true(evbuffer_get_length(k.out) > 0);
    pump_out(&k);
    char buf[8];
    assert_true(SSL_read(k.c, buf, sizeof buf) <= 0);
    assert_int_equal(SSL_get_error(k.c, -1), SSL_ERROR_SSL);
    ERR_clear_error();
    /* Failed stays failed. */
    assert_int_equal(tls_record_seal(k.r, "x", 1, k.out), -1);
    conn_free(&k);
}

/* Records cut anywhere: nothing comes out before a record is whole. */
static void test_byte_at_a_time(void **state)
{
    (void)state;
    conn_t k;
    conn_new(&k, NULL, 0);
    ssl_c2s(&k, "x");
    take(&k);
    const char *msg = "<message to='a@b'><body>hi</body></message>";
    assert_int_equal(SSL_write(k.c, msg, (int)strlen(msg)), (int)strlen(msg));
    assert_int_equal(SSL_write(k.c, msg, (int)strlen(msg)), (int)strlen(msg));
    struct evbuffer *all = evbuffer_new();
    char buf[4096];
    int n;
    while ((n = BIO_read(k.bs, buf, sizeof buf)) > 0)
        evbuffer_add(all, buf, (size_t)n);
    size_t total = evbuffer_get_length(all);
    unsigned char *p = evbuffer_pullup(all, -1);
    int records = 0;
    for (size_t i = 0; i < total; i++) {
        evbuffer_add(k.in, p + i, 1);
        int rc = tls_record_open(k.r, k.in, &k.plain, k.out);
        assert_true(rc == TLSR_OK || rc == TLSR_AGAIN);
        records += rc == TLSR_OK;
    }
    assert_int_equal(records, 2);
    assert_int_equal(k.plain.len, 2 * strlen(msg));
    evbuffer_free(all);
    /* and the cipher contexts can go in between */
    tls_record_idle(k.r);
    talk(&k);
    tls_record_idle(k.r);
    talk(&k);
    conn_free(&k);
}

static void test_stays_with_openssl(void **state)
{
    (void)state;
    const char *why = NULL;
    conn_t k;
    conn_new(&k, NULL, TLS1_2_VERSION);
    ssl_c2s(&k, "x");
    assert_null(tls_record_take(k.s, &why));
    assert_string_equal(why, "not TLS 1.3");
    conn_free(&k);

    conn_new(&k, NULL, 0);
    assert_int_equal(SSL_write(k.c, "0123456789", 10), 10);
    char buf[4];
    assert_int_equal(SSL_read(k.s, buf, sizeof buf), 4);
    assert_null(tls_record_take(k.s, &why));
    assert_string_equal(why, "data buffered in OpenSSL");
    char rest[16];
    assert_int_equal(SSL_read(k.s, rest, sizeof rest), 6);
    take(&k);
    talk(&k);
    conn_free(&k);

    /* A context that was not prepared. */
    char err[256];
    SSL_CTX *plain_ctx = tls_server_ctx_new(srv_cert, srv_key, NULL, TLS_CLIENT_CERT_NONE, err, sizeof err);
    assert_non_null(plain_ctx);
    SSL *s = SSL_new(plain_ctx);
    assert_null(tls_record_take(s, &why));
    assert_string_equal(why, "context not prepared");
    SSL_free(s);
    SSL_CTX_free(plain_ctx);
}

/* After the handshake every record is application_data on the wire: a
 * clear change_cipher_spec is refused before any decryption. */
static void test_clear_record(void **state)
{
    (void)state;
    conn_t k;
    conn_new(&k, NULL, 0);
    ssl_c2s(&k, "x");
    take(&k);
    rec_c2s(&k, "ok");
    static const unsigned char ccs[] = {20, 3, 3, 0, 1, 1};
    evbuffer_add(k.in, ccs, sizeof ccs);
    assert_int_equal(tls_record_open(k.r, k.in, &k.plain, k.out), TLSR_ERROR);
    assert_string_equal(tls_record_error(k.r), "record type is not application_data");
    conn_free(&k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_suites),
        cmocka_unit_test(test_take_at_once),
        cmocka_unit_test(test_key_update_after),
        cmocka_unit_test(test_key_update_before),
        cmocka_unit_test(test_key_update_ours),
        cmocka_unit_test(test_close_notify),
        cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_byte_at_a_time),
        cmocka_unit_test(test_stays_with_openssl),
        cmocka_unit_test(test_clear_record),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
