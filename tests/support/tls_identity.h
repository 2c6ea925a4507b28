/*
 * tls_identity: keys and certificates made with mbedTLS for the tests: a P-256 key, a
 * certificate for it signed by another key (or itself), and the one-call identity that the TLS
 * unit tests and the handshake fuzz target give tls_server_new(). Every function returns 0 or an
 * mbedTLS error code; the caller decides how to fail.
 */
#ifndef PETREL_TEST_TLS_IDENTITY_H
#define PETREL_TEST_TLS_IDENTITY_H

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/pk.h>

#include <stddef.h>

/** A new P-256 key in key (which the caller frees with mbedtls_pk_free). */
int tls_test_key(mbedtls_pk_context *key, mbedtls_ctr_drbg_context *drbg);

/**
 * A certificate for key with subject, signed by issuer_key as issuer (the same key and name for
 * a self-signed one), valid from 2020 to 2099, as PEM into pem. With san (a DER subjectAltName
 * value of sanlen bytes) it is a leaf certificate, without one a CA.
 */
int tls_test_cert(const char *subject, mbedtls_pk_context *key, const char *issuer,
                  mbedtls_pk_context *issuer_key, const unsigned char *san, size_t sanlen,
                  mbedtls_ctr_drbg_context *drbg, unsigned char *pem, size_t pemlen);

/** Write pem (a NUL-terminated PEM text) to path. */
int tls_test_write(const char *path, const unsigned char *pem);

/** Write dir/cert.pem and dir/key.pem, a self-signed P-256 identity (CN=test); their paths go
 * into cert and key. */
int tls_identity_make(const char *dir, char *cert, char *key, size_t len);

#endif
