/*
 * acceptor: takes new connections off the listening sockets and hands each to the worker with
 * the fewest connections, through the worker's inbox ring (acceptor(w) -> worker(r)).
 *
 * A full inbox never blocks the acceptor: the descriptor waits in that worker's outbox overflow
 * list and is retried every millisecond until it fits.
 */
#include "acceptor.h"
#include "live.h"

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

static const char too_many[] = "ERROR Too many open connections\r\n";

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

static unsigned
live_connections(struct runtime *rt)
{
    unsigned n = 0;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        n += worker_nconns(&rt->workers[i], rt->workers[i].assigned);
    }
    return n;
}

static void
reject(struct runtime *rt, int fd)
{
    /* Counted first: a client that has read the refusal then finds it in the stats. */
    atomic_fetch_add_explicit(&rt->rejected, 1, memory_order_relaxed);
    /* Best effort, like memcached: the socket is new, so its buffer has room for one line. */
    (void)send(fd, too_many, sizeof(too_many) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
}

static void
accept_from(struct runtime *rt, unsigned listener, struct ring_outbox *out, bool *dirty,
            unsigned *rr)
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
        if (live_connections(rt) >= rt_live_get(rt).max_conns) {
            reject(rt, fd);
            continue;
        }
        (void)sock_nodelay(fd);
        struct worker *w = pick_worker(rt, rr);
        if (ring_outbox_push(&out[w->id], inbox_item(fd, listener)) < 0) {
            log_error("out of memory queueing a connection");
            close(fd);
            continue;
        }
        w->assigned++;
        dirty[w->id] = true;
    }
}

/* Publish what each worker was given and wake the sleepers. Returns descriptors still waiting. */
static size_t
publish(struct runtime *rt, struct ring_outbox *out, bool *dirty)
{
    size_t backlog = 0;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        if (dirty[i] && ring_outbox_flush(&out[i])) {
            waker_notify(&rt->workers[i].waker);
        }
        dirty[i] = ring_outbox_backlog(&out[i]) > 0;
        backlog += ring_outbox_backlog(&out[i]);
    }
    return backlog;
}

void *
acceptor_main(void *arg)
{
    struct runtime *rt = arg;
    pthread_setname_np(pthread_self(), "acceptor");
    log_thread_register("acceptor");
    metrics_thread_register(); /* it reads the live settings */

    struct ring_outbox *out = calloc(rt->nworkers, sizeof(*out));
    bool *dirty = calloc(rt->nworkers, sizeof(*dirty));
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (out == NULL || dirty == NULL || epfd < 0) {
        log_error("acceptor: cannot start: %s", strerror(errno ? errno : ENOMEM));
        goto done;
    }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        ring_outbox_init(&out[i], rt->workers[i].inbox);
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &waker_tag};
    epoll_ctl(epfd, EPOLL_CTL_ADD, rt->acceptor_waker.efd, &ev);
    for (size_t i = 0; i < rt->nlisten; i++) {
        ev = (struct epoll_event){.events = EPOLLIN, .data.u64 = LISTENER_TAG | i};
        epoll_ctl(epfd, EPOLL_CTL_ADD, rt->listen_fds[i], &ev);
    }

    unsigned rr = 0;
    size_t backlog = 0;
    struct epoll_event evs[RT_MAX_LISTEN + 1];
    while (!atomic_load_explicit(&rt->stop, memory_order_relaxed)) {
        int n = epoll_wait(epfd, evs, RT_MAX_LISTEN + 1, backlog > 0 ? 1 : -1);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 & LISTENER_TAG) {
                accept_from(rt, (unsigned)(evs[i].data.u64 & ~LISTENER_TAG), out, dirty, &rr);
            } else {
                waker_drain(&rt->acceptor_waker);
            }
        }
        backlog = publish(rt, out, dirty);
    }

done:
    /* Stop accepting: from here new clients are refused by the kernel. */
    for (size_t i = 0; i < rt->nlisten; i++) {
        close(rt->listen_fds[i]);
        rt->listen_fds[i] = -1;
    }
    if (out != NULL) {
        for (unsigned i = 0; i < rt->nworkers; i++) {
            /* Descriptors that never reached a worker. */
            while (ring_outbox_backlog(&out[i]) > 0) {
                close(inbox_fd(out[i].over[out[i].over_head]));
                out[i].over_head = (out[i].over_head + 1) & (out[i].over_cap - 1);
                out[i].over_len--;
            }
            ring_outbox_fini(&out[i]);
        }
    }
    free(out);
    free(dirty);
    if (epfd >= 0) {
        close(epfd);
    }
    metrics_thread_unregister();
    return NULL;
}
