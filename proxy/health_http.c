/* health_http.c: the HTTP health check's request and the strict reading of the status line
 * that answers it (see health_http.h). Only the status line is read: the verdict is its code,
 * so headers and body are never waited for. */
#include "health_http.h"
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int sp_health_http_request(const struct sp_health_http_conf *hc, const char *default_host,
                           char *buf, size_t cap)
{
    int n = snprintf(buf, cap,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "User-Agent: splicer-health-check/" SPLICER_VERSION "\r\n"
                     "Accept: */*\r\n"
                     "Connection: close\r\n"
                     "\r\n",
                     hc->path != NULL ? hc->path : "/", hc->host != NULL ? hc->host : default_host);
    return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* reason-phrase = *( HTAB / SP / VCHAR / obs-text ) */
static bool reason_byte(unsigned char c)
{
    return c == '\t' || c >= 0x20;
}

int sp_health_http_status(const char *buf, size_t len, unsigned *status)
{
    static const char version[] = "HTTP/1.";
    size_t i = 0;

    /* Each byte is judged as soon as it is there, so garbage fails at its first byte rather
     * than at the timeout. */
    for (; i < len && i < sizeof(version) - 1; i++) {
        if (buf[i] != version[i])
            return -1;
    }
    if (i < len && !is_digit(buf[i++]))
        return -1;
    if (i < len && buf[i++] != ' ')
        return -1;
    for (size_t d = 0; d < 3; d++) {
        if (i < len && !is_digit(buf[i++]))
            return -1;
    }
    if (i < len && buf[i++] != ' ')
        return -1;
    for (; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == '\n' || (c == '\r' && i + 1 < len && buf[i + 1] == '\n'))
            break;
        if (c == '\r' && i + 1 == len)
            return 0; /* the LF may be on its way */
        if (!reason_byte(c) || c == 0x7f)
            return -1;
    }
    if (i >= len)
        return len >= SP_HEALTH_HTTP_LINE_MAX ? -1 : 0;
    if (i >= SP_HEALTH_HTTP_LINE_MAX)
        return -1;
    const char *code = buf + sizeof(version) + 1;
    unsigned v = (unsigned)(code[0] - '0') * 100 + (unsigned)(code[1] - '0') * 10 +
                 (unsigned)(code[2] - '0');
    /* A code below 100 is no status (RFC 9110 section 15). */
    if (v < 100)
        return -1;
    *status = v;
    return 1;
}

bool sp_health_http_expected(const struct sp_health_http_conf *hc, unsigned status)
{
    for (size_t i = 0; i < hc->nexpect; i++) {
        if (status >= hc->expect[i].lo && status <= hc->expect[i].hi)
            return true;
    }
    return false;
}
