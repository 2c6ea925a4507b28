/*
 * handshake: the TLS handshake thread (handshake.c). Private to src/core.
 *
 * The acceptor hands it every socket accepted on a TLS listener (acceptor(w) -> handshake(r),
 * rt->hs_in); it runs each handshake non-blocking in its own epoll loop and gives the
 * established connection back (handshake(w) -> acceptor(r), rt->hs_out) as a struct handoff,
 * which the acceptor passes to a worker like any new connection. So a handshake, which costs
 * milliseconds of public-key arithmetic, never runs on a worker's request path, and a reconnect
 * storm is paid for by this thread, which runs under SCHED_IDLE: only when no worker wants the
 * CPU.
 *
 * Bounds: at most hs_max handshakes hold a session at once (each TLS_SESSION_BYTES, together a
 * quarter of buffer-memory), and at most START_MAX start per loop turn; when all are taken, the
 * one whose client has been silent longest (250 ms or more) is closed to make room, so stalled
 * clients cannot keep a new one waiting; otherwise (a burst of fresh handshakes) later sockets
 * wait, holding nothing but their descriptor. Every
 * socket, waiting or not, is closed if its handshake is not done --tls-handshake-timeout after
 * it was accepted.
 */
#ifndef PETREL_HANDSHAKE_H
#define PETREL_HANDSHAKE_H

#include "core.h"

#include "petrel/tls.h"

/* An established TLS connection on its way to a worker; the worker frees it on adoption. */
struct handoff {
    struct tls_session *s;
    unsigned listener;
    /* handshake-thread-private from here */
    struct handoff *prev, *next; /* on the waiting or the active list */
    int fd;
    int64_t deadline_ms; /* accepted + --tls-handshake-timeout */
    int64_t active_ms;   /* when its client last moved (or it got a session) */
    char addr[64];
};

/* The thread's body (arg: the runtime). */
void *handshake_main(void *arg);

/** Free whatever a ring item holds: a plain socket (closed) or a handoff (session and all). */
void handoff_discard(void *item);

#endif /* PETREL_HANDSHAKE_H */
