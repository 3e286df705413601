/* config_admin.c: admin.token_file (see config_admin.h). The token authorizes drain and enable
 * on the admin endpoint; a file that others may read is refused, as ssh refuses a private key
 * that others may read, since anyone who can read it can drain every server. */
#include "config_admin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Reads the whole regular file at path into buf, which must be larger than the largest file
 * accepted (size - 1 bytes). Returns the byte count, or -1 with the reason in why. */
static ssize_t read_small_file(const char *path, char *buf, size_t size, char *why, size_t wsize)
{
    size_t cap = size - 1;
    /* O_NONBLOCK: a FIFO put there by mistake must not hang the load */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    if (fd == -1 || fstat(fd, &st) == -1) {
        snprintf(why, wsize, "%s", strerror(errno));
        if (fd != -1)
            close(fd);
        return -1;
    }
    ssize_t n = -1;
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, wsize, "not a regular file");
    } else if ((st.st_mode & S_IRWXO) != 0) {
        snprintf(why, wsize,
                 "other users may read or write it (mode %04o); allow the owner and the group "
                 "only, as with chmod o-rwx",
                 (unsigned)(st.st_mode & 07777));
    } else if ((size_t)st.st_size > cap) {
        snprintf(why, wsize, "larger than %zu bytes", cap);
    } else {
        size_t got = 0;
        ssize_t r = 1;
        /* one byte more than allowed, to notice a file that grew since fstat */
        while (got < size && (r = read(fd, buf + got, size - got)) > 0)
            got += (size_t)r;
        if (r == -1)
            snprintf(why, wsize, "%s", strerror(errno));
        else if (got > cap)
            snprintf(why, wsize, "larger than %zu bytes", cap);
        else
            n = (ssize_t)got;
    }
    close(fd);
    return n;
}

/* Checks the token in buf[0..n) once its trailing CR/LF are cut; returns its length, or -1
 * with the reason in why. */
static ssize_t check_token(char *buf, size_t n, char *why, size_t wsize)
{
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (n == 0) {
        snprintf(why, wsize, "the file is empty");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        /* what an HTTP client can send after "Bearer " without quoting: visible ASCII */
        if ((unsigned char)buf[i] <= 0x20 || (unsigned char)buf[i] >= 0x7f) {
            snprintf(why, wsize,
                     "byte %zu of the token is a space, a control character or not ASCII; the "
                     "token must be one line of printable ASCII",
                     i + 1);
            return -1;
        }
    }
    if (n > SP_ADMIN_TOKEN_MAX) {
        snprintf(why, wsize, "the token has more than %d characters", SP_ADMIN_TOKEN_MAX);
        return -1;
    }
    if (n < SP_ADMIN_TOKEN_MIN) {
        snprintf(why, wsize,
                 "the token has %zu characters, fewer than %d (make one with: head -c 32 "
                 "/dev/urandom | base64)",
                 n, SP_ADMIN_TOKEN_MIN);
        return -1;
    }
    return (ssize_t)n;
}

int sp_cfg_parse_token_file(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                            void *obj, const char *what)
{
    struct sp_admin_conf *a = obj;
    char buf[SP_ADMIN_TOKEN_MAX + 3], why[200]; /* a token, a CRLF, one byte to see more */
    const char *path;
    (void)f;

    int rc = sp_cfg_scalar(w, val, what, &path);
    if (rc != 0)
        return rc;
    ssize_t n = read_small_file(path, buf, sizeof(buf), why, sizeof(why));
    if (n >= 0)
        n = check_token(buf, (size_t)n, why, sizeof(why));
    if (n < 0) {
        explicit_bzero(buf, sizeof(buf));
        return sp_cfg_fail(w, val->start_mark, "cannot use '%.128s' for %s: %s", path, what, why);
    }
    a->token_file = strdup(path);
    a->token = malloc((size_t)n + 1);
    if (a->token != NULL) {
        memcpy(a->token, buf, (size_t)n);
        a->token[n] = '\0';
        a->token_len = (size_t)n;
    }
    explicit_bzero(buf, sizeof(buf));
    return a->token_file == NULL || a->token == NULL ? sp_cfg_oom(w) : 0;
}

void sp_cfg_admin_free(struct sp_admin_conf *a)
{
    if (a->token != NULL)
        explicit_bzero(a->token, a->token_len);
    free(a->token);
    a->token = NULL;
    a->token_len = 0;
    free(a->token_file);
    a->token_file = NULL;
}

int sp_cfg_parse_control_socket(struct sp_cfg_walk *w, const struct sp_cfg_field *f,
                                yaml_node_t *val, void *obj, const char *what)
{
    struct sp_config *cfg = obj;
    const char *s;
    (void)f;
    if (sp_cfg_is_null(val))
        return 0;
    int rc = sp_cfg_scalar(w, val, what, &s);
    if (rc != 0)
        return rc;
    if (s[0] != '/')
        return sp_cfg_fail(w, val->start_mark,
                           "invalid value '%.64s' for %s (expected an absolute path, as in "
                           "/run/splicer/control.sock)",
                           s, what);
    if (strlen(s) > SP_CONTROL_PATH_MAX)
        return sp_cfg_fail(w, val->start_mark,
                           "%s is %zu bytes long; a Unix socket path may have at most %d here",
                           what, strlen(s), SP_CONTROL_PATH_MAX);
    if (s[strlen(s) - 1] == '/')
        return sp_cfg_fail(w, val->start_mark, "%s names a directory: '%.64s'", what, s);
    free(cfg->control_socket);
    cfg->control_socket = strdup(s);
    return cfg->control_socket != NULL ? 0 : sp_cfg_oom(w);
}
