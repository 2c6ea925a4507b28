/*
 * worker: a worker thread and its event loop (worker.c). Private to src/core.
 */
#ifndef PETREL_WORKER_H
#define PETREL_WORKER_H

#include "core.h"

/* Prepare w (rings, epoll, connection table); main, before any thread starts. 0 or -errno. */
int worker_init(struct worker *w, struct runtime *rt, unsigned id);
/* Free what worker_init made, closing sockets never adopted. Main, after the thread stopped. */
void worker_fini(struct worker *w);
/* The thread's body (arg: its struct worker). */
void *worker_main(void *arg);
/* The worker running on this thread (NULL on other threads): what rt_msg_return() and
 * rt_metrics() act on. Set by worker_main. */
extern _Thread_local struct worker *self_worker;

#endif /* PETREL_WORKER_H */
