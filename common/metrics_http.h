/* metrics_http: the optional HTTP listener that serves the registry of
 * metrics.h at GET /metrics, on libevent's evhttp. */
#ifndef WEFT_METRICS_HTTP_H
#define WEFT_METRICS_HTTP_H
#include <event2/event.h>

/* Listens on every address of list (space separated; empty: nothing, 0).
 * 0 / -1 (logged: an address that cannot be bound stops the start). */
int metrics_http_start(struct event_base *base, const char *list);
/* Closes the listener and every open scrape connection. */
void metrics_http_stop(void);

#endif
