/*
 * zipf: rejection-inversion sampling for the Zipf distribution, see zipf.h.
 *
 * Notation, for ranks k = 1..n (one more than the returned rank) and exponent q = theta:
 *   h(x) = x^-q                                the hat's density, equal to the mass of k at x = k
 *   H(x) = (x^(1-q) - 1) / (1-q)  (ln x at q=1)  an antiderivative of h
 *   H^-1(y) = (1 + (1-q) y)^(1/(1-q))  (e^y at q=1)
 * Both are written through expm1/log1p helpers so that q near 1 loses no precision and needs no
 * special case.
 */
#include "zipf.h"

#include <errno.h>
#include <math.h>

/* expm1(t) / t, continuous at t = 0 (where it is 1). */
static double
expm1_over(double t)
{
    if (fabs(t) > 1e-8) {
        return expm1(t) / t;
    }
    return 1.0 + t * 0.5 * (1.0 + t / 3.0);
}

/* log1p(t) / t, continuous at t = 0 (where it is 1). */
static double
log1p_over(double t)
{
    if (fabs(t) > 1e-8) {
        return log1p(t) / t;
    }
    return 1.0 - t * (0.5 - t / 3.0);
}

static double
zipf_h(const struct zipf *z, double x)
{
    return exp(-z->theta * log(x));
}

static double
zipf_H(const struct zipf *z, double x)
{
    double lx = log(x);
    return expm1_over((1.0 - z->theta) * lx) * lx;
}

static double
zipf_H_inv(const struct zipf *z, double y)
{
    double t = y * (1.0 - z->theta);
    if (t < -1.0) {
        /* Only rounding can get here (H is bounded by 1/(q-1) for q > 1): the far end. */
        t = -1.0;
    }
    return exp(log1p_over(t) * y);
}

int
zipf_init(struct zipf *z, uint64_t n, double theta)
{
    if (n == 0 || !isfinite(theta) || theta <= 0.0 || theta > 40.0) {
        return -EINVAL;
    }
    z->n = n;
    z->theta = theta;
    z->h_x1 = zipf_H(z, 1.5) - 1.0;
    z->h_n = zipf_H(z, (double)n + 0.5);
    z->s = 2.0 - zipf_H_inv(z, zipf_H(z, 2.5) - zipf_h(z, 2.0));
    return 0;
}

uint64_t
zipf_next(const struct zipf *z, struct bench_rng *r)
{
    for (;;) {
        /*
         * u is uniform over the hat's area, measured from the far end; inverting it gives a
         * continuous x whose nearest integer k is the candidate. The area of k's strip under
         * the hat exceeds k's mass by a sliver that is rejected: either k - x is within the
         * squeeze (always accepted), or u must fall in the part of the strip that k owns.
         */
        double u = z->h_n + bench_rng_double(r) * (z->h_x1 - z->h_n);
        double x = zipf_H_inv(z, u);
        double kd = floor(x + 0.5);
        if (kd < 1.0) {
            kd = 1.0;
        } else if (kd > (double)z->n) {
            kd = (double)z->n;
        }
        if (kd - x <= z->s || u >= zipf_H(z, kd + 0.5) - zipf_h(z, kd)) {
            return (uint64_t)kd - 1;
        }
    }
}
