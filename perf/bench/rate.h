/*
 * rate: the open-loop schedule of one connection.
 *
 * A run's total rate R (requests per second) is shared by its C connections: each connection
 * sends at R / C, and connection i starts i / R seconds after the run starts, so together they
 * send one request every 1 / R seconds rather than C requests at once. Request k of connection
 * i is due at
 *
 *     t(k) = t0 + floor(i * 1e9 / R) + floor(k * C * 1e9 / R)   (nanoseconds)
 *
 * computed exactly in 128-bit integers from k, so the schedule never drifts however long it
 * runs. The schedule does not move when the server is slow: a request that could not be sent
 * on time is still timed from t(k), which is what keeps coordinated omission out of the tail.
 *
 * Pure arithmetic on a clock value passed in: no system calls, so tests can drive it with a
 * simulated clock. Threads: a struct rate belongs to the thread that owns its connection.
 */
#ifndef PETREL_BENCH_RATE_H
#define PETREL_BENCH_RATE_H

#include <stdint.h>

struct rate {
    uint64_t base;   /* t(0): the run's start plus this connection's phase */
    uint64_t num;    /* C * 1e9: nanoseconds per request times R */
    uint64_t den;    /* R */
    uint64_t next_k; /* index of the next request not yet taken */
};

/**
 * Schedule connection `index` of `nconns` sharing `total_per_s` requests per second, starting at
 * t0_ns. Returns 0, or -EINVAL if total_per_s is 0 or above 1e9, nconns is 0 or index >= nconns.
 */
int rate_init(struct rate *r, uint64_t t0_ns, uint64_t total_per_s, uint32_t nconns,
              uint32_t index);

/** Due time of request k (taken or not). */
uint64_t rate_time(const struct rate *r, uint64_t k);

/** Due time of the next request not yet taken. */
uint64_t rate_peek(const struct rate *r);

/** Take the next request: returns its due time and advances the schedule by one. */
uint64_t rate_take(struct rate *r);

/** How many requests of the whole schedule are due at or before t (taken or not). */
uint64_t rate_count_by(const struct rate *r, uint64_t t);

/** How many requests are due at `now` and not yet taken. */
uint64_t rate_due(const struct rate *r, uint64_t now);

#endif /* PETREL_BENCH_RATE_H */
