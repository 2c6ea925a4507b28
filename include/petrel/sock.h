/*
 * sock: listening sockets and socket options. Blocking set-up calls; main thread at start-up.
 */
#ifndef PETREL_SOCK_H
#define PETREL_SOCK_H

#include <stddef.h>
#include <stdint.h>

/**
 * Listen on TCP port `port` (0: an ephemeral port chosen by the kernel) of every address in
 * `hosts`, a comma-separated list of names or numeric IPv4/IPv6 addresses ("" or NULL: every
 * interface, IPv4 and IPv6). IPv6 sockets are IPV6_V6ONLY so both families can share a port.
 * Sockets are non-blocking, close-on-exec, SO_REUSEADDR. Appends up to `max - *n` descriptors to
 * fds and advances *n. On error closes what it opened, writes a message naming the address to
 * err and returns a negative errno.
 */
int sock_listen_tcp(const char *hosts, uint16_t port, int backlog, int *fds, size_t max, size_t *n,
                    char *err, size_t errlen);

/**
 * Listen on a unix stream socket at path, with permissions mode (e.g. 0700). A stale socket file
 * left by a previous run is replaced. Returns the descriptor or a negative errno (message in err).
 */
int sock_listen_unix(const char *path, unsigned mode, int backlog, char *err, size_t errlen);

/** Write "addr:port" ("[addr]:port" for IPv6, or the unix path) of a bound socket into out.
 * Returns its address family (AF_INET, AF_INET6, AF_UNIX), or 0 if it has none ("?"). */
int sock_name(int fd, char *out, size_t len);

/** The same for the peer of a connected socket ("unnamed" for a unix client). */
int sock_peer_name(int fd, char *out, size_t len);

/** Set TCP_NODELAY on a TCP socket; other families are left alone. Returns 0 or -errno. */
int sock_nodelay(int fd);

#endif /* PETREL_SOCK_H */
