/* lb.h: internal interface between balancer.c and the algorithm files (lb_*.c). balancer.c
 * filters the servers (usable, not tried, primaries before backups); an algorithm only chooses
 * among the candidates it is handed. Not for use outside the balancer. */
#ifndef SPLICER_LB_H
#define SPLICER_LB_H

#include "balancer.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The servers one pick may choose from. All arrays live in the balancer's scratch, sized at
 * init, so a pick never allocates. */
struct sp_lb_cands {
    size_t n;               /* candidates; always >= 1 when an algorithm's pick is called */
    bool backup;            /* true when these are backups (no primary was left) */
    uint64_t total_weight;  /* sum of weight[] */
    struct sp_server **srv; /* borrowed servers, in ascending server index */
    unsigned *weight;       /* their effective weights at this pick, each >= 1 */
    bool *is_cand;          /* by server index: true when that server is in srv[] */
};

struct sp_balancer_ops {
    const char *name;
    /* Builds b->state for b->up (may be NULL). Returns 0 or -ENOMEM. Optional. */
    int (*init)(struct sp_balancer *b);
    /* Frees b->state. Optional; called only after a successful init. */
    void (*free)(struct sp_balancer *b);
    /* Takes over what `prev` (same algorithm, an earlier generation's balancer of the same
     * upstream) learned: map[i] is the index in prev->up of b->up's server i, or -1 for a new
     * server. Optional; called right after a successful init, on the owner worker. */
    void (*carry)(struct sp_balancer *b, const struct sp_balancer *prev, const long *map);
    /* Chooses one of c's candidates; never NULL since c->n >= 1. */
    struct sp_server *(*pick)(struct sp_balancer *b, const struct sp_lb_cands *c,
                              const struct sockaddr *client);
};

extern const struct sp_balancer_ops sp_lb_round_robin;
extern const struct sp_balancer_ops sp_lb_least_conn;
extern const struct sp_balancer_ops sp_lb_source_hash;
extern const struct sp_balancer_ops sp_lb_random_two;

/* Next value of the balancer's splitmix64 generator. */
uint64_t sp_lb_rand(struct sp_balancer *b);

/* A uniform-enough value in [0, bound) (bound >= 1); the modulo bias is below 2^-40 for the
 * bounds a balancer uses (sums of weights). */
uint64_t sp_lb_rand_below(struct sp_balancer *b, uint64_t bound);

/* True when a's load is strictly lower than b's relative to weight: aa/wa < ab/wb, compared
 * as aa*wb < ab*wa so no division and no rounding. */
static inline bool sp_lb_less_loaded(uint32_t aa, unsigned wa, uint32_t ab, unsigned wb)
{
    return (uint64_t)aa * wb < (uint64_t)ab * wa;
}

#endif
