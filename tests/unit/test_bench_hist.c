/* Unit tests for perf/bench/hist: layout, percentile error bound, merging. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>

#include "hist.h"
#include "rng.h"

#define SUB_BITS 7
#define HIGHEST  60000000000ull

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The exact percentile by the histogram's definition: element ceil(p% * n) - 1 of the sorted. */
static uint64_t
exact_percentile(const uint64_t *sorted, size_t n, double pct)
{
    double want = pct / 100.0 * (double)n;
    size_t rank = (size_t)(want - 1e-9);
    if ((double)rank < want - 1e-9) {
        rank++;
    }
    return sorted[rank ? rank - 1 : 0];
}

Test(bench_hist, buckets_tile_the_value_range_without_gaps)
{
    struct hist h;
    cr_assert_eq(hist_init(&h, SUB_BITS, HIGHEST), 0);
    uint64_t lo, hi, prev_hi = 0;
    for (uint32_t i = 0; i < h.nbuckets; i++) {
        hist_bucket_range(&h, i, &lo, &hi);
        if (i > 0) {
            cr_assert_eq(lo, prev_hi + 1, "bucket %u starts at %lu, previous ended at %lu", i,
                         (unsigned long)lo, (unsigned long)prev_hi);
        }
        cr_assert_eq(hist_bucket(&h, lo), i);
        cr_assert_eq(hist_bucket(&h, hi), i);
        /* The width bound the error claim rests on: width <= lo / 2^s (or exact). */
        cr_assert(hi - lo == 0 || (hi - lo + 1) <= (lo >> SUB_BITS), "bucket %u too wide", i);
        prev_hi = hi;
    }
    cr_assert_geq(prev_hi, HIGHEST);
    hist_free(&h);
}

Test(bench_hist, small_values_are_counted_exactly)
{
    struct hist h;
    cr_assert_eq(hist_init(&h, SUB_BITS, HIGHEST), 0);
    for (uint64_t v = 1; v <= 200; v++) {
        hist_record(&h, v);
    }
    cr_assert_eq(hist_percentile(&h, 50.0), 100);
    cr_assert_eq(hist_percentile(&h, 99.0), 198);
    cr_assert_eq(hist_percentile(&h, 0.5), 1);
    hist_free(&h);
}

Test(bench_hist, percentiles_stay_within_the_relative_error_bound)
{
    enum { N = 200000 };
    static uint64_t vals[N];
    static const double pcts[] = {1, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 99.999};
    struct bench_rng r;
    struct hist h;

    bench_rng_seed(&r, 42);
    cr_assert_eq(hist_init(&h, SUB_BITS, HIGHEST), 0);
    /* Log-uniform from 1 ns to about 10 s: every bucket width is exercised. */
    for (size_t i = 0; i < N; i++) {
        double e = bench_rng_double(&r) * 33.0;
        vals[i] = (uint64_t)__builtin_exp2(e);
        hist_record(&h, vals[i]);
    }
    qsort(vals, N, sizeof(vals[0]), cmp_u64);
    for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
        uint64_t want = exact_percentile(vals, N, pcts[i]);
        uint64_t got = hist_percentile(&h, pcts[i]);
        cr_assert_geq(got, want, "p%g: %lu understates %lu", pcts[i], (unsigned long)got,
                      (unsigned long)want);
        cr_assert_leq((double)got, (double)want * (1.0 + 1.0 / (1 << SUB_BITS)),
                      "p%g: %lu overstates %lu by more than 2^-%d", pcts[i], (unsigned long)got,
                      (unsigned long)want, SUB_BITS);
    }
    cr_assert_eq(hist_percentile(&h, 100.0), vals[N - 1]);
    cr_assert_eq(hist_percentile(&h, 0.0), vals[0]);
    hist_free(&h);
}

Test(bench_hist, a_coarser_layout_keeps_its_own_bound)
{
    enum { N = 50000 };
    static uint64_t vals[N];
    struct bench_rng r;
    struct hist h;

    bench_rng_seed(&r, 7);
    cr_assert_eq(hist_init(&h, 3, 1000000), 0);
    for (size_t i = 0; i < N; i++) {
        vals[i] = 1 + bench_rng_below(&r, 1000000);
        hist_record(&h, vals[i]);
    }
    qsort(vals, N, sizeof(vals[0]), cmp_u64);
    for (double p = 5; p < 100; p += 5) {
        uint64_t want = exact_percentile(vals, N, p), got = hist_percentile(&h, p);
        cr_assert(got >= want && (double)got <= want * 1.125, "p%g: %lu vs %lu", p,
                  (unsigned long)got, (unsigned long)want);
    }
    hist_free(&h);
}

Test(bench_hist, merging_equals_recording_everything_in_one)
{
    struct hist a, b, all;
    struct bench_rng r;

    bench_rng_seed(&r, 3);
    cr_assert_eq(hist_init(&a, SUB_BITS, HIGHEST), 0);
    cr_assert_eq(hist_init(&b, SUB_BITS, HIGHEST), 0);
    cr_assert_eq(hist_init(&all, SUB_BITS, HIGHEST), 0);
    for (int i = 0; i < 10000; i++) {
        uint64_t v = bench_rng_below(&r, 5000000);
        hist_record(i % 3 ? &a : &b, v);
        hist_record(&all, v);
    }
    cr_assert_eq(hist_merge(&a, &b), 0);
    cr_assert_eq(a.total, all.total);
    cr_assert_eq(a.min, all.min);
    cr_assert_eq(a.max, all.max);
    cr_assert_eq(a.sum, all.sum);
    for (double p = 1; p < 100; p += 7.5) {
        cr_assert_eq(hist_percentile(&a, p), hist_percentile(&all, p));
    }
    hist_free(&a);
    hist_free(&b);
    hist_free(&all);
}

Test(bench_hist, merging_different_layouts_is_refused)
{
    struct hist a, b;
    cr_assert_eq(hist_init(&a, 7, HIGHEST), 0);
    cr_assert_eq(hist_init(&b, 6, HIGHEST), 0);
    hist_record(&b, 5);
    cr_assert_eq(hist_merge(&a, &b), -EINVAL);
    cr_assert_eq(a.total, 0);
    hist_free(&a);
    hist_free(&b);
}

Test(bench_hist, values_beyond_highest_keep_an_exact_maximum)
{
    struct hist h;
    cr_assert_eq(hist_init(&h, SUB_BITS, 1000), 0);
    hist_record(&h, 10);
    hist_record(&h, 123456789);
    cr_assert_eq(h.max, 123456789);
    cr_assert_eq(hist_percentile(&h, 100.0), 123456789);
    cr_assert_leq(hist_percentile(&h, 99.0), 123456789);
    hist_free(&h);
}

Test(bench_hist, an_empty_histogram_reports_zero)
{
    struct hist h;
    cr_assert_eq(hist_init(&h, SUB_BITS, HIGHEST), 0);
    cr_assert_eq(hist_percentile(&h, 99.0), 0);
    cr_assert_eq(hist_mean(&h), 0.0);
    hist_record(&h, 77);
    hist_reset(&h);
    cr_assert_eq(h.total, 0);
    cr_assert_eq(hist_percentile(&h, 50.0), 0);
    hist_free(&h);
}

Test(bench_hist, bad_layouts_are_refused)
{
    struct hist h;
    cr_assert_eq(hist_init(&h, 0, HIGHEST), -EINVAL);
    cr_assert_eq(hist_init(&h, 17, HIGHEST), -EINVAL);
    cr_assert_eq(hist_init(&h, 7, 0), -EINVAL);
}
