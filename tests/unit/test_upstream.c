/* test_upstream.c: server state shared by the workers and by successive runtimes: passive
 * checks (max_fails within fail_timeout, a hold ended by a success), the health flag,
 * slow_start's effective weight, atomic counters and states shared between upstreams. */
#include "log.h"
#include "upstream.h"

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define T0 1000000u /* a "now" far from 0, as a monotonic clock is */

static struct sp_server_conf sconf[4];
static char saddr[4][32];
static struct sp_upstream_conf uconf;
static struct sp_upstream up;

static struct sp_server *pool(unsigned max_fails, uint64_t fail_timeout, uint64_t slow_start,
                              unsigned weight)
{
    memset(&uconf, 0, sizeof(uconf));
    memset(sconf, 0, sizeof(sconf));
    for (size_t i = 0; i < 4; i++) {
        snprintf(saddr[i], sizeof(saddr[i]), "10.0.0.%zu:80", i + 1);
        sconf[i].address = saddr[i];
        sconf[i].weight = weight;
    }
    uconf.name = "pool";
    uconf.max_fails = max_fails;
    uconf.fail_timeout_ms = fail_timeout;
    uconf.slow_start_ms = slow_start;
    uconf.servers = sconf;
    uconf.nservers = 4;
    ck_assert_int_eq(sp_upstream_init(&up, &uconf), 0);
    return &up.servers[0];
}

static void teardown(void)
{
    sp_upstream_deinit(&up);
}

START_TEST(init_builds_servers)
{
    pool(3, 10000, 0, 5);
    ck_assert_uint_eq(up.nservers, 4);
    for (unsigned i = 0; i < 4; i++) {
        struct sp_server *s = &up.servers[i];
        ck_assert_ptr_eq(s->conf, &sconf[i]);
        ck_assert_ptr_eq(s->upstream, &up);
        ck_assert_uint_eq(s->index, i);
        ck_assert_str_eq(s->name, saddr[i]);
        ck_assert(atomic_load(&s->state->up));
        ck_assert(sp_server_usable(s, T0));
        ck_assert_uint_eq(atomic_load(&s->state->active), 0);
        ck_assert_uint_eq(sp_server_effective_weight(s, T0), 5);
    }
    sp_upstream_deinit(&up);
    ck_assert_ptr_null(up.servers);
    ck_assert_uint_eq(up.nservers, 0);
    sp_upstream_deinit(&up); /* twice is harmless */

    struct sp_upstream zero;
    memset(&zero, 0, sizeof(zero));
    sp_upstream_deinit(&zero);
}
END_TEST

START_TEST(now_ms_is_monotonic)
{
    uint64_t a = sp_upstream_now_ms();
    uint64_t b = sp_upstream_now_ms();
    ck_assert_uint_gt(a, 0);
    ck_assert_uint_ge(b, a);
}
END_TEST

/* Passive checks as a table: failures at given offsets from T0, then usable or not at `at`. */
struct passive_case {
    const char *what;
    unsigned max_fails;
    uint64_t fail_timeout;
    int nfails;
    uint64_t fail_at[8];
    uint64_t at;
    bool usable;
};

static const struct passive_case passive_cases[] = {
    {"3 fails in window trip", 3, 10000, 3, {0, 100, 200}, 200, false},
    {"held until just before fail_timeout", 3, 10000, 3, {0, 100, 200}, 10199, false},
    {"usable again after fail_timeout", 3, 10000, 3, {0, 100, 200}, 10200, true},
    {"2 of 3 fails do not trip", 3, 10000, 2, {0, 100}, 200, true},
    {"fails spread beyond the window", 3, 10000, 3, {0, 6000, 12000}, 12000, true},
    {"new window trips on its own", 3, 10000, 5, {0, 6000, 12000, 13000, 14000}, 14000, false},
    {"max_fails 1 trips at once", 1, 5000, 1, {0}, 0, false},
    {"max_fails 0 never trips", 0, 10000, 8, {0, 1, 2, 3, 4, 5, 6, 7}, 7, true},
    {"fail_timeout boundary opens a new window", 2, 1000, 2, {0, 1000}, 1000, true},
};

START_TEST(passive_table)
{
    const struct passive_case *c = &passive_cases[_i];
    struct sp_server *s = pool(c->max_fails, c->fail_timeout, 0, 1);

    for (int k = 0; k < c->nfails; k++)
        sp_server_connect_failed(s, T0 + c->fail_at[k]);
    ck_assert_msg(sp_server_usable(s, T0 + c->at) == c->usable, "%s", c->what);
    ck_assert_uint_eq(atomic_load(&s->state->connect_failures), (uint64_t)c->nfails);
    /* Other servers are untouched. */
    ck_assert(sp_server_usable(&up.servers[1], T0 + c->at));
}
END_TEST

START_TEST(success_resets_the_count)
{
    struct sp_server *s = pool(3, 10000, 0, 1);

    sp_server_connect_failed(s, T0);
    sp_server_connect_failed(s, T0 + 1);
    sp_server_connect_ok(s, T0 + 2);
    sp_server_connect_failed(s, T0 + 3);
    sp_server_connect_failed(s, T0 + 4);
    ck_assert(sp_server_usable(s, T0 + 5));
    ck_assert_uint_eq(atomic_load(&s->state->connections), 1);
    ck_assert_uint_eq(atomic_load(&s->state->connect_failures), 4);
    sp_server_connect_failed(s, T0 + 5);
    ck_assert(!sp_server_usable(s, T0 + 5));
}
END_TEST

START_TEST(window_starts_at_first_failure_after_success)
{
    struct sp_server *s = pool(2, 10000, 0, 1);

    sp_server_connect_failed(s, T0);
    sp_server_connect_ok(s, T0 + 9000);
    /* A window from T0 would have ended at T0 + 10000 and split these two apart. */
    sp_server_connect_failed(s, T0 + 9500);
    sp_server_connect_failed(s, T0 + 10500);
    ck_assert(!sp_server_usable(s, T0 + 10500));
    ck_assert(sp_server_usable(s, T0 + 20500));
}
END_TEST

START_TEST(failures_during_hold_do_not_extend_it)
{
    struct sp_server *s = pool(2, 1000, 0, 1);

    sp_server_connect_failed(s, T0);
    sp_server_connect_failed(s, T0 + 10); /* held until T0 + 1010 */
    for (int k = 0; k < 10; k++)
        sp_server_connect_failed(s, T0 + 500 + (uint64_t)k);
    ck_assert(!sp_server_usable(s, T0 + 1009));
    ck_assert(sp_server_usable(s, T0 + 1010));
    ck_assert_uint_eq(atomic_load(&s->state->connect_failures), 12);
    /* After the hold the count starts over: one failure alone does not trip. */
    sp_server_connect_failed(s, T0 + 1100);
    ck_assert(sp_server_usable(s, T0 + 1100));
}
END_TEST

/* A held server that answers (nothing else was usable, or a connect started before the hold)
 * is back at once, and slow_start ramps from that moment. */
START_TEST(success_ends_a_hold)
{
    struct sp_server *s = pool(1, 10000, 10000, 100);

    ck_assert(!sp_server_held(s, T0));
    sp_server_connect_failed(s, T0);
    ck_assert(!sp_server_usable(s, T0 + 100));
    ck_assert(sp_server_held(s, T0 + 100));
    sp_server_connect_ok(s, T0 + 100);
    ck_assert(sp_server_usable(s, T0 + 100));
    ck_assert(!sp_server_held(s, T0 + 100));
    ck_assert_uint_eq(sp_server_effective_weight(s, T0 + 100), 10);
    ck_assert_uint_eq(sp_server_effective_weight(s, T0 + 10100), 100);
    /* Outside a hold a success changes nothing of the kind. */
    sp_server_connect_ok(s, T0 + 20000);
    ck_assert_uint_eq(sp_server_effective_weight(s, T0 + 20000), 100);
}
END_TEST

/* "Held" is the passive hold alone: a health-down or drained server is not held, it is out. */
START_TEST(held_is_only_the_passive_hold)
{
    struct sp_server *s = pool(1, 10000, 0, 1);

    sp_server_connect_failed(s, T0);
    ck_assert(sp_server_held(s, T0));
    atomic_store(&s->state->drained, true);
    ck_assert(!sp_server_held(s, T0));
    atomic_store(&s->state->drained, false);
    sp_server_set_up(s, false, T0);
    ck_assert(!sp_server_held(s, T0));
    sp_server_set_up(s, true, T0);
    ck_assert(!sp_server_held(s, T0 + 10000));
}
END_TEST

/* A second upstream built with some of the first one's states shares them: one write, seen
 * through both; the others are fresh. Either may be freed first (ASan checks the rest). */
START_TEST(states_shared_between_upstreams)
{
    pool(3, 10000, 0, 1);
    for (int order = 0; order < 2; order++) {
        struct sp_upstream a, b;
        const struct sp_server_conf *list[4];
        struct sp_server_state *states[4] = {NULL};
        for (size_t i = 0; i < 4; i++)
            list[i] = &sconf[i];
        ck_assert_int_eq(sp_upstream_init_servers(&a, &uconf, list, NULL, 4, 1), 0);
        states[0] = a.servers[0].state;
        states[2] = a.servers[2].state;
        ck_assert_int_eq(sp_upstream_init_servers(&b, &uconf, list, states, 4, 1), 0);
        ck_assert_ptr_eq(b.servers[0].state, a.servers[0].state);
        ck_assert_ptr_ne(b.servers[1].state, a.servers[1].state);
        sp_server_connect_ok(&a.servers[0], T0);
        atomic_store(&a.servers[2].state->drained, true);
        ck_assert_uint_eq(atomic_load(&b.servers[0].state->connections), 1);
        ck_assert(!sp_server_usable(&b.servers[2], T0));
        ck_assert(sp_server_usable(&b.servers[1], T0));
        sp_upstream_deinit(order == 0 ? &a : &b);
        struct sp_upstream *left = order == 0 ? &b : &a;
        sp_server_connect_ok(&left->servers[0], T0);
        ck_assert_uint_eq(atomic_load(&left->servers[0].state->connections), 2);
        sp_upstream_deinit(left);
    }
}
END_TEST

START_TEST(set_up_reports_changes)
{
    struct sp_server *s = pool(3, 10000, 0, 1);

    ck_assert(!sp_server_set_up(s, true, T0));
    ck_assert(sp_server_set_up(s, false, T0));
    ck_assert(!sp_server_usable(s, T0));
    ck_assert(!sp_server_set_up(s, false, T0 + 1));
    ck_assert(sp_server_set_up(s, true, T0 + 2));
    ck_assert(sp_server_usable(s, T0 + 2));
    ck_assert_uint_eq(atomic_load(&s->state->up_since_ms), T0 + 2);
}
END_TEST

/* on_server_down: keep marks nothing; shutdown records the event and the spread of the policy
 * given (a reload's new config for a removed server); coming back up clears the event. */
START_TEST(shed_begin_and_cancel)
{
    struct sp_server *s = pool(3, 10000, 0, 1);
    struct sp_upstream_conf policy = uconf;
    ck_assert(!sp_server_shed_begin(s, &uconf, T0));
    ck_assert_uint_eq(atomic_load(&s->state->shed_at_ms), 0);
    policy.on_server_down = SP_ON_DOWN_SHUTDOWN;
    policy.shutdown_spread_ms = 2500;
    ck_assert(sp_server_shed_begin(s, &policy, T0));
    ck_assert_uint_eq(atomic_load(&s->state->shed_at_ms), T0);
    ck_assert_uint_eq(atomic_load(&s->state->shed_spread_ms), 2500);
    ck_assert_uint_eq(atomic_load(&up.servers[1].state->shed_at_ms), 0);
    sp_server_shed_cancel(s);
    ck_assert_uint_eq(atomic_load(&s->state->shed_at_ms), 0);
    /* 0 means "nothing to shed": an event at clock 0 is recorded as 1. */
    ck_assert(sp_server_shed_begin(s, &policy, 0));
    ck_assert_uint_eq(atomic_load(&s->state->shed_at_ms), 1);
    ck_assert_uint_eq(atomic_load(&s->state->sessions_shutdown), 0);
}
END_TEST

/* slow_start 10 s: weight * (10000 + 9 * elapsed) / 100000, at least 1. */
struct ramp_case {
    unsigned weight;
    uint64_t elapsed;
    unsigned expect;
};

static const struct ramp_case ramp_cases[] = {
    {10, 0, 1},      {10, 1000, 1},     {10, 2000, 2},     {10, 5000, 5},
    {10, 9999, 9},   {10, 10000, 10},   {10, 60000, 10},   {100, 0, 10},
    {100, 5000, 55}, {100, 10000, 100}, {1, 0, 1},         {1, 9999, 1},
    {1000, 0, 100},  {1000, 1, 100},    {1000, 5000, 550}, {1000, 10000, 1000},
};

START_TEST(slow_start_after_health_recovery)
{
    const struct ramp_case *c = &ramp_cases[_i];
    struct sp_server *s = pool(3, 10000, 10000, c->weight);

    ck_assert_uint_eq(sp_server_effective_weight(s, T0), c->weight); /* up since start */
    sp_server_set_up(s, false, T0);
    sp_server_set_up(s, true, T0 + 500);
    ck_assert_uint_eq(sp_server_effective_weight(s, T0 + 500 + c->elapsed), c->expect);
}
END_TEST

START_TEST(slow_start_after_passive_hold)
{
    struct sp_server *s = pool(1, 2000, 10000, 100);

    sp_server_connect_failed(s, T0);
    ck_assert(!sp_server_usable(s, T0 + 1999));
    ck_assert(sp_server_usable(s, T0 + 2000));
    ck_assert_uint_eq(sp_server_effective_weight(s, T0 + 2000), 10);
    ck_assert_uint_eq(sp_server_effective_weight(s, T0 + 7000), 55);
    ck_assert_uint_eq(sp_server_effective_weight(s, T0 + 12000), 100);
    /* A later health recovery restarts the ramp from its own time. */
    sp_server_set_up(s, false, T0 + 20000);
    sp_server_set_up(s, true, T0 + 30000);
    ck_assert_uint_eq(sp_server_effective_weight(s, T0 + 30000), 10);
    ck_assert_uint_eq(sp_server_effective_weight(s, T0 + 40000), 100);
}
END_TEST

START_TEST(slow_start_off_is_full_weight)
{
    struct sp_server *s = pool(1, 2000, 0, 7);

    sp_server_set_up(s, false, T0);
    sp_server_set_up(s, true, T0 + 1);
    ck_assert_uint_eq(sp_server_effective_weight(s, T0 + 1), 7);
    sp_server_connect_failed(s, T0 + 2);
    ck_assert_uint_eq(sp_server_effective_weight(s, T0 + 2002), 7);
}
END_TEST

/* Several workers failing and succeeding on one server at once: counters stay exact, and the
 * passive state stays sane (no UB; ASan/UBSan and TSan builds check the rest). */
#define THREADS    4
#define PER_THREAD 50000

static pthread_barrier_t start_line;

static void *hammer(void *arg)
{
    struct sp_server *s = arg;

    /* All at once, so the threads really contend for the same fields. */
    pthread_barrier_wait(&start_line);
    for (int k = 0; k < PER_THREAD; k++) {
        uint64_t now = T0 + (uint64_t)k;
        if (k % 3 == 0)
            sp_server_connect_ok(s, now);
        else
            sp_server_connect_failed(s, now);
        (void)sp_server_usable(s, now);
        (void)sp_server_effective_weight(s, now);
    }
    return NULL;
}

START_TEST(counters_under_threads)
{
    struct sp_server *s = pool(5, 100, 1000, 10);
    pthread_t th[THREADS];

    ck_assert_int_eq(pthread_barrier_init(&start_line, NULL, THREADS), 0);
    for (int t = 0; t < THREADS; t++)
        ck_assert_int_eq(pthread_create(&th[t], NULL, hammer, s), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    pthread_barrier_destroy(&start_line);
    uint64_t oks = THREADS * ((PER_THREAD + 2) / 3);
    ck_assert_uint_eq(atomic_load(&s->state->connections), oks);
    ck_assert_uint_eq(atomic_load(&s->state->connect_failures),
                      THREADS * (uint64_t)PER_THREAD - oks);
    ck_assert_uint_lt(atomic_load(&s->state->fails), 5);
    ck_assert(sp_server_usable(s, T0 + PER_THREAD + 100));
}
END_TEST

static Suite *upstream_suite(void)
{
    Suite *s = suite_create("upstream");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, init_builds_servers);
    tcase_add_test(tc, now_ms_is_monotonic);
    tcase_add_loop_test(tc, passive_table, 0, sizeof(passive_cases) / sizeof(passive_cases[0]));
    tcase_add_test(tc, success_resets_the_count);
    tcase_add_test(tc, window_starts_at_first_failure_after_success);
    tcase_add_test(tc, failures_during_hold_do_not_extend_it);
    tcase_add_test(tc, success_ends_a_hold);
    tcase_add_test(tc, held_is_only_the_passive_hold);
    tcase_add_test(tc, states_shared_between_upstreams);
    tcase_add_test(tc, set_up_reports_changes);
    tcase_add_test(tc, shed_begin_and_cancel);
    tcase_add_loop_test(tc, slow_start_after_health_recovery, 0,
                        sizeof(ramp_cases) / sizeof(ramp_cases[0]));
    tcase_add_test(tc, slow_start_after_passive_hold);
    tcase_add_test(tc, slow_start_off_is_full_weight);
    tcase_add_test(tc, counters_under_threads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    sp_log_set_level(SP_LOG_ERROR); /* the holds tripped on purpose would warn */
    SRunner *sr = srunner_create(upstream_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
