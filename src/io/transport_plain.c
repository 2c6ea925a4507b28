/*
 * transport_plain: stream sockets as they are; the contract is in include/petrel/transport.h.
 */
#include "petrel/transport.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

static ssize_t
plain_read(struct transport *t, void *p, size_t n)
{
    for (;;) {
        ssize_t r = recv(t->fd, p, n, 0);
        if (r >= 0) {
            return r;
        }
        if (errno != EINTR) {
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
    }
}

static ssize_t
plain_writev(struct transport *t, const struct iovec *iov, int iovcnt)
{
    struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    for (;;) {
        /* One buffer, the usual case, goes with send(): the kernel's sendmsg path copies and
         * checks the message header and the iovec array first, which costs more per call. */
        ssize_t r = iovcnt == 1 ? send(t->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL)
                                : sendmsg(t->fd, &mh, MSG_NOSIGNAL);
        if (r >= 0) {
            return r;
        }
        if (errno != EINTR) {
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
    }
}

static size_t
plain_pending(const struct transport *t)
{
    (void)t;
    return 0;
}

static void
plain_close(struct transport *t)
{
    if (t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
    }
}

const struct transport_ops transport_plain = {
    .name = "tcp",
    .read = plain_read,
    .writev = plain_writev,
    .pending = plain_pending,
    .shutdown = NULL,
    .close = plain_close,
};

void
transport_plain_init(struct transport *t, int fd)
{
    *t = (struct transport){.ops = &transport_plain, .fd = fd, .ctx = NULL};
}
