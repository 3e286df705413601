/* takeover.c: the new process's side of a binary upgrade: a blocking conversation with the old
 * process over its control socket, each read and write bounded by a timeout, every message and
 * every descriptor checked before it is used. */
#include "takeover.h"

#include "control_proto.h"
#include "log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* How long the old process may take for each answer. */
#define IO_TIMEOUT_S 10

struct sp_takeover {
    int fd; /* owned */
    char path[108];
    uint32_t old_pid;
};

static void msg_init(struct sp_ctl_msg *m, enum sp_ctl_type type)
{
    *m = (struct sp_ctl_msg){.magic = SP_CTL_MAGIC, .version = SP_CTL_VERSION, .type = type};
    m->pid = (uint32_t)getpid();
}

static int connect_to(const char *path, int *out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == -1 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1 ||
        connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
        int err = errno;
        close(fd);
        return -err;
    }
    struct ucred cr;
    socklen_t len = sizeof(cr);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == -1 ||
        (cr.uid != geteuid() && cr.uid != 0)) {
        close(fd);
        return -EPERM; /* sockets from another user's process are not ours to serve on */
    }
    *out = fd;
    return 0;
}

static void close_fds(const int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
}

/* One message and the descriptors that came with it (at most SP_CTL_FDS_MAX, *nfds set).
 * Returns 0, -EPROTO for anything malformed (descriptors closed), -errno. */
static int recv_msg(int fd, struct sp_ctl_msg *m, int *fds, size_t *nfds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * SP_CTL_FDS_MAX)];
        struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = m, .iov_len = sizeof(*m)};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
    ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    if (n == -1)
        return errno == EAGAIN ? -ETIMEDOUT : -errno;
    *nfds = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        if (*nfds + k > SP_CTL_FDS_MAX) /* cannot happen: the buffer holds no more */
            k = SP_CTL_FDS_MAX - *nfds;
        memcpy(fds + *nfds, CMSG_DATA(cm), k * sizeof(int));
        *nfds += k;
    }
    if (n == 0)
        return -ECONNRESET;
    if (n != (ssize_t)sizeof(*m) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 ||
        m->magic != SP_CTL_MAGIC || m->version != SP_CTL_VERSION) {
        close_fds(fds, *nfds);
        *nfds = 0;
        return -EPROTO;
    }
    m->text[sizeof(m->text) - 1] = '\0';
    return 0;
}

static int send_type(int fd, enum sp_ctl_type type)
{
    struct sp_ctl_msg m;
    msg_init(&m, type);
    ssize_t n = send(fd, &m, sizeof(m), MSG_NOSIGNAL);
    if (n == (ssize_t)sizeof(m))
        return 0;
    return n == -1 ? (errno == EAGAIN ? -ETIMEDOUT : -errno) : -EPROTO;
}

/* Adds one SOCKETS message's descriptors to `in`; all or nothing is kept usable. */
static int add_batch(const char *path, struct sp_inherit *in, const struct sp_ctl_msg *m, int *fds,
                     size_t nfds)
{
    if (m->nfds != nfds) {
        close_fds(fds, nfds);
        sp_log_error("takeover %s: %zu descriptors arrived where %u were announced", path, nfds,
                     m->nfds);
        return -EPROTO;
    }
    for (size_t i = 0; i < nfds; i++) {
        char why[128];
        bool shared = (m->fd_flags[i] & SP_CTL_FD_SHARED) != 0;
        int rc = sp_inherit_add(in, fds[i], SP_INHERIT_TAKEOVER, shared, why, sizeof(why));
        if (rc != 0) {
            close_fds(fds + i + 1, nfds - i - 1);
            sp_log_error("takeover %s: a socket from the old process cannot serve: %s", path, why);
            return rc;
        }
    }
    return 0;
}

static int receive_sockets(struct sp_takeover *t, struct sp_inherit *in)
{
    for (int msgs = 0; msgs < SP_CTL_MSGS_MAX; msgs++) {
        struct sp_ctl_msg m;
        int fds[SP_CTL_FDS_MAX];
        size_t nfds = 0;
        int rc = recv_msg(t->fd, &m, fds, &nfds);
        if (rc != 0) {
            sp_log_error("takeover %s: no answer from the old process: %s", t->path,
                         rc == -EPROTO ? "malformed message" : strerror(-rc));
            return rc;
        }
        if (m.type == SP_CTL_ERROR) {
            close_fds(fds, nfds);
            sp_log_error("takeover %s: the old process (pid %u) refused: %s", t->path, m.pid,
                         m.text);
            return -ECONNREFUSED;
        }
        if (m.type != SP_CTL_SOCKETS) {
            close_fds(fds, nfds);
            sp_log_error("takeover %s: unexpected message type %u", t->path, m.type);
            return -EPROTO;
        }
        t->old_pid = m.pid;
        rc = add_batch(t->path, in, &m, fds, nfds);
        if (rc != 0)
            return rc;
        if ((m.flags & SP_CTL_LAST) != 0)
            return 0;
    }
    sp_log_error("takeover %s: more sockets than this splicer accepts", t->path);
    return -E2BIG;
}

int sp_takeover_begin(const char *path, struct sp_inherit *in, struct sp_takeover **out)
{
    *out = NULL;
    struct sp_takeover *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    snprintf(t->path, sizeof(t->path), "%s", path);
    int rc = connect_to(path, &t->fd);
    if (rc != 0) {
        sp_log_error("takeover %s: no splicer to take over: %s%s", path, strerror(-rc),
                     rc == -ENOENT || rc == -ECONNREFUSED
                         ? " (is the old one running, with this control_socket?)"
                         : "");
        free(t);
        return rc;
    }
    rc = send_type(t->fd, SP_CTL_HELLO);
    if (rc != 0)
        sp_log_error("takeover %s: cannot talk to the old process: %s", path, strerror(-rc));
    if (rc == 0)
        rc = receive_sockets(t, in);
    if (rc != 0) {
        sp_takeover_free(t);
        return rc;
    }
    unsigned n = in->n;
    sp_log_info("takeover %s: received %u listening socket%s from pid %u", path, n,
                n == 1 ? "" : "s", t->old_pid);
    *out = t;
    return 0;
}

uint32_t sp_takeover_old_pid(const struct sp_takeover *t)
{
    return t->old_pid;
}

int sp_takeover_commit(struct sp_takeover *t)
{
    int rc = send_type(t->fd, SP_CTL_COMMIT);
    if (rc != 0) {
        sp_log_error("takeover %s: cannot tell the old process (pid %u) to stop: %s", t->path,
                     t->old_pid, strerror(-rc));
        return rc;
    }
    struct sp_ctl_msg m;
    int fds[SP_CTL_FDS_MAX];
    size_t nfds = 0;
    rc = recv_msg(t->fd, &m, fds, &nfds);
    close_fds(fds, nfds);
    if (rc == 0 && m.type == SP_CTL_ERROR) {
        sp_log_error("takeover %s: the old process (pid %u) refused: %s", t->path, t->old_pid,
                     m.text);
        return -ECONNREFUSED;
    }
    if (rc != 0 || m.type != SP_CTL_ACK)
        sp_log_warn("takeover %s: the old process (pid %u) did not confirm (%s); going on, as "
                    "it does not accept after COMMIT either way",
                    t->path, t->old_pid, rc != 0 ? strerror(-rc) : "unexpected message");
    return 0;
}

void sp_takeover_free(struct sp_takeover *t)
{
    if (t == NULL)
        return;
    close(t->fd);
    free(t);
}
