/*
 * proto_mc: memcached's text protocol, the commands the load generator sends.
 *
 *   get <k1> [<k2> ...]\r\n      -> (VALUE <k> <flags> <bytes> [<cas>]\r\n<data>\r\n)* END\r\n
 *   set <k> 0 0 <bytes>\r\n<data>\r\n -> STORED | NOT_STORED | EXISTS | NOT_FOUND
 *   delete <k>\r\n               -> DELETED | NOT_FOUND
 *   incr <k> 1\r\n               -> <number> | NOT_FOUND
 *
 * Any of them may instead get ERROR, CLIENT_ERROR ... or SERVER_ERROR ..., which counts as an
 * error reply. Nothing is sent with noreply: every request is timed by its reply.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "proto.h"

/* Longest line a reply can start with: VALUE, a 250-byte key and four numbers, with room. */
#define MC_MAX_LINE 1024

static int
mc_put_key(struct buf *out, const struct workload *w, enum key_ns ns, uint64_t id)
{
    int rc = buf_reserve(out, w->cfg.key_size);
    if (rc < 0) {
        return rc;
    }
    workload_key(w, ns, id, buf_wptr(out));
    buf_commit(out, w->cfg.key_size);
    return 0;
}

static int
mc_compose_get(struct buf *out, const struct workload *w, const struct request *req)
{
    int rc = buf_append(out, "get", 3);
    for (uint32_t i = 0; rc == 0 && i < req->nkeys; i++) {
        rc = buf_append(out, " ", 1);
        if (rc == 0) {
            rc = mc_put_key(out, w, req->ns, req->key[i]);
        }
    }
    return rc ? rc : buf_append(out, "\r\n", 2);
}

static int
mc_compose_set(struct buf *out, const struct workload *w, const struct request *req)
{
    uint32_t len;
    const char *value = workload_value(w, req, &len);
    char tail[32];
    int n = snprintf(tail, sizeof(tail), " 0 0 %u\r\n", len);

    int rc = buf_append(out, "set ", 4);
    if (rc == 0) {
        rc = mc_put_key(out, w, req->ns, req->key[0]);
    }
    if (rc == 0) {
        rc = buf_append(out, tail, (size_t)n);
    }
    if (rc == 0) {
        rc = buf_append(out, value, len);
    }
    return rc ? rc : buf_append(out, "\r\n", 2);
}

static int
mc_compose_simple(struct buf *out, const struct workload *w, const struct request *req,
                  const char *verb, const char *suffix)
{
    int rc = buf_puts(out, verb);
    if (rc == 0) {
        rc = mc_put_key(out, w, req->ns, req->key[0]);
    }
    return rc ? rc : buf_puts(out, suffix);
}

static int
mc_compose(struct buf *out, const struct workload *w, const struct request *req)
{
    switch (req->op) {
    case OP_GET:
        return mc_compose_get(out, w, req);
    case OP_SET:
        return mc_compose_set(out, w, req);
    case OP_DELETE:
        return mc_compose_simple(out, w, req, "delete ", "\r\n");
    case OP_INCR:
        return mc_compose_simple(out, w, req, "incr ", " 1\r\n");
    default:
        return -ENOTSUP;
    }
}

/* Length of the line at p (its \n included), 0 if incomplete, -EPROTO if impossibly long. */
static ssize_t
mc_line(const char *p, size_t n)
{
    size_t scan = n < MC_MAX_LINE ? n : MC_MAX_LINE;
    const char *nl = memchr(p, '\n', scan);
    if (nl == NULL) {
        return n >= MC_MAX_LINE ? -EPROTO : 0;
    }
    return (ssize_t)(nl - p) + 1;
}

static bool
mc_is(const char *line, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len == n + 2 && memcmp(line, word, n) == 0 && line[n] == '\r';
}

/* The <bytes> field of "VALUE <key> <flags> <bytes> [<cas>]\r\n", or -EPROTO. */
static ssize_t
mc_value_bytes(const char *line, size_t len)
{
    size_t i = 6; /* after "VALUE " */
    for (int field = 0; field < 2; field++) {
        while (i < len && line[i] != ' ') {
            i++;
        }
        i++; /* the space */
    }
    if (i >= len || line[i] < '0' || line[i] > '9') {
        return -EPROTO;
    }
    size_t v = 0;
    while (i < len && line[i] >= '0' && line[i] <= '9') {
        v = v * 10 + (size_t)(line[i++] - '0');
        if (v > (1u << 30)) {
            return -EPROTO;
        }
    }
    if (i >= len || (line[i] != ' ' && line[i] != '\r')) {
        return -EPROTO;
    }
    return (ssize_t)v;
}

static ssize_t
mc_parse_get(const char *p, size_t n, uint32_t nkeys, struct proto_result *res)
{
    size_t pos = 0;
    uint32_t hits = 0;

    for (;;) {
        ssize_t len = mc_line(p + pos, n - pos);
        if (len <= 0) {
            return len;
        }
        const char *line = p + pos;
        if (mc_is(line, (size_t)len, "END")) {
            res->hits = hits;
            res->misses = nkeys > hits ? nkeys - hits : 0;
            return (ssize_t)pos + len;
        }
        if (hits == 0 && proto_error_line(line, (size_t)len)) {
            res->error = true;
            return len;
        }
        if ((size_t)len < 8 || memcmp(line, "VALUE ", 6) != 0) {
            return -EPROTO;
        }
        ssize_t bytes = mc_value_bytes(line, (size_t)len);
        if (bytes < 0) {
            return bytes;
        }
        size_t data = pos + (size_t)len;
        if (n < data + (size_t)bytes + 2) {
            return 0;
        }
        if (p[data + bytes] != '\r' || p[data + bytes + 1] != '\n') {
            return -EPROTO;
        }
        hits++;
        pos = data + (size_t)bytes + 2;
    }
}

static bool
mc_is_number(const char *line, size_t len)
{
    if (len < 3 || line[len - 2] != '\r') {
        return false;
    }
    for (size_t i = 0; i < len - 2; i++) {
        if (line[i] < '0' || line[i] > '9') {
            return false;
        }
    }
    return true;
}

static ssize_t
mc_parse(const char *p, size_t n, enum op_type op, uint32_t nkeys, struct proto_result *res)
{
    memset(res, 0, sizeof(*res));
    if (op == OP_GET) {
        return mc_parse_get(p, n, nkeys, res);
    }
    ssize_t len = mc_line(p, n);
    if (len <= 0) {
        return len;
    }
    size_t l = (size_t)len;
    if (proto_error_line(p, l)) {
        res->error = true;
        return len;
    }
    bool hit = false, miss = false;
    switch (op) {
    case OP_SET:
        hit = mc_is(p, l, "STORED");
        miss = mc_is(p, l, "NOT_STORED") || mc_is(p, l, "EXISTS") || mc_is(p, l, "NOT_FOUND");
        break;
    case OP_DELETE:
        hit = mc_is(p, l, "DELETED");
        miss = mc_is(p, l, "NOT_FOUND");
        break;
    case OP_INCR:
        hit = mc_is_number(p, l);
        miss = mc_is(p, l, "NOT_FOUND");
        break;
    default:
        break;
    }
    if (!hit && !miss) {
        return -EPROTO;
    }
    res->hits = hit;
    res->misses = miss;
    return len;
}

const struct proto proto_memcache = {
    .name = "memcache",
    .keyed = true,
    .ops = (1u << OP_GET) | (1u << OP_SET) | (1u << OP_DELETE) | (1u << OP_INCR),
    .compose = mc_compose,
    .parse = mc_parse,
};
