/* fuzz.h: what the fuzz targets share. Each target defines LLVMFuzzerTestOneInput; libFuzzer
 * drives it in a SPLICER_FUZZ build (clang), replay.c drives it over the committed corpus and
 * regression inputs in every other build (ctest fuzz.<target>).
 *
 * A failed property aborts with a message, so libFuzzer keeps the input as a crash and the
 * replay fails its ctest entry. Split points and other choices come from a generator seeded by
 * a hash of the input, so the input itself stays the protocol bytes (a corpus file is a real
 * header or ClientHello) and a run is reproducible from the file alone. */
#ifndef SPLICER_FUZZ_H
#define SPLICER_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: property failed: %s: ", __FILE__, __LINE__, #cond);            \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A small deterministic generator (xorshift64*), seeded from the input's FNV-1a hash. */
struct fz_rng {
    uint64_t s;
};

static inline void fz_rng_seed(struct fz_rng *r, const uint8_t *data, size_t size)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 1099511628211ull;
    r->s = h != 0 ? h : 1;
}

static inline uint64_t fz_rng_next(struct fz_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ull;
}

/* Uniform enough in [0, n) for n > 0. */
static inline size_t fz_rng_below(struct fz_rng *r, size_t n)
{
    return (size_t)(fz_rng_next(r) % n);
}

/* A heap copy of exactly n bytes (at least one allocated), so ASan sees any read past them. */
static inline unsigned char *fz_dup(const void *p, size_t n)
{
    unsigned char *c = malloc(n > 0 ? n : 1);
    if (c == NULL)
        abort();
    if (n > 0)
        memcpy(c, p, n);
    return c;
}

/* The n bytes as a NUL-terminated heap string (n + 1 bytes allocated). */
static inline char *fz_str(const void *p, size_t n)
{
    char *c = malloc(n + 1);
    if (c == NULL)
        abort();
    if (n > 0)
        memcpy(c, p, n);
    c[n] = '\0';
    return c;
}

#endif
