/* test_balancer.c: the four algorithms and what they share: candidate filtering (usable,
 * untried, backups last), the tried set, smooth weighted round-robin sequences, least_conn
 * ties, consistent hashing's stability and movement, and random_two's bounds. */
#include "balancer.h"
#include "log.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#define T0   1000000u
#define MAXS 16

/* A hand-built upstream and one balancer over it; each test (forked) starts from scratch. */
struct pool {
    struct sp_upstream_conf uc;
    struct sp_server_conf sc[MAXS];
    char addr[MAXS][32];
    struct sp_upstream up;
    struct sp_balancer b;
    bool ready;
};

static struct pool P;

/* Servers named 10.0.0.<id>:80 with ids[i] (so sets can share servers by id); weights NULL
 * means 1 each; backups NULL means none. */
static void pool_init_ids(struct pool *p, enum sp_balance mode, size_t n, const unsigned *ids,
                          const unsigned *weights, const bool *backups)
{
    ck_assert_uint_le(n, MAXS);
    memset(p, 0, sizeof(*p));
    for (size_t i = 0; i < n; i++) {
        snprintf(p->addr[i], sizeof(p->addr[i]), "10.0.0.%u:80",
                 ids != NULL ? ids[i] : 1 + (unsigned)i);
        p->sc[i].address = p->addr[i];
        p->sc[i].weight = weights != NULL ? weights[i] : 1;
        p->sc[i].backup = backups != NULL && backups[i];
    }
    p->uc.name = "pool";
    p->uc.balance = mode;
    p->uc.retries = 2;
    p->uc.max_fails = 0;
    p->uc.servers = p->sc;
    p->uc.nservers = n;
    ck_assert_int_eq(sp_upstream_init(&p->up, &p->uc), 0);
    ck_assert_int_eq(sp_balancer_init(&p->b, &p->up, 42), 0);
    p->ready = true;
}

static void pool_init(enum sp_balance mode, size_t n, const unsigned *weights, const bool *backups)
{
    pool_init_ids(&P, mode, n, NULL, weights, backups);
}

static void pool_free(struct pool *p)
{
    if (!p->ready)
        return;
    sp_balancer_deinit(&p->b);
    sp_upstream_deinit(&p->up);
    p->ready = false;
}

/* q: the next generation of p for servers ids (NULL: 1..n): servers that p has too share
 * their state, as a runtime's successor does, and q's balancer carries p's over. */
static void pool_successor(struct pool *q, const struct pool *p, size_t n, const unsigned *ids)
{
    memset(q, 0, sizeof(*q));
    const struct sp_server_conf *list[MAXS];
    struct sp_server_state *states[MAXS];
    for (size_t i = 0; i < n; i++) {
        snprintf(q->addr[i], sizeof(q->addr[i]), "10.0.0.%u:80",
                 ids != NULL ? ids[i] : 1 + (unsigned)i);
        q->sc[i].address = q->addr[i];
        q->sc[i].weight = 1;
        list[i] = &q->sc[i];
        states[i] = NULL;
        for (size_t j = 0; j < p->up.nservers; j++) {
            if (strcmp(p->addr[j], q->addr[i]) == 0)
                states[i] = p->up.servers[j].state;
        }
    }
    q->uc = p->uc;
    q->uc.servers = q->sc;
    q->uc.nservers = n;
    ck_assert_int_eq(sp_upstream_init_servers(&q->up, &q->uc, list, states, n, 1), 0);
    ck_assert_int_eq(sp_balancer_init(&q->b, &q->up, 7), 0);
    sp_balancer_carry(&q->b, &p->b);
    q->ready = true;
}

static void teardown(void)
{
    pool_free(&P);
}

/* Index of the picked server, or -1 for NULL. */
static int pick_in(struct pool *p, const struct sp_tried *tried, const struct sockaddr *client)
{
    struct sp_server *s = sp_balancer_pick(&p->b, tried, client, T0);
    if (s == NULL)
        return -1;
    ck_assert_ptr_eq(s->upstream, &p->up);
    return (int)s->index;
}

static int pick(const struct sp_tried *tried)
{
    return pick_in(&P, tried, NULL);
}

static void set_up(unsigned i, bool up)
{
    sp_server_set_up(&P.up.servers[i], up, T0 - 1);
}

/* ---- the tried set ---- */

START_TEST(tried_set_basics)
{
    struct sp_tried t;

    sp_tried_init(&t);
    ck_assert(!sp_tried_has(&t, 0));
    sp_tried_add(&t, 3);
    ck_assert(sp_tried_has(&t, 3));
    ck_assert(!sp_tried_has(&t, 0));
}
END_TEST

START_TEST(tried_set_wraps)
{
    struct sp_tried t;

    sp_tried_init(&t);
    for (unsigned i = 0; i < SP_TRIED_MAX + 1; i++)
        sp_tried_add(&t, i);
    /* The oldest entry fell out; the last SP_TRIED_MAX are kept. */
    ck_assert(!sp_tried_has(&t, 0));
    for (unsigned i = 1; i < SP_TRIED_MAX + 1; i++)
        ck_assert_msg(sp_tried_has(&t, i), "lost %u", i);
    ck_assert_uint_eq(t.n, SP_TRIED_MAX + 1);
}
END_TEST

/* ---- what every mode shares (loop over the modes) ---- */

START_TEST(all_down_gives_null)
{
    pool_init((enum sp_balance)_i, 3, NULL, NULL);
    for (unsigned i = 0; i < 3; i++)
        set_up(i, false);
    ck_assert_int_eq(pick(NULL), -1);
    set_up(1, true);
    for (int k = 0; k < 10; k++)
        ck_assert_int_eq(pick(NULL), 1);
}
END_TEST

/* all_down: fail_open: with every server down by health checks, every server but a drained one
 * is picked as if up, primaries before backups; one server back ends it. reject (the default)
 * and an upstream without checks give NULL as before. */
START_TEST(all_down_fail_open)
{
    bool backups[4] = {false, false, false, true};
    pool_init((enum sp_balance)_i, 4, NULL, backups);
    P.uc.health.enabled = true;
    for (unsigned i = 0; i < 4; i++)
        set_up(i, false);
    ck_assert(sp_upstream_all_down(&P.up));
    ck_assert_int_eq(pick(NULL), -1); /* reject */
    P.uc.all_down = SP_ALL_DOWN_FAIL_OPEN;
    atomic_store(&P.up.servers[2].state->drained, true);
    bool seen[4] = {false};
    for (int k = 0; k < 60; k++) {
        int i = pick(NULL);
        ck_assert_msg(i == 0 || i == 1, "picked %d: not a primary that is not drained", i);
        seen[i] = true;
    }
    ck_assert(seen[0] || seen[1]);
    if (_i != SP_BALANCE_SOURCE_HASH) /* one client: one server */
        ck_assert(seen[0] && seen[1]);
    /* Tried primaries give way to the backup, as for up servers. */
    struct sp_tried t;
    sp_tried_init(&t);
    sp_tried_add(&t, 0);
    sp_tried_add(&t, 1);
    ck_assert_int_eq(pick(&t), 3);
    sp_tried_add(&t, 3);
    ck_assert_int_eq(pick(&t), -1);
    /* One server up: not all down, the others' verdict stands again. */
    set_up(1, true);
    ck_assert(!sp_upstream_all_down(&P.up));
    for (int k = 0; k < 10; k++)
        ck_assert_int_eq(pick(NULL), 1);
    /* Without health checks an upstream is never all down. */
    set_up(1, false);
    P.uc.health.enabled = false;
    ck_assert(!sp_upstream_all_down(&P.up));
    ck_assert_int_eq(pick(NULL), -1);
}
END_TEST

START_TEST(never_picks_down_or_held)
{
    const unsigned w[] = {1, 5, 1, 3};
    pool_init((enum sp_balance)_i, 4, w, NULL);
    set_up(1, false);
    P.uc.max_fails = 1;
    P.uc.fail_timeout_ms = 100000;
    sp_server_connect_failed(&P.up.servers[3], T0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    int seen[4] = {0};
    for (uint32_t k = 0; k < 2000; k++) {
        sin.sin_addr.s_addr = htonl(0x0a000000u + k * 7919u);
        int i = pick_in(&P, NULL, (const struct sockaddr *)&sin);
        ck_assert_int_ge(i, 0);
        seen[i]++;
    }
    ck_assert_int_eq(seen[1], 0);
    ck_assert_int_eq(seen[3], 0);
    ck_assert_int_gt(seen[0], 0);
    ck_assert_int_gt(seen[2], 0);
}
END_TEST

/* Passive holds give way only when nothing else is left: a usable backup still beats held
 * primaries, held primaries beat held backups, and health-down or drained servers stay out. */
START_TEST(held_servers_when_nothing_else)
{
    const bool backups[] = {false, false, true};
    pool_init((enum sp_balance)_i, 3, NULL, backups);
    P.uc.max_fails = 1;
    P.uc.fail_timeout_ms = 100000;
    sp_server_connect_failed(&P.up.servers[0], T0 - 1);
    sp_server_connect_failed(&P.up.servers[1], T0 - 1);
    for (int k = 0; k < 10; k++)
        ck_assert_int_eq(pick(NULL), 2);
    sp_server_connect_failed(&P.up.servers[2], T0 - 1);
    bool seen[3] = {false};
    for (int k = 0; k < 20; k++) {
        int i = pick(NULL);
        ck_assert_msg(i == 0 || i == 1, "all held: picked %d, want a primary", i);
        seen[i] = true;
    }
    ck_assert(_i == SP_BALANCE_SOURCE_HASH || (seen[0] && seen[1])); /* one client, one server */
    set_up(0, false);
    atomic_store(&P.up.servers[1].state->drained, true);
    for (int k = 0; k < 10; k++)
        ck_assert_int_eq(pick(NULL), 2);
    struct sp_tried t;
    sp_tried_init(&t);
    sp_tried_add(&t, 2);
    ck_assert_int_eq(pick(&t), -1);
}
END_TEST

/* The sole server, held after a restart of the app: still picked (nginx ignores max_fails for
 * a single server). */
START_TEST(sole_held_server_is_picked)
{
    pool_init((enum sp_balance)_i, 1, NULL, NULL);
    P.uc.max_fails = 2;
    P.uc.fail_timeout_ms = 100000;
    sp_server_connect_failed(&P.up.servers[0], T0 - 2);
    sp_server_connect_failed(&P.up.servers[0], T0 - 1);
    ck_assert(!sp_server_usable(&P.up.servers[0], T0));
    ck_assert_int_eq(pick(NULL), 0);
}
END_TEST

START_TEST(retries_move_on_until_null)
{
    pool_init((enum sp_balance)_i, 5, NULL, NULL);
    struct sp_tried t;
    bool seen[5] = {false};
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0xc0a80001u)};

    sp_tried_init(&t);
    for (int k = 0; k < 5; k++) {
        int i = pick_in(&P, &t, (const struct sockaddr *)&sin);
        ck_assert_int_ge(i, 0);
        ck_assert_msg(!seen[i], "server %d picked twice", i);
        seen[i] = true;
        sp_tried_add(&t, (unsigned)i);
    }
    ck_assert_int_eq(pick_in(&P, &t, (const struct sockaddr *)&sin), -1);
}
END_TEST

START_TEST(tried_beyond_max_may_repeat_the_oldest)
{
    pool_init((enum sp_balance)_i, SP_TRIED_MAX + 2, NULL, NULL);
    struct sp_tried t;

    sp_tried_init(&t);
    for (unsigned i = 0; i < SP_TRIED_MAX + 1; i++)
        sp_tried_add(&t, i);
    /* Server 0 dropped out of the set; SP_TRIED_MAX + 1 was never tried. */
    for (int k = 0; k < 20; k++) {
        int i = pick(&t);
        ck_assert_msg(i == 0 || i == SP_TRIED_MAX + 1, "picked %d", i);
    }
}
END_TEST

START_TEST(backups_only_when_primaries_are_gone)
{
    const bool backups[] = {false, false, true, true};
    pool_init((enum sp_balance)_i, 4, NULL, backups);

    for (int k = 0; k < 20; k++)
        ck_assert_int_lt(pick(NULL), 2);
    set_up(0, false);
    for (int k = 0; k < 20; k++)
        ck_assert_int_eq(pick(NULL), 1);
    set_up(1, false);
    for (int k = 0; k < 20; k++)
        ck_assert_int_ge(pick(NULL), 2);
    /* One primary back: the backups are dropped again. */
    set_up(0, true);
    for (int k = 0; k < 20; k++)
        ck_assert_int_eq(pick(NULL), 0);
}
END_TEST

START_TEST(backups_after_tried_primaries)
{
    const bool backups[] = {false, true, false};
    pool_init((enum sp_balance)_i, 3, NULL, backups);
    struct sp_tried t;

    sp_tried_init(&t);
    int first = pick(&t);
    ck_assert(first == 0 || first == 2);
    sp_tried_add(&t, (unsigned)first);
    int second = pick(&t);
    ck_assert_int_eq(second, first == 0 ? 2 : 0);
    sp_tried_add(&t, (unsigned)second);
    ck_assert_int_eq(pick(&t), 1);
    sp_tried_add(&t, 1);
    ck_assert_int_eq(pick(&t), -1);
    /* A fresh connection starts with the primaries again. */
    int fresh = pick(NULL);
    ck_assert(fresh == 0 || fresh == 2);
}
END_TEST

START_TEST(single_server)
{
    pool_init((enum sp_balance)_i, 1, NULL, NULL);
    for (int k = 0; k < 5; k++)
        ck_assert_int_eq(pick(NULL), 0);
    struct sp_tried t;
    sp_tried_init(&t);
    sp_tried_add(&t, 0);
    ck_assert_int_eq(pick(&t), -1);
}
END_TEST

START_TEST(init_and_deinit)
{
    struct sp_balancer zero;

    memset(&zero, 0, sizeof(zero));
    sp_balancer_deinit(&zero); /* zeroed: no-op */
    ck_assert_ptr_null(sp_balancer_pick(&zero, NULL, NULL, T0));

    pool_init((enum sp_balance)_i, 3, NULL, NULL);
    sp_balancer_deinit(&P.b);
    ck_assert_ptr_null(P.b.state);
    ck_assert_ptr_null(P.b.cands);
    sp_balancer_deinit(&P.b); /* twice is harmless */
    ck_assert_int_eq(sp_balancer_init(&P.b, &P.up, 7), 0);

    P.uc.balance = SP_BALANCE_COUNT;
    struct sp_balancer bad;
    ck_assert_int_eq(sp_balancer_init(&bad, &P.up, 1), -EINVAL);
    sp_balancer_deinit(&bad);
}
END_TEST

/* ---- round_robin ---- */

/* Smoothness as SWRR guarantees it: after every prefix of k picks, each server's count is
 * within 1 of its exact share k * w / W (its `current` value divided by W). */
static void assert_smooth_prefix(const int *count, const unsigned *w, size_t n, int k)
{
    unsigned total = 0;

    for (size_t i = 0; i < n; i++)
        total += w[i];
    for (size_t i = 0; i < n; i++) {
        double dev = (double)count[i] - (double)k * w[i] / total;
        ck_assert_msg(dev > -1.0 && dev < 1.0, "after %d picks server %zu has %d (off by %.2f)", k,
                      i, count[i], dev);
    }
}

START_TEST(rr_sequence_1_2_1)
{
    const unsigned w[] = {1, 2, 1};
    /* b a c b, repeating. b's turns are apart within a cycle but meet at its boundary
     * (... b | b ...): the cycle starts and ends at all-zero `current` values. */
    const int expect[] = {1, 0, 2, 1, 1, 0, 2, 1, 1, 0, 2, 1};
    pool_init(SP_BALANCE_ROUND_ROBIN, 3, w, NULL);

    int count[3] = {0};
    for (size_t k = 0; k < sizeof(expect) / sizeof(expect[0]); k++) {
        int i = pick(NULL);
        ck_assert_msg(i == expect[k], "pick %zu: got %d, want %d", k, i, expect[k]);
        count[i]++;
        assert_smooth_prefix(count, w, 3, (int)k + 1);
        if (k % 4 != 0 && k > 0) /* a and c never repeat, b only across cycles */
            ck_assert_int_ne(i, expect[k - 1]);
    }
    ck_assert_int_eq(count[0], 3);
    ck_assert_int_eq(count[1], 6);
    ck_assert_int_eq(count[2], 3);
}
END_TEST

START_TEST(rr_equal_weights_rotate)
{
    pool_init(SP_BALANCE_ROUND_ROBIN, 3, NULL, NULL);
    int count[3] = {0};
    for (int k = 0; k < 30; k++) {
        int i = pick(NULL);
        ck_assert_int_eq(i, k % 3);
        count[i]++;
    }
    ck_assert_int_eq(count[0], 10);
    ck_assert_int_eq(count[1], 10);
    ck_assert_int_eq(count[2], 10);
}
END_TEST

/* Distribution and smoothness: shares match weights within 2%, every prefix stays within one
 * pick of its exact share, and the longest run of one server is bounded (runs double at the
 * cycle boundary, e.g. {1,2} gives b a b | b a b). */
struct rr_case {
    size_t n;
    unsigned w[4];
    int picks;
    int max_run;
};

static const struct rr_case rr_cases[] = {
    {2, {1, 2}, 3000, 2},      {3, {1, 2, 1}, 4000, 2},     {3, {5, 1, 1}, 7000, 4},
    {4, {1, 1, 1, 1}, 400, 1}, {2, {1, 1000}, 10010, 1000}, {4, {3, 7, 2, 8}, 2000, 2},
};

START_TEST(rr_distribution)
{
    const struct rr_case *c = &rr_cases[_i];
    pool_init(SP_BALANCE_ROUND_ROBIN, c->n, c->w, NULL);
    int count[4] = {0};
    unsigned total = 0;
    int prev = -1, run = 0, max_run = 0;

    for (size_t i = 0; i < c->n; i++)
        total += c->w[i];
    for (int k = 0; k < c->picks; k++) {
        int i = pick(NULL);
        run = i == prev ? run + 1 : 1;
        max_run = run > max_run ? run : max_run;
        prev = i;
        count[i]++;
        assert_smooth_prefix(count, c->w, c->n, k + 1);
    }
    for (size_t i = 0; i < c->n; i++) {
        double want = (double)c->picks * c->w[i] / total;
        ck_assert_msg(count[i] >= want * 0.98 && count[i] <= want * 1.02 + 1,
                      "server %zu: %d picks, want %.0f", i, count[i], want);
    }
    ck_assert_msg(max_run <= c->max_run, "run of %d", max_run);
}
END_TEST

START_TEST(rr_slow_start_gets_less)
{
    const unsigned w[] = {10, 10};
    pool_init(SP_BALANCE_ROUND_ROBIN, 2, w, NULL);
    P.uc.slow_start_ms = 10000;
    sp_server_set_up(&P.up.servers[0], false, T0 - 100);
    sp_server_set_up(&P.up.servers[0], true, T0);
    /* At T0 server 0 weighs 1 against 10. */
    int count[2] = {0};
    for (int k = 0; k < 110; k++)
        count[pick(NULL)]++;
    ck_assert_int_eq(count[0], 10);
    ck_assert_int_eq(count[1], 100);
}
END_TEST

/* A successor generation (a reload, a DNS answer with one more address) goes on with the
 * rotation: after b1 b2 of {b1,b2,b3}, {b1,b2,b3,b4} serves b3 and the new b4 next, not b1. */
START_TEST(rr_carries_across_generations)
{
    pool_init(SP_BALANCE_ROUND_ROBIN, 3, NULL, NULL);
    ck_assert_int_eq(pick(NULL), 0);
    ck_assert_int_eq(pick(NULL), 1);
    struct pool q;
    pool_successor(&q, &P, 4, NULL);
    ck_assert_int_eq(pick_in(&q, NULL, NULL), 2);
    ck_assert_int_eq(pick_in(&q, NULL, NULL), 3);
    /* Then a full round of all four, each once. */
    bool seen[4] = {false};
    for (int k = 0; k < 4; k++) {
        int i = pick_in(&q, NULL, NULL);
        ck_assert_msg(!seen[i], "server %d twice in one round", i);
        seen[i] = true;
    }
    /* Servers are matched by state, not position: reordered, the rotation still goes on. */
    const unsigned rev[] = {4, 3, 2, 1};
    struct pool r;
    pick_in(&q, NULL, NULL); /* b1 */
    pool_successor(&r, &q, 4, rev);
    ck_assert_int_eq(rev[pick_in(&r, NULL, NULL)], 2);
    pool_free(&r);
    pool_free(&q);
}
END_TEST

/* ---- least_conn ---- */

static void set_active(unsigned i, uint32_t active)
{
    atomic_store(&P.up.servers[i].state->active, active);
}

START_TEST(lc_picks_least_loaded)
{
    pool_init(SP_BALANCE_LEAST_CONN, 3, NULL, NULL);
    set_active(0, 5);
    set_active(1, 2);
    set_active(2, 7);
    for (int k = 0; k < 5; k++)
        ck_assert_int_eq(pick(NULL), 1);
    set_active(1, 9);
    ck_assert_int_eq(pick(NULL), 0);
}
END_TEST

START_TEST(lc_relative_to_weight)
{
    const unsigned w[] = {1, 3};
    pool_init(SP_BALANCE_LEAST_CONN, 2, w, NULL);
    set_active(0, 1);
    set_active(1, 2); /* 2/3 < 1/1 */
    ck_assert_int_eq(pick(NULL), 1);
    set_active(1, 4); /* 4/3 > 1/1 */
    ck_assert_int_eq(pick(NULL), 0);

    /* Simulated: each pick opens a connection that never closes; shares follow 1:3. */
    set_active(0, 0);
    set_active(1, 0);
    int count[2] = {0};
    for (int k = 0; k < 400; k++) {
        int i = pick(NULL);
        count[i]++;
        atomic_fetch_add(&P.up.servers[i].state->active, 1);
    }
    ck_assert_int_eq(count[0], 100);
    ck_assert_int_eq(count[1], 300);
}
END_TEST

START_TEST(lc_ties_rotate)
{
    pool_init(SP_BALANCE_LEAST_CONN, 3, NULL, NULL);
    for (int k = 0; k < 9; k++)
        ck_assert_int_eq(pick(NULL), k % 3);
    /* Only the tied ones rotate. */
    set_active(1, 4);
    for (int k = 0; k < 6; k++)
        ck_assert_int_eq(pick(NULL), k % 2 == 0 ? 0 : 2);
    /* The rotation also steps over a tried server. */
    set_active(1, 0);
    struct sp_tried t;
    sp_tried_init(&t);
    sp_tried_add(&t, 1);
    for (int k = 0; k < 4; k++)
        ck_assert_int_eq(pick(&t), k % 2 == 0 ? 0 : 2);
}
END_TEST

/* The tie rotation goes on in the next generation from the server picked last. */
START_TEST(lc_carries_cursor)
{
    pool_init(SP_BALANCE_LEAST_CONN, 3, NULL, NULL);
    ck_assert_int_eq(pick(NULL), 0);
    ck_assert_int_eq(pick(NULL), 1);
    struct pool q;
    pool_successor(&q, &P, 3, NULL);
    ck_assert_int_eq(pick_in(&q, NULL, NULL), 2);
    ck_assert_int_eq(pick_in(&q, NULL, NULL), 0);
    pool_free(&q);
}
END_TEST

/* ---- source_hash ---- */

#define CLIENTS 10000

static uint64_t rng_state = 12345;

static uint64_t test_rand(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static struct sockaddr_storage clients[CLIENTS];

/* Random clients, v4 for even k, v6 for odd, each with a random port. */
static void make_clients(void)
{
    memset(clients, 0, sizeof(clients));
    for (int k = 0; k < CLIENTS; k++) {
        uint64_t r = test_rand();
        if (k % 2 == 0) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&clients[k];
            sin->sin_family = AF_INET;
            sin->sin_addr.s_addr = (uint32_t)r;
            sin->sin_port = (uint16_t)(r >> 32);
        } else {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&clients[k];
            s6->sin6_family = AF_INET6;
            s6->sin6_addr.s6_addr[0] = 0x20;
            s6->sin6_addr.s6_addr[1] = 0x01;
            memcpy(&s6->sin6_addr.s6_addr[8], &r, 8);
            s6->sin6_port = (uint16_t)(r >> 48);
        }
    }
}

static const struct sockaddr *client(int k)
{
    return (const struct sockaddr *)&clients[k];
}

/* The server id (not index) each client maps to. */
static void map_clients(struct pool *p, const unsigned *ids, unsigned *out)
{
    for (int k = 0; k < CLIENTS; k++) {
        int i = pick_in(p, NULL, client(k));
        ck_assert_int_ge(i, 0);
        out[k] = ids[i];
    }
}

static unsigned map_a[CLIENTS], map_b[CLIENTS];

START_TEST(sh_stable)
{
    const unsigned ids[] = {1, 2, 3, 4};
    struct pool other;

    make_clients();
    pool_init_ids(&P, SP_BALANCE_SOURCE_HASH, 4, ids, NULL, NULL);
    map_clients(&P, ids, map_a);
    map_clients(&P, ids, map_b);
    ck_assert_mem_eq(map_a, map_b, sizeof(map_a));
    /* Another worker's balancer (another seed, another order of the list) agrees. */
    const unsigned rev[] = {4, 3, 2, 1};
    pool_init_ids(&other, SP_BALANCE_SOURCE_HASH, 4, rev, NULL, NULL);
    map_clients(&other, rev, map_b);
    pool_free(&other);
    ck_assert_mem_eq(map_a, map_b, sizeof(map_a));
    /* Each server gets a fair share. */
    int count[5] = {0};
    for (int k = 0; k < CLIENTS; k++)
        count[map_a[k]]++;
    for (int i = 1; i <= 4; i++)
        ck_assert_msg(count[i] > CLIENTS / 4 * 0.7 && count[i] < CLIENTS / 4 * 1.3,
                      "server %d: %d clients", i, count[i]);
}
END_TEST

START_TEST(sh_ignores_port_maps_v4_mapped)
{
    pool_init(SP_BALANCE_SOURCE_HASH, 8, NULL, NULL);
    for (uint32_t k = 0; k < 200; k++) {
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons(1000),
                                .sin_addr.s_addr = htonl(0xc0000200u + k)};
        struct sockaddr_in b = a;
        b.sin_port = htons(54321);
        struct sockaddr_in6 m = {.sin6_family = AF_INET6, .sin6_port = htons(7)};
        m.sin6_addr.s6_addr[10] = 0xff;
        m.sin6_addr.s6_addr[11] = 0xff;
        memcpy(&m.sin6_addr.s6_addr[12], &a.sin_addr, 4);
        int ia = pick_in(&P, NULL, (const struct sockaddr *)&a);
        ck_assert_int_eq(pick_in(&P, NULL, (const struct sockaddr *)&b), ia);
        ck_assert_int_eq(pick_in(&P, NULL, (const struct sockaddr *)&m), ia);
    }
}
END_TEST

START_TEST(sh_add_moves_about_one_nth)
{
    const unsigned ids4[] = {1, 2, 3, 4};
    const unsigned ids5[] = {1, 2, 3, 4, 5};
    struct pool five;

    make_clients();
    pool_init_ids(&P, SP_BALANCE_SOURCE_HASH, 4, ids4, NULL, NULL);
    map_clients(&P, ids4, map_a);
    pool_init_ids(&five, SP_BALANCE_SOURCE_HASH, 5, ids5, NULL, NULL);
    map_clients(&five, ids5, map_b);
    pool_free(&five);
    int moved = 0;
    for (int k = 0; k < CLIENTS; k++) {
        if (map_a[k] != map_b[k]) {
            moved++;
            /* A client only ever moves to the new server. */
            ck_assert_uint_eq(map_b[k], 5);
        }
    }
    double frac = (double)moved / CLIENTS;
    ck_assert_msg(frac >= 0.12 && frac <= 0.28, "moved %.3f", frac);
}
END_TEST

START_TEST(sh_remove_moves_only_its_clients)
{
    const unsigned ids5[] = {1, 2, 3, 4, 5};
    const unsigned ids4[] = {1, 2, 4, 5}; /* server 3 removed */
    struct pool four;

    make_clients();
    pool_init_ids(&P, SP_BALANCE_SOURCE_HASH, 5, ids5, NULL, NULL);
    map_clients(&P, ids5, map_a);
    pool_init_ids(&four, SP_BALANCE_SOURCE_HASH, 4, ids4, NULL, NULL);
    map_clients(&four, ids4, map_b);
    pool_free(&four);
    int moved = 0;
    for (int k = 0; k < CLIENTS; k++) {
        if (map_a[k] == 3)
            moved++;
        else
            ck_assert_msg(map_a[k] == map_b[k], "client %d moved %u -> %u", k, map_a[k], map_b[k]);
    }
    double frac = (double)moved / CLIENTS;
    ck_assert_msg(frac >= 0.12 && frac <= 0.28, "removed server had %.3f", frac);
}
END_TEST

START_TEST(sh_down_or_tried_moves_only_its_clients)
{
    const unsigned ids[] = {1, 2, 3, 4};
    make_clients();
    pool_init_ids(&P, SP_BALANCE_SOURCE_HASH, 4, ids, NULL, NULL);
    map_clients(&P, ids, map_a);

    set_up(1, false); /* id 2 */
    map_clients(&P, ids, map_b);
    int moved = 0;
    for (int k = 0; k < CLIENTS; k++) {
        if (map_a[k] == 2) {
            ck_assert_uint_ne(map_b[k], 2);
            moved++;
        } else {
            ck_assert_uint_eq(map_b[k], map_a[k]);
        }
    }
    ck_assert_int_gt(moved, CLIENTS / 8);
    /* Its clients spread over the others rather than all landing on one. */
    int dest[5] = {0};
    for (int k = 0; k < CLIENTS; k++) {
        if (map_a[k] == 2)
            dest[map_b[k]]++;
    }
    ck_assert_int_gt(dest[1], moved / 8);
    ck_assert_int_gt(dest[3], moved / 8);
    ck_assert_int_gt(dest[4], moved / 8);
    /* Back up: everyone returns to where they were. */
    set_up(1, true);
    map_clients(&P, ids, map_b);
    ck_assert_mem_eq(map_a, map_b, sizeof(map_a));

    /* A retry after the client's own server failed goes elsewhere, consistently. */
    struct sp_tried t;
    for (int k = 0; k < 500; k++) {
        sp_tried_init(&t);
        int first = pick_in(&P, &t, client(k));
        sp_tried_add(&t, (unsigned)first);
        int second = pick_in(&P, &t, client(k));
        ck_assert_int_ge(second, 0);
        ck_assert_int_ne(second, first);
        ck_assert_int_eq(pick_in(&P, &t, client(k)), second);
    }
}
END_TEST

START_TEST(sh_respects_weight)
{
    const unsigned w[] = {1, 3};
    make_clients();
    pool_init(SP_BALANCE_SOURCE_HASH, 2, w, NULL);
    int count[2] = {0};
    for (int k = 0; k < CLIENTS; k++)
        count[pick_in(&P, NULL, client(k))]++;
    double share = (double)count[1] / CLIENTS;
    ck_assert_msg(share > 0.68 && share < 0.82, "weight 3 of 4 got %.3f", share);
}
END_TEST

START_TEST(sh_backup_ring)
{
    const bool backups[] = {false, false, true, true};
    make_clients();
    pool_init(SP_BALANCE_SOURCE_HASH, 4, NULL, backups);
    set_up(0, false);
    set_up(1, false);
    int count[4] = {0};
    for (int k = 0; k < 2000; k++) {
        int i = pick_in(&P, NULL, client(k));
        ck_assert_int_ge(i, 2);
        ck_assert_int_eq(pick_in(&P, NULL, client(k)), i);
        count[i]++;
    }
    ck_assert_int_gt(count[2], 500);
    ck_assert_int_gt(count[3], 500);
}
END_TEST

START_TEST(sh_no_client_address)
{
    pool_init(SP_BALANCE_SOURCE_HASH, 3, NULL, NULL);
    int i = pick(NULL);
    ck_assert_int_ge(i, 0);
    for (int k = 0; k < 5; k++)
        ck_assert_int_eq(pick(NULL), i);
}
END_TEST

/* ---- random_two ---- */

START_TEST(r2_follows_weight)
{
    const unsigned w[] = {1, 2, 3};
    pool_init(SP_BALANCE_RANDOM_TWO, 3, w, NULL);
    int count[3] = {0};
    for (int k = 0; k < 60000; k++)
        count[pick(NULL)]++;
    for (int i = 0; i < 3; i++) {
        double want = 60000.0 * w[i] / 6;
        ck_assert_msg(count[i] > want * 0.95 && count[i] < want * 1.05,
                      "server %d: %d picks, want %.0f", i, count[i], want);
    }
}
END_TEST

START_TEST(r2_prefers_less_loaded)
{
    pool_init(SP_BALANCE_RANDOM_TWO, 3, NULL, NULL);
    set_active(0, 10);
    int count[3] = {0};
    for (int k = 0; k < 3000; k++)
        count[pick(NULL)]++;
    /* Two distinct draws always include a server lighter than 0. */
    ck_assert_int_eq(count[0], 0);
    ck_assert_int_gt(count[1], 1200);
    ck_assert_int_gt(count[2], 1200);

    /* Relative to weight: 4 open on weight 8 is lighter than 1 open on weight 1. */
    const unsigned w[] = {1, 8};
    pool_free(&P);
    pool_init(SP_BALANCE_RANDOM_TWO, 2, w, NULL);
    set_active(0, 1);
    set_active(1, 4);
    for (int k = 0; k < 100; k++)
        ck_assert_int_eq(pick(NULL), 1);
}
END_TEST

START_TEST(r2_seeds_differ)
{
    struct pool other;
    int same = 0;

    pool_init(SP_BALANCE_RANDOM_TWO, 8, NULL, NULL);
    pool_init_ids(&other, SP_BALANCE_RANDOM_TWO, 8, NULL, NULL, NULL);
    sp_balancer_deinit(&other.b);
    ck_assert_int_eq(sp_balancer_init(&other.b, &other.up, 43), 0);
    for (int k = 0; k < 200; k++)
        same += pick(NULL) == pick_in(&other, NULL, NULL);
    pool_free(&other);
    ck_assert_int_lt(same, 100);
}
END_TEST

static Suite *balancer_suite(void)
{
    Suite *s = suite_create("balancer");
    TCase *tc;

    tc = tcase_create("tried");
    tcase_add_test(tc, tried_set_basics);
    tcase_add_test(tc, tried_set_wraps);
    suite_add_tcase(s, tc);

    tc = tcase_create("all_modes");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_loop_test(tc, all_down_gives_null, 0, SP_BALANCE_COUNT);
    tcase_add_loop_test(tc, all_down_fail_open, 0, SP_BALANCE_COUNT);
    tcase_add_loop_test(tc, never_picks_down_or_held, 0, SP_BALANCE_COUNT);
    tcase_add_loop_test(tc, held_servers_when_nothing_else, 0, SP_BALANCE_COUNT);
    tcase_add_loop_test(tc, sole_held_server_is_picked, 0, SP_BALANCE_COUNT);
    tcase_add_loop_test(tc, retries_move_on_until_null, 0, SP_BALANCE_COUNT);
    tcase_add_loop_test(tc, tried_beyond_max_may_repeat_the_oldest, 0, SP_BALANCE_COUNT);
    tcase_add_loop_test(tc, backups_only_when_primaries_are_gone, 0, SP_BALANCE_COUNT);
    tcase_add_loop_test(tc, backups_after_tried_primaries, 0, SP_BALANCE_COUNT);
    tcase_add_loop_test(tc, single_server, 0, SP_BALANCE_COUNT);
    tcase_add_loop_test(tc, init_and_deinit, 0, SP_BALANCE_COUNT);
    suite_add_tcase(s, tc);

    tc = tcase_create("round_robin");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, rr_sequence_1_2_1);
    tcase_add_test(tc, rr_equal_weights_rotate);
    tcase_add_loop_test(tc, rr_distribution, 0, sizeof(rr_cases) / sizeof(rr_cases[0]));
    tcase_add_test(tc, rr_slow_start_gets_less);
    tcase_add_test(tc, rr_carries_across_generations);
    suite_add_tcase(s, tc);

    tc = tcase_create("least_conn");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, lc_picks_least_loaded);
    tcase_add_test(tc, lc_relative_to_weight);
    tcase_add_test(tc, lc_ties_rotate);
    tcase_add_test(tc, lc_carries_cursor);
    suite_add_tcase(s, tc);

    tc = tcase_create("source_hash");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, sh_stable);
    tcase_add_test(tc, sh_ignores_port_maps_v4_mapped);
    tcase_add_test(tc, sh_add_moves_about_one_nth);
    tcase_add_test(tc, sh_remove_moves_only_its_clients);
    tcase_add_test(tc, sh_down_or_tried_moves_only_its_clients);
    tcase_add_test(tc, sh_respects_weight);
    tcase_add_test(tc, sh_backup_ring);
    tcase_add_test(tc, sh_no_client_address);
    suite_add_tcase(s, tc);

    tc = tcase_create("random_two");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, r2_follows_weight);
    tcase_add_test(tc, r2_prefers_less_loaded);
    tcase_add_test(tc, r2_seeds_differ);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    sp_log_set_level(SP_LOG_ERROR); /* the holds tripped on purpose would warn */
    SRunner *sr = srunner_create(balancer_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
