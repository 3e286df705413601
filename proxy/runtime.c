/* runtime.c: builds the shared live model (upstream pools, listener counters) from a config. */
#include "runtime.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

/* Frees what the runtime built; the config only when `own_cfg`. Copes with a half-built one:
 * sp_upstream_deinit accepts the zeroed entries calloc left. */
static void runtime_release(struct sp_runtime *rt, bool own_cfg)
{
    if (rt->upstreams != NULL) {
        for (size_t i = 0; i < rt->cfg->nupstreams; i++)
            sp_upstream_deinit(&rt->upstreams[i]);
    }
    free(rt->upstreams);
    free(rt->listener);
    if (own_cfg)
        sp_config_free(rt->cfg);
    free(rt);
}

int sp_runtime_new(struct sp_config *cfg, struct sp_runtime **out)
{
    struct sp_runtime *rt = calloc(1, sizeof(*rt));
    if (rt == NULL)
        return -ENOMEM;
    rt->cfg = cfg;
    rt->upstreams = calloc(cfg->nupstreams, sizeof(*rt->upstreams));
    rt->listener = calloc(cfg->nlisteners, sizeof(*rt->listener));
    if (rt->upstreams == NULL || rt->listener == NULL)
        goto fail;
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        if (sp_upstream_init(&rt->upstreams[i], &cfg->upstreams[i]) != 0)
            goto fail;
    }
    *out = rt;
    return 0;

fail:
    runtime_release(rt, false); /* on failure the config stays the caller's */
    return -ENOMEM;
}

void sp_runtime_free(struct sp_runtime *rt)
{
    if (rt != NULL)
        runtime_release(rt, true);
}

struct sp_upstream *sp_runtime_upstream(struct sp_runtime *rt, const struct sp_upstream_conf *uc)
{
    return &rt->upstreams[uc - rt->cfg->upstreams];
}
