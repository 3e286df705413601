/* log.c: leveled logging to stderr. One write(2) per line so lines from several threads never
 * interleave; the level is read relaxed because a stale value only delays a change. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level = SP_LOG_INFO;
static _Thread_local int log_thread_id = -1;

static const char *const level_names[SP_LOG_LEVEL_COUNT] = {"debug", "info", "warn", "error"};

void sp_log_set_level(enum sp_log_level level)
{
    atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

int sp_log_level_parse(const char *s, enum sp_log_level *out)
{
    for (int i = 0; i < SP_LOG_LEVEL_COUNT; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum sp_log_level)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = SP_LOG_WARN;
        return 0;
    }
    return -EINVAL;
}

bool sp_log_enabled(enum sp_log_level level)
{
    return (int)level >= atomic_load_explicit(&log_level, memory_order_relaxed);
}

void sp_log_set_thread_id(int id)
{
    log_thread_id = id;
}

void sp_log_write(enum sp_log_level level, const char *fmt, ...)
{
    if (!sp_log_enabled(level))
        return;

    int saved_errno = errno;
    char line[1024];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);

    char who[16];
    if (log_thread_id < 0)
        snprintf(who, sizeof(who), "main");
    else
        snprintf(who, sizeof(who), "w%d", log_thread_id);

    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s [%s] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(tv.tv_usec / 1000), level_names[level], who);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t room = sizeof(line) - (size_t)n - 2; /* keep one byte for the newline */
    size_t len = (size_t)n + (m < 0 ? 0 : ((size_t)m < room ? (size_t)m : room));
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w; /* nowhere to report a failed log write */
    errno = saved_errno;
}

bool sp_ratelimit_pass(struct sp_ratelimit *rl, uint64_t now_ms, unsigned interval_ms,
                       unsigned *suppressed)
{
    if (now_ms < rl->next_ms) {
        rl->suppressed++;
        return false;
    }
    *suppressed = rl->suppressed;
    rl->suppressed = 0;
    rl->next_ms = now_ms + interval_ms;
    return true;
}
