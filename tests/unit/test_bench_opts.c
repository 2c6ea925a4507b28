/* Unit tests for perf/bench/opts: defaults, accepted forms and refused command lines. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "opts.h"

static struct bench_opts o;
static char err[256];

/* Parse a NULL-terminated argument list (argv[0] is added). */
#define PARSE(...)                                                                                 \
    ({                                                                                             \
        char *argv_[] = {"petrel-bench", __VA_ARGS__, NULL};                                       \
        bench_opts_parse(&o, (int)(sizeof(argv_) / sizeof(argv_[0])) - 1, argv_, err,              \
                         sizeof(err));                                                             \
    })

Test(bench_opts, defaults_are_a_short_closed_loop_memcache_run)
{
    char *argv[] = {"petrel-bench", NULL};
    cr_assert_eq(bench_opts_parse(&o, 1, argv, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(o.host, "127.0.0.1");
    cr_assert_str_eq(o.port, "11211");
    cr_assert_eq(o.proto, &proto_memcache);
    cr_assert_eq(o.threads, 1);
    cr_assert_eq(o.connections, 16);
    cr_assert_eq(o.pipeline, 1);
    cr_assert_eq(o.rate, 0);
    cr_assert_eq(o.wl.keys, 100000);
    cr_assert_eq(o.wl.key_size, 16);
    cr_assert_eq(o.wl.value_min, 64);
    cr_assert_eq(o.wl.weight[OP_GET], 9);
    cr_assert_eq(o.wl.weight[OP_SET], 1);
    cr_assert_eq(o.wl.multiget, 1);
    cr_assert_not(o.preload);
    cr_assert_not(o.json);
}

Test(bench_opts, every_workload_option_is_understood)
{
    cr_assert_eq(PARSE("--server", "[::1]:22122", "-t", "2", "-c", "32", "-d", "16", "--rate",
                       "50k", "--keys", "1m", "--key-size", "20", "--key-dist", "zipf:0.99",
                       "--value-size", "10-100", "--ratio", "1:2:3:4", "--multiget", "8",
                       "--warmup", "0.5", "--duration", "3", "--preload", "--json", "--seed", "9"),
                 0, "%s", err);
    cr_assert_str_eq(o.host, "::1");
    cr_assert_str_eq(o.port, "22122");
    cr_assert_eq(o.threads, 2);
    cr_assert_eq(o.connections, 32);
    cr_assert_eq(o.pipeline, 16);
    cr_assert_eq(o.rate, 50000);
    cr_assert_eq(o.wl.keys, 1000000);
    cr_assert_eq(o.wl.key_size, 20);
    cr_assert_eq(o.wl.dist, KEY_ZIPF);
    cr_assert_float_eq(o.wl.theta, 0.99, 1e-12);
    cr_assert_eq(o.wl.value_min, 10);
    cr_assert_eq(o.wl.value_max, 100);
    cr_assert_eq(o.wl.weight[OP_GET], 1);
    cr_assert_eq(o.wl.weight[OP_INCR], 4);
    cr_assert_eq(o.wl.multiget, 8);
    cr_assert_float_eq(o.warmup_s, 0.5, 1e-12);
    cr_assert_float_eq(o.duration_s, 3.0, 1e-12);
    cr_assert(o.preload && o.json);
    cr_assert_eq(o.seed, 9);
}

Test(bench_opts, the_key_size_grows_with_the_key_count_unless_given)
{
    cr_assert_eq(PARSE("--keys", "100000000000000"), -EINVAL); /* above 1e12 */
    cr_assert_eq(PARSE("--keys", "1000000000000"), 0, "%s", err);
    cr_assert_eq(o.wl.key_size, 16);
    cr_assert_eq(PARSE("--keys", "1000", "--key-size", "4"), 0, "%s", err);
    cr_assert_eq(o.wl.key_size, 4);
    cr_assert_eq(PARSE("--keys", "1001", "--key-size", "4"), -EINVAL);
    cr_assert(strstr(err, "key-size") != NULL, "%s", err);
}

Test(bench_opts, ping_has_no_keys_and_refuses_a_mix)
{
    cr_assert_eq(PARSE("--protocol", "ping"), 0, "%s", err);
    cr_assert_eq(o.wl.weight[OP_PING], 1);
    cr_assert_eq(o.wl.weight[OP_GET], 0);
    cr_assert_eq(PARSE("--protocol", "ping", "--preload"), -EINVAL);
    cr_assert_eq(PARSE("--protocol", "ping", "--ratio", "1:1"), -EINVAL);
}

Test(bench_opts, bad_values_are_refused_with_a_message)
{
    const char *bad[][2] = {
        {"--threads", "0"},          {"--threads", "x"},       {"--connections", "-1"},
        {"--pipeline", "0"},         {"--rate", "1q"},         {"--keys", "0"},
        {"--key-dist", "zipf:0"},    {"--key-dist", "pareto"}, {"--value-size", "10-5"},
        {"--value-size", "2000000"}, {"--ratio", "1"},         {"--ratio", "0:0"},
        {"--ratio", "1:a"},          {"--ratio", "1:1:1:1:1"}, {"--multiget", "257"},
        {"--duration", "0"},         {"--warmup", "-1"},       {"--server", "localhost"},
        {"--server", "host:70000"},  {"--protocol", "redis"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *argv[] = {"petrel-bench", (char *)bad[i][0], (char *)bad[i][1], NULL};
        err[0] = '\0';
        cr_assert_eq(bench_opts_parse(&o, 3, argv, err, sizeof(err)), -EINVAL, "%s %s accepted",
                     bad[i][0], bad[i][1]);
        cr_assert_neq(err[0], '\0', "%s %s: no message", bad[i][0], bad[i][1]);
    }
}

Test(bench_opts, unknown_options_and_missing_arguments_are_refused)
{
    cr_assert_eq(PARSE("--frobnicate"), -EINVAL);
    cr_assert(strstr(err, "unknown option") != NULL, "%s", err);
    cr_assert_eq(PARSE("--rate"), -EINVAL);
    cr_assert(strstr(err, "missing argument") != NULL, "%s", err);
    cr_assert_eq(PARSE("stray"), -EINVAL);
}

Test(bench_opts, fewer_connections_than_threads_is_refused)
{
    cr_assert_eq(PARSE("--threads", "4", "--connections", "2"), -EINVAL);
}

Test(bench_opts, tls_and_the_connect_load_are_off_by_default)
{
    cr_assert_eq(PARSE("-c", "4"), 0, "%s", err);
    cr_assert_not(o.tls.enabled);
    cr_assert_null(o.tls.ca);
    cr_assert_not(o.tls.resume);
    cr_assert_eq(o.tls.ciphers[0], 0);
    cr_assert_eq(o.connect_rate, 0);
    cr_assert_eq(o.connect_inflight, 16);
}

Test(bench_opts, every_tls_and_connect_option_is_understood)
{
    cr_assert_eq(PARSE("--tls", "--tls-ca", "/ca.pem", "--tls-cert", "/c.pem", "--tls-key",
                       "/c.key", "--tls-name", "petrel.test", "--tls-ciphers",
                       "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256,"
                       "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
                       "--tls-resume", "--connect-rate", "2k", "--connect-inflight", "4"),
                 0, "%s", err);
    cr_assert(o.tls.enabled && o.tls.resume);
    cr_assert_str_eq(o.tls.ca, "/ca.pem");
    cr_assert_str_eq(o.tls.cert, "/c.pem");
    cr_assert_str_eq(o.tls.key, "/c.key");
    cr_assert_str_eq(o.tls.name, "petrel.test");
    cr_assert_neq(o.tls.ciphers[0], 0);
    cr_assert_neq(o.tls.ciphers[1], 0);
    cr_assert_eq(o.tls.ciphers[2], 0);
    cr_assert_eq(o.connect_rate, 2000);
    cr_assert_eq(o.connect_inflight, 4);
}

Test(bench_opts, the_connect_rate_is_a_rate_or_max)
{
    cr_assert_eq(PARSE("--connect-rate", "max"), 0, "%s", err);
    cr_assert_eq(o.connect_rate, BENCH_CONNECT_MAX);
    cr_assert_eq(PARSE("--connect-rate", "150"), 0, "%s", err);
    cr_assert_eq(o.connect_rate, 150);
    const char *bad[] = {"0", "-5", "fast", "1x", "20m"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(PARSE("--connect-rate", (char *)bad[i]), -EINVAL, "%s accepted", bad[i]);
        cr_assert(strstr(err, "--connect-rate") != NULL, "%s", err);
    }
    cr_assert_eq(PARSE("--connect-rate", "max", "--connect-inflight", "0"), -EINVAL);
    cr_assert(strstr(err, "--connect-inflight") != NULL, "%s", err);
}

Test(bench_opts, zero_connections_leave_the_connect_load_alone)
{
    cr_assert_eq(PARSE("-c", "0", "-t", "4", "--connect-rate", "max"), 0, "%s", err);
    cr_assert_eq(o.connections, 0);
    cr_assert_eq(PARSE("-c", "0"), -EINVAL);
    cr_assert(strstr(err, "--connect-rate") != NULL, "%s", err);
    cr_assert_eq(PARSE("-c", "0", "--connect-rate", "10", "--rate", "100"), -EINVAL);
    cr_assert_eq(PARSE("-c", "0", "--connect-rate", "10", "--preload"), -EINVAL);
}

Test(bench_opts, tls_options_need_tls_and_say_which)
{
    const char *opt[][2] = {
        {"--tls-ca", "/x"},
        {"--tls-name", "n"},
        {"--tls-cert", "/x"},
        {"--tls-key", "/x"},
    };
    for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++) {
        char *argv[] = {"petrel-bench", (char *)opt[i][0], (char *)opt[i][1], NULL};
        cr_assert_eq(bench_opts_parse(&o, 3, argv, err, sizeof(err)), -EINVAL, "%s accepted",
                     opt[i][0]);
        cr_assert(strstr(err, opt[i][0]) != NULL && strstr(err, "--tls") != NULL, "%s", err);
    }
    cr_assert_eq(PARSE("--tls-resume", "--connect-rate", "1"), -EINVAL);
    cr_assert(strstr(err, "--tls-resume needs --tls") != NULL, "%s", err);
}

Test(bench_opts, a_client_certificate_needs_its_key_and_resume_needs_the_connect_load)
{
    cr_assert_eq(PARSE("--tls", "--tls-cert", "/c.pem"), -EINVAL);
    cr_assert(strstr(err, "--tls-key") != NULL, "%s", err);
    cr_assert_eq(PARSE("--tls", "--tls-key", "/c.key"), -EINVAL);
    cr_assert_eq(PARSE("--tls", "--tls-resume"), -EINVAL);
    cr_assert(strstr(err, "--connect-rate") != NULL, "%s", err);
    cr_assert_eq(PARSE("--tls", "--tls-ca", ""), -EINVAL);
    cr_assert(strstr(err, "--tls-ca") != NULL, "%s", err);
}

Test(bench_opts, unknown_cipher_suites_are_refused_by_name)
{
    cr_assert_eq(PARSE("--tls", "--tls-ciphers", "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256,NOPE"),
                 -EINVAL);
    cr_assert(strstr(err, "--tls-ciphers") != NULL && strstr(err, "'NOPE'") != NULL, "%s", err);
    cr_assert_eq(PARSE("--tls", "--tls-ciphers", ""), -EINVAL);
    cr_assert_eq(PARSE("--tls", "--tls-ciphers", "a,,b"), -EINVAL);
}
