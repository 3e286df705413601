/* test_shed.c: the pacing of on_server_down: shutdown (shed.h): reset times spread evenly over
 * the window, first at once and last before its end, without overflow; the batch tick and the
 * wait for the next batch. */
#include "common.h"
#include "shed.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>

START_TEST(due_spreads_evenly)
{
    /* 4 sessions over 1000 ms from 500: 500, 750, 1000, 1250. */
    ck_assert_uint_eq(sp_shed_due(500, 1000, 0, 4), 500);
    ck_assert_uint_eq(sp_shed_due(500, 1000, 1, 4), 750);
    ck_assert_uint_eq(sp_shed_due(500, 1000, 2, 4), 1000);
    ck_assert_uint_eq(sp_shed_due(500, 1000, 3, 4), 1250);
    /* One session goes at once; no session, nothing to spread. */
    ck_assert_uint_eq(sp_shed_due(7, 5000, 0, 1), 7);
    ck_assert_uint_eq(sp_shed_due(7, 5000, 0, 0), 7);
    /* spread 0: all at once. */
    for (size_t i = 0; i < 10; i++)
        ck_assert_uint_eq(sp_shed_due(42, 0, i, 10), 42);
}
END_TEST

/* Table: for n sessions over a spread, times never go backwards, never step by more than
 * ceil(spread / n), start at `start` and end within the window. */
static const struct {
    uint64_t spread;
    size_t n;
} table[] = {
    {5000, 1},     {5000, 2},  {5000, 3},    {5000, 7},         {5000, 1000},
    {5000, 10007}, {1, 1000},  {999, 1000},  {UINT32_MAX, 3},   {(uint64_t)1 << 40, 100000},
    {3, 2},        {10, 1000}, {60000, 333}, {86400000, 65536},
};

START_TEST(due_table)
{
    uint64_t spread = table[_i].spread, start = 1000;
    size_t n = table[_i].n;
    uint64_t step = (spread + n - 1) / n, prev = start;
    ck_assert_uint_eq(sp_shed_due(start, spread, 0, n), start);
    for (size_t i = 1; i < n; i++) {
        uint64_t t = sp_shed_due(start, spread, i, n);
        ck_assert_uint_ge(t, prev);
        ck_assert_uint_le(t - prev, step);
        ck_assert_uint_lt(t, start + spread);
        /* exact: floor(spread * i / n), checked in 128 bits */
        unsigned __int128 want = (unsigned __int128)spread * i / n;
        ck_assert_uint_eq(t - start, (uint64_t)want);
        prev = t;
    }
    /* The last is at least half the window after the first once there are two or more. */
    if (n >= 2)
        ck_assert_uint_ge(sp_shed_due(start, spread, n - 1, n) - start, spread / 2);
}
END_TEST

START_TEST(tick_and_delay)
{
    ck_assert_uint_eq(sp_shed_tick_ms(0), 10);
    ck_assert_uint_eq(sp_shed_tick_ms(640), 10);
    ck_assert_uint_eq(sp_shed_tick_ms(5000), 78);
    ck_assert_uint_eq(sp_shed_tick_ms(64000), 1000);
    ck_assert_uint_eq(sp_shed_tick_ms(3600000), 1000);
    /* until the next reset, but never sooner than a tick */
    ck_assert_uint_eq(sp_shed_delay(100, 500, 78), 400);
    ck_assert_uint_eq(sp_shed_delay(100, 120, 78), 78);
    ck_assert_uint_eq(sp_shed_delay(100, 50, 78), 78);
    ck_assert_uint_eq(sp_shed_delay(100, 50, 0), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("shed");
    TCase *tc = tcase_create("pacing");
    tcase_add_test(tc, due_spreads_evenly);
    tcase_add_loop_test(tc, due_table, 0, (int)SP_ARRAY_LEN(table));
    tcase_add_test(tc, tick_and_delay);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
