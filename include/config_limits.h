/* config_limits.h: internal to the config module. The parser of a listener's `limits:` block
 * (per-client limits, see srclimit.h): its keys, the rate syntax (N/s, N/m) and their bounds. */
#ifndef SPLICER_CONFIG_LIMITS_H
#define SPLICER_CONFIG_LIMITS_H

#include "config.h"
#include "config_yaml.h"

/* Bounds of the limits block, shared with the messages and the README. */
#define SP_LIMITS_CONN_MAX     1000000u  /* per_source_connections */
#define SP_LIMITS_RATE_S_MAX   1000000u  /* per_source_rate N/s */
#define SP_LIMITS_RATE_M_MAX   60000000u /* per_source_rate N/m */
#define SP_LIMITS_TRACKED_MIN  1024u     /* tracked_sources */
#define SP_LIMITS_TRACKED_MAX  4194304u
#define SP_LIMITS_TRACKED_DFLT 65536u

/* `limits` of the listener obj: a mapping of per_source_connections, per_source_rate,
 * source_prefix_v4, source_prefix_v6 and tracked_sources into obj's sp_limits_conf, with the
 * defaults for the keys left out. A block that sets neither limit is an error (it would track
 * clients for nothing). */
int sp_cfg_parse_limits(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                        void *obj, const char *what);

#endif
