/* server.c: the main thread. It owns the current runtime, the workers, the health checks and
 * the admin endpoint, and its own small loop handles signals:
 *   SIGHUP          reload: parse, validate, bind new listeners, hand every worker the new
 *                   runtime; on any error the old config stays in force.
 *   SIGTERM/SIGINT  drain: listeners close, open connections finish within shutdown_timeout;
 *                   a second signal, or the timeout, closes everything at once. */
#include "server.h"

#include "accesslog.h"
#include "admin.h"
#include "adopt.h"
#include "control.h"
#include "health.h"
#include "listener.h"
#include "listener_unix.h"
#include "log.h"
#include "runtime.h"
#include "sdnotify.h"
#include "snapshot.h"
#include "sock.h"
#include "takeover.h"
#include "worker.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

struct server {
    uv_mutex_t lock;           /* guards rt and the reload record for the admin thread */
    struct sp_runtime *rt;     /* one reference: the config in force */
    struct sp_worker *workers; /* owned array */
    unsigned nworkers;
    struct sp_health *health;        /* owned; NULL without health checks */
    struct sp_admin *admin;          /* owned; NULL without an admin block */
    struct sp_access_log *alog;      /* owned: the access log writer */
    struct sp_resolved resolved;     /* owned: addresses of the servers given by name */
    struct sp_resolver *resolver;    /* owned; NULL when no server is given by name */
    struct sp_pipe_budget pipes;     /* the workers' pipe memory; its limit follows reloads */
    struct sp_unix_files unix_files; /* socket files of unix: listeners that we created */
    struct sp_unix_files claimed;    /* those taken over: ours once the takeover holds */
    uint64_t fd_fixed; /* descriptors open besides connections, pipes and listening sockets */
    struct sp_ratelimit shed_log; /* on_server_down: shutdown lines, a few a second */
    _Atomic unsigned exited;
    _Atomic bool stopping;
    uint64_t start_unix;

    /* reload record, under lock */
    uint64_t reloads_ok;
    uint64_t reloads_failed;
    bool last_reload_ok;
    char *last_reload_error; /* owned */
    uint64_t last_reload_unix;

    uv_loop_t loop;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    uv_signal_t sighup;
    uv_async_t worker_exited; /* worker thread -> main: one more worker has finished */
    uv_timer_t shutdown_timer;
    struct sp_sdnotify notify; /* systemd's READY/RELOADING/STOPPING/STATUS/WATCHDOG */

    /* binary upgrade and socket activation */
    struct sp_control *control;   /* owned; NULL without control_socket */
    struct sp_inherit *inherit;   /* borrowed until start returns: sockets handed to us */
    struct sp_takeover *takeover; /* owned until start returns; NULL without --takeover */
    unsigned inherited[SP_INHERIT_SOURCE_COUNT]; /* listening sockets taken from each */
    uint32_t took_over_from;                     /* the old process's pid; 0 if none */
    ino_t *shared_ino; /* owned: sockets every worker shares (systemd's), told on a takeover */
    size_t nshared;
};

/* ---- listening sockets ------------------------------------------------------------------- */

static void free_fd_sets(int **sets, unsigned nworkers, size_t nlisteners)
{
    for (unsigned w = 0; sets != NULL && w < nworkers; w++) {
        for (size_t i = 0; sets[w] != NULL && i < nlisteners; i++) {
            if (sets[w][i] != -1)
                close(sets[w][i]);
        }
        free(sets[w]);
    }
    free(sets);
}

static bool kept(const struct sp_config *old, const struct sp_listener_conf *lc)
{
    for (size_t j = 0; old != NULL && j < old->nlisteners; j++) {
        if (sp_listener_same_addr(&old->listeners[j], lc))
            return true;
    }
    return false;
}

/* A unix: listener has no SO_REUSEPORT: the first worker's socket is bound, and the others get
 * duplicates of it (listener_unix.h). */
static int bind_one(const struct sp_listener_conf *lc, int **sets, unsigned w, size_t i,
                    struct sp_unix_files *files)
{
    if (lc->addr.ss_family != AF_UNIX)
        return sp_listener_bind(lc);
    return w == 0 ? sp_listener_unix_bind(lc, files) : sp_listener_unix_share(lc, sets[0][i], w);
}

/* One socket per worker per listener of `cfg`, except -1 where `old` already listens on that
 * address (the worker keeps that socket). Binding everything before any worker switches means
 * a bad address leaves the running config untouched (and removes the socket files it made).
 * Returns NULL on failure (logged). */
static int **bind_all(const struct sp_config *cfg, const struct sp_config *old, unsigned nworkers,
                      struct sp_unix_files *files)
{
    int **sets = calloc(nworkers, sizeof(*sets));
    if (sets == NULL)
        return NULL;
    for (unsigned w = 0; w < nworkers; w++) {
        sets[w] = malloc(cfg->nlisteners * sizeof(**sets));
        if (sets[w] == NULL)
            goto fail;
        for (size_t i = 0; i < cfg->nlisteners; i++)
            sets[w][i] = -1;
        for (size_t i = 0; i < cfg->nlisteners; i++) {
            if (kept(old, &cfg->listeners[i]))
                continue;
            sets[w][i] = bind_one(&cfg->listeners[i], sets, w, i, files);
            if (sets[w][i] < 0) {
                sets[w][i] = -1;
                goto fail;
            }
        }
    }
    return sets;

fail:
    free_fd_sets(sets, nworkers, cfg->nlisteners);
    sp_unix_files_prune(files, old);
    return NULL;
}

/* ---- workers ------------------------------------------------------------------------------ */

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

/* Builds the workers on their listening sockets (inherited ones first: adopt.h); none runs
 * yet. On failure nothing is left open. */
static int init_workers(struct server *srv)
{
    unsigned n = srv->rt->cfg->workers;
    struct sp_adopted ad;
    srv->workers = calloc(n, sizeof(*srv->workers));
    if (srv->workers == NULL)
        return -ENOMEM;
    int rc = sp_adopt_listeners(srv->rt->cfg, n, srv->inherit, &srv->unix_files, &ad);
    if (rc != 0)
        return rc == -ENOMEM ? rc : -EADDRNOTAVAIL;
    unsigned made = 0;
    for (; made < n && rc == 0; made++) {
        rc = sp_worker_init(&srv->workers[made], (int)made, sp_runtime_ref(srv->rt), ad.sets[made],
                            srv->alog, &srv->pipes, worker_exit, srv);
        ad.sets[made] = NULL; /* taken over */
    }
    for (size_t i = 0; rc == 0 && i < ad.nextra; i++) {
        rc = sp_worker_add_listener(&srv->workers[ad.extra[i].worker], ad.extra[i].li,
                                    ad.extra[i].fd);
        ad.extra[i].fd = -1;
    }
    srv->shared_ino = ad.shared;
    srv->nshared = ad.nshared;
    ad.shared = NULL;
    srv->claimed = ad.claimed;
    ad.claimed = (struct sp_unix_files){0};
    sp_adopted_free(&ad, n, srv->rt->cfg->nlisteners);
    if (rc != 0) {
        for (unsigned i = 0; i < made; i++) {
            if (srv->workers[i].loop_inited) /* a worker that failed has freed itself */
                sp_worker_deinit(&srv->workers[i]);
        }
        return rc;
    }
    srv->nworkers = n;
    return 0;
}

static void deinit_workers(struct server *srv)
{
    for (unsigned i = 0; i < srv->nworkers; i++)
        sp_worker_deinit(&srv->workers[i]);
    srv->nworkers = 0;
}

static int run_workers(struct server *srv)
{
    unsigned n = srv->nworkers;
    for (unsigned i = 0; i < n; i++) {
        int rc = sp_worker_start(&srv->workers[i]);
        if (rc == 0)
            continue;
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
    return 0;
}

/* ---- on_server_down: shutdown ------------------------------------------------------------ */

/* s has been marked for shedding (sp_server_shed_begin): every worker resets its own sessions
 * of it. One line per event, unless servers go down by the dozen. */
static void shed_server(void *arg, struct sp_server *s, const char *why)
{
    struct server *srv = arg;
    struct sp_server_state *st = s->state;
    unsigned held;
    if (sp_ratelimit_pass(&srv->shed_log, sp_upstream_now_ms(), 200, &held)) {
        char more[64] = "";
        if (held > 0)
            snprintf(more, sizeof(more), "; %u more like this held back", held);
        sp_log_warn(
            "upstream %s: server %s %s: resetting its %u open sessions over %llu ms "
            "(on_server_down: shutdown%s)",
            s->upstream->conf->name, s->name, why,
            atomic_load_explicit(&st->active, memory_order_relaxed),
            (unsigned long long)atomic_load_explicit(&st->shed_spread_ms, memory_order_relaxed),
            more);
    }
    for (unsigned i = 0; i < srv->nworkers; i++)
        sp_worker_shed(&srv->workers[i]);
}

/* The servers of `old` that `rt` has no more (by shared state): shed under the policy of their
 * upstream in rt, or in old when rt has no upstream of that name. */
static void shed_removed(struct server *srv, struct sp_runtime *old, const struct sp_runtime *rt,
                         const char *why)
{
    uint64_t now = sp_upstream_now_ms();
    for (size_t i = 0; i < old->cfg->nupstreams; i++) {
        struct sp_upstream *o = &old->upstreams[i];
        const struct sp_upstream *u = NULL;
        for (size_t j = 0; j < rt->cfg->nupstreams && u == NULL; j++) {
            if (strcmp(rt->upstreams[j].conf->name, o->conf->name) == 0)
                u = &rt->upstreams[j];
        }
        for (size_t k = 0; k < o->nservers; k++) {
            bool kept = false;
            for (size_t j = 0; u != NULL && j < u->nservers && !kept; j++)
                kept = u->servers[j].state == o->servers[k].state;
            if (!kept && sp_server_shed_begin(&o->servers[k], u != NULL ? u->conf : o->conf, now))
                shed_server(srv, &o->servers[k], why);
        }
    }
}

/* ---- admin -------------------------------------------------------------------------------- */

static int admin_snapshot(void *ctx, struct sp_stats **out)
{
    struct server *srv = ctx;
    struct sp_snapshot_src src = {.workers = srv->workers,
                                  .nworkers = srv->nworkers,
                                  .pipes = &srv->pipes,
                                  .access_log_dropped = sp_access_log_dropped(srv->alog)};
    uv_mutex_lock(&srv->lock);
    src.rt = sp_runtime_ref(srv->rt);
    src.draining = atomic_load(&srv->stopping);
    src.start_unix = srv->start_unix;
    src.reloads_ok = srv->reloads_ok;
    src.reloads_failed = srv->reloads_failed;
    src.last_reload_ok = srv->last_reload_ok;
    src.last_reload_unix = srv->last_reload_unix;
    char *control = srv->control != NULL ? strdup(sp_control_path(srv->control)) : NULL;
    if (srv->control != NULL)
        sp_control_counts(srv->control, &src.takeovers_ok, &src.takeovers_failed);
    for (int i = 0; i < SP_INHERIT_SOURCE_COUNT; i++)
        src.inherited[i] = srv->inherited[i];
    src.took_over_from = srv->took_over_from;
    char *error = srv->last_reload_error != NULL ? strdup(srv->last_reload_error) : NULL;
    uv_mutex_unlock(&srv->lock);
    src.last_reload_error = error;
    src.control_socket = control;
    int rc = sp_snapshot_collect(&src, out);
    free(error);
    free(control);
    sp_runtime_unref(src.rt);
    return rc;
}

/* The server is looked up in the runtime in force. Its drained flag lives in the state every
 * later runtime shares, including one being built by a reload right now, so the drain holds
 * across that reload without anything to copy. */
static int admin_set_drain(void *ctx, const char *upstream, const char *address, bool drain)
{
    struct server *srv = ctx;
    uv_mutex_lock(&srv->lock);
    struct sp_server *s = sp_runtime_find_server(srv->rt, upstream, address);
    if (s != NULL)
        atomic_store(&s->state->drained, drain);
    uv_mutex_unlock(&srv->lock);
    if (s == NULL)
        return -ENOENT;
    sp_log_info("upstream %s: server %s %s by the admin endpoint", upstream, address,
                drain ? "drained" : "enabled");
    return 0;
}

static bool admin_draining(void *ctx)
{
    struct server *srv = ctx;
    return atomic_load(&srv->stopping);
}

static const struct sp_admin_ops admin_ops = {
    .snapshot = admin_snapshot,
    .set_drain = admin_set_drain,
    .draining = admin_draining,
};

static bool same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool same_admin(const struct sp_admin_conf *a, const struct sp_admin_conf *b)
{
    if (a->enabled != b->enabled)
        return false;
    return !a->enabled ||
           sp_sock_addr_equal((const struct sockaddr *)&a->addr, (const struct sockaddr *)&b->addr);
}

static int start_admin(struct server *srv, const struct sp_config *cfg)
{
    if (!cfg->admin.enabled)
        return 0;
    bool shared;
    int fd = srv->inherit != NULL
                 ? sp_inherit_take(srv->inherit, (const struct sockaddr *)&cfg->admin.addr, &shared)
                 : -1;
    int rc = sp_admin_start_fd(&cfg->admin, fd, &admin_ops, srv, &srv->admin);
    if (rc != 0)
        sp_log_error("admin: cannot listen on %s: %s", cfg->admin.listen, uv_strerror(rc));
    return rc;
}

/* ---- file descriptors --------------------------------------------------------------------- */

static uint64_t open_fds(void)
{
    uint64_t n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n > 0 ? n - 1 : 0; /* the directory's own descriptor */
}

/* What splicer holds whatever its traffic (stdio, event loops, the spare descriptors, the admin
 * endpoint, the access log), measured once it has started: what is open, less the listening
 * sockets and idle pipes, which the check counts from the config. */
static void measure_fd_fixed(struct server *srv)
{
    uint64_t n = open_fds(), idle = 0;
    for (unsigned i = 0; i < srv->nworkers; i++)
        idle += 2 * (uint64_t)atomic_load(&srv->workers[i].pipes.nfree);
    uint64_t listening = (uint64_t)srv->nworkers * srv->rt->cfg->nlisteners;
    srv->fd_fixed = n > idle + listening ? n - idle - listening : 0;
}

/* Warns when the listeners' max_connections cannot all be served within RLIMIT_NOFILE: each
 * connection takes 2 sockets and up to 2 pipes (4 descriptors) while a direction waits on its
 * destination, and each worker may keep pipe_pool_max idle pipes. */
static void check_fd_limit(const struct server *srv, const struct sp_config *cfg, const char *when)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return;
    uint64_t conns = 0;
    for (size_t i = 0; i < cfg->nlisteners; i++)
        conns += cfg->listeners[i].max_connections;
    uint64_t fixed = srv->fd_fixed + (uint64_t)srv->nworkers * cfg->nlisteners;
    uint64_t idle = 2 * (uint64_t)srv->nworkers * cfg->pipe_pool_max;
    uint64_t left = rl.rlim_cur > fixed + idle ? rl.rlim_cur - fixed - idle : 0;
    if (6 * conns <= left)
        return;
    sp_log_warn("file descriptors%s: the listeners' max_connections (%llu in all) need up to %llu "
                "descriptors (6 per connection: 2 sockets and up to 2 pipes), but %llu of the "
                "limit %llu are left once %llu are kept for splicer itself and %llu for idle "
                "pipes: about %llu connections can splice both ways and at most %llu can be "
                "open; raise the hard limit (ulimit -Hn, LimitNOFILE=, docker --ulimit nofile=) "
                "or lower max_connections",
                when, (unsigned long long)conns, (unsigned long long)(6 * conns),
                (unsigned long long)left, (unsigned long long)rl.rlim_cur,
                (unsigned long long)fixed, (unsigned long long)idle, (unsigned long long)(left / 6),
                (unsigned long long)(left / 2));
}

/* ---- reload ------------------------------------------------------------------------------- */

static void record_reload(struct server *srv, bool ok, const char *error)
{
    uv_mutex_lock(&srv->lock);
    if (ok)
        srv->reloads_ok++;
    else
        srv->reloads_failed++;
    srv->last_reload_ok = ok;
    free(srv->last_reload_error);
    srv->last_reload_error = error != NULL ? strdup(error) : NULL;
    srv->last_reload_unix = (uint64_t)time(NULL);
    uv_mutex_unlock(&srv->lock);
}

/* Publishes `rt` (reference taken over) to every worker with its new sockets. Nothing is
 * copied from the old runtime: rt shares its servers' state, so whatever the workers, the
 * admin endpoint and the checks write through the old one until they switch is not lost. */
static void publish(struct server *srv, struct sp_runtime *rt, int **sets, const char *why)
{
    for (unsigned i = 0; i < srv->nworkers; i++) {
        sp_worker_reload(&srv->workers[i], sp_runtime_ref(rt), sets[i]);
        sets[i] = NULL;
    }
    free(sets);
    uv_mutex_lock(&srv->lock);
    struct sp_runtime *old = srv->rt;
    srv->rt = rt;
    uv_mutex_unlock(&srv->lock);
    /* While `old` is still alive: the checks find their servers in rt through it. */
    if (srv->health != NULL && sp_health_update(srv->health, rt) != 0)
        sp_log_error("reload: out of memory; some servers are not health-checked");
    sp_health_log_all_down(old, rt);
    shed_removed(srv, old, rt, why);
    if (!same_admin(&old->cfg->admin, &rt->cfg->admin)) {
        sp_admin_stop(srv->admin);
        srv->admin = NULL;
        start_admin(srv, rt->cfg);
    } else if (srv->admin != NULL && sp_admin_reconfigure(srv->admin, &rt->cfg->admin) != 0) {
        sp_log_error("reload: out of memory; the admin endpoint keeps its old token");
    }
    int rc = sp_access_log_reconfigure(srv->alog, &rt->cfg->access_log);
    if (rc != 0)
        sp_log_error("reload: cannot open access log %s: %s; keeping the old one",
                     rt->cfg->access_log.path, uv_strerror(rc));
    sp_log_set_level(rt->cfg->log_level);
    sp_pipe_budget_set_limit(&srv->pipes, rt->cfg->pipe_memory_max);
    sp_runtime_unref(old);
}

static void on_dns_change(void *arg);

static void start_resolver(struct server *srv)
{
    if (sp_resolver_start(&srv->loop, srv->rt->cfg, &srv->resolved, on_dns_change, srv,
                          &srv->resolver) != 0)
        sp_log_error("cannot start DNS refresh: out of memory");
}

/* A name resolves differently: the same config with the new servers becomes the next
 * generation. Servers that stay share their state, health check and balancer position with the
 * new generation; removed ones finish their connections. */
static void on_dns_change(void *arg)
{
    struct server *srv = arg;
    if (atomic_load(&srv->stopping))
        return;
    struct sp_runtime *rt;
    int **sets = NULL;
    if (sp_runtime_refresh(srv->rt, &srv->resolved, &rt) != 0) {
        sp_log_error("DNS change: out of memory; keeping generation %llu",
                     (unsigned long long)srv->rt->generation);
        return;
    }
    sets = bind_all(rt->cfg, srv->rt->cfg, srv->nworkers,
                    &srv->unix_files); /* every listener is kept: all -1 */
    if (sets == NULL) {
        sp_runtime_unref(rt);
        return;
    }
    uint64_t gen = rt->generation;
    publish(srv, rt, sets, "gone from DNS");
    sp_log_info("DNS change: generation %llu in force", (unsigned long long)gen);
}

/* Records a failed reload; returns its error as kept in srv (main thread only writes it). */
static const char *reload_failed(struct server *srv, const char *error)
{
    record_reload(srv, false, error);
    return srv->last_reload_error != NULL ? srv->last_reload_error : "out of memory";
}

/* Returns NULL when the new config is in force, else why the old one stays (valid until the
 * next reload). */
static const char *reload(struct server *srv)
{
    const struct sp_config *cur = srv->rt->cfg;
    struct sp_config *cfg = NULL;
    struct sp_config_error err;
    if (sp_config_load(cur->path, &cfg, &err) != 0) {
        sp_log_error("reload failed, keeping generation %llu: %s",
                     (unsigned long long)srv->rt->generation, err.text);
        return reload_failed(srv, err.text);
    }
    if (!same_str(cfg->control_socket, cur->control_socket)) {
        char text[SP_CONTROL_PATH_MAX + 160];
        snprintf(text, sizeof(text),
                 "%s: control_socket cannot change on reload (it stays %s); restart, or upgrade "
                 "with --takeover, to move it",
                 cur->path, cur->control_socket != NULL ? cur->control_socket : "off");
        sp_log_error("reload failed, keeping generation %llu: %s",
                     (unsigned long long)srv->rt->generation, text);
        sp_config_free(cfg);
        return reload_failed(srv, text);
    }
    if (cfg->workers != cur->workers) {
        sp_log_warn("reload: workers stays %u (a change takes a restart)", cur->workers);
        cfg->workers = cur->workers;
    }
    struct sp_resolved resolved; /* names resolve now, blocking the main loop, not the relay */
    struct sp_runtime *rt;
    if (sp_resolved_load(cfg, &resolved) != 0 ||
        sp_runtime_new(cfg, srv->rt, &resolved, &rt) != 0) {
        sp_resolved_deinit(&resolved);
        sp_config_free(cfg);
        return reload_failed(srv, "out of memory");
    }
    int **sets = bind_all(rt->cfg, cur, srv->nworkers, &srv->unix_files);
    if (sets == NULL) {
        sp_log_error("reload failed: a new listener could not be bound; keeping generation %llu",
                     (unsigned long long)srv->rt->generation);
        sp_runtime_unref(rt);
        sp_resolved_deinit(&resolved);
        return reload_failed(srv, "a new listener could not be bound (see the log)");
    }
    uint64_t gen = rt->generation;
    sp_resolver_stop(srv->resolver);
    srv->resolver = NULL;
    publish(srv, rt, sets, "removed by a reload");
    sp_unix_files_prune(&srv->unix_files, srv->rt->cfg); /* the dropped unix: listeners' files */
    sp_unix_files_apply_modes(&srv->unix_files, srv->rt->cfg); /* kept sockets, new unix_mode */
    sp_resolved_deinit(&srv->resolved);
    srv->resolved = resolved;
    start_resolver(srv);
    record_reload(srv, true, NULL);
    /* `cur` may be gone by now: the workers drop the old runtime on their own threads. */
    sp_log_info("reloaded %s: generation %llu published", srv->rt->cfg->path,
                (unsigned long long)gen);
    check_fd_limit(srv, srv->rt->cfg, " (reload)");
    return NULL;
}

/* ---- signals and the main loop ------------------------------------------------------------ */

static void on_shutdown_timeout(uv_timer_t *t)
{
    struct server *srv = t->data;
    sp_log_warn("shutdown_timeout reached: closing the remaining connections");
    force_all(srv);
}

/* Stops accepting; open connections finish within shutdown_timeout. */
static void begin_drain(struct server *srv, const char *why)
{
    atomic_store(&srv->stopping, true);
    sp_log_info("%s: no longer accepting; waiting up to %llu ms for open connections", why,
                (unsigned long long)srv->rt->cfg->shutdown_timeout_ms);
    for (unsigned i = 0; i < srv->nworkers; i++)
        sp_worker_drain(&srv->workers[i]);
    uv_timer_start(&srv->shutdown_timer, on_shutdown_timeout, srv->rt->cfg->shutdown_timeout_ms, 0);
}

/* ---- binary upgrade (control.h) ----------------------------------------------------------- */

static bool ctl_stopping(void *ctx)
{
    struct server *srv = ctx;
    return atomic_load(&srv->stopping);
}

static int ctl_admin_fd(void *ctx)
{
    struct server *srv = ctx;
    return sp_admin_listen_fd(srv->admin);
}

static bool ctl_shared(void *ctx, ino_t ino)
{
    struct server *srv = ctx;
    for (size_t i = 0; i < srv->nshared; i++) {
        if (srv->shared_ino[i] == ino)
            return true;
    }
    return false;
}

/* The new process accepts on the same sockets now: this one drains like on SIGTERM, and its
 * admin endpoint stops, so that every request on that socket reaches the new process. */
static void ctl_handover(void *ctx, uint32_t pid)
{
    struct server *srv = ctx;
    char why[64];
    snprintf(why, sizeof(why), "taken over by pid %u", pid);
    sp_admin_stop(srv->admin);
    srv->admin = NULL;
    /* The new process accepts on our unix: sockets and removes their files when done. */
    sp_unix_files_deinit(&srv->unix_files);
    begin_drain(srv, why);
}

static const struct sp_control_ops control_ops = {
    .stopping = ctl_stopping,
    .admin_fd = ctl_admin_fd,
    .shared = ctl_shared,
    .handover = ctl_handover,
};

static void on_signal(uv_signal_t *h, int signum)
{
    struct server *srv = h->data;
    if (signum == SIGHUP) {
        if (!atomic_load(&srv->stopping)) {
            sp_sdnotify_reloading(&srv->notify);
            sp_sdnotify_reloaded(&srv->notify, reload(srv));
        }
        return;
    }
    if (atomic_load(&srv->stopping)) {
        sp_log_warn("%s again: closing every connection now", strsignal(signum));
        force_all(srv);
        return;
    }
    sp_sdnotify_stopping(&srv->notify);
    begin_drain(srv, strsignal(signum));
}

/* Under the lock: the admin thread reads the control socket's path and counters. */
static void stop_control(struct server *srv)
{
    uv_mutex_lock(&srv->lock);
    struct sp_control *c = srv->control;
    srv->control = NULL;
    uv_mutex_unlock(&srv->lock);
    sp_control_stop(c);
}

static void close_loop_handles(struct server *srv)
{
    stop_control(srv);
    sp_resolver_stop(srv->resolver);
    srv->resolver = NULL;
    sp_health_stop(srv->health);
    srv->health = NULL;
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
    uv_close((uv_handle_t *)&srv->sighup, NULL);
    uv_close((uv_handle_t *)&srv->shutdown_timer, NULL);
    uv_close((uv_handle_t *)&srv->worker_exited, NULL);
    sp_sdnotify_close(&srv->notify);
}

static void on_worker_exited(uv_async_t *a)
{
    struct server *srv = a->data;
    if (atomic_load(&srv->exited) == srv->nworkers)
        close_loop_handles(srv); /* uv_run returns once they have closed */
}

/* The STATUS= counts: a few atomic loads per worker, every SP_SDNOTIFY_STATUS_MS. */
static void notify_counts(void *arg, struct sp_sdnotify_counts *out)
{
    struct server *srv = arg;
    for (unsigned i = 0; i < srv->nworkers; i++) {
        out->active += atomic_load(&srv->workers[i].nsessions);
        out->total += atomic_load(&srv->workers[i].accepted);
    }
    out->generation = srv->rt->generation;
}

static int init_loop(struct server *srv)
{
    int rc = uv_loop_init(&srv->loop);
    if (rc != 0)
        return rc;
    uv_signal_init(&srv->loop, &srv->sigterm);
    uv_signal_init(&srv->loop, &srv->sigint);
    uv_signal_init(&srv->loop, &srv->sighup);
    uv_timer_init(&srv->loop, &srv->shutdown_timer);
    uv_async_init(&srv->loop, &srv->worker_exited, on_worker_exited);
    srv->sigterm.data = srv->sigint.data = srv->sighup.data = srv;
    srv->shutdown_timer.data = srv->worker_exited.data = srv;
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    uv_signal_start(&srv->sighup, on_signal, SIGHUP);
    /* The shutdown timer must not keep the loop alive on its own. */
    uv_unref((uv_handle_t *)&srv->shutdown_timer);
    sp_sdnotify_init(&srv->notify, &srv->loop, notify_counts, srv);
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

/* Before any listener binds: the sockets systemd or the old process hand over, and the
 * control socket (which refuses to start a second instance on a live one). */
static int take_inherited(struct server *srv, const struct sp_server_opts *o)
{
    const struct sp_config *cfg = srv->rt->cfg;
    if (sp_inherit_from_env(srv->inherit) < 0)
        return -EINVAL;
    int rc = 0;
    if (o != NULL && o->takeover != NULL) {
        rc = sp_takeover_begin(o->takeover, srv->inherit, &srv->takeover);
        if (rc == 0)
            srv->took_over_from = sp_takeover_old_pid(srv->takeover);
        if (rc == 0 && cfg->control_socket == NULL)
            sp_log_warn("takeover: %s sets no control_socket, so this process cannot be "
                        "replaced the same way",
                        cfg->path);
    }
    if (rc == 0 && cfg->control_socket != NULL)
        rc = sp_control_open(cfg->control_socket, srv->takeover != NULL, &srv->control);
    return rc;
}

/* Everything that can fail before the old process (on a takeover) is told to stop. */
static int prepare(struct server *srv, const struct sp_server_opts *o)
{
    int rc = take_inherited(srv, o);
    if (rc != 0)
        return rc;
    rc = sp_access_log_start(&srv->rt->cfg->access_log, &srv->alog);
    if (rc != 0) {
        sp_log_error("cannot open access log %s: %s", srv->rt->cfg->access_log.path,
                     uv_strerror(rc));
        return rc;
    }
    rc = init_workers(srv);
    if (rc != 0) {
        sp_log_error("cannot start: %s", uv_strerror(rc));
        return rc;
    }
    rc = start_admin(srv, srv->rt->cfg);
    if (rc != 0)
        return rc;
    sp_inherit_close_unused(srv->inherit);
    uv_mutex_lock(&srv->lock); /* the admin endpoint runs already */
    for (int i = 0; i < SP_INHERIT_SOURCE_COUNT; i++)
        srv->inherited[i] = srv->inherit->taken[i];
    uv_mutex_unlock(&srv->lock);
    if (srv->takeover != NULL)
        rc = sp_takeover_commit(srv->takeover);
    return rc;
}

static int start(struct server *srv, const struct sp_server_opts *o)
{
    struct sp_inherit inherit = {0};
    srv->inherit = &inherit;
    int rc = prepare(srv, o);
    if (rc == 0)
        rc = run_workers(srv);
    srv->inherit = NULL;
    sp_inherit_deinit(&inherit);
    if (rc != 0) {
        if (srv->takeover != NULL)
            sp_log_error("takeover failed: the old process (pid %u) goes on serving",
                         srv->took_over_from);
        sp_takeover_free(srv->takeover);
        srv->takeover = NULL;
        sp_unix_files_deinit(&srv->claimed); /* the old process keeps serving on them */
        sp_admin_stop(srv->admin);
        srv->admin = NULL;
        deinit_workers(srv);
        return rc;
    }
    if (srv->takeover != NULL) {
        sp_log_info("takeover: serving; the old process (pid %u) drains its connections",
                    srv->took_over_from);
        sp_takeover_free(srv->takeover);
        srv->takeover = NULL;
        if (sp_unix_files_move(&srv->unix_files, &srv->claimed) != 0)
            sp_unix_files_deinit(&srv->claimed); /* then they outlive us: harmless, stale */
        if (srv->control != NULL && sp_control_install(srv->control) != 0)
            stop_control(srv);
    }
    if (srv->control != NULL)
        sp_control_start(srv->control, &srv->loop, srv->workers, srv->nworkers, &control_ops, srv);
    log_started(srv->rt->cfg);
    start_resolver(srv);
    rc = sp_health_start(&srv->loop, srv->rt, &srv->health);
    if (rc == 0)
        sp_health_set_shed(srv->health, shed_server, srv);
    if (rc != 0) {
        atomic_store(&srv->stopping, true);
        force_all(srv);
        return rc;
    }
    measure_fd_fixed(srv);
    check_fd_limit(srv, srv->rt->cfg, "");
    return 0;
}

int sp_server_run(struct sp_config *cfg, const struct sp_server_opts *opts)
{
    struct server srv = {.last_reload_ok = true, .start_unix = (uint64_t)time(NULL)};
    /* A peer that closed makes splice()/send() raise SIGPIPE; the error return is enough. */
    signal(SIGPIPE, SIG_IGN);

    int rc = sp_resolved_load(cfg, &srv.resolved);
    if (rc == 0)
        rc = sp_runtime_new(cfg, NULL, &srv.resolved, &srv.rt);
    if (rc != 0) {
        sp_resolved_deinit(&srv.resolved);
        sp_log_error("cannot build the runtime: %s", uv_strerror(rc));
        sp_config_free(cfg);
        return 1;
    }
    uv_mutex_init(&srv.lock);
    sp_pipe_budget_init(&srv.pipes, srv.rt->cfg->pipe_memory_max);
    rc = init_loop(&srv);
    if (rc != 0) {
        sp_log_error("cannot start the main loop: %s", uv_strerror(rc));
        sp_runtime_unref(srv.rt);
        return 1;
    }
    rc = start(&srv, opts);
    if (rc == 0)
        sp_sdnotify_ready(&srv.notify);
    else if (srv.nworkers == 0)
        close_loop_handles(&srv);
    uv_run(&srv.loop, UV_RUN_DEFAULT);

    sp_admin_stop(srv.admin); /* before the workers it reads from go away */
    for (unsigned i = 0; i < srv.nworkers; i++)
        sp_worker_join(&srv.workers[i]);
    sp_access_log_stop(srv.alog);               /* after the workers' last lines */
    sp_unix_files_prune(&srv.unix_files, NULL); /* every socket is closed by now */
    sp_unix_files_deinit(&srv.unix_files);
    uv_loop_close(&srv.loop);
    free(srv.workers);
    sp_runtime_unref(srv.rt);
    sp_resolved_deinit(&srv.resolved);
    free(srv.last_reload_error);
    free(srv.shared_ino);
    uv_mutex_destroy(&srv.lock);
    if (rc != 0)
        return 1;
    sp_log_info("stopped");
    return 0;
}
