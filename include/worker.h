/* worker.h: one event-loop thread. A worker owns its loop, its listening sockets (one per
 * configured listener, bound with SO_REUSEPORT), its sessions, its pipe pool and its balancer
 * state; nothing it owns is touched by another thread. The main thread talks to it only
 * through sp_worker_drain/sp_worker_force (an atomic command plus a uv_async wake-up). */
#ifndef SPLICER_WORKER_H
#define SPLICER_WORKER_H

#include "balancer.h"
#include "common.h"
#include "pipe_pool.h"
#include "relay.h"
#include "runtime.h"
#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

struct sp_listener;
struct sp_session;

enum sp_worker_cmd {
    SP_WORKER_RUN = 0,
    SP_WORKER_DRAIN, /* close listeners; exit once the last session has closed */
    SP_WORKER_FORCE, /* close every session now and exit */
};

typedef void (*sp_worker_exit_fn)(struct sp_worker *w, void *arg);

struct sp_worker {
    int id;
    struct sp_runtime *rt; /* borrowed; outlives the worker */
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wakeup;         /* main thread -> worker: look at `cmd` */
    _Atomic int cmd;           /* enum sp_worker_cmd, only ever raised */
    int applied_cmd;           /* what the worker has acted on */
    sp_worker_exit_fn on_exit; /* called on the worker thread just before it returns */
    void *on_exit_arg;

    struct sp_listener *listeners; /* owned array, parallel to rt->cfg->listeners */
    size_t nlisteners;
    struct sp_balancer *balancers; /* owned array, parallel to rt->upstreams */
    size_t nbalancers;

    struct sp_pipe_pool pipes;
    struct sp_relay_ctx relay;

    struct sp_session *sessions; /* owned list of open sessions */
    unsigned nsessions;
    int spare_fd; /* held open so that at the fd cap one accept can still be refused cleanly */
    bool loop_inited;
};

/* Builds worker `id` for `rt` and binds its listening sockets. Nothing runs yet. Errors name
 * the failing listener in the log. Returns 0 or -errno; on failure the worker holds nothing.
 * Main thread. */
int sp_worker_init(struct sp_worker *w, int id, struct sp_runtime *rt, sp_worker_exit_fn on_exit,
                   void *arg);

/* Starts the worker's thread. Returns 0 or -errno. Main thread. */
int sp_worker_start(struct sp_worker *w);

/* Ask the worker to stop accepting and finish when its sessions have closed. Any thread. */
void sp_worker_drain(struct sp_worker *w);

/* Ask the worker to close everything now. Any thread. */
void sp_worker_force(struct sp_worker *w);

/* Waits for the thread and frees what the worker owns. Main thread, after the exit callback. */
void sp_worker_join(struct sp_worker *w);

/* Frees a worker that was initialised but never started. */
void sp_worker_deinit(struct sp_worker *w);

/* Called by the session when it closes, so a draining worker can finish. Worker thread. */
void sp_worker_session_closed(struct sp_worker *w);

#endif
