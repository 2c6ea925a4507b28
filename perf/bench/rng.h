/*
 * rng: a small, fast pseudo-random generator for the load generator (xoshiro256**, seeded
 * through splitmix64). Not for anything secret: it only decides keys, sizes and commands.
 *
 * Threads: a struct bench_rng belongs to one thread; each client thread seeds its own from the
 * run's seed and its index, so runs with the same seed and thread count draw the same streams.
 */
#ifndef PETREL_BENCH_RNG_H
#define PETREL_BENCH_RNG_H

#include <stdint.h>

struct bench_rng {
    uint64_t s[4];
};

static inline uint64_t
bench_rng_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/** Seed the four words of state from one 64-bit seed (splitmix64 steps never give all zero). */
static inline void
bench_rng_seed(struct bench_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        r->s[i] = z ^ (z >> 31);
    }
}

/** Next 64 uniformly distributed bits. */
static inline uint64_t
bench_rng_next(struct bench_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = bench_rng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = bench_rng_rotl(s[3], 45);
    return out;
}

/** Uniform double in [0, 1), from the top 53 bits. */
static inline double
bench_rng_double(struct bench_rng *r)
{
    return (double)(bench_rng_next(r) >> 11) * 0x1.0p-53;
}

/**
 * Uniform integer in [0, n) for n > 0, by a 64x64->128 multiply. The bias is below n / 2^64,
 * far under anything a benchmark can see, so no rejection loop is spent on it.
 */
static inline uint64_t
bench_rng_below(struct bench_rng *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)bench_rng_next(r) * n) >> 64);
}

#endif /* PETREL_BENCH_RNG_H */
