/*
 * mc_server: the memcached-compatible product. Contract in include/petrel/mc_server.h.
 *
 * The protocol-neutral machinery (the message pool, forwarding, the reply-slot queue, held
 * output, holes, split and gather, broadcasts, completion latency) is route's
 * (include/petrel/route.h); this file decides what each memcached request does with it.
 *
 * The path of a request: the connection's worker parses it and hashes its key once. A key this
 * worker owns is executed at once on its shard; from the first key of a batch another worker
 * owns, the batch's single-key requests go in a pipe (route.h): each worker's are copied, as
 * parsed and with their text (a value included: the one copy), into one message to it, which
 * executes them and sends the message back with their replies; this worker's run at once. A
 * multi-key get is split into windows of GET_WINDOW keys, each sent as one sub-request per owning
 * worker and gathered back in key order; flush_all and stats go to every shard; a metadump walks
 * the shards in turn, one bounded step at a time on each shard's worker (dump_emit).
 *
 * Reply order: while nothing is waiting, replies go straight into the connection's write
 * buffer. Once a request waits for another worker, it takes a slot in the connection's reply
 * queue, and every later reply queues behind it, even a local one; slots leave from the head,
 * in request order, as they complete. At most ROUTE_SLOTS_MAX slots per connection; past that the
 * connection is paused until replies come back.
 *
 * Memory: every reply byte held outside the write buffer is counted with conn_output_hold():
 * ready bytes in slots, parts back from other workers waiting their turn, and, while a request
 * is out, what its message holds for it (its parse and its text, a set's value included) plus
 * the reply room it was given (its allowance, which bounds what it brings back). No request makes
 * that grow without bound (docs/architecture.md states the bound):
 *   - a request starts only while the output is not full (conn_output_full), and, behind a
 *     waiting reply, only with more than HOLD_SLACK bytes of room; a multi-key get checks again
 *     between keys and windows, keeping its progress (mc_conn.get_next);
 *   - a forwarded request brings back at most its allowance: a share of the room left (up to
 *     ROUTE_FORWARD_REPLY_MAX) plus HOLE_KEY per key of a window, or the longest reply of a command
 *     without a value. A hit whose value does not fit comes back as a hole: its header and the
 *     item's CAS. A local reply that has to wait behind others gets the room left the same way.
 *     When a hole reaches the head of the queue and there is room for its value (or the client
 *     has read everything before it), the value is fetched from its shard if the item is still
 *     that version (a peek: no read or touch counted); else the key is answered as a miss.
 *     Never a wrong or torn value: docs/protocol.md;
 *   - so what stays held once every reply is back (request texts are dropped on return) is
 *     under the limit: when the client has read everything, the output is not full, and the
 *     head of the queue can always go on. Only the head waits for the client, and it holds at
 *     most one value beyond the limit.
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
 *
 * Threads: everything here runs on the worker that owns the connection or the message, except
 * mc_admin_stats (admin thread). A message belongs to its origin until conn_forward(), to its
 * owner until rt_msg_return(), then to its origin again.
 */
#include "petrel/prcu.h"
#include "petrel/mc_server.h"

#include "petrel_build.h"

#include "petrel/log.h"
#include "petrel/mc_detail.h"
#include "petrel/mc_dump.h"
#include "petrel/mc_persist.h"
#include "petrel/mc_exec.h"
#include "petrel/memcache.h"
#include "petrel/route.h"
#include "petrel/seg.h"

#include "resp_server.h"

#include <urcu/pointer.h>

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define IDLE_RECLAIM_ITEMS 4096         /* items reclaimed per idle slice (~200 us) */
#define IDLE_PREFAULT      (256u << 10) /* heap bytes made present per idle slice */
#define ITEM_ROOM          1024 /* -I minus this is the largest value: key and header room */
#define REPLY_MAX          ROUTE_REPLY_MAX /* the largest reply one request may produce */
#define GET_MIN            1024        /* the least allowance of a forwarded get: hole and END */
#define HOLE_MAX           2048        /* the most a hole takes (mg: VA line, EN line, key) */
#define HOLE_KEY           600         /* the most a get's hole takes: VALUE line and key */
#define GET_WINDOW         64          /* keys of a multi-key get dispatched together */
#define DUMP_CHUNK         (64u << 10) /* most bytes of dump lines one step is given room for */
#define DUMP_MIN_ROOM      4096        /* output room a dump waits for before its next step */
#define DUMP_BUCKETS       512         /* hash buckets one dump step walks at most */

/*
 * What "version" answers. Clients and tools pick protocol features by the memcached version
 * they see (memccapable, for one, expects a pre-1.4 server to refuse "version foo"), so we
 * answer with the memcached release whose protocol we implement, and name ourselves after it.
 */
#define MC_PROTOCOL_VERSION "1.6.45-petrel-" PETREL_VERSION

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
    {.name = "resp-port",
     .section = "server",
     .type = OPT_UINT,
     .dflt = "0",
     .min = 0,
     .max = 65535,
     .help = "TCP port for the Redis protocol (RESP2, RESP3), over the same items (0: off)"},
    {.name = "resp-password",
     .section = "server",
     .type = OPT_STR,
     .dflt = "",
     .help = "Redis's requirepass for the RESP port (visible in ps: prefer the file option)"},
    {.name = "resp-password-file",
     .section = "server",
     .type = OPT_STR,
     .dflt = "",
     .help = "a file whose first line is the RESP port's password (requirepass)"},
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
    {.name = "memory-file",
     .short_name = 'e',
     .section = "storage",
     .type = OPT_STR,
     .dflt = "",
     .help = "keep the item memory in this file (on tmpfs: /dev/shm, /run), so that a restart, "
             "even after a crash, keeps the cache (as memcached's -e); docs/operations.md"},
    {.name = "disable-cas",
     .short_name = 'C',
     .section = "storage",
     .type = OPT_BOOL,
     .dflt = "no",
     .help = "no CAS values (as memcached's -C): gets, mg c, ms c and ma c show 0, metadump "
             "cas=0, and a CAS compared is compared with 0"},
    {.name = "disable-dumping",
     .short_name = 'X',
     .section = "server",
     .type = OPT_BOOL,
     .dflt = "no",
     .help = "refuse the commands that list keys or prefixes: lru_crawler metadump and mgdump, "
             "stats detail (as memcached's -X)"},
    {.name = "disable-flush-all",
     .short_name = 'F',
     .section = "server",
     .type = OPT_BOOL,
     .dflt = "no",
     .help = "refuse flush_all with CLIENT_ERROR (as memcached's -F)"},
    {.name = "enable-shutdown",
     .short_name = 'A',
     .section = "server",
     .type = OPT_BOOL,
     .dflt = "no",
     .help = "accept the \"shutdown\" command (as memcached's -A)"},
    {.name = "prefix-delimiter",
     .short_name = 'D',
     .section = "server",
     .type = OPT_STR,
     .dflt = "",
     .help = "per-prefix statistics (\"stats detail\"): the one character that ends a key's "
             "prefix, and collect them from the start (as memcached's -D); without it the "
             "delimiter is ':' and collection waits for \"stats detail on\""},
};

const struct opt_table mc_option_table = {
    .name = "petrel",
    .defs = mc_options,
    .n = sizeof(mc_options) / sizeof(mc_options[0]),
};

/* What a forwarded message asks its owner to do. */
enum msg_op {
    OP_PIPE = ROUTE_OP_FETCH + 1, /* a pipe's single-key requests for this shard, parsed */
    OP_GET,    /* the keys of a get family window that this shard owns, as a request line */
    OP_FLUSH,  /* flush_all */
    OP_STATS,  /* publish the shard's counters into its metrics block */
    OP_DELETE, /* drop a key whose store was refused for lack of memory, as memcached does */
    OP_CONNS,  /* "stats conns": the worker's connections, as STAT lines */
    OP_RESET,  /* "stats reset": zero the shard's counters */
    OP_DETAIL, /* "stats detail dump": the worker's per-prefix records (mc_detail_export) */
    OP_DUMP,   /* lru_crawler metadump / mgdump: the next step of the shard's walk */
};

/* The memcached product's message: route's, and the walk of a metadump. */
struct mc_msg {
    struct route_msg r;  /* first: route (and resp_server) sees only this */
    struct mc_dump dump; /* OP_DUMP: the walk of the shard, carried back and forth */
};

static struct mc_dump *
msg_dump(struct route_msg *m)
{
    return &((struct mc_msg *)m)->dump;
}

/* What a ROUTE_SLOT_PRODUCT slot of this product waits for. */
enum slot_tag {
    TAG_FLUSH,  /* flush_all on every shard, then OK */
    TAG_STATS,  /* stats of every shard, summed */
    TAG_CONNS,  /* every worker's connections, in worker order */
    TAG_RESET,  /* every shard's counters zeroed, then RESET */
    TAG_DETAIL, /* every worker's per-prefix records, merged into one dump */
    TAG_DUMP,   /* lru_crawler metadump / mgdump: one shard after the other, step by step */
};

/* Per connection, in the runtime's conn_state(). */
struct mc_conn {
    struct route_conn rc; /* its reply queue and held output (first, as in struct resp_conn) */
    uint8_t kind;         /* CONN_NEW, CONN_MC, CONN_RESP (second, as in struct resp_conn) */
    struct mc_parser parser;
    uint32_t get_next; /* keys of the multi-key get at the front of the input already dispatched */
    struct route_slot *pipe;    /* the batch's open pipe (route_pipe_open), or NULL */
    struct conn_room pipe_room; /* the output room when it opened */
    size_t pipe_held;           /* and st->rc.held then: what the pipe adds is the difference */
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
    SM_SEGMENTS_EMPTIED,
    SM_HEAP_BYTES,
    SM_HASH_BYTES,
    SM_HASH_EXPANDING,
    SM_HASH_GROW_FAILURES,
    SM_OVERHEAD_BYTES,
    SM_FLUSHED_ITEMS,
    SM_STORE_NO_MEMORY,
    SM_RECOVERED_ITEMS,
    SM_RECOVERY_DAMAGED,
    SM_RECOVERY_EXPIRED,
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
    [SM_SEGMENTS_EMPTIED] = {"segments_emptied", METRIC_COUNTER,
                             "segments freed for reuse once overwrites and deletes emptied them"},
    [SM_HEAP_BYTES] = {"segment_heap_bytes", METRIC_GAUGE, "bytes of the segment heap"},
    [SM_HASH_BYTES] = {"hash_bytes", METRIC_GAUGE, "bytes of the hash tables"},
    [SM_HASH_EXPANDING] = {"hash_is_expanding", METRIC_GAUGE,
                           "shards whose hash table is doubling (memcached: 0 or 1)"},
    [SM_OVERHEAD_BYTES] = {"storage_overhead_bytes", METRIC_GAUGE,
                           "bytes of segment headers, TTL buckets and the merge buffer"},
    [SM_FLUSHED_ITEMS] = {"flushed_items", METRIC_COUNTER, "items dropped by flush_all"},
    [SM_HASH_GROW_FAILURES] = {"hash_grow_failures", METRIC_COUNTER,
                               "hash table doublings put off for lack of memory (tried again)"},
    [SM_STORE_NO_MEMORY] = {"store_no_memory", METRIC_COUNTER, "stores refused for lack of memory"},
    /* What the start found in the memory file (--memory-file): facts of the start, not reset. */
    [SM_RECOVERED_ITEMS] = {"recovered_items", METRIC_GAUGE,
                            "items recovered from the memory file at start"},
    [SM_RECOVERY_DAMAGED] = {"recovery_damaged_items", METRIC_GAUGE,
                             "items of the memory file dropped at start as torn or damaged"},
    [SM_RECOVERY_EXPIRED] = {"recovery_expired_items", METRIC_GAUGE,
                             "items of the memory file dropped at start as expired"},
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

/* Counters of the server glue itself, counted by the worker that reads the request. */
enum srv_metric { SRV_CMD_META, SRV_COUNT };

static const struct metric_def srv_metric_defs[SRV_COUNT] = {
    [SRV_CMD_META] = {"cmd_meta", METRIC_COUNTER,
                      "me (meta debug) commands, which is what memcached counts as cmd_meta"},
};

enum { TABLE_CMD, TABLE_SEG, TABLE_LAT, TABLE_SRV, NTABLES };

static const struct metric_table mc_metric_tables[NTABLES] = {
    [TABLE_CMD] = {"commands", cmd_metric_defs, NCMD_METRICS},
    [TABLE_SEG] = {"storage", seg_metric_defs, SM_COUNT},
    [TABLE_LAT] = {"latency", lat_metric_defs, LAT_COUNT},
    [TABLE_SRV] = {"server", srv_metric_defs, SRV_COUNT},
};

/* A worker's TTL buckets that hold segments or items or have counted a command, for the
 * admin's "stats seg" and the data port's "stats items" and "stats slabs": worker(w) -> admin
 * and every worker(r), an RCU-protected pointer replaced (never changed in place) when the
 * buckets change. Counters run from the last "stats reset". */
struct ttl_view {
    size_t n;
    struct ttl_entry {
        uint32_t idx; /* bucket index */
        struct seg_ttl_stats st;
        struct mc_class_stats cmd; /* the commands counted in this class (mc_exec.h) */
    } e[];
};

/* Add one shard's command counters of a class to a sum. */
static void
class_cmd_add(struct mc_class_stats *d, const struct mc_class_stats *e)
{
    d->get_hits += e->get_hits;
    d->cmd_set += e->cmd_set;
    d->delete_hits += e->delete_hits;
    d->incr_hits += e->incr_hits;
    d->decr_hits += e->decr_hits;
    d->cas_hits += e->cas_hits;
    d->cas_badval += e->cas_badval;
    d->touch_hits += e->touch_hits;
}

/* Whether any command was counted in a class. */
static bool
class_cmd_any(const struct mc_class_stats *c)
{
    static const struct mc_class_stats none;
    return memcmp(c, &none, sizeof(none)) != 0;
}

#define MAX_WORKERS 256 /* the runtime's --threads maximum */
static struct ttl_view *ttl_views[MAX_WORKERS];

/* Per worker. */
struct mc_worker {
    struct route_worker rw;  /* its messages, slots and latency batch */
    struct resp_worker resp; /* the RESP port's connections (argv room only with --resp-port) */
    const struct config *cfg;
    struct mc_shard shard;
    struct mc_parser_opts popts;
    metric_t *m_cmd, *m_seg;        /* this worker's slots of the commands and storage tables ... */
    metric_t *m_srv;                /* ... and of the server's (route has the latency table's) */
    uint64_t limit_share;           /* its share of -m, shown as limit_maxbytes */
    size_t seg_size;                /* the shard's segment size (-I may raise the option's) */
    struct seg_stats seg_base;      /* the storage counters at the last "stats reset" */
    struct ttl_view *ttl_scratch;   /* worker-private: the next view, built each tick */
    struct seg_ttl_stats *ttl_base; /* each TTL bucket's counters at the last "stats reset" */
    bool reclaim_left;              /* the last tick left expired segments to reclaim */
    char delim;                     /* "stats detail": the end of a key's prefix (-D) */
    bool dump_disabled;             /* -X: no metadump, mgdump or stats detail */
    bool flush_disabled;            /* -F: no flush_all */
    struct mc_detail *detail;       /* "stats detail": this worker's per-prefix counters */
};

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
    /* The storage engine's counters run from its start; "stats reset" moves the zero. */
    const struct seg_stats *b = &mw->seg_base;
    ss.total_items -= b->total_items;
    ss.expired_unfetched -= b->expired_unfetched;
    ss.evicted_unfetched -= b->evicted_unfetched;
    ss.evicted_items -= b->evicted_items;
    ss.expired_items -= b->expired_items;
    ss.merges -= b->merges;
    ss.emptied_segs -= b->emptied_segs;
    ss.hash_grow_failures -= b->hash_grow_failures;
    ss.flushed_items -= b->flushed_items;
    ss.store_no_memory -= b->store_no_memory;
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
        [SM_SEGMENTS_EMPTIED] = ss.emptied_segs,
        [SM_HEAP_BYTES] = ss.heap_bytes,
        [SM_HASH_BYTES] = ss.hash_bytes,
        [SM_HASH_EXPANDING] = ss.hash_growing,
        [SM_HASH_GROW_FAILURES] = ss.hash_grow_failures,
        [SM_OVERHEAD_BYTES] = ss.overhead_bytes,
        [SM_FLUSHED_ITEMS] = ss.flushed_items,
        [SM_STORE_NO_MEMORY] = ss.store_no_memory,
        [SM_RECOVERED_ITEMS] = ss.recovered_items,
        [SM_RECOVERY_DAMAGED] = ss.recovery_damaged,
        [SM_RECOVERY_EXPIRED] = ss.recovery_expired,
    };
    for (size_t i = 0; i < SM_COUNT; i++) {
        metrics_set(&mw->m_seg[i], v[i]);
    }
}

/*
 * Rebuild this worker's TTL view; publish it only when it changed (an idle server publishes
 * nothing). Bound: one pass over the TTL buckets (seg_ttl_bucket_count()), each reading at most
 * SEG_AGE_SCAN segment headers.
 */
static void
publish_ttl(struct mc_worker *mw)
{
    struct ttl_view *v = mw->ttl_scratch;
    v->n = 0;
    for (size_t i = 0; i < seg_ttl_bucket_count(); i++) {
        struct seg_ttl_stats st;
        const struct mc_class_stats *cmd = &mw->shard.classes[i];
        if (seg_ttl_stats_get(mw->shard.seg, i, &st) == 0 &&
            (st.segs > 0 || st.items > 0 || class_cmd_any(cmd))) {
            const struct seg_ttl_stats *b = &mw->ttl_base[i];
            st.evicted -= b->evicted;
            st.evicted_unfetched -= b->evicted_unfetched;
            st.expired -= b->expired;
            st.expired_unfetched -= b->expired_unfetched;
            st.no_memory -= b->no_memory;
            v->e[v->n].idx = (uint32_t)i;
            v->e[v->n].st = st;
            v->e[v->n].cmd = *cmd;
            v->n++;
        }
    }
    struct ttl_view *cur = ttl_views[mw->rw.id];
    if (cur != NULL && cur->n == v->n && memcmp(cur->e, v->e, v->n * sizeof(v->e[0])) == 0) {
        return;
    }
    size_t size = sizeof(*v) + v->n * sizeof(v->e[0]);
    struct ttl_view *copy = malloc(size);
    if (copy == NULL) {
        return; /* the admin keeps the older view */
    }
    memcpy(copy, v, size);
    prcu_publish();
    struct ttl_view *old = rcu_xchg_pointer(&ttl_views[mw->rw.id], copy);
    if (old != NULL && prcu_defer_free(old, free) < 0) {
        prcu_synchronize(); /* rare: no memory for a deferred free, so wait for readers */
        free(old);
    }
}

/* "stats reset" on this worker: its command counters (also those per TTL bucket), the storage
 * counters and those of every TTL bucket (by moving their zero), and the runtime's counters and
 * latency histograms of this worker; gauges (items, bytes, connections, ages) stay. Published at
 * once, so a "stats", "stats items" or "stats slabs" behind it agrees. Bound: one pass over the TTL
 * buckets. */
static void
stats_reset(struct mc_worker *mw)
{
    memset(&mw->shard.stats, 0, sizeof(mw->shard.stats));
    memset(mw->shard.classes, 0, sizeof(mw->shard.classes));
    seg_stats_get(mw->shard.seg, &mw->seg_base);
    for (size_t i = 0; i < seg_ttl_bucket_count(); i++) {
        (void)seg_ttl_stats_get(mw->shard.seg, i, &mw->ttl_base[i]);
    }
    mc_detail_clear(mw->detail); /* memcached forgets its prefixes on "stats reset" too */
    rt_stats_reset();
    publish_stats(mw);
    publish_ttl(mw);
}

/* ---- per-prefix statistics ("stats detail") ---- */

/*
 * Whether keys are counted per prefix: "stats detail on|off" on any connection, or -D at start.
 * any worker(w) -> every worker(r), relaxed: a worker may count a request or two more or
 * fewer around the switch, as memcached's unlocked flag does. The only cost while off is this
 * load and its branch, once per keyed request.
 */
static _Atomic bool detail_on;

static inline bool
detail_enabled(void)
{
    return atomic_load_explicit(&detail_on, memory_order_relaxed);
}

/* Hits this shard counted so far: a get that raises it found its key (gat counts touch_hits). */
static uint64_t
detail_hits(const struct mc_worker *mw)
{
    return mw->shard.stats.get_hits + mw->shard.stats.touch_hits;
}

/*
 * Count a request that just ran on this worker's shard under its key's prefix, as memcached
 * does: each key of the get family (with whether it was found: detail_hits() moved past mark),
 * the classic stores and cas whatever their outcome, and delete. Other commands are not counted.
 */
static void
detail_note(struct mc_worker *mw, const struct mc_req *req, const char *key, size_t klen,
            uint64_t mark)
{
    enum mc_detail_kind kind;
    switch (req->cmd) {
    case MC_CMD_GET:
    case MC_CMD_GETS:
    case MC_CMD_GAT:
    case MC_CMD_GATS:
        kind = MC_DETAIL_GET;
        break;
    case MC_CMD_SET:
    case MC_CMD_ADD:
    case MC_CMD_REPLACE:
    case MC_CMD_APPEND:
    case MC_CMD_PREPEND:
    case MC_CMD_CAS:
        kind = MC_DETAIL_SET;
        break;
    case MC_CMD_DELETE:
        kind = MC_DETAIL_DEL;
        break;
    default:
        return;
    }
    mc_detail_count(mw->detail, key, klen, mw->delim, kind, detail_hits(mw) != mark);
}

/* mc_exec_get_key_max(), counted per prefix while "stats detail" is on. Inline: a forwarded
 * get's path. */
static inline int
shard_get_key_max(struct mc_worker *mw, const struct mc_req *req, const char *key, size_t klen,
                  uint64_t hash, size_t max, struct buf *out, struct mc_deferred *d)
{
    if (!detail_enabled()) {
        return mc_exec_get_key_max(&mw->shard, req, key, klen, hash, max, out, d);
    }
    uint64_t mark = detail_hits(mw);
    int rc = mc_exec_get_key_max(&mw->shard, req, key, klen, hash, max, out, d);
    detail_note(mw, req, key, klen, mark);
    return rc;
}

/* mc_exec_get_key(), counted per prefix while "stats detail" is on. */
static int
shard_get_key(struct mc_worker *mw, const struct mc_req *req, uint64_t hash, struct buf *out)
{
    if (!detail_enabled()) {
        return mc_exec_get_key(&mw->shard, req, req->key, req->klen, hash, out);
    }
    uint64_t mark = detail_hits(mw);
    int rc = mc_exec_get_key(&mw->shard, req, req->key, req->klen, hash, out);
    detail_note(mw, req, req->key, req->klen, mark);
    return rc;
}

/* mc_exec(), counted per prefix while "stats detail" is on. */
static int
shard_exec(struct mc_worker *mw, const struct mc_req *req, uint64_t hash, struct buf *out)
{
    int rc = mc_exec(&mw->shard, req, hash, out);
    if (detail_enabled()) {
        detail_note(mw, req, req->key, req->klen, 0);
    }
    return rc;
}

/* mc_exec_max(), counted per prefix while "stats detail" is on. */
static int
shard_exec_max(struct mc_worker *mw, const struct mc_req *req, uint64_t hash, size_t max,
               struct buf *out, struct mc_deferred *d)
{
    int rc = mc_exec_max(&mw->shard, req, hash, max, out, d);
    if (detail_enabled()) {
        detail_note(mw, req, req->key, req->klen, 0);
    }
    return rc;
}

/* What a "stats detail ..." request asks. */
enum detail_verb { DETAIL_NOT, DETAIL_ON, DETAIL_OFF, DETAIL_DUMP, DETAIL_USAGE };

/*
 * Read a stats request's arguments as "detail VERB". Like memcached 1.6.45, a verb is taken
 * when it begins the word ("o" is on, "of" off, "d" dump), and the words after it are ignored.
 */
static enum detail_verb
detail_verb_of(const struct mc_req *req)
{
    const char *p = req->args, *end = req->args + req->args_len;
    if (req->nargs < 1 || req->args_len < 6 || memcmp(p, "detail", 6) != 0 ||
        (req->args_len > 6 && p[6] != ' ' && p[6] != '\t')) {
        return DETAIL_NOT;
    }
    p += 6;
    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }
    size_t n = 0;
    while (p + n < end && p[n] != ' ' && p[n] != '\t') {
        n++;
    }
    static const struct {
        const char *word;
        enum detail_verb verb;
    } verbs[] = {{"on", DETAIL_ON}, {"off", DETAIL_OFF}, {"dump", DETAIL_DUMP}};
    for (size_t i = 0; n > 0 && i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        if (n <= strlen(verbs[i].word) && memcmp(p, verbs[i].word, n) == 0) {
            return verbs[i].verb;
        }
    }
    return DETAIL_USAGE;
}

/* "stats detail on|off", or the usage error: no shard needed. */
static int
detail_switch(enum detail_verb verb, struct buf *out)
{
    if (verb == DETAIL_USAGE) {
        return buf_puts(out, "CLIENT_ERROR usage: stats detail on|off|dump\r\n");
    }
    atomic_store_explicit(&detail_on, verb == DETAIL_ON, memory_order_relaxed);
    return mc_compose_reply(out, MC_R_OK);
}

/*
 * The dump, once every worker's records are back: merged prefix by prefix into one table (at
 * most every worker's cap together), written as memcached's lines and END.
 */
static int
detail_dump(struct mc_worker *mw, struct route_slot *s, struct buf *out)
{
    struct mc_detail *all = NULL; /* also when mc_detail_create() fails: destroyed below */
    int rc = mc_detail_create(&all, (size_t)mw->rw.n * MC_DETAIL_PREFIXES);
    for (uint32_t i = 0; rc == 0 && i < s->nparts; i++) {
        const struct route_msg *m = s->parts[i];
        if (m != NULL && buf_len(&m->reply.b) > 0) { /* an empty buffer may have no memory */
            rc = mc_detail_import(all, buf_rptr(&m->reply.b), buf_len(&m->reply.b));
        }
    }
    if (rc == 0) {
        rc = mc_detail_dump(all, out);
    }
    mc_detail_destroy(&all);
    return rc;
}

/* A worker's share of the prefixes memcached keeps at most (MC_DETAIL_PREFIXES), at least 256. */
static size_t
detail_cap(unsigned nworkers)
{
    size_t share = MC_DETAIL_PREFIXES / nworkers;
    return share > 256 ? share : 256;
}

/* Record the hole whose header mc_exec appended to r at `at` (route_rb_hole). */
static int
rb_hole(struct route_rb *r, size_t at, const struct mc_deferred *d, const char *key, size_t klen,
        uint64_t hash)
{
    struct route_version v = {.cas = d->cas, .vlen = d->vlen};
    return route_rb_hole(r, at, d->hdr_len, d->miss_len, &v, key, klen, hash);
}

/* One key of a get family request on this shard, into r with max bytes of room. Inline: it is
 * the forwarded get's path. */
static inline int
rb_get_key(struct mc_worker *mw, struct route_rb *r, const struct mc_req *req, const char *key,
           size_t klen, uint64_t hash, size_t max)
{
    struct mc_deferred d;
    size_t at = route_rb_end(r);
    int rc = shard_get_key_max(mw, req, key, klen, hash, max, &r->b, &d);
    return rc == 1 ? rb_hole(r, at, &d, key, klen, hash) : rc;
}

/* Any other keyed request on this shard, into r with max bytes of room (only mg v uses it). */
static int
rb_exec(struct mc_worker *mw, struct route_rb *r, const struct mc_req *req, uint64_t hash,
        size_t max)
{
    struct mc_deferred d;
    size_t at = route_rb_end(r);
    int rc = shard_exec_max(mw, req, hash, max, &r->b, &d);
    return rc == 1 ? rb_hole(r, at, &d, req->key, req->klen, hash) : rc;
}

/* A get family line whose keys all belong to this shard: answer each within the room the
 * message has, recording where each key's answer ends. On failure the part answers nothing
 * (nkeys 0): the origin sends its keys as misses. */
static void
exec_get_part(struct mc_worker *mw, struct route_msg *m, const struct mc_req *req)
{
    struct mc_key_iter it;
    const char *key;
    size_t klen;
    uint32_t i = 0;
    mc_args_begin(req, &it);
    while (i < m->nkeys && mc_args_next(&it, &key, &klen)) {
        /* A value is copied only if every key after it can still be a hole within the
         * allowance: the reply never outgrows what the origin counted for it. */
        size_t used = buf_len(&m->reply.b) + (size_t)(m->nkeys - i - 1) * HOLE_KEY;
        size_t max = m->allow > used ? m->allow - used : 0;
        if (rb_get_key(mw, &m->reply, req, key, klen, mc_key_hash(key, klen), max) < 0) {
            log_error("out of memory answering a forwarded get; its keys are sent as misses");
            m->nkeys = 0;
            route_rb_reset(&m->reply);
            return;
        }
        m->koff[i++] = (uint32_t)route_rb_end(&m->reply);
    }
}

static bool
is_get_family(enum mc_cmd cmd)
{
    return cmd == MC_CMD_GET || cmd == MC_CMD_GETS || cmd == MC_CMD_GAT || cmd == MC_CMD_GATS;
}

/* Requests parsed ahead of execution, so that their storage lookups overlap. */
#define AHEAD     16
#define ITEM_LEAD 8

struct ahead {
    struct mc_req req;
    uint64_t hash;
    bool keyed;     /* is_keyed(&req): hash is its key's */
    bool local;     /* keyed and owned by this worker: prefetched */
    uint16_t owner; /* keyed: the shard that owns its key */
};

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
 * A request about one key (a single-key get included) on this shard, appended to r in at most
 * max bytes (a get's END included). A reply that cannot be composed becomes memcached's error,
 * in place of what this request had appended. Returns 0, or -ENOMEM when not even that could
 * be written (the request has no reply: the connection must close).
 */
static inline __attribute__((always_inline)) int
keyed_into(struct mc_worker *mw, struct route_rb *r, const struct mc_req *req, uint64_t hash,
           size_t max)
{
    size_t mark = buf_len(&r->b);
    uint32_t holes = r->nholes;
    int rc;
    if (is_get_family(req->cmd)) {
        size_t end = sizeof("END\r\n") - 1;
        rc = rb_get_key(mw, r, req, req->key, req->klen, hash, max > end ? max - end : 0);
        rc = rc < 0 ? rc : mc_compose_reply(&r->b, MC_R_END);
    } else {
        rc = rb_exec(mw, r, req, hash, max);
    }
    if (rc < 0) {
        /* memcached's replies when a reply cannot be written; they replace what was. */
        r->b.wpos = r->b.rpos + mark;
        r->nholes = holes;
        return buf_puts(&r->b, is_get_family(req->cmd)
                                   ? "SERVER_ERROR out of memory writing get response\r\n"
                                   : "SERVER_ERROR out of memory\r\n");
    }
    return 0;
}

/* keyed_into(), called: the one copy inlined is a pipe's loop on its owner (exec_pipe). */
static int
exec_keyed(struct mc_worker *mw, struct route_rb *r, const struct mc_req *req, uint64_t hash,
           size_t max)
{
    return keyed_into(mw, r, req, hash, max);
}

/*
 * A request in a pipe's part: the origin's parse of it (struct ahead, its views packed with
 * mc_req_pack, its hash computed), then its text, padded to 8 bytes. The owner reads each
 * struct where it lies (exec_pipe): the part's buffer is filled from its start (an emptied
 * buf starts over at 0) and malloc aligns it. Parsing and hashing once costs one copy of the
 * struct (about 450 bytes), less than half of what a second parse and hash cost.
 */
#define PIPE_ALIGN(n) (((n) + 7) & ~(size_t)7)
_Static_assert(sizeof(struct ahead) % 8 == 0, "a pipe's requests stay 8-byte aligned");
#define PIPE_PART_MAX (256u << 10) /* request bytes past which a pipe's part is sent */

static int
pipe_put(struct buf *b, const struct ahead *a, const char *text)
{
    size_t need = sizeof(*a) + PIPE_ALIGN(a->req.consumed);
    if (buf_avail(b) < need && buf_reserve(b, need) < 0) {
        return -ENOMEM;
    }
    struct ahead *p = (struct ahead *)(void *)buf_wptr(b); /* aligned: see exec_pipe */
    mc_req_pack(&p->req, &a->req, text);
    p->hash = a->hash;
    memcpy(p + 1, text, a->req.consumed);
    buf_commit(b, need);
    return 0;
}

/*
 * A pipe's part on its owner: take its requests as the origin parsed them (pipe_put),
 * prefetching each key's bucket, and its item ITEM_LEAD requests later, then run them in order,
 * each within the allowance koff[i] holds, which it replaces with the end of its reply.
 */
static void
exec_pipe(struct mc_worker *mw, struct route_msg *m)
{
    struct ahead *a[AHEAD];
    char *at = buf_rptr(&m->req);                     /* aligned: pipe_put */
    uint32_t n = m->nkeys < AHEAD ? m->nkeys : AHEAD; /* AHEAD at most: route_pipe_open */
    for (uint32_t i = 0; i < n; i++) {
        a[i] = (struct ahead *)(void *)at;
        mc_req_unpack(&a[i]->req, (const char *)(a[i] + 1));
        at += sizeof(*a[i]) + PIPE_ALIGN(a[i]->req.consumed);
        seg_prefetch(mw->shard.seg, a[i]->hash);
        if (i >= ITEM_LEAD) {
            seg_prefetch_item(mw->shard.seg, a[i - ITEM_LEAD]->hash);
        }
    }
    uint32_t items = n > ITEM_LEAD ? n - ITEM_LEAD : 0; /* items prefetched so far */
    for (uint32_t i = 0; i < n; i++) {
        for (uint32_t upto = i + ITEM_LEAD + 1 < n ? i + ITEM_LEAD + 1 : n; items < upto; items++) {
            seg_prefetch_item(mw->shard.seg, a[items]->hash);
        }
        if (keyed_into(mw, &m->reply, &a[i]->req, a[i]->hash, m->koff[i]) < 0) {
            log_error("out of memory answering a forwarded request; it has no reply");
        }
        m->koff[i] = (uint32_t)route_rb_end(&m->reply);
    }
}

/* route_ops.fetch: the value a hole left out, if the item is still that version (a peek). */
static int
mc_fetch(void *ctx, const char *key, size_t klen, uint64_t hash, const struct route_version *v,
         struct buf *out)
{
    struct mc_worker *mw = ctx;
    struct mc_deferred d = {.cas = v->cas, .vlen = v->vlen};
    return mc_exec_fetch(&mw->shard, key, klen, hash, &d, out);
}

/*
 * Parse the request line of an OP_GET message (a window's keys for this shard, written by the
 * origin: part_line) into req. Returns false (and logs) if it does not parse.
 */
static bool
msg_parse(struct mc_worker *mw, struct route_msg *m, struct mc_req *req)
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
/* One connection of "stats conns", as memcached writes it: addr, listen_addr, state,
 * secs_since_last_cmd; then, for TLS, the transport and the client certificate's subject. */
static void
write_conn(void *arg, const struct rt_conn_info *ci)
{
    struct buf *out = arg;
    const char *proto = ci->family == AF_UNIX ? "unix" : ci->family == AF_INET6 ? "tcp6" : "tcp";
    char name[48], value[320];
    struct {
        const char *field, *fmt;
        const char *a, *b;
    } lines[] = {
        {"addr", "%s:%s", proto, ci->peer},
        {"listen_addr", "%s:%s", proto, ci->listener},
        {"state", "%s%s", ci->state, ""},
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        snprintf(name, sizeof(name), "%d:%s", ci->fd, lines[i].field);
        snprintf(value, sizeof(value), lines[i].fmt, lines[i].a, lines[i].b);
        (void)mc_compose_stat(out, name, value);
    }
    snprintf(name, sizeof(name), "%d:secs_since_last_cmd", ci->fd);
    (void)mc_compose_stat_u64(out, name, ci->idle_secs);
    if (strcmp(ci->transport, "tls") == 0) {
        snprintf(name, sizeof(name), "%d:transport", ci->fd);
        (void)mc_compose_stat(out, name, "tls");
        if (ci->tls_client[0] != '\0') {
            snprintf(name, sizeof(name), "%d:tls_client", ci->fd);
            (void)mc_compose_stat(out, name, ci->tls_client);
        }
    }
}

static void
msg_execute(struct mc_worker *mw, struct route_msg *m, const struct mc_req *req)
{
    struct mc_req parsed;
    if (m->op >= RESP_OP) {
        resp_msg_execute(&mw->resp, m);
        return;
    }
    switch (m->op) {
    case OP_PIPE:
        exec_pipe(mw, m);
        break;
    case OP_GET:
        if (req == NULL && msg_parse(mw, m, &parsed)) {
            req = &parsed;
        }
        if (req == NULL) {
            m->nkeys = 0; /* its keys are misses */
            break;
        }
        exec_get_part(mw, m, req);
        break;
    case ROUTE_OP_FETCH:
        m->hit =
            mc_fetch(mw, buf_rptr(&m->req), buf_len(&m->req), m->hash, &m->want, &m->reply.b) == 1;
        if (!m->hit) {
            route_rb_reset(&m->reply);
        }
        break;
    case OP_DELETE:
        (void)seg_delete(mw->shard.seg, buf_rptr(&m->req), buf_len(&m->req), m->hash);
        break;
    case OP_FLUSH:
        seg_flush(mw->shard.seg, m->arg);
        break;
    case OP_STATS:
        publish_stats(mw);
        break;
    case OP_CONNS:
        /* Worker 0's part also lists the listening sockets, as memcached's does. */
        rt_conns_each(mw->rw.id == 0, write_conn, &m->reply.b);
        break;
    case OP_RESET:
        stats_reset(mw);
        break;
    case OP_DETAIL:
        if (mc_detail_export(mw->detail, &m->reply.b) < 0) {
            log_error("out of memory for this worker's part of \"stats detail dump\"; left out");
            route_rb_reset(&m->reply);
        }
        break;
    case OP_DUMP: {
        int rc = mc_dump_step(&mw->shard, msg_dump(m), &m->reply.b, m->allow, DUMP_BUCKETS);
        if (rc < 0) {
            log_error("out of memory for a metadump step; the connection will be closed");
        }
        m->more = rc > 0;
        m->failed = rc < 0;
        break;
    }
    }
}

/* ---- the product's reply slots ---- */

/*
 * A dump at the head of the queue: send the lines of its last step, then start the next step,
 * on the same shard or from the start of the next one (a message walks one shard at a time, on
 * its owner's thread, and comes back). A step starts only with DUMP_MIN_ROOM of output room and
 * is given no more than the room left (DUMP_CHUNK at most), so a client that does not read
 * holds the dump: the server buffers at most its output limit and one hash bucket's lines. At
 * most one step runs here per call (the others run on their owners), so one event-loop turn
 * does a bounded walk. Returns 1 (all of it sent), 0 (it waits) or a negative errno.
 */
static int
dump_emit(struct mc_worker *mw, struct conn *c, struct route_conn *rc, struct route_slot *s)
{
    struct buf *wb = conn_wbuf(c);
    bool ran_here = false;
    for (;;) {
        struct route_msg *m = s->parts[0];
        if (m == NULL || m->failed) {
            /* The step could not be sent or run: the connection closes, and the client, which
             * gets no END, knows that the dump is not whole. */
            return -ENOMEM;
        }
        int r = route_emit_rb(&mw->rw, c, rc, s, &m->reply, route_rb_end(&m->reply));
        route_charge(c, rc, &m->charged, route_msg_held(m));
        if (r <= 0) {
            return r;
        }
        if (!m->more) {
            /* That shard is done: what is left is the next one, from its start. */
            s->ekey++;
            msg_dump(m)->cur = (struct seg_cursor){0};
            m->more = true;
        }
        if (s->ekey >= mw->rw.n) {
            return buf_puts(wb, msg_dump(m)->mgdump ? "EN\r\n" : "END\r\n") == 0 ? 1 : -ENOMEM;
        }
        size_t room = conn_output_room(c);
        if (room < DUMP_MIN_ROOM && buf_len(wb) == 0) {
            /* What takes the room is held behind this dump (requests pipelined after it) and
             * cannot leave before it: waiting would wait forever. Go on, a little past the
             * limit, as a reply part may. */
            room = DUMP_MIN_ROOM;
        }
        if (room < DUMP_MIN_ROOM || (ran_here && s->ekey == mw->rw.id)) {
            return 0; /* called again once the client read some, or on the next turn */
        }
        m->allow = (uint32_t)(room < DUMP_CHUNK ? room : DUMP_CHUNK);
        s->parts[0] = NULL;
        s->waiting = 1;
        ran_here = s->ekey == mw->rw.id;
        r = route_send_part(&mw->rw, c, rc, s, m, s->ekey);
        if (r < 0 || s->waiting > 0) {
            return r;
        }
    }
}

/* metrics_stat_fn: one of the runtime's stats as memcached's STAT line, into the buffer arg. */
static int
stat_line(void *arg, const char *name, const char *value)
{
    return mc_compose_stat(arg, name, value);
}

/* route_ops.emit: the head slot s, one of this product's (enum slot_tag). Returns 1 (all of it
 * sent), 0 (it waits) or a negative errno. */
static int
mc_emit(void *ctx, struct conn *c, struct route_conn *rc, struct route_slot *s)
{
    struct mc_worker *mw = ctx;
    struct buf *wb = conn_wbuf(c);
    int r;
    switch (s->tag) {
    case TAG_FLUSH:
        return s->noreply || mc_compose_reply(wb, MC_R_OK) == 0 ? 1 : -ENOMEM;
    case TAG_RESET:
        return mc_compose_reply(wb, MC_R_RESET) == 0 ? 1 : -ENOMEM;
    case TAG_STATS:
        /* Its reply (a few KiB) is written only now: like a hole, it waits for room. */
        if (buf_len(wb) > 0 && conn_output_full(c)) {
            return 0;
        }
        /* Every shard published its figures before its part came back: the registry is
         * exact for everything this connection did before "stats". */
        r = rt_stats_each(MC_PROTOCOL_VERSION, stat_line, wb);
        r = r < 0 ? r : mc_compose_reply(wb, MC_R_END);
        return r < 0 ? r : 1;
    case TAG_DETAIL:
        /* Like "stats", written only now and whole: it waits for room. */
        if (buf_len(wb) > 0 && conn_output_full(c)) {
            return 0;
        }
        r = detail_dump(mw, s, wb);
        return r < 0 ? r : 1;
    case TAG_CONNS:
        for (; s->ekey < s->nparts; s->ekey++) {
            struct route_msg *m = s->parts[s->ekey];
            if (m == NULL) {
                continue; /* that worker could not be asked (out of memory, logged) */
            }
            r = route_emit_rb(&mw->rw, c, rc, s, &m->reply, route_rb_end(&m->reply));
            route_charge(c, rc, &m->charged, route_msg_held(m));
            if (r <= 0) {
                return r;
            }
        }
        return mc_compose_reply(wb, MC_R_END) == 0 ? 1 : -ENOMEM;
    case TAG_DUMP:
        return dump_emit(mw, c, rc, s);
    default:
        return resp_emit(&mw->resp, c, rc, s);
    }
}

/* ---- dispatch ---- */

/* What dispatching one request did, besides a negative errno (no memory: close). */
enum ex_rc {
    EX_DONE = 0, /* answered or sent on its way: consume it */
    EX_STOP,     /* stopped inside it for room, its progress kept: not consumed */
    EX_PAUSE,    /* stopped inside it: too many slots: not consumed */
    EX_WAIT,     /* a close must wait until every earlier reply is sent: not consumed */
    EX_CLOSE,    /* quit or shutdown: consume it, send what is queued, close */
};

/* True when a request's reply may carry a value: the get family and mg with v. */
static bool
has_value(const struct mc_req *req)
{
    return is_get_family(req->cmd) || (req->cmd == MC_CMD_MG && (req->meta.seen & MC_MF('v')));
}

/*
 * The most bytes the reply of a request without a value can take: a text command's reply line
 * (the longest: "CLIENT_ERROR cannot increment or decrement non-numeric value"), or a meta
 * reply: its code, the numbers of c f h l s t, W X Z, and the key and opaque it echoes.
 */
static uint32_t
reply_bound(const struct mc_req *req)
{
    switch (req->cmd) {
    case MC_CMD_MG:
    case MC_CMD_MS:
    case MC_CMD_MD:
    case MC_CMD_MA:
    case MC_CMD_ME:
        return 256 + req->klen_raw + req->meta.opaque_len;
    default:
        return 64;
    }
}

/*
 * The reply room of a request held behind a waiting reply, from the output room: what it adds
 * stays under the limit (the caller saw more than ROUTE_HOLD_SLACK of room, more than any hole
 * or reply without a value takes).
 */
static size_t
held_room(size_t room)
{
    return room > 0 ? room - 1 : 0;
}

/*
 * The output room while the batch's pipe is open. The room is read once, when it opens: until
 * it closes only what the pipe holds for c changes (no reply goes to the write buffer, nothing
 * else of c's worker moves), so the room is the room then less what the pipe has been charged
 * since. It is read for every request of a pipe.
 */
static inline size_t
pipe_room(const struct mc_conn *st)
{
    return conn_room_left(&st->pipe_room, st->rc.held - st->pipe_held);
}

/* Send the batch's pipe, if it has one. Returns 0 or -ENOMEM. */
static int
pipe_close(struct mc_worker *mw, struct conn *c, struct mc_conn *st)
{
    struct route_slot *s = st->pipe;
    st->pipe = NULL;
    return s != NULL ? route_pipe_close(&mw->rw, c, &st->rc, s) : 0;
}

/*
 * A single-key request into the batch's pipe, opened by the first one another worker owns
 * (route.h, "pipes"). This worker's runs at once into its own part, within the room left; one
 * another worker owns goes into that worker's part as parsed here (pipe_put), with the reply
 * room it may bring back (its allowance: a share of the room for a value, else the longest
 * reply it can have).
 */
static int
pipe_add(struct mc_worker *mw, struct conn *c, struct mc_conn *st, const struct ahead *a,
         const char *text)
{
    const struct mc_req *req = &a->req;
    unsigned owner = a->owner;
    struct route_worker *rw = &mw->rw;
    struct route_slot *s = st->pipe;
    if (s == NULL) {
        if ((s = st->pipe = route_pipe_open(rw, &st->rc, AHEAD)) == NULL) {
            return -ENOMEM;
        }
        st->pipe_room = conn_output_budget(c);
        st->pipe_held = st->rc.held;
    }
    size_t room = pipe_room(st);
    struct route_msg *m = route_pipe_part(rw, &st->rc, s, owner, OP_PIPE, AHEAD);
    if (m == NULL) {
        return -ENOMEM;
    }
    if (owner == rw->id) {
        if (exec_keyed(mw, &m->reply, req, a->hash, held_room(room)) < 0) {
            return -ENOMEM;
        }
        m->koff[m->nkeys] = (uint32_t)route_rb_end(&m->reply);
    } else {
        uint32_t allow = is_get_family(req->cmd) ? route_allowance_of(room, GET_MIN)
                         : has_value(req)        ? route_allowance_of(room, HOLE_MAX)
                                                 : reply_bound(req);
        if (pipe_put(&m->req, a, text) < 0) {
            return -ENOMEM;
        }
        m->koff[m->nkeys] = allow;
        m->allow += allow;
    }
    route_pipe_add(&st->rc, s, m);
    route_slot_time(rw, s);
    if (buf_len(&m->req) >= PIPE_PART_MAX) {
        /* A part of large values goes now, and the requests after it make a new pipe: a
         * message stays far below ROUTE_REPLY_MAX (one value is 16 MiB at most). */
        return pipe_close(mw, c, st) < 0 ? -ENOMEM : EX_DONE;
    }
    return EX_DONE;
}

/* A key of a window: its place in the request. */
struct wkey {
    const char *key;
    size_t klen;
};

/* The request line of a window part: the command (and gat's exptime) as the client sent it. */
static int
part_line(struct route_msg *m, const struct mc_req *req)
{
    int rc = buf_puts(&m->req, mc_cmd_name(req->cmd));
    if (rc == 0 && (req->cmd == MC_CMD_GAT || req->cmd == MC_CMD_GATS)) {
        rc = buf_printf(&m->req, " %d", (int)req->exptime);
    }
    return rc;
}

/*
 * The next window of a multi-key get (from it, whose first key is another worker's): up to
 * GET_WINDOW keys, fewer when the room left is small, in one slot with one part per owning
 * shard, each key answered by its part in key order. A quarter of the room pays for the holes
 * every key may become, a quarter for copied values, shared by key; what the request lines take
 * while out is less than another quarter. *taken: keys in the window; *last: none follows.
 */
static int
get_window(struct mc_worker *mw, struct conn *c, struct mc_conn *st, const struct mc_req *req,
           struct mc_key_iter *it, uint32_t *taken, bool *last)
{
    struct wkey w[GET_WINDOW];
    uint8_t part[GET_WINDOW];           /* key j -> its part */
    unsigned shard_of_part[GET_WINDOW]; /* part -> its shard */
    uint32_t keys_of_part[GET_WINDOW] = {0};
    struct route_msg *msgs[GET_WINDOW] = {0};
    size_t room = conn_output_room(c);
    size_t nmax = room / (4 * HOLE_KEY);
    nmax = nmax < 1 ? 1 : nmax > GET_WINDOW ? GET_WINDOW : nmax;
    uint64_t hash[GET_WINDOW];
    uint32_t n = 0;
    while (n < nmax && mc_args_next(it, &w[n].key, &w[n].klen)) {
        hash[n] = mc_key_hash(w[n].key, w[n].klen);
        n++;
    }
    uint32_t nparts = route_split(&mw->rw, hash, n, part, shard_of_part, keys_of_part);
    struct mc_key_iter peek = *it;
    const char *k;
    size_t kl;
    *last = !mc_args_next(&peek, &k, &kl);
    *taken = n;

    uint64_t seq = route_seq_next(&st->rc);
    struct route_slot *s = route_slot_push(&mw->rw, &st->rc, ROUTE_SLOT_GATHER, nparts, n);
    int rc = s != NULL ? 0 : -ENOMEM;
    for (uint32_t p = 0; rc == 0 && p < nparts; p++) {
        struct route_msg *m = msgs[p] = route_msg_new(&mw->rw, OP_GET, seq, p);
        if (m == NULL || route_koff(m, GET_WINDOW) < 0) {
            rc = -ENOMEM;
            break;
        }
        size_t values = room / 4 / n * keys_of_part[p];
        m->allow =
            (uint32_t)(keys_of_part[p] * HOLE_KEY +
                       (values > ROUTE_FORWARD_REPLY_MAX ? ROUTE_FORWARD_REPLY_MAX : values));
        rc = part_line(m, req);
    }
    for (uint32_t j = 0; rc == 0 && j < n; j++) {
        struct route_msg *m = msgs[part[j]];
        s->keys[j] = (struct route_key_ref){.part = part[j], .idx = m->nkeys++};
        rc = buf_puts(&m->req, " ");
        rc = rc < 0 ? rc : buf_append(&m->req, w[j].key, w[j].klen);
    }
    for (uint32_t p = 0; rc == 0 && p < nparts; p++) {
        rc = buf_puts(&msgs[p]->req, "\r\n");
    }
    if (rc == 0) {
        s->nkeys = n;
        if (*last) {
            route_slot_time(&mw->rw, s);
        }
    }
    for (uint32_t p = 0; rc == 0 && p < nparts; p++) {
        rc = route_send_part(&mw->rw, c, &st->rc, s, msgs[p], shard_of_part[p]);
        msgs[p] = NULL;
    }
    for (uint32_t p = 0; p < nparts; p++) {
        route_msg_free(&mw->rw, msgs[p]); /* not sent: no memory */
    }
    return rc;
}

/*
 * A key of a multi-key get, this worker's, while no reply waits: into the write buffer if its
 * value fits in the room left (or nothing is unsent), else as a hole in a new slot, sent when
 * the client has read enough. So a get of many large values makes the output pass the limit by
 * one value at most once, not by one value per call.
 */
static int
get_key_direct(struct mc_worker *mw, struct conn *c, struct mc_conn *st, const struct mc_req *req,
               const char *key, size_t klen, uint64_t hash)
{
    struct buf *wb = conn_wbuf(c);
    struct mc_deferred d;
    size_t max = buf_len(wb) > 0 ? conn_output_room(c) : SIZE_MAX;
    int rc = shard_get_key_max(mw, req, key, klen, hash, max, wb, &d);
    if (rc != 1) {
        return rc;
    }
    /* Its header goes from the write buffer to a slot of its own, with the hole. */
    struct route_out o;
    if (route_reply_out(&mw->rw, c, &st->rc, &o) < 0 ||
        (o.s == NULL &&
         (o.s = route_slot_push(&mw->rw, &st->rc, ROUTE_SLOT_BYTES, 0, 0)) == NULL)) {
        return -ENOMEM;
    }
    wb->wpos -= d.hdr_len;
    size_t at = route_rb_end(&o.s->out);
    rc = buf_append(&o.s->out.b, buf_wptr(wb), d.hdr_len);
    if (rc == 0) {
        rc = rb_hole(&o.s->out, at, &d, key, klen, hash);
    }
    o.b = &o.s->out.b;
    route_out_done(c, &st->rc, &o);
    return rc;
}

/*
 * get/gets/gat/gats with several keys (or none). Keys this worker owns are answered at once:
 * straight into the write buffer while no reply waits, else held (a value within the room
 * left, or a hole). From a key another worker owns, a window of keys goes out. Between keys
 * and windows the room is checked again: a get of many large values stops there (EX_STOP) and
 * goes on from st->get_next on the next call, as memcached's get is not atomic across keys.
 */
static int
dispatch_multiget(struct mc_worker *mw, struct conn *c, struct mc_conn *st,
                  const struct mc_req *req)
{
    struct mc_key_iter it;
    const char *key;
    size_t klen;
    uint32_t i = 0;
    mc_args_begin(req, &it);
    while (i < st->get_next && mc_args_next(&it, &key, &klen)) {
        i++;
    }
    bool first = true; /* the caller checked the room before this one */
    for (;;) {
        struct mc_key_iter at = it;
        if (!mc_args_next(&it, &key, &klen)) {
            break;
        }
        if (!first && route_blocked(c, &st->rc)) {
            st->get_next = i;
            return EX_STOP;
        }
        first = false;
        uint64_t hash = mc_key_hash(key, klen);
        if (route_shard_of(hash, mw->rw.n) == mw->rw.id) {
            struct route_out o;
            if (route_reply_out(&mw->rw, c, &st->rc, &o) < 0) {
                return -ENOMEM;
            }
            int rc;
            if (o.s == NULL) {
                rc = get_key_direct(mw, c, st, req, key, klen, hash);
            } else {
                size_t room = conn_output_room(c);
                rc = rb_get_key(mw, &o.s->out, req, key, klen, hash, room > 0 ? room - 1 : 0);
                route_out_done(c, &st->rc, &o);
            }
            if (rc < 0) {
                return rc;
            }
            i++;
            continue;
        }
        if (st->rc.qlen >= ROUTE_SLOTS_MAX) {
            st->get_next = i;
            return EX_PAUSE;
        }
        it = at;
        bool last;
        uint32_t taken;
        int rc = get_window(mw, c, st, req, &it, &taken, &last);
        if (rc < 0) {
            return rc;
        }
        i += taken;
        if (last) {
            break;
        }
    }
    st->get_next = 0;
    struct route_out o;
    if (route_reply_out(&mw->rw, c, &st->rc, &o) < 0) {
        return -ENOMEM;
    }
    int rc = mc_compose_reply(o.b, MC_R_END);
    route_out_done(c, &st->rc, &o);
    return rc;
}

/* flush_all, stats, stats conns, stats reset, stats detail dump: a part on every shard. op says
 * which (OP_FLUSH, OP_STATS, OP_CONNS, OP_RESET, OP_DETAIL); its slot's tag follows. */
static int
dispatch_all(struct mc_worker *mw, struct conn *c, struct mc_conn *st, const struct mc_req *req,
             uint8_t op)
{
    static const uint8_t tag_of[] = {[OP_FLUSH] = TAG_FLUSH,
                                     [OP_STATS] = TAG_STATS,
                                     [OP_CONNS] = TAG_CONNS,
                                     [OP_RESET] = TAG_RESET,
                                     [OP_DETAIL] = TAG_DETAIL};
    int64_t when = 0;
    if (op == OP_FLUSH) {
        mw->shard.stats.cmd_flush++;
        if (req->has_delay && req->exptime > 0) {
            when = mc_exptime_abs(req->exptime, (int64_t)time(NULL));
        }
    }
    int rc = route_broadcast(&mw->rw, c, &st->rc, tag_of[op], req->noreply, op, when);
    return rc < 0 ? rc : EX_DONE;
}

static int write_classes(struct mc_worker *mw, struct buf *out, bool slabs);

/* Whether a stats request names one view, `name` (blanks may follow it on the line). */
static bool
stats_arg_is(const struct mc_req *req, const char *name)
{
    size_t n = strlen(name);
    if (req->nargs != 1 || req->args_len < n || memcmp(req->args, name, n) != 0) {
        return false;
    }
    for (size_t i = n; i < req->args_len; i++) {
        if (req->args[i] != ' ' && req->args[i] != '\t') {
            return false;
        }
    }
    return true;
}

/* A text setting as memcached shows it: the value, or `none` (memcached's "NULL", or the
 * "(null)" its printf makes of a path never set). */
static void
setting_str(struct buf *out, const char *name, const char *value, const char *none)
{
    mc_compose_stat(out, name, value[0] != '\0' ? value : none);
}

/* "stats settings" fields about TLS, memcached's names and formats (its -Z and -o ssl_*). */
static void
write_tls_settings(const struct config *cfg, struct buf *out)
{
    /* memcached shows OpenSSL's verify flags: none 0, peer 1, peer and fail without one 3. */
    static const unsigned verify_flags[] = {0, 1, 3};
    unsigned verify = config_enum(cfg, "tls-verify");
    bool on = config_bool(cfg, "enable-ssl") || config_uint(cfg, "tls-port") > 0;
    mc_compose_stat(out, "ssl_enabled", on ? "yes" : "no");
    setting_str(out, "ssl_chain_cert", config_str(cfg, "tls-cert"), "(null)");
    setting_str(out, "ssl_key", config_str(cfg, "tls-key"), "(null)");
    mc_compose_stat_u64(out, "ssl_verify_mode", verify < 3 ? verify_flags[verify] : 0);
    mc_compose_stat_u64(out, "ssl_keyformat", 1); /* PEM, the only form read (OpenSSL's 1) */
    setting_str(out, "ssl_ciphers", config_str(cfg, "tls-ciphers"), "NULL");
    setting_str(out, "ssl_ca_cert", config_str(cfg, "tls-ca"), "NULL");
    mc_compose_stat(out, "ssl_session_cache",
                    config_uint(cfg, "tls-session-lifetime") > 0 ? "yes" : "no");
    mc_compose_stat(out, "ssl_kernel_tls", "no");
    mc_compose_stat(out, "ssl_min_version", "tlsv1.2"); /* src/io/tls.c: TLS 1.2 only */
}

/*
 * "stats settings": memcached's fields that have a true equivalent here, under its names, in
 * its order and formats; then Petrel's own. docs/operations.md lists the fields left out.
 */
static void
write_settings(struct mc_worker *mw, struct buf *out)
{
    const struct config *cfg = mw->cfg;
    struct rt_stats rs;
    rt_stats_get(&rs);
    enum log_level lv = log_get_level(); /* "verbosity N" sets it: 0 info, 1 verbose, 2 debug */
    unsigned long umask = strtoul(config_str(cfg, "unix-mode"), NULL, 8);
    char delim[2] = {mw->delim, '\0'};
    mc_compose_stat_u64(out, "maxbytes", config_uint(cfg, "memory-limit"));
    mc_compose_stat_u64(out, "maxconns", rs.max_connections);
    mc_compose_stat_u64(out, "tcpport", config_uint(cfg, "port"));
    mc_compose_stat_u64(out, "udpport", 0);
    setting_str(out, "inter", config_str(cfg, "listen"), "NULL");
    mc_compose_stat_u64(out, "verbosity", lv >= LOG_DEBUG ? 2 : lv == LOG_VERBOSE ? 1 : 0);
    mc_compose_stat(out, "evictions",
                    strcmp(evict_names[config_enum(cfg, "eviction")], "none") ? "on" : "off");
    setting_str(out, "domain_socket", config_str(cfg, "unix-socket"), "NULL");
    (void)buf_printf(out, "STAT umask %lo\r\n", umask);
    mc_compose_stat(out, "shutdown_command", config_bool(cfg, "enable-shutdown") ? "yes" : "no");
    mc_compose_stat_u64(out, "num_threads", rs.threads);
    mc_compose_stat(out, "stat_key_prefix", delim);
    mc_compose_stat(out, "detail_enabled", detail_enabled() ? "yes" : "no");
    mc_compose_stat(out, "cas_enabled", config_bool(cfg, "disable-cas") ? "no" : "yes");
    mc_compose_stat_u64(out, "tcp_backlog", config_uint(cfg, "backlog"));
    mc_compose_stat(out, "binding_protocol", "ascii"); /* text and meta; never binary */
    mc_compose_stat(out, "auth_enabled_sasl", "no");
    mc_compose_stat(out, "auth_enabled_ascii", "no");
    mc_compose_stat_u64(out, "item_size_max", config_uint(cfg, "max-item-size"));
    mc_compose_stat(out, "maxconns_fast", "yes"); /* past max-conns: refused with an error */
    mc_compose_stat(out, "flush_enabled", mw->flush_disabled ? "no" : "yes");
    mc_compose_stat(out, "dump_enabled", mw->dump_disabled ? "no" : "yes");
    mc_compose_stat_u64(out, "idle_timeout", rs.idle_timeout);
    mc_compose_stat(out, "track_sizes", "no"); /* "stats sizes" answers disabled */
    write_tls_settings(cfg, out);
    /* Petrel's own. */
    mc_compose_stat(out, "eviction_policy", evict_names[config_enum(cfg, "eviction")]);
    mc_compose_stat_u64(out, "segment_size", config_uint(cfg, "segment-size"));
    mc_compose_stat(out, "prefault", config_bool(cfg, "prefault") ? "yes" : "no");
    mc_compose_reply(out, MC_R_END);
}

/* The reply to a valid slabs command: Segcache has no classes to move pages between. */
static enum mc_reply
slabs_reply(const struct mc_req *req)
{
    switch (req->slabs) {
    case MC_SLABS_SAME:
        return MC_R_SLABS_SAME;
    case MC_SLABS_BADCLASS:
        return MC_R_SLABS_BADCLASS;
    default:
        return MC_R_OK;
    }
}

/* Commands that need no shard. */
static int
dispatch_local(struct mc_worker *mw, struct conn *c, struct mc_conn *st, const struct mc_req *req)
{
    if (req->cmd == MC_CMD_QUIT || req->cmd == MC_CMD_SHUTDOWN) {
        if (st->rc.qlen > 0) {
            return EX_WAIT; /* every reply before it goes first */
        }
        if (req->cmd == MC_CMD_SHUTDOWN) {
            log_info("shutdown requested by a client");
            rt_request_stop();
        }
        return EX_CLOSE;
    }
    struct route_out o;
    if (route_reply_out(&mw->rw, c, &st->rc, &o) < 0) {
        return -ENOMEM;
    }
    int rc;
    switch (req->cmd) {
    case MC_CMD_VERSION:
        rc = mc_compose_version(o.b, MC_PROTOCOL_VERSION);
        break;
    case MC_CMD_VERBOSITY:
        log_set_level(req->verbosity >= 2   ? LOG_DEBUG
                      : req->verbosity == 1 ? LOG_VERBOSE
                                            : LOG_INFO);
        rc = req->noreply ? 0 : mc_compose_reply(o.b, MC_R_OK);
        break;
    case MC_CMD_MN:
        rc = mc_compose_reply(o.b, MC_R_MN);
        break;
    case MC_CMD_SLABS:
        rc = req->noreply ? 0 : mc_compose_reply(o.b, slabs_reply(req));
        break;
    case MC_CMD_STATS:
        if (stats_arg_is(req, "settings")) {
            write_settings(mw, o.b);
            rc = 0;
        } else if (stats_arg_is(req, "items") || stats_arg_is(req, "slabs")) {
            rc = write_classes(mw, o.b, stats_arg_is(req, "slabs"));
        } else if (detail_verb_of(req) != DETAIL_NOT && mw->dump_disabled) {
            rc = buf_puts(o.b, "CLIENT_ERROR stats detail not allowed\r\n");
        } else if (detail_verb_of(req) != DETAIL_NOT) {
            rc = detail_switch(detail_verb_of(req), o.b);
        } else if (stats_arg_is(req, "sizes")) {
            /* memcached's answer while its item size histogram is off (the default): Petrel
             * keeps none. */
            rc = mc_compose_stat(o.b, "sizes_status", "disabled");
            rc = rc < 0 ? rc : mc_compose_reply(o.b, MC_R_END);
        } else {
            rc = mc_compose_reply(o.b, MC_R_ERROR);
        }
        break;
    default:
        rc = mc_compose_reply(o.b, MC_R_ERROR);
        break;
    }
    route_out_done(c, &st->rc, &o);
    return rc;
}

/* ---- lru_crawler ---- */

/* A one-line reply (lru_crawler's, a refused flush_all), into where local replies go. */
static int
line_reply(struct mc_worker *mw, struct conn *c, struct mc_conn *st, const char *line)
{
    struct route_out o;
    if (route_reply_out(&mw->rw, c, &st->rc, &o) < 0) {
        return -ENOMEM;
    }
    int rc = buf_puts(o.b, line);
    rc = rc < 0 ? rc : buf_append(o.b, "\r\n", 2);
    route_out_done(c, &st->rc, &o);
    return rc;
}

/*
 * metadump / mgdump of the classes in mask: memcached's "OK", then a SLOT_DUMP that walks every
 * shard in turn (dump_emit). As memcached, it refuses to start behind replies not yet sent.
 */
static int
dispatch_dump(struct mc_worker *mw, struct conn *c, struct mc_conn *st, const struct mc_req *req,
              const uint64_t *mask)
{
    bool mg = req->crawler == MC_CRAWLER_MGDUMP;
    if (st->rc.qlen > 0 || buf_len(conn_wbuf(c)) > 0) {
        return line_reply(mw, c, st,
                          mg ? "ERROR cannot pipeline other commands before mgdump"
                             : "ERROR cannot pipeline other commands before metadump");
    }
    if (buf_puts(conn_wbuf(c), "OK\r\n") < 0) {
        return -ENOMEM;
    }
    uint64_t seq = route_seq_next(&st->rc);
    struct route_slot *s = route_slot_push(&mw->rw, &st->rc, ROUTE_SLOT_PRODUCT, 1, 0);
    struct route_msg *m = s != NULL ? route_msg_new(&mw->rw, OP_DUMP, seq, 0) : NULL;
    if (m == NULL) {
        return -ENOMEM;
    }
    *msg_dump(m) = (struct mc_dump){.mgdump = mg};
    memcpy(msg_dump(m)->mask, mask, sizeof(msg_dump(m)->mask));
    m->more = true; /* shard 0, from its start */
    s->tag = TAG_DUMP;
    s->parts[0] = m;
    s->waiting = 0;
    return EX_DONE;
}

/*
 * lru_crawler. Petrel has no LRU crawler thread: its expiry frees whole segments on every tick,
 * always on, and its dumps walk the shards on their own workers. So "crawl" of valid classes is
 * acknowledged (there is nothing left for it to do), "tocrawl" and "sleep" are accepted without
 * effect, "enable" gets memcached's answer for a crawler already running and "disable" its answer
 * for one that cannot be stopped. Class lists are checked as memcached checks them.
 */
static int
dispatch_crawler(struct mc_worker *mw, struct conn *c, struct mc_conn *st, const struct mc_req *req)
{
    uint64_t mask[MC_DUMP_CLASS_WORDS];
    enum mc_dump_spec spec = MC_DUMP_CLASSES;
    switch (req->crawler) {
    case MC_CRAWLER_ENABLE:
        return line_reply(mw, c, st, "ERROR failed to start lru crawler thread");
    case MC_CRAWLER_DISABLE:
        return line_reply(mw, c, st, "ERROR failed to stop lru crawler thread");
    case MC_CRAWLER_TOCRAWL:
    case MC_CRAWLER_SLEEP:
        return line_reply(mw, c, st, "OK");
    case MC_CRAWLER_METADUMP:
        if (mw->dump_disabled) {
            return line_reply(mw, c, st, "ERROR metadump not allowed");
        }
        spec = mc_dump_classes(req->args, req->args_len, mask);
        break;
    case MC_CRAWLER_MGDUMP:
        if (mw->dump_disabled) {
            return line_reply(mw, c, st, "ERROR key dump not allowed");
        }
        spec = mc_dump_classes(req->args, req->args_len, mask);
        break;
    default:
        spec = mc_dump_classes(req->args, req->args_len, mask);
        break;
    }
    if (spec == MC_DUMP_BADCLASS) {
        return line_reply(mw, c, st, "BADCLASS invalid class id");
    }
    if (spec == MC_DUMP_NONE) {
        return line_reply(mw, c, st, "NOTSTARTED no items to crawl");
    }
    if (req->crawler != MC_CRAWLER_CRAWL) {
        return dispatch_dump(mw, c, st, req, mask);
    }
    /* memcached walks the hash table only for dumps. */
    return line_reply(mw, c, st, spec == MC_DUMP_HASH ? "ERROR an unknown error happened" : "OK");
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
    case MC_CMD_SLABS:
    case MC_CMD_MN:
    case MC_CMD_LRU_CRAWLER:
        return false;
    default:
        return true;
    }
}

/*
 * A keyed request this worker owns. While no reply waits it goes straight into the write
 * buffer (the hot path: nothing counted, nothing copied twice); behind a waiting reply it is
 * held, a value within the room left, else as a hole.
 */
static int
exec_local(struct mc_worker *mw, struct conn *c, struct mc_conn *st, const struct mc_req *req,
           uint64_t hash)
{
    bool get = is_get_family(req->cmd);
    if (st->rc.qlen == 0) {
        /* The most common request of all: nothing waits, so the reply goes straight out. */
        struct buf *out = conn_wbuf(c);
        if (!get) {
            return shard_exec(mw, req, hash, out);
        }
        int rc = shard_get_key(mw, req, hash, out);
        return rc < 0 ? rc : mc_compose_reply(out, MC_R_END);
    }
    /* Behind a waiting reply (qlen > 0: route_reply_out gives a slot). */
    struct route_out o;
    if (route_reply_out(&mw->rw, c, &st->rc, &o) < 0) {
        return -ENOMEM;
    }
    int rc = exec_keyed(mw, &o.s->out, req, hash, held_room(conn_output_room(c)));
    route_out_done(c, &st->rc, &o);
    return rc;
}

/*
 * Whether a "stats detail dump" or "stats conns" of this connection is still queued. The
 * workers' parts come back whole, outside the output limit (their size is not known when they
 * are asked for), so a connection has one of them out at a time and a pipeline of them waits
 * (EX_STOP): else a client that does not read could have the server hold ROUTE_SLOTS_MAX copies
 * of every worker's table or connection list.
 */
static bool
tag_queued(const struct mc_conn *st, enum slot_tag tag)
{
    for (uint32_t i = 0; i < st->rc.qlen; i++) {
        const struct route_slot *s = route_q_at(&st->rc, i);
        if (s->kind == ROUTE_SLOT_PRODUCT && s->tag == tag) {
            return true;
        }
    }
    return false;
}

/* One parsed request, with its key's hash when is_keyed(), at text. Returns enum ex_rc or a
 * negative errno. */
static int
dispatch(struct mc_worker *mw, struct conn *c, struct mc_conn *st, const struct ahead *a,
         const char *text)
{
    const struct mc_req *req = &a->req;
    uint64_t hash = a->hash;
    switch (req->cmd) {
    case MC_CMD_GET:
    case MC_CMD_GETS:
    case MC_CMD_GAT:
    case MC_CMD_GATS:
        if (req->nkeys != 1) {
            return dispatch_multiget(mw, c, st, req);
        }
        break; /* one key: here, or forwarded whole like any keyed command */
    case MC_CMD_FLUSH_ALL:
        if (mw->flush_disabled) { /* counted, as memcached does */
            mw->shard.stats.cmd_flush++;
            return req->noreply ? 0 : line_reply(mw, c, st, "CLIENT_ERROR flush_all not allowed");
        }
        return dispatch_all(mw, c, st, req, OP_FLUSH);
    case MC_CMD_STATS:
        if (req->nargs == 0) {
            return dispatch_all(mw, c, st, req, OP_STATS);
        }
        if (stats_arg_is(req, "conns")) {
            return tag_queued(st, TAG_CONNS) ? EX_STOP : dispatch_all(mw, c, st, req, OP_CONNS);
        }
        if (stats_arg_is(req, "reset")) {
            return dispatch_all(mw, c, st, req, OP_RESET);
        }
        if (detail_verb_of(req) == DETAIL_DUMP && !mw->dump_disabled) {
            return tag_queued(st, TAG_DETAIL) ? EX_STOP : dispatch_all(mw, c, st, req, OP_DETAIL);
        }
        return dispatch_local(mw, c, st, req);
    case MC_CMD_VERSION:
    case MC_CMD_VERBOSITY:
    case MC_CMD_QUIT:
    case MC_CMD_SHUTDOWN:
    case MC_CMD_SLABS:
    case MC_CMD_MN:
        return dispatch_local(mw, c, st, req);
    case MC_CMD_ME:
        metrics_incr(&mw->m_srv[SRV_CMD_META]);
        break;
    case MC_CMD_LRU_CRAWLER:
        return dispatch_crawler(mw, c, st, req);
    default:
        break;
    }
    if (!a->local || st->pipe != NULL) {
        return pipe_add(mw, c, st, a, text);
    }
    return exec_local(mw, c, st, req, hash);
}

/*
 * A store refused for lack of memory drops the key's old value, as memcached does for set and
 * ms: a client that was told the store failed must not read the value it meant to replace.
 */
static int
drop_old_value(struct mc_worker *mw, struct conn *c, struct mc_conn *st, const char *key,
               size_t klen)
{
    uint64_t hash = mc_key_hash(key, klen);
    unsigned owner = route_shard_of(hash, mw->rw.n);
    if (owner == mw->rw.id) {
        (void)seg_delete(mw->shard.seg, key, klen, hash);
        return 0;
    }
    uint64_t seq = route_seq_next(&st->rc);
    struct route_slot *s = route_slot_push(&mw->rw, &st->rc, ROUTE_SLOT_EXEC, 1, 0);
    struct route_msg *m = s != NULL ? route_msg_new(&mw->rw, OP_DELETE, seq, 0) : NULL;
    if (m == NULL || buf_append(&m->req, key, klen) < 0) {
        route_msg_free(&mw->rw, m);
        return -ENOMEM;
    }
    s->noreply = true;
    m->hash = hash;
    return route_msg_send(&mw->rw, c, &st->rc, m, owner);
}

/* ---- the product's callbacks ---- */

/* What a parse result other than a request did. */
enum pr_rc {
    PR_NEXT,  /* bytes consumed (an error answered, a value skipped): parse on */
    PR_AGAIN, /* an incomplete request: wait for more bytes */
    PR_WAIT,  /* framing is lost, but earlier replies must be sent first */
    PR_CLOSE, /* framing is lost: close */
};

/* The storage request at the front of the input cannot have memory for its value: refuse it
 * (mc_parse_refuse), and skip its value as it arrives. */
static int
refuse(struct mc_worker *mw, struct conn *c, struct mc_conn *st, struct mc_req *req)
{
    struct buf *in = conn_rbuf(c);
    if (mc_parse_refuse(&st->parser, buf_rptr(in), buf_len(in), req) != MC_PARSE_ERROR) {
        return PR_NEXT; /* it came whole meanwhile, or is another error: parse it as usual */
    }
    struct route_out o;
    if (route_reply_out(&mw->rw, c, &st->rc, &o) < 0) {
        return -ENOMEM;
    }
    int rc = mc_compose_error(o.b, &req->err);
    route_out_done(c, &st->rc, &o);
    if (rc == 0 && (req->err.refused == MC_CMD_SET || req->err.refused == MC_CMD_MS)) {
        rc = drop_old_value(mw, c, st, req->key, req->klen);
    }
    log_verbose("%s of %zu bytes refused: no buffer memory for its value",
                mc_cmd_name(req->err.refused), req->err.swallow - 2);
    buf_consume(in, req->consumed);
    return rc < 0 ? rc : PR_NEXT;
}

/* A parse result that is not a request to execute: an error, swallowed bytes, or "need more".
 * Returns enum pr_rc or a negative errno. */
static int
handle_parse_result(struct mc_worker *mw, struct conn *c, struct mc_conn *st, enum mc_parse_rc rc,
                    struct mc_req *req)
{
    struct buf *in = conn_rbuf(c);
    switch (rc) {
    case MC_PARSE_AGAIN:
        /* Make room for the whole request at once: a large value is read in place. A refusal
         * is answered, so it waits for room like any reply. */
        if (st->parser.need > buf_len(in) && !route_blocked(c, &st->rc) &&
            conn_rbuf_want(c, st->parser.need - buf_len(in)) == -ENOBUFS) {
            return refuse(mw, c, st, req);
        }
        return PR_AGAIN;
    case MC_PARSE_SKIP:
        buf_consume(in, req->consumed);
        return PR_NEXT;
    case MC_PARSE_ERROR:
        break;
    case MC_PARSE_OK:
        return PR_NEXT;
    }
    if (req->err.action == MC_ERR_CLOSE) {
        if (st->rc.qlen > 0) {
            return PR_WAIT;
        }
        log_verbose("closing a connection: %s", req->err.why != NULL ? req->err.why : "bad input");
        return PR_CLOSE;
    }
    struct route_out o;
    if (route_reply_out(&mw->rw, c, &st->rc, &o) < 0) {
        return -ENOMEM;
    }
    int r = mc_compose_error(o.b, &req->err);
    route_out_done(c, &st->rc, &o);
    if (r == 0 && (req->err.refused == MC_CMD_SET || req->err.refused == MC_CMD_MS)) {
        r = drop_old_value(mw, c, st, req->key, req->klen); /* a value too large */
    }
    buf_consume(in, req->consumed);
    return r < 0 ? r : PR_NEXT;
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
 * reply slot. A request stopped inside (a multi-key get without room) stays in the input.
 * Returns enum ex_rc or a negative errno.
 */
static int
execute(struct mc_worker *mw, struct conn *c, struct mc_conn *st, struct ahead *a, struct buf *in,
        struct buf *wb)
{
    bool resumed = st->get_next > 0;
    bool direct = st->rc.qlen == 0;
    bool sample = !resumed && rt_klog_sample();
    size_t wb_before = buf_len(wb);
    route_lat_request(&mw->rw, lat_class_of(a->req.cmd));
    if (!resumed && log_get_level() >= LOG_DEBUG) {
        /* -vv: every request's command line, as memcached prints them (the data block is not). */
        const char *text = buf_rptr(in);
        const char *nl = memchr(text, '\n', a->req.consumed);
        size_t len = nl != NULL ? (size_t)(nl - text) : a->req.consumed;
        log_debug("request: %.*s", (int)(len > 0 && text[len - 1] == '\r' ? len - 1 : len), text);
    }
    if (st->pipe != NULL && !a->keyed && pipe_close(mw, c, st) < 0) {
        return -ENOMEM; /* a request that cannot join the pipe must not overtake it */
    }
    int r = dispatch(mw, c, st, a, buf_rptr(in));
    if (r != EX_DONE && r != EX_CLOSE) {
        return r;
    }
    route_lat_answered(&mw->rw);
    if (sample) {
        direct = direct && st->rc.qlen == 0;
        klog_request(mw, buf_rptr(in), a->req.consumed,
                     direct ? (long)(buf_len(wb) - wb_before) : -1);
    }
    buf_consume(in, a->req.consumed);
    /* A slot whose parts all ran here is complete already: send it now (not while a pipe is
     * open: it is the tail, and nothing before it completes during this call). */
    if (r == EX_DONE && st->pipe == NULL && st->rc.qlen > 0) {
        int rc = route_flush(&mw->rw, c, &st->rc);
        if (rc < 0) {
            return rc;
        }
    }
    return r;
}

/* Hash a parsed request's key once, find its owner, and prefetch its bucket if it is ours. */
static void
prepare(struct mc_worker *mw, struct ahead *a)
{
    a->hash = 0;
    a->keyed = is_keyed(&a->req);
    a->local = false;
    if (a->keyed) {
        a->hash = mc_key_hash(a->req.key, a->req.klen);
        a->owner = (uint16_t)route_shard_of(a->hash, mw->rw.n);
        a->local = a->owner == mw->rw.id;
        if (a->local) {
            seg_prefetch(mw->shard.seg, a->hash);
        }
    }
}

static void
conn_init(struct mc_worker *mw, struct mc_conn *st)
{
    mc_parser_init(&st->parser, &mw->popts);
    route_conn_init(&st->rc);
    st->kind = CONN_MC;
}

/*
 * Parse up to AHEAD requests, then execute them in order, with their hash buckets and items
 * prefetched a few requests ahead: the memory latency of a pipeline's lookups overlaps instead
 * of adding up. Requests parsed but not executed (backpressure) are parsed again on the next
 * call. The head of the reply queue goes first: it may have waited for the client to read.
 */
static enum rt_result
mc_on_data(void *ctx, struct conn *c)
{
    struct mc_worker *mw = ctx;
    struct mc_conn *st = conn_state(c);
    struct buf *in = conn_rbuf(c), *wb = conn_wbuf(c); /* both stay where they are */
    struct ahead batch[AHEAD];
    if (st->kind != CONN_MC) {
        /* A connection's first call, or one of the RESP port's. */
        if (st->kind == CONN_NEW && conn_protocol(c) != RESP_PROTO_ID) {
            conn_init(mw, st);
        } else {
            return resp_on_data(&mw->resp, c);
        }
    }
    if (st->rc.broken || route_flush(&mw->rw, c, &st->rc) < 0) {
        return RT_ABORT;
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
            route_lat_begin(&mw->rw);
        }
        for (size_t i = 0; i < n; i++) {
            if (n > 1) {
                prefetch_items(mw, batch, &items, i + ITEM_LEAD + 1 < n ? i + ITEM_LEAD + 1 : n);
            }
            int r = EX_STOP;
            /* route_blocked(), from the pipe's room while one is open (the tail of the queue). */
            bool blocked =
                st->pipe != NULL ? pipe_room(st) <= ROUTE_HOLD_SLACK : route_blocked(c, &st->rc);
            if (!blocked && st->rc.qlen < ROUTE_SLOTS_MAX) {
                r = execute(mw, c, st, &batch[i], in, wb);
            }
            if (r == EX_DONE) {
                continue;
            }
            route_lat_settle(&mw->rw);
            if (pipe_close(mw, c, st) < 0 || r < 0) {
                return RT_ABORT;
            }
            if (r == EX_CLOSE) {
                return RT_CLOSE;
            }
            /* Everything from request i on is parsed again, the error ending the batch too. */
            mc_parser_rewind(&st->parser, last == MC_PARSE_ERROR ? &batch[n].req : NULL);
            return route_wait_result(c, &st->rc);
        }
        route_lat_settle(&mw->rw);
        if (pipe_close(mw, c, st) < 0) {
            return RT_ABORT;
        }
        if (last == MC_PARSE_ERROR && batch[n].req.err.action != MC_ERR_CLOSE &&
            route_blocked(c, &st->rc)) {
            /* Its reply, too, waits for room. */
            mc_parser_rewind(&st->parser, &batch[n].req);
            return route_wait_result(c, &st->rc);
        }
        if (last != MC_PARSE_OK) {
            /* Every request before it ran, so the error is answered now. */
            int r = handle_parse_result(mw, c, st, last, &batch[n].req);
            if (r < 0) {
                return RT_ABORT;
            }
            if (r == PR_AGAIN) {
                break;
            }
            if (r == PR_WAIT) {
                return route_wait_result(c, &st->rc);
            }
            if (r == PR_CLOSE) {
                return RT_CLOSE;
            }
        }
    }
    return route_end_result(c, &st->rc);
}

/*
 * Forwarded messages, as mc_on_data runs a pipeline: parse the get windows' lines first, and
 * prefetch each fetch's bucket, then its item ITEM_LEAD messages later, then execute in order
 * (a pipe's part does the same for its requests, exec_pipe). The origin sent each key's hash
 * along with a fetch, so nothing is hashed twice.
 */
static void
mc_on_requests(void *ctx, struct rt_msg *const *hdrs, unsigned n)
{
    struct mc_worker *mw = ctx;
    struct ahead batch[RT_REQUEST_BATCH];
    bool parsed[RT_REQUEST_BATCH];
    size_t items = 0;

    for (unsigned i = 0; i < n; i++) {
        struct route_msg *m = (struct route_msg *)hdrs[i];
        parsed[i] = m->op == OP_GET && msg_parse(mw, m, &batch[i].req);
        batch[i].hash = m->hash;
        /* One key, ours: prefetched (a pipe prefetches its own). */
        batch[i].local = m->op == ROUTE_OP_FETCH;
        if (batch[i].local) {
            seg_prefetch(mw->shard.seg, m->hash);
        }
        if (i + 1 > ITEM_LEAD) {
            prefetch_items(mw, batch, &items, i + 1 - ITEM_LEAD);
        }
    }
    for (unsigned i = 0; i < n; i++) {
        struct route_msg *m = (struct route_msg *)hdrs[i];
        prefetch_items(mw, batch, &items, i + ITEM_LEAD + 1 < n ? i + ITEM_LEAD + 1 : n);
        if (m->op == OP_GET && !parsed[i]) {
            m->nkeys = 0; /* its keys are misses */
        } else {
            msg_execute(mw, m, parsed[i] ? &batch[i].req : NULL);
        }
        /* What running it copied, for the runtime's budget (and the origin's, on its way back):
         * the request text (a set's value) and the reply. */
        m->hdr.cost = (uint32_t)(buf_len(&m->req) + buf_len(&m->reply.b));
        if (rt_msg_return(hdrs[i]) < 0) {
            /* The origin will never hear back; the connection's slot stays until it closes. */
            log_error("out of memory returning a forwarded reply");
        }
    }
}

/* A message is back: route takes it into its slot and sends what can go. */
static void
mc_on_reply(void *ctx, struct conn *c, struct rt_msg *hdr)
{
    struct mc_worker *mw = ctx;
    struct mc_conn *st = c != NULL ? conn_state(c) : NULL;
    route_on_reply(&mw->rw, c, st != NULL ? &st->rc : NULL, (struct route_msg *)hdr);
}

static void
mc_on_close(void *ctx, struct conn *c)
{
    struct mc_worker *mw = ctx;
    struct mc_conn *st = conn_state(c);
    if (st->kind != CONN_NEW) {
        route_conn_close(&mw->rw, c, &st->rc); /* route's part is first in both kinds */
    }
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
    /* Segment memory faulted in ahead of the stores that will write there: the heap by the
     * runtime's populate thread (a huge page can take milliseconds), a growing hash table here. */
    static const struct seg_offload populate = {.post = rt_populate, .left = rt_populate_left};
    bool more = seg_prefault_step(mw->shard.seg, IDLE_PREFAULT, &populate);
    return mw->reclaim_left || more;
}

/* Every worker's TTL buckets summed, from the published views (at most a tick old): an array
 * of seg_ttl_bucket_count() entries (entry i is bucket i) the caller frees, or NULL. Any
 * RCU-registered thread. */
static struct ttl_entry *
ttl_sum(void)
{
    size_t nb = seg_ttl_bucket_count();
    struct ttl_entry *sum = calloc(nb, sizeof(*sum));
    if (sum == NULL) {
        return NULL;
    }
    prcu_read_lock();
    for (unsigned w = 0; w < MAX_WORKERS; w++) {
        const struct ttl_view *v = rcu_dereference(ttl_views[w]);
        prcu_subscribe();
        for (size_t i = 0; v != NULL && i < v->n; i++) {
            class_cmd_add(&sum[v->e[i].idx].cmd, &v->e[i].cmd);
            struct seg_ttl_stats *d = &sum[v->e[i].idx].st;
            const struct seg_ttl_stats *e = &v->e[i].st;
            d->ttl_lo = e->ttl_lo;
            d->ttl_hi = e->ttl_hi;
            d->segs += e->segs;
            if (e->oldest != 0 && (d->oldest == 0 || e->oldest < d->oldest)) {
                d->oldest = e->oldest; /* the oldest item of every shard's bucket */
            }
            d->items += e->items;
            d->bytes += e->bytes;
            d->evicted += e->evicted;
            d->evicted_unfetched += e->evicted_unfetched;
            d->expired += e->expired;
            d->expired_unfetched += e->expired_unfetched;
            d->no_memory += e->no_memory;
        }
    }
    prcu_read_unlock();
    return sum;
}

/* Admin thread: "stats seg", every worker's TTL buckets summed. */
static int
mc_admin_stats(const char *what, struct buf *out)
{
    if (strcmp(what, "seg") != 0) {
        return -ENOENT;
    }
    struct ttl_entry *all = ttl_sum();
    if (all == NULL) {
        return -ENOMEM;
    }
    int rc = 0;
    for (size_t i = 0; i < seg_ttl_bucket_count() && rc == 0; i++) {
        const struct seg_ttl_stats *b = &all[i].st;
        if (b->segs == 0 && b->items == 0) {
            continue;
        }
        /* One line per figure, named after the bucket's TTL range in seconds. */
        rc = buf_printf(out, "STAT ttl_%u_%u:segments %u\r\n", b->ttl_lo, b->ttl_hi, b->segs);
        rc |= buf_printf(out, "STAT ttl_%u_%u:items %llu\r\n", b->ttl_lo, b->ttl_hi,
                         (unsigned long long)b->items);
        rc |= buf_printf(out, "STAT ttl_%u_%u:bytes %llu\r\n", b->ttl_lo, b->ttl_hi,
                         (unsigned long long)b->bytes);
    }
    free(all);
    return rc < 0 ? rc : 0;
}

/* "stats items": one class's lines, in memcached's order (docs/protocol.md). */
static int
write_items_class(struct buf *out, unsigned id, const struct seg_ttl_stats *b, int64_t now)
{
    unsigned long long age = b->oldest != 0 && now > (int64_t)b->oldest
                                 ? (unsigned long long)(now - (int64_t)b->oldest)
                                 : 0;
    /* Every item of a bucket other than "never expires" has a nonzero exptime. */
    unsigned long long nonzero = b->ttl_hi != 0 ? b->evicted : 0;
    return buf_printf(out,
                      "STAT items:%u:number %llu\r\nSTAT items:%u:age %llu\r\n"
                      "STAT items:%u:mem_requested %llu\r\nSTAT items:%u:evicted %llu\r\n"
                      "STAT items:%u:evicted_nonzero %llu\r\nSTAT items:%u:outofmemory %llu\r\n"
                      "STAT items:%u:reclaimed %llu\r\nSTAT items:%u:expired_unfetched %llu\r\n"
                      "STAT items:%u:evicted_unfetched %llu\r\nSTAT items:%u:ttl_min %u\r\n"
                      "STAT items:%u:ttl_max %u\r\n",
                      id, (unsigned long long)b->items, id, age, id, (unsigned long long)b->bytes,
                      id, (unsigned long long)b->evicted, id, nonzero, id,
                      (unsigned long long)b->no_memory, id, (unsigned long long)b->expired, id,
                      (unsigned long long)b->expired_unfetched, id,
                      (unsigned long long)b->evicted_unfetched, id, b->ttl_lo, id, b->ttl_hi);
}

/* "stats slabs": one class's lines, memcached's in its order, then Petrel's (docs/protocol.md). */
static int
write_slabs_class(struct buf *out, unsigned id, const struct seg_ttl_stats *b,
                  const struct mc_class_stats *c)
{
    return buf_printf(
        out,
        "STAT %u:total_pages %u\r\nSTAT %u:used_chunks %llu\r\nSTAT %u:get_hits %llu\r\n"
        "STAT %u:cmd_set %llu\r\nSTAT %u:delete_hits %llu\r\nSTAT %u:incr_hits %llu\r\n"
        "STAT %u:decr_hits %llu\r\nSTAT %u:cas_hits %llu\r\nSTAT %u:cas_badval %llu\r\n"
        "STAT %u:touch_hits %llu\r\nSTAT %u:ttl_min %u\r\nSTAT %u:ttl_max %u\r\n",
        id, b->segs, id, (unsigned long long)b->items, id, (unsigned long long)c->get_hits, id,
        (unsigned long long)c->cmd_set, id, (unsigned long long)c->delete_hits, id,
        (unsigned long long)c->incr_hits, id, (unsigned long long)c->decr_hits, id,
        (unsigned long long)c->cas_hits, id, (unsigned long long)c->cas_badval, id,
        (unsigned long long)c->touch_hits, id, b->ttl_lo, id, b->ttl_hi);
}

/*
 * memcached's "stats items" and "stats slabs", with Petrel's equivalent of a slab class: a TTL
 * bucket (class id = bucket index + 1; segments play the part of slab pages, each holding items
 * of one TTL range), summed over the shards from the views they publish every tick (at most a
 * tick old). Only figures that mean the same are given, in memcached's order, and memcached's
 * others are left out rather than made up (docs/protocol.md lists both). As memcached does,
 * "stats items" lists the classes that hold items, "stats slabs" those that hold pages; it
 * also lists those in which a command was counted (memcached's classes with counts all have
 * pages; here a request's class may hold nothing, e.g. an add refused). Petrel adds each
 * class's TTL range (ttl_min, ttl_max: seconds; 0 0 is "never expires").
 */
static int
write_classes(struct mc_worker *mw, struct buf *out, bool slabs)
{
    struct ttl_entry *sum = ttl_sum();
    if (sum == NULL) {
        return -ENOMEM;
    }
    int64_t now = seg_now(mw->shard.seg);
    int rc = 0;
    unsigned active = 0;
    uint64_t segs = 0;
    for (size_t i = 0; i < seg_ttl_bucket_count() && rc == 0; i++) {
        const struct seg_ttl_stats *b = &sum[i].st;
        unsigned id = (unsigned)i + 1;
        if (slabs && (b->segs > 0 || class_cmd_any(&sum[i].cmd))) {
            active++;
            segs += b->segs;
            rc = write_slabs_class(out, id, b, &sum[i].cmd);
        } else if (!slabs && b->items > 0) {
            rc = write_items_class(out, id, b, now);
        }
    }
    free(sum);
    if (rc == 0 && slabs) {
        rc = buf_printf(out, "STAT active_slabs %u\r\nSTAT total_malloced %llu\r\n", active,
                        (unsigned long long)(segs * mw->seg_size));
    }
    return rc < 0 ? rc : mc_compose_reply(out, MC_R_END);
}

/* route_ops.execute: a part that stays on this worker. */
static void
mc_execute(void *ctx, struct route_msg *m)
{
    msg_execute(ctx, m, NULL);
}

/* route_ops.abandon: a part whose connection closed; only RESP's MSETNX has anything to finish. */
static void
mc_abandon(void *ctx, struct route_msg *m)
{
    struct mc_worker *mw = ctx;
    if (m->op >= RESP_OP) {
        resp_abandon(&mw->resp, m);
    } else {
        route_msg_free(&mw->rw, m);
    }
}

/* At shutdown: a message that never finished its round trip. */
static void
msg_free_rt(struct rt_msg *m)
{
    route_msg_free(NULL, (struct route_msg *)m);
}

static const struct route_ops mc_route_ops = {
    .msg_size = sizeof(struct mc_msg),
    .execute = mc_execute,
    .fetch = mc_fetch,
    .emit = mc_emit,
    .abandon = mc_abandon,
    .lost_reply = "SERVER_ERROR out of memory\r\n",
};

/* The options of worker id's shard, of n: its share of -m, segments raised to fit -I. */
static int
shard_options(const struct config *cfg, unsigned id, unsigned n, struct seg_options *o)
{
    seg_options_init(o);
    o->mem_bytes = config_uint(cfg, "memory-limit") / n;
    o->item_max = config_uint(cfg, "max-item-size");
    o->seg_size = config_uint(cfg, "segment-size");
    while (o->seg_size < o->item_max) {
        o->seg_size <<= 1;
    }
    o->seed = id + 1;
    o->prefault = config_bool(cfg, "prefault");
    return seg_evict_policy_parse(evict_names[config_enum(cfg, "eviction")], &o->evict);
}

/* -m against what n shards of o's segments can take. Returns 0 or -EINVAL with err. */
static int
check_memory(const struct config *cfg, unsigned n, const struct seg_options *o, char *err,
             size_t errlen)
{
    uint64_t m = config_uint(cfg, "memory-limit");
    bool raised = o->seg_size > config_uint(cfg, "segment-size");
    char mtext[24], seg[24], least[24], most[24];
    config_format_size(m, mtext, sizeof(mtext));
    config_format_size(o->seg_size, seg, sizeof(seg));
    if (o->mem_bytes < seg_mem_min(o)) {
        snprintf(err, errlen,
                 "--memory-limit: %s is too little for %u worker thread%s with %s segments%s: "
                 "each thread's shard needs two segments; the least that works is %s (or give "
                 "fewer --threads, or a smaller %s)",
                 mtext, n, n == 1 ? "" : "s", seg, raised ? " (raised to fit --max-item-size)" : "",
                 config_format_size((uint64_t)seg_mem_min(o) * n, least, sizeof(least)),
                 raised ? "--max-item-size" : "--segment-size");
        return -EINVAL;
    }
    if (o->mem_bytes > seg_mem_max(o)) {
        snprintf(err, errlen,
                 "--memory-limit: %s is too much for %u worker thread%s with %s segments: a "
                 "shard holds at most %s; the most that works is %s (or give more --threads, or "
                 "a larger --segment-size)",
                 mtext, n, n == 1 ? "" : "s", seg,
                 config_format_size(seg_mem_max(o), least, sizeof(least)),
                 config_format_size((uint64_t)seg_mem_max(o) * n, most, sizeof(most)));
        return -EINVAL;
    }
    return 0;
}

/* --memory-file as seg_file_open() will open it: read and written, created if absent. */
static int
check_memory_file(const char *path, char *err, size_t errlen)
{
    char why[PATH_MAX + 64];
    struct stat st;
    int rc = config_path_writable(path, why, sizeof(why));
    if (rc == 0 && stat(path, &st) == 0) {
        if (!S_ISREG(st.st_mode)) {
            rc = -EINVAL;
            snprintf(why, sizeof(why), "not a regular file");
        } else if (access(path, R_OK) < 0) {
            rc = -errno;
            snprintf(why, sizeof(why), "%s", strerror(-rc));
        }
    }
    if (rc < 0) {
        snprintf(err, errlen, "-e/--memory-file: cannot use '%.200s': %.300s", path, why);
        return rc == -EINVAL ? -EEXIST : rc;
    }
    return 0;
}

/*
 * rt_product.check: what the workers' setup would refuse, before any starts. The shard options
 * are shard_options()'s, checked by seg_options_check(), the function seg_create() runs.
 */
static int
mc_check(const struct config *cfg, unsigned n, char *err, size_t errlen)
{
    uint64_t seg = config_uint(cfg, "segment-size");
    char text[24];
    if ((seg & (seg - 1)) != 0) {
        snprintf(err, errlen, "--segment-size: %s is not a power of two (4k, 8k, ... 16m)",
                 config_format_size(seg, text, sizeof(text)));
        return -EINVAL;
    }
    const char *delim = config_str(cfg, "prefix-delimiter");
    if (strlen(delim) > 1) {
        snprintf(err, errlen, "-D/--prefix-delimiter: takes one character, not '%.40s'", delim);
        return -EINVAL;
    }
    struct seg_options o;
    int rc = shard_options(cfg, 0, n, &o);
    if (rc == 0) {
        rc = check_memory(cfg, n, &o, err, errlen);
    }
    if (rc == 0 && seg_options_check(&o) < 0) {
        snprintf(err, errlen,
                 "--memory-limit, --max-item-size, --segment-size: the storage refuses "
                 "shards of %zu bytes with segments of %zu bytes and items up to %zu",
                 o.mem_bytes, o.seg_size, o.item_max);
        rc = -EINVAL;
    }
    const char *path = config_str(cfg, "memory-file");
    if (rc == 0 && path[0] != '\0') {
        rc = check_memory_file(path, err, errlen);
    }
    if (rc == 0 && config_uint(cfg, "resp-port") > 0) {
        char *pw = NULL;
        rc = resp_password(cfg, &pw, err, errlen);
        free(pw);
    }
    return rc;
}

/* Segments each shard gets at least when the thread count is automatic: with fewer, eviction
 * (a whole segment at a time) would throw away a large part of a shard's items at once. */
#define AUTO_SHARD_SEGMENTS 8

/* The automatic thread count's cap (rt_product.workers_max): -m in shards of at least
 * AUTO_SHARD_SEGMENTS segments, e.g. 8 workers for the packaged 64m with 1m segments. */
static unsigned
mc_workers_max(const struct config *cfg)
{
    struct seg_options o;
    if (shard_options(cfg, 0, 1, &o) < 0) {
        return 1; /* mc_check names the bad option */
    }
    uint64_t n = config_uint(cfg, "memory-limit") / ((uint64_t)o.seg_size * AUTO_SHARD_SEGMENTS);
    return n == 0 ? 1 : n > UINT_MAX ? UINT_MAX : (unsigned)n;
}

static int
mc_worker_setup(unsigned id, unsigned n, const struct config *cfg, void **ctx)
{
    struct mc_worker *mw = calloc(1, sizeof(*mw));
    if (mw == NULL) {
        return -ENOMEM;
    }
    route_worker_init(&mw->rw, id, n, &mc_route_ops, mw, rt_metrics(TABLE_LAT), LAT_COUNT);
    mw->cfg = cfg;
    struct seg_options o;
    int rc = shard_options(cfg, id, n, &o);
    mw->seg_size = o.seg_size;
    if (rc == 0) {
        rc = mc_persist_create(id, n, cfg, &o, &mw->shard.seg);
    }
    if (rc < 0) {
        log_error("worker %u: cannot create its storage shard (%zu bytes of --memory-limit, "
                  "segments of %zu bytes, items up to %zu): %s",
                  id, o.mem_bytes, o.seg_size, o.item_max, strerror(-rc));
        free(mw);
        return rc;
    }
    mw->shard.cas_disabled = config_bool(cfg, "disable-cas");
    mw->dump_disabled = config_bool(cfg, "disable-dumping");
    mw->flush_disabled = config_bool(cfg, "disable-flush-all");
    mw->popts.max_value = (uint32_t)(o.item_max - ITEM_ROOM);
    mw->popts.shutdown_enabled = config_bool(cfg, "enable-shutdown");
    const char *delim = config_str(cfg, "prefix-delimiter"); /* one character: mc_check() */
    mw->delim = delim[0] != '\0' ? delim[0] : ':';
    if (delim[0] != '\0') {
        atomic_store_explicit(&detail_on, true, memory_order_relaxed); /* -D turns it on */
    }
    mw->m_cmd = rt_metrics(TABLE_CMD);
    mw->m_seg = rt_metrics(TABLE_SEG);
    mw->m_srv = rt_metrics(TABLE_SRV);
    /* The shards' shares add up to -m: worker 0 also shows the division's remainder. */
    mw->limit_share = config_uint(cfg, "memory-limit") / n;
    if (id == 0) {
        mw->limit_share += config_uint(cfg, "memory-limit") % n;
    }
    mw->ttl_scratch =
        malloc(sizeof(*mw->ttl_scratch) + seg_ttl_bucket_count() * sizeof(mw->ttl_scratch->e[0]));
    mw->ttl_base = calloc(seg_ttl_bucket_count(), sizeof(*mw->ttl_base));
    if (mw->ttl_scratch == NULL || mw->ttl_base == NULL || id >= MAX_WORKERS ||
        mc_detail_create(&mw->detail, detail_cap(n)) < 0 ||
        (config_uint(cfg, "resp-port") > 0 &&
         resp_worker_init(&mw->resp, &mw->rw, &mw->shard, o.item_max - ITEM_ROOM, cfg) < 0)) {
        seg_destroy(&mw->shard.seg);
        mc_detail_destroy(&mw->detail);
        free(mw->ttl_scratch);
        free(mw->ttl_base);
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
    struct ttl_view *old = rcu_xchg_pointer(&ttl_views[mw->rw.id], NULL);
    if (old != NULL && prcu_defer_free(old, free) < 0) {
        prcu_synchronize(); /* no memory for a deferred free: wait for readers here */
        free(old);
    }
    route_worker_teardown(&mw->rw);
    resp_worker_teardown(&mw->resp);
    seg_destroy(&mw->shard.seg);
    mc_detail_destroy(&mw->detail);
    free(mw->ttl_scratch);
    free(mw->ttl_base);
    free(mw);
}

/* The largest request: a get line (the parser's default bound), or a line and one value (larger
 * values are refused and their bytes skipped as they arrive, never buffered whole). */
static size_t
request_limit(const struct config *cfg)
{
    size_t set = (size_t)config_uint(cfg, "max-item-size") + MC_LINE_MAX;
    if (config_uint(cfg, "resp-port") > 0) {
        /* A RESP request holds all its arguments whole (an MSET of several values, an MGET of
         * many keys): up to the product's most, each read buffer within buffer-memory. */
        return mc_product.request_max;
    }
    return set > MC_GET_LINE_DEFAULT ? set : MC_GET_LINE_DEFAULT;
}

/* The Redis protocol's port, beside memcached's. */
static const struct rt_port resp_port[] = {
    {.option = "resp-port",
     .proto = RESP_PROTO_ID,
     .name = "(resp)",
     .refusal = "-ERR max number of clients reached\r\n"}, /* Redis's, past maxclients */
};

const struct rt_product mc_product = {
    .name = "petrel",
    .conn_state_size = sizeof(struct mc_conn) > sizeof(struct resp_conn) ? sizeof(struct mc_conn)
                                                                         : sizeof(struct resp_conn),
    .request_max = (16u << 20) + MC_LINE_MAX,
    .request_limit = request_limit,
    .reply_max = REPLY_MAX,
    .refusal = "ERROR Too many open connections\r\n", /* memcached's, past -c */
    .port_option = "port",
    .ports = resp_port,
    .nports = 1,
    .check = mc_check,
    .workers_max = mc_workers_max,
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
