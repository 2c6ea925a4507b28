/*
 * populate: one thread that makes memory present for the workers, off their request path.
 *
 * A worker's storage grows into fresh memory. Faulting it in costs little on bare metal, but
 * on a virtual machine a fresh 2 MiB huge page took 2 to 17 ms here (the host backs it, the
 * guest may compact for it): done by the worker, even in its idle time, that is a stall that
 * every request arriving meanwhile waits for. So a worker posts the range it will need next
 * and this thread faults it in with MADV_POPULATE_WRITE at SCHED_IDLE: it runs when no worker
 * wants the CPU, and a worker that wakes preempts it between pages.
 *
 * Threads: each worker posts to its own slot (one range at a time); the populate thread reads
 * every slot. Nothing is locked; a slot's busy flag hands the range over and back.
 * Memory: the thread never writes the memory (MADV_POPULATE_WRITE keeps contents as they are),
 * so a worker may use a range while it is being populated. A range must stay mapped until the
 * thread has stopped (populate_stop() comes before the workers free their storage).
 */
#ifndef PETREL_CORE_POPULATE_H
#define PETREL_CORE_POPULATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct populate_slot;

struct populate {
    pthread_t thread;
    bool started;                /* main-private: the thread was created */
    int efd;                     /* eventfd: workers, main -> thread (blocking reads) */
    _Atomic bool stop;           /* main(w) -> thread(r) */
    _Atomic bool running;        /* thread(w: false when MADV_POPULATE_WRITE fails) -> workers */
    _Atomic unsigned long bytes; /* thread(w) -> admin(r): bytes made present */
    unsigned nslots;
    struct populate_slot *slots;
};

/** Start the thread with a slot per worker. 0, or a negative errno (then nothing runs). */
int populate_start(struct populate *pp, unsigned nworkers);

/**
 * Stop and join the thread (before the workers free the memory it may be faulting in). The
 * workers may go on calling populate_post() (which then refuses) and populate_left().
 */
void populate_stop(struct populate *pp);

/** Stop if need be, then free the slots: once no worker runs. Safe on one that failed to
 * start, or is all zeros. */
void populate_fini(struct populate *pp);

/**
 * Worker `worker`: hand [p, p + len) to the thread. False if the worker's previous range is
 * still in work or the thread does not run (the caller may populate it itself, or try later).
 */
bool populate_post(struct populate *pp, unsigned worker, void *p, size_t len);

/**
 * Worker `worker`: bytes at the end of its posted range not made present yet (the thread goes
 * from the start of the range to its end); 0 once done.
 */
size_t populate_left(struct populate *pp, unsigned worker);

#endif /* PETREL_CORE_POPULATE_H */
