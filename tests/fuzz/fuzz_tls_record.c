/* libFuzzer target for tls_record.c's record parsing after the handshake.
 *
 * Two record layers are built from fixed secrets (tls_record_new): "server",
 * the one under test, and "peer", its mirror, which seals what the input asks
 * for so that the fuzzer reaches the code behind the AEAD tag (content
 * types, padding, alerts, KeyUpdate split over records) and not only the
 * header checks. The first byte picks the cipher suite and the key-update
 * limit; the rest is a list of commands:
 *
 *   op (1 byte) | len (2 bytes, big endian) | len bytes
 *   op % 6: 0 raw bytes onto the server's input (headers, bad tags, garbage)
 *           1 the peer seals the bytes as application data
 *           2 the peer seals the bytes as a record of inner type bytes[0]
 *             (0: the bytes are the whole inner plaintext, padding included)
 *           3 the peer sends a KeyUpdate (bytes[0] & 1: update_requested)
 *           4 the server seals the bytes as application data
 *           5 the server sends a KeyUpdate
 *
 * After each command the server opens everything it has, and whatever it
 * writes (data, its KeyUpdates, alerts) is opened by the peer, so both stay in
 * step while the input is well formed. Checked: no crash, leak or UB; while
 * no raw bytes were injected and nothing failed, application data comes out
 * on the other side exactly as it went in. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>
#include "tls_record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const unsigned suite_ids[3] = {0x1301, 0x1302, 0x1303};
static const size_t secret_lens[3] = {32, 48, 32};

typedef struct fz_side {
    tls_record_t *r;
    struct evbuffer *in;    /* records this side has to open */
    strbuf_t plain;         /* application data it opened */
    int done;               /* saw an error or close_notify */
} fz_side_t;

/* Opens every complete record of s->in; what s must send back goes to the
 * other side's input. */
static void fz_drain(fz_side_t *s, fz_side_t *other)
{
    while (!s->done) {
        int rc = tls_record_open(s->r, s->in, &s->plain, other->in);
        if (rc == TLSR_AGAIN)
            return;
        if (rc != TLSR_OK) {
            if (!tls_record_error(s->r))
                abort();
            s->done = 1;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int suite = data[0] % 3;
    tls_record_set_key_limit((data[0] & 0x80) ? (uint64_t)((data[0] >> 2) & 7) + 1 : 0);
    data++, size--;

    unsigned char a[48], b[48];
    for (size_t i = 0; i < sizeof a; i++) {
        a[i] = (unsigned char)(i * 7 + 1);
        b[i] = (unsigned char)(i * 13 + 5);
    }
    fz_side_t srv = {0}, peer = {0};
    srv.r = tls_record_new(suite_ids[suite], a, b, secret_lens[suite]);
    peer.r = tls_record_new(suite_ids[suite], b, a, secret_lens[suite]);
    if (!srv.r || !peer.r)
        abort();
    srv.in = evbuffer_new();
    peer.in = evbuffer_new();
    strbuf_init(&srv.plain);
    strbuf_init(&peer.plain);
    /* What each side sealed as application data, to compare with what the
     * other side opened while the exchange is clean. */
    strbuf_t to_srv, to_peer;
    strbuf_init(&to_srv);
    strbuf_init(&to_peer);
    int clean = 1;

    while (size >= 3) {
        unsigned op = data[0] % 6;
        size_t len = (size_t)data[1] << 8 | data[2];
        data += 3, size -= 3;
        if (len > size)
            len = size;
        const uint8_t *p = data;
        data += len, size -= len;
        switch (op) {
        case 0:
            evbuffer_add(srv.in, p, len);
            clean = 0;
            break;
        case 1:
            if (tls_record_seal(peer.r, p, len, srv.in) == 0)
                strbuf_append(&to_srv, (const char *)p, len);
            break;
        case 2:
            if (len >= 1)
                tls_record_seal_raw(peer.r, p[0], p + 1, len - 1, srv.in);
            clean = 0;   /* may hold application data, alerts, anything */
            break;
        case 3:
            tls_record_key_update(peer.r, len >= 1 && (p[0] & 1), srv.in);
            break;
        case 4:
            if (tls_record_seal(srv.r, p, len, peer.in) == 0)
                strbuf_append(&to_peer, (const char *)p, len);
            break;
        case 5:
            tls_record_key_update(srv.r, len >= 1 && (p[0] & 1), peer.in);
            break;
        }
        fz_drain(&srv, &peer);
        fz_drain(&peer, &srv);
        fz_drain(&srv, &peer);
        if (len % 5 == 4) {   /* sometimes free the cipher contexts, as an idle c2s does */
            tls_record_idle(srv.r);
            tls_record_idle(peer.r);
        }
    }
    if (clean && !srv.done && !peer.done &&
        (srv.plain.len != to_srv.len || memcmp(srv.plain.data ? srv.plain.data : "", to_srv.data ? to_srv.data : "", to_srv.len) ||
         peer.plain.len != to_peer.len ||
         memcmp(peer.plain.data ? peer.plain.data : "", to_peer.data ? to_peer.data : "", to_peer.len)))
        abort();

    tls_record_free(srv.r);
    tls_record_free(peer.r);
    evbuffer_free(srv.in);
    evbuffer_free(peer.in);
    strbuf_free(&srv.plain);
    strbuf_free(&peer.plain);
    strbuf_free(&to_srv);
    strbuf_free(&to_peer);
    return 0;
}
