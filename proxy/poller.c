/* poller.c: the worker's edge-triggered epoll set behind one uv_poll_t (see poller.h). */
#include "poller.h"

#include "common.h"

#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <unistd.h>

/* Events taken per wake-up. More stay in the set, which then stays readable, so libuv comes
 * back after it has looked at the other handles (listeners, timers). */
#define BATCH 128

static void on_watch(uv_poll_t *h, int status, int events)
{
    struct sp_poller *p = h->data;
    struct epoll_event ev[BATCH];
    (void)status;
    (void)events;
    int n = epoll_wait(p->epfd, ev, BATCH, 0);
    for (int i = 0; i < n; i++) {
        uintptr_t tag = (uintptr_t)ev[i].data.ptr;
        p->on_event((void *)(tag & ~(uintptr_t)1), (int)(tag & 1), ev[i].events);
    }
}

static bool queued(const struct sp_poller_link *l)
{
    return l->next != NULL;
}

static void unlink_one(struct sp_poller_link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = NULL;
}

static void on_idle(uv_idle_t *h)
{
    struct sp_poller *p = h->data;
    /* Run what is queued now; whoever defers again waits for the next iteration, so one busy
     * connection never keeps the loop from polling. A link cancelled while on `run` unlinks
     * from it like from any list. */
    struct sp_poller_link run = {&run, &run};
    if (p->deferred.next != &p->deferred) {
        run.next = p->deferred.next;
        run.prev = p->deferred.prev;
        run.next->prev = &run;
        run.prev->next = &run;
        p->deferred.next = p->deferred.prev = &p->deferred;
    }
    while (run.next != &run) {
        struct sp_poller_link *l = run.next;
        unlink_one(l);
        p->on_run(l);
    }
    if (p->deferred.next == &p->deferred)
        uv_idle_stop(&p->idle);
}

int sp_poller_init(struct sp_poller *p, uv_loop_t *loop, sp_poller_event_fn on_event,
                   sp_poller_run_fn on_run)
{
    *p = (struct sp_poller){.on_event = on_event, .on_run = on_run};
    p->deferred.next = p->deferred.prev = &p->deferred;
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd == -1)
        return -errno;
    int rc = uv_poll_init(loop, &p->watch, p->epfd);
    if (rc != 0) {
        close(p->epfd);
        p->epfd = -1;
        return rc;
    }
    uv_idle_init(loop, &p->idle);
    p->watch.data = p->idle.data = p;
    uv_poll_start(&p->watch, UV_READABLE, on_watch);
    return 0;
}

static int ctl(struct sp_poller *p, int op, int fd, void *owner, int side, bool input)
{
    struct epoll_event ev = {
        .events = (input ? EPOLLIN : 0) | EPOLLOUT | EPOLLRDHUP | EPOLLET,
        .data.ptr = (void *)((uintptr_t)owner | (uintptr_t)(side & 1)),
    };
    return epoll_ctl(p->epfd, op, fd, &ev) == -1 ? -errno : 0;
}

int sp_poller_add(struct sp_poller *p, int fd, void *owner, int side)
{
    return ctl(p, EPOLL_CTL_ADD, fd, owner, side, true);
}

int sp_poller_want_input(struct sp_poller *p, int fd, void *owner, int side, bool want_input)
{
    return ctl(p, EPOLL_CTL_MOD, fd, owner, side, want_input);
}

void sp_poller_defer(struct sp_poller *p, struct sp_poller_link *l)
{
    if (queued(l))
        return;
    l->prev = p->deferred.prev;
    l->next = &p->deferred;
    l->prev->next = l;
    p->deferred.prev = l;
    uv_idle_start(&p->idle, on_idle);
}

void sp_poller_cancel(struct sp_poller_link *l)
{
    if (queued(l))
        unlink_one(l);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct sp_poller *p = h->data;
    if (--p->closes_pending > 0)
        return;
    /* libuv has let go of the descriptor: it may be closed now. */
    close(p->epfd);
    p->epfd = -1;
    if (p->on_closed != NULL)
        p->on_closed(p);
}

void sp_poller_close(struct sp_poller *p, sp_poller_closed_fn on_closed)
{
    p->on_closed = on_closed;
    p->closes_pending = 2;
    uv_close((uv_handle_t *)&p->watch, on_handle_closed);
    uv_close((uv_handle_t *)&p->idle, on_handle_closed);
}
