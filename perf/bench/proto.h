/*
 * proto: the load generator's protocol interface. A protocol turns a drawn request into bytes
 * and recognises the reply to it; it does no I/O and keeps no state between calls, so a new
 * protocol is one more file and one more entry in proto_find(), and it can be
 * unit-tested on byte strings.
 *
 * Replies arrive in request order on a connection, so the caller hands parse() the command
 * the reply is for. Threads: protocols are stateless; any thread may call them.
 */
#ifndef PETREL_BENCH_PROTO_H
#define PETREL_BENCH_PROTO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "petrel/buf.h"
#include "workload.h"

/** What one reply said. */
struct proto_result {
    uint32_t hits;   /* keys found (get values, deleted, incremented) */
    uint32_t misses; /* keys not found, or a set not stored */
    bool error;      /* the server answered with an error */
};

struct proto {
    const char *name; /* as given to --protocol */
    bool keyed;       /* false: the protocol has no keys (ping), so mix and preload do not apply */
    unsigned ops;     /* bit (1 << op) for every enum op_type it can send */

    /**
     * Append the request's bytes to out. Returns 0, -ENOTSUP for a command the protocol does
     * not have, or the buf_append() error (-ENOBUFS, -ENOMEM) with out possibly partly written.
     */
    int (*compose)(struct buf *out, const struct workload *w, const struct request *req);

    /**
     * Recognise one reply at the start of p[0, n) to a request of command op with nkeys keys.
     * Returns the reply's length in bytes (> 0) with *res filled, 0 when more bytes are needed,
     * or -EPROTO when the bytes cannot be a reply (framing is lost; close the connection).
     */
    ssize_t (*parse)(const char *p, size_t n, enum op_type op, uint32_t nkeys,
                     struct proto_result *res);
};

/** memcached's text protocol: get (multi-key), set, delete, incr. */
extern const struct proto proto_memcache;

/** The Redis protocol, RESP2: GET (MGET for a multi-key get), SET, DEL, INCR. */
extern const struct proto proto_resp;

/** The ping protocol: PING\r\n answered by PONG\r\n. */
extern const struct proto proto_ping;

/** The protocol called name, or NULL. */
const struct proto *proto_find(const char *name);

/**
 * Whether line[0, len) (a whole line, its \r\n included) is one of memcached's error replies,
 * which the text-based protocols share: ERROR, CLIENT_ERROR ..., SERVER_ERROR ...
 */
bool proto_error_line(const char *line, size_t len);

#endif /* PETREL_BENCH_PROTO_H */
