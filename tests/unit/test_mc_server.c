/*
 * Unit tests of mc_server (the memcached product's glue: parse, execute on a real shard, compose,
 * forward between workers, reply order, backpressure), driven through the fake runtime of
 * tests/support/fake_rt.h: no threads, no sockets, every read split, drain and message delivery
 * chosen here. Every test also ends by asserting that the fake saw no broken rule (finish()).
 */
#include "fake_rt.h"

#include "petrel/mc_exec.h"
#include "petrel/mc_server.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ITEM_MAX 8192
/* The largest single reply part: the VALUE block of the largest item (value, key, header). */
#define PART_MAX (ITEM_MAX + 512)

static const char *const product_argv[] = {"--memory-limit=4", "--max-item-size=8k",
                                           "--segment-size=64k", NULL};
static const char *const shutdown_argv[] = {"--memory-limit=4", "--max-item-size=8k",
                                            "--segment-size=64k", "--enable-shutdown", NULL};

static struct fake_rt *rt;

static struct fake_rt *
start_with(const struct fake_rt_opts *extra)
{
    struct fake_rt_opts o = *extra;
    if (o.reply_part_max == 0) {
        o.reply_part_max = PART_MAX;
    }
    o.tables = &mc_option_table;
    o.ntables = 1;
    if (o.argv == NULL) {
        o.argv = product_argv;
    }
    rt = fake_rt_create(&mc_product, &o);
    cr_assert_not_null(rt, "the fake runtime starts");
    return rt;
}

static struct fake_rt *
start(unsigned nworkers)
{
    return start_with(&(struct fake_rt_opts){.nworkers = nworkers});
}

/* Every test ends here: no broken rule, then everything is freed (ASan checks the rest). */
static void
finish(void)
{
    const char *first = fake_rt_first_failure(rt, FAKE_CHECK_COUNT);
    if (first != NULL) {
        fake_rt_print_failures(rt, stderr);
    }
    cr_expect_eq(fake_rt_failures(rt, FAKE_CHECK_COUNT), 0, "the fake runtime saw: %s",
                 first != NULL ? first : "");
    fake_rt_destroy(&rt);
}

/* What a test allocates is freed after it, passed or failed (a failed assertion ends the test
 * at once, and LeakSanitizer would otherwise report what it held). */
static void *garbage[256];
static unsigned ngarbage;

static void *
keep(void *p)
{
    cr_assert_not_null(p);
    cr_assert_lt(ngarbage, sizeof(garbage) / sizeof(garbage[0]));
    garbage[ngarbage++] = p;
    return p;
}

/* Free what keep() kept, before the test ends. */
static void
drop(void *p)
{
    for (unsigned i = 0; i < ngarbage; i++) {
        if (garbage[i] == p) {
            garbage[i] = garbage[--ngarbage];
            free(p);
            return;
        }
    }
    cr_assert_fail("drop() of a pointer not kept");
}

static void
cleanup(void)
{
    fake_rt_destroy(&rt);
    while (ngarbage > 0) {
        free(garbage[--ngarbage]);
    }
}

TestSuite(mc_server, .fini = cleanup);

static char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A key that worker w of n owns: prefix followed by the first number that lands there (kept). */
static const char *
key_on(unsigned n, unsigned w, const char *prefix)
{
    char k[300];
    for (unsigned i = 0;; i++) {
        snprintf(k, sizeof(k), "%s%u", prefix, i);
        if (mc_shard_of(mc_key_hash(k, strlen(k)), n) == w) {
            return format("%s", k);
        }
    }
}

/* Send text, run until nothing moves, and return everything received so far. */
static const char *
request(struct fake_conn *fc, const char *text)
{
    fake_conn_send_str(fc, text);
    fake_rt_run(rt);
    return fake_conn_text(fc);
}

static char *
format(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int rc = vasprintf(&s, fmt, ap);
    va_end(ap);
    cr_assert_geq(rc, 0);
    return keep(s);
}

/* n bytes of ch, NUL-terminated (kept). */
static char *
fill(size_t n, char ch)
{
    char *v = keep(malloc(n + 1));
    memset(v, ch, n);
    v[n] = '\0';
    return v;
}

/* The client sends a set of key to value, without the server reading it yet. */
static void
send_set(struct fake_conn *fc, const char *key, const char *value)
{
    char line[512];
    snprintf(line, sizeof(line), "set %s 0 0 %zu\r\n", key, strlen(value));
    fake_conn_send_str(fc, line);
    fake_conn_send_str(fc, value);
    fake_conn_send_str(fc, "\r\n");
}

/* Store value under key through fc, and check the answer. */
static void
store_value(struct fake_conn *fc, const char *key, const char *value)
{
    size_t before = fake_conn_received(fc)->wpos;
    send_set(fc, key, value);
    fake_rt_run(rt);
    cr_assert_str_eq(fake_conn_text(fc) + before, "STORED\r\n", "set %.40s", key);
}

/* ---- pipelines and splits ---- */

/* A pipeline touching both workers' shards: storage, multi-key gets, incr, delete, meta. */
static char *
pipeline_script(void)
{
    const char *a = key_on(2, 0, "a"), *b = key_on(2, 1, "b");
    const char *a1 = key_on(2, 0, "x"), *b1 = key_on(2, 1, "y");
    return format("set %s 0 0 5\r\nhello\r\nset %s 1 0 3\r\nabc\r\nget %s %s\r\n"
                  "append %s 0 0 2\r\nde\r\nget %s\r\nincr %s 5\r\nset %s 0 0 1\r\n7\r\n"
                  "incr %s 5\r\ndelete %s\r\ngets %s %s %s\r\nmg %s v\r\nmn\r\n"
                  "set %s 0 0 2 noreply\r\nzz\r\nget %s %s\r\n",
                  a, b, a, b, b, b, b1, b1, b1, a, a, b, b1, b, a1, a1, b1);
}

/* The output of the script fed in one piece, on worker 0 of 2. */
static char *
whole_output(const char *script)
{
    start(2);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    char *out = keep(strdup(request(fc, script)));
    finish();
    return out;
}

Test(mc_server, pipeline_split_at_every_byte_gives_the_same_output_as_whole)
{
    char *script = pipeline_script();
    size_t n = strlen(script);
    char *whole = whole_output(script);
    cr_assert(strstr(whole, "VALUE") != NULL && strstr(whole, "MN\r\n") != NULL,
              "the whole run answers: %s", whole);
    for (size_t cut = 1; cut < n; cut++) {
        start(2);
        struct fake_conn *fc = fake_conn_open(rt, 0);
        fake_conn_send(fc, script, cut);
        fake_conn_read(fc, cut);
        fake_rt_run(rt);
        fake_conn_send(fc, script + cut, n - cut);
        fake_rt_run(rt);
        cr_assert_str_eq(fake_conn_text(fc), whole, "split at byte %zu", cut);
        finish();
    }
}

Test(mc_server, pipeline_read_one_byte_at_a_time_gives_the_same_output_as_whole)
{
    char *script = pipeline_script();
    char *whole = whole_output(script);
    start(2);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    fake_conn_send_str(fc, script);
    while (fake_conn_unsent(fc) > 0) {
        fake_conn_read(fc, 1);
        fake_rt_deliver_all(rt);
        fake_conn_drain(fc, 1); /* and the client reads one byte at a time too */
    }
    fake_rt_run(rt);
    cr_assert_str_eq(fake_conn_text(fc), whole);
    finish();
}

/* ---- forwarding and reply order ---- */

Test(mc_server, replies_keep_request_order_when_peers_answer_out_of_order)
{
    start(3);
    const char *p = key_on(3, 1, "p"), *q = key_on(3, 2, "q"), *r = key_on(3, 0, "r");
    struct fake_conn *fc = fake_conn_open(rt, 0);
    char *set = format("set %s 0 0 1\r\n1\r\nset %s 0 0 1\r\n2\r\nset %s 0 0 1\r\n3\r\n", p, q, r);
    cr_assert_str_eq(request(fc, set), "STORED\r\nSTORED\r\nSTORED\r\n");
    size_t before = fake_conn_received(fc)->wpos;

    char *get = format("get %s\r\nget %s\r\nget %s\r\n", p, q, r);
    fake_conn_send_str(fc, get);
    fake_conn_read(fc, strlen(get));
    cr_assert_eq(fake_rt_queued(rt, 0, 1), 1, "the get of p went to worker 1");
    cr_assert_eq(fake_rt_queued(rt, 0, 2), 1, "the get of q went to worker 2");
    /* Worker 2 answers first; its reply and r's local one must wait for worker 1's. */
    fake_rt_deliver(rt, 0, 2, 1);
    fake_rt_deliver(rt, 2, 0, 1);
    fake_conn_drain(fc, SIZE_MAX);
    cr_assert_eq(fake_conn_received(fc)->wpos, before, "nothing is sent before p's reply");
    fake_rt_deliver(rt, 0, 1, 1);
    fake_rt_deliver(rt, 1, 0, 1);
    fake_conn_drain(fc, SIZE_MAX);
    char *want = format("VALUE %s 0 1\r\n1\r\nEND\r\nVALUE %s 0 1\r\n2\r\nEND\r\n"
                        "VALUE %s 0 1\r\n3\r\nEND\r\n",
                        p, q, r);
    cr_assert_str_eq(fake_conn_text(fc) + before, want);
    finish();
}

Test(mc_server, multi_key_get_across_two_workers_gathers_values_in_key_order)
{
    start(2);
    const char *a0 = key_on(2, 0, "a"), *b0 = key_on(2, 1, "b");
    const char *a1 = key_on(2, 0, "c"), *b1 = key_on(2, 1, "d");
    struct fake_conn *fc = fake_conn_open(rt, 0);
    char *set = format("set %s 0 0 2\r\nA0\r\nset %s 0 0 2\r\nB0\r\nset %s 0 0 2\r\nA1\r\n"
                       "set %s 0 0 2\r\nB1\r\n",
                       a0, b0, a1, b1);
    request(fc, set);
    size_t before = fake_conn_received(fc)->wpos;
    char *get = format("get %s %s missing %s %s\r\n", b0, a0, b1, a1);
    char *want = format("VALUE %s 0 2\r\nB0\r\nVALUE %s 0 2\r\nA0\r\nVALUE %s 0 2\r\nB1\r\n"
                        "VALUE %s 0 2\r\nA1\r\nEND\r\n",
                        b0, a0, b1, a1);
    cr_assert_str_eq(request(fc, get) + before, want);
    finish();
}

Test(mc_server, flush_all_empties_every_shard)
{
    start(2);
    const char *a = key_on(2, 0, "a"), *b = key_on(2, 1, "b");
    struct fake_conn *fc = fake_conn_open(rt, 1);
    char *text =
        format("set %s 0 0 1\r\nx\r\nset %s 0 0 1\r\ny\r\nflush_all\r\nget %s %s\r\n", a, b, a, b);
    cr_assert_str_eq(request(fc, text), "STORED\r\nSTORED\r\nOK\r\nEND\r\n");
    finish();
}

Test(mc_server, stats_counts_the_items_of_every_shard)
{
    start(2);
    const char *a = key_on(2, 0, "a"), *b = key_on(2, 1, "b");
    struct fake_conn *fc = fake_conn_open(rt, 0);
    char *text = format("set %s 0 0 1\r\nx\r\nset %s 0 0 1\r\ny\r\nstats\r\n", a, b);
    const char *out = request(fc, text);
    cr_assert(strstr(out, "STAT curr_items 2\r\n") != NULL, "stats: %s", out);
    cr_assert(strstr(out, "STAT cmd_set 2\r\n") != NULL, "stats: %s", out);
    size_t len = strlen(out);
    cr_assert(len >= 5 && strcmp(out + len - 5, "END\r\n") == 0, "stats ends with END");
    finish();
}

Test(mc_server, stats_conns_lists_the_connections_of_every_worker_then_end)
{
    start(3);
    struct fake_conn *fc = fake_conn_open(rt, 1);
    fake_conn_open(rt, 0);
    fake_conn_open(rt, 1);
    fake_conn_open(rt, 2);
    const char *out = request(fc, "stats conns\r\n");
    unsigned waiting = 0, listening = 0;
    for (const char *p = out; (p = strstr(p, ":state ")) != NULL; p++) {
        waiting += strncmp(p, ":state conn_waiting\r\n", 21) == 0;
        listening += strncmp(p, ":state conn_listening\r\n", 23) == 0;
    }
    cr_assert_eq(waiting, 4, "every open connection, on every worker: %s", out);
    cr_assert_eq(listening, 1, "the listener, once: %s", out);
    cr_assert(strncmp(out, "STAT 1000:addr tcp:127.0.0.1:11211\r\n", 36) == 0,
              "worker 0's part, with the listener, comes first: %s", out);
    size_t len = strlen(out);
    cr_assert(len >= 5 && strcmp(out + len - 5, "END\r\n") == 0, "ends with END: %s", out);
    finish();
}

Test(mc_server, stats_reset_zeroes_every_shards_counters_and_answers_reset)
{
    start(2);
    const char *a = key_on(2, 0, "a"), *b = key_on(2, 1, "b");
    struct fake_conn *fc = fake_conn_open(rt, 0);
    char *text = format("set %s 0 0 1\r\nx\r\nset %s 0 0 1\r\ny\r\nstats reset\r\nstats\r\n", a, b);
    const char *out = request(fc, text);
    cr_assert(strncmp(out, "STORED\r\nSTORED\r\nRESET\r\n", 23) == 0, "%s", out);
    cr_assert(strstr(out, "STAT cmd_set 0\r\n") != NULL, "stats: %s", out);
    cr_assert(strstr(out, "STAT total_items 0\r\n") != NULL, "stats: %s", out);
    cr_assert(strstr(out, "STAT curr_items 2\r\n") != NULL, "a gauge stays: %s", out);
    finish();
}

Test(mc_server, stats_detail_dump_sums_the_prefixes_counted_on_every_worker)
{
    start(2);
    const char *a = key_on(2, 0, "p:"), *b = key_on(2, 1, "p:");
    struct fake_conn *fc = fake_conn_open(rt, 0);
    char *text = format("stats detail on\r\nset %s 0 0 1\r\nx\r\nset %s 0 0 1\r\ny\r\n"
                        "get %s %s p:none\r\ndelete %s\r\nstats detail dump\r\n",
                        a, b, a, b, b);
    const char *out = request(fc, text);
    cr_assert(strstr(out, "DELETED\r\nPREFIX p get 3 hit 2 set 2 del 1\r\nEND\r\n") != NULL,
              "one line for the prefix, summed over both workers: %s", out);
    finish();
}

Test(mc_server, stats_detail_counts_nothing_until_it_is_turned_on)
{
    start(2);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    const char *out = request(fc, "set a:1 0 0 1\r\nx\r\nget a:1\r\nstats detail dump\r\n");
    cr_assert_str_eq(out, "STORED\r\nVALUE a:1 0 1\r\nx\r\nEND\r\nEND\r\n");
    finish();
}

Test(mc_server, stats_detail_off_stops_counting_and_keeps_what_was_counted)
{
    start(2);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    const char *out = request(fc, "stats detail on\r\nget a:1\r\nstats detail off\r\nget a:1\r\n"
                                  "stats detail dump\r\n");
    cr_assert_str_eq(out, "OK\r\nEND\r\nOK\r\nEND\r\nPREFIX a get 1 hit 0 set 0 del 0\r\nEND\r\n");
    finish();
}

Test(mc_server, stats_detail_counts_only_get_store_and_delete_commands)
{
    start(1);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    const char *out = request(fc, "stats detail on\r\nset n:1 0 0 1\r\n1\r\nincr n:1 1\r\n"
                                  "touch n:1 0\r\nmg n:1 v\r\nmd n:1 q\r\nmn\r\n"
                                  "stats detail dump\r\n");
    cr_assert(strstr(out, "PREFIX n get 0 hit 0 set 1 del 0\r\nEND\r\n") != NULL, "%s", out);
    finish();
}

Test(mc_server, stats_detail_gat_hit_counts_as_a_get_hit)
{
    start(1);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    const char *out = request(fc, "stats detail on\r\nset g:1 0 0 1\r\n1\r\ngat 0 g:1 g:2\r\n"
                                  "stats detail dump\r\n");
    cr_assert(strstr(out, "PREFIX g get 2 hit 1 set 1 del 0\r\nEND\r\n") != NULL, "%s", out);
    finish();
}

Test(mc_server, stats_reset_forgets_the_prefixes)
{
    start(2);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    const char *out =
        request(fc, "stats detail on\r\nget a:1 b:1\r\nstats reset\r\nstats detail dump\r\n");
    cr_assert_str_eq(out, "OK\r\nEND\r\nRESET\r\nEND\r\n");
    finish();
}

Test(mc_server, stats_detail_takes_the_beginning_of_a_verb_and_refuses_others)
{
    start(1);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    const char *out = request(fc, "stats detail\r\nstats detail x\r\nstats detail onx\r\n"
                                  "stats detail o\r\nstats detail d\r\n");
    cr_assert_str_eq(out, "CLIENT_ERROR usage: stats detail on|off|dump\r\n"
                          "CLIENT_ERROR usage: stats detail on|off|dump\r\n"
                          "CLIENT_ERROR usage: stats detail on|off|dump\r\n"
                          "OK\r\nEND\r\n");
    finish();
}

static const char *const delim_argv[] = {"--memory-limit=4", "--max-item-size=8k",
                                         "--segment-size=64k", "--prefix-delimiter=/", NULL};

Test(mc_server, prefix_delimiter_option_sets_the_delimiter_and_turns_counting_on)
{
    start_with(&(struct fake_rt_opts){.nworkers = 2, .argv = delim_argv});
    struct fake_conn *fc = fake_conn_open(rt, 0);
    const char *out = request(fc, "get a/1 b:2\r\nstats detail dump\r\n");
    cr_assert_str_eq(out, "END\r\nPREFIX a get 1 hit 0 set 0 del 0\r\nEND\r\n");
    finish();
}

Test(mc_server, stats_settings_shows_memcacheds_fields_in_its_formats)
{
    start(1);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    const char *out = request(fc, "stats settings\r\n");
    static const char *const want[] = {
        "STAT maxbytes 4194304\r\n",
        "STAT item_size_max 8192\r\n",
        "STAT umask 700\r\n",
        "STAT domain_socket NULL\r\n",
        "STAT stat_key_prefix :\r\n",
        "STAT detail_enabled no\r\n",
        "STAT tcp_backlog 1024\r\n",
        "STAT binding_protocol ascii\r\n",
        "STAT ssl_enabled no\r\n",
        "STAT ssl_chain_cert (null)\r\n",
        "STAT ssl_verify_mode 0\r\n",
        "STAT ssl_ca_cert NULL\r\n",
        "STAT ssl_min_version tlsv1.2\r\n",
        "STAT verbosity 0\r\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        cr_assert(strstr(out, want[i]) != NULL, "%s missing from: %s", want[i], out);
    }
    cr_assert(strncmp(out, "STAT maxbytes ", 14) == 0, "memcached's first field first: %s", out);
    finish();
}

Test(mc_server, stats_settings_shows_detail_enabled_once_turned_on)
{
    start(1);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    const char *out = request(fc, "stats detail on\r\nstats settings\r\n");
    cr_assert(strstr(out, "STAT detail_enabled yes\r\n") != NULL, "%s", out);
    finish();
}

Test(mc_server, stats_counts_me_commands_as_cmd_meta_until_a_reset)
{
    start(2);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    const char *out = request(fc, "me a\r\nme b\r\nmg c v\r\nstats\r\n");
    cr_assert(strstr(out, "STAT cmd_meta 2\r\n") != NULL, "only me counts: %s", out);
    out = request(fc, "stats reset\r\nstats\r\n");
    cr_assert(strstr(strstr(out, "RESET\r\n"), "STAT cmd_meta 0\r\n") != NULL, "%s", out);
    finish();
}

Test(mc_server, stats_names_the_hash_table_size_hash_bytes)
{
    start(1);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    cr_assert(strstr(request(fc, "stats\r\n"), "STAT hash_bytes ") != NULL);
    finish();
}

Test(mc_server, stats_with_an_unknown_view_is_error)
{
    start(1);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    cr_assert_str_eq(request(fc, "stats connsx\r\nstats conns x\r\n"), "ERROR\r\nERROR\r\n");
    finish();
}

Test(mc_server, late_reply_for_a_closed_connection_is_dropped)
{
    start(2);
    const char *b = key_on(2, 1, "b");
    struct fake_conn *old = fake_conn_open(rt, 0);
    char *set = format("set %s 0 0 1\r\nx\r\n", b);
    fake_conn_send_str(old, set);
    fake_conn_read(old, SIZE_MAX);
    cr_assert_eq(fake_conn_inflight(old), 1);
    fake_conn_reset(old);
    /* The new connection takes the closed one's slot; the late STORED must not reach it. */
    struct fake_conn *fc = fake_conn_open(rt, 0);
    cr_assert_str_eq(request(fc, "mn\r\n"), "MN\r\n");
    cr_assert_eq(fake_rt_queued_total(rt), 0);
    cr_assert_str_eq(fake_conn_text(old), "");
    finish();
}

Test(mc_server, reset_with_replies_queued_behind_a_forward_releases_the_output_hold)
{
    start(2);
    const char *a = key_on(2, 0, "a"), *b = key_on(2, 1, "b");
    struct fake_conn *fc = fake_conn_open(rt, 0);
    char *text = format("get %s\r\nset %s 0 0 1\r\nx\r\nget %s\r\n", b, a, a);
    fake_conn_send_str(fc, text);
    fake_conn_read(fc, SIZE_MAX);
    cr_assert_eq(fake_conn_inflight(fc), 1, "b's get waits for worker 1");
    fake_conn_reset(fc);
    fake_rt_run(rt);
    cr_assert_eq(fake_rt_failures(rt, FAKE_CHECK_HOLD), 0, "%s",
                 fake_rt_first_failure(rt, FAKE_CHECK_HOLD));
    finish();
}

Test(mc_server, too_many_forwarded_requests_pause_the_connection_until_replies_return)
{
    start(2);
    const char *b = key_on(2, 1, "b");
    struct fake_conn *fc = fake_conn_open(rt, 0);
    char *one = format("get %s\r\n", b);
    size_t n = 1100, len = strlen(one);
    char *many = keep(malloc(n * len + 1));
    for (size_t i = 0; i < n; i++) {
        memcpy(many + i * len, one, len);
    }
    fake_conn_send(fc, many, n * len);
    fake_conn_read(fc, SIZE_MAX);
    cr_assert_eq(fake_conn_last_result(fc), RT_PAUSED, "on_data pauses with %u in flight",
                 fake_conn_inflight(fc));
    cr_assert(fake_conn_paused(fc));
    cr_assert_gt(fake_conn_unread(fc), 0, "requests are left unread while paused");
    fake_rt_run(rt);
    const char *out = fake_conn_text(fc);
    size_t ends = 0;
    for (const char *p = out; (p = strstr(p, "END\r\n")) != NULL; p += 5) {
        ends++;
    }
    cr_assert_eq(ends, n, "every get is answered once it resumed");
    cr_assert_eq(strlen(out), 5 * n);
    finish();
}

/* ---- closing ---- */

Test(mc_server, quit_closes_after_earlier_replies_are_sent)
{
    start(2);
    const char *b = key_on(2, 1, "b");
    struct fake_conn *fc = fake_conn_open(rt, 0);
    char *text = format("set %s 0 0 1\r\nx\r\nquit\r\nget %s\r\n", b, b);
    fake_conn_send_str(fc, text);
    fake_conn_read(fc, SIZE_MAX);
    cr_assert_not(fake_conn_closed(fc), "the set's reply is still to come");
    fake_rt_deliver_all(rt);
    cr_assert_not(fake_conn_closed(fc), "its reply is still to be sent");
    fake_conn_drain(fc, SIZE_MAX);
    cr_assert(fake_conn_closed(fc));
    cr_assert_str_eq(fake_conn_close_reason(fc), "RT_CLOSE");
    cr_assert_str_eq(fake_conn_text(fc), "STORED\r\n", "nothing after quit is answered");
    finish();
}

Test(mc_server, eof_closes_once_the_replies_in_flight_are_sent)
{
    start(2);
    const char *b = key_on(2, 1, "b");
    struct fake_conn *fc = fake_conn_open(rt, 0);
    char *text = format("get %s\r\n", b);
    fake_conn_send_str(fc, text);
    fake_conn_shutdown(fc);
    fake_conn_read(fc, SIZE_MAX);
    cr_assert_not(fake_conn_closed(fc), "the get is still out");
    fake_rt_run(rt);
    cr_assert(fake_conn_closed(fc));
    cr_assert_str_eq(fake_conn_close_reason(fc), "eof");
    cr_assert_str_eq(fake_conn_text(fc), "END\r\n");
    finish();
}

Test(mc_server, http_request_line_closes_the_connection)
{
    start(1);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    fake_conn_send_str(fc, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    fake_conn_read(fc, SIZE_MAX);
    cr_assert_eq(fake_conn_last_result(fc), RT_CLOSE, "on_data returned %d, not RT_CLOSE",
                 (int)fake_conn_last_result(fc));
    fake_rt_run(rt);
    cr_assert(fake_conn_closed(fc));
    cr_assert_str_eq(fake_conn_text(fc), "", "memcached drops it without a word");
    finish();
}

Test(mc_server, line_of_2100_bytes_without_newline_closes_the_connection)
{
    start(1);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    char line[2100];
    memset(line, 'x', sizeof(line));
    fake_conn_send(fc, line, sizeof(line));
    fake_conn_read(fc, SIZE_MAX);
    cr_assert_eq(fake_conn_last_result(fc), RT_CLOSE, "on_data returned %d, not RT_CLOSE",
                 (int)fake_conn_last_result(fc));
    fake_rt_run(rt);
    cr_assert(fake_conn_closed(fc));
    finish();
}

Test(mc_server, binary_protocol_request_closes_the_connection)
{
    start(1);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    /* A binary get of key "a": magic 0x80, opcode 0, key length 1, body length 1. */
    static const unsigned char get[25] = {0x80, 0x00, 0x00, 0x01, [11] = 0x01, [24] = 'a'};
    fake_conn_send(fc, get, sizeof(get));
    fake_rt_run(rt);
    cr_assert(fake_conn_closed(fc), "the connection is %s after a binary request",
              fake_conn_closed(fc) ? "closed" : "still open");
    finish();
}

Test(mc_server, shutdown_when_enabled_asks_the_runtime_to_stop_and_closes)
{
    start_with(&(struct fake_rt_opts){.nworkers = 1, .argv = shutdown_argv});
    struct fake_conn *fc = fake_conn_open(rt, 0);
    request(fc, "shutdown\r\n");
    cr_assert_eq(fake_rt_stop_requests(rt), 1);
    cr_assert(fake_conn_closed(fc));
    finish();
}

/* ---- backpressure ---- */

/* A value of vlen bytes under key k, stored through fc. */
static void
store(struct fake_conn *fc, const char *k, size_t vlen)
{
    store_value(fc, k, fill(vlen, 'v'));
}

/* n pipelined gets of key k, sent in one piece. */
static void
send_gets(struct fake_conn *fc, const char *k, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char line[64];
        snprintf(line, sizeof(line), "get %s\r\n", k);
        fake_conn_send_str(fc, line);
    }
}

Test(mc_server, client_that_never_drains_makes_on_data_stop_with_rt_continue)
{
    start_with(&(struct fake_rt_opts){.nworkers = 1, .output_limit = 4096});
    struct fake_conn *fc = fake_conn_open(rt, 0);
    store(fc, "v", 3000);
    send_gets(fc, "v", 40);
    fake_conn_read(fc, SIZE_MAX);
    cr_assert_gt(fake_conn_unread(fc), 0, "the gets past the output limit are left unread");
    cr_assert_eq(fake_conn_last_result(fc), RT_CONTINUE, "on_data returned %d, not RT_CONTINUE",
                 (int)fake_conn_last_result(fc));
    cr_assert_leq(fake_conn_output(fc), fake_rt_output_bound(rt));
    finish();
}

Test(mc_server, output_stopped_by_backpressure_goes_on_once_the_client_reads)
{
    start_with(&(struct fake_rt_opts){.nworkers = 1, .output_limit = 4096});
    struct fake_conn *fc = fake_conn_open(rt, 0);
    store(fc, "v", 3000);
    size_t before = fake_conn_received(fc)->wpos;
    send_gets(fc, "v", 40);
    fake_conn_read(fc, SIZE_MAX);
    /* The client reads 1000 bytes at a time and sends nothing more. */
    while (fake_conn_drain(fc, 1000) > 0) {
    }
    const char *out = fake_conn_text(fc) + before;
    size_t values = 0;
    for (const char *p = out; (p = strstr(p, "VALUE v 0 3000\r\n")) != NULL; p++) {
        values++;
    }
    cr_assert_eq(values, 40, "every get is answered");
    cr_assert_leq(fake_conn_output_peak(fc), fake_rt_output_bound(rt));
    finish();
}

Test(mc_server, forwarded_replies_for_a_client_that_never_drains_stay_bounded)
{
    start_with(&(struct fake_rt_opts){.nworkers = 2, .output_limit = 4096});
    const char *b = key_on(2, 1, "b");
    struct fake_conn *fc = fake_conn_open(rt, 0);
    store(fc, b, 3000);
    send_gets(fc, b, 40);
    fake_conn_read(fc, SIZE_MAX);
    fake_rt_deliver_all(rt);
    fake_conn_read(fc, SIZE_MAX);
    fake_rt_deliver_all(rt);
    cr_assert_leq(fake_conn_output_peak(fc), fake_rt_output_bound(rt),
                  "%zu bytes of output held, the bound is %zu", fake_conn_output_peak(fc),
                  fake_rt_output_bound(rt));
    fake_rt_run(rt);
    finish();
}

Test(mc_server, pipelined_stats_for_a_client_that_never_drains_stay_bounded)
{
    /* Each "stats" waits for every shard; their replies must not all land past the limit at
     * once when the parts come back. */
    start_with(&(struct fake_rt_opts){.nworkers = 3, .output_limit = 4096});
    struct fake_conn *fc = fake_conn_open(rt, 1);
    for (int i = 0; i < 16; i++) {
        fake_conn_send_str(fc, "stats\r\n");
    }
    fake_conn_read(fc, SIZE_MAX);
    fake_rt_deliver_all(rt);
    cr_assert_leq(fake_conn_output_peak(fc), fake_rt_output_bound(rt),
                  "%zu bytes of output held, the bound is %zu", fake_conn_output_peak(fc),
                  fake_rt_output_bound(rt));
    fake_rt_run(rt);
    const char *out = fake_conn_text(fc);
    size_t ends = 0;
    for (const char *p = out; (p = strstr(p, "END\r\n")) != NULL; p += 5) {
        ends++;
    }
    cr_assert_eq(ends, 16, "every stats is answered once the client reads");
    finish();
}

/* ---- read-buffer memory ---- */

Test(mc_server, large_value_read_in_many_pieces_is_stored_whole)
{
    start(1);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    char value[7000];
    memset(value, 'q', sizeof(value));
    fake_conn_send_str(fc, "set big 0 0 7000\r\n");
    fake_conn_read(fc, SIZE_MAX);
    fake_conn_send(fc, value, sizeof(value));
    fake_conn_send_str(fc, "\r\nmg big s\r\n");
    while (fake_conn_read(fc, 333) > 0) {
    }
    fake_rt_run(rt);
    cr_assert_str_eq(fake_conn_text(fc), "STORED\r\nHD s7000\r\n");
    finish();
}

Test(mc_server, refused_read_buffer_gets_server_error_and_the_next_request_works)
{
    /* Read buffers of 1 KiB may grow by 2 KiB: a 6000-byte value does not fit. */
    start_with(&(struct fake_rt_opts){.nworkers = 1, .read_buffer = 1024, .read_budget = 2048});
    struct fake_conn *fc = fake_conn_open(rt, 0);
    char value[6000];
    memset(value, 'q', sizeof(value));
    fake_conn_send_str(fc, "set big 0 0 6000\r\n");
    fake_conn_read(fc, SIZE_MAX);
    cr_assert_eq(fake_rt_wants_refused(rt), 1, "the product asked for the value's room");
    fake_conn_send(fc, value, sizeof(value));
    fake_conn_send_str(fc, "\r\nget big\r\nset small 0 0 1\r\nx\r\nget small\r\n");
    while (fake_conn_read(fc, 1000) > 0) {
    }
    fake_rt_run(rt);
    const char *out = fake_conn_text(fc);
    cr_assert(strncmp(out, "SERVER_ERROR ", 13) == 0, "the refused set is answered: %.60s", out);
    const char *rest = strstr(out, "\r\n");
    cr_assert_not_null(rest);
    cr_assert_str_eq(rest + 2, "END\r\nSTORED\r\nVALUE small 0 1\r\nx\r\nEND\r\n");
    finish();
}

/* ---- errors ---- */

Test(mc_server, failed_forward_is_answered_or_aborts_never_an_invalid_result)
{
    start(2);
    const char *b = key_on(2, 1, "b");
    struct fake_conn *fc = fake_conn_open(rt, 0);
    fake_rt_fail_forwards(rt, 1);
    char *text = format("get %s\r\nmn\r\n", b);
    const char *out = request(fc, text);
    cr_assert_eq(fake_rt_failures(rt, FAKE_CHECK_CONTRACT), 0, "%s",
                 fake_rt_first_failure(rt, FAKE_CHECK_CONTRACT));
    bool aborted = fake_conn_closed(fc) && strcmp(fake_conn_close_reason(fc), "RT_ABORT") == 0;
    cr_assert(aborted || strncmp(out, "SERVER_ERROR ", 13) == 0, "closed: %s, output: %s",
              fake_conn_closed(fc) ? fake_conn_close_reason(fc) : "no", out);
    finish();
}

/* ---- large values: holes ----
 *
 * With values of up to 64 KiB and an output limit of 16 KiB, a value may be larger than the
 * room a forwarded request is given to bring back, or than the room left behind a reply that
 * waits: it is then left out as a hole (its header and its item's version), and fetched from its
 * shard when its turn comes and the output has room, or answered as a miss if the item changed
 * meanwhile.
 */

#define LARGE_ITEM_MAX (64 << 10)
#define LARGE_PART_MAX (LARGE_ITEM_MAX + 512)
#define LARGE_LIMIT    (16 << 10)

static const char *const large_argv[] = {"--memory-limit=8", "--max-item-size=64k",
                                         "--segment-size=128k", NULL};

static struct fake_rt *
start_large(unsigned nworkers, size_t output_limit, size_t read_budget)
{
    return start_with(&(struct fake_rt_opts){.nworkers = nworkers,
                                             .output_limit = output_limit,
                                             .read_budget = read_budget,
                                             .reply_part_max = LARGE_PART_MAX,
                                             .argv = large_argv});
}

/* The VALUE block of a get hit. */
static char *
hit(const char *key, const char *value)
{
    return format("VALUE %s 0 %zu\r\n%s\r\n", key, strlen(value), value);
}

/* The received bytes from offset `from` on equal want (printed short when they differ). */
static void
assert_received(struct fake_conn *fc, size_t from, const char *want)
{
    const char *got = fake_conn_text(fc);
    size_t len = strlen(got);
    cr_assert_geq(len, from);
    size_t i = 0;
    while (got[from + i] != '\0' && got[from + i] == want[i]) {
        i++;
    }
    cr_assert(got[from + i] == want[i],
              "%zu bytes received, %zu wanted; they differ at byte %zu: got \"%.60s\", want "
              "\"%.60s\"",
              len - from, strlen(want), i, got + from + i, want + i);
}

Test(mc_server, forwarded_get_of_a_value_past_its_reply_room_fetches_it_and_sends_it_whole)
{
    start_large(2, LARGE_LIMIT, 0);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    const char *k = key_on(2, 1, "k");
    char *v = fill(40000, 'x');
    store_value(fc, k, v);
    size_t before = fake_conn_received(fc)->wpos;
    fake_conn_send_str(fc, format("get %s\r\nmn\r\n", k));
    fake_conn_read(fc, SIZE_MAX);
    fake_rt_deliver(rt, 0, 1, 1);
    fake_rt_deliver(rt, 1, 0, 1);
    cr_assert_eq(fake_rt_queued(rt, 0, 1), 1, "the value left out of the reply is fetched");
    fake_rt_run(rt);
    assert_received(fc, before, format("%sEND\r\nMN\r\n", hit(k, v)));
    cr_assert_eq(fake_conn_held(fc), 0);
    finish();
}

Test(mc_server, forwarded_mg_v_of_a_large_value_comes_back_whole_with_its_flags)
{
    start_large(2, LARGE_LIMIT, 0);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    const char *k = key_on(2, 1, "m");
    char *v = fill(50000, 'm');
    store_value(fc, k, v);
    size_t before = fake_conn_received(fc)->wpos;
    fake_conn_send_str(fc, format("mg %s v k Oxy\r\nmn\r\n", k));
    fake_rt_run(rt);
    assert_received(fc, before, format("VA 50000 k%s Oxy\r\n%s\r\nMN\r\n", k, v));
    cr_assert_eq(fake_conn_held(fc), 0);
    finish();
}

Test(mc_server, value_replaced_before_its_fetch_is_answered_as_a_miss)
{
    start_large(2, LARGE_LIMIT, 0);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    struct fake_conn *other = fake_conn_open(rt, 1);
    const char *big = key_on(2, 1, "big");
    store_value(fc, big, fill(40000, 'o'));
    size_t before = fake_conn_received(fc)->wpos;
    fake_conn_send_str(fc, format("get %s\r\n", big));
    fake_conn_read(fc, SIZE_MAX);
    fake_rt_deliver(rt, 0, 1, 1);
    fake_rt_deliver(rt, 1, 0, 1);
    cr_assert_eq(fake_rt_queued(rt, 0, 1), 1, "the value is to be fetched");
    /* Another client replaces it with a value of the same size, on its owner, first. */
    send_set(other, big, fill(40000, 'n'));
    fake_conn_read(other, SIZE_MAX);
    cr_assert_eq(fake_conn_output(other), strlen("STORED\r\n"));
    fake_rt_run(rt);
    assert_received(fc, before, "END\r\n");
    finish();
}

Test(mc_server, value_replaced_while_its_hole_waits_for_the_client_is_answered_as_a_miss)
{
    start_large(1, LARGE_LIMIT, 0);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    struct fake_conn *other = fake_conn_open(rt, 0);
    char *a = fill(10000, 'a');
    store_value(fc, "a", a);
    store_value(fc, "big", fill(40000, 'o'));
    size_t before = fake_conn_received(fc)->wpos;
    /* a's value fills most of the output: big's does not fit behind it, and waits as a hole. */
    fake_conn_send_str(fc, "get a big\r\n");
    fake_conn_read(fc, SIZE_MAX);
    cr_assert_eq(fake_conn_last_result(fc), RT_CONTINUE, "on_data returned %d",
                 (int)fake_conn_last_result(fc));
    cr_assert_lt(fake_conn_output(fc), LARGE_LIMIT, "big's value is not held: %zu bytes",
                 fake_conn_output(fc));
    send_set(other, "big", fill(40000, 'n'));
    fake_conn_read(other, SIZE_MAX);
    cr_assert_eq(fake_conn_output(other), strlen("STORED\r\n"));
    fake_rt_run(rt);
    assert_received(fc, before, format("%sEND\r\n", hit("a", a)));
    finish();
}

Test(mc_server, local_values_queued_behind_a_forward_are_held_as_holes_within_the_limit)
{
    start_large(2, LARGE_LIMIT, 0);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    const char *r = key_on(2, 1, "r"), *l = key_on(2, 0, "l");
    char *v = fill(20000, 'l');
    store_value(fc, r, "remote");
    store_value(fc, l, v);
    size_t before = fake_conn_received(fc)->wpos;
    char *pair = format("get %s\r\nget %s\r\n", r, l);
    for (int i = 0; i < 30; i++) {
        fake_conn_send_str(fc, pair);
    }
    fake_conn_read(fc, SIZE_MAX);
    /* The forwards are not delivered yet: every local reply is held behind the first. */
    cr_assert_leq(fake_conn_output(fc), LARGE_LIMIT + LARGE_PART_MAX,
                  "%zu bytes held for 30 values of 20000 bytes", fake_conn_output(fc));
    for (int i = 0; i < 20; i++) {
        fake_rt_deliver_all(rt);
        fake_conn_read(fc, SIZE_MAX);
    }
    cr_assert_leq(fake_conn_output_peak(fc), LARGE_LIMIT + LARGE_PART_MAX + 4096);
    fake_rt_run(rt);
    char *one = format("VALUE %s 0 6\r\nremote\r\nEND\r\n%sEND\r\n", r, hit(l, v));
    size_t n = strlen(one);
    const char *got = fake_conn_text(fc) + before;
    cr_assert_eq(strlen(got), 30 * n);
    for (size_t i = 0; i < 30; i++) {
        cr_assert(strncmp(got + i * n, one, n) == 0, "reply pair %zu", i);
    }
    cr_assert_eq(fake_conn_held(fc), 0);
    finish();
}

/*
 * At *p, the answer of a get of keys[0..n) whose values are vals: a VALUE block for each key in
 * order (with a CAS field for gets), then END. Moves *p past it.
 */
static void
expect_get_reply(const char **p, const char *const *keys, char *const *vals, size_t n, bool cas)
{
    for (size_t i = 0; i < n; i++) {
        char *hdr = format("VALUE %s 0 %zu", keys[i], strlen(vals[i]));
        size_t h = strlen(hdr);
        cr_assert(strncmp(*p, hdr, h) == 0, "key %zu: want \"%s\", got \"%.60s\"", i, hdr, *p);
        *p += h;
        if (cas) {
            cr_assert_eq(**p, ' ', "gets: a CAS follows: \"%.40s\"", *p);
            *p += 1 + strspn(*p + 1, "0123456789");
        }
        cr_assert(strncmp(*p, "\r\n", 2) == 0 && strncmp(*p + 2, vals[i], strlen(vals[i])) == 0,
                  "key %zu: its value", i);
        *p += 2 + strlen(vals[i]);
        cr_assert(strncmp(*p, "\r\n", 2) == 0, "key %zu: the end of its value", i);
        *p += 2;
    }
    cr_assert(strncmp(*p, "END\r\n", 5) == 0, "END, not \"%.40s\"", *p);
    *p += 5;
}

Test(mc_server, multi_key_gets_of_large_values_stay_bounded_until_read_then_arrive_in_order)
{
    start_large(2, LARGE_LIMIT, 0);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    const char *keys[20];
    char *vals[20];
    for (unsigned i = 0; i < 20; i++) {
        keys[i] = key_on(2, i % 3 == 0, format("%c%u_", 'a' + i, i));
        vals[i] = fill(30000 + i, (char)('a' + i));
        store_value(fc, keys[i], vals[i]);
    }
    size_t before = fake_conn_received(fc)->wpos;
    for (int r = 0; r < 3; r++) {
        fake_conn_send_str(fc, r == 1 ? "gets" : "get");
        for (int i = 0; i < 20; i++) {
            fake_conn_send_str(fc, format(" %s", keys[i]));
        }
        fake_conn_send_str(fc, "\r\n");
    }
    fake_conn_send_str(fc, "mn\r\n");
    /* The client reads nothing: every request is read and every message delivered. */
    for (int round = 0; round < 50; round++) {
        fake_conn_read(fc, SIZE_MAX);
        fake_rt_deliver_all(rt);
    }
    cr_assert_leq(fake_conn_output_peak(fc), LARGE_LIMIT + LARGE_PART_MAX + 4096,
                  "%zu bytes of output held", fake_conn_output_peak(fc));
    /* Now it reads, a little at a time. */
    while (fake_conn_drain(fc, 5000) > 0) {
        fake_rt_deliver_all(rt);
    }
    fake_rt_run(rt);
    const char *p = fake_conn_text(fc) + before;
    for (int r = 0; r < 3; r++) {
        expect_get_reply(&p, keys, vals, 20, r == 1);
    }
    cr_assert_str_eq(p, "MN\r\n");
    cr_assert_eq(fake_conn_held(fc), 0);
    finish();
}

Test(mc_server, refused_set_of_a_large_value_drops_the_old_value_on_either_worker)
{
    /* Read buffers may grow by 8 KiB: a value of 60000 bytes cannot have its room. */
    start_large(2, LARGE_LIMIT, 8192);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    const char *r = key_on(2, 1, "r"), *l = key_on(2, 0, "l");
    store_value(fc, r, "old");
    store_value(fc, l, "old");
    size_t before = fake_conn_received(fc)->wpos;
    char *v = fill(60000, 'v');
    send_set(fc, r, v);
    send_set(fc, l, v);
    fake_conn_send_str(fc, format("get %s %s\r\nmn\r\n", r, l));
    while (fake_conn_unsent(fc) > 0) {
        fake_conn_read(fc, 4096);
        fake_rt_deliver_all(rt);
        fake_conn_drain(fc, SIZE_MAX);
    }
    fake_rt_run(rt);
    cr_assert_eq(fake_rt_wants_refused(rt), 2);
    assert_received(fc, before,
                    "SERVER_ERROR out of memory storing object\r\n"
                    "SERVER_ERROR out of memory storing object\r\nEND\r\nMN\r\n");
    finish();
}

Test(mc_server, quit_behind_holes_closes_only_once_their_values_are_sent)
{
    start_large(2, LARGE_LIMIT, 0);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    const char *k = key_on(2, 1, "q");
    char *v = fill(40000, 'q');
    store_value(fc, k, v);
    size_t before = fake_conn_received(fc)->wpos;
    fake_conn_send_str(fc, format("get %s\r\nget %s\r\nquit\r\nmn\r\n", k, k));
    fake_conn_read(fc, SIZE_MAX);
    fake_rt_deliver_all(rt);
    cr_assert_not(fake_conn_closed(fc), "the values are still to be sent");
    fake_rt_run(rt);
    cr_assert(fake_conn_closed(fc));
    cr_assert_str_eq(fake_conn_close_reason(fc), "RT_CLOSE");
    char *one = format("%sEND\r\n", hit(k, v));
    assert_received(fc, before, format("%s%s", one, one));
    finish();
}

/*
 * A get of 40 keys of some 250 bytes each, all this worker's, behind a get whose value comes
 * back from the other worker as a hole: the long keys' own holes and headers, held behind it,
 * must stay under the limit, so that once the client reads, everything comes.
 */
static void
long_keys_behind_a_remote_hole(size_t limit)
{
    start_large(2, limit, 0);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    const char *r = key_on(2, 1, "remote");
    const char *keys[40];
    char *vals[40];
    char *v = fill(30000, 'w');
    store_value(fc, r, v);
    char prefix[241];
    memset(prefix, 'K', 240);
    prefix[240] = '\0';
    for (unsigned i = 0; i < 40; i++) {
        keys[i] = key_on(2, 0, format("%s%02u_", prefix, i));
        vals[i] = v;
        store_value(fc, keys[i], v);
    }
    size_t before = fake_conn_received(fc)->wpos;
    fake_conn_send_str(fc, format("get %s\r\nget", r));
    for (unsigned i = 0; i < 40; i++) {
        fake_conn_send_str(fc, format(" %s", keys[i]));
    }
    fake_conn_send_str(fc, "\r\nmn\r\n");
    for (int round = 0; round < 20; round++) {
        fake_conn_read(fc, SIZE_MAX);
        fake_rt_deliver_all(rt);
    }
    cr_assert_leq(fake_conn_output_peak(fc), limit + LARGE_PART_MAX + 4096,
                  "%zu bytes of output held", fake_conn_output_peak(fc));
    while (fake_conn_drain(fc, 1000) > 0) {
        fake_rt_deliver_all(rt);
    }
    fake_rt_run(rt);
    const char *p = fake_conn_text(fc) + before;
    expect_get_reply(&p, &r, &v, 1, false);
    expect_get_reply(&p, keys, vals, 40, false);
    cr_assert_str_eq(p, "MN\r\n");
    cr_assert_eq(fake_conn_held(fc), 0);
    finish();
}

Test(mc_server, long_keys_held_behind_a_remote_hole_all_arrive_under_a_4_kib_limit)
{
    long_keys_behind_a_remote_hole(4 << 10);
}

Test(mc_server, long_keys_held_behind_a_remote_hole_all_arrive_under_a_16_kib_limit)
{
    long_keys_behind_a_remote_hole(16 << 10);
}

Test(mc_server, long_keys_held_behind_a_remote_hole_all_arrive_under_a_1_mib_limit)
{
    long_keys_behind_a_remote_hole(1 << 20);
}

/* ---- randomized: schedules do not change what the client gets ---- */

#define RANDOM_KEYS  60
#define RANDOM_READS 60

static uint64_t rng_state;

static uint64_t
rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* The sets of RANDOM_KEYS values of every size (a few bytes to past the 16 KiB limit), then a
 * pipeline of reads: single and multi-key gets (of up to 100 keys, some missing), mg v, mn. */
static void
random_scripts(unsigned seed, struct buf *load, struct buf *reads)
{
    static const size_t sizes[] = {5, 100, 1000, 4000, 6000, 20000, 60000};
    rng_state = seed * UINT64_C(2654435761) + 1;
    buf_init(load, 1 << 16, 1 << 28);
    buf_init(reads, 1 << 16, 1 << 28);
    for (int i = 0; i < RANDOM_KEYS; i++) {
        size_t n = sizes[rnd() % 7] + rnd() % 50;
        cr_assert_eq(buf_printf(load, "set key%d %d 0 %zu\r\n", i, i, n), 0);
        cr_assert_eq(buf_reserve(load, n + 2), 0);
        for (size_t j = 0; j < n; j++) {
            buf_wptr(load)[j] = (char)('a' + (i + j) % 26);
        }
        buf_commit(load, n);
        cr_assert_eq(buf_puts(load, "\r\n"), 0);
    }
    for (int r = 0; r < RANDOM_READS; r++) {
        int any = RANDOM_KEYS + 5;
        switch (rnd() % 4) {
        case 0:
            cr_assert_eq(buf_printf(reads, "get key%d\r\n", (int)(rnd() % any)), 0);
            break;
        case 1:
            cr_assert_eq(buf_puts(reads, "get"), 0);
            for (int j = 1 + (int)(rnd() % 100); j > 0; j--) {
                cr_assert_eq(buf_printf(reads, " key%d", (int)(rnd() % any)), 0);
            }
            cr_assert_eq(buf_puts(reads, "\r\n"), 0);
            break;
        case 2:
            cr_assert_eq(buf_printf(reads, "mg key%d v f k Oq%d\r\n", (int)(rnd() % any), r), 0);
            break;
        default:
            cr_assert_eq(buf_puts(reads, "mn\r\n"), 0);
            break;
        }
    }
    cr_assert_eq(buf_puts(reads, "version\r\n"), 0);
}

/*
 * Run the scripts of seed on a connection of worker 0 and return what the reads got (malloc'd).
 * Without want, everything runs at once; with it, the client sends, reads and the workers
 * deliver in a random order and amounts until it has got as much, and the output held is
 * checked at every step: the limit, one value and 8 KiB at most.
 */
static char *
random_run(unsigned nworkers, size_t limit, unsigned seed, const char *want)
{
    start_large(nworkers, limit, 0);
    struct fake_conn *fc = fake_conn_open(rt, 0);
    struct buf load, reads;
    random_scripts(seed, &load, &reads);
    fake_conn_send(fc, buf_rptr(&load), buf_len(&load));
    fake_rt_run(rt);
    size_t base = fake_conn_received(fc)->wpos;
    cr_assert_eq(base, RANDOM_KEYS * strlen("STORED\r\n"), "seed %u: every value is stored", seed);
    fake_conn_send(fc, buf_rptr(&reads), buf_len(&reads));
    buf_free(&load);
    buf_free(&reads);
    rng_state = seed + 77;
    size_t want_len = want != NULL ? strlen(want) : 0;
    for (int step = 0; want != NULL && step < 200000; step++) {
        if (fake_conn_received(fc)->wpos - base >= want_len || fake_conn_closed(fc)) {
            break;
        }
        unsigned from = (unsigned)(rnd() % nworkers), to = (unsigned)(rnd() % nworkers);
        switch (rnd() % 4) {
        case 0:
            fake_conn_read(fc, 1 + rnd() % 3000);
            break;
        case 1:
            fake_conn_drain(fc, rnd() % 9000);
            break;
        default:
            fake_rt_deliver(rt, from, to, 1 + rnd() % 4);
            break;
        }
        cr_assert_leq(fake_conn_output(fc), limit + LARGE_ITEM_MAX + 8192,
                      "seed %u, %u workers, limit %zu: %zu bytes of output held", seed, nworkers,
                      limit, fake_conn_output(fc));
    }
    fake_rt_run(rt);
    cr_assert_eq(fake_conn_held(fc), 0);
    char *out = strdup(fake_conn_text(fc) + base);
    cr_assert_not_null(out);
    finish();
    return out;
}

Test(mc_server, random_schedules_give_what_one_worker_with_unlimited_room_gives)
{
    static const size_t limits[] = {4 << 10, 16 << 10, 100 << 10, 1 << 20};
    for (unsigned seed = 1; seed <= 8; seed++) {
        char *want = keep(random_run(1, 64 << 20, seed, NULL));
        cr_assert_not_null(strstr(want, "VERSION "), "seed %u: the reads are answered", seed);
        for (unsigned nworkers = 1; nworkers <= 4; nworkers++) {
            size_t limit = limits[(seed + nworkers) % 4];
            char *got = random_run(nworkers, limit, seed, want);
            size_t i = 0;
            while (got[i] != '\0' && got[i] == want[i]) {
                i++;
            }
            keep(got);
            cr_assert(got[i] == want[i],
                      "seed %u, %u workers, limit %zu: byte %zu differs: \"%.60s\" instead of "
                      "\"%.60s\"",
                      seed, nworkers, limit, i, got + i, want + i);
            drop(got);
        }
        drop(want);
    }
}
