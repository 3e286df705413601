/* worker.h: one event-loop thread. A worker owns its loop, its listening sockets (one per
 * configured listener, bound with SO_REUSEPORT), its sessions, its pipe pool and its balancer
 * state; nothing it owns is touched by another thread. The main thread talks to it through
 * sp_worker_drain/force/reload: a command under a mutex plus a uv_async wake-up.
 *
 * Config reloads create a new generation (runtime reference + balancers). New connections join
 * the current generation; a retired one is freed when its last connection closes. */
#ifndef SPLICER_WORKER_H
#define SPLICER_WORKER_H

#include "accesslog.h"
#include "balancer.h"
#include "common.h"
#include "log.h"
#include "pipe_pool.h"
#include "poller.h"
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

/* What connections accepted under one config see: the runtime and this worker's balancers. */
struct sp_wgen {
    struct sp_runtime *rt;         /* one reference, dropped when the generation is freed */
    struct sp_balancer *balancers; /* owned array, parallel to rt->upstreams */
    size_t nbalancers;
    unsigned nsessions; /* sessions started under this generation and still open */
    bool retired;       /* a newer generation took over: freed when nsessions reaches 0 */
};

typedef void (*sp_worker_exit_fn)(struct sp_worker *w, void *arg);

/* Copies of a worker's listening sockets, asked for by a binary upgrade (sp_worker_export). */
struct sp_listen_export {
    int *fds;          /* owned by the requester once done: close-on-exec duplicates */
    size_t n;          /* entries of fds */
    _Atomic bool done; /* filled (set by the worker under its lock) */
    bool failed;       /* out of memory */
};

struct sp_worker {
    int id;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wakeup;               /* main thread -> worker: look at the pending command */
    uv_mutex_t lock;                 /* guards cmd and the pending reload */
    int cmd;                         /* enum sp_worker_cmd, only ever raised; under lock */
    struct sp_runtime *pending_rt;   /* owned reference; under lock */
    int *pending_fds;                /* owned; under lock; see sp_worker_reload */
    struct sp_listen_export *export; /* borrowed; under lock; see sp_worker_export */
    uv_async_t *export_done;         /* borrowed; signalled once *export is filled */
    int applied_cmd;                 /* what the worker has acted on; worker thread only */
    sp_worker_exit_fn on_exit;       /* called on the worker thread just before it returns */
    void *on_exit_arg;

    struct sp_wgen *gen;            /* owned: the current generation */
    struct sp_listener **listeners; /* owned array of pointers, parallel to gen->rt listeners */
    size_t nlisteners;

    struct sp_pipe_pool pipes;
    struct sp_relay_ctx relay;

    struct sp_access_buf alog; /* access log lines not yet handed to the writer */
    uv_timer_t alog_timer;     /* hands a partial buffer over shortly after its first line */

    struct sp_poller poller; /* the relay sockets of every session, edge-triggered */

    /* on_server_down: shutdown (worker_shed.c) */
    _Atomic bool shed_pending; /* any thread -> worker: a server's sessions are to be shed */
    uv_timer_t shed_timer;     /* the next batch of resets */
    uint64_t shed_tick_ms;     /* least time between batches (sp_shed_tick_ms) */

    struct sp_session *sessions; /* owned list of open sessions */
    /* Written by the worker only (SP_STAT_ADD), read by the metrics scrape: */
    _Atomic unsigned nsessions; /* sessions open now */
    _Atomic uint64_t accepted;  /* connections this worker's listening sockets accepted */
    unsigned char *scratch;     /* owned; SP_SNI_BUF_MAX bytes for peeking at ClientHellos */
    int spare_fd; /* held open so that at the fd cap one accept can still be refused cleanly */
    struct sp_ratelimit local_error_log; /* out-of-fds warnings, one line a second */
    bool loop_inited;
};

/* Builds worker `id` for `rt` (takes the reference passed in) with `fds`, one bound listening
 * socket per configured listener (see sp_listener_bind; ownership passes, even on failure),
 * writing access log lines to `alog` (borrowed) and counting its pipes in `pipes` (borrowed, the
 * process's budget; it must outlive the worker). Nothing runs yet. Returns 0 or -errno. Main
 * thread. */
int sp_worker_init(struct sp_worker *w, int id, struct sp_runtime *rt, int *fds,
                   struct sp_access_log *alog, struct sp_pipe_budget *pipes,
                   sp_worker_exit_fn on_exit, void *arg);

/* Starts the worker's thread. Returns 0 or -errno. Main thread. */
int sp_worker_start(struct sp_worker *w);

/* Ask the worker to stop accepting and finish when its sessions have closed. Any thread. */
void sp_worker_drain(struct sp_worker *w);

/* Ask the worker to close everything now. Any thread. */
void sp_worker_force(struct sp_worker *w);

/* Hands the worker a new config: `rt` (a reference, taken over) and `fds` (malloc'd, taken
 * over), where fds[i] is a freshly bound socket for rt's listener i, or -1 when the worker's
 * listener on the same address is to be kept. Main thread. */
void sp_worker_reload(struct sp_worker *w, struct sp_runtime *rt, int *fds);

/* Adds one more accepting socket `fd` (ownership passes, even on failure) for the config's
 * listener `li`: a worker that takes over more sockets of a listener than the process has
 * workers keeps accepting on all of them (closing one would drop its accept queue). Kept
 * across reloads while the listener's address stays. Returns 0 or -errno. Main thread, after
 * sp_worker_init and before sp_worker_start. */
int sp_worker_add_listener(struct sp_worker *w, size_t li, int fd);

/* Asks the worker for copies of its listening sockets: it fills *ex (borrowed until done or
 * cancelled) on its own thread, then signals `done` (uv_async_send, any loop). Main thread. */
void sp_worker_export(struct sp_worker *w, struct sp_listen_export *ex, uv_async_t *done);

/* Withdraws an export request; returns ex->done: whether ex holds descriptors now (the
 * caller's to close either way once this returns). Main thread. */
bool sp_worker_export_cancel(struct sp_worker *w, struct sp_listen_export *ex);

/* Waits for the thread and frees what the worker owns. Main thread, after the exit callback. */
void sp_worker_join(struct sp_worker *w);

/* Frees a worker that was initialised but never started. Main thread. */
void sp_worker_deinit(struct sp_worker *w);

/* A server was marked for shedding (sp_server_shed_begin): the worker schedules resets for
 * its own sessions of it (worker_shed.c). Any thread. */
void sp_worker_shed(struct sp_worker *w);

/* The worker's side of sp_worker_shed, from its wake-up. Worker thread. */
void sp_worker_shed_scan(struct sp_worker *w);

/* Queues an access log line. Worker thread. */
void sp_worker_access_log(struct sp_worker *w, const struct sp_access_entry *e,
                          enum sp_log_format format);

/* A session of generation `gen` has closed, so a draining worker can finish and a retired
 * generation can go. Worker thread. */
void sp_worker_session_closed(struct sp_worker *w, struct sp_wgen *gen);

#endif
