/* test_shutdown.c: graceful stop on SIGTERM/SIGINT: the listener goes away at once, streams in
 * flight finish intact, idle connections are closed at shutdown_timeout, and the exit code is 0. */
#include "harness.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MIB      (1024ULL * 1024ULL)
#define START_MS 10000

static void teardown(void)
{
    sph_cleanup();
}

/* Starts splicer in front of an echo backend with the given shutdown_timeout. */
static int proxy_start(struct sph_proc *p, const char *shutdown_timeout)
{
    char conf[SPH_PATH_MAX];
    struct sph_backend *echo = sph_backend_new(SPH_ECHO, AF_INET);
    ck_assert_ptr_nonnull(echo);
    ck_assert_int_eq(sph_backend_start(echo), 0);
    int port = sph_free_port(AF_INET);
    int rc = sph_config_write(conf,
                              "workers: 1\n"
                              "shutdown_timeout: %s\n"
                              "listeners:\n"
                              "  main:\n"
                              "    listen: 127.0.0.1:%d\n"
                              "    upstream: pool\n"
                              "upstreams:\n"
                              "  pool:\n"
                              "    servers:\n"
                              "      - address: 127.0.0.1:%d\n",
                              shutdown_timeout, port, echo->port);
    ck_assert_int_eq(rc, 0);
    rc = sph_splicer_start(p, conf, port, START_MS);
    if (rc != 0) {
        char *err = sph_proc_stderr(p);
        ck_abort_msg("splicer did not start listening (%s); stderr:\n%s", strerror(-rc), err);
    }
    return port;
}

/* Waits (bounded) until connecting to port is refused; a connect that still slips in before the
 * listener closes is closed and retried. */
static bool refused_within(int port, int timeout_ms)
{
    int64_t deadline = sph_now_ms() + timeout_ms;
    while (sph_now_ms() < deadline) {
        int fd = sph_connect(AF_INET, port, 500);
        if (fd == -ECONNREFUSED)
            return true;
        if (fd >= 0)
            close(fd);
        sph_sleep_ms(10);
    }
    return false;
}

static void expect_exit0(struct sph_proc *p, int timeout_ms)
{
    int code = sph_proc_wait(p, timeout_ms);
    char *err = sph_proc_stderr(p);
    ck_assert_msg(code == 0, "splicer exit %d (%s), stderr:\n%s", code,
                  code == -ETIMEDOUT ? "still running" : "exited", err);
    free(err);
}

struct bg_xfer {
    int fd;
    struct sph_xfer x;
};

static void *xfer_main(void *arg)
{
    struct bg_xfer *t = arg;
    sph_echo_xfer(t->fd, &t->x);
    return NULL;
}

/* A paced 16 MiB echo stream is mid-way when SIGTERM arrives: new connects are refused at once,
 * the stream completes intact (shutdown_timeout 30s leaves it time), then exit 0. The pace caps
 * a fast machine at ~25 MB/s, so the signal, sent once 1 MiB is back, lands well before the end;
 * a slow one (ThreadSanitizer on one CPU echoes ~1 MB/s) still gets 30 s to reach that point and
 * finishes inside shutdown_timeout. */
START_TEST(inflight_completes)
{
    struct sph_proc p;
    int port = proxy_start(&p, "30s");
    static struct bg_xfer t;
    t.fd = sph_connect(AF_INET, port, 2000);
    ck_assert_int_ge(t.fd, 0);
    sph_xfer_init(&t.x, 16 * MIB, 50, 60000);
    t.x.chunk = 256 * 1024;
    t.x.pause_ms = 10; /* at most ~25 MB/s: about 0.65 s in all */
    t.x.shut_wr = true;
    pthread_t thr;
    ck_assert_int_eq(pthread_create(&thr, NULL, xfer_main, &t), 0);
    for (int i = 0; i < 6000 && atomic_load(&t.x.received) < MIB; i++)
        sph_sleep_ms(5);
    uint64_t at_signal = atomic_load(&t.x.received);
    ck_assert_int_eq(sph_proc_signal(&p, SIGTERM), 0);
    bool refused = refused_within(port, 2000);
    pthread_join(thr, NULL);
    close(t.fd);
    ck_assert_msg(at_signal >= MIB && at_signal < 16 * MIB,
                  "SIGTERM not mid-stream (%llu bytes echoed)", (unsigned long long)at_signal);
    ck_assert_msg(refused, "new connections still accepted 2 s after SIGTERM");
    ck_assert_msg(t.x.err == 0 && t.x.got_eof, "stream cut by shutdown: %s, %llu of %llu echoed",
                  strerror(-t.x.err), (unsigned long long)atomic_load(&t.x.received),
                  (unsigned long long)t.x.len);
    ck_assert_msg(t.x.mismatch_at < 0, "stream corrupt at %lld", (long long)t.x.mismatch_at);
    expect_exit0(&p, 5000);
}
END_TEST

/* shutdown_timeout 500ms: an idle connection is closed after about that and splicer exits 0
 * within ~2 s of the signal. */
START_TEST(idle_closed_at_timeout)
{
    struct sph_proc p;
    int port = proxy_start(&p, "500ms");
    int fd = sph_connect(AF_INET, port, 2000);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(sph_ping(fd, 2000), 0);
    int64_t t0 = sph_now_ms();
    ck_assert_int_eq(sph_proc_signal(&p, SIGTERM), 0);
    int rc = sph_wait_closed(fd, 2000);
    int64_t dt = sph_now_ms() - t0;
    ck_assert_msg(rc == 0 || rc == -ECONNRESET, "idle client not closed within 2 s: %s",
                  strerror(-rc));
    ck_assert_msg(dt >= 350, "idle client closed after %lld ms, before shutdown_timeout (500)",
                  (long long)dt);
    close(fd);
    expect_exit0(&p, (int)(2000 - (sph_now_ms() - t0)) + 100);
}
END_TEST

/* SIGINT behaves as SIGTERM: with nothing open, splicer exits 0 promptly. */
START_TEST(sigint_exits_0)
{
    struct sph_proc p;
    int port = proxy_start(&p, "5s");
    ck_assert_int_eq(sph_proc_signal(&p, SIGINT), 0);
    expect_exit0(&p, 2000);
    ck_assert(!sph_port_listening(port));
}
END_TEST

/* ---- a drain with workers: 2 after a storm of short connections (issue 9.14) ---- */

#define STORM_THREADS 4
#define STORM_CONNS   150 /* per thread */
#define STORM_RELOADS 20
#define BURST         48
#define HELD          8
#define NSTALL        8
#define STORM_MS      60000

struct storm {
    int port;
    int id;
    int ok;
    int failed;
    char first_failure[160];
};

/* Short echo connections, each with its own length and bytes, closed after the whole echo and
 * the server's FIN: every descriptor number a worker uses is soon free for any other thread. */
static void *storm_main(void *arg)
{
    struct storm *t = arg;
    for (int k = 0; k < STORM_CONNS; k++) {
        struct sph_xfer x;
        sph_xfer_init(&x, 1 + (uint64_t)((k * 7919 + t->id * 104729) % 3000),
                      (uint64_t)(t->id * STORM_CONNS + k + 1), 20000);
        x.shut_wr = true;
        int fd = sph_connect(AF_INET, t->port, 5000);
        int rc = fd < 0 ? fd : sph_echo_xfer(fd, &x);
        if (fd >= 0)
            close(fd);
        if (rc == 0 && x.got_eof && x.mismatch_at < 0) {
            t->ok++;
            continue;
        }
        if (t->failed++ == 0)
            snprintf(t->first_failure, sizeof(t->first_failure),
                     "thread %d connection %d: %s, %llu of %llu echoed, mismatch at %lld, eof %d",
                     t->id, k, strerror(-rc), (unsigned long long)atomic_load(&x.received),
                     (unsigned long long)x.len, (long long)x.mismatch_at, (int)x.got_eof);
    }
    return NULL;
}

static bool fds_at_most(void *arg)
{
    const int *v = arg; /* {pid, limit} */
    int n = sph_proc_fd_count((pid_t)v[0]);
    return n >= 0 && n <= v[1];
}

/* "N socket, N pipe, N anon_inode, N other": what splicer's descriptors are, for a message. */
static void fd_kinds(pid_t pid, char *out, size_t cap)
{
    static const char *const kinds[] = {"socket:", "pipe:", "anon_inode:"};
    int n[4] = {0};
    char dir[64], path[320], target[128];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        ssize_t len = readlink(path, target, sizeof(target) - 1);
        target[len > 0 ? len : 0] = '\0';
        int k = 0;
        while (k < 3 && strncmp(target, kinds[k], strlen(kinds[k])) != 0)
            k++;
        n[k]++;
    }
    if (d != NULL)
        closedir(d);
    snprintf(out, cap, "%d socket, %d pipe, %d anon_inode, %d other", n[0], n[1], n[2], n[3]);
}

/* Issue 9.14: with `workers: 2`, every descriptor number a worker's relay used is soon another
 * thread's: the other worker's sockets, the health checks' on the main thread. splicer used to
 * keep a stopped poll handle per number and close them all when the worker drained, each close
 * an epoll_ctl(DEL) on a number that by then belonged to such a socket (ThreadSanitizer: a read
 * of the descriptor in a worker racing its creation and close in another thread; the TSan build
 * then exits 66). The drain happens at shutdown, so the case is a storm of short connections
 * through both workers with reloads, then SIGTERM with connections still open on both workers
 * while health checks of silent servers keep the main thread opening sockets, then those
 * connections closing. What a user sees: every short connection gets its bytes back whole,
 * splicer's sessions and descriptors return to where they started, open connections keep
 * working through the drain, and splicer exits 0 when the last one closes. */
START_TEST(workers2_drain_after_storm)
{
    struct sph_backend *echo = sph_backend_new(SPH_ECHO, AF_INET);
    ck_assert_ptr_nonnull(echo);
    ck_assert_int_eq(sph_backend_start(echo), 0);
    struct sph_backend *stall[NSTALL];
    char servers[NSTALL * 40] = "";
    size_t off = 0;
    for (int i = 0; i < NSTALL; i++) {
        stall[i] = sph_backend_new(SPH_STALL, AF_INET);
        ck_assert_ptr_nonnull(stall[i]);
        ck_assert_int_eq(sph_backend_start(stall[i]), 0);
        off += (size_t)snprintf(servers + off, sizeof(servers) - off,
                                "      - address: 127.0.0.1:%d\n", stall[i]->port);
    }
    int port = sph_free_port(AF_INET), probe = sph_free_port(AF_INET);
    int admin = sph_free_port(AF_INET);
    char conf[SPH_PATH_MAX];
    /* pipe_pool_max 0: no idle pipes kept, so the descriptor count returns to where it began. */
    int rc = sph_config_write(conf,
                              "workers: 2\n"
                              "shutdown_timeout: 30s\n"
                              "pipe_pool_max: 0\n"
                              "admin:\n"
                              "  listen: 127.0.0.1:%d\n"
                              "listeners:\n"
                              "  app:\n"
                              "    listen: 127.0.0.1:%d\n"
                              "    upstream: app\n"
                              "  probe:\n"
                              "    listen: 127.0.0.1:%d\n"
                              "    upstream: probe\n"
                              "upstreams:\n"
                              "  app:\n"
                              "    servers:\n"
                              "      - address: 127.0.0.1:%d\n"
                              "  probe:\n"
                              "    health_check:\n"
                              "      interval: 20ms\n"
                              "      timeout: 1s\n"
                              "      send: \"PING\\r\\n\"\n"
                              "      expect: \"+PONG\"\n"
                              "    servers:\n"
                              "%s",
                              admin, port, probe, echo->port, servers);
    ck_assert_int_eq(rc, 0);
    struct sph_proc p;
    rc = sph_splicer_start(&p, conf, port, START_MS);
    if (rc != 0) {
        char *err = sph_proc_stderr(&p);
        ck_abort_msg("splicer did not start listening (%s); stderr:\n%s", strerror(-rc), err);
    }
    /* The admin endpoint starts last: once it answers, splicer has every descriptor it keeps.
     * Each silent server has at most one check, so at most one socket, open at a time. */
    sph_expect_metric(admin, "splicer_listener_active_connections{listener=\"app\"}", 0);
    int fds0 = sph_proc_fd_count(p.pid);
    ck_assert_int_gt(fds0, 0);
    char kinds0[96], kinds[96];
    fd_kinds(p.pid, kinds0, sizeof(kinds0));

    static struct storm st[STORM_THREADS];
    pthread_t thr[STORM_THREADS];
    int64_t t0 = sph_now_ms();
    for (int i = 0; i < STORM_THREADS; i++) {
        st[i] = (struct storm){.port = port, .id = i};
        ck_assert_int_eq(pthread_create(&thr[i], NULL, storm_main, &st[i]), 0);
    }
    int failed = sph_proc_log_count(&p, "reload failed");
    for (int i = 0; i < STORM_RELOADS; i++) {
        rc = sph_proc_signal_wait_log(&p, SIGHUP, "reloaded ", 10000);
        ck_assert_msg(rc == 0, "reload %d: no success line (%s)", i, strerror(-rc));
    }
    ck_assert_int_eq(sph_proc_log_count(&p, "reload failed"), failed);
    int ok = 0;
    for (int i = 0; i < STORM_THREADS; i++) {
        pthread_join(thr[i], NULL);
        ok += st[i].ok;
    }
    for (int i = 0; i < STORM_THREADS; i++)
        ck_assert_msg(st[i].failed == 0, "%d short connections failed; first: %s", st[i].failed,
                      st[i].first_failure);
    ck_assert_int_eq(ok, STORM_THREADS * STORM_CONNS);
    /* Then many at once: both workers take descriptor numbers well above what the connections
     * held through the drain and the checks will need, so those are numbers the workers used. */
    int burst[BURST];
    for (int i = 0; i < BURST; i++) {
        burst[i] = sph_connect(AF_INET, port, 5000);
        ck_assert_int_ge(burst[i], 0);
    }
    for (int i = 0; i < BURST; i++) {
        ck_assert_msg(sph_ping(burst[i], 5000) == 0, "connection %d of %d open at once: no echo", i,
                      BURST);
    }
    for (int i = 0; i < BURST; i++)
        close(burst[i]);
    ck_assert_int_eq(sph_proc_wait(&p, 0), -ETIMEDOUT); /* still running */
    sph_expect_metric(admin, "splicer_listener_active_connections{listener=\"app\"}", 0);
    int fdv[2] = {(int)p.pid, fds0 + NSTALL};
    if (!sph_wait_until(fds_at_most, fdv, 10000)) {
        fd_kinds(p.pid, kinds, sizeof(kinds));
        ck_abort_msg("splicer holds %d descriptors after the storm (%s), %d at start (%s; +%d "
                     "checks)",
                     sph_proc_fd_count(p.pid), kinds, fds0, kinds0, NSTALL);
    }
    int64_t storm_ms = sph_now_ms() - t0;

    /* Open connections on both workers (8 land on one alone with odds 1 in 128). */
    int held[HELD];
    for (int i = 0; i < HELD; i++) {
        held[i] = sph_connect(AF_INET, port, 5000);
        ck_assert_int_ge(held[i], 0);
        ck_assert_int_eq(sph_ping(held[i], 5000), 0);
    }
    int accepted[NSTALL];
    for (int i = 0; i < NSTALL; i++)
        accepted[i] = atomic_load(&stall[i]->accepted);
    ck_assert_int_eq(sph_proc_signal(&p, SIGTERM), 0);
    ck_assert_msg(refused_within(port, 5000), "new connections still accepted 5 s after SIGTERM");
    /* Checks started after the drain began: their sockets are the main thread's, made after
     * the workers were told to drain. */
    for (int i = 0; i < NSTALL; i++)
        ck_assert_msg(sph_wait_atomic_ge(&stall[i]->accepted, accepted[i] + 1, 10000),
                      "no health check of silent server %d after SIGTERM", i);
    for (int i = 0; i < HELD; i++) {
        ck_assert_msg(sph_ping(held[i], 5000) == 0, "connection %d stopped echoing in the drain",
                      i);
        close(held[i]);
    }
    expect_exit0(&p, 15000);
    fprintf(stderr, "workers2_drain_after_storm: %d connections and %d reloads in %lld ms\n", ok,
            STORM_RELOADS, (long long)storm_ms);
}
END_TEST

static Suite *shutdown_suite(void)
{
    Suite *s = suite_create("shutdown");
    TCase *tc = tcase_create("shutdown");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, inflight_completes);
    tcase_add_test(tc, idle_closed_at_timeout);
    tcase_add_test(tc, sigint_exits_0);
    suite_add_tcase(s, tc);
    tc = tcase_create("workers2");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, workers2_drain_after_storm);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(shutdown_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
