/* http_conn: the HTTP/1.1 connections of weft-upload: listeners (plain, or
 * TLS when http.tls.certificate is set), the request heads read with
 * http_parse.c, PUT bodies streamed to disk, responses, and the limits that
 * keep a hostile client from holding the service (see http_conn.c).
 * http_serve.c decides what each request does through the calls below. */
#ifndef WEFT_HTTP_CONN_H
#define WEFT_HTTP_CONN_H
#include <stddef.h>
#include <event2/event.h>
#include "store.h"
#include "upload.h"

typedef struct http_conn http_conn_t;

/* Opens the listeners of cfg->http_listen. 0 / -1 (logged). */
int http_conn_start(struct event_base *base, const upload_cfg_t *cfg);
/* Closes the listeners and every connection (uploads in progress aborted). */
void http_conn_stop(void);
size_t http_conn_count(void);

/* A response with a short text body (NULL: none). extra: more header lines,
 * each ending in CRLF, or NULL. After an error to a request whose body was
 * not read, the connection closes. */
void http_conn_respond(http_conn_t *c, int status, const char *extra, const char *body);
/* A 200 with f's bytes from fd (which the connection then owns) or, for
 * HEAD, only the headers. */
void http_conn_respond_file(http_conn_t *c, const store_file_t *f, int fd, int head_only,
                            const char *extra);
/* Reads the request's body (Content-Length bytes) into fd, a store_put_begin
 * of f; answers 201 once it is committed, or aborts the upload if the client
 * is too slow or goes away. */
void http_conn_read_body(http_conn_t *c, store_file_t *f, int fd);

/* The peer address for logs. */
const char *http_conn_peer(const http_conn_t *c);

#endif
