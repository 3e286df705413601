/* parse.h: pure parsers for config scalars. No allocation, no I/O, no libuv.
 * Every function returns 0 on success, -EINVAL for a malformed string and -ERANGE for a
 * well-formed value out of range; *out is written only on success. */
#ifndef SPLICER_PARSE_H
#define SPLICER_PARSE_H

#include <stdbool.h>
#include <stddef.h>
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

/* A Unix stream socket address: "unix:/abs/path" (a file) or "unix:@name" (Linux's abstract
 * namespace: sun_path starts with a NUL, no file, gone with the last socket). The path or name
 * is taken byte for byte, without a trailing NUL in the abstract case, so "unix:@x" is what
 * socat's ABSTRACT-CONNECT:x reaches. On success *ss is zero-filled beyond the name and *len is
 * the exact address length. Errors, each a distinct reason for the config's message:
 *   -EINVAL        does not start with "unix:"
 *   -ENOENT        empty: "unix:" or "unix:@"
 *   -EDOM          a relative path (it would depend on the working directory)
 *   -EILSEQ        a control byte (0x01..0x1f, 0x7f) in the path or name
 *   -ENAMETOOLONG  longer than SP_UNIX_PATH_MAX bytes (sun_path is 108 bytes with its NUL) */
#define SP_UNIX_PATH_MAX 107
int sp_parse_unix_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* True when s starts with "unix:", so that the caller reports sp_parse_unix_addr's error. */
bool sp_parse_is_unix(const char *s);

#define SP_HOST_NAME_MAX 254 /* 253 characters of a DNS name and the NUL */

/* A DNS name with port, to be resolved later: "db.internal:5432", "localhost:80". The name is
 * letters, digits, '-' and '.', in labels of 1..63 characters that neither start nor end with
 * '-', 253 characters at most, no trailing dot, and a last label that is not all digits (so
 * "10.0.0.256:80" is malformed rather than a name). Port as in sp_parse_addr. On success writes
 * the name, lowercased and NUL-terminated, into host[0..size) and the port (host byte order).
 * Numeric addresses are not names: try sp_parse_addr first. -ENOSPC when size is too small
 * (SP_HOST_NAME_MAX always suffices). */
int sp_parse_host_port(const char *s, char *host, size_t size, uint16_t *port);

#endif
