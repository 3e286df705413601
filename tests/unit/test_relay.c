/* test_relay.c: one relay direction between real loopback TCP sockets: bytes arrive intact in
 * both modes, a full destination holds the pipe and stops reading, the FIN follows the last
 * byte, resets surface on the right side, and fd exhaustion falls back to copying. */
#include "pipe_pool.h"
#include "relay.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* Two connected loopback TCP sockets: fds[0] client end, fds[1] accepted end. */
static void tcp_pair(int fds[2])
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    ck_assert_int_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(l, 1), 0);
    ck_assert_int_eq(getsockname(l, (struct sockaddr *)&a, &len), 0);
    fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ck_assert_int_eq(connect(fds[0], (struct sockaddr *)&a, sizeof(a)) == 0 || errno == EINPROGRESS,
                     1);
    fds[1] = accept4(l, NULL, NULL, SOCK_NONBLOCK);
    ck_assert_int_ge(fds[1], 0);
    close(l);
}

/* src side: in[0] is where the test writes, in[1] the relay's source.
 * dst side: out[0] the relay's destination, out[1] where the test reads. */
struct rig {
    int in[2], out[2];
    struct sp_pipe_pool pool;
    struct sp_relay_ctx ctx;
    struct sp_relay_dir dir;
};

static void rig_up(struct rig *r, enum sp_relay_policy policy)
{
    tcp_pair(r->in);
    tcp_pair(r->out);
    sp_pipe_pool_init(&r->pool, 64 * 1024, 4);
    sp_relay_ctx_init(&r->ctx, &r->pool, 4);
    sp_relay_dir_init(&r->dir, r->in[1], r->out[0], policy);
}

static void rig_down(struct rig *r)
{
    sp_relay_dir_release(&r->dir, &r->ctx);
    ck_assert_uint_eq(r->pool.in_use, 0);
    sp_relay_ctx_deinit(&r->ctx);
    sp_pipe_pool_deinit(&r->pool);
    for (int i = 0; i < 2; i++) {
        close(r->in[i]);
        close(r->out[i]);
    }
}

static void wait_readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ck_assert_int_eq(poll(&p, 1, 2000), 1);
}

static void fill(unsigned char *buf, size_t len, size_t off)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)((off + i) * 2654435761u >> 13);
}

/* One pump as the session does it: reading allowed, and what it found taken note of. */
static enum sp_relay_status pump(struct rig *r)
{
    enum sp_relay_status st = sp_relay_pump(&r->dir, &r->ctx, true);
    r->dir.src_empty = r->dir.src_drained = false;
    if (st == SP_RELAY_EOF && r->dir.src_err == 0)
        ck_assert_int_eq(sp_relay_shut(&r->dir), 0);
    return st;
}

/* Writes `total` bytes through the direction and reads them back, pumping as a loop would. */
static void move_through(struct rig *r, size_t total)
{
    static unsigned char wbuf[64 * 1024], rbuf[64 * 1024], want[64 * 1024];
    size_t sent = 0, got = 0;
    uint64_t base = r->dir.bytes;
    for (int rounds = 0; got < total && rounds < 100000; rounds++) {
        if (sent < total) {
            size_t n = (total - sent < sizeof(wbuf) ? total - sent : sizeof(wbuf));
            fill(wbuf, n, sent);
            ssize_t w = send(r->in[0], wbuf, n, MSG_DONTWAIT);
            if (w > 0)
                sent += (size_t)w;
        }
        enum sp_relay_status st = pump(r);
        ck_assert_int_ne(st, SP_RELAY_ERROR);
        ssize_t n = recv(r->out[1], rbuf, sizeof(rbuf), MSG_DONTWAIT);
        if (n > 0) {
            fill(want, (size_t)n, got);
            ck_assert_mem_eq(rbuf, want, (size_t)n);
            got += (size_t)n;
        }
    }
    ck_assert_uint_eq(got, total);
    ck_assert_uint_eq(r->dir.bytes - base, total);
}

START_TEST(splice_moves_bytes_intact)
{
    struct rig r;
    rig_up(&r, SP_POLICY_SPLICE);
    move_through(&r, 8 * 1024 * 1024);
    ck_assert_uint_eq(r.ctx.splice_bytes, 8 * 1024 * 1024);
    ck_assert_uint_eq(r.ctx.copy_bytes, 0);
    /* Nothing in flight: the pipe went back to the pool. */
    ck_assert_ptr_null(r.dir.pipe);
    ck_assert_uint_eq(r.pool.in_use, 0);
    rig_down(&r);
}
END_TEST

START_TEST(copy_moves_bytes_intact)
{
    struct rig r;
    rig_up(&r, SP_POLICY_COPY);
    move_through(&r, 4 * 1024 * 1024);
    ck_assert_uint_eq(r.ctx.copy_bytes, 4 * 1024 * 1024);
    ck_assert_uint_eq(r.ctx.splice_bytes, 0);
    ck_assert_uint_eq(r.ctx.bufs_in_use, 0);
    rig_down(&r);
}
END_TEST

/* The destination's reader is asleep: the direction must stop at WANT_WRITE with bytes held
 * in its pipe, and resume when the reader drains. */
static void backpressure(bool copy)
{
    struct rig r;
    rig_up(&r, copy ? SP_POLICY_COPY : SP_POLICY_SPLICE);
    static unsigned char buf[256 * 1024];
    fill(buf, sizeof(buf), 0);
    enum sp_relay_status st = SP_RELAY_WANT_READ;
    size_t sent = 0;
    for (int i = 0; i < 10000 && st != SP_RELAY_WANT_WRITE; i++) {
        ssize_t w = send(r.in[0], buf, sizeof(buf), MSG_DONTWAIT);
        if (w > 0)
            sent += (size_t)w;
        st = pump(&r);
    }
    ck_assert_int_eq(st, SP_RELAY_WANT_WRITE);
    ck_assert_uint_gt(r.dir.pending, 0);
    if (copy)
        ck_assert_uint_eq(r.ctx.bufs_in_use, 1);
    else
        ck_assert_uint_eq(r.pool.in_use, 1);
    /* Pumping again while the reader sleeps moves nothing and still wants to write. */
    uint64_t before = r.dir.bytes;
    ck_assert_int_eq(pump(&r), SP_RELAY_WANT_WRITE);
    ck_assert_uint_eq(r.dir.bytes, before);

    /* Drain everything that was sent; the relay keeps up as the reader reads. */
    size_t got = 0;
    static unsigned char rbuf[256 * 1024];
    for (int i = 0; i < 100000 && got < sent; i++) {
        ssize_t n = recv(r.out[1], rbuf, sizeof(rbuf), MSG_DONTWAIT);
        if (n > 0)
            got += (size_t)n;
        ck_assert_int_ne(pump(&r), SP_RELAY_ERROR);
    }
    ck_assert_uint_eq(got, sent);
    ck_assert_uint_eq(r.dir.pending, 0);
    rig_down(&r);
}

START_TEST(splice_backpressure)
{
    backpressure(false);
}
END_TEST

START_TEST(copy_backpressure)
{
    backpressure(true);
}
END_TEST

/* The FIN must follow the last byte: with the destination full at EOF time the direction is
 * not done, and the reader sees every byte before EOF. */
START_TEST(fin_after_drain)
{
    struct rig r;
    rig_up(&r, SP_POLICY_SPLICE);
    static unsigned char buf[512 * 1024];
    size_t sent = 0;
    enum sp_relay_status st = SP_RELAY_WANT_READ;
    for (int i = 0; i < 10000 && st != SP_RELAY_WANT_WRITE; i++) {
        ssize_t w = send(r.in[0], buf, sizeof(buf), MSG_DONTWAIT);
        if (w > 0)
            sent += (size_t)w;
        st = pump(&r);
    }
    ck_assert_int_eq(shutdown(r.in[0], SHUT_WR), 0);
    /* More pumps cannot finish while the destination is full. */
    ck_assert_int_eq(pump(&r), SP_RELAY_WANT_WRITE);
    ck_assert(!sp_relay_done(&r.dir));

    size_t got = 0;
    bool eof = false;
    for (int i = 0; i < 200000 && !eof; i++) {
        ssize_t n = recv(r.out[1], buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0)
            got += (size_t)n;
        else if (n == 0)
            eof = true;
        st = pump(&r);
        ck_assert_int_ne(st, SP_RELAY_ERROR);
    }
    ck_assert(eof);
    ck_assert_uint_eq(got, sent);
    ck_assert_int_eq(st, SP_RELAY_EOF);
    ck_assert(sp_relay_done(&r.dir));
    rig_down(&r);
}
END_TEST

/* A reset read from the source ends it like an EOF that remembers the error, and the bytes
 * that came before the reset are delivered, not dropped. */
START_TEST(source_reset_ends_the_source_after_its_bytes)
{
    struct rig r;
    rig_up(&r, _i == 0 ? SP_POLICY_SPLICE : SP_POLICY_COPY);
    ck_assert_int_eq(send(r.in[0], "hello", 5, 0), 5);
    wait_readable(r.in[1]);
    struct linger lg = {1, 0};
    setsockopt(r.in[0], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(r.in[0]);
    r.in[0] = socket(AF_INET, SOCK_STREAM, 0); /* keep rig_down's close harmless */
    usleep(20000);                             /* the RST arrives behind the bytes */
    enum sp_relay_status st = SP_RELAY_WANT_READ;
    for (int i = 0; i < 3 && st != SP_RELAY_EOF; i++) {
        st = sp_relay_pump(&r.dir, &r.ctx, true);
        r.dir.src_empty = r.dir.src_drained = false; /* as the flow does after noting them */
    }
    ck_assert_int_eq(st, SP_RELAY_EOF);
    ck_assert_int_eq(r.dir.src_err, -ECONNRESET);
    ck_assert(!r.dir.dst_shut);
    char buf[8];
    wait_readable(r.out[1]);
    ck_assert_int_eq(recv(r.out[1], buf, sizeof(buf), MSG_DONTWAIT), 5);
    ck_assert_mem_eq(buf, "hello", 5);
    rig_down(&r);
}
END_TEST

START_TEST(destination_reset_is_a_destination_error)
{
    struct rig r;
    rig_up(&r, SP_POLICY_SPLICE);
    struct linger lg = {1, 0};
    setsockopt(r.out[1], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(r.out[1]);
    r.out[1] = socket(AF_INET, SOCK_STREAM, 0);
    wait_readable(r.out[0]); /* the RST has arrived */
    ck_assert_int_eq(send(r.in[0], "hello", 5, 0), 5);
    wait_readable(r.in[1]);
    enum sp_relay_status st = pump(&r);
    ck_assert_int_eq(st, SP_RELAY_ERROR);
    ck_assert(r.dir.err == -ECONNRESET || r.dir.err == -EPIPE);
    rig_down(&r);
}
END_TEST

/* At the fd cap no pipe can be had: the direction copies instead, counted, and the bytes still
 * arrive. */
START_TEST(falls_back_to_copy_without_pipes)
{
    struct rig r;
    rig_up(&r, SP_POLICY_SPLICE);
    struct rlimit rl = {.rlim_cur = 64, .rlim_max = 4096};
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    /* Use up every free descriptor below the cap. */
    int hogs[64], nhogs = 0;
    while (nhogs < 64 && (hogs[nhogs] = open("/dev/null", O_RDONLY)) != -1)
        nhogs++;
    move_through(&r, 1024 * 1024);
    ck_assert_uint_eq(r.ctx.copy_fallbacks, 1);
    ck_assert_uint_eq(r.ctx.copy_bytes, 1024 * 1024);
    ck_assert_uint_ge(r.pool.failures, 1);
    rig_down(&r);
    /* Give the descriptors back: LeakSanitizer needs some to read /proc at exit. */
    while (nhogs > 0)
        close(hogs[--nhogs]);
}
END_TEST

/* relay: auto: an exchange of small messages stays on the copy path, a bulk flow moves to
 * splice, and the direction comes back to copying when the messages get small again. */
START_TEST(adaptive_follows_the_traffic)
{
    struct rig r;
    rig_up(&r, SP_POLICY_ADAPTIVE);
    static unsigned char small[512], rbuf[64 * 1024];
    for (int i = 0; i < 50; i++) {
        ck_assert_int_eq(send(r.in[0], small, sizeof(small), 0), (ssize_t)sizeof(small));
        wait_readable(r.in[1]);
        ck_assert_int_eq(pump(&r), SP_RELAY_WANT_READ);
        wait_readable(r.out[1]);
        ck_assert_int_eq(recv(r.out[1], rbuf, sizeof(rbuf), 0), (ssize_t)sizeof(small));
    }
    ck_assert_uint_eq(r.ctx.splice_bytes, 0);
    ck_assert_uint_eq(r.ctx.copy_bytes, 50 * sizeof(small));

    move_through(&r, 16 * 1024 * 1024);
    ck_assert_uint_gt(r.ctx.splice_bytes, 8 * 1024 * 1024);
    ck_assert_int_eq(r.dir.mode, SP_DIR_SPLICE);

    uint64_t spliced = r.ctx.splice_bytes;
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(send(r.in[0], small, sizeof(small), 0), (ssize_t)sizeof(small));
        wait_readable(r.in[1]);
        ck_assert_int_eq(pump(&r), SP_RELAY_WANT_READ);
        wait_readable(r.out[1]);
        ck_assert_int_eq(recv(r.out[1], rbuf, sizeof(rbuf), 0), (ssize_t)sizeof(small));
    }
    /* A few small reads go through the pipe before the direction turns back. */
    ck_assert_uint_le(r.ctx.splice_bytes - spliced, 4 * sizeof(small));
    ck_assert_int_eq(r.dir.mode, SP_DIR_COPY);
    ck_assert_uint_eq(r.pool.in_use, 0);
    ck_assert_uint_eq(r.ctx.bufs_in_use, 0);
    rig_down(&r);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("relay");
    TCase *tc = tcase_create("relay");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, splice_moves_bytes_intact);
    tcase_add_test(tc, copy_moves_bytes_intact);
    tcase_add_test(tc, splice_backpressure);
    tcase_add_test(tc, copy_backpressure);
    tcase_add_test(tc, fin_after_drain);
    tcase_add_loop_test(tc, source_reset_ends_the_source_after_its_bytes, 0, 2);
    tcase_add_test(tc, destination_reset_is_a_destination_error);
    tcase_add_test(tc, falls_back_to_copy_without_pipes);
    tcase_add_test(tc, adaptive_follows_the_traffic);
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
