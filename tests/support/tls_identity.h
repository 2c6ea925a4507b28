/*
 * tls_identity: a P-256 key and a self-signed certificate for it, made with mbedTLS, as PEM files
 * in a directory: what the TLS unit tests and the handshake fuzz target give tls_server_new().
 */
#ifndef PETREL_TEST_TLS_IDENTITY_H
#define PETREL_TEST_TLS_IDENTITY_H

#include <stddef.h>

/** Write dir/cert.pem and dir/key.pem (CN=test, valid 2020 to 2099); their paths go into cert
 * and key. Returns 0 or an mbedTLS error code. */
int tls_identity_make(const char *dir, char *cert, char *key, size_t len);

#endif
