/* test_metrics.c: the Prometheus text and /status JSON of a hand-built snapshot, line for
 * line; label and JSON escaping; one HELP and one TYPE per family; JSON that parses.
 * `test_unit_metrics --dump` prints a rendering for `promtool check metrics` (see
 * tests/CMakeLists.txt). */
#include "common.h"
#include "metrics.h"

#include <check.h>
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* No ck_assert here: --dump runs these outside a test runner. */
static char *dup_str(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        abort();
    return p;
}

/* One listener, one upstream with an up server and a drained, down backup. */
static struct sp_stats *sample_stats(const char *listener, const char *server)
{
    struct sp_stats *st = calloc(1, sizeof(*st));
    if (st == NULL)
        abort();
    st->nlisteners = 1;
    st->listeners = calloc(1, sizeof(*st->listeners));
    st->listeners[0] = (struct sp_stats_listener){.name = dup_str(listener),
                                                  .listen = dup_str("127.0.0.1:8080"),
                                                  .upstream = dup_str("pool"),
                                                  .active = 3,
                                                  .connections = 10,
                                                  .rejected = 3,
                                                  .denied = 4,
                                                  .malformed = 5,
                                                  .untrusted = 6,
                                                  .bytes_up = 100,
                                                  .bytes_down = 2000,
                                                  .over_max = 1,
                                                  .fd_exhausted = 2,
                                                  .over_src_conn = 10,
                                                  .over_src_rate = 11,
                                                  .limits = true,
                                                  .per_source_connections = 100,
                                                  .rate = 50,
                                                  .source_prefix_v4 = 24,
                                                  .source_prefix_v6 = 64,
                                                  .tracked_max = 65536,
                                                  .tracked = 13,
                                                  .src_untracked = 12};
    st->nupstreams = 1;
    st->upstreams = calloc(1, sizeof(*st->upstreams));
    st->upstreams[0] = (struct sp_stats_upstream){
        dup_str("pool"), "round_robin", 2, "http", true, true, "shutdown", 5000};
    st->nservers = 2;
    st->servers = calloc(2, sizeof(*st->servers));
    st->servers[0] = (struct sp_stats_server){dup_str("pool"),
                                              dup_str("127.0.0.1:9001"),
                                              true,
                                              true,
                                              false,
                                              false,
                                              1,
                                              2,
                                              7,
                                              0,
                                              1,
                                              true,
                                              204,
                                              6,
                                              true,
                                              300,
                                              4000,
                                              true,
                                              1200,
                                              1700000099,
                                              8};
    st->servers[1] = (struct sp_stats_server){dup_str("pool"),
                                              dup_str(server),
                                              false,
                                              false,
                                              true,
                                              true,
                                              3,
                                              0,
                                              3,
                                              4,
                                              -ECONNREFUSED,
                                              true,
                                              0,
                                              0,
                                              false,
                                              0,
                                              0,
                                              false,
                                              0,
                                              0,
                                              0};
    st->splice_bytes = 5000;
    st->copy_bytes = 60;
    st->copy_fallbacks = 1;
    st->pipes_idle = 4;
    st->pipes_in_use = 6;
    st->pipes_created = 10;
    st->pipes_shrunk = 2;
    st->pipes_over_budget = 3;
    st->access_log_dropped = 9;
    st->pipe_memory = 7 << 20;
    st->pipe_memory_limit = 64 << 20;
    st->version = "0.1.0";
    st->workers = 2;
    st->per_worker = calloc(2, sizeof(*st->per_worker));
    st->per_worker[0] = (struct sp_stats_worker){.connections = 6, .active = 2};
    st->per_worker[1] = (struct sp_stats_worker){.connections = 4, .active = 1};
    st->start_time_unix = 1700000000;
    st->config_generation = 3;
    st->reloads_ok = 2;
    st->reloads_failed = 1;
    st->last_reload_error = dup_str("cfg.yaml:3:5: unknown key \"x\"\tcaf\xc3\xa9 \xff");
    st->last_reload_unix = 1700000100;
    st->pid = 4242;
    st->control_socket = dup_str("/run/splicer/control.sock");
    st->takeovers_ok = 1;
    st->takeovers_failed = 2;
    st->inherited_systemd = 3;
    st->inherited_takeover = 4;
    st->took_over_from = 4141;
    return st;
}

static const char want_prom[] =
    "# HELP splicer_build_info Build information as labels; the value is always 1.\n"
    "# TYPE splicer_build_info gauge\n"
    "splicer_build_info{version=\"0.1.0\"} 1\n"
    "# HELP splicer_start_time_seconds Start time of the process since the Unix epoch in seconds.\n"
    "# TYPE splicer_start_time_seconds gauge\n"
    "splicer_start_time_seconds 1700000000\n"
    "# HELP splicer_workers Worker threads relaying connections.\n"
    "# TYPE splicer_workers gauge\n"
    "splicer_workers 2\n"
    "# HELP splicer_draining 1 once a shutdown signal was received and open connections are "
    "draining, else 0.\n"
    "# TYPE splicer_draining gauge\n"
    "splicer_draining 0\n"
    "# HELP splicer_config_generation Generation of the running configuration: 1 at start, plus 1 "
    "per successful reload.\n"
    "# TYPE splicer_config_generation gauge\n"
    "splicer_config_generation 3\n"
    "# HELP splicer_config_reloads_total Configuration reloads attempted, by result.\n"
    "# TYPE splicer_config_reloads_total counter\n"
    "splicer_config_reloads_total{result=\"success\"} 2\n"
    "splicer_config_reloads_total{result=\"failure\"} 1\n"
    "# HELP splicer_config_last_reload_success 1 when the last reload succeeded or none was "
    "attempted, 0 when it failed.\n"
    "# TYPE splicer_config_last_reload_success gauge\n"
    "splicer_config_last_reload_success 0\n"
    "# HELP splicer_config_last_reload_timestamp_seconds Time of the last reload attempt since the "
    "Unix epoch in seconds; 0 when none.\n"
    "# TYPE splicer_config_last_reload_timestamp_seconds gauge\n"
    "splicer_config_last_reload_timestamp_seconds 1700000100\n"
    "# HELP splicer_inherited_sockets Listening sockets this process started with instead of "
    "binding them, by source: systemd socket activation, or the process it took over from.\n"
    "# TYPE splicer_inherited_sockets gauge\n"
    "splicer_inherited_sockets{source=\"systemd\"} 3\n"
    "splicer_inherited_sockets{source=\"takeover\"} 4\n"
    "# HELP splicer_takeovers_total Binary upgrades asked of this process on its control_socket, "
    "by result: handed_over, or failed (refused, timed out, or abandoned by the new process).\n"
    "# TYPE splicer_takeovers_total counter\n"
    "splicer_takeovers_total{result=\"handed_over\"} 1\n"
    "splicer_takeovers_total{result=\"failed\"} 2\n"
    "# HELP splicer_listener_connections_total Client connections accepted and served by the "
    "listener.\n"
    "# TYPE splicer_listener_connections_total counter\n"
    "splicer_listener_connections_total{listener=\"web\"} 10\n"
    "# HELP splicer_listener_active_connections Client connections open now on the listener.\n"
    "# TYPE splicer_listener_active_connections gauge\n"
    "splicer_listener_active_connections{listener=\"web\"} 3\n"
    "# HELP splicer_listener_rejected_total Client connections closed at once: over "
    "max_connections or out of file descriptors.\n"
    "# TYPE splicer_listener_rejected_total counter\n"
    "splicer_listener_rejected_total{listener=\"web\"} 3\n"
    "# HELP splicer_listener_denied_total Client connections refused by the listener's "
    "allow/deny rules.\n"
    "# TYPE splicer_listener_denied_total counter\n"
    "splicer_listener_denied_total{listener=\"web\"} 4\n"
    "# HELP splicer_listener_malformed_total Client connections closed for a malformed PROXY "
    "header or TLS ClientHello.\n"
    "# TYPE splicer_listener_malformed_total counter\n"
    "splicer_listener_malformed_total{listener=\"web\"} 5\n"
    "# HELP splicer_listener_untrusted_proxy_total Client connections closed unread: a PROXY "
    "header is expected and the peer is not in proxy_protocol_from.\n"
    "# TYPE splicer_listener_untrusted_proxy_total counter\n"
    "splicer_listener_untrusted_proxy_total{listener=\"web\"} 6\n"
    "# HELP splicer_rejected_connections_total Client connections closed at once, before any "
    "server was contacted, by reason.\n"
    "# TYPE splicer_rejected_connections_total counter\n"
    "splicer_rejected_connections_total{listener=\"web\",reason=\"max_connections\"} 1\n"
    "splicer_rejected_connections_total{listener=\"web\",reason=\"fd_exhausted\"} 2\n"
    "splicer_rejected_connections_total{listener=\"web\",reason=\"denied\"} 4\n"
    "splicer_rejected_connections_total{listener=\"web\",reason=\"untrusted_proxy\"} 6\n"
    "splicer_rejected_connections_total{listener=\"web\",reason=\"bad_header\"} 5\n"
    "splicer_rejected_connections_total{listener=\"web\",reason=\"per_source_connections\"} 10\n"
    "splicer_rejected_connections_total{listener=\"web\",reason=\"per_source_rate\"} 11\n"
    "# HELP splicer_limits_untracked_total Client connections admitted without per-source limits: "
    "the listener's table had no room for their client.\n"
    "# TYPE splicer_limits_untracked_total counter\n"
    "splicer_limits_untracked_total{listener=\"web\"} 12\n"
    "# HELP splicer_limits_tracked_sources Clients in the listener's per-source table now: with an "
    "open connection or a bucket still refilling (0 without limits).\n"
    "# TYPE splicer_limits_tracked_sources gauge\n"
    "splicer_limits_tracked_sources{listener=\"web\"} 13\n"
    "# HELP splicer_bytes_total Bytes relayed for the listener's clients; upstream is client to "
    "server, downstream is server to client.\n"
    "# TYPE splicer_bytes_total counter\n"
    "splicer_bytes_total{listener=\"web\",direction=\"upstream\"} 100\n"
    "splicer_bytes_total{listener=\"web\",direction=\"downstream\"} 2000\n"
    "# HELP splicer_upstream_all_down 1 when health checks mark every server of the upstream "
    "down, backups included, else 0.\n"
    "# TYPE splicer_upstream_all_down gauge\n"
    "splicer_upstream_all_down{upstream=\"pool\"} 1\n"
    "# HELP splicer_server_up 1 when active health checks consider the server up (always without "
    "checks), else 0.\n"
    "# TYPE splicer_server_up gauge\n"
    "splicer_server_up{upstream=\"pool\",server=\"127.0.0.1:9001\"} 1\n"
    "splicer_server_up{upstream=\"pool\",server=\"[::1]:9002\"} 0\n"
    "# HELP splicer_server_usable 1 when the server takes new connections now: up, not drained, "
    "not held by passive checks.\n"
    "# TYPE splicer_server_usable gauge\n"
    "splicer_server_usable{upstream=\"pool\",server=\"127.0.0.1:9001\"} 1\n"
    "splicer_server_usable{upstream=\"pool\",server=\"[::1]:9002\"} 0\n"
    "# HELP splicer_server_drained 1 when the server was drained through the admin endpoint, else "
    "0.\n"
    "# TYPE splicer_server_drained gauge\n"
    "splicer_server_drained{upstream=\"pool\",server=\"127.0.0.1:9001\"} 0\n"
    "splicer_server_drained{upstream=\"pool\",server=\"[::1]:9002\"} 1\n"
    "# HELP splicer_server_active_connections Proxied connections open now to the server.\n"
    "# TYPE splicer_server_active_connections gauge\n"
    "splicer_server_active_connections{upstream=\"pool\",server=\"127.0.0.1:9001\"} 2\n"
    "splicer_server_active_connections{upstream=\"pool\",server=\"[::1]:9002\"} 0\n"
    "# HELP splicer_server_connections_total Proxied connections established to the server.\n"
    "# TYPE splicer_server_connections_total counter\n"
    "splicer_server_connections_total{upstream=\"pool\",server=\"127.0.0.1:9001\"} 7\n"
    "splicer_server_connections_total{upstream=\"pool\",server=\"[::1]:9002\"} 3\n"
    "# HELP splicer_server_connect_failures_total Connects to the server that were refused or "
    "timed out.\n"
    "# TYPE splicer_server_connect_failures_total counter\n"
    "splicer_server_connect_failures_total{upstream=\"pool\",server=\"127.0.0.1:9001\"} 0\n"
    "splicer_server_connect_failures_total{upstream=\"pool\",server=\"[::1]:9002\"} 4\n"
    "# HELP splicer_server_flaps_total Up/down changes of the server's health check verdict.\n"
    "# TYPE splicer_server_flaps_total counter\n"
    "splicer_server_flaps_total{upstream=\"pool\",server=\"127.0.0.1:9001\"} 6\n"
    "splicer_server_flaps_total{upstream=\"pool\",server=\"[::1]:9002\"} 0\n"
    "# HELP splicer_server_sessions_shutdown_total Sessions to the server reset by "
    "on_server_down: shutdown after the server was marked down or removed.\n"
    "# TYPE splicer_server_sessions_shutdown_total counter\n"
    "splicer_server_sessions_shutdown_total{upstream=\"pool\",server=\"127.0.0.1:9001\"} 8\n"
    "splicer_server_sessions_shutdown_total{upstream=\"pool\",server=\"[::1]:9002\"} 0\n"
    "# HELP splicer_server_check_http_status Status code of the reply to the server's last HTTP "
    "health check; 0 when it had none.\n"
    "# TYPE splicer_server_check_http_status gauge\n"
    "splicer_server_check_http_status{upstream=\"pool\",server=\"127.0.0.1:9001\"} 204\n"
    "splicer_server_check_http_status{upstream=\"pool\",server=\"[::1]:9002\"} 0\n"
    "# HELP splicer_server_last_check_timestamp_seconds When the server's last active health "
    "check ended, since the Unix epoch in seconds; 0 before the first and without health checks.\n"
    "# TYPE splicer_server_last_check_timestamp_seconds gauge\n"
    "splicer_server_last_check_timestamp_seconds{upstream=\"pool\",server=\"127.0.0.1:9001\"} "
    "1700000099\n"
    "splicer_server_last_check_timestamp_seconds{upstream=\"pool\",server=\"[::1]:9002\"} 0\n"
    "# HELP splicer_server_bytes_total Bytes relayed through the server; upstream is client to "
    "server, downstream is server to client.\n"
    "# TYPE splicer_server_bytes_total counter\n"
    "splicer_server_bytes_total{upstream=\"pool\",server=\"127.0.0.1:9001\",direction="
    "\"upstream\"} 300\n"
    "splicer_server_bytes_total{upstream=\"pool\",server=\"127.0.0.1:9001\",direction="
    "\"downstream\"} 4000\n"
    "splicer_server_bytes_total{upstream=\"pool\",server=\"[::1]:9002\",direction=\"upstream\"} "
    "0\n"
    "splicer_server_bytes_total{upstream=\"pool\",server=\"[::1]:9002\",direction="
    "\"downstream\"} 0\n"
    "# HELP splicer_worker_connections_total Client connections accepted by the worker thread (the "
    "kernel spreads them over the workers' SO_REUSEPORT sockets).\n"
    "# TYPE splicer_worker_connections_total counter\n"
    "splicer_worker_connections_total{worker=\"0\"} 6\n"
    "splicer_worker_connections_total{worker=\"1\"} 4\n"
    "# HELP splicer_worker_active_connections Client connections open now on the worker thread.\n"
    "# TYPE splicer_worker_active_connections gauge\n"
    "splicer_worker_active_connections{worker=\"0\"} 2\n"
    "splicer_worker_active_connections{worker=\"1\"} 1\n"
    "# HELP splicer_splice_bytes_total Bytes moved with splice(2) through pipes, both directions, "
    "all listeners.\n"
    "# TYPE splicer_splice_bytes_total counter\n"
    "splicer_splice_bytes_total 5000\n"
    "# HELP splicer_copy_bytes_total Bytes moved by read and write through user space, both "
    "directions, all listeners.\n"
    "# TYPE splicer_copy_bytes_total counter\n"
    "splicer_copy_bytes_total 60\n"
    "# HELP splicer_copy_fallbacks_total Relay directions moved to copying because splice could "
    "not serve them.\n"
    "# TYPE splicer_copy_fallbacks_total counter\n"
    "splicer_copy_fallbacks_total 1\n"
    "# HELP splicer_pipe_pool_pipes Pipes of the workers' pools, idle or in use by connections.\n"
    "# TYPE splicer_pipe_pool_pipes gauge\n"
    "splicer_pipe_pool_pipes{state=\"idle\"} 4\n"
    "splicer_pipe_pool_pipes{state=\"in_use\"} 6\n"
    "# HELP splicer_pipes_created_total Pipes created with pipe2(2).\n"
    "# TYPE splicer_pipes_created_total counter\n"
    "splicer_pipes_created_total 10\n"
    "# HELP splicer_pipes_shrunk_total Pipes the kernel granted smaller than pipe_size.\n"
    "# TYPE splicer_pipes_shrunk_total counter\n"
    "splicer_pipes_shrunk_total 2\n"
    "# HELP splicer_pipe_failures_total pipe2(2) calls that failed (file descriptor or memory "
    "exhaustion).\n"
    "# TYPE splicer_pipe_failures_total counter\n"
    "splicer_pipe_failures_total 0\n"
    "# HELP splicer_pipe_memory_bytes Capacity of every pipe open now, idle or lent, as the "
    "kernel granted it.\n"
    "# TYPE splicer_pipe_memory_bytes gauge\n"
    "splicer_pipe_memory_bytes 7340032\n"
    "# HELP splicer_pipe_memory_limit_bytes pipe_memory_max: the most pipe capacity the process "
    "creates.\n"
    "# TYPE splicer_pipe_memory_limit_bytes gauge\n"
    "splicer_pipe_memory_limit_bytes 67108864\n"
    "# HELP splicer_pipes_over_budget_total Pipes not created because pipe_memory_max had not one "
    "page left; the direction copies.\n"
    "# TYPE splicer_pipes_over_budget_total counter\n"
    "splicer_pipes_over_budget_total 3\n"
    "# HELP splicer_access_log_dropped_total Buffers of access log lines dropped because the log's "
    "writer was too far behind.\n"
    "# TYPE splicer_access_log_dropped_total counter\n"
    "splicer_access_log_dropped_total 9\n";

START_TEST(prometheus_exact)
{
    struct sp_stats *st = sample_stats("web", "[::1]:9002");
    struct sp_strbuf sb;

    sp_strbuf_init(&sb);
    ck_assert_int_eq(sp_metrics_render(st, &sb), 0);
    ck_assert_str_eq(sb.data, want_prom);
    sp_strbuf_deinit(&sb);
    sp_stats_free(st);
}
END_TEST

START_TEST(prometheus_label_escaping)
{
    struct sp_stats *st = sample_stats("a\\b\"c\nd", "x\"y");
    struct sp_strbuf sb;

    sp_strbuf_init(&sb);
    ck_assert_int_eq(sp_metrics_render(st, &sb), 0);
    ck_assert_ptr_nonnull(strstr(sb.data, "splicer_listener_active_connections{listener="
                                          "\"a\\\\b\\\"c\\nd\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(sb.data, "splicer_bytes_total{listener=\"a\\\\b\\\"c\\nd\","
                                          "direction=\"downstream\"} 2000\n"));
    ck_assert_ptr_nonnull(
        strstr(sb.data, "splicer_server_up{upstream=\"pool\",server=\"x\\\"y\"} 0\n"));
    /* no raw newline inside any sample: every line starts a comment or a metric name */
    for (char *line = sb.data; *line != '\0'; line = strchr(line, '\n') + 1)
        ck_assert_msg(strncmp(line, "# ", 2) == 0 || strncmp(line, "splicer_", 8) == 0,
                      "stray line: %.40s", line);
    sp_strbuf_deinit(&sb);
    sp_stats_free(st);
}
END_TEST

/* The contract names, each of which must be a family with exactly one HELP and one TYPE. */
static const struct {
    const char *name, *type;
} contract[] = {
    {"splicer_server_up", "gauge"},
    {"splicer_server_connections_total", "counter"},
    {"splicer_server_active_connections", "gauge"},
    {"splicer_server_connect_failures_total", "counter"},
    {"splicer_server_check_http_status", "gauge"},
    {"splicer_server_flaps_total", "counter"},
    {"splicer_server_bytes_total", "counter"},
    {"splicer_server_last_check_timestamp_seconds", "gauge"},
    {"splicer_server_sessions_shutdown_total", "counter"},
    {"splicer_upstream_all_down", "gauge"},
    {"splicer_listener_connections_total", "counter"},
    {"splicer_listener_active_connections", "gauge"},
    {"splicer_bytes_total", "counter"},
    {"splicer_splice_bytes_total", "counter"},
    {"splicer_worker_connections_total", "counter"},
    {"splicer_copy_bytes_total", "counter"},
    {"splicer_pipe_pool_pipes", "gauge"},
    {"splicer_config_reloads_total", "counter"},
    {"splicer_build_info", "gauge"},
    {"splicer_listener_rejected_total", "counter"},
    {"splicer_rejected_connections_total", "counter"},
};

static unsigned count_lines(const char *text, const char *line)
{
    unsigned n = 0;
    size_t len = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p += len) {
        if ((p == text || p[-1] == '\n') && (p[len] == '\n' || p[len] == ' '))
            n++;
    }
    return n;
}

START_TEST(help_and_type_once)
{
    struct sp_stats *st = sample_stats("web", "[::1]:9002");
    struct sp_strbuf sb;
    char line[128];

    sp_strbuf_init(&sb);
    ck_assert_int_eq(sp_metrics_render(st, &sb), 0);
    for (size_t i = 0; i < SP_ARRAY_LEN(contract); i++) {
        snprintf(line, sizeof(line), "# HELP %s", contract[i].name);
        ck_assert_uint_eq(count_lines(sb.data, line), 1);
        snprintf(line, sizeof(line), "# TYPE %s %s", contract[i].name, contract[i].type);
        ck_assert_uint_eq(count_lines(sb.data, line), 1);
    }
    /* and every family, not only the contract ones: no TYPE line repeats */
    for (char *p = sb.data; (p = strstr(p, "\n# TYPE ")) != NULL; p++) {
        char *end = strchr(p + 1, '\n');
        snprintf(line, sizeof(line), "%.*s", (int)(end - p - 1), p + 1);
        ck_assert_msg(count_lines(sb.data, line) == 1, "repeated: %s", line);
    }
    sp_strbuf_deinit(&sb);
    sp_stats_free(st);
}
END_TEST

/* ---- a small validating JSON parser (RFC 8259 grammar, no semantics) ------------------- */

static bool json_value(const char **p, int depth);

static void skip_ws(const char **p)
{
    while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r')
        (*p)++;
}

static bool json_string(const char **p)
{
    if (*(*p)++ != '"')
        return false;
    for (;;) {
        unsigned char c = (unsigned char)*(*p)++;
        if (c == '"')
            return true;
        if (c < 0x20)
            return false; /* also the NUL at the end */
        if (c != '\\')
            continue;
        c = (unsigned char)*(*p)++;
        if (c == 'u') {
            for (int i = 0; i < 4; i++)
                if (!isxdigit((unsigned char)*(*p)++))
                    return false;
        } else if (strchr("\"\\/bfnrt", c) == NULL || c == '\0') {
            return false;
        }
    }
}

static bool json_number(const char **p)
{
    const char *s = *p;
    if (**p == '-')
        (*p)++;
    if (!isdigit((unsigned char)**p))
        return false;
    if (**p == '0' && isdigit((unsigned char)(*p)[1]))
        return false;
    while (isdigit((unsigned char)**p))
        (*p)++;
    return *p > s; /* integers are all the renderer writes */
}

static bool json_members(const char **p, int depth, bool object)
{
    char close = object ? '}' : ']';
    (*p)++;
    skip_ws(p);
    if (**p == close) {
        (*p)++;
        return true;
    }
    for (;;) {
        skip_ws(p);
        if (object) {
            if (!json_string(p))
                return false;
            skip_ws(p);
            if (*(*p)++ != ':')
                return false;
        }
        if (!json_value(p, depth + 1))
            return false;
        skip_ws(p);
        char c = *(*p)++;
        if (c == close)
            return true;
        if (c != ',')
            return false;
    }
}

static bool json_value(const char **p, int depth)
{
    skip_ws(p);
    if (depth > 32)
        return false;
    switch (**p) {
    case '{':
        return json_members(p, depth, true);
    case '[':
        return json_members(p, depth, false);
    case '"':
        return json_string(p);
    case 't':
        return strncmp(*p, "true", 4) == 0 ? (*p += 4, true) : false;
    case 'f':
        return strncmp(*p, "false", 5) == 0 ? (*p += 5, true) : false;
    case 'n':
        return strncmp(*p, "null", 4) == 0 ? (*p += 4, true) : false;
    default:
        return json_number(p);
    }
}

static bool json_valid(const char *text)
{
    const char *p = text;
    if (!json_value(&p, 0))
        return false;
    skip_ws(&p);
    return *p == '\0';
}

START_TEST(json_validator_self_test)
{
    ck_assert(json_valid("{\"a\":[1,-2,true,false,null,\"x\\u00e9\\n\"],\"b\":{}}\n"));
    ck_assert(!json_valid("{\"a\":1,}"));
    ck_assert(!json_valid("{\"a\" 1}"));
    ck_assert(!json_valid("\"raw\nnewline\""));
    ck_assert(!json_valid("[01]"));
    ck_assert(!json_valid("{} {}"));
    ck_assert(!json_valid("\"\\x\""));
}
END_TEST

static const char want_status[] =
    "{\"process\":{\"version\":\"0.1.0\",\"workers\":2,\"draining\":false,\"start_time\":"
    "1700000000,\"config_generation\":3,\"reloads_ok\":2,\"reloads_failed\":1,\"last_reload_ok\":"
    "false,\"last_reload_time\":1700000100,\"last_reload_error\":\"cfg.yaml:3:5: unknown key "
    "\\\"x\\\"\\tcaf\xc3\xa9 "
    "\\ufffd\",\"access_log_dropped\":9,\"pid\":4242,\"control_socket\":\"/run/splicer/"
    "control.sock\",\"inherited_sockets\":{\"systemd\":3,\"takeover\":4},\"took_over_from\":"
    "4141,\"takeovers_ok\":1,\"takeovers_failed\":2},\"relay\":{\"splice_bytes\":5000,\"copy_"
    "bytes\":60,\"copy_"
    "fallbacks\":1,\"pipes_"
    "idle\":4,\"pipes_in_use\":6,\"pipes_created\":10,\"pipes_shrunk\":2,\"pipe_failures\":0,"
    "\"pipes_over_budget\":3,\"pipe_memory\":7340032,\"pipe_memory_limit\":67108864},"
    "\"workers\":[{\"worker\":0,\"connections\":6,\"active\":2},{\"worker\":1,"
    "\"connections\":4,\"active\":1}],"
    "\"listeners\":[{\"name\":\"web\",\"listen\":\"127.0.0.1:8080\",\"upstream\":\"pool\","
    "\"active\":3,\"connections\":10,\"rejected\":3,\"denied\":4,\"malformed\":5,"
    "\"untrusted_proxy\":6,\"bytes_upstream\":100,\"bytes_downstream\":2000,"
    "\"refused\":{\"max_connections\":1,\"fd_exhausted\":2,\"denied\":4,\"untrusted_proxy\":6,"
    "\"bad_header\":5,\"per_source_connections\":10,\"per_source_rate\":11},"
    "\"limits\":{\"per_source_connections\":100,\"per_source_rate\":\"50/s\","
    "\"source_prefix_v4\":24,\"source_prefix_v6\":64,\"tracked_sources\":65536,\"sources\":13,"
    "\"untracked\":12}}],\"upstreams\":[{\"name\":\"pool\",\"balance\":\"round_robin\",\"health_"
    "check\":\"http\",\"all_down\":true,\"all_down_policy\":\"fail_open\","
    "\"on_server_down\":\"shutdown\",\"shutdown_spread_ms\":5000,\"servers\":"
    "["
    "{"
    "\"address\":\"127.0.0.1:9001\",\"state\":\"up\",\"usable\":true,\"drained\":false,\"weight\":"
    "1,\"backup\":false,\"active\":2,\"connections\":7,\"connect_failures\":0,"
    "\"bytes_upstream\":300,\"bytes_downstream\":4000,\"health_checked\":"
    "true,\"last_check\":\"ok\",\"last_check_http_status\":204,\"last_check_age_ms\":1200,"
    "\"flaps\":6,\"flap_held\":true,\"sessions_shutdown\":8},{"
    "\"address\":\"[::1]:9002\","
    "\"state\":\"down\",\"usable\":false,"
    "\"drained\":true,\"weight\":3,\"backup\":true,\"active\":0,\"connections\":3,\"connect_"
    "failures\":4,\"bytes_upstream\":0,\"bytes_downstream\":0,\"health_checked\":true,"
    "\"last_check\":\"Connection "
    "refused\",\"last_check_http_status\":null,\"last_check_age_ms\":null,\"flaps\":0,"
    "\"flap_held\":false,\"sessions_shutdown\":0}]}]}\n";

START_TEST(status_exact_and_valid)
{
    struct sp_stats *st = sample_stats("web", "[::1]:9002");
    struct sp_strbuf sb;

    sp_strbuf_init(&sb);
    ck_assert_int_eq(sp_metrics_render_status(st, &sb), 0);
    ck_assert_str_eq(sb.data, want_status);
    ck_assert(json_valid(sb.data));
    sp_strbuf_deinit(&sb);
    sp_stats_free(st);
}
END_TEST

/* A listener without limits, and limits with only a rate per minute. */
START_TEST(status_limits_variants)
{
    struct sp_stats *st = sample_stats("web", "[::1]:9002");
    struct sp_strbuf sb;

    sp_strbuf_init(&sb);
    st->listeners[0].per_source_connections = 0;
    st->listeners[0].rate = 600;
    st->listeners[0].rate_per_minute = true;
    ck_assert_int_eq(sp_metrics_render_status(st, &sb), 0);
    ck_assert(json_valid(sb.data));
    ck_assert_ptr_nonnull(strstr(
        sb.data, "\"limits\":{\"per_source_connections\":null,\"per_source_rate\":\"600/m\","));
    sp_strbuf_reset(&sb);
    st->listeners[0].limits = false;
    ck_assert_int_eq(sp_metrics_render_status(st, &sb), 0);
    ck_assert(json_valid(sb.data));
    ck_assert_ptr_nonnull(strstr(sb.data, "\"limits\":null}"));
    sp_strbuf_deinit(&sb);
    sp_stats_free(st);
}
END_TEST

START_TEST(status_escaping)
{
    /* quotes, backslashes, every control byte, a truncated UTF-8 sequence, an overlong form
     * and a surrogate: the document must still parse, with U+FFFD for the bad bytes */
    struct sp_stats *st = sample_stats("q\"b\\s\x01\x1f\n", "c\xe2\x82 o\xc0\xaf s\xed\xa0\x80");
    struct sp_strbuf sb;

    free(st->last_reload_error);
    st->last_reload_error = NULL;
    sp_strbuf_init(&sb);
    ck_assert_int_eq(sp_metrics_render_status(st, &sb), 0);
    ck_assert(json_valid(sb.data));
    ck_assert_ptr_nonnull(strstr(sb.data, "\"name\":\"q\\\"b\\\\s\\u0001\\u001f\\n\""));
    ck_assert_ptr_nonnull(
        strstr(sb.data, "\"address\":\"c\\ufffd\\ufffd o\\ufffd\\ufffd s\\ufffd\\ufffd\\ufffd\""));
    ck_assert_ptr_nonnull(strstr(sb.data, "\"last_reload_error\":null"));
    sp_strbuf_deinit(&sb);
    sp_stats_free(st);
}
END_TEST

START_TEST(empty_snapshot)
{
    struct sp_stats *st = calloc(1, sizeof(*st));
    struct sp_strbuf sb;

    st->version = "0.1.0";
    sp_strbuf_init(&sb);
    ck_assert_int_eq(sp_metrics_render_status(st, &sb), 0);
    ck_assert(json_valid(sb.data));
    ck_assert_ptr_nonnull(strstr(sb.data, "\"listeners\":[],\"upstreams\":[]}"));
    sp_strbuf_reset(&sb);
    ck_assert_int_eq(sp_metrics_render(st, &sb), 0);
    ck_assert_uint_eq(count_lines(sb.data, "# TYPE splicer_server_up gauge"), 1);
    sp_strbuf_deinit(&sb);
    sp_stats_free(st);
    sp_stats_free(NULL);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("prometheus");
    tcase_add_test(tc, prometheus_exact);
    tcase_add_test(tc, prometheus_label_escaping);
    tcase_add_test(tc, help_and_type_once);
    suite_add_tcase(s, tc);
    tc = tcase_create("status");
    tcase_add_test(tc, json_validator_self_test);
    tcase_add_test(tc, status_exact_and_valid);
    tcase_add_test(tc, status_limits_variants);
    tcase_add_test(tc, status_escaping);
    tcase_add_test(tc, empty_snapshot);
    suite_add_tcase(s, tc);
    return s;
}

/* Prints the sample rendering, with awkward label values, for promtool. */
static int dump(void)
{
    struct sp_stats *st = sample_stats("we\"b\\1\n", "[::1]:9002");
    struct sp_strbuf sb;

    sp_strbuf_init(&sb);
    int rc = sp_metrics_render(st, &sb);
    if (rc == 0)
        fputs(sb.data, stdout);
    sp_strbuf_deinit(&sb);
    sp_stats_free(st);
    return rc == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--dump") == 0)
        return dump();
    SRunner *sr = srunner_create(metrics_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
