/* seg_segment.c: segments: the free list, TTL bucket chains, walks, allocation, whole-segment
 * eviction, and the memory they live in. */
#include "seg_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- segments ---- */

int32_t
free_pop(struct seg *s)
{
    int32_t sid = s->free_head;
    if (sid >= 0) {
        s->free_head = hdr(s, (uint32_t)sid)->next;
        s->nfree--;
        if ((uint32_t)sid >= s->taken_hi) {
            s->taken_hi = (uint32_t)sid + 1;
        }
    }
    return sid;
}

void
free_push(struct seg *s, uint32_t sid)
{
    struct seg_hdr *h = hdr(s, sid);
    *h = (struct seg_hdr){.next = s->free_head, .prev = -1};
    s->free_head = (int32_t)sid;
    s->nfree++;
}

void
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

void
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

void
seg_release(struct seg *s, uint32_t sid)
{
    chain_remove(s, sid);
    free_push(s, sid);
}

#define WALK_AHEAD 8 /* items between prefetching a bucket and using it */

/*
 * Visit every live item of a segment in order. Each needs its hash bucket, a likely cache miss,
 * so buckets are prefetched WALK_AHEAD items ahead: this is what makes bulk expiration, eviction
 * and merges cheap per item. fn may unlink the item it is given. Returns the items visited.
 */
uint32_t
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
    struct ttl_counts *tc = &s->tc[hdr(s, sid)->bucket];
    (void)off, (void)it;
    unlink_slot(s, hash, slot);
    if (why == WHY_EVICT) {
        s->st.evicted_items++;
        s->st.evicted_unfetched += unfetched;
        tc->evicted++;
        tc->evicted_unfetched += unfetched;
    } else if (why == WHY_EXPIRE) {
        s->st.expired_items++;
        s->st.expired_unfetched += unfetched;
        tc->expired++;
        tc->expired_unfetched += unfetched;
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
uint32_t
seg_reclaim(struct seg *s, uint32_t sid)
{
    bool flushed = hdr(s, sid)->cas_base < s->flush_cas;
    uint32_t n = seg_unlink_all(s, sid, flushed ? WHY_FLUSH : WHY_EXPIRE);
    seg_release(s, sid);
    s->st.expired_segs += !flushed;
    return n;
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

/*
 * Free a segment emptied by its items' replacement or deletion, if there is one: nothing to
 * unlink, so it costs nothing, and its memory is in RAM, where a segment never used would cost
 * the first touch of its pages (a fault and the zeroing of each, on the request path). Under
 * overwrites, the heap then stops growing once every key has been rewritten a few times, rather
 * than at -m. Not the segment being written (its bucket's tail), nor one pinned.
 */
static bool
free_emptied(struct seg *s)
{
    while (s->nemptied > 0) {
        uint32_t sid = s->emptied[--s->nemptied];
        const struct seg_hdr *h = hdr(s, sid);
        if (h->used && h->live_items == 0 && h->pinned == 0 &&
            s->tb[h->bucket].tail != (int32_t)sid) {
            seg_release(s, sid);
            s->st.emptied_segs++;
            return true;
        }
    }
    return false;
}

/* A free segment: an emptied one, else from the free list, else by reclaiming a dead one, else
 * by eviction. */
int32_t
seg_take(struct seg *s)
{
    if (free_emptied(s) || s->free_head >= 0 || reclaim_one(s)) {
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
int
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
        s->tc[bi].no_memory++;
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
    };
    /*
     * In a memory file, recovery takes a segment only once used is set and its cas_base is below
     * meta's cas_next: so the header is complete before used, and used before cas_next moves.
     */
    __atomic_store_n(&h->used, 1, __ATOMIC_RELEASE);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    s->cas_next += s->seg_size;
    meta_sync(s);
    chain_append(s, bi, (uint32_t)sid);
    *sid_out = (uint32_t)sid;
    *off_out = 0;
    return 0;
}

#define HUGE_PAGE (2u << 20)

/*
 * Anonymous memory for the heap or the hash table, 2 MiB aligned and marked for transparent huge
 * pages: both are read at random, and with 4 KiB pages nearly every lookup also misses the TLB
 * (costly under virtualization). Pages still cost RSS only once touched. NULL on failure.
 */
void *
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

/* ---- prefault: segment memory made present before a request needs it ---- */

#define PREFAULT_AHEAD (4u << 20) /* bytes kept present past the last segment taken (>= 2 segs) */
/* ... when another thread does it: it may be starved for a while (it yields to every worker),
 * so the worker gets a longer runway: about 0.2 s of sets at 90 MB/s. */
#define PREFAULT_AHEAD_OFFLOADED (16u << 20)

/*
 * Make [p, p + len) present and writable. MADV_POPULATE_WRITE (Linux 5.14) faults the pages in
 * with one call, far cheaper than a fault per page (above all in a virtual machine); on older
 * kernels each page is touched instead. Either way the contents stay what they were: absent
 * anonymous pages read as zero, and present ones are left alone.
 */
static void
populate(uint8_t *p, size_t len)
{
#ifdef MADV_POPULATE_WRITE
    if (madvise(p, len, MADV_POPULATE_WRITE) == 0) {
        return;
    }
#endif
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t o = 0; o < len; o += page) {
        volatile uint8_t *b = p + o;
        *b = *b;
    }
}

/* Populate up to *budget bytes of [base + *done, base + end), whole pages; true if any left. */
static bool
populate_upto(uint8_t *base, size_t *done, size_t end, size_t *budget)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (*done >= end || *budget == 0) {
        return *done < end;
    }
    size_t n = end - *done;
    if (n > *budget) {
        n = *budget < page ? page : *budget & ~(page - 1);
    }
    populate(base + *done, n);
    *done += n;
    *budget = *budget > n ? *budget - n : 0;
    return *done < end;
}

bool
seg_prefault_step(struct seg *s, size_t max_bytes, const struct seg_offload *off)
{
    size_t budget = max_bytes;
    size_t before = s->pf_off + s->ht_pf;
    /* The hash table first: a new one is written all over as the old one moves into it. */
    bool more = populate_upto((uint8_t *)s->ht, &s->ht_pf, s->ht_len, &budget);
    /* (A memory file's heap is allocated and mapped at start: seg_file.c.) */
    if (s->region == NULL) {
        size_t next = ((size_t)s->taken_hi + 2) * s->seg_size; /* end of the next two */
        size_t ahead = off != NULL ? PREFAULT_AHEAD_OFFLOADED : PREFAULT_AHEAD;
        size_t target = (size_t)s->taken_hi * s->seg_size + ahead;
        target = target > next ? target : next;
        target = target < s->heap_len ? target : s->heap_len;
        size_t reached = s->pf_off - (off != NULL ? off->left() : 0); /* present below this */
        reached = reached > s->pf_own ? reached : s->pf_own;
        if (off != NULL && reached < next && reached < s->pf_off) {
            /* The thread lags: the part of the next two segments it has not reached, here
             * (it may fault the same pages meanwhile: both only make them present). */
            size_t end = next < s->pf_off ? next : s->pf_off;
            more |= populate_upto(s->heap, &reached, end, &budget);
            s->pf_own = reached;
        } else if (off != NULL) {
            if (s->pf_off < target && off->post(s->heap + s->pf_off, target - s->pf_off)) {
                s->pf_off = target;
            }
        } else if (budget == max_bytes || budget >= (size_t)sysconf(_SC_PAGESIZE)) {
            /* The heap too, unless the table left less than a page of the budget. */
            more |= populate_upto(s->heap, &s->pf_off, target, &budget);
        }
    }
    s->st.prefault_bytes += s->pf_off + s->ht_pf - before;
    return more;
}
