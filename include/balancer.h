/* balancer.h: choosing a server of one upstream for a new connection. Each worker owns one
 * sp_balancer per upstream, so the choice needs no lock; server state is read through atomics.
 * Pure: no libuv, no I/O. */
#ifndef SPLICER_BALANCER_H
#define SPLICER_BALANCER_H

#include "upstream.h"
#include <stdint.h>
#include <sys/socket.h>

/* Servers already tried by one connection, so retries move on to another. Holds the last
 * SP_TRIED_MAX; with more retries than that the oldest may be tried again. */
#define SP_TRIED_MAX 8
struct sp_tried {
    uint32_t idx[SP_TRIED_MAX];
    unsigned n; /* total added; only the last SP_TRIED_MAX are kept */
};

static inline void sp_tried_init(struct sp_tried *t)
{
    t->n = 0;
}
/* Records server index `idx` as tried, dropping the oldest past SP_TRIED_MAX. */
void sp_tried_add(struct sp_tried *t, unsigned idx);
/* True when `idx` is among the last SP_TRIED_MAX added. */
bool sp_tried_has(const struct sp_tried *t, unsigned idx);

struct sp_balancer_ops;
struct sp_lb_cands;

struct sp_balancer {
    const struct sp_balancer_ops *ops; /* borrowed; the algorithm of up->conf->balance */
    struct sp_upstream *up;            /* borrowed */
    void *state;                       /* owned by the algorithm */
    uint64_t rng;                      /* per-balancer splitmix64 state */
    struct sp_lb_cands *cands;         /* owned; candidate buffers sized at init, so a pick
                                          never allocates */
};

/* Prepares the algorithm configured for `up`. seed varies per worker. Returns 0 or -ENOMEM. */
int sp_balancer_init(struct sp_balancer *b, struct sp_upstream *up, uint64_t seed);

/* Carries the choice state of `prev` (the balancer of the same upstream in the generation before,
 * still alive) over to the freshly initialized `b`, so a reload or a DNS change does not reset
 * it: round_robin keeps the position of every server that stays (matched by shared server
 * state), least_conn its cursor, and every algorithm its random sequence. Nothing happens when
 * prev is NULL or runs another algorithm. source_hash has nothing to carry: its ring depends
 * only on the servers. Owner worker only. */
void sp_balancer_carry(struct sp_balancer *b, const struct sp_balancer *prev);

/* Frees the algorithm's state. Safe on a zeroed struct. */
void sp_balancer_deinit(struct sp_balancer *b);

/* Picks a server for a connection from `client` (may be NULL), skipping servers in `tried`
 * (may be NULL) and servers not usable at now_ms. Backups are considered only when no primary
 * is usable (tried primaries count as unusable for that connection). Returns NULL when no
 * server can be had; with all_down: fail_open and every server down by health checks, the
 * servers not drained are picked from as if they were up. source_hash uses only the client's IP (an
 * IPv4-mapped IPv6 address as the IPv4 one); a NULL client maps like any other fixed key. Never
 * allocates. Owner worker only. */
struct sp_server *sp_balancer_pick(struct sp_balancer *b, const struct sp_tried *tried,
                                   const struct sockaddr *client, uint64_t now_ms);

#endif
