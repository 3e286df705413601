/* inspect.h: what comes before the relayed stream on a client connection. A PROXY protocol
 * header is consumed (read through a small buffer: the copy path); a TLS ClientHello is only
 * peeked, so its bytes reach the server unchanged and the stream is spliced as usual. No libuv:
 * the session drives these from its poll callback. */
#ifndef SPLICER_INSPECT_H
#define SPLICER_INSPECT_H

#include "proxy_proto.h"
#include "tls_sni.h"
#include <stddef.h>

enum sp_inspect_status {
    SP_INSPECT_DONE = 0, /* complete; see the outputs */
    SP_INSPECT_WAIT,     /* nothing new on the socket: wait for it to be readable */
    SP_INSPECT_RETRY,    /* a prefix sits unconsumed in the socket (peek): wait until the
                          * socket holds the bytes `need` says, which only new bytes can bring */
    SP_INSPECT_EOF,      /* the client closed before finishing */
    SP_INSPECT_MALFORMED,
    SP_INSPECT_ERROR, /* a socket error; the errno is returned through *err */
};

/* A PROXY header being read. Zero it before the first call. */
struct sp_pp_reader {
    char buf[SP_PP_MAX_HEADER];
    size_t have;
    struct sp_pp_result result; /* valid after SP_INSPECT_DONE */
};

/* Reads the PROXY header from fd, consuming exactly its bytes and never one of the payload:
 * bytes are peeked first and only the part the decoder claims is then read. *err gets the
 * errno with SP_INSPECT_ERROR. */
enum sp_inspect_status sp_pp_read(int fd, struct sp_pp_reader *r, int *err);

/* Peeks the ClientHello on fd into scratch (SP_SNI_BUF_MAX bytes) and extracts the server name.
 * On SP_INSPECT_DONE, *found is 1 with `name` set, or 0 for a valid ClientHello without a
 * usable server name (none, or one that is not a host name: see sp_sni_parse).
 * On SP_INSPECT_RETRY, *need is the number of bytes the socket must hold before another peek
 * can tell more (to the end of the TLS record under way, or the next record's header), at most
 * SP_SNI_BUF_MAX. A ClientHello that never completes keeps answering SP_INSPECT_RETRY: the
 * caller's timeout ends it. */
enum sp_inspect_status sp_sni_peek(int fd, unsigned char *scratch, char name[SP_SNI_NAME_MAX],
                                   int *found, int *err, size_t *need);

/* The bytes a ClientHello prefix of n bytes needs before it can say more: the end of the TLS
 * record that is incomplete, or the header of the next one, capped at SP_SNI_BUF_MAX. Pure. */
size_t sp_sni_need(const unsigned char *buf, size_t n);

#endif
