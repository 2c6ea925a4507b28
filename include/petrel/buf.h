/*
 * buf: a contiguous byte buffer that grows on demand up to a cap and shrinks back.
 *
 * Used for connection read and write buffers and by the protocol composers. Bytes live in
 * [rpos, wpos) of data[0, cap). Readers consume from rpos, writers append at wpos; when the
 * buffer empties both indices return to 0 so the space is reused without moving anything.
 *
 * Threads: a buf has one owner thread (the worker that owns the connection); no locking.
 * Memory: data is heap memory owned by the buf, released by buf_free().
 */
#ifndef PETREL_BUF_H
#define PETREL_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

struct buf {
    char *data;  /* allocation, cap bytes, NULL until first use */
    size_t rpos; /* first unconsumed byte */
    size_t wpos; /* one past the last written byte */
    size_t cap;  /* bytes allocated */
    size_t init; /* size allocated first, and shrunk back to */
    size_t max;  /* growth limit: buf_reserve() fails beyond it */
};

/** Prepare an empty buffer; nothing is allocated until the first reserve. */
void buf_init(struct buf *b, size_t init, size_t max);

/** Release the allocation; the buffer is left empty and may be reused. */
void buf_free(struct buf *b);

/**
 * Make at least n bytes writable at buf_wptr(): first by moving unread bytes to the front,
 * then by doubling the allocation, never beyond b->max (an allocation can hold more than
 * max only if init was larger). Returns 0, -ENOBUFS past the cap, or -ENOMEM.
 */
int buf_reserve(struct buf *b, size_t n);

/** The allocation size buf_reserve(b, n) would leave: b->cap if it need not (or cannot) grow. */
size_t buf_reserve_cap(const struct buf *b, size_t n);

/** Append n bytes. Returns 0, -ENOBUFS or -ENOMEM (then nothing was appended). */
int buf_append(struct buf *b, const void *p, size_t n);

/** Append formatted text (no terminating NUL is kept). Returns 0, -ENOBUFS or -ENOMEM. */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/**
 * Give memory back: an empty buffer whose allocation grew past init returns to init bytes
 * (or to nothing if it never needed any). Call when a burst is over, e.g. after a flush.
 */
void buf_shrink(struct buf *b);

/**
 * A pool of same-sized allocations for buffers whose init is that size: connections take one
 * when they have bytes to hold and give it back when their buffer empties, so that an idle
 * connection holds no buffer at all and a busy one does not call the allocator per request.
 * Owned by one thread; keeps at most cap allocations, freeing the rest.
 */
struct buf_pool {
    char **free;
    unsigned n, cap;
    size_t size;
};

/** An empty pool of allocations of size bytes, keeping up to cap. Returns 0 or -ENOMEM. */
int buf_pool_init(struct buf_pool *p, size_t size, unsigned cap);

/** Free every kept allocation and the pool's own array. */
void buf_pool_fini(struct buf_pool *p);

/**
 * Give b (which has no allocation, and whose init is the pool's size) its first allocation, from
 * the pool or the allocator. Returns 0 or -ENOMEM. A buffer that has one is left alone.
 */
int buf_pool_take(struct buf_pool *p, struct buf *b);

/**
 * If b is empty, take its allocation away: into the pool when it is the pool's size and the
 * pool has room, else back to the allocator. A buffer holding bytes is left alone.
 */
void buf_pool_give(struct buf_pool *p, struct buf *b);

/** Bytes readable. */
static inline size_t
buf_len(const struct buf *b)
{
    return b->wpos - b->rpos;
}

/** First readable byte. */
static inline char *
buf_rptr(const struct buf *b)
{
    return b->data + b->rpos;
}

/** First writable byte; valid for buf_avail() bytes. */
static inline char *
buf_wptr(const struct buf *b)
{
    return b->data + b->wpos;
}

/** Bytes writable at buf_wptr() without a reserve. */
static inline size_t
buf_avail(const struct buf *b)
{
    return b->cap - b->wpos;
}

/** Mark n bytes written at buf_wptr() (n <= buf_avail()). */
static inline void
buf_commit(struct buf *b, size_t n)
{
    b->wpos += n;
}

/** Drop n bytes from the front (n <= buf_len()); an emptied buffer rewinds to offset 0. */
static inline void
buf_consume(struct buf *b, size_t n)
{
    b->rpos += n;
    if (b->rpos == b->wpos) {
        b->rpos = b->wpos = 0;
    }
}

/** Append a string literal or other NUL-terminated string. */
static inline int
buf_puts(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

#endif /* PETREL_BUF_H */
