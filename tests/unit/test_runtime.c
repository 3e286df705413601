/* test_runtime.c: building a runtime's successor (a reload, a changed DNS answer). A server that
 * stays shares its state with the runtime before, so what is written through the old runtime
 * after the new one is built (before, while or after it is published) is not lost: drains,
 * counters, `active`. New servers start fresh, and a state lives as long as any runtime that
 * has the server. */
#include "log.h"
#include "runtime.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T0 1000000u

static struct sp_config *load(const char *text)
{
    struct sp_config *cfg = NULL;
    struct sp_config_error err;
    int rc = sp_config_load_string("test.yaml", text, strlen(text), &cfg, &err);
    ck_assert_msg(rc == 0, "config: %s", err.text);
    return cfg;
}

static struct sp_runtime *build(const char *text, struct sp_runtime *prev,
                                const struct sp_resolved *res)
{
    struct sp_config *cfg = load(text);
    struct sp_runtime *rt = NULL;
    ck_assert_int_eq(sp_runtime_new(cfg, prev, res, &rt), 0);
    return rt;
}

static struct sp_server *server(struct sp_runtime *rt, const char *address)
{
    struct sp_server *s = sp_runtime_find_server(rt, "pool", address);
    ck_assert_msg(s != NULL, "no server %s", address);
    return s;
}

#define HEAD                                                                                       \
    "listeners:\n"                                                                                 \
    "  main:\n"                                                                                    \
    "    listen: 127.0.0.1:7000\n"                                                                 \
    "    upstream: pool\n"                                                                         \
    "upstreams:\n"                                                                                 \
    "  pool:\n"                                                                                    \
    "    max_fails: 2\n"                                                                           \
    "    servers:\n"

static const char *const conf_ab = HEAD "      - address: 127.0.0.1:9001\n"
                                        "      - address: 127.0.0.1:9002\n";
static const char *const conf_ac = HEAD "      - address: 127.0.0.1:9003\n"
                                        "      - address: 127.0.0.1:9001\n";

/* The reload window: the successor is built, then the old runtime (still the one the workers
 * and the admin endpoint use) drains a server, counts connections on it, fails a connect and
 * holds an open one. The successor sees every one of those writes. */
START_TEST(writes_after_build_reach_successor)
{
    struct sp_runtime *old = build(conf_ab, NULL, NULL);
    struct sp_server *a_old = server(old, "127.0.0.1:9001");
    sp_server_connect_ok(a_old, T0);
    atomic_fetch_add(&a_old->state->active, 1);

    struct sp_runtime *rt = build(conf_ac, old, NULL);
    ck_assert_uint_eq(rt->generation, old->generation + 1);
    struct sp_server *a = server(rt, "127.0.0.1:9001");

    /* Between build and publish (and after): */
    atomic_store(&a_old->state->drained, true);
    for (int i = 0; i < 5; i++)
        sp_server_connect_ok(a_old, T0 + 1);
    sp_server_connect_failed(a_old, T0 + 2);
    atomic_fetch_add(&a_old->state->active, 1);

    ck_assert(atomic_load(&a->state->drained));
    ck_assert(!sp_server_usable(a, T0 + 3));
    ck_assert_uint_eq(atomic_load(&a->state->connections), 6);
    ck_assert_uint_eq(atomic_load(&a->state->connect_failures), 1);
    ck_assert_uint_eq(atomic_load(&a->state->active), 2);

    /* ... and the other way: what the new runtime writes, a connection of the old one sees. */
    atomic_store(&a->state->drained, false);
    ck_assert(sp_server_usable(a_old, T0 + 3));
    atomic_fetch_sub(&a_old->state->active, 2); /* the old connections close */
    ck_assert_uint_eq(atomic_load(&a->state->active), 0);

    /* A new server starts fresh; a removed one is not in the successor. */
    struct sp_server *c = server(rt, "127.0.0.1:9003");
    ck_assert_uint_eq(atomic_load(&c->state->connections), 0);
    ck_assert(atomic_load(&c->state->up));
    ck_assert_ptr_null(sp_runtime_find_server(rt, "pool", "127.0.0.1:9002"));
    sp_runtime_unref(old);
    sp_runtime_unref(rt);
}
END_TEST

/* A chain of reloads: a drain set on the runtime in force survives every later one, and the
 * counters only grow, whichever runtime the writes went through. */
START_TEST(drain_and_counters_survive_a_chain)
{
    struct sp_runtime *rt = build(conf_ab, NULL, NULL);
    atomic_store(&server(rt, "127.0.0.1:9001")->state->drained, true);
    uint64_t last = 0;
    for (int i = 0; i < 10; i++) {
        struct sp_runtime *next = build(i % 2 == 0 ? conf_ac : conf_ab, rt, NULL);
        sp_server_connect_ok(server(rt, "127.0.0.1:9001"), T0);
        sp_runtime_unref(rt);
        rt = next;
        struct sp_server *a = server(rt, "127.0.0.1:9001");
        ck_assert_msg(atomic_load(&a->state->drained), "drain lost at reload %d", i);
        uint64_t n = atomic_load(&a->state->connections);
        ck_assert_uint_eq(n, last + 1);
        last = n;
    }
    sp_runtime_unref(rt);
}
END_TEST

/* Byte counters: one slot per worker (two here), summed by sp_server_bytes_sum, shared with the
 * successor like the rest of the state, so they never go back across a reload. */
START_TEST(server_bytes_per_worker_and_shared)
{
    static const char *const two = "workers: 2\n" HEAD "      - address: 127.0.0.1:9001\n"
                                   "      - address: 127.0.0.1:9002\n";
    struct sp_runtime *old = build(two, NULL, NULL);
    struct sp_server *a_old = server(old, "127.0.0.1:9001");
    ck_assert_uint_eq(a_old->state->nworkers, 2);
    ck_assert_uint_eq((uintptr_t)a_old->state->bytes % 64, 0);
    atomic_store(&a_old->state->bytes[0].v[0], 10);
    atomic_store(&a_old->state->bytes[1].v[0], 5);
    atomic_store(&a_old->state->bytes[1].v[1], 7);
    struct sp_runtime *rt = build(two, old, NULL);
    struct sp_server *a = server(rt, "127.0.0.1:9001");
    atomic_store(&a_old->state->bytes[0].v[1], 100); /* a write through the old runtime */
    ck_assert_uint_eq(sp_server_bytes_sum(a, 0), 15);
    ck_assert_uint_eq(sp_server_bytes_sum(a, 1), 107);
    ck_assert_uint_eq(sp_server_bytes_sum(server(rt, "127.0.0.1:9002"), 0), 0);
    sp_runtime_unref(old);
    sp_runtime_unref(rt);
}
END_TEST

/* Either runtime may be freed first: the shared state goes with the last one (ASan checks). */
START_TEST(state_outlives_either_runtime)
{
    for (int order = 0; order < 2; order++) {
        struct sp_runtime *old = build(conf_ab, NULL, NULL);
        struct sp_runtime *rt = build(conf_ac, old, NULL);
        struct sp_server *a_old = server(old, "127.0.0.1:9001");
        struct sp_server *a = server(rt, "127.0.0.1:9001");
        ck_assert_ptr_eq(a->state, a_old->state);
        sp_runtime_unref(order == 0 ? old : rt);
        struct sp_server *kept = order == 0 ? a : a_old;
        sp_server_connect_ok(kept, T0);
        ck_assert_uint_eq(atomic_load(&kept->state->connections), 1);
        sp_runtime_unref(order == 0 ? rt : old);
    }
}
END_TEST

/* ---- DNS refresh ---- */

static const char *const conf_named = HEAD "      - address: backend.test:80\n";

static void addr_v4(struct sockaddr_storage *ss, const char *ip, int port)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    memset(ss, 0, sizeof(*ss));
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    ck_assert_int_eq(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
}

/* An answer for the config's only (named) server. */
static void answer(struct sp_resolved *res, struct sockaddr_storage *v, size_t n)
{
    static struct sp_addr_list list;
    list.v = v;
    list.n = n;
    res->lists = &list;
    res->n = 1;
}

/* A second address joins the name: the server at the first address keeps its state and goes
 * on counting what the generation before counts after the refresh was built. */
START_TEST(refresh_keeps_unchanged_address)
{
    struct sockaddr_storage one[1], two[2];
    addr_v4(&one[0], "10.0.0.1", 80);
    addr_v4(&two[0], "10.0.0.1", 80);
    addr_v4(&two[1], "10.0.0.2", 80);
    struct sp_resolved res;
    answer(&res, one, 1);
    struct sp_runtime *old = build(conf_named, NULL, &res);
    struct sp_server *a_old = server(old, "10.0.0.1:80");
    sp_server_connect_ok(a_old, T0);
    sp_server_set_up(a_old, false, T0);

    answer(&res, two, 2);
    struct sp_runtime *rt = NULL;
    ck_assert_int_eq(sp_runtime_refresh(old, &res, &rt), 0);
    ck_assert_ptr_eq(rt->cfg, old->cfg);
    sp_server_connect_ok(a_old, T0 + 1);
    atomic_store(&a_old->state->drained, true);

    struct sp_server *a = server(rt, "10.0.0.1:80");
    ck_assert_uint_eq(atomic_load(&a->state->connections), 2);
    ck_assert(!atomic_load(&a->state->up));
    ck_assert(atomic_load(&a->state->drained));
    struct sp_server *b = server(rt, "10.0.0.2:80");
    ck_assert(atomic_load(&b->state->up));
    ck_assert_uint_eq(atomic_load(&b->state->connections), 0);
    sp_runtime_unref(old); /* the config stays with rt */
    ck_assert_uint_eq(atomic_load(&a->state->connections), 2);
    sp_runtime_unref(rt);
}
END_TEST

static Suite *runtime_suite(void)
{
    Suite *s = suite_create("runtime");
    TCase *tc = tcase_create("successor");
    tcase_add_test(tc, writes_after_build_reach_successor);
    tcase_add_test(tc, drain_and_counters_survive_a_chain);
    tcase_add_test(tc, server_bytes_per_worker_and_shared);
    tcase_add_test(tc, state_outlives_either_runtime);
    tcase_add_test(tc, refresh_keeps_unchanged_address);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    sp_log_set_level(SP_LOG_ERROR);
    SRunner *sr = srunner_create(runtime_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
