/* upstream.c: the servers of one upstream pool and their shared state: the health flag,
 * connection counters, passive checks (max_fails within fail_timeout) and the slow_start ramp.
 * Every field is an atomic read and written by several threads; no locks. */
#include "upstream.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Relaxed is enough everywhere: each field is a self-contained fact (a counter, a deadline),
 * and a balancer seeing one a little late only costs one connection a slightly stale choice. */
#define RLX memory_order_relaxed

int sp_upstream_init(struct sp_upstream *u, const struct sp_upstream_conf *conf)
{
    const struct sp_server_conf **list = calloc(conf->nservers + 1, sizeof(*list));
    if (list == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < conf->nservers; i++)
        list[i] = &conf->servers[i];
    int rc = sp_upstream_init_servers(u, conf, list, NULL, conf->nservers, 1);
    free(list);
    return rc;
}

static struct sp_server_state *state_new(unsigned nworkers)
{
    struct sp_server_state *st = malloc(sizeof(*st));
    if (st == NULL)
        return NULL;
    st->nworkers = nworkers > 0 ? nworkers : 1;
    /* Aligned so that no two workers' slots share a cache line. */
    st->bytes = aligned_alloc(64, st->nworkers * sizeof(*st->bytes));
    if (st->bytes == NULL) {
        free(st);
        return NULL;
    }
    for (unsigned w = 0; w < st->nworkers; w++) {
        atomic_init(&st->bytes[w].v[0], 0);
        atomic_init(&st->bytes[w].v[1], 0);
    }
    atomic_init(&st->refs, 1);
    atomic_init(&st->up, true);
    atomic_init(&st->drained, false);
    atomic_init(&st->check_result, SP_CHECK_NONE);
    atomic_init(&st->check_http_status, 0);
    atomic_init(&st->flap_held, false);
    atomic_init(&st->flaps, 0);
    atomic_init(&st->active, 0);
    atomic_init(&st->connections, 0);
    atomic_init(&st->connect_failures, 0);
    atomic_init(&st->last_check_ms, 0);
    atomic_init(&st->shed_at_ms, 0);
    atomic_init(&st->shed_spread_ms, 0);
    atomic_init(&st->sessions_shutdown, 0);
    atomic_init(&st->fails, 0);
    atomic_init(&st->fail_window_start_ms, 0);
    atomic_init(&st->down_until_ms, 0);
    /* 0 = usable since start: no slow_start ramp for the first traffic. */
    atomic_init(&st->up_since_ms, 0);
    return st;
}

static void state_unref(struct sp_server_state *st)
{
    /* acq_rel: the last holder must see every other thread's writes before freeing. */
    if (st != NULL && atomic_fetch_sub_explicit(&st->refs, 1, memory_order_acq_rel) == 1) {
        free(st->bytes);
        free(st);
    }
}

int sp_upstream_init_servers(struct sp_upstream *u, const struct sp_upstream_conf *conf,
                             const struct sp_server_conf *const *servers,
                             struct sp_server_state *const *states, size_t n, unsigned nworkers)
{
    memset(u, 0, sizeof(*u));
    u->conf = conf;
    if (n == 0)
        return 0;
    u->servers = calloc(n, sizeof(*u->servers));
    if (u->servers == NULL)
        return -ENOMEM;
    u->nservers = n;
    for (size_t i = 0; i < u->nservers; i++) {
        struct sp_server *s = &u->servers[i];
        s->conf = servers[i];
        s->upstream = u;
        s->index = (unsigned)i;
        s->name = servers[i]->address;
        s->state = states != NULL ? states[i] : NULL;
        if (s->state != NULL)
            atomic_fetch_add_explicit(&s->state->refs, 1, memory_order_relaxed);
        else
            s->state = state_new(nworkers);
        if (s->state == NULL) {
            sp_upstream_deinit(u);
            return -ENOMEM;
        }
    }
    return 0;
}

void sp_upstream_deinit(struct sp_upstream *u)
{
    for (size_t i = 0; i < u->nservers; i++)
        state_unref(u->servers[i].state);
    free(u->servers);
    u->servers = NULL;
    u->nservers = 0;
}

uint64_t sp_server_bytes_sum(const struct sp_server *s, int d)
{
    uint64_t sum = 0;
    for (unsigned w = 0; w < s->state->nworkers; w++)
        sum += atomic_load_explicit(&s->state->bytes[w].v[d], RLX);
    return sum;
}

uint64_t sp_upstream_now_ms(void)
{
    struct timespec ts;

    /* CLOCK_MONOTONIC cannot fail with a valid pointer; libuv's uv_now() uses the same base. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

bool sp_server_usable(const struct sp_server *s, uint64_t now_ms)
{
    const struct sp_server_state *st = s->state;
    return atomic_load_explicit(&st->up, RLX) && !atomic_load_explicit(&st->drained, RLX) &&
           now_ms >= atomic_load_explicit(&st->down_until_ms, RLX);
}

bool sp_server_held(const struct sp_server *s, uint64_t now_ms)
{
    const struct sp_server_state *st = s->state;
    return atomic_load_explicit(&st->up, RLX) && !atomic_load_explicit(&st->drained, RLX) &&
           now_ms < atomic_load_explicit(&st->down_until_ms, RLX);
}

bool sp_server_usable_as_up(const struct sp_server *s, uint64_t now_ms, bool held)
{
    const struct sp_server_state *st = s->state;
    if (atomic_load_explicit(&st->drained, RLX))
        return false;
    bool in_hold = now_ms < atomic_load_explicit(&st->down_until_ms, RLX);
    return held == in_hold;
}

bool sp_upstream_all_down(const struct sp_upstream *u)
{
    if (!u->conf->health.enabled || u->nservers == 0)
        return false;
    for (size_t i = 0; i < u->nservers; i++) {
        if (atomic_load_explicit(&u->servers[i].state->up, RLX))
            return false;
    }
    return true;
}

void sp_upstream_log_all_down(const struct sp_upstream *u, bool all_down)
{
    const char *name = u->conf->name;
    if (!all_down)
        sp_log_warn("upstream %s: a server is up again, no longer all down", name);
    else if (u->conf->all_down == SP_ALL_DOWN_FAIL_OPEN)
        sp_log_warn("upstream %s: every server is down; balancing over all %zu anyway "
                    "(all_down: fail_open)",
                    name, u->nservers);
    else
        sp_log_warn("upstream %s: every server is down; refusing clients (all_down: reject)", name);
}

const char *sp_check_result_str(int result)
{
    switch (result) {
    case SP_CHECK_NONE:
        return "none";
    case SP_CHECK_OK:
        return "ok";
    case SP_CHECK_TIMEOUT:
        return "timeout";
    case SP_CHECK_BAD_REPLY:
        return "unexpected reply";
    case SP_CHECK_CLOSED:
        return "closed before reply";
    case SP_CHECK_NOT_HTTP:
        return "not HTTP";
    default:
        if (result > SP_CHECK_HTTP_STATUS && result < SP_CHECK_HTTP_STATUS + 1000)
            return "unexpected status";
        return result < 0 ? strerror(-result) : "unknown";
    }
}

const char *sp_check_result_text(int result, char *buf, size_t cap)
{
    if (result > SP_CHECK_HTTP_STATUS && result < SP_CHECK_HTTP_STATUS + 1000) {
        snprintf(buf, cap, "status %d", result - SP_CHECK_HTTP_STATUS);
        return buf;
    }
    return sp_check_result_str(result);
}

/* Counts one failure in the current window and returns the count. A window starts at the first
 * failure after a success or after the previous window ran out. */
static uint32_t count_failure(struct sp_server_state *st, uint64_t fail_timeout, uint64_t now_ms)
{
    uint64_t start = atomic_load_explicit(&st->fail_window_start_ms, RLX);
    uint32_t fails = atomic_load_explicit(&st->fails, RLX);
    /* Loops cache their clock, so another worker's `now` may be slightly behind ours:
     * now < start is "inside the window", never a huge unsigned difference. */
    bool expired = now_ms >= start && now_ms - start >= fail_timeout;

    if (fails == 0 || expired) {
        /* Only the thread that moves the window start resets the count; a racing thread
         * counts into the new window instead. A failure counted into the old window just
         * before the reset is lost, which is harmless. */
        if (atomic_compare_exchange_strong_explicit(&st->fail_window_start_ms, &start, now_ms, RLX,
                                                    RLX)) {
            atomic_store_explicit(&st->fails, 1, RLX);
            return 1;
        }
    }
    return atomic_fetch_add_explicit(&st->fails, 1, RLX) + 1;
}

void sp_server_connect_failed(struct sp_server *s, uint64_t now_ms)
{
    const struct sp_upstream_conf *uc = s->upstream->conf;
    struct sp_server_state *st = s->state;

    atomic_fetch_add_explicit(&st->connect_failures, 1, RLX);
    if (uc->max_fails == 0)
        return;
    /* Connects started before the hold, or tried because no other server was usable, may
     * still fail during it; they say nothing new, and counting them would stretch the hold
     * past fail_timeout. */
    if (now_ms < atomic_load_explicit(&st->down_until_ms, RLX))
        return;

    uint32_t fails = count_failure(st, uc->fail_timeout_ms, now_ms);
    if (fails < uc->max_fails)
        return;
    /* The compare-exchange lets exactly one of several racing threads trip the hold. */
    if (!atomic_compare_exchange_strong_explicit(&st->fails, &fails, 0, RLX, RLX))
        return;
    atomic_store_explicit(&st->down_until_ms, now_ms + uc->fail_timeout_ms, RLX);
    sp_log_warn("upstream %s: server %s failed %u times, skipped for %llu ms", uc->name, s->name,
                fails, (unsigned long long)uc->fail_timeout_ms);
}

void sp_server_connect_ok(struct sp_server *s, uint64_t now_ms)
{
    struct sp_server_state *st = s->state;

    atomic_fetch_add_explicit(&st->connections, 1, RLX);
    /* Read first: a store on every connect would bounce the cache line between workers. */
    if (atomic_load_explicit(&st->fails, RLX) != 0)
        atomic_store_explicit(&st->fails, 0, RLX);
    /* A held server that answers (tried because nothing else was usable, or a connect started
     * before the hold) is back: the hold ends now, and slow_start ramps from here. */
    uint64_t until = atomic_load_explicit(&st->down_until_ms, RLX);
    if (until > now_ms &&
        atomic_compare_exchange_strong_explicit(&st->down_until_ms, &until, now_ms, RLX, RLX))
        sp_log_info("upstream %s: server %s answered, passive hold ended", s->upstream->conf->name,
                    s->name);
}

/* When the server last became usable: set_up() records the health transition, and a passive
 * hold that has run out counts as a recovery at down_until without anyone writing it. */
static uint64_t usable_since(const struct sp_server *s, uint64_t now_ms)
{
    uint64_t since = atomic_load_explicit(&s->state->up_since_ms, RLX);
    uint64_t down_until = atomic_load_explicit(&s->state->down_until_ms, RLX);

    if (down_until > since && now_ms >= down_until)
        since = down_until;
    return since;
}

/* weight * (slow_start + 9 * elapsed) / (10 * slow_start), at least 1: a linear ramp from
 * weight/10 right after recovery to the full weight once slow_start has elapsed. With
 * weight <= 1000 the products stay in 64 bits for any slow_start under 2^40 ms (34 years). */
unsigned sp_server_effective_weight(const struct sp_server *s, uint64_t now_ms)
{
    unsigned weight = s->conf->weight != 0 ? s->conf->weight : 1;
    uint64_t ramp = s->upstream->conf->slow_start_ms;

    if (ramp == 0)
        return weight;
    uint64_t since = usable_since(s, now_ms);
    if (since == 0)
        return weight;
    uint64_t elapsed = now_ms > since ? now_ms - since : 0;
    if (elapsed >= ramp)
        return weight;
    uint64_t w = (uint64_t)weight * (ramp + 9 * elapsed) / (10 * ramp);
    return w != 0 ? (unsigned)w : 1;
}

bool sp_server_shed_begin(struct sp_server *s, const struct sp_upstream_conf *uc, uint64_t now_ms)
{
    if (uc->on_server_down != SP_ON_DOWN_SHUTDOWN)
        return false;
    atomic_store_explicit(&s->state->shed_spread_ms, uc->shutdown_spread_ms, RLX);
    /* Release: a worker that sees the new shed_at_ms sees its spread too. Never 0, which
     * means "nothing to shed". */
    atomic_store_explicit(&s->state->shed_at_ms, now_ms != 0 ? now_ms : 1, memory_order_release);
    return true;
}

void sp_server_shed_cancel(struct sp_server *s)
{
    atomic_store_explicit(&s->state->shed_at_ms, 0, RLX);
}

bool sp_server_set_up(struct sp_server *s, bool up, uint64_t now_ms)
{
    /* The health checker is the only writer of `up`, so load-then-store cannot race. */
    if (atomic_load_explicit(&s->state->up, RLX) == up)
        return false;
    /* up_since first, so a balancer that sees the flag also sees the ramp start (seq_cst). */
    if (up)
        atomic_store(&s->state->up_since_ms, now_ms);
    atomic_store(&s->state->up, up);
    return true;
}
