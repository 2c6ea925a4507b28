/*
 * worker: one epoll loop per worker thread, owning its connections.
 *
 * Sockets are registered edge-triggered for input and output once, at adoption, so the steady
 * state needs no epoll_ctl calls: the connection remembers whether it may still have input
 * (readable) or output room (writable). Work is bounded per loop iteration: a connection gets at
 * most READ_ROUNDS reads per turn, and one that still has input waits on the pending list for the
 * next turn, after every other ready connection had its own.
 */
#include "core.h"

#include "petrel/log.h"
#include "petrel/sock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK    16384 /* bytes asked of each read() */
#define READ_ROUNDS   4     /* reads per connection per turn: fairness bound */
#define ADOPT_BUDGET  256   /* new connections taken per iteration */
#define EVENT_BATCH   256   /* epoll events per iteration */
#define TICK_MS       100   /* product tick and idle sweep period */
#define SWEEP_BUDGET  512   /* connections examined per tick by the idle sweep */
#define DRAIN_SECONDS 2     /* at shutdown, how long unsent replies may take */
#define PEER_BUDGET   1024  /* messages taken from each peer's ring per iteration */
#define PEER_RING     1024  /* slots of each ring of the forwarding mesh */
#define MEMWAIT_WAKE  16    /* connections waiting for read-buffer memory retried per release */

/* The worker's queues of connections: FIFOs linked through the connections, both ways. */
enum conn_queue {
    Q_PENDING, /* unfinished input or a product to resume: served next iteration */
    Q_MEMWAIT, /* the next read waits for buffer memory (see conn_account) */
    Q_COUNT
};

struct conn_link {
    struct conn *prev, *next;
    bool on; /* linked on the queue */
};

struct conn_fifo {
    struct conn *head, *tail;
};

struct conn {
    int fd;
    unsigned slot;
    struct worker *w;
    struct buf rbuf;
    struct buf wbuf;
    bool readable;     /* input may be waiting in the socket */
    bool writable;     /* the socket may take output */
    bool eof;          /* the peer shut down its side */
    bool hup;          /* epoll reported a hang-up or error (eof may not have been read yet) */
    bool closing;      /* close once the output is sent */
    bool resume;       /* the product stopped early for backpressure: call it again */
    bool paused;       /* the product waits for replies before it parses more (RT_PAUSED) */
    unsigned inflight; /* forwarded requests whose replies have not come back */
    size_t buf_bytes;  /* buffer capacity last counted in RTM_CONN_BUFFER_BYTES */
    size_t rbuf_extra; /* read buffer beyond its initial size, last counted in the table */
    size_t wbuf_extra; /* the same for the write buffer */
    size_t rbuf_need;  /* room the product asked for and did not get (conn_rbuf_want) */
    int64_t last_active;
    struct conn_link link[Q_COUNT];
    _Alignas(16) unsigned char state[]; /* the product's per-connection state */
};

/* Worker-private table of connections: slots are reused through a free list. */
struct conn_table {
    struct conn **slot;
    unsigned cap;
    unsigned used;
    unsigned *free;
    unsigned nfree;
    uint32_t *gen; /* per slot: bumped when its connection closes (late replies check it) */
    unsigned sweep_pos;
    struct conn_fifo queue[Q_COUNT];
    /* Buffers beyond their initial size, read and write: what buffer-memory bounds. */
    size_t buf_extra;
    size_t memwait_extra; /* the part of buf_extra held by connections on Q_MEMWAIT */
    int64_t now;          /* coarse clock for idle timeouts, seconds */
};

static char waker_tag; /* epoll data for the waker's eventfd */

/* The worker running on this thread, for rt_msg_return(). */
static _Thread_local struct worker *self_worker;

struct buf *
conn_rbuf(struct conn *c)
{
    return &c->rbuf;
}

struct buf *
conn_wbuf(struct conn *c)
{
    return &c->wbuf;
}

void *
conn_state(struct conn *c)
{
    return c->state;
}

static size_t
buf_extra_of(const struct runtime *rt, size_t cap)
{
    return cap > rt->rbuf_init ? cap - rt->rbuf_init : 0;
}

bool
conn_output_full(const struct conn *c)
{
    const struct runtime *rt = c->w->rt;
    size_t len = buf_len(&c->wbuf);
    if (len >= rt->wbuf_limit) {
        return true;
    }
    if (len == 0 || c->wbuf.cap <= rt->rbuf_init) {
        return false; /* replies that fit the first buffer hold no memory beyond it */
    }
    /* Past the worker's share of buffer-memory, a connection whose unsent replies outgrew its
     * first buffer takes no more requests: a client that does not read holds at most one reply
     * more than it had, and one that reads goes on a reply at a time. Its own buffer counts as
     * it is now. */
    size_t total = c->w->conns->buf_extra - c->wbuf_extra + buf_extra_of(rt, c->wbuf.cap);
    return total > rt->buf_budget;
}

unsigned
conn_worker(const struct conn *c)
{
    return c->w->id;
}

int
conn_forward(struct conn *c, unsigned dest, struct rt_msg *m)
{
    struct worker *w = c->w;
    m->conn_slot = c->slot;
    m->conn_gen = w->conns->gen[c->slot];
    m->origin = (uint16_t)w->id;
    m->dest = (uint16_t)dest;
    m->is_reply = false;
    int rc = ring_outbox_push(&w->peer_out[dest], m);
    if (rc == 0) {
        w->peer_dirty[dest] = true;
        c->inflight++;
        metrics_incr(&w->m[RTM_MESSAGES_SENT]);
    }
    return rc;
}

int
rt_msg_return(struct rt_msg *m)
{
    struct worker *w = self_worker;
    m->is_reply = true;
    int rc = ring_outbox_push(&w->peer_out[m->origin], m);
    if (rc == 0) {
        w->peer_dirty[m->origin] = true;
        metrics_incr(&w->m[RTM_MESSAGES_SENT]);
    }
    return rc;
}

metric_t *
rt_metrics(unsigned table)
{
    return self_worker->pm[table];
}

bool
rt_klog_sample(void)
{
    struct worker *w = self_worker;
    if (w->klog_every == 0 || --w->klog_left > 0) {
        return false;
    }
    w->klog_left = w->klog_every;
    return true;
}

/*
 * Milliseconds for the loop's own schedule (the 100 ms tick, the drain deadline), read twice per
 * loop turn: the coarse clock is a plain read of the kernel's tick-updated time, and its
 * resolution (a few ms) is plenty for that. Request latency uses the precise clock elsewhere.
 */
static int64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
worker_init(struct worker *w, struct runtime *rt, unsigned id)
{
    *w = (struct worker){.id = id, .rt = rt, .epfd = -1};
    w->waker.efd = -1;
    int rc = ring_create(&w->inbox, 4096);
    if (rc < 0) {
        return rc;
    }
    rc = waker_init(&w->waker);
    if (rc < 0) {
        return rc;
    }
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd < 0) {
        return -errno;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &waker_tag};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->waker.efd, &ev) < 0) {
        return -errno;
    }
    w->conns = calloc(1, sizeof(*w->conns));
    w->peer_in = calloc(rt->nworkers, sizeof(*w->peer_in));
    w->peer_out = calloc(rt->nworkers, sizeof(*w->peer_out));
    w->peer_dirty = calloc(rt->nworkers, sizeof(*w->peer_dirty));
    w->pm = calloc(rt->p->nmetrics + 1, sizeof(*w->pm));
    if (w->conns == NULL || w->peer_in == NULL || w->peer_out == NULL || w->peer_dirty == NULL ||
        w->pm == NULL) {
        return -ENOMEM;
    }
    return 0;
}

int
workers_connect(struct runtime *rt)
{
    for (unsigned i = 0; i < rt->nworkers; i++) {
        for (unsigned j = 0; j < rt->nworkers; j++) {
            if (i == j) {
                continue;
            }
            struct ring **r = &rt->workers[j].peer_in[i];
            int rc = ring_create(r, PEER_RING);
            if (rc < 0) {
                return rc;
            }
            ring_outbox_init(&rt->workers[i].peer_out[j], *r);
        }
    }
    return 0;
}

void
workers_free_mesh(struct runtime *rt)
{
    void (*msg_free)(struct rt_msg *) = rt->p->msg_free;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        struct worker *w = &rt->workers[i];
        for (unsigned j = 0; j < rt->nworkers && w->peer_out != NULL; j++) {
            struct ring_outbox *o = &w->peer_out[j];
            while (ring_outbox_backlog(o) > 0) {
                void *m = o->over[o->over_head];
                o->over_head = (o->over_head + 1) & (o->over_cap - 1);
                o->over_len--;
                if (msg_free != NULL) {
                    msg_free(m);
                }
            }
            ring_outbox_fini(o);
        }
        for (unsigned j = 0; j < rt->nworkers && w->peer_in != NULL; j++) {
            if (w->peer_in[j] == NULL) {
                continue;
            }
            /* Staged but unpublished items are lost with the producer; publish them first. */
            ring_publish(w->peer_in[j]);
            void *m;
            while ((m = ring_pop(w->peer_in[j])) != NULL) {
                if (msg_free != NULL) {
                    msg_free(m);
                }
            }
            ring_destroy(&w->peer_in[j]);
        }
    }
}

void
worker_fini(struct worker *w)
{
    /* Descriptors still in the inbox were never adopted: close them. */
    void *item;
    if (w->inbox != NULL) {
        while ((item = ring_pop(w->inbox)) != NULL) {
            close((int)(intptr_t)item - 1);
        }
        ring_destroy(&w->inbox);
    }
    if (w->conns != NULL) {
        free(w->conns->slot);
        free(w->conns->free);
        free(w->conns->gen);
        free(w->conns);
        w->conns = NULL;
    }
    free(w->peer_in);
    free(w->peer_out);
    free(w->peer_dirty);
    free(w->pm);
    w->pm = NULL;
    w->peer_in = NULL;
    w->peer_out = NULL;
    w->peer_dirty = NULL;
    waker_fini(&w->waker);
    if (w->epfd >= 0) {
        close(w->epfd);
        w->epfd = -1;
    }
}

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

/* Waiting connections' buffers are counted apart: rbuf_may_grow() needs to know whether every
 * holder is waiting. */
static void
memwait_add(struct conn_table *t, struct conn *c)
{
    if (!queued(c, Q_MEMWAIT)) {
        queue_add(t, Q_MEMWAIT, c);
        t->memwait_extra += c->rbuf_extra + c->wbuf_extra;
    }
}

static void
memwait_remove(struct conn_table *t, struct conn *c)
{
    if (queued(c, Q_MEMWAIT)) {
        queue_remove(t, Q_MEMWAIT, c);
        t->memwait_extra -= c->rbuf_extra + c->wbuf_extra;
    }
}

/*
 * Whether c's read buffer may grow to take n more bytes: yes if it need not grow, if the
 * worker's buffers stay within its share of buffer-memory, or if every other connection that
 * holds any is itself waiting for more. The last rule is what guarantees progress: one request
 * at a time always gets through, however large, and two half-grown requests cannot wait for each
 * other for ever. It lets the total pass the share by one request at most, since the one let
 * through is not waiting.
 */
static bool
rbuf_may_grow(struct worker *w, struct conn *c, size_t n)
{
    const struct conn_table *t = w->conns;
    size_t mine = c->rbuf_extra + c->wbuf_extra;
    size_t want = buf_extra_of(w->rt, buf_reserve_cap(&c->rbuf, n)) + c->wbuf_extra;
    size_t others = t->buf_extra - mine;
    size_t others_waiting = t->memwait_extra - (queued(c, Q_MEMWAIT) ? mine : 0);
    return want <= mine || others == others_waiting || others + want <= w->rt->buf_budget;
}

/*
 * Bring the worker's figures up to date with c's buffers: RTM_CONN_BUFFER_BYTES and the total
 * beyond the buffers' initial size. When that falls, the first connections waiting try again.
 */
static void
conn_account(struct worker *w, struct conn *c)
{
    struct conn_table *t = w->conns;
    size_t now = c->rbuf.cap + c->wbuf.cap;
    if (now != c->buf_bytes) {
        metrics_add(&w->m[RTM_CONN_BUFFER_BYTES], (uint64_t)now - (uint64_t)c->buf_bytes);
        c->buf_bytes = now;
    }
    size_t rx = buf_extra_of(w->rt, c->rbuf.cap), wx = buf_extra_of(w->rt, c->wbuf.cap);
    if (rx == c->rbuf_extra && wx == c->wbuf_extra) {
        return;
    }
    bool fell = rx + wx < c->rbuf_extra + c->wbuf_extra;
    t->buf_extra = t->buf_extra - c->rbuf_extra - c->wbuf_extra + rx + wx;
    if (queued(c, Q_MEMWAIT)) {
        t->memwait_extra = t->memwait_extra - c->rbuf_extra - c->wbuf_extra + rx + wx;
    }
    c->rbuf_extra = rx;
    c->wbuf_extra = wx;
    for (unsigned i = 0; fell && i < MEMWAIT_WAKE && t->queue[Q_MEMWAIT].head != NULL; i++) {
        struct conn *x = t->queue[Q_MEMWAIT].head;
        memwait_remove(t, x);
        pending_add(t, x);
    }
}

void
conn_rbuf_want(struct conn *c, size_t n)
{
    c->rbuf_need = 0;
    if (rbuf_may_grow(c->w, c, n)) {
        (void)buf_reserve(&c->rbuf, n); /* on failure the reads go on with what there is */
        conn_account(c->w, c);
    } else {
        c->rbuf_need = n; /* the reads will wait for all of it rather than creep up to it */
    }
}

static void
conn_close(struct worker *w, struct conn *c)
{
    struct conn_table *t = w->conns;
    if (w->rt->p->on_close != NULL) {
        w->rt->p->on_close(w->pctx, c);
    }
    queue_remove(t, Q_PENDING, c);
    memwait_remove(t, c);
    close(c->fd); /* also removes it from the epoll set */
    buf_free(&c->rbuf);
    buf_free(&c->wbuf);
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

static void
conn_adopt(struct worker *w, int fd)
{
    struct runtime *rt = w->rt;
    struct conn_table *t = w->conns;
    struct conn *c = NULL;
    if (table_reserve(t) < 0 || (c = calloc(1, sizeof(*c) + rt->p->conn_state_size)) == NULL) {
        log_error("out of memory adopting a connection");
        goto fail;
    }
    c->fd = fd;
    c->w = w;
    c->slot = t->free[--t->nfree];
    c->last_active = t->now;
    buf_init(&c->rbuf, rt->rbuf_init, rt->rbuf_max);
    buf_init(&c->wbuf, rt->rbuf_init, rt->wbuf_max);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        log_error("epoll_ctl: %s", strerror(errno));
        t->free[t->nfree++] = c->slot;
        free(c);
        goto fail;
    }
    t->slot[c->slot] = c;
    t->used++;
    metrics_incr(&w->m[RTM_CURR_CONNECTIONS]);
    log_verbose("connection %d adopted", fd);
    return;
fail:
    close(fd);
    metrics_incr(&w->closed); /* the acceptor counted it as handed over */
}

/* Send queued output; one send per call while the socket takes it all. */
static int
conn_flush(struct worker *w, struct conn *c)
{
    while (buf_len(&c->wbuf) > 0 && c->writable) {
        ssize_t n = send(c->fd, buf_rptr(&c->wbuf), buf_len(&c->wbuf), MSG_NOSIGNAL);
        if (n > 0) {
            buf_consume(&c->wbuf, (size_t)n);
            metrics_add(&w->m[RTM_BYTES_WRITTEN], (uint64_t)n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->writable = false; /* EPOLLOUT will say when there is room again */
        } else {
            log_verbose("connection %d: send: %s", c->fd, strerror(errno));
            return -EPIPE;
        }
    }
    if (buf_len(&c->wbuf) == 0) {
        buf_shrink(&c->wbuf);
    }
    return 0;
}

/* Read what the socket has, up to READ_ROUNDS reads. */
static int
conn_read(struct worker *w, struct conn *c)
{
    for (int round = 0; round < READ_ROUNDS && c->readable; round++) {
        /* Room for one read, or for the rest of a request whose size the product gave (unless
         * that no longer fits under the cap: a stale need must never stop the reads). */
        size_t room = c->rbuf_need > READ_CHUNK ? c->rbuf_need : READ_CHUNK;
        if (buf_len(&c->rbuf) + room > w->rt->rbuf_max) {
            room = READ_CHUNK;
        }
        bool fits = buf_avail(&c->rbuf) >= room; /* the common case: nothing to decide */
        if (!fits && !rbuf_may_grow(w, c, room)) {
            /* The worker's buffers hold its share of buffer-memory: wait until another
             * connection's shrinks (conn_account), as memcached waits for item memory. A
             * connection that hung up will not send the rest: close it, and free what it holds. */
            if (c->hup) {
                return -ECONNRESET;
            }
            memwait_add(w->conns, c);
            metrics_incr(&w->m[RTM_INPUT_WAITS]);
            return 0;
        }
        if (!fits) {
            if (buf_reserve(&c->rbuf, room) < 0 && buf_avail(&c->rbuf) == 0) {
                /* Read buffer at its cap: the product must consume before we read more. */
                return 0;
            }
            c->rbuf_need = 0;
            conn_account(w, c);
        }
        size_t want = buf_avail(&c->rbuf);
        ssize_t n = recv(c->fd, buf_wptr(&c->rbuf), want, 0);
        if (n > 0) {
            buf_commit(&c->rbuf, (size_t)n);
            metrics_add(&w->m[RTM_BYTES_READ], (uint64_t)n);
            /* A short read emptied the socket; with edge triggering, new bytes raise a new event.
             * Not so the end of the stream once its hang-up was reported: read on to see it. */
            if ((size_t)n < want && !c->hup) {
                c->readable = false;
            }
        } else if (n == 0) {
            c->eof = true;
            c->readable = false;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->readable = false;
        } else {
            log_verbose("connection %d: recv: %s", c->fd, strerror(errno));
            return -EIO;
        }
    }
    return 0;
}

/*
 * Give the connection one turn: read, let the product answer, send the answers. Reading pauses
 * while the output is over its limit; a product that stopped parsing for that reason (resume) is
 * called again once the client has read enough. Returns a negative errno when the connection
 * must be closed now.
 */
static int
conn_serve(struct worker *w, struct conn *c)
{
    struct runtime *rt = w->rt;
    bool stopping = atomic_load_explicit(&w->stop, memory_order_relaxed);
    if (!c->closing && !stopping && !c->paused && !conn_output_full(c)) {
        size_t before = buf_len(&c->rbuf);
        int rc = conn_read(w, c);
        if (rc < 0) {
            return rc;
        }
        if (buf_len(&c->rbuf) > before || c->resume) {
            c->resume = false;
            c->last_active = w->conns->now;
            rc = rt->p->on_data(w->pctx, c);
            if (rc < 0) {
                return rc;
            }
            if (rc == RT_CLOSE) {
                c->closing = true;
            } else if (rc == RT_PAUSED) {
                c->paused = true;
            } else if (conn_output_full(c)) {
                c->resume = buf_len(&c->rbuf) > 0;
            } else if (buf_len(&c->rbuf) == rt->rbuf_max) {
                log_warn("connection %d: request larger than %zu bytes, closing", c->fd,
                         rt->rbuf_max);
                return -EMSGSIZE;
            }
            if (buf_len(&c->rbuf) == 0) {
                buf_shrink(&c->rbuf);
            }
        }
    }
    if (conn_flush(w, c) < 0) {
        return -EPIPE;
    }
    conn_account(w, c);
    /* Close when everything asked for was answered and sent. */
    if ((c->closing || (c->eof && !c->resume)) && buf_len(&c->wbuf) == 0 && c->inflight == 0) {
        return -ECONNRESET;
    }
    /* Input left behind by the read budget, or a paused product that may go on: next turn. */
    if ((c->readable || c->resume) && !c->closing && !stopping && !c->paused &&
        !queued(c, Q_MEMWAIT) && !conn_output_full(c)) {
        pending_add(w->conns, c);
    }
    return 0;
}

static void
handle_event(struct worker *w, struct conn *c, uint32_t events)
{
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        c->hup = true;
    }
    if (queued(c, Q_MEMWAIT) && c->hup) {
        /* It hung up while its request waited for buffer memory: the rest of that request is
         * not coming, and the memory it holds is wanted. */
        conn_close(w, c);
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        c->readable = true;
    }
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
        c->writable = true;
    }
    if (conn_serve(w, c) < 0) {
        conn_close(w, c);
    }
}

static void
adopt_new(struct worker *w)
{
    void *item;
    unsigned n = 0;
    while (n < ADOPT_BUDGET && (item = ring_pop(w->inbox)) != NULL) {
        conn_adopt(w, (int)(intptr_t)item - 1);
        n++;
    }
    if (n > 0) {
        ring_release(w->inbox);
    }
}

/* Messages from other workers: requests to execute here, replies for our connections. */
static void
drain_peers(struct worker *w)
{
    const struct rt_product *p = w->rt->p;
    struct conn_table *t = w->conns;
    for (unsigned j = 0; j < w->rt->nworkers; j++) {
        struct ring *r = w->peer_in[j];
        struct rt_msg *m;
        unsigned n = 0;
        if (r == NULL) {
            continue;
        }
        struct rt_msg *batch[RT_REQUEST_BATCH];
        unsigned nb = 0;
        while (n < PEER_BUDGET && (m = ring_pop(r)) != NULL) {
            n++;
            if (!m->is_reply) {
                /* Requests go in batches (order kept); replies concern other connections. */
                batch[nb++] = m;
                if (nb == RT_REQUEST_BATCH) {
                    p->on_requests(w->pctx, batch, nb);
                    nb = 0;
                }
                continue;
            }
            struct conn *c = m->conn_slot < t->cap ? t->slot[m->conn_slot] : NULL;
            if (c != NULL && t->gen[m->conn_slot] != m->conn_gen) {
                c = NULL; /* the slot holds a newer connection */
            }
            p->on_reply(w->pctx, c, m);
            if (c != NULL) {
                /* Send what the reply completed, and let a paused product go on. */
                c->inflight--;
                c->paused = false;
                c->resume = buf_len(&c->rbuf) > 0;
                pending_add(t, c);
            }
        }
        if (nb > 0) {
            p->on_requests(w->pctx, batch, nb);
        }
        if (n > 0) {
            ring_release(r);
            metrics_add(&w->m[RTM_MESSAGES_RECEIVED], n);
        }
    }
}

/* Publish what this iteration staged for each peer, and wake the peers that sleep. */
static void
flush_peers(struct worker *w)
{
    for (unsigned j = 0; j < w->rt->nworkers; j++) {
        if (!w->peer_dirty[j]) {
            continue;
        }
        if (ring_outbox_flush(&w->peer_out[j])) {
            waker_notify(&w->rt->workers[j].waker);
        }
        w->peer_dirty[j] = ring_outbox_backlog(&w->peer_out[j]) > 0;
    }
}

/* True if a peer's ring or the inbox has something: the sleep protocol's re-check. */
static bool
inbound_pending(struct worker *w)
{
    if (ring_pending(w->inbox)) {
        return true;
    }
    for (unsigned j = 0; j < w->rt->nworkers; j++) {
        if (w->peer_in[j] != NULL && ring_pending(w->peer_in[j])) {
            return true;
        }
    }
    return false;
}

/* Backlog in an outbox needs another turn soon: the peer is busy draining its ring. */
static bool
outbound_backlog(struct worker *w)
{
    for (unsigned j = 0; j < w->rt->nworkers; j++) {
        if (w->peer_dirty[j]) {
            return true;
        }
    }
    return false;
}

static void
serve_pending(struct worker *w)
{
    struct conn_table *t = w->conns;
    /* Only the connections pending at the start get a turn: the bound for this iteration. Only
     * serving a connection takes it off the queue (or closes it), so the last one stays there
     * until its turn; those queued meanwhile wait for the next iteration. */
    struct conn *last = t->queue[Q_PENDING].tail;
    for (bool more = last != NULL; more;) {
        struct conn *c = t->queue[Q_PENDING].head;
        queue_remove(t, Q_PENDING, c);
        more = c != last;
        if (conn_serve(w, c) < 0) {
            conn_close(w, c);
        }
    }
}

/* Close connections idle for longer than the timeout; examines at most SWEEP_BUDGET slots. */
static void
sweep_idle(struct worker *w)
{
    struct conn_table *t = w->conns;
    unsigned timeout = w->idle_timeout;
    if (timeout == 0 || t->cap == 0) {
        return;
    }
    for (unsigned i = 0; i < SWEEP_BUDGET && i < t->cap; i++) {
        t->sweep_pos = (t->sweep_pos + 1) % t->cap;
        struct conn *c = t->slot[t->sweep_pos];
        if (c != NULL && t->now - c->last_active >= (int64_t)timeout && buf_len(&c->wbuf) == 0) {
            log_verbose("connection %d: idle for %u s, closing", c->fd, timeout);
            conn_close(w, c);
        }
    }
}

/* After stop: send what is queued for up to DRAIN_SECONDS, then close everything. */
static void
drain_and_close(struct worker *w)
{
    struct conn_table *t = w->conns;
    int64_t deadline = mono_ms() + DRAIN_SECONDS * 1000;
    struct epoll_event ev[EVENT_BATCH];
    for (;;) {
        unsigned waiting = 0;
        for (unsigned i = 0; i < t->cap; i++) {
            struct conn *c = t->slot[i];
            if (c != NULL && buf_len(&c->wbuf) > 0) {
                if (conn_flush(w, c) < 0) {
                    conn_close(w, c);
                } else if (buf_len(&c->wbuf) > 0) {
                    waiting++;
                }
            }
        }
        /* Peers may still need our shard's answers, and we theirs. */
        drain_peers(w);
        serve_pending(w);
        flush_peers(w);
        for (unsigned i = 0; i < t->cap; i++) {
            struct conn *c = t->slot[i];
            waiting += c != NULL && c->inflight > 0;
        }
        int64_t left = deadline - mono_ms();
        if (waiting == 0 || left <= 0) {
            break;
        }
        /* Still alive for the health check while draining. */
        metrics_incr(&w->heartbeat);
        int n = epoll_wait(w->epfd, ev, EVENT_BATCH, (int)(left < 50 ? left : 50));
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr == &waker_tag) {
                waker_drain(&w->waker);
            } else if (ev[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
                ((struct conn *)ev[i].data.ptr)->writable = true;
            }
        }
    }
    for (unsigned i = 0; i < t->cap; i++) {
        if (t->slot[i] != NULL) {
            conn_close(w, t->slot[i]);
        }
    }
}

/* Take this worker's copy of the reloadable settings (every tick: readers never wait). */
static void
worker_refresh(struct worker *w)
{
    struct rt_live l = rt_live_get(w->rt);
    w->idle_timeout = l.idle_timeout;
    if (w->klog_every != l.klog_every) {
        w->klog_every = l.klog_every;
        w->klog_left = l.klog_every;
    }
}

/* The stuck-worker test's hook (admin "debug stall", only with --debug-commands): stall the
 * loop as a runaway request would, heartbeat and all. */
static void
debug_stall(struct worker *w)
{
    unsigned ms = atomic_exchange_explicit(&w->stall_ms, 0, memory_order_relaxed);
    if (ms > 0) {
        log_warn("debug: stalling this worker for %u ms", ms);
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
        }
    }
}

/* Register with RCU and the metrics registry; find the product's slots. */
static int
worker_metrics_setup(struct worker *w)
{
    metrics_thread_register();
    int rc = metrics_block_register(w->rt->metrics, w->id, &w->mblk);
    if (rc < 0) {
        return rc;
    }
    w->m = metrics_slots(w->mblk, 0);
    for (size_t i = 0; i < w->rt->p->nmetrics; i++) {
        w->pm[i] = metrics_slots(w->mblk, (unsigned)i + 1);
    }
    worker_refresh(w);
    return 0;
}

static void
worker_metrics_teardown(struct worker *w)
{
    metrics_block_unregister(w->rt->metrics, &w->mblk);
    w->m = NULL;
    metrics_thread_unregister();
}

void *
worker_main(void *arg)
{
    struct worker *w = arg;
    struct runtime *rt = w->rt;
    char name[16];
    snprintf(name, sizeof(name), "worker-%u", w->id);
    pthread_setname_np(pthread_self(), name);
    log_thread_register(name);
    self_worker = w;

    int rc = worker_metrics_setup(w);
    if (rc == 0 && rt->p->worker_setup != NULL) {
        rc = rt->p->worker_setup(w->id, rt->nworkers, rt->cfg, &w->pctx);
    }
    atomic_store(&w->setup_rc, rc);
    atomic_store_explicit(&w->started, true, memory_order_release);
    if (rc < 0) {
        worker_metrics_teardown(w);
        return NULL;
    }

    struct conn_table *t = w->conns;
    struct epoll_event ev[EVENT_BATCH];
    int64_t next_tick = mono_ms() + TICK_MS;
    t->now = time(NULL);
    while (!atomic_load_explicit(&w->stop, memory_order_relaxed)) {
        metrics_incr(&w->heartbeat);
        metrics_incr(&w->m[RTM_EVENT_LOOPS]);
        adopt_new(w);
        drain_peers(w);
        serve_pending(w);
        flush_peers(w);

        int64_t now = mono_ms();
        int timeout = now >= next_tick ? 0 : (int)(next_tick - now);
        if (t->queue[Q_PENDING].head != NULL || outbound_backlog(w)) {
            timeout = 0;
        }
        /* Nothing to serve: the product may use the time, a bounded slice per turn. */
        if (timeout != 0 && rt->p->idle != NULL && rt->p->idle(w->pctx)) {
            timeout = 0;
        }
        if (timeout != 0) {
            /* The sleep protocol of ring.h: announce, fence, re-check, then block. */
            waker_sleep_begin(&w->waker);
            if (inbound_pending(w) || atomic_load(&w->stop)) {
                timeout = 0;
            }
        }
        int n = epoll_wait(w->epfd, ev, EVENT_BATCH, timeout);
        waker_sleep_end(&w->waker);
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr == &waker_tag) {
                waker_drain(&w->waker);
            } else {
                handle_event(w, ev[i].data.ptr, ev[i].events);
            }
        }
        /* Requests forwarded while serving these events leave now, not after the next wait. */
        flush_peers(w);

        now = mono_ms();
        if (now >= next_tick) {
            next_tick = now + TICK_MS;
            t->now = time(NULL);
            worker_refresh(w);
            sweep_idle(w);
            if (rt->p->tick != NULL) {
                rt->p->tick(w->pctx);
            }
            debug_stall(w);
        }
    }
    /* Requests already read were answered as they were parsed; adopt nothing new. */
    drain_and_close(w);
    if (rt->p->worker_teardown != NULL) {
        rt->p->worker_teardown(w->pctx);
    }
    worker_metrics_teardown(w);
    return NULL;
}
