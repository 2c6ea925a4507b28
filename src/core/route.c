/*
 * route: shard choice, forwarding, reply order, held output, holes, broadcast and completion
 * latency for a sharded product. Contract in include/petrel/route.h.
 *
 * Memory: every reply byte held outside the write buffer is counted with conn_output_hold():
 * ready bytes in slots, parts back from other workers waiting their turn, and, while a request
 * is out, its text plus the reply room it was given (its allowance, which bounds what it brings
 * back). A hit whose value does not fit comes back as a hole; when the hole reaches the head of
 * the queue and there is room for its value (or the client has read everything before it), the
 * value is fetched from its shard if the item is still that version, else the key is answered
 * with the hole's miss reply. Never a wrong or torn value.
 */
#include "petrel/route.h"

#include "petrel/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A message's request and reply buffers (and a slot's) are kept at these sizes while cached:
 * a buffer that grows past its size is freed when it is emptied, and allocated again, across
 * threads, the next time. A pipe carries up to 16 requests, each parsed (about 450 bytes) with
 * its text, and brings back their answers, each of which reserves its worst-case header: 8 and
 * 4 KiB hold those of small values. */
#define MSG_REQ_INIT    8192
#define MSG_REPLY_INIT  4096
#define MSG_BUF_INIT    1024 /* a slot's */
#define FREE_CACHE_MAX  256  /* messages (and slots) a worker keeps for reuse: 3 MiB at most */
#define SLOT_KEEP_PARTS 256  /* a cached slot keeps its part and key arrays up to this size */

void
route_lat_settle(struct route_worker *rw)
{
    int64_t dt = -1;
    for (unsigned c = 0; c < rw->nlat; c++) {
        if (rw->lat_pending[c] == 0) {
            continue;
        }
        if (dt < 0) {
            dt = route_now_ns() - rw->lat_t0;
        }
        metrics_hist_record_n(&rw->m_lat[c * METRICS_HIST_SLOTS], (uint64_t)dt, rw->lat_pending[c]);
        rw->lat_pending[c] = 0;
    }
}

/* ---- reply bytes with holes ---- */

static void
rb_init(struct route_rb *r, size_t init)
{
    *r = (struct route_rb){0};
    buf_init(&r->b, init, ROUTE_REPLY_MAX);
}

static void
rb_free(struct route_rb *r)
{
    buf_free(&r->b);
    free(r->holes);
    r->holes = NULL;
    r->hcap = 0;
}

int
route_rb_hole(struct route_rb *r, size_t at, uint32_t hdr_len, uint32_t miss_len,
              const struct route_version *v, const char *key, size_t klen, uint64_t hash)
{
    if (r->nholes == r->hcap) {
        uint32_t cap = r->hcap ? r->hcap * 2 : 4;
        struct route_hole *h = realloc(r->holes, cap * sizeof(*h));
        if (h == NULL) {
            return -ENOMEM;
        }
        r->holes = h;
        r->hcap = cap;
    }
    r->holes[r->nholes++] = (struct route_hole){.at = at,
                                                .hdr_len = hdr_len,
                                                .miss_len = miss_len,
                                                .klen = (uint32_t)klen,
                                                .vlen = v->vlen,
                                                .cas = v->cas,
                                                .hash = hash};
    return buf_append(&r->b, key, klen);
}

/* ---- messages ---- */

struct route_msg *
route_msg_new(struct route_worker *rw, uint8_t op, uint64_t seq, uint32_t part)
{
    struct route_msg *m = rw->msg_cache;
    if (m != NULL) {
        rw->msg_cache = m->next_free;
        rw->msg_cached--;
    } else {
        m = calloc(1, rw->ops->msg_size);
        if (m == NULL) {
            return NULL;
        }
        buf_init(&m->req, MSG_REQ_INIT, ROUTE_REPLY_MAX);
        rb_init(&m->reply, MSG_REPLY_INIT);
    }
    m->hdr = (struct rt_msg){0};
    m->seq = seq;
    m->part = part;
    m->op = op;
    m->hit = false;
    m->allow = 0;
    m->arg = 0;
    m->hash = 0;
    m->charged = 0;
    m->nkeys = 0;
    m->more = false;
    m->failed = false;
    m->next_free = NULL;
    if (rw->ops->msg_init != NULL) {
        rw->ops->msg_init(m);
    }
    return m;
}

static void
msg_destroy(struct route_msg *m)
{
    buf_free(&m->req);
    rb_free(&m->reply);
    free(m->koff);
    free(m);
}

void
route_msg_free(struct route_worker *rw, struct route_msg *m)
{
    if (m == NULL) {
        return;
    }
    if (rw != NULL && rw->msg_cached < FREE_CACHE_MAX) {
        buf_consume(&m->req, buf_len(&m->req));
        buf_shrink(&m->req);
        route_rb_reset(&m->reply);
        m->next_free = rw->msg_cache;
        rw->msg_cache = m;
        rw->msg_cached++;
        return;
    }
    msg_destroy(m);
}

int
route_koff(struct route_msg *m, uint32_t n)
{
    /* Gather parts and pipes each ask for one bound, so the allocation stays with m. */
    if (n > m->kcap) {
        uint32_t *k = realloc(m->koff, n * sizeof(*k));
        if (k == NULL) {
            return -ENOMEM;
        }
        m->koff = k;
        m->kcap = n;
    }
    return 0;
}

void
route_msg_drop(struct route_worker *rw, struct conn *c, struct route_conn *rc, struct route_msg *m)
{
    if (m != NULL && c != NULL) {
        route_charge(c, rc, &m->charged, 0);
    }
    route_msg_free(rw, m);
}

int
route_msg_send(struct route_worker *rw, struct conn *c, struct route_conn *rc, struct route_msg *m,
               unsigned dest)
{
    route_charge(c, rc, &m->charged, buf_len(&m->req) + m->allow);
    m->hdr.cost = (uint32_t)(buf_len(&m->req) + m->allow); /* what it may copy, either way */
    int rc_ = conn_forward(c, dest, &m->hdr);
    if (rc_ < 0) {
        route_msg_drop(rw, c, rc, m);
        return rc_;
    }
    rc->inflight++;
    return 0;
}

/* A message is back (or ran here): its request text is not needed any more, and what c counts
 * for it becomes what it brought. */
static void
msg_back(struct conn *c, struct route_conn *rc, struct route_msg *m)
{
    buf_consume(&m->req, buf_len(&m->req));
    buf_shrink(&m->req);
    route_charge(c, rc, &m->charged, route_msg_held(m));
}

int
route_send_part(struct route_worker *rw, struct conn *c, struct route_conn *rc,
                struct route_slot *s, struct route_msg *m, unsigned dest)
{
    if (dest != rw->id) {
        return route_msg_send(rw, c, rc, m, dest);
    }
    rw->ops->execute(rw->ctx, m);
    s->parts[m->part] = m;
    s->waiting--;
    msg_back(c, rc, m);
    return 0;
}

/* ---- the reply queue ---- */

static struct route_slot *
q_tail(const struct route_conn *rc)
{
    return rc->qlen > 0 ? route_q_at(rc, rc->qlen - 1) : NULL;
}

/* Room for one more slot: the inline ring, or a doubled allocation. */
static int
q_reserve(struct route_conn *rc)
{
    if (rc->qlen < rc->qcap) {
        return 0;
    }
    uint32_t cap = rc->qcap * 2;
    struct route_slot **q = malloc(cap * sizeof(*q));
    if (q == NULL) {
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < rc->qlen; i++) {
        q[i] = route_q_at(rc, i);
    }
    if (rc->q != rc->q_inline) {
        free(rc->q);
    }
    rc->q = q;
    rc->qhead = 0;
    rc->qcap = cap;
    return 0;
}

/* Take the head off the queue; an emptied queue gives its allocation back (an idle connection
 * holds none). */
static void
q_pop(struct route_conn *rc)
{
    rc->qhead = (rc->qhead + 1) % rc->qcap;
    rc->qlen--;
    rc->seq_head++;
    if (rc->qlen == 0) {
        rc->qhead = 0;
        if (rc->q != rc->q_inline) {
            free(rc->q);
            rc->q = rc->q_inline;
            rc->qcap = ROUTE_QUEUE_INLINE;
        }
    }
}

static void
slot_destroy(struct route_slot *s)
{
    rb_free(&s->out);
    free(s->pv);
    free(s->keys);
    free(s);
}

/*
 * Free a slot's parts, and keep the slot in rw's cache if there is room. With c, what c counts
 * for them is released first; without (the connection is closing), rc->held goes as a whole.
 * Parts and fetches still out are freed when they come back.
 */
static void
slot_free(struct route_worker *rw, struct conn *c, struct route_conn *rc, struct route_slot *s)
{
    for (uint32_t i = 0; i < s->nparts; i++) {
        route_msg_drop(rw, c, rc, s->parts[i]);
    }
    if (s->fetch != NULL && !s->fetch_out) {
        route_msg_drop(rw, c, rc, s->fetch);
    }
    if (c != NULL) {
        route_charge(c, rc, &s->charged, 0);
    }
    s->nparts = 0;
    s->fetch = NULL;
    if (s->pcap > SLOT_KEEP_PARTS || s->kcap > SLOT_KEEP_PARTS) {
        /* A request of many keys (a RESP MGET of thousands) must not leave its arrays in the
         * cache: FREE_CACHE_MAX slots of 65536 would keep 1 GiB per worker. */
        free(s->pv);
        free(s->keys);
        s->pv = NULL;
        s->keys = NULL;
        s->pcap = s->kcap = 0;
    }
    if (rw->slot_cached < FREE_CACHE_MAX) {
        route_rb_reset(&s->out);
        s->next_free = rw->slot_cache;
        rw->slot_cache = s;
        rw->slot_cached++;
        return;
    }
    slot_destroy(s);
}

struct route_slot *
route_slot_push(struct route_worker *rw, struct route_conn *rc, uint8_t kind, uint32_t nparts,
                uint32_t nkeys)
{
    if (q_reserve(rc) < 0) {
        return NULL;
    }
    struct route_slot *s = rw->slot_cache;
    if (s != NULL) {
        rw->slot_cache = s->next_free;
        rw->slot_cached--;
    } else if ((s = calloc(1, sizeof(*s))) != NULL) {
        rb_init(&s->out, MSG_BUF_INIT);
    } else {
        return NULL;
    }
    if (nparts > 1 && s->pcap < nparts) {
        struct route_msg **pv = realloc(s->pv, nparts * sizeof(*pv));
        if (pv == NULL) {
            slot_free(rw, NULL, rc, s);
            return NULL;
        }
        s->pv = pv;
        s->pcap = nparts;
    }
    if (nkeys > s->kcap) {
        struct route_key_ref *k = realloc(s->keys, nkeys * sizeof(*k));
        if (k == NULL) {
            slot_free(rw, NULL, rc, s);
            return NULL;
        }
        s->keys = k;
        s->kcap = nkeys;
    }
    s->kind = kind;
    s->tag = 0;
    memset(s->lat_n, 0, sizeof(s->lat_n));
    s->noreply = false;
    s->fetch_out = false;
    s->t0 = 0;
    s->waiting = nparts;
    s->nparts = nparts;
    s->one = NULL;
    s->parts = nparts > 1 ? s->pv : &s->one;
    for (uint32_t i = 0; i < nparts; i++) {
        s->parts[i] = NULL;
    }
    s->nkeys = 0;
    s->ekey = 0;
    s->charged = 0;
    s->fetch = NULL;
    s->next_free = NULL;
    rc->q[(rc->qhead + rc->qlen) % rc->qcap] = s;
    rc->qlen++;
    return s;
}

static struct route_slot *
slot_find(struct route_conn *rc, uint64_t seq)
{
    if (seq < rc->seq_head || seq - rc->seq_head >= rc->qlen) {
        return NULL;
    }
    return route_q_at(rc, (uint32_t)(seq - rc->seq_head));
}

int
route_reply_out(struct route_worker *rw, struct conn *c, struct route_conn *rc, struct route_out *o)
{
    o->s = q_tail(rc);
    if (o->s == NULL) {
        o->b = conn_wbuf(c);
        return 0;
    }
    if (o->s->kind != ROUTE_SLOT_BYTES &&
        (o->s = route_slot_push(rw, rc, ROUTE_SLOT_BYTES, 0, 0)) == NULL) {
        return -ENOMEM;
    }
    o->b = &o->s->out.b;
    return 0;
}

/* ---- sending the head of the queue ---- */

/*
 * The hole at the front of r, in the head slot s: send its answer. The value is fetched while
 * the output has room for it, or once the client has read everything before it (then what is
 * held is under the limit: so a connection never holds more than the limit and one value);
 * from this shard at once, from another with a fetch message. Returns 1 (answered), 0 (waits:
 * for room, or for the fetch) or a buf error.
 */
static int
fill_hole(struct route_worker *rw, struct conn *c, struct route_conn *rc, struct route_slot *s,
          struct route_rb *r)
{
    const struct route_hole *h = &r->holes[r->hnext];
    struct buf *wb = conn_wbuf(c);
    const char *hdr = buf_rptr(&r->b);
    const char *miss = hdr + h->hdr_len;
    const char *key = miss + h->miss_len;
    struct route_msg *f = s->fetch;
    int rc_;
    if (f != NULL) {
        /* Its fetch is back: on a hit, its reply holds the header and the value, with room for
         * the "\r\n"; it becomes the write buffer when that is empty, else it is copied. */
        s->fetch = NULL;
        if (!f->hit) {
            rc_ = buf_append(wb, miss, h->miss_len);
        } else if ((rc_ = buf_append(&f->reply.b, "\r\n", 2)) == 0 &&
                   !conn_wbuf_take(c, &f->reply.b)) {
            rc_ = buf_append(wb, buf_rptr(&f->reply.b), buf_len(&f->reply.b));
        }
        route_msg_drop(rw, c, rc, f);
        return rc_ < 0 ? rc_ : 1;
    }
    /* Room for it, or nothing unsent before it and nothing counted that is only passing (a
     * request out at another worker, whose reply will call here again). */
    size_t need = (size_t)h->hdr_len + h->vlen + 2;
    if (buf_len(wb) > 0 ? conn_output_room(c) < need : rc->inflight > 0 && conn_output_full(c)) {
        return 0;
    }
    struct route_version want = {.cas = h->cas, .vlen = h->vlen};
    unsigned owner = route_shard_of(h->hash, rw->n);
    if (owner == rw->id) {
        size_t mark = buf_len(wb);
        rc_ = buf_append(wb, hdr, h->hdr_len);
        if (rc_ == 0) {
            rc_ = rw->ops->fetch(rw->ctx, key, h->klen, h->hash, &want, wb);
        }
        if (rc_ == 1) {
            rc_ = buf_append(wb, "\r\n", 2);
        } else if (rc_ == 0) {
            wb->wpos = wb->rpos + mark; /* it changed: its header goes, its miss reply is sent */
            rc_ = buf_append(wb, miss, h->miss_len);
        }
        return rc_ < 0 ? rc_ : 1;
    }
    /* The owner appends the value after the header, in room made here: no copy on the way
     * back when the write buffer is empty (the usual case: it had room for the value). */
    f = route_msg_new(rw, ROUTE_OP_FETCH, rc->seq_head, ROUTE_PART_FETCH);
    if (f == NULL || buf_append(&f->req, key, h->klen) < 0 || buf_reserve(&f->reply.b, need) < 0 ||
        buf_append(&f->reply.b, hdr, h->hdr_len) < 0) {
        route_msg_free(rw, f);
        return -ENOMEM;
    }
    f->hash = h->hash;
    f->want = want;
    f->allow = h->vlen;
    /* A peek of a known version: it may run after later requests (it may already: it leaves
     * only when its hole reaches the head, after requests read since). */
    f->hdr.any_order = true;
    rc_ = route_msg_send(rw, c, rc, f, owner);
    if (rc_ < 0) {
        return rc_;
    }
    s->fetch = f;
    s->fetch_out = true;
    s->waiting++;
    return 0;
}

int
route_emit_rb(struct route_worker *rw, struct conn *c, struct route_conn *rc, struct route_slot *s,
              struct route_rb *r, size_t to)
{
    struct buf *wb = conn_wbuf(c);
    while (r->base < to) {
        const struct route_hole *h = r->hnext < r->nholes ? &r->holes[r->hnext] : NULL;
        size_t end = h != NULL && h->at < to ? h->at : to;
        if (end > r->base) {
            size_t n = end - r->base;
            if (buf_append(wb, buf_rptr(&r->b), n) < 0) {
                return -ENOMEM;
            }
            buf_consume(&r->b, n);
            r->base += n;
            continue;
        }
        int rc_ = fill_hole(rw, c, rc, s, r);
        if (rc_ <= 0) {
            return rc_;
        }
        size_t skip = (size_t)h->hdr_len + h->miss_len + h->klen;
        buf_consume(&r->b, skip);
        r->base += skip;
        r->hnext++;
    }
    return 1;
}

/* Send as much of the head slot s as can go now. Returns 1 (all of it), 0 (it waits) or a
 * negative errno. */
static int
slot_emit(struct route_worker *rw, struct conn *c, struct route_conn *rc, struct route_slot *s)
{
    int rc_ = 1;
    switch (s->kind) {
    case ROUTE_SLOT_BYTES:
        rc_ = route_emit_rb(rw, c, rc, s, &s->out, route_rb_end(&s->out));
        route_charge(c, rc, &s->charged, buf_len(&s->out.b));
        return rc_;
    case ROUTE_SLOT_EXEC: {
        struct route_msg *m = s->parts[0];
        if (m == NULL) {
            /* It could not be sent. */
            return s->noreply || buf_puts(conn_wbuf(c), rw->ops->lost_reply) == 0 ? 1 : -ENOMEM;
        }
        rc_ = route_emit_rb(rw, c, rc, s, &m->reply, route_rb_end(&m->reply));
        route_charge(c, rc, &m->charged, route_msg_held(m));
        return rc_;
    }
    case ROUTE_SLOT_GATHER:
        while (s->ekey < s->nkeys) {
            const struct route_key_ref *k = &s->keys[s->ekey];
            struct route_msg *m = s->parts[k->part];
            if (m == NULL || k->idx >= m->nkeys) {
                s->ekey++;
                continue; /* its owner could not answer (logged there): a miss */
            }
            /* The keys after it that its part answered next are the rest of one range of that
             * part's reply: sent in one go (a pipe of one peer's requests is one range). A
             * range stopped at a hole goes on from where it stopped (route_emit_rb). */
            uint32_t last = s->ekey;
            while (last + 1 < s->nkeys && s->keys[last + 1].part == k->part &&
                   s->keys[last + 1].idx == s->keys[last].idx + 1 &&
                   s->keys[last + 1].idx < m->nkeys) {
                last++;
            }
            rc_ = route_emit_rb(rw, c, rc, s, &m->reply, m->koff[s->keys[last].idx]);
            route_charge(c, rc, &m->charged, route_msg_held(m));
            if (rc_ <= 0) {
                return rc_;
            }
            s->ekey = last + 1;
        }
        return 1;
    default:
        return rw->ops->emit(rw->ctx, c, rc, s);
    }
}

int
route_flush_head(struct route_worker *rw, struct conn *c, struct route_conn *rc)
{
    int64_t now = 0;
    while (rc->qlen > 0) {
        struct route_slot *s = route_q_at(rc, 0);
        if (s->waiting > 0) {
            return 0;
        }
        int rc_ = slot_emit(rw, c, rc, s);
        if (rc_ <= 0) {
            return rc_;
        }
        if (s->t0 != 0) {
            now = now != 0 ? now : route_now_ns(); /* one clock read for every slot sent */
            for (unsigned i = 0; i < rw->nlat; i++) {
                if (s->lat_n[i] > 0) {
                    metrics_hist_record_n(&rw->m_lat[i * METRICS_HIST_SLOTS],
                                          (uint64_t)(now - s->t0), s->lat_n[i]);
                }
            }
        }
        q_pop(rc);
        slot_free(rw, c, rc, s);
    }
    return 0;
}

void
route_on_reply(struct route_worker *rw, struct conn *c, struct route_conn *rc, struct route_msg *m)
{
    if (c == NULL) {
        /* The connection is gone (and what it counted with it). */
        if (rw->ops->abandon != NULL) {
            rw->ops->abandon(rw->ctx, m);
        } else {
            route_msg_free(rw, m);
        }
        return;
    }
    rc->inflight--;
    struct route_slot *s = slot_find(rc, m->seq);
    if (s == NULL) {
        log_error("a forwarded reply for no reply slot; dropped");
        route_msg_drop(rw, c, rc, m);
        return;
    }
    if (m->part == ROUTE_PART_FETCH) {
        s->fetch_out = false;
    } else {
        s->parts[m->part] = m;
    }
    s->waiting--;
    msg_back(c, rc, m);
    if (route_flush(rw, c, rc) < 0) {
        log_error("out of memory sending replies; the connection will be closed");
        rc->broken = true;
    }
}

/* ---- split and broadcast ---- */

uint32_t
route_split(struct route_worker *rw, const uint64_t *hash, uint32_t n, uint8_t *part,
            unsigned *shard_of_part, uint32_t *keys_of_part)
{
    uint32_t nparts = 0;
    for (uint32_t j = 0; j < n; j++) {
        unsigned sh = route_shard_of(hash[j], rw->n);
        if (rw->part_of[sh] == 0) {
            shard_of_part[nparts] = sh;
            rw->part_of[sh] = (uint16_t)++nparts;
        }
        part[j] = (uint8_t)(rw->part_of[sh] - 1);
        keys_of_part[part[j]]++;
    }
    for (uint32_t p = 0; p < nparts; p++) {
        rw->part_of[shard_of_part[p]] = 0;
    }
    return nparts;
}

int
route_broadcast(struct route_worker *rw, struct conn *c, struct route_conn *rc, uint8_t tag,
                bool noreply, uint8_t op, int64_t arg)
{
    uint64_t seq = route_seq_next(rc);
    struct route_slot *s = route_slot_push(rw, rc, ROUTE_SLOT_PRODUCT, rw->n, 0);
    if (s == NULL) {
        return -ENOMEM;
    }
    s->tag = tag;
    s->noreply = noreply;
    route_slot_time(rw, s);
    for (unsigned sh = 0; sh < rw->n; sh++) {
        struct route_msg *m = route_msg_new(rw, op, seq, sh);
        if (m == NULL) {
            return -ENOMEM;
        }
        m->arg = arg;
        int rc_ = route_send_part(rw, c, rc, s, m, sh);
        if (rc_ < 0) {
            return rc_;
        }
    }
    return 0;
}

/* ---- pipes ---- */

struct route_slot *
route_pipe_open(struct route_worker *rw, struct route_conn *rc, uint32_t cap)
{
    /* Room for a part per shard; the parts are added as the requests use them. */
    struct route_slot *s = route_slot_push(rw, rc, ROUTE_SLOT_GATHER, rw->n, cap);
    if (s != NULL) {
        s->nparts = 0;
        s->waiting = 0;
    }
    return s;
}

struct route_msg *
route_pipe_part_new(struct route_worker *rw, struct route_conn *rc, struct route_slot *s,
                    unsigned shard, uint8_t op, uint32_t cap)
{
    /* The pipe is the tail of the queue while it is open. */
    uint32_t p = s->nparts;
    struct route_msg *m = route_msg_new(rw, op, route_seq_next(rc) - 1, p);
    if (m != NULL && route_koff(m, cap) < 0) {
        route_msg_free(rw, m);
        return NULL;
    }
    if (m != NULL) {
        s->parts[p] = m;
        s->nparts++;
        rw->pipe_part[shard] = (uint16_t)(p + 1);
        rw->pipe_shard[p] = (uint16_t)shard;
    }
    return m;
}

int
route_pipe_close(struct route_worker *rw, struct conn *c, struct route_conn *rc,
                 struct route_slot *s)
{
    /* This worker's part ran already; the others are out until route_on_reply, which cannot
     * run before this returns. */
    conn_output_hold(c, (long)rc->untold);
    rc->untold = 0;
    int rc_ = 0;
    for (uint32_t p = 0; p < s->nparts; p++) {
        unsigned shard = rw->pipe_shard[p];
        rw->pipe_part[shard] = 0;
        if (shard == rw->id || rc_ < 0) {
            continue;
        }
        struct route_msg *m = s->parts[p];
        s->parts[p] = NULL;
        s->waiting++;
        rc_ = route_msg_send(rw, c, rc, m, shard);
    }
    return rc_;
}

/* ---- set-up ---- */

void
route_worker_init(struct route_worker *rw, unsigned id, unsigned n, const struct route_ops *ops,
                  void *ctx, metric_t *m_lat, unsigned nlat)
{
    *rw = (struct route_worker){
        .id = id, .n = n, .ops = ops, .ctx = ctx, .m_lat = m_lat, .nlat = nlat};
}

void
route_worker_teardown(struct route_worker *rw)
{
    while (rw->msg_cache != NULL) {
        struct route_msg *m = rw->msg_cache;
        rw->msg_cache = m->next_free;
        msg_destroy(m);
    }
    while (rw->slot_cache != NULL) {
        struct route_slot *s = rw->slot_cache;
        rw->slot_cache = s->next_free;
        slot_destroy(s);
    }
}

void
route_conn_init(struct route_conn *rc)
{
    rc->q = rc->q_inline;
    rc->qcap = ROUTE_QUEUE_INLINE;
}

void
route_conn_close(struct route_worker *rw, struct conn *c, struct route_conn *rc)
{
    while (rc->qlen > 0) {
        struct route_slot *s = route_q_at(rc, 0);
        q_pop(rc);
        for (uint32_t i = 0; rw->ops->abandon != NULL && i < s->nparts; i++) {
            if (s->parts[i] != NULL) {
                rw->ops->abandon(rw->ctx, s->parts[i]);
                s->parts[i] = NULL;
            }
        }
        slot_free(rw, NULL, rc, s);
    }
    if (rc->held > 0) {
        conn_output_hold(c, -(long)(rc->held - rc->untold)); /* untold: a pipe never closed */
        rc->held = 0;
        rc->untold = 0;
    }
}
