/* fuzz_tls_sni.c: the ClientHello parser (sp_sni_parse) and the route table (tls_sni.c).
 * Properties, beyond "no crash, no read past the input":
 *  - prefixes: a prefix of the input (bytes still on their way, as a peek sees them) answers
 *    "need more" or exactly what the whole input answers, and keeps an answer once it has one;
 *  - records: a ClientHello in one record, cut into 2 to 4 records at random points, gives the
 *    same answer (TLS lets a client fragment its hello anywhere);
 *  - a name found is lowercase, at most 253 characters, a valid route pattern, and routes to
 *    itself through a table; a buffer one byte short answers -ENOSPC and writes nothing;
 *  - the peek on a socket (sp_sni_peek in inspect.c, the input written into a socket pair) gives
 *    the parser's answer, "need more" being "retry", and leaves every byte in the socket;
 *  - sp_sni_need (what SO_RCVLOWAT waits for) asks for more than a prefix has, never more than
 *    SP_SNI_BUF_MAX, and, for a whole ClientHello in whole records, never past its end: a
 *    client that sent its hello and waits for the answer is never left waiting. */
#include "fuzz.h"
#include "inspect.h"
#include "tls_sni.h"

#include <errno.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_INPUT   (SP_SNI_BUF_MAX + 64)
#define ALL_PREFIX  1024 /* inputs up to this size have every prefix checked; longer, a sample */
#define SAMPLE_CUTS 48

static int parse_exact(const uint8_t *data, size_t n, char *name, size_t name_len)
{
    unsigned char *c = fz_dup(data, n);
    int rc = sp_sni_parse(c, n, name, name_len);
    free(c);
    return rc;
}

static void check_name(const uint8_t *data, size_t size, const char *name)
{
    size_t n = strlen(name);
    FZ_CHECK(n > 0 && n < SP_SNI_NAME_MAX, "name of %zu characters", n);
    for (size_t i = 0; i < n; i++)
        FZ_CHECK(!(name[i] >= 'A' && name[i] <= 'Z'), "upper case in '%s'", name);
    FZ_CHECK(sp_sni_pattern_check(name) == 0, "'%s' is not a valid pattern", name);

    struct sp_sni_routes t = {0};
    FZ_CHECK(sp_sni_routes_add(&t, name, 1000) == 0, "cannot add '%s'", name);
    FZ_CHECK(sp_sni_routes_match(&t, name) == 1000, "'%s' does not route to itself", name);
    FZ_CHECK(sp_sni_routes_add(&t, name, 1) == -EEXIST, "'%s' added twice", name);
    /* a wildcard for every parent domain, routed by its suffix length: a name one label
     * deeper than `name` matches "*.name", and `name` itself its longest parent wildcard */
    char pat[SP_SNI_NAME_MAX + 2], sub[SP_SNI_NAME_MAX + 2];
    int longest = -1;
    for (const char *d = name; (d = strchr(d, '.')) != NULL; d++) {
        snprintf(pat, sizeof(pat), "*%s", d);
        FZ_CHECK(sp_sni_routes_add(&t, pat, (int)strlen(d)) == 0, "cannot add '%s'", pat);
        longest = longest < 0 ? (int)strlen(d) : longest;
    }
    if (n + 2 < SP_SNI_NAME_MAX) {
        snprintf(pat, sizeof(pat), "*.%s", name);
        FZ_CHECK(sp_sni_routes_add(&t, pat, 2000) == 0, "cannot add '%s'", pat);
        snprintf(sub, sizeof(sub), "x.%s", name);
        FZ_CHECK(sp_sni_routes_match(&t, sub) == 2000, "'%s' misses '%s'", sub, pat);
    }
    FZ_CHECK(sp_sni_routes_match(&t, name) == 1000, "exact '%s' lost to a wildcard", name);
    struct sp_sni_routes w = t; /* the same table without its exact entry */
    w.v++;
    w.n--;
    FZ_CHECK(sp_sni_routes_match(&w, name) == longest, "'%s' routes to %d, not %d", name,
             sp_sni_routes_match(&w, name), longest);
    sp_sni_routes_deinit(&t);
    sp_sni_routes_deinit(NULL);

    char small[SP_SNI_NAME_MAX];
    strcpy(small, "untouched");
    FZ_CHECK(parse_exact(data, size, small, n) == -ENOSPC, "no -ENOSPC with %zu bytes", n);
    FZ_CHECK(strcmp(small, "untouched") == 0, "name written with -ENOSPC");
    FZ_CHECK(parse_exact(data, size, small, n + 1) == 1 && strcmp(small, name) == 0,
             "a buffer of exactly %zu bytes fails", n + 1);
}

/* True when data[0..size) is a sequence of whole TLS records. */
static bool whole_records(const uint8_t *data, size_t size)
{
    size_t end = 0;
    while (end + 5 <= size)
        end += 5 + ((size_t)data[end + 3] << 8 | data[end + 4]);
    return end == size;
}

/* What every prefix is checked against: the whole input's answer. */
struct whole {
    const uint8_t *data;
    size_t size;
    int rc;
    const char *name;
    bool honest; /* a whole ClientHello (found or not) in whole records */
    int prev;    /* the answer of the last prefix checked */
};

static void check_prefix(struct whole *w, size_t k)
{
    char pn[SP_SNI_NAME_MAX];
    int p = parse_exact(w->data, k, pn, sizeof(pn));
    FZ_CHECK(p == 0 || p == w->rc, "prefix %zu answers %d, the whole input %d", k, p, w->rc);
    FZ_CHECK(w->prev == 0 || p == w->prev, "prefix %zu answers %d after %d", k, p, w->prev);
    if (p == 1)
        FZ_CHECK(strcmp(pn, w->name) == 0, "prefix %zu finds '%s', not '%s'", k, pn, w->name);
    if (p == 0) {
        size_t need = sp_sni_need(w->data, k);
        FZ_CHECK(need > k && need <= SP_SNI_BUF_MAX, "need %zu after %zu bytes", need, k);
        FZ_CHECK(!w->honest || need <= w->size, "need %zu after %zu bytes of a %zu-byte hello",
                 need, k, w->size);
    }
    w->prev = p;
}

static void check_prefixes(struct whole *w, struct fz_rng *rng)
{
    if (w->size <= ALL_PREFIX) {
        for (size_t k = 0; k < w->size; k++)
            check_prefix(w, k);
        return;
    }
    /* increasing sample: the first record header's neighbourhood and random cuts */
    size_t cuts[SAMPLE_CUTS];
    for (size_t i = 0; i < SAMPLE_CUTS; i++)
        cuts[i] = i < 8 ? i : fz_rng_below(rng, w->size);
    for (size_t i = 1; i < SAMPLE_CUTS; i++) { /* insertion sort: tiny */
        size_t v = cuts[i], j = i;
        for (; j > 0 && cuts[j - 1] > v; j--)
            cuts[j] = cuts[j - 1];
        cuts[j] = v;
    }
    for (size_t i = 0; i < SAMPLE_CUTS; i++)
        check_prefix(w, cuts[i]);
}

/* When the input is one record holding a whole ClientHello whose handshake header is sound,
 * the same hello cut into 2..4 records must give the same answer. */
static void check_records(const uint8_t *data, size_t size, int rc, const char *name,
                          struct fz_rng *rng)
{
    if (size < 9 || data[0] != 22 || data[1] != 3 || data[2] > 4 || data[5] != 1)
        return;
    size_t rl = (size_t)data[3] << 8 | data[4];
    size_t hl = 4 + ((size_t)data[6] << 16 | (size_t)data[7] << 8 | data[8]);
    if (rl == 0 || rl > 16384 || hl > rl || hl > SP_SNI_MAX_HELLO || size < 5 + rl)
        return;
    size_t parts = 2 + fz_rng_below(rng, 3), cut[4], o = 0;
    if (hl < parts)
        return;
    /* parts - 1 distinct cut points inside the hello, increasing */
    cut[0] = 0;
    for (size_t i = 1; i < parts; i++)
        cut[i] = cut[i - 1] + 1 + fz_rng_below(rng, hl - cut[i - 1] - (parts - i));
    unsigned char *out = malloc(hl + 5 * parts);
    if (out == NULL)
        abort();
    for (size_t i = 0; i < parts; i++) {
        size_t end = i + 1 < parts ? cut[i + 1] : hl, len = end - cut[i];
        out[o++] = 22;
        out[o++] = data[1];
        out[o++] = data[2];
        out[o++] = (unsigned char)(len >> 8);
        out[o++] = (unsigned char)len;
        memcpy(out + o, data + 5 + cut[i], len);
        o += len;
    }
    char fn[SP_SNI_NAME_MAX];
    int f = parse_exact(out, o, fn, sizeof(fn));
    FZ_CHECK(f == rc, "in %zu records: %d, in one: %d", parts, f, rc);
    if (rc == 1)
        FZ_CHECK(strcmp(fn, name) == 0, "in %zu records: '%s', in one: '%s'", parts, fn, name);
    free(out);
}

static void check_peek(const uint8_t *data, size_t size, int rc, const char *name)
{
    int sv[2], found = -1, err = 0;
    size_t need = 0;
    if (size > SP_SNI_BUF_MAX || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return; /* a socket pair's buffer holds the largest hello a peek reads, not more */
    if (write(sv[1], data, size) != (ssize_t)size)
        abort();
    unsigned char *scratch = malloc(SP_SNI_BUF_MAX);
    char pn[SP_SNI_NAME_MAX];
    if (scratch == NULL)
        abort();
    enum sp_inspect_status st = sp_sni_peek(sv[0], scratch, pn, &found, &err, &need);
    if (size == 0)
        FZ_CHECK(st == SP_INSPECT_WAIT, "peek of nothing: %d", st);
    else if (rc == 0)
        FZ_CHECK(st == SP_INSPECT_RETRY && need == sp_sni_need(data, size),
                 "peek of a prefix: %d, need %zu", st, need);
    else if (rc == -EINVAL)
        FZ_CHECK(st == SP_INSPECT_MALFORMED, "peek of a malformed hello: %d", st);
    else
        FZ_CHECK(st == SP_INSPECT_DONE && found == (rc == 1) && (rc != 1 || strcmp(pn, name) == 0),
                 "peek: %d, found %d", st, found);
    /* a peek consumes nothing: the hello goes to the server as it came */
    ssize_t left = recv(sv[0], scratch, SP_SNI_BUF_MAX, MSG_DONTWAIT);
    FZ_CHECK((size == 0 && left < 0) || (left == (ssize_t)size && memcmp(scratch, data, size) == 0),
             "peek consumed bytes: %zd of %zu left", left, size);
    free(scratch);
    close(sv[0]);
    close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char name[SP_SNI_NAME_MAX], name_end_probe[SP_SNI_NAME_MAX];
    struct fz_rng rng;
    if (size > MAX_INPUT)
        return 0;
    fz_rng_seed(&rng, data, size);
    strcpy(name, "untouched");
    int rc = parse_exact(data, size, name, sizeof(name));
    FZ_CHECK(rc == 1 || rc == 0 || rc == -ENOENT || rc == -EINVAL, "rc %d", rc);
    if (rc == 1)
        check_name(data, size, name);
    else
        FZ_CHECK(strcmp(name, "untouched") == 0, "name written with rc %d", rc);
    FZ_CHECK(size < SP_SNI_BUF_MAX || rc != 0, "need more after %zu bytes", size);
    /* honest: the hello ends where the input ends, so a client could stop there and wait */
    struct whole w = {data, size, rc, name, false, 0};
    w.honest = (rc == 1 || rc == -ENOENT) && whole_records(data, size) &&
               parse_exact(data, size - 1, name_end_probe, sizeof(name_end_probe)) == 0;
    check_prefixes(&w, &rng);
    check_records(data, size, rc, name, &rng);
    check_peek(data, size, rc, name);
    return 0;
}
