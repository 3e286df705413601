/* fuzz_scalars.c: the config scalar parsers (parse.c) and CIDR prefixes (cidr.c), all on the
 * same string: the input up to its first NUL, as YAML hands a value over. Properties:
 *  - each parser accepts only its grammar (checked independently here) and fails without
 *    writing its output;
 *  - parse -> format -> parse gives the same value: durations and sizes as "<n>ms" and "<n>",
 *    integers as decimal, addresses through inet_ntop, CIDRs through sp_cidr_format;
 *  - numeric addresses and host names are disjoint: no string is both, and neither is a
 *    "unix:" address;
 *  - a unix: address is accepted exactly when its path is absolute (or '@' and a name),
 *    non-empty, free of control bytes and at most 107 bytes, and formats back to itself;
 *  - a prefix contains its own network address and its last address, and not the address just
 *    past it. */
#include "cidr.h"
#include "fuzz.h"
#include "parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/un.h>

#define MAX_INPUT 512

static bool digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    return true;
}

static void check_duration(const char *s)
{
    uint64_t v = 0xdead, again;
    char buf[32];
    int rc = sp_parse_duration_ms(s, &v);
    FZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE, "duration rc %d", rc);
    if (rc != 0) {
        FZ_CHECK(v == 0xdead, "duration output written on %d", rc);
        return;
    }
    size_t n = strlen(s), d = strspn(s, "0123456789");
    const char *u = s + d;
    FZ_CHECK(d > 0 && (strcmp(u, "ms") == 0 || strcmp(u, "s") == 0 || strcmp(u, "m") == 0 ||
                       strcmp(u, "h") == 0),
             "duration '%s' accepted", s);
    FZ_CHECK(v <= INT32_MAX, "duration %" PRIu64 " ms", v);
    (void)n;
    snprintf(buf, sizeof(buf), "%" PRIu64 "ms", v);
    FZ_CHECK(sp_parse_duration_ms(buf, &again) == 0 && again == v, "duration '%s' round trip", s);
}

static void check_size(const char *s)
{
    uint64_t v = 0xdead, again;
    char buf[32];
    int rc = sp_parse_size(s, &v);
    FZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE, "size rc %d", rc);
    if (rc != 0) {
        FZ_CHECK(v == 0xdead, "size output written on %d", rc);
        return;
    }
    size_t n = strlen(s), d = strspn(s, "0123456789");
    FZ_CHECK(d > 0 && (d == n || (d + 1 == n && strchr("kKmMgG", s[d]) != NULL)),
             "size '%s' accepted", s);
    FZ_CHECK(v <= SIZE_MAX / 2, "size %" PRIu64, v);
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    FZ_CHECK(sp_parse_size(buf, &again) == 0 && again == v, "size '%s' round trip", s);
}

static void check_uint(const char *s, uint64_t min, uint64_t max)
{
    uint64_t v = 0xdead, again;
    char buf[32];
    int rc = sp_parse_uint(s, min, max, &v);
    FZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE, "uint rc %d", rc);
    FZ_CHECK(rc != -EINVAL || !digits(s, strlen(s)), "digits '%s' called malformed", s);
    if (rc != 0) {
        FZ_CHECK(v == 0xdead, "uint output written on %d", rc);
        return;
    }
    FZ_CHECK(digits(s, strlen(s)), "uint '%s' accepted", s);
    FZ_CHECK(v >= min && v <= max, "%" PRIu64 " outside %" PRIu64 "..%" PRIu64, v, min, max);
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    FZ_CHECK(sp_parse_uint(buf, min, max, &again) == 0 && again == v, "uint '%s' round trip", s);
}

static void check_bool(const char *s)
{
    bool v;
    static const char *const words[] = {"true", "false", "yes", "no", "on", "off"};
    int rc = sp_parse_bool(s, &v);
    bool known = false;
    for (size_t i = 0; i < 6; i++)
        known = known || strcasecmp(s, words[i]) == 0;
    FZ_CHECK((rc == 0) == known, "bool '%s': %d", s, rc);
}

/* Formats an address as the config writes it: "a.b.c.d:port" or "[v6]:port". */
static void format_addr(const struct sockaddr_storage *ss, char *buf, size_t size)
{
    char a[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)ss;
        inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
        snprintf(buf, size, "%s:%u", a, ntohs(in->sin_port));
    } else {
        const struct sockaddr_in6 *in6 = (const void *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a));
        snprintf(buf, size, "[%s]:%u", a, ntohs(in6->sin6_port));
    }
}

static void check_addr(const char *s)
{
    struct sockaddr_storage ss, again;
    socklen_t len = 0, len2;
    char buf[80], host[SP_HOST_NAME_MAX];
    uint16_t port = 0;
    int rc = sp_parse_addr(s, &ss, &len);
    int hn = sp_parse_host_port(s, host, sizeof(host), &port);
    FZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE, "addr rc %d", rc);
    FZ_CHECK(hn == 0 || hn == -EINVAL || hn == -ERANGE, "host rc %d", hn);
    FZ_CHECK(!(rc == 0 && hn == 0), "'%s' is both an address and a host name", s);
    if (hn == 0) {
        size_t n = strlen(host);
        FZ_CHECK(port > 0 && n > 0 && n < SP_HOST_NAME_MAX, "host '%s' port %u", host, port);
        FZ_CHECK(strncasecmp(s, host, n) == 0 && s[n] == ':', "host '%s' from '%s'", host, s);
        char *line = malloc(n + 8);
        if (line == NULL)
            abort();
        snprintf(line, n + 8, "%s:%u", host, port);
        char h2[SP_HOST_NAME_MAX];
        uint16_t p2;
        FZ_CHECK(sp_parse_host_port(line, h2, sizeof(h2), &p2) == 0 && strcmp(h2, host) == 0 &&
                     p2 == port,
                 "host '%s' round trip", s);
        FZ_CHECK(sp_parse_host_port(s, h2, n, &p2) == -ENOSPC, "no -ENOSPC for '%s'", s);
        free(line);
    }
    if (rc != 0)
        return;
    FZ_CHECK(
        len == (ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)),
        "addr length %u", (unsigned)len);
    format_addr(&ss, buf, sizeof(buf));
    FZ_CHECK(sp_parse_addr(buf, &again, &len2) == 0 && len2 == len && memcmp(&ss, &again, len) == 0,
             "addr '%s' -> '%s' round trip", s, buf);
}

/* An IPv6 address in ::ffff:0:0/96 is matched as the IPv4 address it carries (cidr.h), so an
 * IPv6 rule says nothing about it. */
static bool v4_mapped(const struct sockaddr *sa, const uint8_t *a)
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return sa->sa_family == AF_INET6 && memcmp(a, prefix, 12) == 0;
}

static void expect_match(const struct sp_cidr_list *l, const struct sockaddr *sa, const uint8_t *a,
                         bool want, const char *s, const char *what)
{
    if (v4_mapped(sa, a))
        return;
    FZ_CHECK(sp_cidr_match(l, sa) == want, "'%s' %s %s", s, want ? "misses" : "matches", what);
}

static void check_cidr(const char *s)
{
    struct sp_cidr c, again;
    char buf[SP_CIDR_STR_MAX];
    memset(&c, 0xa5, sizeof(c));
    int rc = sp_cidr_parse(s, &c);
    FZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE || rc == -EDOM, "cidr rc %d", rc);
    if (rc != 0) {
        struct sp_cidr_list bad = {0};
        FZ_CHECK(sp_cidr_list_add(&bad, s) == rc && bad.n == 0 && bad.v == NULL,
                 "a refused '%s' changed the list", s);
        return;
    }
    unsigned bits = c.family == AF_INET ? 32 : 128;
    FZ_CHECK((c.family == AF_INET || c.family == AF_INET6) && c.prefix <= bits, "cidr %u/%u",
             c.family, c.prefix);
    sp_cidr_format(&c, buf, sizeof(buf));
    FZ_CHECK(sp_cidr_parse(buf, &again) == 0 && again.family == c.family &&
                 again.prefix == c.prefix && memcmp(again.addr, c.addr, bits / 8) == 0,
             "cidr '%s' -> '%s' round trip", s, buf);

    struct sp_cidr_list l = {0};
    FZ_CHECK(sp_cidr_list_add(&l, s) == 0 && l.n == 1, "cidr list add '%s'", s);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    uint8_t *a;
    if (c.family == AF_INET) {
        ss.ss_family = AF_INET;
        a = (uint8_t *)&((struct sockaddr_in *)&ss)->sin_addr;
    } else {
        ss.ss_family = AF_INET6;
        a = ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr;
    }
    const struct sockaddr *sa = (const struct sockaddr *)&ss;
    memcpy(a, c.addr, bits / 8);
    expect_match(&l, sa, a, true, s, "its network");
    if (c.family == AF_INET) {
        /* a dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d: the same rule matches */
        struct sockaddr_in6 m;
        memset(&m, 0, sizeof(m));
        m.sin6_family = AF_INET6;
        m.sin6_addr.s6_addr[10] = m.sin6_addr.s6_addr[11] = 0xff;
        memcpy(&m.sin6_addr.s6_addr[12], a, 4);
        FZ_CHECK(sp_cidr_match(&l, (const struct sockaddr *)&m), "'%s' misses ::ffff: form", s);
    }
    struct sockaddr un = {.sa_family = AF_UNIX};
    FZ_CHECK(!sp_cidr_match(&l, &un), "'%s' matches an AF_UNIX address", s);
    if (!v4_mapped(sa, a))
        FZ_CHECK(sp_cidr_allowed(&l, NULL, sa) && !sp_cidr_allowed(NULL, &l, sa) &&
                     !sp_cidr_allowed(&l, &l, sa),
                 "'%s': allow/deny of its network", s);
    /* the last address inside: every host bit set */
    for (unsigned b = c.prefix; b < bits; b++)
        a[b / 8] |= (uint8_t)(0x80 >> (b % 8));
    expect_match(&l, sa, a, true, s, "its last address");
    /* one past it (when there is one) lies outside */
    unsigned i = bits / 8;
    while (i > 0 && a[i - 1] == 0xff)
        a[--i] = 0;
    if (i > 0 && c.prefix > 0) {
        a[i - 1]++;
        expect_match(&l, sa, a, false, s, "the address past its end");
    }
    sp_cidr_list_deinit(&l);
}

static void check_unix(const char *s)
{
    struct sockaddr_storage ss, again;
    socklen_t len = 0xdead, len2;
    char buf[MAX_INPUT + 8];
    memset(&ss, 0xa5, sizeof(ss));
    int rc = sp_parse_unix_addr(s, &ss, &len);
    FZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOENT || rc == -EDOM || rc == -EILSEQ ||
                 rc == -ENAMETOOLONG,
             "unix rc %d", rc);
    bool prefixed = strncmp(s, "unix:", 5) == 0;
    FZ_CHECK(sp_parse_is_unix(s) == prefixed, "unix prefix of '%s'", s);
    FZ_CHECK((rc == -EINVAL) == !prefixed, "unix '%s': rc %d", s, rc);
    if (prefixed) {
        struct sockaddr_storage x;
        socklen_t xl;
        char host[SP_HOST_NAME_MAX];
        uint16_t port;
        FZ_CHECK(sp_parse_addr(s, &x, &xl) != 0, "'%s' both unix and numeric", s);
        FZ_CHECK(sp_parse_host_port(s, host, sizeof(host), &port) != 0 || rc != 0,
                 "'%s' both unix and a host name", s);
    }
    if (rc != 0) {
        FZ_CHECK(len == 0xdead && ((unsigned char *)&ss)[0] == 0xa5, "unix output written on %d",
                 rc);
        return;
    }
    const char *name = s[5] == '@' ? s + 6 : s + 5;
    size_t n = strlen(name);
    FZ_CHECK(n >= 1 && n <= SP_UNIX_PATH_MAX && (s[5] == '@' || name[0] == '/'),
             "unix '%s' accepted", s);
    for (size_t i = 0; i < n; i++)
        FZ_CHECK((unsigned char)name[i] >= 0x20 && name[i] != 0x7f, "control byte in '%s'", s);
    const struct sockaddr_un *un = (const void *)&ss;
    FZ_CHECK(un->sun_family == AF_UNIX, "unix family");
    FZ_CHECK(len == offsetof(struct sockaddr_un, sun_path) + 1 + n, "unix len %u", (unsigned)len);
    if (un->sun_path[0] == '\0')
        snprintf(buf, sizeof(buf), "unix:@%.*s", (int)n, un->sun_path + 1);
    else
        snprintf(buf, sizeof(buf), "unix:%s", un->sun_path);
    FZ_CHECK(strcmp(buf, s) == 0, "unix '%s' formats as '%s'", s, buf);
    FZ_CHECK(sp_parse_unix_addr(buf, &again, &len2) == 0 && len2 == len &&
                 memcmp(&ss, &again, sizeof(ss)) == 0,
             "unix '%s' round trip", s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        return 0;
    /* a C string: what follows a NUL would never reach a parser */
    size_t n = strnlen((const char *)data, size);
    char *s = fz_str(data, n);
    uint64_t a = n > 0 ? (uint64_t)(unsigned char)s[0] * 977 : 0, b = a + (uint64_t)n * 65537;
    check_duration(s);
    check_size(s);
    check_uint(s, 0, UINT64_MAX);
    check_uint(s, a, b);
    check_bool(s);
    check_addr(s);
    check_unix(s);
    check_cidr(s);
    free(s);
    return 0;
}
