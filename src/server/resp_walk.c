/*
 * resp_walk: SCAN and KEYS, which walk the shards one bounded step at a time, and MSETNX, which
 * stores on several shards all or nothing. Contract in resp_cmd.h; docs/resp.md says what each
 * guarantees.
 */
#include "resp_cmd.h"

#include "petrel/log.h"
#include "petrel/seg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define WALK_BUCKETS                                                                               \
    16384 /* hash buckets (8 slots each) one step of SCAN or KEYS visits at most                   \
           */
#define SCAN_REPLY_MAX (64u << 10) /* key bytes one SCAN brings back, about (a bucket more) */
#define KEYS_MIN_ROOM  (64u << 10) /* the least a KEYS reply may take, whatever the room */
#define POS_MASK       UINT64_C(0xffffffff)
#define SHARD_SHIFT    32 /* a cursor: shard << SHARD_SHIFT | the shard's hash position */

/* ---- SCAN and KEYS ---- */

/*
 * A walk's parameters. They lead its message's reply buffer, before the keys found (RESP bulk
 * strings), so they stay with the message between steps; a copy goes in the request of each
 * step, where the owner reads them (the reply grows while it does).
 */
struct walk_hdr {
    uint64_t count;  /* SCAN: a step stops once it looked at this many items; KEYS: no bound */
    uint32_t patlen; /* the pattern's bytes follow */
    uint8_t type;    /* SCAN TYPE: 0 none given, 1 string, 2 another (no key is one) */
    bool all;        /* no pattern, or "*": every key (the empty one too) */
};

static struct walk_hdr
walk_hdr_of(const struct buf *b)
{
    struct walk_hdr h;
    memcpy(&h, buf_rptr(b), sizeof(h));
    return h;
}

struct walk_step {
    const char *pat;
    size_t patlen;
    bool none; /* TYPE names no string: nothing matches */
    bool all;  /* every key matches */
    struct buf *out;
    size_t stop_at; /* stop after the bucket in which out reached this length */
    uint64_t count, seen;
    uint64_t work; /* matching done, in pattern bytes times key bytes: a step's bound */
    uint32_t found;
    int rc;
};

/* Matching work per step: a pattern can be long (a request is up to 16 MiB) and matching costs
 * up to its length times the key's, so a step ends after this much of it (and the bucket), as
 * it ends after WALK_BUCKETS buckets; the cursor goes on from there. About a millisecond. */
#define WALK_WORK        (UINT64_C(1) << 22)
#define WALK_PATTERN_MAX 65536 /* the longest MATCH or KEYS pattern */

static bool
walk_item(void *ctx, const struct seg_item_info *it)
{
    struct walk_step *x = ctx;
    x->seen++;
    if (!x->all && !x->none) {
        x->work += (uint64_t)(x->patlen + 1) * (it->klen + 1);
    }
    if (x->rc == 0 && !x->none &&
        (x->all || resp_glob_match(x->pat, x->patlen, it->key, it->klen, false))) {
        x->rc = resp_compose_bulk(x->out, it->key, it->klen);
        x->found += x->rc == 0;
    }
    return x->rc == 0 && x->seen < x->count && buf_len(x->out) < x->stop_at && x->work < WALK_WORK;
}

/* On the owner: one step of a walk, from the cursor in m->arg. */
static void
exec_scan(struct resp_worker *w, struct route_msg *m)
{
    struct walk_hdr h = walk_hdr_of(&m->req);
    size_t pre = sizeof(h) + h.patlen;
    struct walk_step x = {.pat = buf_rptr(&m->req) + sizeof(h),
                          .patlen = h.patlen,
                          .none = h.type == 2,
                          .all = h.all,
                          .out = &m->reply.b,
                          .stop_at = pre + m->allow,
                          .count = h.count};
    struct seg_cursor cur = {.pos = (uint64_t)m->arg & POS_MASK};
    m->more = seg_scan(w->shard->seg, &cur, WALK_BUCKETS, walk_item, &x);
    m->arg = (int64_t)(((uint64_t)m->arg & ~POS_MASK) | (cur.pos & POS_MASK));
    m->nkeys += x.found;
    m->failed = x.rc < 0;
    m->hit = buf_len(x.out) >= x.stop_at; /* the room is used up */
}

/* Redis's cursor: strtoul of the text, refused with a leading blank, anything after the
 * digits, or overflow. */
static bool
cursor_of(const struct resp_arg *a, uint64_t *out)
{
    char text[128];
    if (a->len >= sizeof(text)) {
        return false;
    }
    memcpy(text, a->p, a->len);
    text[a->len] = '\0';
    errno = 0;
    char *end;
    unsigned long v = strtoul(text, &end, 10);
    if ((text[0] == ' ' || (text[0] >= '\t' && text[0] <= '\r')) || *end != '\0' ||
        errno == ERANGE) {
        return false;
    }
    *out = v;
    return true;
}

int
resp_scan(struct resp_worker *w, struct conn *c, struct resp_conn *st, const struct resp_req *req,
          bool keys)
{
    struct route_worker *rw = w->rw;
    uint64_t cursor = 0;
    long long count = 10;
    const struct resp_arg *pat = keys ? &req->argv[1] : NULL;
    uint8_t type = 0;
    if (!keys) {
        if (!cursor_of(&req->argv[1], &cursor)) {
            return reply_local_err(rw, c, st, "invalid cursor");
        }
        for (uint32_t i = 2; i < req->argc; i += 2) {
            const struct resp_arg *a = &req->argv[i];
            bool more = i + 1 < req->argc;
            if (arg_is(a, "count") && more) {
                if (!arg_ll(&req->argv[i + 1], &count)) {
                    return reply_local_err(rw, c, st, "value is not an integer or out of range");
                }
                if (count < 1) {
                    return reply_local_err(rw, c, st, "syntax error");
                }
            } else if (arg_is(a, "match") && more) {
                pat = &req->argv[i + 1];
            } else if (arg_is(a, "type") && more) {
                type = arg_is(&req->argv[i + 1], "string") ? 1 : 2;
            } else {
                return reply_local_err(rw, c, st, "syntax error");
            }
        }
    }
    if (pat != NULL && pat->len == 1 && pat->p[0] == '*') {
        pat = NULL; /* every key, the empty one too, as Redis's "*" */
    }
    if (pat != NULL && pat->len > WALK_PATTERN_MAX) {
        /* Matching one key costs up to the pattern's length times the key's: bounded so that a
         * step's smallest unit (one bucket) stays short. Redis has no such limit. */
        return reply_local_err(rw, c, st, "pattern longer than 65536 bytes");
    }
    uint64_t shard = cursor >> SHARD_SHIFT;
    if (shard >= rw->n) {
        /* Not a cursor Petrel gave: nothing left to walk. */
        struct route_out o;
        if (route_reply_out(rw, c, &st->rc, &o) < 0) {
            return -ENOMEM;
        }
        int rc = resp_compose_array(o.b, 2);
        rc = rc < 0 ? rc : resp_compose_bulk(o.b, "0", 1);
        rc = rc < 0 ? rc : resp_compose_array(o.b, 0);
        route_out_done(c, &st->rc, &o);
        return rc;
    }
    uint64_t seq = route_seq_next(&st->rc);
    struct route_slot *s = route_slot_push(rw, &st->rc, ROUTE_SLOT_PRODUCT, 1, 0);
    struct route_msg *m = s != NULL ? route_msg_new(rw, RESP_OP_SCAN, seq, 0) : NULL;
    if (m == NULL) {
        return -ENOMEM;
    }
    s->tag = keys ? RESP_TAG_KEYS : RESP_TAG_SCAN;
    struct walk_hdr h = {.count = keys ? UINT64_MAX : (uint64_t)count,
                         .patlen = pat != NULL ? (uint32_t)pat->len : 0,
                         .type = type,
                         .all = pat == NULL};
    int rc = buf_append(&m->reply.b, &h, sizeof(h));
    rc = rc < 0 || pat == NULL ? rc : buf_append(&m->reply.b, pat->p, pat->len);
    rc = rc < 0 ? rc : buf_append(&m->req, buf_rptr(&m->reply.b), buf_len(&m->reply.b));
    if (rc < 0) {
        route_msg_free(rw, m);
        return rc;
    }
    size_t room = conn_output_room(c);
    m->arg = (int64_t)cursor;
    m->allow =
        keys ? (uint32_t)(room > KEYS_MIN_ROOM ? (room < UINT32_MAX / 2 ? room : UINT32_MAX / 2)
                                               : KEYS_MIN_ROOM)
             : SCAN_REPLY_MAX;
    route_slot_time(rw, s);
    return route_send_part(rw, c, &st->rc, s, m, (unsigned)shard);
}

/* The reply of a walk that is over: SCAN's cursor and keys, or KEYS's keys. */
static int
walk_reply(struct buf *wb, const struct route_msg *m, bool keys, uint64_t next)
{
    struct walk_hdr h = walk_hdr_of(&m->reply.b);
    size_t pre = sizeof(h) + h.patlen;
    int rc = 0;
    if (!keys) {
        char text[24];
        int n = snprintf(text, sizeof(text), "%llu", (unsigned long long)next);
        rc = resp_compose_array(wb, 2);
        rc = rc < 0 ? rc : resp_compose_bulk(wb, text, (size_t)n);
    }
    rc = rc < 0 ? rc : resp_compose_array(wb, m->nkeys);
    return rc < 0 ? rc : buf_append(wb, buf_rptr(&m->reply.b) + pre, buf_len(&m->reply.b) - pre);
}

/*
 * A walk at the head of the queue, its step back: send the reply, or take the next step (the
 * rest of that shard, or the next shard from its start). SCAN goes on to the next shard while
 * it found fewer keys than COUNT, so that an empty shard does not cost the client a round trip;
 * KEYS goes on to the end, its keys kept in the message within its room (else an error).
 */
static int
walk_emit(struct resp_worker *w, struct conn *c, struct route_conn *rc, struct route_slot *s,
          bool keys)
{
    struct route_worker *rw = w->rw;
    for (;;) {
        struct route_msg *m = s->parts[0];
        if (m == NULL || m->failed) {
            return -ENOMEM; /* the step could not be sent or run (logged) */
        }
        route_charge(c, rc, &m->charged, route_msg_held(m));
        struct walk_hdr h = walk_hdr_of(&m->reply.b);
        uint64_t cur = (uint64_t)m->arg;
        unsigned shard = (unsigned)(cur >> SHARD_SHIFT);
        bool last = shard + 1 >= rw->n;
        if (keys && m->hit && (m->more || !last)) {
            char msg[160];
            snprintf(msg, sizeof(msg),
                     "KEYS reply larger than this connection's output room (%u bytes): use SCAN",
                     m->allow);
            return reply_err(conn_wbuf(c), msg) == 0 ? 1 : -ENOMEM;
        }
        bool done = keys ? !m->more && last : m->more || last || m->hit || m->nkeys >= h.count;
        if (done) {
            uint64_t next = m->more ? cur : last ? 0 : (uint64_t)(shard + 1) << SHARD_SHIFT;
            return walk_reply(conn_wbuf(c), m, keys, next) == 0 ? 1 : -ENOMEM;
        }
        if (!m->more) {
            cur = (uint64_t)(shard + 1) << SHARD_SHIFT;
        }
        m->arg = (int64_t)cur;
        size_t pre = sizeof(h) + h.patlen;
        buf_consume(&m->req, buf_len(&m->req));
        if (buf_append(&m->req, buf_rptr(&m->reply.b), pre) < 0) {
            return -ENOMEM;
        }
        s->parts[0] = NULL;
        s->waiting = 1;
        int r = route_send_part(rw, c, rc, s, m, (unsigned)(cur >> SHARD_SHIFT));
        if (r < 0 || s->waiting > 0) {
            return r;
        }
    }
}

/* ---- MSETNX ---- */

/*
 * What a part that stored its keys brings back after ":1\r\n": for each key, its length (4
 * bytes), the key, and the CAS it was stored with (8 bytes), so that an undo deletes only what
 * this MSETNX stored.
 */
static int
put_stored(struct buf *b, const struct resp_arg *k, uint64_t cas)
{
    uint32_t klen = (uint32_t)k->len;
    int rc = buf_append(b, &klen, sizeof(klen));
    rc = rc < 0 ? rc : buf_append(b, k->p, k->len);
    return rc < 0 ? rc : buf_append(b, &cas, sizeof(cas));
}

/* Delete each key the records from p on name if it still holds the version stored. */
static void
undo_records(struct seg *seg, const char *p, const char *end)
{
    while (end - p >= (long)sizeof(uint32_t)) {
        uint32_t klen;
        uint64_t cas;
        memcpy(&klen, p, sizeof(klen));
        const char *key = p + sizeof(klen);
        memcpy(&cas, key + klen, sizeof(cas));
        p = key + klen + sizeof(cas);
        uint64_t hash = mc_key_hash(key, klen);
        struct seg_view v;
        if (seg_peek(seg, key, klen, hash, &v) == SEG_OK && v.cas == cas) {
            (void)seg_delete(seg, key, klen, hash);
        }
    }
}

/* On the owner: a shard's keys of an MSETNX, stored only if none of them exists here. */
static void
exec_msetnx(struct resp_worker *w, struct route_msg *m)
{
    struct buf *out = &m->reply.b;
    struct resp_req req;
    if (!resp_parse_msg(w, m, &req)) {
        log_error("forwarded MSETNX part does not parse; refused");
        (void)resp_compose_int(out, 0);
        return;
    }
    struct seg *seg = w->shard->seg;
    for (uint32_t i = 1; i + 1 < req.argc; i += 2) {
        struct seg_view v;
        const struct resp_arg *k = &req.argv[i];
        if (seg_peek(seg, k->p, k->len, mc_key_hash(k->p, k->len), &v) == SEG_OK) {
            (void)resp_compose_int(out, 0);
            return;
        }
    }
    int rc = buf_puts(out, ":1\r\n");
    enum seg_result sr = SEG_STORED;
    for (uint32_t i = 1; rc == 0 && sr == SEG_STORED && i + 1 < req.argc; i += 2) {
        const struct resp_arg *k = &req.argv[i], *val = &req.argv[i + 1];
        struct seg_store_req r = {.mode = SEG_SET,
                                  .key = k->p,
                                  .klen = k->len,
                                  .hash = mc_key_hash(k->p, k->len),
                                  .value = val->p,
                                  .vlen = val->len};
        uint64_t cas = 0;
        sr = val->len > w->max_value ? SEG_TOO_LARGE : seg_store(seg, &r, &cas);
        rc = sr == SEG_STORED ? put_stored(out, k, cas) : 0;
    }
    if (rc == 0 && sr == SEG_STORED) {
        return;
    }
    /* Not all stored: none stays. */
    undo_records(seg, buf_rptr(out) + 4, buf_rptr(out) + buf_len(out));
    route_rb_reset(&m->reply);
    (void)reply_err(out, sr == SEG_TOO_LARGE
                             ? "string exceeds maximum allowed size"
                             : "-OOM command not allowed when used memory > 'maxmemory'.");
}

int
resp_msetnx(struct resp_worker *w, struct conn *c, struct resp_conn *st, const struct resp_req *req)
{
    struct route_worker *rw = w->rw;
    if (req->argc % 2 == 0) {
        return reply_local_err(rw, c, st, "wrong number of arguments for 'msetnx' command");
    }
    if (st->rc.qlen > 0) {
        return 1; /* every earlier reply first, so that an undo never waits behind them */
    }
    uint32_t count[ROUTE_WORKERS_MAX] = {0};
    struct route_msg *msg[ROUTE_WORKERS_MAX] = {0};
    uint32_t nparts = 0;
    for (uint32_t i = 1; i < req->argc; i += 2) {
        unsigned sh = route_shard_of(mc_key_hash(req->argv[i].p, req->argv[i].len), rw->n);
        nparts += count[sh]++ == 0;
    }
    uint64_t seq = route_seq_next(&st->rc);
    struct route_slot *s = route_slot_push(rw, &st->rc, ROUTE_SLOT_PRODUCT, nparts, 0);
    if (s == NULL) {
        return -ENOMEM;
    }
    s->tag = RESP_TAG_MSETNX;
    s->ekey = 0; /* 0: storing; 1: undoing */
    int rc = 0;
    uint32_t p = 0;
    for (uint32_t i = 1; rc == 0 && i < req->argc; i += 2) {
        const struct resp_arg *k = &req->argv[i];
        unsigned sh = route_shard_of(mc_key_hash(k->p, k->len), rw->n);
        struct route_msg *m = msg[sh];
        if (m == NULL) {
            m = msg[sh] = route_msg_new(rw, RESP_OP_MSETNX, seq, p++);
            if (m == NULL) {
                rc = -ENOMEM;
                break;
            }
            m->arg = sh;
            m->allow = REPLY_BOUND;
            rc = buf_printf(&m->req, "*%u\r\n", 1 + 2 * count[sh]);
            rc = rc < 0 ? rc : resp_compose_bulk(&m->req, "msetnx", 6);
        }
        m->allow += (uint32_t)(k->len + 12);
        rc = rc < 0 ? rc : resp_compose_bulk(&m->req, k->p, k->len);
        rc = rc < 0 ? rc : resp_compose_bulk(&m->req, k[1].p, k[1].len);
    }
    if (rc == 0) {
        route_slot_time(rw, s);
        st->barrier = seq + 1;
    }
    for (unsigned sh = 0; sh < rw->n; sh++) {
        if (msg[sh] == NULL) {
            continue;
        }
        if (rc == 0) {
            rc = route_send_part(rw, c, &st->rc, s, msg[sh], sh);
        } else {
            route_msg_free(rw, msg[sh]);
        }
    }
    return rc;
}

static bool
part_stored(const struct route_msg *m)
{
    return m != NULL && buf_len(&m->reply.b) >= 4 &&
           memcmp(buf_rptr(&m->reply.b), ":1\r\n", 4) == 0;
}

/*
 * MSETNX at the head, its parts back: ":1" when every part stored its keys. Else the parts
 * that stored are sent again to undo it, and the reply (":0", or the first part's error) goes
 * once they are back.
 */
static int
msetnx_emit(struct resp_worker *w, struct conn *c, struct route_conn *rc, struct route_slot *s)
{
    struct buf *wb = conn_wbuf(c);
    if (s->ekey == 0) {
        bool all = true;
        for (uint32_t i = 0; i < s->nparts; i++) {
            all = all && part_stored(s->parts[i]);
        }
        if (all) {
            return resp_compose_int(wb, 1) == 0 ? 1 : -ENOMEM;
        }
        s->ekey = 1;
        for (uint32_t i = 0; i < s->nparts; i++) {
            struct route_msg *m = s->parts[i];
            if (!part_stored(m)) {
                continue;
            }
            m->op = RESP_OP_UNDO;
            m->allow = 0;
            s->parts[i] = NULL;
            s->waiting++;
            int r = route_send_part(w->rw, c, rc, s, m, (unsigned)m->arg);
            if (r < 0) {
                return r;
            }
        }
        if (s->waiting > 0) {
            return 0;
        }
    }
    for (uint32_t i = 0; i < s->nparts; i++) {
        const struct route_msg *m = s->parts[i];
        if (m != NULL && buf_len(&m->reply.b) > 0 && buf_rptr(&m->reply.b)[0] == '-') {
            return buf_append(wb, buf_rptr(&m->reply.b), buf_len(&m->reply.b)) == 0 ? 1 : -ENOMEM;
        }
    }
    return resp_compose_int(wb, 0) == 0 ? 1 : -ENOMEM;
}

void
resp_abandon(struct resp_worker *w, struct route_msg *m)
{
    if (m->op == RESP_OP_MSETNX && part_stored(m)) {
        /* Its connection closed before the reply: whether the other parts stored is not known
         * here, so what this part stored is undone (by CAS, as msetnx_emit's undo): such an
         * MSETNX leaves nothing, never some of its keys. */
        unsigned dest = (unsigned)m->arg;
        m->op = RESP_OP_UNDO;
        m->allow = 0;
        m->hdr.cost = 0;
        if (dest == w->rw->id) {
            resp_walk_execute(w, m);
        } else if (rt_forward_detached(dest, &m->hdr) == 0) {
            return; /* back with no connection: here again, as an undo, and freed */
        } else {
            log_error("MSETNX: a closed connection's stored part could not be undone (no memory)");
        }
    }
    route_msg_free(w->rw, m);
}

void
resp_walk_execute(struct resp_worker *w, struct route_msg *m)
{
    switch (m->op) {
    case RESP_OP_SCAN:
        exec_scan(w, m);
        break;
    case RESP_OP_MSETNX:
        exec_msetnx(w, m);
        break;
    default: /* RESP_OP_UNDO */
        undo_records(w->shard->seg, buf_rptr(&m->reply.b) + 4,
                     buf_rptr(&m->reply.b) + buf_len(&m->reply.b));
        route_rb_reset(&m->reply);
        break;
    }
}

int
resp_walk_emit(struct resp_worker *w, struct conn *c, struct route_conn *rc, struct route_slot *s)
{
    if (s->tag == RESP_TAG_MSETNX) {
        return msetnx_emit(w, c, rc, s);
    }
    return walk_emit(w, c, rc, s, s->tag == RESP_TAG_KEYS);
}
