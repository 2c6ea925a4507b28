/* config help: the --help text and the --print-config INI file, both generated from the tables. */
#include "config_impl.h"

#include "petrel/buf.h"

#include <stdio.h>
#include <string.h>

#define HELP_COL   30 /* --help: where the description column starts */
#define TEXT_WIDTH 79

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
    const char *dflt = opt_default(d);

    if (n < len && d->type == OPT_ENUM) {
        n += (size_t)snprintf(out + n, len - n, " (one of:");
        for (size_t i = 0; d->choices[i] != NULL && n < len; i++) {
            n += (size_t)snprintf(out + n, len - n, "%s %s", i ? "," : "", d->choices[i]);
        }
        n += n < len ? (size_t)snprintf(out + n, len - n, ";") : 0;
    } else if (n < len) {
        n += (size_t)snprintf(out + n, len - n, " (");
    }
    if (n < len && d->type == OPT_SIZE && opt_unit(d) > 1) {
        n += (size_t)snprintf(out + n, len - n, "a bare number counts %s; ",
                              opt_unit(d) == 1024         ? "KiB"
                              : opt_unit(d) == (1u << 20) ? "MiB"
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

/* One compat flag or -o key: its spelling, then what it does here. */
static int
help_compat_entry(struct buf *b, const struct opt_compat *e, bool extended)
{
    static const char *const metavar[] = {"", "=VALUE", "[=VALUE]"};
    char flags[NAME_LEN_MAX + 32], text[1024];

    if (extended) {
        snprintf(flags, sizeof(flags), "      %s%s", e->name, metavar[e->arg]);
    } else {
        /* "  -c, --conn-limit=VALUE", "  -D=VALUE"... as help_option() lays options out */
        int n = e->short_name != 0 ? snprintf(flags, sizeof(flags), "  -%c%s", e->short_name,
                                              e->name != NULL ? ", " : "")
                                   : snprintf(flags, sizeof(flags), "      ");
        if (e->name != NULL) {
            snprintf(flags + n, sizeof(flags) - (size_t)n, "--%s%s", e->name, metavar[e->arg]);
        } else if (e->arg != COMPAT_ARG_NONE) {
            snprintf(flags + n, sizeof(flags) - (size_t)n, " VALUE");
        }
    }
    switch (e->action) {
    case COMPAT_SET:
        if (e->arg == COMPAT_ARG_NONE) {
            snprintf(text, sizeof(text), "sets %s = %s", e->option, e->value);
        } else {
            snprintf(text, sizeof(text), "sets %s%s%s", e->option, e->why ? ": " : "",
                     e->why ? e->why : "");
        }
        break;
    case COMPAT_SAME:
        snprintf(text, sizeof(text), "accepted: %s", e->why ? e->why : "petrel behaves so");
        break;
    case COMPAT_IGNORE:
        snprintf(text, sizeof(text), "accepted, no effect: %s", e->why);
        break;
    case COMPAT_REFUSE:
        snprintf(text, sizeof(text), "refused: %s", e->why);
        break;
    }
    return help_line(b, flags, text);
}

/* The other server's flags and -o keys, as the product takes them. */
static int
help_compat(struct buf *b, const struct config_product *product)
{
    int rc = 0;

    if (product->compat_flags != NULL) {
        rc = buf_puts(b, "\nmemcached's other flags:\n");
        for (const struct opt_compat *e = product->compat_flags;
             rc == 0 && (e->short_name != 0 || e->name != NULL); e++) {
            rc = help_compat_entry(b, e, false);
        }
    }
    if (rc == 0 && product->extended != NULL) {
        rc = buf_puts(b,
                      "\nmemcached's extended options, -o/--extended=KEY[=VALUE][,KEY[=VALUE]...] "
                      "(repeatable):\n");
        for (const struct opt_compat *e = product->extended; rc == 0 && e->name != NULL; e++) {
            rc = help_compat_entry(b, e, true);
        }
    }
    return rc;
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
    if (rc == 0 && product != NULL) {
        rc = help_compat(b, product);
    }
    if (rc == 0) {
        rc = buf_puts(b, "\nGeneral options:\n");
    }
    rc = rc ? rc
            : help_line(b, "      --config=FILE",
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

    for (size_t k = 0; config_sections[k] != NULL && rc == 0; k++) {
        bool header = false;
        for (size_t i = 0; i < cfg->n && rc == 0; i++) {
            const struct slot *s = &cfg->slots[i];
            if (strcmp(s->def->section, config_sections[k]) != 0) {
                continue;
            }
            if (!header) {
                rc = buf_printf(b, "\n[%s]\n", config_sections[k]);
                header = true;
            }
            describe(s->def, false, text, sizeof(text));
            rc = rc ? rc : buf_puts(b, "# ");
            rc = rc ? rc : wrap(b, text, 2, "# ");
            value_format(s->def, &s->val, value, sizeof(value));
            rc = rc ? rc : buf_printf(b, "%s =%s%s\n", s->def->name, value[0] ? " " : "", value);
        }
    }
    return rc;
}
