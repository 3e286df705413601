/* health.h: active health checks. One check per server for the whole process, run on the main
 * thread's loop; results reach every worker through the server's atomic `up` flag. A check
 * belongs to the server, not to a runtime: it carries on across reloads and DNS changes.
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

/* Called when the checks mark server s down and its upstream has on_server_down: shutdown
 * (sp_server_shed_begin has marked its sessions): the caller wakes the workers. Main thread. */
typedef void (*sp_health_shed_fn)(void *arg, struct sp_server *s, const char *why);

/* Sets the function called as above (NULL: none). Main thread. */
void sp_health_set_shed(struct sp_health *h, sp_health_shed_fn fn, void *arg);

/* Starts checking every server of every upstream that has a health_check block; the first
 * checks start at once. *out is set even when nothing is to be checked, so that a later
 * runtime can be applied with sp_health_update. Returns 0 or -errno. Main thread. */
int sp_health_start(uv_loop_t *loop, struct sp_runtime *rt, struct sp_health **out);

/* Switches the checks to `rt`, the successor of the runtime they ran on, which must still be
 * alive during the call (its servers are matched by the state they share with rt's). A server
 * that stays keeps its check as it is: the schedule, a check in flight and the rise/fall streak
 * go on, so a reload or a DNS change neither probes it again at once nor resets its progress.
 * A new server is checked at once; checks of removed servers stop. Servers of upstreams
 * without a health_check block lose a verdict earlier checks left (they are up, as unchecked
 * servers are). Returns 0, or -ENOMEM with some of rt's servers left unchecked (and none of
 * the old runtime's still referenced). Main thread. */
int sp_health_update(struct sp_health *h, struct sp_runtime *rt);

/* Logs, for each upstream of rt that old (its predecessor, still alive) has too, a change of
 * the all-down state that the reload brought (a server added or removed, checks turned off).
 * Call after sp_health_update. Main thread. */
void sp_health_log_all_down(const struct sp_runtime *old, const struct sp_runtime *rt);

/* Stops every check. Handles close asynchronously; the memory goes with the last of them.
 * NULL is a no-op. Main thread. */
void sp_health_stop(struct sp_health *h);

#endif
