/* accesslog.c: access log lines, formatted on the workers and written by one thread. */
#include "accesslog.h"

#include "common.h"
#include "log.h"
#include "sock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define BUF_SIZE    (16 * 1024)       /* one worker chunk */
#define QUEUE_LIMIT (4 * 1024 * 1024) /* bytes waiting for the writer before chunks are dropped */
#define LINE_GUESS  1024              /* room kept for the next line; longer ones still fit */

static const char *const end_names[SP_END_COUNT] = {
    "client_fin",     "upstream_fin",    "client_reset", "upstream_reset", "idle_timeout",
    "connect_failed", "no_server",       "shutdown",     "local_error",    "denied",
    "bad_header",     "inspect_timeout", "source_limit", "server_down",
};

const char *sp_end_name(enum sp_end e)
{
    return (unsigned)e < SP_END_COUNT ? end_names[e] : "unknown";
}

/* ---- formatting -------------------------------------------------------------------------- */

/* Every field is written in full: names come from the config and have no length limit, and a
 * cut line would be silently wrong. */
struct out {
    char *p;
    size_t len;
    size_t used; /* may run past len: then only the count is kept */
};

static const char hex[] = "0123456789abcdef";

static void put(struct out *o, const char *s, size_t n)
{
    if (o->used < o->len)
        memcpy(o->p + o->used, s, SP_MIN(n, o->len - o->used));
    o->used += n;
}

static void put_str(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_u64(struct out *o, uint64_t v)
{
    char tmp[20]; /* UINT64_MAX has 20 digits */
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put(o, tmp + i, sizeof(tmp) - i);
}

/* A JSON string: names come from the config and may hold quotes or control bytes. */
static void put_json_str(struct out *o, const char *s)
{
    put(o, "\"", 1);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            put(o, esc, 2);
        } else if (c < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(o, esc, 6);
        } else {
            put(o, s, 1);
        }
    }
    put(o, "\"", 1);
}

/* The text format's rule, as the README states it: a value is written bare when it is not empty,
 * is not "-" (which stands for "none") and holds no space, '"', '\', '=', control byte or DEL;
 * otherwise it is quoted. So one entry is one line, and `key=value` pairs split unambiguously
 * whatever the names hold. */
static bool text_bare(const char *s)
{
    if (*s == '\0' || strcmp(s, "-") == 0)
        return false;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= ' ' || c == 0x7f || c == '"' || c == '\\' || c == '=')
            return false;
    }
    return true;
}

static void put_text_value(struct out *o, const char *s)
{
    if (text_bare(s)) {
        put_str(o, s);
        return;
    }
    put(o, "\"", 1);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[4] = {'\\', (char)c};
        if (c == '"' || c == '\\') {
            put(o, esc, 2);
        } else if (c == '\n' || c == '\r' || c == '\t') {
            esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            put(o, esc, 2);
        } else if (c < 0x20 || c == 0x7f) {
            esc[1] = 'x';
            esc[2] = hex[c >> 4];
            esc[3] = hex[c & 15];
            put(o, esc, 4);
        } else {
            put(o, s, 1);
        }
    }
    put(o, "\"", 1);
}

static void put_time(struct out *o)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    char tmp[96]; /* room for seven ints of any value: never cut */
    int n = snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(tv.tv_usec / 1000));
    if (n > 0)
        put(o, tmp, SP_MIN((size_t)n, sizeof(tmp) - 1));
}

static void format_json(struct out *o, const struct sp_access_entry *e, const char *client)
{
    put_str(o, "{\"time\":\"");
    put_time(o);
    put_str(o, "\",\"listener\":");
    put_json_str(o, e->listener);
    put_str(o, ",\"client\":");
    put_json_str(o, client);
    put_str(o, ",\"upstream\":");
    put_json_str(o, e->upstream);
    put_str(o, ",\"server\":");
    if (e->server != NULL)
        put_json_str(o, e->server);
    else
        put_str(o, "null");
    put_str(o, ",\"bytes_up\":");
    put_u64(o, e->bytes_up);
    put_str(o, ",\"bytes_down\":");
    put_u64(o, e->bytes_down);
    put_str(o, ",\"duration_ms\":");
    put_u64(o, e->duration_ms);
    put_str(o, ",\"attempts\":");
    put_u64(o, e->attempts);
    put_str(o, ",\"end\":\"");
    put_str(o, sp_end_name(e->end));
    put_str(o, "\"}\n");
}

static void format_text(struct out *o, const struct sp_access_entry *e, const char *client)
{
    put_time(o);
    put_str(o, " listener=");
    put_text_value(o, e->listener);
    put_str(o, " client=");
    if (strcmp(client, "-") == 0)
        put_str(o, client);
    else /* an address we formatted; a unix: path may hold anything but a NUL */
        put_text_value(o, client);
    put_str(o, " upstream=");
    put_text_value(o, e->upstream);
    put_str(o, " server=");
    if (e->server != NULL)
        put_text_value(o, e->server);
    else
        put_str(o, "-");
    put_str(o, " up=");
    put_u64(o, e->bytes_up);
    put_str(o, " down=");
    put_u64(o, e->bytes_down);
    put_str(o, " duration_ms=");
    put_u64(o, e->duration_ms);
    put_str(o, " attempts=");
    put_u64(o, e->attempts);
    put_str(o, " end=");
    put_str(o, sp_end_name(e->end));
    put_str(o, "\n");
}

size_t sp_access_format(char *buf, size_t len, const struct sp_access_entry *e,
                        enum sp_log_format format)
{
    struct out o = {.p = buf, .len = len};
    char client[SP_ADDRSTRLEN] = "-";
    if (e->client != NULL)
        sp_sock_addr_str(e->client, client, sizeof(client));
    if (format == SP_LOG_FORMAT_TEXT)
        format_text(&o, e, client);
    else
        format_json(&o, e, client);
    return o.used;
}

/* ---- the writer thread ------------------------------------------------------------------- */

/* Descriptors. The writer writes without holding the lock, so the number it writes to must not
 * be closed (and handed by the kernel to the next accept4()) while it may still be writing: that
 * sends log lines into a client's connection. So the log has one descriptor number, `fd`, from
 * the first time a destination is enabled until sp_access_log_stop, and a reopen only changes
 * what that number refers to: dup3(new, fd) then close(new). dup3 swaps the file atomically for
 * a concurrent write(): a write in flight finishes on the old file (which stays alive until it
 * returns), the next one goes to the new file. "off" points the number at /dev/null, which lets
 * go of the old file. Only sp_access_log_stop closes it, after the writer has exited. */

struct chunk {
    struct chunk *next;
    size_t len;
    char data[];
};

struct sp_access_log {
    uv_thread_t thread;
    uv_mutex_t lock;
    uv_cond_t wake;
    struct chunk *head, *tail; /* queued, under lock */
    size_t queued;             /* bytes queued, under lock */
    int fd; /* owned; -1 until a destination is first enabled, then that number until stop.
             * Set under lock by the main thread, which alone changes what it refers to */
    bool stop;
    _Atomic uint64_t dropped;
};

static bool dest_on(const struct sp_access_log_conf *conf)
{
    return conf->enabled && conf->path != NULL;
}

/* The descriptor conf names: stderr/stdout themselves (*own false), a file opened for appending,
 * or /dev/null for "off". Returns 0 or -errno. */
static int open_dest(const struct sp_access_log_conf *conf, int *fd, bool *own)
{
    *own = false;
    if (dest_on(conf) && strcmp(conf->path, "stderr") == 0) {
        *fd = STDERR_FILENO;
        return 0;
    }
    if (dest_on(conf) && strcmp(conf->path, "stdout") == 0) {
        *fd = STDOUT_FILENO;
        return 0;
    }
    if (dest_on(conf))
        *fd = open(conf->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    else
        *fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (*fd == -1)
        return -errno;
    *own = true;
    return 0;
}

/* Points the log's descriptor at conf's destination (see "Descriptors" above). On failure
 * nothing changes. Main thread (or start, before the writer runs). */
static int set_dest(struct sp_access_log *al, const struct sp_access_log_conf *conf)
{
    if (al->fd == -1 && !dest_on(conf))
        return 0; /* never enabled: there is nothing to silence */
    int src;
    bool own;
    int rc = open_dest(conf, &src, &own);
    if (rc != 0)
        return rc;
    if (al->fd == -1) {
        /* Never 0-2: stop closes this number, and "stderr" must stay a copy of 2. */
        int fd = fcntl(src, F_DUPFD_CLOEXEC, 3);
        if (fd == -1) {
            rc = -errno;
        } else {
            uv_mutex_lock(&al->lock);
            al->fd = fd;
            uv_mutex_unlock(&al->lock);
        }
    } else {
        int r;
        do
            r = dup3(src, al->fd, O_CLOEXEC);
        while (r == -1 && errno == EINTR);
        rc = r == -1 ? -errno : 0;
    }
    if (own)
        close(src);
    return rc;
}

/* Writes all of p, waiting when a non-blocking destination (an inherited stderr pipe) is full,
 * so lines are not cut there. Gives up on other errors: there is nowhere to report them but the
 * log itself. */
static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w == -1 && errno == EINTR)
            continue;
        if (w == -1 && errno == EAGAIN) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll(&pfd, 1, -1) == -1 && errno != EINTR)
                return;
            continue;
        }
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void writer(void *arg)
{
    struct sp_access_log *al = arg;
    uv_mutex_lock(&al->lock);
    for (;;) {
        while (al->head == NULL && !al->stop)
            uv_cond_wait(&al->wake, &al->lock);
        struct chunk *c = al->head;
        int fd = al->fd; /* stays open until stop, which waits for this thread */
        al->head = al->tail = NULL;
        al->queued = 0;
        if (c == NULL && al->stop)
            break;
        uv_mutex_unlock(&al->lock);
        while (c != NULL) {
            struct chunk *next = c->next;
            if (fd != -1)
                write_all(fd, c->data, c->len);
            free(c);
            c = next;
        }
        uv_mutex_lock(&al->lock);
    }
    uv_mutex_unlock(&al->lock);
}

int sp_access_log_start(const struct sp_access_log_conf *conf, struct sp_access_log **out)
{
    struct sp_access_log *al = calloc(1, sizeof(*al));
    if (al == NULL)
        return -ENOMEM;
    al->fd = -1;
    uv_mutex_init(&al->lock);
    uv_cond_init(&al->wake);
    int rc = set_dest(al, conf);
    if (rc == 0) {
        /* The writer blocks every signal (it inherits this mask): a handler run on it would cut
         * a write to a pipe short, and a reopen before the rest could split a line in two. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        rc = uv_thread_create(&al->thread, writer, al);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (rc != 0) {
        if (al->fd != -1)
            close(al->fd);
        uv_cond_destroy(&al->wake);
        uv_mutex_destroy(&al->lock);
        free(al);
        return rc;
    }
    *out = al;
    return 0;
}

int sp_access_log_reconfigure(struct sp_access_log *al, const struct sp_access_log_conf *conf)
{
    return set_dest(al, conf);
}

void sp_access_log_stop(struct sp_access_log *al)
{
    if (al == NULL)
        return;
    uv_mutex_lock(&al->lock);
    al->stop = true;
    uv_cond_signal(&al->wake);
    uv_mutex_unlock(&al->lock);
    uv_thread_join(&al->thread);
    if (al->fd != -1)
        close(al->fd); /* the writer is gone: nobody can be writing to it */
    uv_cond_destroy(&al->wake);
    uv_mutex_destroy(&al->lock);
    free(al);
}

uint64_t sp_access_log_dropped(const struct sp_access_log *al)
{
    return al != NULL ? atomic_load_explicit(&al->dropped, memory_order_relaxed) : 0;
}

static void hand_over(struct sp_access_log *al, struct chunk *c)
{
    uv_mutex_lock(&al->lock);
    if (al->queued + c->len > QUEUE_LIMIT) {
        uv_mutex_unlock(&al->lock);
        atomic_fetch_add_explicit(&al->dropped, 1, memory_order_relaxed);
        free(c);
        return;
    }
    c->next = NULL;
    if (al->tail != NULL)
        al->tail->next = c;
    else
        al->head = c;
    al->tail = c;
    al->queued += c->len;
    uv_cond_signal(&al->wake);
    uv_mutex_unlock(&al->lock);
}

/* ---- per-worker buffers ------------------------------------------------------------------ */

static struct chunk *chunk_of(char *data)
{
    return (struct chunk *)(void *)(data - offsetof(struct chunk, data));
}

void sp_access_buf_init(struct sp_access_buf *b, struct sp_access_log *log)
{
    *b = (struct sp_access_buf){.log = log};
}

void sp_access_buf_flush(struct sp_access_buf *b)
{
    if (b->data == NULL || b->len == 0)
        return;
    struct chunk *c = chunk_of(b->data);
    c->len = b->len;
    *b = (struct sp_access_buf){.log = b->log};
    hand_over(b->log, c);
}

/* Makes room for `need` more bytes: in the current buffer, or by handing it over and starting
 * one of BUF_SIZE, or bigger for a line longer than that. False when out of memory. */
static bool reserve(struct sp_access_buf *b, size_t need)
{
    if (b->data != NULL && b->cap - b->len >= need)
        return true;
    sp_access_buf_flush(b);
    if (b->data != NULL && b->cap >= need)
        return true;
    if (b->data != NULL)
        free(chunk_of(b->data)); /* empty, and too small */
    b->data = NULL;
    size_t cap = SP_MAX((size_t)BUF_SIZE, need);
    struct chunk *c = malloc(sizeof(*c) + cap);
    if (c == NULL)
        return false;
    *b = (struct sp_access_buf){.log = b->log, .data = c->data, .cap = cap};
    return true;
}

bool sp_access_buf_add(struct sp_access_buf *b, const struct sp_access_entry *e,
                       enum sp_log_format format)
{
    if (b->log == NULL)
        return false;
    /* Most lines are far shorter than LINE_GUESS: hand over a nearly full buffer first. */
    size_t n = 0;
    if (reserve(b, LINE_GUESS)) {
        n = sp_access_format(b->data + b->len, b->cap - b->len, e, format);
        /* A longer line: again in a buffer that fits it (same length: the time is fixed-width). */
        if (n > b->cap - b->len && reserve(b, n))
            n = sp_access_format(b->data + b->len, b->cap - b->len, e, format);
    }
    if (b->data != NULL && n <= b->cap - b->len)
        b->len += n;
    else
        atomic_fetch_add_explicit(&b->log->dropped, 1, memory_order_relaxed);
    return b->len > 0;
}

void sp_access_buf_deinit(struct sp_access_buf *b)
{
    sp_access_buf_flush(b);
    if (b->data != NULL)
        free(chunk_of(b->data));
    b->data = NULL;
}
