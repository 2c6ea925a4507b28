/*
 * Private to src/core: the runtime's shared structures. Each field says which thread writes it
 * and which threads read it.
 */
#ifndef PETREL_CORE_H
#define PETREL_CORE_H

#include "petrel/log.h"
#include "petrel/metrics.h"
#include "petrel/ring.h"
#include "petrel/runtime.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define RT_MAX_LISTEN 32

struct runtime;

/* The runtime's per-worker metrics: table 0 of the registry (runtime.c declares it). */
enum rt_metric {
    RTM_CURR_CONNECTIONS, /* gauge */
    RTM_CONNECTIONS_CLOSED,
    RTM_BYTES_READ,
    RTM_BYTES_WRITTEN,
    RTM_EVENT_LOOPS,
    RTM_CONN_BUFFER_BYTES, /* gauge: read and write buffers of its connections */
    RTM_MESSAGES_SENT,     /* to other workers: forwarded requests and their replies */
    RTM_MESSAGES_RECEIVED,
    RTM_INPUT_WAITS, /* reads put off because the buffers held buffer-memory */
    RTM_COUNT
};
extern const struct metric_table rt_worker_metrics;

/*
 * The settings that a reload may change, published through an RCU-protected pointer
 * (main(w) -> every thread(r)): readers dereference it inside metrics_read_lock(); a reload
 * swaps in a new one with rcu_xchg_pointer() and frees the old one through call_rcu.
 */
struct rt_live {
    struct config *cfg; /* the configuration in force */
    bool owned;         /* built by a reload, freed with this; else main's */
    unsigned max_conns;
    unsigned idle_timeout; /* seconds, 0 = never */
    unsigned klog_every;   /* log 1 in N requests to the command log; 0 = off */
    unsigned health_timeout;
    enum log_level level;
};

struct worker {
    unsigned id;
    struct runtime *rt;
    pthread_t thread;
    int epfd;
    struct waker waker; /* producers: acceptor (and later peer workers) */
    struct ring *inbox; /* acceptor(w) -> worker(r): accepted fds, as (void *)(intptr_t)(fd + 1) */
    _Atomic bool stop;  /* main(w) -> worker(r) */
    _Atomic int setup_rc;       /* worker(w) -> main(r), valid once started is set */
    _Atomic bool started;       /* worker(w) -> main(r) */
    unsigned assigned;          /* acceptor-private: connections handed to this worker */
    _Atomic uint64_t closed;    /* worker(w) -> acceptor(r): connections closed */
    _Atomic uint64_t heartbeat; /* worker(w) -> admin(r): bumped every loop iteration */
    _Atomic unsigned stall_ms;  /* admin(w) -> worker(r): debug hook, sleep this long once */
    struct metrics_block *mblk; /* worker-owned; registered in rt->metrics */
    metric_t *m;                /* worker(w): its runtime slots (enum rt_metric) */
    metric_t **pm;              /* worker-private: slots of the product's tables */
    unsigned idle_timeout;      /* worker-private copy of the live setting, taken every tick */
    unsigned klog_every, klog_left;
    void *pctx;               /* the product's worker context; worker-private */
    struct conn_table *conns; /* worker-private */
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

    /* options, read-only after start-up; the reloadable ones are in live */
    struct rt_live *live; /* RCU-protected; see struct rt_live */
    size_t rbuf_init, rbuf_max, wbuf_limit, wbuf_max;
    size_t buf_budget; /* per worker: buffers beyond rbuf_init, read and write, all connections */

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

    struct metrics *metrics;        /* table 0: the runtime's, then the product's */
    _Atomic uint64_t reloads;       /* main(w) -> admin(r): configurations swapped in */
    _Atomic uint64_t reload_errors; /* main(w) -> admin(r): files that failed to load */
    _Atomic unsigned workers_stuck; /* admin(w) -> any(r) */
    bool debug_commands;            /* read-only: --debug-commands */
};

/** Live connections of w: acceptor's count of hand-offs less the worker's closes. Any thread. */
static inline unsigned
worker_nconns(struct worker *w, unsigned assigned)
{
    return assigned - (unsigned)atomic_load_explicit(&w->closed, memory_order_relaxed);
}

/* runtime.c: a copy of the live settings. Any RCU-registered thread. */
struct rt_live rt_live_get(struct runtime *rt);

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
/* The watchdog period systemd set (WatchdogSec=, as $WATCHDOG_USEC) in microseconds; 0 when there
 * is none, or when $WATCHDOG_PID names another process. */
uint64_t notify_watchdog_usec(void);

/* admin.c */
int admin_listen(struct runtime *rt, char *err, size_t errlen);
void *admin_main(void *arg);
/* The process-wide values rendered with the registry: fills out[], returns how many. */
size_t admin_globals(struct runtime *rt, struct metric_value *out, size_t cap);

#endif /* PETREL_CORE_H */
