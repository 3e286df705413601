/* inherit.c: the table of listening sockets handed to this process (systemd socket activation,
 * or a binary upgrade's takeover), checked once when they arrive and matched to listeners by
 * the address they are bound to. */
#include "inherit.h"

#include "log.h"
#include "sock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* systemd's first passed descriptor (SD_LISTEN_FDS_START). */
#define LISTEN_FDS_START 3
/* More than any config could use; a larger LISTEN_FDS is malformed. */
#define LISTEN_FDS_MAX 4096

static const char *const source_names[SP_INHERIT_SOURCE_COUNT] = {"systemd", "takeover"};

/* The checks that make a descriptor usable as a listener; 0 or -errno with `why` filled. */
static int check_socket(int fd, struct sp_inherited *e, char *why, size_t whylen)
{
    struct stat st;
    int type = 0, acc = 0;
    socklen_t len = sizeof(type);
    if (fstat(fd, &st) == -1 || !S_ISSOCK(st.st_mode)) {
        snprintf(why, whylen, "descriptor %d is not a socket", fd);
        return -ENOTSOCK;
    }
    e->ino = st.st_ino;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == -1 || type != SOCK_STREAM) {
        snprintf(why, whylen, "descriptor %d is not a stream socket", fd);
        return -EPROTOTYPE;
    }
    len = sizeof(acc);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) == -1 || acc != 1) {
        snprintf(why, whylen, "descriptor %d is a socket that does not listen", fd);
        return -EINVAL;
    }
    e->addrlen = sizeof(e->addr);
    if (getsockname(fd, (struct sockaddr *)&e->addr, &e->addrlen) == -1) {
        int err = errno;
        snprintf(why, whylen, "descriptor %d: getsockname: %s", fd, strerror(err));
        return -err;
    }
    int fl = fcntl(fd, F_GETFL);
    /* The accept loop relies on EAGAIN; O_NONBLOCK belongs to the socket, which the giver
     * polls the same way (systemd and splicer alike). */
    if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1 ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) == -1) {
        int err = errno;
        snprintf(why, whylen, "descriptor %d: fcntl: %s", fd, strerror(err));
        return -err;
    }
    return 0;
}

int sp_inherit_add(struct sp_inherit *in, int fd, enum sp_inherit_source src, bool shared,
                   char *why, size_t whylen)
{
    struct sp_inherited e = {.fd = fd, .source = src, .shared = shared};
    int rc = check_socket(fd, &e, why, whylen);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    for (size_t i = 0; i < in->n; i++) {
        if (in->v[i].fd != -1 && in->v[i].ino == e.ino) {
            close(fd); /* the same socket twice: workers share it anyway */
            return 0;
        }
    }
    if (in->n == in->cap) {
        size_t cap = in->cap != 0 ? 2 * in->cap : 8;
        struct sp_inherited *v = realloc(in->v, cap * sizeof(*v));
        if (v == NULL) {
            close(fd);
            snprintf(why, whylen, "out of memory");
            return -ENOMEM;
        }
        in->v = v;
        in->cap = cap;
    }
    in->v[in->n++] = e;
    char addr[SP_ADDRSTRLEN + 64];
    sp_log_debug("inherited from %s: descriptor %d listening on %s", source_names[src], fd,
                 sp_sock_addr_str((struct sockaddr *)&e.addr, addr, sizeof(addr)));
    return 0;
}

static int env_number(const char *name, long max, long *out)
{
    const char *s = getenv(name);
    if (s == NULL || *s == '\0')
        return -ENOENT;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0 || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

int sp_inherit_from_env(struct sp_inherit *in)
{
    long pid = 0, n = 0;
    int rc = env_number("LISTEN_PID", INT_MAX, &pid);
    if (rc == -ENOENT)
        return 0;
    if (rc == 0 && pid != (long)getpid()) /* meant for another process: not ours to touch */
        return 0;
    int nrc = env_number("LISTEN_FDS", LISTEN_FDS_MAX, &n);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (rc != 0 || nrc == -EINVAL) {
        sp_log_error("socket activation: malformed LISTEN_PID or LISTEN_FDS");
        return -EINVAL;
    }
    int added = 0;
    for (long i = 0; i < n; i++) {
        char why[128];
        int fd = LISTEN_FDS_START + (int)i;
        if (sp_inherit_add(in, fd, SP_INHERIT_SYSTEMD, true, why, sizeof(why)) == 0)
            added++;
        else
            sp_log_warn("socket activation: %s; closed it", why);
    }
    sp_log_info("socket activation: %d listening socket%s from systemd", added,
                added == 1 ? "" : "s");
    return added;
}

size_t sp_inherit_count(const struct sp_inherit *in, const struct sockaddr *addr)
{
    size_t n = 0;
    for (size_t i = 0; i < in->n; i++)
        n += in->v[i].fd != -1 && sp_sock_addr_equal((struct sockaddr *)&in->v[i].addr, addr);
    return n;
}

int sp_inherit_take(struct sp_inherit *in, const struct sockaddr *addr, bool *shared)
{
    for (size_t i = 0; i < in->n; i++) {
        struct sp_inherited *e = &in->v[i];
        if (e->fd == -1 || !sp_sock_addr_equal((struct sockaddr *)&e->addr, addr))
            continue;
        int fd = e->fd;
        e->fd = -1;
        *shared = e->shared;
        in->taken[e->source]++;
        return fd;
    }
    return -1;
}

void sp_inherit_close_unused(struct sp_inherit *in)
{
    for (size_t i = 0; i < in->n; i++) {
        struct sp_inherited *e = &in->v[i];
        if (e->fd == -1)
            continue;
        char addr[SP_ADDRSTRLEN + 64];
        sp_log_warn("%s socket %s: no listener of the config has this address; closed it",
                    source_names[e->source],
                    sp_sock_addr_str((struct sockaddr *)&e->addr, addr, sizeof(addr)));
        close(e->fd);
        e->fd = -1;
    }
}

void sp_inherit_deinit(struct sp_inherit *in)
{
    for (size_t i = 0; i < in->n; i++) {
        if (in->v[i].fd != -1)
            close(in->v[i].fd);
    }
    free(in->v);
    in->v = NULL;
    in->n = in->cap = 0;
}
