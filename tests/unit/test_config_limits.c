/* test_config_limits.c: a listener's `limits:` block: values and defaults, the rate syntax (N/s,
 * N/m), every bound, and the exact "FILE:LINE:COL: message" of each mistake. */
#include "common.h"
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAD "listeners:\n  web:\n    listen: 127.0.0.1:8080\n    upstream: pool\n"
#define TAIL "upstreams:\n  pool:\n    servers:\n      - address: 127.0.0.1:9001\n"

static struct sp_config *load(const char *text)
{
    struct sp_config *cfg = NULL;
    struct sp_config_error err;
    int rc = sp_config_load_string("mem", text, strlen(text), &cfg, &err);
    ck_assert_msg(rc == 0, "rc %d: %s", rc, err.text);
    return cfg;
}

START_TEST(all_keys)
{
    struct sp_config *cfg = load(HEAD "    limits:\n"
                                      "      per_source_connections: 100\n"
                                      "      per_source_rate: 50/s\n"
                                      "      source_prefix_v4: 24\n"
                                      "      source_prefix_v6: 48\n"
                                      "      tracked_sources: 262144\n" TAIL);
    const struct sp_limits_conf *lc = &cfg->listeners[0].limits;
    ck_assert(lc->enabled);
    ck_assert_uint_eq(lc->per_source_connections, 100);
    ck_assert_uint_eq(lc->rate, 50);
    ck_assert_uint_eq(lc->rate_period_ms, 1000);
    ck_assert_uint_eq(lc->source_prefix_v4, 24);
    ck_assert_uint_eq(lc->source_prefix_v6, 48);
    ck_assert_uint_eq(lc->tracked_sources, 262144);
    ck_assert_int_eq(lc->mark.line, 6);
    ck_assert_int_eq(lc->mark.col, 7);
    sp_config_free(cfg);
}
END_TEST

START_TEST(defaults)
{
    struct sp_config *cfg = load(HEAD "    limits: {per_source_connections: 1}\n" TAIL);
    const struct sp_limits_conf *lc = &cfg->listeners[0].limits;
    ck_assert(lc->enabled);
    ck_assert_uint_eq(lc->per_source_connections, 1);
    ck_assert_uint_eq(lc->rate, 0);
    ck_assert_uint_eq(lc->source_prefix_v4, 32);
    ck_assert_uint_eq(lc->source_prefix_v6, 64);
    ck_assert_uint_eq(lc->tracked_sources, 65536);
    sp_config_free(cfg);

    cfg = load(HEAD TAIL);
    ck_assert(!cfg->listeners[0].limits.enabled);
    sp_config_free(cfg);
}
END_TEST

static const struct {
    const char *rate;
    unsigned n;
    uint64_t period_ms;
} rates[] = {
    {"1/s", 1, 1000},       {"50/s", 50, 1000},    {"1000000/s", 1000000, 1000},
    {"1/m", 1, 60000},      {"600/m", 600, 60000}, {"60000000/m", 60000000, 60000},
    {"\"25/s\"", 25, 1000},
};

START_TEST(rate_ok)
{
    char text[512];
    snprintf(text, sizeof(text), HEAD "    limits:\n      per_source_rate: %s\n" TAIL,
             rates[_i].rate);
    struct sp_config *cfg = load(text);
    ck_assert_uint_eq(cfg->listeners[0].limits.rate, rates[_i].n);
    ck_assert_uint_eq(cfg->listeners[0].limits.rate_period_ms, rates[_i].period_ms);
    ck_assert_uint_eq(cfg->listeners[0].limits.per_source_connections, 0);
    sp_config_free(cfg);
}
END_TEST

#define IN " in limits of listener 'web'"
#define BAD_RATE(v)                                                                                \
    "mem:6:24: invalid rate '" v "' for 'per_source_rate'" IN " (expected connections per "        \
    "second or per minute, as in 50/s or 600/m)"
#define RANGE_RATE(v)                                                                              \
    "mem:6:24: rate '" v "' for 'per_source_rate'" IN " is out of range (1/s..1000000/s, or "      \
    "1/m..60000000/m)"

/* A line 6 value of the limits block, and the message it must give. */
static const struct {
    const char *line;
    const char *msg;
} bad[] = {
    {"      per_source_rate: 50", BAD_RATE("50")},
    {"      per_source_rate: 50/h", BAD_RATE("50/h")},
    {"      per_source_rate: 50/sec", BAD_RATE("50/sec")},
    {"      per_source_rate: /s", BAD_RATE("/s")},
    {"      per_source_rate: x/s", BAD_RATE("x/s")},
    {"      per_source_rate: -1/s", BAD_RATE("-1/s")},
    {"      per_source_rate: 5.5/s", BAD_RATE("5.5/s")},
    {"      per_source_rate: 50/S", BAD_RATE("50/S")},
    {"      per_source_rate: 0/s", RANGE_RATE("0/s")},
    {"      per_source_rate: 1000001/s", RANGE_RATE("1000001/s")},
    {"      per_source_rate: 60000001/m", RANGE_RATE("60000001/m")},
    {"      per_source_connections: 0",
     "mem:6:31: value '0' for 'per_source_connections'" IN " is out of range (1..1000000)"},
    {"      per_source_connections: 1000001",
     "mem:6:31: value '1000001' for 'per_source_connections'" IN " is out of range (1..1000000)"},
    {"      per_source_connections: many",
     "mem:6:31: invalid integer 'many' for 'per_source_connections'" IN " (expected 1..1000000)"},
    {"      source_prefix_v4: 33",
     "mem:6:25: value '33' for 'source_prefix_v4'" IN " is out of range (0..32)"},
    {"      source_prefix_v6: 129",
     "mem:6:25: value '129' for 'source_prefix_v6'" IN " is out of range (0..128)"},
    {"      tracked_sources: 100000",
     "mem:6:24: 'tracked_sources'" IN " must be a power of two (such as 16384, 65536 or 262144)"},
    {"      tracked_sources: 512",
     "mem:6:24: value '512' for 'tracked_sources'" IN " is out of range (1024..4194304)"},
    {"      tracked_sources: 8388608",
     "mem:6:24: value '8388608' for 'tracked_sources'" IN " is out of range (1024..4194304)"},
    {"      per_source_conections: 5",
     "mem:6:7: unknown key 'per_source_conections'" IN " (did you mean "
     "'per_source_connections'?)"},
};

START_TEST(bad_value)
{
    char text[512];
    struct sp_config *cfg = NULL;
    struct sp_config_error err;
    /* a valid limit first, so that only the line under test can be wrong */
    snprintf(text, sizeof(text), HEAD "    limits:\n%s\n      %s: 10\n" TAIL, bad[_i].line,
             strstr(bad[_i].line, "per_source_connections") != NULL ? "source_prefix_v4"
                                                                    : "per_source_connections");
    int rc = sp_config_load_string("mem", text, strlen(text), &cfg, &err);
    ck_assert_int_eq(rc, -EINVAL);
    ck_assert_ptr_null(cfg);
    ck_assert_str_eq(err.text, bad[_i].msg);
}
END_TEST

static const struct {
    const char *block;
    const char *msg;
} bad_blocks[] = {
    {"    limits: {}\n", "mem:5:13: 'limits' in listener 'web' sets no limit: add "
                         "per_source_connections or per_source_rate, or remove the block"},
    {"    limits:\n      source_prefix_v4: 24\n",
     "mem:6:7: 'limits' in listener 'web' sets no limit: add per_source_connections or "
     "per_source_rate, or remove the block"},
    {"    limits: 100\n",
     "mem:5:13: expected a mapping for 'limits' in listener 'web', found a scalar"},
    {"    limits:\n", "mem:5:12: expected a mapping for 'limits' in listener 'web', found an "
                      "empty value"},
};

START_TEST(bad_block)
{
    char text[512];
    struct sp_config *cfg = NULL;
    struct sp_config_error err;
    snprintf(text, sizeof(text), HEAD "%s" TAIL, bad_blocks[_i].block);
    int rc = sp_config_load_string("mem", text, strlen(text), &cfg, &err);
    ck_assert_int_eq(rc, -EINVAL);
    ck_assert_str_eq(err.text, bad_blocks[_i].msg);
}
END_TEST

static Suite *config_limits_suite(void)
{
    Suite *s = suite_create("config_limits");
    TCase *tc = tcase_create("limits");
    tcase_add_test(tc, all_keys);
    tcase_add_test(tc, defaults);
    tcase_add_loop_test(tc, rate_ok, 0, (int)SP_ARRAY_LEN(rates));
    tcase_add_loop_test(tc, bad_value, 0, (int)SP_ARRAY_LEN(bad));
    tcase_add_loop_test(tc, bad_block, 0, (int)SP_ARRAY_LEN(bad_blocks));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_limits_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
