/* control.c: the control socket of a running splicer (control.h): the guard against a second
 * instance, and the old process's side of a binary upgrade. One conversation at a time, each
 * step bounded by a timer, every message checked for size, magic, version and type before it
 * is believed (control_proto.h). */
#include "control.h"

#include "control_proto.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* A peer has this long to say HELLO, and the new process this long from receiving the sockets
 * to COMMIT (it starts its workers and admin endpoint in between). */
#define HELLO_TIMEOUT_MS  5000
#define COMMIT_TIMEOUT_MS 60000

enum conv_state { CONV_HELLO = 0, CONV_EXPORT, CONV_COMMIT, CONV_DONE };

static const char *const state_names[] = {"waiting for HELLO", "collecting the sockets",
                                          "waiting for COMMIT", "done"};

/* One peer on the control socket. Freed once both handles have closed. */
struct conv {
    struct sp_control *c; /* borrowed */
    int fd;               /* owned; -1 once closed */
    uv_poll_t poll;
    uv_timer_t timer;
    enum conv_state state;
    uint32_t pid;                /* the peer's, from SO_PEERCRED */
    struct sp_listen_export *ex; /* owned array, one per worker; NULL before HELLO */
    unsigned closes_pending;
    bool said_hello;
};

struct sp_control {
    char path[SP_CONTROL_PATH_MAX + 1];
    char tmp[SP_CONTROL_PATH_MAX + 32]; /* a takeover's temporary name; "" once installed */
    int lfd;                            /* owned; -1 once closed */
    dev_t dev;                          /* the socket file at path, once this process put it */
    ino_t ino;
    bool placed;
    bool started;
    uv_loop_t *loop;
    uv_poll_t lpoll;
    uv_async_t export_done;    /* workers -> main: an export request is filled */
    struct sp_worker *workers; /* borrowed */
    unsigned nworkers;
    const struct sp_control_ops *ops;
    void *ctx;
    struct conv *conv; /* the conversation in progress, or NULL */
    unsigned closes_pending;
    bool stopped;
    _Atomic uint64_t ok, failed;
};

static int fill_addr(struct sockaddr_un *sa, const char *path)
{
    *sa = (struct sockaddr_un){.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa->sun_path))
        return -ENAMETOOLONG;
    memcpy(sa->sun_path, path, strlen(path) + 1);
    return 0;
}

/* ---- the path: the second-instance guard, binding, cleanup ------------------------------- */

/* 0 when `path` is free (absent, or a stale socket now removed); -errno otherwise, logged. */
static int probe(const char *path)
{
    struct sockaddr_un sa;
    if (fill_addr(&sa, path) != 0)
        return -ENAMETOOLONG;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    struct timeval tv = {.tv_sec = 2};
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        struct ucred cr = {0};
        socklen_t len = sizeof(cr);
        (void)getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len);
        close(fd);
        sp_log_error("control_socket %s: another splicer (pid %d) is running and answers on it; "
                     "refusing to start a second instance beside it, which would share its "
                     "listening ports. To replace it, start this one with --takeover %s "
                     "(scripts/upgrade.sh); otherwise stop it first",
                     path, (int)cr.pid, path);
        return -EADDRINUSE;
    }
    int err = errno;
    close(fd);
    if (err == ENOENT)
        return 0;
    struct stat st;
    if (err == ECONNREFUSED && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        if (unlink(path) == -1 && errno != ENOENT) {
            err = errno;
            sp_log_error("control_socket %s: cannot remove the stale socket: %s", path,
                         strerror(err));
            return -err;
        }
        sp_log_info("control_socket %s: removed a stale socket (no process answered on it)", path);
        return 0;
    }
    if (err == ECONNREFUSED)
        sp_log_error("control_socket %s: the path exists and is not a socket; remove it or "
                     "choose another path",
                     path);
    else if (err == EPROTOTYPE)
        sp_log_error("control_socket %s: a socket of another kind (not splicer's) is there; "
                     "remove it or choose another path",
                     path);
    else
        sp_log_error("control_socket %s: cannot probe it: %s", path, strerror(err));
    return -(err == ECONNREFUSED ? EEXIST : err);
}

/* A listening socket at c->tmp, mode 0600 from the start (umask: no thread runs yet). */
static int bind_tmp(struct sp_control *c)
{
    struct sockaddr_un sa;
    snprintf(c->tmp, sizeof(c->tmp), "%s.%ld.tmp", c->path, (long)getpid());
    if (fill_addr(&sa, c->tmp) != 0)
        return -ENAMETOOLONG;
    (void)unlink(c->tmp); /* left by an earlier process with our pid */
    c->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->lfd == -1)
        return -errno;
    mode_t old = umask(0177);
    int rc = bind(c->lfd, (struct sockaddr *)&sa, sizeof(sa));
    int err = errno;
    umask(old);
    if (rc == -1) {
        c->tmp[0] = '\0';
        return -err;
    }
    if (chmod(c->tmp, 0600) == -1 || listen(c->lfd, 4) == -1)
        return -errno;
    return 0;
}

static void record_placed(struct sp_control *c)
{
    struct stat st;
    c->placed = stat(c->path, &st) == 0;
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    c->tmp[0] = '\0';
}

static void free_unstarted(struct sp_control *c)
{
    if (c->lfd != -1)
        close(c->lfd);
    if (c->tmp[0] != '\0')
        (void)unlink(c->tmp);
    free(c);
}

int sp_control_open(const char *path, bool takeover, struct sp_control **out)
{
    *out = NULL;
    struct sp_control *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->lfd = -1;
    snprintf(c->path, sizeof(c->path), "%s", path);
    int rc = takeover ? 0 : probe(path);
    if (rc == 0)
        rc = bind_tmp(c);
    if (rc != 0 && rc != -EADDRINUSE && rc != -EEXIST)
        sp_log_error("control_socket %s: cannot listen: %s", path, strerror(-rc));
    /* link() rather than rename(): it fails if another process took the path meanwhile. */
    if (rc == 0 && !takeover && link(c->tmp, path) == -1) {
        rc = -errno;
        sp_log_error("control_socket %s: %s", path,
                     rc == -EEXIST ? "another process took the path meanwhile" : strerror(-rc));
    }
    if (rc != 0) {
        free_unstarted(c);
        return rc;
    }
    if (!takeover) {
        (void)unlink(c->tmp);
        record_placed(c);
    }
    *out = c;
    return 0;
}

int sp_control_install(struct sp_control *c)
{
    if (rename(c->tmp, c->path) == -1) {
        int err = errno;
        sp_log_error("control_socket %s: cannot move %s into place: %s", c->path, c->tmp,
                     strerror(err));
        return -err;
    }
    record_placed(c);
    return 0;
}

const char *sp_control_path(const struct sp_control *c)
{
    return c->path;
}

void sp_control_counts(const struct sp_control *c, uint64_t *ok, uint64_t *failed)
{
    *ok = atomic_load(&c->ok);
    *failed = atomic_load(&c->failed);
}

/* ---- one conversation ------------------------------------------------------------------- */

static void control_maybe_free(struct sp_control *c)
{
    if (c->stopped && c->closes_pending == 0 && c->conv == NULL)
        free(c);
}

static void close_export(struct sp_listen_export *ex)
{
    for (size_t i = 0; ex->fds != NULL && i < ex->n; i++)
        close(ex->fds[i]);
    free(ex->fds);
    ex->fds = NULL;
    ex->n = 0;
}

static void conv_closed(uv_handle_t *h)
{
    struct conv *v = h->data;
    if (--v->closes_pending > 0)
        return;
    struct sp_control *c = v->c;
    free(v);
    control_maybe_free(c);
}

static void send_msg(int fd, const struct sp_ctl_msg *m)
{
    /* A small message on a fresh SEQPACKET socket: the buffer has room, or the peer is gone. */
    (void)send(fd, m, sizeof(*m), MSG_DONTWAIT | MSG_NOSIGNAL);
}

static void msg_init(struct sp_ctl_msg *m, enum sp_ctl_type type)
{
    *m = (struct sp_ctl_msg){.magic = SP_CTL_MAGIC, .version = SP_CTL_VERSION, .type = type};
    m->pid = (uint32_t)getpid();
}

static void send_error(int fd, const char *why)
{
    struct sp_ctl_msg m;
    msg_init(&m, SP_CTL_ERROR);
    snprintf(m.text, sizeof(m.text), "%s", why);
    send_msg(fd, &m);
}

/* Ends the conversation: what the workers exported and was not sent is closed. `handed` is
 * true after a completed handover. */
static void conv_end(struct conv *v, bool handed)
{
    struct sp_control *c = v->c;
    if (v->state == CONV_DONE)
        return;
    if (!handed && v->said_hello)
        atomic_fetch_add(&c->failed, 1);
    v->state = CONV_DONE;
    for (unsigned i = 0; v->ex != NULL && i < c->nworkers; i++) {
        sp_worker_export_cancel(&c->workers[i], &v->ex[i]);
        close_export(&v->ex[i]);
    }
    free(v->ex);
    v->ex = NULL;
    close(v->fd);
    v->fd = -1;
    c->conv = NULL;
    v->closes_pending = 2;
    uv_close((uv_handle_t *)&v->poll, conv_closed);
    uv_close((uv_handle_t *)&v->timer, conv_closed);
}

static void conv_fail(struct conv *v, const char *why)
{
    sp_log_warn("control_socket: takeover by pid %u abandoned (%s): carrying on as before", v->pid,
                why);
    send_error(v->fd, why);
    conv_end(v, false);
}

static void on_conv_timeout(uv_timer_t *t)
{
    struct conv *v = t->data;
    char why[96];
    snprintf(why, sizeof(why), "timed out %s", state_names[v->state]);
    conv_fail(v, why);
}

/* One entry per socket, however many descriptors of it the workers hold. */
static int add_unique(int *fds, ino_t *inos, size_t *n, int fd)
{
    struct stat st;
    if (fstat(fd, &st) == -1) {
        close(fd);
        return -errno;
    }
    for (size_t i = 0; i < *n; i++) {
        if (inos[i] == st.st_ino) {
            close(fd);
            return 0;
        }
    }
    inos[*n] = st.st_ino;
    fds[(*n)++] = fd;
    return 0;
}

static int send_batch(struct conv *v, const int *fds, const ino_t *inos, size_t n, bool last)
{
    struct sp_ctl_msg m;
    msg_init(&m, SP_CTL_SOCKETS);
    m.nfds = (uint16_t)n;
    m.flags = last ? SP_CTL_LAST : 0;
    for (size_t i = 0; i < n; i++)
        m.fd_flags[i] = v->c->ops->shared(v->c->ctx, inos[i]) ? SP_CTL_FD_SHARED : 0;
    union {
        char buf[CMSG_SPACE(sizeof(int) * SP_CTL_FDS_MAX)];
        struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n > 0) {
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
    }
    return sendmsg(v->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof(m) ? 0 : -errno;
}

/* Every worker has answered: send one copy of each listening socket, and the admin
 * endpoint's, then close ours (the peer holds its own now). */
static void send_sockets(struct conv *v)
{
    struct sp_control *c = v->c;
    size_t total = 1;
    for (unsigned i = 0; i < c->nworkers; i++)
        total += v->ex[i].n;
    int *fds = malloc(total * sizeof(*fds));
    ino_t *inos = malloc(total * sizeof(*inos));
    size_t n = 0;
    int rc = fds != NULL && inos != NULL ? 0 : -ENOMEM;
    for (unsigned i = 0; i < c->nworkers; i++) {
        for (size_t j = 0; j < v->ex[i].n; j++) {
            if (rc == 0)
                rc = add_unique(fds, inos, &n, v->ex[i].fds[j]);
            else
                close(v->ex[i].fds[j]);
        }
        free(v->ex[i].fds);
        v->ex[i].fds = NULL;
        v->ex[i].n = 0;
        rc = rc == 0 && v->ex[i].failed ? -ENOMEM : rc;
    }
    int afd = c->ops->admin_fd(c->ctx);
    if (rc == 0 && afd != -1) {
        int dup = fcntl(afd, F_DUPFD_CLOEXEC, 3);
        rc = dup == -1 ? -errno : add_unique(fds, inos, &n, dup);
    }
    if (rc == 0 && n > (size_t)SP_CTL_FDS_MAX * SP_CTL_MSGS_MAX)
        rc = -E2BIG;
    for (size_t off = 0; rc == 0 && (off < n || off == 0); off += SP_CTL_FDS_MAX) {
        size_t k = n - off < SP_CTL_FDS_MAX ? n - off : SP_CTL_FDS_MAX;
        rc = send_batch(v, fds + off, inos + off, k, off + k >= n);
        if (n == 0)
            break;
    }
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
    free(inos);
    if (rc != 0) {
        char why[96];
        snprintf(why, sizeof(why), "cannot send the listening sockets: %s", strerror(-rc));
        conv_fail(v, why);
        return;
    }
    sp_log_info("control_socket: sent %zu listening socket%s to pid %u; waiting for it to "
                "commit",
                n, n == 1 ? "" : "s", v->pid);
    v->state = CONV_COMMIT;
    uv_timer_start(&v->timer, on_conv_timeout, COMMIT_TIMEOUT_MS, 0);
}

static void on_export_done(uv_async_t *a)
{
    struct sp_control *c = a->data;
    struct conv *v = c->conv;
    if (v == NULL || v->state != CONV_EXPORT)
        return;
    for (unsigned i = 0; i < c->nworkers; i++) {
        if (!atomic_load(&v->ex[i].done))
            return;
    }
    send_sockets(v);
}

static void on_hello(struct conv *v, const struct sp_ctl_msg *m)
{
    struct sp_control *c = v->c;
    v->said_hello = true;
    if (m->version != SP_CTL_VERSION) {
        char why[96];
        snprintf(why, sizeof(why), "protocol version %u not supported (this splicer speaks %u)",
                 m->version, SP_CTL_VERSION);
        conv_fail(v, why);
        return;
    }
    if (c->ops->stopping(c->ctx)) {
        conv_fail(v, "this splicer is shutting down");
        return;
    }
    sp_log_info("control_socket: pid %u asks to take over", v->pid);
    v->ex = calloc(c->nworkers, sizeof(*v->ex));
    if (v->ex == NULL) {
        conv_fail(v, "out of memory");
        return;
    }
    v->state = CONV_EXPORT;
    for (unsigned i = 0; i < c->nworkers; i++)
        sp_worker_export(&c->workers[i], &v->ex[i], &c->export_done);
}

static void control_closed(uv_handle_t *h)
{
    struct sp_control *c = h->data;
    c->closes_pending--;
    control_maybe_free(c);
}

static void close_listener(struct sp_control *c)
{
    if (c->lfd == -1)
        return;
    c->closes_pending++;
    uv_close((uv_handle_t *)&c->lpoll, control_closed);
    close(c->lfd); /* after uv_close has taken it out of epoll */
    c->lfd = -1;
}

static void on_commit(struct conv *v)
{
    struct sp_control *c = v->c;
    struct sp_ctl_msg ack;
    msg_init(&ack, SP_CTL_ACK);
    atomic_fetch_add(&c->ok, 1);
    sp_log_info("control_socket: pid %u has taken over; no longer accepting, draining", v->pid);
    c->placed = false; /* the path is the new process's from now on: never unlink it */
    c->ops->handover(c->ctx, v->pid);
    send_msg(v->fd, &ack);
    conv_end(v, true);
    close_listener(c);
}

/* Reads one message; anything but exactly one well-formed message of the expected type ends
 * the conversation. */
static void on_conv_readable(uv_poll_t *h, int status, int events)
{
    struct conv *v = h->data;
    (void)events;
    struct sp_ctl_msg m;
    ssize_t n = status < 0 ? -1 : recv(v->fd, &m, sizeof(m), MSG_DONTWAIT | MSG_TRUNC);
    if (n == -1 && (errno == EAGAIN || errno == EINTR) && status >= 0)
        return;
    if (n <= 0) {
        if (v->said_hello)
            sp_log_warn("control_socket: pid %u went away while %s: carrying on as before", v->pid,
                        state_names[v->state]);
        conv_end(v, false);
        return;
    }
    bool ok = n == (ssize_t)sizeof(m) && m.magic == SP_CTL_MAGIC;
    if (ok && v->state == CONV_HELLO && m.type == SP_CTL_HELLO) {
        on_hello(v, &m);
        return;
    }
    if (ok && m.version == SP_CTL_VERSION && v->state == CONV_COMMIT && m.type == SP_CTL_COMMIT) {
        on_commit(v);
        return;
    }
    v->said_hello = true; /* a malformed request counts as a failed one */
    conv_fail(v, "unexpected message");
}

static bool peer_allowed(int fd, uint32_t *pid)
{
    struct ucred cr;
    socklen_t len = sizeof(cr);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == -1)
        return false;
    *pid = (uint32_t)cr.pid;
    /* The socket's mode lets only our user in; root may anyway. */
    if (cr.uid == geteuid() || cr.uid == 0)
        return true;
    sp_log_warn("control_socket: refused pid %d of uid %u (not this process's user)", (int)cr.pid,
                (unsigned)cr.uid);
    return false;
}

static void start_conv(struct sp_control *c, int fd, uint32_t pid)
{
    struct conv *v = calloc(1, sizeof(*v));
    if (v == NULL) {
        close(fd);
        return;
    }
    v->c = c;
    v->fd = fd;
    v->pid = pid;
    uv_poll_init(c->loop, &v->poll, fd);
    uv_timer_init(c->loop, &v->timer);
    v->poll.data = v->timer.data = v;
    c->conv = v;
    uv_poll_start(&v->poll, UV_READABLE | UV_DISCONNECT, on_conv_readable);
    uv_timer_start(&v->timer, on_conv_timeout, HELLO_TIMEOUT_MS, 0);
}

static void on_listen_readable(uv_poll_t *h, int status, int events)
{
    struct sp_control *c = h->data;
    (void)events;
    for (int i = 0; status >= 0 && i < 16; i++) {
        int fd = accept4(c->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1)
            return;
        uint32_t pid = 0;
        if (!peer_allowed(fd, &pid)) {
            close(fd);
        } else if (c->conv != NULL) {
            send_error(fd, "busy: another takeover is in progress");
            close(fd);
        } else {
            start_conv(c, fd, pid);
        }
    }
}

/* ---- life cycle ------------------------------------------------------------------------- */

void sp_control_start(struct sp_control *c, uv_loop_t *loop, struct sp_worker *workers,
                      unsigned nworkers, const struct sp_control_ops *ops, void *ctx)
{
    c->loop = loop;
    c->workers = workers;
    c->nworkers = nworkers;
    c->ops = ops;
    c->ctx = ctx;
    uv_poll_init(loop, &c->lpoll, c->lfd);
    uv_async_init(loop, &c->export_done, on_export_done);
    c->lpoll.data = c->export_done.data = c;
    uv_poll_start(&c->lpoll, UV_READABLE, on_listen_readable);
    c->started = true;
}

void sp_control_stop(struct sp_control *c)
{
    if (c == NULL)
        return;
    struct stat st;
    if (c->placed && stat(c->path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino)
        (void)unlink(c->path); /* still ours: a takeover has not replaced it */
    if (!c->started) {
        free_unstarted(c);
        return;
    }
    if (c->conv != NULL)
        conv_end(c->conv, false);
    c->stopped = true;
    close_listener(c);
    c->closes_pending++;
    uv_close((uv_handle_t *)&c->export_done, control_closed);
}
