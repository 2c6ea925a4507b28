/*
 * tls: servers, sessions and the TLS transport over mbedTLS 2.28. Contract in
 * include/petrel/tls.h.
 *
 * mbedTLS 2.28 keeps its structures' fields public; two are read here that have no accessor in
 * that release: ssl.handshake->resume (whether this handshake resumed a session, which 2.28
 * forgets once the handshake is over) and ssl.out_left (bytes of a record not yet sent).
 */
#include "petrel/tls.h"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/ssl_internal.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

/* A read takes at most this much ciphertext off the socket at once: a full record and more. */
#define SCRATCH_BYTES (32u * 1024)
#define CACHE_ENTRIES 4096 /* sessions remembered for resumption by id (tickets need none) */

const char *const tls_verify_names[] = {"none", "optional", "required", NULL};

const char *const tls_failure_names[TLS_FAIL_COUNT] = {
    [TLS_FAIL_TIMEOUT] = "timeout",   [TLS_FAIL_NOT_TLS] = "not_tls",
    [TLS_FAIL_PROTOCOL] = "protocol", [TLS_FAIL_CERTIFICATE] = "certificate",
    [TLS_FAIL_CLOSED] = "closed",
};

/* Forward secrecy and authenticated encryption only, fastest first (AES-GCM has AES-NI). */
static const char *const default_suites[] = {
    "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256",
    "TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256",
    "TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384",
    "TLS-ECDHE-RSA-WITH-AES-256-GCM-SHA384",
    "TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256",
    "TLS-ECDHE-RSA-WITH-CHACHA20-POLY1305-SHA256",
    NULL,
};

/* What resumption needs: the ticket keys and the session cache. Used by handshakes only (one
 * thread), shared by successive servers so that a certificate reload does not make every
 * client's next connection a full handshake. */
struct tls_resume {
    _Atomic unsigned refs;
    unsigned lifetime;
    mbedtls_ssl_ticket_context tickets;
    mbedtls_ssl_cache_context cache;
};

struct tls_server {
    _Atomic unsigned refs;
    mbedtls_ssl_config conf;
    mbedtls_x509_crt cert;
    mbedtls_x509_crt ca;
    mbedtls_pk_context key;
    struct tls_resume *resume; /* NULL: no resumption */
    int *suites;               /* 0-terminated, referenced by conf */
    enum tls_verify verify;
};

struct tls_session {
    mbedtls_ssl_context ssl;
    struct tls_server *srv;
    int fd;
    int sock_err;         /* errno of the socket call that failed */
    bool established;     /* handshake done: reads go through the per-thread buffer */
    bool resumed;         /* the handshake resumed a session */
    bool first_seen;      /* a byte has arrived */
    bool not_tls;         /* ... and it was not the start of a handshake record */
    bool eof;             /* the peer closed (or sent close_notify) */
    bool renegotiation;   /* the peer sent a handshake record after the handshake */
    bool may_recv;        /* this read call has not called recv() yet */
    bool recv_full;       /* that recv() filled its buffer: the socket may hold more */
    bool fed, fed_full;   /* bytes were fed (tls_feed) for the next read call: its recv() */
    bool defer;           /* a record is being sealed for a batched send (tls_seal) */
    bool confirming;      /* the batch sent bytes of that record: tls_sent confirms them */
    size_t confirm;       /* ... how many are still to be confirmed */
    int err;              /* an error to report once the bytes before it are delivered */
    size_t claimed;       /* bytes put in a record that has not left yet (see tls_writev) */
    size_t max_payload;   /* largest record plaintext, as negotiated */
    unsigned char hdr[5]; /* the record header being received (see track_records) */
    unsigned hdr_have;
    size_t rec_left;         /* bytes of the current record's body still to come */
    size_t recv_max;         /* this read call's recv() takes at most this much */
    const unsigned char *ra; /* ciphertext received by this read call, not yet consumed */
    size_t ra_len;
    unsigned char *stash; /* ciphertext left from an earlier call (the caller's room ran out) */
    size_t stash_off, stash_len;
    char suite[64];
    char peer[160];  /* client certificate's subject */
    char detail[96]; /* what went wrong after the handshake, for the log */
};

/* ---- randomness: one generator per thread ---- */

static int
entropy_getrandom(void *unused, unsigned char *out, size_t len)
{
    (void)unused;
    while (len > 0) {
        ssize_t n = getrandom(out, len, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return MBEDTLS_ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED;
        }
        out += n;
        len -= (size_t)n;
    }
    return 0;
}

/* mbedTLS's f_rng. The generator is the calling thread's own, so no two threads ever share one
 * (the handshake thread makes keys; a worker needs none for AEAD records). */
static int
tls_random(void *unused, unsigned char *out, size_t len)
{
    static _Thread_local bool ready;
    static _Thread_local mbedtls_ctr_drbg_context drbg;
    (void)unused;
    if (!ready) {
        static const unsigned char who[] = "petrel tls";
        mbedtls_ctr_drbg_init(&drbg);
        int rc = mbedtls_ctr_drbg_seed(&drbg, entropy_getrandom, NULL, who, sizeof(who) - 1);
        if (rc != 0) {
            mbedtls_ctr_drbg_free(&drbg);
            return rc;
        }
        ready = true;
    }
    return mbedtls_ctr_drbg_random(&drbg, out, len);
}

/* ---- servers ---- */

static int
load_error(char *err, size_t errlen, const char *opt, const char *path, int rc)
{
    char why[160];
    mbedtls_strerror(rc, why, sizeof(why));
    if (rc == MBEDTLS_ERR_PK_FILE_IO_ERROR || rc == MBEDTLS_ERR_X509_FILE_IO_ERROR) {
        snprintf(why, sizeof(why), "cannot read the file");
    }
    snprintf(err, errlen, "--%s: cannot load '%s': %s", opt, path, why);
    return -EINVAL;
}

/* The suites of a list like "A:B,C" as mbedTLS ids, 0-terminated. */
static int
parse_suites(const char *list, int **out, char *err, size_t errlen)
{
    size_t n = 0, cap = 8;
    int *ids = malloc(cap * sizeof(*ids));
    char *copy = strdup(list);
    if (ids == NULL || copy == NULL) {
        free(ids);
        free(copy);
        return -ENOMEM;
    }
    char *save = NULL;
    for (char *name = strtok_r(copy, ":, ", &save); name != NULL;
         name = strtok_r(NULL, ":, ", &save)) {
        int id = mbedtls_ssl_get_ciphersuite_id(name);
        if (id == 0) {
            snprintf(err, errlen,
                     "--tls-ciphers: unknown suite '%s' (mbedTLS names, e.g. "
                     "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256)",
                     name);
            free(ids);
            free(copy);
            return -EINVAL;
        }
        if (n + 1 >= cap) {
            int *bigger = realloc(ids, (cap *= 2) * sizeof(*ids));
            if (bigger == NULL) {
                free(ids);
                free(copy);
                return -ENOMEM;
            }
            ids = bigger;
        }
        ids[n++] = id;
    }
    free(copy);
    if (n == 0) {
        snprintf(err, errlen, "--tls-ciphers: '%s' names no suite", list);
        free(ids);
        return -EINVAL;
    }
    ids[n] = 0;
    *out = ids;
    return 0;
}

static int
default_suite_ids(int **out)
{
    size_t n = sizeof(default_suites) / sizeof(default_suites[0]);
    int *ids = calloc(n, sizeof(*ids));
    if (ids == NULL) {
        return -ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; default_suites[i] != NULL; i++) {
        int id = mbedtls_ssl_get_ciphersuite_id(default_suites[i]);
        if (id != 0) {
            ids[k++] = id;
        }
    }
    ids[k] = 0;
    *out = ids;
    return 0;
}

static void
resume_put(struct tls_resume *r)
{
    if (r != NULL && atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) {
        mbedtls_ssl_ticket_free(&r->tickets);
        mbedtls_ssl_cache_free(&r->cache);
        free(r);
    }
}

/* prev's resumption state if it may carry over, else a new one. Sessions resumed skip the
 * certificate checks, so only a server that checks no client certificate carries them over: a
 * reload may be what revokes a client. */
static int
resume_for(struct tls_server *srv, const struct tls_settings *s, const struct tls_server *prev)
{
    if (prev != NULL && prev->resume != NULL && prev->resume->lifetime == s->session_lifetime &&
        prev->verify == TLS_VERIFY_NONE && s->verify == TLS_VERIFY_NONE) {
        srv->resume = prev->resume;
        atomic_fetch_add_explicit(&srv->resume->refs, 1, memory_order_relaxed);
        return 0;
    }
    struct tls_resume *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return -ENOMEM;
    }
    atomic_init(&r->refs, 1);
    r->lifetime = s->session_lifetime;
    mbedtls_ssl_ticket_init(&r->tickets);
    mbedtls_ssl_cache_init(&r->cache);
    srv->resume = r;
    if (mbedtls_ssl_ticket_setup(&r->tickets, tls_random, NULL, MBEDTLS_CIPHER_AES_256_GCM,
                                 s->session_lifetime) != 0) {
        return -ENOMEM;
    }
    /* Clients that do not do tickets resume by session id, from a bounded cache. */
    mbedtls_ssl_cache_set_timeout(&r->cache, (int)s->session_lifetime);
    mbedtls_ssl_cache_set_max_entries(&r->cache, CACHE_ENTRIES);
    return 0;
}

static void
server_free(struct tls_server *srv)
{
    mbedtls_ssl_config_free(&srv->conf);
    mbedtls_x509_crt_free(&srv->cert);
    mbedtls_x509_crt_free(&srv->ca);
    mbedtls_pk_free(&srv->key);
    resume_put(srv->resume);
    free(srv->suites);
    free(srv);
}

int
tls_server_new(const struct tls_settings *s, struct tls_server *prev, struct tls_server **out,
               char *err, size_t errlen)
{
    *out = NULL;
    struct tls_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        return -ENOMEM;
    }
    atomic_init(&srv->refs, 1);
    srv->verify = s->verify;
    mbedtls_ssl_config_init(&srv->conf);
    mbedtls_x509_crt_init(&srv->cert);
    mbedtls_x509_crt_init(&srv->ca);
    mbedtls_pk_init(&srv->key);

    int rc = mbedtls_x509_crt_parse_file(&srv->cert, s->cert);
    if (rc != 0) {
        rc = load_error(err, errlen, "tls-cert", s->cert, rc);
        goto fail;
    }
    rc = mbedtls_pk_parse_keyfile(&srv->key, s->key, NULL);
    if (rc != 0) {
        rc = load_error(err, errlen, "tls-key", s->key, rc);
        goto fail;
    }
    if (mbedtls_pk_check_pair(&srv->cert.pk, &srv->key) != 0) {
        snprintf(err, errlen, "--tls-key: '%s' is not the key of the certificate in '%s'", s->key,
                 s->cert);
        rc = -EINVAL;
        goto fail;
    }
    if (s->ca[0] != '\0') {
        rc = mbedtls_x509_crt_parse_file(&srv->ca, s->ca);
        if (rc != 0) {
            rc = load_error(err, errlen, "tls-ca", s->ca, rc);
            goto fail;
        }
    } else if (s->verify != TLS_VERIFY_NONE) {
        snprintf(err, errlen, "--tls-ca: needed to check client certificates (--tls-verify=%s)",
                 tls_verify_names[s->verify]);
        rc = -EINVAL;
        goto fail;
    }
    rc = s->ciphers[0] != '\0' ? parse_suites(s->ciphers, &srv->suites, err, errlen)
                               : default_suite_ids(&srv->suites);
    if (rc < 0) {
        goto fail;
    }

    rc = mbedtls_ssl_config_defaults(&srv->conf, MBEDTLS_SSL_IS_SERVER,
                                     MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc != 0) {
        rc = -ENOMEM;
        goto fail;
    }
    /* TLS 1.2 only: Debian's build would otherwise also accept 1.0 and 1.1. */
    mbedtls_ssl_conf_min_version(&srv->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&srv->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_rng(&srv->conf, tls_random, NULL);
    /* mbedTLS picks the first curve of this list the client offers, and its default list puts
     * P-521 first, which makes a full handshake about twice as dear. */
    static const mbedtls_ecp_group_id curves[] = {
        MBEDTLS_ECP_DP_CURVE25519, MBEDTLS_ECP_DP_SECP256R1, MBEDTLS_ECP_DP_SECP384R1,
        MBEDTLS_ECP_DP_SECP521R1, MBEDTLS_ECP_DP_NONE};
    mbedtls_ssl_conf_curves(&srv->conf, curves);
    mbedtls_ssl_conf_ciphersuites(&srv->conf, srv->suites);
    /* Renegotiation stays refused (mbedTLS's default): after the handshake a session must need
     * nothing of the handshake thread's. */
    mbedtls_ssl_conf_renegotiation(&srv->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    rc = mbedtls_ssl_conf_own_cert(&srv->conf, &srv->cert, &srv->key);
    if (rc != 0) {
        rc = -ENOMEM;
        goto fail;
    }
    static const int authmode[] = {
        [TLS_VERIFY_NONE] = MBEDTLS_SSL_VERIFY_NONE,
        /* "optional" in mbedTLS finishes the handshake whatever the verdict; tls_handshake()
         * then refuses a certificate that was presented and failed. */
        [TLS_VERIFY_OPTIONAL] = MBEDTLS_SSL_VERIFY_OPTIONAL,
        [TLS_VERIFY_REQUIRED] = MBEDTLS_SSL_VERIFY_REQUIRED,
    };
    mbedtls_ssl_conf_authmode(&srv->conf, authmode[s->verify]);
    if (s->verify != TLS_VERIFY_NONE) {
        mbedtls_ssl_conf_ca_chain(&srv->conf, &srv->ca, NULL);
    }
    if (s->session_lifetime > 0) {
        rc = resume_for(srv, s, prev);
        if (rc < 0) {
            goto fail;
        }
        mbedtls_ssl_conf_session_tickets_cb(&srv->conf, mbedtls_ssl_ticket_write,
                                            mbedtls_ssl_ticket_parse, &srv->resume->tickets);
        mbedtls_ssl_conf_session_cache(&srv->conf, &srv->resume->cache, mbedtls_ssl_cache_get,
                                       mbedtls_ssl_cache_set);
    } else {
        mbedtls_ssl_conf_session_tickets(&srv->conf, MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
    }
    *out = srv;
    return 0;
fail:
    server_free(srv);
    if (rc == -ENOMEM) {
        snprintf(err, errlen, "TLS: out of memory");
    }
    return rc;
}

struct tls_server *
tls_server_get(struct tls_server *srv)
{
    atomic_fetch_add_explicit(&srv->refs, 1, memory_order_relaxed);
    return srv;
}

void
tls_server_put(struct tls_server *srv)
{
    if (srv != NULL && atomic_fetch_sub_explicit(&srv->refs, 1, memory_order_acq_rel) == 1) {
        server_free(srv);
    }
}

void
tls_server_describe(const struct tls_server *srv, char *out, size_t len)
{
    char subject[160];
    if (mbedtls_x509_dn_gets(subject, sizeof(subject), &srv->cert.subject) < 0) {
        snprintf(subject, sizeof(subject), "?");
    }
    const mbedtls_x509_time *t = &srv->cert.valid_to;
    snprintf(out, len, "certificate '%s' (%s key), valid until %04d-%02d-%02d", subject,
             mbedtls_pk_get_name(&srv->cert.pk), t->year, t->mon, t->day);
}

/* ---- sessions ---- */

static int
bio_send(void *ctx, const unsigned char *p, size_t n)
{
    struct tls_session *s = ctx;
    if (s->defer) {
        return MBEDTLS_ERR_SSL_WANT_WRITE; /* sealed to leave in the caller's batch */
    }
    if (s->confirming) {
        /* The caller's batch sent them: mbedTLS counts them as gone. */
        size_t k = n < s->confirm ? n : s->confirm;
        s->confirm -= k;
        return k > 0 ? (int)k : MBEDTLS_ERR_SSL_WANT_WRITE;
    }
    for (;;) {
        ssize_t r = send(s->fd, p, n, MSG_NOSIGNAL);
        if (r >= 0) {
            return (int)r;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return MBEDTLS_ERR_SSL_WANT_WRITE;
        }
        s->sock_err = errno;
        return errno == EPIPE || errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET
                                                     : MBEDTLS_ERR_NET_SEND_FAILED;
    }
}

static int
sock_recv(struct tls_session *s, unsigned char *p, size_t n)
{
    for (;;) {
        ssize_t r = recv(s->fd, p, n, 0);
        if (r >= 0) {
            return (int)r;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return MBEDTLS_ERR_SSL_WANT_READ;
        }
        s->sock_err = errno;
        return errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_RECV_FAILED;
    }
}

static _Thread_local unsigned char scratch[SCRATCH_BYTES];

/*
 * Follow the record framing of what is handed to mbedTLS after the handshake (a record header
 * is not encrypted): a handshake record there is a client asking to renegotiate. mbedTLS refuses
 * it on its own, but only with a warning alert that it may not even get to send, and then goes
 * on; this server closes the connection instead, whatever became of the alert.
 */
static void
track_records(struct tls_session *s, const unsigned char *p, size_t n)
{
    while (n > 0) {
        if (s->rec_left > 0) {
            size_t k = n < s->rec_left ? n : s->rec_left;
            s->rec_left -= k;
            p += k;
            n -= k;
            continue;
        }
        s->hdr[s->hdr_have++] = *p++;
        n--;
        if (s->hdr_have == sizeof(s->hdr)) {
            s->renegotiation = s->renegotiation || s->hdr[0] == MBEDTLS_SSL_MSG_HANDSHAKE;
            s->rec_left = (size_t)s->hdr[3] << 8 | s->hdr[4];
            s->hdr_have = 0;
        }
    }
}

/*
 * mbedTLS asks for exactly the bytes it needs next (a record header, then its body). During the
 * handshake they come straight from the socket. After it, a read call takes whatever the socket
 * has with one recv() into this thread's scratch buffer and hands it out from there, so that a
 * burst of pipelined records costs one system call, not two per record.
 */
static int
bio_recv(void *ctx, unsigned char *p, size_t n)
{
    struct tls_session *s = ctx;
    if (!s->established) {
        int r = sock_recv(s, p, n);
        if (r > 0 && !s->first_seen) {
            s->first_seen = true;
            s->not_tls = p[0] != MBEDTLS_SSL_MSG_HANDSHAKE;
            if (s->not_tls) {
                return MBEDTLS_ERR_SSL_INVALID_RECORD; /* at once, not after 5 bytes */
            }
        }
        if (r == 0) {
            s->eof = true;
        }
        return r;
    }
    size_t k;
    if (s->stash_len > 0) {
        k = n < s->stash_len ? n : s->stash_len;
        memcpy(p, s->stash + s->stash_off, k);
        s->stash_off += k;
        s->stash_len -= k;
    } else {
        if (s->ra_len == 0) {
            /* One recv() per call, and another only while each fills its buffer: the socket
             * may hold more, and its edge-triggered event will not come again. */
            if (!s->may_recv && !s->recv_full) {
                return MBEDTLS_ERR_SSL_WANT_READ; /* the next readiness event brings more */
            }
            s->may_recv = false;
            int r = sock_recv(s, scratch, s->recv_max);
            if (r <= 0) {
                s->eof = s->eof || r == 0;
                return r;
            }
            s->recv_full = (size_t)r == s->recv_max;
            s->ra = scratch;
            s->ra_len = (size_t)r;
        }
        k = n < s->ra_len ? n : s->ra_len;
        memcpy(p, s->ra, k);
        s->ra += k;
        s->ra_len -= k;
    }
    track_records(s, p, k);
    return (int)k;
}

struct tls_session *
tls_session_new(struct tls_server *srv, int fd)
{
    struct tls_session *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    mbedtls_ssl_init(&s->ssl);
    if (mbedtls_ssl_setup(&s->ssl, &srv->conf) != 0) {
        mbedtls_ssl_free(&s->ssl);
        free(s);
        return NULL;
    }
    atomic_fetch_add_explicit(&srv->refs, 1, memory_order_relaxed);
    s->srv = srv;
    s->fd = fd;
    mbedtls_ssl_set_bio(&s->ssl, s, bio_send, bio_recv, NULL);
    return s;
}

static enum tls_failure
classify(const struct tls_session *s, int rc)
{
    if (s->not_tls) {
        return TLS_FAIL_NOT_TLS;
    }
    switch (rc) {
    case MBEDTLS_ERR_SSL_CONN_EOF:
    case MBEDTLS_ERR_NET_CONN_RESET:
    case MBEDTLS_ERR_NET_RECV_FAILED:
    case MBEDTLS_ERR_NET_SEND_FAILED:
        return TLS_FAIL_CLOSED;
    case MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE:
    case MBEDTLS_ERR_SSL_BAD_HS_CERTIFICATE:
    case MBEDTLS_ERR_SSL_BAD_HS_CERTIFICATE_VERIFY:
    case MBEDTLS_ERR_X509_CERT_VERIFY_FAILED:
        return TLS_FAIL_CERTIFICATE;
    default:
        return s->eof ? TLS_FAIL_CLOSED : TLS_FAIL_PROTOCOL;
    }
}

int
tls_handshake(struct tls_session *s, enum tls_failure *why, char *detail, size_t len)
{
    while (s->ssl.state != MBEDTLS_SSL_HANDSHAKE_OVER) {
        /* 2.28 frees the handshake state, and with it this flag, on the last step. */
        if (s->ssl.handshake != NULL && s->ssl.handshake->resume) {
            s->resumed = true;
        }
        int rc = mbedtls_ssl_handshake_step(&s->ssl);
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
            return -EAGAIN;
        }
        if (rc != 0) {
            *why = classify(s, rc);
            if (*why == TLS_FAIL_CERTIFICATE) {
                uint32_t flags = mbedtls_ssl_get_verify_result(&s->ssl);
                if (flags != 0 && flags != (uint32_t)-1 &&
                    mbedtls_x509_crt_verify_info(detail, len, "", flags) > 0) {
                    detail[strcspn(detail, "\n")] = '\0';
                    return -EPROTO;
                }
            }
            if (*why == TLS_FAIL_NOT_TLS) {
                snprintf(detail, len, "the client did not start with a TLS handshake record");
            } else if (*why == TLS_FAIL_CLOSED && s->sock_err != 0) {
                snprintf(detail, len, "%s", strerror(s->sock_err));
            } else if (*why == TLS_FAIL_CLOSED) {
                snprintf(detail, len, "the client closed the connection");
            } else {
                mbedtls_strerror(rc, detail, len);
            }
            return -EPROTO;
        }
    }
    const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&s->ssl);
    if (peer != NULL) {
        /* "optional": no certificate is fine, a rejected one is not. */
        uint32_t flags = mbedtls_ssl_get_verify_result(&s->ssl);
        if (s->srv->verify != TLS_VERIFY_NONE && flags != 0) {
            *why = TLS_FAIL_CERTIFICATE;
            if (mbedtls_x509_crt_verify_info(detail, len, "", flags) <= 0) {
                snprintf(detail, len, "the client certificate was not accepted");
            }
            detail[strcspn(detail, "\n")] = '\0';
            return -EPROTO;
        }
        if (mbedtls_x509_dn_gets(s->peer, sizeof(s->peer), &peer->subject) < 0) {
            s->peer[0] = '\0';
        }
    }
    snprintf(s->suite, sizeof(s->suite), "%s", mbedtls_ssl_get_ciphersuite(&s->ssl));
    int max = mbedtls_ssl_get_max_out_record_payload(&s->ssl); /* fixed once negotiated */
    s->max_payload = max > 0 ? (size_t)max : 512;
    s->established = true;
    return 0;
}

bool
tls_session_resumed(const struct tls_session *s)
{
    return s->resumed;
}

const char *
tls_session_suite(const struct tls_session *s)
{
    return s->suite;
}

const char *
tls_session_peer(const struct tls_session *s)
{
    return s->peer;
}

const char *
tls_session_error(const struct tls_session *s)
{
    return s->detail;
}

int
tls_session_fd(const struct tls_session *s)
{
    return s->fd;
}

void
tls_session_free(struct tls_session *s)
{
    if (s == NULL) {
        return;
    }
    if (s->fd >= 0) {
        close(s->fd);
    }
    mbedtls_ssl_free(&s->ssl);
    tls_server_put(s->srv);
    free(s->stash);
    free(s);
}

/* ---- the transport ---- */

static int
sock_error(const struct tls_session *s, int rc)
{
    if (rc == MBEDTLS_ERR_NET_CONN_RESET || rc == MBEDTLS_ERR_NET_RECV_FAILED ||
        rc == MBEDTLS_ERR_NET_SEND_FAILED) {
        return s->sock_err != 0 ? -s->sock_err : -ECONNRESET;
    }
    return -EPROTO;
}

static ssize_t
tls_read(struct transport *t, void *p, size_t n)
{
    struct tls_session *s = t->ctx;
    size_t got = 0;
    /* Bytes fed were this call's recv(), made by the loop's batch of reads. */
    s->may_recv = !s->fed;
    s->recv_full = s->fed && s->fed_full;
    s->fed = false;
    /* Ciphertext is taken up to the caller's room: what mbedTLS does not take for want of room
     * (the stash) is then at most one record that an earlier call left half-received, or what
     * was fed (up to a pool buffer) beyond it. */
    s->recv_max = n < sizeof(scratch) ? (n > 64 ? n : 64) : sizeof(scratch);
    unsigned idle = 0; /* calls in a row that delivered nothing: bounded work per call */
    while (got < n && s->err == 0 && !s->eof && !s->renegotiation && idle < 64) {
        int rc = mbedtls_ssl_read(&s->ssl, (unsigned char *)p + got, n - got);
        idle = rc > 0 ? 0 : idle + 1;
        if (rc > 0) {
            got += (size_t)rc;
            /* The socket was read and everything it gave is decrypted and delivered: another
             * call could only say WANT_READ (the usual end of a read event, so it is worth
             * not going through mbedTLS's record layer once more to hear it). */
            if (!s->may_recv && !s->recv_full && s->ra_len == 0 && s->stash_len == 0 &&
                mbedtls_ssl_get_bytes_avail(&s->ssl) == 0) {
                break;
            }
        } else if (rc == MBEDTLS_ERR_SSL_WANT_READ) {
            /* mbedTLS also says this after a record with nothing for the caller (a warning
             * alert): go on while bytes received are still to be fed to it. */
            if (s->ra_len == 0 && s->stash_len == 0 && !s->may_recv && !s->recv_full) {
                break;
            }
        } else if (rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
            break; /* an alert it could not send: only a refused renegotiation, closed below */
        } else if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || rc == MBEDTLS_ERR_SSL_CONN_EOF) {
            s->eof = true;
        } else if (rc < 0) {
            s->err = sock_error(s, rc);
            mbedtls_strerror(rc, s->detail, sizeof(s->detail));
        }
        /* rc == 0: empty application records (allowed), or the stream's end (s->eof). */
    }
    if (s->renegotiation && s->err == 0) {
        s->err = -EPROTO;
        snprintf(s->detail, sizeof(s->detail), "the client asked to renegotiate (refused)");
    }
    /* What this call received and mbedTLS did not take (the room ran out first) is kept for
     * the next: the scratch buffer belongs to the thread, not to this connection. */
    if (s->ra_len > 0) {
        unsigned char *keep = malloc(s->ra_len);
        if (keep == NULL) {
            s->err = -ENOMEM;
        } else {
            memcpy(keep, s->ra, s->ra_len);
            free(s->stash);
            s->stash = keep;
            s->stash_off = 0;
            s->stash_len = s->ra_len;
        }
        s->ra_len = 0;
    } else if (s->stash_len == 0 && s->stash != NULL) {
        free(s->stash);
        s->stash = NULL;
    }
    if (got > 0) {
        return (ssize_t)got;
    }
    if (s->err != 0) {
        return s->err;
    }
    return s->eof ? 0 : -EAGAIN;
}

static ssize_t
tls_writev(struct transport *t, const struct iovec *iov, int iovcnt)
{
    static _Thread_local unsigned char staging[MBEDTLS_SSL_OUT_CONTENT_LEN];
    struct tls_session *s = t->ctx;
    if (s->ssl.out_left > 0) {
        int rc = mbedtls_ssl_flush_output(&s->ssl);
        if (rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
            return -EAGAIN;
        }
        if (rc != 0) {
            return sock_error(s, rc);
        }
    }
    if (s->claimed > 0) {
        /* The bytes the caller offers again are those already sent in that record. */
        size_t c = s->claimed;
        s->claimed = 0;
        return (ssize_t)c;
    }
    size_t max = s->max_payload;
    /* One record per call, as full as the buffers allow: pipelined replies leave together. */
    const unsigned char *src = iov[0].iov_base;
    size_t n = iov[0].iov_len < max ? iov[0].iov_len : max;
    if (iovcnt > 1 && n < max) {
        n = 0;
        for (int i = 0; i < iovcnt && n < max; i++) {
            size_t k = iov[i].iov_len < max - n ? iov[i].iov_len : max - n;
            memcpy(staging + n, iov[i].iov_base, k);
            n += k;
        }
        src = staging;
    }
    if (n == 0) {
        return 0;
    }
    int rc = mbedtls_ssl_write(&s->ssl, src, n);
    if (rc > 0) {
        return rc;
    }
    if (rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
        if (s->ssl.out_left > 0) {
            s->claimed = n; /* sealed in a record: taken once the record has left */
        }
        return -EAGAIN;
    }
    return sock_error(s, rc);
}

/*
 * A batched send: the record is sealed into mbedTLS's output buffer as tls_writev would seal
 * it, but bio_send says "would block", so it stays there as after a send that could not go
 * (out_left, claimed). The batch sends it from there; tls_sent tells mbedTLS what left.
 */
static ssize_t
tls_seal(struct transport *t, const void *p, size_t n)
{
    struct tls_session *s = t->ctx;
    if (n == 0 || n > s->max_payload || s->ssl.out_left > 0 || s->claimed > 0 || s->err != 0) {
        return 0;
    }
    s->defer = true;
    int rc = mbedtls_ssl_write(&s->ssl, p, n);
    s->defer = false;
    if (rc == MBEDTLS_ERR_SSL_WANT_WRITE && s->ssl.out_left > 0) {
        s->claimed = n;
        return (ssize_t)n;
    }
    return rc < 0 && rc != MBEDTLS_ERR_SSL_WANT_WRITE ? sock_error(s, rc) : 0;
}

static size_t
tls_sealed(const struct transport *t, const void **p)
{
    const struct tls_session *s = t->ctx;
    *p = s->ssl.out_hdr - s->ssl.out_left; /* what mbedtls_ssl_flush_output() would send */
    return s->ssl.out_left;
}

static size_t
tls_sent(struct transport *t, size_t k)
{
    struct tls_session *s = t->ctx;
    s->confirm = k;
    s->confirming = true;
    int rc = mbedtls_ssl_flush_output(&s->ssl);
    s->confirming = false;
    s->confirm = 0;
    if (rc != 0 || s->ssl.out_left > 0) {
        return 0; /* the rest leaves with the next tls_writev, which reports the claim */
    }
    size_t n = s->claimed;
    s->claimed = 0;
    return n;
}

static bool
tls_may_feed(const struct transport *t)
{
    const struct tls_session *s = t->ctx;
    return s->stash_len == 0 && s->ra_len == 0 && !s->fed;
}

static void
tls_feed(struct transport *t, const unsigned char *p, size_t n, bool full)
{
    /* The read-ahead of the next tls_read(), which copies what it leaves to the stash. The
     * stash, older bytes that would have to come first, is empty (tls_may_feed). */
    struct tls_session *s = t->ctx;
    s->ra = p;
    s->ra_len = n;
    s->fed = true;
    s->fed_full = full;
}

static size_t
tls_pending(const struct transport *t)
{
    const struct tls_session *s = t->ctx;
    return mbedtls_ssl_get_bytes_avail(&s->ssl) + s->stash_len + (s->recv_full ? 1 : 0);
}

static void
tls_shutdown(struct transport *t)
{
    struct tls_session *s = t->ctx;
    if (s != NULL && s->err == 0 && s->ssl.out_left == 0) {
        (void)mbedtls_ssl_close_notify(&s->ssl);
    }
}

static void
tls_close(struct transport *t)
{
    tls_session_free(t->ctx);
    t->ctx = NULL;
    t->fd = -1;
}

const struct transport_ops transport_tls = {
    .name = "tls",
    .read = tls_read,
    .writev = tls_writev,
    .pending = tls_pending,
    .may_feed = tls_may_feed,
    .feed = tls_feed,
    .seal = tls_seal,
    .sealed = tls_sealed,
    .sent = tls_sent,
    .shutdown = tls_shutdown,
    .close = tls_close,
};

void
transport_tls_init(struct transport *t, struct tls_session *s)
{
    *t = (struct transport){.ops = &transport_tls, .fd = s->fd, .ctx = s};
}

struct tls_session *
transport_tls_session(const struct transport *t)
{
    return t->ops == &transport_tls ? t->ctx : NULL;
}
