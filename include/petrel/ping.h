/*
 * ping: the pingserver protocol (as Pelikan's): "PING\r\n" -> "PONG\r\n", "QUIT\r\n" closes, any
 * other line -> "ERROR\r\n". Pure parsing and composing: no I/O, no state, any thread.
 */
#ifndef PETREL_PING_H
#define PETREL_PING_H

#include "petrel/buf.h"

#include <stddef.h>

#define PING_LINE_MAX 1024 /* a longer line without a newline has lost its framing */

enum ping_req {
    PING_NEED_MORE = 0, /* no complete line yet */
    PING_PING,
    PING_QUIT,
    PING_UNKNOWN,  /* a complete line that is not a command: answer ERROR */
    PING_TOO_LONG, /* PING_LINE_MAX bytes and no newline: answer ERROR and close */
};

/**
 * Parse one request line from p[0..n). Lines end in "\r\n" (a bare "\n" is accepted too).
 * Sets *consumed to the line's length including its terminator (0 for NEED_MORE/TOO_LONG).
 */
enum ping_req ping_parse(const char *p, size_t n, size_t *consumed);

/** Append "PONG\r\n". Returns 0 or the buf_append() error. */
int ping_compose_pong(struct buf *out);

/** Append "ERROR\r\n". Returns 0 or the buf_append() error. */
int ping_compose_error(struct buf *out);

#endif /* PETREL_PING_H */
