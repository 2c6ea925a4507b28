/*
 * connio: the bytes of one connection, over its transport: read and write buffers and the
 * readiness last seen. Worker connections (conn.c) and admin connections (admin.c) both move
 * their bytes through it; neither calls recv() or send().
 *
 * Readiness is edge-triggered: `readable` and `writable` say whether the transport may still
 * have input or room; they are set from epoll events and cleared when a call says -EAGAIN (or a
 * short read left nothing inside the transport: with edge triggering, new bytes raise a new
 * event).
 *
 * Threads: owned by the thread that owns the connection. Memory: the buffers are heap memory
 * owned by the connio (see buf.h); the transport's state is freed by connio_close().
 */
#ifndef PETREL_CONNIO_H
#define PETREL_CONNIO_H

#include "petrel/buf.h"
#include "petrel/transport.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct connio {
    struct transport t;
    struct buf rbuf;
    struct buf wbuf;
    bool readable; /* input may be waiting in the transport */
    bool writable; /* the transport may take output */
    bool eof;      /* the peer shut down its side (read returned 0) */
    bool hup;      /* epoll reported a hang-up or error (eof may not have been read yet) */
};

/** Record epoll's events for the connection. */
void connio_events(struct connio *io, unsigned events);

/**
 * Read once into the room buf_avail(&io->rbuf) (the caller made some). Returns the bytes read,
 * 0 when nothing came (the transport would block, or the stream ended: io->eof), or a negative
 * errno when the connection is broken.
 */
ssize_t connio_read(struct connio *io);

/**
 * Send from io->wbuf while the transport takes it, until about max bytes have left (SIZE_MAX:
 * no bound). A call may exceed max by one write of at most CONNIO_WRITE_MIN bytes. Returns the
 * bytes sent (0 if none could be), or a negative errno when the connection is broken. io->writable
 * stays set when max, not the transport, stopped it.
 */
ssize_t connio_flush(struct connio *io, size_t max);

/* The least one write offers the transport: a TLS record's payload, so that a record sealed by
 * an earlier call that could not send it is offered again whole (see tls_writev). */
#define CONNIO_WRITE_MIN (16u * 1024)

/** Close the transport and free both buffers. */
void connio_close(struct connio *io);

#endif /* PETREL_CONNIO_H */
