/*
 * route: the protocol-neutral half of a sharded product. It knows connections, shards and
 * messages, never a protocol or a storage engine; a product (memcached, RESP) decides what each
 * request does and hands route callbacks (struct route_ops) for the rest.
 *
 * What it owns:
 *   - key -> shard (route_shard_of), and the split of a multi-key request into one part per
 *     owning shard (route_split), gathered back in key order (ROUTE_SLOT_GATHER);
 *   - messages: a per-worker pool of them (route_msg_new / route_msg_free), forwarding them
 *     (route_msg_send, route_send_part) and taking them back (route_on_reply);
 *   - the reply-slot FIFO of each connection (struct route_conn): while nothing waits, replies
 *     go straight into the write buffer; once a request waits for another worker it takes a
 *     slot, every later reply queues behind it (route_reply_out), and slots leave from the
 *     head in request order as they complete (route_flush). At most ROUTE_SLOTS_MAX slots per
 *     connection; the product stops reading past it (route_blocked);
 *   - the output a connection holds outside its write buffer, counted with conn_output_hold()
 *     (route_charge), and the reply room a forwarded request may bring back (route_allowance);
 *   - holes: a value left out of a reply for lack of room, fetched from its shard when its turn
 *     comes if the item is still that version (struct route_hole, ops.fetch);
 *   - requests sent to every worker and gathered (route_broadcast);
 *   - pipes: the single-key requests of one parsed batch, from the first that another worker
 *     owns, in one slot with one message per shard (route_pipe_open);
 *   - completion latency: a request answered on the spot counts in its batch's interval
 *     (route_lat_settle), one that waits carries its parse time in its slot.
 *
 * Threads: everything runs on the worker that owns the connection or the message. A message
 * belongs to its origin until it is sent, to its owner until rt_msg_return(), then to its origin.
 */
#ifndef PETREL_ROUTE_H
#define PETREL_ROUTE_H

#include "petrel/buf.h"
#include "petrel/metrics.h"
#include "petrel/runtime.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define ROUTE_SLOTS_MAX    1024        /* unfinished replies per connection before it pauses */
#define ROUTE_REPLY_MAX    (64u << 20) /* the largest reply one message may carry back */
#define ROUTE_WORKERS_MAX  256         /* the runtime's --threads maximum */
#define ROUTE_QUEUE_INLINE 4           /* reply slots a connection queues without an allocation */
#define ROUTE_LAT_MAX      8           /* latency classes a product may have */
#define ROUTE_PART_FETCH   UINT32_MAX  /* route_msg.part of a hole's fetch */
#define ROUTE_OP_FETCH     0           /* route_msg.op of a hole's fetch; a product's ops are > 0 */

/**
 * The shard of n that owns a key with this hash: a fixed-point multiply of the top 32 bits
 * (storage engines use the low bits for buckets and bits 32..47 for tags). Any thread.
 */
static inline unsigned
route_shard_of(uint64_t hash, unsigned n)
{
    return (unsigned)(((hash >> 32) * (uint64_t)n) >> 32);
}

/** The version of an item whose value a hole left out. */
struct route_version {
    uint64_t cas;  /* the item's CAS when the request ran */
    uint32_t vlen; /* its value's length */
};

/*
 * A value left out of a reply for lack of room. In its buffer, where the value's answer
 * belongs: its header (sent, then the value and "\r\n", if the item is still the same version
 * when its turn comes), the reply sent instead if it is not, and the key (never sent).
 */
struct route_hole {
    size_t at; /* logical offset of the header in its buffer (struct route_rb) */
    uint32_t hdr_len, miss_len, klen;
    uint32_t vlen;
    uint64_t cas;
    uint64_t hash; /* the key's */
};

/*
 * Reply bytes with holes. Offsets are logical, counted from the first byte ever written, so
 * they hold as the front is consumed.
 */
struct route_rb {
    struct buf b;
    size_t base;              /* logical offset of buf_rptr(&b) */
    struct route_hole *holes; /* in offset order */
    uint32_t nholes;          /* holes recorded */
    uint32_t hcap;            /* room in holes */
    uint32_t hnext;           /* the first hole not sent yet */
};

/** Logical end of r. */
static inline size_t
route_rb_end(const struct route_rb *r)
{
    return r->base + buf_len(&r->b);
}

/** Empty r, keeping its allocations (a buffer that grew for a large value shrinks). */
static inline void
route_rb_reset(struct route_rb *r)
{
    buf_consume(&r->b, buf_len(&r->b));
    buf_shrink(&r->b);
    r->base = 0;
    r->nholes = r->hnext = 0;
}

/**
 * Record a hole whose header (hdr_len bytes) and miss reply (miss_len bytes) were just appended
 * to r at logical offset at, and append its key. Returns 0 or -ENOMEM.
 */
int route_rb_hole(struct route_rb *r, size_t at, uint32_t hdr_len, uint32_t miss_len,
                  const struct route_version *v, const char *key, size_t klen, uint64_t hash);

/*
 * A request travelling to the worker that owns its key(s) and back. A product embeds it at the
 * start of its own message (route_ops.msg_size). Allocated and freed by the origin worker;
 * written by the owner between the two ring hops.
 */
struct route_msg {
    struct rt_msg hdr;         /* first: the runtime sees only this */
    uint64_t seq;              /* the origin connection's reply slot */
    uint32_t part;             /* which part of that slot, or ROUTE_PART_FETCH */
    uint8_t op;                /* ROUTE_OP_FETCH, or the product's */
    bool hit;                  /* ROUTE_OP_FETCH: the value came back (after its header) */
    bool more;                 /* a walk (one shard after the other): this shard has more */
    bool failed;               /* a walk: the step ran out of memory */
    uint32_t allow;            /* bytes of reply it may bring back copied */
    int64_t arg;               /* the product's, e.g. a broadcast's argument */
    uint64_t hash;             /* of its key, computed by the origin */
    struct route_version want; /* ROUTE_OP_FETCH: the version whose value is wanted */
    size_t charged;            /* what the origin counts for it with conn_output_hold() */
    struct buf req;            /* request text (ROUTE_OP_FETCH: the key) */
    struct route_rb reply;     /* reply bytes written by the owner */
    uint32_t nkeys;            /* gather and pipe parts: keys (requests) answered */
    uint32_t kcap;             /* room in koff */
    uint32_t *koff; /* gather and pipe parts: logical end in reply of key i's answer (route_koff());
                       a pipe part on its way out: request i's reply room (its allowance) */
    struct route_msg *next_free; /* in the origin worker's cache of unused messages */
};

/* A reply slot: one per request that could not be answered at once (and the local replies that
 * queue behind it). */
enum route_slot_kind {
    ROUTE_SLOT_BYTES,   /* ready bytes in out */
    ROUTE_SLOT_EXEC,    /* the reply of one forwarded request */
    ROUTE_SLOT_GATHER,  /* a multi-key request, or a pipe: parts gathered in key order */
    ROUTE_SLOT_PRODUCT, /* anything else, sent by route_ops.emit (tag says what) */
};

struct route_key_ref {
    uint32_t part; /* which part answers this key */
    uint32_t idx;  /* the key's index in that part */
};

struct route_slot {
    uint8_t kind;
    uint8_t tag; /* ROUTE_SLOT_PRODUCT: the product's kind */
    bool noreply;
    bool fetch_out;                /* fetch is out at its owner */
    uint16_t lat_n[ROUTE_LAT_MAX]; /* with t0: requests waiting here, by latency class */
    int64_t t0;       /* ns: when the requests waiting here were parsed; 0: not timed here */
    uint32_t waiting; /* parts (or a fetch) not back yet */
    uint32_t nparts;
    struct route_msg **parts; /* returned (or local) parts, NULL while out: &one, or pv */
    struct route_msg *one;
    struct route_msg **pv; /* room for parts when there are several, kept with the slot */
    uint32_t pcap;
    uint32_t nkeys, kcap;
    struct route_key_ref *keys; /* ROUTE_SLOT_GATHER: kept with the slot */
    uint32_t ekey;              /* the next key (or part, or shard) to send: the product's own
                                   slots may use it as they like */
    struct route_rb out;        /* ROUTE_SLOT_BYTES */
    size_t charged;             /* ROUTE_SLOT_BYTES: the bytes of out counted */
    struct route_msg *fetch;    /* at the head: the fetch its next hole waits for */
    struct route_slot *next_free;
};

/* Per connection: embedded in the product's connection state, zeroed, then route_conn_init(). */
struct route_conn {
    struct route_slot **q; /* ring of reply slots: q_inline, or an allocation while many */
    uint32_t qhead, qlen, qcap;
    uint64_t seq_head; /* sequence number of q[qhead] */
    uint32_t inflight; /* messages out at other workers */
    bool broken;       /* no memory for a reply that had to be sent: close at the next call */
    size_t held;       /* bytes counted with conn_output_hold() */
    size_t untold;     /* of them, what an open pipe holds, told at its close */
    struct route_slot *q_inline[ROUTE_QUEUE_INLINE];
};

/**
 * Set what one holder (a slot's bytes, a message) counts for c to now bytes, telling the runtime
 * the difference. rc->held is the sum over the holders, released whole at close. Inline: it
 * runs several times per forwarded request.
 */
static inline void
route_charge(struct conn *c, struct route_conn *rc, size_t *charged, size_t now)
{
    if (now == *charged) {
        return;
    }
    conn_output_hold(c, (long)now - (long)*charged);
    rc->held = rc->held - *charged + now;
    *charged = now;
}

struct route_worker;

/* What a product hands route. Every callback runs on the worker thread; ctx is the product's
 * worker context (route_worker_init). */
struct route_ops {
    /** Bytes of the product's message, which begins with struct route_msg. */
    size_t msg_size;
    /** A message taken from the pool: clear the product's fields. Optional. */
    void (*msg_init)(struct route_msg *m);
    /** Run m on this worker's shard (a part that stays here), writing its reply into m. */
    void (*execute)(void *ctx, struct route_msg *m);
    /**
     * The value a hole left out, for a key this worker owns: append the v->vlen value bytes if
     * the key still holds that version (a peek). Returns 1 (appended), 0 (changed or gone:
     * nothing appended) or a buf error.
     */
    int (*fetch)(void *ctx, const char *key, size_t klen, uint64_t hash,
                 const struct route_version *v, struct buf *out);
    /**
     * Send as much of the head slot s (ROUTE_SLOT_PRODUCT) as can go now, into conn_wbuf(c).
     * Returns 1 (all of it), 0 (it waits) or a negative errno (the connection closes).
     */
    int (*emit)(void *ctx, struct conn *c, struct route_conn *rc, struct route_slot *s);
    /**
     * A part of a request whose connection closed before it was answered (back from its
     * shard, or kept in a slot): the product may finish what it started (e.g. undo it, with
     * rt_forward_detached()) and must free m. Optional: without it, m is freed.
     */
    void (*abandon)(void *ctx, struct route_msg *m);
    /** The reply of a forwarded request that could not be sent (no memory). */
    const char *lost_reply;
};

/* Per worker: embedded in the product's worker context. */
struct route_worker {
    unsigned id, n; /* this worker, and how many there are */
    const struct route_ops *ops;
    void *ctx;       /* the product's worker context, handed to ops */
    metric_t *m_lat; /* the product's latency histograms, class i at i * METRICS_HIST_SLOTS */
    unsigned nlat;   /* latency classes (at most ROUTE_LAT_MAX) */
    int64_t lat_t0;  /* ns: when the batch being executed was parsed */
    uint32_t lat_pending[ROUTE_LAT_MAX]; /* requests of the batch answered on the spot */
    unsigned lat_cls;                    /* the class of the request being executed ... */
    bool lat_timed;                      /* ... and whether a reply slot took its parse time */
    /* Messages and slots are born and die on their origin worker; reusing them (buffers
     * included) takes the allocator off the forwarding path. */
    struct route_msg *msg_cache;
    struct route_slot *slot_cache;
    uint32_t msg_cached, slot_cached;
    uint16_t part_of[ROUTE_WORKERS_MAX]; /* scratch while keys are split: shard -> part + 1 */
    /* The open pipe's parts (one pipe is open at a time: route_pipe_close empties these). */
    uint16_t pipe_part[ROUTE_WORKERS_MAX];  /* shard -> part + 1, 0: none yet */
    uint16_t pipe_shard[ROUTE_WORKERS_MAX]; /* part -> shard */
};

/**
 * Set up rw for worker id of n, with the product's ops and context, and its latency histograms
 * (nlat classes from m_lat; 0 and NULL: none). Worker thread, in the product's worker_setup.
 */
void route_worker_init(struct route_worker *rw, unsigned id, unsigned n,
                       const struct route_ops *ops, void *ctx, metric_t *m_lat, unsigned nlat);

/** Free rw's caches. Worker thread, in worker_teardown. */
void route_worker_teardown(struct route_worker *rw);

/** Prepare a connection's zeroed state. Worker thread of the connection. */
void route_conn_init(struct route_conn *rc);

/**
 * The connection is closing: free its slots (parts still out are freed when they come back
 * with c == NULL) and release everything counted for it. Worker thread, in on_close.
 */
void route_conn_close(struct route_worker *rw, struct conn *c, struct route_conn *rc);

/* ---- messages ---- */

/** A message from rw's pool (its buffers empty), or a new one; NULL without memory. */
struct route_msg *route_msg_new(struct route_worker *rw, uint8_t op, uint64_t seq, uint32_t part);

/** Back into rw's pool, or freed (rw NULL: at shutdown). NULL is ignored. */
void route_msg_free(struct route_worker *rw, struct route_msg *m);

/**
 * Send m to worker dest on behalf of c, counting its request and its reply room (m->allow)
 * until it is back. On failure m is freed and nothing stays counted. Returns 0 or -ENOMEM.
 */
int route_msg_send(struct route_worker *rw, struct conn *c, struct route_conn *rc,
                   struct route_msg *m, unsigned dest);

/** Run part m of slot s on worker dest: send it there, or execute it here (ops.execute). */
int route_send_part(struct route_worker *rw, struct conn *c, struct route_conn *rc,
                    struct route_slot *s, struct route_msg *m, unsigned dest);

/** Release what c counts for m, then free it. */
void route_msg_drop(struct route_worker *rw, struct conn *c, struct route_conn *rc,
                    struct route_msg *m);

/** What the origin holds for a message that is back: its request and what is left of its reply. */
static inline size_t
route_msg_held(const struct route_msg *m)
{
    return buf_len(&m->req) + buf_len(&m->reply.b);
}

/** m's room for the reply offsets of up to n keys (kept with m). Returns 0 or -ENOMEM. */
int route_koff(struct route_msg *m, uint32_t n);

#define ROUTE_FORWARD_REPLY_MAX (64u << 10) /* most value bytes a forwarded request brings back */
#define ROUTE_FORWARD_SHARE     200         /* a forwarded get's allowance: this part of the room */

/**
 * The reply room a forwarded request that may return a value gets: 1/ROUTE_FORWARD_SHARE of
 * the output room (room), within min and ROUTE_FORWARD_REPLY_MAX. Of the default 1 MiB limit that
 * is 5 KiB, so a value of the usual sizes (up to 4 KiB) comes back with its request, while a
 * pipeline of hundreds of forwarded gets still fits before the connection waits for their
 * replies; a larger value comes back as a hole.
 */
static inline uint32_t
route_allowance_of(size_t room, uint32_t min)
{
    room /= ROUTE_FORWARD_SHARE;
    if (room > ROUTE_FORWARD_REPLY_MAX) {
        return ROUTE_FORWARD_REPLY_MAX;
    }
    return room < min ? min : (uint32_t)room;
}

/** route_allowance_of() c's output room now. */
static inline uint32_t
route_allowance(const struct conn *c, uint32_t min)
{
    return route_allowance_of(conn_output_room(c), min);
}

/**
 * On the origin: a message is back, for c whose route state is rc (both NULL: the connection
 * closed meanwhile, and m is freed).
 * Takes it into its slot, then sends what can go; without memory for that, rc->broken is set
 * and the product closes the connection at its next call.
 */
void route_on_reply(struct route_worker *rw, struct conn *c, struct route_conn *rc,
                    struct route_msg *m);

/* ---- the reply queue ---- */

/** The sequence number of the next slot pushed. */
static inline uint64_t
route_seq_next(const struct route_conn *rc)
{
    return rc->seq_head + rc->qlen;
}

/** The slot at position i from the head. */
static inline struct route_slot *
route_q_at(const struct route_conn *rc, uint32_t i)
{
    return rc->q[(rc->qhead + i) % rc->qcap];
}

/**
 * A slot at the tail of rc's queue, waiting for nparts parts, with room for nkeys keys. NULL
 * without memory.
 */
struct route_slot *route_slot_push(struct route_worker *rw, struct route_conn *rc, uint8_t kind,
                                   uint32_t nparts, uint32_t nkeys);

/** The request being executed waits in s: its latency is recorded when s completes. */
static inline void
route_slot_time(struct route_worker *rw, struct route_slot *s)
{
    s->t0 = rw->lat_t0;
    s->lat_n[rw->lat_cls]++;
    rw->lat_timed = true;
}

/** Where a local reply goes: the write buffer (s NULL) while no reply waits, else the ready
 * slot at the tail of the queue. */
struct route_out {
    struct buf *b;
    struct route_slot *s;
};

/** Find where a local reply goes (struct route_out). Returns 0 or -ENOMEM. */
int route_reply_out(struct route_worker *rw, struct conn *c, struct route_conn *rc,
                    struct route_out *o);

/** Count what a local reply added to a held slot. */
static inline void
route_out_done(struct conn *c, struct route_conn *rc, const struct route_out *o)
{
    if (o->s != NULL) {
        route_charge(c, rc, &o->s->charged, buf_len(&o->s->out.b));
    }
}

/**
 * Send r's bytes up to logical offset to from the head slot s, answering its holes on the way.
 * Returns 1 (all sent), 0 (waits at a hole) or a negative errno.
 */
int route_emit_rb(struct route_worker *rw, struct conn *c, struct route_conn *rc,
                  struct route_slot *s, struct route_rb *r, size_t to);

/**
 * Send every slot at the head of the queue that can go, in order, recording the latency of
 * those that were timed. Returns 0 or a negative errno.
 */
int route_flush_head(struct route_worker *rw, struct conn *c, struct route_conn *rc);
static inline int
route_flush(struct route_worker *rw, struct conn *c, struct route_conn *rc)
{
    /* Inline: called for every batch, and the queue is empty nearly always. */
    return rc->qlen == 0 ? 0 : route_flush_head(rw, c, rc);
}

/**
 * Whether the next request (or key, or window) must wait for room: the output is full, or a
 * reply waits and the room left is ROUTE_HOLD_SLACK or less (what waits behind it must stay
 * under the limit, so that the head can always go on once the client has read).
 */
#define ROUTE_HOLD_SLACK 2048
static inline bool
route_blocked(const struct conn *c, const struct route_conn *rc)
{
    /* One call either way (the room is 0 when the output is full): it runs per request. */
    return rc->qlen > 0 ? conn_output_room(c) <= ROUTE_HOLD_SLACK : conn_output_full(c);
}

/**
 * The product's on_data stopped with complete requests left (or a close waiting for earlier
 * replies) because the output has no room for them: how it is to be called again. Room comes
 * back as the client reads, or as replies come back (an allowance is swapped for what it
 * brought, a part is sent): RT_CONTINUE waits for either. With nothing to send, a reply is all
 * that can help (RT_PAUSED: at most ROUTE_SLOTS_MAX slots are out, and nothing more is read
 * meanwhile).
 */
static inline enum rt_result
route_wait_result(struct conn *c, const struct route_conn *rc)
{
    if (buf_len(conn_wbuf(c)) == 0 && rc->inflight > 0) {
        return RT_PAUSED;
    }
    return RT_CONTINUE;
}

/**
 * The product's on_data consumed every complete request: how it is to be called again. The head
 * of the queue may wait for room (as route_wait_result); else, with requests out and no input
 * left, ask to be called when a reply is back (RT_PAUSED: nothing to read is held up), since a
 * reply may bring a hole that must then wait for the client to read, and on_reply cannot ask to
 * be called again.
 */
static inline enum rt_result
route_end_result(struct conn *c, const struct route_conn *rc)
{
    if (rc->qlen > 0 && route_q_at(rc, 0)->waiting == 0) {
        return route_wait_result(c, rc);
    }
    if (rc->inflight > 0 && buf_len(conn_rbuf(c)) == 0) {
        return RT_PAUSED;
    }
    return RT_NEED_MORE;
}

/* ---- split, gather, broadcast ---- */

/**
 * Group n keys (by hash) by owning shard: part[j] is key j's part, shard_of_part[p] the shard
 * of part p, keys_of_part[p] (zeroed by the caller) its number of keys. Returns the number of
 * parts. n is at most ROUTE_WORKERS_MAX.
 */
uint32_t route_split(struct route_worker *rw, const uint64_t *hash, uint32_t n, uint8_t *part,
                     unsigned *shard_of_part, uint32_t *keys_of_part);

/**
 * A request for every shard: a ROUTE_SLOT_PRODUCT slot tagged tag, timed, and one message of
 * op (with arg) for each worker, part i on worker i. The product's emit answers once every
 * part is back. Returns 0 or a negative errno.
 */
int route_broadcast(struct route_worker *rw, struct conn *c, struct route_conn *rc, uint8_t tag,
                    bool noreply, uint8_t op, int64_t arg);

/* ---- pipes ---- */

/*
 * A pipe carries the single-key requests of one parsed batch of a connection, from the first
 * one another worker owns, in one ROUTE_SLOT_GATHER slot with a part per shard it uses (in the
 * order of first use; each request is a key of the slot, in request order). Another shard's part is
 * one message with its requests (in the form the product chooses), sent when the pipe closes;
 * this worker's requests run at once into its own part. Replies leave in request order as a
 * gather's keys do. So a pipeline of forwarded requests costs one message, one slot and one ring
 * hop per peer and batch, not per request. While a pipe is open it is the tail of the queue: every
 * request of the connection goes into it, or closes it first (route_pipe_close), so that nothing
 * overtakes a request waiting in an unsent part.
 */

/** A pipe at the tail of rc's queue, for up to cap requests. NULL without memory. */
struct route_slot *route_pipe_open(struct route_worker *rw, struct route_conn *rc, uint32_t cap);

/** route_pipe_part() for a shard the pipe has no part for yet. */
struct route_msg *route_pipe_part_new(struct route_worker *rw, struct route_conn *rc,
                                      struct route_slot *s, unsigned shard, uint8_t op,
                                      uint32_t cap);

/**
 * The part of pipe s (the tail of rc's queue, cap as opened) for shard: its message of op,
 * taken from the pool on first use (m->part is its index in s). NULL without memory. Inline:
 * every request of a pipe asks.
 */
static inline struct route_msg *
route_pipe_part(struct route_worker *rw, struct route_conn *rc, struct route_slot *s,
                unsigned shard, uint8_t op, uint32_t cap)
{
    uint16_t p = rw->pipe_part[shard];
    return p != 0 ? s->parts[p - 1] : route_pipe_part_new(rw, rc, s, shard, op, cap);
}

/**
 * The request just added to part m is the pipe's next: m->koff[m->nkeys] holds its reply's end
 * (this worker's part, which ran it) or its allowance (another's, whose m->allow includes it).
 * Counts what m holds in rc->held at once, and for c (conn_output_hold) when the pipe closes:
 * until then the product must take c's output room from rc->held (as conn_room_left does), not
 * from the runtime.
 */
static inline void
route_pipe_add(struct route_conn *rc, struct route_slot *s, struct route_msg *m)
{
    s->keys[s->nkeys++] = (struct route_key_ref){.part = m->part, .idx = m->nkeys++};
    size_t now = route_msg_held(m) + m->allow;
    rc->held += now - m->charged; /* a part only grows while its pipe is open */
    rc->untold += now - m->charged;
    m->charged = now;
}

/**
 * Send pipe s's parts to their shards, after counting what they hold for c; this worker's part
 * is complete already. Call it for every pipe opened, before anything else of c's (the next one
 * starts from the state it leaves). On failure (-ENOMEM) the parts not sent are freed with the
 * slot, which never completes: the product closes the connection.
 */
int route_pipe_close(struct route_worker *rw, struct conn *c, struct route_conn *rc,
                     struct route_slot *s);

/* ---- latency ---- */

/** Now, in ns of CLOCK_MONOTONIC. */
static inline int64_t
route_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * INT64_C(1000000000) + ts.tv_nsec;
}

/** A batch of requests was parsed: they are timed from now. */
static inline void
route_lat_begin(struct route_worker *rw)
{
    rw->lat_t0 = route_now_ns();
}

/** The next request executed is of latency class cls. */
static inline void
route_lat_request(struct route_worker *rw, unsigned cls)
{
    rw->lat_cls = cls;
    rw->lat_timed = false;
}

/** The request was answered (or is on its way): count it in the batch unless a slot took it. */
static inline void
route_lat_answered(struct route_worker *rw)
{
    if (!rw->lat_timed) {
        rw->lat_pending[rw->lat_cls]++;
    }
}

/** Record the batch's requests answered on the spot: one clock read for all of them. */
void route_lat_settle(struct route_worker *rw);

#endif /* PETREL_ROUTE_H */
