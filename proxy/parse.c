/* parse.c: the config scalar parsers behind parse.h. Each one validates the whole string before
 * writing its output, so a caller never sees a half-parsed value. */
#include "parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

/* Reads the decimal digits at *s into *out and advances *s past them. Returns -EINVAL when
 * there is no digit, -ERANGE when the number does not fit in 64 bits. */
static int parse_digits(const char **s, uint64_t *out)
{
    const char *p = *s;
    uint64_t v = 0;
    bool overflow = false;

    if (*p < '0' || *p > '9')
        return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            overflow = true; /* keep scanning: junk after the digits is still -EINVAL */
        else
            v = v * 10 + d;
    }
    *s = p;
    *out = v;
    return overflow ? -ERANGE : 0;
}

int sp_parse_duration_ms(const char *s, uint64_t *out)
{
    static const struct {
        const char *suffix;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 60 * 60 * 1000}};
    const char *p = s;
    uint64_t v;
    int rc = parse_digits(&p, &v);

    if (rc == -EINVAL)
        return rc;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(p, units[i].suffix) != 0)
            continue;
        if (rc != 0 || v > INT32_MAX / units[i].ms)
            return -ERANGE;
        *out = v * units[i].ms;
        return 0;
    }
    return -EINVAL;
}

int sp_parse_size(const char *s, uint64_t *out)
{
    const char *p = s;
    uint64_t v, mult = 1;
    int rc = parse_digits(&p, &v);

    if (rc == -EINVAL)
        return rc;
    if (*p != '\0') {
        switch (*p) {
        case 'k':
        case 'K':
            mult = 1024;
            break;
        case 'm':
        case 'M':
            mult = 1024 * 1024;
            break;
        case 'g':
        case 'G':
            mult = 1024 * 1024 * 1024;
            break;
        default:
            return -EINVAL;
        }
        if (p[1] != '\0')
            return -EINVAL;
    }
    if (rc != 0 || v > (SIZE_MAX / 2) / mult)
        return -ERANGE;
    *out = v * mult;
    return 0;
}

int sp_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    const char *p = s;
    uint64_t v;
    int rc = parse_digits(&p, &v);

    if (rc == -EINVAL || *p != '\0')
        return -EINVAL;
    if (rc != 0 || v < min || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

int sp_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

/* Port after the last ':' of an address; "" and signs are -EINVAL, 0 or >65535 is -ERANGE. */
static int parse_port(const char *s, uint16_t *port)
{
    const char *p = s;
    uint64_t v;
    int rc = parse_digits(&p, &v);

    if (rc == -EINVAL || *p != '\0')
        return -EINVAL;
    if (rc != 0 || v == 0 || v > 65535)
        return -ERANGE;
    *port = (uint16_t)v;
    return 0;
}

int sp_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[INET6_ADDRSTRLEN];
    const char *colon;
    size_t hostlen;
    bool v6 = s[0] == '[';
    uint16_t port;

    if (v6) {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':')
            return -EINVAL;
        colon = end + 1;
        s++;
        hostlen = (size_t)(end - s);
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -EINVAL;
        hostlen = (size_t)(colon - s);
        /* an unbracketed IPv6 address would be ambiguous with the port: refuse it */
        if (memchr(s, ':', hostlen) != NULL)
            return -EINVAL;
    }
    if (hostlen == 0 || hostlen >= sizeof(host))
        return -EINVAL;
    memcpy(host, s, hostlen);
    host[hostlen] = '\0';

    /* check the host before the port, so "x:99999" says malformed rather than out of range */
    struct in_addr a4;
    struct in6_addr a6;
    if (v6) {
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return -EINVAL;
    } else if (strcmp(host, "*") == 0) {
        a4.s_addr = htonl(INADDR_ANY);
    } else if (inet_pton(AF_INET, host, &a4) != 1) {
        return -EINVAL;
    }
    int rc = parse_port(colon + 1, &port);
    if (rc != 0)
        return rc;

    memset(ss, 0, sizeof(*ss));
    if (v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        sin6->sin6_addr = a6;
        *len = sizeof(*sin6);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        sin->sin_addr = a4;
        *len = sizeof(*sin);
    }
    return 0;
}

static bool is_alnum(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* RFC 1123 host name rules, see parse.h. */
static bool host_name_ok(const char *s, size_t n)
{
    size_t label = 0;
    bool numeric = true; /* the current label is all digits so far */

    if (n == 0 || n > SP_HOST_NAME_MAX - 1)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
            numeric = true;
        } else if (is_alnum(c) || (c == '-' && label > 0)) {
            if (++label > 63)
                return false;
            numeric = numeric && c >= '0' && c <= '9';
        } else {
            return false;
        }
    }
    return label > 0 && s[n - 1] != '-' && !numeric;
}

int sp_parse_host_port(const char *s, char *host, size_t size, uint16_t *port)
{
    const char *colon = strrchr(s, ':');
    uint16_t p;

    if (colon == NULL || !host_name_ok(s, (size_t)(colon - s)))
        return -EINVAL;
    int rc = parse_port(colon + 1, &p);
    if (rc != 0)
        return rc;
    size_t n = (size_t)(colon - s);
    if (n >= size)
        return -ENOSPC;
    for (size_t i = 0; i < n; i++)
        host[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] - 'A' + 'a' : s[i]);
    host[n] = '\0';
    *port = p;
    return 0;
}

bool sp_parse_is_unix(const char *s)
{
    return strncmp(s, "unix:", 5) == 0;
}

int sp_parse_unix_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    if (!sp_parse_is_unix(s))
        return -EINVAL;
    const char *p = s + 5;
    bool abstract = p[0] == '@';
    const char *name = abstract ? p + 1 : p;
    size_t n = strlen(name);

    if (n == 0)
        return -ENOENT;
    if (!abstract && name[0] != '/')
        return -EDOM;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f)
            return -EILSEQ;
    }
    if (n > SP_UNIX_PATH_MAX)
        return -ENAMETOOLONG;

    memset(ss, 0, sizeof(*ss));
    struct sockaddr_un *un = (struct sockaddr_un *)ss;
    un->sun_family = AF_UNIX;
    /* abstract: sun_path[0] stays NUL and the length counts the name's bytes only */
    memcpy(un->sun_path + (abstract ? 1 : 0), name, n);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    return 0;
}
