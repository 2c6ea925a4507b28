/* Unit tests for perf/bench/rate: the open-loop schedule, driven by a simulated clock. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>

#include "rate.h"
#include "rng.h"

#define S 1000000000ull

Test(bench_rate, one_connection_releases_each_request_at_its_time)
{
    struct rate r;
    struct bench_rng rng;
    uint64_t now = 5 * S, prev_now = 0, taken = 0;

    bench_rng_seed(&rng, 1);
    cr_assert_eq(rate_init(&r, now, 1000, 1, 0), 0);
    /* Ten simulated seconds, the clock advancing by random steps of up to 3 ms. */
    while (now < 15 * S) {
        uint64_t due = rate_due(&r, now);
        for (uint64_t i = 0; i < due; i++) {
            uint64_t t = rate_take(&r);
            cr_assert_eq(t, 5 * S + taken * 1000000, "request %lu at %lu", (unsigned long)taken,
                         (unsigned long)t);
            cr_assert_leq(t, now, "released before its time");
            cr_assert_gt(t, prev_now, "was already due at the previous look");
            taken++;
        }
        cr_assert_eq(rate_due(&r, now), 0);
        prev_now = now;
        now += 1 + bench_rng_below(&rng, 3000000);
    }
    /* Every request due by the last look was released, and no more. */
    cr_assert_eq(taken, (prev_now - 5 * S) / 1000000 + 1);
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

Test(bench_rate, connections_interleave_into_one_even_stream)
{
    enum { CONNS = 7, RATE = 100003 };
    struct rate r[CONNS];
    static uint64_t times[2 * RATE];
    size_t n = 0;
    const uint64_t t0 = 1000;

    for (uint32_t i = 0; i < CONNS; i++) {
        cr_assert_eq(rate_init(&r[i], t0, RATE, CONNS, i), 0);
    }
    /* One simulated second in 100 us steps, every connection taking what is due. */
    for (uint64_t now = t0; now <= t0 + S; now += 100000) {
        for (int i = 0; i < CONNS; i++) {
            for (uint64_t d = rate_due(&r[i], now); d > 0; d--) {
                times[n++] = rate_take(&r[i]);
            }
        }
    }
    qsort(times, n, sizeof(times[0]), cmp_u64);
    /* Together they send at the total rate, request j at j / RATE seconds, within rounding. */
    cr_assert(n >= RATE - CONNS && n <= RATE + 1, "%zu requests in a second", n);
    for (size_t j = 0; j < n; j++) {
        double ideal = (double)t0 + (double)j * 1e9 / RATE;
        cr_assert(times[j] >= ideal - 2.0 && times[j] <= ideal + 1.0,
                  "request %zu at %lu, ideal %.1f", j, (unsigned long)times[j], ideal);
    }
}

Test(bench_rate, the_schedule_does_not_drift_over_long_runs)
{
    struct rate r;
    /* 3 per second: the period, 333333333.3 ns, is not a whole number of nanoseconds. */
    cr_assert_eq(rate_init(&r, 0, 3, 1, 0), 0);
    cr_assert_eq(rate_time(&r, 3000000000ull), 1000000000ull * S);
    cr_assert_eq(rate_time(&r, 1), 333333333);
    cr_assert_eq(rate_time(&r, 2), 666666666);
    cr_assert_eq(rate_count_by(&r, 1000000000ull * S), 3000000001ull);
}

Test(bench_rate, a_late_sender_finds_the_backlog_with_its_original_times)
{
    struct rate r;
    cr_assert_eq(rate_init(&r, S, 1000, 1, 0), 0);
    /* Nothing was taken for a whole second: 1001 requests are due (t = 1 s .. 2 s). */
    cr_assert_eq(rate_due(&r, 2 * S), 1001);
    cr_assert_eq(rate_take(&r), S);
    cr_assert_eq(rate_take(&r), S + 1000000);
    cr_assert_eq(rate_due(&r, 2 * S), 999);
}

Test(bench_rate, nothing_is_due_before_the_start)
{
    struct rate r;
    cr_assert_eq(rate_init(&r, 10 * S, 50, 2, 1), 0);
    cr_assert_eq(rate_peek(&r), 10 * S + S / 50);
    cr_assert_eq(rate_due(&r, 10 * S), 0);
    cr_assert_eq(rate_due(&r, 10 * S + S / 50 - 1), 0);
    cr_assert_eq(rate_due(&r, 10 * S + S / 50), 1);
}

Test(bench_rate, bad_schedules_are_refused)
{
    struct rate r;
    cr_assert_eq(rate_init(&r, 0, 0, 1, 0), -EINVAL);
    cr_assert_eq(rate_init(&r, 0, 100, 0, 0), -EINVAL);
    cr_assert_eq(rate_init(&r, 0, 100, 4, 4), -EINVAL);
    cr_assert_eq(rate_init(&r, 0, 2000000000ull, 1, 0), -EINVAL);
}
