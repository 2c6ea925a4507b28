/*
 * fake_rt: the runtime's contract (include/petrel/runtime.h) without threads or sockets. See
 * fake_rt.h for what it simulates and what it checks; the comments here say where it follows
 * src/core (conn.c, mesh.c) and why.
 */
#include "fake_rt.h"

#include "petrel/prcu.h"
#include "petrel/metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define FAILS_KEPT      16
#define DEFAULT_BUFFER  (16u << 10)
#define DEFAULT_LIMIT   (1u << 20)
#define NO_WORKER       (-1)
#define RUN_ROUNDS_MAX  1000000 /* fake_rt_run(): a product that never settles is a failure */
#define RECEIVED_MAX    ((size_t)1 << 34)
#define MAX_CONNECTIONS 1024 /* what rt_stats_get() reports as the setting */
/* Calls in a row that the runtime would make on its own (RT_CONTINUE with nothing queued and
 * nothing in flight) without the product moving anything: then it would spin for ever. Not 3:
 * a metadump walks a bounded stretch of the local shard's hash table per call, and a stretch
 * without a listed item moves nothing the runtime sees (a shard of the fuzz targets has a few
 * thousand buckets, walked 512 at a time). */
#define SPIN_MAX 64

/* Messages from one worker to another, in the order they were sent (the runtime's ring). */
struct msgq {
    struct rt_msg **v;
    size_t head, len, cap;
};

struct fake_worker {
    unsigned id;
    void *ctx;
    bool set_up;
    struct metrics_block *mblk; /* registry.blk[id] */
    struct conn **slot;         /* connections by slot; NULL for a free slot */
    uint32_t *gen;              /* per slot: bumped at close, so late replies find no connection */
    unsigned cap;
    unsigned klog_left;
};

/* The server side of a connection: what the product sees. Freed at close, so that ASan sees a
 * product that keeps a pointer to it. */
struct conn {
    struct fake_worker *w;
    struct fake_conn *fc;
    unsigned slot;
    unsigned proto; /* conn_protocol(): 0, or what fake_conn_open_proto() gave */
    struct buf rbuf;
    struct buf wbuf;
    long held;         /* conn_output_hold() total */
    size_t rbuf_cap;   /* rbuf.cap as the fake (reads, conn_rbuf_want) last left it */
    unsigned inflight; /* forwarded requests whose replies have not come back */
    bool closing;      /* RT_CLOSE: close once the output is sent */
    bool paused;       /* RT_PAUSED: wait for a reply */
    bool resume;       /* call again without new bytes (RT_CONTINUE, or a reply came back) ... */
    bool await_send;   /* ... once some output was sent (or a reply came back): conn.c's flags */
    bool eof;          /* the client's end of stream was read */
    bool replied;      /* a reply came back in this delivery: serve it after */
    _Alignas(16) unsigned char state[];
};

struct fake_conn {
    struct fake_rt *rt;
    struct conn *c;      /* NULL once closed */
    struct buf sock;     /* sent by the client, not read by the server yet */
    struct buf received; /* what the client got */
    bool shut;           /* the client shut its side down */
    const char *reason;  /* why it was closed */
    const char *closing; /* the reason it will be closed for once drained */
    enum rt_result last; /* on_data()'s last result */
    unsigned ndata;      /* on_data() calls */
    size_t peak;         /* most output held after a product call */
    bool bound_reported; /* FAKE_CHECK_BOUND is counted once per connection */
    unsigned spins;      /* calls in a row without progress nor any event between (SPIN_MAX) */
    bool stall_reported; /* a spin is counted once per connection */
    unsigned id;         /* for messages: the order it was opened in */
    char *text;          /* fake_conn_text() */
    struct fake_conn *next;
};

struct fake_rt {
    const struct rt_product *p;
    struct fake_rt_opts o;
    struct config *cfg;
    unsigned n;
    struct fake_worker w[FAKE_RT_MAX_WORKERS];
    int cur; /* the worker whose product code runs now, or NO_WORKER */
    size_t rbuf_max, wbuf_max;
    struct msgq q[FAKE_RT_MAX_WORKERS][FAKE_RT_MAX_WORKERS]; /* [from][to] */
    /* The batch on_requests() is executing, to check rt_msg_return(). */
    struct rt_msg *const *batch;
    unsigned nbatch;
    bool returned[RT_REQUEST_BATCH];
    struct fake_conn *conns, *conns_tail; /* every handle, in the order opened */
    unsigned nopen, nopened;
    uint64_t bytes_read, bytes_written;
    size_t read_peak;
    uint64_t progress; /* bytes moved, bytes consumed, messages delivered, closes */
    unsigned fail_forwards, stops, refused;
    unsigned fails[FAKE_CHECK_COUNT];
    char *kept[FAILS_KEPT];
    enum fake_check kept_kind[FAILS_KEPT];
    unsigned nkept;
};

/* The one fake runtime: the functions without a connection argument find it here. */
static struct fake_rt *active;

/*
 * The metrics registry outlives a fake runtime: the next one with the same tables zeroes its
 * blocks and uses them again. Freeing a block waits for an RCU grace period, which liburcu's
 * call_rcu thread reaches about 10 ms later; a fuzzer building two runtimes per input would
 * spend nearly all its time there. Freed at exit.
 */
static struct {
    const struct metric_table *tables;
    size_t n;
    struct metrics *m;
    struct metrics_block *blk[FAKE_RT_MAX_WORKERS];
    unsigned nblk;
    bool at_exit;
} registry;

static void
registry_free(void)
{
    while (registry.nblk > 0) {
        metrics_block_unregister(registry.m, &registry.blk[--registry.nblk]);
    }
    metrics_destroy(&registry.m);
}

/* A registry of p's tables with n zeroed blocks (every block zeroed: sums see only this run). */
static int
registry_get(const struct rt_product *p, unsigned n)
{
    prcu_thread_register();
    if (!registry.at_exit) {
        atexit(registry_free);
        registry.at_exit = true;
    }
    if (registry.m != NULL && (registry.tables != p->metrics || registry.n != p->nmetrics)) {
        registry_free();
    }
    if (registry.m == NULL) {
        int rc = metrics_create(&registry.m, p->metrics, p->nmetrics);
        if (rc < 0) {
            return rc;
        }
        registry.tables = p->metrics;
        registry.n = p->nmetrics;
    }
    while (registry.nblk < n) {
        int rc = metrics_block_register(registry.m, registry.nblk, &registry.blk[registry.nblk]);
        if (rc < 0) {
            return rc;
        }
        registry.nblk++;
    }
    for (unsigned b = 0; b < registry.nblk; b++) {
        for (unsigned t = 0; t < p->nmetrics; t++) {
            metric_t *v = metrics_slots(registry.blk[b], t);
            for (size_t i = 0; i < metrics_table_slots(registry.m, t); i++) {
                metrics_set(&v[i], 0);
            }
        }
    }
    return 0;
}

static const char *const fake_verify_names[] = {"none", "optional", "required", NULL};

/* The runtime's own options, as far as products read them ("stats settings"), with the real
 * runtime's names, types and defaults (src/core/runtime.c). */
static const struct opt_def fake_rt_options[] = {
    {.name = "listen",
     .short_name = 'l',
     .section = "server",
     .type = OPT_STR,
     .dflt = "0.0.0.0",
     .help = "addresses to listen on (the fake runtime listens nowhere)"},
    {.name = "unix-socket", .section = "server", .type = OPT_STR, .dflt = "", .help = "path"},
    {.name = "unix-mode", .section = "server", .type = OPT_STR, .dflt = "0700", .help = "mode"},
    {.name = "backlog",
     .section = "server",
     .type = OPT_UINT,
     .dflt = "1024",
     .max = 65535,
     .help = "listen backlog"},
    {.name = "enable-ssl", .section = "tls", .type = OPT_BOOL, .dflt = "no", .help = "TLS"},
    {.name = "tls-port",
     .section = "tls",
     .type = OPT_UINT,
     .dflt = "0",
     .max = 65535,
     .help = "TLS port"},
    {.name = "tls-cert", .section = "tls", .type = OPT_STR, .dflt = "", .help = "certificate"},
    {.name = "tls-key", .section = "tls", .type = OPT_STR, .dflt = "", .help = "key"},
    {.name = "tls-ca", .section = "tls", .type = OPT_STR, .dflt = "", .help = "CA"},
    {.name = "tls-verify",
     .section = "tls",
     .type = OPT_ENUM,
     .dflt = "none",
     .choices = fake_verify_names,
     .help = "client certificates"},
    {.name = "tls-ciphers", .section = "tls", .type = OPT_STR, .dflt = "", .help = "suites"},
    {.name = "tls-session-lifetime",
     .section = "tls",
     .type = OPT_UINT,
     .dflt = "7200",
     .max = 86400 * 7,
     .help = "resumption"},
};

const struct opt_table rt_option_table = {
    .name = "runtime",
    .defs = fake_rt_options,
    .n = sizeof(fake_rt_options) / sizeof(fake_rt_options[0]),
};

static const char *const check_names[FAKE_CHECK_COUNT] = {
    [FAKE_CHECK_CONTRACT] = "contract",
    [FAKE_CHECK_HOLD] = "hold",
    [FAKE_CHECK_BOUND] = "bound",
    [FAKE_CHECK_STALL] = "stall",
};

const char *
fake_check_name(enum fake_check kind)
{
    return kind < FAKE_CHECK_COUNT ? check_names[kind] : "any";
}

static void fail(struct fake_rt *rt, enum fake_check kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Count a broken rule and keep its message; the process goes on, as the test decides. */
static void
fail(struct fake_rt *rt, enum fake_check kind, const char *fmt, ...)
{
    rt->fails[kind]++;
    if (rt->nkept == FAILS_KEPT) {
        return;
    }
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    char *copy = strdup(line);
    if (copy != NULL) {
        rt->kept_kind[rt->nkept] = kind;
        rt->kept[rt->nkept++] = copy;
    }
}

/* Every entry point of the contract needs the fake; without one the test is broken. */
static struct fake_rt *
need_active(const char *fn)
{
    if (active == NULL) {
        fprintf(stderr, "fake_rt: %s called without a fake runtime\n", fn);
        abort();
    }
    return active;
}

/* Make worker w current for a product call; returns the previous one for leave(). */
static int
enter(struct fake_rt *rt, unsigned w)
{
    int prev = rt->cur;
    rt->cur = (int)w;
    return prev;
}

static void
leave(struct fake_rt *rt, int prev)
{
    rt->cur = prev;
}

/* A conn_* call is only allowed on the thread of the worker owning the connection. */
static void
check_owner(const struct conn *c, const char *fn)
{
    struct fake_rt *rt = need_active(fn);
    if (rt->cur != (int)c->w->id) {
        fail(rt, FAKE_CHECK_CONTRACT, "%s on connection %u of worker %u from worker %d", fn,
             c->fc->id, c->w->id, rt->cur);
    }
}

static size_t
output_of(const struct conn *c)
{
    return buf_len(&c->wbuf) + (c->held > 0 ? (size_t)c->held : 0);
}

size_t
fake_rt_output_bound(const struct fake_rt *rt)
{
    return rt->o.output_limit + rt->o.reply_part_max + rt->read_peak;
}

/* After a product call on c: track the peak and check the bound. */
static void
check_output(struct conn *c)
{
    struct fake_rt *rt = c->fc->rt;
    size_t out = output_of(c);
    if (out > c->fc->peak) {
        c->fc->peak = out;
    }
    if (out > fake_rt_output_bound(rt) && !c->fc->bound_reported) {
        c->fc->bound_reported = true;
        fail(rt, FAKE_CHECK_BOUND,
             "connection %u holds %zu bytes of output (%zu unsent, %ld held), over the bound "
             "%zu = output limit %zu + reply part %zu + largest read %zu",
             c->fc->id, out, buf_len(&c->wbuf), c->held, fake_rt_output_bound(rt),
             rt->o.output_limit, rt->o.reply_part_max, rt->read_peak);
    }
}

/* ---- the contract: runtime.h ---- */

struct buf *
conn_rbuf(struct conn *c)
{
    check_owner(c, "conn_rbuf");
    return &c->rbuf;
}

struct buf *
conn_wbuf(struct conn *c)
{
    check_owner(c, "conn_wbuf");
    return &c->wbuf;
}

bool
conn_wbuf_take(struct conn *c, struct buf *b)
{
    check_owner(c, "conn_wbuf_take");
    if (buf_len(&c->wbuf) > 0 || b->cap > c->wbuf.max) {
        return false;
    }
    free(c->wbuf.data);
    c->wbuf.data = b->data;
    c->wbuf.rpos = b->rpos;
    c->wbuf.wpos = b->wpos;
    c->wbuf.cap = b->cap;
    b->data = NULL;
    b->rpos = b->wpos = b->cap = 0;
    return true;
}

void *
conn_state(struct conn *c)
{
    check_owner(c, "conn_state");
    return c->state;
}

unsigned
conn_protocol(const struct conn *c)
{
    check_owner(c, "conn_protocol");
    return c->proto;
}

unsigned
conn_worker(const struct conn *c)
{
    check_owner(c, "conn_worker");
    return c->w->id;
}

bool
conn_output_full(const struct conn *c)
{
    check_owner(c, "conn_output_full");
    return output_of(c) >= c->fc->rt->o.output_limit;
}

size_t
conn_output_room(const struct conn *c)
{
    check_owner(c, "conn_output_room");
    size_t out = output_of(c), limit = c->fc->rt->o.output_limit;
    return out < limit ? limit - out : 0;
}

struct conn_room
conn_output_budget(const struct conn *c)
{
    check_owner(c, "conn_output_budget");
    return (struct conn_room){.room = conn_output_room(c),
                              .stop = conn_output_room(c)}; /* no budget */
}

void
conn_output_hold(struct conn *c, long delta)
{
    check_owner(c, "conn_output_hold");
    c->held += delta;
    if (c->held < 0) {
        fail(c->fc->rt, FAKE_CHECK_HOLD, "connection %u: conn_output_hold(%ld) leaves %ld held",
             c->fc->id, delta, c->held);
    }
}

/*
 * Unlike the runtime, never makes the reads wait for memory: the request fits its budget and
 * gets the room now, or it does not and is refused now. The budget is on the request's size (the
 * bytes the read buffer would hold), so whether a request is refused does not depend on what
 * else the buffer held when the product asked.
 */
int
conn_rbuf_want(struct conn *c, size_t n)
{
    check_owner(c, "conn_rbuf_want");
    struct fake_rt *rt = c->fc->rt;
    size_t total = buf_len(&c->rbuf) + n;
    if (total > c->rbuf.max ||
        (rt->o.read_budget > 0 && total > rt->o.read_buffer + rt->o.read_budget)) {
        rt->refused++;
        return -ENOBUFS;
    }
    (void)buf_reserve(&c->rbuf, n); /* as the runtime: on failure the reads go on */
    c->rbuf_cap = c->rbuf.cap;
    return 0;
}

static int
msgq_push(struct msgq *q, struct rt_msg *m)
{
    if (q->len == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 16;
        struct rt_msg **v = malloc(cap * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        for (size_t i = 0; i < q->len; i++) {
            v[i] = q->v[(q->head + i) % q->cap];
        }
        free(q->v);
        q->v = v;
        q->head = 0;
        q->cap = cap;
    }
    q->v[(q->head + q->len) % q->cap] = m;
    q->len++;
    return 0;
}

static struct rt_msg *
msgq_pop(struct msgq *q)
{
    if (q->len == 0) {
        return NULL;
    }
    struct rt_msg *m = q->v[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    return m;
}

int
conn_forward(struct conn *c, unsigned dest, struct rt_msg *m)
{
    check_owner(c, "conn_forward");
    struct fake_rt *rt = c->fc->rt;
    if (rt->batch != NULL) {
        fail(rt, FAKE_CHECK_CONTRACT, "conn_forward inside on_requests");
    }
    if (dest >= rt->n || dest == c->w->id) {
        fail(rt, FAKE_CHECK_CONTRACT, "conn_forward from worker %u to worker %u of %u", c->w->id,
             dest, rt->n);
        return -EINVAL;
    }
    if (rt->fail_forwards > 0) {
        rt->fail_forwards--;
        return -ENOMEM;
    }
    m->conn_slot = c->slot;
    m->conn_gen = c->w->gen[c->slot];
    m->origin = (uint16_t)c->w->id;
    m->dest = (uint16_t)dest;
    m->is_reply = false;
    int rc = msgq_push(&rt->q[c->w->id][dest], m);
    if (rc == 0) {
        c->inflight++;
    }
    return rc;
}

int
rt_forward_detached(unsigned dest, struct rt_msg *m)
{
    struct fake_rt *rt = need_active("rt_forward_detached");
    if (rt->cur < 0 || dest >= rt->n || dest == (unsigned)rt->cur || rt->batch != NULL) {
        fail(rt, FAKE_CHECK_CONTRACT, "rt_forward_detached from worker %d to worker %u of %u",
             rt->cur, dest, rt->n);
        return -EINVAL;
    }
    m->conn_slot = UINT32_MAX;
    m->conn_gen = 0;
    m->origin = (uint16_t)rt->cur;
    m->dest = (uint16_t)dest;
    m->is_reply = false;
    return msgq_push(&rt->q[rt->cur][dest], m);
}

int
rt_msg_return(struct rt_msg *m)
{
    struct fake_rt *rt = need_active("rt_msg_return");
    unsigned i = 0;
    while (i < rt->nbatch && (rt->batch[i] != m || rt->returned[i])) {
        i++;
    }
    if (rt->batch == NULL || i == rt->nbatch) {
        fail(rt, FAKE_CHECK_CONTRACT,
             "rt_msg_return of a message that on_requests is not executing (or returned twice)");
        return -EINVAL;
    }
    rt->returned[i] = true;
    m->is_reply = true;
    return msgq_push(&rt->q[m->dest][m->origin], m);
}

metric_t *
rt_metrics(unsigned table)
{
    struct fake_rt *rt = need_active("rt_metrics");
    if (rt->cur == NO_WORKER || table >= rt->p->nmetrics) {
        fail(rt, FAKE_CHECK_CONTRACT, "rt_metrics(%u) from worker %d", table, rt->cur);
        if (table >= rt->p->nmetrics) {
            return NULL;
        }
        return metrics_slots(rt->w[0].mblk, table);
    }
    return metrics_slots(rt->w[rt->cur].mblk, table);
}

bool
rt_populate(void *p, size_t len)
{
    struct fake_rt *rt = need_active("rt_populate");
    if (rt->cur == NO_WORKER) {
        fail(rt, FAKE_CHECK_CONTRACT, "rt_populate outside a worker");
    }
    (void)p;
    (void)len;
    return false; /* no populate thread: the product does it itself */
}

size_t
rt_populate_left(void)
{
    (void)need_active("rt_populate_left");
    return 0;
}

bool
rt_klog_sample(void)
{
    struct fake_rt *rt = need_active("rt_klog_sample");
    if (rt->cur == NO_WORKER) {
        fail(rt, FAKE_CHECK_CONTRACT, "rt_klog_sample outside a worker");
        return false;
    }
    struct fake_worker *w = &rt->w[rt->cur];
    if (rt->o.klog_every == 0 || --w->klog_left > 0) {
        return false;
    }
    w->klog_left = rt->o.klog_every;
    return true;
}

void
rt_request_stop(void)
{
    need_active("rt_request_stop")->stops++;
}

/* The calling worker's block of the registry, zeroed as the runtime does. */
void
rt_stats_reset(void)
{
    struct fake_rt *rt = need_active("rt_stats_reset");
    if (rt->cur == NO_WORKER) {
        fail(rt, FAKE_CHECK_CONTRACT, "rt_stats_reset outside a worker");
        return;
    }
    metrics_block_reset(rt->w[rt->cur].mblk);
}

/* The calling worker's connections, as plain TCP from 127.0.0.1 with the slot as descriptor,
 * and one listener on worker 0's call. */
void
rt_conns_each(bool listeners, void (*fn)(void *arg, const struct rt_conn_info *ci), void *arg)
{
    struct fake_rt *rt = need_active("rt_conns_each");
    if (rt->cur == NO_WORKER) {
        fail(rt, FAKE_CHECK_CONTRACT, "rt_conns_each outside a worker");
        return;
    }
    if (listeners) {
        fn(arg, &(struct rt_conn_info){.fd = 1000,
                                       .family = AF_INET,
                                       .peer = "127.0.0.1:11211",
                                       .listener = "127.0.0.1:11211",
                                       .transport = "tcp",
                                       .tls_client = "",
                                       .state = "conn_listening"});
    }
    struct fake_worker *w = &rt->w[rt->cur];
    for (unsigned i = 0; i < w->cap; i++) {
        if (w->slot[i] != NULL) {
            fn(arg, &(struct rt_conn_info){.fd = (int)i,
                                           .family = AF_INET,
                                           .peer = "127.0.0.1:50000",
                                           .listener = "127.0.0.1:11211",
                                           .transport = "tcp",
                                           .tls_client = "",
                                           .state = "conn_waiting"});
        }
    }
}

void
rt_stats_get(struct rt_stats *out)
{
    struct fake_rt *rt = need_active("rt_stats_get");
    *out = (struct rt_stats){
        .curr_connections = rt->nopen,
        .total_connections = rt->nopened,
        .bytes_read = rt->bytes_read,
        .bytes_written = rt->bytes_written,
        .threads = rt->n,
        .max_connections = MAX_CONNECTIONS,
    };
}

/* Only what is deterministic: no pid, time or rusage, so two runs of the same requests answer
 * "stats" with the same bytes. */
int
rt_stats_each(const char *version, metrics_stat_fn fn, void *arg)
{
    struct fake_rt *rt = need_active("rt_stats_each");
    char threads[16], conns[16];
    snprintf(threads, sizeof(threads), "%u", rt->n);
    snprintf(conns, sizeof(conns), "%u", rt->nopen);
    int rc = fn(arg, "version", version);
    rc = rc < 0 ? rc : fn(arg, "threads", threads);
    rc = rc < 0 ? rc : fn(arg, "curr_connections", conns);
    if (rc < 0) {
        return rc;
    }
    struct metrics_snapshot *s = NULL;
    rc = metrics_snapshot_take(registry.m, &s);
    if (rc < 0) {
        return rc;
    }
    rc = metrics_stats_each(s, NULL, 0, fn, arg);
    metrics_snapshot_free(&s);
    return rc;
}

/* ---- connections ---- */

static void
close_now(struct conn *c, const char *reason)
{
    struct fake_rt *rt = c->fc->rt;
    struct fake_worker *w = c->w;
    if (rt->p->on_close != NULL) {
        int prev = enter(rt, w->id);
        rt->p->on_close(w->ctx, c);
        leave(rt, prev);
    }
    if (c->held != 0) {
        fail(rt, FAKE_CHECK_HOLD, "connection %u closed (%s) with %ld bytes still held", c->fc->id,
             reason, c->held);
    }
    buf_free(&c->rbuf);
    buf_free(&c->wbuf);
    w->slot[c->slot] = NULL;
    w->gen[c->slot]++;
    c->fc->c = NULL;
    c->fc->reason = reason;
    rt->nopen--;
    rt->progress++;
    free(c);
}

/* The runtime's rule: close once everything asked for was answered and sent. */
static bool
maybe_close(struct conn *c)
{
    if ((c->closing || (c->eof && !c->resume)) && buf_len(&c->wbuf) == 0 && c->inflight == 0) {
        close_now(c, c->closing ? c->fc->closing : "eof");
        return true;
    }
    return false;
}

/* Whether the runtime would call on_data() again without new bytes: conn.c's
 * conn_resumable(). Even a connection over its limit is called while its write buffer is empty:
 * only the product can move the output it holds. */
static bool
resumable(const struct conn *c)
{
    return c->resume && !c->await_send &&
           (buf_len(&c->wbuf) == 0 || output_of(c) < c->fc->rt->o.output_limit);
}

/*
 * After RT_CONTINUE, the runtime calls on_data() again on its own, in its next loop iteration,
 * when the write buffer is empty: nothing is to be sent that would make it wait. A product
 * that then answers RT_CONTINUE again without consuming, writing, holding or forwarding
 * anything, with nothing in flight, would be called for ever: count such calls in a row (an
 * event from outside, a read, a send or a reply, starts the count again) and report a stall
 * at SPIN_MAX.
 */
static void
count_spin(struct conn *c, enum rt_result rc, bool moved)
{
    struct fake_conn *fc = c->fc;
    if (rc != RT_CONTINUE || moved || c->inflight > 0 || buf_len(&c->wbuf) > 0) {
        fc->spins = 0;
        return;
    }
    if (++fc->spins >= SPIN_MAX && !fc->stall_reported) {
        fc->stall_reported = true;
        fail(fc->rt, FAKE_CHECK_STALL,
             "connection %u: on_data returned RT_CONTINUE %u times in a row with nothing to "
             "send and nothing in flight, moving nothing (%zu bytes unread, %ld held): the "
             "runtime would call it for ever",
             fc->id, fc->spins, buf_len(&c->rbuf), c->held);
    }
}

/* Call on_data() and act on its result as the runtime does. Returns false if c was closed. */
static bool
call_data(struct conn *c)
{
    struct fake_conn *fc = c->fc;
    struct fake_rt *rt = fc->rt;
    size_t in_before = buf_len(&c->rbuf), out_before = output_of(c);
    size_t wbuf_before = buf_len(&c->wbuf);
    long held_before = c->held;
    unsigned inflight_before = c->inflight;
    int prev = enter(rt, c->w->id);
    enum rt_result rc = rt->p->on_data(c->w->ctx, c);
    leave(rt, prev);
    fc->last = rc;
    fc->ndata++;
    if (buf_len(&c->rbuf) < in_before) {
        rt->progress += in_before - buf_len(&c->rbuf);
    }
    if (output_of(c) > out_before) {
        rt->progress += output_of(c) - out_before;
    }
    /* Output moved from what the product holds into the write buffer is progress too. */
    bool moved = buf_len(&c->rbuf) != in_before || buf_len(&c->wbuf) != wbuf_before ||
                 c->held != held_before || c->inflight != inflight_before;
    if (moved && output_of(c) <= out_before) {
        rt->progress++;
    }
    count_spin(c, rc, moved);
    if (c->rbuf.cap > c->rbuf_cap) {
        fail(rt, FAKE_CHECK_CONTRACT,
             "connection %u: the read buffer grew from %zu to %zu bytes outside conn_rbuf_want",
             fc->id, c->rbuf_cap, c->rbuf.cap);
    }
    c->rbuf_cap = c->rbuf.cap;
    check_output(c);
    switch ((int)rc) {
    case RT_NEED_MORE:
        break;
    case RT_CONTINUE:
        /* Called again once some output was sent or a reply came back; with nothing to send,
         * at once (turn(): the write buffer is empty, so the flush clears await_send). Room
         * left but less than the product needs is its business. */
        c->resume = true;
        c->await_send = true;
        break;
    case RT_PAUSED:
        /* Only a reply lifts a pause: with none to come, the connection waits for ever. */
        if (c->inflight == 0) {
            fail(rt, FAKE_CHECK_CONTRACT,
                 "connection %u: RT_PAUSED with no request in flight: nothing would resume it",
                 fc->id);
        }
        c->paused = true;
        break;
    case RT_CLOSE:
        c->closing = true;
        fc->closing = "RT_CLOSE";
        break;
    case RT_ABORT:
        close_now(c, "RT_ABORT");
        return false;
    default:
        fail(rt, FAKE_CHECK_CONTRACT, "connection %u: on_data returned %d, not an rt_result",
             fc->id, (int)rc);
        close_now(c, "invalid on_data result");
        return false;
    }
    return true;
}

/* Move up to max bytes from the socket into the read buffer, as one read() would. */
static size_t
do_read(struct conn *c, size_t max)
{
    struct fake_conn *fc = c->fc;
    struct fake_rt *rt = fc->rt;
    size_t n = buf_len(&fc->sock);
    if (n > max) {
        n = max;
    }
    if (n > c->rbuf.max - buf_len(&c->rbuf)) {
        n = c->rbuf.max - buf_len(&c->rbuf);
    }
    if (n > 0 && buf_append(&c->rbuf, buf_rptr(&fc->sock), n) == 0) {
        buf_consume(&fc->sock, n);
        c->rbuf_cap = c->rbuf.cap;
        rt->bytes_read += n;
        rt->progress += n;
        if (n > rt->read_peak) {
            rt->read_peak = n;
        }
    } else {
        n = 0;
    }
    if (buf_len(&fc->sock) == 0 && fc->shut && !c->eof) {
        c->eof = true; /* recv() would now return 0 */
        rt->progress++;
    }
    return n;
}

/*
 * One turn of the runtime's conn_serve(): unless closing or paused, read (max bytes at most,
 * none while the output is full) and call on_data() if bytes came in or it may go on
 * (resumable()); then what conn_flush() does without sending (the fake sends only in
 * fake_conn_drain()): an empty write buffer clears await_send. Close if done.
 */
static void
turn(struct conn *c, size_t max)
{
    struct fake_rt *rt = c->fc->rt;
    if (!c->closing && !c->paused) {
        size_t got = max > 0 && output_of(c) < rt->o.output_limit ? do_read(c, max) : 0;
        if (got > 0) {
            c->fc->spins = 0;
        }
        if (got > 0 || resumable(c)) {
            c->resume = false;
            if (!call_data(c)) {
                return;
            }
            if (c->fc->last == RT_NEED_MORE && buf_len(&c->rbuf) == c->rbuf.max) {
                close_now(c, "request too large");
                return;
            }
            if (buf_len(&c->rbuf) == 0) {
                buf_shrink(&c->rbuf);
                c->rbuf_cap = c->rbuf.cap;
            }
        }
    }
    if (buf_len(&c->wbuf) == 0) {
        c->await_send = false;
    }
    maybe_close(c);
}

struct fake_conn *
fake_conn_open_proto(struct fake_rt *rt, unsigned wi, unsigned proto)
{
    struct fake_conn *fc = fake_conn_open(rt, wi);
    fc->c->proto = proto;
    return fc;
}

struct fake_conn *
fake_conn_open(struct fake_rt *rt, unsigned wi)
{
    if (wi >= rt->n) {
        fprintf(stderr, "fake_conn_open: no worker %u\n", wi);
        abort();
    }
    struct fake_worker *w = &rt->w[wi];
    unsigned slot = 0;
    while (slot < w->cap && w->slot[slot] != NULL) {
        slot++; /* the lowest free slot: a new connection reuses a closed one's, as at run time */
    }
    if (slot == w->cap) {
        unsigned cap = w->cap ? w->cap * 2 : 8;
        struct conn **s = realloc(w->slot, cap * sizeof(*s));
        uint32_t *g = s != NULL ? realloc(w->gen, cap * sizeof(*g)) : NULL;
        if (s == NULL || g == NULL) {
            fprintf(stderr, "fake_conn_open: out of memory\n");
            abort();
        }
        for (unsigned i = w->cap; i < cap; i++) {
            s[i] = NULL;
            g[i] = 0;
        }
        w->slot = s;
        w->gen = g;
        w->cap = cap;
    }
    struct fake_conn *fc = calloc(1, sizeof(*fc));
    struct conn *c = calloc(1, sizeof(*c) + rt->p->conn_state_size);
    if (fc == NULL || c == NULL) {
        fprintf(stderr, "fake_conn_open: out of memory\n");
        abort();
    }
    fc->rt = rt;
    fc->c = c;
    fc->id = rt->nopened;
    buf_init(&fc->sock, 4096, SIZE_MAX / 2);
    buf_init(&fc->received, 4096, RECEIVED_MAX);
    c->w = w;
    c->fc = fc;
    c->slot = slot;
    buf_init(&c->rbuf, rt->o.read_buffer, rt->rbuf_max);
    buf_init(&c->wbuf, rt->o.read_buffer, rt->wbuf_max);
    w->slot[slot] = c;
    if (rt->conns_tail != NULL) {
        rt->conns_tail->next = fc;
    } else {
        rt->conns = fc;
    }
    rt->conns_tail = fc;
    rt->nopen++;
    rt->nopened++;
    return fc;
}

void
fake_conn_send(struct fake_conn *fc, const void *p, size_t n)
{
    if (fc->shut) {
        fprintf(stderr, "fake_conn_send after fake_conn_shutdown\n");
        abort();
    }
    if (buf_append(&fc->sock, p, n) < 0) {
        fprintf(stderr, "fake_conn_send: out of memory\n");
        abort();
    }
}

void
fake_conn_send_str(struct fake_conn *fc, const char *s)
{
    fake_conn_send(fc, s, strlen(s));
}

size_t
fake_conn_read(struct fake_conn *fc, size_t max)
{
    if (fc->c == NULL) {
        return 0;
    }
    uint64_t before = fc->rt->bytes_read;
    turn(fc->c, max);
    return (size_t)(fc->rt->bytes_read - before);
}

size_t
fake_conn_drain(struct fake_conn *fc, size_t max)
{
    struct conn *c = fc->c;
    if (c == NULL) {
        return 0;
    }
    size_t n = buf_len(&c->wbuf) < max ? buf_len(&c->wbuf) : max;
    if (n > 0) {
        if (buf_append(&fc->received, buf_rptr(&c->wbuf), n) < 0) {
            fprintf(stderr, "fake_conn_drain: out of memory\n");
            abort();
        }
        buf_consume(&c->wbuf, n);
        fc->rt->bytes_written += n;
        fc->rt->progress += n;
        fc->spins = 0;
        c->await_send = false; /* as conn_flush(): some output left */
    }
    if (buf_len(&c->wbuf) == 0) {
        buf_shrink(&c->wbuf); /* as the runtime does once the output is sent */
        c->await_send = false;
    }
    turn(c, 0); /* the socket took output: a product waiting for that goes on */
    return n;
}

void
fake_conn_shutdown(struct fake_conn *fc)
{
    fc->shut = true;
}

void
fake_conn_reset(struct fake_conn *fc)
{
    if (fc->c != NULL) {
        close_now(fc->c, "reset");
    }
}

bool
fake_conn_closed(const struct fake_conn *fc)
{
    return fc->c == NULL;
}

const char *
fake_conn_close_reason(const struct fake_conn *fc)
{
    return fc->reason;
}

const struct buf *
fake_conn_received(const struct fake_conn *fc)
{
    return &fc->received;
}

const char *
fake_conn_text(struct fake_conn *fc)
{
    size_t n = buf_len(&fc->received);
    char *t = realloc(fc->text, n + 1);
    if (t == NULL) {
        fprintf(stderr, "fake_conn_text: out of memory\n");
        abort();
    }
    if (n > 0) {
        memcpy(t, buf_rptr(&fc->received), n);
    }
    t[n] = '\0';
    fc->text = t;
    return t;
}

size_t
fake_conn_unsent(const struct fake_conn *fc)
{
    return buf_len(&fc->sock);
}

size_t
fake_conn_unread(const struct fake_conn *fc)
{
    return fc->c != NULL ? buf_len(&fc->c->rbuf) : 0;
}

size_t
fake_conn_output(const struct fake_conn *fc)
{
    return fc->c != NULL ? output_of(fc->c) : 0;
}

size_t
fake_conn_output_peak(const struct fake_conn *fc)
{
    return fc->peak;
}

long
fake_conn_held(const struct fake_conn *fc)
{
    return fc->c != NULL ? fc->c->held : 0;
}

enum rt_result
fake_conn_last_result(const struct fake_conn *fc)
{
    return fc->last;
}

unsigned
fake_conn_data_calls(const struct fake_conn *fc)
{
    return fc->ndata;
}

bool
fake_conn_paused(const struct fake_conn *fc)
{
    return fc->c != NULL && fc->c->paused;
}

bool
fake_conn_resume_pending(const struct fake_conn *fc)
{
    return fc->c != NULL && fc->c->resume;
}

unsigned
fake_conn_inflight(const struct fake_conn *fc)
{
    return fc->c != NULL ? fc->c->inflight : 0;
}

/* ---- messages ---- */

size_t
fake_rt_queued(const struct fake_rt *rt, unsigned from, unsigned to)
{
    return from < rt->n && to < rt->n ? rt->q[from][to].len : 0;
}

size_t
fake_rt_queued_total(const struct fake_rt *rt)
{
    size_t n = 0;
    for (unsigned i = 0; i < rt->n; i++) {
        for (unsigned j = 0; j < rt->n; j++) {
            n += rt->q[i][j].len;
        }
    }
    return n;
}

/* on_requests() on worker w; every message must come back through rt_msg_return(). */
static void
run_requests(struct fake_rt *rt, unsigned w, struct rt_msg *const *batch, unsigned n)
{
    rt->batch = batch;
    rt->nbatch = n;
    memset(rt->returned, 0, sizeof(rt->returned));
    int prev = enter(rt, w);
    rt->p->on_requests(rt->w[w].ctx, batch, n);
    leave(rt, prev);
    for (unsigned i = 0; i < n; i++) {
        if (!rt->returned[i]) {
            fail(rt, FAKE_CHECK_CONTRACT,
                 "on_requests on worker %u did not hand request %u of %u back", w, i, n);
        }
    }
    rt->batch = NULL;
    rt->nbatch = 0;
}

/* A reply back on its origin: as the runtime's mesh_drain(), c is NULL if it was closed. */
static void
run_reply(struct fake_rt *rt, unsigned to, struct rt_msg *m)
{
    struct fake_worker *w = &rt->w[to];
    if (m->origin != to) {
        fail(rt, FAKE_CHECK_CONTRACT, "a reply for worker %u came to worker %u", m->origin, to);
    }
    struct conn *c = m->conn_slot < w->cap ? w->slot[m->conn_slot] : NULL;
    if (c != NULL && w->gen[m->conn_slot] != m->conn_gen) {
        c = NULL; /* the slot holds a newer connection */
    }
    int prev = enter(rt, to);
    rt->p->on_reply(w->ctx, c, m);
    leave(rt, prev);
    if (c != NULL) {
        /* As conn_reply_arrived(): after every reply, paused or not, input or none, the
         * product is called again (once resumable(): a full write buffer is sent first). */
        c->inflight--;
        c->await_send = false;
        c->paused = false;
        c->resume = true;
        c->replied = true;
        c->fc->spins = 0;
        check_output(c);
    }
}

size_t
fake_rt_deliver(struct fake_rt *rt, unsigned from, unsigned to, size_t max)
{
    if (from >= rt->n || to >= rt->n) {
        return 0;
    }
    struct msgq *q = &rt->q[from][to];
    struct rt_msg *batch[RT_REQUEST_BATCH];
    unsigned nb = 0;
    size_t n = 0;
    struct rt_msg *m;
    /* As mesh_drain(): requests wait in a batch while the replies behind them are handed
     * over at once; they concern different connections, so only the batch keeps its order. */
    while (n < max && (m = msgq_pop(q)) != NULL) {
        n++;
        if (m->is_reply) {
            run_reply(rt, to, m);
            continue;
        }
        batch[nb++] = m;
        if (nb == RT_REQUEST_BATCH) {
            run_requests(rt, to, batch, nb);
            nb = 0;
        }
    }
    if (nb > 0) {
        run_requests(rt, to, batch, nb);
    }
    rt->progress += n;
    /* The connections that got replies have their turn, in the order they were opened. */
    for (struct fake_conn *fc = rt->conns; fc != NULL; fc = fc->next) {
        if (fc->c != NULL && fc->c->replied) {
            fc->c->replied = false;
            turn(fc->c, 0);
        }
    }
    return n;
}

size_t
fake_rt_deliver_all(struct fake_rt *rt)
{
    size_t total = 0, n;
    do {
        n = 0;
        for (unsigned i = 0; i < rt->n; i++) {
            for (unsigned j = 0; j < rt->n; j++) {
                n += fake_rt_deliver(rt, i, j, SIZE_MAX);
            }
        }
        total += n;
    } while (n > 0);
    return total;
}

/* Whether a connection would be called again on its own (the runtime's pending queue) and has
 * not been found spinning yet: another round of fake_rt_run() calls it. */
static bool
spinning(const struct fake_rt *rt)
{
    for (const struct fake_conn *fc = rt->conns; fc != NULL; fc = fc->next) {
        const struct conn *c = fc->c;
        if (c != NULL && !c->closing && !c->paused && resumable(c) && fc->spins < SPIN_MAX) {
            return true;
        }
    }
    return false;
}

unsigned
fake_rt_run(struct fake_rt *rt)
{
    unsigned rounds = 0;
    for (;;) {
        uint64_t before = rt->progress;
        fake_rt_deliver_all(rt);
        for (struct fake_conn *fc = rt->conns; fc != NULL; fc = fc->next) {
            while (fc->c != NULL && fake_conn_read(fc, rt->o.read_max) > 0) {
                fake_conn_drain(fc, SIZE_MAX);
            }
            if (fc->c != NULL) {
                fake_conn_drain(fc, SIZE_MAX);
            }
        }
        rounds++;
        if (rt->progress == before && !spinning(rt)) {
            return rounds;
        }
        if (rounds == RUN_ROUNDS_MAX) {
            fail(rt, FAKE_CHECK_CONTRACT, "fake_rt_run: still moving after %u rounds", rounds);
            return rounds;
        }
    }
}

unsigned
fake_rt_check_quiescent(struct fake_rt *rt)
{
    unsigned stalled = 0;
    for (struct fake_conn *fc = rt->conns; fc != NULL; fc = fc->next) {
        struct conn *c = fc->c;
        if (c == NULL || c->closing || c->paused || c->resume || c->inflight > 0 ||
            buf_len(&c->wbuf) > 0 || buf_len(&fc->sock) > 0 || buf_len(&c->rbuf) == 0) {
            continue;
        }
        size_t in = buf_len(&c->rbuf), out = output_of(c);
        bool open = call_data(c);
        size_t in_after = open ? buf_len(&c->rbuf) : 0, out_after = open ? output_of(c) : 0;
        if (in_after < in || out_after > out || !open) {
            stalled++;
            fail(rt, FAKE_CHECK_STALL,
                 "connection %u: on_data returned RT_NEED_MORE with %zu bytes unread, but "
                 "called again without new bytes it consumed %zu and answered %zu",
                 fc->id, in, in - in_after, out_after > out ? out_after - out : 0);
        }
    }
    return stalled;
}

void
fake_rt_tick(struct fake_rt *rt)
{
    for (unsigned i = 0; i < rt->n; i++) {
        int prev = enter(rt, i);
        if (rt->p->tick != NULL) {
            rt->p->tick(rt->w[i].ctx);
        }
        if (rt->p->idle != NULL) {
            (void)rt->p->idle(rt->w[i].ctx);
        }
        leave(rt, prev);
    }
}

void
fake_rt_fail_forwards(struct fake_rt *rt, unsigned n)
{
    rt->fail_forwards = n;
}

unsigned
fake_rt_stop_requests(const struct fake_rt *rt)
{
    return rt->stops;
}

unsigned
fake_rt_wants_refused(const struct fake_rt *rt)
{
    return rt->refused;
}

unsigned
fake_rt_failures(const struct fake_rt *rt, enum fake_check kind)
{
    if (kind < FAKE_CHECK_COUNT) {
        return rt->fails[kind];
    }
    unsigned n = 0;
    for (unsigned k = 0; k < FAKE_CHECK_COUNT; k++) {
        n += rt->fails[k];
    }
    return n;
}

const char *
fake_rt_first_failure(const struct fake_rt *rt, enum fake_check kind)
{
    for (unsigned i = 0; i < rt->nkept; i++) {
        if (kind == FAKE_CHECK_COUNT || rt->kept_kind[i] == kind) {
            return rt->kept[i];
        }
    }
    return NULL;
}

void
fake_rt_print_failures(const struct fake_rt *rt, FILE *f)
{
    for (unsigned i = 0; i < rt->nkept; i++) {
        fprintf(f, "fake_rt: %s: %s\n", check_names[rt->kept_kind[i]], rt->kept[i]);
    }
    if (fake_rt_failures(rt, FAKE_CHECK_COUNT) > rt->nkept) {
        fprintf(f, "fake_rt: ... %u failures in all\n", fake_rt_failures(rt, FAKE_CHECK_COUNT));
    }
}

const struct config *
fake_rt_config(const struct fake_rt *rt)
{
    return rt->cfg;
}

/* ---- set-up and teardown ---- */

static int
load_config(struct fake_rt *rt)
{
    const struct fake_rt_opts *o = &rt->o;
    struct opt_table tables[16];
    if (o->ntables + 1 > sizeof(tables) / sizeof(tables[0])) {
        fprintf(stderr, "fake_rt: too many option tables\n");
        return -EINVAL;
    }
    tables[0] = rt_option_table;
    for (size_t i = 0; i < o->ntables; i++) {
        tables[i + 1] = o->tables[i];
    }
    int argc = 1;
    while (o->argv != NULL && o->argv[argc - 1] != NULL) {
        argc++;
    }
    char **argv = calloc((size_t)argc + 1, sizeof(*argv));
    if (argv == NULL) {
        return -ENOMEM;
    }
    argv[0] = (char *)"fake_rt";
    for (int i = 1; i < argc; i++) {
        argv[i] = (char *)o->argv[i - 1];
    }
    char err[256];
    enum config_action action;
    int rc = config_parse(&rt->cfg, &action, tables, o->ntables + 1, argc, argv, err, sizeof(err));
    free(argv);
    if (rc < 0) {
        fprintf(stderr, "fake_rt: options: %s\n", err);
        return rc;
    }
    if (action != CONFIG_ACTION_RUN) {
        fprintf(stderr, "fake_rt: options ask for something else than running\n");
        config_free(&rt->cfg);
        return -EINVAL;
    }
    return 0;
}

struct fake_rt *
fake_rt_create(const struct rt_product *p, const struct fake_rt_opts *o)
{
    if (active != NULL) {
        fprintf(stderr, "fake_rt_create: one fake runtime at a time\n");
        return NULL;
    }
    if (o->nworkers > FAKE_RT_MAX_WORKERS) {
        fprintf(stderr, "fake_rt_create: %u workers, at most %d\n", o->nworkers,
                FAKE_RT_MAX_WORKERS);
        return NULL;
    }
    struct fake_rt *rt = calloc(1, sizeof(*rt));
    if (rt == NULL) {
        return NULL;
    }
    rt->p = p;
    rt->o = *o;
    rt->cur = NO_WORKER;
    rt->n = o->nworkers ? o->nworkers : 2;
    rt->o.nworkers = rt->n;
    rt->o.read_buffer = o->read_buffer ? o->read_buffer : DEFAULT_BUFFER;
    rt->o.output_limit = o->output_limit ? o->output_limit : DEFAULT_LIMIT;
    rt->o.read_max = o->read_max ? o->read_max : DEFAULT_BUFFER;
    size_t reply_max = p->reply_max ? p->reply_max : p->request_max;
    rt->o.reply_part_max = o->reply_part_max ? o->reply_part_max : reply_max;
    active = rt;
    if (load_config(rt) < 0) {
        goto fail;
    }
    /* The runtime's buffer caps: the largest request plus one read, and past the output limit
     * the largest reply plus one read. */
    size_t request_max = p->request_max;
    if (p->request_limit != NULL && p->request_limit(rt->cfg) < request_max) {
        request_max = p->request_limit(rt->cfg);
    }
    rt->rbuf_max = request_max + rt->o.read_buffer;
    rt->wbuf_max = rt->o.output_limit + reply_max + rt->o.read_buffer;
    if (registry_get(p, rt->n) < 0) {
        fprintf(stderr, "fake_rt: cannot build the metrics registry\n");
        goto fail;
    }
    for (unsigned i = 0; i < rt->n; i++) {
        struct fake_worker *w = &rt->w[i];
        w->id = i;
        w->klog_left = rt->o.klog_every;
        w->mblk = registry.blk[i];
        int rc = 0;
        if (p->worker_setup != NULL) {
            int prev = enter(rt, i);
            rc = p->worker_setup(i, rt->n, rt->cfg, &w->ctx);
            leave(rt, prev);
        }
        if (rc < 0) {
            fprintf(stderr, "fake_rt: worker %u: setup failed: %s\n", i, strerror(-rc));
            goto fail;
        }
        w->set_up = true;
    }
    return rt;
fail:
    fake_rt_destroy(&rt);
    return NULL;
}

void
fake_rt_destroy(struct fake_rt **rtp)
{
    struct fake_rt *rt = *rtp;
    if (rt == NULL) {
        return;
    }
    for (struct fake_conn *fc = rt->conns; fc != NULL; fc = fc->next) {
        if (fc->c != NULL) {
            close_now(fc->c, "shutdown");
        }
    }
    /* As workers_free_mesh(): messages that never finished their round trip. */
    for (unsigned i = 0; i < rt->n; i++) {
        for (unsigned j = 0; j < rt->n; j++) {
            struct rt_msg *m;
            while ((m = msgq_pop(&rt->q[i][j])) != NULL) {
                if (rt->p->msg_free != NULL) {
                    rt->p->msg_free(m);
                }
            }
            free(rt->q[i][j].v);
        }
    }
    for (unsigned i = 0; i < rt->n; i++) {
        struct fake_worker *w = &rt->w[i];
        if (w->set_up && rt->p->worker_teardown != NULL) {
            int prev = enter(rt, i);
            rt->p->worker_teardown(w->ctx);
            leave(rt, prev);
        }
        free(w->slot);
        free(w->gen);
    }
    config_free(&rt->cfg);
    while (rt->conns != NULL) {
        struct fake_conn *fc = rt->conns;
        rt->conns = fc->next;
        buf_free(&fc->sock);
        buf_free(&fc->received);
        free(fc->text);
        free(fc);
    }
    for (unsigned i = 0; i < rt->nkept; i++) {
        free(rt->kept[i]);
    }
    active = NULL;
    free(rt);
    *rtp = NULL;
}
