/* prcu: RCU over liburcu (memb flavour). Contract in include/petrel/prcu.h */
#include "petrel/prcu.h"

#include <urcu/urcu-memb.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

/*
 * ThreadSanitizer cannot see liburcu's ordering (its barriers are inline assembly, and a grace
 * period ends through membarrier(2)), so under TSan we tell it what RCU guarantees: every reader's
 * unlock happens before any deferred free that follows (release on leaving a read-side section,
 * acquire in the callback), and whatever a writer did before publishing a pointer happens before
 * a reader's use of it (prcu_publish / prcu_subscribe). No-ops in other builds.
 */
#if defined(__SANITIZE_THREAD__)
#define PETREL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PETREL_TSAN 1
#endif
#endif
#ifdef PETREL_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
static char tsan_grace, tsan_publish;
#define TSAN_ACQUIRE(x) __tsan_acquire(&(x))
#define TSAN_RELEASE(x) __tsan_release(&(x))
/* liburcu itself is not built with TSan, so its own hand-offs (e.g. rcu_barrier's completion,
 * allocated by the caller and freed by the call_rcu thread) look like races: ignore the
 * allocations and frees it makes. Our callbacks' frees are made from our code and stay checked. */
const char *__tsan_default_suppressions(void);
const char *
__tsan_default_suppressions(void)
{
    return "called_from_lib:liburcu\n";
}
#else
#define TSAN_ACQUIRE(x) ((void)0)
#define TSAN_RELEASE(x) ((void)0)
#endif

struct deferred {
    struct rcu_head rcu;
    void *p;
    void (*fn)(void *);
};

static _Thread_local bool registered;

void
prcu_thread_register(void)
{
    if (!registered) {
        urcu_memb_register_thread();
        registered = true;
    }
}

void
prcu_thread_unregister(void)
{
    if (registered) {
        urcu_memb_unregister_thread();
        registered = false;
    }
}

void
prcu_read_lock(void)
{
    urcu_memb_read_lock();
}

void
prcu_read_unlock(void)
{
    TSAN_RELEASE(tsan_grace);
    urcu_memb_read_unlock();
}

static void
deferred_run(struct rcu_head *head)
{
    struct deferred *d = caa_container_of(head, struct deferred, rcu);
    TSAN_ACQUIRE(tsan_grace);
    d->fn(d->p);
    free(d);
}

int
prcu_defer_free(void *p, void (*fn)(void *))
{
    struct deferred *d = malloc(sizeof(*d));
    if (d == NULL) {
        return -ENOMEM;
    }
    d->p = p;
    d->fn = fn;
    TSAN_RELEASE(tsan_grace); /* what the caller did happens before the callback */
    urcu_memb_call_rcu(&d->rcu, deferred_run);
    return 0;
}

void
prcu_synchronize(void)
{
    urcu_memb_synchronize_rcu();
    TSAN_ACQUIRE(tsan_grace);
}

void
prcu_barrier(void)
{
    urcu_memb_barrier();
}

void
prcu_publish(void)
{
    TSAN_RELEASE(tsan_publish);
}

void
prcu_subscribe(void)
{
    TSAN_ACQUIRE(tsan_publish);
}
