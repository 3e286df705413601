/* test_abort.c: a reset on one side must not cost the other side a byte. A server that answers
 * and then closes with SO_LINGER{1,0} (what servers do when they close with an unread request
 * body), or a client that sends and then aborts, has its bytes delivered before the abort is
 * passed on; and an abort with nothing in flight still travels through as a reset. */
#include "harness.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define START_MS   10000
#define REPLY_LEN  60000
#define ROUNDS     8
#define REQ_LEN    100
#define UPLOAD_LEN 60000

static void teardown(void)
{
    sph_cleanup();
}

/* A one-connection-at-a-time server on 127.0.0.1, run by a thread. */
struct server {
    int lfd, port;
    pthread_t thr;
    atomic_bool stop;
    /* reply_then_reset: read REQ_LEN bytes, write REPLY_LEN pattern bytes, close with RST.
     * Otherwise count what arrives until EOF or reset. */
    bool reply_then_reset;
    atomic_int conns;
    atomic_ullong last_bytes; /* count mode: bytes of the last connection */
    atomic_ullong last_sum;
};

static void close_rst(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

static void serve_one(struct server *s, int fd)
{
    char buf[65536];
    if (s->reply_then_reset) {
        /* Read part of the request only: the rest stays unread, as with an ignored body. */
        size_t got = 0;
        while (got < REQ_LEN / 2) {
            ssize_t n = recv(fd, buf, REQ_LEN / 2 - got, 0);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        char *reply = malloc(REPLY_LEN);
        sph_pattern_fill(77, 0, reply, REPLY_LEN);
        size_t off = 0;
        while (off < REPLY_LEN) {
            ssize_t n = send(fd, reply + off, REPLY_LEN - off, MSG_NOSIGNAL);
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        free(reply);
        close_rst(fd);
        return;
    }
    struct sph_sum sum;
    sph_sum_init(&sum);
    uint64_t total = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            break;
        sph_sum_update(&sum, buf, (size_t)n);
        total += (uint64_t)n;
    }
    atomic_store(&s->last_bytes, total);
    atomic_store(&s->last_sum, sph_sum_value(&sum));
    close(fd);
}

static void *server_main(void *arg)
{
    struct server *s = arg;
    while (!atomic_load(&s->stop)) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        serve_one(s, fd);
        atomic_fetch_add(&s->conns, 1);
    }
    return NULL;
}

static void server_start(struct server *s, bool reply_then_reset)
{
    memset(s, 0, sizeof(*s));
    s->reply_then_reset = reply_then_reset;
    s->port = sph_free_port(AF_INET);
    ck_assert_int_gt(s->port, 0);
    s->lfd = sph_listen(AF_INET, s->port, 16);
    ck_assert_int_ge(s->lfd, 0);
    /* accept() wakes every 100 ms to look at `stop`. */
    struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
    setsockopt(s->lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ck_assert_int_eq(pthread_create(&s->thr, NULL, server_main, s), 0);
}

static void server_stop(struct server *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thr, NULL);
    close(s->lfd);
}

static int proxy_start(struct sph_proc *p, const char *relay, int server_port)
{
    char conf[SPH_PATH_MAX];
    int port = sph_free_port(AF_INET);
    int rc = sph_config_write(conf,
                              "workers: 1\n"
                              "shutdown_timeout: 1s\n"
                              "relay: %s\n"
                              "listeners:\n"
                              "  main:\n"
                              "    listen: 127.0.0.1:%d\n"
                              "    upstream: pool\n"
                              "upstreams:\n"
                              "  pool:\n"
                              "    servers:\n"
                              "      - address: 127.0.0.1:%d\n",
                              relay, port, server_port);
    ck_assert_int_eq(rc, 0);
    rc = sph_splicer_start(p, conf, port, START_MS);
    ck_assert_msg(rc == 0, "splicer did not start: %s", strerror(-rc));
    return port;
}

/* Reads until EOF or reset; returns the bytes read and sets *how to 0 (FIN) or -ECONNRESET. */
static size_t read_until_end(int fd, char *buf, size_t cap, int *how)
{
    size_t got = 0;
    int64_t deadline = sph_now_ms() + 5000;
    *how = -ETIMEDOUT;
    while (sph_now_ms() < deadline) {
        ssize_t n = recv(fd, buf + got, got < cap ? cap - got : 0, MSG_DONTWAIT);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == 0) {
            *how = 0;
            break;
        }
        if (errno == ECONNRESET) {
            *how = -ECONNRESET;
            break;
        }
        sph_sleep_ms(1);
    }
    return got;
}

/* 9.2: the server answers, then resets because it left part of the request unread. Every byte
 * of the answer must reach the client, in each relay mode, every time. */
START_TEST(server_reset_after_reply)
{
    static const char *const modes[] = {"splice", "copy", "auto"};
    struct server srv;
    server_start(&srv, true);
    struct sph_proc p;
    int port = proxy_start(&p, modes[_i], srv.port);
    char *buf = malloc(REPLY_LEN + 1);
    char req[REQ_LEN];
    memset(req, 'q', sizeof(req));
    for (int round = 0; round < ROUNDS; round++) {
        int fd = sph_connect(AF_INET, port, 2000);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(sph_write_all(fd, req, sizeof(req), 2000), 0);
        /* Like a client busy elsewhere, read only once the server is done. */
        ck_assert(sph_wait_atomic_ge(&srv.conns, round + 1, 5000));
        sph_sleep_ms(20);
        int how;
        size_t got = read_until_end(fd, buf, REPLY_LEN + 1, &how);
        ck_assert_msg(got == REPLY_LEN, "%s, round %d: the client got %zu of %d bytes", modes[_i],
                      round, got, REPLY_LEN);
        ck_assert_int_lt(sph_pattern_check(77, 0, buf, REPLY_LEN), 0);
        ck_assert_msg(how == 0 || how == -ECONNRESET, "no end seen: %s", strerror(-how));
        close(fd);
    }
    free(buf);
    server_stop(&srv);
}
END_TEST

/* The reverse: a client uploads and then aborts; what it sent before the abort reaches the
 * server whole. */
START_TEST(client_reset_after_upload)
{
    static const char *const modes[] = {"splice", "copy", "auto"};
    struct server srv;
    server_start(&srv, false);
    struct sph_proc p;
    int port = proxy_start(&p, modes[_i], srv.port);
    char *data = malloc(UPLOAD_LEN);
    sph_pattern_fill(78, 0, data, UPLOAD_LEN);
    struct sph_sum sum;
    sph_sum_init(&sum);
    sph_sum_update(&sum, data, UPLOAD_LEN);
    for (int round = 0; round < ROUNDS; round++) {
        int fd = sph_connect(AF_INET, port, 2000);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(sph_write_all(fd, data, UPLOAD_LEN, 2000), 0);
        sph_abort(fd);
        ck_assert(sph_wait_atomic_ge(&srv.conns, round + 1, 5000));
        ck_assert_msg(atomic_load(&srv.last_bytes) == UPLOAD_LEN,
                      "%s, round %d: the server got %llu of %d bytes", modes[_i], round,
                      (unsigned long long)atomic_load(&srv.last_bytes), UPLOAD_LEN);
        ck_assert_uint_eq(atomic_load(&srv.last_sum), sph_sum_value(&sum));
    }
    free(data);
    server_stop(&srv);
}
END_TEST

/* With nothing in flight, an abort still travels as an abort: the server resets right after the
 * client's bytes arrived and nothing is left to deliver, so the client sees a reset. */
START_TEST(reset_travels_when_nothing_is_pending)
{
    struct sph_backend *rst = sph_backend_new(SPH_RESET, AF_INET);
    ck_assert_ptr_nonnull(rst);
    ck_assert_int_eq(sph_backend_start(rst), 0);
    struct sph_proc p;
    int port = proxy_start(&p, "splice", rst->port);
    int fd = sph_connect(AF_INET, port, 2000);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(sph_write_all(fd, "hello\n", 6, 2000), 0);
    ck_assert_int_eq(sph_wait_closed(fd, 3000), -ECONNRESET);
    close(fd);
}
END_TEST

/* A client sends to an echo server without reading, then resets. splicer still owes the server
 * the client's last bytes, and the server reads them only once it can write its echo, which has
 * nobody to go to. What the server writes is dropped, so it takes the rest, and the session ends
 * at once as a client reset, not at idle_timeout. */
START_TEST(reset_while_the_peer_waits_to_write)
{
    struct sph_backend *echo = sph_backend_new(SPH_ECHO, AF_INET);
    ck_assert_ptr_nonnull(echo);
    ck_assert_int_eq(sph_backend_start(echo), 0);
    char conf[SPH_PATH_MAX];
    int port = sph_free_port(AF_INET), admin = sph_free_port(AF_INET);
    ck_assert_int_eq(sph_config_write(conf,
                                      "workers: 1\n"
                                      "shutdown_timeout: 1s\n"
                                      "access_log: stderr\n"
                                      "admin: {listen: 127.0.0.1:%d}\n"
                                      "listeners:\n"
                                      "  main: {listen: 127.0.0.1:%d, upstream: pool,"
                                      " idle_timeout: 30s}\n"
                                      "upstreams:\n"
                                      "  pool: {servers: [{address: 127.0.0.1:%d}]}\n",
                                      admin, port, echo->port),
                     0);
    struct sph_proc p;
    ck_assert_int_eq(sph_splicer_start(&p, conf, port, START_MS), 0);
    int fd = sph_connect(AF_INET, port, 2000);
    ck_assert_int_ge(fd, 0);
    int small = 64 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    /* Write until everything is full: the echo has nowhere to go, so nothing moves. */
    char *buf = calloc(1, 1 << 20);
    size_t sent = 0;
    for (int64_t end = sph_now_ms() + 3000; sph_now_ms() < end;) {
        ssize_t n = send(fd, buf, 1 << 20, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
            end = sph_now_ms() + 300; /* until 300 ms without progress */
        } else {
            sph_sleep_ms(5);
        }
    }
    free(buf);
    ck_assert_uint_gt(sent, 1 << 20);
    sph_abort(fd);
    int64_t t0 = sph_now_ms();
    ck_assert_msg(sph_wait_atomic_ge(&echo->closed, 1, 5000),
                  "the server's connection still open 5 s after the client's reset (%zu sent)",
                  sent);
    sph_expect_metric(admin, "splicer_listener_active_connections{listener=\"main\"}", 0);
    ck_assert_int_le(sph_now_ms() - t0, 5000);
    ck_assert(sph_proc_wait_log(&p, "\"end\":\"client_reset\"", 1, 3000));
}
END_TEST

static Suite *abort_suite(void)
{
    Suite *s = suite_create("abort");
    TCase *tc = tcase_create("abort");
    tcase_set_timeout(tc, 60);
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_loop_test(tc, server_reset_after_reply, 0, 3);
    tcase_add_loop_test(tc, client_reset_after_upload, 0, 3);
    tcase_add_test(tc, reset_travels_when_nothing_is_pending);
    tcase_add_test(tc, reset_while_the_peer_waits_to_write);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(abort_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
