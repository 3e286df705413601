/* inspect.c: reading a PROXY header and peeking a TLS ClientHello on a non-blocking socket. */
#include "inspect.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

static enum sp_inspect_status recv_failed(int *err)
{
    if (errno == EAGAIN || errno == EINTR)
        return SP_INSPECT_WAIT;
    *err = errno;
    return SP_INSPECT_ERROR;
}

enum sp_inspect_status sp_pp_read(int fd, struct sp_pp_reader *r, int *err)
{
    size_t room = sizeof(r->buf) - r->have;
    ssize_t n = recv(fd, r->buf + r->have, room, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0)
        return SP_INSPECT_EOF;
    if (n < 0)
        return recv_failed(err);
    int rc = sp_pp_decode(r->buf, r->have + (size_t)n, &r->result);
    if (rc < 0)
        return SP_INSPECT_MALFORMED;
    /* A complete header: take exactly what is left of it. A valid prefix: every byte peeked
     * belongs to the header, so take them all and wait for the rest. */
    size_t take = rc > 0 ? (size_t)rc - r->have : (size_t)n;
    ssize_t got = recv(fd, r->buf + r->have, take, MSG_DONTWAIT);
    if (got != (ssize_t)take)
        return got < 0 ? recv_failed(err) : SP_INSPECT_ERROR;
    r->have += take;
    if (rc > 0)
        return SP_INSPECT_DONE;
    return r->have == sizeof(r->buf) ? SP_INSPECT_MALFORMED : SP_INSPECT_WAIT;
}

/* TLS record header: type (1), version (2), length (2). */
#define RECORD_HEADER 5

size_t sp_sni_need(const unsigned char *buf, size_t n)
{
    size_t end = 0;
    while (end + RECORD_HEADER <= n)
        end += RECORD_HEADER + ((size_t)buf[end + 3] << 8 | buf[end + 4]);
    size_t need = end > n ? end : end + RECORD_HEADER;
    return need < SP_SNI_BUF_MAX ? need : SP_SNI_BUF_MAX;
}

enum sp_inspect_status sp_sni_peek(int fd, unsigned char *scratch, char name[SP_SNI_NAME_MAX],
                                   int *found, int *err, size_t *need)
{
    ssize_t n = recv(fd, scratch, SP_SNI_BUF_MAX, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0)
        return SP_INSPECT_EOF;
    if (n < 0)
        return recv_failed(err);
    int rc = sp_sni_parse(scratch, (size_t)n, name, SP_SNI_NAME_MAX);
    if (rc == 1 || rc == -ENOENT) {
        *found = rc == 1;
        return SP_INSPECT_DONE;
    }
    if (rc == 0) {
        /* The peek was cut at the buffer's size: a hello that does not fit is refused. */
        if ((size_t)n >= SP_SNI_BUF_MAX)
            return SP_INSPECT_MALFORMED;
        *need = sp_sni_need(scratch, (size_t)n);
        return SP_INSPECT_RETRY;
    }
    return SP_INSPECT_MALFORMED;
}
