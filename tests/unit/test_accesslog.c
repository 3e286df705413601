/* test_accesslog.c: access log lines in both formats, JSON escaping, and the writer thread
 * delivering every line to a file. */
#include "accesslog.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
}
END_TEST

START_TEST(json_escapes_and_null_server)
{
    struct sockaddr_in in = client_addr();
    struct sp_access_entry e = {.listener = "we\"b\\\n",
                                .client = (struct sockaddr *)&in,
                                .upstream = "p",
                                .server = NULL,
                                .end = SP_END_NO_SERVER};
    char buf[512];
    size_t n = sp_access_format(buf, sizeof(buf), &e, SP_LOG_FORMAT_JSON);
    buf[n] = '\0';
    ck_assert_ptr_nonnull(strstr(buf, "\"listener\":\"we\\\"b\\\\\\u000a\""));
    ck_assert_ptr_nonnull(strstr(buf, "\"server\":null"));
    ck_assert_ptr_nonnull(strstr(buf, "\"end\":\"no_server\""));
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

START_TEST(truncation_reports_needed_length)
{
    struct sockaddr_in in = client_addr();
    struct sp_access_entry e = {.listener = "web",
                                .client = (struct sockaddr *)&in,
                                .upstream = "pool",
                                .end = SP_END_CLIENT_FIN};
    char big[512], small[16];
    size_t want = sp_access_format(big, sizeof(big), &e, SP_LOG_FORMAT_JSON);
    ck_assert_uint_eq(sp_access_format(small, sizeof(small), &e, SP_LOG_FORMAT_JSON), want);
}
END_TEST

START_TEST(writer_delivers_every_line)
{
    char path[] = "/tmp/splicer-alog-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    struct sp_access_log_conf conf = {.enabled = true, .path = path};
    struct sp_access_log *al = NULL;
    ck_assert_int_eq(sp_access_log_start(&conf, &al), 0);
    struct sp_access_buf b;
    sp_access_buf_init(&b, al);
    struct sockaddr_in in = client_addr();
    enum { LINES = 2000 }; /* several 16 KiB chunks */
    for (unsigned i = 0; i < LINES; i++) {
        struct sp_access_entry e = {.listener = "web",
                                    .client = (struct sockaddr *)&in,
                                    .upstream = "pool",
                                    .attempts = i,
                                    .end = SP_END_CLIENT_FIN};
        sp_access_buf_add(&b, &e, SP_LOG_FORMAT_TEXT);
    }
    sp_access_buf_deinit(&b);
    sp_access_log_stop(al);
    ck_assert_uint_eq(sp_access_log_dropped(NULL), 0);

    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    unsigned n = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        char want[32];
        snprintf(want, sizeof(want), " attempts=%u ", n);
        ck_assert_msg(strstr(line, want) != NULL, "line %u out of order: %s", n, line);
        n++;
    }
    fclose(f);
    unlink(path);
    ck_assert_uint_eq(n, LINES);
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
    TCase *tc = tcase_create("accesslog");
    tcase_add_test(tc, json_line);
    tcase_add_test(tc, json_escapes_and_null_server);
    tcase_add_test(tc, text_line);
    tcase_add_test(tc, truncation_reports_needed_length);
    tcase_add_test(tc, writer_delivers_every_line);
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
