/* session.c: one proxied connection.
 *
 *   accept --> CONNECTING --(connected)--> RELAYING --(both ends passed on)--> CLOSING --> freed
 *                 |   ^                        |
 *   refused/timeout   | next server            +--(a side failed, once everything it sent has
 *                 v   |   (up to `retries`)    |   been delivered; idle_timeout; abort)--> CLOSING
 *              (close that socket, connect_next)
 *
 * Both sockets sit in the worker's edge-triggered epoll set (poller.h) from the moment they
 * exist: the client's from accept, the server's from connect(). Each event only updates what
 * the session knows of that socket (flow.h: may read, may write, hang-up, failed), and the
 * state's step function then does whatever that allows, until nothing more can be done. While
 * RELAYING, flow.h's pure sp_flow_next decides every step: which direction to pump, when to pass
 * a FIN on, when to end. A source whose pipe holds undelivered bytes is not read until the pipe
 * drains (backpressure), and resumes by itself when it does.
 *
 * Ends: when both directions have passed their FIN on, the sockets are closed (a close() sends
 * the last FIN, so no shutdown is spent on it). When a side fails (a reset), whatever it sent
 * before the failure is still delivered; then the other side gets a reset too, as it would on
 * a direct connection, unless bytes are still in flight to it (unacknowledged in its socket):
 * a reset would destroy them, so it gets a FIN after them instead.
 *
 * A listener with accept_proxy_protocol or SNI routes first INSPECTS the client: it reads the
 * PROXY header (the real client address then stands in for the peer in allow/deny, hashing,
 * logs and the header we pass on) and peeks the TLS ClientHello to pick the upstream, both
 * within their timeouts; then it connects as above. A partial ClientHello sets SO_RCVLOWAT to
 * the bytes its records announce, so the kernel wakes us once when they are all there.
 *
 * The session is freed from its timer's close callback, after the poller's batch that may still
 * name it (poller.h). */
#include "session.h"

#include "accesslog.h"
#include "balancer.h"
#include "flow.h"
#include "inspect.h"
#include "listener.h"
#include "log.h"
#include "relay.h"
#include "sock.h"
#include "worker.h"

#include <errno.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <uv.h>

enum { CLI = 0, UPS = 1 };

enum sess_state {
    S_INSPECTING = 1,
    S_CONNECTING,
    S_RELAYING,
    S_LINGERING, /* one side failed; the other is owed bytes in flight (abort_from) */
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
    struct sp_poller_link defer;    /* queued in the worker's poller after a yield */
    /* borrowed: this worker's slot of server's byte counters, from established() on */
    struct sp_server_bytes *server_bytes;
    uv_timer_t timer;       /* inspect or connect timeout, then idle_timeout while RELAYING */
    int fd[2];              /* owned; -1 once closed; both in the worker's epoll set while open */
    struct sp_side side[2]; /* what the kernel last said of each socket */
    bool input_off[2];      /* EPOLLIN left out of the socket's events (sp_flow_wants_input) */
    uint8_t state;
    bool lowat;         /* SO_RCVLOWAT raised on the client for a partial ClientHello */
    int8_t linger_side; /* S_LINGERING: the side still open */
    uint8_t linger_end; /* S_LINGERING: enum sp_end to log when it closes */
    uint64_t linger_until_ms;
    bool counted_on_server; /* server->active holds this session */
    int8_t first_eof;       /* the side whose EOF came first, -1 before any */
    unsigned attempts;
    struct sp_tried tried;
    uint64_t last_io_ms;
    uint64_t start_ms;
    uint64_t shed_due_ms; /* on_server_down: when worker_shed.c resets it; 0 = not scheduled */
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
    struct sp_pp_reader *ppr;    /* owned while reading a PROXY header */
    struct sp_srclimit_hold src; /* the client's count in its listener's per-source table */
};

static void connect_next(struct sp_session *s);
static void session_close(struct sp_session *s, int reset, enum sp_end end);
static void close_side(struct sp_session *s, int side, bool reset);

static uint64_t now_ms(const struct sp_session *s)
{
    return uv_now(&s->worker->loop);
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

/* ---- relaying ---------------------------------------------------------------------------- */

/* Bytes sent on fd and not yet acknowledged by the peer, or -1 when unknown. */
static int unacked(int fd)
{
    int n;
    return ioctl(fd, SIOCOUTQ, &n) == 0 ? n : -1;
}

/* How long a side owed bytes in flight is waited for after the other side failed, at most, and
 * how often its acknowledgements are looked at meanwhile (the kernel has no event for "all
 * acknowledged"). */
#define LINGER_MAX_MS  30000
#define LINGER_TICK_MS 50

/* Reads and throws away what the peer of fd sent and nobody will take, a bounded amount at a
 * time. Returns 0 once fd is found empty, 1 when its FIN has been read, -errno when it failed,
 * or -EINPROGRESS when the bound was reached first. */
static int discard_input(struct sp_session *s, int fd)
{
    for (int i = 0; i < 16; i++) {
        ssize_t n = recv(fd, s->worker->scratch, SP_SNI_BUF_MAX, MSG_DONTWAIT | MSG_TRUNC);
        if (n == 0)
            return 1;
        if (n == -1 && errno == EAGAIN)
            return 0;
        if (n == -1 && errno != EINTR)
            return -errno;
    }
    return -EINPROGRESS;
}

/* S_LINGERING: the open side may close once it has acknowledged every byte, or sent its own
 * end (its input is then empty and a close() is a FIN), or when its time is up. */
static void linger_step(struct sp_session *s)
{
    int side = s->linger_side;
    int end = s->side[side].failed ? -EPIPE : discard_input(s, s->fd[side]);
    bool more = end == 0 || end == -EINPROGRESS;
    if (!more || unacked(s->fd[side]) <= 0 || now_ms(s) >= s->linger_until_ms)
        session_close(s, 0, (enum sp_end)s->linger_end);
}

static void on_linger_timer(uv_timer_t *t)
{
    struct sp_session *s = t->data;
    linger_step(s);
    if (s->state == S_LINGERING)
        uv_timer_start(&s->timer, on_linger_timer, LINGER_TICK_MS, 0);
}

/* Side x failed and all it sent has been delivered: the end travels on to the other side as a
 * reset, as through a direct connection, unless that would destroy bytes still in flight to it
 * (a SO_LINGER 0 close drops the send queue). Those get a FIN behind them instead, and the
 * session lingers until they are acknowledged, throwing away what that side still sends:
 * unread input would turn the close() into a reset just the same. */
static void abort_from(struct sp_session *s, int x)
{
    int other = x ^ 1;
    enum sp_end end = x == CLI ? SP_END_CLIENT_RESET : SP_END_UPSTREAM_RESET;
    sp_log_debug("session %p: %s side failed (%s)", (void *)s, x == CLI ? "client" : "upstream",
                 s->dir[x].src_err != 0 ? uv_strerror(s->dir[x].src_err) : "error event");
    if (s->side[other].failed) {
        session_close(s, 0, end);
        return;
    }
    if (unacked(s->fd[other]) == 0) {
        session_close(s, other == CLI ? RESET_CLI : RESET_UPS, end);
        return;
    }
    sp_poller_cancel(&s->defer);
    sp_relay_dir_release(&s->dir[CLI], &s->worker->relay);
    sp_relay_dir_release(&s->dir[UPS], &s->worker->relay);
    close_side(s, x, false);
    if (!s->dir[x].dst_shut && shutdown(s->fd[other], SHUT_WR) == -1) {
        session_close(s, 0, end);
        return;
    }
    /* What the open side still sends is read and thrown away from now on (linger_step). */
    if (s->input_off[other] &&
        sp_poller_want_input(&s->worker->poller, s->fd[other], s, other, true) == 0)
        s->input_off[other] = false;
    s->state = S_LINGERING;
    s->linger_side = (int8_t)other;
    s->linger_end = (uint8_t)end;
    uint64_t cap = s->lconf->idle_timeout_ms > 0 ? SP_MIN(s->lconf->idle_timeout_ms, LINGER_MAX_MS)
                                                 : LINGER_MAX_MS;
    s->linger_until_ms = now_ms(s) + cap;
    on_linger_timer(&s->timer);
}

/* Brings each socket's EPOLLIN in line with sp_flow_wants_input before the session waits.
 * Leaving it in when it could go costs only wake-ups, but a socket whose input cannot be
 * watched again would wait for an edge that never comes: that (the kernel out of memory for
 * the set) returns -errno, and the session is ended. */
static int want_input(struct sp_session *s)
{
    for (int x = 0; x < 2; x++) {
        bool want = sp_flow_wants_input(s->dir, s->side, x);
        if (want == !s->input_off[x])
            continue; /* already so */
        int rc = sp_poller_want_input(&s->worker->poller, s->fd[x], s, x, want);
        if (rc == 0)
            s->input_off[x] = !want;
        else if (want)
            return rc;
    }
    return 0;
}

/* Runs one direction and accounts what it delivered. False when it yielded: the session runs
 * again on the next loop iteration, after the other connections had their turn. */
static bool pump(struct sp_session *s, int d)
{
    struct sp_relay_dir *dir = &s->dir[d];
    uint64_t before = dir->bytes;
    enum sp_relay_status st = sp_relay_pump(dir, &s->worker->relay, sp_flow_may_read(s->side, d));
    if (dir->bytes != before) {
        SP_STAT_ADD(s->stats->bytes[s->worker->id].v[d], dir->bytes - before);
        SP_STAT_ADD(s->server_bytes->v[d], dir->bytes - before);
        s->last_io_ms = now_ms(s); /* idle_timeout counts from the last byte delivered */
    }
    if (dir->src_eof && s->first_eof < 0)
        s->first_eof = (int8_t)d;
    sp_flow_note(s->dir, s->side, d, st);
    if (st != SP_RELAY_YIELD)
        return true;
    sp_poller_defer(&s->worker->poller, &s->defer);
    return false;
}

/* Does everything the two sockets allow now (flow.h decides each step). */
static void relay_run(struct sp_session *s)
{
    for (;;) {
        struct sp_step st = sp_flow_next(s->dir, s->side);
        switch (st.kind) {
        case SP_STEP_WAIT: {
            int rc = want_input(s);
            if (rc != 0) {
                sp_log_warn("session %p: cannot watch a socket's input again: %s", (void *)s,
                            uv_strerror(rc));
                session_close(s, RESET_CLI | RESET_UPS, SP_END_LOCAL_ERROR);
            }
            return;
        }
        case SP_STEP_PUMP:
            if (!pump(s, st.index))
                return;
            break;
        case SP_STEP_DISCARD: {
            int d = st.index;
            sp_relay_dir_release(&s->dir[d], &s->worker->relay); /* a pipe with bytes is killed */
            int end = discard_input(s, s->fd[d]);
            if (end == -EINPROGRESS) {
                sp_poller_defer(&s->worker->poller, &s->defer); /* more later: be fair */
                return;
            }
            sp_flow_discarded(s->dir, s->side, d, end);
            break;
        }
        case SP_STEP_SHUT:
            if (sp_relay_shut(&s->dir[st.index]) != 0)
                s->side[st.index ^ 1].failed = true;
            break;
        case SP_STEP_CLOSE:
            session_close(s, 0, s->first_eof == UPS ? SP_END_UPSTREAM_FIN : SP_END_CLIENT_FIN);
            return;
        case SP_STEP_ABORT:
            abort_from(s, st.index);
            return;
        }
    }
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

/* Puts socket `side` in the worker's epoll set. */
static int watch(struct sp_session *s, int side)
{
    s->side[side] = (struct sp_side){0};
    s->input_off[side] = false;
    return sp_poller_add(&s->worker->poller, s->fd[side], s, side);
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
    uv_timer_stop(&s->timer);
    sp_server_connect_ok(s->server, now_ms(s));
    s->server_bytes = &s->server->state->bytes[s->worker->id];
    if (s->upstream->conf->proxy_protocol != SP_PP_SEND_OFF && send_proxy_header(s) != 0) {
        session_close(s, RESET_CLI | RESET_UPS, SP_END_UPSTREAM_RESET);
        return;
    }
    enum sp_relay_policy policy = relay_policy(s);
    sp_relay_dir_init(&s->dir[CLI], s->fd[CLI], s->fd[UPS], policy);
    sp_relay_dir_init(&s->dir[UPS], s->fd[UPS], s->fd[CLI], policy);
    s->state = S_RELAYING;
    s->last_io_ms = now_ms(s);
    uint64_t idle = s->lconf->idle_timeout_ms;
    if (idle > 0)
        uv_timer_start(&s->timer, on_idle_timer, idle, 0);
    relay_run(s); /* the client may have sent its first bytes already */
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
    atomic_fetch_add_explicit(&srv->state->active, 1, memory_order_relaxed);
    s->counted_on_server = true;
}

static void release_server(struct sp_session *s)
{
    if (s->counted_on_server) {
        atomic_fetch_sub_explicit(&s->server->state->active, 1, memory_order_relaxed);
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

/* True when the client has failed with nothing left to deliver: its first read reports the
 * failure itself, not bytes it sent before. */
static bool client_gone(struct sp_session *s)
{
    char byte;
    return recv(s->fd[CLI], &byte, 1, MSG_PEEK | MSG_DONTWAIT) != 1;
}

/* An event while connecting: the verdict on the connect, or news from the client. */
static void connecting_step(struct sp_session *s)
{
    if (s->side[CLI].failed && client_gone(s)) {
        session_close(s, 0, SP_END_CLIENT_RESET);
        return;
    }
    switch (sp_flow_connect_state(&s->side[UPS])) {
    case SP_CONNECT_PENDING:
        return;
    case SP_CONNECT_DONE:
        established(s);
        return;
    case SP_CONNECT_FAILED: {
        int err = sp_sock_error(s->fd[UPS]); /* only the failure path asks why */
        retry_later(s, err != 0 ? err : UV_ECONNREFUSED);
        return;
    }
    }
}

/* Starts a connect to `srv`. Returns 0 when under way or done, or -errno at once. */
static int start_connect(struct sp_session *s, struct sp_server *srv)
{
    int fd;
    int rc = sp_sock_connect((const struct sockaddr *)&srv->conf->addr, srv->conf->addrlen, &fd);
    if (rc != 0 && rc != -EINPROGRESS)
        return rc;
    s->fd[UPS] = fd;
    int wrc = watch(s, UPS);
    if (wrc != 0) {
        close(fd);
        s->fd[UPS] = -1;
        return wrc;
    }
    hold_server(s, srv);
    /* Even a connect that completed at once is reported by the first event. */
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
            /* Out of descriptors (or memory) on our side: refused, like a client the listener
             * could not accept. */
            atomic_fetch_add_explicit(&s->stats->fd_exhausted, 1, memory_order_relaxed);
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

/* Per-source limits on the PROXY header's client (without a header, the accept path did it). */
static bool source_admitted(struct sp_session *s)
{
    struct sp_srclimit *tab = sp_runtime_srclimit(s->gen->rt, s->lconf);
    if (sp_listener_admit_source(s->listener, s->lconf, s->stats, tab, &s->peer.sa, &s->src))
        return true;
    session_close(s, 0, SP_END_SOURCE_LIMIT);
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
    if (st == SP_INSPECT_WAIT) {
        /* Every byte there was taken. After the client's FIN, no more will come. */
        if (s->side[CLI].hup) {
            inspect_failed(s, SP_INSPECT_EOF);
            return false;
        }
        s->side[CLI].readable = false;
        return false;
    }
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
    if (!admitted(s) || !source_admitted(s))
        return false;
    if (s->lconf->nroutes > 0)
        uv_timer_start(&s->timer, on_inspect_timer, s->lconf->tls_inspect_timeout_ms, 0);
    return true;
}

/* The kernel's wake-up threshold for the client: `bytes` to wait for a ClientHello's records,
 * or back to 1 once it is complete. */
static void set_lowat(struct sp_session *s, int bytes)
{
    if (setsockopt(s->fd[CLI], SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof(bytes)) == 0)
        s->lowat = bytes > 1;
}

/* The ClientHello: returns true once the upstream has been chosen. */
static bool route_by_sni(struct sp_session *s)
{
    char name[SP_SNI_NAME_MAX];
    int found = 0, err = 0;
    size_t need = 0;
    enum sp_inspect_status st =
        sp_sni_peek(s->fd[CLI], s->worker->scratch, name, &found, &err, &need);
    if (st == SP_INSPECT_WAIT || st == SP_INSPECT_RETRY) {
        if (s->side[CLI].hup) {
            /* Half a ClientHello and then the client's FIN: it will never be whole. */
            inspect_failed(s, SP_INSPECT_EOF);
            return false;
        }
        /* Peeked bytes stay in the socket: without a threshold every new segment would wake
         * us to peek and parse them all again. */
        if (st == SP_INSPECT_RETRY)
            set_lowat(s, (int)need);
        s->side[CLI].readable = false;
        return false;
    }
    if (s->lowat)
        set_lowat(s, 1);
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
    if (s->side[CLI].failed) {
        session_close(s, 0, SP_END_CLIENT_RESET);
        return;
    }
    if (!s->side[CLI].readable)
        return;
    if (s->ppr != NULL && !read_proxy_header(s))
        return;
    if (s->lconf->nroutes > 0 && !route_by_sni(s))
        return;
    /* What follows the header, and the ClientHello we only peeked, wait in the socket. */
    s->side[CLI].readable = true;
    uv_timer_stop(&s->timer);
    s->state = S_CONNECTING;
    connect_next(s);
}

static void on_inspect_timer(uv_timer_t *t)
{
    struct sp_session *s = t->data;
    sp_log_debug("session %p: %s not complete in time", (void *)s,
                 s->ppr != NULL ? "PROXY header" : "TLS ClientHello");
    session_close(s, 0, SP_END_INSPECT_TIMEOUT);
}

/* Reads what comes before the stream, then connects. */
static void start_inspecting(struct sp_session *s)
{
    const struct sp_listener_conf *lc = s->lconf;
    s->state = S_INSPECTING;
    if (lc->accept_proxy_protocol) {
        s->ppr = calloc(1, sizeof(*s->ppr));
        if (s->ppr == NULL) {
            session_close(s, RESET_CLI, SP_END_LOCAL_ERROR);
            return;
        }
    }
    uint64_t timeout =
        lc->accept_proxy_protocol ? lc->proxy_protocol_timeout_ms : lc->tls_inspect_timeout_ms;
    uv_timer_start(&s->timer, on_inspect_timer, timeout, 0);
    /* The socket's first event comes from the poller; bytes may already be there. */
}

/* ---- life cycle -------------------------------------------------------------------------- */

void sp_session_event(void *owner, int side, uint32_t events)
{
    struct sp_session *s = owner;
    if (s->state == S_CLOSING)
        return; /* closed earlier in the same batch of events */
    sp_side_event(&s->side[side], events);
    switch (s->state) {
    case S_INSPECTING:
        inspect_step(s);
        break;
    case S_CONNECTING:
        connecting_step(s);
        break;
    case S_RELAYING:
        relay_run(s);
        break;
    case S_LINGERING:
        linger_step(s);
        break;
    }
}

void sp_session_resume(struct sp_poller_link *link)
{
    struct sp_session *s = sp_container_of(link, struct sp_session, defer);
    if (s->state == S_RELAYING)
        relay_run(s);
}

void sp_session_start(struct sp_listener *l, int fd, const struct sockaddr *peer, socklen_t len,
                      const struct sp_srclimit_hold *src)
{
    struct sp_worker *w = l->worker;
    struct sp_session *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        struct sp_srclimit_hold held = *src;
        sp_srclimit_release(&held);
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
    s->src = *src;
    s->start_ms = uv_now(&w->loop);
    if (len <= sizeof(s->peer))
        memcpy(&s->peer, peer, len);
    else /* a named unix peer: only its family is kept; log_access asks for its path */
        s->peer.sa.sa_family = peer->sa_family;
    sp_tried_init(&s->tried);
    sp_relay_dir_init(&s->dir[CLI], -1, -1, SP_POLICY_SPLICE);
    sp_relay_dir_init(&s->dir[UPS], -1, -1, SP_POLICY_SPLICE);
    uv_timer_init(&w->loop, &s->timer);
    s->timer.data = s;

    s->next = w->sessions;
    if (w->sessions != NULL)
        w->sessions->prev = s;
    w->sessions = s;
    SP_STAT_ADD(w->nsessions, 1);

    /* Without a PROXY header the socket's peer is the client: filter it before anything else. */
    if (!l->conf->accept_proxy_protocol && !admitted(s))
        return;
    int rc = watch(s, CLI);
    if (rc != 0) {
        sp_log_warn("listener %s: cannot watch a client socket: %s", l->conf->name,
                    uv_strerror(rc));
        session_close(s, RESET_CLI, SP_END_LOCAL_ERROR);
        return;
    }
    if (l->conf->accept_proxy_protocol || l->conf->nroutes > 0)
        start_inspecting(s);
    else
        connect_next(s);
}

static void close_side(struct sp_session *s, int side, bool reset)
{
    if (s->fd[side] == -1)
        return;
    /* The close takes the socket out of the epoll set as well. */
    if (reset)
        sp_sock_close_reset(s->fd[side]);
    else
        close(s->fd[side]);
    s->fd[side] = -1;
}

/* The client of a unix: listener for the access log: its socket's path, if it bound one (most
 * clients do not: "unix:"). Only asked when there is a line to write. */
static const struct sockaddr *unix_peer(const struct sp_session *s, struct sockaddr_storage *ss)
{
    socklen_t len = sizeof(*ss);
    memset(ss, 0, sizeof(*ss)); /* unnamed when getpeername fails or the client bound no name */
    if (s->fd[CLI] != -1)
        (void)getpeername(s->fd[CLI], (struct sockaddr *)ss, &len);
    ss->ss_family = AF_UNIX;
    return (const struct sockaddr *)ss;
}

static void log_access(struct sp_session *s, enum sp_end end)
{
    const struct sp_config *cfg = s->gen->rt->cfg;
    if (!cfg->access_log.enabled)
        return;
    struct sockaddr_storage un;
    struct sp_access_entry e = {
        .listener = s->lconf->name,
        .client = s->peer.sa.sa_family == AF_UNIX ? unix_peer(s, &un) : &s->peer.sa,
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
    sp_poller_cancel(&s->defer);

    sp_relay_dir_release(&s->dir[CLI], &w->relay);
    sp_relay_dir_release(&s->dir[UPS], &w->relay);
    close_side(s, CLI, reset & RESET_CLI);
    close_side(s, UPS, reset & RESET_UPS);
    uv_close((uv_handle_t *)&s->timer, on_timer_closed); /* frees the session */

    atomic_fetch_sub_explicit(&s->stats->active, 1, memory_order_relaxed);
    sp_srclimit_release(&s->src);
    release_server(s);

    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        w->sessions = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    SP_STAT_SUB(w->nsessions, 1);
    sp_listener_session_done(s->listener);
    sp_worker_session_closed(w, s->gen);
}

void sp_session_abort(struct sp_session *s)
{
    session_close(s, RESET_CLI | RESET_UPS, SP_END_SHUTDOWN);
}

struct sp_session *sp_session_next(const struct sp_session *s)
{
    return s->next;
}

struct sp_server *sp_session_relaying_to(struct sp_session *s, uint64_t *start_ms,
                                         uint64_t **shed_due)
{
    if (s->state != S_RELAYING)
        return NULL;
    *start_ms = s->start_ms;
    *shed_due = &s->shed_due_ms;
    return s->server;
}

void sp_session_shutdown(struct sp_session *s)
{
    session_close(s, RESET_CLI | RESET_UPS, SP_END_SERVER_DOWN);
}
