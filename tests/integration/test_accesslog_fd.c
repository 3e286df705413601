/* test_accesslog_fd.c: the access log's descriptor across reloads, with the real binary (issue
 * 9.1). The log goes to a FIFO that is read only when the test says so, so the writer thread
 * blocks in the middle of a batch; two SIGHUPs then reopen the log while it is blocked. Clients
 * that connect after that must never receive a byte of log text, and every line must reach the
 * log whole. */
#include "harness.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define IO_MS 5000

static void teardown(void)
{
    sph_cleanup();
}

/* Opens and closes n connections through port, each echoing a ping: n log lines. */
static void short_connections(int port, int n)
{
    for (int i = 0; i < n; i++) {
        int fd = sph_connect(AF_INET, port, IO_MS);
        ck_assert_msg(fd >= 0, "connect %d: %s", i, strerror(-fd));
        int rc = sph_ping(fd, IO_MS);
        ck_assert_msg(rc == 0, "ping %d: %s", i, strerror(-rc));
        close(fd);
    }
}

/* Waits (up to 10 s) until the FIFO read end holds nearly a full pipe that has not grown for
 * 300 ms: the writer, which has more to write, is blocked in write() on it. */
static void wait_fifo_full(int rfd)
{
    int cap = fcntl(rfd, F_GETPIPE_SZ);
    ck_assert_int_gt(cap, 0);
    int queued = 0, last = -1;
    int64_t since = sph_now_ms(), t0 = since;
    while (sph_now_ms() - t0 < 10000) {
        ck_assert_int_eq(ioctl(rfd, FIONREAD, &queued), 0);
        if (queued != last) {
            last = queued;
            since = sph_now_ms();
        } else if (queued > cap - 16384 && sph_now_ms() - since >= 300) {
            return;
        }
        sph_sleep_ms(5);
    }
    ck_abort_msg("the FIFO holds %d of %d bytes: the log writer never blocked", queued, cap);
}

struct acc {
    char *buf; /* owned; NUL-terminated */
    size_t len, cap;
};

/* Reads the non-blocking fd into a until nothing came for idle_ms (EOF included: splicer may be
 * between two writers, or gone), or (until != NULL) as soon as the text holds until, reading
 * 4 KiB at a time so that little more is taken from the FIFO. */
static void acc_read(struct acc *a, int fd, int idle_ms, const char *until)
{
    int64_t last = sph_now_ms();
    while (sph_now_ms() - last < idle_ms) {
        if (a->cap - a->len < 4096) {
            a->cap = a->cap == 0 ? 1 << 20 : a->cap * 2;
            a->buf = realloc(a->buf, a->cap + 1);
            ck_assert_ptr_nonnull(a->buf);
            a->buf[a->len] = '\0';
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ck_assert_int_ge(poll(&p, 1, 50), 0);
        ssize_t r = read(fd, a->buf + a->len, until != NULL ? 4096 : a->cap - a->len);
        if (r == -1 && errno != EAGAIN && errno != EINTR)
            ck_abort_msg("read: %s", strerror(errno));
        if (r <= 0) {
            if (p.revents & POLLHUP)
                sph_sleep_ms(10); /* no writer: POLLHUP would make poll() return at once */
            continue;
        }
        last = sph_now_ms();
        a->len += (size_t)r;
        a->buf[a->len] = '\0';
        if (until != NULL && strstr(a->buf, until) != NULL)
            break;
    }
}

/* Every line of text is one JSON object with listener "a" or "b"; returns the count. */
static int check_lines(const char *text, size_t len)
{
    int n = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        ck_assert_msg(nl != NULL, "a half line at the end of the log: [%.*s]", (int)(end - p), p);
        ck_assert_msg(sph_json_valid(p, (size_t)(nl - p), true) &&
                          (strstr(p, "\"listener\":\"a\"") == p + 35 ||
                           strstr(p, "\"listener\":\"b\"") == p + 35),
                      "log line %d is not a whole entry: [%.*s]", n, (int)(nl - p), p);
        n++;
        p = nl + 1;
    }
    return n;
}

START_TEST(reopened_log_never_reaches_a_client)
{
    struct sph_backend *echo = sph_backend_new(SPH_ECHO, AF_INET);
    ck_assert_ptr_nonnull(echo);
    ck_assert_int_eq(sph_backend_start(echo), 0);
    int pa = sph_free_port(AF_INET), pb = sph_free_port(AF_INET);
    ck_assert(pa > 0 && pb > 0 && pa != pb);

    /* The FIFO lives next to the config, in the suite's private directory. */
    char conf[SPH_PATH_MAX], dir[SPH_PATH_MAX], fifo[SPH_PATH_MAX + 16];
    ck_assert_int_eq(sph_config_write(conf, "%s", ""), 0);
    snprintf(dir, sizeof(dir), "%s", conf);
    snprintf(fifo, sizeof(fifo), "%s/access.fifo", dirname(dir));
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    /* A reader first, or splicer's open(O_WRONLY) would wait for one; nobody reads yet. */
    int rfd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    ck_assert_int_ge(rfd, 0);
    ck_assert_int_eq(sph_config_rewrite(conf,
                                        "workers: 1\n"
                                        "shutdown_timeout: 1s\n"
                                        "access_log: %s\n"
                                        "listeners:\n"
                                        "  a: {listen: 127.0.0.1:%d, upstream: pool}\n"
                                        "  b: {listen: 127.0.0.1:%d, upstream: pool}\n"
                                        "upstreams:\n"
                                        "  pool: {servers: [{address: 127.0.0.1:%d}]}\n",
                                        fifo, pa, pb, echo->port),
                     0);
    struct sph_proc p;
    ck_assert_int_eq(sph_splicer_start(&p, conf, pb, 10000), 0);

    /* The writer takes all that is queued as one batch. Through a: enough lines to fill the
     * FIFO and block the writer; through b: more, which queue up behind it. Reading just past
     * the a lines lets the writer take the b lines as one batch of many buffers and block again
     * a few KiB into it. */
    short_connections(pa, 600);
    wait_fifo_full(rfd);
    short_connections(pb, 1000);
    sph_sleep_ms(500); /* the worker hands over its last, partial buffer within 200 ms */
    struct acc log = {0};
    acc_read(&log, rfd, 3000, "\"listener\":\"b\"");
    ck_assert_msg(log.buf != NULL && strstr(log.buf, "\"listener\":\"b\"") != NULL,
                  "no line of listener b in the log");
    wait_fifo_full(rfd);

    /* A reload, and 0.3 s later a logrotate SIGHUP, while the writer is blocked. */
    ck_assert_int_eq(sph_proc_signal_wait_log(&p, SIGHUP, "reloaded", IO_MS), 0);
    sph_sleep_ms(300);
    ck_assert_int_eq(sph_proc_signal_wait_log(&p, SIGHUP, "reloaded", IO_MS), 0);

    /* Unrelated clients, whose sockets splicer accepts now, then the log is read. */
    enum { CLIENTS = 20 };
    int fds[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        fds[i] = sph_connect(AF_INET, pa, IO_MS);
        ck_assert_int_ge(fds[i], 0);
        ck_assert_int_eq(sph_ping(fds[i], IO_MS), 0);
    }
    acc_read(&log, rfd, 1500, NULL);
    size_t leaked = 0;
    char sample[81] = "";
    for (int i = 0; i < CLIENTS; i++) {
        char buf[4096];
        struct pollfd pf = {.fd = fds[i], .events = POLLIN};
        while (poll(&pf, 1, i == 0 ? 500 : 50) == 1) {
            ssize_t r = read(fds[i], buf, sizeof(buf));
            if (r <= 0)
                break;
            if (leaked == 0)
                snprintf(sample, sizeof(sample), "%.*s", (int)r, buf);
            leaked += (size_t)r;
        }
    }
    ck_assert_msg(leaked == 0, "clients received %zu bytes that they never sent: \"%s\"", leaked,
                  sample);
    for (int i = 0; i < CLIENTS; i++) {
        ck_assert_int_eq(sph_ping(fds[i], IO_MS), 0); /* and the relay still works */
        close(fds[i]);
    }

    /* Every line arrives whole: the 1,600 short connections and the 20 clients. */
    ck_assert_int_eq(sph_proc_signal(&p, SIGTERM), 0);
    ck_assert_int_eq(sph_proc_wait(&p, 10000), 0);
    acc_read(&log, rfd, 500, NULL);
    int lines = check_lines(log.buf, log.len);
    ck_assert_int_eq(lines, 600 + 1000 + CLIENTS);
    free(log.buf);
    close(rfd);
    unlink(fifo);
}
END_TEST

/* A log nobody reads: the writer falls behind, whole buffers are dropped, and /metrics and
 * /status say how many. The relay goes on meanwhile. */
START_TEST(dropped_lines_are_counted)
{
    struct sph_backend *echo = sph_backend_new(SPH_ECHO, AF_INET);
    ck_assert_ptr_nonnull(echo);
    ck_assert_int_eq(sph_backend_start(echo), 0);
    int port = sph_free_port(AF_INET), admin = sph_free_port(AF_INET);
    char conf[SPH_PATH_MAX], dir[SPH_PATH_MAX], fifo[SPH_PATH_MAX + 16];
    ck_assert_int_eq(sph_config_write(conf, "%s", ""), 0);
    snprintf(dir, sizeof(dir), "%s", conf);
    snprintf(fifo, sizeof(fifo), "%s/stuck.fifo", dirname(dir));
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    int rfd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* opened, never read */
    ck_assert_int_ge(rfd, 0);
    /* Long names make long lines: 4 MiB of them queue up in a few thousand connections. */
    char name[1001];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    ck_assert_int_eq(sph_config_rewrite(conf,
                                        "workers: 1\n"
                                        "shutdown_timeout: 1s\n"
                                        "access_log: %s\n"
                                        "admin: {listen: 127.0.0.1:%d}\n"
                                        "listeners:\n"
                                        "  l%s: {listen: 127.0.0.1:%d, upstream: u%s}\n"
                                        "upstreams:\n"
                                        "  u%s: {servers: [{address: 127.0.0.1:%d}]}\n",
                                        fifo, admin, name, port, name, name, echo->port),
                     0);
    struct sph_proc p;
    ck_assert_int_eq(sph_splicer_start(&p, conf, port, 10000), 0);
    sph_expect_metric(admin, "splicer_access_log_dropped_total", 0);
    short_connections(port, 2600);
    long long dropped = -1;
    for (int i = 0; i < 100 && dropped <= 0; i++) {
        dropped = sph_metric(admin, "splicer_access_log_dropped_total");
        if (dropped <= 0) {
            short_connections(port, 50);
            sph_sleep_ms(50);
        }
    }
    ck_assert_msg(dropped > 0, "no buffer counted as dropped");
    char body[16384];
    ck_assert_int_eq(sph_admin_req(admin, "GET", "/status", body, sizeof(body)), 200);
    ck_assert_ptr_nonnull(strstr(body, "\"access_log_dropped\":"));
    ck_assert_ptr_null(strstr(body, "\"access_log_dropped\":0,"));
    /* Drain the FIFO so that the writer, and then splicer, can stop. */
    sph_proc_signal(&p, SIGTERM);
    struct acc log = {0};
    acc_read(&log, rfd, 1000, NULL);
    free(log.buf);
    ck_assert_int_eq(sph_proc_wait(&p, 10000), 0);
    close(rfd);
    unlink(fifo);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("accesslog_fd");
    TCase *tc = tcase_create("accesslog_fd");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, reopened_log_never_reaches_a_client);
    tcase_add_test(tc, dropped_lines_are_counted);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
