/*
 * Redis's rules for text that is not framing: glob patterns (KEYS, SCAN MATCH, CONFIG GET) and
 * the long doubles of INCRBYFLOAT. Contract in include/petrel/resp.h.
 */
#include "petrel/resp.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A pattern or key byte as Redis compares it: a plain char (signed on x86, which decides the
 * order of bytes past 0x7f in a range), letters folded to lower case for nocase. */
static int
fold(char c, bool nocase)
{
    return nocase && c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/*
 * The set that starts at pat[k] (just past '['): whether byte c is in it, and in *next the
 * index of the pattern element after it. As in Redis, an unterminated set ends with the
 * pattern, and a range takes whatever byte follows its '-', even a ']'.
 */
static bool
in_set(const char *pat, size_t plen, size_t k, char c, bool nocase, size_t *next)
{
    bool neg = k < plen && pat[k] == '^';
    bool match = false;
    k += neg ? 1 : 0;
    for (;;) {
        if (k + 1 < plen && pat[k] == '\\') {
            match |= fold(pat[k + 1], nocase) == fold(c, nocase);
            k += 2;
        } else if (k < plen && pat[k] == ']') {
            k++;
            break;
        } else if (k >= plen) {
            break;
        } else if (k + 2 < plen && pat[k + 1] == '-') {
            int lo = fold(pat[k], nocase);
            int hi = fold(pat[k + 2], nocase);
            if (lo > hi) {
                int t = lo;
                lo = hi;
                hi = t;
            }
            int f = fold(c, nocase);
            match |= f >= lo && f <= hi;
            k += 3;
        } else {
            match |= fold(pat[k], nocase) == fold(c, nocase);
            k++;
        }
    }
    *next = k;
    return neg ? !match : match;
}

bool
resp_glob_match(const char *pat, size_t plen, const char *s, size_t slen, bool nocase)
{
    if (slen == 0) {
        return plen == 0; /* Redis never enters its loop: even "*" leaves the empty string out */
    }
    size_t i = 0, j = 0;
    size_t star_i = SIZE_MAX, star_j = 0; /* the last '*': resume after it, one byte further */
    while (j < slen) {
        if (i < plen && pat[i] == '*') {
            while (i < plen && pat[i] == '*') {
                i++;
            }
            if (i == plen) {
                return true;
            }
            star_i = i;
            star_j = j;
            continue;
        }
        char c = s[j];
        size_t next = i + 1;
        bool ok;
        if (i >= plen) {
            ok = false;
        } else if (pat[i] == '?') {
            ok = true;
        } else if (pat[i] == '[') {
            ok = in_set(pat, plen, i + 1, c, nocase, &next);
        } else if (pat[i] == '\\' && i + 1 < plen) {
            ok = fold(pat[i + 1], nocase) == fold(c, nocase);
            next = i + 2;
        } else {
            ok = fold(pat[i], nocase) == fold(c, nocase);
        }
        if (ok) {
            i = next;
            j++;
        } else if (star_i != SIZE_MAX) {
            /* Every element after a '*' takes exactly one byte: trying the rest one byte
             * further on is all the backtracking a glob needs. */
            i = star_i;
            j = ++star_j;
        } else {
            return false;
        }
    }
    while (i < plen && pat[i] == '*') {
        i++;
    }
    return i == plen;
}

size_t
resp_format_ldouble(long double v, char *dst)
{
    if (!isfinite(v)) {
        return 0;
    }
    int n = snprintf(dst, RESP_LDOUBLE_MAX, "%.17Lf", v);
    if (n < 0 || n >= RESP_LDOUBLE_MAX) {
        return 0;
    }
    size_t l = (size_t)n;
    if (memchr(dst, '.', l) != NULL) {
        while (dst[l - 1] == '0') {
            l--;
        }
        if (dst[l - 1] == '.') {
            l--;
        }
    }
    if (l == 2 && dst[0] == '-' && dst[1] == '0') {
        dst[0] = '0';
        l = 1;
    }
    return l;
}

bool
resp_parse_ldouble(const char *p, size_t len, long double *out)
{
    char text[RESP_LDOUBLE_MAX];
    if (len == 0 || len >= sizeof(text)) {
        return false;
    }
    memcpy(text, p, len);
    text[len] = '\0'; /* as Redis, the number ends at a NUL byte if there is one */
    errno = 0;
    char *end;
    long double v = strtold(text, &end);
    if (isspace((unsigned char)text[0]) || *end != '\0' ||
        (errno == ERANGE && (v == HUGE_VALL || v == -HUGE_VALL || v == 0)) || isnan(v)) {
        return false;
    }
    *out = v;
    return true;
}
