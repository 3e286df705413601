/* server.c: the main thread. It owns the runtime and the workers, and its own small loop
 * handles signals: the first SIGTERM/SIGINT drains (listeners close, open connections finish
 * within shutdown_timeout), a second one or the timeout closes everything at once. */
#include "server.h"

#include "health.h"
#include "log.h"
#include "runtime.h"
#include "worker.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct server {
    struct sp_runtime *rt;     /* owned */
    struct sp_worker *workers; /* owned array */
    struct sp_health *health;  /* owned; NULL without health checks */
    unsigned nworkers;
    _Atomic unsigned exited;
    bool stopping;
    uv_loop_t loop;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    uv_async_t worker_exited; /* worker thread -> main: one more worker has finished */
    uv_timer_t shutdown_timer;
};

static void worker_exit(struct sp_worker *w, void *arg)
{
    struct server *srv = arg;
    (void)w;
    atomic_fetch_add(&srv->exited, 1);
    uv_async_send(&srv->worker_exited);
}

static void force_all(struct server *srv)
{
    for (unsigned i = 0; i < srv->nworkers; i++)
        sp_worker_force(&srv->workers[i]);
}

static void on_shutdown_timeout(uv_timer_t *t)
{
    struct server *srv = t->data;
    sp_log_warn("shutdown_timeout reached: closing the remaining connections");
    force_all(srv);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct server *srv = h->data;
    if (srv->stopping) {
        sp_log_warn("%s again: closing every connection now", strsignal(signum));
        force_all(srv);
        return;
    }
    srv->stopping = true;
    sp_log_info("%s: no longer accepting; waiting up to %llu ms for open connections",
                strsignal(signum), (unsigned long long)srv->rt->cfg->shutdown_timeout_ms);
    for (unsigned i = 0; i < srv->nworkers; i++)
        sp_worker_drain(&srv->workers[i]);
    uv_timer_start(&srv->shutdown_timer, on_shutdown_timeout, srv->rt->cfg->shutdown_timeout_ms, 0);
}

static void close_loop_handles(struct server *srv)
{
    sp_health_stop(srv->health);
    srv->health = NULL;
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
    uv_close((uv_handle_t *)&srv->shutdown_timer, NULL);
    uv_close((uv_handle_t *)&srv->worker_exited, NULL);
}

static void on_worker_exited(uv_async_t *a)
{
    struct server *srv = a->data;
    if (atomic_load(&srv->exited) == srv->nworkers)
        close_loop_handles(srv); /* uv_run returns once they have closed */
}

static int start_workers(struct server *srv)
{
    unsigned n = srv->rt->cfg->workers;
    srv->workers = calloc(n, sizeof(*srv->workers));
    if (srv->workers == NULL)
        return -ENOMEM;
    /* Bind every worker's sockets before any thread runs, so a bad address stops the start
     * with nothing half-running. */
    for (unsigned i = 0; i < n; i++) {
        int rc = sp_worker_init(&srv->workers[i], (int)i, srv->rt, worker_exit, srv);
        if (rc != 0) {
            while (i-- > 0)
                sp_worker_deinit(&srv->workers[i]);
            return rc;
        }
    }
    srv->nworkers = n;
    for (unsigned i = 0; i < n; i++) {
        int rc = sp_worker_start(&srv->workers[i]);
        if (rc != 0) {
            /* Threads that did start are stopped and joined; the rest are freed. */
            for (unsigned j = 0; j < i; j++)
                sp_worker_force(&srv->workers[j]);
            for (unsigned j = 0; j < i; j++)
                sp_worker_join(&srv->workers[j]);
            for (unsigned j = i; j < n; j++)
                sp_worker_deinit(&srv->workers[j]);
            srv->nworkers = 0;
            return rc;
        }
    }
    return 0;
}

static int init_loop(struct server *srv)
{
    int rc = uv_loop_init(&srv->loop);
    if (rc != 0)
        return rc;
    uv_signal_init(&srv->loop, &srv->sigterm);
    uv_signal_init(&srv->loop, &srv->sigint);
    uv_timer_init(&srv->loop, &srv->shutdown_timer);
    uv_async_init(&srv->loop, &srv->worker_exited, on_worker_exited);
    srv->sigterm.data = srv->sigint.data = srv;
    srv->shutdown_timer.data = srv->worker_exited.data = srv;
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    /* The shutdown timer must not keep the loop alive on its own. */
    uv_unref((uv_handle_t *)&srv->shutdown_timer);
    return 0;
}

static void log_started(const struct sp_config *cfg)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct sp_listener_conf *l = &cfg->listeners[i];
        sp_log_info("listener %s: %s -> upstream %s (%zu servers, %s)", l->name, l->listen,
                    l->upstream->name, l->upstream->nservers, sp_relay_mode_name(l->relay));
    }
    sp_log_info("splicer %s started: %u worker%s", SPLICER_VERSION, cfg->workers,
                cfg->workers == 1 ? "" : "s");
}

int sp_server_run(struct sp_config *cfg)
{
    struct server srv = {0};
    /* A peer that closed makes splice()/send() raise SIGPIPE; the error return is enough. */
    signal(SIGPIPE, SIG_IGN);

    int rc = sp_runtime_new(cfg, &srv.rt);
    if (rc != 0) {
        sp_log_error("cannot build the runtime: %s", uv_strerror(rc));
        sp_config_free(cfg);
        return 1;
    }
    rc = init_loop(&srv);
    if (rc != 0) {
        sp_log_error("cannot start the main loop: %s", uv_strerror(rc));
        sp_runtime_free(srv.rt);
        return 1;
    }
    rc = start_workers(&srv);
    if (rc != 0) {
        sp_log_error("cannot start: %s", uv_strerror(rc));
        close_loop_handles(&srv);
    } else {
        log_started(srv.rt->cfg);
        rc = sp_health_start(&srv.loop, srv.rt, &srv.health);
        if (rc != 0) {
            sp_log_error("cannot start health checks: %s", uv_strerror(rc));
            srv.stopping = true;
            for (unsigned i = 0; i < srv.nworkers; i++)
                sp_worker_force(&srv.workers[i]);
        }
    }
    uv_run(&srv.loop, UV_RUN_DEFAULT);

    for (unsigned i = 0; i < srv.nworkers; i++)
        sp_worker_join(&srv.workers[i]);
    uv_loop_close(&srv.loop);
    free(srv.workers);
    sp_runtime_free(srv.rt);
    if (rc == 0)
        sp_log_info("stopped");
    return rc == 0 ? 0 : 1;
}
