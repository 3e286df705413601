/* config_health.h: internal to the config module. The parser of an upstream's `health_check`
 * block: timing (interval, timeout, rise, fall), the send/expect probe and the `http:` check with
 * its path, Host header and accepted status codes; `all_down` and `on_server_down`. */
#ifndef SPLICER_CONFIG_HEALTH_H
#define SPLICER_CONFIG_HEALTH_H

#include "config.h"
#include "config_yaml.h"

/* `health_check` of the upstream obj: a mapping into obj's sp_health_conf, whose defaults the
 * caller has set. `http` and `send`/`expect` are mutually exclusive. */
int sp_cfg_parse_health(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                        void *obj, const char *what);

/* `all_down` of the upstream obj: reject | fail_open, with its position kept for the
 * cross-check. */
int sp_cfg_parse_all_down(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                          void *obj, const char *what);

/* `on_server_down` of the upstream obj: keep | shutdown. */
int sp_cfg_parse_on_server_down(struct sp_cfg_walk *w, const struct sp_cfg_field *f,
                                yaml_node_t *val, void *obj, const char *what);

/* Once the whole upstream is parsed: fail_open without a health_check block is an error (no
 * server would ever be marked down). */
int sp_cfg_check_all_down(struct sp_cfg_walk *w, const struct sp_upstream_conf *up);

/* Frees what sp_cfg_parse_health allocated. */
void sp_cfg_health_free(struct sp_health_conf *hc);

#endif
