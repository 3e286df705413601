/* control.h: the control socket (control_socket) of a running splicer: a Unix socket, mode
 * 0600, on which a new binary started with --takeover asks for the listening sockets and then
 * tells this process to stop accepting and drain (control_proto.h). Also the guard against a
 * second instance: a start without --takeover refuses a path a live splicer answers on. Runs
 * on the main loop; a peer is bounded in time and in what it may send. Main thread. */
#ifndef SPLICER_CONTROL_H
#define SPLICER_CONTROL_H

#include "config.h"
#include "worker.h"
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

struct sp_control_ops {
    bool (*stopping)(void *ctx);          /* draining already: refuse */
    int (*admin_fd)(void *ctx);           /* the admin endpoint's listening socket, or -1 */
    bool (*shared)(void *ctx, ino_t ino); /* a socket every worker accepts on (systemd's) */
    void (*handover)(void *ctx, uint32_t new_pid); /* stop accepting, drain, exit */
};

struct sp_control;

/* Takes `path` for this process. Without `takeover`: refuses (-EADDRINUSE, logged with the
 * other process's pid) when a splicer answers there, replaces a stale socket file, and binds.
 * With `takeover`: binds a temporary name next to it, which sp_control_install moves into
 * place once the old process has let go. Nothing is served before sp_control_start. Returns 0
 * or -errno (logged). */
int sp_control_open(const char *path, bool takeover, struct sp_control **out);

/* Moves the temporary socket of a takeover over `path` (rename: the path never goes missing,
 * and the old process's socket is unlinked by it). Returns 0 or -errno (logged). */
int sp_control_install(struct sp_control *c);

/* Serves upgrade requests on `loop`: workers (borrowed, running) give their listening
 * sockets. */
void sp_control_start(struct sp_control *c, uv_loop_t *loop, struct sp_worker *workers,
                      unsigned nworkers, const struct sp_control_ops *ops, void *ctx);

/* Closes everything; unlinks the path when it is still this process's socket. The object is
 * freed by the loop's close callbacks (or at once when it was never started). NULL: no-op. */
void sp_control_stop(struct sp_control *c);

/* The path, and the takeovers this process answered: handed over, or refused/abandoned. */
const char *sp_control_path(const struct sp_control *c);
void sp_control_counts(const struct sp_control *c, uint64_t *ok, uint64_t *failed);

#endif
