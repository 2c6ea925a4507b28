/*
 * Fuzz target: the server side of a TLS handshake (src/io/tls.c over mbedTLS) fed whatever a
 * client may send. The input goes into one end of a socket pair, the server's session reads the
 * other end, and the handshake is stepped until it fails, completes or waits for more than the
 * input holds; whatever the server answers is drained and dropped. The server's key and
 * self-signed certificate (P-256) are made once, at start, into a private temporary directory.
 * Checks: no crash, no leak, no sanitizer report, and a failure always says why.
 */
#include "petrel/tls.h"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/bignum.h>
#include <mbedtls/x509_crt.h>

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

static int
write_file(const char *path, const unsigned char *pem)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        return -1;
    }
    int ok = fputs((const char *)pem, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* A P-256 key and a self-signed certificate for it, as PEM files in dir. */
static int
make_identity(const char *dir, char *cert, char *key, size_t len)
{
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_pk_context pk;
    mbedtls_x509write_cert crt;
    static unsigned char pem[8192];
    int rc;
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_pk_init(&pk);
    mbedtls_x509write_crt_init(&crt);
    rc = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0);
    rc = rc ? rc : mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    rc = rc ? rc
            : mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk),
                                  mbedtls_ctr_drbg_random, &drbg);
    snprintf(key, len, "%s/key.pem", dir);
    snprintf(cert, len, "%s/cert.pem", dir);
    rc = rc ? rc : mbedtls_pk_write_key_pem(&pk, pem, sizeof(pem));
    rc = rc ? rc : write_file(key, pem);
    if (rc == 0) {
        mbedtls_mpi serial;
        mbedtls_mpi_init(&serial);
        mbedtls_x509write_crt_set_subject_key(&crt, &pk);
        mbedtls_x509write_crt_set_issuer_key(&crt, &pk);
        mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
        rc = mbedtls_x509write_crt_set_subject_name(&crt, "CN=fuzz");
        rc = rc ? rc : mbedtls_x509write_crt_set_issuer_name(&crt, "CN=fuzz");
        rc = rc ? rc : mbedtls_mpi_lset(&serial, 1);
        rc = rc ? rc : mbedtls_x509write_crt_set_serial(&crt, &serial);
        rc = rc ? rc : mbedtls_x509write_crt_set_validity(&crt, "20200101000000", "20991231235959");
        rc = rc ? rc
                : mbedtls_x509write_crt_pem(&crt, pem, sizeof(pem), mbedtls_ctr_drbg_random, &drbg);
        rc = rc ? rc : write_file(cert, pem);
        mbedtls_mpi_free(&serial);
    }
    mbedtls_x509write_crt_free(&crt);
    mbedtls_pk_free(&pk);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    return rc;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char dir[] = "/tmp/petrel-fuzz-tls-XXXXXX";
    char cert[128], key[128], err[256];
    if (mkdtemp(dir) == NULL || make_identity(dir, cert, key, sizeof(cert)) != 0) {
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
