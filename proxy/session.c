/* session.c: one proxied connection.
 *
 *   accept --> CONNECTING --(connected)--> RELAYING --(both FINs passed on)--> CLOSING --> freed
 *                 |   ^                        |
 *   refused/timeout   | next server            +--(reset, error, idle_timeout, abort)--> CLOSING
 *                 v   |   (up to `retries`)
 *              (old socket's poll handle closes, then connect_next)
 *
 * While RELAYING, what each socket is polled for is a pure function of the two relay
 * directions (wanted_events), and libuv is told only when that changes: every uv_poll_start
 * costs two epoll_ctl calls. A source whose pipe holds undelivered bytes is not polled for
 * reads, which is both the backpressure and what keeps level-triggered polling from spinning.
 *
 * A listener with accept_proxy_protocol or SNI routes first INSPECTS the client: it reads the
 * PROXY header (the real client address then stands in for the peer in allow/deny, hashing,
 * logs and the header we pass on) and peeks the TLS ClientHello to pick the upstream, both
 * within their timeouts; then it connects as above.
 *
 * Poll handles come from the worker (sp_worker_poll_get/put), which keeps them per descriptor
 * number after a socket closes, so a session pays uv_poll_init's syscalls only for numbers the
 * worker has not seen. The session itself is freed from its timer's close callback. */
#include "session.h"

#include "accesslog.h"
#include "balancer.h"
#include "inspect.h"
#include "listener.h"
#include "log.h"
#include "relay.h"
#include "sock.h"
#include "worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

enum { CLI = 0, UPS = 1 };

enum sess_state {
    S_INSPECTING = 1,
    S_CONNECTING,
    S_RELAYING,
    S_CLOSING,
};

/* Close flags: which side gets a reset rather than a FIN. */
enum { RESET_CLI = 1, RESET_UPS = 2 };

struct sp_session {
    struct sp_worker *worker;     /* borrowed */
    struct sp_listener *listener; /* borrowed; outlives us (sp_listener_session_done) */
    struct sp_wgen *gen;          /* borrowed; outlives us (sp_worker_session_closed) */
    /* What the session started with, from gen's runtime: a reload does not change them. */
    const struct sp_listener_conf *lconf;
    struct sp_listener_stats *stats;
    struct sp_upstream *upstream;
    struct sp_balancer *balancer;
    struct sp_server *server;       /* borrowed from the runtime; the current or chosen server */
    struct sp_session *prev, *next; /* the worker's list of open sessions */
    uv_poll_t *poll[2];             /* lent by the worker while fd[i] is open; NULL otherwise */
    uv_timer_t timer; /* connect_timeout while CONNECTING, idle_timeout while RELAYING */
    int fd[2];        /* owned; -1 once closed */
    int events[2];    /* interest libuv has now for each side */
    uint8_t state;
    bool counted_on_server; /* server->active holds this session */
    int8_t first_eof;       /* the side whose EOF came first, -1 before any */
    unsigned attempts;
    struct sp_tried tried;
    uint64_t last_io_ms;
    uint64_t start_ms;
    struct sp_relay_dir dir[2]; /* dir[CLI]: client -> upstream, dir[UPS]: upstream -> client */
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } peer; /* the client: the socket's peer, or the PROXY header's source */
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } local; /* with has_local: the PROXY header's destination */
    bool has_local;
    struct sp_pp_reader *ppr; /* owned while reading a PROXY header */
    uint64_t inspect_deadline_ms;
};

static void connect_next(struct sp_session *s);
static void on_inspect(uv_poll_t *h, int status, int events);
static void session_close(struct sp_session *s, int reset, enum sp_end end);

static uint64_t now_ms(const struct sp_session *s)
{
    return uv_now(&s->worker->loop);
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

/* ---- relaying ---------------------------------------------------------------------------- */

static int wanted_events(const struct sp_session *s, int side)
{
    const struct sp_relay_dir *in = &s->dir[side];      /* reads from this side */
    const struct sp_relay_dir *out = &s->dir[side ^ 1]; /* writes to this side */
    int ev = 0;
    if (!in->src_eof && in->pending == 0)
        ev |= UV_READABLE;
    if (out->pending > 0)
        ev |= UV_WRITABLE;
    return ev;
}

static void on_io(uv_poll_t *h, int status, int events);

static void apply_events(struct sp_session *s, int side, int ev)
{
    if (ev == s->events[side])
        return;
    s->events[side] = ev;
    if (ev == 0)
        uv_poll_stop(s->poll[side]);
    else
        uv_poll_start(s->poll[side], ev, s->state == S_INSPECTING ? on_inspect : on_io);
}

/* A direction failed on one socket: that socket is dead, so the other side is reset, which is
 * how an abort travels through a TCP proxy. */
static void dir_failed(struct sp_session *s, int d)
{
    const struct sp_relay_dir *dir = &s->dir[d];
    int failed_side = dir->err_on_dst ? (d ^ 1) : d;
    sp_log_debug("session %p: %s side: %s", (void *)s, failed_side == CLI ? "client" : "upstream",
                 uv_strerror(dir->err));
    if (failed_side == CLI)
        session_close(s, RESET_UPS, SP_END_CLIENT_RESET);
    else
        session_close(s, RESET_CLI, SP_END_UPSTREAM_RESET);
}

/* Runs one direction and accounts what it delivered. False when the session has closed. */
static bool pump(struct sp_session *s, int d)
{
    struct sp_relay_dir *dir = &s->dir[d];
    uint64_t before = dir->bytes;
    enum sp_relay_status st = sp_relay_pump(dir, &s->worker->relay);
    SP_STAT_ADD(s->stats->bytes[s->worker->id].v[d], dir->bytes - before);
    if (dir->src_eof && s->first_eof < 0)
        s->first_eof = (int8_t)d;
    if (st != SP_RELAY_ERROR)
        return true;
    dir_failed(s, d);
    return false;
}

static void on_io(uv_poll_t *h, int status, int events)
{
    struct sp_session *s = h->data;
    int side = h == s->poll[UPS] ? UPS : CLI;

    if (status < 0) {
        /* POLLERR: libuv has stopped the handle; the socket error says what happened. */
        int err = sp_sock_error(s->fd[side]);
        s->events[side] = 0;
        sp_log_debug("session %p: %s side error: %s", (void *)s,
                     side == CLI ? "client" : "upstream", uv_strerror(err != 0 ? err : status));
        if (side == CLI)
            session_close(s, RESET_UPS, SP_END_CLIENT_RESET);
        else
            session_close(s, RESET_CLI, SP_END_UPSTREAM_RESET);
        return;
    }
    s->last_io_ms = now_ms(s);

    if ((events & UV_READABLE) && !pump(s, side))
        return;
    if ((events & UV_WRITABLE) && !pump(s, side ^ 1))
        return;
    if (sp_relay_done(&s->dir[CLI]) && sp_relay_done(&s->dir[UPS])) {
        session_close(s, 0, s->first_eof == UPS ? SP_END_UPSTREAM_FIN : SP_END_CLIENT_FIN);
        return;
    }
    apply_events(s, CLI, wanted_events(s, CLI));
    apply_events(s, UPS, wanted_events(s, UPS));
}

static void on_idle_timer(uv_timer_t *t)
{
    struct sp_session *s = t->data;
    uint64_t idle = s->lconf->idle_timeout_ms;
    uint64_t quiet = now_ms(s) - s->last_io_ms;
    /* The deadline moves with traffic without touching the timer per chunk: on expiry, re-arm
     * for what is left unless the connection really was quiet the whole time. */
    if (quiet < idle) {
        uv_timer_start(&s->timer, on_idle_timer, idle - quiet, 0);
        return;
    }
    sp_log_debug("session %p: idle for %llu ms, closing", (void *)s, (unsigned long long)quiet);
    session_close(s, 0, SP_END_IDLE_TIMEOUT);
}

static int poll_init(struct sp_session *s, int side)
{
    int rc = sp_worker_poll_get(s->worker, s->fd[side], &s->poll[side]);
    if (rc != 0)
        return rc;
    s->poll[side]->data = s;
    s->events[side] = 0;
    return 0;
}

/* relay: auto copies between two loopback ends: there the final reader copies the bytes out
 * anyway, and moving page references through a pipe costs the machine more than the copy it
 * saves (bench/RESULTS.md has the figures). Elsewhere it adapts per direction. */
static enum sp_relay_policy relay_policy(const struct sp_session *s)
{
    switch (s->lconf->relay) {
    case SP_RELAY_COPY:
        return SP_POLICY_COPY;
    case SP_RELAY_AUTO:
        if (sp_sock_is_loopback(&s->peer.sa) &&
            sp_sock_is_loopback((const struct sockaddr *)&s->server->conf->addr))
            return SP_POLICY_COPY;
        return SP_POLICY_ADAPTIVE;
    default:
        return SP_POLICY_SPLICE;
    }
}

/* The PROXY header for the server: the client (as the peer, or as a PROXY header in front of
 * us said) and the address it connected to. A fresh socket's buffer always has room for it. */
static int send_proxy_header(struct sp_session *s)
{
    struct sockaddr_storage local;
    socklen_t len = sizeof(local);
    const struct sockaddr *dst = &s->local.sa;
    if (!s->has_local) {
        dst = getsockname(s->fd[CLI], (struct sockaddr *)&local, &len) == 0
                  ? (const struct sockaddr *)&local
                  : NULL;
    }
    char hdr[SP_PP_ENCODE_MAX];
    int version = s->upstream->conf->proxy_protocol == SP_PP_SEND_V1 ? 1 : 2;
    int n = sp_pp_encode(version, &s->peer.sa, dst, hdr, sizeof(hdr));
    if (n < 0)
        return n;
    ssize_t sent = send(s->fd[UPS], hdr, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    return sent == n ? 0 : -EIO;
}

static void established(struct sp_session *s)
{
    sp_server_connect_ok(s->server, now_ms(s));

    int rc = s->poll[CLI] != NULL ? 0 : poll_init(s, CLI);
    if (rc == 0 && s->poll[UPS] == NULL)
        rc = poll_init(s, UPS);
    if (rc != 0) {
        sp_log_warn("session: cannot poll sockets: %s", uv_strerror(rc));
        session_close(s, RESET_CLI | RESET_UPS, SP_END_LOCAL_ERROR);
        return;
    }
    if (s->upstream->conf->proxy_protocol != SP_PP_SEND_OFF && send_proxy_header(s) != 0) {
        session_close(s, RESET_CLI | RESET_UPS, SP_END_UPSTREAM_RESET);
        return;
    }
    enum sp_relay_policy policy = relay_policy(s);
    sp_relay_dir_init(&s->dir[CLI], s->fd[CLI], s->fd[UPS], policy);
    sp_relay_dir_init(&s->dir[UPS], s->fd[UPS], s->fd[CLI], policy);
    s->state = S_RELAYING;
    s->last_io_ms = now_ms(s);

    /* The upstream handle still carries the connect callback: force a restart. */
    s->events[UPS] = -1;
    apply_events(s, CLI, wanted_events(s, CLI));
    apply_events(s, UPS, wanted_events(s, UPS));

    uint64_t idle = s->lconf->idle_timeout_ms;
    if (idle > 0)
        uv_timer_start(&s->timer, on_idle_timer, idle, 0);
    else
        uv_timer_stop(&s->timer);
}

/* ---- connecting -------------------------------------------------------------------------- */

/* Failures of our own making say nothing about the server. */
static bool local_error(int err)
{
    return err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM ||
           err == -EADDRNOTAVAIL;
}

/* A connect in progress counts as active on its server, so least_conn and random_two see a
 * burst of new connections as load before they are established. */
static void hold_server(struct sp_session *s, struct sp_server *srv)
{
    s->server = srv;
    atomic_fetch_add_explicit(&srv->active, 1, memory_order_relaxed);
    s->counted_on_server = true;
}

static void release_server(struct sp_session *s)
{
    if (s->counted_on_server) {
        atomic_fetch_sub_explicit(&s->server->active, 1, memory_order_relaxed);
        s->counted_on_server = false;
    }
}

static void attempt_failed(struct sp_session *s, int err)
{
    release_server(s);
    sp_server_connect_failed(s->server, now_ms(s));
    sp_log_warn("upstream %s: connect to %s: %s", s->upstream->conf->name, s->server->name,
                uv_strerror(err));
}

static void on_connect(uv_poll_t *h, int status, int events);
static void close_side(struct sp_session *s, int side, bool reset);

/* Gives up on the current attempt and moves on to the next server. */
static void retry_later(struct sp_session *s, int err)
{
    uv_timer_stop(&s->timer);
    attempt_failed(s, err);
    close_side(s, UPS, false);
    connect_next(s);
}

static void on_connect_timer(uv_timer_t *t)
{
    retry_later(t->data, UV_ETIMEDOUT);
}

static void on_connect(uv_poll_t *h, int status, int events)
{
    struct sp_session *s = h->data;
    (void)events;
    int err = sp_sock_error(s->fd[UPS]);
    if (err == 0 && status < 0)
        err = UV_ECONNREFUSED;
    if (err == 0)
        established(s);
    else
        retry_later(s, err);
}

/* Starts a connect to `srv`. Returns 0 when under way or done, or -errno at once. */
static int start_connect(struct sp_session *s, struct sp_server *srv)
{
    int fd;
    int rc = sp_sock_connect((const struct sockaddr *)&srv->conf->addr, srv->conf->addrlen, &fd);
    if (rc != 0 && rc != -EINPROGRESS)
        return rc;
    s->fd[UPS] = fd;
    hold_server(s, srv);
    if (rc == 0) {
        established(s);
        return 0;
    }
    int prc = poll_init(s, UPS);
    if (prc != 0) {
        release_server(s);
        close(fd);
        s->fd[UPS] = -1;
        return prc;
    }
    uv_poll_start(s->poll[UPS], UV_WRITABLE, on_connect);
    s->events[UPS] = UV_WRITABLE;
    uv_timer_start(&s->timer, on_connect_timer, s->lconf->connect_timeout_ms, 0);
    return 0;
}

static void connect_next(struct sp_session *s)
{
    const struct sp_upstream_conf *uc = s->upstream->conf;
    enum sp_end end = SP_END_CONNECT_FAILED;
    while (s->attempts <= uc->retries) {
        struct sp_server *srv = sp_balancer_pick(s->balancer, &s->tried, &s->peer.sa, now_ms(s));
        if (srv == NULL) {
            /* Per connection, so debug: an outage would otherwise flood the log. */
            sp_log_debug("upstream %s: no server available", uc->name);
            if (s->attempts == 0)
                end = SP_END_NO_SERVER;
            break;
        }
        sp_tried_add(&s->tried, srv->index);
        s->attempts++;
        int rc = start_connect(s, srv);
        if (rc == 0)
            return;
        if (local_error(rc)) {
            unsigned held;
            if (sp_ratelimit_pass(&s->worker->local_error_log, now_ms(s), 1000, &held))
                sp_log_warn("upstream %s: no socket for a connect to %s: %s (client closed; "
                            "%u more like this in the last second)",
                            uc->name, srv->name, uv_strerror(rc), held);
            end = SP_END_LOCAL_ERROR;
            break;
        }
        s->server = srv;
        attempt_failed(s, rc);
    }
    session_close(s, 0, end);
}

/* ---- inspecting ------------------------------------------------------------------------- */

/* allow/deny on the client address; a refused client is closed before any server is asked. */
static bool admitted(struct sp_session *s)
{
    if (sp_cidr_allowed(&s->lconf->allow, &s->lconf->deny, &s->peer.sa))
        return true;
    atomic_fetch_add_explicit(&s->stats->denied, 1, memory_order_relaxed);
    session_close(s, 0, SP_END_DENIED);
    return false;
}

static void on_inspect_timer(uv_timer_t *t);

static void inspect_failed(struct sp_session *s, enum sp_inspect_status st)
{
    if (st == SP_INSPECT_MALFORMED) {
        atomic_fetch_add_explicit(&s->stats->malformed, 1, memory_order_relaxed);
        session_close(s, RESET_CLI, SP_END_BAD_HEADER);
    } else {
        session_close(s, 0, st == SP_INSPECT_EOF ? SP_END_CLIENT_FIN : SP_END_CLIENT_RESET);
    }
}

/* The PROXY header: returns true once it has been read (and the client admitted). */
static bool read_proxy_header(struct sp_session *s)
{
    int err = 0;
    enum sp_inspect_status st = sp_pp_read(s->fd[CLI], s->ppr, &err);
    if (st == SP_INSPECT_WAIT)
        return false;
    if (st != SP_INSPECT_DONE) {
        inspect_failed(s, st);
        return false;
    }
    const struct sp_pp_result *r = &s->ppr->result;
    if (r->has_addr) {
        memcpy(&s->peer, &r->src, sizeof(s->peer));
        memcpy(&s->local, &r->dst, sizeof(s->local));
        s->has_local = true;
    }
    free(s->ppr);
    s->ppr = NULL;
    if (!admitted(s))
        return false;
    if (s->lconf->nroutes > 0) {
        s->inspect_deadline_ms = now_ms(s) + s->lconf->tls_inspect_timeout_ms;
        uv_timer_start(&s->timer, on_inspect_timer, s->lconf->tls_inspect_timeout_ms, 0);
    }
    return true;
}

/* The ClientHello: returns true once the upstream has been chosen. */
static bool route_by_sni(struct sp_session *s)
{
    char name[SP_SNI_NAME_MAX];
    int found = 0, err = 0;
    enum sp_inspect_status st = sp_sni_peek(s->fd[CLI], s->worker->scratch, name, &found, &err);
    if (st == SP_INSPECT_WAIT) {
        apply_events(s, CLI, UV_READABLE);
        return false;
    }
    if (st == SP_INSPECT_RETRY) {
        /* Part of a ClientHello sits in the socket: polling would report it at once, again and
         * again, so look again shortly instead. */
        enum { RETRY_MS = 5 };
        uint64_t left = s->inspect_deadline_ms - SP_MIN(now_ms(s), s->inspect_deadline_ms);
        apply_events(s, CLI, 0);
        uv_timer_start(&s->timer, on_inspect_timer, SP_MIN(left, RETRY_MS), 0);
        return false;
    }
    if (st != SP_INSPECT_DONE) {
        inspect_failed(s, st);
        return false;
    }
    int route = found ? sp_sni_routes_match(&s->lconf->sni_routes, name) : -1;
    if (route >= 0) {
        const struct sp_config *cfg = s->gen->rt->cfg;
        size_t i = (size_t)(s->lconf->routes[route].upstream - cfg->upstreams);
        s->upstream = &s->gen->rt->upstreams[i];
        s->balancer = &s->gen->balancers[i];
    }
    return true;
}

static void inspect_step(struct sp_session *s)
{
    if (s->ppr != NULL && !read_proxy_header(s))
        return;
    if (s->lconf->nroutes > 0 && !route_by_sni(s))
        return;
    apply_events(s, CLI, 0); /* the client waits, unread, until the server answers */
    uv_timer_stop(&s->timer);
    s->state = S_CONNECTING;
    connect_next(s);
}

static void on_inspect(uv_poll_t *h, int status, int events)
{
    struct sp_session *s = h->data;
    (void)events;
    if (status < 0) {
        s->events[CLI] = 0;
        session_close(s, 0, SP_END_CLIENT_RESET);
        return;
    }
    inspect_step(s);
}

static void on_inspect_timer(uv_timer_t *t)
{
    struct sp_session *s = t->data;
    if (now_ms(s) >= s->inspect_deadline_ms) {
        sp_log_debug("session %p: %s not complete in time", (void *)s,
                     s->ppr != NULL ? "PROXY header" : "TLS ClientHello");
        session_close(s, 0, SP_END_INSPECT_TIMEOUT);
        return;
    }
    inspect_step(s);
}

/* Reads what comes before the stream, then connects. */
static void start_inspecting(struct sp_session *s)
{
    const struct sp_listener_conf *lc = s->lconf;
    /* Without a PROXY header the socket's peer is the client: filter it before reading. */
    if (!lc->accept_proxy_protocol && !admitted(s))
        return;
    s->state = S_INSPECTING;
    if (lc->accept_proxy_protocol) {
        s->ppr = calloc(1, sizeof(*s->ppr));
        if (s->ppr == NULL) {
            session_close(s, RESET_CLI, SP_END_LOCAL_ERROR);
            return;
        }
    }
    int rc = poll_init(s, CLI);
    if (rc != 0) {
        session_close(s, RESET_CLI, SP_END_LOCAL_ERROR);
        return;
    }
    uint64_t timeout =
        lc->accept_proxy_protocol ? lc->proxy_protocol_timeout_ms : lc->tls_inspect_timeout_ms;
    s->inspect_deadline_ms = now_ms(s) + timeout;
    uv_timer_start(&s->timer, on_inspect_timer, timeout, 0);
    apply_events(s, CLI, UV_READABLE);
}

/* ---- life cycle -------------------------------------------------------------------------- */

void sp_session_start(struct sp_listener *l, int fd, const struct sockaddr *peer, socklen_t len)
{
    struct sp_worker *w = l->worker;
    struct sp_session *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        close(fd);
        atomic_fetch_sub_explicit(&l->stats->active, 1, memory_order_relaxed);
        sp_listener_session_done(l);
        return;
    }
    s->worker = w;
    s->listener = l;
    s->gen = l->gen;
    s->lconf = l->conf;
    s->stats = l->stats;
    s->upstream = l->upstream;
    s->balancer = l->balancer;
    s->gen->nsessions++;
    s->fd[CLI] = fd;
    s->fd[UPS] = -1;
    s->state = S_CONNECTING;
    s->first_eof = -1;
    s->start_ms = uv_now(&w->loop);
    if (len <= sizeof(s->peer))
        memcpy(&s->peer, peer, len);
    sp_tried_init(&s->tried);
    sp_relay_dir_init(&s->dir[CLI], -1, -1, SP_POLICY_SPLICE);
    sp_relay_dir_init(&s->dir[UPS], -1, -1, SP_POLICY_SPLICE);
    uv_timer_init(&w->loop, &s->timer);
    s->timer.data = s;

    s->next = w->sessions;
    if (w->sessions != NULL)
        w->sessions->prev = s;
    w->sessions = s;
    w->nsessions++;

    if (l->conf->accept_proxy_protocol || l->conf->nroutes > 0)
        start_inspecting(s);
    else if (admitted(s))
        connect_next(s);
}

static void close_side(struct sp_session *s, int side, bool reset)
{
    if (s->poll[side] != NULL) {
        /* Stopped before the close: libuv then holds no event of this descriptor. */
        sp_worker_poll_put(s->worker, s->poll[side]);
        s->poll[side] = NULL;
        s->events[side] = 0;
    }
    if (s->fd[side] != -1) {
        if (reset)
            sp_sock_close_reset(s->fd[side]);
        else
            close(s->fd[side]);
        s->fd[side] = -1;
    }
}

static void log_access(struct sp_session *s, enum sp_end end)
{
    const struct sp_config *cfg = s->gen->rt->cfg;
    if (!cfg->access_log.enabled)
        return;
    struct sp_access_entry e = {
        .listener = s->lconf->name,
        .client = &s->peer.sa,
        .upstream = s->upstream->conf->name,
        .server = s->server != NULL ? s->server->name : NULL,
        .bytes_up = s->dir[CLI].bytes,
        .bytes_down = s->dir[UPS].bytes,
        .duration_ms = now_ms(s) - s->start_ms,
        .attempts = s->attempts,
        .end = end,
    };
    sp_worker_access_log(s->worker, &e, cfg->access_log.format);
}

static void session_close(struct sp_session *s, int reset, enum sp_end end)
{
    if (s->state == S_CLOSING)
        return;
    s->state = S_CLOSING;
    struct sp_worker *w = s->worker;
    log_access(s, end);
    free(s->ppr);
    s->ppr = NULL;

    sp_relay_dir_release(&s->dir[CLI], &w->relay);
    sp_relay_dir_release(&s->dir[UPS], &w->relay);
    close_side(s, CLI, reset & RESET_CLI);
    close_side(s, UPS, reset & RESET_UPS);
    uv_close((uv_handle_t *)&s->timer, on_timer_closed); /* frees the session */

    atomic_fetch_sub_explicit(&s->stats->active, 1, memory_order_relaxed);
    release_server(s);

    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        w->sessions = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    w->nsessions--;
    sp_listener_session_done(s->listener);
    sp_worker_session_closed(w, s->gen);
}

void sp_session_abort(struct sp_session *s)
{
    session_close(s, RESET_CLI | RESET_UPS, SP_END_SHUTDOWN);
}
