/* listener_unix.h: the listening side of unix: listeners in the main thread: binding one (with
 * the reasons a user can act on in the log) and the socket files this process created, which
 * it removes when a reload drops their listener and at a clean shutdown. A unix listener has
 * no SO_REUSEPORT: with several workers, each gets a duplicate of one socket, so all of them
 * accept from the one queue (whichever wakes first takes the connection). */
#ifndef SPLICER_LISTENER_UNIX_H
#define SPLICER_LISTENER_UNIX_H

#include "config.h"
#include "sock_unix.h"
#include <stddef.h>

/* The socket files created so far and not yet removed. Main thread only. */
struct sp_unix_files {
    struct sp_unix_file *v; /* owned array */
    size_t n, cap;
};

/* Binds the unix listener `conf` (stale file replaced, live one refused, unix_mode applied),
 * records the file it created in `files`, and logs a failure with its reason. Returns the fd
 * or -errno. */
int sp_listener_unix_bind(const struct sp_listener_conf *conf, struct sp_unix_files *files);

/* A duplicate of `fd`, the one socket of the unix: listener `conf`, for `worker` to accept on
 * (a failure is logged). Returns the new fd or -errno. */
int sp_listener_unix_share(const struct sp_listener_conf *conf, int fd, unsigned worker);

/* Removes every recorded file that no unix listener of `keep` listens on (keep NULL: all of
 * them), if it is still the file this process created there. */
void sp_unix_files_prune(struct sp_unix_files *files, const struct sp_config *keep);

/* Records the socket file at `path` as this process's to remove: one it did not create but
 * took over with its socket (adopt.h). Nothing is recorded when no socket is there. Returns 0
 * or -ENOMEM. */
int sp_unix_files_claim(struct sp_unix_files *files, const char *path);

/* Moves every record of `from` to `to` (from is left empty). Returns 0 or -ENOMEM (then
 * nothing moved). */
int sp_unix_files_move(struct sp_unix_files *to, struct sp_unix_files *from);

/* Applies the unix_mode of every unix listener of `cfg` that has one to the file recorded for
 * its path (a reload that keeps the socket but changes the mode; without unix_mode the file
 * keeps its mode). A file that is no longer ours is left alone. */
void sp_unix_files_apply_modes(const struct sp_unix_files *files, const struct sp_config *cfg);

/* Forgets the records (without removing anything) and frees the array. */
void sp_unix_files_deinit(struct sp_unix_files *files);

#endif
