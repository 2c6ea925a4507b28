/* config file: the INI reader. inih parses; this file counts lines, checks sections and keys
 * against the slots, and words the errors as "file:line: ...". */
#include "config_impl.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FILE_SIZE_MAX ((size_t)1 << 20) /* a config file is a few KiB; refuse anything absurd */

/* A line of the longest printable option must fit inih's line buffer, or --print-config output
 * would not load back. Builds of inih with run-time options (Debian's) let us widen it. */
#define LINE_LEN_WANTED (CONFIG_STR_MAX + NAME_LEN_MAX + 64)

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
    config_errf(fc->err, fc->errlen, "%s:%u: %s", fc->path, fc->line, msg);
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
    if (!config_known_section(name)) {
        file_fail(fc, -EBADMSG, "unknown section [%s] (sections: server, storage, admin, tls, log)",
                  config_quote(name, q, sizeof(q)));
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
                  config_quote(name, q, sizeof(q)));
        return 0;
    }
    struct slot *s = config_find_slot(fc->cfg, name);
    if (s == NULL) {
        file_fail(fc, -EBADMSG, section[0] ? "unknown option '%s' in [%s]" : "unknown option '%s'",
                  config_quote(name, q, sizeof(q)), section);
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
    int rc = value_parse(s->def, value, &v, why, sizeof(why));
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
        config_errf(err, errlen, "%s: cannot open: %s", path, strerror(-rc));
        return rc;
    }
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        rc = -EISDIR;
        config_errf(err, errlen, "%s: cannot read: %s", path, strerror(EISDIR));
        goto fail;
    }
    for (;;) {
        if (n == cap || p == NULL) {
            char *q = realloc(p, cap *= 2);
            if (q == NULL) {
                rc = -ENOMEM;
                config_errf(err, errlen, "%s: out of memory", path);
                goto fail;
            }
            p = q;
        }
        size_t got = fread(p + n, 1, cap - n, f);
        n += got;
        if (n > FILE_SIZE_MAX) {
            rc = -EFBIG;
            config_errf(err, errlen, "%s: file is larger than %zu bytes", path, FILE_SIZE_MAX);
            goto fail;
        }
        if (got == 0) {
            break;
        }
    }
    if (ferror(f)) {
        rc = -EIO;
        config_errf(err, errlen, "%s: cannot read: %s", path, strerror(EIO));
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

int
file_load(struct config *cfg, const char *path, char *err, size_t errlen)
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
        config_errf(err, errlen, "%s: out of memory", path);
    } else if (bad_line > 0 && (fc.rc == 0 || (unsigned)bad_line < fc.err_line)) {
        syntax_error(&fc, (unsigned)bad_line);
        rc = fc.rc;
    } else {
        rc = fc.rc;
    }
    free(data);
    return rc;
}
