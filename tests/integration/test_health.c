/* test_health.c: active health checks (connect, send/expect, rise/fall), passive checks
 * (max_fails within fail_timeout, and a sole server back at once after its app restarted),
 * failover to the remaining servers and to backups, least_conn under held connections, and
 * health being process-wide with several workers. Every backend
 * answers with its name ("b1", or "PONG b1" for the reply kind), so the client sees where each
 * connection landed; the backends' accept counters would also count the health probes. */
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

/* The health_check block every active test uses, and the bounds derived from it. */
#define INTERVAL_MS 200
#define TIMEOUT_MS  100
#define RISE        2
#define FALL        2
#define HEALTH                                                                                     \
    "    health_check:\n"                                                                          \
    "      interval: 200ms\n"                                                                      \
    "      timeout: 100ms\n"                                                                       \
    "      rise: 2\n"                                                                              \
    "      fall: 2\n"
/* Slack on top of each bound for a loaded CI box running ASan (the bounds are about 0.5 s). */
#define SLACK_MS 1000
/* `fall` checks, each at interval plus up to 10% jitter, the last one's timeout, and slack. */
#define FALL_MS (FALL * INTERVAL_MS * 11 / 10 + TIMEOUT_MS + SLACK_MS)
#define RISE_MS (RISE * INTERVAL_MS * 11 / 10 + TIMEOUT_MS + SLACK_MS)

static void teardown(void)
{
    sph_cleanup();
}

/* A started backend named "b<id>"; SPH_REPLY ones answer "<reply_word> b<id>\n". */
static struct sph_backend *backend(enum sph_kind kind, int id, const char *reply_word)
{
    struct sph_backend *b = sph_backend_new(kind, AF_INET);
    ck_assert_ptr_nonnull(b);
    snprintf(b->name, sizeof(b->name), "b%d", id);
    if (kind == SPH_REPLY)
        snprintf(b->reply, sizeof(b->reply), "%s b%d\n", reply_word, id);
    ck_assert_int_eq(sph_backend_start(b), 0);
    return b;
}

static void names_start(struct sph_backend *b[], int n)
{
    for (int i = 0; i < n; i++)
        b[i] = backend(SPH_NAME, i + 1, NULL);
}

/* Starts splicer with `workers`, one listener and one upstream "pool": `pool_opts` are the
 * upstream's lines before `servers:` (balance, retries, health_check, ...), and the servers are
 * b[0..n) with backup[i] when backup is non-NULL. Returns the listen port. */
static int proxy_start(struct sph_proc *p, int workers, const char *pool_opts,
                       struct sph_backend *const b[], int n, const bool *backup)
{
    char servers[1024] = "", conf[SPH_PATH_MAX];
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        off += (size_t)snprintf(servers + off, sizeof(servers) - off,
                                "      - address: 127.0.0.1:%d\n"
                                "        backup: %s\n",
                                b[i]->port, backup != NULL && backup[i] ? "true" : "false");
        ck_assert_uint_lt(off, sizeof(servers));
    }
    int port = sph_free_port(AF_INET);
    int rc = sph_config_write(conf,
                              "workers: %d\n"
                              "shutdown_timeout: 1s\n"
                              "listeners:\n"
                              "  main:\n"
                              "    listen: 127.0.0.1:%d\n"
                              "    upstream: pool\n"
                              "    connect_timeout: 1s\n"
                              "upstreams:\n"
                              "  pool:\n"
                              "%s"
                              "    servers:\n%s",
                              workers, port, pool_opts, servers);
    ck_assert_int_eq(rc, 0);
    rc = sph_splicer_start(p, conf, port, START_MS);
    if (rc != 0) {
        char *err = sph_proc_stderr(p);
        ck_abort_msg("splicer did not start listening (%s); stderr:\n%s", strerror(-rc), err);
    }
    /* Servers start up and the tests expect the down line of `fall` failures: a backend stopped
     * before its first check would be logged as "first check: ..." instead. The listener opens
     * before the checks start, so wait for each server's first probe (on a slow build, such as
     * TSan, it comes well after the listener). */
    for (int i = 0; strstr(pool_opts, "health_check:") != NULL && i < n; i++) {
        ck_assert_msg(sph_wait_atomic_ge(&b[i]->accepted, 1, START_MS),
                      "no health check reached b%d within %d ms", i + 1, START_MS);
    }
    return port;
}

/* Asks the backend behind a new connection for its name. Returns its id (1..NB) and, when
 * keep is non-NULL, leaves the connection open in *keep; or -errno (-EPIPE/-ECONNRESET when
 * splicer closed the connection without a server, -EPROTO for a stray answer). */
static int who(int port, int *keep)
{
    int fd = sph_connect(AF_INET, port, 2000);
    if (fd < 0)
        return fd;
    char line[64];
    int rc = sph_write_all(fd, "?\n", 2, 2000);
    ssize_t len = rc == 0 ? sph_read_line(fd, line, sizeof(line), 3000) : rc;
    int id = -EPROTO;
    if (len < 0) {
        id = (int)len;
    } else {
        const char *word = strrchr(line, ' ');
        word = word != NULL ? word + 1 : line;
        if (sscanf(word, "b%d", &id) != 1 || id < 1 || id > NB)
            id = -EPROTO;
    }
    if (keep != NULL && id > 0)
        *keep = fd;
    else
        close(fd);
    return id;
}

/* n sequential connections; counts[i] += 1 for each answer of b<i+1>; returns the failures. */
static int tally(int port, int n, int counts[NB])
{
    int failed = 0;
    for (int k = 0; k < n; k++) {
        int id = who(port, NULL);
        ck_assert_msg(id != -EPROTO, "connection %d: unexpected answer", k);
        if (id > 0)
            counts[id - 1]++;
        else
            failed++;
    }
    return failed;
}

static void expect_log(const struct sph_proc *p, const char *line, int timeout_ms, const char *what)
{
    if (!sph_proc_wait_log(p, line, 1, timeout_ms)) {
        char *err = sph_proc_stderr(p);
        ck_abort_msg("%s: no \"%s\" within %d ms; stderr:\n%s", what, line, timeout_ms, err);
    }
}

static void down_line(char *buf, size_t cap, int port)
{
    snprintf(buf, cap,
             "upstream pool: server 127.0.0.1:%d up -> down (Connection refused; 2 consecutive "
             "failures)",
             port);
}

static void up_line(char *buf, size_t cap, int port)
{
    snprintf(buf, cap,
             "upstream pool: server 127.0.0.1:%d down -> up (ok; 2 consecutive successes)", port);
}

/* Stops b and waits, within the fall bound, for the log line that takes it out. */
static void kill_and_wait_down(const struct sph_proc *p, struct sph_backend *b)
{
    char line[160];
    down_line(line, sizeof(line), b->port);
    /* splicer listens before its first checks have run: stopped sooner, the server goes down on
     * its first check, a different line. A second probe starts only once the first has ended. */
    ck_assert_msg(sph_wait_atomic_ge(&b->accepted, 2, FALL_MS + RISE_MS),
                  "backend %s: no second health probe", b->name);
    sph_backend_stop(b);
    expect_log(p, line, FALL_MS, "after stopping a backend");
}

/* Passive checks off and no retries, so only the active checks can keep a connection away
 * from a dead server, and a connection sent to one fails visibly. */
#define ACTIVE_ONLY                                                                                \
    "    balance: round_robin\n"                                                                   \
    "    retries: 0\n"                                                                             \
    "    max_fails: 0\n" HEALTH

/* (1) A backend whose listener is gone is out of the rotation within the fall bound: the log
 * says so, and after that every new connection succeeds on the other two. */
START_TEST(dead_server_leaves_rotation)
{
    struct sph_backend *b[NB];
    struct sph_proc p;
    names_start(b, NB);
    int port = proxy_start(&p, 1, ACTIVE_ONLY, b, NB, NULL);
    int before[NB] = {0};
    ck_assert_int_eq(tally(port, 30, before), 0);
    ck_assert_msg(before[0] == 10 && before[1] == 10 && before[2] == 10,
                  "all up: got %d/%d/%d, want 10 each", before[0], before[1], before[2]);

    int64_t t0 = sph_now_ms();
    kill_and_wait_down(&p, b[1]);
    int64_t took = sph_now_ms() - t0;
    int after[NB] = {0};
    int failed = tally(port, 30, after);
    ck_assert_msg(failed == 0 && after[1] == 0,
                  "after the down line (%lld ms): %d failed, %d reached the dead server",
                  (long long)took, failed, after[1]);
    ck_assert_msg(after[0] >= 10 && after[2] >= 10, "the other two got %d and %d of 30", after[0],
                  after[2]);
    char line[160];
    down_line(line, sizeof(line), b[1]->port);
    ck_assert_int_eq(sph_proc_log_count(&p, line), 1);
}
END_TEST

/* (2) The same backend started again on its port is back after `rise` good checks: not at the
 * first one, and within the rise bound; then it takes its share again. */
START_TEST(restarted_server_rejoins)
{
    struct sph_backend *b[NB];
    struct sph_proc p;
    names_start(b, NB);
    int port = proxy_start(&p, 1, ACTIVE_ONLY, b, NB, NULL);
    kill_and_wait_down(&p, b[1]);

    char line[160];
    up_line(line, sizeof(line), b[1]->port);
    int64_t t0 = sph_now_ms();
    ck_assert_int_eq(sph_backend_restart(b[1]), 0);
    expect_log(&p, line, RISE_MS, "after restarting the backend");
    int64_t took = sph_now_ms() - t0;
    /* Two successes are at least one interval apart. */
    ck_assert_msg(took >= INTERVAL_MS * 3 / 4, "up after %lld ms, before %d good checks",
                  (long long)took, RISE);
    int counts[NB] = {0};
    ck_assert_int_eq(tally(port, 30, counts), 0);
    ck_assert_msg(counts[1] >= 8, "the restarted server took %d of 30 (%d/%d/%d)", counts[1],
                  counts[0], counts[1], counts[2]);
}
END_TEST

/* (3) send/expect: a server answering the probe with "NOPE" is down from its first check and
 * takes no traffic, while the one answering "PONG" stays up. */
START_TEST(send_expect)
{
    struct sph_backend *b[2] = {backend(SPH_REPLY, 1, "PONG"), backend(SPH_REPLY, 2, "NOPE")};
    struct sph_proc p;
    int port = proxy_start(&p, 1,
                           "    retries: 0\n"
                           "    max_fails: 0\n" HEALTH "      send: \"PING\\r\\n\"\n"
                           "      expect: \"PONG\"\n",
                           b, 2, NULL);
    char line[160];
    snprintf(line, sizeof(line),
             "upstream pool: server 127.0.0.1:%d up -> down (first check: ", b[1]->port);
    expect_log(&p, line, 2000, "the NOPE server");
    int counts[NB] = {0};
    ck_assert_int_eq(tally(port, 20, counts), 0);
    ck_assert_msg(counts[0] == 20 && counts[1] == 0, "PONG server %d, NOPE server %d of 20",
                  counts[0], counts[1]);
    /* Both saw the probe; only the PONG one is up, after several more checks. */
    sph_sleep_ms(3 * INTERVAL_MS);
    ck_assert_uint_gt(atomic_load(&b[1]->bytes_in), 0);
    snprintf(line, sizeof(line), "server 127.0.0.1:%d up -> down", b[0]->port);
    ck_assert_int_eq(sph_proc_log_count(&p, line), 0);
    snprintf(line, sizeof(line), "server 127.0.0.1:%d down -> up", b[1]->port);
    ck_assert_int_eq(sph_proc_log_count(&p, line), 0);
}
END_TEST

/* (4) With every server down a client is closed promptly and splicer keeps running; once a
 * server is back, connections succeed again. */
START_TEST(all_down_then_recovery)
{
    struct sph_backend *b[2];
    struct sph_proc p;
    names_start(b, 2);
    int port = proxy_start(&p, 1,
                           "    retries: 2\n"
                           "    max_fails: 0\n" HEALTH,
                           b, 2, NULL);
    kill_and_wait_down(&p, b[0]);
    kill_and_wait_down(&p, b[1]);
    for (int k = 0; k < 5; k++) {
        int fd = sph_connect(AF_INET, port, 2000);
        ck_assert_msg(fd >= 0, "client %d: connect: %s", k, strerror(-fd));
        int64_t t0 = sph_now_ms();
        int rc = sph_wait_closed(fd, 3000);
        int64_t took = sph_now_ms() - t0;
        close(fd);
        ck_assert_msg(rc == 0 || rc == -ECONNRESET, "client %d: not closed: %s", k, strerror(-rc));
        ck_assert_msg(took < 1000, "client %d closed after %lld ms", k, (long long)took);
    }
    ck_assert_int_eq(sph_proc_wait(&p, 0), -ETIMEDOUT); /* still running */

    char line[160];
    up_line(line, sizeof(line), b[0]->port);
    ck_assert_int_eq(sph_backend_restart(b[0]), 0);
    expect_log(&p, line, RISE_MS, "after restarting b1");
    for (int k = 0; k < 5; k++)
        ck_assert_int_eq(who(port, NULL), 1);
}
END_TEST

/* (5) A backup takes traffic only while no primary is up, and stops once one is back. */
START_TEST(backup_while_primaries_down)
{
    struct sph_backend *b[NB];
    struct sph_proc p;
    names_start(b, NB);
    bool backup[NB] = {false, false, true};
    int port = proxy_start(&p, 1, ACTIVE_ONLY, b, NB, backup);
    int c1[NB] = {0};
    ck_assert_int_eq(tally(port, 20, c1), 0);
    ck_assert_msg(c1[0] == 10 && c1[1] == 10 && c1[2] == 0, "primaries up: %d/%d/%d", c1[0], c1[1],
                  c1[2]);

    kill_and_wait_down(&p, b[0]);
    kill_and_wait_down(&p, b[1]);
    int c2[NB] = {0};
    ck_assert_int_eq(tally(port, 20, c2), 0);
    ck_assert_msg(c2[2] == 20, "primaries down: backup took %d of 20", c2[2]);

    char line[160];
    up_line(line, sizeof(line), b[0]->port);
    ck_assert_int_eq(sph_backend_restart(b[0]), 0);
    expect_log(&p, line, RISE_MS, "after restarting b1");
    int c3[NB] = {0};
    ck_assert_int_eq(tally(port, 20, c3), 0);
    ck_assert_msg(c3[0] == 20 && c3[2] == 0, "b1 back: %d/%d/%d", c3[0], c3[1], c3[2]);
}
END_TEST

/* (6) Passive checks alone: after max_fails refused connects the server is skipped (every
 * connection succeeds even with retries: 0), and tried again once fail_timeout has passed. */
START_TEST(passive_max_fails)
{
    struct sph_backend *b[2];
    struct sph_proc p;
    names_start(b, 2);
    sph_backend_stop(b[1]); /* refuses */
    int port = proxy_start(&p, 1,
                           "    balance: round_robin\n"
                           "    retries: 0\n"
                           "    max_fails: 2\n"
                           "    fail_timeout: 2s\n",
                           b, 2, NULL);
    int counts[NB] = {0}, failed = 0, k = 0;
    for (; k < 10 && failed < 2; k++)
        failed += who(port, NULL) < 0;
    ck_assert_msg(failed == 2, "%d failures in %d connections", failed, k);
    int64_t held = sph_now_ms();
    char line[160];
    snprintf(line, sizeof(line), "server 127.0.0.1:%d failed 2 times, skipped for 2000 ms",
             b[1]->port);
    expect_log(&p, line, 1000, "after two refused connects");

    /* Well inside the 2 s hold (1 s of margin for a slow box). */
    int n = 0;
    for (; n < 20 && sph_now_ms() < held + 1000; n++)
        ck_assert_int_eq(who(port, NULL), 1);
    ck_assert_msg(n >= 3, "only %d connections in the hold window", n);

    /* Live again, but skipped until the hold ends; then back in the rotation. */
    ck_assert_int_eq(sph_backend_restart(b[1]), 0);
    int64_t left = held + 2000 + 300 - sph_now_ms();
    if (left > 0)
        sph_sleep_ms((int)left);
    ck_assert_int_eq(tally(port, 20, counts), 0);
    ck_assert_msg(counts[1] >= 5, "after fail_timeout b2 took %d of 20", counts[1]);
}
END_TEST

/* (6b) Passive checks on the only server: the app restarts, the clients that find it down
 * trip max_fails, and once it is back the very next client is served, not refused for the rest
 * of fail_timeout (30 s here): with no other server to fall back on, a hold is not honoured. */
START_TEST(passive_single_server_recovers)
{
    struct sph_backend *b[1];
    struct sph_proc p;
    names_start(b, 1);
    int port = proxy_start(&p, 1,
                           "    retries: 0\n"
                           "    max_fails: 2\n"
                           "    fail_timeout: 30s\n",
                           b, 1, NULL);
    ck_assert_int_eq(who(port, NULL), 1);
    /* Closed on the backend's side first: a socket of it left in FIN_WAIT2 would keep the
     * restart below from listening on the port again. */
    ck_assert(sph_wait_atomic_ge(&b[0]->closed, 1, 3000));
    sph_backend_stop(b[0]);
    for (int k = 0; k < 2; k++)
        ck_assert_int_lt(who(port, NULL), 0);
    char line[160];
    snprintf(line, sizeof(line), "server 127.0.0.1:%d failed 2 times, skipped for 30000 ms",
             b[0]->port);
    expect_log(&p, line, 1000, "after two refused connects");

    ck_assert_int_eq(sph_backend_restart(b[0]), 0);
    int id = who(port, NULL);
    ck_assert_msg(id == 1, "first client after the restart: %s",
                  id < 0 ? strerror(-id) : "a stray answer");
    for (int k = 0; k < 5; k++)
        ck_assert_int_eq(who(port, NULL), 1);
}
END_TEST

/* (7) least_conn: with K connections held on b1 and none on the others, the next 2K go to b2
 * and b3, K each. */
#define HELD 4
START_TEST(least_conn_avoids_loaded)
{
    struct sph_backend *b[NB];
    struct sph_proc p;
    names_start(b, NB);
    int port = proxy_start(&p, 1,
                           "    balance: least_conn\n"
                           "    retries: 0\n",
                           b, NB, NULL);
    int fds[NB * HELD], ids[NB * HELD], counts[NB] = {0};
    for (int k = 0; k < NB * HELD; k++) {
        ids[k] = who(port, &fds[k]);
        ck_assert_msg(ids[k] > 0, "connection %d: %s", k, strerror(-ids[k]));
        counts[ids[k] - 1]++;
    }
    ck_assert_msg(counts[0] == HELD && counts[1] == HELD && counts[2] == HELD,
                  "%d held connections spread %d/%d/%d", NB * HELD, counts[0], counts[1],
                  counts[2]);
    for (int k = 0; k < NB * HELD; k++) {
        if (ids[k] != 1)
            close(fds[k]);
    }
    ck_assert(sph_wait_atomic_ge(&b[1]->closed, HELD, 3000));
    ck_assert(sph_wait_atomic_ge(&b[2]->closed, HELD, 3000));
    sph_sleep_ms(300); /* splicer closes its side once the backend's FIN comes back */

    int more[NB] = {0}, fds2[2 * HELD];
    for (int k = 0; k < 2 * HELD; k++) {
        int id = who(port, &fds2[k]);
        ck_assert_msg(id > 0, "new connection %d: %s", k, strerror(-id));
        more[id - 1]++;
    }
    ck_assert_msg(more[0] == 0 && more[1] == HELD && more[2] == HELD,
                  "with %d held on b1, %d new went %d/%d/%d", HELD, 2 * HELD, more[0], more[1],
                  more[2]);
    for (int k = 0; k < 2 * HELD; k++)
        close(fds2[k]);
    for (int k = 0; k < NB * HELD; k++) {
        if (ids[k] == 1)
            close(fds[k]);
    }
}
END_TEST

/* (8) workers: 2. Checks run once per server for the process (the probe rate and a single
 * down line show it), and a dead server leaves the rotation of every worker. */
START_TEST(health_is_process_wide)
{
    struct sph_backend *b[NB];
    struct sph_proc p;
    names_start(b, NB);
    int port = proxy_start(&p, 2, ACTIVE_ONLY, b, NB, NULL);

    /* Over 2 s, one checker probes a server about 9-10 times; one per worker would be 20. */
    sph_sleep_ms(300);
    int a0 = atomic_load(&b[0]->accepted);
    sph_sleep_ms(2000);
    int probes = atomic_load(&b[0]->accepted) - a0;
    ck_assert_msg(probes >= 3 && probes <= 13, "%d probes of one server in 2 s at 200ms", probes);

    kill_and_wait_down(&p, b[1]);
    int counts[NB] = {0};
    int failed = tally(port, 20, counts);
    ck_assert_msg(failed == 0 && counts[1] == 0, "%d failed, %d reached the dead server", failed,
                  counts[1]);
    ck_assert_int_eq(counts[0] + counts[2], 20);
    char line[160];
    down_line(line, sizeof(line), b[1]->port);
    ck_assert_int_eq(sph_proc_log_count(&p, line), 1);
}
END_TEST

static Suite *health_suite(void)
{
    Suite *s = suite_create("health");
    TCase *tc = tcase_create("health");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, dead_server_leaves_rotation);
    tcase_add_test(tc, restarted_server_rejoins);
    tcase_add_test(tc, send_expect);
    tcase_add_test(tc, all_down_then_recovery);
    tcase_add_test(tc, backup_while_primaries_down);
    tcase_add_test(tc, passive_max_fails);
    tcase_add_test(tc, passive_single_server_recovers);
    tcase_add_test(tc, least_conn_avoids_loaded);
    tcase_add_test(tc, health_is_process_wide);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(health_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
