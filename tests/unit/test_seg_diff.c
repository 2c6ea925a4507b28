/*
 * Randomized differential test of the seg engine against a plain reference model.
 *
 * Random operations with random TTLs, flushes and a moving clock run against both. With eviction
 * off every answer must match the model, except where the model itself allows a choice: an item
 * with a TTL of 32 s or more may expire up to seg_ttl_slack() seconds early. With eviction on a
 * key may also vanish at any time, but every hit must return the right value, flags, CAS and
 * remaining TTL, and no item may outlive its exptime.
 * CAS values of new versions must never repeat; touch and relocation must keep them.
 *
 * SEG_DIFF_OPS (environment) sets the number of operations of the eviction-off run (default
 * 1,000,000; each eviction-on run does a fifth of it).
 */
#include "petrel/seg.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NKEYS   800
#define VAL_MAX 4000
#define T0      1700000000

struct entry {
    bool present;
    uint32_t flags;
    int64_t e_hi; /* 0 = never; else the item must be gone at e_hi */
    int64_t e_lo; /* the item must be present before e_lo */
    uint64_t cas; /* 0 = not known yet */
    size_t len;
    uint8_t val[VAL_MAX];
};

struct model {
    struct entry e[NKEYS];
    char keys[NKEYS][251];
    size_t klen[NKEYS];
    uint64_t hash[NKEYS];
    int64_t now;
    int64_t flush_at;
    bool evicting;
    uint64_t rng;
    /* every CAS handed to a new version, open addressing */
    uint64_t *cas_set;
    size_t cas_cap;
    size_t cas_n;
};

static int64_t
model_clock(void *ctx)
{
    return ((struct model *)ctx)->now;
}

static uint64_t
rnd(struct model *m)
{
    m->rng ^= m->rng << 13;
    m->rng ^= m->rng >> 7;
    m->rng ^= m->rng << 17;
    return m->rng;
}

static uint64_t
below(struct model *m, uint64_t n)
{
    return rnd(m) % n;
}

static void
cas_remember(struct model *m, uint64_t cas)
{
    cr_assert_neq(cas, 0);
    if (m->cas_n * 2 >= m->cas_cap) {
        size_t old_cap = m->cas_cap;
        uint64_t *old = m->cas_set;
        m->cas_cap = old_cap ? old_cap * 2 : 1 << 16;
        m->cas_set = calloc(m->cas_cap, sizeof(uint64_t));
        m->cas_n = 0;
        for (size_t i = 0; i < old_cap; i++) {
            if (old[i] != 0) {
                cas_remember(m, old[i]);
            }
        }
        free(old);
    }
    size_t i = (cas * 0x9e3779b97f4a7c15ull) & (m->cas_cap - 1);
    while (m->cas_set[i] != 0) {
        cr_assert_neq(m->cas_set[i], cas, "CAS %llu handed out twice", (unsigned long long)cas);
        i = (i + 1) & (m->cas_cap - 1);
    }
    m->cas_set[i] = cas;
    m->cas_n++;
}

/* ---- the model's view of a key ---- */

enum state { ABSENT, PRESENT, EITHER };

static void
apply_flush_if_due(struct model *m)
{
    if (m->flush_at != 0 && m->now >= m->flush_at) {
        for (int i = 0; i < NKEYS; i++) {
            m->e[i].present = false;
        }
        m->flush_at = 0;
    }
}

static enum state
state_of(struct model *m, int k)
{
    struct entry *e = &m->e[k];
    if (!e->present) {
        return ABSENT;
    }
    if (e->e_hi != 0 && m->now >= e->e_hi) {
        e->present = false;
        return ABSENT;
    }
    if (m->evicting || (e->e_hi != 0 && m->now >= e->e_lo)) {
        return EITHER;
    }
    return PRESENT;
}

static void
set_expiry(struct model *m, struct entry *e, int64_t expire)
{
    e->e_hi = expire;
    e->e_lo = expire == 0 ? 0 : expire - seg_ttl_slack((uint32_t)(expire - m->now));
}

/* A rewrite that keeps the expiry (append, incr) may land in a segment expiring a bit earlier. */
static void
keep_expiry(struct model *m, struct entry *e)
{
    if (e->e_hi != 0) {
        e->e_lo -= seg_ttl_slack((uint32_t)(e->e_hi - m->now));
    }
}

static bool
numeric(const uint8_t *p, size_t len, uint64_t *out)
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

/* ---- random inputs ---- */

/* An absolute expiry (0: never), as the engine takes it; some already past. */
static int64_t
random_expire(struct model *m)
{
    uint64_t r = below(m, 100);
    if (r < 40) {
        return 0;
    }
    if (r < 70) {
        return m->now + 1 + (int64_t)below(m, 31);
    }
    if (r < 85) {
        return m->now + 32 + (int64_t)below(m, 5000);
    }
    if (r < 88) {
        return -1 - (int64_t)below(m, 5);
    }
    if (r < 94) {
        return m->now + 1 + (int64_t)below(m, 3000);
    }
    if (r < 97) {
        return m->now - (int64_t)below(m, 1000); /* past */
    }
    return m->now + 2592000 - (int64_t)below(m, 10); /* 30 days */
}

static size_t
random_value(struct model *m, uint8_t *buf)
{
    uint64_t r = below(m, 10);
    if (r < 3) {
        /* numbers for incr/decr, sometimes near the top */
        uint64_t v = r == 0 ? UINT64_MAX - below(m, 5) : below(m, 100000);
        return (size_t)snprintf((char *)buf, 24, "%llu", (unsigned long long)v);
    }
    size_t len = r == 9 ? below(m, 2000) : below(m, 120);
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)rnd(m);
    }
    return len;
}

/* ---- operations ---- */

static void
check_get(struct seg *s, struct model *m, int k)
{
    struct entry *e = &m->e[k];
    enum state want = state_of(m, k);
    struct seg_view v;
    enum seg_result r = seg_get(s, m->keys[k], m->klen[k], m->hash[k], &v);
    if (r == SEG_NOT_FOUND) {
        cr_assert_neq(want, PRESENT, "key %d: miss, model has it (now %lld, e %lld..%lld)", k,
                      (long long)m->now, (long long)e->e_lo, (long long)e->e_hi);
        e->present = false;
        return;
    }
    cr_assert_eq(r, SEG_OK);
    cr_assert_neq(want, ABSENT, "key %d: hit, model has no value", k);
    cr_assert_eq(v.vlen, e->len, "key %d: length %zu, want %zu", k, v.vlen, e->len);
    cr_assert(memcmp(v.value, e->val, e->len) == 0, "key %d: wrong value", k);
    cr_assert_eq(v.flags, e->flags);
    if (e->cas != 0) {
        cr_assert_eq(v.cas, e->cas, "key %d: CAS changed without a change", k);
    }
    e->cas = v.cas;
    if (e->e_hi == 0) {
        cr_assert_eq(v.ttl, -1);
    } else {
        /* Never late, early at most by the slack; a merge keeps the expiry too. */
        cr_assert_leq(m->now + v.ttl, e->e_hi);
        cr_assert_geq(m->now + v.ttl, e->e_lo);
    }
}

/* The expected reply of a store for a key that is (p) or is not present. */
static enum seg_result
store_expect(const struct seg_store_req *r, bool p, bool cas_match)
{
    switch (r->mode) {
    case SEG_ADD:
        return p ? SEG_NOT_STORED : SEG_STORED;
    case SEG_REPLACE:
    case SEG_APPEND:
    case SEG_PREPEND:
        return p ? SEG_STORED : SEG_NOT_STORED;
    case SEG_CAS:
        return !p ? SEG_NOT_FOUND : (cas_match ? SEG_STORED : SEG_EXISTS);
    default:
        return SEG_STORED;
    }
}

static enum seg_result
do_store(struct seg *s, struct model *m, const struct seg_store_req *r, uint64_t *cas)
{
    if (r->mode == SEG_APPEND || r->mode == SEG_PREPEND || below(m, 10) != 0) {
        return seg_store(s, r, cas);
    }
    /* Some sets go through reserve/commit. */
    struct seg_reservation res;
    enum seg_result rr = seg_reserve(s, r, &res);
    if (rr != SEG_OK) {
        return rr;
    }
    memcpy(res.value, r->value, r->vlen);
    return seg_commit(s, &res, cas);
}

static void
op_store(struct seg *s, struct model *m, int k, enum seg_store_mode mode)
{
    struct entry *e = &m->e[k];
    uint8_t buf[VAL_MAX];
    size_t len = random_value(m, buf);
    bool concat = mode == SEG_APPEND || mode == SEG_PREPEND;
    if (concat && e->present && e->len + len > VAL_MAX - 100) {
        mode = SEG_SET; /* keep values inside the item limit */
        concat = false;
    }
    enum state was = state_of(m, k);
    bool cas_match = mode == SEG_CAS && e->cas != 0 && below(m, 4) != 0;
    struct seg_store_req r = {
        .mode = mode,
        .key = m->keys[k],
        .klen = m->klen[k],
        .hash = m->hash[k],
        .value = buf,
        .vlen = len,
        .flags = below(m, 2) ? (uint32_t)rnd(m) : 0,
        .expire = random_expire(m),
        .cas = mode == SEG_CAS ? (cas_match ? e->cas : rnd(m) | 1) : 0,
    };
    uint64_t cas = 0;
    enum seg_result got = do_store(s, m, &r, &cas);
    enum seg_result if_present = store_expect(&r, true, cas_match);
    enum seg_result if_absent = store_expect(&r, false, cas_match);
    bool p;
    if (was == EITHER && got == if_absent && got != if_present) {
        p = false;
    } else {
        p = was != ABSENT;
        cr_assert_eq(got, p ? if_present : if_absent, "key %d mode %d: got %s", k, mode,
                     seg_result_name(got));
    }
    if (got != SEG_STORED) {
        if (!p) {
            e->present = false;
        }
        return;
    }
    int64_t expire = r.expire;
    if (concat) {
        uint8_t tmp[VAL_MAX];
        memcpy(tmp, e->val, e->len);
        if (mode == SEG_APPEND) {
            memcpy(e->val + e->len, buf, len);
        } else {
            memcpy(e->val, buf, len);
            memcpy(e->val + len, tmp, e->len);
        }
        e->len += len;
        keep_expiry(m, e);
    } else if (expire != 0 && expire <= m->now) {
        e->present = false;
        return;
    } else {
        memcpy(e->val, buf, len);
        e->len = len;
        e->flags = r.flags;
        set_expiry(m, e, expire);
    }
    e->present = true;
    cas_remember(m, cas);
    e->cas = cas;
}

static void
op_incr(struct seg *s, struct model *m, int k)
{
    struct entry *e = &m->e[k];
    enum state was = state_of(m, k);
    bool decr = below(m, 2);
    uint64_t delta = below(m, 4) ? below(m, 100) : rnd(m);
    uint64_t v = 0, cas = 0;
    enum seg_result got = seg_incr(s, m->keys[k], m->klen[k], m->hash[k], delta, decr, &v, &cas);
    if (got == SEG_NOT_FOUND) {
        cr_assert_neq(was, PRESENT, "key %d: incr NOT_FOUND, model has it", k);
        e->present = false;
        return;
    }
    cr_assert_neq(was, ABSENT);
    uint64_t old;
    if (!numeric(e->val, e->len, &old)) {
        cr_assert_eq(got, SEG_NON_NUMERIC, "key %d", k);
        return;
    }
    cr_assert_eq(got, SEG_OK);
    uint64_t want = decr ? (old > delta ? old - delta : 0) : old + delta;
    cr_assert_eq(v, want);
    e->len = (size_t)snprintf((char *)e->val, 24, "%llu", (unsigned long long)want);
    keep_expiry(m, e);
    cas_remember(m, cas);
    e->cas = cas;
}

static void
op_delete(struct seg *s, struct model *m, int k)
{
    enum state was = state_of(m, k);
    enum seg_result got = seg_delete(s, m->keys[k], m->klen[k], m->hash[k]);
    if (was == PRESENT) {
        cr_assert_eq(got, SEG_DELETED);
    } else if (was == ABSENT) {
        cr_assert_eq(got, SEG_NOT_FOUND);
    }
    m->e[k].present = false;
}

static void
op_touch(struct seg *s, struct model *m, int k)
{
    struct entry *e = &m->e[k];
    enum state was = state_of(m, k);
    int64_t expire = random_expire(m);
    enum seg_result got = seg_touch(s, m->keys[k], m->klen[k], m->hash[k], expire);
    if (got == SEG_NOT_FOUND) {
        cr_assert_neq(was, PRESENT, "key %d: touch NOT_FOUND, model has it", k);
        e->present = false;
        return;
    }
    cr_assert_eq(got, SEG_TOUCHED);
    cr_assert_neq(was, ABSENT);
    if (expire != 0 && expire <= m->now) {
        e->present = false;
    } else {
        set_expiry(m, e, expire);
    }
}

static void
step(struct seg *s, struct model *m)
{
    uint64_t r = below(m, 1000);
    if (r < 50) {
        m->now += 1 + (int64_t)below(m, 2);
    } else if (r < 51) {
        m->now += 100 + (int64_t)below(m, 5000);
    }
    apply_flush_if_due(m);
    int k = (int)below(m, NKEYS);
    r = below(m, 1000);
    if (r < 350) {
        check_get(s, m, k);
    } else if (r < 550) {
        op_store(s, m, k, SEG_SET);
    } else if (r < 600) {
        op_store(s, m, k, SEG_ADD);
    } else if (r < 650) {
        op_store(s, m, k, SEG_REPLACE);
    } else if (r < 700) {
        op_store(s, m, k, SEG_APPEND);
    } else if (r < 750) {
        op_store(s, m, k, SEG_PREPEND);
    } else if (r < 800) {
        op_store(s, m, k, SEG_CAS);
    } else if (r < 870) {
        op_incr(s, m, k);
    } else if (r < 920) {
        op_delete(s, m, k);
    } else if (r < 990) {
        op_touch(s, m, k);
    } else if (r < 998) {
        seg_tick(s);
    } else if (below(m, 20) == 0) {
        /* flush_all, now or delayed */
        int64_t when = below(m, 2) ? 0 : m->now + 1 + (int64_t)below(m, 20);
        seg_flush(s, when);
        m->flush_at = when;
        if (when == 0) {
            m->flush_at = 0;
            for (int i = 0; i < NKEYS; i++) {
                m->e[i].present = false;
            }
        }
    }
}

static long
ops_from_env(void)
{
    const char *v = getenv("SEG_DIFF_OPS");
    long n = v != NULL ? atol(v) : 0;
    return n > 0 ? n : 1000000;
}

static void
run(enum seg_evict_policy policy, size_t mem, long nops, uint64_t seed, size_t hint)
{
    struct model *m = calloc(1, sizeof(*m));
    m->now = T0;
    m->rng = seed;
    m->evicting = policy != SEG_EVICT_NONE;
    for (int i = 0; i < NKEYS; i++) {
        int n = snprintf(m->keys[i], sizeof(m->keys[i]), "key:%d:", i);
        size_t len = i % 50 == 0 ? 250 : (size_t)n + (size_t)(i % 13);
        memset(m->keys[i] + n, 'x', len - (size_t)n);
        m->keys[i][len] = 0;
        m->klen[i] = len;
        m->hash[i] = seg_hash(m->keys[i], len);
    }
    struct seg_options o;
    seg_options_init(&o);
    o.mem_bytes = mem;
    o.seg_size = 4096;
    o.item_max = 4096;
    o.evict = policy;
    o.item_bytes_hint = hint;
    o.ht_start_buckets = 64; /* a run with many keys grows the table as it goes */
    o.clock = model_clock;
    o.clock_ctx = m;
    struct seg *s = NULL;
    cr_assert_eq(seg_create(&s, &o), 0);
    for (long i = 0; i < nops; i++) {
        step(s, m);
    }
    /* A final full check with everything still in the model. */
    for (int k = 0; k < NKEYS; k++) {
        check_get(s, m, k);
    }
    struct seg_stats st;
    seg_stats_get(s, &st);
    cr_assert_leq(st.bytes, st.heap_bytes);
    if (!m->evicting) {
        cr_assert_eq(st.store_no_memory, 0);
        cr_assert_eq(st.evicted_items, 0);
    } else {
        cr_assert_gt(st.evicted_items, 0, "the eviction run never evicted");
    }
    seg_destroy(&s);
    free(m->cas_set);
    free(m);
}

Test(seg_diff, every_answer_matches_the_model_without_eviction, .timeout = 120)
{
    run(SEG_EVICT_NONE, 64 << 20, ops_from_env(), 0x1234567, 0);
}

Test(seg_diff, hits_are_right_under_merge_eviction, .timeout = 120)
{
    run(SEG_EVICT_MERGE, 192 << 10, ops_from_env() / 5, 0x7654321, 0);
}

Test(seg_diff, hits_are_right_under_fifo_eviction, .timeout = 120)
{
    run(SEG_EVICT_FIFO, 192 << 10, ops_from_env() / 5, 0xabcdef1, 0);
}

Test(seg_diff, hits_are_right_under_random_eviction, .timeout = 120)
{
    run(SEG_EVICT_RANDOM, 192 << 10, ops_from_env() / 5, 0x1357913, 0);
}

Test(seg_diff, hits_are_right_under_cte_eviction, .timeout = 120)
{
    run(SEG_EVICT_CTE, 192 << 10, ops_from_env() / 5, 0x2468024, 0);
}

Test(seg_diff, hits_are_right_under_util_eviction, .timeout = 120)
{
    run(SEG_EVICT_UTIL, 192 << 10, ops_from_env() / 5, 0x9999991, 0);
}

/* A 64-bucket table: long overflow chains and many equal tags in one chain. */
Test(seg_diff, hits_are_right_with_a_crowded_hash_table, .timeout = 120)
{
    run(SEG_EVICT_MERGE, 192 << 10, ops_from_env() / 5, 0x5555555, 1 << 20);
}
