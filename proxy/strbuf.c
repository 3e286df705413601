/* strbuf.c: the growable byte buffer behind metrics, /status and the admin replies. */
#include "strbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sp_strbuf_init(struct sp_strbuf *sb)
{
    sb->data = NULL;
    sb->len = 0;
    sb->cap = 0;
}

void sp_strbuf_deinit(struct sp_strbuf *sb)
{
    free(sb->data);
    sp_strbuf_init(sb);
}

void sp_strbuf_reset(struct sp_strbuf *sb)
{
    sb->len = 0;
    if (sb->data != NULL)
        sb->data[0] = '\0';
}

/* Makes room for `extra` more bytes plus the NUL, doubling so appends stay amortised O(1). */
static int reserve(struct sp_strbuf *sb, size_t extra)
{
    if (extra > SIZE_MAX - 1 - sb->len)
        return -EOVERFLOW;
    size_t need = sb->len + extra + 1;
    if (need <= sb->cap)
        return 0;
    size_t cap = sb->cap != 0 ? sb->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(sb->data, cap);
    if (p == NULL)
        return -ENOMEM;
    sb->data = p;
    sb->cap = cap;
    return 0;
}

int sp_strbuf_append(struct sp_strbuf *sb, const void *p, size_t n)
{
    int rc = reserve(sb, n);
    if (rc != 0)
        return rc;
    if (n != 0)
        memcpy(sb->data + sb->len, p, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
    return 0;
}

int sp_strbuf_puts(struct sp_strbuf *sb, const char *s)
{
    return sp_strbuf_append(sb, s, strlen(s));
}

int sp_strbuf_appendf(struct sp_strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    char small[256];

    /* one formatting pass in the common case: most lines fit the stack buffer */
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n < sizeof(small))
        return sp_strbuf_append(sb, small, (size_t)n);

    int rc = reserve(sb, (size_t)n);
    if (rc != 0)
        return rc;
    va_start(ap, fmt);
    int m = vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    if (m != n) {
        sb->data[sb->len] = '\0';
        return -EINVAL;
    }
    sb->len += (size_t)n;
    return 0;
}

char *sp_strbuf_steal(struct sp_strbuf *sb, size_t *len)
{
    char *p = sb->data;
    if (len != NULL)
        *len = sb->len;
    if (p == NULL)
        p = strdup("");
    sp_strbuf_init(sb);
    return p;
}
