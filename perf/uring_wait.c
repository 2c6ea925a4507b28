/*
 * uring_wait: does waiting for readiness inside io_uring make an event loop cheaper?
 *
 * petrel's worker loop makes three system calls a turn: epoll_wait, one io_uring_enter for the
 * turn's reads, one for its sends. Linux 6.15 added IORING_OP_EPOLL_WAIT, an epoll_wait as a
 * ring operation, so the sends of one turn and the wait for the next can go in one
 * io_uring_enter: two system calls a turn. This measures whether that saves CPU, with a loop
 * shaped like petrel's and nothing else (no parsing, no storage):
 *
 *   epoll    sends in one io_uring_enter, then epoll_wait, then the reads in one io_uring_enter
 *   ring     sends and IORING_OP_EPOLL_WAIT in one io_uring_enter, then the reads in another
 *
 * A server thread on CPU 1 answers 32 TCP connections over loopback (each request echoed
 * back); a client thread on CPU 0 keeps one request in flight on each (depth 1, as memtier_
 * benchmark at --pipeline 1), with epoll, recv and send. Reported: the server thread's CPU
 * time per request (CLOCK_THREAD_CPUTIME_ID) and the requests per second.
 *
 *   uring_wait epoll|ring [SECONDS]
 *
 * Needs a kernel with IORING_OP_EPOLL_WAIT (6.15) for `ring`; liburing before 2.10 does not
 * name the opcode, so it is given by number. Results: docs/benchmarks.md.
 */
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define OP_EPOLL_WAIT 59 /* IORING_OP_EPOLL_WAIT in <linux/io_uring.h> since 6.15 */
#define CONNS         32
#define MSG           40
#define TAG_SEND      1
#define TAG_WAIT      2
#define TAG_RECV      100 /* + connection */

static bool in_ring;
static int port;
static atomic_bool stop;
static double server_cpu;
static long served, recv_errors;

static void
die(const char *what, int err)
{
    fprintf(stderr, "uring_wait: %s: %s\n", what, strerror(err));
    exit(1);
}

static void
pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static double
seconds(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static struct sockaddr_in
loopback(void)
{
    return (struct sockaddr_in){.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
}

/* Reap every completion there is; true if the epoll wait's was among them (*waited: its
 * result). A connection whose read fails stops taking part: counted, and the run says so. */
static bool
reap(struct io_uring *r, int *len, int *sendq, int *nsend, long *n, int *waited)
{
    bool seen = false;
    struct io_uring_cqe *c;
    unsigned head, count = 0;
    io_uring_for_each_cqe(r, head, c)
    {
        count++;
        if (c->user_data == TAG_WAIT) {
            seen = true;
            *waited = c->res;
        } else if (c->user_data >= TAG_RECV && c->res > 0) {
            int k = (int)(c->user_data - TAG_RECV);
            len[k] = c->res;
            sendq[(*nsend)++] = k;
            (*n)++;
        } else if (c->user_data >= TAG_RECV && c->res != -EAGAIN) {
            recv_errors++;
        }
    }
    io_uring_cq_advance(r, count);
    return seen;
}

static void *
server(void *arg)
{
    (void)arg;
    pin(1);
    int one = 1, ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = loopback();
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, CONNS) < 0) {
        die("listen", errno);
    }
    int ep = epoll_create1(0), fd[CONNS];
    for (int i = 0; i < CONNS; i++) {
        fd[i] = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
        setsockopt(fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct epoll_event e = {.events = EPOLLIN | EPOLLET, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd[i], &e);
    }
    struct io_uring r;
    int rc = io_uring_queue_init(128, &r, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN);
    if (rc == -EINVAL) { /* kernels before 6.0 know neither flag */
        rc = io_uring_queue_init(128, &r, 0);
    }
    if (rc < 0) {
        die("io_uring_queue_init", -rc);
    }
    struct epoll_event ev[64];
    char buf[CONNS][256];
    /* A connection's reply may wait in sendq while its next request is read (2 each). */
    int len[CONNS], sendq[2 * CONNS], nsend = 0;
    long n = 0;
    double start = seconds(CLOCK_THREAD_CPUTIME_ID);
    while (!atomic_load(&stop)) {
        for (int i = 0; i < nsend; i++) {
            struct io_uring_sqe *s = io_uring_get_sqe(&r);
            io_uring_prep_send(s, fd[sendq[i]], buf[sendq[i]], (size_t)len[sendq[i]],
                               MSG_DONTWAIT | MSG_NOSIGNAL);
            s->user_data = TAG_SEND;
        }
        int want = nsend, ready;
        nsend = 0;
        if (in_ring) {
            /* The sends, then the wait, in one call: it returns once the wait is done. */
            struct io_uring_sqe *s = io_uring_get_sqe(&r);
            io_uring_prep_rw(OP_EPOLL_WAIT, s, ep, ev, 64, 0);
            s->user_data = TAG_WAIT;
            io_uring_submit_and_wait(&r, (unsigned)want + 1);
            while (!reap(&r, len, sendq, &nsend, &n, &ready)) {
                struct io_uring_cqe *c;
                io_uring_wait_cqe(&r, &c);
            }
            if (ready < 0) {
                die("IORING_OP_EPOLL_WAIT", -ready);
            }
        } else {
            if (want > 0) {
                io_uring_submit_and_wait(&r, (unsigned)want);
                reap(&r, len, sendq, &nsend, &n, &ready);
            }
            ready = epoll_wait(ep, ev, 64, 100);
        }
        for (int i = 0; i < ready; i++) {
            int k = (int)ev[i].data.u32;
            struct io_uring_sqe *s = io_uring_get_sqe(&r);
            io_uring_prep_recv(s, fd[k], buf[k], sizeof(buf[k]), MSG_DONTWAIT);
            s->user_data = TAG_RECV + (unsigned)k;
        }
        if (ready > 0) {
            int waited;
            io_uring_submit_and_wait(&r, (unsigned)ready);
            reap(&r, len, sendq, &nsend, &n, &waited);
        }
    }
    server_cpu = seconds(CLOCK_THREAD_CPUTIME_ID) - start;
    served = n;
    return NULL;
}

int
main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "epoll") != 0 && strcmp(argv[1], "ring") != 0)) {
        fprintf(stderr, "usage: uring_wait epoll|ring [SECONDS]\n");
        return 2;
    }
    in_ring = strcmp(argv[1], "ring") == 0;
    double duration = argc > 2 ? atof(argv[2]) : 3;
    port = 20000 + getpid() % 30000;
    pthread_t t;
    pthread_create(&t, NULL, server, NULL);
    usleep(100000);
    pin(0);
    int one = 1, ep = epoll_create1(0), c[CONNS];
    struct sockaddr_in sa = loopback();
    for (int i = 0; i < CONNS; i++) {
        c[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c[i], (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            die("connect", errno);
        }
        setsockopt(c[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, c[i], &e);
    }
    char req[MSG];
    memset(req, 'g', MSG);
    for (int i = 0; i < CONNS; i++) {
        send(c[i], req, MSG, 0);
    }
    double start = seconds(CLOCK_MONOTONIC);
    while (seconds(CLOCK_MONOTONIC) - start < duration) {
        struct epoll_event ev[CONNS];
        int ready = epoll_wait(ep, ev, CONNS, 100);
        for (int i = 0; i < ready; i++) {
            char b[256];
            int k = (int)ev[i].data.u32;
            if (recv(c[k], b, sizeof(b), 0) > 0) {
                send(c[k], req, MSG, 0);
            }
        }
    }
    atomic_store(&stop, true);
    for (int i = 0; i < CONNS; i++) {
        send(c[i], req, MSG, 0); /* wakes the server to see stop */
    }
    pthread_join(t, NULL);
    printf("%-5s %9.0f requests/s  server CPU %.3f us/request\n", argv[1],
           (double)served / duration, server_cpu * 1e6 / (double)served);
    if (recv_errors > 0) {
        printf("  (%ld reads failed: those connections stopped taking part)\n", recv_errors);
    }
    return 0;
}
