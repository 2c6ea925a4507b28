/* sock: listening sockets. Contract in include/petrel/sock.h */
#include "petrel/sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
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

/* memcached's per-address prefixes: TLS per listener, protocol per listener, listener tags. */
static const char *const mc_prefixes[] = {"notls:", "mtls:", "btls:", "proto[", "tag[", "tag_"};

/* Parse the address a[0..len) of a listen list into ep. Returns 1, or -EINVAL with why. */
static int
endpoint_parse(const char *a, size_t len, struct sock_endpoint *ep, char *why, size_t whylen)
{
    const char *end = a + len;
    const char *host = a, *host_end, *colon;
    int q = len < 80 ? (int)len : 80; /* how much of the address a message quotes */

    for (size_t i = 0; i < sizeof(mc_prefixes) / sizeof(*mc_prefixes); i++) {
        if (len > strlen(mc_prefixes[i]) &&
            strncmp(a, mc_prefixes[i], strlen(mc_prefixes[i])) == 0) {
            snprintf(why, whylen,
                     "'%.*s': memcached's per-address prefixes (notls:, mtls:, btls:, "
                     "proto[...]:, tag[...]:) are not supported",
                     q, a);
            return -EINVAL;
        }
    }
    if (a[0] == '[') {
        /* RFC 3986's form, as memcached reads it: [IPV6] or [IPV6]:PORT. */
        const char *close = memchr(a, ']', len);
        if (close == NULL) {
            snprintf(why, whylen, "'%.*s': no ']' closes the IPv6 address", q, a);
            return -EINVAL;
        }
        host = a + 1;
        host_end = close;
        if (host == host_end) {
            snprintf(why, whylen, "'%.*s': no address between '[' and ']'", q, a);
            return -EINVAL;
        }
        if (close + 1 < end && close[1] != ':') {
            snprintf(why, whylen, "'%.*s': only ':PORT' may follow ']'", q, a);
            return -EINVAL;
        }
        colon = close + 1 < end ? close + 1 : NULL;
    } else {
        /* One ':' separates the port; more make an IPv6 address without brackets, and no port. */
        colon = memchr(a, ':', len);
        if (colon != NULL && memchr(colon + 1, ':', (size_t)(end - colon - 1)) != NULL) {
            colon = NULL;
        }
        host_end = colon != NULL ? colon : end;
        if (host == host_end) {
            snprintf(why, whylen, "'%.*s': no host before ':' (every interface is *:PORT)", q, a);
            return -EINVAL;
        }
    }
    ep->port = -1;
    if (colon != NULL) {
        const char *d = colon + 1;
        int dl = (int)(end - d) < 20 ? (int)(end - d) : 20;
        unsigned long port = 0;
        if (d == end) {
            snprintf(why, whylen, "'%.*s': no port after ':'", q, a);
            return -EINVAL;
        }
        for (const char *c = d; c < end; c++) {
            if (*c < '0' || *c > '9') {
                snprintf(why, whylen, "'%.*s': '%.*s' is not a port number", q, a, dl, d);
                return -EINVAL;
            }
            port = port * 10 + (unsigned long)(*c - '0');
            if (port > 65535) {
                snprintf(why, whylen, "'%.*s': port %.*s is out of range (0..65535)", q, a, dl, d);
                return -EINVAL;
            }
        }
        ep->port = (int)port;
    }
    size_t hl = (size_t)(host_end - host);
    if (hl > SOCK_HOST_MAX) {
        snprintf(why, whylen, "'%.*s...': the host is longer than %d bytes", q, a, SOCK_HOST_MAX);
        return -EINVAL;
    }
    memcpy(ep->host, host, hl);
    ep->host[hl] = '\0';
    if (strcmp(ep->host, "*") == 0) {
        ep->host[0] = '\0';
    }
    return 1;
}

int
sock_endpoint_next(const char **cursor, struct sock_endpoint *ep, char *why, size_t whylen)
{
    const char *p = *cursor + strspn(*cursor, ",;");
    size_t len = strcspn(p, ",;");
    *cursor = p + len;
    return len == 0 ? 0 : endpoint_parse(p, len, ep, why, whylen);
}

/* The port ep listens on under ports. */
static uint16_t
endpoint_port(const struct sock_endpoint *ep, uint16_t port, enum sock_ports ports)
{
    return ports == SOCK_PORT_OWN && ep->port >= 0 ? (uint16_t)ep->port : port;
}

/* True if an address of hosts before the index-th listens where ep does. */
static bool
listed_before(const char *hosts, size_t index, const struct sock_endpoint *ep, uint16_t port,
              enum sock_ports ports)
{
    const char *c = hosts;
    struct sock_endpoint e;
    for (size_t i = 0; i < index && sock_endpoint_next(&c, &e, NULL, 0) == 1; i++) {
        if (strcmp(e.host, ep->host) == 0 &&
            endpoint_port(&e, port, ports) == endpoint_port(ep, port, ports)) {
            return true;
        }
    }
    return false;
}

typedef int (*endpoint_fn)(void *arg, const char *host, uint16_t port, char *err, size_t errlen);

/* Call fn once for every (host, port) that hosts, port and ports listen on; NULL host: every
 * interface. Stops at, and returns, the first error. */
static int
each_endpoint(const char *hosts, uint16_t port, enum sock_ports ports, endpoint_fn fn, void *arg,
              char *err, size_t errlen)
{
    if (hosts == NULL || hosts[0] == '\0') {
        return fn(arg, NULL, port, err, errlen);
    }
    const char *c = hosts;
    struct sock_endpoint ep;
    char why[256];
    int rc;
    for (size_t i = 0; (rc = sock_endpoint_next(&c, &ep, why, sizeof(why))) == 1; i++) {
        if (listed_before(hosts, i, &ep, port, ports)) {
            continue;
        }
        rc = fn(arg, ep.host[0] != '\0' ? ep.host : NULL, endpoint_port(&ep, port, ports), err,
                errlen);
        if (rc < 0) {
            return rc;
        }
    }
    if (rc < 0) {
        snprintf(err, errlen, "listen address %s", why);
    }
    return rc;
}

/* getaddrinfo() for a passive TCP socket on host (NULL: every interface) and port. */
static int
resolve(const char *host, uint16_t port, struct addrinfo **res, char *err, size_t errlen)
{
    char service[8];
    snprintf(service, sizeof(service), "%u", port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_PASSIVE | AI_NUMERICSERV | AI_ADDRCONFIG,
    };
    int gai = getaddrinfo(host, service, &hints, res);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve listen address '%s': %s", host ? host : "*",
                 gai_strerror(gai));
        return -EINVAL;
    }
    return 0;
}

struct listen_args {
    int backlog;
    int *fds;
    size_t max;
    size_t *n;
};

static int
listen_host(void *arg, const char *host, uint16_t port, char *err, size_t errlen)
{
    struct listen_args *a = arg;
    struct addrinfo *res;
    int rc = resolve(host, port, &res, err, errlen);
    if (rc < 0) {
        return rc;
    }
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        if (*a->n == a->max) {
            snprintf(err, errlen, "too many listen addresses (at most %zu)", a->max);
            rc = -E2BIG;
            break;
        }
        int fd = listen_addr(ai, a->backlog);
        if (fd < 0) {
            char name[INET6_ADDRSTRLEN] = "?";
            void *addr = ai->ai_family == AF_INET6
                             ? (void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
                             : (void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr;
            inet_ntop(ai->ai_family, addr, name, sizeof(name));
            snprintf(err, errlen, "cannot listen on %s%s%s port %u: %s%s",
                     ai->ai_family == AF_INET6 ? "[" : "", name,
                     ai->ai_family == AF_INET6 ? "]" : "", port, strerror(-fd),
                     fd == -EADDRINUSE ? " (another process listens there, a memcached "
                                         "service perhaps: stop it, or choose another port)"
                                       : "");
            rc = fd;
            break;
        }
        a->fds[(*a->n)++] = fd;
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
sock_listen_tcp(const char *hosts, uint16_t port, enum sock_ports ports, int backlog, int *fds,
                size_t max, size_t *n, char *err, size_t errlen)
{
    size_t first = *n;
    struct listen_args a = {.backlog = backlog, .fds = fds, .max = max, .n = n};
    int rc = each_endpoint(hosts, port, ports, listen_host, &a, err, errlen);
    if (rc < 0) {
        while (*n > first) {
            close(fds[--(*n)]);
        }
    }
    return rc;
}

static int
count_host(void *arg, const char *host, uint16_t port, char *err, size_t errlen)
{
    size_t *n = arg;
    struct addrinfo *res;
    int rc = resolve(host, port, &res, err, errlen);
    if (rc < 0) {
        return rc;
    }
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        (*n)++;
    }
    freeaddrinfo(res);
    return 0;
}

int
sock_listen_count(const char *hosts, uint16_t port, enum sock_ports ports, size_t *n, char *err,
                  size_t errlen)
{
    return each_endpoint(hosts, port, ports, count_host, n, err, errlen);
}

int
sock_unix_check(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "unix socket path too long (%zu bytes, at most %zu): %s",
                 strlen(path), sizeof(sa.sun_path) - 1, path);
        return -ENAMETOOLONG;
    }
    struct stat st;
    if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen,
                 "cannot listen on unix socket %s: a file that is not a socket is there", path);
        return -EEXIST;
    }
    /* bind() creates the socket file: its directory must exist. */
    char dir[sizeof(sa.sun_path)];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL) {
        slash[slash == dir ? 1 : 0] = '\0';
        int rc = stat(dir, &st) < 0 ? -errno : S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
        if (rc < 0) {
            snprintf(err, errlen, "cannot listen on unix socket %s: %s: %s", path, dir,
                     strerror(-rc));
            return rc;
        }
    }
    return 0;
}

int
sock_listen_unix(const char *path, unsigned mode, int backlog, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int rc = sock_unix_check(path, err, errlen);
    if (rc < 0) {
        return rc;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "unix socket %s: %s", path, strerror(-rc));
        return rc;
    }
    /* A socket file left by a crash would make bind fail; replace only sockets, never files. */
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        unlink(path);
    }
    mode_t old = umask(0777 & ~mode);
    rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
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
