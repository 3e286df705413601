/* config_deploy.h: internal to the config module. The parsers for the deployment keys of a
 * listener (allow/deny CIDR lists, who may send a PROXY header, SNI routes) and the cross-check
 * that resolves the routes' upstreams, kept out of config.c so that each file stays one screenful
 * of concerns. */
#ifndef SPLICER_CONFIG_DEPLOY_H
#define SPLICER_CONFIG_DEPLOY_H

#include "config.h"
#include "config_yaml.h"

/* A sequence of CIDR strings into the struct sp_cidr_list at obj + f->off. */
int sp_cfg_parse_cidrs(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                       void *obj, const char *what);

/* accept_proxy_protocol of the listener obj: a bool, with its position kept for resolve(). */
int sp_cfg_parse_accept_pp(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                           void *obj, const char *what);

/* proxy_protocol_from of the listener obj: a CIDR sequence, with its position kept. */
int sp_cfg_parse_proxy_from(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                            void *obj, const char *what);

/* The cross-check of those two keys once the listener is parsed: accept_proxy_protocol needs a
 * non-empty proxy_protocol_from (a header from anyone lets any client choose its address), and
 * proxy_protocol_from needs accept_proxy_protocol. Fails at the key that is out of place. */
int sp_cfg_check_proxy_from(struct sp_cfg_walk *w, const struct sp_listener_conf *l);

/* `routes` of the listener obj: a non-empty sequence of {sni: [patterns], upstream: NAME}.
 * Fills l->routes and l->sni_routes; a pattern used twice in one listener is an error. */
int sp_cfg_parse_routes(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                        void *obj, const char *what);

/* Points each route of l at its upstream in cfg; fails at the route's upstream value when the
 * name is not defined (suggesting the nearest one). */
int sp_cfg_resolve_routes(struct sp_cfg_walk *w, struct sp_config *cfg, struct sp_listener_conf *l);

/* The upstream called `name` in the config being loaded, or NULL. A binary search (config.c
 * sorts the names before resolving references), so references cost O(log n) each. */
struct sp_upstream_conf *sp_cfg_find_upstream(struct sp_cfg_walk *w, const char *name);

/* Frees what the deployment keys of l own (routes, CIDR lists, the SNI table). */
void sp_cfg_deploy_free(struct sp_listener_conf *l);

#endif
