/* test_proxy_in.c: PROXY headers accepted from a load balancer in front, on the real binary:
 * v1 and v2 (with a TLV to skip, IPv4 and IPv6 addresses), split across writes, malformed, too
 * slow; and a real haproxy in front (group "haproxy", skipped without haproxy). The client
 * address comes from the access log, counters from the admin endpoint's /metrics. */
#include "common.h"
#include "deploy.h"
#include "harness.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PP_LISTENER                                                                                \
    "listeners:\n"                                                                                 \
    "  main:\n"                                                                                    \
    "    listen: 127.0.0.1:%d\n"                                                                   \
    "    upstream: pool\n"                                                                         \
    "    accept_proxy_protocol: true\n"                                                            \
    "    proxy_protocol_from: [127.0.0.1]\n"                                                       \
    "    proxy_protocol_timeout: 300ms\n"                                                          \
    "upstreams:\n"                                                                                 \
    "  pool:\n"                                                                                    \
    "    servers:\n"                                                                               \
    "      - address: 127.0.0.1:%d\n"

static const struct {
    int version;
    const char *src, *dst;
    const char *authority; /* v2: an AUTHORITY TLV, which must be skipped */
    const char *logged;    /* the client in the access log */
} accept_cases[] = {
    {1, "203.0.113.7", "198.51.100.1", NULL, "203.0.113.7:4711"},
    {2, "203.0.113.7", "198.51.100.1", NULL, "203.0.113.7:4711"},
    {2, "203.0.113.7", "198.51.100.1", "www.example.com", "203.0.113.7:4711"},
    {1, "2001:db8::7", "2001:db8::1", NULL, "[2001:db8::7]:4711"},
    {2, "2001:db8::7", "2001:db8::1", NULL, "[2001:db8::7]:4711"},
};

/* The header and the first payload bytes in one write (splicer must not swallow the payload),
 * then a 256 KiB stream checked byte for byte; the access log names the header's client. The
 * second run of each case splits the header across two writes 50 ms apart. */
static void accept_case(int i, bool split)
{
    struct sph_backend *echo = sph_echo_backend();
    struct sph_px x;
    int port = sph_free_port(AF_INET);
    sph_px_start(&x, port, PP_LISTENER, port, echo->port);

    unsigned char hdr[256];
    size_t n = accept_cases[i].authority != NULL
                   ? sph_pp_v2_build(hdr, accept_cases[i].src, 4711, accept_cases[i].dst, 443,
                                     accept_cases[i].authority)
                   : sph_pp_build(hdr, accept_cases[i].version, accept_cases[i].src, 4711,
                                  accept_cases[i].dst, 443);
    memcpy(hdr + n, "hello\n", 6);
    int fd = sph_connect(AF_INET, port, SPH_IO_MS);
    ck_assert_int_ge(fd, 0);
    if (split) {
        ck_assert_int_eq(sph_write_all(fd, hdr, 10, SPH_IO_MS), 0);
        sph_sleep_ms(50);
        ck_assert_int_eq(sph_write_all(fd, hdr + 10, n - 10 + 6, SPH_IO_MS), 0);
    } else {
        ck_assert_int_eq(sph_write_all(fd, hdr, n + 6, SPH_IO_MS), 0);
    }
    char back[7] = "";
    ck_assert_int_eq(sph_read_exact(fd, back, 6, SPH_IO_MS), 6);
    ck_assert_str_eq(back, "hello\n");

    struct sph_xfer xf;
    sph_xfer_init(&xf, 256 * 1024, 7, 10000);
    xf.shut_wr = true;
    ck_assert_int_eq(sph_echo_xfer(fd, &xf), 0);
    ck_assert_int_eq(xf.mismatch_at, -1);
    ck_assert(xf.got_eof);
    close(fd);
    /* The echo saw only the payload, never a byte of the header. */
    ck_assert_uint_eq(atomic_load(&echo->bytes_in), 6 + 256 * 1024);
    sph_expect_access(&x, accept_cases[i].logged, "client_fin");
    sph_expect_metric(x.admin, SPH_MALFORMED("main"), 0);
}

START_TEST(pp_accepted)
{
    accept_case(_i, false);
}
END_TEST

START_TEST(pp_accepted_split)
{
    accept_case(_i, true);
}
END_TEST

/* ---- malformed and missing headers ---- */

static const struct {
    const char *what;
    const char *bytes;
    size_t len; /* 0: strlen(bytes) */
} bad_headers[] = {
    {"plain HTTP", "GET / HTTP/1.0\r\n\r\n", 0},
    {"v1 without ports", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\nping\n", 0},
    {"v1 with a bad address", "PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n", 0},
    {"v2 with version 3", "\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c", 16},
    {"v1 line without CRLF",
     "PROXY TCP6 2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff 2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff "
     "65535 65535 and then more",
     0},
};

/* Closed within SPH_PROMPT_MS, nothing reaches the server, counted once, logged as bad_header. */
START_TEST(pp_malformed)
{
    struct sph_backend *echo = sph_echo_backend();
    struct sph_px x;
    int port = sph_free_port(AF_INET);
    sph_px_start(&x, port, PP_LISTENER, port, echo->port);
    size_t len = bad_headers[_i].len != 0 ? bad_headers[_i].len : strlen(bad_headers[_i].bytes);
    sph_expect_refused(AF_INET, port, bad_headers[_i].bytes, len);
    sph_expect_metric(x.admin, SPH_MALFORMED("main"), 1);
    sph_expect_access(&x, "127.0.0.1:", "bad_header");
    sph_sleep_ms(100);
    ck_assert_int_eq(atomic_load(&echo->accepted), 0);
    ck_assert_uint_eq(atomic_load(&echo->bytes_in), 0);
}
END_TEST

/* No header (silence, or half a header) within proxy_protocol_timeout: closed after ~300 ms,
 * logged as inspect_timeout, and the server never contacted. */
START_TEST(pp_timeout)
{
    struct sph_backend *echo = sph_echo_backend();
    struct sph_px x;
    int port = sph_free_port(AF_INET);
    sph_px_start(&x, port, PP_LISTENER, port, echo->port);
    for (int half = 0; half < 2; half++) {
        int fd = sph_connect(AF_INET, port, SPH_IO_MS);
        ck_assert_int_ge(fd, 0);
        int64_t t0 = sph_now_ms();
        if (half)
            ck_assert_int_eq(sph_write_all(fd, "PROXY TCP4 203.0.", 17, SPH_IO_MS), 0);
        int rc = sph_wait_closed(fd, 5000);
        int64_t took = sph_now_ms() - t0;
        close(fd);
        ck_assert_msg(rc == 0 || rc == -ECONNRESET, "%s: not closed: %s",
                      half ? "half a header" : "silence", strerror(-rc));
        ck_assert_msg(took >= SPH_INSPECT_MS - 50 && took < SPH_INSPECT_MS + SPH_PROMPT_MS,
                      "%s: closed after %lld ms, want ~%d", half ? "half a header" : "silence",
                      (long long)took, SPH_INSPECT_MS);
    }
    sph_expect_access(&x, "127.0.0.1:", "inspect_timeout");
    ck_assert_int_eq(atomic_load(&echo->accepted), 0);
    sph_expect_metric(x.admin, SPH_MALFORMED("main"), 0);
}
END_TEST

/* ---- group haproxy: a real haproxy in front ---- */

/* haproxy (send-proxy / send-proxy-v2) -> splicer (accept_proxy_protocol) -> echo: data flows
 * and splicer's access log names the real client, not haproxy's outgoing connection. */
START_TEST(haproxy_in_front)
{
    struct sph_backend *echo = sph_echo_backend();
    struct sph_px x;
    int sp = sph_free_port(AF_INET), hp = sph_free_port(AF_INET);
    sph_px_start(&x, sp, PP_LISTENER, sp, echo->port);
    char sections[512];
    snprintf(sections, sizeof(sections),
             "frontend fe\n  bind 127.0.0.1:%d\n  default_backend be\n"
             "backend be\n  server s1 127.0.0.1:%d %s\n",
             hp, sp, _i == 0 ? "send-proxy" : "send-proxy-v2");
    sph_haproxy_start(hp, sections);

    int fd = sph_connect(AF_INET, hp, SPH_IO_MS);
    ck_assert_int_ge(fd, 0);
    char cname[64];
    unsigned cport;
    sph_local_name(fd, cname, sizeof(cname), &cport);
    sph_expect_echo(fd, "through haproxy and splicer\n");
    close(fd);
    sph_expect_access(&x, cname, NULL);
    sph_expect_metric(x.admin, SPH_MALFORMED("main"), 0);
}
END_TEST

/* A client socket bound to loopback address `src` (127.0.0.0/8 is all loopback) before it
 * connects to 127.0.0.1:port; returns it non-blocking, like sph_connect. */
static int connect_from(const char *src, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    ck_assert_int_eq(inet_pton(AF_INET, src, &a.sin_addr), 1);
    ck_assert_msg(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind %s: %s", src,
                  strerror(errno));
    a.sin_port = htons((uint16_t)port);
    ck_assert_int_eq(inet_pton(AF_INET, "127.0.0.1", &a.sin_addr), 1);
    ck_assert_msg(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "connect: %s",
                  strerror(errno));
    ck_assert_int_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    return fd;
}

/* True when one line of stderr contains `a`. */
static bool log_has(const struct sph_px *x, const char *a)
{
    char *err = sph_proc_stderr(&x->proc);
    bool found = strstr(err, a) != NULL;
    free(err);
    return found;
}

/* Only the peers in proxy_protocol_from may send a PROXY header (issue 9.5). A client at
 * 127.0.0.1 that claims to be 10.9.9.9 (which allow lets in) is closed before anything is read:
 * no server is contacted, it is counted and logged, and it is neither denied nor malformed. The
 * load balancer at 127.0.0.2 is served with the client address of its header. (Fails before
 * proxy_protocol_from: the key is unknown; without it, the forged header was admitted, logged as
 * 10.9.9.9 and relayed.) */
START_TEST(pp_untrusted_peer)
{
    struct sph_backend *echo = sph_echo_backend();
    struct sph_px x;
    int port = sph_free_port(AF_INET);
    sph_px_start(&x, port,
                 "listeners:\n"
                 "  main:\n"
                 "    listen: 127.0.0.1:%d\n"
                 "    upstream: pool\n"
                 "    accept_proxy_protocol: true\n"
                 "    allow: [10.0.0.0/8]\n"
                 "    proxy_protocol_from: [127.0.0.2/32]\n"
                 "upstreams:\n"
                 "  pool:\n"
                 "    servers:\n"
                 "      - address: 127.0.0.1:%d\n",
                 port, echo->port);
    static const char forged[] = "PROXY TCP4 10.9.9.9 198.51.100.1 4711 443\r\nhello\n";
    sph_expect_refused(AF_INET, port, forged, sizeof(forged) - 1);
    sph_expect_metric(x.admin, SPH_UNTRUSTED("main"), 1);
    ck_assert(sph_proc_wait_log(&x.proc, "from 127.0.0.1:", 1, SPH_IO_MS));
    ck_assert(log_has(&x, "not in proxy_protocol_from"));
    sph_sleep_ms(100);
    ck_assert_int_eq(atomic_load(&echo->accepted), 0);
    ck_assert(!log_has(&x, "\"client\":\"10.9.9.9"));

    int fd = connect_from("127.0.0.2", port);
    ck_assert_int_eq(sph_write_all(fd, forged, sizeof(forged) - 1, SPH_IO_MS), 0);
    char back[7] = "";
    ck_assert_int_eq(sph_read_exact(fd, back, 6, SPH_IO_MS), 6);
    ck_assert_str_eq(back, "hello\n");
    close(fd);
    sph_expect_access(&x, "10.9.9.9:4711", "client_fin");
    ck_assert_int_eq(atomic_load(&echo->accepted), 1);
    sph_expect_metric(x.admin, SPH_UNTRUSTED("main"), 1);
    sph_expect_metric(x.admin, SPH_DENIED("main"), 0);
    sph_expect_metric(x.admin, SPH_MALFORMED("main"), 0);
    sph_expect_metric(x.admin, "splicer_listener_rejected_total{listener=\"main\"}", 0);
}
END_TEST

#define TRUST_CONF                                                                                 \
    "workers: 2\n"                                                                                 \
    "admin:\n"                                                                                     \
    "  listen: 127.0.0.1:%d\n"                                                                     \
    "listeners:\n"                                                                                 \
    "  main:\n"                                                                                    \
    "    listen: 127.0.0.1:%d\n"                                                                   \
    "    upstream: pool\n"                                                                         \
    "    accept_proxy_protocol: true\n"                                                            \
    "    proxy_protocol_from: [%s]\n"                                                              \
    "upstreams:\n"                                                                                 \
    "  pool:\n"                                                                                    \
    "    servers:\n"                                                                               \
    "      - address: 127.0.0.1:%d\n"

/* A SIGHUP that changes proxy_protocol_from applies to the next connections, on every worker of
 * the listener it keeps: 127.0.0.1, refused before, is served after it is added. */
START_TEST(pp_trust_reload)
{
    struct sph_backend *echo = sph_echo_backend();
    int port = sph_free_port(AF_INET), admin = sph_free_port(AF_INET);
    char conf[SPH_PATH_MAX];
    ck_assert_int_eq(sph_config_write(conf, TRUST_CONF, admin, port, "127.0.0.2", echo->port), 0);
    struct sph_proc p;
    ck_assert_int_eq(sph_splicer_start(&p, conf, port, 10000), 0);
    static const char hdr[] = "PROXY TCP4 203.0.113.7 198.51.100.1 4711 443\r\n";
    for (int i = 0; i < 4; i++)
        sph_expect_refused(AF_INET, port, hdr, sizeof(hdr) - 1);
    sph_expect_metric(admin, SPH_UNTRUSTED("main"), 4);

    ck_assert_int_eq(
        sph_config_rewrite(conf, TRUST_CONF, admin, port, "127.0.0.2, 127.0.0.1/32", echo->port),
        0);
    ck_assert_int_eq(sph_proc_signal_wait_log(&p, SIGHUP, "reloaded ", SPH_IO_MS), 0);
    for (int i = 0; i < 4; i++) {
        int fd = sph_connect(AF_INET, port, SPH_IO_MS);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(sph_write_all(fd, hdr, sizeof(hdr) - 1, SPH_IO_MS), 0);
        sph_expect_echo(fd, "trusted now\n");
        close(fd);
    }
    sph_expect_metric(admin, SPH_UNTRUSTED("main"), 4);
    ck_assert_int_eq(atomic_load(&echo->accepted), 4);
}
END_TEST

static void add_main(Suite *s)
{
    TCase *tc = tcase_create("accepted");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, sph_deploy_teardown);
    tcase_add_loop_test(tc, pp_accepted, 0, SP_ARRAY_LEN(accept_cases));
    tcase_add_loop_test(tc, pp_accepted_split, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("refused");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, sph_deploy_teardown);
    tcase_add_loop_test(tc, pp_malformed, 0, SP_ARRAY_LEN(bad_headers));
    tcase_add_test(tc, pp_timeout);
    tcase_add_test(tc, pp_untrusted_peer);
    tcase_add_test(tc, pp_trust_reload);
    suite_add_tcase(s, tc);
}

static void add_haproxy(Suite *s)
{
    TCase *tc = tcase_create("haproxy");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, sph_deploy_teardown);
    tcase_add_loop_test(tc, haproxy_in_front, 0, 2);
    suite_add_tcase(s, tc);
}

static const struct sph_group groups[] = {
    {.name = NULL, .add = add_main},
    {.name = "haproxy", .tools = {"haproxy"}, .add = add_haproxy},
};

int main(int argc, char **argv)
{
    return sph_main(argc, argv, "integration.proxy_in", groups, SP_ARRAY_LEN(groups));
}
