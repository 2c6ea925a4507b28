/* sock: listening sockets. Contract in include/petrel/sock.h */
#include "petrel/sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int
listen_addr(const struct addrinfo *ai, int backlog)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        return -errno;
    }
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6) {
        /* Otherwise "::" would also take the IPv4 port and the 0.0.0.0 socket would fail. */
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

static int
listen_host(const char *host, uint16_t port, int backlog, int *fds, size_t max, size_t *n,
            char *err, size_t errlen)
{
    char service[8];
    snprintf(service, sizeof(service), "%u", port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_PASSIVE | AI_NUMERICSERV | AI_ADDRCONFIG,
    };
    struct addrinfo *res;
    int gai = getaddrinfo(host, service, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve listen address '%s': %s", host ? host : "*",
                 gai_strerror(gai));
        return -EINVAL;
    }
    int rc = 0;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        if (*n == max) {
            snprintf(err, errlen, "too many listen addresses (at most %zu)", max);
            rc = -E2BIG;
            break;
        }
        int fd = listen_addr(ai, backlog);
        if (fd < 0) {
            char name[INET6_ADDRSTRLEN] = "?";
            void *a = ai->ai_family == AF_INET6
                          ? (void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
                          : (void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr;
            inet_ntop(ai->ai_family, a, name, sizeof(name));
            snprintf(err, errlen, "cannot listen on %s%s%s port %u: %s%s",
                     ai->ai_family == AF_INET6 ? "[" : "", name,
                     ai->ai_family == AF_INET6 ? "]" : "", port, strerror(-fd),
                     fd == -EADDRINUSE ? " (another process listens there, a memcached "
                                         "service perhaps: stop it, or choose another port)"
                                       : "");
            rc = fd;
            break;
        }
        fds[(*n)++] = fd;
        /* With an ephemeral port, the other families of the same host should share it. */
        if (port == 0) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof(ss);
            if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
                port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                      : ((struct sockaddr_in *)&ss)->sin_port);
                for (struct addrinfo *b = ai->ai_next; b != NULL; b = b->ai_next) {
                    if (b->ai_family == AF_INET6) {
                        ((struct sockaddr_in6 *)b->ai_addr)->sin6_port = htons(port);
                    } else if (b->ai_family == AF_INET) {
                        ((struct sockaddr_in *)b->ai_addr)->sin_port = htons(port);
                    }
                }
            }
        }
    }
    freeaddrinfo(res);
    return rc;
}

int
sock_listen_tcp(const char *hosts, uint16_t port, int backlog, int *fds, size_t max, size_t *n,
                char *err, size_t errlen)
{
    size_t first = *n;
    int rc = 0;
    if (hosts == NULL || hosts[0] == '\0') {
        rc = listen_host(NULL, port, backlog, fds, max, n, err, errlen);
    } else {
        char *list = strdup(hosts);
        if (list == NULL) {
            return -ENOMEM;
        }
        char *save = NULL;
        for (char *h = strtok_r(list, ",", &save); h != NULL && rc == 0;
             h = strtok_r(NULL, ",", &save)) {
            /* Accept "[::1]" as well as "::1". */
            size_t len = strlen(h);
            if (len >= 2 && h[0] == '[' && h[len - 1] == ']') {
                h[len - 1] = '\0';
                h++;
            }
            rc = listen_host(h, port, backlog, fds, max, n, err, errlen);
        }
        free(list);
    }
    if (rc < 0) {
        while (*n > first) {
            close(fds[--(*n)]);
        }
    }
    return rc;
}

int
sock_listen_unix(const char *path, unsigned mode, int backlog, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "unix socket path too long: %s", path);
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int rc = -errno;
        snprintf(err, errlen, "unix socket %s: %s", path, strerror(-rc));
        return rc;
    }
    /* A socket file left by a crash would make bind fail; replace only sockets, never files. */
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        unlink(path);
    }
    mode_t old = umask(0777 & ~mode);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc < 0 || listen(fd, backlog) < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot listen on unix socket %s: %s", path, strerror(-rc));
        close(fd);
        return rc;
    }
    return fd;
}

/* "addr:port", "[addr]:port" or the unix path of ss; returns its family, or 0. */
static int
format_addr(const struct sockaddr_storage *ss, char *out, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    switch (ss->ss_family) {
    case AF_INET: {
        const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s->sin_addr, host, sizeof(host));
        snprintf(out, len, "%s:%u", host, ntohs(s->sin_port));
        return AF_INET;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof(host));
        snprintf(out, len, "[%s]:%u", host, ntohs(s->sin6_port));
        return AF_INET6;
    }
    case AF_UNIX:
        snprintf(out, len, "%s", ((const struct sockaddr_un *)ss)->sun_path);
        return AF_UNIX;
    default:
        snprintf(out, len, "?");
        return 0;
    }
}

int
sock_name(int fd, char *out, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        snprintf(out, len, "?");
        return 0;
    }
    return format_addr(&ss, out, len);
}

int
sock_peer_name(int fd, char *out, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0) {
        snprintf(out, len, "?");
        return 0;
    }
    if (ss.ss_family == AF_UNIX && sl <= offsetof(struct sockaddr_un, sun_path)) {
        snprintf(out, len, "unnamed"); /* a unix client's end has no path */
        return AF_UNIX;
    }
    return format_addr(&ss, out, len);
}

int
sock_nodelay(int fd)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
        /* Unix sockets have no Nagle to disable. */
        return errno == EOPNOTSUPP || errno == ENOPROTOOPT ? 0 : -errno;
    }
    return 0;
}
