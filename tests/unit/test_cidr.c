/* test_cidr.c: prefix parsing (hosts, prefixes, every error class), matching IPv4, IPv6 and
 * IPv4-mapped IPv6 clients, and the allow/deny decision. */
#include "cidr.h"
#include "common.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *in;
    int rc;
    const char *canon; /* sp_cidr_format of the result */
} parses[] = {
    {"10.0.0.0/8", 0, "10.0.0.0/8"},
    {"192.168.1.5", 0, "192.168.1.5/32"},
    {"192.168.1.5/32", 0, "192.168.1.5/32"},
    {"0.0.0.0/0", 0, "0.0.0.0/0"},
    {"172.16.0.0/12", 0, "172.16.0.0/12"},
    {"::1", 0, "::1/128"},
    {"::1/128", 0, "::1/128"},
    {"::/0", 0, "::/0"},
    {"2001:db8::/32", 0, "2001:db8::/32"},
    {"2001:DB8::/33", 0, "2001:db8::/33"},
    {"fe80::/10", 0, "fe80::/10"},
    {"::ffff:10.0.0.0/104", 0, "10.0.0.0/8"}, /* a mapped rule is its IPv4 rule */
    {"::ffff:1.2.3.4", 0, "1.2.3.4/32"},
    {"::ffff:0:0/96", 0, "0.0.0.0/0"},
    {"::fffe:0:0/95", 0, "::fffe:0:0/95"}, /* wider than the mapped space: stays IPv6 */
    {"10.0.0.1/8", -EDOM, NULL},
    {"11.0.0.0/7", -EDOM, NULL},
    {"::ffff:0:0/95", -EDOM, NULL},
    {"2001:db8::1/64", -EDOM, NULL},
    {"10.0.0.0/33", -ERANGE, NULL},
    {"::/129", -ERANGE, NULL},
    {"10.0.0.0/999", -ERANGE, NULL},
    {"10.0.0.0/", -EINVAL, NULL},
    {"10.0.0.0/-1", -EINVAL, NULL},
    {"10.0.0.0/+8", -EINVAL, NULL},
    {"10.0.0.0/08", -EINVAL, NULL},
    {"10.0.0.0/8 ", -EINVAL, NULL},
    {"10.0.0.0/1000", -EINVAL, NULL},
    {"10.0.0.0/8/8", -EINVAL, NULL},
    {" 10.0.0.0/8", -EINVAL, NULL},
    {"/8", -EINVAL, NULL},
    {"", -EINVAL, NULL},
    {"10.0.0", -EINVAL, NULL},
    {"10.0.0.256", -EINVAL, NULL},
    {"010.0.0.1", -EINVAL, NULL},
    {"[::1]/128", -EINVAL, NULL},
    {"::g", -EINVAL, NULL},
    {"localhost", -EINVAL, NULL},
    {"10.0.0.0/8,10.1.0.0/16", -EINVAL, NULL},
};

START_TEST(parse_table)
{
    struct sp_cidr c;
    char buf[SP_CIDR_STR_MAX];
    memset(&c, 0x5a, sizeof(c));
    int rc = sp_cidr_parse(parses[_i].in, &c);
    ck_assert_msg(rc == parses[_i].rc, "'%s': rc %d, want %d", parses[_i].in, rc, parses[_i].rc);
    if (rc == 0)
        ck_assert_str_eq(sp_cidr_format(&c, buf, sizeof(buf)), parses[_i].canon);
    else
        ck_assert_uint_eq(c.prefix, 0x5a);
}
END_TEST

static struct sockaddr_storage sa(const char *host)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(host, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(4242);
        ck_assert_int_eq(inet_pton(AF_INET6, host, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(4242);
        ck_assert_int_eq(inet_pton(AF_INET, host, &s4->sin_addr), 1);
    }
    return ss;
}

static const char *const rules[] = {"10.0.0.0/8",    "192.168.1.5", "172.16.0.0/12",
                                    "2001:db8::/32", "::1",         "100.64.0.0/10"};

static const struct {
    const char *addr;
    bool match;
} clients[] = {
    {"10.0.0.0", true},
    {"10.255.255.255", true},
    {"11.0.0.0", false},
    {"9.255.255.255", false},
    {"192.168.1.5", true},
    {"192.168.1.4", false},
    {"192.168.1.6", false},
    {"172.16.0.1", true},
    {"172.31.255.255", true},
    {"172.32.0.0", false},
    {"172.15.255.255", false},
    {"100.64.0.1", true},
    {"100.127.255.255", true},
    {"100.128.0.0", false},
    {"2001:db8::1", true},
    {"2001:db8:ffff::1", true},
    {"2001:db9::1", false},
    {"::1", true},
    {"::2", false},
    {"::ffff:10.1.2.3", true}, /* a dual-stack socket's IPv4 client */
    {"::ffff:192.168.1.5", true},
    {"::ffff:11.1.2.3", false},
    {"::10.1.2.3", false},        /* IPv4-compatible (deprecated) is not mapped */
    {"64:ff9b::10.1.2.3", false}, /* NAT64 is another address */
    {"fe80::1", false},
};

START_TEST(match_table)
{
    struct sp_cidr_list l = {0};
    for (size_t i = 0; i < SP_ARRAY_LEN(rules); i++)
        ck_assert_int_eq(sp_cidr_list_add(&l, rules[i]), 0);
    struct sockaddr_storage ss = sa(clients[_i].addr);
    ck_assert_msg(sp_cidr_match(&l, (const struct sockaddr *)&ss) == clients[_i].match, "%s",
                  clients[_i].addr);
    sp_cidr_list_deinit(&l);
    ck_assert_ptr_null(l.v);
    ck_assert_uint_eq(l.n, 0);
}
END_TEST

START_TEST(mapped_rules)
{
    struct sp_cidr_list l = {0};
    ck_assert_int_eq(sp_cidr_list_add(&l, "::ffff:10.0.0.0/104"), 0);
    struct sockaddr_storage a = sa("10.9.8.7"), b = sa("::ffff:10.9.8.7"), c = sa("11.0.0.1");
    ck_assert(sp_cidr_match(&l, (const struct sockaddr *)&a));
    ck_assert(sp_cidr_match(&l, (const struct sockaddr *)&b));
    ck_assert(!sp_cidr_match(&l, (const struct sockaddr *)&c));
    sp_cidr_list_deinit(&l);

    /* ::/0 is all of IPv6, but a mapped client is matched as IPv4 */
    ck_assert_int_eq(sp_cidr_list_add(&l, "::/0"), 0);
    ck_assert(!sp_cidr_match(&l, (const struct sockaddr *)&b));
    ck_assert_int_eq(sp_cidr_list_add(&l, "0.0.0.0/0"), 0);
    ck_assert(sp_cidr_match(&l, (const struct sockaddr *)&b));
    ck_assert(sp_cidr_match(&l, (const struct sockaddr *)&a));
    sp_cidr_list_deinit(&l);
}
END_TEST

START_TEST(list_errors)
{
    struct sp_cidr_list l = {0};
    struct sockaddr_storage a = sa("10.0.0.1");
    struct sockaddr_storage u;
    memset(&u, 0, sizeof(u));
    u.ss_family = AF_UNIX;

    ck_assert_int_eq(sp_cidr_list_add(&l, "10.0.0.0/8"), 0);
    ck_assert_int_eq(sp_cidr_list_add(&l, "10.0.0.0/33"), -ERANGE);
    ck_assert_int_eq(sp_cidr_list_add(&l, "nope"), -EINVAL);
    ck_assert_uint_eq(l.n, 1);
    ck_assert(!sp_cidr_match(&l, (const struct sockaddr *)&u));
    ck_assert(!sp_cidr_match(NULL, (const struct sockaddr *)&a));
    ck_assert(!sp_cidr_match(&l, NULL));
    sp_cidr_list_deinit(&l);
    ck_assert(!sp_cidr_match(&l, (const struct sockaddr *)&a));
    sp_cidr_list_deinit(NULL);
}
END_TEST

START_TEST(allow_deny)
{
    struct sp_cidr_list allow = {0}, deny = {0}, empty = {0};
    struct sockaddr_storage in = sa("10.1.1.1"), bad = sa("10.6.6.6"), out = sa("8.8.8.8");
    const struct sockaddr *pin = (const void *)&in, *pbad = (const void *)&bad;
    const struct sockaddr *pout = (const void *)&out;

    /* nothing configured: everyone */
    ck_assert(sp_cidr_allowed(NULL, NULL, pout));
    ck_assert(sp_cidr_allowed(&empty, &empty, pout));

    ck_assert_int_eq(sp_cidr_list_add(&allow, "10.0.0.0/8"), 0);
    ck_assert_int_eq(sp_cidr_list_add(&deny, "10.6.0.0/16"), 0);
    ck_assert(sp_cidr_allowed(&allow, &deny, pin));
    ck_assert(!sp_cidr_allowed(&allow, &deny, pbad)); /* deny wins over allow */
    ck_assert(!sp_cidr_allowed(&allow, &deny, pout)); /* not in a non-empty allow */
    /* deny only: everyone else is allowed */
    ck_assert(sp_cidr_allowed(&empty, &deny, pout));
    ck_assert(!sp_cidr_allowed(NULL, &deny, pbad));
    sp_cidr_list_deinit(&allow);
    sp_cidr_list_deinit(&deny);
}
END_TEST

static Suite *cidr_suite(void)
{
    Suite *s = suite_create("cidr");
    TCase *tc = tcase_create("cidr");
    tcase_add_loop_test(tc, parse_table, 0, SP_ARRAY_LEN(parses));
    tcase_add_loop_test(tc, match_table, 0, SP_ARRAY_LEN(clients));
    tcase_add_test(tc, mapped_rules);
    tcase_add_test(tc, list_errors);
    tcase_add_test(tc, allow_deny);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cidr_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
