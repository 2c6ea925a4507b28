/*
 * Unit tests of mc_detail, the per-prefix statistics table behind "stats detail".
 */
#include "petrel/mc_detail.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static struct mc_detail *d;
static struct buf out;

static void
setup(void)
{
    cr_assert_eq(mc_detail_create(&d, 8), 0);
    buf_init(&out, 256, 1 << 20);
}

static void
teardown(void)
{
    mc_detail_destroy(&d);
    buf_free(&out);
}

static void
count(const char *key, enum mc_detail_kind kind, bool hit)
{
    mc_detail_count(d, key, strlen(key), ':', kind, hit);
}

/* The dump of table t, NUL-terminated. */
static const char *
dump(const struct mc_detail *t)
{
    buf_consume(&out, buf_len(&out));
    cr_assert_eq(mc_detail_dump(t, &out), 0);
    cr_assert_eq(buf_append(&out, "", 1), 0);
    return buf_rptr(&out);
}

TestSuite(mc_detail, .init = setup, .fini = teardown);

Test(mc_detail, prefix_is_what_comes_before_the_first_delimiter)
{
    cr_assert_eq(mc_detail_prefix_len("a:b:c", 5, ':'), 1);
    cr_assert_eq(mc_detail_prefix_len(":b", 2, ':'), 0);
    cr_assert_eq(mc_detail_prefix_len("abc", 3, ':'), -1);
    cr_assert_eq(mc_detail_prefix_len("a/b", 3, '/'), 1);
}

Test(mc_detail, empty_table_dumps_only_end)
{
    cr_assert_str_eq(dump(d), "END\r\n");
}

/* A key that starts with the delimiter has the empty prefix, as in memcached; it may be the
 * first one counted, before the table holds any prefix byte. */
Test(mc_detail, empty_prefix_is_counted_even_first)
{
    count(":x", MC_DETAIL_GET, false);
    count(":y", MC_DETAIL_SET, false);
    count("a:1", MC_DETAIL_DEL, false);
    cr_assert_str_eq(dump(d), "PREFIX  get 1 hit 0 set 1 del 0\r\n"
                              "PREFIX a get 0 hit 0 set 0 del 1\r\n"
                              "END\r\n");
}

Test(mc_detail, counts_gets_hits_sets_and_deletes_per_prefix_in_first_seen_order)
{
    count("user:1", MC_DETAIL_SET, false);
    count("user:2", MC_DETAIL_GET, true);
    count("user:3", MC_DETAIL_GET, false);
    count("sess:9", MC_DETAIL_DEL, false);
    count("user:1", MC_DETAIL_DEL, false);
    cr_assert_str_eq(dump(d), "PREFIX user get 2 hit 1 set 1 del 1\r\n"
                              "PREFIX sess get 0 hit 0 set 0 del 1\r\n"
                              "END\r\n");
}

Test(mc_detail, key_without_the_delimiter_is_not_counted)
{
    count("plain", MC_DETAIL_SET, false);
    cr_assert_eq(mc_detail_size(d), 0);
    cr_assert_str_eq(dump(d), "END\r\n");
}

Test(mc_detail, prefixes_that_share_a_beginning_are_distinct)
{
    count("ab:1", MC_DETAIL_SET, false);
    count("a:1", MC_DETAIL_SET, false);
    count("abc:1", MC_DETAIL_SET, false);
    cr_assert_eq(mc_detail_size(d), 3);
}

Test(mc_detail, new_prefixes_past_the_cap_are_refused_old_ones_go_on_counting)
{
    char key[16];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "p%d:x", i);
        count(key, MC_DETAIL_SET, false);
    }
    cr_assert_eq(mc_detail_size(d), 8);
    cr_assert_eq(mc_detail_refused(d), 2);
    count("p0:y", MC_DETAIL_SET, false);
    cr_assert(strstr(dump(d), "PREFIX p0 get 0 hit 0 set 2 del 0\r\n") != NULL);
    cr_assert_null(strstr(dump(d), "PREFIX p9 "));
}

Test(mc_detail, clear_forgets_every_prefix)
{
    count("a:1", MC_DETAIL_SET, false);
    mc_detail_clear(d);
    cr_assert_eq(mc_detail_size(d), 0);
    cr_assert_str_eq(dump(d), "END\r\n");
    count("b:1", MC_DETAIL_GET, true);
    cr_assert_str_eq(dump(d), "PREFIX b get 1 hit 1 set 0 del 0\r\nEND\r\n");
}

Test(mc_detail, many_prefixes_survive_the_index_growing)
{
    struct mc_detail *big;
    cr_assert_eq(mc_detail_create(&big, 5000), 0);
    char key[32];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 5000; i++) {
            int n = snprintf(key, sizeof(key), "prefix%d:k", i);
            mc_detail_count(big, key, (size_t)n, ':', MC_DETAIL_GET, round == 1);
        }
    }
    cr_assert_eq(mc_detail_size(big), 5000);
    const char *text = dump(big);
    cr_assert(strstr(text, "PREFIX prefix0 get 2 hit 1 set 0 del 0\r\n") != NULL);
    cr_assert(strstr(text, "PREFIX prefix4999 get 2 hit 1 set 0 del 0\r\n") != NULL);
    mc_detail_destroy(&big);
}

Test(mc_detail, export_then_import_sums_the_tables_of_two_workers)
{
    struct mc_detail *other, *merged;
    cr_assert_eq(mc_detail_create(&other, 8), 0);
    cr_assert_eq(mc_detail_create(&merged, 16), 0);
    count("a:1", MC_DETAIL_GET, true);
    count("b:1", MC_DETAIL_SET, false);
    mc_detail_count(other, "b:2", 3, ':', MC_DETAIL_SET, false);
    mc_detail_count(other, "c:2", 3, ':', MC_DETAIL_DEL, false);
    struct buf rec;
    buf_init(&rec, 64, 1 << 20);
    cr_assert_eq(mc_detail_export(d, &rec), 0);
    cr_assert_eq(mc_detail_export(other, &rec), 0);
    cr_assert_eq(mc_detail_import(merged, buf_rptr(&rec), buf_len(&rec)), 0);
    cr_assert_str_eq(dump(merged), "PREFIX a get 1 hit 1 set 0 del 0\r\n"
                                   "PREFIX b get 0 hit 0 set 2 del 0\r\n"
                                   "PREFIX c get 0 hit 0 set 0 del 1\r\n"
                                   "END\r\n");
    buf_free(&rec);
    mc_detail_destroy(&other);
    mc_detail_destroy(&merged);
}

Test(mc_detail, import_of_a_truncated_record_is_einval)
{
    count("a:1", MC_DETAIL_GET, true);
    struct buf rec;
    buf_init(&rec, 64, 1 << 20);
    cr_assert_eq(mc_detail_export(d, &rec), 0);
    struct mc_detail *merged;
    cr_assert_eq(mc_detail_create(&merged, 8), 0);
    cr_assert_eq(mc_detail_import(merged, buf_rptr(&rec), buf_len(&rec) - 1), -EINVAL);
    buf_free(&rec);
    mc_detail_destroy(&merged);
}
