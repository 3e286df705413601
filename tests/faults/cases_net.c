/* cases_net.c: faults of the network, made by the kernel: packet loss on the upstream link
 * (iptables -m statistic), a server whose SYNs are dropped, a server that resets mid-response, a
 * 10 Mbit/s link to the client (tc tbf). */
#include "faults.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MIB (1024ull * 1024ull)

/* One listener, main on FX_PROXY_IP:FX_PORT, to the upstream pool; `extra` goes under the
 * listener, `servers` (formatted server lines) under the pool, after `pool_opts`. */
#define CONF_HEAD                                                                                  \
    "workers: 1\n"                                                                                 \
    "shutdown_timeout: 1s\n"                                                                       \
    "access_log: stderr\n"                                                                         \
    "admin:\n"                                                                                     \
    "  listen: 127.0.0.1:9000\n"                                                                   \
    "listeners:\n"                                                                                 \
    "  main:\n"                                                                                    \
    "    listen: " FX_PROXY_IP ":8000\n"                                                           \
    "    upstream: pool\n"

#define SERVER(port) "      - address: " FX_SERVER_IP ":" #port "\n"

/* ---- 1. loss ---------------------------------------------------------------------------- */

#define LOSS_LEN (64 * MIB)

/* 10% of the packets on the upstream link dropped, each way: 64 MiB each way at once, through
 * retransmissions, arrive intact (hashed on both ends), and nothing is left behind. */
START_TEST(loss)
{
    struct fx_duplex d = {0};
    fx_duplex_start(&d, 8001, LOSS_LEN, 2);
    struct sph_proc p;
    /* The handshake crosses the lossy link too: a SYN lost twice costs 3 s (1 s, then 2 s
     * backoff), past the default connect_timeout. */
    fx_splicer(&p, CONF_HEAD "    idle_timeout: 60s\n"
                             "    connect_timeout: 15s\n"
                             "upstreams:\n"
                             "  pool:\n"
                             "    servers:\n" SERVER(8001));
    struct fx_baseline base;
    fx_baseline(&p, &base);

    /* Dropped where the packets arrive, at both ends of the upstream link: a drop in the
     * sender's own OUTPUT chain is reported to its TCP, which would just send again at once.
     * Offloads off on the link, so a dropped skb is one packet on the wire, not an aggregate
     * (best effort: without ethtool the loss is per skb). */
    fx_sh("ip netns exec %s ethtool -K vs tso off gso off gro off >/dev/null 2>&1",
          fx_ns(FX_SERVER));
    fx_sh("ip netns exec %s ethtool -K vq tso off gso off gro off >/dev/null 2>&1",
          fx_ns(FX_PROXY));
    ck_assert_int_eq(fx_sh("ip netns exec %s iptables -A INPUT -i vs -p tcp -m statistic "
                           "--mode random --probability 0.1 -j DROP && "
                           "ip netns exec %s iptables -A INPUT -i vq -p tcp -m statistic "
                           "--mode random --probability 0.1 -j DROP",
                           fx_ns(FX_SERVER), fx_ns(FX_PROXY)),
                     0);

    int fd = fx_connect(FX_PORT, 0, 5000);
    ck_assert_msg(fd >= 0, "connect: %s", strerror(-fd));
    struct fx_client c = {.up = LOSS_LEN, .up_seed = 1, .down_seed = 2, .timeout_ms = 110000};
    int64_t t0 = sph_now_ms();
    int rc = fx_client_run(fd, &c);
    int64_t took = sph_now_ms() - t0;
    close(fd);
    printf("loss: 64 MiB each way through 10%% loss in %lld ms; dropped (packets bytes):\n",
           (long long)took);
    fflush(stdout);
    for (int side = FX_PROXY; side <= FX_SERVER; side++)
        fx_sh("ip netns exec %s iptables -nvxL INPUT | awk '/DROP/ {print \"  %s: \" $1, $2}'",
              fx_ns(side), side == FX_PROXY ? "server to proxy" : "proxy to server");
    ck_assert_msg(rc == 0, "client: %s after %llu of %llu bytes down, %llu up", strerror(-rc),
                  (unsigned long long)atomic_load(&c.received), (unsigned long long)LOSS_LEN,
                  (unsigned long long)atomic_load(&c.sent));
    ck_assert_msg(c.mismatch_at < 0, "downstream byte %lld differs", (long long)c.mismatch_at);
    ck_assert_uint_eq(atomic_load(&c.received), LOSS_LEN);
    ck_assert_uint_eq(c.down_sum, fx_pattern_sum(2, LOSS_LEN));
    ck_assert(sph_wait_atomic_ge(&d.done, 1, 10000));
    ck_assert_int_eq(atomic_load(&d.err), 0);
    ck_assert_uint_eq(atomic_load(&d.up_bytes), LOSS_LEN);
    ck_assert_uint_eq(atomic_load(&d.up_sum), fx_pattern_sum(1, LOSS_LEN));

    ck_assert_int_eq(fx_sh("ip netns exec %s iptables -F && ip netns exec %s iptables -F",
                           fx_ns(FX_SERVER), fx_ns(FX_PROXY)),
                     0);
    fx_expect_no_leak(&p, &base, 10000);
    ck_assert(sph_proc_wait_log(&p, "\"bytes_up\":67108864,\"bytes_down\":67108864", 1, 3000));
    fx_duplex_stop(&d);
}
END_TEST

void fx_add_loss(Suite *s)
{
    TCase *tc = fx_tcase("loss", 150);
    tcase_add_test(tc, loss);
    suite_add_tcase(s, tc);
}

/* ---- 2. blackhole ------------------------------------------------------------------------ */

#define CONNECT_TIMEOUT_MS 1000
#define MARGIN_MS          1000 /* a loaded 2-core machine; the timer itself is exact */
#define EARLY_MS           10   /* libuv times from the loop's cached clock */

/* Connects, reads the server's name line; returns the elapsed ms, the line in name. */
static int64_t served_by(char *name, size_t cap)
{
    int64_t t0 = sph_now_ms();
    int fd = fx_connect(FX_PORT, 0, 5000);
    ck_assert_msg(fd >= 0, "connect: %s", strerror(-fd));
    ssize_t n = sph_read_line(fd, name, cap, 10000);
    int64_t took = sph_now_ms() - t0;
    if (n < 0)
        snprintf(name, cap, "(%s)", strerror((int)-n));
    else
        ck_assert_int_eq(sph_ping(fd, 5000), 0);
    close(fd);
    return took;
}

/* A server whose SYNs vanish: each client waits connect_timeout for it, then is served by the
 * next server; with every server blackholed, the client is closed after each attempt timed out.
 */
START_TEST(blackhole)
{
    struct sph_backend *s1 = fx_backend(SPH_NAME, 8001);
    snprintf(s1->name, sizeof(s1->name), "s1");
    struct sph_backend *s2 = fx_backend(SPH_NAME, 8002);
    snprintf(s2->name, sizeof(s2->name), "s2");
    /* s1 first: its weight makes round_robin pick it nearly every time; max_fails 0 keeps
     * passive checks from taking it out, so each client meets the blackhole. */
    struct sph_proc p;
    fx_splicer(&p, CONF_HEAD "    connect_timeout: 1s\n"
                             "upstreams:\n"
                             "  pool:\n"
                             "    retries: 1\n"
                             "    max_fails: 0\n"
                             "    servers:\n"
                             "      - address: " FX_SERVER_IP ":8001\n"
                             "        weight: 100\n" SERVER(8002));
    struct fx_baseline base;
    fx_baseline(&p, &base);
    char name[32];
    ck_assert_int_lt(served_by(name, sizeof(name)), CONNECT_TIMEOUT_MS);
    ck_assert_str_eq(name, "s1");

    ck_assert_int_eq(fx_sh("ip netns exec %s iptables -A INPUT -p tcp --dport 8001 --syn -j DROP",
                           fx_ns(FX_SERVER)),
                     0);
    for (int i = 0; i < 3; i++) {
        int64_t took = served_by(name, sizeof(name));
        printf("blackhole: client %d served by %s after %lld ms (connect_timeout 1000 ms)\n", i,
               name, (long long)took);
        fflush(stdout);
        ck_assert_str_eq(name, "s2");
        ck_assert_int_ge(took, CONNECT_TIMEOUT_MS - EARLY_MS);
        ck_assert_int_le(took, CONNECT_TIMEOUT_MS + MARGIN_MS);
    }
    ck_assert_int_eq(
        fx_metric("splicer_server_connect_failures_total{upstream=\"pool\",server=\"" FX_SERVER_IP
                  ":8001\"}"),
        3);
    /* The access log is written within 200 ms of a close. */
    ck_assert(sph_proc_wait_log(&p, "\"server\":\"" FX_SERVER_IP ":8002\",", 3, 3000));
    ck_assert(sph_proc_wait_log(&p, "\"attempts\":2,", 3, 3000));

    /* Both blackholed: two attempts (retries 1) of connect_timeout each, then a close. */
    ck_assert_int_eq(fx_sh("ip netns exec %s iptables -A INPUT -p tcp --dport 8002 --syn -j DROP",
                           fx_ns(FX_SERVER)),
                     0);
    int64_t t0 = sph_now_ms();
    int fd = fx_connect(FX_PORT, 0, 5000);
    ck_assert_int_ge(fd, 0);
    int rc = sph_wait_closed(fd, 10000);
    int64_t took = sph_now_ms() - t0;
    close(fd);
    printf("blackhole: every server blackholed: client closed (%s) after %lld ms\n",
           rc == 0 ? "FIN" : strerror(-rc), (long long)took);
    ck_assert(rc == 0 || rc == -ECONNRESET);
    ck_assert_int_ge(took, 2 * CONNECT_TIMEOUT_MS - EARLY_MS);
    ck_assert_int_le(took, 2 * CONNECT_TIMEOUT_MS + MARGIN_MS);
    ck_assert(sph_proc_wait_log(&p, "\"end\":\"connect_failed\"", 1, 3000));

    ck_assert_int_eq(fx_sh("ip netns exec %s iptables -F", fx_ns(FX_SERVER)), 0);
    ck_assert_str_eq((served_by(name, sizeof(name)), name), "s1");
    fx_expect_no_leak(&p, &base, 10000);
}
END_TEST

void fx_add_blackhole(Suite *s)
{
    TCase *tc = fx_tcase("blackhole", 60);
    tcase_add_test(tc, blackhole);
    suite_add_tcase(s, tc);
}

/* ---- 3. reset ---------------------------------------------------------------------------- */

#define RESET_READING (8 * MIB)
#define RESET_STALLED (768 * 1024)

/* A server writes its answer, waits until splicer's kernel has acknowledged every byte, and
 * closes with SO_LINGER{1,0} (RST). Every byte it sent reaches the client, pattern-checked, then
 * the end: a reset or a FIN when the client has read all (nothing in flight), and a FIN behind
 * the bytes when the client was not reading (README, "How data flows", point 7). */
START_TEST(reset)
{
    struct fx_duplex d = {.reset_after = true};
    fx_duplex_start(&d, 8001, RESET_READING, 7);
    struct sph_proc p;
    fx_splicer(&p, CONF_HEAD "upstreams:\n"
                             "  pool:\n"
                             "    servers:\n" SERVER(8001));
    struct fx_baseline base;
    fx_baseline(&p, &base);

    /* A client that reads as fast as it can. */
    int fd = fx_connect(FX_PORT, 0, 5000);
    ck_assert_int_ge(fd, 0);
    struct fx_client c = {.up = 100, .up_seed = 3, .down_seed = 7, .timeout_ms = 30000};
    int rc = fx_client_run(fd, &c);
    close(fd);
    printf("reset: reading client got %llu of %llu bytes, then %s\n",
           (unsigned long long)atomic_load(&c.received), (unsigned long long)RESET_READING,
           rc == 0 ? "FIN" : strerror(-rc));
    ck_assert(sph_wait_atomic_ge(&d.done, 1, 10000));
    ck_assert_msg(atomic_load(&d.err) == 0, "server: %s", strerror(-atomic_load(&d.err)));
    ck_assert_msg(rc == 0 || rc == -ECONNRESET, "client: %s", strerror(-rc));
    ck_assert_uint_eq(atomic_load(&c.received), RESET_READING);
    ck_assert_int_lt(c.mismatch_at, 0);
    ck_assert_uint_eq(c.down_sum, fx_pattern_sum(7, RESET_READING));
    ck_assert(sph_proc_wait_log(&p, "\"bytes_down\":8388608,", 1, 3000));

    /* A client that reads nothing until the server has reset: its 16 KiB receive buffer leaves
     * the answer in splicer's pipe and socket buffers, in flight, when the reset comes. */
    d.down = RESET_STALLED;
    fd = fx_connect(FX_PORT, 16384, 5000);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(sph_write_all(fd, "request", 7, 5000), 0);
    ck_assert_msg(sph_wait_atomic_ge(&d.done, 2, 15000), "the server did not get its answer out");
    ck_assert_msg(atomic_load(&d.err) == 0, "server: %s", strerror(-atomic_load(&d.err)));
    struct fx_client c2 = {.up = 0, .down_seed = 7, .timeout_ms = 30000};
    rc = fx_client_run(fd, &c2);
    close(fd);
    printf("reset: stalled client got %llu of %llu bytes, then %s\n",
           (unsigned long long)atomic_load(&c2.received), (unsigned long long)RESET_STALLED,
           rc == 0 ? "FIN" : strerror(-rc));
    ck_assert_msg(rc == 0, "the bytes in flight end with a FIN, not %s", strerror(-rc));
    ck_assert_uint_eq(atomic_load(&c2.received), RESET_STALLED);
    ck_assert_int_lt(c2.mismatch_at, 0);
    ck_assert_uint_eq(c2.down_sum, fx_pattern_sum(7, RESET_STALLED));

    ck_assert(sph_proc_wait_log(&p, "\"end\":\"upstream_reset\"", 2, 3000));
    ck_assert(sph_proc_wait_log(&p, "\"bytes_down\":786432,", 1, 3000));
    fx_expect_no_leak(&p, &base, 10000);
    fx_duplex_stop(&d);
}
END_TEST

void fx_add_reset(Suite *s)
{
    TCase *tc = fx_tcase("reset", 60);
    tcase_add_test(tc, reset);
    suite_add_tcase(s, tc);
}

/* ---- 4. slow_client ---------------------------------------------------------------------- */

#define SLOW_LEN      (8 * MIB)
#define RSS_GROWTH_KB 4096

struct run_arg {
    int fd;
    struct fx_client *c;
    atomic_bool done;
};

static void *client_thread(void *arg)
{
    struct run_arg *a = arg;
    fx_client_run(a->fd, a->c);
    atomic_store(&a->done, true);
    return NULL;
}

/* A fast server, and a client behind a 10 Mbit/s link (tbf on splicer's side of it): splicer
 * holds no more than the session's pipes, and its RSS stays flat while the download crawls. */
START_TEST(slow_client)
{
    struct fx_duplex d = {0};
    fx_duplex_start(&d, 8001, SLOW_LEN, 9);
    struct sph_proc p;
    fx_splicer(&p, CONF_HEAD "upstreams:\n"
                             "  pool:\n"
                             "    servers:\n" SERVER(8001));
    /* A first, unshaped transfer: what one session costs once is in the baseline. */
    d.down = MIB;
    int fd = fx_connect(FX_PORT, 0, 5000);
    struct fx_client w = {.up = MIB, .up_seed = 1, .down_seed = 9, .timeout_ms = 20000};
    ck_assert_int_eq(fx_client_run(fd, &w), 0);
    close(fd);
    ck_assert(sph_wait_atomic_ge(&d.done, 1, 10000));
    sph_sleep_ms(200);
    struct fx_baseline base;
    fx_baseline(&p, &base);
    long rss0 = sph_proc_rss_kb(p.pid);
    long long pipe_size = 1024 * 1024;

    ck_assert_int_eq(fx_sh("ip netns exec %s tc qdisc add dev vp root tbf rate 10mbit "
                           "burst 32kb latency 50ms",
                           fx_ns(FX_PROXY)),
                     0);
    d.down = SLOW_LEN;
    fd = fx_connect(FX_PORT, 0, 5000);
    ck_assert_int_ge(fd, 0);
    struct fx_client c = {.up = 0, .down_seed = 9, .timeout_ms = 60000};
    struct run_arg a = {.fd = fd, .c = &c};
    pthread_t thr;
    int64_t t0 = sph_now_ms();
    ck_assert_int_eq(pthread_create(&thr, NULL, client_thread, &a), 0);
    long rss_max = rss0;
    long long mem_max = 0, in_use_max = 0;
    int samples = 0;
    while (!atomic_load(&a.done)) {
        long rss = sph_proc_rss_kb(p.pid);
        long long mem = fx_metric("splicer_pipe_memory_bytes");
        long long in_use = fx_metric("splicer_pipe_pool_pipes{state=\"in_use\"}");
        rss_max = rss > rss_max ? rss : rss_max;
        mem_max = mem > mem_max ? mem : mem_max;
        in_use_max = in_use > in_use_max ? in_use : in_use_max;
        samples++;
        sph_sleep_ms(250);
    }
    pthread_join(thr, NULL);
    int64_t took = sph_now_ms() - t0;
    close(fd);
    printf("slow_client: 8 MiB at 10 Mbit/s in %lld ms; %d samples: RSS %ld -> max %ld KiB, "
           "pipes in use max %lld, pipe memory max %lld (baseline %lld)\n",
           (long long)took, samples, rss0, rss_max, in_use_max, mem_max, base.pipe_mem);
    ck_assert_msg(c.err == 0, "client: %s", strerror(-c.err));
    ck_assert_uint_eq(atomic_load(&c.received), SLOW_LEN);
    ck_assert_int_lt(c.mismatch_at, 0);
    ck_assert_uint_eq(c.down_sum, fx_pattern_sum(9, SLOW_LEN));
    /* The link did limit it: 8 MiB at 10 Mbit/s is 6.7 s. */
    ck_assert_int_ge(took, 5000);
    ck_assert_int_ge(samples, 10);
    fx_expect_rss(p.pid, rss0, rss_max, RSS_GROWTH_KB);
    ck_assert_int_le(in_use_max, 2);
    ck_assert_int_le(mem_max, base.pipe_mem + 2 * pipe_size);

    ck_assert_int_eq(fx_sh("ip netns exec %s tc qdisc del dev vp root", fx_ns(FX_PROXY)), 0);
    ck_assert(sph_wait_atomic_ge(&d.done, 2, 10000));
    fx_expect_no_leak(&p, &base, 10000);
    fx_duplex_stop(&d);
}
END_TEST

void fx_add_slow_client(Suite *s)
{
    TCase *tc = fx_tcase("slow_client", 90);
    tcase_add_test(tc, slow_client);
    suite_add_tcase(s, tc);
}
