/* buf: growable byte buffer. Contract in include/petrel/buf.h. */
#include "petrel/buf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

void
buf_init(struct buf *b, size_t init, size_t max)
{
    *b = (struct buf){.init = init, .max = max < init ? init : max};
}

void
buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->rpos = b->wpos = b->cap = 0;
}

/* What buf_reserve(b, n) has to do: 0 if the room is there (or appears by moving the unread
 * bytes to the front), SIZE_MAX if it would pass b->max, else the allocation it grows to. */
static size_t
grow_target(const struct buf *b, size_t n)
{
    size_t len = buf_len(b);
    /* Compacting is cheap next to growing, and the common case is a small unread tail. */
    if (b->cap - b->wpos >= n || (b->rpos > 0 && b->cap - len >= n)) {
        return 0;
    }
    if (len + n > b->max) {
        return SIZE_MAX;
    }
    size_t cap = b->cap ? b->cap : b->init;
    while (cap < len + n) {
        cap *= 2;
    }
    return cap > b->max ? b->max : cap;
}

size_t
buf_reserve_cap(const struct buf *b, size_t n)
{
    size_t cap = grow_target(b, n);
    return cap == 0 || cap == SIZE_MAX ? b->cap : cap;
}

int
buf_reserve(struct buf *b, size_t n)
{
    size_t len = buf_len(b);
    size_t cap = grow_target(b, n);
    if (cap == SIZE_MAX) {
        return -ENOBUFS;
    }
    if (cap == 0) {
        if (b->cap - b->wpos < n) {
            memmove(b->data, b->data + b->rpos, len);
            b->rpos = 0;
            b->wpos = len;
        }
        return 0;
    }
    char *p = malloc(cap);
    if (p == NULL) {
        return -ENOMEM;
    }
    if (len > 0) {
        memcpy(p, b->data + b->rpos, len);
    }
    free(b->data);
    b->data = p;
    b->cap = cap;
    b->rpos = 0;
    b->wpos = len;
    return 0;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
    if (n == 0) {
        return 0; /* nothing to copy, and memcpy() must not see a NULL buffer */
    }
    int rc = buf_reserve(b, n);
    if (rc < 0) {
        return rc;
    }
    memcpy(buf_wptr(b), p, n);
    b->wpos += n;
    return 0;
}

int
buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    /* Most formatted replies are short: try in place after making a little room. */
    int rc = buf_reserve(b, 64);
    if (rc < 0) {
        return rc;
    }
    va_start(ap, fmt);
    int n = vsnprintf(buf_wptr(b), buf_avail(b), fmt, ap);
    va_end(ap);
    if (n < 0) {
        return -EINVAL;
    }
    if ((size_t)n < buf_avail(b)) {
        b->wpos += (size_t)n;
        return 0;
    }
    /* Did not fit: make room for the text and its NUL, then format again. */
    rc = buf_reserve(b, (size_t)n + 1);
    if (rc < 0) {
        return rc;
    }
    va_start(ap, fmt);
    vsnprintf(buf_wptr(b), buf_avail(b), fmt, ap);
    va_end(ap);
    b->wpos += (size_t)n;
    return 0;
}

void
buf_shrink(struct buf *b)
{
    if (buf_len(b) == 0 && b->cap > b->init) {
        free(b->data);
        b->data = NULL;
        b->cap = 0;
        b->rpos = b->wpos = 0;
    }
}

int
buf_pool_init(struct buf_pool *p, size_t size, unsigned cap)
{
    *p = (struct buf_pool){.size = size, .cap = cap};
    p->free = calloc(cap, sizeof(*p->free));
    return p->free != NULL || cap == 0 ? 0 : -ENOMEM;
}

void
buf_pool_fini(struct buf_pool *p)
{
    while (p->n > 0) {
        free(p->free[--p->n]);
    }
    free(p->free);
    p->free = NULL;
    p->cap = 0;
}

int
buf_pool_take(struct buf_pool *p, struct buf *b)
{
    if (b->data != NULL) {
        return 0;
    }
    char *mem = p->n > 0 ? p->free[--p->n] : malloc(p->size);
    if (mem == NULL) {
        return -ENOMEM;
    }
    b->data = mem;
    b->cap = p->size;
    b->rpos = b->wpos = 0;
    return 0;
}

void
buf_pool_give(struct buf_pool *p, struct buf *b)
{
    if (b->data == NULL || buf_len(b) != 0) {
        return;
    }
    if (b->cap == p->size && p->n < p->cap) {
        p->free[p->n++] = b->data;
    } else {
        free(b->data);
    }
    b->data = NULL;
    b->cap = 0;
    b->rpos = b->wpos = 0;
}
