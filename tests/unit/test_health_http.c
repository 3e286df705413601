/* test_health_http.c: the HTTP health check's wire format: the request, the strict status-line
 * parse fed whole and byte by byte, the expect_status match, and the texts of the results. */
#include "common.h"
#include "health_http.h"
#include "upstream.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

START_TEST(request)
{
    struct sp_health_http_conf hc = {.enabled = true, .path = "/healthz?x=1"};
    char buf[SP_HEALTH_HTTP_REQ_MAX];
    int n = sp_health_http_request(&hc, "127.0.0.1:9001", buf, sizeof(buf));
    ck_assert_int_gt(n, 0);
    ck_assert_uint_eq(strlen(buf), (size_t)n);
    ck_assert_msg(strncmp(buf, "GET /healthz?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n", 48) == 0,
                  "%s", buf);
    ck_assert_ptr_nonnull(strstr(buf, "\r\nConnection: close\r\n"));
    ck_assert_str_eq(buf + n - 4, "\r\n\r\n");
    hc.host = "app.internal";
    n = sp_health_http_request(&hc, "127.0.0.1:9001", buf, sizeof(buf));
    ck_assert_ptr_nonnull(strstr(buf, "\r\nHost: app.internal\r\n"));
    ck_assert_int_eq(sp_health_http_request(&hc, "x", buf, 20), -ENOSPC);
}
END_TEST

/* A reply start, and what the parse of the whole of it gives. */
static const struct {
    const char *text;
    int rc;
    unsigned status;
} lines[] = {
    {"HTTP/1.1 200 OK\r\n", 1, 200},
    {"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", 1, 503},
    {"HTTP/1.1 204 \r\n", 1, 204},
    {"HTTP/1.1 301 Moved\n", 1, 301},
    {"HTTP/1.1 200 OK\tfine\r\n", 1, 200},
    {"HTTP/1.1 200 OK", 0, 0},
    {"HTTP/1.1 200 OK\r", 0, 0},
    {"HTTP/1.", 0, 0},
    {"", 0, 0},
    {"garbage\r\n", -1, 0},
    {"http/1.1 200 OK\r\n", -1, 0},
    {"HTTP/2 200\r\n", -1, 0},
    {"HTTP/1.1 200\r\n", -1, 0},
    {"HTTP/1.1  200 OK\r\n", -1, 0},
    {"HTTP/1.1 20 OK\r\n", -1, 0},
    {"HTTP/1.1 2000 OK\r\n", -1, 0},
    {"HTTP/1.1 099 Low\r\n", -1, 0},
    {"HTTP/1.1 200 O\rK\r\n", -1, 0},
    {"HTTP/1.1 200 O\x01K\r\n", -1, 0},
    {"HTTP/1.1 200 O\x7fK\r\n", -1, 0},
    {"SSH-2.0-OpenSSH_9.2\r\n", -1, 0},
};

START_TEST(status_line)
{
    unsigned status = 0;
    const char *t = lines[_i].text;
    int rc = sp_health_http_status(t, strlen(t), &status);
    ck_assert_msg(rc == lines[_i].rc, "'%s': %d, want %d", t, rc, lines[_i].rc);
    if (rc == 1)
        ck_assert_uint_eq(status, lines[_i].status);
    /* Fed a byte at a time, as a slow server sends it, the verdict is the same, and no
     * prefix of a good line is ever refused. */
    int last = 0;
    for (size_t n = 1; n <= strlen(t) && last == 0; n++)
        last = sp_health_http_status(t, n, &status);
    ck_assert_int_eq(last, lines[_i].rc);
}
END_TEST

START_TEST(status_line_too_long)
{
    char buf[SP_HEALTH_HTTP_LINE_MAX + 16] = "HTTP/1.1 200 ";
    memset(buf + 13, 'x', sizeof(buf) - 13);
    unsigned status;
    ck_assert_int_eq(sp_health_http_status(buf, SP_HEALTH_HTTP_LINE_MAX - 1, &status), 0);
    ck_assert_int_eq(sp_health_http_status(buf, sizeof(buf), &status), -1);
}
END_TEST

START_TEST(expected)
{
    struct sp_health_http_conf hc = {.nexpect = 2, .expect = {{200, 299}, {302, 302}}};
    ck_assert(sp_health_http_expected(&hc, 200));
    ck_assert(sp_health_http_expected(&hc, 299));
    ck_assert(sp_health_http_expected(&hc, 302));
    ck_assert(!sp_health_http_expected(&hc, 301));
    ck_assert(!sp_health_http_expected(&hc, 503));
    ck_assert(!sp_health_http_expected(&hc, 199));
}
END_TEST

START_TEST(result_text)
{
    char buf[32];
    ck_assert_str_eq(sp_check_result_text(sp_check_http_status(503), buf, sizeof(buf)),
                     "status 503");
    ck_assert_str_eq(sp_check_result_text(sp_check_http_status(404), buf, sizeof(buf)),
                     "status 404");
    ck_assert_str_eq(sp_check_result_text(SP_CHECK_NOT_HTTP, buf, sizeof(buf)), "not HTTP");
    ck_assert_str_eq(sp_check_result_text(SP_CHECK_TIMEOUT, buf, sizeof(buf)), "timeout");
    ck_assert_str_eq(sp_check_result_text(SP_CHECK_OK, buf, sizeof(buf)), "ok");
    ck_assert_str_eq(sp_check_result_text(-ECONNREFUSED, buf, sizeof(buf)), "Connection refused");
    ck_assert_str_eq(sp_check_result_str(sp_check_http_status(503)), "unexpected status");
}
END_TEST

static Suite *health_http_suite(void)
{
    Suite *s = suite_create("health_http");
    TCase *tc = tcase_create("wire");
    tcase_add_test(tc, request);
    tcase_add_loop_test(tc, status_line, 0, (int)SP_ARRAY_LEN(lines));
    tcase_add_test(tc, status_line_too_long);
    tcase_add_test(tc, expected);
    tcase_add_test(tc, result_text);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(health_http_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
