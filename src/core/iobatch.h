/*
 * iobatch: many non-blocking socket calls in one system call, through io_uring.
 *
 * A worker's loop turn ends with replies for many connections; sending each with send() costs
 * one kernel entry per connection, and on virtual machines a kernel entry alone can cost a
 * microsecond, a sixth of a small request's whole cost. An iobatch queues the sends (or
 * receives) of a turn and hands them to the kernel with one io_uring_enter().
 *
 * It is a batch of ordinary calls, not an asynchronous engine: every operation carries
 * MSG_DONTWAIT, so the kernel completes it inside that one call, with the bytes it could move
 * or -EAGAIN, as send() and recv() would have; readiness still comes from epoll. So the buffers
 * handed in need to stay put only until iobatch_run() returns, and nothing is ever in flight
 * between loop turns: closing a connection needs no cancellation.
 *
 * Built without liburing, iobatch_new() fails with -ENOSYS and the callers use send() and
 * recv() as before.
 *
 * Threads: an iobatch belongs to the thread that created it (its worker).
 */
#ifndef PETREL_IOBATCH_H
#define PETREL_IOBATCH_H

#include <stdbool.h>
#include <stddef.h>

struct iobatch;

/** Called by iobatch_run() for each operation: its tag and result (bytes, or a negative
 * errno such as -EAGAIN). */
typedef void (*iobatch_done_fn)(void *arg, void *tag, long res);

/**
 * A batch of at most `depth` operations per system call. Returns 0 and *out, or a negative
 * errno: -ENOSYS (built without io_uring), -EOPNOTSUPP (a kernel before 5.6: io_uring without
 * send and recv), or why the kernel refused (-EPERM under a seccomp filter or
 * kernel.io_uring_disabled, -ENOMEM).
 */
int iobatch_new(unsigned depth, struct iobatch **out);

/** Free b (NULL is ignored). Operations still queued are dropped, never made. */
void iobatch_free(struct iobatch *b);

/** Queue a send of n bytes at p on socket fd (MSG_DONTWAIT | MSG_NOSIGNAL). False when the
 * batch is full: run it first. */
bool iobatch_send(struct iobatch *b, int fd, const void *p, size_t n, void *tag);

/** Queue a receive of up to n bytes into p from socket fd (MSG_DONTWAIT). False when full. */
bool iobatch_recv(struct iobatch *b, int fd, void *p, size_t n, void *tag);

/** Operations queued and not run yet. */
unsigned iobatch_queued(const struct iobatch *b);

/**
 * Hand every queued operation to the kernel in one call, wait for their results (they complete
 * inside that call), then call done(arg, tag, res) for each, in no particular order (done
 * queues nothing). Returns 0, or a negative errno if the kernel refused a call: then done was
 * called for the operations of the calls before it (if the kernel took them in parts) and not
 * for the rest, and b is of no further use (free it and make the remaining calls the plain
 * way).
 */
int iobatch_run(struct iobatch *b, iobatch_done_fn done, void *arg);

#endif /* PETREL_IOBATCH_H */
