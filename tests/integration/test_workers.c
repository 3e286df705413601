/* test_workers.c: with `workers: 2`, the kernel spreads connections over the workers'
 * SO_REUSEPORT sockets, and the per-worker metrics and /status show how: the counts add up to
 * the listener's, and under a steady load no worker takes more than 60%. */
#include "harness.h"

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define START_MS 10000
#define CLIENTS  8
#define PER      250 /* connections per client thread */

static void teardown(void)
{
    sph_cleanup();
}

struct load {
    int port;
    atomic_int ok;
};

static void *client(void *arg)
{
    struct load *ld = arg;
    for (int i = 0; i < PER; i++) {
        int fd = sph_connect(AF_INET, ld->port, 2000);
        if (fd < 0)
            continue;
        if (sph_ping(fd, 2000) == 0)
            atomic_fetch_add(&ld->ok, 1);
        close(fd);
    }
    return NULL;
}

START_TEST(accepts_spread_over_workers)
{
    struct sph_backend *echo = sph_backend_new(SPH_ECHO, AF_INET);
    ck_assert_ptr_nonnull(echo);
    ck_assert_int_eq(sph_backend_start(echo), 0);
    int port = sph_free_port(AF_INET), admin = sph_free_port(AF_INET);
    char conf[SPH_PATH_MAX];
    ck_assert_int_eq(sph_config_write(conf,
                                      "workers: 2\n"
                                      "shutdown_timeout: 1s\n"
                                      "admin: {listen: 127.0.0.1:%d}\n"
                                      "listeners:\n"
                                      "  main: {listen: 127.0.0.1:%d, upstream: pool}\n"
                                      "upstreams:\n"
                                      "  pool: {servers: [{address: 127.0.0.1:%d}]}\n",
                                      admin, port, echo->port),
                     0);
    struct sph_proc p;
    ck_assert_int_eq(sph_splicer_start(&p, conf, port, START_MS), 0);

    struct load ld = {.port = port};
    pthread_t thr[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        ck_assert_int_eq(pthread_create(&thr[i], NULL, client, &ld), 0);
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(thr[i], NULL);
    int total = atomic_load(&ld.ok);
    ck_assert_int_ge(total, CLIENTS * PER * 9 / 10);

    sph_expect_metric(admin, "splicer_listener_connections_total{listener=\"main\"}", total);
    long long w0 = sph_metric(admin, "splicer_worker_connections_total{worker=\"0\"}");
    long long w1 = sph_metric(admin, "splicer_worker_connections_total{worker=\"1\"}");
    ck_assert_int_eq(w0 + w1, total);
    ck_assert_msg(w0 * 10 <= total * 6 && w1 * 10 <= total * 6,
                  "one worker took more than 60%%: %lld and %lld of %d", w0, w1, total);
    sph_expect_metric(admin, "splicer_worker_active_connections{worker=\"0\"}", 0);
    sph_expect_metric(admin, "splicer_worker_active_connections{worker=\"1\"}", 0);

    char body[8192];
    ck_assert_int_eq(sph_admin_req(admin, "GET", "/status", body, sizeof(body)), 200);
    char want[128];
    snprintf(want, sizeof(want), "{\"worker\":0,\"connections\":%lld,\"active\":0}", w0);
    ck_assert_msg(strstr(body, want) != NULL, "no %s in %s", want, body);
    snprintf(want, sizeof(want), "{\"worker\":1,\"connections\":%lld,\"active\":0}", w1);
    ck_assert_msg(strstr(body, want) != NULL, "no %s in %s", want, body);
}
END_TEST

static Suite *workers_suite(void)
{
    Suite *s = suite_create("workers");
    TCase *tc = tcase_create("workers");
    tcase_set_timeout(tc, 60);
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, accepts_spread_over_workers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(workers_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
