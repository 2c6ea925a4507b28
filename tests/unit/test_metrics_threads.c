/*
 * The metrics registry under concurrency, without Criterion so that ThreadSanitizer can watch it
 * (suite 'threads' in the TSan build; also in 'unit'). Writers bump their own blocks while a
 * reader sums snapshots and a churner registers and unregisters blocks (freed through call_rcu
 * under the reader's feet). Checks: the reader's totals never go backwards, and after the
 * writers stop the totals are exact. Prints "N passed, N failed".
 */
#include "petrel/prcu.h"
#include "petrel/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define WRITERS 3
#define ROUNDS  200000

static const struct metric_def defs[] = {
    {"ops", METRIC_COUNTER, "operations"},
    {"lat", METRIC_HISTOGRAM, "latency"},
};
static const struct metric_table table = {"t", defs, 2};

static struct metrics *reg;
static _Atomic int writers_done;
static _Atomic int stop_churn;

static void *
writer(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    prcu_thread_register();
    struct metrics_block *b;
    if (metrics_block_register(reg, id, &b) < 0) {
        abort();
    }
    metric_t *m = metrics_slots(b, 0);
    for (unsigned i = 0; i < ROUNDS; i++) {
        metrics_incr(&m[0]);
        metrics_hist_record(&m[1], i % 5000);
    }
    atomic_fetch_add(&writers_done, 1);
    /* Keep the block registered: the final check counts it. */
    while (atomic_load(&stop_churn) == 0) {
        sched_yield();
    }
    metrics_block_unregister(reg, &b);
    prcu_thread_unregister();
    return NULL;
}

static void *
churner(void *arg)
{
    (void)arg;
    prcu_thread_register();
    while (atomic_load(&stop_churn) == 0) {
        struct metrics_block *b;
        if (metrics_block_register(reg, 100, &b) == 0) {
            metrics_incr(&metrics_slots(b, 0)[0]);
            metrics_block_unregister(reg, &b);
        }
    }
    prcu_thread_unregister();
    return NULL;
}

/* Returns an error message or NULL. */
static const char *
reader(void)
{
    uint64_t last_writers = 0;
    for (;;) {
        int done = atomic_load(&writers_done);
        struct metrics_snapshot *s;
        if (metrics_snapshot_take(reg, &s) < 0) {
            return "snapshot failed";
        }
        /* Only the writers' blocks (ids below 100) are monotonic; the churner's come and go. */
        uint64_t sum = 0;
        for (size_t i = 0; i < metrics_snapshot_blocks(s); i++) {
            if (metrics_snapshot_block_id(s, i) < 100) {
                sum += metrics_snapshot_value(s, i, 0, 0);
            }
        }
        metrics_snapshot_free(&s);
        if (sum < last_writers) {
            return "a total went backwards";
        }
        last_writers = sum;
        if (done == WRITERS) {
            return sum == (uint64_t)WRITERS * ROUNDS ? NULL : "final total is wrong";
        }
    }
}

int
main(void)
{
    prcu_thread_register();
    if (metrics_create(&reg, &table, 1) < 0) {
        return 1;
    }
    pthread_t w[WRITERS], c;
    for (uintptr_t i = 0; i < WRITERS; i++) {
        pthread_create(&w[i], NULL, writer, (void *)i);
    }
    pthread_create(&c, NULL, churner, NULL);
    const char *err = reader();

    /* Histograms: every writer's observations are all there, and their sum is exact. */
    const char *err2 = NULL;
    struct metrics_snapshot *s;
    if (metrics_snapshot_take(reg, &s) == 0) {
        uint64_t h[METRICS_HIST_SLOTS], n = 0, want_sum = 0;
        metrics_snapshot_hist(s, 0, 1, h);
        for (unsigned i = 0; i < METRICS_HIST_BUCKETS; i++) {
            n += h[i];
        }
        for (unsigned i = 0; i < ROUNDS; i++) {
            want_sum += i % 5000;
        }
        if (n != (uint64_t)WRITERS * ROUNDS || h[METRICS_HIST_BUCKETS] != WRITERS * want_sum) {
            err2 = "histogram counts or sum are wrong";
        }
        metrics_snapshot_free(&s);
    } else {
        err2 = "snapshot failed";
    }
    atomic_store(&stop_churn, 1);
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(w[i], NULL);
    }
    pthread_join(c, NULL);
    metrics_destroy(&reg);
    prcu_thread_unregister();

    unsigned passed = 0, failed = 0;
    printf("%s metrics: totals never go backwards and end exact under concurrent writers%s%s\n",
           err ? "FAIL" : "ok  ", err ? ": " : "", err ? err : "");
    err ? failed++ : passed++;
    printf("%s metrics: histograms sum every writer's observations%s%s\n", err2 ? "FAIL" : "ok  ",
           err2 ? ": " : "", err2 ? err2 : "");
    err2 ? failed++ : passed++;
    printf("%u passed, %u failed\n", passed, failed);
    return failed ? 1 : 0;
}
