/*
 * worker: one epoll loop per worker thread. Each iteration: adopt new connections (at most
 * ADOPT_BUDGET), take messages from the peers (mesh.c), give the connections queued for another
 * turn that turn (conn.c), publish what was staged for the peers, then wait for events (or not,
 * when something is left to do). Every step is bounded; the 100 ms tick runs the timeouts and
 * the product's periodic work.
 */
#include "conn.h"
#include "handshake.h"
#include "live.h"
#include "mesh.h"
#include "worker.h"

#include "petrel/prcu.h"
#include "petrel/log.h"
#include "petrel/sock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define ADOPT_BUDGET  256 /* new connections taken per iteration */
#define EVENT_BATCH   256 /* epoll events per iteration */
#define TICK_MS       100 /* product tick and idle sweep period */
#define DRAIN_SECONDS 2   /* at shutdown, how long unsent replies may take */

static char waker_tag; /* epoll data for the waker's eventfd */

/* The worker running on this thread, for rt_msg_return(). */
_Thread_local struct worker *self_worker;

metric_t *
rt_metrics(unsigned table)
{
    return self_worker->pm[table];
}

bool
rt_populate(void *p, size_t len)
{
    struct worker *w = self_worker;
    return populate_post(&w->rt->populate, w->id, p, len);
}

size_t
rt_populate_left(void)
{
    struct worker *w = self_worker;
    return populate_left(&w->rt->populate, w->id);
}

void
rt_stats_reset(void)
{
    struct worker *w = self_worker;
    metrics_block_reset(w->mblk);
    if (w->id == 0) {
        struct runtime *rt = w->rt;
        atomic_store_explicit(&rt->accepted, 0, memory_order_relaxed);
        atomic_store_explicit(&rt->rejected, 0, memory_order_relaxed);
        atomic_store_explicit(&rt->tls_stats.handshakes, 0, memory_order_relaxed);
        atomic_store_explicit(&rt->tls_stats.resumptions, 0, memory_order_relaxed);
        for (unsigned i = 0; i < TLS_FAIL_COUNT; i++) {
            atomic_store_explicit(&rt->tls_stats.failures[i], 0, memory_order_relaxed);
        }
    }
}

bool
rt_klog_sample(void)
{
    struct worker *w = self_worker;
    if (w->klog_every == 0 || --w->klog_left > 0) {
        return false;
    }
    w->klog_left = w->klog_every;
    return true;
}

/*
 * Milliseconds for the loop's own schedule (the 100 ms tick, the drain deadline), read twice per
 * loop turn: the coarse clock is a plain read of the kernel's tick-updated time, and its
 * resolution (a few ms) is plenty for that. Request latency uses the precise clock elsewhere.
 */
static int64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
worker_init(struct worker *w, struct runtime *rt, unsigned id)
{
    *w = (struct worker){.id = id, .rt = rt, .epfd = -1};
    w->waker.efd = -1;
    int rc = ring_create(&w->inbox, 4096);
    if (rc < 0) {
        return rc;
    }
    rc = waker_init(&w->waker);
    if (rc < 0) {
        return rc;
    }
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd < 0) {
        return -errno;
    }
    /* Edge-triggered: every eventfd write is reported once, so the counter need not be read
     * back (a system call per wake-up, two per request forwarded to a sleeping worker and
     * answered to a sleeping one). It would take 2^64 wake-ups to fill. */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = &waker_tag};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->waker.efd, &ev) < 0) {
        return -errno;
    }
    rc = conn_table_init(w);
    if (rc < 0) {
        return rc;
    }
    w->mail_words = (rt->nworkers + 63) / 64;
    w->peer_in = calloc(rt->nworkers, sizeof(*w->peer_in));
    w->peer_out = calloc(rt->nworkers, sizeof(*w->peer_out));
    w->peer_dirty = calloc(rt->nworkers, sizeof(*w->peer_dirty));
    w->dirty = calloc(rt->nworkers, sizeof(*w->dirty));
    w->pm = calloc(rt->p->nmetrics + 1, sizeof(*w->pm));
    if (w->peer_in == NULL || w->peer_out == NULL || w->peer_dirty == NULL || w->dirty == NULL ||
        w->pm == NULL) {
        return -ENOMEM;
    }
    return 0;
}

void
worker_fini(struct worker *w)
{
    /* Connections still in the inbox were never adopted: close them. */
    void *item;
    if (w->inbox != NULL) {
        while ((item = ring_pop(w->inbox)) != NULL) {
            handoff_discard(item);
        }
        ring_destroy(&w->inbox);
    }
    conn_table_fini(w);
    free(w->peer_in);
    free(w->peer_out);
    free(w->peer_dirty);
    free(w->dirty);
    free(w->pm);
    w->pm = NULL;
    w->peer_in = NULL;
    w->peer_out = NULL;
    w->peer_dirty = NULL;
    w->dirty = NULL;
    waker_fini(&w->waker);
    if (w->epfd >= 0) {
        close(w->epfd);
        w->epfd = -1;
    }
}

static void
adopt_new(struct worker *w)
{
    void *item;
    unsigned n = 0;
    while (n < ADOPT_BUDGET && (item = ring_pop(w->inbox)) != NULL) {
        conn_adopt(w, item);
        n++;
    }
    if (n > 0) {
        ring_release(w->inbox);
    }
}

/* After stop: send what is queued for up to DRAIN_SECONDS, then close everything. */
static void
drain_and_close(struct worker *w)
{
    struct conn_table *t = w->conns;
    int64_t deadline = mono_ms() + DRAIN_SECONDS * 1000;
    struct epoll_event ev[EVENT_BATCH];
    for (;;) {
        unsigned waiting = 0;
        for (unsigned i = 0; i < t->cap; i++) {
            struct conn *c = t->slot[i];
            if (c != NULL && buf_len(&c->io.wbuf) > 0) {
                ssize_t n = connio_flush(&c->io, SIZE_MAX);
                if (n < 0) {
                    conn_close(w, c);
                } else if (buf_len(&c->io.wbuf) > 0) {
                    waiting++;
                }
            }
        }
        /* Peers may still need our shard's answers, and we theirs. */
        mesh_drain(w);
        conn_serve_pending(w);
        conn_flush_batch(w);
        mesh_flush(w);
        for (unsigned i = 0; i < t->cap; i++) {
            struct conn *c = t->slot[i];
            /* Output composed in this round and not all sent (the write budget, a full socket)
             * is owed too. */
            waiting += c != NULL && (c->inflight > 0 || buf_len(&c->io.wbuf) > 0);
        }
        /* Messages for peers not published yet, peers' requests set aside, and peers'
         * messages not read yet are owed. */
        bool backlog = mesh_backlog(w);
        waiting += backlog;
        int64_t left = deadline - mono_ms();
        if (waiting == 0 || left <= 0) {
            break;
        }
        /* Still alive for the health check while draining. */
        metrics_incr(&w->heartbeat);
        /* The sleep protocol of ring.h, so that a peer's message (a reply owed to one of our
         * connections) wakes this wait rather than the next 50 ms. */
        int timeout = backlog ? 0 : (int)(left < 50 ? left : 50);
        if (timeout != 0) {
            waker_sleep_begin(&w->waker);
            if (mesh_backlog(w)) {
                timeout = 0;
            }
        }
        int n = epoll_wait(w->epfd, ev, EVENT_BATCH, timeout);
        waker_sleep_end(&w->waker);
        for (int i = 0; i < n; i++) {
            /* The waker's event needs nothing: it is edge-triggered (see worker_init). */
            if (ev[i].data.ptr != &waker_tag && (ev[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR))) {
                ((struct conn *)ev[i].data.ptr)->io.writable = true;
            }
        }
    }
    for (unsigned i = 0; i < t->cap; i++) {
        if (t->slot[i] != NULL) {
            conn_close(w, t->slot[i]);
        }
    }
}

/* Take this worker's copy of the reloadable settings (every tick: readers never wait). */
static void
worker_refresh(struct worker *w)
{
    struct rt_live l = rt_live_get(w->rt);
    w->idle_timeout = l.idle_timeout;
    w->request_timeout = l.request_timeout;
    if (w->klog_every != l.klog_every) {
        w->klog_every = l.klog_every;
        w->klog_left = l.klog_every;
    }
}

/* The stuck-worker test's hook (admin "debug stall", only with --debug-commands): stall the
 * loop as a runaway request would, heartbeat and all. */
static void
debug_stall(struct worker *w)
{
    unsigned ms = atomic_exchange_explicit(&w->stall_ms, 0, memory_order_relaxed);
    if (ms > 0) {
        log_warn("debug: stalling this worker for %u ms", ms);
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
        }
    }
}

/* Register with RCU and the metrics registry; find the product's slots. */
static int
worker_metrics_setup(struct worker *w)
{
    prcu_thread_register();
    int rc = metrics_block_register(w->rt->metrics, w->id, &w->mblk);
    if (rc < 0) {
        return rc;
    }
    w->m = metrics_slots(w->mblk, 0);
    for (size_t i = 0; i < w->rt->p->nmetrics; i++) {
        w->pm[i] = metrics_slots(w->mblk, (unsigned)i + 1);
    }
    worker_refresh(w);
    return 0;
}

static void
worker_metrics_teardown(struct worker *w)
{
    metrics_block_unregister(w->rt->metrics, &w->mblk);
    w->m = NULL;
    prcu_thread_unregister();
}

void *
worker_main(void *arg)
{
    struct worker *w = arg;
    struct runtime *rt = w->rt;
    char name[16];
    snprintf(name, sizeof(name), "worker-%u", w->id);
    pthread_setname_np(pthread_self(), name);
    log_thread_register(name);
    self_worker = w;

    int rc = worker_metrics_setup(w);
    if (rc == 0) {
        rc = conn_batch_start(w);
    }
    if (rc == 0 && rt->p->worker_setup != NULL) {
        rc = rt->p->worker_setup(w->id, rt->nworkers, rt->cfg, &w->pctx);
    }
    atomic_store(&w->setup_rc, rc);
    atomic_store_explicit(&w->started, true, memory_order_release);
    if (rc < 0) {
        worker_metrics_teardown(w);
        return NULL;
    }

    struct conn_table *t = w->conns;
    struct epoll_event ev[EVENT_BATCH];
    int64_t next_tick = mono_ms() + TICK_MS;
    t->now = time(NULL);
    while (!atomic_load_explicit(&w->stop, memory_order_relaxed)) {
        metrics_incr(&w->heartbeat);
        metrics_incr(&w->m[RTM_EVENT_LOOPS]);
        t->now_ms = mono_ms();
        adopt_new(w);
        mesh_drain(w);
        conn_serve_pending(w);
        conn_flush_batch(w);
        mesh_flush(w);

        int64_t now = mono_ms();
        int timeout = now >= next_tick ? 0 : (int)(next_tick - now);
        if (conn_any_pending(w) || mesh_backlog(w)) {
            timeout = 0;
        }
        /* Nothing to serve: the product may use the time, a bounded slice per turn. */
        if (timeout != 0 && rt->p->idle != NULL && rt->p->idle(w->pctx)) {
            timeout = 0;
        }
        if (timeout != 0) {
            /* The sleep protocol of ring.h: announce, fence, re-check, then block. */
            waker_sleep_begin(&w->waker);
            if (mesh_inbound_pending(w) || atomic_load(&w->stop)) {
                timeout = 0;
            }
        }
        int n = epoll_wait(w->epfd, ev, EVENT_BATCH, timeout);
        waker_sleep_end(&w->waker);
        conn_events_begin(w);
        /* Every event first, so that the reads they allow go in one system call; then each
         * connection's turn. */
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr == &waker_tag) {
                ev[i].data.ptr = NULL; /* its wake-up is over: nothing to read back */
            } else {
                conn_note_event(w, ev[i].data.ptr, ev[i].events);
            }
        }
        conn_read_batch(w);
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr != NULL) {
                conn_handle_event(w, ev[i].data.ptr);
            }
        }
        /* Replies leave now, and requests forwarded while serving these events: not after the
         * next wait. */
        conn_flush_batch(w);
        mesh_flush(w);

        now = mono_ms();
        if (now >= next_tick) {
            next_tick = now + TICK_MS;
            t->now = time(NULL);
            worker_refresh(w);
            t->now_ms = now;
            conn_sweep(w);
            if (rt->p->tick != NULL) {
                rt->p->tick(w->pctx);
            }
            debug_stall(w);
        }
    }
    /* Requests already parsed were answered as they were parsed (bytes a read batch took in
     * after the stop are dropped, as if never read); adopt nothing new. */
    drain_and_close(w);
    if (rt->p->worker_teardown != NULL) {
        rt->p->worker_teardown(w->pctx);
    }
    worker_metrics_teardown(w);
    return NULL;
}

/* ---- what "stats conns" shows ---- */

static const char *
state_name(const struct conn *c)
{
    if (c->closing) {
        return "conn_closing";
    }
    if (buf_len(&c->io.wbuf) > 0 || c->held > 0) {
        return "conn_mwrite";
    }
    if (c->paused || c->inflight > 0) {
        return "conn_parse_cmd";
    }
    return c->partial_since != 0 || buf_len(&c->io.rbuf) > 0 ? "conn_read" : "conn_waiting";
}

void
rt_conns_each(bool listeners, void (*fn)(void *arg, const struct rt_conn_info *ci), void *arg)
{
    struct worker *w = self_worker;
    struct runtime *rt = w->rt;
    char peer[128];
    /* Listeners as recorded at start-up: the acceptor closes the sockets when it stops, while
     * workers still run. */
    for (size_t i = 0; listeners && i < rt->nlisten; i++) {
        const struct rt_listener *l = &rt->listeners[i];
        fn(arg, &(struct rt_conn_info){.fd = l->fd,
                                       .family = l->family,
                                       .peer = l->name,
                                       .listener = l->name,
                                       .transport = rt->listen_tls[i] ? "tls" : "tcp",
                                       .tls_client = "",
                                       .state = "conn_listening"});
    }
    const struct conn_table *t = w->conns;
    for (unsigned i = 0; i < t->cap; i++) {
        const struct conn *c = t->slot[i];
        if (c == NULL) {
            continue;
        }
        int family = sock_peer_name(c->io.t.fd, peer, sizeof(peer));
        const char *listener = c->listener < rt->nlisten ? rt->listeners[c->listener].name : "?";
        const struct tls_session *tls = transport_tls_session(&c->io.t);
        fn(arg, &(struct rt_conn_info){
                    .fd = c->io.t.fd,
                    .family = family,
                    .peer = peer,
                    .listener = listener,
                    .transport = c->io.t.ops->name,
                    .tls_client = tls != NULL ? tls_session_peer(tls) : "",
                    .state = state_name(c),
                    .idle_secs = t->now > c->last_active ? (uint64_t)(t->now - c->last_active) : 0,
                    .product = c->state,
                    .rbuf_len = buf_len(&c->io.rbuf),
                    .rbuf_cap = c->io.rbuf.cap,
                    .wbuf_len = buf_len(&c->io.wbuf),
                    .wbuf_cap = c->io.wbuf.cap,
                });
    }
}
