/* listener.c: accepting connections for one worker. Each worker binds its own socket with
 * SO_REUSEPORT, so the kernel spreads new connections and no accept lock is needed. */
#include "listener.h"

#include "cidr.h"
#include "log.h"
#include "session.h"
#include "sock.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Accepts per readiness event: enough to drain a burst, few enough to keep relaying fair. */
#define ACCEPT_BATCH 64
/* How long accepting pauses when the process or system is out of file descriptors. */
#define FD_PAUSE_MS 100

int sp_listener_bind(const struct sp_listener_conf *conf)
{
    int fd = sp_sock_listen((const struct sockaddr *)&conf->addr, conf->addrlen, (int)conf->backlog,
                            true);
    if (fd < 0)
        sp_log_error("listener %s: cannot listen on %s: %s", conf->name, conf->listen,
                     uv_strerror(fd));
    return fd;
}

bool sp_listener_same_addr(const struct sp_listener_conf *a, const struct sp_listener_conf *b)
{
    return sp_sock_addr_equal((const struct sockaddr *)&a->addr, (const struct sockaddr *)&b->addr);
}

static void maybe_free(struct sp_listener *l)
{
    if (l->retired && l->nsessions == 0 && l->closes_pending == 0)
        free(l);
}

static void on_closed(uv_handle_t *h)
{
    struct sp_listener *l = h->data;
    l->closes_pending--;
    maybe_free(l);
}

bool sp_listener_admit_source(struct sp_listener *l, const struct sp_listener_conf *lc,
                              struct sp_listener_stats *stats, struct sp_srclimit *tab,
                              const struct sockaddr *client, struct sp_srclimit_hold *hold)
{
    *hold = (struct sp_srclimit_hold){0};
    if (tab == NULL)
        return true;
    uint64_t now = uv_now(&l->worker->loop);
    enum sp_srclimit_verdict v = sp_srclimit_acquire(tab, &lc->limits, client, now, hold);
    if (v == SP_SRCLIMIT_OK)
        return true;
    char addr[SP_ADDRSTRLEN], who[SP_SRCLIMIT_STR_MAX];
    unsigned held;
    if (v == SP_SRCLIMIT_UNTRACKED) {
        atomic_fetch_add_explicit(&stats->src_untracked, 1, memory_order_relaxed);
        if (sp_ratelimit_pass(&l->untracked_log, now, 1000, &held))
            sp_log_warn("listener %s: the per-source table (%u entries) has no room for %s: its "
                        "connection goes on without per-source limits (%u more like this in the "
                        "last second)",
                        lc->name, sp_srclimit_size(tab),
                        sp_srclimit_client_str(tab, client, who, sizeof(who)), held);
        return true;
    }
    atomic_fetch_add_explicit(v == SP_SRCLIMIT_OVER_CONN ? &stats->over_src_conn
                                                         : &stats->over_src_rate,
                              1, memory_order_relaxed);
    if (sp_ratelimit_pass(&l->limit_log, now, 1000, &held)) {
        char limit[32];
        if (v == SP_SRCLIMIT_OVER_CONN)
            snprintf(limit, sizeof(limit), "%u open", lc->limits.per_source_connections);
        else
            snprintf(limit, sizeof(limit), "%u/%s", lc->limits.rate,
                     lc->limits.rate_period_ms == 1000 ? "s" : "m");
        sp_log_warn("listener %s: refused a connection from %s: client %s is over %s (%s) (%u "
                    "more like this in the last second)",
                    lc->name, sp_sock_addr_str(client, addr, sizeof(addr)),
                    sp_srclimit_client_str(tab, client, who, sizeof(who)),
                    sp_srclimit_verdict_name(v), limit, held);
    }
    return false;
}

/* Per-source limits on the socket's peer, before a session exists. A listener that reads PROXY
 * headers checks the header's client in the session instead; a client that allow/deny refuses
 * is left to the session to refuse, so that it takes no token. False when fd was closed. */
static bool source_ok(struct sp_listener *l, int fd, const struct sockaddr *peer,
                      struct sp_srclimit_hold *hold)
{
    struct sp_srclimit *tab = sp_runtime_srclimit(l->gen->rt, l->conf);
    *hold = (struct sp_srclimit_hold){0};
    if (tab == NULL || l->conf->accept_proxy_protocol ||
        !sp_cidr_allowed(&l->conf->allow, &l->conf->deny, peer))
        return true;
    if (sp_listener_admit_source(l, l->conf, l->stats, tab, peer, hold))
        return true;
    close(fd);
    atomic_fetch_sub_explicit(&l->stats->active, 1, memory_order_relaxed);
    return false;
}

static void on_accept(uv_poll_t *h, int status, int events);

static void resume(uv_timer_t *t)
{
    struct sp_listener *l = t->data;
    if (!l->retired)
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
            atomic_fetch_add_explicit(&l->stats->fd_exhausted, 1, memory_order_relaxed);
        }
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    sp_log_warn("listener %s: %s; refusing new connections for %d ms", l->conf->name,
                uv_strerror(err), FD_PAUSE_MS);
    uv_poll_stop(&l->poll);
    uv_timer_start(&l->pause, resume, FD_PAUSE_MS, 0);
}

/* With accept_proxy_protocol, only the load balancers in proxy_protocol_from may speak first:
 * anyone else could write a header that picks its own address for allow/deny, source_hash and
 * the logs. Such a peer is closed before a byte is read or a server is asked, and does not
 * take a max_connections slot. Returns true when `fd` was closed. On a unix: listener the
 * socket file's permissions decide who may connect, and so who may send a header. */
static bool untrusted(struct sp_listener *l, int fd, const struct sockaddr *peer)
{
    if (!l->conf->accept_proxy_protocol || sp_cidr_match(&l->conf->proxy_from, peer) ||
        peer->sa_family == AF_UNIX)
        return false;
    close(fd);
    atomic_fetch_add_explicit(&l->stats->untrusted, 1, memory_order_relaxed);
    unsigned held;
    if (sp_ratelimit_pass(&l->untrusted_log, uv_now(&l->worker->loop), 1000, &held)) {
        char addr[SP_ADDRSTRLEN];
        sp_log_warn("listener %s: closed a connection from %s, which is not in "
                    "proxy_protocol_from (%u more like this in the last second)",
                    l->conf->name, sp_sock_addr_str(peer, addr, sizeof(addr)), held);
    }
    return true;
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
    struct sp_listener *l = h->data;
    (void)events;
    if (status < 0) {
        sp_log_error("listener %s: poll: %s", l->conf->name, uv_strerror(status));
        return;
    }
    for (int i = 0; i < ACCEPT_BATCH && !l->retired; i++) {
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
        if (untrusted(l, fd, (struct sockaddr *)&peer))
            continue;
        if (!admit(l)) {
            close(fd);
            atomic_fetch_add_explicit(&l->stats->over_max, 1, memory_order_relaxed);
            sp_log_debug("listener %s: over max_connections (%u), closed a new connection",
                         l->conf->name, l->conf->max_connections);
            continue;
        }
        struct sp_srclimit_hold src;
        if (!source_ok(l, fd, (struct sockaddr *)&peer, &src))
            continue;
        atomic_fetch_add_explicit(&l->stats->accepted, 1, memory_order_relaxed);
        SP_STAT_ADD(l->worker->accepted, 1);
        l->nsessions++;
        sp_session_start(l, fd, (struct sockaddr *)&peer, len, &src);
    }
}

struct sp_listener *sp_listener_start(struct sp_worker *w, int fd)
{
    struct sp_listener *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        close(fd);
        return NULL;
    }
    l->worker = w;
    l->fd = fd;
    int rc = uv_poll_init(&w->loop, &l->poll, fd);
    if (rc != 0) {
        sp_log_error("listener: cannot poll: %s", uv_strerror(rc));
        close(fd);
        free(l);
        return NULL;
    }
    l->poll.data = l;
    uv_timer_init(&w->loop, &l->pause);
    l->pause.data = l;
    uv_poll_start(&l->poll, UV_READABLE, on_accept);
    return l;
}

void sp_listener_retarget(struct sp_listener *l, struct sp_wgen *gen,
                          const struct sp_listener_conf *conf, struct sp_listener_stats *stats,
                          struct sp_upstream *up, struct sp_balancer *bal)
{
    l->gen = gen;
    l->conf = conf;
    l->stats = stats;
    l->upstream = up;
    l->balancer = bal;
}

void sp_listener_retire(struct sp_listener *l)
{
    if (l->retired)
        return;
    l->retired = true;
    l->closes_pending = 2;
    uv_close((uv_handle_t *)&l->poll, on_closed);
    uv_close((uv_handle_t *)&l->pause, on_closed);
    /* uv_close has taken the fd out of epoll, so closing it now cannot confuse the loop. */
    close(l->fd);
    l->fd = -1;
}

void sp_listener_session_done(struct sp_listener *l)
{
    l->nsessions--;
    maybe_free(l);
}
