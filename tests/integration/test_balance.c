/* test_balance.c: where connections land, seen from the client (the backend's name line) and from
 * the backends (accept counters): equal and 1:2:1 weights under smooth weighted round-robin,
 * backup servers, and retries past a refused server. One worker, so the rotation is exact. */
#include "harness.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define START_MS 10000
#define NB       3

static void teardown(void)
{
    sph_cleanup();
}

/* One server line of the config: a live backend or a refused port. */
struct srv {
    int port;
    int weight;
    bool backup;
};

static void start_names(struct sph_backend *b[], int n)
{
    for (int i = 0; i < n; i++) {
        b[i] = sph_backend_new(SPH_NAME, AF_INET);
        ck_assert_ptr_nonnull(b[i]);
        snprintf(b[i]->name, sizeof(b[i]->name), "b%d", i + 1);
        ck_assert_int_eq(sph_backend_start(b[i]), 0);
    }
}

/* Starts splicer with one listener on *port and the given servers; retries as given. */
static void proxy_start(struct sph_proc *p, int *port, const struct srv *s, int n, int retries)
{
    char servers[1024] = "", conf[SPH_PATH_MAX];
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        off += (size_t)snprintf(servers + off, sizeof(servers) - off,
                                "      - address: 127.0.0.1:%d\n"
                                "        weight: %d\n"
                                "        backup: %s\n",
                                s[i].port, s[i].weight, s[i].backup ? "true" : "false");
        ck_assert_uint_lt(off, sizeof(servers));
    }
    *port = sph_free_port(AF_INET);
    int rc = sph_config_write(conf,
                              "workers: 1\n"
                              "shutdown_timeout: 1s\n"
                              "listeners:\n"
                              "  main:\n"
                              "    listen: 127.0.0.1:%d\n"
                              "    upstream: pool\n"
                              "    connect_timeout: 1s\n"
                              "upstreams:\n"
                              "  pool:\n"
                              "    balance: round_robin\n"
                              "    retries: %d\n"
                              "    servers:\n%s",
                              *port, retries, servers);
    ck_assert_int_eq(rc, 0);
    rc = sph_splicer_start(p, conf, *port, START_MS);
    if (rc != 0) {
        char *err = sph_proc_stderr(p);
        ck_abort_msg("splicer did not start listening (%s); stderr:\n%s", strerror(-rc), err);
    }
}

/* n sequential connections; counts[i] += 1 for each "b<i+1>" answer. Every one must answer. */
static void tally(int port, int n, int counts[NB])
{
    for (int k = 0; k < n; k++) {
        int fd = sph_connect(AF_INET, port, 2000);
        ck_assert_msg(fd >= 0, "connection %d: connect: %s", k, strerror(-fd));
        char line[32];
        ssize_t len = sph_read_line(fd, line, sizeof(line), 3000);
        ck_assert_msg(len > 0, "connection %d: no backend answered: %s", k, strerror((int)-len));
        int id = 0;
        ck_assert_msg(sscanf(line, "b%d", &id) == 1 && id >= 1 && id <= NB,
                      "connection %d: unexpected greeting \"%s\"", k, line);
        counts[id - 1]++;
        close(fd);
    }
}

static void expect_counts(const int got[NB], const int want[NB], const char *what)
{
    ck_assert_msg(memcmp(got, want, sizeof(int) * NB) == 0, "%s: got %d/%d/%d, want %d/%d/%d", what,
                  got[0], got[1], got[2], want[0], want[1], want[2]);
}

START_TEST(equal_weights)
{
    struct sph_backend *b[NB];
    struct sph_proc p;
    int port;
    start_names(b, NB);
    struct srv s[NB] = {{b[0]->port, 1, false}, {b[1]->port, 1, false}, {b[2]->port, 1, false}};
    proxy_start(&p, &port, s, NB, 2);
    int counts[NB] = {0}, want[NB] = {10, 10, 10};
    tally(port, 30, counts);
    expect_counts(counts, want, "30 connections over equal weights");
    for (int i = 0; i < NB; i++)
        ck_assert_int_eq(atomic_load(&b[i]->accepted), 10);
}
END_TEST

START_TEST(weights_1_2_1)
{
    struct sph_backend *b[NB];
    struct sph_proc p;
    int port;
    start_names(b, NB);
    struct srv s[NB] = {{b[0]->port, 1, false}, {b[1]->port, 2, false}, {b[2]->port, 1, false}};
    proxy_start(&p, &port, s, NB, 2);
    int counts[NB] = {0}, want[NB] = {10, 20, 10};
    tally(port, 40, counts);
    expect_counts(counts, want, "40 connections over weights 1:2:1");
}
END_TEST

/* b3 is a backup: idle while b1 and b2 serve; once both refuse, it takes every connection. */
START_TEST(backup_only_when_primaries_down)
{
    struct sph_backend *b[NB];
    struct sph_proc p;
    int port;
    start_names(b, NB);
    struct srv s[NB] = {{b[0]->port, 1, false}, {b[1]->port, 1, false}, {b[2]->port, 1, true}};
    proxy_start(&p, &port, s, NB, 2);
    int counts[NB] = {0}, want[NB] = {10, 10, 0};
    tally(port, 20, counts);
    expect_counts(counts, want, "primaries up");
    ck_assert_int_eq(atomic_load(&b[2]->accepted), 0);
    sph_backend_stop(b[0]);
    sph_backend_stop(b[1]);
    int after[NB] = {0}, want_after[NB] = {0, 0, 20};
    tally(port, 20, after);
    expect_counts(after, want_after, "primaries refused");
    ck_assert_int_eq(atomic_load(&b[2]->accepted), 20);
}
END_TEST

/* With the middle server refusing (nothing listens on its port) and retries: 1, every
 * connection still reaches b1 or b3. */
START_TEST(refused_server_skipped)
{
    struct sph_backend *b[NB];
    struct sph_proc p;
    int port;
    start_names(b, NB);
    sph_backend_stop(b[1]); /* its port now refuses */
    struct srv s[NB] = {{b[0]->port, 1, false}, {b[1]->port, 1, false}, {b[2]->port, 1, false}};
    proxy_start(&p, &port, s, NB, 1);
    int counts[NB] = {0};
    tally(port, 30, counts);
    ck_assert_int_eq(counts[1], 0);
    ck_assert_int_eq(counts[0] + counts[2], 30);
    ck_assert_msg(counts[0] > 0 && counts[2] > 0, "live servers got %d and %d", counts[0],
                  counts[2]);
}
END_TEST

static Suite *balance_suite(void)
{
    Suite *s = suite_create("balance");
    TCase *tc = tcase_create("balance");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, equal_weights);
    tcase_add_test(tc, weights_1_2_1);
    tcase_add_test(tc, backup_only_when_primaries_down);
    tcase_add_test(tc, refused_server_skipped);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(balance_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
