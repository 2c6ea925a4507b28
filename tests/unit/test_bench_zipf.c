/* Unit tests for perf/bench/zipf: the drawn ranks follow the Zipf law (checked statistically). */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "zipf.h"

/*
 * Pearson's chi-square of `draws` samples over all n ranks against P(r) = (r+1)^-theta / sum.
 * With n - 1 degrees of freedom the statistic has mean n - 1 and standard deviation
 * sqrt(2(n - 1)); the tests allow 5 standard deviations (a false alarm about once in 3 million
 * runs for a correct generator, and the seeds are fixed so a run is repeatable anyway).
 */
static double
chi_square(uint64_t n, double theta, uint64_t draws, uint64_t seed)
{
    struct zipf z;
    struct bench_rng r;
    uint64_t *count = calloc(n, sizeof(*count));
    double norm = 0.0, chi = 0.0;

    cr_assert_not_null(count);
    cr_assert_eq(zipf_init(&z, n, theta), 0);
    bench_rng_seed(&r, seed);
    for (uint64_t i = 0; i < draws; i++) {
        uint64_t k = zipf_next(&z, &r);
        cr_assert_lt(k, n);
        count[k]++;
    }
    for (uint64_t k = 1; k <= n; k++) {
        norm += pow((double)k, -theta);
    }
    for (uint64_t k = 1; k <= n; k++) {
        double expect = (double)draws * pow((double)k, -theta) / norm;
        double d = (double)count[k - 1] - expect;
        chi += d * d / expect;
    }
    free(count);
    return chi;
}

static void
assert_fits(uint64_t n, double theta, uint64_t seed)
{
    double chi = chi_square(n, theta, 1000000, seed);
    double limit = (double)(n - 1) + 5.0 * sqrt(2.0 * (double)(n - 1));
    cr_assert_lt(chi, limit, "theta %g: chi-square %.1f over %llu ranks, limit %.1f", theta, chi,
                 (unsigned long long)n, limit);
}

Test(bench_zipf, ranks_follow_the_law_at_theta_0_99)
{
    assert_fits(1000, 0.99, 11);
}

Test(bench_zipf, ranks_follow_the_law_at_theta_exactly_1)
{
    assert_fits(1000, 1.0, 12);
}

Test(bench_zipf, ranks_follow_the_law_at_theta_0_5)
{
    assert_fits(1000, 0.5, 13);
}

Test(bench_zipf, ranks_follow_the_law_at_theta_1_5)
{
    assert_fits(500, 1.5, 14);
}

Test(bench_zipf, a_skewed_sample_fails_the_check)
{
    /* The check has power: samples drawn at theta 0.9 are told apart from theta 0.99. */
    struct zipf z;
    struct bench_rng r;
    enum { N = 1000, DRAWS = 1000000 };
    static uint64_t count[N];
    double norm = 0.0, chi = 0.0;

    cr_assert_eq(zipf_init(&z, N, 0.9), 0);
    bench_rng_seed(&r, 15);
    for (int i = 0; i < DRAWS; i++) {
        count[zipf_next(&z, &r)]++;
    }
    for (int k = 1; k <= N; k++) {
        norm += pow(k, -0.99);
    }
    for (int k = 1; k <= N; k++) {
        double expect = DRAWS * pow(k, -0.99) / norm;
        chi += (count[k - 1] - expect) * (count[k - 1] - expect) / expect;
    }
    cr_assert_gt(chi, (N - 1) + 5.0 * sqrt(2.0 * (N - 1)));
}

Test(bench_zipf, the_top_rank_of_a_million_keys_has_its_share)
{
    /* Large n: the share of rank 0 is 1 / H(n, theta), checked to 4 binomial deviations. */
    enum { N = 1000000, DRAWS = 1000000 };
    struct zipf z;
    struct bench_rng r;
    double norm = 0.0;
    uint64_t top = 0, top10 = 0;

    cr_assert_eq(zipf_init(&z, N, 0.99), 0);
    bench_rng_seed(&r, 16);
    for (int i = 0; i < DRAWS; i++) {
        uint64_t k = zipf_next(&z, &r);
        cr_assert_lt(k, N);
        top += k == 0;
        top10 += k < 10;
    }
    for (int k = N; k >= 1; k--) {
        norm += pow(k, -0.99);
    }
    double p1 = 1.0 / norm, p10 = 0.0;
    for (int k = 1; k <= 10; k++) {
        p10 += pow(k, -0.99) / norm;
    }
    double sd1 = sqrt(DRAWS * p1 * (1 - p1)), sd10 = sqrt(DRAWS * p10 * (1 - p10));
    cr_assert_lt(fabs((double)top - DRAWS * p1), 4 * sd1, "rank 0: %lu, expected %.0f",
                 (unsigned long)top, DRAWS * p1);
    cr_assert_lt(fabs((double)top10 - DRAWS * p10), 4 * sd10, "top 10: %lu, expected %.0f",
                 (unsigned long)top10, DRAWS * p10);
}

Test(bench_zipf, a_single_key_is_always_drawn)
{
    struct zipf z;
    struct bench_rng r;
    cr_assert_eq(zipf_init(&z, 1, 0.99), 0);
    bench_rng_seed(&r, 1);
    for (int i = 0; i < 1000; i++) {
        cr_assert_eq(zipf_next(&z, &r), 0);
    }
}

Test(bench_zipf, bad_parameters_are_refused)
{
    struct zipf z;
    cr_assert_eq(zipf_init(&z, 0, 0.99), -EINVAL);
    cr_assert_eq(zipf_init(&z, 10, 0.0), -EINVAL);
    cr_assert_eq(zipf_init(&z, 10, -1.0), -EINVAL);
    cr_assert_eq(zipf_init(&z, 10, NAN), -EINVAL);
}
