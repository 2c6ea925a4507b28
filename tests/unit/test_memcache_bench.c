/*
 * Microbenchmark of the memcache codec: nanoseconds per parse or compose of typical requests
 * and replies, on one core. Not a unit test: run it by hand on an idle machine, e.g.
 *   meson setup build-release --buildtype=release && ninja -C build-release &&
 *   taskset -c 1 ./build-release/tests/unit/test_memcache_bench
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "petrel/memcache.h"

#define ROUNDS 5

static volatile size_t sink;

static double
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Best of ROUNDS runs of n parses of the whole input (which may hold several requests). */
static void
bench_parse(const char *name, const char *in, size_t len, long n)
{
    struct mc_parser_opts opts = {.max_value = 1 << 20};
    struct mc_parser p;
    struct mc_req req;
    mc_parser_init(&p, &opts);
    double best = 1e30;
    long nreq = 0;
    for (int r = 0; r < ROUNDS; r++) {
        nreq = 0;
        double t0 = now_ns();
        for (long i = 0; i < n; i++) {
            size_t pos = 0;
            while (pos < len) {
                enum mc_parse_rc rc = mc_parse(&p, in + pos, len - pos, &req);
                if (rc == MC_PARSE_AGAIN) {
                    break;
                }
                pos += req.consumed;
                sink += req.nkeys + req.vlen;
                nreq++;
            }
        }
        double dt = now_ns() - t0;
        if (dt < best) {
            best = dt;
        }
    }
    printf("%-44s %7.1f ns/request\n", name, best / (double)nreq);
}

static void
bench_value(long n)
{
    struct buf b;
    buf_init(&b, 1 << 16, 1 << 20);
    char val[64];
    memset(val, 'v', sizeof(val));
    double best = 1e30;
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now_ns();
        for (long i = 0; i < n; i++) {
            mc_compose_value(&b, "key:000000000042", 16, 0, val, sizeof(val), 0, false);
            mc_compose_reply(&b, MC_R_END);
            sink += buf_len(&b);
            buf_consume(&b, buf_len(&b));
        }
        double dt = now_ns() - t0;
        if (dt < best) {
            best = dt;
        }
    }
    printf("%-44s %7.1f ns/reply\n", "compose VALUE (16 B key, 64 B value) + END",
           best / (double)n);
    buf_free(&b);
}

static void
bench_meta(long n)
{
    struct mc_parser_opts opts = {.max_value = 1 << 20};
    struct mc_parser p;
    struct mc_req req;
    mc_parser_init(&p, &opts);
    const char *in = "mg key:000000000042 v t f Oabc\r\n";
    mc_parse(&p, in, strlen(in), &req);
    struct buf b;
    buf_init(&b, 1 << 16, 1 << 20);
    char val[64];
    memset(val, 'v', sizeof(val));
    struct mc_meta_item it = {.value = val, .vlen = sizeof(val), .ttl = 300, .flags = 7};
    double best = 1e30;
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now_ns();
        for (long i = 0; i < n; i++) {
            mc_compose_meta(&b, &req, MC_META_VA, &it);
            sink += buf_len(&b);
            buf_consume(&b, buf_len(&b));
        }
        double dt = now_ns() - t0;
        if (dt < best) {
            best = dt;
        }
    }
    printf("%-44s %7.1f ns/reply\n", "compose VA t f O (64 B value)", best / (double)n);
    buf_free(&b);
}

int
main(void)
{
    const long n = 2000000;
    static char set[256];
    snprintf(set, sizeof(set), "set key:000000000042 0 0 64\r\n%064d\r\n", 7);
    static char pipe16[1024];
    pipe16[0] = '\0';
    for (int i = 0; i < 16; i++) {
        strcat(pipe16, i % 10 == 9 ? "set key:000000000042 0 0 8\r\n01234567\r\n"
                                   : "get key:000000000042\r\n");
    }
    static char multiget[2048];
    strcpy(multiget, "get");
    for (int i = 0; i < 100; i++) {
        strcat(multiget, " key:000000000042");
    }
    strcat(multiget, "\r\n");
    bench_parse("parse get <16 B key>", "get key:000000000042\r\n", 22, n);
    bench_parse("parse set <16 B key> 64 B value", set, strlen(set), n);
    bench_parse("parse mg <16 B key> v t f Oabc", "mg key:000000000042 v t f Oabc\r\n", 32, n);
    bench_parse("parse ms <16 B key> 64 T60 F7", "ms key:000000000042 8 T60 F7\r\n01234567\r\n", 40,
                n);
    bench_parse("parse pipeline of 16 (gets, 10% sets)", pipe16, strlen(pipe16), n / 16);
    bench_parse("parse get with 100 keys (per request)", multiget, strlen(multiget), n / 50);
    bench_value(n);
    bench_meta(n);
    return sink == 42 ? 1 : 0;
}
