/* Unit tests for the config module: command line, config file, precedence, --help, round trip,
 * reload. Uses its own option tables so that product tables can change freely. */
#include "petrel/buf.h"
#include "petrel/config.h"

#include "config_impl.h" /* the module's parts, for their own tests */

#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const levels[] = {"error", "warn", "info", "debug", NULL};

static const struct opt_def server_defs[] = {
    {.name = "port",
     .short_name = 'p',
     .section = "server",
     .type = OPT_UINT,
     .dflt = "11211",
     .help = "TCP port to listen on",
     .min = 1,
     .max = 65535},
    {.name = "listen",
     .short_name = 'l',
     .section = "server",
     .type = OPT_STR,
     .dflt = "0.0.0.0",
     .help = "addresses to listen on"},
    {.name = "threads",
     .short_name = 't',
     .section = "server",
     .type = OPT_UINT,
     .dflt = "4",
     .help = "worker threads",
     .min = 1,
     .max = 256},
    {.name = "pidfile", .section = "server", .type = OPT_STR, .help = "write the pid here"},
};

static const struct opt_def storage_defs[] = {
    {.name = "memory",
     .short_name = 'm',
     .section = "storage",
     .type = OPT_SIZE,
     .dflt = "64",
     .help = "memory for items",
     .min = 1u << 20,
     .max = 64ull << 30,
     .unit = 1u << 20},
    {.name = "item-size",
     .short_name = 'I',
     .section = "storage",
     .type = OPT_SIZE,
     .dflt = "1m",
     .help = "largest item",
     .min = 1u << 10,
     .max = 1u << 30,
     .unit = 1},
};

static const struct opt_def misc_defs[] = {
    {.name = "verbose",
     .short_name = 'v',
     .section = "log",
     .type = OPT_COUNT,
     .dflt = "0",
     .help = "log more",
     .min = 0,
     .max = 3},
    {.name = "log-level",
     .section = "log",
     .type = OPT_ENUM,
     .dflt = "info",
     .help = "least severe level logged",
     .choices = levels,
     .flags = OPT_RELOADABLE},
    {.name = "tls", .section = "tls", .type = OPT_BOOL, .dflt = "no", .help = "enable TLS"},
    {.name = "admin-port",
     .section = "admin",
     .type = OPT_UINT,
     .dflt = "9999",
     .help = "admin port",
     .min = 1,
     .max = 65535},
};

#define NDEFS(a) (sizeof(a) / sizeof((a)[0]))

static const struct opt_table tables[] = {
    {"server", server_defs, NDEFS(server_defs)},
    {"storage", storage_defs, NDEFS(storage_defs)},
    {"misc", misc_defs, NDEFS(misc_defs)},
};
#define NTABLES NDEFS(tables)

static const struct config_product product = {
    .name = "petrel", .version = "0.1.0", .summary = "A test cache server."};

/* Each Criterion test runs in its own process: this state is per test. */
static char err[1024];
static enum config_action action;
static char path[64];

#define ARGV(...) ((char *[]){"petrel", ##__VA_ARGS__, NULL})

static int
parse(struct config **cfg, char **argv)
{
    int argc = 0;
    while (argv[argc] != NULL) {
        argc++;
    }
    return config_parse(cfg, &action, tables, NTABLES, argc, argv, err, sizeof(err));
}

/* Expect the command line to fail with exactly this message. */
static void
expect_usage_error(char **argv, const char *msg)
{
    struct config *cfg = NULL;
    int rc = parse(&cfg, argv);
    cr_assert_eq(rc, -EINVAL, "rc %d, err '%s'", rc, err);
    cr_assert_null(cfg);
    cr_assert_str_eq(err, msg);
    cr_assert_eq(config_exit_status(rc), CONFIG_EX_USAGE);
}

static const char *
write_conf(const char *text)
{
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(path, sizeof(path), "%s/petrel-XXXXXX", dir);
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void
remove_conf(void)
{
    if (path[0] != '\0') {
        unlink(path);
    }
}

/* Expect a config file to fail: message is what follows "path:". */
static void
expect_file_error(const char *text, const char *msg)
{
    struct config *cfg = NULL;
    char want[1200];

    write_conf(text);
    int rc = parse(&cfg, ARGV("--config", path));
    cr_assert_eq(rc, -EBADMSG, "rc %d, err '%s'", rc, err);
    cr_assert_null(cfg);
    snprintf(want, sizeof(want), "%s:%s", path, msg);
    cr_assert_str_eq(err, want);
    cr_assert_eq(config_exit_status(rc), CONFIG_EX_CONFIG);
}

static struct config *
parse_ok(char **argv)
{
    struct config *cfg = NULL;
    int rc = parse(&cfg, argv);
    cr_assert_eq(rc, 0, "rc %d, err '%s'", rc, err);
    cr_assert_not_null(cfg);
    return cfg;
}

TestSuite(config, .fini = remove_conf);

/* ---- command line ---- */

Test(config, defaults_apply_without_arguments)
{
    struct config *cfg = parse_ok(ARGV());
    cr_assert_eq(action, CONFIG_ACTION_RUN);
    cr_assert_eq(config_uint(cfg, "port"), 11211);
    cr_assert_str_eq(config_str(cfg, "listen"), "0.0.0.0");
    cr_assert_str_eq(config_str(cfg, "pidfile"), "");
    cr_assert_eq(config_uint(cfg, "memory"), 64u << 20);
    cr_assert_eq(config_uint(cfg, "item-size"), 1u << 20);
    cr_assert_eq(config_uint(cfg, "verbose"), 0);
    cr_assert_eq(config_enum(cfg, "log-level"), 2);
    cr_assert_eq(config_bool(cfg, "tls"), false);
    cr_assert_null(config_file(cfg));
    config_free(&cfg);
    cr_assert_null(cfg);
}

Test(config, short_option_takes_an_attached_value)
{
    struct config *cfg = parse_ok(ARGV("-p1234"));
    cr_assert_eq(config_uint(cfg, "port"), 1234);
    config_free(&cfg);
}

Test(config, short_option_takes_the_next_argument)
{
    struct config *cfg = parse_ok(ARGV("-p", "1234", "-t", "8"));
    cr_assert_eq(config_uint(cfg, "port"), 1234);
    cr_assert_eq(config_uint(cfg, "threads"), 8);
    config_free(&cfg);
}

Test(config, long_option_takes_a_value_after_equals)
{
    struct config *cfg = parse_ok(ARGV("--port=1234"));
    cr_assert_eq(config_uint(cfg, "port"), 1234);
    config_free(&cfg);
}

Test(config, long_option_takes_the_next_argument)
{
    struct config *cfg = parse_ok(ARGV("--port", "1234"));
    cr_assert_eq(config_uint(cfg, "port"), 1234);
    config_free(&cfg);
}

Test(config, last_occurrence_of_an_option_wins)
{
    struct config *cfg = parse_ok(ARGV("-p", "1", "--port=2"));
    cr_assert_eq(config_uint(cfg, "port"), 2);
    config_free(&cfg);
}

Test(config, each_v_adds_one)
{
    struct config *cfg = parse_ok(ARGV("-vv"));
    cr_assert_eq(config_uint(cfg, "verbose"), 2);
    config_free(&cfg);
    cfg = parse_ok(ARGV("-v", "-p", "5", "-v", "--verbose"));
    cr_assert_eq(config_uint(cfg, "verbose"), 3);
    config_free(&cfg);
}

Test(config, flags_combine_with_a_valued_short_option)
{
    struct config *cfg = parse_ok(ARGV("-vt4"));
    cr_assert_eq(config_uint(cfg, "verbose"), 1);
    cr_assert_eq(config_uint(cfg, "threads"), 4);
    config_free(&cfg);
}

Test(config, long_count_option_takes_a_number)
{
    struct config *cfg = parse_ok(ARGV("--verbose=2"));
    cr_assert_eq(config_uint(cfg, "verbose"), 2);
    config_free(&cfg);
}

Test(config, count_beyond_its_maximum_is_an_error)
{
    expect_usage_error(ARGV("-vvvv"), "--verbose: given more than 3 times");
}

Test(config, bare_size_is_counted_in_the_option_unit)
{
    struct config *cfg = parse_ok(ARGV("-m", "128", "-I", "2097152"));
    cr_assert_eq(config_uint(cfg, "memory"), 128u << 20);
    cr_assert_eq(config_uint(cfg, "item-size"), 2097152);
    config_free(&cfg);
}

Test(config, size_suffixes_are_1024_based_and_case_insensitive)
{
    struct config *cfg = parse_ok(ARGV("-m", "1g", "-I", "1m"));
    cr_assert_eq(config_uint(cfg, "memory"), 1u << 30);
    cr_assert_eq(config_uint(cfg, "item-size"), 1u << 20);
    config_free(&cfg);
    cfg = parse_ok(ARGV("-m", "512M", "-I", "4K"));
    cr_assert_eq(config_uint(cfg, "memory"), 512u << 20);
    cr_assert_eq(config_uint(cfg, "item-size"), 4096);
    config_free(&cfg);
    cfg = parse_ok(ARGV("-m", "2097152b", "-I", "1536b"));
    cr_assert_eq(config_uint(cfg, "memory"), 2u << 20);
    cr_assert_eq(config_uint(cfg, "item-size"), 1536);
    config_free(&cfg);
}

Test(config, size_overflow_is_rejected)
{
    expect_usage_error(ARGV("-m", "99999999999g"),
                       "--memory: '99999999999g' is too large (1m..64g)");
    expect_usage_error(ARGV("-m", "99999999999999"),
                       "--memory: '99999999999999' is too large (1m..64g)");
}

Test(config, size_with_unknown_suffix_is_rejected)
{
    expect_usage_error(ARGV("-m", "12q"), "--memory: '12q' is not a size (a number of MiB, or "
                                          "with a b, k, m or g suffix; 1m..64g)");
    expect_usage_error(ARGV("-I", "1mb"), "--item-size: '1mb' is not a size (a number of bytes, "
                                          "or with a b, k, m or g suffix; 1k..1g)");
}

Test(config, size_below_minimum_is_out_of_range)
{
    expect_usage_error(ARGV("-I", "1000"), "--item-size: '1000' is out of range (1k..1g)");
}

Test(config, number_with_junk_is_rejected)
{
    expect_usage_error(ARGV("--threads=12abc"), "--threads: '12abc' is not a number (1..256)");
    expect_usage_error(ARGV("-t", ""), "--threads: '' is not a number (1..256)");
    expect_usage_error(ARGV("-t", " 4"), "--threads: ' 4' is not a number (1..256)");
}

Test(config, negative_number_is_rejected)
{
    expect_usage_error(ARGV("-t", "-1"), "--threads: '-1' is negative (1..256)");
}

Test(config, number_overflowing_64_bits_is_rejected)
{
    expect_usage_error(ARGV("-t", "99999999999999999999"),
                       "--threads: '99999999999999999999' is too large (1..256)");
}

Test(config, number_out_of_range_names_option_and_range)
{
    expect_usage_error(ARGV("--threads", "0"), "--threads: '0' is out of range (1..256)");
    expect_usage_error(ARGV("-t", "257"), "--threads: '257' is out of range (1..256)");
}

Test(config, enum_accepts_a_choice_in_any_case)
{
    struct config *cfg = parse_ok(ARGV("--log-level=DEBUG"));
    cr_assert_eq(config_enum(cfg, "log-level"), 3);
    config_free(&cfg);
}

Test(config, enum_error_lists_the_choices)
{
    expect_usage_error(ARGV("--log-level", "loud"),
                       "--log-level: 'loud' is not one of: error, warn, info, debug");
}

Test(config, bool_flag_without_value_sets_true)
{
    struct config *cfg = parse_ok(ARGV("--tls"));
    cr_assert(config_bool(cfg, "tls"));
    config_free(&cfg);
}

Test(config, no_prefix_sets_bool_false)
{
    struct config *cfg = parse_ok(ARGV("--tls", "--no-tls"));
    cr_assert_not(config_bool(cfg, "tls"));
    config_free(&cfg);
}

Test(config, bool_takes_yes_no_words_after_equals)
{
    struct config *cfg = parse_ok(ARGV("--tls=on"));
    cr_assert(config_bool(cfg, "tls"));
    config_free(&cfg);
    cfg = parse_ok(ARGV("--tls", "--tls=No"));
    cr_assert_not(config_bool(cfg, "tls"));
    config_free(&cfg);
}

Test(config, bool_with_other_word_is_rejected)
{
    expect_usage_error(ARGV("--tls=maybe"),
                       "--tls: 'maybe' is not a boolean (yes/no, true/false, on/off, 1/0)");
}

Test(config, unknown_long_option_is_named)
{
    expect_usage_error(ARGV("--bogus=3"), "unknown option '--bogus'");
}

Test(config, unknown_short_option_is_named)
{
    expect_usage_error(ARGV("-z"), "unknown option '-z'");
    expect_usage_error(ARGV("-vz"), "unknown option '-z'");
}

Test(config, ambiguous_abbreviation_lists_candidates)
{
    expect_usage_error(ARGV("--t=3"), "option '--t' is ambiguous (--threads, --tls)");
}

Test(config, unique_abbreviation_is_accepted)
{
    struct config *cfg = parse_ok(ARGV("--thr=3"));
    cr_assert_eq(config_uint(cfg, "threads"), 3);
    config_free(&cfg);
}

Test(config, missing_value_names_the_option)
{
    expect_usage_error(ARGV("-p"), "option '--port' needs a value");
    expect_usage_error(ARGV("--port"), "option '--port' needs a value");
    expect_usage_error(ARGV("--config"), "option '--config' needs a value");
}

Test(config, value_given_to_a_plain_flag_is_rejected)
{
    expect_usage_error(ARGV("--no-tls=1"), "option '--no-tls' does not take a value");
    expect_usage_error(ARGV("--check-config=1"), "option '--check-config' does not take a value");
}

Test(config, positional_argument_is_an_error)
{
    expect_usage_error(ARGV("-p", "1", "foo"),
                       "unexpected argument 'foo' (options start with '-')");
    expect_usage_error(ARGV("--", "-p"), "unexpected argument '-p' (options start with '-')");
}

/* -C is memcached's "disable CAS": the config file has only its long form. */
Test(config, short_c_is_not_the_config_file)
{
    expect_usage_error(ARGV("-C", "x.conf"), "unknown option '-C'");
}

static const struct opt_def claims_c_defs[] = {
    {.name = "disable-cas",
     .short_name = 'C',
     .section = "server",
     .type = OPT_BOOL,
     .dflt = "no",
     .help = "no CAS"},
};

Test(config, a_table_may_claim_short_c)
{
    const struct opt_table t[] = {{"cas", claims_c_defs, 1}};
    char *argv[] = {"petrel", "-C", NULL};
    struct config *cfg = NULL;
    cr_assert_eq(config_parse(&cfg, &action, t, 1, 2, argv, err, sizeof(err)), 0, "%s", err);
    cr_assert(config_bool(cfg, "disable-cas"));
    config_free(&cfg);
}

Test(config, config_given_twice_is_an_error)
{
    expect_usage_error(ARGV("--config", "a", "--config=b"),
                       "option '--config' given more than once");
}

Test(config, string_too_long_is_rejected)
{
    static char big[CONFIG_STR_MAX + 2];
    memset(big, 'a', CONFIG_STR_MAX);
    struct config *cfg = parse_ok(ARGV("--pidfile", big));
    cr_assert_eq(strlen(config_str(cfg, "pidfile")), CONFIG_STR_MAX);
    config_free(&cfg);
    big[CONFIG_STR_MAX] = 'a';
    expect_usage_error(ARGV("--pidfile", big),
                       "--pidfile: value is too long (4096 bytes, at most 4095)");
}

Test(config, string_a_file_could_not_hold_is_rejected)
{
    expect_usage_error(ARGV("-l", "a\nb"), "--listen: value contains a control character (byte 2)");
    expect_usage_error(ARGV("-l", "a ;b"), "--listen: value contains a blank followed by ';', "
                                           "which a config file reads as the start of a comment");
    expect_usage_error(ARGV("-l", "a "), "--listen: value starts or ends with a blank, which a "
                                         "config file cannot hold");
}

Test(config, argv_is_left_unchanged)
{
    char **argv = ARGV("-p", "1", "--tls", "-vv");
    char *copy[5];
    memcpy(copy, argv, sizeof(copy));
    struct config *cfg = parse_ok(argv);
    cr_assert_arr_eq(copy, argv, sizeof(copy));
    config_free(&cfg);
}

Test(config, help_and_version_need_no_configuration)
{
    struct config *cfg = NULL;
    cr_assert_eq(parse(&cfg, ARGV("-t", "2", "--help", "--bogus")), 0);
    cr_assert_eq(action, CONFIG_ACTION_HELP);
    cr_assert_null(cfg);
    cr_assert_eq(parse(&cfg, ARGV("--config", "/nonexistent/file", "-V")), 0);
    cr_assert_eq(action, CONFIG_ACTION_VERSION);
    cr_assert_null(cfg);
}

Test(config, print_and_check_build_the_configuration)
{
    struct config *cfg = parse_ok(ARGV("--print-config", "-p", "7"));
    cr_assert_eq(action, CONFIG_ACTION_PRINT);
    cr_assert_eq(config_uint(cfg, "port"), 7);
    config_free(&cfg);
    cfg = parse_ok(ARGV("--check-config"));
    cr_assert_eq(action, CONFIG_ACTION_CHECK);
    config_free(&cfg);
    expect_usage_error(ARGV("--check-config", "--print-config"),
                       "--print-config and --check-config exclude each other");
}

/* ---- config file ---- */

Test(config, file_values_are_loaded)
{
    write_conf("# a comment\n"
               "; another comment\n"
               "[server]\n"
               "port = 1234 ; inline comment\n"
               "threads: 8\n"
               "listen=127.0.0.1\n"
               "\n"
               "[storage]\n"
               "memory = 1g\n"
               "[log]\n"
               "verbose = 2\n"
               "log-level = warn\n"
               "[tls]\n"
               "tls = yes\n");
    struct config *cfg = parse_ok(ARGV("--config", path));
    cr_assert_eq(config_uint(cfg, "port"), 1234);
    cr_assert_eq(config_uint(cfg, "threads"), 8);
    cr_assert_str_eq(config_str(cfg, "listen"), "127.0.0.1");
    cr_assert_eq(config_uint(cfg, "memory"), 1u << 30);
    cr_assert_eq(config_uint(cfg, "verbose"), 2);
    cr_assert_eq(config_enum(cfg, "log-level"), 1);
    cr_assert(config_bool(cfg, "tls"));
    cr_assert_str_eq(config_file(cfg), path);
    config_free(&cfg);
}

Test(config, hash_after_a_value_is_part_of_the_value)
{
    write_conf("[server]\nlisten = a # b\n");
    struct config *cfg = parse_ok(ARGV("--config", path));
    cr_assert_str_eq(config_str(cfg, "listen"), "a # b");
    config_free(&cfg);
}

Test(config, file_may_start_with_a_utf8_bom)
{
    write_conf("\xef\xbb\xbf[server]\nport = 3\n");
    struct config *cfg = parse_ok(ARGV("--config", path));
    cr_assert_eq(config_uint(cfg, "port"), 3);
    config_free(&cfg);
}

Test(config, command_line_overrides_the_file_wherever_C_appears)
{
    write_conf("[server]\nport = 1\nthreads = 8\n");
    struct config *cfg = parse_ok(ARGV("-p", "2", "--config", path));
    cr_assert_eq(config_uint(cfg, "port"), 2);
    cr_assert_eq(config_uint(cfg, "threads"), 8);
    config_free(&cfg);
    cfg = parse_ok(ARGV("--config", path, "-p", "3"));
    cr_assert_eq(config_uint(cfg, "port"), 3);
    config_free(&cfg);
}

Test(config, command_line_count_replaces_the_file_count)
{
    write_conf("[log]\nverbose = 3\n");
    struct config *cfg = parse_ok(ARGV("--config", path, "-v"));
    cr_assert_eq(config_uint(cfg, "verbose"), 1);
    config_free(&cfg);
}

Test(config, file_value_out_of_range_names_file_line_and_option)
{
    expect_file_error("# threads\n[server]\nport = 1\nthreads = 0\n",
                      "4: threads: '0' is out of range (1..256)");
}

Test(config, file_unknown_section_is_an_error)
{
    expect_file_error("[server]\n[bogus]\n",
                      "2: unknown section [bogus] (sections: server, storage, admin, tls, log)");
}

Test(config, file_unknown_key_is_an_error)
{
    expect_file_error("[server]\ntreads = 4\n", "2: unknown option 'treads' in [server]");
}

Test(config, file_key_in_the_wrong_section_is_an_error)
{
    expect_file_error("[server]\nport = 1\nmemory = 1g\n",
                      "3: option 'memory' belongs in [storage], not [server]");
}

Test(config, file_key_before_any_section_is_an_error)
{
    expect_file_error("port = 1\n", "1: option 'port' is outside any section; it belongs in "
                                    "[server]");
}

Test(config, file_duplicate_key_is_an_error)
{
    expect_file_error("[server]\nport = 1\n[storage]\n[server]\nport = 2\n",
                      "5: duplicate option 'port' (first set on line 2)");
}

Test(config, file_line_without_equals_is_a_syntax_error)
{
    expect_file_error("[server]\nport = 1\nthreads 4\n",
                      "3: expected 'key = value', '[section]' or a comment");
}

Test(config, file_section_without_bracket_is_a_syntax_error)
{
    expect_file_error("[server\nport = 1\n", "1: section header without a closing ']'");
}

Test(config, syntax_error_before_a_later_error_is_the_one_reported)
{
    expect_file_error("[server]\nport 1\ntreads = 4\n",
                      "2: expected 'key = value', '[section]' or a comment");
}

Test(config, file_indented_continuation_line_is_an_error)
{
    expect_file_error("[server]\nport = 1\n  threads = 4\n",
                      "3: indented line continues the value of 'port'; multi-line values are "
                      "not supported (do not indent keys)");
}

Test(config, file_bad_bool_names_the_line)
{
    expect_file_error("[tls]\ntls = maybe\n",
                      "2: tls: 'maybe' is not a boolean (yes/no, true/false, on/off, 1/0)");
}

Test(config, file_line_longer_than_the_limit_is_an_error)
{
    static char text[8200];
    int n = snprintf(text, sizeof(text), "[server]\nlisten = ");
    memset(text + n, 'x', 8000);
    text[n + 8000] = '\n';
    write_conf(text);
    struct config *cfg = NULL;
    int rc = parse(&cfg, ARGV("--config", path));
    cr_assert_eq(rc, -EBADMSG);
    cr_assert(strstr(err, ":2: line is too long (at most ") != NULL, "err '%s'", err);
}

Test(config, file_with_a_nul_byte_is_an_error)
{
    write_conf("[server]\nport = 1\n");
    FILE *f = fopen(path, "a");
    fwrite("x\0y = 1\n", 1, 8, f);
    fclose(f);
    struct config *cfg = NULL;
    cr_assert_eq(parse(&cfg, ARGV("--config", path)), -EBADMSG);
    char want[128];
    snprintf(want, sizeof(want), "%s:3: contains a NUL byte", path);
    cr_assert_str_eq(err, want);
}

Test(config, missing_file_is_a_config_error)
{
    struct config *cfg = NULL;
    int rc = parse(&cfg, ARGV("--config", "/nonexistent/petrel.conf"));
    cr_assert_eq(rc, -ENOENT);
    cr_assert_str_eq(err, "/nonexistent/petrel.conf: cannot open: No such file or directory");
    cr_assert_eq(config_exit_status(rc), CONFIG_EX_CONFIG);
}

Test(config, directory_as_file_is_a_config_error)
{
    struct config *cfg = NULL;
    int rc = parse(&cfg, ARGV("--config", "/"));
    cr_assert_eq(rc, -EISDIR);
    cr_assert_eq(config_exit_status(rc), CONFIG_EX_CONFIG);
}

/* ---- output: --help, --print-config, iteration ---- */

Test(config, help_lists_every_option)
{
    struct buf b;
    buf_init(&b, 1024, 1u << 20);
    cr_assert_eq(config_help(&b, &product, tables, NTABLES), 0);
    cr_assert_eq(buf_puts(&b, ""), 0);
    cr_assert_eq(buf_append(&b, "", 1), 0);
    const char *text = buf_rptr(&b);
    for (size_t t = 0; t < NTABLES; t++) {
        for (size_t i = 0; i < tables[t].n; i++) {
            const struct opt_def *d = &tables[t].defs[i];
            char flag[80];
            snprintf(flag, sizeof(flag), "%s%s", d->type == OPT_BOOL ? "--[no-]" : "--", d->name);
            cr_assert(strstr(text, flag) != NULL, "%s missing from:\n%s", flag, text);
            cr_assert(strstr(text, d->help) != NULL, "help of %s missing", d->name);
        }
    }
    cr_assert(strstr(text, "Usage: petrel [OPTION]...\nA test cache server.\n") == text);
    cr_assert(strstr(text, "  -p, --port=NUM              TCP port to listen on (default: "
                           "11211)\n") != NULL,
              "%s", text);
    cr_assert(
        strstr(text,
               "      --log-level=WORD        least severe level logged (one of: error, warn,\n"
               "                              info, debug; default: info)\n") != NULL);
    cr_assert(strstr(text, "memory for items (a bare number counts MiB;") != NULL);
    cr_assert(strstr(text, "--print-config") != NULL && strstr(text, "--check-config") != NULL);
    buf_free(&b);
}

Test(config, help_lines_fit_in_80_columns)
{
    struct buf b;
    buf_init(&b, 1024, 1u << 20);
    cr_assert_eq(config_help(&b, &product, tables, NTABLES), 0);
    cr_assert_eq(buf_append(&b, "", 1), 0);
    for (char *line = buf_rptr(&b); *line != '\0';) {
        size_t n = strcspn(line, "\n");
        cr_assert_leq(n, 79, "too long: %.*s", (int)n, line);
        line += n + (line[n] == '\n');
    }
    buf_free(&b);
}

static int
count_visit(void *arg, const struct opt_def *def, const char *value)
{
    struct buf *b = arg;
    return buf_printf(b, "%s=%s;", def->name, value);
}

Test(config, foreach_visits_every_option_with_its_text)
{
    struct config *cfg = parse_ok(ARGV("-m", "1536k", "--tls", "-vv"));
    struct buf b;
    buf_init(&b, 256, 1u << 16);
    cr_assert_eq(config_foreach(cfg, count_visit, &b), 0);
    cr_assert_eq(buf_append(&b, "", 1), 0);
    cr_assert_str_eq(buf_rptr(&b), "port=11211;listen=0.0.0.0;threads=4;pidfile=;memory=1536k;"
                                   "item-size=1m;verbose=2;log-level=info;tls=yes;"
                                   "admin-port=9999;");
    buf_free(&b);
    config_free(&cfg);
}

Test(config, format_value_reports_unknown_names_and_short_buffers)
{
    struct config *cfg = parse_ok(ARGV("-I", "1536b"));
    char text[8];
    cr_assert_eq(config_format_value(cfg, "item-size", text, sizeof(text)), 5);
    cr_assert_str_eq(text, "1536b");
    cr_assert_eq(config_format_value(cfg, "nope", text, sizeof(text)), -ENOENT);
    cr_assert_eq(config_format_value(cfg, "listen", text, 4), -ENOSPC);
    config_free(&cfg);
}

Test(config, print_config_output_loads_back_to_the_same_configuration)
{
    struct config *a = parse_ok(ARGV("-p", "1", "-l", "10.0.0.1:11211, [::1]:11211 #x", "-t", "32",
                                     "--pidfile=/run/p;q.pid", "-m", "3g", "-I", "1536b", "-vvv",
                                     "--log-level=error", "--tls", "--admin-port=2"));
    struct buf b;
    buf_init(&b, 1024, 1u << 20);
    cr_assert_eq(config_print(&b, a), 0);
    cr_assert_eq(buf_append(&b, "", 1), 0);
    cr_assert(strstr(buf_rptr(&b), "\n[storage]\n") != NULL);
    write_conf(buf_rptr(&b));
    struct config *c = parse_ok(ARGV("--config", path));
    cr_assert_eq(config_diff(a, c, NULL, NULL), 0, "printed:\n%s", buf_rptr(&b));
    cr_assert_str_eq(config_str(c, "listen"), "10.0.0.1:11211, [::1]:11211 #x");
    buf_free(&b);
    config_free(&a);
    config_free(&c);
}

Test(config, print_config_of_defaults_loads_back)
{
    struct config *a = parse_ok(ARGV());
    struct buf b;
    buf_init(&b, 1024, 1u << 20);
    cr_assert_eq(config_print(&b, a), 0);
    cr_assert_eq(buf_append(&b, "", 1), 0);
    cr_assert(strstr(buf_rptr(&b), "\npidfile =\n") != NULL, "%s", buf_rptr(&b));
    write_conf(buf_rptr(&b));
    struct config *c = parse_ok(ARGV("--config", path));
    cr_assert_eq(config_diff(a, c, NULL, NULL), 0);
    buf_free(&b);
    config_free(&a);
    config_free(&c);
}

/* ---- getters ---- */

Test(config, getter_aborts_on_an_undeclared_name, .signal = SIGABRT)
{
    struct config *cfg = parse_ok(ARGV());
    cr_redirect_stderr();
    config_uint(cfg, "nope");
}

Test(config, getter_aborts_on_a_type_mismatch, .signal = SIGABRT)
{
    struct config *cfg = parse_ok(ARGV());
    cr_redirect_stderr();
    config_bool(cfg, "port");
}

Test(config, uint_getter_reads_sizes_and_counts)
{
    struct config *cfg = parse_ok(ARGV("-v"));
    cr_assert_eq(config_uint(cfg, "verbose"), 1);
    cr_assert_eq(config_uint(cfg, "memory"), 64u << 20);
    config_free(&cfg);
}

/* ---- table mistakes are programming errors ---- */

static const struct opt_def dup_defs[] = {
    {.name = "port", .section = "server", .type = OPT_UINT, .dflt = "1", .help = "x"},
    {.name = "port", .section = "admin", .type = OPT_UINT, .dflt = "1", .help = "y"},
};

Test(config, duplicate_option_name_aborts, .signal = SIGABRT)
{
    struct opt_table t = {"dup", dup_defs, 2};
    struct config *cfg = NULL;
    cr_redirect_stderr();
    config_parse(&cfg, &action, &t, 1, 1, ARGV(), err, sizeof(err));
}

static const struct opt_def bad_default_defs[] = {
    {.name = "threads",
     .section = "server",
     .type = OPT_UINT,
     .dflt = "0",
     .help = "x",
     .min = 1,
     .max = 8},
};

Test(config, default_outside_its_range_aborts, .signal = SIGABRT)
{
    struct opt_table t = {"bad", bad_default_defs, 1};
    struct config *cfg = NULL;
    cr_redirect_stderr();
    config_parse(&cfg, &action, &t, 1, 1, ARGV(), err, sizeof(err));
}

/* ---- reload ---- */

Test(config, reload_reads_the_file_again_and_keeps_command_line_values)
{
    write_conf("[server]\nport = 5\nthreads = 3\n[log]\nlog-level = debug\n");
    struct config *old = parse_ok(ARGV("--config", path, "-p", "9", "-v"));
    FILE *f = fopen(path, "w");
    fputs("[server]\nport = 6\nthreads = 7\n", f);
    fclose(f);
    struct config *next = NULL;
    cr_assert_eq(config_reload(old, &next, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(config_uint(next, "threads"), 7);
    cr_assert_eq(config_uint(next, "port"), 9);
    cr_assert_eq(config_uint(next, "verbose"), 1);
    cr_assert_eq(config_enum(next, "log-level"), 2);
    cr_assert_eq(config_uint(old, "threads"), 3);
    cr_assert_str_eq(config_file(next), path);
    config_free(&old);
    config_free(&next);
}

Test(config, reload_of_a_bad_file_fails_and_leaves_the_old_configuration)
{
    write_conf("[server]\nthreads = 2\n");
    struct config *old = parse_ok(ARGV("--config", path));
    FILE *f = fopen(path, "w");
    fputs("[server]\nthreads = 2\nthreads = 3\n", f);
    fclose(f);
    struct config *next = NULL;
    int rc = config_reload(old, &next, err, sizeof(err));
    cr_assert_eq(rc, -EBADMSG);
    cr_assert_null(next);
    char want[256];
    snprintf(want, sizeof(want), "%s:3: duplicate option 'threads' (first set on line 2)", path);
    cr_assert_str_eq(err, want);
    cr_assert_eq(config_uint(old, "threads"), 2);
    config_free(&old);
}

Test(config, reload_without_a_file_gives_the_same_configuration)
{
    struct config *old = parse_ok(ARGV("-t", "5"));
    struct config *next = NULL;
    cr_assert_eq(config_reload(old, &next, err, sizeof(err)), 0);
    cr_assert_eq(config_diff(old, next, NULL, NULL), 0);
    cr_assert_eq(config_uint(next, "threads"), 5);
    config_free(&old);
    config_free(&next);
}

struct seen {
    char text[512];
    size_t n;
};

static void
record_diff(void *arg, const struct opt_def *def, const char *old_value, const char *new_value)
{
    struct seen *s = arg;
    s->n += (size_t)snprintf(s->text + s->n, sizeof(s->text) - s->n, "%s:%s->%s;", def->name,
                             old_value, new_value);
}

Test(config, diff_names_each_changed_option)
{
    struct config *a = parse_ok(ARGV("-t", "2"));
    struct config *b = parse_ok(ARGV("-t", "3", "--log-level=warn"));
    struct seen s = {.n = 0};
    cr_assert_eq(config_diff(a, b, record_diff, &s), 2);
    cr_assert_str_eq(s.text, "threads:2->3;log-level:info->warn;");
    config_free(&a);
    config_free(&b);
}

Test(config, keep_fixed_puts_back_options_that_cannot_be_reloaded)
{
    struct config *old = parse_ok(ARGV("-t", "2"));
    struct config *next = parse_ok(ARGV("-t", "3", "-l", "x", "--log-level=warn"));
    struct seen s = {.n = 0};
    cr_assert_eq(config_keep_fixed(next, old, record_diff, &s), 2);
    cr_assert_str_eq(s.text, "listen:0.0.0.0->x;threads:2->3;");
    cr_assert_eq(config_uint(next, "threads"), 2);
    cr_assert_str_eq(config_str(next, "listen"), "0.0.0.0");
    cr_assert_eq(config_enum(next, "log-level"), 1);
    config_free(&old);
    config_free(&next);
}

/* ---- config_load: printing and exit statuses ---- */

static int
load(char **argv, struct config **cfg)
{
    int argc = 0;
    while (argv[argc] != NULL) {
        argc++;
    }
    return config_load(cfg, &product, tables, NTABLES, argc, argv);
}

Test(config, load_returns_run_with_a_configuration)
{
    struct config *cfg = NULL;
    cr_assert_eq(load(ARGV("-t", "3"), &cfg), CONFIG_RUN);
    cr_assert_eq(config_uint(cfg, "threads"), 3);
    config_free(&cfg);
}

Test(config, load_reports_a_usage_error_with_status_64)
{
    struct config *cfg = NULL;
    cr_redirect_stderr();
    cr_assert_eq(load(ARGV("--threads", "0"), &cfg), CONFIG_EX_USAGE);
    cr_assert_null(cfg);
    fflush(stderr);
    cr_assert_stderr_eq_str("petrel: --threads: '0' is out of range (1..256)\n"
                            "Try 'petrel --help' for the list of options.\n");
}

Test(config, load_reports_a_file_error_with_status_78)
{
    struct config *cfg = NULL;
    char want[256];
    write_conf("[server]\n\nthreads = 0\n");
    snprintf(want, sizeof(want), "petrel: %s:3: threads: '0' is out of range (1..256)\n", path);
    cr_redirect_stderr();
    cr_assert_eq(load(ARGV("--config", path), &cfg), CONFIG_EX_CONFIG);
    fflush(stderr);
    cr_assert_stderr_eq_str(want);
}

Test(config, load_prints_the_version)
{
    struct config *cfg = NULL;
    cr_redirect_stdout();
    cr_assert_eq(load(ARGV("--version"), &cfg), 0);
    cr_assert_null(cfg);
    fflush(stdout);
    cr_assert_stdout_eq_str("petrel 0.1.0\n");
}

Test(config, check_config_prints_ok_and_exits_0)
{
    struct config *cfg = NULL;
    write_conf("[server]\nport = 2\n");
    cr_redirect_stdout();
    cr_assert_eq(load(ARGV("--check-config", "--config", path), &cfg), 0);
    cr_assert_null(cfg);
    fflush(stdout);
    cr_assert_stdout_eq_str("configuration OK\n");
}

Test(config, check_config_of_a_bad_file_exits_78)
{
    struct config *cfg = NULL;
    write_conf("[server]\nport = 0\n");
    cr_redirect_stdout();
    cr_redirect_stderr();
    cr_assert_eq(load(ARGV("--check-config", "--config", path), &cfg), CONFIG_EX_CONFIG);
    fflush(stdout);
    cr_assert_stdout_eq_str("");
}

/* ---- the split-out parts, through the private header ---- */

Test(config_values, a_size_formats_with_its_largest_exact_suffix_and_reads_back)
{
    const struct opt_def *d = &storage_defs[1]; /* item-size: bytes */
    struct value v = {0}, back = {0};
    char why[256], text[64];

    cr_assert_eq(value_parse(d, "1536k", &v, why, sizeof(why)), 0, "%s", why);
    cr_assert_eq(v.u, 1536u << 10);
    cr_assert_eq(value_format(d, &v, text, sizeof(text)), 5);
    cr_assert_str_eq(text, "1536k");
    cr_assert_eq(value_parse(d, text, &back, why, sizeof(why)), 0);
    cr_assert(value_equal(d, &v, &back));
}

Test(config_values, a_bare_number_counts_the_unit)
{
    struct value v = {0};
    char why[256];
    cr_assert_eq(value_parse(&storage_defs[0], "64", &v, why, sizeof(why)), 0);
    cr_assert_eq(v.u, 64u << 20);
}

Test(config_values, a_negative_number_is_refused_saying_so)
{
    struct value v = {0};
    char why[256];
    cr_assert_eq(value_parse(&server_defs[0], "-1", &v, why, sizeof(why)), -EINVAL);
    cr_assert_str_eq(why, "'-1' is negative (1..65535)");
}

Test(config_values, format_reports_a_short_buffer)
{
    struct value v = {.u = 11211};
    char text[3];
    cr_assert_eq(value_format(&server_defs[0], &v, text, sizeof(text)), -ENOSPC);
}

Test(config_values, a_copied_string_is_independent)
{
    const struct opt_def *d = &server_defs[1]; /* listen: OPT_STR */
    struct value a = {0}, b = {0};
    char why[64];
    cr_assert_eq(value_parse(d, "x", &a, why, sizeof(why)), 0);
    cr_assert_eq(value_parse(d, "y", &b, why, sizeof(why)), 0);
    cr_assert_eq(value_copy(d, &b, &a), 0);
    cr_assert_neq(a.s, b.s);
    cr_assert(value_equal(d, &a, &b));
    free(a.s);
    free(b.s);
}

Test(config_values, a_counter_without_a_default_defaults_to_zero)
{
    const struct opt_def d = {.name = "v", .section = "log", .type = OPT_COUNT, .help = "x"};
    cr_assert_str_eq(opt_default(&d), "0");
}

Test(config_values, a_long_quote_is_cut_with_an_ellipsis)
{
    char long_text[200], q[QUOTE_MAX + 4];
    memset(long_text, 'a', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    config_quote(long_text, q, sizeof(q));
    cr_assert_eq(strlen(q), QUOTE_MAX);
    cr_assert_str_eq(q + QUOTE_MAX - 3, "...");
}

Test(config_file_part, file_load_sets_values_with_their_line)
{
    struct config *cfg = parse_ok(ARGV());
    write_conf("[server]\n\nthreads = 6\n");
    cr_assert_eq(file_load(cfg, path, err, sizeof(err)), 0, "%s", err);
    struct slot *s = config_find_slot(cfg, "threads");
    cr_assert_eq(s->val.u, 6);
    cr_assert_eq(s->src, SRC_FILE);
    cr_assert_eq(s->file_line, 3);
    config_free(&cfg);
    remove_conf();
}

Test(config_cli_part, cli_build_generates_short_flags_and_no_forms)
{
    struct config *cfg = parse_ok(ARGV());
    struct cli c;
    cr_assert_eq(cli_build(&c, cfg, NULL), 0);
    cr_assert_not_null(strstr(c.optstring, "p:"));
    cr_assert_not_null(strstr(c.optstring, "v"));
    cr_assert_null(strchr(c.optstring, 'C'));
    bool no_tls = false;
    for (size_t i = 0; i < c.nlong; i++) {
        no_tls |= strcmp(c.longopts[i].name, "no-tls") == 0;
    }
    cr_assert(no_tls);
    cli_free(&c, cfg->n);
    config_free(&cfg);
}

/* ---- a list option grows on the command line ---- */

static const struct opt_def list_defs[] = {
    {.name = "listen",
     .short_name = 'l',
     .section = "server",
     .type = OPT_STR,
     .dflt = "",
     .flags = OPT_LIST,
     .help = "addresses"},
};

static struct config *
parse_list(char **argv)
{
    const struct opt_table t[] = {{"list", list_defs, 1}};
    int argc = 0;
    struct config *cfg = NULL;
    while (argv[argc] != NULL) {
        argc++;
    }
    cr_assert_eq(config_parse(&cfg, &action, t, 1, argc, argv, err, sizeof(err)), 0, "%s", err);
    return cfg;
}

Test(config, a_list_option_given_twice_holds_both)
{
    struct config *cfg = parse_list(ARGV("-l", "127.0.0.1", "--listen=::1"));
    cr_assert_str_eq(config_str(cfg, "listen"), "127.0.0.1,::1");
    config_free(&cfg);
}

Test(config, a_list_option_takes_an_element_once)
{
    struct config *cfg = parse_list(ARGV("-l", "a,b", "-l", "b", "-l", "a"));
    cr_assert_str_eq(config_str(cfg, "listen"), "a,b");
    config_free(&cfg);
}

Test(config, a_plain_string_option_given_twice_keeps_the_last)
{
    struct config *cfg = parse_ok(ARGV("-l", "a", "-l", "b"));
    cr_assert_str_eq(config_str(cfg, "listen"), "b");
    config_free(&cfg);
}

static const struct opt_def list_uint_defs[] = {
    {.name = "n",
     .section = "server",
     .type = OPT_UINT,
     .dflt = "1",
     .flags = OPT_LIST,
     .help = "x"},
};

Test(config, a_list_that_is_not_a_string_aborts, .signal = SIGABRT)
{
    struct opt_table t = {"bad", list_uint_defs, 1};
    struct config *cfg = NULL;
    cr_redirect_stderr();
    config_parse(&cfg, &action, &t, 1, 1, ARGV(), err, sizeof(err));
}

/* ---- the flags and -o keys of the server a product stands in for ---- */

/* "0".."3" -> log-level words; "9" is a value the product cannot honour. */
static int
level_of(const char *in, char *out, size_t outlen, char *why, size_t whylen)
{
    if (strcmp(in, "9") == 0) {
        snprintf(why, whylen, "'9': cannot");
        return -ENOTSUP;
    }
    if (strlen(in) != 1 || in[0] < '0' || in[0] > '3') {
        snprintf(why, whylen, "'%s' is not 0-3", in);
        return -EINVAL;
    }
    snprintf(out, outlen, "%s", levels[in[0] - '0']);
    return 0;
}

static const struct opt_compat test_flags[] = {
    {'c', "conn", COMPAT_SET, COMPAT_ARG_REQUIRED, .option = "threads"},
    {0, "quiet", COMPAT_SET, COMPAT_ARG_NONE, .option = "log-level", .value = "error"},
    {'B', "proto", COMPAT_SAME, COMPAT_ARG_REQUIRED, .convert = level_of},
    {'f', "factor", COMPAT_IGNORE, COMPAT_ARG_REQUIRED, .why = "no slabs here"},
    {'D', NULL, COMPAT_REFUSE, COMPAT_ARG_REQUIRED, .why = "no prefix statistics"},
    {'C', "disable-cas", COMPAT_REFUSE, COMPAT_ARG_NONE, .why = "not yet"},
    {0},
};

static const struct opt_compat test_keys[] = {
    {0, "workers", COMPAT_SET, COMPAT_ARG_REQUIRED, .option = "threads"},
    {0, "level", COMPAT_SET, COMPAT_ARG_REQUIRED, .option = "log-level", .convert = level_of},
    {0, "fast", COMPAT_SAME, COMPAT_ARG_NONE, .why = "always fast"},
    {0, "hashpower", COMPAT_IGNORE, COMPAT_ARG_REQUIRED, .why = "sized itself"},
    {0, "ttl_class", COMPAT_REFUSE, COMPAT_ARG_REQUIRED, .why = "no such class"},
    {0},
};

static const struct config_product compat_product = {
    .name = "petrel",
    .version = "0.1.0",
    .compat_flags = test_flags,
    .extended = test_keys,
};

static int
parse_compat(struct config **cfg, char **argv)
{
    int argc = 0;
    while (argv[argc] != NULL) {
        argc++;
    }
    return config_parse_product(cfg, &action, &compat_product, tables, NTABLES, argc, argv, err,
                                sizeof(err));
}

static struct config *
compat_ok(char **argv)
{
    struct config *cfg = NULL;
    int rc = parse_compat(&cfg, argv);
    cr_assert_eq(rc, 0, "rc %d, err '%s'", rc, err);
    return cfg;
}

static void
expect_compat_error(char **argv, int want_rc, const char *msg)
{
    struct config *cfg = NULL;
    int rc = parse_compat(&cfg, argv);
    cr_assert_eq(rc, want_rc, "rc %d, err '%s'", rc, err);
    cr_assert_null(cfg);
    cr_assert_str_eq(err, msg);
    cr_assert_eq(config_exit_status(rc), CONFIG_EX_USAGE);
}

Test(config_compat, a_long_alias_sets_the_option)
{
    struct config *cfg = compat_ok(ARGV("--conn=7"));
    cr_assert_eq(config_uint(cfg, "threads"), 7);
    config_free(&cfg);
}

Test(config_compat, a_short_alias_sets_the_option)
{
    struct config *cfg = compat_ok(ARGV("-c", "5"));
    cr_assert_eq(config_uint(cfg, "threads"), 5);
    config_free(&cfg);
}

Test(config_compat, an_alias_value_is_checked_as_the_option_and_names_the_alias)
{
    expect_compat_error(ARGV("--conn=0"), -EINVAL, "-c/--conn: '0' is out of range (1..256)");
}

Test(config_compat, an_alias_without_its_value_is_named)
{
    expect_compat_error(ARGV("-c"), -EINVAL, "option '-c/--conn' needs a value");
}

Test(config_compat, a_flag_alias_sets_its_fixed_value)
{
    struct config *cfg = compat_ok(ARGV("--quiet"));
    cr_assert_eq(config_enum(cfg, "log-level"), 0);
    config_free(&cfg);
}

Test(config_compat, the_last_of_an_alias_and_its_option_wins)
{
    struct config *cfg = compat_ok(ARGV("-c", "5", "-t", "6"));
    cr_assert_eq(config_uint(cfg, "threads"), 6);
    config_free(&cfg);
    cfg = compat_ok(ARGV("-t", "6", "-c", "5"));
    cr_assert_eq(config_uint(cfg, "threads"), 5);
    config_free(&cfg);
}

Test(config_compat, a_same_flag_accepts_what_its_check_accepts)
{
    struct config *cfg = compat_ok(ARGV("-B", "2"));
    cr_assert_str_eq(config_notices(cfg), "");
    config_free(&cfg);
}

Test(config_compat, a_same_flag_refuses_what_its_check_refuses)
{
    expect_compat_error(ARGV("-B", "7"), -EINVAL, "-B/--proto: '7' is not 0-3");
    expect_compat_error(ARGV("--proto=9"), -ENOTSUP, "-B/--proto: '9': cannot");
}

Test(config_compat, an_ignored_flag_is_accepted_with_a_notice)
{
    struct config *cfg = compat_ok(ARGV("-f", "1.25", "-o", "hashpower=20"));
    cr_assert_str_eq(config_notices(cfg), "-f/--factor: accepted, no effect: no slabs here\n"
                                          "-o hashpower: accepted, no effect: sized itself\n");
    config_free(&cfg);
}

Test(config_compat, a_refused_flag_names_itself_and_why)
{
    expect_compat_error(ARGV("-D", ":"), -ENOTSUP, "-D: no prefix statistics");
    expect_compat_error(ARGV("--disable-cas"), -ENOTSUP, "-C/--disable-cas: not yet");
}

static const struct opt_compat cas_refused[] = {
    {'C', "disable-cas", COMPAT_REFUSE, COMPAT_ARG_NONE, .why = "not yet"},
    {0},
};

Test(config_compat, a_table_option_overrides_a_refusal)
{
    const struct opt_table t[] = {{"cas", claims_c_defs, 1}};
    const struct config_product p = {.name = "petrel", .compat_flags = cas_refused};
    char *argv[] = {"petrel", "-C", NULL};
    struct config *cfg = NULL;
    int rc = config_parse_product(&cfg, &action, &p, t, 1, 2, argv, err, sizeof(err));
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(config_bool(cfg, "disable-cas"));
    config_free(&cfg);
}

static const struct opt_def claims_f_defs[] = {
    {.name = "fill",
     .short_name = 'f',
     .section = "server",
     .type = OPT_BOOL,
     .dflt = "no",
     .help = "x"},
};

Test(config_compat, an_alias_that_clashes_with_a_table_aborts, .signal = SIGABRT)
{
    const struct opt_table t[] = {{"f", claims_f_defs, 1}};
    struct config *cfg = NULL;
    cr_redirect_stderr();
    config_parse_product(&cfg, &action, &compat_product, t, 1, 1, ARGV(), err, sizeof(err));
}

static const struct opt_compat bad_alias[] = {
    {0, "nowhere", COMPAT_SET, COMPAT_ARG_REQUIRED, .option = "no-such-option"},
    {0},
};

Test(config_compat, an_alias_of_an_undeclared_option_aborts, .signal = SIGABRT)
{
    const struct config_product p = {.name = "petrel", .compat_flags = bad_alias};
    struct config *cfg = NULL;
    cr_redirect_stderr();
    config_parse_product(&cfg, &action, &p, tables, NTABLES, 1, ARGV(), err, sizeof(err));
}

Test(config_compat, extended_keys_set_options_in_order)
{
    struct config *cfg = compat_ok(ARGV("-o", "workers=3,level=3", "--extended=workers=4"));
    cr_assert_eq(config_uint(cfg, "threads"), 4);
    cr_assert_eq(config_enum(cfg, "log-level"), 3);
    config_free(&cfg);
}

Test(config_compat, an_extended_value_is_converted)
{
    struct config *cfg = compat_ok(ARGV("-o", "level=1"));
    cr_assert_eq(config_enum(cfg, "log-level"), 1);
    config_free(&cfg);
}

Test(config_compat, an_extended_key_names_itself_in_errors)
{
    expect_compat_error(ARGV("-o", "workers=0"), -EINVAL,
                        "-o workers: '0' is out of range (1..256)");
    expect_compat_error(ARGV("-o", "level=5"), -EINVAL, "-o level: '5' is not 0-3");
    expect_compat_error(ARGV("-o", "fast,ttl_class=5"), -ENOTSUP, "-o ttl_class: no such class");
}

Test(config_compat, an_unknown_extended_key_is_named)
{
    expect_compat_error(ARGV("-o", "fast,nosuch=1"), -EINVAL,
                        "-o: unknown extended option 'nosuch'");
}

Test(config_compat, an_extended_key_without_its_value_is_an_error)
{
    expect_compat_error(ARGV("-o", "workers"), -EINVAL,
                        "-o workers: needs a value (workers=VALUE)");
}

Test(config_compat, an_empty_extended_item_is_an_error)
{
    expect_compat_error(ARGV("-o", "fast,,fast"), -EINVAL, "-o: an empty option in 'fast,,fast'");
    expect_compat_error(ARGV("-o", ""), -EINVAL, "-o: an empty option in ''");
}

Test(config_compat, a_value_given_to_a_flag_key_is_ignored_as_memcached_does)
{
    struct config *cfg = compat_ok(ARGV("-o", "fast=1"));
    config_free(&cfg);
}

Test(config_compat, without_extended_keys_there_is_no_o)
{
    expect_usage_error(ARGV("-o", "fast"), "unknown option '-o'");
}

Test(config_compat, reload_keeps_what_the_command_line_set_through_aliases)
{
    write_conf("[server]\nthreads = 2\n");
    struct config *old = compat_ok(ARGV("--config", path, "-o", "workers=9"));
    cr_assert_eq(config_uint(old, "threads"), 9);
    struct config *next = NULL;
    cr_assert_eq(config_reload(old, &next, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(config_uint(next, "threads"), 9);
    config_free(&old);
    config_free(&next);
}

static int
load_compat(char **argv, struct config **cfg)
{
    int argc = 0;
    while (argv[argc] != NULL) {
        argc++;
    }
    return config_load(cfg, &compat_product, tables, NTABLES, argc, argv);
}

Test(config_compat, load_prints_the_notices_before_running)
{
    struct config *cfg = NULL;
    cr_redirect_stderr();
    cr_assert_eq(load_compat(ARGV("-f", "2"), &cfg), CONFIG_RUN);
    fflush(stderr);
    cr_assert_stderr_eq_str("petrel: -f/--factor: accepted, no effect: no slabs here\n");
    config_free(&cfg);
}

Test(config_compat, load_reports_a_refusal_with_status_64_and_no_hint)
{
    struct config *cfg = NULL;
    cr_redirect_stderr();
    cr_assert_eq(load_compat(ARGV("-o", "ttl_class=1", "--check-config"), &cfg), CONFIG_EX_USAGE);
    fflush(stderr);
    cr_assert_stderr_eq_str("petrel: -o ttl_class: no such class\n");
}

Test(config_compat, help_lists_what_each_flag_and_key_does)
{
    struct buf b;
    buf_init(&b, 4096, 1 << 20);
    cr_assert_eq(config_help(&b, &compat_product, tables, NTABLES), 0);
    cr_assert_eq(buf_append(&b, "", 1), 0);
    const char *text = buf_rptr(&b);
    cr_assert_not_null(strstr(text, "  -c, --conn=VALUE            sets threads\n"), "%s", text);
    cr_assert_not_null(strstr(text, "      --quiet                 sets log-level = error\n"));
    cr_assert_not_null(
        strstr(text, "  -D VALUE                    refused: no prefix statistics\n"));
    cr_assert_not_null(
        strstr(text, "      hashpower=VALUE         accepted, no effect: sized itself\n"));
    buf_free(&b);
}
