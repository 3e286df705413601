/* test_srclimit.c: the per-client table of a listener's limits: open connections per client, the
 * token bucket (burst, refill, per minute, no token spent on a refusal), what "one client" means
 * (prefixes, IPv4-mapped IPv6), a full table failing open and freeing entries for reuse, a reload's
 * changed limits on a kept table, and counts that stay exact under threads racing on one client. */
#include "common.h"
#include "srclimit.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T0 1000000 /* ms: a monotonic clock well away from 0 */

static struct sockaddr_storage addr(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(40000);
    } else {
        ck_assert_msg(inet_pton(AF_INET6, text, &in6->sin6_addr) == 1, "bad address %s", text);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(40000);
    }
    return ss;
}

static struct sp_limits_conf limits(unsigned conns, unsigned rate, uint64_t period_ms)
{
    return (struct sp_limits_conf){.enabled = true,
                                   .per_source_connections = conns,
                                   .rate = rate,
                                   .rate_period_ms = period_ms,
                                   .source_prefix_v4 = 32,
                                   .source_prefix_v6 = 64,
                                   .tracked_sources = 1024};
}

static struct sp_srclimit *table(unsigned size, unsigned p4, unsigned p6)
{
    struct sp_srclimit *t = NULL;
    ck_assert_int_eq(sp_srclimit_new(size, p4, p6, &t), 0);
    return t;
}

static enum sp_srclimit_verdict acquire(struct sp_srclimit *t, const struct sp_limits_conf *lc,
                                        const char *client, uint64_t now,
                                        struct sp_srclimit_hold *h)
{
    struct sockaddr_storage ss = addr(client);
    return sp_srclimit_acquire(t, lc, (struct sockaddr *)&ss, now, h);
}

START_TEST(new_checks_arguments)
{
    struct sp_srclimit *t = NULL;
    ck_assert_int_eq(sp_srclimit_new(1000, 32, 64, &t), -EINVAL); /* not a power of two */
    ck_assert_int_eq(sp_srclimit_new(4, 32, 64, &t), -EINVAL);
    ck_assert_int_eq(sp_srclimit_new(SP_SRCLIMIT_MAX_SIZE * 2u, 32, 64, &t), -EINVAL);
    ck_assert_int_eq(sp_srclimit_new(1024, 33, 64, &t), -EINVAL);
    ck_assert_int_eq(sp_srclimit_new(1024, 32, 129, &t), -EINVAL);
    ck_assert_ptr_null(t);
    t = table(1024, 24, 48);
    ck_assert_uint_eq(sp_srclimit_size(t), 1024);
    ck_assert(sp_srclimit_fits(t, 1024, 24, 48));
    ck_assert(!sp_srclimit_fits(t, 2048, 24, 48));
    ck_assert(!sp_srclimit_fits(t, 1024, 32, 48));
    ck_assert(!sp_srclimit_fits(t, 1024, 24, 64));
    ck_assert_ptr_eq(sp_srclimit_ref(t), t);
    sp_srclimit_unref(t);
    sp_srclimit_unref(t);
    sp_srclimit_unref(NULL);
}
END_TEST

/* per_source_connections: 3. The fourth is refused while three are open; one closing lets
 * another in; another client is not affected. */
START_TEST(open_connections)
{
    struct sp_srclimit *t = table(1024, 32, 64);
    struct sp_limits_conf lc = limits(3, 0, 0);
    struct sp_srclimit_hold h[5];
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(acquire(t, &lc, "10.0.0.1", T0, &h[i]), SP_SRCLIMIT_OK);
    ck_assert_int_eq(acquire(t, &lc, "10.0.0.1", T0, &h[3]), SP_SRCLIMIT_OVER_CONN);
    ck_assert_ptr_null(h[3].tab); /* a refusal holds nothing */
    ck_assert_int_eq(acquire(t, &lc, "10.0.0.2", T0, &h[4]), SP_SRCLIMIT_OK);
    ck_assert_uint_eq(sp_srclimit_in_use(t, T0), 2);
    sp_srclimit_release(&h[1]);
    ck_assert_ptr_null(h[1].tab);
    sp_srclimit_release(&h[1]); /* a second release of the same hold does nothing */
    ck_assert_int_eq(acquire(t, &lc, "10.0.0.1", T0, &h[1]), SP_SRCLIMIT_OK);
    ck_assert_int_eq(acquire(t, &lc, "10.0.0.1", T0, &h[3]), SP_SRCLIMIT_OVER_CONN);
    for (int i = 0; i < 5; i++)
        sp_srclimit_release(&h[i]);
    ck_assert_uint_eq(sp_srclimit_in_use(t, T0), 0);
    sp_srclimit_unref(t);
}
END_TEST

/* 5/s: a burst of five at once, the sixth refused; one more 200 ms later (one interval); after a
 * whole second the full burst again. */
START_TEST(rate_burst_and_refill)
{
    struct sp_srclimit *t = table(1024, 32, 64);
    struct sp_limits_conf lc = limits(0, 5, 1000);
    struct sp_srclimit_hold h;
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(acquire(t, &lc, "10.0.0.1", T0, &h), SP_SRCLIMIT_OK);
        sp_srclimit_release(&h);
    }
    ck_assert_int_eq(acquire(t, &lc, "10.0.0.1", T0, &h), SP_SRCLIMIT_OVER_RATE);
    ck_assert_int_eq(acquire(t, &lc, "10.0.0.1", T0 + 199, &h), SP_SRCLIMIT_OVER_RATE);
    ck_assert_int_eq(acquire(t, &lc, "10.0.0.1", T0 + 200, &h), SP_SRCLIMIT_OK);
    sp_srclimit_release(&h);
    ck_assert_int_eq(acquire(t, &lc, "10.0.0.1", T0 + 200, &h), SP_SRCLIMIT_OVER_RATE);
    /* the bucket is still refilling, so the client is tracked with no connection open */
    ck_assert_uint_eq(sp_srclimit_in_use(t, T0 + 200), 1);
    int n = 0;
    while (acquire(t, &lc, "10.0.0.1", T0 + 1200, &h) == SP_SRCLIMIT_OK) {
        sp_srclimit_release(&h);
        ck_assert_int_le(++n, 5);
    }
    ck_assert_int_eq(n, 5);
    ck_assert_uint_eq(sp_srclimit_in_use(t, T0 + 2200), 0);
    sp_srclimit_unref(t);
}
END_TEST

/* 120/m: a burst of one second's worth (2), then one every 500 ms; 30/m: a burst of one. */
START_TEST(rate_per_minute)
{
    struct sp_srclimit *t = table(1024, 32, 64);
    struct sp_limits_conf lc = limits(0, 120, 60000);
    struct sp_srclimit_hold h;
    ck_assert_int_eq(acquire(t, &lc, "10.0.0.1", T0, &h), SP_SRCLIMIT_OK);
    sp_srclimit_release(&h);
    ck_assert_int_eq(acquire(t, &lc, "10.0.0.1", T0, &h), SP_SRCLIMIT_OK);
    sp_srclimit_release(&h);
    ck_assert_int_eq(acquire(t, &lc, "10.0.0.1", T0, &h), SP_SRCLIMIT_OVER_RATE);
    ck_assert_int_eq(acquire(t, &lc, "10.0.0.1", T0 + 499, &h), SP_SRCLIMIT_OVER_RATE);
    ck_assert_int_eq(acquire(t, &lc, "10.0.0.1", T0 + 500, &h), SP_SRCLIMIT_OK);
    sp_srclimit_release(&h);
    lc = limits(0, 30, 60000);
    ck_assert_int_eq(acquire(t, &lc, "10.0.0.2", T0, &h), SP_SRCLIMIT_OK);
    sp_srclimit_release(&h);
    ck_assert_int_eq(acquire(t, &lc, "10.0.0.2", T0 + 1999, &h), SP_SRCLIMIT_OVER_RATE);
    ck_assert_int_eq(acquire(t, &lc, "10.0.0.2", T0 + 2000, &h), SP_SRCLIMIT_OK);
    sp_srclimit_release(&h);
    sp_srclimit_unref(t);
}
END_TEST

/* Over many seconds the admitted count is the rate times the time plus the burst, exactly: the
 * integer interval does not drift (7/s does not divide a second into whole milliseconds). */
START_TEST(rate_no_drift)
{
    struct sp_srclimit *t = table(1024, 32, 64);
    struct sp_limits_conf lc = limits(0, 7, 1000);
    struct sp_srclimit_hold h;
    int admitted = 0;
    for (uint64_t ms = 0; ms <= 100000; ms++) {
        if (acquire(t, &lc, "10.0.0.1", T0 + ms, &h) == SP_SRCLIMIT_OK) {
            admitted++;
            sp_srclimit_release(&h);
        }
    }
    /* 7 at once, then one per 1/7 s for 100 s (the interval rounds up by under a ns, so the
     * 700th refill lands a hair after the last millisecond) */
    ck_assert_int_ge(admitted, 7 + 699);
    ck_assert_int_le(admitted, 7 + 700);
    sp_srclimit_unref(t);
}
END_TEST

/* A refusal takes no token: per_source_connections refuses while the bucket still has one, and
 * the bucket still has it afterwards. A rate refusal leaves no count. */
START_TEST(refusal_takes_nothing)
{
    struct sp_srclimit *t = table(1024, 32, 64);
    struct sp_limits_conf lc = limits(1, 2, 1000);
    struct sp_srclimit_hold a, b;
    ck_assert_int_eq(acquire(t, &lc, "10.0.0.1", T0, &a), SP_SRCLIMIT_OK);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(acquire(t, &lc, "10.0.0.1", T0, &b), SP_SRCLIMIT_OVER_CONN);
    sp_srclimit_release(&a);
    ck_assert_int_eq(acquire(t, &lc, "10.0.0.1", T0, &a), SP_SRCLIMIT_OK); /* token 2 of 2 */
    sp_srclimit_release(&a);
    ck_assert_int_eq(acquire(t, &lc, "10.0.0.1", T0, &a), SP_SRCLIMIT_OVER_RATE);
    /* the rate refusal gave its count back: one connection may be open again once a token is */
    ck_assert_int_eq(acquire(t, &lc, "10.0.0.1", T0 + 500, &a), SP_SRCLIMIT_OK);
    sp_srclimit_release(&a);
    sp_srclimit_unref(t);
}
END_TEST

/* What "one client" is: the address masked to the table's prefixes; an IPv4-mapped IPv6
 * address is the IPv4 client; one /64 is one IPv6 client with the default prefix. */
START_TEST(prefixes)
{
    struct sp_srclimit *t = table(1024, 24, 64);
    struct sp_limits_conf lc = limits(1, 0, 0);
    struct sp_srclimit_hold h[4];
    char buf[SP_SRCLIMIT_STR_MAX];
    ck_assert_int_eq(acquire(t, &lc, "10.1.2.3", T0, &h[0]), SP_SRCLIMIT_OK);
    ck_assert_int_eq(acquire(t, &lc, "10.1.2.200", T0, &h[1]), SP_SRCLIMIT_OVER_CONN);
    ck_assert_int_eq(acquire(t, &lc, "::ffff:10.1.2.99", T0, &h[1]), SP_SRCLIMIT_OVER_CONN);
    ck_assert_int_eq(acquire(t, &lc, "10.1.3.3", T0, &h[1]), SP_SRCLIMIT_OK);
    ck_assert_int_eq(acquire(t, &lc, "2001:db8:1:2::1", T0, &h[2]), SP_SRCLIMIT_OK);
    ck_assert_int_eq(acquire(t, &lc, "2001:db8:1:2:ffff:ffff:ffff:ffff", T0, &h[3]),
                     SP_SRCLIMIT_OVER_CONN);
    ck_assert_int_eq(acquire(t, &lc, "2001:db8:1:3::1", T0, &h[3]), SP_SRCLIMIT_OK);
    struct sockaddr_storage ss = addr("::ffff:10.1.2.99");
    ck_assert_str_eq(sp_srclimit_client_str(t, (struct sockaddr *)&ss, buf, sizeof(buf)),
                     "10.1.2.0/24");
    ss = addr("2001:db8:1:2:ffff::1");
    ck_assert_str_eq(sp_srclimit_client_str(t, (struct sockaddr *)&ss, buf, sizeof(buf)),
                     "2001:db8:1:2::/64");
    for (int i = 0; i < 4; i++)
        sp_srclimit_release(&h[i]);
    sp_srclimit_unref(t);

    /* /0: every client is one; /128: every address is its own */
    t = table(1024, 0, 128);
    ck_assert_int_eq(acquire(t, &lc, "10.1.2.3", T0, &h[0]), SP_SRCLIMIT_OK);
    ck_assert_int_eq(acquire(t, &lc, "192.168.1.1", T0, &h[1]), SP_SRCLIMIT_OVER_CONN);
    ck_assert_int_eq(acquire(t, &lc, "2001:db8::1", T0, &h[1]), SP_SRCLIMIT_OK);
    ck_assert_int_eq(acquire(t, &lc, "2001:db8::2", T0, &h[2]), SP_SRCLIMIT_OK);
    for (int i = 0; i < 3; i++)
        sp_srclimit_release(&h[i]);
    sp_srclimit_unref(t);
}
END_TEST

/* An address that is neither IPv4 nor IPv6 passes and holds nothing. */
START_TEST(other_family)
{
    struct sp_srclimit *t = table(1024, 32, 64);
    struct sp_limits_conf lc = limits(1, 0, 0);
    struct sockaddr_storage ss = {.ss_family = AF_UNIX};
    struct sp_srclimit_hold h;
    char buf[SP_SRCLIMIT_STR_MAX];
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(sp_srclimit_acquire(t, &lc, (struct sockaddr *)&ss, T0, &h),
                         SP_SRCLIMIT_OK);
        ck_assert_ptr_null(h.tab);
    }
    ck_assert_str_eq(sp_srclimit_client_str(t, (struct sockaddr *)&ss, buf, sizeof(buf)), "?");
    sp_srclimit_unref(t);
}
END_TEST

/* The smallest table (8 entries, one probe window) with every entry held by a client with an
 * open connection: a ninth client passes untracked, refused nothing; once one client closes,
 * its entry is free and the newcomer is tracked (and limited) there. An entry whose bucket is
 * still refilling is not free. */
START_TEST(full_table_fails_open)
{
    struct sp_srclimit *t = table(8, 32, 64);
    struct sp_limits_conf lc = limits(1, 0, 0);
    struct sp_srclimit_hold h[8], x, y;
    char ip[32];
    for (int i = 0; i < 8; i++) {
        snprintf(ip, sizeof(ip), "10.0.0.%d", i + 1);
        ck_assert_int_eq(acquire(t, &lc, ip, T0, &h[i]), SP_SRCLIMIT_OK);
    }
    ck_assert_uint_eq(sp_srclimit_in_use(t, T0), 8);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(acquire(t, &lc, "10.9.9.9", T0, &x), SP_SRCLIMIT_UNTRACKED);
        ck_assert_ptr_null(x.tab);
    }
    sp_srclimit_release(&h[3]);
    ck_assert_int_eq(acquire(t, &lc, "10.9.9.9", T0, &x), SP_SRCLIMIT_OK);
    ck_assert_int_eq(acquire(t, &lc, "10.9.9.9", T0, &y), SP_SRCLIMIT_OVER_CONN);
    /* 10.0.0.4 lost its entry: it comes back untracked while the table is full */
    ck_assert_int_eq(acquire(t, &lc, "10.0.0.4", T0, &y), SP_SRCLIMIT_UNTRACKED);
    sp_srclimit_release(&x);

    /* a rate: the entry of a client that just spent a token stays its own until refilled */
    struct sp_limits_conf rl = limits(1, 1, 1000);
    ck_assert_int_eq(acquire(t, &rl, "10.9.9.9", T0, &x), SP_SRCLIMIT_OK);
    sp_srclimit_release(&x);
    ck_assert_int_eq(acquire(t, &rl, "10.8.8.8", T0 + 500, &y), SP_SRCLIMIT_UNTRACKED);
    ck_assert_int_eq(acquire(t, &rl, "10.8.8.8", T0 + 1000, &y), SP_SRCLIMIT_OK);
    sp_srclimit_release(&y);
    for (int i = 0; i < 8; i++)
        sp_srclimit_release(&h[i]);
    sp_srclimit_unref(t);
}
END_TEST

/* A reload keeps the table and changes the limits: the open connections still count, and the
 * new limit applies to the next connection. */
START_TEST(limits_change_on_kept_table)
{
    struct sp_srclimit *t = table(1024, 32, 64);
    struct sp_limits_conf five = limits(5, 0, 0), two = limits(2, 0, 0);
    struct sp_srclimit_hold h[6];
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(acquire(t, &five, "10.0.0.1", T0, &h[i]), SP_SRCLIMIT_OK);
    ck_assert_int_eq(acquire(t, &two, "10.0.0.1", T0, &h[3]), SP_SRCLIMIT_OVER_CONN);
    sp_srclimit_release(&h[0]);
    sp_srclimit_release(&h[1]);
    ck_assert_int_eq(acquire(t, &two, "10.0.0.1", T0, &h[0]), SP_SRCLIMIT_OK);
    ck_assert_int_eq(acquire(t, &two, "10.0.0.1", T0, &h[1]), SP_SRCLIMIT_OVER_CONN);
    ck_assert_int_eq(acquire(t, &five, "10.0.0.1", T0, &h[1]), SP_SRCLIMIT_OK);
    for (int i = 0; i < 3; i++)
        sp_srclimit_release(&h[i]);
    ck_assert_uint_eq(sp_srclimit_in_use(t, T0), 0);
    sp_srclimit_unref(t);
}
END_TEST

/* Different tables hash with different keys: the same clients do not land on the same slots. */
START_TEST(keys_differ)
{
    struct sp_srclimit *a = table(1u << 16, 32, 64), *b = table(1u << 16, 32, 64);
    struct sp_limits_conf lc = limits(1, 0, 0);
    int same = 0;
    char ip[32];
    for (int i = 0; i < 64; i++) {
        struct sp_srclimit_hold ha, hb;
        snprintf(ip, sizeof(ip), "10.0.%d.%d", i / 256, i % 256 + 1);
        ck_assert_int_eq(acquire(a, &lc, ip, T0, &ha), SP_SRCLIMIT_OK);
        ck_assert_int_eq(acquire(b, &lc, ip, T0, &hb), SP_SRCLIMIT_OK);
        same += ha.slot == hb.slot;
        sp_srclimit_release(&ha);
        sp_srclimit_release(&hb);
    }
    ck_assert_int_lt(same, 4);
    sp_srclimit_unref(a);
    sp_srclimit_unref(b);
}
END_TEST

/* ---- threads racing on one client ------------------------------------------------------ */

#define THREADS 4
#define ROUNDS  20000
#define LIMIT   3

struct race {
    struct sp_srclimit *t;
    struct sp_limits_conf lc;
    _Atomic int open;     /* held right now, counted by the test */
    _Atomic int max_open; /* the most ever held at once */
    _Atomic long ok, over;
};

static void *racer(void *arg)
{
    struct race *r = arg;
    struct sockaddr_storage ss = addr("192.0.2.7");
    for (int i = 0; i < ROUNDS; i++) {
        struct sp_srclimit_hold h;
        enum sp_srclimit_verdict v =
            sp_srclimit_acquire(r->t, &r->lc, (struct sockaddr *)&ss, T0, &h);
        if (v != SP_SRCLIMIT_OK) {
            atomic_fetch_add(&r->over, 1);
            continue;
        }
        int n = atomic_fetch_add(&r->open, 1) + 1;
        int m = atomic_load(&r->max_open);
        while (n > m && !atomic_compare_exchange_weak(&r->max_open, &m, n))
            ;
        atomic_fetch_add(&r->ok, 1);
        atomic_fetch_sub(&r->open, 1);
        sp_srclimit_release(&h);
    }
    return NULL;
}

START_TEST(threads_one_client)
{
    static struct race r;
    memset(&r, 0, sizeof(r));
    r.t = table(1024, 32, 64);
    r.lc = limits(LIMIT, 0, 0);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, racer, &r), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_le(atomic_load(&r.max_open), LIMIT);
    ck_assert_int_eq(atomic_load(&r.ok) + atomic_load(&r.over), (long)THREADS * ROUNDS);
    ck_assert_int_gt(atomic_load(&r.ok), 0);
    /* every count went back: the client may hold LIMIT again, no more */
    struct sp_srclimit_hold h[LIMIT + 1];
    for (int i = 0; i < LIMIT; i++)
        ck_assert_int_eq(acquire(r.t, &r.lc, "192.0.2.7", T0, &h[i]), SP_SRCLIMIT_OK);
    ck_assert_int_eq(acquire(r.t, &r.lc, "192.0.2.7", T0, &h[LIMIT]), SP_SRCLIMIT_OVER_CONN);
    for (int i = 0; i < LIMIT; i++)
        sp_srclimit_release(&h[i]);
    ck_assert_uint_eq(sp_srclimit_in_use(r.t, T0), 0);
    sp_srclimit_unref(r.t);
}
END_TEST

/* Threads sharing a rate: however they interleave, the burst is admitted exactly once. */
static void *rate_racer(void *arg)
{
    struct race *r = arg;
    struct sockaddr_storage ss = addr("192.0.2.8");
    for (int i = 0; i < 1000; i++) {
        struct sp_srclimit_hold h;
        if (sp_srclimit_acquire(r->t, &r->lc, (struct sockaddr *)&ss, T0, &h) == SP_SRCLIMIT_OK) {
            atomic_fetch_add(&r->ok, 1);
            sp_srclimit_release(&h);
        }
    }
    return NULL;
}

START_TEST(threads_share_a_bucket)
{
    static struct race r;
    memset(&r, 0, sizeof(r));
    r.t = table(1024, 32, 64);
    r.lc = limits(0, 100, 1000);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, rate_racer, &r), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(atomic_load(&r.ok), 100);
    sp_srclimit_unref(r.t);
}
END_TEST

static Suite *srclimit_suite(void)
{
    Suite *s = suite_create("srclimit");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, new_checks_arguments);
    tcase_add_test(tc, open_connections);
    tcase_add_test(tc, rate_burst_and_refill);
    tcase_add_test(tc, rate_per_minute);
    tcase_add_test(tc, rate_no_drift);
    tcase_add_test(tc, refusal_takes_nothing);
    tcase_add_test(tc, prefixes);
    tcase_add_test(tc, other_family);
    tcase_add_test(tc, full_table_fails_open);
    tcase_add_test(tc, limits_change_on_kept_table);
    tcase_add_test(tc, keys_differ);
    suite_add_tcase(s, tc);
    tc = tcase_create("threads");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, threads_one_client);
    tcase_add_test(tc, threads_share_a_bucket);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(srclimit_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
