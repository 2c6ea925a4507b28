/*
 * resp parse: the Redis request parser, multibulk and inline. Contract in include/petrel/resp.h;
 * bounds and the deliberate differences from Redis are in docs/resp.md.
 *
 * The parser mirrors Redis 7's observable behaviour (networking.c processMultibulkBuffer and
 * processInlineBuffer, sds.c sdssplitargs): which input is refused with which text, that a count
 * line ends at its first '\r' and the byte after it is not looked at, that the two bytes after a
 * bulk string are skipped unchecked, that "*0" and an empty line are silently dropped. Where
 * Redis's result depends on how the bytes were split across reads (a line's end found after more
 * than the inline limit in one read is accepted, in several reads refused), the parser decides
 * as Redis does with the smallest reads, so that its result depends on the bytes only.
 */
#include "petrel/resp.h"

#include <limits.h>
#include <string.h>

#define LIT(s) s, (sizeof(s) - 1)

static const char E_MBULK_LEN[] = "Protocol error: invalid multibulk length";
static const char E_BULK_LEN[] = "Protocol error: invalid bulk length";
static const char E_UNAUTH_MBULK[] = "Protocol error: unauthenticated multibulk length";
static const char E_UNAUTH_BULK[] = "Protocol error: unauthenticated bulk length";
static const char E_BIG_INLINE[] = "Protocol error: too big inline request";
static const char E_BIG_MBULK[] = "Protocol error: too big mbulk count string";
static const char E_BIG_BULK[] = "Protocol error: too big bulk count string";
static const char E_QUOTES[] = "Protocol error: unbalanced quotes in request";
static const char E_EXPECTED[] = "Protocol error: expected '$', got '";

void
resp_parser_init(struct resp_parser *p, const struct resp_parser_opts *opts)
{
    *p = (struct resp_parser){.opts = *opts};
    if (p->opts.max_bulk == 0) {
        p->opts.max_bulk = RESP_BULK_MAX_DEFAULT;
    }
    if (p->opts.max_args == 0) {
        p->opts.max_args = RESP_ARGS_MAX_DEFAULT;
    }
    if (p->opts.max_args > RESP_ARGS_MAX_LIMIT) {
        p->opts.max_args = RESP_ARGS_MAX_LIMIT;
    }
    if (p->opts.max_inline == 0) {
        p->opts.max_inline = RESP_INLINE_MAX_DEFAULT;
    }
}

/* ---- small helpers ---- */

/* Every protocol error closes the connection, so nothing is consumed and the shortcuts go. */
static enum resp_parse_rc
fail(struct resp_parser *p, struct resp_req *req, const char *msg, size_t len, const char *why)
{
    resp_parser_rewind(p);
    req->argc = 0;
    req->consumed = 0;
    req->err = (struct resp_err){.msg = msg, .len = (uint16_t)len, .why = why};
    return RESP_PARSE_ERROR;
}

/*
 * "expected '$', got 'X'": Redis formats the byte with %c and then sends CR and LF as spaces;
 * a NUL ends the formatted text right after the opening quote.
 */
static enum resp_parse_rc
fail_expected(struct resp_parser *p, struct resp_req *req, char got)
{
    size_t len = sizeof(E_EXPECTED) - 1;
    memcpy(req->err_text, E_EXPECTED, len);
    if (got != '\0') {
        req->err_text[len++] = got == '\r' || got == '\n' ? ' ' : got;
        req->err_text[len++] = '\'';
    }
    req->err_text[len] = '\0';
    return fail(p, req, req->err_text, len, "expected $ but got something else");
}

/* The request is done: the next one starts from scratch. */
static enum resp_parse_rc
finish(struct resp_parser *p, struct resp_req *req, enum resp_parse_rc rc, size_t consumed)
{
    resp_parser_rewind(p);
    req->consumed = consumed;
    return rc;
}

/*
 * Redis's string2ll: an optional '-', then "0" alone or a digit 1-9 followed by digits, in
 * range, nothing else (no '+', no leading zeros, no spaces, at most 20 characters).
 */
static bool
parse_ll(const char *s, size_t len, long long *out)
{
    if (len == 0 || len > 20) {
        return false;
    }
    if (len == 1 && s[0] == '0') {
        *out = 0;
        return true;
    }
    bool neg = s[0] == '-';
    size_t i = neg ? 1 : 0;
    if (i == len || s[i] < '1' || s[i] > '9') {
        return false;
    }
    unsigned long long v = 0;
    for (; i < len; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9 || v > (ULLONG_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (unsigned long long)LLONG_MAX + 1) {
            return false;
        }
        *out = (long long)(0 - v);
        return true;
    }
    if (v > (unsigned long long)LLONG_MAX) {
        return false;
    }
    *out = (long long)v;
    return true;
}

enum line_rc { LINE_FOUND, LINE_AGAIN, LINE_TOO_BIG };

/*
 * Find the byte c ending the line that starts at buf[start]. Redis refuses a line once more than
 * max_inline bytes are buffered without c: so a c among the first max_inline + 1 bytes ends the
 * line, and none there means too big as soon as those bytes are in. p->scanned remembers how far
 * the search got, so that a line arriving byte by byte is searched once. With want_next, the
 * byte after c must have arrived too (a count line's "\r\n").
 */
static enum line_rc
find_line(struct resp_parser *p, const char *buf, size_t n, size_t start, char c, bool want_next,
          size_t *at)
{
    size_t avail = n - start;
    size_t lim = avail < p->opts.max_inline + 1 ? avail : p->opts.max_inline + 1;
    const char *hit = NULL;
    if (p->scanned < lim) {
        hit = memchr(buf + start + p->scanned, c, lim - p->scanned);
    }
    if (hit == NULL) {
        if (avail > p->opts.max_inline) {
            return LINE_TOO_BIG;
        }
        p->scanned = avail;
        return LINE_AGAIN;
    }
    *at = (size_t)(hit - buf);
    if (want_next && *at + 1 >= n) {
        p->scanned = *at - start;
        return LINE_AGAIN;
    }
    p->scanned = 0;
    return LINE_FOUND;
}

/* ---- multibulk ---- */

/* The "*<n>" line: the argument count, or an error, or a request of no arguments. */
static enum resp_parse_rc
mbulk_header(struct resp_parser *p, const char *buf, size_t n, struct resp_req *req)
{
    size_t cr;
    enum line_rc lr = find_line(p, buf, n, 0, '\r', true, &cr);
    if (lr == LINE_AGAIN) {
        return RESP_PARSE_AGAIN;
    }
    if (lr == LINE_TOO_BIG) {
        return fail(p, req, LIT(E_BIG_MBULK), "too big mbulk count string");
    }
    long long ll;
    if (!parse_ll(buf + 1, cr - 1, &ll) || ll > INT_MAX) {
        return fail(p, req, LIT(E_MBULK_LEN), "invalid mbulk count");
    }
    if (ll > RESP_UNAUTH_ARGS_MAX && p->auth_required) {
        return fail(p, req, LIT(E_UNAUTH_MBULK), "unauth mbulk count");
    }
    if (ll <= 0) {
        /* Redis reads "*0" and "*-1" and runs nothing. */
        return finish(p, req, RESP_PARSE_SKIP, cr + 2);
    }
    if ((unsigned long long)ll > p->opts.max_args) {
        /* Refused from the header alone, before any argument is buffered. */
        return fail(p, req, LIT(E_MBULK_LEN), "mbulk count above max-args");
    }
    p->argc = (uint32_t)ll;
    p->done = 0;
    p->first = p->off = cr + 2;
    return RESP_PARSE_OK;
}

/* One "$<len>\r\n<bytes>\r\n" at p->off, checked; p->off moves past it when it is all in. */
static enum resp_parse_rc
mbulk_arg(struct resp_parser *p, const char *buf, size_t n, struct resp_req *req)
{
    size_t cr;
    enum line_rc lr = find_line(p, buf, n, p->off, '\r', true, &cr);
    if (lr == LINE_AGAIN) {
        return RESP_PARSE_AGAIN;
    }
    if (lr == LINE_TOO_BIG) {
        return fail(p, req, LIT(E_BIG_BULK), "too big bulk count string");
    }
    if (buf[p->off] != '$') {
        return fail_expected(p, req, buf[p->off]);
    }
    long long ll;
    if (!parse_ll(buf + p->off + 1, cr - p->off - 1, &ll) || ll < 0 ||
        (unsigned long long)ll > p->opts.max_bulk) {
        return fail(p, req, LIT(E_BULK_LEN), "invalid bulk length");
    }
    if (ll > RESP_UNAUTH_BULK_MAX && p->auth_required) {
        return fail(p, req, LIT(E_UNAUTH_BULK), "unauth bulk length");
    }
    /* Like Redis, the two bytes after the string are taken as its "\r\n" without a look. */
    size_t end = cr + 2 + (size_t)ll + 2;
    if (end > n) {
        p->need = end;
        return RESP_PARSE_AGAIN;
    }
    p->need = 0;
    p->off = end;
    p->done++;
    return RESP_PARSE_OK;
}

/*
 * Fill argv from a complete, checked multibulk. A header that passed parse_ll() is "$", the
 * digits of its length without sign or leading zero, and two bytes, so reading it again is a
 * digit loop.
 */
static void
mbulk_argv(const struct resp_parser *p, const char *buf, struct resp_req *req)
{
    size_t pos = p->first;
    for (uint32_t i = 0; i < p->argc; i++) {
        size_t len = 0;
        pos++;
        while (buf[pos] != '\r') {
            len = len * 10 + (size_t)(buf[pos] - '0');
            pos++;
        }
        pos += 2;
        req->argv[i] = (struct resp_arg){.p = buf + pos, .len = len};
        pos += len + 2;
    }
    req->argc = p->argc;
}

/*
 * The common case in one pass: a whole, well-formed multibulk already buffered, its counts plain
 * digits. Fills argv and returns true; anything else (a byte missing, an odd count, an
 * authentication limit in force) returns false with nothing changed, and the checked path,
 * which gives every error its Redis text, parses it from the start. For a request it accepts,
 * both paths give the same argv and the same length.
 */
static bool
mbulk_fast(const struct resp_parser *p, const char *buf, size_t n, struct resp_req *req)
{
    /* Counts of up to 18 digits cannot overflow; a count line that long is not fast. */
    enum { DIGITS_MAX = 18 };
    if (p->auth_required || p->opts.max_inline < 2 * DIGITS_MAX) {
        return false;
    }
    size_t pos = 1;
    uint64_t argc = 0;
    while (pos < n && buf[pos] >= '0' && buf[pos] <= '9' && pos <= DIGITS_MAX) {
        argc = argc * 10 + (uint64_t)(buf[pos++] - '0');
    }
    /* "*0", a leading zero, no digit, or the line's end not in: the checked path's. */
    if (pos == 1 || buf[1] == '0' || pos + 1 >= n || buf[pos] != '\r' || argc > p->opts.max_args ||
        (req->argv_cap != 0 && argc > req->argv_cap)) {
        return false; /* too many for argv: the checked path says so (RESP_PARSE_AGAIN) */
    }
    pos += 2;
    for (uint64_t i = 0; i < argc; i++) {
        if (pos >= n || buf[pos] != '$') {
            return false;
        }
        size_t start = ++pos;
        uint64_t len = 0;
        while (pos < n && buf[pos] >= '0' && buf[pos] <= '9' && pos - start < DIGITS_MAX) {
            len = len * 10 + (uint64_t)(buf[pos++] - '0');
        }
        if (pos == start || (buf[start] == '0' && pos - start > 1) || pos + 1 >= n ||
            buf[pos] != '\r' || len > p->opts.max_bulk || len > n - pos - 2 ||
            n - pos - 2 - len < 2) {
            return false;
        }
        pos += 2;
        req->argv[i] = (struct resp_arg){.p = buf + pos, .len = (size_t)len};
        pos += (size_t)len + 2;
    }
    req->argc = (uint32_t)argc;
    req->consumed = pos;
    return true;
}

static enum resp_parse_rc
parse_multibulk(struct resp_parser *p, const char *buf, size_t n, struct resp_req *req)
{
    if (p->argc == 0) {
        if (p->scanned == 0 && mbulk_fast(p, buf, n, req)) {
            return RESP_PARSE_OK;
        }
        enum resp_parse_rc rc = mbulk_header(p, buf, n, req);
        if (rc != RESP_PARSE_OK || p->argc == 0) {
            return rc;
        }
    }
    /* Each pass moves p->off over one whole argument; work already done is not redone. */
    while (p->done < p->argc) {
        enum resp_parse_rc rc = mbulk_arg(p, buf, n, req);
        if (rc != RESP_PARSE_OK) {
            return rc;
        }
    }
    if (req->argv_cap != 0 && p->argc > req->argv_cap) {
        return RESP_PARSE_AGAIN; /* complete, but argv is too small: the caller grows it */
    }
    mbulk_argv(p, buf, req);
    return finish(p, req, RESP_PARSE_OK, p->off);
}

/* ---- inline ---- */

/* isspace() in the C locale: what sdssplitargs skips between arguments. */
static bool
is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* What ends an unquoted argument in sdssplitargs (not '\v' nor '\f', which belong to it). */
static bool
ends_word(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool
is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static unsigned
hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return (unsigned)(c - '0');
    }
    return (unsigned)((c | 0x20) - 'a' + 10);
}

/* The byte a backslash escape inside double quotes stands for. */
static char
unescape(char c)
{
    switch (c) {
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    case 'b':
        return '\b';
    case 'a':
        return '\a';
    default:
        return c;
    }
}

/*
 * One step inside double quotes at *s: appends the byte(s) it stands for to out, or closes the
 * quote. Returns -1 for unbalanced quotes, 1 when closed, 0 to go on.
 */
static int
in_double(const char **sp, const char *e, char *out, size_t *o)
{
    const char *s = *sp;
    if (e - s >= 4 && s[0] == '\\' && s[1] == 'x' && is_hex(s[2]) && is_hex(s[3])) {
        out[(*o)++] = (char)(hex_value(s[2]) * 16 + hex_value(s[3]));
        *sp = s + 4;
        return 0;
    }
    if (e - s >= 2 && s[0] == '\\') {
        out[(*o)++] = unescape(s[1]);
        *sp = s + 2;
        return 0;
    }
    if (s[0] == '"') {
        /* A closing quote must be followed by a blank or the end of the line. */
        *sp = s + 1;
        return s + 1 < e && !is_blank(s[1]) ? -1 : 1;
    }
    out[(*o)++] = s[0];
    *sp = s + 1;
    return 0;
}

/* One step inside single quotes: only \' is an escape. Same returns as in_double(). */
static int
in_single(const char **sp, const char *e, char *out, size_t *o)
{
    const char *s = *sp;
    if (e - s >= 2 && s[0] == '\\' && s[1] == '\'') {
        out[(*o)++] = '\'';
        *sp = s + 2;
        return 0;
    }
    if (s[0] == '\'') {
        *sp = s + 1;
        return s + 1 < e && !is_blank(s[1]) ? -1 : 1;
    }
    out[(*o)++] = s[0];
    *sp = s + 1;
    return 0;
}

/*
 * The rest of an argument that holds a quote, from *sp (at a quote), decoded into out after the
 * o bytes already there. Quotes may open anywhere in an argument (a"b c"d is one argument until
 * the closing quote, which must then end it). Returns the decoded length, or -1 for unbalanced
 * quotes. The output is never longer than the input it decodes.
 */
static long
quoted_word(const char **sp, const char *e, char *out, size_t o)
{
    const char *s = *sp;
    char quote = 0;
    while (s < e) {
        if (quote == 0) {
            if (ends_word(*s)) {
                break;
            }
            if (*s == '"' || *s == '\'') {
                quote = *s++;
            } else {
                out[o++] = *s++;
            }
            continue;
        }
        int rc = quote == '"' ? in_double(&s, e, out, &o) : in_single(&s, e, out, &o);
        if (rc < 0) {
            return -1;
        }
        if (rc > 0) {
            *sp = s;
            return (long)o;
        }
    }
    if (quote != 0) {
        return -1;
    }
    *sp = s;
    return (long)o;
}

/*
 * Split the line [s, e) into req->argv as sdssplitargs does. An argument without quotes is a
 * view of the line; one with quotes is decoded into req->scratch, which the line's length bounds.
 */
static enum resp_parse_rc
split_inline(struct resp_parser *p, const char *s, const char *e, struct resp_req *req)
{
    size_t used = 0;
    uint32_t argc = 0;
    for (;;) {
        while (s < e && is_blank(*s)) {
            s++;
        }
        if (s == e) {
            break;
        }
        if (argc == p->opts.max_args || (req->argv_cap != 0 && argc == req->argv_cap)) {
            return fail(p, req, LIT(E_BIG_INLINE), "inline request above max-args");
        }
        const char *w = s;
        while (s < e && !ends_word(*s) && *s != '"' && *s != '\'') {
            s++;
        }
        if (s == e || ends_word(*s)) {
            req->argv[argc++] = (struct resp_arg){.p = w, .len = (size_t)(s - w)};
            continue;
        }
        char *out = req->scratch + used;
        memcpy(out, w, (size_t)(s - w));
        long len = quoted_word(&s, e, out, (size_t)(s - w));
        if (len < 0) {
            return fail(p, req, LIT(E_QUOTES), "unbalanced quotes in inline request");
        }
        req->argv[argc++] = (struct resp_arg){.p = out, .len = (size_t)len};
        used += (size_t)len;
    }
    req->argc = argc;
    return RESP_PARSE_OK;
}

static enum resp_parse_rc
parse_inline(struct resp_parser *p, const char *buf, size_t n, struct resp_req *req)
{
    size_t nl;
    enum line_rc lr = find_line(p, buf, n, 0, '\n', false, &nl);
    if (lr == LINE_AGAIN) {
        return RESP_PARSE_AGAIN;
    }
    if (lr == LINE_TOO_BIG) {
        return fail(p, req, LIT(E_BIG_INLINE), "too big inline request");
    }
    size_t end = nl > 0 && buf[nl - 1] == '\r' ? nl - 1 : nl;
    req->is_inline = true;
    if (split_inline(p, buf, buf + end, req) != RESP_PARSE_OK) {
        return RESP_PARSE_ERROR;
    }
    return finish(p, req, req->argc == 0 ? RESP_PARSE_SKIP : RESP_PARSE_OK, nl + 1);
}

enum resp_parse_rc
resp_parse(struct resp_parser *p, const char *buf, size_t n, struct resp_req *req)
{
    req->argc = 0;
    req->consumed = 0;
    req->is_inline = false;
    req->err = (struct resp_err){0};
    if (n == 0 || p->need > n) {
        return RESP_PARSE_AGAIN;
    }
    if (p->off > n) {
        /* Fewer bytes than the last call saw: the caller broke the contract; start over. */
        resp_parser_rewind(p);
    }
    if (buf[0] == '*') {
        return parse_multibulk(p, buf, n, req);
    }
    return parse_inline(p, buf, n, req);
}
