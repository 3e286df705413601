/* takeover.h: the new process's side of a binary upgrade (--takeover PATH): it asks the splicer
 * serving the control socket at PATH for its listening sockets, and later tells it to stop
 * accepting (control_proto.h). Blocking calls with timeouts, before the workers run. Main
 * thread. */
#ifndef SPLICER_TAKEOVER_H
#define SPLICER_TAKEOVER_H

#include "inherit.h"
#include <stdint.h>

struct sp_takeover;

/* Connects to the control socket at `path`, says HELLO and receives every listening socket of
 * the old process into `in` (source takeover). Returns 0 with *out set, or -errno with a
 * message logged: nobody serves `path`, the old process refused, a socket is not usable. */
int sp_takeover_begin(const char *path, struct sp_inherit *in, struct sp_takeover **out);

/* The old process's pid. */
uint32_t sp_takeover_old_pid(const struct sp_takeover *t);

/* Tells the old process to stop accepting and drain, and waits for its answer. Returns 0 (also
 * when the old process went away without answering: it is not accepting either way), or
 * -errno when it refused (logged): it then keeps serving. */
int sp_takeover_commit(struct sp_takeover *t);

/* Closes the connection (before commit: the old process carries on as before). NULL: no-op. */
void sp_takeover_free(struct sp_takeover *t);

#endif
