/* balancer.c: the part every algorithm shares: the tried set, the choice of candidates (usable,
 * untried, primaries before backups), the per-balancer RNG and dispatch to the algorithm files
 * lb_*.c through struct sp_balancer_ops. */
#include "balancer.h"
#include "lb.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void sp_tried_add(struct sp_tried *t, unsigned idx)
{
    t->idx[t->n % SP_TRIED_MAX] = idx;
    t->n++;
}

bool sp_tried_has(const struct sp_tried *t, unsigned idx)
{
    unsigned kept = t->n < SP_TRIED_MAX ? t->n : SP_TRIED_MAX;

    for (unsigned i = 0; i < kept; i++) {
        if (t->idx[i] == idx)
            return true;
    }
    return false;
}

static const struct sp_balancer_ops *const algorithms[SP_BALANCE_COUNT] = {
    [SP_BALANCE_ROUND_ROBIN] = &sp_lb_round_robin,
    [SP_BALANCE_LEAST_CONN] = &sp_lb_least_conn,
    [SP_BALANCE_SOURCE_HASH] = &sp_lb_source_hash,
    [SP_BALANCE_RANDOM_TWO] = &sp_lb_random_two,
};

/* splitmix64: one add and a finalizer per draw, any seed (0 included) gives a full-period
 * sequence, and it is plenty for spreading connections. */
uint64_t sp_lb_rand(struct sp_balancer *b)
{
    uint64_t z = (b->rng += 0x9e3779b97f4a7c15u);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

uint64_t sp_lb_rand_below(struct sp_balancer *b, uint64_t bound)
{
    return sp_lb_rand(b) % bound;
}

/* One allocation holds the candidate struct and its three arrays. */
static struct sp_lb_cands *cands_new(size_t nservers)
{
    size_t n = nservers != 0 ? nservers : 1;
    size_t size = sizeof(struct sp_lb_cands) + n * sizeof(struct sp_server *) +
                  n * sizeof(unsigned) + n * sizeof(bool);
    struct sp_lb_cands *c = calloc(1, size);

    if (c == NULL)
        return NULL;
    c->srv = (struct sp_server **)(c + 1);
    c->weight = (unsigned *)(c->srv + n);
    c->is_cand = (bool *)(c->weight + n);
    return c;
}

int sp_balancer_init(struct sp_balancer *b, struct sp_upstream *up, uint64_t seed)
{
    memset(b, 0, sizeof(*b));
    if ((unsigned)up->conf->balance >= SP_BALANCE_COUNT)
        return -EINVAL;
    b->up = up;
    b->rng = seed;
    b->cands = cands_new(up->nservers);
    if (b->cands == NULL)
        return -ENOMEM;
    const struct sp_balancer_ops *ops = algorithms[up->conf->balance];
    if (ops->init != NULL) {
        int rc = ops->init(b);
        if (rc != 0) {
            sp_balancer_deinit(b);
            return rc;
        }
    }
    /* Set last: deinit calls ops->free only for a balancer whose init succeeded. */
    b->ops = ops;
    return 0;
}

void sp_balancer_deinit(struct sp_balancer *b)
{
    if (b->ops != NULL && b->ops->free != NULL)
        b->ops->free(b);
    b->state = NULL;
    b->ops = NULL;
    free(b->cands);
    b->cands = NULL;
}

/* Fills b->cands with the servers of one tier (primaries or backups) that may take this
 * connection, and returns how many: the usable ones, or with `held` those that only a passive
 * hold keeps out. is_cand[] is rewritten for every server, so entries of the other tier read
 * false. */
static size_t collect(struct sp_balancer *b, const struct sp_tried *tried, uint64_t now_ms,
                      bool backup, bool held, bool as_up)
{
    struct sp_lb_cands *c = b->cands;
    bool *is_cand = c->is_cand;

    c->n = 0;
    c->total_weight = 0;
    c->backup = backup;
    for (size_t i = 0; i < b->up->nservers; i++) {
        struct sp_server *s = &b->up->servers[i];
        bool ok = s->conf->backup == backup &&
                  (as_up  ? sp_server_usable_as_up(s, now_ms, held)
                   : held ? sp_server_held(s, now_ms)
                          : sp_server_usable(s, now_ms)) &&
                  (tried == NULL || !sp_tried_has(tried, (unsigned)i));

        is_cand[i] = ok;
        if (!ok)
            continue;
        unsigned w = sp_server_effective_weight(s, now_ms);
        c->srv[c->n] = s;
        c->weight[c->n] = w;
        c->total_weight += w;
        c->n++;
    }
    return c->n;
}

struct sp_server *sp_balancer_pick(struct sp_balancer *b, const struct sp_tried *tried,
                                   const struct sockaddr *client, uint64_t now_ms)
{
    if (b->ops == NULL)
        return NULL;
    /* A tried primary counts as unusable, so retries fall through to the backups only once
     * every primary has failed this connection. Passive holds give way last: when they would
     * leave no server at all, the held servers are tried rather than refusing the client
     * (nginx resets the failure state then), so a sole server is used again as soon as it is
     * back instead of after fail_timeout. Health-check and drain verdicts always stand. */
    for (int as_up = 0; as_up < 2; as_up++) {
        if (collect(b, tried, now_ms, false, false, as_up) != 0 ||
            collect(b, tried, now_ms, true, false, as_up) != 0 ||
            collect(b, tried, now_ms, false, true, as_up) != 0 ||
            collect(b, tried, now_ms, true, true, as_up) != 0)
            return b->ops->pick(b, b->cands, client);
        /* all_down: fail_open, Envoy's panic mode: when the health checks have every server
         * down, their verdict is more likely wrong than every server dead, so the servers are
         * balanced over as if they were up (in the same order: primaries, backups, holds).
         * Drains still stand. Only reached when nothing is usable, so never on a healthy
         * pool's path. */
        if (b->up->conf->all_down != SP_ALL_DOWN_FAIL_OPEN || !sp_upstream_all_down(b->up))
            break;
    }
    return NULL;
}

/* Position in `up` of the server sharing state `st`, or -1. */
static long index_of_state(const struct sp_upstream *up, const struct sp_server_state *st)
{
    for (size_t i = 0; i < up->nservers; i++) {
        if (up->servers[i].state == st)
            return (long)i;
    }
    return -1;
}

void sp_balancer_carry(struct sp_balancer *b, const struct sp_balancer *prev)
{
    if (b->ops == NULL || prev == NULL || prev->ops != b->ops)
        return;
    b->rng = prev->rng;
    if (b->ops->carry == NULL)
        return;
    /* map[i]: where server i of the new set was in the old one (-1 if new). Allocation may
     * fail; the balancer then simply starts fresh, which is what it did before carrying. */
    long *map = malloc((b->up->nservers + 1) * sizeof(*map));
    if (map == NULL)
        return;
    for (size_t i = 0; i < b->up->nservers; i++)
        map[i] = index_of_state(prev->up, b->up->servers[i].state);
    b->ops->carry(b, prev, map);
    free(map);
}
