/* test_sni.c: TLS SNI routing on the real binary. With captured ClientHellos (tests/fixtures/tls):
 * a hello in pieces is routed and reaches the server unchanged, plain text and a stalled hello
 * are refused, allow/deny and a PROXY header before the hello hold. With real TLS peers: openssl
 * s_server backends and s_client (group "openssl") or curl (group "curl") as clients; those
 * groups skip (exit 77) when the program is not installed. */
#include "common.h"
#include "deploy.h"
#include "harness.h"

#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ROUTES_CONF                                                                                \
    "listeners:\n"                                                                                 \
    "  main:\n"                                                                                    \
    "    listen: 127.0.0.1:%d\n"                                                                   \
    "    upstream: c\n"                                                                            \
    "    tls_inspect_timeout: 300ms\n"                                                             \
    "%s"                                                                                           \
    "    routes:\n"                                                                                \
    "      - sni: [api.example.com, \"*.eu.example.com\"]\n"                                       \
    "        upstream: a\n"                                                                        \
    "      - sni: [\"*.example.com\"]\n"                                                           \
    "        upstream: b\n"                                                                        \
    "upstreams:\n"                                                                                 \
    "  a:\n"                                                                                       \
    "    servers:\n"                                                                               \
    "      - address: 127.0.0.1:%d\n"                                                              \
    "  b:\n"                                                                                       \
    "    servers:\n"                                                                               \
    "      - address: 127.0.0.1:%d\n"                                                              \
    "  c:\n"                                                                                       \
    "    servers:\n"                                                                               \
    "      - address: 127.0.0.1:%d\n"

/* Reads a ClientHello captured from openssl (tests/fixtures/tls) into buf; returns its size. */
static size_t fixture(const char *name, unsigned char *buf, size_t cap)
{
    const char *dir = getenv("SPLICER_FIXTURES");
    ck_assert_ptr_nonnull(dir);
    char path[512];
    snprintf(path, sizeof(path), "%s/tls/%s", dir, name);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    ck_assert_uint_gt(n, 50);
    return n;
}

/* A routes listener (ROUTES_CONF) with sinks as servers a, b and the default c. */
struct sinks {
    struct sph_backend *a, *b, *c;
};

static void sinks_start(struct sinks *s, struct sph_px *x, const char *extra)
{
    s->a = sph_backend_new(SPH_SINK, AF_INET);
    s->b = sph_backend_new(SPH_SINK, AF_INET);
    s->c = sph_backend_new(SPH_SINK, AF_INET);
    ck_assert(s->a != NULL && s->b != NULL && s->c != NULL);
    ck_assert_int_eq(sph_backend_start(s->a), 0);
    ck_assert_int_eq(sph_backend_start(s->b), 0);
    ck_assert_int_eq(sph_backend_start(s->c), 0);
    int port = sph_free_port(AF_INET);
    sph_px_start(x, port, ROUTES_CONF, port, extra, s->a->port, s->b->port, s->c->port);
}

/* The ClientHello (SNI www.example.com -> b) arriving in pieces 50 ms apart is routed, and the
 * server receives every byte of it, unchanged: splicer only peeked. */
START_TEST(sni_split_hello_intact)
{
    unsigned char hello[1024];
    size_t n = fixture("openssl_sni.bin", hello, sizeof(hello));
    struct sinks s;
    struct sph_px x;
    sinks_start(&s, &x, "");
    int fd = sph_connect(AF_INET, x.port, SPH_IO_MS);
    ck_assert_int_ge(fd, 0);
    size_t cuts[] = {0, 3, 9, 100, n};
    for (size_t k = 0; k + 1 < SP_ARRAY_LEN(cuts); k++) {
        ck_assert_int_eq(sph_write_all(fd, hello + cuts[k], cuts[k + 1] - cuts[k], SPH_IO_MS), 0);
        sph_sleep_ms(50);
    }
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    ck_assert_msg(sph_wait_atomic_ge(&s.b->closed, 1, SPH_IO_MS),
                  "b got no connection (a %d, c %d)", atomic_load(&s.a->accepted),
                  atomic_load(&s.c->accepted));
    close(fd);
    struct sph_sum sum;
    sph_sum_init(&sum);
    sph_sum_update(&sum, hello, n);
    ck_assert_uint_eq(atomic_load(&s.b->last_bytes), n);
    ck_assert_uint_eq(atomic_load(&s.b->last_sum), sph_sum_value(&sum));
    ck_assert_int_eq(atomic_load(&s.a->accepted) + atomic_load(&s.c->accepted), 0);
}
END_TEST

/* Plain text to a routes listener: closed at once, counted, no server contacted. A client that
 * sends nothing, or half a ClientHello: closed after tls_inspect_timeout. */
START_TEST(sni_malformed_and_timeout)
{
    unsigned char hello[1024];
    fixture("openssl_sni.bin", hello, sizeof(hello));
    struct sinks s;
    struct sph_px x;
    sinks_start(&s, &x, "");
    static const char get[] = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    sph_expect_refused(AF_INET, x.port, get, sizeof(get) - 1);
    sph_expect_metric(x.admin, SPH_MALFORMED("main"), 1);
    sph_expect_access(&x, "127.0.0.1:", "bad_header");
    for (int half = 0; half < 2; half++) {
        int fd = sph_connect(AF_INET, x.port, SPH_IO_MS);
        ck_assert_int_ge(fd, 0);
        int64_t t0 = sph_now_ms();
        if (half)
            ck_assert_int_eq(sph_write_all(fd, hello, 60, SPH_IO_MS), 0);
        int rc = sph_wait_closed(fd, 5000);
        int64_t took = sph_now_ms() - t0;
        close(fd);
        ck_assert_msg(rc == 0 || rc == -ECONNRESET, "not closed: %s", strerror(-rc));
        ck_assert_msg(took >= SPH_INSPECT_MS - 50 && took < SPH_INSPECT_MS + SPH_PROMPT_MS,
                      "%s: closed after %lld ms, want ~%d", half ? "half a hello" : "silence",
                      (long long)took, SPH_INSPECT_MS);
    }
    sph_expect_access(&x, "127.0.0.1:", "inspect_timeout");
    sph_expect_metric(x.admin, SPH_MALFORMED("main"), 1);
    sph_sleep_ms(100);
    int reached =
        atomic_load(&s.a->accepted) + atomic_load(&s.b->accepted) + atomic_load(&s.c->accepted);
    ck_assert_int_eq(reached, 0);
}
END_TEST

/* allow/deny hold on a routes listener too: a denied client is closed before any server is
 * contacted, even though it sends a valid ClientHello. (Fails as of 39f499a: a listener with
 * routes and no accept_proxy_protocol never calls the allow/deny check in session.c.) */
START_TEST(sni_listener_deny)
{
    unsigned char hello[1024];
    size_t n = fixture("openssl_sni.bin", hello, sizeof(hello));
    struct sinks s;
    struct sph_px x;
    sinks_start(&s, &x, "    deny: [127.0.0.1]\n");
    int fd = sph_connect(AF_INET, x.port, SPH_IO_MS);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(sph_write_all(fd, hello, n, SPH_IO_MS), 0);
    int rc = sph_wait_closed(fd, SPH_PROMPT_MS);
    close(fd);
    sph_sleep_ms(100);
    int reached =
        atomic_load(&s.a->accepted) + atomic_load(&s.b->accepted) + atomic_load(&s.c->accepted);
    ck_assert_msg((rc == 0 || rc == -ECONNRESET) && reached == 0,
                  "deny: [127.0.0.1] on a routes listener: client %s, %d connection(s) to "
                  "servers (b %d), denied_total %lld",
                  rc == 0 || rc == -ECONNRESET ? "closed" : "still open after 1 s", reached,
                  atomic_load(&s.b->accepted), sph_metric(x.admin, SPH_DENIED("main")));
    sph_expect_metric(x.admin, SPH_DENIED("main"), 1);
    sph_expect_access(&x, "127.0.0.1:", "denied");
}
END_TEST

/* A PROXY header and then a ClientHello: routed by SNI, logged with the header's client. */
START_TEST(sni_after_proxy_header)
{
    unsigned char buf[1200];
    size_t h = sph_pp_build(buf, 2, "203.0.113.7", 4711, "198.51.100.1", 443);
    size_t n = fixture("openssl_sni.bin", buf + h, sizeof(buf) - h);
    struct sinks s;
    struct sph_px x;
    sinks_start(&s, &x, "    accept_proxy_protocol: true\n    proxy_protocol_from: [127.0.0.1]\n");
    int fd = sph_connect(AF_INET, x.port, SPH_IO_MS);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(sph_write_all(fd, buf, h + n, SPH_IO_MS), 0);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    ck_assert_msg(sph_wait_atomic_ge(&s.b->closed, 1, SPH_IO_MS),
                  "b got no connection (a %d, c %d)", atomic_load(&s.a->accepted),
                  atomic_load(&s.c->accepted));
    close(fd);
    ck_assert_uint_eq(atomic_load(&s.b->last_bytes), n);
    sph_expect_access(&x, "203.0.113.7:4711", NULL);
}
END_TEST

/* ---- groups openssl and curl: real TLS servers and clients ---- */

static char cert_dir[SPH_PATH_MAX];
static bool certs_ok;

/* Unchecked fixture (in the parent, once): two throwaway self-signed certificates. */
static void certs_make(void)
{
    certs_ok = false;
    snprintf(cert_dir, sizeof(cert_dir), "/tmp/splicer-dt.XXXXXX");
    if (mkdtemp(cert_dir) == NULL) {
        cert_dir[0] = '\0';
        return;
    }
    bool ok = true;
    for (int i = 0; i < 2 && ok; i++) {
        char cmd[768];
        snprintf(cmd, sizeof(cmd),
                 "'%s' req -x509 -newkey rsa:2048 -nodes -subj /CN=backend-%c -days 1 "
                 "-keyout %s/%c.key -out %s/%c.crt >/dev/null 2>&1",
                 sph_tool("openssl"), 'a' + i, cert_dir, 'a' + i, cert_dir, 'a' + i);
        ok = system(cmd) == 0;
    }
    certs_ok = ok;
}

static void certs_remove(void)
{
    if (cert_dir[0] == '\0')
        return;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", cert_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", cert_dir);
    cert_dir[0] = '\0';
}

/* openssl s_server for backend-<c> on a free port; returns the port. */
static int tls_server(char c)
{
    int port = sph_free_port(AF_INET);
    char acc[32], crt[SPH_PATH_MAX + 8], key[SPH_PATH_MAX + 8];
    snprintf(acc, sizeof(acc), "127.0.0.1:%d", port);
    snprintf(crt, sizeof(crt), "%s/%c.crt", cert_dir, c);
    snprintf(key, sizeof(key), "%s/%c.key", cert_dir, c);
    const char *argv[] = {
        sph_tool("openssl"), "s_server", "-accept", acc, "-cert", crt, "-key", key, "-www", NULL};
    sph_kid_spawn(argv, NULL);
    for (int i = 0; i < 200 && !sph_port_listening(port); i++)
        sph_sleep_ms(25);
    ck_assert_msg(sph_port_listening(port), "openssl s_server %c did not start", c);
    return port;
}

static const struct {
    const char *sni; /* NULL: no SNI */
    char want;       /* 'a', 'b' (the certificate's CN) or 'c' (the plain default) */
} sni_cases[] = {
    {"api.example.com", 'a'},  {"API.Example.COM", 'a'},
    {"foo.example.com", 'b'},  {"x.y.example.com", 'b'},
    {"a.eu.example.com", 'a'}, {"example.com", 'c'},
    {"api.example.org", 'c'},  {NULL, 'c'},
};

/* The routes listener in front of s_servers a and b and a plain NAME backend c (*c). */
static void tls_routes_start(struct sph_px *x, struct sph_backend **c)
{
    ck_assert_msg(certs_ok, "openssl could not make the test certificates in %s", cert_dir);
    *c = sph_backend_new(SPH_NAME, AF_INET);
    ck_assert_ptr_nonnull(*c);
    snprintf((*c)->name, sizeof((*c)->name), "plain-c");
    ck_assert_int_eq(sph_backend_start(*c), 0);
    int pa = tls_server('a'), pb = tls_server('b');
    int port = sph_free_port(AF_INET);
    sph_px_start(x, port, ROUTES_CONF, port, "", pa, pb, (*c)->port);
}

/* Real TLS clients through the routes listener: openssl s_client reaches the s_server whose
 * certificate it then sees, or the plain default backend. */
START_TEST(sni_routing)
{
    struct sph_backend *c;
    struct sph_px x;
    tls_routes_start(&x, &c);
    char conn[32];
    snprintf(conn, sizeof(conn), "127.0.0.1:%d", x.port);
    for (size_t i = 0; i < SP_ARRAY_LEN(sni_cases); i++) {
        const char *sni = sni_cases[i].sni;
        const char *argv[] = {sph_tool("openssl"),
                              "s_client",
                              "-connect",
                              conn,
                              sni != NULL ? "-servername" : "-noservername",
                              sni,
                              NULL};
        int before = atomic_load(&c->accepted);
        char *out = sph_run_capture(argv, 10000);
        bool sa = strstr(out, "CN = backend-a") != NULL, sb = strstr(out, "CN = backend-b") != NULL;
        bool sc = sph_wait_atomic_ge(&c->accepted, before + 1, sni_cases[i].want == 'c' ? 2000 : 0);
        char got = sa ? 'a' : sb ? 'b' : sc ? 'c' : '?';
        ck_assert_msg(got == sni_cases[i].want && (sa + sb + sc) == 1,
                      "SNI %s reached %c (a %d, b %d, c %d), want %c; s_client said:\n%s",
                      sni != NULL ? sni : "(none)", got, sa, sb, sc, sni_cases[i].want, out);
        free(out);
    }
}
END_TEST

/* The same with curl as the client, for three of the names. */
START_TEST(sni_routing_curl)
{
    struct sph_backend *c;
    struct sph_px x;
    tls_routes_start(&x, &c);
    for (size_t i = 0; i < 3; i++) {
        char resolve[128], url[128];
        snprintf(resolve, sizeof(resolve), "%s:%d:127.0.0.1", sni_cases[2 * i].sni, x.port);
        snprintf(url, sizeof(url), "https://%s:%d/", sni_cases[2 * i].sni, x.port);
        const char *argv[] = {sph_tool("curl"), "-sk",   "-v", "--max-time", "5",
                              "--resolve",      resolve, url,  NULL};
        char *out = sph_run_capture(argv, 10000);
        char want[32];
        snprintf(want, sizeof(want), "subject: CN=backend-%c", sni_cases[2 * i].want);
        ck_assert_msg(strstr(out, want) != NULL, "curl to %s: no \"%s\" in:\n%s",
                      sni_cases[2 * i].sni, want, out);
        free(out);
    }
}
END_TEST

static TCase *tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, sph_deploy_teardown);
    return tc;
}

static void add_main(Suite *s)
{
    TCase *tc = tcase("peek");
    tcase_add_test(tc, sni_split_hello_intact);
    tcase_add_test(tc, sni_malformed_and_timeout);
    tcase_add_test(tc, sni_listener_deny);
    tcase_add_test(tc, sni_after_proxy_header);
    suite_add_tcase(s, tc);
}

static void add_openssl(Suite *s)
{
    TCase *tc = tcase("openssl");
    tcase_add_unchecked_fixture(tc, certs_make, certs_remove);
    tcase_add_test(tc, sni_routing);
    suite_add_tcase(s, tc);
}

static void add_curl(Suite *s)
{
    TCase *tc = tcase("curl");
    tcase_add_unchecked_fixture(tc, certs_make, certs_remove);
    tcase_add_test(tc, sni_routing_curl);
    suite_add_tcase(s, tc);
}

static const struct sph_group groups[] = {
    {.name = NULL, .add = add_main},
    {.name = "openssl", .tools = {"openssl"}, .add = add_openssl},
    {.name = "curl", .tools = {"openssl", "curl"}, .add = add_curl},
};

int main(int argc, char **argv)
{
    return sph_main(argc, argv, "integration.sni", groups, SP_ARRAY_LEN(groups));
}
