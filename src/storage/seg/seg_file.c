/*
 * seg_file: the memory file of all shards (include/petrel/seg_file.h): its header, its layout,
 * and re-sharding from one layout to another.
 */
#include "petrel/seg_file.h"

#include "seg_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_MAGIC          "PTRLMEM1"
#define FILE_VERSION        1
#define FILE_HDR_LEN        4096u
#define SEG_FILE_SHARDS_MAX 65536u /* more shards than any server runs: a header is not sane */

/* The first page. sum covers the fields before it, so a damaged header is never trusted. */
struct file_hdr {
    char magic[8];
    uint32_t version;
    uint32_t nshards;
    uint64_t seg_size;
    uint64_t shard_mem; /* mem_bytes of each shard */
    uint64_t region_len;
    uint64_t file_len;
    uint64_t sum;
};

struct seg_file {
    int fd;
    struct file_hdr hdr;
};

static uint64_t
hdr_sum(const struct file_hdr *h)
{
    return XXH3_64bits(h, offsetof(struct file_hdr, sum));
}

static struct file_hdr
layout_for(const struct seg_options *o, unsigned nshards)
{
    struct file_hdr h = {
        .version = FILE_VERSION,
        .nshards = nshards,
        .seg_size = o->seg_size,
        .shard_mem = o->mem_bytes,
        .region_len = seg_region_size(o),
    };
    memcpy(h.magic, FILE_MAGIC, 8);
    h.file_len = FILE_HDR_LEN + (uint64_t)nshards * h.region_len;
    h.sum = hdr_sum(&h);
    return h;
}

static bool
same_layout(const struct file_hdr *a, const struct file_hdr *b)
{
    return a->nshards == b->nshards && a->seg_size == b->seg_size && a->shard_mem == b->shard_mem &&
           a->region_len == b->region_len && a->file_len == b->file_len;
}

/*
 * Whether h's layout is one seg_file_open could have written: re-sharding maps each old region
 * at HDR + i * region_len for seg_region_size() bytes, so region_len and file_len must be what
 * the sizes give, or a region would reach past the end of the file (SIGBUS) or into the next.
 */
static bool
layout_sane(const struct file_hdr *h)
{
    if (h->nshards == 0 || h->nshards > SEG_FILE_SHARDS_MAX || h->seg_size < SEG_SIZE_MIN ||
        h->seg_size > SEG_SIZE_MAX || (h->seg_size & (h->seg_size - 1)) != 0 ||
        h->shard_mem / h->seg_size < 2 || h->shard_mem / h->seg_size > UINT32_MAX) {
        return false;
    }
    struct seg_options o = {.mem_bytes = h->shard_mem, .seg_size = h->seg_size};
    uint64_t region = seg_region_size(&o);
    return h->region_len == region && region <= (UINT64_MAX - FILE_HDR_LEN) / h->nshards &&
           h->file_len == FILE_HDR_LEN + (uint64_t)h->nshards * region;
}

/* The header read from fd, if it is a valid one for a file of size len. */
static bool
hdr_read(int fd, off_t len, struct file_hdr *h, const char **why)
{
    if (pread(fd, h, sizeof(*h), 0) != (ssize_t)sizeof(*h) || memcmp(h->magic, FILE_MAGIC, 8)) {
        *why = "not a Petrel memory file";
    } else if (h->version != FILE_VERSION) {
        *why = "a memory file of another format version";
    } else if (h->sum != hdr_sum(h)) {
        *why = "its header is damaged";
    } else if ((uint64_t)len != h->file_len || !layout_sane(h)) {
        *why = "its size or layout is not valid (truncated?)";
    } else {
        return true;
    }
    return false;
}

/*
 * Give fd the layout h, empty: every shard region starts with a zero meta page, which
 * seg_create takes as "start empty". The space is allocated now, so that a full filesystem is
 * an error here rather than a SIGBUS when a page is first written. The header goes last.
 */
static int
file_create(int fd, const struct file_hdr *h)
{
    if (ftruncate(fd, 0) < 0) {
        return -errno;
    }
    int rc = posix_fallocate(fd, 0, (off_t)h->file_len);
    if (rc == EOPNOTSUPP || rc == EINVAL) {
        rc = ftruncate(fd, (off_t)h->file_len) < 0 ? errno : 0;
    }
    if (rc != 0) {
        return -rc;
    }
    if (pwrite(fd, h, sizeof(*h), 0) != (ssize_t)sizeof(*h)) {
        return errno != 0 ? -errno : -EIO;
    }
    return 0;
}

static void
shard_opts(const struct file_hdr *h, const struct seg_options *base, int fd, unsigned i,
           struct seg_options *o)
{
    *o = *base;
    o->mem_bytes = h->shard_mem;
    o->seg_size = h->seg_size;
    if (o->item_max > o->seg_size) {
        o->item_max = o->seg_size;
    }
    o->prefault = false;
    o->file_fd = fd;
    o->file_off = FILE_HDR_LEN + (uint64_t)i * h->region_len;
}

/*
 * Re-sharding into less memory keeps what the eviction policy would keep. The old shards'
 * segments are imported one after another, in the order in which the policy would evict them
 * (the first to go first), into new shards that evict the oldest segment while they are being
 * filled; so when not everything fits, what the policy would have evicted first is what is
 * dropped:
 *   fifo    oldest segments first: the newest items are kept;
 *   cte     the segments closest to expiry first (never-expiring ones last): the items furthest
 *           from expiry are kept;
 *   util    the segments with the fewest live bytes first (then oldest): the items of the
 *           best-used segments are kept;
 *   random  the segments in a random order: a random part of the items is kept;
 *   merge   merge keeps the items read most often, and the file keeps only whether an item
 *           was ever read (SEG_ST_FETCHED), not how often: so the items never read go first,
 *           oldest first, then those read, oldest first (two passes over the segments by age);
 *           the new file's recovery then gives each item read before a frequency of 1;
 *   none    nothing is evicted, so the items are imported oldest first and the new shards refuse
 *           what does not fit, as they would have refused the newest writes (the oldest items
 *           that fit are kept; the count of the others is logged).
 * Once filled, the new shards evict by the configured policy.
 */
struct old_seg {
    uint64_t rank; /* the policy's eviction order; ties: oldest first */
    uint64_t cas_base;
    uint32_t opened;
    uint32_t shard;
    uint32_t sid;
};

static int
cmp_old(const void *a, const void *b)
{
    const struct old_seg *x = a, *y = b;
    if (x->rank != y->rank) {
        return x->rank < y->rank ? -1 : 1;
    }
    if (x->opened != y->opened) {
        return x->opened < y->opened ? -1 : 1;
    }
    if (x->shard != y->shard) {
        return x->shard < y->shard ? -1 : 1;
    }
    return (x->cas_base > y->cas_base) - (x->cas_base < y->cas_base);
}

/* Where the policy puts segment sid of s in its eviction order (lower goes first). */
static uint64_t
evict_rank(struct seg *s, uint32_t sid, enum seg_evict_policy p)
{
    const struct seg_hdr *h = hdr(s, sid);
    switch (p) {
    case SEG_EVICT_CTE:
        return h->expire_at == 0 ? UINT64_MAX : h->expire_at;
    case SEG_EVICT_UTIL:
        return h->live_bytes;
    case SEG_EVICT_RANDOM:
        return rng_next(s);
    default:
        return 0; /* fifo, merge, none: by age */
    }
}

/* How the new shards evict while they are filled (see above). */
static enum seg_evict_policy
import_policy(enum seg_evict_policy p)
{
    return p == SEG_EVICT_NONE ? p : SEG_EVICT_FIFO;
}

struct move_ctx {
    struct seg **dst;
    unsigned n;
    seg_shard_fn shard_of;
    int fetched; /* -1: every item; 0 or 1: only those never read, or only those read (merge) */
    uint64_t moved, dropped;
};

static void
move_one(void *ctx, const struct seg_item_info *info, uint64_t hash, const uint8_t *value,
         size_t vlen)
{
    struct move_ctx *m = ctx;
    if (m->fetched >= 0 && m->fetched != ((info->state & SEG_ST_FETCHED) != 0)) {
        return;
    }
    struct seg *d = m->dst[m->shard_of(hash, m->n)];
    if (seg_import(d, info, hash, value, vlen) == SEG_STORED) {
        m->moved++;
    } else {
        m->dropped++;
    }
}

/*
 * Move every item of the old shards (recovered from oldfd, layout old) into new shards of layout
 * want in a new file, in the eviction policy's order (above), each item to the shard shard_of
 * gives. Evictions the new shards make while filling are counted as dropped (their eviction
 * statistics), and so are the items they refuse.
 */
static int
reshard_into(int oldfd, const struct file_hdr *old, int newfd, const struct file_hdr *want,
             const struct seg_options *base, seg_shard_fn shard_of, struct seg_file_info *info)
{
    struct seg **src = calloc(old->nshards, sizeof(*src));
    struct seg **dst = calloc(want->nshards, sizeof(*dst));
    struct old_seg *order = NULL;
    int rc = src != NULL && dst != NULL ? 0 : -ENOMEM;
    uint64_t cas_floor = 0, nsegs = 0;
    for (unsigned i = 0; rc == 0 && i < old->nshards; i++) {
        struct seg_options o;
        shard_opts(old, base, oldfd, i, &o);
        rc = seg_create(&src[i], &o);
        if (rc == 0) {
            cas_floor = src[i]->cas_next > cas_floor ? src[i]->cas_next : cas_floor;
            nsegs += src[i]->nseg;
        }
    }
    for (unsigned i = 0; rc == 0 && i < want->nshards; i++) {
        struct seg_options o;
        shard_opts(want, base, newfd, i, &o);
        o.evict = import_policy(base->evict);
        rc = seg_create(&dst[i], &o);
        if (rc == 0) {
            /* New CAS values stay above every old one, which the moved items keep. */
            dst[i]->cas_next =
                (cas_floor + dst[i]->seg_size - 1) & ~(uint64_t)(dst[i]->seg_size - 1);
            meta_sync(dst[i]);
        }
    }
    if (rc == 0 && (order = malloc((nsegs + 1) * sizeof(*order))) == NULL) {
        rc = -ENOMEM;
    }
    if (rc == 0) {
        size_t n = 0;
        for (unsigned i = 0; i < old->nshards; i++) {
            for (uint32_t sid = 0; sid < src[i]->nseg; sid++) {
                const struct seg_hdr *h = hdr(src[i], sid);
                if (h->used) {
                    order[n++] = (struct old_seg){
                        .rank = evict_rank(src[i], sid, base->evict),
                        .cas_base = h->cas_base,
                        .opened = h->opened,
                        .shard = i,
                        .sid = sid,
                    };
                }
            }
        }
        qsort(order, n, sizeof(*order), cmp_old);
        struct move_ctx m = {.dst = dst, .n = want->nshards, .shard_of = shard_of, .fetched = -1};
        /* merge: the items never read, then those read; the other policies: one pass. */
        int first = base->evict == SEG_EVICT_MERGE ? 0 : -1, last = first < 0 ? -1 : 1;
        for (int pass = first; pass <= last; pass++) {
            m.fetched = pass;
            for (size_t k = 0; k < n; k++) {
                seg_export_seg(src[order[k].shard], order[k].sid, move_one, &m);
            }
        }
        uint64_t evicted = 0;
        for (unsigned i = 0; i < want->nshards; i++) {
            evicted += dst[i]->st.evicted_items;
        }
        info->moved_items = m.moved - evicted;
        info->dropped_items = m.dropped + evicted;
    }
    for (unsigned i = 0; src != NULL && i < old->nshards; i++) {
        seg_destroy(&src[i]);
    }
    for (unsigned i = 0; dst != NULL && i < want->nshards; i++) {
        seg_destroy(&dst[i]);
    }
    free(order);
    free(src);
    free(dst);
    return rc;
}

/*
 * Re-shard: build the new layout in path.new, then rename it over path. Until the rename the old
 * file is intact, so a crash meanwhile just re-shards again at the next start. Both files exist
 * at once for that time. On success *fd is the new file's descriptor.
 */
static int
reshard(const char *path, int *fd, const struct file_hdr *old, const struct file_hdr *want,
        const struct seg_options *base, seg_shard_fn shard_of, struct seg_file_info *info)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.new", path) >= (int)sizeof(tmp)) {
        return -ENAMETOOLONG;
    }
    int nfd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (nfd < 0) {
        return -errno;
    }
    int rc = flock(nfd, LOCK_EX | LOCK_NB) < 0 ? -errno : file_create(nfd, want);
    if (rc == 0) {
        rc = reshard_into(*fd, old, nfd, want, base, shard_of, info);
    }
    if (rc == 0 && rename(tmp, path) < 0) {
        rc = -errno;
    }
    if (rc < 0) {
        close(nfd);
        (void)unlink(tmp);
        return rc;
    }
    close(*fd);
    *fd = nfd;
    return 0;
}

int
seg_file_open(struct seg_file **out, const char *path, const struct seg_options *shard,
              unsigned nshards, seg_shard_fn shard_of, struct seg_file_info *info)
{
    *info = (struct seg_file_info){0};
    struct file_hdr want = layout_for(shard, nshards), old;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) < 0) {
        int rc = -errno;
        snprintf(info->note, sizeof(info->note), "cannot open %s: %s", path, strerror(-rc));
        if (fd >= 0) {
            close(fd);
        }
        return rc;
    }
    int rc = 0;
    const char *why = NULL;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        rc = -errno;
        snprintf(info->note, sizeof(info->note), "%s is in use by another process", path);
    } else if (!S_ISREG(sb.st_mode)) {
        rc = -EINVAL;
        snprintf(info->note, sizeof(info->note), "%s is not a regular file", path);
    } else if (sb.st_size == 0) {
        rc = file_create(fd, &want);
        snprintf(info->note, sizeof(info->note), "%s: new, %u shards of %llu bytes", path, nshards,
                 (unsigned long long)shard->mem_bytes);
    } else if (!hdr_read(fd, sb.st_size, &old, &why)) {
        info->reset = true;
        rc = file_create(fd, &want);
        snprintf(info->note, sizeof(info->note), "%s: %s: starting empty", path, why);
    } else if (same_layout(&old, &want)) {
        snprintf(info->note, sizeof(info->note), "%s: recovering %u shards", path, nshards);
        /*
         * A file copied sparse, or made by the ftruncate fallback, may have holes: allocate
         * them now, so that a full filesystem is this error rather than a SIGBUS at the first
         * write to a hole. Only when it has holes: on tmpfs, fallocate over blocks that were
         * allocated but never written zeroes every one of them again (300 MiB of a 1 GiB
         * file just filled: half a second of the restart).
         */
        if ((uint64_t)sb.st_blocks * 512 < old.file_len) {
            int err = posix_fallocate(fd, 0, (off_t)old.file_len);
            if (err != 0 && err != EOPNOTSUPP && err != EINVAL) {
                rc = -err;
            }
        }
    } else {
        info->resharded = true;
        rc = reshard(path, &fd, &old, &want, shard, shard_of, info);
        if (rc < 0) {
            /*
             * E.g. no room for both files on the filesystem: a cache must still start, so it
             * starts empty in the file (which keeps its descriptor and lock), saying why.
             */
            int err = -rc;
            *info = (struct seg_file_info){.reset = true};
            rc = file_create(fd, &want);
            snprintf(info->note, sizeof(info->note),
                     "%s: cannot re-shard it from %u shards of %llu bytes: %s: starting empty",
                     path, old.nshards, (unsigned long long)old.shard_mem, strerror(err));
        } else {
            snprintf(info->note, sizeof(info->note),
                     "%s: re-sharded from %u shards of %llu bytes (segments of %llu) to %u of %llu "
                     "(segments of %llu): %llu items moved, %llu did not fit (kept by eviction "
                     "policy %s)",
                     path, old.nshards, (unsigned long long)old.shard_mem,
                     (unsigned long long)old.seg_size, nshards,
                     (unsigned long long)shard->mem_bytes, (unsigned long long)shard->seg_size,
                     (unsigned long long)info->moved_items, (unsigned long long)info->dropped_items,
                     seg_evict_policy_names[shard->evict]);
        }
    }
    if (rc < 0) {
        size_t l = strlen(info->note);
        snprintf(info->note + l, sizeof(info->note) - l, " (failed: %s)", strerror(-rc));
        close(fd);
        return rc;
    }
    struct seg_file *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        close(fd);
        return -ENOMEM;
    }
    f->fd = fd;
    f->hdr = want;
    *out = f;
    return 0;
}

void
seg_file_shard(const struct seg_file *f, unsigned i, struct seg_options *o)
{
    o->file_fd = f->fd;
    o->file_off = FILE_HDR_LEN + (uint64_t)i * f->hdr.region_len;
}

void
seg_file_close(struct seg_file **fp)
{
    if (fp == NULL || *fp == NULL) {
        return;
    }
    close((*fp)->fd);
    free(*fp);
    *fp = NULL;
}
