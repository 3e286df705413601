/* test_allow_deny.c: allow/deny as a client sees them on the real binary: on the socket peer
 * (refused at once, no server contacted, counted, logged as denied), on the PROXY header's
 * address with accept_proxy_protocol (IPv4 and IPv6 addresses), and on an [::1] listener (group
 * "ipv6", skipped on a host without IPv6). */
#include "common.h"
#include "deploy.h"
#include "harness.h"

#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Starts splicer with allow/deny lines (and accept_proxy_protocol when pp) in front of echo. */
static void filter_start(struct sph_px *x, int family, const char *rules, bool pp,
                         const struct sph_backend *echo)
{
    char laddr[64];
    int port = sph_free_port(family);
    ck_assert_int_gt(port, 0);
    sph_px_start(x, port,
                 "listeners:\n"
                 "  main:\n"
                 "    listen: \"%s\"\n"
                 "    upstream: pool\n"
                 "%s%s"
                 "upstreams:\n"
                 "  pool:\n"
                 "    servers:\n"
                 "      - address: 127.0.0.1:%d\n",
                 sph_addr(laddr, family, port), rules,
                 pp ? "    accept_proxy_protocol: true\n    proxy_protocol_from: [127.0.0.1]\n"
                    : "",
                 echo->port);
}

static const struct {
    const char *rules;
    bool served;
} peer_rules[] = {
    {"    deny: [127.0.0.1]\n", false},
    {"    allow: [10.0.0.0/8]\n", false},
    {"    allow: [127.0.0.0/8]\n", true},
    {"    allow: [127.0.0.0/8]\n    deny: [127.0.0.1/32]\n", false}, /* deny wins */
    {"    deny: [10.0.0.0/8, \"::1\"]\n", true},
};

static void expect_filter(const struct sph_px *x, int family, const struct sph_backend *echo,
                          bool served, const void *hdr, size_t hlen)
{
    if (served) {
        int fd = sph_connect(family, x->port, SPH_IO_MS);
        ck_assert_int_ge(fd, 0);
        if (hlen > 0)
            ck_assert_int_eq(sph_write_all(fd, hdr, hlen, SPH_IO_MS), 0);
        sph_expect_echo(fd, "let in\n");
        close(fd);
        ck_assert_int_eq(atomic_load(&echo->accepted), 1);
        sph_expect_metric(x->admin, SPH_DENIED("main"), 0);
    } else {
        sph_expect_refused(family, x->port, hdr, hlen);
        sph_expect_metric(x->admin, SPH_DENIED("main"), 1);
        sph_sleep_ms(100);
        ck_assert_int_eq(atomic_load(&echo->accepted), 0);
    }
}

/* On the socket peer 127.0.0.1: refused at once (no server contacted, counted, logged as
 * denied) or served. */
START_TEST(filter_peer)
{
    struct sph_backend *echo = sph_echo_backend();
    struct sph_px x;
    filter_start(&x, AF_INET, peer_rules[_i].rules, false, echo);
    expect_filter(&x, AF_INET, echo, peer_rules[_i].served, NULL, 0);
    if (!peer_rules[_i].served)
        sph_expect_access(&x, "127.0.0.1:", "denied");
}
END_TEST

static const struct {
    const char *rules;
    const char *src;
    bool served;
} header_rules[] = {
    /* the peer 127.0.0.1 would pass, the header's 10.1.2.3 does not */
    {"    deny: [10.0.0.0/8]\n", "10.1.2.3", false},
    {"    deny: [10.0.0.0/8]\n", "192.0.2.1", true},
    /* the peer 127.0.0.1 would be refused, the header's 10.1.2.3 is let in */
    {"    allow: [10.0.0.0/8]\n", "10.1.2.3", true},
    {"    allow: [\"2001:db8::/32\"]\n", "2001:db8::7", true},
    {"    deny: [\"2001:db8::/32\"]\n", "2001:db8::7", false},
};

/* With accept_proxy_protocol, the rules apply to the header's source address. */
START_TEST(filter_header)
{
    struct sph_backend *echo = sph_echo_backend();
    struct sph_px x;
    filter_start(&x, AF_INET, header_rules[_i].rules, true, echo);
    unsigned char hdr[128];
    const char *dst = strchr(header_rules[_i].src, ':') != NULL ? "2001:db8::1" : "198.51.100.1";
    size_t n = sph_pp_build(hdr, 2, header_rules[_i].src, 4711, dst, 443);
    expect_filter(&x, AF_INET, echo, header_rules[_i].served, hdr, n);
    char client[64];
    snprintf(client, sizeof(client), strchr(header_rules[_i].src, ':') ? "[%s]:4711" : "%s:4711",
             header_rules[_i].src);
    sph_expect_access(&x, client, header_rules[_i].served ? "client_fin" : "denied");
}
END_TEST

/* ---- group ipv6 ---- */

/* An IPv6 listener on [::1]: allow ["::1"] serves, deny ["::1/128"] refuses. */
START_TEST(filter_ipv6)
{
    struct sph_backend *echo = sph_echo_backend();
    struct sph_px x;
    filter_start(&x, AF_INET6, _i == 0 ? "    allow: [\"::1\"]\n" : "    deny: [\"::1/128\"]\n",
                 false, echo);
    expect_filter(&x, AF_INET6, echo, _i == 0, NULL, 0);
    sph_expect_access(&x, "[::1]:", _i == 0 ? "client_fin" : "denied");
}
END_TEST

static void add_main(Suite *s)
{
    TCase *tc = tcase_create("filter");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, sph_deploy_teardown);
    tcase_add_loop_test(tc, filter_peer, 0, SP_ARRAY_LEN(peer_rules));
    tcase_add_loop_test(tc, filter_header, 0, SP_ARRAY_LEN(header_rules));
    suite_add_tcase(s, tc);
}

static void add_ipv6(Suite *s)
{
    TCase *tc = tcase_create("ipv6");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, sph_deploy_teardown);
    tcase_add_loop_test(tc, filter_ipv6, 0, 2);
    suite_add_tcase(s, tc);
}

static const struct sph_group groups[] = {
    {.name = NULL, .add = add_main},
    {.name = "ipv6", .needs = SPH_NEED_IPV6, .add = add_ipv6},
};

int main(int argc, char **argv)
{
    return sph_main(argc, argv, "integration.allow_deny", groups, SP_ARRAY_LEN(groups));
}
