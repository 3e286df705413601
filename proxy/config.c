/* config.c: the configuration model. One key table per section (top level, listener, upstream,
 * server, health_check), the defaults, the cross-checks that need the whole file (upstream names
 * resolve, listen addresses are unique) and the public load/free API. The YAML mechanics, the
 * walk of named sections and the generic value parsers live in config_yaml.c. */
#include "config.h"
#include "common.h"
#include "config_admin.h"
#include "config_deploy.h"
#include "config_health.h"
#include "config_limits.h"
#include "config_unix.h"
#include "config_yaml.h"
#include "parse.h"
#include "sock.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

/* sp_cfg_parse_enum stores an unsigned index; these enums must have that representation */
_Static_assert(sizeof(enum sp_balance) == sizeof(unsigned), "enum sp_balance is not unsigned");
_Static_assert(sizeof(enum sp_relay_mode) == sizeof(unsigned), "enum sp_relay_mode size");
_Static_assert(sizeof(enum sp_log_format) == sizeof(unsigned), "enum sp_log_format size");
_Static_assert(sizeof(enum sp_pp_send) == sizeof(unsigned), "enum sp_pp_send size");

#define MAX_WORKERS 256

/* Positions the cross-checks point at, which the public structs have no field for. */
struct listener_marks {
    yaml_mark_t listen;
    yaml_mark_t upstream;
};

/* State of one load. The field parsers get &walk and recover this with sp_container_of. */
struct build {
    struct sp_cfg_walk walk;
    struct sp_config *cfg;           /* owned until handed to the caller */
    struct listener_marks *lmarks;   /* owned; one per listener */
    struct sp_upstream_conf *cur_up; /* borrowed; the upstream whose servers are parsed now */
    yaml_mark_t *addr_marks;         /* owned; where cur_up's server addresses were written */
    yaml_mark_t admin_listen;        /* where admin.listen was written, for the cross-check */
    size_t *up_order;                /* owned; upstream indices sorted by name, for lookups */
};

static const char *const balance_names[SP_BALANCE_COUNT + 1] = {"round_robin", "least_conn",
                                                                "source_hash", "random_two", NULL};
static const char *const relay_names[SP_RELAY_MODE_COUNT + 1] = {"splice", "copy", "auto", NULL};
static const char *const log_format_names[SP_LOG_FORMAT_COUNT + 1] = {"json", "text", NULL};
static const char *const pp_send_names[SP_PP_SEND_COUNT + 1] = {"off", "v1", "v2", NULL};

static struct build *build_of(struct sp_cfg_walk *w)
{
    return sp_container_of(w, struct build, walk);
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    return sp_sock_addr_equal((const struct sockaddr *)a, (const struct sockaddr *)b);
}

/* A total order of inet addresses whose "equal" is same_addr's, for sorting. */
static int cmp_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return a->ss_family < b->ss_family ? -1 : 1;
    if (a->ss_family == AF_UNIX) {
        const struct sockaddr_un *x = (const void *)a, *y = (const void *)b;
        return memcmp(x->sun_path, y->sun_path, sizeof(x->sun_path));
    }
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        int c = memcmp(&x->sin_addr, &y->sin_addr, sizeof(x->sin_addr));
        return c != 0 ? c : memcmp(&x->sin_port, &y->sin_port, sizeof(x->sin_port));
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    int c = memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr));
    return c != 0 ? c : memcmp(&x->sin6_port, &y->sin6_port, sizeof(x->sin6_port));
}

static int parse_address(struct sp_cfg_walk *w, yaml_node_t *val, const char *what, char **str,
                         struct sockaddr_storage *ss, socklen_t *len)
{
    const char *s;
    int rc = sp_cfg_scalar(w, val, what, &s);
    if (rc != 0)
        return rc;
    rc = sp_parse_addr(s, ss, len);
    if (rc == -ERANGE)
        return sp_cfg_fail(w, val->start_mark, "port out of range in '%.64s' for %s (1..65535)", s,
                           what);
    if (rc != 0)
        return sp_cfg_fail(w, val->start_mark,
                           "invalid address '%.64s' for %s (expected IPv4:port, [IPv6]:port or "
                           "*:port; host names are not supported)",
                           s, what);
    *str = strdup(s);
    return *str == NULL ? sp_cfg_oom(w) : 0;
}

/* ---- servers ---------------------------------------------------------------------------- */

/* A server address: numeric as for listen, or a DNS name with port, resolved later. */
static int server_addr(struct sp_cfg_walk *w, yaml_node_t *val, const char *what,
                       struct sp_server_conf *srv)
{
    char host[SP_HOST_NAME_MAX];
    const char *s;
    int rc = sp_cfg_scalar(w, val, what, &s);
    if (rc != 0)
        return rc;
    if (sp_parse_is_unix(s)) {
        rc = sp_cfg_unix_addr(w, val, s, what, &srv->addr, &srv->addrlen);
        if (rc == 0 && (srv->address = strdup(s)) == NULL)
            rc = sp_cfg_oom(w);
        return rc;
    }
    rc = sp_parse_addr(s, &srv->addr, &srv->addrlen);
    if (rc == 0) {
        const struct sockaddr_in *sin = (const void *)&srv->addr;
        const struct sockaddr_in6 *sin6 = (const void *)&srv->addr;
        srv->port = ntohs(srv->addr.ss_family == AF_INET ? sin->sin_port : sin6->sin6_port);
    } else if (rc == -EINVAL) {
        rc = sp_parse_host_port(s, host, sizeof(host), &srv->port);
        srv->needs_resolve = rc == 0;
    }
    if (rc == -ERANGE)
        return sp_cfg_fail(w, val->start_mark, "port out of range in '%.64s' for %s (1..65535)", s,
                           what);
    if (rc != 0)
        return sp_cfg_fail(w, val->start_mark,
                           "invalid address '%.64s' for %s (expected IPv4:port, [IPv6]:port, "
                           "host:port or unix:/path)",
                           s, what);
    if (srv->needs_resolve && (srv->host = strdup(host)) == NULL)
        return sp_cfg_oom(w);
    srv->address = strdup(s);
    return srv->address == NULL ? sp_cfg_oom(w) : 0;
}

/* Servers a and b of an upstream: 0 when they are the same backend. A name and an address
 * may well be the same host, but only DNS will tell, so they differ here. */
static int cmp_server(const void *ctx, size_t a, size_t b)
{
    const struct sp_server_conf *x = &((const struct sp_upstream_conf *)ctx)->servers[a];
    const struct sp_server_conf *y = &((const struct sp_upstream_conf *)ctx)->servers[b];
    if (x->needs_resolve != y->needs_resolve)
        return x->needs_resolve ? 1 : -1;
    if (!x->needs_resolve)
        return cmp_addr(&x->addr, &y->addr);
    if (x->port != y->port)
        return x->port < y->port ? -1 : 1;
    return strcmp(x->host, y->host);
}

static int p_server_address(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                            void *obj, const char *what)
{
    struct build *b = build_of(w);
    struct sp_server_conf *srv = obj;
    (void)f;

    b->addr_marks[srv - b->cur_up->servers] = val->start_mark;
    return server_addr(w, val, what, srv);
}

/* The same backend twice would skew the balance silently; weight says it openly. */
static int check_servers(struct sp_cfg_walk *w, const struct sp_upstream_conf *up)
{
    size_t first, dup;
    int rc = sp_cfg_first_duplicate(up, up->nservers, cmp_server, &first, &dup);
    if (rc < 0)
        return sp_cfg_oom(w);
    if (rc == 0)
        return 0;
    return sp_cfg_fail(w, build_of(w)->addr_marks[dup],
                       "duplicate server '%.64s' in upstream '%.64s' (first at line %d)",
                       up->servers[dup].address, up->name, up->servers[first].mark.line);
}

static const struct sp_cfg_field server_fields[] = {
    {.key = "address", .parse = p_server_address, .required = true},
    {.key = "weight",
     .parse = sp_cfg_parse_uint,
     .off = offsetof(struct sp_server_conf, weight),
     .min = 1,
     .max = 1000},
    {.key = "backup", .parse = sp_cfg_parse_bool, .off = offsetof(struct sp_server_conf, backup)},
};

static int p_servers(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                     void *obj, const char *what)
{
    struct sp_upstream_conf *up = obj;
    (void)f;

    size_t n = val->type == YAML_SEQUENCE_NODE
                   ? (size_t)(val->data.sequence.items.top - val->data.sequence.items.start)
                   : 0;
    if (n == 0 && (sp_cfg_is_null(val) || val->type == YAML_SEQUENCE_NODE))
        return sp_cfg_fail(w, val->start_mark, "upstream '%.64s' has no servers", up->name);
    int rc = sp_cfg_expect(w, val, YAML_SEQUENCE_NODE, what);
    if (rc != 0)
        return rc;

    struct build *b = build_of(w);
    up->servers = calloc(n, sizeof(*up->servers));
    free(b->addr_marks);
    b->addr_marks = calloc(n, sizeof(*b->addr_marks));
    if (up->servers == NULL || b->addr_marks == NULL)
        return sp_cfg_oom(w);
    up->nservers = n;
    b->cur_up = up;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = sp_cfg_node(w, val->data.sequence.items.start[i]);
        struct sp_server_conf *srv = &up->servers[i];
        char where[128];
        snprintf(where, sizeof(where), "server %zu of upstream '%.64s'", i + 1, up->name);
        srv->weight = 1;
        srv->mark = sp_cfg_mark(item->start_mark);
        rc = sp_cfg_expect(w, item, YAML_MAPPING_NODE, where);
        if (rc == 0)
            rc = sp_cfg_walk_map(w, item, server_fields, SP_ARRAY_LEN(server_fields), srv, where,
                                 item->start_mark);
        if (rc != 0)
            return rc;
    }
    return check_servers(w, up);
}

/* ---- upstreams -------------------------------------------------------------------------- */

static const struct sp_cfg_field upstream_fields[] = {
    {.key = "balance",
     .parse = sp_cfg_parse_enum,
     .off = offsetof(struct sp_upstream_conf, balance),
     .names = balance_names},
    {.key = "retries",
     .parse = sp_cfg_parse_uint,
     .off = offsetof(struct sp_upstream_conf, retries),
     .max = 100},
    {.key = "max_fails",
     .parse = sp_cfg_parse_uint,
     .off = offsetof(struct sp_upstream_conf, max_fails),
     .max = 1000},
    {.key = "fail_timeout",
     .parse = sp_cfg_parse_duration,
     .off = offsetof(struct sp_upstream_conf, fail_timeout_ms)},
    {.key = "slow_start",
     .parse = sp_cfg_parse_duration,
     .off = offsetof(struct sp_upstream_conf, slow_start_ms)},
    {.key = "health_check", .parse = sp_cfg_parse_health},
    {.key = "all_down", .parse = sp_cfg_parse_all_down},
    {.key = "on_server_down", .parse = sp_cfg_parse_on_server_down},
    {.key = "shutdown_spread",
     .parse = sp_cfg_parse_duration,
     .off = offsetof(struct sp_upstream_conf, shutdown_spread_ms)},
    {.key = "proxy_protocol",
     .parse = sp_cfg_parse_enum,
     .off = offsetof(struct sp_upstream_conf, proxy_protocol),
     .names = pp_send_names},
    {.key = "dns_refresh",
     .parse = sp_cfg_parse_duration,
     .off = offsetof(struct sp_upstream_conf, dns_refresh_ms),
     .min = 1},
    {.key = "servers", .parse = p_servers, .required = true},
};

static void upstream_defaults(void *entry)
{
    struct sp_upstream_conf *u = entry;
    u->balance = SP_BALANCE_ROUND_ROBIN;
    u->retries = 2;
    u->max_fails = 3;
    u->fail_timeout_ms = 10 * 1000;
    u->slow_start_ms = 0;
    u->health.enabled = false;
    u->health.interval_ms = 2000;
    u->health.timeout_ms = 1000;
    u->health.rise = 2;
    u->health.fall = 3;
    u->health.flap_window_ms = 60 * 1000;
    u->health.flap_hold_ms = 30 * 1000;
    u->proxy_protocol = SP_PP_SEND_OFF;
    u->dns_refresh_ms = 5000;
    u->on_server_down = SP_ON_DOWN_KEEP;
    u->shutdown_spread_ms = 5000;
}

static int p_upstreams(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                       void *obj, const char *what)
{
    static const struct sp_cfg_section upstreams = {
        .kind = "upstream",
        .fields = upstream_fields,
        .nfields = SP_ARRAY_LEN(upstream_fields),
        .size = sizeof(struct sp_upstream_conf),
        .name_off = offsetof(struct sp_upstream_conf, name),
        .mark_off = offsetof(struct sp_upstream_conf, mark),
        .defaults = upstream_defaults,
    };
    struct sp_config *cfg = obj;
    size_t n;
    (void)f;

    int rc = sp_cfg_section_count(w, &upstreams, val, what, &n);
    if (rc != 0)
        return rc;
    cfg->upstreams = calloc(n, sizeof(*cfg->upstreams));
    if (cfg->upstreams == NULL)
        return sp_cfg_oom(w);
    cfg->nupstreams = n;
    return sp_cfg_parse_section(w, &upstreams, val, cfg->upstreams, n);
}

/* ---- listeners -------------------------------------------------------------------------- */

static int p_listen(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                    void *obj, const char *what)
{
    struct build *b = build_of(w);
    struct sp_listener_conf *l = obj;
    (void)f;

    b->lmarks[l - b->cfg->listeners].listen = val->start_mark;
    const char *s;
    int rc = sp_cfg_scalar(w, val, what, &s);
    if (rc != 0 || !sp_parse_is_unix(s))
        return parse_address(w, val, what, &l->listen, &l->addr, &l->addrlen);
    rc = sp_cfg_unix_addr(w, val, s, what, &l->addr, &l->addrlen);
    if (rc == 0 && (l->listen = strdup(s)) == NULL)
        rc = sp_cfg_oom(w);
    return rc;
}

static int p_upstream_ref(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                          void *obj, const char *what)
{
    struct build *b = build_of(w);
    struct sp_listener_conf *l = obj;

    /* resolved in resolve(): upstreams may come after the listeners in the file */
    b->lmarks[l - b->cfg->listeners].upstream = val->start_mark;
    return sp_cfg_parse_string(w, f, val, obj, what);
}

static const struct sp_cfg_field listener_fields[] = {
    {.key = "listen", .parse = p_listen, .required = true},
    {.key = "upstream",
     .parse = p_upstream_ref,
     .off = offsetof(struct sp_listener_conf, upstream_name),
     .required = true},
    {.key = "connect_timeout",
     .parse = sp_cfg_parse_duration,
     .off = offsetof(struct sp_listener_conf, connect_timeout_ms),
     .min = 1},
    {.key = "idle_timeout",
     .parse = sp_cfg_parse_duration,
     .off = offsetof(struct sp_listener_conf, idle_timeout_ms)},
    {.key = "max_connections",
     .parse = sp_cfg_parse_uint,
     .off = offsetof(struct sp_listener_conf, max_connections),
     .min = 1,
     .max = 1000000},
    {.key = "backlog",
     .parse = sp_cfg_parse_uint,
     .off = offsetof(struct sp_listener_conf, backlog),
     .min = 1,
     .max = 65535},
    {.key = "relay",
     .parse = sp_cfg_parse_enum,
     .off = offsetof(struct sp_listener_conf, relay),
     .names = relay_names},
    {.key = "accept_proxy_protocol",
     .parse = sp_cfg_parse_accept_pp,
     .off = offsetof(struct sp_listener_conf, accept_proxy_protocol)},
    {.key = "proxy_protocol_from",
     .parse = sp_cfg_parse_proxy_from,
     .off = offsetof(struct sp_listener_conf, proxy_from)},
    {.key = "proxy_protocol_timeout",
     .parse = sp_cfg_parse_duration,
     .off = offsetof(struct sp_listener_conf, proxy_protocol_timeout_ms),
     .min = 1},
    {.key = "allow",
     .parse = sp_cfg_parse_cidrs_marked,
     .off = offsetof(struct sp_listener_conf, allow),
     .off2 = offsetof(struct sp_listener_conf, allow_mark)},
    {.key = "deny",
     .parse = sp_cfg_parse_cidrs_marked,
     .off = offsetof(struct sp_listener_conf, deny),
     .off2 = offsetof(struct sp_listener_conf, deny_mark)},
    {.key = "unix_mode", .parse = sp_cfg_parse_unix_mode},
    {.key = "tls_inspect_timeout",
     .parse = sp_cfg_parse_duration,
     .off = offsetof(struct sp_listener_conf, tls_inspect_timeout_ms),
     .min = 1},
    {.key = "routes", .parse = sp_cfg_parse_routes},
    {.key = "limits", .parse = sp_cfg_parse_limits},
};

static void listener_defaults(void *entry)
{
    struct sp_listener_conf *l = entry;
    l->connect_timeout_ms = 2000;
    l->idle_timeout_ms = 5 * 60 * 1000;
    l->max_connections = 10000;
    l->backlog = 511;
    l->relay = SP_RELAY_MODE_COUNT; /* "not set": inherits the top-level relay in resolve() */
    l->proxy_protocol_timeout_ms = 5000;
    l->tls_inspect_timeout_ms = 5000;
    l->unix_mode = -1;
}

static int p_listeners(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                       void *obj, const char *what)
{
    static const struct sp_cfg_section listeners = {
        .kind = "listener",
        .fields = listener_fields,
        .nfields = SP_ARRAY_LEN(listener_fields),
        .size = sizeof(struct sp_listener_conf),
        .name_off = offsetof(struct sp_listener_conf, name),
        .mark_off = offsetof(struct sp_listener_conf, mark),
        .defaults = listener_defaults,
    };
    struct build *b = build_of(w);
    struct sp_config *cfg = obj;
    size_t n;
    (void)f;

    int rc = sp_cfg_section_count(w, &listeners, val, what, &n);
    if (rc != 0)
        return rc;
    cfg->listeners = calloc(n, sizeof(*cfg->listeners));
    b->lmarks = calloc(n, sizeof(*b->lmarks));
    if (cfg->listeners == NULL || b->lmarks == NULL)
        return sp_cfg_oom(w);
    cfg->nlisteners = n;
    return sp_cfg_parse_section(w, &listeners, val, cfg->listeners, n);
}

/* ---- top level -------------------------------------------------------------------------- */

static int p_log_level(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                       void *obj, const char *what)
{
    struct sp_config *cfg = obj;
    const char *s;
    (void)f;

    int rc = sp_cfg_scalar(w, val, what, &s);
    if (rc != 0)
        return rc;
    if (sp_log_level_parse(s, &cfg->log_level) != 0)
        return sp_cfg_fail(w, val->start_mark,
                           "invalid value '%.64s' for %s (expected one of: debug, info, warn, "
                           "error)",
                           s, what);
    return 0;
}

/* ---- admin and access log -------------------------------------------------------------- */

static int p_admin_listen(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                          void *obj, const char *what)
{
    struct sp_admin_conf *a = obj;
    (void)f;

    build_of(w)->admin_listen = val->start_mark;
    return parse_address(w, val, what, &a->listen, &a->addr, &a->addrlen);
}

static const struct sp_cfg_field admin_fields[] = {
    {.key = "listen", .parse = p_admin_listen, .required = true},
    {.key = "token_file", .parse = sp_cfg_parse_token_file},
};

static int p_admin(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val, void *obj,
                   const char *what)
{
    struct sp_config *cfg = obj;
    (void)f;

    int rc = sp_cfg_expect(w, val, YAML_MAPPING_NODE, what);
    if (rc != 0)
        return rc;
    rc = sp_cfg_walk_map(w, val, admin_fields, SP_ARRAY_LEN(admin_fields), &cfg->admin, "admin",
                         val->start_mark);
    cfg->admin.enabled = rc == 0;
    return rc;
}

/* off | stderr | stdout | a path. A path must contain a '/' so that a misspelt keyword
 * ("stdrr") is an error here rather than a file quietly created in the working directory. */
static int p_access_log(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                        void *obj, const char *what)
{
    struct sp_access_log_conf *al = &((struct sp_config *)obj)->access_log;
    const char *s;
    (void)f;

    int rc = sp_cfg_scalar(w, val, what, &s);
    if (rc != 0)
        return rc;
    if (strcmp(s, "off") == 0) {
        al->enabled = false;
        return 0;
    }
    if (strcmp(s, "stderr") != 0 && strcmp(s, "stdout") != 0 && strchr(s, '/') == NULL)
        return sp_cfg_fail(w, val->start_mark,
                           "invalid value '%.64s' for %s (expected off, stderr, stdout or a file "
                           "path with a '/', as in ./access.log)",
                           s, what);
    al->path = strdup(s);
    if (al->path == NULL)
        return sp_cfg_oom(w);
    al->enabled = true;
    return 0;
}

/* ---- top level (fields) ----------------------------------------------------------------- */

static const struct sp_cfg_field top_fields[] = {
    {.key = "workers",
     .parse = sp_cfg_parse_uint,
     .off = offsetof(struct sp_config, workers),
     .max = MAX_WORKERS},
    {.key = "shutdown_timeout",
     .parse = sp_cfg_parse_duration,
     .off = offsetof(struct sp_config, shutdown_timeout_ms)},
    {.key = "pipe_size",
     .parse = sp_cfg_parse_size,
     .off = offsetof(struct sp_config, pipe_size),
     .min = 4 << 10,
     .max = 1 << 30},
    {.key = "pipe_pool_max",
     .parse = sp_cfg_parse_uint,
     .off = offsetof(struct sp_config, pipe_pool_max),
     .max = 100000},
    {.key = "pipe_memory_max",
     .parse = sp_cfg_parse_size,
     .off = offsetof(struct sp_config, pipe_memory_max),
     .min = 4 << 10,
     .max = (uint64_t)1 << 40},
    {.key = "relay",
     .parse = sp_cfg_parse_enum,
     .off = offsetof(struct sp_config, relay),
     .names = relay_names},
    {.key = "log_level", .parse = p_log_level},
    {.key = "log_format",
     .parse = sp_cfg_parse_enum,
     .off = offsetof(struct sp_config, access_log.format),
     .names = log_format_names},
    {.key = "access_log", .parse = p_access_log},
    {.key = "admin", .parse = p_admin},
    {.key = "control_socket", .parse = sp_cfg_parse_control_socket},
    {.key = "listeners", .parse = p_listeners, .required = true},
    {.key = "upstreams", .parse = p_upstreams, .required = true},
};

static void config_defaults(struct sp_config *cfg)
{
    cfg->workers = 1;
    cfg->shutdown_timeout_ms = 30 * 1000;
    cfg->pipe_size = 1 << 20;
    cfg->pipe_pool_max = 64;
    /* The kernel's own default for an unprivileged user (fs.pipe-user-pages-soft, 16384 pages),
     * so a root splicer is held to what a non-root one gets anyway: 64 full pipes of 1m. */
    cfg->pipe_memory_max = (uint64_t)64 << 20;
    cfg->relay = SP_RELAY_SPLICE;
    cfg->log_level = SP_LOG_INFO;
    cfg->admin.enabled = false;
    cfg->access_log.enabled = false;
    cfg->access_log.format = SP_LOG_FORMAT_JSON;
}

static int cmp_upstream_name(const void *a, const void *b, void *cfg)
{
    const struct sp_upstream_conf *u = ((const struct sp_config *)cfg)->upstreams;
    return strcmp(u[*(const size_t *)a].name, u[*(const size_t *)b].name);
}

/* Sorts the upstreams' names once, so that each reference is a binary search rather than a
 * scan: listeners x upstreams comparisons grew with the square of the file. */
static int sort_upstreams(struct build *b)
{
    size_t n = b->cfg->nupstreams;
    b->up_order = malloc(n * sizeof(*b->up_order));
    if (b->up_order == NULL)
        return sp_cfg_oom(&b->walk);
    for (size_t i = 0; i < n; i++)
        b->up_order[i] = i;
    qsort_r(b->up_order, n, sizeof(*b->up_order), cmp_upstream_name, b->cfg);
    return 0;
}

struct sp_upstream_conf *sp_cfg_find_upstream(struct sp_cfg_walk *w, const char *name)
{
    struct build *b = build_of(w);
    size_t lo = 0, hi = b->cfg->nupstreams;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        struct sp_upstream_conf *u = &b->cfg->upstreams[b->up_order[mid]];
        int c = strcmp(name, u->name);
        if (c == 0)
            return u;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static int cmp_listen(const void *ctx, size_t a, size_t b)
{
    const struct sp_listener_conf *l = ((const struct sp_config *)ctx)->listeners;
    return cmp_addr(&l[a].addr, &l[b].addr);
}

static int undefined_upstream(struct build *b, const struct sp_listener_conf *l, yaml_mark_t m)
{
    const char *best = NULL;
    unsigned best_d = 3;

    for (size_t i = 0; i < b->cfg->nupstreams; i++) {
        unsigned d = sp_cfg_distance(l->upstream_name, b->cfg->upstreams[i].name);
        if (d < best_d) {
            best_d = d;
            best = b->cfg->upstreams[i].name;
        }
    }
    if (best != NULL)
        return sp_cfg_fail(&b->walk, m,
                           "listener '%.64s' uses undefined upstream '%.64s' (did you mean "
                           "'%.64s'?)",
                           l->name, l->upstream_name, best);
    return sp_cfg_fail(&b->walk, m, "listener '%.64s' uses undefined upstream '%.64s'", l->name,
                       l->upstream_name);
}

/* Checks that need the whole file, then fills the defaults that depend on other keys. */
static int resolve(struct build *b)
{
    struct sp_config *cfg = b->cfg;
    size_t first, dup;

    int rc = sort_upstreams(b);
    for (size_t i = 0; i < cfg->nupstreams && rc == 0; i++)
        rc = sp_cfg_check_all_down(&b->walk, &cfg->upstreams[i]);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        struct sp_listener_conf *l = &cfg->listeners[i];
        l->upstream = sp_cfg_find_upstream(&b->walk, l->upstream_name);
        if (l->upstream == NULL)
            return undefined_upstream(b, l, b->lmarks[i].upstream);
        rc = sp_cfg_resolve_routes(&b->walk, cfg, l);
        if (rc == 0)
            rc = sp_cfg_check_unix(&b->walk, l, b->lmarks[i].listen);
        if (rc == 0)
            rc = sp_cfg_check_proxy_from(&b->walk, l);
        if (rc != 0)
            return rc;
        if (l->relay == SP_RELAY_MODE_COUNT)
            l->relay = cfg->relay;
        /* the admin endpoint would lose the bind race to the listener, or steal its clients */
        if (cfg->admin.enabled && same_addr(&cfg->admin.addr, &l->addr))
            return sp_cfg_fail(&b->walk, b->admin_listen,
                               "admin listens on '%.64s', already used by listener '%.64s'",
                               cfg->admin.listen, l->name);
    }
    rc = sp_cfg_first_duplicate(cfg, cfg->nlisteners, cmp_listen, &first, &dup);
    if (rc < 0)
        return sp_cfg_oom(&b->walk);
    if (rc > 0)
        return sp_cfg_fail(&b->walk, b->lmarks[dup].listen,
                           "listener '%.64s' listens on '%.64s', already used by listener '%.64s'",
                           cfg->listeners[dup].name, cfg->listeners[dup].listen,
                           cfg->listeners[first].name);
    if (cfg->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->workers = n < 1 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : (unsigned)n;
    }
    return 0;
}

static int build_config(struct build *b, yaml_node_t *root)
{
    b->cfg = calloc(1, sizeof(*b->cfg));
    if (b->cfg == NULL)
        return sp_cfg_oom(&b->walk);
    config_defaults(b->cfg);
    b->cfg->path = strdup(b->walk.file);
    if (b->cfg->path == NULL)
        return sp_cfg_oom(&b->walk);
    int rc = sp_cfg_walk_map(&b->walk, root, top_fields, SP_ARRAY_LEN(top_fields), b->cfg, NULL,
                             root->start_mark);
    return rc != 0 ? rc : resolve(b);
}

int sp_config_load_string(const char *name, const char *text, size_t len, struct sp_config **out,
                          struct sp_config_error *err)
{
    struct sp_config_error scratch;
    struct build b;
    yaml_node_t *root = NULL;

    memset(&b, 0, sizeof(b));
    b.walk.file = name;
    b.walk.text = text;
    b.walk.len = len;
    b.walk.err = err != NULL ? err : &scratch;
    b.walk.err->text[0] = '\0';

    int rc = sp_cfg_doc_load(&b.walk, &root);
    if (rc == 0)
        rc = build_config(&b, root);
    sp_cfg_doc_free(&b.walk);
    free(b.lmarks);
    free(b.addr_marks);
    free(b.up_order);
    if (rc != 0) {
        sp_config_free(b.cfg);
        return rc;
    }
    *out = b.cfg;
    return 0;
}

int sp_config_load(const char *path, struct sp_config **out, struct sp_config_error *err)
{
    char *text;
    size_t len;

    int rc = sp_cfg_read_file(path, &text, &len);
    if (rc != 0) {
        if (err != NULL)
            snprintf(err->text, sizeof(err->text), "%s: cannot read: %s", path, strerror(-rc));
        return rc;
    }
    rc = sp_config_load_string(path, text, len, out, err);
    free(text);
    return rc;
}

static void upstream_free(struct sp_upstream_conf *u)
{
    free(u->name);
    for (size_t i = 0; i < u->nservers; i++) {
        free(u->servers[i].address);
        free(u->servers[i].host);
    }
    free(u->servers);
    sp_cfg_health_free(&u->health);
}

void sp_config_free(struct sp_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        free(cfg->listeners[i].name);
        free(cfg->listeners[i].listen);
        free(cfg->listeners[i].upstream_name);
        sp_cfg_deploy_free(&cfg->listeners[i]);
    }
    free(cfg->listeners);
    for (size_t i = 0; i < cfg->nupstreams; i++)
        upstream_free(&cfg->upstreams[i]);
    free(cfg->upstreams);
    free(cfg->admin.listen);
    sp_cfg_admin_free(&cfg->admin);
    free(cfg->access_log.path);
    free(cfg->control_socket);
    free(cfg->path);
    free(cfg);
}

const char *sp_balance_name(enum sp_balance b)
{
    return (unsigned)b < SP_BALANCE_COUNT ? balance_names[b] : "unknown";
}

const char *sp_relay_mode_name(enum sp_relay_mode m)
{
    return (unsigned)m < SP_RELAY_MODE_COUNT ? relay_names[m] : "unknown";
}

const char *sp_pp_send_name(enum sp_pp_send v)
{
    return (unsigned)v < SP_PP_SEND_COUNT ? pp_send_names[v] : "unknown";
}
