/* config command line: getopt_long's tables generated from the slots, and one walk over argv. */
#include "config_impl.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* getopt_long() return values for the generated options: product option i is VAL_OPT + 2 * i,
 * its --no-NAME form (booleans) VAL_OPT + 2 * i + 1. Built-ins use their short letter or these. */
#define VAL_PRINT  1
#define VAL_CHECK  2
#define VAL_CONFIG 3 /* --config has no short form: -C is memcached's (disable CAS) */
#define VAL_OPT    256
/* The product's compat flag j is VAL_COMPAT + j, -o/--extended VAL_EXTENDED: above any
 * VAL_OPT + 2 * i a configuration can reach. */
#define VAL_EXTENDED 0x40000000
#define VAL_COMPAT   0x40000001

void
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

/* The short and long form of a table option, or a built-in, that the string or letter names. */
static bool
claimed_short(const struct cli *c, char ch)
{
    return ch == 'h' || ch == 'V' || (ch == 'o' && c->extended != NULL) ||
           c->short_slot[(unsigned char)ch] >= 0;
}

static bool
claimed_long(const struct cli *c, const char *name)
{
    for (size_t i = 0; i < c->nlong; i++) {
        if (strcmp(c->longopts[i].name, name) == 0) {
            return true;
        }
    }
    return false;
}

/* Add the product's flags after the tables' options and the built-ins. A flag the product refuses
 * is left out where a table has come to declare it; any other clash is a bug in the product. */
static void
add_compat(struct cli *c, size_t *k)
{
    static const int has_arg[] = {no_argument, required_argument, optional_argument};
    static const char *const colons[] = {"", ":", "::"};

    for (size_t j = 0; j < c->nflags; j++) {
        const struct opt_compat *e = &c->flags[j];
        bool refused = e->action == COMPAT_REFUSE;
        if (e->short_name != 0 && claimed_short(c, e->short_name) && !refused) {
            config_table_bug("compat flag '-%c' is also a table's or a built-in flag",
                             e->short_name);
        }
        if (e->name != NULL && claimed_long(c, e->name) && !refused) {
            config_table_bug("compat flag '--%s' is also a table's or a built-in option", e->name);
        }
        if (e->short_name != 0 && !claimed_short(c, e->short_name)) {
            c->short_compat[(unsigned char)e->short_name] = (int)j;
            *k += (size_t)sprintf(c->optstring + *k, "%c%s", e->short_name, colons[e->arg]);
        }
        if (e->name != NULL && !claimed_long(c, e->name)) {
            c->longopts[c->nlong++] =
                (struct option){e->name, has_arg[e->arg], NULL, VAL_COMPAT + (int)j};
        }
    }
}

/* Generate getopt_long's tables from the slots and the product's flags. Returns 0 or -ENOMEM. */
int
cli_build(struct cli *c, const struct config *cfg, const struct config_product *product)
{
    size_t n = cfg->n;
    size_t k = 0;

    *c = (struct cli){0};
    memset(c->short_slot, -1, sizeof(c->short_slot));
    memset(c->short_compat, -1, sizeof(c->short_compat));
    c->flags = product != NULL ? product->compat_flags : NULL;
    c->extended = product != NULL ? product->extended : NULL;
    for (const struct opt_compat *e = c->flags; e && (e->short_name || e->name); e++) {
        compat_check(cfg, e, false);
        c->nflags++;
    }
    for (const struct opt_compat *e = c->extended; e && e->name; e++) {
        compat_check(cfg, e, true);
    }
    c->longopts = calloc(2 * n + 8 + c->nflags, sizeof(*c->longopts));
    c->no_names = calloc(n ? n : 1, sizeof(*c->no_names));
    /* "+:" no permutation, report a missing value as ':'; then at most 2 bytes per option and
     * 3 per compat flag. */
    c->optstring = malloc(2 * n + 3 * c->nflags + 16);
    if (c->longopts == NULL || c->no_names == NULL || c->optstring == NULL) {
        return -ENOMEM;
    }
    k += (size_t)sprintf(c->optstring, "+:hV");
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
    add_long(c, "config", required_argument, VAL_CONFIG);
    add_long(c, "print-config", no_argument, VAL_PRINT);
    add_long(c, "check-config", no_argument, VAL_CHECK);
    if (c->extended != NULL) {
        if (c->short_slot['o'] >= 0 || claimed_long(c, "extended")) {
            config_table_bug("-o/--extended is the product's, and also a table's");
        }
        add_long(c, "extended", required_argument, VAL_EXTENDED);
        k += (size_t)sprintf(c->optstring + k, "o:");
    }
    add_compat(c, &k);
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
        config_errf(err, errlen, "option '--%s' does not take a value", name);
        return;
    }
    if (optopt != 0) {
        config_errf(err, errlen, "unknown option '-%c'", isprint(optopt) ? optopt : '?');
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
    config_quote(arg, q, sizeof(q));
    q[strcspn(q, "=")] = '\0';
    if (matches > 1) {
        config_errf(err, errlen, "option '%s' is ambiguous (%s)", q, list);
    } else {
        config_errf(err, errlen, "unknown option '%s'", q);
    }
}

/* True if the comma-separated list holds item (exactly, as one of its elements). */
static bool
list_has(const char *list, const char *item)
{
    size_t n = strlen(item);
    for (const char *p = list; *p != '\0'; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
        if (strcspn(p, ",") == n && strncmp(p, item, n) == 0) {
            return true;
        }
    }
    return false;
}

int
cli_set(struct slot *s, const char *text, const char *label, char *err, size_t errlen)
{
    char why[512];
    struct value v = {0};
    char *joined = NULL;

    /* An OPT_LIST given again grows: -l a -l b is -l a,b, and naming an address twice is once. */
    if ((s->def->flags & OPT_LIST) && s->cli_set && s->cli.s[0] != '\0' && text[0] != '\0') {
        if (list_has(s->cli.s, text)) {
            return 0;
        }
        if (asprintf(&joined, "%s,%s", s->cli.s, text) < 0) {
            return -ENOMEM;
        }
        text = joined;
    }
    int rc = value_parse(s->def, text, &v, why, sizeof(why));
    free(joined);
    if (rc < 0) {
        config_errf(err, errlen, "%s: %s", label, why);
        return rc;
    }
    free(s->cli.s);
    s->cli = v;
    s->cli_set = true;
    return 0;
}

/* One product option from argv: remembered in the slot's cli value. */
static int
cli_value(struct slot *s, const char *arg, bool negated, char *err, size_t errlen)
{
    const struct opt_def *d = s->def;
    char label[NAME_LEN_MAX + 4];
    struct value v = {0};

    if (arg != NULL && !negated) {
        snprintf(label, sizeof(label), "--%s", d->name);
        return cli_set(s, arg, label, err, errlen);
    }
    if (negated) {
        v.u = 0;
    } else if (d->type == OPT_BOOL) {
        v.u = 1;
    } else {
        /* OPT_COUNT: the only other type getopt lets through without a value */
        v.u = s->cli_set ? s->cli.u + 1 : 1;
        if (v.u > opt_max(d)) {
            config_errf(err, errlen, "--%s: given more than %llu times", d->name,
                        (unsigned long long)opt_max(d));
            return -EINVAL;
        }
    }
    free(s->cli.s);
    s->cli = v;
    s->cli_set = true;
    return 0;
}

/* getopt said ':': name the option that lacks its value as the user would look it up. */
static void
cli_missing(const struct config *cfg, const struct cli *c, char *err, size_t errlen)
{
    char label[NAME_LEN_MAX + 8];
    const char *name = long_name_of(c, optopt);

    if (optopt > 0 && optopt < 256 && c->short_slot[optopt] >= 0) {
        name = cfg->slots[c->short_slot[optopt]].def->name;
    } else if (optopt > 0 && optopt < 256 && c->short_compat[optopt] >= 0) {
        compat_label(&c->flags[c->short_compat[optopt]], false, label, sizeof(label));
        config_errf(err, errlen, "option '%s' needs a value", label);
        return;
    } else if (optopt == 'o' && c->extended != NULL) {
        name = "extended";
    }
    config_errf(err, errlen, "option '--%s' needs a value", name ? name : "?");
}

/* Walk argv once: product options go into the slots' cli values, built-ins into res. */
int
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
        case VAL_CONFIG:
            if (res->file != NULL) {
                config_errf(err, errlen, "option '--config' given more than once");
                return -EINVAL;
            }
            res->file = optarg;
            break;
        case VAL_PRINT:
        case VAL_CHECK: {
            enum config_action a = ch == VAL_PRINT ? CONFIG_ACTION_PRINT : CONFIG_ACTION_CHECK;
            if (res->action != CONFIG_ACTION_RUN && res->action != a) {
                config_errf(err, errlen, "--print-config and --check-config exclude each other");
                return -EINVAL;
            }
            res->action = a;
            break;
        }
        case ':':
            cli_missing(cfg, c, err, errlen);
            return -EINVAL;
        case '?':
            cli_unknown(c, argv[optind - 1], err, errlen);
            return -EINVAL;
        default:
            if (ch == VAL_EXTENDED || (ch == 'o' && c->extended != NULL)) {
                rc = compat_extended(cfg, c->extended, optarg, err, errlen);
            } else if (ch >= VAL_COMPAT) {
                rc = compat_apply(cfg, &c->flags[ch - VAL_COMPAT], NULL, optarg, err, errlen);
            } else if (ch >= VAL_OPT) {
                size_t i = (size_t)(ch - VAL_OPT) / 2;
                rc = cli_value(&cfg->slots[i], optarg, (ch - VAL_OPT) % 2 == 1, err, errlen);
            } else if (ch > 0 && ch < 256 && c->short_slot[ch] >= 0) {
                rc = cli_value(&cfg->slots[c->short_slot[ch]], optarg, false, err, errlen);
            } else if (ch > 0 && ch < 256 && c->short_compat[ch] >= 0) {
                rc = compat_apply(cfg, &c->flags[c->short_compat[ch]], NULL, optarg, err, errlen);
            } else {
                config_errf(err, errlen, "unexpected getopt result %d", ch);
                rc = -EINVAL;
            }
        }
    }
    if (rc == 0 && optind < argc) {
        config_errf(err, errlen, "unexpected argument '%s' (options start with '-')",
                    config_quote(argv[optind], q, sizeof(q)));
        rc = -EINVAL;
    }
    return rc;
}
