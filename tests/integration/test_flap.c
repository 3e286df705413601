/* test_flap.c: flap damping in health_check (issue 12.3) against the real binary. A server whose
 * HTTP check is toggled between 200 and 503 more than flap_max times within flap_window is held
 * out: back up by its checks, it still gets no client until it has been up for flap_hold; the
 * hold and the release are logged, /status shows flap_held and splicer_server_flaps_total
 * counts the changes. A reload that removes flap_max ends a hold at once. */
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
#define HOLD_MS   2000

static void teardown(void)
{
    sph_cleanup();
}

struct proxy {
    struct sph_proc p;
    char conf[SPH_PATH_MAX];
    int port, admin;
};

static int render(const struct proxy *px, char *out, size_t cap, const char *flap, int a, int b)
{
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
                    "      interval: 100ms\n"
                    "      timeout: 300ms\n"
                    "      rise: 1\n"
                    "      fall: 1\n"
                    "      http: {path: /healthz}\n"
                    "%s"
                    "    servers:\n"
                    "      - address: 127.0.0.1:%d\n"
                    "      - address: 127.0.0.1:%d\n",
                    px->admin, px->port, flap, a, b);
}

static void proxy_start(struct proxy *px, const char *flap, int a, int b)
{
    char text[2048];
    px->port = sph_free_port(AF_INET);
    px->admin = sph_free_port(AF_INET);
    ck_assert_int_lt(render(px, text, sizeof(text), flap, a, b), (int)sizeof(text));
    ck_assert_int_eq(sph_config_write(px->conf, "%s", text), 0);
    int rc = sph_splicer_start(&px->p, px->conf, px->port, START_MS);
    if (rc != 0) {
        char *err = sph_proc_stderr(&px->p);
        ck_abort_msg("splicer did not start (%s); stderr:\n%s", strerror(-rc), err);
    }
}

static void proxy_reload(struct proxy *px, const char *flap, int a, int b)
{
    char text[2048];
    ck_assert_int_lt(render(px, text, sizeof(text), flap, a, b), (int)sizeof(text));
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

/* A GET through splicer; 1 when b1 answered, 0 for another server, asserting an answer. */
static int hit_b1(int port)
{
    int fd = sph_connect(AF_INET, port, 2000);
    ck_assert_int_ge(fd, 0);
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    char reply[512];
    ck_assert_int_eq(sph_write_all(fd, req, sizeof(req) - 1, 2000), 0);
    ssize_t n = sph_read_to_eof(fd, reply, sizeof(reply) - 1, 3000);
    close(fd);
    ck_assert_msg(n > 0, "no answer: %s", n < 0 ? strerror((int)-n) : "EOF");
    reply[n] = '\0';
    return strstr(reply, "\r\n\r\nb1\n") != NULL;
}

/* Toggles b1's check result `changes` times, each time waiting for the transition line. The
 * first check must be done before: its verdict is no change, and is logged differently. */
static void toggle(struct proxy *px, struct sph_backend *b1, int changes)
{
    char down[128], up[128], series[128];
    snprintf(series, sizeof(series),
             "splicer_server_check_http_status{upstream=\"pool\",server=\"127.0.0.1:%d\"}",
             b1->port);
    sph_expect_metric(px->admin, series, 200);
    snprintf(down, sizeof(down), "server 127.0.0.1:%d up -> down (status 503;", b1->port);
    snprintf(up, sizeof(up), "server 127.0.0.1:%d down -> up (ok;", b1->port);
    for (int k = 0; k < changes; k++) {
        bool to_down = k % 2 == 0;
        atomic_store(&b1->http_status, to_down ? 503 : 200);
        expect_log(&px->p, to_down ? down : up, k / 2 + 1);
    }
}

static void status_has(int admin, const char *needle, bool want)
{
    static char body[16384];
    for (int64_t end = sph_now_ms() + WAIT_MS; sph_now_ms() < end; sph_sleep_ms(50)) {
        ck_assert_int_eq(sph_admin_req(admin, "GET", "/status", body, sizeof(body)), 200);
        if ((strstr(body, needle) != NULL) == want)
            return;
    }
    ck_abort_msg("/status %s %s: %s", want ? "lacks" : "still has", needle, body);
}

#define FLAP                                                                                       \
    "      flap_window: 30s\n"                                                                     \
    "      flap_max: 2\n"                                                                          \
    "      flap_hold: 2s\n"

/* Down, up, down: the third change within the window holds b1. Up again by its checks, it
 * stays out until it has been up for flap_hold, then takes its share. */
START_TEST(held_until_up_for_hold)
{
    struct sph_backend *b1 = sph_http_backend("b1", 200), *b2 = sph_http_backend("b2", 200);
    struct proxy px;
    proxy_start(&px, FLAP, b1->port, b2->port);
    int hits = 0;
    for (int k = 0; k < 6; k++)
        hits += hit_b1(px.port);
    ck_assert_int_eq(hits, 3);

    char held[160], series[128], flag[96];
    snprintf(held, sizeof(held),
             "upstream pool: server 127.0.0.1:%d is flapping (3 up/down changes within 30000 "
             "ms, flap_max 2): held down until it stays up for 2000 ms",
             b1->port);
    toggle(&px, b1, 3);
    expect_log(&px.p, held, 1);
    snprintf(flag, sizeof(flag), "\"address\":\"127.0.0.1:%d\",\"state\":\"down\"", b1->port);
    status_has(px.admin, flag, true);

    /* Healthy again: the check says up, the hold keeps it out. */
    atomic_store(&b1->http_status, 200);
    char up[128], released[128];
    snprintf(up, sizeof(up), "server 127.0.0.1:%d down -> up (ok;", b1->port);
    expect_log(&px.p, up, 2);
    int64_t up_at = sph_now_ms();
    status_has(px.admin, "\"flap_held\":true", true);
    snprintf(series, sizeof(series),
             "splicer_server_flaps_total{upstream=\"pool\",server=\"127.0.0.1:%d\"}", b1->port);
    sph_expect_metric(px.admin, series, 4);
    int during = 0, n = 0;
    for (; sph_now_ms() < up_at + HOLD_MS - 500; n++)
        during += hit_b1(px.port);
    ck_assert_msg(n >= 3 && during == 0, "held: b1 got %d of %d", during, n);

    snprintf(released, sizeof(released), "server 127.0.0.1:%d released from its flap hold (up for",
             b1->port);
    expect_log(&px.p, released, 1);
    int64_t took = sph_now_ms() - up_at;
    ck_assert_msg(took >= HOLD_MS - 300, "released %lld ms after coming up", (long long)took);
    status_has(px.admin, "\"flap_held\":true", false);
    hits = 0;
    for (int k = 0; k < 6; k++)
        hits += hit_b1(px.port);
    ck_assert_msg(hits == 3, "released: b1 got %d of 6", hits);
}
END_TEST

/* Without flap_max the same toggling holds nothing: b1 is back at its first good check. */
START_TEST(off_without_flap_max)
{
    struct sph_backend *b1 = sph_http_backend("b1", 200), *b2 = sph_http_backend("b2", 200);
    struct proxy px;
    proxy_start(&px, "", b1->port, b2->port);
    toggle(&px, b1, 4);
    int hits = 0;
    for (int k = 0; k < 6; k++)
        hits += hit_b1(px.port);
    ck_assert_msg(hits == 3, "b1 got %d of 6", hits);
    ck_assert_int_eq(sph_proc_log_count(&px.p, "is flapping"), 0);
}
END_TEST

/* A reload that removes flap_max releases a held server at once; the hold, the counter and the
 * server's state survive a reload that keeps it. */
START_TEST(reload_keeps_and_ends_hold)
{
    struct sph_backend *b1 = sph_http_backend("b1", 200), *b2 = sph_http_backend("b2", 200);
    struct proxy px;
    proxy_start(&px, "      flap_window: 30s\n      flap_max: 2\n      flap_hold: 1h\n", b1->port,
                b2->port);
    toggle(&px, b1, 4);
    expect_log(&px.p, "is flapping", 1);
    status_has(px.admin, "\"flap_held\":true", true);
    proxy_reload(&px, "      flap_window: 30s\n      flap_max: 3\n      flap_hold: 1h\n", b1->port,
                 b2->port);
    status_has(px.admin, "\"flap_held\":true", true);
    for (int k = 0; k < 4; k++)
        ck_assert_int_eq(hit_b1(px.port), 0);

    proxy_reload(&px, "", b1->port, b2->port);
    expect_log(&px.p, "released from its flap hold (flap damping is off now)", 1);
    status_has(px.admin, "\"flap_held\":true", false);
    int hits = 0;
    for (int k = 0; k < 6; k++)
        hits += hit_b1(px.port);
    ck_assert_msg(hits == 3, "after the reload: b1 got %d of 6", hits);
}
END_TEST

static Suite *flap_suite(void)
{
    Suite *s = suite_create("flap");
    TCase *tc = tcase_create("flap");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, held_until_up_for_hold);
    tcase_add_test(tc, off_without_flap_max);
    tcase_add_test(tc, reload_keeps_and_ends_hold);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(flap_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
