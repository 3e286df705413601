/* health_flap.h: flap damping for active health checks. The up/down changes of a server's
 * verdict are remembered for flap_window; more than flap_max of them hold the server down until
 * its verdict has stayed up for flap_hold. Pure: no libuv, no I/O; times in milliseconds. */
#ifndef SPLICER_HEALTH_FLAP_H
#define SPLICER_HEALTH_FLAP_H

#include <stdbool.h>
#include <stdint.h>

#define SP_FLAP_MAX_MAX 100 /* flap_max's bound, so the history is a fixed array */

struct sp_flap {
    uint64_t at[SP_FLAP_MAX_MAX + 1]; /* times of the last changes, a ring */
    unsigned head, n;                 /* next slot; changes kept (at most flap_max + 1) */
    bool held;                        /* kept down for flapping */
    uint64_t up_since;                /* when the verdict last went up (valid while it is) */
};

/* Records a change of the verdict to `up` at now. Returns true when it starts a hold: more
 * than max changes within window (max 0: damping off, never). */
bool sp_flap_change(struct sp_flap *f, bool up, uint64_t now, uint64_t window, unsigned max);

/* Changes within window of now. */
unsigned sp_flap_count(const struct sp_flap *f, uint64_t now, uint64_t window);

/* With the verdict `up`: ends a hold whose server has been up for hold ms. Returns true when it
 * ended one. */
bool sp_flap_release(struct sp_flap *f, bool up, uint64_t now, uint64_t hold);

#endif
