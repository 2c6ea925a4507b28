/*
 * zipf: draws ranks 0..n-1 with P(rank r) proportional to 1 / (r + 1)^theta, in constant time
 * and constant memory for any n, by rejection-inversion (W. Hormann and G. Derflinger,
 * "Rejection-inversion to generate variates from monotone discrete distributions", ACM TOMACS,
 * 1996). Rank 0 is the most popular key.
 *
 * The method inverts the integral of the continuous hat x^-theta and rejects the few points
 * where the hat and the discrete masses differ; fewer than one draw in ten is rejected for the
 * thetas benchmarks use (0.5 to 1.5), so a sample costs a few exp/log calls.
 *
 * Threads: a struct zipf is read-only after zipf_init(); any number of threads may draw from it
 * at once, each with its own generator.
 */
#ifndef PETREL_BENCH_ZIPF_H
#define PETREL_BENCH_ZIPF_H

#include <stdint.h>

#include "rng.h"

struct zipf {
    uint64_t n;   /* ranks 0 .. n-1 */
    double theta; /* exponent, > 0 */
    double h_x1;  /* H(1.5) - 1: where the inverted range starts */
    double h_n;   /* H(n + 0.5): where it ends */
    double s;     /* squeeze: x this close below k is accepted without the full test */
};

/**
 * Prepare a generator over n >= 1 ranks with exponent theta (finite, 0 < theta <= 40).
 * Returns 0 or -EINVAL.
 */
int zipf_init(struct zipf *z, uint64_t n, double theta);

/** Draw one rank in [0, n) using r. */
uint64_t zipf_next(const struct zipf *z, struct bench_rng *r);

#endif /* PETREL_BENCH_ZIPF_H */
