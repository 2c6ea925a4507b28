/*
 * tls_identity: see tls_identity.h.
 */
#include "tls_identity.h"

#include <mbedtls/bignum.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include <stdio.h>

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

int
tls_identity_make(const char *dir, char *cert, char *key, size_t len)
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
        rc = mbedtls_x509write_crt_set_subject_name(&crt, "CN=test");
        rc = rc ? rc : mbedtls_x509write_crt_set_issuer_name(&crt, "CN=test");
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
