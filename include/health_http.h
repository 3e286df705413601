/* health_http.h: the HTTP health check's wire format, kept apart from the I/O so it can be
 * tested alone: the GET request, the strict parse of the reply's status line, and the match of
 * its code against expect_status. No libuv, no sockets. */
#ifndef SPLICER_HEALTH_HTTP_H
#define SPLICER_HEALTH_HTTP_H

#include "config.h"
#include <stdbool.h>
#include <stddef.h>

/* Room for any request sp_health_http_request writes: the path and host are bounded by the
 * config (1024 and 255 bytes). */
#define SP_HEALTH_HTTP_REQ_MAX 1536

/* A status line longer than this is not taken for HTTP. */
#define SP_HEALTH_HTTP_LINE_MAX 512

/* Writes "GET <path> HTTP/1.1" with Host (hc->host, else default_host), Connection: close and a
 * User-Agent into buf. Returns the length, or -ENOSPC when it does not fit. */
int sp_health_http_request(const struct sp_health_http_conf *hc, const char *default_host,
                           char *buf, size_t cap);

/* Parses the start of a reply, buf[0..len), as an HTTP/1.x status line (RFC 9112 section 4:
 * "HTTP/1.D SP 3DIGIT SP reason CRLF", the reason possibly empty; a bare LF is accepted as the
 * line end). Returns 1 with *status set once the whole line is there, 0 while every byte so far
 * can still begin one, -1 as soon as it cannot (SP_CHECK_NOT_HTTP). */
int sp_health_http_status(const char *buf, size_t len, unsigned *status);

/* True when status is in one of hc's expect_status ranges. */
bool sp_health_http_expected(const struct sp_health_http_conf *hc, unsigned status);

#endif
