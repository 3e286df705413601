/* health.c: active checks on the main loop.
 *
 *   IDLE --interval+jitter--> CONNECTING --writable, SO_ERROR 0--> (send) --> READING --match--> ok
 *     ^                            |                                              |
 *     +----- result recorded <-----+-- refused / timeout / EOF / wrong reply -----+
 *
 * An http check sends a GET as its probe and reads only the reply's status line: a code in
 * expect_status is a success, another code or anything that is not a status line a failure.
 *
 * One uv_timer per check serves both as the interval timer (IDLE) and the timeout (in flight).
 * The poll handle is closed after every check because the next one uses a new socket. */
#include "health.h"

#include "health_flap.h"
#include "health_http.h"
#include "log.h"
#include "proxy_proto.h"
#include "sock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Bytes of reply kept while looking for `expect`; a longer reply without it fails. */
#define REPLY_MAX 4096

enum check_phase {
    PH_IDLE = 0,
    PH_CONNECTING,
    PH_READING,
};

struct check {
    struct sp_health *health;          /* borrowed: the owner */
    struct sp_server *server;          /* borrowed from the runtime in force; moved to the same
                                          server of its successor by sp_health_update */
    const struct sp_health_conf *conf; /* borrowed, idem */
    uv_timer_t timer;
    uv_poll_t poll;
    int fd; /* owned while a check is in flight, else -1 */
    enum check_phase phase;
    bool poll_live;
    bool retired;                 /* no longer wanted: freed once its handles have closed */
    bool taken;                   /* scratch of sp_health_update: kept for the new runtime */
    unsigned handles;             /* handles of this check not yet closed (the timer, the poll) */
    struct sp_health_state state; /* the verdict of the checks */
    struct sp_flap flap;          /* damping: the server is up when the verdict is and not held */
    unsigned http_status; /* of the reply to the check in flight; 0 until a status line came */
    size_t got;
    char reply[REPLY_MAX];
};

struct sp_health {
    uv_loop_t *loop;       /* borrowed */
    struct check **checks; /* owned array of owned checks, one per checked server */
    size_t nchecks;
    unsigned retiring; /* retired checks whose handles are still closing */
    bool stopping;     /* freed when the last retiring check is */
    uint64_t rng;
    sp_health_shed_fn shed; /* on_server_down: shutdown, for a server marked down */
    void *shed_arg;
};

bool sp_health_record(struct sp_health_state *st, bool ok, unsigned rise, unsigned fall)
{
    if (!st->checked) {
        st->checked = true;
        st->streak = 0;
        bool changed = st->up != ok;
        st->up = ok;
        return changed;
    }
    if (ok == st->up) {
        st->streak = 0;
        return false;
    }
    st->streak++;
    if (st->streak < (ok ? rise : fall))
        return false;
    st->up = ok;
    st->streak = 0;
    return true;
}

static uint64_t next_rand(struct sp_health *h)
{
    /* xorshift64: jitter only needs to keep checks from lining up. */
    h->rng ^= h->rng << 13;
    h->rng ^= h->rng >> 7;
    h->rng ^= h->rng << 17;
    return h->rng;
}

static void on_timer(uv_timer_t *t);

static void schedule(struct check *c)
{
    uint64_t interval = c->conf->interval_ms;
    uint64_t jitter = interval / 10 > 0 ? next_rand(c->health) % (interval / 10 + 1) : 0;
    uv_timer_start(&c->timer, on_timer, interval + jitter, 0);
}

static void on_handle_closed(uv_handle_t *hd)
{
    struct check *c = hd->data;
    struct sp_health *h = c->health;
    if (hd == (uv_handle_t *)&c->poll)
        c->poll_live = false;
    if (--c->handles > 0 || !c->retired)
        return;
    free(c);
    if (--h->retiring == 0 && h->stopping) {
        free(h->checks);
        free(h);
    }
}

static void end_io(struct check *c)
{
    if (c->poll_live && !uv_is_closing((uv_handle_t *)&c->poll)) {
        uv_close((uv_handle_t *)&c->poll, on_handle_closed);
    }
    if (c->fd != -1) {
        close(c->fd);
        c->fd = -1;
    }
    c->phase = PH_IDLE;
}

/* s has just gone `up` or down: the one change that can take its upstream into the all-down
 * state (the last server up went down) or out of it (the first came back). */
static void note_all_down(const struct sp_server *s, bool up)
{
    const struct sp_upstream *u = s->upstream;
    if (!up) {
        if (sp_upstream_all_down(u))
            sp_upstream_log_all_down(u, true);
        return;
    }
    for (size_t i = 0; i < u->nservers; i++) {
        if (&u->servers[i] != s &&
            atomic_load_explicit(&u->servers[i].state->up, memory_order_relaxed))
            return;
    }
    sp_upstream_log_all_down(u, false);
}

void sp_health_log_all_down(const struct sp_runtime *old, const struct sp_runtime *rt)
{
    for (size_t i = 0; i < rt->cfg->nupstreams; i++) {
        const struct sp_upstream *u = &rt->upstreams[i];
        for (size_t j = 0; j < old->cfg->nupstreams; j++) {
            const struct sp_upstream *o = &old->upstreams[j];
            if (strcmp(o->conf->name, u->conf->name) != 0)
                continue;
            bool now = sp_upstream_all_down(u);
            if (now != sp_upstream_all_down(o))
                sp_upstream_log_all_down(u, now);
            break;
        }
    }
}

/* The verdict of c's checks changed (not its first result): counted, and remembered for flap
 * damping, which may hold the server down from now on. */
static void flap_changed(struct check *c, uint64_t now)
{
    const struct sp_health_conf *hc = c->conf;
    struct sp_server_state *st = c->server->state;
    atomic_fetch_add_explicit(&st->flaps, 1, memory_order_relaxed);
    if (!sp_flap_change(&c->flap, c->state.up, now, hc->flap_window_ms, hc->flap_max))
        return;
    atomic_store_explicit(&st->flap_held, true, memory_order_relaxed);
    sp_log_warn("upstream %s: server %s is flapping (%u up/down changes within %llu ms, "
                "flap_max %u): held down until it stays up for %llu ms",
                c->server->upstream->conf->name, c->server->name,
                sp_flap_count(&c->flap, now, hc->flap_window_ms),
                (unsigned long long)hc->flap_window_ms, hc->flap_max,
                (unsigned long long)hc->flap_hold_ms);
}

static void flap_release(struct check *c, const char *why)
{
    atomic_store_explicit(&c->server->state->flap_held, false, memory_order_relaxed);
    sp_log_warn("upstream %s: server %s released from its flap hold (%s)",
                c->server->upstream->conf->name, c->server->name, why);
}

/* Publishes what the checks make of the server: up when the verdict is and no flap hold keeps
 * it out (a hold ends once the verdict has been up for flap_hold). */
static void apply(struct check *c, uint64_t now)
{
    const struct sp_health_conf *hc = c->conf;
    if (c->flap.held && hc->flap_max == 0) {
        c->flap.held = false;
        c->flap.n = 0;
        flap_release(c, "flap damping is off now");
    } else if (sp_flap_release(&c->flap, c->state.up, now, hc->flap_hold_ms)) {
        char why[64];
        snprintf(why, sizeof(why), "up for %llu ms", (unsigned long long)(now - c->flap.up_since));
        flap_release(c, why);
    }
    bool up = c->state.up && !c->flap.held;
    if (!sp_server_set_up(c->server, up, now))
        return;
    note_all_down(c->server, up);
    /* The clock, not the loop's cached time: sessions accepted up to now are concerned. */
    if (up)
        sp_server_shed_cancel(c->server);
    else if (sp_server_shed_begin(c->server, c->server->upstream->conf, sp_upstream_now_ms()) &&
             c->health->shed != NULL)
        c->health->shed(c->health->shed_arg, c->server, "marked down by health checks");
}

/* result: SP_CHECK_OK, another enum sp_check_result, or the -errno that failed the check. */
static void finish(struct check *c, int result)
{
    end_io(c);
    bool ok = result == SP_CHECK_OK;
    char text[32];
    const char *why = sp_check_result_text(result, text, sizeof(text));
    atomic_store_explicit(&c->server->state->check_result, result, memory_order_relaxed);
    atomic_store_explicit(&c->server->state->check_http_status, (int)c->http_status,
                          memory_order_relaxed);
    uint64_t now = uv_now(c->health->loop);
    atomic_store_explicit(&c->server->state->last_check_ms, now, memory_order_relaxed);
    const struct sp_health_conf *hc = c->conf;
    bool first = !c->state.checked;
    unsigned streak = c->state.streak + 1;
    if (sp_health_record(&c->state, ok, hc->rise, hc->fall)) {
        if (!first)
            flap_changed(c, now);
        if (first)
            sp_log_info("upstream %s: server %s up -> down (first check: %s)",
                        c->server->upstream->conf->name, c->server->name, why);
        else
            sp_log_info("upstream %s: server %s %s -> %s (%s; %u consecutive %s)",
                        c->server->upstream->conf->name, c->server->name, ok ? "down" : "up",
                        ok ? "up" : "down", why, streak, ok ? "successes" : "failures");
    } else if (!ok) {
        sp_log_debug("upstream %s: server %s check failed: %s", c->server->upstream->conf->name,
                     c->server->name, why);
    }
    apply(c, now);
    if (!c->retired)
        schedule(c);
}

static void on_io(uv_poll_t *p, int status, int events);

/* Servers that expect a PROXY header get one saying "this is the proxy's own connection" (v2
 * LOCAL, v1 UNKNOWN), as HAProxy's check-send-proxy does, so they do not drop the check. */
static int send_local_header(struct check *c)
{
    enum sp_pp_send pp = c->server->upstream->conf->proxy_protocol;
    if (pp == SP_PP_SEND_OFF)
        return 0;
    char hdr[SP_PP_ENCODE_MAX];
    int n = sp_pp_encode(pp == SP_PP_SEND_V1 ? 1 : 2, NULL, NULL, hdr, sizeof(hdr));
    if (n < 0)
        return n;
    ssize_t sent = send(c->fd, hdr, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    return sent == n ? 0 : (sent == -1 ? -errno : -EAGAIN);
}

/* The GET of an http check. Like any probe it fits the socket buffer of a fresh connection. */
static int send_http_request(struct check *c)
{
    char req[SP_HEALTH_HTTP_REQ_MAX];
    const struct sp_server_conf *sc = c->server->conf;
    /* "unix:/path" is no host name: a server on a Unix socket is asked for "localhost" */
    const char *host = sc->addr.ss_family == AF_UNIX ? "localhost" : sc->address;
    int n = sp_health_http_request(&c->conf->http, host, req, sizeof(req));
    if (n < 0)
        return n;
    ssize_t sent = send(c->fd, req, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    return sent == n ? 0 : (sent == -1 ? -errno : -EAGAIN);
}

static void send_probe(struct check *c)
{
    const struct sp_health_conf *hc = c->conf;
    int rc = send_local_header(c);
    if (rc == 0 && hc->http.enabled)
        rc = send_http_request(c);
    if (rc != 0) {
        finish(c, rc);
        return;
    }
    if (hc->send != NULL && hc->send_len > 0) {
        /* A probe is small: it fits the socket buffer of a fresh connection in one go. */
        ssize_t n = send(c->fd, hc->send, hc->send_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n != (ssize_t)hc->send_len) {
            finish(c, n == -1 ? -errno : -EAGAIN);
            return;
        }
    }
    if (hc->expect == NULL && !hc->http.enabled) {
        finish(c, SP_CHECK_OK);
        return;
    }
    c->phase = PH_READING;
    c->got = 0;
    uv_poll_start(&c->poll, UV_READABLE, on_io);
}

static void read_reply(struct check *c)
{
    const struct sp_health_conf *hc = c->conf;
    ssize_t n = recv(c->fd, c->reply + c->got, sizeof(c->reply) - c->got, MSG_DONTWAIT);
    if (n == -1 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n == -1) {
        finish(c, -errno);
        return;
    }
    if (n == 0) {
        /* Half a status line and then EOF is no HTTP reply. */
        finish(c, hc->http.enabled && c->got > 0 ? SP_CHECK_NOT_HTTP : SP_CHECK_CLOSED);
        return;
    }
    c->got += (size_t)n;
    if (hc->http.enabled) {
        unsigned status;
        int st = sp_health_http_status(c->reply, c->got, &status);
        if (st > 0)
            c->http_status = status;
        if (st < 0)
            finish(c, SP_CHECK_NOT_HTTP);
        else if (st > 0)
            finish(c, sp_health_http_expected(&hc->http, status) ? SP_CHECK_OK
                                                                 : sp_check_http_status(status));
        return;
    }
    if (memmem(c->reply, c->got, hc->expect, hc->expect_len) != NULL)
        finish(c, SP_CHECK_OK);
    else if (c->got == sizeof(c->reply))
        finish(c, SP_CHECK_BAD_REPLY);
}

static void on_io(uv_poll_t *p, int status, int events)
{
    struct check *c = p->data;
    (void)events;
    if (c->phase == PH_CONNECTING) {
        int err = sp_sock_error(c->fd);
        if (err == 0 && status < 0)
            err = status;
        if (err != 0) {
            finish(c, err);
            return;
        }
        send_probe(c);
        return;
    }
    if (status < 0) {
        int err = sp_sock_error(c->fd);
        finish(c, err != 0 ? err : -EIO);
        return;
    }
    read_reply(c);
}

static void start_check(struct check *c)
{
    if (c->poll_live) {
        /* The last check's handle is still closing: try again shortly. */
        uv_timer_start(&c->timer, on_timer, 10, 0);
        return;
    }
    const struct sp_server_conf *sc = c->server->conf;
    c->http_status = 0;
    int rc = sp_sock_connect((const struct sockaddr *)&sc->addr, sc->addrlen, &c->fd);
    if (rc != 0 && rc != -EINPROGRESS) {
        finish(c, rc);
        return;
    }
    rc = uv_poll_init(c->health->loop, &c->poll, c->fd);
    if (rc != 0) {
        finish(c, rc);
        return;
    }
    c->poll.data = c;
    c->poll_live = true;
    c->handles++;
    c->phase = PH_CONNECTING;
    uv_poll_start(&c->poll, UV_WRITABLE, on_io);
    uv_timer_start(&c->timer, on_timer, c->conf->timeout_ms, 0);
}

static void on_timer(uv_timer_t *t)
{
    struct check *c = t->data;
    if (c->phase == PH_IDLE)
        start_check(c);
    else
        finish(c, SP_CHECK_TIMEOUT);
}

static size_t count_checks(const struct sp_runtime *rt)
{
    size_t n = 0;
    for (size_t i = 0; i < rt->cfg->nupstreams; i++) {
        if (rt->cfg->upstreams[i].health.enabled)
            n += rt->upstreams[i].nservers;
    }
    return n;
}

/* A new check of `s`, its first run started at once. */
static struct check *check_new(struct sp_health *h, struct sp_server *s,
                               const struct sp_health_conf *conf)
{
    struct check *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->health = h;
    c->server = s;
    c->conf = conf;
    c->fd = -1;
    /* A server the previous runtime knew without checking it (checks newly configured, or
     * they were off) keeps its state and its first-check-done flag, so it goes on needing
     * rise/fall results rather than flipping at once. */
    c->state.up = atomic_load_explicit(&s->state->up, memory_order_relaxed);
    c->state.checked =
        atomic_load_explicit(&s->state->check_result, memory_order_relaxed) != SP_CHECK_NONE;
    atomic_store_explicit(&s->state->flap_held, false, memory_order_relaxed);
    uv_timer_init(h->loop, &c->timer);
    c->timer.data = c;
    c->handles = 1;
    start_check(c);
    return c;
}

/* Stops c for good; the memory goes with its last handle. */
static void retire(struct check *c)
{
    c->retired = true;
    c->health->retiring++;
    end_io(c);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

/* The current check of the server sharing state `st`, marked taken; NULL if none. */
static struct check *take(struct sp_health *h, const struct sp_server_state *st)
{
    for (size_t i = 0; i < h->nchecks; i++) {
        struct check *c = h->checks[i];
        if (!c->taken && c->server->state == st) {
            c->taken = true;
            return c;
        }
    }
    return NULL;
}

/* Moves a running check to the same server of the new runtime. Its schedule, an I/O in
 * flight and its rise/fall streak go on; a check in flight finishes under the new settings,
 * and a changed interval applies from the check after next unless the check is idle now. */
static void move(struct check *c, struct sp_server *s, const struct sp_health_conf *conf)
{
    bool reschedule = c->phase == PH_IDLE && c->conf->interval_ms != conf->interval_ms;
    c->server = s;
    c->conf = conf;
    if (reschedule)
        schedule(c);
    /* flap_max removed: a hold ends now rather than at the next check. */
    if (c->flap.held && conf->flap_max == 0)
        apply(c, uv_now(c->health->loop));
}

/* Servers of upstreams without checks: a verdict left by checks an earlier runtime ran would
 * never be revised, so it is dropped (up, as every unchecked server is), with its time. */
static void forget_verdicts(const struct sp_runtime *rt, uint64_t now)
{
    for (size_t i = 0; i < rt->cfg->nupstreams; i++) {
        const struct sp_upstream *u = &rt->upstreams[i];
        for (size_t j = 0; !u->conf->health.enabled && j < u->nservers; j++) {
            struct sp_server *s = &u->servers[j];
            atomic_store_explicit(&s->state->flap_held, false, memory_order_relaxed);
            atomic_store_explicit(&s->state->last_check_ms, 0, memory_order_relaxed);
            if (atomic_exchange(&s->state->check_result, SP_CHECK_NONE) == SP_CHECK_NONE ||
                !sp_server_set_up(s, true, now))
                continue;
            sp_server_shed_cancel(s);
            sp_log_info("upstream %s: server %s up (health checks are off now)", u->conf->name,
                        s->name);
        }
    }
}

int sp_health_update(struct sp_health *h, struct sp_runtime *rt)
{
    /* A reload blocks the loop (it resolves names, for one), so its cached clock may be far
     * behind: the timeouts of the checks started below would expire at once. */
    uv_update_time(h->loop);
    struct check **next = calloc(count_checks(rt) + 1, sizeof(*next));
    if (next == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < h->nchecks; i++)
        h->checks[i]->taken = false;
    size_t k = 0;
    int rc = 0;
    for (size_t i = 0; i < rt->cfg->nupstreams && rc == 0; i++) {
        struct sp_upstream *u = &rt->upstreams[i];
        for (size_t j = 0; u->conf->health.enabled && j < u->nservers; j++) {
            struct sp_server *s = &u->servers[j];
            struct check *c = take(h, s->state);
            if (c != NULL) {
                move(c, s, &u->conf->health);
            } else if ((c = check_new(h, s, &u->conf->health)) == NULL) {
                rc = -ENOMEM; /* the servers left go unchecked; the rest is consistent */
                break;
            }
            next[k++] = c;
        }
    }
    /* What was not taken checks a server the new runtime does not have (its pointer would
     * dangle once the old runtime goes). */
    for (size_t i = 0; i < h->nchecks; i++) {
        if (!h->checks[i]->taken)
            retire(h->checks[i]);
    }
    free(h->checks);
    h->checks = next;
    h->nchecks = k;
    forget_verdicts(rt, uv_now(h->loop));
    return rc;
}

int sp_health_start(uv_loop_t *loop, struct sp_runtime *rt, struct sp_health **out)
{
    *out = NULL;
    struct sp_health *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return -ENOMEM;
    h->loop = loop;
    h->rng = uv_hrtime() | 1;
    int rc = sp_health_update(h, rt);
    if (rc != 0) {
        sp_health_stop(h);
        return rc;
    }
    *out = h;
    return 0;
}

void sp_health_set_shed(struct sp_health *h, sp_health_shed_fn fn, void *arg)
{
    h->shed = fn;
    h->shed_arg = arg;
}

void sp_health_stop(struct sp_health *h)
{
    if (h == NULL)
        return;
    h->stopping = true;
    for (size_t i = 0; i < h->nchecks; i++)
        retire(h->checks[i]);
    h->nchecks = 0;
    if (h->retiring == 0) {
        free(h->checks);
        free(h);
    }
}
