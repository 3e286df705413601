/* test_flow.c: the edge-triggered relay's decisions (flow.h) driven by made-up epoll events and
 * pump results: a full pipe stops its source, a drained pipe resumes it without a new event, the
 * FIN waits for the last byte, a failure waits until what the failed side sent is delivered, and
 * a connect is judged from its events alone; a source held back by its destination is not
 * watched for input. Under edge triggering a flag wrongly cleared is a hang, so each path that
 * clears one is here. */
#include "flow.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

enum { CLI = 0, UPS = 1 };

struct conn {
    struct sp_relay_dir dir[2];
    struct sp_side side[2];
};

static void conn_init(struct conn *c)
{
    memset(c, 0, sizeof(*c));
    sp_relay_dir_init(&c->dir[CLI], 10, 11, SP_POLICY_SPLICE);
    sp_relay_dir_init(&c->dir[UPS], 11, 10, SP_POLICY_SPLICE);
}

static void expect(const struct conn *c, enum sp_step_kind kind, int index)
{
    struct sp_step st = sp_flow_next(c->dir, c->side);
    ck_assert_int_eq(st.kind, kind);
    if (kind != SP_STEP_WAIT)
        ck_assert_int_eq(st.index, index);
}

/* A fresh connection: the first events say both sockets are writable, nothing to read yet. */
START_TEST(idle_connection_waits)
{
    struct conn c;
    conn_init(&c);
    sp_side_event(&c.side[CLI], EPOLLOUT);
    sp_side_event(&c.side[UPS], EPOLLOUT);
    expect(&c, SP_STEP_WAIT, -1);
}
END_TEST

/* The client's bytes arrive: pump client -> server. The pump read until EAGAIN: no more reads
 * until the next edge. */
START_TEST(readable_then_drained)
{
    struct conn c;
    conn_init(&c);
    sp_side_event(&c.side[UPS], EPOLLOUT);
    sp_side_event(&c.side[CLI], EPOLLIN | EPOLLOUT);
    expect(&c, SP_STEP_PUMP, CLI);
    ck_assert(sp_flow_may_read(c.side, CLI));
    c.dir[CLI].src_empty = true;
    sp_flow_note(c.dir, c.side, CLI, SP_RELAY_WANT_READ);
    ck_assert(!c.side[CLI].readable);
    ck_assert(!c.dir[CLI].src_empty);
    expect(&c, SP_STEP_WAIT, -1);
    sp_side_event(&c.side[CLI], EPOLLIN);
    expect(&c, SP_STEP_PUMP, CLI);
}
END_TEST

/* A full pipe: the server will not take more (short write), so the client is not read even though
 * it is readable; when the server drains, the same direction runs, and reads again without any
 * new event from the client. */
START_TEST(full_pipe_resumes_without_new_event)
{
    struct conn c;
    conn_init(&c);
    sp_side_event(&c.side[UPS], EPOLLOUT);
    sp_side_event(&c.side[CLI], EPOLLIN | EPOLLOUT);
    expect(&c, SP_STEP_PUMP, CLI);
    c.dir[CLI].pending = 4096; /* the short write left these in the pipe */
    sp_flow_note(c.dir, c.side, CLI, SP_RELAY_WANT_WRITE);
    ck_assert(!c.side[UPS].writable);
    ck_assert(c.side[CLI].readable); /* the client still holds bytes: not forgotten */
    /* Its input edges could only wake the worker for nothing now: out of the set. */
    ck_assert(!sp_flow_wants_input(c.dir, c.side, CLI));
    ck_assert(sp_flow_wants_input(c.dir, c.side, UPS));
    expect(&c, SP_STEP_WAIT, -1);
    /* More bytes from the client while the pipe is full: still nothing to do. */
    sp_side_event(&c.side[CLI], EPOLLIN);
    expect(&c, SP_STEP_WAIT, -1);
    /* The server drains: pump delivers the pipe, then may read the client. */
    sp_side_event(&c.side[UPS], EPOLLOUT);
    expect(&c, SP_STEP_PUMP, CLI);
    c.dir[CLI].pending = 0;
    sp_flow_note(c.dir, c.side, CLI, SP_RELAY_YIELD);
    ck_assert(sp_flow_wants_input(c.dir, c.side, CLI));
    /* Nothing was found empty: the client is still readable, so the direction runs again. */
    expect(&c, SP_STEP_PUMP, CLI);
}
END_TEST

/* Input stays watched while bytes wait for a destination that has failed: what the source sends
 * then is read and dropped (DISCARD), which needs its edges. */
START_TEST(input_watched_towards_a_failed_side)
{
    struct conn c;
    conn_init(&c);
    ck_assert(sp_flow_wants_input(c.dir, c.side, CLI));
    c.dir[CLI].pending = 4096;
    ck_assert(!sp_flow_wants_input(c.dir, c.side, CLI));
    sp_side_event(&c.side[UPS], EPOLLERR | EPOLLHUP);
    ck_assert(sp_flow_wants_input(c.dir, c.side, CLI));
}
END_TEST

/* A read short enough to prove the socket empty ends reading, unless the peer's FIN arrived with
 * the data: then the end itself is still to be read. */
START_TEST(short_read_and_hangup)
{
    struct conn c;
    conn_init(&c);
    sp_side_event(&c.side[UPS], EPOLLOUT);
    sp_side_event(&c.side[CLI], EPOLLIN | EPOLLOUT);
    c.dir[CLI].src_drained = true;
    sp_flow_note(c.dir, c.side, CLI, SP_RELAY_WANT_READ);
    ck_assert(!c.side[CLI].readable);
    expect(&c, SP_STEP_WAIT, -1);

    sp_side_event(&c.side[CLI], EPOLLIN | EPOLLRDHUP);
    c.dir[CLI].src_drained = true;
    sp_flow_note(c.dir, c.side, CLI, SP_RELAY_WANT_READ);
    ck_assert(c.side[CLI].readable);
    expect(&c, SP_STEP_PUMP, CLI);
    /* EAGAIN is final even with a hang-up flag: no spinning on a socket that says nothing. */
    c.dir[CLI].src_empty = true;
    sp_flow_note(c.dir, c.side, CLI, SP_RELAY_WANT_READ);
    ck_assert(!c.side[CLI].readable);
}
END_TEST

/* The client's FIN with no data: RDHUP alone must make the direction read (to find the EOF). */
START_TEST(rdhup_without_data)
{
    struct conn c;
    conn_init(&c);
    sp_side_event(&c.side[UPS], EPOLLOUT);
    sp_side_event(&c.side[CLI], EPOLLOUT);
    sp_side_event(&c.side[CLI], EPOLLRDHUP);
    ck_assert(c.side[CLI].hup);
    expect(&c, SP_STEP_PUMP, CLI);
    c.dir[CLI].src_eof = true;
    sp_flow_note(c.dir, c.side, CLI, SP_RELAY_EOF);
    /* The server's direction goes on: pass the FIN on with a shutdown. */
    expect(&c, SP_STEP_SHUT, CLI);
    c.dir[CLI].dst_shut = true;
    expect(&c, SP_STEP_WAIT, -1);
}
END_TEST

/* EOF while the pipe still holds bytes: no FIN until they are out; and the second end closes
 * both sockets rather than shutting the last one first. */
START_TEST(eof_waits_for_the_pipe)
{
    struct conn c;
    conn_init(&c);
    sp_side_event(&c.side[UPS], EPOLLOUT);
    sp_side_event(&c.side[CLI], EPOLLIN | EPOLLOUT);
    /* The server's response and FIN came in; the client is slow. */
    sp_side_event(&c.side[UPS], EPOLLIN | EPOLLRDHUP);
    c.dir[UPS].src_eof = true;
    c.dir[UPS].pending = 1000;
    c.side[CLI].writable = false;
    expect(&c, SP_STEP_PUMP, CLI); /* the client's direction may still read */
    c.dir[CLI].src_empty = true;
    sp_flow_note(c.dir, c.side, CLI, SP_RELAY_WANT_READ);
    expect(&c, SP_STEP_WAIT, -1); /* no SHUT while 1000 bytes wait */
    sp_side_event(&c.side[CLI], EPOLLOUT);
    expect(&c, SP_STEP_PUMP, UPS);
    c.dir[UPS].pending = 0;
    sp_flow_note(c.dir, c.side, UPS, SP_RELAY_EOF);
    expect(&c, SP_STEP_SHUT, UPS);
    c.dir[UPS].dst_shut = true;
    /* The client closes in turn: both ends are passed on by closing. */
    sp_side_event(&c.side[CLI], EPOLLIN | EPOLLRDHUP);
    expect(&c, SP_STEP_PUMP, CLI);
    c.dir[CLI].src_eof = true;
    sp_flow_note(c.dir, c.side, CLI, SP_RELAY_EOF);
    expect(&c, SP_STEP_CLOSE, CLI);
}
END_TEST

/* The server resets with its response half delivered and the client not taking more: the rest
 * is delivered first, and only then does the connection end. */
START_TEST(failure_waits_for_delivery)
{
    struct conn c;
    conn_init(&c);
    sp_side_event(&c.side[CLI], EPOLLOUT);
    sp_side_event(&c.side[UPS], EPOLLOUT);
    c.dir[UPS].pending = 3000;
    c.side[CLI].writable = false;
    sp_side_event(&c.side[UPS], EPOLLIN | EPOLLERR | EPOLLHUP);
    ck_assert(c.side[UPS].failed);
    /* Nothing may be written to the server any more, and the pipe must reach the client first. */
    expect(&c, SP_STEP_WAIT, -1);
    sp_side_event(&c.side[CLI], EPOLLOUT);
    expect(&c, SP_STEP_PUMP, UPS);
    /* The pump delivered the pipe, read what was left and then the reset. */
    c.dir[UPS].pending = 0;
    c.dir[UPS].src_eof = true;
    c.dir[UPS].src_err = -104; /* ECONNRESET */
    sp_flow_note(c.dir, c.side, UPS, SP_RELAY_EOF);
    expect(&c, SP_STEP_ABORT, UPS);
}
END_TEST

/* A reset read from the client (not announced by an event) ends it as a failure, not a FIN. */
START_TEST(read_error_is_a_failure)
{
    struct conn c;
    conn_init(&c);
    sp_side_event(&c.side[UPS], EPOLLOUT);
    sp_side_event(&c.side[CLI], EPOLLIN | EPOLLOUT);
    c.dir[CLI].src_eof = true;
    c.dir[CLI].src_err = -104;
    sp_flow_note(c.dir, c.side, CLI, SP_RELAY_EOF);
    expect(&c, SP_STEP_ABORT, CLI);
}
END_TEST

/* A write the client refuses: the client failed. What it sent before is still read (it may be a
 * request the server is owed), the server's pending bytes are dropped, then the end. */
START_TEST(write_error_fails_the_destination)
{
    struct conn c;
    conn_init(&c);
    sp_side_event(&c.side[CLI], EPOLLOUT);
    sp_side_event(&c.side[UPS], EPOLLIN | EPOLLOUT);
    c.dir[UPS].pending = 500;
    sp_flow_note(c.dir, c.side, UPS, SP_RELAY_ERROR);
    ck_assert(c.side[CLI].failed);
    ck_assert(c.side[CLI].readable);
    expect(&c, SP_STEP_PUMP, CLI);
    c.dir[CLI].src_eof = true;
    c.dir[CLI].src_err = -104;
    sp_flow_note(c.dir, c.side, CLI, SP_RELAY_EOF);
    expect(&c, SP_STEP_ABORT, CLI);
}
END_TEST

/* The client reset while the server, an echo, still had bytes for it and was blocked writing
 * them: what the server sends now is read and dropped, so it can go on taking the bytes the
 * client sent before its reset, and the end waits only for those. */
START_TEST(direction_to_a_failed_side_discards)
{
    struct conn c;
    conn_init(&c);
    sp_side_event(&c.side[CLI], EPOLLOUT);
    sp_side_event(&c.side[UPS], EPOLLOUT);
    c.dir[CLI].pending = 65536; /* the client's last bytes, the server not taking them yet */
    c.side[UPS].writable = false;
    c.dir[UPS].pending = 4096; /* the echo owed to the client, who reset */
    sp_side_event(&c.side[CLI], EPOLLERR | EPOLLHUP);
    sp_side_event(&c.side[UPS], EPOLLIN);
    expect(&c, SP_STEP_DISCARD, UPS);
    sp_flow_discarded(c.dir, c.side, UPS, 0);
    ck_assert_uint_eq(c.dir[UPS].pending, 0);
    ck_assert(!c.side[UPS].readable);
    expect(&c, SP_STEP_WAIT, -1);
    /* Having written, the server reads again: the client's bytes go, then the end. */
    sp_side_event(&c.side[UPS], EPOLLOUT | EPOLLIN);
    expect(&c, SP_STEP_PUMP, CLI);
    c.dir[CLI].pending = 0;
    c.dir[CLI].src_eof = true;
    c.dir[CLI].src_err = -104;
    sp_flow_note(c.dir, c.side, CLI, SP_RELAY_EOF);
    /* Everything delivered: the end comes first, nothing more is read to be dropped. */
    expect(&c, SP_STEP_ABORT, CLI);
}
END_TEST

/* Both sides failed: nothing can be delivered anywhere, end at once. */
START_TEST(both_failed)
{
    struct conn c;
    conn_init(&c);
    c.dir[UPS].pending = 10;
    c.dir[CLI].pending = 10;
    sp_side_event(&c.side[CLI], EPOLLERR);
    sp_side_event(&c.side[UPS], EPOLLERR);
    expect(&c, SP_STEP_ABORT, CLI);
}
END_TEST

/* A failure after the side's FIN was passed on: nothing of it is left to deliver. */
START_TEST(failure_after_fin)
{
    struct conn c;
    conn_init(&c);
    sp_side_event(&c.side[CLI], EPOLLOUT);
    sp_side_event(&c.side[UPS], EPOLLOUT);
    c.dir[UPS].src_eof = true;
    c.dir[UPS].dst_shut = true;
    sp_side_event(&c.side[UPS], EPOLLERR | EPOLLHUP);
    expect(&c, SP_STEP_ABORT, UPS);
}
END_TEST

/* A connect is judged from its events: writable alone is success, an error or hang-up is failure
 * even with EPOLLOUT beside it, and no event is no verdict. */
START_TEST(connect_from_events)
{
    struct sp_side s;
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(sp_flow_connect_state(&s), SP_CONNECT_PENDING);
    sp_side_event(&s, EPOLLOUT);
    ck_assert_int_eq(sp_flow_connect_state(&s), SP_CONNECT_DONE);
    memset(&s, 0, sizeof(s));
    sp_side_event(&s, EPOLLOUT | EPOLLERR | EPOLLHUP);
    ck_assert_int_eq(sp_flow_connect_state(&s), SP_CONNECT_FAILED);
    memset(&s, 0, sizeof(s));
    sp_side_event(&s, EPOLLHUP);
    ck_assert_int_eq(sp_flow_connect_state(&s), SP_CONNECT_FAILED);
    /* A server that answers at once: data with the connect is still a success. */
    memset(&s, 0, sizeof(s));
    sp_side_event(&s, EPOLLOUT | EPOLLIN);
    ck_assert_int_eq(sp_flow_connect_state(&s), SP_CONNECT_DONE);
    ck_assert(s.readable);
    /* ... and so is a server that answers and half-closes at once. */
    memset(&s, 0, sizeof(s));
    sp_side_event(&s, EPOLLOUT | EPOLLIN | EPOLLRDHUP);
    ck_assert_int_eq(sp_flow_connect_state(&s), SP_CONNECT_DONE);
    ck_assert(s.hup);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("flow");
    TCase *tc = tcase_create("flow");
    tcase_add_test(tc, idle_connection_waits);
    tcase_add_test(tc, readable_then_drained);
    tcase_add_test(tc, full_pipe_resumes_without_new_event);
    tcase_add_test(tc, short_read_and_hangup);
    tcase_add_test(tc, rdhup_without_data);
    tcase_add_test(tc, input_watched_towards_a_failed_side);
    tcase_add_test(tc, eof_waits_for_the_pipe);
    tcase_add_test(tc, failure_waits_for_delivery);
    tcase_add_test(tc, read_error_is_a_failure);
    tcase_add_test(tc, write_error_fails_the_destination);
    tcase_add_test(tc, direction_to_a_failed_side_discards);
    tcase_add_test(tc, both_failed);
    tcase_add_test(tc, failure_after_fin);
    tcase_add_test(tc, connect_from_events);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
