/* test_poll_reuse.c: a worker keeps stopped poll handles per descriptor number; a new socket
 * that the kernel gives the same number must get the kept handle and still see its events,
 * and nothing of the old socket. */
#include "worker.h"

#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

static int listener_fd(struct sockaddr_in *a)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    socklen_t len = sizeof(*a);
    *a = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(l, (struct sockaddr *)a, sizeof(*a)), 0);
    ck_assert_int_eq(listen(l, 8), 0);
    ck_assert_int_eq(getsockname(l, (struct sockaddr *)a, &len), 0);
    return l;
}

static int connected(const struct sockaddr_in *a)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int rc = connect(fd, (const struct sockaddr *)a, sizeof(*a));
    ck_assert(rc == 0 || errno == EINPROGRESS);
    return fd;
}

static int fired;
static void on_event(uv_poll_t *h, int status, int events)
{
    (void)status;
    if (events & UV_WRITABLE) {
        fired++;
        uv_poll_stop(h);
    }
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

START_TEST(reuses_the_handle_of_a_closed_number)
{
    struct sp_worker w = {0};
    ck_assert_int_eq(uv_loop_init(&w.loop), 0);
    struct sockaddr_in a;
    int l = listener_fd(&a);

    int fd = connected(&a);
    uv_poll_t *h1 = NULL;
    ck_assert_int_eq(sp_worker_poll_get(&w, fd, &h1), 0);
    ck_assert_int_eq(uv_poll_start(h1, UV_WRITABLE, on_event), 0);
    fired = 0;
    ck_assert_int_eq(uv_run(&w.loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(fired, 1);

    sp_worker_poll_put(&w, h1);
    close(fd);
    int again = connected(&a);
    ck_assert_int_eq(again, fd); /* the kernel hands out the lowest free number */

    uv_poll_t *h2 = NULL;
    ck_assert_int_eq(sp_worker_poll_get(&w, again, &h2), 0);
    ck_assert_ptr_eq(h2, h1);
    /* The kept handle serves the new socket: its event arrives. */
    fired = 0;
    ck_assert_int_eq(uv_poll_start(h2, UV_WRITABLE, on_event), 0);
    ck_assert_int_eq(uv_run(&w.loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(fired, 1);

    /* Another number gets a handle of its own. */
    int other = connected(&a);
    uv_poll_t *h3 = NULL;
    ck_assert_int_eq(sp_worker_poll_get(&w, other, &h3), 0);
    ck_assert_ptr_ne(h3, h2);

    sp_worker_poll_put(&w, h2);
    sp_worker_poll_put(&w, h3);
    close(again);
    close(other);
    close(l);
    /* Teardown as the worker does it: close what is kept, then the loop closes cleanly. */
    for (size_t i = 0; i < w.nparked; i++) {
        if (w.parked[i] != NULL)
            uv_close((uv_handle_t *)w.parked[i], free_handle);
    }
    uv_run(&w.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&w.loop), 0);
    free(w.parked);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("poll_reuse");
    TCase *tc = tcase_create("poll_reuse");
    tcase_add_test(tc, reuses_the_handle_of_a_closed_number);
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
