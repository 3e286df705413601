/* cases_stuck.c: peers that stop: a server frozen with SIGSTOP under load, a server that
 * accepts and never reads, a client that never reads. */
#include "faults.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MIB (1024ull * 1024ull)

/* ---- 5. frozen --------------------------------------------------------------------------- */

#define FROZEN_IDLE_MS 2000
#define SESSIONS       6

/* Polls /status until the server on `port` is in `state` ("up"/"down"); returns the ms it
 * took, or -1 after timeout_ms. */
static int64_t wait_state(int port, const char *state, int timeout_ms)
{
    char needle[96];
    snprintf(needle, sizeof(needle), "\"address\":\"" FX_SERVER_IP ":%d\",\"state\":\"%s\"", port,
             state);
    int64_t t0 = sph_now_ms();
    for (;;) {
        char *st = fx_status();
        bool found = strstr(st, needle) != NULL;
        free(st);
        if (found)
            return sph_now_ms() - t0;
        if (sph_now_ms() - t0 > timeout_ms)
            return -1;
        sph_sleep_ms(50);
    }
}

/* Connects and reads the server's name line into name. */
static int named_conn(char *name, size_t cap)
{
    int fd = fx_connect(FX_PORT, 0, 5000);
    ck_assert_msg(fd >= 0, "connect: %s", strerror(-fd));
    ssize_t n = sph_read_line(fd, name, cap, 5000);
    ck_assert_msg(n > 0, "no name line: %s", strerror((int)-n));
    return fd;
}

struct pinger {
    int *fds;
    int n;
    atomic_bool stop;
    atomic_int ok, failed;
};

/* Keeps the sessions to the running server busy: a ping on each every 100 ms. */
static void *ping_main(void *arg)
{
    struct pinger *pg = arg;
    while (!atomic_load(&pg->stop)) {
        for (int i = 0; i < pg->n; i++) {
            if (sph_ping(pg->fds[i], 2000) == 0)
                atomic_fetch_add(&pg->ok, 1);
            else
                atomic_fetch_add(&pg->failed, 1);
        }
        sph_sleep_ms(100);
    }
    return NULL;
}

/* Server a is frozen (SIGSTOP) while both servers carry sessions: its active health check (a
 * probe that wants an answer; the kernel still completes handshakes for a stopped process)
 * takes it down, new clients go to b, the sessions stuck on a end by idle_timeout, those on b go
 * on; after SIGCONT a comes back up and takes clients again. */
START_TEST(frozen)
{
    pid_t a = fx_backend_process(SPH_NAME, 8001, "a");
    pid_t b = fx_backend_process(SPH_NAME, 8002, "b");
    struct sph_proc p;
    fx_splicer(&p, "workers: 1\n"
                   "shutdown_timeout: 1s\n"
                   "access_log: stderr\n"
                   "admin:\n"
                   "  listen: 127.0.0.1:9000\n"
                   "listeners:\n"
                   "  main:\n"
                   "    listen: " FX_PROXY_IP ":8000\n"
                   "    upstream: pool\n"
                   "    idle_timeout: 2s\n"
                   "upstreams:\n"
                   "  pool:\n"
                   "    health_check:\n"
                   "      interval: 300ms\n"
                   "      timeout: 300ms\n"
                   "      fall: 2\n"
                   "      rise: 2\n"
                   "      send: \"hc\\n\"\n"
                   "      expect: \"hc\"\n"
                   "    servers:\n"
                   "      - address: " FX_SERVER_IP ":8001\n"
                   "      - address: " FX_SERVER_IP ":8002\n");
    ck_assert_int_ge(wait_state(8001, "up", 3000), 0);
    ck_assert_int_ge(wait_state(8002, "up", 3000), 0);
    struct fx_baseline base;
    fx_baseline(&p, &base);

    int on_a[SESSIONS], on_b[SESSIONS], na = 0, nb = 0;
    for (int i = 0; i < SESSIONS; i++) {
        char name[16];
        int fd = named_conn(name, sizeof(name));
        if (strcmp(name, "a") == 0)
            on_a[na++] = fd;
        else
            on_b[nb++] = fd;
    }
    ck_assert_msg(na >= 2 && nb >= 2, "sessions: %d on a, %d on b", na, nb);
    struct pinger pg = {.fds = on_b, .n = nb};
    pthread_t thr;
    ck_assert_int_eq(pthread_create(&thr, NULL, ping_main, &pg), 0);

    /* The sessions to a send a last request that a frozen a never answers. */
    ck_assert_int_eq(kill(a, SIGSTOP), 0);
    int64_t frozen_at = sph_now_ms();
    for (int i = 0; i < na; i++)
        ck_assert_int_eq(sph_write_all(on_a[i], "ping\n", 5, 1000), 0);
    /* fall 2 checks at 300 ms (+10% jitter), each failing after its 300 ms timeout. */
    int64_t down = wait_state(8001, "down", 5000);
    printf("frozen: a down in /status %lld ms after SIGSTOP\n", (long long)down);
    fflush(stdout);
    ck_assert_int_ge(down, 0);
    ck_assert_int_le(down, 2500);
    for (int i = 0; i < 6; i++) {
        char name[16];
        int fd = named_conn(name, sizeof(name));
        ck_assert_str_eq(name, "b");
        ck_assert_int_eq(sph_ping(fd, 2000), 0);
        close(fd);
    }
    /* The sessions on a: nothing moves, so idle_timeout ends them (a FIN to the client). */
    for (int i = 0; i < na; i++) {
        int rc = sph_wait_closed(on_a[i], FROZEN_IDLE_MS + 3000);
        int64_t after = sph_now_ms() - frozen_at;
        ck_assert_msg(rc == 0, "session %d on a: %s", i, strerror(-rc));
        ck_assert_int_ge(after, FROZEN_IDLE_MS - 50);
        close(on_a[i]);
    }
    printf("frozen: %d sessions on a closed by idle_timeout by %lld ms after SIGSTOP\n", na,
           (long long)(sph_now_ms() - frozen_at));
    ck_assert(sph_proc_wait_log(&p, "\"end\":\"idle_timeout\"", na, 3000));
    ck_assert_int_eq(fx_log_ends(&p, "idle_timeout"), na);

    ck_assert_int_eq(kill(a, SIGCONT), 0);
    int64_t up = wait_state(8001, "up", 5000);
    printf("frozen: a up again %lld ms after SIGCONT\n", (long long)up);
    ck_assert_int_ge(up, 0);
    int again = 0;
    for (int i = 0; i < 4; i++) {
        char name[16];
        int fd = named_conn(name, sizeof(name));
        again += strcmp(name, "a") == 0;
        ck_assert_int_eq(sph_ping(fd, 2000), 0);
        close(fd);
    }
    ck_assert_int_ge(again, 1);

    atomic_store(&pg.stop, true);
    pthread_join(thr, NULL);
    printf("frozen: sessions on b: %d pings answered, %d failed\n", atomic_load(&pg.ok),
           atomic_load(&pg.failed));
    ck_assert_int_eq(atomic_load(&pg.failed), 0);
    ck_assert_int_gt(atomic_load(&pg.ok), nb * 10);
    for (int i = 0; i < nb; i++)
        close(on_b[i]);
    fx_expect_no_leak(&p, &base, 10000);
    fx_child_kill(a);
    fx_child_kill(b);
}
END_TEST

void fx_add_frozen(Suite *s)
{
    TCase *tc = fx_tcase("frozen", 60);
    tcase_add_test(tc, frozen);
    suite_add_tcase(s, tc);
}

/* ---- 6. stuck_peers ---------------------------------------------------------------------- */

#define STUCK_IDLE_MS 2000
#define ECHO_LEN      (16 * MIB)

/* Watches a byte counter on /metrics every 20 ms and notes when it last changed: when the
 * session last delivered a byte, from splicer's side (idle_timeout counts from there). */
struct watch {
    const char *series;
    pthread_t thr;
    atomic_bool stop;
    atomic_llong changed_at; /* ms; the change happened at this time or before */
};

static void *watch_main(void *arg)
{
    struct watch *w = arg;
    long long prev = -1;
    char *body = malloc(256 * 1024);
    while (body != NULL && !atomic_load(&w->stop)) {
        if (sph_http(FX_ADMIN_PORT, "GET", "/metrics", body, 256 * 1024) == 200) {
            long long v = sph_metric_sample(body, w->series);
            if (v != prev)
                atomic_store(&w->changed_at, sph_now_ms());
            prev = v;
        }
        sph_sleep_ms(20);
    }
    free(body);
    return NULL;
}

/* Writes until the peer has taken nothing for 500 ms; returns the bytes written, and in *last
 * when the last of them was taken. */
static uint64_t push_until_stuck(int fd, int64_t *last_out)
{
    char buf[64 * 1024];
    memset(buf, 'x', sizeof(buf));
    uint64_t total = 0;
    int64_t last = sph_now_ms();
    while (sph_now_ms() - last < 500) {
        ssize_t n = send(fd, buf, sizeof(buf), MSG_NOSIGNAL);
        if (n > 0) {
            total += (uint64_t)n;
            last = sph_now_ms();
        } else {
            sph_sleep_ms(10);
        }
    }
    *last_out = last;
    return total;
}

/* A server that accepts and never reads, and a client that never reads a download: splicer
 * holds at most a pipe per stuck direction and its RSS stays flat, another session on the same
 * worker relays 16 MiB each way meanwhile, and both stuck sessions end by idle_timeout. */
START_TEST(stuck_peers)
{
    struct sph_backend *stall = fx_backend(SPH_STALL, 8001);
    struct fx_duplex src = {0};
    fx_duplex_start(&src, 8002, 512 * MIB, 5);
    struct sph_backend *echo = fx_backend(SPH_ECHO, 8003);
    (void)stall;
    (void)echo;
    struct sph_proc p;
    fx_splicer(&p, "workers: 1\n"
                   "shutdown_timeout: 1s\n"
                   "access_log: stderr\n"
                   "admin:\n"
                   "  listen: 127.0.0.1:9000\n"
                   "listeners:\n"
                   "  main:\n"
                   "    listen: " FX_PROXY_IP ":8000\n"
                   "    upstream: stall\n"
                   "    idle_timeout: 2s\n"
                   "  download:\n"
                   "    listen: " FX_PROXY_IP ":8100\n"
                   "    upstream: source\n"
                   "    idle_timeout: 2s\n"
                   "  other:\n"
                   "    listen: " FX_PROXY_IP ":8200\n"
                   "    upstream: echo\n"
                   "upstreams:\n"
                   "  stall:\n"
                   "    servers:\n"
                   "      - address: " FX_SERVER_IP ":8001\n"
                   "  source:\n"
                   "    servers:\n"
                   "      - address: " FX_SERVER_IP ":8002\n"
                   "  echo:\n"
                   "    servers:\n"
                   "      - address: " FX_SERVER_IP ":8003\n");
    struct fx_baseline base;
    fx_baseline(&p, &base);
    long rss0 = sph_proc_rss_kb(p.pid);

    int up = fx_connect(FX_PORT, 0, 5000);
    ck_assert_int_ge(up, 0);
    int down = fx_connect(8100, 0, 5000);
    ck_assert_int_ge(down, 0);
    struct watch w = {.series = "splicer_bytes_total{listener=\"main\",direction=\"upstream\"}"};
    ck_assert_int_eq(pthread_create(&w.thr, NULL, watch_main, &w), 0);
    int64_t last_push;
    uint64_t pushed = push_until_stuck(up, &last_push);
    /* The download fills every buffer on its way; wait until the source is held back. */
    uint64_t sent = 0;
    for (int i = 0; i < 50; i++) {
        sph_sleep_ms(100);
        uint64_t now = atomic_load(&src.down_sent);
        if (now == sent && now > 0)
            break;
        sent = now;
    }
    int64_t stuck_at = sph_now_ms();
    long rss = sph_proc_rss_kb(p.pid);
    long long in_use = fx_metric("splicer_pipe_pool_pipes{state=\"in_use\"}");
    long long mem = fx_metric("splicer_pipe_memory_bytes");
    printf("stuck_peers: %llu bytes pushed into a server that never reads, %llu sent to a client "
           "that never reads; splicer RSS %ld -> %ld KiB, pipes in use %lld, pipe memory %lld "
           "(baseline %lld)\n",
           (unsigned long long)pushed, (unsigned long long)sent, rss0, rss, in_use, mem,
           base.pipe_mem);
    fflush(stdout);
    fx_expect_rss(p.pid, rss0, rss, 4096);
    ck_assert_int_le(in_use, 2);
    ck_assert_int_le(mem, base.pipe_mem + 2 * 1024 * 1024);
    ck_assert_uint_lt(sent, 512 * MIB); /* held back */

    /* Meanwhile the worker serves others. */
    int fd = fx_connect(8200, 0, 5000);
    ck_assert_int_ge(fd, 0);
    struct fx_client c = {.up = ECHO_LEN, .up_seed = 11, .down_seed = 11, .timeout_ms = 30000};
    int rc = fx_client_run(fd, &c);
    close(fd);
    ck_assert_msg(rc == 0, "echo: %s", strerror(-rc));
    ck_assert_uint_eq(atomic_load(&c.received), ECHO_LEN);
    ck_assert_int_lt(c.mismatch_at, 0);
    ck_assert_uint_eq(c.down_sum, fx_pattern_sum(11, ECHO_LEN));

    /* The stuck ones end by idle_timeout: the upload idle_timeout after splicer delivered its
     * last byte to the server (the client's last send comes later: splicer's kernel goes on
     * taking bytes into its receive buffer after splicer stopped reading). */
    rc = sph_wait_closed(up, STUCK_IDLE_MS + 5000);
    int64_t closed_at = sph_now_ms();
    atomic_store(&w.stop, true);
    pthread_join(w.thr, NULL);
    int64_t idle_for = closed_at - atomic_load(&w.changed_at);
    ck_assert_msg(rc == 0 || rc == -ECONNRESET, "upload session: %s", strerror(-rc));
    printf("stuck_peers: the upload session closed %lld ms after splicer's last byte to the "
           "server, %lld ms after the client's last send\n",
           (long long)idle_for, (long long)(closed_at - last_push));
    /* Less a little: splicer stamps a move with its event loop's clock, read when the loop
     * iteration began. */
    ck_assert_int_ge(idle_for, STUCK_IDLE_MS - 100);
    ck_assert_int_le(idle_for, STUCK_IDLE_MS + 3000);
    ck_assert(sph_proc_wait_log(&p, "\"end\":\"idle_timeout\"", 2, STUCK_IDLE_MS + 5000));
    int64_t took = sph_now_ms() - stuck_at;
    printf("stuck_peers: both stuck sessions ended by idle_timeout %lld ms after they stuck\n",
           (long long)took);
    ck_assert_int_eq(fx_log_ends(&p, "idle_timeout"), 2);
    ck_assert_int_ge(sph_proc_log_count(&p, "\"listener\":\"main\""), 1);
    ck_assert_int_le(took, STUCK_IDLE_MS + 3000);
    close(up);
    close(down);
    fx_expect_no_leak(&p, &base, 10000);
    fx_duplex_stop(&src);
}
END_TEST

void fx_add_stuck_peers(Suite *s)
{
    TCase *tc = fx_tcase("stuck_peers", 60);
    tcase_add_test(tc, stuck_peers);
    suite_add_tcase(s, tc);
}
