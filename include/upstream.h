/* upstream.h: the live upstream pools and their servers, built from a config snapshot and
 * shared by every worker. Per-server state is a separate object of atomics, shared by the same
 * server across runtimes, each field with a single writer kind: `up` by the health checker, the
 * counters and passive-check fields by whichever worker connects. No libuv; times are monotonic
 * milliseconds (uv_now() of any loop, or sp_upstream_now_ms()). */
#ifndef SPLICER_UPSTREAM_H
#define SPLICER_UPSTREAM_H

#include "config.h"
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Bytes one worker relayed through one server: [0] client to server ("upstream"), [1] server to
 * client ("downstream"). Written by that worker only (SP_STAT_ADD, no read-modify-write), on a
 * cache line of its own, as the listener's byte counters are (runtime.h). */
struct sp_server_bytes {
    _Atomic uint64_t v[2];
    char pad[64 - 2 * sizeof(uint64_t)];
};

/* The mutable state of one server. A runtime's successor (a reload, a changed DNS answer) does
 * not copy it: the same server (same upstream name and server address) in both runtimes points
 * at one state, so a write through either is the same write, whenever it happens, and the
 * counters, the drain and the `active` count run on across generations. */
struct sp_server_state {
    _Atomic unsigned refs; /* servers, in any runtime, pointing here */

    _Atomic bool up;                   /* active health state (true without health checks) */
    _Atomic bool drained;              /* by the admin endpoint: no new connections */
    _Atomic int check_result;          /* last active check: enum sp_check_result or -errno */
    _Atomic int check_http_status;     /* status code of the last http check's reply, else 0 */
    _Atomic bool flap_held;            /* kept down by flap damping (health checker writes) */
    _Atomic uint64_t flaps;            /* up/down changes of the health verdict, ever */
    _Atomic uint32_t active;           /* proxied connections open now, under any runtime */
    _Atomic uint64_t connections;      /* proxied connections established, ever */
    _Atomic uint64_t connect_failures; /* refused or timed-out connects, ever */
    _Atomic uint64_t last_check_ms;    /* when the last active check ended (monotonic); 0: none */
    unsigned nworkers;                 /* slots of bytes: `workers`, which a reload keeps */
    struct sp_server_bytes *bytes;     /* owned array of nworkers, 64-byte aligned */

    /* on_server_down: shutdown (shed.h). The main thread sets shed_spread_ms, then shed_at_ms
     * when the server goes down or away; workers reset the sessions that started at or before
     * shed_at_ms, spread over shed_spread_ms. shed_at_ms 0: nothing to shed (never, or the
     * server came back up, which spares the sessions not yet reset). */
    _Atomic uint64_t shed_at_ms;
    _Atomic uint64_t shed_spread_ms;
    _Atomic uint64_t sessions_shutdown; /* sessions reset by on_server_down: shutdown, ever */

    /* Passive checks (nginx's max_fails/fail_timeout): failures counted in a window that
     * starts at the first failure; reaching max_fails skips the server until down_until. */
    _Atomic uint32_t fails;
    _Atomic uint64_t fail_window_start_ms;
    _Atomic uint64_t down_until_ms;
    _Atomic uint64_t up_since_ms; /* when set_up() last brought it up, for slow_start; 0 = up
                                     since start (no ramp). An expired passive hold counts as
                                     a recovery at down_until without being written here. */
};

struct sp_server {
    const struct sp_server_conf *conf; /* borrowed from the config snapshot */
    struct sp_upstream *upstream;      /* borrowed; the pool holding this server */
    unsigned index;                    /* position in upstream->servers */
    const char *name;                  /* borrowed: conf->address */
    struct sp_server_state *state;     /* one reference; shared with the same server of the
                                          runtimes before and after this one */
};

/* Outcome of the last active health check, as kept in sp_server.check_result; a negative value
 * is the -errno of the connect or I/O that failed. */
enum sp_check_result {
    SP_CHECK_NONE = 0, /* not checked (yet, or no health_check block) */
    SP_CHECK_OK = 1,
    SP_CHECK_TIMEOUT = 2,
    SP_CHECK_BAD_REPLY = 3, /* reply without `expect` */
    SP_CHECK_CLOSED = 4,    /* closed before the expected reply */
    SP_CHECK_NOT_HTTP = 5,  /* http check: the reply does not start with a status line */
    /* http check: a status outside expect_status; the code is result - SP_CHECK_HTTP_STATUS */
    SP_CHECK_HTTP_STATUS = 1000,
};

/* The result of an http check answered with `status` outside expect_status. */
static inline int sp_check_http_status(unsigned status)
{
    return SP_CHECK_HTTP_STATUS + (int)status;
}

/* Short text for a check_result value ("ok", "timeout", "connection refused", ...). The
 * pointer is static; an HTTP status reads "unexpected status" here (see sp_check_result_text). */
const char *sp_check_result_str(int result);

/* As sp_check_result_str, with an HTTP status spelt out ("status 503") in buf (16 bytes are
 * enough). Returns buf or a static string. */
const char *sp_check_result_text(int result, char *buf, size_t cap);

struct sp_upstream {
    const struct sp_upstream_conf *conf; /* borrowed from the config snapshot */
    struct sp_server *servers;           /* owned array of conf->nservers */
    size_t nservers;
};

/* Builds the servers of `conf`, each with a fresh state with one byte counter slot (worker 0);
 * every server starts up (the health checker, when configured, decides its real state before
 * traffic flows). Returns 0 or -ENOMEM. Main thread. */
int sp_upstream_init(struct sp_upstream *u, const struct sp_upstream_conf *conf);

/* As sp_upstream_init, with the servers given explicitly: a runtime expands a server given by
 * DNS name into one per resolved address. The confs are borrowed and must outlive u; n may be
 * 0 (nothing resolved yet: the upstream has no server). states is NULL or parallel to servers:
 * a non-NULL entry is the state of the same server in an earlier runtime, which the new server
 * shares (a reference is taken); a NULL entry gets a fresh state, with nworkers (at least 1)
 * byte counter slots, one per worker thread. Returns 0 or -ENOMEM (then nothing is held). */
int sp_upstream_init_servers(struct sp_upstream *u, const struct sp_upstream_conf *conf,
                             const struct sp_server_conf *const *servers,
                             struct sp_server_state *const *states, size_t n, unsigned nworkers);

/* Bytes relayed through s in direction d (0: client to server, 1: server to client), summed
 * over the workers. Any thread; each worker's part is as of its last write. */
uint64_t sp_server_bytes_sum(const struct sp_server *s, int d);

/* Frees what sp_upstream_init allocated and drops the servers' state references (a state goes
 * with its last server). Safe on a zeroed or half-built struct. Any thread. */
void sp_upstream_deinit(struct sp_upstream *u);

/* Monotonic clock in milliseconds, same base as uv_now() (CLOCK_MONOTONIC). */
uint64_t sp_upstream_now_ms(void);

/* True when the server may take a new connection now: up, not drained and not held down by
 * passive checks. Any thread. */
bool sp_server_usable(const struct sp_server *s, uint64_t now_ms);

/* True when only a passive hold keeps the server from being usable at now_ms: up and not
 * drained, but held. The balancer falls back on such servers when nothing else is usable. */
bool sp_server_held(const struct sp_server *s, uint64_t now_ms);

/* A connect to `s` failed (refused, reset or timed out): counts it, and past max_fails within
 * fail_timeout holds the server down for fail_timeout. The window opens at the first failure
 * (after a success or after the previous window ran out). Failures while the server is held
 * are counted in connect_failures only, so stale connects cannot stretch the hold. No-op on
 * the passive state when max_fails is 0. Any worker thread. */
void sp_server_connect_failed(struct sp_server *s, uint64_t now_ms);

/* A connect to `s` succeeded: counts the connection, clears the passive failure count and ends
 * a passive hold (the server answered, as nginx takes it). */
void sp_server_connect_ok(struct sp_server *s, uint64_t now_ms);

/* The weight the balancers use now: conf weight, ramped linearly from 1/10 over slow_start
 * after the server became usable again (health recovery or an expired passive hold):
 * max(1, weight * (slow_start + 9 * elapsed) / (10 * slow_start)) while elapsed < slow_start,
 * else weight. Never 0. Any thread. */
unsigned sp_server_effective_weight(const struct sp_server *s, uint64_t now_ms);

/* As sp_server_usable (held false) or sp_server_held (held true) for a server taken to be up
 * whatever its health state: what all_down: fail_open balances over. Any thread. */
bool sp_server_usable_as_up(const struct sp_server *s, uint64_t now_ms, bool held);

/* True when health checks mark every server of u down, backups included: u has a health_check
 * block and at least one server, and none is up. Any thread. */
bool sp_upstream_all_down(const struct sp_upstream *u);

/* Logs the warning for u entering (all_down true) or leaving the all-down state, with what its
 * all_down policy does about it. */
void sp_upstream_log_all_down(const struct sp_upstream *u, bool all_down);

/* on_server_down (shed.h): when `policy` (s's upstream, or for a server a reload removed, the
 * same upstream in the new config) has `shutdown`, marks the sessions s has now (accepted at or
 * before now_ms) for a reset spread over its shutdown_spread and returns true: the caller then
 * wakes the workers (sp_worker_shed). False with `keep`. Main thread. */
bool sp_server_shed_begin(struct sp_server *s, const struct sp_upstream_conf *policy,
                          uint64_t now_ms);

/* s is up again: its sessions not reset yet are spared. Main thread. */
void sp_server_shed_cancel(struct sp_server *s);

/* Sets the active health state; returns true when it changed. Health checker only. */
bool sp_server_set_up(struct sp_server *s, bool up, uint64_t now_ms);

#endif
