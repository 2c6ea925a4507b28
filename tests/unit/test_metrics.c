/* Unit tests of the metrics registry: histogram geometry, blocks, snapshots and renderers. */
#include "petrel/prcu.h"
#include "petrel/metrics.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const struct metric_def run_defs[] = {
    {"conns", METRIC_GAUGE, "open connections"},
    {"reads", METRIC_COUNTER, "reads done"},
};
static const struct metric_def cmd_defs[] = {
    {"cmd_get", METRIC_COUNTER, "get commands"},
    {"get_latency", METRIC_HISTOGRAM, "get latency"},
    {"cmd_set", METRIC_COUNTER, "set commands"},
};
static const struct metric_table tables[] = {
    {"run", run_defs, 2},
    {"cmd", cmd_defs, 3},
};

static struct metrics *reg;

static void
setup(void)
{
    prcu_thread_register();
    cr_assert_eq(metrics_create(&reg, tables, 2), 0);
}

static void
teardown(void)
{
    metrics_destroy(&reg);
    prcu_thread_unregister();
}

TestSuite(metrics, .init = setup, .fini = teardown);

Test(metrics, every_value_falls_inside_its_bucket)
{
    for (uint64_t v = 0; v < 100000; v++) {
        unsigned i = metrics_hist_index(v);
        cr_assert(metrics_hist_lower(i) <= v && v < metrics_hist_upper(i), "v=%llu bucket %u",
                  (unsigned long long)v, i);
    }
    for (unsigned e = 17; e < 40; e++) {
        uint64_t v = (UINT64_C(1) << e) + 12345;
        unsigned i = metrics_hist_index(v);
        cr_assert(metrics_hist_lower(i) <= v && v < metrics_hist_upper(i));
    }
}

Test(metrics, buckets_are_contiguous_and_at_most_one_sixteenth_wide)
{
    for (unsigned i = 0; i + 1 < METRICS_HIST_BUCKETS; i++) {
        cr_assert_eq(metrics_hist_upper(i), metrics_hist_lower(i + 1), "bucket %u", i);
        uint64_t lo = metrics_hist_lower(i), width = metrics_hist_upper(i) - lo;
        cr_assert(lo < 16 || width * 16 <= lo, "bucket %u: [%llu, +%llu)", i,
                  (unsigned long long)lo, (unsigned long long)width);
    }
}

Test(metrics, huge_values_land_in_the_last_bucket)
{
    cr_assert_eq(metrics_hist_index(UINT64_MAX), METRICS_HIST_BUCKETS - 1);
    cr_assert_eq(metrics_hist_index(UINT64_C(1) << 40), METRICS_HIST_BUCKETS - 1);
    cr_assert_lt(metrics_hist_index((UINT64_C(1) << 40) - 1), METRICS_HIST_BUCKETS);
}

Test(metrics, quantiles_are_within_the_stated_relative_error)
{
    static uint64_t h[METRICS_HIST_SLOTS];
    /* 1..100000 once each: the true q-quantile is about q * 100000. */
    for (uint64_t v = 1; v <= 100000; v++) {
        h[metrics_hist_index(v)]++;
    }
    const double qs[] = {0.5, 0.9, 0.99, 0.999, 0.9999};
    for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
        double want = qs[k] * 100000;
        double got = (double)metrics_hist_quantile(h, qs[k]);
        cr_assert(got >= want * (1 - 1.0 / 32) && got <= want * (1 + 1.0 / 32), "q=%g: %g vs %g",
                  qs[k], got, want);
    }
}

Test(metrics, quantile_of_an_empty_histogram_is_zero)
{
    static uint64_t h[METRICS_HIST_SLOTS];
    cr_assert_eq(metrics_hist_quantile(h, 0.99), 0);
}

Test(metrics, duplicate_names_are_refused)
{
    static const struct metric_def dup[] = {{"reads", METRIC_COUNTER, "again"}};
    const struct metric_table two[] = {{"run", run_defs, 2}, {"dup", dup, 1}};
    struct metrics *m = (struct metrics *)1;
    cr_assert_eq(metrics_create(&m, two, 2), -EINVAL);
    cr_assert_null(m);
}

Test(metrics, totals_sum_every_registered_block)
{
    struct metrics_block *a, *b;
    cr_assert_eq(metrics_block_register(reg, 0, &a), 0);
    cr_assert_eq(metrics_block_register(reg, 1, &b), 0);
    metrics_add(&metrics_slots(a, 1)[0], 3); /* cmd_get */
    metrics_incr(&metrics_slots(b, 1)[0]);
    /* cmd_set comes after the histogram's slots. */
    metrics_incr(&metrics_slots(b, 1)[1 + METRICS_HIST_SLOTS]);
    metrics_set(&metrics_slots(a, 0)[0], 7);
    struct metrics_snapshot *s;
    cr_assert_eq(metrics_snapshot_take(reg, &s), 0);
    cr_assert_eq(metrics_snapshot_blocks(s), 2);
    cr_assert_eq(metrics_snapshot_total(s, 1, 0), 4);
    cr_assert_eq(metrics_snapshot_total(s, 1, 2), 1);
    cr_assert_eq(metrics_snapshot_total(s, 0, 0), 7);
    cr_assert_eq(metrics_snapshot_value(s, 1, 1, 0), 1);
    metrics_snapshot_free(&s);
    metrics_block_unregister(reg, &a);
    metrics_block_unregister(reg, &b);
    cr_assert_null(a);
}

Test(metrics, an_unregistered_block_no_longer_counts)
{
    struct metrics_block *a, *b;
    metrics_block_register(reg, 0, &a);
    metrics_block_register(reg, 1, &b);
    metrics_add(&metrics_slots(a, 0)[1], 5);
    metrics_add(&metrics_slots(b, 0)[1], 2);
    metrics_block_unregister(reg, &a);
    struct metrics_snapshot *s;
    cr_assert_eq(metrics_snapshot_take(reg, &s), 0);
    cr_assert_eq(metrics_snapshot_blocks(s), 1);
    cr_assert_eq(metrics_snapshot_total(s, 0, 1), 2);
    metrics_snapshot_free(&s);
    metrics_block_unregister(reg, &b);
}

Test(metrics, snapshot_lists_blocks_in_id_order)
{
    struct metrics_block *bl[3];
    const unsigned ids[] = {2, 0, 1};
    for (int i = 0; i < 3; i++) {
        metrics_block_register(reg, ids[i], &bl[i]);
        metrics_set(&metrics_slots(bl[i], 0)[0], 100 + ids[i]);
    }
    struct metrics_snapshot *s;
    metrics_snapshot_take(reg, &s);
    for (unsigned i = 0; i < 3; i++) {
        cr_assert_eq(metrics_snapshot_block_id(s, i), i);
        cr_assert_eq(metrics_snapshot_value(s, i, 0, 0), 100 + i);
    }
    metrics_snapshot_free(&s);
    for (int i = 0; i < 3; i++) {
        metrics_block_unregister(reg, &bl[i]);
    }
}

Test(metrics, histograms_sum_over_blocks)
{
    struct metrics_block *a, *b;
    metrics_block_register(reg, 0, &a);
    metrics_block_register(reg, 1, &b);
    metrics_hist_record(&metrics_slots(a, 1)[1], 1000);
    metrics_hist_record_n(&metrics_slots(b, 1)[1], 3000, 3);
    struct metrics_snapshot *s;
    metrics_snapshot_take(reg, &s);
    uint64_t h[METRICS_HIST_SLOTS];
    metrics_snapshot_hist(s, 1, 1, h);
    cr_assert_eq(h[metrics_hist_index(1000)], 1);
    cr_assert_eq(h[metrics_hist_index(3000)], 3);
    cr_assert_eq(h[METRICS_HIST_BUCKETS], 10000);
    metrics_snapshot_free(&s);
    metrics_block_unregister(reg, &a);
    metrics_block_unregister(reg, &b);
}

Test(metrics, find_gives_table_and_index)
{
    unsigned t, i;
    cr_assert_eq(metrics_find(reg, "cmd_set", &t, &i), 0);
    cr_assert_eq(t, 1);
    cr_assert_eq(i, 2);
    cr_assert_eq(metrics_find(reg, "nope", &t, &i), -ENOENT);
}

/* Render with one block holding known values; return the text (caller frees). */
static char *
render(int (*fn)(struct buf *, const struct metrics_snapshot *))
{
    struct metrics_block *a;
    metrics_block_register(reg, 3, &a);
    metrics_add(&metrics_slots(a, 0)[1], 42);
    metrics_hist_record(&metrics_slots(a, 1)[1], 2048); /* 2.048 us */
    struct metrics_snapshot *s;
    metrics_snapshot_take(reg, &s);
    struct buf b;
    buf_init(&b, 1024, 1 << 20);
    cr_assert_eq(fn(&b, s), 0);
    buf_append(&b, "", 1);
    char *text = strdup(buf_rptr(&b));
    buf_free(&b);
    metrics_snapshot_free(&s);
    metrics_block_unregister(reg, &a);
    return text;
}

static const struct metric_def uptime_def = {"uptime", METRIC_GAUGE, "seconds since start"};

static int
prom(struct buf *b, const struct metrics_snapshot *s)
{
    const struct metric_value g = {.def = &uptime_def, .value = 9};
    return metrics_write_prometheus(b, s, "petrel_", &g, 1);
}

Test(metrics, prometheus_has_help_type_worker_labels_and_histogram_series)
{
    char *t = render(prom);
    cr_assert(strstr(t, "# HELP petrel_uptime seconds since start\n# TYPE petrel_uptime gauge\n"
                        "petrel_uptime 9\n"),
              "%s", t);
    cr_assert(
        strstr(t, "# TYPE petrel_reads_total counter\npetrel_reads_total{worker=\"3\"} 42\n"));
    cr_assert(strstr(t, "# TYPE petrel_get_latency_seconds histogram\n"));
    /* Buckets end at 2^k - 1 ns: 2048 ns is past the 2047 ns one, inside the 4095 ns one. */
    cr_assert(strstr(t, "petrel_get_latency_seconds_bucket{le=\"2.047e-06\"} 0\n"), "%s", t);
    cr_assert(strstr(t, "petrel_get_latency_seconds_bucket{le=\"4.095e-06\"} 1\n"));
    cr_assert(strstr(t, "petrel_get_latency_seconds_bucket{le=\"+Inf\"} 1\n"));
    cr_assert(strstr(t, "petrel_get_latency_seconds_count 1\n"));
    cr_assert(strstr(t, "petrel_get_latency_seconds_sum 0.000002048\n"));
    free(t);
}

static const struct metric_def total_def = {"total_connections", METRIC_COUNTER, "accepted"};

static int
prom_named(struct buf *b, const struct metrics_snapshot *s)
{
    const struct metric_value g[] = {
        {.def = &uptime_def, .value = 9, .prom = "uptime_seconds"},
        {.def = &total_def, .value = 5},
    };
    return metrics_write_prometheus(b, s, "petrel_", g, 2);
}

Test(metrics, prometheus_names_carry_their_unit_and_one_total)
{
    char *t = render(prom_named);
    cr_assert(strstr(t, "# TYPE petrel_uptime_seconds gauge\npetrel_uptime_seconds 9\n"), "%s", t);
    cr_assert(strstr(t, "# TYPE petrel_connections_total counter\npetrel_connections_total 5\n"),
              "memcached's total_connections is not total_connections_total: %s", t);
    cr_assert(strstr(t, "total_connections") == NULL, "%s", t);
    free(t);
}

static int
stats(struct buf *b, const struct metrics_snapshot *s)
{
    const struct metric_value g = {.def = &uptime_def, .value = 9};
    return metrics_write_stats(b, s, &g, 1);
}

Test(metrics, stats_lines_carry_totals_but_no_histograms)
{
    char *t = render(stats);
    cr_assert_str_eq(t, "STAT uptime 9\r\nSTAT conns 0\r\nSTAT reads 42\r\nSTAT cmd_get 0\r\n"
                        "STAT cmd_set 0\r\n");
    free(t);
}

Test(metrics, worker_lines_are_labelled_with_the_block_id)
{
    char *t = render(metrics_write_workers);
    cr_assert(strstr(t, "STAT worker_3_reads 42\r\n"), "%s", t);
    free(t);
}

Test(metrics, latency_lines_give_count_and_percentiles_in_microseconds)
{
    char *t = render(metrics_write_latency);
    cr_assert(strstr(t, "STAT get_latency_count 1\r\n"), "%s", t);
    cr_assert(strstr(t, "STAT get_latency_mean_us 2.048\r\n"), "%s", t);
    /* 2048 falls in [2048, 2176): reported as its middle, 2111 ns. */
    cr_assert(strstr(t, "STAT get_latency_p99_us 2.111\r\n"), "%s", t);
    free(t);
}

static int
json(struct buf *b, const struct metrics_snapshot *s)
{
    const struct metric_value g = {.def = &uptime_def, .value = 9};
    return metrics_write_json(b, s, &g, 1);
}

Test(metrics, json_has_global_total_worker_and_latency_objects)
{
    char *t = render(json);
    cr_assert(strstr(t, "{\"global\":{\"uptime\":9},\"total\":{\"conns\":0,\"reads\":42,"), "%s",
              t);
    cr_assert(strstr(t, "\"workers\":[{\"worker\":3,\"conns\":0,\"reads\":42,"), "%s", t);
    cr_assert(strstr(t, "\"latency\":{\"get_latency\":{\"count\":1,\"mean_us\":2.048,"), "%s", t);
    free(t);
}

static int freed;

static void
count_free(void *p)
{
    freed += *(int *)p;
    free(p);
}

Test(metrics, deferred_free_runs_after_the_grace_period)
{
    int *p = malloc(sizeof(*p));
    *p = 5;
    cr_assert_eq(prcu_defer_free(p, count_free), 0);
    metrics_destroy(&reg); /* waits for callbacks; the fini recreates nothing */
    cr_assert_eq(freed, 5);
}
