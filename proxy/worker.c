/* worker.c: an event-loop thread with its listeners, sessions, pipe pool and balancers. */
#include "worker.h"

#include "listener.h"
#include "log.h"
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

/* Idle pipes kept ready at start, so the first connections skip pipe2(). */
#define PIPE_PREFILL 4
/* Copy buffers (64 KiB each) kept idle per worker. */
#define COPY_BUFS_KEPT 16

static void on_wakeup(uv_async_t *a);

static void free_members(struct sp_worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        sp_listener_unbind(&w->listeners[i]);
    free(w->listeners);
    w->listeners = NULL;
    for (size_t i = 0; i < w->nbalancers; i++)
        sp_balancer_deinit(&w->balancers[i]);
    free(w->balancers);
    w->balancers = NULL;
    sp_relay_ctx_deinit(&w->relay);
    sp_pipe_pool_deinit(&w->pipes);
    if (w->spare_fd != -1) {
        close(w->spare_fd);
        w->spare_fd = -1;
    }
    if (w->loop_inited) {
        uv_loop_close(&w->loop);
        w->loop_inited = false;
    }
}

static int build(struct sp_worker *w)
{
    const struct sp_config *cfg = w->rt->cfg;
    w->balancers = calloc(cfg->nupstreams, sizeof(*w->balancers));
    w->listeners = calloc(cfg->nlisteners, sizeof(*w->listeners));
    if (w->balancers == NULL || w->listeners == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        /* Different seeds so workers' random choices do not move in lockstep. */
        uint64_t seed = 0x9e3779b97f4a7c15ull * (uint64_t)(w->id + 1) + (uint64_t)i;
        int rc = sp_balancer_init(&w->balancers[i], &w->rt->upstreams[i], seed);
        if (rc != 0)
            return rc;
        w->nbalancers++;
    }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct sp_listener_conf *lc = &cfg->listeners[i];
        size_t up = (size_t)(lc->upstream - cfg->upstreams);
        int rc = sp_listener_bind(&w->listeners[i], w, lc, &w->rt->listener[i],
                                  &w->rt->upstreams[up], &w->balancers[up]);
        if (rc != 0)
            return rc;
        w->nlisteners++;
    }
    return 0;
}

int sp_worker_init(struct sp_worker *w, int id, struct sp_runtime *rt, sp_worker_exit_fn on_exit,
                   void *arg)
{
    *w = (struct sp_worker){.id = id, .rt = rt, .on_exit = on_exit, .on_exit_arg = arg};
    w->spare_fd = -1;
    const struct sp_config *cfg = rt->cfg;
    sp_pipe_pool_init(&w->pipes, (uint32_t)cfg->pipe_size, cfg->pipe_pool_max);
    sp_relay_ctx_init(&w->relay, &w->pipes, COPY_BUFS_KEPT);

    int rc = uv_loop_init(&w->loop);
    if (rc != 0)
        goto fail;
    w->loop_inited = true;
    rc = uv_async_init(&w->loop, &w->wakeup, on_wakeup);
    if (rc != 0)
        goto fail;
    w->wakeup.data = w;
    rc = build(w);
    if (rc != 0)
        goto fail;
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    sp_pipe_pool_prefill(&w->pipes, SP_MIN(PIPE_PREFILL, cfg->pipe_pool_max));
    return 0;

fail:
    if (w->loop_inited) {
        /* The async handle must be closed and its callback run before the loop can close. */
        if (uv_is_active((uv_handle_t *)&w->wakeup))
            uv_close((uv_handle_t *)&w->wakeup, NULL);
        uv_run(&w->loop, UV_RUN_NOWAIT);
    }
    free_members(w);
    return rc;
}

void sp_worker_deinit(struct sp_worker *w)
{
    uv_close((uv_handle_t *)&w->wakeup, NULL);
    uv_run(&w->loop, UV_RUN_NOWAIT);
    free_members(w);
}

/* Everything is closed: closing the wake-up handle lets uv_run return. A late
 * sp_worker_force from the main thread is harmless: it only writes to the loop's eventfd,
 * which stays open until sp_worker_join closes the loop. */
static void finish(struct sp_worker *w)
{
    if (!uv_is_closing((uv_handle_t *)&w->wakeup))
        uv_close((uv_handle_t *)&w->wakeup, NULL);
}

static void close_listeners(struct sp_worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        sp_listener_close(&w->listeners[i]);
}

static void on_wakeup(uv_async_t *a)
{
    struct sp_worker *w = a->data;
    int cmd = atomic_load_explicit(&w->cmd, memory_order_acquire);
    if (cmd == w->applied_cmd)
        return;
    w->applied_cmd = cmd;
    close_listeners(w);
    if (cmd == SP_WORKER_FORCE) {
        while (w->sessions != NULL)
            sp_session_abort(w->sessions);
    }
    if (w->nsessions == 0)
        finish(w);
}

void sp_worker_session_closed(struct sp_worker *w)
{
    if (w->applied_cmd != SP_WORKER_RUN && w->nsessions == 0)
        finish(w);
}

static void run(void *arg)
{
    struct sp_worker *w = arg;
    sp_log_set_thread_id(w->id);
    for (size_t i = 0; i < w->nlisteners; i++) {
        int rc = sp_listener_start(&w->listeners[i]);
        if (rc != 0)
            sp_log_error("listener %s: cannot poll: %s", w->listeners[i].conf->name,
                         uv_strerror(rc));
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (w->on_exit != NULL)
        w->on_exit(w, w->on_exit_arg);
}

int sp_worker_start(struct sp_worker *w)
{
    return uv_thread_create(&w->thread, run, w);
}

static void command(struct sp_worker *w, int cmd)
{
    int cur = atomic_load_explicit(&w->cmd, memory_order_acquire);
    while (cur < cmd && !atomic_compare_exchange_weak_explicit(
                            &w->cmd, &cur, cmd, memory_order_acq_rel, memory_order_acquire)) {
    }
    uv_async_send(&w->wakeup);
}

void sp_worker_drain(struct sp_worker *w)
{
    command(w, SP_WORKER_DRAIN);
}

void sp_worker_force(struct sp_worker *w)
{
    command(w, SP_WORKER_FORCE);
}

void sp_worker_join(struct sp_worker *w)
{
    uv_thread_join(&w->thread);
    free_members(w);
}
