/*
 * prcu: read-copy-update for Petrel's shared pointers, liburcu's memb flavour behind a small
 * interface (the metrics registry, live settings, the TTL views of stats use it).
 *
 * A reader brackets its use of RCU-protected pointers with prcu_read_lock()/prcu_read_unlock()
 * and reads them with liburcu's rcu_dereference() (<urcu/pointer.h>); a writer publishes a new
 * object with rcu_xchg_pointer() or rcu_assign_pointer() and frees the old one with
 * prcu_defer_free(), or waits with prcu_synchronize(). Readers never block or write shared
 * memory.
 *
 * Threads: every thread that reads, defers a free or synchronizes must be registered
 * (prcu_thread_register()), and unregister before it exits.
 *
 * ThreadSanitizer cannot see liburcu's ordering, so under TSan these functions tell it what RCU
 * guarantees; prcu_publish()/prcu_subscribe() exist for that alone and cost nothing otherwise.
 */
#ifndef PETREL_PRCU_H
#define PETREL_PRCU_H

/** Register the calling thread with RCU; idempotent per thread. */
void prcu_thread_register(void);

/** Undo prcu_thread_register() before the thread exits. */
void prcu_thread_unregister(void);

/** Enter and leave a read-side section (they nest). Registered thread. */
void prcu_read_lock(void);
void prcu_read_unlock(void);

/**
 * Call fn(p) once every reader that might still see p has left its read-side section (from
 * liburcu's call_rcu thread). Registered thread. Returns 0, or -ENOMEM (nothing was deferred:
 * the caller may prcu_synchronize() and free p itself).
 */
int prcu_defer_free(void *p, void (*fn)(void *));

/** Wait until every reader that might see an old pointer is done. Registered thread, outside any
 * read-side section; slow (a grace period): for rare paths only. */
void prcu_synchronize(void);

/** Wait until every free deferred so far has run (before freeing what their callbacks use).
 * Registered thread, outside any read-side section. */
void prcu_barrier(void);

/**
 * For ThreadSanitizer: call prcu_publish() after initialising an object and before publishing
 * its pointer, and prcu_subscribe() after reading the pointer and before reading the object.
 */
void prcu_publish(void);
void prcu_subscribe(void);

#endif
