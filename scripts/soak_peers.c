/* soak_peers.c: the long-lived peers of scripts/soak.sh: a pool of idle client connections that
 * are pinged now and then, and a backend that resets its connections (a fault to inject). */
#include "soak_client.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PING_LEN     16
#define ANSWER_MS    5000 /* name line or ping echo later than this: a failure */
#define REDIAL_MS    1000
#define OKN_EVERY_MS 10000

/* ---- idle pool ---- */

enum { I_DOWN, I_CONNECTING, I_NAME, I_IDLE, I_ECHO };

struct iconn {
    int fd;      /* owned; -1 while down */
    int st;      /* I_* */
    int64_t t0;  /* when this connection was opened */
    int64_t due; /* redial, answer deadline or next ping, by state */
    char name[SOAK_NAME_MAX + 1];
    size_t name_len;
    uint8_t ping[PING_LEN];
    size_t got;
};

struct pool {
    int ep;
    struct iconn *c;
    int n;
    uint64_t rng;
    uint64_t okn; /* pings answered since the last okn line */
};

static int64_t next_ping(struct pool *p, int64_t now)
{
    double mean = soak_opt.ping_every * 1000;
    return now + (int64_t)(mean / 2 + (double)(soak_rnd(&p->rng) % (uint64_t)(mean + 1)));
}

static void idle_drop(struct pool *p, struct iconn *c, const char *result, const char *why)
{
    c->name[c->name_len] = '\0';
    soak_log(c->t0, "idle", result, c->name, 0, why);
    close(c->fd);
    c->fd = -1;
    c->st = I_DOWN;
    c->due = soak_now_ms() + REDIAL_MS;
    (void)p;
}

static void idle_dial(struct pool *p, struct iconn *c)
{
    c->t0 = soak_now_ms();
    c->name_len = 0;
    c->fd = soak_dial_start();
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    if (c->fd < 0 || epoll_ctl(p->ep, EPOLL_CTL_ADD, c->fd, &ev) == -1) {
        soak_log(c->t0, "idle", "fail", "", 0, "connect_error");
        if (c->fd >= 0)
            close(c->fd);
        c->fd = -1;
        c->due = c->t0 + REDIAL_MS;
        return;
    }
    c->st = I_CONNECTING;
    c->due = c->t0 + ANSWER_MS;
}

static void idle_ping(struct pool *p, struct iconn *c, int64_t now)
{
    for (int i = 0; i < PING_LEN; i++)
        c->ping[i] = (uint8_t)soak_rnd(&p->rng);
    /* 16 bytes into an idle socket's empty buffer: all or an error, never a part */
    if (send(c->fd, c->ping, PING_LEN, MSG_NOSIGNAL) != PING_LEN)
        return idle_drop(p, c, "fail", "ping_send_error");
    c->st = I_ECHO;
    c->got = 0;
    c->due = now + ANSWER_MS;
}

/* Reads what the backend sent: its name line, then the echo of a ping. */
static void idle_read(struct pool *p, struct iconn *c, int64_t now)
{
    uint8_t buf[256];
    ssize_t r = recv(c->fd, buf, sizeof buf, 0);
    if (r == -1 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        char why[64];
        snprintf(why, sizeof why, "%s_in_state_%d", r == 0 ? "eof" : "error", c->st);
        return idle_drop(p, c, "fail", why);
    }
    for (ssize_t i = 0; i < r; i++) {
        if (c->st == I_NAME && buf[i] == '\n') {
            c->st = I_IDLE;
            c->due = next_ping(p, now);
        } else if (c->st == I_NAME && c->name_len < SOAK_NAME_MAX) {
            c->name[c->name_len++] = (char)buf[i];
        } else if (c->st == I_ECHO && buf[i] == c->ping[c->got]) {
            if (++c->got == PING_LEN) {
                p->okn++;
                c->st = I_IDLE;
                c->due = next_ping(p, now);
            }
        } else {
            return idle_drop(p, c, "corrupt", "unexpected_byte");
        }
    }
}

static void idle_event(struct pool *p, struct iconn *c, uint32_t events, int64_t now)
{
    if (c->st == I_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0)
            return idle_drop(p, c, "fail", "connect_error");
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(p->ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->st = I_NAME;
        c->due = now + ANSWER_MS;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        idle_read(p, c, now);
}

static void idle_timers(struct pool *p, int64_t now)
{
    for (int i = 0; i < p->n; i++) {
        struct iconn *c = &p->c[i];
        if (now < c->due)
            continue;
        if (c->st == I_DOWN)
            idle_dial(p, c);
        else if (c->st == I_IDLE)
            idle_ping(p, c, now);
        else
            idle_drop(p, c, "fail",
                      c->st == I_ECHO   ? "ping_timeout"
                      : c->st == I_NAME ? "name_timeout"
                                        : "connect_timeout");
    }
}

int soak_idle_main(void)
{
    struct pool p = {.n = soak_opt.conns, .rng = soak_seed()};
    p.ep = epoll_create1(EPOLL_CLOEXEC);
    p.c = calloc((size_t)p.n, sizeof *p.c);
    if (p.ep == -1 || p.c == NULL) {
        perror("soak-client idle");
        return 1;
    }
    for (int i = 0; i < p.n; i++)
        p.c[i].fd = -1;
    int64_t last_okn = soak_now_ms();
    while (soak_may_start()) {
        struct epoll_event ev[256];
        int k = epoll_wait(p.ep, ev, 256, 100);
        int64_t now = soak_now_ms();
        for (int i = 0; i < k; i++) {
            struct iconn *c = ev[i].data.ptr;
            if (c->fd >= 0)
                idle_event(&p, c, ev[i].events, now);
        }
        idle_timers(&p, now);
        if (now - last_okn >= OKN_EVERY_MS) {
            soak_log(last_okn, "idle", "okn", "", p.okn, "");
            p.okn = 0;
            last_okn = now;
        }
    }
    soak_log(last_okn, "idle", "okn", "", p.okn, "");
    for (int i = 0; i < p.n; i++)
        if (p.c[i].fd >= 0)
            close(p.c[i].fd);
    close(p.ep);
    free(p.c);
    return 0;
}

/* ---- resetter: names itself, echoes a random amount for a random time, then resets ---- */

static void *resetter_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    uint64_t r = soak_seed();
    uint64_t limit = soak_rnd(&r) % (2u << 20), echoed = 0;
    int64_t deadline = soak_now_ms() + (int64_t)(soak_rnd(&r) % 1500);
    struct timeval tv = {.tv_sec = 1};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    char line[SOAK_NAME_MAX + 2];
    int n = snprintf(line, sizeof line, "%s\n", soak_opt.name);
    if (send(fd, line, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return NULL;
    }
    static _Thread_local char buf[65536];
    while (echoed < limit && soak_now_ms() < deadline) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 50) != 1)
            continue;
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k <= 0) { /* the peer finished or failed first: an ordinary close */
            close(fd);
            return NULL;
        }
        if (send(fd, buf, (size_t)k, MSG_NOSIGNAL) != k)
            break;
        echoed += (uint64_t)k;
    }
    soak_close_reset(fd);
    return NULL;
}

int soak_resetter_main(void)
{
    int one = 1;
    int lfd = socket(soak_opt.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd == -1 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == -1 ||
        bind(lfd, (struct sockaddr *)&soak_opt.addr, soak_opt.addrlen) == -1 ||
        listen(lfd, 128) == -1) {
        perror("soak-client resetter: listen");
        return 1;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    while (!atomic_load(&soak_stop)) {
        struct pollfd pf = {.fd = lfd, .events = POLLIN};
        if (poll(&pf, 1, 200) != 1)
            continue;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        pthread_t t;
        if (fd >= 0 && pthread_create(&t, &attr, resetter_conn, (void *)(intptr_t)fd) != 0)
            close(fd);
    }
    close(lfd);
    return 0;
}
