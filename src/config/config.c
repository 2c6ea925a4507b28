/* config: option tables -> command line, INI file, --help, --print-config.
 * Contract in include/petrel/config.h; accepted syntax in docs/configuration.md. */
#include "petrel/config.h"

#include "petrel/buf.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define FILE_SIZE_MAX ((size_t)1 << 20) /* a config file is a few KiB; refuse anything absurd */
#define NAME_LEN_MAX  48                /* inih keeps section and key names in 50-byte arrays */
#define QUOTE_MAX     60                /* longest excerpt of a bad value quoted in a message */
#define HELP_COL      30                /* --help: where the description column starts */
#define TEXT_WIDTH    79

/* A line of the longest printable option must fit inih's line buffer, or --print-config output
 * would not load back. Builds of inih with run-time options (Debian's) let us widen it. */
#define LINE_LEN_WANTED (CONFIG_STR_MAX + NAME_LEN_MAX + 64)

/* getopt_long() return values for the generated options: product option i is VAL_OPT + 2 * i,
 * its --no-NAME form (booleans) VAL_OPT + 2 * i + 1. Built-ins use their short letter or these. */
#define VAL_PRINT 1
#define VAL_CHECK 2
#define VAL_OPT   256

static const char *const sections[] = {"server", "storage", "admin", "tls", "log", NULL};
static const char *const builtin_names[] = {"help",         "version",      "config",
                                            "print-config", "check-config", NULL};

enum src { SRC_DEFAULT, SRC_FILE, SRC_CLI };

struct value {
    uint64_t u; /* OPT_BOOL 0/1, OPT_ENUM index, or the number */
    char *s;    /* OPT_STR: heap copy, never NULL in a finished config */
};

/* One option of one configuration. */
struct slot {
    const struct opt_def *def;
    struct value val; /* the effective value */
    struct value cli; /* what argv said, if cli_set: applied again by config_reload() */
    bool cli_set;
    unsigned char src;  /* enum src of val */
    unsigned file_line; /* line of the file that set val, 0 if the file did not */
};

struct config {
    size_t n;
    struct slot *slots; /* in table order */
    char *file;         /* -C argument as given, or NULL */
};

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 */

static void errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (errlen == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void table_bug(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* The tables are code: a mistake in them is a programming error, reported before anything runs. */
static void
table_bug(const char *fmt, ...)
{
    va_list ap;
    fputs("config: bad option table: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

/* Copy text for quoting in a message: bounded, with unprintable bytes shown as '?'. */
static const char *
quote(const char *text, char *out, size_t outlen)
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

static uint64_t
def_max(const struct opt_def *d)
{
    return d->max ? d->max : UINT64_MAX;
}

static uint64_t
def_unit(const struct opt_def *d)
{
    return d->unit ? d->unit : 1;
}

static const char *
type_name(enum opt_type t)
{
    switch (t) {
    case OPT_BOOL:
        return "OPT_BOOL";
    case OPT_UINT:
        return "OPT_UINT";
    case OPT_SIZE:
        return "OPT_SIZE";
    case OPT_STR:
        return "OPT_STR";
    case OPT_ENUM:
        return "OPT_ENUM";
    case OPT_COUNT:
        return "OPT_COUNT";
    }
    return "?";
}

static bool
known_section(const char *name)
{
    for (size_t i = 0; sections[i] != NULL; i++) {
        if (strcmp(sections[i], name) == 0) {
            return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------------------------------------
 * Values: parsing and formatting, the same rules for defaults, the file and the command line
 */

/* Sizes print with the largest suffix that is exact, so "64m" stays "64m" and any value
 * (even a byte count that is no multiple of the unit) reads back as itself. */
static void
format_size(uint64_t v, char *out, size_t len)
{
    static const struct {
        char suffix;
        unsigned shift;
    } units[] = {{'g', 30}, {'m', 20}, {'k', 10}};

    if (v == 0) {
        snprintf(out, len, "0");
        return;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (v % ((uint64_t)1 << units[i].shift) == 0) {
            snprintf(out, len, "%llu%c", (unsigned long long)(v >> units[i].shift),
                     units[i].suffix);
            return;
        }
    }
    snprintf(out, len, "%llub", (unsigned long long)v);
}

static void
format_number(const struct opt_def *d, uint64_t v, char *out, size_t len)
{
    if (d->type == OPT_SIZE) {
        format_size(v, out, len);
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
    if (def_max(d) == UINT64_MAX) {
        snprintf(out, len, "%s or more", lo);
        return;
    }
    format_number(d, def_max(d), hi, sizeof(hi));
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

    quote(text, q, sizeof(q));
    format_range(d, range, sizeof(range));
    int rc = scan_u64(text, &v, &end);
    if (rc == -EINVAL && text[0] == '-' && text[1] >= '0' && text[1] <= '9') {
        errf(why, len, "'%s' is negative (%s)", q, range);
        return -EINVAL;
    }
    if (d->type == OPT_SIZE && rc != -EINVAL) {
        mult = def_unit(d);
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
            errf(why, len, "'%s' is not a size (a number of %s, or with a b, k, m or g suffix; %s)",
                 q,
                 def_unit(d) == 1            ? "bytes"
                 : def_unit(d) == 1024       ? "KiB"
                 : def_unit(d) == (1u << 20) ? "MiB"
                                             : "GiB",
                 range);
        } else {
            errf(why, len, "'%s' is not a number (%s)", q, range);
        }
        return -EINVAL;
    }
    if (rc == -ERANGE || __builtin_mul_overflow(v, mult, &v)) {
        errf(why, len, "'%s' is too large (%s)", q, range);
        return -EINVAL;
    }
    if (v < d->min || v > def_max(d)) {
        errf(why, len, "'%s' is out of range (%s)", q, range);
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
    errf(why, len, "'%s' is not a boolean (yes/no, true/false, on/off, 1/0)",
         quote(text, q, sizeof(q)));
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
    n = (size_t)snprintf(why, len, "'%s' is not one of: ", quote(text, q, sizeof(q)));
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
        errf(why, len, "value is too long (%zu bytes, at most %d)", n, CONFIG_STR_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            errf(why, len, "value contains a control character (byte %zu)", i + 1);
            return -EINVAL;
        }
        if (c == ';' && i > 0 && isspace((unsigned char)text[i - 1])) {
            errf(why, len,
                 "value contains a blank followed by ';', which a config file reads as "
                 "the start of a comment");
            return -EINVAL;
        }
    }
    if (n > 0 && (isspace((unsigned char)text[0]) || isspace((unsigned char)text[n - 1]))) {
        errf(why, len, "value starts or ends with a blank, which a config file cannot hold");
        return -EINVAL;
    }
    return 0;
}

/*
 * Parse text for option d into v. On -EINVAL, why says what is wrong with the value (without
 * naming the option: the caller knows whether that is "--threads" or "petrel.conf:4: threads").
 * For OPT_STR, v->s is a new heap copy the caller owns. Returns 0, -EINVAL or -ENOMEM.
 */
static int
parse_value(const struct opt_def *d, const char *text, struct value *v, char *why, size_t len)
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
            errf(why, len, "out of memory");
            return -ENOMEM;
        }
        return 0;
    }
    return -EINVAL;
}

/* The text --print-config writes for a value; always parses back to the same value. */
static int
format_value(const struct opt_def *d, const struct value *v, char *out, size_t len)
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

static bool
value_equal(const struct opt_def *d, const struct value *a, const struct value *b)
{
    return d->type == OPT_STR ? strcmp(a->s, b->s) == 0 : a->u == b->u;
}

/* Replace dst with a copy of src (strings are duplicated). Returns 0 or -ENOMEM. */
static int
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

/* ---------------------------------------------------------------------------------------------
 * Building a configuration: tables -> slots with defaults
 */

static void
check_def(const struct opt_def *d)
{
    if (d->name == NULL || d->name[0] == '\0' || strlen(d->name) > NAME_LEN_MAX) {
        table_bug("an option has no name or a name longer than %d bytes", NAME_LEN_MAX);
    }
    for (const char *p = d->name; *p != '\0'; p++) {
        if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '-' && *p != '_') {
            table_bug("option '%s': names use a-z, 0-9, '-' and '_'", d->name);
        }
    }
    if (d->name[0] == '-' || strncmp(d->name, "no-", 3) == 0) {
        table_bug("option '%s': a name may not start with '-' or 'no-'", d->name);
    }
    for (size_t i = 0; builtin_names[i] != NULL; i++) {
        if (strcmp(d->name, builtin_names[i]) == 0) {
            table_bug("option '%s' is built in", d->name);
        }
    }
    if (d->short_name != 0 &&
        (!isalnum((unsigned char)d->short_name) || strchr("hVC", d->short_name) != NULL)) {
        table_bug("option '%s': short flag '%c' is not a letter or digit, or is built in", d->name,
                  d->short_name);
    }
    if (d->section == NULL || !known_section(d->section)) {
        table_bug("option '%s': section must be server, storage, admin, tls or log", d->name);
    }
    if (d->help == NULL) {
        table_bug("option '%s' has no help text", d->name);
    }
    if ((unsigned)d->type > OPT_COUNT) {
        table_bug("option '%s' has an unknown type", d->name);
    }
    if (d->min > def_max(d)) {
        table_bug("option '%s': min > max", d->name);
    }
    if (d->type == OPT_SIZE && d->unit > 1 && d->unit != (1u << 10) && d->unit != (1u << 20) &&
        d->unit != (1u << 30)) {
        table_bug("option '%s': unit must be 1, 1 KiB, 1 MiB or 1 GiB", d->name);
    }
    if (d->type == OPT_ENUM && (d->choices == NULL || d->choices[0] == NULL)) {
        table_bug("option '%s' is an OPT_ENUM without choices", d->name);
    }
    if (d->dflt == NULL && d->type != OPT_STR && d->type != OPT_COUNT) {
        table_bug("option '%s' has no default", d->name);
    }
}

static const char *
def_default(const struct opt_def *d)
{
    if (d->dflt != NULL) {
        return d->dflt;
    }
    return d->type == OPT_COUNT ? "0" : "";
}

static void
check_unique(const struct slot *slots, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct opt_def *a = slots[i].def;
        for (size_t j = 0; j < i; j++) {
            const struct opt_def *b = slots[j].def;
            if (strcmp(a->name, b->name) == 0) {
                table_bug("option '%s' is declared twice", a->name);
            }
            if (a->short_name != 0 && a->short_name == b->short_name) {
                table_bug("options '%s' and '%s' share the short flag '-%c'", b->name, a->name,
                          a->short_name);
            }
        }
    }
}

static void
slots_free(struct slot *slots, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(slots[i].val.s);
        free(slots[i].cli.s);
    }
    free(slots);
}

/* A configuration holding the defaults of defs[0, n). Returns NULL only when out of memory. */
static struct config *
config_new(const struct opt_def *const *defs, size_t n)
{
    char why[256];
    struct config *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL) {
        return NULL;
    }
    cfg->slots = calloc(n ? n : 1, sizeof(*cfg->slots));
    if (cfg->slots == NULL) {
        goto fail;
    }
    cfg->n = n;
    for (size_t i = 0; i < n; i++) {
        struct slot *s = &cfg->slots[i];
        s->def = defs[i];
        int rc = parse_value(s->def, def_default(s->def), &s->val, why, sizeof(why));
        if (rc == -ENOMEM) {
            goto fail;
        }
        if (rc < 0) {
            table_bug("option '%s': default %s", s->def->name, why);
        }
    }
    return cfg;

fail:
    config_free(&cfg);
    return NULL;
}

/* Flatten and check the tables, then build the defaults. Aborts on a table error. */
static struct config *
config_from_tables(const struct opt_table *tables, size_t ntables)
{
    size_t n = 0;
    for (size_t t = 0; t < ntables; t++) {
        if (tables[t].n > 0 && tables[t].defs == NULL) {
            table_bug("table '%s' has no definitions", tables[t].name ? tables[t].name : "?");
        }
        n += tables[t].n;
    }
    const struct opt_def **defs = calloc(n ? n : 1, sizeof(*defs));
    if (defs == NULL) {
        return NULL;
    }
    size_t k = 0;
    for (size_t t = 0; t < ntables; t++) {
        for (size_t i = 0; i < tables[t].n; i++) {
            check_def(&tables[t].defs[i]);
            defs[k++] = &tables[t].defs[i];
        }
    }
    struct config *cfg = config_new(defs, n);
    free(defs);
    if (cfg != NULL) {
        check_unique(cfg->slots, cfg->n);
    }
    return cfg;
}

static struct slot *
find_slot(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n; i++) {
        if (strcmp(cfg->slots[i].def->name, name) == 0) {
            return &cfg->slots[i];
        }
    }
    return NULL;
}

/* argv's values go over whatever the defaults and the file said. */
static int
apply_cli(struct config *cfg)
{
    for (size_t i = 0; i < cfg->n; i++) {
        struct slot *s = &cfg->slots[i];
        if (s->cli_set) {
            if (value_copy(s->def, &s->val, &s->cli) < 0) {
                return -ENOMEM;
            }
            s->src = SRC_CLI;
        }
    }
    return 0;
}

void
config_free(struct config **cfg)
{
    if (cfg == NULL || *cfg == NULL) {
        return;
    }
    if ((*cfg)->slots != NULL) {
        slots_free((*cfg)->slots, (*cfg)->n);
    }
    free((*cfg)->file);
    free(*cfg);
    *cfg = NULL;
}

/* ---------------------------------------------------------------------------------------------
 * The config file, through inih
 */

struct file_ctx {
    struct config *cfg;
    const char *path;
    const char *data; /* the whole file, read before parsing */
    size_t len, pos;
    unsigned line;   /* lines handed to inih so far: the line being parsed */
    const char *cur; /* its text, without the newline */
    size_t cur_len;
    unsigned err_line; /* line of our first error, 0 if none */
    int rc;            /* our first error: -EBADMSG or -ENOMEM */
    char *err;
    size_t errlen;
};

static void file_fail(struct file_ctx *fc, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
file_fail(struct file_ctx *fc, int rc, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (fc->rc != 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    errf(fc->err, fc->errlen, "%s:%u: %s", fc->path, fc->line, msg);
    fc->rc = rc;
    fc->err_line = fc->line;
}

/* Start of the meaningful text of the current line: after a UTF-8 BOM (line 1) and blanks. */
static const char *
line_start(const struct file_ctx *fc, const char **end)
{
    const char *p = fc->cur;
    *end = fc->cur + fc->cur_len;
    if (fc->line == 1 && fc->cur_len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) {
        p += 3;
    }
    while (p < *end && isspace((unsigned char)*p)) {
        p++;
    }
    return p;
}

/* inih calls the handler only for keys, so sections are checked here, as each line goes by. */
static void
check_section_line(struct file_ctx *fc)
{
    char name[NAME_LEN_MAX + 8], q[QUOTE_MAX + 4];
    const char *end;
    const char *p = line_start(fc, &end);

    if (p == end || *p != '[') {
        return;
    }
    const char *close = memchr(p, ']', (size_t)(end - p));
    if (close == NULL) {
        return; /* inih reports the syntax error */
    }
    size_t n = (size_t)(close - p - 1);
    if (n >= sizeof(name)) {
        n = sizeof(name) - 1;
    }
    memcpy(name, p + 1, n);
    name[n] = '\0';
    if (!known_section(name)) {
        file_fail(fc, -EBADMSG, "unknown section [%s] (sections: server, storage, admin, tls, log)",
                  quote(name, q, sizeof(q)));
    }
}

/* inih's line reader. Counting lines here is how errors get their line numbers: the Debian build
 * of inih does not pass them to the handler. A line that does not fit inih's buffer would be
 * split in two by fgets-style reading, so it is refused instead. */
static char *
file_reader(char *str, int num, void *stream)
{
    struct file_ctx *fc = stream;

    if (fc->rc != 0 || fc->pos >= fc->len) {
        return NULL;
    }
    const char *p = fc->data + fc->pos;
    const char *nl = memchr(p, '\n', fc->len - fc->pos);
    size_t n = nl ? (size_t)(nl - p) + 1 : fc->len - fc->pos;

    fc->line++;
    fc->cur = p;
    fc->cur_len = nl ? n - 1 : n;
    if (num < 3 || n + 1 > (size_t)num) {
        file_fail(fc, -EBADMSG, "line is too long (at most %d bytes)", num - 2);
        return NULL;
    }
    memcpy(str, p, n);
    str[n] = '\0';
    fc->pos += n;
    check_section_line(fc);
    return fc->rc != 0 ? NULL : str;
}

/* With multi-line values on (inih's default), an indented line after a key reaches the handler
 * as more value for that key. The line then does not start with "name =" or "name:". */
static bool
is_continuation(const struct file_ctx *fc, const char *name)
{
    const char *end;
    const char *p = line_start(fc, &end);
    size_t n = strlen(name);

    if ((size_t)(end - p) < n || memcmp(p, name, n) != 0) {
        return true;
    }
    p += n;
    while (p < end && isspace((unsigned char)*p)) {
        p++;
    }
    return p == end || (*p != '=' && *p != ':');
}

#if INI_HANDLER_LINENO
static int
file_handler(void *user, const char *section, const char *name, const char *value, int lineno)
#else
static int
file_handler(void *user, const char *section, const char *name, const char *value)
#endif
{
    struct file_ctx *fc = user;
    char why[512], q[QUOTE_MAX + 4];
    struct value v = {0};

    if (fc->rc != 0) {
        return 0;
    }
    if (is_continuation(fc, name)) {
        file_fail(fc, -EBADMSG,
                  "indented line continues the value of '%s'; multi-line values are not "
                  "supported (do not indent keys)",
                  quote(name, q, sizeof(q)));
        return 0;
    }
    struct slot *s = find_slot(fc->cfg, name);
    if (s == NULL) {
        file_fail(fc, -EBADMSG, section[0] ? "unknown option '%s' in [%s]" : "unknown option '%s'",
                  quote(name, q, sizeof(q)), section);
        return 0;
    }
    if (section[0] == '\0') {
        file_fail(fc, -EBADMSG, "option '%s' is outside any section; it belongs in [%s]", name,
                  s->def->section);
        return 0;
    }
    if (strcmp(section, s->def->section) != 0) {
        file_fail(fc, -EBADMSG, "option '%s' belongs in [%s], not [%s]", name, s->def->section,
                  section);
        return 0;
    }
    if (s->file_line != 0) {
        file_fail(fc, -EBADMSG, "duplicate option '%s' (first set on line %u)", name, s->file_line);
        return 0;
    }
    int rc = parse_value(s->def, value, &v, why, sizeof(why));
    if (rc < 0) {
        file_fail(fc, rc == -ENOMEM ? -ENOMEM : -EBADMSG, "%s: %s", name, why);
        return 0;
    }
    free(s->val.s);
    s->val = v;
    s->src = SRC_FILE;
    s->file_line = fc->line;
    return 1;
}

/* Say what inih found wrong with a line our callbacks never saw. */
static void
syntax_error(struct file_ctx *fc, unsigned line)
{
    const char *p = fc->data;
    const char *end = fc->data + fc->len;

    for (unsigned i = 1; i < line && p < end; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : end;
    }
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    fc->line = line;
    fc->cur = p;
    fc->cur_len = nl ? (size_t)(nl - p) : (size_t)(end - p);
    const char *text = line_start(fc, &end);
    fc->rc = 0;
    file_fail(fc, -EBADMSG, "%s",
              (text < end && *text == '[') ? "section header without a closing ']'"
                                           : "expected 'key = value', '[section]' or a comment");
}

static int
read_file(const char *path, char **data, size_t *len, char *err, size_t errlen)
{
    struct stat st;
    size_t cap = 4096, n = 0;
    char *p = NULL;
    int rc;

    FILE *f = fopen(path, "r");
    if (f == NULL) {
        rc = -errno;
        errf(err, errlen, "%s: cannot open: %s", path, strerror(-rc));
        return rc;
    }
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        rc = -EISDIR;
        errf(err, errlen, "%s: cannot read: %s", path, strerror(EISDIR));
        goto fail;
    }
    for (;;) {
        if (n == cap || p == NULL) {
            char *q = realloc(p, cap *= 2);
            if (q == NULL) {
                rc = -ENOMEM;
                errf(err, errlen, "%s: out of memory", path);
                goto fail;
            }
            p = q;
        }
        size_t got = fread(p + n, 1, cap - n, f);
        n += got;
        if (n > FILE_SIZE_MAX) {
            rc = -EFBIG;
            errf(err, errlen, "%s: file is larger than %zu bytes", path, FILE_SIZE_MAX);
            goto fail;
        }
        if (got == 0) {
            break;
        }
    }
    if (ferror(f)) {
        rc = -EIO;
        errf(err, errlen, "%s: cannot read: %s", path, strerror(EIO));
        goto fail;
    }
    fclose(f);
    *data = p;
    *len = n;
    return 0;

fail:
    free(p);
    fclose(f);
    return rc;
}

/* Parse the file at path into cfg's values. Returns 0, -EBADMSG, -ENOMEM or a read errno. */
static int
load_file(struct config *cfg, const char *path, char *err, size_t errlen)
{
    struct file_ctx fc = {.cfg = cfg, .path = path, .err = err, .errlen = errlen};
    char *data = NULL;

    int rc = read_file(path, &data, &fc.len, err, errlen);
    if (rc < 0) {
        return rc;
    }
    fc.data = data;
    const char *nul = memchr(data, '\0', fc.len);
    if (nul != NULL) {
        /* inih works on C strings: it would silently drop the rest of such a line. */
        unsigned line = 1;
        for (const char *p = data; p < nul; p++) {
            line += *p == '\n';
        }
        fc.line = line;
        file_fail(&fc, -EBADMSG, "contains a NUL byte");
        free(data);
        return fc.rc;
    }
#ifdef PETREL_INIH_RUNTIME_OPTIONS
    int saved_max_line = ini_max_line;
    if (ini_max_line < LINE_LEN_WANTED) {
        ini_max_line = LINE_LEN_WANTED;
    }
#endif
    int bad_line = ini_parse_stream(file_reader, &fc, file_handler, &fc);
#ifdef PETREL_INIH_RUNTIME_OPTIONS
    ini_max_line = saved_max_line;
#endif
    if (bad_line == -2) {
        rc = -ENOMEM;
        errf(err, errlen, "%s: out of memory", path);
    } else if (bad_line > 0 && (fc.rc == 0 || (unsigned)bad_line < fc.err_line)) {
        syntax_error(&fc, (unsigned)bad_line);
        rc = fc.rc;
    } else {
        rc = fc.rc;
    }
    free(data);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * The command line, through getopt_long
 */

struct cli {
    struct option *longopts;
    char **no_names; /* "no-NAME" strings, one per slot (NULL unless OPT_BOOL) */
    char *optstring;
    int short_slot[256]; /* short flag -> slot index, or -1 */
    size_t nlong;
};

static void
cli_free(struct cli *c, size_t n)
{
    if (c->no_names != NULL) {
        for (size_t i = 0; i < n; i++) {
            free(c->no_names[i]);
        }
    }
    free(c->no_names);
    free(c->longopts);
    free(c->optstring);
}

static void
add_long(struct cli *c, const char *name, int has_arg, int val)
{
    c->longopts[c->nlong++] = (struct option){name, has_arg, NULL, val};
}

/* Generate getopt_long's tables from the slots. Returns 0 or -ENOMEM. */
static int
cli_build(struct cli *c, const struct config *cfg)
{
    size_t n = cfg->n;
    size_t k = 0;

    *c = (struct cli){0};
    memset(c->short_slot, -1, sizeof(c->short_slot));
    c->longopts = calloc(2 * n + 6, sizeof(*c->longopts));
    c->no_names = calloc(n ? n : 1, sizeof(*c->no_names));
    /* "+:" no permutation, report a missing value as ':'; then at most 2 bytes per option. */
    c->optstring = malloc(2 * n + 16);
    if (c->longopts == NULL || c->no_names == NULL || c->optstring == NULL) {
        return -ENOMEM;
    }
    k += (size_t)sprintf(c->optstring, "+:hVC:");
    for (size_t i = 0; i < n; i++) {
        const struct opt_def *d = cfg->slots[i].def;
        int val = VAL_OPT + 2 * (int)i;
        bool flag = d->type == OPT_BOOL || d->type == OPT_COUNT;

        /* Flags take no value in short form, so -vv and -tv read as flags; the long form takes
         * an optional one: --tls=no, --verbose=2. */
        add_long(c, d->name, flag ? optional_argument : required_argument, val);
        if (d->type == OPT_BOOL) {
            if (asprintf(&c->no_names[i], "no-%s", d->name) < 0) {
                c->no_names[i] = NULL;
                return -ENOMEM;
            }
            add_long(c, c->no_names[i], no_argument, val + 1);
        }
        if (d->short_name != 0) {
            c->short_slot[(unsigned char)d->short_name] = (int)i;
            c->optstring[k++] = d->short_name;
            if (!flag) {
                c->optstring[k++] = ':';
            }
        }
    }
    c->optstring[k] = '\0';
    add_long(c, "help", no_argument, 'h');
    add_long(c, "version", no_argument, 'V');
    add_long(c, "config", required_argument, 'C');
    add_long(c, "print-config", no_argument, VAL_PRINT);
    add_long(c, "check-config", no_argument, VAL_CHECK);
    return 0;
}

static const char *
long_name_of(const struct cli *c, int val)
{
    for (size_t i = 0; i < c->nlong; i++) {
        if (c->longopts[i].val == val) {
            return c->longopts[i].name;
        }
    }
    return NULL;
}

/* getopt said '?': an unknown or ambiguous option, or a value given to a flag that takes none. */
static void
cli_unknown(const struct cli *c, const char *arg, char *err, size_t errlen)
{
    char q[QUOTE_MAX + 4], list[256];
    const char *name = long_name_of(c, optopt);

    if (optopt != 0 && name != NULL && strncmp(arg, "--", 2) == 0) {
        errf(err, errlen, "option '--%s' does not take a value", name);
        return;
    }
    if (optopt != 0) {
        errf(err, errlen, "unknown option '-%c'", isprint(optopt) ? optopt : '?');
        return;
    }
    /* A long option: glibc has moved past it, and also refuses unclear abbreviations. */
    size_t len = strcspn(arg + 2, "=");
    size_t matches = 0, used = 0;
    list[0] = '\0';
    for (size_t i = 0; i < c->nlong && len > 0; i++) {
        if (strncmp(c->longopts[i].name, arg + 2, len) == 0) {
            matches++;
            used += (size_t)snprintf(list + used, used < sizeof(list) ? sizeof(list) - used : 0,
                                     "%s--%s", matches > 1 ? ", " : "", c->longopts[i].name);
            if (used >= sizeof(list)) {
                used = sizeof(list);
            }
        }
    }
    quote(arg, q, sizeof(q));
    q[strcspn(q, "=")] = '\0';
    if (matches > 1) {
        errf(err, errlen, "option '%s' is ambiguous (%s)", q, list);
    } else {
        errf(err, errlen, "unknown option '%s'", q);
    }
}

/* One product option from argv: remembered in the slot's cli value. */
static int
cli_value(struct slot *s, const char *arg, bool negated, char *err, size_t errlen)
{
    const struct opt_def *d = s->def;
    char why[512];
    struct value v = {0};
    int rc;

    if (negated) {
        v.u = 0;
    } else if (arg == NULL && d->type == OPT_BOOL) {
        v.u = 1;
    } else if (arg == NULL && d->type == OPT_COUNT) {
        v.u = s->cli_set ? s->cli.u + 1 : 1;
        if (v.u > def_max(d)) {
            errf(err, errlen, "--%s: given more than %llu times", d->name,
                 (unsigned long long)def_max(d));
            return -EINVAL;
        }
    } else {
        rc = parse_value(d, arg, &v, why, sizeof(why));
        if (rc < 0) {
            errf(err, errlen, "--%s: %s", d->name, why);
            return rc;
        }
    }
    free(s->cli.s);
    s->cli = v;
    s->cli_set = true;
    return 0;
}

struct cli_result {
    enum config_action action;
    const char *file; /* points into argv */
};

/* Walk argv once: product options go into the slots' cli values, built-ins into res. */
static int
cli_parse(struct config *cfg, const struct cli *c, int argc, char **argv, struct cli_result *res,
          char *err, size_t errlen)
{
    char q[QUOTE_MAX + 4];
    int rc = 0;

    *res = (struct cli_result){CONFIG_ACTION_RUN, NULL};
    optind = 0; /* glibc: start over, with a fresh scan of the optstring */
    opterr = 0;
    while (rc == 0) {
        int ch = getopt_long(argc, argv, c->optstring, c->longopts, NULL);
        if (ch == -1) {
            break;
        }
        switch (ch) {
        case 'h':
            res->action = CONFIG_ACTION_HELP;
            return 0;
        case 'V':
            res->action = CONFIG_ACTION_VERSION;
            return 0;
        case 'C':
            if (res->file != NULL) {
                errf(err, errlen, "option '--config' given more than once");
                return -EINVAL;
            }
            res->file = optarg;
            break;
        case VAL_PRINT:
        case VAL_CHECK: {
            enum config_action a = ch == VAL_PRINT ? CONFIG_ACTION_PRINT : CONFIG_ACTION_CHECK;
            if (res->action != CONFIG_ACTION_RUN && res->action != a) {
                errf(err, errlen, "--print-config and --check-config exclude each other");
                return -EINVAL;
            }
            res->action = a;
            break;
        }
        case ':': {
            const char *name = long_name_of(c, optopt);
            if (optopt < VAL_OPT && optopt > 0 && optopt < 256 && c->short_slot[optopt] >= 0) {
                name = cfg->slots[c->short_slot[optopt]].def->name;
            }
            errf(err, errlen, "option '--%s' needs a value", name ? name : "?");
            return -EINVAL;
        }
        case '?':
            cli_unknown(c, argv[optind - 1], err, errlen);
            return -EINVAL;
        default:
            if (ch >= VAL_OPT) {
                size_t i = (size_t)(ch - VAL_OPT) / 2;
                rc = cli_value(&cfg->slots[i], optarg, (ch - VAL_OPT) % 2 == 1, err, errlen);
            } else if (ch > 0 && ch < 256 && c->short_slot[ch] >= 0) {
                rc = cli_value(&cfg->slots[c->short_slot[ch]], optarg, false, err, errlen);
            } else {
                errf(err, errlen, "unexpected getopt result %d", ch);
                rc = -EINVAL;
            }
        }
    }
    if (rc == 0 && optind < argc) {
        errf(err, errlen, "unexpected argument '%s' (options start with '-')",
             quote(argv[optind], q, sizeof(q)));
        rc = -EINVAL;
    }
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Public entry points
 */

int
config_exit_status(int rc)
{
    if (rc >= 0) {
        return 0;
    }
    if (rc == -EINVAL) {
        return CONFIG_EX_USAGE;
    }
    if (rc == -ENOMEM) {
        return CONFIG_EX_OSERR;
    }
    return CONFIG_EX_CONFIG;
}

/*
 * The two sources over the defaults, in precedence order: the config file (if any; its path is
 * kept in cfg), then the command line values already recorded in cfg. Shared by config_parse()
 * and config_reload(), so a reload gives exactly what a fresh start would.
 */
static int
load_sources(struct config *cfg, const char *file, char *err, size_t errlen)
{
    if (file != NULL) {
        cfg->file = strdup(file);
        if (cfg->file == NULL) {
            return -ENOMEM;
        }
        int rc = load_file(cfg, cfg->file, err, errlen);
        if (rc < 0) {
            return rc;
        }
    }
    return apply_cli(cfg);
}

int
config_parse(struct config **out, enum config_action *action, const struct opt_table *tables,
             size_t ntables, int argc, char **argv, char *err, size_t errlen)
{
    struct cli c = {0};
    struct cli_result res = {CONFIG_ACTION_RUN, NULL};
    int rc;

    *out = NULL;
    *action = CONFIG_ACTION_RUN;
    errf(err, errlen, "%s", "");
    struct config *cfg = config_from_tables(tables, ntables);
    if (cfg == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    rc = cli_build(&c, cfg);
    if (rc < 0) {
        goto fail;
    }
    rc = cli_parse(cfg, &c, argc, argv, &res, err, errlen);
    if (rc < 0) {
        goto fail;
    }
    *action = res.action;
    if (res.action == CONFIG_ACTION_HELP || res.action == CONFIG_ACTION_VERSION) {
        cli_free(&c, cfg->n);
        config_free(&cfg);
        return 0;
    }
    rc = load_sources(cfg, res.file, err, errlen);
    if (rc < 0) {
        goto fail;
    }
    cli_free(&c, cfg->n);
    *out = cfg;
    return 0;

fail:
    if (rc == -ENOMEM) {
        errf(err, errlen, "out of memory");
    }
    if (cfg != NULL) {
        cli_free(&c, cfg->n);
    }
    config_free(&cfg);
    *action = CONFIG_ACTION_RUN;
    return rc;
}

int
config_reload(const struct config *old, struct config **out, char *err, size_t errlen)
{
    struct config *cfg = NULL;
    int rc = -ENOMEM;

    *out = NULL;
    errf(err, errlen, "%s", "");
    const struct opt_def **defs = calloc(old->n ? old->n : 1, sizeof(*defs));
    if (defs != NULL) {
        for (size_t i = 0; i < old->n; i++) {
            defs[i] = old->slots[i].def;
        }
        cfg = config_new(defs, old->n);
        free(defs);
    }
    if (cfg == NULL) {
        goto fail;
    }
    for (size_t i = 0; i < old->n; i++) {
        const struct slot *o = &old->slots[i];
        if (o->cli_set) {
            cfg->slots[i].cli_set = true;
            if (value_copy(o->def, &cfg->slots[i].cli, &o->cli) < 0) {
                goto fail;
            }
        }
    }
    rc = load_sources(cfg, old->file, err, errlen);
    if (rc < 0) {
        goto fail;
    }
    *out = cfg;
    return 0;

fail:
    if (rc == -ENOMEM) {
        errf(err, errlen, "out of memory");
    }
    config_free(&cfg);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Getters
 */

static const struct slot *
get_slot(const struct config *cfg, const char *name, const char *getter, unsigned types)
{
    const struct slot *s = find_slot(cfg, name);
    if (s == NULL) {
        fprintf(stderr, "config: %s(\"%s\"): no option table declares '%s'\n", getter, name, name);
        abort();
    }
    if (!(types & (1u << s->def->type))) {
        fprintf(stderr, "config: %s(\"%s\"): option '%s' is %s\n", getter, name, name,
                type_name(s->def->type));
        abort();
    }
    return s;
}

bool
config_bool(const struct config *cfg, const char *name)
{
    return get_slot(cfg, name, "config_bool", 1u << OPT_BOOL)->val.u != 0;
}

uint64_t
config_uint(const struct config *cfg, const char *name)
{
    unsigned types = (1u << OPT_UINT) | (1u << OPT_SIZE) | (1u << OPT_COUNT);
    return get_slot(cfg, name, "config_uint", types)->val.u;
}

const char *
config_str(const struct config *cfg, const char *name)
{
    return get_slot(cfg, name, "config_str", 1u << OPT_STR)->val.s;
}

unsigned
config_enum(const struct config *cfg, const char *name)
{
    return (unsigned)get_slot(cfg, name, "config_enum", 1u << OPT_ENUM)->val.u;
}

const char *
config_file(const struct config *cfg)
{
    return cfg->file;
}

/* ---------------------------------------------------------------------------------------------
 * Iteration, differences, reload support
 */

int
config_format_value(const struct config *cfg, const char *name, char *out, size_t len)
{
    const struct slot *s = find_slot(cfg, name);
    if (s == NULL) {
        return -ENOENT;
    }
    return format_value(s->def, &s->val, out, len);
}

int
config_foreach(const struct config *cfg, config_visit_fn fn, void *arg)
{
    char text[CONFIG_STR_MAX + 1];

    for (size_t i = 0; i < cfg->n; i++) {
        format_value(cfg->slots[i].def, &cfg->slots[i].val, text, sizeof(text));
        int rc = fn(arg, cfg->slots[i].def, text);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static void
check_same_tables(const struct config *a, const struct config *b)
{
    bool same = a->n == b->n;
    for (size_t i = 0; same && i < a->n; i++) {
        same = a->slots[i].def == b->slots[i].def;
    }
    if (!same) {
        fprintf(stderr, "config: comparing configurations built from different tables\n");
        abort();
    }
}

/* Report one difference, both values as text. */
static void
report_diff(const struct slot *o, const struct slot *n, config_diff_fn fn, void *arg)
{
    char a[CONFIG_STR_MAX + 1], b[CONFIG_STR_MAX + 1];
    if (fn == NULL) {
        return;
    }
    format_value(o->def, &o->val, a, sizeof(a));
    format_value(n->def, &n->val, b, sizeof(b));
    fn(arg, o->def, a, b);
}

int
config_diff(const struct config *old, const struct config *new, config_diff_fn fn, void *arg)
{
    int count = 0;

    check_same_tables(old, new);
    for (size_t i = 0; i < old->n; i++) {
        const struct slot *o = &old->slots[i], *n = &new->slots[i];
        if (!value_equal(o->def, &o->val, &n->val)) {
            report_diff(o, n, fn, arg);
            count++;
        }
    }
    return count;
}

int
config_keep_fixed(struct config *next, const struct config *old, config_diff_fn fn, void *arg)
{
    int count = 0;

    check_same_tables(old, next);
    for (size_t i = 0; i < old->n; i++) {
        const struct slot *o = &old->slots[i];
        struct slot *n = &next->slots[i];
        if ((o->def->flags & OPT_RELOADABLE) || value_equal(o->def, &o->val, &n->val)) {
            continue;
        }
        report_diff(o, n, fn, arg);
        if (value_copy(o->def, &n->val, &o->val) < 0) {
            return -ENOMEM;
        }
        n->src = o->src;
        count++;
    }
    return count;
}

/* ---------------------------------------------------------------------------------------------
 * --help and --print-config
 */

/* Append text word-wrapped: the first line continues at column col (where the caller is), the
 * following ones start with prefix, which is also col columns wide. */
static int
wrap(struct buf *b, const char *text, size_t col, const char *prefix)
{
    size_t pos = col;
    const char *p = text;
    int rc = 0;

    while (*p != '\0' && rc == 0) {
        while (*p == ' ') {
            p++;
        }
        size_t w = strcspn(p, " ");
        if (w == 0) {
            break;
        }
        if (pos > col && pos + 1 + w > TEXT_WIDTH) {
            rc = buf_printf(b, "\n%s", prefix);
            pos = col;
        } else if (pos > col) {
            rc = buf_puts(b, " ");
            pos++;
        }
        if (rc == 0) {
            rc = buf_append(b, p, w);
        }
        pos += w;
        p += w;
    }
    return rc ? rc : buf_puts(b, "\n");
}

/* The description of an option, as --help (for_cli) and --print-config show it. */
static void
describe(const struct opt_def *d, bool for_cli, char *out, size_t len)
{
    size_t n = (size_t)snprintf(out, len, "%s", d->help);
    const char *dflt = def_default(d);

    if (n < len && d->type == OPT_ENUM) {
        n += (size_t)snprintf(out + n, len - n, " (one of:");
        for (size_t i = 0; d->choices[i] != NULL && n < len; i++) {
            n += (size_t)snprintf(out + n, len - n, "%s %s", i ? "," : "", d->choices[i]);
        }
        n += n < len ? (size_t)snprintf(out + n, len - n, ";") : 0;
    } else if (n < len) {
        n += (size_t)snprintf(out + n, len - n, " (");
    }
    if (n < len && d->type == OPT_SIZE && def_unit(d) > 1) {
        n += (size_t)snprintf(out + n, len - n, "a bare number counts %s; ",
                              def_unit(d) == 1024         ? "KiB"
                              : def_unit(d) == (1u << 20) ? "MiB"
                                                          : "GiB");
    }
    if (n < len && d->type == OPT_COUNT && for_cli) {
        n += (size_t)snprintf(out + n, len - n, "repeat to raise; ");
    }
    if (n < len) {
        snprintf(out + n, len - n, "%sdefault: %s)", d->type == OPT_ENUM ? " " : "",
                 dflt[0] ? dflt : "none");
    }
}

static int
help_line(struct buf *b, const char *flags, const char *text)
{
    static const char pad[HELP_COL + 1] = "                              ";
    int rc = buf_printf(b, "%s", flags);
    size_t col = strlen(flags);

    if (rc == 0 && col + 2 > HELP_COL) {
        rc = buf_printf(b, "\n%s", pad);
    } else if (rc == 0) {
        rc = buf_printf(b, "%.*s", (int)(HELP_COL - col), pad);
    }
    return rc ? rc : wrap(b, text, HELP_COL, pad);
}

static int
help_option(struct buf *b, const struct opt_def *d)
{
    static const char *const metavar[] = {
        [OPT_BOOL] = "",     [OPT_UINT] = "=NUM",  [OPT_SIZE] = "=SIZE",
        [OPT_STR] = "=TEXT", [OPT_ENUM] = "=WORD", [OPT_COUNT] = "",
    };
    char flags[NAME_LEN_MAX + 32], text[1024];
    int n = 0;

    if (d->short_name != 0) {
        n = snprintf(flags, sizeof(flags), "  -%c, ", d->short_name);
    } else {
        n = snprintf(flags, sizeof(flags), "      ");
    }
    snprintf(flags + n, sizeof(flags) - (size_t)n, "--%s%s%s", d->type == OPT_BOOL ? "[no-]" : "",
             d->name, metavar[d->type]);
    describe(d, true, text, sizeof(text));
    return help_line(b, flags, text);
}

int
config_help(struct buf *b, const struct config_product *product, const struct opt_table *tables,
            size_t ntables)
{
    const char *name = product && product->name ? product->name : "petrel";
    int rc = buf_printf(b, "Usage: %s [OPTION]...\n", name);

    if (rc == 0 && product && product->summary) {
        rc = buf_printf(b, "%s\n", product->summary);
    }
    for (size_t t = 0; t < ntables && rc == 0; t++) {
        rc = buf_printf(b, "\nOptions (%s):\n", tables[t].name ? tables[t].name : "other");
        for (size_t i = 0; i < tables[t].n && rc == 0; i++) {
            rc = help_option(b, &tables[t].defs[i]);
        }
    }
    if (rc == 0) {
        rc = buf_puts(b, "\nGeneral options:\n");
    }
    rc = rc ? rc
            : help_line(b, "  -C, --config=FILE",
                        "read options from an INI file first; the command line overrides it");
    rc = rc ? rc
            : help_line(b, "      --print-config",
                        "print the effective configuration as a config file and exit");
    rc = rc ? rc
            : help_line(b, "      --check-config",
                        "check the configuration, print 'configuration OK' and exit");
    rc = rc ? rc : help_line(b, "  -h, --help", "print this help and exit");
    rc = rc ? rc : help_line(b, "  -V, --version", "print the version and exit");
    if (rc == 0) {
        rc = buf_puts(b, "\nEvery long option is also a key of the config file, in the section "
                         "that\n--print-config shows. Booleans: --name, --name=no, --no-name. "
                         "Sizes take a\nk, m or g suffix (1024-based) or b for bytes.\n");
    }
    return rc;
}

int
config_print(struct buf *b, const struct config *cfg)
{
    char text[1024], value[CONFIG_STR_MAX + 1];
    int rc = buf_puts(b, "# Effective configuration; load it with --config FILE.\n");

    for (size_t k = 0; sections[k] != NULL && rc == 0; k++) {
        bool header = false;
        for (size_t i = 0; i < cfg->n && rc == 0; i++) {
            const struct slot *s = &cfg->slots[i];
            if (strcmp(s->def->section, sections[k]) != 0) {
                continue;
            }
            if (!header) {
                rc = buf_printf(b, "\n[%s]\n", sections[k]);
                header = true;
            }
            describe(s->def, false, text, sizeof(text));
            rc = rc ? rc : buf_puts(b, "# ");
            rc = rc ? rc : wrap(b, text, 2, "# ");
            format_value(s->def, &s->val, value, sizeof(value));
            rc = rc ? rc : buf_printf(b, "%s =%s%s\n", s->def->name, value[0] ? " " : "", value);
        }
    }
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * config_load: parse, then act and print
 */

static int
write_out(struct buf *b, int rc, const char *prog)
{
    if (rc == 0 && fwrite(buf_rptr(b), 1, buf_len(b), stdout) == buf_len(b) &&
        fflush(stdout) == 0) {
        return 0;
    }
    fprintf(stderr, "%s: cannot write the output\n", prog);
    return CONFIG_EX_OSERR;
}

/* The foreign flag an "unknown option '-X'" or "unknown option '--name'" error is about. */
static const struct opt_foreign *
foreign_of(const struct config_product *product, const char *err)
{
    static const char prefix[] = "unknown option '-";
    if (product == NULL || product->foreign == NULL || strncmp(err, prefix, strlen(prefix)) != 0) {
        return NULL;
    }
    const char *name = err + strlen(prefix);
    size_t len = strcspn(name, "'");
    for (const struct opt_foreign *f = product->foreign; f->why != NULL; f++) {
        if (len == 1 && f->short_name != 0 && name[0] == f->short_name) {
            return f;
        }
        if (name[0] == '-' && f->long_name != NULL && len - 1 == strlen(f->long_name) &&
            strncmp(name + 1, f->long_name, len - 1) == 0) {
            return f;
        }
    }
    return NULL;
}

int
config_load(struct config **out, const struct config_product *product,
            const struct opt_table *tables, size_t ntables, int argc, char **argv)
{
    const char *prog = product && product->name ? product->name : "petrel";
    char err[1024];
    enum config_action action;
    struct config *cfg = NULL;
    struct buf b;
    int status = 0;

    *out = NULL;
    int rc = config_parse(&cfg, &action, tables, ntables, argc, argv, err, sizeof(err));
    const struct opt_foreign *f = rc == -EINVAL ? foreign_of(product, err) : NULL;
    if (f != NULL) {
        char name[64];
        snprintf(name, sizeof(name), "%s%s%s%s%s", f->short_name ? "-" : "",
                 f->short_name ? (char[]){f->short_name, '\0'} : "",
                 f->short_name && f->long_name ? "/" : "", f->long_name ? "--" : "",
                 f->long_name ? f->long_name : "");
        fprintf(stderr, "%s: %s: %s\n", prog, name, f->why);
        return CONFIG_EX_USAGE;
    }
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        if (rc == -EINVAL) {
            fprintf(stderr, "Try '%s --help' for the list of options.\n", prog);
        }
        return config_exit_status(rc);
    }
    buf_init(&b, 4096, 16u << 20);
    switch (action) {
    case CONFIG_ACTION_RUN:
        *out = cfg;
        return CONFIG_RUN;
    case CONFIG_ACTION_HELP:
        status = write_out(&b, config_help(&b, product, tables, ntables), prog);
        break;
    case CONFIG_ACTION_VERSION:
        status = write_out(
            &b,
            buf_printf(&b, "%s %s\n", prog, product && product->version ? product->version : "?"),
            prog);
        break;
    case CONFIG_ACTION_PRINT:
        status = write_out(&b, config_print(&b, cfg), prog);
        break;
    case CONFIG_ACTION_CHECK:
        /* What start-up checks beyond each option alone (and files such as certificates). */
        status = product != NULL && product->validate != NULL ? product->validate(cfg) : 0;
        if (status == 0) {
            status = write_out(&b, buf_puts(&b, "configuration OK\n"), prog);
        }
        break;
    }
    buf_free(&b);
    config_free(&cfg);
    return status;
}
