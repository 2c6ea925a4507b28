/* log: per-thread rings drained by one flusher. Contract in include/petrel/log.h */
#include "petrel/log.h"

#include "petrel/ring.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define LOG_MAX_THREADS 1024
#define LOG_RING_SIZE   1024 /* records per thread between two flushes (flush runs every 100 ms) */
#define LOG_LINE_MAX    1024
#define KLOG_MARK       '\001' /* first byte of a ring record bound for the command log */

const char *const log_level_names[] = {"error", "warn", "info", "verbose", "debug", NULL};

struct log_thread {
    char name[16];
    struct ring *ring; /* thread(w) -> flusher(r): char * records, heap-allocated */
};

static struct {
    _Atomic int level;
    int fd;     /* the sink; written only by the flusher (or main before threads) */
    char *path; /* NULL for stderr */
    _Atomic bool reopen;
    _Atomic uint64_t dropped;
    int kfd;     /* the command log, or -1; written only by the flusher */
    char *kpath; /* its path */
    _Atomic uint64_t klines;
    _Atomic unsigned reserved; /* slots handed out by log_thread_register() */
    _Atomic unsigned nthreads; /* registered threads, published with release */
    struct log_thread threads[LOG_MAX_THREADS];
} L = {.level = LOG_INFO, .fd = STDERR_FILENO, .kfd = -1};

static _Thread_local struct log_thread *self;

static int
open_sink(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    return fd < 0 ? -errno : fd;
}

int
log_setup(enum log_level level, const char *path)
{
    atomic_store(&L.level, (int)level);
    if (path == NULL || path[0] == '\0' || strcmp(path, "stderr") == 0) {
        L.fd = STDERR_FILENO;
        return 0;
    }
    int fd = open_sink(path);
    if (fd < 0) {
        return fd;
    }
    L.path = strdup(path);
    if (L.path == NULL) {
        close(fd);
        return -ENOMEM;
    }
    L.fd = fd;
    return 0;
}

bool
log_to_stderr(void)
{
    return L.fd == STDERR_FILENO;
}

void
log_teardown(void)
{
    log_flush();
    unsigned n = atomic_load_explicit(&L.nthreads, memory_order_acquire);
    for (unsigned i = 0; i < n; i++) {
        ring_destroy(&L.threads[i].ring);
    }
    atomic_store(&L.nthreads, 0);
    atomic_store(&L.reserved, 0);
    self = NULL; /* the caller's ring is gone; other threads have exited */
    if (L.fd != STDERR_FILENO) {
        close(L.fd);
        L.fd = STDERR_FILENO;
    }
    free(L.path);
    L.path = NULL;
    if (L.kfd >= 0) {
        close(L.kfd);
        L.kfd = -1;
    }
    free(L.kpath);
    L.kpath = NULL;
}

int
log_klog_setup(const char *path)
{
    if (path == NULL || path[0] == '\0') {
        return 0;
    }
    int fd = open_sink(path);
    if (fd < 0) {
        return fd;
    }
    L.kpath = strdup(path);
    if (L.kpath == NULL) {
        close(fd);
        return -ENOMEM;
    }
    L.kfd = fd;
    return 0;
}

void
log_set_level(enum log_level level)
{
    atomic_store_explicit(&L.level, (int)level, memory_order_relaxed);
}

enum log_level
log_get_level(void)
{
    return (enum log_level)atomic_load_explicit(&L.level, memory_order_relaxed);
}

int
log_thread_register(const char *name)
{
    /* Registration is rare (thread start), so a fetch-add on the count is all the locking needed:
     * the slot is filled before the count that makes it visible is published. */
    unsigned i = atomic_fetch_add(&L.reserved, 1);
    if (i >= LOG_MAX_THREADS) {
        return -ENOSPC;
    }
    struct log_thread *t = &L.threads[i];
    snprintf(t->name, sizeof(t->name), "%s", name);
    int rc = ring_create(&t->ring, LOG_RING_SIZE);
    if (rc < 0) {
        return rc;
    }
    /* Slots are published in order: wait for earlier registrations to publish theirs. */
    unsigned expect = i;
    while (!atomic_compare_exchange_weak_explicit(&L.nthreads, &expect, i + 1, memory_order_release,
                                                  memory_order_relaxed)) {
        expect = i;
    }
    self = t;
    return 0;
}

/* A line: timestamp, thread, "level: " (none for the command log: level NULL), the text. */
static size_t
format_line(char *out, size_t cap, const char *level, const char *fmt, va_list ap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n =
        snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s%s", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                 self ? self->name : "main", level ? level : "", level ? ": " : "");
    if (n < 0 || (size_t)n >= cap) {
        n = 0;
    }
    int m = vsnprintf(out + n, cap - (size_t)n, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > cap - 2) {
        len = cap - 2; /* truncated: keep room for the newline */
    }
    out[len++] = '\n';
    out[len] = '\0';
    return len;
}

static void
write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return; /* nowhere left to report a failing log sink */
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Queue a formatted line on the caller's ring (mark: KLOG_MARK or 0), or write it at once. */
static void
emit(char mark, const char *line, size_t len)
{
    if (self == NULL || self->ring == NULL) {
        /* Only unregistered threads (main before start-up) touch the sinks from here. */
        write_all(mark ? L.kfd : L.fd, line, len);
        return;
    }
    size_t skip = mark ? 1 : 0;
    char *rec = malloc(len + 1 + skip);
    if (rec != NULL) {
        rec[0] = mark;
        memcpy(rec + skip, line, len + 1);
    }
    if (rec == NULL || !ring_push(self->ring, rec)) {
        free(rec);
        atomic_fetch_add_explicit(&L.dropped, 1, memory_order_relaxed);
        return;
    }
    ring_publish(self->ring);
}

void
log_write(enum log_level level, const char *fmt, ...)
{
    if ((int)level > atomic_load_explicit(&L.level, memory_order_relaxed)) {
        return;
    }
    char line[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    size_t len = format_line(line, sizeof(line), log_level_names[level], fmt, ap);
    va_end(ap);
    emit(0, line, len);
}

void
log_klog(const char *fmt, ...)
{
    if (L.kfd < 0) {
        return;
    }
    char line[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    size_t len = format_line(line, sizeof(line), NULL, fmt, ap);
    va_end(ap);
    emit(KLOG_MARK, line, len);
}

uint64_t
log_klog_lines(void)
{
    return atomic_load_explicit(&L.klines, memory_order_relaxed);
}

/* Reopen one sink at path; on failure keep the old descriptor and say so in the main log. */
static void
reopen_sink(int *fdp, const char *path)
{
    int fd = open_sink(path);
    if (fd < 0) {
        char msg[256];
        int n = snprintf(msg, sizeof(msg), "log: cannot reopen %s: %s (keeping the old file)\n",
                         path, strerror(-fd));
        write_all(L.fd, msg, (size_t)n);
        return;
    }
    close(*fdp);
    *fdp = fd;
}

static void
reopen_if_asked(void)
{
    if (!atomic_exchange(&L.reopen, false)) {
        return;
    }
    if (L.path != NULL) {
        reopen_sink(&L.fd, L.path);
    }
    if (L.kpath != NULL && L.kfd >= 0) {
        reopen_sink(&L.kfd, L.kpath);
    }
}

unsigned
log_flush(void)
{
    reopen_if_asked();
    unsigned written = 0;
    unsigned n = atomic_load_explicit(&L.nthreads, memory_order_acquire);
    for (unsigned i = 0; i < n; i++) {
        struct ring *r = L.threads[i].ring;
        char *rec;
        while ((rec = ring_pop(r)) != NULL) {
            if (rec[0] == KLOG_MARK) {
                write_all(L.kfd, rec + 1, strlen(rec + 1));
                atomic_fetch_add_explicit(&L.klines, 1, memory_order_relaxed);
            } else {
                write_all(L.fd, rec, strlen(rec));
            }
            free(rec);
            written++;
        }
        ring_release(r);
    }
    return written;
}

void
log_request_reopen(void)
{
    atomic_store(&L.reopen, true);
}

uint64_t
log_dropped(void)
{
    return atomic_load_explicit(&L.dropped, memory_order_relaxed);
}
