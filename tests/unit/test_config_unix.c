/* test_config_unix.c: unix: addresses in the config: listeners and servers (paths and abstract
 * names), unix_mode, and the exact "FILE:LINE:COL: message" of each mistake, including the keys
 * refused on a unix listener because its clients have no IP address. */
#include "common.h"
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#define L "listeners:\n  web:\n"
#define TAIL                                                                                       \
    "upstreams:\n  pool:\n    servers:\n      - address: 127.0.0.1:9001\n  hashed:\n"              \
    "    balance: source_hash\n    servers:\n      - address: 127.0.0.1:9002\n"

static struct sp_config *load(const char *text)
{
    struct sp_config *cfg = NULL;
    struct sp_config_error err;
    int rc = sp_config_load_string("mem", text, strlen(text), &cfg, &err);
    ck_assert_msg(rc == 0, "rc %d: %s", rc, err.text);
    return cfg;
}

START_TEST(unix_listener)
{
    struct sp_config *cfg = load(
        L "    listen: unix:/run/splicer/web.sock\n    upstream: pool\n    unix_mode: \"0660\"\n"
          "  abs:\n    listen: unix:@splicer-abs\n    upstream: pool\n"
          "  tcp:\n    listen: 127.0.0.1:8080\n    upstream: pool\n" TAIL);
    const struct sp_listener_conf *l = &cfg->listeners[0];
    const struct sockaddr_un *un = (const void *)&l->addr;
    ck_assert_int_eq(l->addr.ss_family, AF_UNIX);
    ck_assert_str_eq(un->sun_path, "/run/splicer/web.sock");
    ck_assert_str_eq(l->listen, "unix:/run/splicer/web.sock");
    ck_assert_uint_eq(l->addrlen, offsetof(struct sockaddr_un, sun_path) + 22);
    ck_assert_int_eq(l->unix_mode, 0660);
    l = &cfg->listeners[1];
    un = (const void *)&l->addr;
    ck_assert_int_eq(un->sun_path[0], '\0');
    ck_assert_str_eq(un->sun_path + 1, "splicer-abs");
    ck_assert_uint_eq(l->addrlen, offsetof(struct sockaddr_un, sun_path) + 1 + 11);
    ck_assert_int_eq(l->unix_mode, -1);
    ck_assert_int_eq(cfg->listeners[2].unix_mode, -1);
    sp_config_free(cfg);

    cfg = load(L "    listen: unix:/a.sock\n    upstream: pool\n    unix_mode: 600\n" TAIL);
    ck_assert_int_eq(cfg->listeners[0].unix_mode, 0600);
    sp_config_free(cfg);
}
END_TEST

START_TEST(unix_server)
{
    struct sp_config *cfg = load(L "    listen: 127.0.0.1:8080\n    upstream: u\n"
                                   "upstreams:\n  u:\n    servers:\n"
                                   "      - address: unix:/run/app.sock\n"
                                   "      - address: unix:@app\n"
                                   "      - address: 127.0.0.1:9001\n");
    const struct sp_server_conf *s = cfg->upstreams[0].servers;
    ck_assert_int_eq(s[0].addr.ss_family, AF_UNIX);
    ck_assert_str_eq(s[0].address, "unix:/run/app.sock");
    ck_assert(!s[0].needs_resolve);
    ck_assert_uint_eq(s[0].port, 0);
    ck_assert_int_eq(s[1].addr.ss_family, AF_UNIX);
    ck_assert_uint_eq(s[1].addrlen, offsetof(struct sockaddr_un, sun_path) + 4);
    sp_config_free(cfg);
}
END_TEST

/* With PROXY headers the client has an address again: the IP keys are allowed, and no
 * proxy_protocol_from is needed (the file's permissions say who may send a header). */
START_TEST(unix_with_proxy_headers)
{
    struct sp_config *cfg =
        load(L "    listen: unix:/run/in.sock\n    upstream: hashed\n"
               "    accept_proxy_protocol: true\n    allow: [10.0.0.0/8]\n    deny: [10.0.0.1]\n"
               "    limits: {per_source_connections: 5}\n" TAIL);
    ck_assert(cfg->listeners[0].accept_proxy_protocol);
    ck_assert_uint_eq(cfg->listeners[0].proxy_from.n, 0);
    sp_config_free(cfg);
}
END_TEST

/* 97 bytes: with "/" and 10 more, a path of 108, one past what sun_path holds */
#define LONG97                                                                                     \
    "01234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901" \
    "23456"

static const struct {
    const char *body;
    const char *msg;
} bad[] = {
    {"    listen: \"unix:\"\n    upstream: pool\n",
     "mem:3:13: empty unix socket address 'unix:' for 'listen' in listener 'web' (expected "
     "unix:/absolute/path or unix:@abstract-name)"},
    {"    listen: unix:@\n    upstream: pool\n",
     "mem:3:13: empty unix socket address 'unix:@' for 'listen' in listener 'web' (expected "
     "unix:/absolute/path or unix:@abstract-name)"},
    {"    listen: unix:run/x.sock\n    upstream: pool\n",
     "mem:3:13: relative unix socket path 'unix:run/x.sock' for 'listen' in listener 'web': write "
     "an absolute path, such as unix:/run/app.sock (a relative one would depend on the working "
     "directory)"},
    {"    listen: unix:/" LONG97 "xxxxxxxxxx\n    upstream: pool\n",
     "mem:3:13: unix socket path for 'listen' in listener 'web' is 108 bytes, longer than the "
     "107 a socket address holds (sun_path): choose a shorter path"},
    {"    listen: \"unix:/a\\nb\"\n    upstream: pool\n",
     "mem:3:13: control character in unix socket address for 'listen' in listener 'web'"},
    {"    listen: 127.0.0.1:80\n    upstream: u\nupstreams:\n  u:\n    servers:\n"
     "      - address: unix:app.sock\n",
     "mem:8:18: relative unix socket path 'unix:app.sock' for 'address' in server 1 of upstream "
     "'u': write an absolute path, such as unix:/run/app.sock (a relative one would depend on "
     "the working directory)"},
    {"    listen: 127.0.0.1:80\n    upstream: pool\n    unix_mode: \"0660\"\n",
     "mem:5:16: 'unix_mode' in listener 'web' sets a socket file's permissions, but it listens "
     "on TCP ('127.0.0.1:80'), not on unix:/path"},
    {"    listen: unix:@app\n    upstream: pool\n    unix_mode: \"0660\"\n",
     "mem:5:16: 'unix_mode' in listener 'web': the abstract socket 'unix:@app' has no file, so "
     "no permissions to set (use unix:/path for that)"},
    {"    listen: unix:/a.sock\n    upstream: pool\n    unix_mode: \"0999\"\n",
     "mem:5:16: invalid value '0999' for 'unix_mode' in listener 'web' (expected permission bits "
     "in octal, as a string: \"0660\", \"0600\" or \"0666\")"},
    {"    listen: unix:/a.sock\n    upstream: pool\n    unix_mode: \"1777\"\n",
     "mem:5:16: invalid value '1777' for 'unix_mode' in listener 'web' (expected permission bits "
     "in octal, as a string: \"0660\", \"0600\" or \"0666\")"},
    {"    listen: unix:/a.sock\n    upstream: pool\n    unix_mode: rw-rw----\n",
     "mem:5:16: invalid value 'rw-rw----' for 'unix_mode' in listener 'web' (expected permission "
     "bits in octal, as a string: \"0660\", \"0600\" or \"0666\")"},
    {"    listen: unix:/a.sock\n    upstream: pool\n    allow: [10.0.0.0/8]\n",
     "mem:5:12: 'allow' in listener 'web' matches client IP addresses, but the clients of a unix "
     "listener have no IP address (who may connect is up to the socket file's permissions: "
     "unix_mode), unless a PROXY header names one (accept_proxy_protocol)"},
    {"    listen: unix:/a.sock\n    upstream: pool\n    deny: []\n",
     "mem:5:11: 'deny' in listener 'web' matches client IP addresses, but the clients of a unix "
     "listener have no IP address (who may connect is up to the socket file's permissions: "
     "unix_mode), unless a PROXY header names one (accept_proxy_protocol)"},
    {"    listen: unix:/a.sock\n    upstream: pool\n    limits: {per_source_connections: 3}\n",
     "mem:5:13: 'limits' in listener 'web' counts clients by IP address, but the clients of a "
     "unix listener have no IP address (who may connect is up to the socket file's permissions: "
     "unix_mode), unless a PROXY header names one (accept_proxy_protocol)"},
    {"    listen: unix:/a.sock\n    upstream: hashed\n",
     "mem:3:13: listener 'web' on 'unix:/a.sock' sends its clients to upstream 'hashed', which "
     "balances by source_hash, but the clients of a unix listener have no IP address (who may "
     "connect is up to the socket file's permissions: unix_mode), unless a PROXY header names "
     "one (accept_proxy_protocol): every client would hash alike (choose another balance for "
     "that upstream)"},
    {"    listen: unix:/a.sock\n    upstream: pool\n    accept_proxy_protocol: true\n"
     "    proxy_protocol_from: [10.0.0.1]\n",
     "mem:6:26: 'proxy_protocol_from' in listener 'web' lists IP addresses, but the peers of a "
     "unix listener have none: whoever the socket file's permissions let connect (unix_mode) "
     "may send a PROXY header; remove it"},
    {"    listen: unix:@app\n    upstream: pool\n    accept_proxy_protocol: true\n",
     "mem:5:28: listener 'web' accepts PROXY headers on the abstract socket 'unix:@app', which "
     "has no permissions: any process in the network namespace could send one and choose its "
     "client address (listen on unix:/path with unix_mode instead)"},
    {"    listen: unix:/a.sock\n    upstream: pool\n  api:\n    listen: unix:/a.sock\n"
     "    upstream: pool\n",
     "mem:6:13: listener 'api' listens on 'unix:/a.sock', already used by listener 'web'"},
};

START_TEST(bad_config)
{
    char text[2048];
    struct sp_config *cfg = NULL;
    struct sp_config_error err;
    bool own_upstreams = strstr(bad[_i].body, "upstreams:") != NULL;
    snprintf(text, sizeof(text), L "%s%s", bad[_i].body, own_upstreams ? "" : TAIL);
    int rc = sp_config_load_string("mem", text, strlen(text), &cfg, &err);
    ck_assert_int_eq(rc, -EINVAL);
    ck_assert_ptr_null(cfg);
    ck_assert_str_eq(err.text, bad[_i].msg);
}
END_TEST

static Suite *config_unix_suite(void)
{
    Suite *s = suite_create("config_unix");
    TCase *tc = tcase_create("unix");
    tcase_add_test(tc, unix_listener);
    tcase_add_test(tc, unix_server);
    tcase_add_test(tc, unix_with_proxy_headers);
    tcase_add_loop_test(tc, bad_config, 0, (int)SP_ARRAY_LEN(bad));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_unix_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
