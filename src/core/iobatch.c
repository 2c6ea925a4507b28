/*
 * iobatch: non-blocking socket calls batched through io_uring. Contract in iobatch.h.
 */
#include "iobatch.h"

#include "petrel/log.h"
#include "petrel_build.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#if PETREL_HAVE_IO_URING

#include <liburing.h>
#include <sys/socket.h>

struct iobatch {
    struct io_uring ring;
    unsigned depth;
    unsigned queued; /* entries taken from the submission queue since the last run */
};

int
iobatch_new(unsigned depth, struct iobatch **out)
{
    struct iobatch *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        return -ENOMEM;
    }
    /* One thread submits and reaps (SINGLE_ISSUER), and nothing completes later than the call
     * that submitted it, so the kernel need not interrupt the thread to run completions
     * (COOP_TASKRUN). Kernels before 6.0 know neither flag: then plain. */
    int rc = io_uring_queue_init(depth, &b->ring,
                                 IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN);
    if (rc == -EINVAL) {
        rc = io_uring_queue_init(depth, &b->ring, 0);
    }
    if (rc < 0) {
        free(b);
        return rc;
    }
    /* Kernels before 5.6 have io_uring without send and recv: every call would fail. */
    struct io_uring_probe *probe = io_uring_get_probe_ring(&b->ring);
    bool usable = probe != NULL && io_uring_opcode_supported(probe, IORING_OP_SEND) &&
                  io_uring_opcode_supported(probe, IORING_OP_RECV);
    io_uring_free_probe(probe);
    if (!usable) {
        io_uring_queue_exit(&b->ring);
        free(b);
        return -EOPNOTSUPP;
    }
    b->depth = depth;
    *out = b;
    return 0;
}

void
iobatch_free(struct iobatch *b)
{
    if (b != NULL) {
        io_uring_queue_exit(&b->ring);
        free(b);
    }
}

static struct io_uring_sqe *
take(struct iobatch *b)
{
    if (b->queued == b->depth) {
        return NULL;
    }
    struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
    if (sqe != NULL) {
        b->queued++;
    }
    return sqe;
}

bool
iobatch_send(struct iobatch *b, int fd, const void *p, size_t n, void *tag)
{
    struct io_uring_sqe *sqe = take(b);
    if (sqe == NULL) {
        return false;
    }
    io_uring_prep_send(sqe, fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    io_uring_sqe_set_data(sqe, tag);
    return true;
}

bool
iobatch_recv(struct iobatch *b, int fd, void *p, size_t n, void *tag)
{
    struct io_uring_sqe *sqe = take(b);
    if (sqe == NULL) {
        return false;
    }
    io_uring_prep_recv(sqe, fd, p, n, MSG_DONTWAIT);
    io_uring_sqe_set_data(sqe, tag);
    return true;
}

unsigned
iobatch_queued(const struct iobatch *b)
{
    return b->queued;
}

int
iobatch_run(struct iobatch *b, iobatch_done_fn done, void *arg)
{
    while (b->queued > 0) {
        int rc;
        do {
            rc = io_uring_submit_and_wait(&b->ring, b->queued);
        } while (rc == -EINTR);
        if (rc <= 0) {
            /* The kernel took none: the caller gives up on b (see iobatch.h). */
            return rc < 0 ? rc : -EIO;
        }
        /* Every operation completes inside the call (MSG_DONTWAIT), but the wait may have been
         * cut short by a signal: wait for the rest. A tag is the caller's pointer, so no result
         * may be left for a later run. */
        unsigned submitted = (unsigned)rc;
        b->queued -= submitted;
        for (unsigned seen = 0; seen < submitted;) {
            struct io_uring_cqe *cqe;
            rc = io_uring_wait_cqe(&b->ring, &cqe);
            if (rc < 0) {
                if (rc == -EINTR || rc == -EAGAIN) {
                    continue;
                }
                log_error("io_uring: results lost (%s)", strerror(-rc));
                abort();
            }
            void *tag = io_uring_cqe_get_data(cqe);
            long res = cqe->res;
            io_uring_cqe_seen(&b->ring, cqe);
            seen++;
            done(arg, tag, res);
        }
    }
    return 0;
}

#else /* !PETREL_HAVE_IO_URING */

int
iobatch_new(unsigned depth, struct iobatch **out)
{
    (void)depth;
    (void)out;
    return -ENOSYS;
}

void
iobatch_free(struct iobatch *b)
{
    (void)b;
}

bool
iobatch_send(struct iobatch *b, int fd, const void *p, size_t n, void *tag)
{
    (void)b, (void)fd, (void)p, (void)n, (void)tag;
    return false;
}

bool
iobatch_recv(struct iobatch *b, int fd, void *p, size_t n, void *tag)
{
    (void)b, (void)fd, (void)p, (void)n, (void)tag;
    return false;
}

unsigned
iobatch_queued(const struct iobatch *b)
{
    (void)b;
    return 0;
}

int
iobatch_run(struct iobatch *b, iobatch_done_fn done, void *arg)
{
    (void)b, (void)done, (void)arg;
    return 0;
}

#endif
