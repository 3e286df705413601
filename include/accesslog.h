/* accesslog.h: one line per closed connection, JSON or text. Workers format lines into a
 * buffer of their own and hand full buffers (or, after a short delay, partial ones) to one
 * writer thread, so a slow disk or a full stderr pipe never stalls the relay: when the writer
 * falls behind, whole buffers are dropped and counted instead. */
#ifndef SPLICER_ACCESSLOG_H
#define SPLICER_ACCESSLOG_H

#include "config.h"
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* How a connection ended, as logged. */
enum sp_end {
    SP_END_CLIENT_FIN = 0, /* both sides closed; the client closed first */
    SP_END_UPSTREAM_FIN,   /* both sides closed; the server closed first */
    SP_END_CLIENT_RESET,   /* the client reset or failed */
    SP_END_UPSTREAM_RESET, /* the server reset or failed */
    SP_END_IDLE_TIMEOUT,
    SP_END_CONNECT_FAILED,  /* every attempt failed (refused, timed out) */
    SP_END_NO_SERVER,       /* no usable server */
    SP_END_SHUTDOWN,        /* closed by shutdown_timeout or a second signal */
    SP_END_LOCAL_ERROR,     /* out of fds or memory on our side */
    SP_END_DENIED,          /* refused by the listener's allow/deny rules */
    SP_END_BAD_HEADER,      /* a malformed PROXY header or TLS ClientHello */
    SP_END_INSPECT_TIMEOUT, /* the PROXY header or ClientHello did not arrive in time */
    SP_END_SOURCE_LIMIT,    /* the PROXY header's client is over its listener's limits */
    SP_END_SERVER_DOWN,     /* reset by on_server_down: shutdown (server down or removed) */
    SP_END_COUNT
};

const char *sp_end_name(enum sp_end e);

struct sp_access_entry {
    const char *listener;          /* borrowed */
    const struct sockaddr *client; /* borrowed */
    const char *upstream;          /* borrowed */
    const char *server;            /* borrowed; NULL when no server was reached */
    uint64_t bytes_up;             /* client to server */
    uint64_t bytes_down;           /* server to client */
    uint64_t duration_ms;
    unsigned attempts; /* connect attempts made */
    enum sp_end end;
};

/* Formats one line (with its newline) into buf; returns the length it needs, which may exceed
 * len (then only the first len bytes were written and nothing usable, as with snprintf, but no
 * NUL is written). Every field is written whole, whatever its length. The line holds exactly one
 * newline, its last byte: JSON strings are escaped as JSON; in text, a name that is empty, is
 * "-", or holds a space, '"', '\', '=', a control byte or DEL is written in double quotes with
 * \" \\ \n \r \t and \xHH escapes (README, "Access log"). buf may be NULL when len is 0.
 * Pure apart from reading the clock; any thread. */
size_t sp_access_format(char *buf, size_t len, const struct sp_access_entry *e,
                        enum sp_log_format format);

struct sp_access_log;

/* Starts the writer thread. `conf` may be disabled (nothing is written until a reload enables
 * it). Returns 0 or -errno (the file could not be opened). Main thread.
 *
 * From the first time a destination is enabled until sp_access_log_stop, the log holds one
 * descriptor number (>= 3) that the writer writes to; reconfiguring only changes what it refers
 * to (dup3), so no number the writer may be using is ever closed and reused under it. */
int sp_access_log_start(const struct sp_access_log_conf *conf, struct sp_access_log **out);

/* Switches destination after a reload (and reopens a file, so SIGHUP also serves log
 * rotation); "off" points the descriptor at /dev/null, letting go of the old file. Lines the
 * writer is writing at that moment finish on the old destination, the following ones go to the
 * new one. On failure the old destination stays and -errno is returned. Main thread. */
int sp_access_log_reconfigure(struct sp_access_log *al, const struct sp_access_log_conf *conf);

/* Writes what is queued and stops the thread. NULL is a no-op. Main thread, after the workers
 * have flushed. */
void sp_access_log_stop(struct sp_access_log *al);

/* Buffers handed over but never written because the writer was too far behind, plus single
 * lines lost for want of memory. Any thread. */
uint64_t sp_access_log_dropped(const struct sp_access_log *al);

/* A worker's line buffer. */
struct sp_access_buf {
    struct sp_access_log *log; /* borrowed */
    char *data;                /* owned; NULL until the first line */
    size_t len, cap;           /* bytes used, bytes allocated */
};

void sp_access_buf_init(struct sp_access_buf *b, struct sp_access_log *log);

/* Appends a line; hands the buffer over when it is nearly full, or when the line does not fit
 * (a line longer than a buffer gets one of its own). Returns true when the buffer holds lines not
 * yet handed over (the caller arranges a flush soon). Worker thread. */
bool sp_access_buf_add(struct sp_access_buf *b, const struct sp_access_entry *e,
                       enum sp_log_format format);

/* Hands over whatever is buffered. Worker thread. */
void sp_access_buf_flush(struct sp_access_buf *b);

/* Flushes and frees. */
void sp_access_buf_deinit(struct sp_access_buf *b);

#endif
