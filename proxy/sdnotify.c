/* sdnotify.c: the sd_notify(3) messages splicer sends to systemd, through libsystemd's
 * sd_notify(). The watchdog pings come from a timer on the main loop, so a main loop stuck in
 * a reload, a DNS lookup or a bug stops them and systemd restarts the service. */
#include "sdnotify.h"

#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef SPLICER_HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

static void send_msg(struct sp_sdnotify *n, const char *text)
{
    if (!n->enabled)
        return;
#ifdef SPLICER_HAVE_LIBSYSTEMD
    int rc = sd_notify(0, text);
    if (rc < 0 && !n->send_failed) {
        /* Once: a watchdog ping every few seconds would otherwise flood the log. */
        n->send_failed = true;
        sp_log_warn("systemd: cannot notify %s: %s (further failures are not logged)",
                    getenv("NOTIFY_SOCKET"), strerror(-rc));
    }
#else
    (void)text;
#endif
}

/* The STATUS= text for the state and counts now. */
static void format_status(struct sp_sdnotify *n, char *buf, size_t cap)
{
    struct sp_sdnotify_counts c = {0};
    n->counts(n->arg, &c);
    if (n->stopping) {
        snprintf(buf, cap,
                 "STATUS=stopping: %" PRIu64 " active connections left, %" PRIu64 " total",
                 c.active, c.total);
        return;
    }
    snprintf(buf, cap,
             "STATUS=%s%s%s%" PRIu64 " active connections, %" PRIu64
             " total, config generation %" PRIu64,
             n->reload_error[0] != '\0' ? "reload failed, old config kept (" : "", n->reload_error,
             n->reload_error[0] != '\0' ? "); " : "", c.active, c.total, c.generation);
}

/* Sends `head` (a state change, or NULL) with the current STATUS= in one datagram. */
static void send_state(struct sp_sdnotify *n, const char *head)
{
    if (!n->enabled)
        return;
    char status[sizeof(n->last_status)];
    format_status(n, status, sizeof(status));
    if (head == NULL && strcmp(status, n->last_status) == 0)
        return; /* nothing new: no datagram every 2 s for an idle proxy */
    snprintf(n->last_status, sizeof(n->last_status), "%s", status);
    char msg[sizeof(status) + 96];
    snprintf(msg, sizeof(msg), "%s%s%s", head != NULL ? head : "", head != NULL ? "\n" : "",
             status);
    send_msg(n, msg);
}

static void on_status(uv_timer_t *t)
{
    send_state(t->data, NULL);
}

static void on_watchdog(uv_timer_t *t)
{
    send_msg(t->data, "WATCHDOG=1");
}

void sp_sdnotify_init(struct sp_sdnotify *n, uv_loop_t *loop, sp_sdnotify_counts_fn counts,
                      void *arg)
{
    memset(n, 0, sizeof(*n));
    n->counts = counts;
    n->arg = arg;
    uv_timer_init(loop, &n->watchdog);
    uv_timer_init(loop, &n->status);
    n->watchdog.data = n->status.data = n;
    /* Neither keeps the loop alive: it ends when the workers have. */
    uv_unref((uv_handle_t *)&n->watchdog);
    uv_unref((uv_handle_t *)&n->status);
    const char *sock = getenv("NOTIFY_SOCKET");
    if (sock == NULL || sock[0] == '\0')
        return;
#ifdef SPLICER_HAVE_LIBSYSTEMD
    n->enabled = true;
    uint64_t usec = 0;
    /* > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID is absent or this process. */
    if (sd_watchdog_enabled(0, &usec) > 0)
        n->watchdog_usec = usec;
    if (n->watchdog_usec > 0)
        sp_log_info("systemd: notifying %s; watchdog ping every %" PRIu64 " ms", sock,
                    n->watchdog_usec / 2000);
    else
        sp_log_info("systemd: notifying %s", sock);
#else
    sp_log_warn("systemd: NOTIFY_SOCKET is set but splicer was built without libsystemd: not "
                "notifying (use Type=simple or Type=exec)");
#endif
}

void sp_sdnotify_ready(struct sp_sdnotify *n)
{
    if (!n->enabled)
        return;
    send_state(n, "READY=1");
    uv_timer_start(&n->status, on_status, SP_SDNOTIFY_STATUS_MS, SP_SDNOTIFY_STATUS_MS);
    if (n->watchdog_usec > 0) {
        /* Half the period, as sd_watchdog_enabled(3) advises: one late ping is not fatal. */
        uint64_t ms = n->watchdog_usec / 2000;
        ms = ms > 0 ? ms : 1;
        send_msg(n, "WATCHDOG=1");
        uv_timer_start(&n->watchdog, on_watchdog, ms, ms);
    }
}

void sp_sdnotify_reloading(struct sp_sdnotify *n)
{
    if (!n->enabled)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char msg[96];
    snprintf(msg, sizeof(msg), "RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=%" PRIu64,
             (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
    send_msg(n, msg);
    n->last_status[0] = '\0';
}

void sp_sdnotify_reloaded(struct sp_sdnotify *n, const char *error)
{
    if (!n->enabled)
        return;
    snprintf(n->reload_error, sizeof(n->reload_error), "%s", error != NULL ? error : "");
    /* STATUS= is one line: a newline in the error would end the field early. */
    for (char *p = n->reload_error; *p != '\0'; p++) {
        if (*p == '\n')
            *p = ' ';
    }
    send_state(n, "READY=1");
}

void sp_sdnotify_stopping(struct sp_sdnotify *n)
{
    if (!n->enabled)
        return;
    n->stopping = true;
    send_state(n, "STOPPING=1");
}

void sp_sdnotify_close(struct sp_sdnotify *n)
{
    if (!uv_is_closing((uv_handle_t *)&n->watchdog))
        uv_close((uv_handle_t *)&n->watchdog, NULL);
    if (!uv_is_closing((uv_handle_t *)&n->status))
        uv_close((uv_handle_t *)&n->status, NULL);
}
