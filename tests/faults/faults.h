/* faults.h: the fault-injection suite's helpers (faults.c) and its cases (cases_*.c).
 *
 * Topology, made per test in three network namespaces of its own and deleted afterwards:
 *
 *     client ns                  proxy ns                        server ns
 *     vc 10.231.1.2 <--veth--> vp 10.231.1.1   vq 10.231.2.1 <--veth--> vs 10.231.2.2
 *                              splicer, admin on 127.0.0.1
 *
 * No routing between the client and server namespaces: every byte crosses splicer. The kernel
 * makes the faults (iptables in the server's namespace for the upstream link, tc tbf on the
 * proxy's veth to the client, signals to server processes). Namespace names carry the test
 * binary's pid (fx<PID>c/p/s): the interfaces inside need no unique names because each lives in
 * a namespace of its own, and deleting a namespace deletes its veth ends. Nothing of the host's
 * own network or sysctls is touched.
 *
 * The test process's main thread sits in the proxy namespace for the whole test, so splicer
 * (spawned from it), /proc/net/tcp and the admin endpoint on 127.0.0.1 are the proxy's; sockets
 * of the client and the servers are made after a brief setns() into their namespace (a socket
 * stays in the namespace it was made in). */
#ifndef SPLICER_FAULTS_H
#define SPLICER_FAULTS_H

#include "harness.h"

#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define FX_CLIENT_IP  "10.231.1.2"
#define FX_PROXY_IP   "10.231.1.1" /* where splicer's listeners are */
#define FX_SERVER_IP  "10.231.2.2"
#define FX_ADMIN_PORT 9000 /* on 127.0.0.1 in the proxy's namespace */
#define FX_PORT       8000 /* the first listener's port; servers use 8001.. */
#define FX_START_MS   10000

enum fx_side { FX_CLIENT = 0, FX_PROXY, FX_SERVER, FX_SIDES };

/* ---- namespaces (faults.c) ---- */

/* Names the namespaces after the calling process (call once in main, before the runner forks).
 */
void fx_init_names(void);

/* Unchecked fixture pair, in Check's parent around each forked test: deletes namespaces left by
 * a run that was killed (their pid is gone), and, after the test, the test's own namespaces
 * whatever happened to it. */
void fx_unchecked_setup(void);
void fx_unchecked_teardown(void);

/* Checked setup: makes the three namespaces and the two veth pairs and moves the calling thread
 * into the proxy's namespace. Asserts. */
void fx_net_up(void);

/* Runs a shell command (formatted), its output to the test's stderr; returns its exit status. */
__attribute__((format(printf, 1, 2))) int fx_sh(const char *fmt, ...);

/* The namespace name of a side ("fx1234s"), for commands run with `ip netns exec`. */
const char *fx_ns(enum fx_side side);

/* Moves the calling thread into side's namespace. Asserts. */
void fx_enter(enum fx_side side);

/* A listening TCP socket on 0.0.0.0:port in side's namespace (SO_REUSEADDR), or asserts. */
int fx_listen(enum fx_side side, int port);

/* A connected non-blocking socket from the client's namespace to FX_PROXY_IP:port, or -errno.
 * rcvbuf > 0 sets SO_RCVBUF before the connect (a client that lets little pile up). */
int fx_connect(int port, int rcvbuf, int timeout_ms);

/* A harness backend of `kind` listening on FX_SERVER_IP:port (in the server's namespace). */
struct sph_backend *fx_backend(enum sph_kind kind, int port);

/* A harness backend of `kind` on FX_SERVER_IP:port run by a child process of its own (to be
 * frozen or killed), named `name` (SPH_NAME writes it first). Returns the pid; kill it with
 * fx_child_kill (the runner also kills the test's process group after the test). */
pid_t fx_backend_process(enum sph_kind kind, int port, const char *name);
void fx_child_kill(pid_t pid);

/* ---- splicer in the proxy namespace ---- */

/* Writes a config from fmt and starts splicer on it, waiting until FX_PORT listens. The config
 * gets no admin block of its own: put "admin: {listen: 127.0.0.1:9000}" in fmt. Asserts. */
__attribute__((format(printf, 2, 3))) void fx_splicer(struct sph_proc *p, const char *fmt, ...);

/* A /metrics sample (-1 when absent), or asserts that the endpoint answered. */
long long fx_metric(const char *series);

/* What should come back to its value before a case: fd count, open sessions, pipes in use. */
struct fx_baseline {
    int fds;         /* descriptors that are not pipes */
    int other_pipes; /* pipe descriptors beyond the pools' idle pipes (two each) */
    long long pipe_mem;
};

/* Reads the baseline once the process is idle (no session open, no pipe in use). Asserts. */
void fx_baseline(const struct sph_proc *p, struct fx_baseline *b);

/* Asserts, within timeout_ms, that no session is open, no pipe is lent, the descriptors other
 * than pooled idle pipes are back to the baseline and the pipe memory is no more than it was.
 * (A pipe that held bytes when its session ended is closed, not pooled, so the pool may hold
 * fewer idle pipes than before.) Also asserts that splicer's stderr holds no sanitizer report. */
void fx_expect_no_leak(const struct sph_proc *p, const struct fx_baseline *b, int timeout_ms);

/* True when splicer runs under ASan or TSan (their runtime is mapped): its RSS then follows the
 * sanitizer's quarantine and shadow memory, not splicer's own allocations, so RSS bounds are
 * reported and not judged (as scripts/soak.sh does). */
bool fx_sanitized(pid_t pid);

/* Asserts RSS growth under limit_kb, unless fx_sanitized (then only prints it). */
void fx_expect_rss(pid_t pid, long rss0, long rss, long limit_kb);

/* /status as text (malloc'd), or asserts. */
char *fx_status(void);

/* Access log lines (stderr in the suite's configs) with `"end":"<end>"`. */
int fx_log_ends(const struct sph_proc *p, const char *end);

/* ---- data: a full-duplex transfer with hashes on both sides ---- */

/* A server (thread) on FX_SERVER_IP:port that, per connection, writes `down` pattern bytes of
 * seed `down_seed` while reading everything the client sends, hashing it, until EOF; then closes.
 * With reset_after, it instead waits until every byte written is acknowledged (SIOCOUTQ 0) and
 * closes with SO_LINGER{1,0} without waiting for the client's EOF. */
struct fx_duplex {
    int lfd, port;
    uint64_t down, down_seed;
    bool reset_after;
    pthread_t thr;
    atomic_bool stop;
    atomic_int done;         /* connections finished */
    atomic_ullong up_bytes;  /* last connection: bytes read */
    atomic_ullong up_sum;    /* ... their sph_sum_value */
    atomic_ullong down_sent; /* ... bytes written so far */
    atomic_int err;          /* last connection: 0 or -errno */
};
void fx_duplex_start(struct fx_duplex *d, int port, uint64_t down, uint64_t down_seed);
void fx_duplex_stop(struct fx_duplex *d);

/* The client end: writes `up` pattern bytes of up_seed (then shutdown(SHUT_WR)) while reading
 * and checking the pattern of down_seed until EOF. Results in the struct. */
struct fx_client {
    uint64_t up, up_seed, down_seed;
    int timeout_ms;
    /* results */
    atomic_ullong sent, received;
    int64_t mismatch_at; /* -1 when every byte matched the pattern */
    uint64_t down_sum;   /* sph_sum_value of what was read */
    int err;             /* 0 (EOF), -ECONNRESET, -ETIMEDOUT, ... */
};
int fx_client_run(int fd, struct fx_client *c);

/* The sph_sum_value of `len` bytes of the pattern of seed. */
uint64_t fx_pattern_sum(uint64_t seed, uint64_t len);

/* ---- cases (cases_*.c), each adds its TCase ---- */

void fx_add_loss(Suite *s);
void fx_add_blackhole(Suite *s);
void fx_add_reset(Suite *s);
void fx_add_slow_client(Suite *s);
void fx_add_frozen(Suite *s);
void fx_add_stuck_peers(Suite *s);
void fx_add_fd_exhaustion(Suite *s);
void fx_add_pipe_exhaustion(Suite *s);

/* A TCase with the suite's fixtures and timeout. */
TCase *fx_tcase(const char *name, int timeout_s);

#endif
