/* cases_limits.c: the process's own limits, run out for real: descriptors (a low RLIMIT_NOFILE
 * for splicer alone) and pipes (splicer as an unprivileged user whose per-user pipe pages are
 * used up by another process of the same user). */
#include "faults.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB (1024ull * 1024ull)

/* Points SPLICER_BIN, for the rest of this (forked) test, at a wrapper script: `prefix` then
 * the binary under test. */
static void wrap_splicer(const char *prefix)
{
    const char *real = sph_bin();
    ck_assert_ptr_nonnull(real);
    char path[SPH_PATH_MAX];
    ck_assert_int_eq(sph_config_write(path, "#!/bin/sh\n%s '%s' \"$@\"\n", prefix, real), 0);
    ck_assert_int_eq(chmod(path, 0755), 0);
    ck_assert_int_eq(setenv("SPLICER_BIN", path, 1), 0);
}

/* A transfer of len bytes each way through listener port to a fx_duplex server d (seeds 21/22),
 * checked on both ends. */
static void duplex_xfer(struct fx_duplex *d, int port, uint64_t len)
{
    int done = atomic_load(&d->done);
    d->down = len;
    int fd = fx_connect(port, 0, 5000);
    ck_assert_msg(fd >= 0, "connect: %s", strerror(-fd));
    struct fx_client c = {.up = len, .up_seed = 21, .down_seed = 22, .timeout_ms = 30000};
    int rc = fx_client_run(fd, &c);
    close(fd);
    ck_assert_msg(rc == 0, "client: %s", strerror(-rc));
    ck_assert_uint_eq(atomic_load(&c.received), len);
    ck_assert_int_lt(c.mismatch_at, 0);
    ck_assert_uint_eq(c.down_sum, fx_pattern_sum(22, len));
    ck_assert(sph_wait_atomic_ge(&d->done, done + 1, 10000));
    ck_assert_int_eq(atomic_load(&d->err), 0);
    ck_assert_uint_eq(atomic_load(&d->up_bytes), len);
    ck_assert_uint_eq(atomic_load(&d->up_sum), fx_pattern_sum(21, len));
}

#define CONF_ONE(extra)                                                                            \
    "workers: 1\n"                                                                                 \
    "shutdown_timeout: 1s\n"                                                                       \
    "access_log: stderr\n" extra "admin:\n"                                                        \
    "  listen: 127.0.0.1:9000\n"                                                                   \
    "listeners:\n"                                                                                 \
    "  main:\n"                                                                                    \
    "    listen: " FX_PROXY_IP ":8000\n"                                                           \
    "    upstream: pool\n"

/* ---- 7. fd_exhaustion -------------------------------------------------------------------- */

#define FD_CAP   64
#define FD_TRIES 40

/* splicer under RLIMIT_NOFILE 64 (soft and hard, for it alone): past the cap new clients are
 * closed at once and counted, those it holds keep working, and it serves again once they
 * close. */
START_TEST(fd_exhaustion)
{
    fx_backend(SPH_ECHO, 8001);
    struct fx_duplex d = {0};
    fx_duplex_start(&d, 8002, 0, 22);
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "ulimit -S -n %d && ulimit -H -n %d || exit 125\nexec", FD_CAP,
             FD_CAP);
    wrap_splicer(prefix);
    struct sph_proc p;
    fx_splicer(&p, CONF_ONE("") "  xfer:\n"
                                "    listen: " FX_PROXY_IP ":8100\n"
                                "    upstream: duplex\n"
                                "upstreams:\n"
                                "  pool:\n"
                                "    retries: 0\n"
                                "    servers:\n"
                                "      - address: " FX_SERVER_IP ":8001\n"
                                "  duplex:\n"
                                "    servers:\n"
                                "      - address: " FX_SERVER_IP ":8002\n");
    struct fx_baseline base;
    fx_baseline(&p, &base);

    int fds[FD_TRIES], served = 0, refused = 0;
    for (int i = 0; i < FD_TRIES; i++) {
        fds[i] = fx_connect(FX_PORT, 0, 2000);
        ck_assert_msg(fds[i] >= 0, "connect %d: %s", i, strerror(-fds[i]));
        int rc = sph_ping(fds[i], 2000);
        if (rc == 0) {
            served++;
            continue;
        }
        ck_assert_msg(rc == -EPIPE || rc == -ECONNRESET,
                      "client %d: neither served nor closed cleanly within 2 s: %s", i,
                      strerror(-rc));
        refused++;
        close(fds[i]);
        fds[i] = -1;
    }
    for (int i = 0; i < FD_TRIES; i++) {
        if (fds[i] >= 0)
            ck_assert_int_eq(sph_ping(fds[i], 2000), 0);
    }
    for (int i = 0; i < FD_TRIES; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
    }
    ck_assert_msg(served >= 5 && refused >= 5, "served %d, refused %d of %d", served, refused,
                  FD_TRIES);

    /* Counted: closed at accept (no descriptor for it, or none for its server socket). */
    fx_expect_no_leak(&p, &base, 10000);
    long long fd_rej = fx_metric("splicer_rejected_connections_total{listener=\"main\","
                                 "reason=\"fd_exhausted\"}");
    long long rejected = fx_metric("splicer_listener_rejected_total{listener=\"main\"}");
    sph_sleep_ms(300); /* the access log's last lines */
    int local = fx_log_ends(&p, "local_error");
    printf("fd_exhaustion: RLIMIT_NOFILE %d: %d of %d clients served, %d refused; "
           "rejected{fd_exhausted} %lld, listener_rejected %lld, local_error lines %d\n",
           FD_CAP, served, FD_TRIES, refused, fd_rej, rejected, local);
    fflush(stdout);
    ck_assert_int_eq(fd_rej, refused);
    ck_assert_int_eq(rejected, refused);
    ck_assert_int_eq(local, refused);

    /* Recovered: it serves every client again, and moves bytes intact. */
    for (int i = 0; i < 5; i++) {
        int fd = fx_connect(FX_PORT, 0, 2000);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(sph_ping(fd, 2000), 0);
        close(fd);
    }
    duplex_xfer(&d, 8100, 4 * MIB);
    fx_expect_no_leak(&p, &base, 10000);
    fx_duplex_stop(&d);
}
END_TEST

void fx_add_fd_exhaustion(Suite *s)
{
    TCase *tc = fx_tcase("fd_exhaustion", 60);
    tcase_add_test(tc, fd_exhaustion);
    suite_add_tcase(s, tc);
}

/* ---- 8. pipe_exhaustion ------------------------------------------------------------------ */

/* A uid of no account, for this run alone: the kernel counts pipe pages per user, so a hog as
 * `nobody` would shrink the pipes of every other nobody process on the host (other test suites).
 */
static uid_t run_uid(void)
{
    return (uid_t)(2000000000u + (unsigned)getpid() % 1000000u);
}

#define HOG_PIPES 1100 /* 1024 default pipes of 16 pages fill fs.pipe-user-pages-soft (16384) */

/* A process as uid that owns more pipe pages than fs.pipe-user-pages-soft allows a user, so
 * every new pipe of that user gets two pages and may not grow. Returns its pid once it holds
 * them. */
static pid_t pipe_hog(uid_t uid)
{
    long soft = 0;
    char *text = sph_read_file("/proc/sys/fs/pipe-user-pages-soft");
    ck_assert_ptr_nonnull(text);
    soft = atol(text);
    free(text);
    ck_assert_msg(soft > 0 && soft <= 16384,
                  "fs.pipe-user-pages-soft is %ld: the hog is sized for the default 16384", soft);
    int ready[2];
    ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
    pid_t pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) {
        struct rlimit rl = {4096, 4096};
        char ok = 'n';
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0 && setgroups(0, NULL) == 0 && setgid(uid) == 0 &&
            setuid(uid) == 0) {
            int fds[2] = {-1, -1};
            for (int i = 0; i < HOG_PIPES && pipe2(fds, O_CLOEXEC) == 0; i++)
                ;
            /* The last one was cut to two pages: the user is over its soft limit. */
            ok = fds[1] >= 0 && fcntl(fds[1], F_GETPIPE_SZ) <= 2 * 4096 ? 'y' : 'n';
        }
        if (write(ready[1], &ok, 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(ready[1]);
    char ok = 0;
    ck_assert_int_eq(read(ready[0], &ok, 1), 1);
    close(ready[0]);
    ck_assert_msg(ok == 'y', "the hog could not use up uid %u's pipe pages", (unsigned)uid);
    return pid;
}

#define XFER_LEN (8 * MIB)

/* splicer as an unprivileged user whose pipe pages are used up (by another process of that
 * user): the kernel gives it two-page pipes it may not grow, and it relays through them intact,
 * counted as shrunk. With those small pipes and a pipe budget they fill, further directions
 * copy (counted), intact; once the pipes come back, directions splice again. */
START_TEST(pipe_exhaustion)
{
    uid_t uid = run_uid();
    pid_t hog = pipe_hog(uid);
    char prefix[256];
    snprintf(prefix, sizeof(prefix), "exec '%s' --reuid=%u --regid=%u --clear-groups --",
             sph_tool("setpriv"), (unsigned)uid, (unsigned)uid);
    wrap_splicer(prefix);
    struct fx_duplex d = {0};
    fx_duplex_start(&d, 8001, 0, 22);

    /* 1: the kernel's limit. */
    struct sph_proc p;
    fx_splicer(&p, CONF_ONE("") "upstreams:\n"
                                "  pool:\n"
                                "    servers:\n"
                                "      - address: " FX_SERVER_IP ":8001\n");
    struct fx_baseline base;
    fx_baseline(&p, &base);
    duplex_xfer(&d, FX_PORT, XFER_LEN);
    long long shrunk = fx_metric("splicer_pipes_shrunk_total");
    long long created = fx_metric("splicer_pipes_created_total");
    long long spliced = fx_metric("splicer_splice_bytes_total");
    long long mem = fx_metric("splicer_pipe_memory_bytes");
    long long idle = fx_metric("splicer_pipe_pool_pipes{state=\"idle\"}");
    printf("pipe_exhaustion: uid %u over its pipe pages: %lld of %lld pipes shrunk, %lld idle "
           "pipes hold %lld bytes; 8 MiB each way spliced (%lld bytes)\n",
           (unsigned)uid, shrunk, created, idle, mem, spliced);
    fflush(stdout);
    ck_assert_int_ge(created, 1);
    ck_assert_int_eq(shrunk, created);
    ck_assert_int_ge(spliced, 2 * (long long)XFER_LEN);
    fx_expect_no_leak(&p, &base, 10000);
    sph_proc_kill(&p);

    /* 2: small pipes, and a budget of two of them: two stalled downloads hold it. */
    struct sph_backend *src = fx_backend(SPH_SOURCE, 8002);
    src->source_len = 512 * MIB;
    fx_splicer(
        &p, CONF_ONE(
                "pipe_size: 4k\npipe_memory_max: 8k\npipe_pool_max: 0\n") "  stall:\n"
                                                                          "    listen: " FX_PROXY_IP
                                                                          ":8100\n"
                                                                          "    upstream: source\n"
                                                                          "upstreams:\n"
                                                                          "  pool:\n"
                                                                          "    servers:\n"
                                                                          "      - "
                                                                          "address: " FX_SERVER_IP
                                                                          ":8001\n"
                                                                          "  source:\n"
                                                                          "    servers:\n"
                                                                          "      - "
                                                                          "address: " FX_SERVER_IP
                                                                          ":8002\n");
    fx_baseline(&p, &base);
    int stalled[2];
    for (int i = 0; i < 2; i++) {
        stalled[i] = fx_connect(8100, 0, 5000);
        ck_assert_int_ge(stalled[i], 0);
    }
    for (int i = 0; i < 100 && fx_metric("splicer_pipe_memory_bytes") < 8192; i++)
        sph_sleep_ms(50);
    ck_assert_int_eq(fx_metric("splicer_pipe_memory_bytes"), 8192);
    long long fallbacks0 = fx_metric("splicer_copy_fallbacks_total");
    duplex_xfer(&d, FX_PORT, XFER_LEN);
    long long fallbacks = fx_metric("splicer_copy_fallbacks_total") - fallbacks0;
    long long over = fx_metric("splicer_pipes_over_budget_total");
    long long copied = fx_metric("splicer_copy_bytes_total");
    printf("pipe_exhaustion: budget held by stalled downloads: %lld directions copied (%lld "
           "bytes), %lld pipes over budget\n",
           fallbacks, copied, over);
    ck_assert_int_eq(fallbacks, 2);
    ck_assert_int_ge(over, 2);
    ck_assert_int_ge(copied, 2 * (long long)XFER_LEN);

    /* Recovered: the stalled clients go, their pipes with them, and the next one splices. */
    for (int i = 0; i < 2; i++)
        sph_abort(stalled[i]);
    for (int i = 0; i < 100 && fx_metric("splicer_pipe_memory_bytes") > 0; i++)
        sph_sleep_ms(50);
    /* (Aborting them counts a fallback or two of their own: the client's side is read once
     * more after its reset, and that read finds no pipe left while the other holds one.) */
    long long spliced0 = fx_metric("splicer_splice_bytes_total");
    fallbacks0 = fx_metric("splicer_copy_fallbacks_total");
    duplex_xfer(&d, FX_PORT, XFER_LEN);
    ck_assert_int_eq(fx_metric("splicer_copy_fallbacks_total"), fallbacks0);
    ck_assert_int_ge(fx_metric("splicer_splice_bytes_total") - spliced0, 2 * (long long)XFER_LEN);
    fx_expect_no_leak(&p, &base, 10000);
    fx_duplex_stop(&d);
    fx_child_kill(hog);
}
END_TEST

void fx_add_pipe_exhaustion(Suite *s)
{
    TCase *tc = fx_tcase("pipe_exhaustion", 90);
    tcase_add_test(tc, pipe_exhaustion);
    suite_add_tcase(s, tc);
}
