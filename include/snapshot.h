/* snapshot.h: copying the live counters of a running splicer into a struct sp_stats. */
#ifndef SPLICER_SNAPSHOT_H
#define SPLICER_SNAPSHOT_H

#include "runtime.h"
#include "stats.h"
#include "worker.h"

/* What the server hands over for one snapshot; everything borrowed for the call. */
struct sp_snapshot_src {
    struct sp_runtime *rt;           /* the config in force (a reference held by the caller) */
    const struct sp_worker *workers; /* their relay and pipe counters are read atomically */
    unsigned nworkers;
    const struct sp_pipe_budget *pipes; /* the process's pipe memory; NULL reads as 0 */
    uint64_t access_log_dropped;        /* sp_access_log_dropped */
    bool draining;
    uint64_t start_unix;
    uint64_t reloads_ok;
    uint64_t reloads_failed;
    bool last_reload_ok;
    const char *last_reload_error; /* NULL when none */
    uint64_t last_reload_unix;
    const char *control_socket; /* NULL when off */
    uint64_t takeovers_ok, takeovers_failed;
    unsigned inherited[2]; /* listening sockets from systemd, from the old process */
    uint32_t took_over_from;
};

/* Builds a snapshot (free with sp_stats_free). Returns 0 or -ENOMEM. Any thread: it reads only
 * atomics and the immutable config. */
int sp_snapshot_collect(const struct sp_snapshot_src *src, struct sp_stats **out);

#endif
