/* mc_dump: lru_crawler metadump / mgdump on one shard. Contract in include/petrel/mc_dump.h. */
#include "petrel/mc_dump.h"

#include "petrel/memcache.h"

#include <string.h>

/* The longest metadump line: the key uri-encoded (3 bytes a byte), then 8 fields. */
#define LINE_MAX_BYTES (SEG_KEY_MAX * 3 + 160)

enum mc_dump_spec
mc_dump_classes(const char *spec, size_t len, uint64_t mask[MC_DUMP_CLASS_WORDS])
{
    size_t nclasses = seg_ttl_bucket_count();
    memset(mask, 0, MC_DUMP_CLASS_WORDS * sizeof(mask[0]));
    bool hash = len == 4 && memcmp(spec, "hash", 4) == 0;
    if (hash || (len == 3 && memcmp(spec, "all", 3) == 0)) {
        for (size_t i = 0; i < nclasses; i++) {
            mask[i / 64] |= UINT64_C(1) << (i % 64);
        }
        return hash ? MC_DUMP_HASH : MC_DUMP_CLASSES;
    }
    bool any = false;
    for (size_t i = 0; i < len;) {
        const char *comma = memchr(spec + i, ',', len - i);
        size_t n = comma != NULL ? (size_t)(comma - (spec + i)) : len - i;
        if (n > 0) {
            uint32_t id;
            if (!mc_strtoul32(spec + i, n, &id) || id < 1 || id > nclasses) {
                return MC_DUMP_BADCLASS;
            }
            mask[(id - 1) / 64] |= UINT64_C(1) << ((id - 1) % 64);
            any = true;
        }
        i += n + 1;
    }
    return any ? MC_DUMP_CLASSES : MC_DUMP_NONE;
}

/* memcached's uri encoding: letters, digits and "-._~" as they are, every other byte %XX. */
static char *
put_uri(char *p, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                     (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~';
        if (plain) {
            *p++ = (char)ch;
        } else {
            *p++ = '%';
            *p++ = hex[ch >> 4];
            *p++ = hex[ch & 15];
        }
    }
    return p;
}

static char *
put_str(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

static char *
put_u64(char *p, uint64_t v)
{
    return p + mc_u64toa(v, p);
}

/*
 * memcached 1.6.45's line: key, exp (absolute, -1 for never), la, cas, fetch, cls, size, flags,
 * each followed by a space, then "\n". Petrel keeps no access time: la is when the item's
 * segment was opened, which is at or before the item was written (docs/protocol.md).
 */
static char *
put_metadump(char *p, const struct seg_item_info *it, bool cas_disabled)
{
    p = put_str(p, "key=");
    p = put_uri(p, it->key, it->klen);
    p = put_str(p, " exp=");
    p = it->expire == 0 ? put_str(p, "-1") : put_u64(p, (uint64_t)it->expire);
    p = put_str(p, " la=");
    p = put_u64(p, (uint64_t)it->written);
    p = put_str(p, " cas=");
    p = put_u64(p, cas_disabled ? 0 : it->cas);
    p = put_str(p, (it->state & SEG_ST_FETCHED) ? " fetch=yes" : " fetch=no");
    p = put_str(p, " cls=");
    p = put_u64(p, (uint64_t)it->bucket + 1);
    p = put_str(p, " size=");
    p = put_u64(p, it->size);
    p = put_str(p, " flags=");
    p = put_u64(p, it->flags);
    return put_str(p, " \n");
}

/* A byte Petrel's text protocol does not take in a key: then mgdump sends the key base64. */
static bool
needs_base64(const char *key, size_t klen)
{
    for (size_t i = 0; i < klen; i++) {
        unsigned char ch = (unsigned char)key[i];
        if (ch <= ' ' || ch == 0x7f) {
            return true;
        }
    }
    return false;
}

static char *
put_base64(char *p, const unsigned char *s, size_t n)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        v |= i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0;
        v |= i + 2 < n ? s[i + 2] : 0;
        *p++ = b64[v >> 18];
        *p++ = b64[(v >> 12) & 63];
        *p++ = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        *p++ = i + 2 < n ? b64[v & 63] : '=';
    }
    return p;
}

/* memcached's mgdump line: "mg <key>", or "mg <base64 key> b" for a binary key. */
static char *
put_mgdump(char *p, const struct seg_item_info *it)
{
    p = put_str(p, "mg ");
    if (needs_base64(it->key, it->klen)) {
        p = put_base64(p, (const unsigned char *)it->key, it->klen);
        return put_str(p, " b\r\n");
    }
    memcpy(p, it->key, it->klen);
    return put_str(p + it->klen, "\r\n");
}

struct step {
    const struct mc_dump *d;
    struct buf *out;
    size_t stop_at; /* stop after the bucket in which out reached this length */
    bool cas_disabled;
    int rc;
};

static bool
dump_item(void *ctx, const struct seg_item_info *it)
{
    struct step *st = ctx;
    if (st->rc < 0 || !(st->d->mask[it->bucket / 64] & (UINT64_C(1) << (it->bucket % 64)))) {
        return st->rc == 0;
    }
    st->rc = buf_reserve(st->out, LINE_MAX_BYTES);
    if (st->rc < 0) {
        return false;
    }
    char *start = buf_wptr(st->out);
    char *p = st->d->mgdump ? put_mgdump(start, it) : put_metadump(start, it, st->cas_disabled);
    buf_commit(st->out, (size_t)(p - start));
    return buf_len(st->out) < st->stop_at;
}

int
mc_dump_step(struct mc_shard *sh, struct mc_dump *d, struct buf *out, size_t max_bytes,
             unsigned max_buckets)
{
    struct step st = {.d = d,
                      .out = out,
                      .stop_at = buf_len(out) + max_bytes,
                      .cas_disabled = sh->cas_disabled,
                      .rc = 0};
    bool more = seg_scan(sh->seg, &d->cur, max_buckets, dump_item, &st);
    return st.rc < 0 ? st.rc : more;
}
