/*
 * mc_detail: memcached's per-prefix statistics ("stats detail on|off|dump", -D).
 *
 * A key's prefix is what comes before its first delimiter (memcached's -D, ':' by default); a
 * key without the delimiter has none and is not counted. For every prefix a table counts the
 * gets (one per key of get, gets, gat, gats), the gets that found the key, the stores (set, add,
 * replace, append, prepend, cas, counted whatever their outcome) and the deletes, as memcached
 * 1.6 does; the meta commands, incr, decr and touch are not counted, as in memcached.
 *
 * One table per worker, written only by it: no lock anywhere. A dump asks every worker for its
 * records (mc_detail_export), merges them into a table of its own (mc_detail_import) and
 * writes memcached's lines (mc_detail_dump). A table holds at most `cap` prefixes; a key of a
 * new prefix past that is not counted (as memcached does past its 65,536 prefixes); the prefixes
 * already there go on counting.
 *
 * Threads: a table belongs to one thread; nothing here is shared.
 */
#ifndef PETREL_MC_DETAIL_H
#define PETREL_MC_DETAIL_H

#include "petrel/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** What a request did to its key's prefix. */
enum mc_detail_kind { MC_DETAIL_GET, MC_DETAIL_SET, MC_DETAIL_DEL };

/** The most prefixes all workers' tables together hold by default (memcached's own cap). */
#define MC_DETAIL_PREFIXES 65536

/** A prefix is at most a key's length: memcached's keys are 250 bytes at most. */
#define MC_DETAIL_PREFIX_MAX 250

struct mc_detail;

/** A new empty table for at most cap prefixes (cap >= 1). Returns 0 and sets *out, or -ENOMEM. */
int mc_detail_create(struct mc_detail **out, size_t cap);

/** Free a table; sets *d to NULL. NULL is fine. */
void mc_detail_destroy(struct mc_detail **d);

/** Forget every prefix and give back the memory they took ("stats reset"). */
void mc_detail_clear(struct mc_detail *d);

/** Prefixes in the table. */
size_t mc_detail_size(const struct mc_detail *d);

/** Prefixes not counted because the table was full, since its creation or last clear. */
uint64_t mc_detail_refused(const struct mc_detail *d);

/** Length of key's prefix (the bytes before its first delim), or -1 when it has no delim. */
int mc_detail_prefix_len(const char *key, size_t klen, char delim);

/**
 * Count one request of kind on key (a hit matters for MC_DETAIL_GET only). A key without
 * the delimiter, or of a new prefix when the table is full or memory is short, is not counted.
 */
void mc_detail_count(struct mc_detail *d, const char *key, size_t klen, char delim,
                     enum mc_detail_kind kind, bool hit);

/**
 * Append the table's records to out (a binary form for mc_detail_import, in insertion order).
 * Returns 0 or the buf error.
 */
int mc_detail_export(const struct mc_detail *d, struct buf *out);

/**
 * Add the records of mc_detail_export (p, n bytes) to d, prefix by prefix. Returns 0, -EINVAL
 * for records that do not parse (what came before stays added), or -ENOMEM.
 */
int mc_detail_import(struct mc_detail *d, const char *p, size_t n);

/**
 * memcached's dump: "PREFIX <prefix> get <n> hit <n> set <n> del <n>\r\n" for every prefix,
 * in the order they were first counted, then "END\r\n". Returns 0 or the buf error.
 */
int mc_detail_dump(const struct mc_detail *d, struct buf *out);

#endif /* PETREL_MC_DETAIL_H */
