/* listen_set: opens a process's listeners from an address list and closes
 * them. Invariant: set->n listeners are open, never more than LISTEN_SET_MAX. */
#include "listen_set.h"
#include "log.h"
#include "net.h"
#include "strbuf.h"
#include <stdlib.h>
#include <string.h>

int listen_set_open(listen_set_t *set, struct event_base *base, const char *list, int default_port,
                    evconnlistener_cb cb, void *arg, const char *tls_label)
{
    char *copy = xstrdup(list), *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(copy, LISTEN_SEPARATORS, &save); tok; tok = strtok_r(NULL, LISTEN_SEPARATORS, &save)) {
        net_addr_t addr;
        char err[256];
        if (net_addr_parse(tok, default_port, &addr) < 0) {
            log_error("event=start reason=bad-listen-address address=%s", tok);
            rc = -1;
            break;
        }
        if (set->n == LISTEN_SET_MAX) {
            log_error("event=start reason=too-many-listeners max=%d", LISTEN_SET_MAX);
            rc = -1;
            break;
        }
        struct evconnlistener *l = net_listen(base, &addr, cb, arg, err, sizeof err);
        if (!l) {
            if (set->v6_optional && addr.ss.ss_family == AF_INET6) {
                log_warn("event=listen-skipped address=%s reason=\"%s\"", tok, err);
                continue;
            }
            log_error("event=start reason=listen address=%s detail=\"%s\"", tok, err);
            rc = -1;
            break;
        }
        set->listeners[set->n++] = l;
        log_notice("event=listening address=%s tls=%s", tok, tls_label);
    }
    free(copy);
    return rc;
}

void listen_set_close(listen_set_t *set)
{
    for (size_t i = 0; i < set->n; i++)
        evconnlistener_free(set->listeners[i]);
    set->n = 0;
}
