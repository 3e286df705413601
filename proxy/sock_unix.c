/* sock_unix.c: Unix stream listening sockets and their files (see sock_unix.h). Kept apart from
 * sock.c and listener.c: the file on disk is state TCP sockets do not have, with its own rules. */
#include "sock_unix.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* -ECONNREFUSED when no process accepts on the socket file `sa` (a stale file), 0 when one does
 * (or its backlog is full: it is alive all the same), another -errno otherwise. */
static int probe(const struct sockaddr *sa, socklen_t len)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    int rc = connect(fd, sa, len) == 0 ? 0 : -errno;
    close(fd);
    return rc == -EAGAIN || rc == -EINPROGRESS ? 0 : rc;
}

/* Clears the way for bind(): 0 when the path is free (or was a stale socket, now unlinked:
 * *stale is then set). */
static int clear_path(const struct sockaddr *sa, socklen_t len, const char *path, bool *stale)
{
    struct stat st;
    if (lstat(path, &st) == -1)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return -ENOTSOCK;
    int rc = probe(sa, len);
    if (rc == 0)
        return -EADDRINUSE;
    if (rc == -ENOENT)
        return 0; /* gone meanwhile */
    if (rc != -ECONNREFUSED)
        return rc;
    if (unlink(path) == -1 && errno != ENOENT)
        return -errno;
    *stale = true;
    return 0;
}

/* Closes fd and removes the file it was bound to, if any; returns -err. */
static int undo(int fd, struct sp_unix_file *file, int err)
{
    if (file->ino != 0)
        sp_unix_file_remove(file);
    else if (file->path[0] != '\0')
        unlink(file->path); /* stat failed right after our bind: it can only be ours */
    memset(file, 0, sizeof(*file));
    close(fd);
    return -err;
}

int sp_unix_listen(const struct sockaddr *sa, socklen_t len, int mode, int backlog,
                   struct sp_unix_file *file)
{
    const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
    bool abstract = un->sun_path[0] == '\0', stale = false;
    memset(file, 0, sizeof(*file));

    if (!abstract) {
        int rc = clear_path(sa, len, un->sun_path, &stale);
        if (rc != 0)
            return rc;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    if (bind(fd, sa, len) == -1)
        return undo(fd, file, errno); /* an abstract name in use is EADDRINUSE, as wanted */
    if (!abstract) {
        struct stat st;
        /* From here on the file is ours: an error below removes it again. */
        memcpy(file->path, un->sun_path, sizeof(file->path));
        if (stat(file->path, &st) == -1)
            goto fail_file;
        file->dev = st.st_dev;
        file->ino = st.st_ino;
        if (mode >= 0 && chmod(file->path, (mode_t)mode) == -1)
            goto fail_file;
    }
    if (listen(fd, backlog) == -1)
        goto fail_file;
    file->replaced_stale = stale;
    return fd;

fail_file:
    return undo(fd, file, errno);
}

bool sp_unix_file_remove(struct sp_unix_file *file)
{
    struct stat st;
    bool ours = file->path[0] != '\0' && lstat(file->path, &st) == 0 && S_ISSOCK(st.st_mode) &&
                st.st_dev == file->dev && st.st_ino == file->ino;
    bool removed = ours && unlink(file->path) == 0;
    memset(file, 0, sizeof(*file));
    return removed;
}
