/* ws_frame: the WebSocket wire format (RFC 6455 §5) as a server sees it:
 * the header of a client frame, unmasking, the header of a server frame, and
 * the handshake's Sec-WebSocket-Accept value (§4.2.2). Pure functions, no
 * state: the connection (c2s/ws_conn.c) keeps the bytes; unit tests and the
 * fuzz target (tests/fuzz/fuzz_ws_frame.c) call them directly.
 *
 * A client frame is refused (-1, with the close code to send) when it is not
 * masked, sets a reserved bit (no extension is negotiated), has an unknown
 * opcode, is a fragmented or over-long control frame, or encodes its length
 * in more bytes than needed or with the top bit set. */
#ifndef WEFT_WS_FRAME_H
#define WEFT_WS_FRAME_H
#include <stddef.h>
#include <stdint.h>

enum {
    WS_OP_CONT = 0x0, WS_OP_TEXT = 0x1, WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8, WS_OP_PING = 0x9, WS_OP_PONG = 0xA,
};

/* Close codes (RFC 6455 §7.4.1) */
enum {
    WS_CLOSE_NORMAL = 1000, WS_CLOSE_GOING_AWAY = 1001, WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_UNSUPPORTED = 1003, WS_CLOSE_BAD_DATA = 1007, WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
};

#define WS_FRAME_HEADER_MAX 14   /* 2 + 8 length bytes + 4 mask bytes */

typedef struct ws_frame {
    int fin;
    int opcode;
    uint8_t mask[4];
    uint64_t len;              /* payload bytes */
    size_t header_len;         /* bytes before the payload */
} ws_frame_t;

/* Reads a client frame's header from p[0..n). Returns 1 with *f filled, 0 when
 * more bytes are needed, -1 when the frame is refused (*close_code says why). */
int ws_frame_parse(const uint8_t *p, size_t n, ws_frame_t *f, int *close_code);
/* Unmasks n payload bytes in place; offset is the position of p[0] within
 * the frame's payload (a payload unmasked in pieces). */
void ws_frame_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset);
/* Writes the header of an unmasked, final server frame of len bytes into out
 * (at least 10 bytes); returns its length. */
size_t ws_frame_header(uint8_t *out, int opcode, uint64_t len);
/* Whether opcode is a control frame's (close, ping, pong). */
int ws_frame_is_control(int opcode);
/* Sec-WebSocket-Accept for a client's Sec-WebSocket-Key: base64 of the SHA-1
 * of the key and the RFC's GUID. out holds 29 bytes (28 and a NUL). 0, or -1
 * when the key is not the base64 of 16 bytes (§4.2.1: the handshake fails). */
int ws_accept_key(const char *client_key, char out[29]);

#endif
