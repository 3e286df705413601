/* test_config_health.c: an upstream's health_check block, its `http:` check (path, host,
 * expect_status as a code, a range or a list), the defaults, the exclusion of send/expect, and
 * the exact "FILE:LINE:COL: message" of each mistake. */
#include "common.h"
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAD                                                                                       \
    "listeners:\n  web:\n    listen: 127.0.0.1:8080\n    upstream: pool\n"                         \
    "upstreams:\n  pool:\n    servers:\n      - address: 127.0.0.1:9001\n"                         \
    "    health_check:\n"

static struct sp_config *load(const char *text)
{
    struct sp_config *cfg = NULL;
    struct sp_config_error err;
    int rc = sp_config_load_string("mem", text, strlen(text), &cfg, &err);
    ck_assert_msg(rc == 0, "rc %d: %s", rc, err.text);
    return cfg;
}

START_TEST(http_all_keys)
{
    struct sp_config *cfg = load(HEAD "      interval: 1s\n"
                                      "      http:\n"
                                      "        path: /healthz?full=1\n"
                                      "        host: app.internal\n"
                                      "        expect_status: [200, 204-206]\n");
    const struct sp_health_conf *hc = &cfg->upstreams[0].health;
    ck_assert(hc->enabled);
    ck_assert(hc->http.enabled);
    ck_assert_str_eq(hc->http.path, "/healthz?full=1");
    ck_assert_str_eq(hc->http.host, "app.internal");
    ck_assert_uint_eq(hc->http.nexpect, 2);
    ck_assert_uint_eq(hc->http.expect[0].lo, 200);
    ck_assert_uint_eq(hc->http.expect[0].hi, 200);
    ck_assert_uint_eq(hc->http.expect[1].lo, 204);
    ck_assert_uint_eq(hc->http.expect[1].hi, 206);
    ck_assert_ptr_null(hc->send);
    ck_assert_ptr_null(hc->expect);
    sp_config_free(cfg);
}
END_TEST

START_TEST(http_defaults)
{
    const char *texts[] = {HEAD "      http: {}\n", HEAD "      http:\n",
                           HEAD "      http:\n        host: a\n"};
    for (size_t i = 0; i < SP_ARRAY_LEN(texts); i++) {
        struct sp_config *cfg = load(texts[i]);
        const struct sp_health_http_conf *h = &cfg->upstreams[0].health.http;
        ck_assert(h->enabled);
        ck_assert_str_eq(h->path, "/");
        ck_assert_uint_eq(h->nexpect, 1);
        ck_assert_uint_eq(h->expect[0].lo, 200);
        ck_assert_uint_eq(h->expect[0].hi, 399);
        if (i < 2)
            ck_assert_ptr_null(h->host);
        sp_config_free(cfg);
    }
    struct sp_config *cfg = load(HEAD "      send: \"PING\"\n      expect: PONG\n");
    ck_assert(!cfg->upstreams[0].health.http.enabled);
    sp_config_free(cfg);
}
END_TEST

START_TEST(http_status_forms)
{
    struct sp_config *cfg = load(HEAD "      http: {expect_status: 503}\n");
    const struct sp_health_http_conf *h = &cfg->upstreams[0].health.http;
    ck_assert_uint_eq(h->nexpect, 1);
    ck_assert_uint_eq(h->expect[0].lo, 503);
    ck_assert_uint_eq(h->expect[0].hi, 503);
    sp_config_free(cfg);
    cfg = load(HEAD "      http: {expect_status: \"100-599\"}\n");
    h = &cfg->upstreams[0].health.http;
    ck_assert_uint_eq(h->expect[0].lo, 100);
    ck_assert_uint_eq(h->expect[0].hi, 599);
    sp_config_free(cfg);
}
END_TEST

#define IN " in 'http' in health_check of upstream 'pool'"
#define BAD_STATUS(col, v)                                                                         \
    "mem:11:" col ": invalid status '" v "' for 'expect_status'" IN " (expected a code or a "      \
    "range of codes within 100..599, as in 200 or 200-399, or a list of them)"

/* health_check lines from line 10 on, and the message they must give. */
static const struct {
    const char *lines;
    const char *msg;
} bad[] = {
    {"      http:\n        expect_status: 99\n", BAD_STATUS("24", "99")},
    {"      http:\n        expect_status: 600\n", BAD_STATUS("24", "600")},
    {"      http:\n        expect_status: 399-200\n", BAD_STATUS("24", "399-200")},
    {"      http:\n        expect_status: 2xx\n", BAD_STATUS("24", "2xx")},
    {"      http:\n        expect_status: 200-\n", BAD_STATUS("24", "200-")},
    {"      http:\n        expect_status: -200\n", BAD_STATUS("24", "-200")},
    {"      http:\n        expect_status: [200, abc]\n", BAD_STATUS("30", "abc")},
    {"      http:\n        expect_status: []\n",
     "mem:11:24: 'expect_status'" IN " needs 1 to 16 codes or ranges, found 0"},
    {"      http:\n        path: healthz\n",
     "mem:11:15: invalid path 'healthz' for 'path'" IN " (expected an absolute path such as "
     "/healthz, with an optional ?query, no spaces or control characters, at most 1024 bytes)"},
    {"      http:\n        path: \"/a b\"\n",
     "mem:11:15: invalid path '/a b' for 'path'" IN " (expected an absolute path such as "
     "/healthz, with an optional ?query, no spaces or control characters, at most 1024 bytes)"},
    {"      http:\n        path: \"/a\\r\\nX: 1\"\n",
     "mem:11:15: invalid path '/a\r\nX: 1' for 'path'" IN " (expected an absolute path such as "
     "/healthz, with an optional ?query, no spaces or control characters, at most 1024 bytes)"},
    {"      http:\n        host: \"a b\"\n",
     "mem:11:15: invalid host 'a b' for 'host'" IN " (expected a host name or address, with an "
     "optional :port, such as app.internal or 10.0.0.5:8080)"},
    {"      http:\n        host: a/b\n",
     "mem:11:15: invalid host 'a/b' for 'host'" IN " (expected a host name or address, with an "
     "optional :port, such as app.internal or 10.0.0.5:8080)"},
    {"      http:\n        paht: /\n", "mem:11:9: unknown key 'paht'" IN " (did you mean 'path'?)"},
    {"      http: /healthz\n",
     "mem:10:13: expected a mapping for 'http' in health_check of upstream 'pool', found a "
     "scalar"},
    {"      send: PING\n      http: {}\n",
     "mem:11:7: 'http' and 'send' cannot both be set in health_check of upstream 'pool' (an "
     "HTTP check sends its own request and judges the reply by its status code)"},
    {"      http: {}\n      interval: 1s\n      expect: PONG\n",
     "mem:12:7: 'http' and 'expect' cannot both be set in health_check of upstream 'pool' (an "
     "HTTP check sends its own request and judges the reply by its status code)"},
};

START_TEST(bad_value)
{
    char text[768];
    struct sp_config *cfg = NULL;
    struct sp_config_error err;
    snprintf(text, sizeof(text), HEAD "%s", bad[_i].lines);
    int rc = sp_config_load_string("mem", text, strlen(text), &cfg, &err);
    ck_assert_int_eq(rc, -EINVAL);
    ck_assert_ptr_null(cfg);
    ck_assert_str_eq(err.text, bad[_i].msg);
}
END_TEST

START_TEST(all_down)
{
    struct sp_config *cfg = load(HEAD "      interval: 1s\n");
    ck_assert_int_eq(cfg->upstreams[0].all_down, SP_ALL_DOWN_REJECT);
    sp_config_free(cfg);
    cfg = load(HEAD "      interval: 1s\n    all_down: fail_open\n");
    ck_assert_int_eq(cfg->upstreams[0].all_down, SP_ALL_DOWN_FAIL_OPEN);
    ck_assert_str_eq(sp_all_down_name(cfg->upstreams[0].all_down), "fail_open");
    sp_config_free(cfg);
    cfg = load("listeners:\n  web:\n    listen: 127.0.0.1:8080\n    upstream: pool\n"
               "upstreams:\n  pool:\n    all_down: reject\n"
               "    servers:\n      - address: 127.0.0.1:9001\n");
    ck_assert_int_eq(cfg->upstreams[0].all_down, SP_ALL_DOWN_REJECT);
    sp_config_free(cfg);
}
END_TEST

static const struct {
    const char *text;
    const char *msg;
} bad_all_down[] = {
    {"listeners:\n  web:\n    listen: 127.0.0.1:8080\n    upstream: pool\n"
     "upstreams:\n  pool:\n    all_down: fail_open\n"
     "    servers:\n      - address: 127.0.0.1:9001\n",
     "mem:7:15: all_down: fail_open in upstream 'pool' needs a health_check block (without "
     "active checks no server is ever marked down)"},
    {HEAD "      interval: 1s\n    all_down: open\n",
     "mem:11:15: invalid value 'open' for 'all_down' in upstream 'pool' (expected one of: "
     "reject, fail_open)"},
    {HEAD "      interval: 1s\n    all_down:\n",
     "mem:11:14: missing value for 'all_down' in upstream 'pool'"},
};

START_TEST(all_down_bad)
{
    struct sp_config *cfg = NULL;
    struct sp_config_error err;
    const char *t = bad_all_down[_i].text;
    ck_assert_int_eq(sp_config_load_string("mem", t, strlen(t), &cfg, &err), -EINVAL);
    ck_assert_str_eq(err.text, bad_all_down[_i].msg);
}
END_TEST

#define PLAIN                                                                                      \
    "listeners:\n  web:\n    listen: 127.0.0.1:8080\n    upstream: pool\n"                         \
    "upstreams:\n  pool:\n    servers:\n      - address: 127.0.0.1:9001\n"

/* on_server_down and shutdown_spread need no health_check: a reload removing a server sheds. */
START_TEST(on_server_down)
{
    struct sp_config *cfg = load(PLAIN);
    ck_assert_int_eq(cfg->upstreams[0].on_server_down, SP_ON_DOWN_KEEP);
    ck_assert_uint_eq(cfg->upstreams[0].shutdown_spread_ms, 5000);
    sp_config_free(cfg);
    cfg = load(PLAIN "    on_server_down: shutdown\n    shutdown_spread: 250ms\n");
    ck_assert_int_eq(cfg->upstreams[0].on_server_down, SP_ON_DOWN_SHUTDOWN);
    ck_assert_str_eq(sp_on_server_down_name(cfg->upstreams[0].on_server_down), "shutdown");
    ck_assert_uint_eq(cfg->upstreams[0].shutdown_spread_ms, 250);
    sp_config_free(cfg);
    cfg = load(PLAIN "    on_server_down: keep\n    shutdown_spread: 0s\n");
    ck_assert_int_eq(cfg->upstreams[0].on_server_down, SP_ON_DOWN_KEEP);
    ck_assert_str_eq(sp_on_server_down_name(cfg->upstreams[0].on_server_down), "keep");
    ck_assert_uint_eq(cfg->upstreams[0].shutdown_spread_ms, 0);
    sp_config_free(cfg);
}
END_TEST

static const struct {
    const char *text;
    const char *msg;
} bad_on_down[] = {
    {PLAIN "    on_server_down: reset\n",
     "mem:9:21: invalid value 'reset' for 'on_server_down' in upstream 'pool' (expected one of: "
     "keep, shutdown)"},
    {PLAIN "    on_server_down:\n",
     "mem:9:20: missing value for 'on_server_down' in upstream 'pool'"},
    {PLAIN "    shutdown_spread: 5 seconds\n",
     "mem:9:22: invalid duration '5 seconds' for 'shutdown_spread' in upstream 'pool' (expected a "
     "number and a unit: ms, s, m or h, as in 2s)"},
    {PLAIN "    shutdown_spread: -1s\n",
     "mem:9:22: invalid duration '-1s' for 'shutdown_spread' in upstream 'pool' (expected a "
     "number and a unit: ms, s, m or h, as in 2s)"},
};

START_TEST(on_server_down_bad)
{
    struct sp_config *cfg = NULL;
    struct sp_config_error err;
    const char *t = bad_on_down[_i].text;
    ck_assert_int_eq(sp_config_load_string("mem", t, strlen(t), &cfg, &err), -EINVAL);
    ck_assert_str_eq(err.text, bad_on_down[_i].msg);
}
END_TEST

START_TEST(flap_keys)
{
    struct sp_config *cfg = load(HEAD "      interval: 1s\n");
    const struct sp_health_conf *hc = &cfg->upstreams[0].health;
    ck_assert_uint_eq(hc->flap_max, 0);
    ck_assert_uint_eq(hc->flap_window_ms, 60000);
    ck_assert_uint_eq(hc->flap_hold_ms, 30000);
    sp_config_free(cfg);
    cfg = load(HEAD "      flap_window: 2m\n      flap_max: 4\n      flap_hold: 45s\n");
    hc = &cfg->upstreams[0].health;
    ck_assert_uint_eq(hc->flap_max, 4);
    ck_assert_uint_eq(hc->flap_window_ms, 120000);
    ck_assert_uint_eq(hc->flap_hold_ms, 45000);
    sp_config_free(cfg);
}
END_TEST

static const struct {
    const char *lines;
    const char *msg;
} bad_flap[] = {
    {"      flap_window: 10s\n",
     "mem:10:7: 'flap_window' in health_check of upstream 'pool' has no effect without flap_max "
     "(set flap_max to turn flap damping on)"},
    {"      interval: 1s\n      flap_hold: 10s\n",
     "mem:11:7: 'flap_hold' in health_check of upstream 'pool' has no effect without flap_max "
     "(set flap_max to turn flap damping on)"},
    {"      flap_max: 0\n", "mem:10:17: value '0' for 'flap_max' in health_check of upstream "
                            "'pool' is out of range (1..100)"},
    {"      flap_max: 101\n", "mem:10:17: value '101' for 'flap_max' in health_check of upstream "
                              "'pool' is out of range (1..100)"},
    {"      flap_max: 3\n      flap_hold: 0s\n",
     "mem:11:18: 'flap_hold' in health_check of upstream 'pool' must be greater than 0"},
};

START_TEST(flap_bad)
{
    char text[768];
    struct sp_config *cfg = NULL;
    struct sp_config_error err;
    snprintf(text, sizeof(text), HEAD "%s", bad_flap[_i].lines);
    ck_assert_int_eq(sp_config_load_string("mem", text, strlen(text), &cfg, &err), -EINVAL);
    ck_assert_str_eq(err.text, bad_flap[_i].msg);
}
END_TEST

static Suite *config_health_suite(void)
{
    Suite *s = suite_create("config_health");
    TCase *tc = tcase_create("health_check");
    tcase_add_test(tc, http_all_keys);
    tcase_add_test(tc, http_defaults);
    tcase_add_test(tc, http_status_forms);
    tcase_add_loop_test(tc, bad_value, 0, (int)SP_ARRAY_LEN(bad));
    tcase_add_test(tc, all_down);
    tcase_add_test(tc, flap_keys);
    tcase_add_loop_test(tc, flap_bad, 0, (int)SP_ARRAY_LEN(bad_flap));
    tcase_add_loop_test(tc, all_down_bad, 0, (int)SP_ARRAY_LEN(bad_all_down));
    tcase_add_test(tc, on_server_down);
    tcase_add_loop_test(tc, on_server_down_bad, 0, (int)SP_ARRAY_LEN(bad_on_down));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_health_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
