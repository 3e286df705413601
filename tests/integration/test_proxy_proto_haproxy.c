/* test_proxy_proto_haproxy.c: interop of our PROXY protocol encoder with a real haproxy. A
 * haproxy frontend with `accept-proxy` takes headers made by sp_pp_encode and passes the
 * addresses it read from them on to a backend with `send-proxy` (v1), which is us again: the
 * line that arrives says what haproxy understood. The other direction (haproxy's headers through
 * our decoder) is tests/unit/test_proxy_proto.c on captured bytes. Skipped (exit 77) when
 * haproxy is not installed (Debian: apt-get install haproxy; found in /usr/sbin also when that
 * is not in PATH). */
#include "common.h"
#include "harness.h"
#include "proxy_proto.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t hap_pid = -1;
static int front_port, back_fd = -1;
static char cfg_path[SPH_PATH_MAX];

/* Unchecked fixture (runs in the parent): haproxy and the backend socket live across tests. */
static void start_haproxy(void)
{
    int back_port = sph_free_port(AF_INET);
    front_port = sph_free_port(AF_INET);
    ck_assert_int_gt(back_port, 0);
    ck_assert_int_gt(front_port, 0);
    back_fd = sph_listen(AF_INET, back_port, 16);
    ck_assert_int_ge(back_fd, 0);
    ck_assert_int_eq(sph_config_write(cfg_path,
                                      "defaults\n  mode tcp\n  timeout connect 2s\n"
                                      "  timeout client 5s\n  timeout server 5s\n"
                                      "frontend fe\n  bind 127.0.0.1:%d accept-proxy\n"
                                      "  default_backend be\n"
                                      "backend be\n  server s1 127.0.0.1:%d send-proxy\n",
                                      front_port, back_port),
                     0);
    const char *haproxy = sph_tool("haproxy");
    ck_assert_ptr_nonnull(haproxy);
    hap_pid = fork();
    ck_assert_int_ge(hap_pid, 0);
    if (hap_pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execl(haproxy, "haproxy", "-f", cfg_path, "-db", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100 && !sph_port_listening(front_port); i++)
        sph_sleep_ms(50);
    ck_assert_msg(sph_port_listening(front_port), "haproxy did not start");
}

static void stop_haproxy(void)
{
    if (hap_pid > 0) {
        kill(hap_pid, SIGTERM);
        waitpid(hap_pid, NULL, 0);
        hap_pid = -1;
    }
    if (back_fd >= 0)
        close(back_fd);
    back_fd = -1;
    unlink(cfg_path);
}

static struct sockaddr_storage sa(const char *host, unsigned port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(host, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        ck_assert_int_eq(inet_pton(AF_INET6, host, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        ck_assert_int_eq(inet_pton(AF_INET, host, &s4->sin_addr), 1);
    }
    return ss;
}

static int accept_backend(void)
{
    struct pollfd p = {.fd = back_fd, .events = POLLIN};
    ck_assert_int_eq(poll(&p, 1, 5000), 1);
    int fd = accept4(back_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    return fd;
}

static const struct {
    int version;
    const char *src, *dst; /* NULL: a LOCAL / UNKNOWN header */
    const char *want;      /* the line haproxy sends on; NULL: the socket's own addresses */
} cases[] = {
    {1, "203.0.113.7", "198.51.100.1", "PROXY TCP4 203.0.113.7 198.51.100.1 4711 443"},
    {2, "203.0.113.7", "198.51.100.1", "PROXY TCP4 203.0.113.7 198.51.100.1 4711 443"},
    {1, "2001:db8::7", "2001:db8::1", "PROXY TCP6 2001:db8::7 2001:db8::1 4711 443"},
    {2, "2001:db8::7", "2001:db8::1", "PROXY TCP6 2001:db8::7 2001:db8::1 4711 443"},
    {2, "203.0.113.7", "2001:db8::1", "PROXY TCP6 ::ffff:203.0.113.7 2001:db8::1 4711 443"},
    {2, NULL, NULL, NULL},
    {1, NULL, NULL, NULL},
};

START_TEST(haproxy_accepts)
{
    struct sockaddr_storage s, d;
    const struct sockaddr *sp = NULL, *dp = NULL;
    char hdr[SP_PP_ENCODE_MAX + 8], line[256], want[128];

    if (cases[_i].src != NULL) {
        s = sa(cases[_i].src, 4711);
        d = sa(cases[_i].dst, 443);
        sp = (const void *)&s;
        dp = (const void *)&d;
    }
    int n = sp_pp_encode(cases[_i].version, sp, dp, hdr, sizeof(hdr));
    ck_assert_int_gt(n, 0);
    memcpy(hdr + n, "ping\n", 5);

    int c = sph_connect(AF_INET, front_port, 2000);
    ck_assert_int_ge(c, 0);
    ck_assert_int_eq(sph_write_all(c, hdr, (size_t)n + 5, 2000), 0);
    int b = accept_backend();
    ssize_t ll = sph_read_line(b, line, sizeof(line), 3000);
    ck_assert_int_gt(ll, 1);
    ck_assert_int_eq(line[ll - 1], '\r');
    line[ll - 1] = '\0';
    if (cases[_i].want != NULL) {
        ck_assert_str_eq(line, cases[_i].want);
    } else {
        /* LOCAL / UNKNOWN: haproxy falls back to the connection's real addresses */
        struct sockaddr_in me;
        socklen_t ml = sizeof(me);
        ck_assert_int_eq(getsockname(c, (struct sockaddr *)&me, &ml), 0);
        snprintf(want, sizeof(want), "PROXY TCP4 127.0.0.1 127.0.0.1 %u %d", ntohs(me.sin_port),
                 front_port);
        ck_assert_str_eq(line, want);
    }
    ck_assert_int_eq(sph_read_line(b, line, sizeof(line), 3000), 4);
    ck_assert_str_eq(line, "ping");
    close(c);
    close(b);
}
END_TEST

/* A malformed header is refused: haproxy never contacts the backend. */
START_TEST(haproxy_refuses_garbage)
{
    static const char bad[] = "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\nping\n";
    int c = sph_connect(AF_INET, front_port, 2000);
    ck_assert_int_ge(c, 0);
    ck_assert_int_eq(sph_write_all(c, bad, sizeof(bad) - 1, 2000), 0);
    int rc = sph_wait_closed(c, 3000);
    ck_assert(rc == 0 || rc == -ECONNRESET);
    struct pollfd p = {.fd = back_fd, .events = POLLIN};
    ck_assert_int_eq(poll(&p, 1, 200), 0);
    close(c);
}
END_TEST

static void add_main(Suite *s)
{
    TCase *tc = tcase_create("interop");
    tcase_add_unchecked_fixture(tc, start_haproxy, stop_haproxy);
    tcase_add_loop_test(tc, haproxy_accepts, 0, SP_ARRAY_LEN(cases));
    tcase_add_test(tc, haproxy_refuses_garbage);
    suite_add_tcase(s, tc);
}

static const struct sph_group groups[] = {
    {.name = NULL, .tools = {"haproxy"}, .add = add_main},
};

int main(int argc, char **argv)
{
    return sph_main(argc, argv, "integration.proxy_proto_haproxy", groups, SP_ARRAY_LEN(groups));
}
