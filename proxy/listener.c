/* listener.c: accepting connections for one worker. Each worker binds its own socket with
 * SO_REUSEPORT, so the kernel spreads new connections and no accept lock is needed. */
#include "listener.h"

#include "log.h"
#include "session.h"
#include "sock.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* Accepts per readiness event: enough to drain a burst, few enough to keep relaying fair. */
#define ACCEPT_BATCH 64
/* How long accepting pauses when the process or system is out of file descriptors. */
#define FD_PAUSE_MS 100

int sp_listener_bind(struct sp_listener *l, struct sp_worker *w,
                     const struct sp_listener_conf *conf, struct sp_listener_stats *stats,
                     struct sp_upstream *up, struct sp_balancer *bal)
{
    *l = (struct sp_listener){
        .worker = w, .conf = conf, .stats = stats, .upstream = up, .balancer = bal, .fd = -1};
    int fd = sp_sock_listen((const struct sockaddr *)&conf->addr, conf->addrlen, (int)conf->backlog,
                            true);
    if (fd < 0) {
        sp_log_error("listener %s: cannot listen on %s: %s", conf->name, conf->listen,
                     uv_strerror(fd));
        return fd;
    }
    l->fd = fd;
    return 0;
}

void sp_listener_unbind(struct sp_listener *l)
{
    if (l->fd != -1) {
        close(l->fd);
        l->fd = -1;
    }
}

static void on_accept(uv_poll_t *h, int status, int events);

static void resume(uv_timer_t *t)
{
    struct sp_listener *l = sp_container_of(t, struct sp_listener, pause);
    if (l->fd != -1)
        uv_poll_start(&l->poll, UV_READABLE, on_accept);
}

/* Out of descriptors: the pending client would wait in the backlog for as long as we are
 * short, so spend the spare fd to accept and close it at once, then stop polling for a while
 * (the listener stays readable, and polling it would spin). */
static void fd_exhausted(struct sp_listener *l, int err)
{
    struct sp_worker *w = l->worker;
    if (w->spare_fd != -1) {
        close(w->spare_fd);
        int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd != -1) {
            close(fd);
            atomic_fetch_add_explicit(&l->stats->rejected, 1, memory_order_relaxed);
        }
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    sp_log_warn("listener %s: %s; refusing new connections for %d ms", l->conf->name,
                uv_strerror(-err), FD_PAUSE_MS);
    uv_poll_stop(&l->poll);
    uv_timer_start(&l->pause, resume, FD_PAUSE_MS, 0);
}

/* Counts the connection against max_connections; false means over the limit. */
static bool admit(struct sp_listener *l)
{
    uint32_t prev = atomic_fetch_add_explicit(&l->stats->active, 1, memory_order_relaxed);
    if (prev < l->conf->max_connections)
        return true;
    atomic_fetch_sub_explicit(&l->stats->active, 1, memory_order_relaxed);
    return false;
}

static void on_accept(uv_poll_t *h, int status, int events)
{
    struct sp_listener *l = sp_container_of(h, struct sp_listener, poll);
    (void)events;
    if (status < 0) {
        sp_log_error("listener %s: poll: %s", l->conf->name, uv_strerror(status));
        return;
    }
    for (int i = 0; i < ACCEPT_BATCH && l->fd != -1; i++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            int err = errno;
            if (err == EAGAIN || err == EINTR)
                return;
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
                fd_exhausted(l, -err);
                return;
            }
            continue; /* ECONNABORTED and the like cost only that connection */
        }
        if (!admit(l)) {
            close(fd);
            atomic_fetch_add_explicit(&l->stats->rejected, 1, memory_order_relaxed);
            sp_log_debug("listener %s: over max_connections (%u), closed a new connection",
                         l->conf->name, l->conf->max_connections);
            continue;
        }
        atomic_fetch_add_explicit(&l->stats->accepted, 1, memory_order_relaxed);
        sp_session_start(l, fd, (struct sockaddr *)&peer, len);
    }
}

int sp_listener_start(struct sp_listener *l)
{
    uv_loop_t *loop = &l->worker->loop;
    int rc = uv_poll_init(loop, &l->poll, l->fd);
    if (rc != 0)
        return rc;
    uv_timer_init(loop, &l->pause);
    l->handles_live = true;
    return uv_poll_start(&l->poll, UV_READABLE, on_accept);
}

void sp_listener_close(struct sp_listener *l)
{
    if (l->handles_live) {
        uv_close((uv_handle_t *)&l->poll, NULL);
        uv_close((uv_handle_t *)&l->pause, NULL);
        l->handles_live = false;
    }
    /* After uv_close the fd is out of epoll, so closing it now cannot confuse the loop. */
    sp_listener_unbind(l);
}
