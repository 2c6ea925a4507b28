/*
 * metrics: per-thread metric blocks in an RCU-protected registry, summed and rendered by readers.
 *
 * A module declares its metrics once, in a table (struct metric_table: name, type, help). A
 * registry (struct metrics) is built from the tables of every module of a product; each table
 * gets a contiguous range of slots in every block: one slot per counter or gauge, and
 * METRICS_HIST_SLOTS per histogram. Every worker registers one block and is its only writer:
 * it updates its slots with relaxed atomic loads and stores (no read-modify-write, no lock), so
 * readers never see a torn value. Blocks sit on a list protected by RCU (petrel/prcu.h):
 * readers (the admin thread, or a worker answering "stats") walk it inside a read-side section
 * and sum; a block that is unregistered is freed once no reader can see it.
 *
 * Histograms are log-linear over unsigned 64-bit values (for latencies: nanoseconds): values
 * below 16 have a bucket each; above, every power of two is split into 16 equal buckets, so a
 * bucket's width is at most 1/16 of its lower bound, and a percentile reported as the middle of
 * its bucket is within 1/32 (3.2%) of the true value. Values of 2^40 and more (18 minutes in ns)
 * share the last bucket.
 *
 * Readers take a snapshot (a copy of every block's slots, in worker order) and render it as
 * memcached "STAT" lines, Prometheus text exposition or JSON.
 *
 * Threads: readers, and owners unregistering their block, must be registered RCU threads
 * (prcu_thread_register()).
 */
#ifndef PETREL_METRICS_H
#define PETREL_METRICS_H

#include "petrel/buf.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** One slot: written by its block's owner only (relaxed), read by anyone (relaxed). */
typedef _Atomic uint64_t metric_t;

enum metric_type {
    METRIC_COUNTER,   /* only grows (Prometheus: name_total) */
    METRIC_GAUGE,     /* goes up and down, or a copy of a value owned elsewhere */
    METRIC_HISTOGRAM, /* log-linear buckets plus a sum; values in nanoseconds for latencies */
};

/** A metric's declaration. name is also its memcached "stats" field name. */
struct metric_def {
    const char *name;
    enum metric_type type;
    const char *help; /* one line, for Prometheus HELP */
};

/** A module's table of metrics. The definitions must outlive the registry (static const). */
struct metric_table {
    const char *name; /* for diagnostics, e.g. "runtime" */
    const struct metric_def *defs;
    size_t n;
};

#define METRICS_HIST_SUB_BITS 4
#define METRICS_HIST_MAX_EXP  40 /* values >= 2^40 share the last bucket */
#define METRICS_HIST_BUCKETS                                                                       \
    ((METRICS_HIST_MAX_EXP - METRICS_HIST_SUB_BITS + 1) << METRICS_HIST_SUB_BITS)
#define METRICS_HIST_SLOTS (METRICS_HIST_BUCKETS + 1) /* the buckets, then the sum */

/** Bucket index of value v. Any thread; pure. */
static inline unsigned
metrics_hist_index(uint64_t v)
{
    const unsigned sub = 1u << METRICS_HIST_SUB_BITS;
    if (v < sub) {
        return (unsigned)v;
    }
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    if (e >= METRICS_HIST_MAX_EXP) {
        return METRICS_HIST_BUCKETS - 1;
    }
    unsigned s = (unsigned)(v >> (e - METRICS_HIST_SUB_BITS)) & (sub - 1);
    return ((e - METRICS_HIST_SUB_BITS + 1) << METRICS_HIST_SUB_BITS) + s;
}

/** Smallest value that falls in bucket idx. Any thread; pure. */
uint64_t metrics_hist_lower(unsigned idx);

/** One past the largest value of bucket idx (UINT64_MAX for the last bucket). Any thread. */
uint64_t metrics_hist_upper(unsigned idx);

/** Add one to a counter slot. Owner thread of the block only. */
static inline void
metrics_incr(metric_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/** Add n to a counter (or a gauge, n may wrap to subtract). Owner thread only. */
static inline void
metrics_add(metric_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/** Set a gauge. Owner thread only. */
static inline void
metrics_set(metric_t *g, uint64_t v)
{
    atomic_store_explicit(g, v, memory_order_relaxed);
}

/** Read one slot. Any thread. */
static inline uint64_t
metrics_get(const metric_t *m)
{
    return atomic_load_explicit((metric_t *)m, memory_order_relaxed);
}

/** Record n observations of value v in the histogram whose first slot is h. Owner thread only. */
static inline void
metrics_hist_record_n(metric_t *h, uint64_t v, uint64_t n)
{
    metrics_add(&h[metrics_hist_index(v)], n);
    metrics_add(&h[METRICS_HIST_BUCKETS], v * n);
}

/** Record one observation of v. Owner thread only. */
static inline void
metrics_hist_record(metric_t *h, uint64_t v)
{
    metrics_hist_record_n(h, v, 1);
}

/**
 * The value below which a fraction q (0..1) of the observations in buckets[] fall, reported as
 * the middle of the bucket that holds it; 0 without observations. Any thread; pure.
 */
uint64_t metrics_hist_quantile(const uint64_t *buckets, double q);

/** A registry of metric tables and the blocks that hold their values. */
struct metrics;
/** One thread's values for every table of a registry. */
struct metrics_block;

/**
 * Build a registry from n tables (copied; their definitions are not). Table i's slots are
 * found with metrics_slots(block, i). Returns 0 and sets *out, -EINVAL for a table with an
 * empty or duplicate name, or -ENOMEM. Any thread.
 */
int metrics_create(struct metrics **out, const struct metric_table *tables, size_t n);

/**
 * Free a registry whose blocks were all unregistered; waits for pending deferred frees. Sets
 * *m to NULL. Must be called from a registered RCU thread outside any read-side section.
 */
void metrics_destroy(struct metrics **m);

/**
 * Allocate a zeroed block labelled id (the worker index) and publish it on the registry's list.
 * The calling thread becomes its only writer. Returns 0 and sets *out, or -ENOMEM. Any thread
 * (a short mutex orders concurrent registrations; readers never take it).
 */
int metrics_block_register(struct metrics *m, unsigned id, struct metrics_block **out);

/**
 * Take the block off the list and free it after a grace period; sets *b to NULL.
 * Its values no longer count in sums. Registered RCU thread, usually the owner at exit.
 */
void metrics_block_unregister(struct metrics *m, struct metrics_block **b);

/** First slot of table `table` in block b. Owner (to write) or any thread (to read). */
metric_t *metrics_slots(struct metrics_block *b, unsigned table);

/** Zero every counter and histogram of block b (gauges stay): "stats reset". Owner thread. */
void metrics_block_reset(struct metrics_block *b);

/** Number of slots table `table` takes in every block. */
size_t metrics_table_slots(const struct metrics *m, unsigned table);

/** A copy of every registered block's values, for rendering. Owned by the caller. */
struct metrics_snapshot;

/**
 * Copy every block's values (inside one RCU read-side section), ordered by block id. Each slot
 * is read atomically; different slots may be a few updates apart. Returns 0 and sets *out, or
 * -ENOMEM. Registered RCU thread.
 */
int metrics_snapshot_take(struct metrics *m, struct metrics_snapshot **out);

/** Free a snapshot; sets *s to NULL. */
void metrics_snapshot_free(struct metrics_snapshot **s);

/** Blocks in the snapshot. */
size_t metrics_snapshot_blocks(const struct metrics_snapshot *s);

/** Label (id) of the snapshot's i-th block. */
unsigned metrics_snapshot_block_id(const struct metrics_snapshot *s, size_t i);

/** Value of counter/gauge idx of table `table` in the snapshot's i-th block. */
uint64_t metrics_snapshot_value(const struct metrics_snapshot *s, size_t i, unsigned table,
                                unsigned idx);

/** Sum over every block of counter/gauge idx of table `table`. */
uint64_t metrics_snapshot_total(const struct metrics_snapshot *s, unsigned table, unsigned idx);

/**
 * Sum over every block of histogram idx of table `table`: buckets into out[0 ..
 * METRICS_HIST_BUCKETS - 1] and the sum of the values into out[METRICS_HIST_BUCKETS].
 */
void metrics_snapshot_hist(const struct metrics_snapshot *s, unsigned table, unsigned idx,
                           uint64_t out[METRICS_HIST_SLOTS]);

/** Find a metric by name; sets *table and *idx. Returns 0 or -ENOENT. */
int metrics_find(const struct metrics *m, const char *name, unsigned *table, unsigned *idx);

/** A process-wide value, rendered next to the registry's (e.g. uptime, accepted connections). */
struct metric_value {
    const struct metric_def *def;
    uint64_t value;
    const char *prom; /* its Prometheus name, when def->name lacks the unit ("uptime_seconds");
                       * NULL: def->name */
};

/**
 * A stat handed to whoever formats it (a protocol's stats or INFO reply): its name and its
 * value as text. Returns 0, or an error that stops the walk and is returned by it.
 */
typedef int (*metrics_stat_fn)(void *arg, const char *name, const char *value);

/**
 * Hand fn the process-wide values, then every counter and gauge of every table summed over the
 * blocks (histograms are left to metrics_write_latency()), in that order. Returns 0 or what fn
 * returned.
 */
int metrics_stats_each(const struct metrics_snapshot *s, const struct metric_value *global,
                       size_t nglobal, metrics_stat_fn fn, void *arg);

/**
 * The same as "STAT name value\r\n" lines (the admin port's stats text). Returns 0 or the buf
 * error.
 */
int metrics_write_stats(struct buf *b, const struct metrics_snapshot *s,
                        const struct metric_value *global, size_t nglobal);

/** "STAT worker_<id>_<name> value\r\n" for every counter and gauge of every block. */
int metrics_write_workers(struct buf *b, const struct metrics_snapshot *s);

/**
 * For every histogram, summed over blocks: "STAT <name>_count", "_mean_us", "_p50_us",
 * "_p99_us", "_p999_us", "_p9999_us" (microseconds with three decimals; values taken to be ns).
 */
int metrics_write_latency(struct buf *b, const struct metrics_snapshot *s);

/**
 * Prometheus text exposition (version 0.0.4): HELP and TYPE lines for every metric, names
 * prefixed with prefix ("petrel_"); counters end in _total, and memcached's "total_X" counters
 * are named X_total (not total_X_total). Process-wide values have no label;
 * counters and gauges of the blocks have one sample per block labelled worker="<id>";
 * histograms are summed over the blocks, exported in seconds (name_seconds_bucket with le at
 * 2^k - 1 ns for k = 10..36, i.e. about 1 us to 69 s, then +Inf; _sum; _count).
 */
int metrics_write_prometheus(struct buf *b, const struct metrics_snapshot *s, const char *prefix,
                             const struct metric_value *global, size_t nglobal);

/**
 * One JSON object: {"global": {...}, "total": {...}, "workers": [{"worker": id, ...}, ...],
 * "latency": {"<name>": {"count", "mean_us", "p50_us", "p99_us", "p999_us", "p9999_us"}}}.
 */
int metrics_write_json(struct buf *b, const struct metrics_snapshot *s,
                       const struct metric_value *global, size_t nglobal);

#endif /* PETREL_METRICS_H */
