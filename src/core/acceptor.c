/*
 * acceptor: takes new connections off the listening sockets and hands each to the worker with
 * the fewest connections, through the worker's inbox ring (acceptor(w) -> worker(r)). A socket
 * of a TLS listener goes to the handshake thread first (rt->hs_in) and comes back established
 * (rt->hs_out), then goes to a worker the same way.
 *
 * A full inbox never blocks the acceptor: the descriptor waits in that worker's outbox overflow
 * list and is retried every millisecond until it fits.
 */
#include "acceptor.h"
#include "handshake.h"
#include "live.h"

#include "petrel/prcu.h"
#include "petrel/log.h"
#include "petrel/sock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPT_BUDGET 64 /* accepts per listening socket per readiness event */

/* epoll data of a listener: this bit and its index (the waker's is a pointer: no such bit). */
#define LISTENER_TAG (UINT64_C(1) << 63)

static char waker_tag;

/* Fewest live connections; ties go round-robin so an idle start spreads evenly. */
static struct worker *
pick_worker(struct runtime *rt, unsigned *rr)
{
    struct worker *best = NULL;
    unsigned best_n = 0;
    for (unsigned k = 0; k < rt->nworkers; k++) {
        struct worker *w = &rt->workers[(*rr + k) % rt->nworkers];
        unsigned n = worker_nconns(w, w->assigned);
        if (best == NULL || n < best_n) {
            best = w;
            best_n = n;
        }
    }
    *rr = (*rr + 1) % rt->nworkers;
    return best;
}

/* The acceptor's own state. */
struct acc {
    struct ring_outbox *out; /* [worker] */
    bool *dirty;             /* [worker]: staged since the last publish */
    unsigned rr;
    struct ring_outbox hs; /* to the handshake thread */
    bool hs_dirty;
    uint64_t hs_given;    /* sockets sent to the handshake thread */
    uint64_t hs_returned; /* ... and established connections it gave back */
};

/* Open client connections: the workers', and those in or waiting for a TLS handshake. */
static unsigned
live_connections(struct runtime *rt, const struct acc *a)
{
    unsigned n = 0;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        n += worker_nconns(&rt->workers[i], rt->workers[i].assigned);
    }
    uint64_t closed = atomic_load_explicit(&rt->hs_closed, memory_order_acquire);
    return n + (unsigned)(a->hs_given - a->hs_returned - closed);
}

/* Stage an item for a worker; false (and nothing staged) when out of memory. */
static bool
give_worker(struct runtime *rt, struct acc *a, void *item)
{
    struct worker *w = pick_worker(rt, &a->rr);
    if (ring_outbox_push(&a->out[w->id], item) < 0) {
        return false;
    }
    w->assigned++;
    a->dirty[w->id] = true;
    return true;
}

/* What a client refused on the listener reads: its port's own refusal, or the product's. */
static const char *
refusal_of(const struct runtime *rt, unsigned listener)
{
    unsigned proto = rt->listen_proto[listener];
    for (size_t k = 0; proto != 0 && k < rt->p->nports; k++) {
        if (rt->p->ports[k].proto == proto && rt->p->ports[k].refusal != NULL) {
            return rt->p->ports[k].refusal;
        }
    }
    return rt->p->refusal;
}

static void
reject(struct runtime *rt, int fd, unsigned listener)
{
    /* Counted first: a client that has read the refusal then finds it in the stats. */
    atomic_fetch_add_explicit(&rt->rejected, 1, memory_order_relaxed);
    /* Best effort, like memcached: the socket is new, so its buffer has room for one line. A TLS
     * client would take the plaintext line for a broken record: it only sees the close. */
    const char *refusal = refusal_of(rt, listener);
    if (!rt->listen_tls[listener] && refusal != NULL) {
        (void)send(fd, refusal, strlen(refusal), MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    close(fd);
}

static void
accept_from(struct runtime *rt, unsigned listener, struct acc *a)
{
    int lfd = rt->listen_fds[listener];
    for (int i = 0; i < ACCEPT_BUDGET; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                /* EMFILE and friends: log and let the next event try again. */
                log_warn("accept: %s", strerror(errno));
            }
            return;
        }
        atomic_fetch_add_explicit(&rt->accepted, 1, memory_order_relaxed);
        /* max-conns may be reloaded: read the setting in force for every connection. */
        if (live_connections(rt, a) >= rt_live_get(rt).max_conns) {
            reject(rt, fd, listener);
            continue;
        }
        (void)sock_nodelay(fd);
        bool queued;
        if (rt->listen_tls[listener]) {
            queued = ring_outbox_push(&a->hs, inbox_item(fd, listener)) == 0;
            a->hs_given += queued;
            a->hs_dirty = true;
        } else {
            queued = give_worker(rt, a, inbox_item(fd, listener));
        }
        if (!queued) {
            log_error("out of memory queueing a connection");
            close(fd);
        }
    }
}

/* Established TLS connections back from the handshake thread: on to a worker. */
static void
take_established(struct runtime *rt, struct acc *a)
{
    void *item;
    bool any = false;
    while ((item = ring_pop(rt->hs_out)) != NULL) {
        any = true;
        a->hs_returned++;
        if (!give_worker(rt, a, item)) {
            log_error("out of memory queueing a connection");
            handoff_discard(item);
        }
    }
    if (any) {
        ring_release(rt->hs_out);
    }
}

/* Publish what each worker (and the handshake thread) was given and wake the sleepers.
 * Returns the items still waiting. */
static size_t
publish(struct runtime *rt, struct acc *a)
{
    size_t backlog = 0;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        if (a->dirty[i] && ring_outbox_flush(&a->out[i])) {
            waker_notify(&rt->workers[i].waker);
        }
        a->dirty[i] = ring_outbox_backlog(&a->out[i]) > 0;
        backlog += ring_outbox_backlog(&a->out[i]);
    }
    if (a->hs_dirty && ring_outbox_flush(&a->hs)) {
        waker_notify(&rt->hs_waker);
    }
    a->hs_dirty = ring_outbox_backlog(&a->hs) > 0;
    return backlog + ring_outbox_backlog(&a->hs);
}

/* Items that never reached their consumer (it has stopped, or is about to). */
static void
outbox_discard(struct ring_outbox *o)
{
    void *item;
    while ((item = ring_outbox_take(o)) != NULL) {
        handoff_discard(item);
    }
    ring_outbox_fini(o);
}

void *
acceptor_main(void *arg)
{
    struct runtime *rt = arg;
    pthread_setname_np(pthread_self(), "acceptor");
    log_thread_register("acceptor");
    prcu_thread_register(); /* it reads the live settings */

    struct acc a = {.out = calloc(rt->nworkers, sizeof(*a.out)),
                    .dirty = calloc(rt->nworkers, sizeof(*a.dirty))};
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (a.out == NULL || a.dirty == NULL || epfd < 0) {
        log_error("acceptor: cannot start: %s", strerror(errno ? errno : ENOMEM));
        goto done;
    }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        ring_outbox_init(&a.out[i], rt->workers[i].inbox);
    }
    if (rt->tls_on) {
        ring_outbox_init(&a.hs, rt->hs_in);
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &waker_tag};
    epoll_ctl(epfd, EPOLL_CTL_ADD, rt->acceptor_waker.efd, &ev);
    for (size_t i = 0; i < rt->nlisten; i++) {
        ev = (struct epoll_event){.events = EPOLLIN, .data.u64 = LISTENER_TAG | i};
        epoll_ctl(epfd, EPOLL_CTL_ADD, rt->listen_fds[i], &ev);
    }

    size_t backlog = 0;
    struct epoll_event evs[RT_MAX_LISTEN + 1];
    while (!atomic_load_explicit(&rt->stop, memory_order_relaxed)) {
        int timeout = backlog > 0 ? 1 : -1;
        /* The sleep protocol of ring.h, for the handshake thread's ring. */
        waker_sleep_begin(&rt->acceptor_waker);
        if (rt->tls_on && ring_pending(rt->hs_out)) {
            timeout = 0;
        }
        int n = epoll_wait(epfd, evs, RT_MAX_LISTEN + 1, timeout);
        waker_sleep_end(&rt->acceptor_waker);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 & LISTENER_TAG) {
                accept_from(rt, (unsigned)(evs[i].data.u64 & ~LISTENER_TAG), &a);
            } else {
                waker_drain(&rt->acceptor_waker);
            }
        }
        if (rt->tls_on) {
            take_established(rt, &a);
        }
        backlog = publish(rt, &a);
    }

done:
    /* Stop accepting: from here new clients are refused by the kernel. */
    for (size_t i = 0; i < rt->nlisten; i++) {
        close(rt->listen_fds[i]);
        rt->listen_fds[i] = -1;
    }
    if (a.out != NULL) {
        for (unsigned i = 0; i < rt->nworkers; i++) {
            outbox_discard(&a.out[i]);
        }
    }
    if (rt->tls_on) {
        outbox_discard(&a.hs);
    }
    free(a.out);
    free(a.dirty);
    if (epfd >= 0) {
        close(epfd);
    }
    prcu_thread_unregister();
    return NULL;
}
