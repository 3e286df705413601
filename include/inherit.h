/* inherit.h: listening sockets this process did not bind itself, handed over by systemd
 * (socket activation: LISTEN_FDS) or by the splicer it replaces (--takeover). The listener and
 * admin setup take the sockets bound to their address before they bind anything. No libuv.
 * Main thread only. */
#ifndef SPLICER_INHERIT_H
#define SPLICER_INHERIT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

enum sp_inherit_source {
    SP_INHERIT_SYSTEMD = 0, /* LISTEN_FDS */
    SP_INHERIT_TAKEOVER,    /* received from the old process over the control socket */
    SP_INHERIT_SOURCE_COUNT
};

struct sp_inherited {
    int fd; /* owned; -1 once taken */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    ino_t ino; /* the socket's inode: two descriptors of one socket have the same */
    enum sp_inherit_source source;
    /* Every worker accepts on this one socket rather than each on its own SO_REUSEPORT
     * sibling: a systemd socket, which must stay the only one so that nothing queued is lost
     * when the service restarts (systemd keeps it; siblings would close with the process). */
    bool shared;
};

struct sp_inherit {
    struct sp_inherited *v; /* owned array */
    size_t n, cap;
    unsigned taken[SP_INHERIT_SOURCE_COUNT]; /* sockets a listener or the admin endpoint took */
};

/* Adds `fd` (ownership passes, even on failure). It must be a listening stream socket
 * (SO_TYPE, SO_ACCEPTCONN, getsockname); it is made close-on-exec and non-blocking. A second
 * descriptor of a socket already in the table is closed (one socket, one entry). Returns 0, or
 * -ENOTSOCK/-EPROTOTYPE/-EINVAL/-errno for a descriptor that cannot serve, described in `why`. */
int sp_inherit_add(struct sp_inherit *in, int fd, enum sp_inherit_source src, bool shared,
                   char *why, size_t whylen);

/* Socket activation: when LISTEN_PID is this process, adds descriptors 3 .. 3+LISTEN_FDS-1
 * (shared; see above) and unsets LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES so that no child
 * inherits them. A descriptor that is not a listening socket is logged and closed. Returns how
 * many were added, or -EINVAL for a malformed LISTEN_FDS. */
int sp_inherit_from_env(struct sp_inherit *in);

/* How many sockets of the table are bound to `addr` (family, address and port; a Unix socket
 * by path). */
size_t sp_inherit_count(const struct sp_inherit *in, const struct sockaddr *addr);

/* Takes the next socket bound to `addr` out of the table: its fd (the caller owns it now), or
 * -1 when none is left. *shared tells how the workers use it. */
int sp_inherit_take(struct sp_inherit *in, const struct sockaddr *addr, bool *shared);

/* Closes what no listener took, with a warning for each: an address the config does not
 * have. */
void sp_inherit_close_unused(struct sp_inherit *in);

/* Closes what is left and frees the table. */
void sp_inherit_deinit(struct sp_inherit *in);

#endif
