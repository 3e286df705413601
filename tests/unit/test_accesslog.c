/* test_accesslog.c: access log lines in both formats (every field whole, the text format's
 * escaping, JSON that parses), and the writer thread: every line delivered, a reopen never
 * freeing the descriptor the writer is writing to, and a writer that falls behind dropping
 * whole buffers, never half lines. */
#include "accesslog.h"
#include "harness.h"

#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static struct sockaddr_in client_addr(void)
{
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(40000)};
    inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
    return in;
}

/* Everything after the timestamp, which is the only field that varies. */
static const char *after_time(const char *line, enum sp_log_format f)
{
    const char *p = f == SP_LOG_FORMAT_JSON ? strstr(line, "Z\",") : strchr(line, ' ');
    ck_assert_ptr_nonnull(p);
    return f == SP_LOG_FORMAT_JSON ? p + 3 : p + 1;
}

/* Formats e into a malloc'd NUL-terminated line, checking the returned length is what the
 * function wrote and that a buffer one byte short gets the same answer. */
static char *format(const struct sp_access_entry *e, enum sp_log_format f)
{
    size_t want = sp_access_format(NULL, 0, e, f);
    char *buf = malloc(want + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(sp_access_format(buf, want - 1, e, f), want);
    ck_assert_uint_eq(sp_access_format(buf, want, e, f), want);
    buf[want] = '\0';
    ck_assert_uint_eq(strlen(buf), want);
    return buf;
}

/* Exactly one '\n', at the end. */
static void assert_one_line(const char *line)
{
    const char *nl = strchr(line, '\n');
    ck_assert_msg(nl != NULL && nl[1] == '\0', "not exactly one line: [%s]", line);
}

/* ---- formatting -------------------------------------------------------------------------- */

START_TEST(json_line)
{
    struct sockaddr_in in = client_addr();
    struct sp_access_entry e = {.listener = "web",
                                .client = (struct sockaddr *)&in,
                                .upstream = "pool",
                                .server = "127.0.0.1:9001",
                                .bytes_up = 10,
                                .bytes_down = 20,
                                .duration_ms = 5,
                                .attempts = 1,
                                .end = SP_END_UPSTREAM_FIN};
    char buf[512];
    size_t n = sp_access_format(buf, sizeof(buf), &e, SP_LOG_FORMAT_JSON);
    ck_assert_uint_lt(n, sizeof(buf));
    buf[n] = '\0';
    ck_assert(strncmp(buf, "{\"time\":\"20", 11) == 0);
    ck_assert_str_eq(after_time(buf, SP_LOG_FORMAT_JSON),
                     "\"listener\":\"web\",\"client\":\"127.0.0.1:40000\",\"upstream\":\"pool\","
                     "\"server\":\"127.0.0.1:9001\",\"bytes_up\":10,\"bytes_down\":20,"
                     "\"duration_ms\":5,\"attempts\":1,\"end\":\"upstream_fin\"}\n");
    ck_assert(sph_json_valid(buf, n, true));
}
END_TEST

START_TEST(json_escapes_and_null_server)
{
    struct sockaddr_in in = client_addr();
    struct sp_access_entry e = {.listener = "we\"b\\\n",
                                .client = (struct sockaddr *)&in,
                                .upstream = "p\t\x01 q=\x7f",
                                .server = NULL,
                                .end = SP_END_NO_SERVER};
    char *buf = format(&e, SP_LOG_FORMAT_JSON);
    ck_assert_ptr_nonnull(strstr(buf, "\"listener\":\"we\\\"b\\\\\\u000a\""));
    ck_assert_ptr_nonnull(strstr(buf, "\"upstream\":\"p\\u0009\\u0001 q=\x7f\""));
    ck_assert_ptr_nonnull(strstr(buf, "\"server\":null"));
    ck_assert_ptr_nonnull(strstr(buf, "\"end\":\"no_server\""));
    assert_one_line(buf);
    ck_assert_msg(sph_json_valid(buf, strlen(buf), true), "not JSON: %s", buf);
    free(buf);
}
END_TEST

START_TEST(text_line)
{
    struct sockaddr_in in = client_addr();
    struct sp_access_entry e = {.listener = "web",
                                .client = (struct sockaddr *)&in,
                                .upstream = "pool",
                                .server = "127.0.0.1:9001",
                                .bytes_up = 1,
                                .bytes_down = 2,
                                .duration_ms = 3,
                                .attempts = 2,
                                .end = SP_END_IDLE_TIMEOUT};
    char buf[512];
    size_t n = sp_access_format(buf, sizeof(buf), &e, SP_LOG_FORMAT_TEXT);
    buf[n] = '\0';
    ck_assert_str_eq(after_time(buf, SP_LOG_FORMAT_TEXT),
                     "listener=web client=127.0.0.1:40000 upstream=pool server=127.0.0.1:9001 "
                     "up=1 down=2 duration_ms=3 attempts=2 end=idle_timeout\n");
}
END_TEST

/* Issue 9.4: IPv6 client and server plus long names overflowed a 128-byte buffer shared by four
 * fields, and the line was cut (`server=[2001:db8:aaaa:bbbb:cccc:dddd: up=1 ...`). */
START_TEST(text_ipv6_and_long_names_whole)
{
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(65535)};
    inet_pton(AF_INET6, "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff", &in6.sin6_addr);
    char listener[300], upstream[2000];
    memset(listener, 'l', sizeof(listener) - 1);
    listener[sizeof(listener) - 1] = '\0';
    memset(upstream, 'u', sizeof(upstream) - 1);
    upstream[sizeof(upstream) - 1] = '\0';
    const char *server = "[2001:db8:aaaa:bbbb:cccc:dddd:eeee:1]:65535";
    struct sp_access_entry e = {.listener = listener,
                                .client = (struct sockaddr *)&in6,
                                .upstream = upstream,
                                .server = server,
                                .bytes_up = UINT64_MAX,
                                .bytes_down = 2,
                                .duration_ms = 3,
                                .attempts = UINT_MAX,
                                .end = SP_END_CLIENT_FIN};
    char *line = format(&e, SP_LOG_FORMAT_TEXT);
#define WANT_V6                                                                                    \
    "listener=%s client=[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:65535 upstream=%s server=%s "     \
    "up=18446744073709551615 down=2 duration_ms=3 attempts=4294967295 end=client_fin\n"
    int wlen = snprintf(NULL, 0, WANT_V6, listener, upstream, server);
    char *want = malloc((size_t)wlen + 1);
    ck_assert_ptr_nonnull(want);
    snprintf(want, (size_t)wlen + 1, WANT_V6, listener, upstream, server);
    ck_assert_str_eq(after_time(line, SP_LOG_FORMAT_TEXT), want);
    free(want);
    free(line);

    line = format(&e, SP_LOG_FORMAT_JSON);
    ck_assert_ptr_nonnull(
        strstr(line, "\"client\":\"[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:65535\""));
    ck_assert_ptr_nonnull(
        strstr(line, "\"server\":\"[2001:db8:aaaa:bbbb:cccc:dddd:eeee:1]:65535\""));
    ck_assert(sph_json_valid(line, strlen(line), true));
    free(line);
}
END_TEST

/* Issue 9.4: a name holding a newline forged a second line. The README's rule: a value with a
 * space, '"', '\', '=', a control byte or DEL, or an empty one, or one that reads "-", is
 * written in double quotes with \" \\ \n \r \t and \xHH escapes. */
struct esc_case {
    const char *value, *want;
};
static const struct esc_case esc_cases[] = {
    {"plain-name_1.2:3", "plain-name_1.2:3"},
    {"a b", "\"a b\""},
    {"x\ny", "\"x\\ny\""},
    {"q\"uo\\te", "\"q\\\"uo\\\\te\""},
    {"k=v", "\"k=v\""},
    {"\t\r\x01\x1f\x7f", "\"\\t\\r\\x01\\x1f\\x7f\""},
    {"", "\"\""},
    {"-", "\"-\""},
    {"\xc3\xa9t\xc3\xa9", "\xc3\xa9t\xc3\xa9"}, /* UTF-8 is not escaped */
    /* a forged second line stays inside one quoted value */
    {"web\n2026-01-01T00:00:00.000Z listener=forged client=1.2.3.4:5 server=- up=0",
     "\"web\\n2026-01-01T00:00:00.000Z listener=forged client=1.2.3.4:5 server=- up=0\""},
};

START_TEST(text_escapes_every_name)
{
    const struct esc_case *c = &esc_cases[_i];
    struct sockaddr_in in = client_addr();
    for (int field = 0; field < 3; field++) {
        struct sp_access_entry e = {.listener = field == 0 ? c->value : "l",
                                    .client = (struct sockaddr *)&in,
                                    .upstream = field == 1 ? c->value : "u",
                                    .server = field == 2 ? c->value : "s",
                                    .end = SP_END_CLIENT_FIN};
        char *line = format(&e, SP_LOG_FORMAT_TEXT);
        assert_one_line(line);
        static const char *const keys[] = {" listener=", " upstream=", " server="};
        const char *at = strstr(line, keys[field]);
        ck_assert_ptr_nonnull(at);
        at += strlen(keys[field]);
        size_t n = strlen(c->want);
        ck_assert_msg(strncmp(at, c->want, n) == 0 && at[n] == ' ',
                      "field %d of [%s]: got line %s, want %s", field, c->value, line, c->want);
        free(line);
        /* and the JSON line still parses */
        line = format(&e, SP_LOG_FORMAT_JSON);
        assert_one_line(line);
        ck_assert_msg(sph_json_valid(line, strlen(line), true), "not JSON: %s", line);
        free(line);
    }
}
END_TEST

START_TEST(text_null_server_is_dash)
{
    struct sp_access_entry e = {.listener = "l", .upstream = "u", .end = SP_END_NO_SERVER};
    char *line = format(&e, SP_LOG_FORMAT_TEXT);
    ck_assert_str_eq(after_time(line, SP_LOG_FORMAT_TEXT),
                     "listener=l client=- upstream=u server=- up=0 down=0 duration_ms=0 "
                     "attempts=0 end=no_server\n");
    free(line);
}
END_TEST

START_TEST(truncation_reports_needed_length)
{
    struct sockaddr_in in = client_addr();
    struct sp_access_entry e = {.listener = "web",
                                .client = (struct sockaddr *)&in,
                                .upstream = "pool",
                                .end = SP_END_CLIENT_FIN};
    for (int f = 0; f < SP_LOG_FORMAT_COUNT; f++) {
        char big[512], small[16];
        size_t want = sp_access_format(big, sizeof(big), &e, f);
        ck_assert_uint_lt(want, sizeof(big));
        memset(small, '#', sizeof(small));
        ck_assert_uint_eq(sp_access_format(small, sizeof(small), &e, f), want);
        ck_assert(memcmp(small, big, sizeof(small)) == 0); /* a prefix, nothing past len */
    }
}
END_TEST

/* ---- the writer thread ------------------------------------------------------------------- */

/* One directory for the writer tests, made and removed (with whatever a failed test left in it)
 * by an unchecked fixture, which Check runs in the parent around the forked tests. */
static char suite_dir[32];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path); /* best effort: go on with the rest */
    return 0;
}

static void suite_dir_make(void)
{
    snprintf(suite_dir, sizeof(suite_dir), "/tmp/splicer-alog-XXXXXX");
    if (mkdtemp(suite_dir) == NULL) {
        perror("mkdtemp");
        abort();
    }
}

static void suite_dir_remove(void)
{
    nftw(suite_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A private directory in suite_dir for one test's files. */
struct tdir {
    char path[64];
};

static void tdir_make(struct tdir *d)
{
    int n = snprintf(d->path, sizeof(d->path), "%s/t-XXXXXX", suite_dir);
    ck_assert(n > 0 && (size_t)n < sizeof(d->path));
    ck_assert_ptr_nonnull(mkdtemp(d->path));
}

static void tdir_file(const struct tdir *d, const char *name, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", d->path, name);
    ck_assert(n > 0 && (size_t)n < cap);
}

static void tdir_remove(const struct tdir *d)
{
    DIR *dir = opendir(d->path);
    ck_assert_ptr_nonnull(dir);
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char p[128];
        tdir_file(d, de->d_name, p, sizeof(p));
        unlink(p);
    }
    closedir(dir);
    rmdir(d->path);
}

/* Hands over lines [from, from + count) with attempts = their number. */
static void log_lines(struct sp_access_log *al, unsigned from, unsigned count)
{
    struct sp_access_buf b;
    sp_access_buf_init(&b, al);
    struct sockaddr_in in = client_addr();
    for (unsigned i = from; i < from + count; i++) {
        struct sp_access_entry e = {.listener = "web",
                                    .client = (struct sockaddr *)&in,
                                    .upstream = "pool",
                                    .attempts = i,
                                    .end = SP_END_CLIENT_FIN};
        sp_access_buf_add(&b, &e, SP_LOG_FORMAT_TEXT);
    }
    sp_access_buf_deinit(&b);
}

/* Checks that text holds only whole lines as log_lines() writes them, numbered upwards from
 * *next (the numbers may jump forward by whole buffers when gaps is true); *next is left one past
 * the last number. Returns the line count. */
static unsigned check_lines(const char *what, const char *text, size_t len, unsigned *next,
                            bool gaps)
{
    unsigned n = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        ck_assert_msg(nl != NULL, "%s: a half line at the end: [%.*s]", what, (int)(end - p), p);
        unsigned num;
        int used = -1;
        int got = sscanf(p,
                         "%*4d-%*2d-%*2dT%*2d:%*2d:%*2d.%*3dZ listener=web client=127.0.0.1:40000 "
                         "upstream=pool server=- up=0 down=0 duration_ms=0 attempts=%u "
                         "end=client_fin%n",
                         &num, &used);
        ck_assert_msg(got == 1 && p + used == nl, "%s: line %u is not whole: [%.*s]", what, n,
                      (int)(nl - p), p);
        ck_assert_msg(gaps ? num >= *next : num == *next, "%s: line %u is number %u, want %s%u",
                      what, n, num, gaps ? ">= " : "", *next);
        *next = num + 1;
        n++;
        p = nl + 1;
    }
    return n;
}

static char *read_path(const char *path, size_t *len)
{
    char *text = sph_read_file(path);
    ck_assert_msg(text != NULL, "cannot read %s", path);
    *len = strlen(text);
    return text;
}

START_TEST(writer_delivers_every_line)
{
    struct tdir d;
    tdir_make(&d);
    char path[128];
    tdir_file(&d, "access.log", path, sizeof(path));
    struct sp_access_log_conf conf = {.enabled = true, .path = path};
    struct sp_access_log *al = NULL;
    ck_assert_int_eq(sp_access_log_start(&conf, &al), 0);
    enum { LINES = 2000 }; /* several 16 KiB chunks */
    log_lines(al, 0, LINES);
    sp_access_log_stop(al);

    size_t len;
    char *text = read_path(path, &len);
    unsigned next = 0;
    ck_assert_uint_eq(check_lines(path, text, len, &next, false), LINES);
    free(text);
    tdir_remove(&d);
}
END_TEST

/* A line longer than a worker's 16 KiB buffer is written whole, not dropped. */
START_TEST(writer_delivers_a_huge_line)
{
    struct tdir d;
    tdir_make(&d);
    char path[128];
    tdir_file(&d, "access.log", path, sizeof(path));
    struct sp_access_log_conf conf = {.enabled = true, .path = path};
    struct sp_access_log *al = NULL;
    ck_assert_int_eq(sp_access_log_start(&conf, &al), 0);
    size_t big = 40000;
    char *name = malloc(big + 1);
    ck_assert_ptr_nonnull(name);
    memset(name, 'n', big);
    name[big] = '\0';
    struct sp_access_buf b;
    sp_access_buf_init(&b, al);
    for (int i = 0; i < 3; i++) {
        struct sp_access_entry e = {.listener = i == 1 ? name : "l",
                                    .upstream = "u",
                                    .attempts = (unsigned)i,
                                    .end = SP_END_CLIENT_FIN};
        sp_access_buf_add(&b, &e, SP_LOG_FORMAT_TEXT);
    }
    sp_access_buf_deinit(&b);
    ck_assert_uint_eq(sp_access_log_dropped(al), 0);
    sp_access_log_stop(al);
    size_t len;
    char *text = read_path(path, &len);
    const char *l1 = strchr(text, '\n'), *l2 = l1 != NULL ? strchr(l1 + 1, '\n') : NULL;
    ck_assert_msg(l2 != NULL && strstr(l1, " attempts=1 ") != NULL &&
                      strchr(l2 + 1, '\n') == text + len - 1,
                  "want 3 lines, the second with the long name; got %zu bytes", len);
    ck_assert_ptr_nonnull(strstr(l1, name));
    free(name);
    free(text);
    tdir_remove(&d);
}
END_TEST

/* The number of an open descriptor of this process that refers to path, other than `except`;
 * -1 when there is none. */
static int fd_of(const char *path, int except)
{
    DIR *dir = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(dir);
    int found = -1;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL && found == -1) {
        char link[64], target[256];
        int fd = atoi(de->d_name);
        if (de->d_name[0] == '.' || fd == except || fd == dirfd(dir))
            continue;
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        if (strcmp(target, path) == 0)
            found = fd;
    }
    closedir(dir);
    return found;
}

/* Waits (up to 5 s) until the FIFO read end rfd holds nearly a full pipe that has not grown for
 * 200 ms: the writer, which has more to write, is then blocked in write() on it. */
static void wait_fifo_full(int rfd)
{
    int cap = fcntl(rfd, F_GETPIPE_SZ);
    ck_assert_int_gt(cap, 0);
    int queued = 0, last = -1;
    int64_t since = sph_now_ms(), t0 = since;
    while (sph_now_ms() - t0 < 5000) {
        ck_assert_int_eq(ioctl(rfd, FIONREAD, &queued), 0);
        if (queued != last) {
            last = queued;
            since = sph_now_ms();
        } else if (queued > cap - 16384 && sph_now_ms() - since >= 200) {
            return;
        }
        usleep(5000);
    }
    ck_abort_msg("the FIFO holds %d of %d bytes: the writer never blocked", queued, cap);
}

/* Bytes read from a FIFO. */
struct acc {
    char *buf; /* owned; NUL-terminated */
    size_t len, cap;
};

/* Reads the non-blocking fd into a until EOF, until nothing came for idle_ms, or (when until is
 * not NULL) as soon as the text read holds until: then it reads 4 KiB at a time, so little more
 * than that is taken from the pipe. */
static void acc_read(struct acc *a, int fd, int idle_ms, const char *until)
{
    for (;;) {
        if (a->cap - a->len < 4096) {
            a->cap = a->cap == 0 ? 1 << 20 : a->cap * 2;
            a->buf = realloc(a->buf, a->cap + 1);
            ck_assert_ptr_nonnull(a->buf);
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int rc = poll(&p, 1, idle_ms);
        ck_assert_int_ge(rc, 0);
        if (rc == 0)
            break;
        ssize_t r = read(fd, a->buf + a->len, until != NULL ? 4096 : a->cap - a->len);
        if (r == -1 && (errno == EAGAIN || errno == EINTR))
            continue;
        ck_assert_msg(r >= 0, "read: %s", strerror(errno));
        if (r == 0)
            break;
        a->len += (size_t)r;
        a->buf[a->len] = '\0';
        if (until != NULL && strstr(a->buf, until) != NULL)
            break;
    }
    if (a->buf == NULL) {
        a->buf = calloc(1, 1);
        ck_assert_ptr_nonnull(a->buf);
    }
    a->buf[a->len] = '\0';
}

/* Issue 9.1: with the writer blocked writing to the log, two reopens used to close the
 * descriptor under it; the next socket got that number, and the rest of the writer's batch went
 * into it (a client's TCP connection in splicer). Now no number the writer uses is freed before
 * sp_access_log_stop: not one byte of the log may reach any descriptor opened after the reopens,
 * and every line arrives whole and once, in the FIFO or in the reopened file. */
START_TEST(reopen_never_frees_the_writers_descriptor)
{
    struct tdir d;
    tdir_make(&d);
    char fifo[128], file1[128], file2[128];
    tdir_file(&d, "fifo", fifo, sizeof(fifo));
    tdir_file(&d, "file1", file1, sizeof(file1));
    tdir_file(&d, "file2", file2, sizeof(file2));
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    /* A reader first, or the log's open(O_WRONLY) would wait for one. Nobody reads yet. */
    int rfd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    ck_assert_int_ge(rfd, 0);

    struct sp_access_log_conf conf = {.enabled = true, .path = fifo};
    struct sp_access_log *al = NULL;
    ck_assert_int_eq(sp_access_log_start(&conf, &al), 0);
    int old = fd_of(fifo, rfd);
    ck_assert_int_ge(old, 0);
    /* The writer takes everything queued as one batch. Block it in a batch of many buffers: A
     * fills the FIFO and blocks it, B queues up behind as one list; reading just past A lets the
     * writer take B and block again, a few KiB into it. */
    enum { A = 1000, B = 2000, LINES = A + B }; /* ~120 + ~250 KiB, well under 4 MiB */
    log_lines(al, 0, A);
    wait_fifo_full(rfd);
    log_lines(al, A, B);
    struct acc fin = {0};
    char first_b[32];
    snprintf(first_b, sizeof(first_b), " attempts=%u ", (unsigned)A);
    acc_read(&fin, rfd, 2000, first_b);
    ck_assert_ptr_nonnull(strstr(fin.buf, first_b));
    wait_fifo_full(rfd);

    /* two reopens (a reload and a logrotate SIGHUP) while the writer is stuck in one batch */
    conf.path = file1;
    ck_assert_int_eq(sp_access_log_reconfigure(al, &conf), 0);
    conf.path = file2;
    ck_assert_int_eq(sp_access_log_reconfigure(al, &conf), 0);

    /* New sockets, as accept4 would make them, up to and past the writer's old number. */
    enum { PAIRS = 32 };
    int sp[PAIRS][2], npairs = 0, took = -1;
    for (; npairs < PAIRS; npairs++) {
        ck_assert_int_eq(
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp[npairs]), 0);
        if (sp[npairs][0] == old || sp[npairs][1] == old)
            took = npairs;
        if (sp[npairs][0] > old + 4 && sp[npairs][1] > old + 4) {
            npairs++;
            break;
        }
    }

    acc_read(&fin, rfd, 2000, NULL); /* unblocks the writer */
    sp_access_log_stop(al);          /* and lets it write all it holds */

    size_t leaked = 0;
    char sample[81] = "";
    for (int i = 0; i < npairs; i++) {
        for (int end = 0; end < 2; end++) {
            char buf[4096];
            ssize_t r;
            while ((r = read(sp[i][end], buf, sizeof(buf))) > 0) {
                if (leaked == 0)
                    snprintf(sample, sizeof(sample), "%.*s", (int)r, buf);
                leaked += (size_t)r;
            }
        }
        close(sp[i][0]);
        close(sp[i][1]);
    }
    ck_assert_msg(leaked == 0,
                  "%zu log bytes went into a socket opened after the reopens (the writer's old "
                  "number %d was %s): \"%s\"",
                  leaked, old, took >= 0 ? "reused" : "not reused", sample);
    ck_assert_msg(took == -1, "the writer's descriptor %d was closed while it was in use", old);

    size_t len1, len2;
    char *t1 = read_path(file1, &len1), *t2 = read_path(file2, &len2);
    unsigned next = 0, n = check_lines("fifo", fin.buf, fin.len, &next, false);
    n += check_lines("file1", t1, len1, &next, false);
    n += check_lines("file2", t2, len2, &next, false);
    ck_assert_uint_eq(n, LINES);
    ck_assert_uint_gt(len2, 0); /* the rest of the batch went to the new file */
    free(fin.buf);
    free(t1);
    free(t2);
    close(rfd);
    tdir_remove(&d);
}
END_TEST

/* Waits (up to 5 s) until path holds `lines` newlines. */
static void wait_lines(const char *path, unsigned lines)
{
    unsigned n = 0;
    for (int i = 0; i < 1000 && n < lines; i++) {
        char *text = sph_read_file(path);
        n = 0;
        for (const char *p = text; p != NULL && (p = strchr(p, '\n')) != NULL; p++)
            n++;
        free(text);
        if (n < lines)
            usleep(5000);
    }
    ck_assert_msg(n == lines, "%s has %u lines, want %u", path, n, lines);
}

/* A failed reopen keeps the old destination; "off" lets go of the file (the log's descriptor then
 * points at /dev/null); switching back on writes to the new file. */
START_TEST(off_and_failed_reopen)
{
    struct tdir d;
    tdir_make(&d);
    char a[128], b[128];
    tdir_file(&d, "a", a, sizeof(a));
    tdir_file(&d, "b", b, sizeof(b));
    struct sp_access_log_conf conf = {.enabled = true, .path = a};
    struct sp_access_log *al = NULL;
    ck_assert_int_eq(sp_access_log_start(&conf, &al), 0);
    log_lines(al, 0, 10);

    conf.path = "/nonexistent-dir/access.log";
    ck_assert_int_eq(sp_access_log_reconfigure(al, &conf), -ENOENT);
    log_lines(al, 10, 10); /* still to a */
    wait_lines(a, 20);

    struct sp_access_log_conf off = {.enabled = false};
    ck_assert_int_eq(sp_access_log_reconfigure(al, &off), 0);
    ck_assert_int_eq(fd_of(a, -1), -1);
    conf.path = b;
    ck_assert_int_eq(sp_access_log_reconfigure(al, &conf), 0);
    log_lines(al, 20, 10);
    sp_access_log_stop(al);
    ck_assert_int_eq(fd_of(b, -1), -1); /* closed by stop */

    size_t la, lb;
    char *ta = read_path(a, &la), *tb = read_path(b, &lb);
    unsigned next = 0;
    ck_assert_uint_eq(check_lines(a, ta, la, &next, false), 20);
    ck_assert_uint_eq(check_lines(b, tb, lb, &next, false), 10);
    free(ta);
    free(tb);
    tdir_remove(&d);
}
END_TEST

/* A log that starts off holds no descriptor; a reload switches it on, to stderr and then to a
 * file; stderr itself is never closed. */
START_TEST(start_off_then_on)
{
    struct tdir d;
    tdir_make(&d);
    char a[128];
    tdir_file(&d, "a", a, sizeof(a));
    struct sp_access_log_conf conf = {.enabled = false};
    struct sp_access_log *al = NULL;
    ck_assert_int_eq(sp_access_log_start(&conf, &al), 0);
    conf = (struct sp_access_log_conf){.enabled = true, .path = "stderr"};
    ck_assert_int_eq(sp_access_log_reconfigure(al, &conf), 0);
    conf.path = a;
    ck_assert_int_eq(sp_access_log_reconfigure(al, &conf), 0);
    log_lines(al, 5, 5);
    sp_access_log_stop(al);
    size_t la;
    char *ta = read_path(a, &la);
    unsigned next = 5;
    ck_assert_uint_eq(check_lines(a, ta, la, &next, false), 5);
    free(ta);
    ck_assert(fcntl(STDERR_FILENO, F_GETFD) != -1);
    tdir_remove(&d);
}
END_TEST

struct reader {
    int fd;
    struct acc got;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    acc_read(&r->got, r->fd, 10000, NULL);
    return NULL;
}

/* A writer that cannot keep up (a FIFO nobody reads) makes the workers drop whole buffers once
 * 4 MiB wait, and counts them; what was not dropped arrives as whole lines, in order, once
 * somebody reads. */
START_TEST(writer_behind_drops_whole_buffers)
{
    struct tdir d;
    tdir_make(&d);
    char fifo[128];
    tdir_file(&d, "fifo", fifo, sizeof(fifo));
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    int rfd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    ck_assert_int_ge(rfd, 0);
    struct sp_access_log_conf conf = {.enabled = true, .path = fifo};
    struct sp_access_log *al = NULL;
    ck_assert_int_eq(sp_access_log_start(&conf, &al), 0);

    enum { FIRST = 1000, LINES = 60000 }; /* ~120 KiB, then ~7 MiB in all */
    log_lines(al, 0, FIRST);
    wait_fifo_full(rfd);
    ck_assert_uint_eq(sp_access_log_dropped(al), 0);
    log_lines(al, FIRST, LINES - FIRST);
    uint64_t dropped = sp_access_log_dropped(al);
    ck_assert_uint_gt(dropped, 0);

    struct reader r = {.fd = rfd};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, reader_main, &r), 0);
    sp_access_log_stop(al); /* writes what was queued, closes the FIFO: the reader sees EOF */
    ck_assert_int_eq(pthread_join(t, NULL), 0);

    unsigned next = 0, n = check_lines("fifo", r.got.buf, r.got.len, &next, true);
    ck_assert_uint_gt(n, FIRST);
    ck_assert_uint_lt(n, LINES);
    ck_assert_uint_ge(LINES - n, dropped); /* every dropped buffer held at least one line */
    /* about 4 MiB was kept waiting, plus what the writer held */
    ck_assert_msg(r.got.len > 4000000 && r.got.len < 5 * 1024 * 1024, "%zu bytes arrived",
                  r.got.len);
    free(r.got.buf);
    close(rfd);
    tdir_remove(&d);
}
END_TEST

START_TEST(unopenable_file_fails_start)
{
    struct sp_access_log_conf conf = {.enabled = true, .path = "/nonexistent-dir/access.log"};
    struct sp_access_log *al = NULL;
    ck_assert_int_lt(sp_access_log_start(&conf, &al), 0);
    ck_assert_ptr_null(al);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("accesslog");
    TCase *tc = tcase_create("format");
    tcase_add_test(tc, json_line);
    tcase_add_test(tc, json_escapes_and_null_server);
    tcase_add_test(tc, text_line);
    tcase_add_test(tc, text_ipv6_and_long_names_whole);
    tcase_add_loop_test(tc, text_escapes_every_name, 0,
                        (int)(sizeof(esc_cases) / sizeof(esc_cases[0])));
    tcase_add_test(tc, text_null_server_is_dash);
    tcase_add_test(tc, truncation_reports_needed_length);
    suite_add_tcase(s, tc);
    tc = tcase_create("writer");
    tcase_add_unchecked_fixture(tc, suite_dir_make, suite_dir_remove);
    tcase_add_test(tc, writer_delivers_every_line);
    tcase_add_test(tc, writer_delivers_a_huge_line);
    tcase_add_test(tc, reopen_never_frees_the_writers_descriptor);
    tcase_add_test(tc, off_and_failed_reopen);
    tcase_add_test(tc, start_off_then_on);
    tcase_add_test(tc, writer_behind_drops_whole_buffers);
    tcase_add_test(tc, unopenable_file_fails_start);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
