/* runtime.h: the live model built from one config snapshot and shared read-mostly by every
 * thread: the config itself, the upstream pools with their servers, and the cross-worker
 * listener counters that enforce max_connections.
 *
 * A runtime is reference-counted: the server holds one reference for the current config, and
 * each worker generation holds one for as long as connections accepted under it are open, so
 * a reload never pulls a config out from under a live connection. No libuv. */
#ifndef SPLICER_RUNTIME_H
#define SPLICER_RUNTIME_H

#include "config.h"
#include "resolver.h"
#include "srclimit.h"
#include "upstream.h"
#include <stdatomic.h>
#include <stdint.h>

/* Counters of one configured listener, summed over its per-worker sockets. Shared by name
 * between a runtime and the next, so counts and the max_connections accounting run on across
 * reloads. */
struct sp_listener_bytes {
    /* [0] client to server ("upstream"), [1] server to client ("downstream"); one slot per
     * worker, each written by its worker only and padded to its own cache line. */
    _Atomic uint64_t v[2];
    char pad[64 - 2 * sizeof(uint64_t)];
};

struct sp_listener_stats {
    _Atomic unsigned refs; /* runtimes holding it */
    unsigned nworkers;
    struct sp_listener_bytes *bytes; /* owned array of nworkers */
    _Atomic uint32_t active;         /* connections open now (for max_connections) */
    _Atomic uint64_t accepted;       /* connections accepted and served */
    _Atomic uint64_t over_max;       /* closed at once: over max_connections */
    _Atomic uint64_t fd_exhausted;   /* closed at once: out of file descriptors */
    _Atomic uint64_t denied;         /* refused by allow/deny */
    _Atomic uint64_t malformed;      /* a malformed PROXY header or TLS ClientHello */
    _Atomic uint64_t untrusted;      /* closed unread: a peer outside proxy_protocol_from */
    _Atomic uint64_t over_src_conn;  /* closed at once: over limits.per_source_connections */
    _Atomic uint64_t over_src_rate;  /* closed at once: over limits.per_source_rate */
    _Atomic uint64_t src_untracked;  /* admitted without per-source limits: the table was full */
};

struct sp_runtime {
    _Atomic unsigned refs;
    uint64_t generation;             /* 1 at start, +1 per reload or changed DNS answer */
    struct sp_config *cfg;           /* owned, or borrowed from cfg_owner */
    struct sp_runtime *cfg_owner;    /* a reference when cfg is borrowed (a DNS refresh) */
    struct sp_server_conf *resolved; /* owned: one conf per resolved address of named servers */
    size_t nresolved;
    struct sp_upstream *upstreams;       /* owned, parallel to cfg->upstreams */
    struct sp_listener_stats **listener; /* each referenced; parallel to cfg->listeners */
    /* each referenced, NULL for a listener without limits; parallel to cfg->listeners. Shared by
     * listener name with the previous runtime while the table's size and prefixes stay. */
    struct sp_srclimit **srclimit;
};

/* Builds the runtime for `cfg` with one reference, taking ownership of cfg on success only.
 * Servers given by name become one server per address in `res` (NULL when cfg names none).
 * With `prev`, state is shared, never copied: listener counters by listener name, the per-client
 * table of a listener's limits by name when its tracked_sources and prefixes are unchanged, and the
 * sp_server_state of servers with the same upstream name and server name (the address, numeric
 * for a server given by name). What is written through prev's objects after this call, before
 * or after the new runtime is published, is therefore seen by the new one too (a drain, a
 * counted connection, `active`). Returns 0 or -ENOMEM. Main thread. */
int sp_runtime_new(struct sp_config *cfg, const struct sp_runtime *prev,
                   const struct sp_resolved *res, struct sp_runtime **out);

/* The next generation of `cur` for changed DNS answers: the same config (borrowed, kept alive
 * by a reference to its owner) with the servers of `res`. Returns 0 or -ENOMEM. Main thread. */
int sp_runtime_refresh(struct sp_runtime *cur, const struct sp_resolved *res,
                       struct sp_runtime **out);

/* Takes a reference. Any thread. */
struct sp_runtime *sp_runtime_ref(struct sp_runtime *rt);

/* Drops a reference; the last one frees the runtime and its config. NULL is a no-op. Any
 * thread. */
void sp_runtime_unref(struct sp_runtime *rt);

/* The per-client table of listener `lc` (an element of rt->cfg->listeners), or NULL when it
 * has no limits. It lives as long as rt. Any thread. */
struct sp_srclimit *sp_runtime_srclimit(const struct sp_runtime *rt,
                                        const struct sp_listener_conf *lc);

/* The server of upstream `upstream` configured as `address`, or NULL. Changing its state
 * (e.g. a drain) changes it for every runtime built from rt afterwards, as they share it. */
struct sp_server *sp_runtime_find_server(struct sp_runtime *rt, const char *upstream,
                                         const char *address);

#endif
