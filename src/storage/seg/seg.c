/* seg: Segcache storage engine. Contract in include/petrel/seg.h, design in docs/storage.md. */
#include "petrel/seg.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <time.h>

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
 * segment's), the client flags (4 bytes, only when non-zero), the key and the value. Items are
 * byte-aligned: multi-byte fields are read with memcpy.
 */
#define IT_HDR   5
#define IT_DEAD  0x01 /* replaced, deleted, or a reservation not yet committed */
#define IT_FLAGS 0x02
#define IT_CAS   0x04
#define IT_EXP   0x08 /* the item carries its own expiry (4 bytes, after the CAS) */
/* 0x10, 0x20, 0x40: the SEG_ST_* state bits (fetched, stale, win token sent); 0x80 spare. */
#define IT_STATE SEG_ST_MASK
_Static_assert((SEG_ST_MASK & (IT_DEAD | IT_FLAGS | IT_CAS | IT_EXP)) == 0, "state bits overlap");

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

struct ttl_bucket {
    int32_t head;       /* oldest segment */
    int32_t tail;       /* segment being written */
    int32_t merge_next; /* where the next merge in this bucket starts, -1 = head */
    uint32_t segs;
    uint64_t items;
    uint64_t bytes;
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
    int64_t flush_at; /* pending delayed flush_all, 0 = none */
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
    uint32_t ovf_nchunks;
    uint32_t ovf_cap;
    uint32_t ovf_free; /* free overflow bucket list, link values (index + 1), 0 = empty */
    enum seg_evict_policy evict;
    unsigned merge_n;
    unsigned merge_cursor;
    unsigned tick_cursor;
    uint8_t *scratch; /* merge builds the merged segment here */
    struct seg_stats st;
    struct ttl_bucket tb[TB_COUNT];
};

const char *const seg_evict_policy_names[SEG_EVICT_COUNT] = {
    [SEG_EVICT_MERGE] = "merge", [SEG_EVICT_FIFO] = "fifo", [SEG_EVICT_RANDOM] = "random",
    [SEG_EVICT_CTE] = "cte",     [SEG_EVICT_UTIL] = "util", [SEG_EVICT_NONE] = "none",
};

int
seg_evict_policy_parse(const char *name, enum seg_evict_policy *out)
{
    for (int i = 0; i < SEG_EVICT_COUNT; i++) {
        if (strcmp(name, seg_evict_policy_names[i]) == 0) {
            *out = (enum seg_evict_policy)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *
seg_result_str(enum seg_result r)
{
    switch (r) {
    case SEG_OK:
        return "";
    case SEG_STORED:
        return "STORED";
    case SEG_NOT_STORED:
        return "NOT_STORED";
    case SEG_EXISTS:
        return "EXISTS";
    case SEG_NOT_FOUND:
        return "NOT_FOUND";
    case SEG_DELETED:
        return "DELETED";
    case SEG_TOUCHED:
        return "TOUCHED";
    case SEG_NON_NUMERIC:
        return "CLIENT_ERROR cannot increment or decrement non-numeric value";
    case SEG_TOO_LARGE:
        return "SERVER_ERROR object too large for cache";
    case SEG_NO_MEMORY:
        return "SERVER_ERROR out of memory storing object";
    }
    return "SERVER_ERROR";
}

static int64_t
real_clock(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    /* The coarse clock is a plain memory read in the vDSO; one-second resolution is all we need. */
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return ts.tv_sec;
}

void
seg_options_init(struct seg_options *opts)
{
    *opts = (struct seg_options){
        .mem_bytes = 64u << 20,
        .seg_size = 1u << 20,
        .item_max = 1u << 20,
        .evict = SEG_EVICT_MERGE,
        .merge_n = 4,
        .item_bytes_hint = 64,
        .clock = NULL,
        .clock_ctx = NULL,
        .seed = 0x9e3779b97f4a7c15ull,
    };
}

int64_t
seg_exptime_abs(int64_t exptime, int64_t now)
{
    if (exptime == 0) {
        return 0;
    }
    if (exptime < 0) {
        return -1;
    }
    if (exptime <= SEG_EXPTIME_REL_MAX) {
        return now + exptime;
    }
    return exptime;
}

/* ---- TTL buckets ---- */

static unsigned
tb_index(uint32_t ttl)
{
    if (ttl < TB_SHORT) {
        return ttl; /* ttl >= 1 here; 0 is TB_NEVER */
    }
    unsigned k = 31u - (unsigned)__builtin_clz(ttl);
    return TB_SHORT + (k - 5) * 16 + ((ttl >> (k - 4)) & 15);
}

static uint32_t
tb_width(unsigned i)
{
    if (i < TB_SHORT) {
        return 1;
    }
    return UINT32_C(1) << ((i - TB_SHORT) / 16 + 1);
}

static uint32_t
tb_lo(unsigned i)
{
    if (i < TB_SHORT) {
        return i;
    }
    unsigned k = (i - TB_SHORT) / 16 + 5;
    return (UINT32_C(16) + (i - TB_SHORT) % 16) << (k - 4);
}

/* How long after expire_at a segment of bucket i still takes items (with IT_EXP past width). */
static uint32_t
tb_accept(unsigned i)
{
    uint32_t quarter = tb_lo(i) / 4;
    return quarter > tb_width(i) ? quarter : tb_width(i);
}

uint32_t
seg_ttl_slack(uint32_t ttl)
{
    return ttl == 0 ? 0 : tb_width(tb_index(ttl)) - 1;
}

size_t
seg_ttl_bucket_count(void)
{
    return TB_COUNT;
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
    return (uint32_t)(it_meta(it) + it[0] + it_vlen(it));
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
item_size(size_t klen, size_t vlen, uint32_t flags, bool with_cas)
{
    return IT_HDR + (with_cas ? 8 : 0) + (flags ? 4 : 0) + klen + vlen;
}

/* Write an item header (cas, exp: 0 = none); returns where the key goes. */
static uint8_t *
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

static uint64_t
ovf_new(struct seg *s)
{
    if (s->ovf_free == 0) {
        if (s->ovf_nchunks == s->ovf_cap) {
            uint32_t cap = s->ovf_cap ? s->ovf_cap * 2 : 16;
            uint64_t **n = realloc(s->ovf, cap * sizeof(*n));
            if (n == NULL) {
                return 0;
            }
            s->ovf = n;
            s->ovf_cap = cap;
        }
        uint64_t *chunk = aligned_alloc(64, (size_t)OVF_CHUNK * 64);
        if (chunk == NULL) {
            return 0;
        }
        uint32_t first = s->ovf_nchunks * OVF_CHUNK;
        s->ovf[s->ovf_nchunks++] = chunk;
        for (uint32_t j = OVF_CHUNK; j-- > 0;) {
            chunk[j * 8 + 7] = s->ovf_free;
            s->ovf_free = first + j + 1;
        }
    }
    uint64_t link = s->ovf_free;
    uint64_t *b = ovf_at(s, link);
    s->ovf_free = (uint32_t)b[7];
    memset(b, 0, 64);
    return link;
}

static void
ovf_release(struct seg *s, uint64_t link)
{
    ovf_at(s, link)[7] = s->ovf_free;
    s->ovf_free = (uint32_t)link;
}

/* The slot holding key, or NULL. Says nothing about whether the item is still valid. */
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

/*
 * The slot pointing exactly at loc. Compares tag and location only, never dereferencing other
 * slots, so it is safe while a merge has slots pointing at data not yet copied.
 */
static uint64_t *
ht_find_loc(const struct seg *s, uint64_t hash, uint64_t loc)
{
    uint64_t want = tag_of(hash) | loc;
    uint64_t *b = ht_head(s, hash);
    for (;;) {
        for (int i = 0; i < SLOTS; i++) {
            if ((b[i] & ~SLOT_FREQ_MASK) == want) {
                return &b[i];
            }
        }
        if (b[7] == 0) {
            return NULL;
        }
        b = ovf_at(s, b[7]);
    }
}

static void ht_grow(struct seg *s);
static void ht_move(struct seg *s, uint32_t nbuckets);

/* Put v in a free slot of the chain starting at b, adding an overflow bucket if it is full. */
static int
chain_insert(struct seg *s, uint64_t *b, uint64_t v)
{
    for (;;) {
        for (int i = 0; i < SLOTS; i++) {
            if (b[i] == 0) {
                b[i] = v;
                return 0;
            }
        }
        if (b[7] == 0) {
            break;
        }
        b = ovf_at(s, b[7]);
    }
    uint64_t link = ovf_new(s);
    if (link == 0) {
        return -ENOMEM;
    }
    ovf_at(s, link)[0] = v;
    b[7] = link;
    return 0;
}

/*
 * Link a new slot. Each insert also moves HT_MOVE_PER_INSERT buckets of a table being grown, so
 * growth finishes long before the table is loaded enough to grow again, and it costs a set at
 * most a few item reads. No slot pointer a caller holds survives this (the epoch says so).
 */
static int
ht_insert(struct seg *s, uint64_t hash, uint64_t v)
{
    if (s->ht_old != NULL) {
        ht_move(s, HT_MOVE_PER_INSERT);
    } else if (s->st.items >= (uint64_t)s->nbuckets * HT_GROW_LOAD && s->nbuckets < s->nb_max &&
               s->st.items >= s->ht_grow_retry) {
        ht_grow(s);
    }
    return chain_insert(s, ht_head(s, hash), v);
}

/* Empty a slot; an overflow bucket left empty goes back to the free list. */
static void
ht_clear(struct seg *s, uint64_t hash, uint64_t *slot)
{
    *slot = 0;
    s->ht_epoch++;
    uint64_t *prev = ht_head(s, hash);
    while (prev[7] != 0) {
        uint64_t *b = ovf_at(s, prev[7]);
        if (slot >= b && slot < b + SLOTS) {
            for (int i = 0; i < SLOTS; i++) {
                if (b[i] != 0) {
                    return;
                }
            }
            uint64_t link = prev[7];
            prev[7] = b[7];
            ovf_release(s, link);
            return;
        }
        prev = b;
    }
}

static void *map_region(size_t len, int extra_flags);

/*
 * Start doubling the table. Without memory for the new one, the table stays as it is (chains
 * grow longer, nothing fails) and growth is tried again once another item per bucket has come.
 */
static void
ht_grow(struct seg *s)
{
    uint32_t nb = s->nbuckets * 2 < s->nb_max ? s->nbuckets * 2 : s->nb_max;
    uint64_t *t = map_region((size_t)nb * 64, 0);
    if (t == NULL) {
        s->ht_grow_retry = s->st.items + s->nbuckets;
        s->st.hash_grow_failures++;
        return;
    }
    s->ht_old = s->ht;
    s->nb_old = s->nbuckets;
    s->ht_moved = 0;
    s->ht = t;
    s->nbuckets = nb;
    s->ht_len = (size_t)nb * 64;
}

/*
 * Move up to n buckets of the old table (and their overflow buckets) to the new one, each slot
 * to the bucket its key's hash gives; the keys are read from the items, which every linked slot
 * points at. Each overflow bucket goes back to the free list before its slots are placed, so the
 * new chains never need more overflow buckets than the free list then holds: chain_insert cannot
 * fail here. When the last bucket has moved, the old table is unmapped.
 */
static void
ht_move(struct seg *s, uint32_t n)
{
    for (; n > 0 && s->ht_moved < s->nb_old; n--) {
        uint64_t *b = s->ht_old + (size_t)s->ht_moved * 8;
        if (s->ht_moved + 1 < s->nb_old) {
            const uint64_t *next = b + 8;
            for (int i = 0; i < SLOTS; i++) {
                if (next[i] != 0) {
                    __builtin_prefetch(loc_item(s, next[i] & SLOT_LOC_MASK));
                }
            }
        }
        s->ht_moved++; /* from here on, lookups of this bucket's keys go to the new table */
        uint64_t link = 0;
        for (;;) {
            uint64_t v[SLOTS], next = b[7];
            memcpy(v, b, sizeof(v));
            if (link != 0) {
                ovf_release(s, link);
            }
            for (int i = 0; i < SLOTS; i++) {
                if (v[i] != 0) {
                    const uint8_t *it = loc_item(s, v[i] & SLOT_LOC_MASK);
                    (void)chain_insert(s, ht_head(s, seg_hash(it_key(it), it[0])), v[i]);
                }
            }
            if (next == 0) {
                break;
            }
            link = next;
            b = ovf_at(s, link);
        }
        s->ht_epoch++;
    }
    if (s->ht_moved == s->nb_old) {
        munmap(s->ht_old, (size_t)s->nb_old * 64);
        s->ht_old = NULL;
        s->nb_old = 0;
    }
}

/* ---- segments ---- */

static int32_t
free_pop(struct seg *s)
{
    int32_t sid = s->free_head;
    if (sid >= 0) {
        s->free_head = hdr(s, (uint32_t)sid)->next;
        s->nfree--;
    }
    return sid;
}

static void
free_push(struct seg *s, uint32_t sid)
{
    struct seg_hdr *h = hdr(s, sid);
    *h = (struct seg_hdr){.next = s->free_head, .prev = -1};
    s->free_head = (int32_t)sid;
    s->nfree++;
}

static void
chain_append(struct seg *s, unsigned bi, uint32_t sid)
{
    struct ttl_bucket *b = &s->tb[bi];
    struct seg_hdr *h = hdr(s, sid);
    h->prev = b->tail;
    h->next = -1;
    if (b->tail >= 0) {
        hdr(s, (uint32_t)b->tail)->next = (int32_t)sid;
    } else {
        b->head = (int32_t)sid;
    }
    b->tail = (int32_t)sid;
    b->segs++;
}

static void
chain_remove(struct seg *s, uint32_t sid)
{
    struct seg_hdr *h = hdr(s, sid);
    struct ttl_bucket *b = &s->tb[h->bucket];
    if (h->prev >= 0) {
        hdr(s, (uint32_t)h->prev)->next = h->next;
    } else {
        b->head = h->next;
    }
    if (h->next >= 0) {
        hdr(s, (uint32_t)h->next)->prev = h->prev;
    } else {
        b->tail = h->prev;
    }
    if (b->merge_next == (int32_t)sid) {
        b->merge_next = -1;
    }
    b->segs--;
}

static void
seg_release(struct seg *s, uint32_t sid)
{
    chain_remove(s, sid);
    free_push(s, sid);
}

/* Account for an item that stops being linked, and mark it so walks skip it. */
static void
item_kill(struct seg *s, uint64_t loc)
{
    uint8_t *it = loc_item(s, loc);
    struct seg_hdr *h = hdr(s, loc_sid(s, loc));
    uint32_t sz = it_size(it);
    it[1] |= IT_DEAD;
    h->live_bytes -= sz;
    h->live_items--;
    s->tb[h->bucket].items--;
    s->tb[h->bucket].bytes -= sz;
    s->st.items--;
    s->st.bytes -= sz;
}

static void
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

static void
unlink_slot(struct seg *s, uint64_t hash, uint64_t *slot)
{
    item_kill(s, *slot & SLOT_LOC_MASK);
    ht_clear(s, hash, slot);
}

/* Called for each live item of a walked segment, with its hash and slot (slot never NULL). */
typedef void (*walk_fn)(struct seg *s, uint32_t sid, uint32_t off, uint8_t *it, uint64_t hash,
                        uint64_t *slot, void *ctx);

#define WALK_AHEAD 8 /* items between prefetching a bucket and using it */

/*
 * Visit every live item of a segment in order. Each needs its hash bucket, a likely cache miss,
 * so buckets are prefetched WALK_AHEAD items ahead: this is what makes bulk expiration, eviction
 * and merges cheap per item. fn may unlink the item it is given. Returns the items visited.
 */
static uint32_t
seg_walk(struct seg *s, uint32_t sid, walk_fn fn, void *ctx)
{
    struct {
        uint32_t off;
        uint64_t hash;
    } q[WALK_AHEAD];
    const struct seg_hdr *h = hdr(s, sid);
    uint8_t *base = seg_data(s, sid);
    unsigned qh = 0, qn = 0;
    uint32_t off = 0, n = 0;
    for (;;) {
        while (qn < WALK_AHEAD && off < h->write_off) {
            uint8_t *it = base + off;
            if (!(it[1] & IT_DEAD)) {
                uint64_t hash = seg_hash(it_key(it), it[0]);
                __builtin_prefetch(ht_head(s, hash));
                q[(qh + qn) % WALK_AHEAD].off = off;
                q[(qh + qn) % WALK_AHEAD].hash = hash;
                qn++;
            }
            n++;
            off += it_size(it);
        }
        if (qn == 0) {
            return n;
        }
        uint32_t ioff = q[qh].off;
        uint64_t hash = q[qh].hash;
        qh = (qh + 1) % WALK_AHEAD;
        qn--;
        uint64_t *slot = ht_find_loc(s, hash, make_loc(s, sid, ioff));
        if (slot != NULL) {
            fn(s, sid, ioff, base + ioff, hash, slot, ctx);
        }
    }
}

enum why { WHY_EXPIRE, WHY_FLUSH, WHY_EVICT };

static void
unlink_one(struct seg *s, uint32_t sid, uint32_t off, uint8_t *it, uint64_t hash, uint64_t *slot,
           void *ctx)
{
    enum why why = *(enum why *)ctx;
    bool unfetched = slot_freq(*slot) == 0;
    (void)sid, (void)off, (void)it;
    unlink_slot(s, hash, slot);
    if (why == WHY_EVICT) {
        s->st.evicted_items++;
        s->st.evicted_unfetched += unfetched;
    } else if (why == WHY_EXPIRE) {
        s->st.expired_items++;
        s->st.expired_unfetched += unfetched;
    } else {
        s->st.flushed_items++;
    }
}

/* Unlink every live item of a segment. Returns the number of items visited. */
static uint32_t
seg_unlink_all(struct seg *s, uint32_t sid, enum why why)
{
    return seg_walk(s, sid, unlink_one, &why);
}

/* Free an expired or flushed segment. Returns the number of items visited. */
static uint32_t
seg_reclaim(struct seg *s, uint32_t sid)
{
    bool flushed = hdr(s, sid)->cas_base < s->flush_cas;
    uint32_t n = seg_unlink_all(s, sid, flushed ? WHY_FLUSH : WHY_EXPIRE);
    seg_release(s, sid);
    s->st.expired_segs += !flushed;
    return n;
}

#define SCAN_DEPTH 8 /* segments looked at per bucket when searching for reclaimable ones */

/*
 * The first reclaimable segment of a bucket, or -1. Chains are ordered by age, so flushed
 * segments come first and expire_at only grows along a chain: once a segment's expire_at is in
 * the future, no later one can be freed. max_expire is not ordered (accept windows overlap), so
 * a few segments past the head are checked too.
 */
static int32_t
bucket_reclaimable(const struct seg *s, const struct ttl_bucket *b)
{
    int32_t sid = b->head;
    for (int n = 0; sid >= 0 && n < SCAN_DEPTH; n++) {
        const struct seg_hdr *h = hdr(s, (uint32_t)sid);
        if (h->pinned == 0 && seg_reclaimable(s, h)) {
            return sid;
        }
        if (!seg_flushed(s, h) && (h->expire_at == 0 || h->expire_at > s->now)) {
            return -1;
        }
        sid = h->next;
    }
    return -1;
}

/* Find one reclaimable segment and free it: at most TB_COUNT * SCAN_DEPTH header reads. */
static bool
reclaim_one(struct seg *s)
{
    for (unsigned i = 0; i < TB_COUNT; i++) {
        int32_t sid = bucket_reclaimable(s, &s->tb[i]);
        if (sid >= 0) {
            seg_reclaim(s, (uint32_t)sid);
            return true;
        }
    }
    return false;
}

static void
seg_evict_one(struct seg *s, uint32_t sid)
{
    seg_unlink_all(s, sid, WHY_EVICT);
    seg_release(s, sid);
    s->st.evicted_segs++;
}

/* Victim of the whole-segment policies: a full scan of the headers, O(segments). */
static int32_t
pick_victim(struct seg *s, enum seg_evict_policy p)
{
    if (p == SEG_EVICT_RANDOM) {
        uint32_t start = (uint32_t)(rng_next(s) % s->nseg);
        for (uint32_t i = 0; i < s->nseg; i++) {
            uint32_t sid = (start + i) % s->nseg;
            if (hdr(s, sid)->used && hdr(s, sid)->pinned == 0) {
                return (int32_t)sid;
            }
        }
        return -1;
    }
    int32_t best = -1;
    uint64_t best_key = UINT64_MAX;
    for (uint32_t sid = 0; sid < s->nseg; sid++) {
        const struct seg_hdr *h = hdr(s, sid);
        if (!h->used || h->pinned != 0) {
            continue;
        }
        uint64_t key;
        if (p == SEG_EVICT_CTE) {
            key = h->expire_at == 0 ? UINT64_MAX - 1 : h->expire_at;
        } else if (p == SEG_EVICT_UTIL) {
            key = h->live_bytes;
        } else {
            key = h->cas_base;
        }
        if (best < 0 || key < best_key) {
            best = (int32_t)sid;
            best_key = key;
        }
    }
    return best;
}

/* ---- merge eviction ---- */

static bool
merge_candidate(const struct seg *s, const struct ttl_bucket *b, int32_t sid)
{
    const struct seg_hdr *h = hdr(s, (uint32_t)sid);
    return sid != b->tail && h->pinned == 0 && !seg_reclaimable(s, h);
}

static unsigned
merge_collect(const struct seg *s, const struct ttl_bucket *b, int32_t sid, uint32_t *ids)
{
    unsigned n = 0;
    while (sid >= 0 && n < s->merge_n && merge_candidate(s, b, sid)) {
        ids[n++] = (uint32_t)sid;
        sid = hdr(s, (uint32_t)sid)->next;
    }
    return n;
}

static void
merge_count(struct seg *s, uint32_t sid, uint32_t off, uint8_t *it, uint64_t hash, uint64_t *slot,
            void *ctx)
{
    (void)s, (void)sid, (void)off, (void)hash;
    ((uint32_t *)ctx)[slot_freq(*slot)] += it_size(it) + 12;
}

/*
 * The frequency cutoff for a merge: the smallest f such that the items of the group read at least
 * f times fit in one segment (counting the 12 bytes a moved item may gain: CAS, expiry). One cutoff
 * for the whole group, so the hottest items survive wherever they sit.
 */
static unsigned
merge_cutoff(struct seg *s, const uint32_t *ids, unsigned n)
{
    uint32_t hist[256] = {0};
    for (unsigned i = 0; i < n; i++) {
        seg_walk(s, ids[i], merge_count, hist);
    }
    uint64_t sum = 0;
    int f = 255;
    while (f >= 0 && sum + hist[f] <= s->seg_size) {
        sum += hist[f];
        f--;
    }
    return f < 0 ? 0 : (f == 255 ? 255 : (unsigned)f + 1);
}

struct merge_ctx {
    uint32_t dst;
    uint32_t dst_expire; /* expire_at of dst: the earliest of the group */
    uint32_t max_expire;
    unsigned cutoff;
    uint32_t woff;
    uint32_t kept;
};

/* Copy one live item into the merge buffer (as part of dst), or drop it. */
static void
merge_item(struct seg *s, uint32_t src, uint32_t off, uint8_t *it, uint64_t hash, uint64_t *slot,
           void *ctx)
{
    struct merge_ctx *m = ctx;
    uint32_t sz = it_size(it);
    unsigned freq = slot_freq(*slot);
    uint32_t e = it_expire(hdr(s, src), it);
    if (e != 0 && e <= s->now) {
        /* Expired items of a half-expired segment are dropped, never carried over. */
        s->st.expired_items++;
        s->st.expired_unfetched += freq == 0;
        unlink_slot(s, hash, slot);
        return;
    }
    bool moves = src != m->dst || off != m->woff;
    /*
     * A moved item keeps its CAS explicitly (the derived one depends on the location) and its
     * expiry if dst's differs, so a merge changes neither.
     */
    bool add_cas = moves && !(it[1] & IT_CAS);
    bool add_exp = e != m->dst_expire && !(it[1] & IT_EXP);
    uint32_t nsz = sz + (add_cas ? 8 : 0) + (add_exp ? 4 : 0);
    if (freq < m->cutoff || m->woff + nsz > s->seg_size) {
        s->st.evicted_items++;
        s->st.evicted_unfetched += freq == 0;
        unlink_slot(s, hash, slot);
        return;
    }
    uint8_t *out = s->scratch + m->woff;
    if (nsz == sz) {
        memcpy(out, it, sz);
    } else {
        uint64_t cas = (add_cas || (it[1] & IT_CAS)) ? it_cas(s, make_loc(s, src, off), it) : 0;
        uint32_t exp = (add_exp || (it[1] & IT_EXP)) ? e : 0;
        uint8_t *p =
            it_write_hdr(out, it[0], it_vlen(it), it_flags(it), cas, exp, it[1] & IT_STATE);
        memcpy(p, it_key(it), (size_t)it[0] + it_vlen(it));
        s->st.bytes += nsz - sz;
        s->tb[hdr(s, src)->bucket].bytes += nsz - sz;
    }
    if (e > m->max_expire) {
        m->max_expire = e;
    }
    /*
     * Survivors must earn their place again: halve the counter. The slot gets a provisional
     * location in temp_sid: a final one in dst could equal the old location of an item not yet
     * visited (moved items may grow), and lookups by location must stay unambiguous.
     */
    *slot = (*slot & SLOT_TAG_MASK) | ((uint64_t)(freq >> 1) << SLOT_FREQ_SHIFT) |
            make_loc(s, s->temp_sid, m->woff);
    m->woff += nsz;
    m->kept++;
}

/*
 * Merge n consecutive segments of one TTL bucket into the first: keep the most frequently read
 * items that fit in one segment, drop the rest, and free the other n - 1 segments. Items moved into
 * the first segment may expire a little earlier (its expiry is the earliest of the group).
 */
static void
merge_run(struct seg *s, const uint32_t *ids, unsigned n)
{
    uint32_t dst = ids[0];
    struct merge_ctx m = {
        .dst = dst, .dst_expire = hdr(s, dst)->expire_at, .cutoff = merge_cutoff(s, ids, n)};
    for (unsigned i = 0; i < n; i++) {
        seg_walk(s, ids[i], merge_item, &m);
    }
    uint32_t woff = m.woff, kept = m.kept;
    struct seg_hdr *h = hdr(s, dst);
    /* Point the survivors' slots at their final place, then move the bytes there. */
    for (uint32_t off = 0; off < woff;) {
        const uint8_t *it = s->scratch + off;
        uint64_t *slot = ht_find_loc(s, seg_hash(it_key(it), it[0]), make_loc(s, s->temp_sid, off));
        if (slot != NULL) {
            *slot = (*slot & ~SLOT_LOC_MASK) | make_loc(s, dst, off);
        }
        off += it_size(it);
    }
    memcpy(seg_data(s, dst), s->scratch, woff);
    s->ht_epoch++;
    /* Every kept item now lives in dst: rebuild the live counts from what was copied. */
    h->write_off = woff;
    h->live_items = kept;
    h->live_bytes = woff;
    h->max_expire = m.max_expire;
    for (unsigned i = 1; i < n; i++) {
        seg_release(s, ids[i]);
        s->st.evicted_segs++;
    }
    if (kept == 0) {
        seg_release(s, dst);
        s->st.evicted_segs++;
    }
    s->st.merges++;
}

/*
 * Merge eviction walks one bucket's chain front to back, a group of merge_n segments per call,
 * then moves on to the next bucket, so each bucket is visited in proportion to its size. Returns
 * false when no bucket has two adjacent evictable segments.
 */
static bool
evict_merge(struct seg *s)
{
    uint32_t ids[16];
    for (unsigned tries = 0; tries <= TB_COUNT; tries++) {
        struct ttl_bucket *b = &s->tb[s->merge_cursor];
        int32_t start = b->merge_next >= 0 ? b->merge_next : b->head;
        unsigned n = merge_collect(s, b, start, ids);
        if (n >= 2) {
            merge_run(s, ids, n);
            int32_t next = hdr(s, ids[0])->used ? hdr(s, ids[0])->next : -1;
            b->merge_next = next;
            if (next < 0 || next == b->tail) {
                b->merge_next = -1;
                s->merge_cursor = (s->merge_cursor + 1) % TB_COUNT;
            }
            return true;
        }
        b->merge_next = -1;
        s->merge_cursor = (s->merge_cursor + 1) % TB_COUNT;
    }
    return false;
}

/* A free segment: from the free list, else by reclaiming a dead one, else by eviction. */
static int32_t
seg_take(struct seg *s)
{
    if (s->free_head >= 0 || reclaim_one(s)) {
        return free_pop(s);
    }
    if (s->evict == SEG_EVICT_NONE) {
        return -1;
    }
    if (s->evict == SEG_EVICT_MERGE && evict_merge(s) && s->free_head >= 0) {
        return free_pop(s);
    }
    /* Merge falls back to FIFO when no bucket has two mergeable segments. */
    int32_t victim = pick_victim(s, s->evict == SEG_EVICT_MERGE ? SEG_EVICT_FIFO : s->evict);
    if (victim < 0) {
        return -1;
    }
    seg_evict_one(s, (uint32_t)victim);
    return free_pop(s);
}

/*
 * Space for an item of sz bytes (without expiry field) expiring at expire (0 = never, else > now).
 * *exp_out is 0, or the expiry the item must carry (then it takes 4 more bytes, included in the
 * space given).
 */
static int
item_alloc(struct seg *s, int64_t expire, uint32_t sz, uint32_t *sid_out, uint32_t *off_out,
           uint32_t *exp_out)
{
    unsigned bi = expire == 0 ? TB_NEVER : tb_index((uint32_t)(expire - s->now));
    struct ttl_bucket *b = &s->tb[bi];
    *exp_out = 0;
    if (b->tail >= 0) {
        struct seg_hdr *h = hdr(s, (uint32_t)b->tail);
        bool fits = !seg_flushed(s, h);
        bool own = false;
        if (fits && bi != TB_NEVER) {
            fits = h->expire_at > s->now && expire >= h->expire_at &&
                   expire < (int64_t)h->expire_at + tb_accept(bi);
            own = expire >= (int64_t)h->expire_at + tb_width(bi);
        }
        uint32_t need = sz + (own ? 4 : 0);
        if (fits && h->write_off + need <= s->seg_size) {
            *sid_out = (uint32_t)b->tail;
            *off_out = h->write_off;
            *exp_out = own ? (uint32_t)expire : 0;
            h->write_off += need;
            if (expire > h->max_expire) {
                h->max_expire = (uint32_t)expire;
            }
            return 0;
        }
    }
    int32_t sid = seg_take(s);
    if (sid < 0) {
        return -ENOMEM;
    }
    struct seg_hdr *h = hdr(s, (uint32_t)sid);
    *h = (struct seg_hdr){
        .cas_base = s->cas_next,
        .write_off = sz,
        .expire_at = expire == 0 ? 0 : (uint32_t)(s->now + tb_lo(bi)),
        .max_expire = (uint32_t)expire,
        .opened = (uint32_t)s->now,
        .bucket = (uint16_t)bi,
        .used = 1,
    };
    s->cas_next += s->seg_size;
    chain_append(s, bi, (uint32_t)sid);
    *sid_out = (uint32_t)sid;
    *off_out = 0;
    return 0;
}

/* ---- time and flush ---- */

static void
flush_now(struct seg *s)
{
    /* Every segment opened so far becomes dead; seg_tick() frees them in bulk. */
    s->flush_cas = s->cas_next;
    s->flush_at = 0;
    s->st.flushes++;
}

static inline void
clock_update(struct seg *s)
{
    s->now = s->clock(s->clock_ctx);
    if (s->flush_at != 0 && s->now >= s->flush_at) {
        flush_now(s);
    }
}

int64_t
seg_now(const struct seg *s)
{
    return s->now;
}

void
seg_flush(struct seg *s, int64_t when)
{
    clock_update(s);
    if (when <= s->now) {
        flush_now(s);
    } else {
        s->flush_at = when;
    }
}

/*
 * Reclaim expired and flushed segments until max_items items were visited (the segment in hand
 * is finished). Returns true if the budget ran out, i.e. reclaimable segments may remain.
 */
static bool
reclaim_some(struct seg *s, uint32_t max_items)
{
    uint32_t budget = max_items;
    for (unsigned n = 0; n < TB_COUNT && budget > 0; n++) {
        unsigned i = (s->tick_cursor + n) % TB_COUNT;
        int32_t sid;
        while (budget > 0 && (sid = bucket_reclaimable(s, &s->tb[i])) >= 0) {
            uint32_t visited = seg_reclaim(s, (uint32_t)sid) + 1;
            budget = visited >= budget ? 0 : budget - visited;
        }
    }
    s->tick_cursor = (s->tick_cursor + 1) % TB_COUNT;
    return budget == 0;
}

bool
seg_tick(struct seg *s)
{
    clock_update(s);
    /*
     * Bound: TB_COUNT * SCAN_DEPTH header checks per pass, and reclaiming stops once TICK_ITEMS
     * items were visited (the segment in hand is finished: at most TICK_ITEMS + one segment's).
     * A table being grown moves HT_MOVE_PER_TICK buckets, so growth also ends without sets.
     */
    if (s->ht_old != NULL) {
        ht_move(s, HT_MOVE_PER_TICK);
    }
    return reclaim_some(s, TICK_ITEMS);
}

bool
seg_reclaim_step(struct seg *s, uint32_t max_items)
{
    clock_update(s);
    return reclaim_some(s, max_items);
}

/* ---- operations ---- */

static inline int64_t
clamp_expire(int64_t e)
{
    return e > (int64_t)UINT32_MAX ? (int64_t)UINT32_MAX : e;
}

static inline bool
expired(const struct seg *s, int64_t expire)
{
    return expire != 0 && expire <= s->now;
}

/* A valid (linked, not expired, not flushed) item for key; fills *loc. */
static inline uint64_t *
find_live(struct seg *s, const void *key, size_t klen, uint64_t hash, uint64_t *loc)
{
    uint64_t *slot = ht_find(s, key, klen, hash);
    if (slot == NULL) {
        return NULL;
    }
    *loc = *slot & SLOT_LOC_MASK;
    if (!it_valid(s, hdr(s, loc_sid(s, *loc)), loc_item(s, *loc))) {
        return NULL;
    }
    return slot;
}

/*
 * Link the item at (sid, off) for its key, replacing the current version if any. When known,
 * slot is the key's slot (NULL: the key has none); otherwise it is looked up.
 */
static enum seg_result
link_item(struct seg *s, uint64_t hash, uint32_t sid, uint32_t off, uint64_t *slot, bool known,
          uint64_t *cas_out)
{
    uint8_t *it = seg_data(s, sid) + off;
    uint64_t loc = make_loc(s, sid, off);
    if (!known) {
        slot = ht_find(s, it_key(it), it[0], hash);
    }
    if (slot != NULL) {
        uint64_t old = *slot;
        item_kill(s, old & SLOT_LOC_MASK);
        *slot = (old & (SLOT_TAG_MASK | SLOT_FREQ_MASK)) | loc;
    } else if (ht_insert(s, hash, tag_of(hash) | loc) != 0) {
        it[1] |= IT_DEAD;
        s->st.store_no_memory++;
        return SEG_NO_MEMORY;
    }
    it[1] &= (uint8_t)~IT_DEAD;
    item_live(s, sid, it_size(it));
    s->st.total_items++;
    if (cas_out != NULL) {
        *cas_out = it_cas(s, loc, it);
    }
    return SEG_STORED;
}

/* What a new item version is made of. */
struct put {
    const void *key;
    size_t klen;
    uint64_t hash;
    uint32_t flags;
    int64_t expire;
    const void *a; /* value = a then b */
    size_t alen;
    const void *b;
    size_t blen;
    uint64_t cas;   /* keep this CAS (relocation) or take the caller's, 0 = a new one */
    uint8_t state;  /* SEG_ST_* bits the new version starts with */
    int32_t pin;    /* segment to keep in place meanwhile (holds a or b), -1 = none */
    uint64_t *slot; /* the key's slot before allocation (NULL: none) ... */
    bool known;     /* ... if the caller looked it up */
};

/* Write a new version of a key and link it. */
static enum seg_result
put_item(struct seg *s, const struct put *p, uint64_t *cas_out)
{
    size_t sz = item_size(p->klen, p->alen + p->blen, p->flags, p->cas != 0);
    uint64_t epoch = s->ht_epoch;
    uint32_t sid, off, exp;
    if (p->pin >= 0) {
        hdr(s, (uint32_t)p->pin)->pinned++;
    }
    int rc = item_alloc(s, p->expire, (uint32_t)sz, &sid, &off, &exp);
    if (p->pin >= 0) {
        hdr(s, (uint32_t)p->pin)->pinned--;
    }
    if (rc != 0) {
        s->st.store_no_memory++;
        return SEG_NO_MEMORY;
    }
    uint8_t *it = seg_data(s, sid) + off;
    uint8_t *w = it_write_hdr(it, p->klen, p->alen + p->blen, p->flags, p->cas, exp,
                              IT_DEAD | (p->state & IT_STATE));
    memcpy(w, p->key, p->klen);
    w += p->klen;
    if (p->alen != 0) {
        memcpy(w, p->a, p->alen);
    }
    if (p->blen != 0) {
        memcpy(w + p->alen, p->b, p->blen);
    }
    return link_item(s, p->hash, sid, off, p->slot, p->known && epoch == s->ht_epoch, cas_out);
}

static bool
too_large(const struct seg *s, size_t klen, size_t vlen)
{
    return klen > SEG_KEY_MAX || item_size(klen, vlen, 1, true) + 4 > s->item_max;
}

/* A failed set must not leave the old value behind (memcached does the same). */
static enum seg_result
store_failed(struct seg *s, const struct seg_store_req *r, enum seg_result res)
{
    if (r->mode == SEG_SET) {
        uint64_t *slot = ht_find(s, r->key, r->klen, r->hash);
        if (slot != NULL) {
            unlink_slot(s, r->hash, slot);
        }
    }
    if (res == SEG_TOO_LARGE) {
        s->st.store_too_large++;
    }
    return res;
}

/*
 * The store command logic. placed, if not NULL, is a reserved item (sid, off) already holding
 * exactly the new version; it is linked instead of writing a copy.
 */
static enum seg_result
do_store(struct seg *s, const struct seg_store_req *r, int64_t expire, const uint32_t *placed,
         uint64_t *cas_out)
{
    bool concat = r->mode == SEG_APPEND || r->mode == SEG_PREPEND;
    if (cas_out != NULL) {
        *cas_out = 0;
    }
    if (!concat && too_large(s, r->klen, r->vlen)) {
        return store_failed(s, r, SEG_TOO_LARGE);
    }
    uint64_t loc = 0;
    uint64_t *slot = find_live(s, r->key, r->klen, r->hash, &loc);
    uint8_t *old = slot != NULL ? loc_item(s, loc) : NULL;
    if (r->mode == SEG_ADD && old != NULL) {
        return SEG_NOT_STORED;
    }
    if ((r->mode == SEG_REPLACE || concat) && old == NULL) {
        return SEG_NOT_STORED;
    }
    bool stale = false;
    if (r->mode == SEG_CAS || (r->cas != 0 && r->mode != SEG_ADD)) {
        if (old == NULL) {
            return SEG_NOT_FOUND;
        }
        uint64_t cur = it_cas(s, loc, old);
        if (cur != r->cas) {
            if (!r->invalidate || r->cas > cur) {
                return SEG_EXISTS;
            }
            stale = true;
        }
    }
    struct put p = {
        .key = r->key,
        .klen = r->klen,
        .hash = r->hash,
        .flags = r->flags,
        .expire = expire,
        .a = r->value,
        .alen = r->vlen,
        .cas = r->new_cas,
        .pin = old != NULL ? (int32_t)loc_sid(s, loc) : -1,
    };
    if (stale) {
        /* A late writer's value is kept as stale: it keeps the old expiry and token state. */
        p.expire = it_expire(hdr(s, loc_sid(s, loc)), old);
        p.state = SEG_ST_STALE | (old[1] & SEG_ST_WIN);
        placed = NULL;
    }
    if (concat) {
        uint32_t olen = it_vlen(old);
        if (too_large(s, r->klen, olen + r->vlen)) {
            s->st.store_too_large++;
            return SEG_TOO_LARGE;
        }
        p.flags = it_flags(old);
        p.expire = it_expire(hdr(s, loc_sid(s, loc)), old);
        p.b = r->mode == SEG_APPEND ? r->value : it_val(old);
        p.blen = r->mode == SEG_APPEND ? r->vlen : olen;
        p.a = r->mode == SEG_APPEND ? it_val(old) : r->value;
        p.alen = r->mode == SEG_APPEND ? olen : r->vlen;
    }
    /* Even a dead version's slot is replaced in place rather than leaving two for one key. */
    p.slot = slot != NULL ? slot : ht_find(s, r->key, r->klen, r->hash);
    p.known = true;
    if (expired(s, p.expire)) {
        if (p.slot != NULL) {
            unlink_slot(s, r->hash, p.slot);
        }
        return SEG_STORED;
    }
    if (placed != NULL) {
        return link_item(s, r->hash, placed[0], placed[1], p.slot, true, cas_out);
    }
    enum seg_result res = put_item(s, &p, cas_out);
    return res == SEG_STORED ? res : store_failed(s, r, res);
}

enum seg_result
seg_store(struct seg *s, const struct seg_store_req *req, uint64_t *cas_out)
{
    clock_update(s);
    int64_t expire = clamp_expire(seg_exptime_abs(req->exptime, s->now));
    return do_store(s, req, expire, NULL, cas_out);
}

static enum seg_result
get_one(struct seg *s, const void *key, size_t klen, uint64_t hash, struct seg_view *out, bool peek)
{
    uint64_t *slot = ht_find(s, key, klen, hash);
    if (slot == NULL) {
        s->st.misses++;
        return SEG_NOT_FOUND;
    }
    uint64_t v = *slot;
    uint64_t loc = v & SLOT_LOC_MASK;
    const struct seg_hdr *h = hdr(s, loc_sid(s, loc));
    uint8_t *it = loc_item(s, loc);
    if (!it_valid(s, h, it)) {
        s->st.misses++;
        s->st.get_expired++;
        return SEG_NOT_FOUND;
    }
    out->value = (const char *)it_val(it);
    out->vlen = it_vlen(it);
    out->flags = it_flags(it);
    out->cas = it_cas(s, loc, it);
    uint32_t e = it_expire(h, it);
    out->ttl = e == 0 ? -1 : (int64_t)e - s->now;
    out->age = s->now > h->opened ? (uint32_t)(s->now - h->opened) : 0;
    out->size = it_size(it);
    uint8_t iflags = it[1];
    out->state = iflags & IT_STATE;
    if (peek) {
        s->st.hits++;
        return SEG_OK;
    }
    /* Written only on the first read, so that later reads leave the line clean. */
    if (!(iflags & SEG_ST_FETCHED)) {
        it[1] = iflags | SEG_ST_FETCHED;
    }
    /*
     * Approximate counter: exact up to 16 reads, then incremented with probability 1/freq, so
     * 8 bits rank items read thousands of times.
     */
    unsigned f = slot_freq(v);
    if (f < 255 && (f < 16 || rng_next(s) % f == 0)) {
        *slot = v + (UINT64_C(1) << SLOT_FREQ_SHIFT);
    }
    s->st.hits++;
    return SEG_OK;
}

enum seg_result
seg_get(struct seg *s, const void *key, size_t klen, uint64_t hash, struct seg_view *out)
{
    clock_update(s);
    return get_one(s, key, klen, hash, out, false);
}

enum seg_result
seg_peek(struct seg *s, const void *key, size_t klen, uint64_t hash, struct seg_view *out)
{
    clock_update(s);
    return get_one(s, key, klen, hash, out, true);
}

void
seg_prefetch(const struct seg *s, uint64_t hash)
{
    __builtin_prefetch(ht_head(s, hash));
}

void
seg_prefetch_item(const struct seg *s, uint64_t hash)
{
    uint64_t tag = tag_of(hash);
    const uint64_t *b = ht_head(s, hash);
    for (int i = 0; i < SLOTS; i++) {
        if ((b[i] & SLOT_TAG_MASK) == tag) {
            const uint8_t *it = loc_item(s, b[i] & SLOT_LOC_MASK);
            __builtin_prefetch(it);
            __builtin_prefetch(it + 64);
        }
    }
}

#define BATCH_AHEAD 8 /* keys between prefetching a bucket and using it */

void
seg_get_batch(struct seg *s, size_t n, const struct seg_key *keys, struct seg_view *views,
              enum seg_result *results)
{
    clock_update(s);
    for (size_t i = 0; i < n && i < BATCH_AHEAD; i++) {
        seg_prefetch(s, keys[i].hash);
    }
    for (size_t i = 0; i < n; i++) {
        if (i + BATCH_AHEAD < n) {
            seg_prefetch(s, keys[i + BATCH_AHEAD].hash);
        }
        if (i + BATCH_AHEAD / 2 < n) {
            seg_prefetch_item(s, keys[i + BATCH_AHEAD / 2].hash);
        }
        results[i] = get_one(s, keys[i].key, keys[i].klen, keys[i].hash, &views[i], false);
    }
}

/* ---- scan ---- */

/* The first hash (low 32 bits) of bucket j in a table of nb buckets: see ht_head. */
static inline uint64_t
bucket_start(uint64_t j, uint32_t nb)
{
    return ((j << 32) + nb - 1) / nb;
}

/*
 * The chain that holds the keys whose hash is pos, and in *end the first hash past the range
 * [pos, end) whose keys all live in that same chain. While the table grows, a range never spans
 * an old bucket boundary, so the whole range is either still in the old table or already moved.
 */
static const uint64_t *
scan_chain(const struct seg *s, uint64_t pos, uint64_t *end)
{
    uint64_t old_end = SEG_CURSOR_END;
    if (s->ht_old != NULL) {
        uint64_t j = (pos * s->nb_old) >> 32;
        old_end = bucket_start(j + 1, s->nb_old);
        if (j >= s->ht_moved) {
            *end = old_end;
            return s->ht_old + j * 8;
        }
    }
    uint64_t j = (pos * s->nbuckets) >> 32;
    uint64_t new_end = bucket_start(j + 1, s->nbuckets);
    *end = new_end < old_end ? new_end : old_end;
    return s->ht + j * 8;
}

/* Visit the live items of chain b whose hash is in [lo, hi). Returns fn's wish to go on. */
static bool
scan_visit(const struct seg *s, const uint64_t *b, uint64_t lo, uint64_t hi, seg_scan_fn fn,
           void *ctx)
{
    bool more = true;
    for (;;) {
        for (int i = 0; i < SLOTS; i++) {
            if (b[i] == 0) {
                continue;
            }
            uint64_t loc = b[i] & SLOT_LOC_MASK;
            const struct seg_hdr *h = hdr(s, loc_sid(s, loc));
            const uint8_t *it = loc_item(s, loc);
            uint64_t h32 = seg_hash(it_key(it), it[0]) & 0xffffffffu;
            if (h32 < lo || h32 >= hi || (it[1] & IT_DEAD) || !it_valid(s, h, it)) {
                continue;
            }
            const struct seg_item_info info = {
                .key = (const char *)it_key(it),
                .klen = it[0],
                .expire = it_expire(h, it),
                .written = h->opened,
                .cas = it_cas(s, loc, it),
                .flags = it_flags(it),
                .size = it_size(it),
                .bucket = h->bucket,
                .state = it[1] & IT_STATE,
            };
            more = fn(ctx, &info) && more;
        }
        if (b[7] == 0) {
            return more;
        }
        b = ovf_at(s, b[7]);
    }
}

bool
seg_scan(struct seg *s, struct seg_cursor *cur, unsigned max_buckets, seg_scan_fn fn, void *ctx)
{
    clock_update(s);
    for (unsigned n = 0; n < max_buckets && cur->pos < SEG_CURSOR_END; n++) {
        uint64_t end;
        const uint64_t *b = scan_chain(s, cur->pos, &end);
        bool more = scan_visit(s, b, cur->pos, end, fn, ctx);
        cur->pos = end;
        if (!more) {
            break;
        }
    }
    return cur->pos < SEG_CURSOR_END;
}

enum seg_result
seg_delete(struct seg *s, const void *key, size_t klen, uint64_t hash)
{
    clock_update(s);
    uint64_t loc;
    uint64_t *slot = find_live(s, key, klen, hash, &loc);
    if (slot == NULL) {
        return SEG_NOT_FOUND;
    }
    unlink_slot(s, hash, slot);
    return SEG_DELETED;
}

enum seg_result
seg_touch(struct seg *s, const void *key, size_t klen, uint64_t hash, int64_t exptime)
{
    clock_update(s);
    uint64_t loc;
    uint64_t *slot = find_live(s, key, klen, hash, &loc);
    if (slot == NULL) {
        return SEG_NOT_FOUND;
    }
    int64_t expire = clamp_expire(seg_exptime_abs(exptime, s->now));
    if (expired(s, expire)) {
        unlink_slot(s, hash, slot);
        return SEG_TOUCHED;
    }
    uint32_t sid = loc_sid(s, loc);
    const struct seg_hdr *h = hdr(s, sid);
    unsigned bi = expire == 0 ? TB_NEVER : tb_index((uint32_t)(expire - s->now));
    uint8_t *cur = loc_item(s, loc);
    if (h->bucket == bi && !(cur[1] & IT_EXP) &&
        (bi == TB_NEVER ||
         (h->expire_at <= expire && expire < (int64_t)h->expire_at + tb_width(bi)))) {
        return SEG_TOUCHED; /* its segment already expires at the right time */
    }
    uint8_t *it = loc_item(s, loc);
    struct put p = {
        .key = key,
        .klen = klen,
        .hash = hash,
        .flags = it_flags(it),
        .expire = expire,
        .a = it_val(it),
        .alen = it_vlen(it),
        .cas = it_cas(s, loc, it),
        .state = it[1] & IT_STATE,
        .pin = (int32_t)sid,
        .slot = slot,
        .known = true,
    };
    enum seg_result res = put_item(s, &p, NULL);
    if (res == SEG_STORED) {
        s->st.total_items--; /* a move, not a new item */
        return SEG_TOUCHED;
    }
    return res;
}

enum seg_result
seg_mark(struct seg *s, const void *key, size_t klen, uint64_t hash, unsigned set, unsigned clear)
{
    clock_update(s);
    uint64_t loc;
    if (find_live(s, key, klen, hash, &loc) == NULL) {
        return SEG_NOT_FOUND;
    }
    uint8_t *it = loc_item(s, loc);
    uint8_t f = (uint8_t)((it[1] | (set & IT_STATE)) & ~(clear & IT_STATE));
    if (f != it[1]) {
        it[1] = f;
    }
    return SEG_OK;
}

/*
 * Write a new version of a live item: its flags, with value (or its own value when value is
 * NULL), expiry (or its own when keep_exp), CAS new_cas (0: a fresh one) and state bits.
 * SEG_STORED, SEG_DELETED when the new expiry is already past (the item is gone),
 * SEG_NOT_FOUND or SEG_NO_MEMORY.
 */
static enum seg_result
rewrite(struct seg *s, const void *key, size_t klen, uint64_t hash, const void *value, size_t vlen,
        bool keep_exp, int64_t expire, uint64_t new_cas, unsigned set, unsigned clear,
        uint64_t *cas_out)
{
    uint64_t loc;
    uint64_t *slot = find_live(s, key, klen, hash, &loc);
    if (slot == NULL) {
        return SEG_NOT_FOUND;
    }
    uint8_t *it = loc_item(s, loc);
    struct put p = {
        .key = key,
        .klen = klen,
        .hash = hash,
        .flags = it_flags(it),
        .expire = keep_exp ? it_expire(hdr(s, loc_sid(s, loc)), it) : expire,
        .a = value != NULL ? value : it_val(it),
        .alen = value != NULL ? vlen : it_vlen(it),
        .cas = new_cas,
        .state = (uint8_t)(((it[1] & IT_STATE) | set) & ~clear),
        .pin = (int32_t)loc_sid(s, loc),
        .slot = slot,
        .known = true,
    };
    if (expired(s, p.expire)) {
        unlink_slot(s, hash, slot);
        if (cas_out != NULL) {
            *cas_out = 0;
        }
        return SEG_DELETED;
    }
    return put_item(s, &p, cas_out);
}

enum seg_result
seg_invalidate(struct seg *s, const void *key, size_t klen, uint64_t hash, bool set_ttl,
               int64_t exptime, uint64_t new_cas, uint64_t *cas_out)
{
    clock_update(s);
    int64_t expire = set_ttl ? clamp_expire(seg_exptime_abs(exptime, s->now)) : 0;
    /* A fresh CAS comes with the new location; the rewrite is a new version, not a new item. */
    enum seg_result res = rewrite(s, key, klen, hash, NULL, 0, !set_ttl, expire, new_cas,
                                  SEG_ST_STALE, SEG_ST_WIN, cas_out);
    if (res == SEG_STORED) {
        s->st.total_items--;
    }
    return res == SEG_STORED || res == SEG_DELETED ? SEG_OK : res;
}

enum seg_result
seg_clear_value(struct seg *s, const void *key, size_t klen, uint64_t hash, uint64_t new_cas,
                uint64_t *cas_out)
{
    clock_update(s);
    enum seg_result res =
        rewrite(s, key, klen, hash, "", 0, true, 0, new_cas, 0, SEG_ST_MASK, cas_out);
    return res == SEG_STORED || res == SEG_DELETED ? SEG_OK : res;
}

/* memcached accepts decimal digits followed by optional whitespace. */
static bool
parse_u64(const uint8_t *p, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
        unsigned d = p[i] - '0';
        if (v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    if (i == 0) {
        return false;
    }
    for (; i < len; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n') {
            return false;
        }
    }
    *out = v;
    return true;
}

enum seg_result
seg_incr(struct seg *s, const void *key, size_t klen, uint64_t hash, uint64_t delta, bool decr,
         uint64_t *value_out, uint64_t *cas_out)
{
    return seg_incr_cas(s, key, klen, hash, delta, decr, 0, value_out, cas_out);
}

enum seg_result
seg_incr_cas(struct seg *s, const void *key, size_t klen, uint64_t hash, uint64_t delta, bool decr,
             uint64_t new_cas, uint64_t *value_out, uint64_t *cas_out)
{
    clock_update(s);
    uint64_t loc;
    uint64_t *slot = find_live(s, key, klen, hash, &loc);
    if (slot == NULL) {
        return SEG_NOT_FOUND;
    }
    uint8_t *it = loc_item(s, loc);
    uint64_t v;
    if (!parse_u64(it_val(it), it_vlen(it), &v)) {
        return SEG_NON_NUMERIC;
    }
    v = decr ? (v > delta ? v - delta : 0) : v + delta;
    char buf[24];
    int len = snprintf(buf, sizeof(buf), "%" PRIu64, v);
    struct put p = {
        .key = key,
        .klen = klen,
        .hash = hash,
        .flags = it_flags(it),
        .expire = it_expire(hdr(s, loc_sid(s, loc)), it),
        .a = buf,
        .alen = (size_t)len,
        .cas = new_cas,
        .state = it[1] & IT_STATE,
        .pin = (int32_t)loc_sid(s, loc),
        .slot = slot,
        .known = true,
    };
    enum seg_result res = put_item(s, &p, cas_out);
    if (res != SEG_STORED) {
        return res;
    }
    *value_out = v;
    return SEG_OK;
}

enum seg_result
seg_reserve(struct seg *s, const struct seg_store_req *req, struct seg_reservation *res)
{
    clock_update(s);
    res->active = false;
    if (too_large(s, req->klen, req->vlen)) {
        return store_failed(s, req, SEG_TOO_LARGE);
    }
    int64_t expire = clamp_expire(seg_exptime_abs(req->exptime, s->now));
    /*
     * set/add/replace/cas with a live exptime are written where they will stay; the others
     * (append, prepend, past exptime) hold the bytes in a never-expiring segment until commit
     * copies them.
     */
    bool in_place = req->mode != SEG_APPEND && req->mode != SEG_PREPEND && !expired(s, expire);
    uint32_t flags = in_place ? req->flags : 0;
    uint32_t sid, off, exp;
    uint64_t cas = in_place ? req->new_cas : 0;
    if (item_alloc(s, in_place ? expire : 0,
                   (uint32_t)item_size(req->klen, req->vlen, flags, cas != 0), &sid, &off,
                   &exp) != 0) {
        s->st.store_no_memory++;
        return store_failed(s, req, SEG_NO_MEMORY);
    }
    uint8_t *it = seg_data(s, sid) + off;
    uint8_t *w = it_write_hdr(it, req->klen, req->vlen, flags, cas, exp, IT_DEAD);
    memcpy(w, req->key, req->klen);
    hdr(s, sid)->pinned++;
    *res = (struct seg_reservation){
        .value = (char *)w + req->klen,
        .vlen = req->vlen,
        .req = *req,
        .expire = expire,
        .sid = sid,
        .off = off,
        .in_place = in_place,
        .active = true,
    };
    res->req.key = NULL;
    res->req.value = NULL;
    return SEG_OK;
}

enum seg_result
seg_commit(struct seg *s, struct seg_reservation *res, uint64_t *cas_out)
{
    clock_update(s);
    if (!res->active) {
        return SEG_NOT_STORED;
    }
    struct seg_hdr *h = hdr(s, res->sid);
    uint8_t *it = seg_data(s, res->sid) + res->off;
    struct seg_store_req r = res->req;
    r.key = it_key(it);
    r.value = it_val(it);
    enum seg_result out;
    if (res->in_place && it_valid(s, h, it)) {
        uint32_t placed[2] = {res->sid, res->off};
        out = do_store(s, &r, res->expire, placed, cas_out);
    } else {
        /* The reservation's segment stays pinned, so the bytes do not move while copied. */
        out = do_store(s, &r, res->expire, NULL, cas_out);
    }
    h->pinned--;
    res->active = false;
    return out;
}

void
seg_abort(struct seg *s, struct seg_reservation *res)
{
    if (res->active) {
        hdr(s, res->sid)->pinned--;
        res->active = false;
    }
}

/* ---- stats ---- */

void
seg_stats_get(const struct seg *s, struct seg_stats *out)
{
    *out = s->st;
    out->segs_total = s->nseg;
    out->segs_free = s->nfree;
    out->segs_used = s->nseg - s->nfree;
    out->heap_bytes = s->heap_len;
    out->hash_buckets = s->nbuckets;
    out->hash_growing = s->ht_old != NULL;
    out->hash_bytes =
        s->ht_len + (uint64_t)s->nb_old * 64 + (uint64_t)s->ovf_nchunks * OVF_CHUNK * 64;
    out->overhead_bytes = (uint64_t)s->nseg * sizeof(struct seg_hdr) + sizeof(*s) +
                          (s->scratch != NULL ? s->seg_size : 0);
}

int
seg_ttl_stats_get(const struct seg *s, size_t idx, struct seg_ttl_stats *out)
{
    if (idx >= TB_COUNT) {
        return -EINVAL;
    }
    const struct ttl_bucket *b = &s->tb[idx];
    *out = (struct seg_ttl_stats){
        .ttl_lo = tb_lo((unsigned)idx),
        .ttl_hi = idx == TB_NEVER ? 0 : tb_lo((unsigned)idx) + tb_width((unsigned)idx) - 1,
        .segs = b->segs,
        .items = b->items,
        .bytes = b->bytes,
    };
    return 0;
}

/* ---- lifecycle ---- */

#define HUGE_PAGE (2u << 20)

/*
 * Anonymous memory for the heap or the hash table, 2 MiB aligned and marked for transparent huge
 * pages: both are read at random, and with 4 KiB pages nearly every lookup also misses the TLB
 * (costly under virtualization). Pages still cost RSS only once touched. NULL on failure.
 */
static void *
map_region(size_t len, int extra_flags)
{
    /* The tail beyond len is unmapped, which needs a page-aligned address: a length that is not
     * a whole number of pages would leave the whole padding mapped (munmap fails with EINVAL),
     * 2 MiB of address space lost per table. Callers unmap their own len, which munmap rounds
     * up the same way. */
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    len = (len + page - 1) & ~(page - 1);
    size_t padded = len + HUGE_PAGE;
    uint8_t *p = mmap(NULL, padded, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0);
    if (p == MAP_FAILED) {
        return NULL;
    }
    uint8_t *start = (uint8_t *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (start > p) {
        munmap(p, (size_t)(start - p));
    }
    size_t tail = (size_t)((p + padded) - (start + len));
    if (tail > 0) {
        munmap(start + len, tail);
    }
#ifdef MADV_HUGEPAGE
    madvise(start, len, MADV_HUGEPAGE); /* advice only: failure just means small pages */
#endif
    return start;
}

static int
check_options(const struct seg_options *o)
{
    if (o->seg_size < SEG_SIZE_MIN || o->seg_size > SEG_SIZE_MAX ||
        (o->seg_size & (o->seg_size - 1)) != 0) {
        return -EINVAL;
    }
    if (o->item_max > o->seg_size || o->item_max < 64) {
        return -EINVAL;
    }
    if (o->mem_bytes / o->seg_size < 2 || (unsigned)o->evict >= SEG_EVICT_COUNT) {
        return -EINVAL;
    }
    if (o->merge_n < 2 || o->merge_n > 16) {
        return -EINVAL;
    }
    unsigned off_bits = (unsigned)__builtin_ctzll(o->seg_size);
    /* Segment ids must fit the slot, with one id to spare (temp_sid). */
    if (o->mem_bytes / o->seg_size >= (UINT64_C(1) << (SLOT_FREQ_SHIFT - off_bits)) - 1 ||
        o->mem_bytes / o->seg_size > INT32_MAX) {
        return -EINVAL;
    }
    return 0;
}

int
seg_create(struct seg **out, const struct seg_options *opts)
{
    int rc = check_options(opts);
    if (rc != 0) {
        return rc;
    }
    struct seg *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return -ENOMEM;
    }
    s->seg_size = (uint32_t)opts->seg_size;
    s->off_bits = (unsigned)__builtin_ctzll(opts->seg_size);
    s->nseg = (uint32_t)(opts->mem_bytes / opts->seg_size);
    s->temp_sid = (uint32_t)((UINT64_C(1) << (SLOT_FREQ_SHIFT - s->off_bits)) - 1);
    s->item_max = opts->item_max;
    s->evict = opts->evict;
    s->merge_n = opts->merge_n;
    s->clock = opts->clock != NULL ? opts->clock : real_clock;
    s->clock_ctx = opts->clock_ctx;
    s->rng = opts->seed != 0 ? opts->seed : 1;
    s->free_head = -1;
    s->heap_len = (size_t)s->nseg * s->seg_size;
    s->heap = map_region(s->heap_len, MAP_NORESERVE);
    if (s->heap == NULL) {
        goto fail;
    }
    /*
     * Hash table: at most one bucket (7 item slots) per 6 expected items of a full heap, where an
     * item is expected to take item_bytes_hint bytes. Collisions past 7 go to overflow buckets.
     * It starts at that size halved until it is near HT_START_BUCKETS, then doubles as items
     * come (ht_grow), ending at the full size (rounded up by less than one bucket per doubling).
     */
    size_t hint = opts->item_bytes_hint != 0 ? opts->item_bytes_hint : 64;
    uint64_t nb = s->heap_len / hint / 6;
    nb = nb < 64 ? 64 : (nb > (UINT32_C(1) << 31) ? (UINT32_C(1) << 31) : nb);
    uint64_t start = nb,
             start_min = opts->ht_start_buckets ? opts->ht_start_buckets : HT_START_BUCKETS;
    if (start_min < 64) {
        start_min = 64; /* also ends the halving below, which would stall at 1 */
    }
    unsigned doublings = 0;
    while (!opts->prefault && (start + 1) / 2 >= start_min) {
        start = (start + 1) / 2; /* ceil: start << doublings >= nb */
        doublings++;
    }
    s->nbuckets = (uint32_t)start;
    s->nb_max = (uint32_t)(start << doublings);
    s->ht_len = (size_t)s->nbuckets * 64;
    s->ht = map_region(s->ht_len, 0);
    if (s->ht == NULL) {
        goto fail;
    }
    s->hdrs = calloc(s->nseg, sizeof(*s->hdrs));
    if (s->hdrs == NULL) {
        goto fail;
    }
    if (s->evict == SEG_EVICT_MERGE && (s->scratch = malloc(s->seg_size)) == NULL) {
        goto fail;
    }
    for (uint32_t i = s->nseg; i-- > 0;) {
        free_push(s, i); /* low ids first: untouched high segments cost no RSS */
    }
    for (unsigned i = 0; i < TB_COUNT; i++) {
        s->tb[i] = (struct ttl_bucket){.head = -1, .tail = -1, .merge_next = -1};
    }
    if (opts->prefault) {
        /* Page faults now rather than on the request path; the table is already zero. */
        memset(s->heap, 0, s->heap_len);
        memset(s->ht, 0, s->ht_len);
    }
    s->now = s->clock(s->clock_ctx);
    *out = s;
    return 0;
fail:
    seg_destroy(&s);
    return -ENOMEM;
}

void
seg_destroy(struct seg **sp)
{
    if (sp == NULL || *sp == NULL) {
        return;
    }
    struct seg *s = *sp;
    if (s->heap != NULL) {
        munmap(s->heap, s->heap_len);
    }
    if (s->ht != NULL) {
        munmap(s->ht, s->ht_len);
    }
    if (s->ht_old != NULL) {
        munmap(s->ht_old, (size_t)s->nb_old * 64);
    }
    for (uint32_t i = 0; i < s->ovf_nchunks; i++) {
        free(s->ovf[i]);
    }
    free(s->ovf);
    free(s->hdrs);
    free(s->scratch);
    free(s);
    *sp = NULL;
}
