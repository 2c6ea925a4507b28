/* seg_ht.c: the hash table (buckets, overflow chains, growth) and the scan over it. */
#include "seg_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

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

uint64_t *
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
int
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
void
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
    s->ht_pf = 0; /* every page of it will be written by the move: fault them in first */
}

/*
 * Move up to n buckets of the old table (and their overflow buckets) to the new one, each slot
 * to the bucket its key's hash gives; the keys are read from the items, which every linked slot
 * points at. Each overflow bucket goes back to the free list before its slots are placed, so the
 * new chains never need more overflow buckets than the free list then holds: chain_insert cannot
 * fail here. When the last bucket has moved, the old table is unmapped.
 */
void
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
