/* relay.c: one direction of a proxied connection, src -> dst.
 *
 *   src readable      splice(src -> pipe)      splice(pipe -> dst)
 *   ------------>  [empty pipe] --------> [pending] --------------> [empty: pipe back to pool]
 *                                             |  dst refuses (EAGAIN / short write)
 *                                             v
 *                                      WANT_WRITE: stop reading src, poll dst
 *   src EOF (0) and nothing pending -> shutdown(dst, SHUT_WR) -> DONE
 *
 * The FIN goes out only once everything read before it has been delivered. Copy mode follows
 * the same shape with a buffer in place of the pipe. */
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define COPY_BUF_SIZE (64 * 1024)
/* A read this large suggests the socket holds more: read again before going back to the loop.
 * A smaller one usually drained it, and one more splice would only return EAGAIN. */
#define READ_AGAIN_MIN (64 * 1024)

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

static enum sp_relay_status fail(struct sp_relay_dir *d, int err, bool on_dst)
{
    d->err = -err;
    d->err_on_dst = on_dst;
    return SP_RELAY_ERROR;
}

/* Source at EOF and nothing pending: pass the FIN on. */
static enum sp_relay_status finish(struct sp_relay_dir *d)
{
    if (!d->dst_shut) {
        /* ENOTCONN: the destination is gone already, so there is nobody to tell. */
        if (shutdown(d->dst, SHUT_WR) == -1 && errno != ENOTCONN)
            return fail(d, errno, true);
        d->dst_shut = true;
    }
    return SP_RELAY_DONE;
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
        fail(d, n == 0 ? EPIPE : errno, true);
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
        fail(d, n == 0 ? EPIPE : errno, true);
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

enum sp_relay_status sp_relay_pump(struct sp_relay_dir *d, struct sp_relay_ctx *ctx)
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
            return finish(d);
        if (moved >= ctx->budget)
            return SP_RELAY_WANT_READ; /* fairness: level-triggered polling brings us back */

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
        if (n < 0) {
            give_back_empty(d, ctx);
            if (n == -EAGAIN)
                return SP_RELAY_WANT_READ;
            return fail(d, (int)-n, false);
        }
        if (n == 0) {
            give_back_empty(d, ctx);
            d->src_eof = true;
            continue;
        }
        d->pending = (uint32_t)n;
        moved += (uint64_t)n;
        if (d->adaptive)
            adapt(d, (size_t)n);
        if (n < READ_AGAIN_MIN) {
            /* Likely drained: deliver, then let the loop tell us when more arrives. */
            int out = d->mode == SP_DIR_SPLICE ? splice_out(d, ctx) : copy_out(d, ctx);
            if (out < 0)
                return SP_RELAY_ERROR;
            return out == 0 ? SP_RELAY_WANT_WRITE : SP_RELAY_WANT_READ;
        }
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
