/* runtime.c: builds the shared live model (upstream pools, listener counters) from a config,
 * carrying state over from the previous one on reload, and counts its references. */
#include "runtime.h"

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
    if (rt->upstreams != NULL) {
        for (size_t i = 0; i < rt->cfg->nupstreams; i++)
            sp_upstream_deinit(&rt->upstreams[i]);
    }
    if (rt->listener != NULL) {
        for (size_t i = 0; i < rt->cfg->nlisteners; i++)
            stats_unref(rt->listener[i]);
    }
    free(rt->upstreams);
    free(rt->listener);
    if (own_cfg)
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

static void carry_servers(struct sp_runtime *rt, const struct sp_runtime *prev)
{
    for (size_t i = 0; i < rt->cfg->nupstreams; i++) {
        struct sp_upstream *u = &rt->upstreams[i];
        for (size_t j = 0; j < u->nservers; j++) {
            struct sp_server *old = sp_runtime_find_server((struct sp_runtime *)prev, u->conf->name,
                                                           u->servers[j].name);
            if (old != NULL)
                sp_server_carry(&u->servers[j], old);
        }
    }
}

int sp_runtime_new(struct sp_config *cfg, const struct sp_runtime *prev, struct sp_runtime **out)
{
    struct sp_runtime *rt = calloc(1, sizeof(*rt));
    if (rt == NULL)
        return -ENOMEM;
    rt->cfg = cfg;
    atomic_init(&rt->refs, 1);
    rt->generation = prev != NULL ? prev->generation + 1 : 1;
    rt->upstreams = calloc(cfg->nupstreams, sizeof(*rt->upstreams));
    rt->listener = calloc(cfg->nlisteners, sizeof(*rt->listener));
    if (rt->upstreams == NULL || rt->listener == NULL)
        goto fail;
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        if (sp_upstream_init(&rt->upstreams[i], &cfg->upstreams[i]) != 0)
            goto fail;
    }
    if (build_listener_stats(rt, prev) != 0)
        goto fail;
    if (prev != NULL)
        carry_servers(rt, prev);
    *out = rt;
    return 0;

fail:
    runtime_release(rt, false); /* on failure the config stays the caller's */
    return -ENOMEM;
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

struct sp_upstream *sp_runtime_upstream(struct sp_runtime *rt, const struct sp_upstream_conf *uc)
{
    return &rt->upstreams[uc - rt->cfg->upstreams];
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
