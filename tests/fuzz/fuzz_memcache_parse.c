/*
 * libFuzzer target for the memcache request parser.
 *
 * The input is a byte stream from a client. It is parsed twice: delivered at once, and
 * delivered in pieces cut at points derived from the input itself, each piece in a buffer that
 * ends exactly where the delivered bytes end so AddressSanitizer sees any read past them. Both
 * runs must give the same requests (the parser may not depend on how the stream was split), and
 * every result must keep the parser's invariants: consumed <= available, progress on every
 * non-AGAIN result, keys and values inside the input and within their limits. Each request is
 * also answered through the composers to exercise them on whatever the parser accepted.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "petrel/memcache.h"

#define MAX_EVENTS 4096

struct event {
    enum mc_parse_rc rc;
    enum mc_cmd cmd;
    size_t offset; /* where in the stream the request started */
    size_t consumed;
    const char *msg;
    int action;
    uint32_t nkeys;
    uint32_t vlen;
};

struct run {
    struct event ev[MAX_EVENTS];
    size_t nev;
    size_t skipped; /* swallowed bytes, reported as one total since it depends on the pieces */
};

static const struct mc_parser_opts opts = {.max_value = 512, .max_get_line = 4096};

static void
check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "invariant violated: %s\n", what);
        abort();
    }
}

/* Every key and value must lie inside [buf, buf + n) and respect the limits. */
static void
check_request(const struct mc_req *r, const char *buf, size_t n, struct buf *out)
{
    const char *end = buf + n;
    check(r->consumed > 0 && r->consumed <= n, "request consumed within input");
    if (r->cmd >= MC_CMD_GET && r->cmd <= MC_CMD_GATS) {
        struct mc_key_iter it;
        const char *k;
        size_t len;
        uint32_t count = 0;
        mc_args_begin(r, &it);
        while (mc_args_next(&it, &k, &len)) {
            check(k >= buf && k + len <= end, "key inside input");
            check(len > 0 && len <= MC_KEY_MAX, "key length");
            mc_compose_value_hdr(out, k, len, 0, 0, 0, r->cmd == MC_CMD_GETS);
            count++;
        }
        check(count == r->nkeys, "key count");
        mc_compose_reply(out, MC_R_END);
        return;
    }
    if (r->nkeys == 1) {
        check(r->klen_raw > 0 && r->klen_raw <= MC_KEY_MAX, "key length");
        check(r->key_raw >= buf && r->key_raw + r->klen_raw <= end, "raw key inside input");
        if (!r->meta.binary_key) {
            check(r->key == r->key_raw && r->klen == r->klen_raw, "plain key");
        } else {
            check(r->key == r->binkey && r->klen > 0 && r->klen <= MC_BINKEY_MAX, "binary key");
        }
    }
    if (mc_cmd_is_storage(r->cmd)) {
        check(r->vlen <= opts.max_value, "value within limit");
        check(r->val >= buf && r->val + r->vlen + 2 <= end, "value inside input");
        check(r->val[r->vlen] == '\r' && r->val[r->vlen + 1] == '\n', "value terminator");
    }
    if (r->cmd >= MC_CMD_MG && r->cmd <= MC_CMD_MA) {
        check(r->meta.nflags <= MC_META_FLAGS_MAX, "meta flag count");
        if (r->meta.seen & MC_MF('O')) {
            check(r->meta.opaque_len + 1 <= MC_OPAQUE_MAX, "opaque length");
            check(r->meta.opaque >= buf && r->meta.opaque + r->meta.opaque_len <= end,
                  "opaque inside input");
        }
        struct mc_meta_item item = {.value = r->val, .vlen = r->vlen, .cas = 1, .ttl = -1};
        mc_compose_meta(out, r, MC_META_HD, &item);
        mc_compose_meta(out, r, MC_META_EN, NULL);
    }
    if (r->cmd == MC_CMD_ME) {
        mc_compose_me(out, r, -1, 0, 1, false, 1, 64);
    }
}

static void
record(struct run *run, enum mc_parse_rc rc, const struct mc_req *r, size_t offset)
{
    if (rc == MC_PARSE_SKIP) {
        run->skipped += r->consumed;
        return;
    }
    if (run->nev < MAX_EVENTS) {
        run->ev[run->nev++] = (struct event){
            .rc = rc,
            .cmd = r->cmd,
            .offset = offset,
            .consumed = r->consumed,
            .msg = rc == MC_PARSE_ERROR ? r->err.msg : NULL,
            .action = rc == MC_PARSE_ERROR ? (int)r->err.action : -1,
            .nkeys = r->nkeys,
            .vlen = r->vlen,
        };
    }
}

/* Parse data[0, n) delivered up to each cut in turn, until the end or a close. */
static void
run_stream(const uint8_t *data, size_t n, const size_t *cuts, size_t ncuts, struct run *run,
           struct buf *out)
{
    struct mc_parser p;
    struct mc_req req;
    mc_parser_init(&p, &opts);
    size_t pos = 0;
    run->nev = 0;
    run->skipped = 0;
    for (size_t step = 0; step <= ncuts; step++) {
        size_t avail = step < ncuts ? cuts[step] : n;
        if (avail < pos) {
            continue;
        }
        for (;;) {
            size_t len = avail - pos;
            /* A private copy that ends where the delivered bytes end. */
            char *copy = malloc(len ? len : 1);
            memcpy(copy, data + pos, len);
            enum mc_parse_rc rc = mc_parse(&p, copy, len, &req);
            check(req.consumed <= len, "consumed <= available");
            if (rc == MC_PARSE_AGAIN) {
                check(req.consumed == 0, "AGAIN consumes nothing");
                free(copy);
                break;
            }
            if (rc == MC_PARSE_OK) {
                check_request(&req, copy, len, out);
            } else if (rc == MC_PARSE_ERROR) {
                check(req.err.msg == NULL || req.err.len == strlen(req.err.msg), "error length");
                mc_compose_error(out, &req.err);
                if (req.err.action != MC_ERR_CLOSE) {
                    check(req.consumed > 0, "error makes progress");
                }
            } else {
                check(rc == MC_PARSE_SKIP && req.consumed > 0, "skip makes progress");
            }
            free(copy);
            record(run, rc, &req, pos);
            if (rc == MC_PARSE_ERROR && req.err.action == MC_ERR_CLOSE) {
                return;
            }
            pos += req.consumed;
            /* Keep the reply buffer small: only the composing matters here. */
            buf_consume(out, buf_len(out));
        }
    }
}

static int
cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static struct run whole, pieces;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf out;
    buf_init(&out, 4096, 1 << 20);
    run_stream(data, size, NULL, 0, &whole, &out);

    /* Cut points from a hash of the input, so a given input always splits the same way. */
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < size; i++) {
        h = (h ^ data[i]) * 1099511628211u;
    }
    size_t cuts[4];
    for (int i = 0; i < 4; i++) {
        h = h * 6364136223846793005u + 1442695040888963407u;
        cuts[i] = size ? (size_t)(h >> 33) % (size + 1) : 0;
    }
    qsort(cuts, 4, sizeof(cuts[0]), cmp_size);
    run_stream(data, size, cuts, 4, &pieces, &out);

    check(whole.nev == pieces.nev, "same number of results whatever the split");
    for (size_t i = 0; i < whole.nev; i++) {
        const struct event *a = &whole.ev[i], *b = &pieces.ev[i];
        check(a->rc == b->rc && a->cmd == b->cmd && a->offset == b->offset &&
                  a->consumed == b->consumed && a->msg == b->msg && a->action == b->action &&
                  a->nkeys == b->nkeys && a->vlen == b->vlen,
              "same results whatever the split");
    }
    check(whole.skipped == pieces.skipped, "same bytes swallowed whatever the split");
    buf_free(&out);
    return 0;
}
