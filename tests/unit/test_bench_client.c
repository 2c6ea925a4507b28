/*
 * Unit tests for perf/bench/client: whole runs against a small in-process responder, checking
 * the accounting (every request answered and counted once, the open-loop schedule kept), and
 * the same over TLS against an mbedTLS responder with certificates made here; then the connect
 * load (--connect-rate), with and without TLS session resumption.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "opts.h"
#include "petrel_build.h"

/*
 * The responder: one thread, epoll, answers memcache text and ping the simplest way — every key
 * of a get is a hit with a 3-byte value, sets are stored, deletes delete, incr returns 1. With
 * `hangup_after` > 0 it closes each connection after that many replies.
 */
struct responder {
    int lfd;
    int port;
    int hangup_after;
    atomic_bool stop;
    pthread_t tid;
};

struct rconn {
    char buf[1 << 16];
    size_t len;
    int replies;
};

static size_t
answer_line(const char *line, size_t len, const char *rest, size_t restlen, char *out, size_t *olen,
            size_t *consumed)
{
    *consumed = len;
    if (len >= 4 && memcmp(line, "get ", 4) == 0) {
        const char *p = line + 4, *end = line + len - 2;
        while (p < end) {
            const char *sp = memchr(p, ' ', (size_t)(end - p));
            size_t klen = sp ? (size_t)(sp - p) : (size_t)(end - p);
            *olen += (size_t)sprintf(out + *olen, "VALUE %.*s 0 3\r\nabc\r\n", (int)klen, p);
            p += klen + 1;
        }
        *olen += (size_t)sprintf(out + *olen, "END\r\n");
    } else if (len >= 4 && memcmp(line, "set ", 4) == 0) {
        const char *sp = line + len;
        while (sp > line && sp[-1] != ' ') {
            sp--;
        }
        size_t bytes = (size_t)atol(sp);
        if (restlen < bytes + 2) {
            return 0;
        }
        *consumed = len + bytes + 2;
        *olen += (size_t)sprintf(out + *olen, "STORED\r\n");
    } else if (len >= 7 && memcmp(line, "delete ", 7) == 0) {
        *olen += (size_t)sprintf(out + *olen, "DELETED\r\n");
    } else if (len >= 5 && memcmp(line, "incr ", 5) == 0) {
        *olen += (size_t)sprintf(out + *olen, "1\r\n");
    } else if (len == 6 && memcmp(line, "PING\r\n", 6) == 0) {
        *olen += (size_t)sprintf(out + *olen, "PONG\r\n");
    } else {
        *olen += (size_t)sprintf(out + *olen, "ERROR\r\n");
    }
    return 1;
}

/*
 * Answer every complete request in c->buf into out (large enough for the replies to a full
 * buffer) and keep the incomplete rest. Returns false when the connection is to be hung up.
 */
static bool
answer_all(int hangup_after, struct rconn *c, char *out, size_t *olenp)
{
    size_t olen = 0, pos = 0;
    bool keep = true;

    for (;;) {
        char *nl = memchr(c->buf + pos, '\n', c->len - pos);
        size_t used;
        if (nl == NULL) {
            break;
        }
        size_t len = (size_t)(nl - (c->buf + pos)) + 1;
        if (!answer_line(c->buf + pos, len, c->buf + pos + len, c->len - pos - len, out, &olen,
                         &used)) {
            break;
        }
        pos += used;
        if (hangup_after && ++c->replies >= hangup_after) {
            keep = false;
            break;
        }
    }
    memmove(c->buf, c->buf + pos, c->len - pos);
    c->len -= pos;
    *olenp = olen;
    return keep;
}

static bool
serve(struct responder *r, int fd, struct rconn *c)
{
    static char out[1 << 20];
    size_t olen = 0;
    ssize_t n = read(fd, c->buf + c->len, sizeof(c->buf) - c->len);
    if (n <= 0) {
        return false;
    }
    c->len += (size_t)n;
    if (!answer_all(r->hangup_after, c, out, &olen)) {
        return false;
    }
    return write(fd, out, olen) == (ssize_t)olen;
}

static void *
responder_main(void *arg)
{
    struct responder *r = arg;
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, r->lfd, &ev);
    struct rconn *conns[64] = {0};
    int fds[64];
    int nc = 0;

    while (!atomic_load(&r->stop)) {
        struct epoll_event evs[16];
        int n = epoll_wait(ep, evs, 16, 20);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                /* A closed connection's slot is reused: the connect load opens thousands. */
                int fd = accept(r->lfd, NULL, NULL), k = 0;
                while (k < nc && fds[k] >= 0) {
                    k++;
                }
                if (fd < 0 || k == 64) {
                    if (fd >= 0) {
                        close(fd);
                    }
                    continue;
                }
                if (k == nc) {
                    conns[nc++] = malloc(sizeof(struct rconn));
                }
                memset(conns[k], 0, sizeof(struct rconn));
                fds[k] = fd;
                struct epoll_event e = {.events = EPOLLIN, .data.ptr = &fds[k]};
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
                continue;
            }
            int k = (int)((int *)evs[i].data.ptr - fds);
            if (fds[k] >= 0 && !serve(r, fds[k], conns[k])) {
                close(fds[k]);
                fds[k] = -1;
            }
        }
    }
    for (int i = 0; i < nc; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
        free(conns[i]);
    }
    close(ep);
    return NULL;
}

static void
responder_start(struct responder *r, int hangup_after)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);

    memset(r, 0, sizeof(*r));
    r->hangup_after = hangup_after;
    r->lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(r->lfd, 0);
    cr_assert_eq(bind(r->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(r->lfd, 64), 0);
    cr_assert_eq(getsockname(r->lfd, (struct sockaddr *)&a, &alen), 0);
    r->port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(&r->tid, NULL, responder_main, r), 0);
}

static void
responder_stop(struct responder *r)
{
    atomic_store(&r->stop, true);
    pthread_join(r->tid, NULL);
    close(r->lfd);
}

/* Run petrel-bench with the given arguments (after --server) against port. */
static int
run(int port, struct bench_opts *o, struct workload *w, struct bench_result *res, char **args,
    int nargs)
{
    char server[32], err[256];
    char *argv[32] = {"petrel-bench", "--server", server};
    snprintf(server, sizeof(server), "127.0.0.1:%d", port);
    for (int i = 0; i < nargs; i++) {
        argv[3 + i] = args[i];
    }
    cr_assert_eq(bench_opts_parse(o, 3 + nargs, argv, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(workload_init(w, &o->wl), 0);
    return bench_run(o, w, res);
}

Test(bench_client, a_closed_loop_run_answers_and_counts_every_request)
{
    struct responder r;
    struct bench_opts o;
    struct workload w;
    struct bench_result res;
    char *args[] = {"-t",  "2",      "-c",  "4",       "-d",      "4",  "-w", "0.05",     "-D",
                    "0.3", "--keys", "500", "--ratio", "1:1:1:1", "-m", "3",  "--preload"};

    responder_start(&r, 0);
    cr_assert_eq(run(r.port, &o, &w, &res, args, sizeof(args) / sizeof(args[0])), 0);
    const struct bench_stats *s = &res.total;
    cr_assert_eq(s->preload_sets, 1000, "preload wrote %lu", (unsigned long)s->preload_sets);
    cr_assert_eq(s->preload_errors, 0);
    cr_assert_gt(s->requests, 100);
    cr_assert_eq(s->latency.total, s->requests);
    cr_assert_eq(s->by_op[OP_GET] + s->by_op[OP_SET] + s->by_op[OP_DELETE] + s->by_op[OP_INCR],
                 s->requests);
    for (int op = OP_GET; op <= OP_INCR; op++) {
        cr_assert_gt(s->by_op[op], 0, "no %s", workload_op_name(op));
    }
    cr_assert_eq(s->get_keys, 3 * s->by_op[OP_GET]);
    cr_assert_eq(s->get_hits, s->get_keys);
    cr_assert_eq(s->errors + s->conn_errors + s->unfinished, 0);
    cr_assert_float_eq(res.measured_s, 0.3, 1e-6);
    bench_stats_free(&res.total);
    workload_free(&w);
    responder_stop(&r);
}

Test(bench_client, an_open_loop_run_sends_exactly_its_schedule)
{
    struct responder r;
    struct bench_opts o;
    struct workload w;
    struct bench_result res;
    char *args[] = {"-t", "2", "-c", "4", "--rate", "2000", "-w", "0.1", "-D", "0.5"};

    responder_start(&r, 0);
    cr_assert_eq(run(r.port, &o, &w, &res, args, sizeof(args) / sizeof(args[0])), 0);
    const struct bench_stats *s = &res.total;
    /* 2000/s for 0.5 s: 1000 requests, give or take one per connection at the window's edges. */
    cr_assert(s->scheduled >= 996 && s->scheduled <= 1004, "scheduled %lu",
              (unsigned long)s->scheduled);
    cr_assert_eq(s->requests, s->scheduled);
    cr_assert_eq(s->unfinished, 0);
    cr_assert_eq(s->send_lag.total, s->scheduled);
    cr_assert_eq(s->errors + s->conn_errors, 0);
    bench_stats_free(&res.total);
    workload_free(&w);
    responder_stop(&r);
}

Test(bench_client, a_ping_run_counts_pings)
{
    struct responder r;
    struct bench_opts o;
    struct workload w;
    struct bench_result res;
    char *args[] = {"--protocol", "ping", "-c", "2", "-d", "8", "-w", "0", "-D", "0.2"};

    responder_start(&r, 0);
    cr_assert_eq(run(r.port, &o, &w, &res, args, sizeof(args) / sizeof(args[0])), 0);
    cr_assert_gt(res.total.requests, 100);
    cr_assert_eq(res.total.by_op[OP_PING], res.total.requests);
    cr_assert_eq(res.total.get_keys, 0);
    cr_assert_eq(res.total.errors + res.total.conn_errors, 0);
    bench_stats_free(&res.total);
    workload_free(&w);
    responder_stop(&r);
}

Test(bench_client, lost_connections_are_counted_and_the_run_ends)
{
    struct responder r;
    struct bench_opts o;
    struct workload w;
    struct bench_result res;
    char *args[] = {"-c", "3", "-w", "0", "-D", "0.2"};

    responder_start(&r, 10);
    cr_assert_eq(run(r.port, &o, &w, &res, args, sizeof(args) / sizeof(args[0])), 0);
    cr_assert_eq(res.total.conn_errors, 3);
    cr_assert_leq(res.total.requests, 30);
    bench_stats_free(&res.total);
    workload_free(&w);
    responder_stop(&r);
}

Test(bench_client, an_unreachable_server_fails_the_run)
{
    struct responder r;
    struct bench_opts o;
    struct workload w;
    struct bench_result res;
    char *args[] = {"-c", "1", "-D", "0.1"};

    /* A port that was just free: bound, read, closed. */
    responder_start(&r, 0);
    int port = r.port;
    responder_stop(&r);
    cr_assert_lt(run(port, &o, &w, &res, args, sizeof(args) / sizeof(args[0])), 0);
    workload_free(&w);
}

Test(bench_client, a_connect_load_at_a_rate_completes_its_schedule)
{
    struct responder r;
    struct bench_opts o;
    struct workload w;
    struct bench_result res;
    char *args[] = {"-c", "0", "--connect-rate", "500", "-w", "0.05", "-D", "0.4"};

    responder_start(&r, 0);
    cr_assert_eq(run(r.port, &o, &w, &res, args, sizeof(args) / sizeof(args[0])), 0);
    const struct bench_stats *s = &res.total;
    /* 500/s for 0.4 s: 200 connections, give or take one at each edge of the window. */
    cr_assert(s->conns_scheduled >= 199 && s->conns_scheduled <= 201, "scheduled %lu",
              (unsigned long)s->conns_scheduled);
    cr_assert_eq(s->conns, s->conns_scheduled);
    cr_assert_eq(s->conn_latency.total, s->conns);
    cr_assert_eq(s->conn_failures + s->conns_unfinished + s->conns_resumed, 0);
    cr_assert_eq(s->requests, 0, "no normal load with --connections 0");
    bench_stats_free(&res.total);
    workload_free(&w);
    responder_stop(&r);
}

Test(bench_client, a_connect_load_beside_the_normal_load_measures_both)
{
    struct responder r;
    struct bench_opts o;
    struct workload w;
    struct bench_result res;
    char *args[] = {"-c",
                    "2",
                    "-d",
                    "2",
                    "-w",
                    "0.05",
                    "-D",
                    "0.3",
                    "--connect-rate",
                    "max",
                    "-P",
                    "ping",
                    "--connect-inflight",
                    "4"};

    responder_start(&r, 0);
    cr_assert_eq(run(r.port, &o, &w, &res, args, sizeof(args) / sizeof(args[0])), 0);
    const struct bench_stats *s = &res.total;
    cr_assert_gt(s->requests, 100);
    cr_assert_gt(s->conns, 20);
    cr_assert_eq(s->conns_scheduled, 0, "max has no schedule");
    cr_assert_eq(s->errors + s->conn_errors + s->conn_failures + s->conns_unfinished, 0);
    bench_stats_free(&res.total);
    workload_free(&w);
    responder_stop(&r);
}

Test(bench_client, a_connect_load_that_cannot_connect_fails_the_run)
{
    struct responder r;
    struct bench_opts o;
    struct workload w;
    struct bench_result res;
    char *args[] = {"-c", "0", "--connect-rate", "10", "-D", "0.1"};

    responder_start(&r, 0);
    int port = r.port;
    responder_stop(&r);
    cr_assert_lt(run(port, &o, &w, &res, args, sizeof(args) / sizeof(args[0])), 0);
    workload_free(&w);
}

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/x509_crt.h>

#include "tls_identity.h"

/*
 * The certificates, made for each test: a CA, a server certificate it signs for "localhost" and
 * 127.0.0.1, and a second CA that signed nothing here. Written as PEM files into a temporary
 * directory for the options; the server's are also kept in memory for the responder.
 */
struct pki {
    char dir[64];
    char ca[96], other_ca[96];
    unsigned char srv_crt[4096], srv_key[4096];
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
};

static void
write_file(const char *path, const unsigned char *pem)
{
    cr_assert_eq(tls_test_write(path, pem), 0, "%s", path);
}

static void
gen_key(struct pki *k, mbedtls_pk_context *key)
{
    cr_assert_eq(tls_test_key(key, &k->drbg), 0);
}

/* A certificate for subject's key, signed by issuer_key; a CA if san is NULL. */
static void
gen_cert(struct pki *k, const char *subject, mbedtls_pk_context *key, const char *issuer,
         mbedtls_pk_context *issuer_key, const unsigned char *san, size_t sanlen,
         unsigned char *pem, size_t pemlen)
{
    cr_assert_eq(
        tls_test_cert(subject, key, issuer, issuer_key, san, sanlen, &k->drbg, pem, pemlen), 0,
        "%s", subject);
}

static void
pki_make(struct pki *k)
{
    /* subjectAltName: DNS "localhost", IP 127.0.0.1 */
    static const unsigned char san[] = {0x30, 0x11, 0x82, 0x09, 'l',  'o',  'c',  'a',  'l', 'h',
                                        'o',  's',  't',  0x87, 0x04, 0x7f, 0x00, 0x00, 0x01};
    mbedtls_pk_context ca_key, other_key, srv_key;
    unsigned char pem[4096];
    char path[128];

    memset(k, 0, sizeof(*k));
    mbedtls_entropy_init(&k->entropy);
    mbedtls_ctr_drbg_init(&k->drbg);
    cr_assert_eq(mbedtls_ctr_drbg_seed(&k->drbg, mbedtls_entropy_func, &k->entropy, NULL, 0), 0);
    snprintf(k->dir, sizeof(k->dir), "/tmp/test_bench_tls.XXXXXX");
    cr_assert_not_null(mkdtemp(k->dir));
    gen_key(k, &ca_key);
    gen_key(k, &other_key);
    gen_key(k, &srv_key);

    gen_cert(k, "CN=bench test CA", &ca_key, "CN=bench test CA", &ca_key, NULL, 0, pem,
             sizeof(pem));
    snprintf(k->ca, sizeof(k->ca), "%s/ca.pem", k->dir);
    write_file(k->ca, pem);
    gen_cert(k, "CN=another CA", &other_key, "CN=another CA", &other_key, NULL, 0, pem,
             sizeof(pem));
    snprintf(k->other_ca, sizeof(k->other_ca), "%s/other-ca.pem", k->dir);
    write_file(k->other_ca, pem);
    gen_cert(k, "CN=localhost", &srv_key, "CN=bench test CA", &ca_key, san, sizeof(san), k->srv_crt,
             sizeof(k->srv_crt));
    cr_assert_eq(mbedtls_pk_write_key_pem(&srv_key, k->srv_key, sizeof(k->srv_key)), 0);
    /* The server's certificate and key also serve as a client certificate for --tls-cert. */
    snprintf(path, sizeof(path), "%s/srv.pem", k->dir);
    write_file(path, k->srv_crt);
    snprintf(path, sizeof(path), "%s/srv.key", k->dir);
    write_file(path, k->srv_key);
    mbedtls_pk_free(&ca_key);
    mbedtls_pk_free(&other_key);
    mbedtls_pk_free(&srv_key);
}

static void
pki_free(struct pki *k)
{
    const char *names[] = {"ca.pem", "other-ca.pem", "srv.pem", "srv.key"};
    char path[128];

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", k->dir, names[i]);
        unlink(path);
    }
    rmdir(k->dir);
    mbedtls_ctr_drbg_free(&k->drbg);
    mbedtls_entropy_free(&k->entropy);
}

/*
 * The TLS responder: blocking sockets, a thread per connection, the same answers as the plain
 * responder. Sessions are cached (session IDs), so clients can resume them; with
 * `want_client_cert` it requires a client certificate signed by the test CA.
 */
struct tls_responder {
    int lfd;
    int port;
    atomic_bool stop;
    atomic_int active; /* connection threads still running */
    pthread_t tid;
    mbedtls_ssl_config conf;
    mbedtls_x509_crt crt;
    mbedtls_x509_crt ca;
    mbedtls_pk_context key;
    mbedtls_ssl_cache_context cache;
    struct pki *pki;
};

struct tls_rconn_arg {
    struct tls_responder *r;
    int fd;
};

static void *
tls_rconn_main(void *arg)
{
    struct tls_rconn_arg a = *(struct tls_rconn_arg *)arg;
    mbedtls_net_context net = {.fd = a.fd};
    mbedtls_ssl_context ssl;
    struct rconn *c = calloc(1, sizeof(*c));
    char *out = malloc(1 << 20);

    free(arg);
    mbedtls_ssl_init(&ssl);
    if (c == NULL || out == NULL || mbedtls_ssl_setup(&ssl, &a.r->conf) != 0) {
        goto done;
    }
    mbedtls_ssl_set_bio(&ssl, &net, mbedtls_net_send, mbedtls_net_recv, NULL);
    if (mbedtls_ssl_handshake(&ssl) != 0) {
        goto done;
    }
    for (;;) {
        int n = mbedtls_ssl_read(&ssl, (unsigned char *)c->buf + c->len, sizeof(c->buf) - c->len);
        size_t olen = 0, sent = 0;
        if (n <= 0) {
            break;
        }
        c->len += (size_t)n;
        answer_all(0, c, out, &olen);
        while (sent < olen) {
            int w = mbedtls_ssl_write(&ssl, (unsigned char *)out + sent, olen - sent);
            if (w <= 0) {
                goto done;
            }
            sent += (size_t)w;
        }
    }
done:
    mbedtls_ssl_free(&ssl);
    close(a.fd);
    free(c);
    free(out);
    atomic_fetch_sub(&a.r->active, 1);
    return NULL;
}

static void *
tls_responder_main(void *arg)
{
    struct tls_responder *r = arg;
    struct pollfd pfd = {.fd = r->lfd, .events = POLLIN};

    while (!atomic_load(&r->stop)) {
        if (poll(&pfd, 1, 20) <= 0) {
            continue;
        }
        int fd = accept(r->lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        struct tls_rconn_arg *a = malloc(sizeof(*a));
        pthread_t tid;
        a->r = r;
        a->fd = fd;
        atomic_fetch_add(&r->active, 1);
        cr_assert_eq(pthread_create(&tid, NULL, tls_rconn_main, a), 0);
        pthread_detach(tid);
    }
    return NULL;
}

static void
tls_responder_start(struct tls_responder *r, struct pki *k, bool want_client_cert)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);

    memset(r, 0, sizeof(*r));
    r->pki = k;
    /* mbedtls_net_send() writes to sockets the client may have closed. */
    signal(SIGPIPE, SIG_IGN);
    mbedtls_ssl_config_init(&r->conf);
    mbedtls_x509_crt_init(&r->crt);
    mbedtls_x509_crt_init(&r->ca);
    mbedtls_pk_init(&r->key);
    mbedtls_ssl_cache_init(&r->cache);
    cr_assert_eq(mbedtls_x509_crt_parse(&r->crt, k->srv_crt, strlen((char *)k->srv_crt) + 1), 0);
    cr_assert_eq(mbedtls_x509_crt_parse_file(&r->ca, k->ca), 0);
    cr_assert_eq(mbedtls_pk_parse_key(&r->key, k->srv_key, strlen((char *)k->srv_key) + 1, NULL, 0),
                 0);
    cr_assert_eq(mbedtls_ssl_config_defaults(&r->conf, MBEDTLS_SSL_IS_SERVER,
                                             MBEDTLS_SSL_TRANSPORT_STREAM,
                                             MBEDTLS_SSL_PRESET_DEFAULT),
                 0);
    /* One generator for every connection thread: mbedTLS locks it (MBEDTLS_THREADING_C). */
    mbedtls_ssl_conf_rng(&r->conf, mbedtls_ctr_drbg_random, &k->drbg);
    cr_assert_eq(mbedtls_ssl_conf_own_cert(&r->conf, &r->crt, &r->key), 0);
    mbedtls_ssl_conf_session_cache(&r->conf, &r->cache, mbedtls_ssl_cache_get,
                                   mbedtls_ssl_cache_set);
    if (want_client_cert) {
        mbedtls_ssl_conf_ca_chain(&r->conf, &r->ca, NULL);
        mbedtls_ssl_conf_authmode(&r->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    }
    r->lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(r->lfd, 0);
    cr_assert_eq(bind(r->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(r->lfd, 128), 0);
    cr_assert_eq(getsockname(r->lfd, (struct sockaddr *)&a, &alen), 0);
    r->port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(&r->tid, NULL, tls_responder_main, r), 0);
}

static void
tls_responder_stop(struct tls_responder *r)
{
    atomic_store(&r->stop, true);
    pthread_join(r->tid, NULL);
    close(r->lfd);
    /* The client closed its connections when its run ended; their threads see it and end. */
    for (int i = 0; i < 500 && atomic_load(&r->active) > 0; i++) {
        usleep(10000);
    }
    cr_assert_eq(atomic_load(&r->active), 0, "connection threads still running");
    mbedtls_ssl_cache_free(&r->cache);
    mbedtls_ssl_config_free(&r->conf);
    mbedtls_x509_crt_free(&r->crt);
    mbedtls_x509_crt_free(&r->ca);
    mbedtls_pk_free(&r->key);
}

Test(bench_client, a_tls_run_verifies_the_server_and_counts_every_request)
{
    struct pki k;
    struct tls_responder r;
    struct bench_opts o;
    struct workload w;
    struct bench_result res;

    pki_make(&k);
    tls_responder_start(&r, &k, false);
    /* Verified by address (the certificate's iPAddress name), then by name. */
    char *args[] = {"--tls", "--tls-ca", k.ca,      "-t",        "2",          "-c",       "4",
                    "-d",    "4",        "-w",      "0.05",      "-D",         "0.3",      "--keys",
                    "200",   "--ratio",  "1:1:1:1", "--preload", "--tls-name", "localhost"};
    size_t nargs = sizeof(args) / sizeof(args[0]);
    for (int pass = 0; pass < 2; pass++) {
        cr_assert_eq(run(r.port, &o, &w, &res, args, (int)nargs - (pass == 0 ? 2 : 0)), 0);
        const struct bench_stats *s = &res.total;
        cr_assert_eq(s->preload_sets, 400);
        cr_assert_gt(s->requests, 50);
        cr_assert_eq(s->latency.total, s->requests);
        cr_assert_eq(s->get_hits, s->get_keys);
        cr_assert_eq(s->errors + s->conn_errors + s->unfinished, 0);
        bench_stats_free(&res.total);
        workload_free(&w);
    }
    tls_responder_stop(&r);
    pki_free(&k);
}

Test(bench_client, a_tls_run_moves_large_requests_and_replies)
{
    struct pki k;
    struct tls_responder r;
    struct bench_opts o;
    struct workload w;
    struct bench_result res;

    pki_make(&k);
    tls_responder_start(&r, &k, false);
    /* Sets of 30 kB (two records each) and gets of 200 keys of 200 B (replies of 48 kB). */
    char *args[] = {"--tls",      "-c",  "2",  "-d",    "2",  "-w",  "0",       "-D", "0.3",
                    "--key-size", "200", "-v", "30000", "-m", "200", "--ratio", "1:1"};
    cr_assert_eq(run(r.port, &o, &w, &res, args, sizeof(args) / sizeof(args[0])), 0);
    const struct bench_stats *s = &res.total;
    cr_assert_gt(s->by_op[OP_GET], 5);
    cr_assert_gt(s->by_op[OP_SET], 5);
    cr_assert_eq(s->get_hits, s->get_keys);
    cr_assert_eq(s->errors + s->conn_errors + s->unfinished, 0);
    bench_stats_free(&res.total);
    workload_free(&w);
    tls_responder_stop(&r);
    pki_free(&k);
}

Test(bench_client, a_tls_run_against_a_server_of_another_ca_fails)
{
    struct pki k;
    struct tls_responder r;
    struct bench_opts o;
    struct workload w;
    struct bench_result res;

    pki_make(&k);
    tls_responder_start(&r, &k, false);
    char *args[] = {"--tls", "--tls-ca", k.other_ca, "-c", "2", "-D", "0.1"};
    cr_assert_lt(run(r.port, &o, &w, &res, args, sizeof(args) / sizeof(args[0])), 0);
    workload_free(&w);
    /* The right CA, but a name the certificate does not carry. */
    char *args2[] = {"--tls", "--tls-ca", k.ca, "--tls-name", "petrel.test",
                     "-c",    "1",        "-D", "0.1"};
    cr_assert_lt(run(r.port, &o, &w, &res, args2, sizeof(args2) / sizeof(args2[0])), 0);
    workload_free(&w);
    tls_responder_stop(&r);
    pki_free(&k);
}

Test(bench_client, mutual_tls_sends_the_client_certificate)
{
    struct pki k;
    struct tls_responder r;
    struct bench_opts o;
    struct workload w;
    struct bench_result res;
    char cert[128], key[128];

    pki_make(&k);
    snprintf(cert, sizeof(cert), "%s/srv.pem", k.dir);
    snprintf(key, sizeof(key), "%s/srv.key", k.dir);
    tls_responder_start(&r, &k, true);
    char *without[] = {"--tls", "-c", "1", "-D", "0.1"};
    cr_assert_lt(run(r.port, &o, &w, &res, without, sizeof(without) / sizeof(without[0])), 0);
    workload_free(&w);
    char *with[] = {"--tls", "--tls-cert", cert, "--tls-key", key,  "-c",
                    "2",     "-w",         "0",  "-D",        "0.2"};
    cr_assert_eq(run(r.port, &o, &w, &res, with, sizeof(with) / sizeof(with[0])), 0);
    cr_assert_gt(res.total.requests, 10);
    cr_assert_eq(res.total.conn_errors, 0);
    bench_stats_free(&res.total);
    workload_free(&w);
    tls_responder_stop(&r);
    pki_free(&k);
}

Test(bench_client, the_tls_connect_load_resumes_sessions_only_when_asked)
{
    struct pki k;
    struct tls_responder r;
    struct bench_opts o;
    struct workload w;
    struct bench_result res;

    pki_make(&k);
    tls_responder_start(&r, &k, false);
    for (int resume = 0; resume < 2; resume++) {
        char *args[] = {
            "--tls", "-c", "0",   "--connect-rate", "max", "--connect-inflight", "4", "-w",
            "0.1",   "-D", "0.5", "--tls-resume"};
        cr_assert_eq(run(r.port, &o, &w, &res, args,
                         (int)(sizeof(args) / sizeof(args[0])) - (resume ? 0 : 1)),
                     0);
        const struct bench_stats *s = &res.total;
        /* A few are enough: full handshakes on both sides of one small machine, under the
         * sanitizers too, make this slow. */
        cr_assert_gt(s->conns, 2);
        cr_assert_eq(s->conn_latency.total, s->conns);
        cr_assert_eq(s->conn_failures + s->conns_unfinished, 0);
        if (resume) {
            /* Each slot's first connection (in the warm-up) was a full handshake. */
            cr_assert_eq(s->conns_resumed, s->conns, "%lu of %lu resumed",
                         (unsigned long)s->conns_resumed, (unsigned long)s->conns);
        } else {
            cr_assert_eq(s->conns_resumed, 0);
        }
        bench_stats_free(&res.total);
        workload_free(&w);
    }
    tls_responder_stop(&r);
    pki_free(&k);
}
