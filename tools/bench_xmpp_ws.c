/* bench_xmpp_ws: weft-bench-xmpp's WebSocket transport (--websocket PATH),
 * so the same scenarios run over RFC 7395 as over TCP. The connection code
 * (bench_xmpp_conn.c) keeps writing and reading an XMPP stream; here it is
 * carried: the HTTP upgrade first, then each write becomes one masked text
 * frame (the stream header becomes <open/>, </stream:stream> <close/>), and
 * a stanza written without a namespace gets xmlns='jabber:client' (RFC 7395
 * 3.3.3: each message stands alone; Prosody refuses one without), and
 * each text message read is fed to the parser (<open/> as a stream header,
 * <close/> as its end). Pings are answered. The mask key is all zeros: the
 * servers under test do not care, and the payload need not be copied. */
#include "bench_xmpp.h"
#include "ws_frame.h"
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdio.h>
#include <string.h>

#define FRAMING "urn:ietf:params:xml:ns:xmpp-framing"

void bx_ws_upgrade(bx_conn_t *c)
{
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: d2VmdC1iZW5jaC1rZXktMQ==\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Protocol: xmpp\r\n\r\n",
                     c->t->ws_path, c->t->domain);
    bx_io_write(c, req, (size_t)n);
}

static void bx_ws_frame(bx_conn_t *c, int opcode, const char *data, size_t len)
{
    uint8_t hdr[WS_FRAME_HEADER_MAX];
    size_t hl = ws_frame_header(hdr, opcode, len);
    hdr[1] |= 0x80;                  /* masked, key 0 */
    memset(hdr + hl, 0, 4);
    /* one write: under TLS, one record per frame */
    static strbuf_t f;
    strbuf_reset(&f);
    strbuf_append(&f, (const char *)hdr, hl + 4);
    strbuf_append(&f, data, len);
    bx_io_write(c, f.data, f.len);
}

/* A stanza whose start tag declares no default namespace. */
static int bx_ws_needs_ns(const char *data, size_t len)
{
    if (!(len > 4 && (!strncmp(data, "<iq", 3) || !strncmp(data, "<message", 8) || !strncmp(data, "<presence", 9))))
        return 0;
    const char *gt = memchr(data, '>', len);
    size_t tag = gt ? (size_t)(gt - data) : len;
    for (size_t i = 0; i + 6 <= tag; i++)
        if (!memcmp(data + i, "xmlns=", 6))
            return 0;
    return 1;
}

void bx_ws_send(bx_conn_t *c, const char *data, size_t len)
{
    char open[512];
    if (len >= 14 && (!strncmp(data, "<?xml", 5) || !strncmp(data, "<stream:stream", 14))) {
        int n = snprintf(open, sizeof open, "<open xmlns='" FRAMING "' to='%s' version='1.0'/>", c->t->domain);
        bx_ws_frame(c, WS_OP_TEXT, open, (size_t)n);
    } else if (len == 16 && !strncmp(data, "</stream:stream>", 16)) {
        static const char close_el[] = "<close xmlns='" FRAMING "'/>";
        bx_ws_frame(c, WS_OP_TEXT, close_el, sizeof close_el - 1);
    } else if (bx_ws_needs_ns(data, len)) {
        static strbuf_t sb;
        size_t name = strcspn(data, " />");
        strbuf_reset(&sb);
        strbuf_append(&sb, data, name);
        strbuf_puts(&sb, " xmlns='jabber:client'");
        strbuf_append(&sb, data + name, len - name);
        bx_ws_frame(c, WS_OP_TEXT, sb.data, sb.len);
    } else {
        bx_ws_frame(c, WS_OP_TEXT, data, len);
    }
}

static int bx_ws_starts(const char *p, size_t n, const char *tag)
{
    size_t tl = strlen(tag);
    return n > tl && !memcmp(p, tag, tl) && (p[tl] == ' ' || p[tl] == '/' || p[tl] == '>');
}

/* Consumes what it can of in; returns 0, or -1 with why set. Text messages
 * go to feed (the stream parser). */
int bx_ws_read(bx_conn_t *c, struct evbuffer *in, int (*feed)(bx_conn_t *, const char *, size_t), char *why,
               size_t whylen)
{
    if (!c->ws_up) {
        struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (end.pos < 0)
            return 0;
        char line[16] = {0};
        evbuffer_copyout(in, line, sizeof line - 1);
        if (strncmp(line, "HTTP/1.1 101", 12)) {
            snprintf(why, whylen, "websocket upgrade refused: %.12s", line);
            return -1;
        }
        evbuffer_drain(in, (size_t)end.pos + 4);
        c->ws_up = 1;
        bx_ws_send(c, "<stream:stream>", 15);   /* our <open/> */
    }
    for (;;) {
        size_t have = evbuffer_get_length(in);
        if (have < 2)
            return 0;
        uint8_t h[10];
        evbuffer_copyout(in, h, have < 10 ? have : 10);
        uint64_t len = h[1] & 0x7f;
        size_t hl = 2;
        if (len == 126) {
            if (have < 4)
                return 0;
            len = (uint64_t)h[2] << 8 | h[3];
            hl = 4;
        } else if (len == 127) {
            if (have < 10)
                return 0;
            len = 0;
            for (int i = 2; i < 10; i++)
                len = len << 8 | h[i];
            hl = 10;
        }
        if (have < hl + len)
            return 0;
        int op = h[0] & 0x0f;
        evbuffer_drain(in, hl);
        char *p = (char *)evbuffer_pullup(in, (ev_ssize_t)len);
        int rc = 0;
        if (op == WS_OP_PING) {
            bx_ws_frame(c, WS_OP_PONG, p, (size_t)len);
        } else if (op == WS_OP_CLOSE) {
            snprintf(why, whylen, "websocket closed by server");
            rc = -1;
        } else if (op == WS_OP_TEXT || op == WS_OP_CONT) {
            if (bx_ws_starts(p, (size_t)len, "<open")) {
                static const char hdr[] = "<stream:stream xmlns='jabber:client' "
                                          "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
                rc = feed(c, hdr, sizeof hdr - 1);
            } else if (bx_ws_starts(p, (size_t)len, "<close")) {
                rc = feed(c, "</stream:stream>", 16);
            } else {
                rc = feed(c, p, (size_t)len);
            }
        }
        evbuffer_drain(in, (size_t)len);
        if (rc < 0)
            return -1;
    }
}
