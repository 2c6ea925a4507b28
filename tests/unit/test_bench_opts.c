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
        {"--server", "host:70000"},  {"--protocol", "resp"},
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
