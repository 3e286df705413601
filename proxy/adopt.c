/* adopt.c: which listening socket each worker starts with: inherited ones first (adopt.h has
 * the rules), fresh SO_REUSEPORT binds for the rest. */
#include "adopt.h"

#include "listener.h"
#include "listener_unix.h"
#include "log.h"
#include "sock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static int add_extra(struct sp_adopted *a, unsigned worker, size_t li, int fd)
{
    struct sp_extra_fd *v = realloc(a->extra, (a->nextra + 1) * sizeof(*v));
    if (v == NULL) {
        close(fd);
        return -ENOMEM;
    }
    a->extra = v;
    v[a->nextra++] = (struct sp_extra_fd){.worker = worker, .li = li, .fd = fd};
    return 0;
}

static int add_shared_ino(struct sp_adopted *a, int fd)
{
    struct stat st;
    if (fstat(fd, &st) == -1)
        return -errno;
    ino_t *v = realloc(a->shared, (a->nshared + 1) * sizeof(*v));
    if (v == NULL)
        return -ENOMEM;
    a->shared = v;
    v[a->nshared++] = st.st_ino;
    return 0;
}

/* The listener's backlog and TCP_NODELAY (which accepted sockets inherit) apply to an
 * inherited socket as to one splicer binds: listen() again only resizes the queue. */
static void tune(const struct sp_listener_conf *lc, int fd)
{
    if (lc->addr.ss_family == AF_INET || lc->addr.ss_family == AF_INET6)
        sp_sock_nodelay(fd);
    (void)listen(fd, (int)lc->backlog);
}

/* Listener i with its k inherited sockets `fds`. A unix: listener has no SO_REUSEPORT
 * siblings: like a shared socket, every worker accepts on its one socket. */
static int place(struct sp_adopted *a, const struct sp_listener_conf *lc, size_t i,
                 unsigned nworkers, int *fds, size_t k, bool shared)
{
    bool one_queue = shared || lc->addr.ss_family == AF_UNIX;
    int rc = 0;
    for (size_t j = 0; j < k; j++)
        tune(lc, fds[j]);
    for (unsigned w = 0; w < nworkers && rc == 0; w++) {
        if (one_queue) {
            int fd = fcntl(fds[w % k], F_DUPFD_CLOEXEC, 3);
            a->sets[w][i] = fd;
            rc = fd == -1 ? -errno : 0;
        } else if (w < k) {
            a->sets[w][i] = fds[w];
            fds[w] = -1;
        } else {
            a->sets[w][i] = sp_listener_bind(lc);
            rc = a->sets[w][i] < 0 ? a->sets[w][i] : 0;
            a->sets[w][i] = rc == 0 ? a->sets[w][i] : -1;
        }
    }
    for (size_t j = nworkers; j < k && rc == 0 && !one_queue; j++) {
        rc = add_extra(a, (unsigned)(j % nworkers), i, fds[j]);
        fds[j] = -1;
    }
    for (size_t j = 0; j < k; j++) {
        if (rc == 0 && shared && fds[j] != -1)
            rc = add_shared_ino(a, fds[j]);
        if (fds[j] != -1)
            close(fds[j]);
    }
    if (rc == 0)
        sp_log_info("listener %s: %zu inherited socket%s%s", lc->name, k, k == 1 ? "" : "s",
                    one_queue      ? ", shared by every worker"
                    : k < nworkers ? ", and new SO_REUSEPORT siblings for the other workers"
                    : k > nworkers ? "; some workers accept on more than one"
                                   : ", one per worker");
    return rc;
}

/* A unix: listener bound here: one socket (its file recorded in `files`), a duplicate for
 * every worker. */
static int bind_unix(struct sp_adopted *a, const struct sp_listener_conf *lc, size_t i,
                     unsigned nworkers, struct sp_unix_files *files)
{
    int fd = sp_listener_unix_bind(lc, files);
    if (fd < 0)
        return fd;
    a->sets[0][i] = fd;
    for (unsigned w = 1; w < nworkers; w++) {
        int dup = sp_listener_unix_share(lc, fd, w);
        if (dup < 0)
            return dup;
        a->sets[w][i] = dup;
    }
    return 0;
}

/* The socket file of a unix: listener taken over from the old splicer, which created it and
 * leaves it to us: recorded in a->claimed, for the server to own once the takeover holds. A
 * socket systemd passed on (shared) keeps its file with systemd. */
static int claim_file(struct sp_adopted *a, const struct sp_listener_conf *lc, bool shared)
{
    const struct sockaddr_un *un = (const struct sockaddr_un *)&lc->addr;
    if (lc->addr.ss_family != AF_UNIX || shared || un->sun_path[0] == '\0')
        return 0;
    return sp_unix_files_claim(&a->claimed, un->sun_path);
}

static int adopt_one(struct sp_adopted *a, const struct sp_listener_conf *lc, size_t i,
                     unsigned nworkers, struct sp_inherit *in, struct sp_unix_files *files)
{
    const struct sockaddr *addr = (const struct sockaddr *)&lc->addr;
    size_t k = in != NULL ? sp_inherit_count(in, addr) : 0;
    if (k == 0 && lc->addr.ss_family == AF_UNIX)
        return bind_unix(a, lc, i, nworkers, files);
    if (k == 0) {
        for (unsigned w = 0; w < nworkers; w++) {
            int fd = sp_listener_bind(lc);
            if (fd < 0)
                return fd;
            a->sets[w][i] = fd;
        }
        return 0;
    }
    int *fds = malloc(k * sizeof(*fds));
    if (fds == NULL)
        return -ENOMEM;
    bool shared = false;
    for (size_t j = 0; j < k; j++) {
        bool sh = false;
        fds[j] = sp_inherit_take(in, addr, &sh);
        shared = shared || sh;
    }
    int rc = place(a, lc, i, nworkers, fds, k, shared);
    free(fds);
    return rc == 0 ? claim_file(a, lc, shared) : rc;
}

int sp_adopt_listeners(const struct sp_config *cfg, unsigned nworkers, struct sp_inherit *in,
                       struct sp_unix_files *files, struct sp_adopted *out)
{
    *out = (struct sp_adopted){0};
    out->sets = calloc(nworkers, sizeof(*out->sets));
    int rc = out->sets != NULL ? 0 : -ENOMEM;
    for (unsigned w = 0; w < nworkers && rc == 0; w++) {
        out->sets[w] = malloc((cfg->nlisteners + 1) * sizeof(**out->sets));
        rc = out->sets[w] != NULL ? 0 : -ENOMEM;
        for (size_t i = 0; rc == 0 && i < cfg->nlisteners; i++)
            out->sets[w][i] = -1;
    }
    for (size_t i = 0; i < cfg->nlisteners && rc == 0; i++)
        rc = adopt_one(out, &cfg->listeners[i], i, nworkers, in, files);
    if (rc != 0)
        sp_adopted_free(out, nworkers, cfg->nlisteners);
    return rc;
}

void sp_adopted_free(struct sp_adopted *a, unsigned nworkers, size_t nlisteners)
{
    for (unsigned w = 0; a->sets != NULL && w < nworkers; w++) {
        for (size_t i = 0; a->sets[w] != NULL && i < nlisteners; i++) {
            if (a->sets[w][i] != -1)
                close(a->sets[w][i]);
        }
        free(a->sets[w]);
    }
    free(a->sets);
    for (size_t i = 0; i < a->nextra; i++) {
        if (a->extra[i].fd != -1)
            close(a->extra[i].fd);
    }
    free(a->extra);
    free(a->shared);
    sp_unix_files_deinit(&a->claimed); /* not ours unless the server took them */
    *a = (struct sp_adopted){0};
}
