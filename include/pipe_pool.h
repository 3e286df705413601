/* pipe_pool.h: a per-worker cache of pipes for the splice relay. A pipe is borrowed only while
 * bytes are in flight and given back empty, so idle connections hold none. A pipe that may
 * still hold bytes is never reused: it is killed (closed). Single-threaded: the owning worker. */
#ifndef SPLICER_PIPE_POOL_H
#define SPLICER_PIPE_POOL_H

#include "common.h"
#include <stddef.h>
#include <stdint.h>

struct sp_pipe {
    int rfd;              /* read end; owned */
    int wfd;              /* write end; owned */
    uint32_t size;        /* capacity in bytes as the kernel granted it */
    struct sp_pipe *next; /* free-list link while pooled */
};

struct sp_pipe_pool {
    struct sp_pipe *free;   /* owned idle pipes, all empty */
    _Atomic unsigned nfree; /* gauge for metrics; written by the owner only */
    unsigned max_free;      /* idle pipes kept; more are closed on put */
    uint32_t want_size;     /* capacity asked of F_SETPIPE_SZ for new pipes */
    uint32_t try_size;      /* what we currently ask: lowered after the kernel refuses */

    /* counters, read by metrics */
    _Atomic uint64_t in_use;   /* pipes lent out now */
    _Atomic uint64_t created;  /* pipe2() successes */
    _Atomic uint64_t killed;   /* closed while possibly holding bytes */
    _Atomic uint64_t shrunk;   /* pipes smaller than want_size (EPERM or user page limit) */
    _Atomic uint64_t failures; /* pipe2() failures (fd or memory exhaustion) */
};

/* Prepares an empty pool. want_size is the capacity to request (F_SETPIPE_SZ); max_free the
 * number of idle pipes to keep. */
void sp_pipe_pool_init(struct sp_pipe_pool *pool, uint32_t want_size, unsigned max_free);

/* Creates up to n idle pipes now so the first connections skip pipe2(). Returns how many. */
unsigned sp_pipe_pool_prefill(struct sp_pipe_pool *pool, unsigned n);

/* Lends an empty pipe, creating one when none is idle. Returns NULL when no pipe can be had
 * (errno is set: EMFILE, ENFILE, ENOMEM); the caller falls back to copying. */
struct sp_pipe *sp_pipe_pool_get(struct sp_pipe_pool *pool);

/* Takes back a pipe that is known to be empty. */
void sp_pipe_pool_put(struct sp_pipe_pool *pool, struct sp_pipe *p);

/* Takes back a pipe that may hold bytes: it is closed, never reused. */
void sp_pipe_pool_kill(struct sp_pipe_pool *pool, struct sp_pipe *p);

/* Closes every idle pipe. Lent pipes must have come back first. */
void sp_pipe_pool_deinit(struct sp_pipe_pool *pool);

#endif
