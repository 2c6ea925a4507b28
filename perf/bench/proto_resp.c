/*
 * proto_resp: the Redis protocol (RESP2), the commands the load generator sends, each as a
 * multibulk array, as redis-benchmark and client libraries send them:
 *
 *   GET <k>             -> $<len>\r\n<data>\r\n (hit) | $-1\r\n (miss)
 *   MGET <k1> ... <kn>  -> *<n>\r\n then one bulk or $-1 per key (a get with --multiget > 1)
 *   SET <k> <value>     -> +OK\r\n (hit) | $-1\r\n (not stored)
 *   DEL <k>             -> :1\r\n (hit) | :0\r\n (miss)
 *   INCR <k>            -> :<n>\r\n (Redis creates a missing counter: always a hit)
 *
 * Any of them may instead get an error, "-<CODE> <text>\r\n". A RESP3 null ("_\r\n") counts as
 * a miss like $-1, so a server that speaks RESP3 on a fresh connection still parses.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "proto.h"

/* Longest header or simple line a reply can have, with room. */
#define RESP_MAX_LINE 1024

static int
resp_put_arg(struct buf *out, const char *p, size_t len)
{
    char hdr[24];
    int n = snprintf(hdr, sizeof(hdr), "$%zu\r\n", len);
    int rc = buf_append(out, hdr, (size_t)n);
    if (rc == 0) {
        rc = buf_append(out, p, len);
    }
    return rc ? rc : buf_append(out, "\r\n", 2);
}

static int
resp_put_key(struct buf *out, const struct workload *w, enum key_ns ns, uint64_t id)
{
    char key[WORKLOAD_MAX_KEY_SIZE];
    workload_key(w, ns, id, key);
    return resp_put_arg(out, key, w->cfg.key_size);
}

/* "*<argc>\r\n$<len>\r\n<verb>\r\n", the start of every request. */
static int
resp_put_head(struct buf *out, uint32_t argc, const char *verb)
{
    char hdr[24];
    int n = snprintf(hdr, sizeof(hdr), "*%u\r\n", argc);
    int rc = buf_append(out, hdr, (size_t)n);
    return rc ? rc : resp_put_arg(out, verb, strlen(verb));
}

static int
resp_compose(struct buf *out, const struct workload *w, const struct request *req)
{
    int rc;

    switch (req->op) {
    case OP_GET:
        rc = resp_put_head(out, 1 + req->nkeys, req->nkeys > 1 ? "MGET" : "GET");
        for (uint32_t i = 0; rc == 0 && i < req->nkeys; i++) {
            rc = resp_put_key(out, w, req->ns, req->key[i]);
        }
        return rc;
    case OP_SET: {
        uint32_t len;
        const char *value = workload_value(w, req, &len);
        rc = resp_put_head(out, 3, "SET");
        if (rc == 0) {
            rc = resp_put_key(out, w, req->ns, req->key[0]);
        }
        return rc ? rc : resp_put_arg(out, value, len);
    }
    case OP_DELETE:
    case OP_INCR:
        rc = resp_put_head(out, 2, req->op == OP_DELETE ? "DEL" : "INCR");
        return rc ? rc : resp_put_key(out, w, req->ns, req->key[0]);
    default:
        return -ENOTSUP;
    }
}

/* Length of the line at p (its \n included), 0 if incomplete, -EPROTO if impossibly long. */
static ssize_t
resp_line(const char *p, size_t n)
{
    size_t scan = n < RESP_MAX_LINE ? n : RESP_MAX_LINE;
    const char *nl = memchr(p, '\n', scan);
    if (nl == NULL) {
        return n >= RESP_MAX_LINE ? -EPROTO : 0;
    }
    if (nl == p || nl[-1] != '\r') {
        return -EPROTO;
    }
    return (ssize_t)(nl - p) + 1;
}

/* The number after the type byte of a header line of len bytes ("$64\r\n", ":-3\r\n"). */
static int
resp_number(const char *line, size_t len, long long *out)
{
    size_t i = 1;
    bool neg = false;
    long long v = 0;

    if (i < len && line[i] == '-') {
        neg = true;
        i++;
    }
    if (i >= len - 2) {
        return -EPROTO;
    }
    for (; i < len - 2; i++) {
        if (line[i] < '0' || line[i] > '9' || v > (1LL << 40)) {
            return -EPROTO;
        }
        v = v * 10 + (line[i] - '0');
    }
    *out = neg ? -v : v;
    return 0;
}

/*
 * One bulk string or null at p: its length in bytes (> 0), 0 when more bytes are needed, or
 * -EPROTO. *found says whether it held a value.
 */
static ssize_t
resp_bulk(const char *p, size_t n, bool *found)
{
    ssize_t len = resp_line(p, n);
    long long v;

    if (len <= 0) {
        return len;
    }
    if (p[0] == '_' && len == 3) {
        *found = false;
        return len;
    }
    if (p[0] != '$' || resp_number(p, (size_t)len, &v) < 0 || v < -1) {
        return -EPROTO;
    }
    if (v == -1) {
        *found = false;
        return len;
    }
    size_t total = (size_t)len + (size_t)v + 2;
    if (n < total) {
        return 0;
    }
    if (p[total - 2] != '\r' || p[total - 1] != '\n') {
        return -EPROTO;
    }
    *found = true;
    return (ssize_t)total;
}

static ssize_t
resp_parse_mget(const char *p, size_t n, uint32_t nkeys, struct proto_result *res)
{
    ssize_t len = resp_line(p, n);
    long long count;

    if (len <= 0) {
        return len;
    }
    if (p[0] != '*' || resp_number(p, (size_t)len, &count) < 0 || count != (long long)nkeys) {
        return -EPROTO;
    }
    size_t pos = (size_t)len;
    for (uint32_t i = 0; i < nkeys; i++) {
        bool found;
        ssize_t b = resp_bulk(p + pos, n - pos, &found);
        if (b <= 0) {
            return b;
        }
        res->hits += found;
        pos += (size_t)b;
    }
    res->misses = nkeys - res->hits;
    return (ssize_t)pos;
}

static ssize_t
resp_parse(const char *p, size_t n, enum op_type op, uint32_t nkeys, struct proto_result *res)
{
    memset(res, 0, sizeof(*res));
    if (n == 0) {
        return 0;
    }
    if (p[0] == '-' || p[0] == '!') {
        /* An error; a RESP3 blob error ("!<len>") is not sent to RESP2 clients. */
        ssize_t len = resp_line(p, n);
        res->error = len > 0;
        return p[0] == '-' ? len : -EPROTO;
    }
    if (op == OP_GET && nkeys > 1) {
        return resp_parse_mget(p, n, nkeys, res);
    }
    if (op == OP_GET) {
        bool found;
        ssize_t len = resp_bulk(p, n, &found);
        res->hits = len > 0 && found;
        res->misses = len > 0 && !found;
        return len;
    }
    ssize_t len = resp_line(p, n);
    long long v;
    if (len <= 0) {
        return len;
    }
    bool hit = false, miss = false;
    switch (op) {
    case OP_SET:
        hit = len == 5 && memcmp(p, "+OK\r\n", 5) == 0;
        miss = (len == 5 && memcmp(p, "$-1\r\n", 5) == 0) || (len == 3 && p[0] == '_');
        break;
    case OP_DELETE:
    case OP_INCR:
        if (p[0] == ':' && resp_number(p, (size_t)len, &v) == 0) {
            hit = op == OP_INCR || v > 0;
            miss = !hit;
        }
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

const struct proto proto_resp = {
    .name = "resp",
    .keyed = true,
    .ops = (1u << OP_GET) | (1u << OP_SET) | (1u << OP_DELETE) | (1u << OP_INCR),
    .compose = resp_compose,
    .parse = resp_parse,
};
