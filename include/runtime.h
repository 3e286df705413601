/* runtime.h: the live model built from one config snapshot and shared read-mostly by every
 * thread: the config itself, the upstream pools with their servers, and the cross-worker
 * listener counters that enforce max_connections. No libuv. */
#ifndef SPLICER_RUNTIME_H
#define SPLICER_RUNTIME_H

#include "config.h"
#include "upstream.h"
#include <stdatomic.h>
#include <stdint.h>

/* Counters of one configured listener, summed over its per-worker sockets. */
struct sp_listener_stats {
    _Atomic uint32_t active;   /* connections open now (for max_connections) */
    _Atomic uint64_t accepted; /* connections accepted and served */
    _Atomic uint64_t rejected; /* closed at once: over max_connections or out of fds */
};

struct sp_runtime {
    struct sp_config *cfg;              /* owned */
    struct sp_upstream *upstreams;      /* owned, parallel to cfg->upstreams */
    struct sp_listener_stats *listener; /* owned, parallel to cfg->listeners */
};

/* Builds the runtime for `cfg`, taking ownership of it on success only. Returns 0 or -ENOMEM. */
int sp_runtime_new(struct sp_config *cfg, struct sp_runtime **out);

/* Frees the runtime and its config. NULL is a no-op. Only once no thread uses it. */
void sp_runtime_free(struct sp_runtime *rt);

/* The live pool of a configured upstream. */
struct sp_upstream *sp_runtime_upstream(struct sp_runtime *rt, const struct sp_upstream_conf *uc);

#endif
