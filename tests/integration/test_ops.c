/* test_ops.c: operations, as a user sees them through the admin endpoint, the access log and
 * signals: /metrics after known traffic, /status with a dead server, drain and enable, /healthz
 * during a graceful stop, a second signal, access log lines for every way a connection ends (and
 * the text and file forms), reloads in the admin views, and malformed admin requests. Every
 * splicer here runs on loopback with an admin endpoint on a free port. */
#include "harness.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define START_MS 10000
#define IO_MS    5000
/* Slack for a loaded 2-core CI box running ASan, on top of bounds that are about 0.2-0.5 s. */
#define SLACK_MS 1500
#define BUF_CAP  (256 * 1024)

static int nused, discarded; /* fresh_client()'s record, per test */

static void setup(void)
{
    nused = discarded = 0;
}

static void teardown(void)
{
    sph_cleanup();
}

/* ---- splicer with an admin endpoint ------------------------------------------------------- */

struct px {
    struct sph_proc proc;
    int admin;               /* admin port */
    char conf[SPH_PATH_MAX]; /* the config file (rewritten for reloads) */
    char admin_head[64];     /* "admin:\n  listen: ...\n" */
};

/* Writes `admin:` on a free port followed by the caller's text, starts splicer and waits until
 * `port` (a listener of the text) listens. */
__attribute__((format(printf, 3, 4))) static void px_start(struct px *x, int port, const char *fmt,
                                                           ...)
{
    char body[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    ck_assert_int_lt(n, (int)sizeof(body));
    x->admin = sph_free_port(AF_INET);
    ck_assert_int_gt(x->admin, 0);
    snprintf(x->admin_head, sizeof(x->admin_head), "admin:\n  listen: 127.0.0.1:%d\n", x->admin);
    ck_assert_int_eq(sph_config_write(x->conf, "%s%s", x->admin_head, body), 0);
    int rc = sph_splicer_start(&x->proc, x->conf, port, START_MS);
    if (rc != 0) {
        char *err = sph_proc_stderr(&x->proc);
        ck_abort_msg("splicer did not start (%s); stderr:\n%s", strerror(-rc), err);
    }
}

/* GET /metrics into buf (200 asserted). */
static void scrape(const struct px *x, char *buf, size_t cap)
{
    int st = sph_admin_req(x->admin, "GET", "/metrics", buf, cap);
    ck_assert_msg(st == 200, "GET /metrics: %d", st);
}

/* GET /status into buf: 200 and one valid JSON object. */
static void status(const struct px *x, char *buf, size_t cap)
{
    int st = sph_admin_req(x->admin, "GET", "/status", buf, cap);
    ck_assert_msg(st == 200, "GET /status: %d", st);
    ck_assert_msg(sph_json_valid(buf, strlen(buf), true), "/status is not a JSON object:\n%s", buf);
}

static void expect_family(const char *text, const char *name, const char *type)
{
    char help[160], typeline[160];
    snprintf(help, sizeof(help), "\n# HELP %s ", name);
    snprintf(typeline, sizeof(typeline), "\n# TYPE %s %s\n", name, type);
    ck_assert_msg(strstr(text, help) != NULL, "no # HELP line for %s", name);
    ck_assert_msg(strstr(text, typeline) != NULL, "no '# TYPE %s %s' line", name, type);
}

#define SERVER_SERIES(buf, fam, pool, port)                                                        \
    snprintf(buf, sizeof(buf), "%s{upstream=\"%s\",server=\"127.0.0.1:%d\"}", fam, pool, port)

/* The raw value of `"key":` inside the /status object of server 127.0.0.1:port (server objects
 * are flat, so the object ends at the next '}'): a string without its quotes, or a literal. */
static bool server_field(const char *st, int port, const char *key, char *out, size_t cap)
{
    char needle[64];
    snprintf(needle, sizeof(needle), "\"address\":\"127.0.0.1:%d\"", port);
    const char *obj = strstr(st, needle);
    if (obj == NULL)
        return false;
    const char *end = strchr(obj, '}');
    char k[64];
    snprintf(k, sizeof(k), "\"%s\":", key);
    const char *v = strstr(obj, k);
    if (v == NULL || end == NULL || v > end)
        return false;
    v += strlen(k);
    bool quoted = *v == '"';
    v += quoted;
    size_t n = strcspn(v, quoted ? "\"" : ",}");
    snprintf(out, cap, "%.*s", (int)n, v);
    return true;
}

static void expect_server_field(const char *st, int port, const char *key, const char *want)
{
    char got[128];
    ck_assert_msg(server_field(st, port, key, got, sizeof(got)),
                  "/status: no %s for server %d:\n%s", key, port, st);
    ck_assert_msg(strcmp(got, want) == 0, "/status: server %d %s = %s, want %s", port, key, got,
                  want);
}

/* ---- backends and clients ------------------------------------------------------------------ */

static struct sph_backend *backend(enum sph_kind kind, const char *name)
{
    struct sph_backend *b = sph_backend_new(kind, AF_INET);
    ck_assert_ptr_nonnull(b);
    snprintf(b->name, sizeof(b->name), "%s", name);
    ck_assert_int_eq(sph_backend_start(b), 0);
    return b;
}

static int connect_ok(int port)
{
    int fd = sph_connect(AF_INET, port, IO_MS);
    ck_assert_msg(fd >= 0, "connect to %d: %s", port, strerror(-fd));
    return fd;
}

/* "127.0.0.1:P", the client address splicer logs for fd. */
static void client_name(int fd, char *buf, size_t cap)
{
    struct sockaddr_in in;
    socklen_t len = sizeof(in);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&in, &len), 0);
    snprintf(buf, cap, "127.0.0.1:%u", ntohs(in.sin_port));
}

/* A connection whose client address ("127.0.0.1:P", into name) no earlier connection of this
 * test had: the access log checks find a connection's line by its client address, and the
 * kernel may hand a recently used ephemeral port out again. A connection given up on still makes
 * an access log line: `discarded` counts them. */
static char used[64][32];

static int fresh_client(int port, char *name, size_t cap)
{
    for (int tries = 0; tries < 20; tries++) {
        int fd = connect_ok(port);
        client_name(fd, name, cap);
        bool seen = false;
        for (int i = 0; i < nused && !seen; i++)
            seen = strcmp(used[i], name) == 0;
        if (!seen && nused < 64) {
            snprintf(used[nused++], sizeof(used[0]), "%s", name);
            return fd;
        }
        close(fd);
        discarded++;
    }
    ck_abort_msg("no fresh client port in 20 connections");
    return -1;
}

/* Which SPH_NAME backend a new connection reached: its name line, written on accept. The
 * connection stays open in *keep when keep is non-NULL. */
static void who(int port, char *name, size_t cap, int *keep)
{
    int fd = connect_ok(port);
    ssize_t n = sph_read_line(fd, name, cap, IO_MS);
    ck_assert_msg(n > 0, "no name line from the backend: %s", strerror((int)-n));
    if (keep != NULL)
        *keep = fd;
    else
        close(fd);
}

/* One echo round trip of len pattern bytes with a FIN after them: the echo and EOF come back. */
static void echo_round(int fd, uint64_t len, uint64_t seed)
{
    struct sph_xfer x;
    sph_xfer_init(&x, len, seed, 20000);
    x.shut_wr = true;
    int rc = sph_echo_xfer(fd, &x);
    ck_assert_msg(rc == 0 && x.got_eof && x.mismatch_at == -1,
                  "echo of %llu bytes: %s, got %llu, eof %d, mismatch at %lld",
                  (unsigned long long)len, strerror(-rc), (unsigned long long)x.received, x.got_eof,
                  (long long)x.mismatch_at);
}

/* ---- 1. /metrics after known traffic ------------------------------------------------------- */

#define N_MAIN    4
#define MAIN_LEN  100000
#define SIDE_UP   7000
#define SIDE_DOWN 30000

START_TEST(metrics_after_traffic)
{
    struct sph_backend *e1 = backend(SPH_ECHO, "e1"), *e2 = backend(SPH_ECHO, "e2");
    struct sph_backend *src = sph_backend_new(SPH_SOURCE, AF_INET);
    ck_assert_ptr_nonnull(src);
    src->source_len = SIDE_DOWN;
    src->seed = 7;
    ck_assert_int_eq(sph_backend_start(src), 0);
    int port = sph_free_port(AF_INET), side = sph_free_port(AF_INET);
    struct px x;
    px_start(&x, side,
             "workers: 2\n"
             "shutdown_timeout: 1s\n"
             "listeners:\n"
             "  main:\n"
             "    listen: 127.0.0.1:%d\n"
             "    upstream: pool\n"
             "  side:\n"
             "    listen: 127.0.0.1:%d\n"
             "    upstream: side_pool\n"
             "upstreams:\n"
             "  pool:\n"
             "    servers:\n"
             "      - address: 127.0.0.1:%d\n"
             "      - address: 127.0.0.1:%d\n"
             "  side_pool:\n"
             "    servers:\n"
             "      - address: 127.0.0.1:%d\n",
             port, side, e1->port, e2->port, src->port);
    ck_assert(sph_port_listening(port));

    for (int i = 0; i < N_MAIN; i++) {
        int fd = connect_ok(port);
        echo_round(fd, MAIN_LEN, (uint64_t)i + 1);
        close(fd);
    }
    /* side: the server sends SIDE_DOWN bytes and a FIN; the client sends SIDE_UP and a FIN. */
    int fd = connect_ok(side);
    char *up = malloc(SIDE_UP);
    ck_assert_ptr_nonnull(up);
    sph_pattern_fill(9, 0, up, SIDE_UP);
    ck_assert_int_eq(sph_write_all(fd, up, SIDE_UP, IO_MS), 0);
    free(up);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    ck_assert_int_eq(sph_read_to_eof(fd, NULL, 0, IO_MS), SIDE_DOWN);
    close(fd);
    ck_assert(sph_wait_atomic_ge(&src->closed, 1, IO_MS));
    ck_assert_uint_eq(atomic_load(&src->last_bytes), SIDE_UP);

    /* Every session is closed once both active gauges are back at 0. */
    sph_expect_metric(x.admin, "splicer_listener_active_connections{listener=\"main\"}", 0);
    sph_expect_metric(x.admin, "splicer_listener_active_connections{listener=\"side\"}", 0);
    char s1[128], s2[128], s3[128];
    SERVER_SERIES(s1, "splicer_server_active_connections", "pool", e1->port);
    SERVER_SERIES(s2, "splicer_server_active_connections", "pool", e2->port);
    SERVER_SERIES(s3, "splicer_server_active_connections", "side_pool", src->port);
    sph_expect_metric(x.admin, s1, 0);
    sph_expect_metric(x.admin, s2, 0);
    sph_expect_metric(x.admin, s3, 0);

    static char m[BUF_CAP];
    scrape(&x, m, sizeof(m));
    ck_assert_int_eq(sph_metric_sample(m, "splicer_listener_connections_total{listener=\"main\"}"),
                     N_MAIN);
    ck_assert_int_eq(sph_metric_sample(m, "splicer_listener_connections_total{listener=\"side\"}"),
                     1);
    SERVER_SERIES(s1, "splicer_server_connections_total", "pool", e1->port);
    SERVER_SERIES(s2, "splicer_server_connections_total", "pool", e2->port);
    SERVER_SERIES(s3, "splicer_server_connections_total", "side_pool", src->port);
    long long c1 = sph_metric_sample(m, s1), c2 = sph_metric_sample(m, s2);
    /* Without health checks, every connection a backend accepted is a proxied one. */
    ck_assert_int_eq(c1, atomic_load(&e1->accepted));
    ck_assert_int_eq(c2, atomic_load(&e2->accepted));
    ck_assert_int_eq(c1 + c2, N_MAIN);
    ck_assert_int_eq(sph_metric_sample(m, s3), 1);

    long long mu =
        sph_metric_sample(m, "splicer_bytes_total{listener=\"main\",direction=\"upstream\"}");
    long long md =
        sph_metric_sample(m, "splicer_bytes_total{listener=\"main\",direction=\"downstream\"}");
    long long su =
        sph_metric_sample(m, "splicer_bytes_total{listener=\"side\",direction=\"upstream\"}");
    long long sd =
        sph_metric_sample(m, "splicer_bytes_total{listener=\"side\",direction=\"downstream\"}");
    ck_assert_int_eq(mu, (long long)N_MAIN * MAIN_LEN);
    ck_assert_int_eq(md, (long long)N_MAIN * MAIN_LEN);
    ck_assert_int_eq(su, SIDE_UP);
    ck_assert_int_eq(sd, SIDE_DOWN);
    long long moved = sph_metric_sample(m, "splicer_splice_bytes_total") +
                      sph_metric_sample(m, "splicer_copy_bytes_total");
    ck_assert_int_eq(moved, 2LL * N_MAIN * MAIN_LEN + SIDE_UP + SIDE_DOWN);

    expect_family(m, "splicer_listener_connections_total", "counter");
    expect_family(m, "splicer_listener_active_connections", "gauge");
    expect_family(m, "splicer_server_connections_total", "counter");
    expect_family(m, "splicer_server_active_connections", "gauge");
    expect_family(m, "splicer_bytes_total", "counter");
    expect_family(m, "splicer_splice_bytes_total", "counter");
    expect_family(m, "splicer_copy_bytes_total", "counter");
}
END_TEST

/* ---- 2. /status with a dead server --------------------------------------------------------- */

#define HEALTH_FAST                                                                                \
    "    health_check:\n"                                                                          \
    "      interval: 200ms\n"                                                                      \
    "      timeout: 100ms\n"                                                                       \
    "      rise: 1\n"                                                                              \
    "      fall: 1\n"

/* Polls /status (into st) until server port's key reads want, for up to timeout_ms. */
static bool wait_server_field(const struct px *x, char *st, size_t cap, int port, const char *key,
                              const char *want, int timeout_ms)
{
    int64_t end = sph_now_ms() + timeout_ms;
    char got[128];
    for (;;) {
        status(x, st, cap);
        if (server_field(st, port, key, got, sizeof(got)) && strcmp(got, want) == 0)
            return true;
        if (sph_now_ms() > end)
            return false;
        sph_sleep_ms(50);
    }
}

START_TEST(status_shows_dead_server)
{
    struct sph_backend *b1 = backend(SPH_NAME, "b1"), *b2 = backend(SPH_NAME, "b2");
    int port = sph_free_port(AF_INET);
    struct px x;
    px_start(&x, port,
             "workers: 1\n"
             "shutdown_timeout: 1s\n"
             "listeners:\n"
             "  main:\n"
             "    listen: 127.0.0.1:%d\n"
             "    upstream: pool\n"
             "upstreams:\n"
             "  pool:\n"
             "    max_fails: 0\n" HEALTH_FAST "    servers:\n"
             "      - address: 127.0.0.1:%d\n"
             "      - address: 127.0.0.1:%d\n",
             port, b1->port, b2->port);
    static char st[BUF_CAP];
    ck_assert_msg(wait_server_field(&x, st, sizeof(st), b2->port, "last_check", "ok", 3000),
                  "b2 never checked ok:\n%s", st);
    ck_assert(strstr(st, "\"process\":{") != NULL && strstr(st, "\"relay\":{") != NULL);
    ck_assert(strstr(st, "\"listeners\":[") != NULL && strstr(st, "\"upstreams\":[") != NULL);
    expect_server_field(st, b2->port, "state", "up");

    sph_backend_stop(b2);
    int64_t t0 = sph_now_ms();
    bool down =
        wait_server_field(&x, st, sizeof(st), b2->port, "state", "down", 2 * 200 + 100 + SLACK_MS);
    ck_assert_msg(down, "b2 not down %lld ms after it was stopped:\n%s",
                  (long long)(sph_now_ms() - t0), st);
    char last[128];
    ck_assert(server_field(st, b2->port, "last_check", last, sizeof(last)));
    ck_assert_msg(strcmp(last, "ok") != 0 && strcmp(last, "none") != 0 && last[0] != '\0',
                  "down server's last_check is \"%s\"", last);
    expect_server_field(st, b2->port, "usable", "false");
    expect_server_field(st, b2->port, "health_checked", "true");
    expect_server_field(st, b1->port, "state", "up");
    expect_server_field(st, b1->port, "usable", "true");
    expect_server_field(st, b1->port, "last_check", "ok");

    char s[128];
    SERVER_SERIES(s, "splicer_server_up", "pool", b2->port);
    sph_expect_metric(x.admin, s, 0);
    SERVER_SERIES(s, "splicer_server_up", "pool", b1->port);
    sph_expect_metric(x.admin, s, 1);
}
END_TEST

/* ---- 3. drain and enable ------------------------------------------------------------------- */

START_TEST(drain_and_enable)
{
    struct sph_backend *b[2] = {backend(SPH_NAME, "b1"), backend(SPH_NAME, "b2")};
    int port = sph_free_port(AF_INET);
    struct px x;
    px_start(&x, port,
             "workers: 1\n"
             "shutdown_timeout: 1s\n"
             "listeners:\n"
             "  main:\n"
             "    listen: 127.0.0.1:%d\n"
             "    upstream: pool\n"
             "upstreams:\n"
             "  pool:\n"
             "    max_fails: 0\n"
             "    servers:\n"
             "      - address: 127.0.0.1:%d\n"
             "      - address: 127.0.0.1:%d\n",
             port, b[0]->port, b[1]->port);

    /* A connection held open on whichever server comes first; that one gets drained. */
    char name[32];
    int held;
    who(port, name, sizeof(name), &held);
    ck_assert_msg(strcmp(name, "b1") == 0 || strcmp(name, "b2") == 0, "reached \"%s\"", name);
    int d = name[1] - '1', o = 1 - d;
    ck_assert_int_eq(sph_ping(held, IO_MS), 0);

    char path[160], body[1024], want[160];
    snprintf(path, sizeof(path), "/upstreams/pool/servers/127.0.0.1:%d/drain", b[d]->port);
    int st = sph_admin_req(x.admin, "POST", path, body, sizeof(body));
    ck_assert_msg(st == 200, "POST %s: %d %s", path, st, body);
    ck_assert_msg(sph_json_valid(body, strlen(body), true), "drain reply not JSON: %s", body);
    snprintf(want, sizeof(want), "\"server\":\"127.0.0.1:%d\"", b[d]->port);
    ck_assert_msg(strstr(body, want) != NULL && strstr(body, "\"upstream\":\"pool\"") != NULL &&
                      strstr(body, "\"drained\":true") != NULL,
                  "drain reply: %s", body);

    for (int i = 0; i < 10; i++) {
        who(port, name, sizeof(name), NULL);
        ck_assert_msg(strcmp(name, b[o]->name) == 0, "connection %d after the drain reached %s", i,
                      name);
    }
    /* The open connection to the drained server goes on working. */
    ck_assert_int_eq(sph_ping(held, IO_MS), 0);

    static char s[BUF_CAP];
    status(&x, s, sizeof(s));
    expect_server_field(s, b[d]->port, "drained", "true");
    expect_server_field(s, b[d]->port, "usable", "false");
    expect_server_field(s, b[d]->port, "active", "1");
    expect_server_field(s, b[o]->port, "drained", "false");
    char series[128];
    SERVER_SERIES(series, "splicer_server_drained", "pool", b[d]->port);
    sph_expect_metric(x.admin, series, 1);

    /* enable, with the address percent-encoded */
    snprintf(path, sizeof(path), "/upstreams/pool/servers/127.0.0.1%%3A%d/enable", b[d]->port);
    st = sph_admin_req(x.admin, "POST", path, body, sizeof(body));
    ck_assert_msg(st == 200 && strstr(body, "\"drained\":false") != NULL, "POST %s: %d %s", path,
                  st, body);
    int counts[2] = {0, 0};
    for (int i = 0; i < 10; i++) {
        who(port, name, sizeof(name), NULL);
        counts[name[1] - '1']++;
    }
    ck_assert_msg(counts[d] >= 3 && counts[o] >= 3, "after enable: drained one %d, other %d of 10",
                  counts[d], counts[o]);
    status(&x, s, sizeof(s));
    expect_server_field(s, b[d]->port, "drained", "false");
    expect_server_field(s, b[d]->port, "usable", "true");
    ck_assert_int_eq(sph_ping(held, IO_MS), 0);
    close(held);

    /* unknown server or upstream */
    st = sph_admin_req(x.admin, "POST", "/upstreams/pool/servers/127.0.0.1:1/drain", body,
                       sizeof(body));
    ck_assert_msg(st == 404 && strstr(body, "no such upstream or server") != NULL,
                  "unknown server: %d %s", st, body);
    snprintf(path, sizeof(path), "/upstreams/nopool/servers/127.0.0.1:%d/drain", b[0]->port);
    st = sph_admin_req(x.admin, "POST", path, body, sizeof(body));
    ck_assert_msg(st == 404, "unknown upstream: %d %s", st, body);
}
END_TEST

/* ---- 4. /healthz during a graceful stop ---------------------------------------------------- */

START_TEST(healthz_during_drain)
{
    struct sph_backend *e = backend(SPH_ECHO, "e");
    int port = sph_free_port(AF_INET);
    struct px x;
    px_start(&x, port,
             "workers: 1\n"
             "shutdown_timeout: 20s\n"
             "listeners:\n"
             "  main:\n"
             "    listen: 127.0.0.1:%d\n"
             "    upstream: pool\n"
             "upstreams:\n"
             "  pool:\n"
             "    servers:\n"
             "      - address: 127.0.0.1:%d\n",
             port, e->port);
    char body[256];
    int st = sph_admin_req(x.admin, "GET", "/healthz", body, sizeof(body));
    ck_assert_msg(st == 200 && strncmp(body, "ok", 2) == 0, "/healthz serving: %d \"%s\"", st,
                  body);
    sph_expect_metric(x.admin, "splicer_draining", 0);

    int fd = connect_ok(port);
    ck_assert_int_eq(sph_ping(fd, IO_MS), 0);
    ck_assert_int_eq(sph_proc_signal_wait_log(&x.proc, SIGTERM, "no longer accepting", 3000), 0);

    for (int i = 0; i < 3; i++) {
        st = sph_http(x.admin, "GET", "/healthz", body, sizeof(body));
        ck_assert_msg(st == 503 && strncmp(body, "draining", 8) == 0,
                      "/healthz while draining (%d): %d \"%s\"", i, st, body);
        ck_assert_int_eq(sph_ping(fd, IO_MS), 0); /* the open connection still works */
        sph_sleep_ms(100);
    }
    sph_expect_metric(x.admin, "splicer_draining", 1);
    static char s[BUF_CAP];
    status(&x, s, sizeof(s));
    ck_assert_msg(strstr(s, "\"draining\":true") != NULL, "/status while draining:\n%s", s);
    ck_assert_int_eq(sph_proc_wait(&x.proc, 0), -ETIMEDOUT); /* still running */

    close(fd);
    int64_t t0 = sph_now_ms();
    int rc = sph_proc_wait(&x.proc, 5000);
    ck_assert_msg(rc == 0, "exit after the last client closed: %d", rc);
    int64_t took = sph_now_ms() - t0;
    ck_assert_msg(took < 3000, "exited %lld ms after the last client closed", (long long)took);
}
END_TEST

/* ---- 5. a second signal -------------------------------------------------------------------- */

START_TEST(second_signal_closes_now)
{
    struct sph_backend *e = backend(SPH_ECHO, "e");
    int port = sph_free_port(AF_INET);
    struct px x;
    px_start(&x, port,
             "workers: 1\n"
             "shutdown_timeout: 30s\n"
             "access_log: stderr\n"
             "listeners:\n"
             "  main:\n"
             "    listen: 127.0.0.1:%d\n"
             "    upstream: pool\n"
             "upstreams:\n"
             "  pool:\n"
             "    servers:\n"
             "      - address: 127.0.0.1:%d\n",
             port, e->port);
    int fd = connect_ok(port);
    ck_assert_int_eq(sph_ping(fd, IO_MS), 0);
    char client[32];
    client_name(fd, client, sizeof(client));

    ck_assert_int_eq(sph_proc_signal_wait_log(&x.proc, SIGTERM, "no longer accepting", 3000), 0);
    sph_sleep_ms(200);
    ck_assert_int_eq(sph_proc_wait(&x.proc, 0), -ETIMEDOUT); /* waiting for the idle client */
    ck_assert_int_eq(sph_proc_signal(&x.proc, SIGTERM), 0);
    int64_t t0 = sph_now_ms();
    int rc = sph_proc_wait(&x.proc, 10000);
    int64_t took = sph_now_ms() - t0;
    ck_assert_msg(rc == 0, "exit status after the second SIGTERM: %d", rc);
    ck_assert_msg(took < 2000, "exited %lld ms after the second SIGTERM", (long long)took);
    rc = sph_wait_closed(fd, 1000);
    ck_assert_msg(rc == 0 || rc == -ECONNRESET, "client connection not closed: %s", strerror(-rc));
    close(fd);

    char needle[96];
    snprintf(needle, sizeof(needle), "\"client\":\"%s\"", client);
    char *err = sph_proc_stderr(&x.proc);
    const char *line = strstr(err, needle);
    bool ok = line != NULL && strstr(line, "\"end\":\"shutdown\"") != NULL;
    ck_assert_msg(ok, "no access log line ending in shutdown for %s; stderr:\n%s", client, err);
    free(err);
}
END_TEST

/* ---- 6. the access log --------------------------------------------------------------------- */

/* The one stderr line holding needle, copied into out; asserts there is exactly one (waiting up
 * to 3 s for it). */
static void log_line(const struct sph_proc *p, const char *needle, char *out, size_t cap)
{
    ck_assert_msg(sph_proc_wait_log(p, needle, 1, 3000), "no log line with %s", needle);
    char *err = sph_proc_stderr(p);
    const char *at = strstr(err, needle);
    ck_assert_ptr_nonnull(at);
    ck_assert_msg(strstr(at + 1, needle) == NULL, "more than one line with %s:\n%s", needle, err);
    const char *start = at;
    while (start > err && start[-1] != '\n')
        start--;
    size_t n = strcspn(start, "\n");
    ck_assert_uint_lt(n, cap);
    snprintf(out, cap, "%.*s", (int)n, start);
    free(err);
}

/* The raw value of `"key":` in a flat JSON line (a string without quotes, or a literal). */
static void jfield(const char *line, const char *key, char *out, size_t cap)
{
    char k[64];
    snprintf(k, sizeof(k), "\"%s\":", key);
    const char *v = strstr(line, k);
    ck_assert_msg(v != NULL, "no %s in %s", key, line);
    v += strlen(k);
    bool quoted = *v == '"';
    v += quoted;
    size_t n = strcspn(v, quoted ? "\"" : ",}");
    snprintf(out, cap, "%.*s", (int)n, v);
}

struct want {
    const char *listener, *upstream;
    const char *server; /* "127.0.0.1:P", or "null" */
    long long up, down;
    int attempts; /* -1: do not check */
    const char *end;
};

/* Checks the access log line of `client` against w; returns its duration_ms. */
static long long expect_access(const struct px *x, const char *client, const struct want *w)
{
    char needle[96], line[2048], v[128];
    snprintf(needle, sizeof(needle), "\"client\":\"%s\"", client);
    log_line(&x->proc, needle, line, sizeof(line));
    ck_assert_msg(sph_json_valid(line, strlen(line), true), "not a JSON object: %s", line);
    jfield(line, "time", v, sizeof(v));
    ck_assert_msg(strlen(v) == 24 && v[10] == 'T' && v[19] == '.' && v[23] == 'Z', "time %s", v);
    jfield(line, "end", v, sizeof(v));
    ck_assert_msg(strcmp(v, w->end) == 0, "%s: end %s, want %s: %s", client, v, w->end, line);
    jfield(line, "listener", v, sizeof(v));
    ck_assert_msg(strcmp(v, w->listener) == 0, "listener %s: %s", v, line);
    jfield(line, "upstream", v, sizeof(v));
    ck_assert_msg(strcmp(v, w->upstream) == 0, "upstream %s: %s", v, line);
    jfield(line, "server", v, sizeof(v));
    ck_assert_msg(strcmp(v, w->server) == 0, "server %s, want %s: %s", v, w->server, line);
    jfield(line, "bytes_up", v, sizeof(v));
    ck_assert_msg(strtoll(v, NULL, 10) == w->up, "bytes_up %s, want %lld: %s", v, w->up, line);
    jfield(line, "bytes_down", v, sizeof(v));
    ck_assert_msg(strtoll(v, NULL, 10) == w->down, "bytes_down %s, want %lld: %s", v, w->down,
                  line);
    if (w->attempts >= 0) {
        jfield(line, "attempts", v, sizeof(v));
        ck_assert_msg(atoi(v) == w->attempts, "attempts %s, want %d: %s", v, w->attempts, line);
    }
    jfield(line, "duration_ms", v, sizeof(v));
    return strtoll(v, NULL, 10);
}

/* Waits (bounded) until splicer ends the connection; returns how long it took. */
static int64_t expect_closed(int fd, int timeout_ms)
{
    int64_t t0 = sph_now_ms();
    int rc = sph_wait_closed(fd, timeout_ms);
    ck_assert_msg(rc == 0 || rc == -ECONNRESET, "connection not closed: %s", strerror(-rc));
    return sph_now_ms() - t0;
}

START_TEST(access_log_end_causes)
{
    struct sph_backend *echo = backend(SPH_ECHO, "echo");
    struct sph_backend *rst = backend(SPH_RESET, "rst");
    struct sph_backend *src = sph_backend_new(SPH_SOURCE, AF_INET);
    ck_assert_ptr_nonnull(src);
    src->source_len = 3000;
    ck_assert_int_eq(sph_backend_start(src), 0);
    struct sph_backend *dead = backend(SPH_ECHO, "dead");
    sph_backend_stop(dead); /* its port now refuses */
    int refused[2] = {sph_free_port(AF_INET), sph_free_port(AF_INET)};
    int p_echo = sph_free_port(AF_INET), p_src = sph_free_port(AF_INET);
    int p_rst = sph_free_port(AF_INET), p_idle = sph_free_port(AF_INET);
    int p_ref = sph_free_port(AF_INET), p_dead = sph_free_port(AF_INET);
    struct px x;
    px_start(&x, p_dead,
             "workers: 1\n"
             "shutdown_timeout: 1s\n"
             "access_log: stderr\n"
             "log_format: json\n"
             "listeners:\n"
             "  echo: {listen: 127.0.0.1:%d, upstream: echo_pool}\n"
             "  src: {listen: 127.0.0.1:%d, upstream: src_pool}\n"
             "  rst: {listen: 127.0.0.1:%d, upstream: rst_pool}\n"
             "  idle: {listen: 127.0.0.1:%d, upstream: echo_pool, idle_timeout: 300ms}\n"
             "  refused: {listen: 127.0.0.1:%d, upstream: refused_pool}\n"
             "  dead: {listen: 127.0.0.1:%d, upstream: dead_pool}\n"
             "upstreams:\n"
             "  echo_pool: {servers: [{address: 127.0.0.1:%d}]}\n"
             "  src_pool: {servers: [{address: 127.0.0.1:%d}]}\n"
             "  rst_pool: {max_fails: 0, servers: [{address: 127.0.0.1:%d}]}\n"
             "  refused_pool:\n"
             "    retries: 1\n"
             "    max_fails: 0\n"
             "    servers: [{address: 127.0.0.1:%d}, {address: 127.0.0.1:%d}]\n"
             "  dead_pool:\n"
             "    max_fails: 0\n" HEALTH_FAST "    servers: [{address: 127.0.0.1:%d}]\n",
             p_echo, p_src, p_rst, p_idle, p_ref, p_dead, echo->port, src->port, rst->port,
             refused[0], refused[1], dead->port);
    char client[32], srv[32];
    int fd;

    /* client_fin: 1000 bytes echoed, the client's FIN first */
    fd = fresh_client(p_echo, client, sizeof(client));
    echo_round(fd, 1000, 1);
    close(fd);
    sph_addr(srv, AF_INET, echo->port);
    expect_access(&x, client,
                  &(struct want){"echo", "echo_pool", srv, 1000, 1000, 1, "client_fin"});

    /* upstream_fin: the server sends 3000 bytes and its FIN first; then the client sends 10 */
    fd = fresh_client(p_src, client, sizeof(client));
    ck_assert_int_eq(sph_read_to_eof(fd, NULL, 0, IO_MS), 3000);
    ck_assert_int_eq(sph_write_all(fd, "0123456789", 10, IO_MS), 0);
    for (int i = 0; i < 250 && atomic_load(&src->bytes_in) < 10; i++)
        sph_sleep_ms(20);
    ck_assert_uint_eq(atomic_load(&src->bytes_in), 10);
    close(fd);
    sph_addr(srv, AF_INET, src->port);
    expect_access(&x, client, &(struct want){"src", "src_pool", srv, 10, 3000, 1, "upstream_fin"});

    /* client_reset: one ping, then an RST from the client */
    fd = fresh_client(p_echo, client, sizeof(client));
    ck_assert_int_eq(sph_ping(fd, IO_MS), 0);
    sph_abort(fd);
    sph_addr(srv, AF_INET, echo->port);
    expect_access(&x, client, &(struct want){"echo", "echo_pool", srv, 5, 5, 1, "client_reset"});

    /* upstream_reset: the server reads the 5 bytes and resets; the client is reset in turn */
    fd = fresh_client(p_rst, client, sizeof(client));
    ck_assert_int_eq(sph_write_all(fd, "ping\n", 5, IO_MS), 0);
    expect_closed(fd, IO_MS);
    close(fd);
    sph_addr(srv, AF_INET, rst->port);
    expect_access(&x, client, &(struct want){"rst", "rst_pool", srv, 5, 0, 1, "upstream_reset"});

    /* idle_timeout: one ping, then silence for idle_timeout (300ms) */
    fd = fresh_client(p_idle, client, sizeof(client));
    ck_assert_int_eq(sph_ping(fd, IO_MS), 0);
    int64_t took = expect_closed(fd, 300 + SLACK_MS + 1000);
    close(fd);
    ck_assert_msg(took >= 250, "closed %lld ms after the last byte, idle_timeout 300ms",
                  (long long)took);
    sph_addr(srv, AF_INET, echo->port);
    long long ms = expect_access(&x, client,
                                 &(struct want){"idle", "echo_pool", srv, 5, 5, 1, "idle_timeout"});
    ck_assert_msg(ms >= 250, "idle connection lasted %lld ms", ms);

    /* connect_failed: both servers refuse; 1 retry makes 2 attempts */
    fd = fresh_client(p_ref, client, sizeof(client));
    expect_closed(fd, IO_MS);
    close(fd);
    char needle[96], line[2048], v[64];
    snprintf(needle, sizeof(needle), "\"client\":\"%s\"", client);
    log_line(&x.proc, needle, line, sizeof(line));
    jfield(line, "server", v, sizeof(v));
    char r0[32], r1[32];
    sph_addr(r0, AF_INET, refused[0]);
    sph_addr(r1, AF_INET, refused[1]);
    ck_assert_msg(strcmp(v, r0) == 0 || strcmp(v, r1) == 0, "server %s: %s", v, line);
    expect_access(&x, client,
                  &(struct want){"refused", "refused_pool", v, 0, 0, 2, "connect_failed"});

    /* no_server: the only server is down by its health check */
    static char st[BUF_CAP];
    ck_assert_msg(wait_server_field(&x, st, sizeof(st), dead->port, "state", "down", 3000),
                  "the dead server never went down:\n%s", st);
    fd = fresh_client(p_dead, client, sizeof(client));
    expect_closed(fd, IO_MS);
    close(fd);
    expect_access(&x, client, &(struct want){"dead", "dead_pool", "null", 0, 0, -1, "no_server"});

    /* One line per connection, and no others. */
    sph_sleep_ms(300);
    ck_assert_int_eq(sph_proc_log_count(&x.proc, "\"end\":\""), 7 + discarded);
}
END_TEST

/* Text form: one line, key=value fields. */
START_TEST(access_log_text)
{
    struct sph_backend *echo = backend(SPH_ECHO, "echo");
    int port = sph_free_port(AF_INET);
    struct px x;
    px_start(&x, port,
             "workers: 1\n"
             "shutdown_timeout: 1s\n"
             "access_log: stderr\n"
             "log_format: text\n"
             "listeners:\n"
             "  main: {listen: 127.0.0.1:%d, upstream: pool}\n"
             "upstreams:\n"
             "  pool: {servers: [{address: 127.0.0.1:%d}]}\n",
             port, echo->port);
    char client[32], needle[64], line[1024], want[256];
    int fd = fresh_client(port, client, sizeof(client));
    echo_round(fd, 1000, 3);
    close(fd);
    snprintf(needle, sizeof(needle), " client=%s ", client);
    log_line(&x.proc, needle, line, sizeof(line));
    snprintf(want, sizeof(want),
             " listener=main client=%s upstream=pool server=127.0.0.1:%d up=1000 down=1000 "
             "duration_ms=",
             client, echo->port);
    ck_assert_msg(strstr(line, want) == line + 24, "text line: %s\nwant after the time: %s", line,
                  want);
    ck_assert_msg(line[10] == 'T' && line[23] == 'Z', "time: %s", line);
    const char *tail = strstr(line, " attempts=1 end=client_fin");
    ck_assert_msg(tail != NULL && tail[strlen(" attempts=1 end=client_fin")] == '\0', "tail: %s",
                  line);
    ck_assert_int_eq(sph_proc_log_count(&x.proc, "{\""), 0);
}
END_TEST

/* A file destination: lines reach it within about the 200 ms flush delay, not on stderr; after a
 * move and a SIGHUP the log is reopened at its path. */
static bool file_has(const char *path, const char *needle)
{
    char *text = sph_read_file(path);
    bool found = text != NULL && strstr(text, needle) != NULL;
    free(text);
    return found;
}

START_TEST(access_log_file)
{
    struct sph_backend *echo = backend(SPH_ECHO, "echo");
    char logpath[SPH_PATH_MAX], moved[SPH_PATH_MAX + 8];
    ck_assert_int_eq(sph_config_write(logpath, "%s", ""), 0);
    int port = sph_free_port(AF_INET);
    struct px x;
    px_start(&x, port,
             "workers: 1\n"
             "shutdown_timeout: 1s\n"
             "access_log: %s\n"
             "listeners:\n"
             "  main: {listen: 127.0.0.1:%d, upstream: pool}\n"
             "upstreams:\n"
             "  pool: {servers: [{address: 127.0.0.1:%d}]}\n",
             logpath, port, echo->port);
    char client[32], needle[96];
    int fd = fresh_client(port, client, sizeof(client));
    echo_round(fd, 1000, 4);
    close(fd);
    int64_t t0 = sph_now_ms();
    snprintf(needle, sizeof(needle), "\"client\":\"%s\"", client);
    while (!file_has(logpath, needle) && sph_now_ms() - t0 < 5000)
        sph_sleep_ms(20);
    int64_t took = sph_now_ms() - t0;
    ck_assert_msg(file_has(logpath, needle), "no line for %s in %s after 5 s", client, logpath);
    ck_assert_msg(took < 200 + SLACK_MS, "the line took %lld ms to reach the file",
                  (long long)took);
    char *text = sph_read_file(logpath);
    ck_assert_ptr_nonnull(text);
    size_t len = strlen(text);
    ck_assert_msg(len > 0 && text[len - 1] == '\n' && strchr(text, '\n') == text + len - 1 &&
                      sph_json_valid(text, len, true),
                  "file: %s", text);
    ck_assert_msg(strstr(text, "\"end\":\"client_fin\"") != NULL, "file: %s", text);
    free(text);
    ck_assert_int_eq(sph_proc_log_count(&x.proc, needle), 0);

    /* rotation: move the file away, SIGHUP, and the next line lands in a new file at logpath */
    snprintf(moved, sizeof(moved), "%s.1", logpath);
    ck_assert_int_eq(rename(logpath, moved), 0);
    ck_assert_int_eq(sph_proc_signal_wait_log(&x.proc, SIGHUP, "reloaded", 5000), 0);
    fd = fresh_client(port, client, sizeof(client));
    echo_round(fd, 10, 5);
    close(fd);
    snprintf(needle, sizeof(needle), "\"client\":\"%s\"", client);
    t0 = sph_now_ms();
    while (!file_has(logpath, needle) && sph_now_ms() - t0 < 5000)
        sph_sleep_ms(20);
    bool reopened = file_has(logpath, needle), old = file_has(moved, needle);
    unlink(moved);
    unlink(logpath); /* sph_cleanup removes it too; a missing file is fine */
    ck_assert_msg(reopened && !old, "after the move and SIGHUP: new file %d, moved file %d",
                  reopened, old);
}
END_TEST

/* ---- 7. reloads in the admin views --------------------------------------------------------- */

#define RELOAD_CONF                                                                                \
    "workers: 1\n"                                                                                 \
    "listeners:\n"                                                                                 \
    "  main:\n"                                                                                    \
    "    listen: 127.0.0.1:%d\n"                                                                   \
    "    upstream: pool\n"                                                                         \
    "    %s: 1s\n"                                                                                 \
    "upstreams:\n"                                                                                 \
    "  pool:\n"                                                                                    \
    "    servers:\n"                                                                               \
    "      - address: 127.0.0.1:%d\n"

START_TEST(reload_in_admin)
{
    struct sph_backend *e = backend(SPH_ECHO, "e");
    int port = sph_free_port(AF_INET);
    struct px x;
    px_start(&x, port, RELOAD_CONF, port, "connect_timeout", e->port);
    sph_expect_metric(x.admin, "splicer_config_generation", 1);
    sph_expect_metric(x.admin, "splicer_config_reloads_total{result=\"success\"}", 0);
    sph_expect_metric(x.admin, "splicer_config_last_reload_timestamp_seconds", 0);

    ck_assert_int_eq(
        sph_config_rewrite(x.conf, "%s" RELOAD_CONF, x.admin_head, port, "idle_timeout", e->port),
        0);
    ck_assert_int_eq(sph_proc_signal_wait_log(&x.proc, SIGHUP, "reloaded", 5000), 0);
    static char m[BUF_CAP];
    scrape(&x, m, sizeof(m));
    ck_assert_int_eq(sph_metric_sample(m, "splicer_config_generation"), 2);
    ck_assert_int_eq(sph_metric_sample(m, "splicer_config_reloads_total{result=\"success\"}"), 1);
    ck_assert_int_eq(sph_metric_sample(m, "splicer_config_reloads_total{result=\"failure\"}"), 0);
    ck_assert_int_eq(sph_metric_sample(m, "splicer_config_last_reload_success"), 1);
    ck_assert_int_gt(sph_metric_sample(m, "splicer_config_last_reload_timestamp_seconds"),
                     1600000000);

    /* line 8 (after the two admin lines), column 5: a misspelt key */
    ck_assert_int_eq(
        sph_config_rewrite(x.conf, "%s" RELOAD_CONF, x.admin_head, port, "conect_timeout", e->port),
        0);
    ck_assert_int_eq(sph_proc_signal_wait_log(&x.proc, SIGHUP, "reload failed", 5000), 0);
    scrape(&x, m, sizeof(m));
    ck_assert_int_eq(sph_metric_sample(m, "splicer_config_generation"), 2);
    ck_assert_int_eq(sph_metric_sample(m, "splicer_config_reloads_total{result=\"success\"}"), 1);
    ck_assert_int_eq(sph_metric_sample(m, "splicer_config_reloads_total{result=\"failure\"}"), 1);
    ck_assert_int_eq(sph_metric_sample(m, "splicer_config_last_reload_success"), 0);
    expect_family(m, "splicer_config_reloads_total", "counter");
    expect_family(m, "splicer_config_generation", "gauge");

    static char s[BUF_CAP];
    status(&x, s, sizeof(s));
    char want[256];
    snprintf(want, sizeof(want), "\"last_reload_error\":\"%s:8:5: unknown key 'conect_timeout'",
             x.conf);
    ck_assert_msg(strstr(s, want) != NULL, "/status lacks %s:\n%s", want, s);
    ck_assert_msg(strstr(s, "\"last_reload_ok\":false") != NULL &&
                      strstr(s, "\"config_generation\":2") != NULL &&
                      strstr(s, "\"reloads_ok\":1") != NULL &&
                      strstr(s, "\"reloads_failed\":1") != NULL,
                  "/status process: %s", s);

    /* still relaying on generation 2 */
    int fd = connect_ok(port);
    ck_assert_int_eq(sph_ping(fd, IO_MS), 0);
    close(fd);
}
END_TEST

/* ---- 8. malformed admin requests ----------------------------------------------------------- */

START_TEST(malformed_admin_requests)
{
    struct sph_backend *e = backend(SPH_ECHO, "e");
    int port = sph_free_port(AF_INET);
    struct px x;
    px_start(&x, port,
             "workers: 1\n"
             "shutdown_timeout: 1s\n"
             "listeners:\n"
             "  main: {listen: 127.0.0.1:%d, upstream: pool}\n"
             "upstreams:\n"
             "  pool: {servers: [{address: 127.0.0.1:%d}]}\n",
             port, e->port);
    char body[4096];
    ck_assert_int_eq(sph_admin_req(x.admin, "GET", "/healthz", body, sizeof(body)), 200);
    int held = connect_ok(port);
    ck_assert_int_eq(sph_ping(held, IO_MS), 0);

    static const char *const bad[] = {
        "GET /\r\n\r\n",                                  /* no HTTP version */
        "GET /metrics HTTP/1.0\r\nno colon here\r\n\r\n", /* header line without ':' */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* sph_http_raw returns only once the server has closed */
        int n = sph_http_raw(x.admin, bad[i], strlen(bad[i]), body, sizeof(body));
        ck_assert_msg(n > 0, "request %zu: %s", i, n < 0 ? strerror(-n) : "closed without reply");
        ck_assert_msg(strncmp(body, "HTTP/1.", 7) == 0 && strncmp(body + 8, " 400 ", 5) == 0,
                      "request %zu: reply %s", i, body);
    }
    /* wrong method and unknown path */
    int n = sph_http_raw(x.admin, "DELETE /metrics HTTP/1.0\r\n\r\n", 28, body, sizeof(body));
    ck_assert_msg(n > 0 && strncmp(body + 8, " 405 ", 5) == 0 &&
                      strstr(body, "\r\nAllow: ") != NULL,
                  "DELETE /metrics: %s", body);
    ck_assert_int_eq(sph_http(x.admin, "GET", "/nope", NULL, 0), 404);

    /* the endpoint and the relay go on working */
    ck_assert_int_eq(sph_admin_req(x.admin, "GET", "/healthz", body, sizeof(body)), 200);
    ck_assert_int_eq(sph_admin_req(x.admin, "GET", "/metrics", body, sizeof(body)), 200);
    ck_assert_int_eq(sph_ping(held, IO_MS), 0);
    close(held);
    int fd = connect_ok(port);
    echo_round(fd, 10000, 6);
    close(fd);
    ck_assert_int_eq(sph_proc_wait(&x.proc, 0), -ETIMEDOUT);
}
END_TEST

static Suite *ops_suite(void)
{
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("ops");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, metrics_after_traffic);
    tcase_add_test(tc, status_shows_dead_server);
    tcase_add_test(tc, drain_and_enable);
    tcase_add_test(tc, healthz_during_drain);
    tcase_add_test(tc, second_signal_closes_now);
    tcase_add_test(tc, access_log_end_causes);
    tcase_add_test(tc, access_log_text);
    tcase_add_test(tc, access_log_file);
    tcase_add_test(tc, reload_in_admin);
    tcase_add_test(tc, malformed_admin_requests);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ops_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
