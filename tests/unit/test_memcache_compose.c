/*
 * Unit tests of the memcache reply composers: each produces memcached's exact bytes.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "petrel/memcache.h"

static struct buf out;

static void
setup(void)
{
    buf_init(&out, 16, 1 << 20);
}

static void
teardown(void)
{
    buf_free(&out);
}

TestSuite(memcache_compose, .init = setup, .fini = teardown);

/* The composed bytes so far equal expect (which may hold NULs: give its length). */
static void
expect_bytes(const char *expect, size_t len)
{
    cr_assert_eq(buf_len(&out), len, "got %zu bytes [%.*s]", buf_len(&out), (int)buf_len(&out),
                 buf_rptr(&out));
    cr_assert_eq(memcmp(buf_rptr(&out), expect, len), 0, "got [%.*s]", (int)buf_len(&out),
                 buf_rptr(&out));
}

#define expect_str(s) expect_bytes(s, strlen(s))

static void
parse(const char *in, struct mc_req *r)
{
    struct mc_parser p;
    struct mc_parser_opts o = {.max_value = 1 << 20};
    mc_parser_init(&p, &o);
    cr_assert_eq(mc_parse(&p, in, strlen(in), r), MC_PARSE_OK, "input %s", in);
}

Test(memcache_compose, value_without_cas)
{
    cr_assert_eq(mc_compose_value(&out, "foo", 3, 5, "bar", 3, 77, false), 0);
    expect_str("VALUE foo 5 3\r\nbar\r\n");
}

Test(memcache_compose, value_with_cas_and_binary_data)
{
    cr_assert_eq(mc_compose_value(&out, "k", 1, UINT32_MAX, "a\0\r\n", 4, UINT64_MAX, true), 0);
    static const char want[] = "VALUE k 4294967295 4 18446744073709551615\r\na\0\r\n\r\n";
    expect_bytes(want, sizeof(want) - 1);
}

Test(memcache_compose, value_header_alone_for_gathered_writes)
{
    cr_assert_eq(mc_compose_value_hdr(&out, "key", 3, 0, 1048576, 12, true), 0);
    expect_str("VALUE key 0 1048576 12\r\n");
}

Test(memcache_compose, value_refuses_an_oversized_key)
{
    char key[300];
    memset(key, 'k', sizeof(key));
    cr_assert_eq(mc_compose_value(&out, key, 251, 0, "", 0, 0, false), -EINVAL);
    cr_assert_eq(buf_len(&out), 0);
}

Test(memcache_compose, fixed_replies_are_exact)
{
    mc_compose_reply(&out, MC_R_STORED);
    mc_compose_reply(&out, MC_R_NOT_STORED);
    mc_compose_reply(&out, MC_R_EXISTS);
    mc_compose_reply(&out, MC_R_NOT_FOUND);
    mc_compose_reply(&out, MC_R_DELETED);
    mc_compose_reply(&out, MC_R_TOUCHED);
    mc_compose_reply(&out, MC_R_OK);
    mc_compose_reply(&out, MC_R_END);
    mc_compose_reply(&out, MC_R_TOO_LARGE);
    mc_compose_reply(&out, MC_R_OUT_OF_MEMORY);
    mc_compose_reply(&out, MC_R_NON_NUMERIC);
    expect_str("STORED\r\nNOT_STORED\r\nEXISTS\r\nNOT_FOUND\r\nDELETED\r\nTOUCHED\r\nOK\r\n"
               "END\r\nSERVER_ERROR object too large for cache\r\n"
               "SERVER_ERROR out of memory storing object\r\n"
               "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
}

Test(memcache_compose, numbers_at_every_digit_boundary)
{
    static const uint64_t v[] = {
        0, 9, 10, 99, 100, 999, 1000, 9999, 10000, 12345678901234567890u, UINT64_MAX};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        mc_compose_u64(&out, v[i]);
    }
    expect_str("0\r\n9\r\n10\r\n99\r\n100\r\n999\r\n1000\r\n9999\r\n10000\r\n"
               "12345678901234567890\r\n18446744073709551615\r\n");
}

Test(memcache_compose, version_and_stats_lines)
{
    mc_compose_version(&out, "0.1.0");
    mc_compose_stat(&out, "evictions", "on");
    mc_compose_stat_u64(&out, "curr_items", 42);
    mc_compose_stat_i64(&out, "delta", -7);
    mc_compose_reply(&out, MC_R_END);
    expect_str("VERSION 0.1.0\r\nSTAT evictions on\r\nSTAT curr_items 42\r\nSTAT delta -7\r\n"
               "END\r\n");
}

Test(memcache_compose, parse_error_is_replied_unless_quiet)
{
    struct mc_err e = {.msg = "CLIENT_ERROR bad data chunk", .len = 27};
    mc_compose_error(&out, &e);
    e.quiet = true;
    mc_compose_error(&out, &e);
    expect_str("CLIENT_ERROR bad data chunk\r\n");
}

Test(memcache_compose, mg_hit_echoes_flags_in_request_order)
{
    struct mc_req r;
    parse("mg a s v k Oxx f t c h l\r\n", &r);
    struct mc_meta_item it = {.value = "b", .vlen = 1, .size = 1, .cas = 23, .ttl = -1};
    cr_assert_eq(mc_compose_meta(&out, &r, MC_META_HD, &it), 0);
    expect_str("VA 1 s1 ka Oxx f0 t-1 c23 h0 l0\r\nb\r\n");
}

Test(memcache_compose, mg_hit_without_v_is_hd)
{
    struct mc_req r;
    parse("mg a t f\r\n", &r);
    struct mc_meta_item it = {.ttl = 30, .flags = 9};
    mc_compose_meta(&out, &r, MC_META_HD, &it);
    expect_str("HD t30 f9\r\n");
}

Test(memcache_compose, mg_miss_echoes_only_key_and_opaque)
{
    struct mc_req r;
    parse("mg a k Oabc s v f t c\r\n", &r);
    mc_compose_meta(&out, &r, MC_META_EN, NULL);
    expect_str("EN ka Oabc\r\n");
}

Test(memcache_compose, mg_appends_recache_state_flags)
{
    struct mc_req r;
    parse("mg a c N30\r\n", &r);
    struct mc_meta_item it = {.cas = 5, .won = true, .stale = true, .win_sent = true};
    mc_compose_meta(&out, &r, MC_META_HD, &it);
    expect_str("HD c5 Z X W\r\n");
}

Test(memcache_compose, q_suppresses_mg_miss_but_not_hit)
{
    struct mc_req r;
    parse("mg a v q\r\n", &r);
    cr_assert(mc_meta_quiet(&r, MC_META_EN));
    mc_compose_meta(&out, &r, MC_META_EN, NULL);
    cr_assert_eq(buf_len(&out), 0);
    struct mc_meta_item it = {.value = "x", .vlen = 1};
    mc_compose_meta(&out, &r, MC_META_VA, &it);
    expect_str("VA 1\r\nx\r\n");
}

Test(memcache_compose, q_suppresses_md_success_but_not_miss)
{
    struct mc_req r;
    parse("md a q k\r\n", &r);
    mc_compose_meta(&out, &r, MC_META_HD, NULL);
    cr_assert_eq(buf_len(&out), 0);
    mc_compose_meta(&out, &r, MC_META_NF, NULL);
    expect_str("NF ka\r\n");
}

Test(memcache_compose, ms_echoes_base64_key_with_b)
{
    struct mc_req r;
    parse("ms YQ== 1 c k Oab b\r\nb\r\n", &r);
    struct mc_meta_item it = {.cas = 26, .size = 1};
    mc_compose_meta(&out, &r, MC_META_HD, &it);
    expect_str("HD c26 kYQ== b Oab\r\n");
}

Test(memcache_compose, ms_size_flag_reports_the_stored_size)
{
    struct mc_req r;
    parse("ms a 1 s MA\r\nb\r\n", &r);
    struct mc_meta_item it = {.size = 7};
    mc_compose_meta(&out, &r, MC_META_HD, &it);
    mc_compose_meta(&out, &r, MC_META_NS, NULL);
    expect_str("HD s7\r\nNS\r\n");
}

Test(memcache_compose, ma_with_v_returns_the_number_as_value)
{
    struct mc_req r;
    parse("ma n v t c Oq\r\n", &r);
    struct mc_meta_item it = {.value = "15", .vlen = 2, .cas = 5, .ttl = -1};
    mc_compose_meta(&out, &r, MC_META_VA, &it);
    expect_str("VA 2 t-1 c5 Oq\r\n15\r\n");
}

Test(memcache_compose, me_line_has_memcacheds_fields)
{
    struct mc_req r;
    parse("me a\r\n", &r);
    mc_compose_me(&out, &r, -1, 4, 30, false, 1, 61);
    expect_str("ME a exp=-1 la=4 cas=30 fetch=no cls=1 size=61\r\n");
}

Test(memcache_compose, full_buffer_reports_enobufs_and_writes_nothing)
{
    struct buf small;
    buf_init(&small, 8, 8);
    cr_assert_eq(mc_compose_value(&small, "k", 1, 0, "0123456789", 10, 0, false), -ENOBUFS);
    cr_assert_eq(buf_len(&small), 0);
    buf_free(&small);
}
