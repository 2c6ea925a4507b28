/*
 * resp_server: the Redis protocol (RESP2/RESP3) side of the petrel product, on its own port
 * (--resp-port) over the same shards as the memcached side. Private to src/server: mc_server.c
 * owns the product (its workers, shards and route ops) and hands RESP connections, messages and
 * reply slots to these functions. docs/resp.md lists the commands.
 *
 * Threads: everything runs on the worker that owns the connection or the message.
 */
#ifndef PETREL_RESP_SERVER_H
#define PETREL_RESP_SERVER_H

#include "petrel/config.h"
#include "petrel/mc_exec.h"
#include "petrel/resp.h"
#include "petrel/route.h"
#include "petrel/runtime.h"

#define RESP_PROTO_ID    1  /* conn_protocol() of a RESP connection */
#define RESP_OP          64 /* route_msg.op of a RESP request forwarded to its key's owner */
#define RESP_OP_DBSIZE   65 /* route_msg.op: the shard's item count, into m->arg */
#define RESP_OP_FLUSH    66 /* route_msg.op: drop every item of the shard */
#define RESP_TAG_SUM     32 /* slot tag: the sum of its parts' m->arg, as an integer reply */
#define RESP_OP_MSETNX   67 /* route_msg.op: store a shard's part of an MSETNX if none exists */
#define RESP_OP_UNDO     68 /* route_msg.op: delete what a part of an MSETNX stored */
#define RESP_OP_SCAN     69 /* route_msg.op: a step of SCAN or KEYS on one shard */
#define RESP_OP_CLIENTS  70 /* route_msg.op: the worker\'s CLIENT LIST lines */
#define RESP_OP_MULTI    71 /* route_msg.op: a shard\'s keys of a window of a multi-key command */
#define RESP_TAG_OK      33 /* slot tag: +OK once every part is back */
#define RESP_TAG_MSETNX  34 /* slot tag: MSETNX (resp_walk.c) */
#define RESP_TAG_SCAN    35 /* slot tag: SCAN */
#define RESP_TAG_KEYS    36 /* slot tag: KEYS */
#define RESP_TAG_CLIENTS 37 /* slot tag: CLIENT LIST */
#define RESP_TAG_ACC     38 /* slot tag: add its parts\' integers to resp_conn.acc, send nothing */
#define RESP_TAG_NONE    39 /* slot tag: send nothing (a window of MSET but its last) */

/* A worker's RESP state: its view of the product's worker. */
struct resp_worker {
    struct route_worker *rw;
    struct mc_shard *shard;
    size_t max_value;      /* the largest value stored (-I minus its room for key and header) */
    struct resp_arg *argv; /* argv of the requests parsed ahead: argv_cap entries (ARGV_ROOM,
                              grown for a request of more, RESP_ARGS_MAX_DEFAULT between them) */
    uint32_t argv_cap, margv_cap;
    char *scratch; /* its inline scratch (RESP_INLINE_MAX_DEFAULT) */
    /* A message's request, parsed again by its owner: as many arguments as a connection's
     * (SET, EXPIRE and GETEX take any number of options, and each needs its reply). */
    struct resp_arg *margv; /* margv_cap entries, as argv */
    char mscratch[64];
    uint64_t next_id;   /* CLIENT ID: this worker's next, spaced by the worker count */
    char *password;     /* requirepass (--resp-password or --resp-password-file); NULL: none */
    uint64_t mem_limit; /* CONFIG GET maxmemory: --memory-limit */
    unsigned port;      /* --resp-port */
};

/* What a connection speaks, found at its first call: the second field of both kinds of
 * connection state (struct mc_conn in mc_server.c, struct resp_conn). */
enum conn_kind { CONN_NEW = 0, CONN_MC, CONN_RESP };

/* A RESP connection: conn_state() of a connection on the RESP port. */
struct resp_conn {
    struct route_conn rc;  /* first, as in struct mc_conn */
    uint8_t kind;          /* CONN_RESP once set up (second, as in struct mc_conn) */
    enum resp_proto proto; /* RESP2 until HELLO 3 */
    struct resp_parser parser;
    uint64_t id;          /* CLIENT ID */
    char name[64];        /* CLIENT SETNAME */
    uint64_t barrier;     /* an MSETNX's slot sequence + 1: nothing more is read until it is sent */
    bool authed;          /* AUTH done, or no password set */
    uint32_t multi_next;  /* a multi-key command stopped between windows: its next key */
    int64_t acc;          /* DEL, EXISTS: the sum of its windows sent so far */
    uint64_t born;        /* CLOCK_MONOTONIC seconds when it started */
    const char *last_cmd; /* its last command (CLIENT LIST's cmd), NULL before one ... */
    char last_sub[16];    /* ... and its subcommand, for CLIENT and CONFIG ("client|info") */
};

/**
 * The RESP port's password: --resp-password, or the first line of --resp-password-file (which
 * keeps it off the command line, where any local user could read it); *out is a heap copy, or
 * NULL for none (Redis's requirepass ""). Both given is -EINVAL; a file that cannot be read is
 * its errno; err says which. Also the start-up check (mc_product.check). Any thread.
 */
int resp_password(const struct config *cfg, char **out, char *err, size_t errlen);

/**
 * Set up w (worker id of n), allocating its argv and scratch, with the settings of cfg it needs
 * (the password: resp_password()). Returns 0, -ENOMEM, or resp_password()'s error (logged).
 */
int resp_worker_init(struct resp_worker *w, struct route_worker *rw, struct mc_shard *shard,
                     size_t max_value, const struct config *cfg);

/** Free what resp_worker_init allocated. */
void resp_worker_teardown(struct resp_worker *w);

/** on_data for a RESP connection. */
enum rt_result resp_on_data(struct resp_worker *w, struct conn *c);

/** On the owner: run a RESP message (op RESP_OP, RESP_OP_DBSIZE, RESP_OP_FLUSH) on its shard. */
void resp_msg_execute(struct resp_worker *w, struct route_msg *m);

/** route_ops.abandon for a RESP message: a stored MSETNX part of a closed connection is undone on
 * its shard; m is freed (or sent, and freed when it is back). Worker thread. */
void resp_abandon(struct resp_worker *w, struct route_msg *m);

/** route_ops.emit for a RESP slot (RESP_TAG_*). Returns 1, 0 or a negative errno. */
int resp_emit(struct resp_worker *w, struct conn *c, struct route_conn *rc, struct route_slot *s);

#endif /* PETREL_RESP_SERVER_H */
