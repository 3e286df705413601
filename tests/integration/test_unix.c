/* test_unix.c: Unix stream sockets on the real binary: a unix: listener in front of a TCP server
 * and a TCP listener in front of a unix: server (bytes intact both ways through splice(), the
 * half-close passed on, splicer_splice_bytes_total growing), abstract names, unix_mode on the
 * file, a stale file replaced and a live socket or a plain file refused, the file removed at
 * shutdown, health checks and retries over unix: servers, PROXY headers out (v2 LOCAL and v1
 * UNKNOWN for a unix client, TCP4 for a TCP one) and in (the header's client in the access log
 * and in allow/deny), SIGHUP adding and removing a unix listener and moving a server to and from
 * unix:, workers: 2 sharing one unix socket, and the access log's escaped fields. */
#include "common.h"
#include "deploy.h"
#include "harness.h"

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MIB (1024ULL * 1024ULL)

/* "/path" or "@name" (abstract) as a sockaddr_un; returns its length. */
static socklen_t un_addr(struct sockaddr_un *un, const char *where)
{
    memset(un, 0, sizeof(*un));
    un->sun_family = AF_UNIX;
    size_t n = strlen(where);
    ck_assert_uint_lt(n, sizeof(un->sun_path));
    memcpy(un->sun_path, where, n);
    if (where[0] == '@')
        un->sun_path[0] = '\0';
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (where[0] == '@' ? 0 : 1));
}

static int un_listen(const char *where)
{
    struct sockaddr_un un;
    socklen_t len = un_addr(&un, where);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_msg(bind(fd, (struct sockaddr *)&un, len) == 0, "bind %s: %s", where,
                  strerror(errno));
    ck_assert_int_eq(listen(fd, 64), 0);
    return fd;
}

/* A non-blocking client of the unix socket `where`, or -errno. */
static int un_connect(const char *where)
{
    struct sockaddr_un un;
    socklen_t len = un_addr(&un, where);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    if (connect(fd, (struct sockaddr *)&un, len) == -1) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

/* An echo (or other kind) backend on a unix socket of the test. */
static struct sph_backend *un_backend(enum sph_kind kind, const char *where)
{
    struct sph_backend *b = sph_backend_new(kind, AF_UNIX);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(sph_backend_start_fd(b, un_listen(where)), 0);
    return b;
}

static int accept_one(int lfd)
{
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    ck_assert_msg(poll(&p, 1, SPH_IO_MS) == 1, "no connection reached the backend");
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    return fd;
}

/* splicer with an admin endpoint, the access log on stderr and `body`; waits for the admin
 * port, which every config here has, since the listeners under test may be unix: ones. */
static void px_start(struct sph_px *x, char conf[SPH_PATH_MAX], const char *body)
{
    x->admin = sph_free_port(AF_INET);
    x->port = 0;
    ck_assert_int_gt(x->admin, 0);
    ck_assert_int_eq(sph_config_write(conf,
                                      "shutdown_timeout: 1s\n"
                                      "access_log: stderr\n"
                                      "admin:\n"
                                      "  listen: 127.0.0.1:%d\n"
                                      "%s",
                                      x->admin, body),
                     0);
    int rc = sph_splicer_start(&x->proc, conf, x->admin, SPH_START_MS);
    if (rc != 0) {
        char *err = sph_proc_stderr(&x->proc);
        ck_abort_msg("splicer did not start (%s); stderr:\n%s", strerror(-rc), err);
    }
}

/* Runs splicer on a config that must fail to start; returns its stderr (malloc'd). */
static char *px_fails(const char *body)
{
    char conf[SPH_PATH_MAX];
    struct sph_proc p;
    ck_assert_int_eq(sph_config_write(conf, "%s", body), 0);
    const char *args[] = {"-c", conf, NULL};
    ck_assert_int_eq(sph_proc_spawn(&p, args), 0);
    int rc = sph_proc_wait(&p, SPH_START_MS);
    char *err = sph_proc_stderr(&p);
    ck_assert_msg(rc > 0, "splicer did not fail (%d); stderr:\n%s", rc, err);
    return err;
}

static void stop_clean(struct sph_px *x)
{
    ck_assert_int_eq(sph_proc_signal(&x->proc, SIGTERM), 0);
    ck_assert_int_eq(sph_proc_wait(&x->proc, 10000), 0);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static bool path_present(void *arg)
{
    return exists(arg);
}

static bool path_absent(void *arg)
{
    return !exists(arg);
}

static void xfer_both_ways(int fd, uint64_t len, uint64_t seed)
{
    struct sph_xfer x;
    sph_xfer_init(&x, len, seed, 30000);
    x.shut_wr = true; /* our FIN reaches the echo, whose FIN after the echo reaches us */
    ck_assert_int_eq(sph_echo_xfer(fd, &x), 0);
    ck_assert_int_eq(x.mismatch_at, -1);
    ck_assert_uint_eq(x.received, len);
    ck_assert_msg(x.got_eof, "the half-close did not come back");
}

#define SPLICED "splicer_splice_bytes_total"

/* A unix: listener (unix_mode 0640) in front of a TCP echo: the file is a socket with that mode,
 * 4 MiB go both ways intact through splice(), the half-close is passed on, the access log names
 * the unix client, and a clean stop removes the file. */
START_TEST(unix_listener_to_tcp)
{
    char conf[SPH_PATH_MAX], sock[SPH_PATH_MAX], body[1024];
    ck_assert_int_eq(sph_tmp_path(sock, "l"), 0);
    struct sph_backend *be = sph_echo_backend();
    snprintf(body, sizeof(body),
             "listeners:\n  main:\n    listen: unix:%s\n    unix_mode: \"0640\"\n"
             "    upstream: pool\n"
             "upstreams:\n  pool:\n    servers:\n      - address: 127.0.0.1:%d\n",
             sock, be->port);
    struct sph_px x;
    px_start(&x, conf, body);

    struct stat st;
    ck_assert_int_eq(lstat(sock, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    ck_assert_uint_eq(st.st_mode & 07777, 0640);

    long long before = sph_metric(x.admin, SPLICED);
    int fd = un_connect(sock);
    ck_assert_int_ge(fd, 0);
    xfer_both_ways(fd, 4 * MIB, 11);
    close(fd);
    ck_assert_int_ge(sph_metric(x.admin, SPLICED) - before, (long long)(8 * MIB));
    sph_expect_access(&x, "unix:", "client_fin");

    stop_clean(&x);
    ck_assert_msg(!exists(sock), "the socket file outlived a clean stop");
    sph_cleanup();
}
END_TEST

/* A TCP listener in front of a unix: echo server, the same way round. */
START_TEST(tcp_listener_to_unix)
{
    char conf[SPH_PATH_MAX], srv[SPH_PATH_MAX], body[1024];
    ck_assert_int_eq(sph_tmp_path(srv, "s"), 0);
    un_backend(SPH_ECHO, srv);
    int port = sph_free_port(AF_INET);
    snprintf(body, sizeof(body),
             "listeners:\n  main:\n    listen: 127.0.0.1:%d\n    upstream: pool\n"
             "upstreams:\n  pool:\n    servers:\n      - address: unix:%s\n",
             port, srv);
    struct sph_px x;
    px_start(&x, conf, body);
    long long before = sph_metric(x.admin, SPLICED);
    int fd = sph_connect(AF_INET, port, SPH_IO_MS);
    ck_assert_int_ge(fd, 0);
    xfer_both_ways(fd, 4 * MIB, 12);
    close(fd);
    ck_assert_int_ge(sph_metric(x.admin, SPLICED) - before, (long long)(8 * MIB));
    char want[SPH_PATH_MAX + 32];
    snprintf(want, sizeof(want), "\"server\":\"unix:%s\"", srv);
    ck_assert_msg(sph_proc_wait_log(&x.proc, want, 1, 3000), "no access log line with %s", want);
    /* the metrics' server label is the address as written */
    char series[SPH_PATH_MAX + 96];
    snprintf(series, sizeof(series),
             "splicer_server_connections_total{upstream=\"pool\",server=\"unix:%s\"}", srv);
    ck_assert_int_eq(sph_metric(x.admin, series), 1);

    /* drained through the admin endpoint by its address, the '/' percent-encoded */
    char url[3 * SPH_PATH_MAX + 64], *u = url;
    u += sprintf(u, "/upstreams/pool/servers/unix:");
    for (const char *p = srv; *p != '\0'; p++)
        u += *p == '/' ? sprintf(u, "%%2F") : sprintf(u, "%c", *p);
    sprintf(u, "/drain");
    ck_assert_int_eq(sph_admin_req(x.admin, "POST", url, NULL, 0), 200);
    snprintf(series, sizeof(series), "splicer_server_drained{upstream=\"pool\",server=\"unix:%s\"}",
             srv);
    ck_assert_int_eq(sph_metric(x.admin, series), 1);
    sph_cleanup();
}
END_TEST

/* Abstract names on both ends: no file anywhere. */
START_TEST(abstract_names)
{
    char conf[SPH_PATH_MAX], body[1024], lname[64], sname[64];
    snprintf(lname, sizeof(lname), "@splicer-test-l-%d", (int)getpid());
    snprintf(sname, sizeof(sname), "@splicer-test-s-%d", (int)getpid());
    un_backend(SPH_ECHO, sname);
    snprintf(body, sizeof(body),
             "listeners:\n  main:\n    listen: unix:%s\n    upstream: pool\n"
             "upstreams:\n  pool:\n    servers:\n      - address: unix:%s\n",
             lname, sname);
    struct sph_px x;
    px_start(&x, conf, body);
    int fd = un_connect(lname);
    ck_assert_int_ge(fd, 0);
    xfer_both_ways(fd, 1 * MIB, 13);
    close(fd);
    /* a second splicer cannot take the name while the first holds it */
    char *err = px_fails(body);
    ck_assert_msg(strstr(err, "another process is listening there") != NULL, "stderr:\n%s", err);
    free(err);
    stop_clean(&x);
    ck_assert_int_eq(un_connect(lname), -ECONNREFUSED);
    sph_cleanup();
}
END_TEST

/* A stale socket file (its process gone) is replaced; a live socket, or a file that is not a
 * socket, stops the start with the reason, and is left as it was. */
START_TEST(stale_live_and_plain_files)
{
    char conf[SPH_PATH_MAX], sock[SPH_PATH_MAX], body[1024];
    ck_assert_int_eq(sph_tmp_path(sock, "l"), 0);
    struct sph_backend *be = sph_echo_backend();
    snprintf(body, sizeof(body),
             "listeners:\n  main:\n    listen: unix:%s\n    upstream: pool\n"
             "upstreams:\n  pool:\n    servers:\n      - address: 127.0.0.1:%d\n",
             sock, be->port);

    /* live: the test listens there */
    int live = un_listen(sock);
    char *err = px_fails(body);
    ck_assert_msg(strstr(err, "another process is listening there") != NULL, "stderr:\n%s", err);
    free(err);
    int c = un_connect(sock);
    ck_assert_int_ge(c, 0); /* still ours */
    close(c);
    /* stale: closed without unlinking, as a killed process leaves it */
    close(live);
    ck_assert(exists(sock));
    ck_assert_int_eq(un_connect(sock), -ECONNREFUSED);
    struct sph_px x;
    px_start(&x, conf, body);
    ck_assert(sph_proc_wait_log(&x.proc, "replaced the stale socket file", 1, 3000));
    c = un_connect(sock);
    ck_assert_int_ge(c, 0);
    sph_expect_echo(c, "after the stale file\n");
    close(c);
    stop_clean(&x);
    ck_assert(!exists(sock));

    /* a plain file */
    FILE *f = fopen(sock, "w");
    ck_assert_ptr_nonnull(f);
    fputs("data\n", f);
    fclose(f);
    err = px_fails(body);
    ck_assert_msg(strstr(err, "the path exists and is not a socket") != NULL, "stderr:\n%s", err);
    free(err);
    char *left = sph_read_file(sock);
    ck_assert_str_eq(left, "data\n");
    free(left);
    sph_cleanup();
}
END_TEST

static long long server_up(int admin, const char *path)
{
    char series[SPH_PATH_MAX + 64];
    snprintf(series, sizeof(series), "splicer_server_up{upstream=\"pool\",server=\"unix:%s\"}",
             path);
    return sph_metric(admin, series);
}

struct up_wait {
    int admin;
    const char *path;
    long long want;
};

static bool up_is(void *arg)
{
    struct up_wait *w = arg;
    return server_up(w->admin, w->path) == w->want;
}

/* Health checks mark a unix: server without a process down and a live one up; clients go to the
 * live one, also through a retry while the checks have not run yet; when the live one dies, it is
 * marked down in turn. */
START_TEST(health_and_retries)
{
    char conf[SPH_PATH_MAX], dead[SPH_PATH_MAX], live[SPH_PATH_MAX], body[1024];
    ck_assert_int_eq(sph_tmp_path(dead, "d"), 0);
    ck_assert_int_eq(sph_tmp_path(live, "s"), 0);
    struct sph_backend *be = un_backend(SPH_ECHO, live);
    int port = sph_free_port(AF_INET);
    snprintf(body, sizeof(body),
             "listeners:\n  main:\n    listen: 127.0.0.1:%d\n    upstream: pool\n"
             "upstreams:\n  pool:\n    retries: 1\n    max_fails: 0\n"
             "    health_check: {interval: 100ms, timeout: 500ms, rise: 1, fall: 1}\n"
             "    servers:\n      - address: unix:%s\n      - address: unix:%s\n",
             port, dead, live);
    struct sph_px x;
    px_start(&x, conf, body);
    for (int i = 0; i < 6; i++) {
        int fd = sph_connect(AF_INET, port, SPH_IO_MS);
        ck_assert_int_ge(fd, 0);
        sph_expect_echo(fd, "through a retry or the checks\n");
        close(fd);
    }
    struct up_wait w = {x.admin, dead, 0};
    ck_assert_msg(sph_wait_until(up_is, &w, 5000), "the dead unix server is not marked down");
    w = (struct up_wait){x.admin, live, 1};
    ck_assert_msg(sph_wait_until(up_is, &w, 5000), "the live unix server is not marked up");
    sph_backend_stop(be);
    unlink(live);
    w.want = 0;
    ck_assert_msg(sph_wait_until(up_is, &w, 5000), "a unix server that died is not marked down");
    sph_cleanup();
}
END_TEST

/* Reads the PROXY header a server of the test gets (then "hi\n"), and compares it. */
static void expect_header(int srv, const void *want, size_t wlen)
{
    char got[128];
    ck_assert_uint_le(wlen + 3, sizeof(got));
    ck_assert_int_eq(sph_read_exact(srv, got, wlen + 3, SPH_IO_MS), (ssize_t)(wlen + 3));
    ck_assert_msg(memcmp(got, want, wlen) == 0, "header differs: got '%.*s'", (int)wlen, got);
    ck_assert_mem_eq(got + wlen, "hi\n", 3);
}

/* PROXY headers to a unix: server: a unix client has no inet address, so v2 says LOCAL (family
 * UNSPEC, no addresses) and v1 UNKNOWN; a TCP client gets its TCP4 line as usual. */
START_TEST(proxy_out)
{
    char conf[SPH_PATH_MAX], lsock[SPH_PATH_MAX], ssock[SPH_PATH_MAX], body[1024];
    ck_assert_int_eq(sph_tmp_path(lsock, "l"), 0);
    ck_assert_int_eq(sph_tmp_path(ssock, "s"), 0);
    int lfd = un_listen(ssock);
    int port = sph_free_port(AF_INET);
    snprintf(body, sizeof(body),
             "listeners:\n"
             "  u2:\n    listen: unix:%s\n    upstream: v2\n"
             "  t1:\n    listen: 127.0.0.1:%d\n    upstream: v1\n"
             "upstreams:\n"
             "  v2:\n    proxy_protocol: v2\n    servers:\n      - address: unix:%s\n"
             "  v1:\n    proxy_protocol: v1\n    servers:\n      - address: unix:%s\n",
             lsock, port, ssock, ssock);
    struct sph_px x;
    px_start(&x, conf, body);

    int cli = un_connect(lsock);
    ck_assert_int_ge(cli, 0);
    ck_assert_int_eq(sph_write_all(cli, "hi\n", 3, SPH_IO_MS), 0);
    int srv = accept_one(lfd);
    static const unsigned char local[] = "\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    expect_header(srv, local, 16);
    close(srv);
    close(cli);

    cli = sph_connect(AF_INET, port, SPH_IO_MS);
    ck_assert_int_ge(cli, 0);
    char cname[64], want[128];
    unsigned cport;
    sph_local_name(cli, cname, sizeof(cname), &cport);
    ck_assert_int_eq(sph_write_all(cli, "hi\n", 3, SPH_IO_MS), 0);
    srv = accept_one(lfd);
    int n = snprintf(want, sizeof(want), "PROXY TCP4 127.0.0.1 127.0.0.1 %u %d\r\n", cport, port);
    expect_header(srv, want, (size_t)n);
    close(srv);
    close(cli);

    /* v1 from a unix client: UNKNOWN */
    ck_assert_int_eq(sph_config_rewrite(conf,
                                        "shutdown_timeout: 1s\naccess_log: stderr\n"
                                        "admin:\n  listen: 127.0.0.1:%d\n"
                                        "listeners:\n  u2:\n    listen: unix:%s\n"
                                        "    upstream: v1\n"
                                        "upstreams:\n  v1:\n    proxy_protocol: v1\n"
                                        "    servers:\n      - address: unix:%s\n",
                                        x.admin, lsock, ssock),
                     0);
    ck_assert_int_eq(sph_proc_signal_wait_log(&x.proc, SIGHUP, "generation 2", 5000), 0);
    cli = un_connect(lsock);
    ck_assert_int_ge(cli, 0);
    ck_assert_int_eq(sph_write_all(cli, "hi\n", 3, SPH_IO_MS), 0);
    srv = accept_one(lfd);
    expect_header(srv, "PROXY UNKNOWN\r\n", 15);
    close(srv);
    close(cli);
    close(lfd);
    sph_cleanup();
}
END_TEST

/* PROXY headers into a unix: listener: no proxy_protocol_from (the file's mode says who may
 * connect); the header's client is the one allow/deny judge and the access log names. */
START_TEST(proxy_in)
{
    char conf[SPH_PATH_MAX], sock[SPH_PATH_MAX], body[1024];
    ck_assert_int_eq(sph_tmp_path(sock, "l"), 0);
    struct sph_backend *be = sph_echo_backend();
    snprintf(body, sizeof(body),
             "listeners:\n  main:\n    listen: unix:%s\n    unix_mode: \"0600\"\n"
             "    upstream: pool\n    accept_proxy_protocol: true\n    allow: [10.0.0.0/8]\n"
             "upstreams:\n  pool:\n    servers:\n      - address: 127.0.0.1:%d\n",
             sock, be->port);
    struct sph_px x;
    px_start(&x, conf, body);
    int fd = un_connect(sock);
    ck_assert_int_ge(fd, 0);
    static const char hdr[] = "PROXY TCP4 10.1.2.3 10.0.0.1 4567 80\r\n";
    ck_assert_int_eq(sph_write_all(fd, hdr, sizeof(hdr) - 1, SPH_IO_MS), 0);
    sph_expect_echo(fd, "from behind a header\n");
    close(fd);
    sph_expect_access(&x, "10.1.2.3:4567", "client_fin");

    fd = un_connect(sock);
    ck_assert_int_ge(fd, 0);
    static const char outside[] = "PROXY TCP4 192.168.1.1 10.0.0.1 4567 80\r\n";
    ck_assert_int_eq(sph_write_all(fd, outside, sizeof(outside) - 1, SPH_IO_MS), 0);
    ck_assert_int_eq(sph_wait_closed(fd, SPH_IO_MS), 0);
    close(fd);
    sph_expect_access(&x, "192.168.1.1:4567", "denied");
    sph_expect_metric(x.admin, SPH_DENIED("main"), 1);
    sph_cleanup();
}
END_TEST

#define RELOAD_HEAD                                                                                \
    "shutdown_timeout: 1s\naccess_log: stderr\nadmin:\n  listen: 127.0.0.1:%d\n"                   \
    "listeners:\n  tcp:\n    listen: 127.0.0.1:%d\n    upstream: pool\n"

/* SIGHUP adds a unix: listener (its file appears), moves the server to unix: and back, applies
 * a new unix_mode to the socket it keeps, and removes the listener again (its file goes). */
START_TEST(reload)
{
    char conf[SPH_PATH_MAX], sock[SPH_PATH_MAX], srv[SPH_PATH_MAX], body[1024], line[64];
    ck_assert_int_eq(sph_tmp_path(sock, "l"), 0);
    ck_assert_int_eq(sph_tmp_path(srv, "s"), 0);
    struct sph_backend *tcp = sph_backend_new(SPH_NAME, AF_INET);
    snprintf(tcp->name, sizeof(tcp->name), "tcp");
    ck_assert_int_eq(sph_backend_start(tcp), 0);
    struct sph_backend *ux = sph_backend_new(SPH_NAME, AF_UNIX);
    snprintf(ux->name, sizeof(ux->name), "unix");
    ck_assert_int_eq(sph_backend_start_fd(ux, un_listen(srv)), 0);
    int port = sph_free_port(AF_INET);
    struct sph_px x;
    x.admin = sph_free_port(AF_INET);
    snprintf(body, sizeof(body),
             RELOAD_HEAD "upstreams:\n  pool:\n    servers:\n"
                         "      - address: 127.0.0.1:%d\n",
             x.admin, port, tcp->port);
    ck_assert_int_eq(sph_config_write(conf, "%s", body), 0);
    ck_assert_int_eq(sph_splicer_start(&x.proc, conf, port, SPH_START_MS), 0);

    /* + a unix listener, and the server on unix: */
    ck_assert_int_eq(sph_config_rewrite(conf,
                                        RELOAD_HEAD "  ux:\n    listen: unix:%s\n"
                                                    "    upstream: pool\n"
                                                    "upstreams:\n  pool:\n    servers:\n"
                                                    "      - address: unix:%s\n",
                                        x.admin, port, sock, srv),
                     0);
    ck_assert_int_eq(sph_proc_signal_wait_log(&x.proc, SIGHUP, "generation 2", 5000), 0);
    ck_assert_msg(sph_wait_until(path_present, sock, 3000), "no socket file after the reload");
    int fd = un_connect(sock);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_gt(sph_read_line(fd, line, sizeof(line), SPH_IO_MS), 0);
    ck_assert_str_eq(line, "unix");
    close(fd);
    fd = sph_connect(AF_INET, port, SPH_IO_MS);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_gt(sph_read_line(fd, line, sizeof(line), SPH_IO_MS), 0);
    ck_assert_str_eq(line, "unix");
    close(fd);

    /* the same socket, kept, with a unix_mode now */
    ck_assert_int_eq(sph_config_rewrite(conf,
                                        RELOAD_HEAD "  ux:\n    listen: unix:%s\n"
                                                    "    unix_mode: \"0604\"\n"
                                                    "    upstream: pool\n"
                                                    "upstreams:\n  pool:\n    servers:\n"
                                                    "      - address: unix:%s\n",
                                        x.admin, port, sock, srv),
                     0);
    ck_assert_int_eq(sph_proc_signal_wait_log(&x.proc, SIGHUP, "generation 3", 5000), 0);
    struct stat st;
    ck_assert_int_eq(lstat(sock, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0604);
    fd = un_connect(sock);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_gt(sph_read_line(fd, line, sizeof(line), SPH_IO_MS), 0);
    close(fd);

    /* - the unix listener, and the server back on TCP */
    ck_assert_int_eq(sph_config_rewrite(conf, "%s", body), 0);
    ck_assert_int_eq(sph_proc_signal_wait_log(&x.proc, SIGHUP, "generation 4", 5000), 0);
    ck_assert_msg(sph_wait_until(path_absent, sock, 3000), "the socket file outlived its listener");
    ck_assert_int_lt(un_connect(sock), 0);
    fd = sph_connect(AF_INET, port, SPH_IO_MS);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_gt(sph_read_line(fd, line, sizeof(line), SPH_IO_MS), 0);
    ck_assert_str_eq(line, "tcp");
    close(fd);
    stop_clean(&x);
    sph_cleanup();
}
END_TEST

/* workers: 2 share one unix socket: every client is served, and /status shows the address as
 * written. */
START_TEST(workers_share)
{
    char conf[SPH_PATH_MAX], sock[SPH_PATH_MAX], body[1024];
    ck_assert_int_eq(sph_tmp_path(sock, "l"), 0);
    struct sph_backend *be = sph_echo_backend();
    snprintf(body, sizeof(body),
             "workers: 2\n"
             "listeners:\n  main:\n    listen: unix:%s\n    upstream: pool\n"
             "upstreams:\n  pool:\n    servers:\n      - address: 127.0.0.1:%d\n",
             sock, be->port);
    struct sph_px x;
    px_start(&x, conf, body);
    enum { N = 40 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = un_connect(sock);
        ck_assert_int_ge(fds[i], 0);
    }
    for (int i = 0; i < N; i++) {
        sph_expect_echo(fds[i], "shared\n");
        close(fds[i]);
    }
    char status[16384], want[SPH_PATH_MAX + 32];
    ck_assert_int_eq(sph_http(x.admin, "GET", "/status", status, sizeof(status)), 200);
    snprintf(want, sizeof(want), "\"listen\":\"unix:%s\"", sock);
    ck_assert_msg(strstr(status, want) != NULL, "no %s in /status:\n%s", want, status);
    stop_clean(&x);
    ck_assert(!exists(sock));
    sph_cleanup();
}
END_TEST

/* A server path with a space and a quote: the access log escapes it in JSON and quotes it in
 * the text format. */
START_TEST(access_log_escaped)
{
    char conf[SPH_PATH_MAX], dir[SPH_PATH_MAX], srv[SPH_PATH_MAX + 16], body[1024];
    ck_assert_int_eq(sph_tmp_path(dir, "q"), 0);
    snprintf(srv, sizeof(srv), "%s a\"b", dir);
    un_backend(SPH_ECHO, srv);
    int port = sph_free_port(AF_INET);
    snprintf(body, sizeof(body),
             "log_format: text\n"
             "listeners:\n  main:\n    listen: 127.0.0.1:%d\n    upstream: pool\n"
             "upstreams:\n  pool:\n    servers:\n      - address: 'unix:%s'\n",
             port, srv);
    struct sph_px x;
    px_start(&x, conf, body);
    int fd = sph_connect(AF_INET, port, SPH_IO_MS);
    ck_assert_int_ge(fd, 0);
    sph_expect_echo(fd, "escaped\n");
    close(fd);
    char want[SPH_PATH_MAX + 64];
    snprintf(want, sizeof(want), "server=\"unix:%s a\\\"b\"", dir);
    ck_assert_msg(sph_proc_wait_log(&x.proc, want, 1, 3000), "no text access log line with %s",
                  want);
    unlink(srv);
    sph_cleanup();
}
END_TEST

static void add_main(Suite *s)
{
    TCase *tc = tcase_create("unix");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, unix_listener_to_tcp);
    tcase_add_test(tc, tcp_listener_to_unix);
    tcase_add_test(tc, abstract_names);
    tcase_add_test(tc, stale_live_and_plain_files);
    tcase_add_test(tc, health_and_retries);
    tcase_add_test(tc, proxy_out);
    tcase_add_test(tc, proxy_in);
    tcase_add_test(tc, reload);
    tcase_add_test(tc, workers_share);
    tcase_add_test(tc, access_log_escaped);
    suite_add_tcase(s, tc);
}

int main(int argc, char **argv)
{
    static const struct sph_group groups[] = {{.name = NULL, .add = add_main}};
    return sph_main(argc, argv, "integration.unix", groups, SP_ARRAY_LEN(groups));
}
