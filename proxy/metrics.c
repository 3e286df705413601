/* metrics.c: the Prometheus text and the /status JSON of one sp_stats snapshot, and
 * sp_stats_free. Every family's name, type and help text lives in the METRICS list below, in
 * exposition order; the metric names are a contract with dashboards: never rename one. */
#include "metrics.h"
#include "upstream.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How a family's samples are produced. */
enum scope {
    PROCESS,  /* one unlabelled sample, from the stats */
    LISTENER, /* one sample per listener: {listener} */
    UPSTREAM, /* one sample per upstream: {upstream} */
    SERVER,   /* one sample per server: {upstream,server} */
    WORKER,   /* one sample per worker thread: {worker} */
    SPECIAL,  /* fixed label sets, written by special_samples() */
};

/* X(id, scope, type, name, help) */
#define METRICS(X)                                                                                 \
    X(BUILD_INFO, SPECIAL, "gauge", "splicer_build_info",                                          \
      "Build information as labels; the value is always 1.")                                       \
    X(START_TIME, PROCESS, "gauge", "splicer_start_time_seconds",                                  \
      "Start time of the process since the Unix epoch in seconds.")                                \
    X(WORKERS, PROCESS, "gauge", "splicer_workers", "Worker threads relaying connections.")        \
    X(DRAINING, PROCESS, "gauge", "splicer_draining",                                              \
      "1 once a shutdown signal was received and open connections are draining, else 0.")          \
    X(CONFIG_GENERATION, PROCESS, "gauge", "splicer_config_generation",                            \
      "Generation of the running configuration: 1 at start, plus 1 per successful reload.")        \
    X(RELOADS, SPECIAL, "counter", "splicer_config_reloads_total",                                 \
      "Configuration reloads attempted, by result.")                                               \
    X(LAST_RELOAD_OK, PROCESS, "gauge", "splicer_config_last_reload_success",                      \
      "1 when the last reload succeeded or none was attempted, 0 when it failed.")                 \
    X(LAST_RELOAD_TIME, PROCESS, "gauge", "splicer_config_last_reload_timestamp_seconds",          \
      "Time of the last reload attempt since the Unix epoch in seconds; 0 when none.")             \
    X(INHERITED, SPECIAL, "gauge", "splicer_inherited_sockets",                                    \
      "Listening sockets this process started with instead of binding them, by source: systemd "   \
      "socket activation, or the process it took over from.")                                      \
    X(TAKEOVERS, SPECIAL, "counter", "splicer_takeovers_total",                                    \
      "Binary upgrades asked of this process on its control_socket, by result: handed_over, or "   \
      "failed (refused, timed out, or abandoned by the new process).")                             \
    X(L_CONNECTIONS, LISTENER, "counter", "splicer_listener_connections_total",                    \
      "Client connections accepted and served by the listener.")                                   \
    X(L_ACTIVE, LISTENER, "gauge", "splicer_listener_active_connections",                          \
      "Client connections open now on the listener.")                                              \
    X(L_REJECTED, LISTENER, "counter", "splicer_listener_rejected_total",                          \
      "Client connections closed at once: over max_connections or out of file descriptors.")       \
    X(L_DENIED, LISTENER, "counter", "splicer_listener_denied_total",                              \
      "Client connections refused by the listener's allow/deny rules.")                            \
    X(L_MALFORMED, LISTENER, "counter", "splicer_listener_malformed_total",                        \
      "Client connections closed for a malformed PROXY header or TLS ClientHello.")                \
    X(L_UNTRUSTED, LISTENER, "counter", "splicer_listener_untrusted_proxy_total",                  \
      "Client connections closed unread: a PROXY header is expected and the peer is not in "       \
      "proxy_protocol_from.")                                                                      \
    X(REFUSED, SPECIAL, "counter", "splicer_rejected_connections_total",                           \
      "Client connections closed at once, before any server was contacted, by reason.")            \
    X(L_UNTRACKED, LISTENER, "counter", "splicer_limits_untracked_total",                          \
      "Client connections admitted without per-source limits: the listener's table had no room "   \
      "for their client.")                                                                         \
    X(L_TRACKED, LISTENER, "gauge", "splicer_limits_tracked_sources",                              \
      "Clients in the listener's per-source table now: with an open connection or a bucket "       \
      "still refilling (0 without limits).")                                                       \
    X(BYTES, SPECIAL, "counter", "splicer_bytes_total",                                            \
      "Bytes relayed for the listener's clients; upstream is client to server, downstream is "     \
      "server to client.")                                                                         \
    X(U_ALL_DOWN, UPSTREAM, "gauge", "splicer_upstream_all_down",                                  \
      "1 when health checks mark every server of the upstream down, backups included, else 0.")    \
    X(S_UP, SERVER, "gauge", "splicer_server_up",                                                  \
      "1 when active health checks consider the server up (always without checks), else 0.")       \
    X(S_USABLE, SERVER, "gauge", "splicer_server_usable",                                          \
      "1 when the server takes new connections now: up, not drained, not held by passive "         \
      "checks.")                                                                                   \
    X(S_DRAINED, SERVER, "gauge", "splicer_server_drained",                                        \
      "1 when the server was drained through the admin endpoint, else 0.")                         \
    X(S_ACTIVE, SERVER, "gauge", "splicer_server_active_connections",                              \
      "Proxied connections open now to the server.")                                               \
    X(S_CONNECTIONS, SERVER, "counter", "splicer_server_connections_total",                        \
      "Proxied connections established to the server.")                                            \
    X(S_CONNECT_FAILURES, SERVER, "counter", "splicer_server_connect_failures_total",              \
      "Connects to the server that were refused or timed out.")                                    \
    X(S_FLAPS, SERVER, "counter", "splicer_server_flaps_total",                                    \
      "Up/down changes of the server's health check verdict.")                                     \
    X(S_SESSIONS_SHUTDOWN, SERVER, "counter", "splicer_server_sessions_shutdown_total",            \
      "Sessions to the server reset by on_server_down: shutdown after the server was marked "      \
      "down or removed.")                                                                          \
    X(S_CHECK_HTTP_STATUS, SERVER, "gauge", "splicer_server_check_http_status",                    \
      "Status code of the reply to the server's last HTTP health check; 0 when it had none.")      \
    X(S_LAST_CHECK_TIME, SERVER, "gauge", "splicer_server_last_check_timestamp_seconds",           \
      "When the server's last active health check ended, since the Unix epoch in seconds; 0 "      \
      "before the first and without health checks.")                                               \
    X(S_BYTES, SPECIAL, "counter", "splicer_server_bytes_total",                                   \
      "Bytes relayed through the server; upstream is client to server, downstream is server to "   \
      "client.")                                                                                   \
    X(W_CONNECTIONS, WORKER, "counter", "splicer_worker_connections_total",                        \
      "Client connections accepted by the worker thread (the kernel spreads them over the "        \
      "workers' SO_REUSEPORT sockets).")                                                           \
    X(W_ACTIVE, WORKER, "gauge", "splicer_worker_active_connections",                              \
      "Client connections open now on the worker thread.")                                         \
    X(SPLICE_BYTES, PROCESS, "counter", "splicer_splice_bytes_total",                              \
      "Bytes moved with splice(2) through pipes, both directions, all listeners.")                 \
    X(COPY_BYTES, PROCESS, "counter", "splicer_copy_bytes_total",                                  \
      "Bytes moved by read and write through user space, both directions, all listeners.")         \
    X(COPY_FALLBACKS, PROCESS, "counter", "splicer_copy_fallbacks_total",                          \
      "Relay directions moved to copying because splice could not serve them.")                    \
    X(PIPES, SPECIAL, "gauge", "splicer_pipe_pool_pipes",                                          \
      "Pipes of the workers' pools, idle or in use by connections.")                               \
    X(PIPES_CREATED, PROCESS, "counter", "splicer_pipes_created_total",                            \
      "Pipes created with pipe2(2).")                                                              \
    X(PIPES_SHRUNK, PROCESS, "counter", "splicer_pipes_shrunk_total",                              \
      "Pipes the kernel granted smaller than pipe_size.")                                          \
    X(PIPE_FAILURES, PROCESS, "counter", "splicer_pipe_failures_total",                            \
      "pipe2(2) calls that failed (file descriptor or memory exhaustion).")                        \
    X(PIPE_MEMORY, PROCESS, "gauge", "splicer_pipe_memory_bytes",                                  \
      "Capacity of every pipe open now, idle or lent, as the kernel granted it.")                  \
    X(PIPE_MEMORY_LIMIT, PROCESS, "gauge", "splicer_pipe_memory_limit_bytes",                      \
      "pipe_memory_max: the most pipe capacity the process creates.")                              \
    X(PIPES_OVER_BUDGET, PROCESS, "counter", "splicer_pipes_over_budget_total",                    \
      "Pipes not created because pipe_memory_max had not one page left; the direction copies.")    \
    X(ACCESS_LOG_DROPPED, PROCESS, "counter", "splicer_access_log_dropped_total",                  \
      "Buffers of access log lines dropped because the log's writer was too far behind.")

enum family_id {
#define X(id, scope, type, name, help) M_##id,
    METRICS(X)
#undef X
        M_COUNT
};

struct family {
    enum scope scope;
    const char *type;
    const char *name;
    const char *help;
};

static const struct family families[M_COUNT] = {
#define X(id, scope, type, name, help) [M_##id] = {scope, type, name, help},
    METRICS(X)
#undef X
};

/* ---- Prometheus ------------------------------------------------------------------------- */

/* Label values escape exactly backslash, double quote and newline (exposition format 0.0.4). */
static int label_value(struct sp_strbuf *sb, const char *s)
{
    int rc = 0;
    if (s == NULL)
        s = "";
    for (const char *run = s;; s++) {
        const char *esc = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;
        if (esc == NULL && *s != '\0')
            continue;
        rc = sp_strbuf_append(sb, run, (size_t)(s - run));
        if (rc != 0 || *s == '\0')
            return rc;
        rc = sp_strbuf_puts(sb, esc);
        if (rc != 0)
            return rc;
        run = s + 1;
    }
}

/* name{k1="v1",k2="v2"} value: the labels come as NULL-terminated key/value pairs. */
static int sample(struct sp_strbuf *sb, const char *name, const char *const *labels, uint64_t value)
{
    int rc = sp_strbuf_puts(sb, name);
    for (size_t i = 0; rc == 0 && labels != NULL && labels[i] != NULL; i += 2) {
        rc = sp_strbuf_appendf(sb, "%s%s=\"", i == 0 ? "{" : ",", labels[i]);
        if (rc == 0)
            rc = label_value(sb, labels[i + 1]);
        if (rc == 0)
            rc = sp_strbuf_puts(sb, "\"");
    }
    if (rc == 0 && labels != NULL && labels[0] != NULL)
        rc = sp_strbuf_puts(sb, "}");
    return rc != 0 ? rc : sp_strbuf_appendf(sb, " %" PRIu64 "\n", value);
}

static uint64_t process_value(enum family_id id, const struct sp_stats *st)
{
    switch (id) {
    case M_START_TIME:
        return st->start_time_unix;
    case M_WORKERS:
        return st->workers;
    case M_DRAINING:
        return st->draining;
    case M_CONFIG_GENERATION:
        return st->config_generation;
    case M_LAST_RELOAD_OK:
        return st->last_reload_ok;
    case M_LAST_RELOAD_TIME:
        return st->last_reload_unix;
    case M_SPLICE_BYTES:
        return st->splice_bytes;
    case M_COPY_BYTES:
        return st->copy_bytes;
    case M_COPY_FALLBACKS:
        return st->copy_fallbacks;
    case M_PIPES_CREATED:
        return st->pipes_created;
    case M_PIPES_SHRUNK:
        return st->pipes_shrunk;
    case M_PIPE_FAILURES:
        return st->pipe_failures;
    case M_PIPE_MEMORY:
        return st->pipe_memory;
    case M_PIPE_MEMORY_LIMIT:
        return st->pipe_memory_limit;
    case M_PIPES_OVER_BUDGET:
        return st->pipes_over_budget;
    case M_ACCESS_LOG_DROPPED:
        return st->access_log_dropped;
    default:
        abort(); /* a PROCESS family without a value: the list and this switch disagree */
    }
}

static uint64_t listener_value(enum family_id id, const struct sp_stats_listener *l)
{
    switch (id) {
    case M_L_CONNECTIONS:
        return l->connections;
    case M_L_ACTIVE:
        return l->active;
    case M_L_REJECTED:
        return l->rejected;
    case M_L_DENIED:
        return l->denied;
    case M_L_MALFORMED:
        return l->malformed;
    case M_L_UNTRUSTED:
        return l->untrusted;
    case M_L_UNTRACKED:
        return l->src_untracked;
    case M_L_TRACKED:
        return l->tracked;
    default:
        abort();
    }
}

static uint64_t server_value(enum family_id id, const struct sp_stats_server *s)
{
    switch (id) {
    case M_S_UP:
        return s->up;
    case M_S_USABLE:
        return s->usable;
    case M_S_DRAINED:
        return s->drained;
    case M_S_ACTIVE:
        return s->active;
    case M_S_CONNECTIONS:
        return s->connections;
    case M_S_CONNECT_FAILURES:
        return s->connect_failures;
    case M_S_FLAPS:
        return s->flaps;
    case M_S_SESSIONS_SHUTDOWN:
        return s->sessions_shutdown;
    case M_S_CHECK_HTTP_STATUS:
        return s->check_http_status;
    case M_S_LAST_CHECK_TIME:
        return s->checked ? s->last_check_unix : 0;
    default:
        abort();
    }
}

/* The reasons of splicer_rejected_connections_total, in exposition order. */
enum refusal {
    R_MAX_CONNECTIONS,
    R_FD_EXHAUSTED,
    R_DENIED,
    R_UNTRUSTED_PROXY,
    R_BAD_HEADER,
    R_SRC_CONN,
    R_SRC_RATE,
    R_COUNT
};

static const char *const refusal_names[R_COUNT] = {
    "max_connections", "fd_exhausted",           "denied",          "untrusted_proxy",
    "bad_header",      "per_source_connections", "per_source_rate",
};

static uint64_t refusal_value(enum refusal r, const struct sp_stats_listener *l)
{
    switch (r) {
    case R_MAX_CONNECTIONS:
        return l->over_max;
    case R_FD_EXHAUSTED:
        return l->fd_exhausted;
    case R_DENIED:
        return l->denied;
    case R_UNTRUSTED_PROXY:
        return l->untrusted;
    case R_BAD_HEADER:
        return l->malformed;
    case R_SRC_CONN:
        return l->over_src_conn;
    case R_SRC_RATE:
        return l->over_src_rate;
    default:
        abort();
    }
}

static int refused_samples(struct sp_strbuf *sb, const char *name, const struct sp_stats *st)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < st->nlisteners; i++) {
        const struct sp_stats_listener *l = &st->listeners[i];
        for (int r = 0; rc == 0 && r < R_COUNT; r++)
            rc = sample(sb, name,
                        (const char *[]){"listener", l->name, "reason", refusal_names[r], NULL},
                        refusal_value((enum refusal)r, l));
    }
    return rc;
}

static int server_bytes_samples(struct sp_strbuf *sb, const char *name, const struct sp_stats *st)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < st->nservers; i++) {
        const struct sp_stats_server *s = &st->servers[i];
        for (int d = 0; rc == 0 && d < 2; d++)
            rc = sample(sb, name,
                        (const char *[]){"upstream", s->upstream, "server", s->address, "direction",
                                         d == 0 ? "upstream" : "downstream", NULL},
                        d == 0 ? s->bytes_up : s->bytes_down);
    }
    return rc;
}

static int special_samples(struct sp_strbuf *sb, enum family_id id, const struct sp_stats *st)
{
    const char *name = families[id].name;
    int rc = 0;

    switch (id) {
    case M_BUILD_INFO:
        return sample(sb, name, (const char *[]){"version", st->version, NULL}, 1);
    case M_RELOADS:
        rc = sample(sb, name, (const char *[]){"result", "success", NULL}, st->reloads_ok);
        return rc != 0 ? rc
                       : sample(sb, name, (const char *[]){"result", "failure", NULL},
                                st->reloads_failed);
    case M_INHERITED:
        rc = sample(sb, name, (const char *[]){"source", "systemd", NULL}, st->inherited_systemd);
        return rc != 0 ? rc
                       : sample(sb, name, (const char *[]){"source", "takeover", NULL},
                                st->inherited_takeover);
    case M_TAKEOVERS:
        rc = sample(sb, name, (const char *[]){"result", "handed_over", NULL}, st->takeovers_ok);
        return rc != 0 ? rc
                       : sample(sb, name, (const char *[]){"result", "failed", NULL},
                                st->takeovers_failed);
    case M_PIPES:
        rc = sample(sb, name, (const char *[]){"state", "idle", NULL}, st->pipes_idle);
        return rc != 0
                   ? rc
                   : sample(sb, name, (const char *[]){"state", "in_use", NULL}, st->pipes_in_use);
    case M_REFUSED:
        return refused_samples(sb, name, st);
    case M_BYTES:
        for (size_t i = 0; rc == 0 && i < st->nlisteners; i++) {
            const struct sp_stats_listener *l = &st->listeners[i];
            rc = sample(sb, name,
                        (const char *[]){"listener", l->name, "direction", "upstream", NULL},
                        l->bytes_up);
            if (rc == 0)
                rc = sample(sb, name,
                            (const char *[]){"listener", l->name, "direction", "downstream", NULL},
                            l->bytes_down);
        }
        return rc;
    case M_S_BYTES:
        return server_bytes_samples(sb, name, st);
    default:
        abort();
    }
}

static int family_samples(struct sp_strbuf *sb, enum family_id id, const struct sp_stats *st)
{
    const struct family *f = &families[id];
    int rc = 0;

    switch (f->scope) {
    case PROCESS:
        return sample(sb, f->name, NULL, process_value(id, st));
    case LISTENER:
        for (size_t i = 0; rc == 0 && i < st->nlisteners; i++) {
            const struct sp_stats_listener *l = &st->listeners[i];
            rc = sample(sb, f->name, (const char *[]){"listener", l->name, NULL},
                        listener_value(id, l));
        }
        return rc;
    case UPSTREAM:
        for (size_t i = 0; rc == 0 && i < st->nupstreams; i++)
            rc = sample(sb, f->name, (const char *[]){"upstream", st->upstreams[i].name, NULL},
                        st->upstreams[i].all_down);
        return rc;
    case SERVER:
        for (size_t i = 0; rc == 0 && i < st->nservers; i++) {
            const struct sp_stats_server *s = &st->servers[i];
            rc = sample(sb, f->name,
                        (const char *[]){"upstream", s->upstream, "server", s->address, NULL},
                        server_value(id, s));
        }
        return rc;
    case WORKER:
        for (unsigned i = 0; rc == 0 && st->per_worker != NULL && i < st->workers; i++) {
            char w[16];
            snprintf(w, sizeof(w), "%u", i);
            const struct sp_stats_worker *ws = &st->per_worker[i];
            rc = sample(sb, f->name, (const char *[]){"worker", w, NULL},
                        id == M_W_CONNECTIONS ? ws->connections : ws->active);
        }
        return rc;
    case SPECIAL:
        return special_samples(sb, id, st);
    }
    abort();
}

int sp_metrics_render(const struct sp_stats *st, struct sp_strbuf *out)
{
    for (int id = 0; id < M_COUNT; id++) {
        const struct family *f = &families[id];
        /* help texts are ours and hold no backslash or newline, so they need no escaping */
        int rc = sp_strbuf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                                   f->type);
        if (rc == 0)
            rc = family_samples(out, (enum family_id)id, st);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- /status JSON ----------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when the bytes there are not one:
 * overlong forms, surrogates and code points above U+10FFFF count as invalid. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
    unsigned cp = c & (0x3fu >> (n - 1));

    if (c < 0xc2 || c > 0xf4)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0; /* also stops at the NUL */
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* The escape for one byte that cannot appear raw in a JSON string, or NULL. */
static const char *json_escape(unsigned char c, char buf[8])
{
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    default:
        if (c >= 0x20)
            return NULL;
        snprintf(buf, 8, "\\u%04x", c);
        return buf;
    }
}

int sp_metrics_json_str(struct sp_strbuf *sb, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    char buf[8];

    if (s == NULL)
        return sp_strbuf_puts(sb, "null");
    int rc = sp_strbuf_puts(sb, "\"");
    while (rc == 0 && *s != '\0') {
        size_t n = *s < 0x80 ? 1 : utf8_len(s);
        const char *esc = n == 0 ? "\\ufffd" : n == 1 ? json_escape(*s, buf) : NULL;
        if (esc != NULL)
            rc = sp_strbuf_puts(sb, esc);
        else
            rc = sp_strbuf_append(sb, s, n);
        s += n == 0 ? 1 : n;
    }
    return rc != 0 ? rc : sp_strbuf_puts(sb, "\"");
}

/* "key":"value" with a leading comma unless first. */
static int json_kstr(struct sp_strbuf *sb, bool first, const char *key, const char *val)
{
    int rc = sp_strbuf_appendf(sb, "%s\"%s\":", first ? "" : ",", key);
    return rc != 0 ? rc : sp_metrics_json_str(sb, val);
}

static const char *json_bool(bool b)
{
    return b ? "true" : "false";
}

static int status_process(struct sp_strbuf *sb, const struct sp_stats *st)
{
    int rc = json_kstr(sb, true, "version", st->version);
    if (rc == 0)
        rc = sp_strbuf_appendf(sb,
                               ",\"workers\":%u,\"draining\":%s,\"start_time\":%" PRIu64
                               ",\"config_generation\":%" PRIu64 ",\"reloads_ok\":%" PRIu64
                               ",\"reloads_failed\":%" PRIu64 ",\"last_reload_ok\":%s"
                               ",\"last_reload_time\":%" PRIu64,
                               st->workers, json_bool(st->draining), st->start_time_unix,
                               st->config_generation, st->reloads_ok, st->reloads_failed,
                               json_bool(st->last_reload_ok), st->last_reload_unix);
    if (rc == 0)
        rc = json_kstr(sb, false, "last_reload_error", st->last_reload_error);
    if (rc == 0)
        rc = sp_strbuf_appendf(sb, ",\"access_log_dropped\":%" PRIu64, st->access_log_dropped);
    if (rc == 0)
        rc = sp_strbuf_appendf(sb, ",\"pid\":%u", st->pid);
    if (rc == 0)
        rc = json_kstr(sb, false, "control_socket", st->control_socket);
    if (rc == 0)
        rc = sp_strbuf_appendf(sb,
                               ",\"inherited_sockets\":{\"systemd\":%u,\"takeover\":%u}"
                               ",\"took_over_from\":%u,\"takeovers_ok\":%" PRIu64
                               ",\"takeovers_failed\":%" PRIu64,
                               st->inherited_systemd, st->inherited_takeover, st->took_over_from,
                               st->takeovers_ok, st->takeovers_failed);
    return rc;
}

static int status_relay(struct sp_strbuf *sb, const struct sp_stats *st)
{
    return sp_strbuf_appendf(
        sb,
        "{\"splice_bytes\":%" PRIu64 ",\"copy_bytes\":%" PRIu64 ",\"copy_fallbacks\":%" PRIu64
        ",\"pipes_idle\":%" PRIu64 ",\"pipes_in_use\":%" PRIu64 ",\"pipes_created\":%" PRIu64
        ",\"pipes_shrunk\":%" PRIu64 ",\"pipe_failures\":%" PRIu64 ",\"pipes_over_budget\":%" PRIu64
        ",\"pipe_memory\":%" PRIu64 ",\"pipe_memory_limit\":%" PRIu64 "}",
        st->splice_bytes, st->copy_bytes, st->copy_fallbacks, st->pipes_idle, st->pipes_in_use,
        st->pipes_created, st->pipes_shrunk, st->pipe_failures, st->pipes_over_budget,
        st->pipe_memory, st->pipe_memory_limit);
}

static int status_workers(struct sp_strbuf *sb, const struct sp_stats *st)
{
    int rc = sp_strbuf_puts(sb, ",\"workers\":[");
    for (unsigned i = 0; rc == 0 && st->per_worker != NULL && i < st->workers; i++)
        rc = sp_strbuf_appendf(
            sb, "%s{\"worker\":%u,\"connections\":%" PRIu64 ",\"active\":%" PRIu64 "}",
            i == 0 ? "" : ",", i, st->per_worker[i].connections, st->per_worker[i].active);
    return rc != 0 ? rc : sp_strbuf_puts(sb, "]");
}

/* "refused": every reason of splicer_rejected_connections_total with its count. */
static int status_refused(struct sp_strbuf *sb, const struct sp_stats_listener *l)
{
    int rc = sp_strbuf_puts(sb, ",\"refused\":{");
    for (int r = 0; rc == 0 && r < R_COUNT; r++)
        rc = sp_strbuf_appendf(sb, "%s\"%s\":%" PRIu64, r == 0 ? "" : ",", refusal_names[r],
                               refusal_value((enum refusal)r, l));
    return rc != 0 ? rc : sp_strbuf_puts(sb, "}");
}

/* "limits": null, or the limits block with the state of the per-source table. */
static int status_limits(struct sp_strbuf *sb, const struct sp_stats_listener *l)
{
    char conn[16] = "null", rate[24] = "null";
    if (!l->limits)
        return sp_strbuf_puts(sb, ",\"limits\":null");
    if (l->per_source_connections != 0)
        snprintf(conn, sizeof(conn), "%u", l->per_source_connections);
    if (l->rate != 0)
        snprintf(rate, sizeof(rate), "\"%u/%s\"", l->rate, l->rate_per_minute ? "m" : "s");
    return sp_strbuf_appendf(sb,
                             ",\"limits\":{\"per_source_connections\":%s,\"per_source_rate\":%s"
                             ",\"source_prefix_v4\":%u,\"source_prefix_v6\":%u"
                             ",\"tracked_sources\":%" PRIu64 ",\"sources\":%" PRIu64
                             ",\"untracked\":%" PRIu64 "}",
                             conn, rate, l->source_prefix_v4, l->source_prefix_v6, l->tracked_max,
                             l->tracked, l->src_untracked);
}

static int status_listener(struct sp_strbuf *sb, const struct sp_stats_listener *l)
{
    int rc = json_kstr(sb, true, "name", l->name);
    if (rc == 0)
        rc = json_kstr(sb, false, "listen", l->listen);
    if (rc == 0)
        rc = json_kstr(sb, false, "upstream", l->upstream);
    if (rc == 0)
        rc = sp_strbuf_appendf(sb,
                               ",\"active\":%" PRIu64 ",\"connections\":%" PRIu64
                               ",\"rejected\":%" PRIu64 ",\"denied\":%" PRIu64
                               ",\"malformed\":%" PRIu64 ",\"untrusted_proxy\":%" PRIu64
                               ",\"bytes_upstream\":%" PRIu64 ",\"bytes_downstream\":%" PRIu64,
                               l->active, l->connections, l->rejected, l->denied, l->malformed,
                               l->untrusted, l->bytes_up, l->bytes_down);
    if (rc == 0)
        rc = status_refused(sb, l);
    if (rc == 0)
        rc = status_limits(sb, l);
    return rc;
}

static int status_server(struct sp_strbuf *sb, const struct sp_stats_server *s)
{
    int rc = json_kstr(sb, true, "address", s->address);
    if (rc == 0)
        rc = sp_strbuf_appendf(sb,
                               ",\"state\":\"%s\",\"usable\":%s,\"drained\":%s,\"weight\":%u"
                               ",\"backup\":%s,\"active\":%" PRIu64 ",\"connections\":%" PRIu64
                               ",\"connect_failures\":%" PRIu64 ",\"bytes_upstream\":%" PRIu64
                               ",\"bytes_downstream\":%" PRIu64 ",\"health_checked\":%s",
                               s->up ? "up" : "down", json_bool(s->usable), json_bool(s->drained),
                               s->weight, json_bool(s->backup), s->active, s->connections,
                               s->connect_failures, s->bytes_up, s->bytes_down,
                               json_bool(s->health_checked));
    char text[32];
    if (rc == 0)
        rc = json_kstr(sb, false, "last_check",
                       sp_check_result_text(s->check_result, text, sizeof(text)));
    if (rc == 0 && s->check_http_status != 0)
        rc = sp_strbuf_appendf(sb, ",\"last_check_http_status\":%u", s->check_http_status);
    else if (rc == 0)
        rc = sp_strbuf_puts(sb, ",\"last_check_http_status\":null");
    if (rc == 0 && s->checked)
        rc = sp_strbuf_appendf(sb, ",\"last_check_age_ms\":%" PRIu64, s->last_check_age_ms);
    else if (rc == 0)
        rc = sp_strbuf_puts(sb, ",\"last_check_age_ms\":null");
    if (rc == 0)
        rc = sp_strbuf_appendf(sb, ",\"flaps\":%" PRIu64 ",\"flap_held\":%s", s->flaps,
                               json_bool(s->flap_held));
    if (rc == 0)
        rc = sp_strbuf_appendf(sb, ",\"sessions_shutdown\":%" PRIu64, s->sessions_shutdown);
    return rc;
}

/* The upstreams with their servers; servers come grouped by upstream in upstream order. */
static int status_upstreams(struct sp_strbuf *sb, const struct sp_stats *st)
{
    size_t k = 0;
    int rc = sp_strbuf_puts(sb, "[");

    for (size_t i = 0; rc == 0 && i < st->nupstreams; i++) {
        const struct sp_stats_upstream *u = &st->upstreams[i];
        rc = sp_strbuf_puts(sb, i == 0 ? "{" : ",{");
        if (rc == 0)
            rc = json_kstr(sb, true, "name", u->name);
        if (rc == 0)
            rc = json_kstr(sb, false, "balance", u->balance);
        if (rc == 0)
            rc = json_kstr(sb, false, "health_check", u->check != NULL ? u->check : "off");
        if (rc == 0)
            rc = sp_strbuf_appendf(sb, ",\"all_down\":%s,\"all_down_policy\":\"%s\"",
                                   json_bool(u->all_down), u->fail_open ? "fail_open" : "reject");
        if (rc == 0)
            rc = sp_strbuf_appendf(sb, ",\"on_server_down\":\"%s\",\"shutdown_spread_ms\":%" PRIu64,
                                   u->on_server_down != NULL ? u->on_server_down : "keep",
                                   u->shutdown_spread_ms);
        if (rc == 0)
            rc = sp_strbuf_puts(sb, ",\"servers\":[");
        for (size_t j = 0; rc == 0 && j < u->nservers && k < st->nservers; j++, k++) {
            rc = sp_strbuf_puts(sb, j == 0 ? "{" : ",{");
            if (rc == 0)
                rc = status_server(sb, &st->servers[k]);
            if (rc == 0)
                rc = sp_strbuf_puts(sb, "}");
        }
        if (rc == 0)
            rc = sp_strbuf_puts(sb, "]}");
    }
    return rc != 0 ? rc : sp_strbuf_puts(sb, "]");
}

int sp_metrics_render_status(const struct sp_stats *st, struct sp_strbuf *out)
{
    int rc = sp_strbuf_puts(out, "{\"process\":{");
    if (rc == 0)
        rc = status_process(out, st);
    if (rc == 0)
        rc = sp_strbuf_puts(out, "},\"relay\":");
    if (rc == 0)
        rc = status_relay(out, st);
    if (rc == 0)
        rc = status_workers(out, st);
    if (rc == 0)
        rc = sp_strbuf_puts(out, ",\"listeners\":[");
    for (size_t i = 0; rc == 0 && i < st->nlisteners; i++) {
        rc = sp_strbuf_puts(out, i == 0 ? "{" : ",{");
        if (rc == 0)
            rc = status_listener(out, &st->listeners[i]);
        if (rc == 0)
            rc = sp_strbuf_puts(out, "}");
    }
    if (rc == 0)
        rc = sp_strbuf_puts(out, "],\"upstreams\":");
    if (rc == 0)
        rc = status_upstreams(out, st);
    return rc != 0 ? rc : sp_strbuf_puts(out, "}\n");
}

/* ---- snapshot lifetime ------------------------------------------------------------------ */

void sp_stats_free(struct sp_stats *st)
{
    if (st == NULL)
        return;
    for (size_t i = 0; i < st->nlisteners; i++) {
        free(st->listeners[i].name);
        free(st->listeners[i].listen);
        free(st->listeners[i].upstream);
    }
    free(st->listeners);
    for (size_t i = 0; i < st->nupstreams; i++)
        free(st->upstreams[i].name);
    free(st->upstreams);
    for (size_t i = 0; i < st->nservers; i++) {
        free(st->servers[i].upstream);
        free(st->servers[i].address);
    }
    free(st->servers);
    free(st->per_worker);
    free(st->last_reload_error);
    free(st->control_socket);
    free(st);
}
