/* test_shed.c: on_server_down (issue 12.4) against the real binary, with `workers: 2`. Clients
 * hold sessions on two servers, a (the victim) and b; each server names itself on connect, so a
 * client knows where it landed. With `shutdown`, a health check marking a down (its listener
 * closed, its open connections still served) resets a's sessions, both ways, spread over
 * shutdown_spread, while b's go on; with `keep` (the default) they all go on; a drain through
 * the admin endpoint keeps them; a reload removing a resets them under `shutdown` and not under
 * `keep`; a reload switching the key applies to the next event; a comes back up before the end
 * of the spread, and the sessions not reset yet are spared. The access log says `server_down`,
 * splicer_server_sessions_shutdown_total and /status count them. */
#include "harness.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define START_MS  10000
#define WAIT_MS   5000
#define RELOAD_MS 5000
#define MARGIN_MS 5000 /* past the spread: a loaded ASan box, a health check or two */
#define NCLIENTS  24
#define MIN_EACH  4 /* sessions each server must get for the spread to be judged */

static void teardown(void)
{
    sph_cleanup();
}

struct proxy {
    struct sph_proc p;
    char conf[SPH_PATH_MAX];
    int port, admin;
    struct sph_backend *a, *b;
};

/* The upstream's extra keys (policy, health_check), and whether a is still configured. */
static int render(const struct proxy *px, char *out, size_t cap, const char *keys, bool with_a)
{
    char a_line[64] = "";
    if (with_a)
        snprintf(a_line, sizeof(a_line), "      - address: 127.0.0.1:%d\n", px->a->port);
    return snprintf(out, cap,
                    "workers: 2\n"
                    "shutdown_timeout: 1s\n"
                    "access_log: stderr\n"
                    "admin:\n"
                    "  listen: 127.0.0.1:%d\n"
                    "listeners:\n"
                    "  main:\n"
                    "    listen: 127.0.0.1:%d\n"
                    "    upstream: pool\n"
                    "upstreams:\n"
                    "  pool:\n"
                    "    retries: 0\n"
                    "    max_fails: 0\n"
                    "%s"
                    "    servers:\n"
                    "%s"
                    "      - address: 127.0.0.1:%d\n",
                    px->admin, px->port, keys, a_line, px->b->port);
}

#define CHECK                                                                                      \
    "    health_check:\n"                                                                          \
    "      interval: 100ms\n"                                                                      \
    "      timeout: 300ms\n"                                                                       \
    "      rise: 1\n"                                                                              \
    "      fall: 1\n"

/* A backend that names itself. Its listener has SO_REUSEADDR, which the connections it accepts
 * inherit, so that it can listen again on its port while they are open (back_up_spares_the_rest).
 */
static struct sph_backend *named(const char *name)
{
    struct sph_backend *b = sph_backend_new(SPH_NAME, AF_INET);
    ck_assert_ptr_nonnull(b);
    snprintf(b->name, sizeof(b->name), "%s", name);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    ck_assert_int_eq(listen(fd, 128), 0);
    ck_assert_int_eq(sph_backend_start_fd(b, fd), 0);
    return b;
}

static void proxy_start(struct proxy *px, const char *keys)
{
    char text[2048];
    px->a = named("a");
    px->b = named("b");
    px->port = sph_free_port(AF_INET);
    px->admin = sph_free_port(AF_INET);
    ck_assert_int_lt(render(px, text, sizeof(text), keys, true), (int)sizeof(text));
    ck_assert_int_eq(sph_config_write(px->conf, "%s", text), 0);
    int rc = sph_splicer_start(&px->p, px->conf, px->port, START_MS);
    if (rc != 0) {
        char *err = sph_proc_stderr(&px->p);
        ck_abort_msg("splicer did not start (%s); stderr:\n%s", strerror(-rc), err);
    }
}

static void proxy_reload(struct proxy *px, const char *keys, bool with_a)
{
    char text[2048];
    ck_assert_int_lt(render(px, text, sizeof(text), keys, with_a), (int)sizeof(text));
    ck_assert_int_eq(sph_config_rewrite(px->conf, "%s", text), 0);
    int rc = sph_proc_signal_wait_log(&px->p, SIGHUP, "reloaded ", RELOAD_MS);
    if (rc != 0) {
        char *err = sph_proc_stderr(&px->p);
        ck_abort_msg("reload: %s; stderr:\n%s", strerror(-rc), err);
    }
}

static void expect_log(const struct proxy *px, const char *line, int count)
{
    if (!sph_proc_wait_log(&px->p, line, count, WAIT_MS)) {
        char *err = sph_proc_stderr(&px->p);
        ck_abort_msg("no %d x \"%s\" within %d ms; stderr:\n%s", count, line, WAIT_MS, err);
    }
}

/* The clients, split by the server that named itself. */
struct sessions {
    int on_a[NCLIENTS], on_b[NCLIENTS];
    int na, nb;
};

static void open_sessions(const struct proxy *px, struct sessions *ss)
{
    ss->na = ss->nb = 0;
    for (int i = 0; i < NCLIENTS; i++) {
        int fd = sph_connect(AF_INET, px->port, 2000);
        ck_assert_int_ge(fd, 0);
        char name[16];
        ssize_t n = sph_read_line(fd, name, sizeof(name), 3000);
        ck_assert_msg(n == 1, "client %d: no server name (%zd)", i, n);
        if (name[0] == 'a')
            ss->on_a[ss->na++] = fd;
        else
            ss->on_b[ss->nb++] = fd;
    }
    ck_assert_msg(ss->na >= MIN_EACH && ss->nb >= MIN_EACH, "a got %d sessions, b %d", ss->na,
                  ss->nb);
    /* Both servers hold them all, so later counts say what splicer closed. */
    ck_assert(sph_wait_atomic_ge(&px->a->active, ss->na, WAIT_MS));
}

static void expect_alive(const int *fds, int n, const char *what)
{
    for (int i = 0; i < n; i++) {
        int rc = sph_ping(fds[i], 3000);
        ck_assert_msg(rc == 0, "%s session %d of %d: %s", what, i, n, strerror(-rc));
    }
}

/* Waits until splicer has ended every fd of fds, or until deadline_ms: at[i] gets when fd i
 * ended, how[i] 0 for a FIN or -ECONNRESET. Returns how many ended. */
static int wait_ends(const int *fds, int n, int64_t *at, int *how, int64_t deadline_ms)
{
    int ended = 0;
    for (int i = 0; i < n; i++)
        at[i] = -1;
    while (ended < n && sph_now_ms() < deadline_ms) {
        struct pollfd pfd[NCLIENTS];
        int map[NCLIENTS], k = 0;
        for (int i = 0; i < n; i++) {
            if (at[i] < 0) {
                pfd[k] = (struct pollfd){fds[i], POLLIN, 0};
                map[k++] = i;
            }
        }
        if (poll(pfd, (nfds_t)k, 20) <= 0)
            continue;
        for (int j = 0; j < k; j++) {
            if (pfd[j].revents == 0)
                continue;
            char buf[256];
            ssize_t r = recv(fds[map[j]], buf, sizeof(buf), MSG_DONTWAIT);
            if (r > 0 || (r == -1 && errno == EAGAIN))
                continue;
            at[map[j]] = sph_now_ms();
            how[map[j]] = r == 0 ? 0 : -errno;
            ended++;
        }
    }
    return ended;
}

static char *server_series(char *buf, size_t cap, const char *name, int port)
{
    snprintf(buf, cap, "%s{upstream=\"pool\",server=\"127.0.0.1:%d\"}", name, port);
    return buf;
}

static void expect_status(int admin, const char *needle)
{
    static char body[16384];
    for (int64_t end = sph_now_ms() + WAIT_MS; sph_now_ms() < end; sph_sleep_ms(50)) {
        ck_assert_int_eq(sph_admin_req(admin, "GET", "/status", body, sizeof(body)), 200);
        if (strstr(body, needle) != NULL)
            return;
    }
    ck_abort_msg("/status lacks %s: %s", needle, body);
}

/* a's sessions all ended by a reset, the last at least half the spread after the first, all
 * within the spread (plus a margin) from `since`; b's untouched; splicer closed the server side
 * too, and counted and logged each one. */
static void expect_shed(struct proxy *px, struct sessions *ss, int64_t since, int spread_ms)
{
    int64_t at[NCLIENTS];
    int how[NCLIENTS];
    int ended = wait_ends(ss->on_a, ss->na, at, how, since + spread_ms + MARGIN_MS);
    ck_assert_msg(ended == ss->na, "%d of a's %d sessions ended within %d ms", ended, ss->na,
                  spread_ms + MARGIN_MS);
    int64_t first = at[0], last = at[0];
    for (int i = 0; i < ss->na; i++) {
        ck_assert_msg(how[i] == -ECONNRESET, "session %d ended by %s, not a reset", i,
                      how[i] == 0 ? "a FIN" : strerror(-how[i]));
        first = at[i] < first ? at[i] : first;
        last = at[i] > last ? at[i] : last;
    }
    ck_assert_msg(last - first >= spread_ms / 2,
                  "%d resets within %lld ms: not spread over %d ms (at least half of it)", ss->na,
                  (long long)(last - first), spread_ms);
    fprintf(stderr, "%d resets from %lld to %lld ms after the event (spread %d ms)\n", ss->na,
            (long long)(first - since), (long long)(last - since), spread_ms);
    expect_alive(ss->on_b, ss->nb, "b");
    /* The server's side was reset as well: a holds none of them any more. */
    for (int64_t end = sph_now_ms() + WAIT_MS; atomic_load(&px->a->active) > 0;)
        ck_assert_msg(sph_now_ms() < end, "a still holds %d connections",
                      atomic_load(&px->a->active));
    char series[160];
    sph_expect_metric(px->admin,
                      server_series(series, sizeof(series),
                                    "splicer_server_sessions_shutdown_total", px->a->port),
                      ss->na);
    sph_expect_metric(px->admin,
                      server_series(series, sizeof(series),
                                    "splicer_server_sessions_shutdown_total", px->b->port),
                      0);
    expect_log(px, "\"end\":\"server_down\"", ss->na);
    ck_assert_int_eq(sph_proc_log_count(&px->p, "\"end\":\"server_down\""), ss->na);
    /* What an operator sees, for the record of the run. */
    static char text[65536];
    ck_assert_int_eq(sph_admin_req(px->admin, "GET", "/metrics", text, sizeof(text)), 200);
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (strstr(line, "sessions_shutdown") != NULL)
            fprintf(stderr, "%s\n", line);
    }
}

#define SHUTDOWN_2S                                                                                \
    "    on_server_down: shutdown\n"                                                               \
    "    shutdown_spread: 2s\n"

/* The health checks mark a down: its sessions are reset over 2 s, b's go on. */
START_TEST(health_down_resets_spread)
{
    struct proxy px;
    proxy_start(&px, SHUTDOWN_2S CHECK);
    struct sessions ss;
    open_sessions(&px, &ss);
    expect_status(px.admin, "\"on_server_down\":\"shutdown\",\"shutdown_spread_ms\":2000");

    int64_t since = sph_now_ms();
    sph_backend_close_listener(px.a);
    char line[160];
    snprintf(line, sizeof(line),
             "server 127.0.0.1:%d marked down by health checks: resetting its %d open sessions "
             "over 2000 ms (on_server_down: shutdown)",
             px.a->port, ss.na);
    expect_log(&px, line, 1);
    expect_shed(&px, &ss, since, 2000);
    char needle[64];
    snprintf(needle, sizeof(needle), "\"sessions_shutdown\":%d", ss.na);
    expect_status(px.admin, needle);
}
END_TEST

/* shutdown_spread: 0: every session at once. */
START_TEST(spread_zero_at_once)
{
    struct proxy px;
    proxy_start(&px, "    on_server_down: shutdown\n    shutdown_spread: 0s\n" CHECK);
    struct sessions ss;
    open_sessions(&px, &ss);
    int64_t since = sph_now_ms();
    sph_backend_close_listener(px.a);
    int64_t at[NCLIENTS];
    int how[NCLIENTS];
    ck_assert_int_eq(wait_ends(ss.on_a, ss.na, at, how, since + MARGIN_MS), ss.na);
    for (int i = 0; i < ss.na; i++)
        ck_assert_int_eq(how[i], -ECONNRESET);
    expect_alive(ss.on_b, ss.nb, "b");
}
END_TEST

/* Without the key (keep): a goes down and its sessions go on, served by a. */
START_TEST(keep_leaves_them)
{
    struct proxy px;
    proxy_start(&px, "    shutdown_spread: 1s\n" CHECK);
    struct sessions ss;
    open_sessions(&px, &ss);
    expect_status(px.admin, "\"on_server_down\":\"keep\"");
    sph_backend_close_listener(px.a);
    char line[128];
    snprintf(line, sizeof(line), "server 127.0.0.1:%d up -> down", px.a->port);
    expect_log(&px, line, 1);
    sph_sleep_ms(1500); /* past the spread that shutdown would use */
    expect_alive(ss.on_a, ss.na, "a");
    expect_alive(ss.on_b, ss.nb, "b");
    ck_assert_int_eq(atomic_load(&px.a->active), ss.na);
    char series[160];
    sph_expect_metric(
        px.admin,
        server_series(series, sizeof(series), "splicer_server_sessions_shutdown_total", px.a->port),
        0);
    ck_assert_int_eq(sph_proc_log_count(&px.p, "resetting its"), 0);
}
END_TEST

/* A drain through the admin endpoint is no down: a's sessions stay, new clients go to b. */
START_TEST(drained_keeps_them)
{
    struct proxy px;
    proxy_start(&px, "    on_server_down: shutdown\n    shutdown_spread: 0s\n" CHECK);
    struct sessions ss;
    open_sessions(&px, &ss);
    char path[128], body[256];
    snprintf(path, sizeof(path), "/upstreams/pool/servers/127.0.0.1:%d/drain", px.a->port);
    ck_assert_int_eq(sph_admin_req(px.admin, "POST", path, body, sizeof(body)), 200);
    char series[160];
    sph_expect_metric(
        px.admin, server_series(series, sizeof(series), "splicer_server_drained", px.a->port), 1);
    sph_sleep_ms(1000);
    expect_alive(ss.on_a, ss.na, "a (drained)");
    int fd = sph_connect(AF_INET, px.port, 2000);
    ck_assert_int_ge(fd, 0);
    char name[16];
    ck_assert_int_eq(sph_read_line(fd, name, sizeof(name), 3000), 1);
    ck_assert_str_eq(name, "b");
    close(fd);
    sph_expect_metric(
        px.admin,
        server_series(series, sizeof(series), "splicer_server_sessions_shutdown_total", px.a->port),
        0);
    ck_assert_int_eq(sph_proc_log_count(&px.p, "\"end\":\"server_down\""), 0);
}
END_TEST

/* A reload that removes a resets its sessions under shutdown (no health check needed). */
START_TEST(reload_removal_resets)
{
    struct proxy px;
    proxy_start(&px, SHUTDOWN_2S);
    struct sessions ss;
    open_sessions(&px, &ss);
    int64_t since = sph_now_ms();
    proxy_reload(&px, SHUTDOWN_2S, false);
    char line[128];
    snprintf(line, sizeof(line), "server 127.0.0.1:%d removed by a reload: resetting its",
             px.a->port);
    expect_log(&px, line, 1);
    int64_t at[NCLIENTS];
    int how[NCLIENTS];
    ck_assert_int_eq(wait_ends(ss.on_a, ss.na, at, how, since + 2000 + MARGIN_MS), ss.na);
    for (int i = 0; i < ss.na; i++)
        ck_assert_int_eq(how[i], -ECONNRESET);
    expect_alive(ss.on_b, ss.nb, "b");
    expect_log(&px, "\"end\":\"server_down\"", ss.na);
}
END_TEST

/* Under keep, the sessions of a removed server finish on their own, as before. */
START_TEST(reload_removal_keep)
{
    struct proxy px;
    proxy_start(&px, "    on_server_down: keep\n    shutdown_spread: 0s\n");
    struct sessions ss;
    open_sessions(&px, &ss);
    proxy_reload(&px, "    on_server_down: keep\n    shutdown_spread: 0s\n", false);
    sph_sleep_ms(1000);
    expect_alive(ss.on_a, ss.na, "a (removed)");
    expect_alive(ss.on_b, ss.nb, "b");
    ck_assert_int_eq(sph_proc_log_count(&px.p, "resetting its"), 0);
}
END_TEST

/* keep, then a reload to shutdown: the next down resets. The reload itself touches nothing. */
START_TEST(reload_switches_policy)
{
    struct proxy px;
    proxy_start(&px, "    shutdown_spread: 0s\n" CHECK);
    struct sessions ss;
    open_sessions(&px, &ss);
    proxy_reload(&px, "    on_server_down: shutdown\n    shutdown_spread: 0s\n" CHECK, true);
    expect_status(px.admin, "\"on_server_down\":\"shutdown\",\"shutdown_spread_ms\":0");
    expect_alive(ss.on_a, ss.na, "a");
    int64_t since = sph_now_ms();
    sph_backend_close_listener(px.a);
    int64_t at[NCLIENTS];
    int how[NCLIENTS];
    ck_assert_int_eq(wait_ends(ss.on_a, ss.na, at, how, since + MARGIN_MS), ss.na);
    expect_alive(ss.on_b, ss.nb, "b");
}
END_TEST

/* a comes back up early in a long spread: the sessions not reset by then are spared. */
START_TEST(back_up_spares_the_rest)
{
    struct proxy px;
    proxy_start(&px, "    on_server_down: shutdown\n    shutdown_spread: 8s\n" CHECK);
    struct sessions ss;
    open_sessions(&px, &ss);
    sph_backend_close_listener(px.a);
    char line[128];
    snprintf(line, sizeof(line), "server 127.0.0.1:%d marked down by health checks", px.a->port);
    expect_log(&px, line, 1);
    expect_log(&px, "\"end\":\"server_down\"", 1); /* the first goes at once */
    ck_assert_int_eq(sph_backend_restart(px.a), 0);
    snprintf(line, sizeof(line), "server 127.0.0.1:%d down -> up", px.a->port);
    expect_log(&px, line, 1);
    /* Past the whole spread: whatever was reset has been, the rest stays. */
    int64_t at[NCLIENTS];
    int how[NCLIENTS];
    int ended = wait_ends(ss.on_a, ss.na, at, how, sph_now_ms() + 8000 + 1000);
    ck_assert_msg(ended < ss.na, "all %d sessions were reset although a came back up", ss.na);
    ck_assert_int_ge(ended, 1);
    int alive[NCLIENTS], nalive = 0;
    for (int i = 0; i < ss.na; i++) {
        if (at[i] < 0)
            alive[nalive++] = ss.on_a[i];
    }
    expect_alive(alive, nalive, "a (spared)");
    char series[160];
    sph_expect_metric(
        px.admin,
        server_series(series, sizeof(series), "splicer_server_sessions_shutdown_total", px.a->port),
        ended);
}
END_TEST

/* splicer -t: a bad value or duration is an error at its FILE:LINE:COL, exit 1. */
START_TEST(check_rejects_bad_values)
{
    static const struct {
        const char *keys, *msg;
    } bad[] = {
        {"    on_server_down: nuke\n", ":11:21: invalid value 'nuke' for 'on_server_down' in "
                                       "upstream 'pool' (expected one of: keep, shutdown)"},
        {"    shutdown_spread: 5sec\n", ":11:22: invalid duration '5sec' for 'shutdown_spread' "
                                        "in upstream 'pool'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char conf[SPH_PATH_MAX];
        ck_assert_int_eq(sph_config_write(conf,
                                          "listeners:\n"
                                          "  main:\n"
                                          "    listen: 127.0.0.1:1\n"
                                          "    upstream: pool\n"
                                          "upstreams:\n"
                                          "  pool:\n"
                                          "    servers:\n"
                                          "      - address: 127.0.0.1:2\n"
                                          "    retries: 0\n"
                                          "    max_fails: 0\n"
                                          "%s",
                                          bad[i].keys),
                         0);
        struct sph_proc p;
        const char *args[] = {"-t", "-c", conf, NULL};
        ck_assert_int_eq(sph_run(&p, args, 5000), 1);
        char *err = sph_proc_stderr(&p), want[256];
        snprintf(want, sizeof(want), "%s%s", conf, bad[i].msg);
        ck_assert_msg(strstr(err, want) != NULL, "want %s in: %s", want, err);
        free(err);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("integration.shed");
    TCase *tc = tcase_create("on_server_down");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, check_rejects_bad_values);
    tcase_add_test(tc, health_down_resets_spread);
    tcase_add_test(tc, spread_zero_at_once);
    tcase_add_test(tc, keep_leaves_them);
    tcase_add_test(tc, drained_keeps_them);
    tcase_add_test(tc, reload_removal_resets);
    tcase_add_test(tc, reload_removal_keep);
    tcase_add_test(tc, reload_switches_policy);
    tcase_add_test(tc, back_up_spares_the_rest);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
