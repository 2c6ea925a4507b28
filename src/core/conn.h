/*
 * conn: a worker's client connections: their buffers, readiness and memory accounting, and one
 * turn of service (read, hand the bytes to the product, send its replies). The public part of
 * the contract (what a product may call) is in include/petrel/runtime.h; this header is what
 * the rest of src/core uses.
 *
 * Memory: what a connection holds beyond the first read-buffer's worth of each buffer (grown
 * read and write buffers, and output the product holds for it with conn_output_hold()) counts
 * against the worker's share of --buffer-memory; see conn_output_full() and rbuf_may_grow().
 * An idle connection holds no buffer: both come from the worker's pool when bytes arrive or
 * replies are written, and go back when they empty.
 *
 * Threads: everything here belongs to the worker that owns the connection.
 */
#ifndef PETREL_CONN_H
#define PETREL_CONN_H

#include "connio.h"
#include "core.h"

#include <stdbool.h>
#include <stdint.h>

/* The worker's queues of connections: FIFOs linked through the connections, both ways. */
enum conn_queue {
    Q_PENDING, /* unfinished input or a product to resume: served next iteration */
    Q_MEMWAIT, /* the next read waits for buffer memory (see conn_account) */
    Q_FLUSH,   /* output to send in this phase's batch (conn_flush_batch) */
    Q_COUNT
};

struct conn_link {
    struct conn *prev, *next;
    bool on; /* linked on the queue */
};

struct conn_fifo {
    struct conn *head, *tail;
};

struct conn {
    struct connio io; /* transport, buffers, readiness */
    unsigned slot;
    unsigned listener; /* index of the listener it came from (rt->listen_fds) */
    struct worker *w;
    bool closing;          /* close once the output is sent */
    bool resume;           /* the product stopped early (RT_CONTINUE): call it again ... */
    bool await_send;       /* ... once some output left (or a reply came back) */
    bool paused;           /* the product waits for replies before it parses more (RT_PAUSED) */
    bool refused;          /* the wait for rbuf_need timed out: conn_rbuf_want says -ENOBUFS */
    bool granted;          /* the wait for read room of unknown size timed out: grow once */
    bool fresh;            /* the phase's read batch put bytes in rbuf (conn_read_batch) */
    bool raw_full;         /* ... or in raw, and filled it: the socket may hold more */
    struct buf raw;        /* the read batch's bytes for a transport of its own (TLS), until
                            * conn_read feeds them to it; a buffer of the pool meanwhile */
    int read_err;          /* the read batch's error (a negative errno): closed at its turn */
    unsigned inflight;     /* forwarded requests whose replies have not come back */
    size_t buf_bytes;      /* buffer capacity last counted in RTM_CONN_BUFFER_BYTES */
    size_t rbuf_extra;     /* read buffer beyond its initial size, last counted in the table */
    size_t wbuf_extra;     /* the same for the write buffer */
    size_t held;           /* output the product holds outside wbuf (conn_output_hold) */
    size_t spent;          /* reply bytes composed and sent in its last turn; SIZE_MAX: none yet */
    size_t rbuf_need;      /* room the product asked for and did not get (conn_rbuf_want) */
    int64_t memwait_since; /* ms: when it joined Q_MEMWAIT */
    int64_t partial_since; /* s: when the unfinished request in rbuf began; 0: none */
    int64_t last_active;   /* s: when it last sent a byte */
    struct conn_link link[Q_COUNT];
    _Alignas(16) unsigned char state[]; /* the product's per-connection state */
};

/* Worker-private table of connections: slots are reused through a free list. */
struct conn_table {
    struct conn **slot;
    unsigned cap;
    unsigned used;
    unsigned *free;
    unsigned nfree;
    uint32_t *gen; /* per slot: bumped when its connection closes (late replies check it) */
    unsigned sweep_pos;
    struct conn_fifo queue[Q_COUNT];
    /* Buffers beyond their initial size, read and write, and output held by the product: what
     * buffer-memory bounds. */
    size_t buf_extra;
    size_t memwait_extra; /* the part of buf_extra held by connections on Q_MEMWAIT */
    struct buf_pool pool; /* first buffers (read-buffer bytes) of connections with bytes */
    int64_t now;          /* coarse clock for idle timeouts, seconds */
    int64_t now_ms;       /* monotonic milliseconds at the start of this loop iteration */
    /* Reply bytes composed and sent in this phase of the loop iteration (the pending list, then
     * epoll's events): past TURN_BYTES, the connections not yet served wait for the next. */
    size_t turn_bytes;
    /* The phase's sends, one system call for all (iobatch.h); NULL: a send() each. */
    struct iobatch *batch;
};

/** Create and free w->conns. */
int conn_table_init(struct worker *w);
void conn_table_fini(struct worker *w);

/**
 * Set up the worker's send batch as --io-uring says. Worker thread (an io_uring has one
 * submitting thread). Returns 0, or a negative errno when --io-uring=on and io_uring cannot be
 * used (logged).
 */
int conn_batch_start(struct worker *w);

/**
 * Send the output of every connection that a turn of this phase left with some (Q_FLUSH), in
 * one system call, then finish their turns (close, or queue another). Call at the end of each
 * phase, before the loop may sleep.
 */
void conn_flush_batch(struct worker *w);

/** Take over a connection from the inbox (an accepted socket, or an established TLS session:
 * see inbox_item()); on failure it is closed. */
void conn_adopt(struct worker *w, void *item);

/** Close c now: the product's on_close, the transport, the buffers, the slot. */
void conn_close(struct worker *w, struct conn *c);

/** A batch of epoll events follows: its own reply-byte budget begins (see conn_handle_event). */
void conn_events_begin(struct worker *w);

/**
 * epoll reported events for c: note them, and queue a read of c's input in the phase's read
 * batch when it is the read conn_read would make first (a plain transport, room in a buffer of
 * the pool). Every event of an epoll_wait is noted before any is handled.
 */
void conn_note_event(struct worker *w, struct conn *c, uint32_t events);

/** Make the reads conn_note_event queued, in one system call (if the worker has a batch). */
void conn_read_batch(struct worker *w);

/** Serve c, whose events were noted (or close it); once this batch has composed and sent its
 * budget of reply bytes, c is queued for the next iteration instead. */
void conn_handle_event(struct worker *w, struct conn *c);

/** Give every connection queued for another turn (Q_PENDING at the start) that turn, until
 * they have composed and sent the phase's budget of reply bytes; the rest keep their place. */
void conn_serve_pending(struct worker *w);

/**
 * A reply for c is coming back from another worker: give c's write buffer a buffer of the pool
 * first, as a turn does before the product writes (else composing into it would allocate one,
 * which the pool then frees after the send: a malloc and a free per reply).
 */
void conn_reply_arriving(struct worker *w, struct conn *c);

/** A reply for c came back from another worker: let a paused product go on. */
void conn_reply_arrived(struct worker *w, struct conn *c);

/** The tick's bounded housekeeping: idle and request timeouts (SWEEP_BUDGET connections),
 * and requests that waited too long for buffer memory. */
void conn_sweep(struct worker *w);

/** True when a connection has a turn queued (the loop must not sleep). */
bool conn_any_pending(const struct worker *w);

#endif /* PETREL_CONN_H */
