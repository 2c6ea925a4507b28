/*
 * workload: what the load generator asks for — which command, which keys, how large a value.
 *
 * Keys are numbered 0..keys-1 and written as a one-letter namespace followed by the number in
 * zero-padded decimal, exactly key_size bytes long ("k0000000000000042" for key 42 at size 17).
 * Data keys use namespace 'k'. incr needs numeric values, so it works on a parallel set of
 * counter keys, namespace 'n', which the preload phase sets to "0".
 *
 * Threads: a struct workload is built by the main thread and read-only afterwards; client
 * threads draw requests from it concurrently, each with its own generator.
 * Memory: the workload owns its value pattern buffer, released by workload_free().
 */
#ifndef PETREL_BENCH_WORKLOAD_H
#define PETREL_BENCH_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rng.h"
#include "zipf.h"

#define WORKLOAD_MAX_MULTIGET 256
#define WORKLOAD_MAX_KEY_SIZE 250     /* memcached's limit */
#define WORKLOAD_MAX_VALUE    1048576 /* 1 MiB */

enum op_type {
    OP_GET,
    OP_SET,
    OP_DELETE,
    OP_INCR,
    OP_PING,
    OP__COUNT,
};

enum key_dist {
    KEY_UNIFORM,
    KEY_ZIPF,
};

/** Key namespaces: data keys, and the counters incr works on. */
enum key_ns {
    KEY_NS_DATA,
    KEY_NS_COUNTER,
};

struct workload_cfg {
    uint64_t keys;              /* key count, >= 1 */
    uint32_t key_size;          /* bytes per key */
    enum key_dist dist;         /* key popularity */
    double theta;               /* Zipf exponent when dist == KEY_ZIPF */
    uint32_t value_min;         /* value size range, bytes, inclusive */
    uint32_t value_max;         /* == value_min for a fixed size */
    uint32_t weight[OP__COUNT]; /* relative frequency of each command */
    uint32_t multiget;          /* keys per get, 1..WORKLOAD_MAX_MULTIGET */
};

/** One request as drawn; the protocol turns it into bytes. */
struct request {
    enum op_type op;
    enum key_ns ns;
    uint32_t nkeys;                      /* keys used in key[] (0 for ping) */
    uint32_t value_len;                  /* set only */
    uint64_t key[WORKLOAD_MAX_MULTIGET]; /* key numbers */
};

struct workload {
    struct workload_cfg cfg;
    struct zipf zipf; /* when cfg.dist == KEY_ZIPF */
    uint32_t wsum;    /* sum of cfg.weight */
    char *value;      /* cfg.value_max bytes of filler, what every set sends */
};

/**
 * Check cfg and prepare a workload from it (copied). Returns 0, -EINVAL when the configuration
 * is inconsistent (e.g. keys that do not fit in key_size, all weights zero), or -ENOMEM.
 */
int workload_init(struct workload *w, const struct workload_cfg *cfg);

/** Release what workload_init() allocated. */
void workload_free(struct workload *w);

/** Smallest key size that can hold `keys` distinct keys (namespace letter + digits). */
uint32_t workload_min_key_size(uint64_t keys);

/** Draw the next request of the measured phase. Any thread, with its own generator. */
void workload_next(const struct workload *w, struct bench_rng *r, struct request *req);

/**
 * The preload request for position i of the preload sequence: data key i for i < keys, then
 * (if the mix has incr) counter key i - keys. `*req` gets a set.
 */
void workload_preload(const struct workload *w, struct bench_rng *r, uint64_t i,
                      struct request *req);

/** Number of keys the preload phase writes. */
uint64_t workload_preload_count(const struct workload *w);

/** Write key number id of namespace ns into out (cfg.key_size bytes, not NUL-terminated). */
void workload_key(const struct workload *w, enum key_ns ns, uint64_t id, char *out);

/** The value a set of req sends: *len bytes at the returned pointer, owned by the workload. */
const char *workload_value(const struct workload *w, const struct request *req, uint32_t *len);

/** Name of a command, for reports ("get", "set", ...). */
const char *workload_op_name(enum op_type op);

#endif /* PETREL_BENCH_WORKLOAD_H */
