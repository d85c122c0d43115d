/* metrics_http: GET /metrics in the Prometheus text format 0.0.4.
 *
 * evhttp (part of libevent, which every process already links) parses the
 * requests: a hand-written HTTP reader would be one more parser to fuzz. It
 * is bounded here so a bad or slow client costs little and harms nothing
 * else on the loop: headers at most METRICS_HTTP_HEADERS_MAX bytes, no
 * request body, GET and HEAD only, a connection idle or unfinished for
 * METRICS_HTTP_TIMEOUT seconds is closed. Anything else is answered with
 * evhttp's own 4xx and the connection closed. There is no cap on the number
 * of connections (evhttp 2.1 has none): bind the listener to loopback or a
 * network only the scraper reaches. */
#include "metrics_http.h"
#include "listen_set.h"
#include "log.h"
#include "metrics.h"
#include "strbuf.h"
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <string.h>

#define METRICS_HTTP_HEADERS_MAX 8192
#define METRICS_HTTP_BODY_MAX 0
#define METRICS_HTTP_TIMEOUT 10

static struct evhttp *http;

static void metrics_http_serve(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct evbuffer *body = evhttp_request_get_output_buffer(req);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    strbuf_t sb;
    strbuf_init(&sb);
    metrics_render(&sb);
    evbuffer_add(body, sb.data, sb.len);
    strbuf_free(&sb);
    evhttp_add_header(headers, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, HTTP_OK, "OK", NULL);
}

static void metrics_http_not_found(struct evhttp_request *req, void *arg)
{
    (void)arg;
    evhttp_send_error(req, HTTP_NOTFOUND, "only /metrics is served here");
}

/* The listeners are handed to evhttp; until then nothing is accepted. */
static void metrics_http_no_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                                   void *arg)
{
    (void)l;
    (void)fd;
    (void)sa;
    (void)len;
    (void)arg;
}

int metrics_http_start(struct event_base *base, const char *list)
{
    if (!list || !list[strspn(list, LISTEN_SEPARATORS)])
        return 0;
    listen_set_t set = {.v6_optional = 0};
    if (listen_set_open(&set, base, list, 0, metrics_http_no_accept, NULL, "no") < 0) {
        listen_set_close(&set);
        return -1;
    }
    http = evhttp_new(base);
    if (!http)
        log_fatal("event=start reason=no-evhttp");
    evhttp_set_max_headers_size(http, METRICS_HTTP_HEADERS_MAX);
    evhttp_set_max_body_size(http, METRICS_HTTP_BODY_MAX);
    evhttp_set_timeout(http, METRICS_HTTP_TIMEOUT);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_cb(http, "/metrics", metrics_http_serve, NULL);
    evhttp_set_gencb(http, metrics_http_not_found, NULL);
    for (size_t i = 0; i < set.n; i++)
        evhttp_bind_listener(http, set.listeners[i]); /* evhttp frees it */
    set.n = 0;
    log_notice("event=metrics-listening address=\"%s\" path=/metrics", list);
    return 0;
}

void metrics_http_stop(void)
{
    if (http)
        evhttp_free(http);
    http = NULL;
}
