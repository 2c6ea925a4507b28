/*
 * admin: the admin port (text: version, stats, quit) and the log flusher.
 *
 * Runs on its own thread so that operators and log I/O never take time from the workers. It only
 * reads what the workers publish (relaxed atomic counters) and never writes worker state.
 */
#include "core.h"

#include "petrel_build.h"

#include "petrel/log.h"
#include "petrel/sock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ADMIN_MAX_CONNS 64
#define ADMIN_LINE_MAX  1024
#define FLUSH_MS        100 /* log flush period */

struct admin_conn {
    int fd;
    unsigned slot; /* index in conns[] below */
    struct buf in;
    struct buf out;
};

static char waker_tag;
static char listen_tag;

/* Open admin connections, so that shutdown can free them. Admin thread only. */
static struct admin_conn *conns[ADMIN_MAX_CONNS];

int
admin_listen(struct runtime *rt, char *err, size_t errlen)
{
    const char *addr = config_str(rt->cfg, "admin-address");
    uint16_t port = (uint16_t)config_uint(rt->cfg, "admin-port");
    int fds[1];
    size_t n = 0;
    int rc = sock_listen_tcp(addr, port, 64, fds, 1, &n, err, errlen);
    if (rc < 0) {
        return rc;
    }
    rt->admin_fd = fds[0];
    return 0;
}

static void
write_stats(struct runtime *rt, struct buf *b)
{
    time_t now = time(NULL);
    uint64_t curr = 0, rbytes = 0, wbytes = 0;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        struct worker_stats *s = &rt->workers[i].stats;
        curr += atomic_load_explicit(&s->adopted, memory_order_relaxed) -
                atomic_load_explicit(&s->closed, memory_order_relaxed);
        rbytes += atomic_load_explicit(&s->bytes_read, memory_order_relaxed);
        wbytes += atomic_load_explicit(&s->bytes_written, memory_order_relaxed);
    }
    buf_printf(b, "STAT pid %ld\r\n", (long)getpid());
    buf_printf(b, "STAT uptime %lld\r\n", (long long)(now - rt->started_at));
    buf_printf(b, "STAT time %lld\r\n", (long long)now);
    buf_printf(b, "STAT version %s\r\n", PETREL_VERSION);
    buf_printf(b, "STAT product %s\r\n", rt->p->name);
    buf_printf(b, "STAT threads %u\r\n", rt->nworkers);
    buf_printf(b, "STAT max_connections %u\r\n", rt->max_conns);
    buf_printf(b, "STAT curr_connections %llu\r\n", (unsigned long long)curr);
    buf_printf(b, "STAT total_connections %llu\r\n",
               (unsigned long long)atomic_load_explicit(&rt->accepted, memory_order_relaxed));
    buf_printf(b, "STAT rejected_connections %llu\r\n",
               (unsigned long long)atomic_load_explicit(&rt->rejected, memory_order_relaxed));
    buf_printf(b, "STAT bytes_read %llu\r\n", (unsigned long long)rbytes);
    buf_printf(b, "STAT bytes_written %llu\r\n", (unsigned long long)wbytes);
    buf_printf(b, "STAT log_dropped %llu\r\n", (unsigned long long)log_dropped());
    for (unsigned i = 0; i < rt->nworkers; i++) {
        struct worker *w = &rt->workers[i];
        uint64_t open = atomic_load_explicit(&w->stats.adopted, memory_order_relaxed) -
                        atomic_load_explicit(&w->stats.closed, memory_order_relaxed);
        buf_printf(b, "STAT worker_%u_connections %llu\r\n", i, (unsigned long long)open);
        buf_printf(
            b, "STAT worker_%u_wakeups %llu\r\n", i,
            (unsigned long long)atomic_load_explicit(&w->waker.wakeups, memory_order_relaxed));
    }
    buf_puts(b, "END\r\n");
}

/* Answer every complete line. Returns -1 when the connection should close. */
static int
admin_process(struct runtime *rt, struct admin_conn *a)
{
    for (;;) {
        char *line = buf_rptr(&a->in);
        char *nl = memchr(line, '\n', buf_len(&a->in));
        if (nl == NULL) {
            return buf_len(&a->in) >= ADMIN_LINE_MAX ? -1 : 0;
        }
        size_t len = (size_t)(nl - line);
        if (len > 0 && line[len - 1] == '\r') {
            len--;
        }
        int rc = 0;
        if (len == 7 && memcmp(line, "version", 7) == 0) {
            buf_printf(&a->out, "VERSION %s\r\n", PETREL_VERSION);
        } else if (len == 5 && memcmp(line, "stats", 5) == 0) {
            write_stats(rt, &a->out);
        } else if (len == 4 && memcmp(line, "quit", 4) == 0) {
            rc = -1;
        } else {
            buf_puts(&a->out, "ERROR\r\n");
        }
        buf_consume(&a->in, (size_t)(nl + 1 - buf_rptr(&a->in)));
        if (rc < 0) {
            return rc;
        }
    }
}

static void
admin_close(int epfd, struct admin_conn *a)
{
    conns[a->slot] = NULL;
    epoll_ctl(epfd, EPOLL_CTL_DEL, a->fd, NULL);
    close(a->fd);
    buf_free(&a->in);
    buf_free(&a->out);
    free(a);
}

/* Serve one admin connection's readiness. Returns -1 to close it. */
static int
admin_serve(struct runtime *rt, int epfd, struct admin_conn *a)
{
    for (;;) {
        if (buf_reserve(&a->in, 512) < 0) {
            return -1;
        }
        ssize_t n = recv(a->fd, buf_wptr(&a->in), buf_avail(&a->in), 0);
        if (n > 0) {
            buf_commit(&a->in, (size_t)n);
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            return -1;
        }
        if (errno == EAGAIN) {
            break;
        }
    }
    int rc = admin_process(rt, a);
    while (buf_len(&a->out) > 0) {
        ssize_t n = send(a->fd, buf_rptr(&a->out), buf_len(&a->out), MSG_NOSIGNAL);
        if (n <= 0) {
            if (n < 0 && errno == EAGAIN) {
                /* Rare for replies this small; wait for room. */
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = a};
                epoll_ctl(epfd, EPOLL_CTL_MOD, a->fd, &ev);
                return rc;
            }
            return -1;
        }
        buf_consume(&a->out, (size_t)n);
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = a};
    epoll_ctl(epfd, EPOLL_CTL_MOD, a->fd, &ev);
    return rc;
}

static void
admin_accept(int epfd, int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            return;
        }
        unsigned slot = 0;
        while (slot < ADMIN_MAX_CONNS && conns[slot] != NULL) {
            slot++;
        }
        struct admin_conn *a = slot < ADMIN_MAX_CONNS ? calloc(1, sizeof(*a)) : NULL;
        if (a == NULL) {
            close(fd); /* operators get a handful of sessions, not unbounded memory */
            continue;
        }
        a->fd = fd;
        a->slot = slot;
        conns[slot] = a;
        buf_init(&a->in, 512, ADMIN_LINE_MAX);
        buf_init(&a->out, 4096, 1 << 20);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = a};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            admin_close(epfd, a);
        }
    }
}

void *
admin_main(void *arg)
{
    struct runtime *rt = arg;
    pthread_setname_np(pthread_self(), "admin");
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        log_error("admin: epoll_create1: %s", strerror(errno));
        return NULL;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &waker_tag};
    epoll_ctl(epfd, EPOLL_CTL_ADD, rt->admin_waker.efd, &ev);
    ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &listen_tag};
    epoll_ctl(epfd, EPOLL_CTL_ADD, rt->admin_fd, &ev);

    struct epoll_event evs[16];
    while (!atomic_load_explicit(&rt->stop, memory_order_relaxed)) {
        int n = epoll_wait(epfd, evs, 16, FLUSH_MS);
        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;
            if (tag == &waker_tag) {
                waker_drain(&rt->admin_waker);
            } else if (tag == &listen_tag) {
                admin_accept(epfd, rt->admin_fd);
            } else if (admin_serve(rt, epfd, tag) < 0) {
                admin_close(epfd, tag);
            }
        }
        /* The admin thread is the log flusher while it runs. */
        log_flush();
    }
    for (unsigned i = 0; i < ADMIN_MAX_CONNS; i++) {
        if (conns[i] != NULL) {
            admin_close(epfd, conns[i]);
        }
    }
    close(rt->admin_fd);
    rt->admin_fd = -1;
    close(epfd);
    return NULL;
}
