/* worker.c: an event-loop thread with its listeners, sessions, pipe pool and balancers, and
 * the generations that let a config reload take effect without touching open connections. */
#include "worker.h"

#include "listener.h"
#include "log.h"
#include "session.h"
#include "tls_sni.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Idle pipes kept ready at start, so the first connections skip pipe2(). */
#define PIPE_PREFILL 4
/* Copy buffers (64 KiB each) kept idle per worker. */
#define COPY_BUFS_KEPT 16

static void on_wakeup(uv_async_t *a);

/* ---- generations ------------------------------------------------------------------------- */

static void gen_free(struct sp_wgen *g)
{
    for (size_t i = 0; i < g->nbalancers; i++)
        sp_balancer_deinit(&g->balancers[i]);
    free(g->balancers);
    sp_runtime_unref(g->rt);
    free(g);
}

static void gen_retire(struct sp_wgen *g)
{
    g->retired = true;
    if (g->nsessions == 0)
        gen_free(g);
}

/* The balancer of upstream `name` in generation g, or NULL. */
static const struct sp_balancer *gen_balancer(const struct sp_wgen *g, const char *name)
{
    for (size_t i = 0; g != NULL && i < g->nbalancers; i++) {
        if (strcmp(g->balancers[i].up->conf->name, name) == 0)
            return &g->balancers[i];
    }
    return NULL;
}

/* Takes over the reference `rt`. Each balancer goes on from the current generation's balancer
 * of the same upstream. Returns NULL (having dropped it) when out of memory. */
static struct sp_wgen *gen_new(struct sp_worker *w, struct sp_runtime *rt)
{
    struct sp_wgen *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        sp_runtime_unref(rt);
        return NULL;
    }
    g->rt = rt;
    g->balancers = calloc(rt->cfg->nupstreams, sizeof(*g->balancers));
    if (g->balancers == NULL) {
        gen_free(g);
        return NULL;
    }
    for (size_t i = 0; i < rt->cfg->nupstreams; i++) {
        /* Different seeds so workers' random choices do not move in lockstep. */
        uint64_t seed = 0x9e3779b97f4a7c15ull * (uint64_t)(w->id + 1) + rt->generation * 31 + i;
        if (sp_balancer_init(&g->balancers[i], &rt->upstreams[i], seed) != 0) {
            gen_free(g);
            return NULL;
        }
        g->nbalancers++;
        sp_balancer_carry(&g->balancers[i], gen_balancer(w->gen, rt->upstreams[i].conf->name));
    }
    return g;
}

/* ---- listeners across configs ------------------------------------------------------------ */

static void close_fds(int *fds, size_t n)
{
    for (size_t i = 0; fds != NULL && i < n; i++) {
        if (fds[i] != -1)
            close(fds[i]);
    }
    free(fds);
}

/* The current listener bound to the same address as `conf`, taken out of the old array. */
static struct sp_listener *take_kept(struct sp_worker *w, const struct sp_listener_conf *conf)
{
    for (size_t j = 0; j < w->nlisteners; j++) {
        struct sp_listener *l = w->listeners[j];
        if (l != NULL && sp_listener_same_addr(l->conf, conf)) {
            w->listeners[j] = NULL;
            return l;
        }
    }
    return NULL;
}

static void retarget(struct sp_listener *l, struct sp_wgen *gen, size_t i)
{
    struct sp_runtime *rt = gen->rt;
    const struct sp_listener_conf *lc = &rt->cfg->listeners[i];
    size_t up = (size_t)(lc->upstream - rt->cfg->upstreams);
    sp_listener_retarget(l, gen, lc, rt->listener[i], &rt->upstreams[up], &gen->balancers[up]);
}

/* A worker can accept on more than one socket of a listener: after a binary upgrade to fewer
 * workers, the sockets the old process passed on outnumber the workers, and closing one would
 * drop the connections in its accept queue (sp_worker_add_listener). Such extra sockets stay
 * for as long as the config has a listener on their address. Appends them to ls after the n
 * listeners of the config; returns the new count. */
static size_t keep_extra(struct sp_worker *w, struct sp_wgen *gen, struct sp_listener **ls,
                         size_t n)
{
    size_t total = n;
    const struct sp_config *cfg = gen->rt->cfg;
    for (size_t j = 0; j < w->nlisteners; j++) {
        struct sp_listener *l = w->listeners[j];
        for (size_t i = 0; l != NULL && i < n; i++) {
            if (ls[i] != NULL && sp_listener_same_addr(l->conf, &cfg->listeners[i])) {
                retarget(l, gen, i);
                ls[total++] = l;
                w->listeners[j] = NULL;
                l = NULL;
            }
        }
    }
    return total;
}

static void retire_listeners(struct sp_worker *w)
{
    for (size_t j = 0; j < w->nlisteners; j++) {
        if (w->listeners[j] != NULL)
            sp_listener_retire(w->listeners[j]);
    }
    free(w->listeners);
    w->listeners = NULL;
    w->nlisteners = 0;
}

/* Switches the worker to `rt` (reference taken over) with `fds` (taken over; -1 = keep the
 * listener on that address). Listeners not in the new config close; sessions stay on the
 * generation they started in. Returns 0 or -ENOMEM (the old config then stays in force). */
static int apply_config(struct sp_worker *w, struct sp_runtime *rt, int *fds)
{
    size_t n = rt->cfg->nlisteners;
    /* Room for the extra sockets (see keep_extra) the worker may keep as well. */
    struct sp_listener **ls = calloc(n + w->nlisteners + 1, sizeof(*ls));
    struct sp_wgen *gen = ls != NULL ? gen_new(w, rt) : NULL;
    if (gen == NULL) {
        if (ls == NULL)
            sp_runtime_unref(rt);
        free(ls);
        close_fds(fds, n);
        return -ENOMEM;
    }
    const struct sp_config *cfg = rt->cfg;
    for (size_t i = 0; i < n; i++) {
        const struct sp_listener_conf *lc = &cfg->listeners[i];
        struct sp_listener *l = fds[i] == -1 ? take_kept(w, lc) : sp_listener_start(w, fds[i]);
        fds[i] = -1; /* owned by the listener now, or closed by it on failure */
        if (l == NULL) {
            sp_log_error("listener %s: not serving on this worker", lc->name);
            continue;
        }
        retarget(l, gen, i);
        ls[i] = l;
    }
    free(fds);
    size_t total = keep_extra(w, gen, ls, n);
    retire_listeners(w); /* what was not taken over */
    w->listeners = ls;
    w->nlisteners = total;
    if (w->gen != NULL)
        gen_retire(w->gen);
    w->gen = gen;
    w->pipes.want_size = w->pipes.try_size = (uint32_t)cfg->pipe_size;
    return 0;
}

/* ---- life cycle -------------------------------------------------------------------------- */

static void free_members(struct sp_worker *w)
{
    free(w->listeners); /* every listener has retired and freed itself by now */
    w->listeners = NULL;
    if (w->gen != NULL) {
        gen_free(w->gen);
        w->gen = NULL;
    }
    if (w->pending_rt != NULL) {
        close_fds(w->pending_fds, w->pending_rt->cfg->nlisteners);
        sp_runtime_unref(w->pending_rt);
        w->pending_rt = NULL;
    }
    sp_access_buf_deinit(&w->alog);
    free(w->scratch);
    w->scratch = NULL;
    sp_relay_ctx_deinit(&w->relay);
    sp_pipe_pool_deinit(&w->pipes);
    if (w->spare_fd != -1) {
        close(w->spare_fd);
        w->spare_fd = -1;
    }
    if (w->loop_inited) {
        uv_loop_close(&w->loop);
        uv_mutex_destroy(&w->lock);
        w->loop_inited = false;
    }
}

/* Runs the loop just long enough for the close callbacks of handles closed outside it. */
static void close_unstarted(struct sp_worker *w)
{
    retire_listeners(w);
    if (!uv_is_closing((uv_handle_t *)&w->wakeup)) {
        uv_close((uv_handle_t *)&w->wakeup, NULL);
        uv_close((uv_handle_t *)&w->alog_timer, NULL);
        uv_close((uv_handle_t *)&w->shed_timer, NULL);
        if (w->poller.epfd != -1)
            sp_poller_close(&w->poller, NULL);
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    free_members(w);
}

int sp_worker_init(struct sp_worker *w, int id, struct sp_runtime *rt, int *fds,
                   struct sp_access_log *alog, struct sp_pipe_budget *pipes,
                   sp_worker_exit_fn on_exit, void *arg)
{
    *w = (struct sp_worker){.id = id, .on_exit = on_exit, .on_exit_arg = arg, .spare_fd = -1};
    const struct sp_config *cfg = rt->cfg;
    sp_pipe_pool_init(&w->pipes, (uint32_t)cfg->pipe_size, cfg->pipe_pool_max);
    sp_pipe_pool_set_budget(&w->pipes, pipes);
    w->scratch = malloc(SP_SNI_BUF_MAX);
    if (w->scratch == NULL) {
        sp_runtime_unref(rt);
        close_fds(fds, cfg->nlisteners);
        return -ENOMEM;
    }
    sp_relay_ctx_init(&w->relay, &w->pipes, COPY_BUFS_KEPT);

    int rc = uv_loop_init(&w->loop);
    if (rc == 0) {
        rc = sp_poller_init(&w->poller, &w->loop, sp_session_event, sp_session_resume);
        if (rc != 0)
            uv_loop_close(&w->loop);
    }
    if (rc != 0) {
        sp_runtime_unref(rt);
        close_fds(fds, cfg->nlisteners);
        free_members(w); /* the loop is not marked as initialised: only memory is freed */
        return rc;
    }
    uv_mutex_init(&w->lock);
    w->loop_inited = true;
    uv_async_init(&w->loop, &w->wakeup, on_wakeup);
    w->wakeup.data = w;
    sp_access_buf_init(&w->alog, alog);
    uv_timer_init(&w->loop, &w->alog_timer);
    w->alog_timer.data = w;
    uv_timer_init(&w->loop, &w->shed_timer);
    w->shed_timer.data = w;

    size_t n = cfg->nlisteners;
    rc = apply_config(w, rt, fds);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (w->listeners[i] == NULL)
            rc = -EIO; /* logged by apply_config: at start, every listener must serve */
    }
    if (rc != 0) {
        close_unstarted(w);
        return rc;
    }
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    sp_pipe_pool_prefill(&w->pipes, SP_MIN(PIPE_PREFILL, cfg->pipe_pool_max));
    return 0;
}

void sp_worker_deinit(struct sp_worker *w)
{
    close_unstarted(w);
}

/* Everything is closed: closing the wake-up handle lets uv_run return. The main thread may
 * still signal it afterwards; that only writes to the loop's eventfd, which stays open until
 * sp_worker_join closes the loop. */
static void finish(struct sp_worker *w)
{
    if (!uv_is_closing((uv_handle_t *)&w->wakeup)) {
        uv_close((uv_handle_t *)&w->wakeup, NULL);
        uv_close((uv_handle_t *)&w->alog_timer, NULL);
        uv_close((uv_handle_t *)&w->shed_timer, NULL);
        sp_poller_close(&w->poller, NULL); /* every session, so every socket, is closed */
        sp_access_buf_flush(&w->alog);
    }
}

static void on_alog_timer(uv_timer_t *t)
{
    struct sp_worker *w = t->data;
    sp_access_buf_flush(&w->alog);
}

void sp_worker_access_log(struct sp_worker *w, const struct sp_access_entry *e,
                          enum sp_log_format format)
{
    /* Lines wait at most this long; a busy worker hands over full buffers well before. */
    enum { FLUSH_DELAY_MS = 200 };
    if (sp_access_buf_add(&w->alog, e, format) && !uv_is_active((uv_handle_t *)&w->alog_timer) &&
        !uv_is_closing((uv_handle_t *)&w->alog_timer))
        uv_timer_start(&w->alog_timer, on_alog_timer, FLUSH_DELAY_MS, 0);
}

/* Copies of the worker's listening sockets for a binary upgrade. Under w->lock, so that the
 * requester can cancel and free `ex` at any time. */
static void export_listeners(struct sp_worker *w, struct sp_listen_export *ex)
{
    ex->fds = malloc((w->nlisteners + 1) * sizeof(*ex->fds));
    ex->n = 0;
    for (size_t i = 0; ex->fds != NULL && i < w->nlisteners; i++) {
        int fd = w->listeners[i] != NULL ? fcntl(w->listeners[i]->fd, F_DUPFD_CLOEXEC, 3) : -1;
        if (fd != -1)
            ex->fds[ex->n++] = fd;
    }
    ex->failed = ex->fds == NULL;
    atomic_store(&ex->done, true);
    uv_async_send(w->export_done);
}

static void on_wakeup(uv_async_t *a)
{
    struct sp_worker *w = a->data;
    uv_mutex_lock(&w->lock);
    if (w->export != NULL) {
        export_listeners(w, w->export);
        w->export = NULL;
    }
    int cmd = w->cmd;
    struct sp_runtime *rt = w->pending_rt;
    int *fds = w->pending_fds;
    w->pending_rt = NULL;
    w->pending_fds = NULL;
    uv_mutex_unlock(&w->lock);

    if (rt != NULL) {
        if (cmd == SP_WORKER_RUN && apply_config(w, rt, fds) == 0)
            sp_log_debug("config generation %llu in force", (unsigned long long)rt->generation);
        else if (cmd != SP_WORKER_RUN) {
            close_fds(fds, rt->cfg->nlisteners);
            sp_runtime_unref(rt);
        }
    }
    if (atomic_exchange(&w->shed_pending, false))
        sp_worker_shed_scan(w);
    if (cmd == w->applied_cmd)
        return;
    w->applied_cmd = cmd;
    retire_listeners(w);
    if (cmd == SP_WORKER_FORCE) {
        while (w->sessions != NULL)
            sp_session_abort(w->sessions);
    }
    if (SP_STAT_GET(w->nsessions) == 0)
        finish(w);
}

void sp_worker_session_closed(struct sp_worker *w, struct sp_wgen *gen)
{
    gen->nsessions--;
    if (gen->retired && gen->nsessions == 0)
        gen_free(gen);
    if (w->applied_cmd != SP_WORKER_RUN && SP_STAT_GET(w->nsessions) == 0)
        finish(w);
}

static void run(void *arg)
{
    struct sp_worker *w = arg;
    sp_log_set_thread_id(w->id);
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
    uv_mutex_lock(&w->lock);
    if (w->cmd < cmd)
        w->cmd = cmd;
    uv_mutex_unlock(&w->lock);
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

/* A reload superseded before the worker applied it: the newer one wins, but a socket the
 * older one bound for an address the newer one "keeps" is the one to keep. */
static void merge_superseded(struct sp_runtime *old_rt, int *old_fds, struct sp_runtime *rt,
                             int *fds)
{
    for (size_t i = 0; i < rt->cfg->nlisteners; i++) {
        for (size_t j = 0; fds[i] == -1 && j < old_rt->cfg->nlisteners; j++) {
            if (old_fds[j] != -1 &&
                sp_listener_same_addr(&old_rt->cfg->listeners[j], &rt->cfg->listeners[i])) {
                fds[i] = old_fds[j];
                old_fds[j] = -1;
            }
        }
    }
    close_fds(old_fds, old_rt->cfg->nlisteners);
    sp_runtime_unref(old_rt);
}

void sp_worker_reload(struct sp_worker *w, struct sp_runtime *rt, int *fds)
{
    uv_mutex_lock(&w->lock);
    if (w->pending_rt != NULL)
        merge_superseded(w->pending_rt, w->pending_fds, rt, fds);
    w->pending_rt = rt;
    w->pending_fds = fds;
    uv_mutex_unlock(&w->lock);
    uv_async_send(&w->wakeup);
}

void sp_worker_join(struct sp_worker *w)
{
    uv_thread_join(&w->thread);
    free_members(w);
}

int sp_worker_add_listener(struct sp_worker *w, size_t li, int fd)
{
    struct sp_listener **ls = realloc(w->listeners, (w->nlisteners + 1) * sizeof(*ls));
    if (ls == NULL) {
        close(fd);
        return -ENOMEM;
    }
    w->listeners = ls;
    struct sp_listener *l = sp_listener_start(w, fd);
    if (l == NULL)
        return -EIO;
    retarget(l, w->gen, li);
    ls[w->nlisteners++] = l;
    return 0;
}

void sp_worker_export(struct sp_worker *w, struct sp_listen_export *ex, uv_async_t *done)
{
    uv_mutex_lock(&w->lock);
    atomic_store(&ex->done, false);
    w->export = ex;
    w->export_done = done;
    uv_mutex_unlock(&w->lock);
    uv_async_send(&w->wakeup);
}

bool sp_worker_export_cancel(struct sp_worker *w, struct sp_listen_export *ex)
{
    uv_mutex_lock(&w->lock);
    if (w->export == ex)
        w->export = NULL;
    bool done = atomic_load(&ex->done);
    uv_mutex_unlock(&w->lock);
    return done;
}
