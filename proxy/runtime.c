/* runtime.c: builds the shared live model (upstream pools, listener counters) from a config,
 * sharing server state and listener counters with the previous one on reload, and counts its
 * references. */
#include "runtime.h"

#include "sock.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static void stats_unref(struct sp_listener_stats *st)
{
    if (st != NULL && atomic_fetch_sub(&st->refs, 1) == 1) {
        free(st->bytes);
        free(st);
    }
}

/* Frees what the runtime built; the config only when `own_cfg`. Copes with a half-built one:
 * sp_upstream_deinit accepts the zeroed entries calloc left. */
static void runtime_release(struct sp_runtime *rt, bool own_cfg)
{
    for (size_t i = 0; i < rt->nresolved; i++)
        free(rt->resolved[i].address);
    free(rt->resolved);
    if (rt->upstreams != NULL) {
        for (size_t i = 0; i < rt->cfg->nupstreams; i++)
            sp_upstream_deinit(&rt->upstreams[i]);
    }
    if (rt->listener != NULL) {
        for (size_t i = 0; i < rt->cfg->nlisteners; i++)
            stats_unref(rt->listener[i]);
    }
    if (rt->srclimit != NULL) {
        for (size_t i = 0; i < rt->cfg->nlisteners; i++)
            sp_srclimit_unref(rt->srclimit[i]);
    }
    free(rt->upstreams);
    free(rt->listener);
    free(rt->srclimit);
    if (rt->cfg_owner != NULL)
        sp_runtime_unref(rt->cfg_owner);
    else if (own_cfg)
        sp_config_free(rt->cfg);
    free(rt);
}

static struct sp_listener_stats *find_stats(const struct sp_runtime *prev, const char *name)
{
    for (size_t i = 0; prev != NULL && i < prev->cfg->nlisteners; i++) {
        if (strcmp(prev->cfg->listeners[i].name, name) == 0)
            return prev->listener[i];
    }
    return NULL;
}

static int build_listener_stats(struct sp_runtime *rt, const struct sp_runtime *prev)
{
    for (size_t i = 0; i < rt->cfg->nlisteners; i++) {
        struct sp_listener_stats *st = find_stats(prev, rt->cfg->listeners[i].name);
        if (st == NULL) {
            st = calloc(1, sizeof(*st));
            if (st == NULL)
                return -ENOMEM;
            st->nworkers = rt->cfg->workers;
            st->bytes = calloc(st->nworkers, sizeof(*st->bytes));
            if (st->bytes == NULL) {
                free(st);
                return -ENOMEM;
            }
        }
        atomic_fetch_add(&st->refs, 1);
        rt->listener[i] = st;
    }
    return 0;
}

/* The tables of the listeners with limits: prev's for the same listener name when it fits the
 * new size and prefixes (connections open under prev then still count, and release what they
 * took from that same table), a new one otherwise. */
static int build_srclimits(struct sp_runtime *rt, const struct sp_runtime *prev)
{
    for (size_t i = 0; i < rt->cfg->nlisteners; i++) {
        const struct sp_listener_conf *lc = &rt->cfg->listeners[i];
        const struct sp_limits_conf *lim = &lc->limits;
        if (!lim->enabled)
            continue;
        struct sp_srclimit *old = NULL;
        for (size_t j = 0; prev != NULL && j < prev->cfg->nlisteners; j++) {
            if (strcmp(prev->cfg->listeners[j].name, lc->name) == 0)
                old = prev->srclimit[j];
        }
        if (old != NULL && sp_srclimit_fits(old, lim->tracked_sources, lim->source_prefix_v4,
                                            lim->source_prefix_v6)) {
            rt->srclimit[i] = sp_srclimit_ref(old);
            continue;
        }
        int rc = sp_srclimit_new(lim->tracked_sources, lim->source_prefix_v4, lim->source_prefix_v6,
                                 &rt->srclimit[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static const struct sp_upstream *find_upstream(const struct sp_runtime *rt, const char *name)
{
    for (size_t i = 0; rt != NULL && i < rt->cfg->nupstreams; i++) {
        if (strcmp(rt->upstreams[i].conf->name, name) == 0)
            return &rt->upstreams[i];
    }
    return NULL;
}

/* The state of the server called `name` in `prev` (the same upstream of the runtime before),
 * or NULL for a server that is new. prev is alive while the successor is built, so the state
 * cannot go away between this lookup and the reference the new server takes. */
static struct sp_server_state *prev_state(const struct sp_upstream *prev, const char *name)
{
    for (size_t j = 0; prev != NULL && j < prev->nservers; j++) {
        if (strcmp(prev->servers[j].name, name) == 0)
            return prev->servers[j].state;
    }
    return NULL;
}

static size_t count_resolved(const struct sp_config *cfg, const struct sp_resolved *res)
{
    size_t n = 0;
    for (size_t u = 0; res != NULL && u < cfg->nupstreams; u++) {
        for (size_t j = 0; j < cfg->upstreams[u].nservers; j++) {
            if (cfg->upstreams[u].servers[j].needs_resolve)
                n += sp_resolved_get(res, cfg, u, j)->n;
        }
    }
    return n;
}

/* A named server's conf, as one of its addresses: the server's weight and role under the
 * numeric address as its name (so state carries over by address across DNS changes). */
static int resolved_conf(struct sp_server_conf *out, const struct sp_server_conf *named,
                         const struct sockaddr_storage *addr)
{
    char text[SP_ADDRSTRLEN];
    *out = *named;
    out->host = NULL; /* the named conf keeps its own */
    out->needs_resolve = false;
    out->addr = *addr;
    out->addrlen =
        addr->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    out->address = strdup(sp_sock_addr_str((const struct sockaddr *)addr, text, sizeof(text)));
    return out->address != NULL ? 0 : -ENOMEM;
}

/* The servers of upstream u: configured ones as they are, named ones once per address. A server
 * that `prev` has too (same upstream name and server name) shares its state. */
static int build_upstream(struct sp_runtime *rt, size_t u, const struct sp_runtime *prev,
                          const struct sp_resolved *res)
{
    const struct sp_upstream_conf *uc = &rt->cfg->upstreams[u];
    size_t n = 0;
    for (size_t j = 0; j < uc->nservers; j++)
        n += uc->servers[j].needs_resolve
                 ? (res != NULL ? sp_resolved_get(res, rt->cfg, u, j)->n : 0)
                 : 1;
    const struct sp_server_conf **list = calloc(n + 1, sizeof(*list));
    struct sp_server_state **states = calloc(n + 1, sizeof(*states));
    if (list == NULL || states == NULL) {
        free(list);
        free(states);
        return -ENOMEM;
    }
    size_t k = 0;
    int rc = 0;
    for (size_t j = 0; j < uc->nservers && rc == 0; j++) {
        const struct sp_server_conf *sc = &uc->servers[j];
        if (!sc->needs_resolve) {
            list[k++] = sc;
            continue;
        }
        const struct sp_addr_list *l = res != NULL ? sp_resolved_get(res, rt->cfg, u, j) : NULL;
        for (size_t a = 0; l != NULL && a < l->n && rc == 0; a++) {
            struct sp_server_conf *rc_conf = &rt->resolved[rt->nresolved];
            rc = resolved_conf(rc_conf, sc, &l->v[a]);
            if (rc == 0) {
                rt->nresolved++;
                list[k++] = rc_conf;
            }
        }
    }
    const struct sp_upstream *old = find_upstream(prev, uc->name);
    for (size_t i = 0; i < k; i++)
        states[i] = prev_state(old, list[i]->address);
    if (rc == 0)
        rc = sp_upstream_init_servers(&rt->upstreams[u], uc, list, states, k, rt->cfg->workers);
    free(states);
    free(list);
    return rc;
}

/* Builds everything but the config, which the caller has set (owned or borrowed). */
static int build(struct sp_runtime *rt, const struct sp_runtime *prev,
                 const struct sp_resolved *res)
{
    const struct sp_config *cfg = rt->cfg;
    atomic_init(&rt->refs, 1);
    rt->generation = prev != NULL ? prev->generation + 1 : 1;
    rt->upstreams = calloc(cfg->nupstreams, sizeof(*rt->upstreams));
    rt->listener = calloc(cfg->nlisteners, sizeof(*rt->listener));
    rt->srclimit = calloc(cfg->nlisteners, sizeof(*rt->srclimit));
    size_t nres = count_resolved(cfg, res);
    rt->resolved = calloc(nres + 1, sizeof(*rt->resolved));
    if (rt->upstreams == NULL || rt->listener == NULL || rt->srclimit == NULL ||
        rt->resolved == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        if (build_upstream(rt, i, prev, res) != 0)
            return -ENOMEM;
    }
    if (build_listener_stats(rt, prev) != 0 || build_srclimits(rt, prev) != 0)
        return -ENOMEM;
    return 0;
}

int sp_runtime_new(struct sp_config *cfg, const struct sp_runtime *prev,
                   const struct sp_resolved *res, struct sp_runtime **out)
{
    struct sp_runtime *rt = calloc(1, sizeof(*rt));
    if (rt == NULL)
        return -ENOMEM;
    rt->cfg = cfg;
    if (build(rt, prev, res) != 0) {
        runtime_release(rt, false); /* on failure the config stays the caller's */
        return -ENOMEM;
    }
    *out = rt;
    return 0;
}

int sp_runtime_refresh(struct sp_runtime *cur, const struct sp_resolved *res,
                       struct sp_runtime **out)
{
    struct sp_runtime *rt = calloc(1, sizeof(*rt));
    if (rt == NULL)
        return -ENOMEM;
    rt->cfg = cur->cfg;
    rt->cfg_owner = sp_runtime_ref(cur->cfg_owner != NULL ? cur->cfg_owner : cur);
    if (build(rt, cur, res) != 0) {
        runtime_release(rt, false);
        return -ENOMEM;
    }
    *out = rt;
    return 0;
}

struct sp_runtime *sp_runtime_ref(struct sp_runtime *rt)
{
    atomic_fetch_add_explicit(&rt->refs, 1, memory_order_relaxed);
    return rt;
}

void sp_runtime_unref(struct sp_runtime *rt)
{
    if (rt != NULL && atomic_fetch_sub_explicit(&rt->refs, 1, memory_order_acq_rel) == 1)
        runtime_release(rt, true);
}

struct sp_srclimit *sp_runtime_srclimit(const struct sp_runtime *rt,
                                        const struct sp_listener_conf *lc)
{
    return rt->srclimit[lc - rt->cfg->listeners];
}

struct sp_server *sp_runtime_find_server(struct sp_runtime *rt, const char *upstream,
                                         const char *address)
{
    for (size_t i = 0; rt != NULL && i < rt->cfg->nupstreams; i++) {
        struct sp_upstream *u = &rt->upstreams[i];
        if (strcmp(u->conf->name, upstream) != 0)
            continue;
        for (size_t j = 0; j < u->nservers; j++) {
            if (strcmp(u->servers[j].name, address) == 0)
                return &u->servers[j];
        }
    }
    return NULL;
}
