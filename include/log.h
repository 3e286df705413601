/* log.h: leveled logger to stderr; one line per event with time, level and worker id. */
#ifndef SPLICER_LOG_H
#define SPLICER_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum sp_log_level { SP_LOG_DEBUG = 0, SP_LOG_INFO, SP_LOG_WARN, SP_LOG_ERROR, SP_LOG_LEVEL_COUNT };

/* Sets the process-wide threshold. Called from the main thread before workers start
 * (and on reload); readers tolerate a stale value. */
void sp_log_set_level(enum sp_log_level level);

/* Parses "debug", "info", "warn" or "error". Returns 0 or -EINVAL. */
int sp_log_level_parse(const char *s, enum sp_log_level *out);

/* True when messages at `level` are written; check before formatting anything costly. */
bool sp_log_enabled(enum sp_log_level level);

/* Tags this thread's lines with "wN" (worker N) or "main" for id < 0. */
void sp_log_set_thread_id(int id);

/* Keeps a recurring warning (one per connection under overload) to one line per interval:
 * sp_ratelimit_pass returns true when a line may be written now, and *suppressed then holds
 * how many were held back since the last one. Single-threaded: keep one per worker. */
struct sp_ratelimit {
    uint64_t next_ms;
    unsigned suppressed;
};

bool sp_ratelimit_pass(struct sp_ratelimit *rl, uint64_t now_ms, unsigned interval_ms,
                       unsigned *suppressed);

void sp_log_write(enum sp_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define sp_log_debug(...)                                                                          \
    do {                                                                                           \
        if (sp_log_enabled(SP_LOG_DEBUG))                                                          \
            sp_log_write(SP_LOG_DEBUG, __VA_ARGS__);                                               \
    } while (0)
#define sp_log_info(...)  sp_log_write(SP_LOG_INFO, __VA_ARGS__)
#define sp_log_warn(...)  sp_log_write(SP_LOG_WARN, __VA_ARGS__)
#define sp_log_error(...) sp_log_write(SP_LOG_ERROR, __VA_ARGS__)

#endif
