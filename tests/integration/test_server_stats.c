/* test_server_stats.c: what the admin endpoint reports per server beyond connections, on the
 * real binary: the bytes relayed through each server, each way (splicer_server_bytes_total,
 * /status bytes_upstream and bytes_downstream), counted for that server only, summed over two
 * workers and never going back across a SIGHUP reload, a connection open across it included;
 * and the time of each server's last health check (/status last_check_age_ms,
 * splicer_server_last_check_timestamp_seconds): recent while checks run, null or 0 without them,
 * and cleared by a reload that turns them off. */
#include "common.h"
#include "harness.h"

#include <check.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define START_MS 10000
#define IO_MS    10000
#define WAIT_MS  5000 /* a counter or a check reaching /status, on a loaded box */
#define BUF_CAP  (256 * 1024)
#define UP       40000  /* bytes each client sends */
#define DOWN     150000 /* bytes each server sends */

static void teardown(void)
{
    sph_cleanup();
}

/* ---- splicer with an admin endpoint ------------------------------------------------------- */

struct px {
    struct sph_proc proc;
    int port, admin;
    char conf[SPH_PATH_MAX];
};

#define HEAD                                                                                       \
    "workers: 2\n"                                                                                 \
    "shutdown_timeout: 1s\n"                                                                       \
    "admin:\n"                                                                                     \
    "  listen: 127.0.0.1:%d\n"                                                                     \
    "listeners:\n"                                                                                 \
    "  main:\n"                                                                                    \
    "    listen: 127.0.0.1:%d\n"                                                                   \
    "    upstream: pool\n"

/* The config: HEAD on x's ports, then the caller's text (more listeners, the upstreams). */
__attribute__((format(printf, 3, 4))) static void write_conf(struct px *x, bool rewrite,
                                                             const char *fmt, ...)
{
    char body[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    ck_assert_int_lt(n, (int)sizeof(body));
    if (rewrite)
        ck_assert_int_eq(sph_config_rewrite(x->conf, HEAD "%s", x->admin, x->port, body), 0);
    else
        ck_assert_int_eq(sph_config_write(x->conf, HEAD "%s", x->admin, x->port, body), 0);
}

static void px_init(struct px *x)
{
    x->port = sph_free_port(AF_INET);
    x->admin = sph_free_port(AF_INET);
    ck_assert(x->port > 0 && x->admin > 0);
}

static void px_run(struct px *x)
{
    int rc = sph_splicer_start(&x->proc, x->conf, x->port, START_MS);
    ck_assert_msg(rc == 0, "splicer did not start (%s):\n%s", strerror(-rc),
                  sph_proc_stderr(&x->proc));
    ck_assert_int_eq(sph_admin_req(x->admin, "GET", "/healthz", NULL, 0), 200);
}

/* SIGHUP after the config was rewritten; waits for the new generation's log line. */
static void reload(struct px *x, unsigned generation)
{
    char line[64];
    snprintf(line, sizeof(line), "generation %u published", generation);
    int rc = sph_proc_signal_wait_log(&x->proc, SIGHUP, line, WAIT_MS);
    ck_assert_msg(rc == 0, "no '%s' after SIGHUP:\n%s", line, sph_proc_stderr(&x->proc));
}

static struct sph_backend *source(void)
{
    struct sph_backend *b = sph_backend_new(SPH_SOURCE, AF_INET);
    ck_assert_ptr_nonnull(b);
    b->source_len = DOWN;
    b->seed = 7;
    ck_assert_int_eq(sph_backend_start(b), 0);
    return b;
}

static struct sph_backend *echo(void)
{
    struct sph_backend *b = sph_backend_new(SPH_ECHO, AF_INET);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(sph_backend_start(b), 0);
    return b;
}

/* ---- what the admin endpoint says of one server ------------------------------------------ */

static long long bytes_metric(const char *m, const char *pool, int port, const char *dir)
{
    char series[192];
    snprintf(series, sizeof(series),
             "splicer_server_bytes_total{upstream=\"%s\",server=\"127.0.0.1:%d\",direction=\"%s\"}",
             pool, port, dir);
    return sph_metric_sample(m, series);
}

static long long check_time_metric(const char *m, const char *pool, int port)
{
    char series[192];
    snprintf(series, sizeof(series),
             "splicer_server_last_check_timestamp_seconds{upstream=\"%s\",server=\"127.0.0.1:%d\"}",
             pool, port);
    return sph_metric_sample(m, series);
}

static void scrape(const struct px *x, char *m, size_t cap)
{
    ck_assert_int_eq(sph_admin_req(x->admin, "GET", "/metrics", m, cap), 200);
}

static void status(const struct px *x, char *st, size_t cap)
{
    ck_assert_int_eq(sph_admin_req(x->admin, "GET", "/status", st, cap), 200);
    ck_assert_msg(sph_json_valid(st, strlen(st), true), "/status is not a JSON object:\n%s", st);
}

/* The raw value of `"key":` in the /status object of server 127.0.0.1:port (server objects are
 * flat: it ends at the next '}'), into out; false when the server or the key is missing. */
static bool server_field(const char *st, int port, const char *key, char *out, size_t cap)
{
    char needle[64], k[64];
    snprintf(needle, sizeof(needle), "\"address\":\"127.0.0.1:%d\"", port);
    const char *obj = strstr(st, needle);
    if (obj == NULL)
        return false;
    const char *end = strchr(obj, '}');
    snprintf(k, sizeof(k), "\"%s\":", key);
    const char *v = strstr(obj, k);
    if (v == NULL || end == NULL || v > end)
        return false;
    v += strlen(k);
    snprintf(out, cap, "%.*s", (int)strcspn(v, ",}"), v);
    return true;
}

/* A numeric field of a server in /status; -1 for null, and a failed test when it is missing. */
static long long server_num(const char *st, int port, const char *key)
{
    char v[64];
    ck_assert_msg(server_field(st, port, key, v, sizeof(v)), "/status: no %s for server %d:\n%s",
                  key, port, st);
    if (strcmp(v, "null") == 0)
        return -1;
    char *end;
    long long n = strtoll(v, &end, 10);
    ck_assert_msg(*end == '\0' && n >= 0, "/status: server %d %s = %s", port, key, v);
    return n;
}

struct bytes {
    long long up, down;
};

/* Polls /metrics until server port of pool has relayed at least want each way (the last bytes
 * of a transfer are counted just after the client reads them), then checks /status agrees.
 * Returns what both said. */
static struct bytes wait_bytes(const struct px *x, const char *pool, int port, struct bytes want)
{
    static char m[BUF_CAP], st[BUF_CAP];
    struct bytes got;
    int64_t until = sph_now_ms() + WAIT_MS;
    for (;;) {
        scrape(x, m, sizeof(m));
        got.up = bytes_metric(m, pool, port, "upstream");
        got.down = bytes_metric(m, pool, port, "downstream");
        if ((got.up >= want.up && got.down >= want.down) || sph_now_ms() > until)
            break;
        sph_sleep_ms(50);
    }
    ck_assert_msg(got.up >= want.up && got.down >= want.down,
                  "server %d: %lld up, %lld down; want at least %lld and %lld", port, got.up,
                  got.down, want.up, want.down);
    status(x, st, sizeof(st));
    ck_assert_int_ge(server_num(st, port, "bytes_upstream"), got.up);
    ck_assert_int_ge(server_num(st, port, "bytes_downstream"), got.down);
    return got;
}

/* One client through port: UP bytes out and a FIN, then the server's DOWN bytes to its EOF. */
static void transfer(int port)
{
    int fd = sph_connect(AF_INET, port, IO_MS);
    ck_assert_msg(fd >= 0, "connect to %d: %s", port, strerror(-fd));
    static char buf[UP];
    sph_pattern_fill(3, 0, buf, sizeof(buf));
    ck_assert_int_eq(sph_write_all(fd, buf, sizeof(buf), IO_MS), 0);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    ck_assert_int_eq(sph_read_to_eof(fd, NULL, 0, IO_MS), DOWN);
    close(fd);
}

/* ---- 1. bytes, per server and per direction ----------------------------------------------- */

#define N_XFER 6

/* Two servers in one upstream, the second drained: every byte goes through the first, and its
 * counters show exactly that, each way, summed over both workers; the second's stay at 0. The
 * listener's counter agrees with the sum over servers. Fails where splicer has no per-server
 * byte counters (the series and fields are missing). */
START_TEST(bytes_counted_per_server)
{
    struct sph_backend *a = source(), *b = source();
    struct px x;
    px_init(&x);
    write_conf(&x, false,
               "upstreams:\n"
               "  pool:\n"
               "    servers:\n"
               "      - address: 127.0.0.1:%d\n"
               "      - address: 127.0.0.1:%d\n",
               a->port, b->port);
    px_run(&x);

    static char m[BUF_CAP];
    scrape(&x, m, sizeof(m));
    ck_assert_int_eq(bytes_metric(m, "pool", a->port, "upstream"), 0);
    ck_assert_int_eq(bytes_metric(m, "pool", a->port, "downstream"), 0);
    ck_assert_int_eq(bytes_metric(m, "pool", b->port, "upstream"), 0);
    ck_assert_msg(strstr(m, "# TYPE splicer_server_bytes_total counter\n") != NULL, "%s", m);

    char drain[128];
    snprintf(drain, sizeof(drain), "/upstreams/pool/servers/127.0.0.1:%d/drain", b->port);
    ck_assert_int_eq(sph_http(x.admin, "POST", drain, NULL, 0), 200);
    for (int i = 0; i < N_XFER; i++)
        transfer(x.port);
    ck_assert_int_eq(atomic_load(&b->accepted), 0);

    struct bytes want = {(long long)N_XFER * UP, (long long)N_XFER * DOWN};
    struct bytes got = wait_bytes(&x, "pool", a->port, want);
    sph_expect_metric(x.admin, "splicer_listener_active_connections{listener=\"main\"}", 0);
    got = wait_bytes(&x, "pool", a->port, want);
    ck_assert_int_eq(got.up, want.up); /* health checks are off: nothing else went through */
    ck_assert_int_eq(got.down, want.down);

    scrape(&x, m, sizeof(m));
    ck_assert_int_eq(bytes_metric(m, "pool", b->port, "upstream"), 0);
    ck_assert_int_eq(bytes_metric(m, "pool", b->port, "downstream"), 0);
    ck_assert_int_eq(
        sph_metric_sample(m, "splicer_bytes_total{listener=\"main\",direction=\"upstream\"}"),
        want.up);
    ck_assert_int_eq(
        sph_metric_sample(m, "splicer_bytes_total{listener=\"main\",direction=\"downstream\"}"),
        want.down);
    static char st[BUF_CAP];
    status(&x, st, sizeof(st));
    ck_assert_int_eq(server_num(st, a->port, "bytes_upstream"), want.up);
    ck_assert_int_eq(server_num(st, a->port, "bytes_downstream"), want.down);
    ck_assert_int_eq(server_num(st, b->port, "bytes_upstream"), 0);
    ck_assert_int_eq(server_num(st, b->port, "bytes_downstream"), 0);
}
END_TEST

/* ---- 2. across a reload -------------------------------------------------------------------- */

/* Scrapes once and fails if a's counters went below *last; updates *last. */
static void not_back(const struct px *x, int port, struct bytes *last)
{
    static char m[BUF_CAP];
    scrape(x, m, sizeof(m));
    struct bytes now = {bytes_metric(m, "pool", port, "upstream"),
                        bytes_metric(m, "pool", port, "downstream")};
    ck_assert_msg(now.up >= last->up && now.down >= last->down,
                  "server %d went back: %lld/%lld after %lld/%lld", port, now.up, now.down,
                  last->up, last->down);
    *last = now;
}

/* Counted bytes run on across SIGHUP reloads that change the server's weight and add a
 * listener and an upstream: never lower than before, with a connection opened before the reload
 * and finished after it counted in full, and traffic after it added on top. */
START_TEST(bytes_survive_reload)
{
    struct sph_backend *a = source(), *c = echo();
    struct px x;
    px_init(&x);
    write_conf(&x, false,
               "upstreams:\n"
               "  pool:\n"
               "    servers:\n"
               "      - address: 127.0.0.1:%d\n",
               a->port);
    px_run(&x);
    transfer(x.port);
    struct bytes last = wait_bytes(&x, "pool", a->port, (struct bytes){UP, DOWN});

    /* open across the reload: half the bytes before it, half after */
    int fd = sph_connect(AF_INET, x.port, IO_MS);
    ck_assert_int_ge(fd, 0);
    static char buf[UP];
    sph_pattern_fill(3, 0, buf, sizeof(buf));
    ck_assert_int_eq(sph_write_all(fd, buf, UP / 2, IO_MS), 0);
    wait_bytes(&x, "pool", a->port, (struct bytes){UP + UP / 2, DOWN});
    not_back(&x, a->port, &last);

    int side = sph_free_port(AF_INET);
    write_conf(&x, true,
               "  side:\n"
               "    listen: 127.0.0.1:%d\n"
               "    upstream: side_pool\n"
               "upstreams:\n"
               "  pool:\n"
               "    servers:\n"
               "      - address: 127.0.0.1:%d\n"
               "        weight: 5\n"
               "  side_pool:\n"
               "    servers:\n"
               "      - address: 127.0.0.1:%d\n",
               side, a->port, c->port);
    reload(&x, 2);
    not_back(&x, a->port, &last);
    ck_assert_int_eq(sph_write_all(fd, buf + UP / 2, UP - UP / 2, IO_MS), 0);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    ck_assert_int_eq(sph_read_to_eof(fd, NULL, 0, IO_MS), DOWN);
    close(fd);
    not_back(&x, a->port, &last);

    reload(&x, 3); /* the same config again: a generation of its own, same servers */
    not_back(&x, a->port, &last);
    transfer(x.port);
    struct bytes want = {3LL * UP, 3LL * DOWN};
    wait_bytes(&x, "pool", a->port, want);
    sph_expect_metric(x.admin, "splicer_listener_active_connections{listener=\"main\"}", 0);
    struct bytes got = wait_bytes(&x, "pool", a->port, want);
    ck_assert_int_eq(got.up, want.up);
    ck_assert_int_eq(got.down, want.down);
    not_back(&x, a->port, &last);
    static char m[BUF_CAP];
    scrape(&x, m, sizeof(m));
    ck_assert_int_eq(bytes_metric(m, "side_pool", c->port, "upstream"), 0);
}
END_TEST

/* ---- 3. the last health check's time ------------------------------------------------------ */

#define CHECK_BOUND_MS 3000 /* interval 200 ms, plus a loaded box's slack */

/* Polls /status until server port's last_check_age_ms is a number; returns it. */
static long long wait_checked(const struct px *x, char *st, size_t cap, int port)
{
    int64_t until = sph_now_ms() + WAIT_MS;
    for (;;) {
        status(x, st, cap);
        long long age = server_num(st, port, "last_check_age_ms");
        if (age >= 0)
            return age;
        ck_assert_msg(sph_now_ms() < until, "server %d never checked:\n%s", port, st);
        sph_sleep_ms(50);
    }
}

/* With health checks, a server's last check is recent in /status and in /metrics (a Unix time
 * close to now), and stays recent while checks run; without them it is null and 0. A reload
 * that turns the checks off clears it. */
START_TEST(last_check_time)
{
    struct sph_backend *a = echo(), *b = echo();
    struct px x;
    px_init(&x);
    int side = sph_free_port(AF_INET);
    const char *checked = "    health_check:\n"
                          "      interval: 200ms\n"
                          "      timeout: 500ms\n";
    write_conf(&x, false,
               "  side:\n"
               "    listen: 127.0.0.1:%d\n"
               "    upstream: plain\n"
               "upstreams:\n"
               "  pool:\n"
               "%s"
               "    servers:\n"
               "      - address: 127.0.0.1:%d\n"
               "  plain:\n"
               "    servers:\n"
               "      - address: 127.0.0.1:%d\n",
               side, checked, a->port, b->port);
    px_run(&x);

    static char st[BUF_CAP], m[BUF_CAP];
    long long age = wait_checked(&x, st, sizeof(st), a->port);
    ck_assert_int_le(age, CHECK_BOUND_MS);
    ck_assert_int_eq(server_num(st, b->port, "last_check_age_ms"), -1);
    char text[64];
    ck_assert(server_field(st, a->port, "last_check", text, sizeof(text)));
    ck_assert_str_eq(text, "\"ok\"");

    scrape(&x, m, sizeof(m));
    long long now = (long long)time(NULL);
    long long at = check_time_metric(m, "pool", a->port);
    ck_assert_msg(at >= now - CHECK_BOUND_MS / 1000 - 1 && at <= now + 1,
                  "last check at %lld, now %lld", at, now);
    ck_assert_int_eq(check_time_metric(m, "plain", b->port), 0);

    /* later, still recent: each check stamps its time */
    sph_sleep_ms(1500);
    status(&x, st, sizeof(st));
    ck_assert_int_le(server_num(st, a->port, "last_check_age_ms"), CHECK_BOUND_MS);

    write_conf(&x, true,
               "  side:\n"
               "    listen: 127.0.0.1:%d\n"
               "    upstream: plain\n"
               "upstreams:\n"
               "  pool:\n"
               "    servers:\n"
               "      - address: 127.0.0.1:%d\n"
               "  plain:\n"
               "    servers:\n"
               "      - address: 127.0.0.1:%d\n",
               side, a->port, b->port);
    reload(&x, 2);
    status(&x, st, sizeof(st));
    ck_assert_int_eq(server_num(st, a->port, "last_check_age_ms"), -1);
    scrape(&x, m, sizeof(m));
    ck_assert_int_eq(check_time_metric(m, "pool", a->port), 0);
}
END_TEST

static void add_main(Suite *s)
{
    TCase *tc = tcase_create("server_stats");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, bytes_counted_per_server);
    tcase_add_test(tc, bytes_survive_reload);
    tcase_add_test(tc, last_check_time);
    suite_add_tcase(s, tc);
}

static const struct sph_group groups[] = {
    {.name = NULL, .add = add_main},
};

int main(int argc, char **argv)
{
    return sph_main(argc, argv, "integration.server_stats", groups, SP_ARRAY_LEN(groups));
}
