/* cidr.h: lists of IPv4/IPv6 prefixes ("10.0.0.0/8", "::1/128", "192.168.1.5") and matching a
 * client address against them, for a listener's allow/deny rules. Pure: no I/O, no libuv. A
 * built list is immutable and may be read from any number of threads at once.
 *
 * IPv4 and IPv6 meet in one place: an IPv4-mapped IPv6 address (::ffff:a.b.c.d), as a dual-stack
 * socket reports an IPv4 client, is matched as the IPv4 address a.b.c.d; and a rule inside
 * ::ffff:0:0/96 is stored as the IPv4 rule it stands for. So "10.0.0.0/8" matches both. */
#ifndef SPLICER_CIDR_H
#define SPLICER_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SP_CIDR_STR_MAX 50 /* "ffff:...:255.255.255.255/128" and a NUL fit */

struct sp_cidr {
    uint8_t family;   /* AF_INET or AF_INET6 */
    uint8_t prefix;   /* 0..32 or 0..128 */
    uint8_t addr[16]; /* network order; 4 bytes used for AF_INET; host bits are zero */
};

struct sp_cidr_list {
    struct sp_cidr *v; /* owned array of cap entries, n of them used */
    size_t n, cap;
};

/* Parses "ADDR/LEN" or a bare "ADDR" (a host: /32 or /128). ADDR is numeric IPv4 or IPv6, not
 * bracketed. Returns 0 and fills *out; -EINVAL for a malformed address or length (sign, spaces,
 * empty, leading zeros); -ERANGE for a length above 32 / 128; -EDOM when ADDR has bits set past
 * the length ("10.0.0.1/8": most likely a typo for a host or for 10.0.0.0/8, so not guessed).
 * *out is written only on success. */
int sp_cidr_parse(const char *s, struct sp_cidr *out);

/* Parses s as sp_cidr_parse and appends it to l (which starts zeroed). Returns 0, the parse
 * error, or -ENOMEM; l is unchanged on failure. */
int sp_cidr_list_add(struct sp_cidr_list *l, const char *s);

/* True when the address in sa (AF_INET or AF_INET6; the port is ignored) lies in one of l's
 * prefixes. An empty list, NULL list or another family matches nothing. */
bool sp_cidr_match(const struct sp_cidr_list *l, const struct sockaddr *sa);

/* The allow/deny decision of a listener: deny wins over allow, and an empty allow list allows
 * everything. Either list may be NULL (= empty). */
bool sp_cidr_allowed(const struct sp_cidr_list *allow, const struct sp_cidr_list *deny,
                     const struct sockaddr *sa);

/* Formats c as "ADDR/LEN" into buf (SP_CIDR_STR_MAX bytes suffice). Returns buf. */
const char *sp_cidr_format(const struct sp_cidr *c, char *buf, size_t size);

/* Frees the array and zeroes l. NULL is a no-op. */
void sp_cidr_list_deinit(struct sp_cidr_list *l);

#endif
