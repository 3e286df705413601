/* test_config.c: the config loader against tests/fixtures/config: good files give exact struct
 * values and defaults; bad files and in-memory texts give the exact "FILE:LINE:COL: message". */
#include "common.h"
#include "config.h"
#include "parse.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct sp_config *const UNTOUCHED = (struct sp_config *)&UNTOUCHED;

static void fixture(char *buf, size_t size, const char *rel)
{
    const char *dir = getenv("SPLICER_FIXTURES");
    ck_assert_msg(dir != NULL, "SPLICER_FIXTURES is not set");
    int n = snprintf(buf, size, "%s/%s", dir, rel);
    ck_assert(n > 0 && (size_t)n < size);
}

static struct sp_config *load_good(const char *rel)
{
    char path[1024];
    struct sp_config *cfg = NULL;
    struct sp_config_error err;

    fixture(path, sizeof(path), rel);
    int rc = sp_config_load(path, &cfg, &err);
    ck_assert_msg(rc == 0, "%s: rc %d: %s", rel, rc, err.text);
    ck_assert_ptr_nonnull(cfg);
    ck_assert_str_eq(cfg->path, path);
    return cfg;
}

static void assert_addr(const struct sockaddr_storage *ss, socklen_t len, const char *host,
                        unsigned port)
{
    char buf[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const void *)ss;
        ck_assert_uint_eq(len, sizeof(*sin));
        ck_assert_uint_eq(ntohs(sin->sin_port), port);
        inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
    } else {
        const struct sockaddr_in6 *sin6 = (const void *)ss;
        ck_assert_int_eq(ss->ss_family, AF_INET6);
        ck_assert_uint_eq(len, sizeof(*sin6));
        ck_assert_uint_eq(ntohs(sin6->sin6_port), port);
        inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
    }
    ck_assert_str_eq(buf, host);
}

START_TEST(good_full)
{
    struct sp_config *cfg = load_good("config/good/full.yaml");

    ck_assert_uint_eq(cfg->workers, 4);
    ck_assert_uint_eq(cfg->shutdown_timeout_ms, 45000);
    ck_assert_uint_eq(cfg->pipe_size, 256 * 1024);
    ck_assert_uint_eq(cfg->pipe_pool_max, 128);
    ck_assert_int_eq(cfg->relay, SP_RELAY_COPY);
    ck_assert_int_eq(cfg->log_level, SP_LOG_DEBUG);

    ck_assert_uint_eq(cfg->nlisteners, 2);
    struct sp_listener_conf *web = &cfg->listeners[0], *api = &cfg->listeners[1];
    ck_assert_str_eq(web->name, "web");
    ck_assert_str_eq(web->listen, "127.0.0.1:8080");
    assert_addr(&web->addr, web->addrlen, "127.0.0.1", 8080);
    ck_assert_str_eq(web->upstream_name, "web_pool");
    ck_assert_ptr_eq(web->upstream, &cfg->upstreams[0]);
    ck_assert_uint_eq(web->connect_timeout_ms, 500);
    ck_assert_uint_eq(web->idle_timeout_ms, 0);
    ck_assert_uint_eq(web->max_connections, 20000);
    ck_assert_uint_eq(web->backlog, 1024);
    ck_assert_int_eq(web->relay, SP_RELAY_SPLICE);
    ck_assert_int_eq(web->mark.line, 9);
    ck_assert_int_eq(web->mark.col, 3);

    ck_assert_str_eq(api->name, "api");
    ck_assert_str_eq(api->listen, "[::1]:8443");
    assert_addr(&api->addr, api->addrlen, "::1", 8443);
    ck_assert_ptr_eq(api->upstream, &cfg->upstreams[1]);
    ck_assert_int_eq(api->relay, SP_RELAY_COPY); /* inherited */

    ck_assert_uint_eq(cfg->nupstreams, 2);
    struct sp_upstream_conf *u = &cfg->upstreams[0];
    ck_assert_str_eq(u->name, "web_pool");
    ck_assert_int_eq(u->balance, SP_BALANCE_LEAST_CONN);
    ck_assert_uint_eq(u->retries, 0);
    ck_assert_uint_eq(u->max_fails, 5);
    ck_assert_uint_eq(u->fail_timeout_ms, 60000);
    ck_assert_uint_eq(u->slow_start_ms, 30000);
    ck_assert(u->health.enabled);
    ck_assert_uint_eq(u->health.interval_ms, 5000);
    ck_assert_uint_eq(u->health.timeout_ms, 1500);
    ck_assert_uint_eq(u->health.rise, 4);
    ck_assert_uint_eq(u->health.fall, 6);
    ck_assert_uint_eq(u->health.send_len, 6);
    ck_assert_mem_eq(u->health.send, "PING\r\n", 6);
    ck_assert_uint_eq(u->health.expect_len, 5);
    ck_assert_str_eq(u->health.expect, "+PONG");

    ck_assert_uint_eq(u->nservers, 3);
    ck_assert_str_eq(u->servers[0].address, "127.0.0.1:9001");
    assert_addr(&u->servers[0].addr, u->servers[0].addrlen, "127.0.0.1", 9001);
    ck_assert_uint_eq(u->servers[0].weight, 1);
    ck_assert(!u->servers[0].backup);
    ck_assert_uint_eq(u->servers[1].weight, 2);
    ck_assert(!u->servers[1].backup);
    assert_addr(&u->servers[2].addr, u->servers[2].addrlen, "::1", 9003);
    ck_assert(u->servers[2].backup);
    ck_assert_int_eq(u->servers[2].mark.line, 38);
    ck_assert_int_eq(u->servers[2].mark.col, 9);

    struct sp_upstream_conf *a = &cfg->upstreams[1];
    ck_assert_str_eq(a->name, "api_pool");
    ck_assert_int_eq(a->balance, SP_BALANCE_RANDOM_TWO);
    ck_assert(!a->health.enabled);
    ck_assert_uint_eq(a->nservers, 1);
    ck_assert_uint_eq(a->servers[0].weight, 1000);
    ck_assert(!a->servers[0].backup);
    assert_addr(&a->servers[0].addr, a->servers[0].addrlen, "10.0.0.1", 443);

    ck_assert(cfg->admin.enabled);
    ck_assert_str_eq(cfg->admin.listen, "127.0.0.1:9090");
    assert_addr(&cfg->admin.addr, cfg->admin.addrlen, "127.0.0.1", 9090);
    ck_assert(cfg->access_log.enabled);
    ck_assert_str_eq(cfg->access_log.path, "/var/log/splicer/access.log");
    ck_assert_str_eq(cfg->control_socket, "/run/splicer/control.sock");
    ck_assert_int_eq(cfg->access_log.format, SP_LOG_FORMAT_TEXT);
    sp_config_free(cfg);
}
END_TEST

START_TEST(good_minimal_defaults)
{
    struct sp_config *cfg = load_good("config/good/minimal.yaml");

    ck_assert_uint_eq(cfg->workers, 1);
    ck_assert_uint_eq(cfg->shutdown_timeout_ms, 30000);
    ck_assert_uint_eq(cfg->pipe_size, 1024 * 1024);
    ck_assert_uint_eq(cfg->pipe_pool_max, 64);
    ck_assert_uint_eq(cfg->pipe_memory_max, 64 << 20);
    ck_assert_int_eq(cfg->relay, SP_RELAY_SPLICE);
    ck_assert_int_eq(cfg->log_level, SP_LOG_INFO);

    ck_assert_uint_eq(cfg->nlisteners, 1);
    struct sp_listener_conf *l = &cfg->listeners[0];
    ck_assert_uint_eq(l->connect_timeout_ms, 2000);
    ck_assert_uint_eq(l->idle_timeout_ms, 300000);
    ck_assert_uint_eq(l->max_connections, 10000);
    ck_assert_uint_eq(l->backlog, 511);
    ck_assert_int_eq(l->relay, SP_RELAY_SPLICE);
    ck_assert_ptr_eq(l->upstream, &cfg->upstreams[0]);

    ck_assert_uint_eq(cfg->nupstreams, 1);
    struct sp_upstream_conf *u = &cfg->upstreams[0];
    ck_assert_int_eq(u->balance, SP_BALANCE_ROUND_ROBIN);
    ck_assert_uint_eq(u->retries, 2);
    ck_assert_uint_eq(u->max_fails, 3);
    ck_assert_uint_eq(u->fail_timeout_ms, 10000);
    ck_assert_uint_eq(u->slow_start_ms, 0);
    ck_assert(!u->health.enabled);
    ck_assert_uint_eq(u->health.interval_ms, 2000);
    ck_assert_uint_eq(u->health.timeout_ms, 1000);
    ck_assert_uint_eq(u->health.rise, 2);
    ck_assert_uint_eq(u->health.fall, 3);
    ck_assert_ptr_null(u->health.send);
    ck_assert_uint_eq(u->health.send_len, 0);
    ck_assert_ptr_null(u->health.expect);
    ck_assert_uint_eq(u->nservers, 1);
    ck_assert_uint_eq(u->servers[0].weight, 1);
    ck_assert(!u->servers[0].backup);
    ck_assert_int_eq(u->servers[0].mark.line, 8);
    ck_assert_int_eq(u->servers[0].mark.col, 9);

    /* deployment keys */
    ck_assert(!l->accept_proxy_protocol);
    ck_assert_uint_eq(l->proxy_protocol_timeout_ms, 5000);
    ck_assert_uint_eq(l->proxy_from.n, 0);
    ck_assert_uint_eq(l->allow.n, 0);
    ck_assert_uint_eq(l->deny.n, 0);
    ck_assert_uint_eq(l->tls_inspect_timeout_ms, 5000);
    ck_assert_ptr_null(l->routes);
    ck_assert_uint_eq(l->nroutes, 0);
    ck_assert_uint_eq(l->sni_routes.n, 0);
    ck_assert_int_eq(u->proxy_protocol, SP_PP_SEND_OFF);
    ck_assert_uint_eq(u->dns_refresh_ms, 5000);
    ck_assert(!u->servers[0].needs_resolve);
    ck_assert_ptr_null(u->servers[0].host);
    ck_assert_uint_eq(u->servers[0].port, 9001);

    ck_assert(!cfg->admin.enabled);
    ck_assert_ptr_null(cfg->admin.listen);
    ck_assert(!cfg->access_log.enabled);
    ck_assert_ptr_null(cfg->access_log.path);
    ck_assert_ptr_null(cfg->control_socket);
    ck_assert_int_eq(cfg->access_log.format, SP_LOG_FORMAT_JSON);
    sp_config_free(cfg);
}
END_TEST

/* host as a socket address (port 1), valid until the next call. */
static const struct sockaddr *addr_of(const char *host)
{
    static struct sockaddr_storage ss;
    socklen_t len;
    char addr[80];
    snprintf(addr, sizeof(addr), strchr(host, ':') ? "[%s]:1" : "%s:1", host);
    ck_assert_int_eq(sp_parse_addr(addr, &ss, &len), 0);
    return (const struct sockaddr *)&ss;
}

static bool allowed(const struct sp_listener_conf *l, const char *host)
{
    return sp_cidr_allowed(&l->allow, &l->deny, addr_of(host));
}

START_TEST(good_deploy)
{
    struct sp_config *cfg = load_good("config/good/deploy.yaml");
    struct sp_listener_conf *l = &cfg->listeners[0];
    struct sp_upstream_conf *def = &cfg->upstreams[0], *web = &cfg->upstreams[1];
    struct sp_upstream_conf *api = &cfg->upstreams[2];

    ck_assert(l->accept_proxy_protocol);
    ck_assert_uint_eq(l->proxy_protocol_timeout_ms, 3000);
    ck_assert_uint_eq(l->proxy_from.n, 2);
    ck_assert(sp_cidr_match(&l->proxy_from, addr_of("10.9.1.2")));
    ck_assert(sp_cidr_match(&l->proxy_from, addr_of("::ffff:10.9.1.2")));
    ck_assert(!sp_cidr_match(&l->proxy_from, addr_of("10.8.1.2")));
    ck_assert(sp_cidr_match(&l->proxy_from, addr_of("fd00::5")));
    ck_assert_int_eq(l->accept_pp_mark.line, 6);
    ck_assert_int_eq(l->proxy_from_mark.line, 17);
    ck_assert_uint_eq(l->tls_inspect_timeout_ms, 1500);
    ck_assert_uint_eq(l->allow.n, 3);
    ck_assert_uint_eq(l->deny.n, 1);
    ck_assert(allowed(l, "10.1.2.3"));
    ck_assert(allowed(l, "::ffff:10.1.2.3"));
    ck_assert(!allowed(l, "10.6.1.1")); /* deny wins */
    ck_assert(allowed(l, "192.168.1.5"));
    ck_assert(!allowed(l, "192.168.1.6"));
    ck_assert(allowed(l, "::1"));
    ck_assert(!allowed(l, "::2"));

    ck_assert_ptr_eq(l->upstream, def);
    ck_assert_uint_eq(l->nroutes, 2);
    ck_assert_uint_eq(l->routes[0].nsni, 2);
    ck_assert_str_eq(l->routes[0].sni[0], "www.example.com");
    ck_assert_str_eq(l->routes[0].sni[1], "*.example.com");
    ck_assert_str_eq(l->routes[0].upstream_name, "web_pool");
    ck_assert_ptr_eq(l->routes[0].upstream, web);
    ck_assert_int_eq(l->routes[0].mark.line, 13);
    ck_assert_int_eq(l->routes[0].mark.col, 9);
    ck_assert_int_eq(l->routes[1].upstream_mark.line, 16);
    ck_assert_int_eq(l->routes[1].upstream_mark.col, 19);
    ck_assert_str_eq(l->routes[1].sni[0], "*.api.example.com"); /* lowercased */
    ck_assert_ptr_eq(l->routes[1].upstream, api);
    ck_assert_int_eq(sp_sni_routes_match(&l->sni_routes, "www.example.com"), 0);
    ck_assert_int_eq(sp_sni_routes_match(&l->sni_routes, "img.example.com"), 0);
    ck_assert_int_eq(sp_sni_routes_match(&l->sni_routes, "v2.api.example.com"), 1);
    ck_assert_int_eq(sp_sni_routes_match(&l->sni_routes, "api.example.org"), 1);
    ck_assert_int_eq(sp_sni_routes_match(&l->sni_routes, "example.com"), -1); /* -> default */

    ck_assert_int_eq(def->proxy_protocol, SP_PP_SEND_OFF);
    ck_assert_int_eq(web->proxy_protocol, SP_PP_SEND_V2);
    ck_assert_int_eq(api->proxy_protocol, SP_PP_SEND_V1);
    ck_assert_uint_eq(web->dns_refresh_ms, 30000);
    ck_assert_uint_eq(api->dns_refresh_ms, 5000);

    struct sp_server_conf *s = web->servers;
    ck_assert(s[0].needs_resolve);
    ck_assert_str_eq(s[0].address, "Web-1.Internal:8080");
    ck_assert_str_eq(s[0].host, "web-1.internal");
    ck_assert_uint_eq(s[0].port, 8080);
    ck_assert_int_eq(s[0].addr.ss_family, AF_UNSPEC);
    ck_assert_uint_eq(s[0].addrlen, 0);
    ck_assert(s[1].needs_resolve); /* localhost is a name too */
    ck_assert_str_eq(s[1].host, "localhost");
    ck_assert(!s[2].needs_resolve); /* a numeric one beside names */
    ck_assert_ptr_null(s[2].host);
    ck_assert_uint_eq(s[2].port, 8080);
    assert_addr(&s[2].addr, s[2].addrlen, "127.0.0.1", 8080);
    ck_assert_uint_eq(api->servers[0].port, 9100);
    ck_assert(!api->servers[0].needs_resolve);

    ck_assert_str_eq(sp_pp_send_name(SP_PP_SEND_OFF), "off");
    ck_assert_str_eq(sp_pp_send_name(SP_PP_SEND_V1), "v1");
    ck_assert_str_eq(sp_pp_send_name(SP_PP_SEND_V2), "v2");
    ck_assert_str_eq(sp_pp_send_name(SP_PP_SEND_COUNT), "unknown");
    sp_config_free(cfg);
}
END_TEST

START_TEST(good_admin_v6)
{
    struct sp_config *cfg = load_good("config/good/admin_v6.yaml");

    ck_assert(cfg->admin.enabled);
    ck_assert_str_eq(cfg->admin.listen, "[::1]:9090");
    assert_addr(&cfg->admin.addr, cfg->admin.addrlen, "::1", 9090);
    ck_assert(cfg->access_log.enabled);
    ck_assert_str_eq(cfg->access_log.path, "stderr");
    ck_assert_int_eq(cfg->access_log.format, SP_LOG_FORMAT_JSON);
    sp_config_free(cfg);
}
END_TEST

/* access_log and log_format values that load, from memory. */
static const struct {
    const char *text;
    bool enabled;
    const char *path;
    enum sp_log_format format;
} access_logs[] = {
    {"access_log: off\n", false, NULL, SP_LOG_FORMAT_JSON},
    {"access_log: stdout\nlog_format: json\n", true, "stdout", SP_LOG_FORMAT_JSON},
    {"access_log: stderr\nlog_format: text\n", true, "stderr", SP_LOG_FORMAT_TEXT},
    {"access_log: ./access.log\n", true, "./access.log", SP_LOG_FORMAT_JSON},
    {"log_format: text\n", false, NULL, SP_LOG_FORMAT_TEXT},
};

START_TEST(good_relay_inherit)
{
    struct sp_config *cfg = load_good("config/good/relay_inherit.yaml");
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    ck_assert_int_eq(cfg->relay, SP_RELAY_COPY);
    ck_assert_int_eq(cfg->listeners[0].relay, SP_RELAY_COPY);
    ck_assert_int_eq(cfg->listeners[1].relay, SP_RELAY_SPLICE);
    ck_assert_uint_eq(cfg->workers, cpus < 1 ? 1 : cpus > 256 ? 256 : (unsigned)cpus);
    ck_assert(cfg->upstreams[0].health.enabled); /* an empty block turns checks on */
    ck_assert_uint_eq(cfg->upstreams[0].health.interval_ms, 2000);
    sp_config_free(cfg);
}
END_TEST

START_TEST(good_binary_check)
{
    struct sp_config *cfg = load_good("config/good/binary_check.yaml");
    struct sp_health_conf *h = &cfg->upstreams[0].health;

    ck_assert_int_eq(cfg->upstreams[0].balance, SP_BALANCE_SOURCE_HASH);
    ck_assert_uint_eq(h->send_len, 8);
    ck_assert_mem_eq(h->send, "\0\1PING\r\n", 8);
    ck_assert_ptr_nonnull(h->expect);
    ck_assert_uint_eq(h->expect_len, 0);
    ck_assert_ptr_eq(cfg->listeners[0].upstream, &cfg->upstreams[0]);
    ck_assert_ptr_eq(cfg->listeners[1].upstream, &cfg->upstreams[0]);
    assert_addr(&cfg->listeners[0].addr, cfg->listeners[0].addrlen, "0.0.0.0", 6380);
    assert_addr(&cfg->listeners[1].addr, cfg->listeners[1].addrlen, "::", 6380);
    sp_config_free(cfg);
}
END_TEST

/* The shipped examples must keep loading. */
START_TEST(shipped_examples)
{
    struct sp_config *cfg = load_good("../../configs/splicer.yaml");
    ck_assert_uint_ge(cfg->nlisteners, 1);
    ck_assert(cfg->upstreams[0].health.enabled);
    sp_config_free(cfg);
    cfg = load_good("../../configs/minimal.yaml");
    ck_assert_uint_eq(cfg->nlisteners, 1);
    sp_config_free(cfg);
}
END_TEST

/* Expected text after "PATH:", so the table does not depend on where the tree is. */
static const struct {
    const char *file;
    const char *msg;
} bad_files[] = {
    {"syntax_indent.yaml", "4:4: YAML error: did not find expected key (while parsing a block "
                           "mapping at line 2, column 3)"},
    {"syntax_tab.yaml",
     "2:1: YAML error: found character that cannot start any token (a tab; indent with spaces)"},
    {"syntax_quote.yaml", "9:1: YAML error: found unexpected end of stream (while scanning a "
                          "quoted scalar at line 8, column 18)"},
    {"unknown_listener_key.yaml",
     "5:5: unknown key 'conect_timeout' in listener 'web' (did you mean 'connect_timeout'?)"},
    {"unknown_top_key.yaml", "1:1: unknown key 'worker' at top level (did you mean 'workers'?)"},
    {"unknown_top_key_far.yaml", "9:1: unknown key 'frontends' at top level"},
    {"health_unknown_key.yaml", "8:7: unknown key 'intervall' in health_check of upstream "
                                "'web_pool' (did you mean 'interval'?)"},
    {"type_sequence_for_scalar.yaml",
     "3:13: expected a scalar for 'listen' in listener 'web', found a sequence"},
    {"type_scalar_for_mapping.yaml", "1:12: expected a mapping for 'listeners', found a scalar"},
    {"type_mapping_for_sequence.yaml",
     "8:7: expected a sequence for 'servers' in upstream 'web_pool', found a mapping"},
    {"duplicate_key.yaml", "5:5: duplicate key 'listen' in listener 'web' (first at line 3)"},
    {"duplicate_listener.yaml", "5:3: duplicate listener 'web' (first at line 2)"},
    {"duplicate_upstream.yaml", "9:3: duplicate upstream 'web_pool' (first at line 6)"},
    {"duplicate_server.yaml",
     "9:18: duplicate server '127.0.0.1:9001' in upstream 'web_pool' (first at line 8)"},
    {"duration_unit.yaml", "5:19: invalid duration '5x' for 'idle_timeout' in listener 'web' "
                           "(expected a number and a unit: ms, s, m or h, as in 2s)"},
    {"duration_bare.yaml", "1:19: invalid duration '10' for 'shutdown_timeout' (expected a "
                           "number and a unit: ms, s, m or h, as in 2s)"},
    {"duration_negative.yaml",
     "7:19: invalid duration '-1s' for 'fail_timeout' in upstream 'web_pool' (expected a number "
     "and a unit: ms, s, m or h, as in 2s)"},
    {"duration_zero.yaml", "5:22: 'connect_timeout' in listener 'web' must be greater than 0"},
    {"health_interval_zero.yaml",
     "8:17: 'interval' in health_check of upstream 'web_pool' must be greater than 0"},
    {"size_bad.yaml", "1:12: invalid size '1mb' for 'pipe_size' (expected bytes, or a number "
                      "with k, m or g, as in 64k)"},
    {"size_range.yaml", "1:12: size '2k' for 'pipe_size' is out of range (4k..1g)"},
    {"int_bad.yaml", "1:10: invalid integer 'four' for 'workers' (expected 0..256)"},
    {"int_range.yaml", "9:17: value '0' for 'weight' in server 1 of upstream 'web_pool' is out "
                       "of range (1..1000)"},
    {"bool_bad.yaml", "10:17: invalid boolean 'maybe' for 'backup' in server 2 of upstream "
                      "'web_pool' (expected true or false)"},
    {"enum_balance.yaml",
     "7:14: invalid value 'fastest' for 'balance' in upstream 'web_pool' (expected one of: "
     "round_robin, least_conn, source_hash, random_two)"},
    {"enum_log_level.yaml", "1:12: invalid value 'loud' for 'log_level' (expected one of: "
                            "debug, info, warn, error)"},
    {"address_port_range.yaml",
     "3:13: port out of range in '127.0.0.1:70000' for 'listen' in listener 'web' (1..65535)"},
    {"address_no_port.yaml",
     "8:18: invalid address '127.0.0.1' for 'address' in server 1 of upstream 'web_pool' "
     "(expected IPv4:port, [IPv6]:port, host:port or unix:/path)"},
    {"address_v6_unclosed.yaml",
     "3:13: invalid address '[::1:80' for 'listen' in listener 'web' (expected IPv4:port, "
     "[IPv6]:port or *:port; host names are not supported)"},
    {"address_v6_unquoted.yaml", "3:14: YAML error: did not find expected node content (quote "
                                 "bracketed IPv6 addresses, as in \"[::1]:80\")"},
    {"address_name.yaml",
     "3:13: invalid address 'localhost:80' for 'listen' in listener 'web' (expected IPv4:port, "
     "[IPv6]:port or *:port; host names are not supported)"},
    {"undefined_upstream.yaml",
     "4:15: listener 'web' uses undefined upstream 'web_pol' (did you mean 'web_pool'?)"},
    {"same_address.yaml",
     "6:13: listener 'api' listens on '127.0.0.1:8080', already used by listener 'web'"},
    {"empty_servers.yaml", "8:14: upstream 'web_pool' has no servers"},
    {"no_servers.yaml", "6:3: missing required key 'servers' in upstream 'web_pool'"},
    {"missing_listen.yaml", "2:3: missing required key 'listen' in listener 'web'"},
    {"missing_upstream.yaml", "2:3: missing required key 'upstream' in listener 'web'"},
    {"missing_address.yaml",
     "9:9: missing required key 'address' in server 2 of upstream 'web_pool'"},
    {"missing_listeners.yaml", "1:1: missing required key 'listeners' at top level"},
    {"missing_upstreams.yaml", "1:1: missing required key 'upstreams' at top level"},
    {"no_listeners.yaml", "1:12: 'listeners' is empty (at least one listener is required)"},
    {"empty.yaml", "1:1: configuration is empty"},
    {"comments_only.yaml", "1:1: configuration is empty"},
    {"not_a_mapping.yaml", "1:1: expected a mapping at top level, found a sequence"},
    {"two_documents.yaml", "10:1: multiple YAML documents are not supported"},
    {"admin_same_address.yaml",
     "6:11: admin listens on '127.0.0.1:8080', already used by listener 'web'"},
    {"admin_unknown_key.yaml", "3:3: unknown key 'lisen' in admin (did you mean 'listen'?)"},
    {"admin_missing_listen.yaml", "5:8: missing required key 'listen' in admin"},
    {"access_log_bad.yaml", "1:13: invalid value 'stdrr' for 'access_log' (expected off, stderr, "
                            "stdout or a file path with a '/', as in ./access.log)"},
    {"control_socket_relative.yaml",
     "1:17: invalid value 'run/splicer.sock' for 'control_socket' (expected an absolute path, as "
     "in /run/splicer/control.sock)"},
    {"control_socket_long.yaml",
     "1:17: 'control_socket' is 102 bytes long; a Unix socket path may have at most 90 here"},
    {"control_socket_list.yaml", "1:17: expected a scalar for 'control_socket', found a sequence"},
    {"route_undefined_upstream.yaml",
     "9:19: route 2 of listener 'edge' uses undefined upstream 'api_pol' (did you mean "
     "'api_pool'?)"},
    {"route_bad_pattern.yaml",
     "6:30: invalid sni pattern 'a.*.example.com' for 'sni' in route 1 of listener 'edge' "
     "(expected a host name, or '*.' and a host name, as in *.example.com)"},
    {"route_duplicate_pattern.yaml", "8:30: sni pattern '*.Example.com' for 'sni' in route 2 of "
                                     "listener 'edge' is already used by route 1"},
    {"allow_bad_cidr.yaml", "7:9: prefix length out of range in '10.0.0.1/33' in 'allow' in "
                            "listener 'web' (at most 32 for IPv4, 128 for IPv6)"},
    {"server_bad_name.yaml",
     "8:18: invalid address 'db_1.internal:5432' for 'address' in server 1 of upstream "
     "'web_pool' (expected IPv4:port, [IPv6]:port, host:port or unix:/path)"},
    {"proxy_protocol_bad.yaml", "7:21: invalid value 'v3' for 'proxy_protocol' in upstream "
                                "'web_pool' (expected one of: off, v1, v2)"},
    {"log_format_bad.yaml",
     "1:13: invalid value 'xml' for 'log_format' (expected one of: json, text)"},
    {"proxy_protocol_no_from.yaml",
     "6:28: listener 'edge' accepts PROXY headers but has no 'proxy_protocol_from': list the "
     "load balancers allowed to send one (a header from any other peer would choose its own "
     "client address); to trust every peer, write proxy_protocol_from: [\"0.0.0.0/0\", "
     "\"::/0\"]"},
};

START_TEST(bad_file)
{
    char rel[256], path[1024], want[1400];
    struct sp_config *cfg = UNTOUCHED;
    struct sp_config_error err;

    snprintf(rel, sizeof(rel), "config/bad/%s", bad_files[_i].file);
    fixture(path, sizeof(path), rel);
    snprintf(want, sizeof(want), "%s:%s", path, bad_files[_i].msg);
    int rc = sp_config_load(path, &cfg, &err);
    ck_assert_int_eq(rc, -EINVAL);
    ck_assert_ptr_eq(cfg, UNTOUCHED);
    ck_assert_str_eq(err.text, want);
}
END_TEST

#define LISTENERS "listeners:\n  web:\n    listen: 127.0.0.1:8080\n    upstream: web_pool\n"
#define UPSTREAMS "upstreams:\n  web_pool:\n    servers:\n      - address: 127.0.0.1:9001\n"

/* In-memory texts; the "mem" name stands for FILE. len 0 means strlen(text). */
static const struct {
    const char *text;
    size_t len;
    const char *msg;
} bad_strings[] = {
    {"listeners:\n  web:\n    listen:\n    upstream: web_pool\n" UPSTREAMS, 0,
     "mem:3:12: missing value for 'listen' in listener 'web'"},
    {"listeners:\n" UPSTREAMS, 0,
     "mem:1:11: expected a mapping for 'listeners', found an empty "
     "value"},
    {"listeners:\n  web: 127.0.0.1:80\n" UPSTREAMS, 0,
     "mem:2:8: expected a mapping for listener 'web', found a scalar"},
    {"listeners:\n  ? [a]\n  : {}\n" UPSTREAMS, 0,
     "mem:2:5: expected a scalar listener name, found a sequence"},
    {"listeners:\n  '': {listen: 127.0.0.1:80, upstream: web_pool}\n" UPSTREAMS, 0,
     "mem:2:3: listener name must be a non-empty string"},
    {LISTENERS "upstreams:\n  web_pool:\n    servers: ~\n", 0,
     "mem:7:14: upstream 'web_pool' has no servers"},
    {LISTENERS "upstreams:\n  web_pool:\n    servers:\n      - 127.0.0.1:9001\n", 0,
     "mem:8:9: expected a mapping for server 1 of upstream 'web_pool', found a scalar"},
    {LISTENERS "upstreams:\n  web_pool:\n    servers:\n      - {address: 1.2.3.4:5, wieght: 2}\n",
     0,
     "mem:8:30: unknown key 'wieght' in server 1 of upstream 'web_pool' (did you mean "
     "'weight'?)"},
    {LISTENERS "upstreams:\n  web_pool:\n    health_check: on\n    servers: [{address: "
               "1.2.3.4:5}]\n",
     0, "mem:7:19: expected a mapping for 'health_check' in upstream 'web_pool', found a scalar"},
    {LISTENERS UPSTREAMS "  other:\n    servers: [{address: 1.2.3.4:5}]\n    retries: 101\n", 0,
     "mem:11:14: value '101' for 'retries' in upstream 'other' is out of range (0..100)"},
    {"listeners:\n  web:\n    listen: 127.0.0.1:8080\n    upstream: nowhere\n" UPSTREAMS, 0,
     "mem:4:15: listener 'web' uses undefined upstream 'nowhere'"},
    {"listeners:\n  web:\n    listen: 127.0.0.1:0\n    upstream: web_pool\n" UPSTREAMS, 0,
     "mem:3:13: port out of range in '127.0.0.1:0' for 'listen' in listener 'web' (1..65535)"},
    {"relay: zerocopy\n" LISTENERS UPSTREAMS, 0,
     "mem:1:8: invalid value 'zerocopy' for 'relay' (expected one of: splice, copy, auto)"},
    {"shutdown_timeout: 600h\n" LISTENERS UPSTREAMS, 0,
     "mem:1:19: duration '600h' for 'shutdown_timeout' is too long (at most about 24 days)"},
    {"shutdown_timeout: \"1\\0s\"\n" LISTENERS UPSTREAMS, 0,
     "mem:1:19: NUL byte in the value of 'shutdown_timeout'"},
    {"workers: 257\n" LISTENERS UPSTREAMS, 0,
     "mem:1:10: value '257' for 'workers' is out of range (0..256)"},
    {"pipe_size: 2g\n" LISTENERS UPSTREAMS, 0,
     "mem:1:12: size '2g' for 'pipe_size' is out of range (4k..1g)"},
    {"pipe_memory_max: 1k\n" LISTENERS UPSTREAMS, 0,
     "mem:1:18: size '1k' for 'pipe_memory_max' is out of range (4k..1024g)"},
    {"pipe_memory_max: 2000g\n" LISTENERS UPSTREAMS, 0,
     "mem:1:18: size '2000g' for 'pipe_memory_max' is out of range (4k..1024g)"},
    {"---\n", 0, "mem:1:1: configuration is empty"},
    {"~\n", 0, "mem:1:1: configuration is empty"},
    {"listeners\n", 0, "mem:1:1: expected a mapping at top level, found a scalar"},
    {"workers: 1\nworkers: 2\n", 0,
     "mem:2:1: duplicate key 'workers' at top level (first at "
     "line 1)"},
    {"a: *nope\n", 0,
     "mem:1:4: YAML alias '*nope' is not supported: an alias repeats a value without its text, "
     "so a small file could expand into a huge configuration (write the value out)"},
    {"workers: &w 1\nshutdown_timeout: *w\n" LISTENERS UPSTREAMS, 0,
     "mem:2:19: YAML alias '*w' is not supported: an alias repeats a value without its text, so "
     "a small file could expand into a huge configuration (write the value out)"},
    /* fuzz_config: each level of nesting costs libyaml kilobytes */
    {"a: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n", 0,
     "mem:1:35: nested more than 32 levels deep: no configuration key is"},
    {"workers: 1\n# caf\xc3\n", 0, "mem:2:7: YAML error: invalid trailing UTF-8 octet (#xA)"},
    {"workers: 1\x00\n", 12, "mem:1:11: YAML error: control characters are not allowed (#x0)"},
    {"admin:\n" LISTENERS UPSTREAMS, 0,
     "mem:1:7: expected a mapping for 'admin', found an empty "
     "value"},
    {"admin: 127.0.0.1:9090\n" LISTENERS UPSTREAMS, 0,
     "mem:1:8: expected a mapping for 'admin', found a scalar"},
    {"admin:\n  listen: localhost:9090\n" LISTENERS UPSTREAMS, 0,
     "mem:2:11: invalid address 'localhost:9090' for 'listen' in admin (expected IPv4:port, "
     "[IPv6]:port or *:port; host names are not supported)"},
    {"access_log:\n" LISTENERS UPSTREAMS, 0, "mem:1:12: missing value for 'access_log'"},
    /* deployment keys */
    {LISTENERS "    routes: []\n" UPSTREAMS, 0,
     "mem:5:13: 'routes' in listener 'web' is empty (remove it, or add a route with sni and "
     "upstream)"},
    {LISTENERS "    routes:\n      - upstream: web_pool\n" UPSTREAMS, 0,
     "mem:6:9: missing required key 'sni' in route 1 of listener 'web'"},
    {LISTENERS "    routes:\n      - sni: [a.com]\n" UPSTREAMS, 0,
     "mem:6:9: missing required key 'upstream' in route 1 of listener 'web'"},
    {LISTENERS "    routes:\n      - sni: []\n        upstream: web_pool\n" UPSTREAMS, 0,
     "mem:6:14: 'sni' in route 1 of listener 'web' needs at least one pattern"},
    {LISTENERS "    routes:\n      - sni: a.com\n        upstream: web_pool\n" UPSTREAMS, 0,
     "mem:6:14: expected a sequence for 'sni' in route 1 of listener 'web', found a scalar"},
    {LISTENERS "    routes:\n      - sni: ['*']\n        upstream: web_pool\n" UPSTREAMS, 0,
     "mem:6:15: invalid sni pattern '*' for 'sni' in route 1 of listener 'web' (expected a host "
     "name, or '*.' and a host name, as in *.example.com)"},
    {LISTENERS "    routes:\n      - {sni: [a.com], upstream: web_pool, weight: 1}\n" UPSTREAMS, 0,
     "mem:6:44: unknown key 'weight' in route 1 of listener 'web'"},
    {LISTENERS "    routes:\n      - web_pool\n" UPSTREAMS, 0,
     "mem:6:9: expected a mapping for route 1 of listener 'web', found a scalar"},
    {LISTENERS "    routes:\n      - {sni: [a.com], upstream: nowhere}\n" UPSTREAMS, 0,
     "mem:6:34: route 1 of listener 'web' uses undefined upstream 'nowhere'"},
    {LISTENERS "    allow: 10.0.0.0/8\n" UPSTREAMS, 0,
     "mem:5:12: expected a sequence for 'allow' in listener 'web', found a scalar"},
    {LISTENERS "    deny: [10.1.2.3/8]\n" UPSTREAMS, 0,
     "mem:5:12: '10.1.2.3/8' in 'deny' in listener 'web' has bits set past its prefix length "
     "(did you mean '10.0.0.0/8'?)"},
    {LISTENERS "    deny: ['2001:db8::1/32']\n" UPSTREAMS, 0,
     "mem:5:12: '2001:db8::1/32' in 'deny' in listener 'web' has bits set past its prefix "
     "length (did you mean '2001:db8::/32'?)"},
    {LISTENERS "    allow: [localhost]\n" UPSTREAMS, 0,
     "mem:5:13: invalid address 'localhost' in 'allow' in listener 'web' (expected an IPv4 or "
     "IPv6 address, alone or with a prefix length, as in 10.0.0.0/8)"},
    {LISTENERS "    allow: [[10.0.0.0/8]]\n" UPSTREAMS, 0,
     "mem:5:13: expected a scalar for 'allow' in listener 'web', found a sequence"},
    {LISTENERS "    accept_proxy_protocol: yes\n" UPSTREAMS, 0,
     "mem:5:28: listener 'web' accepts PROXY headers but has no 'proxy_protocol_from': list the "
     "load balancers allowed to send one (a header from any other peer would choose its own "
     "client address); to trust every peer, write proxy_protocol_from: [\"0.0.0.0/0\", "
     "\"::/0\"]"},
    {LISTENERS "    proxy_protocol_from: [10.0.0.0/8]\n" UPSTREAMS, 0,
     "mem:5:26: 'proxy_protocol_from' in listener 'web' needs accept_proxy_protocol: true "
     "(remove it, or turn PROXY headers on)"},
    {LISTENERS
     "    proxy_protocol_from: [10.0.0.0/8]\n    accept_proxy_protocol: false\n" UPSTREAMS,
     0,
     "mem:5:26: 'proxy_protocol_from' in listener 'web' needs accept_proxy_protocol: true "
     "(remove it, or turn PROXY headers on)"},
    {LISTENERS "    proxy_protocol_from: []\n    accept_proxy_protocol: true\n" UPSTREAMS, 0,
     "mem:5:26: 'proxy_protocol_from' in listener 'web' is empty: every connection would be "
     "closed (list the load balancers' addresses)"},
    {LISTENERS "    accept_proxy_protocol: true\n    proxy_protocol_from: [10.0.0.1/8]\n" UPSTREAMS,
     0,
     "mem:6:27: '10.0.0.1/8' in 'proxy_protocol_from' in listener 'web' has bits set past its "
     "prefix length (did you mean '10.0.0.0/8'?)"},
    {LISTENERS "    accept_proxy_protocol: v2\n" UPSTREAMS, 0,
     "mem:5:28: invalid boolean 'v2' for 'accept_proxy_protocol' in listener 'web' (expected "
     "true or false)"},
    {LISTENERS "    proxy_protocol_timeout: 0s\n" UPSTREAMS, 0,
     "mem:5:29: 'proxy_protocol_timeout' in listener 'web' must be greater than 0"},
    {LISTENERS "    tls_inspect_timeout: 0ms\n" UPSTREAMS, 0,
     "mem:5:26: 'tls_inspect_timeout' in listener 'web' must be greater than 0"},
    {LISTENERS UPSTREAMS "    dns_refresh: 0s\n", 0,
     "mem:9:18: 'dns_refresh' in upstream 'web_pool' must be greater than 0"},
    {LISTENERS "upstreams:\n  web_pool:\n    servers:\n      - address: db.local:5432\n"
               "      - address: DB.local:5432\n",
     0, "mem:9:18: duplicate server 'DB.local:5432' in upstream 'web_pool' (first at line 8)"},
    {LISTENERS "upstreams:\n  web_pool:\n    servers:\n      - address: db.local:65536\n", 0,
     "mem:8:18: port out of range in 'db.local:65536' for 'address' in server 1 of upstream "
     "'web_pool' (1..65535)"},
    {"listeners:\n  web:\n    listen: db.local:80\n    upstream: web_pool\n" UPSTREAMS, 0,
     "mem:3:13: invalid address 'db.local:80' for 'listen' in listener 'web' (expected "
     "IPv4:port, [IPv6]:port or *:port; host names are not supported)"},
    {"access_log: [a]\n" LISTENERS UPSTREAMS, 0,
     "mem:1:13: expected a scalar for 'access_log', found a sequence"},
};

START_TEST(bad_string)
{
    struct sp_config *cfg = UNTOUCHED;
    struct sp_config_error err;
    size_t len = bad_strings[_i].len ? bad_strings[_i].len : strlen(bad_strings[_i].text);

    int rc = sp_config_load_string("mem", bad_strings[_i].text, len, &cfg, &err);
    ck_assert_int_eq(rc, -EINVAL);
    ck_assert_ptr_eq(cfg, UNTOUCHED);
    ck_assert_str_eq(err.text, bad_strings[_i].msg);
}
END_TEST

/* Issue 9, item 13: listeners aliasing one mapping whose allow list holds aliased entries made
 * the loader build listeners x entries values (a 95 KB file: 3.6 s, 623 MiB; 193 KB: 79 s,
 * 2.5 GiB). The same shape, about 100 KB, is refused at its first alias, at once. */
START_TEST(alias_expansion)
{
    enum { LISTENERS_N = 2000, ENTRIES_N = 8000 };
    size_t cap = 64 + 6 * ENTRIES_N + 16 * LISTENERS_N + 256, n = 0;
    char *text = malloc(cap);
    ck_assert_ptr_nonnull(text);
    n += (size_t)snprintf(text + n, cap - n,
                          "upstreams:\n  u: {servers: [{address: 127.0.0.1:1}]}\nlisteners:\n"
                          "  l0: &L\n    listen: 127.0.0.1:1000\n    upstream: u\n"
                          "    allow: [&a 10.0.0.0/8");
    for (int i = 0; i < ENTRIES_N; i++)
        n += (size_t)snprintf(text + n, cap - n, ", *a");
    n += (size_t)snprintf(text + n, cap - n, "]\n");
    for (int i = 1; i < LISTENERS_N; i++)
        n += (size_t)snprintf(text + n, cap - n, "  l%d: *L\n", i);
    ck_assert_uint_lt(n, cap);

    struct sp_config *cfg = UNTOUCHED;
    struct sp_config_error err;
    struct timespec t0, t1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    int rc = sp_config_load_string("mem", text, n, &cfg, &err);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    free(text);
    ck_assert_int_eq(rc, -EINVAL);
    ck_assert_ptr_eq(cfg, UNTOUCHED);
    ck_assert_msg(strncmp(err.text, "mem:7:28: YAML alias '*a' is not supported", 42) == 0, "%s",
                  err.text);
    /* parsing 52 KB twice takes milliseconds of CPU, even under ASan; expanding took seconds */
    ck_assert_msg(took < 2.0, "refusing took %.2f s of CPU", took);
}
END_TEST

static double load_seconds(const char *text, size_t n, int *rc, struct sp_config_error *err)
{
    struct sp_config *cfg = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    *rc = sp_config_load_string("mem", text, n, &cfg, err);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
    sp_config_free(cfg);
    return (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
}

/* Duplicate servers, names and listen addresses were found by comparing every pair: 60,000
 * servers (1.9 MB) took 22 s to load, 30,000 listeners 13 s, and the 16 MiB cap allowed half an
 * hour. Sorted, 80,000 listeners and 80,000 servers (6.6 MB) take 1.7 s of CPU in a Release
 * build and 5.5 s under ASan; the old code needed 61 s of CPU (Release). CPU time, so a
 * busy machine does not count. The duplicate is still reported where it is written. */
START_TEST(long_lists)
{
    enum { N = 80000 };
    size_t cap = (size_t)N * 96 + 256, n = 0;
    char *text = malloc(cap);
    struct sp_config_error err;
    int rc;
    ck_assert_ptr_nonnull(text);

    n += (size_t)snprintf(text + n, cap - n, "listeners:\n");
    for (int i = 0; i < N; i++)
        n += (size_t)snprintf(text + n, cap - n, "  l%d: {listen: 127.%d.%d.%d:80, upstream: u}\n",
                              i, i >> 16, (i >> 8) & 255, i & 255);
    n += (size_t)snprintf(text + n, cap - n, "upstreams:\n  u:\n    servers:\n");
    for (int i = 0; i < N; i++)
        n += (size_t)snprintf(text + n, cap - n, "      - address: 10.%d.%d.%d:80\n", i >> 16,
                              (i >> 8) & 255, i & 255);
    ck_assert_uint_lt(n, cap);
    double took = load_seconds(text, n, &rc, &err);
    ck_assert_msg(rc == 0, "%s", err.text);
    ck_assert_msg(took < 15.0, "%d listeners and servers took %.2f s of CPU", N, took);

    /* the last server repeats the first: reported at the last line, naming the first's */
    n += (size_t)snprintf(text + n, cap - n, "      - address: 10.0.0.0:80\n");
    took = load_seconds(text, n, &rc, &err);
    ck_assert_int_eq(rc, -EINVAL);
    char want[160];
    snprintf(want, sizeof(want),
             "mem:%d:18: duplicate server '10.0.0.0:80' in upstream 'u' (first at line %d)",
             2 * N + 5, N + 5);
    ck_assert_str_eq(err.text, want);
    ck_assert_msg(took < 15.0, "took %.2f s of CPU", took);
    free(text);
}
END_TEST

/* An anchor that is never used is harmless, and stays accepted. */
START_TEST(anchor_unused)
{
    static const char text[] = "workers: &w 2\n" LISTENERS UPSTREAMS;
    struct sp_config *cfg = NULL;
    ck_assert_int_eq(sp_config_load_string("mem", text, strlen(text), &cfg, NULL), 0);
    ck_assert_uint_eq(cfg->workers, 2);
    sp_config_free(cfg);
}
END_TEST

START_TEST(load_string_ok)
{
    static const char text[] = "log_level: WARNING\npipe_memory_max: 4m\n" LISTENERS UPSTREAMS;
    struct sp_config *cfg = NULL;

    /* err may be NULL when the caller does not want the text */
    ck_assert_int_eq(sp_config_load_string("inline", text, strlen(text), &cfg, NULL), 0);
    ck_assert_str_eq(cfg->path, "inline");
    ck_assert_int_eq(cfg->log_level, SP_LOG_WARN);
    ck_assert_uint_eq(cfg->pipe_memory_max, 4 << 20);
    ck_assert_str_eq(cfg->listeners[0].name, "web");
    sp_config_free(cfg);
    sp_config_free(NULL);
}
END_TEST

/* Trusting every peer with a PROXY header has to be written out, and then it means everyone. */
START_TEST(proxy_from_everyone)
{
    static const char text[] =
        LISTENERS "    accept_proxy_protocol: true\n"
                  "    proxy_protocol_from: [\"0.0.0.0/0\", \"::/0\"]\n" UPSTREAMS;
    struct sp_config *cfg = NULL;
    struct sp_config_error err;

    int rc = sp_config_load_string("inline", text, strlen(text), &cfg, &err);
    ck_assert_msg(rc == 0, "%s", err.text);
    const struct sp_listener_conf *l = &cfg->listeners[0];
    ck_assert(l->accept_proxy_protocol);
    ck_assert(sp_cidr_match(&l->proxy_from, addr_of("203.0.113.9")));
    ck_assert(sp_cidr_match(&l->proxy_from, addr_of("::ffff:127.0.0.1")));
    ck_assert(sp_cidr_match(&l->proxy_from, addr_of("2001:db8::1")));
    sp_config_free(cfg);
}
END_TEST

START_TEST(good_access_log)
{
    char text[512];
    struct sp_config *cfg = NULL;

    snprintf(text, sizeof(text), "%s" LISTENERS UPSTREAMS, access_logs[_i].text);
    ck_assert_int_eq(sp_config_load_string("mem", text, strlen(text), &cfg, NULL), 0);
    ck_assert(cfg->access_log.enabled == access_logs[_i].enabled);
    if (access_logs[_i].path == NULL)
        ck_assert_ptr_null(cfg->access_log.path);
    else
        ck_assert_str_eq(cfg->access_log.path, access_logs[_i].path);
    ck_assert_int_eq(cfg->access_log.format, access_logs[_i].format);
    ck_assert(!cfg->admin.enabled);
    sp_config_free(cfg);
}
END_TEST

START_TEST(unreadable)
{
    char path[1024], want[1200];
    struct sp_config *cfg = UNTOUCHED;
    struct sp_config_error err;

    fixture(path, sizeof(path), "config/bad/does-not-exist.yaml");
    ck_assert_int_eq(sp_config_load(path, &cfg, &err), -ENOENT);
    snprintf(want, sizeof(want), "%s: cannot read: %s", path, strerror(ENOENT));
    ck_assert_str_eq(err.text, want);

    fixture(path, sizeof(path), "config/bad");
    ck_assert_int_eq(sp_config_load(path, &cfg, &err), -EISDIR);
    snprintf(want, sizeof(want), "%s: cannot read: %s", path, strerror(EISDIR));
    ck_assert_str_eq(err.text, want);
    ck_assert_ptr_eq(cfg, UNTOUCHED);
}
END_TEST

START_TEST(names)
{
    ck_assert_str_eq(sp_balance_name(SP_BALANCE_ROUND_ROBIN), "round_robin");
    ck_assert_str_eq(sp_balance_name(SP_BALANCE_LEAST_CONN), "least_conn");
    ck_assert_str_eq(sp_balance_name(SP_BALANCE_SOURCE_HASH), "source_hash");
    ck_assert_str_eq(sp_balance_name(SP_BALANCE_RANDOM_TWO), "random_two");
    ck_assert_str_eq(sp_balance_name(SP_BALANCE_COUNT), "unknown");
    ck_assert_str_eq(sp_relay_mode_name(SP_RELAY_SPLICE), "splice");
    ck_assert_str_eq(sp_relay_mode_name(SP_RELAY_COPY), "copy");
    ck_assert_str_eq(sp_relay_mode_name(SP_RELAY_MODE_COUNT), "unknown");
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *good = tcase_create("good");
    tcase_add_test(good, good_full);
    tcase_add_test(good, good_minimal_defaults);
    tcase_add_test(good, good_relay_inherit);
    tcase_add_test(good, good_binary_check);
    tcase_add_test(good, shipped_examples);
    tcase_add_test(good, load_string_ok);
    tcase_add_test(good, names);
    tcase_add_test(good, good_admin_v6);
    tcase_add_test(good, good_deploy);
    tcase_add_test(good, proxy_from_everyone);
    tcase_add_test(good, anchor_unused);
    tcase_add_loop_test(good, good_access_log, 0, SP_ARRAY_LEN(access_logs));
    suite_add_tcase(s, good);

    TCase *bad = tcase_create("bad");
    tcase_add_loop_test(bad, bad_file, 0, SP_ARRAY_LEN(bad_files));
    tcase_add_loop_test(bad, bad_string, 0, SP_ARRAY_LEN(bad_strings));
    tcase_add_test(bad, unreadable);
    tcase_add_test(bad, alias_expansion);
    tcase_add_test(bad, long_lists);
    suite_add_tcase(s, bad);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
