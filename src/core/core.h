/*
 * Private to src/core: the runtime's shared structures. Each field says which thread writes it
 * and which threads read it.
 */
#ifndef PETREL_CORE_H
#define PETREL_CORE_H

#include "petrel/ring.h"
#include "petrel/runtime.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define RT_MAX_LISTEN 32

struct runtime;

/* Per-worker counters: written by the worker (relaxed), read by the admin thread. */
struct worker_stats {
    _Atomic uint64_t adopted; /* connections taken from the inbox */
    _Atomic uint64_t closed;  /* connections closed */
    _Atomic uint64_t bytes_read;
    _Atomic uint64_t bytes_written;
    _Atomic uint64_t loops; /* event loop iterations (a heartbeat) */
};

struct worker {
    unsigned id;
    struct runtime *rt;
    pthread_t thread;
    int epfd;
    struct waker waker; /* producers: acceptor (and later peer workers) */
    struct ring *inbox; /* acceptor(w) -> worker(r): accepted fds, as (void *)(intptr_t)(fd + 1) */
    _Atomic bool stop;  /* main(w) -> worker(r) */
    _Atomic int setup_rc;      /* worker(w) -> main(r), valid once started is set */
    _Atomic bool started;      /* worker(w) -> main(r) */
    unsigned assigned;         /* acceptor-private: connections handed to this worker */
    struct worker_stats stats; /* worker(w) -> admin(r) */
    void *pctx;                /* the product's worker context; worker-private */
    struct conn_table *conns;  /* worker-private */
    /* The forwarding mesh: one ring per ordered pair of workers; [id] is unused. */
    struct ring **peer_in;        /* peer j(w) -> this(r), messages from worker j */
    struct ring_outbox *peer_out; /* this(w) -> peer j(r); worker-private */
    bool *peer_dirty;             /* worker-private: something staged for peer j */
};

struct runtime {
    const struct rt_product *p;
    const struct config *cfg;
    unsigned nworkers;
    struct worker *workers;

    /* options, read-only after start-up */
    unsigned max_conns;
    unsigned idle_timeout; /* seconds, 0 = never */
    size_t rbuf_init, rbuf_max, wbuf_limit, wbuf_max;

    int listen_fds[RT_MAX_LISTEN];
    size_t nlisten;
    int admin_fd;
    char *unix_path; /* unlinked at exit */

    pthread_t acceptor, admin;
    struct waker acceptor_waker, admin_waker; /* main -> thread: stop */
    _Atomic bool stop;                        /* main(w) -> acceptor, admin (r) */

    _Atomic uint64_t accepted; /* acceptor(w) -> admin(r) */
    _Atomic uint64_t rejected; /* acceptor(w) -> admin(r) */
    int64_t started_at;        /* unix seconds; read-only */
};

/** Live connections of w: acceptor's count of hand-offs less the worker's closes. Any thread. */
static inline unsigned
worker_nconns(struct worker *w, unsigned assigned)
{
    return assigned - (unsigned)atomic_load_explicit(&w->stats.closed, memory_order_relaxed);
}

/* worker.c */
int worker_init(struct worker *w, struct runtime *rt, unsigned id);
/* Build the mesh of rings between every ordered pair of workers (all initialised). */
int workers_connect(struct runtime *rt);
void worker_fini(struct worker *w);
/* After every worker stopped: free messages left in the mesh. */
void workers_free_mesh(struct runtime *rt);
void *worker_main(void *arg);

/* acceptor.c */
void *acceptor_main(void *arg);

/* notify.c: send "READY=1" and friends to systemd if $NOTIFY_SOCKET is set; 0 or -errno. */
int notify_send(const char *msg);

/* admin.c */
int admin_listen(struct runtime *rt, char *err, size_t errlen);
void *admin_main(void *arg);

#endif /* PETREL_CORE_H */
