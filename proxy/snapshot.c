/* snapshot.c: the admin endpoint's view of the process, copied out of the live atomics so the
 * admin thread can format it without holding anything the relay needs. */
#include "snapshot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RLX memory_order_relaxed

static bool dup_to(char **dst, const char *src)
{
    *dst = strdup(src);
    return *dst != NULL;
}

/* The listener's limits as configured, and how full its per-source table is now. */
static void fill_limits(struct sp_stats_listener *o, const struct sp_listener_conf *lc,
                        const struct sp_srclimit *tab)
{
    const struct sp_limits_conf *lim = &lc->limits;
    if (!lim->enabled || tab == NULL)
        return;
    o->limits = true;
    o->per_source_connections = lim->per_source_connections;
    o->rate = lim->rate;
    o->rate_per_minute = lim->rate_period_ms != 1000;
    o->source_prefix_v4 = lim->source_prefix_v4;
    o->source_prefix_v6 = lim->source_prefix_v6;
    o->tracked_max = sp_srclimit_size(tab);
    o->tracked = sp_srclimit_in_use(tab, sp_upstream_now_ms());
}

static int fill_listeners(struct sp_stats *st, const struct sp_runtime *rt)
{
    const struct sp_config *cfg = rt->cfg;
    st->listeners = calloc(cfg->nlisteners, sizeof(*st->listeners));
    if (st->listeners == NULL)
        return -ENOMEM;
    st->nlisteners = cfg->nlisteners;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct sp_listener_conf *lc = &cfg->listeners[i];
        struct sp_listener_stats *ls = rt->listener[i];
        struct sp_stats_listener *o = &st->listeners[i];
        if (!dup_to(&o->name, lc->name) || !dup_to(&o->listen, lc->listen) ||
            !dup_to(&o->upstream, lc->upstream->name))
            return -ENOMEM;
        o->active = atomic_load_explicit(&ls->active, RLX);
        o->connections = atomic_load_explicit(&ls->accepted, RLX);
        o->over_max = atomic_load_explicit(&ls->over_max, RLX);
        o->fd_exhausted = atomic_load_explicit(&ls->fd_exhausted, RLX);
        o->rejected = o->over_max + o->fd_exhausted;
        o->denied = atomic_load_explicit(&ls->denied, RLX);
        o->malformed = atomic_load_explicit(&ls->malformed, RLX);
        o->untrusted = atomic_load_explicit(&ls->untrusted, RLX);
        o->over_src_conn = atomic_load_explicit(&ls->over_src_conn, RLX);
        o->over_src_rate = atomic_load_explicit(&ls->over_src_rate, RLX);
        o->src_untracked = atomic_load_explicit(&ls->src_untracked, RLX);
        fill_limits(o, lc, sp_runtime_srclimit(rt, lc));
        for (unsigned w = 0; w < ls->nworkers; w++) {
            o->bytes_up += atomic_load_explicit(&ls->bytes[w].v[0], RLX);
            o->bytes_down += atomic_load_explicit(&ls->bytes[w].v[1], RLX);
        }
    }
    return 0;
}

/* When the last active check of s ended, as an age and as Unix time (wall_ms: the wall clock
 * read with now). The health loop's cached clock may run a little behind ours. */
static void fill_last_check(struct sp_stats_server *o, const struct sp_server *s, uint64_t now,
                            uint64_t wall_ms)
{
    uint64_t at = atomic_load_explicit(&s->state->last_check_ms, RLX);
    if (at == 0 || !o->health_checked)
        return;
    o->checked = true;
    o->last_check_age_ms = now > at ? now - at : 0;
    o->last_check_unix = (wall_ms - SP_MIN(wall_ms, o->last_check_age_ms)) / 1000;
}

static int fill_server(struct sp_stats_server *o, const struct sp_upstream *u,
                       const struct sp_server *s, uint64_t now, uint64_t wall_ms)
{
    if (!dup_to(&o->upstream, u->conf->name) || !dup_to(&o->address, s->name))
        return -ENOMEM;
    o->up = atomic_load_explicit(&s->state->up, RLX);
    o->drained = atomic_load_explicit(&s->state->drained, RLX);
    o->usable = sp_server_usable(s, now);
    o->backup = s->conf->backup;
    o->weight = s->conf->weight;
    o->active = atomic_load_explicit(&s->state->active, RLX);
    o->connections = atomic_load_explicit(&s->state->connections, RLX);
    o->connect_failures = atomic_load_explicit(&s->state->connect_failures, RLX);
    o->check_result = atomic_load_explicit(&s->state->check_result, RLX);
    o->check_http_status = (unsigned)atomic_load_explicit(&s->state->check_http_status, RLX);
    o->flaps = atomic_load_explicit(&s->state->flaps, RLX);
    o->flap_held = atomic_load_explicit(&s->state->flap_held, RLX);
    o->sessions_shutdown = atomic_load_explicit(&s->state->sessions_shutdown, RLX);
    o->health_checked = u->conf->health.enabled;
    o->bytes_up = sp_server_bytes_sum(s, 0);
    o->bytes_down = sp_server_bytes_sum(s, 1);
    fill_last_check(o, s, now, wall_ms);
    return 0;
}

static int fill_upstreams(struct sp_stats *st, const struct sp_runtime *rt)
{
    const struct sp_config *cfg = rt->cfg;
    size_t nservers = 0;
    for (size_t i = 0; i < cfg->nupstreams; i++)
        nservers += rt->upstreams[i].nservers;
    st->upstreams = calloc(cfg->nupstreams, sizeof(*st->upstreams));
    st->servers = calloc(nservers, sizeof(*st->servers));
    if (st->upstreams == NULL || st->servers == NULL)
        return -ENOMEM;
    st->nupstreams = cfg->nupstreams;
    uint64_t now = sp_upstream_now_ms();
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    uint64_t wall_ms = (uint64_t)wall.tv_sec * 1000u + (uint64_t)wall.tv_nsec / 1000000u;
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const struct sp_upstream *u = &rt->upstreams[i];
        if (!dup_to(&st->upstreams[i].name, u->conf->name))
            return -ENOMEM;
        st->upstreams[i].balance = sp_balance_name(u->conf->balance);
        st->upstreams[i].nservers = u->nservers;
        const struct sp_health_conf *hc = &u->conf->health;
        st->upstreams[i].check = !hc->enabled ? "off" : hc->http.enabled ? "http" : "tcp";
        st->upstreams[i].all_down = sp_upstream_all_down(u);
        st->upstreams[i].fail_open = u->conf->all_down == SP_ALL_DOWN_FAIL_OPEN;
        st->upstreams[i].on_server_down = sp_on_server_down_name(u->conf->on_server_down);
        st->upstreams[i].shutdown_spread_ms = u->conf->shutdown_spread_ms;
        for (size_t j = 0; j < u->nservers; j++) {
            if (fill_server(&st->servers[st->nservers], u, &u->servers[j], now, wall_ms) != 0)
                return -ENOMEM;
            st->nservers++;
        }
    }
    return 0;
}

static void fill_relay(struct sp_stats *st, const struct sp_worker *workers, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        st->per_worker[i].connections = SP_STAT_GET(workers[i].accepted);
        st->per_worker[i].active = SP_STAT_GET(workers[i].nsessions);
        const struct sp_relay_ctx *r = &workers[i].relay;
        const struct sp_pipe_pool *p = &workers[i].pipes;
        st->splice_bytes += SP_STAT_GET(r->splice_bytes);
        st->copy_bytes += SP_STAT_GET(r->copy_bytes);
        st->copy_fallbacks += SP_STAT_GET(r->copy_fallbacks);
        st->pipes_idle += SP_STAT_GET(p->nfree);
        st->pipes_in_use += SP_STAT_GET(p->in_use);
        st->pipes_created += SP_STAT_GET(p->created);
        st->pipes_shrunk += SP_STAT_GET(p->shrunk);
        st->pipe_failures += SP_STAT_GET(p->failures);
        st->pipes_over_budget += SP_STAT_GET(p->over_budget);
    }
}

int sp_snapshot_collect(const struct sp_snapshot_src *src, struct sp_stats **out)
{
    struct sp_stats *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return -ENOMEM;
    if (fill_listeners(st, src->rt) != 0 || fill_upstreams(st, src->rt) != 0)
        goto fail;
    if (src->last_reload_error != NULL && !dup_to(&st->last_reload_error, src->last_reload_error))
        goto fail;
    st->per_worker = calloc(src->nworkers + 1, sizeof(*st->per_worker));
    if (st->per_worker == NULL)
        goto fail;
    fill_relay(st, src->workers, src->nworkers);
    if (src->pipes != NULL) {
        st->pipe_memory = atomic_load_explicit(&src->pipes->used, RLX);
        st->pipe_memory_limit = atomic_load_explicit(&src->pipes->limit, RLX);
    }
    st->version = SPLICER_VERSION;
    st->workers = src->nworkers;
    st->access_log_dropped = src->access_log_dropped;
    st->draining = src->draining;
    st->start_time_unix = src->start_unix;
    st->config_generation = src->rt->generation;
    st->reloads_ok = src->reloads_ok;
    st->reloads_failed = src->reloads_failed;
    st->last_reload_ok = src->last_reload_ok;
    st->last_reload_unix = src->last_reload_unix;
    st->pid = (unsigned)getpid();
    if (src->control_socket != NULL && !dup_to(&st->control_socket, src->control_socket))
        goto fail;
    st->takeovers_ok = src->takeovers_ok;
    st->takeovers_failed = src->takeovers_failed;
    st->inherited_systemd = src->inherited[0];
    st->inherited_takeover = src->inherited[1];
    st->took_over_from = src->took_over_from;
    *out = st;
    return 0;

fail:
    sp_stats_free(st);
    return -ENOMEM;
}
