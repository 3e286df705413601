/* config_unix.c: unix: socket addresses and the listener keys that depend on them (see
 * config_unix.h). */
#include "config_unix.h"

#include "config_deploy.h"
#include "parse.h"

#include <errno.h>
#include <string.h>
#include <sys/un.h>

static bool is_unix(const struct sp_listener_conf *l)
{
    return l->addr.ss_family == AF_UNIX;
}

static bool is_abstract(const struct sp_listener_conf *l)
{
    return is_unix(l) && ((const struct sockaddr_un *)&l->addr)->sun_path[0] == '\0';
}

int sp_cfg_unix_addr(struct sp_cfg_walk *w, const yaml_node_t *val, const char *s, const char *what,
                     struct sockaddr_storage *ss, socklen_t *len)
{
    int rc = sp_parse_unix_addr(s, ss, len);
    switch (rc) {
    case 0:
        return 0;
    case -ENOENT:
        return sp_cfg_fail(w, val->start_mark,
                           "empty unix socket address '%.64s' for %s (expected unix:/absolute/path "
                           "or unix:@abstract-name)",
                           s, what);
    case -EDOM:
        return sp_cfg_fail(w, val->start_mark,
                           "relative unix socket path '%.64s' for %s: write an absolute path, "
                           "such as unix:/run/app.sock (a relative one would depend on the "
                           "working directory)",
                           s, what);
    case -EILSEQ:
        return sp_cfg_fail(w, val->start_mark, "control character in unix socket address for %s",
                           what);
    case -ENAMETOOLONG:
        return sp_cfg_fail(w, val->start_mark,
                           "unix socket path for %s is %zu bytes, longer than the %d a socket "
                           "address holds (sun_path): choose a shorter path",
                           what, strlen(s) - (s[5] == '@' ? 6 : 5), SP_UNIX_PATH_MAX);
    default:
        return sp_cfg_fail(w, val->start_mark, "invalid unix socket address '%.64s' for %s", s,
                           what);
    }
}

int sp_cfg_parse_unix_mode(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                           void *obj, const char *what)
{
    struct sp_listener_conf *l = obj;
    const char *s;
    (void)f;

    int rc = sp_cfg_scalar(w, val, what, &s);
    if (rc != 0)
        return rc;
    size_t n = strlen(s);
    bool ok = (n == 3 || (n == 4 && s[0] == '0')) && strspn(s, "01234567") == n;
    if (!ok)
        return sp_cfg_fail(w, val->start_mark,
                           "invalid value '%.64s' for %s (expected permission bits in octal, as "
                           "a string: \"0660\", \"0600\" or \"0666\")",
                           s, what);
    unsigned mode = 0;
    for (size_t i = 0; i < n; i++)
        mode = mode * 8 + (unsigned)(s[i] - '0');
    l->unix_mode = (int)mode;
    l->unix_mode_mark =
        (struct sp_conf_mark){(int)val->start_mark.line + 1, (int)val->start_mark.column + 1};
    return 0;
}

int sp_cfg_parse_cidrs_marked(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                              void *obj, const char *what)
{
    int rc = sp_cfg_parse_cidrs(w, f, val, obj, what);
    if (rc == 0)
        *(struct sp_conf_mark *)((char *)obj + f->off2) =
            (struct sp_conf_mark){(int)val->start_mark.line + 1, (int)val->start_mark.column + 1};
    return rc;
}

/* The upstream of l (or of one of its routes) that balances by source_hash, or NULL. */
static const struct sp_upstream_conf *hashing_upstream(const struct sp_listener_conf *l)
{
    if (l->upstream->balance == SP_BALANCE_SOURCE_HASH)
        return l->upstream;
    for (size_t i = 0; i < l->nroutes; i++) {
        if (l->routes[i].upstream->balance == SP_BALANCE_SOURCE_HASH)
            return l->routes[i].upstream;
    }
    return NULL;
}

/* Without PROXY headers: what needs a client IP address. */
static int check_no_ip(struct sp_cfg_walk *w, const struct sp_listener_conf *l, yaml_mark_t listen)
{
    static const char why[] = "the clients of a unix listener have no IP address (who may "
                              "connect is up to the socket file's permissions: unix_mode), "
                              "unless a PROXY header names one (accept_proxy_protocol)";
    if (l->allow_mark.line > 0)
        return sp_cfg_fail(w, sp_cfg_yaml_mark(l->allow_mark),
                           "'allow' in listener '%.64s' matches client IP addresses, but %s",
                           l->name, why);
    if (l->deny_mark.line > 0)
        return sp_cfg_fail(w, sp_cfg_yaml_mark(l->deny_mark),
                           "'deny' in listener '%.64s' matches client IP addresses, but %s",
                           l->name, why);
    if (l->limits.enabled)
        return sp_cfg_fail(w, sp_cfg_yaml_mark(l->limits.mark),
                           "'limits' in listener '%.64s' counts clients by IP address, but %s",
                           l->name, why);
    const struct sp_upstream_conf *up = hashing_upstream(l);
    if (up != NULL)
        return sp_cfg_fail(w, listen,
                           "listener '%.64s' on '%.64s' sends its clients to upstream '%.64s', "
                           "which balances by source_hash, but %s: every client would hash "
                           "alike (choose another balance for that upstream)",
                           l->name, l->listen, up->name, why);
    return 0;
}

int sp_cfg_check_unix(struct sp_cfg_walk *w, const struct sp_listener_conf *l, yaml_mark_t listen)
{
    if (l->unix_mode_mark.line > 0 && !is_unix(l))
        return sp_cfg_fail(w, sp_cfg_yaml_mark(l->unix_mode_mark),
                           "'unix_mode' in listener '%.64s' sets a socket file's permissions, "
                           "but it listens on TCP ('%.64s'), not on unix:/path",
                           l->name, l->listen);
    if (l->unix_mode_mark.line > 0 && is_abstract(l))
        return sp_cfg_fail(w, sp_cfg_yaml_mark(l->unix_mode_mark),
                           "'unix_mode' in listener '%.64s': the abstract socket '%.64s' has no "
                           "file, so no permissions to set (use unix:/path for that)",
                           l->name, l->listen);
    if (!is_unix(l))
        return 0;
    if (!l->accept_proxy_protocol)
        return check_no_ip(w, l, listen);
    if (is_abstract(l))
        return sp_cfg_fail(w, sp_cfg_yaml_mark(l->accept_pp_mark),
                           "listener '%.64s' accepts PROXY headers on the abstract socket "
                           "'%.64s', which has no permissions: any process in the network "
                           "namespace could send one and choose its client address (listen on "
                           "unix:/path with unix_mode instead)",
                           l->name, l->listen);
    if (l->proxy_from_mark.line > 0)
        return sp_cfg_fail(w, sp_cfg_yaml_mark(l->proxy_from_mark),
                           "'proxy_protocol_from' in listener '%.64s' lists IP addresses, but the "
                           "peers of a unix listener have none: whoever the socket file's "
                           "permissions let connect (unix_mode) may send a PROXY header; remove "
                           "it",
                           l->name);
    return 0;
}
