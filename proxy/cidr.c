/* cidr.c: prefix lists for allow/deny (see cidr.h). Linear matching: lists are written by hand
 * in a config and stay short; a trie would be worth it only for thousands of rules. */
#include "cidr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* The length after '/': 1..3 digits, no leading zero, no sign. */
static int parse_len(const char *s, unsigned max, unsigned *out)
{
    unsigned v = 0;
    size_t n = strlen(s);
    if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

static bool host_bits_clear(const uint8_t *a, unsigned prefix, unsigned bytes)
{
    for (unsigned i = prefix / 8; i < bytes; i++) {
        unsigned keep = i == prefix / 8 ? prefix % 8 : 0;
        uint8_t mask = (uint8_t)(0xff >> keep);
        if (a[i] & mask)
            return false;
    }
    return true;
}

int sp_cidr_parse(const char *s, struct sp_cidr *out)
{
    char host[INET6_ADDRSTRLEN];
    const char *slash = strchr(s, '/');
    size_t hl = slash != NULL ? (size_t)(slash - s) : strlen(s);
    struct sp_cidr c;
    unsigned len;

    if (hl == 0 || hl >= sizeof(host))
        return -EINVAL;
    memcpy(host, s, hl);
    host[hl] = '\0';
    memset(&c, 0, sizeof(c));
    /* glibc's inet_pton refuses leading zeros in IPv4 ("010.0.0.1" is octal to some tools) */
    if (inet_pton(AF_INET, host, c.addr) == 1)
        c.family = AF_INET;
    else if (strchr(host, ':') != NULL && inet_pton(AF_INET6, host, c.addr) == 1)
        c.family = AF_INET6;
    else
        return -EINVAL;
    unsigned max = c.family == AF_INET ? 32 : 128;
    len = max;
    if (slash != NULL) {
        int rc = parse_len(slash + 1, max, &len);
        if (rc != 0)
            return rc;
    }
    if (!host_bits_clear(c.addr, len, max / 8))
        return -EDOM;
    c.prefix = (uint8_t)len;
    /* ::ffff:a.b.c.d/96+n is the IPv4 rule a.b.c.d/n, which is how clients are matched */
    if (c.family == AF_INET6 && len >= 96 && memcmp(c.addr, v4_mapped, 12) == 0) {
        memmove(c.addr, c.addr + 12, 4);
        memset(c.addr + 4, 0, 12);
        c.family = AF_INET;
        c.prefix = (uint8_t)(len - 96);
    }
    *out = c;
    return 0;
}

int sp_cidr_list_add(struct sp_cidr_list *l, const char *s)
{
    struct sp_cidr c;
    int rc = sp_cidr_parse(s, &c);
    if (rc != 0)
        return rc;
    if (l->n == l->cap) { /* doubling: n adds cost O(n) copies, not O(n^2) */
        size_t cap = l->cap != 0 ? l->cap * 2 : 8;
        struct sp_cidr *v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = c;
    return 0;
}

static bool in_prefix(const struct sp_cidr *c, const uint8_t *a)
{
    unsigned full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(c->addr, a, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == c->addr[full];
}

bool sp_cidr_match(const struct sp_cidr_list *l, const struct sockaddr *sa)
{
    const uint8_t *a;
    int family;

    if (l == NULL || sa == NULL)
        return false;
    if (sa->sa_family == AF_INET) {
        a = (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
        family = AF_INET;
    } else if (sa->sa_family == AF_INET6) {
        a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
        family = AF_INET6;
        if (memcmp(a, v4_mapped, 12) == 0) {
            a += 12;
            family = AF_INET;
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].family == family && in_prefix(&l->v[i], a))
            return true;
    }
    return false;
}

bool sp_cidr_allowed(const struct sp_cidr_list *allow, const struct sp_cidr_list *deny,
                     const struct sockaddr *sa)
{
    if (sp_cidr_match(deny, sa))
        return false;
    return allow == NULL || allow->n == 0 || sp_cidr_match(allow, sa);
}

const char *sp_cidr_format(const struct sp_cidr *c, char *buf, size_t size)
{
    char a[INET6_ADDRSTRLEN];
    if (inet_ntop(c->family, c->addr, a, sizeof(a)) == NULL)
        snprintf(a, sizeof(a), "?");
    snprintf(buf, size, "%s/%u", a, (unsigned)c->prefix);
    return buf;
}

void sp_cidr_list_deinit(struct sp_cidr_list *l)
{
    if (l == NULL)
        return;
    free(l->v);
    l->v = NULL;
    l->n = 0;
    l->cap = 0;
}
