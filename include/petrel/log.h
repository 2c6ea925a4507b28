/*
 * log: leveled, timestamped log lines that name the thread, written without ever blocking a
 * worker on I/O.
 *
 * A thread that calls log_thread_register() gets its own SPSC ring; its log lines are formatted
 * into a heap record and pushed there (dropped and counted if the ring is full). One thread, the
 * admin thread while it runs, calls log_flush() to write every ring's records to the sink (stderr
 * or a file). Unregistered threads (main before start-up) write to the sink directly.
 *
 * Lines look like: 2026-11-23T20:11:05.123Z worker-1 warn: connection 7: read: Connection reset
 */
#ifndef PETREL_LOG_H
#define PETREL_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level {
    LOG_ERROR = 0,
    LOG_WARN,
    LOG_INFO,
    LOG_VERBOSE, /* -v: per-connection events */
    LOG_DEBUG,   /* -vv: per-request detail */
};

/** Level names, in enum order, NULL-terminated (for the config's enum option). */
extern const char *const log_level_names[];

/**
 * Set up the sink: path NULL or "" or "stderr" for stderr, else a file opened for append.
 * Main thread, before other threads start. Returns 0 or a negative errno.
 */
int log_setup(enum log_level level, const char *path);

/** Whether the log goes to stderr (no log file). Any thread. */
bool log_to_stderr(void);

/** Flush everything, free every ring and close the file. Main thread, after threads stopped. */
void log_teardown(void);

/** Change the level at run time (any thread). */
void log_set_level(enum log_level level);

/** Current level (any thread). */
enum log_level log_get_level(void);

/**
 * Give the calling thread a name for its lines and a private ring (the thread's lines then never
 * block on I/O). Call once at thread start. Returns 0 or a negative errno (then the thread's lines
 * are written directly).
 */
int log_thread_register(const char *name);

/** Write a line if level is enabled. Any thread. */
void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/**
 * Write every queued record to the sink, and reopen the file first if log_request_reopen() was
 * called. Called by exactly one thread at a time (the admin thread while it runs, else main).
 * Returns the number of records written.
 */
unsigned log_flush(void);

/** Ask the flushing thread to reopen the log file (after rotation): async-signal-safe. */
void log_request_reopen(void);

/** Lines dropped because a thread's ring was full. */
uint64_t log_dropped(void);

/**
 * Open the command log (sampled requests, see rt_klog_sample()): path "" for none. Main thread,
 * after log_setup() and before other threads start. Returns 0 or a negative errno. The same
 * flusher writes it, log_request_reopen() reopens it too, and log_teardown() closes it.
 */
int log_klog_setup(const char *path);

/**
 * Append one line to the command log, through the calling thread's ring (never blocks; a full
 * ring drops the line and counts it in log_dropped()). Lines look like
 * "2026-11-23T20:11:05.123Z worker-1 <text>". Any thread; nothing happens without a command log.
 */
void log_klog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** Lines written to the command log so far. Any thread. */
uint64_t log_klog_lines(void);

#define log_error(...)   log_write(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)    log_write(LOG_WARN, __VA_ARGS__)
#define log_info(...)    log_write(LOG_INFO, __VA_ARGS__)
#define log_verbose(...) log_write(LOG_VERBOSE, __VA_ARGS__)
#define log_debug(...)   log_write(LOG_DEBUG, __VA_ARGS__)

#endif /* PETREL_LOG_H */
