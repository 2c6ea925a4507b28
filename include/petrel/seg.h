/*
 * seg: the Segcache storage engine, one instance per worker shard.
 *
 * Items are appended to fixed-size segments. Every segment belongs to one TTL bucket and all its
 * items share the segment's expiry, so expiration and eviction free whole segments. A hash table
 * of 64-byte buckets (7 item slots + 1 overflow link) maps a key to its item; a slot packs a
 * 16-bit tag, an 8-bit read-frequency counter and a 40-bit location (segment id + byte offset).
 * An item costs 5 bytes of metadata, plus 4 bytes of client flags when they are non-zero and
 * 4 bytes of expiry when it differs from its segment's. The CAS is derived from the item's
 * location and the segment's generation; only items moved by touch or merge eviction carry it
 * explicitly (8 bytes), and items given a CAS by the client. Spare bits of the item header hold
 * the state memcached's meta commands need (fetched, stale, win token sent) at no cost.
 * docs/storage.md has the details.
 *
 * Threads: an instance is owned by one thread (its worker) and never locked; every function
 * below taking a struct seg must be called from that thread only. Instances share nothing, so
 * several may live in one process.
 *
 * Keys: the caller hashes a key once with seg_hash() and passes the hash with the key. The
 * engine takes its bucket index from the low 32 bits and its tag from bits 32..47; it does not
 * use the top 16 bits, which the server uses to pick the shard.
 *
 * Expiry: every expiry passed in is an absolute unix time in seconds (the engine's clock, see
 * seg_now()): 0 means never, and any other value at or before now (negative ones included)
 * means already expired. Protocols convert their own conventions (memcached's relative
 * exptimes up to 30 days, Redis's EX/PX) before calling the engine.
 */
#ifndef PETREL_SEG_H
#define PETREL_SEG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <xxhash.h>

#define SEG_KEY_MAX       250 /* longest key, as in memcached */
#define SEG_SIZE_MIN      4096
#define SEG_SIZE_MAX      (16u << 20)
#define SEG_ITEM_OVERHEAD 21 /* worst case beside key and value: header, CAS, expiry, flags */

/** Eviction policies, chosen per instance. */
enum seg_evict_policy {
    SEG_EVICT_MERGE = 0, /* merge a few consecutive segments of one TTL bucket, keep hot items */
    SEG_EVICT_FIFO,      /* evict the oldest segment */
    SEG_EVICT_RANDOM,    /* evict a random segment */
    SEG_EVICT_CTE,       /* evict the segment closest to expiry */
    SEG_EVICT_UTIL,      /* evict the segment with the fewest live bytes */
    SEG_EVICT_NONE,      /* never evict: writes fail with SEG_NO_MEMORY */
    SEG_EVICT_COUNT
};

/** Config names of the policies ("merge", "fifo", "random", "cte", "util", "none"). */
extern const char *const seg_evict_policy_names[SEG_EVICT_COUNT];

/** Parse a policy name. Returns 0 and sets *out, or -EINVAL for an unknown name. Any thread. */
int seg_evict_policy_parse(const char *name, enum seg_evict_policy *out);

/** Clock: returns the current unix time in seconds. Called by the owner thread only. */
typedef int64_t (*seg_clock_fn)(void *ctx);

/** Options of one instance. Fill with seg_options_init() first, then override. */
struct seg_options {
    size_t mem_bytes; /* item memory of this shard (its share of -m); at least 2 segments */
    size_t seg_size;  /* segment size, a power of two in [SEG_SIZE_MIN, SEG_SIZE_MAX] */
    size_t item_max;  /* largest item (key + value + SEG_ITEM_OVERHEAD), <= seg_size */
    enum seg_evict_policy evict;
    unsigned merge_n;        /* segments merged into one by merge eviction, 2..16 */
    size_t item_bytes_hint;  /* expected bytes per item; sizes the full hash table (0: 64) */
    size_t ht_start_buckets; /* the table starts near this many (>= 64) and grows (0: 4096) */
    seg_clock_fn clock;      /* NULL: the real-time clock */
    void *clock_ctx;         /* passed to clock */
    uint64_t seed;           /* random policy and frequency counters */
    bool prefault;           /* touch all memory at creation (like memcached -L): RSS = full size,
                                and the hash table starts at its full size */
    /*
     * Memory file (warm restart): file_fd >= 0 puts the segment heap, its headers and a meta page
     * in a shared mapping of seg_region_size() bytes at file_off (page aligned) of that file,
     * and seg_create recovers what the region holds (or starts empty when it holds nothing
     * valid). Items then carry a 4-byte checksum. The caller keeps the descriptor open until
     * seg_create returns; seg_file.h manages whole files. -1 (default): anonymous memory.
     */
    int file_fd;
    uint64_t file_off;
};

/** Defaults: 64 MiB, 1 MiB segments, 1 MiB items, merge of 4, real clock. Any thread. */
void seg_options_init(struct seg_options *opts);

/** What seg_create() checks of opts, creating nothing: 0, or -EINVAL for options it refuses
 * (see seg_mem_min, seg_mem_max). Any thread. */
int seg_options_check(const struct seg_options *opts);

/** The least and the most mem_bytes seg_create() takes with opts's seg_size (a power of two in
 * range): two segments, and as many as a slot can name. Any thread. */
size_t seg_mem_min(const struct seg_options *opts);
size_t seg_mem_max(const struct seg_options *opts);

/** Bytes of a memory file region for an instance with these options. Any thread. */
size_t seg_region_size(const struct seg_options *opts);

struct seg;

/**
 * Create an instance: maps the segment heap (mmap: untouched pages cost no RSS) and the hash
 * table. Returns 0 and sets *out (owned by the caller, freed with seg_destroy), -EINVAL for bad
 * options, or -ENOMEM. Any thread; the instance then belongs to the thread that uses it.
 */
int seg_create(struct seg **out, const struct seg_options *opts);

/** Release everything and set *sp to NULL. NULL or *sp == NULL is a no-op. Owner thread. */
void seg_destroy(struct seg **sp);

/** XXH3 64-bit hash of a key: the one hash every layer uses for a key. Any thread. */
static inline uint64_t
seg_hash(const void *key, size_t len)
{
    return XXH3_64bits(key, len);
}

/** Results of the engine's operations. What a client is told of each is its protocol's business
 * (src/server). */
enum seg_result {
    SEG_OK = 0,      /* get hit; incr/decr done (the new value is returned separately) */
    SEG_STORED,      /* stored */
    SEG_NOT_STORED,  /* a condition of the store (add, replace, ...) did not hold */
    SEG_EXISTS,      /* CAS mismatch */
    SEG_NOT_FOUND,   /* no such live item; for get: a miss */
    SEG_DELETED,     /* deleted */
    SEG_TOUCHED,     /* its expiry changed */
    SEG_NON_NUMERIC, /* incr/decr of a value that is not a decimal number */
    SEG_TOO_LARGE,   /* the item cannot fit a segment */
    SEG_NO_MEMORY,   /* no room, and eviction could not make any */
};

/** A short lower-case name for r ("stored", "no_memory", ...), for logs and tests. Static
 * storage. Any thread. */
const char *seg_result_name(enum seg_result r);

/**
 * The most seconds an item stored with a remaining TTL of ttl seconds may expire early:
 * 0 below 32 s (exact), otherwise at most ttl / 16. Any thread.
 */
uint32_t seg_ttl_slack(uint32_t ttl);

/** The engine's current time (the clock, read at the last call). Owner thread. */
int64_t seg_now(const struct seg *s);

/**
 * Read the engine's clock now and return it (seg_now() then returns it too): the time a
 * relative TTL counts from when it is turned into an absolute expiry. Owner thread.
 */
int64_t seg_clock(struct seg *s);

/**
 * Item state bits, kept in the item header at no cost in bytes (struct seg_view.state,
 * seg_mark()). A new version of an item (a store of any mode, seg_clear_value) starts with none;
 * rewrites of the same version (touch, merge, incr, seg_invalidate) keep them.
 */
#define SEG_ST_FETCHED 0x10u /* read at least once by seg_get (not by a peek) */
#define SEG_ST_STALE   0x20u /* invalidated (meta I): the value is known to be out of date */
#define SEG_ST_WIN     0x40u /* a recache token ("win") was handed out for this version */
#define SEG_ST_MASK    (SEG_ST_FETCHED | SEG_ST_STALE | SEG_ST_WIN)

/**
 * A read result. value points into the segment: it stays valid until the next mutating call
 * (store, delete, touch, incr, mark, invalidate, clear, reserve, commit, abort, flush, tick)
 * on the same instance.
 */
struct seg_view {
    const char *value;
    size_t vlen;
    uint32_t flags;  /* memcached client flags */
    uint64_t cas;    /* unique per item version, never 0 (unless a caller chose it) */
    int64_t ttl;     /* seconds left (lower bound), -1 when the item never expires */
    uint32_t age;    /* seconds since its segment was opened: >= seconds since it was written */
    uint32_t size;   /* bytes the item takes in its segment (header, key and value) */
    uint8_t state;   /* SEG_ST_* bits as they were before this read */
    uint16_t bucket; /* its TTL bucket (an index for seg_ttl_stats_get) */
};

/** Look a key up. SEG_OK with *out filled, or SEG_NOT_FOUND. Counts a read. Owner thread. */
enum seg_result seg_get(struct seg *s, const void *key, size_t klen, uint64_t hash,
                        struct seg_view *out);

/**
 * Look a key up without counting a read in the item: neither its frequency counter nor its
 * SEG_ST_FETCHED bit change (memcached's mg u, me, and lookups made on behalf of another
 * command). The instance's hit and miss statistics still count it. As seg_get otherwise.
 */
enum seg_result seg_peek(struct seg *s, const void *key, size_t klen, uint64_t hash,
                         struct seg_view *out);

/**
 * Set, then clear, SEG_ST_STALE / SEG_ST_WIN bits of a live item, in place: neither its CAS
 * nor its place change. SEG_OK, or SEG_NOT_FOUND. Owner thread.
 */
enum seg_result seg_mark(struct seg *s, const void *key, size_t klen, uint64_t hash, unsigned set,
                         unsigned clear);

/**
 * Invalidate (meta md I): the item stays readable but gets SEG_ST_STALE, loses SEG_ST_WIN (so
 * that the next reader may win the recache token), and gets a new CAS: new_cas, or a fresh one
 * when 0. With set_ttl, it also gets the absolute expiry expire (see "Expiry" above). The
 * item is rewritten (segments are append-only), so this can fail for lack of memory.
 * SEG_OK with *cas_out (if not NULL), SEG_NOT_FOUND or SEG_NO_MEMORY. Owner thread.
 */
enum seg_result seg_invalidate(struct seg *s, const void *key, size_t klen, uint64_t hash,
                               bool set_ttl, int64_t expire, uint64_t new_cas, uint64_t *cas_out);

/**
 * Replace an item's value with an empty one (meta md x), keeping its client flags and expiry;
 * the new version has no state bits and a new CAS (new_cas, or a fresh one when 0).
 * SEG_OK with *cas_out (if not NULL), SEG_NOT_FOUND or SEG_NO_MEMORY. Owner thread.
 */
enum seg_result seg_clear_value(struct seg *s, const void *key, size_t klen, uint64_t hash,
                                uint64_t new_cas, uint64_t *cas_out);

/** A key with its hash, for batch calls. */
struct seg_key {
    const void *key;
    size_t klen;
    uint64_t hash;
};

/**
 * Look up n keys: the same as n seg_get() calls, but the memory accesses of different keys are
 * overlapped (prefetched a few keys ahead), which matters once the table outgrows the CPU cache.
 * Use it for multi-key gets and for gets pipelined in one read. All n views stay valid until the
 * next mutating call. Owner thread.
 */
void seg_get_batch(struct seg *s, size_t n, const struct seg_key *keys, struct seg_view *views,
                   enum seg_result *results);

/**
 * Hint that hash will be looked up soon (e.g. the next request already parsed): prefetches its
 * hash bucket. No effect on contents. Owner thread.
 */
void seg_prefetch(const struct seg *s, uint64_t hash);

/**
 * Second stage, some time after seg_prefetch(hash): reads the (now cached) bucket and prefetches
 * the first two cache lines of the items whose tags match (a small item's key and value), so that
 * the lookup and the copy of the value find them in cache. Owner thread.
 */
void seg_prefetch_item(const struct seg *s, uint64_t hash);

/** Store commands. */
enum seg_store_mode { SEG_SET, SEG_ADD, SEG_REPLACE, SEG_APPEND, SEG_PREPEND, SEG_CAS };

/** One store request; the engine copies what it keeps. */
struct seg_store_req {
    enum seg_store_mode mode;
    const void *key;
    size_t klen; /* 1..SEG_KEY_MAX */
    uint64_t hash;
    const void *value; /* ignored by seg_reserve */
    size_t vlen;
    uint32_t flags;   /* ignored by append/prepend, which keep the item's */
    int64_t expire;   /* absolute expiry, 0 = never (see "Expiry" above); not for append/prepend */
    uint64_t cas;     /* SEG_CAS: the value to compare; other modes: 0, or compare like SEG_CAS */
    uint64_t new_cas; /* 0: the engine picks the CAS; else the new version's (kept in 8 bytes) */
    /*
     * Invalidate (meta ms I): when the compared CAS is lower than the item's, store anyway,
     * marked SEG_ST_STALE, with the old version's expiry and SEG_ST_WIN bit, instead of EXISTS.
     */
    bool invalidate;
};

/**
 * Store. Returns STORED, NOT_STORED (add of a present key; replace/append/prepend of a missing
 * one), EXISTS / NOT_FOUND (CAS mismatch / missing key when a CAS is compared), TOO_LARGE or
 * NO_MEMORY. A failed set removes the key's old value, as memcached does. On STORED, *cas_out
 * (if not NULL) gets the new CAS (0 when the expiry was already past). Owner thread.
 */
enum seg_result seg_store(struct seg *s, const struct seg_store_req *req, uint64_t *cas_out);

/** Delete. SEG_DELETED or SEG_NOT_FOUND. Owner thread. */
enum seg_result seg_delete(struct seg *s, const void *key, size_t klen, uint64_t hash);

/**
 * Give an item a new absolute expiry (an expiry already past removes it), keeping its CAS and
 * state bits. SEG_TOUCHED, SEG_NOT_FOUND or SEG_NO_MEMORY. Owner thread.
 */
enum seg_result seg_touch(struct seg *s, const void *key, size_t klen, uint64_t hash,
                          int64_t expire);

/**
 * incr (decr = false) or decr: the value must be decimal digits (trailing spaces allowed) of a
 * 64-bit unsigned number; incr wraps, decr stops at 0. The item gets the decimal result (its
 * length may change), a new CAS, and keeps flags and expiry. SEG_OK with *value_out (and
 * *cas_out if not NULL), SEG_NOT_FOUND, SEG_NON_NUMERIC or SEG_NO_MEMORY. Owner thread.
 */
enum seg_result seg_incr(struct seg *s, const void *key, size_t klen, uint64_t hash, uint64_t delta,
                         bool decr, uint64_t *value_out, uint64_t *cas_out);

/** seg_incr() whose result gets the CAS new_cas (0: a fresh one, as seg_incr). Owner thread. */
enum seg_result seg_incr_cas(struct seg *s, const void *key, size_t klen, uint64_t hash,
                             uint64_t delta, bool decr, uint64_t new_cas, uint64_t *value_out,
                             uint64_t *cas_out);

/**
 * Space reserved in a segment for a value of known size, to be received directly into
 * storage. Fields after value/vlen are private to the engine.
 */
struct seg_reservation {
    char *value; /* write vlen bytes here before seg_commit() */
    size_t vlen;
    struct seg_store_req req; /* key, value and klen are not kept: the key lives in the item */
    int64_t expire;           /* req.expire, clamped */
    uint32_t sid;             /* segment, pinned until commit or abort */
    uint32_t off;
    bool in_place; /* the reserved item can be linked as it is */
    bool active;
};

/**
 * Reserve space for req (req->value is ignored; req->key is copied). The segment holding it is
 * pinned (never evicted, merged or reclaimed) until seg_commit() or seg_abort(), and other calls
 * may run in between. SEG_OK, SEG_TOO_LARGE or SEG_NO_MEMORY. Owner thread.
 */
enum seg_result seg_reserve(struct seg *s, const struct seg_store_req *req,
                            struct seg_reservation *res);

/** Store the reserved item as seg_store() would now. Returns what seg_store() returns. */
enum seg_result seg_commit(struct seg *s, struct seg_reservation *res, uint64_t *cas_out);

/** Drop a reservation; its bytes become garbage reclaimed with the segment. Owner thread. */
void seg_abort(struct seg *s, struct seg_reservation *res);

/**
 * flush_all: at unix time when (0 or past: now) every item stored before that moment becomes
 * invalid. A later call replaces a pending one. Memory is reclaimed by seg_tick(). Owner thread.
 */
void seg_flush(struct seg *s, int64_t when);

/**
 * Background work; call every ~100 ms (at least 10 times a second). Runs a pending delayed
 * flush and frees expired and flushed segments in bulk. Bound: a few segment header reads per
 * TTL bucket (464 buckets) plus at most 65,536 items unlinked (finishing the segment in hand;
 * ~2-4 ms on these machines). Returns true when it stopped on that bound with reclaimable
 * segments possibly left: the caller may then go on with seg_reclaim_step() when it has time.
 * Owner thread.
 */
bool seg_tick(struct seg *s);

/**
 * More reclaiming, for a caller with idle time after seg_tick() returned true: visits at most
 * max_items items (finishing the segment in hand). Returns true while reclaimable segments may
 * remain. Owner thread.
 */
bool seg_reclaim_step(struct seg *s, uint32_t max_items);

/** Another thread that makes memory present (see seg_prefault_step). */
struct seg_offload {
    /** Take [p, p + len) to make present, from its start on: true if it took it. */
    bool (*post)(void *p, size_t len);
    /** Bytes at the end of the range last taken not present yet (0 once done). */
    size_t (*left)(void);
};

/**
 * Make the heap's next segments present (page-faulted in) before an item is written there, so
 * that no store waits for page faults: keeps a few MiB past the last segment ever taken present,
 * so memory still grows with use. Also the hash table's new half before it is written. For a
 * caller with idle time: at most max_bytes (rounded down to whole pages, at least one) per call
 * done here; with transparent huge pages a call may fault in one whole huge page.
 * With off, the heap's part (16 MiB ahead then) is handed to another thread, whole: a huge page
 * faulted in here can take milliseconds on a virtual machine. Only when that thread lags so far
 * that the next two segments are not present yet (it yields the CPU to everything) is the
 * part of them it has not reached done here, in steps of max_bytes. Returns true while more
 * is left to do here. Anonymous heaps only (a memory file's is left to the page cache). Owner
 * thread.
 */
bool seg_prefault_step(struct seg *s, size_t max_bytes, const struct seg_offload *off);

/**
 * A live item as a scan (seg_scan) sees it. key points into the segment and is valid only
 * during the callback.
 */
struct seg_item_info {
    const char *key;
    size_t klen;
    int64_t expire;  /* absolute unix time the item expires at, 0 = never */
    int64_t written; /* when its segment was opened: at or before the item was written */
    uint64_t cas;    /* as seg_view.cas */
    uint32_t flags;  /* memcached client flags */
    uint32_t size;   /* bytes the item takes in its segment (header, key and value) */
    uint16_t bucket; /* its TTL bucket (an index for seg_ttl_stats_get) */
    uint8_t state;   /* SEG_ST_* bits */
};

/**
 * Where a scan stands: a position in the space of key hashes (their low 32 bits). Every key
 * whose hash is below pos has been visited. Plain data: it may be copied to another thread and
 * back between calls.
 */
struct seg_cursor {
    uint64_t pos; /* 0: at the start; SEG_CURSOR_END: done */
};

#define SEG_CURSOR_END (UINT64_C(1) << 32)

/**
 * Called by seg_scan() for each live item; it must not call into the instance. Returning false
 * asks the scan to stop once the hash bucket in hand is finished.
 */
typedef bool (*seg_scan_fn)(void *ctx, const struct seg_item_info *it);

/**
 * Visit live items (not expired, not flushed) in hash order, from the cursor on, calling fn
 * for each, and advance the cursor. Visits whole hash buckets (a bucket and its overflow chain)
 * and stops after max_buckets of them, or after the bucket in which fn returned false, or at the
 * end. Returns true while items may remain (the cursor is not at SEG_CURSOR_END).
 *
 * Calls that change the instance may run between two scan calls: a key present (linked) from
 * the first call to the last is visited exactly once, wherever its item moves (touch, merge,
 * rewrite) and however the hash table grows, because the cursor is a hash position and not a
 * location; a key added or removed meanwhile may or may not be visited. Nothing is counted as a
 * read. Owner thread.
 */
bool seg_scan(struct seg *s, struct seg_cursor *cur, unsigned max_buckets, seg_scan_fn fn,
              void *ctx);

/** Per-instance statistics. Counters only grow; gauges are current. */
struct seg_stats {
    uint64_t items;              /* gauge: linked items (curr_items) */
    uint64_t bytes;              /* gauge: bytes of linked items (bytes) */
    uint64_t segs_total;         /* gauge: segments in the heap */
    uint64_t segs_used;          /* gauge */
    uint64_t segs_free;          /* gauge */
    uint64_t heap_bytes;         /* gauge: segment heap (segs_total * seg_size) */
    uint64_t hash_bytes;         /* gauge: hash table incl. overflow buckets */
    uint64_t hash_buckets;       /* gauge: buckets of the hash table (the new one while growing) */
    uint64_t hash_growing;       /* gauge: 1 while the table doubles (both tables mapped) */
    uint64_t hash_grow_failures; /* doublings not started for lack of memory (tried again later) */
    uint64_t overhead_bytes;     /* gauge: segment headers, TTL buckets, merge buffer */
    uint64_t prefault_bytes;     /* heap bytes made present ahead of use (seg_prefault_step) */
    uint64_t hits;               /* get hits */
    uint64_t misses;             /* get misses (incl. expired) */
    uint64_t get_expired;        /* gets that found an expired or flushed item */
    uint64_t total_items;        /* items stored (total_items) */
    uint64_t evicted_items;      /* live items evicted (evictions) */
    uint64_t evicted_unfetched;  /* evicted items never read */
    uint64_t evicted_segs;       /* segments freed by eviction or merge */
    uint64_t merges;             /* merge evictions */
    uint64_t expired_items;      /* items freed because they expired (reclaimed) */
    uint64_t expired_unfetched;  /* of those, never read (expired_unfetched) */
    uint64_t expired_segs;       /* segments freed by expiration */
    uint64_t emptied_segs;       /* segments freed when their last live item was replaced or
                                    deleted, before a segment never used is opened */
    uint64_t flushed_items;      /* items freed because of flush_all */
    uint64_t flushes;            /* flush_all executed */
    uint64_t store_too_large;    /* stores refused: too large */
    uint64_t store_no_memory;    /* stores refused: out of memory */
    /* Recovery from a memory file, at seg_create (0 without one). */
    uint64_t recovered_items;   /* items recovered */
    uint64_t recovery_damaged;  /* items dropped as torn or damaged (checksum, bounds) */
    uint64_t recovery_expired;  /* items dropped because they expired meanwhile */
    uint64_t recovery_bad_segs; /* segments dropped whole: their header was not valid */
    uint64_t recovery_reset;    /* 1: the region held another layout or no valid data: empty */
};

/** Copy the statistics. Owner thread (another thread must get a copy from the owner). */
void seg_stats_get(const struct seg *s, struct seg_stats *out);

/**
 * Summary of one TTL bucket. The counters only grow, from the instance's creation; a bucket's
 * items all have a nonzero expiry except in the "never expires" bucket (ttl_hi == 0).
 */
struct seg_ttl_stats {
    uint32_t ttl_lo; /* TTLs in [ttl_lo, ttl_hi] (seconds); 0..0 is "never expires" */
    uint32_t ttl_hi;
    uint32_t segs;
    /*
     * When the oldest segment holding a live item was opened (unix time, engine's clock): its
     * items were written at or after it, so now - oldest bounds the age of the oldest item from
     * above. 0 when the bucket has no items. Past SEG_AGE_SCAN segments without a live item at
     * the front of the chain, the last of them (still an upper bound, a looser one).
     */
    uint32_t oldest;
    uint64_t items;
    uint64_t bytes;
    uint64_t evicted;           /* live items evicted (whole segments or merges) */
    uint64_t evicted_unfetched; /* of those, never read */
    uint64_t expired;           /* items freed because they expired (not those flushed) */
    uint64_t expired_unfetched; /* of those, never read */
    uint64_t no_memory;         /* allocations for this bucket refused for lack of memory */
};

#define SEG_AGE_SCAN 64 /* segment headers seg_ttl_stats_get reads at most to find the oldest */

/** Number of TTL buckets (indexes for seg_ttl_stats_get), for arrays sized at compile time. */
#define SEG_TTL_BUCKETS 464

/** Number of TTL buckets (indexes for seg_ttl_stats_get): SEG_TTL_BUCKETS. Any thread. */
size_t seg_ttl_bucket_count(void);

/** seg_ttl_bucket_of() for an expiry other than 0. Owner thread. */
size_t seg_ttl_bucket_expiring(const struct seg *s, int64_t expire);

/**
 * The TTL bucket a store with this absolute expiry (see "Expiry" above) writes its item to,
 * by the engine's clock as last read (seg_now): right after seg_store, the bucket that store
 * chose, whether or not it got as far as writing. 0 (never expires) is bucket 0, answered
 * inline (a store path that counts per bucket pays no call for it); an expiry already past
 * maps to bucket 1 (the shortest TTL's). Owner thread.
 */
static inline size_t
seg_ttl_bucket_of(const struct seg *s, int64_t expire)
{
    return expire == 0 ? 0 : seg_ttl_bucket_expiring(s, expire);
}

/**
 * The TTL bucket of the live item that the last seg_store, seg_delete, seg_touch, seg_incr or
 * seg_incr_cas found under its key: the version a store compared, refused to add over or
 * replaced, the item a touch changed (where it was before the touch moved it), the number an
 * incr changed. Meaningful only right after such a call that found one (not after NOT_FOUND,
 * nor after a store that found no item): other calls may change it. seg_get and seg_peek give
 * it in seg_view.bucket instead. Owner thread.
 */
size_t seg_last_bucket(const struct seg *s);

/**
 * Fill *out for bucket idx. Returns 0, or -EINVAL for a bad index. Reads at most SEG_AGE_SCAN
 * segment headers. Owner thread.
 */
int seg_ttl_stats_get(const struct seg *s, size_t idx, struct seg_ttl_stats *out);

#endif /* PETREL_SEG_H */
