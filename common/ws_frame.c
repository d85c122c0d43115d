/* ws_frame: RFC 6455 framing primitives; see the header for the rules. */
#include "ws_frame.h"
#include "base64.h"
#include "strbuf.h"
#include <openssl/evp.h>
#include <string.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

int ws_frame_is_control(int opcode)
{
    return opcode >= 0x8;
}

int ws_frame_parse(const uint8_t *p, size_t n, ws_frame_t *f, int *close_code)
{
    if (n < 2)
        return 0;
    int fin = p[0] & 0x80, rsv = p[0] & 0x70, op = p[0] & 0x0f;
    int masked = p[1] & 0x80;
    uint64_t len = p[1] & 0x7f;
    size_t hl = 2;
    *close_code = WS_CLOSE_PROTOCOL;
    if (rsv || !masked)
        return -1;
    if (op != WS_OP_CONT && op != WS_OP_TEXT && op != WS_OP_BINARY && op != WS_OP_CLOSE && op != WS_OP_PING &&
        op != WS_OP_PONG)
        return -1;
    if (ws_frame_is_control(op) && (!fin || len > 125))
        return -1;
    if (len == 126) {
        if (n < 4)
            return 0;
        len = (uint64_t)p[2] << 8 | p[3];
        if (len < 126)
            return -1;   /* not the minimal encoding */
        hl = 4;
    } else if (len == 127) {
        if (n < 10)
            return 0;
        len = 0;
        for (int i = 2; i < 10; i++)
            len = len << 8 | p[i];
        if (len >> 63 || len < 65536)
            return -1;
        hl = 10;
    }
    if (n < hl + 4)
        return 0;
    memcpy(f->mask, p + hl, 4);
    f->fin = fin != 0;
    f->opcode = op;
    f->len = len;
    f->header_len = hl + 4;
    return 1;
}

void ws_frame_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset)
{
    for (size_t i = 0; i < n; i++)
        p[i] ^= mask[(offset + i) & 3];
}

size_t ws_frame_header(uint8_t *out, int opcode, uint64_t len)
{
    out[0] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len < 65536) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

int ws_accept_key(const char *client_key, char out[29])
{
    size_t kl = strlen(client_key);
    strbuf_t raw;
    strbuf_init(&raw);
    int ok = kl == 24 && base64_decode(client_key, kl, &raw) == 0 && raw.len == 16;
    strbuf_free(&raw);
    if (!ok)
        return -1;
    char cat[24 + sizeof WS_GUID];
    memcpy(cat, client_key, 24);
    memcpy(cat + 24, WS_GUID, sizeof WS_GUID);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (!EVP_Digest(cat, 24 + strlen(WS_GUID), md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
        return -1;
    strbuf_t b64;
    strbuf_init(&b64);
    base64_encode(md, mdlen, &b64);
    memcpy(out, b64.data, 28);
    out[28] = '\0';
    strbuf_free(&b64);
    return 0;
}
