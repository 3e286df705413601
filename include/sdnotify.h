/* sdnotify.h: systemd's service notification protocol (sd_notify(3)) for the main thread:
 * READY=1 once serving, RELOADING=1 + MONOTONIC_USEC and READY=1 around a reload, STOPPING=1,
 * a STATUS= line with connection counts, and WATCHDOG=1 pings when systemd asks for them.
 * Everything is a no-op unless NOTIFY_SOCKET is set (splicer not run by systemd). */
#ifndef SPLICER_SDNOTIFY_H
#define SPLICER_SDNOTIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* How often STATUS= is recomputed; it is sent only when its text changed. */
#define SP_SDNOTIFY_STATUS_MS 2000

/* What the STATUS= line shows. */
struct sp_sdnotify_counts {
    uint64_t active;     /* connections open now, over all workers */
    uint64_t total;      /* connections accepted since start */
    uint64_t generation; /* config generation in force */
};

/* Fills *out; called on the main thread each SP_SDNOTIFY_STATUS_MS and at each notification.
 * Must be cheap: it runs on the loop that handles signals and health checks. */
typedef void (*sp_sdnotify_counts_fn)(void *arg, struct sp_sdnotify_counts *out);

struct sp_sdnotify {
    bool enabled;           /* NOTIFY_SOCKET is set and splicer was built with libsystemd */
    bool stopping;          /* STOPPING=1 sent: the status counts what is left */
    bool send_failed;       /* a failed send was logged once already */
    uint64_t watchdog_usec; /* WATCHDOG_USEC meant for this process; 0 without a watchdog */
    sp_sdnotify_counts_fn counts;
    void *arg;
    char reload_error[192]; /* why the last reload failed; "" when it succeeded */
    char last_status[320];  /* the STATUS= text last sent */
    uv_timer_t watchdog;    /* every watchdog_usec / 2 while running */
    uv_timer_t status;      /* every SP_SDNOTIFY_STATUS_MS while running */
};

/* Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID and prepares the timers on `loop` (not
 * started: see sp_sdnotify_ready). `counts`/`arg` are borrowed for the life of n. Logs what it
 * will do when NOTIFY_SOCKET is set. Always succeeds. Main thread. */
void sp_sdnotify_init(struct sp_sdnotify *n, uv_loop_t *loop, sp_sdnotify_counts_fn counts,
                      void *arg);

/* READY=1 with a first STATUS=; starts the status refresh and the watchdog pings. Call once
 * every listener is listening and the workers run. Main thread. */
void sp_sdnotify_ready(struct sp_sdnotify *n);

/* RELOADING=1 with MONOTONIC_USEC (CLOCK_MONOTONIC now, as systemd wants it). Main thread. */
void sp_sdnotify_reloading(struct sp_sdnotify *n);

/* READY=1 after a reload. `error` is NULL when the reload succeeded, else why it failed: the
 * STATUS= line then says the old config stays, until the next successful reload. Main thread. */
void sp_sdnotify_reloaded(struct sp_sdnotify *n, const char *error);

/* STOPPING=1: a graceful stop began. The status keeps counting the connections left. */
void sp_sdnotify_stopping(struct sp_sdnotify *n);

/* Closes the timers (the loop can then end). Idempotent. Main thread. */
void sp_sdnotify_close(struct sp_sdnotify *n);

#endif
