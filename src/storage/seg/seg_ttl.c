/* seg_ttl.c: TTL buckets: expiration and reclaiming of whole segments, flush_all, the tick. */
#include "seg_impl.h"

#include <errno.h>

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

size_t
seg_ttl_bucket_expiring(const struct seg *s, int64_t expire)
{
    if (expire == 0) {
        return TB_NEVER; /* as seg_ttl_bucket_of answers it inline */
    }
    if (expire <= s->now) {
        return 1; /* the shortest TTL's: such an item is gone at once */
    }
    /* As item_alloc picks it, from the clamped expiry. */
    expire = expire > (int64_t)UINT32_MAX ? (int64_t)UINT32_MAX : expire;
    return tb_index((uint32_t)(expire - s->now));
}

size_t
seg_last_bucket(const struct seg *s)
{
    return s->last_bucket;
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
bool
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

/* ---- time and flush ---- */

void
flush_now(struct seg *s)
{
    /* Every segment opened so far becomes dead; seg_tick() frees them in bulk. */
    s->flush_cas = s->cas_next;
    s->flush_at = 0;
    s->st.flushes++;
    meta_sync(s);
}

int64_t
seg_now(const struct seg *s)
{
    return s->now;
}

int64_t
seg_clock(struct seg *s)
{
    clock_update(s);
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
        meta_sync(s);
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

/*
 * When the first segment of the chain (oldest first) that holds a live item was opened. Segments
 * whose items were all replaced or deleted stay in the chain until seg_take frees them (it
 * remembers the last SEG_EMPTIED_MAX), they expire or are evicted; at most SEG_AGE_SCAN of them
 * are passed over (see struct seg_ttl_stats).
 */
static uint32_t
oldest_live(const struct seg *s, const struct ttl_bucket *b)
{
    int32_t sid = b->head;
    uint32_t opened = 0;
    for (int n = 0; sid >= 0 && n < SEG_AGE_SCAN; n++) {
        const struct seg_hdr *h = hdr(s, (uint32_t)sid);
        opened = h->opened;
        if (h->live_items > 0) {
            break;
        }
        sid = h->next;
    }
    return opened;
}

int
seg_ttl_stats_get(const struct seg *s, size_t idx, struct seg_ttl_stats *out)
{
    if (idx >= TB_COUNT) {
        return -EINVAL;
    }
    const struct ttl_bucket *b = &s->tb[idx];
    const struct ttl_counts *c = &s->tc[idx];
    *out = (struct seg_ttl_stats){
        .ttl_lo = tb_lo((unsigned)idx),
        .ttl_hi = idx == TB_NEVER ? 0 : tb_lo((unsigned)idx) + tb_width((unsigned)idx) - 1,
        .segs = b->segs,
        .oldest = b->items > 0 ? oldest_live(s, b) : 0,
        .items = b->items,
        .bytes = b->bytes,
        .evicted = c->evicted,
        .evicted_unfetched = c->evicted_unfetched,
        .expired = c->expired,
        .expired_unfetched = c->expired_unfetched,
        .no_memory = c->no_memory,
    };
    return 0;
}
