/*
 * transport: how a load-generator connection moves bytes. Plain TCP now; TLS later is one more
 * struct transport_ops (its read may need the socket writable and vice versa, which is why
 * read and write report -EAGAIN and leave readiness to the caller's event loop).
 *
 * Threads: a connection's transport is used only by the client thread that owns it.
 */
#ifndef PETREL_BENCH_TRANSPORT_H
#define PETREL_BENCH_TRANSPORT_H

#include <stddef.h>
#include <sys/types.h>

struct transport;

struct transport_ops {
    const char *name;
    /** Connect to host:port and leave the socket non-blocking. Returns 0 or a negative errno. */
    int (*open)(struct transport *t, const char *host, const char *port);
    /** Read up to n bytes: > 0 read, 0 at end of stream, -EAGAIN, or another negative errno. */
    ssize_t (*read)(struct transport *t, void *p, size_t n);
    /** Write up to n bytes: bytes written (> 0), -EAGAIN, or another negative errno. */
    ssize_t (*write)(struct transport *t, const void *p, size_t n);
    /** Close the connection; safe on a transport that never opened. */
    void (*close)(struct transport *t);
};

struct transport {
    const struct transport_ops *ops;
    int fd;    /* the socket the event loop waits on, -1 when closed */
    void *ctx; /* per-transport state (TLS session), NULL for TCP */
};

/** TCP with TCP_NODELAY. */
extern const struct transport_ops transport_tcp;

#endif /* PETREL_BENCH_TRANSPORT_H */
