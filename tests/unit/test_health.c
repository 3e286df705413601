/* test_health.c: the rise/fall counter that decides a server's active health state, and the
 * checks carrying on across runtimes (sp_health_update) on a real loop against loopback
 * listeners: no probe burst, no lost rise/fall progress, new servers checked, removed ones not. */
#include "health.h"
#include "health_flap.h"
#include "log.h"

#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* One scenario: a string of results ('+' ok, '-' failed) and the state after each. */
struct scenario {
    const char *name;
    unsigned rise, fall;
    const char *results;
    const char *states; /* 'U' up, 'D' down after each result */
};

static const struct scenario scenarios[] = {
    {"first ok keeps up", 2, 3, "+", "U"},
    {"first failure is down at once", 2, 3, "-", "D"},
    {"fall 3 needs three in a row", 2, 3, "+--+---", "UUUUUUD"},
    {"rise 2 needs two in a row", 2, 3, "-+-++", "DDDDU"},
    {"fall 1 and rise 1 follow every result", 1, 1, "+-+-", "UDUD"},
    {"a success resets the failure streak", 2, 2, "+-+-+--", "UUUUUUD"},
    {"back up then down again", 2, 2, "-++--", "DDUUD"},
};

START_TEST(rise_fall_table)
{
    const struct scenario *sc = &scenarios[_i];
    struct sp_health_state st = {.up = true};
    for (size_t i = 0; sc->results[i] != '\0'; i++) {
        bool was = st.up;
        bool changed = sp_health_record(&st, sc->results[i] == '+', sc->rise, sc->fall);
        bool want_up = sc->states[i] == 'U';
        ck_assert_msg(st.up == want_up, "%s: after result %zu ('%c') want %s, got %s", sc->name, i,
                      sc->results[i], want_up ? "up" : "down", st.up ? "up" : "down");
        ck_assert_msg(changed == (was != st.up), "%s: change flag wrong at %zu", sc->name, i);
    }
}
END_TEST

/* ---- sp_health_update on a loop ---- */

/* A loopback port: a listener on it (fd >= 0) counts each accepted probe, or nothing listens
 * (fd -1) and checks are refused. */
struct port {
    int port;
    int fd;
    int accepted;
};

static void port_open(struct port *p)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(fd, 64), 0);
    if (p->port == 0) {
        socklen_t len = sizeof(a);
        ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
        p->port = ntohs(a.sin_port);
    }
    p->fd = fd;
}

/* A port nothing listens on (one the kernel just gave out and took back). */
static void port_dead(struct port *p)
{
    p->port = 0;
    port_open(p);
    close(p->fd);
    p->fd = -1;
}

static void port_accept(struct port *p)
{
    int c;
    while (p->fd >= 0 && (c = accept4(p->fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
        close(c);
        p->accepted++;
    }
}

static struct port P[3]; /* a: alive, d: dead then alive, e: dead, in some configs only */
static uv_loop_t loop;

/* Runs the loop for up to ms, accepting probes, until done() (NULL: the whole time). */
static bool spin(int ms, bool (*done)(void))
{
    uint64_t end = uv_hrtime() / 1000000 + (uint64_t)ms;
    do {
        uv_run(&loop, UV_RUN_NOWAIT);
        for (int i = 0; i < 3; i++)
            port_accept(&P[i]);
        if (done != NULL && done())
            return true;
        usleep(1000);
    } while (uv_hrtime() / 1000000 < end);
    return false;
}

static struct sp_runtime *rt;

static struct sp_server *srv(int i)
{
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", P[i].port);
    struct sp_server *s = sp_runtime_find_server(rt, "pool", addr);
    ck_assert_msg(s != NULL, "no server %s", addr);
    return s;
}

static bool up(int i)
{
    return atomic_load(&srv(i)->state->up);
}

static bool d_down(void)
{
    return !up(1);
}

static int result(int i)
{
    return atomic_load(&srv(i)->state->check_result);
}

static bool e_checked(void)
{
    return result(2) != SP_CHECK_NONE;
}

static bool d_up(void)
{
    return up(1);
}

static int want_accepts;
static bool d_accepted(void)
{
    return P[1].accepted >= want_accepts;
}

/* The successor of rt for servers a, d (and e), with or without checks (interval 100 ms,
 * rise 3); rt is then dropped, as publish() does once the checks have moved. */
static void next_runtime(struct sp_health **h, bool with_e, bool checks)
{
    char text[1024];
    int n = snprintf(text, sizeof(text),
                     "listeners:\n  main:\n    listen: 127.0.0.1:1\n    upstream: pool\n"
                     "upstreams:\n  pool:\n%s    servers:\n"
                     "      - address: 127.0.0.1:%d\n      - address: 127.0.0.1:%d\n",
                     checks ? "    health_check:\n      interval: 100ms\n      timeout: 50ms\n"
                              "      rise: 3\n      fall: 1\n"
                            : "",
                     P[0].port, P[1].port);
    if (with_e)
        snprintf(text + n, sizeof(text) - (size_t)n, "      - address: 127.0.0.1:%d\n", P[2].port);
    struct sp_config *cfg = NULL;
    struct sp_config_error err;
    ck_assert_msg(sp_config_load_string("t.yaml", text, strlen(text), &cfg, &err) == 0, "%s",
                  err.text);
    struct sp_runtime *next = NULL;
    ck_assert_int_eq(sp_runtime_new(cfg, rt, NULL, &next), 0);
    if (*h == NULL)
        ck_assert_int_eq(sp_health_start(&loop, next, h), 0);
    else
        ck_assert_int_eq(sp_health_update(*h, next), 0);
    sp_runtime_unref(rt);
    rt = next;
}

START_TEST(update_keeps_checks_going)
{
    struct sp_health *h = NULL;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    P[0].port = 0;
    port_open(&P[0]);
    port_dead(&P[1]);
    port_dead(&P[2]);
    rt = NULL;
    next_runtime(&h, false, true);
    ck_assert_msg(spin(1000, d_down), "the dead server d was not marked down");
    ck_assert(up(0));

    /* d comes alive: one good check of the three it needs. */
    port_open(&P[1]);
    want_accepts = 1;
    ck_assert_msg(spin(1000, d_accepted), "d was not checked again");
    ck_assert(!up(1));

    /* Four successors in ~50 ms (e joins and leaves, as with DNS churn): a and d keep their
     * schedule (one probe per 100 ms at most), where restarted checks would probe at once. */
    int a0 = P[0].accepted, d0 = P[1].accepted;
    for (int i = 0; i < 4; i++) {
        next_runtime(&h, i % 2 == 0, true);
        spin(12, NULL);
    }
    ck_assert_msg(P[0].accepted - a0 <= 1 && P[1].accepted - d0 <= 1,
                  "probes during the updates: a %d, d %d", P[0].accepted - a0, P[1].accepted - d0);

    /* The streak went on: d is up right after its third good check in a row, counting the
     * one before the updates. */
    ck_assert(!up(1));
    want_accepts = 3;
    ck_assert_msg(spin(2000, d_accepted), "d was not checked three times");
    ck_assert_msg(spin(30, d_up), "d still down after 3 good checks: its streak was reset");

    /* A new server is checked at once, on a fresh clock: the loop stood still for 200 ms (as
     * it does while a reload resolves names), which must not time that first check out. */
    port_open(&P[2]);
    usleep(200 * 1000);
    next_runtime(&h, true, true);
    ck_assert_msg(spin(1000, e_checked), "the new server e was not checked");
    ck_assert_msg(result(2) == SP_CHECK_OK, "e's first check: %s", sp_check_result_str(result(2)));
    ck_assert(up(2));

    /* d dies and goes down; then checks go off: its verdict goes, and nothing is probed. */
    close(P[1].fd);
    P[1].fd = -1;
    ck_assert_msg(spin(1000, d_down), "d was not marked down again");
    next_runtime(&h, true, false);
    ck_assert(up(1));
    ck_assert_int_eq(result(1), SP_CHECK_NONE);
    spin(50, NULL);
    int a1 = P[0].accepted, e1 = P[2].accepted;
    spin(250, NULL);
    ck_assert_int_eq(P[0].accepted, a1);
    ck_assert_int_eq(P[2].accepted, e1);

    sp_health_stop(h);
    uv_run(&loop, UV_RUN_DEFAULT); /* the close callbacks; then nothing is left open */
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    sp_runtime_unref(rt);
    close(P[0].fd);
    close(P[2].fd);
}
END_TEST

/* Flap damping: more than max changes within window hold the server; the hold ends once it has
 * been up for hold, and old changes fall out of the window. */
START_TEST(flap_hold_and_release)
{
    struct sp_flap f = {0};
    const uint64_t W = 10000, H = 3000;
    ck_assert(!sp_flap_change(&f, false, 1000, W, 2));
    ck_assert(!sp_flap_change(&f, true, 2000, W, 2));
    ck_assert_uint_eq(sp_flap_count(&f, 2000, W), 2);
    ck_assert(sp_flap_change(&f, false, 3000, W, 2)); /* the third within 10 s */
    ck_assert(f.held);
    ck_assert(!sp_flap_change(&f, true, 4000, W, 2)); /* already held */
    ck_assert(!sp_flap_release(&f, true, 6999, H));
    ck_assert(!sp_flap_release(&f, false, 8000, H)); /* down: no release */
    ck_assert(sp_flap_release(&f, true, 7000, H));
    ck_assert(!f.held);
    ck_assert_uint_eq(sp_flap_count(&f, 7000, W), 0);
    /* Down again and up again: a fresh count, far from flap_max. */
    ck_assert(!sp_flap_change(&f, false, 8000, W, 2));
    ck_assert(!sp_flap_change(&f, true, 9000, W, 2));
}
END_TEST

START_TEST(flap_window_forgets)
{
    struct sp_flap f = {0};
    /* One change every 5 s: never more than 2 within 10 s. */
    for (uint64_t t = 1; t < 200; t++)
        ck_assert_msg(!sp_flap_change(&f, t % 2 == 0, t * 5001, 10000, 2), "held at %llu",
                      (unsigned long long)t);
    ck_assert_uint_eq(sp_flap_count(&f, 200 * 5001, 10000), 1);
    /* max 0 is off: nothing held whatever the rate. */
    struct sp_flap g = {0};
    for (uint64_t t = 1; t < 300; t++)
        ck_assert(!sp_flap_change(&g, t % 2 == 0, t, 10000, 0));
    ck_assert(!g.held);
    /* The ring holds SP_FLAP_MAX_MAX + 1 changes: max 100 still trips. */
    struct sp_flap m = {0};
    int tripped = 0;
    for (uint64_t t = 1; t <= 150; t++)
        tripped += sp_flap_change(&m, t % 2 == 0, t, 10000, SP_FLAP_MAX_MAX);
    ck_assert_int_eq(tripped, 1);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("health");
    TCase *tc = tcase_create("rise_fall");
    tcase_add_loop_test(tc, rise_fall_table, 0, (int)(sizeof(scenarios) / sizeof(scenarios[0])));
    suite_add_tcase(s, tc);
    TCase *fl = tcase_create("flap");
    tcase_add_test(fl, flap_hold_and_release);
    tcase_add_test(fl, flap_window_forgets);
    suite_add_tcase(s, fl);
    TCase *up = tcase_create("update");
    tcase_add_test(up, update_keeps_checks_going);
    suite_add_tcase(s, up);
    return s;
}

int main(void)
{
    sp_log_set_level(SP_LOG_ERROR);
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
