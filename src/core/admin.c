/*
 * admin: the admin port, the health check and the log flusher, on one thread.
 *
 * The port speaks two protocols, told apart by the first line: memcached-style text commands
 * (version, stats [workers|latency|<product's>], log level [LEVEL], reload, quit, and with
 * --debug-commands "debug stall WORKER MS") and HTTP/1.x GET for /metrics (Prometheus text),
 * /vars (JSON) and /health. An HTTP request gets one response and the connection closes.
 *
 * Connections move their bytes through connio (as the workers' do). The port cannot be locked
 * out: a connection idle for ADMIN_IDLE_MS, or with a request unfinished after ADMIN_REQUEST_MS,
 * is closed, and when all ADMIN_MAX_CONNS are taken a new one replaces the one that has been
 * quiet longest, so a health probe always gets through.
 *
 * It runs on its own thread so that operators, scrapes and log I/O never take time from the
 * workers. It only reads what workers publish (the metrics registry under RCU, relaxed atomics)
 * and writes nothing of theirs but the debug hook's stall request.
 */
#include "connio.h"
#include "admin.h"
#include "live.h"
#include "notify.h"

#include "petrel_build.h"

#include "petrel/prcu.h"
#include "petrel/log.h"
#include "petrel/sock.h"

#if PETREL_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include <mbedtls/version.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ADMIN_MAX_CONNS  64
#define ADMIN_IN_MAX     8192       /* a command line, or an HTTP request's head */
#define ADMIN_OUT_MAX    (64 << 20) /* /metrics of 256 workers fits many times over */
#define FLUSH_MS         100        /* log flush and health check period */
#define MEMORY_MS        1000       /* jemalloc statistics refresh period */
#define ADMIN_IDLE_MS    60000      /* an admin connection with nothing to do is closed after */
#define ADMIN_REQUEST_MS 5000       /* a request begun must be complete within */

struct admin_conn {
    struct connio io;
    unsigned slot;         /* index in conns[] below */
    bool closing;          /* close once the output is sent */
    int64_t last_active;   /* ms: accepted, or last read or wrote a byte */
    int64_t partial_since; /* ms: when the unfinished request in io.rbuf began; 0: none */
};

static char waker_tag;
static char listen_tag;

/* Open admin connections, so that shutdown can free them. Admin thread only. */
static struct admin_conn *conns[ADMIN_MAX_CONNS];

/* Health check state, admin thread only: per worker, the heartbeat last seen and when. */
static uint64_t *hb_seen;
static int64_t *hb_since;
static bool *hb_stuck;

/* jemalloc's figures, refreshed by the admin thread (the only caller of the "epoch" mallctl,
 * which merges every arena's statistics): admin(w) -> any(r). */
enum { MEM_ALLOCATED, MEM_ACTIVE, MEM_RESIDENT, MEM_MAPPED, MEM_COUNT };
static _Atomic uint64_t mem[MEM_COUNT];

enum global {
    G_UPTIME,
    G_THREADS,
    G_MAX_CONNECTIONS,
    G_TOTAL_CONNECTIONS,
    G_REJECTED_CONNECTIONS,
    G_RELOADS,
    G_RELOAD_ERRORS,
    G_LOG_DROPPED,
    G_KLOG_LINES,
    G_WORKERS_STUCK,
    G_TLS_HANDSHAKES,
    G_TLS_RESUMPTIONS,
    G_TLS_ACTIVE,
    G_TLS_FAILURES, /* one per enum tls_failure */
    G_TLS_RELOAD_ERRORS = G_TLS_FAILURES + TLS_FAIL_COUNT,
    G_MEM_ALLOCATED, /* the memory figures come last: only with jemalloc */
    G_MEM_ACTIVE,
    G_MEM_RESIDENT,
    G_MEM_MAPPED,
    G_COUNT
};

static const struct metric_def global_defs[G_COUNT] = {
    [G_UPTIME] = {"uptime", METRIC_GAUGE, "seconds since the server started"},
    [G_THREADS] = {"threads", METRIC_GAUGE, "worker threads"},
    [G_MAX_CONNECTIONS] = {"max_connections", METRIC_GAUGE,
                           "connection limit in force (max-conns)"},
    [G_TOTAL_CONNECTIONS] = {"total_connections", METRIC_COUNTER, "connections accepted"},
    [G_REJECTED_CONNECTIONS] = {"rejected_connections", METRIC_COUNTER,
                                "connections refused at the connection limit"},
    [G_RELOADS] = {"config_reloads", METRIC_COUNTER, "configuration reloads that took effect"},
    [G_RELOAD_ERRORS] = {"config_reload_errors", METRIC_COUNTER,
                         "configuration reloads refused because the file did not load"},
    [G_LOG_DROPPED] = {"log_dropped", METRIC_COUNTER,
                       "log and command log lines dropped because a thread's ring was full"},
    [G_KLOG_LINES] = {"klog_lines", METRIC_COUNTER, "lines written to the command log"},
    [G_TLS_HANDSHAKES] = {"tls_handshakes", METRIC_COUNTER, "full TLS handshakes completed"},
    [G_TLS_RESUMPTIONS] = {"tls_resumptions", METRIC_COUNTER,
                           "TLS handshakes that resumed a session (ticket or session id)"},
    [G_TLS_ACTIVE] = {"tls_handshakes_active", METRIC_GAUGE,
                      "TLS connections waiting for or in their handshake"},
    [G_TLS_FAILURES + TLS_FAIL_TIMEOUT] = {"tls_failures_timeout", METRIC_COUNTER,
                                           "TLS handshakes not done within "
                                           "tls-handshake-timeout"},
    [G_TLS_FAILURES + TLS_FAIL_NOT_TLS] = {"tls_failures_not_tls", METRIC_COUNTER,
                                           "connections to a TLS port that did not begin with "
                                           "a TLS handshake"},
    [G_TLS_FAILURES + TLS_FAIL_PROTOCOL] = {"tls_failures_protocol", METRIC_COUNTER,
                                            "TLS handshakes failed on an alert or a malformed, "
                                            "unsupported or unexpected message"},
    [G_TLS_FAILURES + TLS_FAIL_CERTIFICATE] = {"tls_failures_certificate", METRIC_COUNTER,
                                               "TLS handshakes refused for the client's "
                                               "certificate (missing or not accepted)"},
    [G_TLS_FAILURES + TLS_FAIL_CLOSED] = {"tls_failures_closed", METRIC_COUNTER,
                                          "TLS handshakes the client closed or reset"},
    [G_TLS_RELOAD_ERRORS] = {"tls_reload_errors", METRIC_COUNTER,
                             "reloads whose TLS certificates did not load (the old ones stay)"},
    [G_WORKERS_STUCK] = {"workers_stuck", METRIC_GAUGE,
                         "workers whose event loop has not turned for health-timeout seconds"},
    [G_MEM_ALLOCATED] = {"mem_allocated", METRIC_GAUGE,
                         "bytes allocated by the process (jemalloc stats.allocated)"},
    [G_MEM_ACTIVE] = {"mem_active", METRIC_GAUGE,
                      "bytes in pages backing allocations (jemalloc stats.active)"},
    [G_MEM_RESIDENT] = {"mem_resident", METRIC_GAUGE,
                        "bytes of allocator memory resident (jemalloc stats.resident)"},
    [G_MEM_MAPPED] = {"mem_mapped", METRIC_GAUGE, "bytes mapped by jemalloc (stats.mapped)"},
};

/* Prometheus names of the globals whose memcached names lack their unit. */
static const char *const prom[G_COUNT] = {
    [G_UPTIME] = "uptime_seconds",          [G_MEM_ALLOCATED] = "memory_allocated_bytes",
    [G_MEM_ACTIVE] = "memory_active_bytes", [G_MEM_RESIDENT] = "memory_resident_bytes",
    [G_MEM_MAPPED] = "memory_mapped_bytes",
};

size_t
admin_globals(struct runtime *rt, struct metric_value *out, size_t cap)
{
    uint64_t v[G_COUNT] = {
        [G_UPTIME] = (uint64_t)(time(NULL) - rt->started_at),
        [G_THREADS] = rt->nworkers,
        [G_MAX_CONNECTIONS] = rt_live_get(rt).max_conns,
        [G_TOTAL_CONNECTIONS] = atomic_load_explicit(&rt->accepted, memory_order_relaxed),
        [G_REJECTED_CONNECTIONS] = atomic_load_explicit(&rt->rejected, memory_order_relaxed),
        [G_RELOADS] = atomic_load_explicit(&rt->reloads, memory_order_relaxed),
        [G_RELOAD_ERRORS] = atomic_load_explicit(&rt->reload_errors, memory_order_relaxed),
        [G_LOG_DROPPED] = log_dropped(),
        [G_KLOG_LINES] = log_klog_lines(),
        [G_WORKERS_STUCK] = atomic_load_explicit(&rt->workers_stuck, memory_order_relaxed),
        [G_TLS_HANDSHAKES] = atomic_load_explicit(&rt->tls_stats.handshakes, memory_order_relaxed),
        [G_TLS_RESUMPTIONS] =
            atomic_load_explicit(&rt->tls_stats.resumptions, memory_order_relaxed),
        [G_TLS_ACTIVE] = atomic_load_explicit(&rt->tls_stats.active, memory_order_relaxed),
        [G_TLS_RELOAD_ERRORS] =
            atomic_load_explicit(&rt->tls_stats.reload_errors, memory_order_relaxed),
    };
    for (unsigned i = 0; i < TLS_FAIL_COUNT; i++) {
        v[G_TLS_FAILURES + i] =
            atomic_load_explicit(&rt->tls_stats.failures[i], memory_order_relaxed);
    }
    size_t n = PETREL_HAVE_JEMALLOC ? G_COUNT : G_MEM_ALLOCATED;
    for (unsigned i = 0; i < MEM_COUNT; i++) {
        v[G_MEM_ALLOCATED + i] = atomic_load_explicit(&mem[i], memory_order_relaxed);
    }
    for (size_t i = 0; i < n && i < cap; i++) {
        out[i] = (struct metric_value){.def = &global_defs[i], .value = v[i], .prom = prom[i]};
    }
    return n < cap ? n : cap;
}

#define STR_(x) #x
#define STR(x)  STR_(x)

/* Purge the allocator's decayed pages and refresh its statistics. Admin thread, once a second
 * (both calls take every arena's lock, briefly). */
static void
memory_refresh(void)
{
#if PETREL_HAVE_JEMALLOC
    static const char *const names[MEM_COUNT] = {"stats.allocated", "stats.active",
                                                 "stats.resident", "stats.mapped"};
    /* Purge what has decayed. jemalloc purges unused pages at its decay rate (dirty_decay_ms,
     * 10 s) but only from inside malloc and free, and it has no thread of its own here: a server
     * that goes quiet after a burst of large requests (read buffers grown to a megabyte and
     * freed) would keep those pages resident for good, tens of MiB above -m. */
    (void)mallctl("arena." STR(MALLCTL_ARENAS_ALL) ".decay", NULL, NULL, NULL, 0);

    uint64_t epoch = 1;
    size_t sz = sizeof(epoch);
    if (mallctl("epoch", &epoch, &sz, &epoch, sz) != 0) {
        return;
    }
    for (unsigned i = 0; i < MEM_COUNT; i++) {
        size_t v;
        sz = sizeof(v);
        if (mallctl(names[i], &v, &sz, NULL, 0) == 0) {
            atomic_store_explicit(&mem[i], v, memory_order_relaxed);
        }
    }
#endif
}

/*
 * What every Prometheus client library exports about its process (the process_* names of the
 * exposition conventions), read from /proc/self, and petrel_build_info. Admin thread.
 */
static int
write_process_metrics(struct buf *b, const struct runtime *rt)
{
    int rc = buf_printf(b,
                        "# HELP petrel_build_info the running build (value 1)\n"
                        "# TYPE petrel_build_info gauge\n"
                        "petrel_build_info{version=\"%s\",product=\"%s\",tls=\"mbedtls %s\"} 1\n",
                        PETREL_VERSION, rt->p->name, MBEDTLS_VERSION_STRING);
    /* /proc/self/stat: fields 14, 15 (utime, stime, ticks), 22 (starttime, ticks after boot),
     * 23 (vsize, bytes), 24 (rss, pages); the command name (field 2) may hold blanks. */
    char stat[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    size_t n = f != NULL ? fread(stat, 1, sizeof(stat) - 1, f) : 0;
    if (f != NULL) {
        fclose(f);
    }
    stat[n] = '\0';
    const char *p = strrchr(stat, ')');
    unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
    long long rss = 0;
    if (p == NULL || sscanf(p + 2,
                            "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d "
                            "%*d %*d %*d %llu %llu %lld",
                            &utime, &stime, &start, &vsize, &rss) != 5) {
        return rc;
    }
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    /* Boot time, to turn starttime into a unix time. */
    long long btime = 0;
    char line[256];
    if ((f = fopen("/proc/stat", "r")) != NULL) {
        while (fgets(line, sizeof(line), f) != NULL && sscanf(line, "btime %lld", &btime) != 1) {
        }
        fclose(f);
    }
    unsigned fds = 0;
    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;) {
        fds += e->d_name[0] != '.';
    }
    if (d != NULL) {
        closedir(d);
        fds--; /* the directory's own descriptor */
    }
    struct rlimit rl = {0};
    getrlimit(RLIMIT_NOFILE, &rl);
    rc |= buf_printf(b,
                     "# HELP process_cpu_seconds_total user and system CPU time\n"
                     "# TYPE process_cpu_seconds_total counter\n"
                     "process_cpu_seconds_total %.2f\n"
                     "# HELP process_resident_memory_bytes resident memory\n"
                     "# TYPE process_resident_memory_bytes gauge\n"
                     "process_resident_memory_bytes %lld\n"
                     "# HELP process_virtual_memory_bytes virtual memory\n"
                     "# TYPE process_virtual_memory_bytes gauge\n"
                     "process_virtual_memory_bytes %llu\n"
                     "# HELP process_start_time_seconds start time, seconds since the epoch\n"
                     "# TYPE process_start_time_seconds gauge\n"
                     "process_start_time_seconds %.2f\n"
                     "# HELP process_open_fds open file descriptors\n"
                     "# TYPE process_open_fds gauge\n"
                     "process_open_fds %u\n"
                     "# HELP process_max_fds the descriptor limit\n"
                     "# TYPE process_max_fds gauge\n"
                     "process_max_fds %llu\n",
                     (double)(utime + stime) / (double)tick, rss * page, vsize,
                     (double)btime + (double)start / (double)tick, fds,
                     (unsigned long long)rl.rlim_cur);
    return rc < 0 ? rc : 0;
}

int
admin_listen(struct runtime *rt, char *err, size_t errlen)
{
    const char *addr = config_str(rt->cfg, "admin-address");
    uint16_t port = (uint16_t)config_uint(rt->cfg, "admin-port");
    int fds[1];
    size_t n = 0;
    int rc = sock_listen_tcp(addr, port, SOCK_PORT_HOST, 64, fds, 1, &n, err, errlen);
    if (rc < 0) {
        return rc;
    }
    rt->admin_fd = fds[0];
    return 0;
}

/*
 * memcached's TLS counters, shown as it shows them (with TLS on): ssl_handshake_errors, every
 * handshake that failed (memcached counts each failed accept; Petrel's handshake timeout is
 * one more way to fail), and ssl_proto_errors, TLS errors on established connections.
 */
static int
ssl_stats_each(struct runtime *rt, const struct metrics_snapshot *s, metrics_stat_fn fn, void *arg)
{
    uint64_t failed = 0;
    for (unsigned i = 0; i < TLS_FAIL_COUNT; i++) {
        failed += atomic_load_explicit(&rt->tls_stats.failures[i], memory_order_relaxed);
    }
    char v[24];
    snprintf(v, sizeof(v), "%llu", (unsigned long long)failed);
    int rc = fn(arg, "ssl_handshake_errors", v);
    snprintf(v, sizeof(v), "%llu",
             (unsigned long long)metrics_snapshot_total(s, 0, RTM_TLS_ERRORS));
    return rc < 0 ? rc : fn(arg, "ssl_proto_errors", v);
}

/* The process's own figures, before the registry's: pid, time, version, pointer size, CPU. */
static int
process_stats_each(const char *version, metrics_stat_fn fn, void *arg)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    char v[4][32];
    snprintf(v[0], sizeof(v[0]), "%ld", (long)getpid());
    snprintf(v[1], sizeof(v[1]), "%lld", (long long)time(NULL));
    snprintf(v[2], sizeof(v[2]), "%ld.%06ld", (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec);
    snprintf(v[3], sizeof(v[3]), "%ld.%06ld", (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec);
    char psize[8];
    snprintf(psize, sizeof(psize), "%zu", sizeof(void *) * 8);
    int rc = fn(arg, "pid", v[0]);
    rc = rc < 0 ? rc : fn(arg, "time", v[1]);
    rc = rc < 0 ? rc : fn(arg, "version", version);
    rc = rc < 0 ? rc : fn(arg, "pointer_size", psize);
    rc = rc < 0 ? rc : fn(arg, "rusage_user", v[2]);
    return rc < 0 ? rc : fn(arg, "rusage_system", v[3]);
}

int
rt_stats_each(const char *version, metrics_stat_fn fn, void *arg)
{
    struct runtime *rt = rt_current;
    struct metrics_snapshot *s;
    int rc = metrics_snapshot_take(rt->metrics, &s);
    if (rc < 0) {
        return rc;
    }
    struct metric_value g[G_COUNT];
    size_t ng = admin_globals(rt, g, sizeof(g) / sizeof(g[0]));
    rc = process_stats_each(version, fn, arg);
    rc = rc < 0 ? rc : metrics_stats_each(s, g, ng, fn, arg);
    if (rc == 0 && rt->tls_on) {
        rc = ssl_stats_each(rt, s, fn, arg);
    }
    metrics_snapshot_free(&s);
    return rc < 0 ? rc : 0;
}

/* metrics_stat_fn: the admin port's "STAT name value" line into the buffer arg. */
static int
admin_stat_line(void *arg, const char *name, const char *value)
{
    return buf_printf(arg, "STAT %s %s\r\n", name, value);
}

/* ---- health ---- */

/* Compare every worker's heartbeat with the last one seen; log changes of state. */
static void
health_check(struct runtime *rt, int64_t now_ms)
{
    int64_t limit = (int64_t)rt_live_get(rt).health_timeout * 1000;
    unsigned stuck = 0;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        uint64_t hb = atomic_load_explicit(&rt->workers[i].heartbeat, memory_order_relaxed);
        if (hb != hb_seen[i]) {
            hb_seen[i] = hb;
            hb_since[i] = now_ms;
            if (hb_stuck[i]) {
                log_warn("worker %u: event loop turning again", i);
                hb_stuck[i] = false;
            }
            continue;
        }
        if (now_ms - hb_since[i] > limit) {
            if (!hb_stuck[i]) {
                log_error("worker %u: event loop stuck for %lld ms", i,
                          (long long)(now_ms - hb_since[i]));
                hb_stuck[i] = true;
            }
            stuck++;
        }
    }
    atomic_store_explicit(&rt->workers_stuck, stuck, memory_order_relaxed);
}

static int64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* /health: "OK", or one line per stuck worker. Returns the HTTP status. */
static int
write_health(struct runtime *rt, struct buf *b)
{
    int64_t now = mono_ms();
    int status = 200;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        if (hb_stuck[i]) {
            buf_printf(b, "worker %u: event loop stuck for %.1f s\n", i,
                       (double)(now - hb_since[i]) / 1000);
            status = 503;
        }
    }
    if (status == 200) {
        buf_puts(b, "OK\n");
    }
    return status;
}

/* ---- text commands ---- */

static void
write_stats(struct runtime *rt, struct buf *b)
{
    rt_stats_each(PETREL_VERSION, admin_stat_line, b);
    buf_printf(b, "STAT product %s\r\n", rt->p->name);
    struct metrics_snapshot *s;
    if (metrics_snapshot_take(rt->metrics, &s) == 0) {
        for (size_t i = 0; i < metrics_snapshot_blocks(s); i++) {
            buf_printf(b, "STAT worker_%u_connections %llu\r\n", metrics_snapshot_block_id(s, i),
                       (unsigned long long)metrics_snapshot_value(s, i, 0, RTM_CURR_CONNECTIONS));
        }
        metrics_snapshot_free(&s);
    }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        buf_printf(b, "STAT worker_%u_wakeups %llu\r\n", i,
                   (unsigned long long)atomic_load_explicit(&rt->workers[i].waker.wakeups,
                                                            memory_order_relaxed));
    }
    buf_puts(b, "END\r\n");
}

static int
write_snapshot(struct runtime *rt, struct buf *b,
               int (*fn)(struct buf *, const struct metrics_snapshot *))
{
    struct metrics_snapshot *s;
    int rc = metrics_snapshot_take(rt->metrics, &s);
    if (rc == 0) {
        rc = fn(b, s);
        metrics_snapshot_free(&s);
    }
    return rc;
}

static void
write_workers(struct runtime *rt, struct buf *b)
{
    write_snapshot(rt, b, metrics_write_workers);
    int64_t now = mono_ms();
    for (unsigned i = 0; i < rt->nworkers; i++) {
        struct worker *w = &rt->workers[i];
        buf_printf(
            b, "STAT worker_%u_wakeups %llu\r\n", i,
            (unsigned long long)atomic_load_explicit(&w->waker.wakeups, memory_order_relaxed));
        buf_printf(b, "STAT worker_%u_heartbeat_age_ms %lld\r\n", i,
                   (long long)(now - hb_since[i]));
    }
    buf_puts(b, "END\r\n");
}

/* "log level [NAME]": show or change the level at run time. */
static void
cmd_log_level(const char *arg, struct buf *out)
{
    if (arg[0] == '\0') {
        buf_printf(out, "STAT log_level %s\r\nEND\r\n", log_level_names[log_get_level()]);
        return;
    }
    for (int i = 0; log_level_names[i] != NULL; i++) {
        if (strcmp(arg, log_level_names[i]) == 0) {
            log_set_level((enum log_level)i);
            log_warn("admin: log level set to %s", arg);
            buf_puts(out, "OK\r\n");
            return;
        }
    }
    buf_puts(out, "CLIENT_ERROR unknown log level\r\n");
}

/* "debug stall WORKER MS": only with --debug-commands, else indistinguishable from unknown. */
static void
cmd_debug(struct runtime *rt, const char *arg, struct buf *out)
{
    unsigned worker, ms;
    char tail;
    if (!rt->debug_commands || sscanf(arg, "stall %u %u%c", &worker, &ms, &tail) != 2) {
        buf_puts(out, "ERROR\r\n");
        return;
    }
    if (worker >= rt->nworkers || ms == 0 || ms > 600000) {
        buf_puts(out, "CLIENT_ERROR bad worker or duration\r\n");
        return;
    }
    log_warn("admin: debug stall of worker %u for %u ms requested", worker, ms);
    atomic_store_explicit(&rt->workers[worker].stall_ms, ms, memory_order_relaxed);
    buf_puts(out, "OK\r\n");
}

/* One text command (NUL-terminated, no line end). Returns -1 to close after the reply. */
static int
admin_command(struct runtime *rt, char *line, struct buf *out)
{
    if (strcmp(line, "version") == 0) {
        buf_printf(out, "VERSION %s\r\n", PETREL_VERSION);
    } else if (strcmp(line, "stats") == 0) {
        write_stats(rt, out);
    } else if (strcmp(line, "stats workers") == 0) {
        write_workers(rt, out);
    } else if (strcmp(line, "stats latency") == 0) {
        write_snapshot(rt, out, metrics_write_latency);
        buf_puts(out, "END\r\n");
    } else if (strncmp(line, "stats ", 6) == 0) {
        size_t mark = buf_len(out);
        int rc = rt->p->admin_stats != NULL ? rt->p->admin_stats(line + 6, out) : -ENOENT;
        if (rc < 0) {
            out->wpos = out->rpos + mark;
            buf_puts(out, "ERROR\r\n");
        } else {
            buf_puts(out, "END\r\n");
        }
    } else if (strcmp(line, "log level") == 0 || strncmp(line, "log level ", 10) == 0) {
        cmd_log_level(line[9] == ' ' ? line + 10 : "", out);
    } else if (strcmp(line, "reload") == 0) {
        /* The main thread reloads, exactly as for an operator's SIGHUP. */
        kill(getpid(), SIGHUP);
        buf_puts(out, "OK\r\n");
    } else if (strncmp(line, "debug ", 6) == 0) {
        cmd_debug(rt, line + 6, out);
    } else if (strcmp(line, "quit") == 0) {
        return -1;
    } else {
        buf_puts(out, "ERROR\r\n");
    }
    return 0;
}

/* ---- HTTP ---- */

static void
http_respond(struct buf *out, int status, const char *type, const struct buf *body)
{
    const char *reason = status == 200   ? "OK"
                         : status == 404 ? "Not Found"
                         : status == 405 ? "Method Not Allowed"
                         : status == 503 ? "Service Unavailable"
                                         : "Internal Server Error";
    buf_printf(out,
               "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
               "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
               status, reason, type, buf_len(body));
    buf_append(out, buf_rptr(body), buf_len(body));
}

/* An HTTP request whose head is complete; line is its request line. */
static void
http_request(struct runtime *rt, const char *line, struct buf *out)
{
    char method[8], target[256];
    if (sscanf(line, "%7s %255s", method, target) != 2) {
        method[0] = '\0';
    }
    struct buf body;
    buf_init(&body, 4096, ADMIN_OUT_MAX / 2);
    const char *text = "text/plain; charset=utf-8";
    int status = 200;
    bool head = strcmp(method, "HEAD") == 0;
    char *q = strchr(target, '?'); /* Prometheus may add parameters; none are used */
    if (q != NULL) {
        *q = '\0';
    }
    if (strcmp(method, "GET") != 0 && !head) {
        status = 405;
        buf_puts(&body, "only GET and HEAD\n");
    } else if (strcmp(target, "/metrics") == 0) {
        struct metrics_snapshot *s;
        struct metric_value g[G_COUNT];
        size_t ng = admin_globals(rt, g, G_COUNT);
        text = "text/plain; version=0.0.4; charset=utf-8";
        if (metrics_snapshot_take(rt->metrics, &s) < 0 ||
            metrics_write_prometheus(&body, s, "petrel_", g, ng) < 0 ||
            write_process_metrics(&body, rt) < 0) {
            status = 500;
        }
        metrics_snapshot_free(&s);
    } else if (strcmp(target, "/vars") == 0) {
        struct metrics_snapshot *s;
        struct metric_value g[G_COUNT];
        size_t ng = admin_globals(rt, g, G_COUNT);
        text = "application/json";
        if (metrics_snapshot_take(rt->metrics, &s) < 0 || metrics_write_json(&body, s, g, ng) < 0) {
            status = 500;
        }
        metrics_snapshot_free(&s);
    } else if (strcmp(target, "/health") == 0) {
        status = write_health(rt, &body);
    } else {
        status = 404;
        buf_puts(&body, "try /metrics, /vars or /health\n");
    }
    if (status == 500) {
        buf_consume(&body, buf_len(&body));
        buf_puts(&body, "out of memory\n");
    }
    size_t len = buf_len(&body);
    http_respond(out, status, text, &body);
    if (head) {
        out->wpos -= len; /* the head only, with the body's length */
    }
    buf_free(&body);
}

static bool
is_http(const char *line, size_t len)
{
    const char *sp = memchr(line, ' ', len);
    return sp != NULL && len > 9 && memcmp(line + len - 9, " HTTP/1.", 8) == 0;
}

/* Answer every complete request in a->io.rbuf. Returns -1 when the connection should close. */
static int
admin_process(struct runtime *rt, struct admin_conn *a)
{
    /* Events come edge-triggered for both directions, so this also runs before any byte (or
     * buffer) is there. */
    while (!a->closing && buf_len(&a->io.rbuf) > 0) {
        char *line = buf_rptr(&a->io.rbuf);
        size_t have = buf_len(&a->io.rbuf);
        char *nl = memchr(line, '\n', have);
        if (nl == NULL) {
            return have >= ADMIN_IN_MAX ? -1 : 0;
        }
        size_t len = (size_t)(nl - line);
        if (len > 0 && line[len - 1] == '\r') {
            len--;
        }
        if (is_http(line, len)) {
            /* Wait for the whole head: an empty line ends it. */
            char *end = memmem(line, have, "\r\n\r\n", 4);
            size_t endlen = 4;
            if (end == NULL) {
                end = memmem(line, have, "\n\n", 2);
                endlen = 2;
            }
            if (end == NULL) {
                return have >= ADMIN_IN_MAX ? -1 : 0;
            }
            line[len] = '\0';
            http_request(rt, line, &a->io.wbuf);
            buf_consume(&a->io.rbuf, (size_t)(end + endlen - line));
            a->closing = true;
            return 0;
        }
        line[len] = '\0';
        int rc = admin_command(rt, line, &a->io.wbuf);
        buf_consume(&a->io.rbuf, (size_t)(nl + 1 - line));
        if (rc < 0) {
            a->closing = true;
        }
    }
    return 0;
}

static void
admin_close(struct admin_conn *a)
{
    conns[a->slot] = NULL;
    connio_close(&a->io); /* closing the socket also takes it out of the epoll set */
    free(a);
}

/* Serve one admin connection's readiness. Returns -1 to close it. */
static int
admin_serve(struct runtime *rt, struct admin_conn *a, uint32_t events)
{
    connio_events(&a->io, events);
    size_t before = buf_len(&a->io.rbuf);
    while (!a->closing && a->io.readable) {
        if (buf_reserve(&a->io.rbuf, 512) < 0) {
            return -1; /* a line longer than ADMIN_IN_MAX */
        }
        if (connio_read(&a->io) < 0) {
            return -1;
        }
    }
    int64_t now = mono_ms();
    if (buf_len(&a->io.rbuf) != before) {
        a->last_active = now;
    }
    if (admin_process(rt, a) < 0) {
        return -1;
    }
    /* The deadline runs from the first byte of a request to its end. */
    if (buf_len(&a->io.rbuf) == 0) {
        a->partial_since = 0;
    } else if (a->partial_since == 0 || buf_len(&a->io.rbuf) < before) {
        a->partial_since = now;
    }
    ssize_t n = connio_flush(&a->io, SIZE_MAX);
    if (n < 0) {
        return -1;
    }
    if (n > 0) {
        a->last_active = now;
    }
    if (buf_len(&a->io.wbuf) > 0) {
        return 0; /* a large /metrics: EPOLLOUT says when to go on */
    }
    buf_shrink(&a->io.wbuf);
    return a->closing || a->io.eof ? -1 : 0;
}

/* The connection that has been quiet longest, to make room for a new one. */
static struct admin_conn *
admin_oldest(void)
{
    struct admin_conn *old = NULL;
    for (unsigned i = 0; i < ADMIN_MAX_CONNS; i++) {
        if (conns[i] != NULL && (old == NULL || conns[i]->last_active < old->last_active)) {
            old = conns[i];
        }
    }
    return old;
}

static void
admin_accept(int epfd, int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            return;
        }
        unsigned slot = 0;
        while (slot < ADMIN_MAX_CONNS && conns[slot] != NULL) {
            slot++;
        }
        if (slot == ADMIN_MAX_CONNS) {
            /* Operators get a handful of sessions, not unbounded memory; but the newest one
             * (a health probe, an operator) matters more than the one idle longest. */
            struct admin_conn *old = admin_oldest();
            log_verbose("admin: %d connections open, closing the one quiet longest",
                        ADMIN_MAX_CONNS);
            slot = old->slot;
            admin_close(old);
        }
        struct admin_conn *a = calloc(1, sizeof(*a));
        if (a == NULL) {
            close(fd);
            continue;
        }
        transport_plain_init(&a->io.t, fd);
        a->slot = slot;
        a->last_active = mono_ms();
        conns[slot] = a;
        buf_init(&a->io.rbuf, 512, ADMIN_IN_MAX);
        buf_init(&a->io.wbuf, 4096, ADMIN_OUT_MAX);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.ptr = a};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            admin_close(a);
        }
    }
}

/* Close connections idle past ADMIN_IDLE_MS or with a request unfinished past
 * ADMIN_REQUEST_MS. Bound: ADMIN_MAX_CONNS. */
static void
admin_sweep(int64_t now)
{
    for (unsigned i = 0; i < ADMIN_MAX_CONNS; i++) {
        struct admin_conn *a = conns[i];
        if (a == NULL) {
            continue;
        }
        if (a->partial_since != 0 && now - a->partial_since >= ADMIN_REQUEST_MS) {
            log_verbose("admin: request not complete after %d ms, closing", ADMIN_REQUEST_MS);
            admin_close(a);
        } else if (now - a->last_active >= ADMIN_IDLE_MS) {
            log_verbose("admin: connection idle for %d ms, closing", ADMIN_IDLE_MS);
            admin_close(a);
        }
    }
}

void *
admin_main(void *arg)
{
    struct runtime *rt = arg;
    pthread_setname_np(pthread_self(), "admin");
    prcu_thread_register();
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    hb_seen = calloc(rt->nworkers, sizeof(*hb_seen));
    hb_since = calloc(rt->nworkers, sizeof(*hb_since));
    hb_stuck = calloc(rt->nworkers, sizeof(*hb_stuck));
    if (epfd < 0 || hb_seen == NULL || hb_since == NULL || hb_stuck == NULL) {
        log_error("admin: cannot start: %s", strerror(epfd < 0 ? errno : ENOMEM));
        goto out;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &waker_tag};
    epoll_ctl(epfd, EPOLL_CTL_ADD, rt->admin_waker.efd, &ev);
    ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &listen_tag};
    epoll_ctl(epfd, EPOLL_CTL_ADD, rt->admin_fd, &ev);

    int64_t now = mono_ms(), next_flush = now + FLUSH_MS, next_mem = now;
    /* systemd's watchdog: a ping every half period, held back while a worker is stuck, so that a
     * wedged event loop (or a wedged admin thread) gets the server restarted. */
    uint64_t wd_usec = notify_watchdog_usec();
    int64_t wd_ms = wd_usec == 0 ? 0 : wd_usec >= 2000 ? (int64_t)(wd_usec / 2000) : 1;
    int64_t next_wd = now;
    bool wd_held = false;
    if (wd_ms > 0) {
        log_info("watchdog: pinging systemd every %lld ms", (long long)wd_ms);
    }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        hb_since[i] = now;
    }
    struct epoll_event evs[16];
    while (!atomic_load_explicit(&rt->stop, memory_order_relaxed)) {
        int n = epoll_wait(epfd, evs, 16, (int)(next_flush > now ? next_flush - now : 0));
        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;
            if (tag == &waker_tag) {
                waker_drain(&rt->admin_waker);
            } else if (tag == &listen_tag) {
                admin_accept(epfd, rt->admin_fd);
            } else if (admin_serve(rt, tag, evs[i].events) < 0) {
                admin_close(tag);
            }
        }
        now = mono_ms();
        if (now >= next_flush) {
            /* The admin thread is the log flusher while it runs, and the health checker. */
            next_flush = now + FLUSH_MS;
            log_flush();
            health_check(rt, now);
            admin_sweep(now);
        }
        if (wd_ms > 0 && now >= next_wd) {
            next_wd = now + wd_ms;
            unsigned stuck = atomic_load_explicit(&rt->workers_stuck, memory_order_relaxed);
            if (stuck == 0) {
                notify_send("WATCHDOG=1");
            } else if (!wd_held) {
                log_error("watchdog: not pinging systemd while %u worker%s stuck", stuck,
                          stuck == 1 ? " is" : "s are");
            }
            if (wd_held && stuck == 0) {
                log_warn("watchdog: pinging systemd again");
            }
            wd_held = stuck > 0;
        }
        if (now >= next_mem) {
            next_mem = now + MEMORY_MS;
            memory_refresh();
        }
    }
out:
    for (unsigned i = 0; i < ADMIN_MAX_CONNS; i++) {
        if (conns[i] != NULL) {
            admin_close(conns[i]);
        }
    }
    close(rt->admin_fd);
    rt->admin_fd = -1;
    if (epfd >= 0) {
        close(epfd);
    }
    free(hb_seen);
    free(hb_since);
    free(hb_stuck);
    hb_seen = NULL;
    hb_since = NULL;
    hb_stuck = NULL;
    prcu_thread_unregister();
    return NULL;
}
