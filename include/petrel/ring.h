/*
 * ring: a bounded single-producer / single-consumer queue of pointers, and the wakeup protocol
 * that goes with it.
 *
 * Used for every channel between threads on the data path: acceptor -> worker (new connections)
 * and worker i -> worker j (forwarded requests and their replies; one ring per ordered pair).
 * Exactly one thread may produce and exactly one may consume; the ring itself never blocks and
 * never allocates after ring_create().
 *
 * The producer may stage several items with ring_push() and make them visible at once with
 * ring_publish() (one release store per batch). The consumer pops with ring_pop() and returns the
 * space with ring_release() (one release store per batch). Indices live on separate cache lines,
 * and each side keeps a private copy of the other side's index so that it touches the shared line
 * only when its copy says the ring looks full (producer) or empty (consumer).
 *
 * A ring_outbox wraps a ring on the producer side with an unbounded local overflow list, so a
 * producer never blocks and never drops: what does not fit waits, in order, for the next flush.
 */
#ifndef PETREL_RING_H
#define PETREL_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PETREL_CACHELINE 64

struct ring {
    /* producer's line: tail is written by the producer, read by the consumer */
    _Alignas(PETREL_CACHELINE) _Atomic size_t tail;
    size_t tail_staged; /* producer-private: next slot to write */
    size_t head_cache;  /* producer-private: last head seen */
    /* consumer's line: head is written by the consumer, read by the producer */
    _Alignas(PETREL_CACHELINE) _Atomic size_t head;
    size_t head_staged; /* consumer-private: next slot to read */
    size_t tail_cache;  /* consumer-private: last tail seen */
    /* read-only after creation */
    _Alignas(PETREL_CACHELINE) size_t mask;
    void **slots;
};

/** Allocate a ring of capacity rounded up to a power of two (>= 2). Any thread; 0 or -ENOMEM. */
int ring_create(struct ring **out, size_t capacity);

/** Free a ring (no thread may use it any more) and set *r to NULL. */
void ring_destroy(struct ring **r);

/** Slots in the ring. */
static inline size_t
ring_capacity(const struct ring *r)
{
    return r->mask + 1;
}

/**
 * Producer: stage one item. It is invisible to the consumer until ring_publish().
 * Returns false, staging nothing, when the ring is full.
 */
static inline bool
ring_push(struct ring *r, void *item)
{
    size_t t = r->tail_staged;
    if (t - r->head_cache > r->mask) {
        r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
        if (t - r->head_cache > r->mask) {
            return false;
        }
    }
    r->slots[t & r->mask] = item;
    r->tail_staged = t + 1;
    return true;
}

/**
 * Producer: make every staged item visible. Returns true if anything was published. After a
 * publish the producer must run waker_notify() (see struct waker).
 */
static inline bool
ring_publish(struct ring *r)
{
    if (atomic_load_explicit(&r->tail, memory_order_relaxed) == r->tail_staged) {
        return false;
    }
    atomic_store_explicit(&r->tail, r->tail_staged, memory_order_release);
    return true;
}

/**
 * Consumer: take the oldest published item, or NULL when none is visible. The slot stays
 * reserved until ring_release(), so a batch of pops costs one store.
 */
static inline void *
ring_pop(struct ring *r)
{
    size_t h = r->head_staged;
    if (h == r->tail_cache) {
        r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (h == r->tail_cache) {
            return NULL;
        }
    }
    void *item = r->slots[h & r->mask];
    r->head_staged = h + 1;
    return item;
}

/** Consumer: give the slots of every popped item back to the producer. */
static inline void
ring_release(struct ring *r)
{
    atomic_store_explicit(&r->head, r->head_staged, memory_order_release);
}

/**
 * Consumer: true if a published item is waiting. Reads the shared tail (acquire); used by the
 * sleep protocol after its fence, so it must not trust the private cache.
 */
static inline bool
ring_pending(struct ring *r)
{
    return atomic_load_explicit(&r->tail, memory_order_acquire) != r->head_staged;
}

/*
 * The wakeup protocol. A consumer thread that blocks in epoll_wait() owns a waker whose eventfd
 * is in its epoll set. No wakeup is lost because both sides follow a Dekker-style handshake with
 * a full fence between their store and their load:
 *
 *   consumer (before blocking)          producer (after ring_publish)
 *   sleeping = 1                        [release store of tail]
 *   full fence                          full fence
 *   if any ring_pending(): don't block  if sleeping and xchg(sleeping, 0): write eventfd
 *   epoll_wait(...)
 *   sleeping = 0
 *
 * Either the consumer's re-check sees the item, or the producer's load sees sleeping == 1 (the
 * fences forbid both missing). A plain seq_cst load after a release store would not be enough:
 * the store may still sit in the store buffer when the load executes. The re-check may look at
 * something the producer stores before its fence instead of the rings themselves: the worker
 * mesh re-checks a bitmap of the peers that published (src/core/mesh.c).
 */
struct waker {
    _Alignas(PETREL_CACHELINE) _Atomic int sleeping; /* consumer(w) <-> producers(xchg) */
    int efd;                                         /* eventfd, EFD_NONBLOCK */
    _Atomic uint64_t wakeups;                        /* eventfd writes, for stats */
};

/** Create the eventfd. Returns 0 or a negative errno. */
int waker_init(struct waker *w);

/** Close the eventfd. */
void waker_fini(struct waker *w);

/** Consumer: announce the intent to sleep; then re-check what may have come (see above). */
static inline void
waker_sleep_begin(struct waker *w)
{
    atomic_store_explicit(&w->sleeping, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
}

/** Consumer: awake again (after epoll_wait returns, or when the re-check found work). */
static inline void
waker_sleep_end(struct waker *w)
{
    atomic_store_explicit(&w->sleeping, 0, memory_order_relaxed);
}

/** Consumer: drain the eventfd counter after epoll reported it readable. */
void waker_drain(struct waker *w);

/**
 * Producer: after publishing to a ring the consumer of w reads, wake it if it sleeps. Costs a
 * fence and a load when the consumer is awake; an exchange and an eventfd write when it sleeps.
 * Returns true if the eventfd was written.
 */
bool waker_notify(struct waker *w);

/*
 * Producer side of a ring with an overflow list: items that do not fit stay in a private FIFO,
 * in order, and go first on the next flush. Owned by the producer thread only.
 */
struct ring_outbox {
    struct ring *ring;
    void **over;         /* overflow FIFO (circular), grown on demand */
    size_t over_head;    /* index of the oldest overflow item */
    size_t over_len;     /* items in the overflow list */
    size_t over_cap;     /* allocated slots, a power of two or 0 */
    uint64_t overflowed; /* items that had to wait in the overflow list, for stats */
};

/** Attach an outbox to a ring (the caller keeps owning the ring). */
void ring_outbox_init(struct ring_outbox *o, struct ring *ring);

/** Free the overflow list. Items still in it are not freed: drain first if they own memory. */
void ring_outbox_fini(struct ring_outbox *o);

/** Take the oldest item of the overflow list back (the consumer never got it), or NULL when it
 * is empty: how a producer that stops frees what it still owns. */
void *ring_outbox_take(struct ring_outbox *o);

/**
 * Stage an item: into the ring if nothing is waiting in the overflow list and there is room,
 * else at the end of the overflow list. Never blocks; returns 0 or -ENOMEM if the overflow list
 * cannot grow (then the item was not queued).
 */
int ring_outbox_push(struct ring_outbox *o, void *item);

/**
 * Move as much of the overflow list into the ring as fits, then publish. Returns true if anything
 * was published: the caller then calls waker_notify() for the consumer.
 */
bool ring_outbox_flush(struct ring_outbox *o);

/** Items waiting in the overflow list. */
static inline size_t
ring_outbox_backlog(const struct ring_outbox *o)
{
    return o->over_len;
}

#endif /* PETREL_RING_H */
