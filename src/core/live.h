/*
 * live: the reloadable settings under RCU, and the runtime every thread may read (rt_current).
 * Private to src/core.
 */
#ifndef PETREL_LIVE_H
#define PETREL_LIVE_H

#include "core.h"

#include "petrel/config.h"
#include "petrel/log.h"

/*
 * The settings that a reload may change, published through an RCU-protected pointer
 * (main(w) -> every thread(r)): readers dereference it inside prcu_read_lock(); a reload
 * swaps in a new one with rcu_xchg_pointer() and frees the old one through call_rcu.
 */
struct rt_live {
    struct config *cfg; /* the configuration in force */
    bool owned;         /* built by a reload, freed with this; else main's */
    unsigned max_conns;
    unsigned idle_timeout;    /* seconds, 0 = never */
    unsigned request_timeout; /* seconds, 0 = never */
    unsigned klog_every;      /* log 1 in N requests to the command log; 0 = off */
    unsigned health_timeout;
    unsigned tls_handshake_timeout; /* seconds */
    enum log_level level;
};

/* The running runtime, for rt_stats_get() and rt_stats_each(): set by rt_main() before any
 * thread starts, cleared after they all stopped. */
extern struct runtime *rt_current;

/* log-level as raised by -v/-vv. */
enum log_level effective_level(const struct config *cfg);

/* New live settings read from cfg (owned: freed with them). NULL when out of memory. Main. */
struct rt_live *live_new(struct config *cfg, bool owned);

/* Free live settings (a call_rcu callback, or main at exit). */
void live_free(void *p);

/* A copy of the live settings (cfg left NULL). Any RCU-registered thread. */
struct rt_live rt_live_get(struct runtime *rt);

#endif /* PETREL_LIVE_H */
