/* flow.h: what a relayed connection does next, as a pure function of its two directions and of
 * what the kernel last said about its two sockets.
 *
 * The sockets are watched edge-triggered (poller.h): the kernel reports a change once, not the
 * state again and again. So each side remembers what it was told, "may read" and "may write",
 * until a read or write finds otherwise, and a source whose pipe still holds bytes resumes
 * reading as soon as the pipe drains, without waiting for an event that will not come. Under
 * edge triggering a flag forgotten is a connection that hangs, so every change of a flag goes
 * through sp_side_event (the kernel's word) or sp_flow_note (what a pump found), and
 * sp_flow_next decides from nothing else. No syscalls, no libuv: the unit tests drive it with
 * made-up events.
 *
 *   dir[0] reads side 0 (the client) and writes side 1 (the server); dir[1] the reverse.
 *
 * A side that fails (a reset, a write refused) is written no more, but what it sent before the
 * failure is still read and delivered to the other side; only then is the connection ended
 * (SP_STEP_ABORT), so a reset never costs the other side a byte it was owed. */
#ifndef SPLICER_FLOW_H
#define SPLICER_FLOW_H

#include "relay.h"
#include <stdbool.h>
#include <stdint.h>

/* What the kernel last said about one socket. */
struct sp_side {
    bool readable; /* an input edge came since a read last found the socket empty */
    bool writable; /* an output edge came since a write last found the socket full */
    bool hup;      /* the peer's FIN (or reset) has arrived: read on until the end, even after
                      a short read */
    bool closed;   /* EPOLLHUP: over in both directions (refused, reset, or both FINs) */
    bool failed;   /* reset or refused a write: write nothing more, read what is left */
};

/* Records one epoll event (EPOLLIN, EPOLLOUT, EPOLLRDHUP, EPOLLHUP, EPOLLERR bits). */
void sp_side_event(struct sp_side *s, uint32_t events);

/* The outcome of a non-blocking connect, from the events of the connecting socket alone (no
 * getsockopt on the success path). */
enum sp_connect_state {
    SP_CONNECT_PENDING = 0, /* no verdict yet */
    SP_CONNECT_DONE,        /* writable and no error: established */
    SP_CONNECT_FAILED,      /* error or hang-up: refused, unreachable or reset at once */
};
enum sp_connect_state sp_flow_connect_state(const struct sp_side *s);

enum sp_step_kind {
    SP_STEP_WAIT = 0, /* nothing to do until the next event */
    SP_STEP_PUMP,     /* run sp_relay_pump on dir[index] (with may_read = sp_flow_may_read) */
    SP_STEP_SHUT,     /* dir[index] has delivered its source's end: sp_relay_shut it */
    SP_STEP_DISCARD,  /* dir[index] writes to a failed side: read its source and throw the
                         bytes away (then sp_flow_discarded), so that the peer, which may read
                         only once it can write, goes on to take what it is still owed */
    SP_STEP_CLOSE,    /* both directions ended cleanly: close both sockets (a close sends the
                         last FIN, so the last shutdown is never needed) */
    SP_STEP_ABORT,    /* side[index] failed and everything it sent is delivered: end both */
};

struct sp_step {
    enum sp_step_kind kind;
    int index; /* the direction (PUMP, SHUT) or the failed side (ABORT) */
};

/* The next thing to do. Progress comes first: a failure is acted on only once nothing more
 * can be delivered. */
struct sp_step sp_flow_next(const struct sp_relay_dir dir[2], const struct sp_side side[2]);

/* Takes note of a DISCARD of dir[d]: `end` is 0 when its source was found empty, 1 when its FIN
 * was read, -errno when it failed. */
void sp_flow_discarded(struct sp_relay_dir dir[2], struct sp_side side[2], int d, int end);

/* What to pass as may_read when pumping dir[d]. */
static inline bool sp_flow_may_read(const struct sp_side side[2], int d)
{
    return side[d].readable;
}

/* Whether socket x should report input edges now. A direction whose destination holds it back
 * (bytes pending, the destination full) reads nothing until they drain, and then reads on from
 * what side[x] remembers, so input edges meanwhile could only wake the worker for nothing: one
 * per segment the sender adds, which on a bulk upload is most wake-ups. Its source's EPOLLIN is
 * then left out of the set (one epoll_ctl each way per stall). Not when the destination has
 * failed: what the source sends is read and dropped then (SP_STEP_DISCARD). */
static inline bool sp_flow_wants_input(const struct sp_relay_dir dir[2],
                                       const struct sp_side side[2], int x)
{
    return dir[x].pending == 0 || side[x ^ 1].failed;
}

/* Takes note of what a pump of dir[d] found (its status, src_empty and src_err), so the flags
 * say what the kernel would say now. Clears dir[d].src_empty. */
void sp_flow_note(struct sp_relay_dir dir[2], struct sp_side side[2], int d,
                  enum sp_relay_status st);

#endif
