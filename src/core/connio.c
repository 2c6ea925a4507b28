/*
 * connio: a connection's bytes over its transport. Contract in connio.h.
 */
#include "connio.h"

#include <errno.h>
#include <sys/epoll.h>

void
connio_events(struct connio *io, unsigned events)
{
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        io->hup = true;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        io->readable = true;
    }
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
        io->writable = true;
    }
}

ssize_t
connio_read(struct connio *io)
{
    size_t want = buf_avail(&io->rbuf);
    ssize_t n = io->t.ops->read(&io->t, buf_wptr(&io->rbuf), want);
    if (n > 0) {
        buf_commit(&io->rbuf, (size_t)n);
        /* A short read emptied the socket, unless the transport keeps bytes of its own; nor is
         * the end of a stream whose hang-up was reported seen yet: read on for it. */
        if ((size_t)n < want && !io->hup && io->t.ops->pending(&io->t) == 0) {
            io->readable = false;
        }
        return n;
    }
    if (n == 0) {
        io->eof = true;
        io->readable = false;
        return 0;
    }
    if (n == -EAGAIN) {
        /* A transport may stop with bytes of its own still to go (TLS: a call that met only
         * records without data for us): the socket will not say so again. */
        io->readable = io->t.ops->pending(&io->t) > 0;
        return 0;
    }
    return n;
}

ssize_t
connio_flush(struct connio *io, size_t max)
{
    size_t sent = 0;
    while (buf_len(&io->wbuf) > 0 && io->writable && sent < max) {
        size_t len = buf_len(&io->wbuf);
        size_t left = max - sent > CONNIO_WRITE_MIN ? max - sent : CONNIO_WRITE_MIN;
        struct iovec iov = {.iov_base = buf_rptr(&io->wbuf), .iov_len = len < left ? len : left};
        ssize_t n = io->t.ops->writev(&io->t, &iov, 1);
        if (n > 0) {
            buf_consume(&io->wbuf, (size_t)n);
            sent += (size_t)n;
        } else if (n == -EAGAIN || n == 0) {
            io->writable = false; /* EPOLLOUT will say when there is room again */
        } else {
            return n;
        }
    }
    return (ssize_t)sent;
}

void
connio_close(struct connio *io)
{
    if (io->t.ops != NULL && io->t.ops->shutdown != NULL) {
        io->t.ops->shutdown(&io->t);
    }
    if (io->t.ops != NULL) {
        io->t.ops->close(&io->t); /* also leaves the epoll set */
    }
    buf_free(&io->rbuf);
    buf_free(&io->wbuf);
}
