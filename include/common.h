/* common.h: forward declarations and small helpers shared by every module. */
#ifndef SPLICER_COMMON_H
#define SPLICER_COMMON_H

#include <stdatomic.h>
#include <stddef.h>

#ifndef SPLICER_VERSION
#define SPLICER_VERSION "0.0.0"
#endif

#define SP_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define sp_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define SP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SP_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Statistics with a single writing thread and readers elsewhere (the metrics scrape). A relaxed
 * load and store compile to plain moves, so the hot path pays nothing for being readable. */
#define SP_STAT_ADD(c, n)                                                                          \
    atomic_store_explicit(&(c), atomic_load_explicit(&(c), memory_order_relaxed) + (n),            \
                          memory_order_relaxed)
#define SP_STAT_SUB(c, n)                                                                          \
    atomic_store_explicit(&(c), atomic_load_explicit(&(c), memory_order_relaxed) - (n),            \
                          memory_order_relaxed)
#define SP_STAT_GET(c) atomic_load_explicit(&(c), memory_order_relaxed)

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
