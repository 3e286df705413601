/* deploy.h: helpers for the deployment suites (test_proxy_in, test_proxy_out, test_allow_deny,
 * test_sni): splicer with an admin endpoint and its access log (JSON lines) on stderr, other
 * programs as peers (haproxy, openssl, curl: found with sph_tool, so their groups skip when one
 * is missing), and PROXY protocol headers built by hand from the spec. Test process only (the
 * forked case); every helper asserts with Check. */
#ifndef SPLICER_DEPLOY_H
#define SPLICER_DEPLOY_H

#include "harness.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SPH_START_MS 10000
#define SPH_IO_MS    3000
#define SPH_PROMPT_MS                                                                              \
    1000                   /* "closed at once": well above a loaded ASan run, far below a timeout  \
                            */
#define SPH_INSPECT_MS 300 /* proxy_protocol_timeout and tls_inspect_timeout in these configs */

#define SPH_MALFORMED(l) "splicer_listener_malformed_total{listener=\"" l "\"}"
#define SPH_DENIED(l)    "splicer_listener_denied_total{listener=\"" l "\"}"
#define SPH_UNTRUSTED(l) "splicer_listener_untrusted_proxy_total{listener=\"" l "\"}"

/* ---- other programs ---- */

/* fork/exec argv (argv[0] a path, e.g. from sph_tool) with stdin from /dev/null and
 * stdout+stderr to `log` (NULL: /dev/null). Stopped by sph_deploy_teardown(). Returns the pid. */
pid_t sph_kid_spawn(const char *const argv[], const char *log);

/* Runs argv to completion (killed after timeout_ms) and returns its stdout+stderr (malloc'd). */
char *sph_run_capture(const char *const argv[], int timeout_ms);

/* Starts `haproxy -db` with defaults for TCP and then `sections` (frontends and backends), and
 * waits until it listens on `port`. haproxy must be installed (the "haproxy" group). */
void sph_haproxy_start(int port, const char *sections);

/* Checked teardown: SIGTERM (then SIGKILL) to the programs started above, then sph_cleanup(). */
void sph_deploy_teardown(void);

/* ---- splicer with an admin endpoint and the access log on stderr ---- */

struct sph_px {
    struct sph_proc proc;
    int port;  /* the first listener's */
    int admin; /* admin port */
};

/* Starts splicer on `port` (the listener the caller's text declares first): a common head with
 * `workers: 1`, the access log on stderr and an admin endpoint on a free port, then the caller's
 * listeners and upstreams rendered from fmt. Aborts the test with splicer's stderr when it does
 * not start. */
void sph_px_start(struct sph_px *x, int port, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Waits up to 2 s for an access log line with `"client":"<client>"` and `"end":"<end>"` (end
 * may be NULL: any). A client ending in ':' is a prefix (any port). Aborts the test otherwise. */
void sph_expect_access(const struct sph_px *x, const char *client, const char *end);

/* ---- client side ---- */

/* "127.0.0.1:P" / "[::1]:P" of the local end of fd, as splicer prints a client; port gets P. */
void sph_local_name(int fd, char *buf, size_t cap, unsigned *port);

/* Connects, sends len bytes of `send` (may be 0), then expects splicer to end the connection
 * (FIN or RST) within SPH_PROMPT_MS without sending a byte. Returns how long it took. */
int64_t sph_expect_refused(int family, int port, const void *send, size_t len);

/* Sends msg through fd and expects it echoed back. */
void sph_expect_echo(int fd, const char *msg);

/* A started IPv4 echo backend (owned by the harness). */
struct sph_backend *sph_echo_backend(void);

/* ---- PROXY protocol headers (haproxy doc/proxy-protocol.txt) ---- */

/* A v2 PROXY header for TCP over IPv4 or IPv6 (told by src), with an AUTHORITY TLV unless
 * authority is NULL, into b (at least 64 bytes plus the authority). Returns its length. */
size_t sph_pp_v2_build(unsigned char *b, const char *src, unsigned sport, const char *dst,
                       unsigned dport, const char *authority);

/* A header of `version` (1 or 2) from src:sport to dst:dport into b (at least 108 bytes);
 * returns its length. */
size_t sph_pp_build(unsigned char *b, int version, const char *src, unsigned sport, const char *dst,
                    unsigned dport);

#endif
