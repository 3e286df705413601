/* relay.h: moving bytes in one direction, src socket -> dst socket, without libuv.
 *
 * Splice mode moves data src -> pipe -> dst inside the kernel. A direction borrows a pipe from
 * the worker's pool when it reads and gives it back as soon as the pipe is empty again, so a
 * direction holds a pipe only while the destination is refusing bytes. Because we read only
 * into an empty pipe, splice()'s EAGAIN from the source can only mean "source empty", never
 * "pipe full", and a pipe that still holds bytes means "destination full".
 *
 * Copy mode does the same with a user-space buffer from a small per-worker free list. It is the
 * fallback when splice() is refused (EINVAL) or no pipe can be had, and `relay: copy`.
 *
 * An adaptive direction (`relay: auto`) starts in copy mode and moves to splice once reads keep
 * filling the copy buffer (a bulk flow), and back to copy once reads stay small (an exchange
 * of short messages): a small message costs as many syscalls either way, and the pipe work
 * and page references of splice() only pay off on large transfers. The switch happens between
 * reads, when nothing is pending. */
#ifndef SPLICER_RELAY_H
#define SPLICER_RELAY_H

#include "common.h"
#include "pipe_pool.h"
#include <stdbool.h>
#include <stdint.h>

enum sp_relay_mode_rt {
    SP_DIR_SPLICE = 0,
    SP_DIR_COPY,
};

enum sp_relay_status {
    SP_RELAY_WANT_READ = 0, /* nothing more to read now: src found empty (d->src_empty,
                               d->src_drained), or the caller said not to read */
    SP_RELAY_WANT_WRITE,    /* destination full: wait for it to be writable, do not read */
    SP_RELAY_YIELD,         /* moved a budget's worth: run again after the other connections */
    SP_RELAY_EOF,           /* the source has ended (d->src_err says whether by an error) and
                               every byte read is delivered; the FIN is not passed on yet */
    SP_RELAY_ERROR,         /* the destination failed (d->err): pending bytes cannot go */
};

/* Per-worker resources and counters shared by every direction of that worker. */
struct sp_relay_ctx {
    struct sp_pipe_pool *pipes; /* borrowed */
    void *free_bufs;            /* owned free list of copy buffers */
    unsigned nfree_bufs;
    unsigned max_free_bufs;
    uint32_t budget; /* bytes one pump may move before yielding to other connections */

    _Atomic uint64_t splice_bytes; /* payload delivered by splice() */
    _Atomic uint64_t copy_bytes;   /* payload delivered by read()/write() */
    _Atomic uint64_t
        copy_fallbacks; /* directions moved to copy mode because splice could not serve */
    _Atomic uint64_t bufs_in_use;
};

struct sp_relay_dir {
    int src;              /* borrowed fd */
    int dst;              /* borrowed fd */
    struct sp_pipe *pipe; /* borrowed from ctx->pipes while pending > 0 */
    char *buf;            /* copy mode: borrowed from ctx while pending > 0 */
    uint32_t pending;     /* bytes read from src and not yet written to dst */
    uint32_t off;         /* copy mode: offset of the pending bytes in buf */
    uint8_t mode;         /* enum sp_relay_mode_rt: where pending bytes are */
    uint8_t next_mode;    /* the mode for the next read (adaptive directions change it) */
    bool adaptive;        /* relay: auto and splice allowed */
    uint8_t streak;       /* consecutive reads pointing to the other mode */
    bool src_eof;         /* src has ended: EOF, or an error kept in src_err */
    bool src_empty;       /* the last read said EAGAIN: src is empty */
    bool src_drained;     /* the last read was short enough to prove it took every byte queued
                             (only the end, FIN or reset, may still be waiting) */
                          /* the caller clears both once it has taken note (sp_flow_note) */
    bool dst_shut;        /* the FIN is passed on (sp_relay_shut), or dst closed for good */
    int src_err;          /* -errno that ended src (a reset), 0 for a clean EOF */
    int err;              /* with SP_RELAY_ERROR: -errno of the failed write to dst */
    uint64_t bytes;       /* delivered to dst */
};

void sp_relay_ctx_init(struct sp_relay_ctx *ctx, struct sp_pipe_pool *pipes,
                       unsigned max_free_bufs);
void sp_relay_ctx_deinit(struct sp_relay_ctx *ctx);

enum sp_relay_policy {
    SP_POLICY_SPLICE = 0, /* always splice (falls back to copy if splice cannot serve) */
    SP_POLICY_COPY,       /* always copy */
    SP_POLICY_ADAPTIVE,   /* copy small exchanges, splice bulk flows */
};

/* Prepares a direction with its policy. */
void sp_relay_dir_init(struct sp_relay_dir *d, int src, int dst, enum sp_relay_policy policy);

/* Moves what can be moved now and says what to wait for: delivers what is pending, then, if
 * `may_read` (the caller's knowledge that src may hold bytes), reads src until it is found
 * empty, ends, or the budget is spent. A read error ends the source like an EOF (src_err), so
 * the bytes read before it are still delivered. Never blocks, never allocates on the steady
 * path. Owner worker only. */
enum sp_relay_status sp_relay_pump(struct sp_relay_dir *d, struct sp_relay_ctx *ctx, bool may_read);

/* Passes the source's EOF on: shutdown(dst, SHUT_WR). Call after SP_RELAY_EOF, unless dst is
 * about to be closed anyway (a close sends the same FIN). Returns 0 or -errno (dst is gone). */
int sp_relay_shut(struct sp_relay_dir *d);

/* True once the direction has finished: EOF forwarded. */
static inline bool sp_relay_done(const struct sp_relay_dir *d)
{
    return d->dst_shut;
}

/* Gives back what the direction borrowed: an empty pipe to the pool, a pipe that may hold
 * bytes is killed; the copy buffer to the free list. Call once when the session closes. */
void sp_relay_dir_release(struct sp_relay_dir *d, struct sp_relay_ctx *ctx);

#endif
