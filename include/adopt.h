/* adopt.h: the listening sockets of each worker at start, inherited ones (inherit.h) first.
 *
 * - A systemd socket (shared) is the one socket of its listener: every worker accepts on it
 *   (each on a duplicate descriptor), and no SO_REUSEPORT sibling is bound, so that a
 *   connection waiting in its queue survives a restart of the service (systemd keeps it).
 * - Sockets taken over from the old process were its workers' SO_REUSEPORT group. Worker w
 *   gets socket w; with more workers than sockets, the others bind new siblings; with fewer,
 *   the surplus sockets become extra sockets of the workers (round robin), which keep
 *   accepting on them: closing one would drop its accept queue where the kernel cannot
 *   migrate it (net.ipv4.tcp_migrate_req=0, or kernels before 5.14).
 * - A unix: listener has one socket, which every worker shares, bound here or inherited.
 * Main thread, at start only. */
#ifndef SPLICER_ADOPT_H
#define SPLICER_ADOPT_H

#include "config.h"
#include "inherit.h"
#include "listener_unix.h"
#include <sys/types.h>

/* One more accepting socket of listener `li` for `worker` (sp_worker_add_listener). */
struct sp_extra_fd {
    unsigned worker;
    size_t li;
    int fd; /* owned */
};

struct sp_adopted {
    int **sets;                /* owned: sets[w][i], worker w's socket for listener i */
    struct sp_extra_fd *extra; /* owned array */
    size_t nextra;
    ino_t *shared; /* owned: inodes of the sockets every worker shares (told on a takeover) */
    size_t nshared;
    struct sp_unix_files claimed; /* socket files of unix: listeners taken over (see .c) */
};

/* Fills `out` for cfg's listeners and `nworkers` workers, taking from `in` the sockets bound to
 * each listener's address and binding the rest (the socket files of unix: listeners it creates
 * go in `files`). Returns 0, or -errno with every socket closed (logged). */
int sp_adopt_listeners(const struct sp_config *cfg, unsigned nworkers, struct sp_inherit *in,
                       struct sp_unix_files *files, struct sp_adopted *out);

/* Closes and frees whatever is still in `a` (NULL entries and -1 are skipped). */
void sp_adopted_free(struct sp_adopted *a, unsigned nworkers, size_t nlisteners);

#endif
