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

/* Connections of the connect load completed per second of the window. */
static double
conn_rate(const struct bench_result *r)
{
    return r->measured_s > 0 ? (double)r->total.conns / r->measured_s : 0.0;
}

/* One table row: the percentiles, max and mean of h, in microseconds. */
static void
table_row(FILE *f, const char *label, const struct hist *h)
{
    fprintf(f, "%-12s", label);
    for (size_t i = 0; i < NPCTS; i++) {
        fprintf(f, " %9.1f", us(hist_percentile(h, pcts[i])));
    }
    fprintf(f, " %9.1f %9.1f\n", us(h->max), hist_mean(h) / 1000.0);
}

static void
table_tls(FILE *f, const struct bench_opts *o)
{
    if (!o->tls.enabled) {
        return;
    }
    fprintf(f, "tls: %s%s%s%s\n",
            o->tls.ca ? "server verified against " : "server not verified (no --tls-ca)",
            o->tls.ca ? o->tls.ca : "", o->tls.cert ? ", client certificate sent" : "",
            o->tls.resume ? ", connect load resumes sessions" : "");
}

/* The connect load (--connect-rate): rate, outcomes, and the connect-to-reply latency. */
static void
table_connect(FILE *f, const struct bench_opts *o, const struct bench_result *r)
{
    const struct bench_stats *s = &r->total;

    if (o->connect_rate == 0) {
        return;
    }
    fprintf(f, "\nconnect load %.0f conn/s (%" PRIu64 " connections", conn_rate(r), s->conns);
    if (o->connect_rate != BENCH_CONNECT_MAX) {
        fprintf(f, " of %" PRIu64 " scheduled at %" PRIu64 "/s", s->conns_scheduled,
                o->connect_rate);
    } else {
        fprintf(f, ", as fast as possible");
    }
    fprintf(f, ", %u at once at most)\n", o->connect_inflight);
    if (o->tls.enabled) {
        fprintf(f, "  resumed    %" PRIu64 " TLS sessions (%.1f%%)\n", s->conns_resumed,
                s->conns ? 100.0 * (double)s->conns_resumed / (double)s->conns : 0.0);
    }
    fprintf(f, "  errors     %" PRIu64 " failed, %" PRIu64 " unfinished\n", s->conn_failures,
            s->conns_unfinished);
    fprintf(f, "connect (us)");
    for (size_t i = 0; i < NPCTS; i++) {
        fprintf(f, " %9s", pct_names[i]);
    }
    fprintf(f, " %9s %9s\n", "max", "mean");
    table_row(f, "", &s->conn_latency);
}

/* --fanout: logical requests completed per second of the window. */
static double
fanout_rate(const struct bench_result *r)
{
    return r->measured_s > 0 ? (double)r->total.fanout_requests / r->measured_s : 0.0;
}

/* --fanout: the logical requests, each timed by the slowest of its parts. */
static void
table_fanout(FILE *f, const struct bench_opts *o, const struct bench_result *r)
{
    const struct bench_stats *s = &r->total;

    if (o->fanout == 0) {
        return;
    }
    fprintf(f, "\nfanout %u     %.0f logical req/s (%" PRIu64 " logical requests", o->fanout,
            fanout_rate(r), s->fanout_requests);
    if (o->rate) {
        fprintf(f, " of %" PRIu64 " scheduled", s->fanout_scheduled);
    }
    fprintf(f, ", %" PRIu64 " unfinished), each %u get%s on %u connection%s\n",
            s->fanout_unfinished, o->fanout, o->fanout == 1 ? "" : "s", o->fanout,
            o->fanout == 1 ? "" : "s");
    fprintf(f, "fanout (us) ");
    for (size_t i = 0; i < NPCTS; i++) {
        fprintf(f, " %9s", pct_names[i]);
    }
    fprintf(f, " %9s %9s\n", "max", "mean");
    table_row(f, "slowest", &s->fanout_latency);
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
    fprintf(f, "petrel-bench %s: %s%s %s:%s, ", PETREL_VERSION, o->proto->name,
            o->tls.enabled ? " over TLS" : "", o->host, o->port);
    if (o->connections == 0) {
        fprintf(f, "connect load only\n");
    } else {
        fprintf(f, "%u thread%s, %u connection%s, pipeline %u, ", o->threads,
                o->threads == 1 ? "" : "s", o->connections, o->connections == 1 ? "" : "s",
                o->pipeline);
        if (o->rate) {
            fprintf(f, "open loop at %" PRIu64 " %sreq/s\n", o->rate, o->fanout ? "logical " : "");
        } else {
            fprintf(f, "closed loop\n");
        }
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
    table_tls(f, o);
    fprintf(f, "measured: %.1f s after %.1f s of warm-up\n", r->measured_s, o->warmup_s);
    if (o->connections == 0) {
        table_connect(f, o, r);
        return;
    }
    fputc('\n', f);

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
    fprintf(f, " %9s %9s\n", "max", "mean");
    table_row(f, "", &s->latency);
    if (o->rate) {
        table_row(f, "send lag", &s->send_lag);
    }
    table_fanout(f, o, r);
    table_connect(f, o, r);
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

/* "p50":..., "max", "min", "mean" of h in microseconds, as the members of an object. */
static void
json_latency(FILE *f, const struct hist *h)
{
    fprintf(f, "{");
    for (size_t i = 0; i < NPCTS; i++) {
        fprintf(f, "\"%s\":%.3f,", pct_names[i], us(hist_percentile(h, pcts[i])));
    }
    fprintf(f, "\"max\":%.3f,\"min\":%.3f,\"mean\":%.3f}", us(h->max), us(h->total ? h->min : 0),
            hist_mean(h) / 1000.0);
}

static void
json_tls(FILE *f, const struct bench_opts *o)
{
    fprintf(f, "\"transport\":\"%s\",\"tls\":", o->tls.enabled ? "tls" : "tcp");
    if (!o->tls.enabled) {
        fprintf(f, "null,");
        return;
    }
    fprintf(f, "{\"verify\":%s,\"client_cert\":%s,\"resume\":%s},", o->tls.ca ? "true" : "false",
            o->tls.cert ? "true" : "false", o->tls.resume ? "true" : "false");
}

static void
json_fanout(FILE *f, const struct bench_opts *o, const struct bench_result *r)
{
    const struct bench_stats *s = &r->total;

    fprintf(f, "\"fanout\":");
    if (o->fanout == 0) {
        fprintf(f, "null,");
        return;
    }
    fprintf(f,
            "{\"n\":%u,\"per_s\":%.1f,\"requests\":%" PRIu64 ",\"scheduled\":%" PRIu64
            ",\"unfinished\":%" PRIu64 ",\"latency_us\":",
            o->fanout, fanout_rate(r), s->fanout_requests, s->fanout_scheduled,
            s->fanout_unfinished);
    json_latency(f, &s->fanout_latency);
    fprintf(f, "},");
}

static void
json_connect(FILE *f, const struct bench_opts *o, const struct bench_result *r)
{
    const struct bench_stats *s = &r->total;

    fprintf(f, "\"connect\":");
    if (o->connect_rate == 0) {
        fprintf(f, "null");
        return;
    }
    if (o->connect_rate == BENCH_CONNECT_MAX) {
        fprintf(f, "{\"rate\":\"max\",");
    } else {
        fprintf(f, "{\"rate\":%" PRIu64 ",", o->connect_rate);
    }
    fprintf(f,
            "\"inflight\":%u,\"per_s\":%.1f,\"completed\":%" PRIu64 ",\"resumed\":%" PRIu64
            ",\"failed\":%" PRIu64 ",\"unfinished\":%" PRIu64 ",\"scheduled\":%" PRIu64
            ",\"latency_us\":",
            o->connect_inflight, conn_rate(r), s->conns, s->conns_resumed, s->conn_failures,
            s->conns_unfinished, s->conns_scheduled);
    json_latency(f, &s->conn_latency);
    fprintf(f, "}");
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
    fprintf(f, "\"latency_us\":");
    json_latency(f, &s->latency);
    fprintf(f, ",");
    fprintf(f, "\"send_lag_us\":{");
    for (size_t i = 0; i < NPCTS; i++) {
        fprintf(f, "\"%s\":%.3f,", pct_names[i], us(hist_percentile(&s->send_lag, pcts[i])));
    }
    fprintf(f, "\"max\":%.3f},", us(s->send_lag.max));
    json_tls(f, o);
    json_fanout(f, o, r);
    json_connect(f, o, r);
    fprintf(f, "}\n");
}
