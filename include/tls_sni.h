/* tls_sni.h: reading the server name (SNI, RFC 6066) from a TLS ClientHello without terminating
 * TLS, and routing by it. Pure: no allocation in the parser, no I/O, no libuv; any thread.
 *
 * Parser contract (as picohttpparser's): feed everything received so far, from the first byte
 * of the connection; it never consumes anything, the bytes are relayed upstream unchanged.
 *
 * Records: the ClientHello may span several handshake records (TLS allows a sender to fragment
 * it; large post-quantum key shares make that likelier). Up to SP_SNI_MAX_RECORDS records are
 * reassembled, the ClientHello itself is capped at SP_SNI_MAX_HELLO bytes, so a caller that has
 * buffered SP_SNI_BUF_MAX bytes always has an answer other than "need more". */
#ifndef SPLICER_TLS_SNI_H
#define SPLICER_TLS_SNI_H

#include <stddef.h>

#define SP_SNI_MAX_HELLO   16384 /* handshake header + ClientHello body */
#define SP_SNI_MAX_RECORDS 4
#define SP_SNI_BUF_MAX     (SP_SNI_MAX_HELLO + 5 * SP_SNI_MAX_RECORDS)
#define SP_SNI_NAME_MAX    254 /* 253 characters of a DNS name and the NUL */

/* Extracts the host_name of the server_name extension from the ClientHello at the start of
 * buf[0..len). Returns:
 *   1        found: name holds it, lowercased and NUL-terminated.
 *   0        need more bytes: everything so far is a valid prefix.
 *   -ENOENT  a complete, well-formed ClientHello without a usable server name: no server_name
 *            extension (or no host_name in it, or no extensions at all), or a host_name that is
 *            not a host name: longer than 253, an empty or over-long (> 63) label, a trailing
 *            dot, a character other than letters, digits, '-' and '_' (seen in real internal
 *            names), or an IP literal. TLS servers accept such hellos, so the caller routes
 *            them as it routes a hello without SNI.
 *   -EINVAL  malformed framing: not a TLS handshake record (type 22, version 3.x), a record
 *            longer than 2^14 or empty, another handshake message first, a ClientHello over the
 *            caps above, any vector whose length overruns its container or leaves bytes over
 *            (an empty host_name included: its vector is <1..2^16-1>), a second server_name
 *            extension or host_name entry.
 *   -ENOSPC  the name is valid but name_len cannot hold it (SP_SNI_NAME_MAX always can).
 * name is written only when 1 is returned. */
int sp_sni_parse(const unsigned char *buf, size_t len, char *name, size_t name_len);

/* Routing table: patterns -> route index. Matching is case-insensitive; an exact pattern beats
 * any wildcard; "*.example.com" matches every name ending in ".example.com" (any depth) but not
 * "example.com"; among wildcards the longest suffix wins. Linear in the number of patterns.
 * Built once (single thread), then read-only and safe to share between threads. */
struct sp_sni_route {
    char *pattern; /* owned; lowercased, with its "*." when a wildcard */
    int route;
};

struct sp_sni_routes {
    struct sp_sni_route *v; /* owned array of cap entries, n of them used */
    size_t n, cap;
};

/* 0 when `pattern` is a valid route pattern: a host name as sp_sni_parse accepts, or "*." and
 * one. Otherwise -EINVAL ("*", "*example.com", "a.*.com", "", "foo..com", ...). */
int sp_sni_pattern_check(const char *pattern);

/* Adds pattern -> route (route >= 0) to r (which starts zeroed). Returns 0, -EINVAL for a bad
 * pattern or route, -EEXIST when the same pattern (case-insensitive) is already in r, or
 * -ENOMEM. r is unchanged on failure. */
int sp_sni_routes_add(struct sp_sni_routes *r, const char *pattern, int route);

/* The route of `name` (as sp_sni_parse returns it; compared case-insensitively), or -1 when no
 * pattern matches (the caller's default) or name is NULL. */
int sp_sni_routes_match(const struct sp_sni_routes *r, const char *name);

/* Frees what r owns and zeroes it. NULL is a no-op. */
void sp_sni_routes_deinit(struct sp_sni_routes *r);

#endif
