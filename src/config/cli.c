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

/* Generate getopt_long's tables from the slots. Returns 0 or -ENOMEM. */
int
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
        if (v.u > opt_max(d)) {
            config_errf(err, errlen, "--%s: given more than %llu times", d->name,
                        (unsigned long long)opt_max(d));
            return -EINVAL;
        }
    } else {
        rc = value_parse(d, arg, &v, why, sizeof(why));
        if (rc < 0) {
            config_errf(err, errlen, "--%s: %s", d->name, why);
            return rc;
        }
    }
    free(s->cli.s);
    s->cli = v;
    s->cli_set = true;
    return 0;
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
        case ':': {
            const char *name = long_name_of(c, optopt);
            if (optopt < VAL_OPT && optopt > 0 && optopt < 256 && c->short_slot[optopt] >= 0) {
                name = cfg->slots[c->short_slot[optopt]].def->name;
            }
            config_errf(err, errlen, "option '--%s' needs a value", name ? name : "?");
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
