/*
 * Unit tests of the memcache request parser: every command, memcached's exact error replies and
 * recoveries, meta flags, and streams split at every byte.
 *
 * The helpers run a byte stream through the parser the way a connection would (delivered in
 * pieces, consumed as requests complete) and describe what came out, so tests can compare whole
 * conversations as strings.
 */

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "petrel/memcache.h"

#define LIT_STREAM(s) s, sizeof(s) - 1

static const struct mc_parser_opts test_opts = {.max_value = 1000, .max_get_line = 8192};

/* One line per parser result, with every field a server would use. */
static void
describe(struct buf *out, enum mc_parse_rc rc, const struct mc_req *r)
{
    if (rc == MC_PARSE_SKIP) {
        buf_printf(out, "skip %zu\n", r->consumed);
        return;
    }
    if (rc == MC_PARSE_ERROR) {
        buf_printf(out, "error [%.*s] quiet=%d action=%d swallow=%zu consumed=%zu\n",
                   r->err.msg ? (int)r->err.len : 0, r->err.msg ? r->err.msg : "", r->err.quiet,
                   (int)r->err.action, r->err.swallow, r->consumed);
        return;
    }
    buf_printf(out, "%s consumed=%zu noreply=%d", mc_cmd_name(r->cmd), r->consumed, r->noreply);
    if (r->cmd >= MC_CMD_GET && r->cmd <= MC_CMD_GATS) {
        struct mc_key_iter it;
        const char *k;
        size_t len;
        mc_args_begin(r, &it);
        buf_printf(out, " exptime=%d keys=%u:", r->exptime, r->nkeys);
        while (mc_args_next(&it, &k, &len)) {
            buf_printf(out, " %.*s", (int)len, k);
        }
    } else if (r->nkeys == 1) {
        buf_printf(out, " key=%.*s", (int)r->klen, r->key);
    }
    if (mc_cmd_is_storage(r->cmd)) {
        buf_printf(out, " flags=%u exptime=%d cas=%llu value=[%.*s]", r->flags, r->exptime,
                   (unsigned long long)r->cas, (int)r->vlen, r->val);
    }
    if (r->cmd >= MC_CMD_MG && r->cmd <= MC_CMD_MA) {
        buf_printf(out, " seen=%llx flags=%.*s", (unsigned long long)r->meta.seen,
                   (int)r->meta.nflags, r->meta.order);
    }
    if (r->cmd == MC_CMD_INCR || r->cmd == MC_CMD_DECR) {
        buf_printf(out, " delta=%llu", (unsigned long long)r->delta);
    }
    buf_printf(out, "\n");
}

/*
 * Feed `in` delivering the bytes up to each cut in turn, then the rest; parse everything
 * available after each delivery. Returns the transcript (caller frees).
 */
static char *
transcript_cuts(const char *in, size_t n, const size_t *cuts, size_t ncuts,
                const struct mc_parser_opts *opts)
{
    struct mc_parser p;
    struct mc_req req;
    struct buf out;
    buf_init(&out, 256, 1 << 24);
    mc_parser_init(&p, opts);
    size_t pos = 0;
    size_t skipped = 0;
    for (size_t step = 0; step <= ncuts; step++) {
        size_t avail = step < ncuts ? cuts[step] : n;
        for (;;) {
            enum mc_parse_rc rc = mc_parse(&p, in + pos, avail - pos, &req);
            if (rc == MC_PARSE_AGAIN) {
                break;
            }
            /* Swallowing happens in as many steps as deliveries: report only the total. */
            if (rc == MC_PARSE_SKIP) {
                skipped += req.consumed;
                pos += req.consumed;
                continue;
            }
            if (skipped > 0) {
                buf_printf(&out, "skipped %zu\n", skipped);
                skipped = 0;
            }
            describe(&out, rc, &req);
            if (rc == MC_PARSE_ERROR && req.err.action == MC_ERR_CLOSE) {
                goto end;
            }
            cr_assert_leq(req.consumed, avail - pos);
            pos += req.consumed;
        }
    }
end:
    if (skipped > 0) {
        buf_printf(&out, "skipped %zu\n", skipped);
    }
    buf_append(&out, "", 1);
    char *s = strdup(buf_rptr(&out));
    buf_free(&out);
    return s;
}

static char *
transcript(const char *in, size_t n, const struct mc_parser_opts *opts)
{
    return transcript_cuts(in, n, NULL, 0, opts);
}

/*
 * What a client would read back for a stream given at once: error replies as composed, "[cmd]"
 * for each request, "[close]" when the connection is dropped. Caller frees.
 */
static char *
wire_opts(const char *in, size_t n, const struct mc_parser_opts *opts)
{
    struct mc_parser p;
    struct mc_req req;
    struct buf out;
    buf_init(&out, 256, 1 << 24);
    mc_parser_init(&p, opts);
    size_t pos = 0;
    for (;;) {
        enum mc_parse_rc rc = mc_parse(&p, in + pos, n - pos, &req);
        if (rc == MC_PARSE_AGAIN) {
            break;
        }
        if (rc == MC_PARSE_ERROR) {
            if (req.err.action == MC_ERR_CLOSE) {
                buf_puts(&out, "[close]");
                break;
            }
            mc_compose_error(&out, &req.err);
        } else if (rc == MC_PARSE_OK) {
            buf_printf(&out, "[%s]", mc_cmd_name(req.cmd));
        }
        pos += req.consumed;
    }
    buf_append(&out, "", 1);
    char *s = strdup(buf_rptr(&out));
    buf_free(&out);
    return s;
}

static char *
wire(const char *in)
{
    return wire_opts(in, strlen(in), &test_opts);
}

#define cr_assert_wire(in, expect)                                                                 \
    do {                                                                                           \
        char *got_ = wire(in);                                                                     \
        cr_assert_str_eq(got_, expect, "input %s", in);                                            \
        free(got_);                                                                                \
    } while (0)

/* Parse exactly one request from a NUL-terminated string; asserts the result code. */
static void
parse_one(const char *in, enum mc_parse_rc expect, struct mc_req *req)
{
    struct mc_parser p;
    mc_parser_init(&p, &test_opts);
    enum mc_parse_rc rc = mc_parse(&p, in, strlen(in), req);
    cr_assert_eq(rc, expect, "input %s: rc %d, expected %d", in, (int)rc, (int)expect);
}

/* ---- text commands that parse ---- */

Test(memcache, get_single_key_is_a_view_into_the_input)
{
    const char *in = "get foo\r\n";
    struct mc_req r;
    parse_one(in, MC_PARSE_OK, &r);
    cr_assert_eq(r.cmd, MC_CMD_GET);
    cr_assert_eq(r.nkeys, 1);
    cr_assert_eq(r.klen, 3);
    cr_assert_eq(r.key, in + 4);
    cr_assert_eq(r.consumed, strlen(in));
}

Test(memcache, get_with_hundreds_of_keys_iterates_them_in_order)
{
    struct buf in;
    buf_init(&in, 64, 1 << 20);
    buf_puts(&in, "get");
    for (int i = 0; i < 500; i++) {
        buf_printf(&in, " key:%d", i);
    }
    buf_puts(&in, "\r\n");
    struct mc_parser p;
    struct mc_req r;
    mc_parser_init(&p, &test_opts);
    cr_assert_eq(mc_parse(&p, buf_rptr(&in), buf_len(&in), &r), MC_PARSE_OK);
    cr_assert_eq(r.nkeys, 500);
    struct mc_key_iter it;
    const char *k;
    size_t len;
    char want[32];
    int i = 0;
    mc_args_begin(&r, &it);
    while (mc_args_next(&it, &k, &len)) {
        snprintf(want, sizeof(want), "key:%d", i++);
        cr_assert_eq(len, strlen(want));
        cr_assert_eq(memcmp(k, want, len), 0);
    }
    cr_assert_eq(i, 500);
    buf_free(&in);
}

Test(memcache, gets_gat_and_gats_parse_exptime_and_keys)
{
    char *t = transcript(LIT_STREAM("gets a b\r\ngat 10 a\r\ngats -1 a b c\r\n"), &test_opts);
    cr_assert_str_eq(t, "gets consumed=10 noreply=0 exptime=0 keys=2: a b\n"
                        "gat consumed=10 noreply=0 exptime=10 keys=1: a\n"
                        "gats consumed=15 noreply=0 exptime=-1 keys=3: a b c\n");
    free(t);
}

Test(memcache, gat_without_keys_is_a_format_error)
{
    cr_assert_wire(
        "gat 10\r\ngats 10\r\n",
        "CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line format\r\n");
}

Test(memcache, set_gives_fields_and_a_value_view)
{
    const char *in = "set k 42 100 5\r\nhello\r\n";
    struct mc_req r;
    parse_one(in, MC_PARSE_OK, &r);
    cr_assert_eq(r.cmd, MC_CMD_SET);
    cr_assert_eq(r.flags, 42);
    cr_assert_eq(r.exptime, 100);
    cr_assert_eq(r.vlen, 5);
    cr_assert_eq(r.val, in + 16);
    cr_assert_eq(r.consumed, strlen(in));
    cr_assert_not(r.noreply);
}

Test(memcache, every_storage_command_maps_to_its_enum)
{
    char *t = transcript(LIT_STREAM("add a 0 0 1\r\nx\r\nreplace a 0 0 1\r\nx\r\n"
                                    "append a 0 0 1\r\nx\r\nprepend a 0 0 1\r\nx\r\n"),
                         &test_opts);
    cr_assert_str_eq(t, "add consumed=16 noreply=0 key=a flags=0 exptime=0 cas=0 value=[x]\n"
                        "replace consumed=20 noreply=0 key=a flags=0 exptime=0 cas=0 value=[x]\n"
                        "append consumed=19 noreply=0 key=a flags=0 exptime=0 cas=0 value=[x]\n"
                        "prepend consumed=20 noreply=0 key=a flags=0 exptime=0 cas=0 value=[x]\n");
    free(t);
}

Test(memcache, cas_takes_a_64_bit_unique)
{
    struct mc_req r;
    parse_one("cas k 4294967295 0 1 18446744073709551615 noreply\r\nx\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.cmd, MC_CMD_CAS);
    cr_assert_eq(r.cas, UINT64_MAX);
    cr_assert_eq(r.flags, UINT32_MAX);
    cr_assert(r.noreply);
}

Test(memcache, value_may_hold_any_bytes_including_crlf)
{
    static const char in[] = "set k 0 0 6\r\n\r\n\0\r\n\n\r\n";
    struct mc_parser p;
    struct mc_req r;
    mc_parser_init(&p, &test_opts);
    cr_assert_eq(mc_parse(&p, in, sizeof(in) - 1, &r), MC_PARSE_OK);
    cr_assert_eq(r.vlen, 6);
    cr_assert_eq(memcmp(r.val, "\r\n\0\r\n\n", 6), 0);
    cr_assert_eq(r.consumed, sizeof(in) - 1);
}

Test(memcache, extra_token_after_storage_args_is_ignored_unless_noreply)
{
    struct mc_req r;
    parse_one("set a 0 0 1 x\r\nb\r\n", MC_PARSE_OK, &r);
    cr_assert_not(r.noreply);
    parse_one("set a 0 0 1 noreply\r\nb\r\n", MC_PARSE_OK, &r);
    cr_assert(r.noreply);
}

Test(memcache, numbers_accept_plus_sign_and_leading_zeros)
{
    struct mc_req r;
    parse_one("set a +7 -0 01\r\nb\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.flags, 7);
    cr_assert_eq(r.vlen, 1);
}

Test(memcache, incr_and_decr_take_a_64_bit_delta)
{
    char *t =
        transcript(LIT_STREAM("incr n 18446744073709551615\r\ndecr n 1 noreply\r\n"), &test_opts);
    cr_assert_str_eq(t, "incr consumed=29 noreply=0 key=n delta=18446744073709551615\n"
                        "decr consumed=18 noreply=1 key=n delta=1\n");
    free(t);
}

Test(memcache, delete_accepts_legacy_zero_and_noreply)
{
    char *t = transcript(LIT_STREAM("delete a\r\ndelete a 0\r\ndelete a noreply\r\n"
                                    "delete a 0 noreply\r\n"),
                         &test_opts);
    cr_assert_str_eq(t, "delete consumed=10 noreply=0 key=a\n"
                        "delete consumed=12 noreply=0 key=a\n"
                        "delete consumed=18 noreply=1 key=a\n"
                        "delete consumed=20 noreply=1 key=a\n");
    free(t);
}

Test(memcache, exptime_becomes_absolute_as_memcached_reads_it)
{
    const int64_t now = 1700000000;
    cr_assert_eq(mc_exptime_abs(0, now), 0);
    cr_assert_eq(mc_exptime_abs(10, now), now + 10);
    cr_assert_eq(mc_exptime_abs(MC_EXPTIME_REL_MAX, now), now + MC_EXPTIME_REL_MAX);
    cr_assert_eq(mc_exptime_abs(MC_EXPTIME_REL_MAX + 1, now), MC_EXPTIME_REL_MAX + 1); /* past */
    cr_assert_eq(mc_exptime_abs(now + 5, now), now + 5);
    cr_assert_eq(mc_exptime_abs(-1, now), -1);
}

Test(memcache, touch_takes_key_and_exptime)
{
    struct mc_req r;
    parse_one("touch k -5 noreply\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.cmd, MC_CMD_TOUCH);
    cr_assert_eq(r.exptime, -5);
    cr_assert(r.noreply);
}

Test(memcache, flush_all_takes_optional_delay_and_noreply)
{
    struct mc_req r;
    parse_one("flush_all\r\n", MC_PARSE_OK, &r);
    cr_assert_not(r.has_delay);
    parse_one("flush_all 30\r\n", MC_PARSE_OK, &r);
    cr_assert(r.has_delay);
    cr_assert_eq(r.exptime, 30);
    parse_one("flush_all noreply\r\n", MC_PARSE_OK, &r);
    cr_assert(r.noreply);
    cr_assert_not(r.has_delay);
    parse_one("flush_all 5 noreply\r\n", MC_PARSE_OK, &r);
    cr_assert(r.noreply);
    cr_assert_eq(r.exptime, 5);
}

Test(memcache, version_quit_and_mn_ignore_arguments)
{
    cr_assert_wire("version\r\nversion x\r\nmn\r\nmn x\r\nquit x\r\n",
                   "[version][version][mn][mn][quit]");
}

Test(memcache, verbosity_takes_a_level)
{
    struct mc_req r;
    parse_one("verbosity 2 noreply\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.verbosity, 2);
    cr_assert(r.noreply);
}

Test(memcache, stats_passes_its_arguments)
{
    struct mc_req r;
    parse_one("stats\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.nargs, 0);
    parse_one("stats  settings x\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.nargs, 2);
    struct mc_key_iter it;
    const char *a;
    size_t len;
    mc_args_begin(&r, &it);
    cr_assert(mc_args_next(&it, &a, &len));
    cr_assert_eq(len, 8);
    cr_assert_eq(memcmp(a, "settings", 8), 0);
}

Test(memcache, slabs_arguments_are_checked_as_memcached_does)
{
    struct mc_req r;
    parse_one("slabs automove 2\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.cmd, MC_CMD_SLABS);
    cr_assert_eq(r.slabs, MC_SLABS_OK);
    parse_one("slabs reassign 4 4\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.slabs, MC_SLABS_SAME);
    parse_one("slabs r 4 5\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.slabs, MC_SLABS_BADCLASS);
    parse_one("slabs automove ratio 0.5 noreply\r\n", MC_PARSE_OK, &r);
    cr_assert(r.noreply);
    cr_assert_wire("slabs automove invalid\r\nslabs automove 3\r\nslabs\r\nslabs automove\r\n"
                   "slabs automove window 2\r\nslabs reassign x 1\r\n"
                   "slabs automove freeratio x\r\nslabs automove x noreply\r\n",
                   "CLIENT_ERROR bad command line format\r\nERROR\r\nERROR\r\nERROR\r\n"
                   "CLIENT_ERROR automove window too low or too high\r\n"
                   "CLIENT_ERROR bad command line format\r\nERROR\r\n");
}

Test(memcache, shutdown_is_refused_unless_enabled)
{
    cr_assert_wire("shutdown\r\n", "SERVER_ERROR: shutdown not enabled\r\n");
    cr_assert_wire("shutdown noreply\r\n", "");
    struct mc_parser_opts o = test_opts;
    o.shutdown_enabled = true;
    char *t = wire_opts(LIT_STREAM("shutdown\r\nshutdown graceful\r\nshutdown g\r\n"
                                   "shutdown now\r\n"),
                        &o);
    cr_assert_str_eq(t, "[shutdown][shutdown][shutdown]CLIENT_ERROR invalid shutdown mode\r\n");
    free(t);
}

Test(memcache, leading_spaces_are_no_command_and_bare_newlines_are_accepted)
{
    /* memcached 1.6.45 reads the command from the line's first byte: a leading space leaves
     * none. Extra spaces between tokens and bare "\n" endings are fine. */
    cr_assert_wire("  get a\nset  a  0 0 1\nb\r\n", "ERROR\r\n[set]");
}

/* ---- text errors: memcached's exact replies and recoveries ---- */

Test(memcache, unknown_or_empty_or_uppercase_command_is_error)
{
    /* Lines shorter than four bytes (with their "\n") are format errors in 1.6.45. */
    cr_assert_wire("foo\r\nGET a\r\nmx a\r\n   \r\n", "ERROR\r\nERROR\r\nERROR\r\nERROR\r\n");
    cr_assert_wire("\r\n\nx\r\nab\nmn\n",
                   "CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line "
                   "format\r\nCLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command "
                   "line format\r\nCLIENT_ERROR bad command line format\r\n");
}

Test(memcache, get_without_key_is_error)
{
    cr_assert_wire("get\r\nget \r\ngets\r\ngat\r\ngat \r\n",
                   "CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line "
                   "format\r\nCLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command "
                   "line format\r\nCLIENT_ERROR bad command line format\r\n");
}

Test(memcache, key_of_250_bytes_is_accepted_and_251_refused)
{
    char in[600];
    snprintf(in, sizeof(in), "get %250s\r\n", "k");
    for (char *p = in + 4; *p == ' '; p++) {
        *p = 'k';
    }
    cr_assert_wire(in, "[get]");
    snprintf(in, sizeof(in), "get a %251s b\r\n", "k");
    for (char *p = in + 6; *p == ' '; p++) {
        *p = 'k';
    }
    /* memcached 1.6.45 follows the error with an empty line; with noreply, only that. */
    cr_assert_wire(in, "CLIENT_ERROR bad command line format\r\n\r\n");
    snprintf(in, sizeof(in), "get %251s noreply\r\n", "k");
    for (char *p = in + 4; *p == ' '; p++) {
        *p = 'k';
    }
    cr_assert_wire(in, "\r\n");
}

Test(memcache, key_with_control_character_is_refused)
{
    cr_assert_wire("get a\tb\r\n", "CLIENT_ERROR bad command line format\r\n\r\n");
    cr_assert_wire("get a\x7f\r\n", "CLIENT_ERROR bad command line format\r\n\r\n");
    cr_assert_wire("delete a\x01\r\n", "CLIENT_ERROR bad command line format\r\n");
}

Test(memcache, bad_set_line_is_refused_and_its_data_swallowed)
{
    /* Bad flags or exptime: the line is refused and, its length being known, the data block
     * swallowed (memcached 1.6.45). */
    cr_assert_wire("set a x 0 1\r\nb\r\nmn\r\n", "CLIENT_ERROR bad command line format\r\n[mn]");
    cr_assert_wire("set a 0 abc 1\r\nb\r\nmn\r\n", "CLIENT_ERROR bad command line format\r\n[mn]");
    cr_assert_wire("set a -1 0 1\r\nb\r\nmn\r\n", "CLIENT_ERROR bad command line format\r\n[mn]");
    /* A bad length leaves the block to be read as a command ("b" is too short for one). */
    cr_assert_wire(
        "set a 0 0 1x\r\nb\r\n",
        "CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line format\r\n");
    cr_assert_wire(
        "set a 0 0 +1\r\nb\r\n",
        "CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line format\r\n");
}

Test(memcache, negative_or_huge_length_is_a_format_error)
{
    cr_assert_wire("set a 0 0 -1\r\n", "CLIENT_ERROR bad command line format\r\n");
    cr_assert_wire("set a 0 0 2147483646\r\n", "CLIENT_ERROR bad command line format\r\n");
    cr_assert_wire("set a 0 0 4294967297\r\n", "CLIENT_ERROR bad command line format\r\n");
}

Test(memcache, flags_beyond_32_bits_wrap)
{
    /* memcached reads them with strtoul and keeps the low 32 bits. */
    struct mc_req r;
    parse_one("set a 4294967297 0 1\r\nb\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.flags, 1);
    parse_one("set a +7 0 1\r\nb\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.flags, 7);
    cr_assert_wire("set a 18446744073709551616 0 1\r\nb\r\nmn\r\n",
                   "CLIENT_ERROR bad command line format\r\n[mn]");
}

Test(memcache, storage_with_too_few_tokens_is_a_format_error)
{
    cr_assert_wire("set a 0 0\r\n", "CLIENT_ERROR bad command line format\r\n");
    /* Tokens past the sixth are ignored, and noreply is only ever the last one. */
    cr_assert_wire("set a 0 0 1 noreply x\r\nb\r\n", "[set]");
    struct mc_req r;
    parse_one("set a 0 0 1 x noreply\r\nb\r\n", MC_PARSE_OK, &r);
    cr_assert(r.noreply);
}

Test(memcache, cas_with_bad_unique_is_a_format_error)
{
    cr_assert_wire("cas a 0 0 1 x\r\nb\r\nmn\r\n", "CLIENT_ERROR bad command line format\r\n[mn]");
    cr_assert_wire("cas a 0 0 1 -1\r\nb\r\nmn\r\n", "CLIENT_ERROR bad command line format\r\n[mn]");
    cr_assert_wire("cas a 0 0 1 +1\r\nb\r\nmn\r\n", "CLIENT_ERROR bad command line format\r\n[mn]");
    cr_assert_wire("cas a 0 0 1 18446744073709551616\r\nb\r\nmn\r\n",
                   "CLIENT_ERROR bad command line format\r\n[mn]");
    /* No unique at all: the same, and noreply (as the sixth token) silences it. */
    cr_assert_wire("cas a 0 0 1\r\nb\r\nmn\r\n", "CLIENT_ERROR bad command line format\r\n[mn]");
    cr_assert_wire("cas a 0 0 1 noreply\r\nb\r\nmn\r\n", "[mn]");
}

Test(memcache, noreply_silences_errors_of_text_commands)
{
    cr_assert_wire("set a x 0 1 noreply\r\nb\r\n", "");
    cr_assert_wire("delete a\x01 noreply\r\n", "");
    cr_assert_wire("incr a x noreply\r\n", "");
    cr_assert_wire("touch a x noreply\r\n", "");
    cr_assert_wire("flush_all x noreply\r\n", "");
    cr_assert_wire("verbosity x noreply\r\n", "");
    cr_assert_wire("foo noreply\r\n", "");
    /* Not the errors found before noreply is looked for: too few tokens, a bad length. */
    cr_assert_wire("incr noreply\r\nset a 0 noreply\r\nset a 0 0 x noreply\r\n",
                   "CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line "
                   "format\r\nCLIENT_ERROR bad command line format\r\n");
}

Test(memcache, data_block_without_crlf_is_a_bad_data_chunk)
{
    /* The block is read at its length, then refused; "\n" is left, a line too short. */
    cr_assert_wire("set a 0 0 1\r\nabc\r\nget a\r\n",
                   "CLIENT_ERROR bad data chunk\r\nCLIENT_ERROR bad command line format\r\n[get]");
    cr_assert_wire("set a 0 0 1\r\nb\n\nget a\r\n", "CLIENT_ERROR bad data chunk\r\n[get]");
    cr_assert_wire("set a 0 0 1 noreply\r\nabc\r\nget a\r\n",
                   "CLIENT_ERROR bad command line format\r\n[get]");
}

Test(memcache, too_large_value_is_refused_and_swallowed)
{
    struct buf in;
    buf_init(&in, 64, 1 << 20);
    buf_puts(&in, "set a 0 0 5000\r\n");
    for (int i = 0; i < 500; i++) {
        buf_puts(&in, "get a\r\nxyz");
    }
    buf_puts(&in, "\r\nget a\r\n");
    buf_append(&in, "", 1);
    cr_assert_wire(buf_rptr(&in), "SERVER_ERROR object too large for cache\r\n[get]");
    buf_free(&in);
}

Test(memcache, too_large_value_is_swallowed_silently_with_noreply)
{
    struct mc_req r;
    parse_one("set a 0 0 1001 noreply\r\n", MC_PARSE_ERROR, &r);
    cr_assert_eq(r.err.action, MC_ERR_SWALLOW);
    cr_assert_eq(r.err.swallow, 1003);
    cr_assert(r.err.quiet);
    cr_assert_eq(r.consumed, 24);
}

Test(memcache, value_at_the_limit_is_accepted)
{
    struct buf in;
    buf_init(&in, 64, 1 << 20);
    buf_puts(&in, "set a 0 0 1000\r\n");
    for (int i = 0; i < 1000; i++) {
        buf_puts(&in, "v");
    }
    buf_puts(&in, "\r\n");
    buf_append(&in, "", 1);
    cr_assert_wire(buf_rptr(&in), "[set]");
    buf_free(&in);
}

Test(memcache, swallow_drops_the_block_as_it_streams_in)
{
    struct mc_parser p;
    struct mc_req r;
    mc_parser_init(&p, &test_opts);
    const char *line = "set a 0 0 2000\r\n";
    cr_assert_eq(mc_parse(&p, line, strlen(line), &r), MC_PARSE_ERROR);
    cr_assert_eq(r.consumed, strlen(line));
    static char block[2002];
    memset(block, 'z', sizeof(block));
    size_t dropped = 0;
    while (dropped < sizeof(block)) {
        size_t avail = sizeof(block) - dropped < 700 ? sizeof(block) - dropped : 700;
        cr_assert_eq(mc_parse(&p, block + dropped, avail, &r), MC_PARSE_SKIP);
        dropped += r.consumed;
    }
    cr_assert_eq(dropped, sizeof(block));
    cr_assert_eq(mc_parse(&p, "mn\r\n", 4, &r), MC_PARSE_OK);
    cr_assert_eq(r.cmd, MC_CMD_MN);
}

Test(memcache, line_of_2049_bytes_without_newline_closes_the_connection)
{
    static char in[2050];
    memset(in, 'x', sizeof(in));
    struct mc_parser p;
    struct mc_req r;
    mc_parser_init(&p, &test_opts);
    cr_assert_eq(mc_parse(&p, in, 2048, &r), MC_PARSE_AGAIN);
    cr_assert_eq(mc_parse(&p, in, 2049, &r), MC_PARSE_ERROR);
    cr_assert_eq(r.err.action, MC_ERR_CLOSE);
}

Test(memcache, long_line_closes_even_when_its_newline_is_buffered)
{
    static char in[3000];
    memcpy(in, "set a 0 0 1", 11);
    memset(in + 11, ' ', sizeof(in) - 11);
    memcpy(in + 2990, "\r\nb\r\n", 5);
    struct mc_parser p;
    struct mc_req r;
    mc_parser_init(&p, &test_opts);
    cr_assert_eq(mc_parse(&p, in, 2995, &r), MC_PARSE_ERROR);
    cr_assert_eq(r.err.action, MC_ERR_CLOSE);
}

Test(memcache, long_get_line_is_allowed_but_long_gat_is_not)
{
    struct buf in;
    buf_init(&in, 64, 1 << 20);
    buf_puts(&in, "get");
    for (int i = 0; i < 1500; i++) {
        buf_puts(&in, " a");
    }
    buf_puts(&in, "\r\n");
    struct mc_parser p;
    struct mc_req r;
    mc_parser_init(&p, &test_opts);
    cr_assert_eq(mc_parse(&p, buf_rptr(&in), buf_len(&in) - 2, &r), MC_PARSE_AGAIN);
    cr_assert_eq(mc_parse(&p, buf_rptr(&in), buf_len(&in), &r), MC_PARSE_OK);
    cr_assert_eq(r.nkeys, 1500);
    memcpy(buf_rptr(&in), "gat 0", 5);
    mc_parser_init(&p, &test_opts);
    cr_assert_eq(mc_parse(&p, buf_rptr(&in), buf_len(&in) - 2, &r), MC_PARSE_ERROR);
    cr_assert_eq(r.err.action, MC_ERR_CLOSE);
    buf_free(&in);
}

Test(memcache, get_line_over_its_bound_closes)
{
    static char in[9000];
    memcpy(in, "get ", 4);
    memset(in + 4, 'a', sizeof(in) - 4);
    for (size_t i = 10; i < sizeof(in); i += 10) {
        in[i] = ' ';
    }
    struct mc_parser p;
    struct mc_req r;
    mc_parser_init(&p, &test_opts);
    cr_assert_eq(mc_parse(&p, in, 8000, &r), MC_PARSE_AGAIN);
    cr_assert_eq(mc_parse(&p, in, 8192, &r), MC_PARSE_ERROR);
    cr_assert_eq(r.err.action, MC_ERR_CLOSE);
}

Test(memcache, long_get_after_more_than_100_spaces_closes)
{
    static char in[3000];
    memset(in, ' ', 101);
    memcpy(in + 101, "get ", 4);
    memset(in + 105, 'a', sizeof(in) - 105);
    struct mc_parser p;
    struct mc_req r;
    mc_parser_init(&p, &test_opts);
    cr_assert_eq(mc_parse(&p, in, sizeof(in), &r), MC_PARSE_ERROR);
    cr_assert_eq(r.err.action, MC_ERR_CLOSE);
}

Test(memcache, http_request_line_closes_silently)
{
    cr_assert_wire("GET / HTTP/1.1\r\n", "[close]");
    cr_assert_wire("get a HTTP/1.1\r\n", "[get]");
}

Test(memcache, incr_with_bad_delta_is_refused)
{
    cr_assert_wire("incr n -1\r\nincr n +1\r\nincr n 18446744073709551616\r\nincr n\r\n"
                   "incr n 1 x\r\n",
                   "CLIENT_ERROR invalid numeric delta argument\r\n"
                   "CLIENT_ERROR invalid numeric delta argument\r\n"
                   "CLIENT_ERROR invalid numeric delta argument\r\n"
                   "CLIENT_ERROR bad command line format\r\n[incr]");
}

Test(memcache, delete_ignores_extra_tokens)
{
    /* memcached 1.6.45 ignores what follows the key (but a last "noreply"). */
    cr_assert_wire("delete a 1\r\ndelete a x y z\r\ndelete\r\ndelete a 0 noreply\r\n",
                   "[delete][delete]CLIENT_ERROR bad command line format\r\n[delete]");
    struct mc_req r;
    parse_one("delete a x noreply\r\n", MC_PARSE_OK, &r);
    cr_assert(r.noreply);
}

Test(memcache, touch_and_gat_with_bad_exptime_are_refused)
{
    cr_assert_wire(
        "touch a x\r\ntouch a\r\ngat x a\r\ntouch a +1\r\n",
        "CLIENT_ERROR invalid exptime argument\r\nCLIENT_ERROR bad command line format\r\n"
        "CLIENT_ERROR invalid exptime argument\r\n"
        "CLIENT_ERROR invalid exptime argument\r\n");
}

Test(memcache, flush_all_with_bad_delay_is_refused)
{
    cr_assert_wire("flush_all x\r\nflush_all +1\r\nflush_all 99999999999\r\n",
                   "CLIENT_ERROR invalid exptime argument\r\n"
                   "CLIENT_ERROR invalid exptime argument\r\n"
                   "CLIENT_ERROR invalid exptime argument\r\n");
    /* Tokens after the delay are ignored. */
    cr_assert_wire("flush_all 1 2 3\r\nflush_all 10 x\r\n", "[flush_all][flush_all]");
}

Test(memcache, verbosity_with_bad_level_is_refused)
{
    cr_assert_wire("verbosity\r\nverbosity x\r\nverbosity -1\r\nverbosity +1\r\n"
                   "verbosity 1 2 3\r\n",
                   "CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line "
                   "format\r\nCLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command "
                   "line format\r\n[verbosity]");
}

/* ---- meta commands ---- */

Test(memcache, mg_flags_are_parsed_into_bits_order_and_values)
{
    struct mc_req r;
    parse_one("mg foo s v k Oxy f t c h l q u T30 N-1 R5 E9 P L\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.cmd, MC_CMD_MG);
    cr_assert_eq(r.klen, 3);
    cr_assert_eq(r.meta.nflags, 17);
    cr_assert_eq(memcmp(r.meta.order, "svkOftchlquTNREPL", 17), 0);
    cr_assert(r.meta.seen & MC_MF('v'));
    cr_assert(r.meta.seen & MC_MF('O'));
    cr_assert_not(r.meta.seen & MC_MF('b'));
    cr_assert_eq(r.meta.opaque_len, 2);
    cr_assert_eq(memcmp(r.meta.opaque, "xy", 2), 0);
    cr_assert_eq(r.meta.ttl, 30);
    cr_assert_eq(r.meta.vivify_ttl, -1);
    cr_assert_eq(r.meta.recache_ttl, 5);
    cr_assert_eq(r.meta.new_cas, 9);
    cr_assert(r.noreply);
}

Test(memcache, mg_without_key_or_with_bad_key_is_a_format_error)
{
    cr_assert_wire("mg\r\nmg a\x01\r\nmd\r\nma\r\n",
                   "CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line "
                   "format\r\nCLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command "
                   "line format\r\n");
}

Test(memcache, meta_duplicate_and_unknown_flags_are_refused)
{
    cr_assert_wire("mg a v v\r\nmg a z\r\nmg a v z v\r\nmg a 1\r\nmg a [\r\n",
                   "CLIENT_ERROR duplicate flag\r\nCLIENT_ERROR invalid flag\r\n"
                   "CLIENT_ERROR invalid flag\r\nCLIENT_ERROR invalid flag\r\n"
                   "CLIENT_ERROR invalid flag\r\n");
    /* A flag starting with neither a letter-range byte nor a digit fails the whole line. */
    cr_assert_wire("mg a \xff\r\nmg a v !\r\nmg a ~\r\n",
                   "CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line "
                   "format\r\nCLIENT_ERROR bad command line format\r\n");
}

Test(memcache, meta_bad_token_values_are_refused)
{
    cr_assert_wire("mg a Tx\r\nmg a T\r\nmg a N\r\nmg a C-1\r\n",
                   "CLIENT_ERROR bad token in command line format\r\n"
                   "CLIENT_ERROR bad token in command line format\r\n"
                   "CLIENT_ERROR bad token in command line format\r\n"
                   "CLIENT_ERROR bad token in command line format\r\n");
}

Test(memcache, meta_line_with_too_many_flags_is_refused)
{
    /* 20 tokens are fine (here J fails on its own), 21 are too many. */
    cr_assert_wire("mg a c f h k l s t v u q O P L x I D J M\r\n",
                   "CLIENT_ERROR invalid numeric initial value\r\n");
    cr_assert_wire("mg a 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19\r\n",
                   "CLIENT_ERROR options flags are too long\r\n");
    cr_assert_wire("md a a b c d e f g h i j k l m n o p q r s\r\n",
                   "CLIENT_ERROR options flags are too long\r\n");
    cr_assert_wire("ma a a b c d e f g h i j k l m n o p q r s\r\n",
                   "CLIENT_ERROR invalid or duplicate flag\r\n");
}

Test(memcache, opaque_of_32_bytes_with_its_o_is_the_limit)
{
    cr_assert_wire("mg a O1234567890123456789012345678901\r\n", "[mg]");
    cr_assert_wire("mg a O12345678901234567890123456789012\r\n",
                   "CLIENT_ERROR opaque token too long\r\n");
}

Test(memcache, base64_key_is_decoded)
{
    struct mc_req r;
    parse_one("mg YWJj b k v\r\n", MC_PARSE_OK, &r);
    cr_assert(r.meta.binary_key);
    cr_assert_eq(r.klen, 3);
    cr_assert_eq(memcmp(r.key, "abc", 3), 0);
    cr_assert_eq(r.klen_raw, 4);
    cr_assert_wire("mg !!!! b\r\nmg a b\r\n",
                   "CLIENT_ERROR error decoding key\r\nCLIENT_ERROR error decoding key\r\n");
}

Test(memcache, md_reports_flag_errors_as_mg_and_ma_alike)
{
    /* md reports each error as mg does; ma reports them all alike. */
    cr_assert_wire("md a z\r\nmd a Cx\r\nmd a q q\r\n",
                   "CLIENT_ERROR invalid flag\r\n"
                   "CLIENT_ERROR bad token in command line format\r\n"
                   "CLIENT_ERROR duplicate flag\r\n");
    cr_assert_wire("ma a Dx\r\nma a Jx\r\nma a z\r\nma a v v\r\n",
                   "CLIENT_ERROR invalid or duplicate flag\r\n"
                   "CLIENT_ERROR invalid or duplicate flag\r\n"
                   "CLIENT_ERROR invalid or duplicate flag\r\n"
                   "CLIENT_ERROR invalid or duplicate flag\r\n");
}

Test(memcache, ma_defaults_to_increment_by_one)
{
    struct mc_req r;
    parse_one("ma n\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.cmd, MC_CMD_MA);
    cr_assert_eq(r.meta.delta, 1);
    cr_assert_eq(r.meta.initial, 0);
    cr_assert_eq(r.meta.mode, 0);
    parse_one("ma n D7 J3 N0 M- q\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.delta, 7);
    cr_assert_eq(r.meta.initial, 3);
    cr_assert_eq(r.meta.mode, '-');
    cr_assert_wire("ma a MX\r\n", "CLIENT_ERROR invalid mode for ma M token\r\n");
}

Test(memcache, ms_parses_value_and_flags)
{
    const char *in = "ms k 3 T60 F5 C77 MA I c k Oo q\r\nabc\r\n";
    struct mc_req r;
    parse_one(in, MC_PARSE_OK, &r);
    cr_assert_eq(r.cmd, MC_CMD_MS);
    cr_assert_eq(r.vlen, 3);
    cr_assert_eq(memcmp(r.val, "abc", 3), 0);
    cr_assert_eq(r.exptime, 60);
    cr_assert_eq(r.flags, 5);
    cr_assert_eq(r.cas, 77);
    cr_assert_eq(r.meta.mode, 'A');
    cr_assert(r.meta.seen & MC_MF('I'));
    cr_assert(r.noreply);
    cr_assert_eq(r.consumed, strlen(in));
}

Test(memcache, ms_flag_error_swallows_the_data_block)
{
    cr_assert_wire("ms a 1 z\r\nb\r\nmn\r\n", "CLIENT_ERROR invalid flag\r\n[mn]");
    cr_assert_wire("ms a 1 Tx q\r\nb\r\nmn\r\n",
                   "CLIENT_ERROR bad token in command line format\r\n[mn]");
    cr_assert_wire("ms a 1 Fx\r\nb\r\nmn\r\n", "CLIENT_ERROR bad command line format\r\n[mn]");
    cr_assert_wire("ms a 1 MX\r\nb\r\nmn\r\n", "CLIENT_ERROR invalid mode for ms M token\r\n[mn]");
    cr_assert_wire("ms a 1 M\r\nb\r\nmn\r\n", "CLIENT_ERROR invalid mode for ms M token\r\n[mn]");
    cr_assert_wire("ms a 1 O1234567890123456789012345678901234\r\nb\r\nmn\r\n",
                   "CLIENT_ERROR opaque token too long\r\n[mn]");
    cr_assert_wire("ms a\x01 1\r\nb\r\nmn\r\n", "CLIENT_ERROR bad command line format\r\n[mn]");
    /* Only the byte after M counts. */
    struct mc_req r;
    parse_one("ms a 1 MEX\r\nb\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.meta.mode, 'E');
}

Test(memcache, ms_bad_length_is_refused_without_swallowing)
{
    cr_assert_wire("ms a\r\nms a x\r\nbb\r\nms a -1\r\nbb\r\n",
                   "CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line "
                   "format\r\nERROR\r\nCLIENT_ERROR bad command line format\r\nERROR\r\n");
    /* So is a flag that fails the tokenizer; too many flags swallow the block. */
    cr_assert_wire("ms a 1 !\r\nbb\r\n", "CLIENT_ERROR bad command line format\r\nERROR\r\n");
    cr_assert_wire("ms a 1 a b c d e f g h i j k l m n o p q r\r\nb\r\nmn\r\n",
                   "CLIENT_ERROR options flags are too long\r\n[mn]");
}

Test(memcache, ms_too_large_is_swallowed_and_bad_chunk_is_never_quiet)
{
    cr_assert_wire("ms a 1001 q\r\n", "SERVER_ERROR object too large for cache\r\n");
    cr_assert_wire("ms a 1 q\r\nbc\r\nmn\r\n",
                   "CLIENT_ERROR bad data chunk\r\nCLIENT_ERROR bad command line format\r\n[mn]");
}

Test(memcache, me_takes_a_key_and_optional_base64)
{
    /* b counts only as the third of four tokens or more, as in memcached 1.6.45. */
    cr_assert_wire("me a\r\nme a x y\r\nme YWJj b x\r\nme\r\nme a b x\r\nme a !\r\n",
                   "[me][me][me]CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command "
                   "line format\r\nCLIENT_ERROR bad command line format\r\n");
    struct mc_req r;
    parse_one("me YWJj b\r\n", MC_PARSE_OK, &r);
    cr_assert(!r.meta.binary_key);
}

/* ---- streaming ---- */

static const char pipeline[] =
    "get a b c\r\n"
    "set k 1 2 5\r\nhello\r\n"
    "gets k\r\n"
    "ms m 2 T9 c k Oab\r\nhi\r\n"
    "mg m v k s t Oq\r\n"
    "bogus\r\n"
    "set big 0 0 1224\r\n"
    "get a\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n"
    "set k 0 0 1 noreply\r\nabc\r\n"
    "incr n 5\r\ndecr n 1 noreply\r\ndelete k 0\r\ntouch k 10\r\n"
    "gat 5 k\r\ngats 5 k l\r\nadd a 0 0 0\r\n\r\nappend a 0 0 1\r\n1\r\n"
    "prepend a 0 0 1\r\n2\r\nreplace a 0 0 1\r\n3\r\ncas a 0 0 1 99\r\n4\r\n"
    "md m q Ox\r\nma n D2 v\r\nme m\r\nmn\r\nmg m z\r\n"
    "flush_all 0\r\nverbosity 1\r\nstats settings\r\nversion\r\n"
    "quit\r\n";

Test(memcache, pipeline_of_mixed_commands_parses_in_order)
{
    char *t = wire_opts(pipeline, sizeof(pipeline) - 1, &test_opts);
    cr_assert_str_eq(t, "[get][set][gets][ms][mg]ERROR\r\n"
                        "SERVER_ERROR object too large for cache\r\n"
                        "CLIENT_ERROR bad command line "
                        "format\r\n[incr][decr][delete][touch][gat][gats][add][append]"
                        "[prepend][replace][cas][md][ma][me][mn]CLIENT_ERROR invalid flag\r\n"
                        "[flush_all][verbosity][stats][version][quit]");
    free(t);
}

Test(memcache, every_split_point_gives_the_same_requests)
{
    size_t n = sizeof(pipeline) - 1;
    char *whole = transcript(pipeline, n, &test_opts);
    for (size_t cut = 0; cut <= n; cut++) {
        char *t = transcript_cuts(pipeline, n, &cut, 1, &test_opts);
        cr_assert_str_eq(t, whole, "split at %zu", cut);
        free(t);
    }
    free(whole);
}

Test(memcache, byte_by_byte_delivery_gives_the_same_requests)
{
    size_t n = sizeof(pipeline) - 1;
    size_t *cuts = malloc(n * sizeof(*cuts));
    for (size_t i = 0; i < n; i++) {
        cuts[i] = i;
    }
    char *whole = transcript(pipeline, n, &test_opts);
    char *t = transcript_cuts(pipeline, n, cuts, n, &test_opts);
    cr_assert_str_eq(t, whole);
    free(t);
    free(whole);
    free(cuts);
}

Test(memcache, incomplete_request_consumes_nothing_and_reports_its_size)
{
    struct mc_parser p;
    struct mc_req r;
    mc_parser_init(&p, &test_opts);
    const char *in = "set k 0 0 10\r\n0123";
    cr_assert_eq(mc_parse(&p, in, strlen(in), &r), MC_PARSE_AGAIN);
    cr_assert_eq(r.consumed, 0);
    cr_assert_eq(p.need, 14 + 12);
}

Test(memcache, bad_f_token_keeps_the_previous_flag_error_message)
{
    cr_assert_wire("mg a Jx Fx\r\nmg a Fx\r\nmg a Fx Tx\r\n",
                   "CLIENT_ERROR invalid numeric initial value\r\n"
                   "CLIENT_ERROR bad command line format\r\n"
                   "CLIENT_ERROR bad token in command line format\r\n");
}

Test(memcache, verbosity_level_is_a_32_bit_number)
{
    struct mc_req r;
    parse_one("verbosity 4294967295\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.verbosity, UINT32_MAX);
    cr_assert_wire("verbosity 4294967296\r\n", "CLIENT_ERROR bad command line format\r\n");
}

/* ---- the binary protocol, and requests refused for lack of memory ---- */

Test(memcache, binary_protocol_request_closes_the_connection)
{
    /* A binary get of "k": magic, opcode 0x00, key length 1, ... then the key. */
    static const char bin[] = "\x80\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01"
                              "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00k";
    struct mc_req r;
    struct mc_parser p;
    mc_parser_init(&p, &test_opts);
    /* The first byte is enough: no wait for a newline that may never come. */
    cr_assert_eq(mc_parse(&p, bin, 1, &r), MC_PARSE_ERROR);
    cr_assert_eq(r.err.action, MC_ERR_CLOSE);
    cr_assert_null(r.err.msg);
    cr_assert_not_null(r.err.why);
    cr_assert_eq(mc_parse(&p, bin, sizeof(bin) - 1, &r), MC_PARSE_ERROR);
    cr_assert_eq(r.err.action, MC_ERR_CLOSE);
    /* After text requests too: what was asked before is answered, then the connection goes. */
    cr_assert_wire("mn\r\n\x80\x00\x00\x01\r\n", "[mn][close]");
}

Test(memcache, refused_set_answers_out_of_memory_and_swallows_its_value)
{
    struct mc_parser p;
    struct mc_req r;
    mc_parser_init(&p, &test_opts);
    const char *in = "set k 3 0 10\r\n0123";
    cr_assert_eq(mc_parse(&p, in, strlen(in), &r), MC_PARSE_AGAIN);
    cr_assert_eq(mc_parse_refuse(&p, in, strlen(in), &r), MC_PARSE_ERROR);
    cr_assert_eq(r.err.action, MC_ERR_SWALLOW);
    cr_assert_eq(r.err.refused, MC_CMD_SET);
    cr_assert_eq(r.klen, 1);
    cr_assert_eq(r.key[0], 'k');
    cr_assert_eq(r.consumed, 14);
    cr_assert_eq(r.err.swallow, 12);
    cr_assert_not(r.err.quiet);
    struct buf out;
    buf_init(&out, 64, 4096);
    mc_compose_error(&out, &r.err);
    cr_assert_eq(buf_len(&out), strlen("SERVER_ERROR out of memory storing object\r\n"));
    cr_assert_arr_eq(buf_rptr(&out), "SERVER_ERROR out of memory storing object\r\n",
                     buf_len(&out));
    buf_free(&out);
    /* The part of the value already buffered, then the rest as it comes, then the next command:
     * none of it ever has to be held whole. */
    cr_assert_eq(mc_parse(&p, in + 14, 4, &r), MC_PARSE_SKIP);
    cr_assert_eq(r.consumed, 4);
    cr_assert_eq(mc_parse(&p, "456789\r\nmn\r\n", 12, &r), MC_PARSE_SKIP);
    cr_assert_eq(r.consumed, 8);
    cr_assert_eq(mc_parse(&p, "mn\r\n", 4, &r), MC_PARSE_OK);
    cr_assert_eq(r.cmd, MC_CMD_MN);
}

Test(memcache, refusal_is_silenced_by_noreply_but_not_by_meta_q)
{
    struct mc_parser p;
    struct mc_req r;
    mc_parser_init(&p, &test_opts);
    const char *set = "set k 0 0 10 noreply\r\n";
    cr_assert_eq(mc_parse_refuse(&p, set, strlen(set), &r), MC_PARSE_ERROR);
    cr_assert(r.err.quiet);
    mc_parser_init(&p, &test_opts);
    const char *ms = "ms k 10 q T0\r\n";
    cr_assert_eq(mc_parse_refuse(&p, ms, strlen(ms), &r), MC_PARSE_ERROR);
    cr_assert_not(r.err.quiet);
    cr_assert_eq(r.err.refused, MC_CMD_MS);
    cr_assert_eq(r.err.swallow, 12);
}

Test(memcache, refusal_of_a_complete_request_parses_it_as_usual)
{
    struct mc_parser p;
    struct mc_req r;
    mc_parser_init(&p, &test_opts);
    const char *in = "set k 0 0 2\r\nab\r\n";
    cr_assert_eq(mc_parse_refuse(&p, in, strlen(in), &r), MC_PARSE_OK);
    cr_assert_eq(r.cmd, MC_CMD_SET);
    /* And the next call is an ordinary parse again. */
    const char *again = "set k 0 0 10\r\n";
    cr_assert_eq(mc_parse(&p, again, strlen(again), &r), MC_PARSE_AGAIN);
}

/* ---- lru_crawler ---- */

Test(memcache, lru_crawler_subcommands_match_by_prefix_as_memcached)
{
    struct mc_req r;
    parse_one("lru_crawler metadump all\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.cmd, MC_CMD_LRU_CRAWLER);
    cr_assert_eq(r.crawler, MC_CRAWLER_METADUMP);
    cr_assert_eq(r.args_len, 3);
    cr_assert_eq(memcmp(r.args, "all", 3), 0);
    parse_one("lru_crawler m 1,2\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.crawler, MC_CRAWLER_METADUMP, "m is metadump, checked before mgdump");
    parse_one("lru_crawler mg hash\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.crawler, MC_CRAWLER_MGDUMP);
    parse_one("lru_crawler c 1\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.crawler, MC_CRAWLER_CRAWL);
    parse_one("lru_crawler d\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.crawler, MC_CRAWLER_DISABLE);
    parse_one("lru_crawler enable\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.crawler, MC_CRAWLER_ENABLE);
    parse_one("lru_crawler sleep 1000000\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.crawler, MC_CRAWLER_SLEEP);
    parse_one("lru_crawler tocrawl 01\r\n", MC_PARSE_OK, &r);
    cr_assert_eq(r.crawler, MC_CRAWLER_TOCRAWL);
}

Test(memcache, lru_crawler_bad_forms_get_memcached_errors)
{
    cr_assert_wire("lru_crawler\r\nlru_crawler metadump\r\nlru_crawler metadumpx all\r\n"
                   "lru_crawler metadump all extra\r\nlru_crawler enable x\r\n",
                   "ERROR\r\nERROR\r\nERROR\r\nERROR\r\nERROR\r\n");
    cr_assert_wire(
        "lru_crawler tocrawl -1\r\nlru_crawler tocrawl +1\r\n"
        "lru_crawler tocrawl 4294967296\r\nlru_crawler sleep x\r\n"
        "lru_crawler sleep 1000001\r\n",
        "CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line format\r\n"
        "CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line format\r\n"
        "CLIENT_ERROR sleep must be one second or less\r\n");
}

/* ---- a parsed request moved to a copy of its text (mc_req_pack, mc_req_unpack) ---- */

/* Parse `in`, pack it, move its text to a new place and wipe the old one, unpack there. */
static char *
moved(const char *in, struct mc_req *out)
{
    char *text = strdup(in);
    struct mc_req parsed;
    parse_one(text, MC_PARSE_OK, &parsed);
    mc_req_pack(out, &parsed, text);
    char *copy = malloc(parsed.consumed);
    cr_assert_not_null(copy);
    memcpy(copy, text, parsed.consumed);
    memset(text, '#', parsed.consumed);
    memset(&parsed, 0, sizeof(parsed));
    free(text);
    mc_req_unpack(out, copy);
    return copy;
}

Test(memcache, a_moved_storage_request_reads_its_key_and_value_from_the_copy)
{
    struct mc_req r;
    char *copy = moved("set key 5 0 3\r\nabc\r\n", &r);
    cr_assert_eq(r.cmd, MC_CMD_SET);
    cr_assert_eq(r.key, copy + 4);
    cr_assert_eq(r.klen, 3);
    cr_assert_eq(r.val, copy + 15);
    cr_assert_eq(memcmp(r.val, "abc", 3), 0);
    cr_assert_eq(r.flags, 5);
    free(copy);
}

Test(memcache, a_moved_get_iterates_its_key_in_the_copy)
{
    struct mc_req r;
    char *copy = moved("gat 10 key1\r\n", &r);
    struct mc_key_iter it;
    const char *k;
    size_t len;
    mc_args_begin(&r, &it);
    cr_assert(mc_args_next(&it, &k, &len));
    cr_assert_eq(k, copy + 7);
    cr_assert_eq(len, 4);
    cr_assert_not(mc_args_next(&it, &k, &len));
    cr_assert_eq(r.exptime, 10);
    free(copy);
}

Test(memcache, a_moved_meta_request_keeps_its_decoded_key_and_its_opaque)
{
    struct mc_req r;
    char *copy = moved("mg YWJj b k v Oxyz\r\n", &r);
    cr_assert(r.meta.binary_key);
    cr_assert_eq(r.key, r.binkey, "the decoded key is the moved struct's own");
    cr_assert_eq(memcmp(r.key, "abc", 3), 0);
    cr_assert_eq(r.key_raw, copy + 3);
    cr_assert_eq(r.meta.opaque_len, 3);
    cr_assert_eq(memcmp(r.meta.opaque, "xyz", 3), 0);
    cr_assert(r.meta.opaque > copy && r.meta.opaque < copy + r.consumed);
    free(copy);
}
