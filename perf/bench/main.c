/*
 * petrel-bench: Petrel's load generator. Parses the command line, builds the workload, runs
 * the client threads (client.c) and prints the report (report.c).
 */
#include <stdio.h>
#include <string.h>

#include "client.h"
#include "opts.h"
#include "petrel_build.h"
#include "report.h"
#include "workload.h"

int
main(int argc, char **argv)
{
    struct bench_opts o;
    struct workload w;
    struct bench_result r;
    char err[256];

    if (bench_opts_parse(&o, argc, argv, err, sizeof(err)) < 0) {
        fprintf(stderr, "petrel-bench: %s\nTry 'petrel-bench --help'.\n", err);
        return BENCH_EX_USAGE;
    }
    if (o.help) {
        bench_opts_usage(stdout);
        return 0;
    }
    if (o.version) {
        printf("petrel-bench %s\n", PETREL_VERSION);
        return 0;
    }
    if (workload_init(&w, &o.wl) < 0) {
        fprintf(stderr, "petrel-bench: the workload options do not fit together\n");
        return BENCH_EX_USAGE;
    }
    if (bench_run(&o, &w, &r) < 0) {
        workload_free(&w);
        return 1;
    }
    if (o.json) {
        report_json(stdout, &o, &w, &r);
    } else {
        report_table(stdout, &o, &w, &r);
    }
    bench_stats_free(&r.total);
    workload_free(&w);
    return 0;
}
