/*
 * hist: a log-linear latency histogram in the style of HdrHistogram.
 *
 * Values (nanoseconds, in the load generator) below 2^s are counted exactly; above that, each
 * power-of-two range [2^e, 2^(e+1)) is split into 2^s equal sub-buckets, so a bucket is never
 * wider than 1/2^s of its lower bound. A percentile is reported as the highest value of the
 * bucket holding that rank (capped at the exact maximum), hence for every recorded value set:
 *
 *     true percentile <= hist_percentile() < true percentile * (1 + 2^-s)
 *
 * i.e. the report never understates the tail, and overstates it by less than 2^-s (0.79% for
 * the load generator's s = 7). The layout covers every value below the power of two above the
 * `highest` given to hist_init(); larger values are counted in the top bucket: min and max stay
 * exact, but percentiles that fall there lose the bound.
 *
 * Threads: a histogram has one owner thread; merging is done by one thread after the owners of
 * the sources have stopped writing them (e.g. after pthread_join()).
 * Memory: the bucket array is heap memory owned by the histogram, released by hist_free().
 */
#ifndef PETREL_BENCH_HIST_H
#define PETREL_BENCH_HIST_H

#include <stdint.h>

struct hist {
    uint64_t *counts;  /* nbuckets counters */
    uint32_t nbuckets; /* (top exponent - sub_bits + 2) << sub_bits */
    uint32_t sub_bits; /* s: log2 of the linear sub-buckets per power of two */
    uint64_t highest;  /* as given to hist_init(); the bound holds at least up to it */
    uint64_t total;    /* values recorded */
    uint64_t min;      /* smallest value recorded (UINT64_MAX when empty) */
    uint64_t max;      /* largest value recorded (0 when empty) */
    uint64_t sum;      /* sum of values, for the mean (saturates rather than wraps) */
};

/**
 * Prepare an empty histogram for values up to `highest` (>= 1) with 2^sub_bits sub-buckets per
 * power of two (1 <= sub_bits <= 16). Returns 0, -EINVAL for bad parameters or -ENOMEM.
 */
int hist_init(struct hist *h, uint32_t sub_bits, uint64_t highest);

/** Release the buckets; the histogram must be initialised again before reuse. */
void hist_free(struct hist *h);

/** Forget every recorded value, keeping the layout. */
void hist_reset(struct hist *h);

/** Count one value. Constant time, no allocation. */
void hist_record(struct hist *h, uint64_t v);

/**
 * Add every value counted in src to dst. Both must have the same sub_bits and highest.
 * Returns 0 or -EINVAL (then dst is unchanged).
 */
int hist_merge(struct hist *dst, const struct hist *src);

/**
 * The value at percentile pct (0..100): the smallest recorded value v, rounded up to the top of
 * its bucket, such that at least pct% of the values are <= v. pct <= 0 gives the minimum,
 * pct >= 100 the maximum. Returns 0 for an empty histogram.
 */
uint64_t hist_percentile(const struct hist *h, double pct);

/** Mean of the recorded values (0 when empty). */
double hist_mean(const struct hist *h);

/** Bucket index of v; exposed for tests. */
uint32_t hist_bucket(const struct hist *h, uint64_t v);

/** Lowest and highest value that fall into bucket idx; exposed for tests. */
void hist_bucket_range(const struct hist *h, uint32_t idx, uint64_t *lo, uint64_t *hi);

#endif /* PETREL_BENCH_HIST_H */
