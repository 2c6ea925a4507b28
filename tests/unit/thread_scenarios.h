/*
 * Multi-threaded test scenarios, shared by the Criterion tests and by a plain runner
 * (threads_main.c) that ThreadSanitizer can run: Criterion's process arena and TSan's memory
 * layout do not get along. Each scenario returns NULL on success, or what went wrong.
 */
#ifndef PETREL_TEST_THREAD_SCENARIOS_H
#define PETREL_TEST_THREAD_SCENARIOS_H

#include <stddef.h>

/** One producer, one consumer, n items in varying batches: order, loss and duplication. */
const char *scenario_ring_stress(size_t n);

/** Ping-pong through a ring with the consumer blocking in epoll: a lost wakeup hangs it. */
const char *scenario_ring_wakeup(size_t rounds);

/** Three workers, a ring per ordered pair with outboxes: every message once, in order. */
const char *scenario_ring_mesh(size_t per_pair);

/** Item counts: the environment variable if set, else the default. */
size_t scenario_count(const char *env, size_t dflt);

#endif
