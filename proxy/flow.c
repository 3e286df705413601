/* flow.c: the edge-triggered relay's decisions (see flow.h): pure, no syscalls. */
#include "flow.h"

#include <sys/epoll.h>

void sp_side_event(struct sp_side *s, uint32_t events)
{
    /* A hang-up or an error is also something to read: the bytes that came before it, then
     * the end itself. */
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        s->readable = true;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        s->hup = true;
    if (events & EPOLLHUP)
        s->closed = true;
    if (events & EPOLLERR)
        s->failed = true;
    if (events & EPOLLOUT)
        s->writable = true;
}

enum sp_connect_state sp_flow_connect_state(const struct sp_side *s)
{
    /* A refused connect reports EPOLLERR|EPOLLHUP, often with EPOLLOUT too: errors first. A
     * server that answers and sends its FIN at once only half-closed (EPOLLRDHUP): that is a
     * success with data and an end to read. */
    if (s->failed || s->closed)
        return SP_CONNECT_FAILED;
    return s->writable ? SP_CONNECT_DONE : SP_CONNECT_PENDING;
}

/* Side x has failed, whether the kernel said so or a read from it ended in an error. */
static bool side_failed(const struct sp_relay_dir dir[2], const struct sp_side side[2], int x)
{
    return side[x].failed || dir[x].src_err != 0;
}

static struct sp_step step(enum sp_step_kind kind, int index)
{
    return (struct sp_step){.kind = kind, .index = index};
}

struct sp_step sp_flow_next(const struct sp_relay_dir dir[2], const struct sp_side side[2])
{
    for (int d = 0; d < 2; d++) {
        const struct sp_relay_dir *r = &dir[d];
        /* Nothing more can go to a failed side (see the discard below); a passed-on FIN ends
         * the direction. */
        if (side[d ^ 1].failed || r->dst_shut)
            continue;
        if (r->pending > 0) {
            if (side[d ^ 1].writable)
                return step(SP_STEP_PUMP, d);
            continue; /* backpressure: its source is not read until the pipe drains */
        }
        if (!r->src_eof) {
            if (side[d].readable)
                return step(SP_STEP_PUMP, d);
            continue;
        }
        if (side_failed(dir, side, d))
            continue; /* an end by failure is not passed on as a FIN: see below */
        return step(dir[d ^ 1].dst_shut ? SP_STEP_CLOSE : SP_STEP_SHUT, d);
    }
    for (int x = 0; x < 2; x++) {
        if (!side_failed(dir, side, x))
            continue;
        /* dir[x] carries what x sent before it failed: end once it has all gone, or cannot. */
        const struct sp_relay_dir *in = &dir[x];
        if ((in->src_eof && in->pending == 0) || in->dst_shut || side[x ^ 1].failed)
            return step(SP_STEP_ABORT, x);
    }
    /* Still waiting to deliver what a failed side sent: what the other side sends for it is read
     * and dropped, or a peer that reads only once it can write would never take its bytes. */
    for (int d = 0; d < 2; d++) {
        if (side[d ^ 1].failed && !dir[d].src_eof && side[d].readable)
            return step(SP_STEP_DISCARD, d);
    }
    return step(SP_STEP_WAIT, -1);
}

void sp_flow_discarded(struct sp_relay_dir dir[2], struct sp_side side[2], int d, int end)
{
    dir[d].pending = 0; /* undeliverable: the caller dropped them with the pipe */
    if (end == 0) {
        side[d].readable = false;
        return;
    }
    dir[d].src_eof = true;
    if (end < 0) {
        dir[d].src_err = end;
        side[d].failed = true;
    }
}

void sp_flow_note(struct sp_relay_dir dir[2], struct sp_side side[2], int d,
                  enum sp_relay_status st)
{
    struct sp_relay_dir *r = &dir[d];
    /* EAGAIN settles it. A short read leaves the end to be read if the peer's FIN or reset has
     * arrived, and reading it is what makes that end known. */
    if (r->src_empty || (r->src_drained && !side[d].hup))
        side[d].readable = false;
    r->src_empty = false;
    r->src_drained = false;
    switch (st) {
    case SP_RELAY_WANT_WRITE:
        side[d ^ 1].writable = false;
        break;
    case SP_RELAY_ERROR:
        /* The destination refused a write: it failed. Read what it sent before that. */
        side[d ^ 1].failed = true;
        side[d ^ 1].hup = true;
        side[d ^ 1].readable = true;
        break;
    default:
        break;
    }
}
