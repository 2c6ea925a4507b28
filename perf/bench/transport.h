/*
 * transport: how a load-generator connection moves bytes — plain TCP (transport_tcp.c) or TLS
 * over mbedTLS (transport_tls.c).
 *
 * A TLS read may need the socket writable and a write may need it readable (a handshake step
 * or an alert in between), so read, write and handshake report -EAGAIN and say in
 * `want_write` which readiness they wait for; the caller's event loop waits for it and calls
 * again. A TLS transport may also hold plaintext it has already decrypted, which the socket no
 * longer announces: the caller asks pending() after a read that filled its buffer.
 *
 * Lifecycle: transport_init(), then open / read / write / close any number of times (a
 * transport that is opened again after close may resume its TLS session), then release.
 *
 * Threads: a connection's transport is used only by the client thread that owns it; so is its
 * `env` (per-thread TLS state). struct tls_shared is built by the main thread before the client
 * threads start and is read-only while they run.
 */
#ifndef PETREL_BENCH_TRANSPORT_H
#define PETREL_BENCH_TRANSPORT_H

#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define TRANSPORT_NOWAIT 1u /* open(): do not wait for the TCP connect (see open) */

#define TLS_MAX_CIPHERS 64

/** What --tls and the --tls-* options asked for; paths point into argv. */
struct tls_opts {
    bool enabled;
    bool resume;      /* reopened transports resume their last session */
    const char *ca;   /* verify the server against this CA file; NULL: no verification */
    const char *cert; /* client certificate (mTLS), with key */
    const char *key;  /* its private key */
    const char *name; /* server name for SNI and verification; NULL: the --server host */
    int ciphers[TLS_MAX_CIPHERS + 1]; /* mbedTLS suite ids, 0-terminated; empty: library's */
};

struct transport;

struct transport_ops {
    const char *name;
    /**
     * Connect to the first address of ai that accepts and leave the socket non-blocking.
     * Without TRANSPORT_NOWAIT the TCP connect is waited for, so a refused server is reported
     * here; with it the connect may still be in progress, and the first write (or handshake
     * step) returns -EAGAIN with want_write until it completes. Returns 0 or a negative errno.
     */
    int (*open)(struct transport *t, const struct addrinfo *ai, unsigned flags);
    /**
     * Advance the handshake: 0 once the connection is ready for data, -EAGAIN while it waits for
     * the socket (see want_write), or a negative errno (describe() says why). NULL for a
     * transport that has none; read and write also advance it.
     */
    int (*handshake)(struct transport *t);
    /** Read up to n bytes: > 0 read, 0 at end of stream, -EAGAIN, or another negative errno. */
    ssize_t (*read)(struct transport *t, void *p, size_t n);
    /**
     * Write up to n bytes: bytes written (> 0), -EAGAIN, or another negative errno. After
     * -EAGAIN the caller may append to its data but must offer the same first bytes again.
     */
    ssize_t (*write)(struct transport *t, const void *p, size_t n);
    /** Whether a read would return data now that the socket may not announce. NULL: never. */
    bool (*pending)(struct transport *t);
    /** Whether the last handshake resumed an earlier session. NULL: never. */
    bool (*resumed)(struct transport *t);
    /** Describe the failure err that the last call returned, in out (n bytes). */
    const char *(*describe)(struct transport *t, int err, char *out, size_t n);
    /** Close the connection, keeping what a reopen needs; safe on a closed transport. */
    void (*close)(struct transport *t);
    /** Close and release everything; the transport must be initialised again to be reused. */
    void (*release)(struct transport *t);
};

struct transport {
    const struct transport_ops *ops;
    int fd;          /* the socket the event loop waits on, -1 when closed */
    bool want_write; /* after -EAGAIN: waiting for the socket to be writable, not readable */
    void *ctx;       /* per-transport state (TLS session), NULL for TCP */
    void *env;       /* the owner thread's TLS state (transport_tls_thread_setup), or NULL */
};

/** TCP with TCP_NODELAY. */
extern const struct transport_ops transport_tcp;

/** TLS over TCP with mbedTLS 2.28 (TLS 1.2). */
extern const struct transport_ops transport_tls;

/** Prepare t for ops with the owner thread's env (NULL for TCP); it is closed. */
void transport_init(struct transport *t, const struct transport_ops *ops, void *env);

/**
 * Resolve host:port once for all connections of a run (main thread). Returns 0 with *res to be
 * released with freeaddrinfo(), or -EHOSTUNREACH with a message on stderr.
 */
int transport_resolve(const char *host, const char *port, struct addrinfo **res);

/**
 * Connect a socket to the first address of ai that takes it, non-blocking afterwards, with
 * TCP_NODELAY; with TRANSPORT_NOWAIT the connect may be in progress. Returns the socket or a
 * negative errno. Shared by the transports.
 */
int transport_connect(const struct addrinfo *ai, unsigned flags);

/**
 * Parse a --tls-ciphers list (names separated by ',' or ':', mbedTLS or IANA spelling:
 * TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256 or TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256) into
 * ids (0-terminated, at most TLS_MAX_CIPHERS). Returns 0, or -EINVAL with a message in err.
 */
int transport_tls_ciphers(const char *list, int *ids, char *err, size_t errlen);

struct tls_shared;
struct tls_thread;

/**
 * Load the CA, certificate and key that o names (main thread, before the client threads
 * start). Returns 0 with *out to release with transport_tls_teardown(), or a negative errno
 * with a message on stderr that names the option ("--tls-ca: cannot load '/x': ...").
 */
int transport_tls_setup(const struct tls_opts *o, const char *host, struct tls_shared **out);

/** Release what transport_tls_setup() built, after every thread's state; sets *s to NULL. */
void transport_tls_teardown(struct tls_shared **s);

/**
 * A client thread's TLS state: its own random generator and configuration, so that threads
 * share nothing writable. Called by the thread that will own it. Returns 0 or a negative errno.
 */
int transport_tls_thread_setup(const struct tls_shared *s, struct tls_thread **out);

/** Release a thread's TLS state after all of its transports are freed; sets *t to NULL. */
void transport_tls_thread_teardown(struct tls_thread **t);

#endif /* PETREL_BENCH_TRANSPORT_H */
