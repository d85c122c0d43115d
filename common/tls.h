/* tls: the OpenSSL side of weft's streams — contexts, certificates, peer
 * identity checks and channel-binding data. The libevent wrapping (OpenSSL
 * bufferevents, STARTTLS switch-over) is done where each connection lives:
 * c2s/client.c, s2s/conn.c, in.c and out.c, router/link.c, and comp_client.c
 * for the link to the router; they use only what is declared here. After a
 * c2s handshake, tls_record.c may run the records instead of OpenSSL.
 *
 * Policy every context shares: TLS 1.2 minimum, AEAD-only ECDHE suites for
 * TLS 1.2 (OpenSSL's default TLS 1.3 suites), no compression, no renegotiation,
 * buffers released when idle. Functions that can fail with an OpenSSL reason
 * take (err, errlen) and fill it with one line. */
#ifndef WEFT_TLS_H
#define WEFT_TLS_H
#include <stddef.h>
#include <openssl/ssl.h>

/* Client certificate policy for tls_server_ctx_new. */
enum {
    TLS_CLIENT_CERT_NONE = 0,      /* do not ask (c2s without SASL EXTERNAL) */
    TLS_CLIENT_CERT_REQUIRE = 1,   /* handshake fails without a valid cert (internal links) */
    TLS_CLIENT_CERT_OPTIONAL = 2,  /* ask, never fail the handshake; the verify result is
                                      kept for tls_peer_cert_matches (s2s, SASL EXTERNAL) */
};

/* Largest tls_cbind_server_end_point output (EVP_MAX_MD_SIZE). */
#define TLS_CBIND_MAX 64

/* Server context from a PEM certificate chain and key. ca_file (may be NULL:
 * system store) is where client certificates are verified against when
 * client_cert is not TLS_CLIENT_CERT_NONE. The caller frees with SSL_CTX_free.
 * NULL with err filled on failure (key/cert mismatch, ...); a file that cannot
 * be opened is named with the system's reason ("certificate PATH: No such
 * file or directory"). */
SSL_CTX *tls_server_ctx_new(const char *cert_file, const char *key_file, const char *ca_file,
                            int client_cert, char *err, size_t errlen);

/* 0 if path can be opened for reading and is not a directory; else -1 with
 * err "WHAT PATH: reason". For configured files checked at start. */
int tls_file_check(const char *what, const char *path, char *err, size_t errlen);

/* TLS session tickets a server context hands out (tls.session-tickets of c2s
 * and s2s). on=0: no NewSessionTicket after a TLS 1.3 handshake and no ticket
 * extension in TLS 1.2, so a peer can only resume through the session cache
 * (TLS 1.2 session ids); some peers (jabberd2 2.7's s2s, see docs/s2s.md)
 * handle post-handshake messages badly. on=1: OpenSSL's two stateless tickets
 * per handshake, which let a reconnecting client skip the certificate and its
 * signature. Call before the first SSL_new on ctx. */
void tls_server_set_tickets(SSL_CTX *ctx, int on);

/* Client context. ca_file NULL means the system trust store. verify=1 fails the
 * handshake on a bad chain or name; verify=0 completes it anyway and leaves the
 * result for tls_peer_cert_matches (s2s falls back to dialback then). */
SSL_CTX *tls_client_ctx_new(const char *ca_file, int verify, char *err, size_t errlen);

/* Sets SNI and the name the server certificate must carry (no partial
 * wildcards). Call before the handshake. 0 / -1. */
int tls_client_set_peer_name(SSL *ssl, const char *name);

/* Where c2s and s2s look for their certificate when the config names none;
 * the only place tls.self-signed creates one. */
#define TLS_DEFAULT_CERT "var/certs/localhost.crt"
#define TLS_DEFAULT_KEY "var/certs/localhost.key"

/* Before loading the configured certificate: with selfsigned, a missing
 * certificate at TLS_DEFAULT_CERT is created (tls_selfsigned_ensure for
 * domain). Any other path is left alone, and is an error when it does not
 * exist and selfsigned is on (saying self-signed does not apply there); an
 * unreadable file is reported by tls_server_ctx_new, naming it. 0 / -1. */
int tls_cert_prepare(const char *cert_path, const char *key_path, int selfsigned,
                     const char *domain, char *err, size_t errlen);

/* Makes sure a certificate exists at cert_path: if absent, generates an EC P-256
 * key (key_path, mode 0600) and a self-signed v3 certificate for domain
 * (CN=domain, SAN DNS:domain and DNS:*.domain, 10 years, random serial; mode
 * 0644), creating parent directories. An existing cert_path is left alone.
 * Safe against a concurrent call from another process. 0 / -1 with err. */
int tls_selfsigned_ensure(const char *cert_path, const char *key_path, const char *domain,
                          char *err, size_t errlen);

/* RFC 9266 tls-exporter channel binding: 32 bytes exported with label
 * "EXPORTER-Channel-Binding" and no context. TLS 1.3 only; -1 otherwise or
 * before the handshake completes. */
int tls_cbind_exporter(SSL *ssl, unsigned char out[32]);

/* RFC 5929 tls-server-end-point: hash of the server certificate with the hash of
 * its signature algorithm (SHA-256 when that is MD5 or SHA-1). is_server says
 * which end ssl is (the server's own cert vs. the peer's). out holds
 * TLS_CBIND_MAX bytes; *len receives the length. -1 if no cert or the signature
 * has no single hash (e.g. Ed25519). */
int tls_cbind_server_end_point(SSL *ssl, int is_server, unsigned char *out, size_t *len);

/* RFC 5929 tls-unique: the first Finished message of the last handshake (the
 * client's on a full handshake, the server's on a resumption). RFC 9266 warns
 * it is weak on TLS 1.3; offered for the clients that know nothing else.
 * *len is the capacity of out on entry. 0 or -1. */
int tls_cbind_unique(SSL *ssl, int is_server, unsigned char *out, size_t *len);

/* 1 if the peer presented a certificate that verified (X509_V_OK) and whose
 * DNS identities (SAN, or CN when there is no SAN) match domain; else 0. */
int tls_peer_cert_matches(SSL *ssl, const char *domain);

/* Drains the OpenSSL error queue of this thread into buf as one line
 * ("reason; reason; ..."), or "no OpenSSL error detail" when it is empty. */
void tls_error_string(char *buf, size_t len);

#endif
