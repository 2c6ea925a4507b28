/*
 * Unit tests for perf/bench/client: whole runs against a small in-process responder, checking
 * the accounting (every request answered and counted once, the open-loop schedule kept).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "opts.h"

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

static bool
serve(struct responder *r, int fd, struct rconn *c)
{
    static char out[1 << 20];
    size_t olen = 0, pos = 0;
    ssize_t n = read(fd, c->buf + c->len, sizeof(c->buf) - c->len);
    if (n <= 0) {
        return false;
    }
    c->len += (size_t)n;
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
        if (r->hangup_after && ++c->replies >= r->hangup_after) {
            return false;
        }
    }
    memmove(c->buf, c->buf + pos, c->len - pos);
    c->len -= pos;
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
                int fd = accept(r->lfd, NULL, NULL);
                if (fd >= 0 && nc < 64) {
                    conns[nc] = calloc(1, sizeof(struct rconn));
                    fds[nc] = fd;
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = &fds[nc]};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
                    nc++;
                }
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
