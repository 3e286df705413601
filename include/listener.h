/* listener.h: one worker's accepting socket for one configured listener. Accepts in bounded
 * batches, enforces max_connections across workers through the shared listener counters, and
 * at the fd cap refuses one connection cleanly and pauses briefly instead of spinning. */
#ifndef SPLICER_LISTENER_H
#define SPLICER_LISTENER_H

#include "common.h"
#include "runtime.h"
#include <stdbool.h>
#include <uv.h>

struct sp_listener {
    struct sp_worker *worker;            /* borrowed */
    const struct sp_listener_conf *conf; /* borrowed from the runtime's config */
    struct sp_listener_stats *stats;     /* borrowed from the runtime */
    struct sp_upstream *upstream;        /* borrowed from the runtime */
    struct sp_balancer *balancer;        /* borrowed from the worker */
    int fd;                              /* owned; -1 once closed */
    uv_poll_t poll;
    uv_timer_t pause;  /* resumes accepting after an fd-exhaustion pause */
    bool handles_live; /* poll and pause initialised on the worker loop */
    /* Payload relayed by this worker's sessions: [0] client to server ("upstream"),
     * [1] server to client ("downstream"). Written by the worker, read by metrics. */
    _Atomic uint64_t bytes[2];
};

/* Binds the listening socket (SO_REUSEPORT). Loop handles are set up later by
 * sp_listener_start on the worker thread. Returns 0 or -errno. Main thread. */
int sp_listener_bind(struct sp_listener *l, struct sp_worker *w,
                     const struct sp_listener_conf *conf, struct sp_listener_stats *stats,
                     struct sp_upstream *up, struct sp_balancer *bal);

/* Starts accepting on the worker's loop. Returns 0 or -errno. Worker thread. */
int sp_listener_start(struct sp_listener *l);

/* Stops accepting and closes the socket (new connects are refused from now on). The handles
 * close asynchronously with the loop. Worker thread; idempotent. */
void sp_listener_close(struct sp_listener *l);

/* Closes the socket of a listener that was bound but never started. Main thread. */
void sp_listener_unbind(struct sp_listener *l);

#endif
