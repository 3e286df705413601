/* test_limits.c: per-listener limits as a client sees them: max_connections, connect_timeout
 * against a server that never answers the handshake, idle_timeout, all servers refusing, and the
 * open-file cap; and the process's limits: pipe memory under stalled readers. */
#include "common.h"
#include "harness.h"

#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define START_MS 10000

static void teardown(void)
{
    sph_cleanup();
}

/* Starts splicer: one listener with the extra listener lines `lopts`, one pool with `servers`
 * (already formatted "      - address: ...\n" lines) and `retries`. Returns the listen port. */
static int proxy_start(struct sph_proc *p, const char *lopts, const char *servers, int retries)
{
    char conf[SPH_PATH_MAX];
    int port = sph_free_port(AF_INET);
    int rc = sph_config_write(conf,
                              "workers: 1\n"
                              "shutdown_timeout: 1s\n"
                              "listeners:\n"
                              "  main:\n"
                              "    listen: 127.0.0.1:%d\n"
                              "    upstream: pool\n"
                              "%s"
                              "upstreams:\n"
                              "  pool:\n"
                              "    retries: %d\n"
                              "    servers:\n%s",
                              port, lopts, retries, servers);
    ck_assert_int_eq(rc, 0);
    rc = sph_splicer_start(p, conf, port, START_MS);
    if (rc != 0) {
        char *err = sph_proc_stderr(p);
        ck_abort_msg("splicer did not start listening (%s); stderr:\n%s", strerror(-rc), err);
    }
    return port;
}

static void one_server(char *buf, size_t cap, int port)
{
    snprintf(buf, cap, "      - address: 127.0.0.1:%d\n", port);
}

static struct sph_backend *echo_start(void)
{
    struct sph_backend *b = sph_backend_new(SPH_ECHO, AF_INET);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(sph_backend_start(b), 0);
    return b;
}

static int served(int port, int timeout_ms)
{
    int fd = sph_connect(AF_INET, port, 2000);
    ck_assert_msg(fd >= 0, "connect: %s", strerror(-fd));
    int rc = sph_ping(fd, timeout_ms);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* max_connections: 2. A third concurrent client is accepted and closed at once without a
 * backend connection; once one of the two leaves, a new client is served again. */
START_TEST(max_connections)
{
    struct sph_backend *echo = echo_start();
    struct sph_proc p;
    char servers[128];
    one_server(servers, sizeof(servers), echo->port);
    int port = proxy_start(&p, "    max_connections: 2\n", servers, 0);
    int c1 = served(port, 2000), c2 = served(port, 2000);
    ck_assert_msg(c1 >= 0 && c2 >= 0, "first two clients not served: %d %d", c1, c2);
    int c3 = sph_connect(AF_INET, port, 2000);
    ck_assert_msg(c3 >= 0, "third client: connect: %s", strerror(-c3));
    int64_t t0 = sph_now_ms();
    int rc = sph_wait_closed(c3, 1000);
    ck_assert_msg(rc == 0 || rc == -ECONNRESET, "third client not closed within 1 s: %s",
                  strerror(-rc));
    ck_assert_int_le(sph_now_ms() - t0, 1000);
    close(c3);
    sph_sleep_ms(100);
    ck_assert_int_eq(atomic_load(&echo->accepted), 2);
    close(c1);
    ck_assert(sph_wait_atomic_ge(&echo->closed, 1, 2000));
    /* The slot frees when splicer finishes closing c1's session, a moment after the backend
     * sees it go; allow that moment with a few bounded attempts. */
    int c4 = -1;
    for (int i = 0; i < 20 && c4 < 0; i++) {
        c4 = served(port, 1000);
        if (c4 < 0)
            sph_sleep_ms(50);
    }
    ck_assert_msg(c4 >= 0, "no new client served after one of two left: %s", strerror(-c4));
    ck_assert_int_eq(sph_ping(c2, 2000), 0);
    close(c2);
    close(c4);
}
END_TEST

/* connect_timeout against a blackhole (SYNs dropped; see harness.h): the client is closed after
 * about connect_timeout, not before and not much later. */
START_TEST(connect_timeout)
{
    struct sph_blackhole bh;
    ck_assert_int_eq(sph_blackhole_open(&bh), 0);
    int probe = sph_connect(AF_INET, bh.port, 300);
    if (probe >= 0)
        close(probe);
    ck_assert_msg(probe == -ETIMEDOUT, "blackhole is not one here (connect: %s)",
                  probe >= 0 ? "succeeded" : strerror(-probe));
    struct sph_proc p;
    char servers[128];
    one_server(servers, sizeof(servers), bh.port);
    int port = proxy_start(&p, "    connect_timeout: 500ms\n", servers, 0);
    int fd = sph_connect(AF_INET, port, 2000);
    ck_assert_int_ge(fd, 0);
    int64_t t0 = sph_now_ms();
    int rc = sph_wait_closed(fd, 3000);
    int64_t dt = sph_now_ms() - t0;
    ck_assert_msg(rc == 0 || rc == -ECONNRESET, "client not closed within 3 s: %s", strerror(-rc));
    ck_assert_msg(dt >= 400 && dt <= 2000, "closed after %lld ms, connect_timeout is 500 ms",
                  (long long)dt);
    close(fd);
    sph_blackhole_close(&bh);
}
END_TEST

/* idle_timeout: 300ms. A silent connection is closed within about that; */
START_TEST(idle_timeout_closes)
{
    struct sph_backend *echo = echo_start();
    struct sph_proc p;
    char servers[128];
    one_server(servers, sizeof(servers), echo->port);
    int port = proxy_start(&p, "    idle_timeout: 300ms\n", servers, 0);
    int fd = served(port, 2000);
    ck_assert_int_ge(fd, 0);
    int64_t t0 = sph_now_ms();
    int rc = sph_wait_closed(fd, 3000);
    int64_t dt = sph_now_ms() - t0;
    ck_assert_msg(rc == 0 || rc == -ECONNRESET, "idle client not closed within 3 s: %s",
                  strerror(-rc));
    ck_assert_msg(dt >= 250 && dt <= 1500, "idle connection closed after %lld ms (timeout 300)",
                  (long long)dt);
    close(fd);
}
END_TEST

/* ... while one with traffic every 100 ms outlives it several times over. */
START_TEST(idle_timeout_spares_busy)
{
    struct sph_backend *echo = echo_start();
    struct sph_proc p;
    char servers[128];
    one_server(servers, sizeof(servers), echo->port);
    int port = proxy_start(&p, "    idle_timeout: 300ms\n", servers, 0);
    int fd = served(port, 2000);
    ck_assert_int_ge(fd, 0);
    int64_t t0 = sph_now_ms();
    for (int i = 0; i < 12; i++) {
        sph_sleep_ms(100);
        int rc = sph_ping(fd, 1000);
        ck_assert_msg(rc == 0, "busy connection broken after %lld ms: %s",
                      (long long)(sph_now_ms() - t0), strerror(-rc));
    }
    ck_assert_int_ge(sph_now_ms() - t0, 1000);
    close(fd);
}
END_TEST

/* Every server refuses: the client is closed promptly, not left hanging. */
START_TEST(all_refused)
{
    struct sph_proc p;
    char servers[256];
    snprintf(servers, sizeof(servers),
             "      - address: 127.0.0.1:%d\n"
             "      - address: 127.0.0.1:%d\n",
             sph_free_port(AF_INET), sph_free_port(AF_INET));
    int port = proxy_start(&p, "", servers, 2);
    int fd = sph_connect(AF_INET, port, 2000);
    ck_assert_int_ge(fd, 0);
    sph_write_all(fd, "hello\n", 6, 1000); /* may already fail with EPIPE: fine */
    int64_t t0 = sph_now_ms();
    int rc = sph_wait_closed(fd, 1000);
    ck_assert_msg(rc == 0 || rc == -ECONNRESET, "client not closed within 1 s: %s", strerror(-rc));
    ck_assert_int_le(sph_now_ms() - t0, 1000);
    close(fd);
}
END_TEST

/* Points SPLICER_BIN, for the rest of this (forked) test, at a wrapper that runs the binary
 * under test with RLIMIT_NOFILE soft/hard. Only the spawned process gets them: lowering the
 * hard limit of the test itself could not be undone without CAP_SYS_RESOURCE. */
static void nofile_wrapper(int soft, int hard)
{
    const char *real = sph_bin();
    ck_assert_ptr_nonnull(real);
    char path[SPH_PATH_MAX];
    ck_assert_int_eq(sph_config_write(path,
                                      "#!/bin/sh\n"
                                      "ulimit -S -n %d && ulimit -H -n %d || exit 125\n"
                                      "exec '%s' \"$@\"\n",
                                      soft, hard, real),
                     0);
    ck_assert_int_eq(chmod(path, 0755), 0);
    ck_assert_int_eq(setenv("SPLICER_BIN", path, 1), 0);
}

/* CPU seconds (user + system) the process has used, from /proc/PID/stat, in clock ticks. */
static long cpu_ticks(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    char *text = sph_read_file(path);
    ck_assert_ptr_nonnull(text);
    const char *p = strrchr(text, ')'); /* the command name may hold spaces */
    ck_assert_ptr_nonnull(p);
    unsigned long utime = 0, stime = 0;
    /* after ')': state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
     */
    int n = sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime);
    free(text);
    ck_assert_int_eq(n, 2);
    return (long)(utime + stime);
}

/* At the open-file cap: connections already open keep working, new ones are refused cleanly
 * (closed at once, not left hanging), splicer does not spin, and it serves again once
 * connections close. The cap is made small by lowering RLIMIT_NOFILE, soft and hard (splicer
 * raises the soft limit to the hard one), for the spawned process only. */
START_TEST(fd_cap)
{
    enum { CAP = 48, TRIES = 40 };
    struct sph_backend *b = echo_start();
    char servers[64];
    one_server(servers, sizeof(servers), b->port);

    nofile_wrapper(CAP, CAP);
    struct sph_proc p;
    int port = proxy_start(&p, "", servers, 0);

    int fds[TRIES];
    int open_ok = 0, refused = 0;
    for (int i = 0; i < TRIES; i++) {
        fds[i] = sph_connect(AF_INET, port, 1000);
        ck_assert_int_ge(fds[i], 0); /* the kernel completes the handshake from the backlog */
        int rc = sph_ping(fds[i], 1000);
        if (rc == 0) {
            open_ok++;
            continue;
        }
        ck_assert_msg(rc == -EPIPE || rc == -ECONNRESET,
                      "connection %d: neither served nor "
                      "closed cleanly within 1 s: %s",
                      i, strerror(-rc));
        refused++;
        close(fds[i]);
        fds[i] = -1;
    }
    ck_assert_msg(open_ok >= 5 && refused >= 5, "served %d, refused %d of %d", open_ok, refused,
                  TRIES);

    /* At the cap, with a client waiting: no busy loop (well under 20% of a CPU). */
    int waiting = sph_connect(AF_INET, port, 1000);
    long before = cpu_ticks(p.pid);
    sph_sleep_ms(1000);
    long spent = cpu_ticks(p.pid) - before;
    ck_assert_msg(spent * 1000 / sysconf(_SC_CLK_TCK) < 200, "splicer used %ld ticks at the cap",
                  spent);
    if (waiting >= 0)
        close(waiting);

    /* The connections it kept still relay. */
    for (int i = 0; i < TRIES; i++) {
        if (fds[i] >= 0)
            ck_assert_int_eq(sph_ping(fds[i], 1000), 0);
    }
    for (int i = 0; i < TRIES; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
    }
    /* ... and it serves again by itself once they are gone. */
    sph_sleep_ms(300);
    int again = 0;
    for (int i = 0; i < 5; i++) {
        int fd = sph_connect(AF_INET, port, 1000);
        if (fd >= 0 && sph_ping(fd, 1000) == 0)
            again++;
        if (fd >= 0)
            close(fd);
    }
    ck_assert_int_eq(again, 5);
}
END_TEST

/* ---- file descriptors -------------------------------------------------------------------- */

/* The soft "Max open files" of process pid, from /proc/PID/limits; -1 if not found. */
static long long proc_soft_nofile(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
    char *text = sph_read_file(path);
    ck_assert_ptr_nonnull(text);
    const char *line = strstr(text, "Max open files");
    long long soft = -1;
    if (line != NULL && sscanf(line + strlen("Max open files"), " %lld", &soft) != 1)
        soft = -1;
    free(text);
    return soft;
}

#define FD_CONF                                                                                    \
    "workers: 1\n"                                                                                 \
    "listeners:\n"                                                                                 \
    "  main:\n"                                                                                    \
    "    listen: 127.0.0.1:%d\n"                                                                   \
    "    upstream: pool\n"                                                                         \
    "    max_connections: %d\n"                                                                    \
    "upstreams:\n"                                                                                 \
    "  pool:\n"                                                                                    \
    "    servers:\n"                                                                               \
    "      - address: 127.0.0.1:%d\n"

/* Started with a soft RLIMIT_NOFILE of 256 under a hard one of 1024, splicer raises the soft
 * limit to 1024 and says so. max_connections: 1000 cannot be met within 1024 descriptors (6 per
 * connection): a warning at start and again after a SIGHUP; a reload to max_connections: 50,
 * which fits, does not warn. */
START_TEST(fd_limit_raised_and_checked)
{
    enum { SOFT = 256, HARD = 1024 };
    struct sph_backend *b = echo_start();
    struct rlimit here;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &here), 0);
    ck_assert_msg(here.rlim_max >= HARD, "the hard limit here is %llu",
                  (unsigned long long)here.rlim_max);
    char conf[SPH_PATH_MAX];
    int port = sph_free_port(AF_INET);
    ck_assert_int_eq(sph_config_write(conf, FD_CONF, port, 1000, b->port), 0);
    nofile_wrapper(SOFT, HARD);
    struct sph_proc p;
    ck_assert_int_eq(sph_splicer_start(&p, conf, port, START_MS), 0);

    ck_assert_int_eq(proc_soft_nofile(p.pid), HARD);
    ck_assert(sph_proc_wait_log(&p, "raised the soft limit from 256 to 1024", 1, 2000));
    const char *warning = "the listeners' max_connections (1000 in all) need up to 6000";
    ck_assert(sph_proc_wait_log(&p, warning, 1, 2000));
    int fd = served(port, 2000);
    ck_assert_int_ge(fd, 0);
    close(fd);

    ck_assert_int_eq(sph_proc_signal_wait_log(&p, SIGHUP, "reloaded ", 5000), 0);
    ck_assert(sph_proc_wait_log(&p, warning, 2, 2000));
    ck_assert_int_eq(sph_proc_log_count(&p, "file descriptors (reload):"), 1);

    ck_assert_int_eq(sph_config_rewrite(conf, FD_CONF, port, 50, b->port), 0);
    ck_assert_int_eq(sph_proc_signal_wait_log(&p, SIGHUP, "reloaded ", 5000), 0);
    sph_sleep_ms(100);
    ck_assert_int_eq(sph_proc_log_count(&p, "need up to"), 2);
}
END_TEST

/* ---- pipe memory ------------------------------------------------------------------------- */

#define MIB (1024 * 1024)

/* What the kernel holds in the pipes of process `pid`: the capacity of each distinct pipe
 * (F_GETPIPE_SZ) and the bytes queued in it (FIONREAD), read by opening /proc/PID/fd/N, which
 * reaches the same pipe without touching its contents. Returns 0 or -errno; no assertion, as it
 * also runs in a forked child. */
static int proc_pipes_scan(pid_t pid, long long out[2])
{
    char dir[64], path[384], link[64];
    unsigned long seen[1024];
    size_t nseen = 0;
    out[0] = out[1] = 0;
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (d == NULL)
        return -errno;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        ssize_t n = readlink(path, link, sizeof(link) - 1);
        if (n == -1 && (errno == EACCES || errno == EPERM)) {
            rc = -errno; /* unreadable: report it rather than count zero bytes */
            break;
        }
        unsigned long ino;
        if (n <= 0 || (link[n] = '\0', sscanf(link, "pipe:[%lu]", &ino)) != 1)
            continue;
        bool dup = false;
        for (size_t i = 0; i < nseen && !dup; i++)
            dup = seen[i] == ino;
        if (dup || nseen == SP_ARRAY_LEN(seen))
            continue;
        seen[nseen++] = ino;
        int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd == -1)
            continue; /* closed meanwhile */
        int size = fcntl(fd, F_GETPIPE_SZ), q = 0;
        if (size > 0)
            out[0] += size;
        if (ioctl(fd, FIONREAD, &q) == 0)
            out[1] += q;
        close(fd);
    }
    closedir(d);
    return rc;
}

/* proc_pipes_scan as the owner of `pid`. Opening another user's /proc/PID/fd/N takes
 * CAP_SYS_PTRACE, which root in a container usually lacks: when splicer runs as another user
 * (the *_unprivileged entries), a child takes that user's ids, as ptrace permits, and scans. */
static void proc_pipes(pid_t pid, long long *capacity, long long *queued)
{
    char dir[64];
    struct stat st;
    long long res[3] = {0, 0, -EIO}; /* capacity, queued, rc */
    snprintf(dir, sizeof(dir), "/proc/%d", (int)pid);
    ck_assert_int_eq(stat(dir, &st), 0);
    if (st.st_uid == geteuid()) {
        res[2] = proc_pipes_scan(pid, res);
    } else {
        int fds[2];
        ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
        pid_t child = fork();
        ck_assert_int_ge(child, 0);
        if (child == 0) {
            res[2] = setgroups(0, NULL) == 0 && setgid(st.st_gid) == 0 && setuid(st.st_uid) == 0
                         ? proc_pipes_scan(pid, res)
                         : -errno;
            _exit(write(fds[1], res, sizeof(res)) == (ssize_t)sizeof(res) ? 0 : 1);
        }
        close(fds[1]);
        ssize_t n = read(fds[0], res, sizeof(res));
        close(fds[0]);
        waitpid(child, NULL, 0);
        if (n != (ssize_t)sizeof(res))
            res[2] = -EIO;
    }
    ck_assert_msg(res[2] == 0, "cannot read the pipes of splicer (pid %d, uid %u) from uid %u: %s",
                  (int)pid, (unsigned)st.st_uid, (unsigned)geteuid(), strerror((int)-res[2]));
    *capacity = res[0];
    *queued = res[1];
}

/* A client whose receive buffer is a few KiB, so what the server sends piles up in splicer. */
static int stalled_client(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    int small = 4096;
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

#define PIPE_BUDGET_CONF                                                                           \
    "workers: 2\n"                                                                                 \
    "pipe_size: 1m\n"                                                                              \
    "pipe_memory_max: %s\n"                                                                        \
    "admin:\n"                                                                                     \
    "  listen: 127.0.0.1:%d\n"                                                                     \
    "listeners:\n"                                                                                 \
    "  main:\n"                                                                                    \
    "    listen: 127.0.0.1:%d\n"                                                                   \
    "    upstream: pool\n"                                                                         \
    "upstreams:\n"                                                                                 \
    "  pool:\n"                                                                                    \
    "    servers:\n"                                                                               \
    "      - address: 127.0.0.1:%d\n"

/* 32 downloads whose readers stall, against pipe_memory_max: 4m with pipe_size: 1m. Without a
 * budget each stalled direction pins a full 1 MiB pipe (32 MiB here; 10 GiB for 10,000). With it,
 * the pipes the kernel holds for splicer, and the gauge, stay within 4 MiB while the downloads
 * are stalled; directions past the budget copy instead. Once the readers read, every byte
 * arrives, checked against the pattern. A SIGHUP that raises the budget applies to new pipes. */
START_TEST(pipe_memory_budget)
{
    enum { CONNS = 32, LEN = 3 * MIB, BUDGET = 4 * MIB, SLACK = 512 * 1024 };
    struct sph_backend *src = sph_backend_new(SPH_SOURCE, AF_INET);
    ck_assert_ptr_nonnull(src);
    src->source_len = LEN;
    src->seed = 99;
    ck_assert_int_eq(sph_backend_start(src), 0);
    char conf[SPH_PATH_MAX];
    int port = sph_free_port(AF_INET), admin = sph_free_port(AF_INET);
    ck_assert_int_eq(sph_config_write(conf, PIPE_BUDGET_CONF, "4m", admin, port, src->port), 0);
    struct sph_proc p;
    ck_assert_int_eq(sph_splicer_start(&p, conf, port, START_MS), 0);
    ck_assert_int_eq(sph_metric(admin, "splicer_pipe_memory_limit_bytes"), BUDGET);

    int fds[CONNS];
    for (int i = 0; i < CONNS; i++)
        fds[i] = stalled_client(port);
    ck_assert(sph_wait_atomic_ge(&src->accepted, CONNS, 5000));
    /* The stall builds up: sample the gauge and the kernel's view for 1.5 s. */
    long long most = 0, most_queued = 0;
    for (int t = 0; t < 15; t++) {
        sph_sleep_ms(100);
        long long used = sph_metric(admin, "splicer_pipe_memory_bytes"), cap, queued;
        proc_pipes(p.pid, &cap, &queued);
        ck_assert_msg(used >= 0 && used <= BUDGET, "splicer_pipe_memory_bytes %lld", used);
        ck_assert_msg(cap <= BUDGET + SLACK, "the kernel holds %lld bytes of pipes for splicer",
                      cap);
        most = SP_MAX(most, used);
        most_queued = SP_MAX(most_queued, queued);
    }
    /* Stalled bytes sat in the pipes. As root, the budget is what bound them: it was reached and
     * later directions were refused a pipe. Unprivileged (the *_unprivileged run), the kernel's
     * per-user limit, which every process of that user on the host shares, may bind first and
     * hand out 2-page pipes instead; then the pipes were shrunk. */
    long long over = sph_metric(admin, "splicer_pipes_over_budget_total");
    long long shrunk = sph_metric(admin, "splicer_pipes_shrunk_total");
    bool budget_bound = most >= BUDGET / 2 && over >= 1;
    bool as_root = getenv("SPLICER_REAL_BIN") == NULL && geteuid() == 0;
    ck_assert_msg(most_queued >= 64 * 1024 && (budget_bound || (!as_root && shrunk >= 1)),
                  "queued %lld; gauge at most %lld, over budget %lld, shrunk %lld (as root: %d)",
                  most_queued, most, over, shrunk, as_root);

    /* The readers read: every byte of every download arrives intact. */
    char *buf = malloc(LEN + 1);
    ck_assert_ptr_nonnull(buf);
    for (int i = 0; i < CONNS; i++) {
        int big = MIB;
        setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
        ck_assert_int_eq(fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK), 0);
        ssize_t got = sph_read_to_eof(fds[i], buf, LEN + 1, 20000);
        ck_assert_msg(got == LEN, "download %d: %zd of %d bytes", i, got, LEN);
        ck_assert_int_eq(sph_pattern_check(src->seed, 0, buf, LEN), -1);
        close(fds[i]);
    }
    free(buf);
    sph_expect_metric(admin, "splicer_pipe_pool_pipes{state=\"in_use\"}", 0);

    /* A reload with a larger budget: the limit moves, and new pipes may use it. */
    ck_assert_int_eq(sph_config_rewrite(conf, PIPE_BUDGET_CONF, "64m", admin, port, src->port), 0);
    ck_assert_int_eq(sph_proc_signal_wait_log(&p, SIGHUP, "reloaded ", 5000), 0);
    ck_assert_int_eq(sph_metric(admin, "splicer_pipe_memory_limit_bytes"), 64 * MIB);
    ck_assert_int_le(sph_metric(admin, "splicer_pipe_memory_bytes"), 64 * MIB);
}
END_TEST

static Suite *limits_suite(void)
{
    Suite *s = suite_create("limits");
    TCase *tc = tcase_create("limits");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, max_connections);
    tcase_add_test(tc, connect_timeout);
    tcase_add_test(tc, idle_timeout_closes);
    tcase_add_test(tc, idle_timeout_spares_busy);
    tcase_add_test(tc, all_refused);
    tcase_add_test(tc, fd_cap);
    tcase_add_test(tc, pipe_memory_budget);
    tcase_add_test(tc, fd_limit_raised_and_checked);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(limits_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
