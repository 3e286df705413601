/* server.h: the process: builds the runtime from a config, starts the workers, and runs the
 * main loop that handles signals (graceful stop) until every worker has finished. */
#ifndef SPLICER_SERVER_H
#define SPLICER_SERVER_H

#include "config.h"

/* How the process starts, besides its config. */
struct sp_server_opts {
    /* --takeover PATH: the control socket of the running splicer to replace (binary upgrade);
     * NULL for a plain start. */
    const char *takeover;
};

/* Runs splicer with `cfg` (ownership passes to the server) until SIGTERM/SIGINT and the drain
 * that follows, or until a new process takes over (control_socket). Listening sockets handed
 * over by systemd (LISTEN_FDS) or by the old process are used before any is bound. Returns the
 * process exit status: 0 after a clean stop, 1 when it could not start (the reason is logged;
 * on a failed takeover the old process goes on serving). opts may be NULL. Main thread. */
int sp_server_run(struct sp_config *cfg, const struct sp_server_opts *opts);

#endif
