/*
 * tls_identity: see tls_identity.h.
 */
#include "tls_identity.h"

#include <mbedtls/bignum.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/oid.h>
#include <mbedtls/x509_crt.h>

#include <stdio.h>

int
tls_test_key(mbedtls_pk_context *key, mbedtls_ctr_drbg_context *drbg)
{
    mbedtls_pk_init(key);
    int rc = mbedtls_pk_setup(key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    return rc ? rc
              : mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*key),
                                    mbedtls_ctr_drbg_random, drbg);
}

int
tls_test_cert(const char *subject, mbedtls_pk_context *key, const char *issuer,
              mbedtls_pk_context *issuer_key, const unsigned char *san, size_t sanlen,
              mbedtls_ctr_drbg_context *drbg, unsigned char *pem, size_t pemlen)
{
    /* Serial numbers differ, so that a client never takes two certificates for one. */
    static int next_serial = 1;
    mbedtls_x509write_cert w;
    mbedtls_mpi serial;
    mbedtls_x509write_crt_init(&w);
    mbedtls_mpi_init(&serial);
    mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&w, key);
    mbedtls_x509write_crt_set_issuer_key(&w, issuer_key);
    int rc = mbedtls_mpi_lset(&serial, next_serial++);
    rc = rc ? rc : mbedtls_x509write_crt_set_subject_name(&w, subject);
    rc = rc ? rc : mbedtls_x509write_crt_set_issuer_name(&w, issuer);
    rc = rc ? rc : mbedtls_x509write_crt_set_serial(&w, &serial);
    rc = rc ? rc : mbedtls_x509write_crt_set_validity(&w, "20200101000000", "20991231235959");
    rc = rc ? rc : mbedtls_x509write_crt_set_basic_constraints(&w, san == NULL, -1);
    if (rc == 0 && san != NULL) {
        rc = mbedtls_x509write_crt_set_extension(&w, MBEDTLS_OID_SUBJECT_ALT_NAME,
                                                 MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0,
                                                 san, sanlen);
    }
    rc = rc ? rc : mbedtls_x509write_crt_pem(&w, pem, pemlen, mbedtls_ctr_drbg_random, drbg);
    mbedtls_x509write_crt_free(&w);
    mbedtls_mpi_free(&serial);
    return rc;
}

int
tls_test_write(const char *path, const unsigned char *pem)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        return -1;
    }
    int ok = fputs((const char *)pem, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

int
tls_identity_make(const char *dir, char *cert, char *key, size_t len)
{
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_pk_context pk;
    static unsigned char pem[8192];
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_pk_init(&pk);
    snprintf(key, len, "%s/key.pem", dir);
    snprintf(cert, len, "%s/cert.pem", dir);
    int rc = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0);
    rc = rc ? rc : tls_test_key(&pk, &drbg);
    rc = rc ? rc : mbedtls_pk_write_key_pem(&pk, pem, sizeof(pem));
    rc = rc ? rc : tls_test_write(key, pem);
    rc = rc ? rc : tls_test_cert("CN=test", &pk, "CN=test", &pk, NULL, 0, &drbg, pem, sizeof(pem));
    rc = rc ? rc : tls_test_write(cert, pem);
    mbedtls_pk_free(&pk);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    return rc;
}
