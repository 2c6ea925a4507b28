/* config: option tables -> configuration; the entry points config_parse, config_load and
 * config_reload, the getters and the comparisons. Contract in include/petrel/config.h, the parts
 * in config_impl.h, accepted syntax in docs/configuration.md. */
#include "config_impl.h"

#include "petrel/buf.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const config_sections[] = {"server", "storage", "admin", "tls", "log", NULL};
const char *const config_builtin_names[] = {"help",         "version",      "config",
                                            "print-config", "check-config", NULL};

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 */

/* The tables are code: a mistake in them is a programming error, reported before anything runs. */
void
config_table_bug(const char *fmt, ...)
{
    va_list ap;
    fputs("config: bad option table: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
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

bool
config_known_section(const char *name)
{
    for (size_t i = 0; config_sections[i] != NULL; i++) {
        if (strcmp(config_sections[i], name) == 0) {
            return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------------------------------------
 * Building a configuration: tables -> slots with defaults
 */

static void
check_def(const struct opt_def *d)
{
    if (d->name == NULL || d->name[0] == '\0' || strlen(d->name) > NAME_LEN_MAX) {
        config_table_bug("an option has no name or a name longer than %d bytes", NAME_LEN_MAX);
    }
    for (const char *p = d->name; *p != '\0'; p++) {
        if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '-' && *p != '_') {
            config_table_bug("option '%s': names use a-z, 0-9, '-' and '_'", d->name);
        }
    }
    if (d->name[0] == '-' || strncmp(d->name, "no-", 3) == 0) {
        config_table_bug("option '%s': a name may not start with '-' or 'no-'", d->name);
    }
    for (size_t i = 0; config_builtin_names[i] != NULL; i++) {
        if (strcmp(d->name, config_builtin_names[i]) == 0) {
            config_table_bug("option '%s' is built in", d->name);
        }
    }
    if (d->short_name != 0 &&
        (!isalnum((unsigned char)d->short_name) || strchr("hV", d->short_name) != NULL)) {
        config_table_bug("option '%s': short flag '%c' is not a letter or digit, or is built in",
                         d->name, d->short_name);
    }
    if (d->section == NULL || !config_known_section(d->section)) {
        config_table_bug("option '%s': section must be server, storage, admin, tls or log",
                         d->name);
    }
    if (d->help == NULL) {
        config_table_bug("option '%s' has no help text", d->name);
    }
    if ((unsigned)d->type > OPT_COUNT) {
        config_table_bug("option '%s' has an unknown type", d->name);
    }
    if (d->min > opt_max(d)) {
        config_table_bug("option '%s': min > max", d->name);
    }
    if (d->type == OPT_SIZE && d->unit > 1 && d->unit != (1u << 10) && d->unit != (1u << 20) &&
        d->unit != (1u << 30)) {
        config_table_bug("option '%s': unit must be 1, 1 KiB, 1 MiB or 1 GiB", d->name);
    }
    if ((d->flags & OPT_LIST) && d->type != OPT_STR) {
        config_table_bug("option '%s': only an OPT_STR can be an OPT_LIST", d->name);
    }
    if (d->type == OPT_ENUM && (d->choices == NULL || d->choices[0] == NULL)) {
        config_table_bug("option '%s' is an OPT_ENUM without choices", d->name);
    }
    if (d->dflt == NULL && d->type != OPT_STR && d->type != OPT_COUNT) {
        config_table_bug("option '%s' has no default", d->name);
    }
}

static void
check_unique(const struct slot *slots, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct opt_def *a = slots[i].def;
        for (size_t j = 0; j < i; j++) {
            const struct opt_def *b = slots[j].def;
            if (strcmp(a->name, b->name) == 0) {
                config_table_bug("option '%s' is declared twice", a->name);
            }
            if (a->short_name != 0 && a->short_name == b->short_name) {
                config_table_bug("options '%s' and '%s' share the short flag '-%c'", b->name,
                                 a->name, a->short_name);
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
        int rc = value_parse(s->def, opt_default(s->def), &s->val, why, sizeof(why));
        if (rc == -ENOMEM) {
            goto fail;
        }
        if (rc < 0) {
            config_table_bug("option '%s': default %s", s->def->name, why);
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
            config_table_bug("table '%s' has no definitions",
                             tables[t].name ? tables[t].name : "?");
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

struct slot *
config_find_slot(const struct config *cfg, const char *name)
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
    free((*cfg)->notices);
    free(*cfg);
    *cfg = NULL;
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
    if (rc == -EINVAL || rc == -ENOTSUP) {
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
        int rc = file_load(cfg, cfg->file, err, errlen);
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
    return config_parse_product(out, action, NULL, tables, ntables, argc, argv, err, errlen);
}

int
config_parse_product(struct config **out, enum config_action *action,
                     const struct config_product *product, const struct opt_table *tables,
                     size_t ntables, int argc, char **argv, char *err, size_t errlen)
{
    struct cli c = {0};
    struct cli_result res = {CONFIG_ACTION_RUN, NULL};
    int rc;

    *out = NULL;
    *action = CONFIG_ACTION_RUN;
    config_errf(err, errlen, "%s", "");
    struct config *cfg = config_from_tables(tables, ntables);
    if (cfg == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    rc = cli_build(&c, cfg, product);
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
        config_errf(err, errlen, "out of memory");
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
    config_errf(err, errlen, "%s", "");
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
        config_errf(err, errlen, "out of memory");
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
    const struct slot *s = config_find_slot(cfg, name);
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

const char *
config_notices(const struct config *cfg)
{
    return cfg->notices != NULL ? cfg->notices : "";
}

/* ---------------------------------------------------------------------------------------------
 * Iteration, differences, reload support
 */

int
config_format_value(const struct config *cfg, const char *name, char *out, size_t len)
{
    const struct slot *s = config_find_slot(cfg, name);
    if (s == NULL) {
        return -ENOENT;
    }
    return value_format(s->def, &s->val, out, len);
}

int
config_foreach(const struct config *cfg, config_visit_fn fn, void *arg)
{
    char text[CONFIG_STR_MAX + 1];

    for (size_t i = 0; i < cfg->n; i++) {
        value_format(cfg->slots[i].def, &cfg->slots[i].val, text, sizeof(text));
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
    value_format(o->def, &o->val, a, sizeof(a));
    value_format(n->def, &n->val, b, sizeof(b));
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

/* The notices of the command line, each line after the program's name, on stderr. */
static void
print_notices(const struct config *cfg, const char *prog)
{
    const char *p = cfg != NULL ? config_notices(cfg) : "";
    while (*p != '\0') {
        size_t n = strcspn(p, "\n");
        fprintf(stderr, "%s: %.*s\n", prog, (int)n, p);
        p += n + (p[n] == '\n');
    }
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
    int rc =
        config_parse_product(&cfg, &action, product, tables, ntables, argc, argv, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        if (rc == -EINVAL) {
            fprintf(stderr, "Try '%s --help' for the list of options.\n", prog);
        }
        return config_exit_status(rc);
    }
    print_notices(cfg, prog);
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
