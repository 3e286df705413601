/* pipe_pool.c: per-worker pipe cache, and the process-wide budget of pipe memory. The kernel may
 * grant less than we ask: an unprivileged process gets EPERM above fs.pipe-max-size, and once
 * the user owns more than fs.pipe-user-pages-soft every new pipe shrinks to two pages. Both only
 * slow the relay down, so we take what we are given and remember to ask for less. The budget is
 * ours: every pipe's granted capacity is counted from its creation to its close. */
#include "pipe_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#define PIPE_MIN_SIZE 4096u
/* Pipes created between two attempts at the full size after the kernel refused it. */
#define PIPE_RETRY_EVERY 256

/* ---- budget ------------------------------------------------------------------------------ */

void sp_pipe_budget_init(struct sp_pipe_budget *b, uint64_t limit)
{
    atomic_init(&b->used, 0);
    atomic_init(&b->limit, limit);
}

void sp_pipe_budget_set_limit(struct sp_pipe_budget *b, uint64_t limit)
{
    atomic_store_explicit(&b->limit, limit, memory_order_relaxed);
}

static uint64_t budget_limit(const struct sp_pipe_budget *b)
{
    return atomic_load_explicit(&b->limit, memory_order_relaxed);
}

static uint64_t budget_left(const struct sp_pipe_budget *b)
{
    uint64_t used = atomic_load_explicit(&b->used, memory_order_relaxed);
    uint64_t limit = budget_limit(b);
    return used < limit ? limit - used : 0;
}

/* Less than a quarter of the budget is free: idle pipes go, so the rest serves new ones. */
static bool budget_short(const struct sp_pipe_budget *b)
{
    return b != NULL && budget_left(b) < budget_limit(b) / 4;
}

/* Takes `want` bytes of the budget (a power-of-two number of pages), or when less is left the
 * largest half, quarter, ... of it that fits, down to one page. Returns what it took, 0 when
 * not one page is left. Pools of several threads take at once, hence the compare-and-swap. */
static uint32_t budget_take(struct sp_pipe_budget *b, uint32_t want, uint32_t page)
{
    if (b == NULL)
        return want;
    uint64_t used = atomic_load_explicit(&b->used, memory_order_relaxed);
    for (;;) {
        uint64_t limit = budget_limit(b);
        uint64_t left = used < limit ? limit - used : 0;
        uint32_t size = want;
        while (size > page && size > left)
            size /= 2;
        if (size > left)
            return 0;
        if (atomic_compare_exchange_weak_explicit(&b->used, &used, used + size,
                                                  memory_order_relaxed, memory_order_relaxed))
            return size;
    }
}

static void budget_give(struct sp_pipe_budget *b, uint64_t bytes)
{
    if (b != NULL)
        atomic_fetch_sub_explicit(&b->used, bytes, memory_order_relaxed);
}

/* ---- pool -------------------------------------------------------------------------------- */

void sp_pipe_pool_init(struct sp_pipe_pool *pool, uint32_t want_size, unsigned max_free)
{
    *pool = (struct sp_pipe_pool){0};
    long page = sysconf(_SC_PAGESIZE);
    pool->page = page >= (long)PIPE_MIN_SIZE && page <= (1L << 20) ? (uint32_t)page : PIPE_MIN_SIZE;
    pool->want_size = want_size < pool->page ? pool->page : want_size;
    pool->try_size = pool->want_size;
    pool->max_free = max_free;
}

void sp_pipe_pool_set_budget(struct sp_pipe_pool *pool, struct sp_pipe_budget *b)
{
    pool->budget = b;
}

/* The capacity the kernel makes of a request: a power-of-two number of pages. */
static uint32_t kernel_size(uint32_t bytes, uint32_t page)
{
    uint32_t size = page;
    while (size < bytes && size < (1u << 31))
        size *= 2;
    return size;
}

/* Sets the pipe's capacity to at most `cap` (what the budget gave), asking less after a refusal
 * of the kernel. Sets p->size to what the kernel granted. */
static void size_pipe(struct sp_pipe_pool *pool, struct sp_pipe *p, uint32_t cap)
{
    uint32_t ask = pool->try_size < cap ? pool->try_size : cap;
    for (;;) {
        int got = fcntl(p->wfd, F_SETPIPE_SZ, (int)ask);
        if (got != -1) {
            p->size = (uint32_t)got;
            break;
        }
        if ((errno != EPERM && errno != ENOMEM && errno != EBUSY) || ask <= pool->page)
            break;
        /* Refused: ask for half from now on, so later pipes skip the failing call. */
        ask /= 2;
        if (ask < pool->try_size)
            pool->try_size = ask;
    }
    if (p->size == 0) {
        int got = fcntl(p->wfd, F_GETPIPE_SZ);
        p->size = got > 0 ? (uint32_t)got : pool->page;
    }
    if (p->size < pool->want_size)
        SP_STAT_ADD(pool->shrunk, 1);
}

static void pipe_close(struct sp_pipe_pool *pool, struct sp_pipe *p)
{
    close(p->rfd);
    close(p->wfd);
    budget_give(pool->budget, p->size);
    free(p);
}

/* A new pipe counted in the budget, or NULL with errno set. */
static struct sp_pipe *pipe_new(struct sp_pipe_pool *pool)
{
    /* The refusal may have been passing (the user's pipe pages come back as pipes close):
     * now and then ask for the full size again, so one burst does not shrink pipes for good. */
    if (pool->try_size < pool->want_size && SP_STAT_GET(pool->created) % PIPE_RETRY_EVERY == 0)
        pool->try_size = pool->want_size;
    uint32_t asked = kernel_size(pool->try_size, pool->page);
    uint32_t cap = budget_take(pool->budget, asked, pool->page);
    if (cap == 0) {
        SP_STAT_ADD(pool->over_budget, 1);
        errno = ENOBUFS;
        return NULL;
    }
    struct sp_pipe *p = malloc(sizeof(*p));
    int fds[2], err = ENOMEM;
    if (p == NULL || pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1) {
        err = p == NULL ? ENOMEM : errno;
        free(p);
        budget_give(pool->budget, cap);
        SP_STAT_ADD(pool->failures, 1);
        errno = err;
        return NULL;
    }
    *p = (struct sp_pipe){.rfd = fds[0], .wfd = fds[1], .cut = cap < asked};
    size_pipe(pool, p, cap);
    SP_STAT_ADD(pool->created, 1);
    /* Count what the kernel granted. More than the budget gave happens only when it refused to
     * shrink the pipe from its default size; that pipe must then fit as it is. */
    if (p->size <= cap) {
        budget_give(pool->budget, cap - p->size);
    } else if (budget_take(pool->budget, p->size - cap, p->size - cap) != p->size - cap) {
        p->size = cap; /* what pipe_close gives back */
        pipe_close(pool, p);
        SP_STAT_ADD(pool->over_budget, 1);
        errno = ENOBUFS;
        return NULL;
    }
    return p;
}

unsigned sp_pipe_pool_prefill(struct sp_pipe_pool *pool, unsigned n)
{
    unsigned made = 0;
    uint64_t full = kernel_size(pool->want_size, pool->page);
    while (made < n && pool->nfree < pool->max_free) {
        if (pool->budget != NULL &&
            budget_left(pool->budget) < full + budget_limit(pool->budget) / 4)
            break;
        struct sp_pipe *p = pipe_new(pool);
        if (p == NULL)
            break;
        p->next = pool->free;
        pool->free = p;
        SP_STAT_ADD(pool->nfree, 1);
        made++;
    }
    return made;
}

struct sp_pipe *sp_pipe_pool_get(struct sp_pipe_pool *pool)
{
    struct sp_pipe *p = pool->free;
    if (p != NULL) {
        pool->free = p->next;
        SP_STAT_SUB(pool->nfree, 1);
    } else {
        p = pipe_new(pool);
        if (p == NULL)
            return NULL;
    }
    p->next = NULL;
    SP_STAT_ADD(pool->in_use, 1);
    return p;
}

void sp_pipe_pool_put(struct sp_pipe_pool *pool, struct sp_pipe *p)
{
    SP_STAT_SUB(pool->in_use, 1);
    if (pool->nfree >= pool->max_free || budget_short(pool->budget) || p->cut) {
        pipe_close(pool, p);
        return;
    }
    p->next = pool->free;
    pool->free = p;
    SP_STAT_ADD(pool->nfree, 1);
}

void sp_pipe_pool_kill(struct sp_pipe_pool *pool, struct sp_pipe *p)
{
    SP_STAT_SUB(pool->in_use, 1);
    SP_STAT_ADD(pool->killed, 1);
    pipe_close(pool, p);
}

void sp_pipe_pool_deinit(struct sp_pipe_pool *pool)
{
    while (pool->free != NULL) {
        struct sp_pipe *p = pool->free;
        pool->free = p->next;
        pipe_close(pool, p);
    }
    pool->nfree = 0;
}
