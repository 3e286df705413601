/* test_pipe_pool.c: pipes are reused only when empty, the idle cap holds, nothing leaks, and a
 * refused F_SETPIPE_SZ (as for any non-root process) still yields a working, smaller pipe. */
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

START_TEST(grants_the_requested_size_to_root)
{
    if (geteuid() != 0)
        return; /* unprivileged: covered by shrinks_when_refused */
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
 * again. Here the earlier refusal is simulated (try_size lowered by hand); root is granted. */
START_TEST(asks_for_full_size_again)
{
    if (geteuid() != 0)
        return;
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

static Suite *suite(void)
{
    Suite *s = suite_create("pipe_pool");
    TCase *tc = tcase_create("pool");
    tcase_add_test(tc, reuses_empty_pipes);
    tcase_add_test(tc, grants_the_requested_size_to_root);
    tcase_add_test(tc, keeps_at_most_max_free);
    tcase_add_test(tc, kill_never_reuses);
    tcase_add_test(tc, prefill_respects_cap);
    tcase_add_test(tc, shrinks_when_refused);
    tcase_add_test(tc, asks_for_full_size_again);
    tcase_add_test(tc, reports_fd_exhaustion);
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
