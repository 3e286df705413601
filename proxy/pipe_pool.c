/* pipe_pool.c: per-worker pipe cache. The kernel may grant less than we ask: an unprivileged
 * process gets EPERM above fs.pipe-max-size, and once the user owns more than
 * fs.pipe-user-pages-soft every new pipe shrinks to two pages. Both only slow the relay down,
 * so we take what we are given and remember to ask for less. */
#include "pipe_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#define PIPE_MIN_SIZE 4096u
/* Pipes created between two attempts at the full size after the kernel refused it. */
#define PIPE_RETRY_EVERY 256

void sp_pipe_pool_init(struct sp_pipe_pool *pool, uint32_t want_size, unsigned max_free)
{
    *pool = (struct sp_pipe_pool){0};
    pool->want_size = want_size < PIPE_MIN_SIZE ? PIPE_MIN_SIZE : want_size;
    pool->try_size = pool->want_size;
    pool->max_free = max_free;
}

static void size_pipe(struct sp_pipe_pool *pool, struct sp_pipe *p)
{
    /* The refusal may have been passing (the user's pipe pages come back as pipes close):
     * now and then ask for the full size again, so one burst does not shrink pipes for good. */
    if (pool->try_size < pool->want_size && SP_STAT_GET(pool->created) % PIPE_RETRY_EVERY == 0)
        pool->try_size = pool->want_size;
    while (pool->try_size > PIPE_MIN_SIZE) {
        int got = fcntl(p->wfd, F_SETPIPE_SZ, (int)pool->try_size);
        if (got != -1) {
            p->size = (uint32_t)got;
            break;
        }
        if (errno != EPERM && errno != ENOMEM && errno != EBUSY)
            break;
        /* Refused: ask for half from now on, so later pipes skip the failing call. */
        pool->try_size /= 2;
    }
    if (p->size == 0) {
        int got = fcntl(p->wfd, F_GETPIPE_SZ);
        p->size = got > 0 ? (uint32_t)got : PIPE_MIN_SIZE;
    }
    if (p->size < pool->want_size)
        SP_STAT_ADD(pool->shrunk, 1);
}

static struct sp_pipe *pipe_new(struct sp_pipe_pool *pool)
{
    struct sp_pipe *p = malloc(sizeof(*p));
    if (p == NULL) {
        SP_STAT_ADD(pool->failures, 1);
        errno = ENOMEM;
        return NULL;
    }
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1) {
        int err = errno;
        free(p);
        SP_STAT_ADD(pool->failures, 1);
        errno = err;
        return NULL;
    }
    *p = (struct sp_pipe){.rfd = fds[0], .wfd = fds[1]};
    size_pipe(pool, p);
    SP_STAT_ADD(pool->created, 1);
    return p;
}

static void pipe_close(struct sp_pipe *p)
{
    close(p->rfd);
    close(p->wfd);
    free(p);
}

unsigned sp_pipe_pool_prefill(struct sp_pipe_pool *pool, unsigned n)
{
    unsigned made = 0;
    while (made < n && pool->nfree < pool->max_free) {
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
    if (pool->nfree >= pool->max_free) {
        pipe_close(p);
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
    pipe_close(p);
}

void sp_pipe_pool_deinit(struct sp_pipe_pool *pool)
{
    while (pool->free != NULL) {
        struct sp_pipe *p = pool->free;
        pool->free = p->next;
        pipe_close(p);
    }
    pool->nfree = 0;
}
