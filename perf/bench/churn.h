/*
 * churn: the connect load (--connect-rate). One thread opens new connections, and each one
 * connects (without waiting: TRANSPORT_NOWAIT), does its TLS handshake (--tls), sends one
 * request drawn from the workload, reads the reply and closes. It measures what a client that
 * reconnects pays: connections completed per second, failures, and the latency from a
 * connection's t0 to the reply to its request.
 *
 * - At a rate (--connect-rate N): connection k is due at start + k/N (rate.h with one
 *   connection), and t0 is its due time, so a connection that had to wait for a free slot
 *   counts the wait, as open-loop requests do.
 * - At max: a new connection opens as soon as a slot is free; t0 is when it was opened.
 * At most --connect-inflight connections are in progress at once. A connection belongs to the
 * measured window if its t0 falls inside it; the drain finishes those still in progress, and
 * what is left after it is counted unfinished. With --tls-resume each slot's transport keeps
 * the session of its last full handshake and offers it when it opens the next connection.
 *
 * Before the clock starts, churn_setup() makes one whole connection, so that a server that is
 * not there, a certificate that does not verify or a protocol that does not answer stops the
 * run with a message instead of filling the report with failures.
 *
 * Threads: churn_new() and churn_free() on the main thread, before the churn thread starts and
 * after it was joined; everything else on the churn thread.
 */
#ifndef PETREL_BENCH_CHURN_H
#define PETREL_BENCH_CHURN_H

#include <netdb.h>
#include <stdint.h>

#include "client.h"
#include "opts.h"
#include "transport.h"
#include "workload.h"

struct churn;

/**
 * Prepare the connect load of o against ai (resolved, read-only, outliving the churn), with
 * TLS state tls (NULL without --tls). Returns 0 with *out, or -ENOMEM.
 */
int churn_new(const struct bench_opts *o, const struct workload *w, const struct addrinfo *ai,
              const struct tls_shared *tls, struct churn **out);

/**
 * On the churn thread: its epoll loop, TLS state and slots, then the probe connection. Returns
 * 0, or a negative errno with a message on stderr.
 */
int churn_setup(struct churn *ch);

/**
 * On the churn thread: run the connect load from start_ns; connections with t0 in
 * [mstart, mend) are measured, none opens at or after mend, and those in progress are waited
 * for until deadline.
 */
void churn_run(struct churn *ch, uint64_t start_ns, uint64_t mstart, uint64_t mend,
               uint64_t deadline);

/** On the churn thread, after churn_run() or a failed setup: close and release its slots. */
void churn_teardown(struct churn *ch);

/** The counters (conn_* fields of struct bench_stats), to merge after the thread is joined. */
const struct bench_stats *churn_stats(const struct churn *ch);

/** Release the churn; sets *ch to NULL. */
void churn_free(struct churn **ch);

#endif /* PETREL_BENCH_CHURN_H */
