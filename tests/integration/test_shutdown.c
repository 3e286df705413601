/* test_shutdown.c: graceful stop on SIGTERM/SIGINT: the listener goes away at once, streams in
 * flight finish intact, idle connections are closed at shutdown_timeout, and the exit code is 0. */
#include "harness.h"

#include <check.h>
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

/* A paced 64 MiB echo stream is mid-way when SIGTERM arrives: new connects are refused at once,
 * the stream completes intact (shutdown_timeout 30s leaves it time), then exit 0. */
START_TEST(inflight_completes)
{
    struct sph_proc p;
    int port = proxy_start(&p, "30s");
    static struct bg_xfer t;
    t.fd = sph_connect(AF_INET, port, 2000);
    ck_assert_int_ge(t.fd, 0);
    sph_xfer_init(&t.x, 64 * MIB, 50, 40000);
    t.x.chunk = 512 * 1024;
    t.x.pause_ms = 10; /* at most ~50 MB/s: about 1.3 s in all */
    t.x.shut_wr = true;
    pthread_t thr;
    ck_assert_int_eq(pthread_create(&thr, NULL, xfer_main, &t), 0);
    for (int i = 0; i < 1000 && atomic_load(&t.x.received) < 8 * MIB; i++)
        sph_sleep_ms(5);
    uint64_t at_signal = atomic_load(&t.x.received);
    ck_assert_int_eq(sph_proc_signal(&p, SIGTERM), 0);
    bool refused = refused_within(port, 2000);
    pthread_join(thr, NULL);
    close(t.fd);
    ck_assert_msg(at_signal >= 8 * MIB && at_signal < 64 * MIB,
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
