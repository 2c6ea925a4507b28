/* ring: SPSC pointer ring, wakeup protocol and producer outbox. Contract in include/petrel/ring.h
 */
#include "petrel/ring.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

int
ring_create(struct ring **out, size_t capacity)
{
    size_t cap = 2;
    while (cap < capacity) {
        cap <<= 1;
    }
    struct ring *r = aligned_alloc(PETREL_CACHELINE, sizeof(*r));
    if (r == NULL) {
        return -ENOMEM;
    }
    *r = (struct ring){.mask = cap - 1};
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    r->slots = calloc(cap, sizeof(void *));
    if (r->slots == NULL) {
        free(r);
        return -ENOMEM;
    }
    *out = r;
    return 0;
}

void
ring_destroy(struct ring **r)
{
    if (*r == NULL) {
        return;
    }
    free((*r)->slots);
    free(*r);
    *r = NULL;
}

int
waker_init(struct waker *w)
{
    atomic_init(&w->sleeping, 0);
    atomic_init(&w->wakeups, 0);
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return w->efd < 0 ? -errno : 0;
}

void
waker_fini(struct waker *w)
{
    if (w->efd >= 0) {
        close(w->efd);
        w->efd = -1;
    }
}

void
waker_drain(struct waker *w)
{
    eventfd_t v;
    /* One read resets the counter; EAGAIN means another drain got there first. */
    (void)eventfd_read(w->efd, &v);
}

bool
waker_notify(struct waker *w)
{
    /* Pairs with the fence in waker_sleep_begin(): see the protocol in ring.h. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&w->sleeping, memory_order_relaxed) == 0) {
        return false;
    }
    /* Several producers may see the sleeper; the exchange lets exactly one of them write. */
    if (atomic_exchange_explicit(&w->sleeping, 0, memory_order_relaxed) == 0) {
        return false;
    }
    atomic_fetch_add_explicit(&w->wakeups, 1, memory_order_relaxed);
    (void)eventfd_write(w->efd, 1);
    return true;
}

void
ring_outbox_init(struct ring_outbox *o, struct ring *ring)
{
    *o = (struct ring_outbox){.ring = ring};
}

void
ring_outbox_fini(struct ring_outbox *o)
{
    free(o->over);
    *o = (struct ring_outbox){.ring = o->ring};
}

void *
ring_outbox_take(struct ring_outbox *o)
{
    if (o->over_len == 0) {
        return NULL;
    }
    void *item = o->over[o->over_head];
    o->over_head = (o->over_head + 1) & (o->over_cap - 1);
    o->over_len--;
    return item;
}

static int
outbox_grow(struct ring_outbox *o)
{
    size_t cap = o->over_cap ? o->over_cap * 2 : 64;
    void **p = malloc(cap * sizeof(void *));
    if (p == NULL) {
        return -ENOMEM;
    }
    /* Unroll the circular list into the front of the new array. */
    for (size_t i = 0; i < o->over_len; i++) {
        p[i] = o->over[(o->over_head + i) & (o->over_cap - 1)];
    }
    free(o->over);
    o->over = p;
    o->over_cap = cap;
    o->over_head = 0;
    return 0;
}

int
ring_outbox_push(struct ring_outbox *o, void *item)
{
    /* Order matters: once anything waits in the overflow list, newer items queue behind it. */
    if (o->over_len == 0 && ring_push(o->ring, item)) {
        return 0;
    }
    if (o->over_len == o->over_cap) {
        int rc = outbox_grow(o);
        if (rc < 0) {
            return rc;
        }
    }
    o->over[(o->over_head + o->over_len) & (o->over_cap - 1)] = item;
    o->over_len++;
    o->overflowed++;
    return 0;
}

bool
ring_outbox_flush(struct ring_outbox *o)
{
    while (o->over_len > 0 && ring_push(o->ring, o->over[o->over_head])) {
        o->over_head = (o->over_head + 1) & (o->over_cap - 1);
        o->over_len--;
    }
    return ring_publish(o->ring);
}
