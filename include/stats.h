/* stats.h: a point-in-time copy of everything the admin endpoint reports, as plain data. The
 * server fills it (sp_server's snapshot op) from the live atomics; metrics.c renders it as
 * Prometheus text or /status JSON. Owning the copy lets the admin thread format at leisure
 * without holding any lock the relay could wait on. */
#ifndef SPLICER_STATS_H
#define SPLICER_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sp_stats_listener {
    char *name;           /* owned */
    char *listen;         /* owned; as configured */
    char *upstream;       /* owned; upstream name */
    uint64_t active;      /* open now */
    uint64_t connections; /* accepted and served, ever */
    uint64_t rejected;    /* closed at once: over max_connections or out of fds */
    uint64_t denied;      /* refused by allow/deny */
    uint64_t malformed;   /* a malformed PROXY header or TLS ClientHello */
    uint64_t untrusted;   /* closed unread: a peer outside proxy_protocol_from */
    uint64_t bytes_up;    /* client to server */
    uint64_t bytes_down;  /* server to client */

    /* closed at once, by reason (splicer_rejected_connections_total) where the above lump */
    uint64_t over_max;      /* over max_connections (part of rejected) */
    uint64_t fd_exhausted;  /* out of file descriptors (part of rejected) */
    uint64_t over_src_conn; /* over limits.per_source_connections */
    uint64_t over_src_rate; /* over limits.per_source_rate */

    /* the limits block (all 0 without one) and its per-source table */
    bool limits;
    unsigned per_source_connections; /* 0: not limited */
    unsigned rate;                   /* per_source_rate; 0: not limited */
    bool rate_per_minute;            /* N/m rather than N/s */
    unsigned source_prefix_v4;
    unsigned source_prefix_v6;
    uint64_t tracked_max;   /* entries of the table */
    uint64_t tracked;       /* clients in it now: an open connection or a bucket refilling */
    uint64_t src_untracked; /* connections admitted without per-source limits: no room */
};

struct sp_stats_server {
    char *upstream; /* owned */
    char *address;  /* owned; as configured */
    bool up;        /* active health state */
    bool usable;    /* takes new connections now: up, not drained, not held by passive checks */
    bool drained;
    bool backup;
    unsigned weight;
    uint64_t active;
    uint64_t connections;
    uint64_t connect_failures;
    int check_result;           /* enum sp_check_result or -errno (see upstream.h) */
    bool health_checked;        /* the upstream has a health_check block */
    unsigned check_http_status; /* status code of the last http check's reply; 0: none */
    uint64_t flaps;             /* up/down changes of the health verdict */
    bool flap_held;             /* kept down by flap damping */
    uint64_t bytes_up;          /* client to server, through this server */
    uint64_t bytes_down;        /* server to client */
    bool checked;               /* an active check has ended (the two below are set) */
    uint64_t last_check_age_ms; /* since the last check ended */
    uint64_t last_check_unix;   /* when it ended, Unix time in seconds */
    uint64_t sessions_shutdown; /* sessions reset by on_server_down: shutdown */
};

/* One worker thread: how the kernel spread connections over the SO_REUSEPORT sockets. */
struct sp_stats_worker {
    uint64_t connections; /* accepted by this worker, ever */
    uint64_t active;      /* open on it now */
};

struct sp_stats_upstream {
    char *name;          /* owned */
    const char *balance; /* static string */
    size_t nservers;
    const char *check; /* static: "off", "tcp" (connect, send/expect) or "http"; NULL: "off" */
    bool all_down;     /* health checks mark every server down (sp_upstream_all_down) */
    bool fail_open;    /* all_down: fail_open (else reject) */
    const char *on_server_down;  /* static: "keep" or "shutdown" */
    uint64_t shutdown_spread_ms; /* its shutdown_spread */
};

struct sp_stats {
    struct sp_stats_listener *listeners; /* owned array */
    size_t nlisteners;
    struct sp_stats_upstream *upstreams; /* owned array */
    size_t nupstreams;
    struct sp_stats_server *servers; /* owned array, grouped by upstream in config order */
    size_t nservers;
    struct sp_stats_worker *per_worker; /* owned array of `workers`; NULL: not known */

    /* relay, summed over workers */
    uint64_t splice_bytes;
    uint64_t copy_bytes;
    uint64_t copy_fallbacks;
    uint64_t pipes_idle;   /* in the pools */
    uint64_t pipes_in_use; /* lent to connections */
    uint64_t pipes_created;
    uint64_t pipes_shrunk;       /* granted smaller than pipe_size */
    uint64_t pipe_failures;      /* pipe2() failed */
    uint64_t pipe_memory;        /* bytes: capacity of every pipe open now, idle or lent */
    uint64_t pipe_memory_limit;  /* bytes: pipe_memory_max */
    uint64_t pipes_over_budget;  /* pipes not made: not one page of pipe_memory_max left */
    uint64_t access_log_dropped; /* access log buffers dropped: the writer was too far behind */

    /* process */
    const char *version; /* static */
    unsigned workers;
    bool draining;              /* SIGTERM/SIGINT received: /healthz answers 503 */
    uint64_t start_time_unix;   /* seconds */
    uint64_t config_generation; /* 1 for the config loaded at start, +1 per successful reload */
    uint64_t reloads_ok;
    uint64_t reloads_failed;
    bool last_reload_ok;       /* true when no reload was attempted */
    char *last_reload_error;   /* owned; NULL when none; "FILE:LINE:COL: message" */
    uint64_t last_reload_unix; /* 0 when none */

    /* binary upgrade and socket activation */
    unsigned pid;
    char *control_socket;        /* owned; NULL when off */
    uint64_t takeovers_ok;       /* takeovers this process answered and handed over to */
    uint64_t takeovers_failed;   /* ... refused, timed out or abandoned by the new process */
    unsigned inherited_systemd;  /* listening sockets taken from LISTEN_FDS at start */
    unsigned inherited_takeover; /* ... from the process this one replaced */
    unsigned took_over_from;     /* that process's pid; 0 when none */
};

/* Frees a snapshot and everything it owns. NULL is a no-op. Any thread. */
void sp_stats_free(struct sp_stats *st);

#endif
