/* base64: RFC 4648 encoding and strict decoding (no whitespace, correct padding,
 * as RFC 6120 §6.4.2 requires for SASL data). */
#ifndef WEFT_BASE64_H
#define WEFT_BASE64_H
#include <stddef.h>
#include "strbuf.h"

void base64_encode(const unsigned char *in, size_t len, strbuf_t *out);
/* Appends decoded bytes to out; returns 0, or -1 on malformed input. "=" alone
 * decodes to empty (SASL's empty response). */
int base64_decode(const char *in, size_t len, strbuf_t *out);

#endif
