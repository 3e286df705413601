/* strbuf.h: a growable byte buffer for building text (metrics, JSON, HTTP bodies). Allocation
 * failures come back as -ENOMEM and leave the buffer as it was; nothing here aborts. */
#ifndef SPLICER_STRBUF_H
#define SPLICER_STRBUF_H

#include <stddef.h>

struct sp_strbuf {
    char *data; /* owned; NUL-terminated once anything was appended; NULL before */
    size_t len; /* bytes in use, not counting the NUL */
    size_t cap; /* bytes allocated */
};

/* Makes an empty buffer; allocates nothing. */
void sp_strbuf_init(struct sp_strbuf *sb);

/* Frees the storage and leaves an empty buffer that may be reused. */
void sp_strbuf_deinit(struct sp_strbuf *sb);

/* Empties the buffer and keeps the storage for reuse. */
void sp_strbuf_reset(struct sp_strbuf *sb);

/* Appends n bytes (which may include NULs). Returns 0, -ENOMEM (the buffer is unchanged), or
 * -EOVERFLOW when the size would not fit a size_t. */
int sp_strbuf_append(struct sp_strbuf *sb, const void *p, size_t n);

/* Appends a NUL-terminated string; as sp_strbuf_append. */
int sp_strbuf_puts(struct sp_strbuf *sb, const char *s);

/* Appends printf-formatted text. Returns 0, -ENOMEM or -EINVAL (a bad format); on failure the
 * buffer holds what it held before. */
int sp_strbuf_appendf(struct sp_strbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Hands the data over to the caller (free with free(); "" when empty, NULL only on -ENOMEM)
 * and leaves the buffer empty. *len receives the length when len is not NULL. */
char *sp_strbuf_steal(struct sp_strbuf *sb, size_t *len);

#endif
