/*
 * libFuzzer target for the RESP request parser and the reply composers.
 *
 * The input is a byte stream from a client. It is parsed twice: delivered at once, and
 * delivered in pieces cut at points derived from the input itself, each piece in a fresh buffer
 * that ends exactly where the delivered bytes end, so AddressSanitizer sees any read past them
 * and any view kept into an earlier buffer. Both runs must give the same results (the parser may
 * not depend on how the stream was split), and every result must keep the parser's invariants:
 * consumed <= available, progress on every result but AGAIN, at least one argument in a request
 * and no more than the bounds, every argument inside the input or inside the scratch, a known
 * error text. Each request is then composed back as a RESP array and parsed again, which must
 * give the same arguments; the stream is parsed a third time as an unauthenticated client.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "petrel/resp.h"

#define MAX_EVENTS 4096

/* Small bounds, so that the fuzzer reaches them. */
static const struct resp_parser_opts opts = {.max_bulk = 1024, .max_args = 16, .max_inline = 256};

static struct resp_arg argv_store[16];
static char scratch[256];
static struct resp_arg argv_again[16];
static char scratch_again[256];

struct event {
    enum resp_parse_rc rc;
    size_t offset; /* where in the stream the request started */
    size_t consumed;
    uint32_t argc;
    bool is_inline;
    uint64_t hash; /* of the arguments' bytes and lengths, or of the error text */
};

struct run {
    struct event ev[MAX_EVENTS];
    size_t nev;
};

static void
check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "invariant violated: %s\n", what);
        abort();
    }
}

static uint64_t
hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ s[i]) * 1099511628211u;
    }
    return h;
}

static uint64_t
hash_args(const struct resp_req *r)
{
    uint64_t h = 1469598103934665603u;
    for (uint32_t i = 0; i < r->argc; i++) {
        h = hash_bytes(h, &r->argv[i].len, sizeof(r->argv[i].len));
        h = hash_bytes(h, r->argv[i].p, r->argv[i].len);
    }
    return h;
}

static bool
inside(const char *p, size_t len, const char *base, size_t n)
{
    return p >= base && len <= n && p - base <= (ptrdiff_t)(n - len);
}

/* A request must be in bounds, and its arguments inside the input or the scratch. */
static void
check_request(const struct resp_req *r, const char *buf, size_t n)
{
    check(r->consumed > 0 && r->consumed <= n, "request consumed within input");
    check(r->argc >= 1 && r->argc <= opts.max_args, "argument count within bounds");
    size_t scratch_used = 0;
    for (uint32_t i = 0; i < r->argc; i++) {
        const struct resp_arg *a = &r->argv[i];
        bool in_input = inside(a->p, a->len, buf, r->consumed);
        bool in_scratch = inside(a->p, a->len, scratch, sizeof(scratch));
        check(in_input || (r->is_inline && in_scratch), "argument inside input or scratch");
        if (!r->is_inline) {
            check(a->len <= opts.max_bulk, "bulk within max_bulk");
        }
        if (in_scratch && !in_input) {
            scratch_used += a->len;
        }
    }
    check(scratch_used <= opts.max_inline, "scratch within max_inline");
}

static void
check_error(const struct resp_req *r)
{
    check(r->err.msg != NULL && r->err.len == strlen(r->err.msg), "error text and length");
    check(strncmp(r->err.msg, "Protocol error: ", 16) == 0, "error is a protocol error");
    check(r->err.why != NULL, "error has a reason");
    check(r->consumed == 0, "error consumes nothing");
}

/*
 * Compose the request back as a RESP array of bulk strings and parse that: the same arguments
 * must come out. Also exercise the other composers on the arguments.
 */
static void
round_trip(const struct resp_req *r, struct buf *out)
{
    buf_consume(out, buf_len(out));
    check(resp_compose_array(out, r->argc) == 0, "compose array");
    for (uint32_t i = 0; i < r->argc; i++) {
        check(resp_compose_bulk(out, r->argv[i].p, r->argv[i].len) == 0, "compose bulk");
    }
    struct resp_parser p;
    struct resp_req again;
    resp_parser_init(&p, &opts);
    resp_req_init(&again, argv_again, scratch_again);
    enum resp_parse_rc rc = resp_parse(&p, buf_rptr(out), buf_len(out), &again);
    check(rc == RESP_PARSE_OK, "composed request parses");
    check(again.consumed == buf_len(out), "composed request parses whole");
    check(again.argc == r->argc && hash_args(&again) == hash_args(r), "same arguments back");

    const struct resp_arg *a = &r->argv[r->argc - 1];
    resp_compose_simple(out, a->p, a->len);
    resp_compose_error(out, a->p, a->len);
    resp_compose_verbatim(out, RESP_3, a->p[0] == '\0' ? "" : "txt", a->p, a->len);
    resp_compose_bignum(out, RESP_3, a->p, a->len);
    if (a->len >= sizeof(double)) {
        double d;
        memcpy(&d, a->p, sizeof(d));
        char text[RESP_DOUBLE_MAX + 1];
        size_t len = resp_format_double(d, text);
        check(len < RESP_DOUBLE_MAX, "double text fits");
        text[len] = '\0';
        check(isnan(d) || strtod(text, NULL) == d, "double text reads back");
        resp_compose_double(out, RESP_2, d);
    }
}

static void
record(struct run *run, enum resp_parse_rc rc, const struct resp_req *r, size_t offset)
{
    if (run->nev == MAX_EVENTS) {
        return;
    }
    run->ev[run->nev++] = (struct event){
        .rc = rc,
        .offset = offset,
        .consumed = r->consumed,
        .argc = r->argc,
        .is_inline = r->is_inline,
        .hash = rc == RESP_PARSE_ERROR ? hash_bytes(1, r->err.msg, r->err.len) : hash_args(r),
    };
}

/* Parse data[0, n) delivered up to each cut in turn, until the end or an error. */
static void
run_stream(const uint8_t *data, size_t n, const size_t *cuts, size_t ncuts, bool auth,
           struct run *run, struct buf *out)
{
    struct resp_parser p;
    struct resp_req req;
    resp_parser_init(&p, &opts);
    p.auth_required = auth;
    resp_req_init(&req, argv_store, scratch);
    size_t pos = 0;
    run->nev = 0;
    for (size_t step = 0; step <= ncuts; step++) {
        size_t avail = step < ncuts ? cuts[step] : n;
        if (avail < pos) {
            continue;
        }
        for (;;) {
            size_t len = avail - pos;
            char *copy = malloc(len ? len : 1);
            memcpy(copy, data + pos, len);
            enum resp_parse_rc rc = resp_parse(&p, copy, len, &req);
            check(req.consumed <= len, "consumed <= available");
            if (rc == RESP_PARSE_AGAIN) {
                check(req.consumed == 0, "AGAIN consumes nothing");
                check(p.need == 0 || p.need > len, "need is more than available");
                free(copy);
                break;
            }
            if (rc == RESP_PARSE_OK) {
                check_request(&req, copy, len);
                round_trip(&req, out);
            } else if (rc == RESP_PARSE_SKIP) {
                check(req.consumed > 0 && req.argc == 0, "skip makes progress");
            } else {
                check(rc == RESP_PARSE_ERROR, "known result");
                check_error(&req);
                resp_compose_error(out, req.err.msg, req.err.len);
            }
            record(run, rc, &req, pos);
            free(copy);
            buf_consume(out, buf_len(out));
            if (rc == RESP_PARSE_ERROR) {
                return;
            }
            pos += req.consumed;
        }
    }
}

static int
cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static struct run whole, pieces, unauth;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf out;
    buf_init(&out, 4096, 1 << 20);
    run_stream(data, size, NULL, 0, false, &whole, &out);

    /* Cut points from a hash of the input, so a given input always splits the same way. */
    uint64_t h = hash_bytes(1469598103934665603u, data, size);
    size_t cuts[6];
    for (int i = 0; i < 6; i++) {
        h = h * 6364136223846793005u + 1442695040888963407u;
        cuts[i] = size ? (size_t)(h >> 33) % (size + 1) : 0;
    }
    qsort(cuts, 6, sizeof(cuts[0]), cmp_size);
    run_stream(data, size, cuts, 6, false, &pieces, &out);

    check(whole.nev == pieces.nev, "same number of results whatever the split");
    for (size_t i = 0; i < whole.nev; i++) {
        const struct event *a = &whole.ev[i], *b = &pieces.ev[i];
        check(a->rc == b->rc && a->offset == b->offset && a->consumed == b->consumed &&
                  a->argc == b->argc && a->is_inline == b->is_inline && a->hash == b->hash,
              "same results whatever the split");
    }
    run_stream(data, size, NULL, 0, true, &unauth, &out);
    buf_free(&out);
    return 0;
}
