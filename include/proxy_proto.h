/* proxy_proto.h: the PROXY protocol, versions 1 (text) and 2 (binary), as specified in
 * haproxy's doc/proxy-protocol.txt. Encoding for the upstream side (we send the header before the
 * first payload byte) and a strict, bounded, incremental decoder for the listener side. Pure: no
 * allocation, no I/O, no libuv; every function may be called from any thread.
 *
 * Decoder contract (as picohttpparser's): feed it everything received so far, from the first
 * byte of the connection. It returns the header length once the header is complete (the payload
 * starts right after it), 0 while the bytes so far are a valid prefix of a header, and a negative
 * errno as soon as they can no longer become one. Never read more than SP_PP_MAX_HEADER bytes
 * from the socket before the header is decoded: a longer header is refused anyway. */
#ifndef SPLICER_PROXY_PROTO_H
#define SPLICER_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define SP_PP_V1_MAX       107 /* the spec's bound for a v1 line, CRLF included */
#define SP_PP_V2_HDR       16  /* v2 fixed part: signature, ver/cmd, family, length */
#define SP_PP_V2_MAX_BLOCK 216 /* default cap on v2's length field: addresses and TLVs */
#define SP_PP_MAX_HEADER   (SP_PP_V2_HDR + SP_PP_V2_MAX_BLOCK) /* 232 >= SP_PP_V1_MAX */
#define SP_PP_ENCODE_MAX   SP_PP_V1_MAX /* a buffer this big fits any header we encode */

struct sp_pp_result {
    int version;   /* 1 or 2 */
    bool has_addr; /* src and dst are valid (AF_INET or AF_INET6, ports in network order) */
    bool local;    /* v2 LOCAL: a connection of the sending proxy itself (a health check);
                    * use the socket's own endpoints. has_addr is false then. */
    struct sockaddr_storage src; /* the client as the sending proxy saw it */
    struct sockaddr_storage dst; /* the address the client connected to */
};

/* Writes a PROXY header of `version` (1 or 2) into buf[0..len). src is the client's address and
 * dst the address it connected to (our listener's local address), both AF_INET or AF_INET6.
 * Mixed families are sent as IPv6 with the IPv4 side v4-mapped (::ffff:a.b.c.d), as the spec
 * allows for v1 TCP6 and v2 AF_INET6. With src or dst NULL (a connection of our own, such as a
 * health check) v1 sends "PROXY UNKNOWN\r\n" and v2 the LOCAL command; any other family sends
 * v1 UNKNOWN / v2 PROXY with AF_UNSPEC. v2 headers carry no TLVs.
 * Returns the header length (v1 at most 104, v2 at most 52), -EINVAL for a bad version, or
 * -ENOSPC when len is too small (SP_PP_ENCODE_MAX always suffices). No NUL is appended. */
int sp_pp_encode(int version, const struct sockaddr *src, const struct sockaddr *dst, char *buf,
                 size_t len);

/* Decodes a v1 or v2 header at the start of buf[0..len) (the version is told by the first
 * byte). Returns:
 *   > 0      the header is complete and that many bytes belong to it; *out is filled.
 *   0        need more: a valid prefix of a header (also for len == 0); *out untouched.
 *   -EINVAL  not a PROXY header, or a malformed one: bad signature, version or command, a v1
 *            line with anything but single spaces, bad address or port (> 65535, leading
 *            zeros), a bare LF; a v2 address block shorter than its family needs, a TLV that
 *            overruns the block, a transport other than STREAM for INET/INET6.
 *   -E2BIG   over the limit: a v1 line with no CRLF within SP_PP_V1_MAX bytes, or a v2
 *            length field above SP_PP_V2_MAX_BLOCK.
 * v1 "UNKNOWN" (anything up to the CRLF is ignored, as the spec says), v2 AF_UNSPEC and v2
 * AF_UNIX give has_addr = false; v2 LOCAL gives local = true. v2 TLVs are skipped. IPv4-mapped
 * IPv6 addresses are returned as they came (AF_INET6). */
int sp_pp_decode(const char *buf, size_t len, struct sp_pp_result *out);

/* As sp_pp_decode with another cap on v2's length field (0..65535); a v1 line keeps its own
 * SP_PP_V1_MAX bound. A caller raising the cap must buffer up to SP_PP_V2_HDR + max_block. */
int sp_pp_decode_max(const char *buf, size_t len, size_t max_block, struct sp_pp_result *out);

#endif
