/* deploy.c: helpers for the deployment suites; see deploy.h. */
#include "deploy.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- other programs ---- */

#define MAX_KIDS 4
static pid_t kids[MAX_KIDS];
static int nkids;

/* In the child between fork and exec: stdin from /dev/null, stdout and stderr to log (NULL:
 * /dev/null). argv[0] is a path (sph_tool), so a program outside PATH runs too. */
static void child_exec(const char *const argv[], const char *log)
{
    int in = open("/dev/null", O_RDONLY);
    int out = open(log != NULL ? log : "/dev/null", O_WRONLY | O_TRUNC);
    if (in == -1 || out == -1)
        _exit(126);
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
    execv(argv[0], (char *const *)argv);
    _exit(127);
}

pid_t sph_kid_spawn(const char *const argv[], const char *log)
{
    ck_assert_int_lt(nkids, MAX_KIDS);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        child_exec(argv, log);
    kids[nkids++] = pid;
    return pid;
}

/* SIGTERM, up to 2 s for it to go, then SIGKILL; each by its own pid. */
static void kids_stop(void)
{
    for (int i = 0; i < nkids; i++) {
        kill(kids[i], SIGTERM);
        int k = 0;
        while (waitpid(kids[i], NULL, WNOHANG) == 0 && k++ < 200)
            sph_sleep_ms(10);
        if (k > 200) {
            kill(kids[i], SIGKILL);
            waitpid(kids[i], NULL, 0);
        }
    }
    nkids = 0;
}

char *sph_run_capture(const char *const argv[], int timeout_ms)
{
    char log[SPH_PATH_MAX];
    ck_assert_int_eq(sph_config_write(log, "%s", ""), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        child_exec(argv, log);
    int64_t end = sph_now_ms() + timeout_ms;
    while (waitpid(pid, NULL, WNOHANG) == 0) {
        if (sph_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            break;
        }
        sph_sleep_ms(5);
    }
    char *text = sph_read_file(log);
    ck_assert_ptr_nonnull(text);
    return text;
}

/* ---- splicer with an admin endpoint and the access log on stderr ------------------------- */

void sph_px_start(struct sph_px *x, int port, const char *fmt, ...)
{
    char body[4096], conf[SPH_PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    ck_assert_int_lt(n, (int)sizeof(body));
    x->port = port;
    x->admin = sph_free_port(AF_INET);
    ck_assert_int_gt(x->admin, 0);
    ck_assert_int_eq(sph_config_write(conf,
                                      "workers: 1\n"
                                      "shutdown_timeout: 1s\n"
                                      "access_log: stderr\n"
                                      "admin:\n"
                                      "  listen: 127.0.0.1:%d\n"
                                      "%s",
                                      x->admin, body),
                     0);
    int rc = sph_splicer_start(&x->proc, conf, port, SPH_START_MS);
    if (rc != 0) {
        char *err = sph_proc_stderr(&x->proc);
        ck_abort_msg("splicer did not start (%s); stderr:\n%s", strerror(-rc), err);
    }
}

/* True when one line of stderr contains both a and b (b may be NULL). */
static bool log_has(const struct sph_px *x, const char *a, const char *b)
{
    char *err = sph_proc_stderr(&x->proc);
    bool found = false;
    for (char *line = err, *nl; line != NULL && *line != '\0' && !found; line = nl) {
        nl = strchr(line, '\n');
        if (nl != NULL)
            *nl++ = '\0';
        found = strstr(line, a) != NULL && (b == NULL || strstr(line, b) != NULL);
    }
    free(err);
    return found;
}

void sph_expect_access(const struct sph_px *x, const char *client, const char *end)
{
    char a[128], b[64];
    size_t cl = strlen(client);
    /* "host:" is a prefix (any port); a full address must match up to its closing quote */
    snprintf(a, sizeof(a), "\"client\":\"%s%s", client, client[cl - 1] == ':' ? "" : "\"");
    if (end != NULL)
        snprintf(b, sizeof(b), "\"end\":\"%s\"", end);
    for (int i = 0; i < 100 && !log_has(x, a, end != NULL ? b : NULL); i++)
        sph_sleep_ms(20);
    if (!log_has(x, a, end != NULL ? b : NULL)) {
        char *err = sph_proc_stderr(&x->proc);
        ck_abort_msg("no access log line with %s and end %s; stderr:\n%s", a,
                     end != NULL ? end : "(any)", err);
    }
}

void sph_local_name(int fd, char *buf, size_t cap, unsigned *port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN];
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        *port = ntohs(in->sin_port);
        snprintf(buf, cap, "%s:%u", host, *port);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        *port = ntohs(in6->sin6_port);
        snprintf(buf, cap, "[%s]:%u", host, *port);
    }
}

int64_t sph_expect_refused(int family, int port, const void *send, size_t len)
{
    int fd = sph_connect(family, port, SPH_IO_MS);
    ck_assert_msg(fd >= 0, "connect: %s", strerror(-fd));
    int64_t t0 = sph_now_ms();
    if (len > 0)
        ck_assert_int_eq(sph_write_all(fd, send, len, SPH_IO_MS), 0);
    char c;
    ssize_t n = sph_read_to_eof(fd, &c, 1, SPH_IO_MS);
    int64_t took = sph_now_ms() - t0;
    close(fd);
    ck_assert_msg(n == 0 || n == -ECONNRESET, "want a close, got %zd (%s)", n,
                  n < 0 ? strerror((int)-n) : "bytes");
    ck_assert_msg(took < SPH_PROMPT_MS, "closed only after %lld ms", (long long)took);
    return took;
}

void sph_expect_echo(int fd, const char *msg)
{
    char buf[256];
    size_t len = strlen(msg);
    ck_assert_int_eq(sph_write_all(fd, msg, len, SPH_IO_MS), 0);
    ssize_t n = sph_read_exact(fd, buf, len, SPH_IO_MS);
    ck_assert_msg(n == (ssize_t)len, "echo: got %zd of %zu bytes", n, len);
    ck_assert_int_eq(memcmp(buf, msg, len), 0);
}

struct sph_backend *sph_echo_backend(void)
{
    struct sph_backend *b = sph_backend_new(SPH_ECHO, AF_INET);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(sph_backend_start(b), 0);
    return b;
}

/* ---- PROXY headers built by hand from the spec (haproxy doc/proxy-protocol.txt) ---------- */

static const unsigned char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

size_t sph_pp_v2_build(unsigned char *b, const char *src, unsigned sport, const char *dst,
                       unsigned dport, const char *authority)
{
    bool v6 = strchr(src, ':') != NULL;
    size_t alen = v6 ? 16 : 4, off = 16;
    memcpy(b, v2_sig, 12);
    b[12] = 0x21;             /* version 2, PROXY */
    b[13] = v6 ? 0x21 : 0x11; /* AF_INET6 / AF_INET, STREAM */
    ck_assert_int_eq(inet_pton(v6 ? AF_INET6 : AF_INET, src, b + off), 1);
    ck_assert_int_eq(inet_pton(v6 ? AF_INET6 : AF_INET, dst, b + off + alen), 1);
    off += 2 * alen;
    b[off++] = (unsigned char)(sport >> 8);
    b[off++] = (unsigned char)sport;
    b[off++] = (unsigned char)(dport >> 8);
    b[off++] = (unsigned char)dport;
    if (authority != NULL) {
        size_t n = strlen(authority);
        b[off++] = 0x02; /* PP2_TYPE_AUTHORITY */
        b[off++] = (unsigned char)(n >> 8);
        b[off++] = (unsigned char)n;
        memcpy(b + off, authority, n);
        off += n;
    }
    b[14] = (unsigned char)((off - 16) >> 8);
    b[15] = (unsigned char)(off - 16);
    return off;
}

size_t sph_pp_build(unsigned char *b, int version, const char *src, unsigned sport, const char *dst,
                    unsigned dport)
{
    if (version == 2)
        return sph_pp_v2_build(b, src, sport, dst, dport, NULL);
    return (size_t)sprintf((char *)b, "PROXY %s %s %s %u %u\r\n",
                           strchr(src, ':') != NULL ? "TCP6" : "TCP4", src, dst, sport, dport);
}

void sph_deploy_teardown(void)
{
    kids_stop();
    sph_cleanup();
}

void sph_haproxy_start(int port, const char *sections)
{
    char cfg[SPH_PATH_MAX], log[SPH_PATH_MAX];
    ck_assert_int_eq(sph_config_write(cfg,
                                      "defaults\n  mode tcp\n  timeout connect 2s\n"
                                      "  timeout client 5s\n  timeout server 5s\n%s",
                                      sections),
                     0);
    ck_assert_int_eq(sph_config_write(log, "%s", ""), 0);
    const char *haproxy = sph_tool("haproxy");
    ck_assert_msg(haproxy != NULL, "haproxy is not installed");
    const char *argv[] = {haproxy, "-db", "-f", cfg, NULL};
    sph_kid_spawn(argv, log);
    for (int i = 0; i < 200 && !sph_port_listening(port); i++)
        sph_sleep_ms(25);
    if (!sph_port_listening(port)) {
        char *text = sph_read_file(log);
        ck_abort_msg("haproxy did not listen on %d:\n%s", port, text != NULL ? text : "");
    }
}
