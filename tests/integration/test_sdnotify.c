/* test_sdnotify.c: systemd's notify protocol as systemd sees it. Each case binds a real AF_UNIX
 * datagram socket (a path, or an abstract "@name"), hands it to splicer in NOTIFY_SOCKET, and
 * reads what arrives: READY=1 only once the listener accepts, RELOADING=1 + MONOTONIC_USEC then
 * READY=1 around a SIGHUP (a failed one too), STATUS= with the connection counts, WATCHDOG=1 at
 * half WATCHDOG_USEC (none when WATCHDOG_PID names another process), STOPPING=1 on SIGTERM. */
#include "harness.h"

#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define START_MS 20000 /* bounds for a loaded machine: each waits for a condition, not a time */
#define STEP_MS  15000
#define MSG_MAX  512
#define MSGS_MAX 512

/* ---- the notification socket, as systemd's end ------------------------------------------- */

struct notify_msg {
    int64_t at_ms; /* sph_now_ms() when it was read */
    char text[MSG_MAX];
};

struct receiver {
    int fd;
    pthread_t thr;
    atomic_bool stop;
    pthread_mutex_t lock;
    size_t n; /* under lock */
    struct notify_msg msgs[MSGS_MAX];
    char path[SPH_PATH_MAX]; /* a filesystem socket to unlink, or "" */
};

static struct receiver *rcv; /* the case's receiver; the process is forked per case */

static void *receive_loop(void *arg)
{
    struct receiver *r = arg;
    while (!atomic_load(&r->stop)) {
        struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        char buf[MSG_MAX];
        ssize_t len = recv(r->fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
        if (len < 0)
            continue;
        buf[len] = '\0';
        pthread_mutex_lock(&r->lock);
        if (r->n < MSGS_MAX) {
            r->msgs[r->n].at_ms = sph_now_ms();
            memcpy(r->msgs[r->n].text, buf, (size_t)len + 1);
            r->n++;
        }
        pthread_mutex_unlock(&r->lock);
    }
    return NULL;
}

/* Binds the socket (name "@x" is abstract), starts reading it and sets NOTIFY_SOCKET. */
static void receiver_start(bool abstract)
{
    rcv = calloc(1, sizeof(*rcv));
    ck_assert_ptr_nonnull(rcv);
    pthread_mutex_init(&rcv->lock, NULL);
    rcv->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(rcv->fd, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char env[sizeof(sa.sun_path) + 1];
    socklen_t len;
    if (abstract) {
        snprintf(env, sizeof(env), "@splicer-test-notify-%d-%" PRId64, (int)getpid(), sph_now_ms());
        memcpy(sa.sun_path + 1, env + 1, strlen(env) - 1); /* sun_path[0] = '\0' */
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(env));
    } else {
        snprintf(rcv->path, sizeof(rcv->path), "/tmp/splicer-test-notify-%d.sock", (int)getpid());
        unlink(rcv->path);
        snprintf(env, sizeof(env), "%s", rcv->path);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", rcv->path);
        len = sizeof(sa);
    }
    ck_assert_msg(bind(rcv->fd, (struct sockaddr *)&sa, len) == 0, "bind %s: %s", env,
                  strerror(errno));
    ck_assert_int_eq(pthread_create(&rcv->thr, NULL, receive_loop, rcv), 0);
    setenv("NOTIFY_SOCKET", env, 1);
}

static void teardown(void)
{
    sph_cleanup();
    if (rcv == NULL)
        return;
    atomic_store(&rcv->stop, true);
    pthread_join(rcv->thr, NULL);
    close(rcv->fd);
    if (rcv->path[0] != '\0')
        unlink(rcv->path);
    free(rcv);
    rcv = NULL;
}

static size_t received(void)
{
    pthread_mutex_lock(&rcv->lock);
    size_t n = rcv->n;
    pthread_mutex_unlock(&rcv->lock);
    return n;
}

/* Message i (< received()), copied. */
static struct notify_msg msg_at(size_t i)
{
    pthread_mutex_lock(&rcv->lock);
    struct notify_msg m = rcv->msgs[i];
    pthread_mutex_unlock(&rcv->lock);
    return m;
}

/* True when the datagram has `field` as one of its lines ("READY=1") or, for "STATUS=",
 * a line starting with it. */
static bool has_line(const char *text, const char *field)
{
    size_t flen = strlen(field);
    for (const char *p = text; p != NULL && *p != '\0';) {
        const char *end = strchr(p, '\n');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (field[flen - 1] == '=' ? strncmp(p, field, flen) == 0
                                   : len == flen && strncmp(p, field, flen) == 0)
            return true;
        p = end != NULL ? end + 1 : NULL;
    }
    return false;
}

/* The first message from index *from on that has line `field` and contains `needle` (or NULL),
 * within timeout_ms; *from is moved past it. Fails the case with everything received. */
static struct notify_msg expect_msg(size_t *from, const char *field, const char *needle,
                                    int timeout_ms)
{
    int64_t deadline = sph_now_ms() + timeout_ms;
    for (;;) {
        size_t n = received();
        for (size_t i = *from; i < n; i++) {
            struct notify_msg m = msg_at(i);
            if (has_line(m.text, field) && (needle == NULL || strstr(m.text, needle) != NULL)) {
                *from = i + 1;
                return m;
            }
        }
        if (sph_now_ms() >= deadline)
            break;
        sph_sleep_ms(5);
    }
    char all[4096] = "";
    size_t used = 0;
    for (size_t i = 0; i < received() && used + 1 < sizeof(all); i++)
        used += (size_t)snprintf(all + used, sizeof(all) - used, "  [%zu] %s\n", i, msg_at(i).text);
    ck_abort_msg("no %s%s%s within %d ms after message %zu; received:\n%s", field,
                 needle != NULL ? " with " : "", needle != NULL ? needle : "", timeout_ms, *from,
                 all);
    abort(); /* not reached */
}

/* How many messages from index `from` on have line `field`. */
static int count_field(size_t from, const char *field)
{
    int c = 0;
    for (size_t i = from; i < received(); i++)
        c += has_line(msg_at(i).text, field);
    return c;
}

/* ---- splicer ----------------------------------------------------------------------------- */

#define CONFIG_FMT                                                                                 \
    "workers: 2\n"                                                                                 \
    "shutdown_timeout: 20s\n"                                                                      \
    "listeners:\n"                                                                                 \
    "  main:\n"                                                                                    \
    "    listen: 127.0.0.1:%d\n"                                                                   \
    "    upstream: pool\n"                                                                         \
    "upstreams:\n"                                                                                 \
    "  pool:\n"                                                                                    \
    "    servers:\n"                                                                               \
    "      - address: 127.0.0.1:%d\n"

struct proxy {
    struct sph_proc p;
    char conf[SPH_PATH_MAX];
    int port;
    int echo_port;
};

/* Spawns splicer (not waiting for its port: READY=1 is what the cases wait for). */
static void proxy_spawn(struct proxy *px)
{
    struct sph_backend *echo = sph_backend_new(SPH_ECHO, AF_INET);
    ck_assert_ptr_nonnull(echo);
    ck_assert_int_eq(sph_backend_start(echo), 0);
    px->echo_port = echo->port;
    px->port = sph_free_port(AF_INET);
    ck_assert_int_eq(sph_config_write(px->conf, CONFIG_FMT, px->port, px->echo_port), 0);
    const char *args[] = {"-c", px->conf, NULL};
    ck_assert_int_eq(sph_proc_spawn(&px->p, args), 0);
}

/* One byte through the proxy and back: the listener accepts and relays. */
static bool round_trip(int port)
{
    int fd = sph_connect(AF_INET, port, 2000);
    if (fd < 0)
        return false;
    char c = 'x';
    bool ok =
        sph_write_all(fd, &c, 1, 5000) == 0 && sph_read_exact(fd, &c, 1, 5000) == 1 && c == 'x';
    close(fd);
    return ok;
}

static void expect_exit0(struct sph_proc *p)
{
    int code = sph_proc_wait(p, STEP_MS);
    char *err = sph_proc_stderr(p);
    ck_assert_msg(code == 0, "splicer exit %d; stderr:\n%s", code, err);
    free(err);
}

/* ---- cases -------------------------------------------------------------------------------- */

/* READY=1 is sent once the listener is there: a client connecting the moment it arrives is
 * served. Nothing but READY (and STATUS) comes before it. */
static void ready_then_serves(bool abstract)
{
    receiver_start(abstract);
    struct proxy px;
    proxy_spawn(&px);
    size_t at = 0;
    struct notify_msg m = expect_msg(&at, "READY=1", NULL, START_MS);
    ck_assert_msg(sph_port_listening(px.port), "READY=1 before port %d listens", px.port);
    ck_assert_msg(round_trip(px.port), "READY=1 but no echo through port %d", px.port);
    ck_assert_msg(at == 1, "%zu messages before READY=1, first: %s", at - 1, msg_at(0).text);
    ck_assert_msg(strstr(m.text, "STATUS=0 active connections, 0 total, config generation 1"),
                  "READY=1 without the first status: %s", m.text);
    ck_assert_int_eq(count_field(0, "WATCHDOG=1"), 0); /* no WATCHDOG_USEC, no pings */
    ck_assert_int_eq(sph_proc_signal(&px.p, SIGTERM), 0);
    expect_msg(&at, "STOPPING=1", NULL, STEP_MS);
    expect_exit0(&px.p);
}

START_TEST(ready_path_socket)
{
    ready_then_serves(false);
}
END_TEST

START_TEST(ready_abstract_socket)
{
    ready_then_serves(true);
}
END_TEST

static uint64_t monotonic_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* RELOADING=1 with MONOTONIC_USEC between our clock before the SIGHUP and after the message;
 * returns the message index after it. */
static void expect_reloading(size_t *at, uint64_t before)
{
    struct notify_msg m = expect_msg(at, "RELOADING=1", NULL, STEP_MS);
    uint64_t after = monotonic_usec();
    const char *v = strstr(m.text, "MONOTONIC_USEC=");
    ck_assert_msg(v != NULL, "RELOADING=1 without MONOTONIC_USEC: %s", m.text);
    unsigned long long usec = strtoull(v + strlen("MONOTONIC_USEC="), NULL, 10);
    ck_assert_msg(usec >= before && usec <= after,
                  "MONOTONIC_USEC=%llu not within our CLOCK_MONOTONIC %llu..%llu", usec,
                  (unsigned long long)before, (unsigned long long)after);
}

/* SIGHUP: RELOADING=1 then READY=1 with the new generation; a config that fails keeps the old
 * one, and READY=1 still follows, with a STATUS that says so; a good reload clears it. */
START_TEST(reload_sequence)
{
    receiver_start(true);
    struct proxy px;
    proxy_spawn(&px);
    size_t at = 0;
    expect_msg(&at, "READY=1", NULL, START_MS);

    uint64_t before = monotonic_usec();
    ck_assert_int_eq(sph_proc_signal(&px.p, SIGHUP), 0);
    expect_reloading(&at, before);
    expect_msg(&at, "READY=1", "config generation 2", STEP_MS);

    ck_assert_int_eq(sph_config_rewrite(px.conf, "listeners: [\n"), 0);
    before = monotonic_usec();
    ck_assert_int_eq(sph_proc_signal(&px.p, SIGHUP), 0);
    expect_reloading(&at, before);
    struct notify_msg m = expect_msg(&at, "READY=1", NULL, STEP_MS);
    ck_assert_msg(strstr(m.text, "STATUS=reload failed, old config kept (") != NULL &&
                      strstr(m.text, px.conf) != NULL &&
                      strstr(m.text, "config generation 2") != NULL,
                  "READY=1 after a failed reload: %s", m.text);
    ck_assert_msg(round_trip(px.port), "the old config no longer serves");

    ck_assert_int_eq(sph_config_rewrite(px.conf, CONFIG_FMT, px.port, px.echo_port), 0);
    before = monotonic_usec();
    ck_assert_int_eq(sph_proc_signal(&px.p, SIGHUP), 0);
    expect_reloading(&at, before);
    m = expect_msg(&at, "READY=1", NULL, STEP_MS);
    ck_assert_msg(strstr(m.text, " 1 total, config generation 3") != NULL &&
                      strstr(m.text, "reload failed") == NULL,
                  "READY=1 after a good reload: %s", m.text);
    ck_assert_int_eq(sph_proc_signal(&px.p, SIGTERM), 0);
    expect_msg(&at, "STOPPING=1", NULL, STEP_MS);
    expect_exit0(&px.p);
}
END_TEST

/* STATUS= follows the connections within a refresh: three open, then two closed; STOPPING=1
 * counts what is left to drain. */
START_TEST(status_counts)
{
    receiver_start(false);
    struct proxy px;
    proxy_spawn(&px);
    size_t at = 0;
    expect_msg(&at, "READY=1", NULL, START_MS);
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = sph_connect(AF_INET, px.port, 5000);
        ck_assert_int_ge(fds[i], 0);
        char c = 'a';
        ck_assert_int_eq(sph_write_all(fds[i], &c, 1, 5000), 0);
        ck_assert_int_eq(sph_read_exact(fds[i], &c, 1, 5000), 1);
    }
    expect_msg(&at, "STATUS=", "3 active connections, 3 total, config generation 1", STEP_MS);
    close(fds[0]);
    close(fds[1]);
    expect_msg(&at, "STATUS=", "1 active connections, 3 total", STEP_MS);
    ck_assert_int_eq(sph_proc_signal(&px.p, SIGTERM), 0);
    struct notify_msg m = expect_msg(&at, "STOPPING=1", NULL, STEP_MS);
    ck_assert_msg(strstr(m.text, "STATUS=stopping: 1 active connections left, 3 total"),
                  "STOPPING=1 status: %s", m.text);
    close(fds[2]); /* the last one: splicer exits */
    expect_exit0(&px.p);
}
END_TEST

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* WATCHDOG_USEC=400ms: a ping about every 200 ms from READY=1 on, also while stopping. */
START_TEST(watchdog_cadence)
{
    receiver_start(true);
    setenv("WATCHDOG_USEC", "400000", 1);
    struct proxy px;
    proxy_spawn(&px);
    size_t at = 0;
    expect_msg(&at, "READY=1", NULL, START_MS);
    int64_t at_ms[16];
    for (int i = 0; i < 16; i++)
        at_ms[i] = expect_msg(&at, "WATCHDOG=1", NULL, STEP_MS).at_ms;
    /* The median gap: robust to a loaded machine delaying a few reads. */
    int64_t gaps[15];
    for (int i = 0; i < 15; i++)
        gaps[i] = at_ms[i + 1] - at_ms[i];
    qsort(gaps, 15, sizeof(gaps[0]), cmp_i64);
    ck_assert_msg(gaps[7] >= 120 && gaps[7] <= 320,
                  "median gap between WATCHDOG=1 is %" PRId64 " ms, want about 200", gaps[7]);
    ck_assert_int_eq(sph_proc_signal(&px.p, SIGTERM), 0);
    expect_msg(&at, "STOPPING=1", NULL, STEP_MS);
    expect_exit0(&px.p);
}
END_TEST

/* WATCHDOG_PID names another process (the variables leaked to a child of the service): no
 * pings, as sd_watchdog_enabled(3) says. */
START_TEST(watchdog_other_pid)
{
    receiver_start(false);
    setenv("WATCHDOG_USEC", "200000", 1);
    setenv("WATCHDOG_PID", "1", 1);
    struct proxy px;
    proxy_spawn(&px);
    size_t at = 0;
    expect_msg(&at, "READY=1", NULL, START_MS);
    sph_sleep_ms(1500); /* about 15 ping periods */
    ck_assert_int_eq(count_field(0, "WATCHDOG=1"), 0);
    ck_assert_int_eq(sph_proc_signal(&px.p, SIGTERM), 0);
    expect_msg(&at, "STOPPING=1", NULL, STEP_MS);
    expect_exit0(&px.p);
}
END_TEST

/* `splicer -t` under NOTIFY_SOCKET (ExecStartPre=) must not claim readiness. */
START_TEST(check_only_is_silent)
{
    receiver_start(false);
    struct proxy px;
    px.port = sph_free_port(AF_INET);
    ck_assert_int_eq(sph_config_write(px.conf, CONFIG_FMT, px.port, 9), 0);
    const char *args[] = {"-t", "-c", px.conf, NULL};
    ck_assert_int_eq(sph_run(&px.p, args, STEP_MS), 0);
    sph_sleep_ms(200);
    ck_assert_int_eq((int)received(), 0);
}
END_TEST

static Suite *sdnotify_suite(void)
{
    Suite *s = suite_create("integration.sdnotify");
    TCase *tc = tcase_create("notify");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, ready_path_socket);
    tcase_add_test(tc, ready_abstract_socket);
    tcase_add_test(tc, reload_sequence);
    tcase_add_test(tc, status_counts);
    tcase_add_test(tc, watchdog_cadence);
    tcase_add_test(tc, watchdog_other_pid);
    tcase_add_test(tc, check_only_is_silent);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* The variables systemd would set are the cases' own: none may come from outside. */
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    SRunner *sr = srunner_create(sdnotify_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
