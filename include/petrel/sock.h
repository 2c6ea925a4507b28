/*
 * sock: listening sockets and socket options. Blocking set-up calls; main thread at start-up.
 */
#ifndef PETREL_SOCK_H
#define PETREL_SOCK_H

#include <stddef.h>
#include <stdint.h>

/* The longest host of a listen address accepted (a DNS name is at most 253 bytes). */
#define SOCK_HOST_MAX 255

/* One address of a listen list, as memcached's -l takes it. */
struct sock_endpoint {
    char host[SOCK_HOST_MAX + 1]; /* a name or a numeric address without its brackets; "" for
                                     every interface (memcached's "*") */
    int port;                     /* the address's own port, or -1: the caller's */
};

/**
 * The next address of a listen list, memcached's -l: addresses separated by ',' or ';' (empty
 * ones skipped), each HOST, HOST:PORT, [IPV6], [IPV6]:PORT, an IPv6 address without brackets
 * (more than one ':', no port) or "*" (every interface, also "*:PORT"). *cursor starts at the
 * list and is advanced past the address. Returns 1 with *ep set, 0 at the end of the list, or
 * -EINVAL with why saying what is wrong with the address, which it quotes ("'[::1': no ']'
 * closes the IPv6 address"). memcached's per-address prefixes (notls:, mtls:, btls:,
 * proto[...]:, tag[...]:) are refused. Any thread.
 */
int sock_endpoint_next(const char **cursor, struct sock_endpoint *ep, char *why, size_t whylen);

/* How sock_listen_tcp() and sock_listen_count() use the ports of a list's addresses. */
enum sock_ports {
    SOCK_PORT_OWN,  /* an address's own port replaces the given one; each address once */
    SOCK_PORT_HOST, /* every host of the list (each once) on the given port, whatever port its
                       address has: a second port (TLS, another protocol) on the same hosts */
};

/**
 * Listen on TCP port `port` (0: an ephemeral port chosen by the kernel) of every address in
 * `hosts`, a listen list as sock_endpoint_next() reads it ("" or NULL: every interface, IPv4 and
 * IPv6), with the addresses' own ports as `ports` says. IPv6 sockets are IPV6_V6ONLY so both
 * families can share a port. Sockets are non-blocking, close-on-exec, SO_REUSEADDR. Appends up to
 * `max - *n` descriptors to fds and advances *n. On error closes what it opened, writes a message
 * naming the address to err and returns a negative errno.
 */
int sock_listen_tcp(const char *hosts, uint16_t port, enum sock_ports ports, int backlog, int *fds,
                    size_t max, size_t *n, char *err, size_t errlen);

/**
 * What sock_listen_tcp() with the same hosts, port and ports would do up to its first bind:
 * parse the list and resolve every host, adding to *n the number of sockets it would open.
 * Returns 0, or -EINVAL with err as sock_listen_tcp() would write it. Opens nothing. Any thread.
 */
int sock_listen_count(const char *hosts, uint16_t port, enum sock_ports ports, size_t *n, char *err,
                      size_t errlen);

/**
 * Listen on a unix stream socket at path, with permissions mode (e.g. 0700). A stale socket file
 * left by a previous run is replaced. Returns the descriptor or a negative errno (message in err).
 */
int sock_listen_unix(const char *path, unsigned mode, int backlog, char *err, size_t errlen);

/**
 * What sock_listen_unix(path) would refuse before its bind, checked without creating anything: a
 * path too long for a socket address, a file there that is not a socket, a directory that does
 * not exist. Returns 0, or a negative errno with err as sock_listen_unix() would write it.
 */
int sock_unix_check(const char *path, char *err, size_t errlen);

/** Write "addr:port" ("[addr]:port" for IPv6, or the unix path) of a bound socket into out.
 * Returns its address family (AF_INET, AF_INET6, AF_UNIX), or 0 if it has none ("?"). */
int sock_name(int fd, char *out, size_t len);

/** The same for the peer of a connected socket ("unnamed" for a unix client). */
int sock_peer_name(int fd, char *out, size_t len);

/** Set TCP_NODELAY on a TCP socket; other families are left alone. Returns 0 or -errno. */
int sock_nodelay(int fd);

#endif /* PETREL_SOCK_H */
