/*
 * Unit tests of the seg engine's memory file (seg_options.file_fd) and its recovery: what a
 * restart brings back, and what it must not (torn, damaged, deleted, expired, flushed items).
 * The file is an anonymous memfd; "restart" is seg_destroy then seg_create on the same file.
 */
#include "petrel/seg.h"
#include "petrel/seg_file.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define T0   1700000000
#define MEM  (4u << 20)
#define SEGB (64u << 10)

static int64_t now_s = T0;

static int64_t
fake_now(void *ctx)
{
    (void)ctx;
    return now_s;
}

static int fd = -1;
static bool prefault; /* open_mem's seg_options.prefault */

static void
setup(void)
{
    fd = memfd_create("seg-recover-test", MFD_CLOEXEC);
    cr_assert_geq(fd, 0);
    now_s = T0;
    prefault = false;
}

static void
teardown(void)
{
    close(fd);
}

TestSuite(seg_recover, .init = setup, .fini = teardown);

static struct seg *
open_mem(size_t mem, size_t seg_size, enum seg_evict_policy evict)
{
    struct seg_options o;
    seg_options_init(&o);
    o.prefault = prefault;
    o.mem_bytes = mem;
    o.seg_size = seg_size;
    o.item_max = seg_size;
    o.evict = evict;
    o.clock = fake_now;
    o.file_fd = fd;
    o.file_off = 0;
    if (ftruncate(fd, (off_t)seg_region_size(&o)) < 0) {
        cr_assert_fail("ftruncate");
    }
    struct seg *s = NULL;
    cr_assert_eq(seg_create(&s, &o), 0);
    return s;
}

static struct seg *
open_default(void)
{
    return open_mem(MEM, SEGB, SEG_EVICT_MERGE);
}

static struct seg *
restart(struct seg **s)
{
    seg_destroy(s);
    return open_default();
}

static uint64_t
put(struct seg *s, const char *key, const char *val, uint32_t flags, int64_t exptime)
{
    struct seg_store_req r = {.mode = SEG_SET,
                              .key = key,
                              .klen = strlen(key),
                              .hash = seg_hash(key, strlen(key)),
                              .value = val,
                              .vlen = strlen(val),
                              .flags = flags,
                              .expire = exptime == 0 ? 0 : seg_clock(s) + exptime};
    uint64_t cas = 0;
    cr_assert_eq(seg_store(s, &r, &cas), SEG_STORED);
    return cas;
}

static enum seg_result
get(struct seg *s, const char *key, struct seg_view *v)
{
    return seg_get(s, key, strlen(key), seg_hash(key, strlen(key)), v);
}

static void
assert_value(struct seg *s, const char *key, const char *val)
{
    struct seg_view v;
    cr_assert_eq(get(s, key, &v), SEG_OK, "%s missing", key);
    cr_assert_eq(v.vlen, strlen(val));
    cr_assert_eq(memcmp(v.value, val, v.vlen), 0, "%s has a wrong value", key);
}

static struct seg_stats
stats(const struct seg *s)
{
    struct seg_stats st;
    seg_stats_get(s, &st);
    return st;
}

/* The whole file, mapped for the test to look at or damage. */
static uint8_t *
map_file(size_t *len)
{
    *len = (size_t)lseek(fd, 0, SEEK_END);
    uint8_t *p = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert_neq(p, MAP_FAILED);
    return p;
}

/* The nth (0-based) place the bytes of needle occur in the file, or NULL. */
static uint8_t *
find_nth(uint8_t *p, size_t len, const char *needle, int nth)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++) {
        if (memcmp(p + i, needle, n) == 0 && nth-- == 0) {
            return p + i;
        }
    }
    return NULL;
}

Test(seg_recover, restart_keeps_value_flags_cas_and_ttl)
{
    struct seg *s = open_default();
    uint64_t c1 = put(s, "alpha", "one", 0, 0);
    uint64_t c2 = put(s, "beta", "two", 0xdeadbeef, 100);
    s = restart(&s);
    struct seg_view v;
    cr_assert_eq(get(s, "alpha", &v), SEG_OK);
    cr_assert_eq(v.cas, c1);
    cr_assert_eq(v.flags, 0);
    cr_assert_eq(v.ttl, -1);
    cr_assert_eq(get(s, "beta", &v), SEG_OK);
    cr_assert_eq(v.cas, c2);
    cr_assert_eq(v.flags, 0xdeadbeef);
    cr_assert_eq(v.ttl, 100);
    cr_assert_eq(v.vlen, 3);
    cr_assert_eq(stats(s).recovered_items, 2);
    cr_assert_eq(stats(s).items, 2);
    seg_destroy(&s);
}

Test(seg_recover, prefault_keeps_what_was_recovered)
{
    prefault = true; /* memcached's -L: the packaged configuration sets it */
    struct seg *s = open_default();
    put(s, "pre", "faulted", 0, 0);
    s = restart(&s);
    assert_value(s, "pre", "faulted");
    seg_destroy(&s);
}

Test(seg_recover, cas_values_stay_unique_after_restart)
{
    struct seg *s = open_default();
    uint64_t c1 = put(s, "k", "v1", 0, 0);
    s = restart(&s);
    uint64_t c2 = put(s, "other", "v", 0, 0);
    cr_assert_neq(c1, c2);
    uint64_t c3 = put(s, "k", "v2", 0, 0);
    cr_assert_neq(c3, c1);
    seg_destroy(&s);
}

Test(seg_recover, deleted_and_replaced_versions_do_not_come_back)
{
    struct seg *s = open_default();
    put(s, "gone", "x", 0, 0);
    put(s, "kept", "old", 0, 0);
    put(s, "kept", "new", 0, 0);
    cr_assert_eq(seg_delete(s, "gone", 4, seg_hash("gone", 4)), SEG_DELETED);
    s = restart(&s);
    struct seg_view v;
    cr_assert_eq(get(s, "gone", &v), SEG_NOT_FOUND);
    assert_value(s, "kept", "new");
    cr_assert_eq(stats(s).items, 1);
    seg_destroy(&s);
}

Test(seg_recover, of_two_live_versions_the_later_wins)
{
    struct seg *s = open_default();
    put(s, "dup", "first", 0, 0);
    put(s, "dup", "second", 0, 0);
    seg_destroy(&s);
    /* A crash between committing the new version and killing the old leaves both live. */
    size_t len;
    uint8_t *p = map_file(&len);
    uint8_t *first = find_nth(p, len, "dupfirst", 0);
    cr_assert_not_null(first);
    uint8_t *it = first - 5; /* the header: no CAS, expiry or flags before the key */
    cr_assert(it[1] & 0x01, "the replaced version is marked dead");
    it[1] &= (uint8_t)~0x01;
    munmap(p, len);
    s = open_default();
    assert_value(s, "dup", "second");
    cr_assert_eq(stats(s).items, 1);
    seg_destroy(&s);
}

/*
 * The same crash where the new version went to an older segment: a key whose TTL changed is
 * written to another TTL bucket's tail, which may have been opened before the segment holding
 * the version it replaces. Recovery orders by segment, so the old version comes back; that is
 * allowed (the write had not returned), but it must come back whole and alone.
 */
Test(seg_recover, of_two_live_versions_across_ttl_buckets_one_comes_back_whole)
{
    struct seg *s = open_default();
    put(s, "other", "x", 0, 0);      /* opens the never-expiring bucket's segment first */
    put(s, "dup", "first", 0, 1000); /* a segment of another bucket, opened later */
    put(s, "dup", "second", 0, 0);   /* back into the older, never-expiring segment */
    seg_destroy(&s);
    size_t len;
    uint8_t *p = map_file(&len);
    uint8_t *first = find_nth(p, len, "dupfirst", 0);
    cr_assert_not_null(first);
    uint8_t *it = first - 5; /* first in its segment: no CAS, own expiry or flags */
    cr_assert_eq(it[0], 3, "the header of dup's first version");
    cr_assert(it[1] & 0x01, "the replaced version is marked dead");
    it[1] &= (uint8_t)~0x01;
    munmap(p, len);
    s = open_default();
    struct seg_view v;
    cr_assert_eq(get(s, "dup", &v), SEG_OK);
    bool whole = (v.vlen == 5 && memcmp(v.value, "first", 5) == 0) ||
                 (v.vlen == 6 && memcmp(v.value, "second", 6) == 0);
    cr_assert(whole, "dup is one of its versions, whole");
    cr_assert_eq(stats(s).items, 2, "dup once, and other");
    seg_destroy(&s);
}

Test(seg_recover, uncommitted_reservation_is_not_recovered)
{
    struct seg *s = open_default();
    put(s, "before", "v", 0, 0);
    struct seg_store_req r = {
        .mode = SEG_SET, .key = "torn", .klen = 4, .hash = seg_hash("torn", 4), .vlen = 5};
    struct seg_reservation res;
    cr_assert_eq(seg_reserve(s, &r, &res), SEG_OK);
    memcpy(res.value, "hal", 3); /* the value arrives partly, then the process dies */
    s = restart(&s);
    struct seg_view v;
    cr_assert_eq(get(s, "torn", &v), SEG_NOT_FOUND);
    assert_value(s, "before", "v");
    seg_destroy(&s);
}

Test(seg_recover, flipped_value_byte_drops_the_item_and_counts_it)
{
    struct seg *s = open_default();
    put(s, "a1", "aaaaaaaa", 0, 0);
    put(s, "b2", "bbbbbbbb", 0, 0);
    put(s, "c3", "cccccccc", 0, 0);
    seg_destroy(&s);
    size_t len;
    uint8_t *p = map_file(&len);
    uint8_t *b = find_nth(p, len, "b2bbbbbbbb", 0);
    cr_assert_not_null(b);
    b[5] ^= 0x40;
    munmap(p, len);
    s = open_default();
    struct seg_view v;
    assert_value(s, "a1", "aaaaaaaa");
    cr_assert_eq(get(s, "b2", &v), SEG_NOT_FOUND, "a damaged item is never served");
    cr_assert_eq(stats(s).recovery_damaged, 1);
    seg_destroy(&s);
}

Test(seg_recover, flipped_length_byte_never_misreads)
{
    struct seg *s = open_default();
    for (int i = 0; i < 200; i++) {
        char k[16], val[32];
        snprintf(k, sizeof(k), "key%d", i);
        snprintf(val, sizeof(val), "value-%d", i);
        put(s, k, val, 0, 0);
    }
    seg_destroy(&s);
    size_t len;
    uint8_t *p = map_file(&len);
    uint8_t *it = find_nth(p, len, "key100value-100", 0) - 5;
    it[2] ^= 0x7f; /* the value length */
    munmap(p, len);
    s = open_default();
    cr_assert_geq(stats(s).recovery_damaged, 1);
    for (int i = 0; i < 200; i++) {
        char k[16], val[32];
        snprintf(k, sizeof(k), "key%d", i);
        snprintf(val, sizeof(val), "value-%d", i);
        struct seg_view v;
        if (get(s, k, &v) == SEG_OK) {
            cr_assert_eq(v.vlen, strlen(val));
            cr_assert_eq(memcmp(v.value, val, v.vlen), 0);
        } else {
            cr_assert_geq(i, 100, "only items from the damage on may be lost");
        }
    }
    assert_value(s, "key99", "value-99");
    seg_destroy(&s);
}

Test(seg_recover, generation_mismatch_drops_the_segment_items)
{
    struct seg *s = open_default();
    put(s, "g1", "v1", 0, 0);
    put(s, "g2", "v2", 0, 0);
    seg_destroy(&s);
    /* Segment headers follow the meta page: give segment 0 the generation of another. */
    size_t len;
    uint8_t *p = map_file(&len);
    uint64_t cas_base;
    memcpy(&cas_base, p + 4096, 8);
    uint64_t next;
    memcpy(&next, p + 32, 8); /* seg_meta.cas_next */
    cr_assert_eq(next, cas_base + SEGB);
    /* Pretend one more segment was opened and segment 0 is its reuse: items are from before. */
    next = cas_base + 2 * SEGB;
    memcpy(p + 32, &next, 8);
    cas_base += SEGB;
    memcpy(p + 4096, &cas_base, 8);
    munmap(p, len);
    s = open_default();
    struct seg_view v;
    cr_assert_eq(get(s, "g1", &v), SEG_NOT_FOUND);
    cr_assert_eq(get(s, "g2", &v), SEG_NOT_FOUND);
    cr_assert_geq(stats(s).recovery_damaged, 1);
    seg_destroy(&s);
}

Test(seg_recover, a_fresh_region_starts_its_generations_away_from_zero)
{
    /* Old bytes in the heap must not meet the generations their checksums were made with. */
    struct seg *s = open_default();
    put(s, "a", "1", 0, 0);
    seg_destroy(&s);
    size_t len;
    uint8_t *p = map_file(&len);
    uint64_t cas_base;
    memcpy(&cas_base, p + 4096, 8);
    munmap(p, len);
    cr_assert_neq(cas_base, 0);
    cr_assert_eq(cas_base % SEGB, 0);
}

Test(seg_recover, insane_segment_header_drops_the_segment)
{
    struct seg *s = open_default();
    put(s, "h1", "v1", 0, 0);
    seg_destroy(&s);
    size_t len;
    uint8_t *p = map_file(&len);
    uint32_t write_off = SEGB + 1; /* seg_hdr.write_off, past the segment */
    memcpy(p + 4096 + 8, &write_off, 4);
    munmap(p, len);
    s = open_default();
    struct seg_view v;
    cr_assert_eq(get(s, "h1", &v), SEG_NOT_FOUND);
    cr_assert_eq(stats(s).recovery_bad_segs, 1);
    put(s, "h2", "after", 0, 0); /* the segment is usable again */
    s = restart(&s);
    assert_value(s, "h2", "after");
    seg_destroy(&s);
}

Test(seg_recover, items_expired_meanwhile_are_dropped)
{
    struct seg *s = open_default();
    put(s, "short", "v", 0, 5);
    put(s, "long", "v", 0, 1000);
    seg_destroy(&s);
    now_s += 10;
    s = open_default();
    struct seg_view v;
    cr_assert_eq(get(s, "short", &v), SEG_NOT_FOUND);
    cr_assert_eq(get(s, "long", &v), SEG_OK);
    cr_assert(v.ttl <= 990 && v.ttl > 990 - 64, "ttl %lld", (long long)v.ttl); /* bucket slack */
    seg_destroy(&s);
}

Test(seg_recover, expired_item_in_a_live_segment_is_counted)
{
    struct seg *s = open_default();
    put(s, "never", "v", 0, 0);
    put(s, "soon", "v", 0, 40);
    now_s += 5; /* the same segment still takes 40 s items, which then carry their own expiry */
    put(s, "later", "v", 0, 40);
    seg_destroy(&s);
    now_s += 37;
    s = open_default();
    struct seg_view v;
    cr_assert_eq(get(s, "soon", &v), SEG_NOT_FOUND);
    cr_assert_eq(get(s, "later", &v), SEG_OK);
    cr_assert_eq(stats(s).recovery_expired, 1);
    seg_destroy(&s);
}

Test(seg_recover, flush_all_survives_a_restart)
{
    struct seg *s = open_default();
    put(s, "f", "v", 0, 0);
    seg_flush(s, 0);
    s = restart(&s);
    struct seg_view v;
    cr_assert_eq(get(s, "f", &v), SEG_NOT_FOUND);
    put(s, "g", "v", 0, 0);
    s = restart(&s);
    assert_value(s, "g", "v");
    seg_destroy(&s);
}

Test(seg_recover, other_layout_starts_empty)
{
    struct seg *s = open_default();
    put(s, "x", "v", 0, 0);
    seg_destroy(&s);
    s = open_mem(MEM, SEGB * 2, SEG_EVICT_MERGE);
    struct seg_view v;
    cr_assert_eq(get(s, "x", &v), SEG_NOT_FOUND);
    cr_assert_eq(stats(s).recovery_reset, 1);
    seg_destroy(&s);
}

Test(seg_recover, merged_segments_recover)
{
    /* Small heap, many writes: merge eviction runs; what is linked must come back intact. */
    struct seg *s = open_mem(16 * SEGB, SEGB, SEG_EVICT_MERGE);
    char val[200];
    memset(val, 'm', sizeof(val) - 1);
    val[sizeof(val) - 1] = '\0';
    for (int i = 0; i < 20000; i++) {
        char k[16];
        snprintf(k, sizeof(k), "m%d", i);
        put(s, k, val, (uint32_t)i, 0);
    }
    cr_assert_gt(stats(s).merges, 0);
    uint64_t items = stats(s).items;
    seg_destroy(&s);
    s = open_mem(16 * SEGB, SEGB, SEG_EVICT_MERGE);
    cr_assert_eq(stats(s).items, items);
    cr_assert_eq(stats(s).recovery_damaged, 0);
    uint64_t found = 0;
    for (int i = 0; i < 20000; i++) {
        char k[16];
        snprintf(k, sizeof(k), "m%d", i);
        struct seg_view v;
        if (get(s, k, &v) == SEG_OK) {
            cr_assert_eq(v.flags, (uint32_t)i);
            cr_assert_eq(v.vlen, strlen(val));
            found++;
        }
    }
    cr_assert_eq(found, items);
    seg_destroy(&s);
}

/*
 * A memory file whose header has a valid checksum but a region length smaller than its sizes
 * give (a damaged or forged file: the checksum is no authentication): re-sharding it must not
 * map an old region past the end of the file, where recovery's walk would fault (SIGBUS). It
 * starts empty instead.
 */
Test(seg_recover, header_with_short_regions_starts_empty)
{
    const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    char dir[512], path[600];
    snprintf(dir, sizeof(dir), "%s/seg-file-XXXXXX", tmp);
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/mem", dir);
    /* The header (seg_file.c's format 1), then one region cut to its meta page and headers. */
    struct {
        char magic[8];
        uint32_t version, nshards;
        uint64_t seg_size, shard_mem, region_len, file_len, sum;
    } h = {.version = 1, .nshards = 1, .seg_size = SEGB, .shard_mem = MEM, .region_len = 8192};
    memcpy(h.magic, "PTRLMEM1", 8);
    h.file_len = 4096 + h.region_len;
    h.sum = XXH3_64bits(&h, offsetof(__typeof__(h), sum));
    uint8_t *file = calloc(1, h.file_len);
    cr_assert_not_null(file);
    memcpy(file, &h, sizeof(h));
    /* Its meta page (seg_impl.h's struct seg_meta) matches, and segment 0 is in use. */
    uint8_t *meta = file + 4096;
    uint64_t magic = UINT64_C(0x31746d736c727470), nseg = MEM / SEGB, cas_next = 1u << 20;
    uint32_t version = 1, seg_size = SEGB, hdr_size = 48, item_sum = 0x80;
    memcpy(meta, &magic, 8);
    memcpy(meta + 8, &version, 4);
    memcpy(meta + 12, &seg_size, 4);
    memcpy(meta + 16, &nseg, 8);
    memcpy(meta + 24, &hdr_size, 4);
    memcpy(meta + 28, &item_sum, 4);
    memcpy(meta + 32, &cas_next, 8);
    uint8_t *hdr0 = file + 8192;
    uint32_t write_off = 100;
    memcpy(hdr0 + 8, &write_off, 4);
    hdr0[44] = 1; /* used */
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(file, 1, h.file_len, f), h.file_len);
    fclose(f);
    free(file);

    struct seg_options o;
    seg_options_init(&o);
    o.mem_bytes = MEM;
    o.seg_size = SEGB;
    o.item_max = SEGB;
    o.clock = fake_now;
    struct seg_file *sf = NULL;
    struct seg_file_info info;
    cr_assert_eq(seg_file_open(&sf, path, &o, 2, NULL, &info), 0, "%s", info.note);
    cr_assert(info.reset, "%s", info.note);
    seg_file_close(&sf);
    unlink(path);
    rmdir(dir);
}

/* More items than one batch of recovery's sorted linking holds (256k): every version is right. */
Test(seg_recover, many_items_recover_across_linking_batches)
{
    struct seg *s = open_mem(16u << 20, SEGB, SEG_EVICT_MERGE);
    enum { N = 400000, REWRITTEN = 5000 };
    char key[16];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        put(s, key, "v", 0, 0);
    }
    for (int i = 0; i < REWRITTEN; i++) {
        snprintf(key, sizeof(key), "k%d", i * 7);
        put(s, key, "new", 0, 0);
    }
    seg_destroy(&s);
    s = open_mem(16u << 20, SEGB, SEG_EVICT_MERGE);
    cr_assert_eq(stats(s).items, N);
    cr_assert_eq(stats(s).recovered_items, N);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_value(s, key, i % 7 == 0 && i / 7 < REWRITTEN ? "new" : "v");
    }
    seg_destroy(&s);
}

/*
 * The file keeps whether an item was read, not how often: after a restart, an item read before
 * counts as read once, so a merge keeps it over the items never read.
 */
Test(seg_recover, items_read_before_a_restart_survive_a_merge_over_unread_ones)
{
    struct seg *s = open_default();
    char key[16];
    char val[200];
    memset(val, 'x', sizeof(val) - 1);
    val[sizeof(val) - 1] = '\0';
    int n = 0;
    while (stats(s).segs_free > 0) {
        snprintf(key, sizeof(key), "k%d", n++);
        put(s, key, val, 0, 0);
    }
    /* Read one item in four of the oldest quarter. */
    struct seg_view v;
    for (int i = 0; i < n / 4; i += 4) {
        snprintf(key, sizeof(key), "k%d", i);
        cr_assert_eq(get(s, key, &v), SEG_OK);
    }
    s = restart(&s);
    /* Force merges at the head of the bucket: write as much again. */
    for (int i = n; i < n + n / 4; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        put(s, key, val, 0, 0);
    }
    cr_assert_gt(stats(s).merges, 0);
    int read_kept = 0, read_total = 0, unread_kept = 0, unread_total = 0;
    for (int i = 0; i < n / 4; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        bool kept = seg_get(s, key, strlen(key), seg_hash(key, strlen(key)), &v) == SEG_OK;
        if (i % 4 == 0) {
            read_total++;
            read_kept += kept;
        } else {
            unread_total++;
            unread_kept += kept;
        }
    }
    cr_assert_gt(read_kept * unread_total, 2 * unread_kept * read_total,
                 "read %d of %d kept, unread %d of %d", read_kept, read_total, unread_kept,
                 unread_total);
    seg_destroy(&s);
}

static blkcnt_t
blocks_of(const char *path)
{
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    return sb.st_blocks;
}

/*
 * A memory file with holes (copied sparse, or punched) has them allocated again when it is
 * recovered, so that a full filesystem is an error at start rather than a SIGBUS at a write.
 */
Test(seg_recover, holes_in_a_recovered_file_are_allocated)
{
    const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    char dir[512], path[600];
    snprintf(dir, sizeof(dir), "%s/seg-file-XXXXXX", tmp);
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/mem", dir);
    struct seg_options o;
    seg_options_init(&o);
    o.mem_bytes = MEM;
    o.seg_size = SEGB;
    o.item_max = SEGB;
    o.clock = fake_now;
    struct seg_file *sf = NULL;
    struct seg_file_info info;
    cr_assert_eq(seg_file_open(&sf, path, &o, 2, NULL, &info), 0, "%s", info.note);
    seg_file_close(&sf);
    blkcnt_t full = blocks_of(path);

    int f = open(path, O_RDWR | O_CLOEXEC);
    cr_assert_geq(f, 0);
    int punched = fallocate(f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20);
    close(f);
    if (punched != 0) {
        unlink(path);
        rmdir(dir);
        cr_skip_test("this filesystem cannot punch holes");
    }
    cr_assert_lt(blocks_of(path), full);

    cr_assert_eq(seg_file_open(&sf, path, &o, 2, NULL, &info), 0, "%s", info.note);
    cr_assert_not(info.reset, "%s", info.note);
    cr_assert_geq(blocks_of(path), full, "the hole is allocated again");
    seg_file_close(&sf);
    unlink(path);
    rmdir(dir);
}
