/* config_health.c: the `health_check` block of an upstream (see config_health.h): its timing,
 * the send/expect probe, and the `http:` check (path, host, expect_status), each with its bounds
 * and messages; and the upstream's policies for down servers (all_down, on_server_down). */
#include "config_health.h"
#include "common.h"
#include "health_flap.h"
#include "parse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOST_MAX     255
#define PATH_MAX_LEN 1024

/* A request-target or Host value goes into the request line or a header as it is: no byte may
 * end the line or the field early, and none may be invisible. */
static bool printable(const char *s, const char *also_bad)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p <= 0x20 || *p >= 0x7f || strchr(also_bad, *p) != NULL)
            return false;
    }
    return true;
}

static int p_path(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val, void *obj,
                  const char *what)
{
    struct sp_health_http_conf *hc = obj;
    const char *s;
    (void)f;

    int rc = sp_cfg_scalar(w, val, what, &s);
    if (rc != 0)
        return rc;
    if (s[0] != '/' || strlen(s) > PATH_MAX_LEN || !printable(s, "#"))
        return sp_cfg_fail(w, val->start_mark,
                           "invalid path '%.64s' for %s (expected an absolute path such as "
                           "/healthz, with an optional ?query, no spaces or control characters, "
                           "at most %d bytes)",
                           s, what, PATH_MAX_LEN);
    free(hc->path);
    hc->path = strdup(s);
    return hc->path == NULL ? sp_cfg_oom(w) : 0;
}

static int p_host(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val, void *obj,
                  const char *what)
{
    struct sp_health_http_conf *hc = obj;
    const char *s;
    (void)f;

    int rc = sp_cfg_scalar(w, val, what, &s);
    if (rc != 0)
        return rc;
    if (strlen(s) > HOST_MAX || !printable(s, "/?#@,\"\\"))
        return sp_cfg_fail(w, val->start_mark,
                           "invalid host '%.64s' for %s (expected a host name or address, with "
                           "an optional :port, such as app.internal or 10.0.0.5:8080)",
                           s, what);
    hc->host = strdup(s);
    return hc->host == NULL ? sp_cfg_oom(w) : 0;
}

/* One code (503) or range (200-399) of a scalar node. */
static int status_range(struct sp_cfg_walk *w, yaml_node_t *val, const char *what,
                        struct sp_status_range *r)
{
    const char *s;
    char lo[8];
    uint64_t a = 0, b = 0;

    int rc = sp_cfg_scalar(w, val, what, &s);
    if (rc != 0)
        return rc;
    const char *dash = strchr(s, '-');
    size_t len = dash != NULL ? (size_t)(dash - s) : strlen(s);
    rc = len == 0 || len >= sizeof(lo) ? -EINVAL : 0;
    if (rc == 0) {
        memcpy(lo, s, len);
        lo[len] = '\0';
        rc = sp_parse_uint(lo, 100, 599, &a);
    }
    b = a;
    if (rc == 0 && dash != NULL)
        rc = sp_parse_uint(dash + 1, 100, 599, &b);
    if (rc == 0 && b < a)
        rc = -ERANGE;
    if (rc != 0)
        return sp_cfg_fail(w, val->start_mark,
                           "invalid status '%.64s' for %s (expected a code or a range of codes "
                           "within 100..599, as in 200 or 200-399, or a list of them)",
                           s, what);
    r->lo = (unsigned)a;
    r->hi = (unsigned)b;
    return 0;
}

static int p_expect_status(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                           void *obj, const char *what)
{
    struct sp_health_http_conf *hc = obj;
    (void)f;

    if (val->type != YAML_SEQUENCE_NODE) {
        hc->nexpect = 1;
        return status_range(w, val, what, &hc->expect[0]);
    }
    size_t n = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
    if (n == 0 || n > SP_HTTP_STATUS_RANGES_MAX)
        return sp_cfg_fail(w, val->start_mark, "%s needs 1 to %d codes or ranges, found %zu", what,
                           SP_HTTP_STATUS_RANGES_MAX, n);
    for (size_t i = 0; i < n; i++) {
        int rc = status_range(w, sp_cfg_node(w, val->data.sequence.items.start[i]), what,
                              &hc->expect[i]);
        if (rc != 0)
            return rc;
    }
    hc->nexpect = n;
    return 0;
}

static const struct sp_cfg_field http_fields[] = {
    {.key = "path", .parse = p_path},
    {.key = "host", .parse = p_host},
    {.key = "expect_status", .parse = p_expect_status},
};

static int p_http(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val, void *obj,
                  const char *what)
{
    struct sp_health_http_conf *hc = &((struct sp_health_conf *)obj)->http;
    (void)f;

    /* `http: {}` (or `http:` with nothing) is a check of / with the defaults. */
    if (!sp_cfg_is_null(val)) {
        int rc = sp_cfg_expect(w, val, YAML_MAPPING_NODE, what);
        if (rc != 0)
            return rc;
    }
    hc->enabled = true;
    hc->path = strdup("/");
    if (hc->path == NULL)
        return sp_cfg_oom(w);
    hc->expect[0] = (struct sp_status_range){200, 399};
    hc->nexpect = 1;
    if (sp_cfg_is_null(val))
        return 0;
    return sp_cfg_walk_map(w, val, http_fields, SP_ARRAY_LEN(http_fields), hc, what,
                           val->start_mark);
}

static const struct sp_cfg_field health_fields[] = {
    {.key = "interval",
     .parse = sp_cfg_parse_duration,
     .off = offsetof(struct sp_health_conf, interval_ms),
     .min = 1},
    {.key = "timeout",
     .parse = sp_cfg_parse_duration,
     .off = offsetof(struct sp_health_conf, timeout_ms),
     .min = 1},
    {.key = "rise",
     .parse = sp_cfg_parse_uint,
     .off = offsetof(struct sp_health_conf, rise),
     .min = 1,
     .max = 100},
    {.key = "fall",
     .parse = sp_cfg_parse_uint,
     .off = offsetof(struct sp_health_conf, fall),
     .min = 1,
     .max = 100},
    {.key = "send",
     .parse = sp_cfg_parse_bytes,
     .off = offsetof(struct sp_health_conf, send),
     .off2 = offsetof(struct sp_health_conf, send_len)},
    {.key = "expect",
     .parse = sp_cfg_parse_bytes,
     .off = offsetof(struct sp_health_conf, expect),
     .off2 = offsetof(struct sp_health_conf, expect_len)},
    {.key = "http", .parse = p_http},
    {.key = "flap_window",
     .parse = sp_cfg_parse_duration,
     .off = offsetof(struct sp_health_conf, flap_window_ms),
     .min = 1},
    {.key = "flap_max",
     .parse = sp_cfg_parse_uint,
     .off = offsetof(struct sp_health_conf, flap_max),
     .min = 1,
     .max = SP_FLAP_MAX_MAX},
    {.key = "flap_hold",
     .parse = sp_cfg_parse_duration,
     .off = offsetof(struct sp_health_conf, flap_hold_ms),
     .min = 1},
};

/* flap_window and flap_hold tune a damping that only flap_max turns on: alone they would do
 * nothing, silently. */
static int check_flap(struct sp_cfg_walk *w, yaml_node_t *map, const struct sp_health_conf *hc,
                      const char *where)
{
    if (hc->flap_max != 0)
        return 0;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *k = sp_cfg_node(w, p->key);
        const char *key = (const char *)k->data.scalar.value;
        if (strcmp(key, "flap_window") == 0 || strcmp(key, "flap_hold") == 0)
            return sp_cfg_fail(w, k->start_mark,
                               "'%s' in %s has no effect without flap_max (set flap_max to turn "
                               "flap damping on)",
                               key, where);
    }
    return 0;
}

/* http writes its own request and judges the reply by its status: a send/expect beside it
 * would be ignored, so the second of the two in the file is refused. */
static int check_exclusive(struct sp_cfg_walk *w, yaml_node_t *map, const char *where)
{
    const yaml_node_t *http = NULL, *probe = NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *k = sp_cfg_node(w, p->key);
        const char *key = (const char *)k->data.scalar.value;
        if (strcmp(key, "http") == 0)
            http = k;
        else if (probe == NULL && (strcmp(key, "send") == 0 || strcmp(key, "expect") == 0))
            probe = k;
    }
    if (http == NULL || probe == NULL)
        return 0;
    const yaml_node_t *later = http->start_mark.index > probe->start_mark.index ? http : probe;
    return sp_cfg_fail(w, later->start_mark,
                       "'http' and '%s' cannot both be set in %s (an HTTP check sends its own "
                       "request and judges the reply by its status code)",
                       (const char *)probe->data.scalar.value, where);
}

int sp_cfg_parse_health(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                        void *obj, const char *what)
{
    struct sp_upstream_conf *up = obj;
    char where[128];
    (void)f;

    int rc = sp_cfg_expect(w, val, YAML_MAPPING_NODE, what);
    if (rc != 0)
        return rc;
    up->health.enabled = true;
    snprintf(where, sizeof(where), "health_check of upstream '%.64s'", up->name);
    rc = sp_cfg_walk_map(w, val, health_fields, SP_ARRAY_LEN(health_fields), &up->health, where,
                         val->start_mark);
    if (rc == 0)
        rc = check_exclusive(w, val, where);
    return rc != 0 ? rc : check_flap(w, val, &up->health, where);
}

static const char *const all_down_names[SP_ALL_DOWN_COUNT + 1] = {"reject", "fail_open", NULL};

_Static_assert(sizeof(enum sp_all_down) == sizeof(unsigned), "enum sp_all_down size");

const char *sp_all_down_name(enum sp_all_down v)
{
    return (unsigned)v < SP_ALL_DOWN_COUNT ? all_down_names[v] : "unknown";
}

int sp_cfg_parse_all_down(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                          void *obj, const char *what)
{
    struct sp_upstream_conf *up = obj;
    struct sp_cfg_field enum_field = *f;
    enum_field.off = offsetof(struct sp_upstream_conf, all_down);
    enum_field.names = all_down_names;
    up->all_down_mark =
        (struct sp_conf_mark){(int)val->start_mark.line + 1, (int)val->start_mark.column + 1};
    return sp_cfg_parse_enum(w, &enum_field, val, obj, what);
}

static const char *const on_down_names[SP_ON_DOWN_COUNT + 1] = {"keep", "shutdown", NULL};

_Static_assert(sizeof(enum sp_on_server_down) == sizeof(unsigned), "enum sp_on_server_down size");

const char *sp_on_server_down_name(enum sp_on_server_down v)
{
    return (unsigned)v < SP_ON_DOWN_COUNT ? on_down_names[v] : "unknown";
}

int sp_cfg_parse_on_server_down(struct sp_cfg_walk *w, const struct sp_cfg_field *f,
                                yaml_node_t *val, void *obj, const char *what)
{
    struct sp_cfg_field enum_field = *f;
    enum_field.off = offsetof(struct sp_upstream_conf, on_server_down);
    enum_field.names = on_down_names;
    return sp_cfg_parse_enum(w, &enum_field, val, obj, what);
}

int sp_cfg_check_all_down(struct sp_cfg_walk *w, const struct sp_upstream_conf *up)
{
    if (up->all_down != SP_ALL_DOWN_FAIL_OPEN || up->health.enabled)
        return 0;
    return sp_cfg_fail(w, sp_cfg_yaml_mark(up->all_down_mark),
                       "all_down: fail_open in upstream '%.64s' needs a health_check block "
                       "(without active checks no server is ever marked down)",
                       up->name);
}

void sp_cfg_health_free(struct sp_health_conf *hc)
{
    free(hc->send);
    free(hc->expect);
    free(hc->http.path);
    free(hc->http.host);
    hc->send = hc->expect = hc->http.path = hc->http.host = NULL;
}
