/* test_tls_sni.c: the ClientHello SNI parser against real ClientHellos captured from openssl
 * s_client and curl (tests/fixtures/tls/README.md), every proper prefix (need more), the same
 * hellos cut into several records, corrupted lengths, synthetic hellos for the host name rules,
 * and the route matcher. Each parse reads a heap buffer of exactly the bytes given, so ASan
 * catches any over-read. */
#include "common.h"
#include "tls_sni.h"

#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAP (SP_SNI_BUF_MAX + 64)

static int parse_exact(const unsigned char *buf, size_t len, char *name, size_t name_len)
{
    unsigned char *copy = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, buf, len);
    int rc = sp_sni_parse(copy, len, name, name_len);
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

static const struct {
    const char *file;
    int rc;
    const char *name;
} captured[] = {
    {"tls/openssl_sni.bin", 1, "www.example.com"},                /* TLS 1.3 */
    {"tls/openssl_tls12_upper.bin", 1, "mixed.case.example.net"}, /* -tls1_2, mixed case */
    {"tls/curl_sni.bin", 1, "api.example.org"},                   /* padded to 512 */
    {"tls/openssl_nosni.bin", -ENOENT, NULL},                     /* -noservername */
    /* names that are not host names route as no SNI (issue 9, item 8) */
    {"tls/openssl_ip_literal.bin", -ENOENT, NULL},   /* -servername 10.0.0.1 */
    {"tls/openssl_trailing_dot.bin", -ENOENT, NULL}, /* -servername www.example.com. */
};

static unsigned char fx[CAP];

static size_t load(int i)
{
    size_t n = read_fixture(captured[i].file, fx, sizeof(fx));
    ck_assert_uint_gt(n, 5);
    /* each capture is exactly one record: what the client sent before waiting for a reply */
    ck_assert_uint_eq(n, 5 + ((size_t)fx[3] << 8 | fx[4]));
    return n;
}

static void assert_result(int rc, const char *name, int i)
{
    ck_assert_int_eq(rc, captured[i].rc);
    if (rc == 1)
        ck_assert_str_eq(name, captured[i].name);
}

START_TEST(real_hello)
{
    char name[SP_SNI_NAME_MAX];
    size_t n = load(_i);
    assert_result(parse_exact(fx, n, name, sizeof(name)), name, _i);
    /* bytes after the hello (the client's next record) change nothing */
    memcpy(fx + n, "\x14\x03\x03\x00\x01\x01", 6);
    assert_result(parse_exact(fx, n + 6, name, sizeof(name)), name, _i);
}
END_TEST

START_TEST(real_prefixes)
{
    char name[SP_SNI_NAME_MAX];
    size_t n = load(_i);
    for (size_t k = 0; k < n; k++) {
        strcpy(name, "untouched");
        int rc = parse_exact(fx, k, name, sizeof(name));
        ck_assert_msg(rc == 0, "%s: prefix %zu/%zu: rc %d", captured[_i].file, k, n, rc);
        ck_assert_str_eq(name, "untouched");
    }
}
END_TEST

/* Re-records a single-record hello into records of at most `frag` payload bytes. */
static size_t refragment(const unsigned char *in, size_t n, size_t frag, unsigned char *out)
{
    size_t o = 0;
    for (size_t i = 5; i < n; i += frag) {
        size_t c = SP_MIN(frag, n - i);
        out[o++] = 0x16;
        out[o++] = in[1];
        out[o++] = in[2];
        out[o++] = (unsigned char)(c >> 8);
        out[o++] = (unsigned char)c;
        memcpy(out + o, in + i, c);
        o += c;
    }
    return o;
}

/* The same hellos cut into 2, 3 and 4 records; 20 is more records than the parser takes. */
START_TEST(fragmented)
{
    static const size_t parts[] = {2, 3, 4, 20};
    unsigned char out[CAP];
    char name[SP_SNI_NAME_MAX];
    size_t n = load(_i);

    for (size_t p = 0; p < SP_ARRAY_LEN(parts); p++) {
        size_t frag = (n - 5 + parts[p] - 1) / parts[p];
        size_t m = refragment(fx, n, frag, out);
        ck_assert_uint_eq(m, n + 5 * (parts[p] - 1));
        int rc = parse_exact(out, m, name, sizeof(name));
        if (parts[p] > SP_SNI_MAX_RECORDS) {
            ck_assert_int_eq(rc, -EINVAL);
            continue;
        }
        assert_result(rc, name, _i);
        for (size_t k = 0; k < m; k++)
            ck_assert_int_eq(parse_exact(out, k, name, sizeof(name)), 0);
    }
}
END_TEST

/* Splits where the handshake header straddles records: 2 + 2 bytes, then the rest in two. */
START_TEST(fragmented_header)
{
    unsigned char out[CAP];
    char name[SP_SNI_NAME_MAX];
    size_t n = load(0), body = n - 5, o = 0;
    size_t cuts[] = {2, 2, (body - 4) / 2, body - 4 - (body - 4) / 2};

    for (size_t i = 0, at = 5; i < 4; at += cuts[i], i++) {
        memcpy(out + o, "\x16\x03\x01", 3);
        out[o + 3] = (unsigned char)(cuts[i] >> 8);
        out[o + 4] = (unsigned char)cuts[i];
        memcpy(out + o + 5, fx + at, cuts[i]);
        o += 5 + cuts[i];
    }
    ck_assert_int_eq(parse_exact(out, o, name, sizeof(name)), 1);
    ck_assert_str_eq(name, "www.example.com");
    /* a non-handshake record before the hello is complete */
    out[5 + 2] = 0x17;
    ck_assert_int_eq(parse_exact(out, o, name, sizeof(name)), -EINVAL);
}
END_TEST

/* ---- corruptions of a real hello -------------------------------------------------------- */

enum { REC_LEN = 3, HS_TYPE = 5, HS_LEN = 6, SID_LEN = 43 };

START_TEST(corrupted)
{
    char name[SP_SNI_NAME_MAX];
    size_t n = load(0);
    unsigned char *b = fx;
    size_t hl = (size_t)b[HS_LEN] << 16 | (size_t)b[HS_LEN + 1] << 8 | b[HS_LEN + 2];

    switch (_i) {
    case 0: /* not a handshake record */
        b[0] = 0x17;
        break;
    case 1: /* SSL 2 / not TLS */
        b[1] = 0x02;
        break;
    case 2: /* record version 3.9 */
        b[2] = 0x09;
        break;
    case 3: /* empty record */
        b[REC_LEN] = 0;
        b[REC_LEN + 1] = 0;
        break;
    case 4: /* record longer than 2^14 */
        b[REC_LEN] = 0x40;
        b[REC_LEN + 1] = 0x01;
        break;
    case 5: /* ServerHello instead of ClientHello */
        b[HS_TYPE] = 2;
        break;
    case 6: /* handshake length one short: the extensions overrun the hello */
        b[HS_LEN + 2] = (unsigned char)(hl - 1);
        break;
    case 7: /* handshake length over the cap */
        b[HS_LEN] = 0x01;
        break;
    case 8: /* session id longer than 32 */
        b[SID_LEN] = 33;
        break;
    case 9: /* session id length past the end */
        b[SID_LEN] = 0xff;
        break;
    case 10: /* an odd cipher suites length */
        b[SID_LEN + 1 + b[SID_LEN] + 1] |= 1;
        break;
    case 11: /* legacy_version major not 3 */
        b[9] = 2;
        break;
    }
    int rc = parse_exact(b, n, name, sizeof(name));
    ck_assert_msg(rc == -EINVAL, "corruption %d: rc %d", _i, rc);
}
END_TEST

/* ---- synthetic hellos --------------------------------------------------------------------- */

static size_t put16(unsigned char *p, size_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
    return 2;
}

/* A server_name extension holding one host_name entry. */
static size_t sni_ext(unsigned char *p, const char *name, size_t nl)
{
    size_t o = put16(p, 0);
    o += put16(p + o, nl + 5);
    o += put16(p + o, nl + 3);
    p[o++] = 0;
    o += put16(p + o, nl);
    memcpy(p + o, name, nl);
    return o + nl;
}

/* Record + handshake header + a minimal ClientHello carrying exts[0..elen) as its extensions
 * block (with_exts false: no extensions block at all). */
static size_t hello(unsigned char *out, const unsigned char *exts, size_t elen, bool with_exts)
{
    unsigned char body[2048];
    size_t o = 0;
    body[o++] = 3;
    body[o++] = 3;
    memset(body + o, 0xab, 32);
    o += 32;
    body[o++] = 0;                /* session id */
    o += put16(body + o, 2);      /* cipher suites */
    o += put16(body + o, 0x1301); /* TLS_AES_128_GCM_SHA256 */
    body[o++] = 1;                /* compression methods */
    body[o++] = 0;                /* null */
    if (with_exts) {
        o += put16(body + o, elen);
        if (elen > 0) /* exts may be NULL then, and memcpy's arguments must not be */
            memcpy(body + o, exts, elen);
        o += elen;
    }
    out[0] = 0x16;
    out[1] = 3;
    out[2] = 1;
    put16(out + 3, o + 4);
    out[5] = 1;
    out[6] = (unsigned char)(o >> 16);
    put16(out + 7, o & 0xffff);
    memcpy(out + 9, body, o);
    return o + 9;
}

static const struct {
    const char *name;
    int rc;
    const char *want;
} names[] = {
    {"example.com", 1, "example.com"},
    {"EXAMPLE.Com", 1, "example.com"},
    {"a", 1, "a"},
    {"localhost", 1, "localhost"},
    {"my_host.internal", 1, "my_host.internal"},
    {"xn--bcher-kva.example", 1, "xn--bcher-kva.example"},
    {"a-b.c-d.e1", 1, "a-b.c-d.e1"},
    {"1.2.3.com", 1, "1.2.3.com"},
    /* Not host names (issue 9, item 8): TLS servers accept such hellos, so they are routed as
     * hellos without SNI (-ENOENT, the default route), not refused as malformed. */
    {"10.0.0.1", -ENOENT, NULL},
    {"123", -ENOENT, NULL},
    {"::1", -ENOENT, NULL},
    {"2001:db8::1", -ENOENT, NULL},
    {"[::1]", -ENOENT, NULL},
    {"example.com.", -ENOENT, NULL},
    {"www.example.com.", -ENOENT, NULL},
    {".example.com", -ENOENT, NULL},
    {"a..b", -ENOENT, NULL},
    {"exa mple.com", -ENOENT, NULL},
    {"exa\x01mple.com", -ENOENT, NULL},
    {"caf\xc3\xa9.fr", -ENOENT, NULL},
    {"*.example.com", -ENOENT, NULL},
    {"example.com:443", -ENOENT, NULL},
};

START_TEST(host_names)
{
    unsigned char ext[512], buf[1024];
    char name[SP_SNI_NAME_MAX];
    size_t el = sni_ext(ext, names[_i].name, strlen(names[_i].name));
    size_t n = hello(buf, ext, el, true);
    int rc = parse_exact(buf, n, name, sizeof(name));
    ck_assert_msg(rc == names[_i].rc, "'%s': rc %d", names[_i].name, rc);
    if (rc == 1)
        ck_assert_str_eq(name, names[_i].want);
}
END_TEST

START_TEST(host_lengths)
{
    unsigned char ext[512], buf[1024];
    char long_name[300], name[SP_SNI_NAME_MAX];

    /* 63-character labels are fine, 64 are not */
    memset(long_name, 'a', 63);
    strcpy(long_name + 63, ".com");
    size_t n = hello(buf, ext, sni_ext(ext, long_name, strlen(long_name)), true);
    ck_assert_int_eq(parse_exact(buf, n, name, sizeof(name)), 1);
    memset(long_name, 'a', 64);
    strcpy(long_name + 64, ".com");
    n = hello(buf, ext, sni_ext(ext, long_name, strlen(long_name)), true);
    ck_assert_int_eq(parse_exact(buf, n, name, sizeof(name)), -ENOENT);

    /* 253 characters in all are fine, 254 are not */
    for (int i = 0; i < 253; i++)
        long_name[i] = i % 2 ? '.' : 'a';
    long_name[252] = 'z';
    n = hello(buf, ext, sni_ext(ext, long_name, 253), true);
    ck_assert_int_eq(parse_exact(buf, n, name, sizeof(name)), 1);
    ck_assert_uint_eq(strlen(name), 253);
    /* a buffer too small for a valid name */
    ck_assert_int_eq(parse_exact(buf, n, name, 253), -ENOSPC);
    long_name[252] = 'z';
    long_name[253] = 'z';
    n = hello(buf, ext, sni_ext(ext, long_name, 254), true);
    ck_assert_int_eq(parse_exact(buf, n, name, sizeof(name)), -ENOENT);
}
END_TEST

/* Extension-level cases: ENOENT for hellos without a host name, EINVAL for broken vectors. */
START_TEST(extensions)
{
    unsigned char ext[512], buf[1024];
    char name[SP_SNI_NAME_MAX];
    size_t el, n;

    /* no extensions block at all (TLS 1.2 allows it) */
    n = hello(buf, NULL, 0, false);
    ck_assert_int_eq(parse_exact(buf, n, name, sizeof(name)), -ENOENT);
    /* an empty extensions block */
    n = hello(buf, NULL, 0, true);
    ck_assert_int_eq(parse_exact(buf, n, name, sizeof(name)), -ENOENT);
    /* other extensions only: supported_versions */
    memcpy(ext, "\x00\x2b\x00\x03\x02\x03\x04", 7);
    n = hello(buf, ext, 7, true);
    ck_assert_int_eq(parse_exact(buf, n, name, sizeof(name)), -ENOENT);
    /* a server_name with a name type other than host_name only */
    memcpy(ext, "\x00\x00\x00\x06\x00\x04\x01\x00\x01x", 10);
    n = hello(buf, ext, 10, true);
    ck_assert_int_eq(parse_exact(buf, n, name, sizeof(name)), -ENOENT);
    /* ...and one followed by a host_name */
    memcpy(ext, "\x00\x00\x00\x0a\x00\x08\x01\x00\x01x\x00\x00\x01y", 14);
    n = hello(buf, ext, 14, true);
    ck_assert_int_eq(parse_exact(buf, n, name, sizeof(name)), 1);
    ck_assert_str_eq(name, "y");

    /* two host_name entries */
    memcpy(ext, "\x00\x00\x00\x0a\x00\x08\x00\x00\x01x\x00\x00\x01y", 14);
    n = hello(buf, ext, 14, true);
    ck_assert_int_eq(parse_exact(buf, n, name, sizeof(name)), -EINVAL);
    /* two server_name extensions */
    el = sni_ext(ext, "a.com", 5);
    el += sni_ext(ext + el, "b.com", 5);
    n = hello(buf, ext, el, true);
    ck_assert_int_eq(parse_exact(buf, n, name, sizeof(name)), -EINVAL);
    /* an empty host name */
    memcpy(ext, "\x00\x00\x00\x05\x00\x03\x00\x00\x00", 9);
    n = hello(buf, ext, 9, true);
    ck_assert_int_eq(parse_exact(buf, n, name, sizeof(name)), -EINVAL);
    /* a server name list longer than its extension */
    memcpy(ext, "\x00\x00\x00\x06\x00\x05\x00\x00\x01x", 10);
    n = hello(buf, ext, 10, true);
    ck_assert_int_eq(parse_exact(buf, n, name, sizeof(name)), -EINVAL);
    /* a server name list shorter than its extension (bytes left over) */
    memcpy(ext, "\x00\x00\x00\x07\x00\x04\x00\x00\x01xz", 11);
    n = hello(buf, ext, 11, true);
    ck_assert_int_eq(parse_exact(buf, n, name, sizeof(name)), -EINVAL);
    /* an extension whose length runs past the block */
    memcpy(ext, "\x00\x2b\x00\x09\x02\x03\x04", 7);
    n = hello(buf, ext, 7, true);
    ck_assert_int_eq(parse_exact(buf, n, name, sizeof(name)), -EINVAL);
    /* a dangling byte after the last extension */
    el = sni_ext(ext, "a.com", 5);
    ext[el++] = 0;
    n = hello(buf, ext, el, true);
    ck_assert_int_eq(parse_exact(buf, n, name, sizeof(name)), -EINVAL);
    /* the valid one, for contrast, and its prefixes */
    el = sni_ext(ext, "a.com", 5);
    n = hello(buf, ext, el, true);
    ck_assert_int_eq(parse_exact(buf, n, name, sizeof(name)), 1);
    for (size_t k = 0; k < n; k++)
        ck_assert_int_eq(parse_exact(buf, k, name, sizeof(name)), 0);
}
END_TEST

START_TEST(early_reject)
{
    char name[SP_SNI_NAME_MAX];
    /* the first bytes of other protocols are refused without waiting for more */
    ck_assert_int_eq(parse_exact((const unsigned char *)"G", 1, name, sizeof(name)), -EINVAL);
    ck_assert_int_eq(parse_exact((const unsigned char *)"\x16\x02", 2, name, sizeof(name)),
                     -EINVAL);
    ck_assert_int_eq(
        parse_exact((const unsigned char *)"\x16\x03\x01\x00\x10\x02", 6, name, sizeof(name)),
        -EINVAL);
    ck_assert_int_eq(parse_exact((const unsigned char *)"\x16", 1, name, sizeof(name)), 0);
    ck_assert_int_eq(parse_exact((const unsigned char *)"", 0, name, sizeof(name)), 0);
}
END_TEST

/* ---- routes ----------------------------------------------------------------------------- */

static const struct {
    const char *pattern;
    int rc;
} patterns[] = {
    {"example.com", 0},
    {"*.example.com", 0},
    {"A.Example.COM", 0},
    {"localhost", 0},
    {"*.com", 0},
    {"*", -EINVAL},
    {"*.", -EINVAL},
    {"*example.com", -EINVAL},
    {"a.*.com", -EINVAL},
    {"**.com", -EINVAL},
    {"*.*.com", -EINVAL},
    {"", -EINVAL},
    {"foo..com", -EINVAL},
    {"foo.com.", -EINVAL},
    {".foo.com", -EINVAL},
    {"10.0.0.1", -EINVAL},
    {"exa mple.com", -EINVAL},
};

START_TEST(pattern_check)
{
    ck_assert_msg(sp_sni_pattern_check(patterns[_i].pattern) == patterns[_i].rc, "'%s'",
                  patterns[_i].pattern);
}
END_TEST

START_TEST(route_table)
{
    struct sp_sni_routes r = {0};
    ck_assert_int_eq(sp_sni_routes_add(&r, "*.example.com", 0), 0);
    ck_assert_int_eq(sp_sni_routes_add(&r, "*.api.example.com", 1), 0);
    ck_assert_int_eq(sp_sni_routes_add(&r, "Www.Example.Com", 2), 0);
    ck_assert_int_eq(sp_sni_routes_add(&r, "example.com", 3), 0);
    ck_assert_int_eq(sp_sni_routes_add(&r, "*.com", 4), 0);
    ck_assert_int_eq(sp_sni_routes_add(&r, "other.net", 5), 0);
    /* refused additions leave the table as it was */
    ck_assert_int_eq(sp_sni_routes_add(&r, "WWW.example.com", 9), -EEXIST);
    ck_assert_int_eq(sp_sni_routes_add(&r, "*.EXAMPLE.com", 9), -EEXIST);
    ck_assert_int_eq(sp_sni_routes_add(&r, "a.*.com", 9), -EINVAL);
    ck_assert_int_eq(sp_sni_routes_add(&r, "ok.com", -1), -EINVAL);
    ck_assert_uint_eq(r.n, 6);
    ck_assert_str_eq(r.v[2].pattern, "www.example.com");

    ck_assert_int_eq(sp_sni_routes_match(&r, "www.example.com"), 2); /* exact over wildcard */
    ck_assert_int_eq(sp_sni_routes_match(&r, "WWW.EXAMPLE.COM"), 2);
    ck_assert_int_eq(sp_sni_routes_match(&r, "example.com"), 3); /* not *.example.com */
    ck_assert_int_eq(sp_sni_routes_match(&r, "a.example.com"), 0);
    ck_assert_int_eq(sp_sni_routes_match(&r, "a.b.example.com"), 0);    /* any depth */
    ck_assert_int_eq(sp_sni_routes_match(&r, "v1.api.example.com"), 1); /* longest suffix */
    ck_assert_int_eq(sp_sni_routes_match(&r, "api.example.com"), 0);
    ck_assert_int_eq(sp_sni_routes_match(&r, "foo.com"), 4);
    ck_assert_int_eq(sp_sni_routes_match(&r, "notexample.com"), 4); /* a label, not a suffix */
    ck_assert_int_eq(sp_sni_routes_match(&r, "com"), -1);
    ck_assert_int_eq(sp_sni_routes_match(&r, "other.net"), 5);
    ck_assert_int_eq(sp_sni_routes_match(&r, "x.other.net"), -1);
    ck_assert_int_eq(sp_sni_routes_match(&r, "example.org"), -1);
    ck_assert_int_eq(sp_sni_routes_match(&r, ""), -1);
    ck_assert_int_eq(sp_sni_routes_match(&r, NULL), -1);
    sp_sni_routes_deinit(&r);
    ck_assert_uint_eq(r.n, 0);
    ck_assert_int_eq(sp_sni_routes_match(&r, "example.com"), -1);
    sp_sni_routes_deinit(&r);
    sp_sni_routes_deinit(NULL);
}
END_TEST

/* Order of insertion does not matter: the longest wildcard wins from either side. */
START_TEST(route_order)
{
    struct sp_sni_routes r = {0};
    ck_assert_int_eq(sp_sni_routes_add(&r, "*.b.c", 1), 0);
    ck_assert_int_eq(sp_sni_routes_add(&r, "*.c", 0), 0);
    ck_assert_int_eq(sp_sni_routes_match(&r, "a.b.c"), 1);
    ck_assert_int_eq(sp_sni_routes_match(&r, "a.x.c"), 0);
    sp_sni_routes_deinit(&r);
}
END_TEST

static Suite *sni_suite(void)
{
    Suite *s = suite_create("tls_sni");
    TCase *real = tcase_create("captured");
    tcase_add_loop_test(real, real_hello, 0, SP_ARRAY_LEN(captured));
    tcase_add_loop_test(real, real_prefixes, 0, SP_ARRAY_LEN(captured));
    tcase_add_loop_test(real, fragmented, 0, SP_ARRAY_LEN(captured));
    tcase_add_test(real, fragmented_header);
    tcase_add_loop_test(real, corrupted, 0, 12);
    suite_add_tcase(s, real);

    TCase *syn = tcase_create("synthetic");
    tcase_add_loop_test(syn, host_names, 0, SP_ARRAY_LEN(names));
    tcase_add_test(syn, host_lengths);
    tcase_add_test(syn, extensions);
    tcase_add_test(syn, early_reject);
    suite_add_tcase(s, syn);

    TCase *routes = tcase_create("routes");
    tcase_add_loop_test(routes, pattern_check, 0, SP_ARRAY_LEN(patterns));
    tcase_add_test(routes, route_table);
    tcase_add_test(routes, route_order);
    suite_add_tcase(s, routes);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sni_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
