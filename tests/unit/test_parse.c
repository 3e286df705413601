/* test_parse.c: table tests for the scalar parsers in parse.h (durations, sizes, bounded
 * integers, booleans, addresses), including that outputs stay untouched on failure. */
#include "common.h"
#include "parse.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#define UNTOUCHED 0xdeadbeefULL

static const struct {
    const char *in;
    int rc;
    uint64_t ms;
} durations[] = {
    {"500ms", 0, 500},
    {"0ms", 0, 0},
    {"0s", 0, 0},
    {"2s", 0, 2000},
    {"5m", 0, 300000},
    {"1h", 0, 3600000},
    {"596h", 0, 596ULL * 3600000},
    {"2147483647ms", 0, 2147483647ULL},
    {"2147483648ms", -ERANGE, 0},
    {"597h", -ERANGE, 0},
    {"99999999999999999999999s", -ERANGE, 0},
    {"010s", 0, 10000},
    {"10", -EINVAL, 0},
    {"0", -EINVAL, 0},
    {"5x", -EINVAL, 0},
    {"-1s", -EINVAL, 0},
    {"+1s", -EINVAL, 0},
    {"1.5s", -EINVAL, 0},
    {"1 s", -EINVAL, 0},
    {" 1s", -EINVAL, 0},
    {"1S", -EINVAL, 0},
    {"1d", -EINVAL, 0},
    {"1sec", -EINVAL, 0},
    {"1h30m", -EINVAL, 0},
    {"s", -EINVAL, 0},
    {"", -EINVAL, 0},
};

START_TEST(duration_table)
{
    uint64_t out = UNTOUCHED;
    int rc = sp_parse_duration_ms(durations[_i].in, &out);
    ck_assert_msg(rc == durations[_i].rc, "'%s': rc %d, want %d", durations[_i].in, rc,
                  durations[_i].rc);
    ck_assert_uint_eq(out, rc == 0 ? durations[_i].ms : UNTOUCHED);
}
END_TEST

static const struct {
    const char *in;
    int rc;
    uint64_t bytes;
} sizes[] = {
    {"0", 0, 0},
    {"65536", 0, 65536},
    {"64k", 0, 65536},
    {"64K", 0, 65536},
    {"1m", 0, 1048576},
    {"1M", 0, 1048576},
    {"1g", 0, 1073741824},
    {"2G", 0, 2147483648ULL},
    {"9223372036854775807", 0, SIZE_MAX / 2},
    {"9223372036854775808", -ERANGE, 0},
    {"8589934592g", -ERANGE, 0},
    {"99999999999999999999999", -ERANGE, 0},
    {"1kb", -EINVAL, 0},
    {"1t", -EINVAL, 0},
    {"k", -EINVAL, 0},
    {"-1k", -EINVAL, 0},
    {"1.5m", -EINVAL, 0},
    {"", -EINVAL, 0},
};

START_TEST(size_table)
{
    uint64_t out = UNTOUCHED;
    int rc = sp_parse_size(sizes[_i].in, &out);
    ck_assert_msg(rc == sizes[_i].rc, "'%s': rc %d, want %d", sizes[_i].in, rc, sizes[_i].rc);
    ck_assert_uint_eq(out, rc == 0 ? sizes[_i].bytes : UNTOUCHED);
}
END_TEST

static const struct {
    const char *in;
    uint64_t min, max;
    int rc;
    uint64_t v;
} uints[] = {
    {"0", 0, 10, 0, 0},
    {"10", 0, 10, 0, 10},
    {"11", 0, 10, -ERANGE, 0},
    {"0", 1, 10, -ERANGE, 0},
    {"1", 1, 10, 0, 1},
    {"007", 0, 10, 0, 7},
    {"18446744073709551615", 0, UINT64_MAX, 0, UINT64_MAX},
    {"18446744073709551616", 0, UINT64_MAX, -ERANGE, 0},
    {"-1", 0, 10, -EINVAL, 0},
    {"+1", 0, 10, -EINVAL, 0},
    {" 1", 0, 10, -EINVAL, 0},
    {"1 ", 0, 10, -EINVAL, 0},
    {"1x", 0, 10, -EINVAL, 0},
    {"0x10", 0, 100, -EINVAL, 0},
    {"1e3", 0, 10000, -EINVAL, 0},
    {"", 0, 10, -EINVAL, 0},
};

START_TEST(uint_table)
{
    uint64_t out = UNTOUCHED;
    int rc = sp_parse_uint(uints[_i].in, uints[_i].min, uints[_i].max, &out);
    ck_assert_msg(rc == uints[_i].rc, "'%s': rc %d, want %d", uints[_i].in, rc, uints[_i].rc);
    ck_assert_uint_eq(out, rc == 0 ? uints[_i].v : UNTOUCHED);
}
END_TEST

static const struct {
    const char *in;
    int rc;
    bool v;
} bools[] = {
    {"true", 0, true}, {"True", 0, true},   {"TRUE", 0, true},     {"yes", 0, true},
    {"on", 0, true},   {"false", 0, false}, {"False", 0, false},   {"no", 0, false},
    {"off", 0, false}, {"OFF", 0, false},   {"1", -EINVAL, 0},     {"0", -EINVAL, 0},
    {"y", -EINVAL, 0}, {"", -EINVAL, 0},    {"truth", -EINVAL, 0}, {"true ", -EINVAL, 0},
};

START_TEST(bool_table)
{
    bool out = !bools[_i].v; /* the opposite, so an unwritten output shows */
    int rc = sp_parse_bool(bools[_i].in, &out);
    ck_assert_msg(rc == bools[_i].rc, "'%s': rc %d, want %d", bools[_i].in, rc, bools[_i].rc);
    if (rc == 0)
        ck_assert_int_eq(out, bools[_i].v);
    else
        ck_assert_int_eq(out, !bools[_i].v);
}
END_TEST

/* host is the expected inet_ntop text; family 0 means "must fail with rc". */
static const struct {
    const char *in;
    int rc;
    int family;
    const char *host;
    unsigned port;
} addrs[] = {
    {"127.0.0.1:8080", 0, AF_INET, "127.0.0.1", 8080},
    {"0.0.0.0:1", 0, AF_INET, "0.0.0.0", 1},
    {"*:80", 0, AF_INET, "0.0.0.0", 80},
    {"10.1.2.3:65535", 0, AF_INET, "10.1.2.3", 65535},
    {"[::1]:9000", 0, AF_INET6, "::1", 9000},
    {"[::]:80", 0, AF_INET6, "::", 80},
    {"[2001:db8::42]:443", 0, AF_INET6, "2001:db8::42", 443},
    {"[::ffff:10.0.0.1]:80", 0, AF_INET6, "::ffff:10.0.0.1", 80},
    {"127.0.0.1:080", 0, AF_INET, "127.0.0.1", 80},
    {"127.0.0.1:0", -ERANGE, 0, NULL, 0},
    {"127.0.0.1:65536", -ERANGE, 0, NULL, 0},
    {"127.0.0.1:70000", -ERANGE, 0, NULL, 0},
    {"[::1]:0", -ERANGE, 0, NULL, 0},
    {"127.0.0.1:99999999999999999999999", -ERANGE, 0, NULL, 0},
    {"127.0.0.1", -EINVAL, 0, NULL, 0},
    {"127.0.0.1:", -EINVAL, 0, NULL, 0},
    {":80", -EINVAL, 0, NULL, 0},
    {"127.0.0.1:http", -EINVAL, 0, NULL, 0},
    {"127.0.0.1:-80", -EINVAL, 0, NULL, 0},
    {"127.0.0.1:80 ", -EINVAL, 0, NULL, 0},
    {"256.0.0.1:80", -EINVAL, 0, NULL, 0},
    {"1.2.3:80", -EINVAL, 0, NULL, 0},
    {"localhost:80", -EINVAL, 0, NULL, 0},
    {"[::1:80", -EINVAL, 0, NULL, 0},
    {"[::1]", -EINVAL, 0, NULL, 0},
    {"[::1]80", -EINVAL, 0, NULL, 0},
    {"[127.0.0.1]:80", -EINVAL, 0, NULL, 0},
    {"[]:80", -EINVAL, 0, NULL, 0},
    {"::1:80", -EINVAL, 0, NULL, 0},
    {"[*]:80", -EINVAL, 0, NULL, 0},
    {"[fe80::1%eth0]:80", -EINVAL, 0, NULL, 0},
    {"x:99999", -EINVAL, 0, NULL, 0},
    {"", -EINVAL, 0, NULL, 0},
    {"[0000:0000:0000:0000:0000:0000:0000:0000:0000]:80", -EINVAL, 0, NULL, 0},
};

START_TEST(addr_table)
{
    struct sockaddr_storage ss;
    socklen_t len = 12345;
    char host[INET6_ADDRSTRLEN];

    memset(&ss, 0xa5, sizeof(ss));
    int rc = sp_parse_addr(addrs[_i].in, &ss, &len);
    ck_assert_msg(rc == addrs[_i].rc, "'%s': rc %d, want %d", addrs[_i].in, rc, addrs[_i].rc);
    if (rc != 0) {
        ck_assert_uint_eq(len, 12345);
        ck_assert_uint_eq(((unsigned char *)&ss)[0], 0xa5);
        return;
    }
    ck_assert_int_eq(ss.ss_family, addrs[_i].family);
    if (addrs[_i].family == AF_INET) {
        const struct sockaddr_in *sin = (const void *)&ss;
        ck_assert_uint_eq(len, sizeof(*sin));
        ck_assert_uint_eq(ntohs(sin->sin_port), addrs[_i].port);
        ck_assert_ptr_nonnull(inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host)));
    } else {
        const struct sockaddr_in6 *sin6 = (const void *)&ss;
        ck_assert_uint_eq(len, sizeof(*sin6));
        ck_assert_uint_eq(ntohs(sin6->sin6_port), addrs[_i].port);
        ck_assert_uint_eq(sin6->sin6_flowinfo, 0);
        ck_assert_uint_eq(sin6->sin6_scope_id, 0);
        ck_assert_ptr_nonnull(inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host)));
    }
    ck_assert_str_eq(host, addrs[_i].host);
}
END_TEST

static const struct {
    const char *in;
    int rc;
    bool abstract;
    const char *path; /* the path or abstract name as stored */
} unix_addrs[] = {
    {"unix:/run/app.sock", 0, false, "/run/app.sock"},
    {"unix:/", 0, false, "/"},
    {"unix:/a b/c:d@e", 0, false, "/a b/c:d@e"},
    {"unix:@app", 0, true, "app"},
    {"unix:@/looks/like/a/path", 0, true, "/looks/like/a/path"},
    {"unix:@@", 0, true, "@"},
    {"unix:/caf\xc3\xa9.sock", 0, false, "/caf\xc3\xa9.sock"},
    {"unix:", -ENOENT, false, NULL},
    {"unix:@", -ENOENT, false, NULL},
    {"unix:run/app.sock", -EDOM, false, NULL},
    {"unix:./app.sock", -EDOM, false, NULL},
    {"unix:80", -EDOM, false, NULL},
    {"unix:~/app.sock", -EDOM, false, NULL},
    {"unix:/a\nb", -EILSEQ, false, NULL},
    {"unix:@a\tb", -EILSEQ, false, NULL},
    {"unix:/a\x7f", -EILSEQ, false, NULL},
    {"UNIX:/run/app.sock", -EINVAL, false, NULL},
    {"unix/run/app.sock", -EINVAL, false, NULL},
    {"/run/app.sock", -EINVAL, false, NULL},
    {"127.0.0.1:80", -EINVAL, false, NULL},
    {"", -EINVAL, false, NULL},
};

START_TEST(unix_table)
{
    struct sockaddr_storage ss;
    socklen_t len = 12345;

    memset(&ss, 0xa5, sizeof(ss));
    int rc = sp_parse_unix_addr(unix_addrs[_i].in, &ss, &len);
    ck_assert_msg(rc == unix_addrs[_i].rc, "'%s': rc %d, want %d", unix_addrs[_i].in, rc,
                  unix_addrs[_i].rc);
    ck_assert(sp_parse_is_unix(unix_addrs[_i].in) == (rc != -EINVAL));
    if (rc != 0) {
        ck_assert_uint_eq(len, 12345);
        ck_assert_uint_eq(((unsigned char *)&ss)[0], 0xa5);
        return;
    }
    const struct sockaddr_un *un = (const void *)&ss;
    size_t n = strlen(unix_addrs[_i].path);
    ck_assert_int_eq(un->sun_family, AF_UNIX);
    ck_assert_uint_eq(len, offsetof(struct sockaddr_un, sun_path) + 1 + n);
    if (unix_addrs[_i].abstract) {
        ck_assert_int_eq(un->sun_path[0], '\0');
        ck_assert_mem_eq(un->sun_path + 1, unix_addrs[_i].path, n);
    } else {
        ck_assert_str_eq(un->sun_path, unix_addrs[_i].path);
    }
    /* zero-filled past the name, so that two parses of one address compare equal bytewise */
    for (size_t i = n + (unix_addrs[_i].abstract ? 1 : 0); i < sizeof(un->sun_path); i++)
        ck_assert_int_eq(un->sun_path[i], 0);
}
END_TEST

/* sun_path holds 108 bytes: a path of 107 and its NUL, or a NUL and an abstract name of 107. */
START_TEST(unix_lengths)
{
    char in[300];
    struct sockaddr_storage ss;
    socklen_t len;

    for (size_t n = 100; n <= 120; n++) {
        for (int abstract = 0; abstract < 2; abstract++) {
            snprintf(in, sizeof(in), "unix:%s", abstract ? "@" : "/");
            size_t used = strlen(in);
            memset(in + used, 'x', n - 1);
            in[used + n - 1] = '\0';
            /* the name is n bytes: "/" + n-1 x's, or "@" then n-1 x's (abstract name of n-1) */
            size_t name = abstract ? n - 1 : n;
            int rc = sp_parse_unix_addr(in, &ss, &len);
            ck_assert_msg(rc == (name <= SP_UNIX_PATH_MAX ? 0 : -ENAMETOOLONG),
                          "%s name of %zu: rc %d", abstract ? "abstract" : "path", name, rc);
        }
    }
    ck_assert_uint_eq(SP_UNIX_PATH_MAX + 1, sizeof(((struct sockaddr_un *)0)->sun_path));
}
END_TEST

static const struct {
    const char *in;
    int rc;
    const char *host;
    unsigned port;
} host_ports[] = {
    {"localhost:80", 0, "localhost", 80},
    {"db.internal:5432", 0, "db.internal", 5432},
    {"Backend-1.Example.COM:443", 0, "backend-1.example.com", 443},
    {"a:1", 0, "a", 1},
    {"x1:65535", 0, "x1", 65535},
    {"1.2.3.example:80", 0, "1.2.3.example", 80},
    {"123abc:80", 0, "123abc", 80},
    {"xn--bcher-kva.example:80", 0, "xn--bcher-kva.example", 80},
    {"localhost:0", -ERANGE, NULL, 0},
    {"localhost:65536", -ERANGE, NULL, 0},
    {"localhost", -EINVAL, NULL, 0},
    {"localhost:", -EINVAL, NULL, 0},
    {"localhost:http", -EINVAL, NULL, 0},
    {":80", -EINVAL, NULL, 0},
    {"10.0.0.1:80", -EINVAL, NULL, 0}, /* numeric: sp_parse_addr's business */
    {"10.0.0.256:80", -EINVAL, NULL, 0},
    {"123:80", -EINVAL, NULL, 0},
    {"[::1]:80", -EINVAL, NULL, 0},
    {"::1:80", -EINVAL, NULL, 0},
    {"*:80", -EINVAL, NULL, 0},
    {"example.com.:80", -EINVAL, NULL, 0},
    {".example.com:80", -EINVAL, NULL, 0},
    {"a..b:80", -EINVAL, NULL, 0},
    {"-a.com:80", -EINVAL, NULL, 0},
    {"a-.com:80", -EINVAL, NULL, 0},
    {"a.-b.com:80", -EINVAL, NULL, 0},
    {"my_host:80", -EINVAL, NULL, 0},
    {"exa mple:80", -EINVAL, NULL, 0},
    {"caf\xc3\xa9:80", -EINVAL, NULL, 0},
    {"", -EINVAL, NULL, 0},
};

START_TEST(host_port_table)
{
    char host[SP_HOST_NAME_MAX] = "untouched";
    uint16_t port = 7;
    int rc = sp_parse_host_port(host_ports[_i].in, host, sizeof(host), &port);
    ck_assert_msg(rc == host_ports[_i].rc, "'%s': rc %d, want %d", host_ports[_i].in, rc,
                  host_ports[_i].rc);
    if (rc != 0) {
        ck_assert_str_eq(host, "untouched");
        ck_assert_uint_eq(port, 7);
        return;
    }
    ck_assert_str_eq(host, host_ports[_i].host);
    ck_assert_uint_eq(port, host_ports[_i].port);
}
END_TEST

START_TEST(host_port_lengths)
{
    char in[400], host[SP_HOST_NAME_MAX];
    uint16_t port;

    /* a 63-character label is fine, 64 is not */
    memset(in, 'a', 63);
    strcpy(in + 63, ".com:1");
    ck_assert_int_eq(sp_parse_host_port(in, host, sizeof(host), &port), 0);
    memset(in, 'a', 64);
    strcpy(in + 64, ".com:1");
    ck_assert_int_eq(sp_parse_host_port(in, host, sizeof(host), &port), -EINVAL);
    /* 253 characters are fine, 254 are not */
    for (int i = 0; i < 253; i++)
        in[i] = i % 2 ? '.' : 'b';
    strcpy(in + 253, ":1");
    ck_assert_int_eq(sp_parse_host_port(in, host, sizeof(host), &port), 0);
    ck_assert_uint_eq(strlen(host), 253);
    ck_assert_int_eq(sp_parse_host_port(in, host, 253, &port), -ENOSPC);
    in[253] = 'b';
    in[252] = 'b';
    strcpy(in + 254, ":1");
    ck_assert_int_eq(sp_parse_host_port(in, host, sizeof(host), &port), -EINVAL);
}
END_TEST

static Suite *parse_suite(void)
{
    Suite *s = suite_create("parse");
    TCase *tc = tcase_create("tables");
    tcase_add_loop_test(tc, duration_table, 0, SP_ARRAY_LEN(durations));
    tcase_add_loop_test(tc, size_table, 0, SP_ARRAY_LEN(sizes));
    tcase_add_loop_test(tc, uint_table, 0, SP_ARRAY_LEN(uints));
    tcase_add_loop_test(tc, bool_table, 0, SP_ARRAY_LEN(bools));
    tcase_add_loop_test(tc, addr_table, 0, SP_ARRAY_LEN(addrs));
    tcase_add_loop_test(tc, host_port_table, 0, SP_ARRAY_LEN(host_ports));
    tcase_add_test(tc, host_port_lengths);
    tcase_add_loop_test(tc, unix_table, 0, SP_ARRAY_LEN(unix_addrs));
    tcase_add_test(tc, unix_lengths);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(parse_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
