/* sock.h: socket helpers shared by the listener, sessions and health checks. Every function
 * returns a file descriptor or 0 on success and a negative errno on failure. No libuv. */
#ifndef SPLICER_SOCK_H
#define SPLICER_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* Longest address text plus NUL: "[v6addr]:port", or "unix:" and a 107-byte path ("unix:@" and
 * an abstract name). */
#define SP_ADDRSTRLEN 120

/* A non-blocking, close-on-exec listening socket on `sa` with SO_REUSEADDR and, when
 * `reuseport`, SO_REUSEPORT (so every worker can bind its own). IPv6 sockets are v6-only, so
 * [::]:80 and 0.0.0.0:80 can be separate listeners. TCP_NODELAY is set on it, and accepted
 * sockets inherit it. Returns the fd or -errno. */
int sp_sock_listen(const struct sockaddr *sa, socklen_t len, int backlog, bool reuseport);

/* Starts a non-blocking connect to `sa` with TCP_NODELAY set (TCP only). A Unix socket answers at
 * once: 0, or an error such as -ECONNREFUSED, -ENOENT or -EAGAIN (its backlog is full). On return
 * *fd is the new socket (owned by the caller) and the result is 0 (connected already), -EINPROGRESS
 * (wait for writability, then sp_sock_error) or another -errno with *fd == -1. */
int sp_sock_connect(const struct sockaddr *sa, socklen_t len, int *fd);

/* The pending error of `fd` (SO_ERROR) as 0 or -errno. */
int sp_sock_error(int fd);

/* Sets TCP_NODELAY: the relay forwards whatever arrives at once, so Nagle only adds delay. */
void sp_sock_nodelay(int fd);

/* Closes `fd` so the peer sees a reset rather than a FIN (SO_LINGER 0). */
void sp_sock_close_reset(int fd);

/* True when a and b (AF_INET or AF_INET6) are the same address and port; the padding and
 * fields outside those two do not count. AF_UNIX addresses are equal when their whole sun_path
 * is (as sp_parse_unix_addr fills it: zeroes after the name). */
bool sp_sock_addr_equal(const struct sockaddr *a, const struct sockaddr *b);

/* True for 127.0.0.0/8, ::1 and IPv4-mapped 127.x addresses. */
bool sp_sock_is_loopback(const struct sockaddr *sa);

/* Formats "1.2.3.4:80" or "[::1]:80" into buf (at least SP_ADDRSTRLEN); returns buf. AF_UNIX:
 * "unix:/path", "unix:@name" (the name up to its first NUL) or "unix:" for an unnamed peer,
 * read from a zero-filled sockaddr_un; bytes as they are (escaping is the printer's job). */
const char *sp_sock_addr_str(const struct sockaddr *sa, char *buf, size_t len);

#endif
