/* Multi-threaded scenarios for the ring, its outbox and the wakeup protocol. */
#include "thread_scenarios.h"

#include "petrel/ring.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define ITEM(i) ((void *)(uintptr_t)((i) + 1))
#define NUM(p)  ((uintptr_t)(p)-1)

static char errbuf[256];

size_t
scenario_count(const char *env, size_t dflt)
{
    const char *v = getenv(env);
    return v != NULL ? strtoull(v, NULL, 10) : dflt;
}

/* ---- stress ---- */

/*
 * The stress and mesh scenarios spin, which is their point; but when the scheduler puts two of
 * their threads on one CPU (a busy 2-CPU machine does), a thread that only spins holds the CPU
 * for its whole time slice while the other cannot move, and a run took minutes (CI timed out).
 * Yielding every so often while waiting keeps the spinning and bounds that.
 */
#define SPINS_BEFORE_YIELD 256

struct stress {
    struct ring *r;
    size_t n;
};

static void *
stress_producer(void *arg)
{
    struct stress *s = arg;
    size_t i = 0;
    unsigned batch = 1, full = 0;
    while (i < s->n) {
        /* Varying batch sizes exercise both the staged and the published paths. */
        unsigned k = 0;
        while (k < batch && i < s->n && ring_push(s->r, ITEM(i))) {
            i++;
            k++;
        }
        ring_publish(s->r);
        batch = batch % 61 + 1;
        if (k == 0 && ++full % SPINS_BEFORE_YIELD == 0) {
            sched_yield(); /* the ring is full and the consumer may share our CPU */
        }
    }
    return NULL;
}

const char *
scenario_ring_stress(size_t n)
{
    struct stress s = {.n = n};
    if (ring_create(&s.r, 1024) < 0) {
        return "ring_create failed";
    }
    pthread_t t;
    pthread_create(&t, NULL, stress_producer, &s);
    const char *err = NULL;
    size_t expect = 0, since_release = 0, empty = 0;
    while (expect < s.n) {
        void *p = ring_pop(s.r);
        if (p == NULL) {
            ring_release(s.r);
            since_release = 0;
            if (++empty % SPINS_BEFORE_YIELD == 0) {
                sched_yield(); /* the ring is empty and the producer may share our CPU */
            }
            continue;
        }
        /* Equality catches loss (a gap), duplication (a repeat) and reordering at once. */
        if (NUM(p) != expect) {
            snprintf(errbuf, sizeof(errbuf), "item %zu arrived when %zu was expected",
                     (size_t)NUM(p), expect);
            err = errbuf;
            break;
        }
        expect++;
        if (++since_release == 32) {
            ring_release(s.r);
            since_release = 0;
        }
    }
    ring_release(s.r);
    if (err != NULL) {
        /* Let the producer finish: keep consuming without checking. */
        while (expect < s.n) {
            if (ring_pop(s.r) != NULL) {
                expect++;
            }
            ring_release(s.r);
        }
    }
    pthread_join(t, NULL);
    if (err == NULL && ring_pop(s.r) != NULL) {
        err = "an item followed the last one";
    }
    ring_destroy(&s.r);
    return err;
}

/* ---- lost-wakeup detector ---- */

/*
 * The consumer blocks in epoll_wait with no timeout whenever the ring looks empty, so one lost
 * wakeup hangs the scenario (and the test's timeout fails it). The producer sends one item per
 * round and waits for the acknowledgement, so the consumer goes to sleep between rounds and its
 * sleep races the producer's next publish.
 */
struct pingpong {
    struct ring *ring;
    struct waker waker;
    _Atomic size_t acked;
    size_t rounds;
};

static void *
pingpong_consumer(void *arg)
{
    struct pingpong *pp = arg;
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN};
    epoll_ctl(ep, EPOLL_CTL_ADD, pp->waker.efd, &ev);
    size_t got = 0;
    while (got < pp->rounds) {
        if (ring_pop(pp->ring) != NULL) {
            ring_release(pp->ring);
            got++;
            atomic_store_explicit(&pp->acked, got, memory_order_release);
            continue;
        }
        waker_sleep_begin(&pp->waker);
        if (!ring_pending(pp->ring)) {
            struct epoll_event out;
            if (epoll_wait(ep, &out, 1, -1) == 1) {
                waker_drain(&pp->waker);
            }
        }
        waker_sleep_end(&pp->waker);
    }
    close(ep);
    return NULL;
}

const char *
scenario_ring_wakeup(size_t rounds)
{
    struct pingpong pp = {.rounds = rounds};
    if (ring_create(&pp.ring, 8) < 0 || waker_init(&pp.waker) < 0) {
        return "set-up failed";
    }
    pthread_t t;
    pthread_create(&t, NULL, pingpong_consumer, &pp);
    for (size_t i = 0; i < pp.rounds; i++) {
        ring_push(pp.ring, ITEM(i));
        ring_publish(pp.ring);
        waker_notify(&pp.waker);
        while (atomic_load_explicit(&pp.acked, memory_order_acquire) <= i) {
            /* spin: the consumer's next sleep races our next publish */
        }
    }
    pthread_join(t, NULL);
    const char *err = NULL;
    if (atomic_load(&pp.acked) != pp.rounds) {
        err = "not every round was acknowledged";
    } else if (atomic_load(&pp.waker.wakeups) == 0) {
        err = "the consumer never slept: the race was not exercised";
    }
    waker_fini(&pp.waker);
    ring_destroy(&pp.ring);
    return err;
}

/* ---- the forwarding mesh ---- */

#define MESH_N 3

struct mesh;

struct mesh_worker {
    unsigned id;
    struct mesh *m;
    struct waker waker;
    struct ring *in[MESH_N];        /* peer(w) -> this(r) */
    struct ring_outbox out[MESH_N]; /* this(w) -> peer(r) */
    size_t next_expected[MESH_N];
    const char *err;
};

struct mesh {
    struct mesh_worker w[MESH_N];
    size_t per_pair;
    _Atomic unsigned done;
};

static bool
mesh_receive(struct mesh_worker *me, size_t *received)
{
    bool got = false;
    for (unsigned j = 0; j < MESH_N; j++) {
        void *p;
        if (j == me->id) {
            continue;
        }
        while ((p = ring_pop(me->in[j])) != NULL) {
            if (NUM(p) != me->next_expected[j] && me->err == NULL) {
                me->err = "a message arrived out of order, twice or not at all";
            }
            me->next_expected[j]++;
            (*received)++;
            got = true;
        }
        ring_release(me->in[j]);
    }
    return got;
}

static void *
mesh_main(void *arg)
{
    struct mesh_worker *me = arg;
    struct mesh *m = me->m;
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN};
    epoll_ctl(ep, EPOLL_CTL_ADD, me->waker.efd, &ev);
    size_t sent = 0, received = 0, want = m->per_pair * (MESH_N - 1), stalled = 0;
    bool finished = false;
    while (!finished || atomic_load(&m->done) < MESH_N) {
        /* A batch of up to 50 per peer per iteration, published once per peer. */
        for (unsigned b = 0; b < 50 && sent < m->per_pair; b++, sent++) {
            for (unsigned j = 0; j < MESH_N; j++) {
                if (j != me->id && ring_outbox_push(&me->out[j], ITEM(sent)) != 0) {
                    me->err = "outbox push failed";
                }
            }
        }
        bool backlog = false;
        for (unsigned j = 0; j < MESH_N; j++) {
            if (j != me->id) {
                if (ring_outbox_flush(&me->out[j])) {
                    waker_notify(&m->w[j].waker);
                }
                backlog |= ring_outbox_backlog(&me->out[j]) > 0;
            }
        }
        bool got = mesh_receive(me, &received);
        if (!got && backlog && ++stalled % SPINS_BEFORE_YIELD == 0) {
            sched_yield(); /* peers' rings are full and a peer may share our CPU */
        }
        if (!finished && received == want && sent == m->per_pair && !backlog) {
            finished = true;
            atomic_fetch_add(&m->done, 1);
        }
        if (!got && !backlog && sent == m->per_pair) {
            waker_sleep_begin(&me->waker);
            bool pending = false;
            for (unsigned j = 0; j < MESH_N; j++) {
                pending |= j != me->id && ring_pending(me->in[j]);
            }
            if (!pending) {
                struct epoll_event out;
                /* Finished workers poll, only to notice when everyone is done. */
                if (epoll_wait(ep, &out, 1, finished ? 10 : -1) == 1) {
                    waker_drain(&me->waker);
                }
            }
            waker_sleep_end(&me->waker);
        }
    }
    close(ep);
    return NULL;
}

const char *
scenario_ring_mesh(size_t per_pair)
{
    static struct mesh m;
    m = (struct mesh){.per_pair = per_pair};
    for (unsigned i = 0; i < MESH_N; i++) {
        m.w[i].id = i;
        m.w[i].m = &m;
        waker_init(&m.w[i].waker);
    }
    for (unsigned i = 0; i < MESH_N; i++) {
        for (unsigned j = 0; j < MESH_N; j++) {
            if (i != j) {
                /* Small rings, so that the overflow lists see a lot of use. */
                ring_create(&m.w[j].in[i], 16);
                ring_outbox_init(&m.w[i].out[j], m.w[j].in[i]);
            }
        }
    }
    pthread_t t[MESH_N];
    for (unsigned i = 0; i < MESH_N; i++) {
        pthread_create(&t[i], NULL, mesh_main, &m.w[i]);
    }
    for (unsigned i = 0; i < MESH_N; i++) {
        pthread_join(t[i], NULL);
    }
    const char *err = NULL;
    uint64_t overflowed = 0;
    for (unsigned i = 0; i < MESH_N; i++) {
        if (m.w[i].err != NULL) {
            err = m.w[i].err;
        }
        for (unsigned j = 0; j < MESH_N; j++) {
            if (i != j) {
                if (m.w[j].next_expected[i] != m.per_pair) {
                    err = "a worker did not receive every message";
                }
                overflowed += m.w[i].out[j].overflowed;
                ring_outbox_fini(&m.w[i].out[j]);
                ring_destroy(&m.w[j].in[i]);
            }
        }
        waker_fini(&m.w[i].waker);
    }
    if (err == NULL && overflowed == 0) {
        err = "the overflow lists were never used";
    }
    return err;
}
