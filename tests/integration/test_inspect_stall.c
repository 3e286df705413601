/* test_inspect_stall.c: a ClientHello that stalls costs an SNI-routing listener nothing while it
 * waits, is routed as soon as it completes, and one that is cut off by the client's FIN ends at
 * once rather than at tls_inspect_timeout (issue 9, item 7). */
#include "harness.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define START_MS 10000
#define NSTALL   200

static void teardown(void)
{
    sph_cleanup();
}

/* openssl s_client's ClientHello for "www.example.com" (tests/fixtures/tls/README.md). */
static size_t load_hello(unsigned char *buf, size_t cap)
{
    const char *dir = getenv("SPLICER_FIXTURES");
    ck_assert_msg(dir != NULL, "SPLICER_FIXTURES is not set");
    char path[512];
    snprintf(path, sizeof(path), "%s/tls/openssl_sni.bin", dir);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    ck_assert_uint_gt(n, 100);
    return n;
}

struct rig {
    struct sph_proc proc;
    struct sph_backend *routed, *dflt;
    int port, admin;
};

/* An SNI listener: *.example.com goes to `routed`, anything else to `dflt`. */
static void rig_start(struct rig *r, const char *timeout)
{
    r->routed = sph_backend_new(SPH_SINK, AF_INET);
    r->dflt = sph_backend_new(SPH_SINK, AF_INET);
    ck_assert(r->routed != NULL && r->dflt != NULL);
    ck_assert_int_eq(sph_backend_start(r->routed), 0);
    ck_assert_int_eq(sph_backend_start(r->dflt), 0);
    r->port = sph_free_port(AF_INET);
    r->admin = sph_free_port(AF_INET);
    char conf[SPH_PATH_MAX];
    ck_assert_int_eq(sph_config_write(conf,
                                      "workers: 1\n"
                                      "shutdown_timeout: 1s\n"
                                      "admin: {listen: 127.0.0.1:%d}\n"
                                      "listeners:\n"
                                      "  tls:\n"
                                      "    listen: 127.0.0.1:%d\n"
                                      "    upstream: dflt\n"
                                      "    tls_inspect_timeout: %s\n"
                                      "    routes:\n"
                                      "      - {sni: [\"*.example.com\"], upstream: routed}\n"
                                      "upstreams:\n"
                                      "  routed: {servers: [{address: 127.0.0.1:%d}]}\n"
                                      "  dflt: {servers: [{address: 127.0.0.1:%d}]}\n",
                                      r->admin, r->port, timeout, r->routed->port, r->dflt->port),
                     0);
    ck_assert_int_eq(sph_splicer_start(&r->proc, conf, r->port, START_MS), 0);
}

/* utime + stime of pid in clock ticks. */
static long long cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command may hold spaces */
    ck_assert_ptr_nonnull(p);
    long long ut = 0, st = 0;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
     */
    ck_assert_int_eq(
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &ut, &st), 2);
    return ut + st;
}

/* Half a ClientHello and the client's FIN: it can never complete, so the connection ends now,
 * not when tls_inspect_timeout (10 s here) runs out. */
START_TEST(half_hello_then_fin_ends_at_once)
{
    unsigned char hello[4096];
    size_t n = load_hello(hello, sizeof(hello));
    struct rig r;
    rig_start(&r, "10s");
    int fd = sph_connect(AF_INET, r.port, 2000);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(sph_write_all(fd, hello, n / 2, 2000), 0);
    sph_sleep_ms(100);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    int64_t t0 = sph_now_ms();
    int rc = sph_wait_closed(fd, 3000);
    ck_assert_msg(rc == 0 || rc == -ECONNRESET, "not closed within 3 s: %s", strerror(-rc));
    ck_assert_int_le(sph_now_ms() - t0, 1000);
    close(fd);
    ck_assert_int_eq(atomic_load(&r.routed->accepted) + atomic_load(&r.dflt->accepted), 0);
}
END_TEST

/* NSTALL clients send half a ClientHello and stall. While they wait, splicer spends next to no
 * CPU (no peeking and parsing on a timer); when they send the rest, each is routed by its SNI
 * and the server gets the whole hello. */
START_TEST(stalled_hellos_cost_nothing)
{
    unsigned char hello[4096];
    size_t n = load_hello(hello, sizeof(hello));
    struct rig r;
    rig_start(&r, "30s");
    int fds[NSTALL];
    for (int i = 0; i < NSTALL; i++) {
        fds[i] = sph_connect(AF_INET, r.port, 2000);
        ck_assert_int_ge(fds[i], 0);
        /* Past the record header, so splicer knows how much to wait for. */
        ck_assert_int_eq(sph_write_all(fds[i], hello, n / 2, 2000), 0);
    }
    sph_sleep_ms(500);
    long long before = cpu_ticks(r.proc.pid);
    sph_sleep_ms(3000);
    long long spent = cpu_ticks(r.proc.pid) - before;
    long hz = sysconf(_SC_CLK_TCK);
    /* The old code peeked every stalled hello every 5 ms: about 9% of a core for 200 of them. */
    ck_assert_msg(spent * 100 <= hz * 3 * 2, "%lld ticks (%ld/s) in 3 s with %d stalled hellos",
                  spent, hz, NSTALL);
    for (int i = 0; i < NSTALL; i++) {
        ck_assert_int_eq(sph_write_all(fds[i], hello + n / 2, n - n / 2, 2000), 0);
        ck_assert_int_eq(shutdown(fds[i], SHUT_WR), 0);
    }
    for (int i = 0; i < NSTALL; i++) {
        ck_assert_int_eq(sph_wait_closed(fds[i], 5000), 0);
        close(fds[i]);
    }
    ck_assert(sph_wait_atomic_ge(&r.routed->closed, NSTALL, 5000));
    ck_assert_int_eq(atomic_load(&r.dflt->accepted), 0);
    ck_assert_uint_eq(atomic_load(&r.routed->bytes_in), (unsigned long long)NSTALL * n);
}
END_TEST

static Suite *inspect_suite(void)
{
    Suite *s = suite_create("inspect_stall");
    TCase *tc = tcase_create("inspect_stall");
    tcase_set_timeout(tc, 60);
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, half_hello_then_fin_ends_at_once);
    tcase_add_test(tc, stalled_hellos_cost_nothing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(inspect_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
