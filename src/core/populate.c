/* populate: see populate.h. */
#include "populate.h"

#include "petrel/log.h"

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define STEP (2u << 20) /* one huge page per call, so that stop is seen between them */

struct populate_slot {
    _Alignas(64) _Atomic(uint8_t *) p;
    _Atomic size_t len;
    _Atomic bool busy;   /* worker(w: true, after p and len) -> thread(r, then w: false) */
    _Atomic size_t left; /* worker(w: len), thread(w: less as it goes) -> worker(r) */
};

/* Fault in one slot's range; false if the kernel cannot (then the thread stops populating). */
static bool
work(struct populate *pp, struct populate_slot *s)
{
    uint8_t *p = atomic_load_explicit(&s->p, memory_order_relaxed);
    size_t len = atomic_load_explicit(&s->len, memory_order_relaxed);
    bool ok = true;
    for (size_t off = 0; ok && off < len && !atomic_load(&pp->stop); off += STEP) {
        size_t n = len - off < STEP ? len - off : STEP;
#ifdef MADV_POPULATE_WRITE
        ok = madvise(p + off, n, MADV_POPULATE_WRITE) == 0 || errno == ENOMEM || errno == EFAULT;
#else
        ok = false;
#endif
        if (ok) {
            atomic_fetch_add_explicit(&pp->bytes, n, memory_order_relaxed);
        }
        atomic_store_explicit(&s->left, len - off - n, memory_order_relaxed);
    }
    atomic_store_explicit(&s->left, 0, memory_order_relaxed);
    atomic_store_explicit(&s->busy, false, memory_order_release);
    return ok;
}

static void *
populate_main(void *arg)
{
    struct populate *pp = arg;
    pthread_setname_np(pthread_self(), "populate");
    log_thread_register("populate");
    /* SCHED_IDLE for this thread only (lowering one's own priority is always allowed, but a
     * seccomp filter may still refuse it): a worker that wakes takes the CPU back between two
     * pages of a huge page being cleared. */
    struct sched_param sp = {0};
    if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0 &&
        setpriority(PRIO_PROCESS, 0, 19) != 0) {
        log_warn("populate: cannot lower this thread's priority (%s): it competes with the "
                 "workers for the CPU",
                 strerror(errno));
    }
    while (!atomic_load(&pp->stop)) {
        uint64_t n;
        if (read(pp->efd, &n, sizeof(n)) < 0 && errno != EINTR) {
            break;
        }
        for (unsigned i = 0; i < pp->nslots && !atomic_load(&pp->stop); i++) {
            struct populate_slot *s = &pp->slots[i];
            if (atomic_load_explicit(&s->busy, memory_order_acquire) && !work(pp, s)) {
                log_warn("populate: MADV_POPULATE_WRITE fails (%s): the workers fault their "
                         "memory in themselves",
                         strerror(errno));
                atomic_store(&pp->running, false);
                return NULL;
            }
        }
    }
    return NULL;
}

int
populate_start(struct populate *pp, unsigned nworkers)
{
    *pp = (struct populate){.efd = -1};
    pp->slots = aligned_alloc(64, sizeof(*pp->slots) * (nworkers ? nworkers : 1));
    if (pp->slots == NULL) {
        return -ENOMEM;
    }
    memset(pp->slots, 0, sizeof(*pp->slots) * (nworkers ? nworkers : 1));
    pp->nslots = nworkers;
    pp->efd = eventfd(0, EFD_CLOEXEC);
    if (pp->efd < 0) {
        int rc = -errno;
        populate_fini(pp);
        return rc;
    }
    atomic_store(&pp->running, true);
    if (pthread_create(&pp->thread, NULL, populate_main, pp) != 0) {
        populate_fini(pp);
        return -EAGAIN;
    }
    pp->started = true;
    return 0;
}

void
populate_stop(struct populate *pp)
{
    atomic_store(&pp->running, false);
    if (pp->started) {
        atomic_store(&pp->stop, true);
        eventfd_write(pp->efd, 1);
        pthread_join(pp->thread, NULL);
        pp->started = false;
    }
}

void
populate_fini(struct populate *pp)
{
    populate_stop(pp);
    if (pp->slots != NULL && pp->efd >= 0) { /* (a never-started populate is all zeros) */
        close(pp->efd);
    }
    pp->efd = -1;
    free(pp->slots);
    pp->slots = NULL;
    pp->nslots = 0;
}

bool
populate_post(struct populate *pp, unsigned worker, void *p, size_t len)
{
    if (worker >= pp->nslots || !atomic_load_explicit(&pp->running, memory_order_relaxed)) {
        return false;
    }
    struct populate_slot *s = &pp->slots[worker];
    if (atomic_load_explicit(&s->busy, memory_order_acquire)) {
        return false;
    }
    atomic_store_explicit(&s->p, (uint8_t *)p, memory_order_relaxed);
    atomic_store_explicit(&s->len, len, memory_order_relaxed);
    atomic_store_explicit(&s->left, len, memory_order_relaxed);
    atomic_store_explicit(&s->busy, true, memory_order_release);
    eventfd_write(pp->efd, 1);
    return true;
}

size_t
populate_left(struct populate *pp, unsigned worker)
{
    if (worker >= pp->nslots ||
        !atomic_load_explicit(&pp->slots[worker].busy, memory_order_acquire)) {
        return 0;
    }
    return atomic_load_explicit(&pp->slots[worker].left, memory_order_relaxed);
}
