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
#include "petrel/tls.h"
#include "populate.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define RT_MAX_LISTEN  32
#define RT_MAX_WORKERS 256 /* --threads at most */
#define RT_MAIL_WORDS  (RT_MAX_WORKERS / 64)

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
    RTM_INPUT_WAITS,      /* reads put off because the buffers held buffer-memory */
    RTM_BUFFER_REFUSALS,  /* requests refused after waiting MEMWAIT_MS for buffer memory */
    RTM_REQUEST_TIMEOUTS, /* connections closed with a request unfinished past request-timeout */
    RTM_IDLE_KICKS,       /* connections closed for being idle past idle-timeout */
    RTM_TLS_CONNECTIONS,  /* gauge: established TLS connections */
    RTM_TLS_ERRORS,       /* TLS connections closed for a bad record or a renegotiation */
    RTM_URING_CALLS,      /* io_uring system calls (conn_read_batch, conn_flush_batch) */
    RTM_URING_READS,      /* reads they carried */
    RTM_URING_SENDS,      /* sends they carried */
    RTM_COUNT
};
extern const struct metric_table rt_worker_metrics;

struct rt_live;

/* The handshake thread's counters: handshake(w), main(w: reload_errors) -> admin(r). */
struct tls_counters {
    _Atomic uint64_t handshakes;  /* full handshakes completed */
    _Atomic uint64_t resumptions; /* resumed handshakes completed */
    _Atomic uint64_t failures[TLS_FAIL_COUNT];
    _Atomic uint64_t reload_errors; /* SIGHUPs whose certificates did not load */
    _Atomic uint64_t active;        /* gauge: sockets waiting for or in a handshake */
};

struct worker {
    unsigned id;
    struct runtime *rt;
    pthread_t thread;
    int epfd;
    struct waker waker;         /* producers: acceptor (and later peer workers) */
    struct ring *inbox;         /* acceptor(w) -> worker(r): accepted sockets, see inbox_item() */
    _Atomic bool stop;          /* main(w) -> worker(r) */
    _Atomic int setup_rc;       /* worker(w) -> main(r), valid once started is set */
    _Atomic bool started;       /* worker(w) -> main(r) */
    unsigned assigned;          /* acceptor-private: connections handed to this worker */
    _Atomic uint64_t closed;    /* worker(w) -> acceptor(r): connections closed */
    _Atomic uint64_t heartbeat; /* worker(w) -> admin(r): bumped every loop iteration */
    _Atomic unsigned stall_ms;  /* admin(w) -> worker(r): debug hook, sleep this long once */
    struct metrics_block *mblk; /* worker-owned; registered in rt->metrics */
    metric_t *m;                /* worker(w): its runtime slots (enum rt_metric) */
    metric_t **pm;              /* worker-private: slots of the product's tables */
    unsigned idle_timeout;      /* worker-private copies of the live settings, every tick */
    unsigned request_timeout;
    unsigned klog_every, klog_left;
    void *pctx;               /* the product's worker context; worker-private */
    struct conn_table *conns; /* worker-private */
    /* The forwarding mesh: one ring per ordered pair of workers; [id] is unused. */
    struct ring **peer_in; /* peer j(w) -> this(r), messages from worker j */
    /* A bit per peer that published to its ring since this worker last looked (mesh.c), so a
     * loop turn looks only at the rings that have something: peers(w: fetch_or, release) ->
     * this(r: exchange, acquire). On a line of its own: the peers write it. */
    _Alignas(PETREL_CACHELINE) _Atomic uint64_t mail[RT_MAIL_WORDS];
    _Alignas(PETREL_CACHELINE) uint64_t mail_left[RT_MAIL_WORDS]; /* worker-private: rings
                                                                      the budget left unread */
    bool mail_held;               /* worker-private: a bit of mail_left is set */
    struct ring_outbox *peer_out; /* this(w) -> peer j(r); worker-private */
    bool *peer_dirty;             /* worker-private: something staged for peer j */
    uint16_t *dirty;              /* worker-private: the ndirty peers with peer_dirty set */
    unsigned ndirty;
    struct rt_msg *later, *later_tail; /* worker-private: costly messages set aside (mesh.c) */
    unsigned drain_from; /* worker-private: the peer drained first (mesh.c): the one after
                          * the last a turn's budget stopped at */
    unsigned mail_words; /* worker-private: words of mail in use, (workers + 63) / 64 */
    size_t mesh_spent;   /* worker-private: costs of the messages handled (mesh.c) */
};

/* --io-uring: whether workers batch their socket calls (src/core/iobatch.h). */
enum rt_io_uring { RT_URING_OFF, RT_URING_AUTO, RT_URING_ON };

struct runtime {
    const struct rt_product *p;
    const struct config *cfg;
    unsigned nworkers;
    struct worker *workers;

    /* options, read-only after start-up; the reloadable ones are in live */
    struct rt_live *live; /* RCU-protected; see struct rt_live */
    size_t rbuf_init, rbuf_max, wbuf_limit, wbuf_max;
    size_t buf_budget; /* per worker: buffers beyond rbuf_init, read and write, all connections */

    int listen_fds[RT_MAX_LISTEN];        /* acceptor's: closed (-1) when it stops */
    bool listen_tls[RT_MAX_LISTEN];       /* read-only: the listener speaks TLS */
    unsigned listen_proto[RT_MAX_LISTEN]; /* read-only: its rt_port.proto (0: the main port's) */
    struct rt_listener {                  /* read-only after start-up: for "stats conns" */
        int fd;                           /* as opened (it may be closed at shutdown) */
        int family;
        char name[128];
    } listeners[RT_MAX_LISTEN];
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
    unsigned io_uring;              /* read-only: --io-uring (enum rt_io_uring) */

    /* TLS: only when a listener speaks it (see handshake.h). */
    bool tls_on;                           /* read-only */
    struct tls_server *tls;                /* main-private: the certificates in force */
    _Atomic(struct tls_server *) tls_next; /* main(w) -> handshake(r): use these from now on */
    pthread_t handshaker;
    struct waker hs_waker;      /* acceptor, main -> handshake thread */
    struct ring *hs_in;         /* acceptor(w) -> handshake(r): sockets, inbox_item() */
    struct ring *hs_out;        /* handshake(w) -> acceptor(r): struct handoff */
    _Atomic uint64_t hs_closed; /* handshake(w) -> acceptor(r): sockets it closed */
    size_t hs_max;              /* read-only: handshakes holding a session at once */
    struct tls_counters tls_stats;

    struct populate populate; /* memory made present for the workers (populate.h) */
};

/*
 * An item of a worker's inbox (and of the handshake thread's): either a plain accepted socket,
 * its descriptor and the index of its listener packed into the pointer-sized item with the top
 * bit set (never NULL), or a pointer to a struct handoff, an established TLS connection (user
 * pointers never have the top bit).
 */
#define INBOX_SOCKET_TAG (UINT64_C(1) << 63)

static inline void *
inbox_item(int fd, unsigned listener)
{
    return (void *)(uintptr_t)(INBOX_SOCKET_TAG | ((uint64_t)listener << 32) | (uint32_t)fd);
}

static inline bool
inbox_is_handoff(void *item)
{
    return ((uint64_t)(uintptr_t)item & INBOX_SOCKET_TAG) == 0;
}

static inline int
inbox_fd(void *item)
{
    return (int)(uint32_t)(uintptr_t)item;
}

static inline unsigned
inbox_listener(void *item)
{
    return (unsigned)(((uint64_t)(uintptr_t)item & ~INBOX_SOCKET_TAG) >> 32);
}

/** Live connections of w: acceptor's count of hand-offs less the worker's closes. Any thread. */
static inline unsigned
worker_nconns(struct worker *w, unsigned assigned)
{
    return assigned - (unsigned)atomic_load_explicit(&w->closed, memory_order_relaxed);
}

#endif /* PETREL_CORE_H */
