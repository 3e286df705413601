/* test_relay.c: bytes through the real proxy: large transfers intact in splice and copy mode,
 * many concurrent streams, half-close both ways, RST in both directions, a slow reader or a
 * stalled upstream that must not make splicer buffer (flat RSS) nor (group "watch",
 * integration.relay.watch) wake for the stalled client's input, and IPv4/IPv6 mixes (group "ipv6":
 * ctest entry integration.relay.ipv6, skipped on a host without IPv6). Group "workers2"
 * (integration.relay.workers2) runs the concurrent, half-close, reset and copy cases with
 * `workers: 2`, so that sessions of both workers share the process (the ThreadSanitizer stage of
 * scripts/test.sh runs it). */
#include "common.h"
#include "harness.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MIB       (1024ULL * 1024ULL)
#define START_MS  10000
#define CONN_MS   2000
#define NCONC     64
#define RSS_SLACK (8 * 1024) /* KiB */
#define MIN(a, b) ((a) < (b) ? (a) : (b))

struct proxy {
    struct sph_proc proc;
    char conf[SPH_PATH_MAX];
    int family, port;
};

/* `workers:` of every splicer the cases start: 1, or 2 in group workers2 (set by its unchecked
 * fixture in Check's parent, so the forked cases inherit it). */
static int workers = 1;

static void teardown(void)
{
    sph_cleanup();
}

static void workers2_setup(void)
{
    workers = 2;
    sph_suite_setup();
}

static void workers2_teardown(void)
{
    sph_suite_teardown();
    workers = 1;
}

/* Starts splicer with one listener (listen_family, relay mode) in front of one server. */
static void proxy_start(struct proxy *px, const char *relay, int listen_family,
                        const struct sph_backend *be)
{
    char laddr[32], saddr[32];
    px->family = listen_family;
    px->port = sph_free_port(listen_family);
    ck_assert_int_gt(px->port, 0);
    int rc = sph_config_write(px->conf,
                              "workers: %d\n"
                              "shutdown_timeout: 2s\n"
                              "log_level: info\n"
                              "relay: %s\n"
                              "listeners:\n"
                              "  main:\n"
                              "    listen: \"%s\"\n"
                              "    upstream: pool\n"
                              "    connect_timeout: 2s\n"
                              "    idle_timeout: 60s\n"
                              "upstreams:\n"
                              "  pool:\n"
                              "    servers:\n"
                              "      - address: \"%s\"\n",
                              workers, relay, sph_addr(laddr, listen_family, px->port),
                              sph_addr(saddr, be->family, be->port));
    ck_assert_int_eq(rc, 0);
    rc = sph_splicer_start(&px->proc, px->conf, px->port, START_MS);
    if (rc != 0) {
        char *err = sph_proc_stderr(&px->proc);
        ck_abort_msg("splicer did not start listening (%s); stderr:\n%s", strerror(-rc), err);
    }
}

static struct sph_backend *backend_new(enum sph_kind kind, int family)
{
    struct sph_backend *b = sph_backend_new(kind, family);
    ck_assert_ptr_nonnull(b);
    return b;
}

static struct sph_backend *backend_start(enum sph_kind kind, int family)
{
    struct sph_backend *b = backend_new(kind, family);
    ck_assert_int_eq(sph_backend_start(b), 0);
    return b;
}

static int proxy_connect(const struct proxy *px)
{
    int fd = sph_connect(px->family, px->port, CONN_MS);
    ck_assert_msg(fd >= 0, "connect to splicer: %s", strerror(-fd));
    return fd;
}

/* One echo round trip of len bytes; asserts it arrived intact and EOF followed the echo-> */
static void echo_roundtrip(const struct proxy *px, uint64_t len, uint64_t seed, int timeout_ms)
{
    int fd = proxy_connect(px);
    struct sph_xfer x;
    sph_xfer_init(&x, len, seed, timeout_ms);
    x.shut_wr = true;
    int rc = sph_echo_xfer(fd, &x);
    close(fd);
    ck_assert_msg(rc == 0,
                  "transfer of %" PRIu64 " bytes: %s after sending %llu, receiving %llu (EOF %s)",
                  len, strerror(-rc), (unsigned long long)atomic_load(&x.sent),
                  (unsigned long long)atomic_load(&x.received), x.got_eof ? "seen" : "not seen");
    ck_assert_msg(x.mismatch_at < 0, "echo corrupt at byte %" PRId64, x.mismatch_at);
    ck_assert(x.got_eof);
}

START_TEST(big_splice)
{
    struct proxy px;
    struct sph_backend *echo = backend_start(SPH_ECHO, AF_INET);
    proxy_start(&px, "splice", AF_INET, echo);
    echo_roundtrip(&px, 256 * MIB, 11, 55000);
}
END_TEST

START_TEST(big_copy)
{
    struct proxy px;
    struct sph_backend *echo = backend_start(SPH_ECHO, AF_INET);
    proxy_start(&px, "copy", AF_INET, echo);
    echo_roundtrip(&px, 32 * MIB, 12, 30000);
}
END_TEST

struct conc {
    const struct proxy *px;
    struct sph_xfer x;
    int connect_err;
};

static void *conc_main(void *arg)
{
    struct conc *c = arg;
    int fd = sph_connect(c->px->family, c->px->port, 5000);
    if (fd < 0) {
        c->connect_err = fd;
        return NULL;
    }
    sph_echo_xfer(fd, &c->x);
    close(fd);
    return NULL;
}

/* NCONC parallel echo streams of 1 MiB each; every one intact. */
static void concurrent_round(const struct proxy *px, uint64_t seed_base)
{
    static struct conc cs[NCONC];
    pthread_t thr[NCONC];
    for (int i = 0; i < NCONC; i++) {
        cs[i].px = px;
        cs[i].connect_err = 0;
        sph_xfer_init(&cs[i].x, MIB, seed_base + (uint64_t)i, 40000);
        cs[i].x.shut_wr = true;
        ck_assert_int_eq(pthread_create(&thr[i], NULL, conc_main, &cs[i]), 0);
    }
    for (int i = 0; i < NCONC; i++)
        pthread_join(thr[i], NULL);
    for (int i = 0; i < NCONC; i++) {
        struct sph_xfer *x = &cs[i].x;
        ck_assert_msg(cs[i].connect_err == 0, "stream %d: connect: %s", i,
                      strerror(-cs[i].connect_err));
        ck_assert_msg(x->err == 0 && x->got_eof, "stream %d: %s, received %llu of %llu, no EOF", i,
                      strerror(-x->err), (unsigned long long)atomic_load(&x->received),
                      (unsigned long long)x->len);
        ck_assert_msg(x->mismatch_at < 0, "stream %d corrupt at %" PRId64, i, x->mismatch_at);
    }
}

struct fd_cond {
    pid_t pid;
    int max;
};

static bool fds_at_most(void *arg)
{
    struct fd_cond *c = arg;
    int n = sph_proc_fd_count(c->pid);
    return n >= 0 && n <= c->max;
}

/* Two rounds: after the first, the pipe pool is warm, so the second must not leave more fds
 * open than the first did once its sessions are gone (a leak of a socket or pipe per session
 * would show as 64+ extra fds). */
START_TEST(concurrent)
{
    struct proxy px;
    struct sph_backend *echo = backend_start(SPH_ECHO, AF_INET);
    proxy_start(&px, "splice", AF_INET, echo);
    concurrent_round(&px, 1000);
    ck_assert(sph_wait_atomic_ge(&echo->closed, NCONC, 5000));
    sph_sleep_ms(200);
    int after_first = sph_proc_fd_count(px.proc.pid);
    ck_assert_int_gt(after_first, 0);
    concurrent_round(&px, 2000);
    ck_assert(sph_wait_atomic_ge(&echo->closed, 2 * NCONC, 5000));
    struct fd_cond c = {px.proc.pid, after_first};
    ck_assert_msg(sph_wait_until(fds_at_most, &c, 3000),
                  "splicer holds %d fds after round 2, %d after round 1",
                  sph_proc_fd_count(px.proc.pid), after_first);
}
END_TEST

/* Client sends N bytes then FIN; the backend replies only after EOF, with the count and the
 * checksum of all it got: the FIN must have come after every byte, and the reply must still
 * flow back through the half-closed connection. */
START_TEST(halfclose_client_first)
{
    struct proxy px;
    struct sph_backend *hc = backend_start(SPH_HALFCLOSE, AF_INET);
    proxy_start(&px, "splice", AF_INET, hc);
    const size_t n = 4 * MIB + 123;
    char *buf = malloc(n);
    ck_assert_ptr_nonnull(buf);
    sph_pattern_fill(21, 0, buf, n);
    struct sph_sum sum;
    sph_sum_init(&sum);
    sph_sum_update(&sum, buf, n);
    int fd = proxy_connect(&px);
    ck_assert_int_eq(sph_write_all(fd, buf, n, 10000), 0);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    char line[128], want[128];
    ssize_t len = sph_read_line(fd, line, sizeof(line), 10000);
    ck_assert_msg(len > 0, "no reply after half-close: %s", strerror((int)-len));
    snprintf(want, sizeof(want), "%zu %016llx", n, (unsigned long long)sph_sum_value(&sum));
    ck_assert_str_eq(line, want);
    ck_assert_int_eq(sph_wait_closed(fd, 3000), 0);
    close(fd);
    free(buf);
}
END_TEST

/* The reverse: the backend sends 1 MiB and FIN first; the client reads it all up to EOF and only
 * then sends its own data, which must still reach the backend intact. */
START_TEST(halfclose_server_first)
{
    struct proxy px;
    struct sph_backend *src = backend_new(SPH_SOURCE, AF_INET);
    src->source_len = MIB;
    src->seed = 22;
    ck_assert_int_eq(sph_backend_start(src), 0);
    proxy_start(&px, "splice", AF_INET, src);
    int fd = proxy_connect(&px);
    char *buf = malloc(MIB + 1);
    ck_assert_ptr_nonnull(buf);
    ssize_t got = sph_read_to_eof(fd, buf, MIB + 1, 10000);
    ck_assert_msg(got == (ssize_t)MIB, "read %zd before EOF, want %llu", got, MIB);
    ck_assert_int_lt(sph_pattern_check(22, 0, buf, MIB), 0);
    const size_t n = 256 * 1024 + 7;
    sph_pattern_fill(23, 0, buf, n);
    struct sph_sum sum;
    sph_sum_init(&sum);
    sph_sum_update(&sum, buf, n);
    ck_assert_int_eq(sph_write_all(fd, buf, n, 10000), 0);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    ck_assert_msg(sph_wait_atomic_ge(&src->closed, 1, 5000), "backend never saw the client's EOF");
    ck_assert_uint_eq(atomic_load(&src->last_bytes), n);
    ck_assert_uint_eq(atomic_load(&src->last_sum), sph_sum_value(&sum));
    ck_assert_int_eq(atomic_load(&src->eofs), 1);
    ck_assert_int_eq(sph_wait_closed(fd, 3000), 0);
    close(fd);
    free(buf);
}
END_TEST

START_TEST(upstream_reset)
{
    struct proxy px;
    struct sph_backend *rst = backend_start(SPH_RESET, AF_INET);
    proxy_start(&px, "splice", AF_INET, rst);
    int fd = proxy_connect(&px);
    ck_assert_int_eq(sph_write_all(fd, "hello\n", 6, 2000), 0);
    int64_t t0 = sph_now_ms();
    int rc = sph_wait_closed(fd, 2000);
    ck_assert_msg(rc == 0 || rc == -ECONNRESET,
                  "client not closed within 2 s of the upstream RST: %s", strerror(-rc));
    ck_assert_int_le(sph_now_ms() - t0, 2000);
    close(fd);
}
END_TEST

START_TEST(client_abort)
{
    struct proxy px;
    struct sph_backend *echo = backend_start(SPH_ECHO, AF_INET);
    proxy_start(&px, "splice", AF_INET, echo);
    int fd = proxy_connect(&px);
    ck_assert_int_eq(sph_ping(fd, 2000), 0);
    sph_abort(fd);
    ck_assert_msg(sph_wait_atomic_ge(&echo->closed, 1, 2000),
                  "backend connection still open 2 s after the client's RST");
}
END_TEST

/* Group ipv6. _i = 0: [::1] listener in front of an IPv4 backend; 1: IPv4 listener, [::1]
 * backend. */
START_TEST(mixed_families)
{
    int lfam = _i == 0 ? AF_INET6 : AF_INET;
    int bfam = _i == 0 ? AF_INET : AF_INET6;
    struct proxy px;
    struct sph_backend *echo = backend_start(SPH_ECHO, bfam);
    proxy_start(&px, "splice", lfam, echo);
    int fd = proxy_connect(&px);
    ck_assert_int_eq(sph_ping(fd, 2000), 0);
    close(fd);
    echo_roundtrip(&px, MIB, 30 + (uint64_t)_i, 10000);
}
END_TEST

/* The client pulls 512 MiB from a fast source in small bursts with pauses, so splicer always has
 * more to read than it can write and wakes up thousands of times; its RSS must stay flat
 * (backpressure, not buffering, and nothing kept per wakeup). */
START_TEST(slow_reader_flat_rss)
{
    const uint64_t total = 512 * MIB;
    struct proxy px;
    struct sph_backend *src = backend_new(SPH_SOURCE, AF_INET);
    src->source_len = total;
    src->seed = 40;
    ck_assert_int_eq(sph_backend_start(src), 0);
    proxy_start(&px, "splice", AF_INET, src);
    int fd = proxy_connect(&px);
    const size_t burst = 128 * 1024;
    char *buf = malloc(burst);
    ck_assert_ptr_nonnull(buf);
    long first = -1, max = 0;
    int64_t next_sample = 0, deadline = sph_now_ms() + 50000;
    uint64_t got = 0;
    while (got < total && sph_now_ms() < deadline) {
        ssize_t n = sph_read_exact(fd, buf, (size_t)MIN(burst, total - got), 5000);
        ck_assert_msg(n > 0, "read stopped at %llu: %s", (unsigned long long)got,
                      n == 0 ? "EOF" : strerror((int)-n));
        ck_assert_msg(sph_pattern_check(40, got, buf, (size_t)n) < 0, "corrupt near %llu",
                      (unsigned long long)got);
        got += (uint64_t)n;
        if (got >= 16 * MIB && sph_now_ms() >= next_sample) {
            long rss = sph_proc_rss_kb(px.proc.pid);
            ck_assert_int_gt(rss, 0);
            first = first < 0 ? rss : first;
            max = rss > max ? rss : max;
            next_sample = sph_now_ms() + 50;
        }
        if (got % MIB == 0)
            sph_sleep_ms(1);
    }
    ck_assert_msg(got == total, "only %llu of %llu bytes in time", (unsigned long long)got,
                  (unsigned long long)total);
    ck_assert_msg(max - first < RSS_SLACK, "splicer RSS grew from %ld KiB to %ld KiB", first, max);
    ck_assert_int_eq(sph_wait_closed(fd, 3000), 0);
    close(fd);
    free(buf);
}
END_TEST

/* Counts the edge-triggered entries of pid's epoll sets (the workers' relay sets: libuv's own
 * are level-triggered) by whether their events hold EPOLLIN, from /proc/PID/fdinfo. Returns the
 * number of entries, or -errno. */
static int relay_set_entries(pid_t pid, int *with_input, int *without_input)
{
    enum { IN = 0x1, ET = 1u << 31 };
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fdinfo", (int)pid);
    DIR *d = opendir(dir);
    if (d == NULL)
        return -errno;
    *with_input = *without_input = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        char path[320], line[256];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue; /* closed meanwhile */
        while (fgets(line, sizeof(line), f) != NULL) {
            int tfd;
            unsigned events;
            if (sscanf(line, "tfd: %d events: %x", &tfd, &events) != 2 || !(events & ET))
                continue;
            if (events & IN)
                (*with_input)++;
            else
                (*without_input)++;
        }
        fclose(f);
    }
    closedir(d);
    return *with_input + *without_input;
}

/* Writes 64 KiB chunks to fd until a write blocks for 500 ms, and fails the case if 256 MiB go
 * first: that can never fit in loopback socket buffers, so reaching it means splicer keeps
 * reading into memory. *rss_at_1mib is splicer's RSS once 1 MiB has gone. Returns the bytes
 * sent. */
static uint64_t upload_until_blocked(int fd, pid_t pid, long *rss_at_1mib)
{
    const size_t chunk = 64 * 1024;
    char *buf = malloc(chunk);
    ck_assert_ptr_nonnull(buf);
    sph_pattern_fill(60, 0, buf, chunk);
    uint64_t sent = 0;
    int rc = 0;
    *rss_at_1mib = -1;
    while (sent < 256 * MIB && (rc = sph_write_all(fd, buf, chunk, 500)) == 0) {
        sent += chunk;
        if (*rss_at_1mib < 0 && sent >= MIB)
            *rss_at_1mib = sph_proc_rss_kb(pid);
    }
    free(buf);
    ck_assert_msg(rc == -ETIMEDOUT, "writes never blocked: %llu bytes taken (%s)",
                  (unsigned long long)sent, strerror(-rc));
    return sent;
}

/* A proxy in mode (0: splice, 1: copy) in front of a backend that accepts and never reads, and
 * a client that uploads through it until its writes block: where both cases below start. Returns
 * the client's socket; *sent and *rss_at_1mib as upload_until_blocked gives them. */
static int stalled_upload(struct proxy *px, int mode, struct sph_backend **stall, uint64_t *sent,
                          long *rss_at_1mib)
{
    *stall = backend_start(SPH_STALL, AF_INET);
    proxy_start(px, mode == 0 ? "splice" : "copy", AF_INET, *stall);
    int fd = proxy_connect(px);
    *sent = upload_until_blocked(fd, px->proc.pid, rss_at_1mib);
    return fd;
}

/* _i = 0: splice, 1: copy. Once the socket buffers on the way are full the client's writes must
 * block, with splicer holding at most a bounded buffer (its RSS flat), rather than reading on
 * into memory. */
START_TEST(stalled_upstream_bounded)
{
    struct proxy px;
    struct sph_backend *stall;
    uint64_t sent;
    long first;
    int fd = stalled_upload(&px, _i, &stall, &sent, &first);
    long rss = sph_proc_rss_kb(px.proc.pid);
    ck_assert_int_gt(first, 0);
    ck_assert_msg(rss - first < RSS_SLACK,
                  "splicer RSS grew from %ld KiB to %ld KiB with %llu "
                  "bytes stuck",
                  first, rss, (unsigned long long)sent);
    ck_assert_int_eq(atomic_load(&stall->bytes_in), 0);
    close(fd);
}
END_TEST

/* _i = 0: splice, 1: copy. Stalled as above, the client's socket is read no more, so it must not
 * wake the worker for each segment the client adds: its EPOLLIN is out of the relay set (flow.h's
 * sp_flow_wants_input), read from /proc/PID/fdinfo. The server's socket still reports input. In
 * group "watch", which needs that fdinfo readable (SPH_NEED_FDS) and is skipped otherwise. */
START_TEST(stalled_upload_leaves_input)
{
    struct proxy px;
    struct sph_backend *stall;
    uint64_t sent;
    long first;
    int fd = stalled_upload(&px, _i, &stall, &sent, &first);
    int with_in = 0, without_in = 0;
    int n = relay_set_entries(px.proc.pid, &with_in, &without_in);
    ck_assert_msg(n == 2, "relay set of splicer: %d entries (%s), 2 expected", n,
                  n < 0 ? strerror(-n) : "");
    ck_assert_msg(without_in == 1 && with_in == 1,
                  "stalled upload: %d socket(s) without EPOLLIN, %d with it; the client's alone "
                  "should be without",
                  without_in, with_in);
    close(fd);
}
END_TEST

static void add_main(Suite *s)
{
    TCase *tc = tcase_create("relay");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, big_splice);
    tcase_add_test(tc, big_copy);
    tcase_add_test(tc, concurrent);
    tcase_add_test(tc, halfclose_client_first);
    tcase_add_test(tc, halfclose_server_first);
    tcase_add_test(tc, upstream_reset);
    tcase_add_test(tc, client_abort);
    tcase_add_test(tc, slow_reader_flat_rss);
    tcase_add_loop_test(tc, stalled_upstream_bounded, 0, 2);
    suite_add_tcase(s, tc);
}

static void add_watch(Suite *s)
{
    TCase *tc = tcase_create("watch");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_loop_test(tc, stalled_upload_leaves_input, 0, 2);
    suite_add_tcase(s, tc);
}

static void add_ipv6(Suite *s)
{
    TCase *tc = tcase_create("ipv6");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_loop_test(tc, mixed_families, 0, 2);
    suite_add_tcase(s, tc);
}

/* With 64 concurrent streams both workers carry sessions at once; the others check that a
 * session on either worker ends as it does with one. */
static void add_workers2(Suite *s)
{
    TCase *tc = tcase_create("workers2");
    tcase_add_unchecked_fixture(tc, workers2_setup, workers2_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, concurrent);
    tcase_add_test(tc, big_copy);
    tcase_add_test(tc, halfclose_client_first);
    tcase_add_test(tc, halfclose_server_first);
    tcase_add_test(tc, upstream_reset);
    tcase_add_test(tc, client_abort);
    suite_add_tcase(s, tc);
}

static const struct sph_group groups[] = {
    {.name = NULL, .add = add_main},
    {.name = "ipv6", .needs = SPH_NEED_IPV6, .add = add_ipv6},
    {.name = "workers2", .add = add_workers2},
    {.name = "watch", .needs = SPH_NEED_FDS, .add = add_watch},
};

int main(int argc, char **argv)
{
    return sph_main(argc, argv, "integration.relay", groups, SP_ARRAY_LEN(groups));
}
