/*
 * mc_server: the memcached-compatible product. Contract in include/petrel/mc_server.h.
 *
 * The path of a request: the connection's worker parses it and hashes its key once. A key this
 * worker owns is executed at once on its shard; a key another worker owns is copied (request
 * text, value included: the one copy) into a message and forwarded to that worker, which
 * executes it and sends the message back with the reply. A multi-key get is split into one
 * sub-request per owning worker and gathered back in key order; flush_all and stats go to every
 * shard.
 *
 * Reply order: while nothing is waiting, replies go straight into the connection's write
 * buffer. Once a request waits for another worker, it takes a slot in the connection's reply
 * queue, and every later reply queues behind it, even a local one; slots leave from the head,
 * in request order, as they complete. At most SLOTS_MAX slots per connection; past that the
 * connection is paused until replies come back.
 */
#include "petrel/mc_server.h"

#include "petrel_build.h"

#include "petrel/log.h"
#include "petrel/mc_exec.h"
#include "petrel/memcache.h"
#include "petrel/seg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SLOTS_MAX 1024        /* unfinished replies per connection before it pauses */
#define ITEM_ROOM 1024        /* -I minus this is the largest value: key and header room */
#define REPLY_MAX (64u << 20) /* the largest reply one request may produce */

/*
 * What "version" answers. Clients and tools pick protocol features by the memcached version
 * they see (memccapable, for one, expects a pre-1.4 server to refuse "version foo"), so we
 * answer with the memcached release whose protocol we implement, and name ourselves after it.
 */
#define MC_PROTOCOL_VERSION "1.6.18-petrel-" PETREL_VERSION
#define MSG_BUF_INIT        256

static const char *const evict_names[] = {"merge", "fifo", "random", "cte", "util", "none", NULL};

static const struct opt_def mc_options[] = {
    {.name = "port",
     .short_name = 'p',
     .section = "server",
     .type = OPT_UINT,
     .dflt = "11211",
     .min = 0,
     .max = 65535,
     .help = "TCP port (0: an ephemeral port, logged at start-up)"},
    {.name = "memory-limit",
     .short_name = 'm',
     .section = "storage",
     .type = OPT_SIZE,
     .dflt = "64",
     .unit = 1 << 20,
     .min = 1 << 20,
     .max = UINT64_C(1) << 44,
     .help = "item memory, split evenly between the workers' shards (a bare number is MiB)"},
    {.name = "max-item-size",
     .short_name = 'I',
     .section = "storage",
     .type = OPT_SIZE,
     .dflt = "1m",
     .unit = 1,
     .min = 4096,
     .max = 16 << 20,
     .help = "largest item; a value may be this minus 1 KiB (room for key and header)"},
    {.name = "segment-size",
     .section = "storage",
     .type = OPT_SIZE,
     .dflt = "1m",
     .unit = 1,
     .min = 4096,
     .max = 16 << 20,
     .help = "storage segment size, a power of two; raised to fit max-item-size"},
    {.name = "eviction",
     .section = "storage",
     .type = OPT_ENUM,
     .dflt = "merge",
     .choices = evict_names,
     .help = "what makes room when a shard is full"},
    {.name = "enable-shutdown",
     .short_name = 'A',
     .section = "server",
     .type = OPT_BOOL,
     .dflt = "no",
     .help = "accept the \"shutdown\" command (as memcached's -A)"},
};

const struct opt_table mc_option_table = {
    .name = "petrel",
    .defs = mc_options,
    .n = sizeof(mc_options) / sizeof(mc_options[0]),
};

/* What a forwarded message asks its owner to do. */
enum msg_op {
    OP_EXEC,  /* one single-key request, as text */
    OP_GET,   /* the keys of a get family request that this shard owns, as a request line */
    OP_FLUSH, /* flush_all */
    OP_STATS, /* copy the shard's counters */
};

/* A request travelling to the worker that owns its key(s) and back. Allocated and freed by the
 * origin worker; written by the owner between the two ring hops. */
struct mc_msg {
    struct rt_msg hdr; /* first: the runtime sees only this */
    uint64_t seq;      /* the origin connection's reply slot */
    uint32_t part;     /* which part of that slot */
    uint8_t op;
    int64_t flush_when;
    struct buf req;   /* OP_EXEC, OP_GET: request text */
    struct buf reply; /* reply bytes written by the owner */
    uint32_t nkeys;   /* OP_GET: keys in req */
    uint32_t *koff;   /* OP_GET: end offset in reply of key i's answer */
    struct mc_stats st;
    struct seg_stats ss;
};

/* A reply slot: one per request that could not be answered at once (and the local replies
 * that queue behind it). */
enum slot_kind {
    SLOT_BYTES, /* ready bytes in out */
    SLOT_EXEC,  /* the reply of one forwarded request */
    SLOT_GET,   /* a multi-shard get: parts gathered in key order, then END */
    SLOT_FLUSH, /* flush_all on every shard, then OK */
    SLOT_STATS, /* stats of every shard, summed */
};

struct key_ref {
    uint32_t part; /* which part answers this key */
    uint32_t idx;  /* the key's index in that part */
};

struct slot {
    uint8_t kind;
    bool noreply;
    uint32_t waiting; /* parts not back yet */
    uint32_t nparts;
    struct mc_msg **parts; /* returned (or local) parts; NULL while in flight */
    uint32_t nkeys;
    struct key_ref *keys; /* SLOT_GET */
    struct buf out;       /* SLOT_BYTES */
};

/* Per connection, in the runtime's conn_state(). */
struct mc_conn {
    bool init;
    struct mc_parser parser;
    struct slot **q; /* FIFO of reply slots */
    uint32_t qhead, qlen, qcap;
    uint64_t seq_head; /* sequence number of q[qhead] */
};

/* Per worker. */
struct mc_worker {
    unsigned id;
    unsigned n;
    const struct config *cfg;
    struct mc_shard shard;
    struct mc_parser_opts popts;
};

/* ---- messages ---- */

static struct mc_msg *
msg_new(uint8_t op, uint64_t seq, uint32_t part)
{
    struct mc_msg *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return NULL;
    }
    m->op = op;
    m->seq = seq;
    m->part = part;
    buf_init(&m->req, MSG_BUF_INIT, REPLY_MAX);
    buf_init(&m->reply, MSG_BUF_INIT, REPLY_MAX);
    return m;
}

static void
msg_free(struct mc_msg *m)
{
    if (m == NULL) {
        return;
    }
    buf_free(&m->req);
    buf_free(&m->reply);
    free(m->koff);
    free(m);
}

static void
msg_free_rt(struct rt_msg *m)
{
    msg_free((struct mc_msg *)m);
}

/* A get family line whose keys all belong to one shard: answer each, recording where each
 * key's answer ends. On a reply too large for a message the answers are dropped and the
 * origin sends memcached's error instead. */
static void
exec_get_part(struct mc_worker *mw, struct mc_msg *m, const struct mc_req *req)
{
    struct mc_key_iter it;
    const char *key;
    size_t klen;
    uint32_t i = 0;
    mc_args_begin(req, &it);
    while (i < m->nkeys && mc_args_next(&it, &key, &klen)) {
        if (mc_exec_get_key(&mw->shard, req, key, klen, mc_key_hash(key, klen), &m->reply) < 0) {
            m->nkeys = 0; /* the origin reports the failure */
            buf_consume(&m->reply, buf_len(&m->reply));
            return;
        }
        m->koff[i++] = (uint32_t)buf_len(&m->reply);
    }
}

/* Run a message on this worker's shard: the owner side of a forward, or a local part. */
static void
msg_execute(struct mc_worker *mw, struct mc_msg *m)
{
    struct mc_parser p;
    struct mc_req req;
    switch (m->op) {
    case OP_EXEC:
    case OP_GET:
        /* The origin parsed and validated this text already; parsing it again is cheaper than
         * shipping a parsed request with pointers into another worker's buffer. */
        mc_parser_init(&p, &mw->popts);
        if (mc_parse(&p, buf_rptr(&m->req), buf_len(&m->req), &req) != MC_PARSE_OK) {
            log_error("forwarded request does not parse; dropped");
            if (m->op == OP_GET) {
                m->nkeys = 0;
            }
            break;
        }
        if (m->op == OP_GET) {
            exec_get_part(mw, m, &req);
        } else if (mc_exec(&mw->shard, &req, mc_key_hash(req.key, req.klen), &m->reply) < 0) {
            buf_consume(&m->reply, buf_len(&m->reply));
            mc_compose_reply(&m->reply, MC_R_OOM);
        }
        break;
    case OP_FLUSH:
        seg_flush(mw->shard.seg, m->flush_when);
        break;
    case OP_STATS:
        m->st = mw->shard.stats;
        seg_stats_get(mw->shard.seg, &m->ss);
        break;
    }
}

/* ---- reply slots ---- */

static void
slot_free(struct slot *s)
{
    for (uint32_t i = 0; i < s->nparts; i++) {
        msg_free(s->parts[i]);
    }
    free(s->parts);
    free(s->keys);
    buf_free(&s->out);
    free(s);
}

static struct slot *
slot_push(struct mc_conn *st, uint8_t kind, uint32_t nparts)
{
    if (st->qlen == st->qcap) {
        uint32_t cap = st->qcap ? st->qcap * 2 : 16;
        struct slot **q = malloc(cap * sizeof(*q));
        if (q == NULL) {
            return NULL;
        }
        for (uint32_t i = 0; i < st->qlen; i++) {
            q[i] = st->q[(st->qhead + i) % st->qcap];
        }
        free(st->q);
        st->q = q;
        st->qhead = 0;
        st->qcap = cap;
    }
    struct slot *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->kind = kind;
    buf_init(&s->out, MSG_BUF_INIT, REPLY_MAX);
    if (nparts > 0) {
        s->parts = calloc(nparts, sizeof(*s->parts));
        if (s->parts == NULL) {
            free(s);
            return NULL;
        }
        s->nparts = nparts;
        s->waiting = nparts;
    }
    st->q[(st->qhead + st->qlen) % st->qcap] = s;
    st->qlen++;
    return s;
}

static uint64_t
slot_seq_next(const struct mc_conn *st)
{
    return st->seq_head + st->qlen;
}

static struct slot *
slot_find(struct mc_conn *st, uint64_t seq)
{
    if (seq < st->seq_head || seq - st->seq_head >= st->qlen) {
        return NULL;
    }
    return st->q[(st->qhead + (seq - st->seq_head)) % st->qcap];
}

/*
 * Where a local reply goes: straight into the write buffer when no reply is waiting, else into
 * a ready slot at the tail of the queue (the last one, if it is already a ready slot).
 */
static struct buf *
reply_out(struct conn *c, struct mc_conn *st)
{
    if (st->qlen == 0) {
        return conn_wbuf(c);
    }
    struct slot *tail = st->q[(st->qhead + st->qlen - 1) % st->qcap];
    if (tail->kind == SLOT_BYTES) {
        return &tail->out;
    }
    struct slot *s = slot_push(st, SLOT_BYTES, 0);
    return s != NULL ? &s->out : NULL;
}

static void
sum_stats(struct mc_stats *a, const struct mc_stats *b)
{
    const uint64_t *src = (const uint64_t *)b;
    uint64_t *dst = (uint64_t *)a;
    for (size_t i = 0; i < sizeof(*a) / sizeof(uint64_t); i++) {
        dst[i] += src[i];
    }
}

static void
write_stats(struct buf *out, const struct mc_stats *st, const struct seg_stats *ss, uint64_t limit)
{
    struct rt_stats rs;
    rt_stats_get(&rs);
    struct timespec ru;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ru);
    mc_compose_stat_u64(out, "pid", (uint64_t)getpid());
    mc_compose_stat_u64(out, "uptime", rs.uptime);
    mc_compose_stat_u64(out, "time", (uint64_t)time(NULL));
    mc_compose_stat(out, "version", MC_PROTOCOL_VERSION);
    mc_compose_stat_u64(out, "pointer_size", sizeof(void *) * 8);
    buf_printf(out, "STAT rusage_cpu %ld.%06ld\r\n", (long)ru.tv_sec, ru.tv_nsec / 1000);
    mc_compose_stat_u64(out, "max_connections", rs.max_connections);
    mc_compose_stat_u64(out, "curr_connections", rs.curr_connections);
    mc_compose_stat_u64(out, "total_connections", rs.total_connections);
    mc_compose_stat_u64(out, "rejected_connections", rs.rejected_connections);
    mc_compose_stat_u64(out, "cmd_get", st->cmd_get);
    mc_compose_stat_u64(out, "cmd_set", st->cmd_set);
    mc_compose_stat_u64(out, "cmd_flush", st->cmd_flush);
    mc_compose_stat_u64(out, "cmd_touch", st->cmd_touch);
    mc_compose_stat_u64(out, "get_hits", st->get_hits);
    mc_compose_stat_u64(out, "get_misses", st->get_misses);
    mc_compose_stat_u64(out, "get_expired", st->get_expired);
    mc_compose_stat_u64(out, "delete_misses", st->delete_misses);
    mc_compose_stat_u64(out, "delete_hits", st->delete_hits);
    mc_compose_stat_u64(out, "incr_misses", st->incr_misses);
    mc_compose_stat_u64(out, "incr_hits", st->incr_hits);
    mc_compose_stat_u64(out, "decr_misses", st->decr_misses);
    mc_compose_stat_u64(out, "decr_hits", st->decr_hits);
    mc_compose_stat_u64(out, "cas_misses", st->cas_misses);
    mc_compose_stat_u64(out, "cas_hits", st->cas_hits);
    mc_compose_stat_u64(out, "cas_badval", st->cas_badval);
    mc_compose_stat_u64(out, "touch_hits", st->touch_hits);
    mc_compose_stat_u64(out, "touch_misses", st->touch_misses);
    mc_compose_stat_u64(out, "bytes_read", rs.bytes_read);
    mc_compose_stat_u64(out, "bytes_written", rs.bytes_written);
    mc_compose_stat_u64(out, "limit_maxbytes", limit);
    mc_compose_stat_u64(out, "threads", rs.threads);
    mc_compose_stat_u64(out, "bytes", ss->bytes);
    mc_compose_stat_u64(out, "curr_items", ss->items);
    mc_compose_stat_u64(out, "total_items", ss->total_items);
    mc_compose_stat_u64(out, "expired_unfetched", ss->expired_unfetched);
    mc_compose_stat_u64(out, "evicted_unfetched", ss->evicted_unfetched);
    mc_compose_stat_u64(out, "evictions", ss->evicted_items);
    mc_compose_stat_u64(out, "reclaimed", ss->expired_items);
    mc_compose_stat_u64(out, "segments_used", ss->segs_used);
    mc_compose_stat_u64(out, "segments_free", ss->segs_free);
    mc_compose_stat_u64(out, "segment_merges", ss->merges);
    mc_compose_reply(out, MC_R_END);
}

/* Append a finished slot's reply to the write buffer. */
static int
slot_emit(struct mc_worker *mw, struct slot *s, struct buf *out)
{
    switch (s->kind) {
    case SLOT_BYTES:
        return buf_append(out, buf_rptr(&s->out), buf_len(&s->out));
    case SLOT_EXEC:
        if (s->parts[0] == NULL) {
            return mc_compose_reply(out, MC_R_OOM);
        }
        return buf_append(out, buf_rptr(&s->parts[0]->reply), buf_len(&s->parts[0]->reply));
    case SLOT_GET: {
        size_t mark = buf_len(out);
        for (uint32_t i = 0; i < s->nkeys; i++) {
            struct mc_msg *m = s->parts[s->keys[i].part];
            uint32_t k = s->keys[i].idx;
            if (m == NULL || k >= m->nkeys) {
                goto too_large; /* the owner could not hold its answers */
            }
            uint32_t from = k > 0 ? m->koff[k - 1] : 0;
            if (buf_append(out, buf_rptr(&m->reply) + from, m->koff[k] - from) < 0) {
                goto too_large;
            }
        }
        return mc_compose_reply(out, MC_R_END);
    too_large:
        out->wpos = out->rpos + mark;
        return buf_puts(out, "SERVER_ERROR out of memory writing get response\r\n");
    }
    case SLOT_FLUSH:
        return s->noreply ? 0 : mc_compose_reply(out, MC_R_OK);
    case SLOT_STATS: {
        struct mc_stats st = {0};
        struct seg_stats ss = {0};
        for (uint32_t i = 0; i < s->nparts; i++) {
            if (s->parts[i] == NULL) {
                continue;
            }
            sum_stats(&st, &s->parts[i]->st);
            ss.bytes += s->parts[i]->ss.bytes;
            ss.items += s->parts[i]->ss.items;
            ss.total_items += s->parts[i]->ss.total_items;
            ss.expired_unfetched += s->parts[i]->ss.expired_unfetched;
            ss.evicted_unfetched += s->parts[i]->ss.evicted_unfetched;
            ss.evicted_items += s->parts[i]->ss.evicted_items;
            ss.expired_items += s->parts[i]->ss.expired_items;
            ss.segs_used += s->parts[i]->ss.segs_used;
            ss.segs_free += s->parts[i]->ss.segs_free;
            ss.merges += s->parts[i]->ss.merges;
        }
        write_stats(out, &st, &ss, config_uint(mw->cfg, "memory-limit"));
        return 0;
    }
    }
    return 0;
}

/* Send every completed slot at the head of the queue, in order. */
static int
slots_flush(struct mc_worker *mw, struct conn *c, struct mc_conn *st)
{
    while (st->qlen > 0) {
        struct slot *s = st->q[st->qhead];
        if (s->waiting > 0) {
            break;
        }
        int rc = slot_emit(mw, s, conn_wbuf(c));
        slot_free(s);
        st->qhead = (st->qhead + 1) % st->qcap;
        st->qlen--;
        st->seq_head++;
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

/* ---- dispatch ---- */

/* Send part `part` of slot seq to worker dest, or run it here when dest is this worker. */
static int
send_part(struct mc_worker *mw, struct conn *c, struct slot *s, struct mc_msg *m, unsigned dest)
{
    if (dest == mw->id) {
        msg_execute(mw, m);
        s->parts[m->part] = m;
        s->waiting--;
        return 0;
    }
    if (conn_forward(c, dest, &m->hdr) < 0) {
        msg_free(m);
        s->waiting--; /* answered as if empty: the part reports the failure */
        return -ENOMEM;
    }
    return 0;
}

/* A single-key request owned by worker dest (not this one): forward its text. */
static int
forward_exec(struct mc_worker *mw, struct conn *c, struct mc_conn *st, const char *text, size_t len,
             unsigned dest)
{
    uint64_t seq = slot_seq_next(st);
    struct slot *s = slot_push(st, SLOT_EXEC, 1);
    struct mc_msg *m = s != NULL ? msg_new(OP_EXEC, seq, 0) : NULL;
    if (m == NULL || buf_append(&m->req, text, len) < 0) {
        msg_free(m);
        return -ENOMEM;
    }
    return send_part(mw, c, s, m, dest);
}

/* get/gets/gat/gats whose keys may live on several shards. */
static int
dispatch_get(struct mc_worker *mw, struct conn *c, struct mc_conn *st, const struct mc_req *req)
{
    struct mc_key_iter it;
    const char *key;
    size_t klen;

    /* The common case: every key is ours and nothing waits: answer straight into the output. */
    bool all_local = true;
    mc_args_begin(req, &it);
    while (all_local && mc_args_next(&it, &key, &klen)) {
        all_local = mc_shard_of(mc_key_hash(key, klen), mw->n) == mw->id;
    }
    if (all_local) {
        struct buf *out = reply_out(c, st);
        if (out == NULL) {
            return -ENOMEM;
        }
        size_t mark = buf_len(out);
        mc_args_begin(req, &it);
        while (mc_args_next(&it, &key, &klen)) {
            if (mc_exec_get_key(&mw->shard, req, key, klen, mc_key_hash(key, klen), out) < 0) {
                out->wpos = out->rpos + mark;
                return buf_puts(out, "SERVER_ERROR out of memory writing get response\r\n");
            }
        }
        return mc_compose_reply(out, MC_R_END);
    }

    /* Split: one part per owning shard, each a request line of that shard's keys. */
    uint32_t *part_of = calloc(mw->n, sizeof(*part_of)); /* shard -> part + 1 */
    struct mc_msg **msgs = calloc(mw->n, sizeof(*msgs));
    uint64_t seq = slot_seq_next(st);
    struct slot *s = NULL;
    int rc = -ENOMEM;
    if (part_of == NULL || msgs == NULL) {
        goto out;
    }
    uint32_t nparts = 0;
    mc_args_begin(req, &it);
    while (mc_args_next(&it, &key, &klen)) {
        unsigned sh = mc_shard_of(mc_key_hash(key, klen), mw->n);
        if (part_of[sh] == 0) {
            part_of[sh] = ++nparts;
        }
    }
    s = slot_push(st, SLOT_GET, nparts);
    if (s == NULL || (s->keys = calloc(req->nkeys, sizeof(*s->keys))) == NULL) {
        goto out;
    }
    s->nkeys = req->nkeys;
    for (unsigned sh = 0; sh < mw->n; sh++) {
        if (part_of[sh] == 0) {
            continue;
        }
        struct mc_msg *m = msg_new(OP_GET, seq, part_of[sh] - 1);
        if (m == NULL || (m->koff = calloc(req->nkeys, sizeof(*m->koff))) == NULL) {
            msg_free(m);
            goto out;
        }
        msgs[sh] = m;
        /* "gat 300 " + keys: the command word and exptime as the client sent them. */
        buf_puts(&m->req, mc_cmd_name(req->cmd));
        if (req->cmd == MC_CMD_GAT || req->cmd == MC_CMD_GATS) {
            buf_printf(&m->req, " %d", (int)req->exptime);
        }
    }
    uint32_t i = 0;
    mc_args_begin(req, &it);
    while (mc_args_next(&it, &key, &klen)) {
        unsigned sh = mc_shard_of(mc_key_hash(key, klen), mw->n);
        struct mc_msg *m = msgs[sh];
        s->keys[i].part = part_of[sh] - 1;
        s->keys[i].idx = m->nkeys++;
        if (buf_puts(&m->req, " ") < 0 || buf_append(&m->req, key, klen) < 0) {
            goto out;
        }
        i++;
    }
    rc = 0;
    for (unsigned sh = 0; sh < mw->n; sh++) {
        if (msgs[sh] != NULL) {
            buf_puts(&msgs[sh]->req, "\r\n");
            struct mc_msg *m = msgs[sh];
            msgs[sh] = NULL;
            if (send_part(mw, c, s, m, sh) < 0) {
                rc = -ENOMEM;
            }
        }
    }
out:
    if (msgs != NULL) {
        for (unsigned sh = 0; sh < mw->n; sh++) {
            msg_free(msgs[sh]);
        }
    }
    free(msgs);
    free(part_of);
    return rc;
}

/* flush_all and stats: a part on every shard. */
static int
dispatch_all(struct mc_worker *mw, struct conn *c, struct mc_conn *st, const struct mc_req *req)
{
    bool flush = req->cmd == MC_CMD_FLUSH_ALL;
    uint64_t seq = slot_seq_next(st);
    struct slot *s = slot_push(st, flush ? SLOT_FLUSH : SLOT_STATS, mw->n);
    if (s == NULL) {
        return -ENOMEM;
    }
    s->noreply = req->noreply;
    int64_t when = 0;
    if (flush) {
        mw->shard.stats.cmd_flush++;
        if (req->has_delay && req->exptime > 0) {
            when = seg_exptime_abs(req->exptime, (int64_t)time(NULL));
        }
    }
    int rc = 0;
    for (unsigned sh = 0; sh < mw->n; sh++) {
        struct mc_msg *m = msg_new(flush ? OP_FLUSH : OP_STATS, seq, sh);
        if (m == NULL) {
            s->waiting--;
            rc = -ENOMEM;
            continue;
        }
        m->flush_when = when;
        if (send_part(mw, c, s, m, sh) < 0) {
            rc = -ENOMEM;
        }
    }
    return rc;
}

static void
write_settings(struct mc_worker *mw, struct buf *out)
{
    const struct config *cfg = mw->cfg;
    struct rt_stats rs;
    rt_stats_get(&rs);
    /* memcached's names for what has the same meaning, then every option of ours. */
    mc_compose_stat_u64(out, "maxbytes", config_uint(cfg, "memory-limit"));
    mc_compose_stat_u64(out, "maxconns", config_uint(cfg, "max-conns"));
    mc_compose_stat_u64(out, "tcpport", config_uint(cfg, "port"));
    mc_compose_stat_u64(out, "udpport", 0);
    mc_compose_stat(out, "inter",
                    config_str(cfg, "listen")[0] ? config_str(cfg, "listen") : "NULL");
    mc_compose_stat_u64(out, "num_threads", rs.threads);
    mc_compose_stat_u64(out, "item_size_max", config_uint(cfg, "max-item-size"));
    mc_compose_stat(out, "evictions",
                    strcmp(evict_names[config_enum(cfg, "eviction")], "none") ? "on" : "off");
    mc_compose_stat(out, "eviction_policy", evict_names[config_enum(cfg, "eviction")]);
    mc_compose_stat(out, "shutdown_command", config_bool(cfg, "enable-shutdown") ? "yes" : "no");
    mc_compose_stat_u64(out, "idle_timeout", config_uint(cfg, "idle-timeout"));
    mc_compose_stat_u64(out, "segment_size", config_uint(cfg, "segment-size"));
    mc_compose_reply(out, MC_R_END);
}

/* Commands that need no shard. Returns 0, RT_CLOSE or a negative errno. */
static int
dispatch_local(struct mc_worker *mw, struct conn *c, struct mc_conn *st, const struct mc_req *req)
{
    struct buf *out = reply_out(c, st);
    if (out == NULL) {
        return -ENOMEM;
    }
    switch (req->cmd) {
    case MC_CMD_VERSION:
        return mc_compose_version(out, MC_PROTOCOL_VERSION);
    case MC_CMD_VERBOSITY:
        log_set_level(req->verbosity >= 2   ? LOG_DEBUG
                      : req->verbosity == 1 ? LOG_VERBOSE
                                            : LOG_INFO);
        return req->noreply ? 0 : mc_compose_reply(out, MC_R_OK);
    case MC_CMD_QUIT:
        return RT_CLOSE;
    case MC_CMD_SHUTDOWN:
        log_info("shutdown requested by a client");
        rt_request_stop();
        return RT_CLOSE;
    case MC_CMD_MN:
        return mc_compose_reply(out, MC_R_MN);
    case MC_CMD_STATS:
        if (req->nargs == 1 && req->args_len >= 8 && memcmp(req->args, "settings", 8) == 0) {
            write_settings(mw, out);
            return 0;
        }
        return mc_compose_reply(out, MC_R_ERROR);
    default:
        return mc_compose_reply(out, MC_R_ERROR);
    }
}

/* True for requests about one key, whose hash the caller computes once. */
static bool
is_keyed(const struct mc_req *req)
{
    switch (req->cmd) {
    case MC_CMD_GET:
    case MC_CMD_GETS:
    case MC_CMD_GAT:
    case MC_CMD_GATS:
        return req->nkeys == 1;
    case MC_CMD_FLUSH_ALL:
    case MC_CMD_STATS:
    case MC_CMD_VERSION:
    case MC_CMD_VERBOSITY:
    case MC_CMD_QUIT:
    case MC_CMD_SHUTDOWN:
    case MC_CMD_MN:
        return false;
    default:
        return true;
    }
}

/* One parsed request; hash is its key's hash when is_keyed(req). */
static int
dispatch(struct mc_worker *mw, struct conn *c, struct mc_conn *st, const struct mc_req *req,
         const char *text, uint64_t hash)
{
    switch (req->cmd) {
    case MC_CMD_GET:
    case MC_CMD_GETS:
    case MC_CMD_GAT:
    case MC_CMD_GATS:
        if (req->nkeys == 1 && mc_shard_of(hash, mw->n) == mw->id) {
            /* The most common request of all: one key, ours. */
            struct buf *out = reply_out(c, st);
            if (out == NULL) {
                return -ENOMEM;
            }
            int rc = mc_exec_get_key(&mw->shard, req, req->key, req->klen, hash, out);
            return rc < 0 ? rc : mc_compose_reply(out, MC_R_END);
        }
        return dispatch_get(mw, c, st, req);
    case MC_CMD_FLUSH_ALL:
        return dispatch_all(mw, c, st, req);
    case MC_CMD_STATS:
        if (req->nargs == 0) {
            return dispatch_all(mw, c, st, req);
        }
        return dispatch_local(mw, c, st, req);
    case MC_CMD_VERSION:
    case MC_CMD_VERBOSITY:
    case MC_CMD_QUIT:
    case MC_CMD_SHUTDOWN:
    case MC_CMD_MN:
        return dispatch_local(mw, c, st, req);
    default:
        break;
    }
    /* A single-key command: here, or on the key's owner. */
    unsigned owner = mc_shard_of(hash, mw->n);
    if (owner != mw->id) {
        return forward_exec(mw, c, st, text, req->consumed, owner);
    }
    struct buf *out = reply_out(c, st);
    return out != NULL ? mc_exec(&mw->shard, req, hash, out) : -ENOMEM;
}

/* ---- the product's callbacks ---- */

/* Requests parsed ahead of execution, so that their storage lookups overlap. */
#define AHEAD 8

struct ahead {
    struct mc_req req;
    uint64_t hash;
    bool local; /* keyed and owned by this worker: prefetched */
};

/* A parse result that is not a request to execute: an error, swallowed bytes, or "need more". */
static int
handle_parse_result(struct conn *c, struct mc_conn *st, enum mc_parse_rc rc, struct mc_req *req)
{
    struct buf *in = conn_rbuf(c);
    switch (rc) {
    case MC_PARSE_AGAIN:
        /* Make room for the whole request at once: a large value is read in place. */
        if (st->parser.need > buf_len(in)) {
            (void)buf_reserve(in, st->parser.need - buf_len(in));
        }
        return 1;
    case MC_PARSE_SKIP:
        buf_consume(in, req->consumed);
        return 0;
    case MC_PARSE_ERROR: {
        struct buf *out = reply_out(c, st);
        if (out == NULL) {
            return -ENOMEM;
        }
        mc_compose_error(out, &req->err);
        if (req->err.action == MC_ERR_CLOSE) {
            return RT_CLOSE;
        }
        buf_consume(in, req->consumed);
        return 0;
    }
    case MC_PARSE_OK:
        break;
    }
    return 0;
}

/*
 * Parse up to AHEAD requests, prefetch the hash buckets of those this shard owns, then their
 * items, then execute them in order: the memory latency of a pipeline's lookups overlaps
 * instead of adding up. Requests parsed but not executed (backpressure) are parsed again on the
 * next call.
 */
static int
mc_on_data(void *ctx, struct conn *c)
{
    struct mc_worker *mw = ctx;
    struct mc_conn *st = conn_state(c);
    struct buf *in = conn_rbuf(c);
    struct ahead batch[AHEAD];
    if (!st->init) {
        mc_parser_init(&st->parser, &mw->popts);
        st->init = true;
    }
    while (buf_len(in) > 0) {
        size_t n = 0, off = 0;
        enum mc_parse_rc last = MC_PARSE_OK;
        while (n < AHEAD && off < buf_len(in)) {
            last = mc_parse(&st->parser, buf_rptr(in) + off, buf_len(in) - off, &batch[n].req);
            if (last != MC_PARSE_OK) {
                break;
            }
            off += batch[n].req.consumed;
            n++;
        }
        for (size_t i = 0; i < n; i++) {
            struct ahead *a = &batch[i];
            a->hash = 0;
            a->local = is_keyed(&a->req);
            if (a->local) {
                a->hash = mc_key_hash(a->req.key, a->req.klen);
                a->local = mc_shard_of(a->hash, mw->n) == mw->id;
                if (a->local) {
                    seg_prefetch(mw->shard.seg, a->hash);
                }
            }
        }
        for (size_t i = 0; i < n && n > 1; i++) {
            if (batch[i].local) {
                seg_prefetch_item(mw->shard.seg, batch[i].hash);
            }
        }
        for (size_t i = 0; i < n; i++) {
            if (conn_output_full(c) || st->qlen >= SLOTS_MAX) {
                mc_parser_rewind(&st->parser);
                return st->qlen >= SLOTS_MAX ? RT_PAUSED : 0;
            }
            int r = dispatch(mw, c, st, &batch[i].req, buf_rptr(in), batch[i].hash);
            buf_consume(in, batch[i].req.consumed);
            /* A slot whose parts all ran here is complete already: send it now. */
            if (r == 0 && st->qlen > 0) {
                r = slots_flush(mw, c, st);
            }
            if (r != 0) {
                return r;
            }
        }
        if (last != MC_PARSE_OK) {
            /* Handled now, whatever the backpressure: an error may have started a swallow in the
             * parser, so it must not be parsed twice. */
            int r = handle_parse_result(c, st, last, &batch[n].req);
            if (r != 0) {
                return r > 0 ? 0 : r;
            }
        }
    }
    return 0;
}

static void
mc_on_request(void *ctx, struct rt_msg *hdr)
{
    msg_execute(ctx, (struct mc_msg *)hdr);
    if (rt_msg_return(hdr) < 0) {
        /* The origin will never hear back; the connection's slot stays until it closes. */
        log_error("out of memory returning a forwarded reply");
    }
}

static void
mc_on_reply(void *ctx, struct conn *c, struct rt_msg *hdr)
{
    struct mc_msg *m = (struct mc_msg *)hdr;
    struct mc_conn *st = c != NULL ? conn_state(c) : NULL;
    struct slot *s = st != NULL ? slot_find(st, m->seq) : NULL;
    if (s == NULL) {
        msg_free(m); /* the connection is gone: drop the late reply */
        return;
    }
    s->parts[m->part] = m;
    s->waiting--;
    if (slots_flush(ctx, c, st) < 0) {
        log_warn("connection output is over its cap; replies dropped");
    }
}

static void
mc_on_close(void *ctx, struct conn *c)
{
    struct mc_conn *st = conn_state(c);
    while (st->qlen > 0) {
        slot_free(st->q[st->qhead]);
        st->qhead = (st->qhead + 1) % st->qcap;
        st->qlen--;
    }
    free(st->q);
    st->q = NULL;
}

static void
mc_tick(void *ctx)
{
    struct mc_worker *mw = ctx;
    seg_tick(mw->shard.seg);
}

static int
mc_worker_setup(unsigned id, unsigned n, const struct config *cfg, void **ctx)
{
    struct mc_worker *mw = calloc(1, sizeof(*mw));
    if (mw == NULL) {
        return -ENOMEM;
    }
    mw->id = id;
    mw->n = n;
    mw->cfg = cfg;
    struct seg_options o;
    seg_options_init(&o);
    o.mem_bytes = config_uint(cfg, "memory-limit") / n;
    o.item_max = config_uint(cfg, "max-item-size");
    o.seg_size = config_uint(cfg, "segment-size");
    while (o.seg_size < o.item_max) {
        o.seg_size <<= 1;
    }
    o.seed = id + 1;
    int rc = seg_evict_policy_parse(evict_names[config_enum(cfg, "eviction")], &o.evict);
    if (rc == 0) {
        rc = seg_create(&mw->shard.seg, &o);
    }
    if (rc < 0) {
        log_error("worker %u: cannot create its storage shard (%zu bytes of --memory-limit, "
                  "segments of %zu bytes, items up to %zu): %s",
                  id, o.mem_bytes, o.seg_size, o.item_max, strerror(-rc));
        free(mw);
        return rc;
    }
    mw->popts.max_value = (uint32_t)(o.item_max - ITEM_ROOM);
    mw->popts.shutdown_enabled = config_bool(cfg, "enable-shutdown");
    *ctx = mw;
    return 0;
}

static void
mc_worker_teardown(void *ctx)
{
    struct mc_worker *mw = ctx;
    seg_destroy(&mw->shard.seg);
    free(mw);
}

const struct rt_product mc_product = {
    .name = "petrel",
    .conn_state_size = sizeof(struct mc_conn),
    .request_max = (16u << 20) + MC_LINE_MAX,
    .reply_max = REPLY_MAX,
    .worker_setup = mc_worker_setup,
    .worker_teardown = mc_worker_teardown,
    .on_data = mc_on_data,
    .on_close = mc_on_close,
    .tick = mc_tick,
    .on_request = mc_on_request,
    .on_reply = mc_on_reply,
    .msg_free = msg_free_rt,
};
