/* config_admin.h: internal to the config module. admin.token_file: the file is read and checked
 * while the configuration loads, so `splicer -t`, a start and a SIGHUP reload report the same
 * FILE:LINE:COL errors and a reload picks up a new token. Not for other modules. */
#ifndef SPLICER_CONFIG_ADMIN_H
#define SPLICER_CONFIG_ADMIN_H

#include "config.h"
#include "config_yaml.h"

/* The shortest and longest token accepted, in characters. */
#define SP_ADMIN_TOKEN_MIN 16
#define SP_ADMIN_TOKEN_MAX 4096

/* `token_file` of the admin block (obj is the struct sp_admin_conf): reads the file and stores
 * its path and the token (trailing CR/LF removed) in a->token_file, a->token and a->token_len.
 * Fails at the value's position when the file cannot be read, is not a regular file, may be
 * read or written by other users, is empty or too long, or holds something that is not one
 * line of printable ASCII of SP_ADMIN_TOKEN_MIN characters or more. */
int sp_cfg_parse_token_file(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                            void *obj, const char *what);

/* Top-level `control_socket` (obj is the struct sp_config): an absolute path of at most
 * SP_CONTROL_PATH_MAX bytes for the Unix socket of binary upgrades; null (or absent) is off. */
int sp_cfg_parse_control_socket(struct sp_cfg_walk *w, const struct sp_cfg_field *f,
                                yaml_node_t *val, void *obj, const char *what);

/* Frees (and wipes) what token_file put into a. */
void sp_cfg_admin_free(struct sp_admin_conf *a);

#endif
