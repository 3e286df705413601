/* tls_sni.c: the server name out of a TLS ClientHello (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2,
 * RFC 6066 §3) and the pattern table that routes by it. Every length field is checked against
 * the bytes its container holds; nothing is read past what the caller handed in. */
#include "tls_sni.h"
#include "common.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REC_HDR            5
#define REC_MAX            16384 /* 2^14: the largest plaintext record */
#define REC_HANDSHAKE      22
#define HS_HDR             4
#define HS_CLIENT_HELLO    1
#define EXT_SERVER_NAME    0
#define NAME_TYPE_HOST     0
#define HOST_MAX           253
#define LABEL_MAX          63
#define SESSION_ID_MAX     32
#define RANDOM_LEN         32
#define LEGACY_VERSION_LEN 2

/* A bounds-checked cursor over one vector. */
struct rd {
    const unsigned char *p;
    size_t n, off;
};

static bool rd_u8(struct rd *r, size_t *v)
{
    if (r->n - r->off < 1)
        return false;
    *v = r->p[r->off++];
    return true;
}

static bool rd_u16(struct rd *r, size_t *v)
{
    if (r->n - r->off < 2)
        return false;
    *v = (size_t)r->p[r->off] << 8 | r->p[r->off + 1];
    r->off += 2;
    return true;
}

/* Takes n bytes as a sub-vector. */
static bool rd_sub(struct rd *r, size_t n, struct rd *sub)
{
    if (r->n - r->off < n)
        return false;
    sub->p = r->p + r->off;
    sub->n = n;
    sub->off = 0;
    r->off += n;
    return true;
}

/* ASCII only, whatever the locale: a host name is not text in the user's language. */
static bool is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static char lower(unsigned char c)
{
    return (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
}

/* A DNS host name as RFC 6066 wants it in SNI: no trailing dot, no IP literal. '_' is allowed
 * because real internal names carry it and refusing them would break working clients. */
static bool host_ok(const char *s, size_t n)
{
    size_t label = 0;
    bool numeric = true; /* the last label so far is all digits */

    if (n == 0 || n > HOST_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            numeric = true;
            continue;
        }
        if (!is_alnum(c) && c != '-' && c != '_')
            return false;
        if (++label > LABEL_MAX)
            return false;
        numeric = numeric && c >= '0' && c <= '9';
    }
    /* a trailing dot, or a last label of digits only (an IPv4 literal such as 10.0.0.1) */
    return label > 0 && !numeric;
}

/* server_name extension data: a ServerNameList. *host and *hlen get the host_name, if any. */
static int parse_server_name(struct rd *ext, const unsigned char **host, size_t *hlen)
{
    struct rd list;
    size_t ll;
    if (!rd_u16(ext, &ll) || ll == 0 || !rd_sub(ext, ll, &list) || ext->off != ext->n)
        return -EINVAL;
    while (list.off < list.n) {
        size_t type, nl;
        struct rd nm;
        if (!rd_u8(&list, &type) || !rd_u16(&list, &nl) || nl == 0 || !rd_sub(&list, nl, &nm))
            return -EINVAL;
        if (type != NAME_TYPE_HOST)
            continue; /* no other type is defined; skip rather than guess */
        if (*host != NULL)
            return -EINVAL; /* RFC 6066: at most one name per type */
        *host = nm.p;
        *hlen = nm.n;
    }
    return 0;
}

static int parse_extensions(struct rd *h, const unsigned char **host, size_t *hlen)
{
    struct rd exts;
    size_t el;
    bool seen = false;

    if (!rd_u16(h, &el) || !rd_sub(h, el, &exts) || h->off != h->n)
        return -EINVAL;
    while (exts.off < exts.n) {
        size_t type, len;
        struct rd ext;
        if (!rd_u16(&exts, &type) || !rd_u16(&exts, &len) || !rd_sub(&exts, len, &ext))
            return -EINVAL;
        if (type != EXT_SERVER_NAME)
            continue;
        if (seen)
            return -EINVAL; /* RFC 8446: no extension type twice */
        seen = true;
        int rc = parse_server_name(&ext, host, hlen);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The ClientHello body (after the 4-byte handshake header). */
static int parse_hello(const unsigned char *p, size_t n, char *name, size_t name_len)
{
    struct rd h = {p, n, 0}, skip;
    const unsigned char *host = NULL;
    size_t v, hlen = 0;

    if (n < LEGACY_VERSION_LEN || p[0] != 3 || !rd_sub(&h, LEGACY_VERSION_LEN + RANDOM_LEN, &skip))
        return -EINVAL;
    if (!rd_u8(&h, &v) || v > SESSION_ID_MAX || !rd_sub(&h, v, &skip))
        return -EINVAL;
    if (!rd_u16(&h, &v) || v < 2 || v % 2 != 0 || !rd_sub(&h, v, &skip))
        return -EINVAL;
    if (!rd_u8(&h, &v) || v < 1 || !rd_sub(&h, v, &skip))
        return -EINVAL;
    if (h.off == h.n)
        return -ENOENT; /* TLS 1.2 allows a ClientHello with no extensions at all */
    int rc = parse_extensions(&h, &host, &hlen);
    if (rc != 0)
        return rc;
    /* A name that is no host name (an IP literal, a trailing dot, a stray character) is the
     * client's mistake, not a broken hello: TLS servers accept it, so route as if none came. */
    if (host == NULL || !host_ok((const char *)host, hlen))
        return -ENOENT;
    if (hlen >= name_len)
        return -ENOSPC;
    for (size_t i = 0; i < hlen; i++)
        name[i] = lower(host[i]);
    name[hlen] = '\0';
    return 1;
}

/* The record header at b, of which n bytes are here. Returns the record length, 0 when the
 * header is incomplete but valid so far, -EINVAL. */
static long record_header(const unsigned char *b, size_t n)
{
    if ((n >= 1 && b[0] != REC_HANDSHAKE) || (n >= 2 && b[1] != 3) || (n >= 3 && b[2] > 4))
        return -EINVAL;
    if (n < REC_HDR)
        return 0;
    long rl = (long)b[3] << 8 | b[4];
    return rl == 0 || rl > REC_MAX ? -EINVAL : rl;
}

static int check_hs_header(const unsigned char *hs, size_t got, size_t *want)
{
    if (got >= 1 && hs[0] != HS_CLIENT_HELLO)
        return -EINVAL;
    if (got < HS_HDR)
        return 0;
    size_t hl = (size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3];
    if (HS_HDR + hl > SP_SNI_MAX_HELLO)
        return -EINVAL;
    *want = HS_HDR + hl;
    return 0;
}

/* The ClientHello spread over several records: reassemble it in a scratch buffer. Kept apart
 * so that the common single-record case never touches 16 KiB of stack. */
static int parse_fragmented(const unsigned char *buf, size_t len, char *name, size_t name_len)
{
    unsigned char hs[SP_SNI_MAX_HELLO];
    size_t got = 0, want = HS_HDR, pos = 0;
    bool known = false;

    for (int r = 0; r < SP_SNI_MAX_RECORDS; r++) {
        long rl = record_header(buf + pos, len - pos);
        if (rl <= 0)
            return (int)rl;
        size_t avail = SP_MIN((size_t)rl, len - pos - REC_HDR), used = 0;
        while (used < avail && got < want) {
            size_t c = SP_MIN(avail - used, want - got);
            memcpy(hs + got, buf + pos + REC_HDR + used, c);
            got += c;
            used += c;
            int rc = check_hs_header(hs, got, &want);
            if (rc != 0)
                return rc;
            known = got >= HS_HDR;
        }
        if (known && got == want)
            return parse_hello(hs + HS_HDR, got - HS_HDR, name, name_len);
        if (avail < (size_t)rl)
            return 0;
        pos += REC_HDR + (size_t)rl;
    }
    return -EINVAL; /* more records than a sane client uses */
}

int sp_sni_parse(const unsigned char *buf, size_t len, char *name, size_t name_len)
{
    size_t want = 0;
    long rl = record_header(buf, len);
    if (rl <= 0)
        return (int)rl;
    size_t avail = SP_MIN((size_t)rl, len - REC_HDR);
    int rc = check_hs_header(buf + REC_HDR, avail, &want);
    if (rc != 0)
        return rc;
    if (rl < HS_HDR || (want > 0 && want > (size_t)rl))
        return parse_fragmented(buf, len, name, name_len);
    if (want == 0 || avail < want)
        return 0;
    return parse_hello(buf + REC_HDR + HS_HDR, want - HS_HDR, name, name_len);
}

/* ---- routing ---------------------------------------------------------------------------- */

int sp_sni_pattern_check(const char *pattern)
{
    const char *host = strncmp(pattern, "*.", 2) == 0 ? pattern + 2 : pattern;
    return host_ok(host, strlen(host)) ? 0 : -EINVAL;
}

int sp_sni_routes_add(struct sp_sni_routes *r, const char *pattern, int route)
{
    if (route < 0 || sp_sni_pattern_check(pattern) != 0)
        return -EINVAL;
    for (size_t i = 0; i < r->n; i++) {
        if (strcasecmp(r->v[i].pattern, pattern) == 0)
            return -EEXIST;
    }
    char *copy = strdup(pattern);
    if (copy == NULL)
        return -ENOMEM;
    for (char *c = copy; *c != '\0'; c++)
        *c = lower((unsigned char)*c);
    if (r->n == r->cap) { /* doubling: n adds cost O(n) copies, not O(n^2) */
        size_t cap = r->cap != 0 ? r->cap * 2 : 8;
        struct sp_sni_route *v = realloc(r->v, cap * sizeof(*v));
        if (v == NULL) {
            free(copy);
            return -ENOMEM;
        }
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n].pattern = copy;
    r->v[r->n].route = route;
    r->n++;
    return 0;
}

int sp_sni_routes_match(const struct sp_sni_routes *r, const char *name)
{
    size_t nl, best_len = 0;
    int best = -1;

    if (r == NULL || name == NULL)
        return -1;
    nl = strlen(name);
    for (size_t i = 0; i < r->n; i++) {
        const char *p = r->v[i].pattern;
        if (p[0] != '*') {
            if (strcasecmp(p, name) == 0)
                return r->v[i].route; /* exact beats any wildcard */
            continue;
        }
        size_t sl = strlen(p + 1); /* ".example.com" */
        if (nl > sl && sl > best_len && strcasecmp(name + nl - sl, p + 1) == 0) {
            best = r->v[i].route;
            best_len = sl;
        }
    }
    return best;
}

void sp_sni_routes_deinit(struct sp_sni_routes *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i].pattern);
    free(r->v);
    r->v = NULL;
    r->n = 0;
    r->cap = 0;
}
