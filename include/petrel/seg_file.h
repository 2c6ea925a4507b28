/*
 * seg_file: the memory file of a server's shards (warm restart, memcached's -e).
 *
 * One file holds every shard's heap: a header page, then one region per shard (seg_options
 * file_fd / file_off, seg_region_size). seg_file_open() opens or creates it and makes sure its
 * layout is the one asked for: a file written with the same layout is recovered in place by each
 * shard's seg_create(); one written with another number of shards, memory size or segment size
 * is re-sharded into a new file (items go to the shard shard_of gives; where they do not all fit,
 * what the shard options' eviction policy would evict first is dropped: seg_file.c says how for
 * each policy) which then replaces it; a file that is not a valid memory file is started afresh. It
 * never fails for a file's contents, only for system errors (the path cannot be opened, no space on
 * its filesystem).
 *
 * Threads: open and close from one thread, before and after the shards exist; seg_file_shard
 * from any thread once open returned.
 */
#ifndef PETREL_SEG_FILE_H
#define PETREL_SEG_FILE_H

#include "petrel/seg.h"

/** The shard (0..n-1) a key's hash belongs to: the server's routing. */
typedef unsigned (*seg_shard_fn)(uint64_t hash, unsigned n);

/** What seg_file_open() found and did, for the log. */
struct seg_file_info {
    char note[320];         /* one line: created, recovering, re-sharded, or why it starts empty */
    bool reset;             /* the file was not usable: it starts empty */
    bool resharded;         /* the file had another layout: its items were moved */
    uint64_t moved_items;   /* re-sharding: items stored in the new layout */
    uint64_t dropped_items; /* re-sharding: items that did not fit (evicted, too large, expired) */
};

struct seg_file;

/**
 * Open or create the memory file at path for nshards shards built with shard (mem_bytes, seg_size,
 * item_max, evict... of each shard; its file fields are ignored). Returns 0 and sets *out, or a
 * negative errno (info->note says why). Takes as long as re-sharding takes, if it must.
 */
int seg_file_open(struct seg_file **out, const char *path, const struct seg_options *shard,
                  unsigned nshards, seg_shard_fn shard_of, struct seg_file_info *info);

/** Point o (file_fd, file_off) at shard i's region. The file must stay open until seg_create. */
void seg_file_shard(const struct seg_file *f, unsigned i, struct seg_options *o);

/** Close the file (the shards' mappings stay valid) and free f; sets *f to NULL. */
void seg_file_close(struct seg_file **f);

#endif /* PETREL_SEG_FILE_H */
