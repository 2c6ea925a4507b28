/*
 * mc_persist: the server's memory file (--memory-file, memcached's -e): the shards' heaps in one
 * file that outlives the process, so that a restart (graceful, or after kill -9) keeps the
 * cache. The file itself is seg_file's (include/petrel/seg_file.h); this module opens it once
 * for all the workers, re-sharded by the server's routing (mc_shard_of), and logs what recovery
 * did.
 */
#ifndef PETREL_MC_PERSIST_H
#define PETREL_MC_PERSIST_H

#include "petrel/config.h"
#include "petrel/seg.h"

/**
 * Create worker id's shard (of n) with options o: in its region of the memory file when
 * --memory-file is set (the first worker to get here opens the file, re-sharding it if its
 * layout differs, while the others wait), recovering what it holds; else as seg_create alone.
 * Logs the file's state once and each shard's recovery. Returns seg_create's result, or a
 * negative errno when the file cannot be opened. Worker threads, during setup.
 */
int mc_persist_create(unsigned id, unsigned n, const struct config *cfg, struct seg_options *o,
                      struct seg **out);

#endif /* PETREL_MC_PERSIST_H */
