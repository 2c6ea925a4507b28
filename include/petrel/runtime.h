/*
 * runtime: the threads every Petrel product runs on.
 *
 *   acceptor thread  accepts connections and hands each to the worker with the fewest, through
 *                    that worker's SPSC ring (acceptor(w) -> worker(r)), waking it only if it
 * sleeps worker threads   one epoll loop each, owning their connections, buffers and product state
 *   admin thread     the admin port (stats text, HTTP /metrics, /vars, /health), the health
 *                    check and the log flusher
 *   main thread      configuration, start-up, signals (SIGTERM/SIGINT: graceful stop, SIGHUP:
 *                    reopen the log files and reload the configuration), teardown
 *
 * Metrics: the runtime keeps a registry (include/petrel/metrics.h) whose first table is its own
 * per-worker metrics (connections, bytes, loop turns, buffers, messages) and whose next tables
 * are the product's (rt_product.metrics). Each worker owns one block of it.
 *
 * A product (petrel-ping, petrel) is a struct rt_product: callbacks that parse requests from a
 * connection's read buffer and append replies to its write buffer. The runtime knows no protocol
 * and no storage.
 */
#ifndef PETREL_RUNTIME_H
#define PETREL_RUNTIME_H

#include "petrel/buf.h"
#include "petrel/config.h"
#include "petrel/metrics.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** A client connection. Owned by one worker; only that worker's thread may touch it. */
struct conn;

/*
 * Cross-worker messages. A product that shards its data forwards a request to the worker owning
 * it: it embeds struct rt_msg at the start of its own message, calls conn_forward() on the
 * connection's worker, the owner's on_requests() runs it and calls rt_msg_return(), and the
 * origin's on_reply() gets it back. Messages travel over one SPSC ring per ordered worker pair,
 * published once per loop iteration; a full ring never blocks (an overflow list holds the rest).
 * A message names its connection by (slot, generation), never by pointer, so a reply for a
 * connection closed meanwhile is handed back with c == NULL and nothing else happens.
 *
 * Work per loop iteration is bounded in bytes on this path too: the sender gives each message
 * its cost, the bytes handling it may copy (a value it carries, the reply room it was given),
 * the destination sets it to what running it did copy before rt_msg_return(), and a worker
 * takes in order only so much of that per iteration. A costly message that may be
 * handled out of order (every reply; a request marked any_order) is set aside and run within a
 * budget of its own, so that cheap messages behind it are not kept waiting.
 */
struct rt_msg {
    uint32_t conn_slot; /* origin connection: slot in its worker's table ... */
    uint32_t conn_gen;  /* ... and that slot's generation when the request left */
    uint16_t origin;    /* worker that sent the request and receives the reply */
    uint16_t dest;      /* worker that executes it */
    bool is_reply;
    bool any_order; /* a request that may run after requests sent later */
    uint32_t cost;  /* bytes its handling may copy: the sender's estimate, then what it copied */
    struct rt_msg *next; /* the runtime's, while the message waits on its destination */
};

/* The most forwarded requests handed to one on_requests() call. */
#define RT_REQUEST_BATCH 16

/*
 * What a product's on_data() tells the runtime: the one result type between them.
 */
enum rt_result {
    /* Every complete request was consumed; what is left in conn_rbuf(c) (if anything) is the
     * start of the next one. Called again when more bytes arrive. */
    RT_NEED_MORE = 0,
    /* Stopped early with requests (or parts of one) left to answer, because the connection's
     * output is full (conn_output_full(c), or conn_output_room(c) too small for the next step):
     * called again, with or without new bytes, once some of the output has been sent or a reply
     * for c came back. With nothing queued to send and nothing in flight, use RT_NEED_MORE. */
    RT_CONTINUE,
    /* Too many requests of c wait for other workers (or its output is held in reply order
     * behind them): c is not read until a reply for c comes back. After every reply for c,
     * paused or not, on_data is called again (with or without new bytes). */
    RT_PAUSED,
    /* Send what is queued, then close: "quit", or framing lost after an error reply. */
    RT_CLOSE,
    /* Close at once, sending nothing more (out of memory in the product). */
    RT_ABORT,
};

/* A product's other protocol, on a port of its own (e.g. RESP beside memcached). */
struct rt_port {
    const char *option; /* the product's OPT_UINT option holding the port; 0 there: off */
    unsigned proto;     /* what conn_protocol() says for its connections (not 0) */
    const char *name;   /* for the start-up log, e.g. "(resp)" */
    /* What a client refused on this port past --max-conns reads before the close, in the
     * port's protocol (e.g. Redis's "-ERR max number of clients reached\r\n"); NULL: the
     * product's refusal. */
    const char *refusal;
};

/*
 * A product. Every callback runs on the worker thread that owns the connection or the context.
 */
struct rt_product {
    const char *name;       /* for logs and stats, e.g. "petrel-ping" */
    size_t conn_state_size; /* bytes of per-connection product state, zeroed at accept */
    size_t request_max;     /* the largest request that must fit whole in the read buffer */
    size_t reply_max;       /* the largest reply one request may produce (0: request_max) */
    /* What a client refused past --max-conns reads before the close, in the product's protocol
     * (e.g. memcached's "ERROR Too many open connections\r\n"); NULL: only the close. A port
     * of ports[] may have its own (rt_port.refusal). A TLS client never gets it (it would take
     * the plain text for a broken record). */
    const char *refusal;
    /* The name of the product's option (an OPT_UINT) that holds its TCP port, e.g. "port": the
     * runtime listens there, beside --tls-port. */
    const char *port_option;
    /* Other protocols, each on its own plain TCP port beside the main one. Optional. */
    const struct rt_port *ports;
    size_t nports;
    /** The largest request under cfg, when settings make it smaller than request_max. Optional;
     * called once at start-up. It caps the read buffers and sets each worker's least share of
     * buffer-memory. */
    size_t (*request_limit)(const struct config *cfg);

    /**
     * The product's own start-up refusals, made before anything starts by rt_main() and, the
     * same function, by rt_validate() (--check-config): options that do not go together (a
     * shard too small for its segments), files worker_setup will read. nworkers is what the
     * runtime will start. Returns 0; -EINVAL for values that do not go together (exit status
     * 64) or another negative errno for a file or the system (78), with err one line naming the
     * option. Must not create or change anything. Optional.
     */
    int (*check)(const struct config *cfg, unsigned nworkers, char *err, size_t errlen);
    /**
     * The most workers the product's settings serve well (e.g. each storage shard a useful
     * share of the memory limit). Caps the automatic count (--threads 0, one per online CPU),
     * never an explicit --threads, which check() judges. At least 1. Optional.
     */
    unsigned (*workers_max)(const struct config *cfg);
    /** Build a worker's context (e.g. its storage shard). Returns 0 or a negative errno. */
    int (*worker_setup)(unsigned worker, unsigned nworkers, const struct config *cfg, void **ctx);
    /** Free what worker_setup built. Optional. */
    void (*worker_teardown)(void *ctx);
    /**
     * Bytes arrived on c (conn_rbuf(c)), or c may go on after RT_CONTINUE / RT_PAUSED: consume
     * every complete request, append the replies to conn_wbuf(c) (or hold them, counted with
     * conn_output_hold(), until their turn), and stop early once conn_output_full(c). A request
     * whose replies are large (a multi-key get) may stop between its parts: no request makes
     * the output grow by more than one part past the limit.
     */
    enum rt_result (*on_data)(void *ctx, struct conn *c);
    /** The connection is about to be freed: release anything conn_state(c) owns. Optional. */
    void (*on_close)(void *ctx, struct conn *c);
    /** Periodic work, about ten times a second, with a bounded cost. Optional. */
    void (*tick)(void *ctx);
    /**
     * Background work for a worker with nothing to serve, called before it would sleep: one
     * bounded slice (a few hundred microseconds at most). Return true if more is left; the worker
     * then polls its sockets and calls again instead of sleeping. Optional.
     */
    bool (*idle)(void *ctx);
    /**
     * On the destination worker: execute n forwarded requests (1..RT_REQUEST_BATCH, in the
     * order their origin sent them, except that a costly request marked any_order may run
     * after requests sent later), handing each back with rt_msg_return(). A batch lets the
     * product overlap the memory accesses of its requests. Must not forward anything itself.
     * Needed by products that forward.
     */
    void (*on_requests)(void *ctx, struct rt_msg *const *m, unsigned n);
    /**
     * On the origin worker: the request came back with its reply. c is the connection, or NULL
     * if it was closed meanwhile; either way the product owns m again and frees it. A costly
     * reply may be handed over after replies the same peer returned later.
     */
    void (*on_reply)(void *ctx, struct conn *c, struct rt_msg *m);
    /** At shutdown: free a message that never finished its round trip. */
    void (*msg_free)(struct rt_msg *m);
    /**
     * The product's per-worker metric tables (static const; names distinct from the runtime's:
     * curr_connections, closed_connections, bytes_read, bytes_written, event_loops,
     * conn_buffer_bytes, messages_sent, messages_received). A worker finds its slots of table i
     * with rt_metrics(i). Optional.
     */
    const struct metric_table *metrics;
    size_t nmetrics;
    /**
     * On the admin thread: append the STAT lines of "stats <what>" for a subcommand the runtime
     * does not know (e.g. "seg"), without the final END. Must only read what workers publish
     * for other threads (RCU, atomics); may use prcu_read_lock(). Returns 0, -ENOENT for an
     * unknown subcommand, or a buf error. Optional.
     */
    int (*admin_stats)(const char *what, struct buf *out);
};

/** Unread request bytes of c. Worker thread of c. */
struct buf *conn_rbuf(struct conn *c);

/** Reply bytes not yet sent on c. Worker thread of c. */
struct buf *conn_wbuf(struct conn *c);

/**
 * If conn_wbuf(c) is empty, make b's bytes its bytes without a copy (a large reply composed
 * elsewhere) and leave b empty, with no allocation; returns false, changing nothing, when it is
 * not empty or b is larger than a write buffer may grow. Worker thread of c.
 */
bool conn_wbuf_take(struct conn *c, struct buf *b);

/**
 * Make room in conn_rbuf(c) for n more bytes of a request whose size is known, so a large one is
 * read in place instead of through repeated doubling. Use this, never buf_reserve(), on the read
 * buffer. Growth counts against the worker's share of buffer-memory. Returns:
 *   0        room was made, or the reads of c wait for it (on_data is called again when it
 *            is there, or when the wait is over: see -ENOBUFS);
 *   -ENOBUFS the request cannot have that memory (it waited for it longer than the runtime's
 *            bound, or n is past the read buffer's cap): the product must refuse the request
 *            with its protocol's out-of-memory error and skip its bytes as they arrive, never
 *            buffering them. The refusal is reported once per wait.
 * Worker thread of c.
 */
int conn_rbuf_want(struct conn *c, size_t n);

/**
 * Count delta bytes (negative to release) that the product holds on behalf of c outside
 * conn_wbuf(c): replies queued behind an earlier one still being answered elsewhere, and the
 * payloads of requests forwarded to other workers. They count towards c's output limit and the
 * worker's share of buffer-memory exactly as unsent bytes in the write buffer do. The product
 * releases all of it before on_close() returns. Worker thread of c.
 */
void conn_output_hold(struct conn *c, long delta);

/**
 * Bytes the product may still queue for c before conn_output_full(c) (0 when it is full): what
 * a request sent to another worker may bring back before it must be fetched in smaller pieces.
 * Worker thread of c.
 */
size_t conn_output_room(const struct conn *c);

/**
 * c's output room as a figure a product can spend from without asking again, for a run of
 * requests during which nothing of c changes but what the product holds for it (one parsed
 * batch): after spent more bytes are held (conn_output_hold), conn_room_left(&r, spent) is
 * what conn_output_room(c) would then say.
 */
struct conn_room {
    size_t room; /* conn_output_room(c) now */
    size_t stop; /* bytes more held that make the output full: the room, or fewer when they
                  * take the worker past its share of buffer-memory first */
};
struct conn_room conn_output_budget(const struct conn *c);

/** conn_output_room() after spent bytes more held (conn_output_budget()). */
static inline size_t
conn_room_left(const struct conn_room *r, size_t spent)
{
    return spent < r->stop ? r->room - spent : 0;
}

/** The product's per-connection state (rt_product.conn_state_size bytes). Worker thread of c. */
void *conn_state(struct conn *c);

/**
 * True when c holds so much output (unsent bytes in conn_wbuf(c) plus conn_output_hold()) that
 * the product must stop producing replies until the client reads (backpressure): past
 * --output-limit, or past the worker's share of buffer-memory for a connection that holds more
 * than its first buffer (the connections holding the most wait first). Worker thread of c.
 */
bool conn_output_full(const struct conn *c);

/**
 * The protocol c speaks: 0 for connections of the main port (and TLS port and unix socket), or
 * the rt_port.proto of the port it came in on. Worker thread of c.
 */
unsigned conn_protocol(const struct conn *c);

/** Index of the worker that owns c (0..nworkers-1). Worker thread of c. */
unsigned conn_worker(const struct conn *c);

/**
 * Send m to worker dest on behalf of c; it leaves at the end of this loop iteration, batched
 * with every other message for dest. Never blocks. Returns 0, or -ENOMEM (m was not sent).
 * Worker thread of c; dest must differ from conn_worker(c).
 */
int conn_forward(struct conn *c, unsigned dest, struct rt_msg *m);

/**
 * Send m to worker dest on behalf of no connection (what a closed connection left to finish,
 * e.g. an undo): as conn_forward(), and its reply comes back to on_reply() with c NULL. Worker
 * thread; dest must differ from the calling worker. Returns 0, or -ENOMEM (m was not sent).
 */
int rt_forward_detached(unsigned dest, struct rt_msg *m);

/**
 * Inside on_requests(): send m back to its origin as a reply. Returns 0, or -ENOMEM when the
 * outbox could not grow: then m was not sent, the caller still owns it, and its origin will
 * never see it (the origin's connection waits until it closes; free m, or keep it to retry).
 */
int rt_msg_return(struct rt_msg *m);

/**
 * Ask the runtime to stop as SIGTERM would (e.g. memcached's "shutdown" command). Any thread;
 * async-signal-safe.
 */
void rt_request_stop(void);

/** Live figures of the runtime, for a product's own stats reply. Any thread. */
struct rt_stats {
    uint64_t uptime;            /* seconds since start */
    uint64_t curr_connections;  /* open client connections */
    uint64_t total_connections; /* accepted since start */
    uint64_t rejected_connections;
    uint64_t bytes_read, bytes_written;
    unsigned threads;
    unsigned max_connections; /* the setting in force (it may be reloaded) */
    unsigned idle_timeout;    /* the setting in force, seconds */
};
/** Fill *out. Any RCU-registered thread (workers, admin, main). */
void rt_stats_get(struct rt_stats *out);

/* One client connection, as a product shows it (memcached's "stats conns"). */
struct rt_conn_info {
    int fd;
    int family;             /* AF_INET, AF_INET6, AF_UNIX (or 0): of peer and listener */
    const char *peer;       /* "addr:port", "[addr]:port", a unix path; "?" if unknown */
    const char *listener;   /* the address it was accepted on, in the same form */
    const char *transport;  /* "tcp" (plain, unix sockets too) or "tls" */
    const char *tls_client; /* subject of the client's TLS certificate; "" without one */
    const char *state;      /* what it is doing, in memcached's words: conn_listening (a
                             * listener), conn_waiting (idle), conn_read (a request part-way in),
                             * conn_parse_cmd (waiting for other workers' answers),
                             * conn_mwrite (replies waiting for the client to read them),
                             * conn_closing */
    uint64_t idle_secs;     /* since the connection last received a byte */
    const void *product;    /* conn_state() of a client connection (NULL for a listener): read
                             * on the worker thread that calls fn, its owner */
    size_t rbuf_len;        /* its read buffer: unread bytes ... */
    size_t rbuf_cap;        /* ... and allocation */
    size_t wbuf_len;        /* its write buffer: unsent bytes ... */
    size_t wbuf_cap;        /* ... and allocation */
};

/**
 * Call fn for every client connection of the calling worker, and first, when listeners is true,
 * for every listening socket (state conn_listening). Worker thread only; the strings live until
 * fn returns.
 */
void rt_conns_each(bool listeners, void (*fn)(void *arg, const struct rt_conn_info *ci), void *arg);

/**
 * The figures of a "stats" reply, handed to fn one by one as (name, value text), for the
 * product to write in its protocol's form: pid, time, version (as given), pointer_size,
 * rusage_user, rusage_system, the runtime's process-wide values (uptime, threads,
 * max_connections, total_connections, rejected_connections, reloads, memory...), every counter
 * and gauge of the registry summed over the workers, and, with TLS on, ssl_handshake_errors and
 * ssl_proto_errors. The admin port and a product's data-port "stats" both answer with it. Any
 * RCU-registered thread. Returns 0, a metrics error, or what fn returned (which stops the walk).
 */
int rt_stats_each(const char *version, metrics_stat_fn fn, void *arg);

/**
 * The calling worker's slots of the product's metric table i (rt_product.metrics[i]), to update
 * with metrics_incr() and friends. Worker thread only, from worker_setup() on; valid until
 * worker_teardown() returns.
 */
metric_t *rt_metrics(unsigned table);

/**
 * Have [p, p + len) made present (faulted in, contents unchanged) by the runtime's populate
 * thread, off the calling worker's request path: a fresh huge page can take milliseconds on a
 * virtual machine. One range per worker at a time: false if the previous one is still being
 * populated or no such thread runs; the caller then tries later, or does it itself. The range
 * must stay mapped while the runtime runs. Worker thread only.
 */
bool rt_populate(void *p, size_t len);

/** Bytes at the end of the calling worker's last rt_populate() range not present yet (0 once
 * done): the thread goes from the start of the range. Worker thread only. */
size_t rt_populate_left(void);

/**
 * Command log sampling: true for 1 request in klog-sample on this worker when a klog-file is
 * set (then the product writes the request with log_klog()), false otherwise. A decrement and
 * a compare. Worker thread only; the setting is picked up within a tick (100 ms) of a reload.
 */
bool rt_klog_sample(void);

/**
 * memcached's "stats reset", for the calling worker: zero its counters and latency histograms in
 * the registry (the runtime's and the product's tables; gauges stay), and, on worker 0, the
 * process-wide counters (total and rejected connections, TLS handshakes and failures). The
 * product zeroes its own sources of what it publishes. Worker thread.
 */
void rt_stats_reset(void);

/** The runtime's options (listen addresses, threads, connections, admin, log); see --help. */
extern const struct opt_table rt_option_table;

/**
 * Run product p with configuration cfg until SIGTERM or SIGINT: sets up logging, listeners and
 * threads, serves, then stops gracefully. Main thread. Returns the process exit status.
 */
int rt_main(const struct rt_product *p, const struct config *cfg);

/**
 * The checks rt_main(p, cfg) makes before it starts anything (for --check-config, from the
 * product's config_product.validate), by the same functions: options that go together, the
 * listen addresses (their forms, and that each host resolves), the unix socket's path, the files
 * to write (log, command log, pid file) and their directories, the -u user (when root), the core
 * file limit of -r, the product's check and the TLS certificates. Creates nothing: what only
 * binding, creating or locking would show (an address in use, a full disk, a memory file in use)
 * is not checked. Returns 0, or prints the error to stderr and returns the exit status start-up
 * would have.
 */
int rt_validate(const struct rt_product *p, const struct config *cfg);

#endif /* PETREL_RUNTIME_H */
