/* lb_least_conn.c: the candidate with the fewest open connections relative to its effective
 * weight. Ties go round-robin from the last pick, so idle servers still take turns instead of
 * the first one taking every connection that arrives between two closes. */
#include "lb.h"

#include <errno.h>
#include <stdlib.h>

/* b->state: unsigned, the server index of the last pick (the rotating cursor). */

static int lc_init(struct sp_balancer *b)
{
    unsigned *last = malloc(sizeof(*last));

    if (last == NULL)
        return -ENOMEM;
    /* So that the first scan starts at index 0. */
    *last = (unsigned)b->up->nservers;
    b->state = last;
    return 0;
}

static void lc_free(struct sp_balancer *b)
{
    free(b->state);
    b->state = NULL;
}

/* The cursor moves to the same server in the new set; when that server is gone it stays at
 * "before index 0", as in a fresh balancer. The load itself needs no carrying: `active` lives
 * in the shared server state and already counts every generation's connections. */
static void lc_carry(struct sp_balancer *b, const struct sp_balancer *prev, const long *map)
{
    unsigned *last = b->state;
    const unsigned *old = prev->state;

    for (size_t i = 0; i < b->up->nservers; i++) {
        if (map[i] >= 0 && (unsigned)map[i] == *old)
            *last = (unsigned)i;
    }
}

/* Position in c->srv of the first candidate after server index `last`, wrapping to 0. */
static size_t first_after(const struct sp_lb_cands *c, unsigned last)
{
    for (size_t i = 0; i < c->n; i++) {
        if (c->srv[i]->index > last)
            return i;
    }
    return 0;
}

static struct sp_server *lc_pick(struct sp_balancer *b, const struct sp_lb_cands *c,
                                 const struct sockaddr *client)
{
    unsigned *last = b->state;
    size_t start = *last < b->up->nservers ? first_after(c, *last) : 0;
    size_t best = start;
    uint32_t best_active =
        atomic_load_explicit(&c->srv[start]->state->active, memory_order_relaxed);

    (void)client;
    for (size_t k = 1; k < c->n; k++) {
        size_t i = (start + k) % c->n;
        uint32_t active = atomic_load_explicit(&c->srv[i]->state->active, memory_order_relaxed);

        /* Strictly less: among equals the first one after the cursor wins. */
        if (sp_lb_less_loaded(active, c->weight[i], best_active, c->weight[best])) {
            best = i;
            best_active = active;
        }
    }
    *last = c->srv[best]->index;
    return c->srv[best];
}

const struct sp_balancer_ops sp_lb_least_conn = {
    .name = "least_conn",
    .init = lc_init,
    .free = lc_free,
    .carry = lc_carry,
    .pick = lc_pick,
};
