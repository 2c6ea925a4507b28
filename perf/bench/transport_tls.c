/*
 * transport_tls: TLS client connections over mbedTLS 2.28 for the load generator.
 *
 * Sockets are non-blocking: mbedTLS's send and receive callbacks turn EAGAIN into
 * MBEDTLS_ERR_SSL_WANT_WRITE / WANT_READ, which come back to the caller as -EAGAIN with
 * want_write saying which readiness to wait for. The handshake runs in steps inside handshake(),
 * read() and write(), whichever the caller calls first.
 *
 * Two things mbedTLS leaves to its caller are kept here, so the client code need not know:
 * - a write that returned WANT_WRITE must be repeated with the same data: mbedTLS has already
 *   encrypted it and reports it written only once the record is out. The record's length is
 *   kept in `wpending`, and the next write finishes it rather than encrypting anything again.
 * - a read returns every byte already decrypted: mbedTLS fetches records on its own, and what
 *   it holds the socket no longer announces. The receive callback also reads ahead (one recv()
 *   of up to TLS_READAHEAD bytes serves many small records, where mbedTLS alone would call
 *   recv() twice per record: header, then body), and pending() tells the caller what is left.
 *
 * Threads: struct tls_shared (CA, certificate) is read-only after setup. Each client thread has
 * its own struct tls_thread — entropy, CTR-DRBG, private key, mbedtls_ssl_config — so no random
 * generator and no RSA blinding state is shared between threads, whatever mbedTLS's threading
 * configuration. A connection's struct tls_conn belongs to the thread owning the transport.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport.h"

#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_internal.h> /* mbedtls_ssl_flush_output(): see tls_write() */
#include <mbedtls/x509_crt.h>

#define TLS_READAHEAD (16 * 1024)

struct tls_shared {
    mbedtls_x509_crt ca;    /* verification chain, when have_ca */
    mbedtls_x509_crt cert;  /* client certificate, when key_pem */
    unsigned char *key_pem; /* the key file, NUL-terminated: each thread parses its own copy */
    size_t key_len;         /* including the NUL */
    bool have_ca;
    bool resume;
    char name[256];       /* SNI and the name the certificate must carry; "" for an address */
    unsigned char ip[16]; /* else the address the certificate must carry (iPAddress SAN) */
    size_t iplen;         /* 4 or 16 when name is "" */
    int ciphers[TLS_MAX_CIPHERS + 1];
};

struct tls_thread {
    const struct tls_shared *sh;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_pk_context key;
    mbedtls_ssl_config conf;
};

struct tls_conn {
    mbedtls_ssl_context ssl;
    mbedtls_ssl_session saved; /* the last session, offered on a reopen (--tls-resume) */
    bool have_saved;
    bool established; /* handshake done */
    bool resumed;     /* ... by resuming `saved` */
    bool deferred;    /* a read failed after it had data: `deferred_rc` is the next answer */
    ssize_t deferred_rc;
    int fd;
    int sock_err;    /* errno of the last failed send() or recv() */
    int tls_err;     /* mbedTLS error of the last failure */
    int alert;       /* the fatal alert the server sent, or -1 */
    size_t wpending; /* length of a write mbedTLS holds encrypted and not yet sent */
    size_t ra_off;   /* read-ahead: ra[ra_off, ra_len) is received and not yet given */
    size_t ra_len;
    unsigned char ra[TLS_READAHEAD];
};

/* ---- socket callbacks ---- */

static int
bio_send(void *arg, const unsigned char *p, size_t n)
{
    struct tls_conn *c = arg;

    /* MSG_NOSIGNAL: a server that goes away is an error to count, not a SIGPIPE. */
    ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
    if (r >= 0) {
        return (int)r;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    }
    c->sock_err = errno;
    return errno == EPIPE || errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET
                                                 : MBEDTLS_ERR_NET_SEND_FAILED;
}

static int
bio_recv(void *arg, unsigned char *p, size_t n)
{
    struct tls_conn *c = arg;

    if (c->ra_off == c->ra_len) {
        ssize_t r = recv(c->fd, c->ra, sizeof(c->ra), 0);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                return MBEDTLS_ERR_SSL_WANT_READ;
            }
            c->sock_err = errno;
            return errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_RECV_FAILED;
        }
        if (r == 0) {
            return 0; /* end of stream: mbedTLS says MBEDTLS_ERR_SSL_CONN_EOF */
        }
        c->ra_off = 0;
        c->ra_len = (size_t)r;
    }
    size_t k = c->ra_len - c->ra_off < n ? c->ra_len - c->ra_off : n;
    memcpy(p, c->ra + c->ra_off, k);
    c->ra_off += k;
    return (int)k;
}

/* ---- results and errors ---- */

/*
 * A server that refuses a handshake (a client certificate it wants or does not trust) sends an
 * alert and closes, and the client's next send fails with EPIPE or ECONNRESET before mbedTLS
 * has read the alert. Look for it among the bytes still unread, to say why: a plaintext alert
 * record is 7 bytes, type 21, length 2, level, description.
 */
static void
find_alert(struct tls_conn *c)
{
    unsigned char b[7];
    size_t n = c->ra_len - c->ra_off < sizeof(b) ? c->ra_len - c->ra_off : sizeof(b);

    memcpy(b, c->ra + c->ra_off, n);
    if (n < sizeof(b)) {
        ssize_t r = recv(c->fd, b + n, sizeof(b) - n, MSG_DONTWAIT);
        n += r > 0 ? (size_t)r : 0;
    }
    if (n == sizeof(b) && b[0] == MBEDTLS_SSL_MSG_ALERT && b[3] == 0 && b[4] == 2) {
        c->alert = b[6];
    }
}

/* Turn an mbedTLS result (< 0) into the transport's: -EAGAIN with want_write, or an errno. */
static int
tls_result(struct transport *t, int rc)
{
    struct tls_conn *c = t->ctx;

    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
        t->want_write = rc == MBEDTLS_ERR_SSL_WANT_WRITE;
        return -EAGAIN;
    }
    c->tls_err = rc;
    switch (rc) {
    case MBEDTLS_ERR_NET_CONN_RESET:
    case MBEDTLS_ERR_NET_SEND_FAILED:
    case MBEDTLS_ERR_NET_RECV_FAILED:
        if (!c->established) {
            find_alert(c);
        }
        return c->sock_err ? -c->sock_err : -EIO;
    case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE:
        c->alert = c->ssl.in_msg != NULL ? c->ssl.in_msg[1] : -1;
        return -EPROTO;
    case MBEDTLS_ERR_SSL_CONN_EOF:
    case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
        return -ECONNRESET;
    case MBEDTLS_ERR_SSL_ALLOC_FAILED:
        return -ENOMEM;
    default:
        return -EPROTO;
    }
}

/* The alerts a server is likely to send a client that it refuses. */
static const char *
alert_name(int a)
{
    switch (a) {
    case MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE:
        return "handshake failure: no cipher suite in common, or no client certificate?";
    case MBEDTLS_SSL_ALERT_MSG_BAD_CERT:
        return "bad certificate";
    case MBEDTLS_SSL_ALERT_MSG_UNKNOWN_CA:
        return "unknown CA: the server does not trust the client certificate";
    case MBEDTLS_SSL_ALERT_MSG_PROTOCOL_VERSION:
        return "protocol version: mbedTLS 2.28 speaks TLS 1.2 at most";
    case MBEDTLS_SSL_ALERT_MSG_INTERNAL_ERROR:
        return "internal error";
    case 116:
        return "certificate required: the server wants --tls-cert";
    default:
        return "see RFC 8446, 6.2";
    }
}

static const char *
tls_describe(struct transport *t, int err, char *out, size_t n)
{
    struct tls_conn *c = t->ctx;
    char what[256];

    if (c != NULL && c->alert >= 0) {
        snprintf(out, n, "the server sent TLS alert %d (%s)", c->alert, alert_name(c->alert));
        return out;
    }
    if (c != NULL && !c->established && (-err == EPIPE || -err == ECONNRESET)) {
        snprintf(out, n, "the server closed the connection during the TLS handshake (%s)",
                 strerror(-err));
        return out;
    }
    if (c == NULL || c->tls_err == 0 || (c->sock_err != 0 && -err == c->sock_err)) {
        snprintf(out, n, "%s", strerror(-err));
        return out;
    }
    if (c->tls_err == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
        /* One line: verify_info() writes one line per flag, each ending in '\n'. */
        int len = mbedtls_x509_crt_verify_info(what, sizeof(what), "",
                                               mbedtls_ssl_get_verify_result(&c->ssl));
        for (int i = 0; i < len; i++) {
            what[i] = what[i] == '\n' ? (i + 1 < len ? ',' : '\0') : what[i];
        }
        snprintf(out, n, "the server's certificate did not verify: %s", len > 0 ? what : "?");
        return out;
    }
    if (c->tls_err == MBEDTLS_ERR_SSL_CONN_EOF || c->tls_err == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
        snprintf(out, n, "the server closed the connection%s",
                 c->established ? "" : " during the TLS handshake");
        return out;
    }
    mbedtls_strerror(c->tls_err, what, sizeof(what));
    snprintf(out, n, "%s (-0x%04x)%s", what, (unsigned)-c->tls_err,
             !c->established && c->tls_err == MBEDTLS_ERR_SSL_INVALID_RECORD
                 ? ": is the server speaking TLS on this port?"
                 : "");
    return out;
}

/* ---- the transport ---- */

static struct tls_conn *
tls_conn_new(struct tls_thread *th)
{
    struct tls_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    mbedtls_ssl_init(&c->ssl);
    mbedtls_ssl_session_init(&c->saved);
    if (mbedtls_ssl_setup(&c->ssl, &th->conf) != 0) {
        mbedtls_ssl_free(&c->ssl);
        free(c);
        return NULL;
    }
    mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
    return c;
}

static int
tls_open(struct transport *t, const struct addrinfo *ai, unsigned flags)
{
    struct tls_thread *th = t->env;
    struct tls_conn *c = t->ctx;

    if (c == NULL) {
        if ((c = tls_conn_new(th)) == NULL) {
            return -ENOMEM;
        }
        t->ctx = c;
    } else if (mbedtls_ssl_session_reset(&c->ssl) != 0) {
        return -ENOMEM;
    }
    /* Set on every open: session_reset() may forget it. */
    if (th->sh->name[0] != '\0' && mbedtls_ssl_set_hostname(&c->ssl, th->sh->name) != 0) {
        return -ENOMEM;
    }
    t->want_write = false;
    c->established = c->resumed = c->deferred = false;
    c->sock_err = c->tls_err = 0;
    c->alert = -1;
    c->wpending = c->ra_off = c->ra_len = 0;
    int fd = transport_connect(ai, flags);
    if (fd < 0) {
        return fd;
    }
    t->fd = c->fd = fd;
    if (th->sh->resume && c->have_saved) {
        /* A session the server no longer knows only costs a full handshake. */
        mbedtls_ssl_set_session(&c->ssl, &c->saved);
    }
    return 0;
}

/*
 * The handshake is over: note whether it resumed the saved session (a resumed session keeps
 * its master secret; a full handshake makes a new one) and, for --tls-resume, keep the session
 * unless it is the one already saved (copying it parses the server's certificate again).
 */
static void
tls_established(struct transport *t)
{
    struct tls_thread *th = t->env;
    struct tls_conn *c = t->ctx;
    const mbedtls_ssl_session *s = c->ssl.session;

    c->established = true;
    c->resumed =
        c->have_saved && s != NULL && memcmp(s->master, c->saved.master, sizeof(s->master)) == 0;
    if (!th->sh->resume || s == NULL) {
        return;
    }
    bool same = c->resumed;
#if defined(MBEDTLS_SSL_SESSION_TICKETS)
    /* A server may renew the ticket on a resumption: keep the new one. */
    same = same && s->ticket_len == c->saved.ticket_len &&
           (s->ticket_len == 0 || memcmp(s->ticket, c->saved.ticket, s->ticket_len) == 0);
#endif
    if (!same) {
        mbedtls_ssl_session_free(&c->saved);
        mbedtls_ssl_session_init(&c->saved);
        c->have_saved = mbedtls_ssl_get_session(&c->ssl, &c->saved) == 0;
    }
}

static int
tls_handshake(struct transport *t)
{
    struct tls_conn *c = t->ctx;

    if (c->established) {
        return 0;
    }
    int rc = mbedtls_ssl_handshake(&c->ssl);
    if (rc == 0) {
        tls_established(t);
        return 0;
    }
    rc = tls_result(t, rc);
    if (rc != -EAGAIN && c->have_saved) {
        /* Perhaps the session was the trouble: the next connection makes a new one. */
        mbedtls_ssl_session_free(&c->saved);
        mbedtls_ssl_session_init(&c->saved);
        c->have_saved = false;
    }
    return rc;
}

/* Whether mbedTLS or the read-ahead holds received bytes not yet given to the caller. */
static bool
tls_pending(struct transport *t)
{
    struct tls_conn *c = t->ctx;

    return c != NULL && c->established &&
           (mbedtls_ssl_get_bytes_avail(&c->ssl) > 0 || mbedtls_ssl_check_pending(&c->ssl) ||
            c->ra_off < c->ra_len);
}

/*
 * Read every plaintext byte that is already at hand, up to n: bounded by n, and by what one
 * recv() of read-ahead brought (the loop stops once nothing is buffered, rather than ask the
 * socket again and get EAGAIN).
 */
static ssize_t
tls_read(struct transport *t, void *p, size_t n)
{
    struct tls_conn *c = t->ctx;
    size_t got = 0;

    if (c->deferred) {
        c->deferred = false;
        return c->deferred_rc;
    }
    int rc = tls_handshake(t);
    if (rc < 0) {
        return rc;
    }
    while (got < n) {
        rc = mbedtls_ssl_read(&c->ssl, (unsigned char *)p + got, n - got);
        if (rc > 0) {
            got += (size_t)rc;
            if (!tls_pending(t)) {
                break;
            }
            continue;
        }
        ssize_t r =
            (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || rc == MBEDTLS_ERR_SSL_CONN_EOF)
                ? 0
                : tls_result(t, rc);
        if (got == 0) {
            return r;
        }
        if (r != -EAGAIN) {
            /* Give what was read first; the failure is the next read's answer. */
            c->deferred = true;
            c->deferred_rc = r;
        }
        break;
    }
    return (ssize_t)got;
}

static ssize_t
tls_write(struct transport *t, const void *p, size_t n)
{
    struct tls_conn *c = t->ctx;
    int rc = tls_handshake(t);

    if (rc < 0) {
        return rc;
    }
    if (c->wpending > 0) {
        /*
         * The last call's record is encrypted in mbedTLS's buffer. Repeating the call with its
         * length (the caller offers the same first bytes) sends the rest and reports it written;
         * if something else already flushed it, it is written.
         */
        size_t done = c->wpending;
        if (n < done) {
            return -EINVAL;
        }
        if (c->ssl.out_left > 0 && (rc = mbedtls_ssl_write(&c->ssl, p, done)) < 0) {
            return tls_result(t, rc);
        }
        c->wpending = 0;
        return (ssize_t)done;
    }
    if (c->ssl.out_left > 0) {
        /* An alert queued by a read: ssl_write() would send it and take it for our data. */
        if ((rc = mbedtls_ssl_flush_output(&c->ssl)) != 0) {
            return tls_result(t, rc);
        }
    }
    /* One record per call, so that the length kept in wpending is what mbedTLS took. */
    int max = mbedtls_ssl_get_max_out_record_payload(&c->ssl);
    size_t len = max > 0 && n > (size_t)max ? (size_t)max : n;
    rc = mbedtls_ssl_write(&c->ssl, p, len);
    if (rc > 0) {
        return rc;
    }
    if (rc == MBEDTLS_ERR_SSL_WANT_WRITE && c->ssl.out_left > 0) {
        c->wpending = len;
    }
    return tls_result(t, rc);
}

static bool
tls_resumed(struct transport *t)
{
    const struct tls_conn *c = t->ctx;
    return c != NULL && c->resumed;
}

static void
tls_close(struct transport *t)
{
    struct tls_conn *c = t->ctx;

    if (t->fd < 0) {
        return;
    }
    if (c != NULL && c->established) {
        /* One try: the socket is non-blocking, and a close_notify that does not fit is lost. */
        mbedtls_ssl_close_notify(&c->ssl);
    }
    close(t->fd);
    t->fd = -1;
    if (c != NULL) {
        c->fd = -1;
    }
}

static void
tls_release(struct transport *t)
{
    struct tls_conn *c = t->ctx;

    tls_close(t);
    if (c != NULL) {
        mbedtls_ssl_free(&c->ssl);
        mbedtls_ssl_session_free(&c->saved);
        free(c);
        t->ctx = NULL;
    }
}

const struct transport_ops transport_tls = {
    .name = "tls",
    .open = tls_open,
    .handshake = tls_handshake,
    .read = tls_read,
    .write = tls_write,
    .pending = tls_pending,
    .resumed = tls_resumed,
    .describe = tls_describe,
    .close = tls_close,
    .release = tls_release,
};

/* ---- configuration ---- */

/*
 * Certificate check for a server given as an address: mbedTLS 2.28 matches the expected name
 * against the certificate's DNS names and CN only, so the address is matched here against its
 * iPAddress subjectAltNames. Called for each certificate of the chain; only the server's own
 * (depth 0) is concerned.
 */
static int
verify_ip(void *arg, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    const struct tls_shared *s = arg;

    if (depth != 0 || s->iplen == 0) {
        return 0;
    }
    for (const mbedtls_x509_sequence *san = &crt->subject_alt_names; san != NULL; san = san->next) {
        if (san->buf.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7) && san->buf.len == s->iplen &&
            memcmp(san->buf.p, s->ip, s->iplen) == 0) {
            return 0;
        }
    }
    *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    return 0;
}

int
transport_tls_ciphers(const char *list, int *ids, char *err, size_t errlen)
{
    size_t n = 0;
    const char *p = list;

    while (*p != '\0') {
        char name[128];
        size_t len = strcspn(p, ",:");
        if (len == 0 || len >= sizeof(name) || n == TLS_MAX_CIPHERS) {
            snprintf(err, errlen, "--tls-ciphers: '%s' is not a list of at most %d suites", list,
                     TLS_MAX_CIPHERS);
            return -EINVAL;
        }
        for (size_t i = 0; i < len; i++) {
            name[i] = p[i] == '_' ? '-' : p[i]; /* IANA spelling to mbedTLS's */
        }
        name[len] = '\0';
        int id = mbedtls_ssl_get_ciphersuite_id(name);
        if (id == 0) {
            snprintf(err, errlen, "--tls-ciphers: unknown cipher suite '%.*s'", (int)len, p);
            return -EINVAL;
        }
        ids[n++] = id;
        p += len + (p[len] != '\0' ? 1 : 0);
    }
    if (n == 0) {
        snprintf(err, errlen, "--tls-ciphers: empty list");
        return -EINVAL;
    }
    ids[n] = 0;
    return 0;
}

/* Read a whole file and add a NUL (mbedTLS's PEM parser wants one). Returns 0 or -errno. */
static int
slurp(const char *path, unsigned char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;

    if (f == NULL) {
        return -errno;
    }
    for (;;) {
        if (cap - n < 4096) {
            unsigned char *nb = realloc(buf, cap + 65536);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return -ENOMEM;
            }
            buf = nb;
            cap += 65536;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) {
            break;
        }
    }
    int rc = ferror(f) ? -EIO : 0;
    fclose(f);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n + 1;
    return 0;
}

/* Load the certificates of file into crt; on failure say why, naming the option. */
static int
load_certs(mbedtls_x509_crt *crt, const char *opt, const char *path)
{
    unsigned char *buf;
    size_t len;
    char why[160];

    int rc = slurp(path, &buf, &len);
    if (rc < 0) {
        fprintf(stderr, "petrel-bench: %s: cannot load '%s': %s\n", opt, path, strerror(-rc));
        return rc;
    }
    rc = mbedtls_x509_crt_parse(crt, buf, len);
    free(buf);
    if (rc < 0) {
        mbedtls_strerror(rc, why, sizeof(why));
        fprintf(stderr, "petrel-bench: %s: cannot load '%s': %s\n", opt, path, why);
        return -EINVAL;
    }
    if (rc > 0) {
        fprintf(stderr, "petrel-bench: %s: cannot load '%s': %d certificates in it do not parse\n",
                opt, path, rc);
        return -EINVAL;
    }
    return 0;
}

/* Load the client key, check that it is the certificate's, and keep the file for the threads. */
static int
load_key(struct tls_shared *s, const struct tls_opts *o)
{
    mbedtls_pk_context pk;
    char why[160];

    int rc = slurp(o->key, &s->key_pem, &s->key_len);
    if (rc < 0) {
        fprintf(stderr, "petrel-bench: --tls-key: cannot load '%s': %s\n", o->key, strerror(-rc));
        return rc;
    }
    mbedtls_pk_init(&pk);
    rc = mbedtls_pk_parse_key(&pk, s->key_pem, s->key_len, NULL, 0);
    if (rc != 0) {
        mbedtls_strerror(rc, why, sizeof(why));
        fprintf(stderr, "petrel-bench: --tls-key: cannot load '%s': %s\n", o->key, why);
    } else if ((rc = mbedtls_pk_check_pair(&s->cert.pk, &pk)) != 0) {
        fprintf(stderr, "petrel-bench: --tls-key: '%s' is not the key of --tls-cert '%s'\n", o->key,
                o->cert);
    }
    mbedtls_pk_free(&pk);
    return rc == 0 ? 0 : -EINVAL;
}

int
transport_tls_setup(const struct tls_opts *o, const char *host, struct tls_shared **out)
{
    struct tls_shared *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        return -ENOMEM;
    }
    mbedtls_x509_crt_init(&s->ca);
    mbedtls_x509_crt_init(&s->cert);
    s->resume = o->resume;
    /* An address is neither sent as SNI (RFC 6066, 3) nor matched as a name: see verify_ip(). */
    if (o->name == NULL && inet_pton(AF_INET, host, s->ip) == 1) {
        s->iplen = 4;
    } else if (o->name == NULL && inet_pton(AF_INET6, host, s->ip) == 1) {
        s->iplen = 16;
    } else {
        snprintf(s->name, sizeof(s->name), "%s", o->name ? o->name : host);
    }
    memcpy(s->ciphers, o->ciphers, sizeof(s->ciphers));
    if (o->ca != NULL) {
        if (load_certs(&s->ca, "--tls-ca", o->ca) < 0) {
            goto fail;
        }
        s->have_ca = true;
    }
    if (o->cert != NULL) {
        if (load_certs(&s->cert, "--tls-cert", o->cert) < 0 || load_key(s, o) < 0) {
            goto fail;
        }
    }
    *out = s;
    return 0;
fail:
    transport_tls_teardown(&s);
    return -EINVAL;
}

void
transport_tls_teardown(struct tls_shared **sp)
{
    struct tls_shared *s = *sp;

    if (s == NULL) {
        return;
    }
    mbedtls_x509_crt_free(&s->ca);
    mbedtls_x509_crt_free(&s->cert);
    if (s->key_pem != NULL) {
        memset(s->key_pem, 0, s->key_len);
        free(s->key_pem);
    }
    free(s);
    *sp = NULL;
}

static const mbedtls_ecp_group_id curves[] = {
#if defined(MBEDTLS_ECP_DP_CURVE25519_ENABLED)
    MBEDTLS_ECP_DP_CURVE25519,
#endif
    MBEDTLS_ECP_DP_SECP256R1,  MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_SECP521R1,  MBEDTLS_ECP_DP_NONE,
};

int
transport_tls_thread_setup(const struct tls_shared *s, struct tls_thread **out)
{
    static const unsigned char who[] = "petrel-bench";
    struct tls_thread *th = calloc(1, sizeof(*th));
    char why[160];
    int rc;

    if (th == NULL) {
        return -ENOMEM;
    }
    th->sh = s;
    mbedtls_entropy_init(&th->entropy);
    mbedtls_ctr_drbg_init(&th->drbg);
    mbedtls_pk_init(&th->key);
    mbedtls_ssl_config_init(&th->conf);
    if ((rc = mbedtls_ctr_drbg_seed(&th->drbg, mbedtls_entropy_func, &th->entropy, who,
                                    sizeof(who) - 1)) != 0 ||
        (rc = mbedtls_ssl_config_defaults(&th->conf, MBEDTLS_SSL_IS_CLIENT,
                                          MBEDTLS_SSL_TRANSPORT_STREAM,
                                          MBEDTLS_SSL_PRESET_DEFAULT)) != 0) {
        goto fail;
    }
    mbedtls_ssl_conf_rng(&th->conf, mbedtls_ctr_drbg_random, &th->drbg);
    /*
     * mbedTLS offers its curves strongest first, and a server that follows the client's order
     * (OpenSSL's default) then does every ECDHE on secp521r1, several times the cost of what
     * browsers and OpenSSL clients offer first. Offer those first too.
     */
    mbedtls_ssl_conf_curves(&th->conf, curves);
    if (s->have_ca) {
        mbedtls_ssl_conf_authmode(&th->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
        mbedtls_ssl_conf_ca_chain(&th->conf, (mbedtls_x509_crt *)&s->ca, NULL);
        mbedtls_ssl_conf_verify(&th->conf, verify_ip, (void *)s);
    } else {
        mbedtls_ssl_conf_authmode(&th->conf, MBEDTLS_SSL_VERIFY_NONE);
    }
    if (s->key_pem != NULL &&
        ((rc = mbedtls_pk_parse_key(&th->key, s->key_pem, s->key_len, NULL, 0)) != 0 ||
         (rc = mbedtls_ssl_conf_own_cert(&th->conf, (mbedtls_x509_crt *)&s->cert, &th->key)) !=
             0)) {
        goto fail;
    }
    if (s->ciphers[0] != 0) {
        mbedtls_ssl_conf_ciphersuites(&th->conf, s->ciphers);
    }
#if defined(MBEDTLS_SSL_SESSION_TICKETS)
    mbedtls_ssl_conf_session_tickets(&th->conf, MBEDTLS_SSL_SESSION_TICKETS_ENABLED);
#endif
    *out = th;
    return 0;
fail:
    mbedtls_strerror(rc, why, sizeof(why));
    fprintf(stderr, "petrel-bench: cannot set up TLS: %s\n", why);
    transport_tls_thread_teardown(&th);
    return rc == MBEDTLS_ERR_SSL_ALLOC_FAILED ? -ENOMEM : -EINVAL;
}

void
transport_tls_thread_teardown(struct tls_thread **tp)
{
    struct tls_thread *th = *tp;

    if (th == NULL) {
        return;
    }
    mbedtls_ssl_config_free(&th->conf);
    mbedtls_pk_free(&th->key);
    mbedtls_ctr_drbg_free(&th->drbg);
    mbedtls_entropy_free(&th->entropy);
    free(th);
    *tp = NULL;
}
