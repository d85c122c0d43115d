/* http_request: a bounded parser of HTTP/1.x request heads (see the header
 * for what is refused). The head is found first (CRLF CRLF within max bytes),
 * then copied once and cut into NUL-terminated strings in place. */
#include "http_request.h"
#include "strbuf.h"
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* RFC 9110 §5.6.2 tchar */
static int http_tchar(unsigned char ch)
{
    if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
        return 1;
    return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* field-vchar, SP and HTAB (RFC 9110 §5.5); obs-text is allowed too */
static int http_value_char(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || (ch >= 0x21 && ch != 0x7f);
}

/* The offset just past the head's empty line, 0 if not within len; -1 on a
 * bare LF (RFC 9112 §2.2 lets a server refuse it, and it would let a head be
 * read two ways). */
static long http_head_end(const char *d, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (d[i] != '\n')
            continue;
        if (i == 0 || d[i - 1] != '\r')
            return -1;
        if (i >= 3 && d[i - 2] == '\n' && d[i - 3] == '\r')
            return (long)i + 1;
    }
    return 0;
}

static int http_parse_request_line(char *line, http_request_t *req)
{
    char *sp1 = strchr(line, ' ');
    if (!sp1 || sp1 == line)
        return 400;
    *sp1 = '\0';
    for (char *p = line; *p; p++)
        if (!http_tchar((unsigned char)*p))
            return 400;
    char *target = sp1 + 1;
    char *sp2 = strchr(target, ' ');
    if (!sp2 || sp2 == target)
        return 400;
    *sp2 = '\0';
    for (char *p = target; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return 400;
    const char *ver = sp2 + 1;
    if (strncmp(ver, "HTTP/", 5))
        return 400;
    if (strlen(ver) != 8 || ver[6] != '.' || ver[5] < '0' || ver[5] > '9' || ver[7] < '0' || ver[7] > '9')
        return 400;
    if (ver[5] != '1')
        return 505;
    req->method = line;
    req->target = target;
    req->minor = ver[7] - '0';
    return 0;
}

static int http_parse_field(char *line, http_request_t *req)
{
    if (*line == ' ' || *line == '\t')
        return 400;   /* obs-fold */
    char *colon = strchr(line, ':');
    if (!colon || colon == line)
        return 400;
    for (char *p = line; p < colon; p++)
        if (!http_tchar((unsigned char)*p))
            return 400;   /* includes a space before the colon (RFC 9112 §5.1) */
    *colon = '\0';
    char *v = colon + 1;
    for (char *p = v; *p; p++)
        if (!http_value_char((unsigned char)*p))
            return 400;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        v[--n] = '\0';
    if (req->nheaders == HTTP_HEADERS_MAX)
        return 431;
    req->headers[req->nheaders].name = line;
    req->headers[req->nheaders].value = v;
    req->nheaders++;
    return 0;
}

long http_request_parse(const char *data, size_t len, size_t max, http_request_t *out, int *status)
{
    size_t scan = len < max ? len : max;
    long end = http_head_end(data, scan);
    if (end < 0 || (end == 0 && len >= max)) {
        *status = end < 0 ? 400 : 431;
        return -1;
    }
    if (end == 0)
        return 0;
    /* A NUL anywhere is refused: the copy is cut into C strings. */
    if (memchr(data, '\0', (size_t)end)) {
        *status = 400;
        return -1;
    }
    http_request_t req;
    memset(&req, 0, sizeof req);
    req.buf = xstrndup(data, (size_t)end);
    char *line = req.buf;
    int rc = 0;
    for (int first = 1; !rc; first = 0) {
        char *crlf = strstr(line, "\r\n");
        *crlf = '\0';
        if (!*line) {
            if (first)
                rc = 400;   /* an empty request line */
            break;
        }
        rc = first ? http_parse_request_line(line, &req) : http_parse_field(line, &req);
        line = crlf + 2;
    }
    if (rc) {
        free(req.buf);
        *status = rc;
        return -1;
    }
    *out = req;
    return end;
}

void http_request_free(http_request_t *req)
{
    free(req->buf);
    memset(req, 0, sizeof *req);
}

const char *http_request_header(const http_request_t *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (!strcasecmp(req->headers[i].name, name))
            return req->headers[i].value;
    return NULL;
}

int http_list_has(const char *value, const char *token)
{
    size_t tl = strlen(token);
    for (const char *p = value; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - p) == tl && !strncasecmp(p, token, tl))
            return 1;
        p = e;
    }
    return 0;
}
