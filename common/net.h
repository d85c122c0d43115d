/* net: addresses, listeners and outgoing connections on libevent.
 *
 * An address is "host:port", "[v6addr]:port" or "unix:/path". Everything is
 * non-blocking; name resolution for outgoing component links is numeric or done
 * with getaddrinfo on the (rare) reconnect path of a loopback/LAN address given
 * in the config, which operators write as literals (documented). */
#ifndef WEFT_NET_H
#define WEFT_NET_H
#include <sys/socket.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/bufferevent.h>

typedef struct net_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    int is_unix;
} net_addr_t;

/* Parses an address; default_port is used when none is given. 0 / -1. */
int net_addr_parse(const char *s, int default_port, net_addr_t *out);
/* Formats a peer address for logs ("127.0.0.1:5347", "[::1]:5347", "unix"). */
void net_addr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t cap);
/* 1 if the peer is loopback or a UNIX socket (where TLS is not required). */
int net_addr_is_local(const struct sockaddr *sa);

/* Opens a listener; removes a stale UNIX socket file first; a UNIX socket is
 * created with mode 0600.
 * Returns NULL with errno-based message in err. */
struct evconnlistener *net_listen(struct event_base *base, const net_addr_t *addr,
                                  evconnlistener_cb cb, void *ctx, char *err, size_t errlen);
/* Per-connection socket options for an accepted TCP connection: TCP_NODELAY
 * (we batch writes per loop turn ourselves; Nagle plus delayed ACKs would add
 * ~40 ms to every hop). No-op for UNIX sockets. */
void net_tune_accepted(evutil_socket_t fd, const struct sockaddr *sa);
/* Starts a non-blocking connect; the bufferevent reports BEV_EVENT_CONNECTED or
 * an error through its event callback. */
struct bufferevent *net_connect(struct event_base *base, const net_addr_t *addr);
/* 1 while bytes wait in bev's output or, under a filter (TLS), in the output
 * of the bufferevent below it, which drains after the filter's write callback
 * ran: a closing connection is freed only once this is 0. 0 for NULL. */
int net_bev_output_pending(struct bufferevent *bev);

/* libevent 2.1 reads at most 4 KiB per read event; a busy internal link
 * reads on by itself past that. One recv() of up to `chunk` bytes from fd
 * into `in`, the input buffer of fd's socket bufferevent (which keeps the
 * buffer's end frozen except while it reads itself); the byte count, or
 * <= 0 (end of file and errors are left for libevent's next read to report). */
ssize_t net_recv_more(struct evbuffer *in, evutil_socket_t fd, size_t chunk);

#endif
