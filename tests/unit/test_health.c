/* test_health.c: the rise/fall counter that decides a server's active health state. */
#include "health.h"

#include <check.h>
#include <stdlib.h>

/* One scenario: a string of results ('+' ok, '-' failed) and the state after each. */
struct scenario {
    const char *name;
    unsigned rise, fall;
    const char *results;
    const char *states; /* 'U' up, 'D' down after each result */
};

static const struct scenario scenarios[] = {
    {"first ok keeps up", 2, 3, "+", "U"},
    {"first failure is down at once", 2, 3, "-", "D"},
    {"fall 3 needs three in a row", 2, 3, "+--+---", "UUUUUUD"},
    {"rise 2 needs two in a row", 2, 3, "-+-++", "DDDDU"},
    {"fall 1 and rise 1 follow every result", 1, 1, "+-+-", "UDUD"},
    {"a success resets the failure streak", 2, 2, "+-+-+--", "UUUUUUD"},
    {"back up then down again", 2, 2, "-++--", "DDUUD"},
};

START_TEST(rise_fall_table)
{
    const struct scenario *sc = &scenarios[_i];
    struct sp_health_state st = {.up = true};
    for (size_t i = 0; sc->results[i] != '\0'; i++) {
        bool was = st.up;
        bool changed = sp_health_record(&st, sc->results[i] == '+', sc->rise, sc->fall);
        bool want_up = sc->states[i] == 'U';
        ck_assert_msg(st.up == want_up, "%s: after result %zu ('%c') want %s, got %s", sc->name, i,
                      sc->results[i], want_up ? "up" : "down", st.up ? "up" : "down");
        ck_assert_msg(changed == (was != st.up), "%s: change flag wrong at %zu", sc->name, i);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("health");
    TCase *tc = tcase_create("rise_fall");
    tcase_add_loop_test(tc, rise_fall_table, 0, (int)(sizeof(scenarios) / sizeof(scenarios[0])));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
