/*
 * mc_exec: what a memcached request does on one storage shard. Takes a request parsed by
 * include/petrel/memcache.h, runs it against a Segcache instance (include/petrel/seg.h) and
 * appends memcached's exact reply to a buffer. No sockets, no threads: the server decides which
 * shard owns a key (and forwards the request there); this module only executes.
 *
 * Threads: a struct mc_shard belongs to the worker that owns its seg instance; every function
 * taking one must be called on that thread.
 */
#ifndef PETREL_MC_EXEC_H
#define PETREL_MC_EXEC_H

#include "petrel/buf.h"
#include "petrel/memcache.h"
#include "petrel/route.h"
#include "petrel/seg.h"

#include <stdint.h>

/* Command counters of one shard, named as memcached's "stats" fields. Owner thread writes. */
struct mc_stats {
    uint64_t cmd_get, cmd_set, cmd_touch, cmd_flush;
    uint64_t get_hits, get_misses, get_expired;
    uint64_t delete_hits, delete_misses;
    uint64_t incr_hits, incr_misses, decr_hits, decr_misses;
    uint64_t cas_hits, cas_misses, cas_badval;
    uint64_t touch_hits, touch_misses;
};

/*
 * Command counters of one class, memcached's per slab class ("stats slabs"), where Petrel's
 * class is a TTL bucket. Hits count in the bucket of the item found; cmd_set in the bucket the
 * request's expiry maps to (seg_ttl_bucket_of), whether or not it stored, as memcached counts
 * it in the class of the item it allocated for the request. Each is counted where the
 * matching mc_stats counter is, so that they sum to it. Owner thread writes.
 */
struct mc_class_stats {
    uint64_t get_hits, cmd_set, delete_hits, incr_hits, decr_hits, cas_hits, cas_badval, touch_hits;
};

/** One shard: its storage and its counters. */
struct mc_shard {
    struct seg *seg;
    struct mc_stats stats;
    bool cas_disabled; /* --disable-cas (memcached's -C): every CAS shown is 0, compared as 0 */
    struct mc_class_stats classes[SEG_TTL_BUCKETS]; /* indexed by TTL bucket */
};

/** The hash that picks a key's shard and its hash-table bucket (seg_hash of the key bytes). */
static inline uint64_t
mc_key_hash(const char *key, size_t klen)
{
    return seg_hash(key, klen);
}

/**
 * The shard of n that owns a key with this hash: the router's choice (route_shard_of), which
 * re-sharding a memory file must agree with.
 */
static inline unsigned
mc_shard_of(uint64_t hash, unsigned n)
{
    return route_shard_of(hash, n);
}

/**
 * Execute a request whose key lives on this shard: the storage commands, cas, incr/decr,
 * delete, touch, and the meta commands mg/ms/md/ma/me (mn too, though it needs no shard).
 * Appends the reply (nothing for noreply / quiet); docs/protocol.md says where a meta flag's
 * answer differs from memcached's. req and its views are only read. Returns 0, the buf error
 * (-ENOBUFS, -ENOMEM) after which the connection should be closed, or -EINVAL (nothing appended)
 * for a command not executed here: the get family (mc_exec_get_key) and the server's own commands.
 */
int mc_exec(struct mc_shard *sh, const struct mc_req *req, uint64_t hash, struct buf *out);

/**
 * One key of a get/gets/gat/gats request (req gives the command and, for gat/gats, the
 * exptime): appends the "VALUE ..." block for a hit, nothing for a miss; counts the get (or,
 * for gat/gats, the touch). A gat whose item cannot be moved to its new TTL for lack of memory
 * gets "SERVER_ERROR out of memory". Returns 0 or a buf error.
 */
int mc_exec_get_key(struct mc_shard *sh, const struct mc_req *req, const char *key, size_t klen,
                    uint64_t hash, struct buf *out);

/**
 * A hit whose value was left out of its reply because the reply had no room for it (the
 * *_max functions below): the reply got the hit's header (hdr_len bytes: "VALUE ..." or mg's
 * "VA ..." line) followed by the reply to send instead if the value cannot be had any more
 * (miss_len bytes: nothing for a get, mg's miss reply). mc_exec_fetch() gets the value later,
 * if the item is still this version.
 */
struct mc_deferred {
    uint64_t cas;      /* the item's CAS when the request ran */
    uint32_t vlen;     /* its value's length */
    uint32_t hdr_len;  /* header bytes appended, sent before the value and "\r\n" */
    uint32_t miss_len; /* bytes appended after them, sent instead when the item changed */
};

/**
 * mc_exec_get_key() for a reply with at most max bytes of room: a hit whose VALUE block is
 * longer gets only its header and a zero-length miss reply appended, and *d filled; the get
 * (and gat's touch) happened and counted all the same. Returns 0 (answered: hit or miss), 1
 * (deferred: *d) or a buf error.
 */
int mc_exec_get_key_max(struct mc_shard *sh, const struct mc_req *req, const char *key, size_t klen,
                        uint64_t hash, size_t max, struct buf *out, struct mc_deferred *d);

/**
 * mc_exec() for a reply with at most max bytes of room: an mg with v whose reply is longer
 * gets its "VA ..." line and then its miss reply ("EN", as mc_compose_meta() gives it)
 * appended, and *d filled; everything else it does (touch, recache token, counters) happened.
 * Other commands run as mc_exec() runs them (their replies have no value). Returns 0, 1
 * (deferred: *d), or what mc_exec() returns.
 */
int mc_exec_max(struct mc_shard *sh, const struct mc_req *req, uint64_t hash, size_t max,
                struct buf *out, struct mc_deferred *d);

/**
 * The value a deferred hit left out (*d): appends the d->vlen value bytes (no header, no
 * "\r\n") if the key still holds the version with d->cas, read as a peek: no read is counted
 * in the item (frequency, fetched bit), no TTL changes, and no command counter moves. Returns 1
 * (appended), 0 (the item changed, expired or went: nothing appended) or a buf error.
 */
int mc_exec_fetch(struct mc_shard *sh, const char *key, size_t klen, uint64_t hash,
                  const struct mc_deferred *d, struct buf *out);

#endif /* PETREL_MC_EXEC_H */
