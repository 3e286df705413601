/* test_admin.c: who may change state through the admin endpoint, and whether it stays up for
 * probes, as an operator sees it with the real binary: drain refused beyond loopback without a
 * token; admin.token_file checked by `splicer -t`, required as a bearer token and re-read on
 * SIGHUP; a cross-site form POST cannot drain a loopback endpoint; and /healthz keeps answering
 * while 64 clients trickle their requests a byte a second, which are cut at the deadline. */
#include "harness.h"

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define START_MS 10000
#define TOKEN    "it-token-0123456789abcdef"
#define TOKEN2   "it-token-second-9876543210"

static void teardown(void)
{
    sph_cleanup();
}

struct px {
    struct sph_proc proc;
    int port;  /* the listener */
    int admin; /* the admin port */
    struct sph_backend *b;
    char conf[SPH_PATH_MAX];
};

/* The config: admin on `ip` (a free port) with `admin_extra` lines, one listener to one server. */
static int px_config(struct px *x, const char *ip, const char *admin_extra)
{
    return sph_config_write(x->conf,
                            "workers: 1\n"
                            "shutdown_timeout: 1s\n"
                            "admin:\n"
                            "  listen: %s:%d\n"
                            "%s"
                            "listeners:\n"
                            "  main: {listen: 127.0.0.1:%d, upstream: pool}\n"
                            "upstreams:\n"
                            "  pool: {servers: [{address: 127.0.0.1:%d}]}\n",
                            ip, x->admin, admin_extra, x->port, x->b->port);
}

static void px_start(struct px *x, const char *ip, const char *admin_extra)
{
    x->b = sph_backend_new(SPH_ECHO, AF_INET);
    ck_assert_ptr_nonnull(x->b);
    ck_assert_int_eq(sph_backend_start(x->b), 0);
    x->port = sph_free_port(AF_INET);
    x->admin = sph_free_port(AF_INET);
    ck_assert_int_eq(px_config(x, ip, admin_extra), 0);
    int rc = sph_splicer_start(&x->proc, x->conf, x->port, START_MS);
    if (rc != 0)
        ck_abort_msg("splicer did not start (%s); stderr:\n%s", strerror(-rc),
                     sph_proc_stderr(&x->proc));
    /* the admin endpoint comes up just after the listeners */
    char body[64];
    ck_assert_int_eq(sph_admin_req(x->admin, "GET", "/healthz", body, sizeof(body)), 200);
}

/* POST to the server's drain URL with extra header lines; returns the status, the whole reply
 * in reply. */
static int drain_req(const struct px *x, const char *headers, char *reply, size_t cap)
{
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "POST /upstreams/pool/servers/127.0.0.1:%d/drain HTTP/1.1\r\n"
                     "Host: 127.0.0.1:%d\r\nConnection: close\r\n%s\r\n",
                     x->b->port, x->admin, headers);
    ck_assert_int_lt(n, (int)sizeof(req));
    int got = sph_http_raw(x->admin, req, (size_t)n, reply, cap);
    ck_assert_msg(got > 0, "no reply: %s", got < 0 ? strerror(-got) : "closed");
    int status = 0;
    ck_assert_int_eq(sscanf(reply, "HTTP/1.%*d %d", &status), 1);
    return status;
}

static long long drained(const struct px *x)
{
    char series[128];
    snprintf(series, sizeof(series),
             "splicer_server_drained{upstream=\"pool\",server=\"127.0.0.1:%d\"}", x->b->port);
    return sph_metric(x->admin, series);
}

/* ---- (a) authorization --------------------------------------------------------------------- */

/* Listening beyond loopback without a token: reading works, drain is refused even from a
 * well-behaved script. */
START_TEST(no_token_beyond_loopback)
{
    struct px x;
    char reply[4096];
    px_start(&x, "0.0.0.0", "");

    int st = drain_req(&x, "X-Splicer-Admin: 1\r\nContent-Length: 0\r\n", reply, sizeof(reply));
    ck_assert_msg(st == 403, "drain on 0.0.0.0 without a token: %d\n%s", st, reply);
    ck_assert_ptr_nonnull(strstr(reply, "admin.token_file"));
    ck_assert_int_eq(drained(&x), 0);
    ck_assert(sph_proc_wait_log(&x.proc, "refused a state change from 127.0.0.1:", 1, 2000));
    ck_assert_int_eq(sph_admin_req(x.admin, "GET", "/status", reply, sizeof(reply)), 200);
}
END_TEST

/* A token file: checked by -t, required as a bearer token, re-read on SIGHUP; a bad file at a
 * reload keeps the old token. */
START_TEST(token_file_and_reload)
{
    char tok[SPH_PATH_MAX], reply[4096];
    ck_assert_int_eq(sph_config_write(tok, "%s\n", TOKEN), 0);
    ck_assert_int_eq(chmod(tok, 0600), 0);
    char extra[128];
    snprintf(extra, sizeof(extra), "  token_file: %s\n", tok);
    struct px x;
    px_start(&x, "0.0.0.0", extra);

    int st = drain_req(&x, "X-Splicer-Admin: 1\r\n", reply, sizeof(reply));
    ck_assert_msg(st == 401 && strstr(reply, "\r\nWWW-Authenticate: Bearer") != NULL,
                  "no token: %s", reply);
    st = drain_req(&x, "Authorization: Bearer wrong-token-0123456789\r\n", reply, sizeof(reply));
    ck_assert_msg(st == 401 && strstr(reply, "error=\"invalid_token\"") != NULL, "wrong: %s",
                  reply);
    ck_assert_int_eq(drained(&x), 0);
    st = drain_req(&x, "Authorization: Bearer " TOKEN "\r\n", reply, sizeof(reply));
    ck_assert_msg(st == 200, "token: %s", reply);
    ck_assert_int_eq(drained(&x), 1);

    /* a new token, then SIGHUP: the old one stops working */
    ck_assert_int_eq(sph_config_rewrite(tok, "%s\n", TOKEN2), 0);
    ck_assert_int_eq(chmod(tok, 0600), 0);
    ck_assert_int_eq(sph_proc_signal_wait_log(&x.proc, SIGHUP, "reloaded ", 5000), 0);
    sph_expect_metric(x.admin, "splicer_config_reloads_total{result=\"success\"}", 1);
    ck_assert_int_eq(drain_req(&x, "Authorization: Bearer " TOKEN "\r\n", reply, sizeof(reply)),
                     401);
    ck_assert_int_eq(drain_req(&x, "Authorization: Bearer " TOKEN2 "\r\n", reply, sizeof(reply)),
                     200);

    /* a token file others may read fails the reload, and the token in force stays */
    ck_assert_int_eq(sph_config_rewrite(tok, "%s\n", TOKEN), 0);
    ck_assert_int_eq(chmod(tok, 0644), 0);
    ck_assert_int_eq(sph_proc_signal_wait_log(&x.proc, SIGHUP, "reload failed", 5000), 0);
    ck_assert_int_eq(sph_proc_log_count(&x.proc, "may read or write it (mode 0644)"), 1);
    ck_assert_int_eq(drain_req(&x, "Authorization: Bearer " TOKEN "\r\n", reply, sizeof(reply)),
                     401);
    ck_assert_int_eq(drain_req(&x, "Authorization: Bearer " TOKEN2 "\r\n", reply, sizeof(reply)),
                     200);

    /* and `splicer -t` says where and why */
    struct sph_proc t;
    const char *const args[] = {"-t", "-c", x.conf, NULL};
    ck_assert_int_eq(sph_run(&t, args, 5000), 1);
    char *err = sph_proc_stderr(&t);
    char want[256];
    snprintf(want, sizeof(want), "%s:5:15: cannot use '%s' for 'token_file' in admin: other users",
             x.conf, tok);
    ck_assert_msg(strstr(err, want) != NULL, "splicer -t said:\n%s\nwanted: %s", err, want);
    free(err);
}
END_TEST

/* ---- (b) no state change from a web page --------------------------------------------------- */

START_TEST(cross_site_form_cannot_drain)
{
    struct px x;
    char reply[4096];
    px_start(&x, "127.0.0.1", "");

    /* what a form on any web site can make the operator's browser send */
    static const char *const forms[] = {
        "Origin: http://evil.example\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        "Content-Length: 3\r\n\r\na=b",
        "Origin: null\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\nx",
        "Content-Type: multipart/form-data; boundary=z\r\nContent-Length: 5\r\n\r\n--z--",
        "Sec-Fetch-Site: cross-site\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n",
    };
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        int st = drain_req(&x, forms[i], reply, sizeof(reply));
        ck_assert_msg(st == 403, "form %zu: %d\n%s", i, st, reply);
    }
    /* nor a link or an image: GET never changes state */
    char path[128];
    snprintf(path, sizeof(path), "/upstreams/pool/servers/127.0.0.1:%d/drain", x.b->port);
    ck_assert_int_eq(sph_http(x.admin, "GET", path, reply, sizeof(reply)), 405);
    ck_assert_int_eq(drained(&x), 0);

    /* a script on the host: the custom header (as the harness and the README's curl send) */
    ck_assert_int_eq(drain_req(&x, "X-Splicer-Admin: 1\r\n", reply, sizeof(reply)), 200);
    ck_assert_int_eq(drained(&x), 1);
}
END_TEST

/* ---- (c) slow clients ---------------------------------------------------------------------- */

#define TRICKLERS 64

/* True once the peer closed fd (EOF or reset); never blocks. */
static bool peer_closed(int fd)
{
    char buf[256];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 0) != 1)
        return false;
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    return n == 0 || (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* 64 connections send a request a byte a second: for 8 s, /healthz still answers 200 within
 * 1 s every time, and each trickler is cut within the 5 s request deadline (plus slack). */
START_TEST(healthz_through_trickling_clients)
{
    static const char req[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    struct px x;
    px_start(&x, "127.0.0.1", "");

    int fd[TRICKLERS];
    int64_t opened[TRICKLERS], cut[TRICKLERS];
    for (int i = 0; i < TRICKLERS; i++) {
        fd[i] = sph_connect(AF_INET, x.admin, 2000);
        ck_assert_msg(fd[i] >= 0, "trickler %d: %s", i, strerror(-fd[i]));
        opened[i] = sph_now_ms();
        cut[i] = -1;
    }
    int64_t t0 = sph_now_ms(), next_byte = t0;
    size_t sent = 0;
    int probes = 0;
    while (sph_now_ms() - t0 < 8000) {
        if (sph_now_ms() >= next_byte && sent < sizeof(req) - 1) {
            for (int i = 0; i < TRICKLERS; i++) {
                if (cut[i] < 0)
                    send(fd[i], &req[sent], 1, MSG_NOSIGNAL);
            }
            sent++;
            next_byte += 1000;
        }
        for (int i = 0; i < TRICKLERS; i++) {
            if (cut[i] < 0 && peer_closed(fd[i]))
                cut[i] = sph_now_ms();
        }
        int64_t p0 = sph_now_ms();
        char body[64];
        int st = sph_http(x.admin, "GET", "/healthz", body, sizeof(body));
        int64_t took = sph_now_ms() - p0;
        ck_assert_msg(st == 200 && took < 1000, "probe %d at %lld ms: status %d after %lld ms",
                      probes, (long long)(p0 - t0), st, (long long)took);
        probes++;
        sph_sleep_ms(100);
    }
    for (int i = 0; i < TRICKLERS; i++) {
        ck_assert_msg(cut[i] >= 0, "trickler %d still open after 8 s", i);
        ck_assert_msg(cut[i] - opened[i] <= 5000 + 1500, "trickler %d cut after %lld ms", i,
                      (long long)(cut[i] - opened[i]));
        close(fd[i]);
    }
    ck_assert_int_ge(probes, 20);
}
END_TEST

static Suite *admin_suite(void)
{
    Suite *s = suite_create("admin");
    TCase *tc = tcase_create("admin");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, no_token_beyond_loopback);
    tcase_add_test(tc, token_file_and_reload);
    tcase_add_test(tc, cross_site_form_cannot_drain);
    tcase_add_test(tc, healthz_through_trickling_clients);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(admin_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
