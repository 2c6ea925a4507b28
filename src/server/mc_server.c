/*
 * mc_server: the memcached-compatible product. Contract in include/petrel/mc_server.h.
 *
 * The path of a request: the connection's worker parses it and hashes its key once. A key this
 * worker owns is executed at once on its shard; a key another worker owns is copied (request
 * text, value included: the one copy) into a message and forwarded to that worker, which
 * executes it and sends the message back with the reply. A multi-key get is split into one
 * sub-request per owning worker and gathered back in key order; flush_all and stats go to every
 * shard.
 *
 * Reply order: while nothing is waiting, replies go straight into the connection's write
 * buffer. Once a request waits for another worker, it takes a slot in the connection's reply
 * queue, and every later reply queues behind it, even a local one; slots leave from the head,
 * in request order, as they complete. At most SLOTS_MAX slots per connection; past that the
 * connection is paused until replies come back.
 *
 * Metrics (three per-worker tables in the runtime's registry): the command counters are plain
 * fields of the shard (mc_exec increments them) and the storage figures belong to seg, which
 * has no locks; both are published into the worker's metrics block with relaxed stores on every
 * tick (100 ms) and whenever a data-port "stats" asks every shard, so the admin port sees them
 * at most a tick late and the data port exactly. The latency histograms are written directly.
 *
 * Latency: per command class (get, set, delete, other), the time from a request being parsed to
 * its reply being complete and queued on the connection (in its write buffer, or in its reply
 * queue behind an earlier reply still waiting for another worker). The clock is read once after
 * a batch of up to AHEAD requests is parsed from one read, and once when the batch has been
 * executed; every request answered on the spot gets that interval. A request answered by other
 * workers keeps its parse time in its reply slot and is recorded when the slot completes.
 */
#include "petrel/mc_server.h"

#include "petrel_build.h"

#include "petrel/log.h"
#include "petrel/mc_exec.h"
#include "petrel/memcache.h"
#include "petrel/seg.h"

#include <urcu/pointer.h>

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SLOTS_MAX          1024        /* unfinished replies per connection before it pauses */
#define IDLE_RECLAIM_ITEMS 4096        /* items reclaimed per idle slice (~200 us) */
#define ITEM_ROOM          1024        /* -I minus this is the largest value: key and header room */
#define REPLY_MAX          (64u << 20) /* the largest reply one request may produce */

/*
 * What "version" answers. Clients and tools pick protocol features by the memcached version
 * they see (memccapable, for one, expects a pre-1.4 server to refuse "version foo"), so we
 * answer with the memcached release whose protocol we implement, and name ourselves after it.
 */
#define MC_PROTOCOL_VERSION "1.6.18-petrel-" PETREL_VERSION
#define MSG_BUF_INIT        256
#define FREE_CACHE_MAX      1024 /* messages (and slots) a worker keeps for reuse */

static const char *const evict_names[] = {"merge", "fifo", "random", "cte", "util", "none", NULL};

static const struct opt_def mc_options[] = {
    {.name = "port",
     .short_name = 'p',
     .section = "server",
     .type = OPT_UINT,
     .dflt = "11211",
     .min = 0,
     .max = 65535,
     .help = "TCP port (0: an ephemeral port, logged at start-up)"},
    {.name = "memory-limit",
     .short_name = 'm',
     .section = "storage",
     .type = OPT_SIZE,
     .dflt = "64",
     .unit = 1 << 20,
     .min = 1 << 20,
     .max = UINT64_C(1) << 44,
     .help = "item memory, split evenly between the workers' shards"},
    {.name = "max-item-size",
     .short_name = 'I',
     .section = "storage",
     .type = OPT_SIZE,
     .dflt = "1m",
     .unit = 1,
     .min = 4096,
     .max = 16 << 20,
     .help = "largest item; a value may be this minus 1 KiB (room for key and header)"},
    {.name = "segment-size",
     .section = "storage",
     .type = OPT_SIZE,
     .dflt = "1m",
     .unit = 1,
     .min = 4096,
     .max = 16 << 20,
     .help = "storage segment size, a power of two; raised to fit max-item-size"},
    {.name = "eviction",
     .section = "storage",
     .type = OPT_ENUM,
     .dflt = "merge",
     .choices = evict_names,
     .help = "what makes room when a shard is full"},
    {.name = "prefault",
     .short_name = 'L',
     .section = "storage",
     .type = OPT_BOOL,
     .dflt = "no",
     .help = "touch all item memory, and the hash table at its full size, at start-up (as "
             "memcached's -L): no request waits for the kernel to map fresh memory"},
    {.name = "enable-shutdown",
     .short_name = 'A',
     .section = "server",
     .type = OPT_BOOL,
     .dflt = "no",
     .help = "accept the \"shutdown\" command (as memcached's -A)"},
};

const struct opt_table mc_option_table = {
    .name = "petrel",
    .defs = mc_options,
    .n = sizeof(mc_options) / sizeof(mc_options[0]),
};

/* What a forwarded message asks its owner to do. */
enum msg_op {
    OP_EXEC,  /* one single-key request, as text */
    OP_GET,   /* the keys of a get family request that this shard owns, as a request line */
    OP_FLUSH, /* flush_all */
    OP_STATS, /* publish the shard's counters into its metrics block */
};

/* A request travelling to the worker that owns its key(s) and back. Allocated and freed by the
 * origin worker; written by the owner between the two ring hops. */
struct mc_msg {
    struct rt_msg hdr; /* first: the runtime sees only this */
    uint64_t seq;      /* the origin connection's reply slot */
    uint32_t part;     /* which part of that slot */
    uint8_t op;
    int64_t flush_when;
    uint64_t hash;            /* OP_EXEC: the key's hash, computed once by the origin */
    struct buf req;           /* OP_EXEC, OP_GET: request text */
    struct buf reply;         /* reply bytes written by the owner */
    uint32_t nkeys;           /* OP_GET: keys in req */
    uint32_t *koff;           /* OP_GET: end offset in reply of key i's answer */
    struct mc_msg *next_free; /* in the origin worker's cache of unused messages */
};

/* A reply slot: one per request that could not be answered at once (and the local replies
 * that queue behind it). */
enum slot_kind {
    SLOT_BYTES, /* ready bytes in out */
    SLOT_EXEC,  /* the reply of one forwarded request */
    SLOT_GET,   /* a multi-shard get: parts gathered in key order, then END */
    SLOT_FLUSH, /* flush_all on every shard, then OK */
    SLOT_STATS, /* stats of every shard, summed */
};

struct key_ref {
    uint32_t part; /* which part answers this key */
    uint32_t idx;  /* the key's index in that part */
};

struct slot {
    uint8_t kind;
    uint8_t lat_class; /* with t0: the class of the request waiting here */
    bool noreply;
    int64_t t0;       /* ns: when the request waiting here was parsed; 0 for SLOT_BYTES */
    uint32_t waiting; /* parts not back yet */
    uint32_t nparts;
    struct mc_msg **parts; /* returned (or local) parts; NULL while in flight */
    struct mc_msg *one;    /* parts when there is one part (the common forward) */
    uint32_t nkeys;
    struct key_ref *keys;   /* SLOT_GET */
    struct buf out;         /* SLOT_BYTES */
    struct slot *next_free; /* in the worker's cache of unused slots */
};

/* Per connection, in the runtime's conn_state(). */
struct mc_conn {
    bool init;
    struct mc_parser parser;
    struct slot **q; /* FIFO of reply slots */
    uint32_t qhead, qlen, qcap;
    uint64_t seq_head; /* sequence number of q[qhead] */
};

/* ---- metrics ---- */

/* The command counters, published from struct mc_stats (memcached's names and meanings). */
#define STAT_FIELDS(X)                                                                             \
    X(cmd_get, "get family commands, one per key")                                                 \
    X(cmd_set, "storage commands that got room for their value")                                   \
    X(cmd_flush, "flush_all commands")                                                             \
    X(cmd_touch, "touch and gat commands, one per key")                                            \
    X(get_hits, "keys found by gets")                                                              \
    X(get_misses, "keys not found by gets")                                                        \
    X(get_expired, "gets that found only an expired or flushed item")                              \
    X(delete_misses, "deletes of a missing key")                                                   \
    X(delete_hits, "deletes that removed an item")                                                 \
    X(incr_misses, "incr of a missing key")                                                        \
    X(incr_hits, "incr of an existing key")                                                        \
    X(decr_misses, "decr of a missing key")                                                        \
    X(decr_hits, "decr of an existing key")                                                        \
    X(cas_misses, "cas of a missing key")                                                          \
    X(cas_hits, "cas that stored")                                                                 \
    X(cas_badval, "cas refused: the item changed")                                                 \
    X(touch_hits, "touches of an existing key")                                                    \
    X(touch_misses, "touches of a missing key")

#define DEF_COUNTER(name, help) {#name, METRIC_COUNTER, help},
#define OFFSET_OF(name, help)   offsetof(struct mc_stats, name),
static const struct metric_def cmd_metric_defs[] = {STAT_FIELDS(DEF_COUNTER)};
static const size_t cmd_metric_offset[] = {STAT_FIELDS(OFFSET_OF)};
#define NCMD_METRICS (sizeof(cmd_metric_defs) / sizeof(cmd_metric_defs[0]))

/* The storage figures, published from struct seg_stats. */
enum seg_metric {
    SM_LIMIT_MAXBYTES,
    SM_BYTES,
    SM_CURR_ITEMS,
    SM_TOTAL_ITEMS,
    SM_EXPIRED_UNFETCHED,
    SM_EVICTED_UNFETCHED,
    SM_EVICTIONS,
    SM_RECLAIMED,
    SM_SEGMENTS_USED,
    SM_SEGMENTS_FREE,
    SM_SEGMENT_MERGES,
    SM_HEAP_BYTES,
    SM_HASH_BYTES,
    SM_HASH_EXPANDING,
    SM_HASH_GROW_FAILURES,
    SM_OVERHEAD_BYTES,
    SM_FLUSHED_ITEMS,
    SM_STORE_NO_MEMORY,
    SM_COUNT
};

static const struct metric_def seg_metric_defs[SM_COUNT] = {
    [SM_LIMIT_MAXBYTES] = {"limit_maxbytes", METRIC_GAUGE,
                           "item memory limit (-m), each worker showing its shard's share"},
    [SM_BYTES] = {"bytes", METRIC_GAUGE, "bytes of stored items"},
    [SM_CURR_ITEMS] = {"curr_items", METRIC_GAUGE, "items stored"},
    [SM_TOTAL_ITEMS] = {"total_items", METRIC_COUNTER, "items ever stored"},
    [SM_EXPIRED_UNFETCHED] = {"expired_unfetched", METRIC_COUNTER,
                              "items that expired without being read"},
    [SM_EVICTED_UNFETCHED] = {"evicted_unfetched", METRIC_COUNTER,
                              "items evicted without being read"},
    [SM_EVICTIONS] = {"evictions", METRIC_COUNTER, "live items evicted to make room"},
    [SM_RECLAIMED] = {"reclaimed", METRIC_COUNTER, "expired items whose memory was reclaimed"},
    [SM_SEGMENTS_USED] = {"segments_used", METRIC_GAUGE, "storage segments in use"},
    [SM_SEGMENTS_FREE] = {"segments_free", METRIC_GAUGE, "storage segments free"},
    [SM_SEGMENT_MERGES] = {"segment_merges", METRIC_COUNTER, "merge evictions"},
    [SM_HEAP_BYTES] = {"segment_heap_bytes", METRIC_GAUGE, "bytes of the segment heap"},
    [SM_HASH_BYTES] = {"hash_table_bytes", METRIC_GAUGE, "bytes of the hash table"},
    [SM_HASH_EXPANDING] = {"hash_is_expanding", METRIC_GAUGE,
                           "shards whose hash table is doubling (memcached: 0 or 1)"},
    [SM_OVERHEAD_BYTES] = {"storage_overhead_bytes", METRIC_GAUGE,
                           "bytes of segment headers, TTL buckets and the merge buffer"},
    [SM_FLUSHED_ITEMS] = {"flushed_items", METRIC_COUNTER, "items dropped by flush_all"},
    [SM_HASH_GROW_FAILURES] = {"hash_grow_failures", METRIC_COUNTER,
                               "hash table doublings put off for lack of memory (tried again)"},
    [SM_STORE_NO_MEMORY] = {"store_no_memory", METRIC_COUNTER, "stores refused for lack of memory"},
};

/* Latency classes, one histogram each. */
enum lat_class { LAT_GET, LAT_SET, LAT_DELETE, LAT_OTHER, LAT_COUNT };

static const struct metric_def lat_metric_defs[LAT_COUNT] = {
    [LAT_GET] = {"get_latency", METRIC_HISTOGRAM,
                 "get/gets/gat/gats/mg: from parsed to reply queued"},
    [LAT_SET] = {"set_latency", METRIC_HISTOGRAM,
                 "set/add/replace/append/prepend/cas/ms: from parsed to reply queued"},
    [LAT_DELETE] = {"delete_latency", METRIC_HISTOGRAM, "delete/md: from parsed to reply queued"},
    [LAT_OTHER] = {"other_latency", METRIC_HISTOGRAM,
                   "every other command: from parsed to reply queued"},
};

enum { TABLE_CMD, TABLE_SEG, TABLE_LAT, NTABLES };

static const struct metric_table mc_metric_tables[NTABLES] = {
    [TABLE_CMD] = {"commands", cmd_metric_defs, NCMD_METRICS},
    [TABLE_SEG] = {"storage", seg_metric_defs, SM_COUNT},
    [TABLE_LAT] = {"latency", lat_metric_defs, LAT_COUNT},
};

/* A worker's non-empty TTL buckets, for the admin's "stats seg": worker(w) -> admin(r), an
 * RCU-protected pointer replaced (never changed in place) when the buckets change. */
struct ttl_view {
    size_t n;
    struct ttl_entry {
        uint32_t idx; /* bucket index */
        struct seg_ttl_stats st;
    } e[];
};

#define MAX_WORKERS 256 /* the runtime's --threads maximum */
static struct ttl_view *ttl_views[MAX_WORKERS];

/* Per worker. */
struct mc_worker {
    unsigned id;
    unsigned n;
    const struct config *cfg;
    struct mc_shard shard;
    struct mc_parser_opts popts;
    metric_t *m_cmd, *m_seg, *m_lat; /* this worker's slots of the three tables */
    uint64_t limit_share;            /* its share of -m, shown as limit_maxbytes */
    struct ttl_view *ttl_scratch;    /* worker-private: the next view, built each tick */
    int64_t lat_t0;                  /* ns: when the batch being executed was parsed */
    uint32_t lat_pending[LAT_COUNT]; /* requests of the batch answered on the spot, by class */
    bool reclaim_left;               /* the last tick left expired segments to reclaim */
    /* Messages and slots are born and die on their origin worker; reusing them (buffers
     * included) takes the allocator off the forwarding path. At most FREE_CACHE_MAX each. */
    struct mc_msg *msg_cache;
    struct slot *slot_cache;
    uint32_t msg_cached, slot_cached;
};

static int64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * INT64_C(1000000000) + ts.tv_nsec;
}

static enum lat_class
lat_class_of(enum mc_cmd cmd)
{
    if (mc_cmd_is_storage(cmd)) {
        return LAT_SET; /* the set family, cas and ms: every command with a data block */
    }
    switch (cmd) {
    case MC_CMD_GET:
    case MC_CMD_GETS:
    case MC_CMD_GAT:
    case MC_CMD_GATS:
    case MC_CMD_MG:
        return LAT_GET;
    case MC_CMD_DELETE:
    case MC_CMD_MD:
        return LAT_DELETE;
    default:
        return LAT_OTHER;
    }
}

/* Record the batch's requests answered on the spot: one clock read for all of them. */
static void
lat_settle(struct mc_worker *mw)
{
    int64_t dt = -1;
    for (unsigned c = 0; c < LAT_COUNT; c++) {
        if (mw->lat_pending[c] == 0) {
            continue;
        }
        if (dt < 0) {
            dt = now_ns() - mw->lat_t0;
        }
        metrics_hist_record_n(&mw->m_lat[c * METRICS_HIST_SLOTS], (uint64_t)dt, mw->lat_pending[c]);
        mw->lat_pending[c] = 0;
    }
}

/* Copy the shard's counters and storage figures into this worker's metrics block. */
static void
publish_stats(struct mc_worker *mw)
{
    const char *st = (const char *)&mw->shard.stats;
    for (size_t i = 0; i < NCMD_METRICS; i++) {
        metrics_set(&mw->m_cmd[i], *(const uint64_t *)(st + cmd_metric_offset[i]));
    }
    struct seg_stats ss;
    seg_stats_get(mw->shard.seg, &ss);
    const uint64_t v[SM_COUNT] = {
        [SM_LIMIT_MAXBYTES] = mw->limit_share,
        [SM_BYTES] = ss.bytes,
        [SM_CURR_ITEMS] = ss.items,
        [SM_TOTAL_ITEMS] = ss.total_items,
        [SM_EXPIRED_UNFETCHED] = ss.expired_unfetched,
        [SM_EVICTED_UNFETCHED] = ss.evicted_unfetched,
        [SM_EVICTIONS] = ss.evicted_items,
        [SM_RECLAIMED] = ss.expired_items,
        [SM_SEGMENTS_USED] = ss.segs_used,
        [SM_SEGMENTS_FREE] = ss.segs_free,
        [SM_SEGMENT_MERGES] = ss.merges,
        [SM_HEAP_BYTES] = ss.heap_bytes,
        [SM_HASH_BYTES] = ss.hash_bytes,
        [SM_HASH_EXPANDING] = ss.hash_growing,
        [SM_HASH_GROW_FAILURES] = ss.hash_grow_failures,
        [SM_OVERHEAD_BYTES] = ss.overhead_bytes,
        [SM_FLUSHED_ITEMS] = ss.flushed_items,
        [SM_STORE_NO_MEMORY] = ss.store_no_memory,
    };
    for (size_t i = 0; i < SM_COUNT; i++) {
        metrics_set(&mw->m_seg[i], v[i]);
    }
}

/*
 * Rebuild this worker's TTL view; publish it only when it changed (an idle server publishes
 * nothing). Bound: one pass over the TTL buckets (seg_ttl_bucket_count()).
 */
static void
publish_ttl(struct mc_worker *mw)
{
    struct ttl_view *v = mw->ttl_scratch;
    v->n = 0;
    for (size_t i = 0; i < seg_ttl_bucket_count(); i++) {
        struct seg_ttl_stats st;
        if (seg_ttl_stats_get(mw->shard.seg, i, &st) == 0 && (st.segs > 0 || st.items > 0)) {
            v->e[v->n].idx = (uint32_t)i;
            v->e[v->n].st = st;
            v->n++;
        }
    }
    struct ttl_view *cur = ttl_views[mw->id];
    if (cur != NULL && cur->n == v->n && memcmp(cur->e, v->e, v->n * sizeof(v->e[0])) == 0) {
        return;
    }
    size_t size = sizeof(*v) + v->n * sizeof(v->e[0]);
    struct ttl_view *copy = malloc(size);
    if (copy == NULL) {
        return; /* the admin keeps the older view */
    }
    memcpy(copy, v, size);
    metrics_rcu_publish();
    struct ttl_view *old = rcu_xchg_pointer(&ttl_views[mw->id], copy);
    if (old != NULL && metrics_defer_free(old, free) < 0) {
        metrics_synchronize(); /* rare: no memory for a deferred free, so wait for readers */
        free(old);
    }
}

/* ---- messages ---- */

/* A message from the worker's cache (its buffers empty but allocated), or a new one. */
static struct mc_msg *
msg_new(struct mc_worker *mw, uint8_t op, uint64_t seq, uint32_t part)
{
    struct mc_msg *m = mw->msg_cache;
    if (m != NULL) {
        mw->msg_cache = m->next_free;
        mw->msg_cached--;
    } else {
        m = malloc(sizeof(*m));
        if (m == NULL) {
            return NULL;
        }
        buf_init(&m->req, MSG_BUF_INIT, REPLY_MAX);
        buf_init(&m->reply, MSG_BUF_INIT, REPLY_MAX);
    }
    m->hdr = (struct rt_msg){0};
    m->seq = seq;
    m->part = part;
    m->op = op;
    m->flush_when = 0;
    m->hash = 0;
    m->nkeys = 0;
    m->koff = NULL;
    m->next_free = NULL;
    return m;
}

/* Back into mw's cache (a buffer that grew for a large value shrinks first), or freed when
 * the cache is full or mw is NULL (shutdown). */
static void
msg_free(struct mc_worker *mw, struct mc_msg *m)
{
    if (m == NULL) {
        return;
    }
    free(m->koff);
    m->koff = NULL;
    if (mw != NULL && mw->msg_cached < FREE_CACHE_MAX) {
        buf_consume(&m->req, buf_len(&m->req));
        buf_consume(&m->reply, buf_len(&m->reply));
        buf_shrink(&m->req);
        buf_shrink(&m->reply);
        m->next_free = mw->msg_cache;
        mw->msg_cache = m;
        mw->msg_cached++;
        return;
    }
    buf_free(&m->req);
    buf_free(&m->reply);
    free(m);
}

static void
msg_free_rt(struct rt_msg *m)
{
    msg_free(NULL, (struct mc_msg *)m);
}

/* memcached's reply to a get whose answer does not fit: what was written since mark goes. */
static int
get_too_large(struct buf *out, size_t mark)
{
    out->wpos = out->rpos + mark;
    return buf_puts(out, "SERVER_ERROR out of memory writing get response\r\n");
}

/* A get family line whose keys all belong to one shard: answer each, recording where each
 * key's answer ends. On a reply too large for a message the answers are dropped and the
 * origin sends memcached's error instead. */
static void
exec_get_part(struct mc_worker *mw, struct mc_msg *m, const struct mc_req *req)
{
    struct mc_key_iter it;
    const char *key;
    size_t klen;
    uint32_t i = 0;
    mc_args_begin(req, &it);
    while (i < m->nkeys && mc_args_next(&it, &key, &klen)) {
        if (mc_exec_get_key(&mw->shard, req, key, klen, mc_key_hash(key, klen), &m->reply) < 0) {
            m->nkeys = 0; /* the origin reports the failure */
            buf_consume(&m->reply, buf_len(&m->reply));
            return;
        }
        m->koff[i++] = (uint32_t)buf_len(&m->reply);
    }
}

/* A request about one key (a single-key get included) on this shard, its reply into a
 * message's reply buffer. A reply too large for it becomes memcached's error. */
static void
exec_keyed(struct mc_worker *mw, const struct mc_req *req, uint64_t hash, struct buf *out)
{
    switch (req->cmd) {
    case MC_CMD_GET:
    case MC_CMD_GETS:
    case MC_CMD_GAT:
    case MC_CMD_GATS: {
        size_t mark = buf_len(out);
        if (mc_exec_get_key(&mw->shard, req, req->key, req->klen, hash, out) < 0 ||
            mc_compose_reply(out, MC_R_END) < 0) {
            (void)get_too_large(out, mark);
        }
        return;
    }
    default:
        if (mc_exec(&mw->shard, req, hash, out) < 0) {
            buf_consume(out, buf_len(out));
            mc_compose_reply(out, MC_R_OOM);
        }
        return;
    }
}

/*
 * Parse the request text of an OP_EXEC or OP_GET message into req. The origin parsed and
 * validated this text already; parsing it again is cheaper than shipping a parsed request with
 * pointers into another worker's buffer. Returns false (and logs) if it does not parse.
 */
static bool
msg_parse(struct mc_worker *mw, struct mc_msg *m, struct mc_req *req)
{
    struct mc_parser p;
    mc_parser_init(&p, &mw->popts);
    if (mc_parse(&p, buf_rptr(&m->req), buf_len(&m->req), req) != MC_PARSE_OK) {
        log_error("forwarded request does not parse; dropped");
        return false;
    }
    return true;
}

/*
 * Run a message on this worker's shard: the owner side of a forward, or a local part. req is
 * the message's parsed request (msg_parse), or NULL to parse it here.
 */
static void
msg_execute(struct mc_worker *mw, struct mc_msg *m, const struct mc_req *req)
{
    struct mc_req parsed;
    switch (m->op) {
    case OP_EXEC:
    case OP_GET:
        if (req == NULL && msg_parse(mw, m, &parsed)) {
            req = &parsed;
        }
        if (req == NULL) {
            m->nkeys = 0; /* OP_GET: the origin reports the failure; OP_EXEC: no reply */
            break;
        }
        if (m->op == OP_GET) {
            exec_get_part(mw, m, req);
        } else {
            exec_keyed(mw, req, m->hash, &m->reply);
        }
        break;
    case OP_FLUSH:
        seg_flush(mw->shard.seg, m->flush_when);
        break;
    case OP_STATS:
        publish_stats(mw);
        break;
    }
}

/* ---- reply slots ---- */

/* Free a slot's parts, and keep the slot (its buffer shrunk) in mw's cache if there is room. */
static void
slot_free(struct mc_worker *mw, struct slot *s)
{
    for (uint32_t i = 0; i < s->nparts; i++) {
        msg_free(mw, s->parts[i]);
    }
    if (s->parts != &s->one) {
        free(s->parts);
    }
    free(s->keys);
    if (mw->slot_cached < FREE_CACHE_MAX) {
        buf_consume(&s->out, buf_len(&s->out));
        buf_shrink(&s->out);
        s->next_free = mw->slot_cache;
        mw->slot_cache = s;
        mw->slot_cached++;
        return;
    }
    buf_free(&s->out);
    free(s);
}

/* A slot at the tail of st's queue, waiting for nparts parts. */
static struct slot *
slot_push(struct mc_worker *mw, struct mc_conn *st, uint8_t kind, uint32_t nparts)
{
    if (st->qlen == st->qcap) {
        uint32_t cap = st->qcap ? st->qcap * 2 : 16;
        struct slot **q = malloc(cap * sizeof(*q));
        if (q == NULL) {
            return NULL;
        }
        for (uint32_t i = 0; i < st->qlen; i++) {
            q[i] = st->q[(st->qhead + i) % st->qcap];
        }
        free(st->q);
        st->q = q;
        st->qhead = 0;
        st->qcap = cap;
    }
    struct mc_msg **parts = NULL;
    if (nparts > 1 && (parts = calloc(nparts, sizeof(*parts))) == NULL) {
        return NULL;
    }
    struct slot *s = mw->slot_cache;
    if (s != NULL) {
        mw->slot_cache = s->next_free;
        mw->slot_cached--;
    } else if ((s = malloc(sizeof(*s))) != NULL) {
        buf_init(&s->out, MSG_BUF_INIT, REPLY_MAX);
    } else {
        free(parts);
        return NULL;
    }
    struct buf out = s->out;
    *s = (struct slot){.kind = kind, .out = out, .nparts = nparts, .waiting = nparts};
    s->parts = nparts == 1 ? &s->one : parts;
    st->q[(st->qhead + st->qlen) % st->qcap] = s;
    st->qlen++;
    return s;
}

static uint64_t
slot_seq_next(const struct mc_conn *st)
{
    return st->seq_head + st->qlen;
}

static struct slot *
slot_find(struct mc_conn *st, uint64_t seq)
{
    if (seq < st->seq_head || seq - st->seq_head >= st->qlen) {
        return NULL;
    }
    return st->q[(st->qhead + (seq - st->seq_head)) % st->qcap];
}

/*
 * Where a local reply goes: straight into the write buffer when no reply is waiting, else into
 * a ready slot at the tail of the queue (the last one, if it is already a ready slot).
 */
static struct buf *
reply_out(struct mc_worker *mw, struct conn *c, struct mc_conn *st)
{
    if (st->qlen == 0) {
        return conn_wbuf(c);
    }
    struct slot *tail = st->q[(st->qhead + st->qlen - 1) % st->qcap];
    if (tail->kind == SLOT_BYTES) {
        return &tail->out;
    }
    struct slot *s = slot_push(mw, st, SLOT_BYTES, 0);
    return s != NULL ? &s->out : NULL;
}

/* Append a finished slot's reply to the write buffer. */
static int
slot_emit(struct mc_worker *mw, struct slot *s, struct buf *out)
{
    switch (s->kind) {
    case SLOT_BYTES:
        return buf_append(out, buf_rptr(&s->out), buf_len(&s->out));
    case SLOT_EXEC:
        if (s->parts[0] == NULL) {
            return mc_compose_reply(out, MC_R_OOM);
        }
        return buf_append(out, buf_rptr(&s->parts[0]->reply), buf_len(&s->parts[0]->reply));
    case SLOT_GET: {
        size_t mark = buf_len(out);
        for (uint32_t i = 0; i < s->nkeys; i++) {
            struct mc_msg *m = s->parts[s->keys[i].part];
            uint32_t k = s->keys[i].idx;
            if (m == NULL || k >= m->nkeys) {
                goto too_large; /* the owner could not hold its answers */
            }
            uint32_t from = k > 0 ? m->koff[k - 1] : 0;
            if (buf_append(out, buf_rptr(&m->reply) + from, m->koff[k] - from) < 0) {
                goto too_large;
            }
        }
        return mc_compose_reply(out, MC_R_END);
    too_large:
        return get_too_large(out, mark);
    }
    case SLOT_FLUSH:
        return s->noreply ? 0 : mc_compose_reply(out, MC_R_OK);
    case SLOT_STATS: {
        /* Every shard published its figures before its part came back: the registry is
         * exact for everything this connection did before "stats". */
        int rc = rt_stats_write(out, MC_PROTOCOL_VERSION);
        return rc < 0 ? rc : mc_compose_reply(out, MC_R_END);
    }
    }
    return 0;
}

/* Send every completed slot at the head of the queue, in order. */
static int
slots_flush(struct mc_worker *mw, struct conn *c, struct mc_conn *st)
{
    int64_t now = 0;
    while (st->qlen > 0) {
        struct slot *s = st->q[st->qhead];
        if (s->waiting > 0) {
            break;
        }
        if (s->t0 != 0) {
            now = now != 0 ? now : now_ns(); /* one clock read for every slot sent together */
            metrics_hist_record(&mw->m_lat[s->lat_class * METRICS_HIST_SLOTS],
                                (uint64_t)(now - s->t0));
        }
        int rc = slot_emit(mw, s, conn_wbuf(c));
        slot_free(mw, s);
        st->qhead = (st->qhead + 1) % st->qcap;
        st->qlen--;
        st->seq_head++;
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

/* ---- dispatch ---- */

/* Send part `part` of slot seq to worker dest, or run it here when dest is this worker. */
static int
send_part(struct mc_worker *mw, struct conn *c, struct slot *s, struct mc_msg *m, unsigned dest)
{
    if (dest == mw->id) {
        msg_execute(mw, m, NULL);
        s->parts[m->part] = m;
        s->waiting--;
        return 0;
    }
    if (conn_forward(c, dest, &m->hdr) < 0) {
        msg_free(mw, m);
        s->waiting--; /* answered as if empty: the part reports the failure */
        return -ENOMEM;
    }
    return 0;
}

/* A single-key request owned by worker dest (not this one): forward its text. */
static int
forward_exec(struct mc_worker *mw, struct conn *c, struct mc_conn *st, const char *text, size_t len,
             uint64_t hash, unsigned dest)
{
    uint64_t seq = slot_seq_next(st);
    struct slot *s = slot_push(mw, st, SLOT_EXEC, 1);
    struct mc_msg *m = s != NULL ? msg_new(mw, OP_EXEC, seq, 0) : NULL;
    if (m == NULL || buf_append(&m->req, text, len) < 0) {
        msg_free(mw, m);
        return -ENOMEM;
    }
    m->hash = hash;
    return send_part(mw, c, s, m, dest);
}

/* get/gets/gat/gats whose keys may live on several shards. */
static int
dispatch_get(struct mc_worker *mw, struct conn *c, struct mc_conn *st, const struct mc_req *req)
{
    struct mc_key_iter it;
    const char *key;
    size_t klen;

    /* The common case: every key is ours and nothing waits: answer straight into the output. */
    bool all_local = true;
    mc_args_begin(req, &it);
    while (all_local && mc_args_next(&it, &key, &klen)) {
        all_local = mc_shard_of(mc_key_hash(key, klen), mw->n) == mw->id;
    }
    if (all_local) {
        struct buf *out = reply_out(mw, c, st);
        if (out == NULL) {
            return -ENOMEM;
        }
        size_t mark = buf_len(out);
        mc_args_begin(req, &it);
        while (mc_args_next(&it, &key, &klen)) {
            if (mc_exec_get_key(&mw->shard, req, key, klen, mc_key_hash(key, klen), out) < 0) {
                return get_too_large(out, mark);
            }
        }
        return mc_compose_reply(out, MC_R_END);
    }

    /* Split: one part per owning shard, each a request line of that shard's keys. */
    uint32_t *part_of = calloc(mw->n, sizeof(*part_of)); /* shard -> part + 1 */
    struct mc_msg **msgs = calloc(mw->n, sizeof(*msgs));
    uint64_t seq = slot_seq_next(st);
    struct slot *s = NULL;
    int rc = -ENOMEM;
    if (part_of == NULL || msgs == NULL) {
        goto out;
    }
    uint32_t nparts = 0;
    mc_args_begin(req, &it);
    while (mc_args_next(&it, &key, &klen)) {
        unsigned sh = mc_shard_of(mc_key_hash(key, klen), mw->n);
        if (part_of[sh] == 0) {
            part_of[sh] = ++nparts;
        }
    }
    s = slot_push(mw, st, SLOT_GET, nparts);
    if (s == NULL || (s->keys = calloc(req->nkeys, sizeof(*s->keys))) == NULL) {
        goto out;
    }
    s->nkeys = req->nkeys;
    for (unsigned sh = 0; sh < mw->n; sh++) {
        if (part_of[sh] == 0) {
            continue;
        }
        struct mc_msg *m = msg_new(mw, OP_GET, seq, part_of[sh] - 1);
        if (m == NULL || (m->koff = calloc(req->nkeys, sizeof(*m->koff))) == NULL) {
            msg_free(mw, m);
            goto out;
        }
        msgs[sh] = m;
        /* "gat 300 " + keys: the command word and exptime as the client sent them. */
        buf_puts(&m->req, mc_cmd_name(req->cmd));
        if (req->cmd == MC_CMD_GAT || req->cmd == MC_CMD_GATS) {
            buf_printf(&m->req, " %d", (int)req->exptime);
        }
    }
    uint32_t i = 0;
    mc_args_begin(req, &it);
    while (mc_args_next(&it, &key, &klen)) {
        unsigned sh = mc_shard_of(mc_key_hash(key, klen), mw->n);
        struct mc_msg *m = msgs[sh];
        s->keys[i].part = part_of[sh] - 1;
        s->keys[i].idx = m->nkeys++;
        if (buf_puts(&m->req, " ") < 0 || buf_append(&m->req, key, klen) < 0) {
            goto out;
        }
        i++;
    }
    rc = 0;
    for (unsigned sh = 0; sh < mw->n; sh++) {
        if (msgs[sh] != NULL) {
            buf_puts(&msgs[sh]->req, "\r\n");
            struct mc_msg *m = msgs[sh];
            msgs[sh] = NULL;
            if (send_part(mw, c, s, m, sh) < 0) {
                rc = -ENOMEM;
            }
        }
    }
out:
    if (msgs != NULL) {
        for (unsigned sh = 0; sh < mw->n; sh++) {
            msg_free(mw, msgs[sh]);
        }
    }
    free(msgs);
    free(part_of);
    return rc;
}

/* flush_all and stats: a part on every shard. */
static int
dispatch_all(struct mc_worker *mw, struct conn *c, struct mc_conn *st, const struct mc_req *req)
{
    bool flush = req->cmd == MC_CMD_FLUSH_ALL;
    uint64_t seq = slot_seq_next(st);
    struct slot *s = slot_push(mw, st, flush ? SLOT_FLUSH : SLOT_STATS, mw->n);
    if (s == NULL) {
        return -ENOMEM;
    }
    s->noreply = req->noreply;
    int64_t when = 0;
    if (flush) {
        mw->shard.stats.cmd_flush++;
        if (req->has_delay && req->exptime > 0) {
            when = seg_exptime_abs(req->exptime, (int64_t)time(NULL));
        }
    }
    int rc = 0;
    for (unsigned sh = 0; sh < mw->n; sh++) {
        struct mc_msg *m = msg_new(mw, flush ? OP_FLUSH : OP_STATS, seq, sh);
        if (m == NULL) {
            s->waiting--;
            rc = -ENOMEM;
            continue;
        }
        m->flush_when = when;
        if (send_part(mw, c, s, m, sh) < 0) {
            rc = -ENOMEM;
        }
    }
    return rc;
}

static void
write_settings(struct mc_worker *mw, struct buf *out)
{
    const struct config *cfg = mw->cfg;
    struct rt_stats rs;
    rt_stats_get(&rs);
    /* memcached's names for what has the same meaning, then every option of ours. */
    mc_compose_stat_u64(out, "maxbytes", config_uint(cfg, "memory-limit"));
    mc_compose_stat_u64(out, "maxconns", rs.max_connections);
    mc_compose_stat_u64(out, "tcpport", config_uint(cfg, "port"));
    mc_compose_stat_u64(out, "udpport", 0);
    mc_compose_stat(out, "inter",
                    config_str(cfg, "listen")[0] ? config_str(cfg, "listen") : "NULL");
    mc_compose_stat_u64(out, "num_threads", rs.threads);
    mc_compose_stat_u64(out, "item_size_max", config_uint(cfg, "max-item-size"));
    mc_compose_stat(out, "evictions",
                    strcmp(evict_names[config_enum(cfg, "eviction")], "none") ? "on" : "off");
    mc_compose_stat(out, "eviction_policy", evict_names[config_enum(cfg, "eviction")]);
    mc_compose_stat(out, "shutdown_command", config_bool(cfg, "enable-shutdown") ? "yes" : "no");
    mc_compose_stat_u64(out, "idle_timeout", rs.idle_timeout);
    mc_compose_stat_u64(out, "segment_size", config_uint(cfg, "segment-size"));
    mc_compose_stat(out, "prefault", config_bool(cfg, "prefault") ? "yes" : "no");
    mc_compose_reply(out, MC_R_END);
}

/* Commands that need no shard. Returns 0, RT_CLOSE or a negative errno. */
static int
dispatch_local(struct mc_worker *mw, struct conn *c, struct mc_conn *st, const struct mc_req *req)
{
    struct buf *out = reply_out(mw, c, st);
    if (out == NULL) {
        return -ENOMEM;
    }
    switch (req->cmd) {
    case MC_CMD_VERSION:
        return mc_compose_version(out, MC_PROTOCOL_VERSION);
    case MC_CMD_VERBOSITY:
        log_set_level(req->verbosity >= 2   ? LOG_DEBUG
                      : req->verbosity == 1 ? LOG_VERBOSE
                                            : LOG_INFO);
        return req->noreply ? 0 : mc_compose_reply(out, MC_R_OK);
    case MC_CMD_QUIT:
        return RT_CLOSE;
    case MC_CMD_SHUTDOWN:
        log_info("shutdown requested by a client");
        rt_request_stop();
        return RT_CLOSE;
    case MC_CMD_MN:
        return mc_compose_reply(out, MC_R_MN);
    case MC_CMD_STATS:
        if (req->nargs == 1 && req->args_len >= 8 && memcmp(req->args, "settings", 8) == 0) {
            write_settings(mw, out);
            return 0;
        }
        return mc_compose_reply(out, MC_R_ERROR);
    default:
        return mc_compose_reply(out, MC_R_ERROR);
    }
}

/* True for requests about one key, whose hash the caller computes once. */
static bool
is_keyed(const struct mc_req *req)
{
    switch (req->cmd) {
    case MC_CMD_GET:
    case MC_CMD_GETS:
    case MC_CMD_GAT:
    case MC_CMD_GATS:
        return req->nkeys == 1;
    case MC_CMD_FLUSH_ALL:
    case MC_CMD_STATS:
    case MC_CMD_VERSION:
    case MC_CMD_VERBOSITY:
    case MC_CMD_QUIT:
    case MC_CMD_SHUTDOWN:
    case MC_CMD_MN:
        return false;
    default:
        return true;
    }
}

/* One parsed request; hash is its key's hash when is_keyed(req). */
static int
dispatch(struct mc_worker *mw, struct conn *c, struct mc_conn *st, const struct mc_req *req,
         const char *text, uint64_t hash)
{
    switch (req->cmd) {
    case MC_CMD_GET:
    case MC_CMD_GETS:
    case MC_CMD_GAT:
    case MC_CMD_GATS:
        if (req->nkeys != 1) {
            return dispatch_get(mw, c, st, req);
        }
        if (mc_shard_of(hash, mw->n) == mw->id) {
            /* The most common request of all: one key, ours. */
            struct buf *out = reply_out(mw, c, st);
            if (out == NULL) {
                return -ENOMEM;
            }
            int rc = mc_exec_get_key(&mw->shard, req, req->key, req->klen, hash, out);
            return rc < 0 ? rc : mc_compose_reply(out, MC_R_END);
        }
        break; /* one key, another worker's: forwarded whole, like any keyed command */
    case MC_CMD_FLUSH_ALL:
        return dispatch_all(mw, c, st, req);
    case MC_CMD_STATS:
        if (req->nargs == 0) {
            return dispatch_all(mw, c, st, req);
        }
        return dispatch_local(mw, c, st, req);
    case MC_CMD_VERSION:
    case MC_CMD_VERBOSITY:
    case MC_CMD_QUIT:
    case MC_CMD_SHUTDOWN:
    case MC_CMD_MN:
        return dispatch_local(mw, c, st, req);
    default:
        break;
    }
    /* A single-key command: here, or on the key's owner. */
    unsigned owner = mc_shard_of(hash, mw->n);
    if (owner != mw->id) {
        return forward_exec(mw, c, st, text, req->consumed, hash, owner);
    }
    struct buf *out = reply_out(mw, c, st);
    return out != NULL ? mc_exec(&mw->shard, req, hash, out) : -ENOMEM;
}

/* ---- the product's callbacks ---- */

/* Requests parsed ahead of execution, so that their storage lookups overlap. */
#define AHEAD     16
#define ITEM_LEAD 8

struct ahead {
    struct mc_req req;
    uint64_t hash;
    bool local; /* keyed and owned by this worker: prefetched */
};

/* A parse result that is not a request to execute: an error, swallowed bytes, or "need more". */
static int
handle_parse_result(struct mc_worker *mw, struct conn *c, struct mc_conn *st, enum mc_parse_rc rc,
                    struct mc_req *req)
{
    struct buf *in = conn_rbuf(c);
    switch (rc) {
    case MC_PARSE_AGAIN:
        /* Make room for the whole request at once: a large value is read in place. */
        if (st->parser.need > buf_len(in)) {
            conn_rbuf_want(c, st->parser.need - buf_len(in));
        }
        return 1;
    case MC_PARSE_SKIP:
        buf_consume(in, req->consumed);
        return 0;
    case MC_PARSE_ERROR: {
        struct buf *out = reply_out(mw, c, st);
        if (out == NULL) {
            return -ENOMEM;
        }
        mc_compose_error(out, &req->err);
        if (req->err.action == MC_ERR_CLOSE) {
            return RT_CLOSE;
        }
        buf_consume(in, req->consumed);
        return 0;
    }
    case MC_PARSE_OK:
        break;
    }
    return 0;
}

/* Write a sampled request to the command log: its first line and its reply's size, if known. */
static void
klog_request(struct mc_worker *mw, const char *text, size_t consumed, long reply_len)
{
    const char *nl = memchr(text, '\n', consumed);
    size_t len = nl != NULL ? (size_t)(nl - text) : consumed;
    if (len > 0 && text[len - 1] == '\r') {
        len--;
    }
    if (len > 300) {
        len = 300; /* the command and key; a long get line is cut */
    }
    if (reply_len >= 0) {
        log_klog("\"%.*s\" %ld", (int)len, text, reply_len);
    } else {
        log_klog("\"%.*s\" forwarded", (int)len, text);
    }
}

/*
 * Execute one parsed request and account for it: a request answered on the spot counts in the
 * batch's latency (lat_settle), one that waits for other workers carries its parse time in its
 * reply slot. Returns what dispatch() returns, or the result of sending completed slots.
 */
static int
execute(struct mc_worker *mw, struct conn *c, struct mc_conn *st, struct ahead *a)
{
    struct buf *in = conn_rbuf(c);
    struct buf *wb = conn_wbuf(c);
    struct slot *tail = st->qlen > 0 ? st->q[(st->qhead + st->qlen - 1) % st->qcap] : NULL;
    bool sample = rt_klog_sample();
    size_t wb_before = buf_len(wb);
    int r = dispatch(mw, c, st, &a->req, buf_rptr(in), a->hash);
    enum lat_class cls = lat_class_of(a->req.cmd);
    struct slot *now_tail = st->qlen > 0 ? st->q[(st->qhead + st->qlen - 1) % st->qcap] : NULL;
    if (now_tail != NULL && now_tail != tail && now_tail->kind != SLOT_BYTES) {
        /* It waits for other workers in a slot of its own. */
        now_tail->t0 = mw->lat_t0;
        now_tail->lat_class = (uint8_t)cls;
    } else {
        mw->lat_pending[cls]++;
    }
    if (log_get_level() >= LOG_DEBUG) {
        /* -vv: every request's command line, as memcached prints them (the data block is not). */
        const char *text = buf_rptr(in);
        const char *nl = memchr(text, '\n', a->req.consumed);
        size_t len = nl != NULL ? (size_t)(nl - text) : a->req.consumed;
        log_debug("request: %.*s", (int)(len > 0 && text[len - 1] == '\r' ? len - 1 : len), text);
    }
    if (sample) {
        bool direct = now_tail == NULL && tail == NULL;
        klog_request(mw, buf_rptr(in), a->req.consumed,
                     direct ? (long)(buf_len(wb) - wb_before) : -1);
    }
    buf_consume(in, a->req.consumed);
    /* A slot whose parts all ran here is complete already: send it now. */
    if (r == 0 && st->qlen > 0) {
        r = slots_flush(mw, c, st);
    }
    return r;
}

/* Hash a parsed request's key once, find its owner, and prefetch its bucket if it is ours. */
static void
prepare(struct mc_worker *mw, struct ahead *a)
{
    a->hash = 0;
    a->local = is_keyed(&a->req);
    if (a->local) {
        a->hash = mc_key_hash(a->req.key, a->req.klen);
        a->local = mc_shard_of(a->hash, mw->n) == mw->id;
        if (a->local) {
            seg_prefetch(mw->shard.seg, a->hash);
        }
    }
}

/* Prefetch the items of batch[*done .. upto), whose buckets were prefetched a while ago. */
static void
prefetch_items(struct mc_worker *mw, const struct ahead *batch, size_t *done, size_t upto)
{
    for (; *done < upto; (*done)++) {
        if (batch[*done].local) {
            seg_prefetch_item(mw->shard.seg, batch[*done].hash);
        }
    }
}

/*
 * Parse up to AHEAD requests, then execute them in order, with their hash buckets and items
 * prefetched a few requests ahead: the memory latency of a pipeline's lookups overlaps instead
 * of adding up. Requests parsed but not executed (backpressure) are parsed again on the next
 * call.
 */
static int
mc_on_data_old(void *ctx, struct conn *c)
{
    struct mc_worker *mw = ctx;
    struct mc_conn *st = conn_state(c);
    struct buf *in = conn_rbuf(c);
    struct ahead batch[AHEAD];
    if (!st->init) {
        mc_parser_init(&st->parser, &mw->popts);
        st->init = true;
    }
    while (buf_len(in) > 0) {
        /*
         * A bucket is prefetched as soon as its request is parsed, and an item ITEM_LEAD
         * requests later (its bucket has arrived by then), so parsing the rest of the batch
         * hides both misses of its first requests.
         */
        size_t n = 0, off = 0, items = 0;
        enum mc_parse_rc last = MC_PARSE_OK;
        while (n < AHEAD && off < buf_len(in)) {
            last = mc_parse(&st->parser, buf_rptr(in) + off, buf_len(in) - off, &batch[n].req);
            if (last != MC_PARSE_OK) {
                break;
            }
            off += batch[n].req.consumed;
            prepare(mw, &batch[n++]);
            if (n > ITEM_LEAD) {
                prefetch_items(mw, batch, &items, n - ITEM_LEAD);
            }
        }
        if (n > 0) {
            mw->lat_t0 = now_ns();
        }
        for (size_t i = 0; i < n; i++) {
            if (n > 1) {
                prefetch_items(mw, batch, &items, i + ITEM_LEAD + 1 < n ? i + ITEM_LEAD + 1 : n);
            }
            if (conn_output_full(c) || st->qlen >= SLOTS_MAX) {
                /* Everything from request i on is parsed again, the error ending the batch too. */
                mc_parser_rewind(&st->parser, last == MC_PARSE_ERROR ? &batch[n].req : NULL);
                lat_settle(mw);
                return st->qlen >= SLOTS_MAX ? RT_PAUSED : 0;
            }
            int r = execute(mw, c, st, &batch[i]);
            if (r != 0) {
                lat_settle(mw);
                return r;
            }
        }
        lat_settle(mw);
        if (last != MC_PARSE_OK) {
            /* Every request before it ran, so the error is answered now. */
            int r = handle_parse_result(mw, c, st, last, &batch[n].req);
            if (r != 0) {
                return r == RT_CLOSE ? r : r > 0 ? 0 : r;
            }
        }
    }
    return 0;
}

static enum rt_result
mc_on_data(void *ctx, struct conn *c)
{
    int r = mc_on_data_old(ctx, c);
    if (r < 0) {
        return RT_ABORT;
    }
    if (r == RT_CLOSE || r == RT_PAUSED) {
        return (enum rt_result)r;
    }
    return conn_output_full(c) && buf_len(conn_rbuf(c)) > 0 ? RT_CONTINUE : RT_NEED_MORE;
}

/*
 * Forwarded requests, as mc_on_data runs a pipeline: parse them all first, prefetching each
 * key's bucket as it is parsed and its item ITEM_LEAD requests later, then execute in order.
 * The origin sent each key's hash along, so nothing is hashed twice.
 */
static void
mc_on_requests(void *ctx, struct rt_msg *const *hdrs, unsigned n)
{
    struct mc_worker *mw = ctx;
    struct ahead batch[RT_REQUEST_BATCH];
    bool parsed[RT_REQUEST_BATCH];
    size_t items = 0;

    for (unsigned i = 0; i < n; i++) {
        struct mc_msg *m = (struct mc_msg *)hdrs[i];
        parsed[i] = (m->op == OP_EXEC || m->op == OP_GET) && msg_parse(mw, m, &batch[i].req);
        batch[i].hash = m->hash;
        batch[i].local = parsed[i] && m->op == OP_EXEC; /* one key, ours: prefetched */
        if (batch[i].local) {
            seg_prefetch(mw->shard.seg, m->hash);
        }
        if (i + 1 > ITEM_LEAD) {
            prefetch_items(mw, batch, &items, i + 1 - ITEM_LEAD);
        }
    }
    for (unsigned i = 0; i < n; i++) {
        prefetch_items(mw, batch, &items, i + ITEM_LEAD + 1 < n ? i + ITEM_LEAD + 1 : n);
        msg_execute(mw, (struct mc_msg *)hdrs[i], parsed[i] ? &batch[i].req : NULL);
        if (rt_msg_return(hdrs[i]) < 0) {
            /* The origin will never hear back; the connection's slot stays until it closes. */
            log_error("out of memory returning a forwarded reply");
        }
    }
}

static void
mc_on_reply(void *ctx, struct conn *c, struct rt_msg *hdr)
{
    struct mc_msg *m = (struct mc_msg *)hdr;
    struct mc_conn *st = c != NULL ? conn_state(c) : NULL;
    struct slot *s = st != NULL ? slot_find(st, m->seq) : NULL;
    if (s == NULL) {
        msg_free(ctx, m); /* the connection is gone: drop the late reply */
        return;
    }
    s->parts[m->part] = m;
    s->waiting--;
    if (slots_flush(ctx, c, st) < 0) {
        log_warn("connection output is over its cap; replies dropped");
    }
}

static void
mc_on_close(void *ctx, struct conn *c)
{
    struct mc_conn *st = conn_state(c);
    while (st->qlen > 0) {
        slot_free(ctx, st->q[st->qhead]);
        st->qhead = (st->qhead + 1) % st->qcap;
        st->qlen--;
    }
    free(st->q);
    st->q = NULL;
}

static void
mc_tick(void *ctx)
{
    struct mc_worker *mw = ctx;
    mw->reclaim_left = seg_tick(mw->shard.seg);
    publish_stats(mw);
    publish_ttl(mw);
}

/*
 * When the tick's bounded reclaim left expired segments behind (a mass expiry), idle time goes
 * on with it in slices of IDLE_RECLAIM_ITEMS items (~200 us here), so that their memory comes
 * back within about a second unless the worker is busy serving all the while.
 */
static bool
mc_idle(void *ctx)
{
    struct mc_worker *mw = ctx;
    if (mw->reclaim_left) {
        mw->reclaim_left = seg_reclaim_step(mw->shard.seg, IDLE_RECLAIM_ITEMS);
    }
    return mw->reclaim_left;
}

/* Admin thread: "stats seg", every worker's TTL buckets summed, from the published views. */
static int
mc_admin_stats(const char *what, struct buf *out)
{
    if (strcmp(what, "seg") != 0) {
        return -ENOENT;
    }
    size_t nb = seg_ttl_bucket_count();
    struct seg_ttl_stats *sum = calloc(nb, sizeof(*sum));
    if (sum == NULL) {
        return -ENOMEM;
    }
    metrics_read_lock();
    for (unsigned w = 0; w < MAX_WORKERS; w++) {
        const struct ttl_view *v = rcu_dereference(ttl_views[w]);
        metrics_rcu_subscribe();
        for (size_t i = 0; v != NULL && i < v->n; i++) {
            struct seg_ttl_stats *d = &sum[v->e[i].idx];
            d->ttl_lo = v->e[i].st.ttl_lo;
            d->ttl_hi = v->e[i].st.ttl_hi;
            d->segs += v->e[i].st.segs;
            d->items += v->e[i].st.items;
            d->bytes += v->e[i].st.bytes;
        }
    }
    metrics_read_unlock();
    int rc = 0;
    for (size_t i = 0; i < nb && rc == 0; i++) {
        if (sum[i].segs == 0 && sum[i].items == 0) {
            continue;
        }
        /* One line per figure, named after the bucket's TTL range in seconds. */
        rc = buf_printf(out, "STAT ttl_%u_%u:segments %u\r\n", sum[i].ttl_lo, sum[i].ttl_hi,
                        sum[i].segs);
        rc |= buf_printf(out, "STAT ttl_%u_%u:items %llu\r\n", sum[i].ttl_lo, sum[i].ttl_hi,
                         (unsigned long long)sum[i].items);
        rc |= buf_printf(out, "STAT ttl_%u_%u:bytes %llu\r\n", sum[i].ttl_lo, sum[i].ttl_hi,
                         (unsigned long long)sum[i].bytes);
    }
    free(sum);
    return rc < 0 ? rc : 0;
}

static int
mc_worker_setup(unsigned id, unsigned n, const struct config *cfg, void **ctx)
{
    struct mc_worker *mw = calloc(1, sizeof(*mw));
    if (mw == NULL) {
        return -ENOMEM;
    }
    mw->id = id;
    mw->n = n;
    mw->cfg = cfg;
    struct seg_options o;
    seg_options_init(&o);
    o.mem_bytes = config_uint(cfg, "memory-limit") / n;
    o.item_max = config_uint(cfg, "max-item-size");
    o.seg_size = config_uint(cfg, "segment-size");
    while (o.seg_size < o.item_max) {
        o.seg_size <<= 1;
    }
    o.seed = id + 1;
    o.prefault = config_bool(cfg, "prefault");
    int rc = seg_evict_policy_parse(evict_names[config_enum(cfg, "eviction")], &o.evict);
    if (rc == 0) {
        rc = seg_create(&mw->shard.seg, &o);
    }
    if (rc < 0) {
        log_error("worker %u: cannot create its storage shard (%zu bytes of --memory-limit, "
                  "segments of %zu bytes, items up to %zu): %s",
                  id, o.mem_bytes, o.seg_size, o.item_max, strerror(-rc));
        free(mw);
        return rc;
    }
    mw->popts.max_value = (uint32_t)(o.item_max - ITEM_ROOM);
    mw->popts.shutdown_enabled = config_bool(cfg, "enable-shutdown");
    mw->m_cmd = rt_metrics(TABLE_CMD);
    mw->m_seg = rt_metrics(TABLE_SEG);
    mw->m_lat = rt_metrics(TABLE_LAT);
    /* The shards' shares add up to -m: worker 0 also shows the division's remainder. */
    mw->limit_share = config_uint(cfg, "memory-limit") / n;
    if (id == 0) {
        mw->limit_share += config_uint(cfg, "memory-limit") % n;
    }
    mw->ttl_scratch =
        malloc(sizeof(*mw->ttl_scratch) + seg_ttl_bucket_count() * sizeof(mw->ttl_scratch->e[0]));
    if (mw->ttl_scratch == NULL || id >= MAX_WORKERS) {
        seg_destroy(&mw->shard.seg);
        free(mw->ttl_scratch);
        free(mw);
        return -ENOMEM;
    }
    publish_stats(mw);
    *ctx = mw;
    return 0;
}

static void
mc_worker_teardown(void *ctx)
{
    struct mc_worker *mw = ctx;
    struct ttl_view *old = rcu_xchg_pointer(&ttl_views[mw->id], NULL);
    if (old != NULL && metrics_defer_free(old, free) < 0) {
        metrics_synchronize(); /* no memory for a deferred free: wait for readers here */
        free(old);
    }
    while (mw->msg_cache != NULL) {
        struct mc_msg *m = mw->msg_cache;
        mw->msg_cache = m->next_free;
        buf_free(&m->req);
        buf_free(&m->reply);
        free(m);
    }
    while (mw->slot_cache != NULL) {
        struct slot *sl = mw->slot_cache;
        mw->slot_cache = sl->next_free;
        buf_free(&sl->out);
        free(sl);
    }
    seg_destroy(&mw->shard.seg);
    free(mw->ttl_scratch);
    free(mw);
}

/* The largest request: a get line (the parser's default bound), or a line and one value (larger
 * values are refused and their bytes skipped as they arrive, never buffered whole). */
static size_t
request_limit(const struct config *cfg)
{
    size_t set = (size_t)config_uint(cfg, "max-item-size") + MC_LINE_MAX;
    return set > MC_GET_LINE_DEFAULT ? set : MC_GET_LINE_DEFAULT;
}

const struct rt_product mc_product = {
    .name = "petrel",
    .conn_state_size = sizeof(struct mc_conn),
    .request_max = (16u << 20) + MC_LINE_MAX,
    .request_limit = request_limit,
    .reply_max = REPLY_MAX,
    .worker_setup = mc_worker_setup,
    .worker_teardown = mc_worker_teardown,
    .on_data = mc_on_data,
    .on_close = mc_on_close,
    .tick = mc_tick,
    .idle = mc_idle,
    .on_requests = mc_on_requests,
    .on_reply = mc_on_reply,
    .msg_free = msg_free_rt,
    .metrics = mc_metric_tables,
    .nmetrics = NTABLES,
    .admin_stats = mc_admin_stats,
};
