/* ws_conn: one WebSocket connection's state (RFC 6455): the HTTP request
 * before the upgrade, then frames: reassembly of fragmented messages, the
 * limits (websocket.frame-bytes, websocket.message-bytes), control frames
 * (ping, pong, close) and our pings to a quiet client.
 *
 * Owns the bytes read and not yet used (in) and a fragmented message being
 * assembled (msg); both are freed whenever they empty, so an idle
 * connection holds nothing but this struct. A refused frame ends the stream
 * with a stream error and a close frame with the RFC 6455 code saying why. */
#include "ws.h"
#include "log.h"
#include "ws_frame.h"
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

enum { WS_HTTP, WS_OPEN, WS_DONE };

struct ws_conn {
    int phase;
    int trusted;
    int close_sent;
    int close_code;    /* what our close frame carries */
    int msg_op;        /* opcode of the fragmented message being assembled; 0 none */
    double ping_at;    /* when our last ping went out */
    strbuf_t in;
    strbuf_t msg;
};

ws_conn_t *ws_conn_new(int trusted)
{
    ws_conn_t *w = xcalloc(1, sizeof *w);
    w->trusted = trusted;
    w->close_code = WS_CLOSE_NORMAL;
    strbuf_init(&w->in);
    strbuf_init(&w->msg);
    return w;
}

void ws_conn_free(ws_conn_t *w)
{
    if (!w)
        return;
    strbuf_free(&w->in);
    strbuf_free(&w->msg);
    free(w);
}

int ws_conn_trusted(const ws_conn_t *w)
{
    return w->trusted;
}

int ws_conn_is_open(const ws_conn_t *w)
{
    return w->phase == WS_OPEN && !w->close_sent;
}

void ws_conn_upgraded(ws_conn_t *w)
{
    w->phase = WS_OPEN;
}

void ws_conn_set_close_code(ws_conn_t *w, int code)
{
    w->close_code = code;
}

/* One frame of ours: header and payload in one write (one TLS record). */
static void ws_conn_send_frame(client_t *c, int opcode, const char *data, size_t len)
{
    static strbuf_t frame;
    uint8_t hdr[WS_FRAME_HEADER_MAX];
    size_t hl = ws_frame_header(hdr, opcode, len);
    strbuf_reset(&frame);
    strbuf_append(&frame, (const char *)hdr, hl);
    strbuf_append(&frame, data, len);
    client_send_bytes(c, frame.data, frame.len);
    if (frame.len > 65536)
        strbuf_free(&frame);   /* keep no large buffer for one large stanza */
}

void ws_conn_send(client_t *c, const char *data, size_t len)
{
    if (!ws_conn_is_open(c->ws))
        return;
    ws_conn_send_frame(c, WS_OP_TEXT, data, len);
}

/* Called from client_close before the client is CL_CLOSED: a close frame
 * that did not fit the output buffer would make client_send_bytes end the
 * connection, and so call client_close again from inside; it is skipped
 * instead, and marked sent first so nothing here runs twice. */
void ws_conn_end(client_t *c)
{
    ws_conn_t *w = c->ws;
    if (!ws_conn_is_open(w))
        return;
    w->close_sent = 1;
    if (c->output_full || !c->bev ||
        evbuffer_get_length(bufferevent_get_output(c->bev)) + 4 > c2s_config->output_max)
        return;
    uint8_t frame[4];
    ws_frame_header(frame, WS_OP_CLOSE, 2);
    frame[2] = (uint8_t)(w->close_code >> 8);
    frame[3] = (uint8_t)(w->close_code & 0xff);
    client_send_bytes(c, (const char *)frame, sizeof frame);
}

/* A frame or message the connection cannot go on after: the XMPP stream
 * ends with condition, the close frame carries code. */
static int ws_conn_fail(client_t *c, int code, const char *condition, const char *why)
{
    log_info("event=websocket-error peer=%s sid=%s close-code=%d reason=\"%s\"", c->peer, c->sid_str, code, why);
    ws_conn_set_close_code(c->ws, code);
    client_stream_error(c, condition, why);
    return -1;
}

/* A close frame from the client: answered with ours (its code echoed). A
 * client that sent <close/> first has ended its session already; one that
 * did not lost its connection, and a XEP-0198 session waits for it. */
static int ws_conn_on_close(client_t *c, const uint8_t *p, size_t len)
{
    ws_conn_t *w = c->ws;
    int code = len >= 2 ? (p[0] << 8 | p[1]) : WS_CLOSE_NORMAL;
    log_debug("event=websocket-close peer=%s sid=%s code=%d", c->peer, c->sid_str, code);
    w->close_code = len >= 2 ? code : WS_CLOSE_NORMAL;
    ws_conn_end(c);
    w->phase = WS_DONE;
    if (c->state == CL_SESSION && c->sm_resume && c2s_config->sm_resume > 0)
        client_connection_lost(c);   /* detached: the close frame need not drain */
    else
        client_close(c, CLOSE_END);
    return -1;
}

/* One whole frame (payload unmasked in place). */
static int ws_conn_frame(client_t *c, const ws_frame_t *f, uint8_t *p)
{
    ws_conn_t *w = c->ws;
    size_t len = (size_t)f->len;
    switch (f->opcode) {
    case WS_OP_PING:
        if (!w->close_sent)
            ws_conn_send_frame(c, WS_OP_PONG, (const char *)p, len);
        return 0;
    case WS_OP_PONG:
        return 0;   /* reading it counted as activity (last_read) */
    case WS_OP_CLOSE:
        return ws_conn_on_close(c, p, len);
    case WS_OP_BINARY:
        return ws_conn_fail(c, WS_CLOSE_UNSUPPORTED, "unsupported-stanza-type",
                            "XMPP over WebSocket uses text messages (RFC 7395)");
    case WS_OP_TEXT:
        if (w->msg_op)
            return ws_conn_fail(c, WS_CLOSE_PROTOCOL, "not-well-formed", "a new message inside a fragmented one");
        if (f->fin)
            return ws_xmpp_message(c, (char *)p, len);
        w->msg_op = WS_OP_TEXT;
        strbuf_append(&w->msg, (const char *)p, len);
        return 0;
    default:   /* WS_OP_CONT */
        if (!w->msg_op)
            return ws_conn_fail(c, WS_CLOSE_PROTOCOL, "not-well-formed", "a continuation frame with no message");
        if (w->msg.len + len > c2s_config->ws_message_bytes)
            return ws_conn_fail(c, WS_CLOSE_TOO_BIG, "policy-violation", "message larger than websocket.message-bytes");
        strbuf_append(&w->msg, (const char *)p, len);
        if (!f->fin)
            return 0;
        w->msg_op = 0;
        int rc = ws_xmpp_message(c, w->msg.data, w->msg.len);
        strbuf_free(&w->msg);
        strbuf_init(&w->msg);
        return rc;
    }
}

/* Every whole frame in w->in; what is left of a partial one stays. */
static int ws_conn_frames(client_t *c)
{
    ws_conn_t *w = c->ws;
    size_t pos = 0;
    int rc = 0;
    while (rc == 0 && w->phase == WS_OPEN && pos < w->in.len && c->state != CL_CLOSED && !c->detached) {
        uint8_t *p = (uint8_t *)w->in.data + pos;
        size_t n = w->in.len - pos;
        ws_frame_t f;
        int code;
        int got = ws_frame_parse(p, n, &f, &code);
        if (got == 0)
            break;
        if (got < 0) {
            rc = ws_conn_fail(c, code, "not-well-formed", "bad WebSocket frame (RFC 6455 5.2)");
            break;
        }
        if (f.len > c2s_config->ws_frame_bytes) {
            rc = ws_conn_fail(c, WS_CLOSE_TOO_BIG, "policy-violation", "frame larger than websocket.frame-bytes");
            break;
        }
        if (!ws_frame_is_control(f.opcode) && f.len > c2s_config->ws_message_bytes) {
            rc = ws_conn_fail(c, WS_CLOSE_TOO_BIG, "policy-violation", "message larger than websocket.message-bytes");
            break;
        }
        if (n - f.header_len < f.len)
            break;
        uint8_t *payload = p + f.header_len;
        ws_frame_unmask(payload, (size_t)f.len, f.mask, 0);
        pos += f.header_len + (size_t)f.len;
        rc = ws_conn_frame(c, &f, payload);
    }
    if (c->state == CL_CLOSED || c->detached)
        rc = -1;
    if (rc < 0 || pos == w->in.len) {
        strbuf_free(&w->in);
        strbuf_init(&w->in);
    } else if (pos) {
        strbuf_consume(&w->in, pos);
    }
    return rc;
}

int ws_conn_feed(client_t *c, const char *data, size_t n)
{
    ws_conn_t *w = c->ws;
    if (w->phase == WS_DONE)
        return -1;
    strbuf_append(&w->in, data, n);
    if (w->phase == WS_HTTP) {
        http_request_t req;
        int status = 0;
        long used = http_request_parse(w->in.data, w->in.len, c2s_config->ws_http_bytes, &req, &status);
        if (used == 0)
            return 0;
        if (used < 0) {
            w->phase = WS_DONE;
            ws_http_refuse(c, status);
            return -1;
        }
        strbuf_consume(&w->in, (size_t)used);
        int up = ws_http_request(c, &req);
        http_request_free(&req);
        if (!up) {
            w->phase = WS_DONE;
            return -1;
        }
    }
    return ws_conn_frames(c);
}

void ws_conn_cron(client_t *c, double now)
{
    ws_conn_t *w = c->ws;
    double every = c2s_config->ws_ping;
    if (!ws_conn_is_open(w) || every <= 0 || c->detached)
        return;
    if (now - c->last_read >= every && now - w->ping_at >= every) {
        w->ping_at = now;
        ws_conn_send_frame(c, WS_OP_PING, "weft", 4);
    }
}
