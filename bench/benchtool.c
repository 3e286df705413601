/* benchtool.c: small helpers for bench/run.sh, libc only, built by the script with a plain cc.
 *
 *   benchtool cpu PID        CPU seconds of PID and all its descendants: utime+stime of every
 *                            live process (all its threads, dead ones included) plus
 *                            cutime+cstime (children it has reaped, e.g. socat's forks).
 *   benchtool pids PID       PID and its live descendants, comma-separated (for perf -p).
 *   benchtool mem PID        "rss_kib pss_kib fds pipes procs" summed over PID and its descendants;
 *                            pipes counts distinct pipe:[inode] entries in /proc/P/fd.
 *   benchtool hold ADDR:PORT [--sources K] [--window W] [--timeout-ms T] [--hello FILE]
 *                            holds TCP connections, driven by commands on stdin, one per line:
 *                              open N   open N connections, each sends 16 bytes and waits for the
 *                                       echo; connections spread over source 127.0.0.1..K
 *                              echo     exchange 16 bytes again on every held connection
 *                              close N  close N held connections (oldest first)
 *                              quit     close everything and exit
 *                            With --hello FILE (a captured TLS ClientHello), "open N" sends only
 *                            the first half of FILE on each connection and holds it there (a
 *                            stalled ClientHello; ok = connected and half sent), and
 *                              finish   sends the rest on every held connection and waits for the
 *                                       whole FILE to come back (an echo backend behind an SNI
 *                                       route: the proxy routed it and relayed it intact)
 *                            each command answers one line of key=value counters on stdout:
 *                              ok, refused (connect refused, reset, or EOF before the echo),
 *                              timeout (no answer within T ms), held, ms.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* ---- process tree ---- */

struct proc {
    int pid, ppid;
    unsigned long long ticks; /* utime+stime+cutime+cstime */
};

static struct proc *procs;
static size_t nprocs;

static void scan_procs(void)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    size_t cap = 0;
    if (d == NULL) {
        perror("opendir /proc");
        exit(1);
    }
    while ((e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        char path[300], buf[1024];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *p = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
        if (p == NULL)
            continue;
        char state;
        int ppid;
        unsigned long long ut, st;
        long long cut, cst;
        /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
         * utime stime cutime cstime */
        if (sscanf(p + 1, " %c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld", &state,
                   &ppid, &ut, &st, &cut, &cst) != 6)
            continue;
        if (nprocs == cap) {
            cap = cap ? cap * 2 : 1024;
            procs = realloc(procs, cap * sizeof *procs);
            if (procs == NULL)
                exit(1);
        }
        procs[nprocs].pid = atoi(e->d_name);
        procs[nprocs].ppid = ppid;
        procs[nprocs].ticks = ut + st + (unsigned long long)cut + (unsigned long long)cst;
        nprocs++;
    }
    closedir(d);
}

/* Marks the tree under root; returns the number of processes in it. */
static size_t tree(int root, bool *in)
{
    size_t count = 0;
    bool grew = true;
    for (size_t i = 0; i < nprocs; i++) {
        in[i] = procs[i].pid == root;
        count += in[i];
    }
    while (grew) { /* tiny trees: a fixed-point pass is plenty */
        grew = false;
        for (size_t i = 0; i < nprocs; i++) {
            if (in[i])
                continue;
            for (size_t j = 0; j < nprocs; j++) {
                if (in[j] && procs[j].pid == procs[i].ppid) {
                    in[i] = grew = true;
                    count++;
                    break;
                }
            }
        }
    }
    return count;
}

static long status_kib(int pid, const char *file, const char *key)
{
    char path[64], line[256];
    long v = 0;
    size_t klen = strlen(key);
    snprintf(path, sizeof path, "/proc/%d/%s", pid, file);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, key, klen) == 0) {
            v = strtol(line + klen, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

static int cmp_ul(const void *a, const void *b)
{
    unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;
    return x < y ? -1 : x > y;
}

static void fd_counts(int pid, long *fds, unsigned long **pipes, size_t *npipes, size_t *cap)
{
    char path[300], link[600], target[128];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    struct dirent *e;
    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        (*fds)++;
        snprintf(link, sizeof link, "%s/%s", path, e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        if (strncmp(target, "pipe:[", 6) == 0) {
            if (*npipes == *cap) {
                *cap = *cap ? *cap * 2 : 1024;
                *pipes = realloc(*pipes, *cap * sizeof **pipes);
                if (*pipes == NULL)
                    exit(1);
            }
            (*pipes)[(*npipes)++] = strtoul(target + 6, NULL, 10);
        }
    }
    closedir(d);
}

static int cmd_proc(const char *what, int root)
{
    scan_procs();
    bool *in = calloc(nprocs ? nprocs : 1, sizeof *in);
    if (in == NULL)
        return 1;
    size_t count = tree(root, in);
    if (count == 0) {
        fprintf(stderr, "benchtool: no process %d\n", root);
        return 1;
    }
    if (strcmp(what, "cpu") == 0) {
        unsigned long long t = 0;
        for (size_t i = 0; i < nprocs; i++)
            if (in[i])
                t += procs[i].ticks;
        printf("%.2f\n", (double)t / (double)sysconf(_SC_CLK_TCK));
    } else if (strcmp(what, "pids") == 0) {
        const char *sep = "";
        for (size_t i = 0; i < nprocs; i++) {
            if (in[i]) {
                printf("%s%d", sep, procs[i].pid);
                sep = ",";
            }
        }
        printf("\n");
    } else { /* mem */
        long rss = 0, pss = 0, fds = 0;
        unsigned long *pipes = NULL;
        size_t npipes = 0, cap = 0, distinct = 0;
        for (size_t i = 0; i < nprocs; i++) {
            if (!in[i])
                continue;
            rss += status_kib(procs[i].pid, "status", "VmRSS:");
            pss += status_kib(procs[i].pid, "smaps_rollup", "Pss:");
            fd_counts(procs[i].pid, &fds, &pipes, &npipes, &cap);
        }
        if (npipes > 0) {
            qsort(pipes, npipes, sizeof *pipes, cmp_ul);
            for (size_t i = 0; i < npipes; i++)
                distinct += i == 0 || pipes[i] != pipes[i - 1];
        }
        printf("%ld %ld %ld %zu %zu\n", rss, pss, fds, distinct, count);
        free(pipes);
    }
    free(in);
    return 0;
}

/* ---- connection holder ---- */

enum cstate { C_FREE = 0, C_CONNECTING, C_WAITING, C_HELD };

struct hconn {
    int fd;
    enum cstate state;
    unsigned got;      /* echo bytes received so far */
    bool want_hello;   /* the echo must bring back the whole hello ("finish"), not msg */
    uint64_t deadline; /* ms */
    unsigned char msg[16];
};

static struct hconn *conns;
static size_t nconns, capconns;
static struct sockaddr_in dst;
static int sources = 1, window = 256, timeout_ms = 5000, epfd;
static uint64_t seq;
static unsigned char hello[16384]; /* --hello: the ClientHello replayed, cut in two halves */
static size_t hello_len, hello_half;

/* What the echo must bring back. Derived on each use, never stored as a pointer: conns moves on
 * realloc (start_open) and compact(), so a pointer to c->msg kept in the struct went stale and
 * the next recv compared against freed memory (the segfault of "open 5000"). */
static const unsigned char *want(const struct hconn *c)
{
    return c->want_hello ? hello : c->msg;
}

static unsigned wantlen(const struct hconn *c)
{
    return c->want_hello ? (unsigned)hello_len : (unsigned)sizeof c->msg;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct tally {
    long ok, refused, timeout;
};

static void finish(size_t i, struct tally *t, int outcome) /* 0 ok, 1 refused, 2 timeout */
{
    struct hconn *c = &conns[i];
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    if (outcome == 0) {
        c->state = C_HELD;
        t->ok++;
        return;
    }
    close(c->fd);
    c->fd = -1;
    c->state = C_FREE;
    if (outcome == 1)
        t->refused++;
    else
        t->timeout++;
}

static void send_msg(size_t i, struct tally *t)
{
    struct hconn *c = &conns[i];
    char text[17];
    snprintf(text, sizeof text, "%015llu\n", (unsigned long long)(seq++ % 1000000000000000ULL));
    memcpy(c->msg, text, sizeof c->msg);
    c->want_hello = false;
    c->got = 0;
    c->state = C_WAITING;
    ssize_t n = send(c->fd, c->msg, sizeof c->msg, MSG_NOSIGNAL);
    if (n != (ssize_t)sizeof c->msg) {
        finish(i, t, 1);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = i};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* --hello: a freshly connected socket sends the first half of the hello and is held there. */
static void send_half_hello(size_t i, struct tally *t)
{
    ssize_t n = send(conns[i].fd, hello, hello_half, MSG_NOSIGNAL);
    finish(i, t, n == (ssize_t)hello_half ? 0 : 1);
}

static void on_event(size_t i, uint32_t events, struct tally *t)
{
    struct hconn *c = &conns[i];
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0 || (events & (EPOLLERR | EPOLLHUP)) != 0) {
            finish(i, t, 1);
            return;
        }
        if (hello_len > 0)
            send_half_hello(i, t);
        else
            send_msg(i, t);
        return;
    }
    if (c->state != C_WAITING)
        return; /* not in the epoll set any more: nothing to do */
    static unsigned char buf[sizeof hello];
    size_t room = wantlen(c) - c->got;
    ssize_t n = recv(c->fd, buf, room < sizeof buf ? room : sizeof buf, 0);
    if (n > 0 && memcmp(buf, want(c) + c->got, (size_t)n) == 0) {
        c->got += (unsigned)n;
        if (c->got == wantlen(c))
            finish(i, t, 0);
        return;
    }
    if (n < 0 && errno == EAGAIN)
        return;
    finish(i, t, 1); /* EOF, reset or wrong bytes */
}

/* Drives every connection in C_CONNECTING/C_WAITING to an outcome; starts new work with start(),
 * which returns false when nothing is left to start. */
static void run(bool (*start)(struct tally *), struct tally *t)
{
    struct epoll_event evs[256];
    long inflight_cap = window;
    for (;;) {
        long inflight = 0;
        for (size_t i = 0; i < nconns; i++)
            inflight += conns[i].state == C_CONNECTING || conns[i].state == C_WAITING;
        bool more = true;
        while (inflight < inflight_cap && (more = start(t)))
            inflight++;
        if (inflight == 0 && !more)
            return;
        int n = epoll_wait(epfd, evs, 256, 50);
        for (int k = 0; k < n; k++)
            on_event(evs[k].data.u64, evs[k].events, t);
        uint64_t now = now_ms();
        for (size_t i = 0; i < nconns; i++)
            if ((conns[i].state == C_CONNECTING || conns[i].state == C_WAITING) &&
                now > conns[i].deadline)
                finish(i, t, 2);
        if (n == 0 && inflight == 0 && !more)
            return;
    }
}

static long to_open;
static size_t echo_next;

static bool start_open(struct tally *t)
{
    if (to_open <= 0)
        return false;
    to_open--;
    size_t i = nconns;
    if (nconns == capconns) {
        /* small start: the array moves often, so anything that keeps a pointer into it fails
         * under ASan with a few hundred connections (bench/selftest.sh), not only past 4096 */
        capconns = capconns ? capconns * 2 : 64;
        conns = realloc(conns, capconns * sizeof *conns);
        if (conns == NULL)
            exit(1);
    }
    nconns++;
    struct hconn *c = &conns[i];
    memset(c, 0, sizeof *c);
    c->deadline = now_ms() + (uint64_t)timeout_ms;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd == -1) {
        c->state = C_FREE;
        t->refused++;
        fprintf(stderr, "benchtool: socket: %s\n", strerror(errno));
        return true;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(i % (size_t)sources));
    bind(c->fd, (struct sockaddr *)&src, sizeof src);
    c->state = C_CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = i};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    if (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) == -1 && errno != EINPROGRESS)
        finish(i, t, 1);
    return true;
}

static bool start_echo(struct tally *t)
{
    while (echo_next < nconns && conns[echo_next].state != C_HELD)
        echo_next++;
    if (echo_next >= nconns)
        return false;
    size_t i = echo_next++;
    conns[i].deadline = now_ms() + (uint64_t)timeout_ms;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = i};
    epoll_ctl(epfd, EPOLL_CTL_ADD, conns[i].fd, &ev);
    send_msg(i, t);
    return true;
}

/* --hello "finish": the rest of the hello on the next held connection; the echo must bring back
 * the whole hello. */
static bool start_finish(struct tally *t)
{
    while (echo_next < nconns && conns[echo_next].state != C_HELD)
        echo_next++;
    if (echo_next >= nconns)
        return false;
    size_t i = echo_next++;
    struct hconn *c = &conns[i];
    c->deadline = now_ms() + (uint64_t)timeout_ms;
    c->want_hello = true;
    c->got = 0;
    c->state = C_WAITING;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = i};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    size_t rest = hello_len - hello_half;
    if (send(c->fd, hello + hello_half, rest, MSG_NOSIGNAL) != (ssize_t)rest)
        finish(i, t, 1);
    return true;
}

static int load_hello(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "benchtool hold: %s: %s\n", path, strerror(errno));
        return -1;
    }
    hello_len = fread(hello, 1, sizeof hello, f);
    fclose(f);
    if (hello_len < 16) {
        fprintf(stderr, "benchtool hold: %s: too short for a ClientHello\n", path);
        return -1;
    }
    hello_half = hello_len / 2;
    return 0;
}

static long held(void)
{
    long h = 0;
    for (size_t i = 0; i < nconns; i++)
        h += conns[i].state == C_HELD;
    return h;
}

static void compact(void)
{
    size_t w = 0;
    for (size_t i = 0; i < nconns; i++)
        if (conns[i].state == C_HELD)
            conns[w++] = conns[i];
    nconns = w;
}

static int cmd_hold(int argc, char **argv)
{
    char host[64];
    const char *colon = strrchr(argv[0], ':');
    if (colon == NULL || (size_t)(colon - argv[0]) >= sizeof host) {
        fprintf(stderr, "benchtool hold: want ADDR:PORT\n");
        return 2;
    }
    memcpy(host, argv[0], (size_t)(colon - argv[0]));
    host[colon - argv[0]] = '\0';
    dst.sin_family = AF_INET;
    dst.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &dst.sin_addr) != 1) {
        fprintf(stderr, "benchtool hold: bad address %s\n", host);
        return 2;
    }
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--sources") == 0)
            sources = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--window") == 0)
            window = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--timeout-ms") == 0)
            timeout_ms = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--hello") == 0 && load_hello(argv[i + 1]) != 0)
            return 2;
    }
    if (sources < 1 || sources > 250)
        sources = 1;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    setvbuf(stdout, NULL, _IOLBF, 0);
    char line[128];
    while (fgets(line, sizeof line, stdin) != NULL) {
        struct tally t = {0};
        uint64_t t0 = now_ms();
        long n = 0;
        if (sscanf(line, "open %ld", &n) == 1) {
            to_open = n;
            run(start_open, &t);
        } else if (strncmp(line, "echo", 4) == 0) {
            echo_next = 0;
            run(start_echo, &t);
        } else if (strncmp(line, "finish", 6) == 0 && hello_len > 0) {
            echo_next = 0;
            run(start_finish, &t);
        } else if (sscanf(line, "close %ld", &n) == 1) {
            for (size_t i = 0; i < nconns && n > 0; i++) {
                if (conns[i].state == C_HELD) {
                    close(conns[i].fd);
                    conns[i].state = C_FREE;
                    n--;
                    t.ok++;
                }
            }
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        } else {
            printf("error unknown command\n");
            continue;
        }
        compact();
        printf("ok=%ld refused=%ld timeout=%ld held=%ld ms=%llu\n", t.ok, t.refused, t.timeout,
               held(), (unsigned long long)(now_ms() - t0));
    }
    for (size_t i = 0; i < nconns; i++)
        if (conns[i].state == C_HELD)
            close(conns[i].fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && (strcmp(argv[1], "cpu") == 0 || strcmp(argv[1], "pids") == 0 ||
                      strcmp(argv[1], "mem") == 0))
        return cmd_proc(argv[1], atoi(argv[2]));
    if (argc >= 3 && strcmp(argv[1], "hold") == 0)
        return cmd_hold(argc - 2, argv + 2);
    fprintf(stderr, "usage: benchtool cpu|pids|mem PID | hold ADDR:PORT [--sources K] "
                    "[--window W] [--timeout-ms T] [--hello FILE]\n");
    return 2;
}
