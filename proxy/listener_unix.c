/* listener_unix.c: binding unix: listeners and removing their socket files (see
 * listener_unix.h). Apart from listener.c, which is the per-worker accept loop for every kind. */
#include "listener_unix.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

static int remember(struct sp_unix_files *files, const struct sp_unix_file *f)
{
    if (files->n == files->cap) {
        size_t cap = files->cap == 0 ? 4 : 2 * files->cap;
        struct sp_unix_file *v = realloc(files->v, cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        files->v = v;
        files->cap = cap;
    }
    files->v[files->n++] = *f;
    return 0;
}

int sp_listener_unix_bind(const struct sp_listener_conf *conf, struct sp_unix_files *files)
{
    struct sp_unix_file f;
    int fd = sp_unix_listen((const struct sockaddr *)&conf->addr, conf->addrlen, conf->unix_mode,
                            (int)conf->backlog, &f);
    if (fd == -EADDRINUSE) {
        sp_log_error("listener %s: cannot listen on %s: another process is listening there (a "
                     "live socket is never replaced: stop that process or choose another path)",
                     conf->name, conf->listen);
        return fd;
    }
    if (fd == -ENOTSOCK) {
        sp_log_error("listener %s: cannot listen on %s: the path exists and is not a socket "
                     "(remove it or choose another path)",
                     conf->name, conf->listen);
        return fd;
    }
    if (fd < 0) {
        sp_log_error("listener %s: cannot listen on %s: %s", conf->name, conf->listen,
                     uv_strerror(fd));
        return fd;
    }
    if (f.replaced_stale)
        sp_log_warn("listener %s: replaced the stale socket file %s (nothing accepted on it)",
                    conf->name, f.path);
    if (f.path[0] != '\0' && remember(files, &f) != 0) {
        sp_unix_file_remove(&f); /* unrecorded, it would outlive us */
        sp_log_error("listener %s: cannot listen on %s: out of memory", conf->name, conf->listen);
        close(fd);
        return -ENOMEM;
    }
    return fd;
}

int sp_unix_files_claim(struct sp_unix_files *files, const char *path)
{
    struct sp_unix_file f = {0};
    struct stat st;
    if (strlen(path) >= sizeof(f.path) || lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode))
        return 0;
    memcpy(f.path, path, strlen(path) + 1);
    f.dev = st.st_dev;
    f.ino = st.st_ino;
    return remember(files, &f);
}

int sp_unix_files_move(struct sp_unix_files *to, struct sp_unix_files *from)
{
    size_t n0 = to->n;
    for (size_t i = 0; i < from->n; i++) {
        if (remember(to, &from->v[i]) != 0) {
            to->n = n0;
            return -ENOMEM;
        }
    }
    sp_unix_files_deinit(from);
    return 0;
}

int sp_listener_unix_share(const struct sp_listener_conf *conf, int fd, unsigned worker)
{
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (dup == -1) {
        int err = -errno;
        sp_log_error("listener %s: cannot share %s with worker %u: %s", conf->name, conf->listen,
                     worker, uv_strerror(err));
        return err;
    }
    return dup;
}

static bool still_listened(const struct sp_config *keep, const char *path)
{
    for (size_t i = 0; keep != NULL && i < keep->nlisteners; i++) {
        const struct sp_listener_conf *l = &keep->listeners[i];
        const struct sockaddr_un *un = (const struct sockaddr_un *)&l->addr;
        if (l->addr.ss_family == AF_UNIX && strncmp(un->sun_path, path, sizeof(un->sun_path)) == 0)
            return true;
    }
    return false;
}

void sp_unix_files_prune(struct sp_unix_files *files, const struct sp_config *keep)
{
    size_t kept = 0;
    for (size_t i = 0; i < files->n; i++) {
        struct sp_unix_file *f = &files->v[i];
        if (still_listened(keep, f->path)) {
            files->v[kept++] = *f;
            continue;
        }
        char path[sizeof(f->path)];
        memcpy(path, f->path, sizeof(path));
        if (sp_unix_file_remove(f))
            sp_log_info("removed the socket file %s", path);
        else
            sp_log_warn("left the socket file %s alone: it is no longer the one splicer created",
                        path);
    }
    files->n = kept;
}

void sp_unix_files_apply_modes(const struct sp_unix_files *files, const struct sp_config *cfg)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct sp_listener_conf *l = &cfg->listeners[i];
        const struct sockaddr_un *un = (const struct sockaddr_un *)&l->addr;
        if (l->addr.ss_family != AF_UNIX || l->unix_mode < 0)
            continue;
        for (size_t j = 0; j < files->n; j++) {
            const struct sp_unix_file *f = &files->v[j];
            struct stat st;
            if (strncmp(f->path, un->sun_path, sizeof(f->path)) != 0 || lstat(f->path, &st) != 0 ||
                st.st_dev != f->dev || st.st_ino != f->ino ||
                (st.st_mode & 07777) == (mode_t)l->unix_mode)
                continue;
            if (chmod(f->path, (mode_t)l->unix_mode) == 0)
                sp_log_info("listener %s: %s now has mode %04o", l->name, f->path,
                            (unsigned)l->unix_mode);
            else
                sp_log_warn("listener %s: cannot set mode %04o on %s: %s", l->name,
                            (unsigned)l->unix_mode, f->path, strerror(errno));
        }
    }
}

void sp_unix_files_deinit(struct sp_unix_files *files)
{
    free(files->v);
    *files = (struct sp_unix_files){0};
}
