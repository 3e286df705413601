/* faults.c: namespaces, sockets in them, splicer in the proxy's, leak checks and a full-duplex
 * checksummed transfer for the fault-injection suite. See faults.h for the topology. */
#include "faults.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static char ns_names[FX_SIDES][24];

void fx_init_names(void)
{
    static const char tag[FX_SIDES] = {'c', 'p', 's'};
    for (int i = 0; i < FX_SIDES; i++)
        snprintf(ns_names[i], sizeof(ns_names[i]), "fx%dp%c", (int)getpid(), tag[i]);
}

const char *fx_ns(enum fx_side side)
{
    return ns_names[side];
}

int fx_sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(cmd))
        return -1;
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

static void ns_del(const char *name)
{
    char path[300];
    snprintf(path, sizeof(path), "/run/netns/%s", name);
    if (access(path, F_OK) == 0)
        fx_sh("ip netns del %s 2>/dev/null", name);
}

/* Namespaces of an earlier run that was killed before its teardown (a ctest timeout): named
 * fx<PID>p<side> after a process that no longer exists. */
static void del_stale(void)
{
    DIR *d = opendir("/run/netns");
    struct dirent *e;
    for (int i = 0; d != NULL && i < 10000 && (e = readdir(d)) != NULL; i++) {
        int pid;
        char side, end;
        if (strlen(e->d_name) > 20)
            continue;
        if (sscanf(e->d_name, "fx%dp%c%c", &pid, &side, &end) != 2 || pid <= 0)
            continue;
        if (kill(pid, 0) == -1 && errno == ESRCH)
            ns_del(e->d_name);
    }
    if (d != NULL)
        closedir(d);
}

void fx_unchecked_setup(void)
{
    del_stale();
    sph_suite_setup();
}

void fx_unchecked_teardown(void)
{
    for (int i = 0; i < FX_SIDES; i++)
        ns_del(ns_names[i]);
    sph_suite_teardown();
}

static int ns_fd[FX_SIDES] = {-1, -1, -1};

void fx_enter(enum fx_side side)
{
    if (ns_fd[side] < 0) {
        char path[64];
        snprintf(path, sizeof(path), "/run/netns/%s", ns_names[side]);
        ns_fd[side] = open(path, O_RDONLY | O_CLOEXEC);
        ck_assert_msg(ns_fd[side] >= 0, "open %s: %s", path, strerror(errno));
    }
    ck_assert_msg(setns(ns_fd[side], CLONE_NEWNET) == 0, "setns %s: %s", ns_names[side],
                  strerror(errno));
}

void fx_net_up(void)
{
    const char *c = ns_names[FX_CLIENT], *p = ns_names[FX_PROXY], *s = ns_names[FX_SERVER];
    for (int i = 0; i < FX_SIDES; i++) {
        ck_assert_msg(fx_sh("ip netns add %s", ns_names[i]) == 0, "ip netns add %s failed",
                      ns_names[i]);
        ck_assert_int_eq(fx_sh("ip -n %s link set lo up", ns_names[i]), 0);
    }
    int rc = fx_sh("ip -n %s link add vc type veth peer name vp netns %s && "
                   "ip -n %s link add vs type veth peer name vq netns %s && "
                   "ip -n %s addr add " FX_CLIENT_IP "/24 dev vc && "
                   "ip -n %s addr add " FX_PROXY_IP "/24 dev vp && "
                   "ip -n %s addr add 10.231.2.1/24 dev vq && "
                   "ip -n %s addr add " FX_SERVER_IP "/24 dev vs && "
                   "ip -n %s link set vc up && ip -n %s link set vp up && "
                   "ip -n %s link set vq up && ip -n %s link set vs up",
                   c, p, s, p, c, p, p, s, c, p, p, s);
    ck_assert_msg(rc == 0, "could not make the veth pairs");
    fx_enter(FX_PROXY);
}

int fx_listen(enum fx_side side, int port)
{
    fx_enter(side);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int err = errno;
    fx_enter(FX_PROXY);
    ck_assert_msg(fd >= 0, "socket: %s", strerror(err));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    ck_assert_msg(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind :%d: %s", port,
                  strerror(errno));
    ck_assert_int_eq(listen(fd, 128), 0);
    return fd;
}

int fx_connect(int port, int rcvbuf, int timeout_ms)
{
    fx_enter(FX_CLIENT);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int err = errno;
    fx_enter(FX_PROXY);
    if (fd == -1)
        return -err;
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, FX_PROXY_IP, &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == -1 && errno != EINPROGRESS) {
        err = errno;
        close(fd);
        return -err;
    }
    struct pollfd pfd = {fd, POLLOUT, 0};
    if (poll(&pfd, 1, timeout_ms) != 1) {
        close(fd);
        return -ETIMEDOUT;
    }
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1 || err != 0) {
        close(fd);
        return -(err != 0 ? err : EIO);
    }
    return fd;
}

struct sph_backend *fx_backend(enum sph_kind kind, int port)
{
    struct sph_backend *b = sph_backend_new(kind, AF_INET);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(sph_backend_start_fd(b, fx_listen(FX_SERVER, port)), 0);
    return b;
}

pid_t fx_backend_process(enum sph_kind kind, int port, const char *name)
{
    int lfd = fx_listen(FX_SERVER, port);
    pid_t pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) {
        struct sph_backend *b = sph_backend_new(kind, AF_INET);
        if (b == NULL)
            _exit(1);
        snprintf(b->name, sizeof(b->name), "%s", name);
        if (sph_backend_start_fd(b, lfd) != 0)
            _exit(1);
        for (;;)
            pause(); /* until killed */
    }
    close(lfd);
    return pid;
}

void fx_child_kill(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* ---- splicer ---- */

void fx_splicer(struct sph_proc *p, const char *fmt, ...)
{
    char body[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    ck_assert(n > 0 && (size_t)n < sizeof(body));
    char conf[SPH_PATH_MAX];
    ck_assert_int_eq(sph_config_write(conf, "%s", body), 0);
    int rc = sph_splicer_start(p, conf, FX_PORT, FX_START_MS);
    if (rc != 0) {
        char *err = sph_proc_stderr(p);
        ck_abort_msg("splicer did not start (%s); stderr:\n%s", strerror(-rc), err);
    }
    /* The admin endpoint comes up just after the listeners. */
    sph_admin_req(FX_ADMIN_PORT, "GET", "/healthz", NULL, 0);
}

long long fx_metric(const char *series)
{
    return sph_metric(FX_ADMIN_PORT, series);
}

char *fx_status(void)
{
    size_t cap = 256 * 1024;
    char *body = malloc(cap);
    ck_assert_ptr_nonnull(body);
    ck_assert_int_eq(sph_http(FX_ADMIN_PORT, "GET", "/status", body, cap), 200);
    return body;
}

bool fx_sanitized(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    char *maps = sph_read_file(path);
    bool yes = maps != NULL && (strstr(maps, "libasan") != NULL || strstr(maps, "libtsan"));
    free(maps);
    return yes;
}

void fx_expect_rss(pid_t pid, long rss0, long rss, long limit_kb)
{
    if (fx_sanitized(pid)) {
        printf("RSS grew by %ld KiB (a sanitizer build: reported, not judged; the bound is %ld "
               "KiB)\n",
               rss - rss0, limit_kb);
        fflush(stdout);
        return;
    }
    ck_assert_msg(rss - rss0 < limit_kb, "RSS grew by %ld KiB (from %ld), bound %ld KiB",
                  rss - rss0, rss0, limit_kb);
}

#define SESSIONS "splicer_listener_active_connections{listener=\"main\"}"
#define IN_USE   "splicer_pipe_pool_pipes{state=\"in_use\"}"
#define PIPE_MEM "splicer_pipe_memory_bytes"

static long long worker_sessions(void)
{
    return fx_metric("splicer_worker_active_connections{worker=\"0\"}");
}

/* Descriptors of pid that are pipes, and the others. */
static void count_fds(pid_t pid, int *pipes, int *others)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    *pipes = *others = 0;
    DIR *d = opendir(path);
    ck_assert_msg(d != NULL, "%s: %s", path, strerror(errno));
    struct dirent *e;
    for (int i = 0; i < 1000000 && (e = readdir(d)) != NULL; i++) {
        if (e->d_name[0] == '.')
            continue;
        char link[600], target[64] = "";
        snprintf(link, sizeof(link), "%s/%s", path, e->d_name);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        target[n > 0 ? n : 0] = '\0';
        if (strncmp(target, "pipe:", 5) == 0)
            (*pipes)++;
        else
            (*others)++;
    }
    closedir(d);
}

#define IDLE "splicer_pipe_pool_pipes{state=\"idle\"}"

/* The baseline is the fewest descriptors seen over a short settle: each metric read is an
 * admin connection that splicer may not have closed yet when the descriptors are listed, and
 * one counted then would make the case's end (which waits for the same count) look short. */
void fx_baseline(const struct sph_proc *p, struct fx_baseline *b)
{
    ck_assert_int_eq(worker_sessions(), 0);
    ck_assert_int_eq(fx_metric(IN_USE), 0);
    long long idle = fx_metric(IDLE);
    b->pipe_mem = fx_metric(PIPE_MEM);
    int pipes = 0;
    b->fds = INT_MAX;
    for (int i = 0; i < 6; i++) {
        int np, nf;
        sph_sleep_ms(50);
        count_fds(p->pid, &np, &nf);
        if (nf < b->fds) {
            b->fds = nf;
            pipes = np;
        }
    }
    b->other_pipes = pipes - 2 * (int)idle;
}

void fx_expect_no_leak(const struct sph_proc *p, const struct fx_baseline *b, int timeout_ms)
{
    int64_t end = sph_now_ms() + timeout_ms;
    long long sessions, in_use, mem, idle;
    int fds, pipes;
    for (;;) {
        sessions = worker_sessions();
        in_use = fx_metric(IN_USE);
        mem = fx_metric(PIPE_MEM);
        idle = fx_metric(IDLE);
        count_fds(p->pid, &pipes, &fds);
        if ((sessions == 0 && in_use == 0 && fds == b->fds && pipes - 2 * idle == b->other_pipes &&
             mem <= b->pipe_mem) ||
            sph_now_ms() >= end)
            break;
        sph_sleep_ms(100);
    }
    ck_assert_msg(sessions == 0, "%lld sessions still open", sessions);
    ck_assert_msg(in_use == 0, "%lld pipes still lent to sessions", in_use);
    ck_assert_msg(fds == b->fds, "splicer has %d descriptors other than pipes, %d before the case",
                  fds, b->fds);
    ck_assert_msg(pipes - 2 * idle == b->other_pipes,
                  "splicer has %d pipe descriptors for %lld idle pipes (%d others before)", pipes,
                  idle, b->other_pipes);
    ck_assert_msg(mem <= b->pipe_mem, "pipe memory %lld, %lld before the case", mem, b->pipe_mem);
    /* And no sanitizer report (a UBSan one does not stop the process unless told to). */
    ck_assert_int_eq(sph_proc_log_count(p, "Sanitizer"), 0);
    ck_assert_int_eq(sph_proc_log_count(p, "runtime error:"), 0);
}

int fx_log_ends(const struct sph_proc *p, const char *end)
{
    char needle[64];
    snprintf(needle, sizeof(needle), "\"end\":\"%s\"", end);
    return sph_proc_log_count(p, needle);
}

uint64_t fx_pattern_sum(uint64_t seed, uint64_t len)
{
    static char buf[64 * 1024];
    struct sph_sum s;
    sph_sum_init(&s);
    for (uint64_t off = 0; off < len;) {
        size_t n = len - off < sizeof(buf) ? (size_t)(len - off) : sizeof(buf);
        sph_pattern_fill(seed, off, buf, n);
        sph_sum_update(&s, buf, n);
        off += n;
    }
    return sph_sum_value(&s);
}

/* ---- the full-duplex transfer ---- */

#define XCHUNK (64 * 1024)

static void close_rst(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

/* Waits up to timeout_ms until the kernel holds no unacknowledged byte of fd. */
static bool outq_empty(int fd, int timeout_ms)
{
    int64_t end = sph_now_ms() + timeout_ms;
    for (;;) {
        int q = 0;
        if (ioctl(fd, SIOCOUTQ, &q) == -1 || q == 0)
            return true;
        if (sph_now_ms() >= end)
            return false;
        sph_sleep_ms(5);
    }
}

static void duplex_conn(struct fx_duplex *d, int fd)
{
    char rbuf[XCHUNK], wbuf[XCHUNK];
    struct sph_sum sum;
    sph_sum_init(&sum);
    uint64_t got = 0, sent = 0, wpos = 0, wlen = 0;
    bool eof = false, shut = false;
    int err = 0;
    int64_t end = sph_now_ms() + 170000;
    while (!atomic_load(&d->stop) && (!eof || !shut) && err == 0) {
        if (d->reset_after && sent == d->down)
            break;
        if (sent == d->down && !shut) {
            shutdown(fd, SHUT_WR);
            shut = true;
            continue;
        }
        struct pollfd pfd = {fd, (short)((eof ? 0 : POLLIN) | (shut ? 0 : POLLOUT)), 0};
        if (poll(&pfd, 1, 200) < 0 || sph_now_ms() > end) {
            err = -ETIMEDOUT;
            break;
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(fd, rbuf, sizeof(rbuf), 0);
            if (n > 0) {
                sph_sum_update(&sum, rbuf, (size_t)n);
                got += (uint64_t)n;
            } else if (n == 0) {
                eof = true;
            } else if (errno != EAGAIN && errno != EINTR) {
                err = -errno;
            }
        }
        if (!shut && (pfd.revents & POLLOUT)) {
            if (wpos == wlen) {
                wlen = d->down - sent < XCHUNK ? d->down - sent : XCHUNK;
                sph_pattern_fill(d->down_seed, sent, wbuf, wlen);
                wpos = 0;
            }
            ssize_t n = send(fd, wbuf + wpos, wlen - wpos, MSG_NOSIGNAL);
            if (n > 0) {
                wpos += (uint64_t)n;
                sent += (uint64_t)n;
                atomic_store(&d->down_sent, sent);
            } else if (n == -1 && errno != EAGAIN && errno != EINTR) {
                err = -errno;
            }
        }
    }
    atomic_store(&d->up_bytes, got);
    atomic_store(&d->up_sum, sph_sum_value(&sum));
    atomic_store(&d->err, err);
    if (d->reset_after) {
        if (!outq_empty(fd, 10000))
            atomic_store(&d->err, -EBUSY);
        close_rst(fd);
    } else {
        close(fd);
    }
}

static void *duplex_main(void *arg)
{
    struct fx_duplex *d = arg;
    while (!atomic_load(&d->stop)) {
        struct pollfd pfd = {d->lfd, POLLIN, 0};
        if (poll(&pfd, 1, 100) != 1)
            continue;
        int fd = accept4(d->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1)
            continue;
        atomic_store(&d->down_sent, 0);
        duplex_conn(d, fd);
        atomic_fetch_add(&d->done, 1);
    }
    return NULL;
}

void fx_duplex_start(struct fx_duplex *d, int port, uint64_t down, uint64_t down_seed)
{
    d->port = port;
    d->down = down;
    d->down_seed = down_seed;
    atomic_init(&d->stop, false);
    atomic_init(&d->done, 0);
    atomic_init(&d->up_bytes, 0);
    atomic_init(&d->up_sum, 0);
    atomic_init(&d->down_sent, 0);
    atomic_init(&d->err, 0);
    d->lfd = fx_listen(FX_SERVER, port);
    ck_assert_int_eq(pthread_create(&d->thr, NULL, duplex_main, d), 0);
}

void fx_duplex_stop(struct fx_duplex *d)
{
    atomic_store(&d->stop, true);
    pthread_join(d->thr, NULL);
    close(d->lfd);
}

int fx_client_run(int fd, struct fx_client *c)
{
    char rbuf[XCHUNK], wbuf[XCHUNK];
    struct sph_sum sum;
    sph_sum_init(&sum);
    c->mismatch_at = -1;
    c->err = 0;
    atomic_store(&c->sent, 0);
    atomic_store(&c->received, 0);
    uint64_t sent = 0, got = 0, wpos = 0, wlen = 0;
    bool shut = false, eof = false;
    int64_t end = sph_now_ms() + c->timeout_ms;
    while (!eof || !shut) {
        if (sent == c->up && !shut) {
            shutdown(fd, SHUT_WR);
            shut = true;
        }
        if (shut && eof)
            break;
        struct pollfd pfd = {fd, (short)((eof ? 0 : POLLIN) | (shut ? 0 : POLLOUT)), 0};
        int left = (int)(end - sph_now_ms());
        if (left <= 0 || poll(&pfd, 1, left) <= 0) {
            c->err = -ETIMEDOUT;
            break;
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(fd, rbuf, sizeof(rbuf), 0);
            if (n > 0) {
                int64_t bad = sph_pattern_check(c->down_seed, got, rbuf, (size_t)n);
                if (bad >= 0 && c->mismatch_at < 0)
                    c->mismatch_at = (int64_t)got + bad;
                sph_sum_update(&sum, rbuf, (size_t)n);
                got += (uint64_t)n;
                atomic_store(&c->received, got);
            } else if (n == 0) {
                eof = true; /* the upload goes on to its end */
            } else if (errno != EAGAIN && errno != EINTR) {
                c->err = -errno;
                break;
            }
        }
        if (!shut && (pfd.revents & POLLOUT)) {
            if (wpos == wlen) {
                wlen = c->up - sent < XCHUNK ? c->up - sent : XCHUNK;
                sph_pattern_fill(c->up_seed, sent, wbuf, wlen);
                wpos = 0;
            }
            ssize_t n = send(fd, wbuf + wpos, wlen - wpos, MSG_NOSIGNAL);
            if (n > 0) {
                wpos += (uint64_t)n;
                sent += (uint64_t)n;
                atomic_store(&c->sent, sent);
            } else if (n == -1 && errno != EAGAIN && errno != EINTR) {
                c->err = -errno;
                break;
            }
        }
    }
    c->down_sum = sph_sum_value(&sum);
    return c->err;
}

TCase *fx_tcase(const char *name, int timeout_s)
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, fx_unchecked_setup, fx_unchecked_teardown);
    tcase_add_checked_fixture(tc, fx_net_up, sph_cleanup);
    tcase_set_timeout(tc, timeout_s);
    return tc;
}
