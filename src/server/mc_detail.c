/*
 * mc_detail: per-prefix statistics. Contract in include/petrel/mc_detail.h.
 *
 * Entries sit in an array in the order their prefix was first counted (the dump's order); an
 * open-addressing index of entry numbers finds them. The prefixes' bytes are kept end to end in
 * one growing array. Everything doubles as it fills, up to the table's cap, so a count is O(1)
 * amortised and a table's memory follows the prefixes it has seen, not its cap.
 */
#include "petrel/mc_detail.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { V_GET, V_HIT, V_SET, V_DEL, V_COUNT };

struct entry {
    uint64_t v[V_COUNT];
    uint64_t hash;
    uint32_t off; /* of the prefix in names */
    uint32_t len;
};

struct mc_detail {
    size_t cap;        /* most entries */
    size_t n, ecap;    /* entries, room in e */
    struct entry *e;   /* in first-counted order */
    uint32_t *index;   /* entry number + 1, 0 for an empty cell; isize cells, a power of two */
    size_t isize;      /* 0 while there is no entry */
    char *names;       /* the prefixes, end to end */
    size_t nlen, ncap; /* bytes used and room in names */
    uint64_t refused;  /* counts of a new prefix dropped at the cap or for lack of memory */
};

/* FNV-1a: prefixes are short and the table is private, so a simple hash does. */
static uint64_t
prefix_hash(const char *p, size_t n)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (unsigned char)p[i]) * UINT64_C(1099511628211);
    }
    return h;
}

int
mc_detail_create(struct mc_detail **out, size_t cap)
{
    struct mc_detail *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        return -ENOMEM;
    }
    d->cap = cap > 0 ? cap : 1;
    *out = d;
    return 0;
}

void
mc_detail_clear(struct mc_detail *d)
{
    free(d->e);
    free(d->index);
    free(d->names);
    size_t cap = d->cap;
    memset(d, 0, sizeof(*d));
    d->cap = cap;
}

void
mc_detail_destroy(struct mc_detail **d)
{
    if (*d != NULL) {
        mc_detail_clear(*d);
        free(*d);
        *d = NULL;
    }
}

size_t
mc_detail_size(const struct mc_detail *d)
{
    return d->n;
}

uint64_t
mc_detail_refused(const struct mc_detail *d)
{
    return d->refused;
}

int
mc_detail_prefix_len(const char *key, size_t klen, char delim)
{
    const char *p = memchr(key, delim, klen);
    return p == NULL ? -1 : (int)(p - key);
}

/* The cell of the index where prefix (with hash h) is, or the empty cell where it belongs. */
static size_t
index_probe(const struct mc_detail *d, const char *p, size_t len, uint64_t h)
{
    size_t mask = d->isize - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        uint32_t k = d->index[i];
        if (k == 0) {
            return i;
        }
        const struct entry *e = &d->e[k - 1];
        if (e->hash == h && e->len == len && memcmp(d->names + e->off, p, len) == 0) {
            return i;
        }
    }
}

/* Make room for one more entry of len bytes: entries, names, and an index at most half full. */
static int
grow(struct mc_detail *d, size_t len)
{
    if (d->n == d->ecap) {
        size_t cap = d->ecap ? d->ecap * 2 : 16;
        struct entry *e = realloc(d->e, cap * sizeof(*e));
        if (e == NULL) {
            return -ENOMEM;
        }
        d->e = e;
        d->ecap = cap;
    }
    if (d->names == NULL || d->nlen + len > d->ncap) { /* an empty first prefix too */
        size_t cap = d->ncap ? d->ncap : 256;
        while (cap < d->nlen + len) {
            cap *= 2;
        }
        char *names = realloc(d->names, cap);
        if (names == NULL) {
            return -ENOMEM;
        }
        d->names = names;
        d->ncap = cap;
    }
    if ((d->n + 1) * 2 > d->isize) {
        size_t size = d->isize ? d->isize * 2 : 32;
        uint32_t *index = calloc(size, sizeof(*index));
        if (index == NULL) {
            return -ENOMEM;
        }
        free(d->index);
        d->index = index;
        d->isize = size;
        for (size_t k = 0; k < d->n; k++) {
            const struct entry *e = &d->e[k];
            d->index[index_probe(d, d->names + e->off, e->len, e->hash)] = (uint32_t)(k + 1);
        }
    }
    return 0;
}

/* The entry of prefix p, added (zeroed) if new; NULL when it is new and cannot be. */
static struct entry *
find_or_add(struct mc_detail *d, const char *p, size_t len)
{
    uint64_t h = prefix_hash(p, len);
    if (d->isize > 0) {
        uint32_t k = d->index[index_probe(d, p, len, h)];
        if (k != 0) {
            return &d->e[k - 1];
        }
    }
    if (d->n >= d->cap || len > MC_DETAIL_PREFIX_MAX || grow(d, len) < 0) {
        d->refused++;
        return NULL;
    }
    struct entry *e = &d->e[d->n];
    *e = (struct entry){.hash = h, .off = (uint32_t)d->nlen, .len = (uint32_t)len};
    memcpy(d->names + d->nlen, p, len);
    d->nlen += len;
    d->n++;
    d->index[index_probe(d, p, len, h)] = (uint32_t)d->n;
    return e;
}

void
mc_detail_count(struct mc_detail *d, const char *key, size_t klen, char delim,
                enum mc_detail_kind kind, bool hit)
{
    int len = mc_detail_prefix_len(key, klen, delim);
    if (len < 0) {
        return;
    }
    struct entry *e = find_or_add(d, key, (size_t)len);
    if (e == NULL) {
        return;
    }
    switch (kind) {
    case MC_DETAIL_GET:
        e->v[V_GET]++;
        e->v[V_HIT] += hit;
        break;
    case MC_DETAIL_SET:
        e->v[V_SET]++;
        break;
    case MC_DETAIL_DEL:
        e->v[V_DEL]++;
        break;
    }
}

/* A record: the prefix's length (one byte), the prefix, then its V_COUNT counters. */
int
mc_detail_export(const struct mc_detail *d, struct buf *out)
{
    for (size_t k = 0; k < d->n; k++) {
        const struct entry *e = &d->e[k];
        uint8_t len = (uint8_t)e->len;
        int rc = buf_append(out, &len, 1);
        rc = rc < 0 ? rc : buf_append(out, d->names + e->off, e->len);
        rc = rc < 0 ? rc : buf_append(out, e->v, sizeof(e->v));
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

int
mc_detail_import(struct mc_detail *d, const char *p, size_t n)
{
    while (n > 0) {
        size_t len = (unsigned char)p[0];
        if (n < 1 + len + sizeof(uint64_t) * V_COUNT) {
            return -EINVAL;
        }
        uint64_t v[V_COUNT];
        memcpy(v, p + 1 + len, sizeof(v));
        struct entry *e = find_or_add(d, p + 1, len);
        if (e == NULL) {
            return -ENOMEM;
        }
        for (unsigned i = 0; i < V_COUNT; i++) {
            e->v[i] += v[i];
        }
        p += 1 + len + sizeof(v);
        n -= 1 + len + sizeof(v);
    }
    return 0;
}

int
mc_detail_dump(const struct mc_detail *d, struct buf *out)
{
    for (size_t k = 0; k < d->n; k++) {
        const struct entry *e = &d->e[k];
        int rc = buf_printf(out, "PREFIX %.*s get %llu hit %llu set %llu del %llu\r\n", (int)e->len,
                            d->names + e->off, (unsigned long long)e->v[V_GET],
                            (unsigned long long)e->v[V_HIT], (unsigned long long)e->v[V_SET],
                            (unsigned long long)e->v[V_DEL]);
        if (rc < 0) {
            return rc;
        }
    }
    return buf_puts(out, "END\r\n");
}
