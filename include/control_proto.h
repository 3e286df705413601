/* control_proto.h: the wire format of the control socket (control_socket), shared by the old
 * process (control.c) and the new one (takeover.c). A SOCK_SEQPACKET Unix socket, so every
 * message arrives whole or not at all; every message is one struct sp_ctl_msg, exactly, and
 * anything else ends the conversation. One exchange, versioned:
 *
 *   new -> old  HELLO                     (version)
 *   old -> new  SOCKETS ... SOCKETS|LAST  (listening sockets as SCM_RIGHTS, up to
 *                                          SP_CTL_FDS_MAX a message) or ERROR
 *   new -> old  COMMIT                    (the new process is ready to accept)
 *   old -> new  ACK                       (the old one has stopped accepting and drains)
 *                                         or ERROR
 *
 * A new process that closes the connection before COMMIT leaves the old one as it was. */
#ifndef SPLICER_CONTROL_PROTO_H
#define SPLICER_CONTROL_PROTO_H

#include <stdint.h>

#define SP_CTL_MAGIC    0x53504354u /* "SPCT" */
#define SP_CTL_VERSION  1u
#define SP_CTL_FDS_MAX  64 /* descriptors per SOCKETS message (the kernel allows 253) */
#define SP_CTL_MSGS_MAX 64 /* SOCKETS messages per exchange: 4096 sockets */
#define SP_CTL_TEXT_MAX 200

enum sp_ctl_type {
    SP_CTL_HELLO = 1,
    SP_CTL_SOCKETS,
    SP_CTL_COMMIT,
    SP_CTL_ACK,
    SP_CTL_ERROR,
};

#define SP_CTL_LAST      1u /* flags of the last SOCKETS message */
#define SP_CTL_FD_SHARED 1u /* fd_flags: every worker accepts on this one socket */

struct sp_ctl_msg {
    uint32_t magic;                   /* SP_CTL_MAGIC */
    uint16_t version;                 /* SP_CTL_VERSION */
    uint16_t type;                    /* enum sp_ctl_type */
    uint32_t pid;                     /* the sender's */
    uint16_t nfds;                    /* SOCKETS: descriptors attached, 0..SP_CTL_FDS_MAX */
    uint16_t flags;                   /* SOCKETS: SP_CTL_LAST */
    uint8_t fd_flags[SP_CTL_FDS_MAX]; /* SOCKETS: per descriptor, SP_CTL_FD_* */
    char text[SP_CTL_TEXT_MAX];       /* ERROR: why, NUL-terminated */
};

#endif
