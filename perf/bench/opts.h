/*
 * opts: petrel-bench's command line. Every option is declared once, in a table in opts.c (name,
 * argument, default, help); parsing, defaults and --help all come from that table.
 *
 * Threads: main thread only, before any client thread starts.
 */
#ifndef PETREL_BENCH_OPTS_H
#define PETREL_BENCH_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto.h"
#include "transport.h"
#include "workload.h"

#define BENCH_EX_USAGE 64 /* sysexits.h EX_USAGE: bad command line */

#define BENCH_MAX_THREADS     256
#define BENCH_MAX_CONNECTIONS 65536
#define BENCH_MAX_PIPELINE    4096
#define BENCH_MAX_INFLIGHT    4096
#define BENCH_MAX_FANOUT      1024       /* --fanout: connections one logical request spans */
#define BENCH_CONNECT_MAX     UINT64_MAX /* --connect-rate max */

struct bench_opts {
    char host[256];
    char port[16];
    const struct proto *proto;
    uint32_t threads;     /* client threads, each with its own epoll loop */
    uint32_t connections; /* total, spread round-robin over the threads; 0: connect load only */
    uint32_t pipeline;    /* requests in flight per connection, at most */
    uint64_t rate;        /* requests per second in total; 0 = closed loop */
    struct workload_cfg wl;
    bool key_size_set; /* --key-size given (otherwise it follows --keys) */
    bool ratio_set;    /* --ratio given */
    double warmup_s;   /* not measured */
    double duration_s; /* measured */
    bool preload;      /* write every key before the clock starts */
    bool json;         /* JSON report instead of the table */
    uint64_t seed;
    struct tls_opts tls;       /* --tls and --tls-* */
    uint64_t connect_rate;     /* connect load: new connections/s, BENCH_CONNECT_MAX, 0: none */
    uint32_t connect_inflight; /* connect load: connections in progress at once, at most */
    /* ---- fanout (--fanout) ---- */
    uint32_t fanout; /* 0: off; N: a logical request is one get on each of N connections */
    /* ---- end fanout ---- */
    bool help;    /* --help was asked for: print usage, do nothing else */
    bool version; /* --version */
};

/**
 * Fill o from the defaults and then argv. Returns 0, or -EINVAL with a one-line explanation in
 * err (errlen bytes, NUL-terminated) for an unknown option, a bad value or an inconsistent
 * combination. Uses getopt_long(), so it resets optind itself and is not reentrant.
 */
int bench_opts_parse(struct bench_opts *o, int argc, char **argv, char *err, size_t errlen);

/** Print the option table (--help) to f. */
void bench_opts_usage(FILE *f);

#endif /* PETREL_BENCH_OPTS_H */
