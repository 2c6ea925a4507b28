/*
 * Unit tests of src/io/tls.c: a session of a real server (a P-256 key and certificate made for the
 * run) against an mbedTLS client, over a socket pair. What an edge-triggered event loop needs of
 * the transport: after a read event, reading until a short read with nothing pending must have
 * delivered every byte the client sent, whatever records carried them.
 */
#include "petrel/tls.h"
#include "tls_identity.h"

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/ssl.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char dir[] = "/tmp/petrel-test-tls-XXXXXX";
static char cert[256], key[256];
static struct tls_server *srv;
static int sv[2]; /* [0] the client's end, [1] the server's */
static struct transport t;

static mbedtls_ssl_context cli;
static mbedtls_ssl_config cconf;
static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;

static int
cli_send(void *ctx, const unsigned char *p, size_t n)
{
    ssize_t r = send(*(int *)ctx, p, n, MSG_NOSIGNAL);
    return r >= 0 ? (int)r : errno == EAGAIN ? MBEDTLS_ERR_SSL_WANT_WRITE : -1;
}

static int
cli_recv(void *ctx, unsigned char *p, size_t n)
{
    ssize_t r = recv(*(int *)ctx, p, n, 0);
    return r >= 0 ? (int)r : errno == EAGAIN ? MBEDTLS_ERR_SSL_WANT_READ : -1;
}

/* A server session and a client over a socket pair, both through the handshake. */
static void
setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(tls_identity_make(dir, cert, key, sizeof(cert)), 0);
    char err[256];
    const struct tls_settings s = {.cert = cert,
                                   .key = key,
                                   .ca = "",
                                   .ciphers = "",
                                   .verify = TLS_VERIFY_NONE,
                                   .session_lifetime = 60};
    cr_assert_eq(tls_server_new(&s, NULL, &srv, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct tls_session *ss = tls_session_new(srv, sv[1]);
    cr_assert_not_null(ss);

    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_ssl_config_init(&cconf);
    mbedtls_ssl_init(&cli);
    cr_assert_eq(mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0), 0);
    cr_assert_eq(mbedtls_ssl_config_defaults(&cconf, MBEDTLS_SSL_IS_CLIENT,
                                             MBEDTLS_SSL_TRANSPORT_STREAM,
                                             MBEDTLS_SSL_PRESET_DEFAULT),
                 0);
    mbedtls_ssl_conf_authmode(&cconf, MBEDTLS_SSL_VERIFY_NONE);
    mbedtls_ssl_conf_rng(&cconf, mbedtls_ctr_drbg_random, &drbg);
    /* The client may try to renegotiate; the server must refuse. */
    mbedtls_ssl_conf_renegotiation(&cconf, MBEDTLS_SSL_RENEGOTIATION_ENABLED);
    cr_assert_eq(mbedtls_ssl_setup(&cli, &cconf), 0);
    mbedtls_ssl_set_bio(&cli, &sv[0], cli_send, cli_recv, NULL);

    bool cdone = false, sdone = false;
    for (int i = 0; i < 1000 && !(cdone && sdone); i++) {
        if (!cdone) {
            int rc = mbedtls_ssl_handshake(&cli);
            cr_assert(rc == 0 || rc == MBEDTLS_ERR_SSL_WANT_READ ||
                          rc == MBEDTLS_ERR_SSL_WANT_WRITE,
                      "client handshake: -0x%x", -rc);
            cdone = rc == 0;
        }
        if (!sdone) {
            enum tls_failure why;
            char detail[200];
            int rc = tls_handshake(ss, &why, detail, sizeof(detail));
            cr_assert(rc == 0 || rc == -EAGAIN, "server handshake: %s", detail);
            sdone = rc == 0;
        }
    }
    cr_assert(cdone && sdone, "the handshake did not finish");
    transport_tls_init(&t, ss);
}

static void
teardown(void)
{
    if (t.ops != NULL) {
        t.ops->close(&t);
    }
    mbedtls_ssl_free(&cli);
    mbedtls_ssl_config_free(&cconf);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    close(sv[0]);
    tls_server_put(srv);
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

TestSuite(tls, .init = setup, .fini = teardown, .timeout = 30);

static void
client_write(const void *p, size_t n)
{
    cr_assert_eq(mbedtls_ssl_write(&cli, p, n), (int)n);
}

/*
 * What an edge-triggered loop does on one read event: read with `room` bytes at a time until a
 * read says -EAGAIN, or comes back short with nothing pending in the transport (the contract of
 * transport.h). Returns the bytes read (into out), or the error.
 */
static ssize_t
read_event(char *out, size_t cap, size_t room)
{
    size_t got = 0;
    for (int i = 0; i < 10000; i++) {
        size_t want = cap - got < room ? cap - got : room;
        if (want == 0) {
            return (ssize_t)got;
        }
        ssize_t n = t.ops->read(&t, out + got, want);
        if (n < 0 && n != -EAGAIN) {
            return n;
        }
        if (n > 0) {
            got += (size_t)n;
        }
        if (n == -EAGAIN || ((size_t)n < want && t.ops->pending(&t) == 0)) {
            return (ssize_t)got;
        }
    }
    cr_fail("the transport never stopped");
    return -1;
}

Test(tls, a_request_after_a_warning_alert_arrives_in_the_same_read_event)
{
    cr_assert_eq(mbedtls_ssl_send_alert_message(&cli, MBEDTLS_SSL_ALERT_LEVEL_WARNING,
                                                MBEDTLS_SSL_ALERT_MSG_NO_RENEGOTIATION),
                 0);
    client_write("version\r\n", 9);
    char buf[64];
    ssize_t n = read_event(buf, sizeof(buf), sizeof(buf));
    cr_assert_eq(n, 9, "read %zd", n);
    cr_assert(memcmp(buf, "version\r\n", 9) == 0);
}

Test(tls, empty_records_before_a_request_do_not_end_the_stream)
{
    client_write("", 0);
    client_write("", 0);
    client_write("", 0);
    client_write("get k\r\n", 7);
    char buf[64];
    ssize_t n = read_event(buf, sizeof(buf), sizeof(buf));
    cr_assert_eq(n, 7, "read %zd", n);
    cr_assert(memcmp(buf, "get k\r\n", 7) == 0);
}

Test(tls, many_records_through_a_small_room_all_arrive_in_one_read_event)
{
    static char sent[48000], got[48000]; /* within the socket pair's buffer */
    for (size_t i = 0; i < sizeof(sent); i++) {
        sent[i] = (char)('a' + i % 23);
    }
    /* Records of every size, most of them split across reads of 1,000 bytes. */
    size_t off = 0;
    for (size_t k = 1; off < sizeof(sent); k = k * 3 % 9000 + 1) {
        size_t len = k < sizeof(sent) - off ? k : sizeof(sent) - off;
        client_write(sent + off, len);
        off += len;
    }
    ssize_t n = read_event(got, sizeof(got), 1000);
    cr_assert_eq(n, (ssize_t)sizeof(sent), "read %zd of %zu", n, sizeof(sent));
    cr_assert(memcmp(sent, got, sizeof(sent)) == 0);
}

Test(tls, a_renegotiation_attempt_fails_the_read_with_eproto)
{
    int rc = mbedtls_ssl_renegotiate(&cli);
    cr_assert(rc == 0 || rc == MBEDTLS_ERR_SSL_WANT_READ, "renegotiate: -0x%x", -rc);
    char buf[64];
    ssize_t n = read_event(buf, sizeof(buf), sizeof(buf));
    cr_assert_eq(n, -EPROTO, "read %zd", n);
    cr_assert(strstr(tls_session_error(transport_tls_session(&t)), "renegotiate") != NULL);
}

Test(tls, writev_sends_the_buffers_in_order)
{
    struct iovec iov[3] = {{"VALUE k 0 5\r\n", 13}, {"hello", 5}, {"\r\nEND\r\n", 7}};
    ssize_t n = t.ops->writev(&t, iov, 3);
    cr_assert_eq(n, 25);
    char buf[64];
    int r = 0;
    for (int i = 0; i < 100 && r <= 0; i++) {
        r = mbedtls_ssl_read(&cli, (unsigned char *)buf, sizeof(buf));
    }
    cr_assert_eq(r, 25, "one record of all three: %d", r);
    cr_assert(memcmp(buf, "VALUE k 0 5\r\nhello\r\nEND\r\n", 25) == 0);
}

Test(tls, the_end_of_the_stream_reads_as_zero)
{
    cr_assert_eq(mbedtls_ssl_close_notify(&cli), 0);
    char buf[16];
    cr_assert_eq(t.ops->read(&t, buf, sizeof(buf)), 0);
}
