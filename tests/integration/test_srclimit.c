/* test_srclimit.c: a listener's per-client limits (limits:) as clients see them. Clients come
 * from several loopback addresses (127.0.0.2, 127.0.0.3, ...: bind() before connect), so one can
 * be over its limit while the others are served. Also: the rate recovers once the bucket has
 * refilled; with workers: 2 the count is one for the whole process; a reload that changes the
 * limit applies to new connections while the old ones keep counting; IPv6 clients count per
 * /64, through PROXY headers and (group ipv6: real IPv6 sockets in a private network namespace,
 * root only) through the socket's peer; a table with no room fails open and says so; without a
 * limits block nobody is refused; `splicer -t` places a bad value.
 *
 * A refused client is accepted by the kernel and closed at once by splicer: it reads EOF (or a
 * reset) instead of its echo, and the backend never sees it. */
#include "harness.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define START_MS 10000
#define IO_MS    3000

static void teardown(void)
{
    sph_cleanup();
}

/* ---- clients from chosen source addresses ------------------------------------------------ */

static socklen_t sockaddr_of(const char *ip, int port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, ip, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        return sizeof(*in);
    }
    ck_assert_msg(inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1, "bad address %s", ip);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    return sizeof(*in6);
}

/* A non-blocking connection from src (port 0) to dst:port; asserts it connects. */
static int connect_from(const char *src, const char *dst, int port)
{
    struct sockaddr_storage from, to;
    socklen_t flen = sockaddr_of(src, 0, &from), tlen = sockaddr_of(dst, port, &to);
    int fd = socket(from.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_msg(bind(fd, (struct sockaddr *)&from, flen) == 0, "bind %s: %s", src,
                  strerror(errno));
    struct timeval tv = {IO_MS / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    ck_assert_msg(connect(fd, (struct sockaddr *)&to, tlen) == 0, "connect from %s: %s", src,
                  strerror(errno));
    ck_assert_int_eq(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    return fd;
}

/* A client from src: the open fd when its echo came back, or -1 (closed) when splicer closed it
 * instead. `head` (may be NULL) is sent first: a PROXY header. */
static int client(const char *src, const char *dst, int port, const char *head)
{
    int fd = connect_from(src, dst, port);
    if (head != NULL)
        ck_assert_int_eq(sph_write_all(fd, head, strlen(head), IO_MS), 0);
    int rc = sph_ping(fd, IO_MS);
    if (rc == 0)
        return fd;
    ck_assert_msg(rc == -EPIPE || rc == -ECONNRESET,
                  "client from %s: neither served nor closed: %s", src, strerror(-rc));
    close(fd);
    return -1;
}

static int client4(const char *src, int port)
{
    return client(src, "127.0.0.1", port, NULL);
}

/* ---- a splicer with one listener, an echo server behind it and an admin endpoint ---------- */

struct rig {
    struct sph_proc p;
    char conf[SPH_PATH_MAX];
    int port, admin, workers;
    const char *listen_ip; /* "127.0.0.1" unless an IPv6 test says otherwise */
    struct sph_backend *echo;
};

static void rig_render(struct rig *r, const char *lopts, bool rewrite)
{
    char listen[64];
    snprintf(listen, sizeof(listen), strchr(r->listen_ip, ':') ? "\"[%s]:%d\"" : "%s:%d",
             r->listen_ip, r->port);
    static const char fmt[] = "workers: %d\n"
                              "shutdown_timeout: 1s\n"
                              "access_log: stderr\n"
                              "log_format: text\n"
                              "admin: {listen: 127.0.0.1:%d}\n"
                              "listeners:\n"
                              "  web:\n"
                              "    listen: %s\n"
                              "    upstream: pool\n"
                              "%s"
                              "upstreams:\n"
                              "  pool: {servers: [{address: 127.0.0.1:%d}]}\n";
    int rc =
        rewrite
            ? sph_config_rewrite(r->conf, fmt, r->workers, r->admin, listen, lopts, r->echo->port)
            : sph_config_write(r->conf, fmt, r->workers, r->admin, listen, lopts, r->echo->port);
    ck_assert_int_eq(rc, 0);
}

static void rig_start(struct rig *r, int workers, const char *lopts)
{
    if (r->listen_ip == NULL)
        r->listen_ip = "127.0.0.1";
    r->workers = workers;
    r->echo = sph_backend_new(SPH_ECHO, AF_INET);
    ck_assert_ptr_nonnull(r->echo);
    ck_assert_int_eq(sph_backend_start(r->echo), 0);
    r->port = sph_free_port(strchr(r->listen_ip, ':') ? AF_INET6 : AF_INET);
    r->admin = sph_free_port(AF_INET);
    rig_render(r, lopts, false);
    int rc = sph_splicer_start(&r->p, r->conf, r->port, START_MS);
    ck_assert_msg(rc == 0, "splicer did not start (%s); stderr:\n%s", strerror(-rc),
                  sph_proc_stderr(&r->p));
}

static void rig_reload(struct rig *r, const char *lopts)
{
    rig_render(r, lopts, true);
    ck_assert_int_eq(sph_proc_signal_wait_log(&r->p, SIGHUP, "reloaded ", IO_MS), 0);
}

static long long refused(struct rig *r, const char *reason)
{
    char series[160];
    snprintf(series, sizeof(series),
             "splicer_rejected_connections_total{listener=\"web\",reason=\"%s\"}", reason);
    return sph_metric(r->admin, series);
}

static void expect_refused(struct rig *r, const char *reason, long long want)
{
    char series[160];
    snprintf(series, sizeof(series),
             "splicer_rejected_connections_total{listener=\"web\",reason=\"%s\"}", reason);
    sph_expect_metric(r->admin, series, want);
}

static void expect_active(struct rig *r, long long want)
{
    sph_expect_metric(r->admin, "splicer_listener_active_connections{listener=\"web\"}", want);
}

static void close_all(int *fds, int n)
{
    for (int i = 0; i < n; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
        fds[i] = -1;
    }
}

/* ---- the tests --------------------------------------------------------------------------- */

/* per_source_connections: 2. 127.0.0.2 gets two, its third is closed at once while 127.0.0.3
 * and 127.0.0.4 are served; once one of its two leaves, it is served again. */
START_TEST(connections_per_client)
{
    struct rig r = {0};
    rig_start(&r, 1, "    limits: {per_source_connections: 2}\n");
    int a[3], b[2], c[2];
    a[0] = client4("127.0.0.2", r.port);
    a[1] = client4("127.0.0.2", r.port);
    ck_assert_msg(a[0] >= 0 && a[1] >= 0, "the first two of 127.0.0.2 were not served");
    a[2] = client4("127.0.0.2", r.port);
    ck_assert_int_eq(a[2], -1);
    for (int i = 0; i < 2; i++) {
        b[i] = client4("127.0.0.3", r.port);
        c[i] = client4("127.0.0.4", r.port);
        ck_assert_msg(b[i] >= 0 && c[i] >= 0, "other clients were refused");
    }
    ck_assert_int_eq(client4("127.0.0.4", r.port), -1);
    ck_assert_int_eq(atomic_load(&r.echo->accepted), 6); /* no server contact for refusals */
    expect_refused(&r, "per_source_connections", 2);
    expect_refused(&r, "per_source_rate", 0);
    expect_refused(&r, "max_connections", 0);
    sph_expect_metric(r.admin, "splicer_listener_rejected_total{listener=\"web\"}", 0);
    sph_expect_metric(r.admin, "splicer_limits_tracked_sources{listener=\"web\"}", 3);
    ck_assert(sph_proc_wait_log(&r.p, "refused a connection from 127.0.0.2:", 1, IO_MS));
    ck_assert(sph_proc_wait_log(&r.p, "client 127.0.0.2/32 is over per_source_connections (2 open)",
                                1, IO_MS));

    close(a[0]);
    expect_active(&r, 5); /* its session has closed and given its count back */
    a[0] = client4("127.0.0.2", r.port);
    ck_assert_msg(a[0] >= 0, "127.0.0.2 not served after one of its two left");
    ck_assert_int_eq(sph_ping(a[1], IO_MS), 0);

    char body[16384];
    ck_assert_int_eq(sph_admin_req(r.admin, "GET", "/status", body, sizeof(body)), 200);
    ck_assert_msg(
        strstr(body,
               "\"refused\":{\"max_connections\":0,\"fd_exhausted\":0,"
               "\"denied\":0,\"untrusted_proxy\":0,\"bad_header\":0,\"per_source_connections\":2,"
               "\"per_source_rate\":0}") != NULL,
        "%s", body);
    ck_assert_msg(strstr(body, "\"limits\":{\"per_source_connections\":2,\"per_source_rate\":null,"
                               "\"source_prefix_v4\":32,\"source_prefix_v6\":64,"
                               "\"tracked_sources\":65536,\"sources\":3,\"untracked\":0}") != NULL,
                  "%s", body);
    close_all(a, 2);
    close_all(b, 2);
    close_all(c, 2);
    expect_active(&r, 0);
    sph_expect_metric(r.admin, "splicer_limits_tracked_sources{listener=\"web\"}", 0);
}
END_TEST

/* per_source_rate: 2/s (a burst of 2, then one every 500 ms). A quick run of 127.0.0.2 is cut
 * at the burst plus what refilled meanwhile; 127.0.0.3 is served all the while; after a second
 * of quiet the burst is there again. */
START_TEST(rate_recovers)
{
    struct rig r = {0};
    rig_start(&r, 1, "    limits: {per_source_rate: 2/s}\n");
    int served = 0, refusals = 0;
    int64_t t0 = sph_now_ms();
    for (int i = 0; i < 10; i++) {
        int fd = client4("127.0.0.2", r.port);
        if (fd >= 0) {
            served++;
            close(fd);
        } else {
            refusals++;
        }
    }
    int64_t took = sph_now_ms() - t0;
    ck_assert_int_ge(served, 2);
    ck_assert_msg(served <= 2 + took / 500 + 1, "%d served in %lld ms at 2/s", served,
                  (long long)took);
    ck_assert_int_ge(refusals, 1);
    int other = client4("127.0.0.3", r.port);
    ck_assert_msg(other >= 0, "127.0.0.3 was refused for 127.0.0.2's rate");
    close(other);
    expect_refused(&r, "per_source_rate", refusals);
    expect_refused(&r, "per_source_connections", 0);
    ck_assert(
        sph_proc_wait_log(&r.p, "client 127.0.0.2/32 is over per_source_rate (2/s)", 1, IO_MS));

    sph_sleep_ms(1100);
    for (int i = 0; i < 2; i++) {
        int fd = client4("127.0.0.2", r.port);
        ck_assert_msg(fd >= 0, "connection %d of a refilled bucket refused", i + 1);
        close(fd);
    }
}
END_TEST

/* A refused connection takes no token: with per_source_connections: 1 and a rate of 2/s, one
 * open connection and five refused ones leave the second token for the next connection. The
 * bucket refills one token every 500 ms, so a run slower than that proves nothing and is
 * tried again from a fresh client. */
START_TEST(refusal_takes_no_token)
{
    struct rig r = {0};
    rig_start(&r, 1, "    limits: {per_source_connections: 1, per_source_rate: 2/s}\n");
    bool proved = false;
    for (int attempt = 0; attempt < 5 && !proved; attempt++) {
        char src[32];
        snprintf(src, sizeof(src), "127.0.1.%d", attempt + 1);
        int64_t t0 = sph_now_ms();
        int first = client4(src, r.port);
        ck_assert_int_ge(first, 0);
        for (int i = 0; i < 5; i++)
            ck_assert_int_eq(client4(src, r.port), -1);
        close(first);
        expect_active(&r, 0);
        int second = client4(src, r.port);
        int64_t took = sph_now_ms() - t0;
        if (took >= 450) {
            if (second >= 0)
                close(second);
            continue; /* a token may have refilled: inconclusive */
        }
        ck_assert_msg(second >= 0, "the second token was gone after refusals (%lld ms)",
                      (long long)took);
        close(second);
        proved = true;
    }
    ck_assert_msg(proved, "no run was quicker than the 500 ms refill (machine too loaded)");
}
END_TEST

/* The other refusals come first and take nothing from a client's limits, and are counted by
 * reason in the same family. per_source_rate: 1/m (a burst of one, the next token a minute later)
 * per /24: three attempts of a denied 127.0.0.5 leave the /24's one token to 127.0.0.2, whose
 * neighbour 127.0.0.3 is then over the rate. With max_connections: 1 held by 127.0.1.1, 127.0.2.1
 * is refused for max_connections and keeps its token for later. */
START_TEST(other_refusals_take_nothing)
{
    struct rig r = {0};
    rig_start(&r, 1,
              "    max_connections: 1\n"
              "    deny: [127.0.0.5]\n"
              "    limits: {per_source_rate: 1/m, source_prefix_v4: 24}\n");
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(client4("127.0.0.5", r.port), -1);
    expect_refused(&r, "denied", 3);
    int a = client4("127.0.0.2", r.port);
    ck_assert_msg(a >= 0, "denied attempts spent the /24's token");
    close(a);
    expect_active(&r, 0);
    ck_assert_int_eq(client4("127.0.0.3", r.port), -1);
    expect_refused(&r, "per_source_rate", 1);

    int held = client4("127.0.1.1", r.port);
    ck_assert_int_ge(held, 0);
    ck_assert_int_eq(client4("127.0.2.1", r.port), -1);
    expect_refused(&r, "max_connections", 1);
    sph_expect_metric(r.admin, "splicer_listener_rejected_total{listener=\"web\"}", 1);
    close(held);
    expect_active(&r, 0);
    int b = client4("127.0.2.1", r.port);
    ck_assert_msg(b >= 0, "a max_connections refusal spent the client's token");
    close(b);
    expect_refused(&r, "per_source_rate", 1);
    expect_refused(&r, "per_source_connections", 0);
}
END_TEST

/* A peer outside proxy_protocol_from is closed unread and counted as untrusted_proxy. */
START_TEST(untrusted_proxy_counted)
{
    struct rig r = {0};
    rig_start(&r, 1,
              "    accept_proxy_protocol: true\n"
              "    proxy_protocol_from: [127.0.0.1]\n"
              "    limits: {per_source_connections: 1}\n");
    static const char head[] = "PROXY TCP4 198.51.100.7 192.0.2.1 40003 443\r\n";
    ck_assert_int_eq(client("127.0.0.2", "127.0.0.1", r.port, head), -1);
    expect_refused(&r, "untrusted_proxy", 1);
    int fd = client("127.0.0.1", "127.0.0.1", r.port, head);
    ck_assert_msg(fd >= 0, "the client named by a trusted balancer was refused");
    close(fd);
    expect_refused(&r, "per_source_connections", 0);
}
END_TEST

/* workers: 2. The kernel spreads one client's connections over both workers; the count is one
 * for the process. Three connections of 127.0.0.2 are held until both workers have some, then
 * twenty more attempts are all refused: with a count per worker, the one holding fewer than
 * three would admit the attempts that land on it. */
static bool spread_over_both(struct rig *r)
{
    return sph_metric(r->admin, "splicer_worker_active_connections{worker=\"0\"}") > 0 &&
           sph_metric(r->admin, "splicer_worker_active_connections{worker=\"1\"}") > 0;
}

START_TEST(two_workers_one_count)
{
    struct rig r = {0};
    rig_start(&r, 2, "    limits: {per_source_connections: 3}\n");
    int held[3] = {-1, -1, -1};
    bool spread = false;
    for (int attempt = 0; attempt < 12 && !spread; attempt++) {
        close_all(held, 3);
        expect_active(&r, 0);
        for (int i = 0; i < 3; i++) {
            held[i] = client4("127.0.0.2", r.port);
            ck_assert_int_ge(held[i], 0);
        }
        expect_active(&r, 3);
        spread = spread_over_both(&r);
    }
    ck_assert_msg(spread, "three connections never landed on both workers in 12 tries");
    long long before = refused(&r, "per_source_connections");
    for (int i = 0; i < 20; i++)
        ck_assert_msg(client4("127.0.0.2", r.port) == -1, "attempt %d admitted past the limit",
                      i + 1);
    expect_refused(&r, "per_source_connections", before + 20);
    int other = client4("127.0.0.3", r.port);
    ck_assert_int_ge(other, 0);
    close(other);
    close_all(held, 3);
    expect_active(&r, 0);
    for (int i = 0; i < 3; i++) {
        held[i] = client4("127.0.0.2", r.port);
        ck_assert_msg(held[i] >= 0, "count not back to 0 after the three closed");
    }
    ck_assert_int_eq(client4("127.0.0.2", r.port), -1);
    close_all(held, 3);
}
END_TEST

/* Tries new connections from src until one is refused (the new limit is in force on the worker
 * it reached), closing the ones still admitted under the old limit and waiting until their
 * count is given back, so that `active` stays what the caller holds. */
static void until_refused(struct rig *r, const char *src, int active)
{
    for (int i = 0; i < 40; i++) {
        int fd = client4(src, r->port);
        if (fd < 0)
            return;
        close(fd);
        expect_active(r, active);
        sph_sleep_ms(50);
    }
    ck_abort_msg("the reloaded limit never refused %s", src);
}

/* A reload that lowers per_source_connections applies to new connections: the two already open
 * keep counting (and working), so a third is refused at the new limit of 1; when they close, one
 * is admitted again. Raising it admits more at once. A reload that changes the prefix starts a
 * new table: the open connections give their count back to the old one as they close. */
START_TEST(reload_changes_limit)
{
    struct rig r = {0};
    rig_start(&r, 1, "    limits: {per_source_connections: 3}\n");
    int fds[4];
    fds[0] = client4("127.0.0.2", r.port);
    fds[1] = client4("127.0.0.2", r.port);
    ck_assert(fds[0] >= 0 && fds[1] >= 0);
    rig_reload(&r, "    limits: {per_source_connections: 1}\n");
    until_refused(&r, "127.0.0.2", 2);
    ck_assert_int_eq(sph_ping(fds[0], IO_MS), 0);
    ck_assert_int_eq(sph_ping(fds[1], IO_MS), 0);
    ck_assert_int_eq(client4("127.0.0.2", r.port), -1);
    int other = client4("127.0.0.3", r.port);
    ck_assert_int_ge(other, 0);
    ck_assert_int_eq(client4("127.0.0.3", r.port), -1);
    close(other);
    close_all(fds, 2);
    expect_active(&r, 0);
    fds[0] = client4("127.0.0.2", r.port);
    ck_assert_int_ge(fds[0], 0);
    ck_assert_int_eq(client4("127.0.0.2", r.port), -1);

    rig_reload(&r, "    limits: {per_source_connections: 4}\n");
    int admitted = 0;
    for (int i = 0; i < 40 && admitted < 3; i++) {
        fds[1 + admitted] = client4("127.0.0.2", r.port);
        if (fds[1 + admitted] >= 0)
            admitted++;
        else
            sph_sleep_ms(50);
    }
    ck_assert_int_eq(admitted, 3);
    ck_assert_int_eq(client4("127.0.0.2", r.port), -1); /* 4 open: the kept table counted all */

    /* /24: a new table, in which 127.0.0.2's four open connections do not count */
    rig_reload(&r, "    limits: {per_source_connections: 1, source_prefix_v4: 24}\n");
    int fresh = -1;
    for (int i = 0; i < 40 && fresh < 0; i++) {
        fresh = client4("127.0.0.9", r.port);
        if (fresh < 0)
            sph_sleep_ms(50);
    }
    ck_assert_int_ge(fresh, 0);
    ck_assert_int_eq(client4("127.0.0.2", r.port), -1); /* the same /24 as 127.0.0.9 */
    close_all(fds, 4);
    expect_active(&r, 1);
    ck_assert_int_eq(sph_ping(fresh, IO_MS), 0);
    ck_assert_int_eq(client4("127.0.0.3", r.port), -1);
    close(fresh);
    expect_active(&r, 0);
    fresh = client4("127.0.0.3", r.port);
    ck_assert_int_ge(fresh, 0);
    close(fresh);
}
END_TEST

/* With accept_proxy_protocol the client is the PROXY header's source: IPv6 clients in one /64
 * are one client; another /64 is another. The refusal comes after the header, is logged in the
 * access log as source_limit, and no server is contacted. */
START_TEST(proxy_header_v6_per_64)
{
    struct rig r = {0};
    rig_start(&r, 1,
              "    accept_proxy_protocol: true\n"
              "    proxy_protocol_from: [127.0.0.1]\n"
              "    limits: {per_source_connections: 1}\n");
    static const char a[] = "PROXY TCP6 2001:db8:1:2::1 2001:db8::ffff 40000 443\r\n";
    static const char b[] = "PROXY TCP6 2001:db8:1:2:ffff:1:2:3 2001:db8::ffff 40001 443\r\n";
    static const char c[] = "PROXY TCP6 2001:db8:1:3::1 2001:db8::ffff 40002 443\r\n";
    static const char d[] = "PROXY TCP4 198.51.100.7 192.0.2.1 40003 443\r\n";
    int fa = client("127.0.0.1", "127.0.0.1", r.port, a);
    ck_assert_int_ge(fa, 0);
    ck_assert_int_eq(client("127.0.0.1", "127.0.0.1", r.port, b), -1);
    int fc = client("127.0.0.1", "127.0.0.1", r.port, c);
    ck_assert_int_ge(fc, 0);
    int fd = client("127.0.0.1", "127.0.0.1", r.port, d);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(client("127.0.0.1", "127.0.0.1", r.port, d), -1);
    ck_assert_int_eq(atomic_load(&r.echo->accepted), 3);
    expect_refused(&r, "per_source_connections", 2);
    ck_assert(sph_proc_wait_log(&r.p, "client 2001:db8:1:2::/64 is over per_source_connections", 1,
                                IO_MS));
    ck_assert(sph_proc_wait_log(&r.p, "client=[2001:db8:1:2:ffff:1:2:3]:40001", 1, IO_MS));
    ck_assert(sph_proc_wait_log(&r.p, "end=source_limit", 2, IO_MS));
    close(fa);
    expect_active(&r, 2);
    fa = client("127.0.0.1", "127.0.0.1", r.port, b);
    ck_assert_msg(fa >= 0, "the /64 not served again after its connection closed");
    close(fa);
    close(fc);
    close(fd);
}
END_TEST

/* tracked_sources: 1024 and a rate of 1/m, so that a client's entry stays taken for a minute
 * after its one connection: 1500 distinct clients (by PROXY header) overflow the table. Those
 * without room are served untracked (never refused), counted, and logged. */
START_TEST(full_table_fails_open)
{
    struct rig r = {0};
    rig_start(&r, 1,
              "    accept_proxy_protocol: true\n"
              "    proxy_protocol_from: [127.0.0.1]\n"
              "    limits: {per_source_rate: 1/m, tracked_sources: 1024}\n");
    for (int i = 0; i < 1500; i++) {
        char head[128];
        snprintf(head, sizeof(head), "PROXY TCP6 2001:db8:%x:%x::1 2001:db8::1 40000 443\r\n",
                 i / 256 + 1, i % 256);
        int fd = client("127.0.0.1", "127.0.0.1", r.port, head);
        ck_assert_msg(fd >= 0, "client %d refused", i);
        close(fd);
    }
    ck_assert_int_eq(refused(&r, "per_source_rate"), 0);
    long long untracked = sph_metric(r.admin, "splicer_limits_untracked_total{listener=\"web\"}");
    long long tracked = sph_metric(r.admin, "splicer_limits_tracked_sources{listener=\"web\"}");
    ck_assert_msg(untracked >= 1500 - 1024, "untracked %lld", untracked);
    ck_assert_int_eq(tracked + untracked, 1500);
    ck_assert_int_le(tracked, 1024);
    ck_assert(
        sph_proc_wait_log(&r.p, "the per-source table (1024 entries) has no room for", 1, IO_MS));
}
END_TEST

/* Without a limits block nobody is refused: twenty connections from one client, open at once. */
START_TEST(no_limits_no_refusal)
{
    struct rig r = {0};
    rig_start(&r, 2, "");
    int fds[20];
    for (int i = 0; i < 20; i++) {
        fds[i] = client4("127.0.0.2", r.port);
        ck_assert_msg(fds[i] >= 0, "connection %d refused without limits", i + 1);
    }
    expect_refused(&r, "per_source_connections", 0);
    expect_refused(&r, "per_source_rate", 0);
    char body[16384];
    ck_assert_int_eq(sph_admin_req(r.admin, "GET", "/status", body, sizeof(body)), 200);
    ck_assert_ptr_nonnull(strstr(body, "\"limits\":null"));
    close_all(fds, 20);
}
END_TEST

/* `splicer -t` places a bad rate at its line and column. */
START_TEST(check_reports_position)
{
    char conf[SPH_PATH_MAX], want[256];
    ck_assert_int_eq(sph_config_write(conf, "listeners:\n"
                                            "  web:\n"
                                            "    listen: 127.0.0.1:8080\n"
                                            "    upstream: pool\n"
                                            "    limits:\n"
                                            "      per_source_rate: 50/h\n"
                                            "upstreams:\n"
                                            "  pool: {servers: [{address: 127.0.0.1:9001}]}\n"),
                     0);
    struct sph_proc p;
    ck_assert_int_eq(sph_run(&p, (const char *const[]){"-t", "-c", conf, NULL}, IO_MS), 1);
    snprintf(want, sizeof(want),
             "%s:6:24: invalid rate '50/h' for 'per_source_rate' in limits of listener 'web' "
             "(expected connections per second or per minute, as in 50/s or 600/m)",
             conf);
    char *err = sph_proc_stderr(&p);
    ck_assert_msg(strstr(err, want) != NULL, "stderr: %s", err);
    free(err);
}
END_TEST

/* ---- group ipv6: real IPv6 clients, in a network namespace of our own ------------------- */

/* What SIOCSIFADDR takes for AF_INET6 (struct in6_ifreq of linux/ipv6.h, whose header does not
 * mix with netinet/in.h). */
struct in6_ifreq_ {
    struct in6_addr addr;
    uint32_t prefixlen;
    int ifindex;
};

/* In a new network namespace: lo up, with fd00:1::1, fd00:1::2, fd00:1::3 (one /64) and
 * fd00:2::1 (another). 0 or -errno; why gets the failing step. */
static int private_ipv6(char *why, size_t cap)
{
    static const char *const addrs[] = {"fd00:1::1", "fd00:1::2", "fd00:1::3", "fd00:2::1"};
    if (unshare(CLONE_NEWNET) != 0) {
        snprintf(why, cap,
                 "unshare(CLONE_NEWNET): %s (needs root with CAP_SYS_ADMIN; a container?)",
                 strerror(errno));
        return -errno;
    }
    int s4 = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int s6 = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int rc = 0;
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    if (s4 < 0 || s6 < 0 || ioctl(s4, SIOCGIFFLAGS, &ifr) != 0) {
        rc = -errno;
        snprintf(why, cap, "no IPv6 socket or no lo: %s", strerror(errno));
    } else {
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(s4, SIOCSIFFLAGS, &ifr) != 0) {
            rc = -errno;
            snprintf(why, cap, "lo up: %s", strerror(errno));
        }
    }
    for (size_t i = 0; rc == 0 && i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        struct in6_ifreq_ req = {.prefixlen = 64, .ifindex = (int)if_nametoindex("lo")};
        inet_pton(AF_INET6, addrs[i], &req.addr);
        if (ioctl(s6, SIOCSIFADDR, &req) != 0) {
            rc = -errno;
            snprintf(why, cap, "adding %s/64 to lo: %s", addrs[i], strerror(errno));
        }
    }
    if (s4 >= 0)
        close(s4);
    if (s6 >= 0)
        close(s6);
    return rc;
}

/* Socket peers fd00:1::2 and fd00:1::3 are one client (/64), fd00:2::1 another. */
START_TEST(ipv6_peers_per_64)
{
    char why[160];
    ck_assert_msg(private_ipv6(why, sizeof(why)) == 0, "%s", why);
    struct rig r = {.listen_ip = "fd00:1::1"};
    rig_start(&r, 1, "    limits: {per_source_connections: 1}\n");
    int a = client("fd00:1::2", "fd00:1::1", r.port, NULL);
    ck_assert_int_ge(a, 0);
    ck_assert_int_eq(client("fd00:1::3", "fd00:1::1", r.port, NULL), -1);
    int b = client("fd00:2::1", "fd00:1::1", r.port, NULL);
    ck_assert_int_ge(b, 0);
    expect_refused(&r, "per_source_connections", 1);
    ck_assert(
        sph_proc_wait_log(&r.p, "client fd00:1::/64 is over per_source_connections", 1, IO_MS));
    close(a);
    close(b);
}
END_TEST

/* Whether this host lets us make the namespace (in a child, so that we stay where we are). */
static bool can_private_ipv6(char *why, size_t cap)
{
    int pfd[2];
    if (pipe(pfd) != 0)
        return false;
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        char msg[160] = "";
        int rc = private_ipv6(msg, sizeof(msg));
        if (write(pfd[1], msg, strlen(msg)) < 0)
            _exit(2);
        _exit(rc == 0 ? 0 : 1);
    }
    close(pfd[1]);
    ssize_t n = pid > 0 ? read(pfd[0], why, cap - 1) : -1;
    why[n > 0 ? n : 0] = '\0';
    close(pfd[0]);
    int st = 0;
    if (pid > 0)
        waitpid(pid, &st, 0);
    return pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static Suite *srclimit_suite(bool ipv6)
{
    Suite *s = suite_create("srclimit");
    TCase *tc = tcase_create(ipv6 ? "ipv6" : "srclimit");
    tcase_set_timeout(tc, 90);
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    if (ipv6) {
        tcase_add_test(tc, ipv6_peers_per_64);
    } else {
        tcase_add_test(tc, connections_per_client);
        tcase_add_test(tc, rate_recovers);
        tcase_add_test(tc, refusal_takes_no_token);
        tcase_add_test(tc, other_refusals_take_nothing);
        tcase_add_test(tc, untrusted_proxy_counted);
        tcase_add_test(tc, two_workers_one_count);
        tcase_add_test(tc, reload_changes_limit);
        tcase_add_test(tc, proxy_header_v6_per_64);
        tcase_add_test(tc, full_table_fails_open);
        tcase_add_test(tc, no_limits_no_refusal);
        tcase_add_test(tc, check_reports_position);
    }
    suite_add_tcase(s, tc);
    return s;
}

/* `test_integration_srclimit` runs the main group; with the argument `ipv6`, the IPv6 group,
 * which exits 77 (skipped) with the reason when a network namespace cannot be made here. */
int main(int argc, char **argv)
{
    bool ipv6 = argc > 1 && strcmp(argv[1], "ipv6") == 0;
    if (ipv6) {
        char why[160];
        if (!can_private_ipv6(why, sizeof(why))) {
            printf("skipped: no private IPv6 network namespace here: %s\n", why);
            return 77;
        }
    }
    SRunner *sr = srunner_create(srclimit_suite(ipv6));
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
