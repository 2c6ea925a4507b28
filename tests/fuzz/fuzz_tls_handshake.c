/*
 * Fuzz target: the server side of a TLS handshake (src/io/tls.c over mbedTLS) fed whatever a
 * client may send. The input goes into one end of a socket pair, the server's session reads the
 * other end, and the handshake is stepped until it fails, completes or waits for more than the
 * input holds; whatever the server answers is drained and dropped. The server's key and
 * self-signed certificate (P-256) are made once, at start, into a private temporary directory.
 * Checks: no crash, no leak, no sanitizer report, and a failure always says why.
 */
#include "petrel/tls.h"
#include "tls_identity.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define INPUT_MAX (64 * 1024) /* what one socket buffer surely takes */
#define STEPS_MAX 64

static struct tls_server *server;

int LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char dir[] = "/tmp/petrel-fuzz-tls-XXXXXX";
    char cert[128], key[128], err[256];
    if (mkdtemp(dir) == NULL || tls_identity_make(dir, cert, key, sizeof(cert)) != 0) {
        fprintf(stderr, "fuzz_tls_handshake: cannot make a test certificate\n");
        abort();
    }
    const struct tls_settings s = {.cert = cert,
                                   .key = key,
                                   .ca = "",
                                   .ciphers = "",
                                   .verify = TLS_VERIFY_NONE,
                                   .session_lifetime = 3600};
    if (tls_server_new(&s, NULL, &server, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_tls_handshake: %s\n", err);
        abort();
    }
    unlink(cert);
    unlink(key);
    rmdir(dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > INPUT_MAX) {
        return 0;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0) {
        abort();
    }
    if (size > 0 && send(sv[0], data, size, 0) != (ssize_t)size) {
        abort();
    }
    shutdown(sv[0], SHUT_WR); /* the client has said all it will: a read past it sees the end */
    struct tls_session *s = tls_session_new(server, sv[1]);
    if (s == NULL) {
        abort();
    }
    static unsigned char sink[64 * 1024];
    for (int i = 0; i < STEPS_MAX; i++) {
        enum tls_failure why = TLS_FAIL_COUNT;
        char detail[200] = "";
        int rc = tls_handshake(s, &why, detail, sizeof(detail));
        while (recv(sv[0], sink, sizeof(sink), 0) > 0) {
        }
        if (rc == -EPROTO) {
            if (why >= TLS_FAIL_COUNT || detail[0] == '\0') {
                abort(); /* every failure is counted under a reason and explained */
            }
            break;
        }
        if (rc == 0 || rc != -EAGAIN) {
            break; /* a random input that completes a handshake would be remarkable, not wrong */
        }
    }
    tls_session_free(s); /* closes sv[1] */
    close(sv[0]);
    return 0;
}
