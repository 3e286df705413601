/* pipe_pool.h: a per-worker cache of pipes for the splice relay. A pipe is borrowed only while
 * bytes are in flight and given back empty, so idle connections hold none. A pipe that may
 * still hold bytes is never reused: it is killed (closed). Single-threaded: the owning worker.
 *
 * A full pipe pins its capacity in kernel pages (a slow reader keeps it full), and root is not
 * held back by the kernel's per-user pipe limits, so the pools of a process share one budget
 * (struct sp_pipe_budget): the capacity of every pipe that exists, idle or lent. Past it, new
 * pipes get what is left, down to one page, and then none: sp_pipe_pool_get returns NULL and
 * the relay copies that direction instead. */
#ifndef SPLICER_PIPE_POOL_H
#define SPLICER_PIPE_POOL_H

#include "common.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sp_pipe {
    int rfd;              /* read end; owned */
    int wfd;              /* write end; owned */
    uint32_t size;        /* capacity in bytes as the kernel granted it */
    bool cut;             /* made smaller than asked because the budget was short */
    struct sp_pipe *next; /* free-list link while pooled */
};

/* The pipe memory of the whole process, shared by every worker's pool. */
struct sp_pipe_budget {
    _Atomic uint64_t used;  /* bytes: the capacity the kernel granted every pipe open now */
    _Atomic uint64_t limit; /* bytes (pipe_memory_max); only the main thread changes it */
};

/* Sets an empty budget with `limit` bytes. Main thread, before any pool uses it. */
void sp_pipe_budget_init(struct sp_pipe_budget *b, uint64_t limit);

/* A new limit (a reload): it applies to the pipes created from now on, and idle pipes are let
 * go as they come back while the budget is short. Any thread. */
void sp_pipe_budget_set_limit(struct sp_pipe_budget *b, uint64_t limit);

struct sp_pipe_pool {
    struct sp_pipe *free;          /* owned idle pipes, all empty */
    _Atomic unsigned nfree;        /* gauge for metrics; written by the owner only */
    unsigned max_free;             /* idle pipes kept; more are closed on put */
    uint32_t want_size;            /* capacity asked of F_SETPIPE_SZ for new pipes */
    uint32_t try_size;             /* what we currently ask: lowered after the kernel refuses */
    uint32_t page;                 /* the smallest pipe the kernel makes: one page */
    struct sp_pipe_budget *budget; /* borrowed; NULL = no limit */

    /* counters, read by metrics */
    _Atomic uint64_t in_use;      /* pipes lent out now */
    _Atomic uint64_t created;     /* pipe2() successes */
    _Atomic uint64_t killed;      /* closed while possibly holding bytes */
    _Atomic uint64_t shrunk;      /* smaller than want_size (EPERM, user page limit, budget) */
    _Atomic uint64_t failures;    /* pipe2() failures (fd or memory exhaustion) */
    _Atomic uint64_t over_budget; /* pipes not made: not even one page of the budget was left */
};

/* Prepares an empty pool. want_size is the capacity to request (F_SETPIPE_SZ); max_free the
 * number of idle pipes to keep. No budget: see sp_pipe_pool_set_budget. */
void sp_pipe_pool_init(struct sp_pipe_pool *pool, uint32_t want_size, unsigned max_free);

/* Makes the pool count its pipes against `b` (borrowed; it must outlive the pool). Call before
 * the pool has made its first pipe. */
void sp_pipe_pool_set_budget(struct sp_pipe_pool *pool, struct sp_pipe_budget *b);

/* Creates up to n idle pipes now so the first connections skip pipe2(); only full-size ones,
 * and only while a quarter of the budget stays free. Returns how many. */
unsigned sp_pipe_pool_prefill(struct sp_pipe_pool *pool, unsigned n);

/* Lends an empty pipe, creating one when none is idle: of want_size, or smaller when less of
 * the budget is left. Returns NULL when no pipe can be had (errno is set: EMFILE, ENFILE,
 * ENOMEM, or ENOBUFS when not one page of the budget is left); the caller copies instead. */
struct sp_pipe *sp_pipe_pool_get(struct sp_pipe_pool *pool);

/* Takes back a pipe that is known to be empty. It stays idle only while fewer than max_free are,
 * a quarter of the budget is free, and it was not cut down for the budget (it gives way to a
 * full one); otherwise it is closed. */
void sp_pipe_pool_put(struct sp_pipe_pool *pool, struct sp_pipe *p);

/* Takes back a pipe that may hold bytes: it is closed, never reused. */
void sp_pipe_pool_kill(struct sp_pipe_pool *pool, struct sp_pipe *p);

/* Closes every idle pipe. Lent pipes must have come back first. */
void sp_pipe_pool_deinit(struct sp_pipe_pool *pool);

#endif
