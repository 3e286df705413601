/* test_health_http.c: HTTP health checks (issue 12.5) against the real binary. A test HTTP
 * server answers the checks with 200, then 503, then garbage, then nothing at all, and the
 * server's state follows: in the rotation, out with last_check "status 503", "not HTTP",
 * "timeout", back in. The request is the configured GET with Host and Connection: close; a
 * reload turns the HTTP check on and off; and in the nginx group a real nginx answers. */
#include "harness.h"

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define START_MS  10000
#define WAIT_MS   5000 /* for a verdict: a few 200 ms checks, with room for a loaded box */
#define RELOAD_MS 5000

static void teardown(void)
{
    sph_cleanup();
}

struct proxy {
    struct sph_proc p;
    char conf[SPH_PATH_MAX];
    int port, admin;
};

/* The config: one listener, upstream "pool" with servers on ports a and b (b 0: none) and the
 * health_check block `check`. */
static int render(const struct proxy *px, char *out, size_t cap, int a, int b, const char *check)
{
    char second[64] = "";
    if (b != 0)
        snprintf(second, sizeof(second), "      - address: 127.0.0.1:%d\n", b);
    return snprintf(out, cap,
                    "shutdown_timeout: 1s\n"
                    "admin:\n"
                    "  listen: 127.0.0.1:%d\n"
                    "listeners:\n"
                    "  main:\n"
                    "    listen: 127.0.0.1:%d\n"
                    "    upstream: pool\n"
                    "upstreams:\n"
                    "  pool:\n"
                    "    retries: 0\n"
                    "    max_fails: 0\n"
                    "    health_check:\n"
                    "      interval: 200ms\n"
                    "      timeout: 300ms\n"
                    "      rise: 1\n"
                    "      fall: 1\n"
                    "%s"
                    "    servers:\n"
                    "      - address: 127.0.0.1:%d\n"
                    "%s",
                    px->admin, px->port, check, a, second);
}

static void proxy_start(struct proxy *px, int a, int b, const char *check)
{
    char text[2048];
    px->port = sph_free_port(AF_INET);
    px->admin = sph_free_port(AF_INET);
    ck_assert_int_lt(render(px, text, sizeof(text), a, b, check), (int)sizeof(text));
    ck_assert_int_eq(sph_config_write(px->conf, "%s", text), 0);
    int rc = sph_splicer_start(&px->p, px->conf, px->port, START_MS);
    if (rc != 0) {
        char *err = sph_proc_stderr(&px->p);
        ck_abort_msg("splicer did not start (%s); stderr:\n%s", strerror(-rc), err);
    }
}

static void proxy_reload(struct proxy *px, int a, int b, const char *check)
{
    char text[2048];
    ck_assert_int_lt(render(px, text, sizeof(text), a, b, check), (int)sizeof(text));
    ck_assert_int_eq(sph_config_rewrite(px->conf, "%s", text), 0);
    int rc = sph_proc_signal_wait_log(&px->p, SIGHUP, "reloaded ", RELOAD_MS);
    if (rc != 0) {
        char *err = sph_proc_stderr(&px->p);
        ck_abort_msg("reload: %s; stderr:\n%s", strerror(-rc), err);
    }
}

/* The value of `"key":` in the /status object of server 127.0.0.1:port, as written (a quoted
 * string keeps its quotes), into out. */
static void server_field(int admin, int port, const char *key, char *out, size_t cap)
{
    static char body[16384];
    char needle[64];
    ck_assert_int_eq(sph_admin_req(admin, "GET", "/status", body, sizeof(body)), 200);
    snprintf(needle, sizeof(needle), "\"address\":\"127.0.0.1:%d\"", port);
    const char *s = strstr(body, needle);
    ck_assert_msg(s != NULL, "no server %d in /status: %s", port, body);
    snprintf(needle, sizeof(needle), "\"%s\":", key);
    const char *v = strstr(s, needle);
    ck_assert_msg(v != NULL, "no %s for server %d in /status: %s", key, port, body);
    v += strlen(needle);
    size_t n = strcspn(v, ",}");
    ck_assert_uint_lt(n, cap);
    memcpy(out, v, n);
    out[n] = '\0';
}

/* Polls /status until the server's last_check reads `want` (unquoted); asserts it. */
static void expect_last_check(const struct proxy *px, int port, const char *want)
{
    char got[64] = "", quoted[80];
    snprintf(quoted, sizeof(quoted), "\"%s\"", want);
    int64_t end = sph_now_ms() + WAIT_MS;
    do {
        server_field(px->admin, port, "last_check", got, sizeof(got));
        if (strcmp(got, quoted) == 0)
            return;
        sph_sleep_ms(50);
    } while (sph_now_ms() < end);
    ck_abort_msg("server %d: last_check %s, want %s within %d ms", port, got, quoted, WAIT_MS);
}

static void expect_log(const struct sph_proc *p, const char *line)
{
    if (!sph_proc_wait_log(p, line, 1, WAIT_MS)) {
        char *err = sph_proc_stderr(p);
        ck_abort_msg("no \"%s\" within %d ms; stderr:\n%s", line, WAIT_MS, err);
    }
}

/* A GET through splicer; returns the body's first line (the backend's name) in name, or -errno
 * when the connection ended without an answer. */
static int fetch_name(int port, char *name, size_t cap)
{
    int fd = sph_connect(AF_INET, port, 2000);
    if (fd < 0)
        return fd;
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    char reply[512];
    int rc = sph_write_all(fd, req, sizeof(req) - 1, 2000);
    ssize_t n = rc == 0 ? sph_read_to_eof(fd, reply, sizeof(reply) - 1, 3000) : rc;
    close(fd);
    if (n <= 0)
        return n == 0 ? -EPIPE : (int)n;
    reply[n] = '\0';
    const char *body = strstr(reply, "\r\n\r\n");
    if (body == NULL)
        return -EPROTO;
    snprintf(name, cap, "%.*s", (int)strcspn(body + 4, "\n"), body + 4);
    return 0;
}

/* n GETs through splicer; returns how many reached the backend called `name`, asserting that
 * every one was answered. */
static int count_name(int port, int n, const char *name)
{
    int hits = 0;
    for (int k = 0; k < n; k++) {
        char got[32];
        int rc = fetch_name(port, got, sizeof(got));
        ck_assert_msg(rc == 0, "request %d: %s", k, strerror(-rc));
        hits += strcmp(got, name) == 0;
    }
    return hits;
}

#define HTTP_CHECK                                                                                 \
    "      http:\n"                                                                                \
    "        path: /healthz\n"                                                                     \
    "        host: app.internal\n"                                                                 \
    "        expect_status: 200-299\n"

/* 200, then 503, then garbage, then silence, then 200 again: the state and last_check follow,
 * and the clients go only where the checks say. */
START_TEST(status_cycle)
{
    struct sph_backend *b1 = sph_http_backend("b1", 200), *b2 = sph_http_backend("b2", 200);
    struct proxy px;
    proxy_start(&px, b1->port, b2->port, HTTP_CHECK);
    expect_last_check(&px, b1->port, "ok");
    char req[512], series[128];
    sph_backend_http_req(b1, req, sizeof(req));
    ck_assert_msg(strncmp(req, "GET /healthz HTTP/1.1\r\n", 23) == 0, "request: %s", req);
    ck_assert_msg(strstr(req, "\r\nHost: app.internal\r\n") != NULL, "request: %s", req);
    ck_assert_msg(strstr(req, "\r\nConnection: close\r\n") != NULL, "request: %s", req);
    snprintf(series, sizeof(series),
             "splicer_server_check_http_status{upstream=\"pool\",server=\"127.0.0.1:%d\"}",
             b1->port);
    sph_expect_metric(px.admin, series, 200);
    int hits = count_name(px.port, 10, "b1");
    ck_assert_msg(hits == 5, "both up: b1 got %d of 10", hits);

    char line[160];
    atomic_store(&b1->http_status, 503);
    snprintf(line, sizeof(line), "server 127.0.0.1:%d up -> down (status 503;", b1->port);
    expect_log(&px.p, line);
    expect_last_check(&px, b1->port, "status 503");
    sph_expect_metric(px.admin, series, 503);
    char state[32];
    server_field(px.admin, b1->port, "state", state, sizeof(state));
    ck_assert_str_eq(state, "\"down\"");
    ck_assert_int_eq(count_name(px.port, 10, "b1"), 0);

    atomic_store(&b1->http_status, SPH_HTTP_GARBAGE);
    expect_last_check(&px, b1->port, "not HTTP");
    sph_expect_metric(px.admin, series, 0);
    server_field(px.admin, b1->port, "last_check_http_status", state, sizeof(state));
    ck_assert_str_eq(state, "null");
    ck_assert_int_eq(count_name(px.port, 10, "b1"), 0);

    atomic_store(&b1->http_status, SPH_HTTP_SILENT);
    expect_last_check(&px, b1->port, "timeout");

    atomic_store(&b1->http_status, 200);
    snprintf(line, sizeof(line), "server 127.0.0.1:%d down -> up (ok;", b1->port);
    expect_log(&px.p, line);
    expect_last_check(&px, b1->port, "ok");
    hits = count_name(px.port, 10, "b1");
    ck_assert_msg(hits == 5, "b1 back: it got %d of 10", hits);
}
END_TEST

/* A status outside the default 200-399 fails; 3xx passes; the default path is / and the Host
 * the server's address. */
START_TEST(defaults)
{
    struct sph_backend *b1 = sph_http_backend("b1", 302);
    struct proxy px;
    proxy_start(&px, b1->port, 0, "      http: {}\n");
    expect_last_check(&px, b1->port, "ok");
    char req[512], host[64];
    sph_backend_http_req(b1, req, sizeof(req));
    snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%d\r\n", b1->port);
    ck_assert_msg(strncmp(req, "GET / HTTP/1.1\r\n", 16) == 0, "request: %s", req);
    ck_assert_msg(strstr(req, host) != NULL, "request: %s", req);
    atomic_store(&b1->http_status, 404);
    expect_last_check(&px, b1->port, "status 404");
}
END_TEST

/* A reload turns the HTTP check on (a server answering 503, up under the plain connect check,
 * goes down) and off again (the connect check brings it back); the server's counters carry
 * over. */
START_TEST(reload_on_off)
{
    struct sph_backend *b1 = sph_http_backend("b1", 503), *b2 = sph_http_backend("b2", 200);
    struct proxy px;
    proxy_start(&px, b1->port, b2->port, "");
    expect_last_check(&px, b1->port, "ok");
    ck_assert_int_eq(count_name(px.port, 4, "b1"), 2);

    proxy_reload(&px, b1->port, b2->port, HTTP_CHECK);
    expect_last_check(&px, b1->port, "status 503");
    char line[160];
    snprintf(line, sizeof(line), "server 127.0.0.1:%d up -> down (status 503;", b1->port);
    expect_log(&px.p, line);
    ck_assert_int_eq(count_name(px.port, 6, "b1"), 0);
    char conns[32];
    server_field(px.admin, b1->port, "connections", conns, sizeof(conns));
    ck_assert_str_eq(conns, "2");

    proxy_reload(&px, b1->port, b2->port, "");
    expect_last_check(&px, b1->port, "ok");
    int hits = count_name(px.port, 10, "b1");
    ck_assert_msg(hits == 5, "after the http check went: b1 got %d of 10", hits);
}
END_TEST

/* ---- nginx: a real HTTP server ---- */

/* Starts nginx in the foreground on a free port, answering 200 on /healthz and 503 on /down
 * (and 404 elsewhere). Returns the port. */
static int nginx_start(struct sph_proc *p)
{
    const char *nginx = sph_tool("nginx");
    ck_assert_ptr_nonnull(nginx);
    int port = sph_free_port(AF_INET);
    /* nginx's pid, log and temp files go beside its config, in the suite's directory, which
     * the suite's teardown removes. */
    char conf[SPH_PATH_MAX], dir[SPH_PATH_MAX];
    ck_assert_int_eq(sph_config_write(conf, "#\n"), 0);
    snprintf(dir, sizeof(dir), "%s", conf);
    *strrchr(dir, '/') = '\0';
    int rc = sph_config_rewrite(conf,
                                "daemon off;\n"
                                "master_process off;\n"
                                "worker_processes 1;\n"
                                "pid %s/nginx.pid;\n"
                                "error_log %s/error.log;\n"
                                "events { worker_connections 64; }\n"
                                "http {\n"
                                "  access_log off;\n"
                                "  client_body_temp_path %s;\n"
                                "  proxy_temp_path %s;\n"
                                "  fastcgi_temp_path %s;\n"
                                "  uwsgi_temp_path %s;\n"
                                "  scgi_temp_path %s;\n"
                                "  server {\n"
                                "    listen 127.0.0.1:%d;\n"
                                "    location = /healthz { return 200 \"ok\\n\"; }\n"
                                "    location = /down { return 503; }\n"
                                "    location / { return 404; }\n"
                                "  }\n"
                                "}\n",
                                dir, dir, dir, dir, dir, dir, dir, port);
    ck_assert_int_eq(rc, 0);
    /* sph_proc_spawn runs $SPLICER_BIN; nginx is spawned by hand, registered the same way. */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        execl(nginx, "nginx", "-p", dir, "-c", conf, (char *)NULL);
        _exit(127);
    }
    p->pid = pid;
    p->reaped = false;
    for (int i = 0; i < 200 && !sph_port_listening(port); i++)
        sph_sleep_ms(25);
    ck_assert_msg(sph_port_listening(port), "nginx did not listen on %d", port);
    return port;
}

START_TEST(nginx_real_server)
{
    struct sph_proc ng = {.pid = -1};
    int nport = nginx_start(&ng);
    struct proxy px;
    proxy_start(&px, nport, 0, "      http:\n        path: /healthz\n");
    expect_last_check(&px, nport, "ok");
    char v[32];
    server_field(px.admin, nport, "last_check_http_status", v, sizeof(v));
    ck_assert_str_eq(v, "200");

    proxy_reload(&px, nport, 0, "      http:\n        path: /down\n");
    expect_last_check(&px, nport, "status 503");
    server_field(px.admin, nport, "state", v, sizeof(v));
    ck_assert_str_eq(v, "\"down\"");

    proxy_reload(&px, nport, 0,
                 "      http:\n        path: /nowhere\n        expect_status: 404\n");
    expect_last_check(&px, nport, "ok");
    kill(ng.pid, SIGKILL);
    sph_proc_wait(&ng, 5000);
}
END_TEST

static void add_main(Suite *s)
{
    TCase *tc = tcase_create("http");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, status_cycle);
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, reload_on_off);
    suite_add_tcase(s, tc);
}

static void add_nginx(Suite *s)
{
    TCase *tc = tcase_create("nginx");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, nginx_real_server);
    suite_add_tcase(s, tc);
}

int main(int argc, char **argv)
{
    static const struct sph_group groups[] = {
        {.name = NULL, .add = add_main},
        {.name = "nginx", .tools = {"nginx", NULL}, .add = add_nginx},
    };
    return sph_main(argc, argv, "integration.health_http", groups, 2);
}
