/* admin.h: the admin HTTP endpoint (libmicrohttpd, in its own thread). It never touches the
 * relay: every request goes through the ops below, which copy what they need under the
 * server's own locking. Reading is open; drain and enable need the bearer token of
 * admin.token_file, or, without one, a loopback listener and a request no web page can forge
 * (the rules are in admin.c). */
#ifndef SPLICER_ADMIN_H
#define SPLICER_ADMIN_H

#include "config.h"
#include "stats.h"
#include <stdbool.h>

struct sp_admin_ops {
    /* A fresh snapshot for /metrics and /status; 0 or -errno. Called on the admin thread. */
    int (*snapshot)(void *ctx, struct sp_stats **out);
    /* Drain (drain=true) or re-enable a server of an upstream, named by its configured
     * address. Returns 0, or -ENOENT when no such upstream/server exists. */
    int (*set_drain)(void *ctx, const char *upstream, const char *address, bool drain);
    /* True once the process is draining (shutdown signal): /healthz answers 503. */
    bool (*draining)(void *ctx);
};

struct sp_admin;

/* Starts serving conf->listen on a thread of its own, with conf's token (copied). Returns 0 or
 * -errno (the address could not be bound, or the library refused to start), with *out NULL on
 * failure. Main thread. */
int sp_admin_start(const struct sp_admin_conf *conf, const struct sp_admin_ops *ops, void *ctx,
                   struct sp_admin **out);

/* As sp_admin_start, on `fd`, a socket already listening on conf->listen (inherited: socket
 * activation or a takeover; ownership passes, even on failure); fd -1 binds one. */
int sp_admin_start_fd(const struct sp_admin_conf *conf, int fd, const struct sp_admin_ops *ops,
                      void *ctx, struct sp_admin **out);

/* The listening socket (owned by the endpoint; valid until sp_admin_stop), or -1 for NULL.
 * Main thread. */
int sp_admin_listen_fd(const struct sp_admin *a);

/* A reload: takes conf's token (copied; none when conf->token is NULL) for the requests that
 * follow. The listen address is the one sp_admin_start got; a new one needs a new start.
 * Returns 0, or -ENOMEM with the old token still in force. Main thread. */
int sp_admin_reconfigure(struct sp_admin *a, const struct sp_admin_conf *conf);

/* Stops the thread and frees everything. NULL is a no-op. Main thread. */
void sp_admin_stop(struct sp_admin *a);

#endif
