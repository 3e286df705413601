/* resolver.h: servers given by DNS name (`address: name:port`). Names are resolved through the
 * system resolver (so /etc/hosts works): once, blocking, when a config is loaded, then every
 * `dns_refresh` on libuv's thread pool so the relay never waits. Every A/AAAA record becomes a
 * server. A failed lookup keeps the last good set. A changed set is reported to the server,
 * which builds a new runtime generation from it. Main thread only. */
#ifndef SPLICER_RESOLVER_H
#define SPLICER_RESOLVER_H

#include "config.h"
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

struct sp_addr_list {
    struct sockaddr_storage *v; /* owned; sorted, no duplicates */
    size_t n;
};

/* The address lists of one config's servers, in config order over all upstreams; only entries
 * of servers with needs_resolve are used. */
struct sp_resolved {
    struct sp_addr_list *lists; /* owned array */
    size_t n;
};

/* The list of server `s` of upstream `u`. */
const struct sp_addr_list *sp_resolved_get(const struct sp_resolved *r, const struct sp_config *cfg,
                                           size_t u, size_t s);

/* Resolves every named server of cfg now, blocking. A name that fails resolves to no address
 * (logged; the next refresh tries again). Returns 0 or -ENOMEM. */
int sp_resolved_load(const struct sp_config *cfg, struct sp_resolved *out);

void sp_resolved_deinit(struct sp_resolved *r);

typedef void (*sp_resolver_change_fn)(void *arg);

struct sp_resolver;

/* Starts the periodic refresh of cfg's named servers into *res (borrowed; updated in place, and
 * `changed` called after each update). Returns 0 with *out NULL when cfg names no server. */
int sp_resolver_start(uv_loop_t *loop, const struct sp_config *cfg, struct sp_resolved *res,
                      sp_resolver_change_fn changed, void *arg, struct sp_resolver **out);

/* Stops refreshing; lookups in flight are cancelled and the memory goes with the last
 * callback. NULL is a no-op. */
void sp_resolver_stop(struct sp_resolver *r);

#endif
