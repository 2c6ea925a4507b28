/* seg: Segcache storage engine. Contract in include/petrel/seg.h, design in docs/storage.md.
 * This file: the operations, statistics and lifecycle; seg_impl.h lists the other parts. */
#include "seg_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include <time.h>

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
seg_result_name(enum seg_result r)
{
    static const char *const names[] = {
        [SEG_OK] = "ok",
        [SEG_STORED] = "stored",
        [SEG_NOT_STORED] = "not_stored",
        [SEG_EXISTS] = "exists",
        [SEG_NOT_FOUND] = "not_found",
        [SEG_DELETED] = "deleted",
        [SEG_TOUCHED] = "touched",
        [SEG_NON_NUMERIC] = "non_numeric",
        [SEG_TOO_LARGE] = "too_large",
        [SEG_NO_MEMORY] = "no_memory",
    };
    return (unsigned)r < sizeof(names) / sizeof(names[0]) && names[r] != NULL ? names[r]
                                                                              : "unknown";
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
        .file_fd = -1,
    };
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
    const struct seg_hdr *h = hdr(s, loc_sid(s, *loc));
    if (!it_valid(s, h, loc_item(s, *loc))) {
        return NULL;
    }
    s->last_bucket = h->bucket;
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
    /*
     * The new version is committed (checksum, then IT_DEAD cleared) before the old one is
     * killed: a crash in between leaves both in a memory file, and recovery keeps the newer; the
     * other order could leave neither.
     */
    if (slot != NULL) {
        uint64_t old = *slot;
        *slot = (old & (SLOT_TAG_MASK | SLOT_FREQ_MASK)) | loc;
        seg_item_seal(s, sid, it);
        it_commit(it, it[1]);
        item_kill(s, old & SLOT_LOC_MASK);
    } else if (ht_insert(s, hash, tag_of(hash) | loc) != 0) {
        it[1] |= IT_DEAD;
        s->st.store_no_memory++;
        return SEG_NO_MEMORY;
    } else {
        seg_item_seal(s, sid, it);
        it_commit(it, it[1]);
    }
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
    size_t sz = item_size(s, p->klen, p->alen + p->blen, p->flags, p->cas != 0);
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
                              IT_DEAD | s->it_sum | (p->state & IT_STATE));
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
    return klen > SEG_KEY_MAX || item_size(s, klen, vlen, 1, true) + 4 > s->item_max;
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
    int64_t expire = clamp_expire(req->expire);
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
    out->bucket = h->bucket;
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
seg_touch(struct seg *s, const void *key, size_t klen, uint64_t hash, int64_t expire_at)
{
    clock_update(s);
    uint64_t loc;
    uint64_t *slot = find_live(s, key, klen, hash, &loc);
    if (slot == NULL) {
        return SEG_NOT_FOUND;
    }
    int64_t expire = clamp_expire(expire_at);
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
               int64_t expire_at, uint64_t new_cas, uint64_t *cas_out)
{
    clock_update(s);
    int64_t expire = set_ttl ? clamp_expire(expire_at) : 0;
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
    int64_t expire = clamp_expire(req->expire);
    /*
     * set/add/replace/cas with a live expiry are written where they will stay; the others
     * (append, prepend, past expiry) hold the bytes in a never-expiring segment until commit
     * copies them.
     */
    bool in_place = req->mode != SEG_APPEND && req->mode != SEG_PREPEND && !expired(s, expire);
    uint32_t flags = in_place ? req->flags : 0;
    uint32_t sid, off, exp;
    uint64_t cas = in_place ? req->new_cas : 0;
    if (item_alloc(s, in_place ? expire : 0,
                   (uint32_t)item_size(s, req->klen, req->vlen, flags, cas != 0), &sid, &off,
                   &exp) != 0) {
        s->st.store_no_memory++;
        return store_failed(s, req, SEG_NO_MEMORY);
    }
    uint8_t *it = seg_data(s, sid) + off;
    uint8_t *w = it_write_hdr(it, req->klen, req->vlen, flags, cas, exp, IT_DEAD | s->it_sum);
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

/* ---- lifecycle ---- */

size_t
seg_mem_min(const struct seg_options *o)
{
    return 2 * o->seg_size;
}

size_t
seg_mem_max(const struct seg_options *o)
{
    unsigned off_bits = (unsigned)__builtin_ctzll(o->seg_size);
    /* Segment ids must fit the slot, with one id to spare (temp_sid). */
    uint64_t nseg = (UINT64_C(1) << (SLOT_FREQ_SHIFT - off_bits)) - 2;
    if (nseg > INT32_MAX) {
        nseg = INT32_MAX;
    }
    return (size_t)(nseg * o->seg_size);
}

int
seg_options_check(const struct seg_options *o)
{
    if (o->seg_size < SEG_SIZE_MIN || o->seg_size > SEG_SIZE_MAX ||
        (o->seg_size & (o->seg_size - 1)) != 0) {
        return -EINVAL;
    }
    if (o->item_max > o->seg_size || o->item_max < 64) {
        return -EINVAL;
    }
    if (o->mem_bytes / o->seg_size < seg_mem_min(o) / o->seg_size ||
        o->mem_bytes / o->seg_size > seg_mem_max(o) / o->seg_size ||
        (unsigned)o->evict >= SEG_EVICT_COUNT) {
        return -EINVAL;
    }
    if (o->merge_n < 2 || o->merge_n > 16) {
        return -EINVAL;
    }
    return 0;
}

int
seg_create(struct seg **out, const struct seg_options *opts)
{
    int rc = seg_options_check(opts);
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
    s->now = s->clock(s->clock_ctx);
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
    if (s->evict == SEG_EVICT_MERGE && (s->scratch = malloc(s->seg_size)) == NULL) {
        goto fail;
    }
    for (unsigned i = 0; i < TB_COUNT; i++) {
        s->tb[i] = (struct ttl_bucket){.head = -1, .tail = -1, .merge_next = -1};
    }
    if (opts->file_fd >= 0) {
        /* The heap lives in a memory file: map it and recover it (seg_recover.c). */
        if ((rc = seg_file_attach(s, opts)) < 0) {
            seg_destroy(&s);
            return rc;
        }
    } else {
        s->heap = map_region(s->heap_len, MAP_NORESERVE);
        s->hdrs = calloc(s->nseg, sizeof(*s->hdrs));
        if (s->heap == NULL || s->hdrs == NULL) {
            goto fail;
        }
        for (uint32_t i = s->nseg; i-- > 0;) {
            free_push(s, i); /* low ids first: untouched high segments cost no RSS */
        }
    }
    if (opts->prefault && s->region == NULL) {
        /* Page faults now rather than on the request path; the table is already zero. A memory
         * file's heap holds data and its table holds what recovery linked: the file's mapping
         * was populated, and recovery touched the table. */
        memset(s->heap, 0, s->heap_len);
        memset(s->ht, 0, s->ht_len);
        s->pf_off = s->heap_len;
        s->ht_pf = s->ht_len;
    }
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
    if (s->region != NULL) {
        munmap(s->region, s->region_len); /* meta, headers and heap: the file keeps them */
    } else {
        if (s->heap != NULL) {
            munmap(s->heap, s->heap_len);
        }
        free(s->hdrs);
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
    free(s->scratch);
    free(s);
    *sp = NULL;
}

/* ---- moving items between instances (re-sharding a memory file, seg_file.c) ---- */

enum seg_result
seg_import(struct seg *s, const struct seg_item_info *info, uint64_t hash, const void *value,
           size_t vlen)
{
    clock_update(s);
    if (too_large(s, info->klen, vlen)) {
        s->st.store_too_large++;
        return SEG_TOO_LARGE;
    }
    if (expired(s, info->expire)) {
        return SEG_NOT_STORED;
    }
    struct put p = {
        .key = info->key,
        .klen = info->klen,
        .hash = hash,
        .flags = info->flags,
        .expire = info->expire,
        .a = value,
        .alen = vlen,
        .cas = info->cas, /* kept: a client's gets before the restart still matches */
        .state = info->state,
        .pin = -1,
        .slot = ht_find(s, info->key, info->klen, hash),
        .known = true,
    };
    return put_item(s, &p, NULL);
}

struct export_ctx {
    seg_export_fn fn;
    void *ctx;
};

static void
export_one(struct seg *s, uint32_t sid, uint32_t off, uint8_t *it, uint64_t hash, uint64_t *slot,
           void *ctx)
{
    struct export_ctx *x = ctx;
    const struct seg_hdr *h = hdr(s, sid);
    (void)slot;
    if (!it_valid(s, h, it)) {
        return;
    }
    const struct seg_item_info info = {
        .key = (const char *)it_key(it),
        .klen = it[0],
        .expire = it_expire(h, it),
        .written = h->opened,
        .cas = it_cas(s, make_loc(s, sid, off), it),
        .flags = it_flags(it),
        .size = it_size(it),
        .bucket = h->bucket,
        .state = it[1] & IT_STATE,
    };
    x->fn(x->ctx, &info, hash, it_val(it), it_vlen(it));
}

void
seg_export_seg(struct seg *s, uint32_t sid, seg_export_fn fn, void *ctx)
{
    struct export_ctx x = {fn, ctx};
    seg_walk(s, sid, export_one, &x);
}
