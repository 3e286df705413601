/* test_cli.c: the command line as a user meets it: -t validation and its FILE:LINE:COL errors,
 * --version, -h, bad options, missing files. Runs $SPLICER_BIN; never binds a test port itself
 * except to prove that -t does not. */
#include "harness.h"

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RUN_MS 10000

static void teardown(void)
{
    sph_cleanup();
}

/* A complete valid config listening on listen_port, proxying to server_port. */
static void write_good(char path[SPH_PATH_MAX], int listen_port, int server_port)
{
    int rc = sph_config_write(path,
                              "workers: 1\n"
                              "log_level: info\n"
                              "listeners:\n"
                              "  web:\n"
                              "    listen: 127.0.0.1:%d\n"
                              "    upstream: pool\n"
                              "upstreams:\n"
                              "  pool:\n"
                              "    servers:\n"
                              "      - address: 127.0.0.1:%d\n",
                              listen_port, server_port);
    ck_assert_int_eq(rc, 0);
}

/* Runs splicer with args; returns the exit code, failing the test on a spawn error/timeout. */
static int run(struct sph_proc *p, const char *const args[])
{
    ck_assert_msg(sph_bin() != NULL, "SPLICER_BIN is not set");
    int rc = sph_run(p, args, RUN_MS);
    ck_assert_msg(rc >= 0, "running %s failed: %s", sph_bin(), strerror(-rc));
    return rc;
}

START_TEST(check_good_config)
{
    char path[SPH_PATH_MAX];
    write_good(path, sph_free_port(AF_INET), sph_free_port(AF_INET));
    struct sph_proc p;
    const char *args[] = {"-t", "-c", path, NULL};
    int code = run(&p, args);
    char *err = sph_proc_stderr(&p);
    ck_assert_msg(code == 0, "-t on a good config: exit %d, stderr:\n%s", code, err);
    free(err);
}
END_TEST

/* -t must validate only: with the listen port already taken by us (no SO_REUSEPORT, so any bind
 * by splicer would fail), it still succeeds, and nothing connects to it either. */
START_TEST(check_binds_nothing)
{
    int port = sph_free_port(AF_INET);
    int lfd = sph_listen(AF_INET, port, 8);
    ck_assert_int_ge(lfd, 0);
    char path[SPH_PATH_MAX];
    write_good(path, port, sph_free_port(AF_INET));
    struct sph_proc p;
    const char *args[] = {"-t", "-c", path, NULL};
    int code = run(&p, args);
    char *err = sph_proc_stderr(&p);
    ck_assert_msg(code == 0, "-t with the listen port in use: exit %d, stderr:\n%s", code, err);
    free(err);
    struct pollfd pfd = {lfd, POLLIN, 0};
    ck_assert_msg(poll(&pfd, 1, 0) == 0, "-t connected to the listen port");
    close(lfd);
    lfd = sph_listen(AF_INET, port, 8);
    ck_assert_msg(lfd >= 0, "port %d not free after -t: %s", port, strerror(-lfd));
    close(lfd);
}
END_TEST

/* Bad configs: the body, where the error is, and a word the message must contain. */
struct bad_case {
    const char *what;
    const char *yaml; /* -t binds nothing, so fixed ports are fine */
    int line;
    int col, alt_col; /* accepted columns (key or value) */
    const char *word;
};

static const struct bad_case bad_cases[] = {
    {"unknown listener key",
     "workers: 1\n"
     "listeners:\n"
     "  web:\n"
     "    listen: 127.0.0.1:8080\n"
     "    upstream: pool\n"
     "    bogus_key: 1\n"
     "upstreams:\n"
     "  pool:\n"
     "    servers:\n"
     "      - address: 127.0.0.1:9\n",
     6, 5, 5, "bogus_key"},
    {"unknown top-level key",
     "workers: 1\n"
     "listeners:\n"
     "  web:\n"
     "    listen: 127.0.0.1:8080\n"
     "    upstream: pool\n"
     "upstreams:\n"
     "  pool:\n"
     "    servers:\n"
     "      - address: 127.0.0.1:9\n"
     "frobnicate: yes\n",
     10, 1, 1, "frobnicate"},
    {"bad duration",
     "workers: 1\n"
     "listeners:\n"
     "  web:\n"
     "    listen: 127.0.0.1:8080\n"
     "    upstream: pool\n"
     "    connect_timeout: 2x\n"
     "upstreams:\n"
     "  pool:\n"
     "    servers:\n"
     "      - address: 127.0.0.1:9\n",
     6, 22, 5, "connect_timeout"},
};

/* Finds the line of err that starts with "path:" and parses LINE, COL and the message. */
static bool parse_error(const char *err, const char *path, long *line, long *col, char *msg,
                        size_t msgcap)
{
    char pattern[256];
    snprintf(pattern, sizeof(pattern), "^%s:([0-9]+):([0-9]+): ([^\n]+)$", path);
    regex_t re;
    ck_assert_int_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NEWLINE), 0);
    regmatch_t m[4];
    bool ok = regexec(&re, err, 4, m, 0) == 0;
    regfree(&re);
    if (!ok)
        return false;
    *line = strtol(err + m[1].rm_so, NULL, 10);
    *col = strtol(err + m[2].rm_so, NULL, 10);
    snprintf(msg, msgcap, "%.*s", (int)(m[3].rm_eo - m[3].rm_so), err + m[3].rm_so);
    return true;
}

START_TEST(check_bad_config)
{
    const struct bad_case *bc = &bad_cases[_i];
    char path[SPH_PATH_MAX];
    ck_assert_int_eq(sph_config_write(path, "%s", bc->yaml), 0);
    struct sph_proc p;
    const char *args[] = {"-t", "-c", path, NULL};
    int code = run(&p, args);
    char *err = sph_proc_stderr(&p);
    ck_assert_msg(code == 1, "%s: exit %d (want 1), stderr:\n%s", bc->what, code, err);
    long line = 0, col = 0;
    char msg[512];
    ck_assert_msg(parse_error(err, path, &line, &col, msg, sizeof(msg)),
                  "%s: no \"%s:LINE:COL: message\" line in stderr:\n%s", bc->what, path, err);
    ck_assert_msg(line == bc->line, "%s: line %ld, want %d (%s)", bc->what, line, bc->line, msg);
    ck_assert_msg(col == bc->col || col == bc->alt_col, "%s: col %ld, want %d or %d (%s)", bc->what,
                  col, bc->col, bc->alt_col, msg);
    ck_assert_msg(strstr(msg, bc->word) != NULL, "%s: message \"%s\" does not name \"%s\"",
                  bc->what, msg, bc->word);
    free(err);
}
END_TEST

/* A missing config file is exit 1 with the file named, for -t and for a real start. */
START_TEST(missing_file)
{
    char path[SPH_PATH_MAX];
    snprintf(path, sizeof(path), "/tmp/splicer-it-missing-%d.yaml", (int)getpid());
    const char *check_args[] = {"-t", "-c", path, NULL};
    const char *run_args[] = {"-c", path, NULL};
    const char *const *variants[] = {check_args, run_args};
    for (int i = 0; i < 2; i++) {
        struct sph_proc p;
        int code = run(&p, variants[i]);
        char *err = sph_proc_stderr(&p);
        ck_assert_msg(code == 1, "%s missing file: exit %d (want 1), stderr:\n%s",
                      i == 0 ? "-t" : "start", code, err);
        ck_assert_msg(strstr(err, path) != NULL, "stderr does not name %s:\n%s", path, err);
        free(err);
    }
}
END_TEST

START_TEST(version)
{
    struct sph_proc p;
    const char *args[] = {"--version", NULL};
    int code = run(&p, args);
    char *out = sph_proc_stdout(&p);
    ck_assert_msg(code == 0, "--version: exit %d", code);
    regex_t re;
    ck_assert_int_eq(regcomp(&re, "^splicer [0-9]+\\.[0-9]+", REG_EXTENDED | REG_NOSUB), 0);
    ck_assert_msg(regexec(&re, out, 0, NULL, 0) == 0, "--version printed \"%s\"", out);
    regfree(&re);
    free(out);
}
END_TEST

START_TEST(help)
{
    struct sph_proc p;
    const char *args[] = {"-h", NULL};
    int code = run(&p, args);
    char *out = sph_proc_stdout(&p);
    ck_assert_msg(code == 0, "-h: exit %d", code);
    ck_assert_msg(strcasestr(out, "usage") != NULL && strstr(out, "-c") != NULL,
                  "-h stdout lacks a usage with -c:\n%s", out);
    free(out);
}
END_TEST

START_TEST(bad_option)
{
    struct sph_proc p;
    const char *args[] = {"--no-such-option", NULL};
    int code = run(&p, args);
    char *err = sph_proc_stderr(&p);
    ck_assert_msg(code == 2, "bad option: exit %d (want 2)", code);
    ck_assert_msg(strcasestr(err, "usage") != NULL, "bad option: no usage on stderr:\n%s", err);
    free(err);
}
END_TEST

START_TEST(missing_c)
{
    const char *none[] = {NULL};
    const char *only_t[] = {"-t", NULL};
    struct sph_proc p;
    int code = run(&p, none);
    ck_assert_msg(code == 2, "no arguments: exit %d (want 2)", code);
    code = run(&p, only_t);
    ck_assert_msg(code == 2, "-t without -c: exit %d (want 2)", code);
}
END_TEST

static Suite *cli_suite(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("cli");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, check_good_config);
    tcase_add_test(tc, check_binds_nothing);
    tcase_add_loop_test(tc, check_bad_config, 0, (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
    tcase_add_test(tc, missing_file);
    tcase_add_test(tc, version);
    tcase_add_test(tc, help);
    tcase_add_test(tc, bad_option);
    tcase_add_test(tc, missing_c);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cli_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
