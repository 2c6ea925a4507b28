/*
 * Unit tests of the RESP codec: the request parser (multibulk and inline, Redis 7's exact
 * protocol errors, bounds, streams split at every byte) and the reply composers (byte for byte
 * what redis-server 7.4 sends for the same values, RESP2 and RESP3).
 *
 * The helpers run a byte stream through the parser the way a connection would (delivered in
 * pieces, each call in a freshly allocated buffer so that nothing may point into an earlier one,
 * consumed as requests complete) and describe what came out, so tests compare whole
 * conversations as strings.
 */

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "petrel/resp.h"

#define S(s) s, sizeof(s) - 1

static const struct resp_parser_opts test_opts = {0}; /* Redis's defaults */

/* Request storage big enough for any bounds these tests use. */
#define TEST_ARGS    70000
#define TEST_SCRATCH (128 * 1024)
static struct resp_arg test_argv[TEST_ARGS];
static char test_scratch[TEST_SCRATCH];

/* One argument, printable bytes as they are and others as \xHH. */
static void
describe_arg(struct buf *out, const struct resp_arg *a)
{
    buf_puts(out, "[");
    for (size_t i = 0; i < a->len; i++) {
        unsigned char c = (unsigned char)a->p[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            buf_append(out, &a->p[i], 1);
        } else {
            buf_printf(out, "\\x%02x", c);
        }
    }
    buf_puts(out, "]");
}

/* One line per parser result. */
static void
describe(struct buf *out, enum resp_parse_rc rc, const struct resp_req *r)
{
    if (rc == RESP_PARSE_SKIP) {
        buf_printf(out, "skip %zu\n", r->consumed);
        return;
    }
    if (rc == RESP_PARSE_ERROR) {
        cr_assert_eq(r->err.len, strlen(r->err.msg));
        buf_printf(out, "error [%s]\n", r->err.msg);
        return;
    }
    buf_printf(out, "%s consumed=%zu", r->is_inline ? "inline" : "mbulk", r->consumed);
    for (uint32_t i = 0; i < r->argc; i++) {
        buf_puts(out, " ");
        describe_arg(out, &r->argv[i]);
    }
    buf_puts(out, "\n");
}

/*
 * Feed in[0, n), delivering the bytes up to each cut in turn, then the rest; parse everything
 * available after each delivery, in a private copy of the undelivered bytes. Returns the
 * transcript (caller frees); "again" ends it when bytes are left over.
 */
static char *
transcript_cuts(const char *in, size_t n, const size_t *cuts, size_t ncuts,
                const struct resp_parser_opts *opts, bool auth_required)
{
    struct resp_parser p;
    struct resp_req req;
    struct buf out;
    buf_init(&out, 256, 1 << 24);
    resp_parser_init(&p, opts);
    p.auth_required = auth_required;
    resp_req_init(&req, test_argv, test_scratch);
    size_t pos = 0;
    for (size_t step = 0; step <= ncuts; step++) {
        size_t avail = step < ncuts ? cuts[step] : n;
        for (;;) {
            size_t len = avail - pos;
            char *copy = malloc(len ? len : 1);
            memcpy(copy, in + pos, len);
            enum resp_parse_rc rc = resp_parse(&p, copy, len, &req);
            if (rc == RESP_PARSE_AGAIN) {
                cr_assert_eq(req.consumed, 0);
                free(copy);
                break;
            }
            describe(&out, rc, &req);
            free(copy);
            if (rc == RESP_PARSE_ERROR) {
                goto end;
            }
            cr_assert(req.consumed > 0 && req.consumed <= len);
            pos += req.consumed;
        }
    }
    if (pos < n) {
        buf_printf(&out, "again\n");
    }
end:
    buf_append(&out, "", 1);
    char *s = strdup(buf_rptr(&out));
    buf_free(&out);
    return s;
}

static char *
transcript_opts(const char *in, size_t n, const struct resp_parser_opts *opts, bool auth)
{
    return transcript_cuts(in, n, NULL, 0, opts, auth);
}

static char *
transcript(const char *in, size_t n)
{
    return transcript_opts(in, n, &test_opts, false);
}

static void
expect(const char *in, size_t n, const char *want)
{
    char *got = transcript(in, n);
    cr_assert_str_eq(got, want, "got [%s] want [%s]", got, want);
    free(got);
}

/* The transcript must not depend on where the stream was cut: one cut at every byte, and a
 * delivery byte by byte. */
static void
expect_any_split(const char *in, size_t n, const char *want, const struct resp_parser_opts *opts,
                 bool auth)
{
    char *whole = transcript_opts(in, n, opts, auth);
    cr_assert_str_eq(whole, want);
    for (size_t cut = 0; cut <= n; cut++) {
        char *got = transcript_cuts(in, n, &cut, 1, opts, auth);
        cr_assert_str_eq(got, whole, "cut at %zu", cut);
        free(got);
    }
    size_t *cuts = malloc((n + 1) * sizeof(*cuts));
    for (size_t i = 0; i <= n; i++) {
        cuts[i] = i;
    }
    char *bytewise = transcript_cuts(in, n, cuts, n + 1, opts, auth);
    cr_assert_str_eq(bytewise, whole, "byte by byte");
    free(bytewise);
    free(cuts);
    free(whole);
}

/* ---- multibulk ---- */

Test(resp_mbulk, one_request_gives_its_arguments)
{
    expect(S("*1\r\n$4\r\nPING\r\n"), "mbulk consumed=14 [PING]\n");
}

Test(resp_mbulk, bulk_strings_may_hold_any_byte)
{
    expect(S("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\na\r\n\0b\r\n"),
           "mbulk consumed=31 [SET] [k] [a\\x0d\\x0a\\x00b]\n");
}

Test(resp_mbulk, empty_bulk_string_is_an_argument)
{
    expect(S("*2\r\n$4\r\nECHO\r\n$0\r\n\r\n"), "mbulk consumed=20 [ECHO] []\n");
}

Test(resp_mbulk, pipelined_requests_come_one_at_a_time)
{
    expect(S("*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
           "mbulk consumed=14 [PING]\nmbulk consumed=20 [GET] [k]\n");
}

Test(resp_mbulk, zero_and_negative_counts_are_dropped_without_reply)
{
    expect(S("*0\r\n*-1\r\n*-2\r\n*1\r\n$4\r\nPING\r\n"),
           "skip 4\nskip 5\nskip 5\nmbulk consumed=14 [PING]\n");
}

Test(resp_mbulk, byte_after_count_cr_is_not_checked)
{
    /* Redis takes the byte after a count line's '\r' as its '\n' without a look. */
    expect(S("*1\rX$4\rYPING\r\n"), "mbulk consumed=14 [PING]\n");
}

Test(resp_mbulk, two_bytes_after_bulk_string_are_not_checked)
{
    expect(S("*1\r\n$4\r\nPINGXY*1\r\n$4\r\nPING\r\n"),
           "mbulk consumed=14 [PING]\nmbulk consumed=14 [PING]\n");
}

Test(resp_mbulk, incomplete_request_waits)
{
    expect(S("*2\r\n$3\r\nGET\r\n$1\r\nk"), "again\n");
    expect(S("*2\r\n$3\r\nGET\r\n$1\r"), "again\n");
    expect(S("*2\r"), "again\n");
    expect(S("*"), "again\n");
}

Test(resp_mbulk, invalid_multibulk_length)
{
    const char *bad[] = {"*x\r\n",          "*01\r\n", "*+1\r\n",
                         "*\r\n",           "* 1\r\n", "*1 \r\n",
                         "*2147483648\r\n", "*-0\r\n", "*99999999999999999999\r\n",
                         "*1\n$4\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect(bad[i], strlen(bad[i]), "error [Protocol error: invalid multibulk length]\n");
    }
}

Test(resp_mbulk, nul_in_a_count_line_is_read_as_a_byte_of_it)
{
    /* Redis never finds the end of such a line (strchr stops at the NUL) and hangs. */
    expect(S("*1\0\r\n"), "error [Protocol error: invalid multibulk length]\n");
    expect(S("*1\r\n$1\0\r\n"), "error [Protocol error: invalid bulk length]\n");
}

Test(resp_mbulk, count_above_max_args_is_refused_from_the_header)
{
    struct resp_parser_opts o = {.max_args = 3};
    char *got = transcript_opts(S("*4\r\n"), &o, false);
    cr_assert_str_eq(got, "error [Protocol error: invalid multibulk length]\n");
    free(got);
    got = transcript_opts(S("*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"), &o, false);
    cr_assert_str_eq(got, "mbulk consumed=25 [a] [b] [c]\n");
    free(got);
    /* Redis's own limit, INT_MAX, is announced and waited for; the default bound refuses it. */
    expect(S("*2147483647\r\n"), "error [Protocol error: invalid multibulk length]\n");
}

Test(resp_mbulk, invalid_bulk_length)
{
    const char *bad[] = {"*1\r\n$-1\r\n",        "*1\r\n$04\r\n",    "*1\r\n$x\r\n",
                         "*1\r\n$\r\n",          "*1\r\n$+4\r\n",    "*1\r\n$4 \r\n",
                         "*1\r\n$536870913\r\n", "*1\r\n$4\n$4\r\n", "*2\r\n$1\r\na\r\n$-5\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect(bad[i], strlen(bad[i]), "error [Protocol error: invalid bulk length]\n");
    }
}

Test(resp_mbulk, bulk_up_to_max_bulk_is_taken_and_one_more_byte_refused)
{
    struct resp_parser_opts o = {.max_bulk = 5};
    char *got = transcript_opts(S("*1\r\n$5\r\nhello\r\n"), &o, false);
    cr_assert_str_eq(got, "mbulk consumed=15 [hello]\n");
    free(got);
    got = transcript_opts(S("*1\r\n$6\r\n"), &o, false);
    cr_assert_str_eq(got, "error [Protocol error: invalid bulk length]\n");
    free(got);
    /* Redis's default proto-max-bulk-len: 512 MiB. */
    expect(S("*1\r\n$536870912\r\n"), "again\n");
}

Test(resp_mbulk, expected_dollar_names_the_byte)
{
    expect(S("*1\r\nX4\r\n"), "error [Protocol error: expected '$', got 'X']\n");
    expect(S("*2\r\n$1\r\na\r\n:1\r\n"), "error [Protocol error: expected '$', got ':']\n");
}

Test(resp_mbulk, expected_dollar_sends_cr_and_lf_as_spaces)
{
    expect(S("*1\r\n\r\n"), "error [Protocol error: expected '$', got ' ']\n");
    expect(S("*1\r\n\n\r\n"), "error [Protocol error: expected '$', got ' ']\n");
    expect(S("*2\r\n$1\r\na\r\n\r\n"), "error [Protocol error: expected '$', got ' ']\n");
}

Test(resp_mbulk, expected_dollar_with_nul_ends_the_text_like_redis_formatting)
{
    expect(S("*1\r\n\0\r\n"), "error [Protocol error: expected '$', got ']\n");
}

/* n bytes of c after a prefix, as a heap string (caller frees). */
static char *
filled(const char *prefix, char c, size_t n, size_t *len)
{
    size_t plen = strlen(prefix);
    char *s = malloc(plen + n + 1);
    memcpy(s, prefix, plen);
    memset(s + plen, c, n);
    s[plen + n] = '\0';
    *len = plen + n;
    return s;
}

Test(resp_mbulk, count_line_over_the_inline_limit_is_too_big)
{
    size_t len;
    char *s = filled("*", '1', RESP_INLINE_MAX_DEFAULT - 1, &len);
    expect(s, len, "again\n"); /* 65536 bytes without '\r': Redis waits */
    free(s);
    s = filled("*", '1', RESP_INLINE_MAX_DEFAULT, &len);
    expect(s, len, "error [Protocol error: too big mbulk count string]\n");
    free(s);
}

Test(resp_mbulk, bulk_count_line_over_the_inline_limit_is_too_big)
{
    size_t len;
    char *s = filled("*1\r\n$", '1', RESP_INLINE_MAX_DEFAULT - 1, &len);
    expect(s, len, "again\n");
    free(s);
    s = filled("*1\r\n$", '1', RESP_INLINE_MAX_DEFAULT, &len);
    expect(s, len, "error [Protocol error: too big bulk count string]\n");
    free(s);
}

Test(resp_mbulk, count_line_ending_at_the_limit_is_read)
{
    /* A '\r' as byte 65537 of the line still ends it (it is then not a number). */
    size_t len;
    char *s = filled("*", '1', RESP_INLINE_MAX_DEFAULT - 1, &len);
    s = realloc(s, len + 3);
    memcpy(s + len, "\r\n", 3);
    expect(s, len + 2, "error [Protocol error: invalid multibulk length]\n");
    free(s);
}

Test(resp_mbulk, limits_before_auth)
{
    struct resp_parser_opts o = {0};
    char *got = transcript_opts(S("*11\r\n"), &o, true);
    cr_assert_str_eq(got, "error [Protocol error: unauthenticated multibulk length]\n");
    free(got);
    got = transcript_opts(S("*10\r\n"), &o, true);
    cr_assert_str_eq(got, "again\n");
    free(got);
    got = transcript_opts(S("*1\r\n$16385\r\n"), &o, true);
    cr_assert_str_eq(got, "error [Protocol error: unauthenticated bulk length]\n");
    free(got);
    got = transcript_opts(S("*1\r\n$16384\r\n"), &o, true);
    cr_assert_str_eq(got, "again\n");
    free(got);
    /* An invalid count is reported as invalid first, as in Redis. */
    got = transcript_opts(S("*1\r\n$-1\r\n"), &o, true);
    cr_assert_str_eq(got, "error [Protocol error: invalid bulk length]\n");
    free(got);
}

Test(resp_mbulk, limits_are_lifted_after_auth)
{
    expect(S("*11\r\n"), "again\n");
    expect(S("*1\r\n$16385\r\n"), "again\n");
}

Test(resp_mbulk, need_tells_the_whole_request_size_once_the_bulk_length_is_known)
{
    struct resp_parser p;
    struct resp_req req;
    resp_parser_init(&p, &test_opts);
    resp_req_init(&req, test_argv, test_scratch);
    const char in[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n";
    cr_assert_eq(resp_parse(&p, in, sizeof(in) - 1, &req), RESP_PARSE_AGAIN);
    cr_assert_eq(p.need, sizeof(in) - 1 + 100000 + 2);
    /* Fewer bytes than needed: answered at once, nothing consumed. */
    cr_assert_eq(resp_parse(&p, in, sizeof(in) - 1, &req), RESP_PARSE_AGAIN);
    cr_assert_eq(req.consumed, 0);
}

Test(resp_mbulk, large_value_is_a_view_into_the_input)
{
    const size_t vlen = 1 << 20;
    const char hdr[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048576\r\n";
    const size_t h = sizeof(hdr) - 1;
    const size_t n = h + vlen + 2;
    char *in = malloc(n);
    cr_assert_not_null(in);
    memcpy(in, hdr, h);
    memset(in + h, 'v', vlen);
    memcpy(in + h + vlen, "\r\n", 2);
    struct resp_parser p;
    struct resp_req req;
    resp_parser_init(&p, &test_opts);
    resp_req_init(&req, test_argv, test_scratch);
    /* Arriving in 4 KiB reads, into the same buffer. */
    size_t avail = 0;
    enum resp_parse_rc rc = RESP_PARSE_AGAIN;
    while (rc == RESP_PARSE_AGAIN) {
        avail = avail + 4096 < n ? avail + 4096 : n;
        rc = resp_parse(&p, in, avail, &req);
    }
    cr_assert_eq(rc, RESP_PARSE_OK);
    cr_assert_eq(req.consumed, n);
    cr_assert_eq(req.argc, 3);
    cr_assert_eq(req.argv[2].p, in + h);
    cr_assert_eq(req.argv[2].len, vlen);
    free(in);
}

Test(resp_mbulk, many_arguments)
{
    struct buf in;
    buf_init(&in, 1 << 16, 1 << 24);
    buf_printf(&in, "*%u\r\n", 5000u);
    for (unsigned i = 0; i < 5000; i++) {
        buf_printf(&in, "$%u\r\n%u\r\n", i < 10 ? 1u : i < 100 ? 2u : i < 1000 ? 3u : 4u, i);
    }
    struct resp_parser p;
    struct resp_req req;
    resp_parser_init(&p, &test_opts);
    resp_req_init(&req, test_argv, test_scratch);
    cr_assert_eq(resp_parse(&p, buf_rptr(&in), buf_len(&in), &req), RESP_PARSE_OK);
    cr_assert_eq(req.argc, 5000);
    cr_assert_eq(req.consumed, buf_len(&in));
    cr_assert_eq(req.argv[4321].len, 4);
    cr_assert(memcmp(req.argv[4321].p, "4321", 4) == 0);
    buf_free(&in);
}

/* ---- inline ---- */

Test(resp_inline, words_separated_by_blanks)
{
    expect(S("SET  k\tv\r\n"), "inline consumed=10 [SET] [k] [v]\n");
    expect(S("PING\n"), "inline consumed=5 [PING]\n");
    expect(S("  \t PING  \r\n"), "inline consumed=12 [PING]\n");
}

Test(resp_inline, unquoted_words_are_views_into_the_input)
{
    struct resp_parser p;
    struct resp_req req;
    resp_parser_init(&p, &test_opts);
    resp_req_init(&req, test_argv, test_scratch);
    const char in[] = "GET key\r\n";
    cr_assert_eq(resp_parse(&p, in, sizeof(in) - 1, &req), RESP_PARSE_OK);
    cr_assert_eq(req.argv[1].p, in + 4);
    cr_assert(req.is_inline);
}

Test(resp_inline, quoted_words_are_decoded_into_the_scratch)
{
    struct resp_parser p;
    struct resp_req req;
    resp_parser_init(&p, &test_opts);
    resp_req_init(&req, test_argv, test_scratch);
    const char in[] = "SET \"a b\" 'c'\r\n";
    cr_assert_eq(resp_parse(&p, in, sizeof(in) - 1, &req), RESP_PARSE_OK);
    cr_assert_eq(req.argc, 3);
    cr_assert_eq(req.argv[1].p, test_scratch);
    cr_assert_eq(req.argv[1].len, 3);
    cr_assert(memcmp(req.argv[1].p, "a b", 3) == 0);
    cr_assert_eq(req.argv[2].p, test_scratch + 3);
    cr_assert_eq(req.argv[2].len, 1);
}

Test(resp_inline, empty_and_blank_lines_are_dropped_without_reply)
{
    expect(S("\r\n\n   \t\r\nPING\r\n"), "skip 2\nskip 1\nskip 6\ninline consumed=6 [PING]\n");
}

Test(resp_inline, double_quote_escapes)
{
    expect(S("ECHO \"\\x41\\x4g\\n\\r\\t\\b\\a\\\"\\\\\\q\"\r\n"),
           "inline consumed=33 [ECHO] [Ax4g\\x0a\\x0d\\x09\\x08\\x07\"\\x5cq]\n");
}

Test(resp_inline, hex_escape_takes_both_cases_and_exactly_two_digits)
{
    expect(S("ECHO \"\\xfF\\x00\\x411\"\r\n"), "inline consumed=22 [ECHO] [\\xff\\x00A1]\n");
}

Test(resp_inline, single_quotes_know_only_the_quote_escape)
{
    expect(S("ECHO 'a\\'b\\n\"c'\r\n"), "inline consumed=17 [ECHO] [a'b\\x5cn\"c]\n");
}

Test(resp_inline, quotes_may_open_inside_a_word)
{
    expect(S("ECHO a\"b c\" d'e f'\r\n"), "inline consumed=20 [ECHO] [ab c] [de f]\n");
}

Test(resp_inline, empty_quotes_are_an_empty_argument)
{
    expect(S("SET k \"\"\r\n"), "inline consumed=10 [SET] [k] []\n");
}

Test(resp_inline, unbalanced_quotes)
{
    const char *bad[] = {"ECHO \"abc\r\n", "ECHO 'abc\r\n",      "ECHO \"a\"b\r\n",
                         "ECHO 'a'b\r\n",  "ECHO \"abc\\\"\r\n", "ECHO a\"b c\"d\r\n",
                         "ECHO \"a\\\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect(bad[i], strlen(bad[i]), "error [Protocol error: unbalanced quotes in request]\n");
    }
}

Test(resp_inline, vertical_tab_and_form_feed_belong_to_an_unquoted_word)
{
    /* sdssplitargs skips them between words but does not end a word at them. */
    expect(S("ECHO a\vb\fc\r\n"), "inline consumed=12 [ECHO] [a\\x0bb\\x0cc]\n");
    expect(S("\vECHO \"a\"\v\r\n"), "inline consumed=12 [ECHO] [a]\n");
}

Test(resp_inline, a_cr_inside_the_line_separates_words)
{
    expect(S("ECHO a\rb\r\n"), "inline consumed=10 [ECHO] [a] [b]\n");
}

Test(resp_inline, nul_is_an_ordinary_byte)
{
    expect(S("ECHO a\0b \"\0\"\r\n"), "inline consumed=14 [ECHO] [a\\x00b] [\\x00]\n");
}

Test(resp_inline, a_line_starting_with_dollar_is_inline)
{
    expect(S("$4\r\n"), "inline consumed=4 [$4]\n");
}

Test(resp_inline, line_over_the_inline_limit_is_too_big)
{
    size_t len;
    char *s = filled("", 'a', RESP_INLINE_MAX_DEFAULT, &len);
    expect(s, len, "again\n");
    free(s);
    s = filled("", 'a', RESP_INLINE_MAX_DEFAULT + 1, &len);
    expect(s, len, "error [Protocol error: too big inline request]\n");
    free(s);
}

Test(resp_inline, line_of_the_inline_limit_is_read)
{
    size_t len;
    char *s = filled("", 'a', RESP_INLINE_MAX_DEFAULT, &len);
    s = realloc(s, len + 2);
    s[len] = '\n';
    struct resp_parser p;
    struct resp_req req;
    resp_parser_init(&p, &test_opts);
    resp_req_init(&req, test_argv, test_scratch);
    cr_assert_eq(resp_parse(&p, s, len + 1, &req), RESP_PARSE_OK);
    cr_assert_eq(req.argc, 1);
    cr_assert_eq(req.argv[0].len, RESP_INLINE_MAX_DEFAULT);
    free(s);
}

Test(resp_inline, quoted_line_of_the_inline_limit_fits_a_scratch_of_that_size)
{
    /* The longest line, one quoted word: its decoded bytes stay within max_inline bytes. */
    struct resp_parser_opts o = {.max_inline = 64};
    char in[66];
    in[0] = '"';
    memset(in + 1, 'q', 62);
    in[63] = '"';
    in[64] = '\n';
    static char small[64];
    struct resp_parser p;
    struct resp_req req;
    resp_parser_init(&p, &o);
    resp_req_init(&req, test_argv, small);
    cr_assert_eq(resp_parse(&p, in, 65, &req), RESP_PARSE_OK);
    cr_assert_eq(req.argv[0].p, small);
    cr_assert_eq(req.argv[0].len, 62);
}

Test(resp_inline, more_words_than_max_args_is_too_big)
{
    struct resp_parser_opts o = {.max_args = 2};
    char *got = transcript_opts(S("a b\r\na b c\r\n"), &o, false);
    cr_assert_str_eq(got, "inline consumed=5 [a] [b]\nerror [Protocol error: too big inline "
                          "request]\n");
    free(got);
}

Test(resp_inline, no_limits_before_auth)
{
    struct resp_parser_opts o = {0};
    char *got = transcript_opts(S("a b c d e f g h i j k l\r\n"), &o, true);
    cr_assert_str_eq(got, "inline consumed=25 [a] [b] [c] [d] [e] [f] [g] [h] [i] [j] [k] [l]\n");
    free(got);
}

/* ---- splitting ---- */

Test(resp_split, requests_do_not_depend_on_how_the_stream_was_cut)
{
    const char in[] = "*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$5\r\nhello\r\n"
                      "*0\r\n"
                      "PING\r\n"
                      "\r\n"
                      "SET \"a\\x41\\n\" 'b\\'c' d\"e f\"\r\n"
                      "*1\rX$4\r\nPINGXY"
                      "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n";
    expect_any_split(S(in),
                     "mbulk consumed=33 [SET] [k\\x0d\\x0a] [hello]\n"
                     "skip 4\n"
                     "inline consumed=6 [PING]\n"
                     "skip 2\n"
                     "inline consumed=29 [SET] [aA\\x0a] [b'c] [de f]\n"
                     "mbulk consumed=14 [PING]\n"
                     "mbulk consumed=20 [ECHO] []\n",
                     &test_opts, false);
}

Test(resp_split, errors_do_not_depend_on_how_the_stream_was_cut)
{
    struct resp_parser_opts small = {.max_inline = 16, .max_bulk = 8, .max_args = 4};
    struct {
        const char *in;
        const char *want;
    } cases[] = {
        {"*1\r\n$4\r\nPING\r\n*x\r\n",
         "mbulk consumed=14 [PING]\nerror [Protocol error: invalid multibulk length]\n"},
        {"*2\r\n$1\r\na\r\nX", "again\n"},
        {"*2\r\n$1\r\na\r\nX\r\n", "error [Protocol error: expected '$', got 'X']\n"},
        {"*1\r\n$9\r\n", "error [Protocol error: invalid bulk length]\n"},
        {"*5\r\n", "error [Protocol error: invalid multibulk length]\n"},
        {"*11111111111111111", "error [Protocol error: too big mbulk count string]\n"},
        {"*1\r\n$11111111111111111", "error [Protocol error: too big bulk count string]\n"},
        {"aaaaaaaaaaaaaaaaa", "error [Protocol error: too big inline request]\n"},
        {"aaaaaaaaaaaaaaaa\n", "inline consumed=17 [aaaaaaaaaaaaaaaa]\n"},
        {"a b c d e\n", "error [Protocol error: too big inline request]\n"},
        {"ECHO \"a\n", "error [Protocol error: unbalanced quotes in request]\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expect_any_split(cases[i].in, strlen(cases[i].in), cases[i].want, &small, false);
    }
    expect_any_split(S("*1\r\n$16385\r\n"), "error [Protocol error: unauthenticated bulk length]\n",
                     &test_opts, true);
}

Test(resp_split, rewind_lets_the_same_bytes_be_parsed_again)
{
    struct resp_parser p;
    struct resp_req req;
    resp_parser_init(&p, &test_opts);
    resp_req_init(&req, test_argv, test_scratch);
    const char in[] = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    cr_assert_eq(resp_parse(&p, in, 16, &req), RESP_PARSE_AGAIN);
    /* Parsing resumes after the first argument; a rewind starts over at any offset. */
    resp_parser_rewind(&p);
    cr_assert_eq(resp_parse(&p, in + 14, 1, &req), RESP_PARSE_AGAIN);
    resp_parser_rewind(&p);
    cr_assert_eq(resp_parse(&p, in, sizeof(in) - 1, &req), RESP_PARSE_OK);
    cr_assert_eq(req.argc, 2);
}

/* ---- composing ---- */

/* What a composer appended, as a string compared byte for byte (lengths included). */
#define EXPECT_BYTES(call, want)                                                                   \
    do {                                                                                           \
        struct buf b_;                                                                             \
        buf_init(&b_, 16, 1 << 20);                                                                \
        cr_assert_eq((call), 0);                                                                   \
        cr_assert_eq(buf_len(&b_), sizeof(want) - 1, "length %zu", buf_len(&b_));                  \
        cr_assert(memcmp(buf_rptr(&b_), want, sizeof(want) - 1) == 0, "got [%.*s]",                \
                  (int)buf_len(&b_), buf_rptr(&b_));                                               \
        buf_free(&b_);                                                                             \
    } while (0)

#define B (&b_)

Test(resp_compose, simple_string)
{
    EXPECT_BYTES(resp_compose_simple(B, S("PONG")), "+PONG\r\n");
    EXPECT_BYTES(resp_compose_simple(B, S("a\r\nb")), "+a  b\r\n");
}

Test(resp_compose, error_gets_err_prefix_unless_it_has_its_own_code)
{
    EXPECT_BYTES(resp_compose_error(B, S("unknown command 'NOSUCH', with args beginning with: "
                                         "'a' ")),
                 "-ERR unknown command 'NOSUCH', with args beginning with: 'a' \r\n");
    EXPECT_BYTES(
        resp_compose_error(B, S("-WRONGTYPE Operation against a key holding the wrong kind of "
                                "value")),
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
    EXPECT_BYTES(resp_compose_error(B, S("Protocol error: invalid bulk length")),
                 "-ERR Protocol error: invalid bulk length\r\n");
    EXPECT_BYTES(resp_compose_error(B, S("bad\r\nline")), "-ERR bad  line\r\n");
}

Test(resp_compose, integers)
{
    EXPECT_BYTES(resp_compose_int(B, 1), ":1\r\n");
    EXPECT_BYTES(resp_compose_int(B, 0), ":0\r\n");
    EXPECT_BYTES(resp_compose_int(B, -1), ":-1\r\n");
    EXPECT_BYTES(resp_compose_int(B, INT64_MAX), ":9223372036854775807\r\n");
    EXPECT_BYTES(resp_compose_int(B, INT64_MIN), ":-9223372036854775808\r\n");
}

Test(resp_compose, bulk_strings)
{
    EXPECT_BYTES(resp_compose_bulk(B, S("bar")), "$3\r\nbar\r\n");
    EXPECT_BYTES(resp_compose_bulk(B, S("")), "$0\r\n\r\n");
    EXPECT_BYTES(resp_compose_bulk(B, S("a\r\n\0")), "$4\r\na\r\n\0\r\n");
    EXPECT_BYTES(resp_compose_bulk_hdr(B, 1234567), "$1234567\r\n");
}

Test(resp_compose, null_depends_on_the_protocol)
{
    EXPECT_BYTES(resp_compose_null(B, RESP_2), "$-1\r\n");
    EXPECT_BYTES(resp_compose_null(B, RESP_3), "_\r\n");
    EXPECT_BYTES(resp_compose_null_array(B, RESP_2), "*-1\r\n");
    EXPECT_BYTES(resp_compose_null_array(B, RESP_3), "_\r\n");
}

Test(resp_compose, aggregate_headers)
{
    EXPECT_BYTES(resp_compose_array(B, 2), "*2\r\n");
    EXPECT_BYTES(resp_compose_array(B, 0), "*0\r\n");
    EXPECT_BYTES(resp_compose_map(B, RESP_3, 1), "%1\r\n");
    EXPECT_BYTES(resp_compose_map(B, RESP_2, 1), "*2\r\n");
    EXPECT_BYTES(resp_compose_set(B, RESP_3, 1), "~1\r\n");
    EXPECT_BYTES(resp_compose_set(B, RESP_2, 1), "*1\r\n");
    EXPECT_BYTES(resp_compose_push(B, RESP_3, 3), ">3\r\n");
    EXPECT_BYTES(resp_compose_push(B, RESP_2, 3), "*3\r\n");
}

Test(resp_compose, whole_replies_as_redis_sends_them)
{
    /* HGETALL h (f=v) in RESP3, SUBSCRIBE ch in RESP3, MGET s missing in RESP2. */
    struct buf b_;
    buf_init(&b_, 16, 1 << 20);
    resp_compose_map(B, RESP_3, 1);
    resp_compose_bulk(B, S("f"));
    resp_compose_bulk(B, S("v"));
    resp_compose_push(B, RESP_3, 3);
    resp_compose_bulk(B, S("subscribe"));
    resp_compose_bulk(B, S("ch"));
    resp_compose_int(B, 1);
    resp_compose_array(B, 2);
    resp_compose_bulk(B, S("bar"));
    resp_compose_null(B, RESP_2);
    const char want[] = "%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
                        ">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
                        "*2\r\n$3\r\nbar\r\n$-1\r\n";
    cr_assert_eq(buf_len(&b_), sizeof(want) - 1);
    cr_assert(memcmp(buf_rptr(&b_), want, sizeof(want) - 1) == 0);
    buf_free(&b_);
}

Test(resp_compose, booleans)
{
    EXPECT_BYTES(resp_compose_bool(B, RESP_3, true), "#t\r\n");
    EXPECT_BYTES(resp_compose_bool(B, RESP_3, false), "#f\r\n");
    EXPECT_BYTES(resp_compose_bool(B, RESP_2, true), ":1\r\n");
    EXPECT_BYTES(resp_compose_bool(B, RESP_2, false), ":0\r\n");
}

Test(resp_compose, verbatim)
{
    EXPECT_BYTES(resp_compose_verbatim(B, RESP_3, "txt", S("hi")), "=6\r\ntxt:hi\r\n");
    EXPECT_BYTES(resp_compose_verbatim(B, RESP_3, "md", S("hi")), "=6\r\nmd :hi\r\n");
    EXPECT_BYTES(resp_compose_verbatim(B, RESP_3, "markdown", S("")), "=4\r\nmar:\r\n");
    EXPECT_BYTES(resp_compose_verbatim(B, RESP_2, "txt", S("hi")), "$2\r\nhi\r\n");
}

Test(resp_compose, big_number)
{
    EXPECT_BYTES(resp_compose_bignum(B, RESP_3, S("123456789012345678901234567890")),
                 "(123456789012345678901234567890\r\n");
    EXPECT_BYTES(resp_compose_bignum(B, RESP_2, S("123456789012345678901234567890")),
                 "$30\r\n123456789012345678901234567890\r\n");
}

Test(resp_compose, double_special_values)
{
    EXPECT_BYTES(resp_compose_double(B, RESP_3, NAN), ",nan\r\n");
    EXPECT_BYTES(resp_compose_double(B, RESP_3, INFINITY), ",inf\r\n");
    EXPECT_BYTES(resp_compose_double(B, RESP_3, -INFINITY), ",-inf\r\n");
    EXPECT_BYTES(resp_compose_double(B, RESP_3, -0.0), ",-0\r\n");
    EXPECT_BYTES(resp_compose_double(B, RESP_3, 0.0), ",0\r\n");
    EXPECT_BYTES(resp_compose_double(B, RESP_2, NAN), "$3\r\nnan\r\n");
    EXPECT_BYTES(resp_compose_double(B, RESP_2, -INFINITY), "$4\r\n-inf\r\n");
    EXPECT_BYTES(resp_compose_double(B, RESP_2, -0.0), "$2\r\n-0\r\n");
}

Test(resp_compose, double_as_a_bulk_string_in_resp2)
{
    EXPECT_BYTES(resp_compose_double(B, RESP_2, 3.14), "$4\r\n3.14\r\n");
    EXPECT_BYTES(resp_compose_double(B, RESP_2, 1e20), "$5\r\n1e+20\r\n");
}

/* ZSCORE replies of redis-server 7.4 for these scores (ZADD with the text on the left). */
Test(resp_compose, double_text_as_redis_formats_it)
{
    struct {
        double d;
        const char *want;
    } cases[] = {
        {3.14, "3.14"},
        {0.1, "0.1"},
        {1.5, "1.5"},
        {1e-7, "1e-7"},
        {1e20, "1e+20"},
        {123456789.123, "123456789.123"},
        {1e15, "1000000000000000"},
        {4611686018427387904.0, "4611686018427387904"},
        {9223372036854775808.0, "9223372036854776000"},
        {1e22, "1e+22"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {5e-324, "5e-324"},
        {0.000001, "0.000001"},
        {0.0000001, "1e-7"},
        {123e-20, "1.23e-18"},
        {-2.5, "-2.5"},
        {1e21, "1e+21"},
        {12345678.9e-10, "0.00123456789"},
        {100, "100"},
        {1e100, "1e+100"},
        {1.2345e-100, "1.2345e-100"},
        {0.3, "0.3"},
        {2.2250738585072014e-308, "2.2250738585072014e-308"},
        {1e16, "10000000000000000"},
        {123456789012345678901234.0, "123456789012345690000000"},
        {1.5e-7, "1.5e-7"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[RESP_DOUBLE_MAX];
        size_t len = resp_format_double(cases[i].d, text);
        cr_assert(len < RESP_DOUBLE_MAX);
        cr_assert_eq(len, strlen(cases[i].want), "%.17g: [%.*s]", cases[i].d, (int)len, text);
        cr_assert(memcmp(text, cases[i].want, len) == 0, "%.17g: [%.*s] want [%s]", cases[i].d,
                  (int)len, text, cases[i].want);
    }
}

Test(resp_compose, double_text_reads_back_exactly)
{
    /* Whatever the value, the text is a round trip, and fits RESP_DOUBLE_MAX. */
    uint64_t x = 0x9E3779B97F4A7C15u;
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double d;
        memcpy(&d, &x, sizeof(d));
        if (isnan(d)) {
            continue;
        }
        char text[RESP_DOUBLE_MAX + 1];
        size_t len = resp_format_double(d, text);
        cr_assert(len < RESP_DOUBLE_MAX);
        text[len] = '\0';
        cr_assert_eq(strtod(text, NULL), d, "%s", text);
    }
}

Test(resp_compose, full_buffer_appends_nothing)
{
    struct buf b;
    buf_init(&b, 4, 4);
    cr_assert_eq(resp_compose_bulk(&b, S("hello")), -ENOBUFS);
    cr_assert_eq(buf_len(&b), 0);
    cr_assert_eq(resp_compose_error(&b, S("x")), -ENOBUFS);
    cr_assert_eq(buf_len(&b), 0);
    buf_free(&b);
}

/* ---- text: glob patterns and INCRBYFLOAT's numbers ---- */

static bool
glob(const char *pat, const char *s)
{
    return resp_glob_match(pat, strlen(pat), s, strlen(s), false);
}

/* KEYS replies of redis-server 7.0.15 for these patterns and keys. */
Test(resp_text, glob_matches_as_redis)
{
    cr_assert(glob("h?llo", "hello") && !glob("h?llo", "hllo"));
    cr_assert(glob("h*llo", "hllo") && glob("h*llo", "heeeello") && !glob("h*llo", "hellx"));
    cr_assert(glob("h[ae]llo", "hallo") && !glob("h[ae]llo", "hxllo"));
    cr_assert(glob("h[^e]llo", "hallo") && !glob("h[^e]llo", "hello"));
    cr_assert(glob("h[b-a]llo", "hallo"), "a range may be written backwards");
    cr_assert(glob("a\\*b", "a*b") && !glob("a\\*b", "axb"));
    cr_assert(glob("[abc", "b") && !glob("[abc", "bc"), "an unterminated set ends the pattern");
    cr_assert(!glob("[", "[") && !glob("[]", "]") && glob("[^]", "x"));
    cr_assert(glob("[a-]", "^") && glob("[a-]", "a"), "a '-' range takes the ']'");
    cr_assert(glob("[\\]]", "]"));
    cr_assert(glob("*\\", "a\\"), "a trailing backslash is itself");
    cr_assert(!glob("*", "") && !glob("**", "") && glob("", ""), "the empty key: only \"\"");
    cr_assert(glob("*a*b*c", "xxaxxbxxc") && !glob("*a*b*c", "xxaxxcxxb"));
    cr_assert(resp_glob_match("MAX*", 4, "maxmemory", 9, true) &&
              !resp_glob_match("MAX*", 4, "maxmemory", 9, false));
    cr_assert(resp_glob_match("a\0*", 3, "a\0b", 3, false), "bytes, NUL included");
}

static const char *
ld_text(long double v, char *buf)
{
    size_t n = resp_format_ldouble(v, buf);
    buf[n] = '\0';
    return buf;
}

/* INCRBYFLOAT replies of redis-server 7.0.15. */
Test(resp_text, ldouble_text_as_incrbyfloat_writes_it)
{
    char buf[RESP_LDOUBLE_MAX];
    cr_assert_str_eq(ld_text(1.5L, buf), "1.5");
    cr_assert_str_eq(ld_text(1.6L - 1.6L, buf), "0");
    cr_assert_str_eq(ld_text(1e-18L, buf), "0", "17 decimals at most");
    cr_assert_str_eq(ld_text(-0.0L, buf), "0");
    cr_assert_str_eq(ld_text(3010.0L, buf), "3010");
    cr_assert_str_eq(ld_text(3.14159265358979323846L, buf), "3.14159265358979324");
    cr_assert_str_eq(ld_text(5.0e-20L, buf), "0");
    cr_assert_eq(resp_format_ldouble(1.0L / 0.0L, buf), 0);
    cr_assert_eq(strlen(ld_text(1e308L, buf)), 308, "no exponent: every digit (9.99...e307)");
}

static bool
ld_ok(const char *s)
{
    long double v;
    return resp_parse_ldouble(s, strlen(s), &v);
}

Test(resp_text, ldouble_parse_refuses_what_redis_refuses)
{
    cr_assert(ld_ok("1.5") && ld_ok("0x10") && ld_ok("1.") && ld_ok("-0.0") && ld_ok("inf"));
    cr_assert(!ld_ok("") && !ld_ok(" 1") && !ld_ok("1 ") && !ld_ok("abc") && !ld_ok("nan"));
    cr_assert(!ld_ok("1e99999"), "overflow");
    cr_assert(!ld_ok("1e-99999"), "underflow to zero");
    long double v;
    cr_assert(resp_parse_ldouble("7\0junk", 6, &v) && v == 7.0L, "as Redis, a NUL ends it");
}

/* A complete multibulk of more arguments than argv's room asks for more room, then parses. */
Test(resp_parse, argv_cap_asks_the_caller_to_grow_argv)
{
    struct resp_parser p;
    struct resp_parser_opts o = {0};
    resp_parser_init(&p, &o);
    struct resp_arg small[2], big[3];
    char scratch[64];
    struct resp_req req;
    const char *in = "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n";
    resp_req_init(&req, small, scratch);
    req.argv_cap = 2;
    cr_assert_eq(resp_parse(&p, in, strlen(in), &req), RESP_PARSE_AGAIN);
    cr_assert_eq(p.argc, 3);
    resp_req_init(&req, big, scratch);
    req.argv_cap = 3;
    cr_assert_eq(resp_parse(&p, in, strlen(in), &req), RESP_PARSE_OK);
    cr_assert_eq(req.argc, 3);
    cr_assert(big[2].len == 1 && big[2].p[0] == 'c');
}

/*
 * The one-pass path for whole requests and the checked path must agree on every input: random
 * multibulk streams with random corruptions, each parsed whole (the one-pass path takes what it
 * can) and byte by byte (always the checked path).
 */
Test(resp_split, whole_requests_parse_as_the_checked_path_does)
{
    static const char alphabet[] = "*$\r\n0123456789-x ";
    struct resp_parser_opts small = {.max_inline = 40, .max_bulk = 12, .max_args = 6};
    unsigned seed = 12345;
    char in[256];
    size_t cuts[sizeof(in) + 1];
    for (size_t i = 0; i <= sizeof(in); i++) {
        cuts[i] = i;
    }
    for (int round = 0; round < 3000; round++) {
        size_t n = 0;
        int reqs = 1 + rand_r(&seed) % 3;
        for (int r = 0; r < reqs && n < 200; r++) {
            int argc = rand_r(&seed) % 8;
            n += (size_t)snprintf(in + n, sizeof(in) - n, "*%d\r\n", argc);
            for (int a = 0; a < argc && n < 200; a++) {
                int len = rand_r(&seed) % 15;
                n += (size_t)snprintf(in + n, sizeof(in) - n, "$%d\r\n%.*s\r\n", len, len,
                                      "abcdefghijklmnopq");
            }
        }
        int flips = rand_r(&seed) % 3;
        for (int f = 0; f < flips; f++) {
            in[rand_r(&seed) % n] = alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)];
        }
        n -= (size_t)(rand_r(&seed) % 2 ? rand_r(&seed) % (n / 4 + 1) : 0);
        char *whole = transcript_opts(in, n, &small, false);
        char *bytewise = transcript_cuts(in, n, cuts, n + 1, &small, false);
        cr_assert_str_eq(whole, bytewise, "input [%.*s]", (int)n, in);
        free(whole);
        free(bytewise);
    }
}
