/* proxy_proto.c: PROXY protocol v1/v2 encoder and strict incremental decoder (see
 * proxy_proto.h). Written from haproxy's doc/proxy-protocol.txt; no code taken from anywhere. */
#include "proxy_proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define V1_SIG     "PROXY "
#define V1_SIG_LEN 6
#define V4_STR_MAX 15 /* 255.255.255.255 */
#define V6_STR_MAX 45 /* ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 */
#define PORT_MAX   5

#define V2_CMD_LOCAL  0x0
#define V2_CMD_PROXY  0x1
#define V2_AF_UNSPEC  0x0
#define V2_AF_INET    0x1
#define V2_AF_INET6   0x2
#define V2_AF_UNIX    0x3
#define V2_TP_UNSPEC  0x0
#define V2_TP_STREAM  0x1
#define V2_TP_DGRAM   0x2
#define V2_INET_LEN   12  /* two IPv4 addresses, two ports */
#define V2_INET6_LEN  36  /* two IPv6 addresses, two ports */
#define V2_UNIX_LEN   216 /* two 108-byte paths */
#define V2_TLV_HDR    3   /* type, 16-bit length */
#define V2_VERSION_HI 0x20

static const unsigned char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* ---- encoding --------------------------------------------------------------------------- */

static bool is_inet(const struct sockaddr *sa)
{
    return sa != NULL && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6);
}

/* Any inet address as IPv6, an IPv4 one v4-mapped; used when the two families differ. */
static void as_v6(const struct sockaddr *sa, struct sockaddr_in6 *o)
{
    if (sa->sa_family == AF_INET6) {
        memcpy(o, sa, sizeof(*o));
        return;
    }
    const struct sockaddr_in *in = (const void *)sa;
    memset(o, 0, sizeof(*o));
    o->sin6_family = AF_INET6;
    o->sin6_port = in->sin_port;
    o->sin6_addr.s6_addr[10] = 0xff;
    o->sin6_addr.s6_addr[11] = 0xff;
    memcpy(&o->sin6_addr.s6_addr[12], &in->sin_addr, 4);
}

/* Brings src and dst to one family (mapping to IPv6 if they differ); false if not inet. */
static bool same_family(const struct sockaddr *src, const struct sockaddr *dst,
                        struct sockaddr_storage *s, struct sockaddr_storage *d)
{
    if (!is_inet(src) || !is_inet(dst))
        return false;
    if (src->sa_family == dst->sa_family) {
        size_t n =
            src->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
        memcpy(s, src, n);
        memcpy(d, dst, n);
        s->ss_family = d->ss_family = src->sa_family;
        return true;
    }
    as_v6(src, (struct sockaddr_in6 *)s);
    as_v6(dst, (struct sockaddr_in6 *)d);
    return true;
}

static int encode_v1(const struct sockaddr *src, const struct sockaddr *dst, char *buf, size_t len)
{
    struct sockaddr_storage s, d;
    char line[160], a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
    int n;

    if (!same_family(src, dst, &s, &d)) {
        n = snprintf(line, sizeof(line), "PROXY UNKNOWN\r\n");
    } else if (s.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)&s, *y = (const void *)&d;
        inet_ntop(AF_INET, &x->sin_addr, a, sizeof(a));
        inet_ntop(AF_INET, &y->sin_addr, b, sizeof(b));
        n = snprintf(line, sizeof(line), "PROXY TCP4 %s %s %u %u\r\n", a, b, ntohs(x->sin_port),
                     ntohs(y->sin_port));
    } else {
        const struct sockaddr_in6 *x = (const void *)&s, *y = (const void *)&d;
        inet_ntop(AF_INET6, &x->sin6_addr, a, sizeof(a));
        inet_ntop(AF_INET6, &y->sin6_addr, b, sizeof(b));
        n = snprintf(line, sizeof(line), "PROXY TCP6 %s %s %u %u\r\n", a, b, ntohs(x->sin6_port),
                     ntohs(y->sin6_port));
    }
    if (n < 0 || n > SP_PP_V1_MAX)
        return -EINVAL; /* cannot happen: inet_ntop's longest forms still fit */
    if ((size_t)n > len)
        return -ENOSPC;
    memcpy(buf, line, (size_t)n);
    return n;
}

static int encode_v2(const struct sockaddr *src, const struct sockaddr *dst, char *buf, size_t len)
{
    struct sockaddr_storage s, d;
    unsigned char h[SP_PP_V2_HDR + V2_INET6_LEN];
    size_t blen = 0;

    memcpy(h, v2_sig, sizeof(v2_sig));
    /* Without an inet form (a unix: client): LOCAL, which the receiver must accept, using the
     * connection's own endpoints; PROXY with family UNSPEC it may refuse (the spec, 2.2). */
    h[12] = V2_VERSION_HI | (is_inet(src) && is_inet(dst) ? V2_CMD_PROXY : V2_CMD_LOCAL);
    h[13] = V2_AF_UNSPEC << 4 | V2_TP_UNSPEC;
    if (same_family(src, dst, &s, &d) && s.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)&s, *y = (const void *)&d;
        h[13] = V2_AF_INET << 4 | V2_TP_STREAM;
        memcpy(h + 16, &x->sin_addr, 4);
        memcpy(h + 20, &y->sin_addr, 4);
        memcpy(h + 24, &x->sin_port, 2);
        memcpy(h + 26, &y->sin_port, 2);
        blen = V2_INET_LEN;
    } else if (is_inet(src) && is_inet(dst)) {
        const struct sockaddr_in6 *x = (const void *)&s, *y = (const void *)&d;
        h[13] = V2_AF_INET6 << 4 | V2_TP_STREAM;
        memcpy(h + 16, &x->sin6_addr, 16);
        memcpy(h + 32, &y->sin6_addr, 16);
        memcpy(h + 48, &x->sin6_port, 2);
        memcpy(h + 50, &y->sin6_port, 2);
        blen = V2_INET6_LEN;
    }
    h[14] = (unsigned char)(blen >> 8);
    h[15] = (unsigned char)(blen & 0xff);
    if (SP_PP_V2_HDR + blen > len)
        return -ENOSPC;
    memcpy(buf, h, SP_PP_V2_HDR + blen);
    return (int)(SP_PP_V2_HDR + blen);
}

int sp_pp_encode(int version, const struct sockaddr *src, const struct sockaddr *dst, char *buf,
                 size_t len)
{
    if (version == 1)
        return encode_v1(src, dst, buf, len);
    if (version == 2)
        return encode_v2(src, dst, buf, len);
    return -EINVAL;
}

/* ---- v1 decoding ------------------------------------------------------------------------ */

enum v1_kind { V1_TCP4, V1_TCP6, V1_UNKNOWN };

static bool all_in(const char *p, size_t n, const char *set)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\0' || strchr(set, p[i]) == NULL)
            return false;
    }
    return true;
}

/* Decimal 0..max, no sign, no leading zero (the spec's numbers have none; a zero-padded one
 * is more likely a broken sender than a meaningful value). */
static bool dec(const char *p, size_t n, unsigned max, unsigned *out)
{
    unsigned v = 0;
    if (n == 0 || n > 5 || (n > 1 && p[0] == '0') || !all_in(p, n, "0123456789"))
        return false;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (unsigned)(p[i] - '0');
    *out = v;
    return v <= max;
}

static bool parse_v4(const char *p, size_t n, struct in_addr *a)
{
    unsigned char o[4];
    size_t i = 0;
    for (int k = 0; k < 4; k++) {
        size_t j = i;
        unsigned v;
        while (j < n && p[j] != '.')
            j++;
        if (!dec(p + i, j - i, 255, &v) || (k < 3) != (j < n))
            return false;
        o[k] = (unsigned char)v;
        i = j + 1;
    }
    memcpy(a, o, 4);
    return true;
}

static bool parse_v6(const char *p, size_t n, struct in6_addr *a)
{
    char tmp[V6_STR_MAX + 1];
    if (n == 0 || n > V6_STR_MAX || !all_in(p, n, "0123456789abcdefABCDEF:."))
        return false;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    return inet_pton(AF_INET6, tmp, a) == 1;
}

/* Field f of a TCP line (0 src addr, 1 dst addr, 2 src port, 3 dst port) while incomplete:
 * could these bytes still start a valid field? */
static bool v1_partial_ok(enum v1_kind k, int f, const char *p, size_t n)
{
    if (f >= 2)
        return n <= PORT_MAX && !(n > 1 && p[0] == '0') && all_in(p, n, "0123456789");
    if (k == V1_TCP4)
        return n <= V4_STR_MAX && all_in(p, n, "0123456789.");
    return n <= V6_STR_MAX && all_in(p, n, "0123456789abcdefABCDEF:.");
}

static bool v1_field(enum v1_kind k, int f, const char *p, size_t n, struct sockaddr_storage *s,
                     struct sockaddr_storage *d)
{
    struct sockaddr_storage *ss = (f == 0 || f == 2) ? s : d;
    unsigned port;
    if (f >= 2) {
        if (!dec(p, n, 65535, &port))
            return false;
        if (k == V1_TCP4)
            ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
        else
            ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
        return true;
    }
    if (k == V1_TCP4) {
        ss->ss_family = AF_INET;
        return parse_v4(p, n, &((struct sockaddr_in *)ss)->sin_addr);
    }
    ss->ss_family = AF_INET6;
    return parse_v6(p, n, &((struct sockaddr_in6 *)ss)->sin6_addr);
}

/* The protocol word at p[0..n): 1 and *k when complete, 0 when a prefix, -EINVAL otherwise. */
static int v1_proto(const char *p, size_t n, bool complete, enum v1_kind *k)
{
    static const char *const words[] = {"TCP4", "TCP6", "UNKNOWN"};
    for (int i = 0; i < 3; i++) {
        size_t wl = strlen(words[i]);
        if (n == wl && memcmp(p, words[i], n) == 0) {
            *k = (enum v1_kind)i;
            return 1;
        }
        if (!complete && n < wl && memcmp(p, words[i], n) == 0)
            return 0;
    }
    return -EINVAL;
}

/* The line after "PROXY ", without its CRLF when complete. Returns 1 with *out filled, 0 for a
 * valid prefix, -EINVAL. */
static int v1_line(const char *p, size_t n, bool complete, struct sp_pp_result *out)
{
    struct sockaddr_storage s, d;
    enum v1_kind k;
    size_t e = 0;

    while (e < n && p[e] != ' ')
        e++;
    int rc = v1_proto(p, e, complete || e < n, &k);
    if (rc <= 0)
        return rc;
    if (k == V1_UNKNOWN) {
        /* the spec: whatever follows UNKNOWN up to the CRLF is to be ignored */
        if (complete)
            memset(out, 0, sizeof(*out));
        return complete ? 1 : 0;
    }
    memset(&s, 0, sizeof(s));
    memset(&d, 0, sizeof(d));
    for (int f = 0; f < 4; f++) {
        if (e == n)
            return complete ? -EINVAL : 0; /* a field is missing, or is yet to come */
        size_t b = e + 1;
        e = b;
        while (e < n && p[e] != ' ')
            e++;
        if (e == n && !complete)
            return v1_partial_ok(k, f, p + b, e - b) ? 0 : -EINVAL;
        if (!v1_field(k, f, p + b, e - b, &s, &d))
            return -EINVAL;
    }
    if (e != n)
        return -EINVAL; /* a fifth field or a trailing space */
    if (!complete)
        return 0;
    memset(out, 0, sizeof(*out));
    out->has_addr = true;
    out->src = s;
    out->dst = d;
    return 1;
}

static int decode_v1(const char *buf, size_t len, struct sp_pp_result *out)
{
    size_t avail = len < SP_PP_V1_MAX ? len : SP_PP_V1_MAX;
    size_t end = avail; /* index of the LF, or avail when none yet */

    if (memcmp(buf, V1_SIG, avail < V1_SIG_LEN ? avail : V1_SIG_LEN) != 0)
        return -EINVAL;
    for (size_t i = 0; i < avail; i++) {
        if (buf[i] == '\n') {
            if (i == 0 || buf[i - 1] != '\r')
                return -EINVAL; /* a bare LF */
            end = i;
            break;
        }
        if (buf[i] == '\r' && i + 1 < avail && buf[i + 1] != '\n')
            return -EINVAL; /* a bare CR */
    }
    if (avail < V1_SIG_LEN)
        return 0;
    bool complete = end < avail;
    size_t body = complete ? end - 1 : avail;
    if (!complete && buf[avail - 1] == '\r')
        body--; /* the CR of a CRLF whose LF has not come yet */
    int rc = v1_line(buf + V1_SIG_LEN, body - V1_SIG_LEN, complete, out);
    if (rc < 0)
        return rc;
    if (!complete)
        return avail == SP_PP_V1_MAX ? -E2BIG : 0;
    out->version = 1;
    return (int)end + 1;
}

/* ---- v2 decoding ------------------------------------------------------------------------ */

static void v2_addrs(int af, const unsigned char *b, struct sp_pp_result *out)
{
    if (af == V2_AF_INET) {
        struct sockaddr_in *s = (struct sockaddr_in *)&out->src;
        struct sockaddr_in *d = (struct sockaddr_in *)&out->dst;
        s->sin_family = d->sin_family = AF_INET;
        memcpy(&s->sin_addr, b, 4);
        memcpy(&d->sin_addr, b + 4, 4);
        memcpy(&s->sin_port, b + 8, 2);
        memcpy(&d->sin_port, b + 10, 2);
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src;
        struct sockaddr_in6 *d = (struct sockaddr_in6 *)&out->dst;
        s->sin6_family = d->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, b, 16);
        memcpy(&d->sin6_addr, b + 16, 16);
        memcpy(&s->sin6_port, b + 32, 2);
        memcpy(&d->sin6_port, b + 34, 2);
    }
}

/* The family/transport byte of a PROXY command: the combinations a stream proxy can use. */
static bool v2_family_ok(unsigned fam)
{
    unsigned af = fam >> 4, tp = fam & 0xf;
    switch (af) {
    case V2_AF_UNSPEC:
        return tp == V2_TP_UNSPEC;
    case V2_AF_INET:
    case V2_AF_INET6:
        return tp == V2_TP_STREAM;
    case V2_AF_UNIX:
        return tp == V2_TP_STREAM || tp == V2_TP_DGRAM;
    default:
        return false;
    }
}

/* TLVs fill the rest of the block exactly; each must fit. Their contents are not ours. */
static bool v2_tlvs_ok(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (n - i < V2_TLV_HDR)
            return false;
        size_t vl = (size_t)p[i + 1] << 8 | p[i + 2];
        if (vl > n - i - V2_TLV_HDR)
            return false;
        i += V2_TLV_HDR + vl;
    }
    return true;
}

static int decode_v2(const unsigned char *b, size_t len, size_t max_block, struct sp_pp_result *out)
{
    if (memcmp(b, v2_sig, len < sizeof(v2_sig) ? len : sizeof(v2_sig)) != 0)
        return -EINVAL;
    if (len <= 12)
        return 0;
    unsigned cmd = b[12] & 0xf;
    if ((b[12] & 0xf0) != V2_VERSION_HI || cmd > V2_CMD_PROXY)
        return -EINVAL;
    if (len == 13)
        return 0;
    /* LOCAL: the spec says to discard the block, family included */
    if (cmd == V2_CMD_PROXY && !v2_family_ok(b[13]))
        return -EINVAL;
    if (len < SP_PP_V2_HDR)
        return 0;
    size_t blen = (size_t)b[14] << 8 | b[15];
    if (blen > max_block)
        return -E2BIG;
    if (len < SP_PP_V2_HDR + blen)
        return 0;

    const unsigned char *blk = b + SP_PP_V2_HDR;
    unsigned af = b[13] >> 4;
    size_t need = af == V2_AF_INET ? V2_INET_LEN : af == V2_AF_INET6 ? V2_INET6_LEN : 0;
    if (cmd == V2_CMD_PROXY && af == V2_AF_UNIX && blen < V2_UNIX_LEN)
        return -EINVAL;
    if (cmd == V2_CMD_PROXY && need > 0 && (blen < need || !v2_tlvs_ok(blk + need, blen - need)))
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    out->version = 2;
    out->local = cmd == V2_CMD_LOCAL;
    if (cmd == V2_CMD_PROXY && need > 0) {
        out->has_addr = true;
        v2_addrs((int)af, blk, out);
    }
    return (int)(SP_PP_V2_HDR + blen);
}

int sp_pp_decode_max(const char *buf, size_t len, size_t max_block, struct sp_pp_result *out)
{
    if (len == 0)
        return 0;
    if (max_block > 65535)
        max_block = 65535;
    if (buf[0] == 'P')
        return decode_v1(buf, len, out);
    if ((unsigned char)buf[0] == v2_sig[0])
        return decode_v2((const unsigned char *)buf, len, max_block, out);
    return -EINVAL;
}

int sp_pp_decode(const char *buf, size_t len, struct sp_pp_result *out)
{
    return sp_pp_decode_max(buf, len, SP_PP_V2_MAX_BLOCK, out);
}
