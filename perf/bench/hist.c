/*
 * hist: log-linear histogram; the layout and its error bound are described in hist.h.
 *
 * With M = 2^s sub-buckets: a value v < M has bucket v. A larger value with top bit e (e >= s)
 * is shifted right by e - s, which leaves a number in [M, 2M) (its top s+1 bits); the bucket is
 * (e - s) * M + that number. Buckets are therefore contiguous: [0, 2M) hold single values, and
 * every following run of M buckets covers one power of two with widths 2^(e-s).
 */
#include "hist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint32_t
top_bit(uint64_t v)
{
    return 63u - (uint32_t)__builtin_clzll(v);
}

int
hist_init(struct hist *h, uint32_t sub_bits, uint64_t highest)
{
    memset(h, 0, sizeof(*h));
    if (sub_bits < 1 || sub_bits > 16 || highest < 1) {
        return -EINVAL;
    }
    uint32_t e = top_bit(highest);
    if (e < sub_bits) {
        e = sub_bits;
    }
    h->sub_bits = sub_bits;
    h->highest = highest;
    h->nbuckets = (e - sub_bits + 2) << sub_bits;
    h->counts = calloc(h->nbuckets, sizeof(*h->counts));
    if (h->counts == NULL) {
        return -ENOMEM;
    }
    h->min = UINT64_MAX;
    return 0;
}

void
hist_free(struct hist *h)
{
    free(h->counts);
    memset(h, 0, sizeof(*h));
}

void
hist_reset(struct hist *h)
{
    memset(h->counts, 0, h->nbuckets * sizeof(*h->counts));
    h->total = 0;
    h->sum = 0;
    h->max = 0;
    h->min = UINT64_MAX;
}

uint32_t
hist_bucket(const struct hist *h, uint64_t v)
{
    uint64_t m = 1ull << h->sub_bits;

    if (v < m) {
        return (uint32_t)v;
    }
    /* The layout ends at the power of two above `highest`; larger values share the top bucket. */
    uint32_t shift = top_bit(v) - h->sub_bits;
    uint64_t idx = ((uint64_t)shift << h->sub_bits) + (v >> shift);
    return idx < h->nbuckets ? (uint32_t)idx : h->nbuckets - 1;
}

void
hist_bucket_range(const struct hist *h, uint32_t idx, uint64_t *lo, uint64_t *hi)
{
    uint64_t m = 1ull << h->sub_bits;

    if (idx < m) {
        *lo = *hi = idx;
        return;
    }
    uint32_t shift = (idx >> h->sub_bits) - 1;
    uint64_t sub = (idx & (m - 1)) + m;
    *lo = sub << shift;
    *hi = *lo + ((1ull << shift) - 1);
}

void
hist_record(struct hist *h, uint64_t v)
{
    h->counts[hist_bucket(h, v)]++;
    h->total++;
    h->sum = (h->sum + v < h->sum) ? UINT64_MAX : h->sum + v;
    if (v < h->min) {
        h->min = v;
    }
    if (v > h->max) {
        h->max = v;
    }
}

int
hist_merge(struct hist *dst, const struct hist *src)
{
    if (dst->sub_bits != src->sub_bits || dst->highest != src->highest) {
        return -EINVAL;
    }
    for (uint32_t i = 0; i < dst->nbuckets; i++) {
        dst->counts[i] += src->counts[i];
    }
    dst->total += src->total;
    dst->sum = (dst->sum + src->sum < dst->sum) ? UINT64_MAX : dst->sum + src->sum;
    if (src->min < dst->min) {
        dst->min = src->min;
    }
    if (src->max > dst->max) {
        dst->max = src->max;
    }
    return 0;
}

uint64_t
hist_percentile(const struct hist *h, double pct)
{
    if (h->total == 0) {
        return 0;
    }
    if (pct <= 0.0) {
        return h->min;
    }
    if (pct >= 100.0) {
        return h->max;
    }
    /*
     * The rank is ceil(pct% of total), at least 1: the same definition as taking element
     * rank-1 of the sorted values, which is what the tests compare against. The small epsilon
     * keeps e.g. 99.9% of 1000 from becoming 999.0000000001 and so rank 1000.
     */
    double want = pct / 100.0 * (double)h->total;
    uint64_t rank = (uint64_t)(want - 1e-9);
    if ((double)rank < want - 1e-9) {
        rank++;
    }
    if (rank < 1) {
        rank = 1;
    }
    uint64_t seen = 0;
    for (uint32_t i = 0; i < h->nbuckets; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t lo, hi;
            hist_bucket_range(h, i, &lo, &hi);
            return hi < h->max ? hi : h->max;
        }
    }
    return h->max;
}

double
hist_mean(const struct hist *h)
{
    return h->total ? (double)h->sum / (double)h->total : 0.0;
}
