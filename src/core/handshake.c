/*
 * handshake: the TLS handshake thread. Contract in handshake.h.
 *
 * Every socket is a struct handoff on one of two lists: waiting (no session yet, in accept
 * order: at most hs_max handshakes run at once) and active (a session whose handshake waits for
 * the socket, registered edge-triggered in this thread's epoll set; in the order they started).
 */
#include "handshake.h"
#include "live.h"

#include "petrel/prcu.h"
#include "petrel/log.h"
#include "petrel/sock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS    100 /* how late a timeout may be noticed */
#define EVENTS     128 /* epoll events per turn */
#define TAKE_BATCH 256 /* new sockets taken per turn */
#define EVICT_MS   250 /* a handshake whose client was this long silent may make room */
#define START_MAX  16  /* handshakes started per turn (each costs milliseconds of arithmetic) */

static char waker_tag;

struct hs_list {
    struct handoff *head, *tail;
    size_t n;
};

struct hs_thread {
    struct runtime *rt;
    int epfd;
    struct tls_server *srv; /* the certificates new handshakes use; a reference */
    struct hs_list waiting, active;
    struct ring_outbox out; /* to the acceptor */
    bool out_dirty;
};

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
list_push(struct hs_list *l, struct handoff *h)
{
    h->next = NULL;
    h->prev = l->tail;
    if (l->tail != NULL) {
        l->tail->next = h;
    } else {
        l->head = h;
    }
    l->tail = h;
    l->n++;
}

static void
list_remove(struct hs_list *l, struct handoff *h)
{
    if (h->prev != NULL) {
        h->prev->next = h->next;
    } else {
        l->head = h->next;
    }
    if (h->next != NULL) {
        h->next->prev = h->prev;
    } else {
        l->tail = h->prev;
    }
    h->prev = h->next = NULL;
    l->n--;
}

void
handoff_discard(void *item)
{
    if (inbox_is_handoff(item)) {
        struct handoff *h = item;
        tls_session_free(h->s);
        free(h);
    } else {
        close(inbox_fd(item));
    }
}

/* Close a socket whose handshake failed, count it and say why (at -v). */
static void
fail(struct hs_thread *t, struct handoff *h, enum tls_failure why, const char *detail)
{
    struct runtime *rt = t->rt;
    list_remove(h->s != NULL ? &t->active : &t->waiting, h);
    log_verbose("tls: %s: handshake failed (%s): %s", h->addr, tls_failure_names[why], detail);
    if (h->s != NULL) {
        tls_session_free(h->s); /* closes the socket, which leaves the epoll set */
    } else {
        close(h->fd);
    }
    free(h);
    atomic_fetch_add_explicit(&rt->tls_stats.failures[why], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&rt->hs_closed, 1, memory_order_release);
}

/* The handshake is done: off to the acceptor, which picks the worker. */
static void
established(struct hs_thread *t, struct handoff *h)
{
    struct runtime *rt = t->rt;
    list_remove(&t->active, h);
    epoll_ctl(t->epfd, EPOLL_CTL_DEL, h->fd, NULL);
    bool resumed = tls_session_resumed(h->s);
    const char *peer = tls_session_peer(h->s);
    log_verbose("tls: %s: %s, %s handshake%s%s%s", h->addr, tls_session_suite(h->s),
                resumed ? "resumed" : "full", peer[0] ? ", client '" : "", peer,
                peer[0] ? "'" : "");
    atomic_fetch_add_explicit(resumed ? &rt->tls_stats.resumptions : &rt->tls_stats.handshakes, 1,
                              memory_order_relaxed);
    if (ring_outbox_push(&t->out, h) < 0) {
        log_error("tls: out of memory handing over a connection");
        tls_session_free(h->s);
        free(h);
        atomic_fetch_add_explicit(&rt->hs_closed, 1, memory_order_release);
        return;
    }
    t->out_dirty = true;
}

static void
step(struct hs_thread *t, struct handoff *h)
{
    enum tls_failure why = TLS_FAIL_PROTOCOL;
    char detail[200] = "";
    int rc = tls_handshake(h->s, &why, detail, sizeof(detail));
    if (rc == 0) {
        established(t, h);
    } else if (rc != -EAGAIN) {
        fail(t, h, why, detail);
    } else {
        /* Its client moved: the active list stays in order of the last time each did, so
         * make_room() finds the one silent longest at its head. */
        h->active_ms = now_ms();
        list_remove(&t->active, h);
        list_push(&t->active, h);
    }
}

/*
 * Make room for one more handshake: a free slot, or the slot of the handshake that started
 * longest ago if that was EVICT_MS ago or more. A client that stalls mid-handshake (or a
 * thousand of them) must not keep the next one waiting for its timeout: real handshakes take a
 * few round trips, so under pressure the oldest is the one least likely to finish.
 */
static bool
make_room(struct hs_thread *t, int64_t now)
{
    if (t->active.n < t->rt->hs_max) {
        return true;
    }
    struct handoff *oldest = t->active.head;
    if (oldest == NULL || now - oldest->active_ms < EVICT_MS) {
        return false; /* a burst of fresh handshakes: the newcomer waits its turn */
    }
    fail(t, oldest, TLS_FAIL_TIMEOUT,
         "every handshake slot was taken and its client had been silent longest: closed to "
         "make room");
    return true;
}

/* Give waiting sockets a session, newest first: under a flood the oldest waiting are the most
 * likely to be stale (and they time out where they are). */
static void
start_waiting(struct hs_thread *t)
{
    for (int n = 0; n < START_MAX && t->waiting.tail != NULL && make_room(t, now_ms()); n++) {
        struct handoff *h = t->waiting.tail;
        h->s = tls_session_new(t->srv, h->fd);
        if (h->s == NULL) {
            return; /* out of memory: try again next turn, or time out */
        }
        list_remove(&t->waiting, h);
        list_push(&t->active, h);
        h->active_ms = now_ms();
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.ptr = h};
        if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, h->fd, &ev) < 0) {
            fail(t, h, TLS_FAIL_CLOSED, strerror(errno));
            continue;
        }
        step(t, h); /* the ClientHello is usually there already */
    }
}

/* How long the loop may sleep: a tick, or less when sockets wait for a slot that a silent
 * handshake will give up, or none when they could start now. */
static int
wait_ms(const struct hs_thread *t, int64_t now)
{
    if (t->waiting.head == NULL) {
        return TICK_MS;
    }
    if (t->active.n < t->rt->hs_max) {
        return 0;
    }
    int64_t left = t->active.head->active_ms + EVICT_MS - now;
    return left <= 0 ? 0 : left < TICK_MS ? (int)left : TICK_MS;
}

/* New sockets from the acceptor. */
static void
take_new(struct hs_thread *t, int64_t deadline)
{
    void *item;
    unsigned n = 0;
    while (n < TAKE_BATCH && (item = ring_pop(t->rt->hs_in)) != NULL) {
        n++;
        struct handoff *h = calloc(1, sizeof(*h));
        if (h == NULL) {
            log_error("tls: out of memory taking a connection");
            close(inbox_fd(item));
            atomic_fetch_add_explicit(&t->rt->hs_closed, 1, memory_order_release);
            continue;
        }
        h->fd = inbox_fd(item);
        h->listener = inbox_listener(item);
        h->deadline_ms = deadline;
        (void)sock_peer_name(h->fd, h->addr, sizeof(h->addr));
        list_push(&t->waiting, h);
    }
    if (n > 0) {
        ring_release(t->rt->hs_in);
    }
}

/* Close what is past its deadline. The waiting list is in accept order, so its head is the
 * first due; the active list is in start order, which is not deadline order (the newest waiting
 * start first), but it is bounded by hs_max, and this runs once a tick. */
static void
expire(struct hs_thread *t, int64_t now)
{
    for (struct handoff *h = t->active.head, *next; h != NULL; h = next) {
        next = h->next;
        if (h->deadline_ms <= now) {
            fail(t, h, TLS_FAIL_TIMEOUT, "the handshake was not done in time");
        }
    }
    while (t->waiting.head != NULL && t->waiting.head->deadline_ms <= now) {
        fail(t, t->waiting.head, TLS_FAIL_TIMEOUT, "waited for a handshake slot until timed out");
    }
}

/* Certificates reloaded by main: new handshakes use them; running ones keep theirs. */
static void
swap_certificates(struct hs_thread *t)
{
    struct tls_server *next =
        atomic_exchange_explicit(&t->rt->tls_next, NULL, memory_order_acquire);
    if (next != NULL) {
        tls_server_put(t->srv);
        t->srv = next;
    }
}

static void
shut_down(struct hs_thread *t)
{
    while (t->active.head != NULL) {
        fail(t, t->active.head, TLS_FAIL_CLOSED, "the server is stopping");
    }
    while (t->waiting.head != NULL) {
        fail(t, t->waiting.head, TLS_FAIL_CLOSED, "the server is stopping");
    }
    /* What is still in the rings (the acceptor may still be running now) is main's to discard
     * once every thread has stopped (runtime_free); the overflow is this thread's own. */
    void *item;
    while ((item = ring_outbox_take(&t->out)) != NULL) {
        handoff_discard(item);
    }
    ring_outbox_fini(&t->out);
}

void *
handshake_main(void *arg)
{
    struct runtime *rt = arg;
    pthread_setname_np(pthread_self(), "handshake");
    log_thread_register("handshake");
    prcu_thread_register(); /* it reads the live settings */
    /* SCHED_IDLE (this thread only; lowering one's own priority is always allowed): it runs
     * when no worker wants the CPU, and a worker that wakes preempts it at once, so handshakes
     * add nothing to the tail of requests. The price: while the workers keep every core busy,
     * new TLS connections wait, and time out if that lasts. Existing clients come first. */
    struct sched_param sp = {0};
    if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0) {
        (void)setpriority(PRIO_PROCESS, 0, 19);
    }

    struct hs_thread t = {.rt = rt, .epfd = epoll_create1(EPOLL_CLOEXEC)};
    t.srv = atomic_exchange(&rt->tls_next, NULL);
    ring_outbox_init(&t.out, rt->hs_out);
    if (t.epfd < 0 || t.srv == NULL) {
        log_error("tls: the handshake thread cannot start: %s", strerror(errno ? errno : EINVAL));
        rt_request_stop();
    } else {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &waker_tag};
        epoll_ctl(t.epfd, EPOLL_CTL_ADD, rt->hs_waker.efd, &ev);
    }

    struct epoll_event evs[EVENTS];
    int64_t next_tick = 0;
    while (t.epfd >= 0 && !atomic_load_explicit(&rt->stop, memory_order_relaxed)) {
        int timeout = wait_ms(&t, now_ms());
        waker_sleep_begin(&rt->hs_waker);
        if (ring_pending(rt->hs_in) || atomic_load(&rt->tls_next) != NULL ||
            atomic_load(&rt->stop)) {
            timeout = 0;
        }
        int n = epoll_wait(t.epfd, evs, EVENTS, timeout);
        waker_sleep_end(&rt->hs_waker);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &waker_tag) {
                waker_drain(&rt->hs_waker);
            } else {
                step(&t, evs[i].data.ptr);
            }
        }
        int64_t now = now_ms();
        swap_certificates(&t);
        unsigned secs = rt_live_get(rt).tls_handshake_timeout;
        take_new(&t, now + (int64_t)secs * 1000);
        start_waiting(&t);
        if (now >= next_tick) {
            next_tick = now + TICK_MS;
            expire(&t, now);
        }
        atomic_store_explicit(&rt->tls_stats.active, t.active.n + t.waiting.n,
                              memory_order_relaxed);
        if (t.out_dirty) {
            if (ring_outbox_flush(&t.out)) {
                waker_notify(&rt->acceptor_waker);
            }
            t.out_dirty = ring_outbox_backlog(&t.out) > 0;
        }
    }
    shut_down(&t);
    swap_certificates(&t);
    tls_server_put(t.srv);
    if (t.epfd >= 0) {
        close(t.epfd);
    }
    prcu_thread_unregister();
    return NULL;
}
