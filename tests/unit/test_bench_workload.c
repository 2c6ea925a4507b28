/* Unit tests for perf/bench/workload: keys, command mix, value sizes, preload sequence. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "workload.h"

static struct workload_cfg
base_cfg(void)
{
    struct workload_cfg c = {
        .keys = 1000,
        .key_size = 8,
        .dist = KEY_UNIFORM,
        .value_min = 64,
        .value_max = 64,
        .weight = {[OP_GET] = 9, [OP_SET] = 1},
        .multiget = 1,
    };
    return c;
}

Test(bench_workload, keys_are_fixed_width_decimal_with_a_namespace)
{
    struct workload w;
    struct workload_cfg c = base_cfg();
    char key[8];

    cr_assert_eq(workload_init(&w, &c), 0);
    workload_key(&w, KEY_NS_DATA, 42, key);
    cr_assert_arr_eq(key, "k0000042", 8);
    workload_key(&w, KEY_NS_COUNTER, 999, key);
    cr_assert_arr_eq(key, "n0000999", 8);
    workload_free(&w);
}

Test(bench_workload, a_key_size_too_short_for_the_key_count_is_refused)
{
    struct workload w;
    struct workload_cfg c = base_cfg();

    cr_assert_eq(workload_min_key_size(1000), 4);
    cr_assert_eq(workload_min_key_size(1001), 5);
    cr_assert_eq(workload_min_key_size(1), 2);
    c.key_size = 3;
    cr_assert_eq(workload_init(&w, &c), -EINVAL);
}

Test(bench_workload, the_command_mix_follows_the_weights)
{
    struct workload w;
    struct workload_cfg c = base_cfg();
    struct bench_rng r;
    static struct request req;
    uint64_t n[OP__COUNT] = {0};

    c.weight[OP_GET] = 6;
    c.weight[OP_SET] = 2;
    c.weight[OP_DELETE] = 0;
    c.weight[OP_INCR] = 2;
    cr_assert_eq(workload_init(&w, &c), 0);
    bench_rng_seed(&r, 5);
    for (int i = 0; i < 100000; i++) {
        workload_next(&w, &r, &req);
        n[req.op]++;
        cr_assert_lt(req.key[0], c.keys);
        cr_assert_eq(req.ns, req.op == OP_INCR ? KEY_NS_COUNTER : KEY_NS_DATA);
    }
    /* Binomial standard deviations are about 150 here; allow 1000. */
    cr_assert(n[OP_GET] > 59000 && n[OP_GET] < 61000, "gets %lu", (unsigned long)n[OP_GET]);
    cr_assert(n[OP_SET] > 19000 && n[OP_SET] < 21000, "sets %lu", (unsigned long)n[OP_SET]);
    cr_assert(n[OP_INCR] > 19000 && n[OP_INCR] < 21000, "incrs %lu", (unsigned long)n[OP_INCR]);
    cr_assert_eq(n[OP_DELETE], 0);
    cr_assert_eq(n[OP_PING], 0);
    workload_free(&w);
}

Test(bench_workload, value_sizes_cover_the_whole_range)
{
    struct workload w;
    struct workload_cfg c = base_cfg();
    struct bench_rng r;
    static struct request req;
    int seen_min = 0, seen_max = 0;

    c.value_min = 10;
    c.value_max = 20;
    c.weight[OP_GET] = 0;
    cr_assert_eq(workload_init(&w, &c), 0);
    bench_rng_seed(&r, 6);
    for (int i = 0; i < 10000; i++) {
        workload_next(&w, &r, &req);
        cr_assert_eq(req.op, OP_SET);
        cr_assert(req.value_len >= 10 && req.value_len <= 20, "size %u", req.value_len);
        seen_min |= req.value_len == 10;
        seen_max |= req.value_len == 20;
    }
    cr_assert(seen_min && seen_max);
    workload_free(&w);
}

Test(bench_workload, a_multiget_asks_for_k_keys)
{
    struct workload w;
    struct workload_cfg c = base_cfg();
    struct bench_rng r;
    static struct request req;

    c.multiget = 10;
    c.weight[OP_SET] = 0;
    cr_assert_eq(workload_init(&w, &c), 0);
    bench_rng_seed(&r, 7);
    workload_next(&w, &r, &req);
    cr_assert_eq(req.op, OP_GET);
    cr_assert_eq(req.nkeys, 10);
    for (int i = 0; i < 10; i++) {
        cr_assert_lt(req.key[i], c.keys);
    }
    workload_free(&w);
}

Test(bench_workload, preload_writes_every_key_then_the_counters)
{
    struct workload w;
    struct workload_cfg c = base_cfg();
    struct bench_rng r;
    static struct request req;
    uint32_t len;

    c.weight[OP_INCR] = 1;
    cr_assert_eq(workload_init(&w, &c), 0);
    bench_rng_seed(&r, 8);
    cr_assert_eq(workload_preload_count(&w), 2000);
    workload_preload(&w, &r, 999, &req);
    cr_assert_eq(req.op, OP_SET);
    cr_assert_eq(req.ns, KEY_NS_DATA);
    cr_assert_eq(req.key[0], 999);
    cr_assert_eq(req.value_len, 64);
    workload_preload(&w, &r, 1000, &req);
    cr_assert_eq(req.ns, KEY_NS_COUNTER);
    cr_assert_eq(req.key[0], 0);
    cr_assert_arr_eq(workload_value(&w, &req, &len), "0", 1);
    cr_assert_eq(len, 1);
    workload_free(&w);

    c.weight[OP_INCR] = 0;
    cr_assert_eq(workload_init(&w, &c), 0);
    cr_assert_eq(workload_preload_count(&w), 1000);
    workload_free(&w);
}

Test(bench_workload, zipf_keys_favour_the_first_ranks)
{
    struct workload w;
    struct workload_cfg c = base_cfg();
    struct bench_rng r;
    static struct request req;
    int low = 0;

    c.dist = KEY_ZIPF;
    c.theta = 1.2;
    c.weight[OP_SET] = 0;
    cr_assert_eq(workload_init(&w, &c), 0);
    bench_rng_seed(&r, 9);
    for (int i = 0; i < 10000; i++) {
        workload_next(&w, &r, &req);
        low += req.key[0] < 10;
    }
    /* At theta 1.2 over 1000 keys the first ten carry 56.9% of the draws. */
    cr_assert(low > 5450 && low < 5930, "%d of 10000 in the top ten", low);
    workload_free(&w);
}
