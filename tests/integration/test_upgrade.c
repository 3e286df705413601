/* test_upgrade.c: binary upgrade by takeover (control_socket, --takeover) and systemd socket
 * activation (LISTEN_FDS), against the real binary: a client connecting every millisecond across
 * an upgrade sees no refused and no reset connection, a 256 MiB transfer begun in the old
 * process completes intact, the new process serves (its pid in /status), the old one exits 0;
 * with the worker count going down and up again (three processes); failed takeovers leave the
 * old process serving; a second instance is refused; inherited descriptors are served on; a
 * unix: listener's socket and file go over to the new process. */
#include "harness.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB      (1024ULL * 1024ULL)
#define START_MS 15000

/* The control socket lives in a directory of its own, removed in teardown. */
static char ctl_dir[32];
static char ctl_path[64];

static void setup(void)
{
    snprintf(ctl_dir, sizeof(ctl_dir), "/tmp/sp-upgrade.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(ctl_dir));
    snprintf(ctl_path, sizeof(ctl_path), "%.30s/control.sock", ctl_dir);
}

static void teardown(void)
{
    sph_cleanup();
    DIR *d = opendir(ctl_dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            unlinkat(dirfd(d), e->d_name, 0);
    }
    if (d != NULL)
        closedir(d);
    rmdir(ctl_dir);
}

struct env {
    struct sph_backend *echo;
    int port;  /* the listener */
    int admin; /* the admin endpoint */
};

static void env_init(struct env *e)
{
    e->echo = sph_backend_new(SPH_ECHO, AF_INET);
    ck_assert_ptr_nonnull(e->echo);
    ck_assert_int_eq(sph_backend_start(e->echo), 0);
    e->port = sph_free_port(AF_INET);
    e->admin = sph_free_port(AF_INET);
    ck_assert_int_gt(e->port, 0);
    ck_assert_int_gt(e->admin, 0);
}

/* A config for e with `workers`; `extra` is appended under listeners (another listener). */
static void write_conf(char path[SPH_PATH_MAX], const struct env *e, int workers,
                       const char *control, const char *extra)
{
    char ctl[200] = "";
    if (control != NULL)
        snprintf(ctl, sizeof(ctl), "control_socket: %s\n", control);
    int rc = sph_config_write(path,
                              "workers: %d\n"
                              "shutdown_timeout: 120s\n"
                              "%s"
                              "admin:\n"
                              "  listen: 127.0.0.1:%d\n"
                              "listeners:\n"
                              "  web:\n"
                              "    listen: 127.0.0.1:%d\n"
                              "    upstream: pool\n"
                              "%s"
                              "upstreams:\n"
                              "  pool:\n"
                              "    servers:\n"
                              "      - address: 127.0.0.1:%d\n",
                              workers, ctl, e->admin, e->port, extra != NULL ? extra : "",
                              e->echo->port);
    ck_assert_int_eq(rc, 0);
}

static void start_old(struct sph_proc *p, const char *conf, int port)
{
    int rc = sph_splicer_start(p, conf, port, START_MS);
    if (rc != 0) {
        char *err = sph_proc_stderr(p);
        ck_abort_msg("splicer did not start (%s); stderr:\n%s", strerror(-rc), err);
    }
}

/* A number that follows `key` in text (the first occurrence after `after`, when given). */
static long long json_num(const char *text, const char *after, const char *key)
{
    const char *s = after != NULL ? strstr(text, after) : text;
    s = s != NULL ? strstr(s, key) : NULL;
    return s != NULL ? strtoll(s + strlen(key), NULL, 10) : -1;
}

static long long status_num(int admin, const char *after, const char *key)
{
    static char body[65536];
    int code = sph_http(admin, "GET", "/status", body, sizeof(body));
    return code == 200 ? json_num(body, after, key) : -1;
}

struct pid_wait {
    int admin;
    pid_t pid;
};

static bool status_pid_is(void *arg)
{
    struct pid_wait *w = arg;
    return status_num(w->admin, NULL, "\"pid\":") == w->pid;
}

static void expect_exit(struct sph_proc *p, int want, int timeout_ms)
{
    int code = sph_proc_wait(p, timeout_ms);
    char *err = sph_proc_stderr(p);
    ck_assert_msg(code == want, "splicer pid %d: exit %d, want %d; stderr:\n%s", (int)p->pid, code,
                  want, err);
    free(err);
}

/* Starts `splicer -c conf --takeover ctl_path` and waits until it serves (its pid in /status). */
static void takeover(struct sph_proc *p, const char *conf, int admin)
{
    const char *args[] = {"-c", conf, "--takeover", ctl_path, NULL};
    ck_assert_int_eq(sph_proc_spawn(p, args), 0);
    bool ok = sph_proc_wait_log(p, "takeover: serving", 1, START_MS);
    char *err = sph_proc_stderr(p);
    ck_assert_msg(ok, "the new process did not take over; stderr:\n%s", err);
    free(err);
    struct pid_wait w = {admin, p->pid};
    ck_assert_msg(sph_wait_until(status_pid_is, &w, 5000), "/status does not show pid %d",
                  (int)p->pid);
}

/* ---- a client connecting every millisecond ------------------------------------------------ */

struct load {
    int port;
    pthread_t thr;
    atomic_bool stop;
    atomic_int ok, refused, reset, other, last_err;
};

static void *load_run(void *arg)
{
    struct load *l = arg;
    while (!atomic_load(&l->stop)) {
        int fd = sph_connect(AF_INET, l->port, 5000);
        int rc = fd < 0 ? fd : sph_ping(fd, 10000);
        if (fd >= 0)
            close(fd);
        if (rc == 0)
            atomic_fetch_add(&l->ok, 1);
        else if (rc == -ECONNREFUSED)
            atomic_fetch_add(&l->refused, 1);
        else if (rc == -ECONNRESET)
            atomic_fetch_add(&l->reset, 1);
        else
            atomic_fetch_add(&l->other, 1);
        if (rc != 0)
            atomic_store(&l->last_err, rc);
        sph_sleep_ms(1);
    }
    return NULL;
}

/* Bursts of simultaneous connects, so that the accept queues hold connections when the old
 * process stops accepting. */
struct burst {
    int port;
    pthread_t thr;
    atomic_bool stop;
    atomic_int ok, failed, last_err;
};

static void *burst_run(void *arg)
{
    enum { N = 32 };
    struct burst *b = arg;
    while (!atomic_load(&b->stop)) {
        int fds[N];
        for (int i = 0; i < N; i++)
            fds[i] = sph_connect(AF_INET, b->port, 5000);
        for (int i = 0; i < N; i++) {
            int rc = fds[i] < 0 ? fds[i] : sph_ping(fds[i], 10000);
            if (fds[i] >= 0)
                close(fds[i]);
            atomic_fetch_add(rc == 0 ? &b->ok : &b->failed, 1);
            if (rc != 0)
                atomic_store(&b->last_err, rc);
        }
        sph_sleep_ms(20);
    }
    return NULL;
}

static void load_start(struct load *l, struct burst *b, int port)
{
    memset(l, 0, sizeof(*l));
    memset(b, 0, sizeof(*b));
    l->port = b->port = port;
    ck_assert_int_eq(pthread_create(&l->thr, NULL, load_run, l), 0);
    ck_assert_int_eq(pthread_create(&b->thr, NULL, burst_run, b), 0);
    ck_assert(sph_wait_atomic_ge(&l->ok, 20, 10000));
}

static void load_stop_check(struct load *l, struct burst *b)
{
    atomic_store(&l->stop, true);
    atomic_store(&b->stop, true);
    pthread_join(l->thr, NULL);
    pthread_join(b->thr, NULL);
    ck_assert_msg(l->refused == 0 && l->reset == 0 && l->other == 0 && b->failed == 0,
                  "across the upgrade: %d ok, %d refused, %d reset, %d other; bursts %d ok, %d "
                  "failed (last errors: %s / %s)",
                  l->ok, l->refused, l->reset, l->other, b->ok, b->failed, strerror(-l->last_err),
                  strerror(-b->last_err));
    ck_assert_int_gt(l->ok, 50);
}

/* Lets the load run until it has made `n` more connections. */
static void load_more(struct load *l, int n)
{
    ck_assert(sph_wait_atomic_ge(&l->ok, atomic_load(&l->ok) + n, 20000));
}

/* ---- cases ---------------------------------------------------------------------------------- */

struct bg_xfer {
    int fd;
    struct sph_xfer x;
    pthread_t thr;
};

static void *xfer_run(void *arg)
{
    struct bg_xfer *b = arg;
    sph_echo_xfer(b->fd, &b->x);
    return NULL;
}

static bool xfer_begun(void *arg)
{
    return atomic_load(&((struct bg_xfer *)arg)->x.received) >= 4 * MIB;
}

/* The whole upgrade under load: nothing refused or reset, a 256 MiB transfer that began in the
 * old process completes intact, new connections reach the new process, the old one exits 0. */
START_TEST(upgrade_under_load)
{
    struct env e;
    env_init(&e);
    char conf[SPH_PATH_MAX];
    write_conf(conf, &e, 2, ctl_path, NULL);
    struct sph_proc old, neu;
    start_old(&old, conf, e.port);

    struct bg_xfer big = {.fd = sph_connect(AF_INET, e.port, 5000)};
    ck_assert_int_ge(big.fd, 0);
    sph_xfer_init(&big.x, 256 * MIB, 13, 240000);
    big.x.chunk = 256 * 1024;
    big.x.pause_ms = 4; /* 1024 chunks: several seconds, so the upgrade happens mid-way */
    big.x.shut_wr = true;
    ck_assert_int_eq(pthread_create(&big.thr, NULL, xfer_run, &big), 0);
    struct load l;
    struct burst b;
    load_start(&l, &b, e.port);
    ck_assert(sph_wait_until(xfer_begun, &big, 20000));

    long long before = status_num(e.admin, "\"listeners\"", "\"connections\":");
    takeover(&neu, conf, e.admin);
    uint64_t at_takeover = atomic_load(&big.x.received);
    load_more(&l, 100);
    /* The new process counts connections of its own: it serves the new ones. */
    long long served = status_num(e.admin, "\"listeners\"", "\"connections\":");
    ck_assert_msg(served > 0, "the new process served no connection (%lld; the old one had %lld)",
                  served, before);
    ck_assert_int_eq(status_num(e.admin, NULL, "\"took_over_from\":"), old.pid);
    ck_assert_int_eq(sph_metric(e.admin, "splicer_inherited_sockets{source=\"takeover\"}"), 3);

    pthread_join(big.thr, NULL);
    ck_assert_msg(at_takeover < 256 * MIB, "the transfer had finished before the takeover");
    ck_assert_msg(big.x.err == 0 && big.x.mismatch_at == -1 && big.x.received == 256 * MIB &&
                      big.x.got_eof,
                  "256 MiB across the upgrade: %s, %llu bytes back, mismatch at %lld, eof %d",
                  strerror(-big.x.err), (unsigned long long)big.x.received,
                  (long long)big.x.mismatch_at, big.x.got_eof);
    close(big.fd);
    expect_exit(&old, 0, 30000);
    load_stop_check(&l, &b);
    struct stat st;
    ck_assert_int_eq(stat(ctl_path, &st), 0); /* the new process's socket, in place */
    ck_assert(S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0600);
}
END_TEST

/* Listening sockets on 127.0.0.1:port in this network namespace (/proc/net/tcp, as ss -ltn). */
static int listening_sockets(int port)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    char line[512], want[32];
    int n = 0;
    snprintf(want, sizeof(want), "0100007F:%04X", (unsigned)port);
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        char local[64], remote[64];
        unsigned state;
        if (sscanf(line, " %*d: %63s %63s %x", local, remote, &state) == 3 &&
            strcmp(local, want) == 0 && state == 0x0A)
            n++;
    }
    if (f != NULL)
        fclose(f);
    return n;
}

/* workers 2 -> 1 -> 2: the new process accepts on every socket it got (fewer workers), or adds
 * SO_REUSEPORT siblings (more workers); a third process takes over from the second. */
START_TEST(workers_down_and_up)
{
    struct env e;
    env_init(&e);
    char conf2[SPH_PATH_MAX], conf1[SPH_PATH_MAX];
    write_conf(conf2, &e, 2, ctl_path, NULL);
    write_conf(conf1, &e, 1, ctl_path, NULL);
    struct sph_proc p1, p2, p3;
    start_old(&p1, conf2, e.port);
    struct load l;
    struct burst b;
    load_start(&l, &b, e.port);

    takeover(&p2, conf1, e.admin);
    expect_exit(&p1, 0, 30000);
    load_more(&l, 100);
    /* Both sockets of the old group live on in the one worker: closing either would have
     * dropped the connections in its queue. */
    ck_assert_int_eq(listening_sockets(e.port), 2);
    char *err = sph_proc_stderr(&p2);
    ck_assert_msg(strstr(err, "2 inherited sockets; some workers accept on more than one") != NULL,
                  "stderr:\n%s", err);
    free(err);

    takeover(&p3, conf2, e.admin);
    expect_exit(&p2, 0, 30000);
    load_more(&l, 100);
    ck_assert_int_eq(listening_sockets(e.port), 2);
    ck_assert_int_eq(status_num(e.admin, NULL, "\"took_over_from\":"), p2.pid);
    ck_assert_int_eq(status_num(e.admin, NULL, "\"workers\":"), 2);
    load_stop_check(&l, &b);
}
END_TEST

/* A ping through the unix socket at `path`: 0 when echoed. */
static int unix_ping(const char *path)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof(un.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    int rc = connect(fd, (struct sockaddr *)&un, sizeof(un)) == 0 ? sph_ping(fd, 5000) : -errno;
    close(fd);
    return rc;
}

static ino_t socket_file_ino(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) ? st.st_ino : 0;
}

/* A unix: listener goes over with its one socket, which both workers of the new process
 * share; its file outlives the old process, which created it, and goes with the new one. */
START_TEST(unix_listener_taken_over)
{
    struct env e;
    env_init(&e);
    char sock[64], extra[200], conf[SPH_PATH_MAX];
    snprintf(sock, sizeof(sock), "%.30s/front.sock", ctl_dir);
    snprintf(extra, sizeof(extra),
             "  local:\n"
             "    listen: unix:%s\n"
             "    upstream: pool\n",
             sock);
    write_conf(conf, &e, 2, ctl_path, extra);
    struct sph_proc p1, p2;
    start_old(&p1, conf, e.port);
    ck_assert_int_eq(unix_ping(sock), 0);
    ino_t ino = socket_file_ino(sock);
    ck_assert_msg(ino != 0, "no socket file at %s", sock);

    takeover(&p2, conf, e.admin);
    expect_exit(&p1, 0, 30000);
    char *err = sph_proc_stderr(&p2);
    ck_assert_msg(strstr(err, "listener local: 1 inherited socket, shared by every worker") != NULL,
                  "stderr:\n%s", err);
    free(err);
    ck_assert_msg(socket_file_ino(sock) == ino, "the old process took %s with it", sock);
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(unix_ping(sock), 0);

    ck_assert_int_eq(sph_proc_signal(&p2, SIGTERM), 0);
    expect_exit(&p2, 0, 30000);
    ck_assert_msg(socket_file_ino(sock) == 0, "the new process left %s behind", sock);
}
END_TEST

/* Serves a ping through the listener, and /status still names `pid`. */
static void still_serving(const struct env *e, const struct sph_proc *p)
{
    int fd = sph_connect(AF_INET, e->port, 5000);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(sph_ping(fd, 5000), 0);
    close(fd);
    ck_assert_int_eq(status_num(e->admin, NULL, "\"pid\":"), p->pid);
    ck_assert_int_eq(sph_proc_wait((struct sph_proc *)p, 0), -ETIMEDOUT);
}

static void expect_failure(const char *conf, const char *ctl, const char *needle)
{
    struct sph_proc p;
    const char *args[] = {"-c", conf, "--takeover", ctl, NULL};
    int code = sph_run(&p, args, 20000);
    char *err = sph_proc_stderr(&p);
    ck_assert_msg(code == 1 && strstr(err, needle) != NULL,
                  "exit %d, want 1 and \"%s\"; stderr:\n%s", code, needle, err);
    free(err);
}

/* Every failed takeover leaves the old process serving as before, and a later one succeeds. */
START_TEST(failures_keep_old_serving)
{
    struct env e;
    env_init(&e);
    char conf[SPH_PATH_MAX], bad[SPH_PATH_MAX], busy[SPH_PATH_MAX], extra[160];
    write_conf(conf, &e, 2, ctl_path, NULL);
    struct sph_proc old, neu;
    start_old(&old, conf, e.port);

    char nowhere[200];
    snprintf(nowhere, sizeof(nowhere), "%s/nobody.sock", ctl_dir);
    expect_failure(conf, nowhere, "no splicer to take over");

    ck_assert_int_eq(sph_config_write(bad, "workers: 1\nlisteners: {}\n"), 0);
    expect_failure(bad, ctl_path, bad);
    still_serving(&e, &old);

    /* A new listener on a port someone else holds: the new process cannot serve it. */
    int held_port = sph_free_port(AF_INET);
    int held = sph_listen(AF_INET, held_port, 8);
    ck_assert_int_ge(held, 0);
    snprintf(extra, sizeof(extra), "  other:\n    listen: 127.0.0.1:%d\n    upstream: pool\n",
             held_port);
    write_conf(busy, &e, 2, ctl_path, extra);
    expect_failure(busy, ctl_path, "takeover failed: the old process");
    still_serving(&e, &old);
    close(held);

    /* A hostile peer: garbage, then silence; the old process answers neither with harm. */
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, ctl_path, strlen(ctl_path) + 1);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(send(fd, "GET / HTTP/1.0\r\n\r\n", 18, MSG_NOSIGNAL), 18);
    char buf[512];
    ck_assert_int_gt(recv(fd, buf, sizeof(buf), 0), 0); /* an ERROR message, then EOF */
    close(fd);
    still_serving(&e, &old);
    sph_expect_metric(e.admin, "splicer_takeovers_total{result=\"failed\"}", 2);

    takeover(&neu, conf, e.admin);
    expect_exit(&old, 0, 30000);
}
END_TEST

/* Without --takeover, a live control socket refuses a second instance; a stale one (its process
 * killed) is replaced. */
START_TEST(second_instance_refused)
{
    struct env e;
    env_init(&e);
    char conf[SPH_PATH_MAX];
    write_conf(conf, &e, 1, ctl_path, NULL);
    struct sph_proc old, second, again;
    start_old(&old, conf, e.port);
    const char *args[] = {"-c", conf, NULL};
    int code = sph_run(&second, args, 20000);
    char *err = sph_proc_stderr(&second);
    char want[64];
    snprintf(want, sizeof(want), "another splicer (pid %d) is running", (int)old.pid);
    ck_assert_msg(code == 1 && strstr(err, want) != NULL, "exit %d; stderr:\n%s", code, err);
    free(err);
    still_serving(&e, &old);

    sph_proc_kill(&old); /* SIGKILL: the socket file stays behind */
    ck_assert_int_eq(access(ctl_path, F_OK), 0);
    start_old(&again, conf, e.port);
    ck_assert_int_eq(sph_proc_log_count(&again, "removed a stale socket"), 1);
}
END_TEST

/* A reload may not move the control socket: it fails with a clear error, the old config stays. */
START_TEST(reload_keeps_control_socket)
{
    struct env e;
    env_init(&e);
    char conf[SPH_PATH_MAX], moved[200];
    write_conf(conf, &e, 1, ctl_path, NULL);
    struct sph_proc p;
    start_old(&p, conf, e.port);
    snprintf(moved, sizeof(moved), "%s/elsewhere.sock", ctl_dir);
    ck_assert_int_eq(sph_config_rewrite(conf,
                                        "control_socket: %s\n"
                                        "admin:\n  listen: 127.0.0.1:%d\n"
                                        "listeners:\n  web:\n    listen: 127.0.0.1:%d\n"
                                        "    upstream: pool\n"
                                        "upstreams:\n  pool:\n    servers:\n"
                                        "      - address: 127.0.0.1:%d\n",
                                        moved, e.admin, e.port, e.echo->port),
                     0);
    ck_assert_int_eq(sph_proc_signal_wait_log(&p, SIGHUP, "reload failed", 10000), 0);
    ck_assert_int_eq(sph_proc_log_count(&p, "control_socket cannot change on reload"), 1);
    sph_expect_metric(e.admin, "splicer_config_reloads_total{result=\"failure\"}", 1);
    ck_assert_int_eq(access(ctl_path, F_OK), 0);
}
END_TEST

/* scripts/upgrade.sh does the whole dance and says which pid serves; with a config the new
 * binary rejects it changes nothing. */
START_TEST(upgrade_script)
{
    struct env e;
    env_init(&e);
    char conf[SPH_PATH_MAX], cmd[1024], log[64];
    write_conf(conf, &e, 1, ctl_path, NULL);
    struct sph_proc old;
    start_old(&old, conf, e.port);
    const char *fixtures = getenv("SPLICER_FIXTURES");
    ck_assert_ptr_nonnull(fixtures);
    snprintf(log, sizeof(log), "%.40s/new.log", ctl_dir);
    snprintf(cmd, sizeof(cmd), "sh %s/../../scripts/upgrade.sh -c %s -b %s -l %s -w 30", fixtures,
             conf, sph_bin(), log);
    int rc = system(cmd);
    ck_assert_msg(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "upgrade.sh: status %d", rc);
    expect_exit(&old, 0, 30000);
    long long pid = status_num(e.admin, NULL, "\"pid\":");
    ck_assert_int_gt(pid, 0);
    ck_assert_int_ne(pid, old.pid);
    ck_assert_int_eq(status_num(e.admin, NULL, "\"took_over_from\":"), old.pid);

    char bad[SPH_PATH_MAX];
    ck_assert_int_eq(sph_config_write(bad, "control_socket: %s\nlisteners: {}\n", ctl_path), 0);
    snprintf(cmd, sizeof(cmd), "sh %s/../../scripts/upgrade.sh -c %s -b %s -l %s -w 30 2>/dev/null",
             fixtures, bad, sph_bin(), log);
    rc = system(cmd);
    ck_assert_msg(WIFEXITED(rc) && WEXITSTATUS(rc) == 1, "upgrade.sh on a bad config: %d", rc);
    ck_assert_int_eq(status_num(e.admin, NULL, "\"pid\":"), pid);
    kill((pid_t)pid, SIGKILL); /* not a child of this test: sph_cleanup does not know it */
}
END_TEST

/* ---- socket activation -------------------------------------------------------------------- */

/* Runs splicer as systemd would: fds become 3, 4, ... with LISTEN_FDS and LISTEN_PID (the
 * child's own pid, known only after the fork). */
static pid_t spawn_activated(const char *conf, const int *fds, int nfds, char err_path[64])
{
    snprintf(err_path, 64, "%.40s/activated.err", ctl_dir);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    int high[8];
    for (int i = 0; i < nfds; i++)
        high[i] = fcntl(fds[i], F_DUPFD, 100); /* out of the way of 3.. */
    for (int i = 0; i < nfds; i++)
        dup2(high[i], 3 + i); /* dup2 clears close-on-exec */
    int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    dup2(null, 0);
    dup2(null, 1);
    dup2(err, 2);
    char n[16], p[16];
    snprintf(n, sizeof(n), "%d", nfds);
    snprintf(p, sizeof(p), "%d", (int)getpid());
    setenv("LISTEN_FDS", n, 1);
    setenv("LISTEN_PID", p, 1);
    execl(sph_bin(), sph_bin(), "-c", conf, (char *)NULL);
    _exit(127);
}

static bool file_has(const char *path, const char *needle)
{
    char *text = sph_read_file(path);
    bool found = text != NULL && strstr(text, needle) != NULL;
    free(text);
    return found;
}

struct admin_up {
    int admin;
};

static bool admin_answers(void *arg)
{
    return sph_http(((struct admin_up *)arg)->admin, "GET", "/healthz", NULL, 0) > 0;
}

/* splicer serves on the socket it is handed, which it could not have bound itself (the test
 * holds it without SO_REUSEPORT), including a connection that waited in its queue before
 * splicer started; a descriptor for an address the config lacks is closed with a warning; and
 * a takeover from the activated process keeps the one shared socket. */
START_TEST(socket_activation)
{
    struct env e;
    env_init(&e);
    char conf[SPH_PATH_MAX];
    write_conf(conf, &e, 2, ctl_path, NULL);
    int fds[2] = {sph_listen(AF_INET, e.port, 64), sph_listen(AF_INET, sph_free_port(AF_INET), 8)};
    ck_assert(fds[0] >= 0 && fds[1] >= 0);
    int early = sph_connect(AF_INET, e.port, 5000); /* queued before splicer runs */
    ck_assert_int_ge(early, 0);

    char err_path[64];
    pid_t pid = spawn_activated(conf, fds, 2, err_path);
    ck_assert_int_gt(pid, 0);
    struct sph_proc p = {.pid = pid};
    snprintf(p.err_path, sizeof(p.err_path), "%s", err_path);
    struct admin_up up = {e.admin};
    bool ok = sph_wait_until(admin_answers, &up, START_MS);
    char *err = sph_read_file(err_path);
    ck_assert_msg(ok, "splicer did not start; stderr:\n%s", err != NULL ? err : "");
    free(err);
    close(fds[1]);

    ck_assert_int_eq(sph_ping(early, 10000), 0);
    close(early);
    for (int i = 0; i < 20; i++) {
        int fd = sph_connect(AF_INET, e.port, 5000);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(sph_ping(fd, 5000), 0);
        close(fd);
    }
    ck_assert_int_eq(sph_metric(e.admin, "splicer_inherited_sockets{source=\"systemd\"}"), 1);
    ck_assert(file_has(err_path, "listener web: 1 inherited socket, shared by every worker"));
    ck_assert(file_has(err_path, "no listener of the config has this address; closed it"));
    close(fds[0]); /* splicer holds the socket alone now */

    struct sph_proc neu;
    takeover(&neu, conf, e.admin);
    ck_assert(sph_proc_wait_log(&neu, "1 inherited socket, shared by every worker", 1, 5000));
    ck_assert_int_eq(sph_proc_wait(&p, 30000), 0);
    int fd = sph_connect(AF_INET, e.port, 5000);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(sph_ping(fd, 5000), 0);
    close(fd);
}
END_TEST

/* LISTEN_PID of another process: the descriptors are not splicer's, and it binds its own. */
START_TEST(listen_pid_mismatch_ignored)
{
    struct env e;
    env_init(&e);
    char conf[SPH_PATH_MAX];
    write_conf(conf, &e, 1, NULL, NULL);
    setenv("LISTEN_FDS", "1", 1);
    setenv("LISTEN_PID", "1", 1);
    struct sph_proc p;
    start_old(&p, conf, e.port);
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    ck_assert_int_eq(sph_metric(e.admin, "splicer_inherited_sockets{source=\"systemd\"}"), 0);
}
END_TEST

static void add_cases(Suite *s)
{
    TCase *tc = tcase_create("upgrade");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 280);
    tcase_add_test(tc, upgrade_under_load);
    tcase_add_test(tc, workers_down_and_up);
    tcase_add_test(tc, unix_listener_taken_over);
    tcase_add_test(tc, failures_keep_old_serving);
    tcase_add_test(tc, second_instance_refused);
    tcase_add_test(tc, reload_keeps_control_socket);
    tcase_add_test(tc, upgrade_script);
    tcase_add_test(tc, socket_activation);
    tcase_add_test(tc, listen_pid_mismatch_ignored);
    suite_add_tcase(s, tc);
}

int main(int argc, char **argv)
{
    static const struct sph_group groups[] = {{.name = NULL, .add = add_cases}};
    return sph_main(argc, argv, "integration.upgrade", groups, 1);
}
