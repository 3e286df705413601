/* config_deploy.c: the deployment keys of a listener (see config_deploy.h): allow/deny lists of
 * CIDR prefixes, the peers trusted with a PROXY header, and TLS SNI routes, with their messages.
 * The values themselves are parsed by the pure cidr and tls_sni modules, so the proxy and the
 * config agree on what is valid. */
#include "config_deploy.h"
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* "10.1.2.3/8" -> "10.0.0.0/8", for the message about host bits; "" if it cannot say. */
static void network_of(const char *s, char *buf, size_t size)
{
    char host[INET6_ADDRSTRLEN];
    unsigned char a[16];
    const char *slash = strchr(s, '/');
    size_t hl = slash != NULL ? (size_t)(slash - s) : 0;
    int family = AF_INET;

    buf[0] = '\0';
    if (slash == NULL || hl >= sizeof(host))
        return;
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (inet_pton(AF_INET, host, a) != 1) {
        family = AF_INET6;
        if (inet_pton(AF_INET6, host, a) != 1)
            return;
    }
    unsigned bits = (unsigned)atoi(slash + 1), bytes = family == AF_INET ? 4 : 16;
    for (unsigned i = 0; i < bytes; i++) {
        unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? bits - 8 * i : 0;
        a[i] &= (unsigned char)(0xff00u >> keep);
    }
    if (inet_ntop(family, a, host, sizeof(host)) != NULL)
        snprintf(buf, size, "%s/%u", host, bits);
}

static int cidr_error(struct sp_cfg_walk *w, yaml_node_t *item, const char *s, const char *what,
                      int rc)
{
    char net[INET6_ADDRSTRLEN + 8];
    if (rc == -ENOMEM)
        return sp_cfg_oom(w);
    if (rc == -ERANGE)
        return sp_cfg_fail(w, item->start_mark,
                           "prefix length out of range in '%.64s' in %s (at most 32 for IPv4, "
                           "128 for IPv6)",
                           s, what);
    if (rc == -EDOM) {
        network_of(s, net, sizeof(net));
        return sp_cfg_fail(w, item->start_mark,
                           "'%.64s' in %s has bits set past its prefix length (did you mean "
                           "'%s'?)",
                           s, what, net);
    }
    return sp_cfg_fail(w, item->start_mark,
                       "invalid address '%.64s' in %s (expected an IPv4 or IPv6 address, alone "
                       "or with a prefix length, as in 10.0.0.0/8)",
                       s, what);
}

int sp_cfg_parse_cidrs(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                       void *obj, const char *what)
{
    struct sp_cidr_list *l = (struct sp_cidr_list *)(void *)((char *)obj + f->off);
    int rc = sp_cfg_expect(w, val, YAML_SEQUENCE_NODE, what);
    if (rc != 0)
        return rc;
    for (yaml_node_item_t *it = val->data.sequence.items.start; it < val->data.sequence.items.top;
         it++) {
        yaml_node_t *item = sp_cfg_node(w, *it);
        const char *s;
        rc = sp_cfg_scalar(w, item, what, &s);
        if (rc != 0)
            return rc;
        rc = sp_cidr_list_add(l, s);
        if (rc != 0)
            return cidr_error(w, item, s, what, rc);
    }
    return 0;
}

/* ---- who may send a PROXY header -------------------------------------------------------- */

int sp_cfg_parse_accept_pp(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                           void *obj, const char *what)
{
    struct sp_listener_conf *l = obj;
    int rc = sp_cfg_parse_bool(w, f, val, obj, what);
    if (rc == 0)
        l->accept_pp_mark = sp_cfg_mark(val->start_mark);
    return rc;
}

int sp_cfg_parse_proxy_from(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                            void *obj, const char *what)
{
    struct sp_listener_conf *l = obj;
    int rc = sp_cfg_parse_cidrs(w, f, val, obj, what);
    if (rc == 0)
        l->proxy_from_mark = sp_cfg_mark(val->start_mark);
    return rc;
}

int sp_cfg_check_proxy_from(struct sp_cfg_walk *w, const struct sp_listener_conf *l)
{
    bool from = l->proxy_from_mark.line > 0;
    /* a unix listener's peers are whoever its file lets in (config_unix.c) */
    if (l->accept_proxy_protocol && !from && l->addr.ss_family != AF_UNIX)
        return sp_cfg_fail(w, sp_cfg_yaml_mark(l->accept_pp_mark),
                           "listener '%.64s' accepts PROXY headers but has no "
                           "'proxy_protocol_from': list the load balancers allowed to send one "
                           "(a header from any other peer would choose its own client "
                           "address); to trust every peer, write proxy_protocol_from: "
                           "[\"0.0.0.0/0\", \"::/0\"]",
                           l->name);
    if (from && !l->accept_proxy_protocol)
        return sp_cfg_fail(w, sp_cfg_yaml_mark(l->proxy_from_mark),
                           "'proxy_protocol_from' in listener '%.64s' needs "
                           "accept_proxy_protocol: true (remove it, or turn PROXY headers on)",
                           l->name);
    if (from && l->proxy_from.n == 0)
        return sp_cfg_fail(w, sp_cfg_yaml_mark(l->proxy_from_mark),
                           "'proxy_protocol_from' in listener '%.64s' is empty: every connection "
                           "would be closed (list the load balancers' addresses)",
                           l->name);
    return 0;
}

/* ---- routes ----------------------------------------------------------------------------- */

/* What the route key parsers get as obj: the route, and the listener it belongs to. */
struct route_obj {
    struct sp_listener_conf *l;
    struct sp_route_conf *r;
    int idx;
};

static int p_route_sni(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                       void *obj, const char *what)
{
    struct route_obj *ro = obj;
    struct sp_sni_routes *t = &ro->l->sni_routes;
    (void)f;

    int rc = sp_cfg_expect(w, val, YAML_SEQUENCE_NODE, what);
    if (rc != 0)
        return rc;
    size_t n = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
    if (n == 0)
        return sp_cfg_fail(w, val->start_mark, "%s needs at least one pattern", what);
    ro->r->sni = calloc(n, sizeof(*ro->r->sni));
    if (ro->r->sni == NULL)
        return sp_cfg_oom(w);
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = sp_cfg_node(w, val->data.sequence.items.start[i]);
        const char *s;
        if ((rc = sp_cfg_scalar(w, item, what, &s)) != 0)
            return rc;
        rc = sp_sni_routes_add(t, s, ro->idx);
        if (rc == -EEXIST) {
            int other = -1;
            for (size_t j = 0; j < t->n; j++)
                other = strcasecmp(t->v[j].pattern, s) == 0 ? t->v[j].route : other;
            return sp_cfg_fail(w, item->start_mark,
                               "sni pattern '%.64s' for %s is already used by route %d", s, what,
                               other + 1);
        }
        if (rc == -EINVAL)
            return sp_cfg_fail(w, item->start_mark,
                               "invalid sni pattern '%.64s' for %s (expected a host name, or "
                               "'*.' and a host name, as in *.example.com)",
                               s, what);
        if (rc != 0 || (ro->r->sni[i] = strdup(t->v[t->n - 1].pattern)) == NULL)
            return sp_cfg_oom(w);
        ro->r->nsni++;
    }
    return 0;
}

static int p_route_upstream(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                            void *obj, const char *what)
{
    struct route_obj *ro = obj;
    const char *s;
    (void)f;

    int rc = sp_cfg_scalar(w, val, what, &s);
    if (rc != 0)
        return rc;
    ro->r->upstream_mark.line = (int)val->start_mark.line + 1;
    ro->r->upstream_mark.col = (int)val->start_mark.column + 1;
    ro->r->upstream_name = strdup(s);
    return ro->r->upstream_name == NULL ? sp_cfg_oom(w) : 0;
}

static const struct sp_cfg_field route_fields[] = {
    {.key = "sni", .parse = p_route_sni, .required = true},
    {.key = "upstream", .parse = p_route_upstream, .required = true},
};

int sp_cfg_parse_routes(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                        void *obj, const char *what)
{
    struct sp_listener_conf *l = obj;
    (void)f;

    int rc = sp_cfg_expect(w, val, YAML_SEQUENCE_NODE, what);
    if (rc != 0)
        return rc;
    size_t n = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
    if (n == 0)
        return sp_cfg_fail(w, val->start_mark,
                           "%s is empty (remove it, or add a route with sni and upstream)", what);
    l->routes = calloc(n, sizeof(*l->routes));
    if (l->routes == NULL)
        return sp_cfg_oom(w);
    l->nroutes = n;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = sp_cfg_node(w, val->data.sequence.items.start[i]);
        struct route_obj ro = {l, &l->routes[i], (int)i};
        char where[128];
        snprintf(where, sizeof(where), "route %zu of listener '%.64s'", i + 1, l->name);
        l->routes[i].mark.line = (int)item->start_mark.line + 1;
        l->routes[i].mark.col = (int)item->start_mark.column + 1;
        rc = sp_cfg_expect(w, item, YAML_MAPPING_NODE, where);
        if (rc == 0)
            rc = sp_cfg_walk_map(w, item, route_fields, SP_ARRAY_LEN(route_fields), &ro, where,
                                 item->start_mark);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int sp_cfg_resolve_routes(struct sp_cfg_walk *w, struct sp_config *cfg, struct sp_listener_conf *l)
{
    for (size_t i = 0; i < l->nroutes; i++) {
        struct sp_route_conf *r = &l->routes[i];
        const char *best = NULL;
        unsigned best_d = 3;
        r->upstream = sp_cfg_find_upstream(w, r->upstream_name);
        if (r->upstream != NULL)
            continue;
        /* undefined: only now is a suggestion worth an edit distance per upstream */
        for (size_t j = 0; j < cfg->nupstreams; j++) {
            unsigned d = sp_cfg_distance(r->upstream_name, cfg->upstreams[j].name);
            if (d < best_d) {
                best_d = d;
                best = cfg->upstreams[j].name;
            }
        }
        yaml_mark_t m = sp_cfg_yaml_mark(r->upstream_mark);
        if (best != NULL)
            return sp_cfg_fail(w, m,
                               "route %zu of listener '%.64s' uses undefined upstream '%.64s' "
                               "(did you mean '%.64s'?)",
                               i + 1, l->name, r->upstream_name, best);
        return sp_cfg_fail(w, m, "route %zu of listener '%.64s' uses undefined upstream '%.64s'",
                           i + 1, l->name, r->upstream_name);
    }
    return 0;
}

void sp_cfg_deploy_free(struct sp_listener_conf *l)
{
    for (size_t i = 0; i < l->nroutes; i++) {
        struct sp_route_conf *r = &l->routes[i];
        for (size_t j = 0; j < r->nsni; j++)
            free(r->sni[j]);
        free(r->sni);
        free(r->upstream_name);
    }
    free(l->routes);
    l->routes = NULL;
    l->nroutes = 0;
    sp_sni_routes_deinit(&l->sni_routes);
    sp_cidr_list_deinit(&l->allow);
    sp_cidr_list_deinit(&l->deny);
    sp_cidr_list_deinit(&l->proxy_from);
}
