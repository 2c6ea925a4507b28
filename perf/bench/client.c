/*
 * client: the client threads and their event loops; the phases and timing rules are described
 * in client.h.
 */
#include "client.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "churn.h"
#include "petrel/buf.h"
#include "rate.h"
#include "transport.h"

#define NS_PER_S   1000000000ull
#define READ_CHUNK (64 * 1024)
/*
 * Buffers are not shrunk: they never hold more than one pipeline's worth of requests or
 * replies, and keeping them avoids a malloc/free per burst.
 */
#define IN_BUF_MAX      (512u << 20) /* pipeline * multiget * (value + line), generously */
#define OUT_BUF_MAX     (512u << 20)
#define PRELOAD_DEPTH   16 /* in-flight sets per connection while preloading */
#define EVENTS_PER_WAIT 64
#define HANDSHAKE_S     10 /* handshakes fail if none of a thread's completes for this long */

enum phase {
    PHASE_PRELOAD,
    PHASE_RUN,
};

/* A request written and not yet answered. */
struct inflight {
    uint64_t t0; /* what its latency is measured from (scheduled or written time) */
    uint8_t op;  /* enum op_type */
    uint32_t nkeys;
    uint32_t slot; /* --fanout: its logical request's place in the group's ring */
};

/* --fanout: a logical request, one get on each connection of its group. */
struct logical {
    uint64_t t0;   /* due (open loop) or issue (closed loop) time, shared by its parts */
    uint32_t left; /* parts not yet answered */
};

/*
 * --fanout: `fanout` consecutive connections of one thread. Each connection answers in order
 * and every logical request puts one part on each, so logical requests complete in the order
 * they were issued and a ring suffices.
 */
struct group {
    struct conn *conns; /* the first of its `fanout` connections in the thread's array */
    struct logical *q;  /* ring of `pipeline` entries, oldest at qhead */
    uint32_t qhead;
    uint32_t qlen;
    uint32_t gidx;    /* index among all groups of the run */
    struct rate rate; /* open-loop schedule of logical requests */
    bool dead;        /* a connection of the group was lost: it issues nothing more */
};

/* One connection; owned by one thread. */
struct conn {
    struct transport tp;
    uint32_t gidx;      /* index among all connections of the run */
    struct buf in;      /* replies received, not yet parsed */
    struct buf out;     /* requests composed, not yet written */
    struct inflight *q; /* ring of qcap entries, oldest at qhead */
    uint32_t qhead;
    uint32_t qlen;
    uint32_t qcap;        /* max(pipeline, PRELOAD_DEPTH); the run uses only `pipeline` */
    struct rate rate;     /* open-loop schedule */
    uint64_t preload_pos; /* next position of the preload sequence this connection writes */
    bool want_out;        /* EPOLLOUT is registered */
    bool read_wants_out;  /* the last read waits for the socket to be writable (TLS) */
    bool ready;           /* handshake done (always, for TCP) */
    bool dead;
    struct group *grp; /* --fanout: the group it belongs to; NULL otherwise */
};

/* Written by the main thread before a barrier, read by the client threads after it. */
struct shared {
    const struct bench_opts *o;
    const struct workload *w;
    const struct addrinfo *ai;    /* the server, resolved once */
    const struct tls_shared *tls; /* --tls: CA and certificate, read-only */
    pthread_barrier_t barrier;
    uint64_t start_ns; /* run start: warm-up begins, the first request may go out */
    uint64_t mstart;   /* measured window [mstart, mend) */
    uint64_t mend;
    uint64_t deadline; /* end of the drain */
    atomic_bool abort; /* a thread failed to set up: everyone stops after the barrier */
};

struct cthread {
    pthread_t tid;
    uint32_t idx;
    struct shared *sh;
    int epfd;
    bool no_pwait2; /* the kernel lacks epoll_pwait2(): millisecond timeouts instead */
    struct conn *conns;
    uint32_t nconns;
    struct group *groups; /* --fanout: nconns / fanout groups; NULL otherwise */
    uint32_t ngroups;
    struct bench_rng rng;
    struct tls_thread *tls; /* --tls: this thread's random generator and configuration */
    struct bench_stats st;
    enum phase phase;
    uint32_t live;      /* connections not dead */
    struct request req; /* scratch: the request being composed (large: up to 256 keys) */
};

uint64_t
bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

int
bench_stats_init(struct bench_stats *s)
{
    memset(s, 0, sizeof(*s));
    int rc = hist_init(&s->latency, BENCH_HIST_SUB_BITS, BENCH_HIST_MAX_NS);
    if (rc == 0) {
        rc = hist_init(&s->send_lag, BENCH_HIST_SUB_BITS, BENCH_HIST_MAX_NS);
    }
    if (rc == 0) {
        rc = hist_init(&s->conn_latency, BENCH_HIST_SUB_BITS, BENCH_HIST_MAX_NS);
    }
    if (rc == 0) {
        rc = hist_init(&s->fanout_latency, BENCH_HIST_SUB_BITS, BENCH_HIST_MAX_NS);
    }
    if (rc < 0) {
        bench_stats_free(s);
    }
    return rc;
}

void
bench_stats_merge(struct bench_stats *dst, const struct bench_stats *src)
{
    hist_merge(&dst->latency, &src->latency);
    hist_merge(&dst->send_lag, &src->send_lag);
    dst->requests += src->requests;
    for (int i = 0; i < OP__COUNT; i++) {
        dst->by_op[i] += src->by_op[i];
    }
    dst->get_keys += src->get_keys;
    dst->get_hits += src->get_hits;
    dst->errors += src->errors;
    dst->conn_errors += src->conn_errors;
    dst->unfinished += src->unfinished;
    dst->scheduled += src->scheduled;
    dst->preload_sets += src->preload_sets;
    dst->preload_errors += src->preload_errors;
    hist_merge(&dst->conn_latency, &src->conn_latency);
    dst->conns += src->conns;
    dst->conns_resumed += src->conns_resumed;
    dst->conn_failures += src->conn_failures;
    dst->conns_unfinished += src->conns_unfinished;
    dst->conns_scheduled += src->conns_scheduled;
    hist_merge(&dst->fanout_latency, &src->fanout_latency);
    dst->fanout_requests += src->fanout_requests;
    dst->fanout_unfinished += src->fanout_unfinished;
    dst->fanout_scheduled += src->fanout_scheduled;
}

void
bench_stats_free(struct bench_stats *s)
{
    hist_free(&s->latency);
    hist_free(&s->send_lag);
    hist_free(&s->conn_latency);
    hist_free(&s->fanout_latency);
}

/* ---- connections ---- */

static void
conn_fail(struct cthread *th, struct conn *c, const char *why, int err)
{
    if (c->dead) {
        return;
    }
    char what[320];

    /* One line per lost connection: rare, and the reason matters when it happens. */
    fprintf(stderr, "petrel-bench: connection %u: %s%s%s\n", c->gidx, why, err ? ": " : "",
            err ? c->tp.ops->describe(&c->tp, err, what, sizeof(what)) : "");
    c->tp.ops->close(&c->tp); /* closing the fd also removes it from the epoll set */
    c->dead = true;
    th->live--;
    th->st.conn_errors++;
    if (c->grp != NULL) {
        c->grp->dead = true;
    }
}

static void
conn_want_out(struct cthread *th, struct conn *c, bool on)
{
    if (c->want_out == on) {
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(th->epfd, EPOLL_CTL_MOD, c->tp.fd, &ev) == 0) {
        c->want_out = on;
    }
}

/* Write what is composed; bounded by the out buffer, which holds at most qcap requests. */
static void
conn_flush(struct cthread *th, struct conn *c)
{
    while (!c->dead && buf_len(&c->out) > 0) {
        ssize_t n = c->tp.ops->write(&c->tp, buf_rptr(&c->out), buf_len(&c->out));
        if (n == -EAGAIN) {
            /* A write that waits for readability is tried again after the next wake-up. */
            conn_want_out(th, c, c->tp.want_write || c->read_wants_out);
            return;
        }
        if (n <= 0) {
            conn_fail(th, c, "write failed", n < 0 ? (int)n : -EPIPE);
            return;
        }
        buf_consume(&c->out, (size_t)n);
    }
    if (!c->dead) {
        conn_want_out(th, c, c->read_wants_out);
    }
}

/*
 * Compose th->req and queue it as in flight since t0 (part of the logical request in ring slot
 * `slot` of c's group, with --fanout). Returns 0 or a negative errno.
 */
static int
conn_push(struct cthread *th, struct conn *c, uint64_t t0, uint32_t slot)
{
    int rc = th->sh->o->proto->compose(&c->out, th->sh->w, &th->req);
    if (rc < 0) {
        conn_fail(th, c, "cannot compose a request", rc);
        return rc;
    }
    struct inflight *e = &c->q[(c->qhead + c->qlen) % c->qcap];
    e->t0 = t0;
    e->op = (uint8_t)th->req.op;
    e->nkeys = th->req.nkeys;
    e->slot = slot;
    c->qlen++;
    return 0;
}

/*
 * Queue what this connection may send now: at most its pipeline's free slots, so the work per
 * call is bounded by --pipeline (PRELOAD_DEPTH while preloading).
 */
static void
conn_fill(struct cthread *th, struct conn *c, uint64_t now)
{
    const struct shared *sh = th->sh;
    const struct bench_opts *o = sh->o;

    if (th->phase == PHASE_PRELOAD) {
        uint64_t total = workload_preload_count(sh->w);
        while (c->qlen < c->qcap && c->preload_pos < total) {
            workload_preload(sh->w, &th->rng, c->preload_pos, &th->req);
            c->preload_pos += o->connections;
            if (conn_push(th, c, now, 0) < 0) {
                return;
            }
        }
        return;
    }
    if (c->grp != NULL) {
        return; /* --fanout: its group fills it (group_fill) */
    }
    if (o->rate == 0) {
        /* Nothing before the start: a request sent in the lead would be neither measured nor
         * warm-up, yet the server would serve it. */
        while (now >= sh->start_ns && now < sh->mend && c->qlen < o->pipeline) {
            workload_next(sh->w, &th->rng, &th->req);
            if (conn_push(th, c, now, 0) < 0) {
                return;
            }
        }
        return;
    }
    while (c->qlen < o->pipeline) {
        uint64_t t = rate_peek(&c->rate);
        if (t > now || t >= sh->mend) {
            break;
        }
        rate_take(&c->rate);
        workload_next(sh->w, &th->rng, &th->req);
        if (conn_push(th, c, t, 0) < 0) {
            return;
        }
        if (t >= sh->mstart) {
            hist_record(&th->st.send_lag, now - t);
        }
    }
}

/* ---- fanout groups ---- */

/* Issue one logical request due (or started) at t0: a get on each connection of the group. */
static void
group_issue(struct cthread *th, struct group *g, uint64_t t0)
{
    const struct shared *sh = th->sh;
    uint32_t n = sh->o->fanout;
    uint32_t slot = (g->qhead + g->qlen) % sh->o->pipeline;

    g->q[slot] = (struct logical){.t0 = t0, .left = n};
    g->qlen++;
    for (uint32_t i = 0; i < n && !g->dead; i++) {
        workload_next(sh->w, &th->rng, &th->req);
        conn_push(th, &g->conns[i], t0, slot);
    }
}

/*
 * Issue what the group may issue now: at most its pipeline's free slots, so the work per call is
 * bounded by --pipeline logical requests of --fanout parts.
 */
static void
group_fill(struct cthread *th, struct group *g, uint64_t now)
{
    const struct shared *sh = th->sh;
    const struct bench_opts *o = sh->o;

    if (o->rate == 0) {
        while (!g->dead && now >= sh->start_ns && now < sh->mend && g->qlen < o->pipeline) {
            group_issue(th, g, now);
        }
        return;
    }
    while (!g->dead && g->qlen < o->pipeline) {
        uint64_t t = rate_peek(&g->rate);
        if (t > now || t >= sh->mend) {
            break;
        }
        rate_take(&g->rate);
        group_issue(th, g, t);
        if (t >= sh->mstart) {
            hist_record(&th->st.send_lag, now - t);
        }
    }
}

/* One part of the logical request in `slot` was answered at now. */
static void
group_complete(struct cthread *th, struct group *g, uint32_t slot, uint64_t now)
{
    const struct shared *sh = th->sh;
    struct logical *lg = &g->q[slot];

    if (--lg->left == 0 && lg->t0 >= sh->mstart && lg->t0 < sh->mend) {
        hist_record(&th->st.fanout_latency, now > lg->t0 ? now - lg->t0 : 0);
        th->st.fanout_requests++;
    }
    while (g->qlen > 0 && g->q[g->qhead].left == 0) {
        g->qhead = (g->qhead + 1) % sh->o->pipeline;
        g->qlen--;
    }
}

/* Account for the reply to the oldest request in flight on c, received at now. */
static void
conn_complete(struct cthread *th, struct conn *c, const struct inflight *e,
              const struct proto_result *res, uint64_t now)
{
    struct bench_stats *st = &th->st;

    if (th->phase == PHASE_PRELOAD) {
        st->preload_sets++;
        st->preload_errors += (res->error || res->misses) ? 1 : 0;
        return;
    }
    if (c->grp != NULL) {
        group_complete(th, c->grp, e->slot, now);
    }
    if (e->t0 < th->sh->mstart || e->t0 >= th->sh->mend) {
        return;
    }
    hist_record(&st->latency, now > e->t0 ? now - e->t0 : 0);
    st->requests++;
    st->by_op[e->op]++;
    st->errors += res->error ? 1 : 0;
    if (e->op == OP_GET && !res->error) {
        st->get_keys += e->nkeys;
        st->get_hits += res->hits;
    } else if (e->op == OP_GET) {
        st->get_keys += e->nkeys;
    }
}

/* Match every complete reply in the read buffer to its request. */
static void
conn_parse(struct cthread *th, struct conn *c, uint64_t now)
{
    const struct proto *p = th->sh->o->proto;

    while (c->qlen > 0 && buf_len(&c->in) > 0) {
        const struct inflight *e = &c->q[c->qhead];
        struct proto_result res;
        ssize_t len =
            p->parse(buf_rptr(&c->in), buf_len(&c->in), (enum op_type)e->op, e->nkeys, &res);
        if (len == 0) {
            break;
        }
        if (len < 0) {
            conn_fail(th, c, "malformed reply", (int)len);
            return;
        }
        buf_consume(&c->in, (size_t)len);
        conn_complete(th, c, e, &res, now);
        c->qhead = (c->qhead + 1) % c->qcap;
        c->qlen--;
    }
    if (c->qlen == 0 && buf_len(&c->in) > 0) {
        conn_fail(th, c, "reply to no request", -EPROTO);
    }
}

/*
 * Read once (level-triggered epoll calls again if more is waiting) and match every complete
 * reply to its request: bounded by READ_CHUNK bytes per call, or a little more when the
 * transport already holds decrypted bytes that no readiness event would announce (TLS: at most
 * a record and its read-ahead).
 */
static void
conn_read(struct cthread *th, struct conn *c, uint64_t now)
{
    ssize_t n;

    do {
        int rc = buf_reserve(&c->in, READ_CHUNK);
        if (rc < 0) {
            conn_fail(th, c, "reply too large", rc);
            return;
        }
        n = c->tp.ops->read(&c->tp, buf_wptr(&c->in), buf_avail(&c->in));
        if (n == -EAGAIN) {
            /* TLS: a read that must send first (an alert) goes on when the socket is writable. */
            c->read_wants_out = c->tp.want_write;
            if (c->read_wants_out) {
                conn_want_out(th, c, true);
            }
            return;
        }
        if (n <= 0) {
            conn_fail(th, c, n == 0 ? "closed by the server" : "read failed", (int)n);
            return;
        }
        c->read_wants_out = false;
        buf_commit(&c->in, (size_t)n);
        conn_parse(th, c, now);
    } while (!c->dead && c->tp.ops->pending != NULL && c->tp.ops->pending(&c->tp));
}

/* ---- thread ---- */

/*
 * Advance connection c's handshake. Returns 0 once it is ready, -EAGAIN while it waits (for the
 * readiness now registered), or the failure, described on stderr.
 */
static int
conn_handshake(struct cthread *th, struct conn *c)
{
    const struct bench_opts *o = th->sh->o;
    char why[320];

    int rc = c->tp.ops->handshake(&c->tp);
    if (rc == -EAGAIN) {
        conn_want_out(th, c, c->tp.want_write);
        return rc;
    }
    if (rc < 0) {
        fprintf(stderr, "petrel-bench: TLS handshake with %s:%s failed: %s\n", o->host, o->port,
                c->tp.ops->describe(&c->tp, rc, why, sizeof(why)));
        return rc;
    }
    c->ready = true;
    conn_want_out(th, c, false);
    return 0;
}

/*
 * Finish every connection's handshake before the clock starts, so that no request of the run
 * waits for one and the handshakes' cost stays out of the results. All of the thread's
 * handshakes proceed at once. The client's share of a full handshake costs milliseconds of CPU,
 * so thousands of connections take seconds: the bound is HANDSHAKE_S without any progress.
 */
static int
thread_handshake(struct cthread *th)
{
    struct epoll_event evs[EVENTS_PER_WAIT];
    uint64_t deadline = bench_now_ns() + HANDSHAKE_S * NS_PER_S;
    uint32_t left = 0;
    int rc;

    for (uint32_t i = 0; i < th->nconns; i++) {
        struct conn *c = &th->conns[i];
        if (c->tp.ops->handshake == NULL) {
            c->ready = true;
        } else if ((rc = conn_handshake(th, c)) == -EAGAIN) {
            left++;
        } else if (rc < 0) {
            return rc;
        }
    }
    while (left > 0) {
        uint64_t now = bench_now_ns();
        if (now >= deadline) {
            fprintf(stderr, "petrel-bench: TLS handshakes with %s:%s stalled for %d s\n",
                    th->sh->o->host, th->sh->o->port, HANDSHAKE_S);
            return -ETIMEDOUT;
        }
        int n = bench_epoll_wait(th->epfd, evs, EVENTS_PER_WAIT, now, deadline, &th->no_pwait2);
        if (n < 0 && errno != EINTR) {
            return -errno;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->ready) {
                continue;
            }
            if ((rc = conn_handshake(th, c)) == 0) {
                left--;
                deadline = bench_now_ns() + HANDSHAKE_S * NS_PER_S;
            } else if (rc != -EAGAIN) {
                return rc;
            }
        }
    }
    return 0;
}

static int
thread_setup(struct cthread *th)
{
    const struct shared *sh = th->sh;
    const struct bench_opts *o = sh->o;
    int rc;

    th->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (th->epfd < 0) {
        fprintf(stderr, "petrel-bench: epoll_create1: %s\n", strerror(errno));
        return -errno;
    }
    if (o->tls.enabled && (rc = transport_tls_thread_setup(sh->tls, &th->tls)) < 0) {
        return rc;
    }
    for (uint32_t i = 0; i < th->nconns; i++) {
        struct conn *c = &th->conns[i];
        c->gidx = th->idx + i * o->threads;
        if (th->groups != NULL) {
            /* Whole groups per thread, round-robin: group k of thread t is group t + k * T. */
            struct group *g = &th->groups[i / o->fanout];
            if (i % o->fanout == 0) {
                g->conns = c;
            }
            c->grp = g;
            c->gidx = g->gidx * o->fanout + i % o->fanout;
        }
        transport_init(&c->tp, o->tls.enabled ? &transport_tls : &transport_tcp, th->tls);
        c->qcap = o->pipeline > PRELOAD_DEPTH ? o->pipeline : PRELOAD_DEPTH;
        c->q = calloc(c->qcap, sizeof(*c->q));
        c->preload_pos = c->gidx;
        buf_init(&c->in, READ_CHUNK, IN_BUF_MAX);
        buf_init(&c->out, 4096, OUT_BUF_MAX);
        if (c->q == NULL) {
            return -ENOMEM;
        }
        rc = c->tp.ops->open(&c->tp, sh->ai, 0);
        if (rc < 0) {
            fprintf(stderr, "petrel-bench: cannot connect to %s:%s: %s\n", o->host, o->port,
                    strerror(-rc));
            return rc;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(th->epfd, EPOLL_CTL_ADD, c->tp.fd, &ev) < 0) {
            return -errno;
        }
        th->live++;
    }
    return thread_handshake(th);
}

static void
thread_teardown(struct cthread *th)
{
    for (uint32_t i = 0; i < th->nconns; i++) {
        struct conn *c = &th->conns[i];
        if (c->tp.ops != NULL) {
            c->tp.ops->release(&c->tp);
        }
        buf_free(&c->in);
        buf_free(&c->out);
        free(c->q);
    }
    transport_tls_thread_teardown(&th->tls);
    if (th->epfd >= 0) {
        close(th->epfd);
    }
}

/*
 * epoll_pwait2() takes a nanosecond timeout, so the open-loop schedule costs no extra system
 * call per request (a timerfd would cost two: arm and read). Kernels before 5.11 lack it; then
 * the timeout is rounded up to whole milliseconds, which makes sends late by up to a
 * millisecond — the report's send lag shows it.
 */
int
bench_epoll_wait(int epfd, struct epoll_event *evs, int max, uint64_t now, uint64_t wake,
                 bool *no_pwait2)
{
    uint64_t left = wake > now ? wake - now : 0;

    if (!*no_pwait2) {
        struct timespec ts = {.tv_sec = (time_t)(left / NS_PER_S),
                              .tv_nsec = (long)(left % NS_PER_S)};
        int n = epoll_pwait2(epfd, evs, max, wake ? &ts : NULL, NULL);
        if (n >= 0 || errno != ENOSYS) {
            return n;
        }
        *no_pwait2 = true;
    }
    int ms = wake ? (int)((left + 999999) / 1000000) : -1;
    return epoll_wait(epfd, evs, max, ms);
}

/*
 * Whether the phase is over, and when the loop must wake next if nothing arrives (0: only for
 * I/O). Looks at every connection of the thread once: bounded by its connection count.
 */
static bool
thread_done(struct cthread *th, uint64_t now, uint64_t *wake)
{
    const struct shared *sh = th->sh;
    bool busy = false;

    *wake = 0;
    if (th->live == 0) {
        return true;
    }
    if (th->phase == PHASE_PRELOAD) {
        uint64_t total = workload_preload_count(sh->w);
        for (uint32_t i = 0; i < th->nconns && !busy; i++) {
            const struct conn *c = &th->conns[i];
            busy = !c->dead && (c->qlen > 0 || c->preload_pos < total);
        }
        return !busy;
    }
    if (now >= sh->deadline) {
        return true;
    }
    uint64_t next = now < sh->start_ns ? sh->start_ns : now < sh->mend ? sh->mend : sh->deadline;
    for (uint32_t i = 0; i < th->nconns; i++) {
        const struct conn *c = &th->conns[i];
        if (c->dead) {
            continue;
        }
        bool unsent = sh->o->rate > 0 && c->grp == NULL && rate_peek(&c->rate) < sh->mend;
        busy = busy || c->qlen > 0 || unsent;
        if (unsent && c->qlen < sh->o->pipeline && rate_peek(&c->rate) < next) {
            next = rate_peek(&c->rate);
        }
    }
    for (uint32_t i = 0; i < th->ngroups; i++) {
        const struct group *g = &th->groups[i];
        bool unsent = !g->dead && sh->o->rate > 0 && rate_peek(&g->rate) < sh->mend;
        busy = busy || unsent;
        if (unsent && g->qlen < sh->o->pipeline && rate_peek(&g->rate) < next) {
            next = rate_peek(&g->rate);
        }
    }
    *wake = next;
    return now >= sh->mend && !busy;
}

static void
thread_loop(struct cthread *th)
{
    struct epoll_event evs[EVENTS_PER_WAIT];

    for (;;) {
        uint64_t now = bench_now_ns(), wake;
        for (uint32_t i = 0; th->phase == PHASE_RUN && i < th->ngroups; i++) {
            group_fill(th, &th->groups[i], now);
        }
        for (uint32_t i = 0; i < th->nconns; i++) {
            struct conn *c = &th->conns[i];
            if (!c->dead) {
                conn_fill(th, c, now);
                if (!c->want_out) {
                    conn_flush(th, c);
                }
            }
        }
        if (thread_done(th, now, &wake)) {
            break;
        }
        int n = bench_epoll_wait(th->epfd, evs, EVENTS_PER_WAIT, now, wake, &th->no_pwait2);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "petrel-bench: epoll_wait: %s\n", strerror(errno));
            break;
        }
        now = bench_now_ns();
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c->dead && ((evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) ||
                             (c->read_wants_out && (evs[i].events & EPOLLOUT)))) {
                conn_read(th, c, now);
            }
            if (!c->dead && (evs[i].events & EPOLLOUT)) {
                conn_flush(th, c);
            }
        }
    }
}

/* Requests of the window left without a reply when the drain ended. */
static void
thread_count_unfinished(struct cthread *th)
{
    const struct shared *sh = th->sh;

    for (uint32_t i = 0; i < th->nconns; i++) {
        struct conn *c = &th->conns[i];
        for (uint32_t k = 0; k < c->qlen; k++) {
            uint64_t t0 = c->q[(c->qhead + k) % c->qcap].t0;
            th->st.unfinished += (t0 >= sh->mstart && t0 < sh->mend) ? 1 : 0;
        }
        if (sh->o->rate > 0 && c->grp == NULL) {
            uint64_t first = rate_count_by(&c->rate, sh->mstart - 1);
            uint64_t last = rate_count_by(&c->rate, sh->mend - 1);
            uint64_t from = c->rate.next_k > first ? c->rate.next_k : first;
            th->st.unfinished += last > from ? last - from : 0;
            th->st.scheduled += last - first;
        }
    }
    for (uint32_t i = 0; i < th->ngroups; i++) {
        const struct group *g = &th->groups[i];
        uint32_t n = sh->o->fanout;
        for (uint32_t k = 0; k < g->qlen; k++) {
            const struct logical *lg = &g->q[(g->qhead + k) % sh->o->pipeline];
            th->st.fanout_unfinished +=
                (lg->left > 0 && lg->t0 >= sh->mstart && lg->t0 < sh->mend) ? 1 : 0;
        }
        if (sh->o->rate > 0) {
            /* Logical requests of the window never issued: their parts were never sent. */
            uint64_t first = rate_count_by(&g->rate, sh->mstart - 1);
            uint64_t last = rate_count_by(&g->rate, sh->mend - 1);
            uint64_t from = g->rate.next_k > first ? g->rate.next_k : first;
            uint64_t unsent = last > from ? last - from : 0;
            th->st.fanout_unfinished += unsent;
            th->st.unfinished += unsent * n;
            th->st.fanout_scheduled += last - first;
            th->st.scheduled += (last - first) * n;
        }
    }
}

static void *
thread_main(void *arg)
{
    struct cthread *th = arg;
    struct shared *sh = th->sh;

    /* Timeouts end when asked: the default 50 us slack would blur a fine-grained schedule. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    if (thread_setup(th) < 0) {
        atomic_store(&sh->abort, true);
    }
    pthread_barrier_wait(&sh->barrier); /* 1: everyone connected (or not) */
    if (!atomic_load(&sh->abort) && sh->o->preload) {
        th->phase = PHASE_PRELOAD;
        thread_loop(th);
    }
    pthread_barrier_wait(&sh->barrier); /* 2: preload finished everywhere */
    pthread_barrier_wait(&sh->barrier); /* 3: the main thread has set the clock */
    if (!atomic_load(&sh->abort)) {
        th->phase = PHASE_RUN;
        if (sh->o->rate > 0) {
            for (uint32_t i = 0; i < th->nconns; i++) {
                rate_init(&th->conns[i].rate, sh->start_ns, sh->o->rate, sh->o->connections,
                          th->conns[i].gidx);
            }
            for (uint32_t i = 0; i < th->ngroups; i++) {
                rate_init(&th->groups[i].rate, sh->start_ns, sh->o->rate,
                          sh->o->connections / sh->o->fanout, th->groups[i].gidx);
            }
        }
        thread_loop(th);
        thread_count_unfinished(th);
    }
    thread_teardown(th);
    return NULL;
}

/* ---- the connect load's thread ---- */

struct churn_thread {
    pthread_t tid;
    struct shared *sh;
    struct churn *ch;
};

/* The connect load keeps step with the client threads through the same three barriers. */
static void *
churn_thread_main(void *arg)
{
    struct churn_thread *ct = arg;
    struct shared *sh = ct->sh;

    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    if (churn_setup(ct->ch) < 0) {
        atomic_store(&sh->abort, true);
    }
    pthread_barrier_wait(&sh->barrier); /* 1 */
    pthread_barrier_wait(&sh->barrier); /* 2 */
    pthread_barrier_wait(&sh->barrier); /* 3 */
    if (!atomic_load(&sh->abort)) {
        churn_run(ct->ch, sh->start_ns, sh->mstart, sh->mend, sh->deadline);
    }
    churn_teardown(ct->ch);
    return NULL;
}

/* ---- run ---- */

static void
threads_free(struct cthread *ths, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        free(ths[i].conns);
        for (uint32_t k = 0; ths[i].groups != NULL && k < ths[i].ngroups; k++) {
            free(ths[i].groups[k].q);
        }
        free(ths[i].groups);
        bench_stats_free(&ths[i].st);
    }
    free(ths);
}

/* The client threads' state, before they start. Returns the array, or NULL without memory. */
static struct cthread *
threads_new(struct shared *sh, uint32_t nt)
{
    const struct bench_opts *o = sh->o;
    struct cthread *ths = calloc(nt > 0 ? nt : 1, sizeof(*ths));

    if (ths == NULL) {
        return NULL;
    }
    for (uint32_t i = 0; i < nt; i++) {
        struct cthread *th = &ths[i];
        th->idx = i;
        th->sh = sh;
        th->epfd = -1;
        th->nconns = o->connections / nt + (i < o->connections % nt ? 1 : 0);
        if (o->fanout > 0) {
            /* Whole groups per thread (opts checked there are at least nt of them). */
            uint32_t ng = o->connections / o->fanout;
            th->ngroups = ng / nt + (i < ng % nt ? 1 : 0);
            th->nconns = th->ngroups * o->fanout;
            th->groups = calloc(th->ngroups, sizeof(*th->groups));
            for (uint32_t k = 0; th->groups != NULL && k < th->ngroups; k++) {
                th->groups[k].gidx = i + k * nt;
                th->groups[k].q = calloc(o->pipeline, sizeof(*th->groups[k].q));
                if (th->groups[k].q == NULL) {
                    threads_free(ths, i + 1);
                    return NULL;
                }
            }
        }
        th->conns = calloc(th->nconns, sizeof(*th->conns));
        /* Streams differ per thread but repeat from run to run for the same seed. */
        bench_rng_seed(&th->rng, o->seed * 0x100000001b3ull + i);
        if (th->conns == NULL || (o->fanout > 0 && th->groups == NULL) ||
            bench_stats_init(&th->st) < 0) {
            threads_free(ths, i + 1);
            return NULL;
        }
    }
    return ths;
}

/* Start a thread or give up: the barrier counts every thread, and a missing one never comes. */
static void
start_thread(pthread_t *tid, void *(*fn)(void *), void *arg)
{
    int rc = pthread_create(tid, NULL, fn, arg);
    if (rc != 0) {
        fprintf(stderr, "petrel-bench: cannot start a thread: %s\n", strerror(rc));
        exit(1);
    }
}

/* Run the phases from the main thread: the clock is set between barriers 2 and 3. */
static void
run_clock(struct shared *sh, struct bench_result *res)
{
    const struct bench_opts *o = sh->o;

    pthread_barrier_wait(&sh->barrier); /* 1 */
    uint64_t t = bench_now_ns();
    pthread_barrier_wait(&sh->barrier); /* 2 */
    res->preload_s = o->preload ? (double)(bench_now_ns() - t) / 1e9 : 0.0;
    /* A short lead so every thread is back in its loop before the first request is due. */
    sh->start_ns = bench_now_ns() + 10000000ull;
    sh->mstart = sh->start_ns + (uint64_t)(o->warmup_s * 1e9);
    sh->mend = sh->mstart + (uint64_t)(o->duration_s * 1e9);
    sh->deadline = sh->mend + BENCH_DRAIN_S * NS_PER_S;
    res->measured_s = (double)(sh->mend - sh->mstart) / 1e9;
    pthread_barrier_wait(&sh->barrier); /* 3 */
}

int
bench_run(const struct bench_opts *o, const struct workload *w, struct bench_result *res)
{
    struct shared sh = {.o = o, .w = w};
    /* With --connections 0 only the connect load runs. */
    uint32_t nt = o->connections > 0 ? o->threads : 0;
    struct addrinfo *ai = NULL;
    struct tls_shared *tls = NULL;
    struct churn_thread ct = {.sh = &sh};
    struct cthread *ths = NULL;
    int rc;

    memset(res, 0, sizeof(*res));
    if ((rc = transport_resolve(o->host, o->port, &ai)) < 0) {
        return rc;
    }
    sh.ai = ai;
    if (o->tls.enabled && (rc = transport_tls_setup(&o->tls, o->host, &tls)) < 0) {
        goto fail;
    }
    sh.tls = tls;
    rc = -ENOMEM;
    if (bench_stats_init(&res->total) < 0) {
        goto fail;
    }
    if ((ths = threads_new(&sh, nt)) == NULL ||
        (o->connect_rate > 0 && churn_new(o, w, ai, tls, &ct.ch) < 0)) {
        bench_stats_free(&res->total);
        goto fail;
    }
    pthread_barrier_init(&sh.barrier, NULL, nt + (ct.ch ? 1 : 0) + 1);
    for (uint32_t i = 0; i < nt; i++) {
        start_thread(&ths[i].tid, thread_main, &ths[i]);
    }
    if (ct.ch != NULL) {
        start_thread(&ct.tid, churn_thread_main, &ct);
    }
    run_clock(&sh, res);
    for (uint32_t i = 0; i < nt; i++) {
        pthread_join(ths[i].tid, NULL);
        bench_stats_merge(&res->total, &ths[i].st);
    }
    if (ct.ch != NULL) {
        pthread_join(ct.tid, NULL);
        bench_stats_merge(&res->total, churn_stats(ct.ch));
    }
    pthread_barrier_destroy(&sh.barrier);
    rc = 0;
    if (atomic_load(&sh.abort)) {
        rc = -ECONNREFUSED;
        bench_stats_free(&res->total);
    }
fail:
    churn_free(&ct.ch);
    if (ths != NULL) {
        threads_free(ths, nt);
    }
    transport_tls_teardown(&tls);
    freeaddrinfo(ai);
    return rc;
}
