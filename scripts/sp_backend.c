/* sp_backend.c: a small TCP backend for the demo and the benchmarks (echo, name, sink, source).
 * One thread, one level-triggered epoll loop, non-blocking sockets; SIGTERM/SIGINT arrive through
 * a signalfd and end the loop cleanly. libc only: it shares nothing with the proxy on purpose.
 *
 * Buffering: reads go into one shared scratch buffer and are written straight back; only what the
 * peer would not take is copied into a per-connection buffer, and reading stops until it drains.
 * An idle connection therefore holds no buffer, and a slow reader cannot make us buffer more than
 * one read's worth. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "parse.h"
#include "sock_unix.h"

#define SCRATCH_SIZE    (64 * 1024)
#define PATTERN_PERIOD  251 /* source bytes are i % 251, so a reader can verify them */
#define MAX_EVENTS      256
#define ACCEPT_BATCH    64
#define EMFILE_PAUSE_MS 100

enum mode { MODE_ECHO = 0, MODE_NAME, MODE_SINK, MODE_SOURCE, MODE_COUNT };

static const char *const mode_names[MODE_COUNT] = {"echo", "name", "sink", "source"};

struct options {
    const char *name; /* borrowed from argv */
    const char *addr; /* borrowed from argv */
    enum mode mode;
    uint64_t bytes; /* source mode: bytes to write per connection */
    bool verbose;
};

struct conn {
    int fd; /* owned; -1 once closed */
    uint64_t id;
    char peer[80];
    char *pend;      /* owned; bytes the peer has not taken yet, NULL when none */
    size_t pend_off; /* first unsent byte in pend */
    size_t pend_len;
    uint64_t in, out;   /* byte counters, for the verbose line */
    uint64_t remaining; /* source mode: bytes still to write */
    bool rd_eof;        /* the peer sent FIN */
    bool wr_shut;       /* we sent FIN (source mode, after the last byte) */
    uint32_t events;    /* current epoll interest */
    struct conn *prev, *next;
};

struct backend {
    struct options opt;
    int epfd;
    int lfd;
    struct sp_unix_file file; /* the socket file of a unix: address, removed at exit */
    int sfd;                  /* signalfd */
    bool listen_paused;
    uint64_t next_id;
    struct conn *conns; /* owned list of live connections */
    size_t nconns;
};

/* Tags for epoll_event.data.ptr that are not connections. */
static char tag_listener, tag_signal;

static char scratch[SCRATCH_SIZE];
static char pattern[SCRATCH_SIZE + PATTERN_PERIOD];

static void usage(FILE *f, const char *argv0)
{
    fprintf(f,
            "usage: %s [--name NAME] [--mode echo|name|sink|source] [--bytes N] [--verbose]\n"
            "       %*s LISTEN_ADDR:PORT\n"
            "\n"
            "A small TCP backend for the splicer demo and benchmarks.\n"
            "  LISTEN_ADDR:PORT  e.g. 127.0.0.1:9001, [::1]:9001, localhost:9001; port 0 picks\n"
            "                    a free port (printed on stderr at start); or a Unix socket,\n"
            "                    unix:/path/app.sock (a stale file is replaced) or unix:@name\n"
            "  --mode echo       echo everything back (default)\n"
            "  --mode name       write \"NAME\\n\" on connect, then echo\n"
            "  --mode sink       read and discard\n"
            "  --mode source     write N bytes (byte i is i %% %d), then close\n"
            "  --name NAME       name for --mode name and for log lines (default: sp-backend)\n"
            "  --bytes N         bytes per connection for --mode source; k/m/g suffixes are\n"
            "                    binary (default: 1m)\n"
            "  --verbose, -v     one line on stderr per closed connection\n"
            "  --help, -h        this text\n"
            "SIGTERM or SIGINT closes every connection and exits 0.\n",
            argv0, (int)strlen(argv0), "", PATTERN_PERIOD);
}

static int parse_bytes(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s < '0' || *s > '9')
        return -EINVAL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return -errno;
    unsigned shift = 0;
    if (*end != '\0') {
        const char *units = "kmg";
        const char *u = strchr(units, *end | 0x20);
        if (u == NULL || end[1] != '\0')
            return -EINVAL;
        shift = 10 * (unsigned)(u - units + 1);
    }
    if (shift != 0 && v > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = (uint64_t)v << shift;
    return 0;
}

static int parse_mode(const char *s, enum mode *out)
{
    for (int i = 0; i < MODE_COUNT; i++) {
        if (strcmp(s, mode_names[i]) == 0) {
            *out = (enum mode)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* Returns 0 to run, 1 when -h was asked for, -1 on a usage error (already reported). */
static int parse_args(int argc, char **argv, struct options *o)
{
    *o = (struct options){.name = "sp-backend", .mode = MODE_ECHO, .bytes = 1024 * 1024};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = (i + 1 < argc) ? argv[i + 1] : NULL;
        bool takes =
            strcmp(a, "--name") == 0 || strcmp(a, "--mode") == 0 || strcmp(a, "--bytes") == 0;
        if (takes && val == NULL) {
            fprintf(stderr, "%s: %s needs a value\n", argv[0], a);
            return -1;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout, argv[0]);
            return 1;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            o->verbose = true;
        } else if (strcmp(a, "--name") == 0) {
            o->name = argv[++i];
        } else if (strcmp(a, "--mode") == 0) {
            if (parse_mode(argv[++i], &o->mode) != 0) {
                fprintf(stderr, "%s: unknown mode '%s'\n", argv[0], argv[i]);
                return -1;
            }
        } else if (strcmp(a, "--bytes") == 0) {
            if (parse_bytes(argv[++i], &o->bytes) != 0) {
                fprintf(stderr, "%s: bad byte count '%s'\n", argv[0], argv[i]);
                return -1;
            }
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "%s: unknown option '%s' (try -h)\n", argv[0], a);
            return -1;
        } else if (o->addr != NULL) {
            fprintf(stderr, "%s: more than one address given (try -h)\n", argv[0]);
            return -1;
        } else {
            o->addr = a;
        }
    }
    if (o->addr == NULL) {
        fprintf(stderr, "%s: missing LISTEN_ADDR:PORT (try -h)\n", argv[0]);
        return -1;
    }
    return 0;
}

/* Splits "host:port" or "[v6]:port" into host and port (copied into the given buffers). */
static int split_addr(const char *s, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon;
    const char *h = s;
    size_t hl;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -EINVAL;
        h = s + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -EINVAL;
        hl = (size_t)(colon - s);
    }
    size_t pl = strlen(colon + 1);
    if (hl == 0 || hl >= hostlen || pl == 0 || pl >= portlen)
        return -EINVAL;
    /* getaddrinfo takes "99999" and wraps it; insist on a real port (0 = any free one). */
    char *end;
    errno = 0;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || errno != 0 || p > 65535)
        return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    memcpy(port, colon + 1, pl + 1);
    return 0;
}

static void format_addr(const struct sockaddr *sa, socklen_t len, char *buf, size_t buflen)
{
    char host[INET6_ADDRSTRLEN + 16], port[8]; /* numeric forms only */
    if (getnameinfo(sa, len, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(buf, buflen, "?");
        return;
    }
    if (sa->sa_family == AF_INET6)
        snprintf(buf, buflen, "[%s]:%s", host, port);
    else
        snprintf(buf, buflen, "%s:%s", host, port);
}

/* unix:/path or unix:@name: a stale socket file is replaced, as splicer does. */
static int listen_unix(const char *argv0, const char *addr, struct sp_unix_file *file)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (sp_parse_unix_addr(addr, &ss, &len) != 0) {
        fprintf(stderr, "%s: bad address '%s' (want unix:/absolute/path or unix:@name)\n", argv0,
                addr);
        return -1;
    }
    int fd = sp_unix_listen((struct sockaddr *)&ss, len, -1, SOMAXCONN, file);
    if (fd < 0) {
        fprintf(stderr, "%s: listen %s: %s\n", argv0, addr, strerror(-fd));
        return -1;
    }
    return fd;
}

/* Returns a listening non-blocking socket, or -1 after printing why. */
static int listen_on(const char *argv0, const char *addr, struct sp_unix_file *file)
{
    if (sp_parse_is_unix(addr))
        return listen_unix(argv0, addr, file);
    char host[256], port[16];
    if (split_addr(addr, host, sizeof(host), port, sizeof(port)) != 0) {
        fprintf(stderr, "%s: bad address '%s' (want HOST:PORT or [V6]:PORT)\n", argv0, addr);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "%s: %s: %s\n", argv0, addr, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd == -1 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
        bind(fd, res->ai_addr, res->ai_addrlen) == -1 || listen(fd, SOMAXCONN) == -1) {
        fprintf(stderr, "%s: listen %s: %s\n", argv0, addr, strerror(errno));
        if (fd != -1)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static int set_interest(struct backend *b, struct conn *c, uint32_t events)
{
    if (events == c->events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, c->fd, &ev) == -1)
        return -errno;
    c->events = events;
    return 0;
}

/* The epoll interest that follows from the connection's state: read unless a backlog is
 * waiting (echo) or the peer is done; write while a backlog or source bytes remain. */
static uint32_t wanted_events(const struct backend *b, const struct conn *c)
{
    uint32_t ev = 0;
    bool want_write = c->pend != NULL || (b->opt.mode == MODE_SOURCE && !c->wr_shut);
    if (!c->rd_eof && c->pend == NULL)
        ev |= EPOLLIN;
    if (want_write)
        ev |= EPOLLOUT;
    return ev;
}

static void conn_close(struct backend *b, struct conn *c, const char *why)
{
    if (b->opt.verbose)
        fprintf(stderr, "%s: conn %" PRIu64 " %s in=%" PRIu64 " out=%" PRIu64 " %s\n", b->opt.name,
                c->id, c->peer, c->in, c->out, why);
    /* Closing the fd removes it from the epoll set. */
    close(c->fd);
    c->fd = -1;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        b->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    b->nconns--;
    free(c->pend);
    c->pend = NULL;
    free(c);
}

/* Sends buf[0..len); keeps what the peer would not take as the backlog.
 * Returns 0, or a negative errno when the connection is broken. */
static int send_or_keep(struct conn *c, const char *buf, size_t len)
{
    ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
    if (n == -1) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
        n = 0;
    }
    c->out += (uint64_t)n;
    if ((size_t)n == len)
        return 0;
    c->pend = malloc(len - (size_t)n);
    if (c->pend == NULL)
        return -ENOMEM;
    memcpy(c->pend, buf + n, len - (size_t)n);
    c->pend_off = 0;
    c->pend_len = len - (size_t)n;
    return 0;
}

static int flush_backlog(struct conn *c)
{
    while (c->pend_off < c->pend_len) {
        ssize_t n = send(c->fd, c->pend + c->pend_off, c->pend_len - c->pend_off, MSG_NOSIGNAL);
        if (n == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EINTR)
                continue;
            return -errno;
        }
        c->out += (uint64_t)n;
        c->pend_off += (size_t)n;
    }
    free(c->pend);
    c->pend = NULL;
    c->pend_off = c->pend_len = 0;
    return 0;
}

static int source_write(struct conn *c)
{
    while (c->remaining > 0) {
        size_t off = (size_t)((c->out) % PATTERN_PERIOD);
        size_t len = c->remaining < SCRATCH_SIZE ? (size_t)c->remaining : SCRATCH_SIZE;
        ssize_t n = send(c->fd, pattern + off, len, MSG_NOSIGNAL);
        if (n == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EINTR)
                continue;
            return -errno;
        }
        c->out += (uint64_t)n;
        c->remaining -= (uint64_t)n;
    }
    /* All sent: FIN now, then keep reading until the peer closes, so that unread input
     * never turns our close into a RST that could destroy bytes still in flight. */
    if (shutdown(c->fd, SHUT_WR) == -1)
        return -errno;
    c->wr_shut = true;
    return 0;
}

/* Reads once. Echo and name modes write the bytes straight back. */
static int conn_read(struct backend *b, struct conn *c)
{
    ssize_t n = recv(c->fd, scratch, sizeof(scratch), 0);
    if (n == -1) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        return -errno;
    }
    if (n == 0) {
        c->rd_eof = true;
        return 0;
    }
    c->in += (uint64_t)n;
    if (b->opt.mode == MODE_ECHO || b->opt.mode == MODE_NAME)
        return send_or_keep(c, scratch, (size_t)n);
    return 0;
}

/* Handles one epoll report for a connection. Closes it when it is finished or broken. */
static void conn_event(struct backend *b, struct conn *c, uint32_t events)
{
    int rc = 0;
    if (events & EPOLLERR) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        rc = err != 0 ? -err : -EIO;
    }
    if (rc == 0 && (events & EPOLLOUT) && c->pend != NULL)
        rc = flush_backlog(c);
    if (rc == 0 && (events & EPOLLOUT) && b->opt.mode == MODE_SOURCE && !c->wr_shut)
        rc = source_write(c);
    if (rc == 0 && (events & (EPOLLIN | EPOLLHUP)) && !c->rd_eof && c->pend == NULL)
        rc = conn_read(b, c);
    if (rc != 0) {
        conn_close(b, c, strerror(-rc));
        return;
    }
    /* Done once the peer has sent FIN and we owe it nothing more. */
    bool owe = c->pend != NULL || (b->opt.mode == MODE_SOURCE && !c->wr_shut);
    if (c->rd_eof && !owe) {
        conn_close(b, c, "closed");
        return;
    }
    if ((events & EPOLLHUP) && !(events & EPOLLIN)) {
        conn_close(b, c, "hang-up");
        return;
    }
    rc = set_interest(b, c, wanted_events(b, c));
    if (rc != 0)
        conn_close(b, c, strerror(-rc));
}

static void conn_start(struct backend *b, int fd, const struct sockaddr *sa, socklen_t salen)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    c->fd = fd;
    c->id = ++b->next_id;
    if (b->opt.verbose)
        format_addr(sa, salen, c->peer, sizeof(c->peer));
    c->remaining = b->opt.mode == MODE_SOURCE ? b->opt.bytes : 0;
    c->next = b->conns;
    if (b->conns != NULL)
        b->conns->prev = c;
    b->conns = c;
    b->nconns++;

    int rc = 0;
    if (b->opt.mode == MODE_NAME) {
        char line[512];
        int n = snprintf(line, sizeof(line), "%s\n", b->opt.name);
        size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
        rc = send_or_keep(c, line, len);
    }
    c->events = wanted_events(b, c);
    struct epoll_event ev = {.events = c->events, .data.ptr = c};
    if (rc == 0 && epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
        rc = -errno;
    if (rc != 0)
        conn_close(b, c, strerror(-rc));
}

static void listener_pause(struct backend *b, bool pause)
{
    struct epoll_event ev = {.events = pause ? 0 : EPOLLIN, .data.ptr = &tag_listener};
    if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, b->lfd, &ev) == 0)
        b->listen_paused = pause;
}

static void accept_batch(struct backend *b)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t sslen = sizeof(ss);
        int fd = accept4(b->lfd, (struct sockaddr *)&ss, &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd != -1) {
            conn_start(b, fd, (struct sockaddr *)&ss, sslen);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* Out of descriptors: stop accepting for a moment instead of spinning. */
            fprintf(stderr, "%s: accept: %s (pausing %d ms, %zu open)\n", b->opt.name,
                    strerror(errno), EMFILE_PAUSE_MS, b->nconns);
            listener_pause(b, true);
        } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            fprintf(stderr, "%s: accept: %s\n", b->opt.name, strerror(errno));
        }
        return;
    }
}

/* Returns 0 on SIGTERM/SIGINT, 1 on a fatal loop error. */
static int run(struct backend *b)
{
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(b->epfd, evs, MAX_EVENTS, b->listen_paused ? EMFILE_PAUSE_MS : -1);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "%s: epoll_wait: %s\n", b->opt.name, strerror(errno));
            return 1;
        }
        if (n == 0 && b->listen_paused)
            listener_pause(b, false);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &tag_signal)
                return 0;
            if (p == &tag_listener)
                accept_batch(b);
            else
                conn_event(b, p, evs[i].events);
        }
    }
}

/* Blocks SIGTERM/SIGINT and returns a signalfd for them, or -1. */
static int signals_setup(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static int setup(struct backend *b, const char *argv0)
{
    b->sfd = signals_setup();
    if (b->sfd == -1) {
        fprintf(stderr, "%s: signals: %s\n", argv0, strerror(errno));
        return -1;
    }
    b->lfd = listen_on(argv0, b->opt.addr, &b->file);
    if (b->lfd == -1)
        return -1;
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &tag_listener};
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &tag_signal};
    if (b->epfd == -1 || epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->lfd, &lev) == -1 ||
        epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->sfd, &sev) == -1) {
        fprintf(stderr, "%s: epoll: %s\n", argv0, strerror(errno));
        return -1;
    }
    return 0;
}

static void teardown(struct backend *b)
{
    while (b->conns != NULL)
        conn_close(b, b->conns, "shutdown");
    if (b->epfd != -1)
        close(b->epfd);
    if (b->lfd != -1)
        close(b->lfd);
    sp_unix_file_remove(&b->file);
    if (b->sfd != -1)
        close(b->sfd);
}

int main(int argc, char **argv)
{
    struct backend b = {.epfd = -1, .lfd = -1, .sfd = -1};
    int rc = parse_args(argc, argv, &b.opt);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (char)(i % PATTERN_PERIOD);

    rc = setup(&b, argv[0]);
    if (rc == 0) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        char where[80] = "?";
        if (sp_parse_is_unix(b.opt.addr))
            snprintf(where, sizeof(where), "%.79s", b.opt.addr);
        else if (getsockname(b.lfd, (struct sockaddr *)&ss, &len) == 0)
            format_addr((struct sockaddr *)&ss, len, where, sizeof(where));
        fprintf(stderr, "%s: listening on %s, mode %s\n", b.opt.name, where,
                mode_names[b.opt.mode]);
        rc = run(&b);
    }
    teardown(&b);
    return rc == 0 ? 0 : 1;
}
