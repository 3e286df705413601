/* common.h: forward declarations and small helpers shared by every module. */
#ifndef SPLICER_COMMON_H
#define SPLICER_COMMON_H

#include <stddef.h>

#ifndef SPLICER_VERSION
#define SPLICER_VERSION "0.0.0"
#endif

#define SP_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define sp_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define SP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SP_MAX(a, b) ((a) > (b) ? (a) : (b))

struct sp_config;
struct sp_listener_conf;
struct sp_upstream_conf;
struct sp_server_conf;
struct sp_pipe;
struct sp_pipe_pool;
struct sp_relay_dir;
struct sp_upstream;
struct sp_server;
struct sp_runtime;
struct sp_balancer;
struct sp_worker;
struct sp_listener;
struct sp_session;
struct sp_server_ctx;

#endif
