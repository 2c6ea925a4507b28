/*
 * mc_exec: memcached request semantics on one Segcache shard. Contract in
 * include/petrel/mc_exec.h; the reply rules, and what the engine cannot answer, are in
 * docs/protocol.md ("Command semantics").
 *
 * Everything here runs on the shard's owner thread, so a lookup followed by a change (compare a
 * CAS, then delete) is atomic without locks: nothing else touches the shard in between.
 *
 * Counters follow memcached 1.6: a get-family hit counts cmd_get and get_hits, but a hit that
 * also touches (gat, gats, mg with T) counts cmd_touch and touch_hits instead; a miss of gat
 * counts touch_misses, while a miss of mg counts get_misses even with T.
 */
#include "petrel/mc_exec.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

/*
 * me reports no slab class: Segcache has none (items of every size share segments), so every
 * item is in the one class 1.
 */
#define ME_CLASS 1

static int
put_lit(struct buf *out, const char *s, size_t len)
{
    return buf_append(out, s, len);
}

#define PUT_LIT(out, s) put_lit(out, s, sizeof(s) - 1)

static bool
has_flag(const struct mc_req *req, char f)
{
    return (req->meta.seen & MC_MF(f)) != 0;
}

/* True when flag a comes before flag b on the request line (both given). */
static bool
flag_before(const struct mc_req *req, char a, char b)
{
    for (unsigned i = 0; i < req->meta.nflags; i++) {
        if (req->meta.order[i] == a) {
            return true;
        }
        if (req->meta.order[i] == b) {
            return false;
        }
    }
    return false;
}

/*
 * memcached's exptime as the engine's absolute expiry. The clock is read only for a relative
 * exptime: sets without one (the common case) pay nothing for it.
 */
static int64_t
expire_of(struct seg *s, int64_t exptime)
{
    bool relative = exptime > 0 && exptime <= MC_EXPTIME_REL_MAX;
    return mc_exptime_abs(exptime, relative ? seg_clock(s) : 0);
}

/*
 * Seconds an item given this memcached exptime has left, as the t flag shows it: -1 for
 * never, 0 when already expired.
 */
static int32_t
ttl_of_exptime(int64_t exptime, int64_t now)
{
    int64_t abs = mc_exptime_abs(exptime, now);
    if (abs == 0) {
        return -1;
    }
    if (abs <= now) {
        return 0;
    }
    return abs - now > INT32_MAX ? INT32_MAX : (int32_t)(abs - now);
}

/* The engine counts expired finds in seg_get; mirror its count after a miss. */
static void
sync_expired(struct mc_shard *sh)
{
    struct seg_stats st;
    seg_stats_get(sh->seg, &st);
    sh->stats.get_expired = st.get_expired;
}

/* ---- text storage commands ---- */

static enum seg_store_mode
store_mode(enum mc_cmd cmd)
{
    switch (cmd) {
    case MC_CMD_ADD:
        return SEG_ADD;
    case MC_CMD_REPLACE:
        return SEG_REPLACE;
    case MC_CMD_APPEND:
        return SEG_APPEND;
    case MC_CMD_PREPEND:
        return SEG_PREPEND;
    case MC_CMD_CAS:
        return SEG_CAS;
    default:
        return SEG_SET;
    }
}

/* A store's compared item is the one the engine found (seg_last_bucket), unless given. */
#define FOUND_BY_ENGINE SIZE_MAX

/*
 * Count a store as memcached does: cmd_set for every command that got as far as having room
 * for its value (not for too-large or out-of-memory), cas_* for compare-and-swap stores.
 * An append whose result outgrows the item limit did get room for its own data, so it counts.
 * Per class, cmd_set counts in the TTL bucket of the request's expiry (memcached: the class of
 * the item allocated for the request, stored or not; an append's, the item's), cas_hits and
 * cas_badval in the bucket of the item compared (found: its bucket, or FOUND_BY_ENGINE). Called
 * right after the store.
 */
static void
count_store(struct mc_shard *sh, const struct seg_store_req *r, enum seg_result res, size_t found)
{
    struct mc_stats *st = &sh->stats;
    bool concat = r->mode == SEG_APPEND || r->mode == SEG_PREPEND;
    if (res == SEG_NO_MEMORY || (res == SEG_TOO_LARGE && !concat)) {
        return;
    }
    st->cmd_set++;
    /* An append or prepend that found its item keeps the item's expiry, not the request's. */
    bool kept = concat && (res == SEG_STORED || res == SEG_TOO_LARGE);
    sh->classes[kept ? seg_last_bucket(sh->seg) : seg_ttl_bucket_of(sh->seg, r->expire)].cmd_set++;
    if (r->mode != SEG_CAS) {
        return;
    }
    if (res == SEG_STORED || res == SEG_EXISTS) {
        found = found != FOUND_BY_ENGINE ? found : seg_last_bucket(sh->seg);
    }
    if (res == SEG_STORED) {
        st->cas_hits++;
        sh->classes[found].cas_hits++;
    } else if (res == SEG_EXISTS) {
        st->cas_badval++;
        sh->classes[found].cas_badval++;
    } else if (res == SEG_NOT_FOUND) {
        st->cas_misses++;
    }
}

/*
 * memcached refuses an append or prepend whose result would exceed the item limit with
 * NOT_STORED and keeps the old value; the engine reports that as too large.
 */
static enum seg_result
concat_overflow(enum seg_store_mode mode, enum seg_result res)
{
    if (res == SEG_TOO_LARGE && (mode == SEG_APPEND || mode == SEG_PREPEND)) {
        return SEG_NOT_STORED;
    }
    return res;
}

static int
text_store_reply(struct buf *out, enum seg_result res)
{
    switch (res) {
    case SEG_STORED:
        return mc_compose_reply(out, MC_R_STORED);
    case SEG_NOT_STORED:
        return mc_compose_reply(out, MC_R_NOT_STORED);
    case SEG_EXISTS:
        return mc_compose_reply(out, MC_R_EXISTS);
    case SEG_NOT_FOUND:
        return mc_compose_reply(out, MC_R_NOT_FOUND);
    case SEG_TOO_LARGE:
        return mc_compose_reply(out, MC_R_TOO_LARGE);
    default:
        return mc_compose_reply(out, MC_R_OUT_OF_MEMORY);
    }
}

/* The CAS a client sees: 0 with --disable-cas (memcached's -C), whose items have none. */
static uint64_t
shown_cas(const struct mc_shard *sh, uint64_t cas)
{
    return sh->cas_disabled ? 0 : cas;
}

/*
 * A compare-and-swap store with --disable-cas: memcached -C compares with an item that has no
 * CAS, which never matches, so the answer is EXISTS (*found: the item's TTL bucket), or
 * NOT_FOUND without the key. Nothing is stored. (The engine still keeps its internal version
 * of each item: only what is shown and compared is 0.)
 */
static enum seg_result
cas_disabled_store(struct mc_shard *sh, const struct seg_store_req *r, size_t *found)
{
    struct seg_view v;
    if (seg_peek(sh->seg, r->key, r->klen, r->hash, &v) != SEG_OK) {
        return SEG_NOT_FOUND;
    }
    *found = v.bucket;
    return SEG_EXISTS;
}

static int
exec_store(struct mc_shard *sh, const struct mc_req *req, uint64_t hash, struct buf *out)
{
    struct seg_store_req r = {
        .mode = store_mode(req->cmd),
        .key = req->key,
        .klen = req->klen,
        .hash = hash,
        .value = req->val,
        .vlen = req->vlen,
        .flags = req->flags,
        .expire = expire_of(sh->seg, req->exptime),
        .cas = req->cmd == MC_CMD_CAS ? req->cas : 0,
    };
    size_t found = FOUND_BY_ENGINE;
    enum seg_result res = sh->cas_disabled && r.mode == SEG_CAS ? cas_disabled_store(sh, &r, &found)
                                                                : seg_store(sh->seg, &r, NULL);
    count_store(sh, &r, res, found);
    res = concat_overflow(r.mode, res);
    /* memcached's noreply silences every reply of a storage command, errors included. */
    return req->noreply ? 0 : text_store_reply(out, res);
}

/* ---- incr, decr, delete, touch ---- */

/* An incr or decr that changed the number of an item of this TTL bucket. */
static void
count_incr_hit(struct mc_shard *sh, bool decr, size_t bucket)
{
    if (decr) {
        sh->stats.decr_hits++;
        sh->classes[bucket].decr_hits++;
    } else {
        sh->stats.incr_hits++;
        sh->classes[bucket].incr_hits++;
    }
}

/* A delete (or md) that removed an item of this TTL bucket. */
static void
count_delete_hit(struct mc_shard *sh, size_t bucket)
{
    sh->stats.delete_hits++;
    sh->classes[bucket].delete_hits++;
}

static int
exec_incr(struct mc_shard *sh, const struct mc_req *req, uint64_t hash, struct buf *out)
{
    bool decr = req->cmd == MC_CMD_DECR;
    uint64_t v = 0;
    enum seg_result res = seg_incr(sh->seg, req->key, req->klen, hash, req->delta, decr, &v, NULL);
    if (res == SEG_OK) {
        count_incr_hit(sh, decr, seg_last_bucket(sh->seg));
    } else if (res == SEG_NOT_FOUND) {
        decr ? sh->stats.decr_misses++ : sh->stats.incr_misses++;
    }
    if (req->noreply) {
        return 0;
    }
    switch (res) {
    case SEG_OK:
        return mc_compose_u64(out, v);
    case SEG_NOT_FOUND:
        return mc_compose_reply(out, MC_R_NOT_FOUND);
    case SEG_NON_NUMERIC:
        return mc_compose_reply(out, MC_R_NON_NUMERIC);
    default:
        return mc_compose_reply(out, MC_R_OOM);
    }
}

static int
exec_delete(struct mc_shard *sh, const struct mc_req *req, uint64_t hash, struct buf *out)
{
    enum seg_result res = seg_delete(sh->seg, req->key, req->klen, hash);
    bool hit = res == SEG_DELETED;
    if (hit) {
        count_delete_hit(sh, seg_last_bucket(sh->seg));
    } else {
        sh->stats.delete_misses++;
    }
    if (req->noreply) {
        return 0;
    }
    return mc_compose_reply(out, hit ? MC_R_DELETED : MC_R_NOT_FOUND);
}

static int
exec_touch(struct mc_shard *sh, const struct mc_req *req, uint64_t hash, struct buf *out)
{
    enum seg_result res =
        seg_touch(sh->seg, req->key, req->klen, hash, expire_of(sh->seg, req->exptime));
    sh->stats.cmd_touch++;
    if (res == SEG_TOUCHED) {
        sh->stats.touch_hits++;
        sh->classes[seg_last_bucket(sh->seg)].touch_hits++; /* where it was before the touch */
    } else if (res == SEG_NOT_FOUND) {
        sh->stats.touch_misses++;
    }
    if (req->noreply) {
        return 0;
    }
    switch (res) {
    case SEG_TOUCHED:
        return mc_compose_reply(out, MC_R_TOUCHED);
    case SEG_NOT_FOUND:
        return mc_compose_reply(out, MC_R_NOT_FOUND);
    default:
        /* Moving the item to a segment of its new TTL found no room. */
        return mc_compose_reply(out, MC_R_OOM);
    }
}

/* ---- get, gets, gat, gats ---- */

/* A read (get, or gat when touch) that found an item of this TTL bucket. */
static void
count_read_hit(struct mc_shard *sh, bool touch, size_t bucket)
{
    if (touch) {
        sh->stats.cmd_touch++;
        sh->stats.touch_hits++;
        sh->classes[bucket].touch_hits++;
    } else {
        sh->stats.cmd_get++;
        sh->stats.get_hits++;
        sh->classes[bucket].get_hits++;
    }
}

/*
 * Read a key and give it a new exptime, as gat and mg T do: *view is the item after the touch
 * (but view->state and view->bucket as they were before: counters go to the class found),
 * *old_ttl its TTL before. An exptime already in the past still returns the item once
 * (memcached hands out the item it has just touched), so then the view is taken before the item
 * is dropped and *drop is set: the view stays valid only until the next engine call, so the
 * caller composes its reply first and calls drop_expired() after. Returns SEG_OK,
 * SEG_NOT_FOUND or SEG_NO_MEMORY.
 */
static enum seg_result
touch_and_get(struct seg *s, const void *key, size_t klen, uint64_t hash, int64_t exptime,
              struct seg_view *view, int32_t *old_ttl, bool *drop, bool peek)
{
    *drop = false;
    enum seg_result res =
        peek ? seg_peek(s, key, klen, hash, view) : seg_get(s, key, klen, hash, view);
    if (res != SEG_OK) {
        return res;
    }
    *old_ttl = (int32_t)view->ttl;
    int64_t now = seg_now(s); /* the get has just read the clock */
    int64_t expire = mc_exptime_abs(exptime, now);
    if (expire != 0 && expire <= now) {
        *drop = true;
        view->ttl = 0;
        return SEG_OK;
    }
    res = seg_touch(s, key, klen, hash, expire);
    if (res != SEG_TOUCHED) {
        return res;
    }
    /* The touch may have moved the item: read it again where it lives now (the state bits
     * and bucket as the first read found them). */
    uint8_t state = view->state;
    uint16_t bucket = view->bucket;
    res = seg_peek(s, key, klen, hash, view);
    view->state = state;
    view->bucket = bucket;
    return res;
}

static void
drop_expired(struct seg *s, const void *key, size_t klen, uint64_t hash, bool drop)
{
    if (drop) {
        seg_delete(s, key, klen, hash);
    }
}

/*
 * Look up one key of a get family request, touching it for gat/gats, and count it. *drop as
 * touch_and_get() sets it. SEG_OK (*v), SEG_NOT_FOUND or SEG_NO_MEMORY. Inlined into its two
 * callers: it is on the path of every get.
 */
static inline __attribute__((always_inline)) enum seg_result
get_lookup(struct mc_shard *sh, const struct mc_req *req, const char *key, size_t klen,
           uint64_t hash, struct seg_view *v, bool *drop)
{
    bool touch = req->cmd == MC_CMD_GAT || req->cmd == MC_CMD_GATS;
    int32_t old_ttl;
    *drop = false;
    enum seg_result res =
        touch ? touch_and_get(sh->seg, key, klen, hash, req->exptime, v, &old_ttl, drop, false)
              : seg_get(sh->seg, key, klen, hash, v);
    if (res == SEG_NO_MEMORY) {
        return res;
    }
    if (res == SEG_OK) {
        count_read_hit(sh, touch, v->bucket);
    } else if (touch) {
        sh->stats.cmd_touch++;
        sh->stats.touch_misses++;
    } else {
        sh->stats.cmd_get++;
        sh->stats.get_misses++;
    }
    if (res == SEG_NOT_FOUND) {
        sync_expired(sh);
    }
    return res;
}

static bool
get_with_cas(const struct mc_req *req)
{
    return req->cmd == MC_CMD_GETS || req->cmd == MC_CMD_GATS;
}

/* A hit's whole answer (VALUE line, value, "\r\n") into out; then a gat to a past exptime drops
 * the item. Inline: every get's path. */
static inline int
put_hit(struct mc_shard *sh, const struct mc_req *req, const char *key, size_t klen, uint64_t hash,
        const struct seg_view *v, bool drop, struct buf *out)
{
    int rc = mc_compose_value(out, key, klen, v->flags, v->value, (uint32_t)v->vlen,
                              shown_cas(sh, v->cas), get_with_cas(req));
    drop_expired(sh->seg, key, klen, hash, drop);
    return rc;
}

int
mc_exec_get_key(struct mc_shard *sh, const struct mc_req *req, const char *key, size_t klen,
                uint64_t hash, struct buf *out)
{
    struct seg_view v;
    bool drop;
    enum seg_result res = get_lookup(sh, req, key, klen, hash, &v, &drop);
    if (res == SEG_NO_MEMORY) {
        return mc_compose_reply(out, MC_R_OOM);
    }
    if (res == SEG_NOT_FOUND) {
        return 0;
    }
    return put_hit(sh, req, key, klen, hash, &v, drop, out);
}

/* Append a value and its "\r\n" after a header already in out. */
static int
put_value(struct buf *out, const char *value, size_t vlen)
{
    int rc = buf_reserve(out, vlen + 2);
    if (rc == 0) {
        memcpy(buf_wptr(out), value, vlen);
        memcpy(buf_wptr(out) + vlen, "\r\n", 2);
        buf_commit(out, vlen + 2);
    }
    return rc;
}

int
mc_exec_get_key_max(struct mc_shard *sh, const struct mc_req *req, const char *key, size_t klen,
                    uint64_t hash, size_t max, struct buf *out, struct mc_deferred *d)
{
    struct seg_view v;
    bool drop;
    enum seg_result res = get_lookup(sh, req, key, klen, hash, &v, &drop);
    if (res == SEG_NO_MEMORY) {
        return mc_compose_reply(out, MC_R_OOM);
    }
    if (res == SEG_NOT_FOUND) {
        return 0;
    }
    if (MC_VALUE_HDR_MAX(klen) + v.vlen + 2 <= max) {
        /* It fits whatever its header's length: composed in one pass, as mc_exec_get_key. */
        return put_hit(sh, req, key, klen, hash, &v, drop, out);
    }
    size_t mark = buf_len(out);
    int rc = mc_compose_value_hdr(out, key, klen, v.flags, (uint32_t)v.vlen, shown_cas(sh, v.cas),
                                  get_with_cas(req));
    size_t hdr = buf_len(out) - mark;
    bool fits = hdr + v.vlen + 2 <= max;
    if (rc == 0 && fits) {
        rc = put_value(out, v.value, v.vlen);
    } else if (rc == 0) {
        *d = (struct mc_deferred){
            .cas = v.cas, .vlen = (uint32_t)v.vlen, .hdr_len = (uint32_t)hdr, .miss_len = 0};
    }
    /* A gat to a past exptime drops the item now: its deferred value will be a miss. */
    drop_expired(sh->seg, key, klen, hash, drop);
    return rc < 0 ? rc : fits ? 0 : 1;
}

int
mc_exec_fetch(struct mc_shard *sh, const char *key, size_t klen, uint64_t hash,
              const struct mc_deferred *d, struct buf *out)
{
    struct seg_view v;
    if (seg_peek(sh->seg, key, klen, hash, &v) != SEG_OK || v.cas != d->cas || v.vlen != d->vlen) {
        return 0;
    }
    int rc = buf_append(out, v.value, v.vlen);
    return rc < 0 ? rc : 1;
}

/* ---- meta ---- */

/* The CAS an E flag asks for, or 0 (the engine picks one). */
static uint64_t
new_cas_of(const struct mc_req *req)
{
    return has_flag(req, 'E') ? req->meta.new_cas : 0;
}

/*
 * mg N on a miss: create an empty item (client flags 0) with N's TTL, and E's CAS if given,
 * then read it as mg would. Returns SEG_OK, or what failed.
 */
static enum seg_result
mg_vivify(struct seg *s, const struct mc_req *req, uint64_t hash, struct seg_view *v, bool peek)
{
    struct seg_store_req r = {
        .mode = SEG_ADD,
        .key = req->key,
        .klen = req->klen,
        .hash = hash,
        .value = "",
        .expire = expire_of(s, req->meta.vivify_ttl),
        .new_cas = new_cas_of(req),
    };
    enum seg_result res = seg_store(s, &r, NULL);
    if (res != SEG_STORED) {
        return res == SEG_NOT_STORED ? SEG_NOT_FOUND : res;
    }
    return peek ? seg_peek(s, req->key, req->klen, hash, v)
                : seg_get(s, req->key, req->klen, hash, v);
}

/*
 * Whether this mg wins the recache token, as memcached decides: it created the item (N); or
 * R is given, no token was handed out for this version, and the TTL where R stands on the
 * line (after a T before it) is below R's; or the item is stale and no token was handed out.
 */
static bool
mg_wins(const struct mc_req *req, const struct seg_view *v, bool created, int32_t old_ttl)
{
    bool sent = (v->state & SEG_ST_WIN) != 0;
    if (created) {
        return true;
    }
    if (has_flag(req, 'R') && !sent) {
        bool touched_first = has_flag(req, 'T') && flag_before(req, 'T', 'R');
        int64_t ttl = has_flag(req, 'T') && !touched_first ? old_ttl : v->ttl;
        if (ttl >= 0 && ttl < req->meta.recache_ttl) {
            return true;
        }
    }
    return (v->state & SEG_ST_STALE) && !sent;
}

/*
 * An mg hit's reply, its value left out when d is given and the whole reply would be longer
 * than max (see mc_exec_max). Returns 0, 1 (deferred) or a buf error.
 */
static int
mg_reply(const struct mc_req *req, enum mc_meta_code code, const struct mc_meta_item *it,
         const struct seg_view *v, size_t max, struct buf *out, struct mc_deferred *d)
{
    if (d == NULL || code != MC_META_VA) {
        return mc_compose_meta(out, req, code, it);
    }
    size_t mark = buf_len(out);
    int rc = mc_compose_meta_va_hdr(out, req, it);
    size_t hdr = buf_len(out) - mark;
    if (rc < 0) {
        return rc;
    }
    if (hdr + it->vlen + 2 <= max) {
        return put_value(out, it->value, it->vlen);
    }
    rc = mc_compose_meta(out, req, MC_META_EN, NULL);
    *d = (struct mc_deferred){.cas = v->cas,
                              .vlen = it->vlen,
                              .hdr_len = (uint32_t)hdr,
                              .miss_len = (uint32_t)(buf_len(out) - mark - hdr)};
    return rc < 0 ? rc : 1;
}

static int
exec_mg(struct mc_shard *sh, const struct mc_req *req, uint64_t hash, struct buf *out, size_t max,
        struct mc_deferred *d)
{
    struct seg *s = sh->seg;
    bool touch = has_flag(req, 'T');
    bool peek = has_flag(req, 'u'); /* memcached's u: the read does not mark the item */
    struct seg_view v;
    bool drop = false;
    int32_t old_ttl = -1;
    enum seg_result res;
    if (touch) {
        res = touch_and_get(s, req->key, req->klen, hash, req->meta.ttl, &v, &old_ttl, &drop, peek);
    } else {
        res = peek ? seg_peek(s, req->key, req->klen, hash, &v)
                   : seg_get(s, req->key, req->klen, hash, &v);
    }
    bool created = false;
    if (res == SEG_NOT_FOUND && has_flag(req, 'N')) {
        sync_expired(sh);
        res = mg_vivify(s, req, hash, &v, peek);
        created = res == SEG_OK;
        old_ttl = created ? (int32_t)v.ttl : -1;
    }
    if (res == SEG_NO_MEMORY) {
        return mc_compose_reply(out, MC_R_OOM);
    }
    if (res != SEG_OK) {
        sh->stats.cmd_get++;
        sh->stats.get_misses++;
        sync_expired(sh);
        return mc_compose_meta(out, req, MC_META_EN, NULL);
    }
    count_read_hit(sh, touch, v.bucket);
    bool won = mg_wins(req, &v, created, old_ttl);
    struct mc_meta_item it = {
        .value = has_flag(req, 'v') ? v.value : NULL,
        .vlen = (uint32_t)v.vlen,
        .cas = shown_cas(sh, v.cas),
        .flags = v.flags,
        .ttl = (int32_t)v.ttl,
        .la = v.age,
        .size = (uint32_t)v.vlen,
        .hit = (v.state & SEG_ST_FETCHED) != 0,
        .won = won,
        .stale = (v.state & SEG_ST_STALE) != 0,
        .win_sent = (v.state & SEG_ST_WIN) != 0,
    };
    if (touch && flag_before(req, 't', 'T')) {
        /* memcached answers t where it stands on the line: before T, the old TTL. */
        it.ttl = old_ttl;
    }
    /* C names the version the client holds: when it is current, memcached leaves the value out. */
    bool value = has_flag(req, 'v') &&
                 !(has_flag(req, 'C') && shown_cas(sh, v.cas) == req->meta.compare_cas);
    if (!value) {
        it.value = NULL;
    }
    int rc = mg_reply(req, value ? MC_META_VA : MC_META_HD, &it, &v, max, out, d);
    if (won && !drop) {
        /* After composing: the reply holds a view of the value. Only a header bit changes. */
        seg_mark(s, req->key, req->klen, hash, SEG_ST_WIN, 0);
    }
    drop_expired(s, req->key, req->klen, hash, drop);
    return rc;
}

static enum seg_store_mode
ms_mode(const struct mc_req *req)
{
    switch (req->meta.mode) {
    case 'E':
        return SEG_ADD;
    case 'A':
        return SEG_APPEND;
    case 'P':
        return SEG_PREPEND;
    case 'R':
        return SEG_REPLACE;
    default:
        return SEG_SET;
    }
}

static enum mc_meta_code
meta_code(enum seg_result res)
{
    switch (res) {
    case SEG_STORED:
        return MC_META_HD;
    case SEG_EXISTS:
        return MC_META_EX;
    case SEG_NOT_FOUND:
        return MC_META_NF;
    default:
        return MC_META_NS;
    }
}

/*
 * ms. A C token turns set and replace into compare-and-swap (add ignores it; append and
 * prepend compare only a non-zero CAS, which the engine does by itself). N makes append and
 * prepend create a missing item from the data, with N's TTL.
 */
static int
exec_ms(struct mc_shard *sh, const struct mc_req *req, uint64_t hash, struct buf *out)
{
    struct seg *s = sh->seg;
    struct seg_store_req r = {
        .mode = ms_mode(req),
        .key = req->key,
        .klen = req->klen,
        .hash = hash,
        .value = req->val,
        .vlen = req->vlen,
        .flags = req->meta.client_flags,
        .expire = expire_of(s, req->meta.ttl),
        .new_cas = new_cas_of(req),
        .invalidate = has_flag(req, 'I'),
    };
    bool concat = r.mode == SEG_APPEND || r.mode == SEG_PREPEND;
    if (has_flag(req, 'C')) {
        if (r.mode == SEG_SET || r.mode == SEG_REPLACE) {
            r.mode = SEG_CAS;
        }
        r.cas = r.mode == SEG_ADD || sh->cas_disabled ? 0 : req->meta.compare_cas;
    }
    uint64_t cas = 0;
    size_t found = FOUND_BY_ENGINE;
    enum seg_result res = sh->cas_disabled && r.mode == SEG_CAS ? cas_disabled_store(sh, &r, &found)
                                                                : seg_store(s, &r, &cas);
    if (res == SEG_NOT_STORED && concat && has_flag(req, 'N')) {
        r.mode = SEG_ADD;
        r.cas = 0;
        r.expire = expire_of(s, req->meta.vivify_ttl);
        res = seg_store(s, &r, &cas);
    }
    count_store(sh, &r, res, found);
    res = concat_overflow(r.mode, res);
    if (res == SEG_TOO_LARGE || res == SEG_NO_MEMORY) {
        /* memcached drops the old value whenever ms cannot get room, whatever the mode. */
        seg_delete(s, req->key, req->klen, hash);
        return mc_compose_reply(out, res == SEG_TOO_LARGE ? MC_R_TOO_LARGE : MC_R_OUT_OF_MEMORY);
    }
    /* Like memcached, c and s answer on every code: c0 and the sent size when not stored. */
    struct mc_meta_item it = {.cas = res == SEG_STORED ? shown_cas(sh, cas) : 0, .size = req->vlen};
    struct seg_view v;
    if (res == SEG_STORED && concat && has_flag(req, 's') &&
        seg_peek(s, req->key, req->klen, hash, &v) == SEG_OK) {
        it.size = (uint32_t)v.vlen; /* the size after appending */
    }
    return mc_compose_meta(out, req, meta_code(res), &it);
}

/*
 * md x: replace the item by an empty one with F's client flags (0 without F), T's TTL (none
 * without T) and E's CAS (the old item's without E), as memcached 1.6.45 does.
 */
static enum seg_result
md_tombstone(struct seg *s, const struct mc_req *req, uint64_t hash, uint64_t old_cas)
{
    struct seg_store_req r = {
        .mode = SEG_SET,
        .key = req->key,
        .klen = req->klen,
        .hash = hash,
        .value = "",
        .flags = req->meta.client_flags,
        .expire = has_flag(req, 'T') ? expire_of(s, req->meta.ttl) : 0,
        .new_cas = has_flag(req, 'E') ? req->meta.new_cas : old_cas,
    };
    enum seg_result res = seg_store(s, &r, NULL);
    return res == SEG_STORED ? SEG_OK : SEG_NO_MEMORY;
}

/*
 * md. C compares the CAS first. x replaces the item by an empty one (md_tombstone); I then
 * keeps the item (the tombstone, with x), marked stale, with a new CAS (E's if given) and T's
 * TTL if given. Without I, md counts a delete hit.
 */
static int
exec_md(struct mc_shard *sh, const struct mc_req *req, uint64_t hash, struct buf *out)
{
    struct seg *s = sh->seg;
    struct seg_view v;
    if (seg_peek(s, req->key, req->klen, hash, &v) != SEG_OK) {
        sh->stats.delete_misses++;
        return mc_compose_meta(out, req, MC_META_NF, NULL);
    }
    if (has_flag(req, 'C') && shown_cas(sh, v.cas) != req->meta.compare_cas) {
        sh->stats.delete_misses++;
        return mc_compose_meta(out, req, MC_META_EX, NULL);
    }
    enum seg_result res = SEG_OK;
    if (has_flag(req, 'x')) {
        res = md_tombstone(s, req, hash, v.cas);
    }
    if (res == SEG_OK && has_flag(req, 'I')) {
        bool ttl = has_flag(req, 'T');
        res = seg_invalidate(s, req->key, req->klen, hash, ttl,
                             ttl ? expire_of(s, req->meta.ttl) : 0, new_cas_of(req), NULL);
    } else if (res == SEG_OK && !has_flag(req, 'x')) {
        res = seg_delete(s, req->key, req->klen, hash) == SEG_DELETED ? SEG_OK : SEG_NOT_FOUND;
    }
    if (res == SEG_NO_MEMORY) {
        return mc_compose_reply(out, MC_R_OOM);
    }
    if (res != SEG_OK) {
        sh->stats.delete_misses++;
        return mc_compose_meta(out, req, MC_META_NF, NULL);
    }
    if (!has_flag(req, 'I')) {
        count_delete_hit(sh, v.bucket);
    }
    return mc_compose_meta(out, req, MC_META_HD, NULL);
}

/*
 * The TTL changes of ma, taken in line order as memcached does: T sets the TTL, N sets it on
 * an item just created, and t reports the TTL as it stands at its place on the line.
 */
struct ma_ttl {
    bool changed;    /* the item needs exptime below */
    bool t_final;    /* t stands after the last change: read the TTL the engine gave */
    int64_t exptime; /* memcached exptime to apply */
    int32_t shown;   /* what t reports otherwise */
};

static void
ma_walk_ttl(const struct mc_req *req, bool created, int32_t ttl, int64_t now, struct ma_ttl *o)
{
    *o = (struct ma_ttl){.shown = ttl};
    for (unsigned i = 0; i < req->meta.nflags; i++) {
        char f = req->meta.order[i];
        if (f == 'T' || (f == 'N' && created)) {
            o->changed = true;
            o->t_final = false;
            o->exptime = f == 'T' ? req->meta.ttl : req->meta.vivify_ttl;
            ttl = ttl_of_exptime(o->exptime, now);
        } else if (f == 't') {
            o->shown = ttl;
            o->t_final = o->changed;
        }
    }
}

/* ma on a missing key with N: create it from J (default 0) with the TTL the line gives. */
static enum seg_result
ma_vivify(struct seg *s, const struct mc_req *req, uint64_t hash, struct ma_ttl *tt, uint64_t *cas)
{
    char num[24];
    ma_walk_ttl(req, true, -1, seg_now(s), tt);
    struct seg_store_req r = {
        .mode = SEG_ADD,
        .key = req->key,
        .klen = req->klen,
        .hash = hash,
        .value = num,
        .vlen = mc_u64toa(req->meta.initial, num),
        .expire = expire_of(s, tt->exptime),
        .new_cas = new_cas_of(req),
    };
    return seg_store(s, &r, cas) == SEG_STORED ? SEG_OK : SEG_NO_MEMORY;
}

static int
exec_ma(struct mc_shard *sh, const struct mc_req *req, uint64_t hash, struct buf *out)
{
    struct seg *s = sh->seg;
    bool decr = req->meta.mode == 'D' || req->meta.mode == '-';
    struct seg_view v;
    int32_t ttl = -1;
    bool found = true;
    if (has_flag(req, 'C') || has_flag(req, 't')) {
        /* The engine's incr neither compares a CAS nor reports the TTL: look first. */
        found = seg_peek(s, req->key, req->klen, hash, &v) == SEG_OK;
        /* Unlike md and ms, ma takes C0 as "no compare", as memcached does. */
        uint64_t want = req->meta.compare_cas;
        if (found && has_flag(req, 'C') && want != 0 && shown_cas(sh, v.cas) != want) {
            return mc_compose_meta(out, req, MC_META_EX, NULL);
        }
        ttl = found ? (int32_t)v.ttl : -1;
    }
    uint64_t value = 0, cas = 0;
    enum seg_result res = SEG_NOT_FOUND;
    if (found) {
        res = seg_incr_cas(s, req->key, req->klen, hash, req->meta.delta, decr, new_cas_of(req),
                           &value, &cas);
    }
    struct ma_ttl tt = {.shown = ttl};
    if (res == SEG_NOT_FOUND && has_flag(req, 'N')) {
        if (ma_vivify(s, req, hash, &tt, &cas) != SEG_OK) {
            return PUT_LIT(out, "SERVER_ERROR Out of memory allocating new item\r\n");
        }
        value = req->meta.initial;
    } else if (res == SEG_OK) {
        count_incr_hit(sh, decr, seg_last_bucket(s));
        ma_walk_ttl(req, false, ttl, seg_now(s), &tt);
        if (tt.changed &&
            seg_touch(s, req->key, req->klen, hash, expire_of(s, tt.exptime)) == SEG_NO_MEMORY) {
            return mc_compose_reply(out, MC_R_OOM);
        }
    } else if (res == SEG_NOT_FOUND) {
        decr ? sh->stats.decr_misses++ : sh->stats.incr_misses++;
        return mc_compose_meta(out, req, MC_META_NF, NULL);
    } else {
        return mc_compose_reply(out, res == SEG_NON_NUMERIC ? MC_R_NON_NUMERIC : MC_R_OOM);
    }
    if (tt.t_final) {
        /* Long TTLs share a segment's expiry, so show what the engine actually kept. */
        tt.shown = seg_peek(s, req->key, req->klen, hash, &v) == SEG_OK ? (int32_t)v.ttl : 0;
    }
    char num[24];
    struct mc_meta_item it = {.cas = shown_cas(sh, cas), .ttl = tt.shown};
    it.vlen = (uint32_t)mc_u64toa(value, num);
    it.value = has_flag(req, 'v') ? num : NULL;
    return mc_compose_meta(out, req, has_flag(req, 'v') ? MC_META_VA : MC_META_HD, &it);
}

/*
 * me: the item's debug line, without counting a read. la is the item's age (see seg_view.age:
 * an upper bound on the seconds since it was written; reads are not timed), size the bytes it
 * takes in its segment.
 */
static int
exec_me(struct mc_shard *sh, const struct mc_req *req, uint64_t hash, struct buf *out)
{
    struct seg_view v;
    if (seg_peek(sh->seg, req->key, req->klen, hash, &v) != SEG_OK) {
        sync_expired(sh);
        return mc_compose_reply(out, MC_R_EN);
    }
    return mc_compose_me(out, req, v.ttl, v.age, shown_cas(sh, v.cas),
                         (v.state & SEG_ST_FETCHED) != 0, ME_CLASS, v.size);
}

int
mc_exec(struct mc_shard *sh, const struct mc_req *req, uint64_t hash, struct buf *out)
{
    switch (req->cmd) {
    case MC_CMD_SET:
    case MC_CMD_ADD:
    case MC_CMD_REPLACE:
    case MC_CMD_APPEND:
    case MC_CMD_PREPEND:
    case MC_CMD_CAS:
        return exec_store(sh, req, hash, out);
    case MC_CMD_INCR:
    case MC_CMD_DECR:
        return exec_incr(sh, req, hash, out);
    case MC_CMD_DELETE:
        return exec_delete(sh, req, hash, out);
    case MC_CMD_TOUCH:
        return exec_touch(sh, req, hash, out);
    case MC_CMD_MG:
        return exec_mg(sh, req, hash, out, SIZE_MAX, NULL);
    case MC_CMD_MS:
        return exec_ms(sh, req, hash, out);
    case MC_CMD_MD:
        return exec_md(sh, req, hash, out);
    case MC_CMD_MA:
        return exec_ma(sh, req, hash, out);
    case MC_CMD_ME:
        return exec_me(sh, req, hash, out);
    case MC_CMD_MN:
        return mc_compose_reply(out, MC_R_MN);
    default:
        /* The get family goes through mc_exec_get_key; the rest is the server's. */
        return -EINVAL;
    }
}

int
mc_exec_max(struct mc_shard *sh, const struct mc_req *req, uint64_t hash, size_t max,
            struct buf *out, struct mc_deferred *d)
{
    if (req->cmd == MC_CMD_MG) {
        return exec_mg(sh, req, hash, out, max, d);
    }
    return mc_exec(sh, req, hash, out);
}
