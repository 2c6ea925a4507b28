/*
 * resp compose: RESP2 and RESP3 replies appended to a struct buf, byte for byte what Redis 7
 * sends for the same values. Contract in include/petrel/resp.h.
 *
 * Every composer reserves its worst case once, then writes with plain stores and a small
 * integer formatter: no printf on the hot path (doubles excepted, see resp_format_double).
 */
#include "petrel/resp.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HDR_MAX 24 /* a type byte, "-" and 20 digits of a 64-bit integer, "\r\n" */

/* n bytes of s at p (s may be NULL when n is 0, e.g. an empty bulk); returns the end. */
static char *
put(char *p, const void *s, size_t n)
{
    if (n > 0) {
        memcpy(p, s, n);
    }
    return p + n;
}

/* Decimal digits of n at p; returns the end. */
static char *
put_u64(char *p, uint64_t n)
{
    char tmp[20];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + n % 10);
        n /= 10;
    } while (n != 0);
    return put(p, tmp + i, sizeof(tmp) - i);
}

static char *
put_i64(char *p, int64_t n)
{
    if (n < 0) {
        *p++ = '-';
        return put_u64(p, (uint64_t)0 - (uint64_t)n);
    }
    return put_u64(p, (uint64_t)n);
}

/* A line "<type><n>\r\n" (headers, integers, null forms with n = -1). */
static int
header(struct buf *b, char type, int64_t n)
{
    int rc = buf_reserve(b, HDR_MAX);
    if (rc < 0) {
        return rc;
    }
    char *p = buf_wptr(b);
    *p++ = type;
    p = put_i64(p, n);
    *p++ = '\r';
    *p++ = '\n';
    buf_commit(b, (size_t)(p - buf_wptr(b)));
    return 0;
}

/* A reply of text that must stay on one line: CR and LF go out as spaces. */
static int
line(struct buf *b, const char *prefix, size_t plen, const char *s, size_t len)
{
    int rc = buf_reserve(b, plen + len + 2);
    if (rc < 0) {
        return rc;
    }
    char *p = put(buf_wptr(b), prefix, plen);
    for (size_t i = 0; i < len; i++) {
        p[i] = s[i] == '\r' || s[i] == '\n' ? ' ' : s[i];
    }
    p += len;
    *p++ = '\r';
    *p++ = '\n';
    buf_commit(b, (size_t)(p - buf_wptr(b)));
    return 0;
}

/* A whole bulk string, with an optional prefix inside it (verbatim's "txt:"). */
static int
bulk(struct buf *b, char type, const char *pre, size_t plen, const void *s, size_t len)
{
    int rc = buf_reserve(b, HDR_MAX + plen + len + 2);
    if (rc < 0) {
        return rc;
    }
    char *p = buf_wptr(b);
    *p++ = type;
    p = put_u64(p, (uint64_t)(plen + len));
    *p++ = '\r';
    *p++ = '\n';
    p = put(p, pre, plen);
    p = put(p, s, len);
    *p++ = '\r';
    *p++ = '\n';
    buf_commit(b, (size_t)(p - buf_wptr(b)));
    return 0;
}

static int
lit(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int
resp_compose_simple(struct buf *b, const char *s, size_t len)
{
    return line(b, "+", 1, s, len);
}

int
resp_compose_error(struct buf *b, const char *msg, size_t len)
{
    /* Redis's addReplyErrorLength: a message with its own "-CODE" is sent as given. */
    if (len > 0 && msg[0] == '-') {
        return line(b, "", 0, msg, len);
    }
    return line(b, "-ERR ", 5, msg, len);
}

int
resp_compose_int(struct buf *b, int64_t n)
{
    return header(b, ':', n);
}

int
resp_compose_bulk(struct buf *b, const void *p, size_t len)
{
    return bulk(b, '$', NULL, 0, p, len);
}

int
resp_compose_bulk_hdr(struct buf *b, size_t len)
{
    return header(b, '$', (int64_t)len);
}

int
resp_compose_null(struct buf *b, enum resp_proto v)
{
    return lit(b, v == RESP_3 ? "_\r\n" : "$-1\r\n");
}

int
resp_compose_array(struct buf *b, size_t n)
{
    return header(b, '*', (int64_t)n);
}

int
resp_compose_null_array(struct buf *b, enum resp_proto v)
{
    return lit(b, v == RESP_3 ? "_\r\n" : "*-1\r\n");
}

int
resp_compose_map(struct buf *b, enum resp_proto v, size_t n)
{
    return v == RESP_3 ? header(b, '%', (int64_t)n) : header(b, '*', (int64_t)(2 * n));
}

int
resp_compose_set(struct buf *b, enum resp_proto v, size_t n)
{
    return header(b, v == RESP_3 ? '~' : '*', (int64_t)n);
}

int
resp_compose_push(struct buf *b, enum resp_proto v, size_t n)
{
    return header(b, v == RESP_3 ? '>' : '*', (int64_t)n);
}

int
resp_compose_bool(struct buf *b, enum resp_proto v, bool t)
{
    if (v == RESP_3) {
        return lit(b, t ? "#t\r\n" : "#f\r\n");
    }
    return lit(b, t ? ":1\r\n" : ":0\r\n");
}

int
resp_compose_verbatim(struct buf *b, enum resp_proto v, const char *ext, const void *p, size_t len)
{
    if (v != RESP_3) {
        return resp_compose_bulk(b, p, len);
    }
    /* Redis takes the first three characters of ext and pads a shorter one with spaces. */
    char fmt[4] = {' ', ' ', ' ', ':'};
    for (size_t i = 0; i < 3 && ext[i] != '\0'; i++) {
        fmt[i] = ext[i];
    }
    return bulk(b, '=', fmt, sizeof(fmt), p, len);
}

int
resp_compose_bignum(struct buf *b, enum resp_proto v, const char *num, size_t len)
{
    if (v != RESP_3) {
        return resp_compose_bulk(b, num, len);
    }
    return line(b, "(", 1, num, len);
}

/* ---- doubles ---- */

/*
 * The shortest decimal digits that read back as d (d finite, not 0), and the power of ten of the
 * last one: d == digits * 10^K. printf rounds correctly, so the first precision that round-trips
 * gives the shortest digit string, and the nearest one of that length.
 */
static size_t
shortest_digits(double d, char *digits, int *k)
{
    char tmp[40];
    int prec = 0;
    for (; prec < 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec, d);
        if (strtod(tmp, NULL) == d) {
            break;
        }
    }
    snprintf(tmp, sizeof(tmp), "%.*e", prec, d);
    /* tmp is "[-]D[.DDD]e[+-]XX". */
    const char *s = tmp[0] == '-' ? tmp + 1 : tmp;
    size_t n = 0;
    for (; *s != 'e'; s++) {
        if (*s != '.') {
            digits[n++] = *s;
        }
    }
    while (n > 1 && digits[n - 1] == '0') {
        n--;
    }
    int exp10 = atoi(s + 1);
    *k = exp10 - (int)(n - 1);
    return n;
}

/* n zeros at p; returns the end. */
static char *
put_zeros(char *p, int n)
{
    for (int i = 0; i < n; i++) {
        *p++ = '0';
    }
    return p;
}

/*
 * Lay out digits * 10^k as Redis's fpconv does: a plain integer when the exponent is small, a
 * plain decimal when it is moderately negative, else scientific notation ("1.5e-7", "1e+20").
 */
static char *
put_digits(char *p, const char *digits, int nd, int k)
{
    int exp = k + nd - 1;
    int aexp = exp < 0 ? -exp : exp;
    if (k >= 0 && aexp < nd + 7) {
        p = put(p, digits, (size_t)nd);
        return put_zeros(p, k);
    }
    if (k < 0 && (k > -7 || aexp < 4)) {
        int whole = nd + k; /* digits before the point */
        if (whole <= 0) {
            p = put(p, "0.", 2);
            p = put_zeros(p, -whole);
            return put(p, digits, (size_t)nd);
        }
        p = put(p, digits, (size_t)whole);
        *p++ = '.';
        return put(p, digits + whole, (size_t)(nd - whole));
    }
    *p++ = digits[0];
    if (nd > 1) {
        *p++ = '.';
        p = put(p, digits + 1, (size_t)(nd - 1));
    }
    *p++ = 'e';
    *p++ = exp < 0 ? '-' : '+';
    return put_u64(p, (uint64_t)aexp);
}

size_t
resp_format_double(double d, char *dst)
{
    char *p = dst;
    if (isnan(d)) {
        return (size_t)(put(p, "nan", 3) - dst);
    }
    if (isinf(d)) {
        return d < 0 ? (size_t)(put(p, "-inf", 4) - dst) : (size_t)(put(p, "inf", 3) - dst);
    }
    if (d == 0) {
        return signbit(d) ? (size_t)(put(p, "-0", 2) - dst) : (size_t)(put(p, "0", 1) - dst);
    }
    /* Integral values well inside the range of a long long print as integers (double2ll). */
    const double lim = (double)(INT64_MAX / 2);
    if (d >= -lim && d <= lim) {
        int64_t ll = (int64_t)d;
        if ((double)ll == d) {
            return (size_t)(put_i64(p, ll) - dst);
        }
    }
    char digits[20];
    int k;
    size_t nd = shortest_digits(d, digits, &k);
    if (d < 0) {
        *p++ = '-';
    }
    return (size_t)(put_digits(p, digits, (int)nd, k) - dst);
}

int
resp_compose_double(struct buf *b, enum resp_proto v, double d)
{
    char text[RESP_DOUBLE_MAX];
    size_t len = resp_format_double(d, text);
    if (v != RESP_3) {
        return resp_compose_bulk(b, text, len);
    }
    return line(b, ",", 1, text, len);
}
