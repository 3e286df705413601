/* fuzz_proxy_proto.c: the PROXY v1/v2 decoder (proxy_proto.c) and the socket reader that feeds
 * it (sp_pp_read in inspect.c). Properties, beyond "no crash, no read past the input":
 *  - prefixes: every prefix of the input answers "need more" or exactly what the whole input
 *    answers (same length, same addresses), and once a prefix has an answer every longer one
 *    keeps it: bytes that have not arrived yet never change a verdict;
 *  - bounds: a header is at most SP_PP_MAX_HEADER bytes (v1: SP_PP_V1_MAX), never more than
 *    the input;
 *  - round trip: the addresses decoded, encoded again as v1 and as v2, decode to the same
 *    addresses; a v1 TCP4 line and an address-only v2 header encode back to the very bytes;
 *  - the reader: the input written into a socket in random pieces, sp_pp_read called after each,
 *    gives the decoder's verdict on the whole input and consumes exactly the header, never a
 *    payload byte. */
#include "fuzz.h"
#include "inspect.h"
#include "proxy_proto.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_INPUT 1024 /* four times the largest header: payload after it is enough */

static int decode_exact(const uint8_t *data, size_t n, struct sp_pp_result *out)
{
    unsigned char *c = fz_dup(data, n);
    int rc = sp_pp_decode((const char *)c, n, out);
    free(c);
    return rc;
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

static bool same_result(const struct sp_pp_result *a, const struct sp_pp_result *b)
{
    if (a->version != b->version || a->has_addr != b->has_addr || a->local != b->local)
        return false;
    return !a->has_addr || (same_addr(&a->src, &b->src) && same_addr(&a->dst, &b->dst));
}

static void check_result(const uint8_t *data, int rc, const struct sp_pp_result *r)
{
    FZ_CHECK(r->version == 1 || r->version == 2, "version %d", r->version);
    FZ_CHECK(rc <= SP_PP_MAX_HEADER, "header of %d bytes", rc);
    FZ_CHECK(r->version == 2 || rc <= SP_PP_V1_MAX, "v1 header of %d bytes", rc);
    FZ_CHECK(r->version == 1 || rc >= SP_PP_V2_HDR, "v2 header of %d bytes", rc);
    FZ_CHECK(!(r->has_addr && r->local), "LOCAL with addresses");
    if (r->has_addr) {
        FZ_CHECK(r->src.ss_family == AF_INET || r->src.ss_family == AF_INET6, "src family %d",
                 r->src.ss_family);
        FZ_CHECK(r->src.ss_family == r->dst.ss_family, "mixed families");
    }
    if (r->version == 1)
        FZ_CHECK(data[rc - 2] == '\r' && data[rc - 1] == '\n', "v1 line not ending in CRLF");
}

/* Every prefix answers 0 or the full answer, and keeps an answer once it has one. */
static void check_prefixes(const uint8_t *data, size_t size, int rc,
                           const struct sp_pp_result *full)
{
    int prev = 0;
    for (size_t k = 0; k < size; k++) {
        struct sp_pp_result r;
        int p = decode_exact(data, k, &r);
        FZ_CHECK(p == 0 || p == rc, "prefix %zu answers %d, the whole input %d", k, p, rc);
        FZ_CHECK(prev == 0 || p == prev, "prefix %zu answers %d after %d", k, p, prev);
        if (p > 0)
            FZ_CHECK(same_result(&r, full), "prefix %zu decodes other addresses", k);
        prev = p;
    }
}

/* The encoder's other inputs: no addresses (a connection of our own), families that differ
 * (sent as IPv6, the IPv4 side v4-mapped), a buffer too small, a version that does not exist. */
static void check_encoder(const struct sp_pp_result *full)
{
    char buf[SP_PP_ENCODE_MAX];
    struct sp_pp_result r;
    const struct sockaddr *src = (const struct sockaddr *)&full->src;
    const struct sockaddr *dst = (const struct sockaddr *)&full->dst;

    int n = sp_pp_encode(1, src, NULL, buf, sizeof(buf));
    FZ_CHECK(n == 15 && sp_pp_decode(buf, (size_t)n, &r) == n && !r.has_addr && !r.local,
             "v1 without addresses: %d", n);
    n = sp_pp_encode(2, NULL, dst, buf, sizeof(buf));
    FZ_CHECK(n == SP_PP_V2_HDR && sp_pp_decode(buf, (size_t)n, &r) == n && r.local,
             "v2 without addresses: %d", n);
    FZ_CHECK(sp_pp_encode(3, src, dst, buf, sizeof(buf)) == -EINVAL, "version 3 encoded");

    struct sockaddr_in6 other6;
    struct sockaddr_in other4;
    memset(&other6, 0, sizeof(other6));
    memset(&other4, 0, sizeof(other4));
    other6.sin6_family = AF_INET6;
    other6.sin6_port = htons(443);
    other6.sin6_addr.s6_addr[15] = 1;
    other4.sin_family = AF_INET;
    other4.sin_port = htons(443);
    other4.sin_addr.s_addr = htonl(0x7f000001);
    const struct sockaddr *other = src->sa_family == AF_INET ? (const struct sockaddr *)&other6
                                                             : (const struct sockaddr *)&other4;
    for (int v = 1; v <= 2; v++) {
        n = sp_pp_encode(v, src, other, buf, sizeof(buf));
        FZ_CHECK(n > 0 && sp_pp_decode(buf, (size_t)n, &r) == n && r.has_addr &&
                     r.src.ss_family == AF_INET6 && r.dst.ss_family == AF_INET6,
                 "v%d with mixed families: %d", v, n);
        FZ_CHECK(sp_pp_encode(v, src, other, buf, (size_t)n - 1) == -ENOSPC,
                 "v%d: no -ENOSPC one byte short", v);
    }
}

static void check_round_trip(const uint8_t *data, int rc, const struct sp_pp_result *full)
{
    if (!full->has_addr)
        return;
    check_encoder(full);
    for (int v = 1; v <= 2; v++) {
        char buf[SP_PP_ENCODE_MAX];
        struct sp_pp_result again;
        int n = sp_pp_encode(v, (const struct sockaddr *)&full->src,
                             (const struct sockaddr *)&full->dst, buf, sizeof(buf));
        FZ_CHECK(n > 0, "encode v%d: %d", v, n);
        int d = sp_pp_decode(buf, (size_t)n, &again);
        FZ_CHECK(d == n, "our own v%d header decodes as %d (of %d)", v, d, n);
        FZ_CHECK(again.version == v && again.has_addr && same_addr(&again.src, &full->src) &&
                     same_addr(&again.dst, &full->dst),
                 "v%d round trip changed the addresses", v);
        /* IPv4 text has one spelling, and a v2 header without TLVs has one encoding */
        bool canonical = v == full->version && (v == 2 ? n == rc : full->src.ss_family == AF_INET);
        if (canonical)
            FZ_CHECK(n == rc && memcmp(buf, data, (size_t)n) == 0,
                     "v%d re-encoding differs from the input", v);
    }
}

/* The decoder with the default cap and with the widest one agree wherever the header fits. */
static void check_cap(const uint8_t *data, size_t size, int rc, const struct sp_pp_result *full)
{
    struct sp_pp_result r;
    unsigned char *c = fz_dup(data, size);
    /* a cap above the 16-bit length field is the same as 65535 */
    int wide = sp_pp_decode_max((const char *)c, size, 70000, &r);
    free(c);
    if (rc > 0 || rc == -EINVAL) {
        FZ_CHECK(wide == rc, "cap 65535 answers %d, cap %d answers %d", wide, SP_PP_V2_MAX_BLOCK,
                 rc);
        if (rc > 0)
            FZ_CHECK(same_result(&r, full), "cap 65535 decodes other addresses");
    } else if (rc == -E2BIG && data[0] != 'P') {
        FZ_CHECK(wide != -E2BIG || size == 0, "a v2 length within 65535 refused as too big");
    }
}

/* Writes the input into a socket pair in random pieces, calling sp_pp_read after each. */
static void check_reader(const uint8_t *data, size_t size, int rc, const struct sp_pp_result *full)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    struct fz_rng rng;
    fz_rng_seed(&rng, data, size);
    struct sp_pp_reader *r = calloc(1, sizeof(*r));
    if (r == NULL)
        abort();
    enum sp_inspect_status st = SP_INSPECT_WAIT;
    size_t sent = 0;
    int err = 0;
    while (st == SP_INSPECT_WAIT && sent < size) {
        size_t piece = 1 + fz_rng_below(&rng, size - sent);
        if (write(sv[1], data + sent, piece) != (ssize_t)piece)
            abort();
        sent += piece;
        st = sp_pp_read(sv[0], r, &err);
    }
    if (rc > 0) {
        FZ_CHECK(st == SP_INSPECT_DONE, "reader: status %d for a %d-byte header", st, rc);
        FZ_CHECK(r->have == (size_t)rc, "reader consumed %zu of a %d-byte header", r->have, rc);
        FZ_CHECK(same_result(&r->result, full), "reader decoded other addresses");
        /* what is left on the socket is exactly the payload that was sent */
        unsigned char rest[MAX_INPUT];
        ssize_t left = recv(sv[0], rest, sizeof(rest), MSG_DONTWAIT);
        size_t want = sent - (size_t)rc;
        FZ_CHECK((want == 0 && left < 0) ||
                     (left >= 0 && (size_t)left == want && memcmp(rest, data + rc, want) == 0),
                 "reader left %zd bytes of payload, %zu expected", left, want);
    } else if (rc < 0) {
        FZ_CHECK(st == SP_INSPECT_MALFORMED, "reader: status %d for a malformed header (%d)", st,
                 rc);
    } else {
        FZ_CHECK(st == SP_INSPECT_WAIT, "reader: status %d for a prefix", st);
        FZ_CHECK(r->have == size, "reader took %zu of %zu prefix bytes", r->have, size);
        shutdown(sv[1], SHUT_WR);
        FZ_CHECK(sp_pp_read(sv[0], r, &err) == SP_INSPECT_EOF, "no EOF after a prefix");
    }
    free(r);
    close(sv[0]);
    close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sp_pp_result full;
    if (size > MAX_INPUT)
        return 0;
    memset(&full, 0, sizeof(full));
    int rc = decode_exact(data, size, &full);
    FZ_CHECK(rc >= 0 || rc == -EINVAL || rc == -E2BIG, "rc %d", rc);
    FZ_CHECK(rc <= (int)size, "a %d-byte header in %zu bytes", rc, size);
    if (rc > 0) {
        check_result(data, rc, &full);
        check_round_trip(data, rc, &full);
    }
    check_prefixes(data, size, rc, &full);
    check_cap(data, size, rc, &full);
    check_reader(data, size, rc, &full);
    return 0;
}
