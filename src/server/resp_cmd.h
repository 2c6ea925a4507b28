/*
 * resp_cmd: what the files of the RESP side share, private to src/server: argument helpers in
 * Redis's rules, and the commands kept out of resp_server.c, each with its own messages and
 * reply slots:
 *   - resp_admin.c: HELLO, AUTH, CLIENT, CONFIG, INFO (the connection and the server);
 *   - resp_walk.c: SCAN and KEYS (a message walks the shards, one bounded step at a time) and
 *     MSETNX (one part per shard, undone where it succeeded if another part failed).
 *
 * Threads: everything runs on the worker that owns the connection or the message.
 */
#ifndef PETREL_RESP_CMD_H
#define PETREL_RESP_CMD_H

#include "resp_server.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#define REPLY_BOUND   256      /* the most a reply without a value takes */
#define REDIS_VERSION "7.0.15" /* the release whose replies these are (Debian 12's) */

static inline bool
arg_is(const struct resp_arg *a, const char *s)
{
    size_t n = strlen(s);
    if (a->len != n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a->p[i];
        if ((c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c) != (unsigned char)s[i]) {
            return false;
        }
    }
    return true;
}

static inline int
reply_err(struct buf *b, const char *msg)
{
    return resp_compose_error(b, msg, strlen(msg));
}

static inline int
reply_ok(struct buf *b)
{
    return resp_compose_simple(b, "OK", 2);
}

/* Redis's string2ll: an optional '-', digits, no leading zero (but "0"), no blanks, in range. */
static inline bool
arg_ll(const struct resp_arg *a, long long *out)
{
    const char *p = a->p;
    size_t n = a->len;
    if (n == 0 || n > 20) {
        return false;
    }
    bool neg = p[0] == '-';
    size_t i = neg ? 1 : 0;
    if (i == n || (p[i] == '0' && n - i > 1) || (neg && p[i] == '0')) {
        return false;
    }
    unsigned long long v = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return false;
        }
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (ULLONG_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    if (neg ? v > (unsigned long long)LLONG_MAX + 1 : v > (unsigned long long)LLONG_MAX) {
        return false;
    }
    *out = neg ? (long long)(0 - v) : (long long)v;
    return true;
}

/* A reply for c that needs no shard: into the write buffer, or queued behind a waiting one. */
static inline int
reply_local_err(struct route_worker *rw, struct conn *c, struct resp_conn *st, const char *msg)
{
    struct route_out o;
    if (route_reply_out(rw, c, &st->rc, &o) < 0) {
        return -ENOMEM;
    }
    int rc = reply_err(o.b, msg);
    route_out_done(c, &st->rc, &o);
    return rc;
}

/* ---- resp_server.c ---- */

/** Make *argv room for need entries (*cap: its room now). Returns 0 or -ENOMEM. */
int resp_argv_grow(struct resp_arg **argv, uint32_t *cap, uint32_t need);

/** A message's request parsed again on its owner, into the worker's margv (grown to fit). */
bool resp_parse_msg(struct resp_worker *w, const struct route_msg *m, struct resp_req *req);

/* ---- resp_walk.c ---- */

/** MSETNX key value [key value ...]: returns 0, EX_WAIT-like 1 (earlier replies first) or a
 * negative errno. Sets st->barrier: nothing after it is read until it is answered. */
int resp_msetnx(struct resp_worker *w, struct conn *c, struct resp_conn *st,
                const struct resp_req *req);

/** SCAN cursor [MATCH p] [COUNT n] [TYPE t], and KEYS pattern. Returns 0 or a negative errno. */
int resp_scan(struct resp_worker *w, struct conn *c, struct resp_conn *st,
              const struct resp_req *req, bool keys);

/** On the owner: a walk or MSETNX message (RESP_OP_SCAN, RESP_OP_MSETNX, RESP_OP_UNDO). */
void resp_walk_execute(struct resp_worker *w, struct route_msg *m);

/** emit of RESP_TAG_SCAN, RESP_TAG_KEYS, RESP_TAG_MSETNX slots. */
int resp_walk_emit(struct resp_worker *w, struct conn *c, struct route_conn *rc,
                   struct route_slot *s);

/* ---- resp_admin.c: each writes its reply into b and returns 0 or a buf error ---- */

/** A connection starts (and RESET leaves it) authenticated only when no password is set. */
void resp_auth_reset(struct resp_worker *w, struct resp_conn *st);

/** Note when a connection started (CLIENT LIST's age). */
void resp_conn_born(struct resp_conn *st);

int resp_auth(struct resp_worker *w, struct resp_conn *st, const struct resp_req *req,
              struct buf *b);
int resp_hello(struct resp_worker *w, struct resp_conn *st, const struct resp_req *req,
               struct buf *b);
/** CLIENT ID, GETNAME, SETNAME, INFO (CLIENT LIST is broadcast: resp_clients_*). */
int resp_client(struct resp_worker *w, struct conn *c, struct resp_conn *st,
                const struct resp_req *req, struct buf *b);
int resp_config(struct resp_worker *w, struct resp_conn *st, const struct resp_req *req,
                struct buf *b);
int resp_info(struct resp_worker *w, struct resp_conn *st, const struct resp_req *req,
              struct buf *b);

/** On each worker: the CLIENT LIST lines of its RESP connections, into out. */
void resp_clients_part(struct buf *out);

/** emit of a RESP_TAG_CLIENTS slot: the parts' lines as one bulk (verbatim) string. */
int resp_clients_emit(struct conn *c, struct route_conn *rc, struct route_slot *s);

#endif /* PETREL_RESP_CMD_H */
