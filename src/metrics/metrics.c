/* metrics: blocks in an RCU list, snapshots and renderers. Contract in include/petrel/metrics.h */
#include "petrel/metrics.h"

#include "petrel/prcu.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_LINE 64

/* Prometheus buckets: le = 2^k ns for k in [PROM_EXP_LO, PROM_EXP_HI], then +Inf. */
#define PROM_EXP_LO 10
#define PROM_EXP_HI 36

struct metrics {
    struct metric_table *tables;
    size_t ntables;
    size_t *offset; /* first slot of each table */
    size_t nslots;
    pthread_mutex_t lock; /* writers of the list only: register / unregister */
    /* The registered blocks, newest first: an RCU-protected singly linked list. Writers (under
     * lock) publish with release stores, readers walk it with acquire loads inside a read-side
     * section, and an unlinked block is freed by call_rcu after every reader left. */
    struct metrics_block *_Atomic head;
};

struct metrics_block {
    struct metrics_block *_Atomic next;
    const struct metrics *m;
    unsigned id;
    _Alignas(CACHE_LINE) metric_t v[]; /* its own cache lines: no false sharing with the list */
};

struct metrics_snapshot {
    const struct metrics *m;
    size_t n;
    unsigned *ids;
    uint64_t *vals; /* n * m->nslots */
};

uint64_t
metrics_hist_lower(unsigned idx)
{
    const unsigned sub = 1u << METRICS_HIST_SUB_BITS;
    if (idx < sub) {
        return idx;
    }
    unsigned g = idx >> METRICS_HIST_SUB_BITS;
    uint64_t s = idx & (sub - 1);
    return (sub + s) << (g - 1);
}

uint64_t
metrics_hist_upper(unsigned idx)
{
    const unsigned sub = 1u << METRICS_HIST_SUB_BITS;
    if (idx >= METRICS_HIST_BUCKETS - 1) {
        return UINT64_MAX;
    }
    if (idx < sub) {
        return idx + 1u;
    }
    return metrics_hist_lower(idx) + (UINT64_C(1) << ((idx >> METRICS_HIST_SUB_BITS) - 1));
}

uint64_t
metrics_hist_quantile(const uint64_t *buckets, double q)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < METRICS_HIST_BUCKETS; i++) {
        total += buckets[i];
    }
    if (total == 0) {
        return 0;
    }
    if (q < 0) {
        q = 0;
    }
    /* The rank of the observation asked for, 1-based: the smallest r with r >= q * total. */
    double want = q * (double)total;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want || rank == 0) {
        rank++;
    }
    if (rank > total) {
        rank = total;
    }
    uint64_t seen = 0;
    for (unsigned i = 0; i < METRICS_HIST_BUCKETS; i++) {
        seen += buckets[i];
        if (seen >= rank) {
            uint64_t lo = metrics_hist_lower(i);
            uint64_t hi = metrics_hist_upper(i);
            if (hi == UINT64_MAX) {
                return lo; /* the overflow bucket has no middle */
            }
            return lo + (hi - 1 - lo) / 2;
        }
    }
    return 0;
}

static size_t
table_slots(const struct metric_table *t)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++) {
        n += t->defs[i].type == METRIC_HISTOGRAM ? METRICS_HIST_SLOTS : 1;
    }
    return n;
}

/* Slot of metric idx within its table. */
static size_t
slot_in_table(const struct metric_table *t, unsigned idx)
{
    size_t n = 0;
    for (unsigned i = 0; i < idx; i++) {
        n += t->defs[i].type == METRIC_HISTOGRAM ? METRICS_HIST_SLOTS : 1;
    }
    return n;
}

static bool
name_taken(const struct metric_table *tables, size_t nt, size_t upto_t, size_t upto_i,
           const char *name)
{
    for (size_t t = 0; t <= upto_t && t < nt; t++) {
        size_t end = t == upto_t ? upto_i : tables[t].n;
        for (size_t i = 0; i < end; i++) {
            if (strcmp(tables[t].defs[i].name, name) == 0) {
                return true;
            }
        }
    }
    return false;
}

int
metrics_create(struct metrics **out, const struct metric_table *tables, size_t n)
{
    *out = NULL;
    for (size_t t = 0; t < n; t++) {
        for (size_t i = 0; i < tables[t].n; i++) {
            const char *name = tables[t].defs[i].name;
            if (name == NULL || name[0] == '\0' || name_taken(tables, n, t, i, name)) {
                return -EINVAL;
            }
        }
    }
    struct metrics *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return -ENOMEM;
    }
    m->tables = calloc(n ? n : 1, sizeof(*m->tables));
    m->offset = calloc(n ? n : 1, sizeof(*m->offset));
    if (m->tables == NULL || m->offset == NULL) {
        free(m->tables);
        free(m->offset);
        free(m);
        return -ENOMEM;
    }
    memcpy(m->tables, tables, n * sizeof(*tables));
    m->ntables = n;
    for (size_t t = 0; t < n; t++) {
        m->offset[t] = m->nslots;
        m->nslots += table_slots(&tables[t]);
    }
    pthread_mutex_init(&m->lock, NULL);
    atomic_init(&m->head, NULL);
    *out = m;
    return 0;
}

void
metrics_destroy(struct metrics **mp)
{
    struct metrics *m = *mp;
    if (m == NULL) {
        return;
    }
    /* Blocks unregistered earlier may still wait for their grace period. */
    prcu_barrier();
    pthread_mutex_destroy(&m->lock);
    free(m->tables);
    free(m->offset);
    free(m);
    *mp = NULL;
}

int
metrics_block_register(struct metrics *m, unsigned id, struct metrics_block **out)
{
    size_t size = sizeof(struct metrics_block) + m->nslots * sizeof(metric_t);
    size = (size + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
    struct metrics_block *b = aligned_alloc(CACHE_LINE, size);
    if (b == NULL) {
        return -ENOMEM;
    }
    memset(b, 0, size);
    b->m = m;
    b->id = id;
    pthread_mutex_lock(&m->lock);
    atomic_store_explicit(&b->next, atomic_load_explicit(&m->head, memory_order_relaxed),
                          memory_order_relaxed);
    atomic_store_explicit(&m->head, b, memory_order_release);
    pthread_mutex_unlock(&m->lock);
    *out = b;
    return 0;
}

void
metrics_block_unregister(struct metrics *m, struct metrics_block **bp)
{
    struct metrics_block *b = *bp;
    if (b == NULL) {
        return;
    }
    pthread_mutex_lock(&m->lock);
    /* Readers on b still find its successor through b->next until b is freed. */
    struct metrics_block *_Atomic *pp = &m->head;
    struct metrics_block *cur;
    while ((cur = atomic_load_explicit(pp, memory_order_relaxed)) != NULL && cur != b) {
        pp = &cur->next;
    }
    if (cur == b) {
        atomic_store_explicit(pp, atomic_load_explicit(&b->next, memory_order_relaxed),
                              memory_order_release);
    }
    pthread_mutex_unlock(&m->lock);
    if (prcu_defer_free(b, free) < 0) {
        prcu_synchronize(); /* no memory to defer it: wait out the readers here (rare) */
        free(b);
    }
    *bp = NULL;
}

metric_t *
metrics_slots(struct metrics_block *b, unsigned table)
{
    return b->v + b->m->offset[table];
}

void
metrics_block_reset(struct metrics_block *b)
{
    const struct metrics *m = b->m;
    for (unsigned t = 0; t < m->ntables; t++) {
        const struct metric_table *tb = &m->tables[t];
        for (unsigned i = 0; i < tb->n; i++) {
            if (tb->defs[i].type == METRIC_GAUGE) {
                continue;
            }
            metric_t *v = b->v + m->offset[t] + slot_in_table(tb, i);
            size_t n = tb->defs[i].type == METRIC_HISTOGRAM ? METRICS_HIST_SLOTS : 1;
            for (size_t k = 0; k < n; k++) {
                metrics_set(&v[k], 0);
            }
        }
    }
}

size_t
metrics_table_slots(const struct metrics *m, unsigned table)
{
    return table < m->ntables ? table_slots(&m->tables[table]) : 0;
}

static int
cmp_ids(const void *a, const void *b)
{
    const unsigned *x = a, *y = b;
    return *x < *y ? -1 : *x > *y;
}

int
metrics_snapshot_take(struct metrics *m, struct metrics_snapshot **out)
{
    *out = NULL;
    struct metrics_snapshot *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return -ENOMEM;
    }
    s->m = m;
    size_t cap = 0;
    int rc = 0;
    /* One pass, growing the arrays as needed: counting first and copying in a second pass would
     * cut the list's tail (old blocks) whenever a block is registered (at the head) in between. */
    prcu_read_lock();
    for (struct metrics_block *b = atomic_load_explicit(&m->head, memory_order_acquire); b != NULL;
         b = atomic_load_explicit(&b->next, memory_order_acquire)) {
        if (s->n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            size_t slots = m->nslots ? m->nslots : 1;
            unsigned *ids = realloc(s->ids, ncap * sizeof(*ids));
            if (ids != NULL) {
                s->ids = ids;
            }
            uint64_t *vals = ids != NULL ? realloc(s->vals, ncap * slots * sizeof(*vals)) : NULL;
            if (vals == NULL) {
                rc = -ENOMEM;
                break;
            }
            s->vals = vals;
            cap = ncap;
        }
        s->ids[s->n] = b->id;
        uint64_t *dst = s->vals + s->n * m->nslots;
        for (size_t i = 0; i < m->nslots; i++) {
            dst[i] = atomic_load_explicit(&b->v[i], memory_order_relaxed);
        }
        s->n++;
    }
    prcu_read_unlock();
    if (rc < 0) {
        metrics_snapshot_free(&s);
        return rc;
    }
    /* Order by id: sort (id, row) pairs by moving rows along with their ids. Few blocks. */
    for (size_t i = 1; i < s->n; i++) {
        for (size_t j = i; j > 0 && cmp_ids(&s->ids[j - 1], &s->ids[j]) > 0; j--) {
            unsigned t = s->ids[j];
            s->ids[j] = s->ids[j - 1];
            s->ids[j - 1] = t;
            uint64_t *a = s->vals + (j - 1) * m->nslots, *c = s->vals + j * m->nslots;
            for (size_t k = 0; k < m->nslots; k++) {
                uint64_t x = a[k];
                a[k] = c[k];
                c[k] = x;
            }
        }
    }
    *out = s;
    return 0;
}

void
metrics_snapshot_free(struct metrics_snapshot **sp)
{
    struct metrics_snapshot *s = *sp;
    if (s == NULL) {
        return;
    }
    free(s->ids);
    free(s->vals);
    free(s);
    *sp = NULL;
}

size_t
metrics_snapshot_blocks(const struct metrics_snapshot *s)
{
    return s->n;
}

unsigned
metrics_snapshot_block_id(const struct metrics_snapshot *s, size_t i)
{
    return i < s->n ? s->ids[i] : 0;
}

static const uint64_t *
row_slot(const struct metrics_snapshot *s, size_t i, unsigned table, unsigned idx)
{
    const struct metrics *m = s->m;
    return s->vals + i * m->nslots + m->offset[table] + slot_in_table(&m->tables[table], idx);
}

uint64_t
metrics_snapshot_value(const struct metrics_snapshot *s, size_t i, unsigned table, unsigned idx)
{
    if (i >= s->n || table >= s->m->ntables || idx >= s->m->tables[table].n) {
        return 0;
    }
    return *row_slot(s, i, table, idx);
}

uint64_t
metrics_snapshot_total(const struct metrics_snapshot *s, unsigned table, unsigned idx)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < s->n; i++) {
        sum += metrics_snapshot_value(s, i, table, idx);
    }
    return sum;
}

void
metrics_snapshot_hist(const struct metrics_snapshot *s, unsigned table, unsigned idx,
                      uint64_t out[METRICS_HIST_SLOTS])
{
    memset(out, 0, METRICS_HIST_SLOTS * sizeof(*out));
    if (table >= s->m->ntables || idx >= s->m->tables[table].n ||
        s->m->tables[table].defs[idx].type != METRIC_HISTOGRAM) {
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        const uint64_t *h = row_slot(s, i, table, idx);
        for (unsigned k = 0; k < METRICS_HIST_SLOTS; k++) {
            out[k] += h[k];
        }
    }
}

int
metrics_find(const struct metrics *m, const char *name, unsigned *table, unsigned *idx)
{
    for (size_t t = 0; t < m->ntables; t++) {
        for (size_t i = 0; i < m->tables[t].n; i++) {
            if (strcmp(m->tables[t].defs[i].name, name) == 0) {
                *table = (unsigned)t;
                *idx = (unsigned)i;
                return 0;
            }
        }
    }
    return -ENOENT;
}

/* ---- renderers ---- */

#define FOR_EACH_DEF(m, t, i, d)                                                                   \
    for (unsigned t = 0; t < (m)->ntables; t++)                                                    \
        for (unsigned i = 0; i < (m)->tables[t].n && ((d) = &(m)->tables[t].defs[i]); i++)

static double
hist_count(const uint64_t *h)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < METRICS_HIST_BUCKETS; i++) {
        n += h[i];
    }
    return (double)n;
}

int
metrics_stats_each(const struct metrics_snapshot *s, const struct metric_value *global,
                   size_t nglobal, metrics_stat_fn fn, void *arg)
{
    char v[24];
    int rc = 0;
    for (size_t g = 0; g < nglobal && rc == 0; g++) {
        snprintf(v, sizeof(v), "%llu", (unsigned long long)global[g].value);
        rc = fn(arg, global[g].def->name, v);
    }
    const struct metric_def *d;
    FOR_EACH_DEF(s->m, t, i, d)
    {
        if (d->type != METRIC_HISTOGRAM && rc == 0) {
            snprintf(v, sizeof(v), "%llu", (unsigned long long)metrics_snapshot_total(s, t, i));
            rc = fn(arg, d->name, v);
        }
    }
    return rc;
}

/* metrics_stat_fn: one "STAT name value" line into the buffer arg. */
static int
stat_line(void *arg, const char *name, const char *value)
{
    return buf_printf(arg, "STAT %s %s\r\n", name, value);
}

int
metrics_write_stats(struct buf *b, const struct metrics_snapshot *s,
                    const struct metric_value *global, size_t nglobal)
{
    return metrics_stats_each(s, global, nglobal, stat_line, b);
}

int
metrics_write_workers(struct buf *b, const struct metrics_snapshot *s)
{
    int rc = 0;
    for (size_t w = 0; w < s->n; w++) {
        const struct metric_def *d;
        FOR_EACH_DEF(s->m, t, i, d)
        {
            if (d->type != METRIC_HISTOGRAM && rc == 0) {
                rc = buf_printf(b, "STAT worker_%u_%s %llu\r\n", s->ids[w], d->name,
                                (unsigned long long)metrics_snapshot_value(s, w, t, i));
            }
        }
    }
    return rc;
}

static const struct {
    const char *name;
    double q;
} quantiles[] = {{"p50", 0.5}, {"p99", 0.99}, {"p999", 0.999}, {"p9999", 0.9999}};

int
metrics_write_latency(struct buf *b, const struct metrics_snapshot *s)
{
    uint64_t h[METRICS_HIST_SLOTS];
    int rc = 0;
    const struct metric_def *d;
    FOR_EACH_DEF(s->m, t, i, d)
    {
        if (d->type != METRIC_HISTOGRAM || rc != 0) {
            continue;
        }
        metrics_snapshot_hist(s, t, i, h);
        double n = hist_count(h);
        rc |= buf_printf(b, "STAT %s_count %.0f\r\n", d->name, n);
        rc |= buf_printf(b, "STAT %s_mean_us %.3f\r\n", d->name,
                         n > 0 ? (double)h[METRICS_HIST_BUCKETS] / n / 1e3 : 0.0);
        for (size_t q = 0; q < sizeof(quantiles) / sizeof(quantiles[0]); q++) {
            rc |= buf_printf(b, "STAT %s_%s_us %.3f\r\n", d->name, quantiles[q].name,
                             (double)metrics_hist_quantile(h, quantiles[q].q) / 1e3);
        }
    }
    return rc < 0 ? rc : 0;
}

/* A metric's Prometheus name after the prefix: `name` with its type's suffix, and without
 * memcached's "total_" in front of a counter, which the suffix says already. */
static void
prom_name(const struct metric_def *d, const char *name, char *out, size_t len)
{
    if (d->type == METRIC_COUNTER && strncmp(name, "total_", 6) == 0) {
        name += 6;
    }
    const char *suffix = d->type == METRIC_COUNTER     ? "_total"
                         : d->type == METRIC_HISTOGRAM ? "_seconds"
                                                       : "";
    snprintf(out, len, "%s%s", name, suffix);
}

static int
prom_header(struct buf *b, const char *prefix, const struct metric_def *d, const char *name)
{
    const char *type = d->type == METRIC_COUNTER ? "counter"
                       : d->type == METRIC_GAUGE ? "gauge"
                                                 : "histogram";
    int rc = buf_printf(b, "# HELP %s%s %s\n", prefix, name, d->help);
    return rc < 0 ? rc : buf_printf(b, "# TYPE %s%s %s\n", prefix, name, type);
}

static int
prom_hist(struct buf *b, const char *prefix, const char *name, const uint64_t *h)
{
    int rc = 0;
    uint64_t cum = 0;
    unsigned i = 0;
    for (unsigned k = PROM_EXP_LO; k <= PROM_EXP_HI && rc == 0; k++) {
        uint64_t bound = UINT64_C(1) << k;
        /* Powers of two fall on bucket boundaries, so the count of values below one is exact;
         * values are whole nanoseconds, so "below 2^k" is "at most 2^k - 1", Prometheus' le. */
        while (i < METRICS_HIST_BUCKETS && metrics_hist_upper(i) <= bound) {
            cum += h[i++];
        }
        rc = buf_printf(b, "%s%s_seconds_bucket{le=\"%.9g\"} %llu\n", prefix, name,
                        (double)(bound - 1) / 1e9, (unsigned long long)cum);
    }
    while (i < METRICS_HIST_BUCKETS) {
        cum += h[i++];
    }
    rc |= buf_printf(b, "%s%s_seconds_bucket{le=\"+Inf\"} %llu\n", prefix, name,
                     (unsigned long long)cum);
    rc |= buf_printf(b, "%s%s_seconds_sum %.9f\n", prefix, name,
                     (double)h[METRICS_HIST_BUCKETS] / 1e9);
    rc |= buf_printf(b, "%s%s_seconds_count %llu\n", prefix, name, (unsigned long long)cum);
    return rc < 0 ? rc : 0;
}

int
metrics_write_prometheus(struct buf *b, const struct metrics_snapshot *s, const char *prefix,
                         const struct metric_value *global, size_t nglobal)
{
    int rc = 0;
    char name[128];
    for (size_t g = 0; g < nglobal && rc == 0; g++) {
        const struct metric_def *d = global[g].def;
        prom_name(d, global[g].prom != NULL ? global[g].prom : d->name, name, sizeof(name));
        rc = prom_header(b, prefix, d, name);
        rc |= buf_printf(b, "%s%s %llu\n", prefix, name, (unsigned long long)global[g].value);
    }
    uint64_t h[METRICS_HIST_SLOTS];
    const struct metric_def *d;
    FOR_EACH_DEF(s->m, t, i, d)
    {
        if (rc < 0) {
            break;
        }
        prom_name(d, d->name, name, sizeof(name));
        rc = prom_header(b, prefix, d, name);
        if (d->type == METRIC_HISTOGRAM) {
            metrics_snapshot_hist(s, t, i, h);
            rc |= prom_hist(b, prefix, d->name, h);
            continue;
        }
        for (size_t w = 0; w < s->n && rc == 0; w++) {
            rc = buf_printf(b, "%s%s{worker=\"%u\"} %llu\n", prefix, name, s->ids[w],
                            (unsigned long long)metrics_snapshot_value(s, w, t, i));
        }
    }
    return rc < 0 ? rc : 0;
}

int
metrics_write_json(struct buf *b, const struct metrics_snapshot *s,
                   const struct metric_value *global, size_t nglobal)
{
    /* Names come from our own tables (identifiers), so they need no JSON escaping. */
    int rc = buf_puts(b, "{\"global\":{");
    for (size_t g = 0; g < nglobal; g++) {
        rc |= buf_printf(b, "%s\"%s\":%llu", g ? "," : "", global[g].def->name,
                         (unsigned long long)global[g].value);
    }
    rc |= buf_puts(b, "},\"total\":{");
    const struct metric_def *d;
    bool first = true;
    FOR_EACH_DEF(s->m, t, i, d)
    {
        if (d->type != METRIC_HISTOGRAM) {
            rc |= buf_printf(b, "%s\"%s\":%llu", first ? "" : ",", d->name,
                             (unsigned long long)metrics_snapshot_total(s, t, i));
            first = false;
        }
    }
    rc |= buf_puts(b, "},\"workers\":[");
    for (size_t w = 0; w < s->n; w++) {
        rc |= buf_printf(b, "%s{\"worker\":%u", w ? "," : "", s->ids[w]);
        FOR_EACH_DEF(s->m, t, i, d)
        {
            if (d->type != METRIC_HISTOGRAM) {
                rc |= buf_printf(b, ",\"%s\":%llu", d->name,
                                 (unsigned long long)metrics_snapshot_value(s, w, t, i));
            }
        }
        rc |= buf_puts(b, "}");
    }
    rc |= buf_puts(b, "],\"latency\":{");
    uint64_t h[METRICS_HIST_SLOTS];
    first = true;
    FOR_EACH_DEF(s->m, t, i, d)
    {
        if (d->type != METRIC_HISTOGRAM) {
            continue;
        }
        metrics_snapshot_hist(s, t, i, h);
        double n = hist_count(h);
        rc |= buf_printf(b, "%s\"%s\":{\"count\":%.0f,\"mean_us\":%.3f", first ? "" : ",", d->name,
                         n, n > 0 ? (double)h[METRICS_HIST_BUCKETS] / n / 1e3 : 0.0);
        for (size_t q = 0; q < sizeof(quantiles) / sizeof(quantiles[0]); q++) {
            rc |= buf_printf(b, ",\"%s_us\":%.3f", quantiles[q].name,
                             (double)metrics_hist_quantile(h, quantiles[q].q) / 1e3);
        }
        rc |= buf_puts(b, "}");
        first = false;
    }
    rc |= buf_puts(b, "}}\n");
    return rc < 0 ? rc : 0;
}
