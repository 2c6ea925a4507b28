/*
 * transport: how a server connection moves bytes, below the connection layer. Plain TCP (and
 * unix sockets) is one transport; TLS will be another, whose read may need the socket writable
 * and whose write may need it readable: so every call reports -EAGAIN and leaves waiting for
 * readiness to the caller's event loop, which watches t->fd for both directions.
 *
 * Nothing above a transport calls recv() or send(). The connection layer (src/core/conn.c) reads
 * until a call says -EAGAIN, not until a short read: a transport that holds decrypted bytes
 * says so with pending(), so a read event drains them all.
 *
 * Threads: a transport is used only by the thread that owns its connection (a worker, or the
 * admin thread); it may be set up on another thread (the acceptor) before the hand-off.
 * Memory: struct transport is embedded in its connection; a transport's own state, if any, is
 * in ctx and freed by close().
 */
#ifndef PETREL_TRANSPORT_H
#define PETREL_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

struct transport;

struct transport_ops {
    const char *name; /* "tcp", "tls": for logs and stats */
    /** Read up to n bytes: > 0 read, 0 at the end of the stream, -EAGAIN (wait for readiness),
     * or another negative errno (the connection is broken). */
    ssize_t (*read)(struct transport *t, void *p, size_t n);
    /** Write from iovcnt buffers in order: bytes taken (> 0), -EAGAIN, or a negative errno. */
    ssize_t (*writev)(struct transport *t, const struct iovec *iov, int iovcnt);
    /** Bytes the transport has already received and will return without waiting for the
     * socket (decrypted records); 0 for TCP. */
    size_t (*pending)(const struct transport *t);
    /** Whether the transport holds no bytes of its own from the socket (none it has read and
     * not yet gone through): then a read of the socket made for it elsewhere (a batch of the
     * event loop's reads) may be handed in with feed(). Optional, with feed. */
    bool (*may_feed)(const struct transport *t);
    /** n > 0 bytes read from the socket on the transport's behalf (may_feed() said yes), at p,
     * which stays valid until the next read() returns: that read takes them first and keeps
     * what it leaves. full: the read filled its room, so the socket may hold more. */
    void (*feed)(struct transport *t, const unsigned char *p, size_t n, bool full);
    /** For a batched send: seal [p, p + n) into output of the transport's own, without
     * sending it; the caller sends what sealed() shows and says so with sent(). Returns n, 0 when
     * it cannot now (more than it seals at once, or earlier output of its own still to leave:
     * then writev()), or a negative errno. The n bytes stay the caller's until sent() reports
     * them. Optional, with sealed and sent. */
    ssize_t (*seal)(struct transport *t, const void *p, size_t n);
    /** The sealed bytes still to send: *p, and how many. */
    size_t (*sealed)(const struct transport *t, const void **p);
    /** k of the sealed bytes were sent. Returns seal()'s n once all have left, else 0: the rest
     * leaves with the next writev(), which then returns that n. */
    size_t (*sent)(struct transport *t, size_t k);
    /** Say goodbye properly (TLS close_notify); best effort, never blocks. Optional. */
    void (*shutdown)(struct transport *t);
    /** Close the socket and free ctx. t->fd is -1 afterwards. */
    void (*close)(struct transport *t);
};

struct transport {
    const struct transport_ops *ops;
    int fd;    /* the socket the event loop waits on; -1 once closed */
    void *ctx; /* per-connection transport state (a TLS session); NULL for TCP */
};

/** Stream sockets (TCP, unix) as they are. */
extern const struct transport_ops transport_plain;

/** Make t the plain transport over connected socket fd (non-blocking). */
void transport_plain_init(struct transport *t, int fd);

#endif /* PETREL_TRANSPORT_H */
