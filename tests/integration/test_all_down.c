/* test_all_down.c: the upstream key all_down (issue 12.2) against the real binary. Servers that
 * answer HTTP 503 to the health check (so the checks mark them down) but still serve the clients:
 * with every one down, all_down: fail_open serves the clients anyway while reject refuses them;
 * the gauge, /status and the warnings follow the state in and out; a reload switches the
 * policy. */
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
#define WAIT_MS   5000
#define RELOAD_MS 5000

static void teardown(void)
{
    sph_cleanup();
}

/* Two listeners: "open" to upstream open (all_down: `open_policy`, servers a and b) and "shut"
 * to upstream shut (default policy, server c). */
struct proxy {
    struct sph_proc p;
    char conf[SPH_PATH_MAX];
    int open_port, shut_port, admin;
};

#define CHECK                                                                                      \
    "    retries: 1\n"                                                                             \
    "    max_fails: 0\n"                                                                           \
    "    health_check:\n"                                                                          \
    "      interval: 200ms\n"                                                                      \
    "      timeout: 300ms\n"                                                                       \
    "      rise: 1\n"                                                                              \
    "      fall: 1\n"                                                                              \
    "      http: {path: /healthz}\n"

static int render(const struct proxy *px, char *out, size_t cap, const char *open_policy, int a,
                  int b, int c)
{
    return snprintf(out, cap,
                    "shutdown_timeout: 1s\n"
                    "admin:\n"
                    "  listen: 127.0.0.1:%d\n"
                    "listeners:\n"
                    "  open:\n"
                    "    listen: 127.0.0.1:%d\n"
                    "    upstream: open\n"
                    "  shut:\n"
                    "    listen: 127.0.0.1:%d\n"
                    "    upstream: shut\n"
                    "upstreams:\n"
                    "  open:\n"
                    "    all_down: %s\n" CHECK "    servers:\n"
                    "      - address: 127.0.0.1:%d\n"
                    "      - address: 127.0.0.1:%d\n"
                    "  shut:\n" CHECK "    servers:\n"
                    "      - address: 127.0.0.1:%d\n",
                    px->admin, px->open_port, px->shut_port, open_policy, a, b, c);
}

static void proxy_start(struct proxy *px, const char *policy, int a, int b, int c)
{
    char text[2048];
    px->open_port = sph_free_port(AF_INET);
    px->shut_port = sph_free_port(AF_INET);
    px->admin = sph_free_port(AF_INET);
    ck_assert_int_lt(render(px, text, sizeof(text), policy, a, b, c), (int)sizeof(text));
    ck_assert_int_eq(sph_config_write(px->conf, "%s", text), 0);
    int rc = sph_splicer_start(&px->p, px->conf, px->shut_port, START_MS);
    if (rc != 0) {
        char *err = sph_proc_stderr(&px->p);
        ck_abort_msg("splicer did not start (%s); stderr:\n%s", strerror(-rc), err);
    }
}

static void proxy_reload(struct proxy *px, const char *policy, int a, int b, int c)
{
    char text[2048];
    ck_assert_int_lt(render(px, text, sizeof(text), policy, a, b, c), (int)sizeof(text));
    ck_assert_int_eq(sph_config_rewrite(px->conf, "%s", text), 0);
    int rc = sph_proc_signal_wait_log(&px->p, SIGHUP, "reloaded ", RELOAD_MS);
    if (rc != 0) {
        char *err = sph_proc_stderr(&px->p);
        ck_abort_msg("reload: %s; stderr:\n%s", strerror(-rc), err);
    }
}

static void expect_log(const struct sph_proc *p, const char *line, int count)
{
    if (!sph_proc_wait_log(p, line, count, WAIT_MS)) {
        char *err = sph_proc_stderr(p);
        ck_abort_msg("no %d x \"%s\" within %d ms; stderr:\n%s", count, line, WAIT_MS, err);
    }
}

/* A GET through splicer: 0 with the backend's name (the body's first line) in name, or -errno
 * when the connection ended without an answer (splicer had no server for it). */
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

/* n GETs; counts[0] and [1] get the answers of "b1" and "b2"; returns the refused ones. */
static int tally(int port, int n, int counts[2])
{
    int refused = 0;
    for (int k = 0; k < n; k++) {
        char name[32];
        int rc = fetch_name(port, name, sizeof(name));
        if (rc != 0) {
            ck_assert_msg(rc == -EPIPE || rc == -ECONNRESET, "request %d: %s", k, strerror(-rc));
            refused++;
        } else if (strcmp(name, "b1") == 0 || strcmp(name, "b2") == 0) {
            counts[name[1] - '1']++;
        }
    }
    return refused;
}

static void status_has(int admin, const char *needle, bool want)
{
    static char body[16384];
    bool has = false;
    for (int64_t end = sph_now_ms() + WAIT_MS; sph_now_ms() < end; sph_sleep_ms(50)) {
        ck_assert_int_eq(sph_admin_req(admin, "GET", "/status", body, sizeof(body)), 200);
        if ((has = strstr(body, needle) != NULL) == want)
            return;
    }
    ck_abort_msg("/status %s %s: %s", want ? "lacks" : "still has", needle, body);
}

#define OPEN_DOWN                                                                                  \
    "upstream open: every server is down; balancing over all 2 anyway (all_down: fail_open)"
#define SHUT_DOWN "upstream shut: every server is down; refusing clients (all_down: reject)"
#define OPEN_BACK "upstream open: a server is up again, no longer all down"

/* Every server answering its checks with 503: fail_open serves the clients over both, reject
 * refuses them; once one server passes again, only it is used. */
START_TEST(fail_open_serves_reject_refuses)
{
    struct sph_backend *b1 = sph_http_backend("b1", 200), *b2 = sph_http_backend("b2", 200);
    struct sph_backend *c = sph_http_backend("b1", 200);
    struct proxy px;
    proxy_start(&px, "fail_open", b1->port, b2->port, c->port);
    sph_expect_metric(px.admin, "splicer_upstream_all_down{upstream=\"open\"}", 0);
    status_has(px.admin,
               "\"name\":\"open\",\"balance\":\"round_robin\",\"health_check\":\"http\","
               "\"all_down\":false,\"all_down_policy\":\"fail_open\"",
               true);
    int counts[2] = {0};
    ck_assert_int_eq(tally(px.open_port, 6, counts), 0);

    atomic_store(&b1->http_status, 503);
    atomic_store(&b2->http_status, 503);
    atomic_store(&c->http_status, 503);
    expect_log(&px.p, OPEN_DOWN, 1);
    expect_log(&px.p, SHUT_DOWN, 1);
    sph_expect_metric(px.admin, "splicer_upstream_all_down{upstream=\"open\"}", 1);
    sph_expect_metric(px.admin, "splicer_upstream_all_down{upstream=\"shut\"}", 1);
    status_has(px.admin, "\"all_down\":true,\"all_down_policy\":\"fail_open\"", true);
    status_has(px.admin, "\"all_down\":true,\"all_down_policy\":\"reject\"", true);

    int open[2] = {0}, shut[2] = {0};
    int refused = tally(px.open_port, 10, open);
    ck_assert_msg(refused == 0 && open[0] == 5 && open[1] == 5,
                  "fail_open, all down: %d refused, b1 %d, b2 %d of 10", refused, open[0], open[1]);
    refused = tally(px.shut_port, 5, shut);
    ck_assert_msg(refused == 5, "reject, all down: %d of 5 refused", refused);

    atomic_store(&b2->http_status, 200);
    expect_log(&px.p, OPEN_BACK, 1);
    sph_expect_metric(px.admin, "splicer_upstream_all_down{upstream=\"open\"}", 0);
    int back[2] = {0};
    ck_assert_int_eq(tally(px.open_port, 6, back), 0);
    ck_assert_msg(back[1] == 6, "b2 back: it got %d of 6", back[1]);
    ck_assert_int_eq(sph_proc_log_count(&px.p, OPEN_DOWN), 1);
}
END_TEST

/* A reload switches the policy of an upstream that stays all down: reject refuses, fail_open
 * serves, reject refuses again; a reload that adds a healthy server takes it out of the state
 * with its warning. */
START_TEST(reload_switches_policy)
{
    struct sph_backend *b1 = sph_http_backend("b1", 503), *b2 = sph_http_backend("b2", 503);
    struct sph_backend *c = sph_http_backend("b1", 200);
    struct proxy px;
    proxy_start(&px, "reject", b1->port, b2->port, c->port);
    expect_log(&px.p, "upstream open: every server is down; refusing clients (all_down: reject)",
               1);
    int counts[2] = {0};
    ck_assert_int_eq(tally(px.open_port, 4, counts), 4);

    proxy_reload(&px, "fail_open", b1->port, b2->port, c->port);
    status_has(px.admin, "\"all_down\":true,\"all_down_policy\":\"fail_open\"", true);
    ck_assert_int_eq(tally(px.open_port, 4, counts), 0);
    ck_assert_int_eq(counts[0] + counts[1], 4);

    proxy_reload(&px, "reject", b1->port, b2->port, c->port);
    status_has(px.admin, "\"all_down_policy\":\"fail_open\"", false);
    ck_assert_int_eq(tally(px.open_port, 4, counts), 4);

    /* b2 replaced by a healthy server: a new server starts up, so the upstream leaves the
     * all-down state at the reload itself. */
    struct sph_backend *b3 = sph_http_backend("b2", 200);
    proxy_reload(&px, "reject", b1->port, b3->port, c->port);
    expect_log(&px.p, OPEN_BACK, 1);
    sph_expect_metric(px.admin, "splicer_upstream_all_down{upstream=\"open\"}", 0);
    int after[2] = {0};
    ck_assert_int_eq(tally(px.open_port, 4, after), 0);
    ck_assert_int_eq(after[1], 4);
}
END_TEST

static Suite *all_down_suite(void)
{
    Suite *s = suite_create("all_down");
    TCase *tc = tcase_create("all_down");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, fail_open_serves_reject_refuses);
    tcase_add_test(tc, reload_switches_policy);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(all_down_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
