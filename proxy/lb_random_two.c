/* lb_random_two.c: power of two random choices. Two distinct candidates drawn by effective
 * weight, and the one with fewer open connections relative to weight wins: close to
 * least_conn's spread without every worker herding onto the same idle server. */
#include "lb.h"

/* Index in c->srv of the candidate that `r` (in [0, total)) falls on when each candidate
 * covers a span of its weight, leaving out `skip` (c->n for none). */
static size_t weighted_at(const struct sp_lb_cands *c, uint64_t r, size_t skip)
{
    for (size_t i = 0; i < c->n; i++) {
        if (i == skip)
            continue;
        if (r < c->weight[i])
            return i;
        r -= c->weight[i];
    }
    /* Not reached when r < the weights' sum; the last candidate is a safe answer. */
    return c->n - 1 != skip ? c->n - 1 : 0;
}

static struct sp_server *r2_pick(struct sp_balancer *b, const struct sp_lb_cands *c,
                                 const struct sockaddr *client)
{
    (void)client;
    if (c->n == 1)
        return c->srv[0];

    size_t i = weighted_at(c, sp_lb_rand_below(b, c->total_weight), c->n);
    size_t j = weighted_at(c, sp_lb_rand_below(b, c->total_weight - c->weight[i]), i);
    uint32_t ai = atomic_load_explicit(&c->srv[i]->state->active, memory_order_relaxed);
    uint32_t aj = atomic_load_explicit(&c->srv[j]->state->active, memory_order_relaxed);

    /* On a tie the first draw wins, which keeps idle servers' shares proportional to weight. */
    return sp_lb_less_loaded(aj, c->weight[j], ai, c->weight[i]) ? c->srv[j] : c->srv[i];
}

const struct sp_balancer_ops sp_lb_random_two = {
    .name = "random_two",
    .pick = r2_pick,
};
