/* srclimit.c: the per-client table of a listener's limits (see srclimit.h): keyed hashing of the
 * masked client address, the open-addressed table of atomic entries, the connection count and
 * the GCRA token bucket. */
#include "srclimit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* An entry's id word: the client's 40-bit fingerprint above a 24-bit count of its open
 * connections, so that "is it still this client's entry" and the count change in one CAS. The
 * fingerprint comes from other bits of the hash than the slot, so two clients share an entry only
 * when 40 more bits agree as well (one chance in 2^40 for each pair in a window). A zero word is
 * an entry never used, or the free entry of a client whose fingerprint is 0: both mean the same. */
#define COUNT_BITS   24
#define COUNT_MAX    ((1u << COUNT_BITS) - 1)
#define FP_OF(id)    ((id) >> COUNT_BITS)
#define COUNT_OF(id) ((unsigned)((id)&COUNT_MAX))

/* A lost race (an entry taken over while we looked at it) is retried this often, then the
 * connection passes untracked rather than spin. */
#define ATTEMPTS 4

#define NS_PER_MS 1000000u

struct entry {
    _Atomic uint64_t id;  /* fingerprint << COUNT_BITS | open connections */
    _Atomic uint64_t tat; /* GCRA: when the bucket is full again, ns; 0 = never used */
};

struct sp_srclimit {
    _Atomic unsigned refs;
    uint32_t mask; /* entries - 1 */
    uint8_t prefix_v4, prefix_v6;
    uint64_t k0, k1; /* SipHash key */
    struct entry *v; /* owned, mask + 1 entries, cache-line aligned */
};

/* ---- the client's key and hash ---------------------------------------------------------- */

static inline uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static inline void sipround(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = rotl(v[1], 13) ^ v[0];
    v[0] = rotl(v[0], 32);
    v[2] += v[3];
    v[3] = rotl(v[3], 16) ^ v[2];
    v[0] += v[3];
    v[3] = rotl(v[3], 21) ^ v[0];
    v[2] += v[1];
    v[1] = rotl(v[1], 17) ^ v[2];
    v[2] = rotl(v[2], 32);
}

/* SipHash-2-4 of a 24-byte message given as three little-endian words. */
static uint64_t siphash24(uint64_t k0, uint64_t k1, const uint64_t m[3])
{
    uint64_t v[4] = {k0 ^ 0x736f6d6570736575u, k1 ^ 0x646f72616e646f6du, k0 ^ 0x6c7967656e657261u,
                     k1 ^ 0x7465646279746573u};
    uint64_t last = (uint64_t)24 << 56;
    for (int i = 0; i < 4; i++) {
        uint64_t w = i < 3 ? m[i] : last;
        v[3] ^= w;
        sipround(v);
        sipround(v);
        v[0] ^= w;
    }
    v[2] ^= 0xff;
    for (int i = 0; i < 4; i++)
        sipround(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* The client's address masked as the table counts it: family AF_INET (4 bytes used, an
 * IPv4-mapped IPv6 address included) or AF_INET6. False for another family. */
static bool masked(const struct sp_srclimit *t, const struct sockaddr *sa, uint8_t addr[16],
                   int *family, unsigned *prefix)
{
    static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(addr, 0, 16);
    if (sa->sa_family == AF_INET) {
        memcpy(addr, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        *family = AF_INET;
    } else if (sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
        bool mapped = memcmp(a, v4_mapped, sizeof(v4_mapped)) == 0;
        memcpy(addr, mapped ? a + 12 : a, mapped ? 4 : 16);
        *family = mapped ? AF_INET : AF_INET6;
    } else {
        return false;
    }
    *prefix = *family == AF_INET ? t->prefix_v4 : t->prefix_v6;
    unsigned bytes = *family == AF_INET ? 4 : 16;
    for (unsigned i = 0; i < bytes; i++) {
        unsigned keep = *prefix >= 8 * (i + 1) ? 8 : *prefix > 8 * i ? *prefix - 8 * i : 0;
        addr[i] &= (uint8_t)(0xff00u >> keep);
    }
    return true;
}

static bool client_hash(const struct sp_srclimit *t, const struct sockaddr *sa, uint64_t *h)
{
    uint8_t addr[16];
    int family;
    unsigned prefix;
    if (!masked(t, sa, addr, &family, &prefix))
        return false;
    uint64_t m[3] = {(uint64_t)family};
    memcpy(&m[1], addr, 16);
    *h = siphash24(t->k0, t->k1, m);
    return true;
}

/* ---- the table -------------------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* A key nobody outside can guess. getrandom without GRND_NONBLOCK could wait for the entropy
 * pool at boot; then the clock and the table's address stand in (still unknown to clients). */
static void random_key(struct sp_srclimit *t)
{
    uint64_t k[2];
    if (getrandom(k, sizeof(k), GRND_NONBLOCK) != (ssize_t)sizeof(k)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uintptr_t)t;
        k[0] = splitmix(&x);
        k[1] = splitmix(&x);
    }
    t->k0 = k[0];
    t->k1 = k[1];
}

int sp_srclimit_new(unsigned size, unsigned prefix_v4, unsigned prefix_v6, struct sp_srclimit **out)
{
    if (size < SP_SRCLIMIT_MIN_SIZE || size > SP_SRCLIMIT_MAX_SIZE || (size & (size - 1)) != 0 ||
        prefix_v4 > 32 || prefix_v6 > 128)
        return -EINVAL;
    struct sp_srclimit *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->v = aligned_alloc(64, (size_t)size * sizeof(*t->v));
    if (t->v == NULL) {
        free(t);
        return -ENOMEM;
    }
    memset(t->v, 0, (size_t)size * sizeof(*t->v));
    atomic_init(&t->refs, 1);
    t->mask = size - 1;
    t->prefix_v4 = (uint8_t)prefix_v4;
    t->prefix_v6 = (uint8_t)prefix_v6;
    random_key(t);
    *out = t;
    return 0;
}

struct sp_srclimit *sp_srclimit_ref(struct sp_srclimit *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    return t;
}

void sp_srclimit_unref(struct sp_srclimit *t)
{
    if (t != NULL && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1) {
        free(t->v);
        free(t);
    }
}

bool sp_srclimit_fits(const struct sp_srclimit *t, unsigned size, unsigned prefix_v4,
                      unsigned prefix_v6)
{
    return t->mask + 1 == size && t->prefix_v4 == prefix_v4 && t->prefix_v6 == prefix_v6;
}

unsigned sp_srclimit_size(const struct sp_srclimit *t)
{
    return t->mask + 1;
}

/* ---- counting ---------------------------------------------------------------------------- */

/* The bucket of lc in GCRA terms: the interval between two tokens (0: no rate limit) and how
 * far ahead of now the time stamp may run, a burst of one second's worth (at least one). */
static uint64_t rate_interval(const struct sp_limits_conf *lc, uint64_t *tolerance)
{
    if (lc->rate == 0 || lc->rate_period_ms == 0)
        return 0;
    uint64_t period = lc->rate_period_ms * NS_PER_MS;
    uint64_t interval = (period + lc->rate - 1) / lc->rate; /* rounded up: never above the rate */
    uint64_t burst = (uint64_t)lc->rate * 1000u / lc->rate_period_ms;
    *tolerance = (burst > 1 ? burst - 1 : 0) * interval;
    return interval;
}

static bool entry_free(struct entry *e, uint64_t id, uint64_t now_ns)
{
    return COUNT_OF(id) == 0 && atomic_load(&e->tat) <= now_ns;
}

/* Spends a token of entry e, whose count the caller has just raised. False when none is left:
 * then the count goes back down. */
static bool take_token(struct entry *e, uint64_t interval, uint64_t tolerance, uint64_t now_ns)
{
    uint64_t tat = atomic_load(&e->tat);
    for (;;) {
        uint64_t base = tat > now_ns ? tat : now_ns;
        if (base - now_ns > tolerance) {
            atomic_fetch_sub(&e->id, 1);
            return false;
        }
        if (atomic_compare_exchange_weak(&e->tat, &tat, base + interval))
            return true;
    }
}

/* Counts a connection on entry `slot`, last seen as `id`, if it still belongs to fp. Returns a
 * verdict, or -1 when the entry went to another client meanwhile (look again). */
static int take(struct sp_srclimit *t, uint32_t slot, uint64_t id, uint64_t fp,
                const struct sp_limits_conf *lc, uint64_t now_ns)
{
    struct entry *e = &t->v[slot];
    do {
        if (FP_OF(id) != fp)
            return -1;
        unsigned n = COUNT_OF(id);
        if (lc->per_source_connections != 0 && n >= lc->per_source_connections)
            return SP_SRCLIMIT_OVER_CONN;
        if (n == COUNT_MAX)
            return SP_SRCLIMIT_UNTRACKED; /* only without per_source_connections */
    } while (!atomic_compare_exchange_weak(&e->id, &id, id + 1));
    uint64_t tolerance = 0;
    uint64_t interval = rate_interval(lc, &tolerance);
    if (interval != 0 && !take_token(e, interval, tolerance, now_ns))
        return SP_SRCLIMIT_OVER_RATE;
    return SP_SRCLIMIT_OK;
}

/* One look at the client's window: its own entry if there is one, else the first free entry,
 * claimed. A verdict, or -1 to look again. */
static int probe(struct sp_srclimit *t, uint64_t h, const struct sp_limits_conf *lc,
                 uint64_t now_ns, uint32_t *slot)
{
    uint64_t fp = h >> COUNT_BITS;
    uint32_t free_slot = 0;
    uint64_t free_id = 0;
    bool have_free = false;
    for (uint32_t p = 0; p < SP_SRCLIMIT_PROBE; p++) {
        uint32_t j = (uint32_t)(h + p) & t->mask;
        uint64_t id = atomic_load(&t->v[j].id);
        if (FP_OF(id) == fp) {
            *slot = j;
            return take(t, j, id, fp, lc, now_ns);
        }
        if (!have_free && entry_free(&t->v[j], id, now_ns)) {
            have_free = true;
            free_slot = j;
            free_id = id;
        }
    }
    if (!have_free)
        return SP_SRCLIMIT_UNTRACKED;
    uint64_t mine = fp << COUNT_BITS;
    if (!atomic_compare_exchange_strong(&t->v[free_slot].id, &free_id, mine))
        return -1;
    *slot = free_slot;
    return take(t, free_slot, mine, fp, lc, now_ns);
}

enum sp_srclimit_verdict sp_srclimit_acquire(struct sp_srclimit *t, const struct sp_limits_conf *lc,
                                             const struct sockaddr *client, uint64_t now_ms,
                                             struct sp_srclimit_hold *hold)
{
    uint64_t h;
    *hold = (struct sp_srclimit_hold){0};
    if (!client_hash(t, client, &h))
        return SP_SRCLIMIT_OK;
    for (int i = 0; i < ATTEMPTS; i++) {
        uint32_t slot = 0;
        int v = probe(t, h, lc, now_ms * NS_PER_MS, &slot);
        if (v < 0)
            continue;
        if (v == SP_SRCLIMIT_OK)
            *hold = (struct sp_srclimit_hold){t, slot};
        return (enum sp_srclimit_verdict)v;
    }
    return SP_SRCLIMIT_UNTRACKED;
}

void sp_srclimit_release(struct sp_srclimit_hold *hold)
{
    if (hold->tab == NULL)
        return;
    /* The count is at least ours, so this cannot borrow from the fingerprint, and the entry
     * cannot have changed hands: only an entry with no open connection is taken over. */
    atomic_fetch_sub(&hold->tab->v[hold->slot].id, 1);
    *hold = (struct sp_srclimit_hold){0};
}

size_t sp_srclimit_in_use(const struct sp_srclimit *t, uint64_t now_ms)
{
    size_t n = 0;
    uint64_t now_ns = now_ms * NS_PER_MS;
    for (uint32_t i = 0; i <= t->mask; i++) {
        struct entry *e = &t->v[i];
        uint64_t id = atomic_load_explicit(&e->id, memory_order_relaxed);
        if (COUNT_OF(id) != 0 || atomic_load_explicit(&e->tat, memory_order_relaxed) > now_ns)
            n++;
    }
    return n;
}

const char *sp_srclimit_client_str(const struct sp_srclimit *t, const struct sockaddr *client,
                                   char *buf, size_t size)
{
    uint8_t addr[16];
    int family;
    unsigned prefix;
    char text[INET6_ADDRSTRLEN];
    if (!masked(t, client, addr, &family, &prefix) ||
        inet_ntop(family, addr, text, sizeof(text)) == NULL)
        snprintf(buf, size, "?");
    else
        snprintf(buf, size, "%s/%u", text, prefix);
    return buf;
}

const char *sp_srclimit_verdict_name(enum sp_srclimit_verdict v)
{
    static const char *const names[SP_SRCLIMIT_VERDICT_COUNT] = {
        "ok", "untracked", "per_source_connections", "per_source_rate"};
    return (unsigned)v < SP_SRCLIMIT_VERDICT_COUNT ? names[v] : "unknown";
}
