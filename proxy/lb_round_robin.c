/* lb_round_robin.c: smooth weighted round-robin. Every pick raises each candidate's `current`
 * by its effective weight and lowers the winner's by the total, so weights {1,2,1} interleave
 * as b a c b rather than a b b c, and equal weights rotate strictly. */
#include "lb.h"

#include <errno.h>
#include <stdlib.h>

/* b->state: int64_t current[nservers], by server index. Servers that are not candidates keep
 * their value, so a server back from a failure rejoins where it left off. */

static int rr_init(struct sp_balancer *b)
{
    b->state = calloc(b->up->nservers != 0 ? b->up->nservers : 1, sizeof(int64_t));
    return b->state != NULL ? 0 : -ENOMEM;
}

static void rr_free(struct sp_balancer *b)
{
    free(b->state);
    b->state = NULL;
}

/* A server that stays keeps its `current`, so the rotation goes on where it was; a new one
 * starts at 0 like every server of a fresh balancer. */
static void rr_carry(struct sp_balancer *b, const struct sp_balancer *prev, const long *map)
{
    int64_t *current = b->state;
    const int64_t *old = prev->state;

    for (size_t i = 0; i < b->up->nservers; i++) {
        if (map[i] >= 0)
            current[i] = old[map[i]];
    }
}

static struct sp_server *rr_pick(struct sp_balancer *b, const struct sp_lb_cands *c,
                                 const struct sockaddr *client)
{
    int64_t *current = b->state;
    struct sp_server *best = NULL;
    int64_t best_cur = 0;

    (void)client;
    for (size_t i = 0; i < c->n; i++) {
        int64_t *cur = &current[c->srv[i]->index];

        *cur += c->weight[i];
        /* Strictly greater: ties go to the lowest index, which makes the order reproducible. */
        if (best == NULL || *cur > best_cur) {
            best = c->srv[i];
            best_cur = *cur;
        }
    }
    current[best->index] -= (int64_t)c->total_weight;
    return best;
}

const struct sp_balancer_ops sp_lb_round_robin = {
    .name = "round_robin",
    .init = rr_init,
    .free = rr_free,
    .carry = rr_carry,
    .pick = rr_pick,
};
