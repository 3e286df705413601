/* session.h: one proxied connection, from accept to the last close callback. A session lives
 * on the worker that accepted it and never crosses threads. */
#ifndef SPLICER_SESSION_H
#define SPLICER_SESSION_H

#include "common.h"
#include "poller.h"
#include "srclimit.h"
#include <stdint.h>
#include <sys/socket.h>

struct sp_listener;

/* Takes ownership of the accepted client `fd` and of `src`, its count in the listener's
 * per-source table (a zeroed hold when none), and starts connecting to a server of the
 * listener's upstream. On failure the client is closed and counted; nothing is returned
 * because the listener has nothing more to do either way. Worker thread. */
void sp_session_start(struct sp_listener *l, int fd, const struct sockaddr *peer, socklen_t len,
                      const struct sp_srclimit_hold *src);

/* An epoll event for socket `side` (0 client, 1 server) of the session `owner`: the worker's
 * poller calls it (sp_poller_event_fn). Worker thread. */
void sp_session_event(void *owner, int side, uint32_t events);

/* A session that yielded runs again (sp_poller_run_fn). Worker thread. */
void sp_session_resume(struct sp_poller_link *link);

/* Closes the session now, as on shutdown_timeout: both sockets get a reset. Worker thread. */
void sp_session_abort(struct sp_session *s);

/* For on_server_down: shutdown (worker_shed.c); worker thread. The session after s in its
 * worker's list (w->sessions first), NULL at the end. */
struct sp_session *sp_session_next(const struct sp_session *s);

/* The server s relays to, with the time s was accepted in *start_ms (the worker's loop clock)
 * and in *shed_due its scheduled reset (0 = none; worker_shed.c reads and writes it); NULL, with
 * nothing set, when s is not relaying (inspecting, connecting, or already ending). */
struct sp_server *sp_session_relaying_to(struct sp_session *s, uint64_t *start_ms,
                                         uint64_t **shed_due);

/* Closes s with a reset to both sides, logged with the end `server_down`. Worker thread. */
void sp_session_shutdown(struct sp_session *s);

#endif
