/* http_serve: what weft-upload does with one parsed HTTP request: GET and
 * HEAD of a stored file, PUT into a slot with its token, OPTIONS (CORS
 * preflight). The connection mechanics are http_conn.c's. */
#ifndef WEFT_HTTP_SERVE_H
#define WEFT_HTTP_SERVE_H
#include "http_conn.h"
#include "http_parse.h"
#include "strbuf.h"

void http_serve(http_conn_t *c, const http_head_t *h);
/* Appends the CORS header lines every response carries (each ending in
 * CRLF; none when http.cors-origin is empty). */
void http_serve_cors(strbuf_t *sb);

#endif
