/*
 * seg_impl.h: private to the seg engine (the seg_*.c files here), never included elsewhere. The
 * layout of items, hash slots and segment headers, the instance struct, the small inline helpers
 * every part uses, and the functions one part of the engine calls in another. Threads: all of it
 * belongs to the instance's owner thread, as the public API in include/petrel/seg.h says.
 *
 * The engine is split along its sections: seg.c (operations, stats, lifecycle), seg_ht.c (hash
 * table and scan), seg_segment.c (segments, walks, allocation, whole-segment eviction),
 * seg_ttl.c (TTL buckets, expiration, flush), seg_merge.c (merge eviction).
 */
#ifndef PETREL_SEG_IMPL_H
#define PETREL_SEG_IMPL_H

#include "petrel/seg.h"

#include <string.h>

/*
 * TTL buckets. Index 0 holds items that never expire. A remaining TTL t in 1..31 s has its own
 * bucket (1 s wide, so short TTLs are exact); above that each power of two [2^k, 2^(k+1)) is cut
 * into 16 buckets of width 2^(k-4) <= t/16. A segment opened in bucket i at time now gets
 * expire_at = now + lo(i). Items whose expiry falls in [expire_at, expire_at + width(i)) share
 * that expiry: they expire at most width - 1 seconds early, never late, at no cost per item.
 *
 * So that a bucket written slowly does not open a new, mostly empty segment every width seconds,
 * a segment keeps accepting items up to expire_at + accept(i) (a quarter of the TTL); the later
 * ones carry their exact expiry (4 bytes, IT_EXP). The segment is freed once its last item
 * expired (max_expire).
 */
#define TB_SHORT   32
#define TB_COUNT   (TB_SHORT + 27 * 16) /* k = 5..31 */
#define TB_NEVER   0
#define TICK_ITEMS 65536 /* items unlinked per seg_tick() before it stops */
_Static_assert(TB_COUNT == SEG_TTL_BUCKETS && TB_NEVER == 0,
               "seg.h's bucket count and never-expires bucket");

/*
 * A hash slot: tag (16 bits, from hash bits 32..47, never 0 so an empty slot is 0), frequency
 * counter (8 bits), location (40 bits: segment id << off_bits | byte offset).
 */
#define SLOT_TAG_SHIFT     48
#define SLOT_FREQ_SHIFT    40
#define SLOT_LOC_MASK      ((UINT64_C(1) << SLOT_FREQ_SHIFT) - 1)
#define SLOT_FREQ_MASK     (UINT64_C(0xff) << SLOT_FREQ_SHIFT)
#define SLOT_TAG_MASK      (~(SLOT_LOC_MASK | SLOT_FREQ_MASK))
#define SLOTS              7 /* item slots per 64-byte bucket; slot 7 links the overflow bucket */
#define OVF_CHUNK_SHIFT    10
#define OVF_CHUNK          (1u << OVF_CHUNK_SHIFT) /* overflow buckets allocated 1024 at a time */
#define HT_START_BUCKETS   4096 /* initial table: 256 KiB, unless the heap needs less */
#define HT_GROW_LOAD       5    /* the table doubles when items reach 5 per bucket (of 7 slots) */
#define HT_MOVE_PER_INSERT 2    /* old buckets moved per insert while growing */
#define HT_MOVE_PER_TICK   1024 /* ... and per seg_tick() */

/*
 * An item: 5 header bytes (key length, item flags, 24-bit value length), then the explicit CAS
 * (8 bytes, only for relocated items), the expiry (4 bytes, only when it differs from the
 * segment's), the client flags (4 bytes, only when non-zero), the key, the value, and the
 * checksum (4 bytes, only in a heap kept in a memory file: IT_SUM). The checksum comes last so
 * that no field moves with it: a lookup reads the item exactly as without a file. Items are
 * byte-aligned: multi-byte fields are read with memcpy.
 */
#define IT_HDR   5
#define IT_DEAD  0x01 /* replaced, deleted, or a reservation not yet committed */
#define IT_FLAGS 0x02
#define IT_CAS   0x04
#define IT_EXP   0x08 /* the item carries its own expiry (4 bytes, after the CAS) */
/* 0x10, 0x20, 0x40: the SEG_ST_* state bits (fetched, stale, win token sent). */
/* IT_SUM: the item ends with a checksum (4 bytes, seg_recover.c); IT_SUM_LEN(f): its length
 * for the flags f, 4 or 0, without a branch. */
#define IT_SUM        0x80
#define IT_SUM_LEN(f) (((f) >> 5) & 4)
_Static_assert(IT_SUM_LEN(IT_SUM) == 4 && IT_SUM_LEN(0x7f) == 0, "IT_SUM_LEN");
#define IT_STATE  SEG_ST_MASK
#define IT_LAYOUT (IT_FLAGS | IT_CAS | IT_EXP | IT_SUM) /* the bits that say where fields are */
_Static_assert((SEG_ST_MASK & (IT_DEAD | IT_LAYOUT)) == 0, "state bits overlap");

#define SEG_EMPTIED_MAX 64 /* emptied segments remembered (struct seg.emptied) */

/* Segment header, kept apart from the segment's data. */
struct seg_hdr {
    uint64_t cas_base;   /* CAS of the item at offset o is cas_base + o + 1; also the age */
    uint32_t write_off;  /* bytes used */
    uint32_t live_bytes; /* bytes of linked items */
    uint32_t live_items;
    uint32_t expire_at;  /* unix time its items without IT_EXP expire; 0 = never */
    uint32_t max_expire; /* when its last item expires: free after that; 0 = never */
    uint32_t opened;     /* unix time it was opened: its items are at most now - opened old */
    int32_t prev;        /* TTL bucket chain, oldest first; free list uses next */
    int32_t next;
    uint16_t bucket;
    uint16_t pinned; /* reservations and in-flight copies: not evictable while > 0 */
    uint8_t used;
};

/*
 * The first page of a shard's region in a memory file: what recovery must know beyond the
 * segment headers and the items. The counters are copies of the instance's (meta_sync).
 */
#define SEG_META_MAGIC   UINT64_C(0x31746d736c727470) /* "ptrlsmt1" */
#define SEG_META_VERSION 1
struct seg_meta {
    uint64_t magic;
    uint32_t version;
    uint32_t seg_size;
    uint64_t nseg;
    uint32_t hdr_size;  /* sizeof(struct seg_hdr) */
    uint32_t item_sum;  /* IT_SUM */
    uint64_t cas_next;  /* every segment opened has a cas_base below this */
    uint64_t flush_cas; /* segments below it were flushed */
    int64_t flush_at;   /* pending delayed flush_all, 0 = none */
};

_Static_assert(sizeof(struct seg_hdr) == 48, "segment headers are part of the memory file format");

struct ttl_bucket {
    int32_t head;       /* oldest segment */
    int32_t tail;       /* segment being written */
    int32_t merge_next; /* where the next merge in this bucket starts, -1 = head */
    uint32_t segs;
    uint64_t items;
    uint64_t bytes;
};

/*
 * What happened to a TTL bucket's items ("stats items"), apart from struct ttl_bucket so that the
 * lines every store and delete touch stay as they are: only unlinking by expiry or eviction and
 * a refused allocation write here, never a get or a store that succeeds.
 */
struct ttl_counts {
    uint64_t evicted;           /* live items evicted */
    uint64_t evicted_unfetched; /* of those, never read */
    uint64_t expired;           /* items freed because they expired */
    uint64_t expired_unfetched; /* of those, never read */
    uint64_t no_memory;         /* allocations refused for lack of memory */
};

struct seg {
    /* hot: read on every request */
    uint8_t *heap;
    uint64_t *ht;     /* nbuckets * 8 slots */
    uint64_t *ht_old; /* while growing: the previous table, nb_old buckets; else NULL */
    uint64_t **ovf;
    struct seg_hdr *hdrs;
    uint32_t nbuckets;
    uint32_t nb_old;   /* buckets of ht_old */
    uint32_t ht_moved; /* buckets of ht_old already moved to ht: lookups below go to ht */
    unsigned off_bits;
    int64_t now;
    int64_t flush_at;     /* pending delayed flush_all, 0 = none */
    uint16_t last_bucket; /* TTL bucket of the item find_live last found (seg_last_bucket) */
    uint64_t flush_cas;
    uint64_t cas_next;
    uint64_t ht_epoch; /* bumped whenever a slot may move or vanish */
    uint64_t rng;
    seg_clock_fn clock;
    void *clock_ctx;

    uint32_t seg_size;
    uint32_t nseg;
    uint32_t temp_sid; /* a segment id no segment has: merge's provisional locations */
    size_t item_max;
    size_t heap_len;
    size_t ht_len;          /* bytes of ht */
    uint32_t nb_max;        /* the table stops growing at this size */
    uint64_t ht_grow_retry; /* after a failed growth: items to reach before trying again */
    int32_t free_head;
    uint32_t nfree;
    /* Segments whose last live item went (item_kill), to be freed by seg_take before it
     * opens a segment never used: their memory is in RAM already. Checked again when taken. */
    uint32_t emptied[SEG_EMPTIED_MAX];
    uint32_t nemptied;
    /*
     * Prefault (seg_prefault_step): segments below taken_hi have been taken from the free list
     * at least once; heap bytes below pf_off are known to be in memory (or handed to a thread
     * that makes them so), and so are the first
     * ht_pf bytes of the hash table. The free list hands out
     * untouched segments in ascending order, so the next ones to be written start at taken_hi.
     */
    uint32_t taken_hi;
    size_t pf_off;
    size_t ht_pf;  /* bytes of ht known to be in memory (0 when a new table is mapped) */
    size_t pf_own; /* with an offload thread: heap bytes below this made present here (lag) */
    uint32_t ovf_nchunks;
    uint32_t ovf_cap;
    uint32_t ovf_free; /* free overflow bucket list, link values (index + 1), 0 = empty */
    enum seg_evict_policy evict;
    unsigned merge_n;
    unsigned merge_cursor;
    unsigned tick_cursor;
    uint8_t *scratch; /* merge builds the merged segment here */
    /*
     * Memory file (seg_recover.c): the shard's region of the file holds meta, then the segment
     * headers, then the heap, in one shared mapping; meta NULL: anonymous memory. it_sum is
     * IT_SUM when items carry a checksum (in a file), else 0.
     */
    struct seg_meta *meta;
    uint8_t *region;
    size_t region_len;
    uint8_t it_sum;
    struct seg_stats st;
    struct ttl_bucket tb[TB_COUNT];
    struct ttl_counts tc[TB_COUNT];
};

/* ---- TTL buckets (indexes and widths; the rest is in seg_ttl.c) ---- */

static inline unsigned
tb_index(uint32_t ttl)
{
    if (ttl < TB_SHORT) {
        return ttl; /* ttl >= 1 here; 0 is TB_NEVER */
    }
    unsigned k = 31u - (unsigned)__builtin_clz(ttl);
    return TB_SHORT + (k - 5) * 16 + ((ttl >> (k - 4)) & 15);
}

static inline uint32_t
tb_width(unsigned i)
{
    if (i < TB_SHORT) {
        return 1;
    }
    return UINT32_C(1) << ((i - TB_SHORT) / 16 + 1);
}

static inline uint32_t
tb_lo(unsigned i)
{
    if (i < TB_SHORT) {
        return i;
    }
    unsigned k = (i - TB_SHORT) / 16 + 5;
    return (UINT32_C(16) + (i - TB_SHORT) % 16) << (k - 4);
}

/* How long after expire_at a segment of bucket i still takes items (with IT_EXP past width). */
static inline uint32_t
tb_accept(unsigned i)
{
    uint32_t quarter = tb_lo(i) / 4;
    return quarter > tb_width(i) ? quarter : tb_width(i);
}

/* ---- small helpers ---- */

static inline uint64_t
rng_next(struct seg *s)
{
    /* xorshift64*: cheap, and good enough for sampling. */
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

static inline struct seg_hdr *
hdr(const struct seg *s, uint32_t sid)
{
    return &s->hdrs[sid];
}

static inline uint8_t *
seg_data(const struct seg *s, uint32_t sid)
{
    return s->heap + ((size_t)sid << s->off_bits);
}

static inline uint64_t
make_loc(const struct seg *s, uint32_t sid, uint32_t off)
{
    return ((uint64_t)sid << s->off_bits) | off;
}

static inline uint32_t
loc_sid(const struct seg *s, uint64_t loc)
{
    return (uint32_t)(loc >> s->off_bits);
}

static inline uint32_t
loc_off(const struct seg *s, uint64_t loc)
{
    return (uint32_t)(loc & ((UINT64_C(1) << s->off_bits) - 1));
}

static inline uint8_t *
loc_item(const struct seg *s, uint64_t loc)
{
    return s->heap + ((size_t)loc_sid(s, loc) << s->off_bits) + loc_off(s, loc);
}

static inline uint64_t
tag_of(uint64_t hash)
{
    uint64_t tag = (hash >> 32) & 0xffff;
    return (tag == 0 ? 1 : tag) << SLOT_TAG_SHIFT;
}

static inline unsigned
slot_freq(uint64_t v)
{
    return (unsigned)((v >> SLOT_FREQ_SHIFT) & 0xff);
}

/* A flush_all came after the segment was opened: all its items are invalid. */
static inline bool
seg_flushed(const struct seg *s, const struct seg_hdr *h)
{
    return h->cas_base < s->flush_cas;
}

/* Every item of the segment is invalid: it can be freed. */
static inline bool
seg_reclaimable(const struct seg *s, const struct seg_hdr *h)
{
    return seg_flushed(s, h) || (h->max_expire != 0 && h->max_expire <= s->now);
}

static inline uint32_t
it_vlen(const uint8_t *it)
{
    return it[2] | (uint32_t)it[3] << 8 | (uint32_t)it[4] << 16;
}

static inline size_t
it_meta(const uint8_t *it)
{
    return IT_HDR + ((it[1] & IT_CAS) ? 8 : 0) + ((it[1] & IT_EXP) ? 4 : 0) +
           ((it[1] & IT_FLAGS) ? 4 : 0);
}

static inline const uint8_t *
it_key(const uint8_t *it)
{
    return it + it_meta(it);
}

static inline uint8_t *
it_val(uint8_t *it)
{
    return it + it_meta(it) + it[0];
}

static inline uint32_t
it_size(const uint8_t *it)
{
    return (uint32_t)(it_meta(it) + it[0] + it_vlen(it) + IT_SUM_LEN(it[1]));
}

static inline uint32_t
it_flags(const uint8_t *it)
{
    uint32_t f = 0;
    if (it[1] & IT_FLAGS) {
        memcpy(&f, it + IT_HDR + ((it[1] & IT_CAS) ? 8 : 0) + ((it[1] & IT_EXP) ? 4 : 0), 4);
    }
    return f;
}

/* The item's expiry: its own, or its segment's. 0 = never. */
static inline uint32_t
it_expire(const struct seg_hdr *h, const uint8_t *it)
{
    uint32_t e = h->expire_at;
    if (it[1] & IT_EXP) {
        memcpy(&e, it + IT_HDR + ((it[1] & IT_CAS) ? 8 : 0), 4);
    }
    return e;
}

/* Not flushed and not expired. */
static inline bool
it_valid(const struct seg *s, const struct seg_hdr *h, const uint8_t *it)
{
    uint32_t e = it_expire(h, it);
    return !seg_flushed(s, h) && (e == 0 || e > s->now);
}

static inline uint64_t
it_cas(const struct seg *s, uint64_t loc, const uint8_t *it)
{
    if (it[1] & IT_CAS) {
        uint64_t cas;
        memcpy(&cas, it + IT_HDR, 8);
        return cas;
    }
    return hdr(s, loc_sid(s, loc))->cas_base + loc_off(s, loc) + 1;
}

/* Size of an item, without the expiry field (item_alloc decides about that). */
static inline size_t
item_size(const struct seg *s, size_t klen, size_t vlen, uint32_t flags, bool with_cas)
{
    return IT_HDR + (with_cas ? 8 : 0) + (flags ? 4 : 0) + klen + vlen + IT_SUM_LEN(s->it_sum);
}

/*
 * Write an item header (cas, exp: 0 = none); returns where the key goes. With IT_SUM in iflags
 * the item ends with a checksum, which seg_item_seal() fills once the value is there.
 */
static inline uint8_t *
it_write_hdr(uint8_t *it, size_t klen, size_t vlen, uint32_t flags, uint64_t cas, uint32_t exp,
             uint8_t iflags)
{
    uint8_t *p = it + IT_HDR;
    it[0] = (uint8_t)klen;
    it[2] = (uint8_t)vlen;
    it[3] = (uint8_t)(vlen >> 8);
    it[4] = (uint8_t)(vlen >> 16);
    if (cas != 0) {
        iflags |= IT_CAS;
        memcpy(p, &cas, 8);
        p += 8;
    }
    if (exp != 0) {
        iflags |= IT_EXP;
        memcpy(p, &exp, 4);
        p += 4;
    }
    if (flags != 0) {
        iflags |= IT_FLAGS;
        memcpy(p, &flags, 4);
        p += 4;
    }
    it[1] = iflags;
    return p;
}

/* ---- hash table ---- */

/*
 * The table starts small and doubles as items are linked, so that it takes memory, cache and TLB
 * in proportion to the items held rather than to the heap. A bucket's index is a fixed-point
 * multiply of the hash's low 32 bits (any table size, no modulo), which has the property growth
 * needs: with twice the buckets, the keys of bucket j go to buckets 2j and 2j + 1 only. So old
 * buckets are moved one at a time (ht_move), and while a table grows, a key whose old bucket is
 * not yet moved is still found in the old table.
 */
static inline uint64_t *
ht_head(const struct seg *s, uint64_t hash)
{
    uint64_t h = hash & 0xffffffffu;
    if (s->ht_old != NULL) {
        uint64_t j = (h * s->nb_old) >> 32;
        if (j >= s->ht_moved) {
            return s->ht_old + j * 8;
        }
    }
    return s->ht + ((h * s->nbuckets) >> 32) * 8;
}

static inline uint64_t *
ovf_at(const struct seg *s, uint64_t link)
{
    uint64_t i = link - 1;
    return s->ovf[i >> OVF_CHUNK_SHIFT] + (i & (OVF_CHUNK - 1)) * 8;
}

static inline uint64_t *
ht_find(const struct seg *s, const void *key, size_t klen, uint64_t hash)
{
    uint64_t tag = tag_of(hash);
    uint64_t *b = ht_head(s, hash);
    for (;;) {
        for (int i = 0; i < SLOTS; i++) {
            uint64_t v = b[i];
            if ((v & SLOT_TAG_MASK) != tag) {
                continue;
            }
            const uint8_t *it = loc_item(s, v & SLOT_LOC_MASK);
            if (it[0] == klen && memcmp(it_key(it), key, klen) == 0) {
                return &b[i];
            }
        }
        if (b[7] == 0) {
            return NULL;
        }
        b = ovf_at(s, b[7]);
    }
}

/* ---- across the parts ---- */

/* seg_ht.c */
/*
 * The slot pointing exactly at loc. Compares tag and location only, never dereferencing other
 * slots, so it is safe while a merge has slots pointing at data not yet copied.
 */
uint64_t *ht_find_loc(const struct seg *s, uint64_t hash, uint64_t loc);
int ht_insert(struct seg *s, uint64_t hash, uint64_t v);
void ht_clear(struct seg *s, uint64_t hash, uint64_t *slot);
void ht_move(struct seg *s, uint32_t n);

/* seg_segment.c */
int32_t free_pop(struct seg *s);
void free_push(struct seg *s, uint32_t sid);
void chain_append(struct seg *s, unsigned bi, uint32_t sid);
void chain_remove(struct seg *s, uint32_t sid);
void seg_release(struct seg *s, uint32_t sid);

/* Called for each live item of a walked segment, with its hash and slot (slot never NULL). */
typedef void (*walk_fn)(struct seg *s, uint32_t sid, uint32_t off, uint8_t *it, uint64_t hash,
                        uint64_t *slot, void *ctx);
uint32_t seg_walk(struct seg *s, uint32_t sid, walk_fn fn, void *ctx);
uint32_t seg_reclaim(struct seg *s, uint32_t sid);
int32_t seg_take(struct seg *s);
int item_alloc(struct seg *s, int64_t expire, uint32_t sz, uint32_t *sid_out, uint32_t *off_out,
               uint32_t *exp_out);
void *map_region(size_t len, int extra_flags);

/* seg_ttl.c */
bool reclaim_one(struct seg *s);
void flush_now(struct seg *s);

/* seg_merge.c */
bool evict_merge(struct seg *s);

/* seg_recover.c */

/*
 * The checksum of an item in a segment opened with cas_base: covers the header's sizes and
 * layout bits, the optional fields, the key and the value, and the segment's generation, so that
 * a torn or damaged item, or an old one left from the segment's previous use, does not match.
 * Not covered: IT_DEAD and the state bits, which change in place.
 */
uint32_t item_sum(const uint8_t *it, uint64_t cas_base);

/*
 * Make a written item valid for recovery: store its checksum (if it has IT_SUM). Called after
 * the whole item, value included, is in place and before IT_DEAD is cleared, so that a crash
 * in between leaves an item that recovery skips.
 */
static inline void
seg_item_seal(const struct seg *s, uint32_t sid, uint8_t *it)
{
    if (it[1] & IT_SUM) {
        uint32_t sum = item_sum(it, s->hdrs[sid].cas_base);
        memcpy(it + it_size(it) - 4, &sum, 4);
    }
}

/*
 * Clear IT_DEAD: the item becomes live (also for recovery). A release store, so that neither the
 * compiler nor the CPU makes it visible before the item's bytes and checksum.
 */
static inline void
it_commit(uint8_t *it, uint8_t flags)
{
    __atomic_store_n(&it[1], (uint8_t)(flags & ~IT_DEAD), __ATOMIC_RELEASE);
}

/* Keep meta (the memory file's copy) up to date with the counters it mirrors. */
static inline void
meta_sync(struct seg *s)
{
    if (s->meta != NULL) {
        s->meta->cas_next = s->cas_next;
        s->meta->flush_cas = s->flush_cas;
        s->meta->flush_at = s->flush_at;
    }
}

/*
 * Set up the instance's memory in its region of the memory file (opts->file_fd) and recover
 * what the region holds: segments, hash table, TTL bucket chains, statistics. Called by
 * seg_create after the hash table and the TTL buckets are initialised (empty). 0, or a negative
 * errno when the region cannot be mapped.
 */
int seg_file_attach(struct seg *s, const struct seg_options *opts);

/* seg.c, for seg_file.c: moving items from one instance to another (re-sharding). */

/* Called for each live item exported; value is valid during the call only. */
typedef void (*seg_export_fn)(void *ctx, const struct seg_item_info *info, uint64_t hash,
                              const uint8_t *value, size_t vlen);

/* Export the live, valid items of segment sid, in the order they were written. */
void seg_export_seg(struct seg *s, uint32_t sid, seg_export_fn fn, void *ctx);

/*
 * Store an exported item as it was: value, flags, absolute expiry, CAS (kept explicitly) and
 * state bits; a later import of the same key replaces it. As seg_store's results, and
 * SEG_NOT_STORED when it has expired.
 */
enum seg_result seg_import(struct seg *s, const struct seg_item_info *info, uint64_t hash,
                           const void *value, size_t vlen);

static inline void
item_kill(struct seg *s, uint64_t loc)
{
    uint8_t *it = loc_item(s, loc);
    struct seg_hdr *h = hdr(s, loc_sid(s, loc));
    uint32_t sz = it_size(it);
    it[1] |= IT_DEAD;
    h->live_bytes -= sz;
    if (--h->live_items == 0 && s->nemptied < SEG_EMPTIED_MAX) {
        s->emptied[s->nemptied++] = loc_sid(s, loc);
    }
    s->tb[h->bucket].items--;
    s->tb[h->bucket].bytes -= sz;
    s->st.items--;
    s->st.bytes -= sz;
}

static inline void
item_live(struct seg *s, uint32_t sid, uint32_t sz)
{
    struct seg_hdr *h = hdr(s, sid);
    h->live_bytes += sz;
    h->live_items++;
    s->tb[h->bucket].items++;
    s->tb[h->bucket].bytes += sz;
    s->st.items++;
    s->st.bytes += sz;
}

static inline void
unlink_slot(struct seg *s, uint64_t hash, uint64_t *slot)
{
    item_kill(s, *slot & SLOT_LOC_MASK);
    ht_clear(s, hash, slot);
}

static inline void
clock_update(struct seg *s)
{
    s->now = s->clock(s->clock_ctx);
    if (s->flush_at != 0 && s->now >= s->flush_at) {
        flush_now(s);
    }
}

#endif /* PETREL_SEG_IMPL_H */
