/*
 * mc_dump: memcached's "lru_crawler metadump" and "lru_crawler mgdump" on one storage shard.
 * Petrel's item classes are its TTL buckets: class i + 1 is TTL bucket i, as "stats items" and
 * "stats slabs" number them. A dump walks a shard in bounded steps (seg_scan), each appending
 * memcached's lines for the live items it finds; the server runs the steps of each shard on
 * that shard's worker and sends them out in order. docs/protocol.md has the format.
 *
 * Threads: mc_dump_classes() any thread; mc_dump_step() the shard's owner.
 */
#ifndef PETREL_MC_DUMP_H
#define PETREL_MC_DUMP_H

#include "petrel/buf.h"
#include "petrel/mc_exec.h"
#include "petrel/seg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MC_DUMP_CLASS_WORDS 8 /* bits for 512 classes, more than seg_ttl_bucket_count() */

/** What a class list names (mc_dump_classes). */
enum mc_dump_spec {
    MC_DUMP_CLASSES = 0, /* some classes, set in the mask ("all" sets every one) */
    MC_DUMP_HASH,        /* "hash": every item, by a walk of the hash table (every one set) */
    MC_DUMP_NONE,        /* a list without any class (","): memcached's NOTSTARTED */
    MC_DUMP_BADCLASS,    /* a class that is not a number in 1..seg_ttl_bucket_count() */
};

/**
 * Read an lru_crawler class list as memcached does: "all", "hash", or class numbers separated
 * by commas (empty entries skipped; a number is read as memcached's strtoul into 32 bits).
 * Fills mask (bit i: class i + 1). Any thread.
 */
enum mc_dump_spec mc_dump_classes(const char *spec, size_t len, uint64_t mask[MC_DUMP_CLASS_WORDS]);

/** One dump of one shard: where it stands and what it lists. Plain data (copied between
 * workers inside a message). */
struct mc_dump {
    struct seg_cursor cur;
    uint64_t mask[MC_DUMP_CLASS_WORDS]; /* the classes listed */
    bool mgdump;                        /* "mg <key>" lines instead of metadump's */
};

/**
 * Append the lines of the next items of the shard's dump to out: whole hash buckets, until out
 * grew by max_bytes or more (it may pass that by one bucket's lines) or max_buckets were
 * walked. Returns 1 while the shard has more, 0 when its walk is done, or a buf error. Owner
 * thread of sh.
 */
int mc_dump_step(struct mc_shard *sh, struct mc_dump *d, struct buf *out, size_t max_bytes,
                 unsigned max_buckets);

#endif /* PETREL_MC_DUMP_H */
