/*
 * resp_server: Redis's protocol over petrel's shards. Contract in resp_server.h.
 *
 * A request is parsed (src/proto/resp), looked up in the command table, and then, as on the
 * memcached side, run through route: a command about one key goes to the worker owning it
 * (forwarded as a multibulk, parsed again there) or runs here at once; a command about several
 * keys (DEL, EXISTS, MGET, MSET) becomes one part per key, gathered back in key order; DBSIZE
 * and FLUSHALL go to every shard. Replies leave in request order (route's reply queue), under
 * the connection's output limit, and a GET whose value does not fit the room a forwarded
 * request has comes back as a hole, fetched when its turn comes, exactly as a memcached get.
 *
 * The same items as the memcached side: a value SET here is read byte for byte by a memcached
 * get (client flags 0), and the reverse. Expiry is the storage engine's, in whole seconds.
 */
#include "resp_cmd.h"

#include "petrel_build.h"

#include "petrel/log.h"
#include "petrel/seg.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define GET_MIN_ALLOW 1024 /* the least reply room of a forwarded GET: a hole and more */
#define PROTO_MASK    0xff /* route_msg.arg: the connection's protocol */

/* What a request does, besides its own handler. */
enum cmd_kind {
    K_LOCAL, /* needs no shard */
    K_KEYED, /* one key (argv[1]) on its owner's shard */
    K_MULTI, /* one part per key: DEL, EXISTS (summed), MGET (gathered), MSET (OK) */
    K_ALL,   /* every shard: DBSIZE, FLUSHALL, FLUSHDB */
    K_WALK,  /* resp_walk.c: SCAN, KEYS, MSETNX */
};

/* Result of dispatching one request, besides a negative errno. */
enum ex {
    EX_DONE = 0,
    EX_WAIT,  /* not consumed: every earlier reply goes first */
    EX_CLOSE, /* consumed; close once the replies are sent */
    EX_STOP,  /* not consumed: stopped between windows for room, its progress kept */
};

struct cmd {
    const char *name; /* lower case, as Redis names it in errors */
    int arity;        /* Redis's: n exactly, or -n at least n (the name counts) */
    enum cmd_kind kind;
    uint8_t lat; /* latency class: 0 get, 1 set, 2 delete, 3 other (mc_server's) */
};

static const struct cmd cmds[] = {
    {"get", 2, K_KEYED, 0},        {"set", -3, K_KEYED, 1},        {"setnx", 3, K_KEYED, 1},
    {"setex", 4, K_KEYED, 1},      {"psetex", 4, K_KEYED, 1},      {"getdel", 2, K_KEYED, 0},
    {"strlen", 2, K_KEYED, 0},     {"append", 3, K_KEYED, 1},      {"type", 2, K_KEYED, 3},
    {"incr", 2, K_KEYED, 1},       {"decr", 2, K_KEYED, 1},        {"incrby", 3, K_KEYED, 1},
    {"decrby", 3, K_KEYED, 1},     {"ttl", 2, K_KEYED, 3},         {"pttl", 2, K_KEYED, 3},
    {"expire", -3, K_KEYED, 3},    {"pexpire", -3, K_KEYED, 3},    {"expireat", -3, K_KEYED, 3},
    {"pexpireat", -3, K_KEYED, 3}, {"persist", 2, K_KEYED, 3},     {"del", -2, K_MULTI, 2},
    {"unlink", -2, K_MULTI, 2},    {"exists", -2, K_MULTI, 3},     {"mget", -2, K_MULTI, 0},
    {"mset", -3, K_MULTI, 1},      {"dbsize", 1, K_ALL, 3},        {"flushall", -1, K_ALL, 3},
    {"flushdb", -1, K_ALL, 3},     {"ping", -1, K_LOCAL, 3},       {"echo", 2, K_LOCAL, 3},
    {"quit", -1, K_LOCAL, 3},      {"select", 2, K_LOCAL, 3},      {"hello", -1, K_LOCAL, 3},
    {"client", -2, K_LOCAL, 3},    {"command", -1, K_LOCAL, 3},    {"info", -1, K_LOCAL, 3},
    {"getex", -2, K_KEYED, 0},     {"getrange", 4, K_KEYED, 0},    {"setrange", 4, K_KEYED, 1},
    {"reset", 1, K_LOCAL, 3},      {"msetnx", -3, K_WALK, 1},      {"scan", -2, K_WALK, 3},
    {"keys", 2, K_WALK, 3},        {"incrbyfloat", 3, K_KEYED, 1}, {"auth", -2, K_LOCAL, 3},
    {"config", -2, K_LOCAL, 3},
};

/* ---- small helpers ---- */

static const struct cmd *
cmd_find(const struct resp_arg *name)
{
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (arg_is(name, cmds[i].name)) {
            return &cmds[i];
        }
    }
    return NULL;
}

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * An absolute expiry in unix milliseconds as the storage engine's (whole seconds, rounded up
 * so that a key never expires before its time), or -1 when it is already past.
 */
static int64_t
expire_of_ms(int64_t at_ms)
{
    return at_ms <= now_ms() ? -1 : (at_ms + 999) / 1000;
}

/* A key's remaining lifetime as an absolute expiry that keeps it (KEEPTTL, INCR): 0 for none. */
static int64_t
expire_keep(const struct seg_view *v)
{
    if (v->ttl < 0) {
        return 0;
    }
    return (int64_t)time(NULL) + (v->ttl > 0 ? v->ttl : 1);
}

/* ---- commands on a shard ---- */

/* What a keyed command needs: its shard, the key's hash, the protocol, and its reply. */
struct kx {
    struct resp_worker *w;
    enum resp_proto proto;
    const struct resp_arg *argv;
    uint32_t argc;
    uint64_t hash;
    struct buf *out;
    size_t max;                /* room for a GET's value; past it: a hole */
    struct route_version hole; /* a hole's version (return 1) */
    uint32_t hdr_len, miss_len;
};

static enum seg_result
kx_peek(struct kx *x, struct seg_view *v)
{
    return seg_peek(x->w->shard->seg, x->argv[1].p, x->argv[1].len, x->hash, v);
}

/* GET: the value, or a hole when it does not fit x->max (returns 1). */
static int
x_get(struct kx *x)
{
    struct seg_view v;
    if (seg_get(x->w->shard->seg, x->argv[1].p, x->argv[1].len, x->hash, &v) != SEG_OK) {
        return resp_compose_null(x->out, x->proto);
    }
    size_t before = buf_len(x->out);
    int rc = resp_compose_bulk_hdr(x->out, v.vlen);
    if (rc < 0) {
        return rc;
    }
    if (v.vlen + 2 <= x->max) {
        rc = buf_append(x->out, v.value, v.vlen);
        return rc < 0 ? rc : buf_append(x->out, "\r\n", 2);
    }
    x->hdr_len = (uint32_t)(buf_len(x->out) - before);
    size_t mark = buf_len(x->out);
    rc = resp_compose_null(x->out, x->proto);
    x->miss_len = (uint32_t)(buf_len(x->out) - mark);
    x->hole = (struct route_version){.cas = v.cas, .vlen = (uint32_t)v.vlen};
    return rc < 0 ? rc : 1;
}

/* The old value for SET ... GET and GETDEL: a bulk string or a null, copied whole. */
static int
put_old(struct kx *x, const struct seg_view *v, bool found)
{
    return found ? resp_compose_bulk(x->out, v->value, v->vlen)
                 : resp_compose_null(x->out, x->proto);
}

/* The reply to a store the engine refused. */
static int
store_failed(struct kx *x, enum seg_result r)
{
    if (r == SEG_TOO_LARGE) {
        return reply_err(x->out, "string exceeds maximum allowed size");
    }
    return reply_err(x->out, "-OOM command not allowed when used memory > 'maxmemory'.");
}

/* Parse SET's options from argv[3]: Redis's checks, in its order. Returns 0 or an error reply
 * (written, then 1). */
struct set_opts {
    bool nx, xx, get, keepttl;
    int64_t expire; /* 0: none */
};

static int
set_parse(struct kx *x, struct set_opts *o)
{
    bool has_exp = false;
    for (uint32_t i = 3; i < x->argc; i++) {
        const struct resp_arg *a = &x->argv[i];
        bool next = i + 1 < x->argc;
        if (arg_is(a, "nx") && !o->xx) {
            o->nx = true;
        } else if (arg_is(a, "xx") && !o->nx) {
            o->xx = true;
        } else if (arg_is(a, "get")) {
            o->get = true;
        } else if (arg_is(a, "keepttl") && !has_exp) {
            o->keepttl = true;
        } else if ((arg_is(a, "ex") || arg_is(a, "px") || arg_is(a, "exat") || arg_is(a, "pxat")) &&
                   !o->keepttl && !has_exp && next) {
            long long n;
            if (!arg_ll(&x->argv[i + 1], &n)) {
                return reply_err(x->out, "value is not an integer or out of range") < 0 ? -ENOMEM
                                                                                        : 1;
            }
            bool ms = arg_is(a, "px") || arg_is(a, "pxat");
            bool at = arg_is(a, "exat") || arg_is(a, "pxat");
            if (n <= 0 || (!ms && n > LLONG_MAX / 1000)) {
                return reply_err(x->out, "invalid expire time in 'set' command") < 0 ? -ENOMEM : 1;
            }
            int64_t when = ms ? n : n * 1000;
            o->expire = expire_of_ms(at ? when : now_ms() + when);
            has_exp = true;
            i++;
        } else {
            return reply_err(x->out, "syntax error") < 0 ? -ENOMEM : 1;
        }
    }
    return 0;
}

/* SET key value [NX|XX] [GET] [EX|PX|EXAT|PXAT n|KEEPTTL], and SETNX, SETEX, PSETEX. */
static int
x_set(struct kx *x, const struct cmd *cmd)
{
    struct set_opts o = {0};
    const struct resp_arg *val = &x->argv[2];
    if (strcmp(cmd->name, "setnx") == 0) {
        o.nx = true;
    } else if (strcmp(cmd->name, "setex") == 0 || strcmp(cmd->name, "psetex") == 0) {
        long long n;
        bool ms = cmd->name[0] == 'p';
        if (!arg_ll(&x->argv[2], &n)) {
            return reply_err(x->out, "value is not an integer or out of range");
        }
        if (n <= 0 || (!ms && n > LLONG_MAX / 1000)) {
            char msg[64];
            snprintf(msg, sizeof(msg), "invalid expire time in '%s' command", cmd->name);
            return reply_err(x->out, msg);
        }
        o.expire = expire_of_ms(now_ms() + (ms ? n : n * 1000));
        val = &x->argv[3];
    } else {
        int rc = set_parse(x, &o);
        if (rc != 0) {
            return rc < 0 ? rc : 0;
        }
    }
    struct seg_view old;
    bool found = (o.get || o.keepttl || o.nx || o.xx) && kx_peek(x, &old) == SEG_OK;
    if ((o.nx && found) || (o.xx && !found)) {
        if (o.get) {
            return put_old(x, &old, found);
        }
        return strcmp(cmd->name, "setnx") == 0 ? resp_compose_int(x->out, 0)
                                               : resp_compose_null(x->out, x->proto);
    }
    /* The old value is written before the store replaces it (its view dies with the store). */
    size_t mark = buf_len(x->out);
    int rc = o.get ? put_old(x, &old, found) : 0;
    if (rc < 0) {
        return rc;
    }
    struct seg_store_req r = {.mode = SEG_SET,
                              .key = x->argv[1].p,
                              .klen = x->argv[1].len,
                              .hash = x->hash,
                              .value = val->p,
                              .vlen = val->len,
                              .expire = o.keepttl && found ? expire_keep(&old) : o.expire};
    enum seg_result sr =
        val->len > x->w->max_value ? SEG_TOO_LARGE : seg_store(x->w->shard->seg, &r, NULL);
    if (sr != SEG_STORED) {
        x->out->wpos = x->out->rpos + mark;
        return store_failed(x, sr);
    }
    if (o.get) {
        return 0;
    }
    return strcmp(cmd->name, "setnx") == 0 ? resp_compose_int(x->out, 1) : reply_ok(x->out);
}

/* INCR, DECR, INCRBY, DECRBY: Redis's signed 64-bit arithmetic on the value's text. */
static int
x_incr(struct kx *x, const struct cmd *cmd)
{
    long long by = 1;
    if (x->argc == 3 && !arg_ll(&x->argv[2], &by)) {
        return reply_err(x->out, "value is not an integer or out of range");
    }
    bool decr = cmd->name[0] == 'd';
    if (decr) {
        if (by == LLONG_MIN) {
            return reply_err(x->out, "decrement would overflow");
        }
        by = -by;
    }
    struct seg_view v;
    long long cur = 0;
    int64_t expire = 0;
    uint32_t flags = 0;
    if (kx_peek(x, &v) == SEG_OK) {
        struct resp_arg a = {.p = v.value, .len = v.vlen};
        if (!arg_ll(&a, &cur)) {
            return reply_err(x->out, "value is not an integer or out of range");
        }
        expire = expire_keep(&v);
        flags = v.flags;
    }
    if ((by > 0 && cur > LLONG_MAX - by) || (by < 0 && cur < LLONG_MIN - by)) {
        return reply_err(x->out, "increment or decrement would overflow");
    }
    long long n = cur + by;
    char text[24];
    int len = snprintf(text, sizeof(text), "%lld", n);
    struct seg_store_req r = {.mode = SEG_SET,
                              .key = x->argv[1].p,
                              .klen = x->argv[1].len,
                              .hash = x->hash,
                              .value = text,
                              .vlen = (size_t)len,
                              .flags = flags,
                              .expire = expire};
    enum seg_result sr = seg_store(x->w->shard->seg, &r, NULL);
    return sr == SEG_STORED ? resp_compose_int(x->out, n) : store_failed(x, sr);
}

/* INCRBYFLOAT key by: Redis's long double arithmetic and text (the item keeps flags and TTL). */
static int
x_incrbyfloat(struct kx *x)
{
    struct seg_view v;
    long double cur = 0, by;
    int64_t expire = 0;
    uint32_t flags = 0;
    if (kx_peek(x, &v) == SEG_OK) {
        if (!resp_parse_ldouble(v.value, v.vlen, &cur)) {
            return reply_err(x->out, "value is not a valid float");
        }
        expire = expire_keep(&v);
        flags = v.flags;
    }
    if (!resp_parse_ldouble(x->argv[2].p, x->argv[2].len, &by)) {
        return reply_err(x->out, "value is not a valid float");
    }
    char text[RESP_LDOUBLE_MAX];
    size_t len = resp_format_ldouble(cur + by, text);
    if (len == 0) {
        return reply_err(x->out, "increment would produce NaN or Infinity");
    }
    struct seg_store_req r = {.mode = SEG_SET,
                              .key = x->argv[1].p,
                              .klen = x->argv[1].len,
                              .hash = x->hash,
                              .value = text,
                              .vlen = len,
                              .flags = flags,
                              .expire = expire};
    enum seg_result sr = seg_store(x->w->shard->seg, &r, NULL);
    return sr == SEG_STORED ? resp_compose_bulk(x->out, text, len) : store_failed(x, sr);
}

/* TTL and PTTL: -2 missing, -1 no expiry, else the time left (whole seconds here). */
static int
x_ttl(struct kx *x, bool ms)
{
    struct seg_view v;
    if (kx_peek(x, &v) != SEG_OK) {
        return resp_compose_int(x->out, -2);
    }
    if (v.ttl < 0) {
        return resp_compose_int(x->out, -1);
    }
    return resp_compose_int(x->out, ms ? v.ttl * 1000 : v.ttl);
}

/* EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT key n [NX|XX|GT|LT]. */
static int
x_expire(struct kx *x, const struct cmd *cmd)
{
    long long n;
    if (!arg_ll(&x->argv[2], &n)) {
        return reply_err(x->out, "value is not an integer or out of range");
    }
    bool nx = false, xx = false, gt = false, lt = false;
    for (uint32_t i = 3; i < x->argc; i++) {
        const struct resp_arg *a = &x->argv[i];
        if (arg_is(a, "nx")) {
            nx = true;
        } else if (arg_is(a, "xx")) {
            xx = true;
        } else if (arg_is(a, "gt")) {
            gt = true;
        } else if (arg_is(a, "lt")) {
            lt = true;
        } else {
            char msg[64];
            snprintf(msg, sizeof(msg), "Unsupported option %.*s", (int)(a->len > 32 ? 32 : a->len),
                     a->p);
            return reply_err(x->out, msg);
        }
    }
    if (nx && (xx || gt || lt)) {
        return reply_err(x->out, "NX and XX, GT or LT options at the same time are not compatible");
    }
    if (gt && lt) {
        return reply_err(x->out, "GT and LT options at the same time are not compatible");
    }
    bool ms = cmd->name[0] == 'p';
    bool at = strstr(cmd->name, "at") != NULL;
    int64_t base = at ? 0 : now_ms();
    if ((!ms && (n > LLONG_MAX / 1000 || n < LLONG_MIN / 1000)) ||
        (ms ? n : n * 1000) > INT64_MAX - base) {
        char msg[64];
        snprintf(msg, sizeof(msg), "invalid expire time in '%s' command", cmd->name);
        return reply_err(x->out, msg);
    }
    int64_t when = base + (ms ? n : n * 1000);
    struct seg_view v;
    if (kx_peek(x, &v) != SEG_OK) {
        return resp_compose_int(x->out, 0);
    }
    /* Compare with the current expiry in ms (none counts as infinite, as in Redis). */
    int64_t cur = v.ttl < 0 ? INT64_MAX : now_ms() + v.ttl * 1000;
    if ((nx && v.ttl >= 0) || (xx && v.ttl < 0) || (gt && (v.ttl < 0 || when <= cur)) ||
        (lt && v.ttl >= 0 && when >= cur)) {
        return resp_compose_int(x->out, 0);
    }
    int64_t expire = expire_of_ms(when);
    if (expire < 0) {
        (void)seg_delete(x->w->shard->seg, x->argv[1].p, x->argv[1].len, x->hash);
        return resp_compose_int(x->out, 1);
    }
    enum seg_result r = seg_touch(x->w->shard->seg, x->argv[1].p, x->argv[1].len, x->hash, expire);
    return resp_compose_int(x->out, r == SEG_TOUCHED ? 1 : 0);
}

/* GETEX key [EX s | PX ms | EXAT t | PXAT t | PERSIST]: the value, and its expiry changed. */
static int
x_getex(struct kx *x)
{
    bool persist = false, has = false;
    int64_t expire = 0;
    for (uint32_t i = 2; i < x->argc; i++) {
        const struct resp_arg *a = &x->argv[i];
        bool ex = arg_is(a, "ex"), px = arg_is(a, "px"), exat = arg_is(a, "exat"),
             pxat = arg_is(a, "pxat");
        if (arg_is(a, "persist") && !has) {
            persist = has = true;
        } else if ((ex || px || exat || pxat) && !has && i + 1 < x->argc) {
            long long n;
            if (!arg_ll(&x->argv[++i], &n)) {
                return reply_err(x->out, "value is not an integer or out of range");
            }
            bool ms = px || pxat;
            if (n <= 0 || (!ms && n > LLONG_MAX / 1000)) {
                return reply_err(x->out, "invalid expire time in 'getex' command");
            }
            int64_t when = ms ? n : n * 1000;
            expire = expire_of_ms(exat || pxat ? when : now_ms() + when);
            has = true;
        } else {
            return reply_err(x->out, "syntax error");
        }
    }
    struct seg *seg = x->w->shard->seg;
    const struct resp_arg *k = &x->argv[1];
    struct seg_view v;
    if (seg_get(seg, k->p, k->len, x->hash, &v) != SEG_OK) {
        return resp_compose_null(x->out, x->proto);
    }
    /* The value is copied before the touch, which ends the view. */
    int rc = resp_compose_bulk(x->out, v.value, v.vlen);
    if (rc == 0 && has) {
        if (expire < 0) {
            (void)seg_delete(seg, k->p, k->len, x->hash);
        } else if (!persist || v.ttl >= 0) {
            (void)seg_touch(seg, k->p, k->len, x->hash, persist ? 0 : expire);
        }
    }
    return rc;
}

/* GETRANGE key start end, with Redis's treatment of negative and out-of-range indexes. */
static int
x_getrange(struct kx *x)
{
    long long start, end;
    if (!arg_ll(&x->argv[2], &start) || !arg_ll(&x->argv[3], &end)) {
        return reply_err(x->out, "value is not an integer or out of range");
    }
    struct seg_view v;
    if (kx_peek(x, &v) != SEG_OK || (start < 0 && end < 0 && start > end)) {
        return resp_compose_bulk(x->out, "", 0);
    }
    long long len = (long long)v.vlen;
    start = start < 0 ? len + start : start;
    end = end < 0 ? len + end : end;
    start = start < 0 ? 0 : start;
    end = end < 0 ? 0 : end >= len ? len - 1 : end;
    if (len == 0 || start > end) {
        return resp_compose_bulk(x->out, "", 0);
    }
    return resp_compose_bulk(x->out, v.value + start, (size_t)(end - start + 1));
}

/* SETRANGE key offset value: overwrite from offset, zero-padding a shorter value. */
static int
x_setrange(struct kx *x)
{
    long long off;
    if (!arg_ll(&x->argv[2], &off)) {
        return reply_err(x->out, "value is not an integer or out of range");
    }
    if (off < 0) {
        return reply_err(x->out, "offset is out of range");
    }
    const struct resp_arg *val = &x->argv[3];
    struct seg_view v;
    bool found = kx_peek(x, &v) == SEG_OK;
    size_t old = found ? v.vlen : 0;
    if (val->len == 0) {
        return resp_compose_int(x->out, (int64_t)old);
    }
    if ((unsigned long long)off + val->len > x->w->max_value) {
        return reply_err(x->out, "string exceeds maximum allowed size (proto-max-bulk-len)");
    }
    size_t n = (size_t)off + val->len > old ? (size_t)off + val->len : old;
    char *buf = calloc(1, n);
    if (buf == NULL) {
        return -ENOMEM;
    }
    if (found) {
        memcpy(buf, v.value, old);
    }
    memcpy(buf + off, val->p, val->len);
    struct seg_store_req r = {.mode = SEG_SET,
                              .key = x->argv[1].p,
                              .klen = x->argv[1].len,
                              .hash = x->hash,
                              .value = buf,
                              .vlen = n,
                              .flags = found ? v.flags : 0,
                              .expire = found ? expire_keep(&v) : 0};
    enum seg_result sr = seg_store(x->w->shard->seg, &r, NULL);
    free(buf);
    return sr == SEG_STORED ? resp_compose_int(x->out, (int64_t)n) : store_failed(x, sr);
}

/* One keyed command on this shard. Returns 0, 1 (a GET's hole: x->hole, hdr_len, miss_len) or
 * a buf error. */
static int
exec_keyed(struct kx *x, const struct cmd *cmd)
{
    struct seg *seg = x->w->shard->seg;
    const struct resp_arg *k = &x->argv[1];
    struct seg_view v;
    const char *n = cmd->name;
    if (strcmp(n, "get") == 0) {
        return x_get(x);
    }
    if (strcmp(n, "set") == 0 || strcmp(n, "setnx") == 0 || strcmp(n, "setex") == 0 ||
        strcmp(n, "psetex") == 0) {
        return x_set(x, cmd);
    }
    if (strcmp(n, "del") == 0 || strcmp(n, "unlink") == 0) {
        return resp_compose_int(x->out, seg_delete(seg, k->p, k->len, x->hash) == SEG_DELETED);
    }
    if (strcmp(n, "exists") == 0) {
        return resp_compose_int(x->out, kx_peek(x, &v) == SEG_OK);
    }
    if (strcmp(n, "getex") == 0) {
        return x_getex(x);
    }
    if (strcmp(n, "getrange") == 0) {
        return x_getrange(x);
    }
    if (strcmp(n, "setrange") == 0) {
        return x_setrange(x);
    }
    if (strcmp(n, "getdel") == 0) {
        bool found = seg_get(seg, k->p, k->len, x->hash, &v) == SEG_OK;
        int rc = put_old(x, &v, found);
        if (found && rc == 0) {
            (void)seg_delete(seg, k->p, k->len, x->hash);
        }
        return rc;
    }
    if (strcmp(n, "strlen") == 0) {
        return resp_compose_int(x->out, kx_peek(x, &v) == SEG_OK ? (int64_t)v.vlen : 0);
    }
    if (strcmp(n, "type") == 0) {
        return kx_peek(x, &v) == SEG_OK ? resp_compose_simple(x->out, "string", 6)
                                        : resp_compose_simple(x->out, "none", 4);
    }
    if (strcmp(n, "append") == 0) {
        struct seg_store_req r = {.mode = SEG_APPEND,
                                  .key = k->p,
                                  .klen = k->len,
                                  .hash = x->hash,
                                  .value = x->argv[2].p,
                                  .vlen = x->argv[2].len};
        enum seg_result sr = seg_store(seg, &r, NULL);
        if (sr == SEG_NOT_STORED) {
            r.mode = SEG_SET;
            sr = seg_store(seg, &r, NULL);
        }
        if (sr != SEG_STORED) {
            return store_failed(x, sr);
        }
        return resp_compose_int(x->out, kx_peek(x, &v) == SEG_OK ? (int64_t)v.vlen : 0);
    }
    if (strcmp(n, "incrbyfloat") == 0) {
        return x_incrbyfloat(x);
    }
    if (strstr(n, "incr") != NULL || strstr(n, "decr") != NULL) {
        return x_incr(x, cmd);
    }
    if (strcmp(n, "ttl") == 0 || strcmp(n, "pttl") == 0) {
        return x_ttl(x, n[0] == 'p');
    }
    if (strcmp(n, "persist") == 0) {
        if (kx_peek(x, &v) != SEG_OK || v.ttl < 0) {
            return resp_compose_int(x->out, 0);
        }
        return resp_compose_int(x->out, seg_touch(seg, k->p, k->len, x->hash, 0) == SEG_TOUCHED);
    }
    return x_expire(x, cmd);
}

/* ---- messages ---- */

int
resp_argv_grow(struct resp_arg **argv, uint32_t *cap, uint32_t need)
{
    if (need <= *cap) {
        return 0;
    }
    struct resp_arg *a = realloc(*argv, (size_t)need * sizeof(*a));
    if (a == NULL) {
        return -ENOMEM;
    }
    *argv = a;
    *cap = need;
    return 0;
}

/* Back to the default room (room entries) once a request of many arguments is done with. */
static void
argv_shrink(struct resp_arg **argv, uint32_t *cap, uint32_t room)
{
    if (*cap > room) {
        struct resp_arg *a = realloc(*argv, room * sizeof(*a));
        *argv = a != NULL ? a : *argv;
        *cap = a != NULL ? room : *cap;
    }
}

bool
resp_parse_msg(struct resp_worker *w, const struct route_msg *m, struct resp_req *req)
{
    struct resp_parser p;
    struct resp_parser_opts o = {.max_bulk = SIZE_MAX / 2,
                                 .max_args = RESP_ARGS_MAX_LIMIT,
                                 .max_inline = sizeof(w->mscratch)};
    resp_parser_init(&p, &o);
    for (;;) {
        resp_req_init(req, w->margv, w->mscratch);
        req->argv_cap = w->margv_cap;
        enum resp_parse_rc pr = resp_parse(&p, buf_rptr(&m->req), buf_len(&m->req), req);
        if (pr == RESP_PARSE_OK) {
            return true;
        }
        if (pr != RESP_PARSE_AGAIN || p.argc <= w->margv_cap ||
            resp_argv_grow(&w->margv, &w->margv_cap, p.argc) < 0) {
            return false;
        }
    }
}

/* argv as a multibulk into b: the request a message carries to its key's owner. */
static int
encode(struct buf *b, const struct resp_arg *argv, uint32_t argc)
{
    int rc = buf_printf(b, "*%u\r\n", argc);
    for (uint32_t i = 0; rc == 0 && i < argc; i++) {
        rc = resp_compose_bulk(b, argv[i].p, argv[i].len);
    }
    return rc;
}

/*
 * A shard's part of a window of MGET, DEL, UNLINK, EXISTS or MSET: argv[0] is the one-key
 * command ("get", "del", "unlink", "exists", "set"), then its keys (and values). GET answers
 * each key in order (m->koff), with a hole past the part's share of room per key; DEL, UNLINK
 * and EXISTS answer their count; SET answers nothing (MSET says OK once every part is back).
 */
static void
exec_multi(struct resp_worker *w, struct route_msg *m, const struct cmd *cmd,
           const struct resp_req *req)
{
    struct seg *seg = w->shard->seg;
    bool get = strcmp(cmd->name, "get") == 0, set = strcmp(cmd->name, "set") == 0;
    uint32_t step = set ? 2 : 1, nkeys = (req->argc - 1) / step;
    int64_t count = 0;
    int rc = 0;
    for (uint32_t i = 0; rc >= 0 && i < nkeys; i++) {
        const struct resp_arg *k = &req->argv[1 + i * step];
        uint64_t hash = mc_key_hash(k->p, k->len);
        struct seg_view v;
        if (strcmp(cmd->name, "exists") == 0) {
            count += seg_peek(seg, k->p, k->len, hash, &v) == SEG_OK;
            continue;
        }
        if (!get && !set) {
            count += seg_delete(seg, k->p, k->len, hash) == SEG_DELETED;
            continue;
        }
        struct resp_arg one[3] = {req->argv[0], *k, set ? k[1] : *k};
        struct kx x = {.w = w,
                       .proto = (enum resp_proto)(m->arg & PROTO_MASK),
                       .argv = one,
                       .argc = set ? 3 : 2,
                       .hash = hash,
                       .out = &m->reply.b,
                       .max = m->allow / nkeys};
        size_t at = route_rb_end(&m->reply);
        rc = exec_keyed(&x, cmd);
        if (rc == 1) {
            rc = route_rb_hole(&m->reply, at, x.hdr_len, x.miss_len, &x.hole, k->p, k->len, hash);
        }
        if (get && rc >= 0) {
            m->koff[i] = (uint32_t)route_rb_end(&m->reply);
        }
    }
    if (rc < 0 || set) {
        route_rb_reset(&m->reply);
    }
    if (rc < 0) {
        /* No memory for the values: every key of the part gets the error. */
        for (uint32_t i = 0; get && i < nkeys; i++) {
            (void)reply_err(&m->reply.b,
                            "-OOM command not allowed when used memory > 'maxmemory'.");
            m->koff[i] = (uint32_t)route_rb_end(&m->reply);
        }
    }
    if (get) {
        m->nkeys = nkeys;
    } else if (!set) {
        (void)resp_compose_int(&m->reply.b, count);
    }
}

void
resp_msg_execute(struct resp_worker *w, struct route_msg *m)
{
    if (m->op == RESP_OP_DBSIZE) {
        struct seg_stats st;
        seg_stats_get(w->shard->seg, &st);
        (void)resp_compose_int(&m->reply.b, (int64_t)st.items);
        return;
    }
    if (m->op == RESP_OP_CLIENTS) {
        resp_clients_part(&m->reply.b);
        return;
    }
    if (m->op == RESP_OP_MSETNX || m->op == RESP_OP_UNDO || m->op == RESP_OP_SCAN) {
        resp_walk_execute(w, m);
        return;
    }
    if (m->op == RESP_OP_FLUSH) {
        /* Reclaimed at once as far as one tick's bound goes, so that DBSIZE sees it. */
        seg_flush(w->shard->seg, 0);
        (void)seg_tick(w->shard->seg);
        return;
    }
    struct resp_req req;
    if (!resp_parse_msg(w, m, &req)) {
        log_error("forwarded RESP request does not parse (or no memory for it); dropped");
        return;
    }
    const struct cmd *cmd = cmd_find(&req.argv[0]);
    if (m->op == RESP_OP_MULTI) {
        exec_multi(w, m, cmd, &req);
        return;
    }
    struct kx x = {.w = w,
                   .proto = (enum resp_proto)(m->arg & PROTO_MASK),
                   .argv = req.argv,
                   .argc = req.argc,
                   .hash = m->hash,
                   .out = &m->reply.b,
                   .max = m->allow};
    size_t at = route_rb_end(&m->reply);
    int rc = cmd != NULL ? exec_keyed(&x, cmd) : -EINVAL;
    if (rc == 1) {
        rc = route_rb_hole(&m->reply, at, x.hdr_len, x.miss_len, &x.hole, req.argv[1].p,
                           req.argv[1].len, m->hash);
    }
    if (rc < 0) {
        route_rb_reset(&m->reply);
        (void)reply_err(&m->reply.b, "-OOM command not allowed when used memory > 'maxmemory'.");
    }
}

int
resp_emit(struct resp_worker *w, struct conn *c, struct route_conn *rc, struct route_slot *s)
{
    struct buf *wb = conn_wbuf(c);
    if (s->tag == RESP_TAG_MSETNX || s->tag == RESP_TAG_SCAN || s->tag == RESP_TAG_KEYS) {
        return resp_walk_emit(w, c, rc, s);
    }
    if (s->tag == RESP_TAG_CLIENTS) {
        return resp_clients_emit(c, rc, s);
    }
    if (s->tag == RESP_TAG_OK) {
        return reply_ok(wb) == 0 ? 1 : -ENOMEM;
    }
    if (s->tag == RESP_TAG_NONE) {
        return 1;
    }
    struct resp_conn *st = (struct resp_conn *)rc; /* route_conn is its first member */
    int64_t sum = 0;
    for (uint32_t i = 0; i < s->nparts; i++) {
        const struct route_msg *m = s->parts[i];
        if (m != NULL && buf_len(&m->reply.b) > 1 && buf_rptr(&m->reply.b)[0] == ':') {
            sum += strtoll(buf_rptr(&m->reply.b) + 1, NULL, 10);
        }
    }
    st->acc += sum;
    if (s->tag == RESP_TAG_ACC) {
        return 1; /* a window of DEL or EXISTS: the last one answers */
    }
    sum = st->acc;
    st->acc = 0;
    return resp_compose_int(wb, sum) == 0 ? 1 : -ENOMEM;
}

/* ---- dispatch ---- */

/* A connection's state, from its first byte. */
static struct resp_conn *
rc_of(struct conn *c)
{
    return conn_state(c);
}

/* A keyed command: here at once, or forwarded whole to its key's owner. */
static int
dispatch_keyed(struct resp_worker *w, struct conn *c, struct resp_conn *st, const struct cmd *cmd,
               const struct resp_req *req, uint64_t hash)
{
    struct route_worker *rw = w->rw;
    unsigned owner = route_shard_of(hash, rw->n);
    if (owner == rw->id) {
        struct route_out o;
        if (route_reply_out(rw, c, &st->rc, &o) < 0) {
            return -ENOMEM;
        }
        size_t room = conn_output_room(c);
        struct kx x = {.w = w,
                       .proto = st->proto,
                       .argv = req->argv,
                       .argc = req->argc,
                       .hash = hash,
                       .out = o.b,
                       .max = o.s == NULL ? SIZE_MAX : room};
        size_t at = o.s != NULL ? route_rb_end(&o.s->out) : 0;
        int rc = exec_keyed(&x, cmd);
        if (rc == 1) {
            rc = route_rb_hole(&o.s->out, at, x.hdr_len, x.miss_len, &x.hole, req->argv[1].p,
                               req->argv[1].len, hash);
        }
        route_out_done(c, &st->rc, &o);
        return rc;
    }
    uint64_t seq = route_seq_next(&st->rc);
    struct route_slot *s = route_slot_push(rw, &st->rc, ROUTE_SLOT_EXEC, 1, 0);
    struct route_msg *m = s != NULL ? route_msg_new(rw, RESP_OP, seq, 0) : NULL;
    if (m == NULL || encode(&m->req, req->argv, req->argc) < 0) {
        route_msg_free(rw, m);
        return -ENOMEM;
    }
    m->hash = hash;
    m->arg = st->proto;
    /* GET's value beyond its room becomes a hole; the few others that return a value (GETEX,
     * GETRANGE, GETDEL, SET ... GET) copy it whole: one value past the room at most. GETDEL
     * is charged a GET's room (it has no argv[2]), SET ... GET its new value's length. */
    m->allow = strcmp(cmd->name, "get") == 0 || strcmp(cmd->name, "getex") == 0 ||
                       strcmp(cmd->name, "getrange") == 0 || strcmp(cmd->name, "getdel") == 0
                   ? route_allowance(c, GET_MIN_ALLOW)
               : strcmp(cmd->name, "set") == 0         ? (uint32_t)(req->argv[2].len + REPLY_BOUND)
               : strcmp(cmd->name, "incrbyfloat") == 0 ? RESP_LDOUBLE_MAX + 16
                                                       : REPLY_BOUND;
    route_slot_time(rw, s);
    return route_msg_send(rw, c, &st->rc, m, owner);
}

/*
 * DEL, UNLINK, EXISTS (summed), MGET (gathered in key order), MSET (OK once all are stored):
 * one part per key (per key and value for MSET), each run on its key's owner, in windows of at
 * most MULTI_WINDOW keys (fewer when an MSET's values would take more than half the room), each
 * window a slot. Between windows the room is checked, as the memcached get does: a command of
 * many keys stops there (EX_STOP, its request kept in the input) and goes on from
 * st->multi_next on the next call, so what it makes the workers hold stays within the
 * connection's output bounds whatever its number of keys. The windows of DEL, UNLINK and EXISTS
 * add up in st->acc and the last one answers; MSET's last one says OK.
 */
#define MULTI_WINDOW 64

static int
dispatch_multi(struct resp_worker *w, struct conn *c, struct resp_conn *st, const struct cmd *cmd,
               const struct resp_req *req)
{
    struct route_worker *rw = w->rw;
    bool mget = strcmp(cmd->name, "mget") == 0, mset = strcmp(cmd->name, "mset") == 0;
    if (mset && req->argc % 2 == 0) {
        return reply_local_err(rw, c, st, "wrong number of arguments for 'mset' command");
    }
    uint32_t step = mset ? 2 : 1, nkeys = (req->argc - 1) / step;
    uint32_t i = st->multi_next;
    if (mget && i == 0) {
        struct route_out o;
        if (route_reply_out(rw, c, &st->rc, &o) < 0 || resp_compose_array(o.b, nkeys) < 0) {
            return -ENOMEM;
        }
        route_out_done(c, &st->rc, &o);
    }
    const char *single = mget ? "get" : mset ? "set" : cmd->name;
    for (bool first = true; i < nkeys; first = false) {
        /* The caller checked before the first window (and an MGET's header is written only
         * with its first window, so a stop must come after a window, never before it). */
        if (!first && (route_blocked(c, &st->rc) || st->rc.qlen >= ROUTE_SLOTS_MAX)) {
            st->multi_next = i;
            return EX_STOP;
        }
        size_t room = conn_output_room(c);
        uint32_t n = 0;
        size_t bytes = 0;
        while (n < MULTI_WINDOW && i + n < nkeys) {
            const struct resp_arg *k = &req->argv[1 + (i + n) * step];
            bytes += k->len + (mset ? k[1].len : 0) + 32;
            if (n > 0 && mset && bytes > room / 2) {
                break;
            }
            n++;
        }
        bool last = i + n == nkeys;
        uint64_t hash[MULTI_WINDOW];
        uint8_t part[MULTI_WINDOW];
        unsigned shard_of_part[MULTI_WINDOW];
        uint32_t keys_of_part[MULTI_WINDOW] = {0};
        struct route_msg *msgs[MULTI_WINDOW] = {0};
        for (uint32_t j = 0; j < n; j++) {
            const struct resp_arg *k = &req->argv[1 + (i + j) * step];
            hash[j] = mc_key_hash(k->p, k->len);
        }
        uint32_t nparts = route_split(rw, hash, n, part, shard_of_part, keys_of_part);
        uint64_t seq = route_seq_next(&st->rc);
        struct route_slot *s = route_slot_push(
            rw, &st->rc, mget ? ROUTE_SLOT_GATHER : ROUTE_SLOT_PRODUCT, nparts, mget ? n : 0);
        if (s == NULL) {
            return -ENOMEM;
        }
        s->tag = mset ? (last ? RESP_TAG_OK : RESP_TAG_NONE) : (last ? RESP_TAG_SUM : RESP_TAG_ACC);
        s->nkeys = mget ? n : 0;
        if (last) {
            route_slot_time(rw, s);
        }
        /* What the GETs of a window may copy back stays within half the room left: a value
         * past its share comes back as a hole, sent when the client has read what is before. */
        size_t share = room / 2 / n;
        uint32_t allow = route_allowance(c, GET_MIN_ALLOW);
        allow = share < allow ? (share > REPLY_BOUND ? (uint32_t)share : REPLY_BOUND) : allow;
        int rc = 0;
        for (uint32_t p = 0; rc == 0 && p < nparts; p++) {
            struct route_msg *m = msgs[p] = route_msg_new(rw, RESP_OP_MULTI, seq, p);
            if (m == NULL || (mget && route_koff(m, MULTI_WINDOW) < 0)) {
                rc = -ENOMEM;
                break;
            }
            m->arg = st->proto;
            m->allow = mget ? allow * keys_of_part[p] : REPLY_BOUND;
            rc = buf_printf(&m->req, "*%u\r\n", 1 + keys_of_part[p] * step);
            rc = rc < 0 ? rc : resp_compose_bulk(&m->req, single, strlen(single));
        }
        for (uint32_t j = 0; rc == 0 && j < n; j++) {
            const struct resp_arg *k = &req->argv[1 + (i + j) * step];
            struct route_msg *m = msgs[part[j]];
            if (mget) {
                s->keys[j] = (struct route_key_ref){.part = part[j], .idx = m->nkeys++};
            }
            rc = resp_compose_bulk(&m->req, k->p, k->len);
            rc = rc < 0 || !mset ? rc : resp_compose_bulk(&m->req, k[1].p, k[1].len);
        }
        for (uint32_t p = 0; p < nparts; p++) {
            if (msgs[p] != NULL) {
                msgs[p]->nkeys = 0; /* counted again by the owner */
            }
        }
        for (uint32_t p = 0; rc == 0 && p < nparts; p++) {
            rc = route_send_part(rw, c, &st->rc, s, msgs[p], shard_of_part[p]);
            msgs[p] = NULL;
        }
        for (uint32_t p = 0; p < nparts; p++) {
            route_msg_free(rw, msgs[p]); /* not sent: no memory */
        }
        if (rc < 0) {
            return rc;
        }
        i += n;
    }
    st->multi_next = 0;
    return 0;
}

static int command(const struct resp_conn *st, const struct resp_req *req, struct buf *b);

/* Commands that need no shard. */
static int
dispatch_local(struct resp_worker *w, struct conn *c, struct resp_conn *st, const struct cmd *cmd,
               const struct resp_req *req)
{
    const char *n = cmd->name;
    if (strcmp(n, "quit") == 0) {
        if (st->rc.qlen > 0) {
            return EX_WAIT; /* every reply before it goes first */
        }
        return reply_ok(conn_wbuf(c)) < 0 ? -ENOMEM : EX_CLOSE;
    }
    if (strcmp(n, "client") == 0 && req->argc == 2 && arg_is(&req->argv[1], "list")) {
        /* The workers' lists come back whole, outside the output limit (their size is not known
         * when they are asked for): one CLIENT LIST out per connection at a time, a pipeline of
         * them waits (else a client that does not read could have every worker's list held
         * ROUTE_SLOTS_MAX times). */
        for (uint32_t i = 0; i < st->rc.qlen; i++) {
            const struct route_slot *s = route_q_at(&st->rc, i);
            if (s->kind == ROUTE_SLOT_PRODUCT && s->tag == RESP_TAG_CLIENTS) {
                return EX_STOP;
            }
        }
        return route_broadcast(w->rw, c, &st->rc, RESP_TAG_CLIENTS, false, RESP_OP_CLIENTS, 0);
    }
    struct route_out o;
    if (route_reply_out(w->rw, c, &st->rc, &o) < 0) {
        return -ENOMEM;
    }
    struct buf *b = o.b;
    int rc;
    if (strcmp(n, "ping") == 0) {
        rc = req->argc > 2    ? reply_err(b, "wrong number of arguments for 'ping' command")
             : req->argc == 2 ? resp_compose_bulk(b, req->argv[1].p, req->argv[1].len)
                              : resp_compose_simple(b, "PONG", 4);
    } else if (strcmp(n, "echo") == 0) {
        rc = resp_compose_bulk(b, req->argv[1].p, req->argv[1].len);
    } else if (strcmp(n, "select") == 0) {
        long long db;
        rc = !arg_ll(&req->argv[1], &db) ? reply_err(b, "value is not an integer or out of range")
             : db != 0                   ? reply_err(b, "DB index is out of range")
                                         : reply_ok(b);
    } else if (strcmp(n, "reset") == 0) {
        st->proto = RESP_2;
        st->name[0] = '\0';
        resp_auth_reset(w, st);
        rc = resp_compose_simple(b, "RESET", 5);
    } else if (strcmp(n, "hello") == 0) {
        rc = resp_hello(w, st, req, b);
    } else if (strcmp(n, "auth") == 0) {
        rc = resp_auth(w, st, req, b);
    } else if (strcmp(n, "config") == 0) {
        rc = resp_config(w, st, req, b);
    } else if (strcmp(n, "client") == 0) {
        rc = resp_client(w, c, st, req, b);
    } else if (strcmp(n, "command") == 0) {
        rc = command(st, req, b);
    } else {
        rc = resp_info(w, st, req, b);
    }
    route_out_done(c, &st->rc, &o);
    return rc;
}

/*
 * COMMAND [INFO name...]: each command as Redis 7 describes it, in part: name, arity, flags
 * (write or readonly, for the commands that touch keys), and where its keys are (first, last,
 * step); no ACL categories, tips, key specifications or subcommands (empty). What a client needs
 * to find a command's keys (e.g. to route it). Unknown names: a null, as Redis.
 */
static int
command_info(struct buf *b, enum resp_proto v, const struct cmd *cmd)
{
    if (cmd == NULL) {
        return resp_compose_null(b, v);
    }
    bool many = cmd->kind == K_MULTI || strcmp(cmd->name, "msetnx") == 0;
    bool keyed = cmd->kind == K_KEYED || many;
    int step = strcmp(cmd->name, "mset") == 0 || strcmp(cmd->name, "msetnx") == 0 ? 2 : 1;
    bool writes = cmd->lat == 1 || cmd->lat == 2 || strncmp(cmd->name, "flush", 5) == 0 ||
                  strcmp(cmd->name, "persist") == 0 || strstr(cmd->name, "expire") != NULL ||
                  strcmp(cmd->name, "getex") == 0;
    const char *flag = !keyed && cmd->kind != K_ALL ? NULL : writes ? "write" : "readonly";
    int rc = resp_compose_array(b, 10);
    rc = rc < 0 ? rc : resp_compose_bulk(b, cmd->name, strlen(cmd->name));
    rc = rc < 0 ? rc : resp_compose_int(b, cmd->arity);
    rc = rc < 0 ? rc : resp_compose_set(b, v, flag != NULL);
    rc = rc < 0 || flag == NULL ? rc : resp_compose_simple(b, flag, strlen(flag));
    rc = rc < 0 ? rc : resp_compose_int(b, keyed ? 1 : 0);
    rc = rc < 0 ? rc : resp_compose_int(b, !keyed ? 0 : many ? -1 : 1);
    rc = rc < 0 ? rc : resp_compose_int(b, keyed ? step : 0);
    rc = rc < 0 ? rc : resp_compose_set(b, v, 0);
    for (int i = 0; i < 3 && rc == 0; i++) {
        rc = resp_compose_array(b, 0); /* tips, key specifications, subcommands */
    }
    return rc;
}

static int
command(const struct resp_conn *st, const struct resp_req *req, struct buf *b)
{
    const size_t ncmds = sizeof(cmds) / sizeof(cmds[0]);
    if (req->argc >= 2 && arg_is(&req->argv[1], "count")) {
        return resp_compose_int(b, (int64_t)ncmds);
    }
    if (req->argc >= 2 && arg_is(&req->argv[1], "docs")) {
        return resp_compose_map(b, st->proto, 0); /* redis-cli's hints: none here */
    }
    if (req->argc >= 3 && arg_is(&req->argv[1], "info")) {
        int rc = resp_compose_array(b, req->argc - 2);
        for (uint32_t i = 2; i < req->argc && rc == 0; i++) {
            rc = command_info(b, st->proto, cmd_find(&req->argv[i]));
        }
        return rc;
    }
    if (req->argc == 1 || (req->argc == 2 && arg_is(&req->argv[1], "info"))) {
        int rc = resp_compose_array(b, ncmds);
        for (size_t i = 0; i < ncmds && rc == 0; i++) {
            rc = command_info(b, st->proto, &cmds[i]);
        }
        return rc;
    }
    char msg[160];
    snprintf(msg, sizeof(msg), "unknown subcommand '%.*s'. Try COMMAND HELP.",
             (int)(req->argv[1].len > 64 ? 64 : req->argv[1].len), req->argv[1].p);
    return reply_err(b, msg);
}

/*
 * Commands of Redis's other data types: Petrel keeps strings only, and says so, rather than
 * "unknown command" (which reads as a typo or an old server). Looked up only for commands the
 * table does not have.
 */
static const struct {
    const char *type;
    const char *names;
} other_types[] = {
    {"lists", " lpush rpush lpushx rpushx lpop rpop llen lrange lindex lset lrem ltrim linsert "
              "lpos lmove blmove blpop brpop rpoplpush brpoplpush lmpop blmpop "},
    {"hashes", " hset hsetnx hget hmset hmget hdel hlen hgetall hkeys hvals hexists hincrby "
               "hincrbyfloat hstrlen hscan hrandfield "},
    {"sets", " sadd srem smembers sismember smismember scard spop srandmember sinter "
             "sintercard sinterstore sunion sunionstore sdiff sdiffstore smove sscan "},
    {"sorted sets", " zadd zrem zcard zcount zincrby zscore zmscore zrank zrevrank zrange "
                    "zrangestore zrangebyscore zrevrange zrevrangebyscore zrangebylex "
                    "zrevrangebylex zlexcount zpopmin zpopmax bzpopmin bzpopmax zmpop bzmpop "
                    "zremrangebyrank zremrangebyscore zremrangebylex zunion zunionstore zinter "
                    "zinterstore zintercard zdiff zdiffstore zrandmember zscan "},
    {"streams", " xadd xrange xrevrange xlen xread xreadgroup xgroup xack xclaim xautoclaim "
                "xpending xtrim xdel xinfo xsetid "},
    {"HyperLogLogs", " pfadd pfcount pfmerge "},
    {"geospatial indexes", " geoadd geodist geohash geopos georadius georadius_ro "
                           "georadiusbymember georadiusbymember_ro geosearch geosearchstore "},
    {"bitmaps", " setbit getbit bitcount bitop bitpos bitfield bitfield_ro "},
};

/* The type of Redis's whose command name is, or NULL. */
static const char *
other_type(const struct resp_arg *name)
{
    char key[24];
    if (name->len == 0 || name->len > sizeof(key) - 3) {
        return NULL;
    }
    key[0] = ' ';
    for (size_t i = 0; i < name->len; i++) {
        char ch = name->p[i];
        if (ch == ' ' || ch == '\0') {
            return NULL;
        }
        key[i + 1] = ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
    }
    key[name->len + 1] = ' ';
    key[name->len + 2] = '\0';
    for (size_t i = 0; i < sizeof(other_types) / sizeof(other_types[0]); i++) {
        if (strstr(other_types[i].names, key) != NULL) {
            return other_types[i].type;
        }
    }
    return NULL;
}

/* Redis's refusal of a command it does not know, arguments quoted (128 bytes of them at most). */
static int
unknown(struct buf *b, const struct resp_req *req)
{
    char msg[512];
    const char *type = other_type(&req->argv[0]);
    if (type != NULL) {
        int k = snprintf(msg, sizeof(msg),
                         "unsupported command '%.*s': Petrel keeps strings only, not %s",
                         (int)req->argv[0].len, req->argv[0].p, type);
        return resp_compose_error(b, msg, (size_t)k);
    }
    int n = snprintf(msg, sizeof(msg), "unknown command '%.*s', with args beginning with: ",
                     (int)(req->argv[0].len > 128 ? 128 : req->argv[0].len), req->argv[0].p);
    size_t args = 0;
    for (uint32_t i = 1; i < req->argc && args < 128; i++) {
        int room = (int)(128 - args);
        int len = req->argv[i].len < (size_t)room ? (int)req->argv[i].len : room;
        int k = snprintf(msg + n, sizeof(msg) - (size_t)n, "'%.*s' ", len, req->argv[i].p);
        n += k;
        args += (size_t)k;
    }
    return resp_compose_error(b, msg, (size_t)n);
}

/* The command as CLIENT LIST shows it: its name, and a container's subcommand ("client|info").
 * Kept as a pointer (every request passes here), the subcommand copied only for those two. */
static void
note_cmd(struct resp_conn *st, const struct cmd *cmd, const struct resp_req *req)
{
    st->last_cmd = cmd->name;
    st->last_sub[0] = '\0';
    if (req->argc >= 2 && (cmd->name[0] == 'c' && (strcmp(cmd->name, "client") == 0 ||
                                                   strcmp(cmd->name, "config") == 0))) {
        size_t n = req->argv[1].len < sizeof(st->last_sub) - 1 ? req->argv[1].len
                                                               : sizeof(st->last_sub) - 1;
        for (size_t i = 0; i < n; i++) {
            char ch = req->argv[1].p[i];
            st->last_sub[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
        }
        st->last_sub[n] = '\0';
    }
}

/* Run one request whose command is cmd (NULL: unknown); hash is its key's, for a keyed one. */
static int
dispatch(struct resp_worker *w, struct conn *c, struct resp_conn *st, const struct resp_req *req,
         const struct cmd *cmd, uint64_t hash)
{
    int rc;
    route_lat_request(w->rw, cmd != NULL ? cmd->lat : 3);
    if (cmd == NULL ||
        (cmd->arity > 0 ? req->argc != (uint32_t)cmd->arity : req->argc < (uint32_t)-cmd->arity)) {
        struct route_out o;
        if (route_reply_out(w->rw, c, &st->rc, &o) < 0) {
            return -ENOMEM;
        }
        if (cmd == NULL) {
            rc = unknown(o.b, req);
        } else {
            char msg[96];
            snprintf(msg, sizeof(msg), "wrong number of arguments for '%s' command", cmd->name);
            rc = reply_err(o.b, msg);
        }
        route_out_done(c, &st->rc, &o);
        return rc;
    }
    note_cmd(st, cmd, req);
    if (!st->authed && strcmp(cmd->name, "auth") != 0 && strcmp(cmd->name, "hello") != 0 &&
        strcmp(cmd->name, "quit") != 0 && strcmp(cmd->name, "reset") != 0) {
        return reply_local_err(w->rw, c, st, "-NOAUTH Authentication required.");
    }
    switch (cmd->kind) {
    case K_KEYED:
        return dispatch_keyed(w, c, st, cmd, req, hash);
    case K_MULTI:
        return dispatch_multi(w, c, st, cmd, req);
    case K_ALL:
        if (req->argc > 2 ||
            (req->argc == 2 && !arg_is(&req->argv[1], "async") && !arg_is(&req->argv[1], "sync"))) {
            struct route_out o;
            if (route_reply_out(w->rw, c, &st->rc, &o) < 0) {
                return -ENOMEM;
            }
            rc = reply_err(o.b, "syntax error");
            route_out_done(c, &st->rc, &o);
            return rc;
        }
        return route_broadcast(
            w->rw, c, &st->rc, strcmp(cmd->name, "dbsize") == 0 ? RESP_TAG_SUM : RESP_TAG_OK, false,
            strcmp(cmd->name, "dbsize") == 0 ? RESP_OP_DBSIZE : RESP_OP_FLUSH, 0);
    case K_WALK:
        if (strcmp(cmd->name, "msetnx") == 0) {
            rc = resp_msetnx(w, c, st, req);
            return rc == 1 ? EX_WAIT : rc;
        }
        return resp_scan(w, c, st, req, strcmp(cmd->name, "keys") == 0);
    default:
        return dispatch_local(w, c, st, cmd, req);
    }
}

/* ---- the connection ---- */

static void
conn_setup(struct resp_worker *w, struct resp_conn *st)
{
    /* As many arguments as Redis takes: the request's bytes, within the read buffer's bound,
     * are what limits them (argv grows to fit, and shrinks back after). */
    struct resp_parser_opts o = {.max_bulk = w->max_value, .max_args = RESP_ARGS_MAX_LIMIT};
    route_conn_init(&st->rc);
    resp_parser_init(&st->parser, &o);
    st->proto = RESP_2;
    st->id = w->next_id;
    w->next_id += w->rw->n;
    st->kind = CONN_RESP;
    resp_auth_reset(w, st);
    resp_conn_born(st);
}

/*
 * Requests parsed ahead of execution, so that their storage lookups overlap (as mc_on_data
 * does): a key's bucket is prefetched when its request is parsed, its item ITEM_LEAD requests
 * later. The argv of a batch share w->argv, which has room for two requests of the most
 * arguments: a batch takes no more requests once half of it is used.
 */
#define AHEAD     16
#define ITEM_LEAD 8
#define ARGV_ROOM (2 * RESP_ARGS_MAX_DEFAULT) /* w->argv's entries between requests */

struct ahead {
    struct resp_req req; /* argc 0: bytes to drop without a reply (RESP_PARSE_SKIP) */
    const struct cmd *cmd;
    uint64_t hash; /* a keyed command's key's */
    bool local;    /* keyed and owned by this worker: prefetched */
};

/*
 * Find a parsed request's command, hash its key once and prefetch its bucket if it is ours.
 * Returns whether requests behind it may be parsed before it runs: not behind one that may
 * change how they parse (AUTH, HELLO, RESET: anything but a data command), nor behind an inline
 * one (its quoted words live in the worker's one scratch).
 */
static bool
prepare(struct resp_worker *w, struct ahead *a)
{
    a->cmd = cmd_find(&a->req.argv[0]);
    a->hash = 0;
    a->local = false;
    if (a->cmd == NULL) {
        return false;
    }
    if (a->cmd->kind == K_KEYED && a->req.argc >= 2) {
        a->hash = mc_key_hash(a->req.argv[1].p, a->req.argv[1].len);
        a->local = route_shard_of(a->hash, w->rw->n) == w->rw->id;
        if (a->local) {
            seg_prefetch(w->shard->seg, a->hash);
        }
    }
    return !a->req.is_inline && (a->cmd->kind == K_KEYED || a->cmd->kind == K_MULTI);
}

/* Prefetch the items of batch[*done .. upto), whose buckets were prefetched a while ago. */
static void
prefetch_items(struct resp_worker *w, const struct ahead *batch, size_t *done, size_t upto)
{
    for (; *done < upto; (*done)++) {
        if (batch[*done].local) {
            seg_prefetch_item(w->shard->seg, batch[*done].hash);
        }
    }
}

/*
 * Parse up to AHEAD requests from the input; returns the last parse's result, *n requests. Each
 * request has the room of argv the batch left; *full says that the last one is complete but has
 * more arguments than that (the caller grows argv when it is the first, else runs the batch and
 * parses it again).
 */
static enum resp_parse_rc
parse_batch(struct resp_worker *w, struct resp_conn *st, struct buf *in, struct ahead *batch,
            size_t *n, bool *full)
{
    size_t off = 0, used = 0, items = 0;
    enum resp_parse_rc last = RESP_PARSE_OK;
    bool more = true;
    *n = 0;
    *full = false;
    while (more && *n < AHEAD && off < buf_len(in)) {
        struct ahead *a = &batch[*n];
        resp_req_init(&a->req, w->argv + used, w->scratch);
        a->req.argv_cap = w->argv_cap - (uint32_t)used;
        last = resp_parse(&st->parser, buf_rptr(in) + off, buf_len(in) - off, &a->req);
        if (last != RESP_PARSE_OK && last != RESP_PARSE_SKIP) {
            /* Complete only once every argument is in: an announced count alone grows nothing. */
            *full = last == RESP_PARSE_AGAIN && st->parser.argc > a->req.argv_cap &&
                    st->parser.done == st->parser.argc;
            break;
        }
        off += a->req.consumed;
        used += a->req.argc;
        a->local = false;
        more = (last == RESP_PARSE_SKIP || prepare(w, a)) && used <= RESP_ARGS_MAX_DEFAULT;
        if (++*n > ITEM_LEAD) {
            prefetch_items(w, batch, &items, *n - ITEM_LEAD);
        }
    }
    return last;
}

/* The batch stopped for room: everything not run is parsed again when the call comes back. */
static enum rt_result
batch_wait(struct resp_worker *w, struct conn *c, struct resp_conn *st)
{
    route_lat_settle(w->rw);
    resp_parser_rewind(&st->parser);
    return route_wait_result(c, &st->rc);
}

enum rt_result
resp_on_data(struct resp_worker *w, struct conn *c)
{
    struct resp_conn *st = rc_of(c);
    struct buf *in = conn_rbuf(c);
    struct ahead batch[AHEAD];
    if (st->kind != CONN_RESP) {
        conn_setup(w, st);
    }
    if (st->rc.broken || route_flush(w->rw, c, &st->rc) < 0) {
        return RT_ABORT;
    }
    while (buf_len(in) > 0) {
        size_t n, items = 0;
        bool full;
        enum resp_parse_rc last = parse_batch(w, st, in, batch, &n, &full);
        if (n == 0 && full) {
            /* All there, with more arguments than argv has room for (bounded by the bytes):
             * argv grows for it, and shrinks back once it is done. */
            if (resp_argv_grow(&w->argv, &w->argv_cap, st->parser.argc) < 0) {
                return RT_ABORT;
            }
            continue;
        }
        if (n > 0) {
            route_lat_begin(w->rw);
        }
        for (size_t i = 0; i < n; i++) {
            struct ahead *a = &batch[i];
            if (n > 1) {
                prefetch_items(w, batch, &items, i + ITEM_LEAD + 1 < n ? i + ITEM_LEAD + 1 : n);
            }
            if (a->req.argc == 0) {
                buf_consume(in, a->req.consumed);
                continue;
            }
            if (st->barrier != 0 && st->rc.seq_head < st->barrier) {
                return batch_wait(w, c, st); /* an MSETNX is not answered yet */
            }
            st->barrier = 0;
            if (route_blocked(c, &st->rc) || st->rc.qlen >= ROUTE_SLOTS_MAX) {
                return batch_wait(w, c, st);
            }
            int r = dispatch(w, c, st, &a->req, a->cmd, a->hash);
            if (r == EX_WAIT || r == EX_STOP) {
                return batch_wait(w, c, st);
            }
            if (r < 0) {
                return RT_ABORT;
            }
            route_lat_answered(w->rw);
            buf_consume(in, a->req.consumed);
            if (r == EX_CLOSE) {
                route_lat_settle(w->rw);
                return RT_CLOSE;
            }
            if (route_flush(w->rw, c, &st->rc) < 0) {
                return RT_ABORT;
            }
        }
        route_lat_settle(w->rw);
        if (n > 0) {
            argv_shrink(&w->argv, &w->argv_cap, ARGV_ROOM);
            argv_shrink(&w->margv, &w->margv_cap, RESP_ARGS_MAX_DEFAULT);
        }
        if (full) {
            continue; /* a request of many arguments behind the batch: argv grows for it */
        }
        if (last == RESP_PARSE_AGAIN) {
            /* Room for the whole request at once: a large value is read in place. */
            if (st->parser.need > buf_len(in) &&
                conn_rbuf_want(c, st->parser.need - buf_len(in)) < 0) {
                log_verbose("RESP request of %zu bytes refused: no buffer memory for it",
                            st->parser.need);
                return RT_ABORT;
            }
            break;
        }
        if (last == RESP_PARSE_ERROR) {
            if (st->rc.qlen > 0 || route_blocked(c, &st->rc)) {
                /* Framing is lost, but the replies before it go first: answered once they
                 * are all sent (the bytes are parsed again then). */
                resp_parser_rewind(&st->parser);
                return route_wait_result(c, &st->rc);
            }
            const struct resp_req *req = &batch[n].req;
            struct route_out o;
            if (route_reply_out(w->rw, c, &st->rc, &o) < 0 ||
                resp_compose_error(o.b, req->err.msg, req->err.len) < 0) {
                return RT_ABORT;
            }
            route_out_done(c, &st->rc, &o);
            buf_consume(in, buf_len(in));
            return RT_CLOSE;
        }
    }
    return route_end_result(c, &st->rc);
}

int
resp_password(const struct config *cfg, char **out, char *err, size_t errlen)
{
    const char *pw = config_str(cfg, "resp-password");
    const char *path = config_str(cfg, "resp-password-file");
    *out = NULL;
    if (pw[0] != '\0' && path[0] != '\0') {
        snprintf(err, errlen, "--resp-password and --resp-password-file: give one of them");
        return -EINVAL;
    }
    if (path[0] == '\0') {
        *out = pw[0] != '\0' ? strdup(pw) : NULL;
        return pw[0] != '\0' && *out == NULL ? -ENOMEM : 0;
    }
    /* Non-blocking, and a regular file only: a FIFO would hold start-up until someone wrote. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    FILE *f = NULL;
    int rc = 0;
    if (fd < 0 || fstat(fd, &st) < 0) {
        rc = -errno;
    } else if (!S_ISREG(st.st_mode)) {
        rc = -EINVAL;
    } else if ((f = fdopen(fd, "r")) == NULL) {
        rc = -errno;
    }
    if (rc < 0) {
        snprintf(err, errlen, "--resp-password-file: cannot read '%.200s': %s", path,
                 rc == -EINVAL ? "not a regular file" : strerror(-rc));
        if (fd >= 0) {
            close(fd);
        }
        return rc;
    }
    char line[4096];
    size_t n = fgets(line, sizeof(line), f) != NULL ? strcspn(line, "\r\n") : 0;
    fclose(f);
    line[n] = '\0';
    if (n == 0) {
        /* Starting without the password the operator meant to set would open the port. */
        snprintf(err, errlen,
                 "--resp-password-file: '%.200s' holds no password (its first line "
                 "is empty)",
                 path);
        return -EINVAL;
    }
    *out = strdup(line);
    if (*out == NULL) {
        snprintf(err, errlen, "--resp-password-file: out of memory");
        return -ENOMEM;
    }
    return 0;
}

int
resp_worker_init(struct resp_worker *w, struct route_worker *rw, struct mc_shard *shard,
                 size_t max_value, const struct config *cfg)
{
    *w = (struct resp_worker){.rw = rw,
                              .shard = shard,
                              .max_value = max_value,
                              .next_id = rw->id + 1,
                              .mem_limit = config_uint(cfg, "memory-limit"),
                              .port = (unsigned)config_uint(cfg, "resp-port")};
    char err[320];
    int rc = resp_password(cfg, &w->password, err, sizeof(err));
    if (rc < 0) {
        log_error("%s", rc == -ENOMEM ? "--resp-password: out of memory" : err);
        return rc;
    }
    w->argv = malloc(ARGV_ROOM * sizeof(*w->argv));
    w->margv = malloc(RESP_ARGS_MAX_DEFAULT * sizeof(*w->margv));
    w->argv_cap = ARGV_ROOM;
    w->margv_cap = RESP_ARGS_MAX_DEFAULT;
    w->scratch = malloc(RESP_INLINE_MAX_DEFAULT);
    if (w->argv == NULL || w->margv == NULL || w->scratch == NULL) {
        resp_worker_teardown(w);
        return -ENOMEM;
    }
    return 0;
}

void
resp_worker_teardown(struct resp_worker *w)
{
    free(w->argv);
    free(w->margv);
    free(w->scratch);
    free(w->password);
    w->password = NULL;
    w->argv = NULL;
    w->margv = NULL;
    w->scratch = NULL;
}
