/* test_strbuf.c: appends, growth across many reallocations, formatted appends longer than the
 * stack buffer, embedded NULs, reset and steal. */
#include "strbuf.h"

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

START_TEST(empty)
{
    struct sp_strbuf sb;
    sp_strbuf_init(&sb);
    ck_assert_ptr_null(sb.data);
    ck_assert_uint_eq(sb.len, 0);
    sp_strbuf_reset(&sb); /* harmless before any allocation */
    ck_assert_int_eq(sp_strbuf_append(&sb, NULL, 0), 0);
    ck_assert_str_eq(sb.data, "");
    sp_strbuf_deinit(&sb);
    ck_assert_ptr_null(sb.data);
    sp_strbuf_deinit(&sb); /* twice is fine */
}
END_TEST

START_TEST(append_and_grow)
{
    struct sp_strbuf sb;
    char want[10001];

    sp_strbuf_init(&sb);
    for (int i = 0; i < 10000; i++) {
        want[i] = (char)('a' + i % 26);
        ck_assert_int_eq(sp_strbuf_append(&sb, &want[i], 1), 0);
    }
    want[10000] = '\0';
    ck_assert_uint_eq(sb.len, 10000);
    ck_assert_uint_ge(sb.cap, 10001);
    ck_assert_str_eq(sb.data, want);
    sp_strbuf_deinit(&sb);
}
END_TEST

START_TEST(appendf)
{
    struct sp_strbuf sb;
    char big[1000];

    sp_strbuf_init(&sb);
    ck_assert_int_eq(sp_strbuf_appendf(&sb, "%s=%d;", "a", 1), 0);
    ck_assert_int_eq(sp_strbuf_puts(&sb, "b"), 0);
    ck_assert_str_eq(sb.data, "a=1;b");
    /* longer than the 256-byte first pass */
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ck_assert_int_eq(sp_strbuf_appendf(&sb, "[%s]%u", big, 7u), 0);
    ck_assert_uint_eq(sb.len, 5 + 1 + 999 + 1 + 1);
    ck_assert_int_eq(sb.data[6], 'x');
    ck_assert_str_eq(sb.data + sb.len - 2, "]7");
    ck_assert_int_eq(sp_strbuf_appendf(&sb, "%s", ""), 0);
    ck_assert_uint_eq(sb.len, 1007);
    sp_strbuf_deinit(&sb);
}
END_TEST

START_TEST(nul_bytes_reset_steal)
{
    struct sp_strbuf sb;
    size_t len = 99;

    sp_strbuf_init(&sb);
    ck_assert_int_eq(sp_strbuf_append(&sb, "a\0b", 3), 0);
    ck_assert_uint_eq(sb.len, 3);
    ck_assert_mem_eq(sb.data, "a\0b\0", 4);
    size_t cap = sb.cap;
    sp_strbuf_reset(&sb);
    ck_assert_uint_eq(sb.len, 0);
    ck_assert_uint_eq(sb.cap, cap); /* storage kept */
    ck_assert_str_eq(sb.data, "");
    ck_assert_int_eq(sp_strbuf_puts(&sb, "kept"), 0);

    char *p = sp_strbuf_steal(&sb, &len);
    ck_assert_str_eq(p, "kept");
    ck_assert_uint_eq(len, 4);
    ck_assert_ptr_null(sb.data);
    free(p);

    p = sp_strbuf_steal(&sb, &len); /* an empty buffer still gives a string */
    ck_assert_str_eq(p, "");
    ck_assert_uint_eq(len, 0);
    free(p);
}
END_TEST

START_TEST(overflow)
{
    struct sp_strbuf sb;
    sp_strbuf_init(&sb);
    ck_assert_int_eq(sp_strbuf_puts(&sb, "x"), 0);
    /* a length that cannot fit is refused before any allocation, and the text survives */
    ck_assert_int_eq(sp_strbuf_append(&sb, "y", SIZE_MAX), -EOVERFLOW);
    ck_assert_str_eq(sb.data, "x");
    sp_strbuf_deinit(&sb);
}
END_TEST

static Suite *strbuf_suite(void)
{
    Suite *s = suite_create("strbuf");
    TCase *tc = tcase_create("strbuf");
    tcase_add_test(tc, empty);
    tcase_add_test(tc, append_and_grow);
    tcase_add_test(tc, appendf);
    tcase_add_test(tc, nul_bytes_reset_steal);
    tcase_add_test(tc, overflow);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(strbuf_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
