/* report: the table and the JSON object; what the figures mean is in report.h. */
#include "report.h"

#include <inttypes.h>

#include "petrel_build.h"

static const double pcts[] = {50.0, 90.0, 99.0, 99.9, 99.99};
static const char *const pct_names[] = {"p50", "p90", "p99", "p99.9", "p99.99"};
#define NPCTS (sizeof(pcts) / sizeof(pcts[0]))

static double
us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

static double
throughput(const struct bench_result *r)
{
    return r->measured_s > 0 ? (double)r->total.requests / r->measured_s : 0.0;
}

/* Hit ratio of gets, or a negative value when no get was answered. */
static double
hit_ratio(const struct bench_stats *s)
{
    return s->get_keys ? (double)s->get_hits / (double)s->get_keys : -1.0;
}

static void
describe_keys(char *out, size_t n, const struct workload *w)
{
    if (w->cfg.dist == KEY_ZIPF) {
        snprintf(out, n, "zipf:%g", w->cfg.theta);
    } else {
        snprintf(out, n, "uniform");
    }
}

void
report_table(FILE *f, const struct bench_opts *o, const struct workload *w,
             const struct bench_result *r)
{
    const struct bench_stats *s = &r->total;
    const struct workload_cfg *c = &w->cfg;
    char dist[32];

    describe_keys(dist, sizeof(dist), w);
    fprintf(f, "petrel-bench %s: %s %s:%s, %u thread%s, %u connection%s, pipeline %u, ",
            PETREL_VERSION, o->proto->name, o->host, o->port, o->threads,
            o->threads == 1 ? "" : "s", o->connections, o->connections == 1 ? "" : "s",
            o->pipeline);
    if (o->rate) {
        fprintf(f, "open loop at %" PRIu64 " req/s\n", o->rate);
    } else {
        fprintf(f, "closed loop\n");
    }
    if (o->proto->keyed) {
        fprintf(f, "workload: %" PRIu64 " keys of %u B (%s), values %u", c->keys, c->key_size, dist,
                c->value_min);
        if (c->value_max != c->value_min) {
            fprintf(f, "-%u", c->value_max);
        }
        fprintf(f, " B, get:set:delete:incr %u:%u:%u:%u, %u key%s per get\n", c->weight[OP_GET],
                c->weight[OP_SET], c->weight[OP_DELETE], c->weight[OP_INCR], c->multiget,
                c->multiget == 1 ? "" : "s");
    }
    if (o->preload) {
        fprintf(f, "preload: %" PRIu64 " sets in %.2f s, %" PRIu64 " not stored\n", s->preload_sets,
                r->preload_s, s->preload_errors);
    }
    fprintf(f, "measured: %.1f s after %.1f s of warm-up\n\n", r->measured_s, o->warmup_s);

    fprintf(f, "throughput   %.0f req/s (%" PRIu64 " requests", throughput(r), s->requests);
    if (o->rate) {
        fprintf(f, " of %" PRIu64 " scheduled", s->scheduled);
    }
    fprintf(f, ")\n");
    for (int i = 0; i < OP__COUNT; i++) {
        if (s->by_op[i]) {
            fprintf(f, "  %-10s %" PRIu64 "\n", workload_op_name((enum op_type)i), s->by_op[i]);
        }
    }
    if (hit_ratio(s) >= 0) {
        fprintf(f, "hit ratio    %.2f%% (%" PRIu64 " of %" PRIu64 " keys asked by gets)\n",
                100.0 * hit_ratio(s), s->get_hits, s->get_keys);
    }
    fprintf(f,
            "errors       %" PRIu64 " error replies, %" PRIu64 " connections lost, %" PRIu64
            " unfinished\n\n",
            s->errors, s->conn_errors, s->unfinished);

    fprintf(f, "latency (us)");
    for (size_t i = 0; i < NPCTS; i++) {
        fprintf(f, " %9s", pct_names[i]);
    }
    fprintf(f, " %9s %9s\n            ", "max", "mean");
    for (size_t i = 0; i < NPCTS; i++) {
        fprintf(f, " %9.1f", us(hist_percentile(&s->latency, pcts[i])));
    }
    fprintf(f, " %9.1f %9.1f\n", us(s->latency.max), hist_mean(&s->latency) / 1000.0);
    if (o->rate) {
        fprintf(f, "send lag    ");
        for (size_t i = 0; i < NPCTS; i++) {
            fprintf(f, " %9.1f", us(hist_percentile(&s->send_lag, pcts[i])));
        }
        fprintf(f, " %9.1f %9.1f\n", us(s->send_lag.max), hist_mean(&s->send_lag) / 1000.0);
    }
}

/* Host names are printed inside a JSON string: escape what JSON requires. */
static void
json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            fprintf(f, "\\%c", ch);
        } else if (ch < 0x20) {
            fprintf(f, "\\u%04x", ch);
        } else {
            fputc(ch, f);
        }
    }
    fputc('"', f);
}

void
report_json(FILE *f, const struct bench_opts *o, const struct workload *w,
            const struct bench_result *r)
{
    const struct bench_stats *s = &r->total;
    const struct workload_cfg *c = &w->cfg;
    char dist[32];

    describe_keys(dist, sizeof(dist), w);
    fprintf(f, "{\"version\":\"%s\",\"server\":", PETREL_VERSION);
    json_string(f, o->host);
    fprintf(f,
            ",\"port\":%s,\"protocol\":\"%s\",\"threads\":%u,\"connections\":%u,"
            "\"pipeline\":%u,\"rate\":%" PRIu64 ",\"mode\":\"%s\",",
            o->port, o->proto->name, o->threads, o->connections, o->pipeline, o->rate,
            o->rate ? "open" : "closed");
    fprintf(f,
            "\"keys\":%" PRIu64 ",\"key_size\":%u,\"key_dist\":\"%s\",\"value_min\":%u,"
            "\"value_max\":%u,\"ratio\":{\"get\":%u,\"set\":%u,\"delete\":%u,\"incr\":%u},"
            "\"multiget\":%u,\"seed\":%" PRIu64 ",",
            c->keys, c->key_size, dist, c->value_min, c->value_max, c->weight[OP_GET],
            c->weight[OP_SET], c->weight[OP_DELETE], c->weight[OP_INCR], c->multiget, o->seed);
    fprintf(f,
            "\"preload\":%s,\"preload_sets\":%" PRIu64 ",\"preload_errors\":%" PRIu64
            ",\"preload_s\":%.3f,\"warmup_s\":%.3f,\"duration_s\":%.3f,",
            o->preload ? "true" : "false", s->preload_sets, s->preload_errors, r->preload_s,
            o->warmup_s, r->measured_s);
    fprintf(f, "\"throughput\":%.1f,\"requests\":%" PRIu64 ",\"scheduled\":%" PRIu64 ",",
            throughput(r), s->requests, s->scheduled);
    fprintf(f, "\"ops\":{");
    for (int i = 0; i < OP__COUNT; i++) {
        fprintf(f, "%s\"%s\":%" PRIu64, i ? "," : "", workload_op_name((enum op_type)i),
                s->by_op[i]);
    }
    fprintf(f, "},\"get_keys\":%" PRIu64 ",\"get_hits\":%" PRIu64 ",", s->get_keys, s->get_hits);
    if (hit_ratio(s) >= 0) {
        fprintf(f, "\"hit_ratio\":%.6f,", hit_ratio(s));
    } else {
        fprintf(f, "\"hit_ratio\":null,");
    }
    fprintf(f, "\"errors\":%" PRIu64 ",\"conn_errors\":%" PRIu64 ",\"unfinished\":%" PRIu64 ",",
            s->errors, s->conn_errors, s->unfinished);
    fprintf(f, "\"latency_us\":{");
    for (size_t i = 0; i < NPCTS; i++) {
        fprintf(f, "\"%s\":%.3f,", pct_names[i], us(hist_percentile(&s->latency, pcts[i])));
    }
    fprintf(f, "\"max\":%.3f,\"min\":%.3f,\"mean\":%.3f},", us(s->latency.max),
            us(s->latency.total ? s->latency.min : 0), hist_mean(&s->latency) / 1000.0);
    fprintf(f, "\"send_lag_us\":{");
    for (size_t i = 0; i < NPCTS; i++) {
        fprintf(f, "\"%s\":%.3f,", pct_names[i], us(hist_percentile(&s->send_lag, pcts[i])));
    }
    fprintf(f, "\"max\":%.3f}}\n", us(s->send_lag.max));
}
