/* sock.c: the few socket calls every module needs, with the flags splicer always wants
 * (non-blocking, close-on-exec, no Nagle). */
#include "sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

int sp_sock_listen(const struct sockaddr *sa, socklen_t len, int backlog, bool reuseport)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;

    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
        goto fail;
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1)
        goto fail;
    if (sa->sa_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1)
        goto fail;
    /* Accepted sockets inherit TCP_NODELAY from the listener on Linux, which saves a
     * setsockopt() per connection. */
    sp_sock_nodelay(fd);
    if (bind(fd, sa, len) == -1)
        goto fail;
    if (listen(fd, backlog) == -1)
        goto fail;
    return fd;

fail:;
    int err = errno;
    close(fd);
    return -err;
}

int sp_sock_connect(const struct sockaddr *sa, socklen_t len, int *fd)
{
    *fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (*fd == -1)
        return -errno;
    if (sa->sa_family != AF_UNIX) /* it has no Nagle: the setsockopt would only fail */
        sp_sock_nodelay(*fd);
    if (connect(*fd, sa, len) == 0)
        return 0;
    int err = errno;
    if (err == EINPROGRESS)
        return -EINPROGRESS;
    close(*fd);
    *fd = -1;
    return -err;
}

int sp_sock_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
        return -errno;
    return -err;
}

void sp_sock_nodelay(int fd)
{
    int one = 1;
    /* Best effort: a socket that refuses it still relays correctly, only later. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void sp_sock_close_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

bool sp_sock_addr_equal(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family)
        return false;
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->sa_family == AF_UNIX) {
        const struct sockaddr_un *x = (const void *)a, *y = (const void *)b;
        if (x->sun_path[0] == '\0' || y->sun_path[0] == '\0') /* abstract: every byte counts */
            return memcmp(x->sun_path, y->sun_path, sizeof(x->sun_path)) == 0;
        return strncmp(x->sun_path, y->sun_path, sizeof(x->sun_path)) == 0; /* a path, to its NUL */
    }
    if (a->sa_family != AF_INET6)
        return false;
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

bool sp_sock_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family != AF_INET6)
        return false;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(a))
        return true;
    return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
}

const char *sp_sock_addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(buf, len, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
        const char *p = un->sun_path;
        bool abstract = p[0] == '\0' && p[1] != '\0';
        snprintf(buf, len, "unix:%s%.*s", abstract ? "@" : "", (int)sizeof(un->sun_path) - 1,
                 abstract ? p + 1 : p);
    } else {
        snprintf(buf, len, "(family %d)", sa->sa_family);
    }
    return buf;
}
