/* test_proxy_out.c: PROXY headers sent to servers, on the real binary: the exact bytes for an
 * IPv4 client (an IPv6 one in group "ipv6"), a splicer-to-splicer chain that keeps the original
 * client, health checks that send a LOCAL header, and a real haproxy behind splicer that accepts
 * our headers (group "haproxy"). Groups skip (exit 77) when the host lacks what they need. */
#include "common.h"
#include "deploy.h"
#include "harness.h"
#include "proxy_proto.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Accepts one connection on a listening socket of the test (the kernel completes splicer's
 * connect from the backlog, so no thread is needed). */
static int accept_one(int lfd)
{
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    ck_assert_msg(poll(&p, 1, SPH_IO_MS) == 1, "no connection reached the backend");
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    return fd;
}

/* Reads exactly want_len bytes from fd and compares them with want; prints both on mismatch. */
static void expect_bytes(int fd, const void *want, size_t want_len, const char *what)
{
    unsigned char got[256];
    ck_assert_uint_le(want_len, sizeof(got));
    ssize_t n = sph_read_exact(fd, got, want_len, SPH_IO_MS);
    ck_assert_msg(n == (ssize_t)want_len, "%s: read %zd of %zu bytes", what, n, want_len);
    if (memcmp(got, want, want_len) != 0) {
        char hg[600] = "", hw[600] = "";
        for (size_t i = 0; i < want_len && i < 100; i++) {
            snprintf(hg + 3 * i, 4, "%02x ", got[i]);
            snprintf(hw + 3 * i, 4, "%02x ", ((const unsigned char *)want)[i]);
        }
        ck_abort_msg("%s differs:\n got  %s\n want %s", what, hg, hw);
    }
}

/* Both directions of payload after the header: client -> server, then server -> client. */
static void expect_relay(int cli, int srv)
{
    ck_assert_int_eq(sph_write_all(cli, "hello\n", 6, SPH_IO_MS), 0);
    expect_bytes(srv, "hello\n", 6, "payload after the header");
    ck_assert_int_eq(sph_write_all(srv, "world\n", 6, SPH_IO_MS), 0);
    expect_bytes(cli, "world\n", 6, "the server's reply");
}

/* The server receives exactly the header for this client (src: its address and local port as
 * splicer saw them, dst: the listener), then the payload. */
static void sent_case(int version, int family)
{
    int port = sph_free_port(family);
    ck_assert_msg(port > 0, "no free port: %s", strerror(-port));
    int bport = sph_free_port(AF_INET);
    int lfd = sph_listen(AF_INET, bport, 16);
    ck_assert_int_ge(lfd, 0);
    char laddr[64];
    struct sph_px x;
    sph_px_start(&x, port,
                 "listeners:\n"
                 "  main:\n"
                 "    listen: \"%s\"\n"
                 "    upstream: pool\n"
                 "upstreams:\n"
                 "  pool:\n"
                 "    proxy_protocol: v%d\n"
                 "    servers:\n"
                 "      - address: 127.0.0.1:%d\n",
                 sph_addr(laddr, family, port), version, bport);

    int cli = sph_connect(family, port, SPH_IO_MS);
    ck_assert_int_ge(cli, 0);
    char cname[64];
    unsigned cport;
    sph_local_name(cli, cname, sizeof(cname), &cport);
    int srv = accept_one(lfd);
    const char *host = family == AF_INET ? "127.0.0.1" : "::1";
    unsigned char want[128];
    size_t wlen = sph_pp_build(want, version, host, cport, host, (unsigned)port);
    expect_bytes(srv, want, wlen, "PROXY header");
    expect_relay(cli, srv);
    close(cli);
    ck_assert_int_eq(sph_wait_closed(srv, SPH_IO_MS), 0);
    close(srv);
    close(lfd);
    sph_expect_access(&x, cname, "client_fin");
}

/* _i + 1 is the header version, from a 127.0.0.1 listener (here) or a [::1] one (group ipv6). */
START_TEST(pp_sent)
{
    sent_case(_i + 1, AF_INET);
}
END_TEST

START_TEST(pp_sent_ipv6)
{
    sent_case(_i + 1, AF_INET6);
}
END_TEST

#define CHAIN_CONF                                                                                 \
    "listeners:\n"                                                                                 \
    "  main:\n"                                                                                    \
    "    listen: 127.0.0.1:%d\n"                                                                   \
    "    upstream: next\n"                                                                         \
    "    accept_proxy_protocol: true\n"                                                            \
    "    proxy_protocol_from: [127.0.0.1]\n"                                                       \
    "upstreams:\n"                                                                                 \
    "  next:\n"                                                                                    \
    "    proxy_protocol: %s\n"                                                                     \
    "    servers:\n"                                                                               \
    "      - address: 127.0.0.1:%d\n"

/* client --(v1 header from 203.0.113.7)--> splicer A (accept, sends v2) --> splicer B (accept,
 * sends v1) --> server: the original client and destination arrive unchanged at the end, and
 * both access logs name the original client. */
START_TEST(pp_chain)
{
    int bport = sph_free_port(AF_INET);
    int lfd = sph_listen(AF_INET, bport, 16);
    ck_assert_int_ge(lfd, 0);
    struct sph_px a, b;
    int pa = sph_free_port(AF_INET), pb = sph_free_port(AF_INET);
    sph_px_start(&b, pb, CHAIN_CONF, pb, "v1", bport);
    sph_px_start(&a, pa, CHAIN_CONF, pa, "v2", pb);

    static const char line[] = "PROXY TCP4 203.0.113.7 198.51.100.1 4711 443\r\n";
    int cli = sph_connect(AF_INET, pa, SPH_IO_MS);
    ck_assert_int_ge(cli, 0);
    ck_assert_int_eq(sph_write_all(cli, line, sizeof(line) - 1, SPH_IO_MS), 0);
    int srv = accept_one(lfd);
    expect_bytes(srv, line, sizeof(line) - 1, "the header after two splicers");
    expect_relay(cli, srv);
    close(cli);
    ck_assert_int_eq(sph_wait_closed(srv, SPH_IO_MS), 0);
    close(srv);
    close(lfd);
    sph_expect_access(&a, "203.0.113.7:4711", "client_fin");
    sph_expect_access(&b, "203.0.113.7:4711", "client_fin");
}
END_TEST

/* ---- health checks to servers that require a PROXY header ---- */

/* A server that insists on a PROXY header: a LOCAL one (v2 LOCAL, v1 UNKNOWN) followed by
 * "PING\r\n" gets "PONG\n"; a PROXY one with addresses gets an echo; anything else is closed
 * without a word. Connections are served one at a time, each within a deadline. */
struct ppsrv {
    int lfd, port;
    int version; /* the header version it wants */
    pthread_t thr;
    atomic_bool stop;
    atomic_int local_ok, proxied, bad;
};

static void ppsrv_conn(struct ppsrv *s, int fd)
{
    char buf[512];
    size_t have = 0;
    int64_t end = sph_now_ms() + 2000;
    struct sp_pp_result r;
    int hl = 0;
    while (hl == 0 && have < sizeof(buf) && sph_now_ms() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) != 1)
            continue;
        ssize_t n = recv(fd, buf + have, sizeof(buf) - have, 0);
        if (n <= 0)
            break;
        have += (size_t)n;
        hl = sp_pp_decode(buf, have, &r);
    }
    if (hl <= 0 || r.version != s->version) {
        atomic_fetch_add(&s->bad, 1);
        return;
    }
    if (r.has_addr) {
        atomic_fetch_add(&s->proxied, 1);
        size_t off = (size_t)hl;
        for (;;) {
            if (off < have && sph_write_all(fd, buf + off, have - off, 1000) != 0)
                return;
            ssize_t n = sph_read_exact(fd, buf, 1, 2000);
            if (n != 1)
                return;
            off = 0;
            have = 1;
        }
    }
    /* v2 must say LOCAL; v1 UNKNOWN has neither flag */
    if (s->version == 2 && !r.local) {
        atomic_fetch_add(&s->bad, 1);
        return;
    }
    while (have - (size_t)hl < 6 && sph_now_ms() < end) {
        ssize_t n = sph_read_exact(fd, buf + have, 1, 100);
        if (n == 1)
            have++;
        else if (n == 0)
            break;
    }
    if (have - (size_t)hl >= 6 && memcmp(buf + hl, "PING\r\n", 6) == 0) {
        atomic_fetch_add(&s->local_ok, 1);
        sph_write_all(fd, "PONG\n", 5, 1000);
    } else {
        atomic_fetch_add(&s->bad, 1);
    }
}

static void *ppsrv_main(void *arg)
{
    struct ppsrv *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = s->lfd, .events = POLLIN};
        if (poll(&p, 1, 50) != 1)
            continue;
        int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd == -1)
            continue;
        int fl = fcntl(fd, F_GETFL);
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        ppsrv_conn(s, fd);
        close(fd);
    }
    return NULL;
}

static struct ppsrv *ppsrv_running; /* stopped by the test before its asserts end */

static void ppsrv_stop(void)
{
    if (ppsrv_running == NULL)
        return;
    atomic_store(&ppsrv_running->stop, true);
    pthread_join(ppsrv_running->thr, NULL);
    close(ppsrv_running->lfd);
    free(ppsrv_running);
    ppsrv_running = NULL;
}

static void health_teardown(void)
{
    ppsrv_stop();
    sph_deploy_teardown();
}

static const struct {
    const char *proxy_protocol;
    int version;
    bool stays_up;
} health_cases[] = {
    {"v2", 2, true},
    {"v1", 1, true},
    {"off", 2, false}, /* the control: without a header the same server fails every check */
};

START_TEST(health_with_proxy_header)
{
    struct ppsrv *s = calloc(1, sizeof(*s));
    ck_assert_ptr_nonnull(s);
    s->version = health_cases[_i].version;
    s->port = sph_free_port(AF_INET);
    s->lfd = sph_listen(AF_INET, s->port, 64);
    ck_assert_int_ge(s->lfd, 0);
    ck_assert_int_eq(pthread_create(&s->thr, NULL, ppsrv_main, s), 0);
    ppsrv_running = s;

    struct sph_px x;
    int port = sph_free_port(AF_INET);
    sph_px_start(&x, port,
                 "listeners:\n"
                 "  main:\n"
                 "    listen: 127.0.0.1:%d\n"
                 "    upstream: pool\n"
                 "upstreams:\n"
                 "  pool:\n"
                 "    proxy_protocol: %s\n"
                 "    retries: 0\n"
                 "    max_fails: 0\n"
                 "    health_check:\n"
                 "      interval: 200ms\n"
                 "      timeout: 500ms\n"
                 "      rise: 1\n"
                 "      fall: 1\n"
                 "      send: \"PING\\r\\n\"\n"
                 "      expect: \"PONG\"\n"
                 "    servers:\n"
                 "      - address: 127.0.0.1:%d\n",
                 port, health_cases[_i].proxy_protocol, s->port);
    char down[128], up_series[128];
    snprintf(down, sizeof(down), "server 127.0.0.1:%d up -> down", s->port);
    snprintf(up_series, sizeof(up_series),
             "splicer_server_up{upstream=\"pool\",server=\"127.0.0.1:%d\"}", s->port);

    if (!health_cases[_i].stays_up) {
        ck_assert_msg(sph_proc_wait_log(&x.proc, down, 1, 3000),
                      "a server refusing header-less checks never went down");
        ck_assert_int_ge(atomic_load(&s->bad), 1);
        sph_expect_metric(x.admin, up_series, 0);
        return;
    }
    ck_assert_msg(sph_wait_atomic_ge(&s->local_ok, 4, 5000), "only %d good checks (%d bad) in 5 s",
                  atomic_load(&s->local_ok), atomic_load(&s->bad));
    ck_assert_int_eq(atomic_load(&s->bad), 0);
    ck_assert_int_eq(sph_proc_log_count(&x.proc, down), 0);
    sph_expect_metric(x.admin, up_series, 1);

    /* Clients still get a header with their address, and the relay works. */
    int fd = sph_connect(AF_INET, port, SPH_IO_MS);
    ck_assert_int_ge(fd, 0);
    sph_expect_echo(fd, "client behind checks\n");
    close(fd);
    ck_assert_int_eq(atomic_load(&s->proxied), 1);
    ck_assert_int_eq(atomic_load(&s->bad), 0);
}
END_TEST

/* ---- group haproxy: a real haproxy behind ---- */

/* splicer (proxy_protocol: v1 / v2) -> haproxy (accept-proxy, then send-proxy to a capture):
 * haproxy accepts our header (it would close on a bad one) and what it passes on names our
 * client and our listener. */
START_TEST(haproxy_behind)
{
    int cap_port = sph_free_port(AF_INET);
    int lfd = sph_listen(AF_INET, cap_port, 16);
    ck_assert_int_ge(lfd, 0);
    int sp = sph_free_port(AF_INET), hp = sph_free_port(AF_INET);
    char sections[512];
    snprintf(sections, sizeof(sections),
             "frontend fe\n  bind 127.0.0.1:%d accept-proxy\n  default_backend be\n"
             "backend be\n  server s1 127.0.0.1:%d send-proxy\n",
             hp, cap_port);
    sph_haproxy_start(hp, sections);
    struct sph_px x;
    sph_px_start(&x, sp,
                 "listeners:\n"
                 "  main:\n"
                 "    listen: 127.0.0.1:%d\n"
                 "    upstream: hap\n"
                 "upstreams:\n"
                 "  hap:\n"
                 "    proxy_protocol: v%d\n"
                 "    servers:\n"
                 "      - address: 127.0.0.1:%d\n",
                 sp, _i + 1, hp);

    int cli = sph_connect(AF_INET, sp, SPH_IO_MS);
    ck_assert_int_ge(cli, 0);
    char cname[64];
    unsigned cport;
    sph_local_name(cli, cname, sizeof(cname), &cport);
    int srv = accept_one(lfd);
    char want[128];
    int wlen = snprintf(want, sizeof(want), "PROXY TCP4 127.0.0.1 127.0.0.1 %u %d\r\n", cport, sp);
    expect_bytes(srv, want, (size_t)wlen, "haproxy's view of our header");
    expect_relay(cli, srv);
    close(cli);
    close(srv);
    close(lfd);
}
END_TEST

static TCase *tcase(const char *name, void (*teardown)(void))
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    return tc;
}

static void add_main(Suite *s)
{
    TCase *tc = tcase("sent", sph_deploy_teardown);
    tcase_add_loop_test(tc, pp_sent, 0, 2);
    tcase_add_test(tc, pp_chain);
    suite_add_tcase(s, tc);

    tc = tcase("health", health_teardown);
    tcase_add_loop_test(tc, health_with_proxy_header, 0, SP_ARRAY_LEN(health_cases));
    suite_add_tcase(s, tc);
}

static void add_ipv6(Suite *s)
{
    TCase *tc = tcase("ipv6", sph_deploy_teardown);
    tcase_add_loop_test(tc, pp_sent_ipv6, 0, 2);
    suite_add_tcase(s, tc);
}

static void add_haproxy(Suite *s)
{
    TCase *tc = tcase("haproxy", sph_deploy_teardown);
    tcase_add_loop_test(tc, haproxy_behind, 0, 2);
    suite_add_tcase(s, tc);
}

static const struct sph_group groups[] = {
    {.name = NULL, .add = add_main},
    {.name = "ipv6", .needs = SPH_NEED_IPV6, .add = add_ipv6},
    {.name = "haproxy", .tools = {"haproxy"}, .add = add_haproxy},
};

int main(int argc, char **argv)
{
    return sph_main(argc, argv, "integration.proxy_out", groups, SP_ARRAY_LEN(groups));
}
