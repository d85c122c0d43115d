/* net: address parsing, listeners and connects for every weft process.
 * Invariant: every socket it creates is non-blocking and close-on-exec. */
#include "net.h"
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int net_addr_parse(const char *s, int default_port, net_addr_t *out)
{
    memset(out, 0, sizeof *out);
    if (strncmp(s, "unix:", 5) == 0) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&out->ss;
        const char *path = s + 5;
        if (!*path || strlen(path) >= sizeof sun->sun_path)
            return -1;
        sun->sun_family = AF_UNIX;
        strcpy(sun->sun_path, path);
        out->len = sizeof *sun;
        out->is_unix = 1;
        return 0;
    }
    char host[256];
    const char *port_s = NULL;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || (size_t)(end - s - 1) >= sizeof host)
            return -1;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        if (end[1] == ':')
            port_s = end + 2;
        else if (end[1])
            return -1;
    } else {
        const char *colon = strrchr(s, ':');
        size_t hl = colon ? (size_t)(colon - s) : strlen(s);
        if (hl >= sizeof host || (colon && strchr(s, ':') != colon))
            return -1;
        memcpy(host, s, hl);
        host[hl] = '\0';
        if (colon)
            port_s = colon + 1;
    }
    long port = default_port;
    if (port_s) {
        char *e;
        port = strtol(port_s, &e, 10);
        if (*port_s == '\0' || *e || port <= 0 || port > 65535)
            return -1;
    }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    char portbuf[24];
    snprintf(portbuf, sizeof portbuf, "%ld", port);
    if (getaddrinfo(host, portbuf, &hints, &res) != 0 || !res)
        return -1;
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

void net_addr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    (void)len;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(buf, cap, "%s:%u", host, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(buf, cap, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else {
        snprintf(buf, cap, "unix");
    }
}

int net_addr_is_local(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_UNIX)
        return 1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return 1;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            return in6->sin6_addr.s6_addr[12] == 127;
    }
    return 0;
}

struct evconnlistener *net_listen(struct event_base *base, const net_addr_t *addr,
                                  evconnlistener_cb cb, void *ctx, char *err, size_t errlen)
{
    if (addr->is_unix) {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)&addr->ss;
        struct stat st;
        if (stat(sun->sun_path, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(sun->sun_path);
    }
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
    /* A UNIX socket is born 0600 (no window where others may connect); a
     * caller that wants group access widens it afterwards. */
    mode_t old_mask = addr->is_unix ? umask(0177) : 0;
    struct evconnlistener *l = evconnlistener_new_bind(base, cb, ctx, flags, 512,
                                                       (const struct sockaddr *)&addr->ss,
                                                       (int)addr->len);
    int saved = errno;
    if (addr->is_unix)
        umask(old_mask);
    if (!l) {
        snprintf(err, errlen, "%s", strerror(saved));
        return NULL;
    }
    return l;
}

struct bufferevent *net_connect(struct event_base *base, const net_addr_t *addr)
{
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        return NULL;
    if (bufferevent_socket_connect(bev, (const struct sockaddr *)&addr->ss, (int)addr->len) < 0) {
        bufferevent_free(bev);
        return NULL;
    }
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd >= 0 && !addr->is_unix) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return bev;
}

int net_bev_output_pending(struct bufferevent *bev)
{
    if (!bev)
        return 0;
    if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
        return 1;
    struct bufferevent *under = bufferevent_get_underlying(bev);
    return under && evbuffer_get_length(bufferevent_get_output(under)) > 0;
}

void net_tune_accepted(evutil_socket_t fd, const struct sockaddr *sa)
{
    if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
        return;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

ssize_t net_recv_more(struct evbuffer *in, evutil_socket_t fd, size_t chunk)
{
    struct evbuffer_iovec v;
    ssize_t r = -1;
    evbuffer_unfreeze(in, 0);
    if (evbuffer_reserve_space(in, (ev_ssize_t)chunk, &v, 1) >= 1 && (r = recv(fd, v.iov_base, v.iov_len, 0)) > 0) {
        v.iov_len = (size_t)r;
        evbuffer_commit_space(in, &v, 1);
    }
    evbuffer_freeze(in, 0);
    return r;
}
