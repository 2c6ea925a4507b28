/* transport_tcp: plain TCP connections for the load generator. */
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

/*
 * Connecting blocks: connections are opened before the clock starts, and a blocking connect
 * reports a refused or unreachable server at once and plainly.
 */
static int
tcp_open(struct transport *t, const char *host, const char *port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int one = 1, err = -ECONNREFUSED;

    t->fd = -1;
    t->ctx = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "petrel-bench: cannot resolve %s:%s: %s\n", host, port, gai_strerror(rc));
        return -EHOSTUNREACH;
    }
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = -errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            err = -errno;
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
            err = -errno;
            close(fd);
            continue;
        }
        t->fd = fd;
        break;
    }
    freeaddrinfo(res);
    return t->fd >= 0 ? 0 : err;
}

static ssize_t
tcp_read(struct transport *t, void *p, size_t n)
{
    ssize_t r = recv(t->fd, p, n, 0);
    if (r < 0) {
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
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
    return r;
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
    .close = tcp_close,
};
