/* poller.h: a worker's relay sockets as one edge-triggered epoll set, which libuv watches as a
 * single uv_poll_t. libuv keeps the event loop (accept, timers, signals, wake-ups); this set
 * only replaces the per-socket uv_poll_t handles, whose every change of interest costs libuv
 * two epoll_ctl calls. Here a socket is added once, for everything at once
 * (EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET), and leaves the set by its close(): per connection that
 * is one epoll_ctl per socket, whatever the traffic (flow.h says how the owner keeps track of
 * edge-triggered readiness). The one change of interest is EPOLLIN, left out while the owner
 * cannot read a socket's input anyway (sp_poller_want_input, flow.h's sp_flow_wants_input): a
 * bulk transfer held back by its destination costs at most two epoll_ctl calls per stall, not a
 * wake-up for each segment its sender adds meanwhile. Exchanges of small messages never stall,
 * and never pay it.
 *
 * When libuv reports the set readable, the poller takes one batch of events without blocking
 * and hands each to the owner's callback. An owner closed earlier in the same batch may still
 * get an event, so owners must stay allocated until a later loop phase (a close callback) and
 * ignore events once closing. Owners that yield (fairness) are run again on the next loop
 * iteration. This file is the only one that calls epoll_*. Worker thread only. */
#ifndef SPLICER_POLLER_H
#define SPLICER_POLLER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* A link in the poller's list of owners to run again; zero it before first use. */
struct sp_poller_link {
    struct sp_poller_link *prev, *next; /* NULL when not queued */
};

struct sp_poller;

/* An event for socket `side` (0 or 1) of `owner`: epoll bits. */
typedef void (*sp_poller_event_fn)(void *owner, int side, uint32_t events);
/* A deferred owner's turn (sp_poller_defer). */
typedef void (*sp_poller_run_fn)(struct sp_poller_link *link);
typedef void (*sp_poller_closed_fn)(struct sp_poller *p);

struct sp_poller {
    int epfd;        /* owned; -1 once closed */
    uv_poll_t watch; /* libuv's view of epfd */
    uv_idle_t idle;  /* active while owners wait in `deferred` */
    sp_poller_event_fn on_event;
    sp_poller_run_fn on_run;
    sp_poller_closed_fn on_closed;
    struct sp_poller_link deferred; /* sentinel of a circular list */
    unsigned closes_pending;
};

/* Creates the epoll set and starts watching it on `loop`. Returns 0 or -errno. */
int sp_poller_init(struct sp_poller *p, uv_loop_t *loop, sp_poller_event_fn on_event,
                   sp_poller_run_fn on_run);

/* Adds the socket fd, owned by `owner` (at least 2-byte aligned) as its socket `side` (0 or
 * 1), for every event, edge-triggered. The events it is ready for now come as a first event.
 * The socket leaves the set when it is closed. Returns 0 or -errno. */
int sp_poller_add(struct sp_poller *p, int fd, void *owner, int side);

/* Adds EPOLLIN back to fd's events (want_input) or leaves it out; the rest stays. Taking it
 * back reports input already waiting as a new edge. Returns 0 or -errno. */
int sp_poller_want_input(struct sp_poller *p, int fd, void *owner, int side, bool want_input);

/* Queues `link` to be passed to on_run on the next loop iteration; no-op when queued. */
void sp_poller_defer(struct sp_poller *p, struct sp_poller_link *link);

/* Takes `link` off the queue, if it is on it. */
void sp_poller_cancel(struct sp_poller_link *link);

/* Stops and closes everything; on_closed runs from the last close callback. The sockets of
 * the set must be closed by their owners. */
void sp_poller_close(struct sp_poller *p, sp_poller_closed_fn on_closed);

#endif
