/* Unit tests of the Segcache storage engine (include/petrel/seg.h). */
#include "petrel/seg.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define T0 1700000000 /* a plausible unix time for the test clock */

struct fake_clock {
    int64_t now;
};

static int64_t
fake_now(void *ctx)
{
    return ((struct fake_clock *)ctx)->now;
}

static struct fake_clock clk;

/* An instance on the fake clock, its hash table starting at start_buckets (0: the default). */
static struct seg *
mk_table(size_t mem, size_t seg_size, enum seg_evict_policy evict, size_t start_buckets)
{
    struct seg_options o;
    seg_options_init(&o);
    o.mem_bytes = mem;
    o.seg_size = seg_size;
    o.item_max = seg_size;
    o.evict = evict;
    o.ht_start_buckets = start_buckets;
    o.clock = fake_now;
    o.clock_ctx = &clk;
    clk.now = T0;
    struct seg *s = NULL;
    cr_assert_eq(seg_create(&s, &o), 0);
    return s;
}

static struct seg *
mk(size_t mem, size_t seg_size, enum seg_evict_policy evict)
{
    return mk_table(mem, seg_size, evict, 0);
}

static struct seg *
mk_default(void)
{
    return mk(8 << 20, 1 << 20, SEG_EVICT_MERGE);
}

/*
 * The tests write TTLs as memcached clients do (relative up to 30 days, larger absolute,
 * negative already expired); the engine takes absolute times.
 */
static int64_t
at(struct seg *s, int64_t exptime)
{
    if (exptime == 0 || exptime > 2592000) {
        return exptime;
    }
    return exptime < 0 ? -1 : seg_clock(s) + exptime;
}

static enum seg_result
st(struct seg *s, enum seg_store_mode mode, const char *key, const char *val, uint32_t flags,
   int64_t exptime, uint64_t cas, uint64_t *cas_out)
{
    struct seg_store_req r = {
        .mode = mode,
        .key = key,
        .klen = strlen(key),
        .hash = seg_hash(key, strlen(key)),
        .value = val,
        .vlen = strlen(val),
        .flags = flags,
        .expire = at(s, exptime),
        .cas = cas,
    };
    return seg_store(s, &r, cas_out);
}

static enum seg_result
set(struct seg *s, const char *key, const char *val, int64_t exptime)
{
    return st(s, SEG_SET, key, val, 0, exptime, 0, NULL);
}

static enum seg_result
get(struct seg *s, const char *key, struct seg_view *v)
{
    return seg_get(s, key, strlen(key), seg_hash(key, strlen(key)), v);
}

static bool
has(struct seg *s, const char *key)
{
    struct seg_view v;
    return get(s, key, &v) == SEG_OK;
}

static void
assert_value(struct seg *s, const char *key, const char *val)
{
    struct seg_view v;
    cr_assert_eq(get(s, key, &v), SEG_OK, "%s missing", key);
    cr_assert_eq(v.vlen, strlen(val));
    cr_assert(memcmp(v.value, val, v.vlen) == 0, "%s: got %.*s want %s", key, (int)v.vlen, v.value,
              val);
}

static uint64_t
cas_of(struct seg *s, const char *key)
{
    struct seg_view v;
    cr_assert_eq(get(s, key, &v), SEG_OK);
    return v.cas;
}

static enum seg_result
incr(struct seg *s, const char *key, uint64_t delta, bool decr, uint64_t *out)
{
    return seg_incr(s, key, strlen(key), seg_hash(key, strlen(key)), delta, decr, out, NULL);
}

static enum seg_result
touch(struct seg *s, const char *key, int64_t exptime)
{
    return seg_touch(s, key, strlen(key), seg_hash(key, strlen(key)), at(s, exptime));
}

static enum seg_result
del(struct seg *s, const char *key)
{
    return seg_delete(s, key, strlen(key), seg_hash(key, strlen(key)));
}

static void
tick_for(struct seg *s, int n)
{
    for (int i = 0; i < n; i++) {
        seg_tick(s);
    }
}

/* ---- options, names, helpers ---- */

Test(seg, create_rejects_bad_options)
{
    struct seg_options o;
    struct seg *s = NULL;
    seg_options_init(&o);
    o.seg_size = 3000;
    cr_assert_eq(seg_create(&s, &o), -EINVAL);
    seg_options_init(&o);
    o.mem_bytes = o.seg_size; /* one segment is not enough */
    cr_assert_eq(seg_create(&s, &o), -EINVAL);
    seg_options_init(&o);
    o.item_max = o.seg_size * 2;
    cr_assert_eq(seg_create(&s, &o), -EINVAL);
    cr_assert_null(s);
}

Test(seg, destroy_sets_pointer_to_null)
{
    struct seg *s = mk_default();
    seg_destroy(&s);
    cr_assert_null(s);
    seg_destroy(&s);
}

Test(seg, policy_names_parse_both_ways)
{
    const char *names[] = {"merge", "fifo", "random", "cte", "util", "none"};
    for (int i = 0; i < 6; i++) {
        enum seg_evict_policy p;
        cr_assert_eq(seg_evict_policy_parse(names[i], &p), 0);
        cr_assert_str_eq(seg_evict_policy_names[p], names[i]);
    }
    enum seg_evict_policy p;
    cr_assert_eq(seg_evict_policy_parse("lru", &p), -EINVAL);
}

Test(seg, result_names)
{
    cr_assert_str_eq(seg_result_name(SEG_STORED), "stored");
    cr_assert_str_eq(seg_result_name(SEG_NOT_FOUND), "not_found");
    cr_assert_str_eq(seg_result_name(SEG_NO_MEMORY), "no_memory");
    cr_assert_str_eq(seg_result_name((enum seg_result)99), "unknown");
}

Test(seg, ttl_slack_is_zero_below_32s_and_at_most_a_sixteenth)
{
    for (uint32_t t = 1; t < 32; t++) {
        cr_assert_eq(seg_ttl_slack(t), 0);
    }
    for (uint32_t t = 32; t < 5000000; t = t * 5 / 4 + 1) {
        cr_assert_leq(seg_ttl_slack(t), t / 16, "ttl %u slack %u", t, seg_ttl_slack(t));
    }
}

/* ---- get / set ---- */

Test(seg, set_then_get_returns_value_and_flags)
{
    struct seg *s = mk_default();
    cr_assert_eq(st(s, SEG_SET, "k", "hello", 0xdeadbeef, 0, 0, NULL), SEG_STORED);
    struct seg_view v;
    cr_assert_eq(get(s, "k", &v), SEG_OK);
    cr_assert_eq(v.vlen, 5);
    cr_assert(memcmp(v.value, "hello", 5) == 0);
    cr_assert_eq(v.flags, 0xdeadbeef);
    cr_assert_eq(v.ttl, -1);
    cr_assert_neq(v.cas, 0);
    seg_destroy(&s);
}

Test(seg, get_of_missing_key_is_not_found)
{
    struct seg *s = mk_default();
    struct seg_view v;
    cr_assert_eq(get(s, "nope", &v), SEG_NOT_FOUND);
    seg_destroy(&s);
}

Test(seg, keys_and_values_are_binary_safe)
{
    struct seg *s = mk_default();
    const char key[] = {'a', 0, 'b', '\r', '\n'};
    const char val[] = {0, 1, 2, 0, '\r', '\n', 0};
    uint64_t h = seg_hash(key, sizeof(key));
    struct seg_store_req r = {.mode = SEG_SET,
                              .key = key,
                              .klen = sizeof(key),
                              .hash = h,
                              .value = val,
                              .vlen = sizeof(val)};
    cr_assert_eq(seg_store(s, &r, NULL), SEG_STORED);
    struct seg_view v;
    cr_assert_eq(seg_get(s, key, sizeof(key), h, &v), SEG_OK);
    cr_assert_eq(v.vlen, sizeof(val));
    cr_assert(memcmp(v.value, val, sizeof(val)) == 0);
    cr_assert_eq(seg_get(s, key, 1, seg_hash(key, 1), &v), SEG_NOT_FOUND);
    seg_destroy(&s);
}

Test(seg, set_replaces_the_value)
{
    struct seg *s = mk_default();
    set(s, "k", "one", 0);
    set(s, "k", "two", 0);
    assert_value(s, "k", "two");
    struct seg_stats stats;
    seg_stats_get(s, &stats);
    cr_assert_eq(stats.items, 1);
    seg_destroy(&s);
}

Test(seg, empty_value_is_stored)
{
    struct seg *s = mk_default();
    cr_assert_eq(set(s, "k", "", 0), SEG_STORED);
    assert_value(s, "k", "");
    seg_destroy(&s);
}

/* ---- add / replace / append / prepend ---- */

Test(seg, add_stores_only_a_missing_key)
{
    struct seg *s = mk_default();
    cr_assert_eq(st(s, SEG_ADD, "k", "a", 0, 0, 0, NULL), SEG_STORED);
    cr_assert_eq(st(s, SEG_ADD, "k", "b", 0, 0, 0, NULL), SEG_NOT_STORED);
    assert_value(s, "k", "a");
    seg_destroy(&s);
}

Test(seg, replace_stores_only_an_existing_key)
{
    struct seg *s = mk_default();
    cr_assert_eq(st(s, SEG_REPLACE, "k", "a", 0, 0, 0, NULL), SEG_NOT_STORED);
    cr_assert(!has(s, "k"));
    set(s, "k", "a", 0);
    cr_assert_eq(st(s, SEG_REPLACE, "k", "b", 0, 0, 0, NULL), SEG_STORED);
    assert_value(s, "k", "b");
    seg_destroy(&s);
}

Test(seg, append_and_prepend_concatenate_and_keep_flags)
{
    struct seg *s = mk_default();
    st(s, SEG_SET, "k", "mid", 42, 0, 0, NULL);
    cr_assert_eq(st(s, SEG_APPEND, "k", "-end", 7, 0, 0, NULL), SEG_STORED);
    cr_assert_eq(st(s, SEG_PREPEND, "k", "start-", 9, 0, 0, NULL), SEG_STORED);
    assert_value(s, "k", "start-mid-end");
    struct seg_view v;
    get(s, "k", &v);
    cr_assert_eq(v.flags, 42);
    seg_destroy(&s);
}

Test(seg, append_to_missing_key_is_not_stored)
{
    struct seg *s = mk_default();
    cr_assert_eq(st(s, SEG_APPEND, "k", "x", 0, 0, 0, NULL), SEG_NOT_STORED);
    cr_assert_eq(st(s, SEG_PREPEND, "k", "x", 0, 0, 0, NULL), SEG_NOT_STORED);
    cr_assert(!has(s, "k"));
    seg_destroy(&s);
}

Test(seg, append_keeps_the_expiry)
{
    struct seg *s = mk_default();
    set(s, "k", "a", 5);
    clk.now += 2;
    st(s, SEG_APPEND, "k", "b", 0, 100, 0, NULL);
    clk.now += 2;
    assert_value(s, "k", "ab");
    clk.now += 1;
    cr_assert(!has(s, "k"));
    seg_destroy(&s);
}

/* ---- cas ---- */

Test(seg, cas_with_matching_value_stores)
{
    struct seg *s = mk_default();
    set(s, "k", "a", 0);
    uint64_t c = cas_of(s, "k"), nc = 0;
    cr_assert_eq(st(s, SEG_CAS, "k", "b", 0, 0, c, &nc), SEG_STORED);
    cr_assert_neq(nc, c);
    cr_assert_eq(cas_of(s, "k"), nc);
    assert_value(s, "k", "b");
    seg_destroy(&s);
}

Test(seg, cas_with_stale_value_is_exists)
{
    struct seg *s = mk_default();
    set(s, "k", "a", 0);
    uint64_t c = cas_of(s, "k");
    set(s, "k", "b", 0);
    cr_assert_eq(st(s, SEG_CAS, "k", "c", 0, 0, c, NULL), SEG_EXISTS);
    assert_value(s, "k", "b");
    seg_destroy(&s);
}

Test(seg, cas_on_missing_key_is_not_found)
{
    struct seg *s = mk_default();
    cr_assert_eq(st(s, SEG_CAS, "k", "c", 0, 0, 12345, NULL), SEG_NOT_FOUND);
    seg_destroy(&s);
}

Test(seg, set_with_compare_cas_behaves_like_cas)
{
    struct seg *s = mk_default();
    set(s, "k", "a", 0);
    uint64_t c = cas_of(s, "k");
    cr_assert_eq(st(s, SEG_SET, "k", "x", 0, 0, c + 1, NULL), SEG_EXISTS);
    cr_assert_eq(st(s, SEG_SET, "k", "x", 0, 0, c, NULL), SEG_STORED);
    cr_assert_eq(st(s, SEG_SET, "zz", "x", 0, 0, c, NULL), SEG_NOT_FOUND);
    seg_destroy(&s);
}

Test(seg, unchanged_item_keeps_its_cas)
{
    struct seg *s = mk_default();
    uint64_t c0 = 0;
    st(s, SEG_SET, "k", "a", 0, 0, 0, &c0);
    set(s, "other", "b", 0);
    cr_assert_eq(cas_of(s, "k"), c0);
    cr_assert_eq(cas_of(s, "k"), c0);
    seg_destroy(&s);
}

Test(seg, every_update_gets_a_new_cas)
{
    struct seg *s = mk_default();
    uint64_t seen[8];
    int n = 0;
    set(s, "k", "1", 0);
    seen[n++] = cas_of(s, "k");
    st(s, SEG_APPEND, "k", "2", 0, 0, 0, NULL);
    seen[n++] = cas_of(s, "k");
    st(s, SEG_PREPEND, "k", "3", 0, 0, 0, NULL);
    seen[n++] = cas_of(s, "k");
    uint64_t v;
    incr(s, "k", 1, false, &v);
    seen[n++] = cas_of(s, "k");
    incr(s, "k", 1, true, &v);
    seen[n++] = cas_of(s, "k");
    del(s, "k");
    set(s, "k", "1", 0);
    seen[n++] = cas_of(s, "k");
    for (int i = 0; i < n; i++) {
        for (int j = i + 1; j < n; j++) {
            cr_assert_neq(seen[i], seen[j], "cas %d == cas %d", i, j);
        }
    }
    seg_destroy(&s);
}

Test(seg, cas_values_stay_unique_across_segment_reuse)
{
    /* 2 segments of 4 KiB: segments are reused many times as items expire and get evicted. */
    struct seg *s = mk(8192, 4096, SEG_EVICT_FIFO);
    size_t cap = 20000, n = 0;
    uint64_t *all = malloc(cap * sizeof(*all));
    char key[32], val[64];
    for (int i = 0; i < 4000; i++) {
        snprintf(key, sizeof(key), "key%d", i % 50);
        snprintf(val, sizeof(val), "value-%d-%0*d", i, i % 40, 0);
        uint64_t c = 0;
        cr_assert_eq(st(s, SEG_SET, key, val, 0, i % 3 == 0 ? 1 : 0, 0, &c), SEG_STORED);
        all[n++] = c;
        if (i % 100 == 0) {
            clk.now++;
            seg_tick(s);
        }
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++) {
            cr_assert_neq(all[i], all[j]);
        }
    }
    free(all);
    seg_destroy(&s);
}

/* ---- incr / decr ---- */

Test(seg, incr_adds_and_returns_the_new_value)
{
    struct seg *s = mk_default();
    set(s, "n", "41", 0);
    uint64_t v = 0;
    cr_assert_eq(incr(s, "n", 1, false, &v), SEG_OK);
    cr_assert_eq(v, 42);
    assert_value(s, "n", "42");
    seg_destroy(&s);
}

Test(seg, incr_may_lengthen_the_value)
{
    struct seg *s = mk_default();
    set(s, "n", "99", 0);
    uint64_t v = 0;
    incr(s, "n", 1, false, &v);
    assert_value(s, "n", "100");
    incr(s, "n", 95, true, &v);
    assert_value(s, "n", "5");
    seg_destroy(&s);
}

Test(seg, incr_wraps_at_64_bits)
{
    struct seg *s = mk_default();
    set(s, "n", "18446744073709551615", 0);
    uint64_t v = 1;
    cr_assert_eq(incr(s, "n", 2, false, &v), SEG_OK);
    cr_assert_eq(v, 1);
    assert_value(s, "n", "1");
    seg_destroy(&s);
}

Test(seg, decr_stops_at_zero)
{
    struct seg *s = mk_default();
    set(s, "n", "5", 0);
    uint64_t v = 1;
    cr_assert_eq(incr(s, "n", 10, true, &v), SEG_OK);
    cr_assert_eq(v, 0);
    assert_value(s, "n", "0");
    seg_destroy(&s);
}

Test(seg, incr_of_non_numeric_value_is_refused)
{
    struct seg *s = mk_default();
    set(s, "a", "abc", 0);
    set(s, "b", "", 0);
    set(s, "c", "18446744073709551616", 0); /* 2^64 does not fit */
    set(s, "d", "-1", 0);
    uint64_t v;
    cr_assert_eq(incr(s, "a", 1, false, &v), SEG_NON_NUMERIC);
    cr_assert_eq(incr(s, "b", 1, false, &v), SEG_NON_NUMERIC);
    cr_assert_eq(incr(s, "c", 1, false, &v), SEG_NON_NUMERIC);
    cr_assert_eq(incr(s, "d", 1, true, &v), SEG_NON_NUMERIC);
    assert_value(s, "a", "abc");
    seg_destroy(&s);
}

Test(seg, incr_accepts_trailing_spaces)
{
    struct seg *s = mk_default();
    set(s, "n", "9 ", 0);
    uint64_t v;
    cr_assert_eq(incr(s, "n", 1, false, &v), SEG_OK);
    cr_assert_eq(v, 10);
    seg_destroy(&s);
}

Test(seg, incr_of_missing_key_is_not_found)
{
    struct seg *s = mk_default();
    uint64_t v;
    cr_assert_eq(incr(s, "n", 1, false, &v), SEG_NOT_FOUND);
    seg_destroy(&s);
}

Test(seg, incr_keeps_flags_and_expiry)
{
    struct seg *s = mk_default();
    st(s, SEG_SET, "n", "1", 77, 3, 0, NULL);
    uint64_t v;
    clk.now += 1;
    incr(s, "n", 1, false, &v);
    struct seg_view view;
    cr_assert_eq(get(s, "n", &view), SEG_OK);
    cr_assert_eq(view.flags, 77);
    clk.now += 2;
    cr_assert(!has(s, "n"));
    seg_destroy(&s);
}

/* ---- delete / touch ---- */

Test(seg, delete_removes_an_existing_key)
{
    struct seg *s = mk_default();
    set(s, "k", "v", 0);
    cr_assert_eq(del(s, "k"), SEG_DELETED);
    cr_assert(!has(s, "k"));
    cr_assert_eq(del(s, "k"), SEG_NOT_FOUND);
    struct seg_stats stats;
    seg_stats_get(s, &stats);
    cr_assert_eq(stats.items, 0);
    cr_assert_eq(stats.bytes, 0);
    seg_destroy(&s);
}

Test(seg, touch_sets_a_new_expiry_and_keeps_the_cas)
{
    struct seg *s = mk_default();
    set(s, "k", "v", 2);
    uint64_t c = cas_of(s, "k");
    cr_assert_eq(touch(s, "k", 10), SEG_TOUCHED);
    cr_assert_eq(cas_of(s, "k"), c);
    clk.now += 5;
    assert_value(s, "k", "v");
    cr_assert_eq(cas_of(s, "k"), c);
    clk.now += 5;
    cr_assert(!has(s, "k"));
    seg_destroy(&s);
}

Test(seg, touch_to_zero_makes_an_item_permanent)
{
    struct seg *s = mk_default();
    set(s, "k", "v", 2);
    cr_assert_eq(touch(s, "k", 0), SEG_TOUCHED);
    clk.now += 100000;
    assert_value(s, "k", "v");
    struct seg_view v;
    get(s, "k", &v);
    cr_assert_eq(v.ttl, -1);
    seg_destroy(&s);
}

Test(seg, touch_with_negative_exptime_expires_the_item)
{
    struct seg *s = mk_default();
    set(s, "k", "v", 0);
    cr_assert_eq(touch(s, "k", -1), SEG_TOUCHED);
    cr_assert(!has(s, "k"));
    seg_destroy(&s);
}

Test(seg, touch_of_missing_key_is_not_found)
{
    struct seg *s = mk_default();
    cr_assert_eq(touch(s, "k", 10), SEG_NOT_FOUND);
    seg_destroy(&s);
}

/* ---- expiry ---- */

Test(seg, item_with_exptime_2_is_there_after_1s_and_gone_after_3s)
{
    struct seg *s = mk_default();
    set(s, "k", "v", 2);
    clk.now += 1;
    cr_assert(has(s, "k"));
    clk.now += 2;
    cr_assert(!has(s, "k"));
    seg_destroy(&s);
}

Test(seg, short_ttls_expire_at_the_exact_second)
{
    struct seg *s = mk(8 << 20, 64 << 10, SEG_EVICT_MERGE); /* 31 buckets need 31 segments */
    char key[16];
    for (int ttl = 1; ttl < 32; ttl++) {
        snprintf(key, sizeof(key), "k%d", ttl);
        set(s, key, "v", ttl);
    }
    for (int t = 1; t <= 32; t++) {
        clk.now = T0 + t;
        for (int ttl = 1; ttl < 32; ttl++) {
            snprintf(key, sizeof(key), "k%d", ttl);
            cr_assert_eq(has(s, key), t < ttl, "ttl %d at +%d", ttl, t);
        }
    }
    seg_destroy(&s);
}

Test(seg, long_ttl_expires_early_by_at_most_its_slack)
{
    struct seg *s = mk_default();
    char key[16];
    int ttls[] = {32, 100, 1000, 3600, 86400, 2592000};
    for (int i = 0; i < 6; i++) {
        /* A later write into an older segment of the bucket is the worst case. */
        snprintf(key, sizeof(key), "k%d", i);
        set(s, "warm", "v", ttls[i]);
        clk.now += seg_ttl_slack((uint32_t)ttls[i]) / 2;
        set(s, key, "v", ttls[i]);
        int64_t stored = clk.now;
        struct seg_view v;
        cr_assert_eq(get(s, key, &v), SEG_OK);
        cr_assert_leq(v.ttl, ttls[i]);
        cr_assert_geq(v.ttl, ttls[i] - (int64_t)seg_ttl_slack((uint32_t)ttls[i]));
        clk.now = stored + ttls[i] - seg_ttl_slack((uint32_t)ttls[i]) - 1;
        cr_assert(has(s, key), "ttl %d gone too early", ttls[i]);
        clk.now = stored + ttls[i];
        cr_assert(!has(s, key), "ttl %d alive too long", ttls[i]);
        clk.now = T0;
    }
    seg_destroy(&s);
}

Test(seg, late_item_in_an_open_segment_keeps_its_exact_expiry)
{
    struct seg *s = mk_default();
    set(s, "first", "v", 20);
    clk.now += 3;
    set(s, "late", "v", 20); /* same segment, expiring 3 s after it */
    struct seg_view v;
    cr_assert_eq(get(s, "late", &v), SEG_OK);
    cr_assert_eq(v.ttl, 20);
    clk.now = T0 + 20;
    cr_assert(!has(s, "first"));
    clk.now = T0 + 22;
    cr_assert(has(s, "late"));
    clk.now = T0 + 23;
    cr_assert(!has(s, "late"));
    struct seg_stats stats;
    seg_stats_get(s, &stats);
    cr_assert_eq(stats.segs_used, 1);
    tick_for(s, 10);
    seg_stats_get(s, &stats);
    cr_assert_eq(stats.segs_used, 0, "freed once its last item expired");
    seg_destroy(&s);
}

Test(seg, slow_writes_with_one_ttl_share_a_few_segments)
{
    /* One write a second with a 20 s TTL must not hold a segment per second. */
    struct seg *s = mk(4 << 20, 64 << 10, SEG_EVICT_MERGE);
    char key[32];
    struct seg_stats stats;
    for (int t = 0; t < 120; t++) {
        snprintf(key, sizeof(key), "k%d", t);
        set(s, key, "v", 20);
        clk.now++;
        seg_tick(s);
        seg_stats_get(s, &stats);
        cr_assert_leq(stats.segs_used, 6, "at %d s: %llu segments", t,
                      (unsigned long long)stats.segs_used);
    }
    for (int t = 101; t < 120; t++) {
        snprintf(key, sizeof(key), "k%d", t);
        cr_assert(has(s, key));
    }
    seg_destroy(&s);
}

Test(seg, negative_exptime_stores_nothing_and_removes_the_old_value)
{
    struct seg *s = mk_default();
    set(s, "k", "v", 0);
    cr_assert_eq(set(s, "k", "w", -1), SEG_STORED);
    cr_assert(!has(s, "k"));
    seg_destroy(&s);
}

Test(seg, absolute_exptime_is_honoured)
{
    struct seg *s = mk_default();
    set(s, "past", "v", T0 - 10);
    set(s, "now", "v", T0);
    set(s, "future", "v", T0 + 3000000);
    cr_assert(!has(s, "past"));
    cr_assert(!has(s, "now"));
    cr_assert(has(s, "future"));
    clk.now = T0 + 3000000;
    cr_assert(!has(s, "future"));
    seg_destroy(&s);
}

Test(seg, an_expiry_is_an_absolute_time_even_a_small_one)
{
    /* The engine has no relative convention: 10 is ten seconds after 1970, long past. */
    struct seg *s = mk_default();
    struct seg_store_req r = {.mode = SEG_SET,
                              .key = "k",
                              .klen = 1,
                              .hash = seg_hash("k", 1),
                              .value = "v",
                              .vlen = 1,
                              .expire = 10};
    cr_assert_eq(seg_store(s, &r, NULL), SEG_STORED);
    cr_assert(!has(s, "k"));
    r.expire = T0 + 10;
    cr_assert_eq(seg_store(s, &r, NULL), SEG_STORED);
    cr_assert(has(s, "k"));
    cr_assert_eq(seg_touch(s, "k", 1, seg_hash("k", 1), 10), SEG_TOUCHED);
    cr_assert(!has(s, "k"));
    seg_destroy(&s);
}

Test(seg, expired_item_is_never_returned)
{
    struct seg *s = mk_default();
    char key[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        set(s, key, "v", 1 + i % 40);
    }
    for (int t = 0; t < 50; t++) {
        clk.now = T0 + t;
        for (int i = 0; i < 1000; i++) {
            snprintf(key, sizeof(key), "k%d", i);
            struct seg_view v;
            if (get(s, key, &v) == SEG_OK) {
                cr_assert_lt(t, 1 + i % 40);
                cr_assert_gt(v.ttl, 0);
            }
        }
        seg_tick(s);
    }
    seg_destroy(&s);
}

Test(seg, expired_segments_are_freed_by_tick_without_reads)
{
    struct seg *s = mk(16 << 20, 64 << 10, SEG_EVICT_MERGE);
    char key[32], val[100];
    memset(val, 'x', sizeof(val) - 1);
    val[sizeof(val) - 1] = 0;
    for (int i = 0; i < 50000; i++) {
        snprintf(key, sizeof(key), "key:%d", i);
        set(s, key, val, 5);
    }
    struct seg_stats a, b;
    seg_stats_get(s, &a);
    cr_assert_gt(a.segs_used, 50);
    clk.now += 5;
    tick_for(s, 10); /* one second of ticks */
    seg_stats_get(s, &b);
    cr_assert_eq(b.segs_used, 0);
    cr_assert_eq(b.items, 0);
    cr_assert_eq(b.bytes, 0);
    cr_assert_eq(b.expired_items, 50000);
    cr_assert_eq(b.expired_unfetched, 50000);
    seg_destroy(&s);
}

Test(seg, tick_leaves_live_segments_alone)
{
    struct seg *s = mk_default();
    set(s, "a", "v", 100);
    set(s, "b", "v", 0);
    clk.now += 50;
    tick_for(s, 10);
    cr_assert(has(s, "a"));
    cr_assert(has(s, "b"));
    seg_destroy(&s);
}

/* ---- flush_all ---- */

Test(seg, flush_now_invalidates_everything_stored_before)
{
    struct seg *s = mk_default();
    set(s, "a", "v", 0);
    set(s, "b", "v", 100);
    seg_flush(s, 0);
    cr_assert(!has(s, "a"));
    cr_assert(!has(s, "b"));
    set(s, "c", "v", 0);
    cr_assert(has(s, "c"));
    cr_assert_eq(st(s, SEG_ADD, "a", "new", 0, 0, 0, NULL), SEG_STORED);
    assert_value(s, "a", "new");
    seg_destroy(&s);
}

Test(seg, delayed_flush_takes_effect_at_its_time)
{
    struct seg *s = mk_default();
    set(s, "a", "v", 0);
    seg_flush(s, T0 + 10);
    clk.now += 5;
    cr_assert(has(s, "a"));
    set(s, "b", "v", 0); /* stored before the flush time: flushed too */
    clk.now = T0 + 10;
    cr_assert(!has(s, "a"));
    cr_assert(!has(s, "b"));
    set(s, "c", "v", 0);
    clk.now += 100;
    cr_assert(has(s, "c"), "items stored after the flush time stay");
    seg_destroy(&s);
}

Test(seg, later_flush_replaces_a_pending_one)
{
    struct seg *s = mk_default();
    seg_flush(s, T0 + 10);
    seg_flush(s, T0 + 20);
    set(s, "a", "v", 0);
    clk.now = T0 + 15;
    cr_assert(has(s, "a"));
    clk.now = T0 + 20;
    cr_assert(!has(s, "a"));
    seg_destroy(&s);
}

Test(seg, flushed_memory_is_reclaimed_by_tick)
{
    struct seg *s = mk(8 << 20, 64 << 10, SEG_EVICT_MERGE);
    char key[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "key:%d", i);
        set(s, key, "some value bytes", 0);
    }
    seg_flush(s, 0);
    tick_for(s, 10);
    struct seg_stats stats;
    seg_stats_get(s, &stats);
    cr_assert_eq(stats.segs_used, 0);
    cr_assert_eq(stats.items, 0);
    cr_assert_eq(stats.flushed_items, 20000);
    seg_destroy(&s);
}

/* ---- size limits ---- */

static char *
filled(size_t n)
{
    char *p = malloc(n + 1);
    memset(p, 'v', n);
    p[n] = 0;
    return p;
}

Test(seg, largest_memcached_value_is_stored)
{
    struct seg *s = mk(8 << 20, 1 << 20, SEG_EVICT_MERGE);
    char *big = filled(1047552);
    char key[251];
    memset(key, 'k', 250);
    key[250] = 0;
    cr_assert_eq(set(s, key, big, 0), SEG_STORED);
    struct seg_view v;
    cr_assert_eq(get(s, key, &v), SEG_OK);
    cr_assert_eq(v.vlen, 1047552);
    free(big);
    seg_destroy(&s);
}

Test(seg, value_over_the_limit_is_too_large_and_removes_the_old_value)
{
    struct seg *s = mk(8 << 20, 1 << 20, SEG_EVICT_MERGE);
    char *big = filled(1049600);
    set(s, "k", "old", 0);
    cr_assert_eq(set(s, "k", big, 0), SEG_TOO_LARGE);
    cr_assert(!has(s, "k"));
    cr_assert_eq(st(s, SEG_ADD, "k2", big, 0, 0, 0, NULL), SEG_TOO_LARGE);
    size_t limit = (1 << 20) - SEG_ITEM_OVERHEAD - 1;
    big[limit] = 0;
    cr_assert_eq(set(s, "k", big, 0), SEG_STORED);
    big[limit] = 'v';
    big[limit + 1] = 0;
    cr_assert_eq(set(s, "k", big, 0), SEG_TOO_LARGE);
    struct seg_stats stats;
    seg_stats_get(s, &stats);
    cr_assert_eq(stats.store_too_large, 3);
    free(big);
    seg_destroy(&s);
}

Test(seg, append_beyond_the_limit_is_too_large)
{
    struct seg *s = mk(8 << 20, 1 << 20, SEG_EVICT_MERGE);
    char *big = filled(600000);
    set(s, "k", big, 0);
    cr_assert_eq(st(s, SEG_APPEND, "k", big, 0, 0, 0, NULL), SEG_TOO_LARGE);
    struct seg_view v;
    cr_assert_eq(get(s, "k", &v), SEG_OK);
    cr_assert_eq(v.vlen, 600000);
    free(big);
    seg_destroy(&s);
}

Test(seg, key_of_250_bytes_is_stored_and_251_refused)
{
    struct seg *s = mk_default();
    char key[252];
    memset(key, 'k', 251);
    key[250] = 0;
    cr_assert_eq(set(s, key, "v", 0), SEG_STORED);
    cr_assert(has(s, key));
    key[250] = 'k';
    key[251] = 0;
    cr_assert_eq(set(s, key, "v", 0), SEG_TOO_LARGE);
    seg_destroy(&s);
}

/* ---- eviction and the memory bound ---- */

/* Write 10x the memory in 100-byte values; check bound and that every hit is right. */
static void
fill_ten_times(enum seg_evict_policy p)
{
    size_t mem = 1 << 20;
    struct seg *s = mk(mem, 64 << 10, p);
    char key[32], val[128];
    int n = (int)(10 * mem / 100);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "key:%d", i);
        snprintf(val, sizeof(val), "%-80d", i);
        enum seg_result r = set(s, key, val, i % 2 ? 0 : 3600);
        cr_assert_eq(r, SEG_STORED, "%s at %d", seg_evict_policy_names[p], i);
        struct seg_stats stats;
        seg_stats_get(s, &stats);
        cr_assert_leq(stats.segs_used, stats.segs_total);
        cr_assert_leq(stats.bytes, stats.heap_bytes);
    }
    int hits = 0;
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "key:%d", i);
        snprintf(val, sizeof(val), "%-80d", i);
        struct seg_view v;
        if (get(s, key, &v) == SEG_OK) {
            hits++;
            cr_assert_eq(v.vlen, strlen(val));
            cr_assert(memcmp(v.value, val, v.vlen) == 0);
        }
    }
    struct seg_stats stats;
    seg_stats_get(s, &stats);
    cr_assert_eq(stats.heap_bytes, mem);
    cr_assert_gt(stats.evicted_items, 0);
    cr_assert_eq((uint64_t)hits, stats.items);
    /* Most of the heap still holds readable items. */
    cr_assert_gt(hits, (int)(mem / 100 / 2), "%s kept only %d", seg_evict_policy_names[p], hits);
    seg_destroy(&s);
}

Test(seg, merge_eviction_keeps_memory_bounded_and_values_right)
{
    fill_ten_times(SEG_EVICT_MERGE);
}

Test(seg, fifo_eviction_keeps_memory_bounded_and_values_right)
{
    fill_ten_times(SEG_EVICT_FIFO);
}

Test(seg, random_eviction_keeps_memory_bounded_and_values_right)
{
    fill_ten_times(SEG_EVICT_RANDOM);
}

Test(seg, cte_eviction_keeps_memory_bounded_and_values_right)
{
    fill_ten_times(SEG_EVICT_CTE);
}

Test(seg, util_eviction_keeps_memory_bounded_and_values_right)
{
    fill_ten_times(SEG_EVICT_UTIL);
}

Test(seg, no_eviction_fails_writes_with_out_of_memory)
{
    struct seg *s = mk(256 << 10, 64 << 10, SEG_EVICT_NONE);
    char key[32], val[200];
    memset(val, 'x', 199);
    val[199] = 0;
    int i = 0;
    enum seg_result r = SEG_STORED;
    for (; i < 10000 && r == SEG_STORED; i++) {
        snprintf(key, sizeof(key), "key:%d", i);
        r = set(s, key, val, 0);
    }
    cr_assert_eq(r, SEG_NO_MEMORY);
    cr_assert_lt(i, 10000);
    cr_assert(has(s, "key:0"), "nothing was evicted");
    struct seg_stats stats;
    seg_stats_get(s, &stats);
    cr_assert_eq(stats.evicted_items, 0);
    cr_assert_eq(stats.store_no_memory, 1);
    /* Expired memory is still reused. */
    seg_destroy(&s);
}

Test(seg, no_eviction_still_reuses_expired_memory)
{
    struct seg *s = mk(256 << 10, 64 << 10, SEG_EVICT_NONE);
    char key[32], val[200];
    memset(val, 'x', 199);
    val[199] = 0;
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "key:%d", i);
        cr_assert_eq(set(s, key, val, 1), SEG_STORED, "at %d", i);
        if (i % 500 == 499) {
            clk.now++;
        }
    }
    seg_destroy(&s);
}

Test(seg, fifo_evicts_the_oldest_items_first)
{
    struct seg *s = mk(256 << 10, 64 << 10, SEG_EVICT_FIFO);
    char key[32], val[200];
    memset(val, 'x', 199);
    val[199] = 0;
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "key:%d", i);
        set(s, key, val, 0);
    }
    cr_assert(!has(s, "key:0"));
    cr_assert(has(s, "key:1999"));
    seg_destroy(&s);
}

Test(seg, cte_evicts_what_expires_soonest)
{
    struct seg *s = mk(512 << 10, 64 << 10, SEG_EVICT_CTE);
    char key[32], val[200];
    memset(val, 'x', 199);
    val[199] = 0;
    /* Short-lived items first, long-lived after: CTE drops the short ones although older. */
    for (int i = 0; i < 600; i++) {
        snprintf(key, sizeof(key), "long:%d", i);
        set(s, key, val, 100000);
    }
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof(key), "short:%d", i);
        set(s, key, val, 1000);
    }
    cr_assert(has(s, "long:0"));
    cr_assert(!has(s, "short:0"));
    seg_destroy(&s);
}

Test(seg, util_evicts_the_emptiest_segment)
{
    struct seg *s = mk(256 << 10, 64 << 10, SEG_EVICT_UTIL);
    char key[32], val[200];
    memset(val, 'x', 199);
    val[199] = 0;
    int per_seg = (64 << 10) / 210;
    /* Fill the first segment, then the second, and delete most of the second. */
    for (int i = 0; i < 2 * per_seg; i++) {
        snprintf(key, sizeof(key), "key:%d", i);
        set(s, key, val, 0);
    }
    for (int i = per_seg + 5; i < 2 * per_seg; i++) {
        snprintf(key, sizeof(key), "key:%d", i);
        del(s, key);
    }
    for (int i = 0; i < 3 * per_seg; i++) {
        snprintf(key, sizeof(key), "more:%d", i);
        set(s, key, val, 0);
    }
    cr_assert(has(s, "key:0"), "the full, older segment survives");
    snprintf(key, sizeof(key), "key:%d", per_seg + 1);
    cr_assert(!has(s, key));
    seg_destroy(&s);
}

Test(seg, merge_keeps_frequently_read_items)
{
    struct seg *s = mk(1 << 20, 64 << 10, SEG_EVICT_MERGE);
    char key[32], val[200];
    memset(val, 'x', 199);
    val[199] = 0;
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "hot:%d", i);
        set(s, key, val, 0);
    }
    int n = 20000;
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "cold:%d", i);
        set(s, key, val, 0);
        if (i % 50 == 0) {
            for (int j = 0; j < 200; j++) {
                snprintf(key, sizeof(key), "hot:%d", j);
                has(s, key);
            }
        }
    }
    int hot = 0, cold = 0;
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "hot:%d", i);
        hot += has(s, key);
    }
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "cold:%d", i);
        cold += has(s, key);
    }
    struct seg_stats stats;
    seg_stats_get(s, &stats);
    cr_assert_gt(stats.merges, 0);
    cr_assert_geq(hot, 190, "hot kept %d of 200", hot);
    cr_assert_lt(cold * 100 / n, 50, "cold kept %d of %d", cold, n);
    seg_destroy(&s);
}

Test(seg, merge_relocation_keeps_the_cas)
{
    struct seg *s = mk(1 << 20, 64 << 10, SEG_EVICT_MERGE);
    char key[32], val[200];
    memset(val, 'x', 199);
    val[199] = 0;
    uint64_t cas[100];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "hot:%d", i);
        st(s, SEG_SET, key, val, 0, 0, 0, &cas[i]);
    }
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "cold:%d", i);
        set(s, key, val, 0);
        if (i % 50 == 0) {
            for (int j = 0; j < 100; j++) {
                snprintf(key, sizeof(key), "hot:%d", j);
                struct seg_view v;
                if (get(s, key, &v) == SEG_OK) {
                    cr_assert_eq(v.cas, cas[j], "hot:%d changed CAS after a move", j);
                }
            }
        }
    }
    struct seg_stats stats;
    seg_stats_get(s, &stats);
    cr_assert_gt(stats.merges, 10);
    int kept = 0;
    for (int j = 0; j < 100; j++) {
        snprintf(key, sizeof(key), "hot:%d", j);
        kept += has(s, key);
    }
    cr_assert_gt(kept, 90);
    seg_destroy(&s);
}

/* ---- reserve / commit ---- */

static struct seg_store_req
req_of(enum seg_store_mode mode, const char *key, size_t vlen, int64_t expire)
{
    return (struct seg_store_req){.mode = mode,
                                  .key = key,
                                  .klen = strlen(key),
                                  .hash = seg_hash(key, strlen(key)),
                                  .vlen = vlen,
                                  .flags = 5,
                                  .expire = expire};
}

Test(seg, reserve_then_commit_stores_the_value)
{
    struct seg *s = mk_default();
    struct seg_store_req r = req_of(SEG_SET, "k", 5, 0);
    struct seg_reservation res;
    cr_assert_eq(seg_reserve(s, &r, &res), SEG_OK);
    cr_assert_eq(res.vlen, 5);
    cr_assert(!has(s, "k"), "not visible before commit");
    memcpy(res.value, "hello", 5);
    uint64_t cas = 0;
    cr_assert_eq(seg_commit(s, &res, &cas), SEG_STORED);
    assert_value(s, "k", "hello");
    cr_assert_eq(cas_of(s, "k"), cas);
    seg_destroy(&s);
}

Test(seg, reservation_survives_other_writes_and_eviction)
{
    struct seg *s = mk(256 << 10, 64 << 10, SEG_EVICT_FIFO);
    struct seg_store_req r = req_of(SEG_SET, "big", 1000, 0);
    struct seg_reservation res;
    cr_assert_eq(seg_reserve(s, &r, &res), SEG_OK);
    memset(res.value, 'b', 1000);
    char key[32], val[200];
    memset(val, 'x', 199);
    val[199] = 0;
    for (int i = 0; i < 5000; i++) { /* 4x the memory */
        snprintf(key, sizeof(key), "key:%d", i);
        set(s, key, val, 0);
    }
    cr_assert_eq(seg_commit(s, &res, NULL), SEG_STORED);
    struct seg_view v;
    cr_assert_eq(get(s, "big", &v), SEG_OK);
    cr_assert_eq(v.vlen, 1000);
    cr_assert_eq(v.value[999], 'b');
    cr_assert_eq(v.flags, 5);
    seg_destroy(&s);
}

Test(seg, aborted_reservation_stores_nothing)
{
    struct seg *s = mk_default();
    set(s, "k", "old", 0);
    struct seg_store_req r = req_of(SEG_SET, "k", 3, 0);
    struct seg_reservation res;
    cr_assert_eq(seg_reserve(s, &r, &res), SEG_OK);
    memcpy(res.value, "new", 3);
    seg_abort(s, &res);
    assert_value(s, "k", "old");
    seg_destroy(&s);
}

Test(seg, committed_add_on_existing_key_is_not_stored)
{
    struct seg *s = mk_default();
    struct seg_store_req r = req_of(SEG_ADD, "k", 3, 0);
    struct seg_reservation res;
    cr_assert_eq(seg_reserve(s, &r, &res), SEG_OK);
    memcpy(res.value, "new", 3);
    set(s, "k", "old", 0); /* arrives while the value is being received */
    cr_assert_eq(seg_commit(s, &res, NULL), SEG_NOT_STORED);
    assert_value(s, "k", "old");
    seg_destroy(&s);
}

Test(seg, reserved_append_is_applied_at_commit)
{
    struct seg *s = mk_default();
    set(s, "k", "abc", 0);
    struct seg_store_req r = req_of(SEG_APPEND, "k", 3, 0);
    struct seg_reservation res;
    cr_assert_eq(seg_reserve(s, &r, &res), SEG_OK);
    memcpy(res.value, "def", 3);
    cr_assert_eq(seg_commit(s, &res, NULL), SEG_STORED);
    assert_value(s, "k", "abcdef");
    seg_destroy(&s);
}

Test(seg, reservation_committed_after_flush_is_stored)
{
    struct seg *s = mk_default();
    struct seg_store_req r = req_of(SEG_SET, "k", 3, 0);
    struct seg_reservation res;
    cr_assert_eq(seg_reserve(s, &r, &res), SEG_OK);
    memcpy(res.value, "new", 3);
    seg_flush(s, 0);
    tick_for(s, 10);
    cr_assert_eq(seg_commit(s, &res, NULL), SEG_STORED);
    assert_value(s, "k", "new");
    seg_destroy(&s);
}

Test(seg, oversized_reservation_is_refused)
{
    struct seg *s = mk_default();
    struct seg_store_req r = req_of(SEG_SET, "k", 2 << 20, 0);
    struct seg_reservation res;
    cr_assert_eq(seg_reserve(s, &r, &res), SEG_TOO_LARGE);
    cr_assert(!res.active);
    seg_destroy(&s);
}

/* ---- stats ---- */

Test(seg, stats_count_hits_misses_and_items)
{
    struct seg *s = mk_default();
    set(s, "a", "12345", 0);
    set(s, "b", "1", 10);
    has(s, "a");
    has(s, "a");
    has(s, "zz");
    struct seg_stats stats;
    seg_stats_get(s, &stats);
    cr_assert_eq(stats.hits, 2);
    cr_assert_eq(stats.misses, 1);
    cr_assert_eq(stats.items, 2);
    cr_assert_eq(stats.total_items, 2);
    cr_assert_eq(stats.bytes, (5 + 1 + 5) + (5 + 1 + 1)); /* header + key + value */
    cr_assert_eq(stats.segs_used, 2);
    cr_assert_gt(stats.hash_bytes, 0);
    seg_destroy(&s);
}

Test(seg, ttl_bucket_summary_reports_items_per_bucket)
{
    struct seg *s = mk_default();
    set(s, "a", "v", 0);
    set(s, "b", "v", 10);
    set(s, "c", "v", 10);
    set(s, "d", "v", 5000);
    uint64_t total = 0;
    int nonempty = 0;
    for (size_t i = 0; i < seg_ttl_bucket_count(); i++) {
        struct seg_ttl_stats t;
        cr_assert_eq(seg_ttl_stats_get(s, i, &t), 0);
        total += t.items;
        nonempty += t.items > 0;
        if (t.items == 2) {
            cr_assert_eq(t.ttl_lo, 10);
            cr_assert_eq(t.ttl_hi, 10);
        }
        if (t.items == 1 && t.ttl_lo > 0) {
            cr_assert_leq(t.ttl_lo, 5000);
            cr_assert_geq(t.ttl_hi, 5000);
        }
    }
    cr_assert_eq(total, 4);
    cr_assert_eq(nonempty, 3);
    struct seg_ttl_stats t;
    cr_assert_eq(seg_ttl_stats_get(s, seg_ttl_bucket_count(), &t), -EINVAL);
    seg_destroy(&s);
}

/* The bucket a relative TTL's items go to (ttl 0: the "never expires" bucket). */
static size_t
bucket_of_ttl(struct seg *s, uint32_t ttl)
{
    for (size_t i = 0; i < seg_ttl_bucket_count(); i++) {
        struct seg_ttl_stats t;
        cr_assert_eq(seg_ttl_stats_get(s, i, &t), 0);
        if (t.ttl_lo <= ttl && ttl <= t.ttl_hi) {
            return i;
        }
    }
    cr_assert_fail("no bucket for %u", ttl);
    return 0;
}

static struct seg_ttl_stats
bucket_stats(struct seg *s, uint32_t ttl)
{
    struct seg_ttl_stats t;
    cr_assert_eq(seg_ttl_stats_get(s, bucket_of_ttl(s, ttl), &t), 0);
    return t;
}

Test(seg, a_read_gives_the_ttl_bucket_of_the_item)
{
    struct seg *s = mk_default();
    const uint32_t ttls[] = {0, 10, 5000};
    const char *keys[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        set(s, keys[i], "v", ttls[i]);
    }
    for (int i = 0; i < 3; i++) {
        struct seg_view v;
        cr_assert_eq(get(s, keys[i], &v), SEG_OK);
        cr_assert_eq(v.bucket, bucket_of_ttl(s, ttls[i]), "%s", keys[i]);
    }
    seg_destroy(&s);
}

Test(seg, ttl_bucket_of_an_expiry_is_the_one_a_store_writes_to)
{
    struct seg *s = mk_default();
    const uint32_t ttls[] = {0, 1, 10, 31, 32, 100, 5000, 1000000};
    for (int i = 0; i < 8; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", i);
        cr_assert_eq(set(s, key, "v", ttls[i]), SEG_STORED);
        struct seg_view v;
        cr_assert_eq(get(s, key, &v), SEG_OK);
        cr_assert_eq(seg_ttl_bucket_of(s, at(s, ttls[i])), v.bucket, "ttl %u", ttls[i]);
        cr_assert_eq(v.bucket, bucket_of_ttl(s, ttls[i]), "ttl %u", ttls[i]);
    }
    cr_assert_eq(seg_ttl_bucket_of(s, seg_now(s)), 1); /* already past: the shortest TTL's */
    cr_assert_eq(seg_ttl_bucket_of(s, -1), 1);
    cr_assert_eq(seg_ttl_bucket_of(s, INT64_MAX), seg_ttl_bucket_of(s, UINT32_MAX));
    cr_assert_eq(seg_ttl_bucket_count(), SEG_TTL_BUCKETS);
    seg_destroy(&s);
}

Test(seg, last_bucket_is_that_of_the_item_a_delete_removed)
{
    struct seg *s = mk_default();
    set(s, "d", "v", 10);
    set(s, "other", "v", 0);
    set(s, "other", "w", 0); /* found "other", in bucket 0 */
    cr_assert_eq(del(s, "d"), SEG_DELETED);
    cr_assert_eq(seg_last_bucket(s), bucket_of_ttl(s, 10));
    seg_destroy(&s);
}

Test(seg, last_bucket_is_where_a_touched_item_was_before_it_moved)
{
    struct seg *s = mk_default();
    set(s, "t", "v", 0);
    cr_assert_eq(seg_touch(s, "t", 1, seg_hash("t", 1), at(s, 100)), SEG_TOUCHED);
    cr_assert_eq(seg_last_bucket(s), bucket_of_ttl(s, 0));
    struct seg_view v;
    cr_assert_eq(get(s, "t", &v), SEG_OK);
    cr_assert_eq(v.bucket, bucket_of_ttl(s, 100));
    seg_destroy(&s);
}

Test(seg, last_bucket_is_that_of_the_number_an_incr_changed)
{
    struct seg *s = mk_default();
    set(s, "n", "5", 10);
    uint64_t value;
    cr_assert_eq(seg_incr(s, "n", 1, seg_hash("n", 1), 1, false, &value, NULL), SEG_OK);
    cr_assert_eq(seg_last_bucket(s), bucket_of_ttl(s, 10));
    seg_destroy(&s);
}

Test(seg, last_bucket_is_that_of_the_item_a_store_compared_or_refused_to_add_over)
{
    struct seg *s = mk_default();
    uint64_t cas;
    cr_assert_eq(st(s, SEG_SET, "x", "v", 0, 10, 0, &cas), SEG_STORED);
    cr_assert_eq(st(s, SEG_ADD, "x", "w", 0, 5000, 0, NULL), SEG_NOT_STORED);
    cr_assert_eq(seg_last_bucket(s), bucket_of_ttl(s, 10));
    cr_assert_eq(st(s, SEG_CAS, "x", "w", 0, 0, cas + 1, NULL), SEG_EXISTS);
    cr_assert_eq(seg_last_bucket(s), bucket_of_ttl(s, 10));
    cr_assert_eq(st(s, SEG_CAS, "x", "w", 0, 0, cas, NULL), SEG_STORED); /* moves it to ttl 0 */
    cr_assert_eq(seg_last_bucket(s), bucket_of_ttl(s, 10));
    cr_assert_eq(st(s, SEG_SET, "x", "z", 0, 5000, 0, NULL), SEG_STORED);
    cr_assert_eq(seg_last_bucket(s), bucket_of_ttl(s, 0)); /* the version it replaced */
    seg_destroy(&s);
}

Test(seg, ttl_bucket_counts_its_expired_items_and_those_never_read)
{
    struct seg *s = mk_default();
    set(s, "a", "v", 10);
    set(s, "b", "v", 10);
    set(s, "c", "v", 10);
    set(s, "forever", "v", 0);
    struct seg_view v;
    cr_assert_eq(get(s, "a", &v), SEG_OK);
    clk.now += 11;
    tick_for(s, 2);
    struct seg_ttl_stats t = bucket_stats(s, 10);
    cr_assert_eq(t.items, 0);
    cr_assert_eq(t.expired, 3);
    cr_assert_eq(t.expired_unfetched, 2);
    cr_assert_eq(t.evicted, 0);
    cr_assert_eq(bucket_stats(s, 0).expired, 0);
    seg_destroy(&s);
}

Test(seg, ttl_bucket_counts_the_evictions_of_its_own_segments)
{
    /* Four segments of 4 KiB, oldest first evicted: the TTL items written first fill three,
     * so the never-expiring items that follow evict the oldest of those. */
    struct seg *s = mk(4 * 4096, 4096, SEG_EVICT_FIFO);
    char key[16], val[101];
    memset(val, 'v', 100);
    val[100] = '\0';
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "t%d", i);
        cr_assert_eq(set(s, key, val, 1000), SEG_STORED);
    }
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "n%d", i);
        cr_assert_eq(set(s, key, val, 0), SEG_STORED);
    }
    struct seg_stats ss;
    seg_stats_get(s, &ss);
    cr_assert_gt(ss.evicted_items, 0);
    struct seg_ttl_stats ttl = bucket_stats(s, 1000), never = bucket_stats(s, 0);
    cr_assert_eq(ttl.evicted, ss.evicted_items);
    cr_assert_eq(ttl.evicted_unfetched, ss.evicted_items); /* none was read */
    cr_assert_eq(ttl.items + ttl.evicted, 100);
    cr_assert_eq(never.evicted, 0);
    cr_assert_eq(never.items, 100);
    seg_destroy(&s);
}

Test(seg, ttl_bucket_counts_its_refused_allocations)
{
    struct seg *s = mk(2 * 4096, 4096, SEG_EVICT_NONE);
    char key[16], val[101];
    memset(val, 'v', 100);
    val[100] = '\0';
    unsigned refused = 0;
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        refused += set(s, key, val, 100) == SEG_NO_MEMORY;
    }
    cr_assert_gt(refused, 0);
    cr_assert_eq(bucket_stats(s, 100).no_memory, refused);
    cr_assert_eq(bucket_stats(s, 0).no_memory, 0);
    seg_destroy(&s);
}

Test(seg, ttl_bucket_oldest_is_its_oldest_segment_holding_an_item)
{
    struct seg *s = mk(8 * 4096, 4096, SEG_EVICT_MERGE);
    char val[4001];
    memset(val, 'v', 4000);
    val[4000] = '\0';
    cr_assert_eq(bucket_stats(s, 0).oldest, 0); /* no items */
    cr_assert_eq(set(s, "a", val, 0), SEG_STORED);
    clk.now += 10;
    cr_assert_eq(set(s, "b", val, 0), SEG_STORED); /* does not fit beside a: a new segment */
    cr_assert_eq(bucket_stats(s, 0).oldest, T0);
    cr_assert_eq(del(s, "a"), SEG_DELETED); /* its segment stays, holding no item */
    cr_assert_eq(bucket_stats(s, 0).segs, 2);
    cr_assert_eq(bucket_stats(s, 0).oldest, T0 + 10);
    seg_destroy(&s);
}

Test(seg, instances_are_independent)
{
    struct seg *a = mk_default();
    struct seg *b = mk_default();
    set(a, "k", "a", 0);
    cr_assert(!has(b, "k"));
    seg_flush(b, 0);
    cr_assert(has(a, "k"));
    seg_destroy(&a);
    seg_destroy(&b);
}

/* ---- item state (meta protocol): fetched, stale, win token, caller CAS, age ---- */

static enum seg_result
peek(struct seg *s, const char *key, struct seg_view *v)
{
    return seg_peek(s, key, strlen(key), seg_hash(key, strlen(key)), v);
}

static unsigned
state_of(struct seg *s, const char *key)
{
    struct seg_view v;
    cr_assert_eq(peek(s, key, &v), SEG_OK, "%s missing", key);
    return v.state;
}

static enum seg_result
mark(struct seg *s, const char *key, unsigned set_bits, unsigned clear_bits)
{
    return seg_mark(s, key, strlen(key), seg_hash(key, strlen(key)), set_bits, clear_bits);
}

Test(seg, first_read_reports_unfetched_and_marks_the_item)
{
    struct seg *s = mk_default();
    set(s, "k", "v", 0);
    struct seg_view v;
    cr_assert_eq(get(s, "k", &v), SEG_OK);
    cr_assert_eq(v.state & SEG_ST_FETCHED, 0);
    cr_assert_eq(get(s, "k", &v), SEG_OK);
    cr_assert_eq(v.state & SEG_ST_FETCHED, SEG_ST_FETCHED);
    seg_destroy(&s);
}

Test(seg, peek_neither_marks_nor_changes_the_item)
{
    struct seg *s = mk_default();
    set(s, "k", "v", 0);
    uint64_t cas = cas_of(s, "k"); /* a read: marks it */
    set(s, "j", "w", 0);
    struct seg_view v;
    cr_assert_eq(peek(s, "j", &v), SEG_OK);
    cr_assert_eq(peek(s, "j", &v), SEG_OK);
    cr_assert_eq(v.state, 0);
    cr_assert_eq(v.vlen, 1);
    cr_assert_eq(peek(s, "k", &v), SEG_OK);
    cr_assert_eq(v.state, SEG_ST_FETCHED);
    cr_assert_eq(v.cas, cas);
    cr_assert_eq(peek(s, "nope", &v), SEG_NOT_FOUND);
    seg_destroy(&s);
}

Test(seg, mark_sets_and_clears_bits_in_place)
{
    struct seg *s = mk_default();
    set(s, "k", "v", 0);
    uint64_t cas = cas_of(s, "k");
    cr_assert_eq(mark(s, "k", SEG_ST_WIN | SEG_ST_STALE, 0), SEG_OK);
    cr_assert_eq(state_of(s, "k"), SEG_ST_FETCHED | SEG_ST_WIN | SEG_ST_STALE);
    cr_assert_eq(mark(s, "k", 0, SEG_ST_STALE), SEG_OK);
    cr_assert_eq(state_of(s, "k"), SEG_ST_FETCHED | SEG_ST_WIN);
    cr_assert_eq(cas_of(s, "k"), cas);
    assert_value(s, "k", "v");
    cr_assert_eq(mark(s, "nope", SEG_ST_WIN, 0), SEG_NOT_FOUND);
    seg_destroy(&s);
}

Test(seg, a_new_version_starts_without_state)
{
    struct seg *s = mk_default();
    set(s, "k", "v", 0);
    mark(s, "k", SEG_ST_WIN | SEG_ST_STALE | SEG_ST_FETCHED, 0);
    set(s, "k", "w", 0);
    cr_assert_eq(state_of(s, "k"), 0);
    mark(s, "k", SEG_ST_WIN, 0);
    cr_assert_eq(st(s, SEG_APPEND, "k", "x", 0, 0, 0, NULL), SEG_STORED);
    cr_assert_eq(state_of(s, "k"), 0);
    seg_destroy(&s);
}

Test(seg, touch_and_incr_keep_the_state_bits)
{
    struct seg *s = mk_default();
    set(s, "k", "5", 100);
    mark(s, "k", SEG_ST_WIN | SEG_ST_FETCHED, 0);
    cr_assert_eq(touch(s, "k", 5000), SEG_TOUCHED); /* another TTL bucket: the item moves */
    cr_assert_eq(state_of(s, "k"), SEG_ST_WIN | SEG_ST_FETCHED);
    uint64_t n;
    cr_assert_eq(incr(s, "k", 1, false, &n), SEG_OK);
    cr_assert_eq(state_of(s, "k"), SEG_ST_WIN | SEG_ST_FETCHED);
    seg_destroy(&s);
}

Test(seg, merge_keeps_the_state_bits_of_moved_items)
{
    struct seg *s = mk(1 << 20, 64 << 10, SEG_EVICT_MERGE);
    char key[32], val[200];
    memset(val, 'x', 199);
    val[199] = 0;
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "hot:%d", i);
        set(s, key, val, 0);
        mark(s, key, SEG_ST_STALE, 0);
    }
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "cold:%d", i);
        set(s, key, val, 0);
        if (i % 50 == 0) {
            for (int j = 0; j < 50; j++) {
                snprintf(key, sizeof(key), "hot:%d", j);
                struct seg_view v;
                if (get(s, key, &v) == SEG_OK) {
                    cr_assert(v.state & SEG_ST_STALE, "hot:%d lost its stale bit in a move", j);
                }
            }
        }
    }
    struct seg_stats stats;
    seg_stats_get(s, &stats);
    cr_assert_gt(stats.merges, 10);
    seg_destroy(&s);
}

Test(seg, store_with_new_cas_gives_the_item_that_cas)
{
    struct seg *s = mk_default();
    struct seg_store_req r = {.mode = SEG_SET,
                              .key = "k",
                              .klen = 1,
                              .hash = seg_hash("k", 1),
                              .value = "v",
                              .vlen = 1,
                              .new_cas = 123456789};
    uint64_t cas = 0;
    cr_assert_eq(seg_store(s, &r, &cas), SEG_STORED);
    cr_assert_eq(cas, 123456789);
    cr_assert_eq(cas_of(s, "k"), 123456789);
    cr_assert_eq(st(s, SEG_CAS, "k", "w", 0, 0, 123456789, NULL), SEG_STORED);
    cr_assert_neq(cas_of(s, "k"), 123456789);
    seg_destroy(&s);
}

Test(seg, reserved_store_with_new_cas_gives_the_item_that_cas)
{
    struct seg *s = mk_default();
    struct seg_store_req r = {
        .mode = SEG_SET, .key = "k", .klen = 1, .hash = seg_hash("k", 1), .vlen = 2, .new_cas = 77};
    struct seg_reservation res;
    cr_assert_eq(seg_reserve(s, &r, &res), SEG_OK);
    memcpy(res.value, "hi", 2);
    uint64_t cas = 0;
    cr_assert_eq(seg_commit(s, &res, &cas), SEG_STORED);
    cr_assert_eq(cas, 77);
    cr_assert_eq(cas_of(s, "k"), 77);
    assert_value(s, "k", "hi");
    seg_destroy(&s);
}

Test(seg, incr_with_new_cas_gives_the_result_that_cas)
{
    struct seg *s = mk_default();
    set(s, "n", "41", 0);
    uint64_t v = 0, cas = 0;
    cr_assert_eq(seg_incr_cas(s, "n", 1, seg_hash("n", 1), 1, false, 4242, &v, &cas), SEG_OK);
    cr_assert_eq(v, 42);
    cr_assert_eq(cas, 4242);
    cr_assert_eq(cas_of(s, "n"), 4242);
    seg_destroy(&s);
}

static enum seg_result
store_invalidate(struct seg *s, const char *key, const char *val, int64_t exptime, uint64_t cas)
{
    struct seg_store_req r = {.mode = SEG_CAS,
                              .key = key,
                              .klen = strlen(key),
                              .hash = seg_hash(key, strlen(key)),
                              .value = val,
                              .vlen = strlen(val),
                              .expire = at(s, exptime),
                              .cas = cas,
                              .invalidate = true};
    return seg_store(s, &r, NULL);
}

Test(seg, invalidating_store_with_a_lower_cas_stores_a_stale_value_with_the_old_expiry)
{
    struct seg *s = mk_default();
    set(s, "a", "a", 0);
    set(s, "k", "old", 100);
    mark(s, "k", SEG_ST_WIN, 0);
    uint64_t cas = cas_of(s, "k");
    cr_assert_eq(store_invalidate(s, "k", "new", 10, cas - 1), SEG_STORED);
    struct seg_view v;
    cr_assert_eq(peek(s, "k", &v), SEG_OK);
    cr_assert_eq(v.state, SEG_ST_STALE | SEG_ST_WIN);
    cr_assert_eq(v.ttl, 100);
    cr_assert_neq(v.cas, cas);
    assert_value(s, "k", "new");
    seg_destroy(&s);
}

Test(seg, invalidating_store_with_a_higher_cas_is_exists_and_a_match_stores_normally)
{
    struct seg *s = mk_default();
    set(s, "k", "old", 100);
    uint64_t cas = cas_of(s, "k");
    cr_assert_eq(store_invalidate(s, "k", "new", 10, cas + 1), SEG_EXISTS);
    assert_value(s, "k", "old");
    cr_assert_eq(store_invalidate(s, "k", "new", 10, cas), SEG_STORED);
    struct seg_view v;
    cr_assert_eq(peek(s, "k", &v), SEG_OK);
    cr_assert_eq(v.state, 0);
    cr_assert_eq(v.ttl, 10);
    seg_destroy(&s);
}

Test(seg, invalidate_marks_stale_clears_the_token_and_bumps_the_cas)
{
    struct seg *s = mk_default();
    set(s, "k", "v", 100);
    uint64_t cas = cas_of(s, "k");
    mark(s, "k", SEG_ST_WIN, 0);
    uint64_t ncas = 0;
    cr_assert_eq(seg_invalidate(s, "k", 1, seg_hash("k", 1), false, 0, 0, &ncas), SEG_OK);
    struct seg_view v;
    cr_assert_eq(peek(s, "k", &v), SEG_OK);
    cr_assert_eq(v.state, SEG_ST_FETCHED | SEG_ST_STALE);
    cr_assert_eq(v.cas, ncas);
    cr_assert_neq(v.cas, cas);
    cr_assert_eq(v.ttl, 100);
    assert_value(s, "k", "v");
    seg_destroy(&s);
}

Test(seg, invalidate_may_set_the_ttl_and_the_cas)
{
    struct seg *s = mk_default();
    set(s, "k", "v", 100);
    cr_assert_eq(seg_invalidate(s, "k", 1, seg_hash("k", 1), true, at(s, 50), 999, NULL), SEG_OK);
    struct seg_view v;
    cr_assert_eq(peek(s, "k", &v), SEG_OK);
    cr_assert_eq(v.ttl, 50);
    cr_assert_eq(v.cas, 999);
    cr_assert_eq(seg_invalidate(s, "nope", 4, seg_hash("nope", 4), false, 0, 0, NULL),
                 SEG_NOT_FOUND);
    seg_destroy(&s);
}

Test(seg, clear_value_keeps_flags_and_expiry_and_drops_the_state)
{
    struct seg *s = mk_default();
    cr_assert_eq(st(s, SEG_SET, "k", "hello", 9, 100, 0, NULL), SEG_STORED);
    uint64_t cas = cas_of(s, "k");
    uint64_t ncas = 0;
    cr_assert_eq(seg_clear_value(s, "k", 1, seg_hash("k", 1), 0, &ncas), SEG_OK);
    struct seg_view v;
    cr_assert_eq(peek(s, "k", &v), SEG_OK);
    cr_assert_eq(v.vlen, 0);
    cr_assert_eq(v.flags, 9);
    cr_assert_eq(v.ttl, 100);
    cr_assert_eq(v.state, 0);
    cr_assert_eq(v.cas, ncas);
    cr_assert_neq(v.cas, cas);
    cr_assert_eq(seg_clear_value(s, "k", 1, seg_hash("k", 1), 31337, NULL), SEG_OK);
    cr_assert_eq(cas_of(s, "k"), 31337);
    seg_destroy(&s);
}

Test(seg, age_counts_from_the_segment_opening_and_not_from_reads)
{
    struct seg *s = mk_default();
    set(s, "k", "v", 0);
    clk.now += 3;
    struct seg_view v;
    cr_assert_eq(get(s, "k", &v), SEG_OK);
    cr_assert_eq(v.age, 3);
    clk.now += 2;
    cr_assert_eq(get(s, "k", &v), SEG_OK);
    cr_assert_eq(v.age, 5);
    cr_assert_eq(v.size, 5 + 1 + 1); /* header, key, value */
    seg_destroy(&s);
}

/*
 * A mass expiry larger than one tick's budget: seg_tick() says so, and seg_reclaim_step() in
 * small slices (the server's idle time) brings every segment back without any read.
 */
Test(seg, mass_expiry_beyond_a_tick_is_finished_by_reclaim_steps)
{
    struct seg *s = mk(32 << 20, 1 << 20, SEG_EVICT_MERGE);
    char key[32];
    int n = 0;
    struct seg_stats stats;
    /* Fill with tiny items until ~20 segments are used: well over 65,536 items. */
    do {
        snprintf(key, sizeof(key), "k%d", n++);
        cr_assert_eq(set(s, key, "v", 5), SEG_STORED);
        seg_stats_get(s, &stats);
    } while (stats.segs_used < 20);
    cr_assert_gt(n, 65536 + 1000);
    clk.now += 10;
    cr_assert(seg_tick(s), "one tick cannot reclaim %d items", n);
    unsigned steps = 0;
    while (seg_reclaim_step(s, 4096)) {
        cr_assert_lt(++steps, 10000u);
    }
    seg_stats_get(s, &stats);
    cr_assert_eq(stats.items, 0);
    cr_assert_eq(stats.segs_used, 0, "every expired segment was freed, %u steps", steps);
    cr_assert_not(seg_tick(s), "nothing is left for the next tick");
    seg_destroy(&s);
}

/* ---- hash table growth ---- */

static struct seg *
mk_growing(size_t mem, enum seg_evict_policy evict)
{
    return mk_table(mem, 1 << 20, evict, 64);
}

static uint64_t
hash_bytes(struct seg *s)
{
    struct seg_stats stats;
    seg_stats_get(s, &stats);
    return stats.hash_bytes;
}

/* Bytes of address space this process has mapped (the first field of /proc/self/statm). */
static size_t
mapped_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    cr_assert_not_null(f);
    cr_assert_eq(fscanf(f, "%lu", &pages), 1);
    fclose(f);
    return pages * (size_t)sysconf(_SC_PAGESIZE);
}

Test(seg, hash_table_starts_small_and_grows_with_the_items)
{
    struct seg *s = mk_growing(64 << 20, SEG_EVICT_NONE);
    uint64_t first = hash_bytes(s);
    cr_assert_leq(first, 128 * 64, "a 64-bucket start takes at most 8 KiB, not %lu", first);
    char key[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "grow:%d", i);
        cr_assert_eq(set(s, key, key, 0), SEG_STORED);
    }
    /* 20,000 items at most 5 per bucket: at least 4,000 buckets, far below the full table. */
    cr_assert_geq(hash_bytes(s), 4000 * 64);
    cr_assert_lt(hash_bytes(s), (64u << 20) / 64 / 6 * 64);
    seg_destroy(&s);
}

Test(seg, every_key_is_found_while_the_table_grows)
{
    struct seg *s = mk_growing(64 << 20, SEG_EVICT_NONE);
    char key[32], val[32];
    for (int i = 0; i < 30000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        cr_assert_eq(set(s, key, key, 0), SEG_STORED);
        /* After every insert some old buckets moved: probe keys written long before. */
        for (int j = i % 7; j <= i; j += 997) {
            snprintf(key, sizeof(key), "k%d", j);
            assert_value(s, key, key);
        }
    }
    for (int i = 0; i < 30000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_value(s, key, key);
    }
    struct seg_stats stats;
    seg_stats_get(s, &stats);
    cr_assert_eq(stats.items, 30000);
    /* Overwrites and deletes find the one slot of their key. */
    for (int i = 0; i < 30000; i += 2) {
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(val, sizeof(val), "v%d", i);
        cr_assert_eq(set(s, key, val, 0), SEG_STORED);
        snprintf(key, sizeof(key), "k%d", i + 1);
        cr_assert_eq(del(s, key), SEG_DELETED);
    }
    seg_stats_get(s, &stats);
    cr_assert_eq(stats.items, 15000);
    for (int i = 0; i < 30000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(val, sizeof(val), "v%d", i);
        if (i % 2 == 0) {
            assert_value(s, key, val);
        } else {
            cr_assert_not(has(s, key), "%s was deleted", key);
        }
    }
    seg_destroy(&s);
}

Test(seg, ticks_finish_a_growth_and_free_the_old_table)
{
    struct seg *s = mk_growing(64 << 20, SEG_EVICT_NONE);
    char key[32];
    struct seg_stats stats;
    seg_stats_get(s, &stats);
    uint64_t first = stats.hash_buckets;
    int i = 0;
    /* Insert until a growth starts: the table then holds both generations. */
    while (stats.hash_buckets == first) {
        snprintf(key, sizeof(key), "t%d", i++);
        cr_assert_eq(set(s, key, key, 0), SEG_STORED);
        seg_stats_get(s, &stats);
    }
    cr_assert_eq(stats.hash_buckets, first * 2);
    cr_assert_geq((uint64_t)i, first * 5, "no growth before 5 items per bucket");
    uint64_t both = stats.hash_bytes;
    size_t mapped = mapped_bytes();
    tick_for(s, 1);
    seg_stats_get(s, &stats);
    cr_assert_eq(both - stats.hash_bytes, first * 64, "the old table is gone once moved");
    cr_assert_leq(mapped_bytes() + first * 64, mapped, "and unmapped");
    for (int j = 0; j < i; j++) {
        snprintf(key, sizeof(key), "t%d", j);
        assert_value(s, key, key);
    }
    seg_destroy(&s);
}

Test(seg, expiry_and_flush_unlink_items_while_the_table_grows)
{
    struct seg *s = mk_growing(64 << 20, SEG_EVICT_NONE);
    char key[32];
    struct seg_stats stats;
    int n = 0;
    /* Insert until a growth has started; half the items expire in 10 s. */
    do {
        snprintf(key, sizeof(key), "e%d", n);
        cr_assert_eq(set(s, key, key, n % 2 ? 10 : 0), SEG_STORED);
        n++;
        seg_stats_get(s, &stats);
    } while (!stats.hash_growing);
    clk.now += 20;
    /* seg_reclaim_step() reclaims without moving buckets: the growth is still under way. */
    while (seg_reclaim_step(s, 1u << 20)) {
    }
    seg_stats_get(s, &stats);
    cr_assert_eq(stats.hash_growing, 1);
    cr_assert_eq(stats.items, (uint64_t)(n + 1) / 2); /* the even-numbered ones */
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "e%d", i);
        cr_assert_eq(has(s, key), i % 2 == 0, "%s", key);
    }
    seg_flush(s, 0);
    while (seg_reclaim_step(s, 1u << 20)) {
    }
    seg_stats_get(s, &stats);
    cr_assert_eq(stats.hash_growing, 1);
    cr_assert_eq(stats.items, 0);
    cr_assert_eq(stats.flushed_items, (uint64_t)(n + 1) / 2);
    seg_destroy(&s);
}

Test(seg, a_grown_table_keeps_no_more_overflow_buckets_than_it_needs)
{
    /* Each doubling gives the old overflow buckets back before their slots are placed. Grown
     * nine times, the table must hold no more overflow buckets (allocated 1,024 at a time) than
     * its own chains need: count those from the keys' buckets, (low 32 bits of the hash) *
     * buckets >> 32, each chain needing one overflow bucket per 7 slots past the first 7. */
    enum { N = 160000 };
    struct seg *s = mk_table(64 << 20, 1 << 20, SEG_EVICT_NONE, 64);
    char key[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "o%d", i);
        cr_assert_eq(set(s, key, key, 0), SEG_STORED);
    }
    tick_for(s, 1);
    struct seg_stats st;
    seg_stats_get(s, &st);
    cr_assert_eq(st.hash_growing, 0);
    cr_assert_geq(st.hash_buckets, 16384, "the table grew from 64 buckets");
    uint32_t *count = calloc(st.hash_buckets, sizeof(*count));
    cr_assert_not_null(count);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "o%d", i);
        uint64_t h = seg_hash(key, strlen(key)) & 0xffffffffu;
        count[(h * st.hash_buckets) >> 32]++;
    }
    uint64_t needed = 0;
    for (uint64_t b = 0; b < st.hash_buckets; b++) {
        needed += count[b] > 7 ? (count[b] - 7 + 6) / 7 : 0;
    }
    free(count);
    uint64_t chunks = (st.hash_bytes - st.hash_buckets * 64) / (1024 * 64);
    cr_assert_gt(needed, 0, "the test needs overflow chains");
    cr_assert_leq(chunks, (needed + 1023) / 1024 + 1,
                  "%lu chunks of overflow buckets for %lu needed buckets", (unsigned long)chunks,
                  (unsigned long)needed);
    seg_destroy(&s);
}

Test(seg, a_growth_without_memory_is_tried_again_later)
{
    struct seg *s = mk_growing(8 << 20, SEG_EVICT_NONE);
    char key[32];
    struct seg_stats first, during, after;
    seg_stats_get(s, &first);
    struct rlimit old;
    cr_assert_eq(getrlimit(RLIMIT_AS, &old), 0);
    /* No new mapping fits: the doubling at 5 items per bucket cannot map its table. No
     * assertion until the limit is lifted (reporting one may need memory). */
    struct rlimit tight = {.rlim_cur = mapped_bytes() + (1u << 20), .rlim_max = old.rlim_max};
    cr_assert_eq(setrlimit(RLIMIT_AS, &tight), 0);
    int stored = 0, n = (int)first.hash_buckets * 6;
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "m%d", i);
        stored += set(s, key, key, 0) == SEG_STORED;
    }
    seg_stats_get(s, &during);
    setrlimit(RLIMIT_AS, &old);
    cr_assert_eq(stored, n, "items are stored without a bigger table");
    cr_assert_eq(during.hash_buckets, first.hash_buckets);
    cr_assert_geq(during.hash_grow_failures, 1);
    /* With memory back, a later insert (within another item per bucket) doubles the table. */
    for (int i = n; i < n + 2 * (int)first.hash_buckets; i++) {
        snprintf(key, sizeof(key), "m%d", i);
        cr_assert_eq(set(s, key, key, 0), SEG_STORED);
    }
    seg_stats_get(s, &after);
    cr_assert_eq(after.hash_buckets, first.hash_buckets * 2, "growth resumed");
    cr_assert_eq(after.hash_grow_failures, during.hash_grow_failures);
    for (int i = 0; i < n + 2 * (int)first.hash_buckets; i++) {
        snprintf(key, sizeof(key), "m%d", i);
        assert_value(s, key, key);
    }
    seg_destroy(&s);
}

Test(seg, a_prefaulted_instance_starts_with_the_full_table)
{
    struct seg_options o;
    seg_options_init(&o);
    o.mem_bytes = 8 << 20;
    o.prefault = true;
    struct seg *s = NULL;
    cr_assert_eq(seg_create(&s, &o), 0);
    cr_assert_eq(hash_bytes(s), (8u << 20) / 64 / 6 * 64);
    seg_destroy(&s);
}

Test(seg, a_tiny_start_size_is_raised_to_64_buckets, .timeout = 10)
{
    struct seg_options o;
    seg_options_init(&o);
    o.mem_bytes = 8 << 20;
    o.ht_start_buckets = 1;
    struct seg *s = NULL;
    cr_assert_eq(seg_create(&s, &o), 0);
    struct seg_stats stats;
    seg_stats_get(s, &stats);
    cr_assert_geq(stats.hash_buckets, 64);
    cr_assert_lt(stats.hash_buckets, 128);
    seg_destroy(&s);
}

/* ---- scan ---- */

/* What a scan saw: how many times each key "k<i>" was visited, and the last item's fields. */
struct scan_seen {
    unsigned count[4096];
    unsigned other;
    unsigned calls;
    unsigned stop_after; /* fn returns false after this many calls (0: never) */
    struct seg_item_info last;
    char last_key[SEG_KEY_MAX + 1];
};

static bool
scan_count(void *ctx, const struct seg_item_info *it)
{
    struct scan_seen *ss = ctx;
    unsigned i;
    char key[SEG_KEY_MAX + 1];
    memcpy(key, it->key, it->klen);
    key[it->klen] = '\0';
    if (sscanf(key, "k%u", &i) == 1 && i < 4096) {
        ss->count[i]++;
    } else {
        ss->other++;
    }
    ss->last = *it;
    memcpy(ss->last_key, key, it->klen + 1);
    ss->calls++;
    return ss->stop_after == 0 || ss->calls < ss->stop_after;
}

static void
set_k(struct seg *s, unsigned i, int64_t exptime)
{
    char key[32];
    snprintf(key, sizeof(key), "k%u", i);
    cr_assert_eq(set(s, key, "value", exptime), SEG_STORED);
}

static void
scan_all(struct seg *s, struct scan_seen *ss, unsigned per_call)
{
    struct seg_cursor cur = {0};
    unsigned guard = 0;
    while (seg_scan(s, &cur, per_call, scan_count, ss)) {
        cr_assert_lt(++guard, 10000000u, "the scan does not end");
    }
    cr_assert_eq(cur.pos, SEG_CURSOR_END);
}

Test(seg, scan_visits_every_live_item_once)
{
    struct seg *s = mk_default();
    static struct scan_seen ss;
    memset(&ss, 0, sizeof(ss));
    for (unsigned i = 0; i < 3000; i++) {
        set_k(s, i, 0);
    }
    scan_all(s, &ss, 7);
    for (unsigned i = 0; i < 3000; i++) {
        cr_assert_eq(ss.count[i], 1, "k%u seen %u times", i, ss.count[i]);
    }
    cr_assert_eq(ss.other, 0);
    seg_destroy(&s);
}

Test(seg, scan_reports_the_item_fields)
{
    struct seg *s = mk_default();
    static struct scan_seen ss;
    memset(&ss, 0, sizeof(ss));
    uint64_t cas = 0;
    cr_assert_eq(st(s, SEG_SET, "k7", "hello", 42, 100, 0, &cas), SEG_STORED);
    struct seg_view v;
    cr_assert_eq(seg_get(s, "k7", 2, seg_hash("k7", 2), &v), SEG_OK);
    scan_all(s, &ss, 1000);
    cr_assert_eq(ss.calls, 1);
    cr_assert_str_eq(ss.last_key, "k7");
    cr_assert_eq(ss.last.cas, cas);
    cr_assert_eq(ss.last.flags, 42);
    cr_assert_eq(ss.last.size, v.size);
    cr_assert_eq(ss.last.written, T0);
    /* The segment's shared expiry: never late, at most the bucket's slack early. */
    cr_assert_leq(ss.last.expire, T0 + 100);
    cr_assert_geq(ss.last.expire, T0 + 100 - (int64_t)seg_ttl_slack(100));
    cr_assert_neq(ss.last.state & SEG_ST_FETCHED, 0);
    struct seg_ttl_stats ts;
    cr_assert_eq(seg_ttl_stats_get(s, ss.last.bucket, &ts), 0);
    cr_assert_eq(ts.items, 1);
    seg_destroy(&s);
}

Test(seg, scan_skips_expired_deleted_and_flushed_items)
{
    struct seg *s = mk_default();
    static struct scan_seen ss;
    memset(&ss, 0, sizeof(ss));
    set_k(s, 1, 0);
    set_k(s, 2, 5);
    set_k(s, 3, 0);
    cr_assert_eq(seg_delete(s, "k3", 2, seg_hash("k3", 2)), SEG_DELETED);
    clk.now += 10;
    scan_all(s, &ss, 1000);
    cr_assert_eq(ss.calls, 1);
    cr_assert_eq(ss.count[1], 1);
    seg_flush(s, 0);
    memset(&ss, 0, sizeof(ss));
    scan_all(s, &ss, 1000);
    cr_assert_eq(ss.calls, 0);
    seg_destroy(&s);
}

Test(seg, scan_stops_after_the_bucket_where_the_callback_says_so)
{
    struct seg *s = mk_default();
    static struct scan_seen ss;
    memset(&ss, 0, sizeof(ss));
    for (unsigned i = 0; i < 500; i++) {
        set_k(s, i, 0);
    }
    ss.stop_after = 1;
    struct seg_cursor cur = {0};
    unsigned calls = 0;
    while (seg_scan(s, &cur, 1u << 30, scan_count, &ss)) {
        calls++;
    }
    /* Each call ends in the bucket where the first item was seen: about one call per
     * non-empty bucket, far more than one call for the whole table. */
    cr_assert_gt(calls, 50);
    for (unsigned i = 0; i < 500; i++) {
        cr_assert_eq(ss.count[i], 1, "k%u seen %u times", i, ss.count[i]);
    }
    seg_destroy(&s);
}

/*
 * Writes, touches (which move items), deletes and the hash table doubling between scan calls:
 * keys present throughout are seen exactly once, deleted ones at most once, nothing else.
 */
Test(seg, scan_survives_writes_moves_and_table_growth_between_calls)
{
    struct seg *s = mk_table(8 << 20, 64 << 10, SEG_EVICT_MERGE, 64);
    static struct scan_seen ss;
    memset(&ss, 0, sizeof(ss));
    for (unsigned i = 0; i < 1000; i++) {
        set_k(s, i, 0);
    }
    struct seg_stats before;
    seg_stats_get(s, &before);
    struct seg_cursor cur = {0};
    unsigned next_new = 1000, step = 0;
    while (seg_scan(s, &cur, 3, scan_count, &ss)) {
        for (unsigned j = 0; j < 40 && next_new < 4000; j++) {
            set_k(s, next_new++, 0); /* grows the table several times over */
        }
        char key[32];
        unsigned t = (step * 37) % 1000;
        snprintf(key, sizeof(key), "k%u", t);
        if (t % 10 != 9) {
            (void)seg_touch(s, key, strlen(key), seg_hash(key, strlen(key)),
                            at(s, 1000 + (step % 7)));
        }
        if (step < 100) {
            snprintf(key, sizeof(key), "k%u", 9 + step * 10);
            (void)seg_delete(s, key, strlen(key), seg_hash(key, strlen(key)));
        }
        step++;
    }
    struct seg_stats after;
    seg_stats_get(s, &after);
    cr_assert_gt(after.hash_buckets, before.hash_buckets, "the table did not grow");
    for (unsigned i = 0; i < 1000; i++) {
        if (i % 10 == 9) {
            cr_assert_leq(ss.count[i], 1, "k%u seen %u times", i, ss.count[i]);
        } else {
            cr_assert_eq(ss.count[i], 1, "k%u seen %u times", i, ss.count[i]);
        }
    }
    for (unsigned i = 1000; i < 4096; i++) {
        cr_assert_leq(ss.count[i], 1, "k%u seen %u times", i, ss.count[i]);
    }
    cr_assert_eq(ss.other, 0);
    seg_destroy(&s);
}

/* ---- prefault: segment memory made present ahead of the stores ---- */

static uint64_t
prefaulted(struct seg *s)
{
    struct seg_stats stats;
    seg_stats_get(s, &stats);
    return stats.prefault_bytes;
}

/* Bytes of the hash table in use (the new one while it grows). */
static uint64_t
table_bytes(struct seg *s)
{
    struct seg_stats stats;
    seg_stats_get(s, &stats);
    return stats.hash_buckets * 64;
}

/* Steps until seg_prefault_step says it is done, each at most step bytes; the calls made. */
static unsigned
prefault_all(struct seg *s, size_t step)
{
    unsigned n = 1;
    uint64_t last = prefaulted(s);
    while (seg_prefault_step(s, step, NULL)) {
        cr_assert_leq(prefaulted(s) - last, step, "one call did more than asked");
        last = prefaulted(s);
        n++;
        cr_assert_lt(n, 100000, "prefault never finishes");
    }
    cr_assert_leq(prefaulted(s) - last, step, "one call did more than asked");
    return n;
}

/* Pages of [p, p + len) present in memory. */
static size_t
resident_pages(const void *p, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(page - 1);
    size_t n = (len + page - 1) / page;
    unsigned char *vec = calloc(n, 1);
    cr_assert_not_null(vec);
    cr_assert_eq(mincore((void *)a, n * page, vec), 0);
    size_t r = 0;
    for (size_t i = 0; i < n; i++) {
        r += vec[i] & 1;
    }
    free(vec);
    return r;
}

Test(seg, prefault_of_an_empty_heap_stops_a_few_mib_ahead)
{
    struct seg *s = mk(64 << 20, 1 << 20, SEG_EVICT_MERGE);
    prefault_all(s, 256 << 10);
    cr_assert_eq(prefaulted(s), (4u << 20) + table_bytes(s), "prefaulted %" PRIu64, prefaulted(s));
    cr_assert_not(seg_prefault_step(s, 256 << 10, NULL),
                  "nothing more to do until a segment is taken");
    seg_destroy(&s);
}

/* A stand-in for the populate thread: takes ranges or not, reports what it has left. */
static struct {
    bool accept;
    unsigned calls;
    uint8_t *p;
    size_t len;
    size_t left;
} offload_seen;

static bool
offload_post(void *p, size_t len)
{
    offload_seen.calls++;
    if (!offload_seen.accept) {
        return false;
    }
    offload_seen.p = p;
    offload_seen.len = len;
    return true;
}

static size_t
offload_left(void)
{
    return offload_seen.left;
}

static const struct seg_offload offload = {.post = offload_post, .left = offload_left};

Test(seg, prefault_hands_the_heap_to_an_offload_whole_and_asks_again_if_refused)
{
    struct seg *s = mk(64 << 20, 1 << 20, SEG_EVICT_MERGE);
    offload_seen = (__typeof__(offload_seen)){.accept = false};
    /* Refused: the table is done here (small steps), the heap asked for on every call. */
    while (seg_prefault_step(s, 256 << 10, &offload)) {
    }
    cr_assert_eq(prefaulted(s), table_bytes(s), "nothing of the heap done here");
    cr_assert_geq(offload_seen.calls, 1);
    unsigned refused = offload_seen.calls;
    /* Taken: handed once, whole, then nothing more until a segment is taken. */
    offload_seen.accept = true;
    cr_assert_not(seg_prefault_step(s, 256 << 10, &offload));
    cr_assert_eq(offload_seen.calls, refused + 1);
    cr_assert_eq(offload_seen.len, 16u << 20, "the whole window at once: %zu", offload_seen.len);
    cr_assert_not(seg_prefault_step(s, 256 << 10, &offload));
    cr_assert_eq(offload_seen.calls, refused + 1, "a range taken is not handed again");
    cr_assert_eq(resident_pages(offload_seen.p, offload_seen.len), 0, "the offload did nothing");
    seg_destroy(&s);
}

Test(seg, prefault_does_the_next_two_segments_itself_when_the_offload_lags)
{
    struct seg *s = mk(64 << 20, 1 << 20, SEG_EVICT_MERGE);
    offload_seen = (__typeof__(offload_seen)){.accept = true};
    while (seg_prefault_step(s, 256 << 10, &offload)) {
    }
    cr_assert_eq(offload_seen.len, 16u << 20);
    uint8_t *heap = offload_seen.p;
    /* The thread has not begun: the first two segments are done here, a step per call. */
    offload_seen.left = offload_seen.len;
    unsigned calls = 0;
    while (seg_prefault_step(s, 256 << 10, &offload)) {
        cr_assert_lt(++calls, 100);
    }
    cr_assert_eq(calls + 1, (2u << 20) / (256u << 10), "calls %u", calls);
    cr_assert_eq(resident_pages(heap, 2u << 20), (2u << 20) / (size_t)sysconf(_SC_PAGESIZE));
    cr_assert_not(seg_prefault_step(s, 256 << 10, &offload), "and no more while it lags");
    /* Past the second segment, the thread's part stays the thread's. */
    cr_assert_eq(resident_pages(heap + (2u << 20), 2u << 20), 0);
    seg_destroy(&s);
}

Test(seg, prefault_does_at_most_the_step_asked_per_call)
{
    struct seg *s = mk(64 << 20, 1 << 20, SEG_EVICT_MERGE);
    cr_assert(seg_prefault_step(s, 64 << 10, NULL));
    cr_assert_eq(prefaulted(s), 64u << 10);
    unsigned calls = prefault_all(s, 64 << 10) + 1;
    cr_assert_geq(calls, ((4u << 20) + table_bytes(s)) / (64u << 10));
    seg_destroy(&s);
}

Test(seg, prefault_follows_the_segments_taken)
{
    struct seg *s = mk(64 << 20, 1 << 20, SEG_EVICT_MERGE);
    prefault_all(s, 1 << 20);
    /* Three segments' worth of items: the window moves to 3 MiB (the segments taken) + 4 MiB. */
    char val[1000];
    memset(val, 'v', sizeof(val) - 1);
    val[sizeof(val) - 1] = 0;
    for (unsigned i = 0; i < 3100; i++) {
        char key[32];
        snprintf(key, sizeof(key), "key%u", i);
        cr_assert_eq(set(s, key, val, 0), SEG_STORED);
    }
    struct seg_stats stats;
    seg_stats_get(s, &stats);
    cr_assert_eq(stats.segs_used, 3);
    cr_assert_eq(stats.hash_growing, 0);
    cr_assert(seg_prefault_step(s, 1 << 20, NULL), "a segment taken makes more to do");
    prefault_all(s, 1 << 20);
    cr_assert_eq(prefaulted(s), (7u << 20) + table_bytes(s), "prefaulted %" PRIu64, prefaulted(s));
    seg_destroy(&s);
}

Test(seg, prefault_makes_the_pages_present_and_no_more)
{
    struct seg *s = mk(64 << 20, 1 << 20, SEG_EVICT_MERGE);
    cr_assert_eq(set(s, "k", "v", 0), SEG_STORED);
    struct seg_view v;
    cr_assert_eq(get(s, "k", &v), SEG_OK);
    /* The first item is at the start of the heap, which is 2 MiB aligned. */
    const uint8_t *heap = (const uint8_t *)((uintptr_t)v.value & ~(uintptr_t)((2u << 20) - 1));
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    prefault_all(s, 256 << 10);
    cr_assert_eq(prefaulted(s), (5u << 20) + table_bytes(s), "segment 0 taken: 1 + 4 MiB");
    cr_assert_eq(resident_pages(heap, 5u << 20), (5u << 20) / page);
    cr_assert_eq(resident_pages(heap + (6u << 20), 58u << 20), 0, "memory grows with use only");
    seg_destroy(&s);
}

Test(seg, prefault_covers_a_new_hash_table_as_it_grows)
{
    struct seg *s = mk_table(64 << 20, 1 << 20, SEG_EVICT_MERGE, 1024);
    cr_assert_eq(set(s, "first", "v", 0), SEG_STORED); /* takes the segment the rest goes to */
    prefault_all(s, 1 << 20);
    uint64_t before = prefaulted(s), buckets = table_bytes(s) / 64;
    for (unsigned i = 0; table_bytes(s) / 64 == buckets; i++) {
        char key[32];
        snprintf(key, sizeof(key), "key%u", i);
        cr_assert_eq(set(s, key, key, 0), SEG_STORED);
        cr_assert_lt(i, 100000, "the table never grew");
    }
    cr_assert(seg_prefault_step(s, 4096, NULL), "a new table makes more to do");
    prefault_all(s, 1 << 20);
    cr_assert_eq(prefaulted(s) - before, table_bytes(s), "the whole new table, %" PRIu64 " bytes",
                 table_bytes(s));
    seg_destroy(&s);
}

Test(seg, prefault_keeps_what_is_stored)
{
    struct seg *s = mk(64 << 20, 1 << 20, SEG_EVICT_MERGE);
    for (unsigned i = 0; i < 5000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "key%u", i);
        cr_assert_eq(set(s, key, key, 0), SEG_STORED);
    }
    prefault_all(s, 4096); /* over the written segment and past it, and the table */
    for (unsigned i = 0; i < 5000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "key%u", i);
        assert_value(s, key, key);
    }
    seg_destroy(&s);
}

Test(seg, prefault_has_nothing_to_do_when_memory_was_touched_at_start)
{
    struct seg_options o;
    seg_options_init(&o);
    o.mem_bytes = 8 << 20;
    o.prefault = true;
    struct seg *s = NULL;
    cr_assert_eq(seg_create(&s, &o), 0);
    cr_assert_not(seg_prefault_step(s, 1 << 20, NULL));
    cr_assert_eq(prefaulted(s), 0);
    seg_destroy(&s);
}

/* Keys prefix0 .. prefix<n-1>, each set to a 999-byte value (about 70 fill a 64 KiB segment). */
static void
set_range(struct seg *s, const char *prefix, int n)
{
    char key[32], val[1000];
    memset(val, 'v', sizeof(val) - 1);
    val[sizeof(val) - 1] = '\0';
    for (int k = 0; k < n; k++) {
        snprintf(key, sizeof(key), "%s%d", prefix, k);
        set(s, key, val, 0);
    }
}

/* Every key of set_range(s, prefix, n) is there. */
static void
assert_range(struct seg *s, const char *prefix, int n)
{
    char key[32];
    for (int k = 0; k < n; k++) {
        snprintf(key, sizeof(key), "%s%d", prefix, k);
        cr_assert(has(s, key), "%s", key);
    }
}

Test(seg, overwrites_reuse_emptied_segments_before_opening_new_ones)
{
    /* 16 segments of 64 KiB; 200 keys of ~1 KiB fill about 3. Rewriting them over and over
     * empties the older segments, which are taken again: the heap stops growing long before
     * -m, and no item is lost. */
    struct seg *s = mk(1 << 20, 64 << 10, SEG_EVICT_MERGE);
    for (int round = 0; round < 40; round++) {
        set_range(s, "k", 200);
    }
    struct seg_stats stats;
    seg_stats_get(s, &stats);
    cr_assert_gt(stats.emptied_segs, 100, "emptied segments freed: %llu",
                 (unsigned long long)stats.emptied_segs);
    cr_assert_eq(stats.evicted_segs, 0, "nothing evicted: the emptied ones were enough");
    cr_assert_leq(stats.segs_used, 5, "segments in use: %llu", (unsigned long long)stats.segs_used);
    cr_assert_eq(stats.items, 200);
    assert_range(s, "k", 200);
    seg_destroy(&s);
}

Test(seg, segments_emptied_by_deletes_are_taken_before_new_ones)
{
    struct seg *s = mk(1 << 20, 64 << 10, SEG_EVICT_MERGE);
    set_range(s, "old", 200); /* about 3 segments */
    char key[32];
    for (int k = 0; k < 200; k++) {
        snprintf(key, sizeof(key), "old%d", k);
        cr_assert_eq(seg_delete(s, key, strlen(key), seg_hash(key, strlen(key))), SEG_DELETED);
    }
    set_range(s, "new", 150);
    struct seg_stats stats;
    seg_stats_get(s, &stats);
    cr_assert_geq(stats.emptied_segs, 2);
    cr_assert_leq(stats.segs_used, 4, "segments in use: %llu", (unsigned long long)stats.segs_used);
    assert_range(s, "new", 150);
    seg_destroy(&s);
}
