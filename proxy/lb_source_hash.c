/* lb_source_hash.c: consistent hashing of the client's IP address (not the port) onto a ring
 * of virtual nodes, so one client keeps its server while the set is unchanged and a change in
 * the set moves only about 1/N of the clients.
 *
 * Why a ring rather than Maglev: Maglev's table gives a slightly more even spread and O(1)
 * lookups, but a server that is down or already tried then needs a second lookup scheme,
 * while on a ring "walk on to the next point whose server can take it" moves exactly that
 * server's clients and nobody else's. Removal from a ring is also minimal (only the removed
 * server's clients move), which Maglev only approximates. Lookups are a binary search over a
 * few thousand points, well below the cost of the connect that follows. */
#include "lb.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* Virtual nodes per unit of weight: 160 keeps each server's share within a few percent of its
 * weight. RING_MAX caps one tier's ring (16 bytes a point, per worker); past it points are
 * scaled down, at the cost of extra movement when weights are large and the set changes. */
#define POINTS_PER_WEIGHT 160u
#define RING_MAX          40960u

struct point {
    uint64_t hash;
    uint32_t server; /* index in up->servers */
};

struct ring {
    struct point *pts; /* owned, sorted by hash */
    size_t n;
};

struct sh_state {
    struct ring tier[2]; /* [0] primaries, [1] backups */
};

/* FNV-1a, streamed: simple and dependency-free, but weak in its last bytes for short keys,
 * hence the finalizer in hash_done(). */
static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3u;
    }
    return h;
}

#define FNV_OFFSET 0xcbf29ce484222325u

/* MurmurHash3's fmix64: every input bit flips about half the output bits, so keys that differ
 * in one digit ("a#1", "a#2") land far apart on the ring. */
static uint64_t hash_done(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdu;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53u;
    h ^= h >> 33;
    return h;
}

/* The point key is "address#i": it depends on the server's address, not on its position in
 * the list, so reordering the config or adding a server leaves the other points in place. */
static uint64_t point_hash(const char *address, unsigned i)
{
    char digits[16];
    size_t nd = 0;
    uint64_t h = fnv1a(FNV_OFFSET, address, strlen(address));

    h = fnv1a(h, "#", 1);
    do {
        digits[sizeof(digits) - 1 - nd++] = (char)('0' + i % 10);
        i /= 10;
    } while (i != 0);
    h = fnv1a(h, digits + sizeof(digits) - nd, nd);
    return hash_done(h);
}

static uint64_t client_hash(const struct sockaddr *sa)
{
    static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    const void *ip = NULL;
    size_t len = 0;

    if (sa != NULL && sa->sa_family == AF_INET) {
        ip = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
        len = 4;
    } else if (sa != NULL && sa->sa_family == AF_INET6) {
        const unsigned char *a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
        /* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; hash them as the plain
         * IPv4 address so the same client maps the same way on either kind of listener. */
        bool mapped = memcmp(a, v4mapped, sizeof(v4mapped)) == 0;
        ip = mapped ? a + 12 : a;
        len = mapped ? 4 : 16;
    }
    /* No address (or another family): every such client hashes alike, which is consistent. */
    return hash_done(fnv1a(FNV_OFFSET, ip, len));
}

static int point_cmp(const void *a, const void *b)
{
    const struct point *pa = a, *pb = b;

    if (pa->hash != pb->hash)
        return pa->hash < pb->hash ? -1 : 1;
    return pa->server < pb->server ? -1 : pa->server > pb->server;
}

static unsigned points_for(unsigned weight, uint64_t tier_weight)
{
    if (tier_weight * POINTS_PER_WEIGHT <= RING_MAX)
        return weight * POINTS_PER_WEIGHT;
    uint64_t n = (uint64_t)weight * RING_MAX / tier_weight;
    return n != 0 ? (unsigned)n : 1;
}

static int ring_build(struct ring *r, const struct sp_upstream *up, bool backup)
{
    uint64_t tier_weight = 0;
    size_t total = 0;

    for (size_t i = 0; i < up->nservers; i++) {
        if (up->servers[i].conf->backup == backup)
            tier_weight += up->servers[i].conf->weight != 0 ? up->servers[i].conf->weight : 1;
    }
    for (size_t i = 0; i < up->nservers; i++) {
        const struct sp_server_conf *sc = up->servers[i].conf;
        if (sc->backup == backup)
            total += points_for(sc->weight != 0 ? sc->weight : 1, tier_weight);
    }
    if (total == 0)
        return 0;
    r->pts = malloc(total * sizeof(*r->pts));
    if (r->pts == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < up->nservers; i++) {
        const struct sp_server_conf *sc = up->servers[i].conf;
        if (sc->backup != backup)
            continue;
        unsigned np = points_for(sc->weight != 0 ? sc->weight : 1, tier_weight);
        for (unsigned k = 0; k < np; k++)
            r->pts[r->n++] = (struct point){point_hash(sc->address, k), (uint32_t)i};
    }
    qsort(r->pts, r->n, sizeof(*r->pts), point_cmp);
    return 0;
}

static void sh_free(struct sp_balancer *b)
{
    struct sh_state *st = b->state;

    if (st == NULL)
        return;
    free(st->tier[0].pts);
    free(st->tier[1].pts);
    free(st);
    b->state = NULL;
}

static int sh_init(struct sp_balancer *b)
{
    struct sh_state *st = calloc(1, sizeof(*st));
    int rc;

    if (st == NULL)
        return -ENOMEM;
    b->state = st;
    rc = ring_build(&st->tier[0], b->up, false);
    if (rc == 0)
        rc = ring_build(&st->tier[1], b->up, true);
    if (rc != 0)
        sh_free(b);
    return rc;
}

/* Index of the first point with hash >= h, or 0 past the end (the ring wraps). */
static size_t ring_find(const struct ring *r, uint64_t h)
{
    size_t lo = 0, hi = r->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->pts[mid].hash < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < r->n ? lo : 0;
}

static struct sp_server *sh_pick(struct sp_balancer *b, const struct sp_lb_cands *c,
                                 const struct sockaddr *client)
{
    const struct sh_state *st = b->state;
    const struct ring *r = &st->tier[c->backup ? 1 : 0];
    size_t pos = ring_find(r, client_hash(client));

    /* Walking past a down or tried server's points moves only that server's clients. */
    for (size_t k = 0; k < r->n; k++) {
        const struct point *p = &r->pts[(pos + k) % r->n];
        if (c->is_cand[p->server])
            return &b->up->servers[p->server];
    }
    /* Not reached: every candidate has at least one point in its tier's ring. */
    return c->srv[0];
}

const struct sp_balancer_ops sp_lb_source_hash = {
    .name = "source_hash",
    .init = sh_init,
    .free = sh_free,
    .pick = sh_pick,
};
