/* test_pipe_pool.c: pipes are reused only when empty, the idle cap holds, nothing leaks, and a
 * refused F_SETPIPE_SZ (as for any non-root process) still yields a working, smaller pipe. The
 * cases where root gets the full size form group "root" (ctest entry unit.pipe_pool.root,
 * skipped when not root). */
#include "common.h"
#include "harness.h"
#include "pipe_pool.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

static int fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

START_TEST(reuses_empty_pipes)
{
    struct sp_pipe_pool pool;
    sp_pipe_pool_init(&pool, 64 * 1024, 4);
    struct sp_pipe *p = sp_pipe_pool_get(&pool);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(pool.in_use, 1);
    ck_assert_uint_ge(p->size, 4096);
    sp_pipe_pool_put(&pool, p);
    ck_assert_uint_eq(pool.in_use, 0);
    ck_assert_uint_eq(pool.nfree, 1);
    struct sp_pipe *q = sp_pipe_pool_get(&pool);
    ck_assert_ptr_eq(p, q);
    ck_assert_uint_eq(pool.created, 1);
    sp_pipe_pool_put(&pool, q);
    sp_pipe_pool_deinit(&pool);
}
END_TEST

/* Group root (an unprivileged process is covered by shrinks_when_refused). */
START_TEST(grants_the_requested_size_to_root)
{
    struct sp_pipe_pool pool;
    sp_pipe_pool_init(&pool, 1024 * 1024, 4);
    struct sp_pipe *p = sp_pipe_pool_get(&pool);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(p->size, 1024 * 1024);
    ck_assert_int_eq(fcntl(p->wfd, F_GETPIPE_SZ), 1024 * 1024);
    ck_assert_uint_eq(pool.shrunk, 0);
    sp_pipe_pool_put(&pool, p);
    sp_pipe_pool_deinit(&pool);
}
END_TEST

START_TEST(keeps_at_most_max_free)
{
    int base = fd_count();
    struct sp_pipe_pool pool;
    sp_pipe_pool_init(&pool, 64 * 1024, 2);
    struct sp_pipe *p[5];
    for (int i = 0; i < 5; i++) {
        p[i] = sp_pipe_pool_get(&pool);
        ck_assert_ptr_nonnull(p[i]);
    }
    ck_assert_int_eq(fd_count(), base + 10);
    for (int i = 0; i < 5; i++)
        sp_pipe_pool_put(&pool, p[i]);
    ck_assert_uint_eq(pool.nfree, 2);
    ck_assert_int_eq(fd_count(), base + 4);
    sp_pipe_pool_deinit(&pool);
    ck_assert_int_eq(fd_count(), base);
}
END_TEST

START_TEST(kill_never_reuses)
{
    int base = fd_count();
    struct sp_pipe_pool pool;
    sp_pipe_pool_init(&pool, 64 * 1024, 4);
    struct sp_pipe *p = sp_pipe_pool_get(&pool);
    ck_assert_int_eq(write(p->wfd, "left over", 9), 9);
    sp_pipe_pool_kill(&pool, p);
    ck_assert_uint_eq(pool.killed, 1);
    ck_assert_uint_eq(pool.nfree, 0);
    ck_assert_int_eq(fd_count(), base);
    /* The next pipe is a new, empty one. */
    struct sp_pipe *q = sp_pipe_pool_get(&pool);
    char c;
    ck_assert_int_eq(read(q->rfd, &c, 1), -1);
    ck_assert_int_eq(errno, EAGAIN);
    sp_pipe_pool_put(&pool, q);
    sp_pipe_pool_deinit(&pool);
    ck_assert_int_eq(fd_count(), base);
}
END_TEST

START_TEST(prefill_respects_cap)
{
    struct sp_pipe_pool pool;
    sp_pipe_pool_init(&pool, 64 * 1024, 3);
    ck_assert_uint_eq(sp_pipe_pool_prefill(&pool, 8), 3);
    ck_assert_uint_eq(pool.nfree, 3);
    sp_pipe_pool_deinit(&pool);
}
END_TEST

/* As a non-root user, asking for more than fs.pipe-max-size fails with EPERM: the pool must
 * fall back to a smaller pipe and remember to stop asking. Runs in the forked test process. */
START_TEST(shrinks_when_refused)
{
    if (geteuid() == 0)
        ck_assert_int_eq(setuid(65534), 0);
    long max = 0;
    FILE *f = fopen("/proc/sys/fs/pipe-max-size", "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%ld", &max), 1);
    fclose(f);

    struct sp_pipe_pool pool;
    sp_pipe_pool_init(&pool, (uint32_t)max * 4, 4);
    struct sp_pipe *p = sp_pipe_pool_get(&pool);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_le(p->size, (uint32_t)max);
    ck_assert_uint_ge(p->size, 4096);
    ck_assert_uint_eq(pool.shrunk, 1);
    ck_assert_uint_le(pool.try_size, (uint32_t)max);
    /* Still a working pipe. */
    ck_assert_int_eq(write(p->wfd, "x", 1), 1);
    char c;
    ck_assert_int_eq(read(p->rfd, &c, 1), 1);
    sp_pipe_pool_put(&pool, p);
    sp_pipe_pool_deinit(&pool);
}
END_TEST

/* A refusal must not shrink pipes for good: after a while the pool asks for the full size
 * again. Here the earlier refusal is simulated (try_size lowered by hand); root is granted.
 * Group root. */
START_TEST(asks_for_full_size_again)
{
    struct sp_pipe_pool pool;
    sp_pipe_pool_init(&pool, 1024 * 1024, 0);
    pool.try_size = 4096;
    uint32_t last = 0;
    for (int i = 0; i < 600 && last != 1024 * 1024; i++) {
        struct sp_pipe *p = sp_pipe_pool_get(&pool);
        ck_assert_ptr_nonnull(p);
        last = p->size;
        sp_pipe_pool_put(&pool, p); /* max_free 0: closed, so every get creates */
    }
    ck_assert_uint_eq(last, 1024 * 1024);
    ck_assert_uint_eq(pool.try_size, 1024 * 1024);
    sp_pipe_pool_deinit(&pool);
}
END_TEST

START_TEST(reports_fd_exhaustion)
{
    struct rlimit rl = {.rlim_cur = 64, .rlim_max = 1024};
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    /* Use up every free descriptor below the cap. */
    int hogs[64], nhogs = 0;
    while (nhogs < 64 && (hogs[nhogs] = open("/dev/null", O_RDONLY)) != -1)
        nhogs++;
    struct sp_pipe_pool pool;
    sp_pipe_pool_init(&pool, 64 * 1024, 4);
    errno = 0;
    ck_assert_ptr_null(sp_pipe_pool_get(&pool));
    ck_assert_int_eq(errno, EMFILE);
    ck_assert_uint_eq(pool.failures, 1);
    ck_assert_uint_eq(pool.in_use, 0);
    sp_pipe_pool_deinit(&pool);
    /* Give the descriptors back: LeakSanitizer needs some to read /proc at exit. */
    while (nhogs > 0)
        close(hogs[--nhogs]);
}
END_TEST

/* ---- the process-wide budget ----------------------------------------------------------- */

#define MIB (1024u * 1024u)

/* The capacity the kernel reports for p, which is what the budget must count. */
static uint64_t kernel_size(const struct sp_pipe *p)
{
    int got = fcntl(p->wfd, F_GETPIPE_SZ);
    ck_assert_int_gt(got, 0);
    ck_assert_uint_eq((uint32_t)got, p->size);
    return (uint64_t)got;
}

/* Full pipes while they fit, then what is left (8k, then 4k), then none: the direction copies.
 * At every step the budget holds exactly what the kernel granted, within the limit. */
START_TEST(budget_shrinks_then_refuses)
{
    struct sp_pipe_budget b;
    sp_pipe_budget_init(&b, MIB + 12 * 1024);
    struct sp_pipe_pool pool;
    sp_pipe_pool_init(&pool, MIB, 0);
    sp_pipe_pool_set_budget(&pool, &b);
    struct sp_pipe *p[8];
    int n = 0;
    uint64_t sum = 0;
    while (n < 8 && (p[n] = sp_pipe_pool_get(&pool)) != NULL) {
        sum += kernel_size(p[n]);
        ck_assert_uint_eq(b.used, sum);
        n++;
    }
    ck_assert_int_lt(n, 8);
    ck_assert_int_eq(errno, ENOBUFS);
    ck_assert_uint_eq(pool.over_budget, 1);
    ck_assert_uint_eq(pool.failures, 0);
    ck_assert_uint_le(sum, MIB + 12 * 1024);
    if (geteuid() == 0) { /* no per-user pipe limits: the sizes are the budget's alone */
        ck_assert_int_eq(n, 3);
        ck_assert_uint_eq(p[0]->size, MIB);
        ck_assert_uint_eq(p[1]->size, 8192);
        ck_assert_uint_eq(p[2]->size, 4096);
        ck_assert_uint_eq(pool.shrunk, 2);
    }
    /* A one-page pipe still carries bytes. */
    ck_assert_int_eq(write(p[n - 1]->wfd, "x", 1), 1);
    char c;
    ck_assert_int_eq(read(p[n - 1]->rfd, &c, 1), 1);
    for (int i = 0; i < n; i++)
        sp_pipe_pool_put(&pool, p[i]); /* max_free 0: closed */
    ck_assert_uint_eq(b.used, 0);
    /* Given back, the budget serves a full pipe again. */
    struct sp_pipe *q = sp_pipe_pool_get(&pool);
    ck_assert_ptr_nonnull(q);
    ck_assert_uint_eq(b.used, kernel_size(q));
    sp_pipe_pool_kill(&pool, q);
    ck_assert_uint_eq(b.used, 0);
    sp_pipe_pool_deinit(&pool);
}
END_TEST

/* Two workers' pools draw on one budget: what one holds, idle or lent, the other cannot have;
 * an idle pipe given back while the budget is short is closed, not kept, so the other gets it. */
START_TEST(budget_shared_by_pools)
{
    struct sp_pipe_budget b;
    sp_pipe_budget_init(&b, 2 * MIB);
    struct sp_pipe_pool a, o;
    sp_pipe_pool_init(&a, MIB, 8);
    sp_pipe_pool_init(&o, MIB, 8);
    sp_pipe_pool_set_budget(&a, &b);
    sp_pipe_pool_set_budget(&o, &b);
    struct sp_pipe *a1 = sp_pipe_pool_get(&a), *a2 = sp_pipe_pool_get(&a);
    ck_assert(a1 != NULL && a2 != NULL);
    ck_assert_uint_eq(b.used, kernel_size(a1) + kernel_size(a2));
    if (b.used == 2 * MIB) {
        errno = 0;
        ck_assert_ptr_null(sp_pipe_pool_get(&o));
        ck_assert_int_eq(errno, ENOBUFS);
    }
    sp_pipe_pool_put(&a, a1);
    ck_assert_uint_eq(a.nfree, 0); /* the budget was short: closed */
    struct sp_pipe *o1 = sp_pipe_pool_get(&o);
    ck_assert_ptr_nonnull(o1);
    ck_assert_uint_eq(b.used, kernel_size(a2) + kernel_size(o1));
    ck_assert_uint_le(b.used, 2 * MIB);
    sp_pipe_pool_put(&a, a2);
    sp_pipe_pool_put(&o, o1);
    sp_pipe_pool_deinit(&a);
    sp_pipe_pool_deinit(&o);
    ck_assert_uint_eq(b.used, 0);
}
END_TEST

/* Prefilled idle pipes count too, and prefill leaves a quarter of the budget free. */
START_TEST(budget_counts_idle_pipes)
{
    struct sp_pipe_budget b;
    sp_pipe_budget_init(&b, 4 * MIB);
    struct sp_pipe_pool pool;
    sp_pipe_pool_init(&pool, MIB, 8);
    sp_pipe_pool_set_budget(&pool, &b);
    unsigned made = sp_pipe_pool_prefill(&pool, 8);
    ck_assert_uint_ge(made, 1);
    ck_assert_uint_le(made, 3);
    uint64_t idle = 0;
    for (struct sp_pipe *p = pool.free; p != NULL; p = p->next)
        idle += kernel_size(p);
    ck_assert_uint_eq(b.used, idle);
    ck_assert_uint_le(b.used, 3 * MIB);
    sp_pipe_pool_deinit(&pool);
    ck_assert_uint_eq(b.used, 0);
}
END_TEST

/* A lower limit (a reload) applies to the next pipes; the pipes already open keep their size
 * and are let go as they come back. */
START_TEST(budget_limit_lowered)
{
    struct sp_pipe_budget b;
    sp_pipe_budget_init(&b, 8 * MIB);
    struct sp_pipe_pool pool;
    sp_pipe_pool_init(&pool, MIB, 8);
    sp_pipe_pool_set_budget(&pool, &b);
    struct sp_pipe *big = sp_pipe_pool_get(&pool);
    ck_assert_ptr_nonnull(big);
    uint64_t big_size = kernel_size(big);
    sp_pipe_budget_set_limit(&b, big_size + 64 * 1024);
    struct sp_pipe *small = sp_pipe_pool_get(&pool);
    ck_assert_ptr_nonnull(small);
    ck_assert_uint_le(kernel_size(small), 64 * 1024);
    ck_assert_uint_eq(b.used, big_size + small->size);
    ck_assert_uint_le(b.used, b.limit);
    sp_pipe_pool_put(&pool, big);   /* short: closed */
    sp_pipe_pool_put(&pool, small); /* smaller than asked for: closed */
    ck_assert_uint_eq(pool.nfree, 0);
    ck_assert_uint_eq(b.used, 0);
    sp_pipe_pool_deinit(&pool);
}
END_TEST

static void add_main(Suite *s)
{
    TCase *tc = tcase_create("pool");
    tcase_add_test(tc, reuses_empty_pipes);
    tcase_add_test(tc, keeps_at_most_max_free);
    tcase_add_test(tc, kill_never_reuses);
    tcase_add_test(tc, prefill_respects_cap);
    tcase_add_test(tc, shrinks_when_refused);
    tcase_add_test(tc, reports_fd_exhaustion);
    suite_add_tcase(s, tc);
    TCase *budget = tcase_create("budget");
    tcase_add_test(budget, budget_shrinks_then_refuses);
    tcase_add_test(budget, budget_shared_by_pools);
    tcase_add_test(budget, budget_counts_idle_pipes);
    tcase_add_test(budget, budget_limit_lowered);
    suite_add_tcase(s, budget);
}

static void add_root(Suite *s)
{
    TCase *tc = tcase_create("root");
    tcase_add_test(tc, grants_the_requested_size_to_root);
    tcase_add_test(tc, asks_for_full_size_again);
    suite_add_tcase(s, tc);
}

static const struct sph_group groups[] = {
    {.name = NULL, .add = add_main},
    {.name = "root", .needs = SPH_NEED_ROOT, .add = add_root},
};

int main(int argc, char **argv)
{
    return sph_main(argc, argv, "unit.pipe_pool", groups, SP_ARRAY_LEN(groups));
}
