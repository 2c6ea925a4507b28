/*
 * fake_rt: a single-threaded, deterministic stand-in for the runtime (include/petrel/runtime.h),
 * so that a product's glue (parse, execute on its real shards, compose, forward between workers,
 * keep reply order, obey backpressure) can be tested without threads, sockets or time.
 *
 * It defines every function runtime.h declares that a product calls (conn_rbuf ... rt_stats_each)
 * and the runtime's option table, so a test links the product's source file against this instead
 * of src/core. Nothing happens on its own: the test (or fuzzer) decides every step.
 *
 *   workers      N simulated workers, each with its product context (worker_setup) and its block
 *                of a real metrics registry. While a product callback runs, one worker is
 *                "current": rt_metrics() and rt_msg_return() act on it, and a conn_* call on a
 *                connection of another worker is a contract failure.
 *   connections  a client handle (struct fake_conn) with the two directions of a socket: bytes the
 *                client sent and the server has not read yet, and bytes the client received. The
 *                test says where reads split the input (fake_conn_read) and how much the client
 *                drains (fake_conn_drain); replies the client does not drain stay in the
 *                connection's write buffer, which is what makes backpressure happen.
 *   messages     conn_forward() and rt_msg_return() queue a message per ordered pair of workers,
 *                first in first out like the runtime's rings. fake_rt_deliver() hands a pair's
 *                messages over when the test says: requests to on_requests() in batches of up to
 *                RT_REQUEST_BATCH, replies to on_reply() on their origin, exactly as the runtime's
 *                mesh_drain() does. The order between pairs is the test's choice.
 *
 * on_data()'s result is honoured as the runtime (src/core/conn.c: conn_serve, conn_deliver,
 * conn_resumable, conn_flush, conn_reply_arrived) does: RT_NEED_MORE: called again when bytes
 * arrive; RT_CONTINUE: called again, with or without new bytes, once some output was sent or a
 * reply came back, or at the connection's next turn if its write buffer is empty (nothing to wait
 * for); RT_PAUSED: not read nor called until a reply for the connection comes back; RT_CLOSE: not
 * read any more, closed once its output is drained and no forwarded request is out; RT_ABORT:
 * closed at once. After every reply for a connection, paused or not, on_data() is called again.
 * Nothing is read while the output (unsent bytes plus conn_output_hold()) is at the limit, and a
 * product that may go on is called then only while its write buffer is empty (so that only it
 * can move what it holds). A connection whose read buffer is full at its cap after RT_NEED_MORE
 * is closed, as the runtime closes one whose request does not fit.
 *
 * Checks: a broken rule does not stop the process; it is counted under its kind and kept as a
 * message (the first few), for the test to assert on. Kinds:
 *   FAKE_CHECK_CONTRACT  a call the contract of runtime.h forbids: a conn_* call from a worker
 *                        that does not own the connection, conn_forward() to itself or from inside
 *                        on_requests(), rt_msg_return() of a message that is not being executed,
 *                        a request not handed back, an on_data() result outside enum rt_result,
 *                        RT_PAUSED with nothing in flight (only a reply lifts a pause: nothing
 *                        would call on_data() again), the read buffer grown other than through
 *                        conn_rbuf_want(). RT_CONTINUE is always allowed, even with room left
 *                        or with nothing to send and nothing in flight (the runtime then calls
 *                        again at once): only doing that for ever is a failure (a stall).
 *   FAKE_CHECK_HOLD      conn_output_hold()'s total below 0, or not back to 0 when on_close()
 *                        returns.
 *   FAKE_CHECK_BOUND     output held by a connection (unsent write-buffer bytes plus
 *                        conn_output_hold()) above fake_rt_output_bound() after a product call:
 *                        output_limit + reply_part_max + the largest read made so far. That is
 *                        the limit, plus one reply part (a product stops once conn_output_full(),
 *                        so one part may pass it), plus the bytes of one read (whatever replies a
 *                        read's worth of requests produced before the first check).
 *   FAKE_CHECK_STALL     fake_rt_check_quiescent() called on_data() on a connection that nothing
 *                        would call again (its last result was RT_NEED_MORE, all output drained,
 *                        nothing in flight) and it made progress: complete requests had been left
 *                        unread. Or the product spins: on_data() returned RT_CONTINUE 3 times in
 *                        a row with nothing to send and nothing in flight, without consuming,
 *                        writing, holding or forwarding anything, and nothing happened between
 *                        the calls (no read, send or reply): the runtime would call it for ever.
 *                        Once per connection.
 *
 * Simplifications (the real runtime does more): buffer-memory is not shared between connections;
 * conn_output_full() is the output limit alone; a read is never put off for memory;
 * conn_rbuf_want() never waits: it grants or refuses at once (see read_budget).
 *
 * Threads: none. Only one fake runtime may exist at a time in a process (rt_request_stop() and
 * the other functions without a connection argument find it through a global).
 */
#ifndef PETREL_TESTS_FAKE_RT_H
#define PETREL_TESTS_FAKE_RT_H

#include "petrel/buf.h"
#include "petrel/config.h"
#include "petrel/runtime.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define FAKE_RT_MAX_WORKERS 16

struct fake_rt_opts {
    unsigned nworkers;   /* simulated workers, 1..FAKE_RT_MAX_WORKERS (0: 2) */
    size_t read_buffer;  /* initial read and write buffer, as --read-buffer (0: 16 KiB) */
    size_t output_limit; /* as --output-limit: conn_output_full() from here on (0: 1 MiB) */
    /* Bytes past read_buffer that conn_rbuf_want() lets one request's read buffer grow to: a
     * want for a request of more than read_buffer + read_budget bytes gets -ENOBUFS. 0: no
     * budget, only the read buffer's cap (request_max + read_buffer) refuses. */
    size_t read_budget;
    size_t read_max;       /* bytes per read in fake_rt_run() (0: 16 KiB, the runtime's) */
    size_t reply_part_max; /* the largest single reply part, for the output bound (0: reply_max) */
    unsigned klog_every;   /* rt_klog_sample() is true for 1 request in this many (0: never) */
    /* The product's option tables and its command line (NULL-terminated, without argv[0]),
     * parsed after the fake runtime's own table. */
    const struct opt_table *tables;
    size_t ntables;
    const char *const *argv;
};

struct fake_rt;
/** A client connection: the test's handle, valid until fake_rt_destroy() (even once closed). */
struct fake_conn;

enum fake_check {
    FAKE_CHECK_CONTRACT,
    FAKE_CHECK_HOLD,
    FAKE_CHECK_BOUND,
    FAKE_CHECK_STALL,
    FAKE_CHECK_COUNT
};

/**
 * Build the configuration from o->tables and o->argv, then set up every worker of product p.
 * Returns NULL (after printing why to stderr) when the options do not parse or a worker_setup
 * fails. Only one fake runtime may exist at a time.
 */
struct fake_rt *fake_rt_create(const struct rt_product *p, const struct fake_rt_opts *o);

/** Close every open connection (on_close), free the messages still queued (msg_free), tear the
 * workers down and free everything; sets *rt to NULL. */
void fake_rt_destroy(struct fake_rt **rt);

/** The configuration the product was set up with. */
const struct config *fake_rt_config(const struct fake_rt *rt);

/** Open a connection owned by worker w (the product's state is zeroed, as at accept). */
struct fake_conn *fake_conn_open(struct fake_rt *rt, unsigned w);

/** fake_conn_open() for a connection that came in on the product's port for protocol proto
 * (conn_protocol() says proto). */
struct fake_conn *fake_conn_open_proto(struct fake_rt *rt, unsigned w, unsigned proto);

/** The client sends n bytes: they wait in the socket until the server reads them. */
void fake_conn_send(struct fake_conn *fc, const void *p, size_t n);

/** fake_conn_send() of a string. */
void fake_conn_send_str(struct fake_conn *fc, const char *s);

/**
 * One turn of the server on the connection, as the runtime's: unless it is closing, paused or
 * its output is full, read up to max bytes from the socket (none for max 0) and call on_data()
 * if bytes came in or the product asked to go on; then close it if it is done. Returns the bytes
 * read.
 */
size_t fake_conn_read(struct fake_conn *fc, size_t max);

/** The client reads up to max bytes of the server's output; then the server gets a turn (no
 * read), so that a product that stopped for backpressure goes on. Returns the bytes drained. */
size_t fake_conn_drain(struct fake_conn *fc, size_t max);

/** The client shuts its side down: after the bytes already sent, a read sees the end. */
void fake_conn_shutdown(struct fake_conn *fc);

/** The connection breaks (the client reset it): the server closes it at once. */
void fake_conn_reset(struct fake_conn *fc);

/** True once the server closed the connection. */
bool fake_conn_closed(const struct fake_conn *fc);

/** What closed it ("RT_CLOSE", "RT_ABORT", "eof", "reset", "request too large",
 * "shutdown"), or NULL while open. */
const char *fake_conn_close_reason(const struct fake_conn *fc);

/** Bytes the client has received so far. */
const struct buf *fake_conn_received(const struct fake_conn *fc);

/** The bytes received, as a NUL-terminated string owned by fc (valid until the next call). */
const char *fake_conn_text(struct fake_conn *fc);

/** Bytes sent by the client that the server has not read. */
size_t fake_conn_unsent(const struct fake_conn *fc);

/** Bytes in the connection's read buffer (read, not consumed by the product); 0 once closed. */
size_t fake_conn_unread(const struct fake_conn *fc);

/** Output the connection holds now: unsent write-buffer bytes plus conn_output_hold(). */
size_t fake_conn_output(const struct fake_conn *fc);

/** The most output the connection ever held after a product call. */
size_t fake_conn_output_peak(const struct fake_conn *fc);

/** conn_output_hold()'s running total for the connection. */
long fake_conn_held(const struct fake_conn *fc);

/** on_data()'s last result, and how many times it was called. */
enum rt_result fake_conn_last_result(const struct fake_conn *fc);
unsigned fake_conn_data_calls(const struct fake_conn *fc);

/** True while the connection waits for a reply (RT_PAUSED), or is to be called again without new
 * bytes (RT_CONTINUE, or a reply came back; at its next turn if nothing is to be sent first). */
bool fake_conn_paused(const struct fake_conn *fc);
bool fake_conn_resume_pending(const struct fake_conn *fc);

/** Forwarded requests of the connection whose replies have not come back. */
unsigned fake_conn_inflight(const struct fake_conn *fc);

/** Messages queued from worker `from` to worker `to`, not delivered yet. */
size_t fake_rt_queued(const struct fake_rt *rt, unsigned from, unsigned to);

/** Messages queued between every pair. */
size_t fake_rt_queued_total(const struct fake_rt *rt);

/**
 * Deliver up to max of the messages queued from `from` to `to`, in their order; then the
 * connections that got replies have their turn (no read). Returns how many were delivered.
 */
size_t fake_rt_deliver(struct fake_rt *rt, unsigned from, unsigned to, size_t max);

/** Deliver every message, pair after pair, until none is queued. Returns how many. */
size_t fake_rt_deliver_all(struct fake_rt *rt);

/**
 * Run until nothing moves: deliver every message, let each open connection read what its client
 * sent (o->read_max at a time) and drain all of its output, and give a connection the runtime
 * would call again on its own (RT_CONTINUE with nothing to send) its turns until it moves or is
 * found spinning (FAKE_CHECK_STALL). Returns the number of rounds.
 */
unsigned fake_rt_run(struct fake_rt *rt);

/**
 * The stall check: for every open connection that nothing would serve again (not closing, not
 * paused, no resume pending, output drained, nothing in flight, socket read empty) but whose read
 * buffer is not empty, call on_data() once more; if it consumes or answers anything, count a
 * FAKE_CHECK_STALL failure. Returns the number of connections that made progress. Call after
 * fake_rt_run(); run again afterwards to finish what the call started.
 */
unsigned fake_rt_check_quiescent(struct fake_rt *rt);

/** Call every worker's tick(), then idle() once. */
void fake_rt_tick(struct fake_rt *rt);

/** Make the next n conn_forward() calls fail with -ENOMEM. */
void fake_rt_fail_forwards(struct fake_rt *rt, unsigned n);

/** How many times the product called rt_request_stop(). */
unsigned fake_rt_stop_requests(const struct fake_rt *rt);

/** conn_rbuf_want() calls answered -ENOBUFS. */
unsigned fake_rt_wants_refused(const struct fake_rt *rt);

/** The bound FAKE_CHECK_BOUND checks the output of every connection against, as it is now. */
size_t fake_rt_output_bound(const struct fake_rt *rt);

/** Failures of one kind, or of every kind (FAKE_CHECK_COUNT). */
unsigned fake_rt_failures(const struct fake_rt *rt, enum fake_check kind);

/** The first failure's message of a kind (or of any kind: FAKE_CHECK_COUNT), or NULL. */
const char *fake_rt_first_failure(const struct fake_rt *rt, enum fake_check kind);

/** Print the kept failure messages to f. */
void fake_rt_print_failures(const struct fake_rt *rt, FILE *f);

/** Name of a kind: "contract", "hold", "bound", "stall". */
const char *fake_check_name(enum fake_check kind);

#endif /* PETREL_TESTS_FAKE_RT_H */
