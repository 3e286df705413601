/* listener.h: one worker's accepting socket for one configured listener. Accepts in bounded
 * batches, enforces max_connections across workers through the shared listener counters, and
 * at the fd cap refuses one connection cleanly and pauses briefly instead of spinning.
 *
 * A listener object outlives config reloads that keep its address (its socket never closes,
 * so no connect is refused during a reload), and outlives its own retirement until the last
 * session it accepted has closed. */
#ifndef SPLICER_LISTENER_H
#define SPLICER_LISTENER_H

#include "common.h"
#include "log.h"
#include "runtime.h"
#include "srclimit.h"
#include <stdbool.h>
#include <uv.h>

struct sp_listener {
    struct sp_worker *worker;            /* borrowed */
    struct sp_wgen *gen;                 /* borrowed: the generation new sessions join */
    const struct sp_listener_conf *conf; /* borrowed from gen's runtime */
    struct sp_listener_stats *stats;     /* borrowed from gen's runtime */
    struct sp_upstream *upstream;        /* borrowed from gen's runtime */
    struct sp_balancer *balancer;        /* borrowed from gen */
    int fd;                              /* owned; -1 once closed */
    uv_poll_t poll;
    uv_timer_t pause;                  /* resumes accepting after an fd-exhaustion pause */
    struct sp_ratelimit untrusted_log; /* peers outside proxy_protocol_from: a line a second */
    unsigned nsessions;                /* sessions accepted here and still open */
    unsigned closes_pending;           /* handle close callbacks still to come */
    bool retired;                      /* closed: freed once nsessions and closes_pending are 0 */

    struct sp_ratelimit limit_log;     /* clients over their per-source limits: a line a second */
    struct sp_ratelimit untracked_log; /* clients the per-source table had no room for */
};

/* Binds a listening socket for `conf` (SO_REUSEPORT, so every worker can have one). Returns
 * the fd or -errno, logging the failure with the listener's name. Main thread. */
int sp_listener_bind(const struct sp_listener_conf *conf);

/* Makes a listener object around an already bound `fd` (ownership passes, even on failure)
 * and starts accepting on the worker's loop. Returns NULL on failure. Worker thread. */
struct sp_listener *sp_listener_start(struct sp_worker *w, int fd);

/* Points the listener at a (new) generation's config, counters, upstream and balancer; the
 * sessions already open keep what they started with. Worker thread. */
void sp_listener_retarget(struct sp_listener *l, struct sp_wgen *gen,
                          const struct sp_listener_conf *conf, struct sp_listener_stats *stats,
                          struct sp_upstream *up, struct sp_balancer *bal);

/* Stops accepting and closes the socket (new connects are refused from now on). The object
 * is freed once its handles have closed and its last session is gone. Worker thread. */
void sp_listener_retire(struct sp_listener *l);

/* Counts a new connection from `client` against the per-source limits of `lc` with the table
 * `tab` (both from the runtime of the session's generation; tab NULL: no limits). True when it
 * may go on: *hold is then what it must release when it closes (sp_srclimit_release). False when
 * it is over a limit: counted in `stats`, logged at most once a second per worker, and the caller
 * closes it at once. Worker thread. */
bool sp_listener_admit_source(struct sp_listener *l, const struct sp_listener_conf *lc,
                              struct sp_listener_stats *stats, struct sp_srclimit *tab,
                              const struct sockaddr *client, struct sp_srclimit_hold *hold);

/* A session accepted by `l` has closed. Worker thread. */
void sp_listener_session_done(struct sp_listener *l);

/* True when the two listeners bind the same address, so a reload can keep the socket. */
bool sp_listener_same_addr(const struct sp_listener_conf *a, const struct sp_listener_conf *b);

#endif
