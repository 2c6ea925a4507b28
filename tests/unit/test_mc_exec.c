/*
 * Unit tests of mc_exec (include/petrel/mc_exec.h): request text goes through the real parser,
 * runs on a real Segcache instance with a test clock, and the reply bytes must be memcached's.
 */
#include "petrel/mc_dump.h"
#include "petrel/mc_exec.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T0 1700000000 /* a plausible unix time for the test clock */

static int64_t clock_now;
static struct mc_shard sh;
static struct buf out;
static char reply[1 << 16];

static int64_t
test_clock(void *ctx)
{
    (void)ctx;
    return clock_now;
}

/* A fresh shard: mem bytes of 64 KiB segments, items up to 16 KiB. */
static void
make_shard(size_t mem, enum seg_evict_policy evict)
{
    seg_destroy(&sh.seg);
    memset(&sh.stats, 0, sizeof(sh.stats));
    struct seg_options o;
    seg_options_init(&o);
    o.mem_bytes = mem;
    o.seg_size = 64 << 10;
    o.item_max = 16 << 10;
    o.evict = evict;
    o.clock = test_clock;
    cr_assert_eq(seg_create(&sh.seg, &o), 0);
}

static void
setup(void)
{
    clock_now = T0;
    make_shard(1 << 20, SEG_EVICT_MERGE);
    buf_init(&out, 256, 1 << 22);
}

static void
teardown(void)
{
    seg_destroy(&sh.seg);
    buf_free(&out);
}

TestSuite(mc_exec, .init = setup, .fini = teardown);

static bool
is_get_family(enum mc_cmd cmd)
{
    return cmd == MC_CMD_GET || cmd == MC_CMD_GETS || cmd == MC_CMD_GAT || cmd == MC_CMD_GATS;
}

/* One parsed request as the server runs it: per key for the get family, then END. */
static void
exec_one(const struct mc_req *req)
{
    if (!is_get_family(req->cmd)) {
        cr_assert_eq(mc_exec(&sh, req, mc_key_hash(req->key, req->klen), &out), 0);
        return;
    }
    struct mc_key_iter it;
    const char *key;
    size_t klen;
    mc_args_begin(req, &it);
    while (mc_args_next(&it, &key, &klen)) {
        cr_assert_eq(mc_exec_get_key(&sh, req, key, klen, mc_key_hash(key, klen), &out), 0);
    }
    cr_assert_eq(mc_compose_reply(&out, MC_R_END), 0);
}

/* Parse and execute every request of text; returns the replies as a string. */
static const char *
run_n(const char *text, size_t n)
{
    struct mc_parser p;
    struct mc_parser_opts o = {.max_value = 1 << 20};
    mc_parser_init(&p, &o);
    buf_consume(&out, buf_len(&out));
    size_t off = 0;
    while (off < n) {
        struct mc_req req;
        enum mc_parse_rc rc = mc_parse(&p, text + off, n - off, &req);
        cr_assert(rc == MC_PARSE_OK || rc == MC_PARSE_ERROR, "parse of [%s] gave %d", text + off,
                  rc);
        if (rc == MC_PARSE_ERROR) {
            cr_assert_eq(mc_compose_error(&out, &req.err), 0);
        } else {
            exec_one(&req);
        }
        off += req.consumed;
    }
    size_t len = buf_len(&out);
    cr_assert_lt(len, sizeof(reply));
    memcpy(reply, buf_rptr(&out), len);
    reply[len] = '\0';
    return reply;
}

static const char *
run(const char *text)
{
    return run_n(text, strlen(text));
}

#define expect(text, want) cr_assert_str_eq(run(text), want, "request [%s]", text)

/* Store without checking the reply (test preconditions). */
static void
put(const char *key, const char *val, uint32_t flags, int64_t exptime)
{
    char line[512];
    snprintf(line, sizeof(line), "set %s %u %lld %zu\r\n%s\r\n", key, flags, (long long)exptime,
             strlen(val), val);
    cr_assert_str_eq(run(line), "STORED\r\n");
}

static uint64_t
cas_of(const char *key)
{
    struct seg_view v;
    cr_assert_eq(seg_peek(sh.seg, key, strlen(key), seg_hash(key, strlen(key)), &v), SEG_OK);
    return v.cas;
}

static bool
present(const char *key)
{
    struct seg_view v;
    return seg_get(sh.seg, key, strlen(key), seg_hash(key, strlen(key)), &v) == SEG_OK;
}

/* ---- text storage commands ---- */

Test(mc_exec, set_then_get_returns_value_and_flags)
{
    expect("set k 5 0 2\r\nhi\r\nget k\r\n", "STORED\r\nVALUE k 5 2\r\nhi\r\nEND\r\n");
}

Test(mc_exec, gets_shows_the_items_cas)
{
    put("k", "hi", 0, 0);
    char want[128];
    snprintf(want, sizeof(want), "VALUE k 0 2 %llu\r\nhi\r\nEND\r\n",
             (unsigned long long)cas_of("k"));
    expect("gets k\r\n", want);
}

Test(mc_exec, get_of_several_keys_returns_hits_in_order_and_skips_misses)
{
    put("a", "1", 0, 0);
    put("c", "3", 0, 0);
    expect("get c b a\r\n", "VALUE c 0 1\r\n3\r\nVALUE a 0 1\r\n1\r\nEND\r\n");
}

Test(mc_exec, add_of_present_key_is_not_stored)
{
    put("k", "old", 0, 0);
    expect("add k 0 0 3\r\nnew\r\nget k\r\n", "NOT_STORED\r\nVALUE k 0 3\r\nold\r\nEND\r\n");
}

Test(mc_exec, add_of_missing_key_is_stored)
{
    expect("add k 0 0 3\r\nnew\r\n", "STORED\r\n");
}

Test(mc_exec, replace_of_missing_key_is_not_stored)
{
    expect("replace k 0 0 3\r\nnew\r\nget k\r\n", "NOT_STORED\r\nEND\r\n");
}

Test(mc_exec, replace_of_present_key_is_stored)
{
    put("k", "old", 0, 0);
    expect("replace k 7 0 3\r\nnew\r\nget k\r\n", "STORED\r\nVALUE k 7 3\r\nnew\r\nEND\r\n");
}

Test(mc_exec, append_adds_after_the_value_and_keeps_flags)
{
    put("k", "ab", 9, 0);
    expect("append k 1 0 2\r\ncd\r\nget k\r\n", "STORED\r\nVALUE k 9 4\r\nabcd\r\nEND\r\n");
}

Test(mc_exec, prepend_adds_before_the_value)
{
    put("k", "ab", 0, 0);
    expect("prepend k 0 0 2\r\ncd\r\nget k\r\n", "STORED\r\nVALUE k 0 4\r\ncdab\r\nEND\r\n");
}

Test(mc_exec, append_to_missing_key_is_not_stored)
{
    expect("append k 0 0 2\r\ncd\r\n", "NOT_STORED\r\n");
}

Test(mc_exec, cas_with_current_unique_is_stored)
{
    put("k", "old", 0, 0);
    char line[128];
    snprintf(line, sizeof(line), "cas k 0 0 3 %llu\r\nnew\r\nget k\r\n",
             (unsigned long long)cas_of("k"));
    expect(line, "STORED\r\nVALUE k 0 3\r\nnew\r\nEND\r\n");
}

Test(mc_exec, cas_with_stale_unique_exists)
{
    put("k", "old", 0, 0);
    char line[128];
    snprintf(line, sizeof(line), "cas k 0 0 3 %llu\r\nnew\r\n",
             (unsigned long long)cas_of("k") + 1);
    expect(line, "EXISTS\r\n");
}

Test(mc_exec, cas_on_missing_key_is_not_found)
{
    expect("cas k 0 0 3 1\r\nnew\r\n", "NOT_FOUND\r\n");
}

Test(mc_exec, noreply_silences_a_store)
{
    expect("set k 0 0 1 noreply\r\nx\r\nget k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\n");
}

Test(mc_exec, noreply_silences_a_store_error_too)
{
    put("k", "old", 0, 0);
    expect("add k 0 0 1 noreply\r\nx\r\n", "");
}

Test(mc_exec, value_larger_than_the_engine_item_limit_is_too_large)
{
    static char req[32 << 10];
    int n = snprintf(req, sizeof(req), "set k 0 0 20000\r\n");
    memset(req + n, 'x', 20000);
    memcpy(req + n + 20000, "\r\n", 2);
    cr_assert_str_eq(run_n(req, (size_t)n + 20002), "SERVER_ERROR object too large for cache\r\n");
}

Test(mc_exec, failed_set_removes_the_old_value)
{
    put("k", "old", 0, 0);
    static char req[32 << 10];
    int n = snprintf(req, sizeof(req), "set k 0 0 20000\r\n");
    memset(req + n, 'x', 20000);
    memcpy(req + n + 20000, "\r\n", 2);
    run_n(req, (size_t)n + 20002);
    cr_assert(!present("k"));
}

Test(mc_exec, append_beyond_the_item_limit_is_not_stored_and_keeps_the_value)
{
    static char req[32 << 10];
    int n = snprintf(req, sizeof(req), "set k 0 0 10000\r\n");
    memset(req + n, 'x', 10000);
    memcpy(req + n + 10000, "\r\n", 2);
    cr_assert_str_eq(run_n(req, (size_t)n + 10002), "STORED\r\n");
    n = snprintf(req, sizeof(req), "append k 0 0 10000\r\n");
    memset(req + n, 'y', 10000);
    memcpy(req + n + 10000, "\r\n", 2);
    cr_assert_str_eq(run_n(req, (size_t)n + 10002), "NOT_STORED\r\n");
    cr_assert_str_eq(run("mg k s\r\n"), "HD s10000\r\n");
}

Test(mc_exec, store_without_memory_is_out_of_memory)
{
    make_shard(128 << 10, SEG_EVICT_NONE); /* two segments, never evicted */
    static char req[16 << 10];
    const char *r = "";
    for (int i = 0; i < 64; i++) {
        int n = snprintf(req, sizeof(req), "set k%d 0 0 8000\r\n", i);
        memset(req + n, 'x', 8000);
        memcpy(req + n + 8000, "\r\n", 2);
        r = run_n(req, (size_t)n + 8002);
        if (strcmp(r, "STORED\r\n") != 0) {
            break;
        }
    }
    cr_assert_str_eq(r, "SERVER_ERROR out of memory storing object\r\n");
}

Test(mc_exec, negative_exptime_stores_an_invisible_item)
{
    expect("set k 0 -1 1\r\nx\r\nget k\r\n", "STORED\r\nEND\r\n");
}

Test(mc_exec, item_expires_when_its_ttl_has_passed)
{
    put("k", "x", 0, 10);
    clock_now += 9;
    expect("get k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\n");
    clock_now += 1;
    expect("get k\r\n", "END\r\n");
}

Test(mc_exec, store_commands_count_cmd_set_and_cas_outcomes)
{
    put("k", "x", 0, 0);
    char line[128];
    snprintf(line, sizeof(line), "add k 0 0 1\r\ny\r\ncas k 0 0 1 %llu\r\ny\r\n",
             (unsigned long long)cas_of("k") + 1);
    run(line);
    run("cas nope 0 0 1 1\r\ny\r\n");
    snprintf(line, sizeof(line), "cas k 0 0 1 %llu\r\nz\r\n", (unsigned long long)cas_of("k"));
    run(line);
    cr_assert_eq(sh.stats.cmd_set, 5);
    cr_assert_eq(sh.stats.cas_badval, 1);
    cr_assert_eq(sh.stats.cas_misses, 1);
    cr_assert_eq(sh.stats.cas_hits, 1);
}

/* ---- incr, decr ---- */

Test(mc_exec, incr_returns_the_new_value)
{
    put("n", "41", 0, 0);
    expect("incr n 1\r\nget n\r\n", "42\r\nVALUE n 0 2\r\n42\r\nEND\r\n");
}

Test(mc_exec, decr_stops_at_zero)
{
    put("n", "5", 0, 0);
    expect("decr n 9\r\n", "0\r\n");
}

Test(mc_exec, incr_wraps_around_at_64_bits)
{
    put("n", "18446744073709551615", 0, 0);
    expect("incr n 2\r\n", "1\r\n");
}

Test(mc_exec, incr_of_missing_key_is_not_found)
{
    expect("incr n 1\r\n", "NOT_FOUND\r\n");
}

Test(mc_exec, incr_of_text_is_a_client_error)
{
    put("n", "abc", 0, 0);
    expect("incr n 1\r\n", "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
}

Test(mc_exec, incr_noreply_silences_even_the_error)
{
    put("n", "abc", 0, 0);
    expect("incr n 1 noreply\r\n", "");
}

Test(mc_exec, incr_and_decr_count_hits_and_misses)
{
    put("n", "5", 0, 0);
    run("incr n 1\r\nincr x 1\r\ndecr n 1\r\ndecr n 1\r\ndecr x 1\r\n");
    cr_assert_eq(sh.stats.incr_hits, 1);
    cr_assert_eq(sh.stats.incr_misses, 1);
    cr_assert_eq(sh.stats.decr_hits, 2);
    cr_assert_eq(sh.stats.decr_misses, 1);
}

/* ---- delete, touch ---- */

Test(mc_exec, delete_of_present_key_is_deleted)
{
    put("k", "x", 0, 0);
    expect("delete k\r\nget k\r\n", "DELETED\r\nEND\r\n");
}

Test(mc_exec, delete_of_missing_key_is_not_found)
{
    expect("delete k\r\n", "NOT_FOUND\r\n");
}

Test(mc_exec, delete_noreply_is_silent)
{
    put("k", "x", 0, 0);
    expect("delete k noreply\r\n", "");
    cr_assert(!present("k"));
}

Test(mc_exec, delete_counts_hits_and_misses)
{
    put("k", "x", 0, 0);
    run("delete k\r\ndelete k\r\n");
    cr_assert_eq(sh.stats.delete_hits, 1);
    cr_assert_eq(sh.stats.delete_misses, 1);
}

Test(mc_exec, touch_gives_a_new_ttl)
{
    put("k", "x", 0, 0);
    expect("touch k 10\r\n", "TOUCHED\r\n");
    clock_now += 10;
    expect("get k\r\n", "END\r\n");
}

Test(mc_exec, touch_of_missing_key_is_not_found)
{
    expect("touch k 10\r\n", "NOT_FOUND\r\n");
}

Test(mc_exec, touch_counts_cmd_touch_hits_and_misses)
{
    put("k", "x", 0, 0);
    run("touch k 10\r\ntouch x 10\r\n");
    cr_assert_eq(sh.stats.cmd_touch, 2);
    cr_assert_eq(sh.stats.touch_hits, 1);
    cr_assert_eq(sh.stats.touch_misses, 1);
}

/* ---- get, gets, gat, gats ---- */

Test(mc_exec, get_of_missing_key_is_only_end)
{
    expect("get k\r\n", "END\r\n");
}

Test(mc_exec, get_counts_cmd_get_hits_and_misses)
{
    put("k", "x", 0, 0);
    run("get k x\r\ngets k\r\n");
    cr_assert_eq(sh.stats.cmd_get, 3);
    cr_assert_eq(sh.stats.get_hits, 2);
    cr_assert_eq(sh.stats.get_misses, 1);
    cr_assert_eq(sh.stats.cmd_touch, 0);
}

Test(mc_exec, get_of_expired_item_counts_get_expired)
{
    put("k", "x", 0, 5);
    clock_now += 6;
    run("get k\r\n");
    cr_assert_eq(sh.stats.get_expired, 1);
}

Test(mc_exec, gat_returns_the_value_and_sets_the_ttl)
{
    put("k", "x", 3, 0);
    expect("gat 10 k\r\n", "VALUE k 3 1\r\nx\r\nEND\r\n");
    expect("mg k t\r\n", "HD t10\r\n");
}

Test(mc_exec, gats_returns_the_cas)
{
    put("k", "x", 0, 0);
    uint64_t cas = cas_of("k");
    char want[128];
    snprintf(want, sizeof(want), "VALUE k 0 1 %llu\r\nx\r\nEND\r\n", (unsigned long long)cas);
    expect("gats 100 k\r\n", want);
}

Test(mc_exec, gat_keeps_the_cas)
{
    put("k", "x", 0, 0);
    uint64_t cas = cas_of("k");
    run("gat 100 k\r\n");
    cr_assert_eq(cas_of("k"), cas);
}

Test(mc_exec, gat_with_negative_exptime_returns_the_value_once)
{
    put("k", "x", 0, 0);
    expect("gat -1 k\r\nget k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\nEND\r\n");
}

Test(mc_exec, gat_counts_touches_not_gets)
{
    put("k", "x", 0, 0);
    run("gat 10 k x\r\n");
    cr_assert_eq(sh.stats.cmd_touch, 2);
    cr_assert_eq(sh.stats.touch_hits, 1);
    cr_assert_eq(sh.stats.touch_misses, 1);
    cr_assert_eq(sh.stats.cmd_get, 0);
    cr_assert_eq(sh.stats.get_hits, 0);
}

/* ---- mg ---- */

Test(mc_exec, mg_hit_without_flags_is_hd)
{
    put("k", "x", 0, 0);
    expect("mg k\r\n", "HD\r\n");
}

Test(mc_exec, mg_miss_is_en)
{
    expect("mg k v\r\n", "EN\r\n");
}

Test(mc_exec, mg_q_hides_en)
{
    expect("mg k q v\r\nmn\r\n", "MN\r\n");
}

Test(mc_exec, mg_q_keeps_a_hit)
{
    put("k", "x", 0, 0);
    expect("mg k q k\r\n", "HD kk\r\n");
}

Test(mc_exec, mg_v_returns_the_value)
{
    put("k", "hello", 0, 0);
    expect("mg k v\r\n", "VA 5\r\nhello\r\n");
}

Test(mc_exec, mg_returns_flags_in_request_order)
{
    put("k", "hi", 5, 0);
    char want[128];
    snprintf(want, sizeof(want), "VA 2 c%llu f5 s2 t-1 kk Oxx\r\nhi\r\n",
             (unsigned long long)cas_of("k"));
    expect("mg k v c f s t k Oxx\r\n", want);
}

Test(mc_exec, mg_t_shows_seconds_left)
{
    put("k", "x", 0, 30);
    clock_now += 12;
    expect("mg k t\r\n", "HD t18\r\n");
}

Test(mc_exec, mg_miss_echoes_key_and_opaque)
{
    expect("mg k k Oab v\r\n", "EN kk Oab\r\n");
}

Test(mc_exec, mg_T_sets_a_new_ttl)
{
    put("k", "x", 0, 0);
    expect("mg k T20 t v\r\n", "VA 1 t20\r\nx\r\n");
    clock_now += 20;
    expect("mg k\r\n", "EN\r\n");
}

Test(mc_exec, mg_t_before_T_shows_the_old_ttl)
{
    put("k", "x", 0, 0);
    expect("mg k t T20\r\n", "HD t-1\r\n");
    expect("mg k t\r\n", "HD t20\r\n");
}

Test(mc_exec, mg_T_counts_a_touch)
{
    put("k", "x", 0, 0);
    run("mg k T20\r\nmg x T20\r\n");
    cr_assert_eq(sh.stats.cmd_touch, 1);
    cr_assert_eq(sh.stats.touch_hits, 1);
    cr_assert_eq(sh.stats.cmd_get, 1); /* memcached counts a miss of mg T as a get miss */
    cr_assert_eq(sh.stats.get_misses, 1);
    cr_assert_eq(sh.stats.get_hits, 0);
}

Test(mc_exec, mg_counts_gets)
{
    put("k", "x", 0, 0);
    run("mg k v\r\nmg x v\r\n");
    cr_assert_eq(sh.stats.cmd_get, 2);
    cr_assert_eq(sh.stats.get_hits, 1);
    cr_assert_eq(sh.stats.get_misses, 1);
}

Test(mc_exec, mg_base64_key_is_decoded_and_echoed_as_sent)
{
    put("a", "x", 0, 0);
    expect("mg YQ== b k v\r\n", "VA 1 kYQ== b\r\nx\r\n");
}

Test(mc_exec, mg_u_is_accepted)
{
    put("k", "x", 0, 0);
    expect("mg k u v\r\n", "VA 1\r\nx\r\n");
}

Test(mc_exec, mg_h_tells_whether_the_item_was_read_before)
{
    put("k", "x", 0, 0);
    expect("mg k h\r\n", "HD h0\r\n");
    expect("mg k h\r\n", "HD h1\r\n");
}

Test(mc_exec, mg_u_does_not_mark_the_item_read)
{
    put("k", "x", 0, 0);
    expect("mg k u h\r\n", "HD h0\r\n");
    expect("mg k h\r\n", "HD h0\r\n");
    expect("mg k u h\r\n", "HD h1\r\n");
}

Test(mc_exec, mg_l_counts_seconds_since_the_item_was_written_not_read)
{
    put("k", "x", 0, 0);
    clock_now += 3;
    expect("mg k l\r\n", "HD l3\r\n");
    clock_now += 2;
    expect("mg k l v\r\n", "VA 1 l5\r\nx\r\n");
    put("k", "y", 0, 0); /* a new version: its segment is still the one opened at T0 */
    expect("mg k l\r\n", "HD l5\r\n");
}

Test(mc_exec, mg_N_creates_an_empty_item_and_wins_the_token)
{
    expect("mg k N30 s t v\r\n", "VA 0 s0 t30 W\r\n\r\n");
    expect("mg k N30 s t v\r\n", "VA 0 s0 t30 Z\r\n\r\n");
    expect("mg k h f\r\n", "HD h1 f0 Z\r\n");
}

Test(mc_exec, mg_N_reports_h0_on_the_item_it_created)
{
    expect("mg k N30 h\r\n", "HD h0 W\r\n");
}

Test(mc_exec, mg_N_answers_the_win_even_with_q)
{
    expect("mg k N30 q k\r\n", "HD kk W\r\n");
    expect("mg k q k\r\n", "HD kk Z\r\n");
}

Test(mc_exec, mg_N_on_a_hit_changes_nothing)
{
    put("k", "x", 0, 0);
    expect("mg k N30 t v\r\n", "VA 1 t-1\r\nx\r\n");
}

Test(mc_exec, mg_R_wins_once_when_the_ttl_left_is_below_it)
{
    put("k", "x", 0, 100);
    expect("mg k R30 t\r\n", "HD t100\r\n");
    expect("mg k R200 t\r\n", "HD t100 W\r\n");
    expect("mg k R200 t\r\n", "HD t100 Z\r\n");
    expect("mg k v\r\n", "VA 1 Z\r\nx\r\n");
}

Test(mc_exec, mg_R_never_wins_on_an_item_without_ttl)
{
    put("k", "x", 0, 0);
    expect("mg k R30\r\n", "HD\r\n");
}

Test(mc_exec, mg_R_sees_the_ttl_a_T_before_it_set)
{
    put("a", "x", 0, 100);
    put("b", "x", 0, 100);
    expect("mg a T20 R30 t\r\n", "HD t20 W\r\n");
    expect("mg b R30 T20 t\r\n", "HD t20\r\n");
}

Test(mc_exec, a_new_version_clears_the_token)
{
    put("k", "x", 0, 100);
    expect("mg k R200\r\n", "HD W\r\n");
    put("k", "y", 0, 100);
    expect("mg k R200\r\n", "HD W\r\n");
}

Test(mc_exec, mg_E_gives_the_item_N_creates_that_cas)
{
    expect("mg k N30 E77 c\r\n", "HD c77 W\r\n");
    expect("mg k c\r\n", "HD c77 Z\r\n");
}

Test(mc_exec, mg_E_without_a_new_item_changes_nothing)
{
    put("k", "x", 0, 0);
    char want[64];
    snprintf(want, sizeof(want), "HD c%llu\r\n", (unsigned long long)cas_of("k"));
    expect("mg k E5 c\r\n", want);
    expect("mg k T100 E5 c\r\n", want);
}

/* ---- ms ---- */

Test(mc_exec, ms_stores_the_value)
{
    expect("ms k 2\r\nhi\r\nmg k v f t\r\n", "HD\r\nVA 2 f0 t-1\r\nhi\r\n");
}

Test(mc_exec, ms_F_and_T_set_flags_and_ttl)
{
    expect("ms k 2 F7 T30\r\nhi\r\nmg k f t\r\n", "HD\r\nHD f7 t30\r\n");
}

Test(mc_exec, ms_c_returns_the_new_cas)
{
    run("ms k 2 c\r\nhi\r\n");
    char want[64];
    snprintf(want, sizeof(want), "HD c%llu\r\n", (unsigned long long)cas_of("k"));
    cr_assert_str_eq(reply, want);
}

Test(mc_exec, ms_q_hides_hd)
{
    expect("ms k 2 q\r\nhi\r\nmn\r\n", "MN\r\n");
}

Test(mc_exec, ms_q_keeps_ns)
{
    put("k", "x", 0, 0);
    expect("ms k 2 ME q\r\nhi\r\n", "NS\r\n");
}

Test(mc_exec, ms_mode_E_adds_only_a_missing_key)
{
    put("k", "x", 0, 0);
    expect("ms k 2 ME\r\nhi\r\nms j 2 ME\r\nhi\r\n", "NS\r\nHD\r\n");
}

Test(mc_exec, ms_mode_R_replaces_only_a_present_key)
{
    put("k", "x", 0, 0);
    expect("ms k 2 MR\r\nhi\r\nms j 2 MR\r\nhi\r\n", "HD\r\nNS\r\n");
}

Test(mc_exec, ms_mode_A_appends)
{
    put("k", "ab", 0, 0);
    expect("ms k 2 MA\r\ncd\r\nmg k v\r\n", "HD\r\nVA 4\r\nabcd\r\n");
}

Test(mc_exec, ms_mode_P_prepends)
{
    put("k", "ab", 0, 0);
    expect("ms k 2 MP\r\ncd\r\nmg k v\r\n", "HD\r\nVA 4\r\ncdab\r\n");
}

Test(mc_exec, ms_append_to_missing_key_is_ns)
{
    expect("ms k 2 MA\r\ncd\r\n", "NS\r\n");
}

Test(mc_exec, ms_append_with_N_creates_a_missing_item)
{
    expect("ms k 2 MA N40\r\ncd\r\nmg k v t\r\n", "HD\r\nVA 2 t40\r\ncd\r\n");
}

Test(mc_exec, ms_s_after_append_is_the_final_size)
{
    put("k", "abc", 0, 0);
    expect("ms k 2 MA s\r\nde\r\n", "HD s5\r\n");
}

Test(mc_exec, ms_C_with_current_cas_stores)
{
    put("k", "x", 0, 0);
    char line[128];
    snprintf(line, sizeof(line), "ms k 2 C%llu\r\nhi\r\n", (unsigned long long)cas_of("k"));
    expect(line, "HD\r\n");
}

Test(mc_exec, ms_C_with_stale_cas_is_ex)
{
    put("k", "x", 0, 0);
    char line[128];
    snprintf(line, sizeof(line), "ms k 2 C%llu\r\nhi\r\n", (unsigned long long)cas_of("k") + 1);
    expect(line, "EX\r\n");
    cr_assert_eq(sh.stats.cas_badval, 1);
}

Test(mc_exec, ms_C_on_missing_key_is_nf)
{
    expect("ms k 2 C1\r\nhi\r\n", "NF\r\n");
    cr_assert_eq(sh.stats.cas_misses, 1);
}

Test(mc_exec, ms_add_ignores_C)
{
    expect("ms k 2 ME C1\r\nhi\r\n", "HD\r\n");
}

Test(mc_exec, ms_not_stored_answers_c0_and_the_sent_size)
{
    expect("ms k 2 MR c s k O1\r\nhi\r\n", "NS c0 s2 kk O1\r\n");
}

Test(mc_exec, ms_too_large_drops_the_old_value_in_any_mode)
{
    put("k", "x", 0, 0);
    static char req[32 << 10];
    int n = snprintf(req, sizeof(req), "ms k 20000 MR q\r\n");
    memset(req + n, 'x', 20000);
    memcpy(req + n + 20000, "\r\n", 2);
    cr_assert_str_eq(run_n(req, (size_t)n + 20002), "SERVER_ERROR object too large for cache\r\n");
    cr_assert(!present("k"));
}

Test(mc_exec, ms_base64_key_is_stored_decoded)
{
    expect("ms YQ== 2 b k\r\nhi\r\nget a\r\n", "HD kYQ== b\r\nVALUE a 0 2\r\nhi\r\nEND\r\n");
}

Test(mc_exec, ms_I_with_a_lower_cas_stores_a_stale_value_keeping_ttl_and_token)
{
    put("a", "x", 0, 0);
    put("k", "x", 0, 100);
    expect("mg k R200\r\n", "HD W\r\n");
    expect("ms k 2 I C1 T10\r\nhi\r\n", "HD\r\n");
    expect("mg k t v\r\n", "VA 2 t100 Z X\r\nhi\r\n");
}

Test(mc_exec, ms_I_stale_value_hands_out_one_win)
{
    put("a", "x", 0, 0);
    put("k", "x", 0, 100);
    expect("ms k 2 I C1\r\nhi\r\n", "HD\r\n");
    expect("mg k\r\n", "HD X W\r\n");
    expect("mg k\r\n", "HD Z X\r\n");
}

Test(mc_exec, ms_I_with_a_higher_cas_is_EX)
{
    put("k", "x", 0, 0);
    char line[64];
    snprintf(line, sizeof(line), "ms k 2 I C%llu c\r\nhi\r\n", (unsigned long long)cas_of("k") + 1);
    expect(line, "EX c0\r\n");
    expect("mg k v\r\n", "VA 1\r\nx\r\n");
}

Test(mc_exec, ms_I_without_C_is_a_plain_set)
{
    put("k", "x", 0, 100);
    expect("ms k 2 I\r\nhi\r\n", "HD\r\n");
    expect("mg k t v\r\n", "VA 2 t-1\r\nhi\r\n");
}

Test(mc_exec, ms_E_sets_the_new_cas)
{
    expect("ms k 2 E12345 c\r\nhi\r\n", "HD c12345\r\n");
    expect("mg k c v\r\n", "VA 2 c12345\r\nhi\r\n");
    expect("ms k 2 C12345 E12346 c\r\nyo\r\n", "HD c12346\r\n");
    expect("ms k 2 C12345\r\nzz\r\n", "EX\r\n");
}

Test(mc_exec, ms_counts_cmd_set)
{
    run("ms k 1\r\nx\r\nms k 1 ME\r\nx\r\n");
    cr_assert_eq(sh.stats.cmd_set, 2);
}

/* ---- md ---- */

Test(mc_exec, md_of_present_key_is_hd)
{
    put("k", "x", 0, 0);
    expect("md k\r\nmg k\r\n", "HD\r\nEN\r\n");
}

Test(mc_exec, md_of_missing_key_is_nf)
{
    expect("md k\r\n", "NF\r\n");
}

Test(mc_exec, md_q_hides_hd_but_not_nf)
{
    put("k", "x", 0, 0);
    expect("md k q\r\nmd k q\r\n", "NF\r\n");
}

Test(mc_exec, md_echoes_key_and_opaque)
{
    expect("md k k O9\r\n", "NF kk O9\r\n");
}

Test(mc_exec, md_C_with_current_cas_deletes)
{
    put("k", "x", 0, 0);
    char line[64];
    snprintf(line, sizeof(line), "md k C%llu\r\n", (unsigned long long)cas_of("k"));
    expect(line, "HD\r\n");
    cr_assert(!present("k"));
}

Test(mc_exec, md_C_with_stale_cas_is_ex_and_keeps_the_item)
{
    put("k", "x", 0, 0);
    char line[64];
    snprintf(line, sizeof(line), "md k C%llu\r\n", (unsigned long long)cas_of("k") + 1);
    expect(line, "EX\r\n");
    cr_assert(present("k"));
    cr_assert_eq(sh.stats.delete_misses, 1);
}

Test(mc_exec, md_counts_hits_and_misses)
{
    put("k", "x", 0, 0);
    run("md k\r\nmd k\r\n");
    cr_assert_eq(sh.stats.delete_hits, 1);
    cr_assert_eq(sh.stats.delete_misses, 1);
}

Test(mc_exec, md_I_keeps_the_item_stale_with_a_new_cas)
{
    put("k", "x", 0, 100);
    uint64_t cas = cas_of("k");
    expect("mg k R200\r\n", "HD W\r\n");
    expect("md k I\r\n", "HD\r\n");
    cr_assert_neq(cas_of("k"), cas);
    expect("mg k t v\r\n", "VA 1 t100 X W\r\nx\r\n");
    expect("mg k\r\n", "HD Z X\r\n");
    /* memcached 1.6.45 counts no delete hit for an invalidation. */
    cr_assert_eq(sh.stats.delete_hits, 0);
}

Test(mc_exec, md_I_keeps_the_fetched_bit)
{
    put("k", "x", 0, 0);
    expect("mg k\r\n", "HD\r\n");
    expect("md k I q\r\n", "");
    expect("mg k h\r\n", "HD h1 X W\r\n");
}

Test(mc_exec, md_I_with_T_and_E_sets_ttl_and_cas)
{
    put("k", "x", 0, 100);
    expect("md k I T50 E900\r\n", "HD\r\n");
    expect("mg k t c\r\n", "HD t50 c900 X W\r\n");
}

Test(mc_exec, md_I_of_a_missing_key_is_NF)
{
    expect("md k I\r\n", "NF\r\n");
    cr_assert_eq(sh.stats.delete_misses, 1);
}

Test(mc_exec, md_x_leaves_an_empty_item_with_the_old_cas)
{
    /* memcached 1.6.45: client flags 0 and no TTL unless F and T say otherwise, the CAS kept. */
    put("k", "hello", 9, 100);
    uint64_t cas = cas_of("k");
    expect("mg k\r\n", "HD\r\n");
    expect("md k x\r\n", "HD\r\n");
    expect("mg k v f t s h\r\n", "VA 0 f0 t-1 s0 h0\r\n\r\n");
    cr_assert_eq(cas_of("k"), cas);
    cr_assert_eq(sh.stats.delete_hits, 1);
}

Test(mc_exec, md_x_takes_F_and_T)
{
    put("k", "hello", 9, 0);
    expect("md k x F7 T50\r\n", "HD\r\n");
    expect("mg k v f t\r\n", "VA 0 f7 t50\r\n\r\n");
}

Test(mc_exec, md_x_with_I_invalidates_the_empty_item)
{
    put("k", "hello", 9, 0);
    expect("md k x I\r\n", "HD\r\n");
    expect("mg k v f\r\n", "VA 0 f0 X W\r\n\r\n");
}

Test(mc_exec, md_x_with_E_and_C)
{
    put("k", "hello", 0, 0);
    expect("md k x C999999 E42\r\n", "EX\r\n");
    char line[64];
    snprintf(line, sizeof(line), "md k x C%llu E42\r\n", (unsigned long long)cas_of("k"));
    expect(line, "HD\r\n");
    expect("mg k c s\r\n", "HD c42 s0\r\n");
    expect("md nope x\r\n", "NF\r\n");
}

Test(mc_exec, mg_C_of_the_current_cas_leaves_the_value_out)
{
    put("k", "x", 0, 0);
    char line[64], want[64];
    unsigned long long cas = (unsigned long long)cas_of("k");
    snprintf(line, sizeof(line), "mg k C%llu v c\r\n", cas);
    snprintf(want, sizeof(want), "HD c%llu\r\n", cas);
    expect(line, want);
    snprintf(line, sizeof(line), "mg k C%llu v\r\n", cas + 1);
    expect(line, "VA 1\r\nx\r\n");
}

/* ---- ma ---- */

Test(mc_exec, ma_increments_by_one)
{
    put("n", "5", 0, 0);
    expect("ma n\r\nmg n v\r\n", "HD\r\nVA 1\r\n6\r\n");
}

Test(mc_exec, ma_v_returns_the_new_value)
{
    put("n", "5", 0, 0);
    expect("ma n v D10\r\n", "VA 2\r\n15\r\n");
}

Test(mc_exec, ma_mode_D_decrements)
{
    put("n", "5", 0, 0);
    expect("ma n MD D2 v\r\nma n M- D9 v\r\n", "VA 1\r\n3\r\nVA 1\r\n0\r\n");
}

Test(mc_exec, ma_of_missing_key_is_nf)
{
    expect("ma n v\r\n", "NF\r\n");
    cr_assert_eq(sh.stats.incr_misses, 1);
}

Test(mc_exec, ma_q_hides_success_but_not_nf)
{
    put("n", "5", 0, 0);
    expect("ma n q v\r\nma x q\r\n", "NF\r\n");
}

Test(mc_exec, ma_N_creates_a_missing_counter_from_J)
{
    expect("ma n N30 J5 v t\r\nmg n v t\r\n", "VA 1 t30\r\n5\r\nVA 1 t30\r\n5\r\n");
}

Test(mc_exec, ma_N_without_J_starts_at_zero_and_t_before_N_shows_no_ttl)
{
    expect("ma n t N0 v\r\n", "VA 1 t-1\r\n0\r\n");
}

Test(mc_exec, ma_c_returns_the_new_cas)
{
    put("n", "1", 0, 0);
    run("ma n c\r\n");
    char want[64];
    snprintf(want, sizeof(want), "HD c%llu\r\n", (unsigned long long)cas_of("n"));
    cr_assert_str_eq(reply, want);
}

Test(mc_exec, ma_C_with_stale_cas_is_ex)
{
    put("n", "1", 0, 0);
    char line[64];
    snprintf(line, sizeof(line), "ma n C%llu v\r\n", (unsigned long long)cas_of("n") + 1);
    expect(line, "EX\r\n");
    expect("mg n v\r\n", "VA 1\r\n1\r\n");
}

Test(mc_exec, ma_C_with_current_cas_increments)
{
    put("n", "1", 0, 0);
    char line[64];
    snprintf(line, sizeof(line), "ma n C%llu v\r\n", (unsigned long long)cas_of("n"));
    expect(line, "VA 1\r\n2\r\n");
}

Test(mc_exec, ma_C0_compares_nothing)
{
    put("n", "1", 0, 0);
    expect("ma n C0 v\r\n", "VA 1\r\n2\r\n");
}

Test(mc_exec, md_C0_never_matches)
{
    put("k", "x", 0, 0);
    expect("md k C0\r\n", "EX\r\n");
}

Test(mc_exec, ma_of_text_is_a_client_error_even_with_q)
{
    put("n", "abc", 0, 0);
    expect("ma n q\r\n", "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
}

Test(mc_exec, ma_T_sets_the_ttl)
{
    put("n", "1", 0, 0);
    expect("ma n T25 t\r\n", "HD t25\r\n");
    expect("mg n t\r\n", "HD t25\r\n");
}

Test(mc_exec, ma_t_before_T_shows_the_old_ttl)
{
    put("n", "1", 0, 100);
    expect("ma n t T25\r\n", "HD t100\r\n");
}

Test(mc_exec, ma_counts_incr_and_decr_hits)
{
    put("n", "5", 0, 0);
    run("ma n\r\nma n MD\r\nma x N0\r\n");
    cr_assert_eq(sh.stats.incr_hits, 1);
    cr_assert_eq(sh.stats.decr_hits, 1);
    cr_assert_eq(sh.stats.incr_misses, 0); /* a counter created by N is no miss */
}

Test(mc_exec, ma_E_sets_the_cas_of_the_result)
{
    put("n", "5", 0, 0);
    expect("ma n E7 c v\r\n", "VA 1 c7\r\n6\r\n");
    expect("mg n c v\r\n", "VA 1 c7\r\n6\r\n");
    expect("ma m N0 J10 E8 c v\r\n", "VA 2 c8\r\n10\r\n");
}

/* ---- me, mn, commands the server keeps ---- */

Test(mc_exec, me_reports_the_item_without_reading_it)
{
    put("k", "x", 0, 100);
    clock_now += 3;
    char want[128];
    snprintf(want, sizeof(want), "ME k exp=97 la=3 cas=%llu fetch=no cls=1 size=7\r\n",
             (unsigned long long)cas_of("k"));
    expect("me k\r\n", want);
    expect("me k\r\n", want);
    expect("mg k\r\n", "HD\r\n");
    snprintf(want, sizeof(want), "ME k exp=97 la=3 cas=%llu fetch=yes cls=1 size=7\r\n",
             (unsigned long long)cas_of("k"));
    expect("me k\r\n", want);
}

Test(mc_exec, me_of_a_permanent_item_shows_exp_minus_1)
{
    put("k", "abc", 5, 0);
    char want[128];
    snprintf(want, sizeof(want), "ME k exp=-1 la=0 cas=%llu fetch=no cls=1 size=13\r\n",
             (unsigned long long)cas_of("k"));
    expect("me k\r\n", want);
}

Test(mc_exec, me_of_a_missing_key_is_EN)
{
    expect("me k\r\n", "EN\r\n");
}

Test(mc_exec, mn_is_mn)
{
    expect("mn\r\n", "MN\r\n");
}

Test(mc_exec, server_commands_are_not_executed_here)
{
    struct mc_parser p;
    struct mc_parser_opts o = {.max_value = 1 << 20};
    mc_parser_init(&p, &o);
    struct mc_req req;
    cr_assert_eq(mc_parse(&p, "version\r\n", 9, &req), MC_PARSE_OK);
    cr_assert_eq(mc_exec(&sh, &req, 0, &out), -EINVAL);
    cr_assert_eq(buf_len(&out), 0);
}

Test(mc_exec, full_output_buffer_is_reported)
{
    put("k", "hello", 0, 0);
    struct buf tiny;
    buf_init(&tiny, 4, 4);
    struct mc_parser p;
    struct mc_parser_opts o = {.max_value = 1 << 20};
    mc_parser_init(&p, &o);
    struct mc_req req;
    cr_assert_eq(mc_parse(&p, "mg k v\r\n", 8, &req), MC_PARSE_OK);
    cr_assert_eq(mc_exec(&sh, &req, mc_key_hash("k", 1), &tiny), -ENOBUFS);
    buf_free(&tiny);
}

/* Fill a two-segment shard that never evicts, so that no segment is left for a new TTL. */
static void
fill_without_eviction(void)
{
    make_shard(128 << 10, SEG_EVICT_NONE);
    put("k", "x", 0, 0);
    static char req[16 << 10];
    for (int i = 0; i < 64; i++) {
        int n = snprintf(req, sizeof(req), "set f%d 0 0 8000\r\n", i);
        memset(req + n, 'x', 8000);
        memcpy(req + n + 8000, "\r\n", 2);
        if (strcmp(run_n(req, (size_t)n + 8002), "STORED\r\n") != 0) {
            return;
        }
    }
    cr_assert_fail("the shard never filled up");
}

Test(mc_exec, touch_without_room_for_the_new_ttl_is_out_of_memory)
{
    fill_without_eviction();
    expect("touch k 100\r\n", "SERVER_ERROR out of memory\r\n");
    expect("mg k t\r\n", "HD t-1\r\n");
}

Test(mc_exec, gat_without_room_for_the_new_ttl_is_out_of_memory)
{
    fill_without_eviction();
    expect("gat 100 k\r\n", "SERVER_ERROR out of memory\r\nEND\r\n");
}

/* ---- deferred values: a reply without room for a value, fetched later ---- */

/* Parse one request line (no data block). */
static struct mc_req
parse_line(const char *text)
{
    struct mc_parser p;
    struct mc_parser_opts o = {.max_value = 1 << 20};
    mc_parser_init(&p, &o);
    struct mc_req req;
    cr_assert_eq(mc_parse(&p, text, strlen(text), &req), MC_PARSE_OK, "parse of [%s]", text);
    return req;
}

/* Copy what out holds into `reply` (a string) and pass rc on. */
static int
keep_reply(int rc)
{
    size_t len = buf_len(&out);
    if (len > 0) {
        memcpy(reply, buf_rptr(&out), len);
    }
    reply[len] = '\0';
    return rc;
}

/* One get of key with max bytes of room; the reply in `reply`, the result returned. */
static int
get_max(const char *line, const char *key, size_t max, struct mc_deferred *d)
{
    struct mc_req req = parse_line(line);
    buf_consume(&out, buf_len(&out));
    int rc =
        mc_exec_get_key_max(&sh, &req, key, strlen(key), seg_hash(key, strlen(key)), max, &out, d);
    return keep_reply(rc);
}

static int
fetch(const char *key, const struct mc_deferred *d)
{
    buf_consume(&out, buf_len(&out));
    int rc = mc_exec_fetch(&sh, key, strlen(key), seg_hash(key, strlen(key)), d, &out);
    return keep_reply(rc);
}

Test(mc_exec, get_with_room_for_the_value_copies_it)
{
    put("k", "hello", 7, 0);
    struct mc_deferred d;
    cr_assert_eq(get_max("get k\r\n", "k", 64, &d), 0);
    cr_assert_str_eq(reply, "VALUE k 7 5\r\nhello\r\n");
    /* Exactly the block's length is room enough. */
    cr_assert_eq(get_max("get k\r\n", "k", strlen("VALUE k 7 5\r\nhello\r\n"), &d), 0);
}

Test(mc_exec, get_without_room_defers_the_value_behind_its_header)
{
    put("k", "hello", 7, 0);
    struct mc_deferred d;
    cr_assert_eq(get_max("gets k\r\n", "k", 10, &d), 1);
    char want[128];
    snprintf(want, sizeof(want), "VALUE k 7 5 %llu\r\n", (unsigned long long)cas_of("k"));
    cr_assert_str_eq(reply, want);
    cr_assert_eq(d.hdr_len, strlen(want));
    cr_assert_eq(d.miss_len, 0);
    cr_assert_eq(d.vlen, 5);
    cr_assert_eq(d.cas, cas_of("k"));
    /* The get happened: it counts as a hit. */
    cr_assert_eq(sh.stats.get_hits, 1);
    cr_assert_eq(fetch("k", &d), 1);
    cr_assert_str_eq(reply, "hello");
}

Test(mc_exec, miss_with_no_room_is_still_a_miss)
{
    struct mc_deferred d;
    cr_assert_eq(get_max("get k\r\n", "k", 0, &d), 0);
    cr_assert_str_eq(reply, "");
}

Test(mc_exec, fetch_of_a_changed_item_is_a_miss_never_the_new_value)
{
    put("k", "hello", 0, 0);
    struct mc_deferred d;
    cr_assert_eq(get_max("get k\r\n", "k", 0, &d), 1);
    put("k", "world", 0, 0);
    cr_assert_eq(fetch("k", &d), 0);
    cr_assert_str_eq(reply, "");
    run("delete k\r\n");
    cr_assert_eq(fetch("k", &d), 0);
}

Test(mc_exec, fetch_is_a_peek_that_counts_nothing)
{
    put("k", "hello", 0, 0);
    struct mc_deferred d = {.cas = cas_of("k"), .vlen = 5};
    struct mc_stats before = sh.stats;
    cr_assert_eq(fetch("k", &d), 1);
    cr_assert_str_eq(reply, "hello");
    cr_assert_eq(memcmp(&before, &sh.stats, sizeof(before)), 0);
    /* The item was not marked read. */
    expect("mg k h\r\n", "HD h0\r\n");
}

Test(mc_exec, gat_touches_when_it_runs_and_its_fetch_does_not)
{
    put("k", "hello", 0, 5);
    struct mc_deferred d;
    cr_assert_eq(get_max("gat 20 k\r\n", "k", 0, &d), 1);
    cr_assert_eq(sh.stats.touch_hits, 1);
    clock_now += 10;
    cr_assert_eq(fetch("k", &d), 1);
    cr_assert_str_eq(reply, "hello");
    expect("mg k t\r\n", "HD t10\r\n");
}

/* mc_exec_max on one mg line, the reply in `reply`. */
static int
mg_max(const char *line, size_t max, struct mc_deferred *d)
{
    struct mc_req req = parse_line(line);
    buf_consume(&out, buf_len(&out));
    int rc = mc_exec_max(&sh, &req, seg_hash(req.key, req.klen), max, &out, d);
    return keep_reply(rc);
}

Test(mc_exec, mg_v_without_room_defers_its_value_with_the_miss_reply_after_the_header)
{
    put("k", "hello", 3, 0);
    struct mc_deferred d;
    cr_assert_eq(mg_max("mg k v f k Oab\r\n", 1000, &d), 0);
    cr_assert_str_eq(reply, "VA 5 f3 kk Oab\r\nhello\r\n");
    cr_assert_eq(mg_max("mg k v f k Oab\r\n", 10, &d), 1);
    cr_assert_str_eq(reply, "VA 5 f3 kk Oab\r\nEN kk Oab\r\n");
    cr_assert_eq(d.hdr_len, strlen("VA 5 f3 kk Oab\r\n"));
    cr_assert_eq(d.miss_len, strlen("EN kk Oab\r\n"));
    cr_assert_eq(fetch("k", &d), 1);
    cr_assert_str_eq(reply, "hello");
    /* With q a miss says nothing, so neither does the reply kept for a changed item. */
    cr_assert_eq(mg_max("mg k v q\r\n", 4, &d), 1);
    cr_assert_str_eq(reply, "VA 5\r\n");
    cr_assert_eq(d.miss_len, 0);
}

Test(mc_exec, mg_without_v_and_other_commands_ignore_the_room)
{
    put("k", "hello", 0, 0);
    struct mc_deferred d;
    cr_assert_eq(mg_max("mg k s\r\n", 0, &d), 0);
    cr_assert_str_eq(reply, "HD s5\r\n");
    cr_assert_eq(mg_max("mn\r\n", 0, &d), 0);
    cr_assert_str_eq(reply, "MN\r\n");
}

/* ---- --disable-cas ---- */

Test(mc_exec, disabled_cas_shows_zero_and_compares_with_zero)
{
    sh.cas_disabled = true;
    cr_assert_str_eq(run("set a 0 0 1\r\nx\r\ngets a\r\n"),
                     "STORED\r\nVALUE a 0 1 0\r\nx\r\nEND\r\n");
    /* memcached -C: a compare-and-swap never matches an item that has no CAS. */
    cr_assert_str_eq(run("cas a 0 0 1 0\r\ny\r\ncas zz 0 0 1 0\r\ny\r\n"),
                     "EXISTS\r\nNOT_FOUND\r\n");
    cr_assert_str_eq(run("mg a c v\r\nms a 1 C0 c\r\nz\r\nms b 1 c\r\nz\r\n"),
                     "VA 1 c0\r\nx\r\nEX c0\r\nHD c0\r\n");
    /* md and ma compare their C with the item's CAS, which shows as 0. */
    cr_assert_str_eq(run("md b C7\r\nmd b C0\r\n"), "EX\r\nHD\r\n");
    cr_assert_str_eq(run("set n 0 0 1\r\n5\r\nma n C9\r\nma n C0 c v\r\n"),
                     "STORED\r\nEX\r\nVA 1 c0\r\n6\r\n");
    sh.cas_disabled = false;
}

/* ---- lru_crawler metadump / mgdump steps ---- */

static const char *
dump_all(bool mgdump)
{
    struct mc_dump d = {.mgdump = mgdump};
    cr_assert_eq(mc_dump_classes("all", 3, d.mask), MC_DUMP_CLASSES);
    buf_consume(&out, buf_len(&out));
    int rc;
    while ((rc = mc_dump_step(&sh, &d, &out, 1 << 20, 1u << 30)) > 0) {
    }
    cr_assert_eq(rc, 0);
    size_t len = buf_len(&out);
    memcpy(reply, buf_rptr(&out), len);
    reply[len] = '\0';
    return reply;
}

Test(mc_exec, metadump_line_has_memcached_fields)
{
    run("set a%20b 5 0 3\r\nxyz\r\n");
    char want[256];
    snprintf(want, sizeof(want),
             "key=a%%2520b exp=-1 la=%d cas=1 fetch=no cls=1 size=17 flags=5 \n", T0);
    cr_assert_str_eq(dump_all(false), want);
    cr_assert_str_eq(dump_all(true), "mg a%20b\r\n");
}

Test(mc_exec, mgdump_sends_a_key_with_blanks_in_base64)
{
    run("ms YSBi 1 b\r\nx\r\n"); /* the key "a b" */
    cr_assert_str_eq(dump_all(true), "mg YSBi b\r\n");
}

Test(mc_exec, metadump_of_some_classes_lists_only_theirs)
{
    run("set forever 0 0 1\r\nx\r\nset soon 0 100 1\r\ny\r\n");
    struct mc_dump d = {0};
    cr_assert_eq(mc_dump_classes("1", 1, d.mask), MC_DUMP_CLASSES);
    buf_consume(&out, buf_len(&out));
    while (mc_dump_step(&sh, &d, &out, 1 << 20, 1u << 30) > 0) {
    }
    cr_assert_eq(buf_len(&out) > 0, true);
    cr_assert_eq(memcmp(buf_rptr(&out), "key=forever ", 12), 0);
    cr_assert_eq(memchr(buf_rptr(&out), '\n', buf_len(&out)), buf_rptr(&out) + buf_len(&out) - 1);
}

Test(mc_exec, class_lists_are_read_as_memcached_reads_them)
{
    uint64_t m[MC_DUMP_CLASS_WORDS];
    cr_assert_eq(mc_dump_classes("hash", 4, m), MC_DUMP_HASH);
    cr_assert_eq(mc_dump_classes("1,,3", 4, m), MC_DUMP_CLASSES);
    cr_assert_eq(m[0], 5);
    cr_assert_eq(mc_dump_classes("+2", 2, m), MC_DUMP_CLASSES);
    cr_assert_eq(m[0], 2);
    cr_assert_eq(mc_dump_classes("4294967297", 10, m), MC_DUMP_CLASSES, "cut to 32 bits: 1");
    cr_assert_eq(m[0], 1);
    cr_assert_eq(mc_dump_classes(",", 1, m), MC_DUMP_NONE);
    cr_assert_eq(mc_dump_classes("0", 1, m), MC_DUMP_BADCLASS);
    cr_assert_eq(mc_dump_classes("-1", 2, m), MC_DUMP_BADCLASS);
    cr_assert_eq(mc_dump_classes("1x", 2, m), MC_DUMP_BADCLASS);
    char last[16];
    int n = snprintf(last, sizeof(last), "%zu", seg_ttl_bucket_count());
    cr_assert_eq(mc_dump_classes(last, (size_t)n, m), MC_DUMP_CLASSES);
    n = snprintf(last, sizeof(last), "%zu", seg_ttl_bucket_count() + 1);
    cr_assert_eq(mc_dump_classes(last, (size_t)n, m), MC_DUMP_BADCLASS);
}

Test(mc_exec, dump_step_stops_near_its_byte_budget_and_resumes)
{
    char cmd[64];
    for (int i = 0; i < 2000; i++) {
        int n = snprintf(cmd, sizeof(cmd), "set key%d 0 0 1\r\nx\r\n", i);
        run_n(cmd, (size_t)n);
    }
    struct mc_dump d = {0};
    mc_dump_classes("all", 3, d.mask);
    size_t lines = 0, steps = 0;
    int rc;
    do {
        buf_consume(&out, buf_len(&out));
        rc = mc_dump_step(&sh, &d, &out, 1000, 1u << 30);
        cr_assert_geq(rc, 0);
        /* The budget, passed by at most one bucket's lines (a few dozen here). */
        cr_assert_lt(buf_len(&out), 1000 + 40 * 70);
        for (size_t i = 0; i < buf_len(&out); i++) {
            lines += buf_rptr(&out)[i] == '\n';
        }
        steps++;
    } while (rc > 0);
    cr_assert_eq(lines, 2000);
    cr_assert_gt(steps, 50);
}
