/* harness.c: process, port, temp file, /proc and data helpers for the integration suites.
 * The loopback backends and client I/O live at the end of the file; see harness.h. */
#include "harness.h"

#include <check.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REG_MAX   64
#define ARGV_MAX  30
#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* What sph_cleanup() undoes. Only the test's main thread registers, so no lock. */
static struct {
    char files[REG_MAX][SPH_PATH_MAX];
    size_t nfiles;
    pid_t pids[REG_MAX]; /* spawned and not yet reaped; pids, as the sph_proc may be gone */
    size_t npids;
    struct sph_backend *backends[REG_MAX]; /* owned */
    size_t nbackends;
} reg;

static void reg_file(const char *path)
{
    if (reg.nfiles < REG_MAX)
        snprintf(reg.files[reg.nfiles++], SPH_PATH_MAX, "%s", path);
}

int64_t sph_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sph_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

bool sph_wait_until(bool (*cond)(void *arg), void *arg, int timeout_ms)
{
    int64_t deadline = sph_now_ms() + timeout_ms;
    for (;;) {
        if (cond(arg))
            return true;
        if (sph_now_ms() >= deadline)
            return false;
        sph_sleep_ms(5);
    }
}

struct atomic_ge {
    atomic_int *v;
    int target;
};

static bool atomic_ge_cond(void *arg)
{
    struct atomic_ge *c = arg;
    return atomic_load(c->v) >= c->target;
}

bool sph_wait_atomic_ge(atomic_int *v, int target, int timeout_ms)
{
    struct atomic_ge c = {v, target};
    return sph_wait_until(atomic_ge_cond, &c, timeout_ms);
}

/* ---- temp files, ports, files ---- */

/* Set in Check's parent by sph_suite_setup() and inherited by each forked test. */
static char suite_dir[32];

void sph_suite_setup(void)
{
    snprintf(suite_dir, sizeof(suite_dir), "/tmp/splicer-it.XXXXXX");
    if (mkdtemp(suite_dir) == NULL)
        suite_dir[0] = '\0'; /* files then go to /tmp and rely on sph_cleanup() alone */
    else
        chmod(suite_dir, 0755); /* SPLICER_BIN may drop to an unprivileged user */
}

void sph_suite_teardown(void)
{
    if (suite_dir[0] == '\0')
        return;
    DIR *d = opendir(suite_dir);
    struct dirent *e;
    for (int i = 0; d != NULL && i < 100000 && (e = readdir(d)) != NULL; i++) {
        if (e->d_name[0] != '.')
            unlinkat(dirfd(d), e->d_name, 0);
    }
    if (d != NULL)
        closedir(d);
    rmdir(suite_dir);
    suite_dir[0] = '\0';
}

static int tmpfile_new(char path[SPH_PATH_MAX], const char *tag)
{
    int n;
    if (suite_dir[0] != '\0')
        n = snprintf(path, SPH_PATH_MAX, "%s/%s.XXXXXX", suite_dir, tag);
    else
        n = snprintf(path, SPH_PATH_MAX, "/tmp/splicer-it-%s.XXXXXX", tag);
    if (n < 0 || n >= SPH_PATH_MAX)
        return -ENAMETOOLONG;
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd == -1)
        return -errno;
    fchmod(fd, 0644); /* readable by a splicer running as another user (as_nobody.sh) */
    reg_file(path);
    return fd;
}

int sph_tmp_path(char path[SPH_PATH_MAX], const char *tag)
{
    int fd = tmpfile_new(path, tag);
    if (fd < 0)
        return fd;
    close(fd);
    unlink(path); /* the name stays unique and registered: whatever is put there is removed */
    return 0;
}

int sph_config_write(char path[SPH_PATH_MAX], const char *fmt, ...)
{
    int fd = tmpfile_new(path, "conf");
    if (fd < 0)
        return fd;
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vfprintf(f, fmt, ap);
    va_end(ap);
    if (fclose(f) != 0 || n < 0)
        return -EIO;
    return 0;
}

int sph_config_rewrite(const char *path, const char *fmt, ...)
{
    char tmp[SPH_PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    FILE *f = fopen(tmp, "we");
    if (f == NULL)
        return -errno;
    va_list ap;
    va_start(ap, fmt);
    int n = vfprintf(f, fmt, ap);
    va_end(ap);
    if (fclose(f) != 0 || n < 0) {
        unlink(tmp);
        return -EIO;
    }
    if (rename(tmp, path) == -1) {
        int rc = -errno;
        unlink(tmp);
        return rc;
    }
    return 0;
}

static socklen_t loopback(struct sockaddr_storage *ss, int family, int port)
{
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_loopback;
        s6->sin6_port = htons((uint16_t)port);
        return sizeof(*s6);
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s4->sin_port = htons((uint16_t)port);
    return sizeof(*s4);
}

static int local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
        return -errno;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* A bound (not listening) CLOEXEC socket on loopback:port; fd or -errno. */
static int bound_socket(int family, int port)
{
    struct sockaddr_storage ss;
    socklen_t len = loopback(&ss, family, port);
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    if (bind(fd, (struct sockaddr *)&ss, len) == -1) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

#define SPH_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* The kernel may hand the same ephemeral port out twice in a row once it is closed again, so
 * remember what this process was given and ask again for a port given before. */
static int given_ports[64];
static unsigned ngiven;

static bool given_before(int port)
{
    for (unsigned i = 0; i < ngiven && i < SPH_ARRAY_LEN(given_ports); i++) {
        if (given_ports[i] == port)
            return true;
    }
    return false;
}

int sph_free_port(int family)
{
    int port = -EADDRINUSE;
    for (int tries = 0; tries < 16; tries++) {
        int fd = bound_socket(family, 0);
        if (fd < 0)
            return fd;
        port = local_port(fd);
        close(fd);
        if (port > 0 && !given_before(port))
            break;
    }
    given_ports[ngiven++ % SPH_ARRAY_LEN(given_ports)] = port;
    return port;
}

int sph_listen(int family, int port, int backlog)
{
    int fd = bound_socket(family, port);
    if (fd >= 0 && listen(fd, backlog) == -1) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

const char *sph_addr(char *buf, int family, int port)
{
    if (family == AF_INET6)
        snprintf(buf, 32, "[::1]:%d", port);
    else
        snprintf(buf, 32, "127.0.0.1:%d", port);
    return buf;
}

char *sph_read_file(const char *path)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    /* Bounded: captured logs in these tests stay far below 64 MiB. */
    while (buf != NULL && cap <= (64u << 20)) {
        len += fread(buf + len, 1, cap - len - 1, f);
        if (len < cap - 1)
            break;
        char *nb = realloc(buf, cap * 2);
        if (nb == NULL) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    if (buf != NULL)
        buf[len] = '\0';
    return buf;
}

/* ---- the splicer process ---- */

const char *sph_bin(void)
{
    return getenv("SPLICER_BIN");
}

/* In the child between fork and exec: only async-signal-safe calls. */
static void child_exec(char *const argv[], int out, int err)
{
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull == -1 || dup2(devnull, 0) == -1 || dup2(out, 1) == -1 || dup2(err, 2) == -1)
        _exit(126);
    /* Our sockets are CLOEXEC, but Check's pipes may not be; a backend listener leaked into
     * splicer would keep its port open after the backend stops. */
    if (syscall(SYS_close_range, 3U, ~0U, 0U) == -1) {
        for (int fd = 3; fd < 4096; fd++)
            close(fd);
    }
    execv(argv[0], argv);
    _exit(127);
}

int sph_proc_spawn(struct sph_proc *p, const char *const args[])
{
    char *argv[32];
    size_t n = 0;
    memset(p, 0, sizeof(*p));
    p->pid = -1;
    if (sph_bin() == NULL)
        return -ENOENT;
    argv[n++] = (char *)sph_bin();
    for (size_t i = 0; args[i] != NULL && n < ARGV_MAX; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    int out = tmpfile_new(p->out_path, "out");
    if (out < 0)
        return out;
    int err = tmpfile_new(p->err_path, "err");
    if (err < 0) {
        close(out);
        return err;
    }
    pid_t pid = fork();
    if (pid == 0)
        child_exec(argv, out, err);
    int rc = pid == -1 ? -errno : 0;
    close(out);
    close(err);
    if (rc != 0)
        return rc;
    p->pid = pid;
    if (reg.npids < REG_MAX)
        reg.pids[reg.npids++] = pid;
    return 0;
}

static void unreg_pid(pid_t pid)
{
    for (size_t i = 0; i < reg.npids; i++) {
        if (reg.pids[i] == pid) {
            reg.pids[i] = reg.pids[--reg.npids];
            return;
        }
    }
}

static int decode_status(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -EINVAL;
}

int sph_proc_wait(struct sph_proc *p, int timeout_ms)
{
    if (p->reaped)
        return decode_status(p->status);
    if (p->pid <= 0)
        return -ECHILD;
    int64_t deadline = sph_now_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(p->pid, &p->status, WNOHANG);
        if (r == p->pid) {
            p->reaped = true;
            unreg_pid(p->pid);
            return decode_status(p->status);
        }
        if (r == -1 && errno != EINTR)
            return -errno;
        if (sph_now_ms() >= deadline)
            return -ETIMEDOUT;
        sph_sleep_ms(5);
    }
}

void sph_proc_kill(struct sph_proc *p)
{
    if (p->pid <= 0 || p->reaped)
        return;
    kill(p->pid, SIGKILL);
    /* SIGKILL cannot be ignored; the bound only guards against a stuck D state. */
    sph_proc_wait(p, 10000);
}

int sph_proc_signal(struct sph_proc *p, int sig)
{
    if (p->pid <= 0 || p->reaped)
        return -ESRCH;
    return kill(p->pid, sig) == -1 ? -errno : 0;
}

int sph_run(struct sph_proc *p, const char *const args[], int timeout_ms)
{
    int rc = sph_proc_spawn(p, args);
    if (rc != 0)
        return rc;
    rc = sph_proc_wait(p, timeout_ms);
    if (rc == -ETIMEDOUT)
        sph_proc_kill(p);
    return rc;
}

#define LISTEN_INODES_MAX 64

/* Scans one /proc/.../net/tcp{,6} table for LISTEN (state 0A) entries on port: returns whether
 * there is one, and adds the socket inodes to inodes[*n] (up to LISTEN_INODES_MAX). */
static bool table_listens(const char *path, int port, unsigned long *inodes, size_t *n)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return false;
    char line[512];
    bool found = false;
    for (int i = 0; i < 100000 && fgets(line, sizeof(line), f) != NULL; i++) {
        unsigned lport, state;
        unsigned long inode;
        if (sscanf(line,
                   " %*d: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x %*x:%*x %*x:%*x %*x %*u %*u %lu",
                   &lport, &state, &inode) != 3 ||
            (int)lport != port || state != 0x0A)
            continue;
        found = true;
        if (inodes == NULL)
            break;
        if (*n < LISTEN_INODES_MAX)
            inodes[(*n)++] = inode;
    }
    fclose(f);
    return found;
}

bool sph_port_listening(int port)
{
    return table_listens("/proc/net/tcp", port, NULL, NULL) ||
           table_listens("/proc/net/tcp6", port, NULL, NULL);
}

/* 1 when process pid itself holds a socket listening on port (in its own network namespace),
 * 0 when it holds none, -errno when its descriptors cannot be listed or read. */
static int pid_listens(pid_t pid, int port)
{
    unsigned long inodes[LISTEN_INODES_MAX];
    size_t n = 0;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/net/tcp", (int)pid);
    table_listens(path, port, inodes, &n);
    snprintf(path, sizeof(path), "/proc/%d/net/tcp6", (int)pid);
    table_listens(path, port, inodes, &n);
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -errno;
    int found = 0, denied = 0;
    for (struct dirent *e; found == 0 && n > 0 && (e = readdir(d)) != NULL;) {
        char link[320], target[64];
        unsigned long inode;
        snprintf(link, sizeof(link), "%s/%s", path, e->d_name);
        ssize_t len = readlink(link, target, sizeof(target) - 1);
        /* Root without CAP_SYS_PTRACE (a container) may list another user's descriptors but
         * not read where they point. */
        if (len == -1 && (errno == EACCES || errno == EPERM))
            denied = -errno;
        if (len <= 0)
            continue;
        target[len] = '\0';
        if (sscanf(target, "socket:[%lu]", &inode) != 1)
            continue;
        for (size_t i = 0; i < n && found == 0; i++)
            found = inodes[i] == inode;
    }
    closedir(d);
    return found != 0 ? found : denied;
}

int sph_splicer_start(struct sph_proc *p, const char *conf, int port, int timeout_ms)
{
    const char *args[] = {"-c", conf, NULL};
    int rc = sph_proc_spawn(p, args);
    if (rc != 0)
        return rc;
    int64_t deadline = sph_now_ms() + timeout_ms;
    for (;;) {
        /* splicer's own listener, not just any on the port: ports come from bind(0) and another
         * process (another test's splicer, with SO_REUSEPORT) may listen on the same one, and a
         * signal sent before splicer has installed its handlers (it does before it listens)
         * would kill it. Where its descriptors cannot be read, any listener has to do. */
        int own = pid_listens(p->pid, port);
        if (own > 0 || (own < 0 && sph_port_listening(port)))
            return 0;
        int code = sph_proc_wait(p, 0);
        if (code != -ETIMEDOUT) {
            /* The callers print strerror(ECHILD) and splicer's stderr; how it ended is only here
             * (a signal, or a sanitizer's runtime failing before main, leaves stderr empty). */
            fprintf(stderr, "sph_splicer_start: splicer (pid %d) ended before listening: %s %d\n",
                    (int)p->pid, code >= 128 ? "signal" : "exit code",
                    code >= 128 ? code - 128 : code);
            return -ECHILD;
        }
        if (sph_now_ms() >= deadline)
            return -ETIMEDOUT;
        sph_sleep_ms(5);
    }
}

static char *read_or_empty(const char *path)
{
    char *s = path[0] != '\0' ? sph_read_file(path) : NULL;
    return s != NULL ? s : strdup("");
}

char *sph_proc_stdout(const struct sph_proc *p)
{
    return read_or_empty(p->out_path);
}

char *sph_proc_stderr(const struct sph_proc *p)
{
    return read_or_empty(p->err_path);
}

int sph_proc_log_count(const struct sph_proc *p, const char *needle)
{
    char *log = sph_proc_stderr(p);
    size_t len = strlen(needle);
    int n = 0;
    for (const char *at = log; len > 0 && (at = strstr(at, needle)) != NULL; at += len)
        n++;
    free(log);
    return n;
}

struct log_wait {
    const struct sph_proc *p;
    const char *needle;
    int count;
};

static bool log_cond(void *arg)
{
    struct log_wait *w = arg;
    return sph_proc_log_count(w->p, w->needle) >= w->count;
}

bool sph_proc_wait_log(const struct sph_proc *p, const char *needle, int count, int timeout_ms)
{
    struct log_wait w = {p, needle, count};
    return sph_wait_until(log_cond, &w, timeout_ms);
}

int sph_proc_signal_wait_log(struct sph_proc *p, int sig, const char *needle, int timeout_ms)
{
    int before = sph_proc_log_count(p, needle);
    int rc = sph_proc_signal(p, sig);
    if (rc != 0)
        return rc;
    return sph_proc_wait_log(p, needle, before + 1, timeout_ms) ? 0 : -ETIMEDOUT;
}

long sph_proc_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -errno;
    long kb = -ENOENT;
    for (int i = 0; i < 200 && fgets(line, sizeof(line), f) != NULL; i++) {
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    }
    fclose(f);
    return kb;
}

int sph_proc_fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -errno;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 1000000) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n;
}

/* ---- data ---- */

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

void sph_pattern_fill(uint64_t seed, uint64_t offset, void *buf, size_t len)
{
    unsigned char *p = buf;
    uint64_t salt = mix64(seed);
    size_t i = 0;
    while (i < len) {
        uint64_t pos = offset + i;
        uint64_t w = mix64(salt ^ (pos >> 3));
        for (unsigned b = (unsigned)(pos & 7); b < 8 && i < len; b++, i++)
            p[i] = (unsigned char)(w >> (8 * b));
    }
}

int64_t sph_pattern_check(uint64_t seed, uint64_t offset, const void *buf, size_t len)
{
    unsigned char want[4096];
    const unsigned char *p = buf;
    for (size_t done = 0; done < len;) {
        size_t n = MIN(len - done, sizeof(want));
        sph_pattern_fill(seed, offset + done, want, n);
        if (memcmp(want, p + done, n) != 0) {
            for (size_t i = 0; i < n; i++) {
                if (want[i] != p[done + i])
                    return (int64_t)(done + i);
            }
        }
        done += n;
    }
    return -1;
}

void sph_sum_init(struct sph_sum *s)
{
    s->a = 1;
    s->b = 0;
    s->n = 0;
}

void sph_sum_update(struct sph_sum *s, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint64_t a = s->a, b = s->b;
    for (size_t i = 0; i < len; i++) {
        a += p[i];
        b += a;
    }
    s->a = a;
    s->b = b;
    s->n += len;
}

uint64_t sph_sum_value(const struct sph_sum *s)
{
    return mix64(s->a ^ mix64(s->b ^ mix64(s->n)));
}

/* ---- teardown ---- */

void sph_cleanup(void)
{
    for (size_t i = 0; i < reg.npids; i++) {
        struct sph_proc p = {.pid = reg.pids[i]};
        sph_proc_kill(&p);
    }
    reg.npids = 0;
    for (size_t i = 0; i < reg.nbackends; i++) {
        sph_backend_stop(reg.backends[i]);
        pthread_mutex_destroy(&reg.backends[i]->http_lock);
        free(reg.backends[i]);
        reg.backends[i] = NULL;
    }
    reg.nbackends = 0;
    for (size_t i = 0; i < reg.nfiles; i++)
        unlink(reg.files[i]);
    reg.nfiles = 0;
}

/* ---- backends ----
 * One accept thread per backend, one thread per connection. Every wait is a poll() slice of at
 * most SLICE_MS, after which the stop flag is checked, so sph_backend_stop() returns promptly
 * even when a peer never reads or never writes. */

#define SLICE_MS    50
#define LIFETIME_MS (10 * 60 * 1000) /* hard bound on a backend's accept loop */
#define BACKEND_BUF (64 * 1024)
#define EOF_WAIT_MS 5000 /* see sph_echo_xfer */

/* Waits for ev on fd. Returns the revents, or 0 when the backend is stopping. */
static short bwait(struct sph_backend *b, int fd, short ev)
{
    for (int i = 0; i < LIFETIME_MS / SLICE_MS && !atomic_load(&b->stop); i++) {
        struct pollfd pfd = {fd, ev, 0};
        int n = poll(&pfd, 1, SLICE_MS);
        if (n == 1)
            return pfd.revents;
        if (n == -1 && errno != EINTR)
            return POLLERR;
    }
    return 0;
}

/* One read: n > 0 bytes, 0 on EOF, -errno on error, -ECANCELED when stopping. */
static ssize_t bread(struct sph_backend *b, int fd, void *buf, size_t len)
{
    for (int i = 0; i < 1000000; i++) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n >= 0)
            return n;
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
        if (bwait(b, fd, POLLIN) == 0)
            return -ECANCELED;
    }
    return -ETIMEDOUT;
}

static int bwrite_all(struct sph_backend *b, int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n == -1 && errno != EAGAIN && errno != EINTR)
            return -errno;
        if (bwait(b, fd, POLLOUT) == 0)
            return -ECANCELED;
    }
    return 0;
}

/* Records how a read loop ended: 0 = clean EOF. */
static void note_end(struct sph_backend *b, ssize_t rc)
{
    if (rc == 0)
        atomic_fetch_add(&b->eofs, 1);
    else if (rc == -ECONNRESET)
        atomic_fetch_add(&b->resets, 1);
}

/* Echoes until EOF or error; returns 0 on clean EOF (the write side is then shut). */
static ssize_t do_echo(struct sph_backend *b, int fd, char *buf)
{
    for (;;) {
        ssize_t n = bread(b, fd, buf, BACKEND_BUF);
        if (n <= 0) {
            note_end(b, n);
            if (n == 0)
                shutdown(fd, SHUT_WR);
            return n;
        }
        atomic_fetch_add(&b->bytes_in, (unsigned long long)n);
        int rc = bwrite_all(b, fd, buf, (size_t)n);
        if (rc != 0)
            return rc;
    }
}

/* Reads to EOF, summing; publishes last_bytes/last_sum. Returns the final read result. */
static ssize_t do_sink(struct sph_backend *b, int fd, char *buf, struct sph_sum *sum)
{
    ssize_t n;
    sph_sum_init(sum);
    while ((n = bread(b, fd, buf, BACKEND_BUF)) > 0) {
        atomic_fetch_add(&b->bytes_in, (unsigned long long)n);
        sph_sum_update(sum, buf, (size_t)n);
    }
    note_end(b, n);
    atomic_store(&b->last_bytes, sum->n);
    atomic_store(&b->last_sum, sph_sum_value(sum));
    return n;
}

static void do_source(struct sph_backend *b, int fd, char *buf)
{
    for (uint64_t off = 0; off < b->source_len;) {
        size_t n = (size_t)MIN((uint64_t)BACKEND_BUF, b->source_len - off);
        sph_pattern_fill(b->seed, off, buf, n);
        if (bwrite_all(b, fd, buf, n) != 0)
            return;
        off += n;
    }
    shutdown(fd, SHUT_WR);
    struct sph_sum sum;
    do_sink(b, fd, buf, &sum);
}

static void do_reset(struct sph_backend *b, int fd, char *buf)
{
    /* Wait (bounded) for the first bytes so the client's request is in flight, then RST. */
    if (bwait(b, fd, POLLIN) != 0) {
        ssize_t n = recv(fd, buf, 16, 0);
        if (n > 0)
            atomic_fetch_add(&b->bytes_in, (unsigned long long)n);
    }
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

static void do_halfclose(struct sph_backend *b, int fd, char *buf)
{
    struct sph_sum sum;
    if (do_sink(b, fd, buf, &sum) != 0)
        return;
    char reply[64];
    int n = snprintf(reply, sizeof(reply), "%llu %016llx\n", (unsigned long long)sum.n,
                     (unsigned long long)sph_sum_value(&sum));
    if (bwrite_all(b, fd, reply, (size_t)n) == 0)
        shutdown(fd, SHUT_WR);
}

static void do_slow(struct sph_backend *b, int fd, char *buf)
{
    size_t chunk = b->slow_chunk > 0 ? MIN(b->slow_chunk, (size_t)BACKEND_BUF) : 4096;
    ssize_t n;
    while ((n = bread(b, fd, buf, chunk)) > 0) {
        atomic_fetch_add(&b->bytes_in, (unsigned long long)n);
        for (int t = 0; t < b->slow_delay_ms && !atomic_load(&b->stop); t += 10)
            sph_sleep_ms(10);
    }
    note_end(b, n);
}

static void do_stall(struct sph_backend *b, int fd)
{
    /* POLLRDHUP reports the peer's FIN without reading any of the queued data. */
    short ev = bwait(b, fd, POLLRDHUP);
    if (ev & POLLRDHUP)
        atomic_fetch_add(&b->eofs, 1);
}

static void do_reply(struct sph_backend *b, int fd, char *buf)
{
    ssize_t n = bread(b, fd, buf, BACKEND_BUF);
    if (n <= 0) {
        note_end(b, n);
        return;
    }
    atomic_fetch_add(&b->bytes_in, (unsigned long long)n);
    if (bwrite_all(b, fd, b->reply, strnlen(b->reply, sizeof(b->reply))) != 0)
        return;
    shutdown(fd, SHUT_WR);
    struct sph_sum sum;
    do_sink(b, fd, buf, &sum);
}

struct sph_backend *sph_http_backend(const char *name, int status)
{
    struct sph_backend *b = sph_backend_new(SPH_HTTP, AF_INET);
    ck_assert_ptr_nonnull(b);
    snprintf(b->name, sizeof(b->name), "%s", name);
    atomic_store(&b->http_status, status);
    ck_assert_int_eq(sph_backend_start(b), 0);
    return b;
}

void sph_backend_http_req(struct sph_backend *b, char *out, size_t cap)
{
    pthread_mutex_lock(&b->http_lock);
    snprintf(out, cap, "%s", b->http_req);
    pthread_mutex_unlock(&b->http_lock);
}

static const char *http_reason(int code)
{
    return code == 200   ? "OK"
           : code == 503 ? "Service Unavailable"
           : code == 404 ? "Not Found"
                         : "X";
}

static void do_http(struct sph_backend *b, int fd, char *buf)
{
    size_t got = 0;
    while (got < 4096) {
        ssize_t n = bread(b, fd, buf + got, 4096 - got);
        if (n <= 0) {
            note_end(b, n);
            return;
        }
        atomic_fetch_add(&b->bytes_in, (unsigned long long)n);
        got += (size_t)n;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL)
            break;
    }
    pthread_mutex_lock(&b->http_lock);
    snprintf(b->http_req, sizeof(b->http_req), "%s", buf);
    pthread_mutex_unlock(&b->http_lock);
    int code = atomic_load(&b->http_status);
    char reply[256];
    int len;
    if (code == SPH_HTTP_SILENT) {
        do_stall(b, fd);
        return;
    }
    if (code == SPH_HTTP_GARBAGE)
        len = snprintf(reply, sizeof(reply), "garbage from %s\r\n", b->name);
    else
        len = snprintf(reply, sizeof(reply),
                       "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s\n",
                       code, http_reason(code), strlen(b->name) + 1, b->name);
    if (bwrite_all(b, fd, reply, (size_t)len) == 0)
        shutdown(fd, SHUT_WR);
}

static void *conn_main(void *arg)
{
    struct sph_conn_slot *s = arg;
    struct sph_backend *b = s->b;
    char *buf = malloc(BACKEND_BUF);
    if (buf != NULL) {
        char line[32];
        switch (b->kind) {
        case SPH_NAME:
            snprintf(line, sizeof(line), "%s\n", b->name);
            if (bwrite_all(b, s->fd, line, strlen(line)) == 0)
                do_echo(b, s->fd, buf);
            break;
        case SPH_ECHO:
            do_echo(b, s->fd, buf);
            break;
        case SPH_SINK: {
            struct sph_sum sum;
            do_sink(b, s->fd, buf, &sum);
            break;
        }
        case SPH_SOURCE:
            do_source(b, s->fd, buf);
            break;
        case SPH_RESET:
            do_reset(b, s->fd, buf);
            break;
        case SPH_HALFCLOSE:
            do_halfclose(b, s->fd, buf);
            break;
        case SPH_SLOW:
            do_slow(b, s->fd, buf);
            break;
        case SPH_REPLY:
            do_reply(b, s->fd, buf);
            break;
        case SPH_HTTP:
            do_http(b, s->fd, buf);
            break;
        default:
            do_stall(b, s->fd);
            break;
        }
    }
    free(buf);
    close(s->fd);
    s->fd = -1;
    atomic_fetch_sub(&b->active, 1);
    atomic_fetch_add(&b->closed, 1);
    atomic_store(&s->done, true);
    return NULL;
}

static void reap_slots(struct sph_backend *b, bool all)
{
    for (size_t i = 0; i < SPH_MAX_CONNS; i++) {
        struct sph_conn_slot *s = &b->slots[i];
        if (atomic_load(&s->busy) && (all || atomic_load(&s->done))) {
            pthread_join(s->thr, NULL);
            atomic_store(&s->busy, false);
        }
    }
}

static void start_conn(struct sph_backend *b, int fd)
{
    atomic_fetch_add(&b->accepted, 1);
    atomic_fetch_add(&b->active, 1);
    reap_slots(b, false);
    for (size_t i = 0; i < SPH_MAX_CONNS; i++) {
        struct sph_conn_slot *s = &b->slots[i];
        if (atomic_load(&s->busy))
            continue;
        s->b = b;
        s->fd = fd;
        atomic_store(&s->done, false);
        atomic_store(&s->busy, true);
        if (pthread_create(&s->thr, NULL, conn_main, s) == 0)
            return;
        atomic_store(&s->busy, false);
        break;
    }
    /* No slot or no thread: drop it, visibly to the test through the counters. */
    close(fd);
    atomic_fetch_sub(&b->active, 1);
    atomic_fetch_add(&b->closed, 1);
}

static void *accept_main(void *arg)
{
    struct sph_backend *b = arg;
    int64_t end = sph_now_ms() + LIFETIME_MS;
    while (!atomic_load(&b->stop) && !atomic_load(&b->accept_stop) && sph_now_ms() < end) {
        struct pollfd pfd = {b->lfd, POLLIN, 0};
        if (poll(&pfd, 1, SLICE_MS) != 1)
            continue;
        int fd = accept4(b->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1)
            continue;
        start_conn(b, fd);
    }
    return NULL;
}

struct sph_backend *sph_backend_new(enum sph_kind kind, int family)
{
    if (reg.nbackends == REG_MAX)
        return NULL;
    struct sph_backend *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    reg.backends[reg.nbackends++] = b;
    b->kind = kind;
    b->family = family;
    b->lfd = -1;
    b->seed = 1;
    atomic_init(&b->http_status, 200);
    pthread_mutex_init(&b->http_lock, NULL);
    for (size_t i = 0; i < SPH_MAX_CONNS; i++)
        b->slots[i].fd = -1;
    return b;
}

/* Listens on fd (owned from here on) and starts the accept thread. */
static int backend_run(struct sph_backend *b, int fd)
{
    b->lfd = fd;
    b->port = local_port(fd);
    atomic_store(&b->stop, false);
    atomic_store(&b->accept_stop, false);
    int rc = pthread_create(&b->thr, NULL, accept_main, b);
    if (rc != 0) {
        close(fd);
        b->lfd = -1;
        return -rc;
    }
    b->running = true;
    return 0;
}

int sph_backend_start(struct sph_backend *b)
{
    int fd = sph_listen(b->family, 0, 128);
    return fd < 0 ? fd : backend_run(b, fd);
}

int sph_backend_start_fd(struct sph_backend *b, int lfd)
{
    return backend_run(b, lfd);
}

int sph_backend_restart(struct sph_backend *b)
{
    if (b->running && b->lfd != -1)
        return -EALREADY;
    struct sockaddr_storage ss;
    socklen_t len = loopback(&ss, b->family, b->port);
    int fd = socket(b->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
        bind(fd, (struct sockaddr *)&ss, len) == -1 || listen(fd, 128) == -1) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return backend_run(b, fd);
}

void sph_backend_close_listener(struct sph_backend *b)
{
    if (!b->running || b->lfd == -1)
        return;
    atomic_store(&b->accept_stop, true);
    pthread_join(b->thr, NULL);
    close(b->lfd);
    b->lfd = -1;
}

void sph_backend_stop(struct sph_backend *b)
{
    if (!b->running)
        return;
    atomic_store(&b->stop, true);
    if (b->lfd != -1) {
        pthread_join(b->thr, NULL);
        close(b->lfd);
        b->lfd = -1;
    }
    reap_slots(b, true);
    b->running = false;
}

int sph_blackhole_open(struct sph_blackhole *h)
{
    h->filler[0] = h->filler[1] = -1;
    h->lfd = bound_socket(AF_INET, 0);
    if (h->lfd < 0)
        return h->lfd;
    h->port = local_port(h->lfd);
    /* backlog 0: Linux queues one connection; the next SYNs are dropped while it stays queued. */
    if (listen(h->lfd, 0) == -1)
        return -errno;
    for (int i = 0; i < 2; i++) {
        struct sockaddr_storage ss;
        socklen_t len = loopback(&ss, AF_INET, h->port);
        h->filler[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (h->filler[i] == -1)
            return -errno;
        connect(h->filler[i], (struct sockaddr *)&ss, len); /* EINPROGRESS is expected */
    }
    sph_sleep_ms(50); /* let the first handshake land in the accept queue */
    return 0;
}

void sph_blackhole_close(struct sph_blackhole *h)
{
    for (int i = 0; i < 2; i++) {
        if (h->filler[i] >= 0)
            close(h->filler[i]);
        h->filler[i] = -1;
    }
    if (h->lfd >= 0)
        close(h->lfd);
    h->lfd = -1;
}

/* ---- client ---- */

static int remaining(int64_t deadline)
{
    int64_t left = deadline - sph_now_ms();
    return left > 0 ? (int)left : 0;
}

/* Waits for ev until the deadline: 1 ready, -ETIMEDOUT, -errno. */
static int cwait(int fd, short ev, int64_t deadline)
{
    for (;;) {
        struct pollfd pfd = {fd, ev, 0};
        int n = poll(&pfd, 1, remaining(deadline));
        if (n == 1)
            return 1;
        if (n == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

int sph_connect(int family, int port, int timeout_ms)
{
    struct sockaddr_storage ss;
    socklen_t len = loopback(&ss, family, port);
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    int rc = 0;
    if (connect(fd, (struct sockaddr *)&ss, len) == -1) {
        rc = errno == EINPROGRESS ? cwait(fd, POLLOUT, sph_now_ms() + timeout_ms) : -errno;
        if (rc == 1) {
            int err = 0;
            socklen_t elen = sizeof(err);
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen);
            rc = -err;
        }
    }
    if (rc != 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int sph_write_all(int fd, const void *buf, size_t len, int timeout_ms)
{
    int64_t deadline = sph_now_ms() + timeout_ms;
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n == -1 && errno != EAGAIN && errno != EINTR)
            return -errno;
        int rc = cwait(fd, POLLOUT, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* One read before the deadline: n > 0, 0 on EOF, -errno. */
static ssize_t cread(int fd, void *buf, size_t len, int64_t deadline)
{
    for (;;) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n >= 0)
            return n;
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
        int rc = cwait(fd, POLLIN, deadline);
        if (rc < 0)
            return rc;
    }
}

ssize_t sph_read_exact(int fd, void *buf, size_t len, int timeout_ms)
{
    int64_t deadline = sph_now_ms() + timeout_ms;
    size_t got = 0;
    while (got < len) {
        ssize_t n = cread(fd, (char *)buf + got, len - got, deadline);
        if (n == 0)
            break;
        if (n < 0)
            return got > 0 && n == -ETIMEDOUT ? (ssize_t)got : n;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

ssize_t sph_read_to_eof(int fd, void *buf, size_t cap, int timeout_ms)
{
    int64_t deadline = sph_now_ms() + timeout_ms;
    char scratch[4096];
    size_t got = 0;
    for (;;) {
        bool room = got < cap;
        ssize_t n = cread(fd, room ? (char *)buf + got : scratch,
                          room ? cap - got : sizeof(scratch), deadline);
        if (n == 0)
            return (ssize_t)got;
        if (n < 0)
            return n;
        got += (size_t)n;
    }
}

ssize_t sph_read_line(int fd, char *buf, size_t cap, int timeout_ms)
{
    int64_t deadline = sph_now_ms() + timeout_ms;
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = cread(fd, buf + len, 1, deadline);
        if (n == 0)
            return -EPIPE;
        if (n < 0)
            return n;
        if (buf[len] == '\n') {
            buf[len] = '\0';
            return (ssize_t)len;
        }
        len++;
    }
    return -EMSGSIZE;
}

int sph_wait_closed(int fd, int timeout_ms)
{
    ssize_t n = sph_read_to_eof(fd, NULL, 0, timeout_ms);
    return n >= 0 ? 0 : (int)n;
}

void sph_abort(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

int sph_ping(int fd, int timeout_ms)
{
    static const char msg[] = "ping\n";
    char got[sizeof(msg)];
    int rc = sph_write_all(fd, msg, sizeof(msg) - 1, timeout_ms);
    if (rc != 0)
        return rc;
    ssize_t n = sph_read_exact(fd, got, sizeof(msg) - 1, timeout_ms);
    if (n < 0)
        return (int)n;
    if ((size_t)n < sizeof(msg) - 1)
        return -EPIPE;
    return memcmp(got, msg, sizeof(msg) - 1) == 0 ? 0 : -EPROTO;
}

void sph_xfer_init(struct sph_xfer *x, uint64_t len, uint64_t seed, int timeout_ms)
{
    memset(x, 0, sizeof(*x));
    x->len = len;
    x->seed = seed;
    x->timeout_ms = timeout_ms;
    x->mismatch_at = -1;
}

/* Reads what is there and checks it against the pattern. 1 = continue, 0 = done, <0 error. */
static int xfer_read(int fd, struct sph_xfer *x, char *buf, size_t cap)
{
    ssize_t n = recv(fd, buf, cap, 0);
    if (n == -1)
        return errno == EAGAIN || errno == EINTR ? 1 : -errno;
    uint64_t got = atomic_load(&x->received);
    if (n == 0) {
        x->got_eof = got == x->len;
        return x->got_eof && x->shut_wr ? 0 : -EPIPE;
    }
    if (got + (uint64_t)n > x->len)
        return -EPROTO;
    int64_t bad = sph_pattern_check(x->seed, got, buf, (size_t)n);
    if (bad >= 0) {
        x->mismatch_at = (int64_t)got + bad;
        return -EPROTO;
    }
    atomic_store(&x->received, got + (uint64_t)n);
    return got + (uint64_t)n == x->len && !x->shut_wr ? 0 : 1;
}

struct wstate {
    char *buf;
    size_t pos, len;
    int64_t next; /* when pacing allows the next chunk */
};

static int xfer_write(int fd, struct sph_xfer *x, struct wstate *w, size_t chunk)
{
    uint64_t sent = atomic_load(&x->sent);
    if (w->pos == w->len) {
        w->len = (size_t)MIN((uint64_t)chunk, x->len - sent);
        w->pos = 0;
        sph_pattern_fill(x->seed, sent, w->buf, w->len);
    }
    ssize_t n = send(fd, w->buf + w->pos, w->len - w->pos, MSG_NOSIGNAL);
    if (n == -1)
        return errno == EAGAIN || errno == EINTR ? 0 : -errno;
    w->pos += (size_t)n;
    atomic_store(&x->sent, sent + (uint64_t)n);
    if (w->pos == w->len && x->pause_ms > 0)
        w->next = sph_now_ms() + x->pause_ms;
    if (sent + (uint64_t)n == x->len && x->shut_wr)
        shutdown(fd, SHUT_WR);
    return 0;
}

/* One poll round of the transfer: 1 = continue, 0 = done, <0 error. */
static int xfer_step(int fd, struct sph_xfer *x, struct wstate *w, char *rbuf, size_t chunk,
                     int64_t deadline)
{
    int64_t now = sph_now_ms();
    if (now >= deadline)
        return -ETIMEDOUT;
    bool more = atomic_load(&x->sent) < x->len;
    bool may_write = more && now >= w->next;
    int wait = remaining(deadline);
    if (more && !may_write)
        wait = (int)MIN((int64_t)wait, w->next - now);
    struct pollfd pfd = {fd, (short)(POLLIN | (may_write ? POLLOUT : 0)), 0};
    if (poll(&pfd, 1, wait) == -1)
        return errno == EINTR ? 1 : -errno;
    if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
        int rc = xfer_read(fd, x, rbuf, BACKEND_BUF * 4);
        if (rc <= 0)
            return rc;
    }
    if (may_write && (pfd.revents & POLLOUT)) {
        int rc = xfer_write(fd, x, w, chunk);
        if (rc < 0)
            return rc;
    }
    return 1;
}

int sph_echo_xfer(int fd, struct sph_xfer *x)
{
    size_t chunk = x->chunk > 0 ? x->chunk : BACKEND_BUF;
    struct wstate w = {malloc(chunk), 0, 0, 0};
    char *rbuf = malloc(BACKEND_BUF * 4);
    int64_t deadline = sph_now_ms() + x->timeout_ms;
    int rc = w.buf != NULL && rbuf != NULL ? 1 : -ENOMEM;
    if (x->len == 0 && x->shut_wr)
        shutdown(fd, SHUT_WR);
    else if (x->len == 0)
        rc = 0;
    bool full = false;
    while (rc == 1) {
        /* Once the whole echo is back, a missing FIN should fail in seconds, not at the end of
         * a deadline sized for the transfer. */
        if (!full && atomic_load(&x->received) == x->len) {
            full = true;
            deadline = MIN(deadline, sph_now_ms() + EOF_WAIT_MS);
        }
        rc = xfer_step(fd, x, &w, rbuf, chunk, deadline);
    }
    free(w.buf);
    free(rbuf);
    x->err = rc;
    return rc;
}

/* ---- admin HTTP client and JSON check ----------------------------------------------------- */

#define HTTP_MS    5000
#define HTTP_REPLY (1 << 20)

int sph_admin_req(int port, const char *method, const char *path, char *body, size_t cap)
{
    int st = -ECONNREFUSED;
    for (int i = 0; i < 60 && st == -ECONNREFUSED; i++) {
        st = sph_http(port, method, path, body, cap);
        if (st == -ECONNREFUSED)
            sph_sleep_ms(50);
    }
    ck_assert_msg(st > 0, "%s %s: %s", method, path, strerror(-st));
    return st;
}

long long sph_metric_sample(const char *text, const char *series)
{
    char needle[512];
    snprintf(needle, sizeof(needle), "\n%s ", series);
    const char *at = strstr(text, needle);
    return at != NULL ? strtoll(at + strlen(needle), NULL, 10) : -1;
}

long long sph_metric(int admin_port, const char *series)
{
    static char buf[1 << 20];
    int st = sph_admin_req(admin_port, "GET", "/metrics", buf, sizeof(buf));
    ck_assert_msg(st == 200, "GET /metrics: %d", st);
    return sph_metric_sample(buf, series);
}

void sph_expect_metric(int admin_port, const char *series, long long want)
{
    long long v = -1;
    for (int i = 0; i < 60 && (v = sph_metric(admin_port, series)) != want; i++)
        sph_sleep_ms(50);
    ck_assert_msg(v == want, "%s = %lld, want %lld", series, v, want);
}

int sph_http_raw(int port, const void *req, size_t len, char *reply, size_t cap)
{
    int fd = sph_connect(AF_INET, port, HTTP_MS);
    if (fd < 0)
        return fd;
    int rc = sph_write_all(fd, req, len, HTTP_MS);
    ssize_t n = rc == 0 ? sph_read_to_eof(fd, reply, cap > 0 ? cap - 1 : 0, HTTP_MS) : rc;
    close(fd);
    if (n < 0)
        return (int)n;
    if (cap > 0)
        reply[MIN((size_t)n, cap - 1)] = '\0';
    return (int)MIN((size_t)n, (size_t)INT32_MAX);
}

int sph_http(int port, const char *method, const char *path, char *body, size_t cap)
{
    char req[1024];
    bool post = strcmp(method, "POST") == 0;
    /* X-Splicer-Admin: what a script must send to drain on a loopback endpoint without a token */
    int len = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\n%s\r\n", method, path,
                       post ? "Content-Length: 0\r\nX-Splicer-Admin: 1\r\n" : "");
    if (len < 0 || (size_t)len >= sizeof(req))
        return -EMSGSIZE;
    char *reply = malloc(HTTP_REPLY);
    if (reply == NULL)
        return -ENOMEM;
    int rc = sph_http_raw(port, req, (size_t)len, reply, HTTP_REPLY);
    int status = -EPROTO;
    const char *sep = rc >= 0 ? strstr(reply, "\r\n\r\n") : NULL;
    if (rc < 0)
        status = rc;
    else if (sep != NULL && sscanf(reply, "HTTP/1.%*1[01] %3d", &status) != 1)
        status = -EPROTO;
    if (status > 0 && body != NULL && cap > 0)
        snprintf(body, cap, "%s", sep + 4);
    free(reply);
    return status;
}

/* A recursive-descent JSON (RFC 8259) validator: each function consumes one production at *p
 * and returns false on a syntax error. depth bounds the recursion. */
struct jp {
    const char *p, *end;
};

static void jp_ws(struct jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool jp_lit(struct jp *j, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
        return false;
    j->p += n;
    return true;
}

static bool jp_string(struct jp *j)
{
    if (j->p >= j->end || *j->p++ != '"')
        return false;
    while (j->p < j->end) {
        unsigned char c = (unsigned char)*j->p++;
        if (c == '"')
            return true;
        if (c < 0x20)
            return false;
        if (c != '\\')
            continue;
        if (j->p >= j->end)
            return false;
        c = (unsigned char)*j->p++;
        if (c == 'u') {
            for (int i = 0; i < 4; i++, j->p++) {
                if (j->p >= j->end || strchr("0123456789abcdefABCDEF", *j->p) == NULL ||
                    *j->p == '\0')
                    return false;
            }
        } else if (strchr("\"\\/bfnrt", c) == NULL || c == '\0') {
            return false;
        }
    }
    return false;
}

static bool jp_digits(struct jp *j)
{
    const char *s = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
        j->p++;
    return j->p > s;
}

static bool jp_number(struct jp *j)
{
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p < j->end && *j->p == '0')
        j->p++;
    else if (!jp_digits(j))
        return false;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (!jp_digits(j))
            return false;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (!jp_digits(j))
            return false;
    }
    return true;
}

static bool jp_value(struct jp *j, int depth);

/* An object ('{' ... '}') or an array ('[' ... ']'), after the opening bracket. */
static bool jp_container(struct jp *j, char close, int depth)
{
    jp_ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        return true;
    }
    for (;;) {
        if (close == '}') {
            jp_ws(j);
            if (!jp_string(j))
                return false;
            jp_ws(j);
            if (j->p >= j->end || *j->p++ != ':')
                return false;
        }
        if (!jp_value(j, depth + 1))
            return false;
        jp_ws(j);
        if (j->p >= j->end)
            return false;
        char c = *j->p++;
        if (c == close)
            return true;
        if (c != ',')
            return false;
    }
}

static bool jp_value(struct jp *j, int depth)
{
    if (depth > 64)
        return false;
    jp_ws(j);
    if (j->p >= j->end)
        return false;
    switch (*j->p) {
    case '{':
        j->p++;
        return jp_container(j, '}', depth);
    case '[':
        j->p++;
        return jp_container(j, ']', depth);
    case '"':
        return jp_string(j);
    case 't':
        return jp_lit(j, "true");
    case 'f':
        return jp_lit(j, "false");
    case 'n':
        return jp_lit(j, "null");
    default:
        return jp_number(j);
    }
}

bool sph_json_valid(const char *text, size_t len, bool object)
{
    struct jp j = {text, text + len};
    jp_ws(&j);
    if (object && (j.p >= j.end || *j.p != '{'))
        return false;
    if (!jp_value(&j, 0))
        return false;
    jp_ws(&j);
    return j.p == j.end;
}
