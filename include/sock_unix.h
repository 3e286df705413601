/* sock_unix.h: listening on a Unix stream socket: the socket file's life (a stale file left by a
 * dead process is replaced, a live one or a file that is not a socket is refused, the mode is
 * applied before anyone can connect) and its removal by the process that created it. No libuv.
 */
#ifndef SPLICER_SOCK_UNIX_H
#define SPLICER_SOCK_UNIX_H

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

/* A socket file this process created: removed only while the path still names that very file
 * (same device and inode), so a file another process has put there since is left alone. */
struct sp_unix_file {
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* "" for none (abstract) */
    dev_t dev;
    ino_t ino;
    bool replaced_stale; /* sp_unix_listen removed a dead process's socket file first */
};

/* A non-blocking, close-on-exec listening socket on the AF_UNIX address `sa` (`len` bytes, as
 * sp_parse_unix_addr made it). For a path:
 *   - nothing there: bound;
 *   - a socket nobody accepts on (connect() is refused: its process died): unlinked, then bound;
 *   - a socket something accepts on: -EADDRINUSE, the file untouched;
 *   - anything else (file, directory, ...): -ENOTSOCK, untouched.
 * `mode` (permission bits; -1 leaves what the umask gave) is applied between bind() and listen(),
 * so no client connects before it holds. On success *file describes the file created (path "" for
 * an abstract address, which has none, and for which a live owner is -EADDRINUSE as well). Returns
 * the fd or -errno. Main thread. */
int sp_unix_listen(const struct sockaddr *sa, socklen_t len, int mode, int backlog,
                   struct sp_unix_file *file);

/* Removes file->path if it is still the socket file sp_unix_listen created there; then clears
 * *file. A file it is not (replaced, or gone) is left alone. Returns true when it unlinked. */
bool sp_unix_file_remove(struct sp_unix_file *file);

#endif
