/*
 * seg_compare: the seg engine side by side with memcached, in one run.
 *
 *   seg_compare mem  [-n items] [-m MiB]     memory efficiency: write n items (16-byte keys,
 *                                             32-byte values) into an m-MiB instance, count how
 *                                             many are still readable, report RSS per item kept
 *   seg_compare zipf [-n keys] [-r requests] [-m MiB] [-a alpha]
 *                                             cache-aside under Zipf(alpha): get, and set on a
 *                                             miss; the same key sequence for both; miss ratios
 *
 * Petrel's engine runs in this process (one instance, as one shard with all the memory). memcached
 * (the binary on PATH, or $MEMCACHED) runs with -m <MiB> -t 1 on an ephemeral loopback port and is
 * driven by a pipelined raw-socket client: sets are sent with noreply, gets as multi-gets of 100.
 * Requests are processed in batches of 100 on both sides: all gets first, then the sets for the
 * misses, so both see exactly the same sequence of operations.
 */
#include "petrel/seg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KLEN  16
#define VLEN  32
#define BATCH 100

static void
die(const char *what)
{
    perror(what);
    exit(1);
}

static void
key_of(char *out, uint32_t id)
{
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "key:%012u", id);
    memcpy(out, tmp, KLEN);
}

static long
rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = atol(line + 6);
        }
    }
    fclose(f);
    return kib;
}

/* ---- the seg side ---- */

static struct seg *
seg_open(size_t mib)
{
    struct seg_options o;
    seg_options_init(&o);
    o.mem_bytes = mib << 20;
    struct seg *s = NULL;
    if (seg_create(&s, &o) != 0) {
        fprintf(stderr, "seg_create failed\n");
        exit(1);
    }
    return s;
}

static void
seg_put(struct seg *s, const char *key, const char *val)
{
    struct seg_store_req r = {.mode = SEG_SET,
                              .key = key,
                              .klen = KLEN,
                              .hash = seg_hash(key, KLEN),
                              .value = val,
                              .vlen = VLEN};
    enum seg_result res = seg_store(s, &r, NULL);
    if (res != SEG_STORED) {
        fprintf(stderr, "seg: %s\n", seg_result_name(res));
        exit(1);
    }
}

static bool
seg_has(struct seg *s, const char *key)
{
    struct seg_view v;
    return seg_get(s, key, KLEN, seg_hash(key, KLEN), &v) == SEG_OK && v.vlen == VLEN;
}

/* ---- the memcached side ---- */

struct mc {
    pid_t pid;
    int fd;
    char *rbuf;
    size_t rlen, rpos, rcap;
    char *wbuf;
    size_t wlen, wcap;
};

static int
free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        die("free_port");
    }
    close(fd);
    return ntohs(a.sin_port);
}

static void
mc_start(struct mc *mc, size_t mib)
{
    const char *bin = getenv("MEMCACHED") != NULL ? getenv("MEMCACHED") : "memcached";
    int port = free_port();
    char mem[32], portstr[16];
    snprintf(mem, sizeof(mem), "%zu", mib);
    snprintf(portstr, sizeof(portstr), "%d", port);
    mc->pid = fork();
    if (mc->pid < 0) {
        die("fork");
    }
    if (mc->pid == 0) {
        /* memcached refuses to run as root without -u. */
        const char *user = geteuid() == 0 ? "nobody" : NULL;
        execlp(bin, bin, "-m", mem, "-t", "1", "-p", portstr, "-U", "0", "-l", "127.0.0.1", "-c",
               "64", user != NULL ? "-u" : (char *)NULL, user, (char *)NULL);
        perror("exec memcached");
        _exit(127);
    }
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int tries = 0;; tries++) {
        mc->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(mc->fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
            break;
        }
        close(mc->fd);
        if (tries > 200) {
            die("connect to memcached");
        }
        usleep(20000);
    }
    int one = 1;
    setsockopt(mc->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    mc->rcap = 1 << 20;
    mc->rbuf = malloc(mc->rcap);
    mc->wcap = 1 << 20;
    mc->wbuf = malloc(mc->wcap);
}

static void
mc_stop(struct mc *mc)
{
    close(mc->fd);
    kill(mc->pid, SIGTERM);
    waitpid(mc->pid, NULL, 0);
    free(mc->rbuf);
    free(mc->wbuf);
}

static void
mc_flush(struct mc *mc)
{
    size_t off = 0;
    while (off < mc->wlen) {
        ssize_t n = write(mc->fd, mc->wbuf + off, mc->wlen - off);
        if (n < 0 && errno != EINTR) {
            die("write");
        }
        off += n > 0 ? (size_t)n : 0;
    }
    mc->wlen = 0;
}

static void
mc_append(struct mc *mc, const void *p, size_t n)
{
    if (mc->wlen + n > mc->wcap) {
        mc_flush(mc);
    }
    memcpy(mc->wbuf + mc->wlen, p, n);
    mc->wlen += n;
}

static void
mc_set(struct mc *mc, const char *key, const char *val)
{
    char line[128];
    int n = snprintf(line, sizeof(line), "set %.*s 0 0 %d noreply\r\n", KLEN, key, VLEN);
    mc_append(mc, line, (size_t)n);
    mc_append(mc, val, VLEN);
    mc_append(mc, "\r\n", 2);
}

/* The next line of the reply (without \r\n), reading more as needed. */
static char *
mc_line(struct mc *mc, size_t *len)
{
    for (;;) {
        char *start = mc->rbuf + mc->rpos;
        char *nl = memchr(start, '\n', mc->rlen - mc->rpos);
        if (nl != NULL) {
            *len = (size_t)(nl - start) - (nl > start && nl[-1] == '\r');
            mc->rpos = (size_t)(nl - mc->rbuf) + 1;
            return start;
        }
        memmove(mc->rbuf, start, mc->rlen - mc->rpos);
        mc->rlen -= mc->rpos;
        mc->rpos = 0;
        ssize_t n = read(mc->fd, mc->rbuf + mc->rlen, mc->rcap - mc->rlen);
        if (n <= 0) {
            die("read from memcached");
        }
        mc->rlen += (size_t)n;
    }
}

static void
mc_skip(struct mc *mc, size_t n)
{
    while (mc->rlen - mc->rpos < n) {
        n -= mc->rlen - mc->rpos;
        mc->rpos = mc->rlen = 0;
        ssize_t r = read(mc->fd, mc->rbuf, mc->rcap);
        if (r <= 0) {
            die("read from memcached");
        }
        mc->rlen = (size_t)r;
    }
    mc->rpos += n;
}

/* Wait until memcached has processed everything sent (noreply sets answer nothing). */
static void
mc_sync(struct mc *mc)
{
    mc_append(mc, "version\r\n", 9);
    mc_flush(mc);
    size_t len;
    char *l;
    while ((l = mc_line(mc, &len)), len < 7 || memcmp(l, "VERSION", 7) != 0) {
        fprintf(stderr, "memcached: %.*s\n", (int)len, l);
    }
}

/* Multi-get of n keys; hit[i] tells whether keys[i] was returned. */
static void
mc_mget(struct mc *mc, char (*keys)[KLEN], size_t n, bool *hit)
{
    mc_append(mc, "get", 3);
    for (size_t i = 0; i < n; i++) {
        mc_append(mc, " ", 1);
        mc_append(mc, keys[i], KLEN);
        hit[i] = false;
    }
    mc_append(mc, "\r\n", 2);
    mc_flush(mc);
    for (;;) {
        size_t len;
        char *l = mc_line(mc, &len);
        if (len == 3 && memcmp(l, "END", 3) == 0) {
            return;
        }
        if (len < 6 + KLEN || memcmp(l, "VALUE ", 6) != 0) {
            fprintf(stderr, "memcached: unexpected %.*s\n", (int)len, l);
            exit(1);
        }
        for (size_t i = 0; i < n; i++) {
            if (memcmp(keys[i], l + 6, KLEN) == 0) {
                hit[i] = true;
            }
        }
        char *sp = memrchr(l, ' ', len);
        size_t bytes = (size_t)atol(sp + 1);
        mc_skip(mc, bytes + 2);
    }
}

/* ---- modes ---- */

static void
run_mem(size_t n, size_t mib)
{
    char val[VLEN], key[KLEN];
    memset(val, 'v', VLEN);
    char(*batch)[KLEN] = malloc(BATCH * KLEN);
    bool hit[BATCH];

    long rss0 = rss_kib(getpid());
    struct seg *s = seg_open(mib);
    for (uint32_t i = 0; i < n; i++) {
        key_of(key, i);
        seg_put(s, key, val);
    }
    long rss1 = rss_kib(getpid());
    size_t kept = 0;
    for (uint32_t i = 0; i < n; i++) {
        key_of(key, i);
        kept += seg_has(s, key);
    }
    struct seg_stats st;
    seg_stats_get(s, &st);
    double seg_rss = (double)(rss1 - rss0) * 1024;
    printf("petrel seg: %zu of %zu items readable (%.2f%%), RSS %.1f MiB, %.1f bytes/item kept\n",
           kept, n, 100.0 * (double)kept / (double)n, seg_rss / 1048576, seg_rss / (double)kept);
    printf("  heap %.1f MiB (%llu of %llu segments used), hash table %.1f MiB, evicted %llu\n",
           (double)st.heap_bytes / 1048576, (unsigned long long)st.segs_used,
           (unsigned long long)st.segs_total, (double)st.hash_bytes / 1048576,
           (unsigned long long)st.evicted_items);
    seg_destroy(&s);

    struct mc mc = {0};
    mc_start(&mc, mib);
    long mrss0 = rss_kib(mc.pid);
    for (uint32_t i = 0; i < n; i++) {
        key_of(key, i);
        mc_set(&mc, key, val);
    }
    mc_sync(&mc);
    long mrss1 = rss_kib(mc.pid);
    size_t mkept = 0;
    for (uint32_t i = 0; i < n; i += BATCH) {
        size_t m = n - i < BATCH ? n - i : BATCH;
        for (size_t j = 0; j < m; j++) {
            key_of(batch[j], i + (uint32_t)j);
        }
        mc_mget(&mc, batch, m, hit);
        for (size_t j = 0; j < m; j++) {
            mkept += hit[j];
        }
    }
    printf("memcached -m %zu -t 1: %zu of %zu items readable (%.2f%%), RSS %.1f MiB (%.1f at "
           "start), %.1f bytes/item kept\n",
           mib, mkept, n, 100.0 * (double)mkept / (double)n, (double)mrss1 / 1024,
           (double)mrss0 / 1024, (double)mrss1 * 1024 / (double)mkept);
    mc_stop(&mc);
    printf("ratio (items kept, petrel / memcached): %.2f\n", (double)kept / (double)mkept);
    free(batch);
}

/* Zipf(alpha) ranks over n keys by inversion of the cumulative distribution. */
static uint32_t *
zipf_sequence(size_t n, size_t count, double alpha, uint64_t seed)
{
    double *cdf = malloc(n * sizeof(double));
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        sum += 1.0 / pow((double)(i + 1), alpha);
        cdf[i] = sum;
    }
    uint32_t *seq = malloc(count * sizeof(uint32_t));
    uint64_t x = seed;
    for (size_t r = 0; r < count; r++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double u = (double)(x >> 11) / 9007199254740992.0 * sum;
        size_t lo = 0, hi = n - 1;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (cdf[mid] < u) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        /* Scatter ranks over the id space so popularity is unrelated to the key's name. */
        seq[r] = (uint32_t)((lo * 2654435761u) % n);
    }
    free(cdf);
    return seq;
}

static void
run_zipf(size_t n, size_t requests, size_t mib, double alpha)
{
    uint32_t *seq = zipf_sequence(n, requests, alpha, 0x9e3779b97f4a7c15ull);
    char val[VLEN];
    memset(val, 'v', VLEN);
    char(*batch)[KLEN] = malloc(BATCH * KLEN);
    bool hit[BATCH];

    struct seg *s = seg_open(mib);
    size_t seg_miss = 0;
    for (size_t i = 0; i < requests; i += BATCH) {
        size_t m = requests - i < BATCH ? requests - i : BATCH;
        for (size_t j = 0; j < m; j++) {
            key_of(batch[j], seq[i + j]);
            hit[j] = seg_has(s, batch[j]);
        }
        for (size_t j = 0; j < m; j++) {
            if (!hit[j]) {
                seg_miss++;
                seg_put(s, batch[j], val);
            }
        }
    }
    struct seg_stats st;
    seg_stats_get(s, &st);
    seg_destroy(&s);

    struct mc mc = {0};
    mc_start(&mc, mib);
    size_t mc_miss = 0;
    for (size_t i = 0; i < requests; i += BATCH) {
        size_t m = requests - i < BATCH ? requests - i : BATCH;
        for (size_t j = 0; j < m; j++) {
            key_of(batch[j], seq[i + j]);
        }
        mc_mget(&mc, batch, m, hit);
        for (size_t j = 0; j < m; j++) {
            if (!hit[j]) {
                mc_miss++;
                mc_set(&mc, batch[j], val);
            }
        }
    }
    mc_sync(&mc);
    mc_stop(&mc);
    printf("zipf(%.2f), %zu keys, %zu requests, %zu MiB, get then set on miss:\n", alpha, n,
           requests, mib);
    printf("  petrel seg: miss ratio %.4f (%llu items at the end, %llu merges)\n",
           (double)seg_miss / (double)requests, (unsigned long long)st.items,
           (unsigned long long)st.merges);
    printf("  memcached : miss ratio %.4f\n", (double)mc_miss / (double)requests);
    free(seq);
    free(batch);
}

int
main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "mem") != 0 && strcmp(argv[1], "zipf") != 0)) {
        fprintf(stderr,
                "usage: %s mem [-n items] [-m MiB]\n"
                "       %s zipf [-n keys] [-r requests] [-m MiB] [-a alpha]\n",
                argv[0], argv[0]);
        return 2;
    }
    bool mem = strcmp(argv[1], "mem") == 0;
    size_t n = mem ? 4000000 : 4000000, requests = 20000000, mib = mem ? 256 : 64;
    double alpha = 0.99;
    int opt;
    optind = 2;
    while ((opt = getopt(argc, argv, "n:r:m:a:")) != -1) {
        switch (opt) {
        case 'n':
            n = (size_t)atol(optarg);
            break;
        case 'r':
            requests = (size_t)atol(optarg);
            break;
        case 'm':
            mib = (size_t)atol(optarg);
            break;
        case 'a':
            alpha = atof(optarg);
            break;
        default:
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    if (mem) {
        run_mem(n, mib);
    } else {
        run_zipf(n, requests, mib, alpha);
    }
    return 0;
}
