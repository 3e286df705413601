/* config_unix.h: internal to the config module. unix: addresses for listen and servers, the
 * listener key unix_mode, and the cross-checks that refuse what cannot work on a Unix socket
 * (keys that match client IP addresses where clients have none). Not for other modules. */
#ifndef SPLICER_CONFIG_UNIX_H
#define SPLICER_CONFIG_UNIX_H

#include "config.h"
#include "config_yaml.h"

/* The unix: address `s` (the scalar of `val`, for which sp_parse_is_unix is true) into *ss and
 * *len; otherwise a FILE:LINE:COL error that says what is wrong with it. */
int sp_cfg_unix_addr(struct sp_cfg_walk *w, const yaml_node_t *val, const char *s, const char *what,
                     struct sockaddr_storage *ss, socklen_t *len);

/* unix_mode of the listener obj: permission bits as an octal string, "0660" or "660". */
int sp_cfg_parse_unix_mode(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                           void *obj, const char *what);

/* A CIDR sequence into obj + f->off (as sp_cfg_parse_cidrs), and its position into the struct
 * sp_conf_mark at obj + f->off2, for the cross-checks. */
int sp_cfg_parse_cidrs_marked(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                              void *obj, const char *what);

/* The cross-checks of listener l once it and its upstreams are resolved (`listen` is where its
 * listen value was written):
 *   - unix_mode only on a listener with a socket file (not TCP, not abstract);
 *   - without accept_proxy_protocol, a unix listener's clients have no IP address: allow, deny,
 *     limits and source_hash balancing (of its upstream or a route's) are refused;
 *   - with it, the peers sending headers are whoever the file's permissions let in:
 *     proxy_protocol_from (an IP list) is refused, and so is an abstract socket, which has no
 *     permissions at all. */
int sp_cfg_check_unix(struct sp_cfg_walk *w, const struct sp_listener_conf *l, yaml_mark_t listen);

#endif
