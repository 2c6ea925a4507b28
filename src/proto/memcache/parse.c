/*
 * memcache parse: the memcached text and meta request parser. Contract in
 * include/petrel/memcache.h; the protocol surface and the deliberate differences from memcached
 * are in docs/protocol.md.
 *
 * The parser mirrors memcached 1.6.45's observable behaviour: which lines get ERROR and which
 * get a CLIENT_ERROR, when noreply silences an error, when a refused data block is swallowed and
 * when it is instead read as the next command (tests/integration/test_compat.py holds 1.6.45's
 * replies). It is written for the hot path: one memchr() for the
 * line, a single pass over the tokens, no copies, no allocation.
 */
#include "petrel/memcache.h"

#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* memcached 1.6.45 reads at most 23 tokens of a line and ignores the rest (a get line's keys
 * excepted): its "last token" (noreply) is the 23rd of a longer line. */
#define MAX_TOKENS 23

struct tok {
    const char *p;
    size_t len;
};

#define LIT(s) s, (sizeof(s) - 1)

/* Literal equality of a token, compiled to a few compares for short literals. */
#define TOK_IS(t, s) ((t).len == sizeof(s) - 1 && memcmp((t).p, s, sizeof(s) - 1) == 0)

static const char E_ERROR[] = "ERROR";
static const char E_FORMAT[] = "CLIENT_ERROR bad command line format";
static const char E_CHUNK[] = "CLIENT_ERROR bad data chunk";
static const char E_TOO_LARGE[] = "SERVER_ERROR object too large for cache";
static const char E_NO_MEMORY[] = "SERVER_ERROR out of memory storing object";
static const char E_EXPTIME[] = "CLIENT_ERROR invalid exptime argument";
static const char E_DELTA_ARG[] = "CLIENT_ERROR invalid numeric delta argument";
static const char E_SHUTDOWN_OFF[] = "SERVER_ERROR: shutdown not enabled";
static const char E_WINDOW[] = "CLIENT_ERROR automove window too low or too high";
static const char E_SHUTDOWN_MODE[] = "CLIENT_ERROR invalid shutdown mode";
static const char E_DUP_FLAG[] = "CLIENT_ERROR duplicate flag";
static const char E_INVALID_FLAG[] = "CLIENT_ERROR invalid flag";
static const char E_INVALID_OR_DUP[] = "CLIENT_ERROR invalid or duplicate flag";
static const char E_BAD_TOKEN[] = "CLIENT_ERROR bad token in command line format";
static const char E_DECODE_KEY[] = "CLIENT_ERROR error decoding key";
static const char E_INITIAL[] = "CLIENT_ERROR invalid numeric initial value";
static const char E_DELTA[] = "CLIENT_ERROR invalid numeric delta value";
static const char E_OPAQUE[] = "CLIENT_ERROR opaque token too long";
static const char E_TOO_LONG[] = "CLIENT_ERROR options flags are too long";
static const char E_MS_MODE[] = "CLIENT_ERROR invalid mode for ms M token";
static const char E_MA_MODE[] = "CLIENT_ERROR invalid mode for ma M token";
static const char E_CRAWL_SLEEP[] = "CLIENT_ERROR sleep must be one second or less";
static const char E_KEEP[] = ""; /* a meta flag failed without a message of its own */

void
mc_req_pack(struct mc_req *dst, const struct mc_req *src, const char *text)
{
    /* As one block (a struct assignment moves it word by word), and only what the command
     * uses: 104 of 440 bytes for a text command (see struct mc_req), 208 for a meta command
     * (not err, which only an error has, nor binkey, which only a decoded key uses). */
    if (src->cmd <= MC_CMD_TOUCH) {
        memcpy(dst, src, offsetof(struct mc_req, verbosity)); /* constant sizes: inline copies */
    } else {
        memcpy(dst, src, offsetof(struct mc_req, err));
    }
    mc_req_views_move(dst, (uintptr_t)text, 0);
    if (src->key == src->binkey) {
        memcpy(dst->binkey, src->binkey, src->klen);
        dst->key = MC_REQ_BINKEY; /* in the copy's binkey: unpacked as such */
    }
}

void
mc_parser_init(struct mc_parser *p, const struct mc_parser_opts *opts)
{
    *p = (struct mc_parser){.opts = *opts};
    if (p->opts.max_get_line == 0) {
        p->opts.max_get_line = MC_GET_LINE_DEFAULT;
    }
    /* A get line is always allowed the ordinary line length. */
    if (p->opts.max_get_line < MC_LINE_MAX + 1) {
        p->opts.max_get_line = MC_LINE_MAX + 1;
    }
}

/* ---- small helpers ---- */

static enum mc_parse_rc
fail(struct mc_req *req, const char *msg, size_t len, bool quiet, size_t consumed)
{
    req->cmd = MC_CMD_NONE;
    req->consumed = consumed;
    req->err = (struct mc_err){.msg = msg, .len = (uint16_t)len, .quiet = quiet};
    return MC_PARSE_ERROR;
}

/* An error that refuses a data block: the line is consumed, the block swallowed later. */
static enum mc_parse_rc
fail_swallow(struct mc_parser *p, struct mc_req *req, const char *msg, size_t len, bool quiet,
             size_t consumed, size_t swallow)
{
    fail(req, msg, len, quiet, consumed);
    req->err.action = MC_ERR_SWALLOW;
    req->err.swallow = swallow;
    p->swallow = swallow;
    return MC_PARSE_ERROR;
}

static enum mc_parse_rc
fail_close(struct mc_req *req, const char *why)
{
    fail(req, NULL, 0, true, 0);
    req->err.action = MC_ERR_CLOSE;
    req->err.why = why;
    return MC_PARSE_ERROR;
}

/*
 * Numbers come in two dialects in memcached 1.6.45. Most tokens go through a strict reader:
 * plain digits (a leading '-' for signed ones), no '+', at most 11 characters for 32-bit and 22
 * for 64-bit values, no overflow. The client flags and the exptime of the storage commands go
 * through the C library's strtoul/strtol instead, then are cut to 32 bits: a '+' is fine there,
 * and so is a value too wide for 32 bits (it wraps).
 */
#define STRICT32_LEN 11
#define STRICT64_LEN 22

/* Strict unsigned: digits only (none means 0, as in memcached), within max. */
static bool
strict_uint(const char *s, size_t len, size_t maxlen, uint64_t max, uint64_t *out)
{
    if (len > maxlen) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9 || v > (max - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static bool
parse_u64(const char *s, size_t len, uint64_t *out)
{
    return strict_uint(s, len, STRICT64_LEN, UINT64_MAX, out);
}

static bool
parse_u32(const char *s, size_t len, uint32_t *out)
{
    uint64_t v;
    if (!strict_uint(s, len, STRICT32_LEN, UINT32_MAX, &v)) {
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

/* Strict signed 32-bit: an optional '-', then digits (a lone '-' is 0, as in memcached). */
static bool
parse_i32(const char *s, size_t len, int32_t *out)
{
    if (len > STRICT32_LEN) {
        return false;
    }
    bool neg = len > 0 && s[0] == '-';
    uint64_t v;
    if (!strict_uint(s + neg, len - neg, STRICT32_LEN, (uint64_t)INT32_MAX + neg, &v)) {
        return false;
    }
    *out = neg ? (int32_t)(-(int64_t)v) : (int32_t)v;
    return true;
}

/*
 * strtoul/strtol's reading of a whole token: an optional sign, at least one digit, nothing
 * else; *mag is the magnitude, false past UINT64_MAX (the C library's ERANGE).
 */
static bool
libc_digits(const char *s, size_t len, bool *neg, uint64_t *mag)
{
    size_t i = 0;
    *neg = false;
    if (len > 0 && (s[0] == '+' || s[0] == '-')) {
        *neg = s[0] == '-';
        i = 1;
    }
    if (i == len) {
        return false;
    }
    uint64_t v = 0;
    for (; i < len; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    *mag = v;
    return true;
}

/* Client flags of a storage command (and lru_crawler's class ids): memcache.h. */
bool
mc_strtoul32(const char *s, size_t len, uint32_t *out)
{
    bool neg;
    uint64_t mag;
    if (!libc_digits(s, len, &neg, &mag)) {
        return false;
    }
    uint64_t v = neg ? (uint64_t)0 - mag : mag;
    /* memcached rejects a '-' only when the result reads as negative. */
    if (neg && (int64_t)v < 0) {
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

int64_t
mc_exptime_abs(int64_t exptime, int64_t now)
{
    if (exptime == 0) {
        return 0;
    }
    if (exptime < 0) {
        return -1;
    }
    return exptime <= MC_EXPTIME_REL_MAX ? now + exptime : exptime;
}

/* Exptime of a storage command: strtol within 64 bits, cut to 32 bits (two's complement). */
static bool
parse_exptime_libc(const char *s, size_t len, int32_t *out)
{
    bool neg;
    uint64_t mag;
    if (!libc_digits(s, len, &neg, &mag) || mag > (uint64_t)INT64_MAX + neg) {
        return false;
    }
    uint64_t v = neg ? (uint64_t)0 - mag : mag;
    *out = (int32_t)(uint32_t)v;
    return true;
}

static int
b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

/* Standard base64 with padding; returns the decoded length, 0 for invalid input. */
static size_t
b64_decode(const char *in, size_t len, char *out, size_t cap)
{
    if (len == 0 || len % 4 != 0) {
        return 0;
    }
    size_t pad = 0;
    if (in[len - 1] == '=') {
        pad = in[len - 2] == '=' ? 2 : 1;
    }
    size_t olen = len / 4 * 3 - pad;
    if (olen == 0 || olen > cap) {
        return 0;
    }
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        for (int j = 0; j < 4; j++) {
            bool padding = i + (size_t)j >= len - pad;
            v[j] = padding ? 0 : b64_value((unsigned char)in[i + (size_t)j]);
            if (v[j] < 0) {
                return 0;
            }
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        char b3[3] = {(char)(w >> 16), (char)(w >> 8), (char)w};
        for (int j = 0; j < 3 && o < olen; j++) {
            out[o++] = b3[j];
        }
    }
    return olen;
}

/*
 * Token scanning, 8 bytes at a time: a word is tested at once for a byte below 0x21 (space or
 * control) or equal to 0x7f. The classic "has a byte less than n" bit trick may flag bytes above
 * the first real hit through borrows, but never below it, so the lowest flag is exact.
 */
#define ONES  UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

static inline uint64_t
special_bytes(uint64_t w)
{
    uint64_t low = (w - ONES * 0x21) & ~w & HIGHS;
    uint64_t x = w ^ (ONES * 0x7f);
    uint64_t del = (x - ONES) & ~x & HIGHS;
    return low | del;
}

/* First byte in [s, e) that is a space, a control character or DEL; e if none. */
static inline const char *
token_end(const char *s, const char *e)
{
    while (e - s >= 8) {
        uint64_t w;
        memcpy(&w, s, sizeof(w));
        uint64_t m = special_bytes(w);
        if (m != 0) {
            return s + (__builtin_ctzll(m) >> 3);
        }
        s += 8;
    }
    while (s < e && (unsigned char)*s > 0x20 && *s != 0x7f) {
        s++;
    }
    return s;
}

/* First space in [s, e), or e. */
static inline const char *
token_end_space(const char *s, const char *e)
{
    const char *sp = memchr(s, ' ', (size_t)(e - s));
    return sp != NULL ? sp : e;
}

/*
 * Keys are at most 250 bytes without control characters. memcached itself accepts control
 * characters; refusing them keeps keys printable in logs and stats (docs/protocol.md).
 */
static bool
key_ok(const char *k, size_t len)
{
    /* A token holds no space, so stopping early means a control character. */
    return len <= MC_KEY_MAX && token_end(k, k + len) == k + len;
}

/* Split [s, e) at spaces into at most MAX_TOKENS tokens; the rest of the line is ignored. */
static unsigned
tokenize(const char *s, const char *e, struct tok *t)
{
    unsigned n = 0;
    while (s < e && n < MAX_TOKENS) {
        if (*s == ' ') {
            s++;
            continue;
        }
        const char *b = s;
        /* Tokens here are short numbers and one key: a byte loop beats word tricks. Control
         * characters belong to the token (the key check refuses them later). */
        while (s < e && *s != ' ') {
            s++;
        }
        t[n].p = b;
        t[n].len = (size_t)(s - b);
        n++;
    }
    return n;
}

/* memcached's noreply: the last token of the line is exactly "noreply". */
static bool
last_is_noreply(const struct tok *t, unsigned n)
{
    return n > 0 && TOK_IS(t[n - 1], "noreply");
}

/* ---- retrieval ---- */

/*
 * memcached 1.6.45 answers a bad key in a get line with the error line it had composed for
 * the key, followed by an empty line: "CLIENT_ERROR ...\r\n\r\n", or, when the line's last
 * token is "noreply" (which silenced that error line), the empty line alone. Whatever the keys
 * before it found is dropped.
 */
static const char E_GET_KEY[] = "CLIENT_ERROR bad command line format\r\n";

/* The reply to a bad key of a get line (line: the whole line, without its end). */
static enum mc_parse_rc
get_key_error(struct mc_req *req, const char *line, const char *e, size_t linelen)
{
    struct tok t[MAX_TOKENS];
    if (last_is_noreply(t, tokenize(line, e, t))) {
        return fail(req, "", 0, false, linelen);
    }
    return fail(req, LIT(E_GET_KEY), false, linelen);
}

/*
 * get/gets/gat/gats; s is just past the command. The keys are validated here, all of them, so
 * that a bad key anywhere on the line gives one error and no partial reply, as in memcached.
 * memcached checks, in order: a key is there (and an exptime for gat), the exptime, the keys.
 */
static enum mc_parse_rc
parse_get(struct mc_req *req, enum mc_cmd cmd, const char *line, const char *s, const char *e,
          size_t linelen)
{
    bool touch = cmd == MC_CMD_GAT || cmd == MC_CMD_GATS;
    const char *exp = NULL;
    size_t exp_len = 0;
    if (touch) {
        while (s < e && *s == ' ') {
            s++;
        }
        exp = s;
        while (s < e && *s != ' ') {
            s++;
        }
        exp_len = (size_t)(s - exp);
    }
    req->args = s;
    req->args_len = (size_t)(e - s);
    req->key = NULL;
    req->klen = 0;
    uint32_t nkeys = 0;
    bool bad_key = false;
    while (s < e) {
        if (*s == ' ') {
            s++;
            continue;
        }
        const char *b = s;
        s = token_end(s, e);
        size_t len = (size_t)(s - b);
        /* Stopping anywhere but at a space or the end means a control character. */
        if (s < e && *s != ' ') {
            s = token_end_space(s, e);
            bad_key = true;
        }
        bad_key |= len > MC_KEY_MAX;
        if (nkeys == 0) {
            req->key = req->key_raw = b;
            req->klen = req->klen_raw = (uint8_t)len;
        }
        nkeys++;
    }
    if (nkeys == 0) {
        return fail(req, LIT(E_FORMAT), false, linelen);
    }
    if (touch && !parse_i32(exp, exp_len, &req->exptime)) {
        return fail(req, LIT(E_EXPTIME), false, linelen);
    }
    if (bad_key) {
        return get_key_error(req, line, e, linelen);
    }
    req->nkeys = nkeys;
    req->cmd = cmd;
    req->consumed = linelen;
    return MC_PARSE_OK;
}

/* ---- storage ---- */

/* The data block of a storage command: wait for it, check its "\r\n", point at the value. */
static enum mc_parse_rc
take_value(struct mc_parser *p, struct mc_req *req, enum mc_cmd cmd, const char *buf, size_t n,
           size_t linelen, bool quiet)
{
    size_t need = linelen + (size_t)req->vlen + 2;
    if (n < need && p->refuse) {
        /* No memory to read it into (mc_parse_refuse): memcached's reply when it cannot
         * allocate the item, and the block is swallowed as it arrives. */
        fail_swallow(p, req, LIT(E_NO_MEMORY), quiet, linelen, (size_t)req->vlen + 2);
        req->err.refused = cmd;
        return MC_PARSE_ERROR;
    }
    if (n < need) {
        p->need = need;
        return MC_PARSE_AGAIN;
    }
    p->need = 0;
    const char *v = buf + linelen;
    if (v[req->vlen] != '\r' || v[req->vlen + 1] != '\n') {
        /* memcached reads the whole block first, then refuses it: framing continues after. */
        return fail(req, LIT(E_CHUNK), quiet, need);
    }
    req->val = v;
    req->cmd = cmd;
    req->consumed = need;
    return MC_PARSE_OK;
}

/*
 * set/add/replace/append/prepend/cas. memcached 1.6.45 checks the token count and the length
 * first (a failure there is never silenced and leaves the data block to be read as commands);
 * any later error is silenced by noreply and swallows the block: a bad key, bad flags or
 * exptime, a missing or bad cas unique, a value too large. Tokens past the sixth are ignored.
 */
static enum mc_parse_rc
parse_store(struct mc_parser *p, struct mc_req *req, enum mc_cmd cmd, const char *buf, size_t n,
            const struct tok *t, unsigned nt, size_t linelen)
{
    int32_t vlen;
    if (nt < 5 || !parse_i32(t[4].p, t[4].len, &vlen) || vlen < 0 || vlen > INT_MAX - 2) {
        return fail(req, LIT(E_FORMAT), false, linelen);
    }
    bool quiet = last_is_noreply(t, nt);
    req->noreply = quiet;
    req->vlen = (uint32_t)vlen;
    size_t swallow = (size_t)req->vlen + 2;
    if (!key_ok(t[1].p, t[1].len) || !mc_strtoul32(t[2].p, t[2].len, &req->flags) ||
        !parse_exptime_libc(t[3].p, t[3].len, &req->exptime) ||
        (cmd == MC_CMD_CAS && (nt < 6 || !parse_u64(t[5].p, t[5].len, &req->cas)))) {
        return fail_swallow(p, req, LIT(E_FORMAT), quiet, linelen, swallow);
    }
    req->key = req->key_raw = t[1].p;
    req->klen = req->klen_raw = (uint8_t)t[1].len;
    req->nkeys = 1;
    if (req->vlen > p->opts.max_value) {
        fail_swallow(p, req, LIT(E_TOO_LARGE), quiet, linelen, swallow);
        req->err.refused = cmd == MC_CMD_SET ? cmd : MC_CMD_NONE; /* set drops the old value */
        return MC_PARSE_ERROR;
    }
    return take_value(p, req, cmd, buf, n, linelen, quiet);
}

/* ---- other text commands ---- */

static enum mc_parse_rc
set_key(struct mc_req *req, const struct tok *k, bool quiet, size_t linelen)
{
    if (!key_ok(k->p, k->len)) {
        return fail(req, LIT(E_FORMAT), quiet, linelen);
    }
    req->key = req->key_raw = k->p;
    req->klen = req->klen_raw = (uint8_t)k->len;
    req->nkeys = 1;
    return MC_PARSE_OK;
}

static enum mc_parse_rc
done(struct mc_req *req, enum mc_cmd cmd, size_t linelen)
{
    req->cmd = cmd;
    req->consumed = linelen;
    return MC_PARSE_OK;
}

/*
 * The keyed commands below share memcached 1.6.45's order: too few tokens is a format error
 * that noreply does not silence; after that, noreply (the last token) silences every error.
 * Tokens past the ones a command reads are ignored.
 */
static enum mc_parse_rc
parse_arith(struct mc_req *req, enum mc_cmd cmd, const struct tok *t, unsigned nt, size_t linelen)
{
    if (nt < 3) {
        return fail(req, LIT(E_FORMAT), false, linelen);
    }
    req->noreply = last_is_noreply(t, nt);
    if (set_key(req, &t[1], req->noreply, linelen) != MC_PARSE_OK) {
        return MC_PARSE_ERROR;
    }
    if (!parse_u64(t[2].p, t[2].len, &req->delta)) {
        return fail(req, LIT(E_DELTA_ARG), req->noreply, linelen);
    }
    return done(req, cmd, linelen);
}

/* delete <key> [anything] [noreply]: 1.6.45 dropped the old "0" argument's special case. */
static enum mc_parse_rc
parse_delete(struct mc_req *req, const struct tok *t, unsigned nt, size_t linelen)
{
    if (nt < 2) {
        return fail(req, LIT(E_FORMAT), false, linelen);
    }
    req->noreply = last_is_noreply(t, nt);
    if (set_key(req, &t[1], req->noreply, linelen) != MC_PARSE_OK) {
        return MC_PARSE_ERROR;
    }
    return done(req, MC_CMD_DELETE, linelen);
}

static enum mc_parse_rc
parse_touch(struct mc_req *req, const struct tok *t, unsigned nt, size_t linelen)
{
    if (nt < 3) {
        return fail(req, LIT(E_FORMAT), false, linelen);
    }
    req->noreply = last_is_noreply(t, nt);
    if (set_key(req, &t[1], req->noreply, linelen) != MC_PARSE_OK) {
        return MC_PARSE_ERROR;
    }
    if (!parse_i32(t[2].p, t[2].len, &req->exptime)) {
        return fail(req, LIT(E_EXPTIME), req->noreply, linelen);
    }
    return done(req, MC_CMD_TOUCH, linelen);
}

/* flush_all [delay] [noreply]: any further token is ignored. */
static enum mc_parse_rc
parse_flush_all(struct mc_req *req, const struct tok *t, unsigned nt, size_t linelen)
{
    req->noreply = last_is_noreply(t, nt);
    req->exptime = 0;
    req->has_delay = false;
    if (nt != (req->noreply ? 2u : 1u)) {
        if (!parse_i32(t[1].p, t[1].len, &req->exptime)) {
            return fail(req, LIT(E_EXPTIME), req->noreply, linelen);
        }
        req->has_delay = true;
    }
    return done(req, MC_CMD_FLUSH_ALL, linelen);
}

static enum mc_parse_rc
parse_verbosity(struct mc_req *req, const struct tok *t, unsigned nt, size_t linelen)
{
    req->noreply = last_is_noreply(t, nt);
    if (nt < 2 || !parse_u32(t[1].p, t[1].len, &req->verbosity)) {
        return fail(req, LIT(E_FORMAT), req->noreply, linelen);
    }
    return done(req, MC_CMD_VERBOSITY, linelen);
}

/* memcached compares a subcommand as a prefix of the word: "g" is "graceful". */
static bool
tok_prefix_of(const struct tok *t, const char *word)
{
    return t->len <= strlen(word) && memcmp(t->p, word, t->len) == 0;
}

static enum mc_parse_rc
parse_shutdown(struct mc_parser *p, struct mc_req *req, const struct tok *t, unsigned nt,
               size_t linelen)
{
    bool quiet = last_is_noreply(t, nt);
    if (!p->opts.shutdown_enabled) {
        return fail(req, LIT(E_SHUTDOWN_OFF), quiet, linelen);
    }
    req->graceful = false;
    if (nt == 2 && tok_prefix_of(&t[1], "graceful")) {
        req->graceful = true;
    } else if (nt != 1) {
        return fail(req, LIT(E_SHUTDOWN_MODE), quiet, linelen);
    }
    return done(req, MC_CMD_SHUTDOWN, linelen);
}

/*
 * slabs automove <0|1|2> | automove ratio|freeratio <x> | automove window <3..1800> |
 * reassign <src> <dst>: memcached's argument checks, with its replies. Segcache has no slab
 * classes and no slab mover, so a valid automove setting changes nothing (OK), and a valid
 * reassign names classes that do not exist (MC_SLABS_BADCLASS) unless both are the same.
 */
static enum mc_parse_rc
slabs_reassign(struct mc_req *req, const struct tok *t, bool quiet, size_t linelen)
{
    int32_t src, dst;
    if (!parse_i32(t[2].p, t[2].len, &src) || !parse_i32(t[3].p, t[3].len, &dst)) {
        return fail(req, LIT(E_FORMAT), quiet, linelen);
    }
    req->slabs = src == dst ? MC_SLABS_SAME : MC_SLABS_BADCLASS;
    return done(req, MC_CMD_SLABS, linelen);
}

/* A decimal number as strtod reads a whole token (digits, one point, an exponent, a sign). */
static bool
token_is_double(const struct tok *t)
{
    char tmp[32];
    if (t->len == 0 || t->len >= sizeof(tmp)) {
        return false;
    }
    memcpy(tmp, t->p, t->len);
    tmp[t->len] = '\0';
    char *end;
    (void)strtod(tmp, &end);
    return end != tmp && *end == '\0';
}

static enum mc_parse_rc
slabs_automove(struct mc_req *req, const struct tok *t, unsigned nt, bool quiet, size_t linelen)
{
    req->slabs = MC_SLABS_OK;
    if (tok_prefix_of(&t[2], "ratio") || tok_prefix_of(&t[2], "freeratio")) {
        if (nt < 4 || !token_is_double(&t[3])) {
            return fail(req, LIT(E_ERROR), quiet, linelen);
        }
        return done(req, MC_CMD_SLABS, linelen);
    }
    uint32_t level;
    if (tok_prefix_of(&t[2], "window")) {
        if (nt < 4 || !parse_u32(t[3].p, t[3].len, &level)) {
            return fail(req, LIT(E_FORMAT), quiet, linelen);
        }
        if (level < 3 || level > 1800) {
            return fail(req, LIT(E_WINDOW), quiet, linelen);
        }
        return done(req, MC_CMD_SLABS, linelen);
    }
    if (!parse_u32(t[2].p, t[2].len, &level)) {
        return fail(req, LIT(E_FORMAT), quiet, linelen);
    }
    if (level > 2) {
        return fail(req, LIT(E_ERROR), quiet, linelen);
    }
    return done(req, MC_CMD_SLABS, linelen);
}

static enum mc_parse_rc
parse_slabs(struct mc_req *req, const struct tok *t, unsigned nt, size_t linelen)
{
    bool quiet = last_is_noreply(t, nt);
    req->noreply = quiet;
    if (nt == 4 && tok_prefix_of(&t[1], "reassign")) {
        return slabs_reassign(req, t, quiet, linelen);
    }
    if (nt >= 3 && tok_prefix_of(&t[1], "automove")) {
        return slabs_automove(req, t, nt, quiet, linelen);
    }
    return fail(req, LIT(E_ERROR), quiet, linelen);
}

static enum mc_parse_rc
parse_stats(struct mc_req *req, const struct tok *t, unsigned nt, const char *e, size_t linelen)
{
    if (nt > 1) {
        req->args = t[1].p;
        req->args_len = (size_t)(e - t[1].p);
        req->nargs = nt - 1;
    } else {
        req->args = e;
        req->args_len = 0;
        req->nargs = 0;
    }
    return done(req, MC_CMD_STATS, linelen);
}

/* ---- lru_crawler ---- */

/* memcached matches a subcommand by prefix ("lru_crawler m all" is metadump), in this order. */
static bool
crawler_sub_is(const struct tok *t, const char *name)
{
    return t->len <= strlen(name) && memcmp(t->p, name, t->len) == 0;
}

/* A crawler number: digits only, at most 11 of them, within 32 bits (as memcached reads it). */
static bool
crawler_u32(const struct tok *t, uint32_t *out)
{
    if (t->len > 11 || t->len == 0 || t->p[0] == '+') {
        return false;
    }
    return parse_u32(t->p, t->len, out);
}

static enum mc_parse_rc
parse_lru_crawler(struct mc_req *req, const struct tok *t, unsigned nt, size_t linelen)
{
    static const char *const with_arg[] = {"crawl", "metadump", "mgdump", "tocrawl", "sleep"};
    req->crawler = 0;
    if (nt == 2) {
        req->crawler = crawler_sub_is(&t[1], "enable")    ? MC_CRAWLER_ENABLE
                       : crawler_sub_is(&t[1], "disable") ? MC_CRAWLER_DISABLE
                                                          : 0;
    }
    for (unsigned i = 0; nt == 3 && req->crawler == 0 && i < 5; i++) {
        req->crawler = crawler_sub_is(&t[1], with_arg[i]) ? (uint8_t)(MC_CRAWLER_CRAWL + i) : 0;
    }
    if (req->crawler == 0) {
        return fail(req, LIT(E_ERROR), false, linelen);
    }
    uint32_t n = 0;
    if ((req->crawler == MC_CRAWLER_TOCRAWL || req->crawler == MC_CRAWLER_SLEEP) &&
        !crawler_u32(&t[2], &n)) {
        return fail(req, LIT(E_FORMAT), false, linelen);
    }
    if (req->crawler == MC_CRAWLER_SLEEP && n > 1000000) {
        return fail(req, LIT(E_CRAWL_SLEEP), false, linelen);
    }
    req->args = nt == 3 ? t[2].p : t[1].p + t[1].len;
    req->args_len = nt == 3 ? t[2].len : 0;
    req->nargs = nt - 1;
    return done(req, MC_CMD_LRU_CRAWLER, linelen);
}

/* An unknown command: ERROR, silenced by a last token "noreply" as memcached 1.6.45 does. */
static enum mc_parse_rc
unknown(struct mc_req *req, const struct tok *t, unsigned nt, size_t linelen)
{
    /* memcached drops a connection that speaks HTTP to it, without a word. */
    if (nt > 1 && t[nt - 1].len >= 5 && memcmp(t[nt - 1].p, "HTTP/", 5) == 0) {
        return fail_close(req, "HTTP request");
    }
    return fail(req, LIT(E_ERROR), last_is_noreply(t, nt), linelen);
}

/* ---- meta ---- */

static void
meta_reset(struct mc_meta *m)
{
    m->seen = 0;
    m->nflags = 0;
    m->mode = 0;
    m->binary_key = false;
    m->opaque = NULL;
    m->opaque_len = 0;
    m->ttl = m->vivify_ttl = m->recache_ttl = 0;
    m->client_flags = 0;
    m->compare_cas = m->new_cas = 0;
    m->delta = 1;
    m->initial = 0;
}

static bool
is_letter(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/*
 * One meta flag. Returns NULL when fine, else the error text; *stop tells whether memcached
 * gives up at once (unknown and duplicate flags) or goes on checking the other flags, in which
 * case the last error seen wins, as in memcached.
 */
static const char *
meta_flag(struct mc_req *req, const struct tok *f, bool *stop)
{
    struct mc_meta *m = &req->meta;
    unsigned char c = (unsigned char)f->p[0];
    const char *arg = f->p + 1;
    size_t alen = f->len - 1;
    *stop = false;
    if (c >= 127 || (is_letter(c) && (m->seen & MC_MF(c)))) {
        *stop = true;
        return E_DUP_FLAG;
    }
    if (!is_letter(c)) {
        *stop = true;
        return E_INVALID_FLAG;
    }
    m->seen |= MC_MF(c);
    m->order[m->nflags++] = (char)c;
    switch (c) {
    case 'b': {
        size_t len = b64_decode(req->key_raw, req->klen_raw, req->binkey, sizeof(req->binkey));
        m->binary_key = true;
        req->key = req->binkey;
        req->klen = (uint8_t)len;
        return len == 0 ? E_DECODE_KEY : NULL;
    }
    case 'N':
        return alen > 0 && parse_i32(arg, alen, &m->vivify_ttl) ? NULL : E_BAD_TOKEN;
    case 'T':
        return alen > 0 && parse_i32(arg, alen, &m->ttl) ? NULL : E_BAD_TOKEN;
    case 'R':
        return alen > 0 && parse_i32(arg, alen, &m->recache_ttl) ? NULL : E_BAD_TOKEN;
    case 'C':
        return alen > 0 && parse_u64(arg, alen, &m->compare_cas) ? NULL : E_BAD_TOKEN;
    case 'E':
        return alen > 0 && parse_u64(arg, alen, &m->new_cas) ? NULL : E_BAD_TOKEN;
    case 'F':
        /* A bad F token fails the line but leaves the message as it was (see meta_flags). */
        return alen > 0 && parse_u32(arg, alen, &m->client_flags) ? NULL : E_KEEP;
    case 'J':
        return alen > 0 && parse_u64(arg, alen, &m->initial) ? NULL : E_INITIAL;
    case 'D':
        return alen > 0 && parse_u64(arg, alen, &m->delta) ? NULL : E_DELTA;
    case 'M':
        /* memcached reads the byte after the M, whatever follows it: a bare M reads the space
         * or line end after it, never a valid mode. */
        m->mode = f->len >= 2 ? f->p[1] : ' ';
        return NULL;
    case 'O':
        m->opaque = arg;
        m->opaque_len = alen > 255 ? 255 : (uint8_t)alen;
        return NULL;
    case 'q':
        req->noreply = true;
        return NULL;
    case 'c':
    case 'f':
    case 'h':
    case 'k':
    case 'l':
    case 's':
    case 't':
    case 'u':
    case 'v':
    case 'I':
    case 'x':
    case 'P':
    case 'L':
        return NULL;
    default:
        *stop = true;
        m->nflags--;
        return E_INVALID_FLAG;
    }
}

/*
 * All flags from t[0]; returns NULL or the error text memcached would give: the message of the
 * last failing flag that has one, else the generic format error.
 */
static const char *
meta_flags(struct mc_req *req, const struct tok *t, unsigned nt)
{
    const char *msg = E_FORMAT;
    bool failed = false;
    for (unsigned i = 0; i < nt; i++) {
        bool stop;
        const char *e = meta_flag(req, &t[i], &stop);
        if (e != NULL) {
            failed = true;
            if (e != E_KEEP) {
                msg = e;
            }
            if (stop) {
                return msg;
            }
        }
    }
    return failed ? msg : NULL;
}

/* memcached measures the opaque with its 'O'. */
static bool
opaque_ok(const struct mc_meta *m)
{
    return !(m->seen & MC_MF('O')) || (size_t)m->opaque_len + 1 <= MC_OPAQUE_MAX;
}

/*
 * memcached 1.6.45 tokenizes a meta line before anything else, and gives up on the whole line
 * (a format error, any data block then read as commands) when a flag, from token `from` on
 * and among the first MAX_TOKENS, starts with neither a letter-range byte ('A'..'z') nor a
 * digit.
 */
static bool
meta_tokens_ok(const struct tok *t, unsigned nt, unsigned from)
{
    for (unsigned i = from; i < nt; i++) {
        unsigned char c = (unsigned char)t[i].p[0];
        if (!(c >= 'A' && c <= 'z') && !(c >= '0' && c <= '9')) {
            return false;
        }
    }
    return true;
}

/*
 * The flag checks of mg, ms, md and ma, in memcached's order: the key's length, the token
 * count, then each flag. Returns NULL or the error text.
 */
static const char *
meta_check(struct mc_req *req, const struct tok *t, unsigned nt, unsigned from)
{
    if (!key_ok(t[1].p, t[1].len)) {
        return E_FORMAT;
    }
    req->key = req->key_raw = t[1].p;
    req->klen = req->klen_raw = (uint8_t)t[1].len;
    req->nkeys = 1;
    if (nt > MC_META_TOKENS_MAX) {
        return E_TOO_LONG;
    }
    return meta_flags(req, &t[from], nt - from);
}

static enum mc_parse_rc
parse_ms(struct mc_parser *p, struct mc_req *req, const char *buf, size_t n, const struct tok *t,
         unsigned nt, size_t linelen)
{
    int32_t vlen;
    if (nt < 3 || !meta_tokens_ok(t, nt, 3) || !parse_i32(t[2].p, t[2].len, &vlen) || vlen < 0 ||
        vlen > INT_MAX - 2) {
        return fail(req, LIT(E_FORMAT), false, linelen);
    }
    req->vlen = (uint32_t)vlen;
    size_t swallow = (size_t)req->vlen + 2;
    /* From here on memcached knows the block's length and swallows it after an error. */
    const char *err = meta_check(req, t, nt, 3);
    if (err != NULL) {
        return fail_swallow(p, req, err, strlen(err), false, linelen, swallow);
    }
    char mode = req->meta.mode;
    if (mode != 0 && mode != 'E' && mode != 'A' && mode != 'P' && mode != 'R' && mode != 'S') {
        return fail_swallow(p, req, LIT(E_MS_MODE), false, linelen, swallow);
    }
    if (req->vlen > p->opts.max_value) {
        /* Whatever the mode, memcached drops the old value of an ms it cannot store. */
        fail_swallow(p, req, LIT(E_TOO_LARGE), false, linelen, swallow);
        req->err.refused = MC_CMD_MS;
        return MC_PARSE_ERROR;
    }
    if (!opaque_ok(&req->meta)) {
        return fail_swallow(p, req, LIT(E_OPAQUE), false, linelen, swallow);
    }
    req->flags = req->meta.client_flags;
    req->exptime = req->meta.ttl;
    req->cas = req->meta.compare_cas;
    /* Meta errors are never silenced by q. */
    return take_value(p, req, MC_CMD_MS, buf, n, linelen, false);
}

/* me <key> [b <anything>]: memcached 1.6.45 reads b only as the third of four tokens or more. */
static enum mc_parse_rc
parse_me(struct mc_req *req, const struct tok *t, unsigned nt, size_t linelen)
{
    if (nt < 2 || !meta_tokens_ok(t, nt, 2) || !key_ok(t[1].p, t[1].len)) {
        return fail(req, LIT(E_FORMAT), false, linelen);
    }
    req->key = req->key_raw = t[1].p;
    req->klen = req->klen_raw = (uint8_t)t[1].len;
    req->nkeys = 1;
    if (nt >= 4 && TOK_IS(t[2], "b")) {
        size_t len = b64_decode(req->key_raw, req->klen_raw, req->binkey, sizeof(req->binkey));
        if (len == 0) {
            return fail(req, LIT(E_FORMAT), false, linelen);
        }
        req->meta.binary_key = true;
        req->meta.seen |= MC_MF('b');
        req->key = req->binkey;
        req->klen = (uint8_t)len;
    }
    return done(req, MC_CMD_ME, linelen);
}

static enum mc_parse_rc
parse_meta(struct mc_parser *p, struct mc_req *req, const char *buf, size_t n, const struct tok *t,
           unsigned nt, size_t linelen)
{
    enum mc_cmd cmd;
    switch (t[0].p[1]) {
    case 'g':
        cmd = MC_CMD_MG;
        break;
    case 's':
        cmd = MC_CMD_MS;
        break;
    case 'd':
        cmd = MC_CMD_MD;
        break;
    case 'a':
        cmd = MC_CMD_MA;
        break;
    case 'n':
        return done(req, MC_CMD_MN, linelen);
    case 'e':
        meta_reset(&req->meta);
        return parse_me(req, t, nt, linelen);
    default:
        return unknown(req, t, nt, linelen);
    }
    meta_reset(&req->meta);
    if (cmd == MC_CMD_MS) {
        return parse_ms(p, req, buf, n, t, nt, linelen);
    }
    if (nt < 2 || !meta_tokens_ok(t, nt, 2)) {
        return fail(req, LIT(E_FORMAT), false, linelen);
    }
    const char *err = meta_check(req, t, nt, 2);
    if (err != NULL) {
        /* memcached 1.6.45's ma reports every one of these errors the same way. */
        if (cmd == MC_CMD_MA) {
            err = E_INVALID_OR_DUP;
        }
        return fail(req, err, strlen(err), false, linelen);
    }
    char mode = req->meta.mode;
    if (cmd == MC_CMD_MA && mode != 0 && mode != 'I' && mode != '+' && mode != 'D' && mode != '-') {
        return fail(req, LIT(E_MA_MODE), false, linelen);
    }
    if (!opaque_ok(&req->meta)) {
        return fail(req, LIT(E_OPAQUE), false, linelen);
    }
    req->exptime = req->meta.ttl;
    req->cas = req->meta.compare_cas;
    req->delta = req->meta.delta;
    return done(req, cmd, linelen);
}

/* ---- dispatch ---- */

/* Commands other than the get family, by their first token. */
static enum mc_parse_rc
dispatch(struct mc_parser *p, struct mc_req *req, const char *buf, size_t n, const char *e,
         size_t linelen)
{
    struct tok t[MAX_TOKENS];
    unsigned nt = tokenize(buf, e, t);
    /* The command is what precedes the first space: a line starting with one has none. */
    if (nt == 0 || buf[0] == ' ') {
        return unknown(req, t, nt, linelen);
    }
    const struct tok c = t[0];
    if (c.len == 2 && c.p[0] == 'm') {
        return parse_meta(p, req, buf, n, t, nt, linelen);
    }
    switch (c.len) {
    case 3:
        if (TOK_IS(c, "set")) {
            return parse_store(p, req, MC_CMD_SET, buf, n, t, nt, linelen);
        }
        if (TOK_IS(c, "add")) {
            return parse_store(p, req, MC_CMD_ADD, buf, n, t, nt, linelen);
        }
        if (TOK_IS(c, "cas")) {
            return parse_store(p, req, MC_CMD_CAS, buf, n, t, nt, linelen);
        }
        break;
    case 4:
        if (TOK_IS(c, "incr")) {
            return parse_arith(req, MC_CMD_INCR, t, nt, linelen);
        }
        if (TOK_IS(c, "decr")) {
            return parse_arith(req, MC_CMD_DECR, t, nt, linelen);
        }
        if (TOK_IS(c, "quit")) {
            return done(req, MC_CMD_QUIT, linelen);
        }
        break;
    case 5:
        if (TOK_IS(c, "touch")) {
            return parse_touch(req, t, nt, linelen);
        }
        if (TOK_IS(c, "stats")) {
            return parse_stats(req, t, nt, e, linelen);
        }
        if (TOK_IS(c, "slabs")) {
            return parse_slabs(req, t, nt, linelen);
        }
        break;
    case 6:
        if (TOK_IS(c, "delete")) {
            return parse_delete(req, t, nt, linelen);
        }
        if (TOK_IS(c, "append")) {
            return parse_store(p, req, MC_CMD_APPEND, buf, n, t, nt, linelen);
        }
        break;
    case 7:
        if (TOK_IS(c, "replace")) {
            return parse_store(p, req, MC_CMD_REPLACE, buf, n, t, nt, linelen);
        }
        if (TOK_IS(c, "prepend")) {
            return parse_store(p, req, MC_CMD_PREPEND, buf, n, t, nt, linelen);
        }
        if (TOK_IS(c, "version")) {
            return done(req, MC_CMD_VERSION, linelen);
        }
        break;
    case 8:
        if (TOK_IS(c, "shutdown")) {
            return parse_shutdown(p, req, t, nt, linelen);
        }
        break;
    case 9:
        if (TOK_IS(c, "flush_all")) {
            return parse_flush_all(req, t, nt, linelen);
        }
        if (TOK_IS(c, "verbosity")) {
            return parse_verbosity(req, t, nt, linelen);
        }
        break;
    case 11:
        if (TOK_IS(c, "lru_crawler")) {
            return parse_lru_crawler(req, t, nt, linelen);
        }
        break;
    default:
        break;
    }
    return unknown(req, t, nt, linelen);
}

/* Which get command the line's first token (from its first byte) is, if any. */
static enum mc_cmd
get_family(const char *s, const char *e)
{
    size_t len = (size_t)(e - s);
    if (len < 3 || s[0] != 'g' || (s[1] != 'e' && s[1] != 'a') || s[2] != 't') {
        return MC_CMD_NONE;
    }
    bool get = s[1] == 'e';
    if (len == 3 || s[3] == ' ') {
        return get ? MC_CMD_GET : MC_CMD_GAT;
    }
    if (s[3] == 's' && (len == 4 || s[4] == ' ')) {
        return get ? MC_CMD_GETS : MC_CMD_GATS;
    }
    return MC_CMD_NONE;
}

/*
 * A line without '\n' in its first MC_LINE_MAX + 1 bytes may only be a get or gets (memcached
 * lets multigets grow without bound, after at most 100 leading spaces); anything else has lost
 * framing. The decision depends on the bytes only, never on how they were split.
 */
static bool
long_line_ok(const char *buf, size_t n)
{
    size_t i = 0;
    while (i < n && buf[i] == ' ') {
        i++;
    }
    if (i > 100 || n - i < 5) {
        return false;
    }
    return memcmp(buf + i, "get ", 4) == 0 || memcmp(buf + i, "gets ", 5) == 0;
}

/* Find the '\n' ending the first line, or decide to wait or to close. */
static enum mc_parse_rc
find_line(struct mc_parser *p, const char *buf, size_t n, const char **nl)
{
    size_t from = p->scanned <= n ? p->scanned : 0;
    size_t lim = n < MC_LINE_MAX + 1 ? n : MC_LINE_MAX + 1;
    *nl = NULL;
    if (from < lim) {
        *nl = memchr(buf + from, '\n', lim - from);
    }
    if (*nl != NULL) {
        return MC_PARSE_OK;
    }
    if (n <= MC_LINE_MAX) {
        p->scanned = n;
        return MC_PARSE_AGAIN;
    }
    if (!long_line_ok(buf, n)) {
        return MC_PARSE_ERROR;
    }
    size_t max = p->opts.max_get_line;
    size_t end = n < max ? n : max;
    from = from > lim ? from : lim;
    if (from < end) {
        *nl = memchr(buf + from, '\n', end - from);
    }
    if (*nl != NULL) {
        return MC_PARSE_OK;
    }
    if (n >= max) {
        return MC_PARSE_ERROR;
    }
    p->scanned = n;
    return MC_PARSE_AGAIN;
}

enum mc_parse_rc
mc_parse(struct mc_parser *p, const char *buf, size_t n, struct mc_req *req)
{
    /* Fields a command does not set stay zero, so a request never carries stale values. */
    req->cmd = MC_CMD_NONE;
    req->consumed = 0;
    req->noreply = false;
    req->nkeys = 0;
    req->key = req->key_raw = NULL;
    req->klen = req->klen_raw = 0;
    req->args = NULL;
    req->args_len = 0;
    req->nargs = 0;
    req->flags = 0;
    req->exptime = 0;
    req->vlen = 0;
    req->val = NULL;
    req->cas = 0;
    req->delta = 0;
    req->meta.seen = 0;
    req->meta.nflags = 0;
    req->meta.binary_key = false;
    if (p->swallow > 0) {
        if (n == 0) {
            return MC_PARSE_AGAIN;
        }
        size_t k = n < p->swallow ? n : p->swallow;
        p->swallow -= k;
        req->consumed = k;
        return MC_PARSE_SKIP;
    }
    if (p->need > n) {
        return MC_PARSE_AGAIN;
    }
    p->need = 0;
    /* A binary protocol request: memcached started for ASCII only drops the connection too;
     * nothing it sends can be read as text (its key and body may hold newlines anywhere). */
    if (n > 0 && (unsigned char)buf[0] == MC_BINARY_MAGIC) {
        return fail_close(req, "binary protocol request (not supported)");
    }
    const char *nl;
    enum mc_parse_rc rc = find_line(p, buf, n, &nl);
    if (rc == MC_PARSE_AGAIN) {
        return rc;
    }
    p->scanned = 0;
    if (rc == MC_PARSE_ERROR) {
        return fail_close(req, n > MC_LINE_MAX && long_line_ok(buf, n) ? "get line too long"
                                                                       : "line too long");
    }
    size_t linelen = (size_t)(nl - buf) + 1;
    /* memcached 1.6.45 refuses a line shorter than a two-letter command and its "\r\n". */
    if (linelen < 4) {
        return fail(req, LIT(E_FORMAT), false, linelen);
    }
    const char *e = nl;
    if (e[-1] == '\r') {
        e--;
    }
    enum mc_cmd get = get_family(buf, e);
    if (get != MC_CMD_NONE) {
        return parse_get(req, get, buf, buf + (get == MC_CMD_GET || get == MC_CMD_GAT ? 3 : 4), e,
                         linelen);
    }
    return dispatch(p, req, buf, n, e, linelen);
}

enum mc_parse_rc
mc_parse_refuse(struct mc_parser *p, const char *buf, size_t n, struct mc_req *req)
{
    /* The request is parsed again from its first byte, and take_value() refuses its block. */
    p->need = 0;
    p->scanned = 0;
    p->refuse = true;
    enum mc_parse_rc rc = mc_parse(p, buf, n, req);
    p->refuse = false;
    return rc;
}

const char *
mc_cmd_name(enum mc_cmd cmd)
{
    static const char *const names[MC_CMD_COUNT] = {
        [MC_CMD_NONE] = "none",
        [MC_CMD_GET] = "get",
        [MC_CMD_GETS] = "gets",
        [MC_CMD_GAT] = "gat",
        [MC_CMD_GATS] = "gats",
        [MC_CMD_SET] = "set",
        [MC_CMD_ADD] = "add",
        [MC_CMD_REPLACE] = "replace",
        [MC_CMD_APPEND] = "append",
        [MC_CMD_PREPEND] = "prepend",
        [MC_CMD_CAS] = "cas",
        [MC_CMD_INCR] = "incr",
        [MC_CMD_DECR] = "decr",
        [MC_CMD_DELETE] = "delete",
        [MC_CMD_TOUCH] = "touch",
        [MC_CMD_FLUSH_ALL] = "flush_all",
        [MC_CMD_VERSION] = "version",
        [MC_CMD_VERBOSITY] = "verbosity",
        [MC_CMD_QUIT] = "quit",
        [MC_CMD_STATS] = "stats",
        [MC_CMD_SHUTDOWN] = "shutdown",
        [MC_CMD_SLABS] = "slabs",
        [MC_CMD_MG] = "mg",
        [MC_CMD_MS] = "ms",
        [MC_CMD_MD] = "md",
        [MC_CMD_MA] = "ma",
        [MC_CMD_MN] = "mn",
        [MC_CMD_ME] = "me",
        [MC_CMD_LRU_CRAWLER] = "lru_crawler",
    };
    return (unsigned)cmd < MC_CMD_COUNT ? names[cmd] : "unknown";
}

bool
mc_cmd_is_storage(enum mc_cmd cmd)
{
    return (cmd >= MC_CMD_SET && cmd <= MC_CMD_CAS) || cmd == MC_CMD_MS;
}
