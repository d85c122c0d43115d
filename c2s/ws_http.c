/* ws_http: the one HTTP request a websocket listener reads on a connection,
 * and its answer: the WebSocket upgrade (RFC 6455 §4.2, with the 'xmpp'
 * subprotocol of RFC 7395 §3.1 and the websocket.origins check), the
 * XEP-0156 host-meta documents naming the WebSocket endpoint
 * (/.well-known/host-meta as XRD, host-meta.json as JSON), or a refusal.
 * Every answer but the upgrade closes the connection (no keep-alive).
 *
 * Why not evhttp: the upgraded connection must become a c2s client on the
 * same bufferevent, under the same per-IP limits, rate limit, TLS (and its
 * record takeover) and delivery accounting as a TCP client, and libevent
 * 2.1's evhttp owns its connections with no way to hand one over. The
 * request head parser is common/http_request.c, bounded, unit-tested and
 * fuzzed. */
#include "ws.h"
#include "http_status.h"
#include "log.h"
#include "ws_frame.h"
#include <string.h>
#include <strings.h>

#define NS_XRD "http://docs.oasis-open.org/ns/xri/xrd-1.0"
#define REL_WEBSOCKET "urn:xmpp:alt-connections:websocket"

/* A response with Connection: close; the client then closes. */
static void ws_http_respond(client_t *c, int status, const char *headers, const char *type, const char *body,
                            int head_only)
{
    strbuf_t sb;
    strbuf_init(&sb);
    size_t blen = body ? strlen(body) : 0;
    strbuf_printf(&sb, "HTTP/1.1 %d %s\r\n%s", status, http_status_text(status), headers ? headers : "");
    if (body)
        strbuf_printf(&sb, "Content-Type: %s\r\n", type);
    strbuf_printf(&sb, "Content-Length: %zu\r\nConnection: close\r\n\r\n", blen);
    if (body && !head_only)
        strbuf_append(&sb, body, blen);
    client_send_bytes(c, sb.data, sb.len);
    strbuf_free(&sb);
    client_close(c, CLOSE_SILENT);
}

static void ws_http_error(client_t *c, int status, const char *headers, const char *why)
{
    log_info("event=http-refused peer=%s sid=%s status=%d reason=\"%s\"", c->peer, c->sid_str, status, why);
    strbuf_t body;
    strbuf_init(&body);
    strbuf_printf(&body, "%s\n", why);
    ws_http_respond(c, status, headers, "text/plain; charset=utf-8", body.data, 0);
    strbuf_free(&body);
}

void ws_http_refuse(client_t *c, int status)
{
    ws_http_error(c, status, NULL, "malformed or oversized HTTP request");
}

/* A Host field fit to put in a URL: host or host:port, [v6] allowed. */
static int ws_http_host_ok(const char *h)
{
    if (!h || !*h || strlen(h) > 255)
        return 0;
    for (const char *p = h; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr(".-:[]", *p)))
            return 0;
    return 1;
}

static void ws_json_escape(strbuf_t *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            strbuf_putc(out, '\\');
        if ((unsigned char)*s < 0x20)
            strbuf_printf(out, "\\u%04x", (unsigned char)*s);
        else
            strbuf_putc(out, *s);
    }
}

/* XEP-0156 §3: the WebSocket URL, websocket.public-url or else made from
 * the request's Host and our path; CORS open, as the XEP asks. */
static void ws_http_host_meta(client_t *c, const http_request_t *req, int json)
{
    const char *host = http_request_header(req, "Host");
    strbuf_t url, body;
    strbuf_init(&url);
    strbuf_init(&body);
    if (*c2s_config->ws_public_url) {
        strbuf_puts(&url, c2s_config->ws_public_url);
    } else if (ws_http_host_ok(host)) {
        strbuf_printf(&url, "%s://%s%s", c->tls ? "wss" : "ws", host, c2s_config->ws_path);
    } else {
        strbuf_free(&url);
        strbuf_free(&body);
        ws_http_error(c, 400, NULL, "no usable Host field");
        return;
    }
    if (json) {
        strbuf_puts(&body, "{\"links\":[{\"rel\":\"" REL_WEBSOCKET "\",\"href\":\"");
        ws_json_escape(&body, url.data);
        strbuf_puts(&body, "\"}]}\n");
    } else {
        strbuf_puts(&body, "<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='" NS_XRD "'>\n"
                           "  <Link rel='" REL_WEBSOCKET "' href='");
        xml_escape(&body, url.data, url.len, 1);
        strbuf_puts(&body, "'/>\n</XRD>\n");
    }
    log_debug("event=host-meta peer=%s format=%s", c->peer, json ? "json" : "xrd");
    ws_http_respond(c, 200, "Access-Control-Allow-Origin: *\r\n",
                    json ? "application/json" : "application/xrd+xml; charset=utf-8", body.data,
                    !strcmp(req->method, "HEAD"));
    strbuf_free(&url);
    strbuf_free(&body);
}

/* websocket.origins: "*" lets any page in; otherwise the Origin a browser
 * sends must be one of the space-separated values. A client that sends no
 * Origin is not a browser page and is let in. */
static int ws_http_origin_ok(const char *origin)
{
    const char *list = c2s_config->ws_origins;
    if (!origin || !strcmp(list, "*"))
        return 1;
    size_t ol = strlen(origin);
    for (const char *p = list; *p;) {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ' ')
            e++;
        if ((size_t)(e - p) == ol && !strncasecmp(p, origin, ol))
            return 1;
        p = e;
    }
    return 0;
}

static int ws_http_upgrade(client_t *c, const http_request_t *req)
{
    const char *upgrade = http_request_header(req, "Upgrade");
    const char *connection = http_request_header(req, "Connection");
    const char *version = http_request_header(req, "Sec-WebSocket-Version");
    const char *key = http_request_header(req, "Sec-WebSocket-Key");
    const char *proto = http_request_header(req, "Sec-WebSocket-Protocol");
    const char *origin = http_request_header(req, "Origin");
    char accept[29];
    if (strcmp(req->method, "GET")) {
        ws_http_error(c, 405, "Allow: GET\r\n", "the WebSocket endpoint takes GET");
    } else if (!upgrade || !http_list_has(upgrade, "websocket") || req->minor < 1) {
        ws_http_error(c, 426, "Upgrade: websocket\r\n", "this is a WebSocket endpoint (RFC 7395)");
    } else if (!connection || !http_list_has(connection, "upgrade")) {
        ws_http_error(c, 400, NULL, "Connection must list upgrade");
    } else if (!version || strcmp(version, "13")) {
        ws_http_error(c, 426, "Sec-WebSocket-Version: 13\r\n", "WebSocket version 13 only");
    } else if (!key || ws_accept_key(key, accept) < 0) {
        ws_http_error(c, 400, NULL, "bad Sec-WebSocket-Key");
    } else if (!proto || !http_list_has(proto, "xmpp")) {
        ws_http_error(c, 400, NULL, "the subprotocol must be xmpp (RFC 7395 3.1)");
    } else if (!ws_http_origin_ok(origin)) {
        log_notice("event=websocket-refused peer=%s ip=%s reason=origin origin=\"%.100s\"", c->peer, c->ip, origin);
        ws_http_error(c, 403, NULL, "origin not allowed (websocket.origins)");
    } else {
        strbuf_t sb;
        strbuf_init(&sb);
        strbuf_printf(&sb, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n", accept);
        client_send_bytes(c, sb.data, sb.len);
        strbuf_free(&sb);
        ws_conn_upgraded(c->ws);
        log_debug("event=websocket-open peer=%s sid=%s", c->peer, c->sid_str);
        return 1;
    }
    return 0;
}

int ws_http_request(client_t *c, const http_request_t *req)
{
    const char *target = req->target;
    size_t plen = strcspn(target, "?");
    int get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD");
    if (plen == strlen(c2s_config->ws_path) && !strncmp(target, c2s_config->ws_path, plen))
        return ws_http_upgrade(c, req);
    if ((plen == 22 && !strncmp(target, "/.well-known/host-meta", plen)) ||
        (plen == 27 && !strncmp(target, "/.well-known/host-meta.json", plen))) {
        if (get)
            ws_http_host_meta(c, req, plen == 27);
        else
            ws_http_error(c, 405, "Allow: GET, HEAD\r\n", "host-meta takes GET");
        return 0;
    }
    ws_http_error(c, 404, NULL, "not found");
    return 0;
}
