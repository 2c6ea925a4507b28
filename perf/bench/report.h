/*
 * report: petrel-bench's output — a readable table, or one JSON object with --json.
 *
 * Throughput is answered requests of the measured window divided by the window's length. Hit
 * ratio is keys found over keys asked for by gets. Latencies are in microseconds; percentiles
 * come from the log-linear histogram (hist.h) and overstate the exact value by less than 0.79%.
 * In open loop, the send lag (how late the client wrote requests) is reported beside them. The
 * connect load (--connect-rate) adds connections completed per second of the window, resumed
 * TLS sessions, failures, and the latency from each connection's start (or due time) to its reply.
 * --fanout adds the logical requests: how many completed (per second, and of how many scheduled
 * in open loop), how many were left unfinished, and their latency, each that of its slowest part.
 *
 * Threads: main thread, after bench_run() returned.
 */
#ifndef PETREL_BENCH_REPORT_H
#define PETREL_BENCH_REPORT_H

#include <stdio.h>

#include "client.h"
#include "opts.h"
#include "workload.h"

/** Print the run's configuration and results as a table. */
void report_table(FILE *f, const struct bench_opts *o, const struct workload *w,
                  const struct bench_result *r);

/** Print the run's configuration and results as one JSON object and a newline. */
void report_json(FILE *f, const struct bench_opts *o, const struct workload *w,
                 const struct bench_result *r);

#endif /* PETREL_BENCH_REPORT_H */
