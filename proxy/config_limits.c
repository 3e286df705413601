/* config_limits.c: the `limits:` block of a listener (see config_limits.h): per-client
 * connection and rate limits, what "one client" means (the prefix lengths) and the size of the
 * table that tracks them, each with its bounds and messages. */
#include "config_limits.h"
#include "common.h"
#include "parse.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* "N/s" or "N/m": connections per second or per minute. */
static int p_rate(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val, void *obj,
                  const char *what)
{
    struct sp_limits_conf *lc = obj;
    const char *s;
    char num[24];
    uint64_t n;
    (void)f;

    int rc = sp_cfg_scalar(w, val, what, &s);
    if (rc != 0)
        return rc;
    const char *slash = strchr(s, '/');
    bool per_s = slash != NULL && strcmp(slash + 1, "s") == 0;
    bool per_m = slash != NULL && strcmp(slash + 1, "m") == 0;
    size_t len = slash != NULL ? (size_t)(slash - s) : 0;
    if ((!per_s && !per_m) || len == 0 || len >= sizeof(num))
        return sp_cfg_fail(w, val->start_mark,
                           "invalid rate '%.64s' for %s (expected connections per second or per "
                           "minute, as in 50/s or 600/m)",
                           s, what);
    memcpy(num, s, len);
    num[len] = '\0';
    rc = sp_parse_uint(num, 1, per_s ? SP_LIMITS_RATE_S_MAX : SP_LIMITS_RATE_M_MAX, &n);
    if (rc == -EINVAL)
        return sp_cfg_fail(w, val->start_mark,
                           "invalid rate '%.64s' for %s (expected connections per second or per "
                           "minute, as in 50/s or 600/m)",
                           s, what);
    if (rc != 0)
        return sp_cfg_fail(w, val->start_mark,
                           "rate '%.64s' for %s is out of range (1/s..%u/s, or 1/m..%u/m)", s, what,
                           SP_LIMITS_RATE_S_MAX, SP_LIMITS_RATE_M_MAX);
    lc->rate = (unsigned)n;
    lc->rate_period_ms = per_s ? 1000 : 60000;
    return 0;
}

/* The table's size: a power of two, so that a slot is a mask of the hash. */
static int p_tracked(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                     void *obj, const char *what)
{
    struct sp_limits_conf *lc = obj;
    int rc = sp_cfg_parse_uint(w, f, val, obj, what);
    if (rc != 0)
        return rc;
    unsigned n = lc->tracked_sources;
    if ((n & (n - 1)) != 0)
        return sp_cfg_fail(w, val->start_mark,
                           "%s must be a power of two (such as 16384, 65536 or 262144)", what);
    return 0;
}

static const struct sp_cfg_field limits_fields[] = {
    {.key = "per_source_connections",
     .parse = sp_cfg_parse_uint,
     .off = offsetof(struct sp_limits_conf, per_source_connections),
     .min = 1,
     .max = SP_LIMITS_CONN_MAX},
    {.key = "per_source_rate", .parse = p_rate},
    {.key = "source_prefix_v4",
     .parse = sp_cfg_parse_uint,
     .off = offsetof(struct sp_limits_conf, source_prefix_v4),
     .max = 32},
    {.key = "source_prefix_v6",
     .parse = sp_cfg_parse_uint,
     .off = offsetof(struct sp_limits_conf, source_prefix_v6),
     .max = 128},
    {.key = "tracked_sources",
     .parse = p_tracked,
     .off = offsetof(struct sp_limits_conf, tracked_sources),
     .min = SP_LIMITS_TRACKED_MIN,
     .max = SP_LIMITS_TRACKED_MAX},
};

int sp_cfg_parse_limits(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                        void *obj, const char *what)
{
    struct sp_listener_conf *l = obj;
    struct sp_limits_conf *lc = &l->limits;
    char where[128];
    (void)f;

    int rc = sp_cfg_expect(w, val, YAML_MAPPING_NODE, what);
    if (rc != 0)
        return rc;
    *lc = (struct sp_limits_conf){
        .enabled = true,
        .source_prefix_v4 = 32,
        .source_prefix_v6 = 64,
        .tracked_sources = SP_LIMITS_TRACKED_DFLT,
        .mark = {(int)val->start_mark.line + 1, (int)val->start_mark.column + 1},
    };
    snprintf(where, sizeof(where), "limits of listener '%.64s'", l->name);
    rc = sp_cfg_walk_map(w, val, limits_fields, SP_ARRAY_LEN(limits_fields), lc, where,
                         val->start_mark);
    if (rc != 0)
        return rc;
    if (lc->per_source_connections == 0 && lc->rate == 0)
        return sp_cfg_fail(w, val->start_mark,
                           "%s sets no limit: add per_source_connections or per_source_rate, or "
                           "remove the block",
                           what);
    return 0;
}
