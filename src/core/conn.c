/*
 * conn: a worker's client connections. Contract in conn.h (runtime side) and
 * include/petrel/runtime.h (product side).
 *
 * Sockets are registered edge-triggered for input and output once, at adoption, so the steady
 * state needs no epoll_ctl calls: the connection remembers whether it may still have input
 * (readable) or output room (writable). Work is bounded per loop iteration: a connection gets at
 * most READ_ROUNDS reads and WRITE_BUDGET bytes sent per turn, and one that still has input, or
 * output the socket would take, waits on the pending list for the next turn, after every other
 * ready connection had its own.
 *
 * What a client can make the worker hold, and what bounds it:
 *   - read buffer: one read's worth, or the request being read (the product's request_limit),
 *     grown only within buffer-memory (rbuf_may_grow); a request that waits longer than
 *     MEMWAIT_MS for that memory is refused (the product answers its protocol's error);
 *   - replies: unsent bytes plus what the product holds (conn_output_hold) stop the product
 *     past --output-limit, or past buffer-memory for the connections holding the most;
 *   - time: a request that has begun must be complete within --request-timeout, and a
 *     connection idle for --idle-timeout is closed;
 *   - idle: no buffer at all (they come from and go back to the worker's pool).
 */
#include "conn.h"
#include "handshake.h"
#include "iobatch.h"

#include "petrel/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define READ_ROUNDS 4 /* reads per connection per turn: fairness bound */
/* Reply bytes sent per connection per turn, the same bound for writes: a client whose
 * pipelined gets of large values fill megabytes of output at a time would otherwise hold the
 * worker for milliseconds per turn, and every other connection waits out each of them. Large
 * enough that a value composed in a turn leaves in that turn, while its bytes are still in the
 * CPU's cache: at 256 KiB a 900 KB value left over several iterations, interleaved with other
 * connections' values, and the kernel's copy of it cost four times as much. */
#define WRITE_BUDGET (1024u * 1024)
/* Reply bytes composed and sent in one phase of an iteration by connections that hold much
 * output: past it, those wait for the next iteration, so what another client waits for does
 * not grow with the number of clients asking for large values. A single reply larger than this
 * still goes whole. */
#define TURN_BYTES (256u * 1024)
/* A connection that holds at most this much output (unsent, or held by the product) and
 * composed and sent at most this much in its last turn is served whatever the phase has spent:
 * a client asking for little must not queue behind those asking for large values. */
#define LIGHT_BYTES  (64u * 1024)
#define SWEEP_BUDGET 512 /* connections examined per tick by the timeout sweep */
#define MEMWAIT_WAKE 16  /* connections waiting for read-buffer memory retried per release */
#define MEMWAIT_MS   200 /* longest wait for read-buffer memory before the request is refused */
#define POOL_KEEP    256 /* first buffers a worker keeps for reuse (at read-buffer bytes each) */
#define BATCH_DEPTH  256 /* sends handed to the kernel per system call (iobatch) */

struct buf *
conn_rbuf(struct conn *c)
{
    return &c->io.rbuf;
}

struct buf *
conn_wbuf(struct conn *c)
{
    return &c->io.wbuf;
}

static void conn_account(struct worker *w, struct conn *c);

bool
conn_wbuf_take(struct conn *c, struct buf *b)
{
    struct buf *wb = &c->io.wbuf;
    if (buf_len(wb) > 0 || b->cap > wb->max) {
        return false;
    }
    buf_pool_give(&c->w->conns->pool, wb); /* empty: its allocation goes back */
    wb->data = b->data;
    wb->rpos = b->rpos;
    wb->wpos = b->wpos;
    wb->cap = b->cap;
    b->data = NULL;
    b->rpos = b->wpos = b->cap = 0;
    conn_account(c->w, c);
    return true;
}

void *
conn_state(struct conn *c)
{
    return c->state;
}

unsigned
conn_protocol(const struct conn *c)
{
    const struct runtime *rt = c->w->rt;
    return c->listener < rt->nlisten ? rt->listen_proto[c->listener] : 0;
}

unsigned
conn_worker(const struct conn *c)
{
    return c->w->id;
}

static size_t
buf_extra_of(const struct runtime *rt, size_t cap)
{
    return cap > rt->rbuf_init ? cap - rt->rbuf_init : 0;
}

/* What c holds beyond its first buffers, as last accounted. */
static size_t
conn_extra(const struct conn *c)
{
    return c->rbuf_extra + c->wbuf_extra + c->held;
}

/* What conn_output_full() compares with the worker's buffer budget. */
static size_t
budget_total(const struct conn *c)
{
    return c->w->conns->buf_extra - c->wbuf_extra + buf_extra_of(c->w->rt, c->io.wbuf.cap);
}

bool
conn_output_full(const struct conn *c)
{
    const struct runtime *rt = c->w->rt;
    size_t out = buf_len(&c->io.wbuf) + c->held;
    if (out >= rt->wbuf_limit) {
        return true;
    }
    if (out == 0 || (c->held == 0 && c->io.wbuf.cap <= rt->rbuf_init)) {
        return false; /* replies that fit the first buffer hold no memory beyond it */
    }
    /* Past the worker's share of buffer-memory, a connection whose output outgrew its first
     * buffer takes no more requests: a client that does not read holds at most one reply more
     * than it had, and one that reads goes on a reply at a time. Its own buffer counts as it is
     * now. */
    return budget_total(c) > rt->buf_budget;
}

size_t
conn_output_room(const struct conn *c)
{
    if (conn_output_full(c)) {
        return 0;
    }
    return c->w->rt->wbuf_limit - (buf_len(&c->io.wbuf) + c->held);
}

struct conn_room
conn_output_budget(const struct conn *c)
{
    /* Held bytes count in the budget's total as in the output, and once anything is held the
     * exemption of an output within its first buffer is over: more held than the budget has
     * left makes the output full, whatever the room. */
    size_t total = budget_total(c);
    size_t budget = c->w->rt->buf_budget;
    size_t room = conn_output_room(c);
    size_t past_budget = total <= budget ? budget - total + 1 : 1;
    return (struct conn_room){.room = room, .stop = room < past_budget ? room : past_budget};
}

/* ---- queues ---- */

static bool
queued(const struct conn *c, enum conn_queue q)
{
    return c->link[q].on;
}

static void
queue_add(struct conn_table *t, enum conn_queue q, struct conn *c)
{
    struct conn_link *l = &c->link[q];
    struct conn_fifo *f = &t->queue[q];
    if (l->on) {
        return;
    }
    l->on = true;
    l->next = NULL;
    l->prev = f->tail;
    if (f->tail != NULL) {
        f->tail->link[q].next = c;
    } else {
        f->head = c;
    }
    f->tail = c;
}

static void
queue_remove(struct conn_table *t, enum conn_queue q, struct conn *c)
{
    struct conn_link *l = &c->link[q];
    struct conn_fifo *f = &t->queue[q];
    if (!l->on) {
        return;
    }
    if (l->prev != NULL) {
        l->prev->link[q].next = l->next;
    } else {
        f->head = l->next;
    }
    if (l->next != NULL) {
        l->next->link[q].prev = l->prev;
    } else {
        f->tail = l->prev;
    }
    l->on = false;
}

static void
pending_add(struct conn_table *t, struct conn *c)
{
    queue_add(t, Q_PENDING, c);
}

bool
conn_any_pending(const struct worker *w)
{
    return w->conns->queue[Q_PENDING].head != NULL;
}

/* Waiting connections' buffers are counted apart: rbuf_may_grow() needs to know whether every
 * holder is waiting. */
static void
memwait_add(struct worker *w, struct conn *c)
{
    struct conn_table *t = w->conns;
    if (!queued(c, Q_MEMWAIT)) {
        queue_add(t, Q_MEMWAIT, c);
        t->memwait_extra += conn_extra(c);
        c->memwait_since = t->now_ms;
        metrics_incr(&w->m[RTM_INPUT_WAITS]);
    }
}

static void
memwait_remove(struct conn_table *t, struct conn *c)
{
    if (queued(c, Q_MEMWAIT)) {
        queue_remove(t, Q_MEMWAIT, c);
        t->memwait_extra -= conn_extra(c);
    }
}

/* ---- accounting ---- */

/*
 * Whether c's read buffer may grow to take n more bytes: yes if it need not grow, if the
 * worker's buffers stay within its share of buffer-memory, or if every other connection that
 * holds any is itself waiting for more. The last rule is what guarantees progress: one request
 * at a time always gets through, however large, and two half-grown requests cannot wait for each
 * other for ever. It lets the total pass the share by one request at most, since the one let
 * through is not waiting. Connections that hold memory and are not waiting (a client stalled
 * half-way through a large value) are what MEMWAIT_MS and --request-timeout are for.
 */
static bool
rbuf_may_grow(struct worker *w, struct conn *c, size_t n)
{
    const struct conn_table *t = w->conns;
    size_t mine = conn_extra(c);
    size_t want = buf_extra_of(w->rt, buf_reserve_cap(&c->io.rbuf, n)) + c->wbuf_extra + c->held;
    size_t others = t->buf_extra - mine;
    size_t others_waiting = t->memwait_extra - (queued(c, Q_MEMWAIT) ? mine : 0);
    return want <= mine || others == others_waiting || others + want <= w->rt->buf_budget;
}

/* When the worker's total fell, the first connections waiting for memory try again. */
static void
memwait_wake(struct conn_table *t)
{
    for (unsigned i = 0; i < MEMWAIT_WAKE && t->queue[Q_MEMWAIT].head != NULL; i++) {
        struct conn *x = t->queue[Q_MEMWAIT].head;
        memwait_remove(t, x);
        pending_add(t, x);
    }
}

/*
 * Bring the worker's figures up to date with c's buffers: RTM_CONN_BUFFER_BYTES and the total
 * beyond the buffers' initial size.
 */
static void
conn_account(struct worker *w, struct conn *c)
{
    struct conn_table *t = w->conns;
    size_t now = c->io.rbuf.cap + c->io.wbuf.cap + c->raw.cap;
    if (now != c->buf_bytes) {
        metrics_add(&w->m[RTM_CONN_BUFFER_BYTES], (uint64_t)now - (uint64_t)c->buf_bytes);
        c->buf_bytes = now;
    }
    size_t rx = buf_extra_of(w->rt, c->io.rbuf.cap), wx = buf_extra_of(w->rt, c->io.wbuf.cap);
    if (rx == c->rbuf_extra && wx == c->wbuf_extra) {
        return;
    }
    bool fell = rx + wx < c->rbuf_extra + c->wbuf_extra;
    size_t before = c->rbuf_extra + c->wbuf_extra;
    t->buf_extra = t->buf_extra - before + rx + wx;
    if (queued(c, Q_MEMWAIT)) {
        t->memwait_extra = t->memwait_extra - before + rx + wx;
    }
    c->rbuf_extra = rx;
    c->wbuf_extra = wx;
    if (fell) {
        memwait_wake(t);
    }
}

void
conn_output_hold(struct conn *c, long delta)
{
    struct conn_table *t = c->w->conns;
    c->held += (size_t)delta;
    t->buf_extra += (size_t)delta;
    if (queued(c, Q_MEMWAIT)) {
        t->memwait_extra += (size_t)delta;
    }
    if (delta < 0) {
        memwait_wake(t);
    }
}

int
conn_rbuf_want(struct conn *c, size_t n)
{
    struct worker *w = c->w;
    c->rbuf_need = 0;
    if (c->refused) {
        c->refused = false; /* reported once per wait */
        return -ENOBUFS;
    }
    if (buf_len(&c->io.rbuf) + n > w->rt->rbuf_max) {
        return -ENOBUFS;
    }
    if (rbuf_may_grow(w, c, n)) {
        (void)buf_reserve(&c->io.rbuf, n); /* on failure the reads go on with what there is */
        conn_account(w, c);
    } else {
        /* The reads wait for all of it rather than creep up to it; and the wait starts now,
         * not at the next read: a client may send nothing more until it hears back, and it
         * must hear back within MEMWAIT_MS (memwait_expire). */
        c->rbuf_need = n;
        memwait_add(w, c);
    }
    return 0;
}

/* ---- the table ---- */

int
conn_table_init(struct worker *w)
{
    w->conns = calloc(1, sizeof(*w->conns));
    if (w->conns == NULL) {
        return -ENOMEM;
    }
    return buf_pool_init(&w->conns->pool, w->rt->rbuf_init, POOL_KEEP);
}

void
conn_table_fini(struct worker *w)
{
    struct conn_table *t = w->conns;
    if (t == NULL) {
        return;
    }
    buf_pool_fini(&t->pool);
    iobatch_free(t->batch);
    free(t->slot);
    free(t->free);
    free(t->gen);
    free(t);
    w->conns = NULL;
}

static int
table_reserve(struct conn_table *t)
{
    if (t->nfree > 0 || t->cap > t->used) {
        return 0;
    }
    unsigned cap = t->cap ? t->cap * 2 : 64;
    struct conn **slot = realloc(t->slot, cap * sizeof(*slot));
    if (slot == NULL) {
        return -ENOMEM;
    }
    t->slot = slot;
    unsigned *fr = realloc(t->free, cap * sizeof(*fr));
    if (fr == NULL) {
        return -ENOMEM;
    }
    t->free = fr;
    uint32_t *gen = realloc(t->gen, cap * sizeof(*gen));
    if (gen == NULL) {
        return -ENOMEM;
    }
    t->gen = gen;
    for (unsigned i = cap; i > t->cap; i--) {
        slot[i - 1] = NULL;
        gen[i - 1] = 0;
        fr[t->nfree++] = i - 1;
    }
    t->cap = cap;
    return 0;
}

void
conn_adopt(struct worker *w, void *item)
{
    struct runtime *rt = w->rt;
    struct conn_table *t = w->conns;
    struct conn *c = NULL;
    if (table_reserve(t) < 0 || (c = calloc(1, sizeof(*c) + rt->p->conn_state_size)) == NULL) {
        log_error("out of memory adopting a connection");
        goto fail;
    }
    if (inbox_is_handoff(item)) {
        struct handoff *h = item;
        transport_tls_init(&c->io.t, h->s);
        c->listener = h->listener;
        free(h);
        metrics_incr(&w->m[RTM_TLS_CONNECTIONS]);
    } else {
        transport_plain_init(&c->io.t, inbox_fd(item));
        c->listener = inbox_listener(item);
    }
    int fd = c->io.t.fd;
    c->w = w;
    c->slot = t->free[--t->nfree];
    c->last_active = t->now;
    c->spent = SIZE_MAX; /* heavy until a turn shows otherwise */
    buf_init(&c->io.rbuf, rt->rbuf_init, rt->rbuf_max);
    buf_init(&c->io.wbuf, rt->rbuf_init, rt->wbuf_max);
    buf_init(&c->raw, rt->rbuf_init, rt->rbuf_init);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        log_error("epoll_ctl: %s", strerror(errno));
        t->free[t->nfree++] = c->slot;
        if (transport_tls_session(&c->io.t) != NULL) {
            metrics_add(&w->m[RTM_TLS_CONNECTIONS], (uint64_t)-1);
        }
        c->io.t.ops->close(&c->io.t);
        free(c);
        metrics_incr(&w->closed); /* the acceptor counted it as handed over */
        return;
    }
    t->slot[c->slot] = c;
    t->used++;
    metrics_incr(&w->m[RTM_CURR_CONNECTIONS]);
    log_verbose("connection %d adopted", fd);
    return;
fail:
    free(c);
    handoff_discard(item);
    metrics_incr(&w->closed); /* the acceptor counted it as handed over */
}

void
conn_close(struct worker *w, struct conn *c)
{
    struct conn_table *t = w->conns;
    if (w->rt->p->on_close != NULL) {
        w->rt->p->on_close(w->pctx, c);
    }
    if (c->held != 0) {
        log_error("connection %d: the product still holds %zu bytes at close", c->io.t.fd, c->held);
        conn_output_hold(c, -(long)c->held);
    }
    queue_remove(t, Q_PENDING, c);
    queue_remove(t, Q_FLUSH, c);
    memwait_remove(t, c);
    if (transport_tls_session(&c->io.t) != NULL) {
        metrics_add(&w->m[RTM_TLS_CONNECTIONS], (uint64_t)-1);
    }
    connio_close(&c->io);
    buf_free(&c->raw);
    conn_account(w, c);
    t->slot[c->slot] = NULL;
    t->gen[c->slot]++; /* replies still in flight for this connection will not find it */
    t->free[t->nfree++] = c->slot;
    t->used--;
    free(c);
    metrics_add(&w->m[RTM_CURR_CONNECTIONS], (uint64_t)-1);
    metrics_incr(&w->m[RTM_CONNECTIONS_CLOSED]);
    metrics_incr(&w->closed);
}

/* ---- one turn ---- */

/* Whether c's turn waits once the phase's budget is spent: it holds much output, or its last
 * turn moved much (a client draining large replies as fast as it reads them holds little
 * between turns), or it has had no turn yet (what it asks for is unknown: twenty clients that
 * connect at once, each to ask for a large value, must not all go first). */
static bool
conn_heavy(const struct conn *c)
{
    return c->spent > LIGHT_BYTES || buf_len(&c->io.wbuf) + c->held > LIGHT_BYTES;
}

/* n bytes of c's output left (or the error that stopped them); an emptied write buffer goes
 * back to the pool. A product waiting for its client to read (RT_CONTINUE) may go on once
 * something left. counted: the phase's budget counted them already (a batched send). */
static int
conn_sent(struct worker *w, struct conn *c, ssize_t n, bool counted)
{
    if (n < 0) {
        log_verbose("connection %d: write: %s", c->io.t.fd, strerror((int)-n));
        return (int)n;
    }
    if (n > 0) {
        metrics_add(&w->m[RTM_BYTES_WRITTEN], (uint64_t)n);
        if (!counted) {
            c->spent += (size_t)n;
            w->conns->turn_bytes += (size_t)n;
        }
        c->await_send = false;
    }
    if (buf_len(&c->io.wbuf) == 0) {
        c->await_send = false;
        buf_pool_give(&w->conns->pool, &c->io.wbuf);
    }
    return 0;
}

/* Send queued output. */
static int
conn_flush(struct worker *w, struct conn *c)
{
    return conn_sent(w, c, connio_flush(&c->io, WRITE_BUDGET), false);
}

/*
 * Whether the product may be called without new input: it stopped early (RT_CONTINUE) and
 * something changed since. Even a connection over its limits is called while nothing waits in
 * its write buffer: then only the product can move the output it holds (its next reply in
 * order into the write buffer), and it starts no new request while the output is full.
 */
static bool
conn_resumable(const struct conn *c)
{
    return c->resume && !c->await_send && (buf_len(&c->io.wbuf) == 0 || !conn_output_full(c));
}

/* Read what the transport has, up to READ_ROUNDS reads. */
static int
conn_read(struct worker *w, struct conn *c)
{
    struct buf *rb = &c->io.rbuf;
    if (c->read_err < 0) {
        log_verbose("connection %d: read: %s", c->io.t.fd, strerror(-c->read_err));
        return c->read_err;
    }
    /* A read made by the batch was this turn's first. */
    for (int round = c->fresh ? 1 : 0; round < READ_ROUNDS && c->io.readable; round++) {
        /* Room for one read, or for the rest of a request whose size the product gave (unless
         * that no longer fits under the cap: a stale need must never stop the reads). */
        size_t chunk = w->rt->rbuf_init;
        size_t room = c->rbuf_need > chunk ? c->rbuf_need : chunk;
        if (buf_len(rb) + room > w->rt->rbuf_max) {
            room = chunk;
        }
        if (rb->data == NULL && buf_pool_take(&w->conns->pool, rb) < 0) {
            return -ENOMEM;
        }
        bool fits = buf_avail(rb) >= room; /* the common case: nothing to decide */
        if (!fits && !c->granted && !rbuf_may_grow(w, c, room)) {
            /* The worker's buffers hold its share of buffer-memory: wait until another
             * connection's shrinks (conn_account), for MEMWAIT_MS at most (conn_sweep). A
             * connection that hung up will not send the rest: close it, and free what it
             * holds. */
            if (c->io.hup) {
                return -ECONNRESET;
            }
            memwait_add(w, c);
            return 0;
        }
        if (!fits) {
            if (buf_reserve(rb, room) < 0 && buf_avail(rb) == 0) {
                /* Read buffer at its cap: the product must consume before we read more. */
                return 0;
            }
            c->rbuf_need = 0;
            c->granted = false;
            conn_account(w, c);
        }
        /* What the read batch took for the transport goes through it now; it keeps what it
         * leaves, so the buffer goes back to the pool. */
        bool fed = buf_len(&c->raw) > 0;
        if (fed) {
            c->io.t.ops->feed(&c->io.t, (const unsigned char *)buf_rptr(&c->raw), buf_len(&c->raw),
                              c->raw_full);
        }
        ssize_t n = connio_read(&c->io);
        if (fed) {
            buf_consume(&c->raw, buf_len(&c->raw));
            buf_pool_give(&w->conns->pool, &c->raw);
        }
        if (n < 0) {
            struct tls_session *tls = transport_tls_session(&c->io.t);
            if (tls != NULL && n == -EPROTO) {
                metrics_incr(&w->m[RTM_TLS_ERRORS]);
                log_verbose("connection %d: tls: %s", c->io.t.fd, tls_session_error(tls));
            } else {
                log_verbose("connection %d: read: %s", c->io.t.fd, strerror((int)-n));
            }
            return (int)n;
        }
        metrics_add(&w->m[RTM_BYTES_READ], (uint64_t)n);
    }
    return 0;
}

/* Give c's write buffer a buffer of the pool before replies are composed into it. */
static int
wbuf_ready(struct conn_table *t, struct conn *c)
{
    return c->io.wbuf.data == NULL ? buf_pool_take(&t->pool, &c->io.wbuf) : 0;
}

/*
 * Hand c's input to the product and act on its answer. Also tracks the request deadline: an
 * unfinished request in the buffer starts the clock, and consuming a request restarts it for
 * the next one. Returns a negative errno when c must be closed now.
 */
static int
conn_deliver(struct worker *w, struct conn *c)
{
    struct runtime *rt = w->rt;
    struct conn_table *t = w->conns;
    struct buf *rb = &c->io.rbuf;
    c->resume = false;
    c->last_active = t->now;
    if (wbuf_ready(t, c) < 0) {
        return -ENOMEM;
    }
    size_t before = buf_len(rb);
    enum rt_result r = rt->p->on_data(w->pctx, c);
    c->refused = false; /* a refusal not asked for is not carried over to a later request */
    size_t left = buf_len(rb);
    switch (r) {
    case RT_NEED_MORE:
        if (left == rt->rbuf_max) {
            log_warn("connection %d: request larger than %zu bytes, closing", c->io.t.fd,
                     rt->rbuf_max);
            return -EMSGSIZE;
        }
        break;
    case RT_CONTINUE:
        /* Called again when the client has read some of its replies, not at once: the product
         * stopped because they are not leaving. */
        c->resume = true;
        c->await_send = true;
        break;
    case RT_PAUSED:
        c->paused = true;
        break;
    case RT_CLOSE:
        c->closing = true;
        break;
    case RT_ABORT:
        return -ECONNABORTED;
    }
    if (left == 0) {
        c->partial_since = 0;
        buf_pool_give(&t->pool, rb);
    } else if (left < before || c->partial_since == 0) {
        c->partial_since = t->now;
    }
    if (buf_len(&c->io.wbuf) == 0) {
        buf_pool_give(&t->pool, &c->io.wbuf);
    }
    return 0;
}

/* Make c's output ready for the phase's batch of sends, and say whether it is: a plain socket's
 * is as it stands; a transport of its own seals it here, when it fits what it seals at once (one
 * TLS record: more goes through writev, record after record, in the turn). */
static bool
stage_for_batch(struct conn *c)
{
    const struct transport_ops *ops = c->io.t.ops;
    if (ops == &transport_plain) {
        return true;
    }
    return ops->seal != NULL &&
           ops->seal(&c->io.t, buf_rptr(&c->io.wbuf), buf_len(&c->io.wbuf)) > 0;
}

static int conn_turn_end(struct worker *w, struct conn *c);

/*
 * Give the connection one turn: read, let the product answer, send the answers. Reading pauses
 * while the output is over its limit; a product that stopped for that reason (resume) is called
 * again once the client has read enough. Returns a negative errno when the connection must be
 * closed now.
 */
static int
conn_serve(struct worker *w, struct conn *c)
{
    bool stopping = atomic_load_explicit(&w->stop, memory_order_relaxed);
    int rc = 0;
    c->spent = 0;
    if (!c->closing && !stopping && !c->paused) {
        size_t before = buf_len(&c->io.rbuf);
        if (!conn_output_full(c)) {
            rc = conn_read(w, c);
        }
        bool fresh = c->fresh;
        c->fresh = false;
        if (rc == 0 && (fresh || buf_len(&c->io.rbuf) > before || conn_resumable(c))) {
            size_t out = buf_len(&c->io.wbuf) + c->held;
            rc = conn_deliver(w, c);
            if (buf_len(&c->io.wbuf) + c->held > out) {
                c->spent += buf_len(&c->io.wbuf) + c->held - out;
            }
        }
        if (rc < 0) {
            return rc;
        }
        /* A read that found nothing must not leave an idle connection holding a buffer. */
        buf_pool_give(&w->conns->pool, &c->io.rbuf);
        buf_pool_give(&w->conns->pool, &c->raw); /* a batch that failed before its read */
    }
    if (w->conns->batch != NULL && c->io.writable && buf_len(&c->io.wbuf) > 0 &&
        stage_for_batch(c)) {
        /* Sent with the phase's other output in one system call; the turn ends there. What
         * it will send counts in the phase's budget now, as a send() would have, and what it
         * holds in buffer-memory, so that the connections served after it see both. */
        size_t len = buf_len(&c->io.wbuf);
        c->spent += len < WRITE_BUDGET ? len : WRITE_BUDGET;
        w->conns->turn_bytes += c->spent;
        conn_account(w, c);
        queue_add(w->conns, Q_FLUSH, c);
        return 0;
    }
    w->conns->turn_bytes += c->spent;
    rc = conn_flush(w, c);
    return rc < 0 ? rc : conn_turn_end(w, c);
}

/* The end of c's turn, once its output went: close it, or queue its next turn. Returns a
 * negative errno when c must be closed now. */
static int
conn_turn_end(struct worker *w, struct conn *c)
{
    bool stopping = atomic_load_explicit(&w->stop, memory_order_relaxed);
    conn_account(w, c);
    /* Close when everything asked for was answered and sent. */
    if ((c->closing || (c->io.eof && !c->resume)) && buf_len(&c->io.wbuf) == 0 &&
        c->inflight == 0) {
        return -ECONNRESET;
    }
    /* Output left behind by the write budget (the socket will not say again that it has
     * room), input left behind by the read budget, or a product that may go on: next turn. */
    if ((c->io.writable && buf_len(&c->io.wbuf) > 0) ||
        (!c->closing && !stopping && !c->paused && !queued(c, Q_MEMWAIT) &&
         ((c->io.readable && !conn_output_full(c)) || conn_resumable(c)))) {
        pending_add(w->conns, c);
    }
    return 0;
}

/* A send of the batch is done: as connio_flush would have ended, then the turn's end. */
static void
batch_sent(void *arg, void *tag, long res)
{
    struct worker *w = arg;
    struct conn *c = tag;
    queue_remove(w->conns, Q_FLUSH, c);
    ssize_t n = res;
    if (res > 0 && c->io.t.ops != &transport_plain) {
        /* The transport's record: its plaintext leaves the write buffer once all of it has
         * (a short send leaves the rest to the next turn's writev). */
        n = (ssize_t)c->io.t.ops->sent(&c->io.t, (size_t)res);
        buf_consume(&c->io.wbuf, (size_t)n);
    } else if (res > 0) {
        buf_consume(&c->io.wbuf, (size_t)res);
    } else if (res == -EAGAIN || res == -EINTR || res == 0) {
        /* No room: EPOLLOUT says when there is. (A short send keeps writable, as a send() loop
         * would try again: the next turn's send finds out.) */
        c->io.writable = res == -EINTR;
        n = 0;
    }
    if (conn_sent(w, c, n, true) < 0 || conn_turn_end(w, c) < 0) {
        conn_close(w, c);
    }
}

/*
 * One io_uring_enter for the operations queued in the worker's batch, each handed to done
 * (batch_sent or batch_read); metric counts them. When the ring fails, no operation was made:
 * the batch is given up for good and every read and send is a system call of its own, as
 * with --io-uring=off (the callers fall back when t->batch is NULL). Inlined: at depth 1 it
 * runs twice per request, and a call with the metric as a variable cost 35 instructions more.
 */
static inline __attribute__((always_inline)) void
batch_run(struct worker *w, iobatch_done_fn done, enum rt_metric metric)
{
    struct conn_table *t = w->conns;
    metrics_incr(&w->m[RTM_URING_CALLS]);
    metrics_add(&w->m[metric], iobatch_queued(t->batch));
    int rc = iobatch_run(t->batch, done, w);
    if (rc < 0) {
        log_warn("io_uring: %s; one system call per read and send from now on", strerror(-rc));
        iobatch_free(t->batch);
        t->batch = NULL;
    }
}

void
conn_flush_batch(struct worker *w)
{
    struct conn_table *t = w->conns;
    while (t->queue[Q_FLUSH].head != NULL) {
        if (t->batch == NULL) {
            struct conn *c = t->queue[Q_FLUSH].head;
            queue_remove(t, Q_FLUSH, c);
            if (conn_flush(w, c) < 0 || conn_turn_end(w, c) < 0) {
                conn_close(w, c);
            }
            continue;
        }
        for (struct conn *c = t->queue[Q_FLUSH].head; c != NULL; c = c->link[Q_FLUSH].next) {
            const void *p = buf_rptr(&c->io.wbuf);
            size_t len = buf_len(&c->io.wbuf);
            if (c->io.t.ops != &transport_plain) {
                len = c->io.t.ops->sealed(&c->io.t, &p); /* its record (stage_for_batch) */
            }
            if (!iobatch_send(t->batch, c->io.t.fd, p, len < WRITE_BUDGET ? len : WRITE_BUDGET,
                              c)) {
                break; /* the batch is full: the rest go in the next call */
            }
        }
        if (iobatch_queued(t->batch) == 0) {
            /* The ring gave no entry (it cannot while this thread reaps every run): never
             * loop on it, send the plain way. */
            iobatch_free(t->batch);
            t->batch = NULL;
            continue;
        }
        batch_run(w, batch_sent, RTM_URING_SENDS);
    }
}

int
conn_batch_start(struct worker *w)
{
    unsigned mode = w->rt->io_uring;
    if (mode == RT_URING_OFF) {
        return 0;
    }
    int rc = iobatch_new(BATCH_DEPTH, &w->conns->batch);
    if (rc < 0 && mode == RT_URING_ON) {
        log_error("--io-uring=on: io_uring cannot be used here: %s", strerror(-rc));
        return rc;
    }
    if (rc < 0 && w->id == 0) {
        log_info("io_uring not available (%s): replies are sent one system call each",
                 strerror(-rc));
    }
    return 0;
}

/* The batch's read for a transport of its own: its bytes wait in c->raw for conn_read to feed
 * them (the transport takes them in at the connection's turn). */
static void
batch_read_raw(struct worker *w, struct conn *c, long res)
{
    if (res > 0) {
        size_t want = buf_avail(&c->raw);
        buf_commit(&c->raw, (size_t)res);
        c->raw_full = (size_t)res == want;
    } else if (res == -EAGAIN) {
        /* Nothing came; the transport may still hold what it decrypted before. */
        c->io.readable = c->io.t.ops->pending(&c->io.t) > 0;
    } else if (res < 0 && res != -EINTR) {
        c->read_err = (int)res;
    }
    /* The end of the stream (0) is left to the transport's own read, at the turn. */
    buf_pool_give(&w->conns->pool, &c->raw);
}

/* A read of the batch is done: as connio_read would have ended. The connection is not closed
 * here (the loop still holds its event): an error waits for its turn. */
static void
batch_read(void *arg, void *tag, long res)
{
    struct worker *w = arg;
    struct conn *c = tag;
    struct connio *io = &c->io;
    if (io->t.ops != &transport_plain) {
        batch_read_raw(w, c, res);
        return;
    }
    if (res > 0) {
        size_t want = buf_avail(&io->rbuf);
        buf_commit(&io->rbuf, (size_t)res);
        metrics_add(&w->m[RTM_BYTES_READ], (uint64_t)res);
        c->fresh = true;
        /* A short read emptied the socket (a plain transport keeps nothing); the end of a
         * stream whose hang-up was reported is read at its turn. */
        if ((size_t)res < want && !io->hup) {
            io->readable = false;
        }
    } else if (res == 0) {
        io->eof = true;
        io->readable = false;
    } else if (res == -EAGAIN) {
        io->readable = false;
    } else if (res != -EINTR) {
        c->read_err = (int)res;
    }
}

void
conn_note_event(struct worker *w, struct conn *c, uint32_t events)
{
    struct conn_table *t = w->conns;
    connio_events(&c->io, events);
    /* The first read of conn_read, in the simple case only: a plain transport, a connection
     * that reads now, and a buffer of the pool with room for one read. Anything else (a
     * request larger than the buffer, waiting for memory) is left to conn_read. */
    if (t->batch == NULL || !c->io.readable || c->closing || c->paused || c->rbuf_need > 0 ||
        queued(c, Q_MEMWAIT) || conn_output_full(c) ||
        atomic_load_explicit(&w->stop, memory_order_relaxed)) {
        return;
    }
    const struct transport_ops *ops = c->io.t.ops;
    if (ops != &transport_plain) {
        /* A transport of its own (TLS): the socket's bytes go to a buffer of the pool, fed to
         * it at the turn, when it holds none of its own, and when the turn will have a read
         * buffer with room for one read (a new one from the pool, or room in the one it has):
         * then the turn reaches the feed and nothing waits in this buffer. */
        const struct buf *rb = &c->io.rbuf;
        if (ops->feed == NULL || buf_len(&c->raw) > 0 || !ops->may_feed(&c->io.t) ||
            (rb->data != NULL && buf_avail(rb) < w->rt->rbuf_init) ||
            (c->raw.data == NULL && buf_pool_take(&t->pool, &c->raw) < 0)) {
            return;
        }
        if (!iobatch_recv(t->batch, c->io.t.fd, buf_wptr(&c->raw), buf_avail(&c->raw), c)) {
            buf_pool_give(&t->pool, &c->raw); /* the batch is full: its turn reads */
        }
        return;
    }
    struct buf *rb = &c->io.rbuf;
    if (rb->data == NULL && buf_pool_take(&t->pool, rb) < 0) {
        return;
    }
    if (buf_avail(rb) < w->rt->rbuf_init) {
        return;
    }
    (void)iobatch_recv(t->batch, c->io.t.fd, buf_wptr(rb), buf_avail(rb), c);
}

void
conn_read_batch(struct worker *w)
{
    struct conn_table *t = w->conns;
    if (t->batch == NULL || iobatch_queued(t->batch) == 0) {
        return;
    }
    batch_run(w, batch_read, RTM_URING_READS);
}

void
conn_handle_event(struct worker *w, struct conn *c)
{
    if (queued(c, Q_MEMWAIT) && c->io.hup) {
        /* It hung up while its request waited for buffer memory: the rest of that request is
         * not coming, and the memory it holds is wanted. */
        conn_close(w, c);
        return;
    }
    if (w->conns->turn_bytes >= TURN_BYTES && conn_heavy(c)) {
        /* Its turn comes in the next iteration's pending phase: the events noted are not
         * reported again (edge-triggered), and what the batch read waits in its buffer. */
        pending_add(w->conns, c);
        return;
    }
    if (conn_serve(w, c) < 0) {
        conn_close(w, c);
    }
}

void
conn_events_begin(struct worker *w)
{
    w->conns->turn_bytes = 0;
}

void
conn_serve_pending(struct worker *w)
{
    struct conn_table *t = w->conns;
    t->turn_bytes = 0;
    /* Only the connections pending at the start get a turn: the bound for this iteration.
     * Once the phase has spent its budget, heavy connections keep their place for the next
     * iteration and only light ones are served. Serving c changes no other connection's place
     * (a connection queued meanwhile goes to the tail, after last), so next stays valid. */
    struct conn *last = t->queue[Q_PENDING].tail;
    struct conn *c = t->queue[Q_PENDING].head;
    for (bool more = last != NULL; more;) {
        struct conn *next = c->link[Q_PENDING].next;
        more = c != last;
        if (t->turn_bytes < TURN_BYTES || !conn_heavy(c)) {
            queue_remove(t, Q_PENDING, c);
            if (conn_serve(w, c) < 0) {
                conn_close(w, c);
            }
        }
        c = next;
    }
}

void
conn_reply_arriving(struct worker *w, struct conn *c)
{
    (void)wbuf_ready(w->conns, c); /* without: allocated when written */
}

void
conn_reply_arrived(struct worker *w, struct conn *c)
{
    /* Send what the reply completed, and let the product go on: a paused one, one that stopped
     * for room (a reply frees the room its request was counted for), or one with input. */
    c->inflight--;
    c->await_send = false;
    c->paused = false;
    c->resume = true;
    pending_add(w->conns, c);
}

/* ---- timeouts ---- */

/* Requests that waited MEMWAIT_MS for read-buffer memory: the product refuses them (a known
 * size) or the read goes ahead (an unknown one, bounded by the read buffer's cap). */
static void
memwait_expire(struct worker *w)
{
    struct conn_table *t = w->conns;
    struct conn *c;
    while ((c = t->queue[Q_MEMWAIT].head) != NULL && t->now_ms - c->memwait_since >= MEMWAIT_MS) {
        memwait_remove(t, c);
        if (c->rbuf_need > 0) {
            c->refused = true;
            c->rbuf_need = 0;
            c->resume = true;
            metrics_incr(&w->m[RTM_BUFFER_REFUSALS]);
            log_verbose("connection %d: no buffer memory for its request within %d ms, refused",
                        c->io.t.fd, MEMWAIT_MS);
        } else {
            c->granted = true;
        }
        pending_add(t, c);
    }
}

/* Whether c's unfinished request is overdue. Only while the server is waiting for the client:
 * not while c waits for memory, for other workers, or for its client to read. */
static bool
request_overdue(const struct conn *c, int64_t now, unsigned timeout)
{
    return timeout != 0 && c->partial_since != 0 && now - c->partial_since >= (int64_t)timeout &&
           buf_len(&c->io.rbuf) > 0 && !c->paused && !c->resume && !queued(c, Q_MEMWAIT) &&
           !conn_output_full(c);
}

void
conn_sweep(struct worker *w)
{
    struct conn_table *t = w->conns;
    memwait_expire(w);
    unsigned idle = w->idle_timeout, req = w->request_timeout;
    if ((idle == 0 && req == 0) || t->cap == 0) {
        return;
    }
    for (unsigned i = 0; i < SWEEP_BUDGET && i < t->cap; i++) {
        t->sweep_pos = (t->sweep_pos + 1) % t->cap;
        struct conn *c = t->slot[t->sweep_pos];
        if (c == NULL) {
            continue;
        }
        if (request_overdue(c, t->now, req)) {
            log_verbose("connection %d: request not complete after %u s, closing", c->io.t.fd, req);
            metrics_incr(&w->m[RTM_REQUEST_TIMEOUTS]);
            conn_close(w, c);
        } else if (idle != 0 && t->now - c->last_active >= (int64_t)idle &&
                   buf_len(&c->io.wbuf) == 0) {
            log_verbose("connection %d: idle for %u s, closing", c->io.t.fd, idle);
            metrics_incr(&w->m[RTM_IDLE_KICKS]);
            conn_close(w, c);
        }
    }
}
