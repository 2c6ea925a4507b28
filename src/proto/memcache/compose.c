/*
 * memcache compose: replies of the memcached text and meta protocol, appended to a struct buf.
 * Contract in include/petrel/memcache.h.
 *
 * Every composer reserves its worst case once, then writes with plain stores and a small
 * integer formatter: no printf on the hot path.
 */
#include "petrel/memcache.h"

#include <errno.h>
#include <string.h>

/* Two decimal digits per table entry halve the divisions. */
static const char digits2[201] = "00010203040506070809"
                                 "10111213141516171819"
                                 "20212223242526272829"
                                 "30313233343536373839"
                                 "40414243444546474849"
                                 "50515253545556575859"
                                 "60616263646566676869"
                                 "70717273747576777879"
                                 "80818283848586878889"
                                 "90919293949596979899";

static unsigned
ndigits(uint64_t n)
{
    unsigned d = 1;
    while (n >= 10000) {
        n /= 10000;
        d += 4;
    }
    if (n >= 1000) {
        return d + 3;
    }
    if (n >= 100) {
        return d + 2;
    }
    return n >= 10 ? d + 1 : d;
}

size_t
mc_u64toa(uint64_t n, char *dst)
{
    unsigned len = ndigits(n);
    char *p = dst + len;
    while (n >= 100) {
        unsigned i = (unsigned)(n % 100) * 2;
        n /= 100;
        p -= 2;
        p[0] = digits2[i];
        p[1] = digits2[i + 1];
    }
    if (n >= 10) {
        p -= 2;
        p[0] = digits2[n * 2];
        p[1] = digits2[n * 2 + 1];
    } else {
        *--p = (char)('0' + n);
    }
    return len;
}

static size_t
i64toa(int64_t n, char *dst)
{
    if (n < 0) {
        dst[0] = '-';
        return 1 + mc_u64toa((uint64_t)0 - (uint64_t)n, dst + 1);
    }
    return mc_u64toa((uint64_t)n, dst);
}

static char *
put(char *p, const void *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUT_LIT(p, s) put(p, s, sizeof(s) - 1)

struct line {
    const char *s;
    size_t len;
};

#define L(s)                                                                                       \
    {                                                                                              \
        s, sizeof(s) - 1                                                                           \
    }

static const struct line replies[MC_R_COUNT] = {
    [MC_R_STORED] = L("STORED\r\n"),
    [MC_R_NOT_STORED] = L("NOT_STORED\r\n"),
    [MC_R_EXISTS] = L("EXISTS\r\n"),
    [MC_R_NOT_FOUND] = L("NOT_FOUND\r\n"),
    [MC_R_DELETED] = L("DELETED\r\n"),
    [MC_R_TOUCHED] = L("TOUCHED\r\n"),
    [MC_R_OK] = L("OK\r\n"),
    [MC_R_END] = L("END\r\n"),
    [MC_R_ERROR] = L("ERROR\r\n"),
    [MC_R_RESET] = L("RESET\r\n"),
    [MC_R_MN] = L("MN\r\n"),
    [MC_R_EN] = L("EN\r\n"),
    [MC_R_SHUTDOWN_DISABLED] = L("SERVER_ERROR: shutdown not enabled\r\n"),
    [MC_R_SLABS_SAME] = L("SAME src and dst class are identical\r\n"),
    [MC_R_SLABS_BADCLASS] = L("BADCLASS invalid src or dst class id\r\n"),
    [MC_R_TOO_LARGE] = L("SERVER_ERROR object too large for cache\r\n"),
    [MC_R_OUT_OF_MEMORY] = L("SERVER_ERROR out of memory storing object\r\n"),
    [MC_R_OOM] = L("SERVER_ERROR out of memory\r\n"),
    [MC_R_NON_NUMERIC] = L("CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"),
    [MC_R_BAD_FORMAT] = L("CLIENT_ERROR bad command line format\r\n"),
};

int
mc_compose_reply(struct buf *b, enum mc_reply r)
{
    if ((unsigned)r >= MC_R_COUNT) {
        return -EINVAL;
    }
    return buf_append(b, replies[r].s, replies[r].len);
}

int
mc_compose_error(struct buf *b, const struct mc_err *err)
{
    if (err->quiet || err->msg == NULL) {
        return 0;
    }
    int rc = buf_reserve(b, (size_t)err->len + 2);
    if (rc < 0) {
        return rc;
    }
    char *p = put(buf_wptr(b), err->msg, err->len);
    p = PUT_LIT(p, "\r\n");
    buf_commit(b, (size_t)(p - buf_wptr(b)));
    return 0;
}

/* "VALUE " key " " flags " " vlen [" " cas] "\r\n" at p; returns the end. */
static char *
value_hdr(char *p, const char *key, size_t klen, uint32_t flags, uint32_t vlen, uint64_t cas,
          bool with_cas)
{
    p = PUT_LIT(p, "VALUE ");
    p = put(p, key, klen);
    *p++ = ' ';
    p += mc_u64toa(flags, p);
    *p++ = ' ';
    p += mc_u64toa(vlen, p);
    if (with_cas) {
        *p++ = ' ';
        p += mc_u64toa(cas, p);
    }
    return PUT_LIT(p, "\r\n");
}

/* Longest VALUE header: the words, a key, three numbers, separators. */
#define VALUE_HDR_MAX MC_VALUE_HDR_MAX(MC_KEY_MAX)

int
mc_compose_value_hdr(struct buf *b, const char *key, size_t klen, uint32_t flags, uint32_t vlen,
                     uint64_t cas, bool with_cas)
{
    if (klen > MC_KEY_MAX) {
        return -EINVAL;
    }
    int rc = buf_reserve(b, VALUE_HDR_MAX);
    if (rc < 0) {
        return rc;
    }
    char *p = value_hdr(buf_wptr(b), key, klen, flags, vlen, cas, with_cas);
    buf_commit(b, (size_t)(p - buf_wptr(b)));
    return 0;
}

int
mc_compose_value(struct buf *b, const char *key, size_t klen, uint32_t flags, const void *val,
                 uint32_t vlen, uint64_t cas, bool with_cas)
{
    if (klen > MC_KEY_MAX) {
        return -EINVAL;
    }
    int rc = buf_reserve(b, VALUE_HDR_MAX + (size_t)vlen + 2);
    if (rc < 0) {
        return rc;
    }
    char *p = value_hdr(buf_wptr(b), key, klen, flags, vlen, cas, with_cas);
    p = put(p, val, vlen);
    p = PUT_LIT(p, "\r\n");
    buf_commit(b, (size_t)(p - buf_wptr(b)));
    return 0;
}

int
mc_compose_u64(struct buf *b, uint64_t n)
{
    int rc = buf_reserve(b, 22);
    if (rc < 0) {
        return rc;
    }
    char *p = buf_wptr(b);
    p += mc_u64toa(n, p);
    p = PUT_LIT(p, "\r\n");
    buf_commit(b, (size_t)(p - buf_wptr(b)));
    return 0;
}

int
mc_compose_version(struct buf *b, const char *version)
{
    size_t len = strlen(version);
    int rc = buf_reserve(b, 8 + len + 2);
    if (rc < 0) {
        return rc;
    }
    char *p = PUT_LIT(buf_wptr(b), "VERSION ");
    p = put(p, version, len);
    p = PUT_LIT(p, "\r\n");
    buf_commit(b, (size_t)(p - buf_wptr(b)));
    return 0;
}

/* "STAT " name " " value "\r\n", value given as bytes. */
static int
stat_line(struct buf *b, const char *name, const char *value, size_t vlen)
{
    size_t nlen = strlen(name);
    int rc = buf_reserve(b, 5 + nlen + 1 + vlen + 2);
    if (rc < 0) {
        return rc;
    }
    char *p = PUT_LIT(buf_wptr(b), "STAT ");
    p = put(p, name, nlen);
    *p++ = ' ';
    p = put(p, value, vlen);
    p = PUT_LIT(p, "\r\n");
    buf_commit(b, (size_t)(p - buf_wptr(b)));
    return 0;
}

int
mc_compose_stat(struct buf *b, const char *name, const char *value)
{
    return stat_line(b, name, value, strlen(value));
}

int
mc_compose_stat_u64(struct buf *b, const char *name, uint64_t n)
{
    char num[24];
    return stat_line(b, name, num, mc_u64toa(n, num));
}

int
mc_compose_stat_i64(struct buf *b, const char *name, int64_t n)
{
    char num[24];
    return stat_line(b, name, num, i64toa(n, num));
}

/* ---- meta ---- */

bool
mc_meta_quiet(const struct mc_req *req, enum mc_meta_code code)
{
    if (!req->noreply) {
        return false;
    }
    switch (req->cmd) {
    case MC_CMD_MG:
        return code == MC_META_EN;
    case MC_CMD_MS:
    case MC_CMD_MD:
        return code == MC_META_HD;
    case MC_CMD_MA:
        return code == MC_META_HD || code == MC_META_VA;
    default:
        return false;
    }
}

/* Return flags that need the item, per command (O and k are echoed always). */
static uint64_t
item_flags(enum mc_cmd cmd)
{
    switch (cmd) {
    case MC_CMD_MG:
        return MC_MF('c') | MC_MF('f') | MC_MF('h') | MC_MF('l') | MC_MF('s') | MC_MF('t');
    case MC_CMD_MS:
        return MC_MF('c') | MC_MF('s');
    case MC_CMD_MA:
        return MC_MF('c') | MC_MF('t');
    default:
        return 0;
    }
}

static char *
flag_num(char *p, char f, uint64_t n)
{
    *p++ = ' ';
    *p++ = f;
    return p + mc_u64toa(n, p);
}

/* One echoed return flag, or p unchanged when this flag echoes nothing here. */
static char *
echo_flag(char *p, const struct mc_req *req, char f, const struct mc_meta_item *it,
          uint64_t allowed)
{
    const struct mc_meta *m = &req->meta;
    if (f == 'O') {
        p = PUT_LIT(p, " O");
        return put(p, m->opaque, m->opaque_len);
    }
    if (f == 'k') {
        p = PUT_LIT(p, " k");
        p = put(p, req->key_raw, req->klen_raw);
        return m->binary_key ? PUT_LIT(p, " b") : p;
    }
    if (it == NULL || !(allowed & MC_MF(f))) {
        return p;
    }
    switch (f) {
    case 'c':
        return flag_num(p, 'c', it->cas);
    case 'f':
        return flag_num(p, 'f', it->flags);
    case 'h':
        return flag_num(p, 'h', it->hit ? 1 : 0);
    case 'l':
        return flag_num(p, 'l', it->la);
    case 's':
        return flag_num(p, 's', it->size);
    case 't':
        p = PUT_LIT(p, " t");
        return p + i64toa(it->ttl, p);
    default:
        return p;
    }
}

/* Room for the code, VA length, every flag with a 20-digit number, a key, an opaque, W X Z. */
#define META_LINE_MAX (3 + 10 + MC_META_FLAGS_MAX * 23 + MC_KEY_MAX + 5 + 256 + 3 + 9 + 2)

/* A meta reply; with hdr_only, a VA reply stops after its line, before the value. */
static int
compose_meta(struct buf *b, const struct mc_req *req, enum mc_meta_code code,
             const struct mc_meta_item *it, bool hdr_only)
{
    static const char codes[][3] = {
        [MC_META_HD] = "HD", [MC_META_VA] = "VA", [MC_META_EN] = "EN",
        [MC_META_NS] = "NS", [MC_META_EX] = "EX", [MC_META_NF] = "NF",
    };
    if ((unsigned)code > MC_META_NF) {
        return -EINVAL;
    }
    if (code == MC_META_HD && it != NULL && it->value != NULL) {
        code = MC_META_VA;
    }
    if (code == MC_META_VA && it == NULL) {
        return -EINVAL;
    }
    if (mc_meta_quiet(req, code)) {
        return 0;
    }
    size_t vlen = code == MC_META_VA ? it->vlen : 0;
    int rc = buf_reserve(b, META_LINE_MAX + (hdr_only ? 0 : vlen + 2));
    if (rc < 0) {
        return rc;
    }
    char *start = buf_wptr(b);
    char *p = put(start, codes[code], 2);
    if (code == MC_META_VA) {
        *p++ = ' ';
        p += mc_u64toa(vlen, p);
    }
    uint64_t allowed = item_flags(req->cmd);
    for (unsigned i = 0; i < req->meta.nflags; i++) {
        p = echo_flag(p, req, req->meta.order[i], it, allowed);
    }
    if (req->cmd == MC_CMD_MG && it != NULL) {
        /* memcached appends the recache state after the requested flags. */
        if (it->win_sent) {
            p = PUT_LIT(p, " Z");
        }
        if (it->stale) {
            p = PUT_LIT(p, " X");
        }
        if (it->won) {
            p = PUT_LIT(p, " W");
        }
    }
    p = PUT_LIT(p, "\r\n");
    if (code == MC_META_VA && !hdr_only) {
        if (vlen > 0) {
            p = put(p, it->value, vlen);
        }
        p = PUT_LIT(p, "\r\n");
    }
    buf_commit(b, (size_t)(p - start));
    return 0;
}

int
mc_compose_meta(struct buf *b, const struct mc_req *req, enum mc_meta_code code,
                const struct mc_meta_item *it)
{
    return compose_meta(b, req, code, it, false);
}

int
mc_compose_meta_va_hdr(struct buf *b, const struct mc_req *req, const struct mc_meta_item *it)
{
    return compose_meta(b, req, MC_META_VA, it, true);
}

int
mc_compose_me(struct buf *b, const struct mc_req *req, int64_t exp, uint64_t la, uint64_t cas,
              bool fetched, uint32_t cls, uint64_t size)
{
    int rc = buf_reserve(b, 3 + MC_KEY_MAX + 5 + 21 + 4 + 20 + 5 + 20 + 10 + 5 + 10 + 6 + 20 + 2);
    if (rc < 0) {
        return rc;
    }
    char *start = buf_wptr(b);
    char *p = PUT_LIT(start, "ME ");
    p = put(p, req->key_raw, req->klen_raw);
    p = PUT_LIT(p, " exp=");
    p += i64toa(exp, p);
    p = PUT_LIT(p, " la=");
    p += mc_u64toa(la, p);
    p = PUT_LIT(p, " cas=");
    p += mc_u64toa(cas, p);
    p = fetched ? PUT_LIT(p, " fetch=yes") : PUT_LIT(p, " fetch=no");
    p = PUT_LIT(p, " cls=");
    p += mc_u64toa(cls, p);
    p = PUT_LIT(p, " size=");
    p += mc_u64toa(size, p);
    p = PUT_LIT(p, "\r\n");
    buf_commit(b, (size_t)(p - start));
    return 0;
}
