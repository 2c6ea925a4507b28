/* churn: the connect load; what it measures and how is described in churn.h. */
#include "churn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "petrel/buf.h"
#include "rate.h"

#define NS_PER_S        1000000000ull
#define READ_CHUNK      (16 * 1024)
#define REPLY_MAX       (64u << 20) /* one reply: multiget * (value + line), generously */
#define EVENTS_PER_WAIT 64
#define PROBE_S         10 /* the probe connection must be done within this */

/* One slot: a connection in progress, or a free transport waiting for the next one. */
struct slot {
    struct transport tp;
    struct buf in;   /* the reply, as it arrives */
    struct buf out;  /* the request, until written */
    uint64_t t0;     /* what its latency is measured from */
    uint8_t op;      /* enum op_type of the request */
    uint32_t nkeys;  /* and its key count */
    uint32_t events; /* epoll events registered, while registered */
    bool busy;       /* a connection is in progress */
    bool ready;      /* connected, handshake done: a write went through */
    bool registered; /* its socket is in the epoll set */
};

struct churn {
    const struct bench_opts *o;
    const struct workload *w;
    const struct addrinfo *ai;
    const struct tls_shared *tls;
    struct tls_thread *tls_env; /* this thread's TLS state */
    int epfd;
    bool no_pwait2;
    struct slot *slots;
    uint32_t nslots;
    uint32_t *free; /* stack of free slot indices */
    uint32_t nfree;
    struct rate rate; /* --connect-rate N: the schedule */
    struct bench_rng rng;
    struct request req; /* scratch: the request being composed */
    struct bench_stats st;
    uint64_t mstart; /* measured window [mstart, mend) */
    uint64_t mend;
    bool probing; /* the probe connection of churn_setup() is in progress */
    int probe_rc; /* its outcome */
    bool told;    /* a failure was described on stderr; later ones are only counted */
};

int
churn_new(const struct bench_opts *o, const struct workload *w, const struct addrinfo *ai,
          const struct tls_shared *tls, struct churn **out)
{
    struct churn *ch = calloc(1, sizeof(*ch));

    if (ch == NULL) {
        return -ENOMEM;
    }
    ch->o = o;
    ch->w = w;
    ch->ai = ai;
    ch->tls = tls;
    ch->epfd = -1;
    /* A stream of its own, repeatable for a seed, apart from the client threads'. */
    bench_rng_seed(&ch->rng, o->seed * 0x100000001b3ull + 0xc0ffee);
    if (bench_stats_init(&ch->st) < 0) {
        free(ch);
        return -ENOMEM;
    }
    *out = ch;
    return 0;
}

void
churn_free(struct churn **chp)
{
    struct churn *ch = *chp;

    if (ch == NULL) {
        return;
    }
    bench_stats_free(&ch->st);
    free(ch->slots);
    free(ch->free);
    free(ch);
    *chp = NULL;
}

const struct bench_stats *
churn_stats(const struct churn *ch)
{
    return &ch->st;
}

/* ---- one connection ---- */

static bool
in_window(const struct churn *ch, uint64_t t0)
{
    return t0 >= ch->mstart && t0 < ch->mend;
}

/*
 * The connection of slot s is over: count it, close it and free the slot. err is 0 on success,
 * else the failure, described on stderr the first time (and always for the probe).
 */
static void
slot_done(struct churn *ch, struct slot *s, uint64_t now, int err, const char *what)
{
    struct bench_stats *st = &ch->st;

    if (err == 0 && in_window(ch, s->t0)) {
        hist_record(&st->conn_latency, now > s->t0 ? now - s->t0 : 0);
        st->conns++;
        st->conns_resumed += s->tp.ops->resumed && s->tp.ops->resumed(&s->tp) ? 1 : 0;
    } else if (err != 0 && in_window(ch, s->t0)) {
        st->conn_failures++;
    }
    if (err != 0 && (ch->probing || !ch->told)) {
        char why[320];
        fprintf(stderr, "petrel-bench: connect load: %s:%s: %s: %s%s\n", ch->o->host, ch->o->port,
                what, s->tp.ops->describe(&s->tp, err, why, sizeof(why)),
                ch->probing ? "" : " (further failures are counted, not shown)");
        ch->told = !ch->probing;
    }
    if (ch->probing) {
        ch->probe_rc = err;
    }
    /* Closing the socket also takes it out of the epoll set. */
    s->tp.ops->close(&s->tp);
    s->registered = false;
    s->busy = false;
    ch->free[ch->nfree++] = (uint32_t)(s - ch->slots);
}

/* Whether err says that the TCP connect failed. */
static bool
connect_failed(int err)
{
    return err == -ECONNREFUSED || err == -ETIMEDOUT || err == -EHOSTUNREACH ||
           err == -ENETUNREACH || err == -EADDRNOTAVAIL;
}

/* Wait for the readiness the transport asked for. Returns 0 or a negative errno. */
static int
slot_wait(struct churn *ch, struct slot *s)
{
    uint32_t events = EPOLLIN | (s->tp.want_write ? EPOLLOUT : 0);
    struct epoll_event ev = {.events = events, .data.ptr = s};

    if (s->registered && s->events == events) {
        return 0;
    }
    if (epoll_ctl(ch->epfd, s->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s->tp.fd, &ev) < 0) {
        return -errno;
    }
    s->registered = true;
    s->events = events;
    return 0;
}

/*
 * Move slot s's connection on as far as the socket allows: write the request (the first write
 * also makes the TLS handshake), then read until the reply is complete. Bounded by the bytes of
 * one request and one reply.
 */
static void
slot_step(struct churn *ch, struct slot *s, uint64_t now)
{
    const struct proto *p = ch->o->proto;
    ssize_t n;
    int rc;

    /* The handshake first (if any), so that its failure is told apart from the request's. */
    if (!s->ready && s->tp.ops->handshake != NULL && (rc = s->tp.ops->handshake(&s->tp)) < 0) {
        if (rc == -EAGAIN) {
            goto wait;
        }
        slot_done(ch, s, now, rc, connect_failed(rc) ? "cannot connect" : "TLS handshake failed");
        return;
    }
    while (buf_len(&s->out) > 0) {
        n = s->tp.ops->write(&s->tp, buf_rptr(&s->out), buf_len(&s->out));
        if (n == -EAGAIN) {
            goto wait;
        }
        if (n <= 0) {
            n = n < 0 ? n : -EPIPE;
            slot_done(ch, s, now, (int)n,
                      !s->ready && connect_failed((int)n) ? "cannot connect" : "write failed");
            return;
        }
        s->ready = true;
        buf_consume(&s->out, (size_t)n);
    }
    for (;;) {
        if ((rc = buf_reserve(&s->in, READ_CHUNK)) < 0) {
            slot_done(ch, s, now, rc, "reply too large");
            return;
        }
        n = s->tp.ops->read(&s->tp, buf_wptr(&s->in), buf_avail(&s->in));
        if (n == -EAGAIN) {
            goto wait;
        }
        if (n <= 0) {
            slot_done(ch, s, now, n < 0 ? (int)n : -ECONNRESET, "no reply");
            return;
        }
        buf_commit(&s->in, (size_t)n);
        struct proto_result res;
        ssize_t len =
            p->parse(buf_rptr(&s->in), buf_len(&s->in), (enum op_type)s->op, s->nkeys, &res);
        if (len < 0 || (len > 0 && (size_t)len != buf_len(&s->in))) {
            slot_done(ch, s, now, -EPROTO, "malformed reply");
            return;
        }
        if (len > 0) {
            slot_done(ch, s, now, 0, NULL);
            return;
        }
        if (s->tp.ops->pending == NULL || !s->tp.ops->pending(&s->tp)) {
            s->tp.want_write = false;
            goto wait;
        }
    }
wait:
    if ((rc = slot_wait(ch, s)) < 0) {
        slot_done(ch, s, now, rc, "epoll_ctl failed");
    }
}

/* Open a connection with t0 in a free slot, compose its request and start it. */
static void
slot_start(struct churn *ch, uint64_t t0, uint64_t now)
{
    struct slot *s = &ch->slots[ch->free[--ch->nfree]];
    int rc;

    s->busy = true;
    s->ready = false;
    s->t0 = t0;
    buf_consume(&s->in, buf_len(&s->in)); /* left over from a failed connection */
    buf_consume(&s->out, buf_len(&s->out));
    workload_next(ch->w, &ch->rng, &ch->req);
    s->op = (uint8_t)ch->req.op;
    s->nkeys = ch->req.nkeys;
    if ((rc = ch->o->proto->compose(&s->out, ch->w, &ch->req)) < 0) {
        slot_done(ch, s, now, rc, "cannot compose a request");
        return;
    }
    if ((rc = s->tp.ops->open(&s->tp, ch->ai, TRANSPORT_NOWAIT)) < 0) {
        slot_done(ch, s, now, rc, "cannot connect");
        return;
    }
    slot_step(ch, s, now);
}

/* ---- the thread ---- */

/* Serve the events of one wait. */
static void
churn_events(struct churn *ch, const struct epoll_event *evs, int n)
{
    uint64_t now = bench_now_ns();

    for (int i = 0; i < n; i++) {
        struct slot *s = evs[i].data.ptr;
        if (s->busy) {
            slot_step(ch, s, now);
        }
    }
}

int
churn_setup(struct churn *ch)
{
    const struct bench_opts *o = ch->o;
    const struct transport_ops *ops = o->tls.enabled ? &transport_tls : &transport_tcp;
    struct epoll_event evs[EVENTS_PER_WAIT];
    int rc;

    ch->nslots = o->connect_inflight;
    ch->slots = calloc(ch->nslots, sizeof(*ch->slots));
    ch->free = calloc(ch->nslots, sizeof(*ch->free));
    if (ch->slots == NULL || ch->free == NULL) {
        return -ENOMEM;
    }
    ch->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (ch->epfd < 0) {
        fprintf(stderr, "petrel-bench: epoll_create1: %s\n", strerror(errno));
        return -errno;
    }
    if (o->tls.enabled && (rc = transport_tls_thread_setup(ch->tls, &ch->tls_env)) < 0) {
        return rc;
    }
    /* Slots are taken from the top of the stack: slot 0 first. */
    for (uint32_t i = 0; i < ch->nslots; i++) {
        struct slot *s = &ch->slots[i];
        transport_init(&s->tp, ops, ch->tls_env);
        buf_init(&s->in, READ_CHUNK, REPLY_MAX);
        buf_init(&s->out, 1024, REPLY_MAX);
        ch->free[ch->nfree++] = ch->nslots - 1 - i;
    }

    /* The probe: t0 = 0 is outside any window, so nothing of it is counted. */
    uint64_t deadline = bench_now_ns() + PROBE_S * NS_PER_S;
    ch->probing = true;
    slot_start(ch, 0, bench_now_ns());
    while (ch->slots[0].busy) {
        uint64_t now = bench_now_ns();
        if (now >= deadline) {
            fprintf(stderr, "petrel-bench: connect load: no reply from %s:%s within %d s\n",
                    o->host, o->port, PROBE_S);
            ch->probing = false;
            return -ETIMEDOUT;
        }
        int n = bench_epoll_wait(ch->epfd, evs, EVENTS_PER_WAIT, now, deadline, &ch->no_pwait2);
        if (n < 0 && errno != EINTR) {
            return -errno;
        }
        churn_events(ch, evs, n);
    }
    ch->probing = false;
    return ch->probe_rc;
}

/* Open the connections due at now, as far as slots are free: bounded by --connect-inflight. */
static void
churn_open_due(struct churn *ch, uint64_t start_ns, uint64_t now)
{
    bool max = ch->o->connect_rate == BENCH_CONNECT_MAX;

    while (ch->nfree > 0) {
        uint64_t t0;
        if (max) {
            if (now < start_ns || now >= ch->mend) {
                return;
            }
            t0 = now;
        } else {
            t0 = rate_peek(&ch->rate);
            if (t0 > now || t0 >= ch->mend) {
                return;
            }
            rate_take(&ch->rate);
        }
        slot_start(ch, t0, now);
    }
}

void
churn_run(struct churn *ch, uint64_t start_ns, uint64_t mstart, uint64_t mend, uint64_t deadline)
{
    bool max = ch->o->connect_rate == BENCH_CONNECT_MAX;
    struct epoll_event evs[EVENTS_PER_WAIT];

    ch->mstart = mstart;
    ch->mend = mend;
    if (!max) {
        rate_init(&ch->rate, start_ns, ch->o->connect_rate, 1, 0);
    }
    for (;;) {
        uint64_t now = bench_now_ns();
        churn_open_due(ch, start_ns, now);
        bool unsent = !max && rate_peek(&ch->rate) < mend;
        if (now >= deadline || (now >= mend && ch->nfree == ch->nslots && !unsent)) {
            break;
        }
        /* Wake for the next phase, or the next due connection if a slot is free for it. */
        uint64_t wake = now < start_ns ? start_ns : now < mend ? mend : deadline;
        if (unsent && ch->nfree > 0 && rate_peek(&ch->rate) < wake) {
            wake = rate_peek(&ch->rate);
        }
        int n = bench_epoll_wait(ch->epfd, evs, EVENTS_PER_WAIT, now, wake, &ch->no_pwait2);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "petrel-bench: epoll_wait: %s\n", strerror(errno));
            break;
        }
        churn_events(ch, evs, n > 0 ? n : 0);
    }
    /* What the drain did not finish, and at a rate what was due in the window but not opened. */
    for (uint32_t i = 0; i < ch->nslots; i++) {
        ch->st.conns_unfinished += ch->slots[i].busy && in_window(ch, ch->slots[i].t0) ? 1 : 0;
    }
    if (!max) {
        uint64_t first = rate_count_by(&ch->rate, mstart - 1);
        uint64_t last = rate_count_by(&ch->rate, mend - 1);
        uint64_t from = ch->rate.next_k > first ? ch->rate.next_k : first;
        ch->st.conns_unfinished += last > from ? last - from : 0;
        ch->st.conns_scheduled = last - first;
    }
}

void
churn_teardown(struct churn *ch)
{
    for (uint32_t i = 0; ch->slots != NULL && i < ch->nslots; i++) {
        struct slot *s = &ch->slots[i];
        if (s->tp.ops != NULL) {
            s->tp.ops->release(&s->tp);
        }
        buf_free(&s->in);
        buf_free(&s->out);
    }
    transport_tls_thread_teardown(&ch->tls_env);
    if (ch->epfd >= 0) {
        close(ch->epfd);
        ch->epfd = -1;
    }
}
