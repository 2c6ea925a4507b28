/*
 * seg_bench: nanoseconds per get (hit, miss) and per set of the seg engine on one core.
 *
 * 16-byte keys, 32-byte values, 1M items (default) in a 256 MiB instance, keys visited in random
 * order so the hash table and segments are not cache-resident. Each phase runs -r times and the
 * median is printed. "+hash" columns include computing the key's hash (the server does that once
 * per key anyway, to pick the shard); the others take it precomputed.
 *
 * -p prefaults the instance's memory (seg_options.prefault), so sets do not pay the kernel's
 * first-touch page zeroing, which a long-running server has paid long before.
 *
 * usage: seg_bench [-n items] [-r rounds] [-p]
 */
#include "petrel/seg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KLEN 16
#define VLEN 32

/* CPU time of this thread: the machine is shared, and time spent descheduled is not ours. */
static double
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double
median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct bench {
    struct seg *s;
    size_t n;
    /*
     * n present keys, then n absent ones, KLEN bytes each, stored in the (random) order they are
     * visited: the benchmark's own arrays are read sequentially and cost no cache misses.
     */
    char *keys;
    uint64_t *hash;
    char value[VLEN];
    volatile size_t sink;
};

static void
make_keys(struct bench *b)
{
    size_t n = b->n;
    uint32_t *order = malloc(n * sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) {
        order[i] = (uint32_t)i;
    }
    srand(42);
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = ((size_t)rand() * RAND_MAX + (size_t)rand()) % (i + 1);
        uint32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    b->keys = malloc(2 * n * KLEN);
    b->hash = malloc(2 * n * sizeof(uint64_t));
    char tmp[32];
    for (size_t i = 0; i < 2 * n; i++) {
        size_t id = order[i % n];
        snprintf(tmp, sizeof(tmp), "%c:%014zu", i < n ? 'k' : 'm', id);
        memcpy(b->keys + i * KLEN, tmp, KLEN);
        b->hash[i] = seg_hash(b->keys + i * KLEN, KLEN);
    }
    free(order);
    memset(b->value, 'v', VLEN);
}

static double
run_set(struct bench *b, bool with_hash)
{
    double t0 = now_ns();
    for (size_t i = 0; i < b->n; i++) {
        size_t k = i;
        const char *key = b->keys + k * KLEN;
        struct seg_store_req r = {.mode = SEG_SET,
                                  .key = key,
                                  .klen = KLEN,
                                  .hash = with_hash ? seg_hash(key, KLEN) : b->hash[k],
                                  .value = b->value,
                                  .vlen = VLEN};
        if (seg_store(b->s, &r, NULL) != SEG_STORED) {
            fprintf(stderr, "set failed\n");
            exit(1);
        }
    }
    return (now_ns() - t0) / (double)b->n;
}

/* Sets as a server would run a pipelined batch: the next keys' buckets are prefetched. */
static double
run_set_prefetch(struct bench *b)
{
    double t0 = now_ns();
    for (size_t i = 0; i < b->n; i++) {
        if (i + 8 < b->n) {
            seg_prefetch(b->s, b->hash[i + 8]);
        }
        struct seg_store_req r = {.mode = SEG_SET,
                                  .key = b->keys + i * KLEN,
                                  .klen = KLEN,
                                  .hash = b->hash[i],
                                  .value = b->value,
                                  .vlen = VLEN};
        if (seg_store(b->s, &r, NULL) != SEG_STORED) {
            fprintf(stderr, "set failed\n");
            exit(1);
        }
    }
    return (now_ns() - t0) / (double)b->n;
}

/* Gets in batches of 16 keys (a multi-get, or gets pipelined in one read). */
static double
run_get_batch(struct bench *b, size_t base, enum seg_result want)
{
    enum { B = 16 };
    struct seg_key keys[B];
    struct seg_view views[B];
    enum seg_result res[B];
    size_t sum = 0;
    double t0 = now_ns();
    for (size_t i = 0; i + B <= b->n; i += B) {
        for (size_t j = 0; j < B; j++) {
            size_t k = base + i + j;
            keys[j] = (struct seg_key){b->keys + k * KLEN, KLEN, b->hash[k]};
        }
        seg_get_batch(b->s, B, keys, views, res);
        for (size_t j = 0; j < B; j++) {
            if (res[j] != want) {
                fprintf(stderr, "unexpected batch get result\n");
                exit(1);
            }
            sum += res[j] == SEG_OK ? (size_t)views[j].value[0] : 0;
        }
    }
    b->sink = sum;
    return (now_ns() - t0) / (double)(b->n / B * B);
}

static double
run_get(struct bench *b, size_t base, bool with_hash, enum seg_result want)
{
    double t0 = now_ns();
    size_t sum = 0;
    for (size_t i = 0; i < b->n; i++) {
        size_t k = base + i;
        const char *key = b->keys + k * KLEN;
        struct seg_view v;
        enum seg_result r =
            seg_get(b->s, key, KLEN, with_hash ? seg_hash(key, KLEN) : b->hash[k], &v);
        if (r != want) {
            fprintf(stderr, "unexpected get result\n");
            exit(1);
        }
        sum += r == SEG_OK ? (size_t)v.value[0] : 0;
    }
    b->sink = sum;
    return (now_ns() - t0) / (double)b->n;
}

static int64_t fake_now;

static int64_t
fake_clock(void *ctx)
{
    (void)ctx;
    return fake_now;
}

/*
 * Proactive expiration: n items with a 10 s TTL, the clock moves past it, and seg_tick() runs
 * until every segment is free. Prints the cost per reclaimed item and of the longest tick.
 */
static void
run_expire(struct bench *b, bool prefault)
{
    struct seg_options o;
    seg_options_init(&o);
    o.mem_bytes = 256u << 20;
    o.prefault = prefault;
    o.clock = fake_clock;
    fake_now = 1700000000;
    if (seg_create(&b->s, &o) != 0) {
        exit(1);
    }
    for (size_t i = 0; i < b->n; i++) {
        struct seg_store_req r = {.mode = SEG_SET,
                                  .key = b->keys + i * KLEN,
                                  .klen = KLEN,
                                  .hash = b->hash[i],
                                  .value = b->value,
                                  .vlen = VLEN,
                                  .expire = fake_now + 10};
        seg_store(b->s, &r, NULL);
    }
    fake_now += 11;
    struct seg_stats st;
    double worst = 0, total = 0;
    int ticks = 0;
    do {
        double t0 = now_ns();
        seg_tick(b->s);
        double t = now_ns() - t0;
        total += t;
        worst = t > worst ? t : worst;
        ticks++;
        seg_stats_get(b->s, &st);
    } while (st.segs_used > 0 && ticks < 100000);
    printf("  expire: %zu items freed in %d ticks, %.1f ns/item, longest tick %.2f ms\n",
           (size_t)st.expired_items, ticks, total / (double)st.expired_items, worst / 1e6);
    seg_destroy(&b->s);
}

int
main(int argc, char **argv)
{
    struct bench b = {.n = 1000000};
    int rounds = 5, opt;
    bool prefault = false;
    while ((opt = getopt(argc, argv, "n:r:p")) != -1) {
        if (opt == 'p') {
            prefault = true;
        } else if (opt == 'n') {
            b.n = (size_t)atol(optarg);
        } else if (opt == 'r') {
            rounds = atoi(optarg);
        } else {
            fprintf(stderr, "usage: %s [-n items] [-r rounds] [-p]\n", argv[0]);
            return 2;
        }
    }
    make_keys(&b);
    double res[10][64];
    rounds = rounds > 64 ? 64 : (rounds < 1 ? 1 : rounds);
    for (int r = 0; r < rounds; r++) {
        struct seg_options o;
        seg_options_init(&o);
        o.mem_bytes = 256u << 20;
        o.prefault = prefault;
        if (seg_create(&b.s, &o) != 0) {
            fprintf(stderr, "seg_create failed\n");
            return 1;
        }
        res[0][r] = run_set(&b, false);            /* insert */
        res[1][r] = run_set(&b, false);            /* overwrite */
        res[2][r] = run_get(&b, 0, false, SEG_OK); /* hit */
        res[3][r] = run_get(&b, b.n, false, SEG_NOT_FOUND);
        res[4][r] = run_set(&b, true);            /* overwrite + hash */
        res[5][r] = run_get(&b, 0, true, SEG_OK); /* hit + hash */
        res[6][r] = run_get(&b, b.n, true, SEG_NOT_FOUND);
        res[7][r] = run_set_prefetch(&b);         /* overwrite, prefetching */
        res[8][r] = run_get_batch(&b, 0, SEG_OK); /* hit, batches of 16 */
        res[9][r] = run_get_batch(&b, b.n, SEG_NOT_FOUND);
        seg_destroy(&b.s);
    }
    const char *names[10] = {"set (insert)",    "set (overwrite)", "get hit",        "get miss",
                             "set +hash",       "get hit +hash",   "get miss +hash", "set prefetch",
                             "get hit batch16", "get miss batch16"};
    printf("seg_bench: %zu items, %d-byte keys, %d-byte values, median of %d rounds%s\n", b.n, KLEN,
           VLEN, rounds, prefault ? ", prefaulted" : "");
    for (int i = 0; i < 10; i++) {
        printf("  %-16s %7.1f ns/op\n", names[i], median(res[i], rounds));
    }
    run_expire(&b, prefault);
    free(b.keys);
    free(b.hash);
    return 0;
}
