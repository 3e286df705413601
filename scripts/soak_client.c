/* soak_client.c: the load peers of scripts/soak.sh, and their common parts. libc and pthreads
 * only; it shares nothing with the proxy on purpose.
 *
 * The clients talk to sp-backend in name mode through splicer: the backend writes "NAME\n" when
 * it accepts, then echoes. Every byte that comes back is compared with the byte that was sent
 * (regenerated from a per-exchange seed), so an exchange is verified in both directions at once,
 * and the name line says which backend served it: a failure can then be matched to a fault
 * injected into that backend.
 *
 * Each event is one line appended to the log (one write(2), O_APPEND):
 *   T_START_MS T_END_MS LOAD RESULT BACKEND BYTES DETAIL
 * RESULT: ok (verified), okn (BYTES successful idle pings since the last okn line), fail (ended
 * early: reset, EOF, refused, timeout), corrupt (a byte differed or came in excess, a PROXY line
 * or a route was wrong: never explained by a fault), abort (the client aborted on purpose),
 * stopped (SIGTERM). BYTES is what came back verified. */
#include "soak_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK    (256 * 1024)
#define STALL_MS 30000 /* nothing moved for this long: failed (STOP faults are shorter) */
#define DIAL_MS  5000

struct soak_opts soak_opt;
atomic_bool soak_stop;
static int log_fd = 2;
static int64_t t_begin;

int64_t soak_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool soak_may_start(void)
{
    return !atomic_load(&soak_stop) && soak_now_ms() - t_begin < (int64_t)(soak_opt.seconds * 1000);
}

void soak_log(int64_t t0, const char *load, const char *result, const char *backend, uint64_t bytes,
              const char *detail)
{
    char line[512];
    int n = snprintf(line, sizeof line, "%" PRId64 " %" PRId64 " %s %s %s %" PRIu64 " %s\n", t0,
                     soak_now_ms(), load, result, backend[0] ? backend : "-", bytes,
                     detail[0] ? detail : "-");
    if (n > 0 && write(log_fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1) < 0)
        perror("soak-client: log");
}

uint64_t soak_rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

uint64_t soak_seed(void)
{
    static atomic_uint_fast64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t s = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^
                 (atomic_fetch_add(&counter, 1) + 1) * 0x9e3779b97f4a7c15ULL;
    return s != 0 ? s : 1;
}

int soak_dial_start(void)
{
    int fd = socket(soak_opt.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    if (connect(fd, (struct sockaddr *)&soak_opt.addr, soak_opt.addrlen) == -1 &&
        errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

void soak_close_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* A non-blocking socket connected to --connect within DIAL_MS, or -errno. */
static int dial(void)
{
    int fd = soak_dial_start();
    if (fd < 0)
        return fd;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t len = sizeof err;
    if (poll(&p, 1, DIAL_MS) != 1)
        err = ETIMEDOUT;
    else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
        err = errno;
    if (err != 0) {
        close(fd);
        return -err;
    }
    return fd;
}

static const char *err_word(int e)
{
    switch (e) {
    case ECONNRESET:
        return "reset";
    case ECONNREFUSED:
        return "refused";
    case ETIMEDOUT:
        return "timeout";
    case EPIPE:
        return "epipe";
    default:
        return "error";
    }
}

/* ---- the byte stream of an exchange: a head (PROXY header, ClientHello), then random bytes ----
 */

struct gen {
    uint64_t s;
    uint8_t left[8];
    unsigned nleft;
};

static void gen_init(struct gen *g, uint64_t seed)
{
    g->s = seed | 1;
    g->nleft = 0;
}

static void gen_fill(struct gen *g, uint8_t *out, size_t n)
{
    for (; n > 0 && g->nleft > 0; n--)
        *out++ = g->left[8 - g->nleft--];
    for (; n >= 8; n -= 8, out += 8) {
        uint64_t v = soak_rnd(&g->s);
        memcpy(out, &v, 8);
    }
    if (n > 0) {
        uint64_t v = soak_rnd(&g->s);
        memcpy(g->left, &v, 8);
        g->nleft = 8;
        for (; n > 0; n--)
            *out++ = g->left[8 - g->nleft--];
    }
}

/* One exchange with an echo backend in name mode, through splicer. */
struct xfer {
    int fd;
    const uint8_t *head; /* borrowed; sent before the random bytes */
    size_t head_len;
    bool skip_head;      /* splicer consumes the head (a PROXY header): not echoed */
    bool want_pre;       /* a line the backend echoes before our bytes: the PROXY line sent on */
    uint64_t total;      /* random bytes sent after the head */
    uint64_t abort_at;   /* stop sending here and abort on purpose; UINT64_MAX: never */
    uint64_t sent, rcvd; /* bytes sent (head included); echo bytes received and verified */
    struct gen sg, rg;   /* the same seed: one makes what is sent, one what must come back */
    uint8_t *out;        /* borrowed thread buffer: generated, not yet sent */
    size_t out_off, out_len;
    char name[SOAK_NAME_MAX + 1];
    size_t name_len;
    bool name_done;
    char pre[128];
    size_t pre_len;
    bool pre_done;
    bool corrupt;
    char detail[96];
};

enum { XR_OK, XR_FAIL, XR_CORRUPT, XR_ABORT, XR_STOPPED };
static const char *const result_words[] = {"ok", "fail", "corrupt", "abort", "stopped"};

static _Thread_local uint8_t tbuf_out[CHUNK], tbuf_in[CHUNK], tbuf_exp[CHUNK];

/* The n stream bytes from position pos: the head (unless skipped), then the generator's. */
static void stream_bytes(const struct xfer *x, struct gen *g, bool with_head, uint64_t pos,
                         uint8_t *out, size_t n)
{
    size_t hl = with_head ? x->head_len : 0;
    for (; n > 0 && pos < hl; n--)
        *out++ = x->head[pos++];
    gen_fill(g, out, n);
}

/* Sends until the socket is full. 1: the abort point is reached; 0; -errno. */
static int pump_out(struct xfer *x)
{
    uint64_t want = x->head_len + x->total;
    for (;;) {
        if (x->out_off == x->out_len) {
            uint64_t end = x->abort_at < want ? x->abort_at : want;
            if (x->sent == end)
                break;
            size_t n = end - x->sent < CHUNK ? (size_t)(end - x->sent) : CHUNK;
            stream_bytes(x, &x->sg, true, x->sent, x->out, n);
            x->out_off = 0;
            x->out_len = n;
        }
        ssize_t w = send(x->fd, x->out + x->out_off, x->out_len - x->out_off, MSG_NOSIGNAL);
        if (w == -1) {
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            snprintf(x->detail, sizeof x->detail, "send_%s", err_word(errno));
            return -errno;
        }
        x->out_off += (size_t)w;
        x->sent += (uint64_t)w;
    }
    if (x->abort_at <= want)
        return 1;
    if (shutdown(x->fd, SHUT_WR) == -1 && errno != ENOTCONN)
        return -errno;
    return 0;
}

static uint64_t echo_total(const struct xfer *x)
{
    return (x->skip_head ? 0 : x->head_len) + x->total;
}

static void corrupt(struct xfer *x, const char *what, uint64_t at)
{
    x->corrupt = true;
    snprintf(x->detail, sizeof x->detail, "%s_at_%" PRIu64, what, at);
}

/* Consumes received bytes: the name line, the PROXY line if wanted, then the echo. */
static void take_in(struct xfer *x, const uint8_t *p, size_t n)
{
    for (; n > 0 && !x->name_done; p++, n--) {
        if (*p == '\n')
            x->name_done = true;
        else if (x->name_len == SOAK_NAME_MAX)
            return corrupt(x, "long_name_line", 0);
        else
            x->name[x->name_len++] = (char)*p;
    }
    for (; n > 0 && x->want_pre && !x->pre_done; p++, n--) {
        if (x->pre_len == sizeof x->pre - 1)
            return corrupt(x, "long_proxy_line", 0);
        x->pre[x->pre_len++] = (char)*p;
        x->pre_done = *p == '\n';
    }
    if (x->rcvd + n > echo_total(x))
        return corrupt(x, "extra_bytes", x->rcvd);
    while (n > 0) {
        size_t k = n < CHUNK ? n : CHUNK;
        stream_bytes(x, &x->rg, !x->skip_head, x->rcvd, tbuf_exp, k);
        if (memcmp(tbuf_exp, p, k) != 0) {
            size_t i = 0;
            while (tbuf_exp[i] == p[i])
                i++;
            return corrupt(x, "mismatch", x->rcvd + i);
        }
        x->rcvd += k, p += k, n -= k;
    }
}

/* Reads what is there. 0, or -errno (detail set); *eof on the peer's FIN. */
static int pump_in(struct xfer *x, bool *eof)
{
    for (int i = 0; i < 16 && !x->corrupt; i++) {
        ssize_t r = recv(x->fd, tbuf_in, CHUNK, 0);
        if (r == 0) {
            *eof = true;
            return 0;
        }
        if (r == -1) {
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            snprintf(x->detail, sizeof x->detail, "%s_at_%" PRIu64, err_word(errno), x->rcvd);
            return -errno;
        }
        take_in(x, tbuf_in, (size_t)r);
    }
    return 0;
}

static int finish(struct xfer *x, bool eof)
{
    close(x->fd);
    x->name[x->name_len] = '\0';
    x->pre[x->pre_len] = '\0';
    if (x->corrupt)
        return XR_CORRUPT;
    if (eof && x->name_done && (!x->want_pre || x->pre_done) && x->rcvd == echo_total(x) &&
        x->sent == x->head_len + x->total)
        return XR_OK;
    if (x->detail[0] == '\0')
        snprintf(x->detail, sizeof x->detail, "%s_at_%" PRIu64 "_of_%" PRIu64,
                 x->name_done ? "eof" : "eof_before_name", x->rcvd, echo_total(x));
    return XR_FAIL;
}

/* Runs one exchange on a connected socket and closes it. Returns XR_*. */
static int run_xfer(struct xfer *x)
{
    int64_t last = soak_now_ms();
    bool eof = false;
    x->out = tbuf_out;
    for (;;) {
        uint64_t before = x->sent + x->rcvd;
        int rc = pump_out(x);
        if (rc == 1) { /* half the aborts reset, half close with the echo unread */
            if (x->sent % 2 == 0)
                soak_close_reset(x->fd);
            else
                close(x->fd);
            x->name[x->name_len] = '\0';
            snprintf(x->detail, sizeof x->detail, "aborted_at_%" PRIu64, x->sent);
            return XR_ABORT;
        }
        if (rc == 0) {
            rc = pump_in(x, &eof);
        } else if (rc < 0) { /* still read what came before the reset: the name, the echo */
            char why[sizeof x->detail];
            bool ignored = false;
            memcpy(why, x->detail, sizeof why);
            pump_in(x, &ignored);
            if (!x->corrupt)
                memcpy(x->detail, why, sizeof why);
        }
        if (rc != 0 || eof || x->corrupt)
            break;
        int64_t now = soak_now_ms();
        if (x->sent + x->rcvd != before)
            last = now;
        if (atomic_load(&soak_stop)) {
            close(x->fd);
            return XR_STOPPED;
        }
        if (now - last > STALL_MS) {
            snprintf(x->detail, sizeof x->detail, "stalled_at_%" PRIu64, x->rcvd);
            break;
        }
        struct pollfd p = {.fd = x->fd, .events = POLLIN};
        if (x->out_off < x->out_len || x->sent < x->head_len + x->total)
            p.events |= POLLOUT;
        poll(&p, 1, 200);
    }
    return finish(x, eof);
}

static void pause_between(void)
{
    if (soak_opt.pause_ms > 0) {
        struct timespec ts = {soak_opt.pause_ms / 1000, (soak_opt.pause_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Dials; on failure logs it and waits a second. */
static bool start(struct xfer *x, const char *load, int64_t *t0)
{
    *t0 = soak_now_ms();
    x->fd = dial();
    if (x->fd >= 0)
        return true;
    soak_log(*t0, load, "fail", "", 0, x->fd == -ETIMEDOUT ? "connect_timeout" : "connect_error");
    sleep(1);
    return false;
}

static void seed_xfer(struct xfer *x, uint64_t *r)
{
    uint64_t seed = soak_rnd(r);
    gen_init(&x->sg, seed);
    gen_init(&x->rg, seed);
}

/* ---- bulk: big transfers, some aborted on purpose ---- */

static void *bulk_lane(void *arg)
{
    uint64_t r = soak_seed();
    (void)arg;
    while (soak_may_start()) {
        struct xfer x = {.abort_at = UINT64_MAX};
        x.total = soak_opt.min + soak_rnd(&r) % (soak_opt.max - soak_opt.min + 1);
        seed_xfer(&x, &r);
        if ((int)(soak_rnd(&r) % 100) < soak_opt.abort_pct)
            x.abort_at = soak_rnd(&r) % x.total;
        int64_t t0;
        if (!start(&x, "bulk", &t0))
            continue;
        int res = run_xfer(&x);
        soak_log(t0, "bulk", result_words[res], x.name, x.rcvd, x.detail);
        pause_between();
    }
    return NULL;
}

/* ---- proxy: PROXY v1/v2 headers in, the v1 line splicer sends on checked ---- */

static void set_addr(struct sockaddr_storage *ss, int family, const void *a, uint16_t port)
{
    memset(ss, 0, sizeof *ss);
    ss->ss_family = (sa_family_t)family;
    if (family == AF_INET6) {
        memcpy(&((struct sockaddr_in6 *)ss)->sin6_addr, a, 16);
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
    } else {
        memcpy(&((struct sockaddr_in *)ss)->sin_addr, a, 4);
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    }
}

static const void *addr_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6)
        return &((const struct sockaddr_in6 *)ss)->sin6_addr;
    return &((const struct sockaddr_in *)ss)->sin_addr;
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

/* The v1 line for src -> dst, as splicer writes it. */
static void pp_line(const struct sockaddr_storage *s, const struct sockaddr_storage *d, char *out,
                    size_t len)
{
    char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
    inet_ntop(s->ss_family, addr_of(s), a, sizeof a);
    inet_ntop(d->ss_family, addr_of(d), b, sizeof b);
    snprintf(out, len, "PROXY %s %s %s %u %u\r\n", s->ss_family == AF_INET6 ? "TCP6" : "TCP4", a, b,
             port_of(s), port_of(d));
}

/* Writes a random PROXY header into h (v1 or v2, IPv4 or IPv6, or a v2 LOCAL) and the addresses
 * it claims into src/dst. Returns its length. */
static size_t pp_header(uint64_t *r, uint8_t *h, struct sockaddr_storage *src,
                        struct sockaddr_storage *dst, bool *local)
{
    static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                    0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
    int kind = (int)(soak_rnd(r) % 10); /* 0-3 v1, 4-8 v2, 9 v2 LOCAL; odd: IPv6 */
    bool v6 = kind % 2 == 1 && kind != 9;
    uint8_t sa[16] = {0}, da[16] = {0};
    if (v6) {
        sa[0] = 0xfd;
        for (int i = 8; i < 16; i++)
            sa[i] = (uint8_t)soak_rnd(r);
        inet_pton(AF_INET6, "2001:db8::1", da);
    } else {
        uint32_t v = htonl(0x0a000000u | (uint32_t)(soak_rnd(r) & 0xffffff));
        memcpy(sa, &v, 4);
        inet_pton(AF_INET, "192.0.2.1", da);
    }
    uint16_t sport = (uint16_t)(1024 + soak_rnd(r) % 60000), dport = 443;
    set_addr(src, v6 ? AF_INET6 : AF_INET, sa, sport);
    set_addr(dst, v6 ? AF_INET6 : AF_INET, da, dport);
    *local = kind == 9;
    if (kind < 4) {
        pp_line(src, dst, (char *)h, 128);
        return strlen((char *)h);
    }
    size_t alen = *local ? 0 : v6 ? 36 : 12, al = v6 ? 16 : 4;
    memcpy(h, sig, 12);
    h[12] = *local ? 0x20 : 0x21;
    h[13] = *local ? 0x00 : v6 ? 0x21 : 0x11;
    h[14] = (uint8_t)(alen >> 8), h[15] = (uint8_t)alen;
    if (!*local) {
        uint16_t ps = htons(sport), pd = htons(dport);
        memcpy(h + 16, sa, al);
        memcpy(h + 16 + al, da, al);
        memcpy(h + 16 + 2 * al, &ps, 2);
        memcpy(h + 18 + 2 * al, &pd, 2);
    }
    return 16 + alen;
}

static void *proxy_lane(void *arg)
{
    uint64_t r = soak_seed();
    uint8_t head[128];
    (void)arg;
    while (soak_may_start()) {
        struct sockaddr_storage src, dst;
        bool local;
        struct xfer x = {.abort_at = UINT64_MAX, .skip_head = true, .want_pre = true};
        x.head_len = pp_header(&r, head, &src, &dst, &local);
        x.head = head;
        x.total = 1 + soak_rnd(&r) % (128 * 1024);
        seed_xfer(&x, &r);
        int64_t t0;
        if (!start(&x, "proxy", &t0))
            continue;
        socklen_t l = sizeof src;
        if (local) { /* LOCAL: splicer passes on the socket's own addresses */
            getsockname(x.fd, (struct sockaddr *)&src, &l);
            l = sizeof dst;
            getpeername(x.fd, (struct sockaddr *)&dst, &l);
        }
        char want[128];
        pp_line(&src, &dst, want, sizeof want);
        int res = run_xfer(&x);
        if (res == XR_OK && strcmp(x.pre, want) != 0) {
            res = XR_CORRUPT;
            snprintf(x.detail, sizeof x.detail, "proxy_line_differs");
            fprintf(stderr, "soak-client: PROXY line passed on: %s           wanted: %s", x.pre,
                    want);
        }
        soak_log(t0, "proxy", result_words[res], x.name, x.rcvd, x.detail);
        pause_between();
    }
    return NULL;
}

/* ---- hello: captured ClientHellos, routed by their SNI to a known backend ---- */

static void *hello_lane(void *arg)
{
    uint64_t r = soak_seed();
    (void)arg;
    for (unsigned i = 0; soak_may_start(); i++) {
        int h = (int)(i % (unsigned)soak_opt.nhello);
        struct xfer x = {.abort_at = UINT64_MAX};
        x.head = soak_opt.hello[h].buf;
        x.head_len = soak_opt.hello[h].len;
        x.total = soak_rnd(&r) % (64 * 1024);
        seed_xfer(&x, &r);
        int64_t t0;
        if (!start(&x, "hello", &t0))
            continue;
        int res = run_xfer(&x);
        if (res == XR_OK && strcmp(x.name, soak_opt.hello[h].name) != 0) {
            res = XR_CORRUPT;
            snprintf(x.detail, sizeof x.detail, "misrouted_not_%s", soak_opt.hello[h].name);
        }
        soak_log(t0, "hello", result_words[res], x.name, x.rcvd, x.detail);
        pause_between();
    }
    return NULL;
}

static int run_lanes(void *(*fn)(void *))
{
    pthread_t t[64];
    int n = soak_opt.lanes < 1 ? 1 : soak_opt.lanes > 64 ? 64 : soak_opt.lanes;
    for (int i = 0; i < n; i++) {
        if (pthread_create(&t[i], NULL, fn, NULL) != 0) {
            atomic_store(&soak_stop, true);
            n = i;
        }
    }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    return 0;
}

/* ---- command line ---- */

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&soak_stop, true);
}

static int parse_addr(const char *s)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof host || colon == s)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    uint16_t port = (uint16_t)atoi(colon + 1);
    uint8_t a[16];
    size_t hl = strlen(host);
    if (host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        if (inet_pton(AF_INET6, host + 1, a) != 1)
            return -1;
        set_addr(&soak_opt.addr, AF_INET6, a, port);
        soak_opt.addrlen = sizeof(struct sockaddr_in6);
        return 0;
    }
    if (inet_pton(AF_INET, host, a) != 1)
        return -1;
    set_addr(&soak_opt.addr, AF_INET, a, port);
    soak_opt.addrlen = sizeof(struct sockaddr_in);
    return 0;
}

static uint64_t parse_size(const char *s)
{
    char *end;
    uint64_t v = strtoull(s, &end, 10);
    switch (*end | 0x20) {
    case 'k':
        return v << 10;
    case 'm':
        return v << 20;
    case 'g':
        return v << 30;
    default:
        return v;
    }
}

/* --hello FILE=NAME: the whole file is one ClientHello that must reach backend NAME. */
static int add_hello(const char *arg)
{
    const char *eq = strrchr(arg, '=');
    if (eq == NULL || soak_opt.nhello == SOAK_MAX_HELLOS || strlen(eq + 1) > SOAK_NAME_MAX)
        return -1;
    char path[4096];
    snprintf(path, sizeof path, "%.*s", (int)(eq - arg), arg);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    int i = soak_opt.nhello++;
    soak_opt.hello[i].buf = malloc(16384);
    soak_opt.hello[i].len = soak_opt.hello[i].buf ? fread(soak_opt.hello[i].buf, 1, 16384, f) : 0;
    fclose(f);
    strcpy(soak_opt.hello[i].name, eq + 1);
    return soak_opt.hello[i].len > 0 ? 0 : -1;
}

static int parse_args(int argc, char **argv, const char **log)
{
    struct soak_opts *o = &soak_opt;
    *o = (struct soak_opts){.lanes = 1,
                            .conns = 100,
                            .seconds = 60,
                            .ping_every = 10,
                            .min = 16 << 20,
                            .max = 64 << 20,
                            .name = "resetter"};
    if (argc < 2)
        return -1;
    o->cmd = argv[1];
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        int rc = 0;
        if (strcmp(k, "--connect") == 0 || strcmp(k, "--listen") == 0)
            rc = parse_addr(v);
        else if (strcmp(k, "--log") == 0)
            *log = v;
        else if (strcmp(k, "--name") == 0)
            o->name = v;
        else if (strcmp(k, "--lanes") == 0)
            o->lanes = atoi(v);
        else if (strcmp(k, "--conns") == 0)
            o->conns = atoi(v);
        else if (strcmp(k, "--abort-pct") == 0)
            o->abort_pct = atoi(v);
        else if (strcmp(k, "--pause-ms") == 0)
            o->pause_ms = atoi(v);
        else if (strcmp(k, "--seconds") == 0)
            o->seconds = atof(v);
        else if (strcmp(k, "--ping-every") == 0)
            o->ping_every = atof(v);
        else if (strcmp(k, "--min") == 0)
            o->min = parse_size(v);
        else if (strcmp(k, "--max") == 0)
            o->max = parse_size(v);
        else if (strcmp(k, "--hello") == 0)
            rc = add_hello(v);
        else
            rc = -1;
        if (rc != 0) {
            fprintf(stderr, "soak-client: bad option %s %s\n", k, v);
            return -1;
        }
    }
    if (o->addrlen == 0 || o->max < o->min || o->max == 0 ||
        (strcmp(o->cmd, "hello") == 0 && o->nhello == 0))
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    const char *log = NULL;
    if (parse_args(argc, argv, &log) != 0) {
        fprintf(stderr, "usage: soak-client bulk|idle|proxy|hello|resetter --connect|--listen "
                        "ADDR:PORT [--log FILE] [--seconds S] [--lanes N] [--pause-ms MS]\n"
                        "       [--min SIZE --max SIZE --abort-pct P] [--conns N --ping-every S]"
                        " [--hello FILE=NAME...] [--name NAME]\n"
                        "(see the comments in scripts/soak_client.c and scripts/soak.sh)\n");
        return 2;
    }
    if (log != NULL) {
        log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log_fd == -1) {
            perror(log);
            return 1;
        }
    }
    struct sigaction sa = {.sa_handler = SIG_IGN};
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    t_begin = soak_now_ms();
    if (strcmp(soak_opt.cmd, "bulk") == 0)
        return run_lanes(bulk_lane);
    if (strcmp(soak_opt.cmd, "proxy") == 0)
        return run_lanes(proxy_lane);
    if (strcmp(soak_opt.cmd, "hello") == 0)
        return run_lanes(hello_lane);
    if (strcmp(soak_opt.cmd, "idle") == 0)
        return soak_idle_main();
    if (strcmp(soak_opt.cmd, "resetter") == 0)
        return soak_resetter_main();
    fprintf(stderr, "soak-client: unknown command %s\n", soak_opt.cmd);
    return 2;
}
