/* http_serve: the meaning of a request to weft-upload.
 *
 * URLs are BASE/ID/NAME, BASE the path of upload_base_url() (so a reverse
 * proxy may forward a prefix unchanged), ID the slot's 32 hex digits, NAME
 * its file name percent-encoded. Only ID chooses a file, through store.c's
 * index; NAME must match the slot's name and never touches the disk.
 *
 * - GET/HEAD: a stored file, with its content type, caching headers (the
 *   URL never changes content: immutable, until the file expires) and
 *   headers that keep a browser from running what it serves (nosniff, a
 *   sandboxing Content-Security-Policy, attachment for types a browser
 *   would render as a page). A slot not yet uploaded is 404.
 * - PUT: only with ?token=HMAC of the ID (403 otherwise, logged with the
 *   peer's address), into a slot not yet uploaded (409), with exactly the
 *   slot's size as Content-Length (413 larger, 400 otherwise; no
 *   Transfer-Encoding: 411) and, when it sends one, the slot's content type
 *   (400); a slot requested without a type takes the PUT's.
 * - OPTIONS: the CORS preflight of web clients (converse.js). */
#include "http_serve.h"
#include "log.h"
#include "strbuf.h"
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define NAME_MAX_BYTES 1024

/* Appended to every response's head; as long as the option is (no fixed
 * buffer that would cut a long origin and its CRLF). */
void http_serve_cors(strbuf_t *sb)
{
    if (!*upload_config->cors_origin)
        return;
    strbuf_printf(sb,
                  "Access-Control-Allow-Origin: %s\r\n"
                  "Access-Control-Allow-Methods: GET, HEAD, PUT, OPTIONS\r\n"
                  "Access-Control-Allow-Headers: Content-Type\r\n",
                  upload_config->cors_origin);
}

/* The path part of the base URL ("" or "/prefix", no trailing slash). */
static const char *base_path(void)
{
    const char *u = upload_base_url();
    const char *p = strstr(u, "://");
    p = p ? strchr(p + 3, '/') : NULL;
    return p ? p : "";
}

/* Splits BASE/ID/NAME; 0 with id and the decoded name, or -1. */
static int split_path(const char *path, char *id, char *name)
{
    const char *bp = base_path();
    size_t bl = strlen(bp);
    if (strncmp(path, bp, bl) || path[bl] != '/')
        return -1;
    const char *rest = path + bl + 1;
    const char *slash = strchr(rest, '/');
    if (!slash || slash - rest != STORE_ID_LEN)
        return -1;
    memcpy(id, rest, STORE_ID_LEN);
    id[STORE_ID_LEN] = '\0';
    const char *enc = slash + 1;
    if (!*enc || strchr(enc, '/'))
        return -1;
    return http_percent_decode(enc, strlen(enc), name, NAME_MAX_BYTES + 1);
}

/* Types a browser would render as a document get Content-Disposition:
 * attachment; media and plain text are shown inline. */
static int inline_type(const char *t)
{
    return !strncasecmp(t, "image/", 6) || !strncasecmp(t, "audio/", 6) || !strncasecmp(t, "video/", 6) ||
           !strncasecmp(t, "text/plain", 10);
}

static void serve_get(http_conn_t *c, store_file_t *f, int head_only)
{
    int fd = store_open_data(f);
    if (fd < 0) {
        log_error("event=download-failed id=%s peer=%s reason=no-data", f->id, http_conn_peer(c));
        http_conn_respond(c, 404, NULL, "no such file\n");
        return;
    }
    long long age = (long long)time(NULL) - f->created;
    long long left = (long long)upload_config->expire_after - age;
    if (left < 0)
        left = 0;
    strbuf_t h;
    strbuf_init(&h);
    strbuf_printf(&h,
                  "Content-Type: %s\r\n"
                  "Cache-Control: public, max-age=%lld, immutable\r\n"
                  "ETag: \"%s\"\r\n"
                  "X-Content-Type-Options: nosniff\r\n"
                  "Content-Security-Policy: default-src 'none'; sandbox\r\n"
                  "Content-Disposition: %s\r\n",
                  f->ctype, left, f->id, inline_type(f->ctype) ? "inline" : "attachment");
    http_conn_respond_file(c, f, fd, head_only, h.data);
    strbuf_free(&h);
}

static const char *query_token(const char *query)
{
    return !strncmp(query, "token=", 6) ? query + 6 : "";
}

static void serve_put(http_conn_t *c, const http_head_t *h, store_file_t *f)
{
    const char *peer = http_conn_peer(c);
    if (!store_token_ok(f->id, query_token(h->query))) {
        log_warn("event=upload-refused id=%s peer=%s reason=bad-token", f->id, peer);
        http_conn_respond(c, 403, NULL, "wrong or missing token\n");
        return;
    }
    if (f->complete || f->uploading) {
        http_conn_respond(c, 409, NULL, f->complete ? "already uploaded\n" : "an upload is in progress\n");
        return;
    }
    if ((long long)time(NULL) > f->created + (long long)upload_config->slot_timeout) {
        http_conn_respond(c, 404, NULL, "the slot expired\n");
        return;
    }
    if (h->transfer_encoding || h->content_length < 0) {
        http_conn_respond(c, 411, NULL, "Content-Length is required\n");
        return;
    }
    char msg[128];
    if (h->content_length != f->size) {
        snprintf(msg, sizeof msg, "Content-Length must be the slot's size, %lld\n", f->size);
        log_info("event=upload-refused id=%s peer=%s reason=size length=%lld size=%lld", f->id, peer,
                 h->content_length, f->size);
        http_conn_respond(c, h->content_length > f->size ? 413 : 400, NULL, msg);
        return;
    }
    if (*h->content_type && *f->ctype && strcasecmp(h->content_type, f->ctype)) {
        snprintf(msg, sizeof msg, "Content-Type must be the slot's type\n");
        log_info("event=upload-refused id=%s peer=%s reason=content-type", f->id, peer);
        http_conn_respond(c, 400, NULL, msg);
        return;
    }
    int fd = store_put_begin(f);
    if (fd < 0) {
        http_conn_respond(c, 500, NULL, "the file could not be created\n");
        return;
    }
    http_conn_read_body(c, f, fd);
}

void http_serve(http_conn_t *c, const http_head_t *h)
{
    if (h->method == HTTP_OPTIONS) {
        http_conn_respond(c, 204, "Access-Control-Max-Age: 86400\r\nAllow: GET, HEAD, PUT, OPTIONS\r\n", NULL);
        return;
    }
    if (h->method == HTTP_OTHER) {
        http_conn_respond(c, 405, "Allow: GET, HEAD, PUT, OPTIONS\r\n", "method not allowed\n");
        return;
    }
    char id[STORE_ID_LEN + 1], name[NAME_MAX_BYTES + 1];
    store_file_t *f = NULL;
    if (split_path(h->path, id, name) == 0)
        f = store_find(id);
    if (!f || strcmp(f->name, name)) {
        log_debug("event=http-not-found peer=%s path=\"%.100s\"", http_conn_peer(c), h->path);
        http_conn_respond(c, 404, NULL, "no such file\n");
        return;
    }
    if (h->method == HTTP_PUT) {
        serve_put(c, h, f);
    } else if (!f->complete) {
        http_conn_respond(c, 404, NULL, "no such file\n");
    } else {
        serve_get(c, f, h->method == HTTP_HEAD);
    }
}
