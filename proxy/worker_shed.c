/* worker_shed.c: on_server_down: shutdown on a worker's own thread (shed.h has the theory):
 * which of its sessions to reset, when, and the timer that resets them in batches. Runs only
 * when a server goes down or away, so it walks the worker's whole session list rather than
 * keeping per-server lists that every connection would pay for. */
#include "worker.h"

#include "log.h"
#include "session.h"
#include "shed.h"
#include "upstream.h"

void sp_worker_shed(struct sp_worker *w)
{
    atomic_store(&w->shed_pending, true);
    uv_async_send(&w->wakeup);
}

/* The shed event that s is one of the victims of, with its spread: s relays to a server being
 * shed, started at or before the event. Returns the event's time, 0 when s is not concerned.
 * *due is s's scheduled reset. */
static uint64_t shed_event(struct sp_session *s, struct sp_server **srv, uint64_t **due,
                           uint64_t *spread)
{
    uint64_t start;
    *srv = sp_session_relaying_to(s, &start, due);
    if (*srv == NULL)
        return 0;
    struct sp_server_state *st = (*srv)->state;
    /* Acquire: pairs with sp_server_shed_begin, so the spread read next is this event's. */
    uint64_t at = atomic_load_explicit(&st->shed_at_ms, memory_order_acquire);
    if (at == 0 || start > at)
        return 0;
    *spread = atomic_load_explicit(&st->shed_spread_ms, memory_order_relaxed);
    return at;
}

static void on_shed_timer(uv_timer_t *t);

/* Resets the sessions whose time has come, spares those whose server is back up, and arms the
 * timer for the next batch. */
static void shed_run(struct sp_worker *w)
{
    uint64_t now = uv_now(&w->loop), next = 0, spread;
    unsigned reset = 0, spared = 0;
    struct sp_session *nx;
    for (struct sp_session *s = w->sessions; s != NULL; s = nx) {
        nx = sp_session_next(s); /* s may be closed (and unlinked) below */
        struct sp_server *srv;
        uint64_t *due;
        uint64_t at = shed_event(s, &srv, &due, &spread);
        if (srv == NULL || *due == 0)
            continue;
        if (at == 0) {
            *due = 0; /* the server came back up first */
            spared++;
        } else if (*due > now) {
            next = next == 0 || *due < next ? *due : next;
        } else {
            atomic_fetch_add_explicit(&srv->state->sessions_shutdown, 1, memory_order_relaxed);
            sp_session_shutdown(s);
            reset++;
        }
    }
    if (reset > 0 || spared > 0)
        sp_log_debug("on_server_down: %u sessions reset, %u spared (their server is up again)",
                     reset, spared);
    if (next != 0 && !uv_is_closing((uv_handle_t *)&w->shed_timer))
        uv_timer_start(&w->shed_timer, on_shed_timer, sp_shed_delay(now, next, w->shed_tick_ms), 0);
}

static void on_shed_timer(uv_timer_t *t)
{
    shed_run(t->data);
}

void sp_worker_shed_scan(struct sp_worker *w)
{
    if (uv_is_closing((uv_handle_t *)&w->shed_timer))
        return;
    uint64_t now = uv_now(&w->loop), spread = 0;
    struct sp_server *srv;
    uint64_t *due;
    size_t n = 0, i = 0;
    /* Two walks: the count first, so each new victim's reset time can be spread evenly. */
    for (struct sp_session *s = w->sessions; s != NULL; s = sp_session_next(s)) {
        if (shed_event(s, &srv, &due, &spread) != 0 && *due == 0)
            n++;
    }
    if (!uv_is_active((uv_handle_t *)&w->shed_timer))
        w->shed_tick_ms = 1000;
    for (struct sp_session *s = w->sessions; s != NULL && i < n; s = sp_session_next(s)) {
        if (shed_event(s, &srv, &due, &spread) == 0 || *due != 0)
            continue;
        uint64_t at = sp_shed_due(now, spread, i++, n);
        *due = at != 0 ? at : 1;
        uint64_t tick = sp_shed_tick_ms(spread);
        if (tick < w->shed_tick_ms)
            w->shed_tick_ms = tick;
    }
    if (n > 0)
        sp_log_debug("on_server_down: %zu sessions to reset", n);
    shed_run(w);
}
