/* The SPSC ring, its outbox and the wakeup protocol. */
#include "petrel/ring.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define ITEM(i) ((void *)(uintptr_t)((i) + 1))
#define NUM(p)  ((uintptr_t)(p)-1)

/* Criterion's assertions belong to the test's own thread; helper threads abort instead, which
 * Criterion reports as a crashed (failed) test. */
#define THREAD_FAIL(...)                                                                           \
    do {                                                                                           \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

static size_t
env_count(const char *name, size_t dflt)
{
    const char *v = getenv(name);
    return v != NULL ? strtoull(v, NULL, 10) : dflt;
}

Test(ring, starts_empty)
{
    struct ring *r;
    cr_assert_eq(ring_create(&r, 8), 0);
    cr_assert_null(ring_pop(r));
    cr_assert_not(ring_pending(r));
    ring_destroy(&r);
    cr_assert_null(r);
}

Test(ring, capacity_rounds_up_to_a_power_of_two)
{
    struct ring *r;
    cr_assert_eq(ring_create(&r, 100), 0);
    cr_assert_eq(ring_capacity(r), 128);
    ring_destroy(&r);
}

Test(ring, staged_items_are_invisible_until_published)
{
    struct ring *r;
    ring_create(&r, 8);
    cr_assert(ring_push(r, ITEM(1)));
    cr_assert_null(ring_pop(r));
    cr_assert(ring_publish(r));
    cr_assert_eq(ring_pop(r), ITEM(1));
    ring_destroy(&r);
}

Test(ring, publish_without_staged_items_reports_nothing)
{
    struct ring *r;
    ring_create(&r, 8);
    cr_assert_not(ring_publish(r));
    ring_destroy(&r);
}

Test(ring, items_come_out_in_order)
{
    struct ring *r;
    ring_create(&r, 16);
    for (uintptr_t i = 0; i < 10; i++) {
        cr_assert(ring_push(r, ITEM(i)));
    }
    ring_publish(r);
    for (uintptr_t i = 0; i < 10; i++) {
        cr_assert_eq(NUM(ring_pop(r)), i);
    }
    cr_assert_null(ring_pop(r));
    ring_destroy(&r);
}

Test(ring, full_ring_refuses_a_push)
{
    struct ring *r;
    ring_create(&r, 4);
    for (uintptr_t i = 0; i < 4; i++) {
        cr_assert(ring_push(r, ITEM(i)));
    }
    cr_assert_not(ring_push(r, ITEM(4)));
    ring_destroy(&r);
}

Test(ring, space_returns_only_after_release)
{
    struct ring *r;
    ring_create(&r, 4);
    for (uintptr_t i = 0; i < 4; i++) {
        ring_push(r, ITEM(i));
    }
    ring_publish(r);
    cr_assert_eq(ring_pop(r), ITEM(0));
    cr_assert_not(ring_push(r, ITEM(4)), "a popped slot is still reserved before release");
    ring_release(r);
    cr_assert(ring_push(r, ITEM(4)));
    ring_destroy(&r);
}

Test(ring, indices_wrap_around_many_times)
{
    struct ring *r;
    ring_create(&r, 4);
    for (uintptr_t i = 0; i < 1000; i++) {
        cr_assert(ring_push(r, ITEM(i)));
        ring_publish(r);
        cr_assert_eq(NUM(ring_pop(r)), i);
        ring_release(r);
    }
    ring_destroy(&r);
}

Test(outbox, overflow_keeps_order_and_drains_on_flush)
{
    struct ring *r;
    ring_create(&r, 4);
    struct ring_outbox o;
    ring_outbox_init(&o, r);
    for (uintptr_t i = 0; i < 10; i++) {
        cr_assert_eq(ring_outbox_push(&o, ITEM(i)), 0);
    }
    cr_assert_eq(ring_outbox_backlog(&o), 6);
    cr_assert(ring_outbox_flush(&o));
    uintptr_t next = 0;
    while (next < 10) {
        void *p;
        while ((p = ring_pop(r)) != NULL) {
            cr_assert_eq(NUM(p), next);
            next++;
        }
        ring_release(r);
        ring_outbox_flush(&o);
    }
    cr_assert_eq(ring_outbox_backlog(&o), 0);
    cr_assert_eq(o.overflowed, 6);
    ring_outbox_fini(&o);
    ring_destroy(&r);
}

Test(outbox, new_items_queue_behind_the_overflow_even_when_the_ring_has_room)
{
    struct ring *r;
    ring_create(&r, 2);
    struct ring_outbox o;
    ring_outbox_init(&o, r);
    ring_outbox_push(&o, ITEM(0));
    ring_outbox_push(&o, ITEM(1));
    ring_outbox_push(&o, ITEM(2)); /* overflows */
    ring_publish(r);
    ring_pop(r);
    ring_pop(r);
    ring_release(r); /* the ring has room again, but item 2 is older than item 3 */
    ring_outbox_push(&o, ITEM(3));
    ring_outbox_flush(&o);
    cr_assert_eq(NUM(ring_pop(r)), 2);
    cr_assert_eq(NUM(ring_pop(r)), 3);
    ring_outbox_fini(&o);
    ring_destroy(&r);
}

/* The two orders of the wakeup handshake, played out step by step on one thread. */
Test(waker, publish_after_the_consumer_announced_sleep_writes_the_eventfd)
{
    struct ring *r;
    struct waker w;
    ring_create(&r, 4);
    cr_assert_eq(waker_init(&w), 0);
    waker_sleep_begin(&w);          /* consumer: about to block */
    cr_assert_not(ring_pending(r)); /* consumer: re-check finds nothing */
    ring_push(r, ITEM(1));          /* producer */
    ring_publish(r);
    cr_assert(waker_notify(&w)); /* producer sees the sleeper */
    eventfd_t v = 0;
    cr_assert_eq(eventfd_read(w.efd, &v), 0, "the blocked consumer's epoll would fire");
    cr_assert_eq(v, 1);
    cr_assert_not(waker_notify(&w), "one wakeup per sleep: the flag was taken");
    waker_fini(&w);
    ring_destroy(&r);
}

Test(waker, publish_before_the_consumer_announced_sleep_is_seen_by_its_recheck)
{
    struct ring *r;
    struct waker w;
    ring_create(&r, 4);
    waker_init(&w);
    ring_push(r, ITEM(1)); /* producer publishes while the consumer is awake */
    ring_publish(r);
    cr_assert_not(waker_notify(&w), "an awake consumer costs no eventfd write");
    waker_sleep_begin(&w);
    cr_assert(ring_pending(r), "the consumer's re-check must see the item and not block");
    waker_sleep_end(&w);
    waker_fini(&w);
    ring_destroy(&r);
}

/* ---- two threads ---- */

struct stress {
    struct ring *r;
    size_t n;
};

static void *
stress_producer(void *arg)
{
    struct stress *s = arg;
    size_t i = 0;
    unsigned batch = 1;
    while (i < s->n) {
        /* Varying batch sizes exercise both the staged and the published paths. */
        unsigned k = 0;
        while (k < batch && i < s->n && ring_push(s->r, ITEM(i))) {
            i++;
            k++;
        }
        ring_publish(s->r);
        batch = batch % 61 + 1;
    }
    return NULL;
}

Test(ring_threads, two_threads_move_every_item_once_in_order, .timeout = 120)
{
    struct stress s = {.n = env_count("PETREL_RING_STRESS_ITEMS", 20 * 1000 * 1000)};
    ring_create(&s.r, 1024);
    pthread_t t;
    pthread_create(&t, NULL, stress_producer, &s);
    size_t expect = 0, popped_since_release = 0;
    while (expect < s.n) {
        void *p = ring_pop(s.r);
        if (p == NULL) {
            ring_release(s.r);
            popped_since_release = 0;
            continue;
        }
        /* Equality catches loss (a gap), duplication (a repeat) and reordering at once. */
        if (NUM(p) != expect) {
            cr_assert_fail("item %zu arrived when %zu was expected", (size_t)NUM(p), expect);
        }
        expect++;
        if (++popped_since_release == 32) {
            ring_release(s.r);
            popped_since_release = 0;
        }
    }
    ring_release(s.r);
    pthread_join(t, NULL);
    cr_assert_null(ring_pop(s.r), "nothing may follow the last item");
    cr_assert_eq(expect, s.n);
    ring_destroy(&s.r);
}

/*
 * Lost-wakeup detector: the consumer blocks in epoll_wait with no timeout whenever the ring looks
 * empty, so a single lost wakeup hangs the test (and the Criterion timeout fails it). The
 * producer sends one item per round and waits for the consumer's acknowledgement, which makes
 * the consumer go to sleep between rounds and races the producer's publish against the sleep.
 */
struct pingpong {
    struct ring *to_consumer;
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
        void *p = ring_pop(pp->to_consumer);
        if (p != NULL) {
            ring_release(pp->to_consumer);
            got++;
            atomic_store_explicit(&pp->acked, got, memory_order_release);
            continue;
        }
        waker_sleep_begin(&pp->waker);
        if (!ring_pending(pp->to_consumer)) {
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

Test(ring_threads, no_wakeup_is_lost, .timeout = 60)
{
    struct pingpong pp = {.rounds = env_count("PETREL_WAKEUP_ROUNDS", 100000)};
    ring_create(&pp.to_consumer, 8);
    cr_assert_eq(waker_init(&pp.waker), 0);
    pthread_t t;
    pthread_create(&t, NULL, pingpong_consumer, &pp);
    for (size_t i = 0; i < pp.rounds; i++) {
        cr_assert(ring_push(pp.to_consumer, ITEM(i)));
        ring_publish(pp.to_consumer);
        waker_notify(&pp.waker);
        while (atomic_load_explicit(&pp.acked, memory_order_acquire) <= i) {
            /* spin: the consumer's next sleep races our next publish */
        }
    }
    pthread_join(t, NULL);
    cr_assert_eq(atomic_load(&pp.acked), pp.rounds);
    /* The race was really exercised: the consumer slept and was woken many times. */
    cr_assert_gt(atomic_load(&pp.waker.wakeups), 0);
    waker_fini(&pp.waker);
    ring_destroy(&pp.to_consumer);
}

/*
 * The forwarding mesh: N workers, one ring per ordered pair, each worker sending to every peer
 * through an outbox (batch publish, overflow when full) and sleeping on its waker when idle.
 * Every message must arrive exactly once, in per-sender order.
 */
#define MESH_N 3

struct mesh;

struct mesh_worker {
    unsigned id;
    struct mesh *m;
    struct waker waker;
    struct ring *in[MESH_N];        /* peer(w) -> this(r) */
    struct ring_outbox out[MESH_N]; /* this(w) -> peer(r) */
    size_t next_expected[MESH_N];
};

struct mesh {
    struct mesh_worker w[MESH_N];
    size_t per_pair;
    _Atomic unsigned done;
};

static void *
mesh_main(void *arg)
{
    struct mesh_worker *me = arg;
    struct mesh *m = me->m;
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN};
    epoll_ctl(ep, EPOLL_CTL_ADD, me->waker.efd, &ev);
    size_t sent = 0, received = 0, want = m->per_pair * (MESH_N - 1);
    bool finished = false;
    while (!finished || atomic_load(&m->done) < MESH_N) {
        /* Send a batch of up to 50 to each peer, then publish once per peer. */
        for (unsigned b = 0; b < 50 && sent < m->per_pair; b++, sent++) {
            for (unsigned j = 0; j < MESH_N; j++) {
                if (j != me->id) {
                    if (ring_outbox_push(&me->out[j], ITEM(sent)) != 0) {
                        THREAD_FAIL("worker %u: outbox push failed", me->id);
                    }
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
        bool got = false;
        for (unsigned j = 0; j < MESH_N; j++) {
            void *p;
            if (j == me->id) {
                continue;
            }
            while ((p = ring_pop(me->in[j])) != NULL) {
                if (NUM(p) != me->next_expected[j]) {
                    THREAD_FAIL("worker %u: from %u got %zu, expected %zu", me->id, j,
                                (size_t)NUM(p), me->next_expected[j]);
                }
                me->next_expected[j]++;
                received++;
                got = true;
            }
            ring_release(me->in[j]);
        }
        if (!finished && received == want && sent == m->per_pair && !backlog) {
            finished = true;
            atomic_fetch_add(&m->done, 1);
        }
        if (!got && !backlog && (sent == m->per_pair)) {
            waker_sleep_begin(&me->waker);
            bool pending = false;
            for (unsigned j = 0; j < MESH_N; j++) {
                pending |= j != me->id && ring_pending(me->in[j]);
            }
            if (!pending) {
                struct epoll_event out;
                /* A short timeout only so that the final "everyone done" check is seen. */
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

Test(ring_threads, mesh_of_workers_delivers_every_message_once_in_order, .timeout = 120)
{
    static struct mesh m;
    m.per_pair = env_count("PETREL_MESH_ITEMS", 300000);
    for (unsigned i = 0; i < MESH_N; i++) {
        m.w[i].id = i;
        m.w[i].m = &m;
        cr_assert_eq(waker_init(&m.w[i].waker), 0);
    }
    for (unsigned i = 0; i < MESH_N; i++) {
        for (unsigned j = 0; j < MESH_N; j++) {
            if (i != j) {
                /* Small rings, so the overflow lists are used a lot. */
                ring_create(&m.w[j].in[i], 16);
                ring_outbox_init(&m.w[i].out[j], m.w[j].in[i]);
            }
        }
    }
    pthread_t t[MESH_N];
    for (unsigned i = 0; i < MESH_N; i++) {
        pthread_create(&t[i], NULL, mesh_main, &m.w[i]);
    }
    uint64_t overflowed = 0;
    for (unsigned i = 0; i < MESH_N; i++) {
        pthread_join(t[i], NULL);
    }
    for (unsigned i = 0; i < MESH_N; i++) {
        for (unsigned j = 0; j < MESH_N; j++) {
            if (i != j) {
                cr_assert_eq(m.w[j].next_expected[i], m.per_pair);
                overflowed += m.w[i].out[j].overflowed;
                ring_outbox_fini(&m.w[i].out[j]);
                ring_destroy(&m.w[j].in[i]);
            }
        }
        waker_fini(&m.w[i].waker);
    }
    cr_assert_gt(overflowed, 0, "the test must exercise the overflow lists");
}
