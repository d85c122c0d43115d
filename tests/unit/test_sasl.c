/* test_sasl: SCRAM-SHA-1/-256 (+PLUS) and PLAIN, server and client, against the
 * RFC 5802 §5 and RFC 7677 §3 examples, full exchanges between our own client
 * and server, channel binding and downgrade checks, every malformed field we
 * reject, and the SCRAM key storage format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "sasl.h"

/* ------------------------------------------------------------ user store */

typedef struct test_user {
    const char *name;
    const char *password;
    int sha256, sha1;          /* which key sets exist */
    const char *salt_b64;      /* NULL: a fixed default */
} test_user_t;

static const test_user_t test_users[] = {
    { "user", "pencil", 1, 1, NULL },
    { "juliet", "r0m30myr0m30", 1, 1, NULL },
    { "old", "legacy", 0, 1, NULL },
    { "a,b=c", "odd name", 1, 1, NULL },
    { "caf\xc3\xa9", "p\xc3\xa4ss", 1, 1, NULL },
};

static int test_lookup_calls;

static int test_lookup(void *ctx, const char *authcid, scram_hash_t h, scram_keys_t *out)
{
    (void)ctx;
    test_lookup_calls++;
    for (size_t i = 0; i < sizeof test_users / sizeof test_users[0]; i++) {
        const test_user_t *u = &test_users[i];
        if (strcmp(u->name, authcid) != 0)
            continue;
        if ((h == SCRAM_SHA256 && !u->sha256) || (h == SCRAM_SHA1 && !u->sha1))
            return -1;
        /* the RFC examples' salts, so "user" matches them */
        const char *salt_b64 = h == SCRAM_SHA1 ? "QSXCR+Q6sek8bf92" : "W22ZaJ0SNY7soEsUEjb6gQ==";
        strbuf_t salt;
        strbuf_init(&salt);
        assert_int_equal(base64_decode(salt_b64, strlen(salt_b64), &salt), 0);
        int rc = scram_keys_derive(h, u->password, (unsigned char *)salt.data, salt.len, 4096, out);
        strbuf_free(&salt);
        return rc;
    }
    return -1;
}

/* ------------------------------------------------------------- helpers */

static void step_ok(sasl_result_t got, sasl_result_t want)
{
    assert_int_equal(got, want);
}

/* Runs our client against our server until one side stops. Returns the
 * server's final result and leaves its condition in *cond (or NULL). */
typedef struct exchange {
    const char *client_mech, *server_mech;
    const char *user, *password, *authzid;
    const sasl_cbind_t *client_cb, *server_cb;
    int plus_offered;
} exchange_t;

static sasl_result_t run_exchange(const exchange_t *x, char *cond, size_t condlen, int *client_ok)
{
    sasl_server_t *s = sasl_server_new(x->server_mech, test_lookup, NULL, x->server_cb,
                                       x->plus_offered);
    sasl_client_t *c = sasl_client_new(x->client_mech, x->user, x->password, x->authzid,
                                       x->client_cb);
    assert_non_null(s);
    assert_non_null(c);
    strbuf_t to_server, to_client;
    strbuf_init(&to_server);
    strbuf_init(&to_client);
    sasl_result_t cr = sasl_client_step(c, NULL, 0, &to_server), sr = SASL_CONTINUE;
    *client_ok = 0;
    cond[0] = '\0';
    for (int round = 0; round < 5 && cr == SASL_CONTINUE; round++) {
        sr = sasl_server_step(s, to_server.data, to_server.len, &to_client);
        if (sr == SASL_FAIL) {
            snprintf(cond, condlen, "%s", sasl_server_condition(s));
            break;
        }
        cr = sasl_client_step(c, to_client.data, to_client.len, &to_server);
        if (sr == SASL_DONE) {
            *client_ok = cr == SASL_DONE;
            assert_non_null(sasl_server_authcid(s));
            break;
        }
    }
    strbuf_free(&to_server);
    strbuf_free(&to_client);
    sasl_client_free(c);
    sasl_server_free(s);
    return sr;
}

/* Feeds one raw message to a fresh server (after an optional first message)
 * and returns its condition, or "" on success/continue. */
static char last_cond[64];

static const char *server_cond_after(const char *mech, const char *first, const char *second,
                                     const sasl_cbind_t *cb, int plus_offered)
{
    sasl_server_t *s = sasl_server_new(mech, test_lookup, NULL, cb, plus_offered);
    strbuf_t out;
    strbuf_init(&out);
    sasl_server_set_nonce(s, "SNONCE");
    sasl_result_t r = sasl_server_step(s, first, strlen(first), &out);
    if (r == SASL_CONTINUE && second)
        r = sasl_server_step(s, second, strlen(second), &out);
    snprintf(last_cond, sizeof last_cond, "%s", r == SASL_FAIL ? sasl_server_condition(s) : "");
    if (r == SASL_FAIL)
        assert_int_equal(out.len, 0);
    strbuf_free(&out);
    sasl_server_free(s);
    return last_cond;
}

/* A valid client-final for "user"/"pencil" over SCRAM-SHA-1 with client nonce
 * cnonce and server nonce suffix "SNONCE", as our own client makes it. */
static void client_final_for(const char *cnonce, strbuf_t *final)
{
    sasl_client_t *c = sasl_client_new("SCRAM-SHA-1", "user", "pencil", NULL, NULL);
    strbuf_t out;
    strbuf_init(&out);
    sasl_client_set_nonce(c, cnonce);
    step_ok(sasl_client_step(c, NULL, 0, &out), SASL_CONTINUE);
    char sf[256];
    snprintf(sf, sizeof sf, "r=%sSNONCE,s=QSXCR+Q6sek8bf92,i=4096", cnonce);
    step_ok(sasl_client_step(c, sf, strlen(sf), &out), SASL_CONTINUE);
    strbuf_reset(final);
    strbuf_append(final, out.data, out.len);
    strbuf_free(&out);
    sasl_client_free(c);
}

/* ------------------------------------------------------ RFC test vectors */

static void test_rfc5802_client(void **state)
{
    (void)state;
    sasl_client_t *c = sasl_client_new("SCRAM-SHA-1", "user", "pencil", NULL, NULL);
    strbuf_t out;
    strbuf_init(&out);
    sasl_client_set_nonce(c, "fyko+d2lbbFgONRv9qkxdawL");
    step_ok(sasl_client_step(c, NULL, 0, &out), SASL_CONTINUE);
    assert_string_equal(out.data, "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
    const char *sf = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
    step_ok(sasl_client_step(c, sf, strlen(sf), &out), SASL_CONTINUE);
    assert_string_equal(out.data, "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                                  "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=");
    const char *fin = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=";
    step_ok(sasl_client_step(c, fin, strlen(fin), &out), SASL_DONE);
    sasl_client_free(c);
    strbuf_free(&out);
}

/* A client given a SaltedPassword slot fills it on the first login and uses
 * it on the next one with the same salt and count: a client whose password
 * is wrong still proves the cached one. Another count recomputes. */
static void test_client_salted_cache(void **state)
{
    (void)state;
    scram_salted_t slot;
    memset(&slot, 0, sizeof slot);
    const char *sf = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
    const char *want = "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
    const char *passwords[] = { "pencil", "not-the-password" };
    strbuf_t out;
    strbuf_init(&out);
    for (int i = 0; i < 2; i++) {
        sasl_client_t *c = sasl_client_new("SCRAM-SHA-1", "user", passwords[i], NULL, NULL);
        sasl_client_set_salted_cache(c, &slot);
        sasl_client_set_nonce(c, "fyko+d2lbbFgONRv9qkxdawL");
        step_ok(sasl_client_step(c, NULL, 0, &out), SASL_CONTINUE);
        step_ok(sasl_client_step(c, sf, strlen(sf), &out), SASL_CONTINUE);
        assert_string_equal(out.data, want);
        assert_int_equal(slot.iterations, 4096);
        assert_int_equal(slot.hash, SCRAM_SHA1);
        sasl_client_free(c);
    }
    /* Another iteration count: PBKDF2 again, with the (wrong) password. */
    const char *sf2 = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4097";
    sasl_client_t *c = sasl_client_new("SCRAM-SHA-1", "user", "not-the-password", NULL, NULL);
    sasl_client_set_salted_cache(c, &slot);
    sasl_client_set_nonce(c, "fyko+d2lbbFgONRv9qkxdawL");
    step_ok(sasl_client_step(c, NULL, 0, &out), SASL_CONTINUE);
    step_ok(sasl_client_step(c, sf2, strlen(sf2), &out), SASL_CONTINUE);
    assert_int_equal(slot.iterations, 4097);
    assert_null(strstr(out.data, "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="));
    sasl_client_free(c);
    strbuf_free(&out);
}

static void test_rfc5802_server(void **state)
{
    (void)state;
    sasl_server_t *s = sasl_server_new("SCRAM-SHA-1", test_lookup, NULL, NULL, 0);
    strbuf_t out;
    strbuf_init(&out);
    sasl_server_set_nonce(s, "3rfcNHYJY1ZVvWVs7j");
    const char *cf = "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL";
    step_ok(sasl_server_step(s, cf, strlen(cf), &out), SASL_CONTINUE);
    assert_string_equal(out.data,
                        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096");
    const char *cfin = "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                       "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
    step_ok(sasl_server_step(s, cfin, strlen(cfin), &out), SASL_DONE);
    assert_string_equal(out.data, "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
    assert_string_equal(sasl_server_authcid(s), "user");
    assert_null(sasl_server_authzid(s));
    assert_null(sasl_server_condition(s));
    /* nothing more is accepted after success */
    step_ok(sasl_server_step(s, cfin, strlen(cfin), &out), SASL_FAIL);
    sasl_server_free(s);
    strbuf_free(&out);
}

static void test_rfc7677_client(void **state)
{
    (void)state;
    sasl_client_t *c = sasl_client_new("SCRAM-SHA-256", "user", "pencil", NULL, NULL);
    strbuf_t out;
    strbuf_init(&out);
    sasl_client_set_nonce(c, "rOprNGfwEbeRWgbNEkqO");
    step_ok(sasl_client_step(c, NULL, 0, &out), SASL_CONTINUE);
    assert_string_equal(out.data, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    const char *sf = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                     "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    step_ok(sasl_client_step(c, sf, strlen(sf), &out), SASL_CONTINUE);
    assert_string_equal(out.data, "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                                  "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    const char *fin = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    step_ok(sasl_client_step(c, fin, strlen(fin), &out), SASL_DONE);
    sasl_client_free(c);
    strbuf_free(&out);
}

static void test_rfc7677_server(void **state)
{
    (void)state;
    sasl_server_t *s = sasl_server_new("SCRAM-SHA-256", test_lookup, NULL, NULL, 0);
    strbuf_t out;
    strbuf_init(&out);
    sasl_server_set_nonce(s, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
    const char *cf = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    step_ok(sasl_server_step(s, cf, strlen(cf), &out), SASL_CONTINUE);
    assert_string_equal(out.data, "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                                  "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
    const char *cfin = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                       "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    step_ok(sasl_server_step(s, cfin, strlen(cfin), &out), SASL_DONE);
    assert_string_equal(out.data, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    sasl_server_free(s);
    strbuf_free(&out);
}

/* ------------------------------------------------------- full exchanges */

static const unsigned char cb_exp[32] = "exporter-material-0123456789abc";
static const unsigned char cb_exp_other[32] = "exporter-material-XXXXXXXXXXXXX";
static const unsigned char cb_sep[32] = "server-end-point-hash-012345678";

static void test_full_exchanges(void **state)
{
    (void)state;
    char cond[64];
    int client_ok;
    const char *mechs[] = { "SCRAM-SHA-1", "SCRAM-SHA-256" };
    for (int i = 0; i < 2; i++) {
        exchange_t x = { mechs[i], mechs[i], "juliet", "r0m30myr0m30", NULL, NULL, NULL, 0 };
        assert_int_equal(run_exchange(&x, cond, sizeof cond, &client_ok), SASL_DONE);
        assert_true(client_ok);
        /* authzid naming the user itself, bare or as a JID, is fine */
        x.authzid = "juliet";
        assert_int_equal(run_exchange(&x, cond, sizeof cond, &client_ok), SASL_DONE);
        x.authzid = "juliet@example.com";
        assert_int_equal(run_exchange(&x, cond, sizeof cond, &client_ok), SASL_DONE);
        /* anyone else: no proxy authorization */
        x.authzid = "romeo@example.com";
        assert_int_equal(run_exchange(&x, cond, sizeof cond, &client_ok), SASL_FAIL);
        assert_string_equal(cond, "invalid-authzid");
        x.authzid = "julietx";
        assert_int_equal(run_exchange(&x, cond, sizeof cond, &client_ok), SASL_FAIL);
        assert_string_equal(cond, "invalid-authzid");
        /* ...but a wrong password is reported as such first */
        x.password = "wrong";
        assert_int_equal(run_exchange(&x, cond, sizeof cond, &client_ok), SASL_FAIL);
        assert_string_equal(cond, "not-authorized");
        x.authzid = NULL;
        assert_int_equal(run_exchange(&x, cond, sizeof cond, &client_ok), SASL_FAIL);
        assert_string_equal(cond, "not-authorized");
        /* unknown user */
        x.user = "nobody";
        assert_int_equal(run_exchange(&x, cond, sizeof cond, &client_ok), SASL_FAIL);
        assert_string_equal(cond, "not-authorized");
        /* names with ',' and '=' travel escaped; non-ASCII names and passwords */
        x.user = "a,b=c";
        x.password = "odd name";
        assert_int_equal(run_exchange(&x, cond, sizeof cond, &client_ok), SASL_DONE);
        assert_true(client_ok);
        x.user = "caf\xc3\xa9";
        x.password = "p\xc3\xa4ss";
        assert_int_equal(run_exchange(&x, cond, sizeof cond, &client_ok), SASL_DONE);
    }
    /* a user with only SHA-1 keys cannot use SCRAM-SHA-256 */
    exchange_t old = { "SCRAM-SHA-256", "SCRAM-SHA-256", "old", "legacy", NULL, NULL, NULL, 0 };
    assert_int_equal(run_exchange(&old, cond, sizeof cond, &client_ok), SASL_FAIL);
    old.client_mech = old.server_mech = "SCRAM-SHA-1";
    assert_int_equal(run_exchange(&old, cond, sizeof cond, &client_ok), SASL_DONE);
}

static void test_channel_binding(void **state)
{
    (void)state;
    char cond[64];
    int client_ok;
    sasl_cbind_t both = { cb_exp, sizeof cb_exp, cb_sep, sizeof cb_sep, NULL, 0 };
    sasl_cbind_t only_sep = { NULL, 0, cb_sep, sizeof cb_sep, NULL, 0 };
    sasl_cbind_t other_exp = { cb_exp_other, sizeof cb_exp_other, cb_sep, sizeof cb_sep, NULL, 0 };
    sasl_cbind_t other_sep = { NULL, 0, cb_exp_other, sizeof cb_exp_other, NULL, 0 };
    const char *plus[] = { "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS" };
    const char *nonplus[] = { "SCRAM-SHA-1", "SCRAM-SHA-256" };

    for (int i = 0; i < 2; i++) {
        /* tls-exporter, matching */
        exchange_t x = { plus[i], plus[i], "juliet", "r0m30myr0m30", NULL, &both, &both, 1 };
        assert_int_equal(run_exchange(&x, cond, sizeof cond, &client_ok), SASL_DONE);
        assert_true(client_ok);
        /* tls-server-end-point, matching */
        x.client_cb = &only_sep;
        assert_int_equal(run_exchange(&x, cond, sizeof cond, &client_ok), SASL_DONE);
        /* tls-exporter, different data (a MITM's other TLS session) */
        x.client_cb = &other_exp;
        assert_int_equal(run_exchange(&x, cond, sizeof cond, &client_ok), SASL_FAIL);
        assert_string_equal(cond, "not-authorized");
        /* tls-server-end-point, different data */
        x.client_cb = &other_sep;
        assert_int_equal(run_exchange(&x, cond, sizeof cond, &client_ok), SASL_FAIL);
        assert_string_equal(cond, "not-authorized");
        /* client asks for a binding type the server has no data for */
        x.client_cb = &both;
        x.server_cb = &only_sep;
        assert_int_equal(run_exchange(&x, cond, sizeof cond, &client_ok), SASL_FAIL);
        assert_string_equal(cond, "not-authorized");
        /* -PLUS on a server without TLS data at all */
        x.server_cb = NULL;
        assert_int_equal(run_exchange(&x, cond, sizeof cond, &client_ok), SASL_FAIL);

        /* downgrade: client can bind ('y') but the server did offer -PLUS */
        exchange_t y = { nonplus[i], nonplus[i], "juliet", "r0m30myr0m30", NULL, &both, &both, 1 };
        assert_int_equal(run_exchange(&y, cond, sizeof cond, &client_ok), SASL_FAIL);
        assert_string_equal(cond, "not-authorized");
        /* 'y' is fine when the server really offered no -PLUS */
        y.plus_offered = 0;
        assert_int_equal(run_exchange(&y, cond, sizeof cond, &client_ok), SASL_DONE);
        /* 'n' (client without binding support) is fine either way */
        y.client_cb = NULL;
        y.plus_offered = 1;
        assert_int_equal(run_exchange(&y, cond, sizeof cond, &client_ok), SASL_DONE);
    }
    /* the client refuses -PLUS without binding data */
    assert_null(sasl_client_new("SCRAM-SHA-256-PLUS", "u", "p", NULL, NULL));
}

static void test_channel_binding_wire(void **state)
{
    (void)state;
    sasl_cbind_t both = { cb_exp, sizeof cb_exp, cb_sep, sizeof cb_sep, NULL, 0 };
    /* 'p' with a non-PLUS mechanism, and 'n'/'y' with a PLUS one */
    assert_string_equal(server_cond_after("SCRAM-SHA-1", "p=tls-exporter,,n=user,r=abc", NULL,
                                          &both, 1), "malformed-request");
    assert_string_equal(server_cond_after("SCRAM-SHA-1-PLUS", "n,,n=user,r=abc", NULL, &both, 1),
                        "malformed-request");
    assert_string_equal(server_cond_after("SCRAM-SHA-1-PLUS", "y,,n=user,r=abc", NULL, &both, 1),
                        "malformed-request");
    /* unknown binding type, bad cb-name syntax, empty cb-name */
    assert_string_equal(server_cond_after("SCRAM-SHA-1-PLUS", "p=tls-unique,,n=user,r=abc", NULL,
                                          &both, 1), "not-authorized");
    assert_string_equal(server_cond_after("SCRAM-SHA-1-PLUS", "p=tls_x,,n=user,r=abc", NULL,
                                          &both, 1), "malformed-request");
    assert_string_equal(server_cond_after("SCRAM-SHA-1-PLUS", "p=,,n=user,r=abc", NULL, &both, 1),
                        "malformed-request");

    /* c= must be base64("p=tls-exporter,," + data) exactly */
    strbuf_t c;
    strbuf_init(&c);
    strbuf_puts(&c, "p=tls-exporter,,");
    strbuf_append(&c, (const char *)cb_exp, sizeof cb_exp);
    strbuf_t good;
    strbuf_init(&good);
    base64_encode((unsigned char *)c.data, c.len, &good);
    char msg[512];
    /* right binding, wrong proof: gets past the binding check to the proof */
    snprintf(msg, sizeof msg, "c=%s,r=abcSNONCE,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", good.data);
    assert_string_equal(server_cond_after("SCRAM-SHA-1-PLUS", "p=tls-exporter,,n=user,r=abc", msg,
                                          &both, 1), "not-authorized");
    /* header only, data missing */
    snprintf(msg, sizeof msg, "c=cD10bHMtZXhwb3J0ZXIsLA==,r=abcSNONCE,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=");
    assert_string_equal(server_cond_after("SCRAM-SHA-1-PLUS", "p=tls-exporter,,n=user,r=abc", msg,
                                          &both, 1), "not-authorized");
    /* "biws" is "n,,": wrong header for a 'p' exchange */
    assert_string_equal(server_cond_after("SCRAM-SHA-1-PLUS", "p=tls-exporter,,n=user,r=abc",
                                          "c=biws,r=abcSNONCE,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
                                          &both, 1), "not-authorized");
    strbuf_free(&c);
    strbuf_free(&good);
}

static void test_unknown_user_no_leak(void **state)
{
    (void)state;
    strbuf_t a, b, k;
    strbuf_init(&a);
    strbuf_init(&b);
    strbuf_init(&k);
    const char *cf = "n,,n=nobody,r=abc";
    for (int i = 0; i < 2; i++) {
        sasl_server_t *s = sasl_server_new("SCRAM-SHA-256", test_lookup, NULL, NULL, 0);
        sasl_server_set_nonce(s, "SNONCE");
        step_ok(sasl_server_step(s, cf, strlen(cf), i ? &b : &a), SASL_CONTINUE);
        sasl_server_free(s);
    }
    /* the same fake salt every time, and a message shaped like a real one */
    assert_string_equal(a.data, b.data);
    assert_true(strncmp(a.data, "r=abcSNONCE,s=", 14) == 0);
    assert_non_null(strstr(a.data, ",i=4096"));
    sasl_server_t *s = sasl_server_new("SCRAM-SHA-256", test_lookup, NULL, NULL, 0);
    sasl_server_set_nonce(s, "SNONCE");
    const char *cf2 = "n,,n=nobody2,r=abc";
    step_ok(sasl_server_step(s, cf2, strlen(cf2), &k), SASL_CONTINUE);
    assert_string_not_equal(a.data, k.data); /* per-user salt */
    const char *fin = "c=biws,r=abcSNONCE,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    step_ok(sasl_server_step(s, fin, strlen(fin), &k), SASL_FAIL);
    assert_string_equal(sasl_server_condition(s), "not-authorized");
    assert_null(sasl_server_authcid(s));
    sasl_server_free(s);
    strbuf_free(&a);
    strbuf_free(&b);
    strbuf_free(&k);
}

/* ------------------------------------------------------ malformed input */

static void test_malformed_client_first(void **state)
{
    (void)state;
    const char *bad[] = {
        "x,,n=user,r=abc",            /* unknown gs2 flag */
        "n",                          /* truncated */
        "n,",                         /* no authzid separator */
        "n,,",                        /* no bare message */
        "nn,,n=user,r=abc",
        "n,x=a,n=user,r=abc",         /* authzid attribute must be a= */
        "n,a=,n=user,r=abc",          /* empty authzid */
        "n,a=x=41,n=user,r=abc",      /* bad escape in authzid */
        "n,,m=ext,n=user,r=abc",      /* reserved mandatory extension */
        "n,,n=,r=abc",                /* empty user */
        "n,,n=us=2cer,r=abc",         /* escapes are upper case */
        "n,,n=us=er,r=abc",           /* bare '=' */
        "n,,n=us=2",                  /* cut escape */
        "n,,n=\xff,r=abc",            /* not UTF-8 */
        "n,,r=abc,n=user",            /* order */
        "n,,n=user",                  /* no nonce */
        "n,,n=user,r=",               /* empty nonce */
        ("n,,n=user,r=a\x7f" "b"),    /* nonce not printable */
        "n,,n=user,r=a b",            /* space is not printable either */
        "n,,n=user,r=abc,",           /* trailing comma */
        "n,,n=user,r=abc,1=x",        /* extension name must be a letter */
        "n,,n=user,r=abc,x=",         /* empty extension value */
        "n,,n=user,r=abc,m=x",        /* m only at the start, and refused */
        "n,,n=user\x07,r=abc",        /* SASLprep prohibits control characters */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *c = server_cond_after("SCRAM-SHA-1", bad[i], NULL, NULL, 0);
        if (strcmp(c, "malformed-request") != 0)
            fail_msg("client-first \"%s\": condition \"%s\"", bad[i], c);
    }
    /* optional extensions are ignored; an embedded NUL is not text */
    assert_string_equal(server_cond_after("SCRAM-SHA-1", "n,,n=user,r=abc,x=ext", NULL, NULL, 0), "");
    sasl_server_t *s = sasl_server_new("SCRAM-SHA-1", test_lookup, NULL, NULL, 0);
    strbuf_t out;
    strbuf_init(&out);
    step_ok(sasl_server_step(s, "n,,n=us\0er,r=abc", 16, &out), SASL_FAIL);
    assert_string_equal(sasl_server_condition(s), "malformed-request");
    sasl_server_free(s);
    /* oversize message */
    char *big = malloc(10000);
    memset(big, 'a', 9999);
    big[9999] = '\0';
    memcpy(big, "n,,n=user,r=", 12);
    assert_string_equal(server_cond_after("SCRAM-SHA-1", big, NULL, NULL, 0), "malformed-request");
    free(big);
    strbuf_free(&out);
}

static void test_malformed_client_final(void **state)
{
    (void)state;
    const char *cf = "n,,n=user,r=abc";
    struct {
        const char *msg;
        const char *cond;
    } cases[] = {
        { "r=abcSNONCE,c=biws,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", "malformed-request" }, /* order */
        { "c=biws,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", "malformed-request" },   /* no nonce */
        { "c=biws,r=abcSNONCE", "malformed-request" },                      /* no proof */
        { "c=biws,r=abcSNONCE,", "malformed-request" },
        { "c=biws,r=abcSNONCE,p=", "malformed-request" },                   /* empty proof */
        { "c=bi ws,r=abcSNONCE,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", "malformed-request" }, /* b64 */
        { "c=biw,r=abcSNONCE,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", "malformed-request" },
        { "c=biws,r=abcSNONCE,p=v0X8v3Bz2T0CJGbJQyF0X+HI4T", "malformed-request" },
        { "c=biws,r=abcSNONCE,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
          "malformed-request" },                              /* SHA-256 sized proof */
        { "c=biws,r=abcSNONCE,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=,x=y", "malformed-request" },
        { "c=biws,r=,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", "malformed-request" },
        { "c=biws,r=abcSNONCE,1=x,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", "malformed-request" },
        { "c=biws,r=abcOTHER,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", "not-authorized" }, /* nonce */
        { "c=biws,r=abc,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", "not-authorized" },
        { "c=eSws,r=abcSNONCE,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", "not-authorized" }, /* "y,," */
        { "c=biwsAA==,r=abcSNONCE,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", "not-authorized" },
        { "c=biws,r=abcSNONCE,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", "not-authorized" }, /* proof */
        { "c=biws,r=abcSNONCE,x=ext,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", "not-authorized" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *c = server_cond_after("SCRAM-SHA-1", cf, cases[i].msg, NULL, 0);
        if (strcmp(c, cases[i].cond) != 0)
            fail_msg("client-final \"%s\": condition \"%s\", want \"%s\"", cases[i].msg, c,
                     cases[i].cond);
    }
    /* a correct final message for this nonce passes */
    strbuf_t fin;
    strbuf_init(&fin);
    client_final_for("abc", &fin);
    assert_string_equal(server_cond_after("SCRAM-SHA-1", cf, fin.data, NULL, 0), "");
    /* flipping one proof character breaks it */
    fin.data[fin.len - 3] = fin.data[fin.len - 3] == 'A' ? 'B' : 'A';
    assert_string_equal(server_cond_after("SCRAM-SHA-1", cf, fin.data, NULL, 0), "not-authorized");
    strbuf_free(&fin);
}

static void test_empty_initial_response(void **state)
{
    (void)state;
    sasl_server_t *s = sasl_server_new("SCRAM-SHA-1", test_lookup, NULL, NULL, 0);
    strbuf_t out;
    strbuf_init(&out);
    /* no initial response: an empty challenge, then the real first message */
    step_ok(sasl_server_step(s, "", 0, &out), SASL_CONTINUE);
    assert_int_equal(out.len, 0);
    sasl_server_set_nonce(s, "3rfcNHYJY1ZVvWVs7j");
    const char *cf = "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL";
    step_ok(sasl_server_step(s, cf, strlen(cf), &out), SASL_CONTINUE);
    const char *cfin = "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                       "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
    step_ok(sasl_server_step(s, cfin, strlen(cfin), &out), SASL_DONE);
    sasl_server_free(s);
    /* a second empty message is an error */
    s = sasl_server_new("SCRAM-SHA-1", test_lookup, NULL, NULL, 0);
    step_ok(sasl_server_step(s, "", 0, &out), SASL_CONTINUE);
    step_ok(sasl_server_step(s, "", 0, &out), SASL_FAIL);
    assert_string_equal(sasl_server_condition(s), "malformed-request");
    sasl_server_free(s);
    strbuf_free(&out);
}

/* ---------------------------------------------------------- client checks */

/* Starts a SHA-1 client with nonce "abc" and feeds it server-first sf. */
static sasl_result_t client_after(const char *sf, sasl_client_t **keep)
{
    sasl_client_t *c = sasl_client_new("SCRAM-SHA-1", "user", "pencil", NULL, NULL);
    strbuf_t out;
    strbuf_init(&out);
    sasl_client_set_nonce(c, "abc");
    step_ok(sasl_client_step(c, NULL, 0, &out), SASL_CONTINUE);
    sasl_result_t r = sasl_client_step(c, sf, strlen(sf), &out);
    strbuf_free(&out);
    if (keep)
        *keep = c;
    else
        sasl_client_free(c);
    return r;
}

static void test_client_rejects(void **state)
{
    (void)state;
    assert_int_equal(client_after("r=abcS,s=QSXCR+Q6sek8bf92,i=4096", NULL), SASL_CONTINUE);
    const char *bad[] = {
        "r=xyzS,s=QSXCR+Q6sek8bf92,i=4096",     /* nonce not ours */
        "r=abc,s=QSXCR+Q6sek8bf92,i=4096",      /* no server part */
        "r=abcS,s=QSXCR+Q6sek8bf92,i=4095",     /* too few iterations */
        "r=abcS,s=QSXCR+Q6sek8bf92,i=04096",
        "r=abcS,s=QSXCR+Q6sek8bf92,i=99999999999",
        "r=abcS,s=QSXCR+Q6sek8bf92,i=-1",
        "r=abcS,s=QSXCR+Q6sek8bf9,i=4096",      /* bad base64 */
        "r=abcS,s=,i=4096",
        "r=abcS,i=4096,s=QSXCR+Q6sek8bf92",     /* order */
        "m=x,r=abcS,s=QSXCR+Q6sek8bf92,i=4096", /* mandatory extension */
        "e=other-error",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (client_after(bad[i], NULL) != SASL_FAIL)
            fail_msg("client accepted server-first \"%s\"", bad[i]);

    /* server-final: right signature (RFC 5802 run), wrong one, error */
    const char *sf = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
    const char *finals[] = { "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=", "v=rmF9pqV8S7suAoZWja4dJRkFsKA=",
                             "e=invalid-proof", "v=", "v=rmF9pqV8S7suAoZWja4dJRkFsKQ" };
    for (size_t i = 0; i < sizeof finals / sizeof finals[0]; i++) {
        sasl_client_t *c = sasl_client_new("SCRAM-SHA-1", "user", "pencil", NULL, NULL);
        strbuf_t out;
        strbuf_init(&out);
        sasl_client_set_nonce(c, "fyko+d2lbbFgONRv9qkxdawL");
        sasl_client_step(c, NULL, 0, &out);
        step_ok(sasl_client_step(c, sf, strlen(sf), &out), SASL_CONTINUE);
        step_ok(sasl_client_step(c, finals[i], strlen(finals[i]), &out),
                i == 0 ? SASL_DONE : SASL_FAIL);
        step_ok(sasl_client_step(c, finals[0], strlen(finals[0]), &out), SASL_FAIL);
        strbuf_free(&out);
        sasl_client_free(c);
    }
    assert_null(sasl_client_new("DIGEST-MD5", "u", "p", NULL, NULL));
    assert_null(sasl_client_new("SCRAM-SHA-1", "", "p", NULL, NULL));
    assert_null(sasl_client_new("SCRAM-SHA-1", "u", "p\x01", NULL, NULL)); /* SASLprep */
    assert_null(sasl_server_new("DIGEST-MD5", test_lookup, NULL, NULL, 0));
    assert_null(sasl_server_new("scram-sha-1", test_lookup, NULL, NULL, 0));
}

static void test_client_gs2_headers(void **state)
{
    (void)state;
    sasl_cbind_t both = { cb_exp, sizeof cb_exp, cb_sep, sizeof cb_sep, NULL, 0 };
    sasl_cbind_t only_sep = { NULL, 0, cb_sep, sizeof cb_sep, NULL, 0 };
    struct {
        const char *mech, *authzid;
        const sasl_cbind_t *cb;
        const char *want;
    } cases[] = {
        { "SCRAM-SHA-1", NULL, NULL, "n,,n=us=2Cer=3D,r=N" },
        { "SCRAM-SHA-1", NULL, &both, "y,,n=us=2Cer=3D,r=N" },
        { "SCRAM-SHA-1-PLUS", NULL, &both, "p=tls-exporter,,n=us=2Cer=3D,r=N" },
        { "SCRAM-SHA-256-PLUS", NULL, &only_sep, "p=tls-server-end-point,,n=us=2Cer=3D,r=N" },
        { "SCRAM-SHA-256", "a,=b", NULL, "n,a=a=2C=3Db,n=us=2Cer=3D,r=N" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sasl_client_t *c = sasl_client_new(cases[i].mech, "us,er=", "pw", cases[i].authzid,
                                           cases[i].cb);
        strbuf_t out;
        strbuf_init(&out);
        sasl_client_set_nonce(c, "N");
        step_ok(sasl_client_step(c, NULL, 0, &out), SASL_CONTINUE);
        assert_string_equal(out.data, cases[i].want);
        strbuf_free(&out);
        sasl_client_free(c);
    }
}

/* ------------------------------------------------------------------ PLAIN */

static const char *plain_try(const char *msg, size_t len, const char **authzid)
{
    sasl_server_t *s = sasl_server_new("PLAIN", test_lookup, NULL, NULL, 0);
    strbuf_t out;
    strbuf_init(&out);
    sasl_result_t r = sasl_server_step(s, msg, len, &out);
    assert_int_equal(out.len, 0);
    if (r == SASL_DONE) {
        snprintf(last_cond, sizeof last_cond, "ok:%s", sasl_server_authcid(s));
        if (authzid)
            *authzid = sasl_server_authzid(s) ? "set" : NULL;
    } else {
        assert_int_equal(r, SASL_FAIL);
        snprintf(last_cond, sizeof last_cond, "%s", sasl_server_condition(s));
    }
    strbuf_free(&out);
    sasl_server_free(s);
    return last_cond;
}

#define PLAIN(lit) plain_try(lit, sizeof(lit) - 1, NULL)

static void test_plain_server(void **state)
{
    (void)state;
    assert_string_equal(PLAIN("\0juliet\0r0m30myr0m30"), "ok:juliet");
    assert_string_equal(PLAIN("juliet\0juliet\0r0m30myr0m30"), "ok:juliet");
    assert_string_equal(PLAIN("juliet@example.com\0juliet\0r0m30myr0m30"), "ok:juliet");
    assert_string_equal(PLAIN("\0old\0legacy"), "ok:old");               /* SHA-1 fallback */
    assert_string_equal(PLAIN("\0caf\xc3\xa9\0p\xc3\xa4ss"), "ok:caf\xc3\xa9");
    /* SASLprep: a non-ASCII space in a password maps to an ASCII space */
    assert_string_equal(PLAIN("\0a,b=c\0odd\xc2\xa0name"), "ok:a,b=c");
    assert_string_equal(PLAIN("\0juliet\0wrong"), "not-authorized");
    assert_string_equal(PLAIN("\0nobody\0r0m30myr0m30"), "not-authorized");
    assert_string_equal(PLAIN("romeo\0juliet\0r0m30myr0m30"), "invalid-authzid");
    assert_string_equal(PLAIN("romeo\0juliet\0wrong"), "not-authorized");
    assert_string_equal(PLAIN("juliet"), "malformed-request");
    assert_string_equal(PLAIN("\0juliet"), "malformed-request");
    assert_string_equal(PLAIN("\0juliet\0r0m30\0myr0m30"), "malformed-request");
    assert_string_equal(PLAIN("\0\0r0m30myr0m30"), "malformed-request");
    assert_string_equal(PLAIN("\0juliet\0"), "malformed-request");
    assert_string_equal(PLAIN("\0jul\xffiet\0r0m30myr0m30"), "malformed-request");
    assert_string_equal(PLAIN("\0juliet\0r0m30\xc3"), "malformed-request");
    assert_string_equal(PLAIN("\xc3\0juliet\0r0m30myr0m30"), "malformed-request");
    assert_string_equal(PLAIN("\0jul\x01iet\0r0m30myr0m30"), "malformed-request");

    char big[600];
    memset(big, 'x', sizeof big);
    big[0] = '\0';
    memcpy(big + 1, "juliet", 6);
    big[7] = '\0';
    assert_string_equal(plain_try(big, 8 + 255, NULL), "not-authorized");
    assert_string_equal(plain_try(big, 8 + 256, NULL), "malformed-request");

    const char *z = "x";
    plain_try("\0juliet\0r0m30myr0m30", 20, &z);
    assert_null(z);
    plain_try("juliet\0juliet\0r0m30myr0m30", 26, &z);
    assert_non_null(z);
}

static void test_plain_client(void **state)
{
    (void)state;
    char cond[64];
    int client_ok;
    exchange_t x = { "PLAIN", "PLAIN", "juliet", "r0m30myr0m30", NULL, NULL, NULL, 0 };
    assert_int_equal(run_exchange(&x, cond, sizeof cond, &client_ok), SASL_DONE);
    assert_true(client_ok);
    x.authzid = "juliet@example.com";
    assert_int_equal(run_exchange(&x, cond, sizeof cond, &client_ok), SASL_DONE);
    x.password = "nope";
    assert_int_equal(run_exchange(&x, cond, sizeof cond, &client_ok), SASL_FAIL);
    assert_string_equal(cond, "not-authorized");

    sasl_client_t *c = sasl_client_new("PLAIN", "juliet", "pw", "j@x", NULL);
    strbuf_t out;
    strbuf_init(&out);
    step_ok(sasl_client_step(c, NULL, 0, &out), SASL_CONTINUE);
    assert_int_equal(out.len, 13);
    assert_memory_equal(out.data, "j@x\0juliet\0pw", 13);
    step_ok(sasl_client_step(c, "junk", 4, &out), SASL_FAIL);
    sasl_client_free(c);
    strbuf_free(&out);
}

/* ------------------------------------------------------------------- keys */

static void test_keys_format(void **state)
{
    (void)state;
    scram_keys_t k, p;
    strbuf_t sb;
    strbuf_init(&sb);
    const unsigned char salt[] = "0123456789abcdef";
    assert_int_equal(scram_keys_derive(SCRAM_SHA1, "pencil", salt, 16, 4096, &k), 0);
    scram_keys_format(&k, &sb);
    assert_true(strncmp(sb.data, "SHA-1:4096:MDEyMzQ1Njc4OWFiY2RlZg==:", 36) == 0);
    assert_int_equal(scram_keys_parse(sb.data, &p), 0);
    assert_int_equal(p.hash, SCRAM_SHA1);
    assert_int_equal(p.iterations, 4096);
    assert_int_equal(p.salt_len, 16);
    assert_memory_equal(p.salt, salt, 16);
    assert_memory_equal(p.stored_key, k.stored_key, 20);
    assert_memory_equal(p.server_key, k.server_key, 20);

    assert_int_equal(scram_keys_new(SCRAM_SHA256, "pencil", 5000, &k), 0);
    assert_int_equal(k.salt_len, 16);
    strbuf_reset(&sb);
    scram_keys_format(&k, &sb);
    assert_true(strncmp(sb.data, "SHA-256:5000:", 13) == 0);
    assert_int_equal(scram_keys_parse(sb.data, &p), 0);
    assert_memory_equal(&p.stored_key, &k.stored_key, 32);
    assert_memory_equal(&p.server_key, &k.server_key, 32);
    assert_memory_equal(p.salt, k.salt, 16);

    /* the RFC 7677 user's keys are what the server vector test relied on */
    assert_int_equal(scram_keys_parse("SHA-256:4096:W22ZaJ0SNY7soEsUEjb6gQ==:"
                                      "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
                                      "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", &p), 0);
    assert_int_equal(test_lookup(NULL, "user", SCRAM_SHA256, &k), 0);
    assert_memory_equal(p.stored_key, k.stored_key, 32);
    assert_memory_equal(p.server_key, k.server_key, 32);

    const char *bad[] = {
        "", "SHA-1", "SHA-1:4096", "SHA-512:4096:AA==:AA==:AA==",
        "SHA-1:0:MDEy:AAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "SHA-1:-1:MDEy:AAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "SHA-1:4096::AAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "SHA-1:4096:MDEy:AAAA:AAAAAAAAAAAAAAAAAAAAAAAAAAA=",          /* short key */
        "SHA-1:4096:MDEy:AAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAA=:x",
        "SHA-1:4096:MD!y:AAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "SHA-1:99999999999:MDEy:AAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (scram_keys_parse(bad[i], &p) == 0)
            fail_msg("parsed \"%s\"", bad[i]);
    assert_int_equal(scram_keys_parse(
                         "SHA-1:1:MDEy:AAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAA=", &p),
                     0);
    assert_int_equal(scram_keys_derive(SCRAM_SHA1, "x", salt, 0, 4096, &k), -1);
    assert_int_equal(scram_keys_derive(SCRAM_SHA1, "x", salt, 16, 0, &k), -1);
    assert_int_equal(scram_keys_derive((scram_hash_t)7, "x", salt, 16, 1, &k), -1);
    assert_int_equal(scram_hash_len(SCRAM_SHA1), 20);
    assert_int_equal(scram_hash_len(SCRAM_SHA256), 32);
    strbuf_free(&sb);
}

static void test_ct_equal(void **state)
{
    (void)state;
    assert_true(sasl_ct_equal("abc", "abc", 3));
    assert_false(sasl_ct_equal("abc", "abd", 3));
    assert_true(sasl_ct_equal("", "", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc5802_client),
        cmocka_unit_test(test_rfc5802_server),
        cmocka_unit_test(test_client_salted_cache),
        cmocka_unit_test(test_rfc7677_client),
        cmocka_unit_test(test_rfc7677_server),
        cmocka_unit_test(test_full_exchanges),
        cmocka_unit_test(test_channel_binding),
        cmocka_unit_test(test_channel_binding_wire),
        cmocka_unit_test(test_unknown_user_no_leak),
        cmocka_unit_test(test_malformed_client_first),
        cmocka_unit_test(test_malformed_client_final),
        cmocka_unit_test(test_empty_initial_response),
        cmocka_unit_test(test_client_rejects),
        cmocka_unit_test(test_client_gs2_headers),
        cmocka_unit_test(test_plain_server),
        cmocka_unit_test(test_plain_client),
        cmocka_unit_test(test_keys_format),
        cmocka_unit_test(test_ct_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
