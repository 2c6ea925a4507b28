/* opts: petrel-bench's option table, parser and --help. */
#include "opts.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef int (*opt_setter)(struct bench_opts *o, const char *arg, char *err, size_t errlen);

struct bench_opt {
    const char *name; /* --name */
    char short_name;  /* -x, or 0 */
    const char *arg;  /* argument shown in --help; NULL for a flag */
    const char *dflt; /* default, applied through set() before argv; NULL for none */
    const char *help; /* one line */
    opt_setter set;
};

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/*
 * A decimal count in [min, max]; with `suffixes`, k and m multiply by 1e3 and 1e6 (counts of
 * requests or keys, so decimal, not 1024-based). Returns 0 or -EINVAL.
 */
static int
parse_count(const char *s, bool suffixes, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    if (s[0] < '0' || s[0] > '9') {
        return -EINVAL;
    }
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0) {
        return -EINVAL;
    }
    uint64_t mul = 1;
    if (suffixes && (*end == 'k' || *end == 'K')) {
        mul = 1000;
        end++;
    } else if (suffixes && (*end == 'm' || *end == 'M')) {
        mul = 1000000;
        end++;
    }
    if (*end != '\0' || (v != 0 && mul > UINT64_MAX / v)) {
        return -EINVAL;
    }
    v *= mul;
    if (v < min || v > max) {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static int
set_u32(uint32_t *dst, const char *name, const char *arg, uint64_t min, uint64_t max, char *err,
        size_t errlen)
{
    uint64_t v;
    if (parse_count(arg, false, min, max, &v) < 0) {
        return fail(err, errlen, "--%s: '%s' is not a whole number from %llu to %llu", name, arg,
                    (unsigned long long)min, (unsigned long long)max);
    }
    *dst = (uint32_t)v;
    return 0;
}

static int
set_seconds(double *dst, const char *name, const char *arg, bool zero_ok, char *err, size_t errlen)
{
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (errno != 0 || end == arg || *end != '\0' || !isfinite(v) || v < 0.0 || v > 86400.0 ||
        (!zero_ok && v == 0.0)) {
        return fail(err, errlen, "--%s: '%s' is not a number of seconds %s 86400", name, arg,
                    zero_ok ? "from 0 to" : "above 0 and up to");
    }
    *dst = v;
    return 0;
}

static int
set_server(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    const char *colon = strrchr(arg, ':');
    const char *host = arg;
    size_t hlen = colon ? (size_t)(colon - arg) : 0;

    if (colon == NULL || hlen == 0 || colon[1] == '\0') {
        return fail(err, errlen, "--server: '%s' is not HOST:PORT", arg);
    }
    if (host[0] == '[' && hlen >= 2 && host[hlen - 1] == ']') {
        host++;
        hlen -= 2;
    }
    uint64_t port;
    if (hlen == 0 || hlen >= sizeof(o->host) || parse_count(colon + 1, false, 1, 65535, &port)) {
        return fail(err, errlen, "--server: '%s' is not HOST:PORT (port 1 to 65535)", arg);
    }
    memcpy(o->host, host, hlen);
    o->host[hlen] = '\0';
    snprintf(o->port, sizeof(o->port), "%u", (unsigned)port);
    return 0;
}

static int
set_protocol(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    o->proto = proto_find(arg);
    return o->proto ? 0 : fail(err, errlen, "--protocol: '%s' is not memcache, resp or ping", arg);
}

static int
set_threads(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    return set_u32(&o->threads, "threads", arg, 1, BENCH_MAX_THREADS, err, errlen);
}

static int
set_connections(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    return set_u32(&o->connections, "connections", arg, 0, BENCH_MAX_CONNECTIONS, err, errlen);
}

static int
set_pipeline(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    return set_u32(&o->pipeline, "pipeline", arg, 1, BENCH_MAX_PIPELINE, err, errlen);
}

static int
set_rate(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    if (parse_count(arg, true, 0, 100000000, &o->rate) < 0) {
        return fail(err, errlen, "--rate: '%s' is not a request rate from 0 to 100m", arg);
    }
    return 0;
}

static int
set_keys(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    if (parse_count(arg, true, 1, 1000000000000ull, &o->wl.keys) < 0) {
        return fail(err, errlen, "--keys: '%s' is not a key count from 1 to 1e12", arg);
    }
    return 0;
}

static int
set_key_size(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    o->key_size_set = true;
    return set_u32(&o->wl.key_size, "key-size", arg, 2, WORKLOAD_MAX_KEY_SIZE, err, errlen);
}

static int
set_key_dist(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    if (strcmp(arg, "uniform") == 0) {
        o->wl.dist = KEY_UNIFORM;
        return 0;
    }
    if (strncmp(arg, "zipf:", 5) == 0) {
        char *end;
        errno = 0;
        double theta = strtod(arg + 5, &end);
        if (errno == 0 && end != arg + 5 && *end == '\0' && isfinite(theta) && theta > 0.0 &&
            theta <= 40.0) {
            o->wl.dist = KEY_ZIPF;
            o->wl.theta = theta;
            return 0;
        }
    }
    return fail(err, errlen, "--key-dist: '%s' is not uniform or zipf:THETA (0 < THETA <= 40)",
                arg);
}

static int
set_value_size(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    char lo[32];
    const char *dash = strchr(arg, '-');
    uint64_t min, max;

    if (dash == NULL) {
        if (parse_count(arg, false, 0, WORKLOAD_MAX_VALUE, &min) == 0) {
            o->wl.value_min = o->wl.value_max = (uint32_t)min;
            return 0;
        }
    } else if ((size_t)(dash - arg) < sizeof(lo)) {
        memcpy(lo, arg, (size_t)(dash - arg));
        lo[dash - arg] = '\0';
        if (parse_count(lo, false, 0, WORKLOAD_MAX_VALUE, &min) == 0 &&
            parse_count(dash + 1, false, min, WORKLOAD_MAX_VALUE, &max) == 0) {
            o->wl.value_min = (uint32_t)min;
            o->wl.value_max = (uint32_t)max;
            return 0;
        }
    }
    return fail(err, errlen, "--value-size: '%s' is not N or MIN-MAX (bytes, 0 to %u, MIN <= MAX)",
                arg, WORKLOAD_MAX_VALUE);
}

static int
set_ratio(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    uint32_t w[4] = {0, 0, 0, 0};
    const char *p = arg;
    int n = 0;
    uint64_t sum = 0;

    o->ratio_set = true;
    for (;;) {
        char field[16];
        size_t len = strcspn(p, ":");
        uint64_t v;
        if (n == 4 || len == 0 || len >= sizeof(field)) {
            goto bad;
        }
        memcpy(field, p, len);
        field[len] = '\0';
        if (parse_count(field, false, 0, 1000000, &v) < 0) {
            goto bad;
        }
        w[n++] = (uint32_t)v;
        sum += v;
        if (p[len] == '\0') {
            break;
        }
        p += len + 1;
    }
    if (n < 2 || sum == 0) {
        goto bad;
    }
    o->wl.weight[OP_GET] = w[0];
    o->wl.weight[OP_SET] = w[1];
    o->wl.weight[OP_DELETE] = w[2];
    o->wl.weight[OP_INCR] = w[3];
    o->wl.weight[OP_PING] = 0;
    return 0;
bad:
    return fail(err, errlen,
                "--ratio: '%s' is not GET:SET[:DELETE[:INCR]] (whole weights, not all zero)", arg);
}

static int
set_multiget(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    return set_u32(&o->wl.multiget, "multiget", arg, 1, WORKLOAD_MAX_MULTIGET, err, errlen);
}

static int
set_warmup(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    return set_seconds(&o->warmup_s, "warmup", arg, true, err, errlen);
}

static int
set_duration(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    return set_seconds(&o->duration_s, "duration", arg, false, err, errlen);
}

static int
set_preload(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    o->preload = true;
    return 0;
}

static int
set_seed(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    if (parse_count(arg, false, 0, UINT64_MAX, &o->seed) < 0) {
        return fail(err, errlen, "--seed: '%s' is not a whole number", arg);
    }
    return 0;
}

static int
set_json(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    o->json = true;
    return 0;
}

static int
set_tls(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    o->tls.enabled = true;
    return 0;
}

/* A file name for --tls-ca, --tls-cert or --tls-key: loaded when the run starts. */
static int
set_path(const char **dst, const char *name, const char *arg, char *err, size_t errlen)
{
    if (arg[0] == '\0') {
        return fail(err, errlen, "--%s: empty file name", name);
    }
    *dst = arg;
    return 0;
}

static int
set_tls_ca(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    return set_path(&o->tls.ca, "tls-ca", arg, err, errlen);
}

static int
set_tls_cert(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    return set_path(&o->tls.cert, "tls-cert", arg, err, errlen);
}

static int
set_tls_key(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    return set_path(&o->tls.key, "tls-key", arg, err, errlen);
}

static int
set_tls_name(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    if (arg[0] == '\0' || strlen(arg) > 255) {
        return fail(err, errlen, "--tls-name: '%s' is not a server name", arg);
    }
    o->tls.name = arg;
    return 0;
}

static int
set_tls_resume(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    o->tls.resume = true;
    return 0;
}

static int
set_tls_ciphers(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    int rc = transport_tls_ciphers(arg, o->tls.ciphers, err, errlen);
    return rc < 0 ? -EINVAL : 0;
}

static int
set_connect_rate(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    if (strcmp(arg, "max") == 0) {
        o->connect_rate = BENCH_CONNECT_MAX;
        return 0;
    }
    if (parse_count(arg, true, 1, 10000000, &o->connect_rate) < 0) {
        return fail(err, errlen, "--connect-rate: '%s' is not max or a rate from 1 to 10m", arg);
    }
    return 0;
}

static int
set_connect_inflight(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    return set_u32(&o->connect_inflight, "connect-inflight", arg, 1, BENCH_MAX_INFLIGHT, err,
                   errlen);
}

/* ---- fanout (--fanout): the option's setter and its checks ---- */

static int
set_fanout(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    return set_u32(&o->fanout, "fanout", arg, 1, BENCH_MAX_FANOUT, err, errlen);
}

/*
 * A logical request spans --fanout connections of one client thread, so the connections split
 * into whole groups and every thread gets at least one. Its parts are gets: a mix does not apply.
 */
static int
check_fanout(const struct bench_opts *o, char *err, size_t errlen)
{
    if (o->fanout == 0) {
        return 0;
    }
    if (o->connections == 0 || o->connections % o->fanout != 0) {
        return fail(err, errlen, "--connections (%u) must be a multiple of --fanout (%u)",
                    o->connections, o->fanout);
    }
    if (o->connections / o->fanout < o->threads) {
        return fail(err, errlen,
                    "--connections / --fanout (%u groups) must be at least --threads (%u)",
                    o->connections / o->fanout, o->threads);
    }
    if (o->ratio_set) {
        return fail(err, errlen, "--fanout sends gets only: --ratio does not apply");
    }
    return 0;
}

/* ---- end fanout ---- */

static int
set_help(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    o->help = true;
    return 0;
}

static int
set_version(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
    o->version = true;
    return 0;
}

static const struct bench_opt bench_opt_table[] = {
    {"server", 's', "HOST:PORT", "127.0.0.1:11211", "server to load ([v6addr]:port for IPv6)",
     set_server},
    {"protocol", 'P', "NAME", "memcache", "memcache (text), resp (Redis) or ping", set_protocol},
    {"threads", 't', "N", "1", "client threads, one epoll loop each", set_threads},
    {"connections", 'c', "N", "16",
     "connections in total, spread over the threads (0: --connect-rate only)", set_connections},
    {"pipeline", 'd', "N", "1", "requests in flight per connection, at most", set_pipeline},
    {"rate", 'r', "N", "0", "open loop at N requests/s in total (k, m suffixes); 0: closed loop",
     set_rate},
    {"keys", 'k', "N", "100000", "distinct keys (k, m suffixes)", set_keys},
    {"key-size", 0, "BYTES", NULL, "key length (default 16, or more if --keys needs it)",
     set_key_size},
    {"key-dist", 0, "DIST", "uniform", "key popularity: uniform or zipf:THETA", set_key_dist},
    {"value-size", 'v', "N|MIN-MAX", "64", "set value size: fixed, or uniform in a range",
     set_value_size},
    {"ratio", 0, "G:S[:D[:I]]", "9:1", "command mix get:set:delete:incr, relative weights",
     set_ratio},
    {"multiget", 'm', "K", "1", "keys per get", set_multiget},
    /* ---- fanout ---- */
    {"fanout", 0, "N", NULL,
     "a logical request is N parallel gets on N connections, timed by the slowest", set_fanout},
    /* ---- end fanout ---- */
    {"warmup", 'w', "SECONDS", "1", "run this long before measuring", set_warmup},
    {"duration", 'D', "SECONDS", "10", "measure this long", set_duration},
    {"preload", 0, NULL, NULL, "set every key once before the clock starts", set_preload},
    {"seed", 0, "N", "1", "random seed (same seed and threads: same requests)", set_seed},
    {"json", 0, NULL, NULL, "print the report as JSON", set_json},
    {"tls", 0, NULL, NULL, "connect with TLS (mbedTLS)", set_tls},
    {"tls-ca", 0, "FILE", NULL, "verify the server against these CAs (without: no verification)",
     set_tls_ca},
    {"tls-name", 0, "NAME", NULL, "server name to send and verify (default: the --server host)",
     set_tls_name},
    {"tls-cert", 0, "FILE", NULL, "client certificate (PEM) for mutual TLS, with --tls-key",
     set_tls_cert},
    {"tls-key", 0, "FILE", NULL, "the client certificate's private key (PEM, unencrypted)",
     set_tls_key},
    {"tls-ciphers", 0, "LIST", NULL, "cipher suites, comma-separated (default: mbedTLS's)",
     set_tls_ciphers},
    {"tls-resume", 0, NULL, NULL, "--connect-rate connections resume an earlier TLS session",
     set_tls_resume},
    {"connect-rate", 0, "N|max", NULL,
     "also open N connections/s, or max: connect, handshake, a request, close", set_connect_rate},
    {"connect-inflight", 0, "N", "16", "--connect-rate connections in progress at once, at most",
     set_connect_inflight},
    {"help", 'h', NULL, NULL, "print this help", set_help},
    {"version", 'V', NULL, NULL, "print the version", set_version},
};

#define NOPTS (sizeof(bench_opt_table) / sizeof(bench_opt_table[0]))

void
bench_opts_usage(FILE *f)
{
    fprintf(f,
            "Usage: petrel-bench [OPTION]...\n"
            "Load generator for memcache- and Redis-protocol servers: a fixed request rate (open "
            "loop,\n"
            "latency timed from each request's scheduled send time) or as fast as possible.\n\n");
    for (size_t i = 0; i < NOPTS; i++) {
        const struct bench_opt *d = &bench_opt_table[i];
        char left[48];
        snprintf(left, sizeof(left), "%c%c%s --%s%s%s", d->short_name ? '-' : ' ',
                 d->short_name ? d->short_name : ' ', d->short_name ? "," : " ", d->name,
                 d->arg ? " " : "", d->arg ? d->arg : "");
        fprintf(f, "  %-32s %s", left, d->help);
        if (d->dflt) {
            fprintf(f, " [%s]", d->dflt);
        }
        fputc('\n', f);
    }
    fprintf(f, "\nExit status: 0 after a run, 1 if it could not run, %d for a bad command line.\n",
            BENCH_EX_USAGE);
}

/* The --tls-* options need --tls, and the certificate and its key go together. */
static int
check_tls(const struct tls_opts *t, uint64_t connect_rate, char *err, size_t errlen)
{
    const char *given = t->ca           ? "--tls-ca"
                        : t->cert       ? "--tls-cert"
                        : t->key        ? "--tls-key"
                        : t->name       ? "--tls-name"
                        : t->ciphers[0] ? "--tls-ciphers"
                        : t->resume     ? "--tls-resume"
                                        : NULL;
    if (given != NULL && !t->enabled) {
        return fail(err, errlen, "%s needs --tls", given);
    }
    if ((t->cert == NULL) != (t->key == NULL)) {
        return fail(err, errlen, "--tls-cert and --tls-key go together");
    }
    if (t->resume && connect_rate == 0) {
        return fail(err, errlen,
                    "--tls-resume needs --connect-rate: only its connections are reopened");
    }
    return 0;
}

/* Checks that involve more than one option, after all of them are known. */
static int
check(struct bench_opts *o, char *err, size_t errlen)
{
    uint32_t need = workload_min_key_size(o->wl.keys);

    if (o->connections == 0 && o->connect_rate == 0) {
        return fail(err, errlen, "--connections 0 needs --connect-rate: nothing would be sent");
    }
    if (o->connections == 0 && (o->rate || o->preload)) {
        return fail(err, errlen, "--rate and --preload need --connections above 0");
    }
    if (o->connections > 0 && o->connections < o->threads) {
        return fail(err, errlen, "--connections (%u) must be at least --threads (%u)",
                    o->connections, o->threads);
    }
    if (check_tls(&o->tls, o->connect_rate, err, errlen) < 0) {
        return -EINVAL;
    }
    if (!o->key_size_set) {
        o->wl.key_size = need > 16 ? need : 16;
    } else if (o->wl.key_size < need) {
        return fail(err, errlen, "--key-size %u is too short for %llu keys: it needs %u",
                    o->wl.key_size, (unsigned long long)o->wl.keys, need);
    }
    if (check_fanout(o, err, errlen) < 0) { /* fanout */
        return -EINVAL;
    }
    if (o->fanout > 0 && o->proto->keyed) { /* fanout: every part is a get */
        memset(o->wl.weight, 0, sizeof(o->wl.weight));
        o->wl.weight[OP_GET] = 1;
    }
    if (!o->proto->keyed) {
        if (o->ratio_set || o->preload) {
            return fail(err, errlen, "--ratio and --preload do not apply to --protocol %s",
                        o->proto->name);
        }
        memset(o->wl.weight, 0, sizeof(o->wl.weight));
        o->wl.weight[OP_PING] = 1;
    }
    return 0;
}

int
bench_opts_parse(struct bench_opts *o, int argc, char **argv, char *err, size_t errlen)
{
    struct option longopts[NOPTS + 1];
    char shortopts[2 * NOPTS + 2];
    size_t ns = 0;
    int rc;

    memset(o, 0, sizeof(*o));
    memset(longopts, 0, sizeof(longopts));
    shortopts[ns++] = ':'; /* report a missing argument as ':' rather than '?' */
    for (size_t i = 0; i < NOPTS; i++) {
        const struct bench_opt *d = &bench_opt_table[i];
        longopts[i] =
            (struct option){d->name, d->arg ? required_argument : no_argument, NULL, 256 + (int)i};
        if (d->short_name) {
            shortopts[ns++] = d->short_name;
            if (d->arg) {
                shortopts[ns++] = ':';
            }
        }
        if (d->dflt && (rc = d->set(o, d->dflt, err, errlen)) < 0) {
            return rc;
        }
    }
    shortopts[ns] = '\0';
    o->key_size_set = false;
    o->ratio_set = false;
    o->wl.multiget = o->wl.multiget ? o->wl.multiget : 1;

    optind = 0; /* 0, not 1: also resets getopt's internal state for a second parse */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        const struct bench_opt *d = NULL;
        if (c >= 256 && c < 256 + (int)NOPTS) {
            d = &bench_opt_table[c - 256];
        } else {
            for (size_t i = 0; i < NOPTS && c != '?' && c != ':'; i++) {
                if (bench_opt_table[i].short_name == c) {
                    d = &bench_opt_table[i];
                }
            }
        }
        if (d == NULL) {
            const char *what = argv[optind - 1];
            return fail(err, errlen, "%s: %s", c == ':' ? "missing argument for" : "unknown option",
                        what);
        }
        if ((rc = d->set(o, optarg, err, errlen)) < 0) {
            return rc;
        }
    }
    if (optind < argc) {
        return fail(err, errlen, "unexpected argument '%s'", argv[optind]);
    }
    if (o->help || o->version) {
        return 0;
    }
    return check(o, err, errlen);
}
