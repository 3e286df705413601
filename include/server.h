/* server.h: the process: builds the runtime from a config, starts the workers, and runs the
 * main loop that handles signals (graceful stop) until every worker has finished. */
#ifndef SPLICER_SERVER_H
#define SPLICER_SERVER_H

#include "config.h"

/* Runs splicer with `cfg` (ownership passes to the server) until SIGTERM/SIGINT and the drain
 * that follows. Returns the process exit status: 0 after a clean stop, 1 when it could not
 * start (the reason is logged). Main thread. */
int sp_server_run(struct sp_config *cfg);

#endif
