/* test_proxy_proto.c: the PROXY protocol encoder and decoder. Byte-exact v1/v2 vectors written
 * by hand from the spec, round trips, every malformed class, "need more" for every proper
 * prefix of every valid header (each prefix in a buffer of exactly its size, so ASan sees any
 * over-read), and headers captured from haproxy 2.6 (tests/fixtures/proxy_proto/README.md). */
#include "common.h"
#include "proxy_proto.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---------------------------------------------------------------------------- */

static struct sockaddr_storage sa(const char *host, unsigned port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(host, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        ck_assert_int_eq(inet_pton(AF_INET6, host, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        ck_assert_int_eq(inet_pton(AF_INET, host, &s4->sin_addr), 1);
    }
    return ss;
}

/* "host port" of a decoded address, for readable asserts. */
static const char *fmt(const struct sockaddr_storage *ss, char *buf, size_t size)
{
    char a[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const void *)ss;
        inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
        snprintf(buf, size, "%s %u", a, ntohs(s4->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const void *)ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
        snprintf(buf, size, "%s %u", a, ntohs(s6->sin6_port));
    } else {
        snprintf(buf, size, "family %d", ss->ss_family);
    }
    return buf;
}

/* Decodes exactly buf[0..len) from a heap copy of that size. */
static int decode_exact(const void *buf, size_t len, struct sp_pp_result *out)
{
    char *copy = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, buf, len);
    int rc = sp_pp_decode(copy, len, out);
    free(copy);
    return rc;
}

static size_t read_fixture(const char *rel, unsigned char *buf, size_t cap)
{
    char path[1024];
    const char *dir = getenv("SPLICER_FIXTURES");
    ck_assert_msg(dir != NULL, "SPLICER_FIXTURES is not set");
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    size_t n = fread(buf, 1, cap, f);
    ck_assert(!ferror(f));
    fclose(f);
    return n;
}

#define SIG "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A"

/* ---- byte-exact encoding ---------------------------------------------------------------- */

static const struct {
    int version;
    const char *src, *dst; /* NULL: no address (a connection of our own) */
    unsigned sport, dport;
    const char *bytes;
    size_t len;
} vectors[] = {
    {1, "192.0.2.1", "198.51.100.2", 56324, 443, "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
     0},
    {1, "2001:db8::1", "2001:db8::2", 1234, 80, "PROXY TCP6 2001:db8::1 2001:db8::2 1234 80\r\n",
     0},
    {1, "192.0.2.1", "2001:db8::2", 1000, 80, "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1000 80\r\n",
     0},
    {1, "0.0.0.0", "255.255.255.255", 0, 65535, "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
     0},
    {1, NULL, NULL, 0, 0, "PROXY UNKNOWN\r\n", 0},
    /* v2, IPv4: signature; 0x21 = version 2, PROXY; 0x11 = AF_INET, STREAM; length 12;
     * 192.0.2.1, 198.51.100.2, port 56324 = 0xDC04, port 443 = 0x01BB */
    {2, "192.0.2.1", "198.51.100.2", 56324, 443,
     SIG "\x21\x11\x00\x0C"
         "\xC0\x00\x02\x01"
         "\xC6\x33\x64\x02"
         "\xDC\x04\x01\xBB",
     28},
    /* v2, IPv6: 0x21 = AF_INET6, STREAM; length 36 = 0x24; ports 1234 = 0x04D2, 80 = 0x0050 */
    {2, "2001:db8::1", "2001:db8::2", 1234, 80,
     SIG "\x21\x21\x00\x24"
         "\x20\x01\x0D\xB8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
         "\x20\x01\x0D\xB8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02"
         "\x04\xD2\x00\x50",
     52},
    /* v2, mixed: the IPv4 source goes out v4-mapped */
    {2, "192.0.2.1", "2001:db8::2", 1000, 80,
     SIG "\x21\x21\x00\x24"
         "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xFF\xFF\xC0\x00\x02\x01"
         "\x20\x01\x0D\xB8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02"
         "\x03\xE8\x00\x50",
     52},
    /* v2 LOCAL: 0x20 = version 2, LOCAL; family UNSPEC; length 0 */
    {2, NULL, NULL, 0, 0, SIG "\x20\x00\x00\x00", 16},
};

START_TEST(encode_exact)
{
    struct sockaddr_storage s, d;
    char out[SP_PP_ENCODE_MAX];
    size_t want = vectors[_i].len ? vectors[_i].len : strlen(vectors[_i].bytes);
    const struct sockaddr *sp = NULL, *dp = NULL;

    if (vectors[_i].src != NULL) {
        s = sa(vectors[_i].src, vectors[_i].sport);
        d = sa(vectors[_i].dst, vectors[_i].dport);
        sp = (const struct sockaddr *)&s;
        dp = (const struct sockaddr *)&d;
    }
    int n = sp_pp_encode(vectors[_i].version, sp, dp, out, sizeof(out));
    ck_assert_int_eq(n, (int)want);
    ck_assert_mem_eq(out, vectors[_i].bytes, want);

    /* exactly enough room works, one byte less is -ENOSPC and writes nothing */
    memset(out, 'x', sizeof(out));
    ck_assert_int_eq(sp_pp_encode(vectors[_i].version, sp, dp, out, want), (int)want);
    memset(out, 'x', sizeof(out));
    ck_assert_int_eq(sp_pp_encode(vectors[_i].version, sp, dp, out, want - 1), -ENOSPC);
    ck_assert_int_eq(out[0], 'x');
}
END_TEST

/* Every vector decodes back: addresses, or none; with payload after it, only the header is
 * consumed. */
START_TEST(decode_vectors)
{
    struct sp_pp_result r;
    char buf[128], a[80];
    size_t n = vectors[_i].len ? vectors[_i].len : strlen(vectors[_i].bytes);

    memcpy(buf, vectors[_i].bytes, n);
    memcpy(buf + n, "GET /", 5);
    ck_assert_int_eq(decode_exact(buf, n + 5, &r), (int)n);
    ck_assert_int_eq(r.version, vectors[_i].version);
    if (vectors[_i].src == NULL) {
        ck_assert(!r.has_addr);
        ck_assert(r.local == (vectors[_i].version == 2));
        return;
    }
    ck_assert(r.has_addr);
    ck_assert(!r.local);
    /* a mixed pair comes back as IPv6 with the IPv4 side mapped */
    bool mixed = (strchr(vectors[_i].src, ':') == NULL) != (strchr(vectors[_i].dst, ':') == NULL);
    char want[80];
    snprintf(want, sizeof(want), "%s%s %u", mixed ? "::ffff:" : "", vectors[_i].src,
             vectors[_i].sport);
    ck_assert_str_eq(fmt(&r.src, a, sizeof(a)), want);
    snprintf(want, sizeof(want), "%s %u", vectors[_i].dst, vectors[_i].dport);
    ck_assert_str_eq(fmt(&r.dst, a, sizeof(a)), want);
}
END_TEST

START_TEST(encode_errors)
{
    struct sockaddr_storage s = sa("10.0.0.1", 1), d = sa("10.0.0.2", 2);
    char out[SP_PP_ENCODE_MAX];
    const struct sockaddr *sp = (const void *)&s, *dp = (const void *)&d;

    ck_assert_int_eq(sp_pp_encode(0, sp, dp, out, sizeof(out)), -EINVAL);
    ck_assert_int_eq(sp_pp_encode(3, sp, dp, out, sizeof(out)), -EINVAL);
    /* a non-inet family (a unix: client): v1 UNKNOWN, v2 LOCAL with AF_UNSPEC */
    struct sockaddr_storage u;
    memset(&u, 0, sizeof(u));
    u.ss_family = AF_UNIX;
    ck_assert_int_eq(sp_pp_encode(1, (const void *)&u, dp, out, sizeof(out)), 15);
    ck_assert_mem_eq(out, "PROXY UNKNOWN\r\n", 15);
    ck_assert_int_eq(sp_pp_encode(2, sp, (const void *)&u, out, sizeof(out)), 16);
    ck_assert_mem_eq(out, SIG "\x20\x00\x00\x00", 16);
}
END_TEST

/* ---- round trips ------------------------------------------------------------------------ */

static const struct {
    const char *src, *dst;
    unsigned sport, dport;
} trips[] = {
    {"127.0.0.1", "127.0.0.1", 40000, 8080},
    {"10.1.2.3", "172.16.0.1", 1, 65535},
    {"::1", "::1", 50000, 443},
    {"fe80::1:2:3:4", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 65535, 1},
    {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535,
     65535},
    {"::ffff:10.0.0.1", "::ffff:10.0.0.2", 1234, 80},
};

START_TEST(round_trip)
{
    int version = _i % 2 + 1;
    size_t t = (size_t)_i / 2;
    struct sockaddr_storage s = sa(trips[t].src, trips[t].sport);
    struct sockaddr_storage d = sa(trips[t].dst, trips[t].dport);
    struct sp_pp_result r;
    char out[SP_PP_ENCODE_MAX];

    int n = sp_pp_encode(version, (const void *)&s, (const void *)&d, out, sizeof(out));
    ck_assert_int_gt(n, 0);
    ck_assert_int_le(n, version == 1 ? SP_PP_V1_MAX : SP_PP_V2_HDR + 36);
    ck_assert_int_eq(decode_exact(out, (size_t)n, &r), n);
    ck_assert_int_eq(r.version, version);
    ck_assert(r.has_addr);
    ck_assert_int_eq(r.src.ss_family, s.ss_family);
    size_t alen = s.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    ck_assert_mem_eq(&r.src, &s, alen);
    ck_assert_mem_eq(&r.dst, &d, alen);
}
END_TEST

/* ---- valid headers: full, and every proper prefix needs more ---------------------------- */

static const struct {
    const char *bytes;
    size_t len; /* 0: strlen */
    bool has_addr, local;
} valid[] = {
    {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 0, true, false},
    {"PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n", 0, true, false},
    {"PROXY TCP6 ::1 ::2 1 2\r\n", 0, true, false},
    {"PROXY TCP6 ::ffff:1.2.3.4 ABCD::EF 1 2\r\n", 0, true, false},
    {"PROXY UNKNOWN\r\n", 0, false, false},
    {"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", 0, false, false},
    /* 107 bytes exactly: the spec's worst case is still accepted */
    {"PROXY UNKNOWN xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxx\r\n",
     0, false, false},
    {SIG "\x20\x00\x00\x00", 16, false, true},
    {SIG "\x20\x11\x00\x05"
         "junk",
     21, false, true}, /* LOCAL: block and family discarded */
    {SIG "\x21\x00\x00\x00", 16, false, false},
    {SIG "\x21\x00\x00\x03"
         "abc",
     19, false, false}, /* UNSPEC: block skipped */
    {SIG "\x21\x11\x00\x0C"
         "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02",
     28, true, false},
    /* with a NOOP TLV (type 4) of 2 bytes and an empty one */
    {SIG "\x21\x11\x00\x14"
         "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"
         "\x04\x00\x02zz"
         "\x04\x00\x00",
     36, true, false},
    {SIG "\x21\x21\x00\x24"
         "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
         "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02"
         "\x00\x01\x00\x02",
     52, true, false},
};

START_TEST(valid_full)
{
    struct sp_pp_result r;
    size_t n = valid[_i].len ? valid[_i].len : strlen(valid[_i].bytes);
    ck_assert_int_eq(decode_exact(valid[_i].bytes, n, &r), (int)n);
    ck_assert(r.has_addr == valid[_i].has_addr);
    ck_assert(r.local == valid[_i].local);
}
END_TEST

START_TEST(valid_prefixes)
{
    struct sp_pp_result r;
    size_t n = valid[_i].len ? valid[_i].len : strlen(valid[_i].bytes);
    for (size_t k = 0; k < n; k++) {
        memset(&r, 0x5a, sizeof(r));
        int rc = decode_exact(valid[_i].bytes, k, &r);
        ck_assert_msg(rc == 0, "valid[%d] prefix of %zu/%zu bytes: rc %d", _i, k, n, rc);
        ck_assert_int_eq(r.version, 0x5a5a5a5a); /* untouched */
    }
}
END_TEST

/* ---- malformed ------------------------------------------------------------------------- */

static const struct {
    const char *bytes;
    size_t len;
    int rc;
    const char *why;
} bad[] = {
    {"GET / HTTP/1.1\r\n", 0, -EINVAL, "not a PROXY header"},
    {"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 0, -EINVAL, "lowercase signature"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", 0, -EINVAL, "bare LF"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", 0, -EINVAL, "bare CR"},
    {"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 0, -EINVAL, "double space after PROXY"},
    {"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", 0, -EINVAL, "double space between addresses"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", 0, -EINVAL, "trailing space"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", 0, -EINVAL, "missing port"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8\r\n", 0, -EINVAL, "missing ports"},
    {"PROXY TCP4\r\n", 0, -EINVAL, "no fields"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", 0, -EINVAL, "extra field"},
    {"PROXY\r\n", 0, -EINVAL, "no protocol"},
    {"PROXY \r\n", 0, -EINVAL, "empty protocol"},
    {"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", 0, -EINVAL, "unknown protocol"},
    {"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", 0, -EINVAL, "lowercase protocol"},
    {"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", 0, -EINVAL, "UDP"},
    {"PROXY UNKNOWNX\r\n", 0, -EINVAL, "UNKNOWN with a suffix"},
    {"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", 0, -EINVAL, "octet above 255"},
    {"PROXY TCP4 1.2.3.4 5.6.7.999 1 2\r\n", 0, -EINVAL, "octet above 255 (dst)"},
    {"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", 0, -EINVAL, "three octets"},
    {"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", 0, -EINVAL, "five octets"},
    {"PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", 0, -EINVAL, "empty octet"},
    {"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", 0, -EINVAL, "leading zero octet"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", 0, -EINVAL, "port above 65535"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", 0, -EINVAL, "port 99999"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 1 123456\r\n", 0, -EINVAL, "six-digit port"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", 0, -EINVAL, "leading zero port"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", 0, -EINVAL, "negative port"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", 0, -EINVAL, "signed port"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 0x1 2\r\n", 0, -EINVAL, "hex port"},
    {"PROXY TCP4 ::1 ::1 1 2\r\n", 0, -EINVAL, "IPv6 in TCP4"},
    {"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", 0, -EINVAL, "IPv4 in TCP6"},
    {"PROXY TCP6 ::g ::1 1 2\r\n", 0, -EINVAL, "bad IPv6"},
    {"PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", 0, -EINVAL, "nine groups"},
    {"PROXY TCP6 [::1] ::1 1 2\r\n", 0, -EINVAL, "bracketed IPv6"},
    {"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", 0, -EINVAL, "tab"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\x00\r\n", 33, -EINVAL, "NUL"},
    {"PROXY UNKNOWN xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxx\r\n",
     0, -E2BIG, "108 bytes"},
    {"PROXY UNKNOWN xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
     0, -E2BIG, "no CRLF within 107 bytes"},
    {"\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0B\x21\x11\x00\x00", 16, -EINVAL,
     "bad signature byte"},
    {"\x0D\x0A\x0D\x0B", 4, -EINVAL, "bad signature prefix"},
    {SIG "\x11\x11\x00\x0C", 16, -EINVAL, "version 1 in v2"},
    {SIG "\x31\x11\x00\x0C", 16, -EINVAL, "version 3"},
    {SIG "\x22\x11\x00\x0C", 16, -EINVAL, "command 2"},
    {SIG "\x2F\x11\x00\x0C", 15, -EINVAL, "command 15, before the length"},
    {SIG "\x21\x41\x00\x00", 16, -EINVAL, "family 4"},
    {SIG "\x21\x13\x00\x0C", 16, -EINVAL, "transport 3"},
    {SIG "\x21\x12\x00\x0C", 14, -EINVAL, "INET over DGRAM"},
    {SIG "\x21\x01\x00\x00", 16, -EINVAL, "UNSPEC family, STREAM"},
    {SIG "\x21\x10\x00\x00", 16, -EINVAL, "INET, UNSPEC transport"},
    {SIG "\x21\x11\x00\x0B"
         "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00",
     27, -EINVAL, "INET block of 11"},
    {SIG "\x21\x11\x00\x00", 16, -EINVAL, "INET block of 0"},
    {SIG "\x21\x21\x00\x0C"
         "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02",
     28, -EINVAL, "INET6 block of 12"},
    {SIG "\x21\x31\x00\x0C"
         "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02",
     28, -EINVAL, "UNIX block of 12"},
    {SIG "\x21\x11\x00\x0E"
         "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"
         "\x04\x00",
     30, -EINVAL, "truncated TLV header"},
    {SIG "\x21\x11\x00\x10"
         "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"
         "\x04\x00\x02z",
     32, -EINVAL, "TLV overruns the block"},
    {SIG "\x21\x11\x00\xD9", 16, -E2BIG, "block of 217 > 216"},
    {SIG "\x21\x11\xFF\xFF", 16, -E2BIG, "block of 65535"},
    {SIG "\x20\x00\x01\x00", 16, -E2BIG, "LOCAL block of 256"},
};

START_TEST(malformed)
{
    struct sp_pp_result r;
    size_t n = bad[_i].len ? bad[_i].len : strlen(bad[_i].bytes);
    memset(&r, 0x5a, sizeof(r));
    int rc = decode_exact(bad[_i].bytes, n, &r);
    ck_assert_msg(rc == bad[_i].rc, "%s: rc %d, want %d", bad[_i].why, rc, bad[_i].rc);
    ck_assert_int_eq(r.version, 0x5a5a5a5a);
}
END_TEST

/* A larger cap accepts what the default refuses, and a block past the cap is still refused. */
START_TEST(decode_cap)
{
    char buf[SP_PP_V2_HDR + 300];
    struct sp_pp_result r;
    memcpy(buf, SIG "\x21\x11\x00\xD9", 16);
    memcpy(buf + 16, "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02", 12);
    buf[28] = 0x04; /* NOOP TLV of 202 bytes: 12 + 3 + 202 = 217 */
    buf[29] = 0;
    buf[30] = (char)202;
    memset(buf + 31, 0, 202);
    ck_assert_int_eq(sp_pp_decode(buf, 233, &r), -E2BIG);
    ck_assert_int_eq(sp_pp_decode_max(buf, 233, 300, &r), 233);
    ck_assert(r.has_addr);
    ck_assert_int_eq(sp_pp_decode_max(buf, 100, 300, &r), 0);
    ck_assert_int_eq(sp_pp_decode_max(buf, 233, 216, &r), -E2BIG);
}
END_TEST

/* ---- captured from haproxy 2.6 (send-proxy, send-proxy-v2, check-send-proxy) ------------ */

static const struct {
    const char *file;
    int version;
    size_t hdr_len;
    bool local;
    const char *src, *dst; /* "host port", NULL when no address */
} captured[] = {
    {"proxy_proto/haproxy_v1_tcp4.bin", 1, 44, false, "127.0.0.1 34720", "127.0.0.1 34763"},
    {"proxy_proto/haproxy_v1_tcp6.bin", 1, 32, false, "::1 51316", "::1 42537"},
    {"proxy_proto/haproxy_v2_inet.bin", 2, 28, false, "127.0.0.1 39394", "127.0.0.1 44231"},
    {"proxy_proto/haproxy_v2_inet6.bin", 2, 52, false, "::1 37100", "::1 35685"},
    {"proxy_proto/haproxy_v2_crc32c.bin", 2, 35, false, "127.0.0.1 34926", "127.0.0.1 39821"},
    {"proxy_proto/haproxy_v2_local_check.bin", 2, 16, true, NULL, NULL},
};

START_TEST(haproxy_fixture)
{
    unsigned char buf[512];
    char a[80];
    struct sp_pp_result r;
    size_t n = read_fixture(captured[_i].file, buf, sizeof(buf));

    ck_assert_uint_ge(n, captured[_i].hdr_len);
    ck_assert_int_eq(decode_exact(buf, n, &r), (int)captured[_i].hdr_len);
    ck_assert_int_eq(r.version, captured[_i].version);
    ck_assert(r.local == captured[_i].local);
    /* what haproxy relayed after its header is the client's payload */
    if (n > captured[_i].hdr_len)
        ck_assert_mem_eq(buf + captured[_i].hdr_len, "hello\n", 6);
    for (size_t k = 0; k < captured[_i].hdr_len; k++)
        ck_assert_int_eq(decode_exact(buf, k, &r), 0);
    ck_assert_int_eq(decode_exact(buf, n, &r), (int)captured[_i].hdr_len);
    if (captured[_i].src == NULL) {
        ck_assert(!r.has_addr);
        return;
    }
    ck_assert(r.has_addr);
    ck_assert_str_eq(fmt(&r.src, a, sizeof(a)), captured[_i].src);
    ck_assert_str_eq(fmt(&r.dst, a, sizeof(a)), captured[_i].dst);
}
END_TEST

/* Our encoding of haproxy's addresses is byte-identical to what haproxy sent (no TLVs). */
START_TEST(haproxy_same_bytes)
{
    static const size_t plain[] = {0, 1, 2, 3};
    size_t i = plain[_i];
    unsigned char buf[512];
    char out[SP_PP_ENCODE_MAX];
    struct sp_pp_result r;
    size_t n = read_fixture(captured[i].file, buf, sizeof(buf));

    ck_assert_int_gt(decode_exact(buf, n, &r), 0);
    int len = sp_pp_encode(captured[i].version, (const void *)&r.src, (const void *)&r.dst, out,
                           sizeof(out));
    ck_assert_int_eq(len, (int)captured[i].hdr_len);
    ck_assert_mem_eq(out, buf, captured[i].hdr_len);
}
END_TEST

static Suite *pp_suite(void)
{
    Suite *s = suite_create("proxy_proto");
    TCase *enc = tcase_create("encode");
    tcase_add_loop_test(enc, encode_exact, 0, SP_ARRAY_LEN(vectors));
    tcase_add_loop_test(enc, decode_vectors, 0, SP_ARRAY_LEN(vectors));
    tcase_add_test(enc, encode_errors);
    tcase_add_loop_test(enc, round_trip, 0, 2 * SP_ARRAY_LEN(trips));
    suite_add_tcase(s, enc);

    TCase *dec = tcase_create("decode");
    tcase_add_loop_test(dec, valid_full, 0, SP_ARRAY_LEN(valid));
    tcase_add_loop_test(dec, valid_prefixes, 0, SP_ARRAY_LEN(valid));
    tcase_add_loop_test(dec, malformed, 0, SP_ARRAY_LEN(bad));
    tcase_add_test(dec, decode_cap);
    suite_add_tcase(s, dec);

    TCase *hap = tcase_create("haproxy");
    tcase_add_loop_test(hap, haproxy_fixture, 0, SP_ARRAY_LEN(captured));
    tcase_add_loop_test(hap, haproxy_same_bytes, 0, 4);
    suite_add_tcase(s, hap);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pp_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
