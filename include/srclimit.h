/* srclimit.h: per-client limits of one listener (its `limits:` block): how many connections one
 * client may hold open, and how fast it may open new ones, counted across every worker in one
 * fixed-size table shared by all of them. No libuv, no locks: a client's entry is claimed and
 * updated with compare-and-swap, so an accept costs a hash and a few atomic operations on one or
 * two cache lines, whatever the number of workers or clients.
 *
 * "One client" is an address masked to source_prefix_v4 / source_prefix_v6 (an IPv4-mapped IPv6
 * address counts as the IPv4 address it maps). The table has a fixed number of entries, chosen
 * when it is made and never grown. A client hashes (SipHash-2-4 under a random per-table key, so
 * clients cannot aim at one another's entries) to a window of SP_SRCLIMIT_PROBE consecutive
 * entries; it takes its own entry there, or a free one, or, when the window holds only other
 * live clients, it is not tracked and passes without per-client limits (fail open; the caller
 * counts it). An entry is free when it holds no open connection and its bucket is full again.
 *
 * The rate is a token bucket kept as one time stamp (GCRA, the generic cell rate algorithm): a
 * client may open a connection when the stamp is less than a burst's worth of intervals ahead of
 * now; each connection moves it one interval on. Integer nanoseconds, so nothing drifts.
 *
 * Races between workers are settled by the CAS; two that remain, both bounded and harmless: a
 * client whose very first connections arrive on two workers in the same instant may, rarely, get
 * two entries for a moment (each counts part of its connections until one drains), and a client
 * that takes over an entry a moment after its previous owner opened and closed a connection may
 * find that one token spent. */
#ifndef SPLICER_SRCLIMIT_H
#define SPLICER_SRCLIMIT_H

#include "config.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SP_SRCLIMIT_PROBE    8       /* entries a client may use: two cache lines */
#define SP_SRCLIMIT_MIN_SIZE 8       /* the smallest table (tests); the config allows 1024.. */
#define SP_SRCLIMIT_MAX_SIZE 4194304 /* 2^22 entries of 16 bytes: 64 MiB */
#define SP_SRCLIMIT_STR_MAX  50      /* "ffff:...:ffff/128" and a NUL fit */

struct sp_srclimit;

/* What a connection holds in the table while it is open; give it back with
 * sp_srclimit_release. Zeroed (tab NULL) it holds nothing. */
struct sp_srclimit_hold {
    struct sp_srclimit *tab; /* borrowed: whoever made the table keeps it alive meanwhile */
    uint32_t slot;
};

enum sp_srclimit_verdict {
    SP_SRCLIMIT_OK = 0,    /* admitted and counted (or the address has no family to count) */
    SP_SRCLIMIT_UNTRACKED, /* admitted without limits: no room in the client's window */
    SP_SRCLIMIT_OVER_CONN, /* refused: per_source_connections open already */
    SP_SRCLIMIT_OVER_RATE, /* refused: the client's bucket is empty */
    SP_SRCLIMIT_VERDICT_COUNT
};

/* A new table of `size` entries (a power of two, SP_SRCLIMIT_MIN_SIZE..SP_SRCLIMIT_MAX_SIZE)
 * for clients masked to prefix_v4 (0..32) and prefix_v6 (0..128), with one reference and a fresh
 * random hash key. Returns 0, -EINVAL for a size or prefix out of range, or -ENOMEM. Any thread;
 * the memory (16 bytes an entry) is all allocated here. */
int sp_srclimit_new(unsigned size, unsigned prefix_v4, unsigned prefix_v6,
                    struct sp_srclimit **out);

/* Takes a reference. Any thread. */
struct sp_srclimit *sp_srclimit_ref(struct sp_srclimit *t);

/* Drops a reference; the last frees the table. No hold may be left on it. NULL is a no-op. */
void sp_srclimit_unref(struct sp_srclimit *t);

/* True when `t` was made for this size and these prefixes, so a reload may keep it (and the
 * counts in it) for a listener whose other limits changed. */
bool sp_srclimit_fits(const struct sp_srclimit *t, unsigned size, unsigned prefix_v4,
                      unsigned prefix_v6);

/* Counts a new connection from `client` against the limits `lc` (its per_source_connections and
 * per_source_rate; the prefixes are the table's) at `now_ms` on a monotonic clock. On
 * SP_SRCLIMIT_OK *hold is what the connection must release when it closes (it may hold nothing,
 * for an address that is neither IPv4 nor IPv6); on any other verdict *hold holds nothing. A
 * refused connection takes no token and leaves no count behind. Any thread, concurrently. */
enum sp_srclimit_verdict sp_srclimit_acquire(struct sp_srclimit *t, const struct sp_limits_conf *lc,
                                             const struct sockaddr *client, uint64_t now_ms,
                                             struct sp_srclimit_hold *hold);

/* Gives back what a connection held and zeroes *hold. A zeroed hold is a no-op. Any thread. */
void sp_srclimit_release(struct sp_srclimit_hold *hold);

/* Clients tracked at now_ms: entries with an open connection or a bucket still refilling. Reads
 * the whole table (16 bytes an entry); for the admin snapshot. Any thread. */
size_t sp_srclimit_in_use(const struct sp_srclimit *t, uint64_t now_ms);

/* The number of entries. */
unsigned sp_srclimit_size(const struct sp_srclimit *t);

/* "10.1.2.0/24" for `client` masked as the table masks it, into buf (SP_SRCLIMIT_STR_MAX
 * bytes suffice); "?" for another family. Returns buf. */
const char *sp_srclimit_client_str(const struct sp_srclimit *t, const struct sockaddr *client,
                                   char *buf, size_t size);

/* The verdict's reason as the metrics name it: "per_source_connections", "per_source_rate";
 * "ok" and "untracked" for the others. */
const char *sp_srclimit_verdict_name(enum sp_srclimit_verdict v);

#endif
