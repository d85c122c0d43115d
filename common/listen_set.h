/* listen_set: the listening sockets a process opens from space-separated
 * address lists in its config (c2s, s2s, router), closed all together on
 * shutdown.
 * Owns the evconnlistener objects; what a listener accepts belongs to the
 * callback the caller gives. */
#ifndef WEFT_LISTEN_SET_H
#define WEFT_LISTEN_SET_H
#include <stddef.h>
#include <event2/event.h>
#include <event2/listener.h>

#define LISTEN_SET_MAX 16
/* What separates the addresses of a list. */
#define LISTEN_SEPARATORS " \t\n,"

typedef struct listen_set {
    struct evconnlistener *listeners[LISTEN_SET_MAX];
    size_t n;
    /* 1: a v6 address the host cannot bind (no IPv6) is skipped with a
     * warning instead of failing the start, for a default config that names
     * [::1] and must still run on v4-only machines. */
    int v6_optional;
} listen_set_t;

/* Opens every address of list (separated by spaces, tabs, newlines or
 * commas; default_port where an address has none), each calling cb with arg
 * on accept and logged `event=listening address=... tls=<tls_label>`. Stops
 * at the first error, logged as `event=start reason=...`; the listeners
 * already open stay in the set for listen_set_close. 0 / -1. */
int listen_set_open(listen_set_t *set, struct event_base *base, const char *list, int default_port,
                    evconnlistener_cb cb, void *arg, const char *tls_label);
/* Frees (closes) every listener of the set; it can be opened again. */
void listen_set_close(listen_set_t *set);

#endif
