/* config values: parse, check and format one typed value, the same rules for defaults, the
 * file and the command line; and the message helpers every part of config uses. */
#include "config_impl.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void
config_errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (errlen == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Copy text for quoting in a message: bounded, with unprintable bytes shown as '?'. */
const char *
config_quote(const char *text, char *out, size_t outlen)
{
    size_t i = 0;
    for (; text[i] != '\0' && i + 1 < outlen && i < QUOTE_MAX; i++) {
        unsigned char c = (unsigned char)text[i];
        out[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    out[i] = '\0';
    if (text[i] != '\0' && outlen > 4 && i >= 3) {
        memcpy(out + i - 3, "...", 3);
    }
    return out;
}

uint64_t
opt_max(const struct opt_def *d)
{
    return d->max ? d->max : UINT64_MAX;
}

uint64_t
opt_unit(const struct opt_def *d)
{
    return d->unit ? d->unit : 1;
}

const char *
opt_default(const struct opt_def *d)
{
    if (d->dflt != NULL) {
        return d->dflt;
    }
    return d->type == OPT_COUNT ? "0" : "";
}

const char *
config_format_size(uint64_t v, char *out, size_t len)
{
    static const struct {
        char suffix;
        unsigned shift;
    } units[] = {{'g', 30}, {'m', 20}, {'k', 10}};

    if (v == 0) {
        snprintf(out, len, "0");
        return out;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (v % ((uint64_t)1 << units[i].shift) == 0) {
            snprintf(out, len, "%llu%c", (unsigned long long)(v >> units[i].shift),
                     units[i].suffix);
            return out;
        }
    }
    snprintf(out, len, "%llub", (unsigned long long)v);
    return out;
}

static void
format_number(const struct opt_def *d, uint64_t v, char *out, size_t len)
{
    if (d->type == OPT_SIZE) {
        config_format_size(v, out, len);
    } else {
        snprintf(out, len, "%llu", (unsigned long long)v);
    }
}

/* "1..256", "1m..64g" or "1 or more", for messages. */
static void
format_range(const struct opt_def *d, char *out, size_t len)
{
    char lo[32], hi[32];
    format_number(d, d->min, lo, sizeof(lo));
    if (opt_max(d) == UINT64_MAX) {
        snprintf(out, len, "%s or more", lo);
        return;
    }
    format_number(d, opt_max(d), hi, sizeof(hi));
    snprintf(out, len, "%s..%s", lo, hi);
}

/* Decimal digits only: no sign, no blanks, no base prefix. Returns 0, -EINVAL for anything that
 * is not a run of digits, -ERANGE past 2^64 - 1. *end is set to the first non-digit. */
static int
scan_u64(const char *s, uint64_t *out, const char **end)
{
    uint64_t v = 0;
    bool overflow = false;
    const char *p = s;

    while (*p >= '0' && *p <= '9') {
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *p - '0', &v)) {
            overflow = true;
        }
        p++;
    }
    *end = p;
    if (p == s) {
        return -EINVAL;
    }
    *out = v;
    return overflow ? -ERANGE : 0;
}

static int
parse_number(const struct opt_def *d, const char *text, uint64_t *out, char *why, size_t len)
{
    char q[QUOTE_MAX + 4], range[80];
    const char *end;
    uint64_t v = 0;
    uint64_t mult = 1;

    config_quote(text, q, sizeof(q));
    format_range(d, range, sizeof(range));
    int rc = scan_u64(text, &v, &end);
    if (rc == -EINVAL && text[0] == '-' && text[1] >= '0' && text[1] <= '9') {
        config_errf(why, len, "'%s' is negative (%s)", q, range);
        return -EINVAL;
    }
    if (d->type == OPT_SIZE && rc != -EINVAL) {
        mult = opt_unit(d);
        if (*end != '\0' && end[1] == '\0') {
            switch (tolower((unsigned char)*end)) {
            case 'b':
                mult = 1;
                end++;
                break;
            case 'k':
                mult = (uint64_t)1 << 10;
                end++;
                break;
            case 'm':
                mult = (uint64_t)1 << 20;
                end++;
                break;
            case 'g':
                mult = (uint64_t)1 << 30;
                end++;
                break;
            }
        }
    }
    if (rc == -EINVAL || *end != '\0') {
        if (d->type == OPT_SIZE) {
            config_errf(why, len,
                        "'%s' is not a size (a number of %s, or with a b, k, m or g suffix; %s)", q,
                        opt_unit(d) == 1            ? "bytes"
                        : opt_unit(d) == 1024       ? "KiB"
                        : opt_unit(d) == (1u << 20) ? "MiB"
                                                    : "GiB",
                        range);
        } else {
            config_errf(why, len, "'%s' is not a number (%s)", q, range);
        }
        return -EINVAL;
    }
    if (rc == -ERANGE || __builtin_mul_overflow(v, mult, &v)) {
        config_errf(why, len, "'%s' is too large (%s)", q, range);
        return -EINVAL;
    }
    if (v < d->min || v > opt_max(d)) {
        config_errf(why, len, "'%s' is out of range (%s)", q, range);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static int
parse_bool(const char *text, uint64_t *out, char *why, size_t len)
{
    static const char *const yes[] = {"yes", "true", "on", "1", NULL};
    static const char *const no[] = {"no", "false", "off", "0", NULL};
    char q[QUOTE_MAX + 4];

    for (size_t i = 0; yes[i] != NULL; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    config_errf(why, len, "'%s' is not a boolean (yes/no, true/false, on/off, 1/0)",
                config_quote(text, q, sizeof(q)));
    return -EINVAL;
}

static int
parse_enum(const struct opt_def *d, const char *text, uint64_t *out, char *why, size_t len)
{
    char q[QUOTE_MAX + 4];
    size_t n = 0;

    for (size_t i = 0; d->choices[i] != NULL; i++) {
        if (strcasecmp(text, d->choices[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    n = (size_t)snprintf(why, len, "'%s' is not one of: ", config_quote(text, q, sizeof(q)));
    for (size_t i = 0; d->choices[i] != NULL && n < len; i++) {
        n += (size_t)snprintf(why + n, len - n, "%s%s", i ? ", " : "", d->choices[i]);
    }
    return -EINVAL;
}

/* Any string must survive a trip through --print-config and back: inih strips blanks at both
 * ends of a value, cuts it at " ;" (an inline comment), and a line cannot hold a newline. */
static int
check_string(const char *text, char *why, size_t len)
{
    size_t n = strlen(text);

    if (n > CONFIG_STR_MAX) {
        config_errf(why, len, "value is too long (%zu bytes, at most %d)", n, CONFIG_STR_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            config_errf(why, len, "value contains a control character (byte %zu)", i + 1);
            return -EINVAL;
        }
        if (c == ';' && i > 0 && isspace((unsigned char)text[i - 1])) {
            config_errf(why, len,
                        "value contains a blank followed by ';', which a config file reads as "
                        "the start of a comment");
            return -EINVAL;
        }
    }
    if (n > 0 && (isspace((unsigned char)text[0]) || isspace((unsigned char)text[n - 1]))) {
        config_errf(why, len, "value starts or ends with a blank, which a config file cannot hold");
        return -EINVAL;
    }
    return 0;
}

int
value_parse(const struct opt_def *d, const char *text, struct value *v, char *why, size_t len)
{
    int rc;

    switch (d->type) {
    case OPT_BOOL:
        return parse_bool(text, &v->u, why, len);
    case OPT_UINT:
    case OPT_SIZE:
    case OPT_COUNT:
        return parse_number(d, text, &v->u, why, len);
    case OPT_ENUM:
        return parse_enum(d, text, &v->u, why, len);
    case OPT_STR:
        rc = check_string(text, why, len);
        if (rc < 0) {
            return rc;
        }
        v->s = strdup(text);
        if (v->s == NULL) {
            config_errf(why, len, "out of memory");
            return -ENOMEM;
        }
        return 0;
    }
    return -EINVAL;
}

/* The text --print-config writes for a value; always parses back to the same value. */
int
value_format(const struct opt_def *d, const struct value *v, char *out, size_t len)
{
    char num[32] = "";
    const char *text = num;

    switch (d->type) {
    case OPT_BOOL:
        text = v->u ? "yes" : "no";
        break;
    case OPT_UINT:
    case OPT_SIZE:
    case OPT_COUNT:
        format_number(d, v->u, num, sizeof(num));
        break;
    case OPT_ENUM:
        text = d->choices[v->u];
        break;
    case OPT_STR:
        text = v->s;
        break;
    }
    size_t n = strlen(text);
    if (n >= len) {
        return -ENOSPC;
    }
    memcpy(out, text, n + 1);
    return (int)n;
}

bool
value_equal(const struct opt_def *d, const struct value *a, const struct value *b)
{
    return d->type == OPT_STR ? strcmp(a->s, b->s) == 0 : a->u == b->u;
}

/* Replace dst with a copy of src (strings are duplicated). Returns 0 or -ENOMEM. */
int
value_copy(const struct opt_def *d, struct value *dst, const struct value *src)
{
    if (d->type == OPT_STR) {
        char *s = strdup(src->s);
        if (s == NULL) {
            return -ENOMEM;
        }
        free(dst->s);
        dst->s = s;
    } else {
        dst->u = src->u;
    }
    return 0;
}
