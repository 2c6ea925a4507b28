/*
 * live: the settings a reload may change, published under RCU (see struct rt_live in live.h),
 * and the figures products read through rt_stats_get(). Depends on nothing else in src/core, so
 * that the threads' modules (acceptor, worker, admin) can read it and runtime.c can start them
 * without a cycle between them.
 */
#include "live.h"

#include "petrel/prcu.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <urcu/pointer.h>

struct runtime *rt_current;

/* log-level, raised by -v/-vv. */
enum log_level
effective_level(const struct config *cfg)
{
    enum log_level level = (enum log_level)config_enum(cfg, "log-level");
    unsigned verbose = (unsigned)config_uint(cfg, "verbose");
    if (verbose > 0 && level < LOG_INFO + verbose) {
        level = (enum log_level)(LOG_INFO + verbose);
    }
    return level > LOG_DEBUG ? LOG_DEBUG : level; /* -vvv, as memcached's, is -vv */
}

struct rt_live *
live_new(struct config *cfg, bool owned)
{
    struct rt_live *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return NULL;
    }
    l->cfg = cfg;
    l->owned = owned;
    l->max_conns = (unsigned)config_uint(cfg, "max-conns");
    l->idle_timeout = (unsigned)config_uint(cfg, "idle-timeout");
    l->request_timeout = (unsigned)config_uint(cfg, "request-timeout");
    /* Sampling costs nothing when there is no command log to write to. */
    l->klog_every =
        config_str(cfg, "klog-file")[0] != '\0' ? (unsigned)config_uint(cfg, "klog-sample") : 0;
    l->health_timeout = (unsigned)config_uint(cfg, "health-timeout");
    l->tls_handshake_timeout = (unsigned)config_uint(cfg, "tls-handshake-timeout");
    l->level = effective_level(cfg);
    return l;
}

void
live_free(void *p)
{
    struct rt_live *l = p;
    if (l->owned) {
        config_free(&l->cfg);
    }
    free(l);
}

struct rt_live
rt_live_get(struct runtime *rt)
{
    prcu_read_lock();
    const struct rt_live *l = rcu_dereference(rt->live);
    prcu_subscribe();
    struct rt_live copy = *l;
    prcu_read_unlock();
    copy.cfg = NULL; /* only valid inside the read-side section */
    return copy;
}

void
rt_stats_get(struct rt_stats *out)
{
    struct runtime *rt = rt_current;
    struct rt_live l = rt_live_get(rt);
    *out = (struct rt_stats){
        .threads = rt->nworkers, .max_connections = l.max_conns, .idle_timeout = l.idle_timeout};
    out->uptime = (uint64_t)(time(NULL) - rt->started_at);
    struct metrics_snapshot *s;
    if (metrics_snapshot_take(rt->metrics, &s) == 0) {
        out->curr_connections = metrics_snapshot_total(s, 0, RTM_CURR_CONNECTIONS);
        out->bytes_read = metrics_snapshot_total(s, 0, RTM_BYTES_READ);
        out->bytes_written = metrics_snapshot_total(s, 0, RTM_BYTES_WRITTEN);
        metrics_snapshot_free(&s);
    }
    out->total_connections = atomic_load_explicit(&rt->accepted, memory_order_relaxed);
    out->rejected_connections = atomic_load_explicit(&rt->rejected, memory_order_relaxed);
}
