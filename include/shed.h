/* shed.h: on_server_down: shutdown, the pacing. When health checks mark a server down, or a
 * reload or a DNS change removes it, and its upstream says `shutdown`, its open sessions are
 * reset (SO_LINGER 0 on both sockets, as HAProxy's shutdown-sessions), spread over the
 * upstream's shutdown_spread so that no worker closes thousands at once.
 *
 * Theory of operation. The main thread records the event in the server's shared state
 * (sp_server_shed_begin: the time, and the spread then in force) and wakes every worker
 * (sp_worker_shed). Each worker walks its own sessions: those relaying to that server that
 * started at or before the event get a reset time, evenly spread over [now, now + spread] by
 * sp_shed_due, and a timer resets them in batches at most sp_shed_tick_ms apart. A session is
 * only ever closed by the worker that owns it. If the server comes back up meanwhile
 * (sp_server_shed_cancel), the sessions not reset yet are spared: HAProxy does not revive the
 * ones it killed either, but there is no reason to kill more of them.
 *
 * Pure functions, no libuv, no syscalls. */
#ifndef SPLICER_SHED_H
#define SPLICER_SHED_H

#include <stddef.h>
#include <stdint.h>

/* When the i-th of n sessions (0 <= i < n) is reset, n being spread over `spread` ms from
 * `start`: start + spread * i / n, rounded down and computed without overflow. The first goes
 * at `start`, the last at start + spread * (n - 1) / n. n == 0 gives start. */
uint64_t sp_shed_due(uint64_t start, uint64_t spread, size_t i, size_t n);

/* The least time between two batches of resets on one worker for a spread: spread / 64,
 * within 10..1000 ms, so a worker wakes at most about 64 times per spread and the resets due
 * meanwhile go together. */
uint64_t sp_shed_tick_ms(uint64_t spread);

/* How long a worker waits, at `now`, for its next batch whose earliest reset is due at `due`:
 * until then, but not less than `tick` (0 when due has passed and tick is 0). */
uint64_t sp_shed_delay(uint64_t now, uint64_t due, uint64_t tick);

#endif
