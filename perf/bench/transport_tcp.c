/* transport_tcp: plain TCP connections for the load generator, and what TLS shares with it. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport.h"

void
transport_init(struct transport *t, const struct transport_ops *ops, void *env)
{
    t->ops = ops;
    t->fd = -1;
    t->want_write = false;
    t->ctx = NULL;
    t->env = env;
}

int
transport_resolve(const char *host, const char *port, struct addrinfo **res)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};

    int rc = getaddrinfo(host, port, &hints, res);
    if (rc != 0) {
        fprintf(stderr, "petrel-bench: cannot resolve %s:%s: %s\n", host, port, gai_strerror(rc));
        return -EHOSTUNREACH;
    }
    return 0;
}

/*
 * Without TRANSPORT_NOWAIT connecting blocks: the load's connections are opened before the
 * clock starts, and a blocking connect reports a refused or unreachable server at once and
 * plainly. The connect load (--connect-rate) opens with TRANSPORT_NOWAIT, because a connect
 * that waits for a full listen backlog would stall every other connection of its thread.
 */
int
transport_connect(const struct addrinfo *ai, unsigned flags)
{
    int one = 1, err = -ECONNREFUSED;
    bool nowait = (flags & TRANSPORT_NOWAIT) != 0;

    for (; ai != NULL; ai = ai->ai_next) {
        int type = ai->ai_socktype | SOCK_CLOEXEC | (nowait ? SOCK_NONBLOCK : 0);
        int fd = socket(ai->ai_family, type, ai->ai_protocol);
        if (fd < 0) {
            err = -errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && !(nowait && errno == EINPROGRESS)) {
            err = -errno;
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (!nowait && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
            err = -errno;
            close(fd);
            continue;
        }
        return fd;
    }
    return err;
}

static int
tcp_open(struct transport *t, const struct addrinfo *ai, unsigned flags)
{
    int fd = transport_connect(ai, flags);
    if (fd < 0) {
        return fd;
    }
    t->fd = fd;
    t->want_write = false;
    return 0;
}

static ssize_t
tcp_read(struct transport *t, void *p, size_t n)
{
    ssize_t r = recv(t->fd, p, n, 0);
    if (r < 0) {
        t->want_write = false;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
    return r;
}

static ssize_t
tcp_write(struct transport *t, const void *p, size_t n)
{
    /* MSG_NOSIGNAL: a server that goes away is an error to count, not a SIGPIPE. */
    ssize_t r = send(t->fd, p, n, MSG_NOSIGNAL);
    if (r < 0) {
        t->want_write = true;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
    return r;
}

static const char *
tcp_describe(struct transport *t, int err, char *out, size_t n)
{
    snprintf(out, n, "%s", strerror(-err));
    return out;
}

static void
tcp_close(struct transport *t)
{
    if (t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
    }
}

const struct transport_ops transport_tcp = {
    .name = "tcp",
    .open = tcp_open,
    .read = tcp_read,
    .write = tcp_write,
    .describe = tcp_describe,
    .close = tcp_close,
    .release = tcp_close,
};
