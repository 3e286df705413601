/* health.h: active health checks. One check per server for the whole process, run on the main
 * thread's loop; results reach every worker through the server's atomic `up` flag.
 *
 * A check is a TCP connect, optionally followed by sending `send` and waiting for a reply that
 * contains `expect`, all within `timeout`. A server starts up; the first check result sets its
 * state directly, and after that it takes `fall` consecutive failures to go down and `rise`
 * consecutive successes to come back. */
#ifndef SPLICER_HEALTH_H
#define SPLICER_HEALTH_H

#include "runtime.h"
#include <stdbool.h>
#include <uv.h>

/* The rise/fall counter of one server, kept apart from I/O so it can be tested alone. */
struct sp_health_state {
    bool up;         /* the state the counter has decided */
    bool checked;    /* a first result has been recorded */
    unsigned streak; /* consecutive results that disagree with `up` */
};

/* Records one result. Returns true when `up` changed. The first result decides at once. */
bool sp_health_record(struct sp_health_state *st, bool ok, unsigned rise, unsigned fall);

struct sp_health;

/* Starts checking every server of every upstream that has a health_check block; the first
 * checks start at once. Returns 0 (with *out NULL when nothing is to be checked) or -errno.
 * Main thread. */
int sp_health_start(uv_loop_t *loop, struct sp_runtime *rt, struct sp_health **out);

/* Stops every check. Handles close asynchronously; the memory goes with the last of them.
 * NULL is a no-op. Main thread. */
void sp_health_stop(struct sp_health *h);

#endif
