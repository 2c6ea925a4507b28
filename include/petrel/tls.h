/*
 * tls: the server side of TLS 1.2, with mbedTLS 2.28 (Debian 12's libmbedtls): a loaded set of
 * certificates and settings (struct tls_server), one connection's session (struct tls_session),
 * and the transport that moves a connection's bytes through its session once the handshake is
 * done (transport_tls, see transport.h).
 *
 * Threads and ownership:
 *   - A tls_server is built by the main thread (start-up, SIGHUP) and used for handshakes by
 *     one thread, the handshake thread: mbedTLS caches per-key state during the handshake
 *     (ECC tables), so a server's handshakes never run on two threads at once. It is
 *     reference-counted: every session holds a reference, since mbedTLS keeps a pointer to the
 *     configuration for the life of the connection; the last tls_server_put() frees it.
 *   - A session is made and handshaken on the handshake thread, then handed with its socket to
 *     a worker, which alone uses it from then on (renegotiation is refused, so after the
 *     handshake a session needs nothing shared but its server's reference count).
 *   - Randomness comes from a generator per thread (seeded from getrandom()), never shared.
 *
 * Memory: mbedTLS allocates both record buffers in full for every session (16.7 KB each in
 * Debian's build, 20 KiB each once rounded by the allocator), so a TLS connection costs about
 * TLS_SESSION_BYTES whatever it does. Callers count that figure (see docs/tls.md).
 */
#ifndef PETREL_TLS_H
#define PETREL_TLS_H

#include "petrel/transport.h"

#include <stdbool.h>
#include <stddef.h>

/* What one TLS session costs, rounded up: petrel_memory_allocated_bytes (jemalloc's
 * stats.allocated) grew by 45,127 bytes per connection over 1,000 established TLS connections
 * (P-256, session cache on); a handshake in progress holds a little more, its key exchange. */
#define TLS_SESSION_BYTES (46u * 1024)

enum tls_verify { TLS_VERIFY_NONE, TLS_VERIFY_OPTIONAL, TLS_VERIFY_REQUIRED };

/* The choices of --tls-verify, in enum order. */
extern const char *const tls_verify_names[];

struct tls_settings {
    const char *cert;          /* certificate chain, PEM (--tls-cert) */
    const char *key;           /* its private key, PEM (--tls-key) */
    const char *ca;            /* CAs that sign client certificates, PEM; "" for none */
    const char *ciphers;       /* mbedTLS suite names separated by ':' or ','; "" for ours */
    enum tls_verify verify;    /* client certificates */
    unsigned session_lifetime; /* seconds a session may be resumed; 0: no resumption */
};

struct tls_server;
struct tls_session;

/**
 * Load certificates and build a server. prev, if not NULL, is the server this one replaces: its
 * session tickets and cache carry over (sessions stay resumable across a certificate reload)
 * when neither checks client certificates and the lifetime is the same. Returns 0, or -EINVAL
 * with err naming the option and the file ("--tls-cert: cannot load '/etc/x.pem': ..."), or
 * -ENOMEM. Main thread (prev's handshakes may be running on the handshake thread: building
 * takes nothing from prev but a reference on its resumption state).
 */
int tls_server_new(const struct tls_settings *s, struct tls_server *prev, struct tls_server **out,
                   char *err, size_t errlen);

/** Take another reference; returns srv. Any thread. */
struct tls_server *tls_server_get(struct tls_server *srv);

/** Drop a reference (the caller's, or a session's); frees the server after the last. Any
 * thread. */
void tls_server_put(struct tls_server *srv);

/** One line on the certificate in use, for the log: subject and expiry. */
void tls_server_describe(const struct tls_server *srv, char *out, size_t len);

/* Why a handshake failed: each has a counter. */
enum tls_failure {
    TLS_FAIL_TIMEOUT,     /* not finished within --tls-handshake-timeout */
    TLS_FAIL_NOT_TLS,     /* the first byte was not a TLS handshake record */
    TLS_FAIL_PROTOCOL,    /* an alert, no common suite or version, a malformed message */
    TLS_FAIL_CERTIFICATE, /* the client's certificate was missing or not accepted */
    TLS_FAIL_CLOSED,      /* the peer closed or reset the connection */
    TLS_FAIL_COUNT
};

/* "timeout", "not_tls", ...: for logs and metric names. */
extern const char *const tls_failure_names[TLS_FAIL_COUNT];

/**
 * A session for connected socket fd (non-blocking), which it takes over: tls_session_free()
 * closes it. Takes a reference on srv. NULL when out of memory (fd is then the caller's).
 */
struct tls_session *tls_session_new(struct tls_server *srv, int fd);

/**
 * Advance the handshake as far as the socket allows. Returns 0 when it is complete, -EAGAIN
 * when it waits for the socket (either direction: watch both), or -EPROTO when it failed: then
 * *why says why and detail has mbedTLS's words.
 */
int tls_handshake(struct tls_session *s, enum tls_failure *why, char *detail, size_t len);

/** After the handshake: whether it resumed an earlier session, the suite, and the subject of
 * the client's certificate ("" without one). */
bool tls_session_resumed(const struct tls_session *s);
const char *tls_session_suite(const struct tls_session *s);
const char *tls_session_peer(const struct tls_session *s);

/** What ended an established session with -EPROTO, in mbedTLS's words ("" if nothing did). */
const char *tls_session_error(const struct tls_session *s);

/** The session's socket. */
int tls_session_fd(const struct tls_session *s);

/** Close the socket and free the session (and its reference on the server). */
void tls_session_free(struct tls_session *s);

/*
 * The transport over an established session: read decrypts every record already received (one
 * recv() per call, into a per-thread buffer); writev packs up to 16 KiB of its buffers into one
 * record. After a write the socket could not take whole, the caller must offer the same bytes
 * again (as with every transport: nothing is taken until it says so). Errors: -EPROTO for a
 * bad record or a refused renegotiation, -ECONNRESET and friends from the socket.
 */
extern const struct transport_ops transport_tls;

/** Make t the TLS transport over an established session, which it owns from now on. */
void transport_tls_init(struct transport *t, struct tls_session *s);

/** The session of a TLS transport (NULL for another transport). */
struct tls_session *transport_tls_session(const struct transport *t);

#endif /* PETREL_TLS_H */
