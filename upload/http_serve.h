/* http_serve: what weft-upload does with one parsed HTTP request: GET and
 * HEAD of a stored file, PUT into a slot with its token, OPTIONS (CORS
 * preflight). The connection mechanics are http_conn.c's. */
#ifndef WEFT_HTTP_SERVE_H
#define WEFT_HTTP_SERVE_H
#include "http_conn.h"
#include "http_parse.h"

void http_serve(http_conn_t *c, const http_head_t *h);
/* The CORS header lines every response carries (ending in CRLF). */
const char *http_serve_cors(void);

#endif
