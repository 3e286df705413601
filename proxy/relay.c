/* relay.c: one direction of a proxied connection, src -> dst.
 *
 *   src readable      splice(src -> pipe)      splice(pipe -> dst)
 *   ------------>  [empty pipe] --------> [pending] --------------> [empty: pipe back to pool]
 *                                             |  dst refuses (EAGAIN / short write)
 *                                             v
 *                                      WANT_WRITE: stop reading src, poll dst
 *   src EOF (0) or reset, nothing pending -> EOF: the caller passes the FIN on (sp_relay_shut)
 *                                           or closes dst, or, after a reset, aborts
 *
 * The FIN goes out only once everything read before it has been delivered, and a reset read
 * from src ends it the same way, so bytes that arrived before a reset are never lost. Copy mode
 * follows the same shape with a buffer in place of the pipe.
 *
 * Readiness is edge-triggered (see flow.h): the caller says whether src may hold bytes, and a
 * direction reads until it finds src empty (EAGAIN, or a short read that proves it), so that
 * no byte waits for an edge that will not come. */
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define COPY_BUF_SIZE (64 * 1024)
/* A pipe holds size / PAGE_SIZE buffers ("slots"); splice() fills at most one per page. */
#define PIPE_SLOT_SIZE 4096u

struct free_buf {
    struct free_buf *next;
};

void sp_relay_ctx_init(struct sp_relay_ctx *ctx, struct sp_pipe_pool *pipes, unsigned max_free_bufs)
{
    *ctx = (struct sp_relay_ctx){.pipes = pipes, .max_free_bufs = max_free_bufs};
    ctx->budget = 4u * 1024 * 1024;
}

void sp_relay_ctx_deinit(struct sp_relay_ctx *ctx)
{
    struct free_buf *b = ctx->free_bufs;
    while (b != NULL) {
        struct free_buf *next = b->next;
        free(b);
        b = next;
    }
    ctx->free_bufs = NULL;
    ctx->nfree_bufs = 0;
}

static char *buf_get(struct sp_relay_ctx *ctx)
{
    struct free_buf *b = ctx->free_bufs;
    if (b != NULL) {
        ctx->free_bufs = b->next;
        ctx->nfree_bufs--;
    } else {
        b = malloc(COPY_BUF_SIZE);
        if (b == NULL)
            return NULL;
    }
    SP_STAT_ADD(ctx->bufs_in_use, 1);
    return (char *)b;
}

static void buf_put(struct sp_relay_ctx *ctx, char *p)
{
    SP_STAT_SUB(ctx->bufs_in_use, 1);
    if (ctx->nfree_bufs >= ctx->max_free_bufs) {
        free(p);
        return;
    }
    struct free_buf *b = (struct free_buf *)(void *)p;
    b->next = ctx->free_bufs;
    ctx->free_bufs = b;
    ctx->nfree_bufs++;
}

void sp_relay_dir_init(struct sp_relay_dir *d, int src, int dst, enum sp_relay_policy policy)
{
    *d = (struct sp_relay_dir){.src = src, .dst = dst};
    d->mode = policy == SP_POLICY_SPLICE ? SP_DIR_SPLICE : SP_DIR_COPY;
    d->next_mode = d->mode;
    d->adaptive = policy == SP_POLICY_ADAPTIVE;
}

/* Adaptive directions: two full copy buffers in a row make a bulk flow worth splicing; four
 * splice reads below one copy buffer's worth in a row make an exchange of small messages. */
#define TO_SPLICE_STREAK 2
#define TO_COPY_STREAK   4

static void adapt(struct sp_relay_dir *d, size_t n)
{
    bool other = d->mode == SP_DIR_COPY ? n >= COPY_BUF_SIZE : n < COPY_BUF_SIZE / 4;
    if (!other) {
        d->streak = 0;
        return;
    }
    if (++d->streak < (d->mode == SP_DIR_COPY ? TO_SPLICE_STREAK : TO_COPY_STREAK))
        return;
    d->streak = 0;
    d->next_mode = d->mode == SP_DIR_COPY ? SP_DIR_SPLICE : SP_DIR_COPY;
}

/* The destination refused a write for good: nothing pending can be delivered any more. */
static enum sp_relay_status dst_failed(struct sp_relay_dir *d, int err)
{
    d->err = -err;
    return SP_RELAY_ERROR;
}

int sp_relay_shut(struct sp_relay_dir *d)
{
    if (d->dst_shut)
        return 0;
    d->dst_shut = true;
    /* ENOTCONN: the destination is gone already, so there is nobody to tell. */
    if (shutdown(d->dst, SHUT_WR) == -1 && errno != ENOTCONN)
        return -errno;
    return 0;
}

/* Returns 1 when the pending bytes are all out, 0 when dst is full, -1 on error. */
static int splice_out(struct sp_relay_dir *d, struct sp_relay_ctx *ctx)
{
    for (;;) {
        ssize_t n =
            splice(d->pipe->rfd, NULL, d->dst, NULL, d->pending, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
        if (n > 0) {
            d->pending -= (uint32_t)n;
            d->bytes += (uint64_t)n;
            SP_STAT_ADD(ctx->splice_bytes, (uint64_t)n);
            if (d->pending == 0) {
                sp_pipe_pool_put(ctx->pipes, d->pipe);
                d->pipe = NULL;
                return 1;
            }
            return 0; /* short write: the socket buffer is full, the next try would EAGAIN */
        }
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && errno == EAGAIN)
            return 0;
        dst_failed(d, n == 0 ? EPIPE : errno);
        return -1;
    }
}

static int copy_out(struct sp_relay_dir *d, struct sp_relay_ctx *ctx)
{
    for (;;) {
        ssize_t n = send(d->dst, d->buf + d->off, d->pending, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            d->pending -= (uint32_t)n;
            d->off += (uint32_t)n;
            d->bytes += (uint64_t)n;
            SP_STAT_ADD(ctx->copy_bytes, (uint64_t)n);
            if (d->pending == 0) {
                buf_put(ctx, d->buf);
                d->buf = NULL;
                d->off = 0;
                return 1;
            }
            return 0;
        }
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && errno == EAGAIN)
            return 0;
        dst_failed(d, n == 0 ? EPIPE : errno);
        return -1;
    }
}

static void to_copy_mode(struct sp_relay_dir *d, struct sp_relay_ctx *ctx)
{
    d->mode = d->next_mode = SP_DIR_COPY;
    d->adaptive = false; /* splice cannot serve this socket: do not come back to it */
    SP_STAT_ADD(ctx->copy_fallbacks, 1);
}

/* Reads once into an empty pipe. Returns bytes read, 0 at EOF, -EAGAIN when src is empty,
 * -ENOPIPE-ish fallbacks as -EOPNOTSUPP (switch to copy), another -errno on error. */
static ssize_t splice_in(struct sp_relay_dir *d, struct sp_relay_ctx *ctx)
{
    if (d->pipe == NULL) {
        d->pipe = sp_pipe_pool_get(ctx->pipes);
        if (d->pipe == NULL)
            return -EOPNOTSUPP;
    }
    for (;;) {
        ssize_t n = splice(d->src, NULL, d->pipe->wfd, NULL, d->pipe->size,
                           SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return errno == EINVAL ? -EOPNOTSUPP : -errno;
    }
}

static ssize_t copy_in(struct sp_relay_dir *d, struct sp_relay_ctx *ctx)
{
    if (d->buf == NULL) {
        d->buf = buf_get(ctx);
        if (d->buf == NULL)
            return -ENOMEM;
    }
    for (;;) {
        ssize_t n = recv(d->src, d->buf, COPY_BUF_SIZE, MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return -errno;
    }
}

/* The pipe or buffer borrowed for a read that brought nothing goes straight back. */
static void give_back_empty(struct sp_relay_dir *d, struct sp_relay_ctx *ctx)
{
    if (d->pipe != NULL) {
        sp_pipe_pool_put(ctx->pipes, d->pipe);
        d->pipe = NULL;
    }
    if (d->buf != NULL) {
        buf_put(ctx, d->buf);
        d->buf = NULL;
    }
}

/* True when a read of n bytes must have emptied the source, so that reading again could only
 * say EAGAIN: the caller may then wait for the next edge instead. recv() on a stream socket stops
 * short only when the queue is empty. splice() also stops when the pipe runs out of slots (a page
 * each, and one may hold a single byte), so a short splice proves the queue empty only when it
 * could not have filled every slot. */
static bool read_drained(const struct sp_relay_dir *d, size_t n)
{
    if (d->mode == SP_DIR_COPY)
        return n < COPY_BUF_SIZE;
    return n < d->pipe->size / PIPE_SLOT_SIZE;
}

enum sp_relay_status sp_relay_pump(struct sp_relay_dir *d, struct sp_relay_ctx *ctx, bool may_read)
{
    uint64_t moved = 0;

    for (;;) {
        if (d->pending > 0) {
            int out = d->mode == SP_DIR_SPLICE ? splice_out(d, ctx) : copy_out(d, ctx);
            if (out < 0)
                return SP_RELAY_ERROR;
            if (out == 0)
                return SP_RELAY_WANT_WRITE;
        }
        if (d->src_eof)
            return SP_RELAY_EOF;
        if (!may_read || d->src_empty || d->src_drained)
            return SP_RELAY_WANT_READ;
        if (moved >= ctx->budget)
            return SP_RELAY_YIELD;

        if (d->next_mode != d->mode) {
            give_back_empty(d, ctx); /* nothing is pending: the container can go */
            d->mode = d->next_mode;
        }
        ssize_t n = d->mode == SP_DIR_SPLICE ? splice_in(d, ctx) : copy_in(d, ctx);
        if (n == -EOPNOTSUPP) {
            /* splice() refused this socket, or no pipe could be had: copy from now on. */
            give_back_empty(d, ctx);
            to_copy_mode(d, ctx);
            continue;
        }
        if (n <= 0) {
            give_back_empty(d, ctx);
            if (n == -EAGAIN) {
                d->src_empty = true;
                return SP_RELAY_WANT_READ;
            }
            /* EOF, or a reset: either way the source has ended. Nothing is pending here (we
             * only read into an empty pipe), so every byte before the end is delivered. */
            d->src_eof = true;
            d->src_err = (int)n;
            continue;
        }
        d->pending = (uint32_t)n;
        moved += (uint64_t)n;
        if (d->adaptive)
            adapt(d, (size_t)n);
        if (read_drained(d, (size_t)n))
            d->src_drained = true; /* deliver, then wait for the next edge */
    }
}

void sp_relay_dir_release(struct sp_relay_dir *d, struct sp_relay_ctx *ctx)
{
    if (d->pipe != NULL) {
        if (d->pending == 0)
            sp_pipe_pool_put(ctx->pipes, d->pipe);
        else
            sp_pipe_pool_kill(ctx->pipes, d->pipe);
        d->pipe = NULL;
    }
    if (d->buf != NULL) {
        buf_put(ctx, d->buf);
        d->buf = NULL;
    }
    d->pending = 0;
}
