/* parse.h: pure parsers for config scalars. No allocation, no I/O, no libuv.
 * Every function returns 0 on success, -EINVAL for a malformed string and -ERANGE for a
 * well-formed value out of range; *out is written only on success. */
#ifndef SPLICER_PARSE_H
#define SPLICER_PARSE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* "500ms", "2s", "5m", "1h", also "0s"; a bare number or another unit is -EINVAL.
 * Result in milliseconds; more than ~24 days (INT32_MAX ms) is -ERANGE. */
int sp_parse_duration_ms(const char *s, uint64_t *out);

/* Byte size: "65536", "64k", "1m", "1g" (k = KiB, m = MiB, g = GiB, either case).
 * Result up to SIZE_MAX/2. */
int sp_parse_size(const char *s, uint64_t *out);

/* Unsigned decimal integer within [min, max]. No sign, no spaces, no trailing garbage. */
int sp_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* YAML 1.1 style booleans: true/false, yes/no, on/off (case-insensitive). */
int sp_parse_bool(const char *s, bool *out);

/* Numeric address with port: "1.2.3.4:80", "[::1]:80", "*:80" (= 0.0.0.0), "[::]:80".
 * Port 1..65535 (port 0 and above 65535 are -ERANGE). No name resolution. */
int sp_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len);

#endif
