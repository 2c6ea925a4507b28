/*
 * seg_recover.c: the heap in a memory file, and its recovery at start.
 *
 * A shard's region of the file is: one meta page (struct seg_meta), the segment headers, the
 * heap. The hash table, TTL bucket chains and statistics are not in the file: recovery rebuilds
 * them by walking the segments.
 *
 * What makes a crash (kill -9) safe: the file is a shared mapping, so every store the process
 * made is in the page cache when it dies, in program order. An item is written with IT_DEAD set,
 * its checksum is filled once the value is complete, and IT_DEAD is cleared last (a release
 * store) before the command's reply is composed; deletes and replaced versions get IT_DEAD in
 * place. So an item recovery sees live has its bytes complete; a torn or damaged one fails its
 * checksum (which also covers the segment's generation, so an item left from a segment's
 * previous use fails too). An overwrite commits the new version before it kills the old one; if
 * both are found live, the one in the later segment (cas_base), then at the later offset, wins:
 * the one written later, unless the new version went to an older segment of another TTL bucket
 * (then the old one, as for any write whose command had not returned).
 */
#include "seg_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define META_LEN 4096u
#define PAGE_LEN 4096u

static size_t
hdrs_len(uint64_t nseg)
{
    return (size_t)((nseg * sizeof(struct seg_hdr) + PAGE_LEN - 1) & ~(uint64_t)(PAGE_LEN - 1));
}

size_t
seg_region_size(const struct seg_options *o)
{
    uint64_t nseg = o->mem_bytes / o->seg_size;
    return META_LEN + hdrs_len(nseg) + (size_t)nseg * o->seg_size;
}

uint32_t
item_sum(const uint8_t *it, uint64_t cas_base)
{
    uint64_t seed = cas_base ^ ((uint64_t)it[0] << 48 | (uint64_t)(it[1] & IT_LAYOUT) << 40 |
                                (uint64_t)it_vlen(it) << 8);
    return (uint32_t)XXH3_64bits_withSeed(it + IT_HDR, it_size(it) - IT_HDR - 4, seed);
}

/*
 * Where a fresh region's generations (cas_base) start: a random multiple of the segment size
 * below 2^20 of them. The heap may still hold items of an earlier use of the file (another
 * layout, or an init a crash cut short); starting again at 0 would give old items the
 * generations their checksums were made with, and a header torn at the wrong instant could
 * then expose one. Not secret, only unlikely to repeat.
 */
static uint64_t
first_generation(const struct seg *s)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r = (uint64_t)ts.tv_nsec * UINT64_C(0x9e3779b97f4a7c15) ^ (uint64_t)ts.tv_sec;
    }
    return ((r & ((UINT64_C(1) << 20) - 1)) + 1) * s->seg_size;
}

/* A fresh region: no segment in use. meta's magic is written last, so a crash meanwhile leaves
 * a region that the next start initialises again. */
static void
region_init(struct seg *s)
{
    struct seg_meta *m = s->meta;
    __atomic_store_n(&m->magic, 0, __ATOMIC_RELEASE);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    for (uint32_t i = s->nseg; i-- > 0;) {
        free_push(s, i); /* low ids first */
    }
    s->cas_next = first_generation(s);
    *m = (struct seg_meta){
        .version = SEG_META_VERSION,
        .seg_size = s->seg_size,
        .nseg = s->nseg,
        .hdr_size = sizeof(struct seg_hdr),
        .item_sum = IT_SUM,
        .cas_next = s->cas_next,
    };
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&m->magic, SEG_META_MAGIC, __ATOMIC_RELEASE);
}

static bool
meta_matches(const struct seg *s)
{
    const struct seg_meta *m = s->meta;
    return m->magic == SEG_META_MAGIC && m->version == SEG_META_VERSION &&
           m->seg_size == s->seg_size && m->nseg == s->nseg &&
           m->hdr_size == sizeof(struct seg_hdr) && m->item_sum == IT_SUM;
}

/* A header recovery can trust: opened before the last cas_base handed out, fields in range. */
static bool
hdr_sane(const struct seg *s, const struct seg_hdr *h)
{
    return h->cas_base < s->cas_next && h->cas_base % s->seg_size == 0 &&
           h->write_off <= s->seg_size && h->bucket < TB_COUNT &&
           (h->bucket == TB_NEVER) == (h->expire_at == 0);
}

static int
cmp_age(const void *a, const void *b, void *ctx)
{
    const struct seg *s = ctx;
    uint64_t x = s->hdrs[*(const uint32_t *)a].cas_base, y = s->hdrs[*(const uint32_t *)b].cas_base;
    return x < y ? -1 : x > y;
}

/*
 * The size of the item at off if it is well formed and ends by end: a key of 1..SEG_KEY_MAX
 * bytes and a length that fits. 0 otherwise (walks stop there).
 */
static uint32_t
item_bounded(const uint8_t *base, uint32_t off, uint32_t end)
{
    if (end - off < IT_HDR + 4 || base[off] == 0 || base[off] > SEG_KEY_MAX) {
        return 0;
    }
    const uint8_t *it = base + off;
    uint64_t sz = it_meta(it) + (uint64_t)it[0] + it_vlen(it) + IT_SUM_LEN(it[1]);
    return sz <= end - off ? (uint32_t)sz : 0;
}

/* Whether an item (bounded: item_bounded) has a checksum, and it matches. */
static bool
item_sum_ok(const uint8_t *it, uint64_t cas_base)
{
    uint32_t sum;
    if (!(it[1] & IT_SUM)) {
        return false;
    }
    memcpy(&sum, it + it_size(it) - 4, 4);
    return sum == item_sum(it, cas_base);
}

/*
 * After an item at off failed its checksum: whether its length can still be trusted, i.e. the
 * damage is in its other bytes. It can when the segment ends right after it or when the next
 * item is well formed and passes its own checksum (a walk gone astray would have to land on an
 * item boundary and match a 32-bit checksum).
 */
static bool
resync_ok(const uint8_t *base, uint32_t off, uint32_t sz, uint32_t end, uint64_t cas_base)
{
    if (sz == 0) {
        return false;
    }
    if (off + sz == end) {
        return true;
    }
    return item_bounded(base, off + sz, end) != 0 && item_sum_ok(base + off + sz, cas_base);
}

/*
 * One walk of the key's chain for both questions recovery asks: the slot already holding the
 * key (returned, or NULL) and the first empty slot met (*empty, or NULL).
 */
static uint64_t *
chain_lookup(const struct seg *s, const uint8_t *it, uint64_t hash, uint64_t **empty)
{
    uint64_t tag = tag_of(hash);
    uint64_t *b = ht_head(s, hash);
    *empty = NULL;
    for (;;) {
        for (int i = 0; i < SLOTS; i++) {
            uint64_t v = b[i];
            if (v == 0) {
                *empty = *empty != NULL ? *empty : &b[i];
            } else if ((v & SLOT_TAG_MASK) == tag) {
                const uint8_t *o = loc_item(s, v & SLOT_LOC_MASK);
                if (o[0] == it[0] && memcmp(it_key(o), it_key(it), it[0]) == 0) {
                    return &b[i];
                }
            }
        }
        if (b[7] == 0) {
            return NULL;
        }
        b = ovf_at(s, b[7]);
    }
}

/*
 * Linking in bucket order. Items come out of the segments in an order that has nothing to do
 * with their buckets, so linking them as they come is one random access into the hash table per
 * item: a cache miss, and in a table of tens of MiB a TLB miss, which prefetching hides only in
 * part. So the items checked are collected (struct pending, 16 bytes each) and, once a batch is
 * full, sorted by bucket (a counting sort on the hash's top bits, stable: two versions of a key
 * keep their order) and linked in that order, a sweep through the table.
 */
#define BATCH_MAX  (UINT32_C(1) << 18) /* items per batch: 4 MiB, twice (items and sorted) */
#define PART_SHIFT 22                  /* 1024 partitions of the table, by the hash's top bits */
#define LINK_AHEAD 8                   /* items between prefetching a bucket and linking */

/* An item checked and not yet linked: its slot value (tag, frequency, location), its hash's
 * low half (which gives the bucket) and its size. */
struct pending {
    uint64_t v;
    uint32_t hash_lo;
    uint32_t size;
};

struct batch {
    struct pending *items;
    struct pending *sorted;
    uint32_t n;
    uint32_t cap;
};

/* Link one item; the later of two versions of a key (linked later) wins. */
static void
link_one(struct seg *s, const struct pending *p)
{
    uint64_t loc = p->v & SLOT_LOC_MASK;
    /* The hash, as far as the table uses it: the low half, and the tag for bits 32..47. */
    uint64_t hash = p->hash_lo | ((p->v & SLOT_TAG_MASK) >> (SLOT_TAG_SHIFT - 32));
    uint64_t *empty;
    uint64_t *slot = chain_lookup(s, loc_item(s, loc), hash, &empty);
    if (slot != NULL) {
        uint64_t old = *slot;
        *slot = p->v;
        item_kill(s, old & SLOT_LOC_MASK);
        s->st.recovered_items--;
    } else if (empty != NULL) {
        *empty = p->v;
    } else if (ht_insert(s, hash, p->v) != 0) {
        loc_item(s, loc)[1] |= IT_DEAD; /* no memory for an overflow bucket: dropped */
        return;
    }
    item_live(s, loc_sid(s, loc), p->size);
    s->st.recovered_items++;
}

static void
batch_link(struct seg *s, struct batch *b)
{
    uint32_t start[1025] = {0};
    for (uint32_t i = 0; i < b->n; i++) {
        start[(b->items[i].hash_lo >> PART_SHIFT) + 1]++;
    }
    for (unsigned p = 1; p <= 1024; p++) {
        start[p] += start[p - 1];
    }
    for (uint32_t i = 0; i < b->n; i++) {
        b->sorted[start[b->items[i].hash_lo >> PART_SHIFT]++] = b->items[i];
    }
    for (uint32_t i = 0; i < b->n; i++) {
        /* In bucket order the addresses ascend, but a batch holds fewer items than the table
         * has buckets: each is still a cache miss, started LINK_AHEAD items early. */
        if (i + LINK_AHEAD < b->n) {
            __builtin_prefetch(ht_head(s, b->sorted[i + LINK_AHEAD].hash_lo));
        }
        link_one(s, &b->sorted[i]);
    }
    b->n = 0;
}

/*
 * Check the items of one segment, in order, reading them from base: a copy of the segment's
 * write_off bytes (or the segment itself); the live ones go into the batch. Items are marked
 * dead in the segment itself. A damaged item is dropped and the walk goes on past it if its
 * length can be trusted (resync_ok); otherwise the segment ends there.
 */
static void
scan_seg(struct seg *s, uint32_t sid, const uint8_t *base, struct batch *b)
{
    struct seg_hdr *h = hdr(s, sid);
    uint8_t *seg = seg_data(s, sid);
    uint32_t off = 0, end = h->write_off, max_exp = 0;
    while (off < end) {
        uint32_t sz = item_bounded(base, off, end);
        const uint8_t *it = base + off;
        if (sz != 0 && (it[1] & IT_DEAD)) {
            off += sz;
            continue;
        }
        if (sz == 0 || !item_sum_ok(it, h->cas_base)) {
            s->st.recovery_damaged++;
            if (!resync_ok(base, off, sz, end, h->cas_base)) {
                end = off;
                break;
            }
            seg[off + 1] |= IT_DEAD;
            off += sz;
            continue;
        }
        uint32_t e = it_expire(h, it);
        if (e != 0 && e <= s->now) {
            seg[off + 1] |= IT_DEAD;
            s->st.recovery_expired++;
            off += sz;
            continue;
        }
        max_exp = e > max_exp ? e : max_exp;
        if (b->n == b->cap) {
            batch_link(s, b);
        }
        /* The file keeps no read counts, only whether an item was read: one read is what it
         * says. */
        uint64_t hash = seg_hash(it_key(it), it[0]);
        b->items[b->n++] = (struct pending){
            .v = tag_of(hash) | make_loc(s, sid, off) |
                 ((uint64_t)((it[1] & SEG_ST_FETCHED) != 0) << SLOT_FREQ_SHIFT),
            .hash_lo = (uint32_t)hash,
            .size = sz,
        };
        off += sz;
    }
    /* An upper bound if a later version of one of its items replaces it: freed no earlier. */
    h->write_off = end;
    h->max_expire = max_exp;
}

/* Read len bytes at off of fd into buf: 0, or -1 (then the caller reads the mapping). */
static int
read_full(int fd, uint8_t *buf, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pread(fd, buf, len, (off_t)off);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) {
                continue;
            }
            return -1;
        }
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/*
 * Recover the segments in order (oldest first), about expect items. Each is read with pread
 * into one buffer rather than through the mapping. Reading the mapping would touch every page of
 * the heap now, and the first touch of a page in a process costs a fault, under virtualization
 * also the hypervisor's: several times the cost of the copy, which the kernel makes through its
 * own mapping of the page cache. So recovery touches only the pages it writes (an item dropped,
 * a version replaced); the others are touched as requests come. Without the buffer, the mapping
 * is read. 0, or -ENOMEM.
 */
static int
recover_segs(struct seg *s, const uint32_t *order, uint32_t n, uint64_t expect, int fd,
             uint64_t heap_off)
{
    struct batch b = {.cap = expect < 4096 ? 4096 : (expect > BATCH_MAX ? BATCH_MAX : expect)};
    b.items = malloc((size_t)b.cap * sizeof(*b.items));
    b.sorted = malloc((size_t)b.cap * sizeof(*b.sorted));
    uint8_t *buf = malloc(s->seg_size);
    int rc = b.items != NULL && b.sorted != NULL ? 0 : -ENOMEM;
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        const struct seg_hdr *h = hdr(s, order[i]);
        const uint8_t *base = seg_data(s, order[i]);
        if (buf != NULL &&
            read_full(fd, buf, h->write_off, heap_off + ((uint64_t)order[i] << s->off_bits)) == 0) {
            base = buf;
        }
        scan_seg(s, order[i], base, &b);
    }
    if (rc == 0) {
        batch_link(s, &b);
    }
    free(buf);
    free(b.items);
    free(b.sorted);
    return rc;
}

/* Size the hash table for about n items up front, so recovery does not grow it step by step. */
static void
ht_presize(struct seg *s, uint64_t n)
{
    uint64_t nb = s->nbuckets;
    while (nb < s->nb_max && nb * HT_GROW_LOAD <= n) {
        nb *= 2;
    }
    if (nb > s->nb_max) {
        nb = s->nb_max;
    }
    if (nb == s->nbuckets) {
        return;
    }
    uint64_t *t = map_region((size_t)nb * 64, 0);
    if (t == NULL) {
        return; /* the table grows as items come instead */
    }
    munmap(s->ht, s->ht_len);
    s->ht = t;
    s->nbuckets = (uint32_t)nb;
    s->ht_len = (size_t)nb * 64;
}

/*
 * Rebuild the instance from a region whose meta matches: keep the segments whose header is
 * sane and that are neither flushed nor wholly expired, chain them by age in their TTL buckets,
 * link their items. Segments left without live items are freed (except a bucket's tail).
 */
static int
region_recover(struct seg *s, int fd, uint64_t heap_off)
{
    const struct seg_meta *m = s->meta;
    s->cas_next = m->cas_next;
    s->flush_cas = m->flush_cas;
    s->flush_at = m->flush_at;
    if (s->flush_at != 0 && s->now >= s->flush_at) {
        flush_now(s);
    }
    uint32_t *order = malloc((size_t)s->nseg * sizeof(*order));
    if (order == NULL) {
        return -ENOMEM;
    }
    uint32_t n = 0;
    uint64_t expect = 0;
    for (uint32_t sid = 0; sid < s->nseg; sid++) {
        struct seg_hdr *h = hdr(s, sid);
        if (!h->used) {
            continue;
        }
        if (!hdr_sane(s, h)) {
            s->st.recovery_bad_segs++;
            h->used = 0;
        } else if (seg_reclaimable(s, h)) {
            h->used = 0; /* flushed, or every item expired: nothing to walk */
        } else {
            order[n++] = sid;
            expect += h->live_items < s->seg_size / IT_HDR ? h->live_items : 0;
        }
    }
    for (uint32_t sid = s->nseg; sid-- > 0;) {
        if (!hdr(s, sid)->used) {
            free_push(s, sid);
        }
    }
    qsort_r(order, n, sizeof(*order), cmp_age, s);
    ht_presize(s, expect);
    for (uint32_t i = 0; i < n; i++) {
        struct seg_hdr *h = hdr(s, order[i]);
        h->live_items = h->live_bytes = 0;
        h->pinned = 0;
        chain_append(s, h->bucket, order[i]);
    }
    int rc = recover_segs(s, order, n, expect, fd, heap_off);
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        const struct seg_hdr *h = hdr(s, order[i]);
        if (h->live_items == 0 && s->tb[h->bucket].tail != (int32_t)order[i]) {
            seg_release(s, order[i]);
        }
    }
    free(order);
    return rc;
}

int
seg_file_attach(struct seg *s, const struct seg_options *opts)
{
    size_t len = seg_region_size(opts);
    /* Recovery reads the segments with pread (recover_segs), not through the mapping: pages are
     * mapped as they are used, unless prefault asks for them all now. */
    void *p =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | (opts->prefault ? MAP_POPULATE : 0),
             opts->file_fd, (off_t)opts->file_off);
    if (p == MAP_FAILED) {
        return -errno;
    }
    s->region = p;
    s->region_len = len;
    s->meta = p;
    s->hdrs = (struct seg_hdr *)(s->region + META_LEN);
    s->heap = s->region + META_LEN + hdrs_len(s->nseg);
    s->it_sum = IT_SUM;
#ifdef MADV_HUGEPAGE
    madvise(s->heap, s->heap_len, MADV_HUGEPAGE); /* honoured only if shmem allows it */
#endif
    if (!meta_matches(s)) {
        s->st.recovery_reset = s->meta->magic != 0;
        region_init(s);
        return 0;
    }
    return region_recover(s, opts->file_fd, opts->file_off + META_LEN + hdrs_len(s->nseg));
}
