/* config.h: the YAML configuration as an immutable snapshot (struct sp_config).
 * Built by sp_config_load() from a file through libyaml, validated as a whole: a config that
 * loads is complete and consistent, so nothing half-configured ever starts. No libuv, no sockets.
 */
#ifndef SPLICER_CONFIG_H
#define SPLICER_CONFIG_H

#include "cidr.h"
#include "log.h"
#include "tls_sni.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum sp_balance {
    SP_BALANCE_ROUND_ROBIN = 0, /* smooth weighted round-robin (default) */
    SP_BALANCE_LEAST_CONN,
    SP_BALANCE_SOURCE_HASH,
    SP_BALANCE_RANDOM_TWO,
    SP_BALANCE_COUNT
};

enum sp_relay_mode {
    SP_RELAY_SPLICE = 0, /* default */
    SP_RELAY_COPY,
    SP_RELAY_AUTO, /* per direction: copy small exchanges, splice bulk; copy between loopback ends
                    */
    SP_RELAY_MODE_COUNT
};

/* upstream proxy_protocol: the PROXY header splicer sends to the servers of an upstream. */
enum sp_pp_send {
    SP_PP_SEND_OFF = 0, /* default */
    SP_PP_SEND_V1,
    SP_PP_SEND_V2,
    SP_PP_SEND_COUNT
};

/* upstream all_down: what to do when health checks mark every server down. */
enum sp_all_down {
    SP_ALL_DOWN_REJECT = 0, /* default: refuse the clients */
    SP_ALL_DOWN_FAIL_OPEN,  /* balance over all servers as if they were up */
    SP_ALL_DOWN_COUNT
};

/* upstream on_server_down: what becomes of the open sessions of a server that health checks
 * mark down, or that a reload or a DNS change removes (shed.h). */
enum sp_on_server_down {
    SP_ON_DOWN_KEEP = 0, /* default: they go on until they end */
    SP_ON_DOWN_SHUTDOWN, /* reset, spread over shutdown_spread */
    SP_ON_DOWN_COUNT
};

/* One configured position in the file, for messages about a value after parsing. */
struct sp_conf_mark {
    int line; /* 1-based */
    int col;  /* 1-based */
};

struct sp_server_conf {
    char *address; /* owned; as written, e.g. "127.0.0.1:9001", "db.internal:5432", "unix:/x" */
    /* the numeric or unix: address (AF_UNIX, port 0); all zero (AF_UNSPEC) if needs_resolve */
    struct sockaddr_storage addr;
    socklen_t addrlen;  /* 0 if needs_resolve */
    bool needs_resolve; /* address is a DNS name: resolve host, every dns_refresh */
    char *host;         /* owned; the lowercased name if needs_resolve, else NULL */
    uint16_t port;      /* host byte order; set for both kinds of address */
    unsigned weight;    /* 1..1000, default 1 */
    bool backup;        /* default false */
    struct sp_conf_mark mark;
};

/* One accepted range of HTTP status codes (a single code has lo == hi). */
struct sp_status_range {
    unsigned lo, hi; /* 100..599, lo <= hi */
};

#define SP_HTTP_STATUS_RANGES_MAX 16

/* health_check.http: an HTTP/1.1 GET instead of send/expect; off when the block is absent. */
struct sp_health_http_conf {
    bool enabled;
    char *path; /* owned; starts with '/', default "/" */
    char *host; /* owned; NULL: the server's address as written */
    struct sp_status_range expect[SP_HTTP_STATUS_RANGES_MAX]; /* default 200-399 */
    size_t nexpect;
};

struct sp_health_conf {
    bool enabled;         /* true when a health_check block is present */
    uint64_t interval_ms; /* default 2s */
    uint64_t timeout_ms;  /* default 1s */
    unsigned rise;        /* default 2, 1..100 */
    unsigned fall;        /* default 3, 1..100 */
    char *send;           /* owned, NULL when absent; YAML escapes already applied */
    size_t send_len;
    char *expect; /* owned, NULL when absent */
    size_t expect_len;
    struct sp_health_http_conf http; /* excludes send/expect */
    /* flap damping (health_flap.h): off while flap_max is 0 */
    unsigned flap_max;       /* 1..100; default 0 */
    uint64_t flap_window_ms; /* default 60s, > 0 */
    uint64_t flap_hold_ms;   /* default 30s, > 0 */
};

struct sp_upstream_conf {
    char *name; /* owned */
    enum sp_balance balance;
    unsigned retries;         /* default 2, 0..100 */
    unsigned max_fails;       /* passive checks; default 3, 0 = passive checks off */
    uint64_t fail_timeout_ms; /* default 10s */
    uint64_t slow_start_ms;   /* default 0 (off) */
    struct sp_health_conf health;
    enum sp_all_down all_down;         /* default reject */
    struct sp_conf_mark all_down_mark; /* its value; line 0 when absent */
    enum sp_pp_send proxy_protocol;    /* default off */
    uint64_t dns_refresh_ms;           /* default 5s, >0: re-resolution period of named servers */
    struct sp_server_conf *servers;    /* owned array, at least one */
    size_t nservers;
    struct sp_conf_mark mark;

    enum sp_on_server_down on_server_down; /* default keep */
    uint64_t shutdown_spread_ms;           /* default 5s; 0 = all at once */
};

/* One entry of a listener's routes: clients whose TLS SNI matches go to `upstream`. */
struct sp_route_conf {
    char **sni;  /* owned array of owned patterns, lowercased: "example.com", "*.example.com" */
    size_t nsni; /* at least one */
    char *upstream_name;               /* owned */
    struct sp_upstream_conf *upstream; /* borrowed from the same sp_config; never NULL */
    struct sp_conf_mark mark;          /* the route's entry */
    struct sp_conf_mark upstream_mark; /* its upstream value */
};

/* listeners.<name>.limits: per-client limits (srclimit.h); off when the block is absent. */
struct sp_limits_conf {
    bool enabled;                    /* the block is present; it sets at least one limit */
    unsigned per_source_connections; /* 1..1000000; 0 = open connections are not limited */
    unsigned rate;                   /* per_source_rate: connections per rate_period_ms; 0 = off */
    uint64_t rate_period_ms;         /* 1000 (N/s) or 60000 (N/m) */
    unsigned source_prefix_v4;       /* 0..32, default 32 */
    unsigned source_prefix_v6;       /* 0..128, default 64 */
    unsigned tracked_sources;        /* entries of the table: a power of two, default 65536 */
    struct sp_conf_mark mark;        /* the block */
};

struct sp_listener_conf {
    char *name;                   /* owned */
    char *listen;                 /* owned; as written */
    struct sockaddr_storage addr; /* AF_INET, AF_INET6 or AF_UNIX (unix:/path, unix:@name) */
    socklen_t addrlen;
    int unix_mode;                      /* unix_mode: permission bits of the file; -1 unset */
    struct sp_conf_mark unix_mode_mark; /* line 0 when absent */
    char *upstream_name;                /* owned */
    struct sp_upstream_conf *upstream;  /* borrowed from the same sp_config; never NULL */
    uint64_t connect_timeout_ms;        /* default 2s, >0 */
    uint64_t idle_timeout_ms;           /* default 5m, 0 = none */
    unsigned max_connections;           /* default 10000, 1..1000000 */
    unsigned backlog;                   /* default 511 */
    enum sp_relay_mode relay;           /* default: the top-level relay */
    /* deployment: PROXY protocol from a load balancer in front, client filters, SNI routes */
    bool accept_proxy_protocol;         /* default false: expect a v1/v2 header first */
    uint64_t proxy_protocol_timeout_ms; /* default 5s, >0: for the whole header to arrive */
    /* owned; proxy_protocol_from: the socket peers allowed to send a PROXY header. Required (and
     * non-empty) with accept_proxy_protocol, refused without it; others are closed unread. */
    struct sp_cidr_list proxy_from;
    struct sp_conf_mark accept_pp_mark;  /* accept_proxy_protocol's value; line 0 when absent */
    struct sp_conf_mark proxy_from_mark; /* proxy_protocol_from's value; line 0 when absent */
    struct sp_cidr_list allow;           /* owned; empty = everyone (the default) */
    struct sp_cidr_list deny;            /* owned; wins over allow (sp_cidr_allowed) */
    struct sp_conf_mark allow_mark;      /* line 0 when absent */
    struct sp_conf_mark deny_mark;       /* line 0 when absent */
    uint64_t tls_inspect_timeout_ms;     /* default 5s, >0: for the ClientHello (routes only) */
    struct sp_route_conf *routes;        /* owned array; NULL when no routes */
    size_t nroutes;
    /* owned; each pattern of routes[i].sni -> i. sp_sni_routes_match() == -1 (or no SNI) means
     * the listener's own `upstream`, the default route. */
    struct sp_sni_routes sni_routes;
    struct sp_limits_conf limits;
    struct sp_conf_mark mark;
};

enum sp_log_format {
    SP_LOG_FORMAT_JSON = 0, /* default */
    SP_LOG_FORMAT_TEXT,
    SP_LOG_FORMAT_COUNT
};

/* admin: the HTTP endpoint for /metrics, /status, /healthz and drain/enable. */
struct sp_admin_conf {
    bool enabled; /* true when an admin block with listen is present */
    char *listen; /* owned; as written */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char *token_file; /* owned; NULL without admin.token_file */
    char *token;      /* owned; read from token_file at load, without its trailing newline */
    size_t token_len; /* 0 without a token: drain/enable only on a loopback listener */
};

/* access_log: one line per closed connection. */
struct sp_access_log_conf {
    bool enabled;              /* false for "off" (the default) */
    char *path;                /* owned; "stderr", "stdout" or a file path (appended to) */
    enum sp_log_format format; /* log_format: json (default) | text */
};

/* The longest control_socket path: a Unix socket path (108 bytes) less room for the
 * temporary name a takeover binds next to it. */
#define SP_CONTROL_PATH_MAX 90

struct sp_config {
    char *path;                   /* owned; the file it came from */
    unsigned workers;             /* default 1; 0 in the file = one per CPU, resolved at load */
    uint64_t shutdown_timeout_ms; /* default 30s */
    uint64_t pipe_size;           /* default 1m; 4k..1g, a power of two is not required */
    unsigned pipe_pool_max;       /* idle pipes kept per worker; default 64 */
    uint64_t pipe_memory_max;     /* pipe capacity of the whole process; default 64m, 4k..1024g */
    enum sp_relay_mode relay;     /* default splice */
    enum sp_log_level log_level;  /* default info */
    struct sp_admin_conf admin;
    struct sp_access_log_conf access_log;
    char *control_socket; /* owned; NULL (the default): no binary upgrade by takeover */
    struct sp_listener_conf *listeners; /* owned array, at least one */
    size_t nlisteners;
    struct sp_upstream_conf *upstreams; /* owned array, at least one */
    size_t nupstreams;
};

/* The first error found, formatted "FILE:LINE:COL: message" (LINE and COL 1-based). */
struct sp_config_error {
    char text[512];
};

/* Loads and validates `path`. On success returns 0 and *out owns a new config (free with
 * sp_config_free). On failure returns a negative errno (-EINVAL for any content error, or the
 * errno of opening the file), fills err->text and leaves *out untouched. Any thread. */
int sp_config_load(const char *path, struct sp_config **out, struct sp_config_error *err);

/* As sp_config_load, from memory; `name` stands for FILE in messages. */
int sp_config_load_string(const char *name, const char *text, size_t len, struct sp_config **out,
                          struct sp_config_error *err);

/* Frees everything a loaded config owns. NULL is a no-op. */
void sp_config_free(struct sp_config *cfg);

const char *sp_balance_name(enum sp_balance b);
const char *sp_relay_mode_name(enum sp_relay_mode m);
const char *sp_pp_send_name(enum sp_pp_send v);   /* "off", "v1", "v2" */
const char *sp_all_down_name(enum sp_all_down v); /* "reject", "fail_open" */

const char *sp_on_server_down_name(enum sp_on_server_down v); /* "keep", "shutdown" */

#endif
