/* harness.h: helpers for the integration suites. Runs the real $SPLICER_BIN on loopback with
 * temp configs, loopback backends in threads, client I/O with deadlines and /proc probes.
 * Nothing here runs at load time; every loop is bounded in count and time. Only 127.0.0.1/::1.
 *
 * Lifetime: every temp file, process and backend created here is registered, and sph_cleanup()
 * (call it from a checked teardown) kills and reaps the processes (by pid: a struct sph_proc may
 * live on a test's stack), stops and frees the backends and removes the files. In CK_FORK mode
 * Check also SIGKILLs the test's process group after each test, so a failing assert (which skips
 * the teardown) still leaves no splicer behind. */
#ifndef SPLICER_HARNESS_H
#define SPLICER_HARNESS_H

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SPH_PATH_MAX  64
#define SPH_MAX_CONNS 256 /* concurrent connections per backend */

/* ---- time ---- */

/* Monotonic milliseconds. */
int64_t sph_now_ms(void);
void sph_sleep_ms(int ms);

/* Polls cond(arg) every 5 ms until it returns true (true) or timeout_ms passes (false). */
bool sph_wait_until(bool (*cond)(void *arg), void *arg, int timeout_ms);

/* Polls until *v >= target (true) or timeout_ms passes (false). */
bool sph_wait_atomic_ge(atomic_int *v, int target, int timeout_ms);

/* ---- temp files and ports ---- */

/* A fresh unused path in the suite's temp dir (short: a socket file's path must fit in the
 * 108 bytes of sun_path), registered so that sph_cleanup() removes what is created there.
 * Returns 0 or -errno. */
int sph_tmp_path(char path[SPH_PATH_MAX], const char *tag);

/* Writes a config rendered from a printf template to a new mkstemp file under /tmp (in the
 * sph_suite_setup() directory when there is one), registered
 * for removal by sph_cleanup(). path gets the name. Returns 0 or -errno. */
int sph_config_write(char path[SPH_PATH_MAX], const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Replaces the content of an existing file (a config given to a running splicer, before a
 * SIGHUP): writes path.new and renames it over path, so a reader never sees half a file.
 * Returns 0 or -errno. */
int sph_config_rewrite(const char *path, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A loopback port that was free a moment ago (bind port 0, read it, close). family is AF_INET
 * or AF_INET6. Returns the port or -errno. */
int sph_free_port(int family);

/* A CLOEXEC socket bound to loopback:port of family and listening with backlog; fd or -errno. */
int sph_listen(int family, int port, int backlog);

/* "127.0.0.1:P" or "[::1]:P" into buf (at least 32 bytes); returns buf. */
const char *sph_addr(char *buf, int family, int port);

/* Reads a whole file into a NUL-terminated malloc'd string, NULL on failure. */
char *sph_read_file(const char *path);

/* ---- the splicer process ---- */

struct sph_proc {
    pid_t pid;  /* -1 when none or already reaped */
    int status; /* waitpid status, valid once reaped */
    bool reaped;
    char out_path[SPH_PATH_MAX]; /* captured stdout; removed by sph_cleanup */
    char err_path[SPH_PATH_MAX]; /* captured stderr; removed by sph_cleanup */
};

/* Path of the binary under test ($SPLICER_BIN), or NULL when unset. */
const char *sph_bin(void);

/* fork/exec $SPLICER_BIN with args (NULL-terminated, without argv[0]); stdin is /dev/null,
 * stdout and stderr go to temp files. p is registered until sph_cleanup(). Returns 0 or -errno. */
int sph_proc_spawn(struct sph_proc *p, const char *const args[]);

/* Spawns and waits up to timeout_ms. Returns the exit code (0..255), 128+signal when killed,
 * or -ETIMEDOUT (the process is then killed) / -errno. */
int sph_run(struct sph_proc *p, const char *const args[], int timeout_ms);

/* Starts `$SPLICER_BIN -c conf` and waits until the process itself has a socket listening on
 * `port` (its /proc/PID/net/tcp{,6} and /proc/PID/fd, so no probe connection reaches a backend
 * and skews its counters, and another process's listener on the same port does not count).
 * splicer installs its signal handlers before it listens, so a signal may follow at once.
 * Returns 0, -ECHILD if the process exited first, -ETIMEDOUT. */
int sph_splicer_start(struct sph_proc *p, const char *conf, int port, int timeout_ms);

/* True when some socket of this network namespace listens on loopback/any `port`. */
bool sph_port_listening(int port);

int sph_proc_signal(struct sph_proc *p, int sig);

/* Reaps p within timeout_ms. Returns the exit code, 128+signal, or -ETIMEDOUT (still running). */
int sph_proc_wait(struct sph_proc *p, int timeout_ms);

/* SIGKILL and reap; no-op when already reaped. */
void sph_proc_kill(struct sph_proc *p);

/* Captured output so far (malloc'd, never NULL: "" on error). */
char *sph_proc_stdout(const struct sph_proc *p);
char *sph_proc_stderr(const struct sph_proc *p);

/* Occurrences of needle in the captured stderr so far (0 when unreadable). */
int sph_proc_log_count(const struct sph_proc *p, const char *needle);

/* Polls the captured stderr until needle occurs at least `count` times (true) or timeout_ms
 * passes (false). */
bool sph_proc_wait_log(const struct sph_proc *p, const char *needle, int count, int timeout_ms);

/* Counts needle in stderr, sends sig, then waits for one more occurrence: e.g. SIGHUP and the
 * reload's log line. Returns 0, -ETIMEDOUT, or -errno from kill(). */
int sph_proc_signal_wait_log(struct sph_proc *p, int sig, const char *needle, int timeout_ms);

/* VmRSS in KiB from /proc/<pid>/status, or -errno. */
long sph_proc_rss_kb(pid_t pid);

/* Number of entries in /proc/<pid>/fd, or -errno. */
int sph_proc_fd_count(pid_t pid);

/* ---- data: deterministic pattern and checksum ---- */

/* Fills buf with the bytes at [offset, offset+len) of the infinite stream named by seed. The
 * stream is position-addressable, so any chunking gives the same bytes. */
void sph_pattern_fill(uint64_t seed, uint64_t offset, void *buf, size_t len);

/* Returns -1 when buf matches the stream at offset, else the index of the first mismatch. */
int64_t sph_pattern_check(uint64_t seed, uint64_t offset, const void *buf, size_t len);

/* Position-sensitive running checksum (Fletcher-style over bytes, mod 2^64). */
struct sph_sum {
    uint64_t a, b, n;
};
void sph_sum_init(struct sph_sum *s);
void sph_sum_update(struct sph_sum *s, const void *buf, size_t len);
uint64_t sph_sum_value(const struct sph_sum *s);

/* ---- backends ---- */

enum sph_kind {
    SPH_ECHO = 0,  /* echo; on client EOF finish echoing, shutdown(SHUT_WR), close */
    SPH_NAME,      /* write "<name>\n" on accept, then echo */
    SPH_SINK,      /* read to EOF; record byte count and checksum */
    SPH_SOURCE,    /* write source_len pattern bytes, shutdown(SHUT_WR), then act as sink */
    SPH_RESET,     /* read a little, then close with SO_LINGER{1,0} (RST) */
    SPH_HALFCLOSE, /* read to EOF, then reply "<count> <sum as %016llx>\n" and close */
    SPH_SLOW,      /* read slow_chunk bytes every slow_delay_ms, to EOF */
    SPH_STALL,     /* accept, never read; close when the peer goes away or on stop */
    SPH_REPLY,     /* wait for the first bytes, write `reply`, shutdown(SHUT_WR), read to EOF:
                    * a fixed answer to any request (a health probe, or a client asking whom
                    * it reached) */
    SPH_HTTP,      /* read a request head (to the blank line), keep it in http_req, answer as
                    * http_status says and close: an HTTP server for health checks */
    SPH_KIND_COUNT
};

#define SPH_HTTP_GARBAGE 0
#define SPH_HTTP_SILENT  (-1)

struct sph_backend;

struct sph_conn_slot {
    struct sph_backend *b; /* borrowed */
    pthread_t thr;
    int fd;           /* owned by the connection thread; -1 when closed */
    atomic_bool busy; /* thread started and not yet joined */
    atomic_bool done; /* thread finished; accept loop may join */
};

struct sph_backend {
    enum sph_kind kind;
    int family;
    int port;
    int lfd; /* owned; -1 once stopped */
    char name[16];
    uint64_t source_len, seed; /* SPH_SOURCE */
    size_t slow_chunk;         /* SPH_SLOW */
    int slow_delay_ms;         /* SPH_SLOW */
    char reply[32];            /* SPH_REPLY */
    /* SPH_HTTP: > 0 answers "HTTP/1.1 <code>" with the name as body, SPH_HTTP_GARBAGE a line
     * that is not HTTP, SPH_HTTP_SILENT nothing (the peer times out). Changed at any time. */
    atomic_int http_status;
    pthread_mutex_t http_lock; /* guards http_req */
    char http_req[512];        /* the head of the last request, NUL-terminated */
    pthread_t thr;
    bool running;
    atomic_bool stop;
    atomic_bool accept_stop;  /* sph_backend_close_listener: the accept thread only */
    atomic_int accepted;      /* connections accepted */
    atomic_int active;        /* connections currently open */
    atomic_int closed;        /* connections finished */
    atomic_int eofs;          /* ... of which the client sent a clean EOF */
    atomic_int resets;        /* ... of which reading saw ECONNRESET */
    atomic_ullong bytes_in;   /* over all connections */
    atomic_ullong last_bytes; /* SINK/SOURCE/HALFCLOSE: bytes read on the last finished conn */
    atomic_ullong last_sum;   /* ... and their sph_sum_value */
    struct sph_conn_slot slots[SPH_MAX_CONNS];
};

/* A new stopped backend of `kind`, owned by the harness: sph_cleanup() stops and frees it (its
 * threads outlive any test function's stack). Set name/source/slow fields, then start it.
 * NULL when out of memory or slots. */
struct sph_backend *sph_backend_new(enum sph_kind kind, int family);

/* A copy of the head of the last request an SPH_HTTP backend read ("" before any). */
void sph_backend_http_req(struct sph_backend *b, char *out, size_t cap);

/* An IPv4 SPH_HTTP backend named name, answering status (changeable through b->http_status),
 * started; the test fails when it cannot be. */
struct sph_backend *sph_http_backend(const char *name, int status);

/* Binds loopback port 0 of b->family, listens, starts the accept thread; b->port is set.
 * Returns 0 or -errno. */
int sph_backend_start(struct sph_backend *b);

/* Starts b on lfd, a socket already listening (owned from here on): one bound elsewhere than
 * loopback, or in another network namespace (tests/faults). Returns 0 or -errno (lfd closed). */
int sph_backend_start_fd(struct sph_backend *b, int lfd);

/* Closes the listener (new connects are refused), shuts down open connections, joins every
 * thread. Idempotent. */
void sph_backend_stop(struct sph_backend *b);

/* Closes the listener only: new connects are refused (a TCP health check fails) while the
 * connections already open go on. sph_backend_restart listens again on the same port;
 * sph_backend_stop ends everything. */
void sph_backend_close_listener(struct sph_backend *b);

/* Starts a stopped backend again on the same port (SO_REUSEADDR, so connections it left in
 * TIME_WAIT do not block the bind), or one whose listener alone was closed, whose connections
 * went on meanwhile. The counters carry on. Returns 0, -EALREADY when it is listening, or -errno
 * (-EADDRINUSE if someone else took the port meanwhile). */
int sph_backend_restart(struct sph_backend *b);

/* A "blackhole" server: a listener with backlog 0 whose accept queue is filled by a connection
 * that is never accepted; Linux then drops further SYNs, so connects to it hang in SYN_SENT
 * without root or firewall rules. */
struct sph_blackhole {
    int lfd, filler[2];
    int port;
};
int sph_blackhole_open(struct sph_blackhole *h);
void sph_blackhole_close(struct sph_blackhole *h);

/* ---- client ---- */

/* Connects to loopback:port; returns a non-blocking CLOEXEC fd or -errno (-ECONNREFUSED,
 * -ETIMEDOUT after timeout_ms). */
int sph_connect(int family, int port, int timeout_ms);

/* Writes all of buf before the deadline. Returns 0 or -errno (-ETIMEDOUT, -EPIPE, ...). */
int sph_write_all(int fd, const void *buf, size_t len, int timeout_ms);

/* Reads exactly len bytes unless EOF comes first. Returns the bytes read (short only on EOF),
 * or -errno (-ECONNRESET, -ETIMEDOUT with nothing read). */
ssize_t sph_read_exact(int fd, void *buf, size_t len, int timeout_ms);

/* Reads until EOF into buf (excess beyond cap is discarded but counted). Returns the total, or
 * -errno: -ECONNRESET on RST, -ETIMEDOUT. */
ssize_t sph_read_to_eof(int fd, void *buf, size_t cap, int timeout_ms);

/* Reads one line ending in '\n' (stripped) into buf. Returns its length or -errno; -EPIPE on
 * EOF before the newline. */
ssize_t sph_read_line(int fd, char *buf, size_t cap, int timeout_ms);

/* Waits for the peer to end the connection, discarding data. Returns 0 on FIN, -ECONNRESET on
 * RST, -ETIMEDOUT. */
int sph_wait_closed(int fd, int timeout_ms);

/* Closes with SO_LINGER{1,0}, which sends RST. */
void sph_abort(int fd);

/* Sends a short message and expects it echoed back within timeout_ms. Returns 0 or -errno
 * (-EPROTO when the reply differs, -EPIPE on EOF). */
int sph_ping(int fd, int timeout_ms);

/* A client stream against an echo: sends len pattern bytes (seed) while reading and checking
 * the echo at the same time. Optional pacing: pause_ms between chunk writes. */
struct sph_xfer {
    uint64_t len;
    uint64_t seed;
    size_t chunk;   /* bytes per write; 0 = 64 KiB */
    int pause_ms;   /* wait after each chunk; 0 = none */
    int timeout_ms; /* overall deadline */
    bool shut_wr;   /* shutdown(SHUT_WR) after the last byte, then expect EOF after the echo
                     * (within 5 s of the last echoed byte) */
    /* results */
    atomic_ullong sent, received;
    int64_t mismatch_at; /* -1 when every byte matched */
    int err;             /* 0 or -errno */
    bool got_eof;        /* EOF after the full echo (only with shut_wr) */
};

void sph_xfer_init(struct sph_xfer *x, uint64_t len, uint64_t seed, int timeout_ms);

/* Runs the transfer on fd to completion or error. Returns x->err. */
int sph_echo_xfer(int fd, struct sph_xfer *x);

/* ---- admin endpoint: HTTP/1.0 client and JSON check ---- */

/* Sends `METHOD PATH HTTP/1.0` to 127.0.0.1:port (for POST with `Content-Length: 0` and
 * `X-Splicer-Admin: 1`, which a loopback endpoint without a token wants for drain and enable)
 * and reads the reply to EOF (5 s deadline). Returns the status code and copies the body,
 * NUL-terminated and truncated to cap, into body (may be NULL); or -errno (-ECONNREFUSED,
 * -ETIMEDOUT, -EPROTO when the reply has no HTTP status line and header end). Replies up to 1 MiB.
 */
int sph_http(int port, const char *method, const char *path, char *body, size_t cap);

/* sph_http with the admin endpoint's start-up in mind: it comes up just after the listeners,
 * so a refused connect is retried for up to 3 s. Asserts (Check) that a reply came and returns
 * its status. */
int sph_admin_req(int port, const char *method, const char *path, char *body, size_t cap);

/* The value of one sample (`name{labels}` exactly as rendered) in Prometheus text; -1 when the
 * series is absent. */
long long sph_metric_sample(const char *text, const char *series);

/* GET /metrics on the admin port (200 asserted) and the value of one sample, as above. */
long long sph_metric(int admin_port, const char *series);

/* Polls GET /metrics until the series reads `want` (within 3 s), then asserts it. */
void sph_expect_metric(int admin_port, const char *series, long long want);

/* Sends the raw bytes req to 127.0.0.1:port and reads until the server closes (5 s deadline).
 * reply gets what came back, NUL-terminated and truncated to cap. Returns the bytes received
 * (0 when the server closed without a reply) or -errno (-ECONNRESET, -ETIMEDOUT, ...). */
int sph_http_raw(int port, const void *req, size_t len, char *reply, size_t cap);

/* True when text[0..len) is exactly one valid JSON value (RFC 8259 grammar: strings with
 * escapes, numbers, nesting up to 64 levels), with only whitespace around it; with object,
 * the value must be an object. */
bool sph_json_valid(const char *text, size_t len, bool object);

/* ---- what the host offers, and test groups that need it (run.c) ----
 * A test that cannot run here is reported as skipped, never passed: the cases that need
 * something of the host (IPv6, root, a program) form a group of their own, registered by
 * tests/CMakeLists.txt as its own ctest entry, whose main() checks the need first and exits
 * SPH_SKIP with one line saying what is missing. */

#define SPH_SKIP 77 /* the exit code ctest reads as "skipped" (SKIP_RETURN_CODE) */

/* True when a TCP socket can be bound to [::1]:0. A host with IPv6 off
 * (net.ipv6.conf.all.disable_ipv6=1, as in a default Docker container) has no ::1, and the
 * bind fails. why (may be NULL) gets the reason when false. */
bool sph_have_ipv6(char *why, size_t cap);

/* True when the process is root as the kernel's pipe accounting sees it: effective uid 0 with
 * CAP_SYS_RESOURCE or CAP_SYS_ADMIN, so no per-user pipe limit (fs.pipe-user-pages-soft)
 * shrinks its pipes. A default container's root has neither capability and is limited like any
 * user. why (may be NULL) gets the reason when false. */
bool sph_have_root(char *why, size_t cap);

/* Whether this process may read the descriptors (/proc/PID/fdinfo) of a splicer it starts: one
 * running as this user, or as nobody under tests/scripts/unprivileged.sh (which root without
 * CAP_SYS_PTRACE may not inspect). Probed on a child started that way. why (may be NULL) gets
 * the reason when false. Main thread only. */
bool sph_can_inspect_fds(char *why, size_t cap);

/* The path of program `name`: from $PATH, then /usr/local/sbin, /usr/sbin and /sbin, which an
 * ordinary user's PATH lacks although Debian installs haproxy there. NULL when not found. The
 * string lives until exit. Main thread only. */
const char *sph_tool(const char *name);

enum sph_need {
    SPH_NEED_IPV6 = 1u << 0, /* sph_have_ipv6 */
    SPH_NEED_ROOT = 1u << 1, /* sph_have_root */
    SPH_NEED_FDS = 1u << 2,  /* sph_can_inspect_fds */
};

#define SPH_TOOLS_MAX 4

/* A set of test cases with the same needs: one ctest entry, `<kind>.<suite>` for the main group
 * (name NULL) and `<kind>.<suite>.<name>` for the others (splicer_test(... GROUPS name) in
 * tests/CMakeLists.txt), which run the test binary with the name as its argument. */
struct sph_group {
    const char *name;                 /* NULL: the main group; else the argument selecting it */
    unsigned needs;                   /* SPH_NEED_* */
    const char *tools[SPH_TOOLS_MAX]; /* programs the cases run (sph_tool), NULL-terminated */
    void (*add)(Suite *s);            /* adds the group's TCases to s */
};

/* The main() of a test binary with groups; suite is the name of its main ctest entry
 * ("integration.relay"), which also names the Check suites and the SKIP lines. No argument runs
 * the main group, a group's name runs that group, "all" runs every group (by hand; ctest runs
 * one group per entry). A group whose needs are not met is not run: it prints
 * "SKIP <suite>[.<group>]: <what is missing>". Returns EXIT_FAILURE when a case failed, else
 * EXIT_SUCCESS when some group ran, else SPH_SKIP; 2 (with a usage line) for an unknown
 * argument. */
int sph_main(int argc, char **argv, const char *suite, const struct sph_group *groups,
             size_t ngroups);

/* ---- teardown ---- */

/* Kills and reaps registered processes, stops registered backends, removes registered files.
 * For a checked teardown (runs in the forked test, and only when the test passes). */
void sph_cleanup(void);

/* An unchecked fixture pair (Check runs it in the parent, around the forked tests): setup makes
 * a private /tmp/splicer-it.XXXXXX for the temp files, teardown removes it with whatever a
 * failed or timed-out test left behind. Optional: without it files go straight to /tmp. */
void sph_suite_setup(void);
void sph_suite_teardown(void);

#endif
