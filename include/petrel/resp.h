/*
 * resp: the Redis protocol (RESP2 and RESP3) as a pure codec (parse requests, compose replies,
 * no I/O).
 *
 * Parsing is streaming and zero copy: resp_parse() looks at the bytes a connection has buffered
 * and either asks for more, or returns one request as argc and argv views, or returns a protocol
 * error carrying Redis 7's exact reply text. Clients send requests in two forms, both accepted:
 * multibulk ("*<n>\r\n" then n times "$<len>\r\n<bytes>\r\n") and inline (a line of words with
 * Redis's quoting rules, as typed in telnet). Composing appends RESP replies to a struct buf,
 * in the RESP2 or RESP3 form the connection speaks. The codec never touches sockets, storage,
 * threads or globals. docs/resp.md describes the bounds and the differences from Redis.
 *
 * Threads: every function may be called from any thread; a struct resp_parser belongs to one
 * connection and a struct resp_req to one thread, each used by its owner only (no locking).
 * Memory: the codec allocates nothing. A request's argv array and its scratch bytes are memory
 * the caller gives (struct resp_req); argv entries point into the caller's input, or into the
 * scratch for an inline argument written with quotes. Views into the input are valid until that
 * input is consumed or moved; views into the scratch until the next resp_parse() with that req.
 */
#ifndef PETREL_RESP_H
#define PETREL_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "petrel/buf.h"

#define RESP_INLINE_MAX_DEFAULT (64u * 1024)         /* Redis's PROTO_INLINE_MAX_SIZE */
#define RESP_BULK_MAX_DEFAULT   (512u * 1024 * 1024) /* Redis's proto-max-bulk-len default */
#define RESP_ARGS_MAX_DEFAULT   65536u      /* most arguments in one request (argv: 1 MiB) */
#define RESP_ARGS_MAX_LIMIT     2147483647u /* Redis refuses counts above INT_MAX; so do we */
#define RESP_UNAUTH_ARGS_MAX    10          /* before AUTH: most arguments (Redis 7) */
#define RESP_UNAUTH_BULK_MAX    16384       /* before AUTH: longest bulk string (Redis 7) */
#define RESP_ERR_TEXT_MAX       48          /* room for the longest protocol error text */
#define RESP_DOUBLE_MAX         32          /* room for a double's text (resp_format_double) */

/** The protocol version a connection speaks: RESP2 until "HELLO 3". */
enum resp_proto {
    RESP_2 = 2,
    RESP_3 = 3,
};

/** Result of resp_parse(). */
enum resp_parse_rc {
    RESP_PARSE_OK = 0, /* a request: req->argc >= 1 args in req->argv; drop req->consumed bytes */
    RESP_PARSE_AGAIN,  /* incomplete: nothing consumed; call again when more bytes arrived */
    RESP_PARSE_SKIP,   /* req->consumed bytes held no command ("\r\n", "*0\r\n", "*-1\r\n"):
                          drop them; no reply, as Redis sends none */
    RESP_PARSE_ERROR,  /* protocol error: reply req->err (resp_compose_error), then close */
};

/**
 * A protocol error. Redis answers every one with "-ERR <msg>" and closes the connection once the
 * reply is written (framing is lost), and so must the caller: there is no recovery.
 */
struct resp_err {
    const char *msg; /* Redis's text without "-ERR " and "\r\n", e.g. "Protocol error: invalid
                        bulk length"; points to a constant or to the req's err_text */
    uint16_t len;    /* strlen(msg) */
    const char *why; /* a short reason for a log line (Redis's own log wording) */
};

/** One argument: a view of len bytes (not NUL-terminated; may hold any byte). */
struct resp_arg {
    const char *p;
    size_t len;
};

/**
 * One parsed request (or error). The caller gives it storage once, with resp_req_init(), and
 * may reuse one req across connections of a thread: resp_parse() keeps no state in it between
 * calls, only in the struct resp_parser.
 */
struct resp_req {
    struct resp_arg *argv; /* caller's array, room for argv_cap entries, or max_args if 0 */
    uint32_t argv_cap;     /* 0, or argv's room when smaller than max_args: a complete
                              multibulk of more arguments returns RESP_PARSE_AGAIN with
                              p->argc > argv_cap (grow argv and call again with the same bytes);
                              an inline line of more words is "too big inline request" */
    char *scratch;         /* caller's bytes, room for the parser's opts.max_inline */
    uint32_t argc;         /* arguments in argv (RESP_PARSE_OK: at least 1) */
    bool is_inline;        /* the request came as an inline line, not a multibulk */
    size_t consumed;       /* bytes to drop from the input */
    struct resp_err err;   /* RESP_PARSE_ERROR */
    char err_text[RESP_ERR_TEXT_MAX]; /* backing for err.msg when the text names a byte */
};

/** Give a request its storage: argv with room for max_args entries, scratch for max_inline. */
static inline void
resp_req_init(struct resp_req *req, struct resp_arg *argv, char *scratch)
{
    *req = (struct resp_req){.argv = argv, .scratch = scratch};
}

/**
 * Per-connection parser bounds; a 0 takes the default. Every bound that Redis also has gives
 * Redis's error text when exceeded.
 */
struct resp_parser_opts {
    size_t max_bulk;   /* longest bulk string: the largest item the server stores (Redis's
                          proto-max-bulk-len); longer: "invalid bulk length" */
    uint32_t max_args; /* most arguments in a request (at most RESP_ARGS_MAX_LIMIT); a multibulk
                          announcing more: "invalid multibulk length", an inline line holding
                          more: "too big inline request" */
    size_t max_inline; /* longest inline line, and longest count line ("*<n>", "$<len>") before
                          it counts as too big; Redis's PROTO_INLINE_MAX_SIZE */
};

/**
 * Per-connection parser state: the bounds, the authentication state, and only shortcuts for a
 * request that is arriving (how far its multibulk has been checked, where to resume scanning for
 * a line's end, how many bytes it needs). The contract that makes the shortcuts safe: after
 * RESP_PARSE_AGAIN the next call passes the same bytes again (possibly moved), possibly followed
 * by more. Offsets are kept, never pointers, so the caller may move or grow its buffer.
 */
struct resp_parser {
    struct resp_parser_opts opts; /* effective bounds, defaults filled in */
    bool auth_required; /* the caller sets it while the connection must still AUTH: Redis's
                           unauthenticated limits apply (RESP_UNAUTH_ARGS_MAX, _BULK_MAX) */
    uint32_t argc;      /* pending multibulk: arguments announced; 0 before its header */
    uint32_t done;      /* pending multibulk: arguments complete */
    size_t first;       /* pending multibulk: offset of the first bulk header */
    size_t off;         /* pending multibulk: offset of the next bulk header */
    size_t scanned;     /* bytes of the current line searched without finding its end */
    size_t need;        /* bytes the pending request needs in all; 0 when unknown */
};

/** Prepare a parser for a new connection (no authentication required until set). */
void resp_parser_init(struct resp_parser *p, const struct resp_parser_opts *opts);

/**
 * Forget the shortcuts, so that the next call may start at an earlier byte than the last one
 * did: for a caller that parsed requests ahead and will parse some of them again.
 */
static inline void
resp_parser_rewind(struct resp_parser *p)
{
    p->argc = 0;
    p->done = 0;
    p->first = 0;
    p->off = 0;
    p->scanned = 0;
    p->need = 0;
}

/**
 * Parse one request from the n bytes at buf, which start at a request's first byte. A request
 * whose first byte is '*' is a multibulk, any other an inline line ending at '\n'.
 *
 * Returns RESP_PARSE_OK (req->argc, req->argv set; drop req->consumed bytes), RESP_PARSE_AGAIN
 * (nothing consumed; p->need, when not 0, is the byte count the whole request needs, so the
 * caller can grow its buffer once), RESP_PARSE_SKIP (drop req->consumed bytes, no reply) or
 * RESP_PARSE_ERROR (reply req->err.msg with resp_compose_error(), then close the connection).
 *
 * A request must be contiguous in buf to complete (the model of the memcached codec): the caller
 * grows its buffer up to p->need, which the bounds limit to opts.max_args bulk strings of at most
 * opts.max_bulk bytes each, with their headers; a caller that cannot (its own memory bound)
 * closes the connection, as Redis does past client-query-buffer-limit. Work per call is bounded
 * by the bytes that arrived since the last one, plus one pass over the arguments when the
 * request completes. The result never depends on how the stream was split across calls.
 */
enum resp_parse_rc resp_parse(struct resp_parser *p, const char *buf, size_t n,
                              struct resp_req *req);

/* ---- composing replies: each appends to b and returns 0, -ENOBUFS or -ENOMEM ---- */

/** Append a simple string "+<s>\r\n" ("OK", "PONG"); a CR or LF in s is sent as a space. */
int resp_compose_simple(struct buf *b, const char *s, size_t len);

/**
 * Append an error reply with Redis's prefix convention: a msg that starts with '-' carries its
 * own code and is sent as is ("-WRONGTYPE Operation against ..."), any other gets "-ERR " in
 * front ("unknown command ..." -> "-ERR unknown command ..."). A CR or LF is sent as a space.
 */
int resp_compose_error(struct buf *b, const char *msg, size_t len);

/** Append an integer ":<n>\r\n". */
int resp_compose_int(struct buf *b, int64_t n);

/** Append a bulk string "$<len>\r\n<bytes>\r\n". */
int resp_compose_bulk(struct buf *b, const void *p, size_t len);

/** Append only a bulk header "$<len>\r\n"; the caller appends the len bytes and "\r\n". */
int resp_compose_bulk_hdr(struct buf *b, size_t len);

/** Append a null (a missing value): RESP2 "$-1\r\n", RESP3 "_\r\n". */
int resp_compose_null(struct buf *b, enum resp_proto v);

/** Append an array header "*<n>\r\n"; the n elements follow. */
int resp_compose_array(struct buf *b, size_t n);

/** Append a null array: RESP2 "*-1\r\n", RESP3 "_\r\n" (RESP3 has no null array). */
int resp_compose_null_array(struct buf *b, enum resp_proto v);

/** Append a map header for n pairs: RESP3 "%<n>\r\n", RESP2 a flat array "*<2n>\r\n". */
int resp_compose_map(struct buf *b, enum resp_proto v, size_t n);

/** Append a set header: RESP3 "~<n>\r\n", RESP2 "*<n>\r\n". */
int resp_compose_set(struct buf *b, enum resp_proto v, size_t n);

/** Append a push header (out-of-band data): RESP3 "><n>\r\n", RESP2 "*<n>\r\n" as Redis does. */
int resp_compose_push(struct buf *b, enum resp_proto v, size_t n);

/**
 * Append a double: RESP3 ",<text>\r\n", RESP2 the text as a bulk string; the text is
 * resp_format_double()'s.
 */
int resp_compose_double(struct buf *b, enum resp_proto v, double d);

/** Append a boolean: RESP3 "#t\r\n" / "#f\r\n", RESP2 ":1\r\n" / ":0\r\n". */
int resp_compose_bool(struct buf *b, enum resp_proto v, bool t);

/**
 * Append a verbatim string: RESP3 "=<len+4>\r\n<fmt>:<bytes>\r\n" where fmt is the first three
 * characters of ext, padded with spaces ("txt", "md "); RESP2 a plain bulk string.
 */
int resp_compose_verbatim(struct buf *b, enum resp_proto v, const char *ext, const void *p,
                          size_t len);

/** Append a big number given as decimal text: RESP3 "(<num>\r\n", RESP2 a bulk string. */
int resp_compose_bignum(struct buf *b, enum resp_proto v, const char *num, size_t len);

/**
 * Write d as Redis 7.2+ does (d2string): "nan", "inf", "-inf", "0", "-0"; an integral value
 * within +-2^62 as an integer; anything else as its shortest round-trip digits, laid out the way
 * Redis's fpconv lays them out ("0.1", "1.5e-7", "1e+20"). dst needs RESP_DOUBLE_MAX bytes;
 * returns the length written (no NUL).
 */
size_t resp_format_double(double d, char *dst);

/**
 * Whether s (slen bytes) matches the glob pattern pat (plen bytes) as Redis 7 matches KEYS,
 * SCAN MATCH and CONFIG GET patterns: '*' any run of bytes, '?' one byte, "[abc]", "[a-z]" and
 * "[^...]" one byte of a set (a range may be written backwards, "\\" escapes in a set, and an
 * unterminated set ends with the pattern), "\\x" the byte x. nocase folds ASCII letters (CONFIG
 * GET). Linear in the pattern times the string: no backtracking past the last '*'.
 */
bool resp_glob_match(const char *pat, size_t plen, const char *s, size_t slen, bool nocase);

/**
 * Write v as Redis's INCRBYFLOAT writes its result: "%.17Lf" with the zeros after the point,
 * and then the point, removed ("-0" becomes "0"). dst needs RESP_LDOUBLE_MAX bytes; returns the
 * length written (no NUL), or 0 when v is not finite.
 */
#define RESP_LDOUBLE_MAX 5120
size_t resp_format_ldouble(long double v, char *dst);

/**
 * Redis's string2ld: the whole of p (len bytes, at most RESP_LDOUBLE_MAX - 1) as a long double
 * as strtold reads it, with no leading blank, nothing after it, not NaN, and no overflow or
 * underflow to zero. Returns false when it is not such a number.
 */
bool resp_parse_ldouble(const char *p, size_t len, long double *out);

#endif /* PETREL_RESP_H */
