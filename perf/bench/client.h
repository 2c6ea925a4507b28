/*
 * client: runs a benchmark — the client threads, their connections and epoll loops.
 *
 * Connections are spread round-robin over the threads; each thread owns its connections, its
 * epoll loop, a timerfd for the open-loop schedule and its own statistics, which are merged
 * after the threads are joined. The phases, in order: connect, preload (optional: every key set
 * once, closed loop, not timed into the results), warm-up (run but not recorded), the measured
 * window, and a drain of at most BENCH_DRAIN_S seconds in which requests scheduled inside the
 * window are still sent and answered. Whatever is still unanswered after the drain is counted as
 * unfinished, so an overloaded server shows up in the report rather than vanishing from it.
 *
 * What a request is timed from:
 * - open loop (--rate): its scheduled time (see rate.h). A connection has at most --pipeline
 *   requests in flight; requests that come due while it is full wait and keep their scheduled
 *   time, so the wait counts as latency. Requests due at the same moment go in one write.
 * - closed loop: the moment it is written. Each connection keeps --pipeline requests in flight,
 *   topping the pipeline up whenever replies arrive.
 * A request belongs to the measured window if that time falls inside it. In open loop the
 * client also records how late it wrote each request after its scheduled time (send lag): a
 * large lag with a full pipeline means the server is behind; with free pipeline slots, that
 * the client itself is.
 *
 * Fanout (--fanout N): the connections of each thread form groups of N, and the load is made
 * of logical requests: one get on every connection of a group, sent at once, complete when the
 * last of the N replies arrives — so a logical request's latency is that of its slowest part,
 * the tail a page that reads N cache servers sees. A group keeps at most --pipeline logical
 * requests in flight. In open loop --rate counts logical requests, shared by the groups as it is
 * otherwise shared by connections, and every part is timed from its logical request's due time;
 * in closed loop a group issues its next logical request whenever one completes. The parts are
 * also counted as ordinary requests, and a logical request belongs to the window by its t0 as
 * its parts do, so a clean run answers exactly N parts per logical request. A group whose
 * connection is lost stops; its logical requests in flight count as unfinished.
 *
 * With TLS (--tls) every connection finishes its handshake before the clock starts. The
 * connect load (--connect-rate, churn.h) runs in one more thread beside the client threads,
 * through the same phases; with --connections 0 it runs alone.
 */
#ifndef PETREL_BENCH_CLIENT_H
#define PETREL_BENCH_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "hist.h"
#include "opts.h"
#include "workload.h"

#define BENCH_DRAIN_S       2              /* seconds after the window to finish its requests */
#define BENCH_HIST_SUB_BITS 7              /* 128 sub-buckets per power of two: error < 0.79% */
#define BENCH_HIST_MAX_NS   60000000000ull /* 60 s: latencies beyond lose the bound */

/** Counters of one thread, or of the whole run once merged. */
struct bench_stats {
    struct hist latency;       /* ns, every request of the window that got a reply */
    struct hist send_lag;      /* ns, open loop: how late the client wrote each request */
    uint64_t requests;         /* requests of the window answered (error replies included) */
    uint64_t by_op[OP__COUNT]; /* the same, per command */
    uint64_t get_keys;         /* keys asked for by gets of the window */
    uint64_t get_hits;         /* of those, found */
    uint64_t errors;           /* error replies (ERROR, CLIENT_ERROR, SERVER_ERROR) */
    uint64_t conn_errors;      /* connections lost or dropped for a malformed reply */
    uint64_t unfinished;       /* requests of the window without a reply after the drain */
    uint64_t scheduled;        /* open loop: requests due in the window */
    uint64_t preload_sets;     /* preload sets answered */
    uint64_t preload_errors;   /* preload sets not stored or answered with an error */
    /* The connect load (--connect-rate); a connection belongs to the window by its t0. */
    struct hist conn_latency;  /* ns, from t0 (due or opening time) to the reply of its request */
    uint64_t conns;            /* connections of the window that got their reply */
    uint64_t conns_resumed;    /* of those, how many resumed a TLS session */
    uint64_t conn_failures;    /* connections of the window that failed (connect, TLS, reply) */
    uint64_t conns_unfinished; /* connections of the window without a reply after the drain */
    uint64_t conns_scheduled;  /* at a rate: connections due in the window */
    /* --fanout: logical requests; a logical request belongs to the window by its t0. */
    struct hist fanout_latency; /* ns, from t0 to the last of its parts' replies */
    uint64_t fanout_requests;   /* logical requests of the window with every part answered */
    uint64_t fanout_unfinished; /* logical requests of the window not complete after the drain */
    uint64_t fanout_scheduled;  /* open loop: logical requests due in the window */
};

/** The outcome of a run. */
struct bench_result {
    struct bench_stats total; /* merged over threads; caller frees with bench_stats_free() */
    double preload_s;         /* wall time of the preload phase */
    double measured_s;        /* length of the measured window */
};

/** Prepare empty counters. Returns 0 or -ENOMEM. */
int bench_stats_init(struct bench_stats *s);

/** Add src's counters and histogram to dst. */
void bench_stats_merge(struct bench_stats *dst, const struct bench_stats *src);

/** Release the histograms. */
void bench_stats_free(struct bench_stats *s);

/** CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);

/**
 * epoll_wait() on epfd until `wake` (CLOCK_MONOTONIC ns; 0: no limit), with a nanosecond
 * timeout where the kernel has epoll_pwait2(); *no_pwait2 (initially false) remembers that it
 * has not. Returns what epoll_wait() returns.
 */
int bench_epoll_wait(int epfd, struct epoll_event *evs, int max, uint64_t now, uint64_t wake,
                     bool *no_pwait2);

/**
 * Run the benchmark described by o against the server, drawing requests from w; blocks until
 * done. Main thread only. Returns 0 with *res filled, or a negative errno (with a message on
 * stderr) if the threads or connections could not be set up; errors during the run are counted
 * in *res, not returned.
 */
int bench_run(const struct bench_opts *o, const struct workload *w, struct bench_result *res);

#endif /* PETREL_BENCH_CLIENT_H */
