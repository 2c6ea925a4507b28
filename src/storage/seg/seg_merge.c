/* seg_merge.c: merge eviction (Segcache's): a few segments of one TTL bucket become one. */
#include "seg_impl.h"

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
        s->tc[hdr(s, src)->bucket].expired++;
        s->tc[hdr(s, src)->bucket].expired_unfetched += freq == 0;
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
        s->tc[hdr(s, src)->bucket].evicted++;
        s->tc[hdr(s, src)->bucket].evicted_unfetched += freq == 0;
        unlink_slot(s, hash, slot);
        return;
    }
    uint8_t *out = s->scratch + m->woff;
    if (nsz == sz) {
        memcpy(out, it, sz);
    } else {
        uint64_t cas = (add_cas || (it[1] & IT_CAS)) ? it_cas(s, make_loc(s, src, off), it) : 0;
        uint32_t exp = (add_exp || (it[1] & IT_EXP)) ? e : 0;
        uint8_t *p = it_write_hdr(out, it[0], it_vlen(it), it_flags(it), cas, exp,
                                  it[1] & (IT_STATE | IT_SUM));
        memcpy(p, it_key(it), (size_t)it[0] + it_vlen(it));
        s->st.bytes += nsz - sz;
        s->tb[hdr(s, src)->bucket].bytes += nsz - sz;
    }
    if (src != m->dst || nsz != sz) {
        seg_item_seal(s, m->dst, out); /* its checksum covers dst's generation and its layout */
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
    if (s->meta != NULL && h->write_off > woff) {
        /*
         * In a memory file, the old layout's tail would still parse as items of dst's generation
         * (with valid checksums) if dst became a tail again and a crash tore an append there:
         * zeroes stop a recovery walk instead (a key length of 0 is never valid).
         */
        memset(seg_data(s, dst) + woff, 0, h->write_off - woff);
    }
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
bool
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
